/* store.c - SQLite connections, schema migrations, the writer thread and WAL checkpoints.
 *
 * Invariants: a struct store is used by one thread only (connections are opened with
 * SQLITE_OPEN_NOMUTEX); every statement is reset right after it is stepped, so no reader keeps a
 * snapshot that would block checkpoints; every write is a single short BEGIN IMMEDIATE ... COMMIT
 * (or an autocommit insert). Migrations run inside BEGIN IMMEDIATE and re-read user_version
 * there, so several processes starting at once apply each migration exactly once.
 *
 * The writer: request threads queue a job on their own stack and sleep until the writer thread
 * marks it done; the writer takes every queued job at once and commits them in one transaction
 * (group commit). A job is never touched after it is marked done (its owner may return at once).
 * (Measured: a dedicated thread beats handing the commit to one of the waiting request threads.)
 *
 * Checkpoints: the writer's connection has wal_autocheckpoint disabled and a WAL hook that wakes
 * the checkpointer thread once the WAL holds checkpoint_pages pages; the checkpointer also runs
 * every few seconds. It uses PASSIVE checkpoints, which never block writers, and a RESTART
 * checkpoint only when the WAL has passed the hard cap.
 */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "util.h"

enum {
	ST_INSERT_REQLOG,
	ST_INSERT_TOOL_STATE,
	ST_GET_TOOL_STATE,
	ST_INSERT_ATTEMPT,
	ST_HEALTH_LOAD,
	ST_HEALTH_FAIL,
	ST_HEALTH_TRIP,
	ST_HEALTH_OK,
	ST_HEALTH_CLAIM,
	ST_HEALTH_GET,
	ST_KEY_INSERT,
	ST_KEY_GET,
	ST_KEY_REVOKE,
	ST_KEY_LIST,
	ST_RES_STALE,
	ST_RES_DELETE,
	ST_SPEND_GET,
	ST_SPEND_ADD,
	ST_RES_INSERT,
	ST_ALERT_INSERT,
	ST_LIMIT_SET,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_INSERT_REQLOG] =
		"INSERT INTO request_log (request_id, ts_start_ms, ts_end_ms, agent, tier, task,"
		" requested_model, model, provider, upstream_model, stream, status, error_type,"
		" error_code, error_message, finish_reason, input_tokens, output_tokens, cached_tokens,"
		" cache_write_tokens, reasoning_tokens, cost_nusd, cost_source, latency_ms, ttft_ms,"
		" upstream_ms, overhead_ms, dropped_params, upstream_request_id, attempts, client_gone,"
		" fallback_from, partial)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
		" ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33)"
		" ON CONFLICT(request_id) DO NOTHING",
	[ST_INSERT_TOOL_STATE] = ("INSERT OR REPLACE INTO tool_call_state"
				  " (tool_call_id, request_id, state, ts_ms) VALUES (?1, ?2, ?3, ?4)"),
	[ST_GET_TOOL_STATE] = "SELECT state FROM tool_call_state WHERE tool_call_id = ?1",
	[ST_INSERT_ATTEMPT] =
		"INSERT OR IGNORE INTO request_attempts (request_id, attempt, ts_start_ms, model,"
		" provider, upstream_model, outcome, upstream_status, status, error_type, error_code,"
		" error_message, latency_ms, retry_after_s, upstream_request_id)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
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

/* Migration i brings the schema from version i to i+1. Never edit a released entry: append. */
static const char *const migrations[] = {
	/* 0 -> 1: the request log. */
	"CREATE TABLE request_log ("
	"  id INTEGER PRIMARY KEY,"
	"  request_id TEXT NOT NULL UNIQUE,"
	"  ts_start_ms INTEGER NOT NULL,"
	"  ts_end_ms INTEGER NOT NULL,"
	"  agent TEXT,"
	"  tier TEXT,"
	"  task TEXT,"
	"  requested_model TEXT,"
	"  model TEXT,"
	"  provider TEXT,"
	"  upstream_model TEXT,"
	"  stream INTEGER NOT NULL DEFAULT 0,"
	"  status INTEGER NOT NULL,"
	"  error_type TEXT,"
	"  error_code TEXT,"
	"  error_message TEXT,"
	"  finish_reason TEXT,"
	"  input_tokens INTEGER,"
	"  output_tokens INTEGER,"
	"  cached_tokens INTEGER,"
	"  cache_write_tokens INTEGER,"
	"  reasoning_tokens INTEGER,"
	"  cost_nusd INTEGER NOT NULL DEFAULT 0,"
	"  cost_usd REAL GENERATED ALWAYS AS (cost_nusd / 1e9) VIRTUAL,"
	"  cost_source TEXT,"
	"  latency_ms REAL,"
	"  ttft_ms REAL,"
	"  upstream_ms REAL,"
	"  overhead_ms REAL,"
	"  dropped_params TEXT,"
	"  upstream_request_id TEXT,"
	"  attempts INTEGER NOT NULL DEFAULT 1,"
	"  client_gone INTEGER NOT NULL DEFAULT 0"
	");"
	"CREATE INDEX request_log_ts ON request_log(ts_start_ms);",
	/* 1 -> 2: what assistant turns with tool calls must carry into the next request. */
	"CREATE TABLE tool_call_state ("
	"  tool_call_id TEXT PRIMARY KEY,"
	"  request_id TEXT NOT NULL,"
	"  state TEXT NOT NULL,"
	"  ts_ms INTEGER NOT NULL"
	");"
	"CREATE INDEX tool_call_state_ts ON tool_call_state(ts_ms);",
	/* 2 -> 3: fallback: every attempt of a request, and the health of each model. */
	"ALTER TABLE request_log ADD COLUMN fallback_from TEXT;"
	"ALTER TABLE request_log ADD COLUMN partial INTEGER NOT NULL DEFAULT 0;"
	"CREATE TABLE request_attempts ("
	"  request_id TEXT NOT NULL,"
	"  attempt INTEGER NOT NULL,"
	"  ts_start_ms INTEGER NOT NULL,"
	"  model TEXT NOT NULL,"
	"  provider TEXT,"
	"  upstream_model TEXT,"
	"  outcome TEXT NOT NULL,"
	"  upstream_status INTEGER,"
	"  status INTEGER,"
	"  error_type TEXT,"
	"  error_code TEXT,"
	"  error_message TEXT,"
	"  latency_ms REAL,"
	"  retry_after_s INTEGER,"
	"  upstream_request_id TEXT,"
	"  PRIMARY KEY (request_id, attempt)"
	") WITHOUT ROWID;"
	"CREATE INDEX request_attempts_ts ON request_attempts(ts_start_ms);"
	"CREATE TABLE model_health ("
	"  model TEXT PRIMARY KEY,"
	"  failures INTEGER NOT NULL DEFAULT 0,"
	"  window_start_ms INTEGER NOT NULL DEFAULT 0,"
	"  cooldown_until_ms INTEGER NOT NULL DEFAULT 0,"
	"  probe_until_ms INTEGER NOT NULL DEFAULT 0,"
	"  trips INTEGER NOT NULL DEFAULT 0,"
	"  last_error TEXT,"
	"  updated_ms INTEGER NOT NULL DEFAULT 0"
	");",
	/* 3 -> 4: agents' keys, daily budgets (spend ledger, reservations, alerts) and report views. */
	"CREATE TABLE api_keys ("
	"  id TEXT PRIMARY KEY,"
	"  agent TEXT NOT NULL,"
	"  hash TEXT NOT NULL,"
	"  created_ms INTEGER NOT NULL,"
	"  revoked_ms INTEGER"
	");"
	"CREATE TABLE budget_spend ("
	"  day TEXT NOT NULL,"
	"  scope TEXT NOT NULL,"
	"  spent_nusd INTEGER NOT NULL DEFAULT 0,"
	"  reserved_nusd INTEGER NOT NULL DEFAULT 0,"
	"  requests INTEGER NOT NULL DEFAULT 0,"
	"  PRIMARY KEY (day, scope)"
	") WITHOUT ROWID;"
	"CREATE TABLE budget_reservations ("
	"  request_id TEXT PRIMARY KEY,"
	"  day TEXT NOT NULL,"
	"  tier_scope TEXT NOT NULL,"
	"  agent_scope TEXT,"
	"  amount_nusd INTEGER NOT NULL,"
	"  created_ms INTEGER NOT NULL"
	");"
	"CREATE INDEX budget_reservations_created ON budget_reservations(created_ms);"
	"CREATE TABLE budget_alerts ("
	"  day TEXT NOT NULL,"
	"  scope TEXT NOT NULL,"
	"  level INTEGER NOT NULL,"
	"  ts_ms INTEGER NOT NULL,"
	"  spent_nusd INTEGER,"
	"  limit_nusd INTEGER,"
	"  PRIMARY KEY (day, scope, level)"
	") WITHOUT ROWID;"
	"CREATE TABLE budget_limits ("
	"  scope TEXT PRIMARY KEY,"
	"  limit_nusd INTEGER NOT NULL"
	");"
	"CREATE VIEW spend_by_day AS"
	"  SELECT date(ts_start_ms / 1000, 'unixepoch') AS day, tier, agent, model, count(*) AS calls,"
	"  sum(coalesce(input_tokens, 0)) AS input_tokens, sum(coalesce(output_tokens, 0)) AS output_tokens,"
	"  round(sum(cost_nusd) / 1e9, 6) AS usd"
	"  FROM request_log GROUP BY day, tier, agent, model;"
	"CREATE VIEW spend_today_tier AS"
	"  SELECT substr(s.scope, 6) AS tier, round(s.spent_nusd / 1e9, 6) AS spent_usd,"
	"  round(s.reserved_nusd / 1e9, 6) AS reserved_usd, round(l.limit_nusd / 1e9, 2) AS budget_usd,"
	"  round(100.0 * s.spent_nusd / nullif(l.limit_nusd, 0), 1) AS percent, s.requests"
	"  FROM budget_spend s LEFT JOIN budget_limits l USING (scope)"
	"  WHERE s.day = date('now') AND s.scope LIKE 'tier:%';"
	"CREATE VIEW spend_today_agent AS"
	"  SELECT substr(s.scope, 7) AS agent, round(s.spent_nusd / 1e9, 6) AS spent_usd,"
	"  round(s.reserved_nusd / 1e9, 6) AS reserved_usd, round(l.limit_nusd / 1e9, 2) AS budget_usd,"
	"  round(100.0 * s.spent_nusd / nullif(l.limit_nusd, 0), 1) AS percent, s.requests"
	"  FROM budget_spend s LEFT JOIN budget_limits l USING (scope)"
	"  WHERE s.day = date('now') AND s.scope LIKE 'agent:%';"
	"CREATE VIEW spend_today_model AS"
	"  SELECT model, count(*) AS calls, sum(coalesce(input_tokens, 0)) AS input_tokens,"
	"  sum(coalesce(output_tokens, 0)) AS output_tokens, round(sum(cost_nusd) / 1e9, 6) AS usd"
	"  FROM request_log WHERE ts_start_ms >= unixepoch(date('now')) * 1000 GROUP BY model;",
};

struct store {
	sqlite3 *db;
	sqlite3_stmt *stmt[ST_COUNT];
};

/* ---- checkpointer state (one per process) ---- */

/* A WAL past this many times checkpoint_pages gets a RESTART checkpoint. */
#define WAL_CAP_FACTOR 16
/* Retry interval for a database that could not be opened. */
#define REOPEN_US (5 * 1000000LL)

static pthread_mutex_t ck_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ck_cond = PTHREAD_COND_INITIALIZER;
static pthread_t ck_thread;
static int ck_running;
static int ck_stop;
static int ck_wanted;
static long ck_pages = 1000;

/* Frames in the WAL at which the checkpointer is woken next. A background checkpoint that copies
 * every frame still leaves the WAL in place when the next commit has already begun, so waking it
 * after each commit past a fixed size would checkpoint (and fsync) at every commit: the threshold
 * moves one checkpoint_pages past what the last checkpoint saw, and falls back once the WAL has
 * started over. */
static long ck_threshold = 1000;
static int ck_last_pages;          /* writer thread only */

static int wal_hook(void *ud, sqlite3 *db, const char *name, int pages)
{
	(void)ud;
	(void)db;
	(void)name;
	long base = __atomic_load_n(&ck_pages, __ATOMIC_RELAXED);
	if (pages < ck_last_pages)
		__atomic_store_n(&ck_threshold, base, __ATOMIC_RELAXED);
	ck_last_pages = pages;
	if (pages >= __atomic_load_n(&ck_threshold, __ATOMIC_RELAXED) &&
	    !__atomic_load_n(&ck_wanted, __ATOMIC_RELAXED)) {
		pthread_mutex_lock(&ck_mu);
		ck_wanted = 1;
		pthread_cond_signal(&ck_cond);
		pthread_mutex_unlock(&ck_mu);
	}
	return SQLITE_OK;
}

static int exec_sql(sqlite3 *db, const char *sql, char *errbuf, size_t errsz)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		snprintf(errbuf, errsz, "%s", msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int user_version(sqlite3 *db)
{
	sqlite3_stmt *s;
	int v = -1;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return v;
}

static int migrate(sqlite3 *db, char *errbuf, size_t errsz)
{
	if (user_version(db) == (int)ARRAY_SIZE(migrations))
		return 0;
	if (exec_sql(db, "BEGIN IMMEDIATE", errbuf, errsz) < 0)
		return -1;
	int v = user_version(db);
	if (v < 0 || v > (int)ARRAY_SIZE(migrations)) {
		snprintf(errbuf, errsz, "database schema version %d is newer than this router (%d)", v,
			 (int)ARRAY_SIZE(migrations));
		char ignore[8];
		exec_sql(db, "ROLLBACK", ignore, sizeof(ignore));
		return -1;
	}
	for (; v < (int)ARRAY_SIZE(migrations); v++) {
		if (exec_sql(db, migrations[v], errbuf, errsz) < 0) {
			char ignore[8];
			exec_sql(db, "ROLLBACK", ignore, sizeof(ignore));
			return -1;
		}
	}
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v);
	if (exec_sql(db, sql, errbuf, errsz) < 0 || exec_sql(db, "COMMIT", errbuf, errsz) < 0) {
		char ignore[8];
		exec_sql(db, "ROLLBACK", ignore, sizeof(ignore));
		return -1;
	}
	return 0;
}

/* Waiting for another connection's lock: SQLite's own busy timeout sleeps in steps of up to
 * 100 ms, which is what a request then waits even when the lock is released a moment later.
 * This one polls from 50 us, doubling to at most 2 ms, until busy_timeout_ms have passed. */
static int busy_wait(void *ud, int count)
{
	int64_t timeout_us = (int64_t)(intptr_t)ud * 1000;
	int64_t slept = 0;
	for (int i = 0; i < count && slept <= timeout_us; i++)
		slept += i < 6 ? 50LL << i : 2000;
	if (slept > timeout_us)
		return 0;
	struct timespec ts = { 0, (count < 6 ? 50L << count : 2000L) * 1000L };
	nanosleep(&ts, NULL);
	return 1;
}

static sqlite3 *open_db(const struct store_opts *o, int worker, char *errbuf, size_t errsz)
{
	if (mkdir_parents(o->path) < 0) {
		snprintf(errbuf, errsz, "cannot create the directory of %s: %s", o->path, strerror(errno));
		return NULL;
	}
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(o->path, &db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		snprintf(errbuf, errsz, "cannot open %s: %s", o->path,
			 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_handler(db, busy_wait, (void *)(intptr_t)o->busy_timeout_ms);
	char sql[160];
	/* The hot pages (index ends, the ledger, keys) are few: a small page cache per connection
	 * keeps a responder's many connections (writer, checkpointer, one per worker) lean. */
	snprintf(sql, sizeof(sql), "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA cache_size=-512;",
		 o->synchronous_full ? "FULL" : "NORMAL");
	/* A new database gives deleted pages back to the file system bit by bit (store_prune). */
	if (user_version(db) == 0)
		exec_sql(db, "PRAGMA auto_vacuum = INCREMENTAL", errbuf, errsz);
	if (exec_sql(db, sql, errbuf, errsz) < 0 || migrate(db, errbuf, errsz) < 0) {
		sqlite3_close(db);
		return NULL;
	}
	if (o->checkpoint_pages > 0) {
		/* A WAL that starts over is reused in place (appending to a file that was truncated
		 * allocates blocks on the request path); only a WAL past the cap is cut back to it. */
		snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit=%lld",
			 (long long)o->checkpoint_pages * 4096 * WAL_CAP_FACTOR);
		exec_sql(db, sql, errbuf, errsz);
	}
	if (worker && o->checkpoint_pages > 0) {
		/* A background checkpointer runs; keep checkpoints off the request path. */
		sqlite3_wal_autocheckpoint(db, 0);
		sqlite3_wal_hook(db, wal_hook, NULL);
	}
	return db;
}

struct store *store_open(const struct store_opts *o, char *errbuf, size_t errsz)
{
	sqlite3 *db = open_db(o, 1, errbuf, errsz);
	if (!db)
		return NULL;
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
	return user_version(st->db);
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

static void bind_count(sqlite3_stmt *s, int i, int64_t v)
{
	if (v >= 0)
		sqlite3_bind_int64(s, i, v);
	else
		sqlite3_bind_null(s, i);
}

static void bind_ms(sqlite3_stmt *s, int i, double v)
{
	if (v >= 0)
		sqlite3_bind_double(s, i, v);
	else
		sqlite3_bind_null(s, i);
}

static int insert_tool_state(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz)
{
	const char *id;
	json_t *v;
	json_object_foreach((json_t *)r->tool_state, id, v)
	{
		char *text = json_dumps(v, JSON_COMPACT);
		sqlite3_stmt *s = st->stmt[ST_INSERT_TOOL_STATE];
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, r->request_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, text ? text : "{}", -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 4, r->ts_end_ms);
		int rc = sqlite3_step(s);
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		free(text);
		if (rc != SQLITE_DONE) {
			snprintf(errbuf, errsz, "insert into tool_call_state failed: %s",
				 sqlite3_errmsg(st->db));
			return -1;
		}
	}
	return 0;
}

static int insert_attempts(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz)
{
	for (size_t i = 0; i < r->n_attempt_log; i++) {
		const struct attempt_log *a = &r->attempt_log[i];
		sqlite3_stmt *s = st->stmt[ST_INSERT_ATTEMPT];
		bind_text(s, 1, r->request_id);
		sqlite3_bind_int(s, 2, (int)i + 1);
		sqlite3_bind_int64(s, 3, a->ts_start_ms);
		bind_text(s, 4, a->model);
		bind_text(s, 5, a->provider);
		bind_text(s, 6, a->upstream_model);
		bind_text(s, 7, a->outcome);
		if (a->upstream_status > 0)
			sqlite3_bind_int(s, 8, a->upstream_status);
		else
			sqlite3_bind_null(s, 8);
		if (a->status > 0)
			sqlite3_bind_int(s, 9, a->status);
		else
			sqlite3_bind_null(s, 9);
		bind_text(s, 10, a->error_type);
		bind_text(s, 11, a->error_code);
		bind_text(s, 12, a->error_message && a->error_message[0] ? a->error_message : NULL);
		bind_ms(s, 13, a->latency_ms);
		if (a->retry_after_s > 0)
			sqlite3_bind_int64(s, 14, a->retry_after_s);
		else
			sqlite3_bind_null(s, 14);
		bind_text(s, 15, a->upstream_request_id && a->upstream_request_id[0] ? a->upstream_request_id
										       : NULL);
		int rc = sqlite3_step(s);
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		if (rc != SQLITE_DONE) {
			snprintf(errbuf, errsz, "insert into request_attempts failed: %s",
				 sqlite3_errmsg(st->db));
			return -1;
		}
	}
	return 0;
}

static int insert_reqlog_parts(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz);

static int spend_add(struct store *st, const char *day, const char *scope, int64_t spent,
		     int64_t reserved, int requests)
{
	sqlite3_stmt *s = st->stmt[ST_SPEND_ADD];
	sqlite3_bind_text(s, 1, day, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, scope, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, spent);
	sqlite3_bind_int64(s, 4, reserved);
	sqlite3_bind_int(s, 5, requests);
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

void store_utc_day(int64_t ms, char day[11])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	if (strftime(day, 11, "%Y-%m-%d", &tm) == 0)
		snprintf(day, 11, "0000-00-00");
}

/* Ends request_id's reservation, if it still has one: its amount leaves the reserved sums.
 * Returns 1 with day/scopes/amount filled, 0 when there was none, -1 on error. */
static int reservation_end(struct store *st, const char *request_id, char day[11], char *tier_scope,
			   char *agent_scope, size_t scopesz, int64_t *amount)
{
	sqlite3_stmt *s = st->stmt[ST_RES_DELETE];
	sqlite3_bind_text(s, 1, request_id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int found = rc == SQLITE_ROW;
	if (found) {
		snprintf(day, 11, "%s", (const char *)sqlite3_column_text(s, 0));
		snprintf(tier_scope, scopesz, "%s", (const char *)sqlite3_column_text(s, 1));
		const char *as = (const char *)sqlite3_column_text(s, 2);
		snprintf(agent_scope, scopesz, "%s", as ? as : "");
		*amount = sqlite3_column_int64(s, 3);
		rc = sqlite3_step(s);
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rc != SQLITE_DONE)
		return -1;
	if (found) {
		if (spend_add(st, day, tier_scope, 0, -*amount, 0) < 0 ||
		    (agent_scope[0] && spend_add(st, day, agent_scope, 0, -*amount, 0) < 0))
			return -1;
	}
	return found;
}

/* The row's cost goes into the ledger in the row's own transaction: the ledger always equals
 * the logged costs. */
static int settle_budget(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz)
{
	char day[11], tier_scope[160], agent_scope[160];
	int64_t amount = 0;
	int found = reservation_end(st, r->request_id, day, tier_scope, agent_scope, sizeof(tier_scope),
				    &amount);
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
	if (spend_add(st, day, tier_scope, r->cost_nusd, 0, 1) < 0 ||
	    (agent_scope[0] && spend_add(st, day, agent_scope, r->cost_nusd, 0, 1) < 0))
		goto fail;
	return 0;
fail:
	snprintf(errbuf, errsz, "budget ledger update failed: %s", sqlite3_errmsg(st->db));
	return -1;
}

int store_insert_reqlog(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz)
{
	return store_insert_reqlog_new(st, r, errbuf, errsz) < 0 ? -1 : 0;
}

int store_insert_reqlog_new(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz)
{
	/* The row, its attempts, its tool state and its budget settlement commit together. */
	if (exec_sql(st->db, "SAVEPOINT reqlog", errbuf, errsz) < 0)
		return -1;
	int rc = insert_reqlog_parts(st, r, errbuf, errsz);
	char ignore[64];
	if (rc < 0) {
		exec_sql(st->db, "ROLLBACK TO reqlog", ignore, sizeof(ignore));
		exec_sql(st->db, "RELEASE reqlog", ignore, sizeof(ignore));
		return -1;
	}
	if (exec_sql(st->db, "RELEASE reqlog", errbuf, errsz) < 0) {
		exec_sql(st->db, "ROLLBACK TO reqlog", ignore, sizeof(ignore));
		exec_sql(st->db, "RELEASE reqlog", ignore, sizeof(ignore));
		return -1;
	}
	return rc;
}

static int insert_reqlog_parts(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz)
{
	sqlite3_stmt *s = st->stmt[ST_INSERT_REQLOG];
	bind_text(s, 1, r->request_id);
	sqlite3_bind_int64(s, 2, r->ts_start_ms);
	sqlite3_bind_int64(s, 3, r->ts_end_ms);
	bind_text(s, 4, r->agent);
	bind_text(s, 5, r->tier);
	bind_text(s, 6, r->task);
	bind_text(s, 7, r->requested_model);
	bind_text(s, 8, r->model);
	bind_text(s, 9, r->provider);
	bind_text(s, 10, r->upstream_model);
	sqlite3_bind_int(s, 11, r->stream);
	sqlite3_bind_int(s, 12, r->status);
	bind_text(s, 13, r->error_type);
	bind_text(s, 14, r->error_code);
	bind_text(s, 15, r->error_message);
	bind_text(s, 16, r->finish_reason);
	bind_count(s, 17, r->input_tokens);
	bind_count(s, 18, r->output_tokens);
	bind_count(s, 19, r->cached_tokens);
	bind_count(s, 20, r->cache_write_tokens);
	bind_count(s, 21, r->reasoning_tokens);
	sqlite3_bind_int64(s, 22, r->cost_nusd);
	bind_text(s, 23, r->cost_source);
	bind_ms(s, 24, r->latency_ms);
	bind_ms(s, 25, r->ttft_ms);
	bind_ms(s, 26, r->upstream_ms);
	bind_ms(s, 27, r->overhead_ms);
	bind_text(s, 28, r->dropped_params && r->dropped_params[0] ? r->dropped_params : NULL);
	bind_text(s, 29, r->upstream_request_id && r->upstream_request_id[0] ? r->upstream_request_id
									     : NULL);
	sqlite3_bind_int(s, 30, r->attempts);
	sqlite3_bind_int(s, 31, r->client_gone);
	bind_text(s, 32, r->fallback_from && r->fallback_from[0] ? r->fallback_from : NULL);
	sqlite3_bind_int(s, 33, r->partial);
	int rc = sqlite3_step(s);
	if (rc != SQLITE_DONE)
		snprintf(errbuf, errsz, "insert into request_log failed: %s (%s)", sqlite3_errmsg(st->db),
			 sqlite3_errstr(rc));
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
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

/* ---- model health (cooldown) ---- */

int store_health_load(struct store *st, void (*cb)(void *ud, const struct health_row *h), void *ud)
{
	sqlite3_stmt *s = st->stmt[ST_HEALTH_LOAD];
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct health_row h = {
			.model = (const char *)sqlite3_column_text(s, 0),
			.failures = sqlite3_column_int64(s, 1),
			.window_start_ms = sqlite3_column_int64(s, 2),
			.cooldown_until_ms = sqlite3_column_int64(s, 3),
			.probe_until_ms = sqlite3_column_int64(s, 4),
		};
		if (h.model)
			cb(ud, &h);
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_health_failure(struct store *st, const char *model, int64_t now_ms, int64_t window_ms,
			 int64_t threshold, int64_t cooldown_ms, const char *error, struct health_row *out)
{
	char err[256];
	if (exec_sql(st->db, "BEGIN IMMEDIATE", err, sizeof(err)) < 0)
		return -1;
	sqlite3_stmt *s = st->stmt[ST_HEALTH_FAIL];
	sqlite3_bind_text(s, 1, model, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, now_ms);
	bind_text(s, 3, error);
	sqlite3_bind_int64(s, 4, window_ms);
	int ok = sqlite3_step(s) == SQLITE_ROW;
	if (ok) {
		out->model = model;
		out->failures = sqlite3_column_int64(s, 0);
		out->window_start_ms = sqlite3_column_int64(s, 1);
		out->cooldown_until_ms = sqlite3_column_int64(s, 2);
		out->probe_until_ms = sqlite3_column_int64(s, 3);
		ok = sqlite3_step(s) == SQLITE_DONE;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	/* Enough failures in the window, or a failed probe after a cooldown: (re)start one. */
	if (ok && (out->failures >= threshold || out->cooldown_until_ms > 0)) {
		sqlite3_stmt *t = st->stmt[ST_HEALTH_TRIP];
		sqlite3_bind_text(t, 1, model, -1, SQLITE_STATIC);
		sqlite3_bind_int64(t, 2, now_ms + cooldown_ms);
		sqlite3_bind_int64(t, 3, now_ms);
		ok = sqlite3_step(t) == SQLITE_DONE;
		sqlite3_reset(t);
		sqlite3_clear_bindings(t);
		out->failures = 0;
		out->window_start_ms = now_ms;
		out->cooldown_until_ms = now_ms + cooldown_ms;
		out->probe_until_ms = 0;
		out->tripped = 1;
	}
	if (!ok || exec_sql(st->db, "COMMIT", err, sizeof(err)) < 0) {
		exec_sql(st->db, "ROLLBACK", err, sizeof(err));
		return -1;
	}
	return 0;
}

int store_health_ok(struct store *st, const char *model, int64_t now_ms)
{
	sqlite3_stmt *s = st->stmt[ST_HEALTH_OK];
	sqlite3_bind_text(s, 1, model, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, now_ms);
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_health_get(struct store *st, const char *model, struct health_row *out)
{
	sqlite3_stmt *s = st->stmt[ST_HEALTH_GET];
	sqlite3_bind_text(s, 1, model, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	memset(out, 0, sizeof(*out));
	out->model = model;
	if (rc == SQLITE_ROW) {
		out->failures = sqlite3_column_int64(s, 0);
		out->window_start_ms = sqlite3_column_int64(s, 1);
		out->cooldown_until_ms = sqlite3_column_int64(s, 2);
		out->probe_until_ms = sqlite3_column_int64(s, 3);
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int store_health_claim(struct store *st, const char *model, int64_t now_ms, int64_t until_ms)
{
	sqlite3_stmt *s = st->stmt[ST_HEALTH_CLAIM];
	sqlite3_bind_text(s, 1, model, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, now_ms);
	sqlite3_bind_int64(s, 3, until_ms);
	int rc = sqlite3_step(s);
	int n = rc == SQLITE_DONE ? sqlite3_changes(st->db) : -1;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return n;
}

json_t *store_tool_state(struct store *st, const char *tool_call_id)
{
	sqlite3_stmt *s = st->stmt[ST_GET_TOOL_STATE];
	json_t *state = NULL;
	sqlite3_bind_text(s, 1, tool_call_id, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW) {
		const char *text = (const char *)sqlite3_column_text(s, 0);
		json_error_t jerr;
		state = text ? json_loads(text, 0, &jerr) : NULL;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return state;
}

/* ---- checkpointer ---- */

static void *checkpointer_main(void *arg)
{
	struct store_opts *o = arg;
	char errbuf[256];
	sqlite3 *db = NULL;
	pthread_mutex_lock(&ck_mu);
	while (!ck_stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 5;
		while (!ck_stop && !ck_wanted) {
			if (pthread_cond_timedwait(&ck_cond, &ck_mu, &until) == ETIMEDOUT)
				break;
		}
		if (ck_stop)
			break;
		ck_wanted = 0;
		pthread_mutex_unlock(&ck_mu);
		if (!db)
			db = open_db(o, 0, errbuf, sizeof(errbuf));
		if (db) {
			int wal_pages = 0, done = 0;
			int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &wal_pages,
							   &done);
			if (rc == SQLITE_OK)
				__atomic_store_n(&ck_threshold, (long)wal_pages + o->checkpoint_pages,
						 __ATOMIC_RELAXED);
			if (rc == SQLITE_OK && wal_pages >= WAL_CAP_FACTOR * o->checkpoint_pages) {
				/* Commits that never stop keep a background checkpoint from ever reaching the
				 * end of the WAL, so it would grow without bound: make writers wait for one
				 * checkpoint that lets the next commit start the WAL over. */
				rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_RESTART, &wal_pages,
							       &done);
			}
			if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
				log_warn(NULL, "WAL checkpoint of %s failed: %s", o->path,
					 sqlite3_errmsg(db));
				sqlite3_close(db);
				db = NULL;
			}
		}
		pthread_mutex_lock(&ck_mu);
	}
	pthread_mutex_unlock(&ck_mu);
	sqlite3_close(db);
	free((char *)o->path);
	free(o);
	return NULL;
}

static int checkpointer_start(const struct store_opts *o)
{
	struct store_opts *copy = xmalloc(sizeof(*copy));
	*copy = *o;
	copy->path = xstrdup(o->path);
	__atomic_store_n(&ck_pages, o->checkpoint_pages, __ATOMIC_RELAXED);
	__atomic_store_n(&ck_threshold, o->checkpoint_pages, __ATOMIC_RELAXED);
	ck_stop = 0;
	if (pthread_create(&ck_thread, NULL, checkpointer_main, copy) != 0) {
		free((char *)copy->path);
		free(copy);
		return -1;
	}
	ck_running = 1;
	return 0;
}

static void checkpointer_stop(void)
{
	if (!ck_running)
		return;
	pthread_mutex_lock(&ck_mu);
	ck_stop = 1;
	pthread_cond_signal(&ck_cond);
	pthread_mutex_unlock(&ck_mu);
	pthread_join(ck_thread, NULL);
	ck_running = 0;
}

/* ---- the writer ---- */

static int reserve_in_tx(struct store *st, struct budget_ask *ask);

struct wjob {
	const struct reqlog *r;        /* a row to log, or */
	struct budget_ask *ask;        /* a budget reservation to make */
	struct wjob *next;
	int done;
	int rc;
	char err[256];
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t work;          /* jobs queued or stop requested */
	pthread_cond_t done;          /* a batch finished */
	struct wjob *head, *tail;
	int stop;
	int running;
	pthread_t thread;
	struct store_opts opts;
	struct store *st;             /* writer thread only */
	int64_t retry_us;             /* writer thread only */
} W = { .mu = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER,
	.done = PTHREAD_COND_INITIALIZER };

static int step_sql(struct store *st, const char *sql, char *errbuf, size_t errsz)
{
	return exec_sql(st->db, sql, errbuf, errsz);
}

/* Commits a batch in one transaction; on any failure every job of the batch fails. */
/* A database file deleted or renamed under the writer (a removed directory, a restore) would
 * swallow the rows committed to it: drop the connection so that a new file is opened at once. */
static void writer_drop_if_moved(void)
{
	if (!W.st || !store_file_moved(W.st))
		return;
	log_error(NULL, "the database file %s was moved or deleted: opening it anew", W.opts.path);
	store_close(W.st);
	W.st = NULL;
	W.retry_us = 0;
}

static void commit_batch(struct wjob *batch)
{
	char err[256] = "";
	int ok = 0;
	writer_drop_if_moved();
	if (!W.st && clock_mono_us() >= W.retry_us) {
		W.st = store_open(&W.opts, err, sizeof(err));
		if (!W.st) {
			W.retry_us = clock_mono_us() + REOPEN_US;
			log_error(NULL, "request log database unavailable: %s", err);
		}
	}
	if (!W.st) {
		if (!err[0])
			snprintf(err, sizeof(err), "the database is unavailable (retrying every %lld s)",
				 REOPEN_US / 1000000);
	} else if (step_sql(W.st, "BEGIN IMMEDIATE", err, sizeof(err)) == 0) {
		ok = 1;
		for (struct wjob *j = batch; j && ok; j = j->next)
			ok = j->ask ? reserve_in_tx(W.st, j->ask) == 0
				    : store_insert_reqlog(W.st, j->r, err, sizeof(err)) == 0;
		if (ok)
			ok = step_sql(W.st, "COMMIT", err, sizeof(err)) == 0;
		if (!ok) {
			char ignore[64];
			step_sql(W.st, "ROLLBACK", ignore, sizeof(ignore));
		}
	}
	if (!ok && W.st) {
		int code = sqlite3_extended_errcode(W.st->db) & 0xff;
		if (code != SQLITE_BUSY && code != SQLITE_LOCKED) {
			/* Read-only, I/O error, corruption, vanished file: reopen later. */
			store_close(W.st);
			W.st = NULL;
			W.retry_us = clock_mono_us() + REOPEN_US;
		}
	}
	for (struct wjob *j = batch; j; j = j->next) {
		j->rc = ok ? 0 : -1;
		if (!ok)
			snprintf(j->err, sizeof(j->err), "%s", err);
	}
}

/* Maintenance by the writer, between batches: the JSONL fallback is imported once the database
 * takes rows again (checked every REPLAY_CHECK_MS), and rows past the retention age are pruned
 * (every PRUNE_EVERY_MS, the first a minute after start). */
#define REPLAY_CHECK_MS 5000
#define PRUNE_EVERY_MS (3600 * 1000LL)

static int64_t next_replay_ms, next_prune_ms;

static void writer_maintain(void)
{
	writer_drop_if_moved();
	if (!W.st && clock_mono_us() >= W.retry_us) {
		char err[256];
		W.st = store_open(&W.opts, err, sizeof(err));
		if (!W.st)
			W.retry_us = clock_mono_us() + REOPEN_US;
	}
	if (!W.st)
		return;
	int64_t now = clock_wall_ms();
	if (W.opts.jsonl_path && now >= next_replay_ms) {
		/* Cheap when there is nothing to import: the file and any leftovers are looked for. */
		next_replay_ms = now + REPLAY_CHECK_MS;
		struct replay_stats rs;
		reqlog_replay(W.st, W.opts.jsonl_path, &rs);
	}
	if (W.opts.retention_days > 0 && now >= next_prune_ms) {
		next_prune_ms = now + PRUNE_EVERY_MS;
		long long n = store_prune(W.st, now - W.opts.retention_days * 86400000LL);
		if (n > 0)
			log_info(NULL, "retention: %lld request-log row(s) older than %ld days deleted", n,
				 W.opts.retention_days);
	}
}

static void *writer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&W.mu);
	for (;;) {
		while (!W.head && !W.stop) {
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += REPLAY_CHECK_MS / 1000;
			if (pthread_cond_timedwait(&W.work, &W.mu, &until) == ETIMEDOUT && !W.head && !W.stop) {
				/* Idle: maintenance still runs (a database back after a failure gets its
				 * fallback rows without waiting for traffic). */
				pthread_mutex_unlock(&W.mu);
				writer_maintain();
				pthread_mutex_lock(&W.mu);
			}
		}
		if (!W.head)
			break;
		struct wjob *batch = W.head;
		W.head = W.tail = NULL;
		pthread_mutex_unlock(&W.mu);
		commit_batch(batch);
		pthread_mutex_lock(&W.mu);
		for (struct wjob *j = batch; j;) {
			struct wjob *next = j->next;
			j->done = 1;
			j = next;
		}
		pthread_cond_broadcast(&W.done);
		if (!W.head) {
			/* Nobody waits: a good moment for maintenance. */
			pthread_mutex_unlock(&W.mu);
			writer_maintain();
			pthread_mutex_lock(&W.mu);
		}
	}
	pthread_mutex_unlock(&W.mu);
	store_close(W.st);
	W.st = NULL;
	return NULL;
}

int store_writer_start(const struct store_opts *o)
{
	W.opts = *o;
	W.opts.path = xstrdup(o->path);
	W.opts.jsonl_path = o->jsonl_path ? xstrdup(o->jsonl_path) : NULL;
	next_replay_ms = 0;
	next_prune_ms = clock_wall_ms() + 60000;
	W.stop = 0;
	W.retry_us = 0;
	if (pthread_create(&W.thread, NULL, writer_main, NULL) != 0) {
		free((char *)W.opts.path);
		return -1;
	}
	__atomic_store_n(&W.running, 1, __ATOMIC_RELEASE);
	if (o->checkpoint_pages > 0 && checkpointer_start(o) < 0)
		log_warn(NULL, "cannot start the WAL checkpointer thread");
	return 0;
}

void store_writer_stop(void)
{
	if (!__atomic_load_n(&W.running, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&W.mu);
	W.stop = 1;
	pthread_cond_signal(&W.work);
	pthread_mutex_unlock(&W.mu);
	pthread_join(W.thread, NULL);
	__atomic_store_n(&W.running, 0, __ATOMIC_RELEASE);
	free((char *)W.opts.path);
	W.opts.path = NULL;
	free((char *)W.opts.jsonl_path);
	W.opts.jsonl_path = NULL;
	checkpointer_stop();
}

int store_writer_running(void)
{
	return __atomic_load_n(&W.running, __ATOMIC_ACQUIRE);
}

static int writer_submit(struct wjob *jp, char *errbuf, size_t errsz);

int store_writer_log(const struct reqlog *r, char *errbuf, size_t errsz)
{
	struct wjob job = { .r = r };
	return writer_submit(&job, errbuf, errsz);
}

int store_writer_reserve(struct budget_ask *ask)
{
	struct wjob job = { .ask = ask };
	char err[256];
	int rc = writer_submit(&job, err, sizeof(err));
	if (rc < 0)
		ask->admitted = 0;
	return rc;
}

static int writer_submit(struct wjob *jp, char *errbuf, size_t errsz)
{
	struct wjob job = *jp;
	pthread_mutex_lock(&W.mu);
	if (W.stop) {
		pthread_mutex_unlock(&W.mu);
		snprintf(errbuf, errsz, "the database writer has stopped");
		return -1;
	}
	if (W.tail)
		W.tail->next = &job;
	else
		W.head = &job;
	W.tail = &job;
	pthread_cond_signal(&W.work);
	while (!job.done)
		pthread_cond_wait(&W.done, &W.mu);
	pthread_mutex_unlock(&W.mu);
	if (job.rc < 0)
		snprintf(errbuf, errsz, "%s", job.err);
	return job.rc;
}

/* ---- agents' keys ---- */

int store_key_insert(struct store *st, const char *id, const char *agent, const char *hash,
		     int64_t now_ms)
{
	sqlite3_stmt *s = st->stmt[ST_KEY_INSERT];
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, agent, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, now_ms);
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_key_get(struct store *st, const char *id, char *agent, size_t agentsz, char hash[65],
		  int64_t *revoked_ms)
{
	sqlite3_stmt *s = st->stmt[ST_KEY_GET];
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int found = rc == SQLITE_ROW;
	if (found) {
		const char *a = (const char *)sqlite3_column_text(s, 0);
		const char *h = (const char *)sqlite3_column_text(s, 1);
		snprintf(agent, agentsz, "%s", a ? a : "");
		snprintf(hash, 65, "%s", h ? h : "");
		*revoked_ms = sqlite3_column_type(s, 2) == SQLITE_NULL ? 0 : sqlite3_column_int64(s, 2);
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return found ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int store_key_revoke(struct store *st, const char *id, int64_t now_ms)
{
	sqlite3_stmt *s = st->stmt[ST_KEY_REVOKE];
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, now_ms);
	int rc = sqlite3_step(s);
	int n = rc == SQLITE_DONE ? sqlite3_changes(st->db) : -1;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return n;
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
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* ---- budgets ---- */

static int spend_get(struct store *st, const char *day, const char *scope, int64_t *spent,
		     int64_t *reserved)
{
	sqlite3_stmt *s = st->stmt[ST_SPEND_GET];
	sqlite3_bind_text(s, 1, day, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, scope, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	*spent = *reserved = 0;
	if (rc == SQLITE_ROW) {
		*spent = sqlite3_column_int64(s, 0);
		*reserved = sqlite3_column_int64(s, 1);
		rc = SQLITE_DONE;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int alert_insert(struct store *st, const char *day, const struct budget_scope *sc, int level,
			int64_t now_ms)
{
	sqlite3_stmt *s = st->stmt[ST_ALERT_INSERT];
	sqlite3_bind_text(s, 1, day, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, sc->scope, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 3, level);
	sqlite3_bind_int64(s, 4, now_ms);
	sqlite3_bind_int64(s, 5, sc->spent_nusd);
	sqlite3_bind_int64(s, 6, sc->budget_nusd);
	int rc = sqlite3_step(s);
	int n = rc == SQLITE_DONE ? sqlite3_changes(st->db) : -1;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return n;
}

static int limit_set(struct store *st, const char *scope, int64_t budget_nusd)
{
	sqlite3_stmt *s = st->stmt[ST_LIMIT_SET];
	sqlite3_bind_text(s, 1, scope, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, budget_nusd);
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_budget_reclaim(struct store *st, int64_t before_ms)
{
	char err[256];
	if (exec_sql(st->db, "BEGIN IMMEDIATE", err, sizeof(err)) < 0)
		return -1;
	sqlite3_stmt *s = st->stmt[ST_RES_STALE];
	sqlite3_bind_int64(s, 1, before_ms);
	char ids[256][64];
	int n = 0, rc;
	while (n < 256 && (rc = sqlite3_step(s)) == SQLITE_ROW)
		snprintf(ids[n++], sizeof(ids[0]), "%s", (const char *)sqlite3_column_text(s, 0));
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	int ok = 1;
	for (int i = 0; i < n && ok; i++) {
		char day[11], ts[160], as[160];
		int64_t amount;
		ok = reservation_end(st, ids[i], day, ts, as, sizeof(ts), &amount) >= 0;
	}
	if (!ok || exec_sql(st->db, "COMMIT", err, sizeof(err)) < 0) {
		exec_sql(st->db, "ROLLBACK", err, sizeof(err));
		return -1;
	}
	return n;
}

/* The reservation's statements, inside a transaction the caller holds. Returns 0 or -1. */
static int reserve_in_tx(struct store *st, struct budget_ask *ask)
{
	ask->admitted = 0;
	ask->blocked = -1;
	int ok = 1;
	for (size_t i = 0; i < ask->n && ok; i++) {
		struct budget_scope *sc = &ask->scopes[i];
		sc->new_warn = sc->new_block = 0;
		ok = spend_get(st, ask->day, sc->scope, &sc->spent_nusd, &sc->reserved_nusd) == 0;
		if (ok && sc->budget_nusd > 0)
			ok = limit_set(st, sc->scope, sc->budget_nusd) == 0;
		if (ok && sc->limit_nusd > 0 && ask->blocked < 0 &&
		    sc->spent_nusd + sc->reserved_nusd + ask->amount_nusd > sc->limit_nusd)
			ask->blocked = (int)i;
	}
	/* Alerts: once per scope, day and level (the table's key says whether this is the first). */
	for (size_t i = 0; i < ask->n && ok; i++) {
		struct budget_scope *sc = &ask->scopes[i];
		if (sc->warn_nusd > 0 && sc->spent_nusd >= sc->warn_nusd) {
			int n = alert_insert(st, ask->day, sc, 90, ask->now_ms);
			ok = n >= 0;
			sc->new_warn = n == 1;
		}
		if (ok && sc->limit_nusd > 0 && (sc->spent_nusd >= sc->limit_nusd || ask->blocked == (int)i)) {
			int n = alert_insert(st, ask->day, sc, 100, ask->now_ms);
			ok = n >= 0;
			sc->new_block = n == 1;
		}
	}
	if (ok && ask->blocked < 0) {
		sqlite3_stmt *s = st->stmt[ST_RES_INSERT];
		sqlite3_bind_text(s, 1, ask->request_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, ask->day, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, ask->scopes[0].scope, -1, SQLITE_STATIC);
		if (ask->n > 1)
			sqlite3_bind_text(s, 4, ask->scopes[1].scope, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(s, 4);
		sqlite3_bind_int64(s, 5, ask->amount_nusd);
		sqlite3_bind_int64(s, 6, ask->now_ms);
		ok = sqlite3_step(s) == SQLITE_DONE;
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		for (size_t i = 0; i < ask->n && ok; i++)
			ok = spend_add(st, ask->day, ask->scopes[i].scope, 0, ask->amount_nusd, 0) == 0;
		ask->admitted = ok;
	}
	if (!ok)
		ask->admitted = 0;
	return ok ? 0 : -1;
}

int store_budget_reserve(struct store *st, struct budget_ask *ask)
{
	char err[256];
	ask->admitted = 0;
	ask->blocked = -1;
	if (exec_sql(st->db, "BEGIN IMMEDIATE", err, sizeof(err)) < 0)
		return -1;
	if (reserve_in_tx(st, ask) < 0 || exec_sql(st->db, "COMMIT", err, sizeof(err)) < 0) {
		exec_sql(st->db, "ROLLBACK", err, sizeof(err));
		ask->admitted = 0;
		return -1;
	}
	return 0;
}

int store_budget_release(struct store *st, const char *request_id)
{
	char day[11], ts[160], as[160];
	int64_t amount;
	return reservation_end(st, request_id, day, ts, as, sizeof(ts), &amount) < 0 ? -1 : 0;
}

int store_budget_spend(struct store *st, const char *day, const char *scope, int64_t *spent,
		       int64_t *reserved)
{
	return spend_get(st, day, scope, spent, reserved);
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

/* ---- transactions for batch callers, retention ---- */

int store_begin(struct store *st)
{
	char err[256];
	return exec_sql(st->db, "BEGIN IMMEDIATE", err, sizeof(err));
}

int store_commit(struct store *st)
{
	char err[256];
	return exec_sql(st->db, "COMMIT", err, sizeof(err));
}

void store_rollback(struct store *st)
{
	char err[256];
	exec_sql(st->db, "ROLLBACK", err, sizeof(err));
}

/* Deletes up to `batch` rows per statement, each batch its own short transaction, so writers of
 * other processes wait for one batch at most. */
static long long prune_table(struct store *st, const char *sql, int64_t cutoff, const char *day)
{
	long long total = 0;
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	for (;;) {
		if (store_begin(st) < 0) {
			total = -1;
			break;
		}
		sqlite3_bind_int64(s, 1, cutoff);
		sqlite3_bind_text(s, 2, day, -1, SQLITE_STATIC);
		int rc = sqlite3_step(s);
		int n = sqlite3_changes(st->db);
		sqlite3_reset(s);
		if (rc != SQLITE_DONE || store_commit(st) < 0) {
			store_rollback(st);
			total = -1;
			break;
		}
		total += n;
		if (n < 1000)
			break;
	}
	sqlite3_finalize(s);
	return total;
}

long long store_prune(struct store *st, int64_t cutoff_ms)
{
	static const char *const sql[] = {
		"DELETE FROM request_attempts WHERE (request_id, attempt) IN (SELECT request_id, attempt"
		" FROM request_attempts WHERE ts_start_ms < ?1 ORDER BY ts_start_ms LIMIT 1000)"
		" AND ?2 IS NOT NULL",
		"DELETE FROM request_log WHERE id IN (SELECT id FROM request_log WHERE ts_start_ms < ?1"
		" ORDER BY ts_start_ms LIMIT 1000) AND ?2 IS NOT NULL",
		"DELETE FROM tool_call_state WHERE rowid IN (SELECT rowid FROM tool_call_state"
		" WHERE ts_ms < ?1 ORDER BY ts_ms LIMIT 1000) AND ?2 IS NOT NULL",
		"DELETE FROM budget_spend WHERE day < ?2 AND ?1 IS NOT NULL",
		"DELETE FROM budget_alerts WHERE day < ?2 AND ?1 IS NOT NULL",
	};
	char day[11];
	store_utc_day(cutoff_ms, day);
	long long rows = 0;
	for (size_t i = 0; i < ARRAY_SIZE(sql); i++) {
		long long n = prune_table(st, sql[i], cutoff_ms, day);
		if (n < 0)
			return -1;
		if (i == 1)
			rows = n;
	}
	/* Give freed pages back to the file system (databases created with auto_vacuum = INCREMENTAL). */
	char err[256];
	exec_sql(st->db, "PRAGMA incremental_vacuum(2000)", err, sizeof(err));
	return rows;
}

int store_file_moved(struct store *st)
{
	int moved = 0;
	if (sqlite3_file_control(st->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) != SQLITE_OK)
		return 0;
	return moved;
}

size_t store_statement_count(void)
{
	return ST_COUNT;
}

const char *store_statement(size_t i)
{
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
