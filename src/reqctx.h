/* reqctx.h - the per-request context and the worker thread it runs on.
 *
 * Thread state, built once per worker thread: a struct worker holding the thread's libcurl handle,
 * its direct SQLite connection (plain CGI) and the reader connection it has borrowed (FastCGI).
 * Request state, reset for every accepted request: a struct request_ctx, begun and ended around
 * each request by server.c and handed down to routes, the api_* handlers and dispatch. This module
 * sits below all of them and calls none of them: it owns the request's log row (reqctx_commit_log)
 * and the process's reader connections (reqctx_reader, reqctx_reader_release).
 */
#ifndef ROUTER_REQCTX_H
#define ROUTER_REQCTX_H

#include <stdint.h>

#include "config.h"
#include "errors.h"
#include "http.h"
#include "reqlog.h"

struct store_opts;

struct worker {
	int index;
	struct upstream *up;
	struct store *st;            /* direct connection, plain CGI only (FastCGI: the writer) */
	int64_t st_retry_us;         /* when to try to open it again */
	int64_t moved_check_us;      /* next look at w->st for a deleted or replaced database file */
	struct reader *reader;       /* FastCGI: the process's reader connection this worker holds */
};

struct request_ctx {
	struct worker *w;
	struct config *cfg;          /* acquired for the whole request */
	struct request req;
	struct response resp;
	char id[48];                 /* "chatcmpl-..." : response id and X-Request-Id */
	int64_t t0_us;               /* clock_mono_us() at accept */
	int64_t t0_wall_ms;
	struct reqlog log;           /* filled by the handler; see reqctx_commit_log */
	char log_path[REQLOG_PATH_MAX + 1];  /* the row's copy of the path, cut to its bound */
};

/* The database options of the configuration; background (the writer thread) adds checkpointing,
 * the fallback file and retention. The strings are borrowed from cfg. */
void reqctx_store_opts(const struct config *cfg, struct store_opts *o, int background);

/* Starts a request on worker w: acquires the configuration, makes the request id (sent as
 * X-Request-Id), reads the request head from io and clears the log row. */
void reqctx_begin(struct request_ctx *rc, struct worker *w, const struct http_io *io);

/* Ends it: a request that got no response gets a 500; then everything reqctx_begin took is
 * released. The response's last bytes are not flushed here (finishing the FastCGI request, or the
 * CGI program's exit, does). */
void reqctx_end(struct request_ctx *rc);

/* Completes rc->log (id, times, latency, status) and writes it. A handler that logs calls this
 * after writing its response and before returning, while the strings the record borrows are
 * alive; the response's last bytes are flushed only afterwards. */
void reqctx_commit_log(struct request_ctx *rc);

/* Answers with the error e, records it in the log row and commits the row. e is borrowed and must
 * stay alive until this returns. */
void reqctx_refuse(struct request_ctx *rc, const struct rerr *e);

/* A connection this worker may read the database with (keys, budgets, tool-call state, model
 * health), or NULL while the database cannot be opened. Under FastCGI it is borrowed from the
 * process's readers and held until reqctx_reader_release: a caller never keeps it across a call
 * of that function (nor across an upstream call, before which the attempt releases it). */
struct store *reqctx_reader(struct request_ctx *rc);

/* Gives the connection reqctx_reader lent back to the process's readers (nothing to do under
 * plain CGI, or when none is held). reqctx_end calls it too. */
void reqctx_reader_release(struct request_ctx *rc);

/* Closes the connections worker w holds (its thread ends). */
void reqctx_worker_done(struct worker *w);

/* Closes the process's idle readers (the responder stops, its workers have ended). */
void reqctx_readers_close(void);

/* Whether this call's row can be recorded somewhere: a responder has room in its kept rows
 * (rowkeep.h); a plain CGI process finds the database or the fallback file writable. */
int reqctx_can_record(struct request_ctx *rc);

#endif
