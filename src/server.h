/* server.h - responder process lifecycle and the per-request context.
 *
 * Process state, built once: the configuration (reloadable, see config.h), the libcurl global
 * state and the WAL checkpointer. Thread state, built once per worker thread: a struct worker
 * holding the thread's libcurl handle and SQLite connection. Request state, reset for every
 * accepted request: a struct request_ctx.
 */
#ifndef ROUTER_SERVER_H
#define ROUTER_SERVER_H

#include <stdint.h>

#include "config.h"
#include "http.h"
#include "reqlog.h"

struct worker {
	int index;
	struct upstream *up;
	struct store *st;            /* direct connection, plain CGI only (FastCGI: the writer) */
	int64_t st_retry_us;         /* when to try to open it again */
	struct store *reader;        /* read connection of this thread (FastCGI), opened on demand */
	int64_t reader_retry_us;
	int64_t moved_check_us;      /* next look for a deleted or replaced database file */
};

struct request_ctx {
	struct worker *w;
	struct config *cfg;          /* acquired for the whole request */
	struct request req;
	struct response resp;
	char id[48];                 /* "chatcmpl-..." : response id and X-Request-Id */
	int64_t t0_us;               /* clock_mono_us() at accept */
	int64_t t0_wall_ms;
	struct reqlog log;           /* filled by the handler; see server_commit_log */
};

/* Completes rc->log (id, times, latency, status) and writes it. A handler that logs calls this
 * after writing its response and before returning, while the strings the record borrows are
 * alive; the response's last bytes are flushed only afterwards. */
void server_commit_log(struct request_ctx *rc);

/* A connection this worker may read the database with (tool-call state), or NULL while the
 * database cannot be opened. */
struct store *server_reader(struct request_ctx *rc);

/* Serves FastCGI requests on listen_fd with the configured number of worker threads until
 * SIGTERM/SIGINT/SIGUSR1; in-flight requests finish first. Returns the process exit code. */
int server_run_fastcgi(int listen_fd);
/* Serves the one request of a plain CGI invocation. Returns the process exit code. */
int server_run_cgi(void);

#endif
