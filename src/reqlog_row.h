/* reqlog_row.h - the request-log row: its struct, and the one table of its columns.
 *
 * Every writer and reader of the row walks reqlog_columns: the request_log table's CREATE TABLE
 * and INSERT (store_schema.c, store.c), the bindings (store_reqlog.c), and the JSONL fallback
 * line (reqlog_to_json, reqlog_from_json). A column is added in one place: an entry in
 * reqlog_columns (reqlog_row.c) with the schema version that adds it, and, in store_schema.c, a
 * migration that bumps the version (its ALTER TABLE comes from the entry). The attempts of a
 * request have their own table, reqlog_attempt_columns (rows of request_attempts, and the
 * "attempt_log" array of the JSONL line).
 *
 * All strings are borrowed from the request context (or from the JSON object they were read from)
 * and must stay valid while the row is used. No field may ever hold a secret.
 */
#ifndef ROUTER_REQLOG_ROW_H
#define ROUTER_REQLOG_ROW_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* One upstream attempt of a request (or a model skipped without one). */
struct attempt_log {
	int64_t ts_start_ms;
	const char *model;
	const char *provider;
	const char *upstream_model;
	const char *outcome;           /* "ok", "failed", "partial", "cancelled", "skipped" */
	int upstream_status;           /* HTTP status from the provider, 0 = none */
	int status;                    /* the status this failure maps to, 0 = none */
	const char *error_type;
	const char *error_code;
	const char *error_message;
	double latency_ms;             /* < 0 = no call */
	long retry_after_s;
	const char *upstream_request_id;
};

/* A row keeps at most this many bytes of the request's path. */
#define REQLOG_PATH_MAX 256

/* The day's spend of a row's tier and agent scopes right after the row's own budget settlement,
 * read in its transaction (budget_settled's warn check needs no read of its own then); valid = 0
 * when the row settled nothing or did not reach the database. */
struct reqlog_spent {
	int valid;
	int64_t nusd[2];               /* [0] the tier scope, [1] the agent scope (0: none) */
};

struct reqlog {
	const char *request_id;
	int64_t ts_start_ms;
	int64_t ts_end_ms;
	const char *agent;             /* NULL = anonymous */
	const char *tier;
	const char *task;
	const char *requested_model;
	const char *model;             /* public id of the model that answered (or was tried last) */
	const char *provider;
	const char *upstream_model;
	int stream;
	int status;                    /* HTTP status sent to the client */
	const char *error_type;        /* NULL on success */
	const char *error_code;
	const char *error_message;
	const char *finish_reason;
	int64_t input_tokens;          /* -1 = unknown */
	int64_t output_tokens;
	int64_t cached_tokens;
	int64_t cache_write_tokens;
	int64_t reasoning_tokens;
	int64_t cost_nusd;
	const char *cost_source;       /* "pricing", "provider", "none" */
	double latency_ms;
	double ttft_ms;                /* < 0 = not applicable */
	double upstream_ms;            /* < 0 = no upstream call */
	double overhead_ms;
	const char *dropped_params;    /* comma-separated, NULL = none */
	const char *upstream_request_id;
	int attempts;                  /* upstream calls made */
	int client_gone;
	const char *fallback_from;     /* comma-separated models that failed or were skipped first */
	int partial;                   /* a stream that failed after content reached the client */
	const char *method;            /* the request's method and path (at most REQLOG_PATH_MAX) */
	const char *path;
	/* Rows of request_attempts (SQLite) or the "attempt_log" array (JSONL). */
	const struct attempt_log *attempt_log;
	size_t n_attempt_log;
	/* Tool-call state to keep for the conversation's next turn (toolstate.h): an object of
	 * tool_call_id -> state, NULL for none. Rows of tool_call_state (SQLite, written in the row's
	 * transaction) or the "tool_state" object (JSONL). Borrowed. */
	const json_t *tool_state;
	/* Out, when not NULL: see struct reqlog_spent. Never part of the row itself. */
	struct reqlog_spent *spent_after;
};

/* How a field is stored, and which value of it means "none" (SQL NULL, JSON null). */
enum reqlog_type {
	COL_TEXT,       /* const char *; NULL = none */
	COL_TEXT_SET,   /* const char *; NULL or "" = none */
	COL_INT,        /* int, always a value */
	COL_INT64,      /* int64_t, always a value */
	COL_COUNT,      /* int64_t; < 0 = none (unknown) */
	COL_MS,         /* double; < 0 = none */
	COL_POS_INT,    /* int; <= 0 = none */
	COL_POS_LONG,   /* long; <= 0 = none */
	COL_ATTEMPTS,   /* attempt_log + n_attempt_log: rows of request_attempts */
	COL_JSON,       /* const json_t * object: rows of tool_call_state */
	COL_SQL_ONLY,   /* not a field: a column SQLite keeps by itself (id, generated columns) */
};

/* Column flags. */
#define COL_REQUIRED 1u       /* a JSONL line without it is not a record (text: not empty either) */
#define COL_DEFAULT_START 2u  /* read as missing: the row's ts_start_ms */

struct reqlog_col {
	const char *name;       /* the SQL column and the JSON key */
	enum reqlog_type type;
	size_t off;             /* offsetof the field in its struct */
	const char *sql;        /* the column's SQL type and constraints; NULL = not a column of the table */
	int since;              /* schema version that added the column to the table */
	unsigned flags;
	const char *dflt;       /* COL_TEXT: the value read when missing or null */
};

extern const struct reqlog_col reqlog_columns[];
extern const size_t reqlog_n_columns;
extern const struct reqlog_col reqlog_attempt_columns[];
extern const size_t reqlog_attempt_n_columns;

/* A column's value as both SQL and JSON store it. */
enum reqlog_kind { VAL_NULL, VAL_INT, VAL_REAL, VAL_TEXT };
struct reqlog_val {
	enum reqlog_kind kind;
	int64_t i;
	double d;
	const char *s;          /* borrowed from the row */
};

/* The value of a scalar column (not COL_ATTEMPTS, COL_JSON, COL_SQL_ONLY) of row (a struct reqlog
 * or a struct attempt_log, per the column's table). */
void reqlog_col_get(const struct reqlog_col *c, const void *row, struct reqlog_val *v);
/* Sets a scalar column from a value; VAL_NULL (or a value of the wrong kind) sets the column's
 * "none" (or its default: dflt, COL_DEFAULT_START with start). Strings stay borrowed. */
void reqlog_col_set(const struct reqlog_col *c, void *row, const struct reqlog_val *v, int64_t start);

void reqlog_init(struct reqlog *r);
/* The record as a JSON object (the JSONL fallback format). New reference. */
json_t *reqlog_to_json(const struct reqlog *r);
/* Reads a JSONL record back (strings and tool_state borrowed from o). *attempts is allocated when
 * the record has attempts (free it after use). Returns 0, or -1 when o is not a record. */
int reqlog_from_json(const json_t *o, struct reqlog *r, struct attempt_log **attempts);

#endif
