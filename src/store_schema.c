/* store_schema.c - opening the database file: pragmas, the busy handler and schema migrations.
 *
 * Migrations run inside BEGIN IMMEDIATE and re-read user_version there, so several processes
 * starting at once apply each migration exactly once. Migration i brings the schema from version i
 * to i+1; a released migration never changes. The request_log table's columns are not written
 * here: migration 0 creates the table from the columns of reqlog_columns (reqlog_row.h) with
 * since = 1, and every later migration first adds the columns whose since is its new version
 * (ALTER TABLE ... ADD COLUMN), so the text a database was created with stays the same.
 */
#include "store_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "util.h"

/* What migration i runs after the request_log columns of version i + 1. */
static const char *const migrations[] = {
	/* 0 -> 1: the request log. */
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
	/* 4 -> 5: bounds on money and counts (cost_nusd >= 0 always). SQLite cannot add a CHECK to an
	 * existing table, and rebuilding request_log would copy the whole log under every starting
	 * process's BEGIN IMMEDIATE: BEFORE INSERT/UPDATE triggers that RAISE(ABORT) hold the same
	 * rule on old and new databases alike (the row then goes to the JSONL fallback, never half
	 * in). The code clamps first (USAGE_COUNT_MAX, COST_NUSD_MAX): these are the last line, on
	 * cost_nusd (0 .. one million USD) and the sign of the counts.
	 * budget_spend's spend is never negative (its insert carries negative reservation deltas into
	 * its upsert, so reserved_nusd is left to the ledger's invariant). */
	"CREATE TRIGGER request_log_bounds_insert BEFORE INSERT ON request_log"
	"  WHEN NEW.cost_nusd NOT BETWEEN 0 AND 1000000000000000"
	"    OR NEW.input_tokens < -1"
	"    OR NEW.output_tokens < -1"
	"    OR NEW.cached_tokens < -1"
	"    OR NEW.cache_write_tokens < -1"
	"    OR NEW.reasoning_tokens < -1"
	"  BEGIN SELECT RAISE(ABORT, 'request_log: cost_nusd out of range or a negative token count'); END;"
	"CREATE TRIGGER request_log_bounds_update BEFORE UPDATE ON request_log"
	"  WHEN NEW.cost_nusd NOT BETWEEN 0 AND 1000000000000000"
	"    OR NEW.input_tokens < -1"
	"    OR NEW.output_tokens < -1"
	"    OR NEW.cached_tokens < -1"
	"    OR NEW.cache_write_tokens < -1"
	"    OR NEW.reasoning_tokens < -1"
	"  BEGIN SELECT RAISE(ABORT, 'request_log: cost_nusd out of range or a negative token count'); END;"
	"CREATE TRIGGER budget_spend_bounds_insert BEFORE INSERT ON budget_spend"
	"  WHEN NEW.spent_nusd < 0"
	"  BEGIN SELECT RAISE(ABORT, 'budget_spend: negative spend'); END;"
	"CREATE TRIGGER budget_spend_bounds_update BEFORE UPDATE ON budget_spend"
	"  WHEN NEW.spent_nusd < 0"
	"  BEGIN SELECT RAISE(ABORT, 'budget_spend: negative spend'); END;",
	/* 5 -> 6: tool-call state keyed by (agent, tool_call_id), so that one agent cannot pull
	 * another's reasoning into its request by naming its tool-call id. Anonymous callers are
	 * agent ''. Kept state is given the agent of the request that produced it. */
	"CREATE TABLE tool_call_state_v6 ("
	"  agent TEXT NOT NULL DEFAULT '',"
	"  tool_call_id TEXT NOT NULL,"
	"  request_id TEXT NOT NULL,"
	"  state TEXT NOT NULL,"
	"  ts_ms INTEGER NOT NULL,"
	"  PRIMARY KEY (agent, tool_call_id)"
	");"
	"INSERT INTO tool_call_state_v6 (agent, tool_call_id, request_id, state, ts_ms)"
	"  SELECT coalesce((SELECT r.agent FROM request_log r WHERE r.request_id = t.request_id), ''),"
	"  t.tool_call_id, t.request_id, t.state, t.ts_ms FROM tool_call_state t;"
	"DROP TABLE tool_call_state;"
	"ALTER TABLE tool_call_state_v6 RENAME TO tool_call_state;"
	"CREATE INDEX tool_call_state_ts ON tool_call_state(ts_ms);",
	/* 6 -> 7: the alert outbox. A budget_alerts row is its alert until the webhook has taken it:
	 * next_try_ms is when a drainer may next try it (NULL: not for the webhook, i.e. recorded with
	 * no budget.webhook_url, or by an older router whose own sender handled it), a drainer claims
	 * a row by moving next_try_ms past its POST (a lease), sent_ms is set when the webhook
	 * answered 2xx, attempts and last_error say how the tries went. */
	"ALTER TABLE budget_alerts ADD COLUMN sent_ms INTEGER;"
	"ALTER TABLE budget_alerts ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE budget_alerts ADD COLUMN next_try_ms INTEGER;"
	"ALTER TABLE budget_alerts ADD COLUMN last_error TEXT;"
	"CREATE INDEX budget_alerts_outbox ON budget_alerts(next_try_ms) WHERE sent_ms IS NULL;",
	/* 7 -> 8: the request's method and path on its row (requests refused before routing are
	 * logged too), and the operators' figures (store_metrics.c): request_log rows up to
	 * metrics_state.rolled_id are summed into all-time counters (a family, its labels in
	 * Prometheus' text form, kind 0 a total, 1 a histogram bucket of upper bound le, 2 a
	 * histogram's sum, 3 its count), per-hour and per-day figures. Sums never go down: retention
	 * deletes only rows already summed. rolls counts the moves of rolled_id (it goes down after
	 * a prune), so that a batch summed outside the write lock is added only when no move came
	 * in between. */
	"CREATE TABLE metrics_counters ("
	"  family TEXT NOT NULL,"
	"  labels TEXT NOT NULL,"
	"  kind INTEGER NOT NULL,"
	"  le REAL NOT NULL,"
	"  value REAL NOT NULL DEFAULT 0,"
	"  PRIMARY KEY (family, labels, kind, le)"
	") WITHOUT ROWID;"
	"CREATE TABLE metrics_hourly ("
	"  hour_ms INTEGER PRIMARY KEY,"
	"  requests INTEGER NOT NULL DEFAULT 0,"
	"  errors INTEGER NOT NULL DEFAULT 0,"
	"  fallbacks INTEGER NOT NULL DEFAULT 0,"
	"  cost_nusd INTEGER NOT NULL DEFAULT 0"
	");"
	"CREATE TABLE metrics_daily ("
	"  day TEXT NOT NULL,"
	"  kind TEXT NOT NULL,"
	"  name TEXT NOT NULL,"
	"  extra TEXT NOT NULL,"
	"  requests INTEGER NOT NULL DEFAULT 0,"
	"  errors INTEGER NOT NULL DEFAULT 0,"
	"  input_tokens INTEGER NOT NULL DEFAULT 0,"
	"  output_tokens INTEGER NOT NULL DEFAULT 0,"
	"  cost_nusd INTEGER NOT NULL DEFAULT 0,"
	"  PRIMARY KEY (day, kind, name, extra)"
	") WITHOUT ROWID;"
	"CREATE TABLE metrics_state ("
	"  id INTEGER PRIMARY KEY CHECK (id = 1),"
	"  rolled_id INTEGER NOT NULL,"
	"  rolls INTEGER NOT NULL DEFAULT 0"
	");"
	"INSERT INTO metrics_state (id, rolled_id) VALUES (1, 0);",
	/* 8 -> 9: stored responses of POST /v1/responses (store true): the Response object as last
	 * sent and the request's input items, what previous_response_id continues; visible to the
	 * agent that made them ('' for anonymous callers); retention deletes them with the log. */
	"CREATE TABLE responses ("
	"  id TEXT PRIMARY KEY,"
	"  agent TEXT NOT NULL,"
	"  ts_ms INTEGER NOT NULL,"
	"  previous_id TEXT,"
	"  input_items TEXT NOT NULL,"
	"  response TEXT NOT NULL"
	");"
	"CREATE INDEX responses_ts ON responses(ts_ms);",
};

_Static_assert(ARRAY_SIZE(migrations) == STORE_SCHEMA_VERSION,
	       "STORE_SCHEMA_VERSION is the number of migrations");

int store_exec(sqlite3 *db, const char *sql, char *errbuf, size_t errsz)
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

int store_user_version(sqlite3 *db)
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

/* The SQL of migration v: the request_log columns of version v + 1, then migrations[v]. */
static void migration_sql(int v, struct buf *out)
{
	int first = 1;
	for (size_t i = 0; i < reqlog_n_columns; i++) {
		const struct reqlog_col *c = &reqlog_columns[i];
		if (!c->sql || c->since != v + 1)
			continue;
		if (v == 0)
			buf_printf(out, "%s  %s %s", first ? "CREATE TABLE request_log (" : ",", c->name, c->sql);
		else
			buf_printf(out, "ALTER TABLE request_log ADD COLUMN %s %s;", c->name, c->sql);
		first = 0;
	}
	if (v == 0)
		buf_puts(out, ");");
	buf_puts(out, migrations[v]);
}

static void rollback(sqlite3 *db)
{
	char ignore[8];
	store_exec(db, "ROLLBACK", ignore, sizeof(ignore));
}

static int migrate(sqlite3 *db, char *errbuf, size_t errsz)
{
	if (store_user_version(db) == STORE_SCHEMA_VERSION)
		return 0;
	if (store_exec(db, "BEGIN IMMEDIATE", errbuf, errsz) < 0)
		return -1;
	int v = store_user_version(db);
	if (v < 0 || v > STORE_SCHEMA_VERSION) {
		snprintf(errbuf, errsz, "database schema version %d is newer than this router (%d)", v,
			 STORE_SCHEMA_VERSION);
		rollback(db);
		return -1;
	}
	for (; v < STORE_SCHEMA_VERSION; v++) {
		struct buf sql;
		buf_init(&sql, BUF_UNLIMITED);
		migration_sql(v, &sql);
		int rc = store_exec(db, buf_str(&sql), errbuf, errsz);
		buf_free(&sql);
		if (rc < 0) {
			rollback(db);
			return -1;
		}
	}
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v);
	if (store_exec(db, sql, errbuf, errsz) < 0 || store_exec(db, "COMMIT", errbuf, errsz) < 0) {
		rollback(db);
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

sqlite3 *store_db_open(const struct store_opts *o, char *errbuf, size_t errsz)
{
	/* store_open decided what may be created (the first-start rule): only STORE_CREATE_ANY
	 * makes the directory and the file. */
	int create = o->create == STORE_CREATE_ANY;
	if (create && mkdir_parents(o->path) < 0) {
		snprintf(errbuf, errsz, "cannot create the directory of %s: %s", o->path, strerror(errno));
		return NULL;
	}
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(o->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
				 (create ? SQLITE_OPEN_CREATE : 0), NULL);
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
	if (store_user_version(db) == 0)
		store_exec(db, "PRAGMA auto_vacuum = INCREMENTAL", errbuf, errsz);
	if (store_exec(db, sql, errbuf, errsz) < 0 || migrate(db, errbuf, errsz) < 0) {
		if ((sqlite3_extended_errcode(db) & 0xff) == SQLITE_NOTADB)
			snprintf(errbuf, errsz, "%s is not an SQLite database (replaced by another file?): "
				 "restore it from a backup; for a deliberate fresh start move it aside and run "
				 "'llm-router init'", o->path);
		sqlite3_close(db);
		return NULL;
	}
	if (o->checkpoint_pages > 0) {
		/* A WAL that starts over is reused in place (appending to a file that was truncated
		 * allocates blocks on the request path); only a WAL past the cap is cut back to it. */
		snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit=%lld",
			 (long long)o->checkpoint_pages * 4096 * STORE_WAL_CAP_FACTOR);
		store_exec(db, sql, errbuf, errsz);
	}
	return db;
}
