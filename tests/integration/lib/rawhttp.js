// HTTP as it goes over the wire, for what fetch cannot send or would hide: a malformed request
// line, a huge header, a path sent exactly as written. And the check that an answer is OpenAI's
// error envelope.
'use strict';
const assert = require('node:assert/strict');
const net = require('net');

function unchunk(b) {
  let out = '';
  for (let i = 0; ;) {
    const eol = b.indexOf('\r\n', i);
    const n = parseInt(b.slice(i, eol), 16);
    if (!(n > 0)) return out;
    out += b.slice(eol + 2, eol + 2 + n);
    i = eol + 2 + n + 2;
  }
}

// Sends data as it is and reads the answer until the server closes (or timeoutMs). Resolves to
// { status, headers (lower-case names), body }.
function raw(port, data, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    const s = net.connect(port, '127.0.0.1', () => s.end(data));
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      const buf = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})[^\r\n]*\r\n/.exec(buf);
      if (!m) return reject(new Error(`no HTTP status line in ${JSON.stringify(buf.slice(0, 200))}`));
      const headEnd = buf.indexOf('\r\n\r\n');
      const headers = {};
      for (const l of buf.slice(m[0].length, headEnd).split('\r\n')) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      let body = buf.slice(headEnd + 4);
      if (headers['content-length']) body = body.slice(0, Number(headers['content-length']));
      else if (/chunked/i.test(headers['transfer-encoding'] || '')) body = unchunk(body);
      resolve({ status: Number(m[1]), headers, body });
    };
    const timer = setTimeout(done, timeoutMs);
    s.on('data', (d) => chunks.push(d));
    s.on('end', done);
    s.on('error', (e) => (chunks.length ? done() : reject(e)));
  });
}

// GET p with extra headers ({name: value}); the connection closes after the answer.
function get(port, p, headers = {}) {
  const h = Object.entries(Object.assign({ Host: '127.0.0.1', Connection: 'close' }, headers)).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return raw(port, `GET ${p} HTTP/1.1\r\n${h}\r\n`);
}

// OpenAI's error envelope, typed application/json, with one of the statuses (its type follows
// the status class). Returns the error object.
function assertEnvelope(r, statuses, what) {
  assert.ok(statuses.includes(r.status), `${what}: status ${r.status}, expected ${statuses.join('/')}: ${r.body.slice(0, 200)}`);
  assert.match(r.headers['content-type'] || '', /^application\/json/, `${what}: Content-Type ${r.headers['content-type']}: ${r.body.slice(0, 200)}`);
  let e;
  try { e = JSON.parse(r.body); } catch (x) { assert.fail(`${what}: not JSON: ${r.body.slice(0, 200)}`); }
  assert.equal(typeof e.error, 'object', what);
  assert.equal(typeof e.error.message, 'string', what);
  assert.equal(e.error.type, r.status >= 500 ? 'server_error' : 'invalid_request_error', what);
  assert.ok('param' in e.error && 'code' in e.error, `${what}: ${r.body}`);
  return e.error;
}

// The errors every set-up's web server answers itself: a malformed request line, a 70 KiB
// header, a 10 KB URL, a missing file.
async function assertOwnErrors(port, what) {
  assertEnvelope(await raw(port, 'GARBAGE\r\n\r\n'), [400], `${what}: malformed request line`);
  assertEnvelope(await get(port, '/v1/models', { 'X-Big': 'a'.repeat(70 * 1024) }), [400, 431], `${what}: 70 KiB header`);
  assertEnvelope(await get(port, '/v1/' + 'a'.repeat(10000)), [414, 431], `${what}: 10 KB URL`);
  assertEnvelope(await get(port, '/no-such-file.html'), [403, 404], `${what}: a missing file`);
}

module.exports = { raw, get, assertEnvelope, assertOwnErrors };
