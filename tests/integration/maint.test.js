// Maintenance never holds up a request: a large JSONL fallback file is imported while requests
// run, and none of them waits for it; a database that cannot take rows during a replay leaves one
// moved file at most (each plain CGI request tries a replay), and every row is imported once.
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('child_process');
const fs = require('fs');
const path = require('path');
const { CAPS, SLOW, startStack, waitFor, sleep } = require('./lib/harness');
const { writeJsonl } = require('./lib/fallback-rows');

const BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] });

async function timed(router) {
  const t = Date.now();
  const r = await fetch(router.baseURL + '/chat/completions', { method: 'POST', body: BODY });
  await r.text();
  return { t, ms: Date.now() - t, status: r.status, id: r.headers.get('x-request-id') };
}

// The fallback file and the files replays moved aside.
function fallbackFiles(router) {
  const dir = path.dirname(router.jsonlPath);
  const base = path.basename(router.jsonlPath);
  if (!fs.existsSync(dir)) return { main: false, moved: 0 };
  const names = fs.readdirSync(dir);
  return { main: names.includes(base), moved: names.filter((f) => f.startsWith(base + '.replay-')).length };
}

const pct = (xs, p) => { const v = xs.map((x) => x.ms).sort((a, b) => a - b); return v[Math.min(v.length - 1, Math.floor(p * v.length))]; };

describe('maintenance beside the requests', () => {
  it('a 50,000-row fallback file is imported exactly once while requests run, none waiting for it', async (t) => {
    if (!CAPS.persistent) { t.skip('plain CGI has no maintenance thread: the replay runs after a request'); return; }
    const ROWS = 50000;
    const stack = await startStack({ threads: 4 });
    const router = stack.router;
    try {
      const ready = path.join(router.work, 'ready.jsonl');
      writeJsonl(ready, ROWS);
      // The usual latency, with the same four clients.
      const loop = async (until, out) => { while (!until()) out.push(await timed(router)); };
      const base = [];
      const baseEnd = Date.now() + 2000 * SLOW;
      await Promise.all([0, 1, 2, 3].map(() => loop(() => Date.now() > baseEnd, base)));
      fs.mkdirSync(path.dirname(router.jsonlPath), { recursive: true });
      fs.renameSync(ready, router.jsonlPath);
      // The responders' maintenance threads look every 5 s; the load runs until the import ends.
      const during = [];
      let done = false;
      let started = 0;
      const watch = waitFor(() => {
        const f = fallbackFiles(router);
        if (!f.main || f.moved) started = started || Date.now();
        return started && !f.main && !f.moved;
      }, 300000 * SLOW, 'the import to end').then(() => { done = true; });
      await Promise.all([0, 1, 2, 3].map(() => loop(() => done, during)));
      await watch;
      const overlapping = during.filter((s) => s.t + s.ms >= started);
      // Against the slowest usual request: a loaded machine's own hiccups are in both.
      const usual = Math.max(...base.map((s) => s.ms));
      const worst = Math.max(...overlapping.map((s) => s.ms));
      t.diagnostic(`usual p50 ${pct(base, 0.5)} ms p99 ${pct(base, 0.99)} max ${usual} ms; during the import (${overlapping.length} requests, ${Date.now() - started} ms): p50 ${pct(overlapping, 0.5)} p99 ${pct(overlapping, 0.99)} max ${worst} ms`);
      assert.ok(during.every((s) => s.status === 200), 'every request answered');
      assert.ok(overlapping.length >= 20, `${overlapping.length} requests ran during the import`);
      assert.ok(worst <= usual + 200 * SLOW, `the slowest request during the import took ${worst} ms (usually at most ${usual} ms)`);
      const [rows] = router.db("SELECT count(*) AS n, count(DISTINCT request_id) AS d FROM request_log WHERE request_id LIKE 'chatcmpl-maint%'");
      assert.deepEqual(rows, { n: ROWS, d: ROWS }, 'every row of the file once');
      // The requests' own rows, each once.
      const n = base.length + during.length;
      await waitFor(() => router.db("SELECT count(*) AS n FROM request_log WHERE request_id NOT LIKE 'chatcmpl-maint%'")[0].n === n, 5000 * SLOW, 'the rows of the requests');
      assert.equal(router.db("SELECT count(DISTINCT request_id) AS n FROM request_log WHERE request_id NOT LIKE 'chatcmpl-maint%'")[0].n, n);
      // Spend counted once: the ledger holds exactly the logged costs, and no reservation is left.
      const [ledger] = router.db("SELECT (SELECT sum(spent_nusd) FROM budget_spend WHERE scope = 'tier:T1') AS spent, (SELECT sum(cost_nusd) FROM request_log WHERE tier = 'T1') AS logged");
      assert.equal(ledger.spent, ledger.logged);
      assert.equal(router.db('PRAGMA integrity_check')[0].integrity_check, 'ok');
    } finally { await stack.stop(); }
  });

  it('a database locked through many requests leaves one moved file at most, then every row goes in once', async () => {
    const stack = await startStack({ config: (c) => c.replace('busy_timeout_ms = 5000;', 'busy_timeout_ms = 300;') });
    const router = stack.router;
    let most = 0;
    const sampler = setInterval(() => { most = Math.max(most, fallbackFiles(router).moved); }, 10);
    try {
      const first = await timed(router);
      assert.equal(first.status, 200);
      const holder = spawn('sqlite3', [router.dbPath], { stdio: ['pipe', 'ignore', 'ignore'] });
      holder.stdin.write('.timeout 1000\nBEGIN IMMEDIATE;\nINSERT INTO model_health (model) VALUES (\'lock-holder\');\n');
      await sleep(300);
      const ids = [];
      // Long enough for a responder's maintenance thread to try (every 5 s), and for plain CGI
      // a replay after each request.
      const end = Date.now() + 7000;
      while (Date.now() < end || ids.length < 10) {
        const r = await timed(router);
        assert.equal(r.status, 200);
        ids.push(r.id);
      }
      await sleep(1000);
      assert.ok(fallbackFiles(router).main || fallbackFiles(router).moved, 'rows went to the fallback file');
      holder.stdin.end('ROLLBACK;\n.quit\n');
      await new Promise((r) => holder.once('exit', r));
      // Plain CGI replays after a request; a responder's maintenance thread on its own.
      if (!CAPS.persistent) ids.push((await timed(router)).id);
      await waitFor(() => { const f = fallbackFiles(router); return !f.main && !f.moved; }, 20000 * SLOW, 'the fallback files to be imported');
      clearInterval(sampler);
      assert.ok(most <= 1, `${most} moved files at once during the outage`);
      const rows = router.db(`SELECT request_id, count(*) AS n FROM request_log WHERE request_id IN (${ids.map((i) => `'${i}'`).join(',')}) GROUP BY request_id`);
      assert.equal(rows.length, ids.length, 'every row of the outage in the database');
      assert.ok(rows.every((r) => r.n === 1), 'none twice');
    } finally {
      clearInterval(sampler);
      await stack.stop();
    }
  });
});
