// Memory per call is bounded, provider stream state (issue 13, item 3, follow-up of
// bounds-memory.test.js): Anthropic's thinking block in progress (text and signature), and the
// SSE parser's one event (held once, not twice). Each case gets a fresh router (one responder
// process, so that its peak RSS belongs to this case alone) and asserts the client's answer, the
// request-log row and attempts, the charge, and the peak RSS against an ordinary request.
//
// Measured figures are printed (BOUND lines) so that a run documents the before/after numbers.
'use strict';
const { describe, it, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const { FRONT, SANITIZER, startStack, readSSE, SLOW } = require('./lib/harness');

const MSG = [{ role: 'user', content: 'hello' }];
const MiB = 1024 * 1024;
// Growth allowed over an ordinary request, per case (README "Memory per call"); ASan keeps freed
// memory in quarantine and shadows what it maps.
// Under a sanitizer the responder also holds the sanitizer's own memory (ASan's shadow and
// quarantine, valgrind's queue of freed blocks, 20 MB by default): the bounds are scaled.
const SCALE = SANITIZER ? 4 : 1;
const BOUND_MB = Object.fromEntries(Object.entries({ thinking: 24, signature: 24, wide_event: 24 }).map(([k, v]) => [k, v * SCALE]));

async function post(router, body) {
  const r = await fetch(router.baseURL + '/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (r.status === 200 && /event-stream/.test(r.headers.get('content-type') || '')) {
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

// A fresh router with one responder and short timeouts; the chains claude-haiku-4-5 ->
// gpt-4o-mini and gpt-4o -> claude-sonnet-4-5 only, so that a failed attempt falls back once.
async function fresh() {
  stack = await startStack({
    procs: 1,
    threads: 4,
    webMaxBody: 16 << 20, // bodies reach the router on a shared host too (FcgidMaxRequestLen)
    config: (t) => t
      .replace('timeout_ms = 120000;', 'timeout_ms = 20000;')
      .replace('failures = 3;', 'failures = 0;')
      .replace('fallback = [ "gpt-4o-mini", "gemini-2.0-flash" ]; },\n  { id = "gpt-4o"', 'fallback = [ "gpt-4o-mini" ]; },\n  { id = "gpt-4o"')
      .replace('fallback = [ "claude-sonnet-4-5", "gemini-2.5-pro" ]; },\n  { id = "gpt-4o-mini"', 'fallback = [ "claude-sonnet-4-5" ]; },\n  { id = "gpt-4o-mini"'),
  });
  // The peak of an ordinary call in this set-up: the base the bounds are measured from. A CGI
  // process may end between two samples: the fake waits 150 ms before answering, and the call is
  // measured again until one was seen.
  let base;
  for (let i = 0; i < 5; i++) {
    await stack.fake.script('openai', [{ delay_ms: 150 }]);
    base = await stack.router.measureMemory(() => post(stack.router, { model: 'gpt-4o-mini', messages: MSG }));
    assert.equal(base.result.status, 200, short(base.result.text));
    if (Math.max(base.hwmMB, base.rssMB) > 0) break;
  }
  const cost = (await stack.router.row(base.result.headers.get('x-request-id'))).cost_nusd;
  assert.ok(cost > 0);
  return { baseMB: Math.max(base.hwmMB, base.rssMB), miniCost: cost };
}

function short(s) { return String(s === undefined ? '' : s).slice(0, 400); }

function report(name, base, m) {
  const peak = Math.max(m.hwmMB, m.rssMB);
  console.log(`BOUND ${FRONT} ${name}: base ${base.baseMB.toFixed(1)} MB, peak ${peak.toFixed(1)} MB, growth ${(peak - base.baseMB).toFixed(1)} MB (bound ${BOUND_MB[name]} MB)`);
}

function checkBound(name, base, m) {
  const growth = Math.max(m.hwmMB, m.rssMB) - base.baseMB;
  assert.ok(growth < BOUND_MB[name], `${name}: the responder grew by ${growth.toFixed(1)} MB (bound ${BOUND_MB[name]} MB)`);
}

function dataOf(r) { return r.events.filter((e) => e.data).map((e) => e.data); }

function text(data, key) {
  return data.filter((d) => d !== '[DONE]').map((d) => (JSON.parse(d).choices || []).map((c) => c.delta[key] || '').join('')).join('');
}

// The first attempt failed on a bound before anything reached the client: the fallback answered
// the stream cleanly and only its answer is charged.
async function checkFellBack(r, first, second, cost, re) {
  assert.equal(r.status, 200);
  const data = dataOf(r);
  assert.equal(data[data.length - 1], '[DONE]');
  assert.ok(!data.some((d) => d.includes('"error"')), 'the fallback answered cleanly');
  assert.ok(text(data, 'content').length > 0);
  assert.equal(text(data, 'reasoning_content'), '');
  const id = r.headers.get('x-request-id');
  const row = await stack.router.row(id);
  assert.equal(row.model, second);
  assert.equal(row.status, 200);
  assert.equal(row.attempts, 2);
  if (cost !== undefined) assert.equal(row.cost_nusd, cost, 'the failed attempt is not charged');
  const a = await attempts(stack.router, id);
  assert.deepEqual(a.map((x) => [x.model, x.outcome]), [[first, 'failed'], [second, 'ok']]);
  assert.equal(a[0].status, 502);
  assert.equal(a[0].error_code, 'bad_upstream_response');
  assert.match(a[0].error_message, re);
}

describe('memory per call is bounded: provider stream state', { timeout: 120000 * SLOW }, () => {
  it('an Anthropic thinking block of 64 MB ends the stream with an error event and [DONE]', async () => {
    const base = await fresh();
    await stack.fake.script('anthropic', [{ hostile: { kind: 'thinking', bytes: 64 * MiB, chunk: 'thinking '.repeat(400) } }]);
    const m = await stack.router.measureMemory(() => post(stack.router, { model: 'claude-haiku-4-5', messages: MSG, stream: true, reasoning_effort: 'low' }));
    report('thinking', base, m);
    const r = m.result;
    assert.equal(r.status, 200, short(r.text));
    const data = dataOf(r);
    assert.equal(data[data.length - 1], '[DONE]');
    const err = JSON.parse(data[data.length - 2]);
    assert.ok(err.error, short(data[data.length - 2]));
    // Anthropic always sends max_tokens, so the output cap (bounds-budget.test.js) usually ends a
    // thinking flood before the 4 MiB bound on the kept thinking text: either ends it.
    assert.ok(['output_limit_exceeded', 'bad_upstream_response'].includes(err.error.code), data[data.length - 2]);
    assert.match(err.error.message, /thinking|more output than the request allows/);
    const reasoning = text(data.slice(0, -2), 'reasoning_content');
    assert.ok(reasoning.length > 0 && reasoning.length < 64 * MiB, `relayed ${reasoning.length} chars of thinking`);
    assert.equal(text(data.slice(0, -2), 'content'), '', 'the text after the block never came');
    const id = r.headers.get('x-request-id');
    const row = await stack.router.row(id);
    assert.equal(row.model, 'claude-haiku-4-5');
    assert.equal(row.error_code, err.error.code);
    assert.ok(row.cost_nusd > 0, 'what was relayed is charged');
    assert.equal((await attempts(stack.router, id)).length, 1);
    checkBound('thinking', base, m);
  });

  it('an Anthropic signature of 64 MB fails the attempt before any content and falls back', async () => {
    const base = await fresh();
    await stack.fake.script('anthropic', [{ hostile: { kind: 'thinking', signature: true, bytes: 64 * MiB } }]);
    const m = await stack.router.measureMemory(() => post(stack.router, { model: 'claude-haiku-4-5', messages: MSG, stream: true, reasoning_effort: 'low' }));
    report('signature', base, m);
    await checkFellBack(m.result, 'claude-haiku-4-5', 'gpt-4o-mini', undefined, /signature/);
    const row = await stack.router.row(m.result.headers.get('x-request-id'));
    // gpt-4o-mini's answer, and what Anthropic billed the failed attempt (its message_start: 10
    // input tokens and 1 output token of claude-haiku-4-5, $0.80 and $4.00 per million).
    const failed = 10 * 800 + 1 * 4000;
    assert.ok(row.cost_nusd > failed && row.cost_nusd <= failed + base.miniCost * 2, `charged ${row.cost_nusd} for gpt-4o-mini's answer and the failed attempt's ${failed}`);
    checkBound('signature', base, m);
  });

  it('one 15 MiB stream event is held once by the SSE parser, fails before content and falls back', async () => {
    const base = await fresh();
    await stack.fake.script('openai', [{ hostile: { kind: 'wide_stream', bytes: 15 * MiB } }]);
    const m = await stack.router.measureMemory(() => post(stack.router, { model: 'gpt-4o', messages: MSG, stream: true }));
    report('wide_event', base, m);
    await checkFellBack(m.result, 'gpt-4o', 'claude-sonnet-4-5', undefined, /memory|too large|larger/i);
    checkBound('wide_event', base, m);
  });
});
