/* budget.c - daily budgets: estimate, the admission rule, reserve, headers, alerts (see budget.h).
 *
 * The decision (budget_admit) is a pure function of what the reservation's transaction read; the
 * transaction itself (reserve_in_tx) runs on the writer thread's connection when the process has
 * one (logwriter_run, in its group commit), else on the caller's connection. All money is int64
 * nano-USD.
 */
#include "budget.h"

#include <stdio.h>
#include <string.h>

#include "alerts.h"
#include "dbdown.h"
#include "log.h"
#include "logwriter.h"
#include "providers/provider.h"
#include "store_diag.h"
#include "util.h"

/* An image, audio clip or file counts this many input tokens instead of its bytes. */
#define MEDIA_TOKENS 2000

static int64_t usd_to_nusd(double usd)
{
	return (int64_t)(usd * 1e9 + 0.5);
}

/* Bytes of the request that are media data, and how many media parts there are. */
static void media_bytes(const json_t *messages, int64_t *bytes, int64_t *parts)
{
	size_t i, j;
	const json_t *m, *p;
	json_array_foreach(messages, i, m)
	{
		json_array_foreach(json_object_get(m, "content"), j, p)
		{
			const char *type = json_string_value(json_object_get(p, "type"));
			if (!type || strcmp(type, "text") == 0)
				continue;
			const json_t *inner = json_object_get(p, type);
			const char *keys[] = { "url", "data", "file_data" };
			for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
				const json_t *v = json_object_get(inner, keys[k]);
				if (json_is_string(v))
					*bytes += (int64_t)json_string_length(v);
			}
			(*parts)++;
		}
	}
}

int64_t budget_estimate_nusd(const struct config *cfg, const json_t *body, size_t body_len,
			     const struct chain *ch, struct budget_estimate *e)
{
	int64_t media = 0, parts = 0;
	media_bytes(json_object_get(body, "messages"), &media, &parts);
	int64_t in = (int64_t)body_len - media;
	if (in < 0)
		in = 0;
	in += parts * MEDIA_TOKENS;
	int64_t worst = 0, floor = 0;
	int all_sent = 1;
	for (size_t k = 0; k < ch->n; k++) {
		const struct model_conf *m = &cfg->models[ch->model[k]];
		/* What the translated request lets the upstream write (thinking budgets, n), or the
		 * model's max_output_tokens when it sends no bound. */
		int sent;
		int64_t out = provider_output_bound(cfg, m, body, &sent);
		all_sent &= sent;
		int64_t c = cost_add(cost_mul(in, m->in_nusd), cost_mul(out, m->out_nusd));
		if (c > worst)
			worst = c;
		c = cost_add(cost_mul(in, m->in_nusd), m->out_nusd);
		if (c > floor)
			floor = c;
	}
	if (e) {
		e->floor_nusd = floor;
		e->bounded = all_sent;
	}
	return worst;
}

long budget_seconds_to_reset(int64_t now_ms)
{
	int64_t s = now_ms / 1000;
	return (long)(86400 - s % 86400);
}

void budget_scope_init(struct budget_scope *sc, const char *scope, double budget_usd,
		       const struct config *cfg)
{
	memset(sc, 0, sizeof(*sc));
	sc->scope = scope;
	sc->budget_nusd = budget_usd > 0 ? usd_to_nusd(budget_usd) : 0;
	sc->limit_nusd = sc->budget_nusd ? sc->budget_nusd / 100 * cfg->block_percent : 0;
	sc->warn_nusd = sc->budget_nusd ? sc->budget_nusd / 100 * cfg->warn_percent : 0;
}

int64_t budget_scope_left(const struct budget_scope *sc)
{
	return sc->budget_nusd - sc->spent_nusd - sc->reserved_nusd;
}

void budget_admit(struct budget_ask *ask)
{
	ask->blocked = -1;
	ask->refusal = BUDGET_ADMITTED;
	for (size_t i = 0; i < ask->n; i++) {
		const struct budget_scope *sc = &ask->scopes[i];
		if (sc->limit_nusd > 0 && sc->spent_nusd + sc->reserved_nusd + ask->amount_nusd > sc->limit_nusd) {
			ask->blocked = (int)i;
			ask->refusal = sc->spent_nusd + sc->reserved_nusd + ask->floor_nusd > sc->limit_nusd
					       ? BUDGET_EXHAUSTED
					       : BUDGET_TOO_LARGE;
			break;
		}
	}
	for (size_t i = 0; i < ask->n; i++) {
		struct budget_scope *sc = &ask->scopes[i];
		sc->warn_due = sc->warn_nusd > 0 && sc->spent_nusd >= sc->warn_nusd;
		sc->block_due = sc->limit_nusd > 0 &&
				(sc->spent_nusd >= sc->limit_nusd ||
				 (ask->blocked == (int)i && ask->refusal == BUDGET_EXHAUSTED));
	}
}

/* The reservation's statements, inside a transaction the caller holds (logwriter_run's contract:
 * -1 only when the database failed). */
static int reserve_in_tx(struct store *st, void *ud, char *errbuf, size_t errsz)
{
	struct budget_ask *ask = ud;
	(void)errbuf;
	(void)errsz;
	ask->admitted = 0;
	ask->blocked = -1;
	int ok = 1;
	for (size_t i = 0; i < ask->n && ok; i++) {
		struct budget_scope *sc = &ask->scopes[i];
		sc->new_warn = sc->new_block = 0;
		ok = store_budget_spend(st, ask->day, sc->scope, &sc->spent_nusd, &sc->reserved_nusd) == 0;
		if (ok && sc->budget_nusd > 0)
			ok = store_budget_limit_set(st, sc->scope, sc->budget_nusd) == 0;
	}
	if (!ok)
		return -1;
	budget_admit(ask);
	/* Alerts: once per scope, day and level (the table's key says whether this is the first). */
	for (size_t i = 0; i < ask->n && ok; i++) {
		struct budget_scope *sc = &ask->scopes[i];
		if (sc->warn_due) {
			int n = store_budget_alert(st, ask->day, sc->scope, ask->warn_level, ask->now_ms,
						   sc->spent_nusd, sc->budget_nusd, ask->outbox);
			ok = n >= 0;
			sc->new_warn = n == 1;
		}
		if (ok && sc->block_due) {
			int n = store_budget_alert(st, ask->day, sc->scope, ask->block_level, ask->now_ms,
						   sc->spent_nusd, sc->budget_nusd, ask->outbox);
			ok = n >= 0;
			sc->new_block = n == 1;
		}
	}
	if (ok && ask->blocked < 0) {
		ok = store_budget_hold(st, ask->request_id, ask->day, ask->scopes[0].scope,
				       ask->n > 1 ? ask->scopes[1].scope : NULL, ask->amount_nusd,
				       ask->now_ms) == 0;
		ask->admitted = ok;
	}
	if (!ok)
		ask->admitted = 0;
	return ok ? 0 : -1;
}

int budget_reserve_tx(struct store *st, struct budget_ask *ask)
{
	ask->admitted = 0;
	ask->blocked = -1;
	if (store_begin(st) < 0)
		return -1;
	if (reserve_in_tx(st, ask, NULL, 0) < 0 || store_commit(st) < 0) {
		store_rollback(st);
		ask->admitted = 0;
		return -1;
	}
	return 0;
}


/* Runs fn in one transaction: through the writer thread when this process has one (in its group
 * commit), else BEGIN IMMEDIATE on st. Returns 0, or -1 when the database failed. */
static int run_tx(struct store *st, int (*fn)(struct store *, void *, char *, size_t),
		  struct budget_ask *ask)
{
	if (logwriter_running()) {
		char err[256];
		return logwriter_run(fn, ask, err, sizeof(err));
	}
	if (dbdown_is_down())
		return -1;
	if (store_begin(st) < 0) {
		dbdown_failed("a budget transaction could not start");
		return -1;
	}
	if (fn(st, ask, NULL, 0) < 0 || store_commit(st) < 0) {
		store_rollback(st);
		dbdown_failed("a budget transaction failed");
		return -1;
	}
	dbdown_up();
	return 0;
}

static int reserve(struct store *st, struct budget_ask *ask)
{
	int rc = run_tx(st, reserve_in_tx, ask);
	if (rc < 0)
		ask->admitted = 0;
	return rc;
}

static void usd(char *out, size_t n, int64_t nusd)
{
	snprintf(out, n, "%s$%.6f", nusd < 0 ? "-" : "", (double)(nusd < 0 ? -nusd : nusd) / 1e9);
}

/* Reservation reclaim runs at most this often per process. */
#define RECLAIM_EVERY_MS 10000
static int64_t last_reclaim_ms;

/* Retry-After for a request that fits once the calls in flight settle their reservations. */
#define IN_FLIGHT_RETRY_S 2

/* The refusal's answer: the budget exhausted (429 budget_exceeded until 00:00 UTC), or this
 * request too large for what is left (budget_request_too_large: 429 with a Retry-After when
 * waiting helps, 400 when it never fits the scope's whole limit). */
static int refuse(const struct budget_ask *ask, const char *kind, const char *who,
		  int64_t now_ms, struct rerr *err)
{
	const struct budget_scope *sc = &ask->scopes[ask->blocked];
	char spent[32], limit[32], reserved[32], need[32], left[32];
	usd(spent, sizeof(spent), sc->spent_nusd);
	usd(limit, sizeof(limit), sc->limit_nusd);
	usd(reserved, sizeof(reserved), sc->reserved_nusd);
	usd(need, sizeof(need), ask->amount_nusd);
	int64_t left_nusd = sc->limit_nusd - sc->spent_nusd - sc->reserved_nusd;
	usd(left, sizeof(left), left_nusd < 0 ? 0 : left_nusd);
	if (ask->refusal == BUDGET_EXHAUSTED) {
		rerr_set(err, 429, "budget_exceeded", "budget_exceeded", NULL,
			 "Daily budget of %s %s is exhausted: %s spent of %s today (UTC), %s reserved by "
			 "calls in flight, and this call may cost up to %s. It resets at 00:00 UTC.",
			 kind, who, spent, limit, reserved, need);
		err->retry_after = budget_seconds_to_reset(now_ms);
		err->should_retry = 0;
		return -1;
	}
	if (ask->amount_nusd > sc->limit_nusd) {
		rerr_set(err, 400, "invalid_request_error", "budget_request_too_large", "max_tokens",
			 "This request's worst case (%s) is more than the whole daily budget of %s %s "
			 "(%s); lower max_tokens (or n, or the thinking budget).",
			 need, kind, who, limit);
		err->should_retry = 0;
		return -1;
	}
	int in_flight = sc->spent_nusd + ask->amount_nusd <= sc->limit_nusd;
	rerr_set(err, 429, "budget_exceeded", "budget_request_too_large", "max_tokens",
		 "This request's worst case (%s) does not fit the %s left today of the daily budget of "
		 "%s %s (%s spent of %s, %s reserved by calls in flight); lower max_tokens%s.",
		 need, left, kind, who, spent, limit, reserved,
		 in_flight ? ", or retry when the calls in flight have finished"
			   : ", or retry after 00:00 UTC");
	err->retry_after = in_flight ? IN_FLIGHT_RETRY_S : budget_seconds_to_reset(now_ms);
	err->should_retry = in_flight;
	return -1;
}

/* The tightest scope (the least left) for the headers; the alerts this reservation recorded. */
static void after_reserve(const struct config *cfg, struct budget_state *bs, const char *request_id)
{
	const struct budget_ask *ask = &bs->ask;
	for (size_t i = 0; i < ask->n; i++) {
		const struct budget_scope *sc = &ask->scopes[i];
		if (!sc->budget_nusd)
			continue;
		int64_t left = budget_scope_left(sc);
		if (bs->limit_nusd < 0 || left < bs->remaining_nusd) {
			bs->limit_nusd = sc->budget_nusd;
			bs->remaining_nusd = left;
		}
	}
	for (size_t i = 0; i < ask->n; i++) {
		const struct budget_scope *sc = &ask->scopes[i];
		if (sc->new_warn)
			alerts_budget(cfg, ask->day, sc->scope, ask->warn_level, sc->spent_nusd,
				      sc->budget_nusd, request_id);
		if (sc->new_block)
			alerts_budget(cfg, ask->day, sc->scope, ask->block_level, sc->spent_nusd,
				      sc->budget_nusd, request_id);
	}
}

int budget_wants_store(int64_t now_ms)
{
	return !logwriter_running() ||
	       now_ms - __atomic_load_n(&last_reclaim_ms, __ATOMIC_RELAXED) >= RECLAIM_EVERY_MS;
}

int budget_reserve(struct store *st, const struct config *cfg, const struct tier_conf *tier,
		   const char *agent, const char *request_id, int64_t now_ms,
		   int64_t amount_nusd, int64_t floor_nusd, struct budget_state *bs, struct rerr *err)
{
	memset(bs, 0, sizeof(*bs));
	bs->limit_nusd = -1;
	if (!cfg->budget_enabled || !tier)
		return 0;
	/* A database known to be down is not waited on (dbdown.h). With a writer thread the
	 * reservation is its job: st (for the reclaim) is given only when budget_wants_store(). */
	if ((!st && !logwriter_running()) || dbdown_is_down()) {
		if (strcmp(cfg->budget_when_db_down, "refuse") == 0)
			return rerr_set(err, 503, "server_error", "budget_unavailable", NULL,
					"Budgets cannot be checked: the database is unavailable. Retry later.");
		return 0;
	}
	int64_t last = __atomic_load_n(&last_reclaim_ms, __ATOMIC_RELAXED);
	if (st && now_ms - last >= RECLAIM_EVERY_MS &&
	    __atomic_compare_exchange_n(&last_reclaim_ms, &last, now_ms, 0, __ATOMIC_RELAXED,
					__ATOMIC_RELAXED)) {
		int n = store_budget_reclaim(st, now_ms - cfg->reservation_timeout_s * 1000);
		if (n < 0) {
			store_diagnose(st, NULL);   /* a file it cannot write: the log says the fix */
			dbdown_failed("reclaiming stale budget reservations failed");
		}
		if (n > 0)
			log_warn(request_id, "reclaimed %d budget reservation(s) older than %lld s: their "
				 "responders ended before the row, and each is charged its worst case "
				 "(error_code responder_lost)", n, (long long)cfg->reservation_timeout_s);
	}
	snprintf(bs->tier_scope, sizeof(bs->tier_scope), "tier:%s", tier->id);
	struct budget_ask *ask = &bs->ask;
	ask->request_id = request_id;
	ask->now_ms = now_ms;
	store_utc_day(now_ms, ask->day);
	ask->amount_nusd = amount_nusd;
	ask->floor_nusd = floor_nusd < amount_nusd ? floor_nusd : amount_nusd;
	ask->warn_level = (int)cfg->warn_percent;
	ask->block_level = (int)cfg->block_percent;
	ask->outbox = cfg->webhook_url && cfg->webhook_url[0];
	budget_scope_init(&ask->scopes[0], bs->tier_scope, tier->daily_budget_usd, cfg);
	ask->n = 1;
	if (agent) {
		snprintf(bs->agent_scope, sizeof(bs->agent_scope), "agent:%s", agent);
		budget_scope_init(&ask->scopes[1], bs->agent_scope, tier->agent_daily_budget_usd, cfg);
		ask->n = 2;
	}
	int rc = dbdown_is_down() ? -1 : reserve(st, ask);
	if (rc < 0) {
		log_warn(request_id, "budget check skipped: the database is down");
		if (strcmp(cfg->budget_when_db_down, "refuse") == 0)
			return rerr_set(err, 503, "server_error", "budget_unavailable", NULL,
					"Budgets cannot be checked: the database is unavailable. Retry later.");
		return 0;
	}
	after_reserve(cfg, bs, request_id);
	if (!ask->admitted) {
		int is_tier = ask->blocked == 0;
		return refuse(ask, is_tier ? "tier" : "agent", is_tier ? tier->id : agent, now_ms, err);
	}
	bs->reserved = 1;
	return 0;
}

/* The settling request's warn alerts, in a transaction the caller holds: each scope whose
 * committed spend reached its warn threshold records the day's alert (once: the table's key). */
static int settled_in_tx(struct store *st, void *ud, char *errbuf, size_t errsz)
{
	struct budget_ask *ask = ud;
	(void)errbuf;
	(void)errsz;
	for (size_t i = 0; i < ask->n; i++) {
		struct budget_scope *sc = &ask->scopes[i];
		sc->new_warn = 0;
		if (!sc->warn_due)
			continue;
		if (store_budget_spend(st, ask->day, sc->scope, &sc->spent_nusd, &sc->reserved_nusd) < 0)
			return -1;
		int n = store_budget_alert(st, ask->day, sc->scope, ask->warn_level, ask->now_ms,
					   sc->spent_nusd, sc->budget_nusd, ask->outbox);
		if (n < 0)
			return -1;
		sc->new_warn = n == 1;
	}
	return 0;
}

/* The spend of scope i after the row's settlement: the one it read, else a read on st. */
static int spent_now(struct store *st, const struct budget_state *bs, size_t i, int64_t *spent)
{
	int64_t reserved;
	if (bs->spent_after.valid && i < 2) {
		*spent = bs->spent_after.nusd[i];
		return 0;
	}
	return st ? store_budget_spend(st, bs->ask.day, bs->ask.scopes[i].scope, spent, &reserved) : -1;
}

/* Whether scope i crossed its warn threshold with this call: below it at admission (a scope
 * already past it recorded its alert then), at or above it now. */
static int warn_crossed(struct store *st, const struct budget_state *bs, size_t i)
{
	const struct budget_scope *sc = &bs->ask.scopes[i];
	int64_t spent = 0;
	return sc->warn_nusd > 0 && sc->spent_nusd < sc->warn_nusd &&
	       spent_now(st, bs, i, &spent) == 0 && spent >= sc->warn_nusd;
}

int budget_settle_wants_store(const struct budget_state *bs)
{
	if (!bs->reserved)
		return 0;
	if (!bs->spent_after.valid)
		return 1;
	for (size_t i = 0; i < bs->ask.n; i++)
		if (warn_crossed(NULL, bs, i))
			return 1;
	return 0;
}

void budget_settled(struct store *st, const struct config *cfg, struct budget_state *bs)
{
	struct budget_ask *ask = &bs->ask;
	if (!bs->reserved || !st)
		return;
	int due = 0;
	for (size_t i = 0; i < ask->n; i++) {
		ask->scopes[i].warn_due = warn_crossed(st, bs, i);
		due |= ask->scopes[i].warn_due;
	}
	if (!due)
		return;
	if (run_tx(st, settled_in_tx, ask) < 0)
		return;
	for (size_t i = 0; i < ask->n; i++) {
		const struct budget_scope *sc = &ask->scopes[i];
		if (sc->new_warn)
			alerts_budget(cfg, ask->day, sc->scope, ask->warn_level, sc->spent_nusd,
				      sc->budget_nusd, ask->request_id);
	}
}

void budget_headers(struct response *resp, const struct budget_state *bs)
{
	if (bs->limit_nusd < 0)
		return;
	resp_header(resp, "X-Budget-Limit-USD", "%.2f", (double)bs->limit_nusd / 1e9);
	int64_t left = bs->remaining_nusd < 0 ? 0 : bs->remaining_nusd;
	resp_header(resp, "X-Budget-Remaining-USD", "%.6f", (double)left / 1e9);
}
