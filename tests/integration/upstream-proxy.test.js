// An HTTP proxy between the router and its providers (upstream.proxy), with credentials: a
// forward proxy in Node that asks for Basic credentials (Proxy-Authorization) and passes each
// request on to the fake provider. The router gives libcurl the proxy without its credentials and
// the decoded user name and password apart (README "Client strings are bounded"), so nothing the
// router answers, logs or stores can quote them.
'use strict';
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('http');
const { FRONT, startStack } = require('./lib/harness');

const USER = 'proxy-user';
const PASSWORD = 'p@ss/#w0rd:1';    // every character that must be percent-encoded in a URL

async function startProxy() {
  const proxy = { seen: [], password: PASSWORD };
  const server = http.createServer((req, res) => {
    const auth = req.headers['proxy-authorization'] || '';
    proxy.seen.push({ method: req.method, url: req.url, auth });
    if (auth !== 'Basic ' + Buffer.from(`${USER}:${proxy.password}`).toString('base64')) {
      res.writeHead(407, { 'proxy-authenticate': 'Basic realm="test"', 'content-type': 'text/plain' });
      res.end('proxy credentials refused');
      return;
    }
    const headers = Object.assign({}, req.headers);
    delete headers['proxy-authorization'];
    delete headers['proxy-connection'];
    const up = http.request(req.url, { method: req.method, headers }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.port = server.address().port;
  proxy.stop = () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); });
  return proxy;
}

function chat(router) {
  return fetch(router.baseURL + '/chat/completions', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] }),
  });
}

// Nothing the router produced holds the credentials, in any spelling.
function assertNoCredentials(text, what) {
  for (const s of [PASSWORD, encodeURIComponent(PASSWORD), 'p%40ss', 'w0rd', USER]) {
    assert.ok(!text.includes(s), `${what} holds "${s}": ${text.slice(0, 2000)}`);
  }
}

describe('a proxy with credentials', { skip: FRONT !== 'lighttpd' && 'the provider side: runs behind the lighttpd front' }, () => {
  let proxy;
  let stack;
  before(async () => {
    proxy = await startProxy();
    const url = `http://${USER}:${encodeURIComponent(PASSWORD)}@127.0.0.1:${proxy.port}`;
    stack = await startStack({ procs: 1, config: (t) => t.replace('proxy = "";', `proxy = "${url}";`) });
  });
  after(async () => {
    if (stack) await stack.stop();
    if (proxy) await proxy.stop();
  });

  it('reaches the provider through the proxy, which gets the decoded credentials', async () => {
    proxy.seen.length = 0;
    const r = await chat(stack.router);
    const body = await r.text();
    assert.equal(r.status, 200, body);
    assert.equal(JSON.parse(body).object, 'chat.completion');
    assert.ok(proxy.seen.length >= 1, 'the call went through the proxy');
    assert.equal(proxy.seen[0].method, 'POST');
    assert.match(proxy.seen[0].url, /^http:\/\/127\.0\.0\.1:\d+\/openai\/v1\/chat\/completions$/);
    assert.equal(proxy.seen[0].auth, 'Basic ' + Buffer.from(`${USER}:${PASSWORD}`).toString('base64'));
  });

  it('a proxy that refuses them (407) or is gone: the answer, the log row and the error log never quote them', async () => {
    proxy.password = 'something else';
    const refused = await chat(stack.router);
    const text = await refused.text();
    assert.notEqual(refused.status, 200, text);
    assert.ok(JSON.parse(text).error, text);
    assertNoCredentials(text, 'the answer to a refused call');
    const row = await stack.router.row(refused.headers.get('x-request-id'));
    assertNoCredentials(JSON.stringify(row), 'its log row');
    await proxy.stop();
    const gone = await chat(stack.router);
    const goneText = await gone.text();
    assert.notEqual(gone.status, 200, goneText);
    assertNoCredentials(goneText, 'the answer when the proxy is gone');
    assertNoCredentials(JSON.stringify(await stack.router.row(gone.headers.get('x-request-id'))), 'its log row');
    assertNoCredentials(JSON.stringify(stack.router.db('SELECT * FROM request_attempts')), 'the attempts');
    assertNoCredentials(JSON.stringify(stack.router.db('SELECT * FROM model_health')), 'model health');
    assertNoCredentials(stack.router.errorLog(), 'the error log');
    proxy = null;
  });
});
