// LLM Router dashboard: reads GET /v1/router/stats (same origin) with the admin key every 10 s and
// draws it - budget bars, tables, hourly charts as inline SVG.
//
// No dependency and no build step: www/ is uploaded to a shared host as it is. Every string from
// the router reaches the page as a text node or an attribute value (textContent, setAttribute),
// never as markup: agent names and error texts are chosen by clients.
//
// The admin key is kept in sessionStorage (this tab only). #key=... in the address is taken,
// stored and removed from the address at once. A 401 or 403 forgets the key, empties the page and
// asks for the key again; other failures keep the last figures on screen and retry.
'use strict';

(function () {
  const KEY_STORE = 'llm-router-admin-key';
  const REFRESH_MS = 10000;
  // Relative to the page: a site in a subdirectory (/ai/dashboard/) reads /ai/v1/router/stats.
  const STATS_URL = new URL('../v1/router/stats', document.baseURI).href;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const $ = (sel) => document.querySelector(sel);
  let memoryKey = null;        // when sessionStorage is unavailable
  let timer = null;
  let generation = 0;          // a newer load makes the answer of an older one void

  // ---- DOM helpers: text only, never markup ----

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG_NS, tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.setAttribute('class', v);
      else if (k === 'text') e.textContent = String(v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function append(e, children) {
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
  }

  // ---- formatting ----

  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const DASH = '\u2014';
  const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

  function fmtInt(v) { return isNum(v) ? intFmt.format(v) : DASH; }

  function fmtUSD(v) {
    if (!isNum(v)) return DASH;
    const a = Math.abs(v);
    if (a === 0) return '$0.00';
    if (a >= 1) return '$' + v.toFixed(2);
    if (a >= 0.01) return '$' + v.toFixed(4);
    if (a >= 0.000001) return '$' + v.toFixed(6);
    return '$' + v.toExponential(1);
  }

  // An axis label: two significant digits at most ($0.0005, $0.00025, $2.5).
  function fmtAxisUSD(v) {
    if (!isNum(v) || v === 0) return '$0';
    return '$' + Number(v.toPrecision(2));
  }

  function fmtPct(v) { return isNum(v) ? v.toFixed(v >= 10 ? 0 : 1) + ' %' : DASH; }

  function fmtMs(v) {
    if (!isNum(v)) return DASH;
    if (v < 1000) return (v < 10 ? v.toFixed(1) : Math.round(v)) + ' ms';
    return (v / 1000).toFixed(v < 10000 ? 2 : 1) + ' s';
  }

  function utcTime(ms, withSeconds) {
    if (!isNum(ms)) return DASH;
    const iso = new Date(ms).toISOString();
    return iso.slice(11, withSeconds ? 19 : 16);
  }

  const str = (v) => (v === null || v === undefined ? '' : String(v));
  const list = (v) => (Array.isArray(v) ? v : []);

  // ---- the key ----

  function getKey() {
    try { return sessionStorage.getItem(KEY_STORE) || memoryKey; } catch (e) { return memoryKey; }
  }

  function setKey(k) {
    memoryKey = k;
    try { sessionStorage.setItem(KEY_STORE, k); } catch (e) { /* memoryKey holds it */ }
  }

  function forgetKey() {
    memoryKey = null;
    try { sessionStorage.removeItem(KEY_STORE); } catch (e) { /* nothing stored */ }
  }

  // #key=... (for scripts): stored, then removed from the address bar and the history entry.
  function takeKeyFromFragment() {
    if (!location.hash || location.hash.length < 2) return;
    const params = new URLSearchParams(location.hash.slice(1));
    if (!params.has('key')) return;
    const k = params.get('key').trim();
    if (k) setKey(k);
    params.delete('key');
    const rest = params.toString();
    history.replaceState(history.state, '', location.pathname + location.search + (rest ? '#' + rest : ''));
  }

  // ---- page states ----

  function setState(state) { document.body.setAttribute('data-state', state); }

  function showError(text) {
    const e = $('#error');
    e.textContent = text;
    e.hidden = !text;
  }

  // The key form, with why it is shown; every figure of an earlier key is removed from the page.
  function showLogin(reason, text) {
    clearData();
    $('#dashboard').hidden = true;
    $('#forget-key').hidden = true;
    showError('');
    const login = $('#login');
    login.hidden = false;
    login.setAttribute('data-reason', reason);
    $('#login-message').textContent = text;
    $('#status').textContent = reason === 'no-key' ? 'No admin key yet.' : 'Refused.';
    setState(reason === 'no-key' ? 'no-key' : 'refused');
    $('#key-input').focus();
  }

  function clearData() {
    for (const sel of ['[data-list="tiers"]', '[data-list="agent-caps"]', '#agents tbody', '#models tbody', '#hours .charts',
      '#hours-table tbody', '#latency tbody', '#cooling ul', '#alerts ul', '#recent tbody']) $(sel).replaceChildren();
  }

  // ---- loading ----

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(load, REFRESH_MS);
  }

  async function readError(r) {
    try {
      const j = await r.json();
      if (j && j.error) return { code: str(j.error.code), message: str(j.error.message) };
    } catch (e) { /* not the router's envelope */ }
    return { code: '', message: '' };
  }

  async function load() {
    clearTimeout(timer);
    const key = getKey();
    if (!key) {
      showLogin('no-key', 'Enter the admin key to see the router\'s figures.');
      return;
    }
    // Keys are printable ASCII: anything else cannot go in a header (fetch would throw).
    if (!/^[\x21-\x7e]+$/.test(key)) {
      forgetKey();
      showLogin('refused', 'That is not an admin key: it has characters an HTTP header cannot carry.');
      return;
    }
    // A hidden tab does not poll; it loads again when shown.
    if (document.hidden) return;
    const mine = ++generation;
    let r;
    try {
      r = await fetch(STATS_URL, {
        headers: { Authorization: 'Bearer ' + key, Accept: 'application/json' },
        cache: 'no-store', credentials: 'omit', redirect: 'error',
      });
    } catch (e) {
      if (mine !== generation) return;
      showError('The router did not answer (' + e.message + '); trying again in 10 s.');
      schedule();
      return;
    }
    if (mine !== generation) return;
    if (r.status === 401 || r.status === 403) {
      const err = await readError(r);
      if (mine !== generation) return;
      forgetKey();
      const disabled = r.status === 403 && err.code === 'admin_disabled';
      const head = disabled
        ? 'The router\'s admin view is off: set LLM_ROUTER_ADMIN_KEY in the router\'s environment.'
        : 'The router refused this key.';
      showLogin(disabled ? 'disabled' : 'refused',
        `${head} (${r.status}${err.code ? ' ' + err.code : ''}${err.message ? ': ' + err.message : ''})`);
      return;
    }
    if (!r.ok) {
      const err = await readError(r);
      if (mine !== generation) return;
      showError(`GET /v1/router/stats answered ${r.status}${err.message ? ': ' + err.message : ''}; trying again in 10 s.`);
      schedule();
      return;
    }
    let data;
    try {
      data = await r.json();
    } catch (e) {
      if (mine !== generation) return;
      showError('GET /v1/router/stats did not answer JSON; trying again in 10 s.');
      schedule();
      return;
    }
    if (mine !== generation) return;
    showError('');
    render(data || {});
    schedule();
  }

  // ---- rendering ----

  function render(d) {
    $('#login').hidden = true;
    $('#dashboard').hidden = false;
    $('#forget-key').hidden = false;
    const parts = [];
    if (d.day) parts.push('Day ' + str(d.day) + ' (UTC)');
    parts.push('updated ' + utcTime(isNum(d.generated_at) ? d.generated_at * 1000 : Date.now(), true) + ' UTC');
    parts.push(d.database_up === false ? 'database DOWN' : 'database up');
    if (isNum(d.inflight)) parts.push(`${fmtInt(d.inflight)} in flight`);
    if (d.budget_enabled === false) parts.push('budgets off');
    const status = $('#status');
    status.textContent = parts.join(' \u00b7 ');
    status.classList.toggle('warn', d.database_up === false);
    renderTiers(list(d.tiers));
    renderAgentCaps(list(d.agents));
    renderAgents(list(d.agents));
    renderModels(list(d.models));
    renderHours(list(d.hours));
    renderLatency(list(d.models));
    renderCooling(list(d.cooling_down), d.generated_at);
    renderAlerts(list(d.alerts));
    renderRecent(list(d.recent));
    setState('ready');
  }

  function level(pct) {
    if (!isNum(pct)) return 'none';
    return pct >= 100 ? 'over' : pct >= 80 ? 'high' : 'ok';
  }

  function percentOf(row) {
    if (isNum(row.percent)) return row.percent;
    if (isNum(row.budget_usd) && row.budget_usd > 0 && isNum(row.spent_usd)) return (row.spent_usd / row.budget_usd) * 100;
    return null;
  }

  // One bar: the label, the bar (spent, and reserved when there is some) and the figures as text.
  // row: {spent_usd, budget_usd, percent, reserved_usd, requests}; label: text or a node.
  function budgetBar(label, row, attrs, extra) {
    const pct = isNum(row.budget_usd) ? percentOf(row) : null;
    const hasBudget = isNum(row.budget_usd);
    const text = hasBudget
      ? `${fmtUSD(row.spent_usd)} of ${fmtUSD(row.budget_usd)} \u00b7 ${fmtPct(pct)}`
      : `${fmtUSD(row.spent_usd)} \u00b7 no budget`;
    const fill = el('div', { class: 'bar-fill level-' + level(pct) });
    fill.style.width = Math.min(100, Math.max(0, pct || 0)) + '%';
    // Any spend shows, however small against the budget.
    if (isNum(row.spent_usd) && row.spent_usd > 0) fill.style.minWidth = '2px';
    const bar = el('div', {
      class: 'bar' + (hasBudget ? '' : ' no-budget'), role: 'progressbar', 'aria-label': label + ': spent today',
      'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': hasBudget ? Math.round(pct || 0) : null, 'aria-valuetext': text,
    }, fill);
    if (hasBudget && isNum(row.reserved_usd) && row.reserved_usd > 0) {
      const res = el('div', { class: 'bar-reserved' });
      res.style.left = fill.style.width;
      res.style.width = Math.min(100 - Math.min(100, pct || 0), (row.reserved_usd / row.budget_usd) * 100) + '%';
      bar.appendChild(res);
    }
    const details = [];
    if (hasBudget && isNum(row.reserved_usd) && row.reserved_usd > 0) details.push(`${fmtUSD(row.reserved_usd)} reserved`);
    if (isNum(row.requests)) details.push(`${fmtInt(row.requests)} request${row.requests === 1 ? '' : 's'}`);
    if (extra) details.push(extra);
    return el('div', Object.assign({
      class: 'bar-row level-' + level(pct), 'data-spent': isNum(row.spent_usd) ? row.spent_usd : '',
      'data-budget': hasBudget ? row.budget_usd : '', 'data-percent': isNum(pct) ? pct.toFixed(2) : '',
    }, attrs),
    el('span', { class: 'bar-label' }, label),
    bar,
    el('span', { class: 'bar-text' }, el('span', { class: 'bar-figures' }, text),
      details.length ? el('span', { class: 'bar-details' }, details.join(' \u00b7 ')) : null));
  }

  function empty(tag, text, cols) {
    if (tag === 'tr') return el('tr', { class: 'empty' }, el('td', { colspan: cols }, text));
    return el(tag, { class: 'empty' }, text);
  }

  function renderTiers(tiers) {
    const box = $('[data-list="tiers"]');
    box.replaceChildren(...tiers.map((t) => budgetBar(
      t.name && t.name !== t.tier ? [str(t.tier), el('span', { class: 'muted name' }, str(t.name))] : str(t.tier),
      t, { 'data-tier': str(t.tier) })));
    if (!tiers.length) box.appendChild(empty('p', 'No tier is configured.'));
  }

  function agentName(a) { return a === null || a === undefined || a === '' ? null : String(a); }

  function renderAgentCaps(agents) {
    const capped = agents.filter((a) => isNum(a.budget_usd));
    const box = $('[data-list="agent-caps"]');
    // Spent against the cap: the agent's own ledger when the router gives it.
    box.replaceChildren(...capped.map((a) => budgetBar(agentName(a.agent) || '(anonymous)',
      Object.assign({}, a, isNum(a.budget_spent_usd) ? { spent_usd: a.budget_spent_usd, reserved_usd: null } : {}),
      { 'data-agent': str(a.agent) }, a.tier ? 'tier ' + str(a.tier) : null)));
    if (!capped.length) box.appendChild(empty('p', 'No agent with a cap of its own (agent_daily_budget_usd) has spent anything today.'));
  }

  function agentCell(a) {
    const name = agentName(a);
    return name === null ? el('td', { class: 'muted' }, '(anonymous)') : el('td', null, name);
  }

  const bySpend = (key) => (a, b) => (isNum(b[key]) ? b[key] : 0) - (isNum(a[key]) ? a[key] : 0);

  function renderAgents(agents) {
    const rows = agents.slice().sort(bySpend('spent_usd')).map((a) => el('tr', { 'data-agent': str(a.agent), 'data-tier': str(a.tier) },
      agentCell(a.agent),
      el('td', null, str(a.tier) || DASH),
      el('td', { class: 'num' }, fmtInt(a.requests)),
      el('td', { class: 'num' + (isNum(a.errors) && a.errors > 0 ? ' err' : '') }, fmtInt(a.errors)),
      el('td', { class: 'num' }, fmtUSD(a.spent_usd)),
      el('td', { class: 'num' }, isNum(a.budget_usd) ? `${fmtUSD(a.budget_usd)} (${fmtPct(percentOf(a))})` : DASH)));
    $('#agents tbody').replaceChildren(...(rows.length ? rows : [empty('tr', 'No request today.', 6)]));
  }

  function renderModels(models) {
    const rows = models.slice().sort(bySpend('cost_usd')).map((m) => el('tr', { 'data-model': str(m.model), 'data-provider': str(m.provider) },
      el('td', null, str(m.model)),
      el('td', null, str(m.provider) || DASH),
      el('td', { class: 'num' }, fmtInt(m.requests)),
      el('td', { class: 'num' + (isNum(m.errors) && m.errors > 0 ? ' err' : '') }, fmtInt(m.errors)),
      el('td', { class: 'num' }, `${fmtInt(m.input_tokens)} / ${fmtInt(m.output_tokens)}`),
      el('td', { class: 'num' }, fmtUSD(m.cost_usd))));
    $('#models tbody').replaceChildren(...(rows.length ? rows : [empty('tr', 'No model was called today.', 6)]));
  }

  function renderLatency(models) {
    const rows = models.map((m) => el('tr', { 'data-model': str(m.model) },
      el('td', null, str(m.model)),
      el('td', { class: 'num' }, fmtMs(m.latency_p50_ms)),
      el('td', { class: 'num' }, fmtMs(m.latency_p95_ms)),
      el('td', { class: 'num' }, fmtMs(m.ttft_p50_ms)),
      el('td', { class: 'num' }, fmtMs(m.ttft_p95_ms))));
    $('#latency tbody').replaceChildren(...(rows.length ? rows : [empty('tr', 'No model was called today.', 5)]));
  }

  // ---- hourly charts: 24 bars of inline SVG ----

  // A round axis maximum at or above max: 1, 2 or 5 times a power of ten.
  function niceMax(max) {
    if (!(max > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(max)));
    for (const m of [1, 2, 5, 10]) if (m * p >= max) return m * p;
    return 10 * p;
  }

  // unit: [singular, plural] for counts (whole numbers), null for amounts.
  function barChart(name, title, hours, value, fmt, unit, axisFmt) {
    const W = 480; const H = 150; const L = 62; const R = 8; const T = 10; const B = 22;
    const pw = W - L - R; const ph = H - T - B;
    const values = hours.map((h) => (isNum(value(h)) ? value(h) : 0));
    const total = values.reduce((a, b) => a + b, 0);
    let top = niceMax(Math.max(0, ...values));
    // Counts: the middle grid line must be a whole number too.
    if (unit && top % 2) top *= 2;
    const slot = pw / Math.max(1, hours.length);
    let peak = -1;
    values.forEach((v, i) => { if (v > 0 && (peak < 0 || v > values[peak])) peak = i; });
    const summary = `${title}, last 24 hours: ${fmt(total)} in all` +
      (peak >= 0 ? `, most ${fmt(values[peak])} at ${utcTime(hours[peak].start * 1000)} UTC` : '');
    const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': summary, class: 'chart-svg chart-' + name, preserveAspectRatio: 'xMidYMid meet' });
    // Axis and grid: 0, half and the top.
    for (const f of [0, 0.5, 1]) {
      const y = T + ph - f * ph;
      chart.appendChild(svg('line', { x1: L, x2: W - R, y1: y, y2: y, class: f === 0 ? 'axis' : 'grid' }));
      chart.appendChild(svg('text', { x: L - 6, y: y + 4, class: 'ylabel', 'text-anchor': 'end' }, (axisFmt || fmt)(top * f)));
    }
    hours.forEach((h, i) => {
      const v = values[i];
      const bh = top > 0 ? (v / top) * ph : 0;
      const x = L + i * slot + slot * 0.15;
      const label = `${utcTime(h.start * 1000)} UTC: ${fmt(v)}${unit ? ' ' + unit[v === 1 ? 0 : 1] : ''}`;
      const g = svg('g', { class: 'bar-g', 'data-start': isNum(h.start) ? h.start : '', 'data-value': v },
        svg('title', null, label),
        svg('rect', { x: x.toFixed(1), y: (T + ph - bh).toFixed(1), width: (slot * 0.7).toFixed(1), height: Math.max(v > 0 ? 1 : 0, bh).toFixed(1), class: 'bar-rect' }));
      chart.appendChild(g);
      const hour = isNum(h.start) ? new Date(h.start * 1000).getUTCHours() : -1;
      if (hour % 6 === 0 || i === hours.length - 1) {
        chart.appendChild(svg('text', { x: (L + i * slot + slot / 2).toFixed(1), y: H - 6, class: 'xlabel', 'text-anchor': 'middle' },
          i === hours.length - 1 ? 'now' : utcTime(h.start * 1000)));
      }
    });
    return el('figure', { class: 'chart', 'data-chart': name, 'data-total': total },
      el('figcaption', null, el('span', { class: 'chart-title' }, title), ' ', el('span', { class: 'chart-total' }, fmt(total) + ' in 24 h')),
      chart);
  }

  function renderHours(hours) {
    const box = $('#hours .charts');
    box.replaceChildren(
      barChart('requests', 'Requests', hours, (h) => h.requests, fmtInt, ['request', 'requests']),
      barChart('errors', 'Errors', hours, (h) => h.errors, fmtInt, ['error', 'errors']),
      barChart('fallbacks', 'Fallbacks', hours, (h) => h.fallbacks, fmtInt, ['fallback', 'fallbacks']),
      barChart('cost', 'Cost', hours, (h) => h.cost_usd, fmtUSD, null, fmtAxisUSD));
    $('#hours-table tbody').replaceChildren(...hours.map((h) => el('tr', { 'data-start': isNum(h.start) ? h.start : '' },
      el('td', null, utcTime(h.start * 1000)),
      el('td', { class: 'num' }, fmtInt(h.requests)),
      el('td', { class: 'num' }, fmtInt(h.errors)),
      el('td', { class: 'num' }, fmtInt(h.fallbacks)),
      el('td', { class: 'num' }, fmtUSD(h.cost_usd)))));
  }

  function renderCooling(cooling, now) {
    const items = cooling.map((c) => {
      const left = isNum(c.until) && isNum(now) ? Math.max(0, Math.round(c.until - now)) : null;
      return el('li', { 'data-model': str(c.model) },
        el('strong', null, str(c.model)),
        ` until ${utcTime(c.until * 1000, true)} UTC`, left !== null ? ` (${left} s left)` : '',
        c.last_error ? el('span', { class: 'muted block' }, 'last error: ' + str(c.last_error)) : null);
    });
    $('#cooling ul').replaceChildren(...(items.length ? items : [empty('li', 'No model is cooling down.')]));
  }

  function renderAlerts(alerts) {
    const items = alerts.slice().sort((a, b) => (b.ts || 0) - (a.ts || 0)).map((a) => el('li', { 'data-scope': str(a.scope), 'data-level': str(a.level) },
      `${utcTime(a.ts * 1000)} UTC `, el('strong', null, str(a.scope)), ` reached ${isNum(a.level) ? a.level + ' %' : DASH}`,
      el('span', { class: 'muted block' }, `${fmtUSD(a.spent_usd)} of ${fmtUSD(a.budget_usd)}`)));
    $('#alerts ul').replaceChildren(...(items.length ? items : [empty('li', 'No budget alert today.')]));
  }

  function renderRecent(recent) {
    const rows = recent.map((q) => {
      const ok = isNum(q.status) && q.status < 400;
      const model = q.model ? el('td', null, str(q.model)) : el('td', { class: 'muted' }, q.path ? str(q.path) : DASH);
      return el('tr', { 'data-request-id': str(q.request_id), 'data-status': str(q.status), 'data-agent': str(q.agent), class: ok ? null : 'failed' },
        el('td', { title: isNum(q.ts_ms) ? new Date(q.ts_ms).toISOString() : null }, utcTime(q.ts_ms, true)),
        agentCell(q.agent),
        el('td', null, str(q.tier) || DASH),
        model,
        el('td', { class: ok ? 'status-ok' : 'status-err' }, str(q.status), q.error_code ? el('span', { class: 'code' }, ' ' + str(q.error_code)) : null),
        el('td', { class: 'num' }, `${fmtInt(q.input_tokens)} / ${fmtInt(q.output_tokens)}`),
        el('td', { class: 'num' }, fmtUSD(q.cost_usd)),
        el('td', { class: 'num' }, fmtMs(q.latency_ms)));
    });
    $('#recent tbody').replaceChildren(...(rows.length ? rows : [empty('tr', 'No request yet.', 8)]));
  }

  // ---- start ----

  function start() {
    takeKeyFromFragment();
    $('#key-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = $('#key-input');
      const k = input.value.trim();
      input.value = '';
      if (!k) return;
      setKey(k);
      $('#status').textContent = 'Loading...';
      load();
    });
    $('#forget-key').addEventListener('click', () => {
      forgetKey();
      generation++;
      clearTimeout(timer);
      showLogin('no-key', 'The key is forgotten. Enter the admin key to see the router\'s figures.');
    });
    document.addEventListener('visibilitychange', () => { if (!document.hidden && getKey()) load(); });
    window.addEventListener('hashchange', () => { if (/[#&]key=/.test(location.hash)) { takeKeyFromFragment(); load(); } });
    load();
  }

  start();
}());
