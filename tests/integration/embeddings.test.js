// POST /v1/embeddings through the web server, driven by the official openai SDK with an agent's
// key: OpenAI upstream (the body forwarded, base64 passed through) and Gemini upstream
// (batchEmbedContents in chunks of 100, dimensions -> outputDimensionality, vectors normalised,
// base64 encoded by the router, usage estimated). The fake provider's vectors are deterministic
// (tests/fake/provider.js exports its rules), so every vector is checked against the one expected.
// Also: validation 400s, chat/embedding model mix-ups, retries on the same model (never another),
// the request-log row, its cost and the tier's spend, and the `endpoints` of GET /v1/models.
'use strict';
const { describe, it, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('child_process');
const OpenAI = require('openai').default;
const { startStack, waitFor, ROUTER_BIN, TEST_KEYS, SLOW } = require('./lib/harness');
const { assertSchema } = require('./lib/schema');
const fakeRules = require('../fake/provider.js');

const { embedVector, geminiVector, embedTokens } = fakeRules;

// The embedding models of conf/llm-router.conf: provider, default length, nano-USD per token
// (USD per Mtok x 1000).
const MODELS = {
  'text-embedding-3-small': { provider: 'openai', dims: 1536, nusd: 20 },
  'text-embedding-3-large': { provider: 'openai', dims: 3072, nusd: 130 },
  'gemini-embedding-001': { provider: 'gemini', dims: 3072, nusd: 150 },
};
const GEMINI_MODEL = 'gemini-embedding-001';
const GEMINI_BATCH_PATH = `/gemini/v1beta/models/${GEMINI_MODEL}:batchEmbedContents`;
const TEXTS = ['The quick brown fox jumps over the lazy dog.', 'héllo wörld ✓ – UTF-8 counts bytes', 'third'];
// Agents of each tier in the shipped configuration.
const TIER_AGENTS = { T2: 'devops_agent', T3: 'kb_manager', T4: 'n8n_engineer' };

const day = () => new Date().toISOString().slice(0, 10);
const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const normalise = (v) => { const n = norm(v); return v.map((x) => x / n); };
const usageOf = (items) => items.reduce((s, x) => s + embedTokens(x), 0);

function assertUnit(v, what) {
  assert.ok(Math.abs(norm(v) - 1) < 1e-4, `${what}: |v| = ${norm(v)}, expected 1`);
}

function assertClose(actual, expected, what, tol = 1e-6) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= tol)) assert.fail(`${what}: [${i}] = ${actual[i]}, expected ${expected[i]}`);
  }
}

// What the client should get for one text: OpenAI's vector as the fake makes it; Gemini's made
// unit length by the router (a no-op at 3072).
function expectedVector(model, text, dims) {
  if (MODELS[model].provider === 'gemini') return normalise(geminiVector(text, dims));
  return embedVector(text, dims || MODELS[model].dims);
}

function cli(router, args) {
  const r = spawnSync(ROUTER_BIN, args, { env: router.env, encoding: 'utf8', timeout: 30000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('POST /v1/embeddings', () => {
  let stack;
  const keys = {};
  let client;
  const post = async (p, body, key = keys.T3) => {
    const r = await fetch(stack.router.baseURL + p, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await r.text();
    let json;
    try { json = JSON.parse(text); } catch (e) { json = undefined; }
    return { status: r.status, headers: r.headers, text, json };
  };
  const upstream = async () => (await stack.fake.requests()).filter((x) => x.api);
  const spend = (scope) => (stack.router.db(`SELECT spent_nusd FROM budget_spend WHERE day = '${day()}' AND scope = '${scope}'`)[0] || { spent_nusd: 0 }).spent_nusd;

  before(async () => {
    // Agents' keys as in production. Upstream failures are under test: no cooldown, so a model
    // failed on purpose is asked again by the next test.
    stack = await startStack({ auth: true, config: (t) => t.replace('failures = 3;', 'failures = 0;') });
    for (const [tier, agent] of Object.entries(TIER_AGENTS)) {
      const made = cli(stack.router, ['keys', 'create', '--agent', agent]);
      assert.equal(made.status, 0, made.stderr);
      keys[tier] = made.stdout.trim();
    }
    client = new OpenAI({ baseURL: stack.router.baseURL, apiKey: keys.T3, maxRetries: 0 });
  });
  after(async () => { await stack.stop(); });
  beforeEach(async () => { await stack.fake.reset(); });

  it('GET /v1/models names the endpoint of every model', async () => {
    const raw = await (await fetch(stack.router.baseURL + '/models', { headers: { authorization: `Bearer ${keys.T3}` } })).json();
    assertSchema('ListModelsResponse', raw);
    const ids = raw.data.map((m) => m.id);
    for (const id of Object.keys(MODELS)) assert.ok(ids.includes(id), `${id} listed`);
    for (const m of raw.data) {
      assertSchema('Model', m);
      const want = MODELS[m.id] ? ['/v1/embeddings'] : ['/v1/chat/completions'];
      assert.deepEqual(m.endpoints, want, m.id);
      if (MODELS[m.id]) assert.equal(m.owned_by, MODELS[m.id].provider, m.id);
    }
    const one = await (await fetch(stack.router.baseURL + '/models/text-embedding-3-small', { headers: { authorization: `Bearer ${keys.T3}` } })).json();
    assert.equal(one.id, 'text-embedding-3-small');
    assert.deepEqual(one.endpoints, ['/v1/embeddings']);
    const chat = await (await fetch(stack.router.baseURL + '/models/gpt-4o-mini', { headers: { authorization: `Bearer ${keys.T3}` } })).json();
    assert.deepEqual(chat.endpoints, ['/v1/chat/completions']);
  });

  for (const model of ['text-embedding-3-small', GEMINI_MODEL]) {
    const { provider, dims } = MODELS[model];

    it(`${model}: a batch of 3, float and the SDK's default (base64), decoded alike`, async () => {
      const { data, response } = await client.embeddings.create({ model, input: TEXTS, encoding_format: 'float', user: 'u-1' }).withResponse();
      assertSchema('CreateEmbeddingResponse', data);
      assert.equal(data.object, 'list');
      assert.equal(data.model, model, 'the model the client asked for');
      assert.equal(data.data.length, 3);
      data.data.forEach((e, i) => {
        assert.equal(e.object, 'embedding');
        assert.equal(e.index, i);
        assert.equal(e.embedding.length, dims);
        assertUnit(e.embedding, `${model} [${i}]`);
        assertClose(e.embedding, expectedVector(model, TEXTS[i]), `${model} [${i}] is the vector of its own input`);
      });
      assert.equal(data.usage.prompt_tokens, usageOf(TEXTS), 'prompt tokens: ceil(UTF-8 bytes / 4) per input');
      assert.equal(data.usage.total_tokens, data.usage.prompt_tokens);
      // The headers of a chat completion.
      const h = (n) => response.headers.get(n);
      assert.match(h('x-request-id') || '', /\S/, 'X-Request-Id');
      assert.equal(h('x-router-model'), model);
      assert.equal(h('x-router-requested-model'), model);
      assert.equal(h('x-router-provider'), provider);
      assert.equal(h('x-router-tier'), 'T3');
      assert.equal(h('x-router-attempts'), '1');
      assert.ok(Number(h('x-router-overhead-ms')) >= 0, 'X-Router-Overhead-Ms');

      const ups = await upstream();
      assert.equal(ups.length, 1, 'one upstream call');
      const [up] = ups;
      if (provider === 'openai') {
        assert.equal(up.path, '/openai/v1/embeddings');
        assert.equal(up.headers.authorization, `Bearer ${TEST_KEYS.OPENAI_API_KEY}`);
        assert.equal(up.body.model, model);
        assert.deepEqual(up.body.input, TEXTS);
        assert.equal(up.body.encoding_format, 'float');
        assert.equal(up.body.user, 'u-1', 'the body is forwarded');
      } else {
        assert.equal(up.path, GEMINI_BATCH_PATH);
        assert.equal(up.headers['x-goog-api-key'], TEST_KEYS.GEMINI_API_KEY);
        assert.ok(!up.path.includes('key='), 'the key never goes in the URL');
        assert.deepEqual(up.body.requests.map((r) => r.model), TEXTS.map(() => `models/${GEMINI_MODEL}`));
        assert.deepEqual(up.body.requests.map((r) => r.content), TEXTS.map((text) => ({ parts: [{ text }] })));
        assert.deepEqual(Object.keys(up.body), ['requests'], 'encoding_format and user stay at the router');
        for (const q of up.body.requests) for (const k of Object.keys(q)) assert.ok(['model', 'content', 'outputDimensionality', 'taskType', 'title'].includes(k), `Gemini request field ${k}`);
      }

      // No encoding_format: the SDK asks for base64 and decodes it.
      await stack.fake.reset();
      const dflt = await client.embeddings.create({ model, input: TEXTS });
      assertSchema('CreateEmbeddingResponse', dflt);
      assert.equal(dflt.data.length, 3);
      dflt.data.forEach((e, i) => {
        assert.equal(e.index, i);
        assertClose(e.embedding, data.data[i].embedding, `${model} [${i}] decoded from base64 = the float answer`);
      });
      assert.equal(dflt.usage.prompt_tokens, data.usage.prompt_tokens);
      const [up2] = await upstream();
      if (provider === 'openai') assert.equal(up2.body.encoding_format, 'base64', 'encoding_format passes through');
      else assert.equal(up2.path, GEMINI_BATCH_PATH);

      // On the wire: a base64 string of little-endian float32 per input.
      const raw = await post('/embeddings', { model, input: TEXTS[0], encoding_format: 'base64' });
      assert.equal(raw.status, 200, raw.text);
      assert.equal(typeof raw.json.data[0].embedding, 'string', 'base64 is a string');
      const buf = Buffer.from(raw.json.data[0].embedding, 'base64');
      assert.equal(buf.length, dims * 4);
      const f = Array.from(new Float32Array(buf.buffer, buf.byteOffset, dims));
      assertClose(f, data.data[0].embedding, `${model} base64 bytes`);
    });

    it(`${model}: dimensions 256 gives unit vectors of 256`, async () => {
      const { data } = await client.embeddings.create({ model, input: TEXTS.slice(0, 2), dimensions: 256, encoding_format: 'float' }).withResponse();
      assertSchema('CreateEmbeddingResponse', data);
      data.data.forEach((e, i) => {
        assert.equal(e.index, i);
        assert.equal(e.embedding.length, 256);
        assertUnit(e.embedding, `${model} dims 256 [${i}]`);
        assertClose(e.embedding, expectedVector(model, TEXTS[i], 256), `${model} dims 256 [${i}]`);
      });
      const [up] = await upstream();
      if (provider === 'openai') assert.equal(up.body.dimensions, 256);
      else assert.deepEqual(up.body.requests.map((r) => r.outputDimensionality), [256, 256], 'dimensions -> outputDimensionality');
      // The same through base64 (encoded by the router for Gemini).
      const dflt = await client.embeddings.create({ model, input: TEXTS.slice(0, 2), dimensions: 256 });
      dflt.data.forEach((e, i) => assertClose(e.embedding, data.data[i].embedding, `${model} dims 256 base64 [${i}]`));
    });
  }

  it('one string in, one embedding out (Gemini); token arrays pass through to OpenAI', async () => {
    const one = await client.embeddings.create({ model: GEMINI_MODEL, input: 'just one', encoding_format: 'float' });
    assertSchema('CreateEmbeddingResponse', one);
    assert.equal(one.data.length, 1);
    assert.equal(one.data[0].index, 0);
    assertClose(one.data[0].embedding, expectedVector(GEMINI_MODEL, 'just one'), 'single Gemini input');
    assert.equal(one.usage.prompt_tokens, embedTokens('just one'));
    const [g] = await upstream();
    assert.match(g.path, new RegExp(`/models/${GEMINI_MODEL}:(batchEmbedContents|embedContent)$`));

    await stack.fake.reset();
    const flat = await client.embeddings.create({ model: 'text-embedding-3-small', input: [11, 22, 33, 44], encoding_format: 'float' });
    assertSchema('CreateEmbeddingResponse', flat);
    assert.equal(flat.data.length, 1);
    assert.equal(flat.usage.prompt_tokens, 4);
    const nested = await client.embeddings.create({ model: 'text-embedding-3-small', input: [[1, 2], [3]], encoding_format: 'float' });
    assert.equal(nested.data.length, 2);
    assert.equal(nested.usage.prompt_tokens, 3);
    const [u1, u2] = await upstream();
    assert.deepEqual(u1.body.input, [11, 22, 33, 44]);
    assert.deepEqual(u2.body.input, [[1, 2], [3]]);
  });

  it('150 inputs on Gemini: two batchEmbedContents calls (100 + 50), re-indexed in order', async () => {
    const texts = Array.from({ length: 150 }, (_, i) => `input number ${i}`);
    const r = await client.embeddings.create({ model: GEMINI_MODEL, input: texts, dimensions: 128, encoding_format: 'float' });
    assertSchema('CreateEmbeddingResponse', r);
    assert.equal(r.data.length, 150);
    r.data.forEach((e, i) => {
      assert.equal(e.index, i);
      assertClose(e.embedding, expectedVector(GEMINI_MODEL, texts[i], 128), `[${i}]`);
    });
    assert.equal(r.usage.prompt_tokens, usageOf(texts));
    const ups = await upstream();
    assert.deepEqual(ups.map((u) => u.path), [GEMINI_BATCH_PATH, GEMINI_BATCH_PATH]);
    assert.deepEqual(ups.map((u) => u.body.requests.length), [100, 50]);
    const sent = ups.flatMap((u) => u.body.requests.map((q) => q.content.parts[0].text));
    assert.deepEqual(sent, texts, 'chunks in order');
    assert.ok(ups.every((u) => u.body.requests.every((q) => q.outputDimensionality === 128)));
  });

  it('refuses bad requests with 400 naming the parameter, before any upstream call', async () => {
    const cases = [
      [{ model: 'text-embedding-3-small' }, 'input'],
      [{ model: 'text-embedding-3-small', input: '' }, 'input'],
      [{ model: 'text-embedding-3-small', input: [] }, 'input'],
      [{ model: 'text-embedding-3-small', input: ['fine', ''] }, 'input'],
      [{ model: GEMINI_MODEL, input: ['fine', ''] }, 'input'],
      [{ model: 'text-embedding-3-small', input: Array.from({ length: 2049 }, () => 'x') }, 'input'],
      [{ model: GEMINI_MODEL, input: Array.from({ length: 2049 }, () => 'x') }, 'input'],
      [{ model: 'text-embedding-3-small', input: 'x', dimensions: 0 }, 'dimensions'],
      [{ model: 'text-embedding-3-small', input: 'x', dimensions: -8 }, 'dimensions'],
      [{ model: 'text-embedding-3-small', input: 'x', dimensions: 1.5 }, 'dimensions'],
      [{ model: GEMINI_MODEL, input: 'x', dimensions: '256' }, 'dimensions'],
      [{ model: 'text-embedding-3-small', input: 'x', encoding_format: 'hex' }, 'encoding_format'],
      [{ model: GEMINI_MODEL, input: 'x', encoding_format: 'float16' }, 'encoding_format'],
      [{ input: 'x' }, 'model'],
    ];
    for (const [body, param] of cases) {
      const r = await post('/embeddings', body);
      const what = JSON.stringify(body).slice(0, 120);
      assert.equal(r.status, 400, `${what}: ${r.text.slice(0, 300)}`);
      assert.equal(r.json.error.type, 'invalid_request_error', what);
      assert.equal(r.json.error.param, param, what);
    }
    for (const input of [[1, 2, 3], [[1, 2], [3]]]) {
      const r = await post('/embeddings', { model: GEMINI_MODEL, input });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.type, 'invalid_request_error');
      assert.equal(r.json.error.code, 'unsupported_value', 'token arrays cannot go to Gemini');
      assert.equal(r.json.error.param, 'input');
    }
    assert.deepEqual(await upstream(), [], 'no refused call reached a provider');
    const r = await post('/embeddings', { model: 'text-embedding-3-small', input: ['a', ''] });
    const row = await stack.router.row(r.headers.get('x-request-id'));
    assert.equal(row.status, 400);
    assert.equal(row.path, '/v1/embeddings');
  });

  it('chat and embedding models do not mix; unknown models are 404', async () => {
    for (const model of ['gpt-4o-mini', 'gemini-2.0-flash']) {
      const r = await post('/embeddings', { model, input: 'x' });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.param, 'model');
      assert.equal(r.json.error.code, 'model_not_embedding', model);
    }
    await assert.rejects(client.embeddings.create({ model: 'gpt-4o', input: 'x' }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.code, 'model_not_embedding');
      return true;
    });
    for (const model of Object.keys(MODELS)) {
      const r = await post('/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }] });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.param, 'model');
      assert.equal(r.json.error.code, 'model_not_chat', model);
    }
    const r = await post('/embeddings', { model: 'text-embedding-9-huge', input: 'x' });
    assert.equal(r.status, 404, r.text);
    assert.equal(r.json.error.code, 'model_not_found');
    const row = await stack.router.row(r.headers.get('x-request-id'));
    assert.equal(row.status, 404);
    assert.equal(row.path, '/v1/embeddings');
    assert.equal(row.error_code, 'model_not_found');
    assert.deepEqual(await upstream(), [], 'nothing reached a provider');
  });

  it('logs a row per call with tokens and cost, and the tier spends it', async () => {
    const input = ['a'.repeat(400), 'ü'.repeat(21)];   // 100 + ceil(42 / 4) = 11 tokens
    assert.equal(usageOf(input), 111);
    const before = spend('tier:T3');
    let total = 0;
    for (const [model, m] of Object.entries(MODELS)) {
      const { data, response } = await client.embeddings.create({ model, input, encoding_format: 'float' }).withResponse();
      assert.equal(data.usage.prompt_tokens, 111, model);
      assert.equal(data.data[0].embedding.length, m.dims, model);
      const row = await stack.router.row(response.headers.get('x-request-id'));
      assert.equal(row.path, '/v1/embeddings', model);
      assert.equal(row.status, 200, model);
      assert.equal(row.requested_model, model);
      assert.equal(row.model, model);
      assert.equal(row.provider, m.provider);
      assert.equal(row.agent, TIER_AGENTS.T3);
      assert.equal(row.tier, 'T3');
      assert.equal(row.stream, 0);
      assert.equal(row.input_tokens, data.usage.prompt_tokens, model);
      assert.equal(row.output_tokens, 0, model);
      assert.equal(row.cost_nusd, 111 * m.nusd, `${model}: prompt tokens x ${m.nusd} nano-USD`);
      assert.equal(row.error_type, null);
      total += row.cost_nusd;
    }
    await waitFor(() => spend('tier:T3') === before + total, 5000 * SLOW, 'the tier ledger to grow by the logged cost').catch(() => {});
    assert.equal(spend('tier:T3') - before, total, 'tier T3 spend grew by exactly the logged costs');
  });

  it('tiers T2, T3 and T4 may use every embedding model, undowngraded', async () => {
    for (const [tier, key] of Object.entries(keys)) {
      for (const model of Object.keys(MODELS)) {
        const r = await post('/embeddings', { model, input: 'tier check', dimensions: 64, encoding_format: 'float' }, key);
        assert.equal(r.status, 200, `${tier} ${model}: ${r.text.slice(0, 300)}`);
        assert.equal(r.headers.get('x-router-tier'), tier);
        assert.equal(r.headers.get('x-router-model'), model, `${tier} ${model}`);
        assert.equal(r.json.model, model);
      }
    }
  });

  for (const [provider, model, failure] of [
    ['openai', 'text-embedding-3-small', { status: 500 }],
    ['gemini', GEMINI_MODEL, { status: 500, body: { error: { code: 500, message: 'An internal error has occurred.', status: 'INTERNAL' } } }],
  ]) {
    it(`${provider}: an upstream 500 is retried on the same model, never another`, async () => {
      await stack.fake.script(provider, [failure]);
      const { data, response } = await client.embeddings.create({ model, input: TEXTS, encoding_format: 'float' }).withResponse();
      assertSchema('CreateEmbeddingResponse', data);
      assert.equal(data.model, model);
      assert.equal(data.data.length, 3);
      assert.equal(response.headers.get('x-router-model'), model);
      assert.equal(response.headers.get('x-router-attempts'), '2');
      const ups = await upstream();
      assert.equal(ups.length, 2, 'two calls');
      for (const u of ups) {
        assert.equal(u.provider, provider);
        if (provider === 'openai') assert.equal(u.body.model, model);
        else assert.equal(u.path, GEMINI_BATCH_PATH);
      }
      const row = await stack.router.row(response.headers.get('x-request-id'));
      assert.equal(row.model, model);
      assert.equal(row.attempts, 2);

      // Three failures: the client gets the error, no other model answers.
      await stack.fake.reset();
      await stack.fake.script(provider, [failure, failure, failure]);
      const r = await post('/embeddings', { model, input: TEXTS });
      assert.ok(r.status >= 500 && r.status < 600, `5xx expected, got ${r.status}: ${r.text.slice(0, 300)}`);
      assert.ok(r.json && r.json.error, 'an OpenAI error envelope');
      const tried = await upstream();
      assert.ok(tried.length >= 1, 'the model was asked');
      for (const u of tried) {
        assert.equal(u.provider, provider, 'no other provider was called');
        if (provider === 'openai') assert.equal(u.body.model, model, 'no other model was called');
        else assert.equal(u.path, GEMINI_BATCH_PATH, 'no other model was called');
      }
      assert.equal(tried.length, 3, 'max_retries = 2: three attempts, all on the same model');
    });
  }

  it('the fake provider enforces Gemini\'s batch limits', async () => {
    const url = `${stack.fake.url}${GEMINI_BATCH_PATH}`;
    const reqOf = (text, m = GEMINI_MODEL) => ({ model: `models/${m}`, content: { parts: [{ text }] } });
    const send = async (body) => { const r = await fetch(url, { method: 'POST', body: JSON.stringify(body) }); return { status: r.status, json: await r.json() }; };
    const big = await send({ requests: Array.from({ length: 101 }, (_, i) => reqOf(`t${i}`)) });
    assert.equal(big.status, 400);
    assert.deepEqual(big.json, { error: { code: 400, message: '* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch', status: 'INVALID_ARGUMENT' } });
    const mismatch = await send({ requests: [reqOf('a'), reqOf('b', 'text-embedding-004')] });
    assert.equal(mismatch.status, 400);
    assert.equal(mismatch.json.error.status, 'INVALID_ARGUMENT');
    const ok = await send({ requests: [Object.assign(reqOf('a'), { outputDimensionality: 10 })] });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json.embeddings[0].values, geminiVector('a', 10));
    assert.ok(Math.abs(norm(ok.json.embeddings[0].values) - 1) > 0.1, 'shortened Gemini vectors come back not normalised');
  });
});
