// Database faults never stall service nor lose a row. Each fault is induced for real while traffic
// flows through the web server (a write lock held by another sqlite3 process, a read-only data
// directory, garbage in place of the file, the directory renamed away, a full small tmpfs, kill -9
// of the responders), then the original is put back, the fallback is replayed, and every response
// the client got (200s and the router's own errors, by X-Request-Id) must have exactly one row,
// with PRAGMA integrity_check ok. Callers are anonymous (routing.auth_mode = "none", the harness's
// default): these tests are about rows, not keys.
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync, execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const { ROUTER_BIN, CAPS, FRONT, startStack, waitFor, sleep, SLOW } = require('./lib/harness');

const MSG = [{ role: 'user', content: 'hello' }];
const BUSY_MS = 2000;
const busy = (ms) => (c) => c.replace('busy_timeout_ms = 5000;', `busy_timeout_ms = ${ms};`);
const isRoot = process.getuid && process.getuid() === 0;

// One request; returns { status, id, ms, body }.
async function call(router, tag, extra = {}) {
  const t0 = Date.now();
  const r = await fetch(router.baseURL + '/chat/completions', {
    method: 'POST', body: JSON.stringify(Object.assign({ model: 'gpt-4o-mini', messages: MSG, metadata: { tag } }, extra)),
  });
  const body = await r.text();
  return { status: r.status, id: r.headers.get('x-request-id'), ms: Date.now() - t0, body, retryAfter: r.headers.get('retry-after') };
}

// Concurrent traffic until stop(): every answered request (any status, with a request id) is
// recorded in `answered`.
function traffic(router, n, tag) {
  const answered = [];
  const statuses = {};
  let stop = false;
  const loop = async () => {
    while (!stop) {
      try {
        const r = await call(router, tag);
        statuses[r.status] = (statuses[r.status] || 0) + 1;
        if (r.id) answered.push(r);
      } catch (e) { await sleep(20); /* a connection cut by a kill */ }
    }
  };
  const loops = Array.from({ length: n }, loop);
  return { answered, statuses, async stop() { stop = true; await Promise.all(loops); } };
}

// A write lock held by another process until release().
function holdLock(dbPath) {
  const holder = spawn('sqlite3', [dbPath], { stdio: ['pipe', 'ignore', 'ignore'] });
  holder.stdin.write('.timeout 5000\nBEGIN IMMEDIATE;\nINSERT INTO model_health (model) VALUES (\'lock-holder\');\n');
  return {
    async release() {
      holder.stdin.end('ROLLBACK;\n.quit\n');
      await new Promise((r) => (holder.exitCode !== null ? r() : holder.once('exit', r)));
    },
  };
}

function idsIn(router, ids) {
  const have = new Map();
  for (let i = 0; i < ids.length; i += 300) {
    const chunk = ids.slice(i, i + 300);
    for (const row of router.db(`SELECT request_id, count(*) AS n FROM request_log WHERE request_id IN (${chunk.map((x) => `'${x}'`).join(',')}) GROUP BY request_id`)) have.set(row.request_id, row.n);
  }
  return have;
}

// Every answered request has exactly one row (after the router's own import, else after
// `llm-router replay`), no request id twice, and the database is intact.
async function assertEveryRowOnce(router, answered, what) {
  const ids = [...new Set(answered.map((r) => r.id))];
  assert.equal(ids.length, answered.length, 'request ids are unique');
  if (!CAPS.persistent) await call(router, 'next');
  let have = new Map();
  await waitFor(() => { have = idsIn(router, ids); return have.size === ids.length; }, 15000 * SLOW, `every row of ${what} in SQLite`).catch(() => {});
  if (have.size !== ids.length) {
    spawnSync(ROUTER_BIN, ['replay'], { env: router.env, encoding: 'utf8' });
    have = idsIn(router, ids);
  }
  const missing = ids.filter((id) => !have.has(id));
  assert.deepEqual(missing.slice(0, 5), [], `${missing.length} of ${ids.length} answered requests have no row (${what})`);
  assert.ok([...have.values()].every((n) => n === 1), 'one row each');
  assert.equal(router.db('SELECT count(*) AS n FROM request_log')[0].n, router.db('SELECT count(DISTINCT request_id) AS n FROM request_log')[0].n, 'no twins');
  assert.equal(router.db('PRAGMA integrity_check')[0].integrity_check, 'ok');
}

describe('a held write lock costs at most one busy timeout', () => {
  it(`ten sequential requests under a 25 s lock finish in under two busy timeouts (${BUSY_MS} ms each)`, async () => {
    const stack = await startStack({ config: busy(BUSY_MS) });
    const { router } = stack;
    try {
      const warm = await call(router, 'warm');
      assert.equal(warm.status, 200, warm.body);
      const lock = holdLock(router.dbPath);
      await sleep(300);
      const t0 = Date.now();
      const during = [];
      for (let i = 0; i < 10; i++) during.push(await call(router, 'during'));
      const total = Date.now() - t0;
      console.log(`# ${FRONT}: 10 requests under a held lock took ${total} ms in total (${during.map((r) => r.ms).join(', ')})`);
      await lock.release();
      assert.ok(during.every((r) => r.status === 200), during.map((r) => r.status).join(','));
      assert.ok(total < 2 * BUSY_MS, `${total} ms for ten requests (busy_timeout_ms ${BUSY_MS})`);
      await assertEveryRowOnce(router, [warm, ...during], 'the lock');
    } finally { await stack.stop(); }
  });
});
