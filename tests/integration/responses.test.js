// POST /v1/responses (the OpenAI Responses API) through the web server, driven by the official
// openai SDK with agents' keys: a Responses request becomes a chat request for any provider
// (OpenAI, Anthropic, Gemini, DeepSeek: the fake provider answers in each one's wire format) and
// the answer comes back as a Response object, or as the Responses API's SSE events. Every Response
// validates against the OpenAPI schema "Response" and every stream event against its own event
// schema; the streams' structure (sequence numbers, one open item at a time, deltas adding up to
// the done events and the final output) is checked event by event.
// Also: stored responses (retrieve, input_items, delete, store:false, other agents),
// previous_response_id, function tools over two turns (OpenAI and Anthropic with and without
// previous_response_id, Gemini with it), reasoning items (DeepSeek reasoning_content, Anthropic
// thinking and its signature), status incomplete, text.format json_schema, refusals of what no
// provider can do, n8n's requests, tiers, fallback and the request-log row.
// Reference: /work/shared/responses-embeddings-protocol.md.
'use strict';
const { describe, it, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('child_process');
const OpenAI = require('openai').default;
const { startStack, ROUTER_BIN } = require('./lib/harness');
const { assertSchema } = require('./lib/schema');

// One chat model per provider; prices in nano-USD per token (USD per Mtok x 1000) as in
// conf/llm-router.conf.
const PROVIDERS = [
  { provider: 'openai', model: 'gpt-4o-mini', inN: 150, outN: 600 },
  { provider: 'anthropic', model: 'claude-haiku-4-5', inN: 800, outN: 4000 },
  { provider: 'gemini', model: 'gemini-2.0-flash', inN: 100, outN: 400 },
  { provider: 'deepseek', model: 'deepseek-chat', inN: 270, outN: 1100 },
];
const AGENT = 'kb_manager';       // T3
const OTHER_AGENT = 'n8n_engineer'; // T4

// event type -> its schema in tests/specs/openai-openapi.yaml (the members of ResponseStreamEvent
// the router can send); any other type is checked against the union ResponseStreamEvent.
const EVENT_SCHEMAS = {
  'response.created': 'ResponseCreatedEvent',
  'response.in_progress': 'ResponseInProgressEvent',
  'response.output_item.added': 'ResponseOutputItemAddedEvent',
  'response.output_item.done': 'ResponseOutputItemDoneEvent',
  'response.content_part.added': 'ResponseContentPartAddedEvent',
  'response.content_part.done': 'ResponseContentPartDoneEvent',
  'response.output_text.delta': 'ResponseTextDeltaEvent',
  'response.output_text.done': 'ResponseTextDoneEvent',
  'response.refusal.delta': 'ResponseRefusalDeltaEvent',
  'response.refusal.done': 'ResponseRefusalDoneEvent',
  'response.function_call_arguments.delta': 'ResponseFunctionCallArgumentsDeltaEvent',
  'response.function_call_arguments.done': 'ResponseFunctionCallArgumentsDoneEvent',
  'response.reasoning_summary_part.added': 'ResponseReasoningSummaryPartAddedEvent',
  'response.reasoning_summary_part.done': 'ResponseReasoningSummaryPartDoneEvent',
  'response.reasoning_summary_text.delta': 'ResponseReasoningSummaryTextDeltaEvent',
  'response.reasoning_summary_text.done': 'ResponseReasoningSummaryTextDoneEvent',
  'response.reasoning_text.delta': 'ResponseReasoningTextDeltaEvent',
  'response.reasoning_text.done': 'ResponseReasoningTextDoneEvent',
  'response.completed': 'ResponseCompletedEvent',
  'response.incomplete': 'ResponseIncompleteEvent',
  'response.failed': 'ResponseFailedEvent',
  error: 'ResponseErrorEvent',
};

// The OpenAPI document is stricter than OpenAI's own wire: it types Response.user as a string and
// the usage of response.created / response.in_progress as an object, where OpenAI (and protocol
// §3/§4.2) send "user": null and "usage": null. Only those two nulls are taken out before
// validation; everything else is validated as sent.
function specView(obj) {
  const o = JSON.parse(JSON.stringify(obj));
  const fix = (r) => {
    if (!r || typeof r !== 'object') return;
    if (r.user === null) delete r.user;
    if (r.usage === null && r.status === 'in_progress') delete r.usage;
  };
  if (o && o.object === 'response') fix(o);
  if (o && o.response) fix(o.response);
  return o;
}

function assertEventSchema(ev) {
  assert.ok(ev && typeof ev.type === 'string', `an event with a type: ${JSON.stringify(ev).slice(0, 300)}`);
  assertSchema(EVENT_SCHEMAS[ev.type] || 'ResponseStreamEvent', specView(ev));
}

const textOf = (c) => {
  if (c === null || c === undefined) return '';
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) return c.map((p) => (typeof p === 'string' ? p : (p && typeof p.text === 'string' ? p.text : ''))).join('');
  return '';
};

// ---- what a Response object must look like ----

function assertUsage(u, what) {
  assert.ok(u && typeof u === 'object', `${what}: usage present`);
  for (const k of ['input_tokens', 'output_tokens', 'total_tokens']) assert.ok(Number.isInteger(u[k]) && u[k] >= 0, `${what}: usage.${k} = ${u[k]}`);
  assert.ok(Number.isInteger(u.input_tokens_details && u.input_tokens_details.cached_tokens), `${what}: usage.input_tokens_details.cached_tokens`);
  assert.ok(Number.isInteger(u.output_tokens_details && u.output_tokens_details.reasoning_tokens), `${what}: usage.output_tokens_details.reasoning_tokens`);
  assert.equal(u.total_tokens, u.input_tokens + u.output_tokens, `${what}: total = input + output`);
}

function assertItem(item, what) {
  switch (item.type) {
    case 'message':
      assert.match(item.id, /^msg_/, `${what}: message id`);
      assert.equal(item.role, 'assistant', `${what}: role`);
      assert.ok(['completed', 'incomplete'].includes(item.status), `${what}: message status ${item.status}`);
      assert.ok(Array.isArray(item.content) && item.content.length >= 1, `${what}: message content`);
      for (const p of item.content) {
        if (p.type === 'refusal') { assert.equal(typeof p.refusal, 'string'); continue; }
        assert.equal(p.type, 'output_text', `${what}: part type`);
        assert.equal(typeof p.text, 'string');
        assert.deepEqual(p.annotations, [], `${what}: annotations []`);
        assert.deepEqual(p.logprobs, [], `${what}: logprobs []`);
      }
      break;
    case 'function_call':
      assert.match(item.id, /^fc_/, `${what}: function_call id`);
      assert.ok(typeof item.call_id === 'string' && item.call_id.length > 0, `${what}: call_id`);
      assert.equal(typeof item.name, 'string');
      assert.equal(typeof item.arguments, 'string');
      JSON.parse(item.arguments);
      assert.ok(['completed', 'incomplete'].includes(item.status), `${what}: function_call status ${item.status}`);
      break;
    case 'reasoning':
      assert.match(item.id, /^rs_/, `${what}: reasoning id`);
      assert.ok(Array.isArray(item.summary), `${what}: reasoning summary`);
      break;
    default:
      assert.fail(`${what}: unexpected output item type ${item.type}`);
  }
}

// r: a Response as it came over the wire (never the SDK's object, which adds output_text).
function assertResponse(r, { model, status = 'completed', what = 'response' } = {}) {
  assertSchema('Response', specView(r));
  assert.match(r.id, /^resp_[A-Za-z0-9_-]+$/, `${what}: id`);
  assert.equal(r.object, 'response');
  assert.equal(r.status, status, `${what}: status`);
  if (model) assert.equal(r.model, model, `${what}: model = the model that answered`);
  assert.equal(r.output_text, undefined, `${what}: output_text is computed by the SDKs, never sent`);
  assert.ok(Array.isArray(r.output));
  r.output.forEach((item, i) => assertItem(item, `${what}.output[${i}]`));
  const ids = r.output.map((x) => x.id);
  assert.equal(new Set(ids).size, ids.length, `${what}: unique item ids`);
  if (status === 'completed' || status === 'incomplete') assertUsage(r.usage, what);
  return r;
}

const messageText = (r) => r.output.filter((x) => x.type === 'message').flatMap((x) => x.content).filter((p) => p.type === 'output_text').map((p) => p.text).join('');

// ---- streams ----

// SSE frames of a Responses stream: {raw, comment, event, data, dataLines}.
function parseFrames(text) {
  return text.replace(/\r\n/g, '\n').split('\n\n').filter((raw) => raw.trim() !== '').map((raw) => {
    const lines = raw.split('\n').filter((l) => l !== '');
    const f = { raw, comment: lines.every((l) => l.startsWith(':')) };
    const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
    f.dataLines = data.length;
    f.data = data.join('\n');
    const ev = lines.find((l) => l.startsWith('event:'));
    if (ev) f.event = ev.slice(6).trim();
    return f;
  });
}

// Checks the framing of a raw stream and returns its events.
function eventsOfFrames(frames) {
  const events = [];
  for (const f of frames) {
    if (f.comment) continue;
    assert.notEqual(f.data, '[DONE]', 'a Responses stream has no data: [DONE]');
    assert.ok(f.event, `every frame names its event (event: line): ${f.raw.slice(0, 300)}`);
    assert.equal(f.dataLines, 1, `one data: line per event: ${f.raw.slice(0, 300)}`);
    const ev = JSON.parse(f.data);
    assert.equal(ev.type, f.event, 'event: is the type of the data');
    events.push(ev);
  }
  return events;
}

// The structure of a Responses stream (protocol §4.3/§4.4): sequence numbers 0, 1, ...; created
// and in_progress first; items added at output_index = their position, one open at a time, their
// parts and deltas inside them, deltas adding up to the done events; the terminal event last, its
// response carrying exactly the items closed by output_item.done. Returns {events, final, items}.
function checkEvents(events, { terminal = 'response.completed', model } = {}) {
  assert.ok(events.length >= 3, `a stream of ${events.length} events`);
  events.forEach((e, i) => {
    assertEventSchema(e);
    assert.equal(e.sequence_number, i, `event ${i} (${e.type}): sequence_number`);
  });
  const types = events.map((e) => e.type);
  assert.equal(types[0], 'response.created', `first event: ${types.join(',')}`);
  assert.equal(types[1], 'response.in_progress', `second event: ${types.join(',')}`);
  assert.equal(types[types.length - 1], terminal, `last event: ${types.join(',')}`);
  const terminals = ['response.completed', 'response.incomplete', 'response.failed'];
  assert.equal(types.filter((t) => terminals.includes(t)).length, 1, `one terminal event: ${types.join(',')}`);
  const id = events[0].response.id;
  for (const e of events.slice(0, 2)) {
    assert.equal(e.response.status, 'in_progress', `${e.type}: status in_progress`);
    assert.deepEqual(e.response.output, [], `${e.type}: output []`);
    assert.equal(e.response.id, id);
  }
  const items = [];
  let open = null;
  for (const e of events.slice(2, -1)) {
    const where = `${e.type} #${e.sequence_number}`;
    if (e.type === 'response.output_item.added') {
      assert.equal(open, null, `${where}: one open item at a time`);
      assert.equal(e.output_index, items.length, `${where}: output_index = position`);
      assert.equal(e.item.status === undefined || e.item.status === 'in_progress', true, `${where}: item in_progress`);
      if (e.item.type === 'message') { assert.match(e.item.id, /^msg_/); assert.deepEqual(e.item.content, [], `${where}: message starts empty`); }
      else if (e.item.type === 'function_call') { assert.match(e.item.id, /^fc_/); assert.equal(e.item.arguments, '', `${where}: arguments start empty`); assert.ok(e.item.call_id && e.item.name, `${where}: call_id and name`); }
      else if (e.item.type === 'reasoning') assert.match(e.item.id, /^rs_/);
      else assert.fail(`${where}: item type ${e.item.type}`);
      open = { index: e.output_index, item: e.item, text: '', args: '', part: null, summary: '', summaries: [], sumOpen: false };
      continue;
    }
    assert.ok(open, `${where}: inside an open item`);
    if (e.item_id !== undefined) assert.equal(e.item_id, open.item.id, `${where}: item_id = the open item's id`);
    assert.equal(e.output_index, open.index, `${where}: output_index`);
    switch (e.type) {
      case 'response.content_part.added':
        assert.equal(open.item.type, 'message');
        assert.equal(open.part, null, `${where}: one part`);
        assert.equal(e.content_index, 0);
        assert.equal(e.part.type, 'output_text');
        assert.equal(e.part.text, '');
        open.part = 'open';
        break;
      case 'response.output_text.delta':
        assert.equal(open.part, 'open', `${where}: delta inside an open part`);
        assert.equal(e.content_index, 0);
        open.text += e.delta;
        break;
      case 'response.output_text.done':
        assert.equal(open.part, 'open');
        assert.equal(e.text, open.text, `${where}: text = the deltas`);
        open.part = 'text-done';
        break;
      case 'response.content_part.done':
        assert.equal(open.part, 'text-done', `${where}: after output_text.done`);
        assert.equal(e.part.type, 'output_text');
        assert.equal(e.part.text, open.text, `${where}: part text = the deltas`);
        open.part = 'done';
        break;
      case 'response.function_call_arguments.delta':
        assert.equal(open.item.type, 'function_call');
        open.args += e.delta;
        break;
      case 'response.function_call_arguments.done':
        assert.equal(open.item.type, 'function_call');
        assert.equal(e.arguments, open.args, `${where}: arguments = the deltas`);
        if (e.name !== undefined) assert.equal(e.name, open.item.name);
        open.argsDone = true;
        break;
      // Reasoning summaries (§4.3c): one summary part at a time, its text the sum of its deltas.
      case 'response.reasoning_summary_part.added':
        assert.equal(open.item.type, 'reasoning');
        assert.equal(e.summary_index, open.summaries.length, `${where}: summary_index`);
        assert.equal(open.sumOpen, false, `${where}: one summary part at a time`);
        assert.equal(e.part.type, 'summary_text');
        open.sumOpen = true;
        open.summary = '';
        break;
      case 'response.reasoning_summary_text.delta':
        assert.ok(open.sumOpen, `${where}: inside a summary part`);
        assert.equal(e.summary_index, open.summaries.length);
        open.summary += e.delta;
        break;
      case 'response.reasoning_summary_text.done':
        assert.ok(open.sumOpen);
        assert.equal(e.text, open.summary, `${where}: text = the deltas`);
        break;
      case 'response.reasoning_summary_part.done':
        assert.ok(open.sumOpen);
        assert.equal(e.part.text, open.summary, `${where}: part text = the deltas`);
        open.summaries.push(open.summary);
        open.sumOpen = false;
        break;
      case 'response.reasoning_text.delta':
      case 'response.reasoning_text.done':
        assert.equal(open.item.type, 'reasoning');
        break;
      case 'response.output_item.done': {
        const it = e.item;
        assert.equal(it.id, open.item.id, `${where}: same id as added`);
        assert.equal(it.type, open.item.type);
        assertItem(it, where);
        if (it.type === 'message') {
          assert.equal(open.part, 'done', `${where}: the part was closed`);
          assert.equal(it.content.length, 1);
          assert.equal(it.content[0].text, open.text, `${where}: message text = the deltas`);
        } else if (it.type === 'reasoning') {
          assert.equal(open.sumOpen, false, `${where}: the summary part was closed`);
          assert.deepEqual(it.summary.map((x) => x.text), open.summaries, `${where}: summary = the summary events`);
        } else if (it.type === 'function_call') {
          assert.ok(open.argsDone, `${where}: function_call_arguments.done came first`);
          assert.equal(it.arguments, open.args, `${where}: arguments = the deltas`);
          assert.equal(it.call_id, open.item.call_id);
          assert.equal(it.name, open.item.name);
        }
        items.push(it);
        open = null;
        break;
      }
      default:
        assert.fail(`${where}: unexpected event type`);
    }
  }
  assert.equal(open, null, 'every item closed before the terminal event');
  const final = events[events.length - 1].response;
  assertResponse(final, { model, status: terminal === 'response.completed' ? 'completed' : terminal === 'response.incomplete' ? 'incomplete' : 'failed', what: terminal });
  assert.equal(final.id, id, 'the terminal response has the id of response.created');
  assert.deepEqual(final.output, items, 'the terminal response carries the items as output_item.done closed them');
  return { events, final, items };
}

// ---- scripted upstream answers ----

const TOOL = {
  type: 'function', name: 'get_weather', description: 'Weather of a city', strict: true,
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
};
const ARGS = '{"city":"Paris"}';

const openaiToolBody = (callId) => ({ body: {
  id: 'chatcmpl-tool1', object: 'chat.completion', created: 1767225600, model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: null, refusal: null, tool_calls: [{ id: callId, type: 'function', function: { name: 'get_weather', arguments: ARGS } }] }, logprobs: null, finish_reason: 'tool_calls' }],
  usage: { prompt_tokens: 40, completion_tokens: 12, total_tokens: 52, prompt_tokens_details: { cached_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 } },
} });

const oaChunk = (delta, finish = null) => 'data: ' + JSON.stringify({ id: 'chatcmpl-tool2', object: 'chat.completion.chunk', created: 1767225600, model: 'gpt-4o-mini', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] });
const openaiToolStream = (callId) => ({ sse: [
  oaChunk({ role: 'assistant', content: null, tool_calls: [{ index: 0, id: callId, type: 'function', function: { name: 'get_weather', arguments: '' } }] }),
  oaChunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
  oaChunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
  oaChunk({}, 'tool_calls'),
  'data: ' + JSON.stringify({ id: 'chatcmpl-tool2', object: 'chat.completion.chunk', created: 1767225600, model: 'gpt-4o-mini', choices: [], usage: { prompt_tokens: 40, completion_tokens: 12, total_tokens: 52 } }),
  'data: [DONE]',
] });

const anthropicToolBody = (toolId) => ({ body: {
  id: 'msg_tool1', type: 'message', role: 'assistant', model: 'claude-haiku-4-5',
  content: [{ type: 'text', text: 'Let me check.' }, { type: 'tool_use', id: toolId, name: 'get_weather', input: { city: 'Paris' } }],
  stop_reason: 'tool_use', stop_sequence: null, usage: { input_tokens: 50, output_tokens: 20 },
} });

const aEv = (name, data) => `event: ${name}\ndata: ${JSON.stringify(Object.assign({ type: name }, data))}`;
const anthropicToolStream = (toolId) => ({ sse: [
  aEv('message_start', { message: { id: 'msg_tool2', type: 'message', role: 'assistant', model: 'claude-haiku-4-5', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 50, output_tokens: 1 } } }),
  aEv('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
  aEv('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Let me ' } }),
  aEv('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'check.' } }),
  aEv('content_block_stop', { index: 0 }),
  aEv('content_block_start', { index: 1, content_block: { type: 'tool_use', id: toolId, name: 'get_weather', input: {} } }),
  aEv('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: '{"city": "Pa' } }),
  aEv('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: 'ris"}' } }),
  aEv('content_block_stop', { index: 1 }),
  aEv('message_delta', { delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 20 } }),
  aEv('message_stop', {}),
] });

const geminiToolBody = () => ({ body: {
  candidates: [{ content: { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } }, thoughtSignature: 'R2VtaW5pU2lnMQ==' }] }, finishReason: 'STOP', index: 0 }],
  usageMetadata: { promptTokenCount: 30, candidatesTokenCount: 12, totalTokenCount: 42 }, modelVersion: 'gemini-2.0-flash', responseId: 'fakeTool01',
} });

// Thinking (with its signature), text, then a tool call whose arguments come in fragments.
const anthropicThinkingToolStream = (toolId) => ({ sse: [
  aEv('message_start', { message: { id: 'msg_think', type: 'message', role: 'assistant', model: 'claude-haiku-4-5', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 40, output_tokens: 1, cache_read_input_tokens: 10, cache_creation_input_tokens: 5 } } }),
  aEv('content_block_start', { index: 0, content_block: { type: 'thinking', thinking: '' } }),
  aEv('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'I need ' } }),
  aEv('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'the weather.' } }),
  aEv('content_block_delta', { index: 0, delta: { type: 'signature_delta', signature: 'SIG-abc123==' } }),
  aEv('content_block_stop', { index: 0 }),
  aEv('content_block_start', { index: 1, content_block: { type: 'text', text: '' } }),
  aEv('content_block_delta', { index: 1, delta: { type: 'text_delta', text: 'Checking.' } }),
  aEv('content_block_stop', { index: 1 }),
  aEv('content_block_start', { index: 2, content_block: { type: 'tool_use', id: toolId, name: 'get_weather', input: {} } }),
  aEv('content_block_delta', { index: 2, delta: { type: 'input_json_delta', partial_json: '{"city":' } }),
  aEv('content_block_delta', { index: 2, delta: { type: 'input_json_delta', partial_json: ' "Paris"}' } }),
  aEv('content_block_stop', { index: 2 }),
  aEv('message_delta', { delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 60 } }),
  aEv('message_stop', {}),
] });

// ---- the tests ----

describe('POST /v1/responses', () => {
  let stack;
  const keys = {};
  let client;   // kb_manager (T3)
  let other;    // n8n_engineer (T4)
  let lastRaw;  // the JSON body of the last non-stream answer the SDK clients received

  const recordingFetch = async (url, init) => {
    const r = await fetch(url, init);
    lastRaw = undefined;
    if (!/text\/event-stream/.test(r.headers.get('content-type') || '')) {
      const text = await r.clone().text();
      try { lastRaw = JSON.parse(text); } catch (e) { lastRaw = text; }
    }
    return r;
  };
  const req = async (method, p, body, key = keys[AGENT]) => {
    const r = await fetch(stack.router.baseURL + p, {
      method,
      headers: Object.assign({ authorization: `Bearer ${key}` }, body !== undefined ? { 'content-type': 'application/json' } : {}),
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await r.text();
    let json;
    try { json = JSON.parse(text); } catch (e) { json = undefined; }
    return { status: r.status, headers: r.headers, text, json };
  };
  // A streamed create over raw HTTP: framing checked, events checked. Returns checkEvents' result
  // plus status and headers.
  const streamRaw = async (body, opts = {}, key = keys[AGENT]) => {
    const r = await req('POST', '/responses', Object.assign({ stream: true }, body), key);
    assert.equal(r.status, 200, `stream: ${r.text.slice(0, 500)}`);
    assert.match(r.headers.get('content-type') || '', /text\/event-stream/);
    const events = eventsOfFrames(parseFrames(r.text));
    return Object.assign(checkEvents(events, opts), { status: r.status, headers: r.headers, text: r.text });
  };
  const upstream = async () => (await stack.fake.requests()).filter((x) => x.api);
  const assert404 = (r, what) => {
    assert.equal(r.status, 404, `${what}: ${r.text.slice(0, 300)}`);
    assertSchema('ErrorResponse', r.json);
    assert.equal(r.json.error.type, 'invalid_request_error', what);
  };
  // The log row of a response, found by X-Request-Id; the response id is that request id with a
  // resp_ prefix.
  const rowOf = async (respId, headers) => {
    const rid = headers.get('x-request-id');
    assert.ok(rid, 'X-Request-Id');
    const bare = rid.replace(/^(chatcmpl-|resp_)/, '');
    assert.ok([rid, `resp_${rid}`, `resp_${bare}`].includes(respId), `response id ${respId} is the request id ${rid} with a resp_ prefix`);
    return stack.router.row(rid);
  };

  before(async () => {
    // Agents' keys as in production; upstream failures are scripted: no cooldown.
    stack = await startStack({ auth: true, config: (t) => t.replace('failures = 3;', 'failures = 0;') });
    for (const agent of [AGENT, OTHER_AGENT]) {
      const made = spawnSync(ROUTER_BIN, ['keys', 'create', '--agent', agent], { env: stack.router.env, encoding: 'utf8', timeout: 30000 });
      assert.equal(made.status, 0, made.stderr);
      keys[agent] = made.stdout.trim();
    }
    client = new OpenAI({ baseURL: stack.router.baseURL, apiKey: keys[AGENT], maxRetries: 0, fetch: recordingFetch });
    other = new OpenAI({ baseURL: stack.router.baseURL, apiKey: keys[OTHER_AGENT], maxRetries: 0, fetch: recordingFetch });
  });
  after(async () => { if (stack) await stack.stop(); });
  beforeEach(async () => { await stack.fake.reset(); });

  for (const c of PROVIDERS) {
    it(`${c.provider} (${c.model}): non-streaming create, the SDK's output_text, upstream request, log row`, async () => {
      const { data, response } = await client.responses.create({
        model: c.model, instructions: 'Be brief.', input: 'Say hello to the router.', temperature: 0.3,
      }).withResponse();
      const raw = lastRaw;
      assertResponse(raw, { model: c.model });
      assert.equal(raw.output.length, 1, 'one message item');
      const [msg] = raw.output;
      assert.equal(msg.type, 'message');
      assert.equal(msg.status, 'completed');
      assert.equal(msg.content.length, 1);
      assert.match(msg.content[0].text, new RegExp(`Hello from the fake ${c.provider}`));
      assert.equal(data.output_text, msg.content[0].text, 'the SDK\'s output_text');
      assert.equal(data.id, raw.id);
      assert.equal(raw.instructions, 'Be brief.', 'instructions echoed');
      assert.equal(raw.temperature, 0.3, 'temperature echoed');
      assert.ok(raw.usage.input_tokens > 0 && raw.usage.output_tokens > 0, 'usage counted');
      assert.equal(response.headers.get('x-router-model'), c.model);
      assert.equal(response.headers.get('x-router-provider'), c.provider);

      const ups = await upstream();
      assert.equal(ups.length, 1, 'one upstream call');
      const [up] = ups;
      assert.equal(up.provider, c.provider);
      assert.equal(up.body.input, undefined, 'no Responses fields upstream (input)');
      assert.equal(up.body.instructions, undefined, 'no Responses fields upstream (instructions)');
      if (c.provider === 'anthropic') {
        assert.equal(up.path, '/anthropic/v1/messages');
        assert.equal(textOf(up.body.system), 'Be brief.', 'instructions -> system');
        assert.deepEqual(up.body.messages.map((m) => [m.role, textOf(m.content)]), [['user', 'Say hello to the router.']]);
        assert.equal(up.body.temperature, 0.3);
      } else if (c.provider === 'gemini') {
        assert.equal(up.path, `/gemini/v1beta/models/${c.model}:generateContent`);
        assert.equal(textOf(up.body.systemInstruction.parts), 'Be brief.', 'instructions -> systemInstruction');
        assert.deepEqual(up.body.contents.map((m) => [m.role, textOf(m.parts)]), [['user', 'Say hello to the router.']]);
        assert.equal(up.body.generationConfig.temperature, 0.3);
      } else {
        assert.match(up.path, /\/chat\/completions$/);
        assert.equal(up.body.model, c.model);
        assert.deepEqual(up.body.messages.map((m) => [m.role, textOf(m.content)]), [['system', 'Be brief.'], ['user', 'Say hello to the router.']]);
        assert.equal(up.body.temperature, 0.3);
        assert.ok(up.body.stream !== true, 'not streamed upstream');
      }

      const row = await rowOf(raw.id, response.headers);
      assert.equal(row.path, '/v1/responses');
      assert.equal(row.status, 200);
      assert.equal(row.stream, 0);
      assert.equal(row.requested_model, c.model);
      assert.equal(row.model, c.model);
      assert.equal(row.provider, c.provider);
      assert.equal(row.agent, AGENT);
      assert.equal(row.tier, 'T3');
      assert.equal(row.input_tokens, raw.usage.input_tokens, 'row input tokens = usage.input_tokens');
      assert.equal(row.output_tokens, raw.usage.output_tokens, 'row output tokens = usage.output_tokens');
      assert.equal(row.cost_nusd, raw.usage.input_tokens * c.inN + raw.usage.output_tokens * c.outN, 'cost from the model\'s prices');
      assert.equal(row.error_type, null);
    });

    it(`${c.provider} (${c.model}): streaming: raw SSE events, SDK iteration and responses.stream().finalResponse()`, async () => {
      // Raw: framing, sequence, every event's schema.
      const s = await streamRaw({ model: c.model, input: 'Stream a greeting please.' }, { model: c.model });
      assert.deepEqual(s.items.map((x) => x.type), ['message']);
      assert.match(messageText(s.final), new RegExp(`Hello from the fake ${c.provider}`));
      const types = s.events.map((e) => e.type);
      assert.deepEqual([...new Set(types)], ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added',
        'response.output_text.delta', 'response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed'], 'the text sequence (§4.3a)');
      assert.ok(types.filter((t) => t === 'response.output_text.delta').length >= 2, 'the text arrives in several deltas');
      assert.ok(s.final.usage.input_tokens > 0 && s.final.usage.output_tokens > 0);
      const [up] = await upstream();
      if (c.provider === 'gemini') assert.equal(up.path, `/gemini/v1beta/models/${c.model}:streamGenerateContent?alt=sse`);
      else assert.equal(up.body.stream, true, 'streamed upstream');
      const row = await rowOf(s.final.id, s.headers);
      assert.equal(row.path, '/v1/responses');
      assert.equal(row.stream, 1);
      assert.equal(row.status, 200);
      assert.equal(row.model, c.model);
      assert.equal(row.input_tokens, s.final.usage.input_tokens);
      assert.equal(row.output_tokens, s.final.usage.output_tokens);
      assert.equal(row.cost_nusd, s.final.usage.input_tokens * c.inN + s.final.usage.output_tokens * c.outN);

      // The SDK's own stream: for await over create({stream: true}).
      const stream = await client.responses.create({ model: c.model, input: 'Stream again.', stream: true });
      const seen = [];
      for await (const ev of stream) seen.push(ev);
      const it2 = checkEvents(seen, { model: c.model });
      assert.match(messageText(it2.final), new RegExp(`Hello from the fake ${c.provider}`));

      // responses.stream() accumulates a snapshot and gives the final response.
      const runner = client.responses.stream({ model: c.model, input: 'And once more.' });
      const seen2 = [];
      for await (const ev of runner) seen2.push(ev);
      const final = await runner.finalResponse();
      assert.equal(final.status, 'completed');
      assert.equal(final.model, c.model);
      assert.match(final.output_text, new RegExp(`Hello from the fake ${c.provider}`), 'finalResponse().output_text');
      assert.equal(final.output_text, messageText(seen2[seen2.length - 1].response));
    });
  }

  it('stored responses: retrieve, input_items (desc by default), delete, then 404', async () => {
    const input = [
      { role: 'user', content: 'first' },
      { type: 'message', role: 'assistant', content: 'second' },
      { role: 'user', content: [{ type: 'input_text', text: 'third' }] },
    ];
    const { data: created, response } = await client.responses.create({ model: 'gpt-4o-mini', input, metadata: { ticket: 'T-1' } }).withResponse();
    const raw = assertResponse(lastRaw, { model: 'gpt-4o-mini' });
    assert.equal(raw.store, true, 'store defaults to true');
    assert.deepEqual(raw.metadata, { ticket: 'T-1' }, 'metadata echoed');
    await rowOf(created.id, response.headers);

    // GET /v1/responses/{id}: the stored object.
    const got = await client.responses.retrieve(created.id);
    const gotRaw = assertResponse(lastRaw, { model: 'gpt-4o-mini', what: 'retrieved' });
    for (const k of ['id', 'object', 'created_at', 'status', 'model', 'output', 'usage', 'metadata', 'instructions']) assert.deepEqual(gotRaw[k], raw[k], `retrieved ${k} = created ${k}`);
    assert.equal(got.output_text, created.output_text, 'the SDK\'s output_text of the retrieved response');
    // Replaying a stored stream (?stream=true) is refused, naming the parameter, not ignored.
    const replay = await req('GET', `/responses/${created.id}?stream=true`);
    assert.equal(replay.status, 400, replay.text);
    assert.equal(replay.json.error.param, 'stream');

    // GET /v1/responses/{id}/input_items: the request's items, newest first by default.
    const listed = await req('GET', `/responses/${created.id}/input_items`);
    assert.equal(listed.status, 200, listed.text);
    assertSchema('ResponseItemList', listed.json);
    assert.equal(listed.json.object, 'list');
    assert.equal(listed.json.has_more, false);
    assert.deepEqual(listed.json.data.map((x) => [x.type, x.role, textOf(x.content)]), [['message', 'user', 'third'], ['message', 'assistant', 'second'], ['message', 'user', 'first']], 'input items, order desc by default');
    assert.equal(listed.json.first_id, listed.json.data[0].id);
    assert.equal(listed.json.last_id, listed.json.data[2].id);
    assert.equal(new Set(listed.json.data.map((x) => x.id)).size, 3, 'each item has its own id');
    const page = await client.responses.inputItems.list(created.id, { order: 'asc' });
    assert.deepEqual(page.data.map((x) => textOf(x.content)), ['first', 'second', 'third'], 'order asc');
    const limited = await req('GET', `/responses/${created.id}/input_items?limit=2`);
    assert.equal(limited.status, 200, limited.text);
    assert.equal(limited.json.data.length, 2);
    assert.equal(limited.json.has_more, true, 'limit=2 of 3: has_more');

    // DELETE: {id, object, deleted}, then 404 everywhere.
    const del = await req('DELETE', `/responses/${created.id}`);
    assert.equal(del.status, 200, del.text);
    assert.deepEqual(del.json, { id: created.id, object: 'response', deleted: true });
    assert404(await req('GET', `/responses/${created.id}`), 'GET after DELETE');
    assert404(await req('GET', `/responses/${created.id}/input_items`), 'input_items after DELETE');
    assert404(await req('DELETE', `/responses/${created.id}`), 'DELETE twice');
    await assert.rejects(client.responses.retrieve(created.id), (e) => { assert.ok(e instanceof OpenAI.NotFoundError, String(e)); return true; });

    // The SDK's delete (it expects no particular body) works too.
    const second = await client.responses.create({ model: 'gpt-4o-mini', input: 'to be deleted' });
    await client.responses.delete(second.id);
    await assert.rejects(client.responses.retrieve(second.id), OpenAI.NotFoundError);
    assert404(await req('GET', '/responses/resp_doesnotexist0000'), 'unknown id');
  });

  it('item_reference: a stored item goes back as input; references past server.max_body_bytes get 413, nothing upstream', async () => {
    const big = 'x'.repeat(64 * 1024);
    const first = await req('POST', '/responses', { model: 'gpt-4o-mini', input: big });
    assert.equal(first.status, 200, first.text.slice(0, 300));
    const items = await req('GET', `/responses/${first.json.id}/input_items`);
    assert.equal(items.status, 200, items.text.slice(0, 300));
    const id = items.json.data[0].id;
    await stack.fake.reset();
    const ref = { type: 'item_reference', id };
    const ok = await req('POST', '/responses', { model: 'gpt-4o-mini', input: [ref, { role: 'user', content: 'Again?' }] });
    assert.equal(ok.status, 200, ok.text.slice(0, 300));
    const [up] = await upstream();
    assert.equal(up.body.messages[0].content, big, 'the referenced item went upstream');
    await stack.fake.reset();
    // 400 references of a 64 KiB item: 25 MiB of input from a 20 KB body.
    const many = await req('POST', '/responses', { model: 'gpt-4o-mini', input: Array.from({ length: 400 }, () => ref) });
    assert.equal(many.status, 413, many.text.slice(0, 300));
    assertSchema('ErrorResponse', many.json);
    assert.equal(many.json.error.code, 'request_too_large');
    assert.equal(many.json.error.param, 'input');
    assert.equal((await upstream()).length, 0, 'nothing upstream');
  });

  it('a streamed response is stored once finished; store:false keeps nothing', async () => {
    const s = await streamRaw({ model: 'claude-haiku-4-5', input: 'Stored stream.' }, { model: 'claude-haiku-4-5' });
    const got = await req('GET', `/responses/${s.final.id}`);
    assert.equal(got.status, 200, got.text);
    assertResponse(got.json, { model: 'claude-haiku-4-5', what: 'retrieved stream' });
    assert.deepEqual(got.json.output, s.final.output, 'stored output = the streamed output');
    assert.deepEqual(got.json.usage, s.final.usage);

    const { data, response } = await client.responses.create({ model: 'gpt-4o-mini', input: 'Do not keep this.', store: false }).withResponse();
    const raw = assertResponse(lastRaw, { model: 'gpt-4o-mini' });
    assert.equal(raw.store, false, 'store:false echoed');
    assert.match(data.output_text, /fake openai/);
    const row = await rowOf(data.id, response.headers);
    assert.equal(row.path, '/v1/responses');
    assert404(await req('GET', `/responses/${data.id}`), 'GET of a store:false response');
    assert404(await req('GET', `/responses/${data.id}/input_items`), 'input_items of a store:false response');
    const prev = await req('POST', '/responses', { model: 'gpt-4o-mini', input: 'Continue.', previous_response_id: data.id });
    assert.equal(prev.status, 400, prev.text);
    assert.equal(prev.json.error.code, 'previous_response_not_found');

    const streamed = await streamRaw({ model: 'gpt-4o-mini', input: 'Nor this.', store: false }, { model: 'gpt-4o-mini' });
    assert.equal(streamed.final.store, false);
    assert404(await req('GET', `/responses/${streamed.final.id}`), 'GET of a store:false stream');
  });

  it('a response is visible only to the agent that created it', async () => {
    const mine = await client.responses.create({ model: 'gpt-4o-mini', input: 'Private to kb_manager.' });
    const k = keys[OTHER_AGENT];
    assert404(await req('GET', `/responses/${mine.id}`, undefined, k), 'another agent\'s GET');
    assert404(await req('GET', `/responses/${mine.id}/input_items`, undefined, k), 'another agent\'s input_items');
    assert404(await req('DELETE', `/responses/${mine.id}`, undefined, k), 'another agent\'s DELETE');
    await assert.rejects(other.responses.retrieve(mine.id), OpenAI.NotFoundError);
    const cont = await req('POST', '/responses', { model: 'gpt-4o-mini', input: 'Continue theirs.', previous_response_id: mine.id }, k);
    assert.equal(cont.status, 400, cont.text);
    assert.equal(cont.json.error.code, 'previous_response_not_found', 'another agent cannot continue it');
    assert.equal(cont.json.error.param, 'previous_response_id');
    // Still there for its owner.
    const again = await req('GET', `/responses/${mine.id}`);
    assert.equal(again.status, 200, again.text);
    assert.equal(again.json.id, mine.id);
    // No key at all.
    const anon = await fetch(`${stack.router.baseURL}/responses/${mine.id}`);
    assert.equal(anon.status, 401);
  });

  it('previous_response_id: earlier input and output go upstream before the new input; instructions are not inherited', async () => {
    const r1 = await client.responses.create({ model: 'gpt-4o-mini', instructions: 'Answer in French.', input: 'My name is Ada.' });
    const r2 = await client.responses.create({ model: 'gpt-4o-mini', previous_response_id: r1.id, input: 'What is my name?' });
    const raw2 = assertResponse(lastRaw, { model: 'gpt-4o-mini' });
    assert.equal(raw2.previous_response_id, r1.id, 'previous_response_id echoed');
    const r3 = await client.responses.create({ model: 'gpt-4o-mini', previous_response_id: r2.id, input: [{ role: 'user', content: [{ type: 'input_text', text: 'Thanks.' }] }] });
    const [u1, u2, u3] = await upstream();
    const conv = (u) => u.body.messages.map((m) => [m.role, textOf(m.content)]);
    assert.deepEqual(conv(u1), [['system', 'Answer in French.'], ['user', 'My name is Ada.']]);
    assert.deepEqual(conv(u2), [['user', 'My name is Ada.'], ['assistant', r1.output_text], ['user', 'What is my name?']],
      'turn 2: the earlier input and output, then the new input; no inherited instructions');
    assert.deepEqual(conv(u3), [['user', 'My name is Ada.'], ['assistant', r1.output_text], ['user', 'What is my name?'], ['assistant', r2.output_text], ['user', 'Thanks.']],
      'turn 3: the whole chain');
    assert.match(r3.output_text, /fake openai/);
    // input_items lists the request's own items only.
    const items = await client.responses.inputItems.list(r2.id);
    assert.deepEqual(items.data.map((x) => textOf(x.content)), ['What is my name?']);

    // Continued on another provider: the chain goes to Anthropic in its wire format.
    await stack.fake.reset();
    const r4 = await client.responses.create({ model: 'claude-haiku-4-5', previous_response_id: r1.id, input: 'Now in English.' });
    assertResponse(lastRaw, { model: 'claude-haiku-4-5' });
    assert.match(r4.output_text, /fake anthropic/);
    const [ua] = await upstream();
    assert.equal(ua.provider, 'anthropic');
    assert.deepEqual(ua.body.messages.map((m) => [m.role, textOf(m.content)]), [['user', 'My name is Ada.'], ['assistant', r1.output_text], ['user', 'Now in English.']]);

    // Streamed continuation.
    await stack.fake.reset();
    const s = await streamRaw({ model: 'gpt-4o-mini', previous_response_id: r1.id, input: 'Stream the rest.' }, { model: 'gpt-4o-mini' });
    assert.equal(s.final.previous_response_id, r1.id);
    const [us] = await upstream();
    assert.deepEqual(conv(us), [['user', 'My name is Ada.'], ['assistant', r1.output_text], ['user', 'Stream the rest.']]);
  });

  it('previous_response_id: the budget counts the conversation sent upstream, not the client\'s short body', async () => {
    // 100 KB: under a shared host's FastCGI request limit (FcgidMaxRequestLen 128 KiB).
    const first = await req('POST', '/responses', { model: 'gpt-4o-mini', input: 'x'.repeat(100000) });
    assert.equal(first.status, 200, first.text.slice(0, 300));
    await stack.fake.reset();
    // A 60-byte body with an output bound: its estimate once covered the body alone, and the
    // charge was capped at it (a 100 KB conversation charged as 60 bytes).
    const next = await req('POST', '/responses', { model: 'gpt-4o-mini', previous_response_id: first.json.id, input: 'go on', max_output_tokens: 16 });
    assert.equal(next.status, 200, next.text.slice(0, 300));
    const [up] = await upstream();
    assert.ok(JSON.stringify(up.body).length > 100000, 'the conversation went upstream');
    const row = await stack.router.row(next.headers.get('x-request-id'));
    assert.ok(row.input_tokens >= 20000, `input_tokens ${row.input_tokens}`);
    // gpt-4o-mini: $0.15 per million input tokens, 150 nano-USD a token.
    assert.ok(row.cost_nusd >= row.input_tokens * 150, `cost_nusd ${row.cost_nusd} for ${row.input_tokens} input tokens`);
  });

  it('an unknown previous_response_id is a 400 naming it, before any upstream call', async () => {
    const r = await req('POST', '/responses', { model: 'gpt-4o-mini', input: 'Hi', previous_response_id: 'resp_nosuchresponse0001' });
    assert.equal(r.status, 400, r.text);
    assertSchema('ErrorResponse', r.json);
    assert.equal(r.json.error.type, 'invalid_request_error');
    assert.equal(r.json.error.code, 'previous_response_not_found');
    assert.equal(r.json.error.param, 'previous_response_id');
    await assert.rejects(client.responses.create({ model: 'gpt-4o-mini', input: 'Hi', previous_response_id: 'resp_nosuchresponse0002', stream: true }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, String(e));
      assert.equal(e.code, 'previous_response_not_found');
      assert.equal(e.param, 'previous_response_id');
      return true;
    });
    assert.deepEqual(await upstream(), [], 'nothing reached a provider');
    const row = await stack.router.row(r.headers.get('x-request-id'));
    assert.equal(row.status, 400);
    assert.equal(row.path, '/v1/responses');
  });

  // Function tools over two turns. OpenAI's second request must carry an assistant message with
  // tool_calls and a tool message; Anthropic's a tool_use block and a tool_result block.
  const checkToolTurn2 = (provider, up, callId, { text } = {}) => {
    if (provider === 'openai') {
      const msgs = up.body.messages;
      assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant', 'tool'], `turn 2 roles: ${JSON.stringify(msgs)}`);
      assert.equal(textOf(msgs[0].content), 'Weather in Paris?');
      assert.deepEqual(msgs[1].tool_calls, [{ id: callId, type: 'function', function: { name: 'get_weather', arguments: ARGS } }], 'the assistant turn carries the tool call');
      if (text) assert.equal(textOf(msgs[1].content), text);
      assert.equal(msgs[2].tool_call_id, callId);
      assert.equal(textOf(msgs[2].content), '18C, sunny');
      assert.deepEqual(up.body.tools, [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: TOOL.parameters, strict: true } }], 'tools nested for chat');
    } else {
      const msgs = up.body.messages;
      assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant', 'user'], `turn 2 roles: ${JSON.stringify(msgs)}`);
      assert.equal(textOf(msgs[0].content), 'Weather in Paris?');
      const blocks = Array.isArray(msgs[1].content) ? msgs[1].content : [{ type: 'text', text: msgs[1].content }];
      const use = blocks.filter((b) => b.type === 'tool_use');
      assert.deepEqual(use, [{ type: 'tool_use', id: callId, name: 'get_weather', input: { city: 'Paris' } }], 'the assistant turn carries the tool_use');
      if (text) assert.equal(blocks.filter((b) => b.type === 'text').map((b) => b.text).join(''), text);
      const results = (Array.isArray(msgs[2].content) ? msgs[2].content : []).filter((b) => b.type === 'tool_result');
      assert.equal(results.length, 1, `a tool_result: ${JSON.stringify(msgs[2])}`);
      assert.equal(results[0].tool_use_id, callId);
      assert.equal(textOf(results[0].content), '18C, sunny');
      assert.deepEqual(up.body.tools.map((t) => [t.name, t.input_schema]), [['get_weather', TOOL.parameters]]);
    }
  };

  for (const [provider, model, scriptBody, scriptStream, callId, text] of [
    ['openai', 'gpt-4o-mini', openaiToolBody, openaiToolStream, 'call_w1', null],
    ['anthropic', 'claude-haiku-4-5', anthropicToolBody, anthropicToolStream, 'toolu_w1', 'Let me check.'],
  ]) {
    it(`${provider}: function tool over two turns with previous_response_id (first turn streamed)`, async () => {
      await stack.fake.script(provider, [scriptStream(callId)]);
      const s = await streamRaw({ model, input: 'Weather in Paris?', tools: [TOOL] }, { model });
      const types = s.events.map((e) => e.type);
      assert.ok(types.includes('response.function_call_arguments.delta'), `function_call_arguments.delta events: ${types.join(',')}`);
      const calls = s.final.output.filter((x) => x.type === 'function_call');
      assert.equal(calls.length, 1);
      assert.equal(calls[0].call_id, callId);
      assert.equal(calls[0].name, 'get_weather');
      assert.deepEqual(JSON.parse(calls[0].arguments), { city: 'Paris' });
      assert.equal(calls[0].status, 'completed');
      assert.equal(s.final.status, 'completed');
      if (text) {
        assert.deepEqual(s.final.output.map((x) => x.type), ['message', 'function_call'], 'text before the call');
        assert.equal(messageText(s.final), text);
      } else {
        assert.deepEqual(s.final.output.map((x) => x.type), ['function_call']);
      }
      assert.deepEqual(s.final.tools.map((t) => [t.type, t.name]), [['function', 'get_weather']], 'tools echoed');

      const r2 = await client.responses.create({
        model, previous_response_id: s.final.id, tools: [TOOL],
        input: [{ type: 'function_call_output', call_id: callId, output: '18C, sunny' }],
      });
      assertResponse(lastRaw, { model });
      assert.match(r2.output_text, new RegExp(`fake ${provider}`));
      const ups = await upstream();
      assert.equal(ups.length, 2);
      checkToolTurn2(provider, ups[1], callId, { text });
    });

    it(`${provider}: function tool over two turns without previous_response_id (history re-sent)`, async () => {
      await stack.fake.script(provider, [scriptBody(callId)]);
      const input = [{ role: 'user', content: 'Weather in Paris?' }];
      const r1 = await client.responses.create({ model, input, tools: [TOOL], store: false });
      const raw1 = assertResponse(lastRaw, { model });
      const calls = raw1.output.filter((x) => x.type === 'function_call');
      assert.equal(calls.length, 1);
      assert.equal(calls[0].call_id, callId);
      assert.equal(calls[0].name, 'get_weather');
      assert.equal(calls[0].arguments.replace(/\s/g, ''), ARGS);
      assert.equal(raw1.status, 'completed');
      assert.equal(r1.output_text, text || '', 'the SDK\'s output_text: the text only');
      const [up1] = await upstream();
      if (provider === 'openai') assert.deepEqual(up1.body.tools, [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: TOOL.parameters, strict: true } }]);
      else assert.deepEqual(up1.body.tools.map((t) => [t.name, t.description, t.input_schema]), [['get_weather', 'Weather of a city', TOOL.parameters]]);

      // The whole history again, as a client without stored state sends it: the user message,
      // the first response's output items as they came, and the tool's output.
      const r2 = await client.responses.create({
        model, tools: [TOOL], store: false,
        input: [...input, ...raw1.output, { type: 'function_call_output', call_id: callId, output: '18C, sunny' }],
      });
      assertResponse(lastRaw, { model });
      assert.match(r2.output_text, new RegExp(`fake ${provider}`));
      const ups = await upstream();
      assert.equal(ups.length, 2);
      checkToolTurn2(provider, ups[1], callId, { text });
    });
  }

  it('gemini: function tool over two turns with previous_response_id; the thought signature goes back', async () => {
    await stack.fake.script('gemini', [geminiToolBody()]);
    const r1 = await client.responses.create({ model: 'gemini-2.0-flash', input: 'Weather in Paris?', tools: [TOOL] });
    const raw1 = assertResponse(lastRaw, { model: 'gemini-2.0-flash' });
    const calls = raw1.output.filter((x) => x.type === 'function_call');
    assert.equal(calls.length, 1);
    assert.equal(calls[0].name, 'get_weather');
    assert.deepEqual(JSON.parse(calls[0].arguments), { city: 'Paris' });
    const r2 = await client.responses.create({
      model: 'gemini-2.0-flash', previous_response_id: r1.id, tools: [TOOL],
      input: [{ type: 'function_call_output', call_id: calls[0].call_id, output: '18C, sunny' }],
    });
    assertResponse(lastRaw, { model: 'gemini-2.0-flash' });
    assert.match(r2.output_text, /fake gemini/);
    const [up1, up2] = await upstream();
    assert.equal(up1.body.tools[0].functionDeclarations[0].name, 'get_weather');
    const contents = up2.body.contents;
    assert.deepEqual(contents.map((x) => x.role), ['user', 'model', 'user'], JSON.stringify(contents));
    assert.equal(textOf(contents[0].parts), 'Weather in Paris?');
    assert.deepEqual(contents[1].parts, [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } }, thoughtSignature: 'R2VtaW5pU2lnMQ==' }], 'the call goes back with its thought signature');
    assert.deepEqual(contents[2].parts.map((p) => p.functionResponse && p.functionResponse.name), ['get_weather'], 'the tool output as a functionResponse');
    assert.match(JSON.stringify(contents[2].parts[0].functionResponse.response), /18C, sunny/);
  });

  it('reasoning: DeepSeek reasoning_content becomes a reasoning item before the message', async () => {
    await stack.fake.script('deepseek', [{ body: {
      id: 'ds-r1', object: 'chat.completion', created: 1767225600, model: 'deepseek-reasoner',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Paris.', reasoning_content: 'The capital of France is Paris.' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 10, completion_tokens: 25, total_tokens: 35, prompt_cache_hit_tokens: 4, prompt_cache_miss_tokens: 6, completion_tokens_details: { reasoning_tokens: 18 } },
    } }]);
    const { data, response } = await client.responses.create({ model: 'deepseek-reasoner', input: 'Capital of France?' }).withResponse();
    const raw = assertResponse(lastRaw, { model: 'deepseek-reasoner' });
    assert.deepEqual(raw.output.map((x) => x.type), ['reasoning', 'message'], 'reasoning, then the message');
    assert.deepEqual(raw.output[0].summary, [{ type: 'summary_text', text: 'The capital of France is Paris.' }]);
    assert.equal(data.output_text, 'Paris.', 'the SDK\'s output_text has the answer only');
    assert.equal(raw.usage.input_tokens, 10);
    assert.equal(raw.usage.input_tokens_details.cached_tokens, 4, 'DeepSeek cache hits -> cached_tokens');
    assert.equal(raw.usage.output_tokens, 25);
    assert.equal(raw.usage.output_tokens_details.reasoning_tokens, 18);
    const row = await rowOf(data.id, response.headers);
    assert.equal(row.model, 'deepseek-reasoner');
    assert.equal(row.input_tokens, 10);
    assert.equal(row.output_tokens, 25);
  });

  it('reasoning: Anthropic thinking streams as a reasoning item, and its signature goes back on the tool turn', async () => {
    await stack.fake.script('anthropic', [anthropicThinkingToolStream('toolu_t1')]);
    const s = await streamRaw({ model: 'claude-haiku-4-5', input: 'Weather in Paris?', tools: [TOOL], reasoning: { effort: 'low', summary: 'auto' } }, { model: 'claude-haiku-4-5' });
    assert.deepEqual(s.final.output.map((x) => x.type), ['reasoning', 'message', 'function_call'], 'reasoning, message, call');
    const types = s.events.map((e) => e.type);
    for (const t of ['response.reasoning_summary_part.added', 'response.reasoning_summary_text.delta', 'response.reasoning_summary_text.done', 'response.reasoning_summary_part.done']) assert.ok(types.includes(t), `${t} in ${types.join(',')}`);
    assert.deepEqual(s.final.output[0].summary, [{ type: 'summary_text', text: 'I need the weather.' }]);
    assert.equal(messageText(s.final), 'Checking.');
    assert.equal(s.final.output[2].call_id, 'toolu_t1');
    assert.equal(s.final.usage.input_tokens, 55, 'input + cache read + cache write');
    assert.equal(s.final.usage.input_tokens_details.cached_tokens, 10);
    assert.equal(s.final.usage.output_tokens, 60);
    await client.responses.create({
      model: 'claude-haiku-4-5', previous_response_id: s.final.id, tools: [TOOL], reasoning: { effort: 'low' },
      input: [{ type: 'function_call_output', call_id: 'toolu_t1', output: '18C, sunny' }],
    });
    assertResponse(lastRaw, { model: 'claude-haiku-4-5' });
    const ups = await upstream();
    const asst = ups[1].body.messages[1];
    assert.equal(asst.role, 'assistant');
    assert.deepEqual(asst.content[0], { type: 'thinking', thinking: 'I need the weather.', signature: 'SIG-abc123==' }, 'the thinking block first, with its signature');
    assert.deepEqual(asst.content.filter((b) => b.type === 'tool_use'), [{ type: 'tool_use', id: 'toolu_t1', name: 'get_weather', input: { city: 'Paris' } }]);
  });

  it('finish_reason length: status incomplete with reason max_output_tokens (JSON and stream)', async () => {
    await stack.fake.script('openai', [{ body: {
      id: 'chatcmpl-len', object: 'chat.completion', created: 1767225600, model: 'gpt-4o-mini',
      choices: [{ index: 0, message: { role: 'assistant', content: 'A long answ', refusal: null }, logprobs: null, finish_reason: 'length' }],
      usage: { prompt_tokens: 10, completion_tokens: 16, total_tokens: 26 },
    } }]);
    const r = await client.responses.create({ model: 'gpt-4o-mini', input: 'Write a lot.', max_output_tokens: 16 });
    const raw = assertResponse(lastRaw, { model: 'gpt-4o-mini', status: 'incomplete' });
    assert.deepEqual(raw.incomplete_details, { reason: 'max_output_tokens' });
    assert.equal(raw.max_output_tokens, 16, 'max_output_tokens echoed');
    assert.equal(r.output_text, 'A long answ');
    const [up] = await upstream();
    assert.equal(up.body.max_completion_tokens, 16, 'max_output_tokens -> max_completion_tokens');

    await stack.fake.script('openai', [{ sse: [
      oaChunk({ role: 'assistant', content: '' }), oaChunk({ content: 'A long ' }), oaChunk({ content: 'answ' }), oaChunk({}, 'length'),
      'data: ' + JSON.stringify({ id: 'chatcmpl-tool2', object: 'chat.completion.chunk', created: 1767225600, model: 'gpt-4o-mini', choices: [], usage: { prompt_tokens: 10, completion_tokens: 16, total_tokens: 26 } }),
      'data: [DONE]',
    ] }]);
    const s = await streamRaw({ model: 'gpt-4o-mini', input: 'Write a lot.', max_output_tokens: 16 }, { model: 'gpt-4o-mini', terminal: 'response.incomplete' });
    assert.deepEqual(s.final.incomplete_details, { reason: 'max_output_tokens' });
    assert.equal(messageText(s.final), 'A long answ');
    assert.equal(s.final.usage.output_tokens, 16);
  });

  it('openai: a streamed function call through responses.stream().finalResponse()', async () => {
    await stack.fake.script('openai', [openaiToolStream('call_s1')]);
    const runner = client.responses.stream({ model: 'gpt-4o-mini', input: 'Weather in Paris?', tools: [TOOL] });
    const seen = [];
    for await (const ev of runner) seen.push(ev);
    checkEvents(seen, { model: 'gpt-4o-mini' });
    const final = await runner.finalResponse();
    const call = final.output.find((x) => x.type === 'function_call');
    assert.ok(call, 'a function_call item');
    assert.equal(call.call_id, 'call_s1');
    assert.deepEqual(JSON.parse(call.arguments), { city: 'Paris' });
    const order = seen.map((e) => e.type).filter((t) => t !== 'response.function_call_arguments.delta');
    assert.deepEqual(order, ['response.created', 'response.in_progress', 'response.output_item.added', 'response.function_call_arguments.done', 'response.output_item.done', 'response.completed'], 'the function call sequence (§4.3b)');
  });

  it('text.format json_schema becomes response_format json_schema upstream', async () => {
    const schema = { type: 'object', properties: { city: { type: 'string' }, temp_c: { type: 'number' } }, required: ['city', 'temp_c'], additionalProperties: false };
    await stack.fake.script('openai', [{ text: '{"city":"Paris","temp_c":18}' }]);
    const r = await client.responses.create({
      model: 'gpt-4o-mini', input: 'Weather in Paris as JSON.',
      text: { format: { type: 'json_schema', name: 'weather', schema, strict: true } },
    });
    const raw = assertResponse(lastRaw, { model: 'gpt-4o-mini' });
    assert.deepEqual(JSON.parse(r.output_text), { city: 'Paris', temp_c: 18 });
    assert.equal(raw.text.format.type, 'json_schema', 'text.format echoed');
    assert.equal(raw.text.format.name, 'weather');
    const [up] = await upstream();
    assert.deepEqual(up.body.response_format, { type: 'json_schema', json_schema: { name: 'weather', schema, strict: true } });
    assert.equal(up.body.text, undefined, 'no text field upstream');
  });

  it('refuses what no provider can do: 400 naming the parameter, nothing upstream', async () => {
    const web = await req('POST', '/responses', { model: 'gpt-4o-mini', input: 'Search the web.', tools: [{ type: 'web_search' }] });
    assert.equal(web.status, 400, web.text);
    assertSchema('ErrorResponse', web.json);
    assert.equal(web.json.error.type, 'invalid_request_error');
    assert.equal(web.json.error.code, 'unsupported_value');
    assert.equal(web.json.error.param, 'tools[0].type');
    const web2 = await req('POST', '/responses', { model: 'gpt-4o-mini', input: 'x', tools: [TOOL, { type: 'web_search_preview' }] });
    assert.equal(web2.status, 400, web2.text);
    assert.equal(web2.json.error.param, 'tools[1].type');
    assert.equal(web2.json.error.code, 'unsupported_value');

    await assert.rejects(client.responses.create({ model: 'gpt-4o-mini', input: 'Hi', conversation: 'conv_1' }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, String(e));
      assert.equal(e.code, 'unsupported_parameter');
      assert.equal(e.param, 'conversation');
      return true;
    });
    const conv = await req('POST', '/responses', { model: 'gpt-4o-mini', input: 'Hi', conversation: 'conv_1', stream: true });
    assert.equal(conv.status, 400, conv.text);
    assert.equal(conv.json.error.code, 'unsupported_parameter');
    assert.equal(conv.json.error.param, 'conversation');
    assert.deepEqual(await upstream(), [], 'no refused call reached a provider');
    const row = await stack.router.row(web.headers.get('x-request-id'));
    assert.equal(row.status, 400);
    assert.equal(row.path, '/v1/responses');
  });

  it('fields the router neither forwards nor honours are named in X-Router-Dropped-Params and the row', async () => {
    await stack.fake.reset();
    const r = await req('POST', '/responses', JSON.stringify({ model: 'gpt-4o-mini', input: 'hi', max_tool_calls: 3, include: ['reasoning.encrypted_content'], truncation: 'auto', store: false }));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-router-dropped-params'), 'max_tool_calls,include,truncation');
    const [up] = await upstream();
    for (const f of ['max_tool_calls', 'include', 'truncation']) assert.equal(up.body[f], undefined, `${f} is not forwarded`);
    const row = await rowOf(r.json.id, r.headers);
    assert.equal(row.dropped_params, 'max_tool_calls,include,truncation');
  });

  it('n8n\'s requests work unchanged', async () => {
    const k = keys[OTHER_AGENT];   // n8n_engineer, tier T4
    const bodies = [
      '{"model":"gpt-4o-mini","input":[{"role":"user","content":[{"type":"input_text","text":"Say hello"}]}],"parallel_tool_calls":true,"store":true,"background":false}',
      '{"input":[{"type":"message","role":"user","content":"Say hello"}],"model":"gpt-4o-mini","stream":false,"text":{}}',
    ];
    for (const body of bodies) {
      await stack.fake.reset();
      const r = await req('POST', '/responses', body, k);
      assert.equal(r.status, 200, `${body}: ${r.text.slice(0, 500)}`);
      assertResponse(r.json, { model: 'gpt-4o-mini' });
      assert.equal(r.json.output[0].type, 'message');
      assert.ok(r.json.output[0].content[0].text.length > 0, 'output[0].content[0].text');
      assert.equal(r.headers.get('x-router-tier'), 'T4');
      const [up] = await upstream();
      assert.deepEqual(up.body.messages.map((m) => [m.role, textOf(m.content)]), [['user', 'Say hello']]);
      // parallel_tool_calls without tools: OpenAI refuses it ("only allowed when 'tools' are specified").
      for (const f of ['input', 'store', 'background', 'text', 'parallel_tool_calls']) assert.equal(up.body[f], undefined, `${f} is not forwarded`);
      const row = await rowOf(r.json.id, r.headers);
      assert.equal(row.agent, OTHER_AGENT);
      assert.equal(row.path, '/v1/responses');
    }
  });

  it('tiers and fallback apply: model = the model that answered', async () => {
    // T3 may not use claude-sonnet-4-5: downgraded to claude-haiku-4-5.
    const { data, response } = await client.responses.create({ model: 'claude-sonnet-4-5', input: 'Downgrade me.' }).withResponse();
    assertResponse(lastRaw, { model: 'claude-haiku-4-5' });
    assert.match(data.output_text, /fake anthropic/);
    const row = await rowOf(data.id, response.headers);
    assert.equal(row.requested_model, 'claude-sonnet-4-5');
    assert.equal(row.model, 'claude-haiku-4-5');

    // claude-haiku-4-5 fails: its chain's next model (gpt-4o-mini) answers.
    await stack.fake.reset();
    await stack.fake.script('anthropic', [{ status: 500, body: { type: 'error', error: { type: 'api_error', message: 'Internal server error' } } }]);
    const fb = await client.responses.create({ model: 'claude-haiku-4-5', input: 'Fall back.' }).withResponse();
    assertResponse(lastRaw, { model: 'gpt-4o-mini' });
    assert.match(fb.data.output_text, /fake openai/);
    const fbRow = await rowOf(fb.data.id, fb.response.headers);
    assert.equal(fbRow.path, '/v1/responses');
    assert.equal(fbRow.requested_model, 'claude-haiku-4-5');
    assert.equal(fbRow.model, 'gpt-4o-mini');
    assert.equal(fbRow.attempts, 2);

    // The same before a stream starts: the client only ever sees the answering model's events.
    await stack.fake.reset();
    await stack.fake.script('anthropic', [{ status: 500, body: { type: 'error', error: { type: 'api_error', message: 'Internal server error' } } }]);
    const s = await streamRaw({ model: 'claude-haiku-4-5', input: 'Fall back while streaming.' }, { model: 'gpt-4o-mini' });
    assert.match(messageText(s.final), /fake openai/);
    const ups = await upstream();
    assert.deepEqual(ups.map((u) => u.provider), ['anthropic', 'openai']);
  });
});
