/* reqctx.c - one request's context: begin and end, its request-log row, the thread's database
 * connections.
 *
 * A struct request_ctx lives on the worker thread's stack from accept to finish; everything it
 * points to is either the request's own (released by reqctx_end) or the worker's (its libcurl
 * handle, and under plain CGI its SQLite connection, which outlive requests and are touched by
 * that thread only); a responder's reader connections are the process's, lent to one worker at a
 * time (see "The readers" below). A
 * request's row in the request log is committed before the last bytes of its response are
 * flushed, so a client that has seen the end of a response can rely on the row existing. Under
 * FastCGI the row goes through the store's writer thread; a plain CGI process has no writer and
 * writes through a direct connection, which is also the one it reads with.
 */
#include "reqctx.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "dbdown.h"
#include "inflight.h"
#include "log.h"
#include "logwriter.h"
#include "memgauge.h"
#include "rowkeep.h"
#include "store.h"
#include "store_diag.h"
#include "util.h"

/* Retry interval for a database that could not be opened. */
#define STORE_RETRY_US (10 * 1000000LL)

void reqctx_store_opts(const struct config *cfg, struct store_opts *o, int background)
{
	o->path = cfg->db_path;
	o->busy_timeout_ms = (long)cfg->busy_timeout_ms;
	o->synchronous_full = strcmp(cfg->synchronous, "full") == 0;
	o->checkpoint_pages = background ? (long)cfg->checkpoint_pages : 0;
	o->jsonl_path = background ? cfg->fallback_jsonl : NULL;
	o->retention_days = background ? (long)cfg->retention_days : 0;
	/* The serving router never makes the data directory, and makes the database file only on a
	 * first start (store.h): a removed or replaced database is restored, not started over. */
	o->create = STORE_CREATE_FIRST;
	o->fallback_path = cfg->fallback_jsonl;
}

/* The reason a worker cannot open the database, logged once a minute per process however many
 * threads meet it (a removed database is one event, not a line per thread and retry). */
static int open_failure_is_news(const char *err)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static char last[512];
	static int64_t again_us;
	int64_t now = clock_mono_us();
	pthread_mutex_lock(&mu);
	int news = now >= again_us || strcmp(last, err) != 0;
	if (news) {
		snprintf(last, sizeof(last), "%s", err);
		again_us = now + 60 * 1000000LL;
	}
	pthread_mutex_unlock(&mu);
	return news;
}

/* A direct connection, for a worker that has no writer thread to go through (plain CGI). */
static void worker_ensure_store(struct worker *w, const struct config *cfg)
{
	if (w->st || logwriter_running() || clock_mono_us() < w->st_retry_us)
		return;
	struct store_opts o;
	reqctx_store_opts(cfg, &o, 0);
	/* Another process found the database down lately (dbdown.h): try it briefly only. */
	if (dbdown_marker_check() && o.busy_timeout_ms > DBDOWN_CGI_TIMEOUT_MS)
		o.busy_timeout_ms = DBDOWN_CGI_TIMEOUT_MS;
	char err[512];
	w->st = store_open(&o, err, sizeof(err));
	if (!w->st) {
		w->st_retry_us = clock_mono_us() + STORE_RETRY_US;
		log_error(NULL, "request log database unavailable (rows go to %s): %s",
			  cfg->fallback_jsonl, err);
	}
}

void reqctx_begin(struct request_ctx *rc, struct worker *w, const struct http_io *io)
{
	memset(rc, 0, sizeof(*rc));
	/* A call starts on this thread: what it grows counts against server.call_memory_mb. */
	memgauge_clear();
	rc->w = w;
	rc->t0_us = clock_mono_us();
	rc->t0_wall_ms = clock_wall_ms();
	rc->cfg = config_acquire();
	inflight_init(rc->cfg->db_path);
	inflight_enter();
	request_id_new(rc->id, sizeof(rc->id), "chatcmpl-", 21);
	request_init(&rc->req, io);
	response_init(&rc->resp, io);
	resp_header(&rc->resp, "X-Request-Id", "%s", rc->id);
	reqlog_init(&rc->log);
}

void reqctx_end(struct request_ctx *rc)
{
	if (!rc->resp.started) {
		struct rerr e;
		rerr_clear(&e);
		rerr_set(&e, 500, "server_error", NULL, NULL, "The router produced no response.");
		resp_error(&rc->resp, &e);
	}
	reqctx_reader_release(rc);
	response_free(&rc->resp);
	request_free(&rc->req);
	config_release(rc->cfg);
	inflight_leave();
}

/* The readers: a responder's connections for the workers' reads and short transactions (keys,
 * budget holds, tool-call state, model health), shared by its workers. A worker borrows one at its
 * first use in a request and gives it back before each upstream call and at the end of the
 * request, so the number open follows the database work under way, not the calls in flight: a
 * thousand slow calls at once keep a few connections, not a thousand (each holds the parsed
 * schema, its lookaside and a page cache of up to cache_size). READERS_IDLE wait between uses;
 * a connection returned beyond that is closed. At most READERS_MAX are open at once: a burst of
 * new calls waits a moment for a connection instead of opening one each (which would cost a burst
 * of a thousand calls some 60 MB that the allocator keeps long after). Holders wait on the
 * database at most storage.busy_timeout_ms each, so a worker waits that long and a second more,
 * then opens one anyway: a stuck holder never stalls the others for good. */
#define READERS_IDLE 8
#define READERS_MAX 32

struct reader {
	struct store *st;
	char *path;                  /* the database it was opened on (a reload may change it) */
	int64_t moved_check_us;      /* next look for a deleted or replaced database file */
	struct reader *next;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t freed;        /* a reader was put back or closed */
	struct reader *idle;
	size_t n_idle;
	size_t n_open;               /* idle and borrowed */
	int64_t retry_us;            /* no new connection before this, after one failed to open */
} readers = { .mu = PTHREAD_MUTEX_INITIALIZER, .freed = PTHREAD_COND_INITIALIZER };

/* One more connection counted as open (taken before it is opened, so that workers opening at
 * once count too), or one less. */
static void readers_count(int delta)
{
	pthread_mutex_lock(&readers.mu);
	readers.n_open = (size_t)((long)readers.n_open + delta);
	if (delta < 0)
		pthread_cond_signal(&readers.freed);
	pthread_mutex_unlock(&readers.mu);
}

static void reader_close(struct reader *r)
{
	if (!r)
		return;
	store_close(r->st);
	free(r->path);
	free(r);
	readers_count(-1);
}

static void readers_put(struct reader *r)
{
	pthread_mutex_lock(&readers.mu);
	if (readers.n_idle < READERS_IDLE) {
		r->next = readers.idle;
		readers.idle = r;
		readers.n_idle++;
		r = NULL;
		pthread_cond_signal(&readers.freed);
	}
	pthread_mutex_unlock(&readers.mu);
	reader_close(r);
}

/* An idle reader for the database at path, or a new one; NULL while it cannot be opened. */
static struct reader *readers_get(const struct config *cfg)
{
	pthread_mutex_lock(&readers.mu);
	if (!readers.idle && readers.n_open >= READERS_MAX) {
		int64_t wait_ms = cfg->busy_timeout_ms + 1000;
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += (time_t)(wait_ms / 1000);
		until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (!readers.idle && readers.n_open >= READERS_MAX &&
		       pthread_cond_timedwait(&readers.freed, &readers.mu, &until) == 0)
			;
	}
	struct reader *r = readers.idle;
	if (r) {
		readers.idle = r->next;
		readers.n_idle--;
	} else {
		readers.n_open++;    /* the one opened below */
	}
	int64_t retry_us = readers.retry_us;
	pthread_mutex_unlock(&readers.mu);
	if (r && strcmp(r->path, cfg->db_path) != 0) {
		reader_close(r);
		r = NULL;
		readers_count(1);
	}
	if (r)
		return r;
	if (clock_mono_us() < retry_us) {
		readers_count(-1);
		return NULL;
	}
	struct store_opts o;
	reqctx_store_opts(cfg, &o, 0);
	char err[512];
	struct store *st = store_open(&o, err, sizeof(err));
	if (!st) {
		pthread_mutex_lock(&readers.mu);
		readers.retry_us = clock_mono_us() + STORE_RETRY_US;
		pthread_mutex_unlock(&readers.mu);
		readers_count(-1);
		if (open_failure_is_news(err))
			log_warn(NULL, "cannot open the database for reading: %s", err);
		return NULL;
	}
	r = xcalloc(1, sizeof(*r));
	r->st = st;
	r->path = xstrdup(cfg->db_path);
	r->moved_check_us = clock_mono_us() + 1000000;
	return r;
}

/* A connection to a file that was deleted or replaced would read and write a ghost: each one is
 * looked at at most once a second, and closed when its file has gone. */
static int moved(struct store *st, int64_t *check_us)
{
	int64_t now = clock_mono_us();
	if (!st || now < *check_us)
		return 0;
	*check_us = now + 1000000;
	return store_file_moved(st);
}

struct store *reqctx_reader(struct request_ctx *rc)
{
	struct worker *w = rc->w;
	if (moved(w->st, &w->moved_check_us)) {
		store_close(w->st);
		w->st = NULL;
	}
	worker_ensure_store(w, rc->cfg);
	if (w->st)
		return w->st;
	if (w->reader && moved(w->reader->st, &w->reader->moved_check_us)) {
		reader_close(w->reader);
		w->reader = NULL;
	}
	while (!w->reader) {
		struct reader *r = readers_get(rc->cfg);
		if (!r)
			return NULL;
		if (!moved(r->st, &r->moved_check_us))
			w->reader = r;
		else
			reader_close(r);
	}
	return w->reader->st;
}

void reqctx_reader_release(struct request_ctx *rc)
{
	struct worker *w = rc->w;
	if (w->reader)
		readers_put(w->reader);
	w->reader = NULL;
}

void reqctx_worker_done(struct worker *w)
{
	reader_close(w->reader);
	w->reader = NULL;
	store_close(w->st);
	w->st = NULL;
}

void reqctx_readers_close(void)
{
	pthread_mutex_lock(&readers.mu);
	struct reader *r = readers.idle;
	readers.idle = NULL;
	readers.n_idle = 0;
	pthread_mutex_unlock(&readers.mu);
	while (r) {
		struct reader *next = r->next;
		reader_close(r);
		r = next;
	}
}

void reqctx_commit_log(struct request_ctx *rc)
{
	rc->log.request_id = rc->id;
	rc->log.ts_start_ms = rc->t0_wall_ms;
	rc->log.ts_end_ms = clock_wall_ms();
	rc->log.latency_ms = (double)(clock_mono_us() - rc->t0_us) / 1000.0;
	/* The router's share: everything but the upstream's time (the row's own commit excepted). */
	rc->log.overhead_ms = rc->log.upstream_ms >= 0 ? rc->log.latency_ms - rc->log.upstream_ms
						       : rc->log.latency_ms;
	if (rc->log.overhead_ms < 0)
		rc->log.overhead_ms = 0;
	rc->log.status = rc->resp.status;
	rc->log.client_gone = rc->resp.client_gone;
	rc->log.method = rc->req.method;
	snprintf(rc->log_path, sizeof(rc->log_path), "%s", str_or_empty(rc->req.path));
	utf8_sanitize(rc->log_path);
	rc->log.path = rc->log_path;
	if (!rc->cfg->request_log)
		return;
	worker_ensure_store(rc->w, rc->cfg);
	reqlog_write(rc->w->st, rc->cfg->fallback_jsonl, &rc->log);
}

void reqctx_refuse(struct request_ctx *rc, const struct rerr *e)
{
	resp_error(&rc->resp, e);
	rc->log.error_type = e->type;
	rc->log.error_code = e->code;
	rc->log.error_message = e->message;
	reqctx_commit_log(rc);
}

/* Whether a row could be written to path now: the file (else its directory) is writable and its
 * file system has room for a few rows. */
#define ROOM_BYTES (64 * 1024)

static int path_writable(const char *path)
{
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	int ok = access(path, F_OK) == 0 ? access(path, W_OK) == 0
					 : access(slash ? dir : ".", W_OK | X_OK) == 0;
	struct statvfs vfs;
	if (ok && statvfs(slash ? dir : ".", &vfs) == 0)
		ok = (unsigned long long)vfs.f_bavail * vfs.f_frsize >= ROOM_BYTES;
	free(dir);
	return ok;
}

int reqctx_can_record(struct request_ctx *rc)
{
	const struct config *cfg = rc->cfg;
	if (!cfg->request_log)
		return 1;
	if (logwriter_running()) {
		rowkeep_set_max((long)cfg->kept_rows_max);
		return !rowkeep_full();
	}
	/* Plain CGI keeps nothing after it exits: the database or the fallback file must take rows. */
	worker_ensure_store(rc->w, cfg);
	if ((rc->w->st && !dbdown_is_down() && path_writable(cfg->db_path)) ||
	    path_writable(cfg->fallback_jsonl))
		return 1;
	/* Refused: the log says which file and what to do. */
	store_diagnose(NULL, cfg->db_path);
	store_diagnose_file(cfg->fallback_jsonl, errno);
	return 0;
}
