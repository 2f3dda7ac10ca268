/* api_metrics.c - the operators' view: GET /metrics (Prometheus' text exposition format) and
 * GET /v1/router/stats (the dashboard's JSON), both behind the admin key.
 *
 * Both first bring the counters up to date (store_metrics_catch_up: the request-log rows not yet
 * counted, in short write transactions on the worker's reader connection), then read them, so
 * every responder process answers the same totals and they survive restarts and retention. The
 * gauges are read at the time of the call: budgets from the ledger, cooldowns from model health,
 * requests in flight from every process (inflight.h), the rows waiting in the JSONL fallback file.
 * A database that cannot be opened gives database_up 0 and the figures that need no database; one
 * locked past busy_timeout_ms gives database_up 0 and the counters as they were last counted.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth.h"
#include "buf.h"
#include "inflight.h"
#include "jsonx.h"
#include "reqlog_jsonl.h"
#include "store.h"
#include "util.h"

/* Rows counted per transaction, and transactions per call at most (a backlog is finished by the
 * next calls; counters only lag, they never skip). */
#define ROLLUP_BATCH 5000
#define ROLLUP_BATCHES 40

static int admin_only(struct request_ctx *rc)
{
	struct rerr err;
	if (auth_admin(rc, &err) < 0) {
		reqctx_refuse(rc, &err);
		return -1;
	}
	return 0;
}

/* The reader connection, NULL while the database cannot be opened or its file was removed or
 * replaced; *counted says whether the
 * counters were brought up to date (a database locked past busy_timeout_ms leaves them as the
 * last call left them: they lag, and are still read). */
static struct store *counted_store(struct request_ctx *rc, int *counted)
{
	struct store *st = reqctx_reader(rc);
	if (st && store_file_moved(st))
		st = NULL;                       /* a removed or replaced file is not the database */
	*counted = st && store_metrics_catch_up(st, ROLLUP_BATCH, ROLLUP_BATCHES) >= 0;
	return st;
}

/* ---- GET /metrics ---- */

static void family(struct buf *out, const char *name, const char *type, const char *help)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *const counter_families[][3] = {
	{ "llm_router_requests_total", "counter",
	  "Requests recorded in the request log (every call, and every request refused before "
	  "routing), by endpoint, model, provider, tier and HTTP status." },
	{ "llm_router_tokens_total", "counter", "Tokens of answered calls, by model and direction." },
	{ "llm_router_cost_usd_total", "counter", "Cost of calls in US dollars, by tier and model." },
	{ "llm_router_fallbacks_total", "counter",
	  "Steps of fallback chains: a call moved from one model to the next." },
	{ "llm_router_upstream_errors_total", "counter",
	  "Failed upstream attempts, by provider and code (the provider's HTTP status, else the "
	  "router's error code)." },
	{ "llm_router_request_duration_seconds", "histogram",
	  "Time from the request's arrival to its last byte, by model." },
	{ "llm_router_time_to_first_token_seconds", "histogram",
	  "Time to the first content of streamed calls, by model." },
};

static void budget_line(struct buf *b, const char *name, const char *kind, const char *who,
			double v)
{
	buf_printf(b, "%s{%s=\"", name, kind);
	store_metrics_escape(b, who);
	buf_printf(b, "\"} %.9g\n", v);
}

/* Budget gauges of today: each tier with a budget, each agent whose tier caps its agents (the
 * tier's configured agents and the agents seen today). */
static void budget_gauges(struct store *st, const struct config *cfg, const char *day,
			  struct buf *limit, struct buf *spent)
{
	json_t *seen = st ? store_metrics_daily(st, day, "agent") : NULL;
	for (size_t i = 0; i < cfg->n_tiers; i++) {
		const struct tier_conf *t = &cfg->tiers[i];
		char scope[300];
		int64_t s = 0, r = 0;
		if (t->daily_budget_usd > 0) {
			snprintf(scope, sizeof(scope), "tier:%s", t->id);
			if (st)
				store_budget_spend(st, day, scope, &s, &r);
			budget_line(limit, "llm_router_budget_limit_usd", "tier", t->id, t->daily_budget_usd);
			budget_line(spent, "llm_router_budget_spent_usd", "tier", t->id, (double)s / 1e9);
		}
		if (t->agent_daily_budget_usd <= 0)
			continue;
		json_t *agents = json_array();
		for (size_t k = 0; k < t->agents.n; k++)
			json_array_append_new(agents, json_string(t->agents.v[k]));
		size_t j;
		json_t *row;
		json_array_foreach(seen, j, row) {
			const char *name = json_string_value(json_object_get(row, "name"));
			const char *tier = json_string_value(json_object_get(row, "extra"));
			if (!name || !name[0] || !tier || strcmp(tier, t->id) != 0)
				continue;
			int dup = 0;
			for (size_t k = 0; k < t->agents.n && !dup; k++)
				dup = strcmp(t->agents.v[k], name) == 0;
			if (!dup)
				json_array_append_new(agents, json_string(name));
		}
		json_t *a;
		json_array_foreach(agents, j, a) {
			const char *name = json_string_value(a);
			snprintf(scope, sizeof(scope), "agent:%s", name);
			s = r = 0;
			if (st)
				store_budget_spend(st, day, scope, &s, &r);
			budget_line(limit, "llm_router_budget_limit_usd", "agent", name,
				    t->agent_daily_budget_usd);
			budget_line(spent, "llm_router_budget_spent_usd", "agent", name, (double)s / 1e9);
		}
		json_decref(agents);
	}
	json_decref(seen);
}

struct cooling {
	int64_t now_ms;
	json_t *until;                 /* model -> until_ms */
};

static void cooling_cb(void *ud, const struct health_row *h)
{
	struct cooling *c = ud;
	if (h->cooldown_until_ms > c->now_ms)
		json_object_set_new(c->until, h->model, json_integer(h->cooldown_until_ms));
}

static json_t *cooling_down(struct store *st, int64_t now_ms)
{
	struct cooling c = { now_ms, json_object() };
	if (st)
		store_health_load(st, cooling_cb, &c);
	return c.until;
}

void api_metrics(struct request_ctx *rc)
{
	if (admin_only(rc) < 0)
		return;
	const struct config *cfg = rc->cfg;
	int up;
	struct store *st = counted_store(rc, &up);
	struct buf out;
	buf_init(&out, 64 << 20);
	for (size_t i = 0; i < ARRAY_SIZE(counter_families); i++) {
		family(&out, counter_families[i][0], counter_families[i][1], counter_families[i][2]);
		if (st && store_metrics_counters(st, counter_families[i][0], &out) < 0)
			up = 0;
	}
	char day[11];
	store_utc_day(rc->t0_wall_ms, day);
	struct buf limit, spent;
	buf_init(&limit, 1 << 20);
	buf_init(&spent, 1 << 20);
	budget_gauges(st, cfg, day, &limit, &spent);
	family(&out, "llm_router_budget_limit_usd", "gauge",
	       "Today's budget of each tier, and of each agent of a tier that caps its agents.");
	buf_append(&out, limit.p, limit.len);
	family(&out, "llm_router_budget_spent_usd", "gauge",
	       "Today's spend (UTC day) of each tier with a budget and each capped agent.");
	buf_append(&out, spent.p, spent.len);
	buf_free(&limit);
	buf_free(&spent);

	family(&out, "llm_router_inflight_requests", "gauge",
	       "Requests being answered by every responder process, this scrape excepted.");
	long inflight = inflight_total() - 1;
	buf_printf(&out, "llm_router_inflight_requests %ld\n", inflight < 0 ? 0 : inflight);

	family(&out, "llm_router_model_cooling_down", "gauge",
	       "1 while a model is cooling down after failures (calls skip it), else 0.");
	json_t *cool = cooling_down(st, rc->t0_wall_ms);
	for (size_t i = 0; i < cfg->n_models; i++) {
		buf_puts(&out, "llm_router_model_cooling_down{model=\"");
		store_metrics_escape(&out, cfg->models[i].id);
		buf_printf(&out, "\"} %d\n", json_object_get(cool, cfg->models[i].id) ? 1 : 0);
	}
	json_decref(cool);

	family(&out, "llm_router_request_log_fallback_rows", "gauge",
	       "Request-log rows waiting in the JSONL fallback file for the database.");
	buf_printf(&out, "llm_router_request_log_fallback_rows %lld\n",
		   cfg->fallback_jsonl ? reqlog_jsonl_pending_rows(cfg->fallback_jsonl) : 0);
	family(&out, "llm_router_database_up", "gauge",
	       "1 when the router's SQLite database can be read and written, else 0.");
	buf_printf(&out, "llm_router_database_up %d\n", up);

	resp_header(&rc->resp, "Cache-Control", "no-store");
	if (resp_begin(&rc->resp, 200, "text/plain; version=0.0.4; charset=utf-8") == 0)
		resp_write(&rc->resp, out.p, out.len);
	buf_free(&out);
}

/* ---- GET /v1/router/stats ---- */

#define LATENCY_ROWS 5000
#define RECENT_ROWS 50

struct lat_model {
	char *model;
	double *lat, *ttft;
	size_t n_lat, n_ttft;
};

struct lat_set {
	struct lat_model *m;
	size_t n;
};

static void lat_cb(void *ud, const char *model, double latency_ms, double ttft_ms)
{
	struct lat_set *ls = ud;
	size_t i = 0;
	while (i < ls->n && strcmp(ls->m[i].model, model) != 0)
		i++;
	if (i == ls->n) {
		ls->m = xrealloc(ls->m, (ls->n + 1) * sizeof(*ls->m));
		ls->m[ls->n++] = (struct lat_model){ .model = xstrdup(model) };
	}
	struct lat_model *m = &ls->m[i];
	m->lat = xrealloc(m->lat, (m->n_lat + 1) * sizeof(double));
	m->lat[m->n_lat++] = latency_ms;
	if (ttft_ms >= 0) {
		m->ttft = xrealloc(m->ttft, (m->n_ttft + 1) * sizeof(double));
		m->ttft[m->n_ttft++] = ttft_ms;
	}
}

static int dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The nearest-rank percentile p of v (sorted here), or null. */
static json_t *percentile(double *v, size_t n, double p)
{
	if (!n)
		return json_null();
	qsort(v, n, sizeof(*v), dcmp);
	size_t rank = (size_t)ceil(p / 100.0 * (double)n);
	return json_real(v[rank ? rank - 1 : 0]);
}

static json_t *tiers_json(struct store *st, const struct config *cfg, const char *day)
{
	json_t *a = json_array();
	for (size_t i = 0; i < cfg->n_tiers; i++) {
		const struct tier_conf *t = &cfg->tiers[i];
		char scope[300];
		snprintf(scope, sizeof(scope), "tier:%s", t->id);
		int64_t s = 0, r = 0;
		if (st)
			store_budget_spend(st, day, scope, &s, &r);
		json_t *o = json_object();
		json_object_set_new(o, "tier", json_string(t->id));
		json_object_set_new(o, "name", json_string(t->name ? t->name : t->id));
		json_object_set_new(o, "spent_usd", json_real((double)s / 1e9));
		json_object_set_new(o, "reserved_usd", json_real((double)r / 1e9));
		json_object_set_new(o, "budget_usd",
				    t->daily_budget_usd > 0 ? json_real(t->daily_budget_usd) : json_null());
		json_object_set_new(o, "percent",
				    t->daily_budget_usd > 0
					    ? json_real(100.0 * (double)s / 1e9 / t->daily_budget_usd)
					    : json_null());
		json_object_set_new(o, "agent_budget_usd", t->agent_daily_budget_usd > 0
								   ? json_real(t->agent_daily_budget_usd)
								   : json_null());
		json_array_append_new(a, o);
	}
	return a;
}

/* A daily figures row (store_metrics_daily) as the object of one agent or model: name under key
 * and extra under extra_key (null when empty), its counts, and its cost under cost_key. */
static json_t *daily_json(json_t *row, const char *key, const char *extra_key, const char *cost_key)
{
	json_t *o = json_object();
	static const char *const keys[] = { "name", "extra" };
	const char *out[] = { key, extra_key };
	for (int k = 0; k < 2; k++) {
		const char *v = json_string_value(json_object_get(row, keys[k]));
		json_object_set_new(o, out[k], v && v[0] ? json_string(v) : json_null());
	}
	static const char *const counts[] = { "requests", "errors", "input_tokens", "output_tokens" };
	for (size_t k = 0; k < ARRAY_SIZE(counts); k++)
		json_object_set(o, counts[k], json_object_get(row, counts[k]));
	json_object_set(o, cost_key, json_object_get(row, "cost_usd"));
	return o;
}

static json_t *agents_json(struct store *st, const struct config *cfg, const char *day)
{
	json_t *rows = st ? store_metrics_daily(st, day, "agent") : NULL;
	json_t *a = json_array();
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row) {
		const char *name = json_string_value(json_object_get(row, "name"));
		const char *tier = json_string_value(json_object_get(row, "extra"));
		json_t *o = daily_json(row, "agent", "tier", "spent_usd");
		double cap = 0;
		for (size_t k = 0; tier && k < cfg->n_tiers; k++)
			if (strcmp(cfg->tiers[k].id, tier) == 0)
				cap = cfg->tiers[k].agent_daily_budget_usd;
		if (cap > 0 && name && name[0]) {
			char scope[300];
			snprintf(scope, sizeof(scope), "agent:%s", name);
			int64_t s = 0, r = 0;
			store_budget_spend(st, day, scope, &s, &r);
			json_object_set_new(o, "budget_usd", json_real(cap));
			json_object_set_new(o, "budget_spent_usd", json_real((double)s / 1e9));
			json_object_set_new(o, "percent", json_real(100.0 * (double)s / 1e9 / cap));
		} else {
			json_object_set_new(o, "budget_usd", json_null());
			json_object_set_new(o, "percent", json_null());
		}
		json_array_append_new(a, o);
	}
	json_decref(rows);
	return a;
}

static json_t *models_json(struct store *st, const char *day)
{
	json_t *rows = st ? store_metrics_daily(st, day, "model") : NULL;
	struct lat_set ls = { NULL, 0 };
	if (st)
		store_metrics_latencies(st, LATENCY_ROWS, lat_cb, &ls);
	json_t *a = json_array();
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row) {
		const char *name = json_string_value(json_object_get(row, "name"));
		json_t *o = daily_json(row, "model", "provider", "cost_usd");
		struct lat_model *m = NULL;
		for (size_t k = 0; name && k < ls.n && !m; k++)
			if (strcmp(ls.m[k].model, name) == 0)
				m = &ls.m[k];
		json_object_set_new(o, "latency_p50_ms", m ? percentile(m->lat, m->n_lat, 50) : json_null());
		json_object_set_new(o, "latency_p95_ms", m ? percentile(m->lat, m->n_lat, 95) : json_null());
		json_object_set_new(o, "ttft_p50_ms", m ? percentile(m->ttft, m->n_ttft, 50) : json_null());
		json_object_set_new(o, "ttft_p95_ms", m ? percentile(m->ttft, m->n_ttft, 95) : json_null());
		json_array_append_new(a, o);
	}
	for (size_t k = 0; k < ls.n; k++) {
		free(ls.m[k].model);
		free(ls.m[k].lat);
		free(ls.m[k].ttft);
	}
	free(ls.m);
	json_decref(rows);
	return a;
}

/* Exactly 24 hours, oldest first, the last one the current hour; hours without rows are zeros. */
static json_t *hours_json(struct store *st, int64_t now_ms)
{
	int64_t cur = now_ms / 3600000 * 3600000, first = cur - 23 * 3600000LL;
	json_t *rows = st ? store_metrics_hours(st, first) : NULL;
	json_t *a = json_array();
	for (int64_t h = first; h <= cur; h += 3600000) {
		json_t *o = json_object();
		json_object_set_new(o, "start", json_integer(h / 1000));
		json_int_t req = 0, err = 0, fb = 0;
		double cost = 0;
		size_t i;
		json_t *row;
		json_array_foreach(rows, i, row) {
			if (json_integer_value(json_object_get(row, "hour_ms")) != h)
				continue;
			req = json_integer_value(json_object_get(row, "requests"));
			err = json_integer_value(json_object_get(row, "errors"));
			fb = json_integer_value(json_object_get(row, "fallbacks"));
			cost = json_number_value(json_object_get(row, "cost_usd"));
		}
		json_object_set_new(o, "requests", json_integer(req));
		json_object_set_new(o, "errors", json_integer(err));
		json_object_set_new(o, "fallbacks", json_integer(fb));
		json_object_set_new(o, "cost_usd", json_real(cost));
		json_array_append_new(a, o);
	}
	json_decref(rows);
	return a;
}

static json_t *cooling_json(struct store *st, int64_t now_ms)
{
	json_t *m = cooling_down(st, now_ms);
	json_t *a = json_array();
	const char *k;
	json_t *v;
	json_object_foreach(m, k, v) {
		json_t *o = json_object();
		json_object_set_new(o, "model", json_string(k));
		json_object_set_new(o, "until", json_integer(json_integer_value(v) / 1000));
		struct health_row h;
		if (st && store_health_get(st, k, &h) == 1)
			json_object_set_new(o, "failures", json_integer(h.failures));
		json_array_append_new(a, o);
	}
	json_decref(m);
	return a;
}

static json_t *or_empty(json_t *a)
{
	return a ? a : json_array();
}

void api_router_stats(struct request_ctx *rc)
{
	if (admin_only(rc) < 0)
		return;
	const struct config *cfg = rc->cfg;
	int counted;
	struct store *st = counted_store(rc, &counted);
	char day[11];
	store_utc_day(rc->t0_wall_ms, day);
	json_t *o = json_object();
	json_object_set_new(o, "object", json_string("router.stats"));
	json_object_set_new(o, "generated_at", json_integer(rc->t0_wall_ms / 1000));
	json_object_set_new(o, "day", json_string(day));
	json_object_set_new(o, "database_up", json_boolean(st && counted));
	json_object_set_new(o, "budget_enabled", json_boolean(cfg->budget_enabled));
	long inflight = inflight_total() - 1;
	json_object_set_new(o, "inflight", json_integer(inflight < 0 ? 0 : inflight));
	json_object_set_new(o, "tiers", tiers_json(st, cfg, day));
	json_object_set_new(o, "agents", agents_json(st, cfg, day));
	json_object_set_new(o, "models", models_json(st, day));
	json_object_set_new(o, "hours", hours_json(st, rc->t0_wall_ms));
	json_object_set_new(o, "cooling_down", cooling_json(st, rc->t0_wall_ms));
	json_object_set_new(o, "alerts", or_empty(st ? store_metrics_alerts(st, day) : NULL));
	json_object_set_new(o, "recent", or_empty(st ? store_metrics_recent(st, RECENT_ROWS) : NULL));
	json_object_set_new(o, "request_log_fallback_rows",
			    json_integer(cfg->fallback_jsonl
						 ? reqlog_jsonl_pending_rows(cfg->fallback_jsonl)
						 : 0));
	resp_header(&rc->resp, "Cache-Control", "no-store");
	resp_json(&rc->resp, st ? 200 : 503, o);
	json_decref(o);
}
