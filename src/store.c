/* store.c - a connection to the router's database and its prepared statements.
 *
 * Invariants: a struct store is used by one thread only (connections are opened with
 * SQLITE_OPEN_NOMUTEX); every statement is reset right after it is stepped (store_reset), so no
 * reader keeps a snapshot that would block checkpoints; every write is a single short
 * BEGIN IMMEDIATE ... COMMIT (or an autocommit statement). The INSERT statements of the request
 * log and its attempts are built from the column tables of reqlog_row.h, once per process.
 */
#include "store.h"

#include "store_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

static const char *stmt_sql[ST_COUNT] = {
	/* [ST_INSERT_REQLOG] and [ST_INSERT_ATTEMPT]: built by build_inserts. */
	[ST_INSERT_TOOL_STATE] = ("INSERT OR REPLACE INTO tool_call_state"
				  " (agent, tool_call_id, request_id, state, ts_ms) VALUES (?1, ?2, ?3, ?4, ?5)"),
	[ST_GET_TOOL_STATE] = "SELECT state FROM tool_call_state WHERE agent = ?1 AND tool_call_id = ?2",
	[ST_HEALTH_LOAD] = "SELECT model, failures, window_start_ms, cooldown_until_ms, probe_until_ms"
			   " FROM model_health WHERE failures > 0 OR cooldown_until_ms > 0",
	/* One more failure: a window older than ?4 ms starts over. */
	[ST_HEALTH_FAIL] =
		"INSERT INTO model_health (model, failures, window_start_ms, last_error, updated_ms)"
		" VALUES (?1, 1, ?2, ?3, ?2) ON CONFLICT(model) DO UPDATE SET"
		" failures = CASE WHEN ?2 - window_start_ms > ?4 THEN 1 ELSE failures + 1 END,"
		" window_start_ms = CASE WHEN ?2 - window_start_ms > ?4 THEN ?2 ELSE window_start_ms END,"
		" last_error = ?3, updated_ms = ?2"
		" RETURNING failures, window_start_ms, cooldown_until_ms, probe_until_ms",
	[ST_HEALTH_TRIP] = "UPDATE model_health SET cooldown_until_ms = ?2, probe_until_ms = 0,"
			   " failures = 0, window_start_ms = ?3, trips = trips + 1, updated_ms = ?3"
			   " WHERE model = ?1",
	[ST_HEALTH_OK] = "UPDATE model_health SET failures = 0, cooldown_until_ms = 0,"
			 " probe_until_ms = 0, updated_ms = ?2"
			 " WHERE model = ?1 AND (failures > 0 OR cooldown_until_ms > 0)",
	/* The first caller after a cooldown ends becomes the one probe (until ?3). */
	[ST_HEALTH_CLAIM] = "UPDATE model_health SET probe_until_ms = ?3, updated_ms = ?2"
			    " WHERE model = ?1 AND cooldown_until_ms > 0 AND cooldown_until_ms <= ?2"
			    " AND probe_until_ms <= ?2",
	[ST_HEALTH_GET] = "SELECT failures, window_start_ms, cooldown_until_ms, probe_until_ms"
			  " FROM model_health WHERE model = ?1",
	[ST_KEY_INSERT] = "INSERT INTO api_keys (id, agent, hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
	[ST_KEY_GET] = "SELECT agent, hash, revoked_ms FROM api_keys WHERE id = ?1",
	[ST_KEY_REVOKE] = "UPDATE api_keys SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
	[ST_KEY_LIST] = "SELECT id, agent, created_ms, revoked_ms FROM api_keys ORDER BY created_ms",
	[ST_RES_STALE] = "SELECT request_id FROM budget_reservations WHERE created_ms < ?1 LIMIT 256",
	/* A reservation ends once: settled with its row, or reclaimed after a timeout. */
	[ST_RES_DELETE] = "DELETE FROM budget_reservations WHERE request_id = ?1"
			  " RETURNING day, tier_scope, agent_scope, amount_nusd",
	[ST_SPEND_GET] = "SELECT spent_nusd, reserved_nusd FROM budget_spend WHERE day = ?1 AND scope = ?2",
	[ST_SPEND_ADD] = "INSERT INTO budget_spend (day, scope, spent_nusd, reserved_nusd, requests)"
			 " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (day, scope) DO UPDATE SET"
			 " spent_nusd = spent_nusd + ?3, reserved_nusd = reserved_nusd + ?4,"
			 " requests = requests + ?5",
	[ST_RES_INSERT] = "INSERT INTO budget_reservations (request_id, day, tier_scope, agent_scope,"
			  " amount_nusd, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_ALERT_INSERT] = "INSERT OR IGNORE INTO budget_alerts (day, scope, level, ts_ms, spent_nusd,"
			    " limit_nusd) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_LIMIT_SET] = "INSERT INTO budget_limits (scope, limit_nusd) VALUES (?1, ?2)"
			 " ON CONFLICT (scope) DO UPDATE SET limit_nusd = excluded.limit_nusd"
			 " WHERE limit_nusd != excluded.limit_nusd",
};

/* "INSERT <verb> <table> (<keys>, <columns>) VALUES (?1, ...)<tail>" over the SQL columns of a
 * column table; the keys come first. */
static char *insert_sql(const char *verb, const char *keys, int nkeys,
			const struct reqlog_col *cols, size_t n, const char *tail)
{
	struct buf b;
	buf_init(&b, BUF_UNLIMITED);
	buf_printf(&b, "%s (%s", verb, keys);
	int params = nkeys;
	for (size_t i = 0; i < n; i++) {
		if (cols[i].sql && cols[i].type != COL_SQL_ONLY) {
			buf_printf(&b, "%s%s", params ? ", " : "", cols[i].name);
			params++;
		}
	}
	buf_puts(&b, ") VALUES (");
	for (int i = 1; i <= params; i++)
		buf_printf(&b, "%s?%d", i > 1 ? ", " : "", i);
	buf_printf(&b, ")%s", tail);
	return buf_steal(&b);
}

static void build_inserts(void)
{
	stmt_sql[ST_INSERT_REQLOG] = insert_sql("INSERT INTO request_log", "", 0, reqlog_columns,
						reqlog_n_columns, " ON CONFLICT(request_id) DO NOTHING");
	stmt_sql[ST_INSERT_ATTEMPT] = insert_sql("INSERT OR IGNORE INTO request_attempts",
						 "request_id, attempt", 2, reqlog_attempt_columns,
						 reqlog_attempt_n_columns, "");
}

static pthread_once_t built = PTHREAD_ONCE_INIT;

struct store *store_open(const struct store_opts *o, char *errbuf, size_t errsz)
{
	pthread_once(&built, build_inserts);
	sqlite3 *db = store_db_open(o, errbuf, errsz);
	if (!db)
		return NULL;
	store_wal_attach(db, o);
	struct store *st = xcalloc(1, sizeof(*st));
	st->db = db;
	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
				       NULL) != SQLITE_OK) {
			snprintf(errbuf, errsz, "cannot prepare statement: %s", sqlite3_errmsg(db));
			store_close(st);
			return NULL;
		}
	}
	return st;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	sqlite3_close(st->db);
	free(st);
}

int store_schema_version(struct store *st)
{
	return store_user_version(st->db);
}

/* ---- bind, step, reset ---- */

sqlite3_stmt *store_vbind(struct store *st, int which, const char *types, va_list ap)
{
	sqlite3_stmt *s = st->stmt[which];
	for (int i = 1; *types; types++, i++) {
		if (*types == 't') {
			const char *v = va_arg(ap, const char *);
			if (v)
				sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
			else
				sqlite3_bind_null(s, i);
		} else if (*types == 'i') {
			sqlite3_bind_int(s, i, va_arg(ap, int));
		} else {
			sqlite3_bind_int64(s, i, va_arg(ap, int64_t));
		}
	}
	return s;
}

sqlite3_stmt *store_bind(struct store *st, int which, const char *types, ...)
{
	va_list ap;
	va_start(ap, types);
	sqlite3_stmt *s = store_vbind(st, which, types, ap);
	va_end(ap);
	return s;
}

void store_reset(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

int store_run(struct store *st, int which, const char *types, ...)
{
	va_list ap;
	va_start(ap, types);
	sqlite3_stmt *s = store_vbind(st, which, types, ap);
	va_end(ap);
	int rc = sqlite3_step(s);
	int n = rc == SQLITE_DONE ? sqlite3_changes(st->db) : -1;
	store_reset(s);
	return n;
}

void store_bind_val(sqlite3_stmt *s, int i, const struct reqlog_val *v)
{
	switch (v->kind) {
	case VAL_INT:
		sqlite3_bind_int64(s, i, v->i);
		break;
	case VAL_REAL:
		sqlite3_bind_double(s, i, v->d);
		break;
	case VAL_TEXT:
		sqlite3_bind_text(s, i, v->s, -1, SQLITE_STATIC);
		break;
	case VAL_NULL:
		sqlite3_bind_null(s, i);
		break;
	}
}

/* ---- transactions ---- */

int store_begin(struct store *st)
{
	char err[256];
	return store_exec(st->db, "BEGIN IMMEDIATE", err, sizeof(err));
}

int store_commit(struct store *st)
{
	char err[256];
	return store_exec(st->db, "COMMIT", err, sizeof(err));
}

void store_rollback(struct store *st)
{
	char err[256];
	store_exec(st->db, "ROLLBACK", err, sizeof(err));
}

int store_begin_err(struct store *st, char *errbuf, size_t errsz)
{
	return store_exec(st->db, "BEGIN IMMEDIATE", errbuf, errsz);
}

int store_commit_err(struct store *st, char *errbuf, size_t errsz)
{
	return store_exec(st->db, "COMMIT", errbuf, errsz);
}

/* ---- paced maintenance transactions ---- */

void store_pace_init(struct store_pace *p, const int *stop, int rows, int max_rows)
{
	p->stop = stop;
	p->began_us = 0;
	p->rows = rows;
	p->max_rows = max_rows;
}

int store_pace_begin(struct store *st, struct store_pace *p)
{
	if (store_begin(st) < 0)
		return -1;
	p->began_us = clock_mono_us();
	return 0;
}

int store_pace_due(const struct store_pace *p)
{
	return clock_mono_us() - p->began_us >= STORE_PACE_HOLD_US;
}

int store_pace_commit(struct store *st, struct store_pace *p)
{
	/* The statements' time: the commit's is about proportional, and a checkpoint that may follow
	 * it (on a connection with automatic checkpoints) runs with the lock already released. */
	int64_t work = clock_mono_us() - p->began_us;
	if (store_commit(st) < 0) {
		store_rollback(st);
		return -1;
	}
	if (work < STORE_PACE_HOLD_US / 4 && p->rows < p->max_rows)
		p->rows = p->rows * 2 > p->max_rows ? p->max_rows : p->rows * 2;
	else if (work > STORE_PACE_HOLD_US / 2 && p->rows > 1)
		p->rows /= 2;
	struct timespec ts = { 0, STORE_PACE_GAP_US * 1000L };
	nanosleep(&ts, NULL);
	return 0;
}

int store_pace_stopped(const struct store_pace *p)
{
	return p->stop && __atomic_load_n(p->stop, __ATOMIC_ACQUIRE);
}

int store_failed_for_good(struct store *st)
{
	int code = sqlite3_extended_errcode(st->db) & 0xff;
	return code != SQLITE_BUSY && code != SQLITE_LOCKED;
}

int store_file_moved(struct store *st)
{
	int moved = 0;
	if (sqlite3_file_control(st->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) != SQLITE_OK)
		return 0;
	return moved;
}

/* ---- misc ---- */

void store_utc_day(int64_t ms, char day[11])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	if (strftime(day, 11, "%Y-%m-%d", &tm) == 0)
		snprintf(day, 11, "0000-00-00");
}

size_t store_statement_count(void)
{
	return ST_COUNT;
}

const char *store_statement(size_t i)
{
	pthread_once(&built, build_inserts);
	return i < ST_COUNT ? stmt_sql[i] : NULL;
}

int store_query_plan(struct store *st, const char *sql, struct buf *out)
{
	char *q = xasprintf("EXPLAIN QUERY PLAN %s", sql);
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(st->db, q, -1, &s, NULL);
	free(q);
	if (rc != SQLITE_OK)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *d = (const char *)sqlite3_column_text(s, 3);
		buf_puts(out, d ? d : "");
		buf_putc(out, '\n');
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}
