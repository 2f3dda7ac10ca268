// GET /metrics and GET /v1/router/stats: Prometheus' text format behind the admin key, totals that
// match the request log whichever responder answers the scrape, counters that never go down
// (a responder killed and restarted, a retention prune), and requests refused before routing
// (an unknown path, a missing key) visible in the log and in the counters.
'use strict';
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const { ROUTER_BIN, CAPS, SLOW, startStack, sleep, waitFor } = require('./lib/harness');
const { jsonlRow } = require('./lib/fallback-rows');

const ADMIN = 'admin-metrics-key-0123456789';
const AUTH = { authorization: `Bearer ${ADMIN}` };

// Parses Prometheus' text exposition format (version 0.0.4) strictly: every line is a comment
// (# HELP / # TYPE with a family named once, before its samples) or a sample
// name{label="value",...} value; returns { families: {name: {type, help}}, samples: [...] }.
function parseExposition(text) {
  assert.ok(text.endsWith('\n'), 'the text ends with a newline');
  const families = {};
  const samples = [];
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
  const sampleRe = new RegExp(`^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*)?\\})? (-?(?:[0-9.e+-]+|\\+Inf|NaN))$`);
  const familyOf = (n) => families[n] ? n : ['_bucket', '_sum', '_count'].map((s) => n.endsWith(s) && n.slice(0, -s.length)).find((f) => f && families[f]);
  for (const line of text.slice(0, -1).split('\n')) {
    let m;
    if ((m = /^# HELP (\S+) (.+)$/.exec(line))) {
      assert.ok(!families[m[1]] || !families[m[1]].help, `one HELP for ${m[1]}`);
      families[m[1]] = Object.assign(families[m[1]] || {}, { help: m[2] });
    } else if ((m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      assert.ok(!families[m[1]] || !families[m[1]].type, `one TYPE for ${m[1]}`);
      families[m[1]] = Object.assign(families[m[1]] || {}, { type: m[2] });
    } else {
      m = sampleRe.exec(line);
      assert.ok(m, `a sample line: ${JSON.stringify(line)}`);
      const fam = familyOf(m[1]);
      assert.ok(fam, `${m[1]} has its HELP and TYPE before it`);
      const labels = {};
      for (const l of (m[2] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1');
      samples.push({ name: m[1], family: fam, labels, value: Number(m[3] === '+Inf' ? Infinity : m[3]) });
    }
  }
  return { families, samples };
}

const sum = (samples, name, pred = () => true) => samples.filter((s) => s.name === name && pred(s.labels)).reduce((a, s) => a + s.value, 0);

async function scrape(router, headers = AUTH) {
  const r = await fetch(router.baseURL.replace(/\/v1$/, '') + '/metrics', { headers });
  const text = await r.text();
  return { status: r.status, type: r.headers.get('content-type'), text };
}

async function chat(router, body) {
  const r = await fetch(router.baseURL + '/chat/completions', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, id: r.headers.get('x-request-id'), text };
}

const MSG = [{ role: 'user', content: 'hello' }];

describe('GET /metrics', () => {
  let stack;
  before(async () => {
    stack = await startStack({ procs: 2, env: { LLM_ROUTER_ADMIN_KEY: ADMIN } });
  });
  after(async () => { await stack.stop(); });

  it('needs the admin key: 401 in the OpenAI envelope without it or with a wrong one, and the refusal is logged', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong' }]) {
      const r = await scrape(stack.router, headers);
      assert.equal(r.status, 401);
      const body = JSON.parse(r.text);
      assert.equal(body.error.code, 'invalid_api_key');
      assert.ok(!r.text.includes(ADMIN));
    }
    const rows = await waitFor(() => { const x = stack.router.db("SELECT * FROM request_log WHERE path = '/metrics'"); return x.length >= 2 && x; }, 5000 * SLOW, 'the refusals\' rows');
    for (const row of rows) {
      assert.equal(row.status, 401);
      assert.equal(row.method, 'GET');
      assert.equal(row.error_code, 'invalid_api_key');
    }
    assert.ok(!fs.readFileSync(stack.router.dbPath).includes(Buffer.from(ADMIN)), 'the admin key is in no row');
  });

  it('totals match the request log whichever responder answers, and every line parses', async () => {
    // Traffic over both responders at once: several models, a stream, a refused request, a
    // fallback (the first model fails with a 500) and a path the router lacks.
    // gpt-4o -> claude-sonnet-4-5 (conf/llm-router.conf), before the concurrent calls.
    await stack.fake.script('openai', [{ status: 500, body: { error: { message: 'scripted 500', type: 'server_error' } } }]);
    const fb = await chat(stack.router, { model: 'gpt-4o', messages: MSG });
    assert.equal(fb.status, 200, fb.text);
    // Under mod_fcgid a process takes one request at a time, and a second process is started only
    // when a request finds every process busy: one slow call (1.5 s) in the burst makes sure of it.
    await stack.fake.script('deepseek', [{ delay_ms: 1500 }]);
    const calls = [];
    for (let i = 0; i < 24; i++) {
      const model = ['gpt-4o-mini', 'claude-haiku-4-5', 'gemini-2.0-flash', 'deepseek-chat'][i % 4];
      calls.push(chat(stack.router, { model, messages: MSG, stream: i % 3 === 0, stream_options: i % 3 === 0 ? { include_usage: true } : undefined }));
    }
    calls.push(chat(stack.router, { model: 'no-such-model', messages: MSG }));
    const answers = await Promise.all(calls);
    assert.ok(answers.filter((a) => a.status === 200).length >= 24, JSON.stringify(answers.map((a) => a.status)));
    const unknown = await fetch(stack.router.baseURL + '/audio/speech', { method: 'POST', body: '{}' });
    assert.equal(unknown.status, 404);
    await unknown.text();
    // Rows are written after the answers have gone: wait for all 27 (the first test's refused
    // scrapes are rows too, and counting them would let the last two rows of this one be missed).
    let have = 0;
    const total = await waitFor(() => { have = stack.router.db("SELECT count(*) AS n FROM request_log WHERE path IS NOT '/metrics'")[0].n; return have >= 27 && have; }, 5000 * SLOW, 'the rows')
      .catch((e) => { throw new Error(`${e.message}: ${have} of 27 rows in the database; the router's error log ends: ${stack.router.errorLog().slice(-2000)}`); });
    if (CAPS.persistent) await waitFor(() => stack.router.responderPids().length >= 2, 5000 * SLOW, 'two responder processes');

    const fromLog = stack.router.db(`SELECT count(*) AS n, sum(coalesce(input_tokens, 0)) AS input, sum(coalesce(output_tokens, 0)) AS output,
      sum(cost_nusd) AS cost, sum(status >= 400) AS errors FROM request_log WHERE path IS NOT '/metrics'`)[0];
    const byModel = stack.router.db('SELECT model, count(*) AS n, sum(coalesce(output_tokens, 0)) AS output FROM request_log WHERE model IS NOT NULL GROUP BY model');
    // Several scrapes, answered by whichever responder takes them: the same totals each time.
    const seen = [];
    for (let i = 0; i < 6; i++) {
      const r = await scrape(stack.router);
      assert.equal(r.status, 200, r.text);
      assert.match(r.type, /^text\/plain; version=0\.0\.4/);
      // A mismatch names the scrape and shows the log's figures and the scrape's own lines.
      try {
        const { families, samples } = parseExposition(r.text);
        for (const [name, type] of [['llm_router_requests_total', 'counter'], ['llm_router_tokens_total', 'counter'],
          ['llm_router_cost_usd_total', 'counter'], ['llm_router_budget_limit_usd', 'gauge'], ['llm_router_budget_spent_usd', 'gauge'],
          ['llm_router_fallbacks_total', 'counter'], ['llm_router_upstream_errors_total', 'counter'],
          ['llm_router_request_duration_seconds', 'histogram'], ['llm_router_time_to_first_token_seconds', 'histogram'],
          ['llm_router_inflight_requests', 'gauge'], ['llm_router_model_cooling_down', 'gauge'],
          ['llm_router_request_log_fallback_rows', 'gauge'], ['llm_router_database_up', 'gauge']]) {
          assert.equal(families[name] && families[name].type, type, name);
          assert.ok(families[name].help.length > 10, `${name} has a HELP text`);
        }
        const requests = sum(samples, 'llm_router_requests_total', (l) => l.endpoint !== '/metrics');
        assert.equal(requests, fromLog.n);
        assert.equal(sum(samples, 'llm_router_requests_total', (l) => Number(l.status) >= 400 && l.endpoint !== '/metrics'), fromLog.errors);
        assert.equal(sum(samples, 'llm_router_requests_total', (l) => l.endpoint === 'other' && l.status === '404'), 1);
        assert.equal(sum(samples, 'llm_router_tokens_total', (l) => l.direction === 'input'), fromLog.input);
        assert.equal(sum(samples, 'llm_router_tokens_total', (l) => l.direction === 'output'), fromLog.output);
        assert.ok(Math.abs(sum(samples, 'llm_router_cost_usd_total') - fromLog.cost / 1e9) < 1e-9);
        for (const m of byModel) {
          assert.equal(sum(samples, 'llm_router_request_duration_seconds_count', (l) => l.model === m.model), m.n);
          const inf = samples.find((s) => s.name === 'llm_router_request_duration_seconds_bucket' && s.labels.model === m.model && s.labels.le === '+Inf');
          assert.equal(inf && inf.value, m.n);
          // Buckets are cumulative and in increasing le.
          const buckets = samples.filter((s) => s.name === 'llm_router_request_duration_seconds_bucket' && s.labels.model === m.model);
          for (let k = 1; k < buckets.length; k++) {
            assert.ok(Number(buckets[k].labels.le === '+Inf' ? Infinity : buckets[k].labels.le) > Number(buckets[k - 1].labels.le));
            assert.ok(buckets[k].value >= buckets[k - 1].value);
          }
        }
        assert.ok(sum(samples, 'llm_router_time_to_first_token_seconds_count') >= 8, 'streamed calls have a time to first token');
        assert.equal(sum(samples, 'llm_router_fallbacks_total', (l) => l.from === 'gpt-4o' && l.to === 'claude-sonnet-4-5'), 1);
        assert.ok(sum(samples, 'llm_router_upstream_errors_total', (l) => l.provider === 'openai' && l.code === '500') >= 1);
        assert.equal(sum(samples, 'llm_router_database_up'), 1);
        assert.equal(sum(samples, 'llm_router_request_log_fallback_rows'), 0);
        assert.equal(sum(samples, 'llm_router_budget_limit_usd', (l) => l.tier === 'T1'), 50);
        const spentT1 = stack.router.db("SELECT spent_nusd FROM budget_spend WHERE scope = 'tier:T1' AND day = date('now')")[0].spent_nusd;
        assert.ok(Math.abs(sum(samples, 'llm_router_budget_spent_usd', (l) => l.tier === 'T1') - spentT1 / 1e9) < 1e-9);
        assert.ok(samples.some((s) => s.name === 'llm_router_model_cooling_down' && s.labels.model === 'gpt-4o-mini' && s.value === 0));
        seen.push(requests);
      } catch (e) {
        // Node's reporter prints the stack, written when the error was made: both get the context.
        const more = `\nscrape ${i}: the log ${JSON.stringify(fromLog)}, now ${JSON.stringify(stack.router.db("SELECT path, status, model, count(*) AS n FROM request_log GROUP BY 1, 2, 3"))}; the scrape: ${r.text.split('\n').filter((l) => /^llm_router_(requests_total|tokens_total|database_up|request_log_fallback_rows|fallbacks_total)/.test(l)).join(' | ')}`;
        e.message += more;
        e.stack += more;
        throw e;
      }
    }
    assert.deepEqual(seen, seen.map(() => total), `requests counted by each scrape, against the ${total} rows waited for`);
  });

  it('counters never go down: a responder killed and restarted, then a retention prune', async (t) => {
    const read = async () => {
      const r = await scrape(stack.router);
      assert.equal(r.status, 200);
      const { samples } = parseExposition(r.text);
      const m = {};
      for (const s of samples) {
        if (!/_total$|_bucket$|_sum$|_count$/.test(s.name)) continue;
        m[`${s.name}${JSON.stringify(s.labels)}`] = s.value;
      }
      return m;
    };
    const noneDown = (a, b, when) => {
      for (const [k, v] of Object.entries(a)) assert.ok(k in b && b[k] >= v, `${when}: ${k} ${v} -> ${b[k]}`);
    };
    for (let i = 0; i < 6; i++) assert.equal((await chat(stack.router, { model: 'gpt-4o-mini', messages: MSG })).status, 200);
    const before = await read();
    if (CAPS.persistent) {
      const pids = stack.router.responderPids();
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      await waitFor(async () => (await fetch(stack.router.baseURL + '/models')).status === 200, 20000 * SLOW, 'a new responder');
    }
    const afterRestart = await read();
    noneDown(before, afterRestart, 'after the restart');
    // Rows older than retention_days (90): imported from the fallback file, counted, then pruned.
    const old = Date.now() - 120 * 86400000;
    fs.writeFileSync(stack.router.jsonlPath, Array.from({ length: 40 }, (_, i) => jsonlRow(i, old + i, 'metricsold')).join('\n') + '\n');
    const gauge = parseExposition((await scrape(stack.router)).text).samples.find((s) => s.name === 'llm_router_request_log_fallback_rows');
    assert.equal(gauge.value, 40, 'the rows waiting in the fallback file');
    const replay = spawnSync(ROUTER_BIN, ['replay'], { env: stack.router.env, encoding: 'utf8', timeout: 60000 });
    assert.equal(replay.status, 0, replay.stderr);
    const withOld = await read();
    noneDown(afterRestart, withOld, 'after the import');
    const key = 'llm_router_requests_total{"endpoint":"/v1/chat/completions","model":"gpt-4o-mini","provider":"openai","tier":"T1","status":"200"}';
    assert.equal(withOld[key] - afterRestart[key], 40);
    const rowsBefore = stack.router.db('SELECT count(*) AS n FROM request_log')[0].n;
    const prune = spawnSync(ROUTER_BIN, ['prune'], { env: stack.router.env, encoding: 'utf8', timeout: 60000 });
    assert.equal(prune.status, 0, prune.stderr);
    assert.equal(stack.router.db('SELECT count(*) AS n FROM request_log')[0].n, rowsBefore - 40, 'the old rows are gone');
    const afterPrune = await read();
    noneDown(withOld, afterPrune, 'after the prune');
    // New rows after the prune are counted once each.
    for (let i = 0; i < 3; i++) assert.equal((await chat(stack.router, { model: 'gpt-4o-mini', messages: MSG })).status, 200);
    await sleep(300);
    const last = await read();
    assert.equal(last[key] - afterPrune[key], 3);
    t.diagnostic(`gpt-4o-mini T1 200: ${before[key]} before, ${afterRestart[key]} after the restart, ${withOld[key]} with 40 old rows, ${afterPrune[key]} after the prune, ${last[key]} after 3 more`);
  });

  it('GET /v1/router/stats: the dashboard\'s figures, behind the same key', async () => {
    const no = await fetch(stack.router.baseURL + '/router/stats');
    assert.equal(no.status, 401);
    await no.text();
    const r = await fetch(stack.router.baseURL + '/router/stats', { headers: AUTH });
    assert.equal(r.status, 200);
    const s = await r.json();
    assert.equal(s.object, 'router.stats');
    assert.deepEqual(s.tiers.map((x) => x.tier), ['T1', 'T2', 'T3', 'T4']);
    assert.equal(s.tiers[0].budget_usd, 50);
    assert.equal(s.hours.length, 24);
    assert.ok(s.hours[23].requests >= 27);
    assert.ok(s.models.some((m) => m.model === 'claude-haiku-4-5' && m.requests >= 6 && m.latency_p50_ms > 0 && m.ttft_p50_ms > 0));
    const rows = stack.router.db('SELECT count(*) AS n FROM request_log')[0].n;
    assert.equal(s.recent.length, Math.min(50, rows));
    assert.ok(s.recent[0].ts_ms >= s.recent[s.recent.length - 1].ts_ms);
    assert.ok(s.recent.some((x) => x.path === '/v1/chat/completions' && x.status === 200));
  });
});

describe('/metrics while the database is locked or gone', () => {
  it('a write lock held past busy_timeout_ms: 200 with the counters as last counted and database_up 0; a vanished database: 200, database_up 0', async () => {
    const stack = await startStack({ env: { LLM_ROUTER_ADMIN_KEY: ADMIN }, config: (c) => c.replace(/busy_timeout_ms = \d+;/, 'busy_timeout_ms = 500;') });
    try {
      for (let i = 0; i < 4; i++) assert.equal((await chat(stack.router, { model: 'gpt-4o-mini', messages: MSG })).status, 200);
      await waitFor(() => stack.router.db('SELECT count(*) AS n FROM request_log')[0].n >= 4, 5000 * SLOW, 'the rows');
      const counted = parseExposition((await scrape(stack.router)).text).samples;
      assert.equal(sum(counted, 'llm_router_requests_total', (l) => l.model === 'gpt-4o-mini'), 4);
      // Two more rows, then another process takes the write lock and keeps it.
      for (let i = 0; i < 2; i++) assert.equal((await chat(stack.router, { model: 'gpt-4o-mini', messages: MSG })).status, 200);
      await waitFor(() => stack.router.db('SELECT count(*) AS n FROM request_log')[0].n >= 6, 5000 * SLOW, 'the rows');
      const holder = spawn('sqlite3', [stack.router.dbPath], { stdio: ['pipe', 'ignore', 'ignore'] });
      holder.stdin.write(".timeout 5000\nBEGIN IMMEDIATE;\nINSERT INTO model_health (model) VALUES ('lock-holder');\n");
      await sleep(300);
      try {
        const t0 = Date.now();
        const r = await scrape(stack.router);
        const ms = Date.now() - t0;
        assert.equal(r.status, 200);
        const { samples } = parseExposition(r.text);
        assert.equal(sum(samples, 'llm_router_database_up'), 0);
        assert.equal(sum(samples, 'llm_router_requests_total', (l) => l.model === 'gpt-4o-mini'), 4, 'the counters as last counted');
        assert.ok(ms < 5000 * SLOW, `the scrape waited ${ms} ms`);
      } finally {
        holder.stdin.end('ROLLBACK;\n.quit\n');
        await new Promise((r) => (holder.exitCode !== null ? r() : holder.once('exit', r)));
      }
      const after = parseExposition((await scrape(stack.router)).text).samples;
      assert.equal(sum(after, 'llm_router_database_up'), 1);
      assert.equal(sum(after, 'llm_router_requests_total', (l) => l.model === 'gpt-4o-mini'), 6, 'the rows are counted once the lock is gone');
      // The database file moved away: the figures that need no database, and database_up 0.
      fs.renameSync(stack.router.dbPath, stack.router.dbPath + '.away');
      const gone = await scrape(stack.router);
      assert.equal(gone.status, 200);
      const g = parseExposition(gone.text);
      assert.equal(sum(g.samples, 'llm_router_database_up'), 0);
      assert.equal(g.families.llm_router_requests_total.type, 'counter');
      fs.renameSync(stack.router.dbPath + '.away', stack.router.dbPath);
    } finally {
      await stack.stop();
    }
  });
});

describe('requests refused before routing are logged', () => {
  it('an unknown path, a wrong method, a missing agent key: a row each with method, path and status', async () => {
    const stack = await startStack({ auth: true });
    try {
      const base = stack.router.baseURL;
      const a = await fetch(base + '/audio/speech', { method: 'POST', body: '{}' });
      const b = await fetch(base + '/chat/completions', { method: 'GET' });
      const c = await fetch(base + '/chat/completions', { method: 'POST', body: JSON.stringify({ model: 'gpt-4o-mini', messages: MSG }) });
      const long = '/v1/' + 'x'.repeat(1000);
      const d = await fetch(base.replace(/\/v1$/, '') + long);
      for (const r of [a, b, c, d]) await r.text();
      assert.deepEqual([a.status, b.status, c.status, d.status], [404, 405, 401, 404]);
      const rows = await waitFor(() => { const x = stack.router.db('SELECT method, path, status, error_code FROM request_log ORDER BY id'); return x.length >= 4 && x; }, 5000 * SLOW, 'the rows');
      assert.deepEqual(rows.slice(0, 3), [
        { method: 'POST', path: '/v1/audio/speech', status: 404, error_code: 'unknown_url' },
        { method: 'GET', path: '/v1/chat/completions', status: 405, error_code: 'method_not_allowed' },
        { method: 'POST', path: '/v1/chat/completions', status: 401, error_code: 'missing_api_key' },
      ]);
      assert.equal(rows[3].status, 404);
      assert.equal(rows[3].path, long.slice(0, 256), 'a long path is kept cut to 256 bytes');
    } finally {
      await stack.stop();
    }
  });
});

module.exports = { parseExposition };
