/* reqlog.h - one request-log record per call, written to SQLite and, when the database cannot
 * take it, appended to the JSONL fallback file so that no record is lost.
 *
 * The row itself (struct reqlog, its columns, its JSON form) is reqlog_row.h; the fallback file
 * and its replay are reqlog_jsonl.h; the writer thread of a FastCGI responder is logwriter.h.
 * All strings are borrowed from the request context and must stay valid until reqlog_write
 * returns. No field may ever hold a secret.
 */
#ifndef ROUTER_REQLOG_H
#define ROUTER_REQLOG_H

#include "logwriter.h"
#include "reqlog_jsonl.h"
#include "reqlog_row.h"

struct store;

/* Writes the record: through st when it is not NULL, else through the process's writer thread
 * (logwriter_log) when it runs; when that fails, appends it to the JSONL file at jsonl_path.
 * Returns 0 if the record is safe somewhere, -1 if it was lost. */
int reqlog_write(struct store *st, const char *jsonl_path, const struct reqlog *r);

#endif
