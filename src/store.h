/* store.h - the SQLite database: schema, migrations, per-thread connections, WAL checkpoints.
 *
 * The only module that uses sqlite3. Each worker thread opens its own connection (struct store)
 * with prepared statements that live as long as the thread. The database runs in WAL mode with
 * automatic checkpoints disabled on worker connections: a background checkpointer thread per
 * process (store_checkpointer_start) runs them, woken when the WAL grows past the configured size,
 * so no request ever waits for a checkpoint's fsync. Every write is one short transaction.
 */
#ifndef ROUTER_STORE_H
#define ROUTER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "reqlog.h"

struct store_opts {
	const char *path;
	long busy_timeout_ms;
	int synchronous_full;
	long checkpoint_pages;
};

/* Current schema version (PRAGMA user_version). */
#define STORE_SCHEMA_VERSION 1

/* Opens (creating the directory, file and schema when needed) a connection. Returns NULL and a
 * message in errbuf on failure. */
struct store *store_open(const struct store_opts *o, char *errbuf, size_t errsz);
void store_close(struct store *st);
/* Inserts one request-log row. Returns 0, or -1 with a message in errbuf (no secret in it). */
int store_insert_reqlog(struct store *st, const struct reqlog *r, char *errbuf, size_t errsz);
/* The schema version of an open connection's database. */
int store_schema_version(struct store *st);

/* Starts / stops this process's background checkpointer. */
int store_checkpointer_start(const struct store_opts *o);
void store_checkpointer_stop(void);

#endif
