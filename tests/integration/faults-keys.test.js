// Agents' keys through every fault of the database: keys made before the fault keep working for
// concurrent requests (never a 401 or a 503 because of the database), a key revoked before it
// stays refused, an unknown key is refused where the key snapshot answers, new responders (kill -9
// during the fault) accept the keys, and the router never swaps the database for an empty one.
// Each fault is induced for real; afterwards the database is restored and checked.
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync, execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const { ROUTER_BIN, CAPS, FRONT, startStack, smallTmpfs, waitFor, sleep, SLOW } = require('./lib/harness');

const MSG = [{ role: 'user', content: 'hello' }];
// Keys alone are under test here: calls whose rows nothing can take (a read-only or removed data
// directory under plain CGI) are served (storage.when_unrecorded), not refused with 503
// request_log_unavailable as by default; faults-rows.test.js covers that side.
const FAST = (t) => t.replace('busy_timeout_ms = 5000;', 'busy_timeout_ms = 300;').replace('when_unrecorded = "refuse";', 'when_unrecorded = "serve";');
const ROOT_ONLY = process.getuid && process.getuid() !== 0 && 'needs root (chattr, mount)';

function cli(router, args) {
  const r = spawnSync(ROUTER_BIN, args, { env: router.env, encoding: 'utf8', timeout: 30000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function post(router, key) {
  const r = await fetch(router.baseURL + '/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: MSG }),
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch (e) { json = undefined; }
  return { status: r.status, text, json };
}

// tries > 1: right after a restore the router's own work (a replay, a checkpoint) may hold the
// write lock or the space a moment; the command says so and an operator runs it again.
function newKey(router, agent, tries = 1) {
  let made;
  for (let i = 0; i < tries; i++) {
    made = cli(router, ['keys', 'create', '--agent', agent]);
    if (made.status === 0) break;
    assert.match(made.stderr, /could not store the key \(.+\); nothing was stored, run it again/);
    console.log(`# keys create failed, run again: ${made.stderr.trim().split('\n')[0]}`);
    spawnSync('sleep', ['1']);
  }
  assert.equal(made.status, 0, made.stderr);
  return made.stdout.trim();
}

// Keys made before the fault: two valid ones, one revoked, and a well-formed key nobody made.
function makeKeys(router) {
  const keys = { valid: newKey(router, 'devops_agent'), valid2: newKey(router, 'kb_manager'), revoked: newKey(router, 'sales_agent') };
  const rv = cli(router, ['keys', 'revoke', keys.revoked.slice(4, 16)]);
  assert.equal(rv.status, 0, rv.stderr);
  keys.unknown = 'lrk_Zz9Zz9Zz9Zz9_' + 'q'.repeat(32);
  return keys;
}

// Every process that will serve has seen the keys (each request may land on any of them).
async function warm(router, keys) {
  for (let i = 0; i < 6; i++) {
    const r = await post(router, keys[i % 2 ? 'valid2' : 'valid']);
    assert.equal(r.status, 200, r.text);
  }
}

// Concurrent requests with the valid keys: every one 200. Then the revoked and the unknown key.
// Returns the statuses seen, for the figures.
async function checkKeys(router, keys, { unknown = true, label }) {
  const all = await Promise.all(Array.from({ length: 12 }, (_, i) => post(router, keys[i % 2 ? 'valid2' : 'valid'])));
  const statuses = all.map((r) => r.status);
  const bad = all.filter((r) => r.status !== 200);
  assert.equal(bad.length, 0, `${label}: valid keys refused: ${statuses.join(',')} ${bad[0] && bad[0].text}`);
  const rv = await post(router, keys.revoked);
  assert.equal(rv.status, 401, `${label}: revoked key: ${rv.text}`);
  assert.match(rv.json.error.message, /revoked/);
  if (unknown) {
    const un = await post(router, keys.unknown);
    assert.equal(un.status, 401, `${label}: unknown key: ${un.text}`);
    assert.equal(un.json.error.code, 'invalid_api_key');
  }
  return statuses;
}

// kill -9 of every responder, then service from new ones (lighttpd respawns at once, mod_fcgid
// on the next request; plain CGI starts a new process for every request anyway).
async function killResponders(router) {
  if (!CAPS.persistent) return;
  const pids = router.responderPids();
  for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch (e) { /* gone */ } }
  await waitFor(async () => {
    await fetch(router.baseURL + '/models').catch(() => {});
    const p = router.responderPids();
    return p.length >= 1 && p.every((x) => !pids.includes(x));
  }, 10000 * SLOW, 'new responders');
}

// A consistent copy of the database, for the restore.
function backup(router) {
  const bak = path.join(router.work, 'llm_logs.db.bak');
  execFileSync('sqlite3', [router.dbPath, `.timeout 5000`, `VACUUM INTO '${bak}'`]);
  return bak;
}

function removeDb(db) {
  for (const ext of ['', '-wal', '-shm']) fs.rmSync(db + ext, { force: true, recursive: true });
}

function restoreFrom(router, bak) {
  removeDb(router.dbPath);
  fs.copyFileSync(bak, router.dbPath);
}

// After the restore: the keys work, a key made now works at once, the database is sound.
async function afterRestore(router, keys, label) {
  await waitFor(async () => (await post(router, keys.valid)).status === 200, 15000 * SLOW, `${label}: service after the restore`);
  await checkKeys(router, keys, { label: `${label} (restored)` });
  const fresh = newKey(router, 'hr_agent', 3);
  const r = await post(router, fresh);
  assert.equal(r.status, 200, `${label}: a key made after the restore: ${r.text}`);
  assert.equal(router.db('PRAGMA integrity_check')[0].integrity_check, 'ok');
  assert.ok(!router.errorLog().includes(keys.valid.slice(17)), 'no key in the log');
}

// One fault: keys before it, the fault, concurrent requests, a restart, the restore.
async function runFault(t, { label, config, prepare, setup, induce, restore, duringRestart = true, expectDown }) {
  const stack = await startStack({ auth: true, prepare, config: (c) => FAST(config ? config(c) : c) });
  const router = stack.router;
  const ctx = { router };
  try {
    if (setup) await setup(ctx);
    const keys = makeKeys(router);
    await warm(router, keys);
    // Known before the fault: every responder refreshes its table within a second, idle or not.
    await sleep(1100);
    ctx.bak = backup(router);
    await induce(ctx);
    await sleep(1200);   // a refresh (every second) has met the fault
    if (expectDown) {
      await expectDown(ctx, keys);
    } else {
      await checkKeys(router, keys, { label });
      if (duringRestart) {
        await killResponders(router);
        await checkKeys(router, keys, { label: `${label}, new responders` });
      }
    }
    await restore(ctx);
    await afterRestore(router, keys, label);
  } finally {
    if (ctx.cleanup) ctx.cleanup();
    await stack.stop().catch((e) => { if (!/sanitizer/.test(e.message)) return; throw e; });
  }
}

describe('agents\' keys through database faults', () => {
  it('garbage written over the database file', async (t) => {
    await runFault(t, {
      label: 'garbage',
      induce: ({ router }) => {
        fs.writeFileSync(router.dbPath + '.garbage', Buffer.alloc(16384, 0x5a));
        fs.renameSync(router.dbPath + '.garbage', router.dbPath);
        for (const ext of ['-wal', '-shm']) fs.rmSync(router.dbPath + ext, { force: true });
      },
      restore: (ctx) => {
        // Never overwritten by the router: still the garbage.
        assert.equal(fs.readFileSync(ctx.router.dbPath).subarray(0, 16).toString('latin1'), 'Z'.repeat(16));
        assert.match(ctx.router.errorLog(), /not an SQLite database \(replaced by another file\?\): restore it/);
        restoreFrom(ctx.router, ctx.bak);
      },
    });
  });

  it('the file corrupted in place (every page but the first)', async (t) => {
    await runFault(t, {
      label: 'corrupted',
      induce: ({ router }) => {
        execFileSync('sqlite3', [router.dbPath, '.timeout 5000', 'PRAGMA wal_checkpoint(TRUNCATE)']);
        const size = fs.statSync(router.dbPath).size;
        const fd = fs.openSync(router.dbPath, 'r+');
        fs.writeSync(fd, Buffer.alloc(size - 4096, 0x5a), 0, size - 4096, 4096);
        fs.closeSync(fd);
      },
      restore: (ctx) => restoreFrom(ctx.router, ctx.bak),
    });
  });

  it('a directory in place of the database file', async (t) => {
    await runFault(t, {
      label: 'directory',
      induce: ({ router }) => { removeDb(router.dbPath); fs.mkdirSync(router.dbPath); },
      restore: (ctx) => { assert.ok(fs.statSync(ctx.router.dbPath).isDirectory()); restoreFrom(ctx.router, ctx.bak); },
    });
  });

  it('the database file removed: no empty database takes its place', async (t) => {
    await runFault(t, {
      label: 'removed',
      induce: ({ router }) => removeDb(router.dbPath),
      restore: (ctx) => {
        assert.ok(!fs.existsSync(ctx.router.dbPath), 'the router did not create a new database');
        assert.match(ctx.router.errorLog(), /database file .*llm_logs\.db is missing but .* is left from an earlier one/);
        restoreFrom(ctx.router, ctx.bak);
      },
    });
  });

  it('the data directory renamed away and back: nothing created, nothing nested', async (t) => {
    await runFault(t, {
      label: 'directory renamed',
      induce: ({ router }) => {
        const dir = path.dirname(router.dbPath);
        fs.renameSync(dir, dir + '.off');
      },
      expectDown: async ({ router }, keys) => {
        const dir = path.dirname(router.dbPath);
        if (FRONT === 'lighttpd') {
          // The responders remember the keys; an unknown key cannot be told from one made since
          // their last refresh: 503, not 401.
          await checkKeys(router, keys, { label: 'directory renamed', unknown: false });
          const un = await post(router, keys.unknown);
          assert.equal(un.status, 503, un.text);
          assert.equal(un.json.error.code, 'keys_unavailable');
        } else if (CAPS.persistent) {
          // mod_fcgid starts processes for concurrent requests as they come: those born during
          // the outage have nothing to verify with (503); the others remember. Never a 401.
          const all = await Promise.all(Array.from({ length: 12 }, () => post(router, keys.valid)));
          assert.ok(all.every((r) => r.status === 200 || (r.status === 503 && r.text.includes(dir))), all.map((r) => r.status).join(','));
          assert.ok(all.some((r) => r.status === 200), all.map((r) => r.status).join(','));
        }
        // A process with no memory of the keys (plain CGI, or a responder restarted now) cannot
        // verify a key: 503 naming the directory, never 401.
        await killResponders(router);
        const all = await Promise.all(Array.from({ length: 6 }, () => post(router, keys.valid)));
        for (const r of all) {
          assert.equal(r.status, 503, r.text);
          assert.equal(r.json.error.code, 'keys_unavailable');
          assert.ok(r.json.error.message.includes(dir), r.json.error.message);
        }
        assert.ok(!fs.existsSync(dir), 'the router did not create the data directory');
      },
      restore: ({ router }) => {
        const dir = path.dirname(router.dbPath);
        assert.ok(!fs.existsSync(dir), 'the router did not create the data directory');
        fs.renameSync(dir + '.off', dir);
        assert.ok(!fs.existsSync(path.join(dir, path.basename(dir) + '.off')), 'no nesting');
      },
    });
  });

  it('a write lock held by another sqlite3 process', async (t) => {
    await runFault(t, {
      label: 'locked',
      induce: async (ctx) => {
        ctx.holder = spawn('sqlite3', [ctx.router.dbPath], { stdio: ['pipe', 'ignore', 'ignore'] });
        ctx.holder.stdin.write('.timeout 1000\nBEGIN EXCLUSIVE;\nINSERT INTO model_health (model) VALUES (\'lock-holder\');\n');
        ctx.cleanup = () => { try { ctx.holder.kill('SIGKILL'); } catch (e) { /* gone */ } };
        await sleep(300);
      },
      restore: async (ctx) => {
        ctx.holder.stdin.end('ROLLBACK;\n.quit\n');
        await new Promise((r) => ctx.holder.once('exit', r));
      },
    });
  });

  it('a read-only database (chmod, or chattr +i as root)', async (t) => {
    await runFault(t, {
      label: 'read-only',
      induce: (ctx) => {
        const db = ctx.router.dbPath;
        ctx.files = [db, db + '-wal', db + '-shm'].filter((f) => fs.existsSync(f));
        if (process.getuid() === 0) {
          execFileSync('chattr', ['+i', ...ctx.files]);
          ctx.cleanup = () => spawnSync('chattr', ['-i', ...ctx.files]);
        } else {
          for (const f of ctx.files) fs.chmodSync(f, 0o444);
          fs.chmodSync(path.dirname(db), 0o555);
          ctx.cleanup = () => { fs.chmodSync(path.dirname(db), 0o755); for (const f of ctx.files) fs.chmodSync(f, 0o644); };
        }
      },
      restore: (ctx) => { ctx.cleanup(); ctx.cleanup = null; },
    });
  });

  it('a read-only bind mount of the data directory', { skip: ROOT_ONLY }, async (t) => {
    await runFault(t, {
      label: 'read-only mount',
      induce: (ctx) => {
        const dir = path.dirname(ctx.router.dbPath);
        execFileSync('mount', ['--bind', dir, dir]);
        execFileSync('mount', ['-o', 'remount,ro,bind', dir]);
        ctx.cleanup = () => spawnSync('umount', ['-l', dir]);
      },
      restore: (ctx) => { ctx.cleanup(); ctx.cleanup = null; },
    });
  });

  it('a full disk (a small tmpfs)', { skip: ROOT_ONLY }, async (t) => {
    await runFault(t, {
      label: 'full disk',
      config: (c) => c.replace('db_path = "data/llm_logs.db";', 'db_path = "small/llm_logs.db";'),
      // Room for the database and its WAL at their working size (the WAL is reused in place, up
      // to the checkpointer's cap), so that the disk is full only once the filler is in.
      prepare: smallTmpfs('4m'),
      setup: (ctx) => {
        const small = path.join(ctx.router.work, 'small');
        ctx.router.dbPath = path.join(small, 'llm_logs.db');
        ctx.small = small;
        ctx.cleanup = () => spawnSync('umount', ['-l', small]);
      },
      induce: (ctx) => {
        const free = () => { const s = fs.statfsSync(ctx.small); return s.bavail * s.bsize; };
        assert.ok(free() > 1024 * 1024, `room left before the fault: ${free()} bytes`);
        try { execFileSync('dd', ['if=/dev/zero', `of=${path.join(ctx.small, 'filler')}`, 'bs=4k', 'count=2000'], { stdio: 'ignore' }); } catch (e) { /* full: the point */ }
        assert.equal(free(), 0, 'the filler took what was left');
      },
      restore: (ctx) => {
        fs.rmSync(path.join(ctx.small, 'filler'));
        const s = fs.statfsSync(ctx.small);
        assert.ok(s.bavail * s.bsize > 1024 * 1024, 'room again after the restore');
      },
    });
  });
});

describe('the key snapshot and the first start', () => {
  it('a revocation holds from the next request; a new key works at once', async () => {
    const stack = await startStack({ auth: true });
    const router = stack.router;
    try {
      const key = newKey(router, 'devops_agent');
      assert.equal((await post(router, key)).status, 200);
      const snap = fs.readFileSync(path.join(path.dirname(router.dbPath), 'llm_keys.snapshot'), 'utf8');
      assert.ok(!snap.includes(key.slice(17)), 'no secret in the snapshot');
      assert.ok(snap.includes(key.slice(4, 16)), `the id ${key.slice(4, 16)} is in the snapshot; its ids: ${snap.split('\n').map((l) => l.split(' ')[0]).join(' ')}`);
      assert.equal(fs.statSync(path.join(path.dirname(router.dbPath), 'llm_keys.snapshot')).mode & 0o777, 0o600);
      assert.equal(cli(router, ['keys', 'revoke', key.slice(4, 16)]).status, 0);
      const r = await post(router, key);
      assert.equal(r.status, 401);
      // A key inserted behind the CLI's back (no snapshot change) is refused within a second
      // once revoked the same way.
      const other = newKey(router, 'kb_manager');
      assert.equal((await post(router, other)).status, 200);
      router.db(`UPDATE api_keys SET revoked_ms = 1 WHERE id = '${other.slice(4, 16)}'`);
      await waitFor(async () => (await post(router, other)).status === 401, 2500 * SLOW, 'the revocation');
    } finally { await stack.stop(); }
  });

  it('the router creates the database on a first start only; llm-router init starts over with the snapshot\'s keys', async () => {
    const stack = await startStack({ auth: true });
    const router = stack.router;
    try {
      const key = newKey(router, 'devops_agent');
      assert.equal((await post(router, key)).status, 200);
      removeDb(router.dbPath);
      for (let i = 0; i < 4; i++) assert.equal((await post(router, key)).status, 200);
      assert.ok(!fs.existsSync(router.dbPath), 'not recreated by the router');
      // Nor by the command line's other commands.
      const list = cli(router, ['keys', 'list']);
      assert.equal(list.status, 1);
      assert.match(list.stderr, /is missing but .*llm_keys\.snapshot is left from an earlier one/);
      assert.ok(!fs.existsSync(router.dbPath));
      // A deliberate fresh start keeps the keys.
      const init = cli(router, ['init']);
      assert.equal(init.status, 0, init.stderr);
      assert.match(init.stdout, /a new database .* with the 1 key\(s\) of the snapshot/);
      await waitFor(async () => (await post(router, key)).status === 200, 5000 * SLOW, 'service on the new database');
      assert.equal(router.db('SELECT count(*) AS n FROM api_keys')[0].n, 1);
      assert.equal(cli(router, ['init']).status, 0, 'init again: nothing to do');
    } finally { await stack.stop(); }
  });
});
