/* http.c - request parameters, bounded body reading and the response writer (see http.h). */
#include "http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonx.h"
#include "log.h"
#include "memgauge.h"
#include "util.h"

void request_init(struct request *req, const struct http_io *io)
{
	memset(req, 0, sizeof(*req));
	req->io = io;
	const char *m = io->param(io->ctx, "REQUEST_METHOD");
	req->method = m ? m : "";
	const char *uri = io->param(io->ctx, "REQUEST_URI");
	if (!uri || !uri[0]) {
		/* Plain CGI servers that lack REQUEST_URI: rebuild it from SCRIPT_NAME + PATH_INFO. */
		const char *sn = io->param(io->ctx, "SCRIPT_NAME");
		const char *pi = io->param(io->ctx, "PATH_INFO");
		req->path = xasprintf("%s%s", sn ? sn : "", pi ? pi : "");
	} else {
		size_t n = strcspn(uri, "?#");
		req->path = xstrndup(uri, n);
	}
	/* A site in a subdirectory (https://example.com/ai/v1/..., .../ai/metrics): route on the
	 * part from /v1/, or on /metrics. */
	if (!str_has_prefix(req->path, "/v1/")) {
		char *v1 = strstr(req->path, "/v1/");
		size_t n = strlen(req->path);
		if (v1)
			memmove(req->path, v1, strlen(v1) + 1);
		else if (n > 8 && strcmp(req->path + n - 8, "/metrics") == 0)
			memmove(req->path, req->path + n - 8, 9);
	}
	req->remote_addr = io->param(io->ctx, "REMOTE_ADDR");
	const char *cl = io->param(io->ctx, "CONTENT_LENGTH");
	long long v;
	req->content_length = (cl && cl[0] && parse_ll(cl, &v) == 0 && v >= 0) ? v : -1;
	buf_init(&req->body, 0);
}

void request_free(struct request *req)
{
	free(req->path);
	buf_free(&req->body);
}

const char *request_header(const struct request *req, const char *name)
{
	char key[128] = "HTTP_";
	size_t n = strlen(name);
	if (n + 6 > sizeof(key))
		return NULL;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (c == '-')
			c = '_';
		else if (c >= 'a' && c <= 'z')
			c = (char)(c - 32);
		key[5 + i] = c;
	}
	key[5 + n] = '\0';
	const char *v = req->io->param(req->io->ctx, key);
	/* Apache hands a header that an .htaccess rewrite copied ([E=HTTP_AUTHORIZATION:...]) to the
	 * application as REDIRECT_HTTP_AUTHORIZATION. */
	if (!v && strcmp(key, "HTTP_AUTHORIZATION") == 0)
		v = req->io->param(req->io->ctx, "REDIRECT_HTTP_AUTHORIZATION");
	return v;
}

int request_read_body(struct request *req, size_t max, struct rerr *err)
{
	req->body.max = max;
	if (req->content_length > (long long)max)
		return rerr_set(err, 413, "invalid_request_error", "request_too_large", NULL,
				"Request body of %lld bytes exceeds the limit of %zu bytes.",
				req->content_length, max);
	/* Without CONTENT_LENGTH (plain CGI with a chunked body) read to the end, bounded. */
	size_t want = req->content_length >= 0 ? (size_t)req->content_length : max + 1;
	/* Small: the deepest stack pages a worker ever touches stay its own for good (and a call in
	 * flight is mostly its worker's stack), so no frame on a request's path is large. */
	char chunk[4096];
	while (req->body.len < want) {
		size_t n = want - req->body.len < sizeof(chunk) ? want - req->body.len : sizeof(chunk);
		long r = req->io->read(req->io->ctx, chunk, n);
		if (r == -2)
			return rerr_set(err, 408, "invalid_request_error", "request_timeout", NULL,
					"The request body did not arrive in time (%zu of %lld bytes "
					"received).", req->body.len, req->content_length);
		if (r < 0)
			return rerr_set(err, 400, "invalid_request_error", NULL, NULL,
					"Could not read the request body.");
		if (r == 0)
			break;
		if (buf_append(&req->body, chunk, (size_t)r) < 0) {
			/* Not too large: the process cannot hold another body now. */
			if (memgauge_refused())
				return rerr_server_busy(err, memgauge_cap() >> 20);
			return rerr_set(err, 413, "invalid_request_error", "request_too_large", NULL,
					"Request body exceeds the limit of %zu bytes.", max);
		}
	}
	if (req->content_length >= 0 && req->body.len < (size_t)req->content_length)
		return rerr_set(err, 400, "invalid_request_error", NULL, NULL,
				"Request body ended after %zu of %lld bytes.", req->body.len,
				req->content_length);
	return 0;
}

void response_init(struct response *resp, const struct http_io *io)
{
	memset(resp, 0, sizeof(*resp));
	resp->io = io;
	buf_init(&resp->headers, 65536);
}

void response_free(struct response *resp)
{
	buf_free(&resp->headers);
}

void resp_header(struct response *resp, const char *name, const char *fmt, ...)
{
	if (resp->started)
		return;
	struct buf v;
	buf_init(&v, 16384);
	va_list ap;
	va_start(ap, fmt);
	int rc = buf_vprintf(&v, fmt, ap);
	va_end(ap);
	if (rc == 0) {
		/* A value may carry what a client sent (a model name): its control characters (CR, LF,
		 * ESC, C1, U+2028...) are escaped, never written raw. */
		size_t cap = v.len * 4 + 1;
		char *e = xmalloc(cap);
		log_escape(e, cap, buf_str(&v), v.len);
		size_t start = resp->headers.len;
		if (buf_printf(&resp->headers, "%s: %s\r\n", name, e) < 0) {
			resp->headers.len = start;
			if (resp->headers.p)
				resp->headers.p[start] = '\0';
		}
		free(e);
	}
	buf_free(&v);
}

int resp_write(struct response *resp, const char *p, size_t n)
{
	if (resp->client_gone)
		return -1;
	if (n && resp->io->write(resp->io->ctx, p, n) < 0) {
		resp->client_gone = 1;
		return -1;
	}
	resp->bytes_out += (int64_t)n;
	return 0;
}

int resp_flush(struct response *resp)
{
	if (resp->client_gone)
		return -1;
	if (resp->io->flush(resp->io->ctx) < 0) {
		resp->client_gone = 1;
		return -1;
	}
	return 0;
}

int resp_begin(struct response *resp, int status, const char *content_type)
{
	if (resp->started)
		return 0;
	resp->status = status;
	resp->started = 1;
	char head[256];
	int n = snprintf(head, sizeof(head), "Status: %d %s\r\nContent-Type: %s\r\n", status,
			 http_reason(status), content_type);
	if (resp_write(resp, head, (size_t)n) < 0)
		return -1;
	if (resp_write(resp, buf_str(&resp->headers), resp->headers.len) < 0)
		return -1;
	return resp_write(resp, "\r\n", 2);
}

int resp_json(struct response *resp, int status, const json_t *body)
{
	struct buf out;
	buf_init(&out, BUF_UNLIMITED);
	json_to_buf(body, &out);
	buf_putc(&out, '\n');
	resp_header(resp, "Content-Length", "%zu", out.len);
	int rc = resp_begin(resp, status, "application/json");
	if (rc == 0)
		rc = resp_write(resp, out.p, out.len);
	buf_free(&out);
	return rc;
}

int resp_json_text(struct response *resp, int status, const char *text, size_t len)
{
	resp_header(resp, "Content-Length", "%zu", len + 1);
	int rc = resp_begin(resp, status, "application/json");
	if (rc == 0)
		rc = resp_write(resp, text ? text : "", len);
	if (rc == 0)
		rc = resp_write(resp, "\n", 1);
	return rc;
}

int resp_error(struct response *resp, const struct rerr *e)
{
	if (e->retry_after > 0)
		resp_header(resp, "Retry-After", "%ld", e->retry_after);
	if (e->should_retry >= 0)
		resp_header(resp, "X-Should-Retry", "%s", e->should_retry ? "true" : "false");
	json_t *env = rerr_envelope(e);
	int rc = resp_json(resp, e->status ? e->status : 500, env);
	json_decref(env);
	return rc;
}
