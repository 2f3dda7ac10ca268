// What each web-server set-up must get right (run under every ROUTER_FRONT, see lib/harness.js):
// the caller's Authorization reaches the router, a long call is not cut by the web server's idle
// timeout, a body at the router's limit passes and one byte more gets the router's 413, and the
// configuration, database, JSONL log and key files are never served.
//
// Timeouts are scaled down 50 times from production: upstream.timeout_ms 120 s -> 2.4 s, the
// keep-alive interval 15 s -> 0.3 s, and each web server's idle timeout as its set-up ships it:
// lighttpd read-timeout and FcgidIOTimeout 180 s -> 4 s, Apache's Timeout for CGI 300 s -> 6 s,
// and a shared host's untouched FcgidIOTimeout 40 s -> 1 s (shorter than the call: only the
// router's heartbeat keeps it alive).
'use strict';
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const http = require('http');
const path = require('path');
const { spawnSync } = require('child_process');
const OpenAI = require('openai').default;
const { ROUTER_BIN, FRONT, startStack, readSSE } = require('./lib/harness');

const SCALE = 50;
const WEB_TIMEOUT_S = { lighttpd: 180, 'apache-fcgid': 180, 'apache-htaccess': 40, 'apache-cgi': 300 }[FRONT];
const CALL_MS = 2000;                          // a "120 s-class" call, scaled
const MAX_BODY = 100000;                       // below a shared host's FcgidMaxRequestLen (131072)
const docrootFront = FRONT === 'apache-htaccess' || FRONT === 'apache-cgi';

function scaled(conf) {
  return conf
    .replace(/max_body_bytes = \d+;/, `max_body_bytes = ${MAX_BODY};`)
    .replace(/(\n  timeout_ms = )\d+;/, '$1' + (120000 / SCALE) + ';')
    .replace(/keepalive_interval_ms = \d+;/, `keepalive_interval_ms = ${15000 / SCALE};`);
}

// GET with the path sent exactly as written (fetch would resolve the dot segments first).
function rawGet(port, p) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    }).on('error', reject);
  });
}

function chatBody(bytes) {
  const base = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: '' }] };
  const pad = bytes - JSON.stringify(base).length;
  base.messages[0].content = 'x'.repeat(pad);
  const s = JSON.stringify(base);
  assert.equal(Buffer.byteLength(s), bytes);
  return s;
}

describe(`deployment behind ${FRONT}`, () => {
  let stack;
  let key;
  before(async () => {
    stack = await startStack({
      auth: true,
      config: scaled,
      webTimeoutS: Math.max(1, Math.floor(WEB_TIMEOUT_S / SCALE)),
    });
    const r = spawnSync(ROUTER_BIN, ['keys', 'create', '--agent', 'deploy_agent'], { env: stack.router.env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    key = r.stdout.trim();
  });
  after(async () => { if (stack) await stack.stop(); });

  it('passes the Authorization header to the router', async () => {
    const client = new OpenAI({ apiKey: key, baseURL: stack.router.baseURL, maxRetries: 0 });
    const c = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    assert.match(c.choices[0].message.content, /Hello from the fake/);
    const row = await stack.router.row(c.id);
    assert.equal(row.agent, 'deploy_agent');
    // A wrong key is the router's 401, so the header did arrive (a missing one says so instead).
    const wrong = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', headers: { authorization: 'Bearer lrk_000000000000_00000000000000000000000000000000', 'content-type': 'application/json' }, body: chatBody(200) });
    assert.equal(wrong.status, 401);
    const err = await wrong.json();
    assert.equal(err.error.code, 'invalid_api_key');
  });

  it('streams events as they are produced', async () => {
    const r = await fetch(stack.router.baseURL + '/chat/completions', {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }], fake_chunk_delay_ms: 150 }),
    });
    assert.equal(r.status, 200);
    const events = (await readSSE(r)).filter((e) => e.data && e.data !== '[DONE]');
    assert.ok(events.length >= 5, `${events.length} events`);
    // Spread over the generation time rather than arriving in one lump at the end.
    assert.ok(events[events.length - 1].t - events[0].t >= 3 * 150, `events ${events.map((e) => e.t).join(',')}`);
  });

  it('streams Responses API events as they are produced', async () => {
    const chunk = (delta, finish = null) => 'data: ' + JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: finish }] });
    const words = ['one ', 'two ', 'three ', 'four ', 'five'];
    await stack.fake.script('openai', [{ chunk_delay_ms: 150, sse: [chunk({ role: 'assistant', content: '' }), ...words.map((w) => chunk({ content: w })), chunk({}, 'stop'), 'data: [DONE]'] }]);
    const r = await fetch(stack.router.baseURL + '/responses', {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, input: 'hi' }),
    });
    assert.equal(r.status, 200);
    const events = (await readSSE(r)).filter((e) => e.data);
    for (const e of events) assert.equal(e.raw.split('\n')[0], `event: ${JSON.parse(e.data).type}`, e.raw);
    const types = events.map((e) => JSON.parse(e.data).type);
    assert.deepEqual([types[0], types[types.length - 1]], ['response.created', 'response.completed']);
    const deltas = events.filter((e) => JSON.parse(e.data).type === 'response.output_text.delta');
    assert.equal(deltas.map((e) => JSON.parse(e.data).delta).join(''), words.join(''));
    // Each delta as its chunk came, not in one lump at the end.
    assert.ok(deltas[deltas.length - 1].t - deltas[0].t >= 3 * 150, `deltas ${deltas.map((e) => e.t).join(',')}`);
  });

  it('is not cut by the web server during a long non-streaming call', async () => {
    await stack.fake.script('openai', [{ delay_ms: CALL_MS }]);
    const t0 = Date.now();
    const r = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: chatBody(300) });
    const body = await r.text();
    assert.equal(r.status, 200, body);
    assert.match(JSON.parse(body).choices[0].message.content, /Hello from the fake/);
    assert.ok(Date.now() - t0 >= CALL_MS);
    assert.doesNotMatch(stack.router.errorLog(), /read data timeout|mod_fcgid: stderr/);
  });

  it('is not cut by the web server during long silences in a stream', async () => {
    // Silent before the first byte (the heartbeat's case), then between two events (keep-alive
    // comments to the client). The first event carries content: upstream.timeout_ms runs until
    // the first content event.
    const ev = (delta, finish = null) => 'data: ' + JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: finish }] });
    await stack.fake.script('openai', [{ delay_ms: CALL_MS, chunk_delay_ms: 1200, sse: [ev({ role: 'assistant', content: 'slow ' }), ev({ content: 'reply' }), ev({}, 'stop'), 'data: [DONE]'] }]);
    const r = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }) });
    assert.equal(r.status, 200);
    const events = await readSSE(r);
    assert.equal(events[events.length - 1].data, '[DONE]');
    const text = events.filter((e) => e.data && e.data !== '[DONE]').map((e) => JSON.parse(e.data).choices[0]?.delta?.content || '').join('');
    assert.equal(text, 'slow reply');
    assert.ok(events.some((e) => e.comment), 'keep-alive comments while the upstream was silent');
  });

  it('accepts a body at the limit and answers 413 one byte above it', async () => {
    const at = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: chatBody(MAX_BODY) });
    assert.equal(at.status, 200, await at.clone().text());
    await at.json();
    const over = await fetch(stack.router.baseURL + '/chat/completions', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: chatBody(MAX_BODY + 1) });
    assert.equal(over.status, 413);
    const e = await over.json();
    assert.equal(e.error.code, 'request_too_large');
    assert.match(e.error.message, new RegExp(`limit of ${MAX_BODY} bytes`));
  });

  it('never serves the configuration, the database, the JSONL log or key files', async () => {
    const secrets = ['conf/llm-router.conf', 'conf/llm-router.env', 'data/llm_logs.db', 'data/llm_logs_fallback.jsonl'];
    // Where they are by default: beside the document root (or with no document root at all).
    const probes = secrets.flatMap((p) => [`/${p}`, `/../${p}`, `/v1/../${p}`, `/v1/%2e%2e/${p}`, `/www/../${p}`]);
    if (docrootFront) {
      // Copies uploaded into the document root by mistake are refused too.
      const www = path.join(stack.router.work, 'www');
      const planted = ['conf/llm-router.conf', 'data/llm_logs.db', 'data/llm_logs.db-wal', 'llm_logs.db', 'logs.jsonl', 'llm-router.env',
        'llm-router.conf', 'agent.key', 'backup/llm_logs.sqlite', '.env', '.git/config'];
      for (const p of planted) {
        fs.mkdirSync(path.dirname(path.join(www, p)), { recursive: true });
        fs.writeFileSync(path.join(www, p), 'SECRET-CONTENT');
        probes.push('/' + p);
      }
      probes.push('/.htaccess');
    }
    for (const p of probes) {
      const r = await rawGet(stack.router.port, p);
      const text = r.text;
      assert.ok([400, 403, 404].includes(r.status), `${p}: ${r.status}`);
      assert.doesNotMatch(text, /SECRET|api_key|SQLite format|request_id|providers\s*=|RewriteRule/, p);
      if (docrootFront && r.status === 403) assert.equal(JSON.parse(text).error.code, 'permission_denied', p);
    }
  });
});
