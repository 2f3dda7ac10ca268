// The web server's edges, behind each ROUTER_FRONT (see lib/harness.js): every error the web
// server answers itself is OpenAI's JSON envelope with application/json - a malformed request
// line, a 70 KiB header, an encoded slash, a missing or refused file, responders killed with
// kill -9 under load - except the four that Apache decides before it reads an .htaccess (the
// host's own pages: asserted as such, the README says so); the shared-hosting .htaccess is an
// allow-list; an edit of llm-router.env reaches running responders without a restart; a
// responder spawned by mod_fcgid runs one worker thread.
'use strict';
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { FRONT, CAPS, SLOW, TEST_KEYS, startStack, waitFor, sleep } = require('./lib/harness');
const { raw, get, assertEnvelope } = require('./lib/rawhttp');

const docrootFront = FRONT === 'apache-htaccess' || FRONT === 'apache-cgi';
const GROQ_MODEL = '  { id = "llama-3.3-70b"; provider = "groq"; upstream = "llama-3.3-70b-versatile"; input_usd_per_mtok = 0.59; output_usd_per_mtok = 0.79; },\n';

// What Apache answers before it reads an .htaccess: the host's page, not the account's.
function assertHostPage(r, status, what) {
  assert.equal(r.status, status, `${what}: ${r.status}`);
  assert.match(r.headers['content-type'] || '', /^text\/html/, what);
}

function workerThreads(pid) {
  const tasks = fs.readdirSync(`/proc/${pid}/task`).map((t) => { try { return fs.readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim(); } catch (e) { return ''; } });
  return { workers: tasks.filter((c) => c === 'llm-worker').length, total: tasks.length, names: tasks };
}

// The names a responder's threads other than its main thread carry (ps -L, top -H, perf).
const THREAD_NAMES = ['llm-worker', 'llm-upstream', 'llm-signal', 'llm-writer', 'llm-checkpoint', 'llm-maint', 'llm-alerts', 'llm-metrics'];

function chat(baseURL, model = 'gpt-4o-mini') {
  return fetch(baseURL + '/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }) });
}

describe(`the web server's edges behind ${FRONT}`, () => {
  let stack;
  let port;
  before(async () => {
    stack = await startStack({ config: (c) => c.replace('models = (\n', 'models = (\n' + GROQ_MODEL) });
    port = stack.router.port;
  });
  after(async () => { if (stack) await stack.stop(); });

  it('runs one worker thread per mod_fcgid process, and the pool behind lighttpd', { skip: !CAPS.persistent && 'plain CGI: no responder process between requests' }, async () => {
    const r = await fetch(stack.router.baseURL + '/models');
    assert.equal(r.status, 200);
    const pids = stack.router.responderPids();
    assert.ok(pids.length >= 1);
    // lighttpd: server.threads (4 in the tests); mod_fcgid: one, set by the vhost
    // (LLM_ROUTER_THREADS) or found by the router itself under .htaccess.
    const want = FRONT === 'lighttpd' ? 4 : 1;
    for (const pid of pids) {
      // A responder the web server started beside the one that answered may still be starting
      // (slow under the sanitizers): its workers come up within a few seconds.
      await waitFor(() => workerThreads(pid).workers >= want, 10000 * SLOW, `responder ${pid}'s workers`).catch(() => {});
      const t = workerThreads(pid);
      console.log(`# ${FRONT}: responder ${pid}: ${t.workers} worker threads of ${t.total}`);
      assert.equal(t.workers, want, `responder ${pid}`);
      // The others (4 today): the main thread, the signal thread, the database writer and its
      // checkpointer; background threads are not request workers, however many there are.
      assert.ok(t.total - t.workers >= 3 && t.total - t.workers <= 10, `${t.total - t.workers} other threads`);
      // Each thread but the main one (which keeps the process's name) says what it is.
      const unnamed = t.names.filter((c) => !THREAD_NAMES.includes(c));
      assert.equal(unnamed.length, 1, `threads of responder ${pid}: ${t.names.join(', ')}`);
      for (const n of ['llm-signal', 'llm-writer', 'llm-checkpoint']) assert.ok(t.names.includes(n), `no ${n} thread in responder ${pid}: ${t.names.join(', ')}`);
    }
  });

  it('answers a malformed request line with a JSON 400', async () => {
    for (const req of ['GARBAGE\r\n\r\n', 'GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nNo colon here\r\n\r\n']) {
      const r = await raw(port, req);
      if (docrootFront && req.startsWith('GARBAGE')) assertHostPage(r, 400, req);
      else if (docrootFront) assert.equal(r.status, 400);
      else assertEnvelope(r, [400], JSON.stringify(req));
    }
  });

  it('answers a 70 KiB header with a JSON 431 or 400', async () => {
    const r = await get(port, '/v1/models', { 'X-Big': 'a'.repeat(70 * 1024) });
    if (docrootFront) assertHostPage(r, 400, '70 KiB header');
    else assertEnvelope(r, [400, 431], '70 KiB header');
  });

  it('answers a 10 KB URL with a JSON 414 or 431', async () => {
    const r = await get(port, '/v1/' + 'a'.repeat(10000));
    if (docrootFront) assertHostPage(r, 414, '10 KB URL');
    else assertEnvelope(r, [414, 431], '10 KB URL');
  });

  it('answers a body above the host\'s FastCGI limit with a JSON 500 or 413', { skip: FRONT !== 'apache-htaccess' && 'a shared host\'s FcgidMaxRequestLen (128 KiB)' }, async () => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(200 * 1024) }] });
    const r = await raw(port, `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 10000);
    assertEnvelope(r, [413, 500], 'a 200 KiB body');
  });

  it('passes an encoded slash to the router, or refuses it with JSON', async () => {
    const r = await get(port, '/v1/models/openrouter%2Fno-such-model');
    if (docrootFront) return assertHostPage(r, 404, '%2F');
    const e = assertEnvelope(r, [404], '%2F');
    assert.equal(e.param, 'model', 'the router answered, not the web server');
  });

  it('answers missing and refused files with a JSON 404 or 403', async () => {
    for (const p of ['/nope.txt', '/.htaccess', '/errors/999.json', '/v1x', '/conf/llm-router.env']) {
      assertEnvelope(await get(port, p), [403, 404], p);
    }
  });

  it('serves only the router, its error files and dashboard files under .htaccess', { skip: !docrootFront && 'the .htaccess of a shared host' }, async () => {
    const www = path.join(stack.router.work, 'www');
    const refused = ['llm-router.env~', 'llm-router.env.swp', 'llm-router.env.save', 'llm-router.conf.dist', 'llm_logs.db.1',
      'llm_logs_fallback.jsonl.replay-1-2', 'demo.key.txt', '.env', '.llm-router.env.swp', 'notes.txt', 'index.html',
      'dashboard/app.php', 'dashboard/.env', 'dashboard/app.js~', 'dashboard/data.json', 'errors/403.json.bak', 'conf/llm-router.conf'];
    for (const f of refused) {
      fs.mkdirSync(path.dirname(path.join(www, f)), { recursive: true });
      fs.writeFileSync(path.join(www, f), 'SECRET-CONTENT');
    }
    fs.writeFileSync(path.join(www, 'dashboard/app.js'), 'console.log("dashboard");');
    fs.writeFileSync(path.join(www, 'dashboard/index.html'), '<p>dashboard</p>');
    for (const f of refused.concat(['llm-router.fcgi', ''])) {
      const r = await get(port, '/' + f);
      const e = assertEnvelope(r, [403, 404], '/' + f);
      assert.doesNotMatch(r.body, /SECRET/);
      if (r.status === 403) assert.equal(e.code, 'permission_denied', f);
    }
    const js = await get(port, '/dashboard/app.js');
    assert.equal(js.status, 200);
    assert.equal(js.body, 'console.log("dashboard");');
    assert.equal((await get(port, '/dashboard/index.html')).status, 200);
    const ef = await get(port, '/errors/404.json');
    assert.equal(ef.status, 200);
    assert.equal(JSON.parse(ef.body).error.code, 'unknown_url');
    assert.equal((await fetch(stack.router.baseURL + '/models')).status, 200);
  });

  it('applies an edited llm-router.env to new requests without a restart', async () => {
    const envFile = path.join(stack.router.work, 'conf/llm-router.env');
    const original = fs.existsSync(envFile) ? fs.readFileSync(envFile, 'utf8') : '';
    const pidsBefore = stack.router.responderPids();
    const groq = (key) => original + `GROQ_API_KEY=${key}\nGROQ_BASE_URL=${stack.fake.url}/groq/openai/v1\n`
      // A variable of the real environment wins over the file (behind lighttpd the provider keys
      // are in the responders' environment; behind Apache the harness puts them in the file).
      + (FRONT === 'lighttpd' ? 'OPENAI_API_KEY=sk-from-the-file\n' : '');
    const lastAuth = async (provider) => {
      const reqs = (await stack.fake.requests()).filter((q) => q.provider === provider);
      return reqs.length ? reqs[reqs.length - 1].headers.authorization : undefined;
    };
    const usesKey = async (key) => {
      const r = await chat(stack.router.baseURL, 'llama-3.3-70b');
      const body = await r.text();
      return r.status === 200 && (await lastAuth('groq')) === `Bearer ${key}` ? body : false;
    };
    try {
      // Before: no key for groq.
      const r0 = await chat(stack.router.baseURL, 'llama-3.3-70b');
      assert.equal(r0.status, 503);
      assert.equal((await r0.json()).error.code, 'provider_unavailable');
      // Added.
      fs.writeFileSync(envFile, groq('gsk-added-1'), { mode: 0o600 });
      await waitFor(() => usesKey('gsk-added-1'), 8000 * SLOW, 'the added key in use');
      // Changed (within the same second as the previous write: the change is still seen).
      fs.writeFileSync(envFile, groq('gsk-changed-22'), { mode: 0o600 });
      await waitFor(() => usesKey('gsk-changed-22'), 8000 * SLOW, 'the changed key in use');
      for (let i = 0; i < 5; i++) assert.ok(await usesKey('gsk-changed-22'), 'every new request uses the new key');
      if (FRONT === 'lighttpd') {
        const r = await chat(stack.router.baseURL, 'gpt-4o-mini');
        assert.equal(r.status, 200);
        assert.equal(await lastAuth('openai'), `Bearer ${TEST_KEYS.OPENAI_API_KEY}`, 'the real environment wins');
      }
      // Removed.
      fs.writeFileSync(envFile, original, { mode: 0o600 });
      await waitFor(async () => (await chat(stack.router.baseURL, 'llama-3.3-70b')).status === 503, 8000 * SLOW, 'the removed key gone');
      if (CAPS.persistent) {
        const alive = pidsBefore.filter((p) => fs.existsSync(`/proc/${p}`));
        assert.deepEqual(alive, pidsBefore, 'the same responders, not restarted');
      }
      assert.doesNotMatch(stack.router.errorLog(), /gsk-added-1|gsk-changed-22|sk-from-the-file/);
    } finally {
      fs.writeFileSync(envFile, original, { mode: 0o600 });
    }
  });

  it('answers in JSON while responders are killed (kill -9) under concurrent load', async () => {
    const stats = { ok: 0, errors: {}, kills: 0 };
    let running = true;
    const bad = [];
    const client = async () => {
      while (running) {
        let r;
        try {
          r = await raw(port, `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(BODY)}\r\n\r\n${BODY}`, 20000);
        } catch (e) {
          continue;   // the connection itself failed: no answer to judge
        }
        if (r.status === 200) { stats.ok++; continue; }
        stats.errors[r.status] = (stats.errors[r.status] || 0) + 1;
        try { assertEnvelope(r, [500, 502, 503, 504], `status ${r.status}`); } catch (e) { bad.push(e.message); }
      }
    };
    const BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    const clients = Array.from({ length: 12 }, client);
    // 6 s of kills, and on until there were 10: lighttpd takes a while to start a killed
    // responder again, and once made only 9 kills in 6 s.
    const t0 = Date.now();
    while ((Date.now() - t0 < 6000 || stats.kills < 10) && Date.now() - t0 < 30000 * SLOW) {
      await sleep(150);
      for (const pid of stack.router.responderPids()) {
        try { process.kill(pid, 'SIGKILL'); stats.kills++; } catch (e) { /* gone already */ }
      }
    }
    running = false;
    await Promise.all(clients);
    console.log(`# ${FRONT}: kill -9 under load: ${JSON.stringify(stats)}, ${bad.length} not JSON`);
    assert.ok(stats.kills >= 10, `${stats.kills} kills`);
    // Answers were judged (under a sanitizer a plain CGI process may never outlive the 150 ms
    // between kills, so none need be a 200); the service is back below.
    const answered = stats.ok + Object.values(stats.errors).reduce((a, b) => a + b, 0);
    assert.ok(answered > 0, 'answers came back');
    assert.deepEqual(bad.slice(0, 5), [], `${bad.length} error answers not OpenAI's envelope`);
    // The web server keeps serving once the kills stop.
    await waitFor(async () => (await fetch(stack.router.baseURL + '/models')).status === 200, 20000 * SLOW, 'service back');
  });
});
