// Fallback chains, retries and failure semantics, through lighttpd with a fault-injecting fake
// provider. Each test scripts the provider, sends one request (with the openai SDK where a client
// matters, with fetch where headers are asserted), and checks the final status, body, headers and
// the request_attempts rows in SQLite.
'use strict';
const { describe, it, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const net = require('net');
const OpenAI = require('openai').default;
const { FRONT, startStack, readSSE, waitFor, sleep, SLOW } = require('./lib/harness');
const { assertSchema } = require('./lib/schema');

const MSG = [{ role: 'user', content: 'hello' }];

async function post(router, body, opts = {}) {
  const r = await fetch(router.baseURL + '/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: opts.signal,
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch (e) { json = undefined; }
  return { status: r.status, headers: r.headers, text, json };
}

function closedPort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function attempts(router, id) {
  await router.row(id);
  return router.db(`SELECT * FROM request_attempts WHERE request_id = '${id}' ORDER BY attempt`);
}

function chunk(delta, finish = null) {
  return 'data: ' + JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta, finish_reason: finish }] });
}

describe('fallback chains', () => {
  let stack;
  let client;
  before(async () => {
    const dead = await closedPort();
    stack = await startStack({
      keys: ['OPENAI', 'ANTHROPIC', 'GEMINI', 'DEEPSEEK', 'OPENROUTER', 'GROQ'],
      env: { GROQ_BASE_URL: `http://127.0.0.1:${dead}/openai/v1` },
      config: (t) => t
        .replace('connect_timeout_ms = 10000;', 'connect_timeout_ms = 1000;')
        .replace('timeout_ms = 120000;', 'timeout_ms = 1500;')
        .replace('stream_idle_timeout_ms = 60000;', 'stream_idle_timeout_ms = 1000;')
        .replace('keepalive_interval_ms = 15000;', 'keepalive_interval_ms = 300;')
        .replace('backoff_ms = 100;', 'backoff_ms = 50;')
        .replace('failures = 3;', 'failures = 0;')
        .replace('models = (\n', 'models = (\n  { id = "llama-3.3-70b"; provider = "groq"; input_usd_per_mtok = 0.59; output_usd_per_mtok = 0.79; fallback = [ "gpt-4o-mini" ]; },\n'),
    });
    client = new OpenAI({ baseURL: stack.router.baseURL, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => { await stack.stop(); });
  beforeEach(async () => { await stack.fake.reset(); });

  // gpt-4o -> claude-sonnet-4-5 -> gemini-2.5-pro (conf/llm-router.conf)
  for (const status of [500, 502, 503, 504, 529]) {
    it(`upstream ${status} falls back to the next model of the chain`, async () => {
      await stack.fake.script('openai', [{ status, body: { error: { message: `scripted ${status}`, type: 'server_error' } } }]);
      const r = await post(stack.router, { model: 'gpt-4o', messages: MSG });
      assert.equal(r.status, 200, r.text);
      assertSchema('CreateChatCompletionResponse', r.json);
      assert.equal(r.json.model, 'claude-sonnet-4-5');
      assert.match(r.json.choices[0].message.content, /fake anthropic/);
      assert.equal(r.headers.get('x-router-model'), 'claude-sonnet-4-5');
      assert.equal(r.headers.get('x-router-provider'), 'anthropic');
      assert.equal(r.headers.get('x-router-attempts'), '2');
      assert.equal(r.headers.get('x-router-fallback-from'), 'gpt-4o');
      const id = r.headers.get('x-request-id');
      const row = await stack.router.row(id);
      assert.equal(row.requested_model, 'gpt-4o');
      assert.equal(row.model, 'claude-sonnet-4-5');
      assert.equal(row.attempts, 2);
      assert.equal(row.fallback_from, 'gpt-4o');
      assert.equal(row.status, 200);
      assert.ok(row.cost_nusd > 0, 'cost of the answering model');
      const a = await attempts(stack.router, id);
      assert.equal(a.length, 2);
      assert.deepEqual([a[0].model, a[0].provider, a[0].outcome, a[0].upstream_status], ['gpt-4o', 'openai', 'failed', status]);
      assert.ok(a[0].error_message.includes('openai'));
      assert.ok(a[0].latency_ms >= 0);
      assert.deepEqual([a[1].model, a[1].outcome, a[1].upstream_status, a[1].error_type], ['claude-sonnet-4-5', 'ok', 200, null]);
    });
  }

  it('non-trigger statuses (400, 404, 422) are the answer: no fallback', async () => {
    for (const [up, status] of [[400, 400], [404, 404], [422, 400]]) {
      await stack.fake.reset();
      await stack.fake.script('openai', [{ status: up, body: { error: { message: `scripted ${up}`, type: 'invalid_request_error' } } }]);
      const r = await post(stack.router, { model: 'gpt-4o', messages: MSG });
      assert.equal(r.status, status, `${up}: ${r.text}`);
      assertSchema('ErrorResponse', r.json);
      assert.equal(r.headers.get('x-router-attempts'), '1');
      assert.equal(r.headers.get('x-router-fallback-from'), null);
      const a = await attempts(stack.router, r.headers.get('x-request-id'));
      assert.equal(a.length, 1);
      assert.deepEqual([a[0].outcome, a[0].upstream_status, a[0].status], ['failed', up, status]);
      const reqs = await stack.fake.requests();
      assert.equal(reqs.length, 1, 'only the routed model was asked');
    }
  });

  it('429 with a short Retry-After is waited out and the same model asked again', async () => {
    await stack.fake.script('openai', [{ status: 429, headers: { 'retry-after': '1' }, body: { error: { message: 'slow down', type: 'requests' } } }]);
    const t0 = Date.now();
    const r = await post(stack.router, { model: 'gpt-4o', messages: MSG });
    const took = Date.now() - t0;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.model, 'gpt-4o');
    assert.equal(r.headers.get('x-router-attempts'), '2');
    assert.ok(took >= 950, `waited ${took} ms`);
    const a = await attempts(stack.router, r.headers.get('x-request-id'));
    assert.deepEqual(a.map((x) => [x.model, x.outcome, x.upstream_status, x.retry_after_s]), [['gpt-4o', 'failed', 429, 1], ['gpt-4o', 'ok', 200, null]]);
    const reqs = await stack.fake.requests();
    assert.ok(reqs[1].t - reqs[0].t >= 950, 'the second call came after Retry-After');
  });

  it('429 with a long Retry-After moves on down the chain at once', async () => {
    await stack.fake.script('openai', [{ status: 429, headers: { 'retry-after': '30' }, body: { error: { message: 'slow down' } } }]);
    const t0 = Date.now();
    const r = await post(stack.router, { model: 'gpt-4o', messages: MSG });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.model, 'claude-sonnet-4-5');
    assert.ok(Date.now() - t0 < 1000 * SLOW, 'no wait');
    const a = await attempts(stack.router, r.headers.get('x-request-id'));
    assert.deepEqual(a.map((x) => [x.model, x.outcome, x.upstream_status, x.retry_after_s]), [['gpt-4o', 'failed', 429, 30], ['claude-sonnet-4-5', 'ok', 200, null]]);
  });

  it('upstream 401 moves on, is logged loudly, and never reaches the client as a 401', async () => {
    await stack.fake.script('openai', [{ status: 401, body: { error: { message: 'Incorrect API key provided: sk-test-openai-SECRET-0001', type: 'invalid_request_error', code: 'invalid_api_key' } } }]);
    const res = await client.chat.completions.create({ model: 'gpt-4o', messages: MSG });
    assert.equal(res.model, 'claude-sonnet-4-5');
    const a = await attempts(stack.router, res.id);
    assert.deepEqual([a[0].outcome, a[0].upstream_status, a[0].status, a[0].error_type], ['failed', 401, 502, 'upstream_auth_error']);
    assert.ok(!a[0].error_message.includes('SECRET'), 'no key in the attempt row');
    await waitFor(() => /error .*provider openai rejected the router's credentials for gpt-4o \(HTTP 401\): check OPENAI_API_KEY/.test(stack.router.errorLog()), 3000 * SLOW, 'the log line');
    assert.ok(!stack.router.errorLog().includes('SECRET'), 'no key in the log');
  });

  it('when every attempt fails the client gets the last failure, naming the models tried', async () => {
    await stack.fake.script('openai', [{ status: 401, body: { error: { message: 'bad key' } } }]);
    await stack.fake.script('anthropic', [{ status: 401, body: { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } } }]);
    await stack.fake.script('gemini', [{ status: 403, body: { error: { code: 403, message: 'denied', status: 'PERMISSION_DENIED' } } }]);
    const r = await post(stack.router, { model: 'gpt-4o', messages: MSG });
    assert.equal(r.status, 502, r.text);
    assertSchema('ErrorResponse', r.json);
    assert.equal(r.json.error.type, 'upstream_auth_error');
    assert.match(r.json.error.message, /gemini/);
    assert.match(r.json.error.message, /models tried: gpt-4o, claude-sonnet-4-5, gemini-2.5-pro/);
    assert.equal(r.headers.get('x-router-attempts'), '3');
    assert.equal(r.headers.get('x-router-fallback-from'), 'gpt-4o,claude-sonnet-4-5');
    assert.equal(r.headers.get('x-should-retry'), 'false');
    const a = await attempts(stack.router, r.headers.get('x-request-id'));
    assert.deepEqual(a.map((x) => [x.model, x.outcome, x.upstream_status]), [['gpt-4o', 'failed', 401], ['claude-sonnet-4-5', 'failed', 401], ['gemini-2.5-pro', 'failed', 403]]);
    const row = await stack.router.row(r.headers.get('x-request-id'));
    assert.equal(row.status, 502);
    assert.equal(row.attempts, 3);
  });

  it('overload on every model: 503 with Retry-After, x-should-retry true', async () => {
    await stack.fake.script('openai', [{ status: 503, body: { error: { message: 'overloaded' } } }]);
    await stack.fake.script('anthropic', [{ status: 529, headers: { 'retry-after': '5' }, body: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } } }]);
    await stack.fake.script('gemini', [{ status: 503, headers: { 'retry-after': '4' }, body: { error: { code: 503, message: 'The model is overloaded.', status: 'UNAVAILABLE' } } }]);
    await assert.rejects(client.chat.completions.create({ model: 'gpt-4o', messages: MSG }), (e) => {
      assert.equal(e.status, 503);
      assert.equal(e.error.type, 'overloaded_error');
      assert.equal(e.headers.get('retry-after'), '4');
      assert.equal(e.headers.get('x-should-retry'), 'true');
      assert.match(e.message, /models tried: gpt-4o, claude-sonnet-4-5, gemini-2.5-pro/);
      return true;
    });
  });

  it('a model whose provider refuses connections falls back', async () => {
    const r = await post(stack.router, { model: 'llama-3.3-70b', messages: MSG });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.model, 'gpt-4o-mini');
    const a = await attempts(stack.router, r.headers.get('x-request-id'));
    assert.deepEqual([a[0].model, a[0].provider, a[0].outcome, a[0].upstream_status, a[0].error_code], ['llama-3.3-70b', 'groq', 'failed', null, 'upstream_unreachable']);
    assert.equal(a[1].outcome, 'ok');
  });

  it('a timeout falls back, and the timed-out connection is closed', async () => {
    await stack.fake.script('openai', [{ hang: true }]);
    const t0 = Date.now();
    const r = await post(stack.router, { model: 'gpt-4o', messages: MSG });
    const took = Date.now() - t0;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.model, 'claude-sonnet-4-5');
    assert.ok(took >= 1400 && took < 4000 * SLOW, `took ${took} ms with timeout_ms = 1500`);
    const a = await attempts(stack.router, r.headers.get('x-request-id'));
    assert.deepEqual([a[0].outcome, a[0].error_code, a[0].status], ['failed', 'upstream_timeout', 504]);
    const ev = (await stack.fake.events()).filter((e) => e.type === 'client_closed' && e.provider === 'openai');
    assert.equal(ev.length, 1);
  });

  it('a malformed 2xx body falls back', async () => {
    await stack.fake.script('openai', [{ status: 200, body: '{"id": "x", "choices": [' }]);
    const r = await post(stack.router, { model: 'gpt-4o', messages: MSG });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.model, 'claude-sonnet-4-5');
    const a = await attempts(stack.router, r.headers.get('x-request-id'));
    assert.deepEqual([a[0].outcome, a[0].upstream_status, a[0].error_code], ['failed', 200, 'bad_upstream_response']);
  });

  it('a connection dropped without a reply falls back', async () => {
    // libcurl retries a reused connection once by itself, so drop twice.
    await stack.fake.script('openai', [{ close: true }, { close: true }]);
    const r = await post(stack.router, { model: 'gpt-4o', messages: MSG });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.model, 'claude-sonnet-4-5');
    const a = await attempts(stack.router, r.headers.get('x-request-id'));
    assert.equal(a[0].outcome, 'failed');
    assert.equal(a[0].status, 502);
  });

  it("DeepSeek's insufficient_system_resource falls back to the next model", async () => {
    await stack.fake.script('deepseek', [{ status: 200, body: { id: 'x', object: 'chat.completion', created: 1, model: 'deepseek-chat', choices: [{ index: 0, message: { role: 'assistant', content: 'Partial ans' }, finish_reason: 'insufficient_system_resource' }], usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 } } }]);
    const r = await post(stack.router, { model: 'deepseek-chat', messages: MSG });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.model, 'gpt-4o-mini');
    assert.equal(r.json.choices[0].finish_reason, 'stop');
    const a = await attempts(stack.router, r.headers.get('x-request-id'));
    assert.deepEqual([a[0].model, a[0].outcome, a[0].error_code], ['deepseek-chat', 'failed', 'upstream_overloaded']);
  });

  it('an attempt that failed after the provider billed its tokens is charged too', async () => {
    await stack.fake.script('deepseek', [{ status: 200, body: { id: 'x', object: 'chat.completion', created: 1, model: 'deepseek-chat', choices: [{ index: 0, message: { role: 'assistant', content: 'Partial ans' }, finish_reason: 'insufficient_system_resource' }], usage: { prompt_tokens: 50000, completion_tokens: 8000, total_tokens: 58000 } } }]);
    const r = await post(stack.router, { model: 'deepseek-chat', messages: MSG, max_tokens: 8000 });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.model, 'gpt-4o-mini');
    const row = await stack.router.row(r.headers.get('x-request-id'));
    // deepseek-chat: $0.27 and $1.10 per million tokens: 50,000 in and 8,000 out are $0.0223.
    const deepseek = 50000 * 270 + 8000 * 1100;
    assert.ok(row.cost_nusd >= deepseek, `cost_nusd ${row.cost_nusd}, the failed attempt alone ${deepseek}`);
  });

  it('a stream cut before the first token falls back transparently (SDK stream)', async () => {
    await stack.fake.script('openai', [{ sse: [chunk({ role: 'assistant', content: '' }), chunk({ content: 'never' })], cut_after: 1 }]);
    const stream = await client.chat.completions.create({ model: 'gpt-4o', messages: MSG, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const c of stream) { assertSchema('CreateChatCompletionStreamResponse', c); chunks.push(c); }
    const text = chunks.map((c) => (c.choices[0] && c.choices[0].delta.content) || '').join('');
    assert.match(text, /fake anthropic \(claude-sonnet-4-5\)/);
    assert.ok(chunks.every((c) => c.model === 'claude-sonnet-4-5'));
    assert.ok(chunks[chunks.length - 1].usage.completion_tokens > 0);
    const a = await attempts(stack.router, chunks[0].id);
    assert.deepEqual(a.map((x) => x.outcome), ['failed', 'ok']);
    assert.equal(a[0].upstream_status, 200);
    const row = await stack.router.row(chunks[0].id);
    assert.equal(row.partial, 0);
    assert.equal(row.model, 'claude-sonnet-4-5');
  });

  it('a stream that stalls before the first token falls back', async () => {
    await stack.fake.script('openai', [{ sse: [chunk({ role: 'assistant', content: '' })], stall_after_ms: 4000 }]);
    const r = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', body: JSON.stringify({ model: 'gpt-4o', messages: MSG, stream: true }) });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-router-model'), 'claude-sonnet-4-5');
    assert.equal(r.headers.get('x-router-fallback-from'), 'gpt-4o');
    const events = await readSSE(r);
    assert.equal(events[events.length - 1].data, '[DONE]');
    const first = JSON.parse(events.find((e) => e.data).data);
    const a = await attempts(stack.router, first.id);
    assert.deepEqual([a[0].outcome, a[0].error_code], ['failed', 'upstream_stalled']);
  });

  it('a stream cut after content ends with an error event and [DONE]; the row is partial with the tokens seen', async () => {
    const ev = (name, data) => `event: ${name}\ndata: ${JSON.stringify(data)}`;
    await stack.fake.script('anthropic', [{
      sse: [
        ev('message_start', { type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null, usage: { input_tokens: 42, output_tokens: 1 } } }),
        ev('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
        ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'The first sixteen chars' } }),
        ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: ' and more' } }),
      ],
      cut_after: 3,
    }]);
    const stream = await client.chat.completions.create({ model: 'claude-sonnet-4-5', messages: MSG, stream: true });
    const seen = [];
    await assert.rejects((async () => { for await (const c of stream) seen.push(c); })(), (e) => {
      assert.ok(e instanceof OpenAI.APIError, e.constructor.name);
      return true;
    });
    assert.equal(seen.map((c) => c.choices[0].delta.content || '').join(''), 'The first sixteen chars');
    const row = await stack.router.row(seen[0].id);
    assert.equal(row.status, 200);
    assert.equal(row.partial, 1);
    assert.equal(row.input_tokens, 42);
    assert.equal(row.output_tokens, 6, 'about 4 characters a token of what was relayed');
    assert.equal(row.cost_source, 'estimate');
    assert.ok(row.cost_nusd > 0);
    assert.ok(row.error_code);
    const a = await attempts(stack.router, seen[0].id);
    assert.deepEqual(a.map((x) => x.outcome), ['partial']);
    const reqs = await stack.fake.requests();
    assert.equal(reqs.length, 1, 'no fallback once content reached the client');
  });

  it('a stream cut before its usage is charged its input too (OpenAI sends prompt tokens only at the end)', async () => {
    const chunk = (delta) => 'data: ' + JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta, finish_reason: null }] });
    await stack.fake.script('openai', [{ sse: [chunk({ role: 'assistant', content: '' }), chunk({ content: 'Some' }), chunk({ content: ' words' }), chunk({ content: ' more' })], cut_after: 3 }]);
    const big = [{ role: 'user', content: 'y'.repeat(40000) }];
    const stream = await client.chat.completions.create({ model: 'gpt-4o', messages: big, stream: true });
    const seen = [];
    await assert.rejects((async () => { for await (const c of stream) seen.push(c); })(), OpenAI.APIError);
    const row = await stack.router.row(seen[0].id);
    assert.equal(row.partial, 1);
    assert.equal(row.cost_source, 'estimate');
    // About 4 bytes of the request sent upstream a token, as the output is counted.
    assert.ok(row.input_tokens >= 10000 && row.input_tokens < 12000, `input_tokens ${row.input_tokens}`);
    // gpt-4o: $2.50 per million input tokens, 2,500 nano-USD a token.
    assert.ok(row.cost_nusd >= row.input_tokens * 2500, `cost_nusd ${row.cost_nusd}`);
  });

  it('a client that disconnects mid-stream aborts the upstream transfer at once', async (t) => {
    await stack.fake.script('openai', [{ chunk_delay_ms: 200, text: Array.from({ length: 60 }, (_, i) => `w${i}`).join(' ') }]);
    const ac = new AbortController();
    const r = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', body: JSON.stringify({ model: 'gpt-4o', messages: MSG, stream: true }), signal: ac.signal });
    const reader = r.body.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    const id = JSON.parse(first.split('\n').find((l) => l.startsWith('data: ')).slice(6)).id;
    const tAbort = Date.now();
    ac.abort();
    const ev = await waitFor(async () => (await stack.fake.events()).find((e) => e.type === 'client_closed'), 5000 * SLOW, 'the upstream connection to close');
    const delay = ev.wall - tAbort;
    t.diagnostic(`upstream closed ${delay} ms after the client left (mid-stream, 200 ms between events)`);
    assert.ok(delay < 1000 * SLOW, `upstream closed ${delay} ms after the client left`);
    assert.ok(ev.events_sent < 20, 'the rest of the stream was not sent');
    const row = await stack.router.row(id);
    assert.equal(row.error_type, 'client_disconnected');
    assert.equal(row.client_gone, 1);
    assert.equal(row.partial, 1);
    const a = await attempts(stack.router, id);
    assert.deepEqual(a.map((x) => x.outcome), ['cancelled']);
  });

  it('a client that disconnects mid-stream while the provider is silent is noticed at the next keep-alive', async (t) => {
    // One word, then a pause longer than keepalive_interval_ms (300 ms) but within the idle timeout.
    await stack.fake.script('openai', [{ chunk_delay_ms: 900, text: 'first second third fourth' }]);
    const ac = new AbortController();
    const r = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', body: JSON.stringify({ model: 'gpt-4o', messages: MSG, stream: true }), signal: ac.signal });
    const reader = r.body.getReader();
    await reader.read();
    const tAbort = Date.now();
    ac.abort();
    const ev = await waitFor(async () => (await stack.fake.events()).find((e) => e.type === 'client_closed'), 5000 * SLOW, 'the upstream connection to close');
    const delay = ev.wall - tAbort;
    t.diagnostic(`upstream closed ${delay} ms after the client left (provider silent, keep-alive every 300 ms)`);
    // lighttpd closes the FastCGI connection as soon as its write to the client fails. Apache's
    // first write after the client left still succeeds (the client's reset comes back after it);
    // the second fails, and only then does Apache close the connection to the router.
    const bound = FRONT === 'lighttpd' ? 800 : 1400;
    assert.ok(delay < bound * SLOW, `upstream closed ${delay} ms after the client left`);
    assert.ok(ev.events_sent < 4);
  });

  it('max_retries bounds the attempts even when the chain is longer', async () => {
    await stack.fake.script('openai', [{ status: 500, body: { error: { message: 'boom' } } }]);
    await stack.fake.script('anthropic', [{ status: 500, body: { type: 'error', error: { type: 'api_error', message: 'boom' } } }]);
    await stack.fake.script('gemini', [{ status: 500, body: { error: { code: 500, message: 'boom', status: 'INTERNAL' } } }]);
    const r = await post(stack.router, { model: 'gpt-4o', messages: MSG });
    assert.equal(r.status, 500, r.text);
    assert.equal(r.headers.get('x-router-attempts'), '3');
    assert.equal((await stack.fake.requests()).length, 3);
  });
});

describe('cooldown across responder processes', () => {
  let stack;
  before(async () => {
    stack = await startStack({
      procs: 2,
      threads: 4,
      config: (t) => t
        .replace('failures = 3;', 'failures = 2;')
        .replace('duration_s = 30;', 'duration_s = 3;'),
    });
  });
  after(async () => { await stack.stop(); });

  it('a failing model is skipped by every process, then probed once and used again', async () => {
    // gpt-4o-mini -> gemini-2.0-flash -> deepseek-chat
    await stack.fake.script('openai', [{ status: 500, body: { error: { message: 'down' } } }, { status: 500, body: { error: { message: 'down' } } }]);
    for (let i = 0; i < 2; i++) {
      const r = await post(stack.router, { model: 'gpt-4o-mini', messages: MSG });
      assert.equal(r.status, 200);
      assert.equal(r.json.model, 'gemini-2.0-flash');
    }
    await waitFor(() => /model gpt-4o-mini is skipped for 3 s \(cooldown\)/.test(stack.router.errorLog()), 3000 * SLOW, 'the cooldown log line');
    const health = stack.router.db("SELECT * FROM model_health WHERE model = 'gpt-4o-mini'")[0];
    assert.ok(health.cooldown_until_ms > Date.now(), 'the shared table holds the cooldown');
    // Each process re-reads the shared state at most every 250 ms (HEALTH_REFRESH_MS).
    await sleep(400);
    await stack.fake.reset();
    // Concurrent slow requests occupy both processes; none of them may call the cooled-down model.
    await stack.fake.script('gemini', Array.from({ length: 8 }, () => ({ chunk_delay_ms: 150 })));
    const rs = await Promise.all(Array.from({ length: 8 }, async () => {
      const r = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', body: JSON.stringify({ model: 'gpt-4o-mini', messages: MSG, stream: true }) });
      const events = await readSSE(r);
      return { status: r.status, headers: r.headers, id: JSON.parse(events.find((e) => e.data).data).id };
    }));
    for (const r of rs) {
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('x-router-model'), 'gemini-2.0-flash');
      assert.equal(r.headers.get('x-router-attempts'), '1');
      assert.equal(r.headers.get('x-router-fallback-from'), 'gpt-4o-mini');
      const a = await attempts(stack.router, r.id);
      assert.deepEqual(a.map((x) => [x.model, x.outcome, x.error_code]), [['gpt-4o-mini', 'skipped', 'model_cooling_down'], ['gemini-2.0-flash', 'ok', null]]);
    }
    const reqs = await stack.fake.requests();
    assert.equal(reqs.filter((x) => x.provider === 'openai').length, 0, 'no call to the cooled-down model');
    // Both processes skipped it: the log lines carry the responder's pid.
    const pids = new Set();
    for (const r of rs) {
      const m = stack.router.errorLog().match(new RegExp(`llm-router\\[(\\d+)\\] info \\[${r.id}\\] gpt-4o-mini skipped`));
      if (m) pids.add(m[1]);
    }
    assert.ok(pids.size >= 2, `skipped in ${pids.size} process(es)`);
    // After the cooldown one request probes the model; it answers, and everybody uses it again.
    await sleep(3100);
    await stack.fake.reset();
    const probe = await post(stack.router, { model: 'gpt-4o-mini', messages: MSG });
    assert.equal(probe.status, 200);
    assert.equal(probe.json.model, 'gpt-4o-mini', `probe answered by ${probe.json.model}; attempts ${JSON.stringify(stack.router.db(`SELECT * FROM request_attempts WHERE request_id = '${probe.headers.get('x-request-id')}'`))}; health ${JSON.stringify(stack.router.db('SELECT * FROM model_health'))}; now ${Date.now()}\n${stack.router.errorLog().slice(-4000)}`);
    await waitFor(() => stack.router.db("SELECT cooldown_until_ms FROM model_health WHERE model = 'gpt-4o-mini'")[0].cooldown_until_ms === 0, 3000 * SLOW, 'the cooldown to end');
    await sleep(300);
    const after = await Promise.all(Array.from({ length: 4 }, () => post(stack.router, { model: 'gpt-4o-mini', messages: MSG })));
    for (const r of after) assert.equal(r.json.model, 'gpt-4o-mini');
  });
});
