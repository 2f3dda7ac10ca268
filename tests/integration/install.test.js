// `make install` and the container's start: the Dockerfile cannot be built here (no Docker
// engine), so this runs its steps on the host instead - `make install` into a staging directory
// (DESTDIR, as the image's build stage does) and into a prefix, then the image's CMD with the
// image's ENV and HEALTHCHECK, read from the Dockerfile itself with the paths moved into a temp
// directory. Front-independent: run once, not per web-server set-up.
'use strict';
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const OpenAI = require('openai').default;
const { ROOT, ROUTER_BIN, TEST_KEYS, SLOW, killGroup, freePort, startFake, waitFor, sleep, within } = require('./lib/harness');
const { get, assertEnvelope, assertOwnErrors } = require('./lib/rawhttp');

const BUILD = path.relative(ROOT, path.dirname(ROUTER_BIN));

function make(args) {
  const r = spawnSync('make', ['-s', '-C', ROOT, `BUILD=${BUILD}`, ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  return r.stdout;
}

function files(dir) {
  const out = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p); else out.push(path.relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

// The Dockerfile's last stage: ENV name=value pairs, the CMD argv and the HEALTHCHECK command.
function dockerfile() {
  const text = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n\s*/g, ' ');
  const last = text.slice(text.lastIndexOf('\nFROM '));
  const env = {};
  for (const m of last.matchAll(/^ENV (.+)$/gm)) for (const kv of m[1].trim().split(/\s+/)) { const i = kv.indexOf('='); env[kv.slice(0, i)] = kv.slice(i + 1); }
  const cmd = JSON.parse(last.match(/^CMD (\[.*\])$/m)[1]);
  const health = last.match(/^HEALTHCHECK .*? CMD (.+)$/m)[1];
  return { env, cmd, health };
}

describe('make install and the container start command', () => {
  let work;
  let fake;
  before(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-install-'));
    fake = await startFake();
  });
  after(async () => {
    await fake.stop();
    if (!process.env.KEEP_WORK) fs.rmSync(work, { recursive: true, force: true });
  });

  it('stages everything under DESTDIR with paths for PREFIX', () => {
    const stage = path.join(work, 'stage');
    make(['install', 'PREFIX=/usr/local', `DESTDIR=${stage}`]);
    const got = files(stage);
    for (const f of ['usr/local/bin/llm-router', 'usr/local/etc/llm-router/llm-router.conf', 'usr/local/share/llm-router/lighttpd-container.conf',
      'usr/local/share/llm-router/lighttpd/llm-router.conf', 'usr/local/share/llm-router/apache/llm-router-fcgid.conf',
      'usr/local/share/llm-router/apache/llm-router-proxy-fcgi.conf', 'usr/local/share/llm-router/apache/llm-router.service',
      'usr/local/share/llm-router/www/.htaccess', 'usr/local/share/llm-router/www/errors/413.json',
      'usr/local/share/llm-router/lighttpd/errors/json-503.html']) assert.ok(got.includes(f), `${f} in ${got.join(' ')}`);
    assert.ok(got.every((f) => f.startsWith('usr/local/')), got.join(' '));
    assert.ok(fs.statSync(path.join(stage, 'usr/local/bin/llm-router')).mode & 0o111);
    assert.ok(fs.statSync(path.join(stage, 'usr/local/share/llm-router/docroot')).isDirectory());
    const lconf = fs.readFileSync(path.join(stage, 'usr/local/share/llm-router/lighttpd-container.conf'), 'utf8');
    assert.match(lconf, /"bin-path" => "\/usr\/local\/bin\/llm-router"/);
    assert.doesNotMatch(lconf, new RegExp(stage));
    assert.doesNotMatch(lconf, /@PREFIX@/);
    // A second install keeps an edited configuration and puts the new default beside it.
    const conf = path.join(stage, 'usr/local/etc/llm-router/llm-router.conf');
    fs.appendFileSync(conf, '# edited by the operator\n');
    const out = make(['install', 'PREFIX=/usr/local', `DESTDIR=${stage}`]);
    assert.match(out, /keeping .*llm-router\.conf; the new default is llm-router\.conf\.dist/);
    assert.match(fs.readFileSync(conf, 'utf8'), /edited by the operator/);
    assert.ok(fs.existsSync(conf + '.dist'));
  });

  it("runs the image's CMD with the image's ENV: health check, keys, chat, data on the volume", async () => {
    const prefix = path.join(work, 'prefix');
    const volume = path.join(work, 'volume');
    make(['install', `PREFIX=${prefix}`]);
    fs.mkdirSync(volume, { mode: 0o700 });
    const d = dockerfile();
    // A port nobody holds now (a random one may be an ephemeral port of a live connection).
    const port = String(await freePort());
    const moved = (s) => s.split('/usr/local').join(prefix).split('/var/lib/llm-router').join(volume).split('8080').join(port);
    const env = { PATH: process.env.PATH };
    for (const [k, v] of Object.entries(d.env)) env[k] = moved(v);
    assert.equal(env.LLM_ROUTER_BIND, '0.0.0.0');
    env.LLM_ROUTER_BIND = '127.0.0.1';   // loopback only here
    // `docker run -e OPENAI_API_KEY ...`: provider keys and URLs in the environment.
    for (const [name, p] of [['OPENAI', 'openai/v1'], ['ANTHROPIC', 'anthropic'], ['GEMINI', 'gemini/v1beta']]) {
      env[`${name}_API_KEY`] = TEST_KEYS[`${name}_API_KEY`];
      env[`${name}_BASE_URL`] = `${fake.url}/${p}`;
    }
    const [cmd, ...args] = d.cmd.map(moved);
    const server = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let log = '';
    server.stdout.on('data', (x) => { log += x; });
    server.stderr.on('data', (x) => { log += x; });
    try {
      const health = () => spawnSync('/bin/sh', ['-c', moved(d.health)], { encoding: 'utf8' }).status === 0;
      await waitFor(health, 20000 * SLOW, 'the HEALTHCHECK command to pass').catch((e) => { throw new Error(`${e.message}\n${log}`); });
      assert.ok(fs.statSync(path.join(volume, 'run')).isDirectory());
      // The compose file's way of making an agent key: the CLI with the container's environment.
      const k = spawnSync(path.join(prefix, 'bin/llm-router'), ['keys', 'create', '--agent', 'container_agent'], { env, encoding: 'utf8' });
      assert.equal(k.status, 0, k.stderr);
      const client = new OpenAI({ apiKey: k.stdout.trim(), baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
      const c = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
      assert.match(c.choices[0].message.content, /Hello from the fake/);
      const stream = await client.chat.completions.create({ model: 'claude-haiku-4-5', stream: true, messages: [{ role: 'user', content: 'hi' }] });
      let text = '';
      for await (const ch of stream) text += ch.choices[0]?.delta?.content || '';
      assert.match(text, /Hello from the fake/);
      // The request log is on the volume, and the socket is not reachable by others.
      const db = path.join(volume, 'data/llm_logs.db');
      await waitFor(() => {
        const r = spawnSync('sqlite3', [db, "SELECT count(*) FROM request_log WHERE agent = 'container_agent'"], { encoding: 'utf8' });
        return r.stdout.trim() === '2';
      }, 5000 * SLOW, 'two log rows on the volume');
      const sockets = fs.readdirSync(path.join(volume, 'run')).filter((f) => f.startsWith('router.sock'));
      assert.ok(sockets.length >= 1, 'the FastCGI sockets are in the volume run/ directory');
      assert.equal(fs.statSync(path.join(volume, 'run')).mode & 0o077, 0, 'run/ is private to the router user');
      assert.doesNotMatch(log, /SECRET/);
      // lighttpd's own errors are JSON; only the API is served.
      await assertOwnErrors(Number(port), 'container');
      assertEnvelope(await get(Number(port), '/lighttpd-container.conf'), [403, 404], 'container: another URL');
      // Responders killed: lighttpd's 503 while it restarts them, in JSON too.
      const pids = () => spawnSync('ps', ['-o', 'pid=,comm=', '--ppid', String(server.pid)], { encoding: 'utf8' }).stdout.split('\n')
        .filter((l) => /llm-router/.test(l)).map((l) => Number(l.trim().split(/\s+/)[0]));
      assert.ok(pids().length >= 1, 'responders under lighttpd');
      const r = await waitFor(async () => {
        for (const pid of pids()) { try { process.kill(pid, 'SIGKILL'); } catch (e) { /* gone */ } }
        const x = await Promise.all(Array.from({ length: 4 }, () => get(Number(port), '/v1/models')));
        return x.find((a) => a.status !== 200);
      }, 5000, 'an error answer while the responders restart');
      assertEnvelope(r, [500, 502, 503], 'container: responders killed');
      assert.equal(fs.readdirSync(path.join(prefix, 'share/llm-router/lighttpd/errors')).length, fs.readdirSync(path.join(ROOT, 'www/errors')).length);
    } finally {
      server.kill('SIGTERM');
      await within(new Promise((r) => server.once('exit', r)), 10000);
      killGroup(server, 'SIGKILL');
    }
  });
});
