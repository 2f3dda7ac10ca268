#!/usr/bin/env node
// Fake LLM provider for tests and `make run`'s demo mode. Loopback only, no dependencies.
//
// One HTTP server answers for every provider; the first path segment names the provider the
// router thinks it is talking to (the router's base URLs are http://127.0.0.1:PORT/<provider>/...):
//   OpenAI-compatible  POST /<p>/.../chat/completions            (openai, deepseek, groq, openrouter, demo)
//   Anthropic          POST /<p>/v1/messages
//   Gemini             POST /<p>/.../models/<model>:generateContent | :streamGenerateContent?alt=sse
//   OpenAI embeddings  POST /<p>/.../embeddings                    (any OpenAI-compatible provider)
//   Gemini embeddings  POST /<p>/.../models/<model>:batchEmbedContents | :embedContent
// Each speaks that provider's real wire format (see ../../../shared/provider-protocols.md): usage
// fields and stream shapes differ per provider (DeepSeek cache counters, Groq x_groq.usage,
// OpenRouter cost and comments, Anthropic events, Gemini usageMetadata).
//
// Control API (for tests):
//   POST   /_script   {"provider":"openai"?, "steps":[step,...]}  queue scripted replies (FIFO)
//   GET    /_requests                   every request received: [{provider, path, headers, body, t}]
//   DELETE /_requests                   forget them (and scripts and events)
//   POST   /_hook                       a webhook receiver (budget alerts): answers 200 (or the next
//                                        /_hookscript step), records the body
//   GET    /_hooks                      what /_hook received: [{t, headers, body, status, done, aborted}]
//                                        (done: when the answer was sent, null while it waits;
//                                        aborted: when the caller hung up before the answer)
//   POST   /_hookscript {"steps":[{status, delay_ms}]}  how the next POSTs to /_hook are answered
//   GET    /_events                     connection events: [{type:"client_closed", provider, path, t,
//                                        wall, events_sent}] - the router closed a connection
//                                        before the reply ended
// A step: {status, body (object or string), headers, sse: [raw event strings], delay_ms (before the
// head), chunk_delay_ms, cut_after (events sent before the connection is destroyed), hang (never
// answer), close (destroy the socket at once), text (reply text for the default generator),
// hostile: {kind, ...} (an endless, silent, dripping, flooding or oversized reply: hostile.js)}.
// Without a script, DeepSeek refuses response_format json_schema ("This response_format type is
// unavailable now") and image_url parts with 400, as the real API does. Without a script the
// default generator answers "Hello from the fake <provider> (<model>)." and
// streams it word by word; the request header X-Fake-Chunk-Delay-Ms (forwarded by tests via
// the body field "fake_chunk_delay_ms") slows the stream down.
//
// Embeddings (the same scripting applies: status/body/delay_ms/hang/close...; without a script):
//   Vectors are deterministic from the input text: embedVector(text, n) below (FNV-1a of the UTF-8
//   bytes seeds a PRNG, components uniform in [-1, 1), L2-normalised over n, each rounded to
//   float32 so the JSON numbers and the base64 floats are the same values).
//   OpenAI: {model, input, dimensions?, encoding_format?, user?}; input string | string[] | int[] |
//     int[][] (a token array embeds the text "tokens:" + ids joined by ","). Length: `dimensions`
//     if given, else 3072 for a model whose name contains "large", else 1536; the vector is
//     embedVector(text, length) (shortened vectors at unit length, as OpenAI's). encoding_format
//     "base64" answers each embedding as base64 of little-endian float32. usage.prompt_tokens =
//     the sum of embedTokens(item): max(1, ceil(UTF-8 bytes / 4)) for a string, the array length
//     for a token array. OpenRouter adds an "id" (embd-...) and usage.cost ($0.02 per 1M tokens).
//   Gemini: batchEmbedContents {"requests":[{model:"models/<m>", content:{parts:[{text}]},
//     outputDimensionality?, taskType?}]} -> {"embeddings":[{"values":[...]}]} in request order, no
//     usage; embedContent {model?, content, outputDimensionality?} -> {"embedding":{"values"}}.
//     The values are geminiVector(text, dims): embedVector(text, 3072), and with
//     outputDimensionality below 3072 its first N values, NOT normalised (as Google: only 3072-dim
//     output is). 400 INVALID_ARGUMENT (Google's envelope) for more than 100 requests in a batch,
//     a request's model other than the URL's, no text, or outputDimensionality outside 1..3072.
'use strict';
const http = require('http');
const { serveHostile } = require('./hostile');

const state = { requests: [], scripts: [], events: [], hooks: [], hookScripts: [] };
const startedAt = Date.now();

function now() { return Date.now() - startedAt; }
function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function tokensOf(text) { return Math.max(1, Math.ceil(String(text).length / 4)); }

function promptText(body) {
  const parts = [];
  const walk = (v) => {
    if (typeof v === 'string') parts.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      if (typeof v.text === 'string') parts.push(v.text);
      if (v.content !== undefined) walk(v.content);
      if (v.parts !== undefined) walk(v.parts);
    }
  };
  walk(body.messages || body.contents || []);
  if (body.system) walk(body.system);
  if (body.systemInstruction) walk(body.systemInstruction);
  return parts.join(' ');
}

function takeScript(provider) {
  const i = state.scripts.findIndex((s) => !s.provider || s.provider === provider);
  if (i < 0) return null;
  return state.scripts.splice(i, 1)[0].step;
}

function words(text) { return text.match(/\S+\s*/g) || [text]; }

// ---- OpenAI-compatible ----

function openaiUsage(provider, promptTok, outTok) {
  const u = { prompt_tokens: promptTok, completion_tokens: outTok, total_tokens: promptTok + outTok };
  if (provider === 'deepseek') {
    u.prompt_cache_hit_tokens = Math.floor(promptTok / 2);
    u.prompt_cache_miss_tokens = promptTok - u.prompt_cache_hit_tokens;
  } else if (provider === 'openrouter') {
    u.cost = Number(((promptTok * 3 + outTok * 15) / 1e6).toFixed(9));
    u.is_byok = false;
  } else if (provider !== 'groq') {
    u.prompt_tokens_details = { cached_tokens: 0, audio_tokens: 0 };
    u.completion_tokens_details = { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 };
  }
  return u;
}

function openaiEvents(provider, body, text) {
  const id = 'chatcmpl-fake' + Math.random().toString(36).slice(2, 10);
  const created = Math.floor(Date.now() / 1000);
  const model = body.model;
  const base = (extra) => Object.assign({ id, object: 'chat.completion.chunk', created, model, system_fingerprint: 'fp_fake' }, extra);
  const events = [];
  const wantUsage = body.stream_options && body.stream_options.include_usage;
  const u = (x) => (wantUsage && provider !== 'groq' ? Object.assign(x, { usage: null }) : x);
  if (provider === 'openrouter') events.push(': OPENROUTER PROCESSING');
  if (provider === 'deepseek') events.push(': keep-alive');
  const first = base({ choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] });
  if (provider === 'groq') first.x_groq = { id: 'req_fake' };
  events.push('data: ' + JSON.stringify(u(first)));
  for (const w of words(text)) {
    events.push('data: ' + JSON.stringify(u(base({ choices: [{ index: 0, delta: { content: w }, logprobs: null, finish_reason: null }] }))));
  }
  const promptTok = tokensOf(promptText(body));
  const outTok = tokensOf(text);
  const last = base({ choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }] });
  if (provider === 'openrouter') { last.choices[0].native_finish_reason = 'stop'; last.provider = 'FakeUpstream'; }
  if (provider === 'groq') last.x_groq = { id: 'req_fake', usage: Object.assign(openaiUsage(provider, promptTok, outTok), { queue_time: 0.01, prompt_time: 0.002, completion_time: 0.05, total_time: 0.062 }) };
  events.push('data: ' + JSON.stringify(u(last)));
  if (wantUsage && provider !== 'groq') {
    events.push('data: ' + JSON.stringify(base({ choices: [], usage: openaiUsage(provider, promptTok, outTok) })));
  }
  events.push('data: [DONE]');
  return events;
}

function openaiResponse(provider, body, text) {
  const promptTok = tokensOf(promptText(body));
  const outTok = tokensOf(text);
  const r = {
    id: 'chatcmpl-fake' + Math.random().toString(36).slice(2, 10),
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: body.model,
    choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
    usage: openaiUsage(provider, promptTok, outTok),
    system_fingerprint: 'fp_fake',
  };
  if (provider === 'openrouter') { r.provider = 'FakeUpstream'; r.choices[0].native_finish_reason = 'stop'; }
  return r;
}

// ---- Anthropic ----

function anthropicEvents(body, text) {
  const promptTok = tokensOf(promptText(body));
  const outTok = tokensOf(text);
  const ev = (name, data) => `event: ${name}\ndata: ${JSON.stringify(data)}`;
  const events = [
    ev('message_start', { type: 'message_start', message: { id: 'msg_fake01', type: 'message', role: 'assistant', model: body.model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: promptTok, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 1 } } }),
    ev('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
    ev('ping', { type: 'ping' }),
  ];
  for (const w of words(text)) events.push(ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: w } }));
  events.push(ev('content_block_stop', { type: 'content_block_stop', index: 0 }));
  events.push(ev('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: outTok } }));
  events.push(ev('message_stop', { type: 'message_stop' }));
  return events;
}

function anthropicResponse(body, text) {
  return {
    id: 'msg_fake01', type: 'message', role: 'assistant', model: body.model,
    content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null,
    usage: { input_tokens: tokensOf(promptText(body)), cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: tokensOf(text) },
  };
}

// ---- Gemini ----

function geminiEvents(body, text, model) {
  const promptTok = tokensOf(promptText(body));
  const ws = words(text);
  return ws.map((w, i) => {
    const last = i === ws.length - 1;
    const c = { content: { parts: [{ text: w }], role: 'model' }, index: 0 };
    if (last) c.finishReason = 'STOP';
    const usage = { promptTokenCount: promptTok, totalTokenCount: promptTok + (last ? tokensOf(text) : 0) };
    if (last) usage.candidatesTokenCount = tokensOf(text);
    return 'data: ' + JSON.stringify({ candidates: [c], usageMetadata: usage, modelVersion: model, responseId: 'fakeResponse01' });
  });
}

function geminiResponse(body, text, model) {
  const p = tokensOf(promptText(body));
  const o = tokensOf(text);
  return {
    candidates: [{ content: { parts: [{ text }], role: 'model' }, finishReason: 'STOP', index: 0 }],
    usageMetadata: { promptTokenCount: p, candidatesTokenCount: o, totalTokenCount: p + o },
    modelVersion: model, responseId: 'fakeResponse01',
  };
}

// ---- embeddings ----

const GEMINI_EMBED_DIMS = 3072;

// 32-bit FNV-1a of the UTF-8 bytes of text.
function fnv1a(text) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(String(text), 'utf8')) { h ^= b; h = Math.imul(h, 0x01000193) >>> 0; }
  return h >>> 0;
}

// mulberry32: a small deterministic PRNG, values in [0, 1).
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// The deterministic unit vector of n components for text (float32 values).
function embedVector(text, n) {
  const next = prng(fnv1a(text));
  const v = new Array(n);
  let sq = 0;
  for (let i = 0; i < n; i++) { v[i] = next() * 2 - 1; sq += v[i] * v[i]; }
  const norm = Math.sqrt(sq) || 1;
  for (let i = 0; i < n; i++) v[i] = Math.fround(v[i] / norm);
  return v;
}

// What Gemini answers for text with outputDimensionality n (default 3072): the first n values of
// the normalised 3072-dim vector, not normalised again.
function geminiVector(text, n) {
  const full = embedVector(text, GEMINI_EMBED_DIMS);
  return n && n < GEMINI_EMBED_DIMS ? full.slice(0, n) : full;
}

const isTokenArray = (x) => Array.isArray(x) && x.every((t) => Number.isInteger(t));

// Tokens of one input item: max(1, ceil(UTF-8 bytes / 4)) for a string, the length of a token array.
function embedTokens(item) {
  if (Array.isArray(item)) return item.length;
  return Math.max(1, Math.ceil(Buffer.byteLength(String(item), 'utf8') / 4));
}

// The text a token array embeds as.
function embedText(item) { return Array.isArray(item) ? 'tokens:' + item.join(',') : String(item); }

// The input as a list of items (a string, a token array, or an array of those).
function embedItems(input) {
  if (typeof input === 'string' || isTokenArray(input)) return [input];
  return input;
}

function float32Base64(values) { return Buffer.from(new Float32Array(values).buffer).toString('base64'); }

function openaiEmbedDims(model) { return /large/.test(String(model)) ? 3072 : 1536; }

function openaiEmbedError(res, message, param) {
  res.writeHead(400, { 'Content-Type': 'application/json', 'x-request-id': 'req_fake_upstream' });
  res.end(JSON.stringify({ error: { message, type: 'invalid_request_error', param: param || null, code: null } }));
}

function openaiEmbeddings(res, provider, body) {
  const input = body.input;
  const validItem = (x) => (typeof x === 'string' && x.length > 0) || (isTokenArray(x) && x.length > 0);
  if (typeof body.model !== 'string' || !body.model) return openaiEmbedError(res, 'you must provide a model parameter', 'model');
  if (input === undefined || input === null) return openaiEmbedError(res, "'input' is a required property", 'input');
  const items = (typeof input === 'string' || isTokenArray(input)) ? [input] : input;
  if (!Array.isArray(items) || items.length === 0 || items.length > 2048 || !items.every(validItem)) {
    return openaiEmbedError(res, "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", 'input');
  }
  const native = openaiEmbedDims(body.model);
  let n = native;
  if (body.dimensions !== undefined && body.dimensions !== null) {
    if (!Number.isInteger(body.dimensions) || body.dimensions < 1 || body.dimensions > native) {
      return openaiEmbedError(res, `Invalid value for 'dimensions' = ${body.dimensions}. Must be between 1 and ${native}.`, 'dimensions');
    }
    n = body.dimensions;
  }
  const fmt = body.encoding_format === undefined ? 'float' : body.encoding_format;
  if (fmt !== 'float' && fmt !== 'base64') return openaiEmbedError(res, `Invalid value for 'encoding_format': '${fmt}'. Supported values are: 'float' and 'base64'.`, 'encoding_format');
  let tokens = 0;
  const data = items.map((item, index) => {
    tokens += embedTokens(item);
    const v = embedVector(embedText(item), n);
    return { object: 'embedding', index, embedding: fmt === 'base64' ? float32Base64(v) : v };
  });
  const reply = { object: 'list', data, model: body.model, usage: { prompt_tokens: tokens, total_tokens: tokens } };
  if (provider === 'openrouter') {
    reply.id = 'embd-fake' + Math.random().toString(36).slice(2, 10);
    reply.usage.cost = Number((tokens * 0.02 / 1e6).toFixed(12));
  }
  res.writeHead(200, { 'Content-Type': 'application/json', 'x-request-id': 'req_fake_upstream' });
  res.end(JSON.stringify(reply));
  return undefined;
}

function geminiEmbedError(res, message) {
  res.writeHead(400, { 'Content-Type': 'application/json; charset=UTF-8' });
  res.end(JSON.stringify({ error: { code: 400, message, status: 'INVALID_ARGUMENT' } }));
}

// One EmbedContentRequest: its values, or a string naming what is wrong.
function geminiEmbedOne(r, urlModel, where) {
  if (!r || typeof r !== 'object') return `* ${where}: must be an object`;
  if (r.model !== undefined && r.model !== `models/${urlModel}`) {
    return `* ${where}.model: model "${r.model}" does not match the model of the request URL (models/${urlModel})`;
  }
  const parts = r.content && Array.isArray(r.content.parts) ? r.content.parts : null;
  if (!parts || parts.length === 0) return `* ${where}.content.parts: contents.parts must not be empty.`;
  const text = parts.map((p) => (p && typeof p.text === 'string' ? p.text : '')).join('');
  if (!text) return `* ${where}.content.parts[0].data: required oneof field 'data' must have one initialized field`;
  const n = r.outputDimensionality;
  if (n !== undefined && (!Number.isInteger(n) || n < 1 || n > GEMINI_EMBED_DIMS)) {
    return `* ${where}.output_dimensionality: must be between 1 and ${GEMINI_EMBED_DIMS}`;
  }
  return geminiVector(text, n);
}

function geminiEmbeddings(res, info, body) {
  let reply;
  if (info.method === 'batchEmbedContents') {
    const reqs = body.requests;
    if (!Array.isArray(reqs) || reqs.length === 0) return geminiEmbedError(res, '* BatchEmbedContentsRequest.requests: requests must not be empty');
    if (reqs.length > 100) return geminiEmbedError(res, '* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch');
    const embeddings = [];
    for (let i = 0; i < reqs.length; i++) {
      const r = reqs[i];
      if (!r || r.model === undefined) return geminiEmbedError(res, `* BatchEmbedContentsRequest.requests[${i}].model: model is required`);
      const v = geminiEmbedOne(r, info.model, `BatchEmbedContentsRequest.requests[${i}]`);
      if (typeof v === 'string') return geminiEmbedError(res, v);
      embeddings.push({ values: v });
    }
    reply = { embeddings };
  } else {
    const v = geminiEmbedOne(body, info.model, 'EmbedContentRequest');
    if (typeof v === 'string') return geminiEmbedError(res, v);
    reply = { embedding: { values: v } };
  }
  res.writeHead(200, { 'Content-Type': 'application/json; charset=UTF-8' });
  res.end(JSON.stringify(reply));
  return undefined;
}

// ---- serving ----

function classify(url) {
  const [path] = url.split('?');
  const seg = path.split('/').filter(Boolean);
  const provider = seg[0] || '';
  if (path.endsWith('/chat/completions')) return { provider, api: 'openai' };
  if (path.endsWith('/embeddings')) return { provider, api: 'openai_embeddings' };
  if (path.endsWith('/v1/messages')) return { provider, api: 'anthropic' };
  const m = path.match(/\/models\/([^/:]+):(generateContent|streamGenerateContent)$/);
  if (m) return { provider, api: 'gemini', model: m[1], stream: m[2] === 'streamGenerateContent' };
  const e = path.match(/\/models\/([^/:]+):(batchEmbedContents|embedContent)$/);
  if (e) return { provider, api: 'gemini_embeddings', model: e[1], method: e[2] };
  return { provider, api: null };
}

async function sendStream(req, res, info, events, step) {
  const chunkDelay = step.chunk_delay_ms || 0;
  res.writeHead(step.status || 200, Object.assign({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'x-request-id': 'req_fake_upstream' }, step.headers || {}));
  const closed = () => info.closed;
  for (let i = 0; i < events.length; i++) {
    if (closed()) return;
    if (step.cut_after !== undefined && i >= step.cut_after) {
      // Let what was written reach the client first, then drop the connection.
      await sleep(50);
      info.destroyed = true;
      req.socket.destroy();
      return;
    }
    if (i > 0 && chunkDelay) await sleep(chunkDelay);
    if (closed()) return;
    res.write(events[i] + '\n\n');
    info.sent = i + 1;
  }
  if (step.stall_after_ms) await sleep(step.stall_after_ms);
  if (!closed()) res.end();
}

async function handle(req, res, raw) {
  const info = classify(req.url);
  let body = {};
  try { body = raw.length ? JSON.parse(raw) : {}; } catch (e) { body = { _unparsed: raw.toString() }; }
  state.requests.push({ provider: info.provider, api: info.api, method: req.method, path: req.url, headers: req.headers, body, t: now() });
  // The router closing the connection before the reply ended (a client that left, a timeout).
  res.on('close', () => {
    if (!res.writableFinished && !info.destroyed) {
      info.closed = true;
      state.events.push({ type: 'client_closed', provider: info.provider, path: req.url, t: now(), wall: Date.now(), events_sent: info.sent || 0 });
    }
  });
  if (!info.api) {
    res.writeHead(404, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'fake provider: unknown path ' + req.url, type: 'invalid_request_error' } }));
    return;
  }
  // DeepSeek's own refusals (unscripted): no structured outputs, no image input.
  if (info.provider === 'deepseek' && info.api === 'openai' && !state.scripts.some((x) => !x.provider || x.provider === 'deepseek')) {
    const parts = (body.messages || []).flatMap((m) => (Array.isArray(m.content) ? m.content : []));
    const refusal = body.response_format && body.response_format.type === 'json_schema' ? 'This response_format type is unavailable now'
      : parts.some((p) => p && p.type === 'image_url') ? 'Failed to deserialize the JSON body into the target type: messages[0]: unknown variant `image_url`, expected `text`'
        : null;
    if (refusal) {
      res.writeHead(400, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { message: refusal, type: 'invalid_request_error', param: null, code: 'invalid_request_error' } }));
      return;
    }
  }
  const step = takeScript(info.provider) || {};
  if (step.hang) return;                       // never answer
  if (step.delay_ms) await sleep(step.delay_ms);
  if (step.close) { info.destroyed = true; req.socket.destroy(); return; }
  const embeddings = info.api === 'openai_embeddings' || info.api === 'gemini_embeddings';
  const stream = embeddings ? false : info.api === 'gemini' ? info.stream : body.stream === true;
  const model = info.model || body.model;
  const text = step.text || `Hello from the fake ${info.provider} (${model}).`;
  if (step.sse) { await sendStream(req, res, info, step.sse, step); return; }
  if (step.hostile) { await serveHostile(req, res, info, body, stream, model, step.hostile); return; }
  if (step.body !== undefined || (step.status && step.status >= 300)) {
    const b = step.body === undefined ? { error: { message: 'scripted failure', type: 'server_error' } } : step.body;
    const payload = typeof b === 'string' ? b : JSON.stringify(b);
    res.writeHead(step.status || 200, Object.assign({ 'Content-Type': 'application/json', 'x-request-id': 'req_fake_upstream' }, step.headers || {}));
    res.end(payload);
    return;
  }
  if (info.api === 'openai_embeddings') { openaiEmbeddings(res, info.provider, body); return; }
  if (info.api === 'gemini_embeddings') { geminiEmbeddings(res, info, body); return; }
  const chunkDelay = step.chunk_delay_ms !== undefined ? step.chunk_delay_ms : Number(req.headers['x-fake-chunk-delay-ms'] || body.fake_chunk_delay_ms || 0);
  const s = Object.assign({}, step, { chunk_delay_ms: chunkDelay });
  if (stream) {
    const events = info.api === 'openai' ? openaiEvents(info.provider, body, text)
      : info.api === 'anthropic' ? anthropicEvents(body, text) : geminiEvents(body, text, model);
    await sendStream(req, res, info, events, s);
    return;
  }
  const reply = info.api === 'openai' ? openaiResponse(info.provider, body, text)
    : info.api === 'anthropic' ? anthropicResponse(body, text) : geminiResponse(body, text, model);
  res.writeHead(200, { 'Content-Type': 'application/json', 'x-request-id': 'req_fake_upstream' });
  res.end(JSON.stringify(reply));
}

function control(req, res, raw) {
  const send = (code, obj) => { res.writeHead(code, { 'Content-Type': 'application/json' }); res.end(JSON.stringify(obj)); };
  if (req.url === '/_requests' && req.method === 'GET') return send(200, state.requests);
  if (req.url === '/_events' && req.method === 'GET') return send(200, state.events);
  if (req.url === '/_hooks' && req.method === 'GET') return send(200, state.hooks);
  if (req.url === '/_hook' && req.method === 'POST') {
    let body;
    try { body = JSON.parse(raw.toString()); } catch (e) { body = raw.toString(); }
    const step = state.hookScripts.shift() || {};
    const rec = { t: now(), headers: req.headers, body, status: step.status || 200, done: null, aborted: null };
    state.hooks.push(rec);
    res.on('close', () => { if (rec.done === null) rec.aborted = now(); });
    setTimeout(() => { rec.done = now(); send(rec.status, { ok: rec.status < 300 }); }, step.delay_ms || 0);
    return undefined;
  }
  if (req.url === '/_requests' && req.method === 'DELETE') {
    state.requests = []; state.scripts = []; state.events = []; state.hooks = []; state.hookScripts = [];
    return send(200, { ok: true });
  }
  if (req.url === '/_hookscript' && req.method === 'POST') {
    for (const step of JSON.parse(raw.toString() || '{}').steps || []) state.hookScripts.push(step);
    return send(200, { queued: state.hookScripts.length });
  }
  if (req.url === '/_script' && req.method === 'POST') {
    const s = JSON.parse(raw.toString() || '{}');
    for (const step of s.steps || []) state.scripts.push({ provider: s.provider, step });
    return send(200, { queued: state.scripts.length });
  }
  return send(404, { error: 'unknown control path' });
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = Buffer.concat(chunks);
    if (req.url.startsWith('/_')) return control(req, res, raw);
    handle(req, res, raw).catch((e) => {
      try { res.writeHead(500); res.end(String(e)); } catch (_) { /* socket gone */ }
    });
  });
});
server.keepAliveTimeout = 65000;

// Run as a program it serves; required (tests), it only lends its deterministic embedding rules.
if (require.main === module) {
  const port = Number(process.env.FAKE_PORT || process.argv[2] || 0);
  server.listen(port, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
  process.on('SIGINT', () => server.close(() => process.exit(0)));
}

module.exports = { embedVector, geminiVector, embedTokens, embedText, embedItems, float32Base64, openaiEmbedDims, GEMINI_EMBED_DIMS };
