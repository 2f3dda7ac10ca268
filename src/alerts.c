/* alerts.c - budget alerts: the log line, and the outbox drained to budget.webhook_url.
 *
 * Model: the budget_alerts row is the alert (recorded in the budget transaction); alerts.c only
 * reads and updates rows, so nothing is lost when a process exits. A drainer takes one due row at
 * a time: it claims it (store_alert_claim moves next_try_ms LEASE_MS ahead, so no other process
 * sends it meanwhile), POSTs it, then marks it sent, or schedules the next try with a backoff
 * doubling from BACKOFF_MIN_MS to BACKOFF_MAX_MS. Delivery is at least once: a drainer that dies
 * after the webhook took the POST and before the row says so leaves the lease to run out, and the
 * next drainer sends the alert again; the body's alert_id (day/scope/level) lets a receiver drop
 * the repeat. Rows older than MAX_AGE_MS are no longer sent (they stay in the table, unsent).
 * The sender thread of a FastCGI responder is joinable: alerts_stop joins it, so libcurl is never
 * cleaned up under it.
 */
#include "alerts.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonx.h"
#include "log.h"
#include "upstream.h"
#include "util.h"

#define POST_TIMEOUT_MS 10000
#define LEASE_MS (6 * POST_TIMEOUT_MS)
#define BACKOFF_MIN_MS 2000
#define BACKOFF_MAX_MS (10 * 60 * 1000)
#define MAX_AGE_MS (24 * 3600 * 1000LL)
#define DRAIN_BATCH 16
/* The sender looks for rows other processes left this often. */
#define POLL_MS 10000
/* A database that could not be opened is tried again after this. */
#define REOPEN_MS 10000

/* The sender thread of a FastCGI responder (alerts_start), woken by each alert. */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int stop;
	int kick;
	int running;
	int open_failed;             /* sender thread only: said that the database cannot be opened */
	pthread_t thread;
	struct store_opts opts;
} S = { .mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void alerts_kick(void)
{
	if (!__atomic_load_n(&S.running, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&S.mu);
	S.kick = 1;
	pthread_cond_signal(&S.cond);
	pthread_mutex_unlock(&S.mu);
}

void alerts_budget(const struct config *cfg, const char *day, const char *scope, int64_t level,
		   int64_t spent_nusd, int64_t budget_nusd, const char *request_id)
{
	log_warn(request_id, "budget alert: %s reached %lld %% of its daily budget on %s: $%.4f of $%.2f%s",
		 scope, (long long)level, day, (double)spent_nusd / 1e9, (double)budget_nusd / 1e9,
		 level >= cfg->block_percent ? " (requests are refused until 00:00 UTC)" : "");
	alerts_kick();
}

static char *alert_body(const struct alert_row *a)
{
	json_t *o = json_object();
	char *id = xasprintf("%s/%s/%d", a->day, a->scope, a->level);
	json_object_set_new(o, "type", json_string("budget_alert"));
	json_object_set_new(o, "alert_id", json_string(id));
	free(id);
	json_object_set_new(o, "level_percent", json_integer(a->level));
	json_object_set_new(o, "scope", json_string(a->scope));
	json_object_set_new(o, "day", json_string(a->day));
	json_object_set_new(o, "spent_usd", json_real((double)a->spent_nusd / 1e9));
	json_object_set_new(o, "budget_usd", json_real((double)a->limit_nusd / 1e9));
	json_object_set_new(o, "ts_ms", json_integer(a->ts_ms));
	json_object_set_new(o, "attempt", json_integer(a->attempts + 1));
	char *body = jsonx_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!body)
		abort();
	return body;
}

/* One claimed row: POST it, then record the outcome. Returns 1 sent, 0 not, -1 database error. */
static int send_one(struct store *st, const char *url, const struct alert_row *a, long timeout_ms)
{
	char *body = alert_body(a);
	long status = 0;
	char err[256] = "";
	int ok = upstream_post_json(url, body, timeout_ms, &status, err, sizeof(err)) == 0 &&
		 status >= 200 && status < 300;
	free(body);
	int64_t now = clock_wall_ms();
	if (ok)
		return store_alert_sent(st, a, now) < 0 ? -1 : 1;
	if (!err[0])
		snprintf(err, sizeof(err), "the webhook answered HTTP %ld", status);
	int shift = a->attempts < 16 ? a->attempts : 16;
	int64_t backoff = (int64_t)BACKOFF_MIN_MS << shift;
	if (backoff > BACKOFF_MAX_MS)
		backoff = BACKOFF_MAX_MS;
	log_warn(NULL, "budget alert webhook (%s, %d %% on %s) failed on attempt %d: %s; next try in %lld s%s",
		 a->scope, a->level, a->day, a->attempts + 1, err, (long long)(backoff / 1000),
		 a->ts_ms + MAX_AGE_MS < now + backoff ? " (past 24 h: it will not be sent)" : "");
	return store_alert_failed(st, a, now + backoff, err) < 0 ? -1 : 0;
}

int alerts_drain(struct store *st, const char *url, int64_t deadline_us, const int *stop)
{
	if (!st || !url || !url[0])
		return 0;
	int sent = 0;
	for (;;) {
		struct alert_row rows[DRAIN_BATCH];
		int64_t now = clock_wall_ms();
		int n = store_alert_due(st, now, now - MAX_AGE_MS, rows, DRAIN_BATCH);
		if (n <= 0)
			return n < 0 ? -1 : sent;
		for (int i = 0; i < n; i++) {
			long left_ms = (long)((deadline_us - clock_mono_us()) / 1000);
			if ((stop && __atomic_load_n(stop, __ATOMIC_RELAXED)) || left_ms < 1000)
				return sent;
			now = clock_wall_ms();
			int c = store_alert_claim(st, &rows[i], now, now + LEASE_MS);
			if (c < 0)
				return -1;
			if (c == 0)
				continue;   /* another drainer has it */
			int r = send_one(st, url, &rows[i], left_ms < POST_TIMEOUT_MS ? left_ms : POST_TIMEOUT_MS);
			if (r < 0)
				return -1;
			sent += r;
		}
	}
}

int alerts_due(struct store *st)
{
	if (!st)
		return 0;
	int64_t now = clock_wall_ms();
	int64_t next = store_alert_next(st, now - MAX_AGE_MS);
	return next >= 0 && next <= now;
}

/* ---- the sender thread ---- */

/* One pass: drain what is due; returns how long to sleep (ms). */
static int64_t sender_pass(struct store **st, int64_t *reopen_us)
{
	int64_t wait_ms = POLL_MS;
	struct config *cfg = config_acquire();
	const char *url = cfg ? cfg->webhook_url : NULL;
	if (*st && store_file_moved(*st)) {
		/* The file was replaced or deleted: its rows are not the outbox any more. */
		store_close(*st);
		*st = NULL;
	}
	if (url && url[0] && !*st && clock_mono_us() >= *reopen_us) {
		char err[512];
		*st = store_open(&S.opts, err, sizeof(err));
		if (!*st) {
			*reopen_us = clock_mono_us() + REOPEN_MS * 1000LL;
			if (!S.open_failed)
				log_warn(NULL, "budget alerts wait in the outbox: cannot open the database: %s", err);
		}
		S.open_failed = !*st;
	}
	if (url && url[0] && *st) {
		if (alerts_drain(*st, url, INT64_MAX, &S.stop) < 0 && store_failed_for_good(*st)) {
			store_close(*st);
			*st = NULL;
			*reopen_us = clock_mono_us() + REOPEN_MS * 1000LL;
		}
		int64_t now = clock_wall_ms();
		int64_t next = *st ? store_alert_next(*st, now - MAX_AGE_MS) : -1;
		if (next >= 0 && next - now < wait_ms)
			wait_ms = next - now < 200 ? 200 : next - now;
	}
	config_release(cfg);
	return wait_ms;
}

static void *sender_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "llm-alerts");
	struct store *st = NULL;
	int64_t reopen_us = 0;
	pthread_mutex_lock(&S.mu);
	while (!S.stop) {
		S.kick = 0;
		pthread_mutex_unlock(&S.mu);
		int64_t wait_ms = sender_pass(&st, &reopen_us);
		pthread_mutex_lock(&S.mu);
		if (S.stop || S.kick)
			continue;
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += wait_ms / 1000;
		until.tv_nsec += (wait_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		int rc = 0;
		while (!S.stop && !S.kick && rc != ETIMEDOUT)
			rc = pthread_cond_timedwait(&S.cond, &S.mu, &until);
	}
	pthread_mutex_unlock(&S.mu);
	store_close(st);
	return NULL;
}

int alerts_start(const struct store_opts *o)
{
	store_opts_copy(&S.opts, o);
	free((char *)S.opts.jsonl_path);
	S.opts.jsonl_path = NULL;
	S.opts.checkpoint_pages = 0;
	S.opts.retention_days = 0;
	S.stop = 0;
	S.kick = 0;
	if (pthread_create(&S.thread, NULL, sender_main, NULL) != 0) {
		store_opts_free(&S.opts);
		return -1;
	}
	__atomic_store_n(&S.running, 1, __ATOMIC_RELEASE);
	return 0;
}

void alerts_stop(void)
{
	if (!__atomic_load_n(&S.running, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&S.mu);
	__atomic_store_n(&S.stop, 1, __ATOMIC_RELAXED);
	pthread_cond_signal(&S.cond);
	pthread_mutex_unlock(&S.mu);
	pthread_join(S.thread, NULL);
	__atomic_store_n(&S.running, 0, __ATOMIC_RELEASE);
	store_opts_free(&S.opts);
}
