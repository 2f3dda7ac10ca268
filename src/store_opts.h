/* store_opts.h - how a database connection is opened (store.h), and the schema version it
 * migrates to. A header of its own so that the lowest store files need nothing above them.
 */
#ifndef ROUTER_STORE_OPTS_H
#define ROUTER_STORE_OPTS_H

struct store_opts {
	const char *path;
	long busy_timeout_ms;
	int synchronous_full;
	long checkpoint_pages;   /* 0: SQLite's automatic checkpoints (direct connections) */
	const char *jsonl_path;  /* maint: the JSONL fallback to replay when the database is back */
	long retention_days;     /* maint: prune rows older than this (0 = never) */
};

/* Current schema version (PRAGMA user_version). */
#define STORE_SCHEMA_VERSION 6

#endif
