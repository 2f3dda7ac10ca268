// Budget alerts are delivered: the budget_alerts row is the alert until the webhook has taken it.
// Whatever process recorded it - a FastCGI responder, a plain CGI process that exits after its
// response, a responder stopped with SIGTERM - the alert reaches the webhook (here the fake
// provider's /_hook, scripted to be slow or to fail), and `llm-router replay` (cron on shared
// hosting) sends what no process sent. A CGI process closes its response before that work, so a
// client never waits for a webhook.
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync, execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { ROOT, ROUTER_BIN, FRONT, SLOW, TEST_KEYS, startFake, startStack, startServe, stopServe, readSSE, waitFor, sleep } = require('./lib/harness');

const MSG = [{ role: 'user', content: 'hello' }];
const HOOK = (t) => t.replace('webhook_url = "";', 'webhook_url = "@FAKE_URL@/_hook";');

// T2's budget is tiny and its warn level 1 %: the first call's spend crosses it.
function alertStack() {
  return startStack({
    auth: true,
    config: (t) => HOOK(t
      .replace('auth_mode = "key";', 'auth_mode = "header";')
      .replace(/warn_percent = \d+;/, 'warn_percent = 1;')
      .replace(/(T2 = \{\n\s*name = "Operational";\n\s*daily_budget_usd = )[0-9.]+;/, '$10.0005;')),
  });
}

function sqlite(db, sql) {
  const out = execFileSync('sqlite3', ['-json', '-cmd', '.timeout 5000', db, sql], { encoding: 'utf8' });
  return out.trim() ? JSON.parse(out) : [];
}

describe('budget alerts are delivered', () => {
  it('a stream ends before a slow webhook (3 s) has answered, and the webhook is still delivered', async (t) => {
    const stack = await alertStack();
    try {
      await stack.fake.hookScript([{ delay_ms: 3000 }]);
      const t0 = Date.now();
      const r = await fetch(stack.router.baseURL + '/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-agent-name': 'growth_analyst' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: MSG, max_tokens: 20, stream: true }),
      });
      assert.equal(r.status, 200);
      const events = await readSSE(r);
      const streamMs = Date.now() - t0;
      assert.equal(events[events.length - 1].data, '[DONE]');
      // The alert was recorded by this very request.
      const rows = stack.router.db("SELECT * FROM budget_alerts WHERE scope = 'tier:T2'");
      assert.equal(rows.length, 1);
      // The webhook answers 3 s after it is called: a stream that waited for it would take longer.
      const hook = await waitFor(async () => (await stack.fake.hooks()).find((h) => h.body.scope === 'tier:T2' && (h.done !== null || h.aborted !== null)), 15000 * SLOW, 'the webhook to be answered');
      t.diagnostic(`stream ${streamMs} ms; webhook called ${hook.t} ms, answered ${hook.done} ms, hung up ${hook.aborted} ms (fake's clock)`);
      assert.ok(streamMs < 2500, `the stream took ${streamMs} ms (the webhook takes 3000 ms)`);
      assert.equal(hook.aborted, null, `the router hung up on the webhook after ${hook.aborted - hook.t} ms, before its answer`);
      assert.ok(hook.done - hook.t >= 2900, `the webhook answered after ${hook.done - hook.t} ms`);
      assert.equal(hook.body.type, 'budget_alert');
      assert.equal(hook.body.level_percent, 1);
      assert.equal(hook.body.alert_id, `${rows[0].day}/tier:T2/1`);
      // The row says it was sent, once.
      const sent = await waitFor(() => stack.router.db("SELECT * FROM budget_alerts WHERE scope = 'tier:T2' AND sent_ms IS NOT NULL")[0], 5000 * SLOW, 'the row marked sent');
      assert.equal(sent.attempts, 1);
      assert.equal(sent.last_error, null);
      await sleep(500);
      assert.equal((await stack.fake.hooks()).filter((h) => h.body.scope === 'tier:T2').length, 1, 'sent once');
    } finally { await stack.stop(); }
  });

  it('a webhook that fails is tried again with a backoff until it takes the alert', async () => {
    const stack = await alertStack();
    try {
      await stack.fake.hookScript([{ status: 500 }]);
      const r = await fetch(stack.router.baseURL + '/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-agent-name': 'growth_analyst' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: MSG, max_tokens: 20 }),
      });
      assert.equal(r.status, 200);
      const failed = await waitFor(() => stack.router.db("SELECT * FROM budget_alerts WHERE scope = 'tier:T2' AND last_error IS NOT NULL")[0], 10000 * SLOW, 'the failed attempt recorded');
      assert.match(failed.last_error, /HTTP 500/);
      assert.equal(failed.sent_ms, null);
      // A plain CGI process exits after its request: the next request's process (or cron) sends
      // the retry once it is due; a responder's sender thread does it by itself.
      await sleep(2500);
      if (FRONT === 'apache-cgi') {
        const again = await fetch(stack.router.baseURL + '/models');
        assert.equal(again.status, 200);
      }
      const sent = await waitFor(() => stack.router.db("SELECT * FROM budget_alerts WHERE scope = 'tier:T2' AND sent_ms IS NOT NULL")[0], 10000 * SLOW, 'the retry to be sent');
      assert.equal(sent.attempts, 2);
      const hooks = (await stack.fake.hooks()).filter((h) => h.body.scope === 'tier:T2');
      assert.deepEqual(hooks.map((h) => h.status), [500, 200]);
      assert.deepEqual(hooks.map((h) => h.body.attempt), [1, 2]);
      const log = stack.router.errorLog();
      assert.match(log, /budget alert webhook \(tier:T2, 1 % on [0-9-]+\) failed on attempt 1: the webhook answered HTTP 500; next try in 2 s/);
      assert.ok(!log.includes(stack.fake.url + '/_hook'), 'the webhook URL (it may carry a token) is not logged');
    } finally { await stack.stop(); }
  });
});

// The router as its own FastCGI responder and as the command-line tool, on one work directory.
function workDir(fake) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-alerts-'));
  fs.mkdirSync(path.join(work, 'conf'));
  const conf = HOOK(fs.readFileSync(path.join(ROOT, 'conf/llm-router.conf'), 'utf8')).split('@FAKE_URL@').join(fake.url);
  fs.writeFileSync(path.join(work, 'conf/llm-router.conf'), conf);
  const env = { PATH: process.env.PATH, LLM_ROUTER_CONFIG: path.join(work, 'conf/llm-router.conf'), LLM_ROUTER_HOME: work, OPENAI_API_KEY: TEST_KEYS.OPENAI_API_KEY };
  // A first start: `init` creates the data directory and the database.
  const r = spawnSync(ROUTER_BIN, ['init'], { env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { work, env, db: path.join(work, 'data/llm_logs.db') };
}

// An alert recorded (by some process) and not sent yet.
function queueAlert(db, scope, level) {
  const now = Date.now();
  const day = new Date(now).toISOString().slice(0, 10);
  sqlite(db, `INSERT INTO budget_alerts (day, scope, level, ts_ms, spent_nusd, limit_nusd, next_try_ms) VALUES ('${day}', '${scope}', ${level}, ${now}, 14000000000, 15000000000, ${now})`);
  return day;
}

describe('the outbox outlives the process that recorded the alert', { skip: FRONT !== 'lighttpd' && 'runs once (no web server)' }, () => {
  it('a responder stopped with SIGTERM leaves its unsent alert; the next responder sends it', async () => {
    const fake = await startFake();
    const { work, env, db } = workDir(fake);
    try {
      queueAlert(db, 'tier:T2', 90);
      await fake.hookScript([{ status: 503 }]);
      let served = await startServe(work, env);
      await waitFor(() => sqlite(db, 'SELECT * FROM budget_alerts WHERE last_error IS NOT NULL')[0], 10000 * SLOW, 'the first attempt');
      const t = Date.now();
      await stopServe(served, work);
      assert.ok(Date.now() - t < 3000 * SLOW, `the responder took ${Date.now() - t} ms to stop`);
      let row = sqlite(db, 'SELECT * FROM budget_alerts')[0];
      assert.equal(row.sent_ms, null, 'not sent: it stays in the outbox');
      assert.equal(row.attempts, 1);
      assert.match(row.last_error, /HTTP 503/);
      served = await startServe(work, env);
      row = await waitFor(() => sqlite(db, 'SELECT * FROM budget_alerts WHERE sent_ms IS NOT NULL')[0], 10000 * SLOW, 'the next responder to send it');
      assert.equal(row.attempts, 2);
      // A responder stopped in the middle of a POST finishes it first.
      await fake.hookScript([{ delay_ms: 1500 }]);
      queueAlert(db, 'tier:T2', 100);
      // The sender looks for rows other processes left every 10 s.
      await waitFor(async () => (await fake.hooks()).some((h) => h.body.level_percent === 100), 15000 * SLOW, 'the 100 % POST to start');
      await stopServe(served, work);
      row = sqlite(db, 'SELECT * FROM budget_alerts WHERE level = 100')[0];
      assert.notEqual(row.sent_ms, null, 'the POST in progress finished and was recorded');
      const hooks = await fake.hooks();
      assert.deepEqual(hooks.map((h) => [h.body.level_percent, h.status]), [[90, 503], [90, 200], [100, 200]]);
      assert.ok(hooks.every((h) => h.done !== null));
    } finally {
      await fake.stop();
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  it('`llm-router replay` sends the alerts no process sent, once', async () => {
    const fake = await startFake();
    const { work, env, db } = workDir(fake);
    try {
      const day = queueAlert(db, 'agent:sales_agent', 100);
      // Recorded with no webhook configured: never sent.
      sqlite(db, `INSERT INTO budget_alerts (day, scope, level, ts_ms) VALUES ('${day}', 'tier:T3', 90, ${Date.now()})`);
      // Older than 24 h: no longer sent.
      sqlite(db, `INSERT INTO budget_alerts (day, scope, level, ts_ms, next_try_ms) VALUES ('2020-01-01', 'tier:T4', 90, 1577836800000, 1577836800000)`);
      let r = spawnSync(ROUTER_BIN, ['replay'], { env, encoding: 'utf8', timeout: 30000 });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /budget alerts: 1 sent to budget\.webhook_url\n/);
      const hooks = await fake.hooks();
      assert.equal(hooks.length, 1);
      assert.equal(hooks[0].body.scope, 'agent:sales_agent');
      assert.equal(hooks[0].body.alert_id, `${day}/agent:sales_agent/100`);
      assert.equal(hooks[0].body.budget_usd, 15);
      assert.notEqual(sqlite(db, "SELECT sent_ms FROM budget_alerts WHERE scope = 'agent:sales_agent'")[0].sent_ms, null);
      r = spawnSync(ROUTER_BIN, ['replay'], { env, encoding: 'utf8', timeout: 30000 });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /budget alerts: 0 sent/);
      assert.equal((await fake.hooks()).length, 1, 'sent once');
    } finally {
      await fake.stop();
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
});

describe('plain CGI closes the response before its background work', { skip: FRONT !== 'apache-cgi' && 'plain CGI only' }, () => {
  it('a stream ends before the process imports a 20,000-row fallback file, which is imported once', async (t) => {
    const stack = await startStack({ config: (t) => t.replace('busy_timeout_ms = 5000;', 'busy_timeout_ms = 300;') });
    try {
      const post = (stream) => fetch(stack.router.baseURL + '/chat/completions', {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: MSG, stream }),
      });
      // One row goes to the fallback file while another process holds the write lock.
      await (await post(false)).text();
      const holder = require('child_process').spawn('sqlite3', [stack.router.dbPath], { stdio: ['pipe', 'ignore', 'ignore'] });
      holder.stdin.write(".timeout 1000\nBEGIN IMMEDIATE;\nINSERT INTO model_health (model) VALUES ('lock-holder');\n");
      await sleep(300);
      await (await post(false)).text();
      holder.stdin.end('ROLLBACK;\n.quit\n');
      await new Promise((r) => holder.once('exit', r));
      // The fallback file, or what a replay that met the lock left of it.
      const dir = path.dirname(stack.router.jsonlPath);
      const files = () => fs.readdirSync(dir).filter((f) => f.startsWith(path.basename(stack.router.jsonlPath)));
      await waitFor(() => files().length > 0 || stack.router.db("SELECT count(*) AS n FROM request_log")[0].n >= 2, 5000 * SLOW, 'the fallback row');
      assert.ok(files().length > 0, 'the row of the locked request went to the fallback file');
      const line = fs.readFileSync(path.join(dir, files()[0]), 'utf8').split('\n')[0];
      const id = JSON.parse(line).request_id;
      const N = 20000;
      const lines = [];
      for (let i = 0; i < N; i++) lines.push(line.split(id).join(`chatcmpl-fill${String(i).padStart(8, '0')}`));
      fs.writeFileSync(stack.router.jsonlPath, lines.join('\n') + '\n');
      const before = stack.router.db('SELECT count(*) AS n FROM request_log')[0].n;
      const t0 = Date.now();
      const r = await post(true);
      const events = await readSSE(r);
      const streamMs = Date.now() - t0;
      assert.equal(events[events.length - 1].data, '[DONE]');
      const atEnd = stack.router.db("SELECT count(*) AS n FROM request_log WHERE request_id LIKE 'chatcmpl-fill%'")[0].n;
      const done = await waitFor(() => { const n = stack.router.db("SELECT count(*) AS n FROM request_log WHERE request_id LIKE 'chatcmpl-fill%'")[0].n; return n === N ? Date.now() - t0 : 0; }, 60000 * SLOW, 'the fallback rows imported');
      t.diagnostic(`stream ${streamMs} ms (${atEnd} of ${N} rows imported then); import done at ${done} ms`);
      assert.ok(atEnd < N, `the stream ended after ${streamMs} ms, when the import (done at ${done} ms) had already finished`);
      assert.ok(stack.router.db('SELECT count(*) AS n FROM request_log')[0].n >= before + N + 1, 'the stream\'s row too');
      assert.equal(stack.router.db('SELECT count(*) AS n FROM request_log')[0].n, stack.router.db('SELECT count(DISTINCT request_id) AS n FROM request_log')[0].n, 'no row twice');
    } finally { await stack.stop(); }
  });
});
