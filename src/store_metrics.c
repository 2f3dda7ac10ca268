/* store_metrics.c - the operators' figures: request_log rows summed into counters that never go
 * down, and what GET /metrics and GET /v1/router/stats read.
 *
 * A rollup takes the rows with id above metrics_state.rolled_id in id order, sums them in memory
 * and adds the sums to metrics_counters (Prometheus families), metrics_hourly and metrics_daily,
 * then moves rolled_id. store_metrics_catch_up reads and sums in a read transaction and holds the
 * write lock only to add the sums, after checking that rolled_id has not moved (another process
 * counted first: it starts over); store_metrics_rollup does both in the caller's write
 * transaction (retention's). Either way every row is counted exactly once. Retention deletes only rows at or below rolled_id, and after
 * a delete rolled_id is brought down to the largest id left (new rows take the largest id plus
 * one), so a row is never skipped even when the newest rows were deleted. The rows' own JSONL
 * fallback replays are new rows with new ids: counted when they reach the table.
 */
#include "store_int.h"

#include <math.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "store.h"
#include "util.h"

/* Histogram upper bounds, seconds; +Inf is HUGE_VAL. */
static const double duration_le[] = { 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, HUGE_VAL };
static const double ttft_le[] = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, HUGE_VAL };

/* ---- in-memory sums of one rollup batch ---- */

struct sum {
	const char *family;            /* static */
	char *labels;
	int kind;
	double le;
	double value;
	uint64_t hash;
};

struct sums {
	struct sum *v;
	size_t n, cap;                 /* open addressing, cap a power of two */
};

static uint64_t sum_hash(const char *family, const char *labels, int kind, double le)
{
	uint64_t h = 1469598103934665603ULL;
	for (const char *p = family; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	for (const char *p = labels; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	h = (h ^ (uint64_t)kind) * 1099511628211ULL;
	uint64_t bits;
	memcpy(&bits, &le, sizeof(bits));
	return (h ^ bits) * 1099511628211ULL;
}

static void sums_add(struct sums *s, const char *family, const char *labels, int kind, double le,
		     double value)
{
	if ((s->n + 1) * 2 > s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 256;
		struct sum *nv = xcalloc(ncap, sizeof(*nv));
		for (size_t i = 0; i < s->cap; i++) {
			if (!s->v[i].family)
				continue;
			size_t j = s->v[i].hash & (ncap - 1);
			while (nv[j].family)
				j = (j + 1) & (ncap - 1);
			nv[j] = s->v[i];
		}
		free(s->v);
		s->v = nv;
		s->cap = ncap;
	}
	uint64_t h = sum_hash(family, labels, kind, le);
	size_t j = h & (s->cap - 1);
	while (s->v[j].family) {
		struct sum *e = &s->v[j];
		if (e->hash == h && e->kind == kind && e->le == le && e->family == family &&
		    strcmp(e->labels, labels) == 0) {
			e->value += value;
			return;
		}
		j = (j + 1) & (s->cap - 1);
	}
	s->v[j] = (struct sum){ family, xstrdup(labels), kind, le, value, h };
	s->n++;
}

static void sums_free(struct sums *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->v[i].labels);
	free(s->v);
}

void store_metrics_escape(struct buf *b, const char *value)
{
	for (const char *p = value ? value : ""; *p; p++) {
		if (*p == '\\' || *p == '"')
			buf_putc(b, '\\');
		if (*p == '\n')
			buf_puts(b, "\\n");
		else
			buf_putc(b, *p);
	}
}

/* Appends name="value" to b, after a comma unless b is empty. */
static void label(struct buf *b, const char *name, const char *value)
{
	if (b->len)
		buf_putc(b, ',');
	buf_printf(b, "%s=\"", name);
	store_metrics_escape(b, value);
	buf_putc(b, '"');
}


/* ---- the rollup ---- */

/* The rows (?1, ?2] grouped by everything a label or a figure depends on, with each group's
 * sums and, per histogram bound, how many of its calls took at most that long: the SQL is built
 * once from the bounds (build_group_sql). Columns: the N_KEYS keys, then the sums. */
#define N_KEYS 7
static char group_sql[4096];
static pthread_once_t group_sql_once = PTHREAD_ONCE_INIT;

static void build_group_sql(void)
{
	struct buf b;
	buf_init(&b, sizeof(group_sql) - 1);
	buf_puts(&b, "SELECT path, model, provider, tier, status, agent, ts_start_ms / 3600000,"
		     " count(*), sum(cost_nusd), sum(fallback_from IS NOT NULL),"
		     " count(input_tokens), sum(max(input_tokens, 0)),"
		     " count(output_tokens), sum(max(output_tokens, 0)),"
		     " count(cached_tokens), sum(max(cached_tokens, 0)),"
		     " count(reasoning_tokens), sum(max(reasoning_tokens, 0)),"
		     " sum(status >= 400), count(latency_ms), sum(latency_ms), count(ttft_ms), sum(ttft_ms)");
	for (size_t i = 0; i + 1 < ARRAY_SIZE(duration_le); i++)
		buf_printf(&b, ", sum(latency_ms <= %g)", duration_le[i] * 1000);
	for (size_t i = 0; i + 1 < ARRAY_SIZE(ttft_le); i++)
		buf_printf(&b, ", sum(ttft_ms <= %g)", ttft_le[i] * 1000);
	buf_puts(&b, " FROM request_log WHERE id > ?1 AND id <= ?2 GROUP BY 1, 2, 3, 4, 5, 6, 7");
	snprintf(group_sql, sizeof(group_sql), "%s", buf_str(&b));
	buf_free(&b);
}

static const char *col_text(sqlite3_stmt *s, int i)
{
	return (const char *)sqlite3_column_text(s, i);
}

/* The endpoint label of a row: its path when that is one the router serves, else "other". */
static const char *endpoint_of(const char *path)
{
	static const char *const known[] = { "/v1/chat/completions", "/v1/embeddings", "/v1/responses",
					     "/v1/models",
					     "/v1/router/budget", "/v1/router/budgets", "/v1/router/stats",
					     "/metrics" };
	if (!path)
		return "/v1/chat/completions";   /* rows written before paths were recorded */
	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		if (strcmp(path, known[i]) == 0)
			return known[i];
	if (str_has_prefix(path, "/v1/models/"))
		return "/v1/models";
	if (str_has_prefix(path, "/v1/responses/"))
		return "/v1/responses/{id}";
	return "other";
}

struct hour_sum {
	int64_t hour_ms, requests, errors, fallbacks, cost;
};

struct day_sum {
	char day[11];
	const char *kind;
	char *name, *extra;
	int64_t requests, errors, in, out, cost;
};

struct rollup {
	struct sums sums;
	struct hour_sum *hours;
	size_t n_hours;
	struct day_sum *days;
	size_t n_days;
};

static void hour_add(struct rollup *r, int64_t ts, int64_t n, int64_t err, int64_t fb, int64_t cost)
{
	int64_t h = ts / 3600000 * 3600000;
	size_t i = 0;
	while (i < r->n_hours && r->hours[i].hour_ms != h)
		i++;
	if (i == r->n_hours) {
		r->hours = xrealloc(r->hours, (r->n_hours + 1) * sizeof(*r->hours));
		r->hours[r->n_hours++] = (struct hour_sum){ .hour_ms = h };
	}
	r->hours[i].requests += n;
	r->hours[i].errors += err;
	r->hours[i].fallbacks += fb;
	r->hours[i].cost += cost;
}

static void day_add(struct rollup *r, const char *day, const char *kind, const char *name,
		    const char *extra, int64_t n, int64_t err, int64_t in, int64_t out, int64_t cost)
{
	name = name ? name : "";
	extra = extra ? extra : "";
	size_t i = 0;
	while (i < r->n_days && !(strcmp(r->days[i].day, day) == 0 && r->days[i].kind == kind &&
				  strcmp(r->days[i].name, name) == 0 &&
				  strcmp(r->days[i].extra, extra) == 0))
		i++;
	if (i == r->n_days) {
		r->days = xrealloc(r->days, (r->n_days + 1) * sizeof(*r->days));
		r->days[i] = (struct day_sum){ .kind = kind, .name = xstrdup(name), .extra = xstrdup(extra) };
		memcpy(r->days[i].day, day, 11);
		r->n_days++;
	}
	struct day_sum *d = &r->days[i];
	d->requests += n;
	d->errors += err;
	d->in += in;
	d->out += out;
	d->cost += cost;
}

static void rollup_free(struct rollup *r)
{
	sums_free(&r->sums);
	free(r->hours);
	for (size_t i = 0; i < r->n_days; i++) {
		free(r->days[i].name);
		free(r->days[i].extra);
	}
	free(r->days);
}

/* The attempts of the rows (lo, hi]: fallback steps (consecutive attempts of different models) and
 * upstream errors. A call answered by its first attempt has neither: only the others are read. */
static int rollup_attempts(struct store *st, struct rollup *r, int64_t lo, int64_t hi)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db,
			       "SELECT a.request_id, a.model, a.provider, a.outcome, a.upstream_status,"
			       " a.error_code FROM request_log l JOIN request_attempts a"
			       " ON a.request_id = l.request_id WHERE l.id > ?1 AND l.id <= ?2"
			       " AND (l.attempts > 1 OR l.status >= 400 OR l.partial"
			       " OR l.fallback_from IS NOT NULL) ORDER BY l.id, a.attempt",
			       -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(s, 1, lo);
	sqlite3_bind_int64(s, 2, hi);
	char prev_req[64] = "", prev_model[128] = "";
	struct buf lb;
	buf_init(&lb, 4096);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *req = str_or_empty(col_text(s, 0));
		const char *model = str_or_empty(col_text(s, 1));
		const char *provider = col_text(s, 2);
		const char *outcome = str_or_empty(col_text(s, 3));
		int upstream_status = sqlite3_column_int(s, 4);
		const char *code = col_text(s, 5);
		if (strcmp(req, prev_req) == 0 && strcmp(model, prev_model) != 0) {
			buf_reset(&lb);
			label(&lb, "from", prev_model);
			label(&lb, "to", model);
			sums_add(&r->sums, "llm_router_fallbacks_total", buf_str(&lb), 0, 0, 1);
		}
		snprintf(prev_req, sizeof(prev_req), "%s", req);
		snprintf(prev_model, sizeof(prev_model), "%s", model);
		if ((strcmp(outcome, "failed") == 0 || strcmp(outcome, "partial") == 0) &&
		    (upstream_status > 0 || code)) {
			char num[16];
			snprintf(num, sizeof(num), "%d", upstream_status);
			buf_reset(&lb);
			label(&lb, "provider", provider);
			label(&lb, "code", upstream_status > 0 ? num : code);
			sums_add(&r->sums, "llm_router_upstream_errors_total", buf_str(&lb), 0, 0, 1);
		}
	}
	buf_free(&lb);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int rollup_write(struct store *st, const struct rollup *r)
{
	sqlite3_stmt *c = NULL, *h = NULL, *d = NULL;
	int ok = sqlite3_prepare_v2(st->db,
				    "INSERT INTO metrics_counters (family, labels, kind, le, value)"
				    " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO UPDATE"
				    " SET value = value + excluded.value", -1, &c, NULL) == SQLITE_OK &&
		 sqlite3_prepare_v2(st->db,
				    "INSERT INTO metrics_hourly (hour_ms, requests, errors, fallbacks,"
				    " cost_nusd) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO UPDATE SET"
				    " requests = requests + excluded.requests,"
				    " errors = errors + excluded.errors,"
				    " fallbacks = fallbacks + excluded.fallbacks,"
				    " cost_nusd = cost_nusd + excluded.cost_nusd", -1, &h, NULL) == SQLITE_OK &&
		 sqlite3_prepare_v2(st->db,
				    "INSERT INTO metrics_daily (day, kind, name, extra, requests, errors,"
				    " input_tokens, output_tokens, cost_nusd)"
				    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO UPDATE SET"
				    " requests = requests + excluded.requests,"
				    " errors = errors + excluded.errors,"
				    " input_tokens = input_tokens + excluded.input_tokens,"
				    " output_tokens = output_tokens + excluded.output_tokens,"
				    " cost_nusd = cost_nusd + excluded.cost_nusd", -1, &d, NULL) == SQLITE_OK;
	for (size_t i = 0; ok && i < r->sums.cap; i++) {
		const struct sum *e = &r->sums.v[i];
		if (!e->family)
			continue;
		sqlite3_bind_text(c, 1, e->family, -1, SQLITE_STATIC);
		sqlite3_bind_text(c, 2, e->labels, -1, SQLITE_STATIC);
		sqlite3_bind_int(c, 3, e->kind);
		sqlite3_bind_double(c, 4, isinf(e->le) ? 1e308 : e->le);
		sqlite3_bind_double(c, 5, e->value);
		ok = sqlite3_step(c) == SQLITE_DONE;
		sqlite3_reset(c);
	}
	for (size_t i = 0; ok && i < r->n_hours; i++) {
		const struct hour_sum *x = &r->hours[i];
		sqlite3_bind_int64(h, 1, x->hour_ms);
		sqlite3_bind_int64(h, 2, x->requests);
		sqlite3_bind_int64(h, 3, x->errors);
		sqlite3_bind_int64(h, 4, x->fallbacks);
		sqlite3_bind_int64(h, 5, x->cost);
		ok = sqlite3_step(h) == SQLITE_DONE;
		sqlite3_reset(h);
	}
	for (size_t i = 0; ok && i < r->n_days; i++) {
		const struct day_sum *x = &r->days[i];
		sqlite3_bind_text(d, 1, x->day, -1, SQLITE_STATIC);
		sqlite3_bind_text(d, 2, x->kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(d, 3, x->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(d, 4, x->extra, -1, SQLITE_STATIC);
		sqlite3_bind_int64(d, 5, x->requests);
		sqlite3_bind_int64(d, 6, x->errors);
		sqlite3_bind_int64(d, 7, x->in);
		sqlite3_bind_int64(d, 8, x->out);
		sqlite3_bind_int64(d, 9, x->cost);
		ok = sqlite3_step(d) == SQLITE_DONE;
		sqlite3_reset(d);
	}
	sqlite3_finalize(c);
	sqlite3_finalize(h);
	sqlite3_finalize(d);
	return ok ? 0 : -1;
}

/* The last row counted, and (when rolls is not NULL) how many times that mark has moved. */
static int64_t rolled_id(struct store *st, int64_t *rolls)
{
	sqlite3_stmt *s;
	int64_t v = -1;
	if (sqlite3_prepare_v2(st->db, "SELECT rolled_id, rolls FROM metrics_state WHERE id = 1", -1,
			       &s, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(s) == SQLITE_ROW) {
		v = sqlite3_column_int64(s, 0);
		if (rolls)
			*rolls = sqlite3_column_int64(s, 1);
	}
	sqlite3_finalize(s);
	return v;
}

static int set_rolled_id(struct store *st, const char *sql, int64_t v)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(s, 1, v);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* One histogram of a group: n calls, their sum (ms), and how many took at most each finite bound
 * (columns from col). */
static void histogram_group(struct sums *s, const char *family, const char *labels,
			    const double *les, size_t n_les, sqlite3_stmt *st, int col, int64_t n,
			    double sum_ms)
{
	for (size_t i = 0; i + 1 < n_les; i++)
		sums_add(s, family, labels, 1, les[i], (double)sqlite3_column_int64(st, col + (int)i));
	sums_add(s, family, labels, 1, les[n_les - 1], (double)n);
	sums_add(s, family, labels, 2, 0, sum_ms / 1000.0);
	sums_add(s, family, labels, 3, 0, (double)n);
}

/* The figures of one group of rows (a row of group_sql). */
static void collect_group(struct rollup *r, sqlite3_stmt *s, struct buf *lb)
{
	const char *path = col_text(s, 0), *model = col_text(s, 1), *provider = col_text(s, 2);
	const char *tier = col_text(s, 3), *agent = col_text(s, 5);
	int status = sqlite3_column_int(s, 4);
	int64_t hour = sqlite3_column_int64(s, 6), n = sqlite3_column_int64(s, 7);
	int64_t cost = sqlite3_column_int64(s, 8), fell_back = sqlite3_column_int64(s, 9);
	int64_t errors = sqlite3_column_int64(s, 18);
	char num[16];
	snprintf(num, sizeof(num), "%d", status);
	buf_reset(lb);
	label(lb, "endpoint", endpoint_of(path));
	label(lb, "model", model);
	label(lb, "provider", provider);
	label(lb, "tier", tier);
	label(lb, "status", num);
	sums_add(&r->sums, "llm_router_requests_total", buf_str(lb), 0, 0, (double)n);
	if (model) {
		static const char *const dir[4] = { "input", "output", "cached", "reasoning" };
		for (int i = 0; i < 4; i++) {
			if (sqlite3_column_int64(s, 10 + 2 * i) == 0)
				continue;       /* no row of the group knows this count */
			buf_reset(lb);
			label(lb, "model", model);
			label(lb, "direction", dir[i]);
			sums_add(&r->sums, "llm_router_tokens_total", buf_str(lb), 0, 0,
				 (double)sqlite3_column_int64(s, 11 + 2 * i));
		}
		buf_reset(lb);
		label(lb, "tier", tier);
		label(lb, "model", model);
		sums_add(&r->sums, "llm_router_cost_usd_total", buf_str(lb), 0, 0, (double)cost / 1e9);
		buf_reset(lb);
		label(lb, "model", model);
		int col = 23;
		int64_t n_lat = sqlite3_column_int64(s, 19), n_ttft = sqlite3_column_int64(s, 21);
		if (n_lat)
			histogram_group(&r->sums, "llm_router_request_duration_seconds", buf_str(lb),
					duration_le, ARRAY_SIZE(duration_le), s, col, n_lat,
					sqlite3_column_double(s, 20));
		col += (int)ARRAY_SIZE(duration_le) - 1;
		if (n_ttft)
			histogram_group(&r->sums, "llm_router_time_to_first_token_seconds", buf_str(lb),
					ttft_le, ARRAY_SIZE(ttft_le), s, col, n_ttft,
					sqlite3_column_double(s, 22));
	}
	int64_t ts = hour * 3600000;
	char day[11];
	store_utc_day(ts, day);
	int64_t in = sqlite3_column_int64(s, 11), out = sqlite3_column_int64(s, 13);
	hour_add(r, ts, n, errors, fell_back, cost);
	day_add(r, day, "agent", agent, tier, n, errors, in, out, cost);
	if (model)
		day_add(r, day, "model", model, provider, n, errors, in, out, cost);
}

/* Sums up to max_rows rows with id above lo into r (their attempts included); *hi gets the last
 * id. Returns the rows, or -1. Reads only. */
static long rollup_collect(struct store *st, int64_t lo, int max_rows, struct rollup *r, int64_t *hi_out)
{
	pthread_once(&group_sql_once, build_group_sql);
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db,
			       "SELECT count(*), max(id) FROM (SELECT id FROM request_log WHERE id > ?1"
			       " ORDER BY id LIMIT ?2)", -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(s, 1, lo);
	sqlite3_bind_int(s, 2, max_rows);
	int rc = sqlite3_step(s);
	long n = rc == SQLITE_ROW ? (long)sqlite3_column_int64(s, 0) : -1;
	int64_t hi = n > 0 ? sqlite3_column_int64(s, 1) : lo;
	sqlite3_finalize(s);
	if (n <= 0)
		return n;
	if (sqlite3_prepare_v2(st->db, group_sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(s, 1, lo);
	sqlite3_bind_int64(s, 2, hi);
	struct buf lb;
	buf_init(&lb, 4096);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		collect_group(r, s, &lb);
	sqlite3_finalize(s);
	buf_free(&lb);
	if (rc != SQLITE_DONE || rollup_attempts(st, r, lo, hi) < 0)
		return -1;
	*hi_out = hi;
	return n;
}

/* Adds r's sums and moves rolled_id to hi. Inside a write transaction. */
static int rollup_apply(struct store *st, const struct rollup *r, int64_t hi)
{
	return rollup_write(st, r) < 0 ||
			       set_rolled_id(st, "UPDATE metrics_state SET rolled_id = ?1, rolls = rolls + 1"
					    " WHERE id = 1", hi) < 0
		       ? -1
		       : 0;
}

long store_metrics_rollup(struct store *st, int max_rows)
{
	int64_t lo = rolled_id(st, NULL), hi = lo;
	if (lo < 0)
		return -1;
	struct rollup r;
	memset(&r, 0, sizeof(r));
	long n = rollup_collect(st, lo, max_rows, &r, &hi);
	if (n > 0 && rollup_apply(st, &r, hi) < 0)
		n = -1;
	rollup_free(&r);
	return n;
}

int store_metrics_after_prune(struct store *st)
{
	/* New rows take the largest id left plus one: rolled_id must not be above it. */
	return set_rolled_id(st,
			     "UPDATE metrics_state SET rolled_id = min(rolled_id,"
			     " coalesce((SELECT max(id) FROM request_log), 0)), rolls = rolls + 1"
			     " WHERE id = 1",
			     0);
}

/* The read half of a batch: rolled_id and the sums of the rows after it, in one read transaction.
 * It runs on a thread of its own at the lowest CPU priority (nice 19), so that on a busy core the
 * calls in flight go first and a scrape adds no latency to them; the caller waits for it (the
 * connection is used by one thread at a time). */
struct collect_job {
	struct store *st;
	int batch;
	struct rollup r;
	int64_t lo, hi, rolls;
	long n;
};

static void collect_read(struct collect_job *j)
{
	char err[256];
	if (store_exec(j->st->db, "BEGIN", err, sizeof(err)) < 0) {
		j->n = -1;
		return;
	}
	j->lo = j->hi = rolled_id(j->st, &j->rolls);
	j->n = j->lo < 0 ? -1 : rollup_collect(j->st, j->lo, j->batch, &j->r, &j->hi);
	store_rollback(j->st);                   /* ends the read */
}

static void *collect_thread(void *arg)
{
	pthread_setname_np(pthread_self(), "llm-metrics");
	setpriority(PRIO_PROCESS, (id_t)gettid(), 19);   /* this thread only (Linux) */
	collect_read(arg);
	return NULL;
}

void (*store_metrics_between_hook)(struct store *st);

/* One batch: the rows are read and summed (collect_thread), and only the sums are written under
 * the write lock, by the caller's thread, if no other process counted them in between. Returns
 * the rows counted (0: none left), -2 when another process moved rolled_id first, or -1. */
static long catch_up_batch(struct store *st, int batch)
{
	struct collect_job j;
	memset(&j, 0, sizeof(j));
	j.st = st;
	j.batch = batch;
	pthread_attr_t attr;
	pthread_t t;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 1 << 20);
	if (pthread_create(&t, &attr, collect_thread, &j) == 0)
		pthread_join(t, NULL);
	else
		collect_read(&j);                /* no thread to be had: at the caller's priority */
	pthread_attr_destroy(&attr);
	long n = j.n;
	int64_t rolls = -1;
	if (n > 0 && store_metrics_between_hook)
		store_metrics_between_hook(st);
	if (n > 0) {
		/* rolled_id alone is not enough: a prune in between may have counted these rows,
		 * deleted them and put rolled_id back where it was. */
		if (store_begin(st) < 0) {
			n = -1;
		} else if (rolled_id(st, &rolls) != j.lo || rolls != j.rolls) {
			store_rollback(st);
			n = -2;
		} else if (rollup_apply(st, &j.r, j.hi) < 0 || store_commit(st) < 0) {
			store_rollback(st);
			n = -1;
		}
	}
	rollup_free(&j.r);
	return n;
}

long store_metrics_catch_up(struct store *st, int batch, int max_batches)
{
	long total = 0;
	for (int i = 0; i < max_batches; i++) {
		long n = catch_up_batch(st, batch);
		if (n == -2)
			continue;
		if (n < 0)
			return -1;
		total += n;
		if (n < batch)
			break;
	}
	return total;
}

/* ---- reading ---- */

int store_metrics_counters(struct store *st, const char *family, struct buf *out)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db,
			       "SELECT labels, kind, le, value FROM metrics_counters WHERE family = ?1"
			       " ORDER BY labels, kind, le", -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(s, 1, family, -1, SQLITE_STATIC);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *labels = str_or_empty(col_text(s, 0));
		int kind = sqlite3_column_int(s, 1);
		double le = sqlite3_column_double(s, 2);
		double v = sqlite3_column_double(s, 3);
		static const char *const suffix[] = { "", "_bucket", "_sum", "_count" };
		buf_printf(out, "%s%s{%s", family, suffix[kind & 3], labels);
		if (kind == 1) {
			if (le >= 1e308)
				buf_puts(out, ",le=\"+Inf\"");
			else
				buf_printf(out, ",le=\"%g\"", le);
		}
		buf_printf(out, "} %.17g\n", v);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Runs sql (parameters ?1 int64, ?2 and ?3 text, NULL: not bound) and makes an array of objects of the named columns:
 * names[i] ends in ':' for text, '#' for an integer, '$' for nano-dollars shown as USD, '~' for a
 * real; a NULL value is null. */
static json_t *rows_json(struct store *st, const char *sql, int64_t p1, const char *p2,
			 const char *p3, const char *const *names, size_t n)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return NULL;
	sqlite3_bind_int64(s, 1, p1);
	if (p2)
		sqlite3_bind_text(s, 2, p2, -1, SQLITE_STATIC);
	if (p3)
		sqlite3_bind_text(s, 3, p3, -1, SQLITE_STATIC);
	json_t *a = json_array();
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		json_t *o = json_object();
		for (size_t i = 0; i < n; i++) {
			size_t len = strlen(names[i]);
			char key[64];
			snprintf(key, sizeof(key), "%.*s", (int)(len - 1), names[i]);
			char t = names[i][len - 1];
			json_t *v;
			if (sqlite3_column_type(s, (int)i) == SQLITE_NULL)
				v = json_null();
			else if (t == ':')
				v = json_string(col_text(s, (int)i));
			else if (t == '#')
				v = json_integer(sqlite3_column_int64(s, (int)i));
			else if (t == '$')
				v = json_real((double)sqlite3_column_int64(s, (int)i) / 1e9);
			else
				v = json_real(sqlite3_column_double(s, (int)i));
			json_object_set_new(o, key, v ? v : json_null());
		}
		json_array_append_new(a, o);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		json_decref(a);
		return NULL;
	}
	return a;
}

json_t *store_metrics_hours(struct store *st, int64_t from_hour_ms)
{
	static const char *const names[] = { "hour_ms#", "requests#", "errors#", "fallbacks#",
					     "cost_usd$" };
	return rows_json(st,
			 "SELECT hour_ms, requests, errors, fallbacks, cost_nusd FROM metrics_hourly"
			 " WHERE hour_ms >= ?1 ORDER BY hour_ms", from_hour_ms, NULL, NULL, names,
			 ARRAY_SIZE(names));
}

json_t *store_metrics_daily(struct store *st, const char *day, const char *kind)
{
	static const char *const names[] = { "name:", "extra:", "requests#", "errors#",
					     "input_tokens#", "output_tokens#", "cost_usd$" };
	return rows_json(st,
			 "SELECT name, extra, requests, errors, input_tokens, output_tokens, cost_nusd"
			 " FROM metrics_daily WHERE day = ?2 AND kind = ?3 AND ?1 = ?1"
			 " ORDER BY cost_nusd DESC, requests DESC, name", 0, day, kind, names,
			 ARRAY_SIZE(names));
}

json_t *store_metrics_recent(struct store *st, int limit)
{
	static const char *const names[] = { "ts_ms#", "request_id:", "agent:", "tier:", "method:",
					     "path:", "model:", "status#", "input_tokens#",
					     "output_tokens#", "cost_usd$", "latency_ms~",
					     "ttft_ms~", "error_code:", "fallback_from:" };
	return rows_json(st,
			 "SELECT ts_start_ms, request_id, agent, tier, method, path, model, status,"
			 " input_tokens, output_tokens, cost_nusd, latency_ms, ttft_ms, error_code,"
			 " fallback_from FROM request_log ORDER BY id DESC LIMIT ?1", limit, NULL, NULL, names,
			 ARRAY_SIZE(names));
}

json_t *store_metrics_alerts(struct store *st, const char *day)
{
	static const char *const names[] = { "ts_ms#", "scope:", "level#", "spent_usd$",
					     "budget_usd$" };
	return rows_json(st,
			 "SELECT ts_ms, scope, level, spent_nusd, limit_nusd FROM budget_alerts"
			 " WHERE day = ?2 AND ?1 = ?1 ORDER BY ts_ms DESC", 0, day, NULL, names,
			 ARRAY_SIZE(names));
}

int store_metrics_latencies(struct store *st, int limit,
			    void (*cb)(void *ud, const char *model, double latency_ms, double ttft_ms),
			    void *ud)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db,
			       "SELECT model, latency_ms, coalesce(ttft_ms, -1) FROM request_log"
			       " WHERE id > (SELECT coalesce(max(id), 0) FROM request_log) - ?1"
			       " AND model IS NOT NULL AND latency_ms IS NOT NULL AND status < 400",
			       -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int(s, 1, limit);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		cb(ud, col_text(s, 0), sqlite3_column_double(s, 1), sqlite3_column_double(s, 2));
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}
