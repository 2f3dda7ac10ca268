// Every call's cost is bounded by its reservation (issue 13): the estimate is what is sent
// upstream (thinking budgets, n), a runaway stream is cut at the output the request allows, absurd
// usage is clamped and never makes a cost negative, committed spend never passes the budget
// whatever a hostile upstream sends, and a request too large for what is left is told so (its own
// code, no tier alert). Against the fake provider's hostile replies (tests/fake/hostile.js).
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { FRONT, SLOW, startStack, readSSE, waitFor } = require('./lib/harness');

const MSG = [{ role: 'user', content: 'hello' }];

async function post(router, body, headers = {}) {
  const r = await fetch(router.baseURL + '/chat/completions', {
    method: 'POST',
    headers: Object.assign({ 'content-type': 'application/json' }, headers),
    body: JSON.stringify(body),
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch (e) { json = undefined; }
  return { status: r.status, headers: r.headers, text, json };
}

// Header-mode identities (x-agent-name) so the tier comes from the agent; budgets on.
function boundsStack(edit = (t) => t, opts = {}) {
  return startStack(Object.assign({
    auth: true,
    procs: 2,
    webMaxBody: 16 << 20, // bodies reach the router on a shared host too (FcgidMaxRequestLen)
    threads: 4,
    config: (t) => edit(t.replace('auth_mode = "key";', 'auth_mode = "header";')),
  }, opts));
}

function setBudget(t, tier, usd) {
  const names = { T1: 'Strategic', T2: 'Operational', T3: 'Execution', T4: 'Automation' };
  return t.replace(new RegExp(`(${tier} = \\{\\n\\s*name = "${names[tier]}";\\n\\s*daily_budget_usd = )[0-9.]+;`), `$1${usd};`);
}

const day = () => new Date().toISOString().slice(0, 10);
const spend = (router, scope) => router.db(`SELECT * FROM budget_spend WHERE day = '${day()}' AND scope = '${scope}'`)[0] || { spent_nusd: 0, reserved_nusd: 0 };

async function stream(router, body, headers) {
  const r = await fetch(router.baseURL + '/chat/completions', {
    method: 'POST',
    headers: Object.assign({ 'content-type': 'application/json' }, headers),
    body: JSON.stringify(Object.assign({ stream: true }, body)),
  });
  const events = r.status === 200 ? await readSSE(r) : [];
  const text = r.status === 200 ? '' : await r.text();
  return { status: r.status, headers: r.headers, events, text, id: r.headers.get('x-request-id') };
}

function contentChars(events) {
  let n = 0;
  for (const e of events) {
    if (!e.data || e.data === '[DONE]') continue;
    const j = JSON.parse(e.data);
    for (const c of j.choices || []) n += ((c.delta && c.delta.content) || '').length;
  }
  return n;
}

describe('the estimate is what is sent upstream', () => {
  it('thirty concurrent thinking requests with max_tokens 1 against T1\'s $50 admit at most what $50 covers', async () => {
    // Anthropic raises max_tokens 1 to budget_tokens + 1 = 32,000 output tokens at claude-opus-4-6's
    // $75/M: $2.40 each, so $50 covers 20 at once. Each admitted call is held 6 s by the fake, so
    // that none settles (and frees its reservation) before all thirty have been decided.
    const stack = await boundsStack((t) => t, { threads: 16 });
    try {
      await stack.fake.script('anthropic', Array.from({ length: 30 }, () => ({ delay_ms: 6000 * SLOW })));
      const body = { model: 'claude-opus-4-6', max_tokens: 1, thinking: { type: 'enabled', budget_tokens: 31999 }, messages: MSG };
      const results = await Promise.all(Array.from({ length: 30 }, (_, i) =>
        post(stack.router, body, { 'x-agent-name': i % 2 ? 'ai_director' : 'chief_of_staff' })));
      const ok = results.filter((r) => r.status === 200);
      const refused = results.filter((r) => r.status !== 200);
      const bodyBytes = JSON.stringify(body).length;
      const worst = bodyBytes * 15000 + 32000 * 75000;
      const covers = Math.floor(50e9 / worst);
      console.log(`# ${FRONT}: ${ok.length} of 30 admitted (worst case $${(worst / 1e9).toFixed(4)} each, $50 covers ${covers})`);
      assert.ok(ok.length >= 1, 'some were admitted');
      // The bound is on calls in flight at once: where the web server hands requests over in
      // batches (mod_fcgid spawns its processes one by one), or a loaded machine admits them
      // slowly, a call may be admitted after another settled. Each admitted call holds its
      // reservation at least from its first upstream attempt to 50 ms before its row's end (the
      // settlement follows its last byte): at most `covers` such spans ever overlap. When every
      // call was decided before the first admitted one ended, at most `covers` were admitted at all.
      await waitFor(() => stack.router.db('SELECT count(*) AS n FROM request_log')[0].n === 30, 20000 * SLOW, 'every row');
      const rows = stack.router.db('SELECT r.status, r.ts_end_ms AS e, (SELECT min(a.ts_start_ms) FROM request_attempts a WHERE a.request_id = r.request_id) AS a FROM request_log r');
      const admitted = rows.filter((x) => x.status === 200);
      const edges = [];
      for (const row of admitted) edges.push([row.a, 1], [row.e - 50, -1]);
      edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      let inFlight = 0; let most = 0;
      for (const [, d] of edges) { inFlight += d; most = Math.max(most, inFlight); }
      assert.ok(most <= covers, `${most} admitted calls in flight at once, at most ${covers}`);
      const lastDecided = Math.max(...admitted.map((x) => x.a), ...rows.filter((x) => x.status !== 200).map((x) => x.e));
      const firstSettled = Math.min(...admitted.map((x) => x.e)) - 50;
      if (lastDecided < firstSettled) assert.ok(ok.length <= covers, `${ok.length} admitted, at most ${covers}`);
      for (const r of refused) {
        assert.equal(r.status, 429, r.text);
        assert.equal(r.json.error.code, 'budget_request_too_large', r.text);
        assert.match(r.json.error.message, /worst case \(\$2\.40\d+\) does not fit the \$[0-9.]+ left today/);
        assert.equal(r.headers.get('x-should-retry'), 'true', 'waiting for the calls in flight helps');
        assert.equal(r.headers.get('retry-after'), '2');
      }
      // What was sent upstream is what was reserved for.
      const sent = (await stack.fake.requests()).filter((x) => x.api === 'anthropic');
      assert.ok(sent.length >= ok.length);
      for (const x of sent) assert.equal((typeof x.body === 'string' ? JSON.parse(x.body) : x.body).max_tokens, 32000);
      assert.equal(stack.router.db("SELECT count(*) AS n FROM budget_alerts WHERE scope = 'tier:T1'")[0].n, 0, 'no tier alert');
      const led = spend(stack.router, 'tier:T1');
      assert.equal(led.reserved_nusd, 0);
      assert.equal(led.spent_nusd, stack.router.db("SELECT sum(cost_nusd) AS s FROM request_log WHERE tier = 'T1'")[0].s);
    } finally { await stack.stop(); }
  });
});

describe('output beyond what the request allows', () => {
  for (const [provider, model] of [['openai', 'gpt-4o-mini'], ['anthropic', 'claude-haiku-4-5']]) {
    it(`an endless ${provider} stream is cut at the request's output bound; the charge stays within its reservation`, async () => {
      const stack = await boundsStack();
      try {
        await stack.fake.script(provider, [{ hostile: { kind: 'endless', max_ms: 6000 } }]);
        const t0 = Date.now();
        const { result: r, rssMB, hwmMB } = await stack.router.measureMemory(() =>
          stream(stack.router, { model, max_tokens: 100, messages: MSG }, { 'x-agent-name': 'ai_director' }));
        const ms = Date.now() - t0;
        assert.equal(r.status, 200, r.text);
        const chars = contentChars(r.events);
        const row = await stack.router.row(r.id);
        console.log(`# ${FRONT} ${provider}: ${chars} characters relayed in ${ms} ms, cost_nusd ${row.cost_nusd}, output_tokens ${row.output_tokens}, RSS ${rssMB} MB (peak ${hwmMB})`);
        const last = r.events[r.events.length - 1];
        assert.equal(last.data, '[DONE]');
        const err = JSON.parse(r.events[r.events.length - 2].data);
        assert.equal(err.error.code, 'output_limit_exceeded', JSON.stringify(err));
        assert.match(err.error.message, /more output than the request allows \(100 tokens\)/);
        assert.ok(chars <= 100 * 8 + 4096, `${chars} characters relayed`);
        assert.ok(ms < 5000, `cut at once (${ms} ms), not at the upstream's end`);
        assert.equal(row.partial, 1);
        assert.equal(row.error_code, 'output_limit_exceeded');
        const prices = // the dearest of each chain (gpt-4o-mini falls back to deepseek-chat)
        { 'gpt-4o-mini': [270, 1100], 'claude-haiku-4-5': [800, 4000] }[model];
        const worst = 4096 * prices[0] + 100 * prices[1];
        assert.ok(row.cost_nusd >= 0 && row.cost_nusd <= worst, `charged ${row.cost_nusd} <= ${worst}`);
        assert.ok(rssMB < 200, `RSS ${rssMB} MB`);
      } finally { await stack.stop(); }
    });
  }
});

describe('absurd usage', () => {
  const cases = [
    ['openai', 'gpt-4o-mini', { prompt_tokens: 10, completion_tokens: 1.23e14, total_tokens: 1.23e14 }],
    ['openai', 'gpt-4o-mini', { prompt_tokens: -5, completion_tokens: -1e15, total_tokens: -3 }],
    ['openai', 'gpt-4o-mini', { prompt_tokens: 9223372036854775807, completion_tokens: 9223372036854775807 }],
    ['anthropic', 'claude-haiku-4-5', { input_tokens: 10, output_tokens: 1.23e14 }],
    ['anthropic', 'claude-haiku-4-5', { input_tokens: -5, output_tokens: -7 }],
    ['anthropic', 'claude-haiku-4-5', { input_tokens: 9223372036854775807, output_tokens: 9223372036854775807 }],
  ];
  it('counts are clamped, the charge is bounded by the reservation, spend is never negative', async () => {
    const stack = await boundsStack();
    try {
      const figures = [];
      for (const [provider, model, usage] of cases) {
        for (const streaming of [false, true]) {
          await stack.fake.script(provider, [{ hostile: { kind: 'usage', usage } }]);
          const body = { model, max_tokens: 50, messages: MSG };
          const r = streaming ? await stream(stack.router, body, { 'x-agent-name': 'ai_director' })
            : await post(stack.router, body, { 'x-agent-name': 'ai_director' });
          const id = streaming ? r.id : r.headers.get('x-request-id');
          const row = await stack.router.row(id);
          figures.push(`${provider} ${JSON.stringify(usage)} ${streaming ? 'stream' : 'json'}: status ${r.status} cost_nusd ${row.cost_nusd} output_tokens ${row.output_tokens}`);
          const prices = // the dearest of each chain (gpt-4o-mini falls back to deepseek-chat)
        { 'gpt-4o-mini': [270, 1100], 'claude-haiku-4-5': [800, 4000] }[model];
          const worst = JSON.stringify(Object.assign(streaming ? { stream: true } : {}, body)).length * prices[0] + 50 * prices[1];
          assert.ok(row.cost_nusd >= 0 && row.cost_nusd <= worst, `${figures[figures.length - 1]} <= ${worst}`);
          if (row.output_tokens !== null) assert.ok(row.output_tokens >= 0 && row.output_tokens <= 1e9);
          if (r.status === 200 && !streaming && r.json.usage) {
            assert.ok(r.json.usage.completion_tokens >= 0 && r.json.usage.completion_tokens <= 1e9, JSON.stringify(r.json.usage));
          }
        }
      }
      console.log('# ' + FRONT + '\n# ' + figures.join('\n# '));
      const led = spend(stack.router, 'tier:T1');
      assert.ok(led.spent_nusd >= 0, `spend ${led.spent_nusd}`);
      const sum = stack.router.db("SELECT sum(cost_nusd) AS s, min(cost_nusd) AS m FROM request_log")[0];
      assert.ok(sum.m >= 0);
      assert.equal(led.spent_nusd, sum.s, 'the ledger is the log');
      // sum() in the report views does not overflow.
      assert.ok(stack.router.db('SELECT * FROM spend_today_model').length >= 1);
    } finally { await stack.stop(); }
  });

  it('with max_tokens sent, committed spend never exceeds a small budget whatever the upstream sends', async () => {
    // T2: $0.002. Each call: max_tokens 200 on gpt-4o-mini (worst ~ $0.00015); the fake answers
    // with endless streams and absurd usage in turn.
    const limit = 0.002;
    const stack = await boundsStack((t) => setBudget(t, 'T2', limit));
    try {
      const kinds = [
        { hostile: { kind: 'endless', max_ms: 5000 } },
        { hostile: { kind: 'usage', usage: { prompt_tokens: 10, completion_tokens: 1.23e14, total_tokens: 5 } } },
        { hostile: { kind: 'usage', usage: { prompt_tokens: 9223372036854775807, completion_tokens: 1 } } },
      ];
      await stack.fake.script('openai', Array.from({ length: 40 }, (_, i) => kinds[i % 3]));
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) =>
        stream(stack.router, { model: 'gpt-4o-mini', max_tokens: 200, messages: MSG }, { 'x-agent-name': ['sales_agent', 'hr_agent', 'devops_agent'][i % 3] })));
      assert.ok(results.some((r) => r.status === 200));
      await waitFor(() => stack.router.db('SELECT count(*) AS n FROM request_log')[0].n === 40, 15000 * SLOW, 'every row');
      const logged = stack.router.db("SELECT sum(cost_nusd) AS s, min(cost_nusd) AS m FROM request_log WHERE tier = 'T2'")[0];
      const led = spend(stack.router, 'tier:T2');
      console.log(`# ${FRONT}: committed ${logged.s} nano-USD of ${limit * 1e9} (${results.filter((r) => r.status === 200).length} of 40 admitted)`);
      assert.ok(logged.m >= 0);
      assert.ok(logged.s <= limit * 1e9, `SUM(cost) ${logged.s} <= ${limit * 1e9}`);
      assert.equal(led.spent_nusd, logged.s);
      assert.equal(led.reserved_nusd, 0);
    } finally { await stack.stop(); }
  });
});

describe('refusals say what happened', () => {
  it('too large for the whole budget: 400, no Retry-After, no tier alert', async () => {
    const stack = await boundsStack();
    try {
      const r = await post(stack.router, { model: 'gpt-4o-mini', n: 128, max_tokens: 100000000, messages: MSG }, { 'x-agent-name': 'docops_agent' });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.code, 'budget_request_too_large');
      assert.equal(r.json.error.type, 'invalid_request_error');
      assert.match(r.json.error.message, /worst case \(\$14080\.\d+\) is more than the whole daily budget of tier T3 \(\$5\.000000\); lower max_tokens/);
      assert.equal(r.headers.get('retry-after'), null);
      assert.equal(r.headers.get('x-should-retry'), 'false');
      assert.equal(stack.router.db('SELECT count(*) AS n FROM budget_alerts')[0].n, 0, 'no alert');
      const row = await stack.router.row(r.headers.get('x-request-id'));
      assert.equal(row.error_code, 'budget_request_too_large');
    } finally { await stack.stop(); }
  });

  it('$4.40 of $5 spent: the settling request raises the warn alert at the configured level; max_tokens 200000 does not fit; the budget really exhausted says so', async () => {
    const stack = await boundsStack((t) => t.replace('warn_percent = 90;', 'warn_percent = 80;')
      .replace('webhook_url = "";', 'webhook_url = "@FAKE_URL@/_hook";'));
    try {
      const who = { 'x-agent-name': 'docops_agent' };
      // 4,000,000 output tokens at deepseek-chat's $1.10/M: $4.40 (within the $4.51 reserved).
      await stack.fake.script('deepseek', [{ hostile: { kind: 'usage', usage: { prompt_tokens: 0, completion_tokens: 4000000, total_tokens: 4000000 } } }]);
      const big = await post(stack.router, { model: 'deepseek-chat', max_tokens: 4100000, messages: MSG }, who);
      assert.equal(big.status, 200, big.text);
      const row = await stack.router.row(big.headers.get('x-request-id'));
      assert.equal(row.cost_nusd, 4400000000);
      // The settling request crossed 80 %: its alert is there before any other request.
      const alerts = stack.router.db("SELECT level FROM budget_alerts WHERE scope = 'tier:T3'");
      assert.deepEqual(alerts.map((a) => a.level), [80], 'the warn alert at the configured level, at once');
      const hook = await waitFor(async () => (await stack.fake.hooks()).find((h) => h.body.scope === 'tier:T3'), 5000 * SLOW, 'the webhook');
      assert.equal(hook.body.level_percent, 80);
      // 200,000 tokens of claude-haiku-4-5 ($4/M): $0.80 > the $0.60 left.
      const r = await post(stack.router, { model: 'claude-haiku-4-5', max_tokens: 200000, messages: MSG }, who);
      assert.equal(r.status, 429, r.text);
      assert.equal(r.json.error.code, 'budget_request_too_large');
      assert.match(r.json.error.message, /This request's worst case \(\$0\.80\d+\) does not fit the \$0\.(59|60)\d+ left today of the daily budget of tier T3 .*lower max_tokens, or retry after 00:00 UTC/);
      assert.equal(r.headers.get('x-should-retry'), 'false');
      assert.ok(Number(r.headers.get('retry-after')) > 0, 'it would fit tomorrow');
      assert.equal(stack.router.db("SELECT count(*) AS n FROM budget_alerts WHERE level = 100")[0].n, 0, 'no block alert for a request too large');
      // A smaller one still fits.
      const small = await post(stack.router, { model: 'claude-haiku-4-5', max_tokens: 100, messages: MSG }, who);
      assert.equal(small.status, 200, small.text);
      // Fill the rest: then not even a request's floor fits: exhausted, and the block alert fires.
      await stack.fake.script('deepseek', [{ hostile: { kind: 'usage', usage: { prompt_tokens: 0, completion_tokens: 500000, total_tokens: 500000 } } }]);
      const rest = await post(stack.router, { model: 'deepseek-chat', max_tokens: 540000, messages: MSG }, who);
      assert.equal(rest.status, 200, rest.text);
      const left = 5e9 - spend(stack.router, 'tier:T3').spent_nusd;
      const pad = 'x'.repeat(Math.ceil(left / 150) + 10);
      const ex = await post(stack.router, { model: 'gpt-4o-mini', max_tokens: 1, messages: [{ role: 'user', content: pad }] }, who);
      assert.equal(ex.status, 429, ex.text);
      assert.equal(ex.json.error.code, 'budget_exceeded');
      assert.match(ex.json.error.message, /tier T3 is exhausted/);
      assert.deepEqual(stack.router.db("SELECT level FROM budget_alerts WHERE scope = 'tier:T3' ORDER BY level").map((a) => a.level), [80, 100]);
    } finally { await stack.stop(); }
  });
});
