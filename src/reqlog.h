/* reqlog.h - one request-log record per call, written to SQLite (store.c) and, when the database
 * cannot take it, appended to the JSONL fallback file so that no record is lost.
 *
 * All strings are borrowed from the request context and must stay valid until reqlog_write
 * returns. No field may ever hold a secret.
 */
#ifndef ROUTER_REQLOG_H
#define ROUTER_REQLOG_H

#include <jansson.h>
#include <stdint.h>

struct store;

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
	const struct attempt_log *attempt_log;
	size_t n_attempt_log;
	/* Not part of the row: tool-call state to keep for the conversation's next turn
	 * (toolstate.h), written in the same transaction; NULL for none. */
	const json_t *tool_state;
};

void reqlog_init(struct reqlog *r);
/* The record as a JSON object (the JSONL fallback format). */
json_t *reqlog_to_json(const struct reqlog *r);
/* Writes the record: through st when it is not NULL, else through the process's writer thread
 * (store_writer_log) when it runs; when that fails, appends it to the JSONL file at jsonl_path.
 * Returns 0 if the record is safe somewhere, -1 if it was lost. */
int reqlog_write(struct store *st, const char *jsonl_path, const struct reqlog *r);

/* Reads a JSONL record back (strings borrowed from o). *attempts is allocated when the record
 * has attempts (free it after use). Returns 0, or -1 when o is not a record. */
int reqlog_from_json(const json_t *o, struct reqlog *r, struct attempt_log **attempts);

struct replay_stats {
	long long imported, already, malformed, files;
};
/* Imports the JSONL fallback file into the database, exactly once: the file is moved aside under
 * the appenders' lock (new rows go to a new file), its rows are committed (a row whose request id
 * is already logged is skipped, its budget not counted twice), and only then is it deleted. A
 * replay interrupted half-way leaves the moved file, which the next replay imports again; two
 * processes never import the same file at once (flock). Returns 0, or -1 when a row could not be
 * committed (the file stays for the next attempt). */
int reqlog_replay(struct store *st, const char *jsonl_path, struct replay_stats *stats);

#endif
