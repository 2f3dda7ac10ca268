// HTTPS providers: every test elsewhere reaches the fake provider over plain HTTP; here a TLS front
// (Node's https/http2 server offering HTTP/2 and HTTP/1.1 by ALPN, with a self-signed certificate
// made by the openssl CLI and trusted through upstream.ca_file alone) stands where the provider's
// HTTPS endpoint would be and proxies each request to the fake, so that the fake's scripts work as
// over plain HTTP. The router asks for HTTP/1.1 (README "How it runs": why not HTTP/2 yet). The
// front counts its TLS connections and requests, the protocol each used, and the requests the
// router dropped before their reply ended.
'use strict';
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const http2 = require('http2');
const { FRONT, startStack, readSSE, waitFor, sleep, SLOW } = require('./lib/harness');

const MSG = [{ role: 'user', content: 'hello' }];

// The TLS front: HTTP/2 and HTTP/1.1 by ALPN, every request proxied to front.target (the fake
// of the stack that uses it, set once that stack has started).
async function startFront() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-tls-'));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  const front = { target: null, cert, stats: null };
  front.clear = () => { front.stats = { sessions: 0, streams: 0, protocols: {}, reset: 0 }; };
  front.clear();
  const server = http2.createSecureServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert), allowHTTP1: true });
  server.on('secureConnection', () => { front.stats.sessions++; });
  server.on('request', (req, res) => {
    const stats = front.stats;
    stats.streams++;
    const proto = req.httpVersion === '2.0' ? 'h2' : 'http/1.1';
    stats.protocols[proto] = (stats.protocols[proto] || 0) + 1;
    const headers = {};
    for (const [k, v] of Object.entries(req.headers)) if (!k.startsWith(':') && !['connection', 'host', 'transfer-encoding', 'keep-alive'].includes(k)) headers[k] = v;
    const up = http.request(front.target + req.url, { method: req.method, headers }, (ur) => {
      const h = {};
      for (const [k, v] of Object.entries(ur.headers)) if (!['connection', 'transfer-encoding', 'keep-alive'].includes(k)) h[k] = v;
      res.writeHead(ur.statusCode, h);
      ur.pipe(res);
    });
    up.on('error', () => { res.destroy(); });
    req.pipe(up);
    // The router dropped the request (reset its HTTP/2 stream, or closed its connection) before
    // the reply ended.
    let ended = false;
    const gone = () => { if (!ended) { ended = true; stats.reset++; up.destroy(); } };
    if (res.stream) {
      res.stream.on('close', () => { if (res.stream.rstCode) gone(); });
    } else {
      res.on('finish', () => { ended = true; });
      res.on('close', gone);
    }
  });
  const sockets = new Set();
  server.on('secureConnection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  front.url = `https://127.0.0.1:${server.address().port}`;
  front.stop = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return front;
}

function post(router, body) {
  return fetch(router.baseURL + '/chat/completions', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify(Object.assign({ model: 'gpt-4o', messages: MSG, stream: true }, body)),
  });
}

async function stream(router, body) {
  const r = await post(router, body);
  const events = await readSSE(r);
  return { status: r.status, headers: r.headers, events, last: events.length ? events[events.length - 1].data : undefined };
}

describe('HTTPS providers', { skip: FRONT !== 'lighttpd' && 'the provider side: runs behind the lighttpd front' }, () => {
  let front;
  let stack;
  before(async () => {
    front = await startFront();
    // One responder, so that its calls share the engine's connections; the openai provider is
    // the TLS front, trusted through its certificate alone (the CA bundle is not read).
    stack = await startStack({
      procs: 1,
      threads: 8,
      env: { OPENAI_BASE_URL: `${front.url}/openai/v1` },
      config: (t) => t.replace('ca_file = "";', `ca_file = "${front.cert}";`).replace(/max_threads = \d+;/, 'max_threads = 64;'),
    });
    front.target = stack.fake.url;
  });
  after(async () => {
    if (stack) await stack.stop();
    if (front) await front.stop();
  });

  it('40 concurrent streams over TLS, event by event; a second round reuses the connections', async () => {
    const n = 40;
    assert.equal((await stream(stack.router, {})).status, 200);
    front.clear();
    await stack.fake.script('openai', Array.from({ length: n }, () => ({ chunk_delay_ms: 100 })));
    const t0 = Date.now();
    let results = await Promise.all(Array.from({ length: n }, () => stream(stack.router, {})));
    const first = front.stats.sessions;
    await stack.fake.script('openai', Array.from({ length: n }, () => ({ chunk_delay_ms: 100 })));
    results = results.concat(await Promise.all(Array.from({ length: n }, () => stream(stack.router, {}))));
    const second = front.stats.sessions - first;
    console.log(`# tls: ${n} streams at once: ${first} new TLS connection(s), then ${second} for ${n} more; protocols ${JSON.stringify(front.stats.protocols)}; ${Date.now() - t0} ms`);
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.equal(r.last, '[DONE]');
      // Event by event: the content arrived spread over the call, not at its end.
      const content = r.events.filter((e) => e.data && e.data !== '[DONE]' && /"content":"[^"]/.test(e.data));
      assert.ok(content.length >= 3);
      assert.ok(content[content.length - 1].t - content[0].t >= 150, 'events spread over time');
    }
    assert.deepEqual(front.stats.protocols, { 'http/1.1': 2 * n });
    assert.ok(first <= n, `${first} new TLS connections for ${n} calls at once`);
    assert.ok(second < n / 2, `${second} new TLS connections for the next ${n}: the engine keeps them`);
    for (const r of results) {
      const row = await stack.router.row(r.headers.get('x-request-id'));
      assert.equal(row.status, 200);
      assert.equal(row.provider, 'openai');
    }
  });

  it('a client that stops reading holds back no other call', async () => {
    front.clear();
    // A stream far larger than what the router buffers for a call, to a client that reads
    // nothing: its transfer is paused once its lighttpd and socket buffers are full.
    await stack.fake.script('openai', [{ hostile: { kind: 'endless', chunk: 'x'.repeat(4000) + ' ', max_ms: 60000 } }]);
    const stuck = await post(stack.router, {});
    assert.equal(stuck.status, 200);
    await sleep(1500);
    // Meanwhile other calls stream at their pace.
    const n = 10;
    await stack.fake.script('openai', Array.from({ length: n }, () => ({ chunk_delay_ms: 100 })));
    const t0 = Date.now();
    const results = await Promise.all(Array.from({ length: n }, () => stream(stack.router, {})));
    const took = Date.now() - t0;
    console.log(`# tls: ${n} calls beside a paused one took ${took} ms`);
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.equal(r.last, '[DONE]');
    }
    assert.ok(took < 5000 * SLOW, `the other calls took ${took} ms`);
    // The client leaves: the router drops that request at the front.
    const resetBefore = front.stats.reset;
    await stuck.body.cancel();
    await waitFor(() => front.stats.reset > resetBefore, 10000 * SLOW, 'the paused request to be dropped');
  });

  it('a client that leaves ends its upstream request at once; the next call is served', async () => {
    front.clear();
    await stack.fake.script('openai', [{ chunk_delay_ms: 300, text: Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ') }]);
    const ac = new AbortController();
    const r = await fetch(stack.router.baseURL + '/chat/completions', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o', messages: MSG, stream: true }), signal: ac.signal,
    });
    const reader = r.body.getReader();
    await reader.read();
    const tAbort = Date.now();
    ac.abort();
    await waitFor(() => front.stats.reset >= 1, 5000 * SLOW, 'the request to be dropped');
    const delay = Date.now() - tAbort;
    assert.ok(delay < 2000 * SLOW, `upstream request dropped ${delay} ms after the client left`);
    const next = await stream(stack.router, {});
    assert.equal(next.status, 200);
    assert.equal(next.last, '[DONE]');
  });
});
