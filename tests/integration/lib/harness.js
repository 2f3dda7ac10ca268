// Integration harness: a real web server running the real router binary, in front of the fake
// provider (tests/fake/provider.js), everything on 127.0.0.1 with ephemeral ports and a private
// temp directory per router instance.
//
// Environment:
//   ROUTER_FRONT      the web server set-up (default lighttpd):
//                     lighttpd         mod_fastcgi, bin-path responders (lighttpd/run.sh's set-up)
//                     apache-fcgid     Apache + mod_fcgid, the vhost of apache/llm-router-fcgid.conf
//                     apache-htaccess  Apache + mod_fcgid as a shared host runs it: www/.htaccess in
//                                      a document root with AllowOverride, the binary copied in as
//                                      llm-router.fcgi, config and data found relative to it
//                     apache-cgi       the same document root on a host without mod_fcgid: the
//                                      .htaccess falls back to plain CGI (mod_cgid), one process per
//                                      request
//   ROUTER_BIN        the router binary (default build/llm-router)
//   ROUTER_SANITIZER  "asan": collect ASan/UBSan/LSan reports in files and fail on any;
//                     "valgrind": run the responders under valgrind and fail on errors or leaks.
//   KEEP_WORK=1       keep temp directories of passing tests.
//   ROUTER_ARTIFACTS  where tests keep files for people to look at after the run (screenshots):
//                     tests/tools/run-integration.sh sets it per front; default test-artifacts/<front>
//                     in the checkout.
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
const APACHE = '/usr/sbin/apache2';
const APACHE_MODULES = '/usr/lib/apache2/modules';
const FRONT = process.env.ROUTER_FRONT || 'lighttpd';
const FRONTS = ['lighttpd', 'apache-fcgid', 'apache-htaccess', 'apache-cgi'];
if (!FRONTS.includes(FRONT)) throw new Error(`ROUTER_FRONT=${FRONT}: expected one of ${FRONTS.join(', ')}`);
// What the set-up offers, for the few tests that depend on it.
const CAPS = {
  // Long-lived responder processes (with threads, a writer thread, a health cache).
  persistent: FRONT !== 'apache-cgi',
  // Several requests at once inside one process (mod_fcgid sends one at a time per process).
  threaded: FRONT === 'lighttpd',
};
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
// Waits for promise at most ms; the timer is cleared either way (a pending timer would keep the
// test file's process alive after its last test, for as long as it has left to run).
async function within(promise, ms) {
  let timer;
  try {
    return await Promise.race([promise, new Promise((r) => { timer = setTimeout(r, ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

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
    hookScript: (steps) => call('POST', '/_hookscript', { steps }),
    reset: () => call('DELETE', '/_requests'),
    stop: () => new Promise((resolve) => { child.once('exit', resolve); child.kill('SIGTERM'); }),
  };
}

// ---- the web servers ----

function lines(...parts) { return parts.flat().filter((l) => l !== null && l !== undefined).join('\n') + '\n'; }

// www/errors/<status>.json under the names lighttpd's server.errorfile-prefix gives them, as
// lighttpd/run.sh and `make install` copy them; returns the directory.
function lighttpdErrorFiles(work) {
  const dir = path.join(work, 'lighttpd-errors');
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(path.join(ROOT, 'www/errors'))) fs.copyFileSync(path.join(ROOT, 'www/errors', f), path.join(dir, `json-${path.basename(f, '.json')}.html`));
  return dir;
}

// The types lighttpd/llm-router-dev.conf.in gives the dashboard's files.
const DASHBOARD_TYPES = ['".html" => "text/html; charset=utf-8"', '".js" => "text/javascript; charset=utf-8"', '".css" => "text/css; charset=utf-8"'];

// The shipped dashboard (www/dashboard) into a document root, as an upload copies it.
function copyDashboard(docroot) {
  fs.cpSync(path.join(ROOT, 'www/dashboard'), path.join(docroot, 'dashboard'), { recursive: true });
}

function launchLighttpd(work, port, env, binPath, opts) {
  const errorlog = path.join(work, 'error.log');
  const routerlog = path.join(work, 'router.log');
  copyDashboard(path.join(work, 'www'));
  fs.writeFileSync(path.join(work, 'lighttpd.conf'), lines(
    `server.document-root = "${path.join(work, 'www')}"`,
    'server.bind = "127.0.0.1"',
    `server.port = ${port}`,
    `server.errorlog = "${errorlog}"`,
    // The responders' stderr (the router's log lines) goes to the breakage log.
    `server.breakagelog = "${routerlog}"`,
    'server.modules += ( "mod_fastcgi" )',
    'server.stream-response-body = 2',
    // lighttpd's own errors as lighttpd/llm-router-dev.conf.in sends them (JSON, by file name).
    `server.errorfile-prefix = "${lighttpdErrorFiles(work)}/json-"`,
    `mimetype.assign = ( ${fs.readdirSync(path.join(ROOT, 'www/errors')).map((f) => `"json-${path.basename(f, '.json')}.html" => "application/json"`).concat(DASHBOARD_TYPES).join(', ')} )`,
    // The dashboard (copied into the document root, as `make run` serves it from www/).
    'index-file.names = ( "index.html" )',
    `server.max-request-size = ${Math.ceil((opts.webMaxBody || 64 << 20) / 1024)}`,
    'fastcgi.server = ( "/v1" => ((',
    `  "bin-path" => "${binPath}",`,
    `  "socket" => "${path.join(work, 'router.sock')}",`,
    `  "max-procs" => ${opts.procs || 2},`,
    '  "check-local" => "disable",',
    `  "read-timeout" => ${opts.webTimeoutS || 180}`,
    ')) )',
    // /metrics to the same responders, as lighttpd/llm-router-dev.conf.in sends it.
    '$HTTP["url"] == "/metrics" {',
    '  fastcgi.map-extensions = ( "/metrics" => "/v1" )',
    '}'));
  const proc = spawn(LIGHTTPD, ['-D', '-f', path.join(work, 'lighttpd.conf')], { env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  return { proc, readLogs: () => [errorlog, routerlog].map((f) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '')).join('') };
}

// Apache runs from a configuration of its own in the work directory (never /etc/apache2), as the
// user running the tests: run-integration.sh starts the Apache set-ups as an unprivileged user,
// the way a shared-hosting account runs.
function launchApache(work, port, env, binPath, opts) {
  const adir = path.join(work, 'apache');
  const withFcgid = FRONT !== 'apache-cgi';
  // The router's environment, apart from what a deployment sets itself: on shared hosting only
  // llm-router.env beside the configuration can carry keys and provider URLs.
  const routerEnv = Object.entries(env).filter(([k]) => !['PATH', 'LLM_ROUTER_CONFIG', 'LLM_ROUTER_HOME'].includes(k));
  fs.writeFileSync(path.join(work, 'conf/llm-router.env'), routerEnv.map(([k, v]) => `${k}=${v}`).join('\n') + '\n', { mode: 0o600 });
  const sanitizerEnv = routerEnv.filter(([k]) => /^(ASAN|UBSAN|LSAN)_OPTIONS$/.test(k));
  let site;
  if (FRONT === 'apache-fcgid') {
    // The shipped vhost, with this instance's paths.
    site = fs.readFileSync(path.join(ROOT, 'apache/llm-router-fcgid.conf'), 'utf8')
      .replace('<VirtualHost *:80>', `<VirtualHost 127.0.0.1:${port}>`)
      .split('/usr/local/bin/llm-router').join(binPath)
      .split('/usr/local/etc/llm-router/llm-router.conf').join(path.join(work, 'conf/llm-router.conf'))
      .split('/var/lib/llm-router').join(work)
      .split('/usr/local/share/llm-router/www').join(path.join(ROOT, 'www'));
    if (opts.webTimeoutS) site = site.replace(/FcgidIOTimeout \d+/, `FcgidIOTimeout ${opts.webTimeoutS}`);
    if (opts.webMaxBody) site = site.replace(/FcgidMaxRequestLen \d+/, `FcgidMaxRequestLen ${opts.webMaxBody}`);
  } else {
    // A shared host: the account's document root with the shipped .htaccess and the binary
    // uploaded into it; the host's own settings stay at Apache's and mod_fcgid's defaults,
    // except where a test scales a timeout down.
    const docroot = path.join(work, 'www');
    fs.copyFileSync(path.join(ROOT, 'www/.htaccess'), path.join(docroot, '.htaccess'));
    fs.cpSync(path.join(ROOT, 'www/errors'), path.join(docroot, 'errors'), { recursive: true });
    copyDashboard(docroot);
    const target = path.join(docroot, 'llm-router.fcgi');
    if (binPath === ROUTER_BIN) fs.copyFileSync(ROUTER_BIN, target);
    else fs.writeFileSync(target, fs.readFileSync(binPath, 'utf8').replace('exec valgrind', `LLM_ROUTER_CONFIG=${path.join(work, 'conf/llm-router.conf')} exec valgrind`));
    fs.chmodSync(target, 0o755);
    site = lines(
      `DocumentRoot "${docroot}"`,
      `<Directory "${docroot}">`,
      '  AllowOverride Options FileInfo AuthConfig Limit',
      '  Options SymLinksIfOwnerMatch',
      '  Require all granted',
      '</Directory>',
      // A host that streams: with mod_fcgid's default 64 KiB output buffer, SSE arrives in lumps
      // and a shared-hosting account switches .htaccess to plain CGI (the apache-cgi set-up).
      withFcgid ? 'FcgidOutputBufferSize 0' : null,
      withFcgid && opts.webTimeoutS ? `FcgidIOTimeout ${opts.webTimeoutS}` : null,
      withFcgid && opts.webMaxBody ? `FcgidMaxRequestLen ${opts.webMaxBody}` : null,
      !withFcgid && opts.webMaxBody ? `LimitRequestBody ${opts.webMaxBody}` : null,
      !withFcgid && opts.webTimeoutS ? `Timeout ${opts.webTimeoutS}` : null);
  }
  return spawnApache(adir, port, { withFcgid, sanitizerEnv, site });
}

// Apache with a configuration of its own in adir (never /etc/apache2): the modules, logs in
// adir/../error.log, and the site lines. spawnOpts: extra options for spawn (uid, gid).
function spawnApache(adir, port, { withFcgid, sanitizerEnv = [], site, spawnOpts = {} }) {
  fs.mkdirSync(path.join(adir, 'fcgid'), { recursive: true });
  if (spawnOpts.uid !== undefined) for (const d of [adir, path.join(adir, 'fcgid')]) fs.chownSync(d, spawnOpts.uid, spawnOpts.gid);
  const errorlog = path.join(adir, '..', 'error.log');
  const mods = ['mpm_event', 'authz_core', 'authz_host', 'mime', 'alias', 'rewrite', 'env', withFcgid ? 'fcgid' : 'cgid'];
  const base = [
    ...mods.map((m) => `LoadModule ${m}_module ${APACHE_MODULES}/mod_${m}.so`),
    `ServerRoot "${adir}"`, 'ServerName 127.0.0.1', `Listen 127.0.0.1:${port}`,
    `PidFile "${adir}/httpd.pid"`, `DefaultRuntimeDir "${adir}"`, `Mutex file:${adir} default`,
    // As apache/llm-router-fcgid.conf sets it (fcntl locks give EDEADLK between threads).
    ...(withFcgid ? ['Mutex pthread fcgid-pipe fcgid-proctbl'] : []),
    `ErrorLog "${errorlog}"`, 'LogLevel warn', 'TypesConfig /etc/mime.types',
    'StartServers 1', 'ServerLimit 4', 'ThreadsPerChild 64', 'MaxRequestWorkers 256',
    'Timeout 300',   // Debian's apache2.conf
    '<Directory />', '  AllowOverride None', '  Require all denied', '</Directory>',
    '<Files ".ht*">', '  Require all denied', '</Files>',
  ];
  if (withFcgid) {
    base.push(`FcgidIPCDir "${adir}/fcgid"`, `FcgidProcessTableFile "${adir}/fcgid/shm"`);
    for (const [k, v] of sanitizerEnv) base.push(`FcgidInitialEnv ${k} "${v}"`);
  } else {
    base.push(`ScriptSock "${adir}/cgid.sock"`);
    for (const [k, v] of sanitizerEnv) base.push(`SetEnv ${k} "${v}"`);
  }
  const confFile = path.join(adir, 'httpd.conf');
  fs.writeFileSync(confFile, lines(base, site));
  // Apache's own environment carries nothing of the router's: what reaches it is what the
  // configuration passes.
  const proc = spawn(APACHE, ['-f', confFile, '-DFOREGROUND'], Object.assign({ env: { PATH: process.env.PATH, LANG: 'C' }, stdio: ['ignore', 'ignore', 'pipe'], detached: true }, spawnOpts));
  return { proc, readLogs: () => (fs.existsSync(errorlog) ? fs.readFileSync(errorlog, 'utf8') : '') };
}

// The web server runs in a process group of its own (spawned detached), with every process it
// starts unless one leaves it.
function killGroup(proc, sig) {
  try { process.kill(-proc.pid, sig); } catch (e) { /* already gone */ }
}

// A live (not zombie) process is left in the web server's process group.
function groupAlive(proc) {
  const r = spawnSync('ps', ['-o', 'stat=', '-g', String(proc.pid)], { encoding: 'utf8' });
  return r.stdout.split('\n').some((l) => l.trim() && !l.trim().startsWith('Z'));
}

// Router processes below a web server's process (children of lighttpd; of mod_fcgid's process
// manager or mod_cgid's daemon under Apache).
function routerDescendants(rootPid) {
  const r = spawnSync('ps', ['-e', '-o', 'pid=,ppid=,comm='], { encoding: 'utf8' });
  const procs = r.stdout.split('\n').filter(Boolean).map((l) => l.trim().split(/\s+/)).map(([pid, ppid, comm]) => ({ pid: Number(pid), ppid: Number(ppid), comm }));
  const below = new Set([rootPid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const p of procs) if (below.has(p.ppid) && !below.has(p.pid)) { below.add(p.pid); grew = true; }
  }
  return procs.filter((p) => below.has(p.pid) && /^(llm-router|memcheck)/.test(p.comm)).map((p) => p.pid);
}

// ---- router behind a web server ----

// opts:
//   fake          the fake provider (its URL backs every provider that has a key)
//   keys          which providers get a key: array of names (default all but GROQ)
//   env           extra environment for the responders
//   config        function(text) -> text, applied to conf/llm-router.conf
//   procs         lighttpd max-procs (default 2; mod_fcgid spawns processes on demand)
//   threads       server.threads (default 4)
//   webTimeoutS   the web server's idle timeout on the router (lighttpd read-timeout,
//                 FcgidIOTimeout, Apache Timeout for CGI)
//   webMaxBody    the web server's request body limit in bytes
//   prepare       prepare(work): called with the working directory before the web server starts
//   auth          keep routing.auth_mode = "key" and default_tier "T3" (default: anonymous callers
//                 in T1)
async function startRouter(opts = {}) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-it-'));
  const port = await freePort();
  const keys = opts.keys || ['OPENAI', 'ANTHROPIC', 'GEMINI', 'DEEPSEEK', 'OPENROUTER'];
  fs.mkdirSync(path.join(work, 'conf'));
  fs.mkdirSync(path.join(work, 'www'));
  // The router never creates its data directory (a first setup does: `llm-router init`).
  fs.mkdirSync(path.join(work, 'data'));
  // Before any responder runs (a file system mounted where the database will be: one made
  // before the mount would be hidden under it).
  if (opts.prepare) opts.prepare(work);
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

  const front = FRONT.startsWith('apache') ? launchApache(work, port, env, binPath, opts) : launchLighttpd(work, port, env, binPath, opts);
  const { proc, readLogs } = front;
  let pstderr = '';
  proc.stderr.on('data', (d) => { pstderr += d; });
  let exited = null;
  proc.once('exit', (code, sig) => { exited = { code, sig }; });
  const baseURL = `http://127.0.0.1:${port}/v1`;
  try {
    await waitFor(async () => {
      if (exited) throw new Error(`${FRONT} exited ${JSON.stringify(exited)}: ${pstderr}`);
      if (/child exited: 78|exit\(communication error\)|exited with status 78/.test(readLogs())) throw new Error('the router refused its configuration');
      const r = await fetch(baseURL + '/models');
      // Plain CGI answers a broken configuration itself.
      if (r.status === 500 && /configuration_error/.test(await r.text())) throw new Error('the router refused its configuration');
      return r.status === 200;
    }, 20000 * SLOW, 'the router to answer /v1/models');
  } catch (e) {
    killGroup(proc, 'SIGKILL');
    const err = new Error(`${e.message}\nerror log:\n${readLogs()}`);
    if (!process.env.KEEP_WORK) fs.rmSync(work, { recursive: true, force: true });
    throw err;
  }

  const router = {
    work, port, baseURL, confPath, env, front: FRONT,
    dbPath: path.join(work, 'data/llm_logs.db'),
    jsonlPath: path.join(work, 'data/llm_logs_fallback.jsonl'),
    // The web server's error log followed by the router's own log lines.
    errorLog: readLogs,
    // Runs SQL with the sqlite3 shell and returns the rows as objects.
    db(sql) {
      // The SQL goes on stdin: a statement naming thousands of request ids is longer than an
      // argument may be.
      const out = execFileSync('sqlite3', ['-json', '-cmd', '.timeout 5000', router.dbPath], { input: sql, encoding: 'utf8' });
      return out.trim() ? JSON.parse(out) : [];
    },
    // The request-log row of one request id (waits a little: rows are written as responses end).
    async row(requestId) {
      return waitFor(() => router.db(`SELECT * FROM request_log WHERE request_id = '${requestId}'`)[0], 5000 * SLOW, `log row ${requestId}`);
    },
    // The router processes under this web server (none between requests in plain CGI).
    responderPids() { return routerDescendants(proc.pid); },
    // Runs during() while sampling the memory of every router process under the web server (every
    // 10 ms: CGI processes live for one request). Resolves to { result, rssMB, hwmMB }: the
    // largest VmRSS seen, and the largest VmHWM (peak) any of them reported.
    async measureMemory(during) {
      let rss = 0; let hwm = 0;
      const sample = () => {
        for (const pid of routerDescendants(proc.pid)) {
          let st = '';
          try { st = fs.readFileSync(`/proc/${pid}/status`, 'utf8'); } catch (e) { continue; }
          const r = /VmRSS:\s+(\d+)/.exec(st); const h = /VmHWM:\s+(\d+)/.exec(st);
          if (r) rss = Math.max(rss, Number(r[1]));
          if (h) hwm = Math.max(hwm, Number(h[1]));
        }
      };
      const timer = setInterval(sample, 10);
      try {
        sample();
        const result = await during();
        sample();
        return { result, rssMB: rss / 1024, hwmMB: hwm / 1024 };
      } finally {
        clearInterval(timer);
      }
    },
    async stop() {
      if (!exited) {
        const done = new Promise((resolve) => proc.once('exit', resolve));
        proc.kill('SIGTERM');
        await within(done, 15000 * SLOW);
      }
      // What the web server left behind (responders finishing requests, mod_fcgid's processes)
      // gets a few seconds to exit on its own (and write its sanitizer reports), then SIGKILL.
      await waitFor(() => !groupAlive(proc), 5000 * SLOW, 'the web server\'s processes to exit').catch(() => {});
      killGroup(proc, 'SIGKILL');
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
      // A process killed (kill -9 tests) while LeakSanitizer checks it at exit leaves only this
      // line from the checker: no finding about the router.
      const t = fs.readFileSync(p, 'utf8').replace(/^==\d+==Unable to get registers from thread \d+\.\n?/gm, '');
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

// ---- the router as its own FastCGI responder, with no web server ----

// Starts `llm-router serve --listen 127.0.0.1:PORT` with the configuration in work/conf and env
// added to the environment. Resolves to { child, port, log() } once it listens.
async function startServe(work, env) {
  fs.mkdirSync(path.join(work, 'data'), { recursive: true });   // a first setup's (llm-router init)
  const port = await freePort();
  const full = Object.assign({ PATH: process.env.PATH, LLM_ROUTER_CONFIG: path.join(work, 'conf/llm-router.conf'), LLM_ROUTER_HOME: work }, env);
  if (SANITIZER === 'asan') {
    full.ASAN_OPTIONS = `log_path=${work}/asan:detect_leaks=1`;
    full.UBSAN_OPTIONS = `log_path=${work}/ubsan:print_stacktrace=1`;
    full.LSAN_OPTIONS = `suppressions=${path.join(ROOT, 'tests/tools/lsan.supp')}`;
  }
  const child = spawn(ROUTER_BIN, ['serve', '--listen', `127.0.0.1:${port}`], { env: full, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  await waitFor(() => new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  }), 10000 * SLOW, 'the responder to listen');
  return { child, port, log: () => log };
}

// Stops what startServe started (SIGTERM, then waits for the exit); throws on sanitizer reports.
async function stopServe(served, work) {
  served.child.kill('SIGTERM');
  await new Promise((r) => served.child.once('exit', r));
  for (const f of fs.readdirSync(work)) {
    if (/^(asan|ubsan)\./.test(f)) throw new Error(fs.readFileSync(path.join(work, f), 'utf8'));
  }
}

// Waits until an Apache started by spawnApache answers GET base/models with 200; its logs in the
// error when it does not (or exits).
async function apacheReady(apache, base) {
  await waitFor(async () => {
    if (apache.proc.exitCode !== null) throw new Error(apache.readLogs());
    return (await fetch(base + '/models')).status === 200;
  }, 20000 * SLOW, 'Apache to answer').catch((e) => { throw new Error(`${e.message}\n${apache.readLogs()}`); });
}

// A prepare hook (startStack) that mounts a tmpfs of size (e.g. '4m', needs root) at work/small,
// where a test's database then lives; the test unmounts it (umount -l) when done.
const smallTmpfs = (size) => (work) => {
  const dir = path.join(work, 'small');
  fs.mkdirSync(dir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
};

// The directory for files kept after the run for people to look at (screenshots): $ROUTER_ARTIFACTS,
// else test-artifacts/<front> in the checkout. Made when missing.
function artifactsDir() {
  const dir = process.env.ROUTER_ARTIFACTS || path.join(ROOT, 'test-artifacts', FRONT);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

module.exports = { artifactsDir, smallTmpfs, apacheReady, lighttpdErrorFiles, ROOT, ROUTER_BIN, FRONT, CAPS, spawnApache, killGroup, freePort, TEST_KEYS, SANITIZER, SLOW, startFake, startRouter, startStack, startServe, stopServe, readSSE, sleep, within, waitFor };
