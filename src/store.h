/* store.h - the SQLite database: connections, schema, and the statements of every job.
 *
 * The store is the only module that uses sqlite3 (src/store*.c; store_int.h says which file does
 * what). It knows tables, not requests: reqlog, logwriter (the writer thread), budget, health,
 * keys, the API handlers and the command-line tool call it; it calls nothing above it (it reads
 * the row description of reqlog_row.h, a leaf).
 *
 * A struct store is one connection with its prepared statements, used by one thread at a time.
 * A FastCGI responder process writes through its writer thread (logwriter.h), which owns the
 * process's write connection; the WAL of that connection is checkpointed in the background by the
 * checkpointer thread (store_wal.h), so no request waits for a checkpoint's fsync; only when the
 * WAL passes a hard cap (16 x checkpoint_pages, because a continuous stream of commits never lets
 * a background checkpoint reset it) does a checkpoint make writers pause for one sync. A plain
 * CGI process, the command-line tool and the tests use direct connections (store_open with
 * checkpoint_pages 0) with SQLite's own automatic checkpoints.
 */
#ifndef ROUTER_STORE_H
#define ROUTER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"
#include "reqlog_row.h"
#include "store_opts.h"

/* ---- connections (store.c), rows (store_reqlog.c) ---- */

/* Opens (creating the directory, file and schema when needed) a connection. With
 * checkpoint_pages > 0 (the writer's connection) it never checkpoints itself: its commits wake the
 * checkpointer thread. Returns NULL and a message in errbuf on failure. */
struct store *store_open(const struct store_opts *o, char *errbuf, size_t errsz);
void store_close(struct store *st);

/* For a connection that commits many rows per transaction (the writer thread's group commit):
 * each row's SAVEPOINT keeps the pages it changes in a statement journal, which SQLite spills to
 * a temporary file past 64 KB, one write per page and per page number (measured at 64 calls at
 * once: 7 of the writer's 10 writes per call). In memory it costs a few hundred KB at most. */
void store_statement_journal_in_memory(struct store *st);
/* A copy of o for a thread that outlives the configuration it came from: the paths are its own
 * (store_opts_free releases them). */
void store_opts_copy(struct store_opts *dst, const struct store_opts *o);
void store_opts_free(struct store_opts *o);
/* Inserts one request-log row with its attempts and tool-call state, and settles its budget
 * reservation, all or nothing (a SAVEPOINT, so it may run inside the caller's transaction). A row
 * whose request id is already logged changes nothing. Returns 0, or -1 with a message in errbuf
 * (no secret in it). */
int store_insert_reqlog(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz);
/* The same, telling whether the row was new: 1 inserted, 0 already logged (nothing changed), -1. */
int store_insert_reqlog_new(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz);
/* Whether the connection's database file was deleted or renamed since it was opened. */
int store_file_moved(struct store *st);
/* A write transaction (BEGIN IMMEDIATE) around several statements: replay batches, the writer's
 * group commit, a budget reservation. 0 or -1 (the _err forms say why in errbuf). */
int store_begin(struct store *st);
int store_commit(struct store *st);
void store_rollback(struct store *st);
int store_begin_err(struct store *st, char *errbuf, size_t errsz);
int store_commit_err(struct store *st, char *errbuf, size_t errsz);
/* After a failure: 1 when the connection should be dropped and opened again later (read-only,
 * I/O error, corruption, vanished file), 0 when another connection merely held the lock. */
int store_failed_for_good(struct store *st);
/* Maintenance (the JSONL replay, retention) writes beside the requests: in short transactions,
 * each holding the write lock for about STORE_PACE_HOLD_US at most, and a pause of
 * STORE_PACE_GAP_US after each, in which the request writers of every process that wait for the
 * lock (polling every 2 ms at most, store_schema.c) get it first. stop (borrowed, may be NULL) is
 * read between transactions: non-zero ends the job there. */
#define STORE_PACE_HOLD_US 3000
#define STORE_PACE_GAP_US 3000
struct store_pace {
	const int *stop;
	int64_t began_us;    /* when the current transaction began */
	int rows;            /* rows (or pages) for the next statement of a batched job: store_prune */
	int max_rows;
};
/* rows: what the first statement of a batched job takes, adapted after each transaction to the
 * time its statements took, up to max_rows. */
void store_pace_init(struct store_pace *p, const int *stop, int rows, int max_rows);
/* Begins a maintenance transaction (BEGIN IMMEDIATE). 0 or -1. */
int store_pace_begin(struct store *st, struct store_pace *p);
/* Whether the current transaction has held the lock for its share. */
int store_pace_due(const struct store_pace *p);
/* Commits, adapts p->rows to the time the transaction took, and pauses. 0 or -1 (rolled back). */
int store_pace_commit(struct store *st, struct store_pace *p);
/* Whether the job was asked to stop. */
int store_pace_stopped(const struct store_pace *p);
/* Retention: deletes request rows (with their attempts and tool state) that started before
 * cutoff_ms, and ledger days before its day, by the time indexes, in paced transactions (above)
 * of a few hundred rows. Returns the request rows deleted (also when stopped early), or -1. */
long long store_prune(struct store *st, int64_t cutoff_ms, const int *stop);
/* The kept state of one tool call of agent (toolstate.h; "" for an anonymous caller), or NULL:
 * state is kept per (agent, tool call id), so an agent never gets another's. New reference.
 * Read-only: any connection, e.g. one a worker opened with store_open for reading. */
json_t *store_tool_state(struct store *st, const char *agent, const char *tool_call_id);

/* ---- health, keys, reports (store_query.c) ---- */

/* Model health (cooldown, health.h): one row per model that failed lately. Shared by every
 * process through the database; each call is one short statement or transaction. */
struct health_row {
	const char *model;
	int64_t failures;            /* in the current window */
	int64_t window_start_ms;
	int64_t cooldown_until_ms;   /* 0 = not cooling down; past = a probe may go */
	int64_t probe_until_ms;      /* a probe is in flight until then */
	int tripped;                 /* store_health_failure started a cooldown */
};
/* Calls cb for every model with failures or a cooldown. Returns 0 or -1. */
int store_health_load(struct store *st, void (*cb)(void *ud, const struct health_row *h), void *ud);
/* Counts one failure (a window older than window_ms starts over); threshold failures in the
 * window, or a failure after a cooldown (a failed probe), start a cooldown of cooldown_ms.
 * Fills out with the new state. Returns 0 or -1. */
int store_health_failure(struct store *st, const char *model, int64_t now_ms, int64_t window_ms,
			 int64_t threshold, int64_t cooldown_ms, const char *error, struct health_row *out);
/* A success: the model is healthy again. Returns 0 or -1. */
int store_health_ok(struct store *st, const char *model, int64_t now_ms);
/* One model's row: 1 (out filled), 0 when it has none (healthy), -1 on a database error. */
int store_health_get(struct store *st, const char *model, struct health_row *out);
/* Claims the probe of a model whose cooldown has ended: returns 1 if this caller got it (no other
 * probe until until_ms), 0 if not, -1 on a database error. */
int store_health_claim(struct store *st, const char *model, int64_t now_ms, int64_t until_ms);

/* Agents' keys (keys.h): only the SHA-256 of a key is stored. */
int store_key_insert(struct store *st, const char *id, const char *agent, const char *hash,
		     int64_t now_ms);
/* 1 with agent, hash and revoked_ms (0 = not revoked) filled; 0 when unknown; -1 on error. */
int store_key_get(struct store *st, const char *id, char *agent, size_t agentsz, char hash[65],
		  int64_t *revoked_ms);
/* Calls cb for every key (the key cache's refresh). Returns 0, or -1 when the table cannot be
 * read (cb may have been called for some keys). */
int store_key_load(struct store *st,
		   void (*cb)(void *ud, const char *id, const char *agent, const char *hash,
			      int64_t created_ms, int64_t revoked_ms),
		   void *ud);
/* Inserts a key as a snapshot holds it (llm-router init); an id already there is kept. 0 or -1. */
int store_key_restore(struct store *st, const char *id, const char *agent, const char *hash,
		      int64_t created_ms, int64_t revoked_ms);
/* Number of keys revoked (0 or 1), -1 on error. */
int store_key_revoke(struct store *st, const char *id, int64_t now_ms);
int store_key_list(struct store *st,
		   void (*cb)(void *ud, const char *id, const char *agent, int64_t created_ms,
			      int64_t revoked_ms),
		   void *ud);

/* ---- the budget ledger (store_budget.c) ---- */

/* The budget ledger (budget.h decides; these are the statements). budget_spend holds, per UTC
 * day and scope ("tier:T3", "agent:name"), the committed spend and the outstanding reservations. */
/* Today's spend and reservations of one scope (0 when it has none). Returns 0 or -1. */
int store_budget_spend(struct store *st, const char *day, const char *scope, int64_t *spent,
		       int64_t *reserved);
/* Records a scope's budget (for the spend_today_* views). Returns 0 or -1. */
int store_budget_limit_set(struct store *st, const char *scope, int64_t budget_nusd);
/* Records an alert of level (a percentage) for a scope and day: 1 when this is the first of that
 * level that day, 0 when it was already recorded, -1 on error. With outbox the row waits in the
 * alert outbox (below) until its webhook is sent; without, it is never sent. */
int store_budget_alert(struct store *st, const char *day, const char *scope, int level,
		       int64_t now_ms, int64_t spent_nusd, int64_t budget_nusd, int outbox);

/* The alert outbox (alerts.h sends it): budget_alerts rows whose webhook is not sent yet. Each
 * call is one autocommit statement. */
struct alert_row {
	char day[11];
	char scope[192];
	int level;
	int64_t ts_ms, spent_nusd, limit_nusd;
	int attempts;                /* tries before this one */
};
/* Up to max unsent rows recorded since since_ms whose next try is due at now_ms, the most overdue
 * first. Returns how many, or -1. */
int store_alert_due(struct store *st, int64_t now_ms, int64_t since_ms, struct alert_row *rows,
		    int max);
/* Claims a due row for one POST: no other drainer takes it before until_ms. 1 claimed, 0 taken
 * or sent by another drainer meanwhile, -1 on error. */
int store_alert_claim(struct store *st, const struct alert_row *a, int64_t now_ms, int64_t until_ms);
/* The webhook took it. 0 or -1. */
int store_alert_sent(struct store *st, const struct alert_row *a, int64_t now_ms);
/* The POST failed: try again at next_try_ms. error is kept in the row (no secret in it). */
int store_alert_failed(struct store *st, const struct alert_row *a, int64_t next_try_ms,
		       const char *error);
/* When the earliest unsent row recorded since since_ms may be tried, or -1 when there is none (or
 * on error). */
int64_t store_alert_next(struct store *st, int64_t since_ms);
/* Reserves amount for request_id in the tier's scope and (when not NULL) the agent's, inside the
 * caller's transaction. Returns 0 or -1. */
int store_budget_hold(struct store *st, const char *request_id, const char *day,
		      const char *tier_scope, const char *agent_scope, int64_t amount_nusd,
		      int64_t now_ms);
/* Ends a reservation without spend (the request was never sent). Returns 0 or -1. */
int store_budget_release(struct store *st, const char *request_id);
/* Reclaims reservations made before before_ms (their responders died before the row): each is
 * charged its worst case with a row of its own, cost_source "reclaimed" (store_reqlog.c).
 * Returns how many, or -1. */
int store_budget_reclaim(struct store *st, int64_t before_ms);
/* Spend report (store_query.c) over [from_ms, to_ms) grouped by "tier", "agent", "model" or "day". */
struct report_row {
	const char *key;
	int64_t calls, input_tokens, output_tokens, cost_nusd, errors;
};
int store_report(struct store *st, int64_t from_ms, int64_t to_ms, const char *by,
		 void (*cb)(void *ud, const struct report_row *row), void *ud);

/* ---- stored responses of POST /v1/responses (store_responses.c) ---- */

struct stored_response {
	char *previous_id;      /* NULL when none */
	char *input_items;      /* JSON array */
	char *response;         /* JSON object */
};
/* Inserts (or replaces) response id of agent ('' for none). Returns 0 or -1. */
int store_response_put(struct store *st, const char *id, const char *agent, int64_t ts_ms,
		       const char *previous_id, const char *input_items, const char *response);
/* Reads response id of agent: 0 found (out filled, free with store_response_free), 1 not found
 * (another agent's is not found either), -1 on a database error. */
int store_response_get(struct store *st, const char *id, const char *agent,
		       struct stored_response *out);
void store_response_free(struct stored_response *r);
/* Deletes response id of agent: 1 deleted, 0 not found, -1 on a database error. */
int store_response_delete(struct store *st, const char *id, const char *agent);

/* ---- the operators' figures (store_metrics.c) ---- */

/* Inside a write transaction: sums up to max_rows request-log rows not yet counted into the
 * counters, hourly and daily figures. Returns the rows counted, or -1. */
long store_metrics_rollup(struct store *st, int max_rows);
/* Inside the transaction that deleted request-log rows (retention), after the delete. */
int store_metrics_after_prune(struct store *st);
/* Rollups of `batch` rows, each its own transaction, until none is left or max_batches ran.
 * Returns the rows counted, or -1. */
long store_metrics_catch_up(struct store *st, int batch, int max_batches);
/* Called by store_metrics_catch_up between a batch's read and its write, when set (tests). */
extern void (*store_metrics_between_hook)(struct store *st);
/* Appends a label value with Prometheus' escaping (backslash, double quote, newline). */
void store_metrics_escape(struct buf *out, const char *value);
/* Appends the samples of one family of counters (histograms: _bucket, _sum, _count) in
 * Prometheus' text format. Returns 0 or -1. */
int store_metrics_counters(struct store *st, const char *family, struct buf *out);
/* Arrays of objects, or NULL on a database error: hours from from_hour_ms (hour_ms, requests,
 * errors, fallbacks, cost_usd); one day's figures of kind "agent" (extra: the tier) or "model"
 * (extra: the provider); the newest rows; one day's budget alerts. */
json_t *store_metrics_hours(struct store *st, int64_t from_hour_ms);
json_t *store_metrics_daily(struct store *st, const char *day, const char *kind);
json_t *store_metrics_recent(struct store *st, int limit);
json_t *store_metrics_alerts(struct store *st, const char *day);
/* Calls cb for each successful routed row among the last `limit` rows. Returns 0 or -1. */
int store_metrics_latencies(struct store *st, int limit,
			    void (*cb)(void *ud, const char *model, double latency_ms, double ttft_ms),
			    void *ud);

/* ---- misc (store.c) ---- */

/* The UTC day of a time in ms, "YYYY-MM-DD". */
void store_utc_day(int64_t ms, char day[11]);

/* The statements the router prepares (for EXPLAIN QUERY PLAN tests), and the plan of one SQL
 * statement, one line per step, appended to out. */
/* SQLite's message for the last failed call on st ("" without one). */
const char *store_errmsg(struct store *st);
size_t store_statement_count(void);
const char *store_statement(size_t i);
int store_query_plan(struct store *st, const char *sql, struct buf *out);

/* The schema version of an open connection's database. */
int store_schema_version(struct store *st);

#endif
