// POST /v1/chat/completions through lighttpd for the OpenAI-compatible providers (OpenAI,
// DeepSeek, Groq, OpenRouter), driven by the official openai SDK; every response and chunk is
// validated against the OpenAPI schemas, and the request-log row is checked in SQLite.
'use strict';
const { describe, it, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const OpenAI = require('openai').default;
const { startStack, TEST_KEYS } = require('./lib/harness');
const { assertSchema } = require('./lib/schema');

// Groq has no model in the shipped configuration; the tests add one.
const GROQ_MODEL = `  { id = "llama-3.3-70b"; provider = "groq"; upstream = "llama-3.3-70b-versatile";
    input_usd_per_mtok = 0.59; output_usd_per_mtok = 0.79; },
`;

// Prices in nano-USD per token (USD per Mtok x 1000), as in conf/llm-router.conf.
const CASES = [
  { provider: 'openai', model: 'gpt-4o', upstream: 'gpt-4o', inN: 2500, outN: 10000 },
  { provider: 'deepseek', model: 'deepseek-chat', upstream: 'deepseek-chat', inN: 270, outN: 1100 },
  { provider: 'groq', model: 'llama-3.3-70b', upstream: 'llama-3.3-70b-versatile', inN: 590, outN: 790 },
  { provider: 'openrouter', model: 'openrouter/anthropic/claude-sonnet-4.5', upstream: 'anthropic/claude-sonnet-4.5', reportedCost: true },
];

function expectedCost(c, usage) {
  if (c.reportedCost) return Math.round(usage.cost * 1e9);
  return usage.prompt_tokens * c.inN + usage.completion_tokens * c.outN;
}

describe('chat completions, OpenAI-compatible providers', () => {
  let stack;
  let client;
  before(async () => {
    stack = await startStack({
      keys: ['OPENAI', 'DEEPSEEK', 'GROQ', 'OPENROUTER', 'ANTHROPIC', 'GEMINI'],
      config: (t) => t.replace('models = (\n', 'models = (\n' + GROQ_MODEL),
    });
    client = new OpenAI({ baseURL: stack.router.baseURL, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => { await stack.stop(); });
  beforeEach(async () => { await stack.fake.reset(); });

  for (const c of CASES) {
    it(`${c.provider}: non-streaming completion, usage and cost logged`, async () => {
      const { data, response } = await client.chat.completions.create({
        model: c.model,
        messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Say hello to the router.' }],
        temperature: 0.2,
        my_extension_field: { kept: true },
      }).withResponse();
      assertSchema('CreateChatCompletionResponse', data);
      assert.equal(data.model, c.model);
      assert.match(data.id, /^chatcmpl-/);
      assert.equal(response.headers.get('x-request-id'), data.id);
      assert.equal(response.headers.get('x-router-model'), c.model);
      assert.ok(Number(response.headers.get('x-router-overhead-ms')) >= 0);
      assert.match(data.choices[0].message.content, new RegExp(`fake ${c.provider}`));

      const [up] = await stack.fake.requests();
      assert.equal(up.provider, c.provider);
      assert.equal(up.body.model, c.upstream);
      assert.equal(up.body.temperature, 0.2);
      assert.deepEqual(up.body.my_extension_field, { kept: true }, 'unknown fields pass through');
      assert.equal(up.headers.authorization, `Bearer ${TEST_KEYS[c.provider.toUpperCase() + '_API_KEY']}`);

      const row = await stack.router.row(data.id);
      assert.equal(row.status, 200);
      assert.equal(row.stream, 0);
      assert.equal(row.requested_model, c.model);
      assert.equal(row.model, c.model);
      assert.equal(row.provider, c.provider);
      assert.equal(row.upstream_model, c.upstream);
      assert.equal(row.input_tokens, data.usage.prompt_tokens);
      assert.equal(row.output_tokens, data.usage.completion_tokens);
      assert.equal(row.cost_nusd, expectedCost(c, data.usage));
      assert.equal(row.cost_source, c.reportedCost ? 'provider' : 'pricing');
      assert.ok(row.latency_ms > 0 && row.upstream_ms > 0 && row.overhead_ms >= 0);
      assert.equal(row.error_type, null);
      if (c.provider === 'deepseek') {
        assert.equal(data.usage.prompt_tokens_details.cached_tokens, row.cached_tokens);
        assert.ok(row.cached_tokens >= 0);
      }
    });

    it(`${c.provider}: streamed completion with usage; every chunk valid`, async () => {
      const stream = await client.chat.completions.create({
        model: c.model,
        messages: [{ role: 'user', content: 'Stream a greeting please.' }],
        stream: true,
        stream_options: { include_usage: true },
      });
      const chunks = [];
      for await (const chunk of stream) {
        assertSchema('CreateChatCompletionStreamResponse', chunk);
        chunks.push(chunk);
      }
      const id = chunks[0].id;
      assert.ok(chunks.every((k) => k.id === id && k.model === c.model));
      assert.equal(chunks[0].choices[0].delta.role, 'assistant');
      const text = chunks.flatMap((k) => k.choices.map((ch) => ch.delta.content || '')).join('');
      assert.match(text, new RegExp(`fake ${c.provider}`));
      const last = chunks[chunks.length - 1];
      assert.deepEqual(last.choices, []);
      assert.ok(last.usage && last.usage.completion_tokens > 0);
      assert.equal(chunks.filter((k) => k.usage).length, 1, 'exactly one usage chunk');
      assert.ok(chunks.some((k) => k.choices[0] && k.choices[0].finish_reason === 'stop'));

      const [up] = await stack.fake.requests();
      assert.equal(up.body.stream, true);
      assert.deepEqual(up.body.stream_options, { include_usage: true });

      const row = await stack.router.row(id);
      assert.equal(row.stream, 1);
      assert.equal(row.status, 200);
      assert.equal(row.input_tokens, last.usage.prompt_tokens);
      assert.equal(row.output_tokens, last.usage.completion_tokens);
      assert.equal(row.cost_nusd, expectedCost(c, last.usage));
      assert.equal(row.finish_reason, 'stop');
      assert.ok(row.ttft_ms > 0 && row.ttft_ms <= row.latency_ms);
    });

    it(`${c.provider}: stream without include_usage hides the usage chunk but logs usage`, async () => {
      const stream = await client.chat.completions.create({
        model: c.model, messages: [{ role: 'user', content: 'Hi' }], stream: true,
      });
      const chunks = [];
      for await (const chunk of stream) {
        assertSchema('CreateChatCompletionStreamResponse', chunk);
        chunks.push(chunk);
      }
      assert.ok(chunks.every((k) => !k.usage), 'no usage reaches the client');
      assert.ok(chunks.every((k) => k.choices.length > 0));
      const [up] = await stack.fake.requests();
      assert.deepEqual(up.body.stream_options, { include_usage: true }, 'the router always asks for usage');
      const row = await stack.router.row(chunks[0].id);
      assert.ok(row.input_tokens > 0 && row.output_tokens > 0);
      assert.ok(row.cost_nusd > 0);
    });
  }

  it('applies the reasoning-model rules for o1 and reports dropped parameters', async () => {
    const { data, response } = await client.chat.completions.create({
      model: 'o1',
      messages: [{ role: 'developer', content: 'Think.' }, { role: 'user', content: 'Why?' }],
      max_tokens: 50,
      temperature: 0.3,
      top_p: 1,
    }).withResponse();
    assertSchema('CreateChatCompletionResponse', data);
    assert.equal(response.headers.get('x-router-dropped-params'), 'temperature');
    const [up] = await stack.fake.requests();
    assert.equal(up.body.max_completion_tokens, 50);
    assert.equal(up.body.max_tokens, undefined);
    assert.equal(up.body.temperature, undefined);
    assert.equal(up.body.top_p, undefined);
    assert.equal(up.body.messages[0].role, 'developer');
    const row = await stack.router.row(data.id);
    assert.equal(row.dropped_params, 'temperature');
  });

  it('sends developer messages as system to DeepSeek and strips names for Groq', async () => {
    await client.chat.completions.create({
      model: 'deepseek-chat',
      messages: [{ role: 'developer', content: 'Rules.' }, { role: 'user', content: 'x', name: 'ann' }],
    });
    await client.chat.completions.create({
      model: 'llama-3.3-70b',
      messages: [{ role: 'developer', content: 'Rules.' }, { role: 'user', content: 'x', name: 'ann' }],
      logit_bias: { 50256: -100 },
    });
    const [ds, gq] = await stack.fake.requests();
    assert.equal(ds.body.messages[0].role, 'system');
    assert.equal(ds.body.messages[1].name, 'ann');
    assert.equal(gq.body.messages[0].role, 'system');
    assert.equal(gq.body.messages[1].name, undefined);
    assert.equal(gq.body.logit_bias, undefined);
  });

  it('takes the OpenRouter cost from its usage report', async () => {
    const { data } = await client.chat.completions.create({
      model: 'openrouter/openai/gpt-4o-mini', messages: [{ role: 'user', content: 'cost?' }],
    }).withResponse();
    const row = await stack.router.row(data.id);
    assert.equal(row.cost_source, 'provider');
    assert.equal(row.cost_nusd, Math.round(data.usage.cost * 1e9));
    const [up] = await stack.fake.requests();
    assert.equal(up.body.model, 'openai/gpt-4o-mini');
    assert.equal(up.headers['x-openrouter-title'], 'LLM Router');
  });
});
