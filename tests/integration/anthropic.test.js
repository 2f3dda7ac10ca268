// Anthropic models behind the OpenAI API, through lighttpd, driven by the official openai SDK.
// The fake provider speaks Anthropic's Messages wire format (scripted event by event where a test
// needs exact upstream behaviour). Every response and chunk validates against OpenAI's schemas.
'use strict';
const { describe, it, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const OpenAI = require('openai').default;
const { startStack, TEST_KEYS } = require('./lib/harness');
const { assertSchema } = require('./lib/schema');

const ev = (name, data) => `event: ${name}\ndata: ${JSON.stringify(Object.assign({ type: name }, data))}`;
const start = (usage = { input_tokens: 40, output_tokens: 1, cache_read_input_tokens: 10, cache_creation_input_tokens: 5 }) =>
  ev('message_start', { message: { id: 'msg_it', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null, usage } });

// Two parallel tool calls whose arguments arrive in fragments, after a thinking block with a signature.
function thinkingToolStream() {
  return [
    start(),
    ev('content_block_start', { index: 0, content_block: { type: 'thinking', thinking: '' } }),
    ev('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'I need the weather ' } }),
    ev('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'in two cities.' } }),
    ev('content_block_delta', { index: 0, delta: { type: 'signature_delta', signature: 'SIG-abc123==' } }),
    ev('content_block_stop', { index: 0 }),
    ev('ping', {}),
    ev('content_block_start', { index: 1, content_block: { type: 'text', text: '' } }),
    ev('content_block_delta', { index: 1, delta: { type: 'text_delta', text: 'Checking both.' } }),
    ev('content_block_stop', { index: 1 }),
    ev('content_block_start', { index: 2, content_block: { type: 'tool_use', id: 'toolu_paris', name: 'get_weather', input: {} } }),
    ev('content_block_delta', { index: 2, delta: { type: 'input_json_delta', partial_json: '' } }),
    ev('content_block_delta', { index: 2, delta: { type: 'input_json_delta', partial_json: '{"city": "Pa' } }),
    ev('content_block_delta', { index: 2, delta: { type: 'input_json_delta', partial_json: 'ris"}' } }),
    ev('content_block_stop', { index: 2 }),
    ev('content_block_start', { index: 3, content_block: { type: 'tool_use', id: 'toolu_rome', name: 'get_weather', input: {} } }),
    ev('content_block_delta', { index: 3, delta: { type: 'input_json_delta', partial_json: '{"city":' } }),
    ev('content_block_delta', { index: 3, delta: { type: 'input_json_delta', partial_json: ' "Rome"}' } }),
    ev('content_block_stop', { index: 3 }),
    ev('message_delta', { delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 87 } }),
    ev('message_stop', {}),
  ];
}

const TOOLS = [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];

describe('Anthropic behind the OpenAI API', () => {
  let stack;
  let client;
  before(async () => {
    // Upstream errors are the answers under test here: no fallback, no cooldown.
    stack = await startStack({ config: (t) => t.replace('max_retries = 2;', 'max_retries = 0;').replace('failures = 3;', 'failures = 0;') });
    client = new OpenAI({ baseURL: stack.router.baseURL, apiKey: 'unused', maxRetries: 0 });
  });
  after(async () => { await stack.stop(); });
  beforeEach(async () => { await stack.fake.reset(); });

  it('non-streaming: Messages API request, OpenAI response, usage and cost', async () => {
    const { data, response } = await client.chat.completions.create({
      model: 'claude-opus-4-6',
      messages: [{ role: 'system', content: 'Be terse.' }, { role: 'developer', content: 'No emoji.' }, { role: 'user', content: 'Hello' }],
      max_tokens: 300,
      stop: 'END',
    }).withResponse();
    assertSchema('CreateChatCompletionResponse', data);
    assert.equal(data.model, 'claude-opus-4-6');
    assert.match(data.choices[0].message.content, /fake anthropic/);
    assert.equal(data.choices[0].finish_reason, 'stop');
    assert.equal(response.headers.get('x-router-provider'), 'anthropic');
    const [up] = await stack.fake.requests();
    assert.equal(up.path, '/anthropic/v1/messages');
    assert.equal(up.headers['x-api-key'], TEST_KEYS.ANTHROPIC_API_KEY);
    assert.equal(up.headers['anthropic-version'], '2023-06-01');
    assert.equal(up.headers.authorization, undefined);
    assert.deepEqual(up.body.system, [{ type: 'text', text: 'Be terse.' }, { type: 'text', text: 'No emoji.' }]);
    assert.deepEqual(up.body.messages, [{ role: 'user', content: 'Hello' }]);
    assert.equal(up.body.max_tokens, 300);
    assert.deepEqual(up.body.stop_sequences, ['END']);
    const row = await stack.router.row(data.id);
    assert.equal(row.provider, 'anthropic');
    assert.equal(row.input_tokens, data.usage.prompt_tokens);
    assert.equal(row.cost_nusd, data.usage.prompt_tokens * 15000 + data.usage.completion_tokens * 75000);
  });

  it('streaming text with usage in the final chunk', async () => {
    const stream = await client.chat.completions.create({
      model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'Stream please' }],
      stream: true, stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) { assertSchema('CreateChatCompletionStreamResponse', c); chunks.push(c); }
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    assert.match(chunks.map((c) => c.choices[0]?.delta?.content || '').join(''), /fake anthropic \(claude-haiku-4-5\)/);
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    assert.ok(last.usage.completion_tokens > 0);
    const [up] = await stack.fake.requests();
    assert.equal(up.body.stream, true);
    assert.equal(up.body.stream_options, undefined);
  });

  it('streamed parallel tool calls are assembled by the SDK into valid JSON arguments', async () => {
    await stack.fake.script('anthropic', [{ sse: thinkingToolStream() }]);
    const runner = client.chat.completions.stream({
      model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'Weather in Paris and Rome?' }],
      tools: TOOLS, reasoning_effort: 'low', stream_options: { include_usage: true },
    });
    const seen = [];
    runner.on('chunk', (c) => { assertSchema('CreateChatCompletionStreamResponse', c); seen.push(c); });
    const final = await runner.finalChatCompletion();
    const msg = final.choices[0].message;
    assert.equal(final.choices[0].finish_reason, 'tool_calls');
    assert.equal(msg.content, 'Checking both.');
    assert.equal(msg.tool_calls.length, 2);
    assert.deepEqual(msg.tool_calls.map((t) => [t.id, t.function.name, JSON.parse(t.function.arguments)]),
      [['toolu_paris', 'get_weather', { city: 'Paris' }], ['toolu_rome', 'get_weather', { city: 'Rome' }]]);
    const toolDeltas = seen.flatMap((c) => c.choices[0]?.delta?.tool_calls || []);
    assert.deepEqual([...new Set(toolDeltas.map((t) => t.index))], [0, 1], 'tool indexes are ordinals, not block indexes');
    assert.equal(seen.map((c) => c.choices[0]?.delta?.reasoning_content || '').join(''), 'I need the weather in two cities.');
    const usage = seen[seen.length - 1].usage;
    assert.equal(usage.prompt_tokens, 55, 'input + cache read + cache write');
    assert.equal(usage.prompt_tokens_details.cached_tokens, 10);
    assert.equal(usage.completion_tokens, 87);
    const [up] = await stack.fake.requests();
    assert.deepEqual(up.body.thinking, { type: 'enabled', budget_tokens: 1024 });
    assert.deepEqual(up.body.tools, [{ name: 'get_weather', description: 'Weather of a city', input_schema: TOOLS[0].function.parameters }]);
  });

  it('a two-turn tool conversation keeps the thinking block even when the client drops it', async () => {
    await stack.fake.script('anthropic', [{ sse: thinkingToolStream() }]);
    const messages = [{ role: 'user', content: 'Weather in Paris and Rome?' }];
    const first = await client.chat.completions.stream({ model: 'claude-sonnet-4-5', messages, tools: TOOLS, reasoning_effort: 'low' }).finalChatCompletion();
    const assistant = first.choices[0].message;
    // What a client that keeps only OpenAI's fields sends back.
    messages.push({ role: 'assistant', content: assistant.content, tool_calls: assistant.tool_calls.map((t) => ({ id: t.id, type: 'function', function: t.function })) });
    messages.push({ role: 'tool', tool_call_id: 'toolu_paris', content: '18C, sunny' });
    messages.push({ role: 'tool', tool_call_id: 'toolu_rome', content: '24C, clear' });
    await stack.fake.script('anthropic', [{ body: { id: 'msg_2', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [{ type: 'text', text: 'Paris 18C, Rome 24C.' }], stop_reason: 'end_turn', usage: { input_tokens: 120, output_tokens: 9 } } }]);
    const second = await client.chat.completions.create({ model: 'claude-sonnet-4-5', messages, tools: TOOLS, reasoning_effort: 'low' });
    assertSchema('CreateChatCompletionResponse', second);
    assert.equal(second.choices[0].message.content, 'Paris 18C, Rome 24C.');
    const reqs = await stack.fake.requests();
    const turn2 = reqs[reqs.length - 1].body;
    assert.equal(turn2.messages.length, 3);
    const [, asst, results] = turn2.messages;
    assert.equal(asst.role, 'assistant');
    assert.deepEqual(asst.content[0], { type: 'thinking', thinking: 'I need the weather in two cities.', signature: 'SIG-abc123==' }, 'thinking block first, with its signature');
    assert.deepEqual(asst.content.slice(1), [
      { type: 'text', text: 'Checking both.' },
      { type: 'tool_use', id: 'toolu_paris', name: 'get_weather', input: { city: 'Paris' } },
      { type: 'tool_use', id: 'toolu_rome', name: 'get_weather', input: { city: 'Rome' } },
    ]);
    assert.deepEqual(results, { role: 'user', content: [
      { type: 'tool_result', tool_use_id: 'toolu_paris', content: '18C, sunny' },
      { type: 'tool_result', tool_use_id: 'toolu_rome', content: '24C, clear' },
    ] }, 'consecutive tool results in one user turn');
  });

  it('reports what it drops, and strict mode refuses it', async () => {
    const { data, response } = await client.chat.completions.create({
      model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }], seed: 7, logprobs: true, presence_penalty: 0,
    }).withResponse();
    assert.equal(response.headers.get('x-router-dropped-params'), 'logprobs,seed');
    const row = await stack.router.row(data.id);
    assert.equal(row.dropped_params, 'logprobs,seed');
    await assert.rejects(client.chat.completions.create({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }], n: 2 }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.param, 'n');
      assert.equal(e.code, 'unsupported_parameter');
      return true;
    });
  });

  it('maps overload (529) to 503 with Retry-After, and a mid-stream error to an error event', async () => {
    await stack.fake.script('anthropic', [{ status: 529, headers: { 'retry-after': '4' }, body: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } } }]);
    await assert.rejects(client.chat.completions.create({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'x' }] }), (e) => {
      assert.equal(e.status, 503);
      assert.equal(e.code, 'upstream_overloaded');
      assert.equal(e.headers.get('retry-after'), '4');
      return true;
    });
    await stack.fake.script('anthropic', [{ sse: [start(), ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
      ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Partial' } }),
      ev('error', { error: { type: 'overloaded_error', message: 'Overloaded' } })] }]);
    const stream = await client.chat.completions.create({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'x' }], stream: true });
    const got = [];
    await assert.rejects((async () => { for await (const c of stream) got.push(c); })(), /Overloaded/);
    assert.equal(got.map((c) => c.choices[0]?.delta?.content || '').join(''), 'Partial');
  });
});

describe('Strict parameters', () => {
  it('turns a dropped parameter into a 400 naming it', async () => {
    const stack = await startStack({ config: (t) => t.replace('strict = false;', 'strict = true;') });
    try {
      const client = new OpenAI({ baseURL: stack.router.baseURL, apiKey: 'unused', maxRetries: 0 });
      await assert.rejects(client.chat.completions.create({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: 'hi' }], seed: 7 }), (e) => {
        assert.ok(e instanceof OpenAI.BadRequestError);
        assert.equal(e.param, 'seed');
        assert.equal(e.code, 'unsupported_parameter');
        return true;
      });
      assert.equal((await stack.fake.requests()).length, 0);
    } finally { await stack.stop(); }
  });
});

describe('DeepSeek reasoning round-trip', () => {
  it('sends reasoning_content back on a tool-call turn, restoring it when the client dropped it', async () => {
    const stack = await startStack();
    try {
      const client = new OpenAI({ baseURL: stack.router.baseURL, apiKey: 'unused', maxRetries: 0 });
      const call = { id: 'call_ds1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } };
      await stack.fake.script('deepseek', [{ body: {
        id: 'x', object: 'chat.completion', created: 1, model: 'deepseek-reasoner',
        choices: [{ index: 0, message: { role: 'assistant', content: null, reasoning_content: 'Need the weather tool.', tool_calls: [call] }, finish_reason: 'tool_calls' }],
        usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
      } }]);
      const messages = [{ role: 'user', content: 'Weather in Oslo?' }, { role: 'assistant', content: 'Earlier answer.', reasoning_content: 'old thoughts' }, { role: 'user', content: 'And now?' }];
      const first = await client.chat.completions.create({ model: 'deepseek-reasoner', messages, tools: TOOLS });
      assert.equal(first.choices[0].message.reasoning_content, 'Need the weather tool.');
      messages.push({ role: 'assistant', content: null, tool_calls: first.choices[0].message.tool_calls });
      messages.push({ role: 'tool', tool_call_id: 'call_ds1', content: '3C' });
      await client.chat.completions.create({ model: 'deepseek-reasoner', messages, tools: TOOLS });
      const reqs = await stack.fake.requests();
      const sent = reqs[reqs.length - 1].body.messages;
      assert.equal(sent[1].reasoning_content, undefined, 'plain turns lose their reasoning');
      assert.equal(sent[3].reasoning_content, 'Need the weather tool.', 'the tool-call turn carries it back');
    } finally { await stack.stop(); }
  });
});
