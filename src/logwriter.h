/* logwriter.h - the writer thread of a FastCGI responder process: group commit.
 *
 * The worker threads of a responder write through one writer thread that owns the process's write
 * connection: a worker hands over a job (a request-log row, or a function such as a budget
 * reservation to run inside the transaction) and returns once it is committed; the jobs of
 * concurrent requests share one transaction (group commit). So the worker threads never contend
 * for the database lock among themselves, and the commit cost is shared under load. It also
 * starts the WAL checkpointer (store_wal.h). Maintenance (replay, retention) is not its job: it
 * runs beside it, on the maintenance thread (maint.h).
 *
 * logwriter sits above the store and calls it; the store calls nothing above it.
 */
#ifndef ROUTER_LOGWRITER_H
#define ROUTER_LOGWRITER_H

#include <stddef.h>

#include "reqlog_row.h"
#include "store.h"

/* Starts this process's writer and checkpointer threads. The database is opened lazily (and
 * reopened after failures), so this succeeds even when it cannot be opened yet. Returns 0 or -1. */
int logwriter_start(const struct store_opts *o);
/* Commits what is queued, then stops both threads. */
void logwriter_stop(void);
int logwriter_running(void);
/* Commits one request-log row through the writer, in one transaction with the jobs of concurrent
 * requests, and returns once it is committed to the WAL (0), or -1 with a message in errbuf when
 * the database failed (the caller then keeps the row elsewhere). r is borrowed until it returns. */
int logwriter_log(const struct reqlog *r, char *errbuf, size_t errsz);
/* Runs fn on the writer's connection inside the next group-commit transaction and returns once
 * that is committed: 0, or -1 (message in errbuf) when fn or the commit failed; fn failing fails
 * every job of its batch, so fn must fail only when the database does. ud is borrowed. */
int logwriter_run(int (*fn)(struct store *st, void *ud, char *errbuf, size_t errsz), void *ud,
		  char *errbuf, size_t errsz);

#endif
