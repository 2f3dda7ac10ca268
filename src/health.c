/* health.c - model cooldown (see health.h). */
#include "health.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "util.h"

#define MAX_ENTRIES 256

struct entry {
	char model[128];
	int64_t failures;
	int64_t window_start_ms;
	int64_t cooldown_until_ms;
	int64_t probe_until_ms;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t refreshed = PTHREAD_COND_INITIALIZER;
static struct entry entries[MAX_ENTRIES];
static size_t n_entries;
static int64_t last_refresh_ms;
static int refreshing;

void health_reset(void)
{
	pthread_mutex_lock(&mu);
	n_entries = 0;
	last_refresh_ms = 0;
	pthread_mutex_unlock(&mu);
}

/* Under mu. NULL when absent and create is 0 (or the table is full). */
static struct entry *find(const char *model, int create)
{
	for (size_t i = 0; i < n_entries; i++)
		if (strcmp(entries[i].model, model) == 0)
			return &entries[i];
	if (!create || n_entries == MAX_ENTRIES || strlen(model) >= sizeof(entries[0].model))
		return NULL;
	struct entry *e = &entries[n_entries++];
	memset(e, 0, sizeof(*e));
	snprintf(e->model, sizeof(e->model), "%s", model);
	return e;
}

struct loaded {
	struct health_row rows[MAX_ENTRIES];
	char names[MAX_ENTRIES][128];
	size_t n;
};

static void on_row(void *ud, const struct health_row *h)
{
	struct loaded *l = ud;
	if (l->n == MAX_ENTRIES || strlen(h->model) >= sizeof(l->names[0]))
		return;
	snprintf(l->names[l->n], sizeof(l->names[0]), "%s", h->model);
	l->rows[l->n] = *h;
	l->rows[l->n].model = l->names[l->n];
	l->n++;
}

/* Re-reads the shared state when the copy is older than HEALTH_REFRESH_MS. One thread reads;
 * the others wait for it rather than decide on a stale copy. */
static void maybe_refresh(const struct health_source *src, int64_t now)
{
	pthread_mutex_lock(&mu);
	while (refreshing && now - last_refresh_ms >= HEALTH_REFRESH_MS)
		pthread_cond_wait(&refreshed, &mu);
	int due = !refreshing && now - last_refresh_ms >= HEALTH_REFRESH_MS;
	if (due)
		refreshing = 1;
	pthread_mutex_unlock(&mu);
	if (!due)
		return;
	struct store *st = src && src->store ? src->store(src->ud) : NULL;
	struct loaded *lp = st ? xcalloc(1, sizeof(*lp)) : NULL;
	int ok = st && store_health_load(st, on_row, lp) == 0;
	pthread_mutex_lock(&mu);
	if (ok) {
		/* The database is the truth: models it does not list are healthy. A probe this process
		 * runs is kept (the database has it too). */
		for (size_t i = 0; i < n_entries; i++) {
			entries[i].failures = 0;
			entries[i].cooldown_until_ms = 0;
			entries[i].window_start_ms = 0;
		}
		for (size_t i = 0; i < lp->n; i++) {
			const struct health_row *h = &lp->rows[i];
			struct entry *e = find(h->model, 1);
			if (!e)
				continue;
			e->failures = h->failures;
			e->window_start_ms = h->window_start_ms;
			e->cooldown_until_ms = h->cooldown_until_ms;
			if (h->probe_until_ms > e->probe_until_ms)
				e->probe_until_ms = h->probe_until_ms;
		}
	}
	last_refresh_ms = now;
	refreshing = 0;
	pthread_cond_broadcast(&refreshed);
	pthread_mutex_unlock(&mu);
	free(lp);
}

enum health_verdict health_check(const struct config *cfg, const char *model,
				 const struct health_source *src, int64_t *until_ms)
{
	*until_ms = 0;
	if (cfg->cooldown_failures <= 0)
		return HEALTH_OK;
	int64_t now = clock_wall_ms();
	maybe_refresh(src, now);
	pthread_mutex_lock(&mu);
	struct entry *e = find(model, 0);
	if (!e || e->cooldown_until_ms == 0) {
		pthread_mutex_unlock(&mu);
		return HEALTH_OK;
	}
	if (e->cooldown_until_ms > now) {
		*until_ms = e->cooldown_until_ms;
		pthread_mutex_unlock(&mu);
		return HEALTH_COOLING;
	}
	if (e->probe_until_ms > now) {
		*until_ms = e->probe_until_ms;
		pthread_mutex_unlock(&mu);
		return HEALTH_COOLING;
	}
	/* The cooldown is over: one request (across every process) probes the model. */
	int64_t probe_until = now + cfg->connect_timeout_ms + cfg->timeout_ms;
	e->probe_until_ms = probe_until;
	pthread_mutex_unlock(&mu);
	struct store *st = src && src->store ? src->store(src->ud) : NULL;
	int claimed = st ? store_health_claim(st, model, now, probe_until) : -1;
	if (claimed == 0) {
		/* The copy was stale: another process probes the model, or it is healthy again. The
		 * database says which. */
		struct health_row row;
		int found = store_health_get(st, model, &row);
		pthread_mutex_lock(&mu);
		e = find(model, 0);
		if (e && found >= 0) {
			e->failures = row.failures;
			e->window_start_ms = row.window_start_ms;
			e->cooldown_until_ms = row.cooldown_until_ms;
			e->probe_until_ms = row.probe_until_ms;
		}
		pthread_mutex_unlock(&mu);
		if (found == 0 || (found > 0 && row.cooldown_until_ms == 0))
			return HEALTH_OK;
		*until_ms = found > 0 && row.probe_until_ms > now ? row.probe_until_ms : probe_until;
		return HEALTH_COOLING;
	}
	log_info(NULL, "model %s: cooldown over, this request probes it", model);
	return HEALTH_PROBE;
}

void health_report(const struct config *cfg, const char *model, int ok, const char *error,
		   const struct health_source *src)
{
	if (cfg->cooldown_failures <= 0)
		return;
	int64_t now = clock_wall_ms();
	if (ok) {
		pthread_mutex_lock(&mu);
		struct entry *e = find(model, 0);
		int was_bad = e && (e->failures > 0 || e->cooldown_until_ms > 0);
		int was_cooling = e && e->cooldown_until_ms > 0;
		if (e) {
			e->failures = 0;
			e->cooldown_until_ms = 0;
			e->probe_until_ms = 0;
		}
		pthread_mutex_unlock(&mu);
		if (!was_bad)
			return;
		struct store *st = src && src->store ? src->store(src->ud) : NULL;
		if (st)
			store_health_ok(st, model, now);
		if (was_cooling)
			log_info(NULL, "model %s answered again: cooldown ended", model);
		return;
	}
	int64_t window_ms = cfg->cooldown_window_s * 1000;
	int64_t cooldown_ms = cfg->cooldown_s * 1000;
	struct store *st = src && src->store ? src->store(src->ud) : NULL;
	struct health_row row;
	memset(&row, 0, sizeof(row));
	int stored = st && store_health_failure(st, model, now, window_ms, cfg->cooldown_failures,
						cooldown_ms, error, &row) == 0;
	pthread_mutex_lock(&mu);
	struct entry *e = find(model, 1);
	if (e && stored) {
		e->failures = row.failures;
		e->window_start_ms = row.window_start_ms;
		e->cooldown_until_ms = row.cooldown_until_ms;
		e->probe_until_ms = row.probe_until_ms;
	} else if (e) {
		/* No database: the same rule on the process's own copy. */
		if (now - e->window_start_ms > window_ms) {
			e->failures = 1;
			e->window_start_ms = now;
		} else {
			e->failures++;
		}
		if (e->failures >= cfg->cooldown_failures || e->cooldown_until_ms > 0) {
			e->failures = 0;
			e->window_start_ms = now;
			e->cooldown_until_ms = now + cooldown_ms;
			e->probe_until_ms = 0;
			row.tripped = 1;
		}
	}
	pthread_mutex_unlock(&mu);
	if (row.tripped)
		log_warn(NULL, "model %s is skipped for %lld s (cooldown) after repeated failures; last: %s",
			 model, (long long)cfg->cooldown_s, error ? error : "?");
}
