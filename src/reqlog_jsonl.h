/* reqlog_jsonl.h - the JSONL fallback file of the request log: append a row, replay the file.
 *
 * One line per row, the row's JSON form (reqlog_row.h). Appends from any thread or process are
 * whole lines; a replay imports each row exactly once.
 */
#ifndef ROUTER_REQLOG_JSONL_H
#define ROUTER_REQLOG_JSONL_H

#include "reqlog_row.h"

struct store;

/* Appends r as one line to the file at path (creating the file, never its directory). A write that
 * falls short (a full disk) is undone: the file is cut back to its size before the append, under
 * the appenders' lock. Returns 0, or -1 with a message in errbuf. */
int reqlog_jsonl_append(const char *path, const struct reqlog *r, char *errbuf, size_t errsz);
/* The same for a row already in its JSON form (len bytes, no newline). */
int reqlog_jsonl_append_line(const char *path, const char *json, size_t len, char *errbuf,
			     size_t errsz);

struct replay_stats {
	long long imported, already, malformed, files;
	char err[512];    /* why the database failed, when it did ("" otherwise) */
};
/* Imports the JSONL fallback file into the database, exactly once: the file is moved aside under
 * the appenders' lock (new rows go to a new file), its rows are committed (a row whose request id
 * is already logged is skipped, its budget not counted twice), and only then is it deleted. A
 * replay interrupted half-way (a crash, a failed database, stop) leaves the moved file, which the
 * next replay imports first; while such a file is left, no new one is moved aside (a database
 * that cannot take rows leaves one moved file at most). Two processes never import the same file
 * at once, and nobody waits for another's import: a file being imported is left to its importer.
 * The rows go in paced transactions (store_pace, store.h) that request writers get in between.
 * stop (borrowed, may be NULL): non-zero ends the replay between two transactions. Returns 0, or
 * -1 when a row could not be committed (the file stays for the next attempt). */
int reqlog_replay(struct store *st, const char *jsonl_path, const int *stop,
		  struct replay_stats *stats);
/* reqlog_replay for an operator's command: a file another process is importing is waited for
 * (its importer's lock), so that on return every row that was in the fallback file when it was
 * called is in the database, whoever imported it. The same returns; stats add up the passes. */
int reqlog_replay_wait(struct store *st, const char *jsonl_path, struct replay_stats *stats);
/* Whether there is anything to replay (the file, or one left over). Cheap: no database. */
int reqlog_replay_pending(const char *jsonl_path);
/* The rows waiting in the fallback file and in any file left from an interrupted replay. */
long long reqlog_jsonl_pending_rows(const char *jsonl_path);

#endif
