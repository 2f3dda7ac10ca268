// The README's "Shared hosting" section, followed as written: its shell block runs (as an
// unprivileged account, from a clean directory) in a checkout of this repository, then Apache -
// configured as a shared host: mod_fcgid with its defaults, AllowOverride Options FileInfo
// AuthConfig - serves the site it built. The section's cron lines run too, and its switch to
// plain CGI is made exactly as described. Front-independent: run once.
'use strict';
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const OpenAI = require('openai').default;
const { ROOT, ROUTER_BIN, TEST_KEYS, SLOW, spawnApache, killGroup, freePort, startFake, readSSE, waitFor, sleep, within } = require('./lib/harness');

// The fenced blocks of the README section that starts with `heading`.
function sectionBlocks(heading) {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf(`\n${heading}`);
  assert.ok(start >= 0, heading);
  const end = readme.indexOf('\n### ', start + heading.length + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```[a-z]*\n([\s\S]*?)```/g)].map((m) => m[1]);
}

// As root, the account is www-data; otherwise the user running the tests.
const account = process.getuid() === 0 ? { uid: 33, gid: 33 } : {};

describe('README: shared hosting, step by step', () => {
  let work;
  let fake;
  let apache;
  before(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-shared-'));
    fake = await startFake();
  });
  after(async () => {
    if (apache) killGroup(apache.proc, 'SIGKILL');
    await fake.stop();
    if (!process.env.KEEP_WORK) fs.rmSync(work, { recursive: true, force: true });
  });

  it('builds the site, serves it with mod_fcgid, then as plain CGI after the documented switch', async () => {
    const [steps, cron] = sectionBlocks('### Shared hosting');
    // A checkout as uploaded: the repository's files and its build (the router under test), copied
    // with their times (make finds the build up to date) and owned by the account.
    const checkout = path.join(work, 'llm-router');
    for (const f of ['Makefile', 'src', 'conf', 'www', 'lighttpd', 'apache']) fs.cpSync(path.join(ROOT, f), path.join(checkout, f), { recursive: true, preserveTimestamps: true });
    fs.cpSync(path.dirname(ROUTER_BIN), path.join(checkout, 'build'), { recursive: true, preserveTimestamps: true });
    const home = path.join(work, 'home');
    fs.mkdirSync(home);
    if (account.uid !== undefined) spawnSync('chown', ['-R', `${account.uid}:${account.gid}`, work]);

    // Everything but the final check, as the account, with its key in the environment.
    const lines = steps.trim().split('\n');
    const check = lines.pop();
    assert.match(check, /^curl -s https:\/\/example\.com\/v1\/models$/);
    const env = { PATH: process.env.PATH, HOME: home, OPENAI_API_KEY: TEST_KEYS.OPENAI_API_KEY };
    const run = spawnSync('bash', ['-e', '-c', lines.join('\n')], Object.assign({ cwd: checkout, env, encoding: 'utf8' }, account));
    assert.equal(run.status, 0, run.stdout + run.stderr);
    const agentKey = run.stdout.trim().split('\n').pop();
    assert.match(agentKey, /^lrk_[0-9A-Za-z]{12}_[0-9A-Za-z]{32}$/);

    const site = path.join(home, 'example.com');
    const docroot = path.join(site, 'public_html');
    assert.deepEqual(fs.readdirSync(docroot).sort(), ['.htaccess', 'dashboard', 'errors', 'llm-router.fcgi']);
    assert.equal(fs.statSync(path.join(site, 'conf/llm-router.env')).mode & 0o077, 0, 'llm-router.env is private');
    assert.equal(fs.statSync(path.join(site, 'conf')).mode & 0o077, 0);
    // The test's provider is the fake one: its URL goes beside the key.
    fs.appendFileSync(path.join(site, 'conf/llm-router.env'), `OPENAI_BASE_URL=${fake.url}/openai/v1\n`);

    const host = (withFcgid, port) => spawnApache(path.join(work, withFcgid ? 'apache-fcgid' : 'apache-cgi'), port, {
      withFcgid,
      site: [`DocumentRoot "${docroot}"`, `<Directory "${docroot}">`, '  AllowOverride Options FileInfo AuthConfig', '  Require all granted', '</Directory>'],
      spawnOpts: account,
    });
    const serve = async (withFcgid) => {
      const port = await freePort();
      apache = host(withFcgid, port);
      const base = `http://127.0.0.1:${port}`;
      await waitFor(async () => {
        if (apache.proc.exitCode !== null) throw new Error(apache.readLogs());
        return (await fetch(base + '/v1/models')).status === 200;
      }, 20000 * SLOW, 'the site to answer').catch((e) => { throw new Error(`${e.message}\n${apache.readLogs()}`); });
      return base;
    };
    const stop = async () => {
      apache.proc.kill('SIGTERM');
      await within(new Promise((r) => apache.proc.once('exit', r)), 10000);
      killGroup(apache.proc, 'SIGKILL');
    };

    // A host with mod_fcgid at its defaults: FastCGI.
    let base = await serve(true);
    const models = spawnSync('bash', ['-c', check.replace('https://example.com', base)], { encoding: 'utf8' });
    const list = JSON.parse(models.stdout);
    assert.equal(list.data.find((m) => m.id === 'gpt-4o-mini').available, true);
    const client = new OpenAI({ apiKey: agentKey, baseURL: base + '/v1', maxRetries: 0 });
    const c = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    assert.match(c.choices[0].message.content, /Hello from the fake/);
    for (const p of ['/../conf/llm-router.env', '/conf/llm-router.env', '/llm-router.fcgi/../../conf/llm-router.conf']) {
      const r = await fetch(base + p);
      assert.ok([403, 404].includes(r.status), `${p}: ${r.status}`);
    }
    // Streams arrive, but mod_fcgid's default 64 KiB output buffer holds them to the end.
    const slow = { model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }], fake_chunk_delay_ms: 150 };
    const spread = async () => {
      const r = await fetch(base + '/v1/chat/completions', { method: 'POST', headers: { authorization: `Bearer ${agentKey}` }, body: JSON.stringify(slow) });
      assert.equal(r.status, 200);
      const ev = (await readSSE(r)).filter((e) => e.data);
      assert.equal(ev[ev.length - 1].data, '[DONE]');
      return ev[ev.length - 1].t - ev[0].t;
    };
    assert.ok(await spread() < 100, 'the host buffers the stream');
    await stop();

    // The documented switch to plain CGI, on a host without mod_fcgid as well as with it.
    const ht = path.join(docroot, '.htaccess');
    const text = fs.readFileSync(ht, 'utf8');
    assert.ok(text.includes('AddHandler fcgid-script .fcgi'));
    fs.writeFileSync(ht, text.replace('AddHandler fcgid-script .fcgi', 'AddHandler cgi-script .fcgi'));
    base = await serve(false);
    assert.ok(await spread() >= 3 * 150, 'CGI streams event by event');
    // The Responses API's events too.
    const chunk = (delta, finish = null) => 'data: ' + JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: finish }] });
    await fake.script('openai', [{ chunk_delay_ms: 150, sse: [chunk({ role: 'assistant', content: '' }), ...['a ', 'b ', 'c ', 'd ', 'e'].map((w) => chunk({ content: w })), chunk({}, 'stop'), 'data: [DONE]'] }]);
    const rr = await fetch(base + '/v1/responses', { method: 'POST', headers: { authorization: `Bearer ${agentKey}` }, body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, input: 'hi' }) });
    assert.equal(rr.status, 200);
    const deltas = (await readSSE(rr)).filter((e) => e.data && JSON.parse(e.data).type === 'response.output_text.delta');
    assert.equal(deltas.length, 5);
    assert.ok(deltas[4].t - deltas[0].t >= 3 * 150, `CGI streams Responses events one by one: ${deltas.map((e) => e.t).join(',')}`);
    const c2 = await new OpenAI({ apiKey: agentKey, baseURL: base + '/v1', maxRetries: 0 }).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    assert.match(c2.choices[0].message.content, /Hello from the fake/);
    await stop();

    // The cron lines.
    const jobs = cron.trim().split('\n').map((l) => l.split(/\s+/).slice(5).join(' '));
    assert.equal(jobs.length, 2);
    for (const job of jobs) {
      const r = spawnSync('sh', ['-c', job.replace('>/dev/null', '')], Object.assign({ env: { PATH: process.env.PATH, HOME: home }, encoding: 'utf8' }, account));
      assert.equal(r.status, 0, `${job}: ${r.stderr}`);
    }
    const rows = spawnSync('sqlite3', [path.join(site, 'data/llm_logs.db'), "SELECT count(*) FROM request_log WHERE agent = 'my_agent' AND status = 200"], { encoding: 'utf8' });
    assert.equal(rows.stdout.trim(), '5');
  });
});
