// The responder as a web server sees it, without one in between: a minimal FastCGI client talks to
// `llm-router serve --listen`. This is where the router learns that a client left before any byte
// of the answer was sent - the web server closes the FastCGI connection, or sends
// FCGI_ABORT_REQUEST - and it must then close the upstream transfer at once.
'use strict';
const { describe, it, before, after, beforeEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { ROOT, TEST_KEYS, SLOW, startFake, startServe, stopServe, waitFor, sleep } = require('./lib/harness');

const FCGI = { BEGIN_REQUEST: 1, ABORT_REQUEST: 2, END_REQUEST: 3, PARAMS: 4, STDIN: 5, STDOUT: 6, STDERR: 7 };

function record(type, body = Buffer.alloc(0), id = 1) {
  const pad = (8 - (body.length % 8)) % 8;
  const h = Buffer.from([1, type, id >> 8, id & 255, body.length >> 8, body.length & 255, pad, 0]);
  return Buffer.concat([h, body, Buffer.alloc(pad)]);
}

function nvLen(n) {
  return n < 128 ? Buffer.from([n]) : Buffer.from([(n >>> 24) | 0x80, (n >> 16) & 255, (n >> 8) & 255, n & 255]);
}

function params(obj) {
  const parts = [];
  for (const [k, v] of Object.entries(obj)) {
    const kb = Buffer.from(k);
    const vb = Buffer.from(String(v));
    parts.push(nvLen(kb.length), nvLen(vb.length), kb, vb);
  }
  return Buffer.concat(parts);
}

// Sends one POST; returns the socket and a promise of everything the responder wrote to STDOUT.
function fcgiPost(port, uri, body) {
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => {});
  const b = Buffer.from(body);
  sock.write(record(FCGI.BEGIN_REQUEST, Buffer.from([0, 1, 0, 0, 0, 0, 0, 0])));
  sock.write(record(FCGI.PARAMS, params({
    GATEWAY_INTERFACE: 'CGI/1.1', SERVER_PROTOCOL: 'HTTP/1.1', REQUEST_METHOD: 'POST', REQUEST_URI: uri,
    SCRIPT_NAME: '/v1', PATH_INFO: uri.slice(3), CONTENT_TYPE: 'application/json', CONTENT_LENGTH: b.length,
    REMOTE_ADDR: '127.0.0.1', SERVER_NAME: '127.0.0.1', SERVER_PORT: '80',
  })));
  sock.write(record(FCGI.PARAMS));
  for (let off = 0; off < b.length; off += 65535) sock.write(record(FCGI.STDIN, b.subarray(off, off + 65535)));
  sock.write(record(FCGI.STDIN));
  const out = new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let stdout = Buffer.alloc(0);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 8) {
        const len = buf.readUInt16BE(4);
        const pad = buf[6];
        if (buf.length < 8 + len + pad) break;
        if (buf[1] === FCGI.STDOUT) stdout = Buffer.concat([stdout, buf.subarray(8, 8 + len)]);
        buf = buf.subarray(8 + len + pad);
      }
    });
    sock.on('close', () => resolve(stdout.toString()));
  });
  return { sock, out };
}

describe('FastCGI: a web server that drops a request', () => {
  let fake;
  let work;
  let served;
  let port;
  before(async () => {
    fake = await startFake();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-fcgi-'));
    fs.mkdirSync(path.join(work, 'conf'));
    const conf = fs.readFileSync(path.join(ROOT, 'conf/llm-router.conf'), 'utf8')
      .replace('timeout_ms = 120000;', 'timeout_ms = 3000;')
      .replace('failures = 3;', 'failures = 0;')
      .replace('auth_mode = "key";', 'auth_mode = "none";')
      .replace('default_tier = "T3";', 'default_tier = "T1";');
    fs.writeFileSync(path.join(work, 'conf/llm-router.conf'), conf);
    served = await startServe(work, {
      OPENAI_API_KEY: TEST_KEYS.OPENAI_API_KEY, OPENAI_BASE_URL: `${fake.url}/openai/v1`,
      ANTHROPIC_API_KEY: TEST_KEYS.ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL: `${fake.url}/anthropic`,
    });
    port = served.port;
  });
  after(async () => {
    await stopServe(served, work);
    await fake.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });
  beforeEach(async () => { await fake.reset(); });

  it('a connection that never sends its request\'s head is dropped after 1 s of silence; the next request is answered meanwhile', async () => {
    // libfcgi reads a request's head while it holds the accept lock: an idle connection (a
    // stalled web server, a half-open socket, anyone who can reach the port) held every worker.
    const idle = net.connect(port, '127.0.0.1');
    idle.on('error', () => {});
    const half = net.connect(port, '127.0.0.1');    // BEGIN_REQUEST, then nothing
    half.on('error', () => {});
    half.write(record(FCGI.BEGIN_REQUEST, Buffer.from([0, 1, 0, 0, 0, 0, 0, 0])));
    const closed = (sock) => { sock.resume(); return new Promise((resolve) => sock.on('close', resolve)); };
    const idleClosed = closed(idle);
    const halfClosed = closed(half);
    await sleep(300);
    const t0 = Date.now();
    const { out } = fcgiPost(port, '/v1/chat/completions', JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }));
    const text = await Promise.race([out, sleep(10000 * SLOW).then(() => 'no answer')]);
    const ms = Date.now() - t0;
    assert.match(text, /^Status: 200/, `after ${ms} ms: ${text.slice(0, 200)}`);
    assert.ok(ms < 5000 * SLOW, `answered after ${ms} ms`);
    await Promise.race([Promise.all([idleClosed, halfClosed]), sleep(10000 * SLOW).then(() => { throw new Error('the idle connections were not closed'); })]);
  });

  it('answers a request (the client works)', async () => {
    const { out } = fcgiPost(port, '/v1/chat/completions', JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }));
    const text = await out;
    assert.match(text, /^Status: 200/);
    assert.match(text, /Hello from the fake openai/);
  });

  for (const how of ['closes the connection', 'sends FCGI_ABORT_REQUEST']) {
    for (const stream of [false, true]) {
      it(`the upstream transfer stops at once when the web server ${how} before any byte (${stream ? 'stream' : 'non-stream'})`, async (t) => {
        await fake.script('openai', [{ hang: true }]);
        const { sock } = fcgiPost(port, '/v1/chat/completions', JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], stream }));
        await waitFor(async () => (await fake.requests()).length === 1, 3000 * SLOW, 'the upstream call');
        await sleep(50);
        const t0 = Date.now();
        if (how === 'closes the connection') sock.destroy();
        else sock.write(record(FCGI.ABORT_REQUEST));
        const ev = await waitFor(async () => (await fake.events()).find((e) => e.type === 'client_closed'), 5000 * SLOW, 'the upstream connection to close');
        const delay = ev.wall - t0;
        t.diagnostic(`upstream closed ${delay} ms after the web server dropped the request`);
        assert.ok(delay < 200 * SLOW, `upstream closed ${delay} ms later (timeout_ms is 3000)`);
        sock.destroy();
        const db = path.join(work, 'data/llm_logs.db');
        const rows = await waitFor(() => {
          const r = require('child_process').spawnSync('sqlite3', ['-json', db, 'SELECT * FROM request_log WHERE status = 499'], { encoding: 'utf8' });
          const v = r.stdout.trim() ? JSON.parse(r.stdout) : [];
          return v.length ? v : null;
        }, 5000 * SLOW, 'the row');
        const row = rows[rows.length - 1];
        assert.equal(row.error_type, 'client_disconnected');
        assert.equal(row.client_gone, 1);
        // Nobody else is asked on behalf of a client that left.
        assert.equal((await fake.requests()).length, 1);
        require('child_process').spawnSync('sqlite3', [db, 'DELETE FROM request_log WHERE status = 499']);
      });
    }
  }
});
