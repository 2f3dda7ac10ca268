// The shipped web-server files that the harness's fronts do not load as they are: `make run`
// (lighttpd/run.sh and lighttpd/llm-router-dev.conf.in, run for real), lighttpd's production
// include (lighttpd/llm-router.conf, installed by `make install` and included from Debian's own
// /etc/lighttpd/lighttpd.conf) and the Apache mod_proxy_fcgi vhost. Each answers its own errors
// with OpenAI's JSON envelope, and `make run` serves only the API and the public files. (The
// container's lighttpd is checked in install.test.js, apache/llm-router-fcgid.conf by every test
// behind ROUTER_FRONT=apache-fcgid, www/.htaccess behind apache-htaccess and apache-cgi.)
// Front-independent: runs once, behind the lighttpd front.
'use strict';
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const { ROOT, ROUTER_BIN, FRONT, TEST_KEYS, SLOW, apacheReady, spawnApache, killGroup, freePort, startFake, startServe, waitFor, sleep, within } = require('./lib/harness');
const { raw, get, assertEnvelope, assertOwnErrors } = require('./lib/rawhttp');

// Kills the router processes below pid with SIGKILL every 100 ms for ms while clients call
// /v1/models; returns the answers that were not 200.
// Kills the responders every 100 ms for ms, and on until there were minKills kills (lighttpd
// respawns a killed responder after a pause, so how many fit in ms varies with the machine).
async function killUnderLoad(port, pidsOf, ms, minKills = 3) {
  let running = true;
  const errors = [];
  const client = async () => {
    while (running) {
      try {
        const r = await get(port, '/v1/models');
        if (r.status !== 200) errors.push(r);
      } catch (e) { /* no answer at all */ }
    }
  };
  const clients = Array.from({ length: 8 }, client);
  const t0 = Date.now();
  let kills = 0;
  while (Date.now() - t0 < ms || (kills < minKills && Date.now() - t0 < 5 * ms * SLOW)) {
    await sleep(100);
    for (const pid of pidsOf()) { try { process.kill(pid, 'SIGKILL'); kills++; } catch (e) { /* gone */ } }
  }
  running = false;
  await Promise.all(clients);
  return { errors, kills };
}

function childrenNamed(rootPid, re) {
  const r = spawnSync('ps', ['-e', '-o', 'pid=,ppid=,comm='], { encoding: 'utf8' });
  const procs = r.stdout.split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/)).map(([p, pp, c]) => ({ pid: Number(p), ppid: Number(pp), comm: c }));
  const below = new Set([rootPid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const p of procs) if (below.has(p.ppid) && !below.has(p.pid)) { below.add(p.pid); grew = true; }
  }
  return procs.filter((p) => below.has(p.pid) && re.test(p.comm)).map((p) => p.pid);
}

describe('the shipped web-server files answer their own errors in JSON', { skip: FRONT !== 'lighttpd' && 'front-independent: runs behind the lighttpd front' }, () => {
  let work;
  let fake;
  before(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-edges-'));
    fake = await startFake();
  });
  after(async () => {
    if (fake) await fake.stop();
    if (!process.env.KEEP_WORK) fs.rmSync(work, { recursive: true, force: true });
  });

  it('make run: JSON errors, and only the API and the public files', async () => {
    // lighttpd/run.sh as `make run` starts it, with its run directory (BUILD) in the work directory.
    const build = path.join(work, 'devbuild');
    fs.mkdirSync(build);
    fs.symlinkSync(ROUTER_BIN, path.join(build, 'llm-router'));
    fs.mkdirSync(path.join(work, 'dev/conf'), { recursive: true });
    const conf = path.join(work, 'dev/conf/llm-router.conf');
    fs.writeFileSync(conf, fs.readFileSync(path.join(ROOT, 'conf/llm-router.conf'), 'utf8').replace('auth_mode = "key";', 'auth_mode = "none";'));
    const port = await freePort();
    const env = { PATH: process.env.PATH, PORT: String(port), BUILD: path.relative(ROOT, build), LLM_ROUTER_CONFIG: conf };
    // Its output to a file, as to a terminal (lighttpd cannot open /dev/stderr on a socket).
    const out = fs.openSync(path.join(work, 'make-run.log'), 'w');
    const run = spawn(path.join(ROOT, 'lighttpd/run.sh'), [], { cwd: ROOT, env, stdio: ['ignore', out, out], detached: true });
    fs.closeSync(out);
    const log = () => fs.readFileSync(path.join(work, 'make-run.log'), 'utf8');
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/v1/models`)).status === 200, 20000 * SLOW, 'make run to answer').catch((e) => { throw new Error(`${e.message}\n${log()}`); });
      await assertOwnErrors(port, 'make run');
      // www/ holds .htaccess and the error files; nothing but the API and the public files is served.
      for (const p of ['/.htaccess', '/', '/errors/', '/conf/llm-router.conf', '/llm-router.env', '/data/llm_logs.db', '/build/run/demo.key', '/.git/config', '/dashboard/.env']) {
        const r = await get(port, p);
        assertEnvelope(r, [403, 404], `make run ${p}`);
        assert.doesNotMatch(r.body, /RewriteRule|api_key|SQLite/);
      }
      const ef = await get(port, '/errors/404.json');
      assert.equal(ef.status, 200);
      assert.match(ef.headers['content-type'], /^application\/json/);
      // lighttpd's 503 while the responder restarts, every answer JSON.
      const lpid = Number(fs.readFileSync(path.join(build, 'run/lighttpd.pid'), 'utf8'));
      const { errors, kills } = await killUnderLoad(port, () => childrenNamed(lpid, /^llm-router/), 3000);
      console.log(`# make run: kill -9 under load: ${kills} kills, ${errors.length} errors: ${JSON.stringify(errors.reduce((a, r) => { a[r.status] = (a[r.status] || 0) + 1; return a; }, {}))}`);
      assert.ok(kills >= 3 && errors.length > 0, `${kills} kills, ${errors.length} errors`);
      for (const r of errors) assertEnvelope(r, [500, 502, 503, 504], `make run under kill -9: ${r.status}`);
    } finally {
      killGroup(run, 'SIGTERM');
      await within(new Promise((r) => run.once('exit', r)), 5000);
      killGroup(run, 'SIGKILL');
    }
  });

  it("lighttpd's production include, in Debian's lighttpd.conf: JSON errors, other files keep their types", async () => {
    const prefix = path.join(work, 'prefix');
    const r = spawnSync('make', ['-s', '-C', ROOT, `BUILD=${path.relative(ROOT, path.dirname(ROUTER_BIN))}`, 'install', `PREFIX=${prefix}`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const home = path.join(work, 'prod');
    const docroot = path.join(home, 'html');
    fs.mkdirSync(docroot, { recursive: true });
    fs.writeFileSync(path.join(docroot, 'index.html'), '<p>another site</p>');
    const port = await freePort();
    const include = fs.readFileSync(path.join(prefix, 'share/llm-router/lighttpd/llm-router.conf'), 'utf8')
      .split('/usr/local').join(prefix).split('/var/lib/llm-router').join(home)
      .split('/run/lighttpd/').join(home + '/').split('/var/log/lighttpd/').join(home + '/');
    fs.writeFileSync(path.join(home, 'llm-router.conf'), include);
    // Debian's main file as shipped, but for the port, the paths and the user.
    const main = fs.readFileSync('/etc/lighttpd/lighttpd.conf', 'utf8')
      .replace(/^server\.document-root\s*=.*$/m, `server.document-root = "${docroot}"`)
      .replace(/^server\.errorlog\s*=.*$/m, `server.errorlog = "${home}/error.log"`)
      .replace(/^server\.pid-file\s*=.*$/m, `server.pid-file = "${home}/lighttpd.pid"`)
      .replace(/^server\.upload-dirs\s*=.*$/m, '')
      .replace(/^server\.(username|groupname)\s*=.*$/mg, '')
      .replace(/^server\.port\s*=.*$/m, `server.port = ${port}\nserver.bind = "127.0.0.1"`)
      .replace(/^include_shell "\/usr\/share\/lighttpd\/use-ipv6\.pl.*$/m, '')
      .replace(/^include "\/etc\/lighttpd\/conf-enabled\/\*\.conf"$/m, `include "${home}/llm-router.conf"`);
    assert.match(main, new RegExp(`include "${home}/llm-router.conf"`));
    fs.writeFileSync(path.join(home, 'lighttpd.conf'), main);
    const t = spawnSync('/usr/sbin/lighttpd', ['-tt', '-f', path.join(home, 'lighttpd.conf')], { encoding: 'utf8' });
    assert.equal(t.status, 0, t.stdout + t.stderr);
    const env = { PATH: process.env.PATH, OPENAI_API_KEY: TEST_KEYS.OPENAI_API_KEY };
    fs.mkdirSync(path.join(prefix, 'etc/llm-router'), { recursive: true });
    fs.writeFileSync(path.join(prefix, 'etc/llm-router/llm-router.env'), `OPENAI_BASE_URL=${fake.url}/openai/v1\n`, { mode: 0o600 });
    fs.writeFileSync(path.join(prefix, 'etc/llm-router/llm-router.conf'), fs.readFileSync(path.join(prefix, 'etc/llm-router/llm-router.conf'), 'utf8').replace('auth_mode = "key";', 'auth_mode = "none";'));
    const server = spawn('/usr/sbin/lighttpd', ['-D', '-f', path.join(home, 'lighttpd.conf')], { env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let log = '';
    server.stderr.on('data', (d) => { log += d; });
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/v1/models`)).status === 200, 20000 * SLOW, 'the production include to answer').catch((e) => { throw new Error(`${e.message}\n${log}\n${fs.existsSync(home + '/error.log') ? fs.readFileSync(home + '/error.log', 'utf8') : ''}`); });
      await assertOwnErrors(port, 'production include');
      // A body above server.max-request-size (9 MiB): lighttpd's own 413.
      const big = 'x'.repeat(10 << 20);
      assertEnvelope(await raw(port, `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${big.length}\r\n\r\n${big}`, 10000), [413], 'production include: a 10 MiB body');
      const idx = await get(port, '/index.html');
      assert.equal(idx.status, 200);
      assert.match(idx.headers['content-type'], /^text\/html/, 'the other site\'s pages keep their type');
      const { errors, kills } = await killUnderLoad(port, () => childrenNamed(server.pid, /^llm-router/), 3000);
      console.log(`# production include: kill -9 under load: ${kills} kills, ${errors.length} errors: ${JSON.stringify(errors.reduce((a, x) => { a[x.status] = (a[x.status] || 0) + 1; return a; }, {}))}`);
      assert.ok(kills >= 3 && errors.length > 0, `${kills} kills, ${errors.length} errors`);
      for (const x of errors) assertEnvelope(x, [500, 502, 503, 504], `production include under kill -9: ${x.status}`);
    } finally {
      killGroup(server, 'SIGKILL');
    }
  });

  it('the mod_proxy_fcgi vhost: JSON errors, the encoded slash reaches the router, 503 with the router down', async () => {
    const swork = path.join(work, 'serve');
    fs.mkdirSync(path.join(swork, 'conf'), { recursive: true });
    fs.writeFileSync(path.join(swork, 'conf/llm-router.conf'), fs.readFileSync(path.join(ROOT, 'conf/llm-router.conf'), 'utf8').replace('auth_mode = "key";', 'auth_mode = "none";'));
    const served = await startServe(swork, { OPENAI_API_KEY: TEST_KEYS.OPENAI_API_KEY, OPENAI_BASE_URL: `${fake.url}/openai/v1` });
    const account = process.getuid() === 0 ? { uid: 33, gid: 33 } : {};
    // Beside the work directory (private to the test's user): Apache's own user writes here.
    const aroot = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-edges-proxy-'));
    if (account.uid !== undefined) fs.chownSync(aroot, account.uid, account.gid);
    const aport = await freePort();
    const vhost = fs.readFileSync(path.join(ROOT, 'apache/llm-router-proxy-fcgi.conf'), 'utf8')
      .replace('<VirtualHost *:80>', `<VirtualHost 127.0.0.1:${aport}>`)
      .replace('unix:/run/llm-router/router.sock|fcgi://localhost/v1/', `fcgi://127.0.0.1:${served.port}/v1/`)
      .split('/usr/local/share/llm-router/www').join(path.join(ROOT, 'www'));
    const apache = spawnApache(path.join(aroot, 'apache'), aport, {
      withFcgid: false,
      spawnOpts: account,
      site: ['LoadModule proxy_module /usr/lib/apache2/modules/mod_proxy.so', 'LoadModule proxy_fcgi_module /usr/lib/apache2/modules/mod_proxy_fcgi.so', vhost],
    });
    try {
      const base = `http://127.0.0.1:${aport}/v1`;
      await apacheReady(apache, base);
      await assertOwnErrors(aport, 'mod_proxy_fcgi vhost');
      const slash = assertEnvelope(await get(aport, '/v1/models/openrouter%2Fno-such-model'), [404], '%2F');
      assert.equal(slash.param, 'model', 'the router answered');
      // Above LimitRequestBody (9 MiB): Apache's own 413.
      const big = 'x'.repeat(10 << 20);
      assertEnvelope(await raw(aport, `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${big.length}\r\n\r\n${big}`, 10000), [413], 'mod_proxy_fcgi vhost: a 10 MiB body');
      served.child.kill('SIGKILL');
      await new Promise((r) => (served.child.exitCode !== null || served.child.signalCode ? r() : served.child.once('exit', r)));
      assertEnvelope(await get(aport, '/v1/models'), [503], 'the router down');
    } finally {
      killGroup(apache.proc, 'SIGKILL');
      if (served.child.exitCode === null && !served.child.signalCode) served.child.kill('SIGKILL');
      if (!process.env.KEEP_WORK) fs.rmSync(aroot, { recursive: true, force: true });
    }
  });
});
