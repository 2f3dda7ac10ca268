// Streams are incremental end to end: the client sees the first token while the upstream is
// still generating, events arrive one by one through lighttpd, many streams run concurrently
// over the responder pool, and a client that leaves stops the upstream transfer.
'use strict';
const { describe, it, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { startStack, readSSE, waitFor, SLOW } = require('./lib/harness');
const { assertSchema } = require('./lib/schema');

const BODY = (extra) => JSON.stringify(Object.assign({
  model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'stream slowly' }],
}, extra));

describe('streaming', () => {
  let stack;
  before(async () => { stack = await startStack({ procs: 2, threads: 4 }); });
  after(async () => { await stack.stop(); });
  beforeEach(async () => { await stack.fake.reset(); });

  it('delivers the first chunk before the upstream has finished', async () => {
    const delay = 250;
    await stack.fake.script('openai', [{ chunk_delay_ms: delay, text: 'one two three four five six seven eight' }]);
    const t0 = Date.now();
    const r = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', body: BODY() });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /text\/event-stream/);
    let firstContent = null;
    const events = await readSSE(r, (ev) => {
      if (firstContent === null && ev.data && ev.data.includes('"content":"one')) firstContent = Date.now() - t0;
    });
    const end = Date.now() - t0;
    // 8 words -> the fake sleeps 250 ms between its ~11 events: it needs >= 2.5 s in all.
    assert.ok(firstContent !== null, 'content arrived');
    assert.ok(end - firstContent >= 1500, `first content at ${firstContent} ms, end at ${end} ms: not incremental`);
    const contentTimes = events.filter((e) => e.data && e.data.includes('"content":"') && !e.data.includes('"content":""')).map((e) => e.t);
    assert.equal(contentTimes.length, 8);
    // Each word is its own event, spaced by the upstream's delay: never batched.
    const gaps = contentTimes.slice(1).map((t, i) => t - contentTimes[i]);
    assert.ok(gaps.filter((g) => g >= delay * 0.5).length >= 6, `gaps ${gaps}`);
    assert.equal(events[events.length - 1].data, '[DONE]');
    for (const e of events) if (e.data && e.data !== '[DONE]') assertSchema('CreateChatCompletionStreamResponse', JSON.parse(e.data));
  });

  it('serves many concurrent streams over 2 processes x 4 threads', async () => {
    const n = 16;
    await stack.fake.script('openai', Array.from({ length: n }, () => ({ chunk_delay_ms: 40 })));
    const t0 = Date.now();
    const results = await Promise.all(Array.from({ length: n }, async () => {
      const r = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', body: BODY() });
      const ev = await readSSE(r);
      return { status: r.status, last: ev[ev.length - 1].data, id: JSON.parse(ev[0].data).id };
    }));
    assert.ok(results.every((x) => x.status === 200 && x.last === '[DONE]'));
    assert.equal(new Set(results.map((x) => x.id)).size, n, 'distinct request ids');
    const rows = stack.router.db(`SELECT count(*) AS n FROM request_log WHERE stream = 1 AND status = 200 AND ts_start_ms >= ${t0 - 1000}`);
    assert.ok(rows[0].n >= n);
  });

  it('aborts the upstream transfer when the client disconnects', async () => {
    await stack.fake.script('openai', [{ chunk_delay_ms: 300, text: Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ') }]);
    const ac = new AbortController();
    const r = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', body: BODY(), signal: ac.signal });
    const reader = r.body.getReader();
    await reader.read();
    const tAbort = Date.now();
    ac.abort();
    const ev = await waitFor(async () => (await stack.fake.events()).find((e) => e.type === 'client_closed'), 5000 * SLOW, 'the upstream connection to close');
    const delay = ev.wall - tAbort;
    // The router sees the client gone at its next write (the next upstream event, <= 300 ms).
    assert.ok(delay < 2000 * SLOW, `upstream closed ${delay} ms after the client left`);
    const rows = await waitFor(() => stack.router.db("SELECT * FROM request_log WHERE client_gone = 1"), 5000 * SLOW, 'the row of the cancelled call');
    assert.equal(rows[0].error_type, 'client_disconnected');
  });

  it('sends keep-alive comments while the upstream is silent', async () => {
    const s2 = await startStack({ procs: 1, config: (t) => t.replace('keepalive_interval_ms = 15000;', 'keepalive_interval_ms = 300;') });
    try {
      await s2.fake.script('openai', [{ chunk_delay_ms: 1200, text: 'slow words here' }]);
      const r = await fetch(s2.router.baseURL + '/chat/completions', { method: 'POST', body: BODY() });
      const events = await readSSE(r);
      assert.ok(events.some((e) => e.comment), 'a keep-alive comment arrived');
      assert.equal(events[events.length - 1].data, '[DONE]');
    } finally { await s2.stop(); }
  });
});
