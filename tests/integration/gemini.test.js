// Gemini models behind the OpenAI API, through lighttpd, driven by the official openai SDK. The
// fake provider speaks Gemini's generateContent / streamGenerateContent?alt=sse wire format.
'use strict';
const { describe, it, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const OpenAI = require('openai').default;
const { startStack, TEST_KEYS } = require('./lib/harness');
const { assertSchema } = require('./lib/schema');

const TOOLS = [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
const data = (o) => 'data: ' + JSON.stringify(o);

// Thoughts, then two function calls in one event (the first carrying the thought signature).
function toolStream() {
  return [
    data({ candidates: [{ content: { role: 'model', parts: [{ text: 'Two cities, two calls.', thought: true }] }, index: 0 }], usageMetadata: { promptTokenCount: 30, totalTokenCount: 30 }, modelVersion: 'gemini-2.5-pro', responseId: 'r1' }),
    data({ candidates: [{ content: { role: 'model', parts: [
      { functionCall: { name: 'get_weather', args: { city: 'Paris' } }, thoughtSignature: 'R2VtaW5pU2lnMQ==' },
      { functionCall: { name: 'get_weather', args: { city: 'Rome' } } },
    ] }, finishReason: 'STOP', index: 0 }], usageMetadata: { promptTokenCount: 30, candidatesTokenCount: 12, thoughtsTokenCount: 20, totalTokenCount: 62 }, modelVersion: 'gemini-2.5-pro', responseId: 'r1' }),
  ];
}

describe('Gemini behind the OpenAI API', () => {
  let stack;
  let client;
  before(async () => {
    // Upstream errors are the answers under test here: no fallback, no cooldown.
    stack = await startStack({ config: (t) => t.replace('max_retries = 2;', 'max_retries = 0;').replace('failures = 3;', 'failures = 0;') });
    client = new OpenAI({ baseURL: stack.router.baseURL, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => { await stack.stop(); });
  beforeEach(async () => { await stack.fake.reset(); });

  it('non-streaming: generateContent request, OpenAI response, usage and cost', async () => {
    const { data: r, response } = await client.chat.completions.create({
      model: 'gemini-2.0-flash',
      messages: [{ role: 'system', content: 'Be terse.' }, { role: 'user', content: 'Hello' }],
      max_tokens: 100, temperature: 0.3,
    }).withResponse();
    assertSchema('CreateChatCompletionResponse', r);
    assert.equal(r.model, 'gemini-2.0-flash');
    assert.match(r.choices[0].message.content, /fake gemini/);
    assert.equal(response.headers.get('x-router-provider'), 'gemini');
    const [up] = await stack.fake.requests();
    assert.equal(up.path, '/gemini/v1beta/models/gemini-2.0-flash:generateContent');
    assert.equal(up.headers['x-goog-api-key'], TEST_KEYS.GEMINI_API_KEY);
    assert.ok(!up.path.includes('key='), 'the key never goes in the URL');
    assert.deepEqual(up.body.systemInstruction, { parts: [{ text: 'Be terse.' }] });
    assert.deepEqual(up.body.contents, [{ role: 'user', parts: [{ text: 'Hello' }] }]);
    assert.equal(up.body.generationConfig.maxOutputTokens, 100);
    assert.equal(up.body.generationConfig.temperature, 0.3);
    const row = await stack.router.row(r.id);
    assert.equal(row.provider, 'gemini');
    assert.equal(row.cost_nusd, r.usage.prompt_tokens * 100 + r.usage.completion_tokens * 400);
  });

  it('streaming text with usage in the final chunk', async () => {
    const stream = await client.chat.completions.create({
      model: 'gemini-2.0-flash', messages: [{ role: 'user', content: 'Stream please' }],
      stream: true, stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) { assertSchema('CreateChatCompletionStreamResponse', c); chunks.push(c); }
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    assert.match(chunks.map((c) => c.choices[0]?.delta?.content || '').join(''), /fake gemini \(gemini-2.0-flash\)/);
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    assert.ok(last.usage.completion_tokens > 0);
    const [up] = await stack.fake.requests();
    assert.equal(up.path, '/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse');
  });

  it('streamed parallel function calls are assembled by the SDK; thoughts surface as reasoning', async () => {
    await stack.fake.script('gemini', [{ sse: toolStream() }]);
    const runner = client.chat.completions.stream({
      model: 'gemini-2.5-pro', messages: [{ role: 'user', content: 'Weather in Paris and Rome?' }],
      tools: TOOLS, reasoning_effort: 'medium', stream_options: { include_usage: true },
    });
    const seen = [];
    runner.on('chunk', (c) => { assertSchema('CreateChatCompletionStreamResponse', c); seen.push(c); });
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0].finish_reason, 'tool_calls');
    const calls = final.choices[0].message.tool_calls;
    assert.deepEqual(calls.map((t) => [t.function.name, JSON.parse(t.function.arguments)]),
      [['get_weather', { city: 'Paris' }], ['get_weather', { city: 'Rome' }]]);
    assert.equal(new Set(calls.map((t) => t.id)).size, 2, 'distinct tool call ids');
    assert.equal(seen.map((c) => c.choices[0]?.delta?.reasoning_content || '').join(''), 'Two cities, two calls.');
    const usage = seen[seen.length - 1].usage;
    assert.equal(usage.prompt_tokens, 30);
    assert.equal(usage.completion_tokens, 32, 'candidates + thoughts');
    assert.equal(usage.completion_tokens_details.reasoning_tokens, 20);
    const [up] = await stack.fake.requests();
    assert.deepEqual(up.body.generationConfig.thinkingConfig, { thinkingBudget: 2048, includeThoughts: true });
    assert.equal(up.body.tools.length, 1);
    assert.equal(up.body.tools[0].functionDeclarations[0].name, 'get_weather');
  });

  it('a two-turn tool conversation keeps the thought signature even when the client drops it', async () => {
    await stack.fake.script('gemini', [{ sse: toolStream() }]);
    const messages = [{ role: 'user', content: 'Weather in Paris and Rome?' }];
    const first = await client.chat.completions.stream({ model: 'gemini-2.5-pro', messages, tools: TOOLS }).finalChatCompletion();
    const calls = first.choices[0].message.tool_calls;
    messages.push({ role: 'assistant', content: null, tool_calls: calls.map((t) => ({ id: t.id, type: 'function', function: t.function })) });
    messages.push({ role: 'tool', tool_call_id: calls[0].id, content: '{"temp_c": 18}' });
    messages.push({ role: 'tool', tool_call_id: calls[1].id, content: 'sunny, 24C' });
    const second = await client.chat.completions.create({ model: 'gemini-2.5-pro', messages, tools: TOOLS });
    assertSchema('CreateChatCompletionResponse', second);
    const reqs = await stack.fake.requests();
    const contents = reqs[reqs.length - 1].body.contents;
    assert.equal(contents.length, 3);
    assert.equal(contents[1].role, 'model');
    assert.deepEqual(contents[1].parts, [
      { functionCall: { name: 'get_weather', args: { city: 'Paris' } }, thoughtSignature: 'R2VtaW5pU2lnMQ==' },
      { functionCall: { name: 'get_weather', args: { city: 'Rome' } } },
    ], 'the signature goes back on the part it came with');
    assert.equal(contents[2].role, 'user');
    assert.deepEqual(contents[2].parts.map((p) => p.functionResponse), [
      { name: 'get_weather', response: { temp_c: 18 } },
      { name: 'get_weather', response: { result: 'sunny, 24C' } },
    ], 'one user turn, names looked up from the calls');
  });

  it('maps a blocked prompt to content_filter and RESOURCE_EXHAUSTED to 429 with Retry-After', async () => {
    await stack.fake.script('gemini', [{ body: { promptFeedback: { blockReason: 'SAFETY' }, usageMetadata: { promptTokenCount: 5, totalTokenCount: 5 } } }]);
    const blocked = await client.chat.completions.create({ model: 'gemini-2.0-flash', messages: [{ role: 'user', content: 'x' }] });
    assertSchema('CreateChatCompletionResponse', blocked);
    assert.equal(blocked.choices[0].finish_reason, 'content_filter');
    assert.equal(blocked.choices[0].message.content, null);
    await stack.fake.script('gemini', [{ status: 429, body: { error: { code: 429, message: 'Quota exceeded', status: 'RESOURCE_EXHAUSTED', details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '37s' }] } } }]);
    await assert.rejects(client.chat.completions.create({ model: 'gemini-2.0-flash', messages: [{ role: 'user', content: 'x' }] }), (e) => {
      assert.ok(e instanceof OpenAI.RateLimitError);
      assert.equal(e.headers.get('retry-after'), '37');
      return true;
    });
  });
});
