// Structured outputs and model capabilities: a model that cannot honour what a request needs
// (tools, images, response_format json_schema with strict: true) is passed over by the fallback
// chain instead of ending the request in its provider's 400; json_schema without strict on
// DeepSeek (which refuses it upstream) is emulated with JSON mode and the schema in the prompt;
// when no model of the chain can honour the request, the router answers 400 naming the parameter.
'use strict';
const { describe, it, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const OpenAI = require('openai').default;
const { startStack } = require('./lib/harness');
const { assertSchema } = require('./lib/schema');

const MSG = [{ role: 'user', content: 'Name a colour.' }];
const SCHEMA = { type: 'object', properties: { name: { type: 'string' } }, required: ['name'], additionalProperties: false };
const rf = (strict) => ({ type: 'json_schema', json_schema: { name: 'colour', schema: SCHEMA, ...(strict ? { strict: true } : {}) } });

describe('model capabilities and structured outputs', () => {
  let stack;
  let client;
  before(async () => {
    stack = await startStack({
      keys: ['OPENAI', 'ANTHROPIC', 'GEMINI', 'DEEPSEEK', 'OPENROUTER'],
      config: (t) => t.replace('failures = 3;', 'failures = 0;').replace('backoff_ms = 100;', 'backoff_ms = 20;'),
    });
    client = new OpenAI({ baseURL: stack.router.baseURL, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => { await stack.stop(); });
  beforeEach(async () => { await stack.fake.reset(); });

  const attempts = async (id) => {
    await stack.router.row(id);
    return stack.router.db(`SELECT model, outcome, status, error_message FROM request_attempts WHERE request_id = '${id}' ORDER BY attempt`);
  };

  it('/v1/models gives each chat model its capabilities', async () => {
    const raw = await (await fetch(stack.router.baseURL + '/models')).json();
    const caps = Object.fromEntries(raw.data.filter((m) => m.capabilities).map((m) => [m.id, m.capabilities]));
    assert.deepEqual(caps['deepseek-chat'], ['tools', 'json_object']);
    assert.deepEqual(caps['o3-mini'], ['tools', 'json_object', 'json_schema']);
    assert.deepEqual(caps['gpt-4o'], ['tools', 'images', 'json_object', 'json_schema']);
    assert.equal(raw.data.find((m) => m.id === 'text-embedding-3-small').capabilities, undefined);
  });

  it('json_schema without strict on DeepSeek: JSON mode plus the schema in a system message, named in X-Router-Dropped-Params', async () => {
    const { data, response } = await client.chat.completions.create({ model: 'deepseek-chat', messages: MSG, response_format: rf(false) }).withResponse();
    assertSchema('CreateChatCompletionResponse', data);
    assert.equal(data.model, 'deepseek-chat');
    assert.equal(response.headers.get('x-router-dropped-params'), 'response_format.json_schema');
    const reqs = await stack.fake.requests();
    assert.equal(reqs.length, 1);
    assert.equal(reqs[0].provider, 'deepseek');
    assert.deepEqual(reqs[0].body.response_format, { type: 'json_object' });
    const sys = reqs[0].body.messages[0];
    assert.equal(sys.role, 'system');
    assert.ok(sys.content.includes(JSON.stringify(SCHEMA)), sys.content);
    assert.deepEqual(reqs[0].body.messages.slice(1), MSG);
    const row = await stack.router.row(response.headers.get('x-request-id'));
    assert.equal(row.dropped_params, 'response_format.json_schema');
  });

  it('json_schema with strict: true routed to DeepSeek: DeepSeek is passed over, the next model of its chain answers', async () => {
    const { data, response } = await client.chat.completions.create({ model: 'deepseek-chat', messages: MSG, response_format: rf(true) }).withResponse();
    assert.equal(data.model, 'gpt-4o-mini');
    assert.equal(response.headers.get('x-router-fallback-from'), 'deepseek-chat');
    assert.equal(response.headers.get('x-router-attempts'), '1');
    const reqs = await stack.fake.requests();
    assert.deepEqual(reqs.map((r) => r.provider), ['openai']);
    assert.deepEqual(reqs[0].body.response_format, rf(true), 'the schema goes to OpenAI as sent');
    const a = await attempts(response.headers.get('x-request-id'));
    assert.deepEqual(a.map((x) => [x.model, x.outcome]), [['deepseek-chat', 'skipped'], ['gpt-4o-mini', 'ok']]);
    assert.match(a[0].error_message, /strict: true/);
  });

  it('a structured-output request whose chain falls back past DeepSeek ends in the last real failure, never in DeepSeek\'s 400', async () => {
    const fail = { status: 500, body: { error: { message: 'scripted 500', type: 'server_error' } } };
    await stack.fake.script('openai', [fail, fail, fail]);
    await stack.fake.script('gemini', [fail, fail, fail]);
    const r = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', messages: MSG, response_format: rf(true) }) });
    const body = await r.json();
    assert.equal(r.status, 500, JSON.stringify(body));
    assertSchema('ErrorResponse', body);
    const reqs = await stack.fake.requests();
    assert.ok(!reqs.some((x) => x.provider === 'deepseek'), 'DeepSeek was never asked');
    const a = await attempts(r.headers.get('x-request-id'));
    assert.ok(a.some((x) => x.model === 'deepseek-chat' && x.outcome === 'skipped'), JSON.stringify(a));
  });

  it('an image to a model without image input: passed over; with no capable model in the chain, 400 naming messages and nothing sent', async () => {
    const image = [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }] }];
    const { data, response } = await client.chat.completions.create({ model: 'deepseek-chat', messages: image }).withResponse();
    assert.equal(data.model, 'gpt-4o-mini');
    assert.equal(response.headers.get('x-router-fallback-from'), 'deepseek-chat');
    await stack.fake.reset();
    // deepseek-reasoner -> o3-mini -> deepseek-chat: none takes images.
    const r = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'deepseek-reasoner', messages: image }) });
    const body = await r.json();
    assert.equal(r.status, 400);
    assertSchema('ErrorResponse', body);
    assert.equal(body.error.param, 'messages');
    assert.equal(body.error.code, 'unsupported_parameter');
    assert.match(body.error.message, /deepseek-reasoner cannot honour image input.*o3-mini, deepseek-chat/);
    assert.equal((await stack.fake.requests()).length, 0);
    const row = await stack.router.row(r.headers.get('x-request-id'));
    assert.equal(row.status, 400);
  });
});
