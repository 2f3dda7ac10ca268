// Hostile upstream behaviours for the fake provider (provider.js): a scripted step
// {"hostile": {"kind": ..., ...options}} answers with one of these instead of a normal reply.
// Each speaks the wire format of the API that was called (OpenAI-compatible, Anthropic, Gemini)
// where the behaviour has a meaning there, and stops when the router closes the connection or
// after `max_ms` (default 120 s) so that a test never leaves it running.
//
// kinds (options):
//   comments    200 + SSE head, then only SSE comments (": ping", or `comment`) every interval_ms
//               (default 200); never a data event
//   drip        a normal stream of `text` (default a long sentence) written one byte every
//               interval_ms (default 1000); with `burst` n, the prologue and the first n content
//               events go out at once and only the rest drips
//   endless     a stream of content events for ever, `chunk` (default "word ") each, every
//               interval_ms (default 0: as fast as the router reads)
//   role_only   a stream of role-only chunks (delta {role, content: ""}) for ever, or up to `bytes`
//   reasoning   a DeepSeek-style stream of reasoning_content deltas for ever, or up to `bytes`
//   wide_json   a non-stream 200 whose JSON body is `bytes` (default 60 MiB) of a wide array
//               ("pad": [0,0,0,...]) beside a valid completion
//   wide_stream a stream whose first data event is one `bytes`-wide JSON object
//   gzip_bomb   a 200 with Content-Encoding: gzip whose body inflates to `bytes` (default 1 GiB)
//   usage       a normal completion (stream or not) whose usage is `usage` (e.g. absurd counts)
//   thinking    an Anthropic stream whose thinking block never ends: thinking_delta events of `chunk`
//               for ever, or up to `bytes` (then the block ends and a short text follows); with
//               `signature: true` signature_delta events instead (nothing the client sees)
'use strict';
const zlib = require('zlib');

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// Writes s, waiting for the socket to drain when its buffer is full. False once closed.
async function put(res, info, s) {
  if (info.closed || res.destroyed) return false;
  if (!res.write(s)) {
    await new Promise((resolve) => {
      const done = () => { res.off('drain', done); res.off('close', done); resolve(); };
      res.on('drain', done);
      res.on('close', done);
    });
  }
  return !(info.closed || res.destroyed);
}

function sseHead(res, extra) {
  res.writeHead(200, Object.assign({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'x-request-id': 'req_hostile' }, extra || {}));
}

function openaiChunk(model, delta, extra) {
  return Object.assign({ id: 'chatcmpl-hostile', object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model, choices: [{ index: 0, delta, logprobs: null, finish_reason: null }] }, extra || {});
}

// One content event in the API's own stream format.
function contentEvent(api, model, text, idx) {
  if (api === 'anthropic') {
    return `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } })}\n\n`;
  }
  if (api === 'gemini') {
    return `data: ${JSON.stringify({ candidates: [{ content: { parts: [{ text }], role: 'model' }, index: 0 }], modelVersion: model, responseId: 'hostile' + idx })}\n\n`;
  }
  return `data: ${JSON.stringify(openaiChunk(model, { content: text }))}\n\n`;
}

// What a stream sends before its content events.
function streamPrologue(api, model) {
  if (api === 'anthropic') {
    return `event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { id: 'msg_hostile', type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 10, output_tokens: 1 } } })}\n\n` +
      `event: content_block_start\ndata: ${JSON.stringify({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } })}\n\n`;
  }
  if (api === 'gemini') return '';
  return `data: ${JSON.stringify(openaiChunk(model, { role: 'assistant', content: '' }))}\n\n`;
}

function streamEpilogue(api, model, usage) {
  if (api === 'anthropic') {
    return `event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n` +
      `event: message_delta\ndata: ${JSON.stringify({ type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: usage || { output_tokens: 10 } })}\n\n` +
      'event: message_stop\ndata: {"type":"message_stop"}\n\n';
  }
  if (api === 'gemini') {
    return `data: ${JSON.stringify({ candidates: [{ content: { parts: [{ text: '' }], role: 'model' }, finishReason: 'STOP', index: 0 }], usageMetadata: usage || { promptTokenCount: 10, candidatesTokenCount: 10, totalTokenCount: 20 }, modelVersion: model })}\n\n`;
  }
  const last = openaiChunk(model, {});
  last.choices[0].finish_reason = 'stop';
  return `data: ${JSON.stringify(last)}\n\n` +
    `data: ${JSON.stringify(Object.assign(openaiChunk(model, {}), { choices: [], usage: usage || { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 } }))}\n\n` +
    'data: [DONE]\n\n';
}

function completion(api, model, text, usage) {
  if (api === 'anthropic') {
    return { id: 'msg_hostile', type: 'message', role: 'assistant', model, content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null, usage: usage || { input_tokens: 10, output_tokens: 10 } };
  }
  if (api === 'gemini') {
    return { candidates: [{ content: { parts: [{ text }], role: 'model' }, finishReason: 'STOP', index: 0 }], usageMetadata: usage || { promptTokenCount: 10, candidatesTokenCount: 10, totalTokenCount: 20 }, modelVersion: model };
  }
  return { id: 'chatcmpl-hostile', object: 'chat.completion', created: Math.floor(Date.now() / 1000), model, choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: 'stop' }], usage: usage || { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 } };
}

// Runs `fill` (which writes and returns false to stop) until closed, `max_ms` or it stops.
async function loop(res, info, h, fill) {
  const until = Date.now() + (h.max_ms || 120000);
  while (Date.now() < until && !info.closed && !res.destroyed) {
    if (!(await fill())) break;
  }
}

async function serveHostile(req, res, info, body, stream, model, h) {
  const api = info.api;
  const interval = h.interval_ms;
  switch (h.kind) {
    case 'comments': {
      sseHead(res);
      await loop(res, info, h, async () => {
        if (!(await put(res, info, `: ${h.comment || 'ping'}\n\n`))) return false;
        await sleep(interval === undefined ? 200 : interval);
        return true;
      });
      break;
    }
    case 'drip': {
      sseHead(res);
      const text = h.text || 'This reply arrives one byte at a time, far slower than anyone should wait for it. ';
      let s = streamPrologue(api, model);
      for (const w of text.match(/\S+\s*/g)) s += contentEvent(api, model, w, 0);
      s += streamEpilogue(api, model);
      let i = 0;
      if (h.burst) {
        i = streamPrologue(api, model).length;
        for (let k = 0; k < h.burst; k++) i = s.indexOf('\n\n', i) + 2;
        if (!(await put(res, info, s.slice(0, i)))) break;
      }
      await loop(res, info, h, async () => {
        if (i >= s.length) return false;
        if (!(await put(res, info, s[i++]))) return false;
        await sleep(interval === undefined ? 1000 : interval);
        return true;
      });
      break;
    }
    case 'endless': {
      sseHead(res);
      if (!(await put(res, info, streamPrologue(api, model)))) break;
      const chunk = h.chunk || 'word ';
      let n = 0;
      // Several events per write keep the fake fast enough to outrun the router.
      await loop(res, info, h, async () => {
        let s = '';
        for (let k = 0; k < (interval ? 1 : 64); k++) s += contentEvent(api, model, chunk, n++);
        if (!(await put(res, info, s))) return false;
        if (interval) await sleep(interval);
        return true;
      });
      break;
    }
    case 'role_only':
    case 'reasoning': {
      sseHead(res);
      const ev = h.kind === 'role_only'
        ? `data: ${JSON.stringify(openaiChunk(model, { role: 'assistant', content: '' }))}\n\n`
        : `data: ${JSON.stringify(openaiChunk(model, { reasoning_content: h.chunk || 'thinking about it some more. ' }))}\n\n`;
      const batch = ev.repeat(256);
      let sent = 0;
      await loop(res, info, h, async () => {
        if (h.bytes && sent >= h.bytes) return false;
        if (!(await put(res, info, batch))) return false;
        sent += batch.length;
        if (interval) await sleep(interval);
        return true;
      });
      if (h.bytes && !info.closed) {
        await put(res, info, contentEvent(api, model, 'done', 0) + streamEpilogue(api, model));
        res.end();
      }
      break;
    }
    case 'thinking': {
      sseHead(res);
      const head = `event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { id: 'msg_hostile', type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 10, output_tokens: 1 } } })}\n\n` +
        `event: content_block_start\ndata: ${JSON.stringify({ type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } })}\n\n`;
      if (!(await put(res, info, head))) break;
      const delta = h.signature ? { type: 'signature_delta', signature: h.chunk || 'c2lnbmF0dXJl'.repeat(64) } : { type: 'thinking_delta', thinking: h.chunk || 'thinking about it some more. ' };
      const batch = `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta })}\n\n`.repeat(256);
      let sent = 0;
      await loop(res, info, h, async () => {
        if (h.bytes && sent >= h.bytes) return false;
        if (!(await put(res, info, batch))) return false;
        sent += batch.length;
        if (interval) await sleep(interval);
        return true;
      });
      if (h.bytes && !info.closed) {
        await put(res, info, 'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n' +
          `event: content_block_start\ndata: ${JSON.stringify({ type: 'content_block_start', index: 1, content_block: { type: 'text', text: 'done' } })}\n\n` +
          streamEpilogue(api, model).replace('"index":0', '"index":1'));
        res.end();
      }
      break;
    }
    case 'wide_json':
    case 'wide_stream': {
      const bytes = h.bytes || 60 * 1024 * 1024;
      const base = JSON.stringify(completion(api, model, 'wide'));
      const head = h.kind === 'wide_json' ? base.slice(0, -1) + ',"pad":[' : 'data: {"pad":[';
      if (h.kind === 'wide_json') res.writeHead(200, { 'Content-Type': 'application/json' });
      else sseHead(res);
      if (!(await put(res, info, head))) break;
      const piece = '0,'.repeat(32768);
      let left = Math.floor(bytes / 2) - 1;
      while (left > 0 && !info.closed) {
        const n = Math.min(left, 32768);
        if (!(await put(res, info, n === 32768 ? piece : '0,'.repeat(n)))) break;
        left -= n;
      }
      if (!info.closed) {
        await put(res, info, h.kind === 'wide_json' ? '0]}' : '0]}\n\n' + streamPrologue(api, model) + contentEvent(api, model, 'wide', 0) + streamEpilogue(api, model));
        res.end();
      }
      break;
    }
    case 'gzip_bomb': {
      const bytes = h.bytes || 1024 * 1024 * 1024;
      const gz = zlib.createGzip({ level: 9 });
      res.writeHead(200, { 'Content-Type': stream ? 'text/event-stream' : 'application/json', 'Content-Encoding': 'gzip' });
      gz.pipe(res);
      const zeros = Buffer.alloc(1024 * 1024, 0x20);
      let left = bytes;
      while (left > 0 && !info.closed) {
        const n = Math.min(left, zeros.length);
        if (!gz.write(n === zeros.length ? zeros : zeros.subarray(0, n))) await new Promise((r) => gz.once('drain', r));
        left -= n;
      }
      gz.end();
      break;
    }
    case 'usage': {
      if (stream) {
        sseHead(res);
        await put(res, info, streamPrologue(api, model) + contentEvent(api, model, h.text || 'counted', 0) + streamEpilogue(api, model, h.usage));
        res.end();
      } else {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(completion(api, model, h.text || 'counted', h.usage)));
      }
      break;
    }
    default:
      res.writeHead(500, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'fake provider: unknown hostile kind ' + h.kind, type: 'server_error' } }));
      return;
  }
  if (!info.closed && !res.writableEnded) res.end();
}

module.exports = { serveHostile };
