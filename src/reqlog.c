/* reqlog.c - the way a request-log row takes: the database, else the JSONL fallback file.
 *
 * A row goes through the caller's connection (plain CGI, the tests), or through the process's
 * writer thread (a FastCGI responder); when the database fails it is appended to the fallback
 * file, which maint.c (or the next CGI request) replays later; when that fails too, it is
 * kept in memory (rowkeep.h). While the database is known down (dbdown.h) it is not tried. That
 * the database failed is logged once per FAIL_LOG_EVERY_MS per process, with the count of the
 * rows that went quietly.
 */
#include "reqlog.h"

#include <errno.h>
#include <stdio.h>

#include "dbdown.h"
#include "log.h"
#include "rowkeep.h"
#include "store.h"
#include "store_diag.h"
#include "util.h"

/* The database failing is said once per this many ms per process. */
#define FAIL_LOG_EVERY_MS 10000

/* One line per FAIL_LOG_EVERY_MS per process, however many rows take this way. */
static void log_fallback(const struct reqlog *r, const char *jsonl_path, const char *err)
{
	static int64_t last_ms;
	static long long quiet;
	int64_t now = clock_mono_us() / 1000;
	int64_t last = __atomic_load_n(&last_ms, __ATOMIC_RELAXED);
	if (now - last < FAIL_LOG_EVERY_MS ||
	    !__atomic_compare_exchange_n(&last_ms, &last, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
		__atomic_add_fetch(&quiet, 1, __ATOMIC_RELAXED);
		return;
	}
	long long more = __atomic_exchange_n(&quiet, 0, __ATOMIC_RELAXED);
	char tail[96] = "";
	if (more)
		snprintf(tail, sizeof(tail), "; %lld more row(s) went there since the last such line", more);
	log_warn(r->request_id, "request log row written to %s because the database failed: %s%s",
		 jsonl_path, err, tail);
}

int reqlog_write(struct store *st, const char *jsonl_path, const struct reqlog *r)
{
	char err[512] = "database not open";
	if (dbdown_is_down()) {
		snprintf(err, sizeof(err), "the database is down (tried again every %d ms)", DBDOWN_PROBE_MS);
	} else if (st) {
		if (store_insert_reqlog(st, r, err, sizeof(err)) == 0) {
			dbdown_up();
			return 0;
		}
		store_diagnose(st, NULL);
		dbdown_failed(err);
	} else if (logwriter_running()) {
		if (logwriter_log(r, err, sizeof(err)) == 0)
			return 0;
	}
	if (r->spent_after)
		r->spent_after->valid = 0;   /* its settlement never committed: what it read is void */
	char err2[512];
	if (reqlog_jsonl_append(jsonl_path, r, err2, sizeof(err2)) == 0) {
		log_fallback(r, jsonl_path, err);
		return 0;
	}
	store_diagnose_file(jsonl_path, errno);
	/* Neither took it: kept in memory (and its line in the error log) until one does. */
	if (rowkeep_keep(r) == 0) {
		log_error(r->request_id, "request log row kept in memory (%zu kept) and written to the "
			  "error log: database: %s; fallback file: %s", rowkeep_count(), err, err2);
		return 0;
	}
	log_error(r->request_id, "request log row in the error log only (the rows kept in memory "
		  "reached storage.kept_rows_max): database: %s; fallback file: %s", err, err2);
	return -1;
}
