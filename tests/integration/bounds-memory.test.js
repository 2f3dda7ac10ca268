// Memory per call is bounded (issue 13, item 3): a hostile upstream (tests/fake/hostile.js) or a
// hostile client body cannot grow a responder past a stated bound. Each case gets a fresh router
// (one responder process, so that its peak RSS belongs to this case alone) and asserts the
// client's answer, the request-log row and attempts, the charge, and the peak RSS of the router
// processes against the RSS of an ordinary request in the same set-up.
//
// Measured figures are printed (BOUND lines) so that a run documents the before/after numbers.
'use strict';
const { describe, it, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('child_process');
const { FRONT, SANITIZER, startStack, readSSE, SLOW } = require('./lib/harness');

const MSG = [{ role: 'user', content: 'hello' }];
const MiB = 1024 * 1024;
// Growth allowed over an ordinary request, per case (see README "Memory per call"); ASan keeps
// freed memory in quarantine and shadows what it maps.
// Under a sanitizer the responder also holds the sanitizer's own memory (ASan's shadow and
// quarantine, valgrind's queue of freed blocks, 20 MB by default): the bounds are scaled.
const SCALE = SANITIZER ? 4 : 1;
const BOUND_MB = Object.fromEntries(Object.entries({ wide_json: 48, wide_stream: 64, role_only: 16, reasoning: 16, gzip_bomb: 16, wide_body: 120 }).map(([k, v]) => [k, v * SCALE]));

async function post(router, body, opts = {}) {
  const r = await fetch(router.baseURL + '/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  if (opts.sse && r.status === 200 && /event-stream/.test(r.headers.get('content-type') || '')) {
    const events = await readSSE(r);
    return { status: r.status, headers: r.headers, events };
  }
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch (e) { json = undefined; }
  return { status: r.status, headers: r.headers, text, json };
}

async function attempts(router, id) {
  await router.row(id);
  return router.db(`SELECT * FROM request_attempts WHERE request_id = '${id}' ORDER BY attempt`);
}

let stack = null;
afterEach(async () => { if (stack) await stack.stop(); stack = null; });

// A fresh router with one responder (threads for the concurrent case) and short timeouts; the
// chain gpt-4o -> claude-sonnet-4-5 only, so that a failed attempt falls back once. more(text)
// edits the configuration further.
async function fresh(threads = 4, more = (t) => t) {
  stack = await startStack({
    procs: 1,
    threads,
    webMaxBody: 16 << 20, // bodies reach the router on a shared host too (FcgidMaxRequestLen)
    config: (t) => more(t)
      .replace('timeout_ms = 120000;', 'timeout_ms = 20000;')
      .replace('failures = 3;', 'failures = 0;')
      .replace('fallback = [ "claude-sonnet-4-5", "gemini-2.5-pro" ]; },\n  { id = "gpt-4o-mini"', 'fallback = [ "claude-sonnet-4-5" ]; },\n  { id = "gpt-4o-mini"'),
  });
  // The peak of an ordinary call in this set-up: the base the bounds are measured from.
  const base = await stack.router.measureMemory(() => post(stack.router, { model: 'claude-sonnet-4-5', messages: MSG }));
  assert.equal(base.result.status, 200, short(base.result.text));
  const cost = (await stack.router.row(base.result.headers.get('x-request-id'))).cost_nusd;
  assert.ok(cost > 0);
  return { baseMB: Math.max(base.hwmMB, base.rssMB), claudeCost: cost };
}

function short(s) { return String(s === undefined ? '' : s).slice(0, 400); }

// Prints the figure (before any assertion, so that a failing run documents it too).
function report(name, base, m) {
  const peak = Math.max(m.hwmMB, m.rssMB);
  const growth = peak - base.baseMB;
  console.log(`BOUND ${FRONT} ${name}: base ${base.baseMB.toFixed(1)} MB, peak ${peak.toFixed(1)} MB, growth ${growth.toFixed(1)} MB (bound ${BOUND_MB[name]} MB)`);
}

function checkBound(name, base, m) {
  const growth = Math.max(m.hwmMB, m.rssMB) - base.baseMB;
  assert.ok(growth < BOUND_MB[name], `${name}: the responder grew by ${growth.toFixed(1)} MB (bound ${BOUND_MB[name]} MB)`);
}

// A non-streaming attempt that failed on a bound fell back to claude-sonnet-4-5 and was not
// charged: the row costs what claude's answer costs.
async function checkFellBack(r, base, codeRe) {
  assert.equal(r.status, 200, short(r.text));
  const id = r.headers.get('x-request-id');
  const row = await stack.router.row(id);
  assert.equal(row.model, 'claude-sonnet-4-5');
  assert.equal(row.status, 200);
  assert.equal(row.attempts, 2);
  assert.equal(row.cost_nusd, base.claudeCost, 'the failed attempt is not charged');
  const a = await attempts(stack.router, id);
  assert.deepEqual(a.map((x) => [x.model, x.outcome]), [['gpt-4o', 'failed'], ['claude-sonnet-4-5', 'ok']]);
  assert.equal(a[0].status, 502);
  assert.equal(a[0].error_code, 'bad_upstream_response');
  assert.match(a[0].error_message, codeRe);
  return row;
}

describe('memory per call is bounded', { timeout: 120000 * SLOW }, () => {
  it('a wide JSON reply (12 MiB of [0,0,...]) fails the attempt at the parse bound and falls back', async () => {
    const base = await fresh();
    await stack.fake.script('openai', [{ hostile: { kind: 'wide_json', bytes: 12 * MiB } }]);
    const m = await stack.router.measureMemory(() => post(stack.router, { model: 'gpt-4o', messages: MSG }));
    report('wide_json', base, m);
    const r = m.result;
    assert.equal(r.json && r.json.model, 'claude-sonnet-4-5', short(r.text));
    await checkFellBack(r, base, /memory|too large|larger/i);
    checkBound('wide_json', base, m);
  });

  it('a stream whose first event is 12 MiB of [0,0,...] fails before content and falls back', async () => {
    const base = await fresh();
    await stack.fake.script('openai', [{ hostile: { kind: 'wide_stream', bytes: 12 * MiB } }]);
    const m = await stack.router.measureMemory(() => post(stack.router, { model: 'gpt-4o', messages: MSG, stream: true }, { sse: true }));
    report('wide_stream', base, m);
    const r = m.result;
    assert.equal(r.status, 200);
    const data = r.events.filter((e) => e.data).map((e) => e.data);
    assert.equal(data[data.length - 1], '[DONE]');
    assert.ok(!data.some((d) => d.includes('"error"')), 'the fallback answered cleanly');
    assert.match(data.map((d) => d === '[DONE]' ? '' : JSON.parse(d).choices.map((c) => c.delta.content || '').join('')).join(''), /fake anthropic/);
    await checkFellBack(r, base, /memory|too large|larger/i);
    checkBound('wide_stream', base, m);
  });

  it('64 MB of role-only chunks before any content fail the attempt and fall back', async () => {
    const base = await fresh();
    await stack.fake.script('openai', [{ hostile: { kind: 'role_only', bytes: 64 * MiB } }]);
    const m = await stack.router.measureMemory(() => post(stack.router, { model: 'gpt-4o', messages: MSG, stream: true }, { sse: true }));
    report('role_only', base, m);
    const r = m.result;
    assert.equal(r.status, 200);
    const data = r.events.filter((e) => e.data).map((e) => e.data);
    assert.equal(data[data.length - 1], '[DONE]');
    assert.ok(data.length < 100, `the client got ${data.length} events, not the held flood`);
    await checkFellBack(r, base, /before any content/i);
    checkBound('role_only', base, m);
  });

  it('a 64 MB reasoning_content flood ends the stream with an error event and [DONE]', async () => {
    const base = await fresh();
    await stack.fake.script('deepseek', [{ hostile: { kind: 'reasoning', bytes: 64 * MiB, chunk: 'thinking '.repeat(400) } }]);
    const m = await stack.router.measureMemory(() => post(stack.router, { model: 'deepseek-reasoner', messages: MSG, stream: true }, { sse: true }));
    report('reasoning', base, m);
    const r = m.result;
    assert.equal(r.status, 200);
    const data = r.events.filter((e) => e.data).map((e) => e.data);
    assert.equal(data[data.length - 1], '[DONE]');
    const err = JSON.parse(data[data.length - 2]);
    assert.ok(err.error, short(data[data.length - 2]));
    assert.equal(err.error.code, 'bad_upstream_response', data[data.length - 2]);
    assert.match(err.error.message, /reasoning/);
    const reasoning = data.slice(0, -2).map((d) => JSON.parse(d).choices.map((c) => c.delta.reasoning_content || '').join('')).join('');
    assert.ok(reasoning.length > 0 && reasoning.length < 64 * MiB, `relayed ${reasoning.length} chars of reasoning`);
    const id = r.headers.get('x-request-id');
    const row = await stack.router.row(id);
    assert.equal(row.model, 'deepseek-reasoner');
    assert.equal(row.error_code, 'bad_upstream_response');
    assert.ok(row.cost_nusd > 0, 'what was relayed is charged');
    const a = await attempts(stack.router, id);
    assert.equal(a.length, 1);
    checkBound('reasoning', base, m);
  });

  it('a gzip bomb (256 MiB of spaces) is refused, not inflated, and falls back', async () => {
    const base = await fresh();
    await stack.fake.script('openai', [{ hostile: { kind: 'gzip_bomb', bytes: 256 * MiB } }]);
    const m = await stack.router.measureMemory(() => post(stack.router, { model: 'gpt-4o', messages: MSG }));
    report('gzip_bomb', base, m);
    const r = m.result;
    assert.equal(r.json && r.json.model, 'claude-sonnet-4-5', short(r.text));
    await checkFellBack(r, base, /not a JSON object|larger|encod/i);
    const reqs = await stack.fake.requests();
    const first = reqs.find((q) => q.provider === 'openai');
    if (first && first.headers) assert.ok(!/gzip|br|zstd|deflate/.test(first.headers['accept-encoding'] || ''), 'no compressed reply is asked for');
    checkBound('gzip_bomb', base, m);
  });

  it('eight 8 MiB client bodies of [0,0,...] at once get 413 and a logged refusal', async () => {
    const base = await fresh(8);
    const body = '[' + '0,'.repeat(4 * MiB - 2) + '0]';
    assert.ok(body.length <= 8 * MiB);
    const m = await stack.router.measureMemory(() => Promise.all(Array.from({ length: 8 }, () => post(stack.router, body))));
    report('wide_body', base, m);
    for (const r of m.result) {
      assert.equal(r.status, 413, short(r.text));
      assert.equal(r.json.error.type, 'invalid_request_error');
      assert.equal(r.json.error.code, 'request_too_large');
      assert.match(r.json.error.message, /memory/);
      const row = await stack.router.row(r.headers.get('x-request-id'));
      assert.equal(row.status, 413);
      assert.equal(row.cost_nusd, 0);
    }
    checkBound('wide_body', base, m);
  });
});

// The calls in flight of one responder hold at most server.call_memory_mb together (README "Memory
// per call"): a burst of large bodies beyond it is answered 503 server_busy with Retry-After, and
// the responder neither grows with the burst nor dies. CALL_MEMORY_MB=65536 runs the same burst
// with the cap out of reach, for the figure without it.
describe('calls in flight hold at most server.call_memory_mb together', { timeout: 120000 * SLOW, skip: FRONT !== 'lighttpd' && 'one multi-threaded responder: the lighttpd set-up' }, () => {
  const CAP_MB = Number(process.env.CALL_MEMORY_MB || 64);
  const CAPPED = CAP_MB < 65536;
  const N = 12;
  // Growth allowed over an ordinary call: the cap, plus what the gauge does not count (each
  // admitted call's upstream transfer, libfcgi's and libcurl's buffers, the allocator's slack).
  const GROWTH_MB = (CAP_MB + 96) * SCALE;

  it(`${N} bodies of 7 MiB of text at once, one responder (call_memory_mb = ${CAP_MB}): 200 or 503 server_busy, within the bound`, async () => {
    stack = await startStack({
      procs: 1,
      threads: N,
      webMaxBody: 16 << 20,
      config: (t) => t.replace(/max_threads = \d+;/, `max_threads = ${N};`).replace(/call_memory_mb = \d+;/, `call_memory_mb = ${CAP_MB};`),
    });
    const router = stack.router;
    const pids = router.responderPids();
    assert.equal(pids.length, 1, `one responder: ${pids}`);
    const base = await router.measureMemory(() => post(router, { model: 'gpt-4o-mini', messages: MSG }));
    assert.equal(base.result.status, 200, short(base.result.text));
    const baseMB = Math.max(base.hwmMB, base.rssMB);
    // An ordinary long user message: text, not a shape that is costly to parse.
    const words = 'The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. ';
    const text = words.repeat(Math.ceil(7 * MiB / words.length)).slice(0, 7 * MiB - 256);
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: text }] });
    // The provider holds each answer a second, so that the admitted calls are in flight together.
    await stack.fake.script('openai', Array.from({ length: N }, () => ({ delay_ms: 1000 })));
    const m = await router.measureMemory(() => Promise.all(Array.from({ length: N }, () => post(router, body))));
    const peak = Math.max(m.hwmMB, m.rssMB);
    const growth = peak - baseMB;
    const ok = m.result.filter((r) => r.status === 200);
    const busy = m.result.filter((r) => r.status === 503);
    console.log(`BOUND ${FRONT} call_memory_mb = ${CAP_MB}: ${N} bodies of 7 MiB at once, ${ok.length} answered, ${busy.length} busy; base ${baseMB.toFixed(1)} MB, peak ${peak.toFixed(1)} MB, growth ${growth.toFixed(1)} MB (bound ${CAPPED ? GROWTH_MB : 'none'} MB)`);
    for (const r of m.result) {
      assert.ok(r.status === 200 || r.status === 503, `${r.status}: ${short(r.text)}`);
      if (r.status !== 503) continue;
      assert.equal(r.json.error.type, 'server_error', short(r.text));
      assert.equal(r.json.error.code, 'server_busy');
      assert.match(r.json.error.message, new RegExp(`server\\.call_memory_mb = ${CAP_MB} MB`));
      assert.equal(r.headers.get('retry-after'), '1');
      const row = await router.row(r.headers.get('x-request-id'));
      assert.equal(row.status, 503);
      assert.equal(row.error_code, 'server_busy');
      assert.equal(row.cost_nusd, 0);
    }
    assert.ok(ok.length >= 1, 'some of the calls were admitted');
    for (const r of ok) {
      assert.equal(r.json.model, 'gpt-4o-mini');
      const row = await router.row(r.headers.get('x-request-id'));
      assert.equal(row.status, 200);
    }
    if (CAPPED) {
      assert.ok(busy.length >= 1, 'the calls beyond the cap were told to come back');
      assert.ok(growth < GROWTH_MB, `the responder grew by ${growth.toFixed(1)} MB (bound ${GROWTH_MB} MB)`);
      assert.match(router.errorLog(), /warn .*server\.call_memory_mb \(\d+ MB\)/);
    }
    // The same process is there, and serves the next call.
    assert.deepEqual(router.responderPids(), pids);
    const after = await post(router, { model: 'gpt-4o-mini', messages: MSG });
    assert.equal(after.status, 200, short(after.text));
  });

  // A reply the process cannot hold is not the provider's fault: the attempt fails as for a reply
  // past its own bounds (the next model answers), and its message names the process's limit.
  it('a reply or a stream event the process cannot hold fails its attempt naming call_memory_mb, and the next model answers', async () => {
    const base = await fresh(4, (t) => t.replace(/call_memory_mb = \d+;/, 'call_memory_mb = 16;'));
    await stack.fake.script('openai', [{ text: 'lorem ipsum '.repeat(MiB) }, { hostile: { kind: 'wide_stream', bytes: 12 * MiB } }]);
    const whole = await post(stack.router, { model: 'gpt-4o', messages: MSG });
    assert.equal(whole.json && whole.json.model, 'claude-sonnet-4-5', short(whole.text));
    await checkFellBack(whole, base, /could not be held: .*server\.call_memory_mb = 16 MB/);
    const streamed = await post(stack.router, { model: 'gpt-4o', messages: MSG, stream: true });
    assert.equal(streamed.status, 200, short(streamed.text));
    await checkFellBack(streamed, base, /could not be held: .*server\.call_memory_mb = 16 MB/);
    assert.match(stack.router.errorLog(), /warn .*server\.call_memory_mb \(16 MB\)/);
  });
});

// Database connections follow the database work, not the calls in flight (README "Memory per
// call"): with 48 slow streams at once through one responder of 48 threads, the responder keeps
// its writer's, checkpointer's and maintenance connections and a few readers, not one per call.
describe('calls in flight hold no database connection', { skip: FRONT !== 'lighttpd' && 'one multi-threaded responder: the lighttpd set-up' }, () => {
  const fs = require('fs');
  // Open connections, by their descriptors of the WAL file (SQLite may keep a closed
  // connection's descriptor of the database file itself for reuse while others hold locks).
  const dbFds = (pids, db) => pids.reduce((n, pid) => {
    let fds = [];
    try { fds = fs.readdirSync(`/proc/${pid}/fd`); } catch (e) { return n; }
    return n + fds.filter((fd) => { try { return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === db; } catch (e) { return false; } }).length;
  }, 0);

  it('48 slow streams at once keep at most 12 connections open (budget holds on)', async () => {
    const n = 48;
    stack = await startStack({ procs: 1, threads: n, config: (t) => t.replace(/max_threads = \d+;/, `max_threads = ${n};`) });
    const router = stack.router;
    // Every thread has served a request (before, each would have opened its own connection).
    await stack.fake.script('openai', Array.from({ length: n }, () => ({ chunk_delay_ms: 5 })));
    const warm = await Promise.all(Array.from({ length: n }, () => post(router, { model: 'gpt-4o', messages: MSG, stream: true }, { sse: true })));
    assert.ok(warm.every((r) => r.status === 200));
    const idle = dbFds(router.responderPids(), router.dbPath + '-wal');
    await stack.fake.script('openai', Array.from({ length: n }, () => ({ chunk_delay_ms: 250 })));
    let first = 0;
    const calls = Array.from({ length: n }, async () => {
      const r = await fetch(router.baseURL + '/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o', messages: MSG, stream: true }) });
      const events = await readSSE(r, () => { first++; });
      return { status: r.status, events };
    });
    // Every call has begun streaming: all n are in flight at once.
    const t0 = Date.now();
    while (first < n && Date.now() - t0 < 10000 * SLOW) await new Promise((res) => setTimeout(res, 20));
    const during = dbFds(router.responderPids(), router.dbPath + '-wal');
    const results = await Promise.all(calls);
    console.log(`BOUND ${FRONT} db connections: ${during} open with ${n} streams in flight (${idle} after ${n} calls at once)`);
    assert.ok(results.every((r) => r.status === 200 && r.events[r.events.length - 1].data === '[DONE]'));
    assert.ok(first >= n, 'all calls streamed at once');
    assert.ok(during <= 12, `${during} connections to the database with ${n} calls in flight`);
  });

  it('120 new calls while another process holds the write lock open at most 32 reader connections', async () => {
    // Each new call borrows a reader for its key lookup and budget hold, and keeps it while its
    // reservation waits for the database lock (another process writing: a backup, the sqlite3
    // CLI). Opening one per waiting call would cost ~150 KB each, which the allocator keeps long
    // after: the pool makes the others wait for one instead.
    const n = 120;
    stack = await startStack({ procs: 1, threads: 8, config: (t) => t.replace(/max_threads = \d+;/, `max_threads = ${n + 8};`) });
    const router = stack.router;
    await stack.fake.script('openai', Array.from({ length: n }, () => ({ chunk_delay_ms: 20 })));
    const holder = spawn('sqlite3', [router.dbPath], { stdio: ['pipe', 'ignore', 'ignore'] });
    holder.stdin.write(".timeout 5000\nBEGIN IMMEDIATE;\nINSERT INTO model_health (model) VALUES ('lock-holder');\n");
    await new Promise((res) => setTimeout(res, 300));
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, dbFds(router.responderPids(), router.dbPath + '-wal'));
        await new Promise((res) => setTimeout(res, 5));
      }
    })();
    const calls = Array.from({ length: n }, async () => {
      const r = await fetch(router.baseURL + '/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o', messages: MSG, stream: true }) });
      return { status: r.status, events: await readSSE(r) };
    });
    // Let the burst arrive and wait on the lock, then let it go (within the 5 s busy timeout).
    await new Promise((res) => setTimeout(res, 2500));
    holder.stdin.end('ROLLBACK;\n.quit\n');
    const results = await Promise.all(calls);
    sampling = false;
    await sampler;
    console.log(`BOUND ${FRONT} db connections: at most ${peak} open while ${n} new calls waited on a locked database`);
    assert.ok(results.every((r) => r.status === 200 && r.events[r.events.length - 1].data === '[DONE]'),
      JSON.stringify(results.filter((r) => r.status !== 200).slice(0, 3)));
    // 32 readers, the writer, its checkpointer, the maintenance thread and the alert sender.
    assert.ok(peak <= 36, `${peak} connections to the database while ${n} calls waited`);
  });
});
