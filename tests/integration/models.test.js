// GET /v1/models through the web server with the official openai SDK.
'use strict';
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const OpenAI = require('openai').default;
const { startStack, FRONT } = require('./lib/harness');
const { assertSchema } = require('./lib/schema');

const SPEC_MODELS = [
  'claude-opus-4-6', 'claude-sonnet-4-5', 'claude-haiku-4-5', 'gpt-4o', 'gpt-4o-mini',
  'gpt-4-turbo', 'o1', 'o3-mini', 'gemini-2.5-pro', 'gemini-2.0-flash', 'deepseek-chat',
  'deepseek-reasoner', 'openrouter/*',
];
const EMBEDDING_MODELS = ['text-embedding-3-small', 'text-embedding-3-large', 'gemini-embedding-001'];

describe('GET /v1/models', () => {
  let stack;
  let client;
  before(async () => {
    stack = await startStack();   // every provider has a key except Groq
    client = new OpenAI({ baseURL: stack.router.baseURL, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => { await stack.stop(); });

  it('lists the 13 models of SPEC.md and the 3 embedding models in OpenAI list shape, each with the endpoint that serves it', async () => {
    const page = await client.models.list();
    const ids = page.data.map((m) => m.id);
    assert.deepEqual([...ids].sort(), [...SPEC_MODELS, ...EMBEDDING_MODELS].sort());
    for (const m of page.data) {
      assert.deepEqual(m.endpoints, EMBEDDING_MODELS.includes(m.id) ? ['/v1/embeddings'] : ['/v1/chat/completions'], m.id);
      assert.equal(typeof m.dimensions, EMBEDDING_MODELS.includes(m.id) ? 'number' : 'undefined', m.id);
    }
    const raw = await (await fetch(stack.router.baseURL + '/models')).json();
    assertSchema('ListModelsResponse', raw);
    for (const m of raw.data) {
      assertSchema('Model', m);
      assert.equal(m.object, 'model');
      assert.equal(typeof m.created, 'number');
    }
    assert.equal(raw.data.find((m) => m.id === 'claude-opus-4-6').owned_by, 'anthropic');
    assert.equal(raw.data.find((m) => m.id === 'deepseek-chat').owned_by, 'deepseek');
    assert.equal(raw.data.find((m) => m.id === 'openrouter/*').passthrough, true);
  });

  it('shows Groq as unavailable without a key, naming the variable', async () => {
    const raw = await (await fetch(stack.router.baseURL + '/models')).json();
    const groq = raw.providers.find((p) => p.id === 'groq');
    assert.equal(groq.available, false);
    assert.equal(groq.status, 'unavailable');
    assert.match(groq.reason, /GROQ_API_KEY/);
    for (const p of raw.providers.filter((x) => x.id !== 'groq')) assert.equal(p.available, true, p.id);
    assert.equal(raw.providers.length, 6);
  });

  it('retrieves one model, including an OpenRouter pass-through id', async () => {
    const m = await client.models.retrieve('gpt-4o');
    assert.equal(m.id, 'gpt-4o');
    assert.equal(m.owned_by, 'openai');
    // The SDK sends the slashes of the id as %2F. A shared host keeps Apache's default
    // AllowEncodedSlashes Off (server-level, not settable in .htaccess): Apache itself answers 404
    // there, and the id with plain slashes is what works.
    const encodedSlashes = !['apache-htaccess', 'apache-cgi'].includes(FRONT);
    const or = encodedSlashes ? await client.models.retrieve('openrouter/anthropic/claude-sonnet-4.5')
      : await (await fetch(stack.router.baseURL + '/models/openrouter/anthropic/claude-sonnet-4.5')).json();
    assert.equal(or.id, 'openrouter/anthropic/claude-sonnet-4.5');
    assert.equal(or.owned_by, 'openrouter');
    if (!encodedSlashes) await assert.rejects(client.models.retrieve('openrouter/anthropic/claude-sonnet-4.5'), (e) => e.status === 404);
    await assert.rejects(client.models.retrieve('no-such-model'), (e) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal(e.code, 'model_not_found');
      return true;
    });
  });

  it('a model id that decodes to bytes that are not UTF-8 is not found (404), never an object without its id', async () => {
    const r = await fetch(stack.router.baseURL + '/models/openrouter/anthropic/%FF');
    const body = await r.json();
    // lighttpd refuses such a path itself (400 bad_request); Apache passes it to the router.
    if (FRONT === 'lighttpd') {
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(body.error.code, 'bad_request');
      return;
    }
    assert.equal(r.status, 404, JSON.stringify(body));
    assert.equal(body.error.code, 'model_not_found');
    assert.ok(body.error.message, JSON.stringify(body));
  });

  it('marks every model of a keyless provider unavailable', async () => {
    const { startStack: start } = require('./lib/harness');
    const s2 = await start({ keys: ['OPENAI'] });
    try {
      const raw = await (await fetch(s2.router.baseURL + '/models')).json();
      assert.equal(raw.data.length, 16);
      for (const m of raw.data) assert.equal(m.available, m.owned_by === 'openai', m.id);
    } finally { await s2.stop(); }
  });
});
