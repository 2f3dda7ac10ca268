/* rowkeep.h - request-log rows that neither the database nor the JSONL fallback took (a read-only
 * or removed data directory, a full disk): kept in this process's memory, bounded, until one of
 * them does.
 *
 * A kept row is also written at once to stderr (the web server's error log) as one line marked
 * ROWKEEP_MARK followed by the row's JSON form, so that a process killed before its rows found a
 * home loses none: `llm-router replay --log FILE` imports such lines (exactly once, by request
 * id, like the fallback file). The writer thread of a FastCGI responder retries the kept rows
 * every second (the database first, then the fallback file); at a graceful stop whatever is still
 * kept is tried once more, and what remains is said in the log (its rows are in the error log).
 * When the memory is full (storage.kept_rows_max) nothing can record a call: rowkeep_full says so
 * and the chat handler refuses new calls (storage.when_unrecorded).
 *
 * Above the store and the fallback file (reqlog_jsonl.h); called by reqlog and logwriter.
 */
#ifndef ROUTER_ROWKEEP_H
#define ROUTER_ROWKEEP_H

#include <stddef.h>

#include "reqlog_row.h"

struct store;

#define ROWKEEP_MARK "llm-router unrecorded request-log row: "

/* The bound (storage.kept_rows_max); 0 keeps none. */
void rowkeep_set_max(long max_rows);
/* Keeps r (copied) and writes its marked line to stderr. Returns 0 when kept, -1 when the memory
 * is full (the row is then in the error log only). */
int rowkeep_keep(const struct reqlog *r);
size_t rowkeep_count(void);
/* No room for one more row. */
int rowkeep_full(void);
/* Writes the kept rows to st (when not NULL: one transaction), else appends them to the fallback
 * file; the rows written leave the memory. */
void rowkeep_flush(struct store *st, const char *jsonl_path);
/* At exit: the rows still kept are dropped from memory, with a log line saying that they are in
 * the error log only (their marked lines). */
void rowkeep_dump(void);
/* Imports the marked lines of a log file into st (a row whose request id is logged is skipped).
 * Returns 0, or -1 with a message in err (file unreadable, database failed: nothing imported). */
int rowkeep_import_log(struct store *st, const char *path, long long *imported, long long *already,
		       char *err, size_t errsz);

#endif
