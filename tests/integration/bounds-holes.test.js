// The smaller holes of issue 13, each tried as an attacker would: a Gemini pass-through route that
// lets the model id choose the upstream URL, control characters from clients in response headers
// and log lines, unbounded client strings in the request log, tool-call state that one agent could
// pull from another, and upstream error text cut before its keys were redacted.
'use strict';
const { describe, it, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const { startStack, TEST_KEYS } = require('./lib/harness');

const ROOT = path.resolve(__dirname, '../..');
const ROUTER_BIN = process.env.ROUTER_BIN || path.join(ROOT, 'build/llm-router');

// A raw HTTP/1.0 exchange: the response head exactly as the web server sent it (bytes as latin1),
// so that a control character in a header is seen, not rejected by a client's parser.
function rawPost(port, urlPath, headers, body) {
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(body);
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', reject);
    sock.on('end', () => {
      const all = Buffer.concat(chunks);
      const cut = all.indexOf('\r\n\r\n');
      const head = all.subarray(0, cut).toString('latin1');
      resolve({ status: Number(/^HTTP\/1\.\d (\d+)/.exec(head)[1]), head, body: all.subarray(cut + 4).toString('utf8') });
    });
    const lines = [`POST ${urlPath} HTTP/1.0`, 'Host: 127.0.0.1', 'Content-Type: application/json',
      `Content-Length: ${payload.length}`, 'Connection: close'];
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    sock.write(Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), payload]));
  });
}

// The head's lines (CRLF ends each) must hold no control character.
const assertCleanHead = (head) => { for (const l of head.split('\r\n')) assert.doesNotMatch(l, RAW_CONTROL, `raw control character in: ${l}`); };
const headerOf = (head, name) => {
  const line = head.split('\r\n').find((l) => l.toLowerCase().startsWith(name.toLowerCase() + ':'));
  return line === undefined ? undefined : line.slice(name.length + 1).trim();
};

// Raw control characters: C0 (ESC), C1 (U+0085 as UTF-8 and as a lone byte), U+2028/2029.
const RAW_CONTROL = /[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]/;
const EVIL = 'x\u001b[31mred\u0085nel\u2028ls\u2029ps';
const EVIL_ESCAPED = 'x\\x1b[31mred\\u0085nel\\u2028ls\\u2029ps';

const ev = (name, data) => `event: ${name}\ndata: ${JSON.stringify(Object.assign({ type: name }, data))}`;
function thinkingToolTurn(id) {
  return [
    ev('message_start', { message: { id: 'msg_ts', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null, usage: { input_tokens: 20, output_tokens: 1 } } }),
    ev('content_block_start', { index: 0, content_block: { type: 'thinking', thinking: '' } }),
    ev('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'Agent A private reasoning.' } }),
    ev('content_block_delta', { index: 0, delta: { type: 'signature_delta', signature: 'SIG-agent-a==' } }),
    ev('content_block_stop', { index: 0 }),
    ev('content_block_start', { index: 1, content_block: { type: 'tool_use', id, name: 'get_weather', input: {} } }),
    ev('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: '{"city":"Oslo"}' } }),
    ev('content_block_stop', { index: 1 }),
    ev('message_delta', { delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 30 } }),
    ev('message_stop', {}),
  ];
}
const TOOLS = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
const anthropicText = { body: { id: 'msg_2', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [{ type: 'text', text: 'Cold.' }], stop_reason: 'end_turn', usage: { input_tokens: 50, output_tokens: 2 } } };

describe('the smaller holes closed (issue 13, item 6)', () => {
  let stack;
  const post = (body, headers = {}) => rawPost(stack.router.port, '/v1/chat/completions', headers, JSON.stringify(body));
  before(async () => {
    // Agents named by a trusted header (as behind an authenticating proxy); anyone unlisted is T1.
    stack = await startStack({
      auth: true,
      webMaxBody: 16 << 20, // bodies reach the router on a shared host too (FcgidMaxRequestLen)
      config: (t) => t.replace('auth_mode = "key";', 'auth_mode = "header";').replace('default_tier = "T3";', 'default_tier = "T1";')
        .replace('max_retries = 2;', 'max_retries = 0;').replace('failures = 3;', 'failures = 0;'),
    });
  });
  after(async () => { await stack.stop(); });
  beforeEach(async () => { await stack.fake.reset(); });

  it('a Gemini pass-through route is refused by check-config: the model id would be the URL path', () => {
    const conf = fs.readFileSync(path.join(ROOT, 'conf/llm-router.conf'), 'utf8').replace(
      '{ id = "openrouter/*";',
      '{ id = "gemini/*"; provider = "gemini"; passthrough = true; input_usd_per_mtok = 1.0; output_usd_per_mtok = 1.0; },\n  { id = "openrouter/*";');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-gpt-'));
    const file = path.join(dir, 'llm-router.conf');
    fs.writeFileSync(file, conf);
    const r = spawnSync(ROUTER_BIN, ['check-config', file], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    fs.rmSync(dir, { recursive: true, force: true });
    assert.notEqual(r.status, 0, 'check-config must refuse it');
    assert.match(r.stderr + r.stdout, /pass-through model "gemini\/\*": provider "gemini" speaks the Gemini API/);
  });

  it('an OpenRouter pass-through id goes into the JSON body only, never the URL', async () => {
    const id = 'openrouter/a/../../../../v1/x?alt=sse&';
    const r = await post({ model: id, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(r.status, 200, r.body);
    const [up] = await stack.fake.requests();
    assert.equal(up.path, '/openrouter/api/v1/chat/completions');
    assert.equal(up.body.model, 'a/../../../../v1/x?alt=sse&');
  });

  it('control characters from a client are escaped in response headers and log lines', async () => {
    // A pass-through model id (X-Router-Model, X-Router-Requested-Model, a log line) carrying
    // ESC, C1 and U+2028/9.
    const model = `openrouter/v/${EVIL}`;
    const r = await post({ model, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(r.status, 200, r.body);
    assertCleanHead(r.head);
    assert.equal(headerOf(r.head, 'X-Router-Model'), `openrouter/v/${EVIL_ESCAPED}`);
    assert.equal(headerOf(r.head, 'X-Router-Requested-Model'), `openrouter/v/${EVIL_ESCAPED}`);
    // A T2 agent asking for a pass-through model is downgraded, and the log line names the id.
    const a = await post({ model, messages: [{ role: 'user', content: 'hi' }] }, { 'X-Agent-Name': 'devops_agent' });
    assert.equal(a.status, 200, a.body);
    assertCleanHead(a.head);
    assert.equal(headerOf(a.head, 'X-Router-Model'), 'gpt-4o');
    assert.equal(headerOf(a.head, 'X-Router-Requested-Model'), `openrouter/v/${EVIL_ESCAPED}`);
    const id = headerOf(a.head, 'X-Request-Id');
    await stack.router.row(id);
    const log = Buffer.from(stack.router.errorLog(), 'utf8').toString('latin1');
    const mine = log.split('\n').filter((l) => l.includes(id));
    assert.ok(mine.some((l) => l.includes(`tier T2: openrouter/v/${EVIL_ESCAPED} downgraded to gpt-4o`)), mine.join('\n'));
    const routerLines = log.split('\n').filter((l) => l.includes('llm-router['));
    assert.ok(routerLines.length > 0);
    for (const l of routerLines) assert.doesNotMatch(l, RAW_CONTROL, l);
    // An unknown model with the same characters: the 404 still carries clean headers.
    const nf = await post({ model: EVIL, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(nf.status, 404);
    assertCleanHead(nf.head);
    assert.equal(headerOf(nf.head, 'X-Router-Requested-Model'), EVIL_ESCAPED);
  });

  it('a 2,000,000-byte model id gets 400 and the row keeps no part of it', async () => {
    const r = await post({ model: 'm'.repeat(2000000), messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(r.status, 400, r.body);
    const err = JSON.parse(r.body).error;
    assert.equal(err.type, 'invalid_request_error');
    assert.equal(err.param, 'model');
    assert.match(err.message, /at most 256 bytes/);
    const row = await stack.router.row(headerOf(r.head, 'X-Request-Id'));
    assert.equal(row.status, 400);
    assert.equal(row.requested_model, null);
    assert.equal(row.cost_nusd, 0, 'a refusal costs nothing');
    const [{ longest }] = stack.router.db("SELECT max(max(length(coalesce(requested_model, ''))), max(length(coalesce(model, ''))), max(length(coalesce(error_message, '')))) AS longest FROM request_log");
    assert.ok(longest <= 1024, `longest client string stored: ${longest} bytes`);
    assert.equal(headerOf(r.head, 'X-Router-Requested-Model'), undefined);
    // 256 bytes is still a model id (unknown here: 404), with a bounded row.
    const ok = await post({ model: 'm'.repeat(256), messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(ok.status, 404);
    assert.equal((await stack.router.row(headerOf(ok.head, 'X-Request-Id'))).requested_model.length, 256);
  });

  it('task types over 256 bytes (header or metadata) get 400 and are not stored', async () => {
    const h = await post({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }, { 'X-Task-Type': 't'.repeat(4000) });
    assert.equal(h.status, 400, h.body);
    assert.equal(JSON.parse(h.body).error.param, 'X-Task-Type');
    const hr = await stack.router.row(headerOf(h.head, 'X-Request-Id'));
    assert.equal(hr.task, null);
    assert.equal(hr.cost_nusd, 0);
    const m = await post({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], metadata: { task_type: 't'.repeat(100000) } });
    assert.equal(m.status, 400, m.body);
    assert.equal(JSON.parse(m.body).error.param, 'metadata.task_type');
    const mr = await stack.router.row(headerOf(m.head, 'X-Request-Id'));
    assert.equal(mr.task, null);
    assert.ok((mr.error_message || '').length < 1024);
  });

  it('an agent name or task type that is not UTF-8: the agent is kept with ? for each bad byte, the task gets 400', async () => {
    // Header values are latin1 on the wire here: "\xe9" is the byte 0xE9 alone, "\xc3\xa9" a
    // whole "é" that the 127-byte cut of an agent name splits.
    const msg = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };
    const bad = await post(msg, { 'X-Agent-Name': 'caf\xe9-agent' });
    assert.equal(bad.status, 200, bad.body);
    assert.equal((await stack.router.row(headerOf(bad.head, 'X-Request-Id'))).agent, 'caf?-agent');
    const cut = await post(msg, { 'X-Agent-Name': 'a'.repeat(126) + '\xc3\xa9' });
    assert.equal(cut.status, 200, cut.body);
    assert.equal((await stack.router.row(headerOf(cut.head, 'X-Request-Id'))).agent, 'a'.repeat(126) + '?');
    const task = await post(msg, { 'X-Task-Type': 'co\xffde' });
    assert.equal(task.status, 400, task.body);
    const e = JSON.parse(task.body).error;
    assert.equal(e.param, 'X-Task-Type');
    assert.match(e.message, /UTF-8/);
    const tr = await stack.router.row(headerOf(task.head, 'X-Request-Id'));
    assert.equal(tr.task, null);
  });

  it('tool-call state is kept per agent: B cannot pull A\'s thinking with A\'s tool-call id', async () => {
    const toolId = 'toolu_agent_a_1';
    await stack.fake.script('anthropic', [{ sse: thinkingToolTurn(toolId) }]);
    const first = [{ role: 'user', content: 'Weather in Oslo?' }];
    const t1 = await post({ model: 'claude-sonnet-4-5', messages: first, tools: TOOLS, reasoning_effort: 'low', stream: true }, { 'X-Agent-Name': 'agent-a' });
    assert.equal(t1.status, 200);
    assert.match(t1.body, /data: \[DONE\]/);
    await stack.router.row(headerOf(t1.head, 'X-Request-Id'));
    // The next turn as a client that dropped the extension fields sends it.
    const turn2 = [...first,
      { role: 'assistant', content: null, tool_calls: [{ id: toolId, type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }] },
      { role: 'tool', tool_call_id: toolId, content: '-3C' }];
    const turnOf = async (agent) => {
      await stack.fake.reset();
      await stack.fake.script('anthropic', [anthropicText]);
      const r = await post({ model: 'claude-sonnet-4-5', messages: turn2, tools: TOOLS, reasoning_effort: 'low' }, agent ? { 'X-Agent-Name': agent } : {});
      assert.equal(r.status, 200, r.body);
      const [up] = await stack.fake.requests();
      return up.body.messages[1];
    };
    const b = await turnOf('agent-b');
    assert.ok(!JSON.stringify(b).includes('Agent A private reasoning'), `agent B received A's thinking: ${JSON.stringify(b)}`);
    assert.ok(!b.content.some((c) => c.type === 'thinking'));
    const anon = await turnOf(null);
    assert.ok(!JSON.stringify(anon).includes('Agent A private reasoning'), 'an anonymous caller neither');
    const a = await turnOf('agent-a');
    assert.deepEqual(a.content[0], { type: 'thinking', thinking: 'Agent A private reasoning.', signature: 'SIG-agent-a==' });
    const stored = stack.router.db(`SELECT agent, tool_call_id FROM tool_call_state WHERE tool_call_id = '${toolId}'`);
    assert.deepEqual(stored, [{ agent: 'agent-a', tool_call_id: toolId }]);
  });

  it('an upstream error is redacted before it is cut: a key across the cut leaves no prefix', async () => {
    const key = TEST_KEYS.OPENAI_API_KEY;
    const prefix = key.slice(0, 8);
    // OpenRouter-style moderation verdict (403): its message is passed on, cut to 600 bytes.
    await stack.fake.script('openai', [{ status: 403, body: { error: { message: 'm'.repeat(590) + key + ' end', code: 403, metadata: { reasons: ['violence'] } } } }]);
    const mod = await post({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(mod.status, 403, mod.body);
    assert.equal(JSON.parse(mod.body).error.code, 'content_flagged');
    assert.ok(!mod.body.includes(prefix), `key prefix leaked to the client: ${mod.body.slice(-120)}`);
    const mrow = await stack.router.row(headerOf(mod.head, 'X-Request-Id'));
    assert.ok(!(mrow.error_message || '').includes(prefix), 'key prefix leaked to the log row');
    assert.equal(mrow.cost_nusd, 0);
    // A 400 whose param (cut to 96 bytes) carries the key across the cut.
    await stack.fake.script('openai', [{ status: 400, body: { error: { message: 'bad', type: 'invalid_request_error', param: 'p'.repeat(85) + key, code: 'invalid_value' } } }]);
    const bad = await post({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(bad.status, 400, bad.body);
    assert.ok(!bad.body.includes(prefix), `key prefix leaked in param: ${JSON.parse(bad.body).error.param}`);
    assert.ok(!stack.router.errorLog().includes(prefix), 'no key prefix in the error log');
  });
});
