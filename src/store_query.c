/* store_query.c - the small tables behind health.c and keys.c, and the spend reports.
 *
 * Each function is one statement, or one short BEGIN IMMEDIATE transaction (a model's failure
 * and the cooldown it may start), on a prepared statement of store.c, reset before it returns.
 */
#include "store.h"

#include "store_int.h"

#include <stdio.h>
#include <string.h>

/* ---- model health (cooldown) ---- */

static void health_columns(sqlite3_stmt *s, int first, struct health_row *h)
{
	h->failures = sqlite3_column_int64(s, first);
	h->window_start_ms = sqlite3_column_int64(s, first + 1);
	h->cooldown_until_ms = sqlite3_column_int64(s, first + 2);
	h->probe_until_ms = sqlite3_column_int64(s, first + 3);
}

int store_health_load(struct store *st, void (*cb)(void *ud, const struct health_row *h), void *ud)
{
	sqlite3_stmt *s = st->stmt[ST_HEALTH_LOAD];
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct health_row h = { .model = (const char *)sqlite3_column_text(s, 0) };
		health_columns(s, 1, &h);
		if (h.model)
			cb(ud, &h);
	}
	store_reset(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_health_failure(struct store *st, const char *model, int64_t now_ms, int64_t window_ms,
			 int64_t threshold, int64_t cooldown_ms, const char *error, struct health_row *out)
{
	if (store_begin(st) < 0)
		return -1;
	sqlite3_stmt *s = store_bind(st, ST_HEALTH_FAIL, "tItI", model, now_ms, error, window_ms);
	int ok = sqlite3_step(s) == SQLITE_ROW;
	if (ok) {
		out->model = model;
		health_columns(s, 0, out);
		ok = sqlite3_step(s) == SQLITE_DONE;
	}
	store_reset(s);
	/* Enough failures in the window, or a failed probe after a cooldown: (re)start one. */
	if (ok && (out->failures >= threshold || out->cooldown_until_ms > 0)) {
		ok = store_run(st, ST_HEALTH_TRIP, "tII", model, (int64_t)(now_ms + cooldown_ms), now_ms) >= 0;
		out->failures = 0;
		out->window_start_ms = now_ms;
		out->cooldown_until_ms = now_ms + cooldown_ms;
		out->probe_until_ms = 0;
		out->tripped = 1;
	}
	if (!ok || store_commit(st) < 0) {
		store_rollback(st);
		return -1;
	}
	return 0;
}

int store_health_ok(struct store *st, const char *model, int64_t now_ms)
{
	return store_run(st, ST_HEALTH_OK, "tI", model, now_ms) < 0 ? -1 : 0;
}

int store_health_get(struct store *st, const char *model, struct health_row *out)
{
	sqlite3_stmt *s = store_bind(st, ST_HEALTH_GET, "t", model);
	int rc = sqlite3_step(s);
	memset(out, 0, sizeof(*out));
	out->model = model;
	if (rc == SQLITE_ROW)
		health_columns(s, 0, out);
	store_reset(s);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int store_health_claim(struct store *st, const char *model, int64_t now_ms, int64_t until_ms)
{
	return store_run(st, ST_HEALTH_CLAIM, "tII", model, now_ms, until_ms);
}

/* ---- agents' keys ---- */

int store_key_insert(struct store *st, const char *id, const char *agent, const char *hash,
		     int64_t now_ms)
{
	return store_run(st, ST_KEY_INSERT, "tttI", id, agent, hash, now_ms) < 0 ? -1 : 0;
}

int store_key_get(struct store *st, const char *id, char *agent, size_t agentsz, char hash[65],
		  int64_t *revoked_ms)
{
	sqlite3_stmt *s = store_bind(st, ST_KEY_GET, "t", id);
	int rc = sqlite3_step(s);
	int found = rc == SQLITE_ROW;
	if (found) {
		const char *a = (const char *)sqlite3_column_text(s, 0);
		const char *h = (const char *)sqlite3_column_text(s, 1);
		snprintf(agent, agentsz, "%s", a ? a : "");
		snprintf(hash, 65, "%s", h ? h : "");
		*revoked_ms = sqlite3_column_type(s, 2) == SQLITE_NULL ? 0 : sqlite3_column_int64(s, 2);
	}
	store_reset(s);
	return found ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int store_key_revoke(struct store *st, const char *id, int64_t now_ms)
{
	return store_run(st, ST_KEY_REVOKE, "tI", id, now_ms);
}

int store_key_list(struct store *st,
		   void (*cb)(void *ud, const char *id, const char *agent, int64_t created_ms,
			      int64_t revoked_ms),
		   void *ud)
{
	sqlite3_stmt *s = st->stmt[ST_KEY_LIST];
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		cb(ud, (const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
		   sqlite3_column_int64(s, 2),
		   sqlite3_column_type(s, 3) == SQLITE_NULL ? 0 : sqlite3_column_int64(s, 3));
	}
	store_reset(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Every key with its hash, in one read: the key cache's refresh (keys.c). Prepared each time
 * (at most once a second per process) and not one of store.c's statements: a full scan of a
 * small table, on purpose. */
int store_key_load(struct store *st,
		   void (*cb)(void *ud, const char *id, const char *agent, const char *hash,
			      int64_t created_ms, int64_t revoked_ms),
		   void *ud)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, "SELECT id, agent, hash, created_ms, revoked_ms FROM api_keys",
			       -1, &s, NULL) != SQLITE_OK)
		return -1;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(s, 0);
		const char *agent = (const char *)sqlite3_column_text(s, 1);
		const char *hash = (const char *)sqlite3_column_text(s, 2);
		cb(ud, id ? id : "", agent ? agent : "", hash ? hash : "", sqlite3_column_int64(s, 3),
		   sqlite3_column_type(s, 4) == SQLITE_NULL ? 0 : sqlite3_column_int64(s, 4));
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_key_restore(struct store *st, const char *id, const char *agent, const char *hash,
		      int64_t created_ms, int64_t revoked_ms)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, "INSERT OR IGNORE INTO api_keys (id, agent, hash, created_ms,"
			       " revoked_ms) VALUES (?1, ?2, ?3, ?4, ?5)", -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, agent, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, created_ms);
	if (revoked_ms > 0)
		sqlite3_bind_int64(s, 5, revoked_ms);
	else
		sqlite3_bind_null(s, 5);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* ---- reports ---- */

int store_report(struct store *st, int64_t from_ms, int64_t to_ms, const char *by,
		 void (*cb)(void *ud, const struct report_row *row), void *ud)
{
	/* by is one of a fixed set, never client input: it picks one of these statements. */
	static const char *const sql[] = {
		"SELECT coalesce(tier, '-'), count(*), sum(coalesce(input_tokens, 0)),"
		" sum(coalesce(output_tokens, 0)), sum(cost_nusd), sum(status >= 400)"
		" FROM request_log WHERE ts_start_ms >= ?1 AND ts_start_ms < ?2 GROUP BY 1 ORDER BY 5 DESC",
		"SELECT coalesce(agent, '(anonymous)'), count(*), sum(coalesce(input_tokens, 0)),"
		" sum(coalesce(output_tokens, 0)), sum(cost_nusd), sum(status >= 400)"
		" FROM request_log WHERE ts_start_ms >= ?1 AND ts_start_ms < ?2 GROUP BY 1 ORDER BY 5 DESC",
		"SELECT coalesce(model, requested_model, '-'), count(*), sum(coalesce(input_tokens, 0)),"
		" sum(coalesce(output_tokens, 0)), sum(cost_nusd), sum(status >= 400)"
		" FROM request_log WHERE ts_start_ms >= ?1 AND ts_start_ms < ?2 GROUP BY 1 ORDER BY 5 DESC",
		"SELECT date(ts_start_ms / 1000, 'unixepoch'), count(*), sum(coalesce(input_tokens, 0)),"
		" sum(coalesce(output_tokens, 0)), sum(cost_nusd), sum(status >= 400)"
		" FROM request_log WHERE ts_start_ms >= ?1 AND ts_start_ms < ?2 GROUP BY 1 ORDER BY 1",
	};
	int which = strcmp(by, "tier") == 0	 ? 0
		    : strcmp(by, "agent") == 0 ? 1
		    : strcmp(by, "model") == 0 ? 2
		    : strcmp(by, "day") == 0   ? 3
					       : -1;
	if (which < 0)
		return -1;
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, sql[which], -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(s, 1, from_ms);
	sqlite3_bind_int64(s, 2, to_ms);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct report_row row = {
			.key = (const char *)sqlite3_column_text(s, 0),
			.calls = sqlite3_column_int64(s, 1),
			.input_tokens = sqlite3_column_int64(s, 2),
			.output_tokens = sqlite3_column_int64(s, 3),
			.cost_nusd = sqlite3_column_int64(s, 4),
			.errors = sqlite3_column_int64(s, 5),
		};
		cb(ud, &row);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}
