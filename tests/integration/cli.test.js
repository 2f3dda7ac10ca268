// The binary outside a web server: the command-line tool, and plain CGI mode (one request per
// process, parameters from the environment, body on stdin, response on stdout).
'use strict';
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { ROOT, ROUTER_BIN, TEST_KEYS, startFake } = require('./lib/harness');

function run(args, opts = {}) {
  return spawnSync(ROUTER_BIN, args, Object.assign({ encoding: 'utf8', timeout: 30000 }, opts));
}

describe('command line', () => {
  it('--help and --version', () => {
    const h = run(['--help']);
    assert.equal(h.status, 0);
    assert.match(h.stdout, /check-config/);
    const v = run(['--version']);
    assert.equal(v.status, 0);
    assert.match(v.stdout, /^llm-router \d+\.\d+\.\d+/);
    const none = run([], { input: '' });
    assert.equal(none.status, 2);
    assert.match(none.stderr, /Usage/);
    const bad = run(['frobnicate']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /unknown command 'frobnicate'/);
  });

  it('check-config accepts the shipped file and rejects a broken one with FILE:LINE', () => {
    const ok = run(['check-config', path.join(ROOT, 'conf/llm-router.conf')], { env: { PATH: process.env.PATH } });
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /OK/);
    assert.match(ok.stdout, /groq\s+openai\s+unavailable\s+GROQ_API_KEY is not set/);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-cli-'));
    const bad = path.join(dir, 'bad.conf');
    const text = fs.readFileSync(path.join(ROOT, 'conf/llm-router.conf'), 'utf8')
      .replace('busy_timeout_ms = 5000;', 'busy_timeout_ms = -5;')
      .replace('fallback = [ "claude-sonnet-4-5", "gpt-4o" ];', 'fallback = [ "claude-opus-4-6" ];');
    fs.writeFileSync(bad, text);
    const lineOf = (needle) => text.split('\n').findIndex((l) => l.includes(needle)) + 1;
    const r = run(['check-config', bad]);
    assert.equal(r.status, 1);
    assert.ok(r.stderr.includes(`${bad}:${lineOf('busy_timeout_ms = -5')}: 'storage.busy_timeout_ms' is -5, outside the allowed range`), r.stderr);
    assert.match(r.stderr, /model "claude-opus-4-6": its fallback chain contains itself/);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('plain CGI mode', () => {
  let fake;
  let dir;
  let key;
  before(async () => {
    fake = await startFake();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-cgi-'));
    // The shipped configuration: callers need an agent key (here one of a T1 agent).
    const made = run(['keys', 'create', '--agent', 'ai_director'], { env: { PATH: process.env.PATH, LLM_ROUTER_CONFIG: path.join(ROOT, 'conf/llm-router.conf'), LLM_ROUTER_HOME: dir } });
    assert.equal(made.status, 0, made.stderr);
    key = made.stdout.trim();
  });
  after(async () => { await fake.stop(); fs.rmSync(dir, { recursive: true, force: true }); });

  function cgi(method, uri, body, auth = true) {
    const env = {
      PATH: process.env.PATH,
      GATEWAY_INTERFACE: 'CGI/1.1', REQUEST_METHOD: method, REQUEST_URI: uri,
      CONTENT_LENGTH: body ? String(Buffer.byteLength(body)) : '', CONTENT_TYPE: 'application/json',
      LLM_ROUTER_CONFIG: path.join(ROOT, 'conf/llm-router.conf'), LLM_ROUTER_HOME: dir,
      OPENAI_API_KEY: TEST_KEYS.OPENAI_API_KEY, OPENAI_BASE_URL: `${fake.url}/openai/v1`,
    };
    if (auth) env.HTTP_AUTHORIZATION = `Bearer ${key}`;
    if (process.env.ASAN_OPTIONS) env.ASAN_OPTIONS = process.env.ASAN_OPTIONS;
    const r = spawnSync(ROUTER_BIN, [], { env, input: body || '', encoding: 'utf8', timeout: 30000 });
    const sep = r.stdout.indexOf('\r\n\r\n');
    return { code: r.status, head: r.stdout.slice(0, sep), body: r.stdout.slice(sep + 4), stderr: r.stderr };
  }

  it('answers GET /v1/models', () => {
    const r = cgi('GET', '/v1/models');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.head, /^Status: 200 OK\r\nContent-Type: application\/json/);
    assert.equal(JSON.parse(r.body).data.length, 13);
  });

  it('answers a chat completion and a stream, and logs both', () => {
    const r = cgi('POST', '/v1/chat/completions', JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.head, /^Status: 200 OK/);
    const id = JSON.parse(r.body).id;
    const s = cgi('POST', '/v1/chat/completions', JSON.stringify({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'hi' }] }));
    assert.match(s.head, /Content-Type: text\/event-stream/);
    assert.match(s.body, /data: \[DONE\]\n\n$/);
    const rows = spawnSync('sqlite3', ['-json', path.join(dir, 'data/llm_logs.db'), 'SELECT request_id, stream, status, agent, tier FROM request_log ORDER BY id'], { encoding: 'utf8' });
    const parsed = JSON.parse(rows.stdout);
    assert.equal(parsed.length, 2);
    assert.equal(parsed[0].request_id, id);
    assert.equal(parsed[0].agent, 'ai_director');
    assert.equal(parsed[0].tier, 'T1');
    assert.equal(parsed[1].stream, 1);
  });

  it('answers errors with the envelope', () => {
    const r = cgi('POST', '/v1/chat/completions', '{nope');
    assert.match(r.head, /^Status: 400 Bad Request/);
    assert.equal(JSON.parse(r.body).error.type, 'invalid_request_error');
    const n = cgi('GET', '/v1/other');
    assert.match(n.head, /^Status: 404/);
    const u = cgi('POST', '/v1/chat/completions', JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }), false);
    assert.match(u.head, /^Status: 401/);
    assert.equal(JSON.parse(u.body).error.code, 'missing_api_key');
  });
});
