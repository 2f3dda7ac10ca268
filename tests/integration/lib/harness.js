// Integration harness: a real lighttpd running the real router binary as FastCGI responders, in
// front of the fake provider (tests/fake/provider.js), everything on 127.0.0.1 with ephemeral
// ports and a private temp directory per router instance.
//
// Environment:
//   ROUTER_BIN        the router binary (default build/llm-router)
//   ROUTER_SANITIZER  "asan": collect ASan/UBSan/LSan reports in files and fail on any;
//                     "valgrind": run the responders under valgrind and fail on errors or leaks.
//   KEEP_WORK=1       keep temp directories of passing tests.
'use strict';
const { spawn, spawnSync, execFileSync } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const ROOT = path.resolve(__dirname, '../../..');
const ROUTER_BIN = process.env.ROUTER_BIN || path.join(ROOT, 'build/llm-router');
const SANITIZER = process.env.ROUTER_SANITIZER || '';
const LIGHTTPD = fs.existsSync('/usr/sbin/lighttpd') ? '/usr/sbin/lighttpd' : 'lighttpd';
const SLOW = SANITIZER === 'valgrind' ? 8 : SANITIZER === 'asan' ? 2 : 1;

// Keys used in tests: never real, but treated as secrets (they must not appear in logs).
const TEST_KEYS = {
  OPENAI_API_KEY: 'sk-test-openai-SECRET-0001',
  ANTHROPIC_API_KEY: 'sk-ant-test-SECRET-0002',
  GEMINI_API_KEY: 'gemini-test-SECRET-0003',
  DEEPSEEK_API_KEY: 'sk-test-deepseek-SECRET-0004',
  OPENROUTER_API_KEY: 'sk-or-test-SECRET-0005',
  GROQ_API_KEY: 'gsk_test_SECRET_0006',
};
const PROVIDER_PATHS = {
  OPENAI: 'openai/v1', ANTHROPIC: 'anthropic', GEMINI: 'gemini/v1beta', DEEPSEEK: 'deepseek',
  OPENROUTER: 'openrouter/api/v1', GROQ: 'groq/openai/v1',
};

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function waitFor(fn, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try { const v = await fn(); if (v) return v; } catch (e) { last = e; }
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}${last ? ': ' + last.message : ''}`);
}

// ---- fake provider ----

async function startFake() {
  const child = spawn(process.execPath, [path.join(ROOT, 'tests/fake/provider.js'), '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const m = buf.match(/"port":(\d+)/);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error('fake provider exited ' + code)));
  });
  const url = `http://127.0.0.1:${port}`;
  const call = async (method, p, body) => {
    const r = await fetch(url + p, { method, headers: { 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined });
    return r.json();
  };
  return {
    url, port,
    script: (provider, steps) => call('POST', '/_script', { provider, steps }),
    requests: () => call('GET', '/_requests'),
    events: () => call('GET', '/_events'),
    hooks: () => call('GET', '/_hooks'),
    reset: () => call('DELETE', '/_requests'),
    stop: () => new Promise((resolve) => { child.once('exit', resolve); child.kill('SIGTERM'); }),
  };
}

// ---- router behind lighttpd ----

// opts:
//   fake          the fake provider (its URL backs every provider that has a key)
//   keys          which providers get a key: array of names (default all but GROQ)
//   env           extra environment for the responders
//   config        function(text) -> text, applied to conf/llm-router.conf
//   procs         lighttpd max-procs (default 2)
//   threads       server.threads (default 4)
//   lighttpd      extra lines for lighttpd.conf
//   auth          keep routing.auth_mode = "key" and default_tier "T3" (default: anonymous callers
//                 in T1)
async function startRouter(opts = {}) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-it-'));
  const port = await freePort();
  const keys = opts.keys || ['OPENAI', 'ANTHROPIC', 'GEMINI', 'DEEPSEEK', 'OPENROUTER'];
  fs.mkdirSync(path.join(work, 'conf'));
  fs.mkdirSync(path.join(work, 'www'));
  let conf = fs.readFileSync(path.join(ROOT, 'conf/llm-router.conf'), 'utf8');
  conf = conf.replace(/threads = \d+;/, `threads = ${opts.threads || 4};`);
  conf = conf.replace(/reload_interval_s = \d+;/, 'reload_interval_s = 1;');
  // Agents, tiers and budgets are tested in their own files; elsewhere callers are anonymous and
  // in the tier that may use every model.
  if (!opts.auth) conf = conf.replace('auth_mode = "key";', 'auth_mode = "none";').replace('default_tier = "T3";', 'default_tier = "T1";');
  if (opts.config) conf = opts.config(conf);
  if (opts.fake) conf = conf.split('@FAKE_URL@').join(opts.fake.url);
  const confPath = path.join(work, 'conf/llm-router.conf');
  fs.writeFileSync(confPath, conf);

  const env = { PATH: process.env.PATH, LLM_ROUTER_CONFIG: confPath, LLM_ROUTER_HOME: work };
  for (const name of keys) {
    env[`${name}_API_KEY`] = TEST_KEYS[`${name}_API_KEY`];
    if (opts.fake) env[`${name}_BASE_URL`] = `${opts.fake.url}/${PROVIDER_PATHS[name]}`;
  }
  Object.assign(env, opts.env || {});

  let binPath = ROUTER_BIN;
  if (SANITIZER === 'asan') {
    env.ASAN_OPTIONS = `log_path=${work}/asan:detect_leaks=1:abort_on_error=0`;
    env.UBSAN_OPTIONS = `log_path=${work}/ubsan:print_stacktrace=1`;
    env.LSAN_OPTIONS = `suppressions=${path.join(ROOT, 'tests/tools/lsan.supp')}`;
  } else if (SANITIZER === 'valgrind') {
    binPath = path.join(work, 'router-valgrind.sh');
    fs.writeFileSync(binPath, `#!/bin/sh\nexec valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --suppressions=${path.join(ROOT, 'tests/tools/valgrind.supp')} --log-file=${work}/valgrind.%p ${ROUTER_BIN} "$@"\n`);
    fs.chmodSync(binPath, 0o755);
  }

  const errorlog = path.join(work, 'error.log');
  const routerlog = path.join(work, 'router.log');
  const readLogs = () => [errorlog, routerlog].map((f) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '')).join('');
  const lconf = [
    `server.document-root = "${path.join(work, 'www')}"`,
    'server.bind = "127.0.0.1"',
    `server.port = ${port}`,
    `server.errorlog = "${errorlog}"`,
    // The responders' stderr (the router's log lines) goes to the breakage log.
    `server.breakagelog = "${routerlog}"`,
    'server.modules += ( "mod_fastcgi" )',
    'server.stream-response-body = 2',
    `server.max-request-size = ${opts.maxRequestKb || 65536}`,
    ...(opts.lighttpd || []),
    'fastcgi.server = ( "/v1" => ((',
    `  "bin-path" => "${binPath}",`,
    `  "socket" => "${path.join(work, 'router.sock')}",`,
    `  "max-procs" => ${opts.procs || 2},`,
    '  "check-local" => "disable",',
    '  "read-timeout" => 180',
    ')) )',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(work, 'lighttpd.conf'), lconf);
  const lighttpd = spawn(LIGHTTPD, ['-D', '-f', path.join(work, 'lighttpd.conf')], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let lstderr = '';
  lighttpd.stderr.on('data', (d) => { lstderr += d; });
  let exited = null;
  lighttpd.once('exit', (code, sig) => { exited = { code, sig }; });
  const baseURL = `http://127.0.0.1:${port}/v1`;
  try {
    await waitFor(async () => {
      if (exited) throw new Error(`lighttpd exited ${JSON.stringify(exited)}: ${lstderr}`);
      if (/child exited: 78/.test(readLogs())) throw new Error('the router refused its configuration');
      const r = await fetch(baseURL + '/models');
      return r.status === 200;
    }, 20000 * SLOW, 'the router to answer /v1/models');
  } catch (e) {
    lighttpd.kill('SIGKILL');
    throw new Error(`${e.message}\nerror log:\n${readLogs()}`);
  }

  const router = {
    work, port, baseURL, confPath, env, lighttpd,
    dbPath: path.join(work, 'data/llm_logs.db'),
    jsonlPath: path.join(work, 'data/llm_logs_fallback.jsonl'),
    // lighttpd's error log followed by the router's own log lines.
    errorLog: readLogs,
    // Runs SQL with the sqlite3 shell and returns the rows as objects.
    db(sql) {
      const out = execFileSync('sqlite3', ['-json', '-cmd', '.timeout 5000', router.dbPath, sql], { encoding: 'utf8' });
      return out.trim() ? JSON.parse(out) : [];
    },
    // The request-log row of one request id (waits a little: rows are written as responses end).
    async row(requestId) {
      return waitFor(() => router.db(`SELECT * FROM request_log WHERE request_id = '${requestId}'`)[0], 5000 * SLOW, `log row ${requestId}`);
    },
    responderPids() {
      const r = spawnSync('pgrep', ['-P', String(lighttpd.pid)], { encoding: 'utf8' });
      return r.stdout.split('\n').filter(Boolean).map(Number);
    },
    async stop() {
      if (!exited) {
        const done = new Promise((resolve) => lighttpd.once('exit', resolve));
        lighttpd.kill('SIGTERM');
        await Promise.race([done, sleep(15000 * SLOW)]);
        if (!exited) lighttpd.kill('SIGKILL');
      }
      await sleep(200 * SLOW);
      const problems = sanitizerReports(work);
      if (problems) throw new Error(`sanitizer reports in ${work}:\n${problems}`);
      if (!process.env.KEEP_WORK) fs.rmSync(work, { recursive: true, force: true });
    },
  };
  return router;
}

function sanitizerReports(work) {
  const out = [];
  for (const f of fs.readdirSync(work)) {
    const p = path.join(work, f);
    if (/^(asan|ubsan)\./.test(f)) {
      const t = fs.readFileSync(p, 'utf8');
      if (t.trim()) out.push(`${f}:\n${t.slice(0, 6000)}`);
    } else if (/^valgrind\./.test(f)) {
      const t = fs.readFileSync(p, 'utf8');
      if (/ERROR SUMMARY: [1-9]|definitely lost: [1-9]|indirectly lost: [1-9]|Invalid (read|write)|uninitialised/.test(t)) out.push(`${f}:\n${t.slice(0, 6000)}`);
    }
  }
  for (const f of ['error.log', 'router.log']) {
    const log = fs.existsSync(path.join(work, f)) ? fs.readFileSync(path.join(work, f), 'utf8') : '';
    if (/runtime error:|AddressSanitizer|LeakSanitizer/.test(log)) out.push(`${f}:\n` + log.slice(-6000));
  }
  return out.join('\n');
}

// Everything a test needs: a fake provider and a router in front of it.
async function startStack(opts = {}) {
  const fake = await startFake();
  let router;
  try {
    router = await startRouter(Object.assign({ fake }, opts));
  } catch (e) {
    await fake.stop();
    throw e;
  }
  return {
    fake, router,
    async stop() {
      try { await router.stop(); } finally { await fake.stop(); }
    },
  };
}

// Reads an SSE response body incrementally; returns [{t, data}] with arrival times in ms.
async function readSSE(response, onEvent) {
  const events = [];
  const reader = response.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  const t0 = Date.now();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const raw = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const ev = { t: Date.now() - t0, raw, comment: raw.startsWith(':') };
      const data = raw.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      if (data) ev.data = data;
      events.push(ev);
      if (onEvent) onEvent(ev);
    }
  }
  return events;
}

module.exports = { ROOT, ROUTER_BIN, TEST_KEYS, SANITIZER, SLOW, startFake, startRouter, startStack, readSSE, sleep, waitFor };
