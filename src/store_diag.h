/* store_diag.h - the log line that says what to do when the file system refuses the database or
 * the fallback file (store_diag.c). Part of the store: it looks at SQLite's error and the files.
 */
#ifndef ROUTER_STORE_DIAG_H
#define ROUTER_STORE_DIAG_H

struct store;

/* After a write through st failed (or, with st NULL, opening the database at path failed): when
 * the file system is the cause - the database, its -wal or -shm, or its directory not writable by
 * this process (mode, another owner, immutable, a read-only mount), or a full disk - logs one line
 * naming the file and the fix (at most once a minute per process). Says nothing for a lock. */
void store_diagnose(struct store *st, const char *path);
/* The same for the JSONL fallback file at path after an append failed with errnum. */
void store_diagnose_file(const char *path, int errnum);

#endif
