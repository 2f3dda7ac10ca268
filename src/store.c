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
#include "store_diag.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "keysnap.h"
#include "log.h"
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
	[ST_RES_STALE] = "SELECT request_id, tier_scope, agent_scope, amount_nusd, created_ms"
			 " FROM budget_reservations WHERE created_ms < ?1 LIMIT 256",
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
			    " limit_nusd, next_try_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	/* The alert outbox (store_budget.c): due rows by the partial index of unsent ones. */
	[ST_ALERT_DUE] = "SELECT day, scope, level, ts_ms, spent_nusd, limit_nusd, attempts"
			 " FROM budget_alerts WHERE sent_ms IS NULL AND next_try_ms <= ?1 AND ts_ms >= ?2"
			 " ORDER BY next_try_ms LIMIT ?3",
	/* A claim is a lease: no other drainer takes the row before ?5. */
	[ST_ALERT_CLAIM] = "UPDATE budget_alerts SET next_try_ms = ?5, attempts = attempts + 1"
			   " WHERE day = ?1 AND scope = ?2 AND level = ?3 AND sent_ms IS NULL"
			   " AND next_try_ms <= ?4",
	[ST_ALERT_SENT] = "UPDATE budget_alerts SET sent_ms = ?4, last_error = NULL"
			  " WHERE day = ?1 AND scope = ?2 AND level = ?3",
	[ST_ALERT_FAILED] = "UPDATE budget_alerts SET next_try_ms = ?4, last_error = ?5"
			    " WHERE day = ?1 AND scope = ?2 AND level = ?3 AND sent_ms IS NULL",
	[ST_ALERT_NEXT] = "SELECT min(next_try_ms) FROM budget_alerts WHERE sent_ms IS NULL"
			  " AND next_try_ms IS NOT NULL AND ts_ms >= ?1",
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	/* A row and what comes with it (store_reqlog.c), inside the caller's transaction. */
	[ST_SAVEPOINT_ROW] = "SAVEPOINT reqlog",
	[ST_RELEASE_ROW] = "RELEASE reqlog",
	[ST_ROLLBACK_TO_ROW] = "ROLLBACK TO reqlog",
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

/* ---- the first-start rule ---- */

static int exists(const char *path)
{
	struct stat sb;
	return lstat(path, &sb) == 0 || errno != ENOENT;
}

/* Whether dir holds a file whose name starts with prefix. */
static int dir_has_prefix(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	size_t n = strlen(prefix);
	int found = 0;
	struct dirent *e;
	while (!found && (e = readdir(d)))
		found = strncmp(e->d_name, prefix, n) == 0;
	closedir(d);
	return found;
}

/* What in the database's directory shows that a database was there before (NULL: nothing). */
static char *earlier_trace(const struct store_opts *o)
{
	char *snap = keysnap_path(o->path);
	if (exists(snap))
		return snap;
	free(snap);
	static const char *const companions[] = { "-wal", "-shm", "-journal" };
	for (size_t i = 0; i < ARRAY_SIZE(companions); i++) {
		char *c = xasprintf("%s%s", o->path, companions[i]);
		if (exists(c))
			return c;
		free(c);
	}
	if (o->fallback_path) {
		if (exists(o->fallback_path))
			return xstrdup(o->fallback_path);
		const char *slash = strrchr(o->fallback_path, '/');
		char *fdir = slash ? xstrndup(o->fallback_path, (size_t)(slash - o->fallback_path))
				   : xstrdup(".");
		char *prefix = xasprintf("%s.replay-", slash ? slash + 1 : o->fallback_path);
		int found = dir_has_prefix(fdir, prefix);
		char *what = found ? xasprintf("%s/%s*", fdir, prefix) : NULL;
		free(fdir);
		free(prefix);
		if (what)
			return what;
	}
	return NULL;
}

/* Decides what store_db_open may create (in *o): nothing when the file exists; the file (and,
 * with STORE_CREATE_FIRST_DIR, its directory) on a first start. A missing file is a first start
 * when its directory exists (or may be made) and holds no trace of an earlier database: no key
 * snapshot, no -wal/-shm/-journal, no JSONL fallback or replay file. Otherwise the database was
 * removed or its directory moved: nothing is created (an empty database would forget the keys),
 * and -1 comes back with a message that says what to do. Sets *created on a first start. */
static int first_start_rule(struct store_opts *o, int *created, char *errbuf, size_t errsz)
{
	*created = 0;
	if (exists(o->path)) {
		o->create = STORE_CREATE_NONE;
		return 0;
	}
	const char *slash = strrchr(o->path, '/');
	char *dir = slash ? xstrndup(o->path, (size_t)(slash - o->path)) : xstrdup(".");
	struct stat sb;
	int rc = -1;
	if (stat(dir, &sb) < 0 && o->create != STORE_CREATE_FIRST_DIR) {
		snprintf(errbuf, errsz, "the data directory %s is missing (%s; removed or renamed?): the "
			 "router does not create it; restore it, or for a first start run 'llm-router init'",
			 dir, strerror(errno));
		goto out;
	}
	char *trace = earlier_trace(o);
	if (trace) {
		snprintf(errbuf, errsz, "the database file %s is missing but %s is left from an earlier "
			 "one: not starting an empty database that would forget the keys. Restore the file; "
			 "for a deliberate fresh start run 'llm-router init' (it keeps the keys of %s/%s) or "
			 "remove %s", o->path, trace, dir, KEYSNAP_NAME, trace);
		free(trace);
		goto out;
	}
	o->create = STORE_CREATE_ANY;
	*created = 1;
	rc = 0;
out:
	free(dir);
	return rc;
}

/* A new database has no keys: its (empty) snapshot marks the directory as in use. Under the
 * snapshot lock: another process that opened the new file at the same time may have stored a
 * key and written its snapshot already, which an empty table must not replace. */
static void mark_created(const char *db_path)
{
	char *snap = keysnap_path(db_path);
	char err[256];
	int lock = keysnap_lock(snap, err, sizeof(err));
	if (lock != -2 && !exists(snap)) {
		struct key_table empty = { 0 };
		keysnap_write(snap, &empty, db_path, err, sizeof(err));
	}
	keysnap_unlock(lock);
	free(snap);
}

struct store *store_open(const struct store_opts *o, char *errbuf, size_t errsz)
{
	pthread_once(&built, build_inserts);
	struct store_opts eff = *o;
	int created = o->create == STORE_CREATE_ANY && !exists(o->path);
	if (o->create != STORE_CREATE_ANY && o->create != STORE_CREATE_NONE &&
	    first_start_rule(&eff, &created, errbuf, errsz) < 0)
		return NULL;
	sqlite3 *db = store_db_open(&eff, errbuf, errsz);
	if (!db) {
		store_diagnose(NULL, o->path);
		return NULL;
	}
	if (created)
		mark_created(o->path);
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

void store_opts_copy(struct store_opts *dst, const struct store_opts *o)
{
	*dst = *o;
	dst->path = o->path ? xstrdup(o->path) : NULL;
	dst->jsonl_path = o->jsonl_path ? xstrdup(o->jsonl_path) : NULL;
	dst->fallback_path = o->fallback_path ? xstrdup(o->fallback_path) : NULL;
}

void store_opts_free(struct store_opts *o)
{
	free((char *)o->path);
	free((char *)o->jsonl_path);
	free((char *)o->fallback_path);
	o->path = o->jsonl_path = o->fallback_path = NULL;
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

void store_statement_journal_in_memory(struct store *st)
{
	char err[256];
	if (store_exec(st->db, "PRAGMA temp_store = MEMORY", err, sizeof(err)) < 0)
		log_warn(NULL, "PRAGMA temp_store = MEMORY failed: %s", err);
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

int store_tx_step(struct store *st, int which, char *errbuf, size_t errsz)
{
	sqlite3_stmt *s = st->stmt[which];
	int rc = sqlite3_step(s);
	if (rc != SQLITE_DONE)
		snprintf(errbuf, errsz, "%s", sqlite3_errmsg(st->db));
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_begin(struct store *st)
{
	char err[256];
	return store_tx_step(st, ST_BEGIN, err, sizeof(err));
}

int store_commit(struct store *st)
{
	char err[256];
	return store_tx_step(st, ST_COMMIT, err, sizeof(err));
}

/* A failed COMMIT (a full disk, an I/O error) has already rolled back on its own: a ROLLBACK then
 * would only replace the connection's error message with "no transaction is active". */
void store_rollback(struct store *st)
{
	char err[256];
	if (!sqlite3_get_autocommit(st->db))
		store_tx_step(st, ST_ROLLBACK, err, sizeof(err));
}

int store_begin_err(struct store *st, char *errbuf, size_t errsz)
{
	return store_tx_step(st, ST_BEGIN, errbuf, errsz);
}

int store_commit_err(struct store *st, char *errbuf, size_t errsz)
{
	return store_tx_step(st, ST_COMMIT, errbuf, errsz);
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

const char *store_errmsg(struct store *st)
{
	return st && st->db ? sqlite3_errmsg(st->db) : "";
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
