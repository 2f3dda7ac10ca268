// Responder lifecycle under the web server: graceful stop finishes streams in flight, the
// configuration reloads on change and on SIGHUP (a broken file keeps the last good one), a
// broken configuration stops start-up with FILE:LINE, and no secret reaches any log.
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { FRONT, CAPS, startStack, startFake, startRouter, readSSE, waitFor, sleep, TEST_KEYS, SLOW } = require('./lib/harness');

async function modelIds(router) {
  const r = await fetch(router.baseURL + '/models');
  return (await r.json()).data.map((m) => m.id);
}

describe('lifecycle', () => {
  it('finishes streams in flight on SIGTERM, then a new responder serves', { skip: !CAPS.persistent && 'plain CGI has no long-lived responder: each process serves one request and exits' }, async () => {
    const stack = await startStack({ procs: 1 });
    try {
      await stack.fake.script('openai', [{ chunk_delay_ms: 200, text: 'a b c d e f g h' }]);
      const r = await fetch(stack.router.baseURL + '/chat/completions', {
        method: 'POST', body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'x' }] }),
      });
      // lighttpd runs the one process it was given; mod_fcgid may have spawned a second one.
      const pids = stack.router.responderPids();
      if (FRONT === 'lighttpd') assert.equal(pids.length, 1);
      assert.ok(pids.length >= 1);
      let signalled = false;
      const events = await readSSE(r, (ev) => {
        if (!signalled && ev.data && ev.data.includes('"content":"a')) {
          signalled = true;
          for (const pid of pids) process.kill(pid, 'SIGTERM');
        }
      });
      assert.ok(signalled);
      assert.equal(events[events.length - 1].data, '[DONE]', 'the stream in flight completed');
      const text = events.filter((e) => e.data && e.data !== '[DONE]').map((e) => JSON.parse(e.data).choices[0]?.delta?.content || '').join('');
      assert.equal(text, 'a b c d e f g h');
      // lighttpd respawns at once, mod_fcgid on the next request.
      await waitFor(async () => {
        if ((await fetch(stack.router.baseURL + '/models')).status !== 200) return false;
        const p = stack.router.responderPids();
        return p.length >= 1 && p.every((x) => !pids.includes(x));
      }, 10000 * SLOW, 'service from a new responder');
      assert.match(stack.router.errorLog(), /finishing requests in flight/);
    } finally { await stack.stop(); }
  });

  it('reloads the configuration when the file changes; a broken edit keeps the last good one', async () => {
    const stack = await startStack({ procs: 2 });
    try {
      const orig = fs.readFileSync(stack.router.confPath, 'utf8');
      assert.ok(!(await modelIds(stack.router)).includes('gpt-4o-alias'));
      const added = orig.replace('models = (\n', 'models = (\n  { id = "gpt-4o-alias"; provider = "openai"; upstream = "gpt-4o"; input_usd_per_mtok = 2.5; output_usd_per_mtok = 10.0; },\n');
      await sleep(1100);   // mtime granularity
      fs.writeFileSync(stack.router.confPath, added);
      // Both processes pick it up (each request may land on either).
      await waitFor(async () => {
        for (let i = 0; i < 6; i++) if (!(await modelIds(stack.router)).includes('gpt-4o-alias')) return false;
        return true;
      }, 10000 * SLOW, 'the new model in /v1/models');
      const r = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', body: JSON.stringify({ model: 'gpt-4o-alias', messages: [{ role: 'user', content: 'x' }] }) });
      assert.equal(r.status, 200);

      await sleep(1100);
      fs.writeFileSync(stack.router.confPath, added.replace('threads = 4;', 'threads = "four";'));
      if (!CAPS.persistent) {
        // Plain CGI reads the file for every request: there is no last good one to keep. Each
        // request gets the envelope, and the error log names file, line and reason.
        const bad = await fetch(stack.router.baseURL + '/models');
        assert.equal(bad.status, 500);
        assert.equal((await bad.json()).error.code, 'configuration_error');
        assert.match(stack.router.errorLog(), /llm-router\.conf:\d+: 'server\.threads' must be an integer/);
        return;
      }
      await waitFor(() => /config reload rejected.*llm-router\.conf:\d+: 'server\.threads' must be an integer/.test(stack.router.errorLog()), 10000 * SLOW, 'the rejection in the error log');
      const ids = await modelIds(stack.router);
      assert.ok(ids.includes('gpt-4o-alias'), 'the last good configuration stays in force');
    } finally { await stack.stop(); }
  });

  it('reloads on SIGHUP', { skip: !CAPS.persistent && 'plain CGI has no process to signal: every request reads the file' }, async () => {
    const stack = await startStack({ procs: 1, config: (t) => t.replace(/reload_interval_s = \d+;/, 'reload_interval_s = 0;') });
    try {
      // startRouter sets 1 s; this instance turned polling off again.
      const conf = fs.readFileSync(stack.router.confPath, 'utf8').replace(/reload_interval_s = \d+;/, 'reload_interval_s = 0;');
      fs.writeFileSync(stack.router.confPath, conf.replace('models = (\n', 'models = (\n  { id = "hup-model"; provider = "openai"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 1.0; },\n'));
      await sleep(2500);
      assert.ok(!(await modelIds(stack.router)).includes('hup-model'), 'no polling');
      for (const pid of stack.router.responderPids()) process.kill(pid, 'SIGHUP');
      await waitFor(async () => (await modelIds(stack.router)).includes('hup-model'), 5000 * SLOW, 'the reload');
    } finally { await stack.stop(); }
  });

  it('refuses to start with a broken configuration, naming file and line', async () => {
    const fake = await startFake();
    try {
      await assert.rejects(startRouter({ fake, config: (t) => t.replace('level = "info";', 'level = "info";\n  colour = "blue";') }), (e) => {
        assert.match(e.message, /llm-router\.conf:\d+: unknown key 'colour' in log/);
        return true;
      });
    } finally { await fake.stop(); }
  });

  it('never writes a key to the error log, the database or the fallback file', async () => {
    const stack = await startStack({ config: (t) => t.replace('level = "info";', 'level = "debug";') });
    try {
      await stack.fake.script('openai', [{ status: 401, body: { error: { message: `Incorrect API key provided: ${TEST_KEYS.OPENAI_API_KEY}` } } }]);
      for (const model of ['gpt-4o', 'gpt-4o', 'deepseek-chat', 'openrouter/x/y']) {
        await fetch(stack.router.baseURL + '/chat/completions', {
          method: 'POST', headers: { authorization: 'Bearer client-secret-token-123' },
          body: JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }] }),
        });
      }
      await sleep(300);
      const dump = JSON.stringify(stack.router.db('SELECT * FROM request_log'));
      const files = [stack.router.errorLog(), dump];
      if (fs.existsSync(stack.router.jsonlPath)) files.push(fs.readFileSync(stack.router.jsonlPath, 'utf8'));
      for (const text of files) {
        for (const k of Object.values(TEST_KEYS)) assert.ok(!text.includes(k), `key ${k.slice(0, 8)}... leaked`);
        assert.ok(!text.includes('client-secret-token-123'), 'client Authorization leaked');
      }
    } finally { await stack.stop(); }
  });
});
