/* reqlog.c - request-log records: to SQLite, or to the JSONL fallback file when SQLite fails.
 *
 * The fallback file is opened with O_APPEND for every record and each record is one complete line
 * written by a single write(2) under flock(LOCK_EX), so lines from concurrent threads and
 * processes never interleave.
 */
#include "reqlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "jsonx.h"
#include "log.h"
#include "store.h"
#include "util.h"

/* The database failing is said once per this many ms per process. */
#define FAIL_LOG_EVERY_MS 10000

void reqlog_init(struct reqlog *r)
{
	memset(r, 0, sizeof(*r));
	r->input_tokens = r->output_tokens = r->cached_tokens = -1;
	r->cache_write_tokens = r->reasoning_tokens = -1;
	r->ttft_ms = r->upstream_ms = -1;
	r->cost_source = "none";
	r->attempts = 0;
}

static void set_str(json_t *o, const char *k, const char *v)
{
	json_object_set_new(o, k, v ? json_string(v) : json_null());
}

static void set_count(json_t *o, const char *k, int64_t v)
{
	json_object_set_new(o, k, v >= 0 ? json_integer(v) : json_null());
}

static void set_ms(json_t *o, const char *k, double v)
{
	json_object_set_new(o, k, v >= 0 ? json_real(v) : json_null());
}

json_t *reqlog_to_json(const struct reqlog *r)
{
	json_t *o = json_object();
	set_str(o, "request_id", r->request_id);
	json_object_set_new(o, "ts_start_ms", json_integer(r->ts_start_ms));
	json_object_set_new(o, "ts_end_ms", json_integer(r->ts_end_ms));
	set_str(o, "agent", r->agent);
	set_str(o, "tier", r->tier);
	set_str(o, "task", r->task);
	set_str(o, "requested_model", r->requested_model);
	set_str(o, "model", r->model);
	set_str(o, "provider", r->provider);
	set_str(o, "upstream_model", r->upstream_model);
	json_object_set_new(o, "stream", json_integer(r->stream));
	json_object_set_new(o, "status", json_integer(r->status));
	set_str(o, "error_type", r->error_type);
	set_str(o, "error_code", r->error_code);
	set_str(o, "error_message", r->error_message);
	set_str(o, "finish_reason", r->finish_reason);
	set_count(o, "input_tokens", r->input_tokens);
	set_count(o, "output_tokens", r->output_tokens);
	set_count(o, "cached_tokens", r->cached_tokens);
	set_count(o, "cache_write_tokens", r->cache_write_tokens);
	set_count(o, "reasoning_tokens", r->reasoning_tokens);
	json_object_set_new(o, "cost_nusd", json_integer(r->cost_nusd));
	set_str(o, "cost_source", r->cost_source);
	set_ms(o, "latency_ms", r->latency_ms);
	set_ms(o, "ttft_ms", r->ttft_ms);
	set_ms(o, "upstream_ms", r->upstream_ms);
	set_ms(o, "overhead_ms", r->overhead_ms);
	set_str(o, "dropped_params", r->dropped_params && r->dropped_params[0] ? r->dropped_params : NULL);
	set_str(o, "upstream_request_id",
		r->upstream_request_id && r->upstream_request_id[0] ? r->upstream_request_id : NULL);
	json_object_set_new(o, "attempts", json_integer(r->attempts));
	json_object_set_new(o, "client_gone", json_integer(r->client_gone));
	set_str(o, "fallback_from", r->fallback_from && r->fallback_from[0] ? r->fallback_from : NULL);
	json_object_set_new(o, "partial", json_integer(r->partial));
	json_t *arr = json_array();
	for (size_t i = 0; i < r->n_attempt_log; i++) {
		const struct attempt_log *a = &r->attempt_log[i];
		json_t *x = json_object();
		json_object_set_new(x, "attempt", json_integer((json_int_t)i + 1));
		json_object_set_new(x, "ts_start_ms", json_integer(a->ts_start_ms));
		set_str(x, "model", a->model);
		set_str(x, "provider", a->provider);
		set_str(x, "upstream_model", a->upstream_model);
		set_str(x, "outcome", a->outcome);
		json_object_set_new(x, "upstream_status",
				    a->upstream_status > 0 ? json_integer(a->upstream_status) : json_null());
		json_object_set_new(x, "status", a->status > 0 ? json_integer(a->status) : json_null());
		set_str(x, "error_type", a->error_type);
		set_str(x, "error_code", a->error_code);
		set_str(x, "error_message", a->error_message && a->error_message[0] ? a->error_message : NULL);
		set_ms(x, "latency_ms", a->latency_ms);
		json_object_set_new(x, "retry_after_s",
				    a->retry_after_s > 0 ? json_integer(a->retry_after_s) : json_null());
		set_str(x, "upstream_request_id",
			a->upstream_request_id && a->upstream_request_id[0] ? a->upstream_request_id : NULL);
		json_array_append_new(arr, x);
	}
	json_object_set_new(o, "attempt_log", arr);
	return o;
}

static int append_jsonl(const char *path, const struct reqlog *r, char *errbuf, size_t errsz)
{
	json_t *o = reqlog_to_json(r);
	struct buf line;
	buf_init(&line, BUF_UNLIMITED);
	json_to_buf(o, &line);
	buf_putc(&line, '\n');
	json_decref(o);
	int rc = -1;
	int fd = -1;
	for (int tries = 0; tries < 8; tries++) {
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0 && errno == ENOENT && mkdir_parents(path) == 0)
			fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0) {
			snprintf(errbuf, errsz, "cannot open %s: %s", path, strerror(errno));
			goto out;
		}
		while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
			;
		/* A replay may have moved the file away while we waited for the lock: append to the
		 * file now at path, never to one being imported. */
		struct stat a, b;
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
			break;
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		snprintf(errbuf, errsz, "cannot open %s: it keeps being moved", path);
		goto out;
	}
	size_t off = 0;
	while (off < line.len) {
		ssize_t w = write(fd, line.p + off, line.len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			snprintf(errbuf, errsz, "cannot write %s: %s", path, strerror(errno));
			break;
		}
		off += (size_t)w;
	}
	if (off == line.len)
		rc = 0;
	flock(fd, LOCK_UN);
	close(fd);
out:
	buf_free(&line);
	return rc;
}

int reqlog_write(struct store *st, const char *jsonl_path, const struct reqlog *r)
{
	char err[512] = "database not open";
	if (st) {
		if (store_insert_reqlog(st, r, err, sizeof(err)) == 0)
			return 0;
	} else if (store_writer_running()) {
		if (store_writer_log(r, err, sizeof(err)) == 0)
			return 0;
	}
	char err2[512];
	if (append_jsonl(jsonl_path, r, err2, sizeof(err2)) == 0) {
		/* One line per FAIL_LOG_EVERY_MS per process, however many rows take this way. */
		static int64_t last_ms;
		static long long quiet;
		int64_t now = clock_mono_us() / 1000;
		int64_t last = __atomic_load_n(&last_ms, __ATOMIC_RELAXED);
		if (now - last >= FAIL_LOG_EVERY_MS &&
		    __atomic_compare_exchange_n(&last_ms, &last, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
			long long more = __atomic_exchange_n(&quiet, 0, __ATOMIC_RELAXED);
			char tail[96] = "";
			if (more)
				snprintf(tail, sizeof(tail),
					 "; %lld more row(s) went there since the last such line", more);
			log_warn(r->request_id,
				 "request log row written to %s because the database failed: %s%s",
				 jsonl_path, err, tail);
		} else {
			__atomic_add_fetch(&quiet, 1, __ATOMIC_RELAXED);
		}
		return 0;
	}
	log_error(r->request_id, "request log row LOST: database: %s; fallback file: %s", err, err2);
	return -1;
}

/* ---- replay of the JSONL fallback ---- */

static const char *jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static int64_t jint(const json_t *o, const char *k, int64_t dflt)
{
	const json_t *v = json_object_get(o, k);
	return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static double jms(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);
	return json_is_number(v) ? json_number_value(v) : -1;
}

int reqlog_from_json(const json_t *o, struct reqlog *r, struct attempt_log **attempts)
{
	reqlog_init(r);
	*attempts = NULL;
	r->request_id = jstr(o, "request_id");
	if (!r->request_id || !r->request_id[0] || !json_is_integer(json_object_get(o, "ts_start_ms")))
		return -1;
	r->ts_start_ms = jint(o, "ts_start_ms", 0);
	r->ts_end_ms = jint(o, "ts_end_ms", r->ts_start_ms);
	r->agent = jstr(o, "agent");
	r->tier = jstr(o, "tier");
	r->task = jstr(o, "task");
	r->requested_model = jstr(o, "requested_model");
	r->model = jstr(o, "model");
	r->provider = jstr(o, "provider");
	r->upstream_model = jstr(o, "upstream_model");
	r->stream = (int)jint(o, "stream", 0);
	r->status = (int)jint(o, "status", 0);
	r->error_type = jstr(o, "error_type");
	r->error_code = jstr(o, "error_code");
	r->error_message = jstr(o, "error_message");
	r->finish_reason = jstr(o, "finish_reason");
	r->input_tokens = jint(o, "input_tokens", -1);
	r->output_tokens = jint(o, "output_tokens", -1);
	r->cached_tokens = jint(o, "cached_tokens", -1);
	r->cache_write_tokens = jint(o, "cache_write_tokens", -1);
	r->reasoning_tokens = jint(o, "reasoning_tokens", -1);
	r->cost_nusd = jint(o, "cost_nusd", 0);
	r->cost_source = jstr(o, "cost_source") ? jstr(o, "cost_source") : "none";
	r->latency_ms = jms(o, "latency_ms");
	r->ttft_ms = jms(o, "ttft_ms");
	r->upstream_ms = jms(o, "upstream_ms");
	r->overhead_ms = jms(o, "overhead_ms");
	r->dropped_params = jstr(o, "dropped_params");
	r->upstream_request_id = jstr(o, "upstream_request_id");
	r->attempts = (int)jint(o, "attempts", 0);
	r->client_gone = (int)jint(o, "client_gone", 0);
	r->fallback_from = jstr(o, "fallback_from");
	r->partial = (int)jint(o, "partial", 0);
	const json_t *arr = json_object_get(o, "attempt_log");
	size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
	if (n) {
		struct attempt_log *a = xcalloc(n, sizeof(*a));
		for (size_t i = 0; i < n; i++) {
			const json_t *x = json_array_get(arr, i);
			a[i].ts_start_ms = jint(x, "ts_start_ms", r->ts_start_ms);
			a[i].model = jstr(x, "model") ? jstr(x, "model") : "";
			a[i].provider = jstr(x, "provider");
			a[i].upstream_model = jstr(x, "upstream_model");
			a[i].outcome = jstr(x, "outcome") ? jstr(x, "outcome") : "failed";
			a[i].upstream_status = (int)jint(x, "upstream_status", 0);
			a[i].status = (int)jint(x, "status", 0);
			a[i].error_type = jstr(x, "error_type");
			a[i].error_code = jstr(x, "error_code");
			a[i].error_message = jstr(x, "error_message");
			a[i].latency_ms = jms(x, "latency_ms");
			a[i].retry_after_s = (long)jint(x, "retry_after_s", 0);
			a[i].upstream_request_id = jstr(x, "upstream_request_id");
		}
		r->attempt_log = a;
		r->n_attempt_log = n;
		*attempts = a;
	}
	return 0;
}

/* Imports one claimed file (fd locked by us) in transactions of up to BATCH rows. */
#define REPLAY_BATCH 500

static int import_file(struct store *st, int fd, const char *name, struct replay_stats *stats)
{
	int dfd = dup(fd);
	FILE *f = dfd >= 0 ? fdopen(dfd, "r") : NULL;
	if (!f) {
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int in_tx = 0, batch = 0, rc = 0;
	char err[512];
	while ((n = getline(&line, &cap, f)) > 0) {
		if (!in_tx) {
			if (store_begin(st) < 0) {
				rc = -1;
				break;
			}
			in_tx = 1;
		}
		json_error_t je;
		json_t *o = json_loadb(line, (size_t)n, 0, &je);
		struct reqlog r;
		struct attempt_log *att = NULL;
		if (!json_is_object(o) || reqlog_from_json(o, &r, &att) < 0) {
			stats->malformed++;
			log_warn(NULL, "replay of %s: a line that is not a request-log record is skipped "
				 "(%zd bytes)", name, n);
		} else {
			int inserted = store_insert_reqlog_new(st, &r, err, sizeof(err));
			if (inserted < 0) {
				log_error(r.request_id, "replay of %s failed: %s", name, err);
				rc = -1;
			} else if (inserted) {
				stats->imported++;
			} else {
				stats->already++;
			}
		}
		free(att);
		json_decref(o);
		if (rc < 0)
			break;
		if (++batch == REPLAY_BATCH) {
			if (store_commit(st) < 0) {
				rc = -1;
				in_tx = 0;
				break;
			}
			in_tx = 0;
			batch = 0;
		}
	}
	if (in_tx) {
		if (rc == 0 && store_commit(st) < 0)
			rc = -1;
		if (rc < 0)
			store_rollback(st);
	}
	free(line);
	fclose(f);
	return rc;
}

/* Claims path for replay: under the appenders' lock, moves it aside to a name of our own; the
 * lock stays held on the moved file while it is imported. Returns the fd, or -1. */
static int claim(const char *path, char *moved, size_t movedsz)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
		;
	struct stat a, b;
	if (fstat(fd, &a) < 0 || stat(path, &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
		close(fd);    /* somebody else moved it first */
		return -1;
	}
	snprintf(moved, movedsz, "%s.replay-%ld-%lld", path, (long)getpid(), (long long)clock_wall_ms());
	if (rename(path, moved) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int replay_one(struct store *st, int fd, const char *name, struct replay_stats *stats)
{
	int rc = import_file(st, fd, name, stats);
	if (rc == 0) {
		/* Every row is committed: only now does the file go. */
		unlink(name);
		stats->files++;
	}
	close(fd);
	return rc;
}

int reqlog_replay(struct store *st, const char *jsonl_path, struct replay_stats *stats)
{
	memset(stats, 0, sizeof(*stats));
	int rc = 0;
	/* Files an interrupted replay left behind: whoever gets the lock imports them again (rows
	 * already in the database are skipped by request id). */
	char *dir = xstrdup(jsonl_path);
	char *slash = strrchr(dir, '/');
	const char *base = slash ? slash + 1 : jsonl_path;
	if (slash)
		*slash = '\0';
	DIR *d = opendir(slash ? dir : ".");
	size_t blen = strlen(base);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (strncmp(e->d_name, base, blen) != 0 || strncmp(e->d_name + blen, ".replay-", 8) != 0)
				continue;
			char *p = xasprintf("%s/%s", slash ? dir : ".", e->d_name);
			int fd = open(p, O_RDONLY | O_CLOEXEC);
			if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0) {
				log_info(NULL, "resuming the replay of %s", p);
				if (replay_one(st, fd, p, stats) < 0)
					rc = -1;
			} else if (fd >= 0) {
				close(fd);    /* another process is importing it */
			}
			free(p);
		}
		closedir(d);
	}
	free(dir);
	char moved[4096];
	int fd = claim(jsonl_path, moved, sizeof(moved));
	if (fd >= 0 && replay_one(st, fd, moved, stats) < 0)
		rc = -1;
	if (stats->imported || stats->already || stats->malformed)
		log_info(NULL, "replayed %s: %lld row(s) imported, %lld already in the database, %lld "
			 "unreadable line(s) skipped", jsonl_path, (long long)stats->imported,
			 (long long)stats->already, (long long)stats->malformed);
	return rc;
}
