// The dashboard (www/dashboard/) behind each ROUTER_FRONT (see lib/harness.js): the web server
// serves the static page to anyone, /v1/router/stats and /metrics reach the router and need the
// admin key, and Debian's headless Chromium, after traffic from agents of the four tiers (several
// models, one failing call), shows each tier's spend against its budget, the capped agent, the
// agents and models and the last requests - agent names as text, never as markup - while without
// the key or with a wrong one it shows the refusal and no figure. Screenshots are kept in the run's
// artifacts directory (ROUTER_ARTIFACTS, printed at the end of tests/tools/run-integration.sh).
'use strict';
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFile } = require('child_process');
const { FRONT, SLOW, artifactsDir, startStack, waitFor } = require('./lib/harness');
const { get, assertEnvelope } = require('./lib/rawhttp');

const ADMIN_KEY = 'admin-dashboard-key-0123456789';
const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));
// An agent name chosen by the client (auth_mode "header"): it must reach the page as text.
const HOSTILE = '<img src=x onerror="document.title=1">';
// conf/llm-router.conf's daily budgets; T4's agents get a cap of their own here.
const BUDGETS = { T1: 50, T2: 15, T3: 5, T4: 10 };
const AGENT_CAP = 1.5;
const MSG = [{ role: 'user', content: 'hello' }];

// Headless Chromium with a profile of its own and nothing but loopback to talk to: resolves to
// its stdout (the DOM with --dump-dom).
function chromium(args, url) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'llm-router-chromium-'));
  const argv = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', `--user-data-dir=${profile}`,
    '--no-first-run', '--no-default-browser-check', '--disable-extensions', '--disable-sync', '--disable-background-networking',
    '--disable-component-update', '--disable-domain-reliability', '--disable-client-side-phishing-detection', '--no-pings',
    '--virtual-time-budget=8000', ...args, url];
  const env = { PATH: process.env.PATH, HOME: profile, XDG_CONFIG_HOME: profile, XDG_CACHE_HOME: profile, LANG: 'C.UTF-8', TZ: 'UTC' };
  return new Promise((resolve, reject) => {
    execFile(CHROMIUM, argv, { env, timeout: 90000 * SLOW, maxBuffer: 32 << 20 }, (err, stdout, stderr) => {
      fs.rmSync(profile, { recursive: true, force: true });
      if (err) reject(new Error(`chromium ${args.join(' ')} ${url}: ${err.message}\n${String(stderr).slice(-3000)}`));
      else resolve(stdout);
    });
  });
}

// ---- reading the dumped DOM (the page's own markup: ids, classes and data- attributes) ----

const decode = (s) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&nbsp;/g, ' ').replace(/&amp;/g, '&');
const text = (html) => decode(html.replace(/<[^>]*>/g, ' ')).replace(/\s+/g, ' ').trim();

function attrs(tag) {
  const out = {};
  for (const m of tag.matchAll(/\s([a-z-]+)(?:="([^"]*)")?/g)) out[m[1]] = m[2] === undefined ? '' : decode(m[2]);
  return out;
}

// The element with this id (sections, tables and lists do not nest their own kind here).
function byId(html, tag, id) {
  const m = new RegExp(`<${tag} id="${id}"([^>]*)>([\\s\\S]*?)</${tag}>`).exec(html);
  assert.ok(m, `<${tag} id="${id}"> in the page`);
  return { attrs: attrs(m[1]), html: m[2] };
}

// Budget bars: [{attrs, label, text}] (text: the figures beside the bar).
function bars(html) {
  return [...html.matchAll(/<div (class="bar-row[^"]*"[^>]*)>([\s\S]*?<\/span><\/span>)<\/div>/g)].map((m) => ({
    attrs: attrs(' ' + m[1]),
    label: text(/<span class="bar-label">([\s\S]*?)<\/span><div/.exec(m[2])[1]),
    text: text(/<span class="bar-text">([\s\S]*)$/.exec(m[2])[1]),
  }));
}

// Table body rows: [{attrs, cells: [text]}].
function rows(html) {
  const body = /<tbody>([\s\S]*?)<\/tbody>/.exec(html);
  if (!body) return [];
  return [...body[1].matchAll(/<tr([^>]*)>([\s\S]*?)<\/tr>/g)].map((m) => ({
    attrs: attrs(m[1]), cells: [...m[2].matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((c) => text(c[1])),
  }));
}

// The page holds no figure: no bar, no table row but the "nothing yet" ones, no chart.
function assertNoData(html, what) {
  assert.equal(bars(html).length, 0, `${what}: no budget bar`);
  for (const id of ['agents', 'models', 'latency', 'recent']) {
    assert.deepEqual(rows(byId(html, 'section', id).html), [], `${what}: no row in #${id}`);
  }
  assert.doesNotMatch(html, /<svg|data-chart=|data-request-id=/, `${what}: no chart, no request`);
  for (const name of ['ai_director', 'n8n_engineer', 'gpt-4o-mini', 'onerror']) assert.ok(!html.includes(name), `${what}: ${name} is not on the page`);
}

describe(`the dashboard behind ${FRONT}`, () => {
  let stack;
  let port;
  let page;
  const ids = [];
  before(async () => {
    assert.ok(CHROMIUM, 'chromium is not installed (tests/tools/deps.sh test installs it)');
    stack = await startStack({
      auth: true,
      env: { LLM_ROUTER_ADMIN_KEY: ADMIN_KEY },
      config: (t) => t.replace('auth_mode = "key";', 'auth_mode = "header";')
        .replace(/(T4 = \{\n\s*name = "Automation";\n\s*daily_budget_usd = [0-9.]+;)/, `$1\n    agent_daily_budget_usd = ${AGENT_CAP};`),
    });
    port = stack.router.port;
    page = `http://127.0.0.1:${port}/dashboard/`;
    const call = async (agent, body, expect = 200) => {
      const r = await fetch(stack.router.baseURL + '/chat/completions', {
        method: 'POST', headers: { 'content-type': 'application/json', 'x-agent-name': agent }, body: JSON.stringify(body),
      });
      const t = await r.text();
      assert.equal(r.status, expect, `${agent} ${body.model}: ${t}`);
      ids.push(r.headers.get('x-request-id'));
    };
    // Agents of the four tiers, five models of four providers, a stream (time to first token).
    await call('ai_director', { model: 'gpt-4o', messages: MSG });
    await call('ai_director', { model: 'claude-sonnet-4-5', messages: MSG, stream: true });
    await call('devops_agent', { model: 'claude-haiku-4-5', messages: MSG });
    await call('kb_manager', { model: 'gemini-2.0-flash', messages: MSG });
    await call('n8n_engineer', { model: 'deepseek-chat', messages: MSG });
    await call('n8n_engineer', { model: 'gpt-4o-mini', messages: MSG });
    await call(HOSTILE, { model: 'gpt-4o-mini', messages: MSG });
    // One failing call: the provider refuses it (no fallback for a 400).
    await stack.fake.script('openai', [{ status: 400, body: { error: { message: 'bad request', type: 'invalid_request_error', code: 'invalid_value' } } }]);
    await call('devops_agent', { model: 'gpt-4o-mini', messages: MSG }, 400);
    // Rows are written as responses end.
    await waitFor(() => stack.router.db('SELECT count(*) AS n FROM request_log WHERE agent IS NOT NULL')[0].n >= ids.length, 5000 * SLOW, 'the log rows');
  });
  after(async () => { if (stack) await stack.stop(); });

  const stats = async (key) => fetch(stack.router.baseURL + '/router/stats', { headers: key ? { authorization: `Bearer ${key}` } : {} });

  it('the web server serves the page without any key', async () => {
    const index = await get(port, '/dashboard/');
    assert.equal(index.status, 200, index.body.slice(0, 300));
    assert.match(index.headers['content-type'], /^text\/html/);
    assert.match(index.body, /<script src="app\.js" defer><\/script>/);
    assert.match(index.body, /<section id="tiers"/);
    assert.equal((await get(port, '/dashboard/index.html')).body, index.body);
    const js = await get(port, '/dashboard/app.js');
    assert.equal(js.status, 200);
    assert.match(js.headers['content-type'], /javascript/);
    assert.equal(js.body, fs.readFileSync(path.join(__dirname, '../../www/dashboard/app.js'), 'latin1'));
    const css = await get(port, '/dashboard/style.css');
    assert.equal(css.status, 200);
    assert.match(css.headers['content-type'], /^text\/css/);
    // Without the slash: redirected to the page (its relative URLs need the slash).
    const bare = await get(port, '/dashboard', { Host: `127.0.0.1:${port}` });
    assert.ok([301, 302].includes(bare.status), `/dashboard: ${bare.status}`);
    assert.match(bare.headers.location, new RegExp(`^(http://127\\.0\\.0\\.1:${port})?/dashboard/$`));
    assertEnvelope(await get(port, '/dashboard/nothing.js'), [403, 404], 'a missing dashboard file');
  });

  it('/v1/router/stats and /metrics reach the router and need the admin key', async () => {
    for (const [key, what] of [[null, 'no key'], ['wrong-key', 'a wrong key'], [ADMIN_KEY.slice(0, -1), 'a prefix of the key']]) {
      const r = await stats(key);
      assert.equal(r.status, 401, what);
      const e = (await r.json()).error;
      assert.equal(e.type, 'invalid_request_error', what);
      assert.ok(['invalid_api_key', 'missing_api_key'].includes(e.code), `${what}: ${e.code}`);
    }
    const ok = await stats(ADMIN_KEY);
    assert.equal(ok.status, 200);
    assert.match(ok.headers.get('content-type'), /^application\/json/);
    assert.equal((await ok.json()).object, 'router.stats');
    // /metrics is the router's (its JSON 401), not a file of the web server.
    assertEnvelope(await get(port, '/metrics'), [401], '/metrics without the key');
    const m = await get(port, '/metrics', { Authorization: `Bearer ${ADMIN_KEY}` });
    assert.equal(m.status, 200, m.body.slice(0, 300));
    assert.match(m.headers['content-type'], /^text\/plain/);
    assert.match(m.body, /^# HELP llm_router_/m);
    assert.ok(!stack.router.errorLog().includes(ADMIN_KEY), 'the admin key is never logged');
  });

  it('in Chromium, with the key in the address: tiers, capped agent, agents, models, hours, last requests', async () => {
    const s = await (await stats(ADMIN_KEY)).json();
    const html = await chromium(['--dump-dom'], `${page}#key=${ADMIN_KEY}`);
    const shot = path.join(artifactsDir(), 'dashboard.png');
    await chromium([`--screenshot=${shot}`, '--window-size=1280,2400', '--hide-scrollbars'], `${page}#key=${ADMIN_KEY}`);
    assert.ok(fs.statSync(shot).size > 10000, shot);
    console.log(`# ${FRONT}: screenshot of the dashboard: ${shot}`);

    assert.match(html, /<body data-state="ready">/, html.slice(0, 2000));
    assert.ok(!html.includes(ADMIN_KEY), 'the key is not on the page');
    assert.ok(byId(html, 'section', 'login').attrs.hidden !== undefined, 'the key form is hidden');
    assert.notEqual(byId(html, 'p', 'error').attrs.hidden, undefined, 'no error shown');
    assert.match(text(byId(html, 'p', 'status').html), new RegExp(`Day ${s.day} \\(UTC\\) · updated \\d\\d:\\d\\d:\\d\\d UTC · database up`));

    // The four tiers: spend against the budget, as bars with their figures in text.
    const tiers = bars(byId(html, 'section', 'tiers').html);
    assert.deepEqual(tiers.map((b) => b.attrs['data-tier']), ['T1', 'T2', 'T3', 'T4']);
    for (const b of tiers) {
      const tier = b.attrs['data-tier'];
      const st = s.tiers.find((x) => x.tier === tier);
      assert.equal(Number(b.attrs['data-budget']), BUDGETS[tier], tier);
      assert.equal(Number(b.attrs['data-spent']), st.spent_usd, tier);
      assert.ok(st.spent_usd > 0, `${tier} spent something`);
      assert.match(b.label, new RegExp(`^${tier}\\b`));
      assert.match(b.text, new RegExp(`^\\$[0-9.]+ of \\$${BUDGETS[tier].toFixed(2)} · [0-9.]+ %`), `${tier}: ${b.text}`);
    }
    // The capped agent, with its cap.
    const caps = bars(byId(html, 'section', 'agent-caps').html);
    assert.deepEqual(caps.map((b) => b.attrs['data-agent']), ['n8n_engineer']);
    assert.equal(Number(caps[0].attrs['data-budget']), AGENT_CAP);
    assert.equal(caps[0].label, 'n8n_engineer');
    assert.match(caps[0].text, /^\$[0-9.]+ of \$1\.50 · [0-9.]+ % .*tier T4$/, caps[0].text);

    // The agents and the models that spent it.
    // (Requests without an agent, such as refused calls of these endpoints, may add "(anonymous)".)
    const agents = rows(byId(html, 'section', 'agents').html).filter((r) => r.attrs['data-agent'] !== '');
    assert.deepEqual(agents.map((r) => r.attrs['data-agent']).sort(), ['ai_director', 'devops_agent', 'kb_manager', 'n8n_engineer', HOSTILE].sort());
    assert.deepEqual(agents.find((r) => r.attrs['data-agent'] === 'ai_director').cells.slice(0, 3), ['ai_director', 'T1', '2']);
    assert.deepEqual(agents.find((r) => r.attrs['data-agent'] === HOSTILE).cells.slice(0, 2), [HOSTILE, 'T3']);
    assert.ok(!/<img/i.test(html.replace(/="[^"]*"/g, '=""')), 'the agent name is text, not an element');
    assert.match(html, /<title>LLM Router - dashboard<\/title>/, 'no script of the name ran');
    const models = rows(byId(html, 'section', 'models').html);
    assert.deepEqual(models.map((r) => r.attrs['data-model']).sort(), ['claude-haiku-4-5', 'claude-sonnet-4-5', 'deepseek-chat', 'gemini-2.0-flash', 'gpt-4o', 'gpt-4o-mini']);
    const mini = models.find((r) => r.attrs['data-model'] === 'gpt-4o-mini');
    assert.deepEqual(mini.cells.slice(0, 4), ['gpt-4o-mini', 'openai', '3', '1'], 'three calls, one failed');
    const latency = rows(byId(html, 'section', 'latency').html);
    assert.equal(latency.length, models.length);
    for (const r of latency) assert.match(r.cells[1], /^[0-9.]+ m?s$/, `latency p50 of ${r.cells[0]}`);
    assert.match(latency.find((r) => r.attrs['data-model'] === 'claude-sonnet-4-5').cells[3], /^[0-9.]+ m?s$/, 'first token of the stream');

    // Four charts of 24 hours; this hour holds the calls.
    const charts = [...html.matchAll(/<figure class="chart" data-chart="([a-z]+)" data-total="([0-9.e-]+)">/g)].map((m) => [m[1], Number(m[2])]);
    assert.deepEqual(charts.map((c) => c[0]), ['requests', 'errors', 'fallbacks', 'cost']);
    // (The page's own calls of /v1/router/stats may count too.)
    assert.ok(charts[0][1] >= s.hours.reduce((a, h) => a + h.requests, 0), JSON.stringify(charts));
    assert.ok(charts[0][1] >= ids.length && charts[1][1] >= 1, JSON.stringify(charts));
    assert.equal((html.match(/<g class="bar-g"/g) || []).length, 4 * 24);
    assert.equal(rows(byId(html, 'table', 'hours-table').html).length, 24);
    assert.ok(byId(html, 'section', 'cooling').html.includes('No model is cooling down.'));

    // The last requests, newest first: every call of this test, the failed one as such.
    const recent = rows(byId(html, 'section', 'recent').html);
    assert.ok(recent.length >= Math.min(50, s.recent.length) && recent.length <= 50, `${recent.length} rows`);
    for (const id of ids) assert.ok(recent.some((r) => r.attrs['data-request-id'] === id), `request ${id} in the last requests`);
    const failed = recent.find((r) => r.attrs['data-request-id'] === ids[ids.length - 1]);
    assert.equal(failed.attrs['data-status'], '400');
    assert.equal(failed.attrs.class, 'failed');
    assert.deepEqual(failed.cells.slice(1, 4), ['devops_agent', 'T2', 'gpt-4o-mini']);
    assert.match(failed.cells[0], /^\d\d:\d\d:\d\d$/);
    assert.match(failed.cells[4], /^400/);
    const first = recent.find((r) => r.attrs['data-request-id'] === ids[0]);
    assert.deepEqual(first.cells.slice(1, 5), ['ai_director', 'T1', 'gpt-4o', '200']);
    assert.match(first.cells[5], /^\d+ \/ \d+$/, 'tokens in / out');
    assert.match(first.cells[6], /^\$[0-9.]+$/, 'cost');
    assert.match(first.cells[7], /^[0-9.]+ m?s$/, 'latency');
  });

  it('in Chromium, without the key or with a wrong one: the refusal and no figure', async () => {
    const none = await chromium(['--dump-dom'], page);
    assert.match(none, /<body data-state="no-key">/);
    const login = byId(none, 'section', 'login');
    assert.equal(login.attrs.hidden, undefined, 'the key form is shown');
    assert.match(text(login.html), /Enter the admin key/);
    assert.notEqual(byId(none, 'div', 'dashboard').attrs.hidden, undefined, 'the figures are hidden');
    assertNoData(none, 'no key');

    const url = `${page}#key=wrong-key-0123456789`;
    const wrong = await chromium(['--dump-dom'], url);
    const shot = path.join(artifactsDir(), 'dashboard-refused.png');
    await chromium([`--screenshot=${shot}`, '--window-size=1280,900', '--hide-scrollbars'], url);
    console.log(`# ${FRONT}: screenshot of the refusal: ${shot}`);
    assert.match(wrong, /<body data-state="refused">/);
    const refused = byId(wrong, 'section', 'login');
    assert.equal(refused.attrs.hidden, undefined, 'the key form is shown again');
    assert.equal(refused.attrs['data-reason'], 'refused');
    assert.match(text(byId(wrong, 'p', 'login-message').html), /The router refused this key\. \(401 invalid_api_key/);
    assert.notEqual(byId(wrong, 'div', 'dashboard').attrs.hidden, undefined, 'the figures are hidden');
    assert.ok(!wrong.includes('wrong-key-0123456789'), 'the key is not on the page');
    assertNoData(wrong, 'a wrong key');
  });
});
