/* store.h - the SQLite database: schema, migrations, the writer, WAL checkpoints.
 *
 * The only module that uses sqlite3. The worker threads of a FastCGI responder process write
 * through one writer thread (store_writer_start) that owns the process's write connection: a
 * worker hands its row over and returns once it is committed; rows of concurrent requests share
 * one transaction (group commit). So the worker threads never contend for the database lock among
 * themselves, and the commit cost is shared under load. A checkpointer thread with its own connection runs the WAL
 * checkpoints in the background, so no request waits for a checkpoint's fsync; only when the WAL
 * passes a hard cap (16 x checkpoint_pages, because a continuous stream of commits never lets a
 * background checkpoint reset it) does a checkpoint make writers pause for one sync.
 *
 * A plain CGI process, the command-line tool and the tests use a direct connection (store_open)
 * with SQLite's own automatic checkpoints.
 */
#ifndef ROUTER_STORE_H
#define ROUTER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "reqlog.h"

struct store_opts {
	const char *path;
	long busy_timeout_ms;
	int synchronous_full;
	long checkpoint_pages;   /* 0: SQLite's automatic checkpoints (direct connections) */
};

/* Current schema version (PRAGMA user_version). */
#define STORE_SCHEMA_VERSION 2

/* Opens (creating the directory, file and schema when needed) a connection. Returns NULL and a
 * message in errbuf on failure. */
struct store *store_open(const struct store_opts *o, char *errbuf, size_t errsz);
void store_close(struct store *st);
/* Inserts one request-log row (and its tool-call state, when it has some). Returns 0, or -1 with
 * a message in errbuf (no secret in it). */
int store_insert_reqlog(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz);
/* The kept state of one tool call (toolstate.h), or NULL. New reference. Read-only: any
 * connection, e.g. one a worker opened with store_open for reading. */
json_t *store_tool_state(struct store *st, const char *tool_call_id);

/* The schema version of an open connection's database. */
int store_schema_version(struct store *st);

/* Starts this process's writer and checkpointer threads. The database is opened lazily (and
 * reopened after failures), so this succeeds even when it cannot be opened yet. */
int store_writer_start(const struct store_opts *o);
/* Commits what is queued, then stops both threads. */
void store_writer_stop(void);
int store_writer_running(void);
/* Commits one request-log row through the writer, in one transaction with the rows of concurrent
 * requests, and returns once it is committed to the WAL (0), or -1 with a message in errbuf when
 * the database failed (the caller then keeps the row elsewhere). r is borrowed until it returns. */
int store_writer_log(const struct reqlog *r, char *errbuf, size_t errsz);

#endif
