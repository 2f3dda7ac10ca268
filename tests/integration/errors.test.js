// Every failure answers with OpenAI's error envelope and the right status, through lighttpd:
// client errors, unavailable providers, upstream errors mapped per provider-protocols.md 10.3,
// transport failures, and an error in the middle of a stream. The openai SDK surfaces each as
// its typed error. Every refused call still leaves a row in the request log.
'use strict';
const { describe, it, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const OpenAI = require('openai').default;
const { startStack, TEST_KEYS, readSSE } = require('./lib/harness');
const { assertSchema } = require('./lib/schema');

const MSG = [{ role: 'user', content: 'hello' }];

async function post(router, body, headers = {}) {
  const r = await fetch(router.baseURL + '/chat/completions', {
    method: 'POST',
    headers: Object.assign({ 'content-type': 'application/json' }, headers),
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch (e) { json = undefined; }
  return { status: r.status, headers: r.headers, text, json };
}

// The envelope: {"error":{"message","type","param","code"}}, all four keys present.
function assertEnvelope(res, status, type, code, param) {
  assert.equal(res.status, status, res.text);
  assert.ok(res.json, 'JSON body: ' + res.text);
  assertSchema('ErrorResponse', res.json);
  const e = res.json.error;
  assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0);
  if (type !== undefined) assert.equal(e.type, type);
  if (code !== undefined) assert.equal(e.code, code);
  if (param !== undefined) assert.equal(e.param, param);
  assert.match(res.headers.get('content-type'), /application\/json/);
  assert.match(res.headers.get('x-request-id'), /^chatcmpl-/);
  for (const k of Object.values(TEST_KEYS)) assert.ok(!res.text.includes(k), 'no API key in the error');
}

describe('error answers', () => {
  let stack;
  let client;
  before(async () => {
    stack = await startStack({
      keys: ['OPENAI', 'DEEPSEEK', 'OPENROUTER', 'ANTHROPIC', 'GEMINI'],
      config: (t) => t
        .replace('max_body_bytes = 8388608;', 'max_body_bytes = 65536;')
        // Each upstream failure is the answer here (fallback has its own tests).
        .replace('max_retries = 2;', 'max_retries = 0;')
        .replace('failures = 3;', 'failures = 0;')
        .replace('timeout_ms = 120000;', 'timeout_ms = 1500;')
        .replace('stream_idle_timeout_ms = 60000;', 'stream_idle_timeout_ms = 1500;')
        .replace('models = (\n', 'models = (\n  { id = "llama-3.3-70b"; provider = "groq"; input_usd_per_mtok = 0.59; output_usd_per_mtok = 0.79; },\n'),
    });
    client = new OpenAI({ baseURL: stack.router.baseURL, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => { await stack.stop(); });
  beforeEach(async () => { await stack.fake.reset(); });

  describe('client errors', () => {
    it('malformed JSON -> 400', async () => {
      const r = await post(stack.router, '{"model": "gpt-4o", "messages": [');
      assertEnvelope(r, 400, 'invalid_request_error', null, null);
      assert.match(r.json.error.message, /parse the JSON/);
      const row = await stack.router.row(r.headers.get('x-request-id'));
      assert.equal(row.status, 400);
      assert.equal(row.error_type, 'invalid_request_error');
    });
    it('empty body -> 400', async () => {
      assertEnvelope(await post(stack.router, ''), 400, 'invalid_request_error');
    });
    it('body that is not an object -> 400', async () => {
      assertEnvelope(await post(stack.router, '[1,2]'), 400, 'invalid_request_error');
    });
    it('missing model -> 400 naming model', async () => {
      assertEnvelope(await post(stack.router, { messages: MSG }), 400, 'invalid_request_error', null, 'model');
    });
    it('model of the wrong type -> 400 naming model', async () => {
      assertEnvelope(await post(stack.router, { model: 42, messages: MSG }), 400, 'invalid_request_error', null, 'model');
    });
    it('missing messages -> 400 naming messages', async () => {
      assertEnvelope(await post(stack.router, { model: 'gpt-4o' }), 400, 'invalid_request_error', null, 'messages');
    });
    it('empty messages -> 400', async () => {
      assertEnvelope(await post(stack.router, { model: 'gpt-4o', messages: [] }), 400, 'invalid_request_error', null, 'messages');
    });
    it('bad role -> 400 naming the message', async () => {
      assertEnvelope(await post(stack.router, { model: 'gpt-4o', messages: [{ role: 'wizard', content: 'x' }] }), 400, 'invalid_request_error', null, 'messages[0].role');
    });
    it('temperature of the wrong type -> 400 naming temperature', async () => {
      assertEnvelope(await post(stack.router, { model: 'gpt-4o', messages: MSG, temperature: 'hot' }), 400, 'invalid_request_error', null, 'temperature');
    });
    it('temperature out of range -> 400', async () => {
      assertEnvelope(await post(stack.router, { model: 'gpt-4o', messages: MSG, temperature: 7 }), 400, 'invalid_request_error', null, 'temperature');
    });
    it('stream of the wrong type -> 400', async () => {
      assertEnvelope(await post(stack.router, { model: 'gpt-4o', messages: MSG, stream: 'yes' }), 400, 'invalid_request_error', null, 'stream');
    });
    it('stream_options without stream -> 400', async () => {
      assertEnvelope(await post(stack.router, { model: 'gpt-4o', messages: MSG, stream_options: { include_usage: true } }), 400, 'invalid_request_error', null, 'stream_options');
    });
    it('duplicate keys -> 400', async () => {
      assertEnvelope(await post(stack.router, '{"model":"gpt-4o","model":"o1","messages":[{"role":"user","content":"x"}]}'), 400, 'invalid_request_error');
    });
    it('unknown model -> 404 model_not_found, as the SDK NotFoundError', async () => {
      await assert.rejects(client.chat.completions.create({ model: 'gpt-99', messages: MSG }), (e) => {
        assert.ok(e instanceof OpenAI.NotFoundError, e.constructor.name);
        assert.equal(e.status, 404);
        assert.equal(e.code, 'model_not_found');
        assert.equal(e.param, 'model');
        return true;
      });
      const r = await post(stack.router, { model: 'gpt-99', messages: MSG });
      assertEnvelope(r, 404, 'invalid_request_error', 'model_not_found', 'model');
      const row = await stack.router.row(r.headers.get('x-request-id'));
      assert.equal(row.requested_model, 'gpt-99');
      assert.equal(row.error_code, 'model_not_found');
    });
    it('malformed OpenRouter id -> 404', async () => {
      assertEnvelope(await post(stack.router, { model: 'openrouter/gpt-4o', messages: MSG }), 404, 'invalid_request_error', 'model_not_found');
      assertEnvelope(await post(stack.router, { model: 'openrouter/*', messages: MSG }), 404, 'invalid_request_error', 'model_not_found');
    });
    it('body over the configured limit -> 413', async () => {
      const big = 'x'.repeat(70000);
      const r = await post(stack.router, { model: 'gpt-4o', messages: [{ role: 'user', content: big }] });
      assertEnvelope(r, 413, 'invalid_request_error', 'request_too_large');
      const reqs = await stack.fake.requests();
      assert.equal(reqs.length, 0, 'nothing reached the provider');
    });
    it('body just under the limit is accepted', async () => {
      const r = await post(stack.router, { model: 'gpt-4o', messages: [{ role: 'user', content: 'y'.repeat(64000) }] });
      assert.equal(r.status, 200, r.text);
    });
    it('wrong method -> 405 with Allow', async () => {
      const r0 = await fetch(stack.router.baseURL + '/chat/completions');
      const r = { status: r0.status, headers: r0.headers, text: await r0.text() };
      r.json = JSON.parse(r.text);
      assertEnvelope(r, 405, 'invalid_request_error', 'method_not_allowed');
      assert.equal(r.headers.get('allow'), 'POST');
      const r1 = await fetch(stack.router.baseURL + '/models', { method: 'POST', body: '{}' });
      assert.equal(r1.status, 405);
      assert.equal(r1.headers.get('allow'), 'GET');
    });
    it('unknown path -> 404', async () => {
      for (const p of ['/nope', '/chat/completions/extra', '/chat']) {
        const r0 = await fetch(stack.router.baseURL + p, { method: 'POST', body: '{}' });
        const r = { status: r0.status, headers: r0.headers, text: await r0.text() };
        r.json = JSON.parse(r.text);
        assertEnvelope(r, 404, 'invalid_request_error', 'unknown_url');
      }
    });
    it('unavailable provider (no key) -> 503, never a crash', async () => {
      const r = await post(stack.router, { model: 'llama-3.3-70b', messages: MSG });
      assertEnvelope(r, 503, 'provider_unavailable', 'provider_unavailable');
      assert.match(r.json.error.message, /GROQ_API_KEY/);
      await assert.rejects(client.chat.completions.create({ model: 'llama-3.3-70b', messages: MSG }), OpenAI.InternalServerError);
      const stream = await post(stack.router, { model: 'llama-3.3-70b', messages: MSG, stream: true });
      assertEnvelope(stream, 503, 'provider_unavailable');
    });
  });

  describe('upstream errors', () => {
    const cases = [
      { up: 400, body: { error: { message: 'bad thing', type: 'invalid_request_error', code: 'context_length_exceeded', param: 'messages' } }, status: 400, type: 'invalid_request_error', code: 'context_length_exceeded', sdk: OpenAI.BadRequestError },
      { up: 401, body: { error: { message: `Incorrect API key provided: ${TEST_KEYS.OPENAI_API_KEY}`, type: 'invalid_request_error', code: 'invalid_api_key' } }, status: 502, type: 'upstream_auth_error', code: 'upstream_authentication_failed', sdk: OpenAI.InternalServerError },
      { up: 403, body: { error: { message: 'forbidden', type: 'permission_error' } }, status: 502, type: 'upstream_auth_error', sdk: OpenAI.InternalServerError },
      { up: 402, body: { error: { message: 'no credit' } }, status: 402, type: 'insufficient_quota', code: 'insufficient_quota', sdk: OpenAI.APIError },
      { up: 404, body: { error: { message: 'no such model' } }, status: 404, type: 'invalid_request_error', code: 'model_not_found', sdk: OpenAI.NotFoundError },
      { up: 429, headers: { 'retry-after': '7' }, body: { error: { message: 'slow down', type: 'requests', code: 'rate_limit_exceeded' } }, status: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded', retryAfter: '7', sdk: OpenAI.RateLimitError },
      { up: 500, body: { error: { message: 'boom', type: 'server_error' } }, status: 500, type: 'server_error', sdk: OpenAI.InternalServerError },
      { up: 502, body: '<html>bad gateway</html>', status: 502, type: 'server_error', code: 'bad_upstream_response', sdk: OpenAI.InternalServerError },
      { up: 503, body: { error: { message: 'overloaded' } }, status: 503, type: 'overloaded_error', code: 'upstream_overloaded', retryAfter: '1', sdk: OpenAI.InternalServerError },
      { up: 504, body: { error: { message: 'slow' } }, status: 504, type: 'timeout_error', sdk: OpenAI.InternalServerError },
      { up: 529, headers: { 'retry-after': '3' }, body: { error: { message: 'Overloaded', type: 'overloaded_error' } }, status: 503, type: 'overloaded_error', code: 'upstream_overloaded', retryAfter: '3', sdk: OpenAI.InternalServerError },
    ];
    for (const c of cases) {
      it(`upstream ${c.up} -> ${c.status} ${c.type}`, async () => {
        await stack.fake.script('openai', [{ status: c.up, body: c.body, headers: c.headers }, { status: c.up, body: c.body, headers: c.headers }]);
        const r = await post(stack.router, { model: 'gpt-4o', messages: MSG });
        assertEnvelope(r, c.status, c.type, c.code);
        if (c.retryAfter) assert.equal(r.headers.get('retry-after'), c.retryAfter);
        if (c.up === 401 || c.up === 403) {
          assert.match(r.json.error.message, /openai/);
          assert.match(r.json.error.message, /OPENAI_API_KEY/);
          assert.ok(!r.json.error.message.includes('Incorrect API key'), 'upstream text of a credentials error is not relayed');
        }
        const row = await stack.router.row(r.headers.get('x-request-id'));
        assert.equal(row.status, c.status);
        assert.equal(row.error_type, c.type);
        assert.equal(row.provider, 'openai');
        await assert.rejects(client.chat.completions.create({ model: 'gpt-4o', messages: MSG }), (e) => {
          assert.ok(e instanceof c.sdk, `${e.constructor.name} is not ${c.sdk.name}`);
          assert.equal(e.status, c.status);
          return true;
        });
      });
    }

    it('upstream 429 on a stream request -> 429 before any byte', async () => {
      await stack.fake.script('openai', [{ status: 429, headers: { 'retry-after': '2' }, body: { error: { message: 'slow down' } } }]);
      const r = await post(stack.router, { model: 'gpt-4o', messages: MSG, stream: true });
      assertEnvelope(r, 429, 'rate_limit_error', 'rate_limit_exceeded');
      assert.equal(r.headers.get('retry-after'), '2');
    });

    it('2xx reply that is not JSON -> 502 bad_upstream_response', async () => {
      await stack.fake.script('openai', [{ status: 200, body: 'this is not json' }]);
      assertEnvelope(await post(stack.router, { model: 'gpt-4o', messages: MSG }), 502, 'server_error', 'bad_upstream_response');
    });

    it('connection closed by the upstream -> 502', async () => {
      // libcurl retries once, on a fresh connection, when a reused one dies before any byte.
      await stack.fake.script('openai', [{ close: true }, { close: true }]);
      assertEnvelope(await post(stack.router, { model: 'gpt-4o', messages: MSG }), 502, 'server_error');
    });

    it('no answer within upstream.timeout_ms -> 504', async () => {
      await stack.fake.script('openai', [{ hang: true }]);
      const t0 = Date.now();
      const r = await post(stack.router, { model: 'gpt-4o', messages: MSG });
      assertEnvelope(r, 504, 'timeout_error', 'upstream_timeout');
      assert.ok(Date.now() - t0 < 6000);
    });

    it('stream that stalls after starting -> error event and [DONE]', async () => {
      await stack.fake.script('openai', [{ sse: ['data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}'], stall_after_ms: 4000 }]);
      const r = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', body: JSON.stringify({ model: 'gpt-4o', messages: MSG, stream: true }) });
      assert.equal(r.status, 200);
      const events = await readSSE(r);
      const data = events.filter((e) => e.data).map((e) => e.data);
      assert.equal(data[data.length - 1], '[DONE]');
      const err = JSON.parse(data[data.length - 2]);
      assertSchema('ErrorResponse', err);
      assert.equal(err.error.code, 'upstream_stalled');
    });

    it('error in the middle of a stream -> the SDK raises after the content', async () => {
      const chunk = (d) => 'data: ' + JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta: d, finish_reason: null }] });
      await stack.fake.script('openai', [{ sse: [chunk({ role: 'assistant', content: '' }), chunk({ content: 'Partial' }), 'data: {"error":{"message":"The server had an error while processing your request.","type":"server_error"}}'] }]);
      const stream = await client.chat.completions.create({ model: 'gpt-4o', messages: MSG, stream: true });
      const seen = [];
      await assert.rejects((async () => { for await (const c of stream) seen.push(c); })(), (e) => {
        assert.ok(e instanceof OpenAI.APIError, e.constructor.name);
        assert.match(e.message, /server had an error/);
        return true;
      });
      assert.equal(seen.map((c) => c.choices[0].delta.content || '').join(''), 'Partial');
      const row = await stack.router.row(seen[0].id);
      assert.equal(row.status, 200);
      assert.equal(row.error_type, 'server_error');
    });

    it('stream cut before the first token -> an HTTP error, not a broken stream', async () => {
      await stack.fake.script('openai', [{ sse: ['data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}', 'data: {"id":"x"'], cut_after: 1 }]);
      const r = await post(stack.router, { model: 'gpt-4o', messages: MSG, stream: true });
      assertEnvelope(r, 502, 'server_error');
    });
  });
});
