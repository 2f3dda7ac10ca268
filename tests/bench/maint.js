#!/usr/bin/env node
// maint.js - what the router's maintenance (JSONL replay, retention) costs the requests running
// beside it, measured in one run: request latency before, during and after each job.
//
//   node tests/bench/maint.js            (ROUTER_BIN=... for another binary; lighttpd, 1 responder)
//
// Phase "replay": a responder under a steady load (RATE requests/s, open loop: a request is sent
// every 1000/RATE ms whatever the others do) gets a JSONL fallback file of ROWS rows in the
// router's own format (one attempt each, a cost settled into the budget ledger) moved into place
// after BASE_S seconds; the job runs from the moment the file is claimed (renamed to
// .replay-PID-ts) until the moved file is gone, and every row must then be in the database once.
// Phase "prune": a database already holding ROWS request rows (and their attempts) 100 days old
// (storage.retention_days is 90) under the same load; retention runs a minute after the
// responder starts; the job runs from the first old row deleted until the "retention:" log line.
// Latency is reported for the requests that ended before the job, ran during it, or started after (p50, p99, max,
// count; ms, client side through lighttpd), with the job's duration.
//
// Environment: ROWS (1000000), RATE (100), BASE_S (10, seconds of load before the replay),
// AFTER_S (5), PHASES ("replay prune").
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
const { execFile, execFileSync } = require('child_process');
const { startStack, sleep, waitFor } = require('../integration/lib/harness');
const { writeJsonl } = require('../integration/lib/fallback-rows');

const ROWS = Number(process.env.ROWS || 1000000);
const RATE = Number(process.env.RATE || 100);
const BASE_S = Number(process.env.BASE_S || 10);
const AFTER_S = Number(process.env.AFTER_S || 5);
const PHASES = (process.env.PHASES || 'replay prune').split(/\s+/).filter(Boolean);
const DAY = 86400000;

// ROWS request rows and their attempts, 100 days old, straight into the database (and out of
// the WAL, so that the load before the prune does not pay for checkpointing them).
function fillOld(db, rows) {
  const t0 = Date.now() - 100 * DAY;
  const sql = `
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${rows})
    INSERT INTO request_log (request_id, ts_start_ms, ts_end_ms, tier, requested_model, model, provider,
      upstream_model, status, finish_reason, input_tokens, output_tokens, cost_nusd, cost_source, latency_ms, attempts)
    SELECT 'chatcmpl-old' || i, ${t0} + i, ${t0} + i + 40, 'T1', 'gpt-4o-mini', 'gpt-4o-mini', 'openai',
      'gpt-4o-mini-2024-07-18', 200, 'stop', 12, 9, 7200, 'pricing', 41.5, 1 FROM n;
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${rows})
    INSERT INTO request_attempts (request_id, attempt, ts_start_ms, model, provider, outcome, status, latency_ms)
    SELECT 'chatcmpl-old' || i, 1, ${t0} + i, 'gpt-4o-mini', 'openai', 'ok', 200, 38.2 FROM n;
    PRAGMA wal_checkpoint(TRUNCATE);`;
  execFileSync('sqlite3', ['-cmd', '.timeout 20000', db, sql]);
}

// Open-loop load: one request every 1000/RATE ms until stop(); each sample is {t, ms, status}.
function load(router) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const url = new URL(router.baseURL + '/chat/completions');
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
  const samples = [];
  let inflight = 0;
  let stopped = false;
  const one = () => {
    const t = Date.now();
    const t0 = process.hrtime.bigint();
    inflight++;
    const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => { inflight--; samples.push({ t, ms: Number(process.hrtime.bigint() - t0) / 1e6, status: res.statusCode }); });
    });
    req.on('error', () => { inflight--; samples.push({ t, ms: Number(process.hrtime.bigint() - t0) / 1e6, status: 0 }); });
    req.end(body);
  };
  const start = Date.now();
  let sent = 0;
  const tick = () => {
    if (stopped) return;
    const due = Math.floor(((Date.now() - start) * RATE) / 1000);
    while (sent < due) { one(); sent++; }
    setTimeout(tick, 2);
  };
  tick();
  return {
    samples,
    async stop() {
      stopped = true;
      await waitFor(() => inflight === 0, 120000, 'the last requests');
      agent.destroy();
    },
  };
}

function stats(xs) {
  if (!xs.length) return { n: 0, p50: NaN, p99: NaN, max: NaN, bad: 0 };
  const v = xs.map((s) => s.ms).sort((a, b) => a - b);
  const q = (p) => v[Math.min(v.length - 1, Math.floor(p * v.length))];
  return { n: v.length, p50: q(0.5), p99: q(0.99), max: v[v.length - 1], bad: xs.filter((s) => s.status !== 200).length };
}

function report(name, samples, from, to) {
  // Before: ended before the job began; during: running at some moment of the job; after: sent
  // once it was over.
  const rows = [['before', samples.filter((s) => s.t + s.ms < from)], [`during ${name}`, samples.filter((s) => s.t + s.ms >= from && s.t <= to)], ['after', samples.filter((s) => s.t > to)]];
  const f = (x) => (Number.isNaN(x) ? '-' : x.toFixed(1));
  console.log(`\n${name}: ${ROWS} rows in ${((to - from) / 1000).toFixed(1)} s (${RATE} req/s offered)`);
  console.log('| requests | n | p50 ms | p99 ms | max ms | non-200 |');
  console.log('|---|---|---|---|---|---|');
  for (const [label, xs] of rows) {
    const s = stats(xs);
    console.log(`| ${label} | ${s.n} | ${f(s.p50)} | ${f(s.p99)} | ${f(s.max)} | ${s.bad} |`);
  }
}

function sqlite(db, sql) {
  return new Promise((resolve) => execFile('sqlite3', ['-cmd', '.timeout 5000', db, sql], (e, out) => resolve(e ? '' : out.trim())));
}

async function replayPhase() {
  const stack = await startStack({ procs: 1, threads: 8 });
  const router = stack.router;
  const dir = path.dirname(router.jsonlPath);
  const ready = path.join(router.work, 'ready.jsonl');
  try {
    writeJsonl(ready, ROWS);
    const l = load(router);
    await sleep(BASE_S * 1000);
    fs.mkdirSync(dir, { recursive: true });
    fs.renameSync(ready, router.jsonlPath);
    const moved = () => fs.readdirSync(dir).some((f) => f.includes('.replay-'));
    let from = 0;
    await waitFor(() => { if (!fs.existsSync(router.jsonlPath) || moved()) from = from || Date.now(); return from; }, 60000, 'the replay to start');
    await waitFor(() => !moved() && !fs.existsSync(router.jsonlPath), 900000, 'the replay to end');
    const to = Date.now();
    await sleep(AFTER_S * 1000);
    await l.stop();
    report('replay', l.samples, from, to);
    const n = await sqlite(router.dbPath, "SELECT count(*), count(DISTINCT request_id) FROM request_log WHERE request_id LIKE 'chatcmpl-maint%'");
    console.log(`rows of the file in the database (count, distinct): ${n}`);
  } finally { await stack.stop(); }
}

async function prunePhase() {
  const stack = await startStack({ procs: 1, threads: 8 });
  const router = stack.router;
  const started = Date.now();
  try {
    // The database exists once the first row is in.
    const r = await fetch(router.baseURL + '/chat/completions', { method: 'POST', body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }) });
    await router.row(r.headers.get('x-request-id'));
    fillOld(router.dbPath, ROWS);
    console.log(`\n${ROWS} old rows written in ${((Date.now() - started) / 1000).toFixed(1)} s after the start`);
    const l = load(router);
    const cutoff = Date.now() - 90 * DAY;
    const minsql = 'SELECT coalesce((SELECT min(ts_start_ms) FROM request_attempts), 0) || \',\' || coalesce((SELECT min(ts_start_ms) FROM request_log), 0)';
    const first = await sqlite(router.dbPath, minsql);
    let from = 0;
    await waitFor(async () => { const m = await sqlite(router.dbPath, minsql); if (m && m !== first) from = Date.now(); return from; }, 180000, 'the prune to start');
    await waitFor(() => /retention: \d+ request-log row/.test(router.errorLog()), 900000, 'the prune to end');
    const to = Date.now();
    await sleep(AFTER_S * 1000);
    await l.stop();
    report('prune', l.samples, from, to);
    console.log(`old rows left: ${await sqlite(router.dbPath, `SELECT count(*) FROM request_log WHERE ts_start_ms < ${cutoff}`)}`);
  } finally { await stack.stop(); }
}

(async () => {
  if (PHASES.includes('replay')) await replayPhase();
  if (PHASES.includes('prune')) await prunePhase();
})().catch((e) => { console.error(e); process.exit(1); });
