/* store_reqlog.c - request-log rows into the database (with their attempts, tool-call state and
 * budget settlement), the tool-call state read back, and retention.
 *
 * A row and everything that comes with it commit together, inside a SAVEPOINT (so a caller's
 * transaction, such as the writer's group commit or a replay batch, stays usable when one row
 * fails). A row whose request id is already logged changes nothing: a replayed row is never
 * counted twice. The bindings walk the column tables of reqlog_row.h.
 */
#include "store.h"

#include "store_int.h"

#include <limits.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonx.h"
#include "util.h"

static int insert_tool_state(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz)
{
	const char *id;
	json_t *v;
	json_object_foreach((json_t *)r->tool_state, id, v)
	{
		char *text = jsonx_dumps(v, JSON_COMPACT);
		/* Keyed by the row's agent: the one store_tool_state is asked with on the next turn. */
		int n = store_run(st, ST_INSERT_TOOL_STATE, "ttttI", r->agent ? r->agent : "", id,
				  r->request_id, text ? text : "{}", (int64_t)r->ts_end_ms);
		free(text);
		if (n < 0) {
			snprintf(errbuf, errsz, "insert into tool_call_state failed: %s",
				 sqlite3_errmsg(st->db));
			return -1;
		}
	}
	return 0;
}

/* Binds the SQL columns of a column table from parameter `first` on. */
static void bind_columns(sqlite3_stmt *s, int first, const struct reqlog_col *cols, size_t n,
			 const void *row)
{
	int i = first;
	for (size_t k = 0; k < n; k++) {
		if (!cols[k].sql || cols[k].type == COL_SQL_ONLY)
			continue;
		struct reqlog_val v;
		reqlog_col_get(&cols[k], row, &v);
		store_bind_val(s, i++, &v);
	}
}

static int insert_attempts(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz)
{
	for (size_t i = 0; i < r->n_attempt_log; i++) {
		sqlite3_stmt *s = store_bind(st, ST_INSERT_ATTEMPT, "ti", r->request_id, (int)i + 1);
		bind_columns(s, 3, reqlog_attempt_columns, reqlog_attempt_n_columns, &r->attempt_log[i]);
		int rc = sqlite3_step(s);
		store_reset(s);
		if (rc != SQLITE_DONE) {
			snprintf(errbuf, errsz, "insert into request_attempts failed: %s",
				 sqlite3_errmsg(st->db));
			return -1;
		}
	}
	return 0;
}

/* The row's cost goes into the ledger in the row's own transaction: the ledger always equals
 * the logged costs. */
static int settle_budget(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz)
{
	char day[11], tier_scope[160], agent_scope[160];
	int64_t amount = 0;
	int found = store_reservation_end(st, r->request_id, day, tier_scope, agent_scope,
					  sizeof(tier_scope), &amount);
	if (found < 0)
		goto fail;
	if (!found) {
		if (!r->tier || r->cost_nusd <= 0)
			return 0;
		store_utc_day(r->ts_start_ms, day);
		snprintf(tier_scope, sizeof(tier_scope), "tier:%s", r->tier);
		if (r->agent)
			snprintf(agent_scope, sizeof(agent_scope), "agent:%s", r->agent);
		else
			agent_scope[0] = '\0';
	}
	if (store_spend_add(st, day, tier_scope, r->cost_nusd, 0, 1) < 0 ||
	    (agent_scope[0] && store_spend_add(st, day, agent_scope, r->cost_nusd, 0, 1) < 0))
		goto fail;
	if (r->spent_after) {
		struct reqlog_spent *a = r->spent_after;
		int64_t reserved;
		a->nusd[1] = 0;
		if (store_budget_spend(st, day, tier_scope, &a->nusd[0], &reserved) < 0 ||
		    (agent_scope[0] && store_budget_spend(st, day, agent_scope, &a->nusd[1], &reserved) < 0))
			goto fail;
		a->valid = 1;
	}
	return 0;
fail:
	snprintf(errbuf, errsz, "budget ledger update failed: %s", sqlite3_errmsg(st->db));
	return -1;
}

static int insert_reqlog_parts(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz)
{
	sqlite3_stmt *s = st->stmt[ST_INSERT_REQLOG];
	bind_columns(s, 1, reqlog_columns, reqlog_n_columns, r);
	int rc = sqlite3_step(s);
	if (rc != SQLITE_DONE)
		snprintf(errbuf, errsz, "insert into request_log failed: %s (%s)", sqlite3_errmsg(st->db),
			 sqlite3_errstr(rc));
	store_reset(s);
	if (rc != SQLITE_DONE)
		return -1;
	if (sqlite3_changes(st->db) == 0)
		return 0;  /* already logged (a replay): nothing else to add */
	if (insert_attempts(st, r, errbuf, errsz) < 0)
		return -1;
	if (settle_budget(st, r, errbuf, errsz) < 0)
		return -1;
	return insert_tool_state(st, r, errbuf, errsz) < 0 ? -1 : 1;
}

int store_insert_reqlog(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz)
{
	return store_insert_reqlog_new(st, r, errbuf, errsz) < 0 ? -1 : 0;
}

int store_insert_reqlog_new(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz)
{
	/* The row, its attempts, its tool state and its budget settlement commit together. */
	if (store_tx_step(st, ST_SAVEPOINT_ROW, errbuf, errsz) < 0)
		return -1;
	int rc = insert_reqlog_parts(st, r, errbuf, errsz);
	char ignore[64];
	if (rc < 0) {
		store_tx_step(st, ST_ROLLBACK_TO_ROW, ignore, sizeof(ignore));
		store_tx_step(st, ST_RELEASE_ROW, ignore, sizeof(ignore));
		return -1;
	}
	if (store_tx_step(st, ST_RELEASE_ROW, errbuf, errsz) < 0) {
		store_tx_step(st, ST_ROLLBACK_TO_ROW, ignore, sizeof(ignore));
		store_tx_step(st, ST_RELEASE_ROW, ignore, sizeof(ignore));
		return -1;
	}
	return rc;
}

json_t *store_tool_state(struct store *st, const char *agent, const char *tool_call_id)
{
	sqlite3_stmt *s = store_bind(st, ST_GET_TOOL_STATE, "tt", agent ? agent : "", tool_call_id);
	json_t *state = NULL;
	if (sqlite3_step(s) == SQLITE_ROW) {
		const char *text = (const char *)sqlite3_column_text(s, 0);
		json_error_t jerr;
		state = text ? json_loads(text, 0, &jerr) : NULL;
	}
	store_reset(s);
	return state;
}

/* ---- retention ---- */

/* Deletes what sql selects, up to pace->rows rows per statement, each statement its own paced
 * transaction (store.h), so request writers wait for one short batch at most. */
static long long prune_table(struct store *st, const char *sql, int64_t cutoff, const char *day,
			     struct store_pace *pace, int counted)
{
	long long total = 0;
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	while (!store_pace_stopped(pace)) {
		if (store_pace_begin(st, pace) < 0) {
			total = -1;
			break;
		}
		int want = pace->rows;
		/* Rows leave the log only once the operators' counters hold them. */
		if (counted && store_metrics_rollup(st, INT_MAX) < 0) {
			store_rollback(st);
			total = -1;
			break;
		}
		sqlite3_bind_int64(s, 1, cutoff);
		sqlite3_bind_text(s, 2, day, -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 3, want);   /* the ledger's statements have no ?3: ignored */
		int rc = sqlite3_step(s);
		int n = sqlite3_changes(st->db);
		sqlite3_reset(s);
		if (rc != SQLITE_DONE || (counted && store_metrics_after_prune(st) < 0)) {
			store_rollback(st);
			total = -1;
			break;
		}
		if (store_pace_commit(st, pace) < 0) {
			total = -1;
			break;
		}
		total += n;
		if (n < want)
			break;
	}
	sqlite3_finalize(s);
	return total;
}

static long long freelist_pages(struct store *st)
{
	sqlite3_stmt *s;
	long long n = 0;
	if (sqlite3_prepare_v2(st->db, "PRAGMA freelist_count", -1, &s, NULL) != SQLITE_OK)
		return 0;
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return n;
}

/* Gives up to `max` freed pages back to the file system (databases created with auto_vacuum =
 * INCREMENTAL), in paced transactions. */
static void vacuum_some(struct store *st, long long max, struct store_pace *pace)
{
	char sql[64], err[256];
	for (long long done = 0; done < max && !store_pace_stopped(pace) && freelist_pages(st) > 0;) {
		if (store_pace_begin(st, pace) < 0)
			return;
		int want = pace->rows;
		snprintf(sql, sizeof(sql), "PRAGMA incremental_vacuum(%d)", want);
		if (store_exec(st->db, sql, err, sizeof(err)) < 0) {
			store_rollback(st);
			return;
		}
		if (store_pace_commit(st, pace) < 0)
			return;
		done += want;
	}
}

long long store_prune(struct store *st, int64_t cutoff_ms, const int *stop)
{
	static const char *const sql[] = {
		"DELETE FROM request_attempts WHERE (request_id, attempt) IN (SELECT request_id, attempt"
		" FROM request_attempts WHERE ts_start_ms < ?1 ORDER BY ts_start_ms LIMIT ?3)"
		" AND ?2 IS NOT NULL",
		"DELETE FROM request_log WHERE id IN (SELECT id FROM request_log WHERE ts_start_ms < ?1"
		" ORDER BY ts_start_ms LIMIT ?3) AND ?2 IS NOT NULL",
		"DELETE FROM tool_call_state WHERE rowid IN (SELECT rowid FROM tool_call_state"
		" WHERE ts_ms < ?1 ORDER BY ts_ms LIMIT ?3) AND ?2 IS NOT NULL",
		"DELETE FROM budget_spend WHERE day < ?2 AND ?1 IS NOT NULL",
		"DELETE FROM budget_alerts WHERE day < ?2 AND ?1 IS NOT NULL",
		"DELETE FROM metrics_hourly WHERE hour_ms < ?1 AND ?2 IS NOT NULL",
		"DELETE FROM metrics_daily WHERE day < ?2 AND ?1 IS NOT NULL",
		"DELETE FROM responses WHERE id IN (SELECT id FROM responses WHERE ts_ms < ?1"
		" ORDER BY ts_ms LIMIT ?3) AND ?2 IS NOT NULL",
	};
	struct store_pace pace, vacuum;
	store_pace_init(&pace, stop, 64, 1000);
	/* Moving a page costs about as much as deleting a hundred rows. */
	store_pace_init(&vacuum, stop, 4, 256);
	char day[11];
	store_utc_day(cutoff_ms, day);
	long long rows = 0;
	/* Most of the rows not yet counted, in batches of their own, before the deletes' batches. */
	if (store_metrics_catch_up(st, 5000, 1000) < 0)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(sql) && !store_pace_stopped(&pace); i++) {
		long long n = prune_table(st, sql[i], cutoff_ms, day, &pace, i <= 1);
		if (n < 0)
			return -1;
		if (i == 1)
			rows = n;
	}
	vacuum_some(st, 2000, &vacuum);
	return rows;
}

/* ---- reservations whose row never came ---- */

/* A reservation whose row never came: its call's cost is not known (the responder died with
 * it), so its worst case is charged, with a row that says so. The row settles the reservation
 * as any row does, so the ledger still sums to the logged costs, and a row of the same request
 * arriving later (a fallback line replayed late) changes nothing. */
struct stale {
	char id[64], tier[160], agent[160];
	int64_t amount, created_ms;
};

static int charge_stale(struct store *st, const struct stale *r, int64_t now_ms)
{
	struct reqlog row;
	reqlog_init(&row);
	row.request_id = r->id;
	row.ts_start_ms = r->created_ms;
	row.ts_end_ms = now_ms > r->created_ms ? now_ms : r->created_ms;
	row.tier = strncmp(r->tier, "tier:", 5) == 0 ? r->tier + 5 : r->tier;
	row.agent = strncmp(r->agent, "agent:", 6) == 0 ? r->agent + 6 : NULL;
	row.status = 502;
	row.error_type = "server_error";
	row.error_code = "responder_lost";
	row.error_message = "The responder serving this request ended before its log row was "
			    "written; the request's reserved worst case is charged.";
	row.cost_nusd = r->amount;
	row.cost_source = "reclaimed";
	char err[256];
	return store_insert_reqlog_new(st, &row, err, sizeof(err)) < 0 ? -1 : 0;
}

int store_budget_reclaim(struct store *st, int64_t before_ms)
{
	if (store_begin(st) < 0)
		return -1;
	sqlite3_stmt *s = store_bind(st, ST_RES_STALE, "I", before_ms);
	struct stale *rows = xcalloc(256, sizeof(*rows));
	int n = 0;
	while (n < 256 && sqlite3_step(s) == SQLITE_ROW) {
		struct stale *r = &rows[n++];
		snprintf(r->id, sizeof(r->id), "%s", (const char *)sqlite3_column_text(s, 0));
		snprintf(r->tier, sizeof(r->tier), "%s", (const char *)sqlite3_column_text(s, 1));
		const unsigned char *agent = sqlite3_column_text(s, 2);
		snprintf(r->agent, sizeof(r->agent), "%s", agent ? (const char *)agent : "");
		r->amount = sqlite3_column_int64(s, 3);
		r->created_ms = sqlite3_column_int64(s, 4);
	}
	store_reset(s);
	int ok = 1;
	int64_t now_ms = clock_wall_ms();
	for (int i = 0; i < n && ok; i++)
		ok = charge_stale(st, &rows[i], now_ms) == 0;
	free(rows);
	if (!ok || store_commit(st) < 0) {
		store_rollback(st);
		return -1;
	}
	return n;
}
