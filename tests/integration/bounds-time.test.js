// Every call ends (issue 13): time bounds against a hostile upstream and slow clients.
//
// Streams: upstream.timeout_ms counts until the first content event (SSE comments, role-only
// chunks and pings do not count), stream_idle_timeout_ms is reset only by events that carry data,
// and upstream.deadline_ms ends a stream that already sent content with an error event and [DONE].
// Eight comment-only streams (OpenRouter's ": OPENROUTER PROCESSING" for minutes) cannot keep a
// healthy model from being answered, even while they are open: the responder's worker pool grows
// past server.threads, and shrinks back. Bodies: server.body_timeout_ms bounds the upload of a
// request body, also over a FastCGI connection that passes a slow upload on as it comes (Apache
// mod_proxy_fcgi: here a FastCGI client speaks to `llm-router serve --listen` directly). libcurl's
// silent re-send of a POST on a dropped reused connection is an attempt row of its own.
//
// Scaled down: timeout_ms 1.5 s (6 s for the worker pool), idle 2.5 s, deadline 5 s, body 1.5 s; a
// hostile reply stops by itself after HOSTILE_MS (20 s), which is what a test waited for before
// these bounds.
'use strict';
const { describe, it, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { ROOT, ROUTER_BIN, FRONT, TEST_KEYS, SANITIZER, SLOW, apacheReady, spawnApache, killGroup, freePort, startFake, startStack, startServe, stopServe, readSSE, waitFor, sleep } = require('./lib/harness');

const MSG = [{ role: 'user', content: 'hello' }];
const HOSTILE_MS = 20000;
const TIMEOUT_MS = 1500;
const IDLE_MS = 2500;
const DEADLINE_MS = 5000;
const BODY_MS = 1500;
const MARGIN = 2000 * SLOW;

function bounds(t) {
  return t
    .replace('timeout_ms = 120000;', `timeout_ms = ${TIMEOUT_MS};`)
    .replace('stream_idle_timeout_ms = 60000;', `stream_idle_timeout_ms = ${IDLE_MS};`)
    .replace('deadline_ms = 300000;', `deadline_ms = ${DEADLINE_MS};`)
    .replace('keepalive_interval_ms = 15000;', 'keepalive_interval_ms = 300;')
    .replace('failures = 3;', 'failures = 0;')
    .replace('body_timeout_ms = 30000;', `body_timeout_ms = ${BODY_MS};`);
}

async function post(router, body) {
  const t0 = Date.now();
  const r = await fetch(router.baseURL + '/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch (e) { json = undefined; }
  return { status: r.status, headers: r.headers, text, json, ms: Date.now() - t0 };
}

async function stream(router, body) {
  const t0 = Date.now();
  const r = await fetch(router.baseURL + '/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(Object.assign({ stream: true }, body)) });
  const events = await readSSE(r);
  const data = events.filter((e) => e.data).map((e) => e.data);
  const chunks = data.filter((d) => d !== '[DONE]').map((d) => JSON.parse(d));
  return { status: r.status, headers: r.headers, id: r.headers.get('x-request-id'), events, data, chunks, ms: Date.now() - t0 };
}

async function attempts(router, id) {
  await router.row(id);
  return router.db(`SELECT * FROM request_attempts WHERE request_id = '${id}' ORDER BY attempt`);
}

function text(chunks) {
  return chunks.map((c) => (c.choices && c.choices[0] && c.choices[0].delta && c.choices[0].delta.content) || '').join('');
}

describe('streams end: timeout until content, idle reset by data only, the deadline', () => {
  let stack;
  before(async () => {
    stack = await startStack({ threads: 8, procs: 1, config: bounds });
  });
  after(async () => { await stack.stop(); });
  beforeEach(async () => { await stack.fake.reset(); });

  it('a comment-only stream fails at timeout_ms and the next model answers', async (t) => {
    await stack.fake.script('openai', [{ hostile: { kind: 'comments', comment: 'OPENROUTER PROCESSING', interval_ms: 100, max_ms: HOSTILE_MS } }]);
    const r = await stream(stack.router, { model: 'gpt-4o', messages: MSG });
    t.diagnostic(`comment-only stream: answered by the next model after ${r.ms} ms (timeout_ms ${TIMEOUT_MS})`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-router-model'), 'claude-sonnet-4-5');
    assert.equal(r.data[r.data.length - 1], '[DONE]');
    assert.match(text(r.chunks), /fake anthropic/);
    assert.ok(r.ms >= TIMEOUT_MS - 100, `${r.ms} ms`);
    assert.ok(r.ms < TIMEOUT_MS + MARGIN, `${r.ms} ms`);
    const row = await stack.router.row(r.id);
    assert.deepEqual([row.status, row.model, row.partial, row.attempts], [200, 'claude-sonnet-4-5', 0, 2]);
    assert.ok(row.cost_nusd > 0, 'the answering model is charged');
    const a = await attempts(stack.router, r.id);
    assert.deepEqual(a.map((x) => [x.model, x.outcome, x.error_code]), [['gpt-4o', 'failed', 'upstream_timeout'], ['claude-sonnet-4-5', 'ok', null]]);
    const ev = await waitFor(async () => (await stack.fake.events()).find((e) => e.provider === 'openai'), 2000 * SLOW, 'the hostile connection to close');
    assert.equal(ev.type, 'client_closed');
  });

  it('a stream dripping one byte every 200 ms before its first content fails at timeout_ms', async (t) => {
    await stack.fake.script('openai', [{ hostile: { kind: 'drip', interval_ms: 200, max_ms: HOSTILE_MS } }]);
    const r = await stream(stack.router, { model: 'gpt-4o', messages: MSG });
    t.diagnostic(`drip before content: answered by the next model after ${r.ms} ms`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-router-model'), 'claude-sonnet-4-5');
    assert.ok(r.ms < TIMEOUT_MS + MARGIN, `${r.ms} ms`);
    const a = await attempts(stack.router, r.id);
    assert.deepEqual(a.map((x) => [x.outcome, x.error_code]), [['failed', 'upstream_timeout'], ['ok', null]]);
  });

  it('a stream that drips after its first content ends at the idle timeout: error event, [DONE], partial row', async (t) => {
    await stack.fake.script('openai', [{ hostile: { kind: 'drip', burst: 2, interval_ms: 200, max_ms: HOSTILE_MS } }]);
    const r = await stream(stack.router, { model: 'gpt-4o', messages: MSG });
    t.diagnostic(`drip after content: ended after ${r.ms} ms (stream_idle_timeout_ms ${IDLE_MS})`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-router-model'), 'gpt-4o');
    assert.equal(text(r.chunks), 'This reply ');
    assert.equal(r.data[r.data.length - 1], '[DONE]');
    const err = JSON.parse(r.data[r.data.length - 2]);
    assert.equal(err.error.code, 'upstream_stalled');
    assert.ok(r.ms >= IDLE_MS - 100 && r.ms < IDLE_MS + MARGIN, `${r.ms} ms`);
    const row = await stack.router.row(r.id);
    assert.deepEqual([row.status, row.partial, row.error_code], [200, 1, 'upstream_stalled']);
    assert.ok(row.output_tokens > 0 && row.cost_nusd > 0, 'the tokens seen are charged');
    const a = await attempts(stack.router, r.id);
    assert.deepEqual(a.map((x) => x.outcome), ['partial']);
    assert.equal((await stack.fake.requests()).length, 1, 'no fallback once content went out');
  });

  it('an endless content stream is ended at deadline_ms with an error event naming why and [DONE]', async (t) => {
    await stack.fake.script('openai', [{ hostile: { kind: 'endless', interval_ms: 50, max_ms: HOSTILE_MS } }]);
    const { result: r, rssMB, hwmMB } = await stack.router.measureMemory(() => stream(stack.router, { model: 'gpt-4o', messages: MSG }));
    t.diagnostic(`endless stream: ended after ${r.ms} ms (deadline_ms ${DEADLINE_MS}), ${r.chunks.length} chunks relayed; responder RSS ${rssMB.toFixed(1)} MB, peak ${hwmMB.toFixed(1)} MB`);
    assert.ok(hwmMB < 200 * SLOW, `responder peak RSS ${hwmMB} MB`);
    assert.equal(r.status, 200);
    assert.ok(text(r.chunks).startsWith('word word '));
    assert.equal(r.data[r.data.length - 1], '[DONE]');
    const err = JSON.parse(r.data[r.data.length - 2]);
    assert.equal(err.error.code, 'deadline_exceeded');
    assert.match(err.error.message, /deadline_ms/);
    assert.ok(r.ms >= DEADLINE_MS - 200 && r.ms < DEADLINE_MS + MARGIN, `${r.ms} ms`);
    const row = await stack.router.row(r.id);
    assert.deepEqual([row.status, row.partial, row.error_code, row.cost_source], [200, 1, 'deadline_exceeded', 'estimate']);
    assert.ok(row.output_tokens > 10, `${row.output_tokens} tokens seen`);
    assert.ok(row.cost_nusd > 0);
    const a = await attempts(stack.router, r.id);
    assert.deepEqual(a.map((x) => [x.outcome, x.error_code]), [['partial', 'deadline_exceeded']]);
    const ev = await waitFor(async () => (await stack.fake.events()).find((e) => e.provider === 'openai'), 2000 * SLOW, 'the hostile connection to close');
    assert.ok(ev.wall > 0);
  });

  it('a client that stops reading holds its worker only until the answer\'s write deadline, and its row is written', { skip: FRONT === 'apache-cgi' && 'plain CGI writes to its own stdout' }, async (t) => {
    await stack.fake.script('openai', [{ hostile: { kind: 'endless', chunk: 'word '.repeat(400), interval_ms: 0, max_ms: HOSTILE_MS } }]);
    const body = JSON.stringify({ model: 'gpt-4o', stream: true, messages: MSG });
    const sock = net.connect(stack.router.port, '127.0.0.1');
    sock.on('error', () => {});
    let head = '';
    sock.on('data', (d) => { if (head.length < 4096) head += d.toString('latin1'); });
    sock.write(`POST ${new URL(stack.router.baseURL).pathname}/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    await waitFor(() => /x-request-id: (\S+)/i.test(head), 5000 * SLOW, 'the response head');
    const id = /x-request-id: (\S+)/i.exec(head)[1];
    sock.pause();    // reads nothing more, and stays connected
    const t0 = Date.now();
    // The write deadline: body_timeout_ms + deadline_ms + stream_idle_timeout_ms after the start.
    const row = await waitFor(() => stack.router.db(`SELECT * FROM request_log WHERE request_id = '${id}'`)[0], BODY_MS + DEADLINE_MS + IDLE_MS + 10000 * SLOW, 'the row while the client still holds the connection');
    t.diagnostic(`row written ${Date.now() - t0} ms after the client stopped reading: ${row.error_code}, client_gone ${row.client_gone}`);
    assert.equal(row.partial, 1);
    sock.destroy();
  });

  it('slow uploads do not hold the router: a body not received within body_timeout_ms', async (t) => {
    // lighttpd reads the whole body before it passes the request on: the router never waits for
    // it. Plain CGI under Apache gets the body as it comes: the program answers 408 at the bound.
    const socks = [];
    const t0 = Date.now();
    for (let i = 0; i < 8; i++) {
      const s = net.connect(stack.router.port, '127.0.0.1');
      s.on('error', () => {});
      s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 20000\r\n\r\n{"model":"gpt-4o","messages":[{"role":"user","content":"`);
      socks.push(s);
    }
    const timer = setInterval(() => { for (const s of socks) s.write('x'.repeat(100)); }, 100);
    try {
      await sleep(200);
      const healthy = await post(stack.router, { model: 'claude-haiku-4-5', messages: MSG });
      t.diagnostic(`healthy request answered in ${healthy.ms} ms with eight uploads at 1 KB/s (${FRONT})`);
      assert.equal(healthy.status, 200, healthy.text);
      assert.ok(healthy.ms < MARGIN, `${healthy.ms} ms`);
      if (FRONT === 'apache-cgi') {
        const rows = await waitFor(() => {
          const v = stack.router.db('SELECT * FROM request_log WHERE status = 408');
          return v.length >= 8 ? v : null;
        }, BODY_MS + 2 * MARGIN, 'eight 408 rows');
        t.diagnostic(`eight slow uploads cut after ${Date.now() - t0} ms (body_timeout_ms ${BODY_MS})`);
        for (const row of rows) assert.deepEqual([row.error_type, row.error_code], ['invalid_request_error', 'request_timeout']);
        await waitFor(() => /did not arrive within server.body_timeout_ms/.test(stack.router.errorLog()), 2000 * SLOW, 'the log line');
        await waitFor(() => stack.router.responderPids().length === 0, 3000 * SLOW, 'the CGI processes to exit');
      }
    } finally {
      clearInterval(timer);
      for (const s of socks) s.destroy();
    }
  });
});

// Eight streams held by a silent upstream take the eight workers of the one responder for as long as
// upstream.timeout_ms (here 6 s, well past the measurement); the pool starts one more worker as
// soon as none is left waiting, so a ninth request is answered at once, and shrinks back to
// server.threads once the streams end.
const POOL_TIMEOUT_MS = 6000;

function responderThreads(router) {
  return router.responderPids().map((pid) => {
    try { return Number(/^Threads:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]); } catch (e) { return 0; }
  }).reduce((a, b) => a + b, 0);
}

const SLOWDNS_SKIP = FRONT !== 'lighttpd' ? 'one responder process is enough'
  : SANITIZER ? 'an LD_PRELOAD shim cannot come before the sanitizer runtime' : false;

describe('a provider whose name takes 8 s to resolve', { skip: SLOWDNS_SKIP }, () => {
  let stack;
  let dir;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-slowdns-'));
    const shim = path.join(dir, 'slowdns.so');
    const cc = spawnSync('cc', ['-shared', '-fPIC', '-O2', '-o', shim, path.join(ROOT, 'tests/tools/slowdns.c'), '-ldl'], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
    stack = await startStack({ threads: 4, procs: 1, env: { LD_PRELOAD: shim, SLOWDNS_MS: '8000', OPENAI_BASE_URL: 'http://slow.test:9/openai/v1' },
      config: (c) => c.replace('connect_timeout_ms = 10000;', 'connect_timeout_ms = 1000;').replace('max_retries = 2;', 'max_retries = 0;') });
  });
  after(async () => { if (stack) await stack.stop(); if (dir) fs.rmSync(dir, { recursive: true, force: true }); });

  it('a call that times out while its name resolves does not stop the other calls of the process', async (t) => {
    await stack.fake.script('anthropic', [{ hostile: { kind: 'endless', chunk: 'tick ', interval_ms: 200, max_ms: 12000 } }]);
    const times = [];
    const t0 = Date.now();
    const other = (async () => {
      const r = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'claude-sonnet-4-5', stream: true, max_tokens: 4000, messages: MSG }) });
      const reader = r.body.getReader();
      while (Date.now() - t0 < 7000) {
        const { done } = await reader.read();
        if (done) break;
        times.push(Date.now() - t0);
      }
      await reader.cancel();
    })();
    await sleep(1000);
    // connect_timeout_ms (1 s) ends it while slow.test is still being resolved.
    const slow = fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o', messages: MSG }) }).then((r) => r.text());
    await Promise.all([other, slow]);
    let gap = 0;
    for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i] - times[i - 1]);
    const row = stack.router.db("SELECT error_code, error_message, latency_ms FROM request_log WHERE model = 'gpt-4o' OR requested_model = 'gpt-4o'");
    t.diagnostic(`the other stream: ${times.length} reads, largest gap ${gap} ms; the timed-out call: ${JSON.stringify(row)}`);
    assert.ok(times.length > 10, `${times.length} reads`);
    assert.ok(gap < 1500 * SLOW, `the other stream stopped for ${gap} ms`);
  });
});

describe('the worker pool: held streams do not keep the next request waiting', () => {
  let stack;
  let baseThreads = 0;
  before(async () => {
    stack = await startStack({ threads: 8, procs: 1, config: (t) => t
      .replace('timeout_ms = 120000;', `timeout_ms = ${POOL_TIMEOUT_MS};`)
      .replace('keepalive_interval_ms = 15000;', 'keepalive_interval_ms = 300;')
      .replace('failures = 3;', 'failures = 0;') });
    baseThreads = responderThreads(stack.router);
  });
  after(async () => { await stack.stop(); });
  beforeEach(async () => { await stack.fake.reset(); });

  it('with eight comment-only streams open, a request for a healthy model is answered at once', async (t) => {
    await stack.fake.script('openai', Array.from({ length: 8 }, () => ({ hostile: { kind: 'comments', comment: 'OPENROUTER PROCESSING', interval_ms: 100, max_ms: HOSTILE_MS } })));
    let ended = 0;
    const open = Array.from({ length: 8 }, () => stream(stack.router, { model: 'gpt-4o', messages: MSG }).finally(() => { ended++; }));
    await waitFor(async () => (await stack.fake.requests()).filter((x) => x.provider === 'openai').length >= 8, 5000 * SLOW, 'eight hostile streams open');
    const healthy = await post(stack.router, { model: 'claude-haiku-4-5', messages: MSG });
    const openWhenAnswered = 8 - ended;
    const grown = responderThreads(stack.router);
    const all = await Promise.all(open);
    t.diagnostic(`healthy request answered in ${healthy.ms} ms with ${openWhenAnswered} comment-only streams open (${FRONT}); ` +
      `the eight ended after ${Math.min(...all.map((x) => x.ms))}..${Math.max(...all.map((x) => x.ms))} ms (timeout_ms ${POOL_TIMEOUT_MS}); ` +
      `responder threads ${baseThreads} idle, ${grown} with the eight held`);
    assert.equal(healthy.status, 200, healthy.text);
    assert.equal(healthy.json.model, 'claude-haiku-4-5');
    assert.equal(openWhenAnswered, 8, 'the eight streams were still open when the healthy request was answered');
    assert.ok(healthy.ms < 1500 * SLOW, `healthy request took ${healthy.ms} ms (the eight hold their workers for ${POOL_TIMEOUT_MS} ms)`);
    if (FRONT === 'lighttpd') assert.ok(grown > baseThreads, `responder threads: ${baseThreads} idle, ${grown} with the eight held`);
    const hrow = await stack.router.row(healthy.headers.get('x-request-id'));
    assert.deepEqual([hrow.status, hrow.model, hrow.attempts], [200, 'claude-haiku-4-5', 1]);
    for (const r of all) {
      assert.equal(r.status, 200);
      assert.equal(r.data[r.data.length - 1], '[DONE]');
      assert.ok(r.ms >= POOL_TIMEOUT_MS - 100 && r.ms < POOL_TIMEOUT_MS + 2 * MARGIN, `${r.ms} ms`);
      const a = await attempts(stack.router, r.id);
      assert.deepEqual(a.map((x) => [x.model, x.outcome, x.error_code]), [['gpt-4o', 'failed', 'upstream_timeout'], ['claude-sonnet-4-5', 'ok', null]]);
    }
  });

  it('the pool shrinks back to server.threads, and SIGTERM stops a grown pool cleanly', { skip: FRONT !== 'lighttpd' && 'needs the one multi-threaded responder lighttpd runs (mod_fcgid: one request per process; plain CGI: none)' }, async (t) => {
    // What the previous test grew is given back as its requests ended.
    await waitFor(() => responderThreads(stack.router) === baseThreads, 3000 * SLOW, `the responder back to ${baseThreads} threads`);
    // Twelve slow streams: the pool grows to twelve workers and one waiting.
    await stack.fake.script('openai', Array.from({ length: 12 }, () => ({ chunk_delay_ms: 200, text: 'a b c d e f g h' })));
    const pids = stack.router.responderPids();
    assert.equal(pids.length, 1);
    const open = Array.from({ length: 12 }, () => stream(stack.router, { model: 'gpt-4o', messages: MSG }));
    await waitFor(async () => (await stack.fake.requests()).filter((x) => x.provider === 'openai').length >= 12, 5000 * SLOW, 'twelve streams open');
    const grown = responderThreads(stack.router);
    process.kill(pids[0], 'SIGTERM');
    const all = await Promise.all(open);
    t.diagnostic(`responder threads ${baseThreads} idle, ${grown} with twelve streams; SIGTERM: the twelve completed`);
    assert.ok(grown >= baseThreads + 5, `${grown} threads`);
    for (const r of all) {
      assert.equal(r.status, 200);
      assert.equal(text(r.chunks), 'a b c d e f g h', 'the stream in flight completed');
      assert.equal(r.data[r.data.length - 1], '[DONE]');
    }
    await waitFor(() => !stack.router.responderPids().includes(pids[0]), 5000 * SLOW, 'the old responder to exit');
    // Every worker, the grown ones included, was joined: the process exited 0 on its own.
    assert.match(stack.router.errorLog(), new RegExp(`llm-router\\[${pids[0]}\\] info signal 15: finishing requests in flight[\\s\\S]*llm-router\\[${pids[0]}\\] info responder stopped`));
    await waitFor(() => /child exited: 0 /.test(stack.router.errorLog()), 2000 * SLOW, 'lighttpd to see the responder exit 0');
    assert.doesNotMatch(stack.router.errorLog(), /child exited: [1-9]|child signalled/);
    await waitFor(async () => (await fetch(stack.router.baseURL + '/models')).status === 200, 10000 * SLOW, 'service from a new responder');
  });
});

describe('libcurl re-sends a POST on a reused connection that dropped: each POST is an attempt row', { skip: FRONT !== 'lighttpd' && 'needs one persistent responder thread (connection reuse)' }, () => {
  let stack;
  before(async () => { stack = await startStack({ threads: 1, procs: 1, config: bounds }); });
  after(async () => { await stack.stop(); });

  it('the provider-side request count equals the attempt rows', async (t) => {
    const first = await post(stack.router, { model: 'gpt-4o', messages: MSG });
    assert.equal(first.status, 200, first.text);
    await stack.fake.reset();
    // The next request arrives on the kept-alive connection, which the provider drops at once.
    await stack.fake.script('openai', [{ close: true }]);
    const r = await post(stack.router, { model: 'gpt-4o', messages: MSG });
    assert.equal(r.status, 200, r.text);
    const posts = (await stack.fake.requests()).filter((x) => x.provider === 'openai');
    const a = await attempts(stack.router, r.headers.get('x-request-id'));
    t.diagnostic(`provider received ${posts.length} POSTs; attempt rows: ${a.map((x) => `${x.outcome}/${x.error_code}`).join(', ')}`);
    assert.equal(posts.length, 2, 'libcurl sent the request again on a new connection');
    assert.equal(a.length, posts.length);
    assert.deepEqual(a.map((x) => [x.model, x.outcome, x.error_code]), [['gpt-4o', 'failed', 'connection_dropped'], ['gpt-4o', 'ok', null]]);
    assert.equal(r.headers.get('x-router-attempts'), '2');
    const row = await stack.router.row(r.headers.get('x-request-id'));
    assert.deepEqual([row.status, row.attempts], [200, 2]);
    assert.ok(/sent 1 more time/.test(stack.router.errorLog()));
  });
});

// ---- a FastCGI connection that passes a slow upload on as it comes (mod_proxy_fcgi) ----

const FCGI = { BEGIN_REQUEST: 1, PARAMS: 4, STDIN: 5, STDOUT: 6 };

function record(type, body = Buffer.alloc(0), id = 1) {
  const pad = (8 - (body.length % 8)) % 8;
  const h = Buffer.from([1, type, id >> 8, id & 255, body.length >> 8, body.length & 255, pad, 0]);
  return Buffer.concat([h, body, Buffer.alloc(pad)]);
}

function params(obj) {
  const nvLen = (n) => (n < 128 ? Buffer.from([n]) : Buffer.from([(n >>> 24) | 0x80, (n >> 16) & 255, (n >> 8) & 255, n & 255]));
  const parts = [];
  for (const [k, v] of Object.entries(obj)) {
    const kb = Buffer.from(k);
    const vb = Buffer.from(String(v));
    parts.push(nvLen(kb.length), nvLen(vb.length), kb, vb);
  }
  return Buffer.concat(parts);
}

// A POST whose body (length bytes in all) is sent `rate` bytes every 100 ms (all at once without
// rate). Resolves to { stdout, ms } when the responder closes the connection.
function fcgiPost(port, body, { length, rate } = {}) {
  const t0 = Date.now();
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => {});
  const b = Buffer.from(body);
  const total = length || b.length;
  sock.write(record(FCGI.BEGIN_REQUEST, Buffer.from([0, 1, 0, 0, 0, 0, 0, 0])));
  sock.write(record(FCGI.PARAMS, params({
    GATEWAY_INTERFACE: 'CGI/1.1', SERVER_PROTOCOL: 'HTTP/1.1', REQUEST_METHOD: 'POST', REQUEST_URI: '/v1/chat/completions',
    SCRIPT_NAME: '/v1', PATH_INFO: '/chat/completions', CONTENT_TYPE: 'application/json', CONTENT_LENGTH: total,
    REMOTE_ADDR: '127.0.0.1', SERVER_NAME: '127.0.0.1', SERVER_PORT: '80',
  })));
  sock.write(record(FCGI.PARAMS));
  let timer = null;
  if (!rate) {
    sock.write(record(FCGI.STDIN, b));
    sock.write(record(FCGI.STDIN));
  } else {
    let off = 0;
    const full = Buffer.concat([b, Buffer.alloc(Math.max(0, total - b.length), 'x')]);
    timer = setInterval(() => {
      if (sock.destroyed) return;
      const piece = full.subarray(off, off + rate);
      off += piece.length;
      if (piece.length) sock.write(record(FCGI.STDIN, piece));
      if (off >= full.length) { sock.write(record(FCGI.STDIN)); clearInterval(timer); }
    }, 100);
  }
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let stdout = Buffer.alloc(0);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 8) {
        const len = buf.readUInt16BE(4);
        const pad = buf[6];
        if (buf.length < 8 + len + pad) break;
        if (buf[1] === FCGI.STDOUT) stdout = Buffer.concat([stdout, buf.subarray(8, 8 + len)]);
        buf = buf.subarray(8 + len + pad);
      }
    });
    sock.on('close', () => { if (timer) clearInterval(timer); resolve({ stdout: stdout.toString(), ms: Date.now() - t0 }); });
  });
}

describe('FastCGI without a buffering web server: slow uploads are cut at body_timeout_ms', { skip: FRONT !== 'lighttpd' && 'speaks FastCGI to the router directly: runs once' }, () => {
  let fake;
  let work;
  let served;
  let port;
  before(async () => {
    fake = await startFake();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-bounds-'));
    fs.mkdirSync(path.join(work, 'conf'));
    const conf = bounds(fs.readFileSync(path.join(ROOT, 'conf/llm-router.conf'), 'utf8'))
      .replace(/threads = \d+;/, 'threads = 2;')
      .replace('auth_mode = "key";', 'auth_mode = "none";')
      .replace('default_tier = "T3";', 'default_tier = "T1";');
    fs.writeFileSync(path.join(work, 'conf/llm-router.conf'), conf);
    served = await startServe(work, {
      ANTHROPIC_API_KEY: TEST_KEYS.ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL: `${fake.url}/anthropic`,
    });
    port = served.port;
  });
  after(async () => {
    await stopServe(served, work);
    await fake.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('two uploads at 1 KB/s on a two-thread responder get 408 at the bound; the next request is answered', async (t) => {
    const head = '{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"';
    const slow = [0, 1].map(() => fcgiPost(port, head, { length: 20000, rate: 100 }));
    await sleep(300);
    const healthy = await fcgiPost(port, JSON.stringify({ model: 'claude-haiku-4-5', messages: MSG }));
    const cut = await Promise.all(slow);
    t.diagnostic(`slow uploads answered after ${cut.map((c) => c.ms).join(', ')} ms (body_timeout_ms ${BODY_MS}); ` +
      `the next request after ${healthy.ms} ms`);
    assert.match(healthy.stdout, /^Status: 200/);
    assert.ok(healthy.ms < BODY_MS + MARGIN, `${healthy.ms} ms`);
    for (const c of cut) {
      assert.match(c.stdout, /^Status: 408/);
      const env = JSON.parse(c.stdout.slice(c.stdout.indexOf('\r\n\r\n') + 4));
      assert.equal(env.error.type, 'invalid_request_error');
      assert.equal(env.error.code, 'request_timeout');
      assert.ok(c.ms >= BODY_MS - 100 && c.ms < BODY_MS + MARGIN, `${c.ms} ms`);
    }
    const db = path.join(work, 'data/llm_logs.db');
    const rows = await waitFor(() => {
      const r = spawnSync('sqlite3', ['-json', db, 'SELECT * FROM request_log WHERE status = 408'], { encoding: 'utf8' });
      const v = r.stdout.trim() ? JSON.parse(r.stdout) : [];
      return v.length >= 2 ? v : null;
    }, 5000 * SLOW, 'the 408 rows');
    for (const row of rows) assert.deepEqual([row.error_code, row.cost_nusd], ['request_timeout', 0]);
    assert.match(served.log(), /did not arrive within server.body_timeout_ms \(1500 ms\); answered 408/);
  });

  it('behind Apache mod_proxy_fcgi, two uploads at 1 KB/s get 408 at the bound and free the threads', async (t) => {
    // apache/llm-router-proxy-fcgi.conf's ProxyPass, to this responder's TCP socket. As root,
    // Apache runs as www-data, as the shared-hosting test does.
    const account = process.getuid() === 0 ? { uid: 33, gid: 33 } : {};
    const aroot = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-proxy-fcgi-'));
    if (account.uid !== undefined) fs.chownSync(aroot, account.uid, account.gid);
    const aport = await freePort();
    const apache = spawnApache(path.join(aroot, 'apache'), aport, {
      withFcgid: false,
      spawnOpts: account,
      site: [
        'LoadModule proxy_module /usr/lib/apache2/modules/mod_proxy.so',
        'LoadModule proxy_fcgi_module /usr/lib/apache2/modules/mod_proxy_fcgi.so',
        `ProxyPass "/v1/" "fcgi://127.0.0.1:${port}/v1/" flushpackets=on timeout=180 nocanon`,
      ],
    });
    const socks = [];
    try {
      const base = `http://127.0.0.1:${aport}/v1`;
      await apacheReady(apache, base);
      const t0 = Date.now();
      const answers = [0, 1].map(() => new Promise((resolve) => {
        const s = net.connect(aport, '127.0.0.1');
        socks.push(s);
        let got = '';
        s.on('error', () => {});
        s.on('data', (d) => { got += d; if (/\r\n\r\n[\s\S]*\}/.test(got)) resolve({ got, ms: Date.now() - t0 }); });
        s.on('close', () => resolve({ got, ms: Date.now() - t0 }));
        s.write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 20000\r\n\r\n{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"');
        const timer = setInterval(() => { if (s.destroyed) clearInterval(timer); else s.write('x'.repeat(100)); }, 100);
        s.on('close', () => clearInterval(timer));
      }));
      await sleep(300);
      const t1 = Date.now();
      const healthy = await fetch(base + '/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'claude-haiku-4-5', messages: MSG }) });
      const healthyMs = Date.now() - t1;
      const cut = await Promise.all(answers);
      t.diagnostic(`mod_proxy_fcgi: uploads at 1 KB/s answered after ${cut.map((c) => c.ms).join(', ')} ms; the next request after ${healthyMs} ms`);
      assert.equal(healthy.status, 200, await healthy.text());
      assert.ok(healthyMs < BODY_MS + MARGIN, `${healthyMs} ms`);
      for (const c of cut) {
        assert.match(c.got, /^HTTP\/1\.1 408/, c.got);
        assert.match(c.got, /"code":\s*"request_timeout"/);
        assert.ok(c.ms < BODY_MS + MARGIN, `${c.ms} ms`);
      }
    } finally {
      for (const s of socks) s.destroy();
      killGroup(apache.proc, 'SIGKILL');
      fs.rmSync(aroot, { recursive: true, force: true });
    }
  });

  it('a body that arrives in time over many records is read whole', async () => {
    const body = JSON.stringify({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'y'.repeat(3000) }] });
    const r = await fcgiPost(port, body, { rate: 1000 });
    assert.match(r.stdout, /^Status: 200/);
    assert.match(r.stdout, /fake anthropic/);
  });
});
