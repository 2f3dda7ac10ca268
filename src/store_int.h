/* store_int.h - private to src/store*.c: the connection, its prepared statements and the helpers
 * the store files share. Nothing else includes it, nor sqlite3.h.
 *
 * The files, from the bottom: store_schema.c (open a raw connection: pragmas, busy handler,
 * migrations), store_wal.c (the WAL hook and the checkpointer thread), store.c (struct store: the
 * prepared statements, bind/step helpers, transactions), then the statements by job:
 * store_budget.c (the budget ledger and the alert outbox), store_reqlog.c (request-log rows, which
 * settle their budget, and retention), store_query.c (health, keys, reports); store_diag.c (which
 * file the process cannot write, for the log: store_diag.h) sits beside store.c, which calls it
 * when a connection cannot be opened. Each file calls only the ones before it.
 * The public declarations are in store.h (store_opts.h, store_wal.h for the lowest files).
 */
#ifndef ROUTER_STORE_INT_H
#define ROUTER_STORE_INT_H

#include <sqlite3.h>
#include <stdarg.h>

#include "reqlog_row.h"
#include "store_opts.h"

/* A WAL past this many times checkpoint_pages gets a RESTART checkpoint (and is cut back to it). */
#define STORE_WAL_CAP_FACTOR 16

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
	ST_ALERT_DUE,
	ST_ALERT_CLAIM,
	ST_ALERT_SENT,
	ST_ALERT_FAILED,
	ST_ALERT_NEXT,
	/* Transaction control, prepared once: every row of the writer's group commit runs them. */
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SAVEPOINT_ROW,
	ST_RELEASE_ROW,
	ST_ROLLBACK_TO_ROW,
	ST_COUNT
};

/* Used by one thread at a time (SQLITE_OPEN_NOMUTEX). */
struct store {
	sqlite3 *db;
	sqlite3_stmt *stmt[ST_COUNT];
};

/* Steps one of the transaction-control statements (ST_BEGIN...ST_ROLLBACK_TO_ROW): 0, or -1 with
 * SQLite's message in errbuf. */
int store_tx_step(struct store *st, int which, char *errbuf, size_t errsz);

/* ---- store_schema.c ---- */

/* sqlite3_exec with the message in errbuf. Returns 0 or -1. */
int store_exec(sqlite3 *db, const char *sql, char *errbuf, size_t errsz);
/* PRAGMA user_version, or -1. */
int store_user_version(sqlite3 *db);
/* A connection with the pragmas set and the schema migrated to STORE_SCHEMA_VERSION, or NULL
 * with a message in errbuf. No WAL hook (store_wal_attach). */
sqlite3 *store_db_open(const struct store_opts *o, char *errbuf, size_t errsz);

/* ---- store_wal.c ---- */

/* On a connection whose commits the checkpointer thread follows (o->checkpoint_pages > 0):
 * no automatic checkpoints, and a WAL hook that wakes the checkpointer. */
void store_wal_attach(sqlite3 *db, const struct store_opts *o);

/* ---- store.c ---- */

/* Binds the variadic arguments to statement `which`, one per letter of types: 't' const char *
 * (NULL binds NULL, the text stays borrowed until store_reset), 'i' int, 'I' int64_t. Returns the
 * statement for the caller to step and read; then store_reset. */
sqlite3_stmt *store_bind(struct store *st, int which, const char *types, ...);
sqlite3_stmt *store_vbind(struct store *st, int which, const char *types, va_list ap);
/* Resets s and clears its bindings (so no reader keeps a snapshot). */
void store_reset(sqlite3_stmt *s);
/* Binds, steps once, resets: the rows the statement changed (>= 0), or -1 on an error. */
int store_run(struct store *st, int which, const char *types, ...);
/* Binds a request-log value (reqlog_row.h) as parameter i. */
void store_bind_val(sqlite3_stmt *s, int i, const struct reqlog_val *v);

/* ---- store_budget.c (for settling a row's cost in store_reqlog.c) ---- */

/* Adds to one scope's ledger of a day. Returns 0 or -1. */
int store_spend_add(struct store *st, const char *day, const char *scope, int64_t spent,
		    int64_t reserved, int requests);
/* Ends request_id's reservation, if it still has one: its amount leaves the reserved sums.
 * Returns 1 with day/scopes/amount filled, 0 when there was none, -1 on error. */
int store_reservation_end(struct store *st, const char *request_id, char day[11], char *tier_scope,
			  char *agent_scope, size_t scopesz, int64_t *amount);

#endif
