// The log says what to do when the file system refuses the database: a -shm file left read-only
// (after a read-only outage SQLite's -shm keeps the mode it was created with), owned by another
// user, made immutable, or a full disk. The line names the file and the command that fixes it;
// the request itself still succeeds (its row goes to the fallback).
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync, execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { ROUTER_BIN, FRONT, SLOW, startStack, waitFor, within } = require('./lib/harness');

const MSG = [{ role: 'user', content: 'hello' }];
const ROOT_USER = process.getuid() === 0;

async function chat(router) {
  const r = await fetch(router.baseURL + '/chat/completions', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: MSG }),
  });
  await r.text();
  return r;
}

// A sqlite3 shell that keeps the database open (so its -shm stays) until release().
async function holdOpen(db) {
  const p = spawn('sqlite3', [db], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  p.stderr.on('data', (d) => { stderr += d; });
  // Answered: it has opened the database (and, as root, given the -shm its owner back). A
  // router process closing the database at that moment (the last connection checkpoints under
  // an exclusive lock) would make a shell without a busy timeout fail, and never answer.
  const answered = new Promise((resolve, reject) => {
    p.stdout.once('data', resolve);
    p.once('exit', (code) => reject(new Error(`sqlite3 exited (${code}): ${stderr}`)));
  });
  p.stdin.write('.timeout 10000\nSELECT count(*) FROM request_log;\n');
  await within(answered, 15000 * SLOW);
  if (stderr) throw new Error(`sqlite3: ${stderr}`);
  await waitFor(() => fs.existsSync(db + '-shm'), 5000 * SLOW, 'the -shm file');
  return { release: () => new Promise((r) => { p.once('exit', r); p.stdin.end(); }) };
}

// The plain CGI program run directly (the code apache-cgi runs), as another user when uid is set.
function cgiRequest(router, uid) {
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: MSG });
  const env = Object.assign({}, router.env, {
    GATEWAY_INTERFACE: 'CGI/1.1', REQUEST_METHOD: 'POST', SCRIPT_NAME: '/v1', PATH_INFO: '/chat/completions',
    REQUEST_URI: '/v1/chat/completions', SERVER_PROTOCOL: 'HTTP/1.1', CONTENT_TYPE: 'application/json',
    CONTENT_LENGTH: String(Buffer.byteLength(body)), REMOTE_ADDR: '127.0.0.1',
  });
  const r = spawnSync(ROUTER_BIN, [], { env, input: body, encoding: 'utf8', timeout: 30000 * SLOW, uid, gid: uid });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('the log names the file and the fix', () => {
  it('a -shm file left 0444: chmod (a user) or nothing to fix (root)', async () => {
    const stack = await startStack({ procs: 1, threads: 2 });
    const db = stack.router.dbPath;
    let holder;
    try {
      assert.equal((await chat(stack.router)).status, 200);
      holder = await holdOpen(db);
      fs.chmodSync(db + '-shm', 0o444);
      const esc = (x) => x.replace(/[.]/g, '\\.');
      const want = new RegExp(`the database cannot be written by this process; fix: ${esc(db)}-shm is not writable \\(mode 0444\\): chmod 0644 ${esc(db)}-shm`);
      if (FRONT === 'apache-cgi') {
        const r = await chat(stack.router);
        assert.equal(r.status, 200, 'the request still succeeds');
        const line = await waitFor(() => stack.router.errorLog().split('\n').find((l) => /the database cannot be written by this process/.test(l)), 10000 * SLOW, 'the diagnosis line');
        assert.match(line, want, line);
      } else {
        // Responders that have it mapped already go on writing; a process that opens it now
        // (here the same binary as plain CGI) gets it read-only, unless it runs as root.
        const r = cgiRequest(stack.router);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /"choices"/, 'the request still succeeds');
        if (ROOT_USER) assert.doesNotMatch(r.stderr, /cannot be written/, 'root may write a 0444 file: nothing to fix');
        else assert.match(r.stderr, want, r.stderr);
      }
    } finally {
      try { fs.chmodSync(db + '-shm', 0o644); } catch (e) { /* gone */ }
      if (holder) await holder.release();
      await stack.stop();
    }
  });

  it('a -shm file owned by root, and an immutable one', { skip: !ROOT_USER && 'needs root (the lighttpd set-up)' }, async (t) => {
    const stack = await startStack({ procs: 1, threads: 2 });
    const db = stack.router.dbPath;
    const data = path.dirname(db);
    const www = Number(execFileSync('id', ['-u', 'www-data'], { encoding: 'utf8' }).trim());
    let holder;
    try {
      assert.equal((await chat(stack.router)).status, 200);
      // The router runs as www-data (a web server's user); root left its -shm behind.
      for (const f of fs.readdirSync(data)) fs.chownSync(path.join(data, f), www, www);
      fs.chownSync(data, www, www);
      for (const d of [stack.router.work, path.dirname(stack.router.confPath)]) fs.chmodSync(d, 0o755);
      fs.chmodSync(stack.router.confPath, 0o644);
      holder = await holdOpen(db);
      fs.chownSync(db + '-shm', 0, 0);
      let r = cgiRequest(stack.router, www);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /"choices"/, 'the request still succeeds');
      const esc = (s) => s.replace(/[.]/g, '\\.');
      assert.match(r.stderr, new RegExp(`the database cannot be written by this process; fix: ${esc(db)}-shm is owned by root \\(mode 0644\\) and this router runs as www-data: chown www-data ${esc(db)}-shm`), r.stderr);
      assert.ok((r.stderr.match(/cannot be written/g) || []).length === 1, 'one line');
      // Immutable: even root cannot write it.
      fs.chownSync(db + '-shm', www, www);
      await holder.release();
      holder = null;
      holder = await holdOpen(db);
      assert.equal(spawnSync('chattr', ['+i', db + '-shm']).status, 0, 'chattr +i (ext4 here)');
      try {
        r = cgiRequest(stack.router);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stdout, /"choices"/);
        t.diagnostic(r.stderr.split('\n').find((l) => /immutable/.test(l)));
        assert.match(r.stderr, new RegExp(`${esc(db)}-shm has the immutable \\(or append-only\\) attribute: chattr -i -a ${esc(db)}-shm`), r.stderr);
      } finally { spawnSync('chattr', ['-i', db + '-shm']); }
    } finally {
      if (holder) await holder.release();
      await stack.stop();
    }
  });

  it('a data directory on a read-only mount says to remount it', { skip: !ROOT_USER && 'needs root (mount)' }, async (t) => {
    const stack = await startStack({ procs: 1, threads: 2 });
    const data = path.dirname(stack.router.dbPath);
    let mounted = false;
    try {
      assert.equal((await chat(stack.router)).status, 200);
      mounted = spawnSync('mount', ['--bind', '-o', 'ro', data, data]).status === 0;
      if (!mounted) return t.skip('no bind mounts here');
      // A process that opens it now (the same binary as plain CGI) cannot write it.
      const r = cgiRequest(stack.router);
      assert.equal(r.status, 0, r.stderr);
      // Neither the database nor the fallback beside it can take the row: the call is refused
      // rather than served unrecorded, and the log says why.
      assert.match(r.stdout, /^Status: 503/, 'nothing can record the call');
      assert.match(r.stdout, /"code":"request_log_unavailable"/);
      const line = r.stderr.split('\n').find((l) => /cannot be written/.test(l));
      t.diagnostic(line);
      assert.match(line || '', new RegExp(`${stack.router.dbPath.replace(/[.]/g, '\\.')} is on a file system mounted read-only \\(so is the rest of its directory\\): remount it read-write$`), r.stderr);
    } finally {
      if (mounted) spawnSync('umount', [data]);
      await stack.stop();
    }
  });

  it('a full disk names the file, the space left and the fix', { skip: !ROOT_USER && 'needs root (mount)' }, async (t) => {
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-full-'));
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=300k', 'tmpfs', mnt]).status === 0;
    if (!mounted) { fs.rmSync(mnt, { recursive: true, force: true }); return; }
    let stack;
    try {
      stack = await startStack({
        procs: 1, threads: 2,
        config: (t) => t.replace('db_path = "data/llm_logs.db";', `db_path = "${mnt}/llm_logs.db";`)
          .replace('fallback_jsonl = "data/llm_logs_fallback.jsonl";', `fallback_jsonl = "${mnt}/llm_logs_fallback.jsonl";`),
      });
      assert.equal((await chat(stack.router)).status, 200);
      // Fill what is left.
      spawnSync('dd', ['if=/dev/zero', `of=${mnt}/filler`, 'bs=4k'], { stdio: 'ignore' });
      for (let i = 0; i < 20 && !/disk is full/.test(stack.router.errorLog()); i++) await chat(stack.router);
      const lines = stack.router.errorLog().split('\n').filter((l) => /disk is full/.test(l));
      assert.ok(lines.length >= 1, stack.router.errorLog().slice(-3000));
      for (const l of lines) t.diagnostic(l);
      assert.match(lines[0], new RegExp(`(the database ${mnt}/llm_logs\\.db|the fallback file ${mnt}/llm_logs_fallback\\.jsonl) cannot grow: the disk is full \\(the file system holding ${mnt} has \\d+ KiB free of 300 KiB\\); fix: free space there, or move it to a larger file system \\(storage\\.(db_path|fallback_jsonl)\\)`));
      // At most one line a minute per process, for each of the two files.
      assert.ok(lines.length <= 2 * 2, lines.join('\n'));
    } finally {
      if (stack) await stack.stop();
      spawnSync('umount', [mnt]);
      fs.rmSync(mnt, { recursive: true, force: true });
    }
  });
});
