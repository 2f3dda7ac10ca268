/* maint.h - the maintenance thread of a FastCGI responder process: the JSONL fallback imported
 * once the database takes rows again, and retention, beside the request path.
 *
 * The thread has its own database connection and never touches the writer's (logwriter.h): it
 * writes in short paced transactions (store_pace, store.h) that the request writers of every
 * process get in between, so a replay or a prune of any size never holds up a request by more
 * than one such transaction. It checks for a fallback file every MAINT_REPLAY_CHECK_MS and prunes
 * once an hour, the first time a minute after it starts. Plain CGI and the command-line tool run
 * the same replay and prune (reqlog_replay, store_prune) themselves.
 *
 * maint sits above the store and the fallback file (reqlog_jsonl.h) and calls both.
 */
#ifndef ROUTER_MAINT_H
#define ROUTER_MAINT_H

#include "store_opts.h"

#define MAINT_REPLAY_CHECK_MS 5000

/* Starts this process's maintenance thread: o->path, o->busy_timeout_ms, o->synchronous_full,
 * o->jsonl_path (NULL: no replay) and o->retention_days (0: no retention) are used (copied). The
 * database is opened when there is work, and again after a failure. Returns 0 or -1. */
int maint_start(const struct store_opts *o);
/* Stops it: a replay or prune under way ends after its current transaction (a replay's moved file
 * stays, and is imported first next time). Nothing when it does not run. */
void maint_stop(void);

#endif
