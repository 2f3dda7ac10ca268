/* upstream.c - libcurl easy handle per worker thread, blocking calls with streaming callbacks.
 *
 * The handle is reset (curl_easy_reset keeps the connection, DNS and TLS-session caches) and
 * configured for every call. CURLOPT_NOSIGNAL is set because the process is threaded; SIGPIPE is
 * ignored process-wide by the server. CURLOPT_PROXY is always set so that proxy variables in the
 * environment can never divert provider traffic. Timeouts beyond libcurl's connect timeout (until
 * the first content, idle time between data, the total bound) are enforced from the progress
 * callback, which runs at least every TICK_MS; the bytes themselves reset nothing, only what
 * on_body reports they carried. The request body goes through a read callback with a seek
 * callback: libcurl rewinds it exactly when it sends the request again on a fresh connection
 * (a reused connection that died before any reply byte), which is how res->resends counts the
 * POSTs the provider received that the caller did not ask for.
 */
#include "upstream.h"

#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* Longest wait between two progress callbacks (timeouts, keep-alive comments). */
#define TICK_MS 200

struct upstream {
	CURL *h;
	CURLM *m;        /* owns the connection cache; drives one transfer at a time */
};

struct call {
	const struct upstream_opts *opts;
	const struct upstream_cb *cb;
	struct upstream_result *res;
	int64_t t0_us;
	int64_t last_data_us;      /* last piece carrying data (or the first body byte) */
	int content;               /* on_body reported content */
	const char *body;          /* the request body, sent through on_read */
	size_t body_len;
	size_t body_off;
	int head_done;
	int stop;                  /* enum upstream_fail to report when we aborted */
	long status;
};

void upstream_req_free(struct upstream_req *r)
{
	free(r->url);
	for (size_t i = 0; i < r->n_headers; i++) {
		explicit_bzero(r->headers[i], strlen(r->headers[i]));
		free(r->headers[i]);
	}
	free(r->headers);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

void upstream_req_add_header(struct upstream_req *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *line = NULL;
	int n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	r->headers = xrealloc(r->headers, (r->n_headers + 1) * sizeof(char *));
	r->headers[r->n_headers++] = line;
}

int upstream_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_ALL) == CURLE_OK ? 0 : -1;
}

void upstream_global_cleanup(void)
{
	curl_global_cleanup();
}

struct upstream *upstream_new(void)
{
	struct upstream *u = xcalloc(1, sizeof(*u));
	u->h = curl_easy_init();
	u->m = curl_multi_init();
	if (!u->h || !u->m) {
		curl_easy_cleanup(u->h);
		curl_multi_cleanup(u->m);
		free(u);
		return NULL;
	}
	return u;
}

void upstream_free(struct upstream *u)
{
	if (!u)
		return;
	curl_multi_cleanup(u->m);
	curl_easy_cleanup(u->h);
	free(u);
}

/* curl_easy_perform, but the wait also watches opts->watch_fd. */
static CURLcode perform(struct upstream *u, const struct upstream_opts *opts, struct call *c)
{
	CURLcode result = CURLE_OK;
	if (curl_multi_add_handle(u->m, u->h) != CURLM_OK)
		return CURLE_FAILED_INIT;
	int watch = opts->watch_fd;
	int running = 1;
	while (running) {
		CURLMcode mc = curl_multi_perform(u->m, &running);
		if (mc != CURLM_OK) {
			result = CURLE_FAILED_INIT;
			break;
		}
		if (!running)
			break;
		struct curl_waitfd wfd = { .fd = watch, .events = CURL_WAIT_POLLIN, .revents = 0 };
		mc = curl_multi_poll(u->m, watch >= 0 ? &wfd : NULL, watch >= 0 ? 1 : 0, TICK_MS, NULL);
		if (mc != CURLM_OK && mc != CURLM_UNRECOVERABLE_POLL) {
			result = CURLE_FAILED_INIT;
			break;
		}
		if (watch >= 0 && wfd.revents) {
			int w = c->cb->on_watch ? c->cb->on_watch(c->cb->ud) : 0;
			if (w < 0) {
				c->stop = UPSTREAM_ABORTED;
				result = CURLE_ABORTED_BY_CALLBACK;
				break;
			}
			if (w == 0)
				watch = -1;
		}
	}
	int left;
	CURLMsg *msg;
	while ((msg = curl_multi_info_read(u->m, &left))) {
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == u->h)
			result = msg->data.result;
	}
	/* Removing an unfinished transfer closes its connection: the provider sees it at once. */
	curl_multi_remove_handle(u->m, u->h);
	return result;
}

static void copy_trimmed(char *dst, size_t dstsz, const char *v, size_t n)
{
	while (n && (v[0] == ' ' || v[0] == '\t')) {
		v++;
		n--;
	}
	while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
		n--;
	if (n >= dstsz)
		n = dstsz - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static int header_is(const char *line, size_t n, const char *name, const char **val, size_t *vlen)
{
	size_t k = strlen(name);
	if (n <= k || line[k] != ':' || strncasecmp(line, name, k) != 0)
		return 0;
	*val = line + k + 1;
	*vlen = n - k - 1;
	return 1;
}

static size_t on_header(char *line, size_t size, size_t nitems, void *ud)
{
	struct call *c = ud;
	size_t n = size * nitems;
	struct upstream_result *res = c->res;
	const char *v;
	size_t vl;
	if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
		/* A new status line (also after a 1xx interim reply): forget earlier headers. */
		res->retry_after = 0;
		res->request_id[0] = '\0';
		res->content_type[0] = '\0';
		const char *sp = memchr(line, ' ', n);
		c->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		return n;
	}
	if (header_is(line, n, "content-type", &v, &vl)) {
		copy_trimmed(res->content_type, sizeof(res->content_type), v, vl);
	} else if (header_is(line, n, "x-request-id", &v, &vl) ||
		   header_is(line, n, "request-id", &v, &vl) ||
		   header_is(line, n, "x-generation-id", &v, &vl)) {
		if (!res->request_id[0])
			copy_trimmed(res->request_id, sizeof(res->request_id), v, vl);
	} else if (header_is(line, n, "retry-after", &v, &vl)) {
		char tmp[64];
		copy_trimmed(tmp, sizeof(tmp), v, vl);
		long long secs;
		if (parse_ll(tmp, &secs) == 0 && secs > 0)
			res->retry_after = secs > 86400 ? 86400 : (long)secs;
		else {
			/* An HTTP date: let libcurl convert it after the transfer. */
			res->retry_after = -1;
		}
	} else if ((n == 2 && line[0] == '\r') || (n == 1 && line[0] == '\n')) {
		if (c->status >= 200 && !c->head_done) {
			c->head_done = 1;
			res->status = c->status;
			if (c->cb->on_head) {
				struct upstream_head h = {
					.status = c->status,
					.content_type = res->content_type,
					.retry_after = res->retry_after > 0 ? res->retry_after : 0,
					.request_id = res->request_id,
				};
				if (c->cb->on_head(c->cb->ud, &h) < 0) {
					c->stop = UPSTREAM_ABORTED;
					return 0;
				}
			}
		}
	}
	return n;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
	struct call *c = ud;
	size_t n = size * nmemb;
	if (c->res->body_bytes == 0)
		c->last_data_us = clock_mono_us();
	c->res->body_bytes += (int64_t)n;
	int got = c->cb->on_body ? c->cb->on_body(c->cb->ud, p, n) : UPSTREAM_PROGRESS_DATA;
	if (got < 0) {
		if (!c->stop)
			c->stop = UPSTREAM_ABORTED;
		return CURL_WRITEFUNC_ERROR;
	}
	if (got & UPSTREAM_PROGRESS_DATA)
		c->last_data_us = clock_mono_us();
	if (got & UPSTREAM_PROGRESS_CONTENT)
		c->content = 1;
	return n;
}

static size_t on_read(char *p, size_t size, size_t nitems, void *ud)
{
	struct call *c = ud;
	size_t n = size * nitems;
	size_t left = c->body_len - c->body_off;
	if (n > left)
		n = left;
	memcpy(p, c->body + c->body_off, n);
	c->body_off += n;
	return n;
}

/* libcurl rewinds the body only to send the request again: a reused connection died before any
 * reply byte (redirects and authentication, the other reasons, are never used here). */
static int on_seek(void *ud, curl_off_t offset, int origin)
{
	struct call *c = ud;
	if (origin != SEEK_SET || offset < 0 || (size_t)offset > c->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	if (c->body_off > 0)
		c->res->resends++;
	c->body_off = (size_t)offset;
	return CURL_SEEKFUNC_OK;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	(void)dltotal;
	(void)ultotal;
	(void)ulnow;
	(void)dlnow;
	struct call *c = ud;
	int64_t now = clock_mono_us();
	const struct upstream_opts *o = c->opts;
	if (o->total_ms > 0 && now - c->t0_us > (int64_t)o->total_ms * 1000) {
		c->stop = UPSTREAM_DEADLINE;
		return 1;
	}
	if (!c->content && o->timeout_ms > 0 && now - c->t0_us > (int64_t)o->timeout_ms * 1000) {
		c->stop = UPSTREAM_TIMEOUT;
		return 1;
	}
	if (c->res->body_bytes > 0 && o->idle_timeout_ms > 0 &&
	    now - c->last_data_us > (int64_t)o->idle_timeout_ms * 1000) {
		c->stop = UPSTREAM_STALLED;
		return 1;
	}
	if (c->cb->on_tick && c->cb->on_tick(c->cb->ud) < 0) {
		c->stop = UPSTREAM_ABORTED;
		return 1;
	}
	return 0;
}

int upstream_perform(struct upstream *u, const struct upstream_req *req,
		     const struct upstream_opts *opts, const struct upstream_cb *cb,
		     struct upstream_result *res)
{
	memset(res, 0, sizeof(*res));
	struct call c = { .opts = opts, .cb = cb, .res = res, .body = req->body ? req->body : "",
			  .body_len = req->body_len };
	CURL *h = u->h;
	curl_easy_reset(h);

	struct curl_slist *hl = NULL;
	for (size_t i = 0; i < req->n_headers; i++)
		hl = curl_slist_append(hl, req->headers[i]);
	hl = curl_slist_append(hl, "Expect:");
	if (!hl)
		abort();

	char errbuf[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(h, CURLOPT_URL, req->url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
	curl_easy_setopt(h, CURLOPT_READDATA, &c);
	curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
	curl_easy_setopt(h, CURLOPT_SEEKDATA, &c);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROXY, opts->proxy ? opts->proxy : "");
	if (opts->ca_file && opts->ca_file[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, opts->ca_file);
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, opts->connect_timeout_ms);
	if (!req->stream && opts->timeout_ms > 0)
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, opts->timeout_ms);
	else if (opts->total_ms > 0)
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, opts->total_ms + 2 * TICK_MS);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	/* No compressed replies: without Accept-Encoding libcurl decodes nothing, so a body sent
	 * with Content-Encoding anyway reaches the translators as the bytes it is (and fails to
	 * parse): a gzip bomb is never inflated (README "Memory per call"). */
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, NULL);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &c);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &c);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, &c);

	c.t0_us = clock_mono_us();
	c.last_data_us = c.t0_us;
	CURLcode rc = perform(u, opts, &c);
	curl_slist_free_all(hl);

	double t = 0;
	if (curl_easy_getinfo(h, CURLINFO_TOTAL_TIME, &t) == CURLE_OK)
		res->total_ms = t * 1000.0;
	if (curl_easy_getinfo(h, CURLINFO_CONNECT_TIME, &t) == CURLE_OK)
		res->connect_ms = t * 1000.0;
	if (res->retry_after < 0) {
		curl_off_t ra = 0;
		res->retry_after = 0;
		if (curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
			res->retry_after = ra > 86400 ? 86400 : (long)ra;
	}
	if (!res->status)
		res->status = c.status;

	if (rc == CURLE_OK) {
		res->fail = UPSTREAM_OK;
		return 0;
	}
	if (c.stop) {
		res->fail = (enum upstream_fail)c.stop;
		snprintf(res->error, sizeof(res->error), "%s",
			 c.stop == UPSTREAM_TIMEOUT    ? "no content before the timeout"
			 : c.stop == UPSTREAM_STALLED  ? "stream stalled (no data within the idle timeout)"
			 : c.stop == UPSTREAM_DEADLINE ? "the call ran into the request's deadline"
						       : "transfer aborted");
		return -1;
	}
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
		res->fail = UPSTREAM_CONNECT;
		break;
	case CURLE_OPERATION_TIMEDOUT:
		res->fail = UPSTREAM_TIMEOUT;
		break;
	default:
		res->fail = UPSTREAM_BROKEN;
		break;
	}
	snprintf(res->error, sizeof(res->error), "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
	return -1;
}

static size_t discard(char *p, size_t size, size_t nmemb, void *ud)
{
	(void)p;
	(void)ud;
	return size * nmemb;
}

int upstream_post_json(const char *url, const char *body, long timeout_ms, long *status, char *err,
		       size_t errsz)
{
	CURL *h = curl_easy_init();
	if (!h) {
		snprintf(err, errsz, "cannot create a libcurl handle");
		return -1;
	}
	struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
	char errbuf[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	CURLcode rc = curl_easy_perform(h);
	*status = 0;
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	else
		snprintf(err, errsz, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	return rc == CURLE_OK ? 0 : -1;
}
