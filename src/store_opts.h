/* store_opts.h - how a database connection is opened (store.h), and the schema version it
 * migrates to. A header of its own so that the lowest store files need nothing above them.
 */
#ifndef ROUTER_STORE_OPTS_H
#define ROUTER_STORE_OPTS_H

/* What store_open may create when the database file is missing (store.h: the first-start rule). */
enum store_create {
	STORE_CREATE_ANY,         /* the directory, the file and the schema (llm-router init, tests) */
	STORE_CREATE_FIRST,       /* the file, only on a first start; never the directory (the router) */
	STORE_CREATE_FIRST_DIR,   /* the same, and the directory when it is missing (keys create) */
	STORE_CREATE_NONE,        /* nothing: the file must exist */
};

struct store_opts {
	const char *path;
	long busy_timeout_ms;
	int synchronous_full;
	long checkpoint_pages;   /* 0: SQLite's automatic checkpoints (direct connections) */
	const char *jsonl_path;  /* maint: the JSONL fallback to replay when the database is back */
	long retention_days;     /* maint: prune rows older than this (0 = never) */
	enum store_create create;
	const char *fallback_path; /* the JSONL fallback, which marks a directory in use (FIRST*) */
};

/* Current schema version (PRAGMA user_version). */
#define STORE_SCHEMA_VERSION 9

#endif
