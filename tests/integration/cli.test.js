// The binary outside a web server: the command-line tool, and plain CGI mode (one request per
// process, parameters from the environment, body on stdin, response on stdout).
'use strict';
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { ROOT, ROUTER_BIN, TEST_KEYS, startFake } = require('./lib/harness');

function run(args, opts = {}) {
  return spawnSync(ROUTER_BIN, args, Object.assign({ encoding: 'utf8', timeout: 30000 }, opts));
}

describe('command line', () => {
  it('--help and --version', () => {
    const h = run(['--help']);
    assert.equal(h.status, 0);
    assert.match(h.stdout, /check-config/);
    const v = run(['--version']);
    assert.equal(v.status, 0);
    assert.match(v.stdout, /^llm-router \d+\.\d+\.\d+/);
    const none = run([], { input: '' });
    assert.equal(none.status, 2);
    assert.match(none.stderr, /Usage/);
    const bad = run(['frobnicate']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /unknown command 'frobnicate'/);
  });

  it('check-config accepts the shipped file and rejects a broken one with FILE:LINE', () => {
    const ok = run(['check-config', path.join(ROOT, 'conf/llm-router.conf')], { env: { PATH: process.env.PATH } });
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /OK/);
    assert.match(ok.stdout, /groq\s+openai\s+unavailable\s+GROQ_API_KEY is not set/);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-cli-'));
    const bad = path.join(dir, 'bad.conf');
    const text = fs.readFileSync(path.join(ROOT, 'conf/llm-router.conf'), 'utf8')
      .replace('busy_timeout_ms = 5000;', 'busy_timeout_ms = -5;')
      .replace('fallback = [ "claude-sonnet-4-5", "gpt-4o" ];', 'fallback = [ "claude-opus-4-6" ];');
    fs.writeFileSync(bad, text);
    const lineOf = (needle) => text.split('\n').findIndex((l) => l.includes(needle)) + 1;
    const r = run(['check-config', bad]);
    assert.equal(r.status, 1);
    assert.ok(r.stderr.includes(`${bad}:${lineOf('busy_timeout_ms = -5')}: 'storage.busy_timeout_ms' is -5, outside the allowed range`), r.stderr);
    assert.match(r.stderr, /model "claude-opus-4-6": its fallback chain contains itself/);
    fs.rmSync(dir, { recursive: true });
  });

  it('check-config never shows credentials: a base URL\'s as stars, a proxy libcurl refuses not at all', () => {
    const conf = path.join(ROOT, 'conf/llm-router.conf');
    const env = { PATH: process.env.PATH, OPENAI_API_KEY: 'sk-cli-test-key', OPENAI_BASE_URL: 'https://gw-user:BaseUrlPw9@gw.example/v1' };
    const ok = run(['check-config', conf], { env });
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /openai\s+openai\s+available\s+https:\/\/\*\*\*@gw\.example\/v1/);
    assert.ok(!/BaseUrlPw9|gw-user|sk-cli-test-key/.test(ok.stdout + ok.stderr), ok.stdout + ok.stderr);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-cli-'));
    const bad = path.join(dir, 'proxy.conf');
    const text = fs.readFileSync(conf, 'utf8').replace(/^(\s*)proxy = "";/m, '$1proxy = "http://alice:Pr0xy@Pass@proxy.example:3128";');
    assert.notEqual(text, fs.readFileSync(conf, 'utf8'), 'no proxy setting in the shipped file');
    fs.writeFileSync(bad, text);
    const r = run(['check-config', bad], { env: { PATH: process.env.PATH } });
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stderr, /'upstream\.proxy' is not a proxy URL libcurl takes/);
    assert.ok(!/Pr0xy|alice/.test(r.stdout + r.stderr), r.stderr);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('llm-router serve', () => {
  it('refuses to listen on every interface: a FastCGI socket is for the web server alone', () => {
    for (const spec of [':9123', '0.0.0.0:9123', '[::]:9123', '*:9123']) {
      const r = run(['serve', '--listen', spec], { env: { PATH: process.env.PATH, LLM_ROUTER_CONFIG: path.join(ROOT, 'conf/llm-router.conf') } });
      assert.equal(r.status, 1, `${spec}: ${r.stderr}`);
      assert.match(r.stderr, /cannot listen on .*Invalid argument/, spec);
    }
  });
});

describe('plain CGI mode', () => {
  let fake;
  let dir;
  let key;
  before(async () => {
    fake = await startFake();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-cgi-'));
    // The shipped configuration: callers need an agent key (here one of a T1 agent).
    const made = run(['keys', 'create', '--agent', 'ai_director'], { env: { PATH: process.env.PATH, LLM_ROUTER_CONFIG: path.join(ROOT, 'conf/llm-router.conf'), LLM_ROUTER_HOME: dir } });
    assert.equal(made.status, 0, made.stderr);
    key = made.stdout.trim();
  });
  after(async () => { await fake.stop(); fs.rmSync(dir, { recursive: true, force: true }); });

  function cgi(method, uri, body, auth = true) {
    const env = {
      PATH: process.env.PATH,
      GATEWAY_INTERFACE: 'CGI/1.1', REQUEST_METHOD: method, REQUEST_URI: uri,
      CONTENT_LENGTH: body ? String(Buffer.byteLength(body)) : '', CONTENT_TYPE: 'application/json',
      LLM_ROUTER_CONFIG: path.join(ROOT, 'conf/llm-router.conf'), LLM_ROUTER_HOME: dir,
      OPENAI_API_KEY: TEST_KEYS.OPENAI_API_KEY, OPENAI_BASE_URL: `${fake.url}/openai/v1`,
    };
    if (auth) env.HTTP_AUTHORIZATION = `Bearer ${key}`;
    if (process.env.ASAN_OPTIONS) env.ASAN_OPTIONS = process.env.ASAN_OPTIONS;
    const r = spawnSync(ROUTER_BIN, [], { env, input: body || '', encoding: 'utf8', timeout: 30000 });
    const sep = r.stdout.indexOf('\r\n\r\n');
    return { code: r.status, head: r.stdout.slice(0, sep), body: r.stdout.slice(sep + 4), stderr: r.stderr };
  }

  it('answers GET /v1/models', () => {
    const r = cgi('GET', '/v1/models');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.head, /^Status: 200 OK\r\nContent-Type: application\/json/);
    assert.equal(JSON.parse(r.body).data.length, 16);
  });

  it('answers a chat completion and a stream, and logs both', () => {
    const r = cgi('POST', '/v1/chat/completions', JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.head, /^Status: 200 OK/);
    const id = JSON.parse(r.body).id;
    const s = cgi('POST', '/v1/chat/completions', JSON.stringify({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'hi' }] }));
    assert.match(s.head, /Content-Type: text\/event-stream/);
    assert.match(s.body, /data: \[DONE\]\n\n$/);
    const rows = spawnSync('sqlite3', ['-json', path.join(dir, 'data/llm_logs.db'), 'SELECT request_id, stream, status, agent, tier FROM request_log ORDER BY id'], { encoding: 'utf8' });
    const parsed = JSON.parse(rows.stdout);
    assert.equal(parsed.length, 2);
    assert.equal(parsed[0].request_id, id);
    assert.equal(parsed[0].agent, 'ai_director');
    assert.equal(parsed[0].tier, 'T1');
    assert.equal(parsed[1].stream, 1);
  });

  it('answers errors with the envelope', () => {
    const r = cgi('POST', '/v1/chat/completions', '{nope');
    assert.match(r.head, /^Status: 400 Bad Request/);
    assert.equal(JSON.parse(r.body).error.type, 'invalid_request_error');
    const n = cgi('GET', '/v1/other');
    assert.match(n.head, /^Status: 404/);
    const u = cgi('POST', '/v1/chat/completions', JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }), false);
    assert.match(u.head, /^Status: 401/);
    assert.equal(JSON.parse(u.body).error.code, 'missing_api_key');
  });

  it('report --format json and csv carry the text report\'s figures', () => {
    // An answered call (it has a cost), and a model name that CSV must quote: a comma, double
    // quotes, CR LF (refused, logged with the name the client asked for).
    const odd = 'odd, "model"\r\nname';
    const ok = cgi('POST', '/v1/chat/completions', JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }));
    assert.match(ok.head, /^Status: 200/);
    const r = cgi('POST', '/v1/chat/completions', JSON.stringify({ model: odd, messages: [{ role: 'user', content: 'hi' }] }));
    assert.match(r.head, /^Status: 404/);
    const env = { PATH: process.env.PATH, LLM_ROUTER_CONFIG: path.join(ROOT, 'conf/llm-router.conf'), LLM_ROUTER_HOME: dir };
    if (process.env.ASAN_OPTIONS) env.ASAN_OPTIONS = process.env.ASAN_OPTIONS;
    const report = (...args) => {
      const out = run(['report', ...args], { env });
      assert.equal(out.status, 0, out.stderr);
      return out.stdout;
    };
    for (const by of ['tier', 'agent', 'model', 'day']) {
      const json = JSON.parse(report('--by', by, '--format', 'json'));
      const csv = parseCsv(report('--by', by, '--format', 'csv'));
      const cols = ['calls', 'input_tokens', 'output_tokens', 'usd', 'errors'];
      assert.deepEqual(csv[0], [by, ...cols, ...(by === 'tier' ? ['budget_usd', 'used_percent'] : [])]);
      assert.equal(json.by, by);
      assert.equal(json.days, 1);
      assert.equal(json.from, json.to);
      assert.equal(csv.length - 1, json.rows.length, 'a CSV row per JSON row, no total row');
      json.rows.forEach((row, i) => {
        assert.equal(csv[i + 1][0], row[by]);
        for (const [k, c] of cols.entries()) {
          assert.equal(typeof row[c], 'number', `${by}: ${c} is a number`);
          assert.equal(Number(csv[i + 1][k + 1]), row[c], `${by} ${row[by]}: ${c}`);
        }
        assert.match(csv[i + 1][4], /^\d+\.\d{9}$/, 'usd exactly, in nano-USD');
      });
      for (const c of cols) {
        const sum = json.rows.reduce((a, row) => a + row[c], 0);
        assert.ok(Math.abs(json.total[c] - sum) < 1e-9, `total ${c}: ${json.total[c]} against the rows' ${sum}`);
      }
      // The text table's figures, row by row (the model report's odd name spans two lines: its
      // rows are compared between JSON and CSV only).
      if (by === 'model') continue;
      const text = parseText(report('--by', by));
      assert.deepEqual(text.rows.map((t) => t.key), json.rows.map((row) => row[by]));
      json.rows.forEach((row, i) => {
        const t = text.rows[i];
        for (const c of ['calls', 'input_tokens', 'output_tokens', 'errors']) assert.equal(row[c], t[c], `${by} ${t.key}: ${c}`);
        assert.ok(Math.abs(row.usd - t.usd) <= 5e-7 + 1e-12, `${by} ${t.key}: usd ${row.usd} against ${t.usd}`);
        if (t.budget === undefined) {
          if (by === 'tier') assert.deepEqual([row.budget_usd, row.used_percent], [null, null]);
          else assert.ok(!('budget_usd' in row));
        } else {
          assert.equal(row.budget_usd, t.budget);
          assert.ok(Math.abs(row.used_percent - t.used) <= 0.05 + 1e-9, `${t.key}: used ${row.used_percent} % against ${t.used} %`);
        }
      });
      assert.equal(json.total.calls, text.total.calls);
      assert.ok(Math.abs(json.total.usd - text.total.usd) <= 5e-7 + 1e-12);
    }
    // The gpt-4o calls cost something; the T1 tier has a budget; the odd name comes back intact.
    const byTier = JSON.parse(report('--format', 'json'));
    assert.ok(byTier.total.usd > 0, 'the answered calls have a cost');
    const t1 = byTier.rows.find((row) => row.tier === 'T1');
    assert.ok(t1 && t1.budget_usd > 0 && t1.used_percent >= 0, JSON.stringify(byTier));
    const models = parseCsv(report('--by', 'model', '--format', 'csv'));
    assert.ok(models.some((row) => row[0] === odd && row[1] === '1' && row[5] === '1'), JSON.stringify(models));
    assert.ok(JSON.parse(report('--by', 'model', '--format', 'json')).rows.some((row) => row.model === odd));
    const week = JSON.parse(report('--days', '7', '--by', 'day', '--format', 'json'));
    assert.equal(week.days, 7);
    assert.notEqual(week.from, week.to);
    // Usage errors: exit status 2 and a message.
    for (const args of [['--format', 'xml'], ['--format'], ['--format', 'JSON']]) {
      const bad = run(['report', ...args], { env });
      assert.equal(bad.status, 2, args.join(' '));
      assert.equal(bad.stdout, '');
      assert.match(bad.stderr, args.length === 2 ? /--format takes text, json or csv/ : /usage: llm-router report/);
    }
  });
});

// The text report: "NAME calls input_tok output_tok usd errors [budget used%]" rows between the
// header and the total line.
function parseText(out) {
  const lines = out.split('\n');
  assert.match(lines[0], /^Spend \d{4}-\d{2}-\d{2}/);
  const rows = [];
  let total;
  for (const line of lines.slice(2)) {
    if (!line) continue;
    const m = line.match(/^(.*?)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+\.\d{6})\s+(\d+)\s*(?:([\d.]+)\s+([\d.]+)%)?\s*$/);
    if (m) {
      const row = { key: m[1], calls: +m[2], input_tokens: +m[3], output_tokens: +m[4], usd: +m[5], errors: +m[6] };
      if (m[7] !== undefined) Object.assign(row, { budget: +m[7], used: +m[8] });
      rows.push(row);
      continue;
    }
    const t = line.match(/^total\s+(\d+)\s+(\d+\.\d{6})$/);
    assert.ok(t, `a text report line neither a row nor the total: ${JSON.stringify(line)}`);
    total = { calls: +t[1], usd: +t[2] };
  }
  assert.ok(total, 'the text report ends with a total line');
  return { rows, total };
}

// RFC 4180, strictly: records end in CRLF (the last one too), a field is either plain (no comma,
// quote, CR or LF) or quoted with its quotes doubled. Returns the records as arrays of strings.
function parseCsv(text) {
  const records = [];
  let record = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        assert.ok(i < text.length, 'a quoted field runs to the end of the text');
        if (text[i] === '"') {
          if (text[i + 1] !== '"') { i++; break; }
          i++;
        }
        field += text[i++];
      }
    } else {
      while (i < text.length && !',\r\n'.includes(text[i])) {
        assert.notEqual(text[i], '"', 'a double quote inside a plain field');
        field += text[i++];
      }
    }
    record.push(field);
    if (text[i] === ',') { i++; continue; }
    assert.equal(text.slice(i, i + 2), '\r\n', `a record ends in CRLF (at ${i}: ${JSON.stringify(text.slice(i, i + 10))})`);
    i += 2;
    records.push(record);
    record = [];
    if (i === text.length) return records;
  }
}
