/* reqlog.c - request-log records: to SQLite, or to the JSONL fallback file when SQLite fails.
 *
 * The fallback file is opened with O_APPEND for every record and each record is one complete line
 * written by a single write(2) under flock(LOCK_EX), so lines from concurrent threads and
 * processes never interleave.
 */
#include "reqlog.h"

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
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		snprintf(errbuf, errsz, "cannot open %s: %s", path, strerror(errno));
		goto out;
	}
	while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
		;
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
		log_warn(r->request_id, "request log row written to %s because the database failed: %s",
			 jsonl_path, err);
		return 0;
	}
	log_error(r->request_id, "request log row LOST: database: %s; fallback file: %s", err, err2);
	return -1;
}
