/* http.h - the request and response as the handlers see them, independent of FastCGI or CGI.
 *
 * The web-server side (fcgi_io.c) fills a struct http_io with four operations: look up a CGI
 * parameter, read body bytes, write response bytes, flush. Everything above it - routes,
 * handlers, the upstream relay - uses only these structs, so it runs the same under FastCGI,
 * plain CGI and the unit tests.
 *
 * Response protocol: headers are collected with resp_header(), then resp_begin() writes the CGI
 * "Status:" line and all headers once; after that only body bytes may follow. A write or flush
 * that fails marks the client as gone; later writes are dropped and return -1.
 */
#ifndef ROUTER_HTTP_H
#define ROUTER_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "errors.h"

struct http_io {
	/* Value of a CGI/FastCGI parameter ("REQUEST_METHOD", "HTTP_AUTHORIZATION"), or NULL. The
	 * string stays valid until the request ends. */
	const char *(*param)(void *ctx, const char *name);
	/* Reads up to n body bytes; returns the count, 0 at the end, -1 on error, -2 when the deadline
	 * set with set_read_deadline passed first. */
	long (*read)(void *ctx, char *p, size_t n);
	/* Writes n bytes (buffered); returns 0 or -1 when the client is gone. */
	int (*write)(void *ctx, const char *p, size_t n);
	/* Pushes buffered bytes to the web server; returns 0 or -1 when the client is gone. */
	int (*flush)(void *ctx);
	void *ctx;
	/* Optional (NULL = not available): the descriptor of the connection to the web server, which
	 * becomes readable when the client leaves, and the check to run when it does: 1 = the client
	 * is gone, 2 = it is not (keep watching), 0 = it is not (stop watching: the descriptor will
	 * stay readable). */
	int (*peer_fd)(void *ctx);
	int (*peer_gone)(void *ctx);
	/* Optional: tells the web server the request is alive, without sending the client anything,
	 * while no response byte has been written yet. */
	void (*heartbeat)(void *ctx);
	/* Optional: body reads that would wait past deadline_us (clock_mono_us) return -2. */
	void (*set_read_deadline)(void *ctx, int64_t deadline_us);
	/* Optional: writes and flushes that would wait past deadline_us fail (-1, as when the client
	 * is gone): a client that stops reading, or reads a trickle, holds its worker until then. */
	void (*set_write_deadline)(void *ctx, int64_t deadline_us);
};

struct request {
	const struct http_io *io;
	const char *method;            /* "GET", "POST", ... ("" if absent) */
	char *path;                    /* REQUEST_URI without the query string, owned */
	const char *remote_addr;
	long long content_length;      /* -1 when absent */
	struct buf body;
};

struct response {
	const struct http_io *io;
	int status;
	int started;                   /* the status line and headers have been written */
	int client_gone;
	struct buf headers;            /* "Name: value\r\n" lines collected before resp_begin */
	int64_t bytes_out;
};

/* Reads REQUEST_METHOD, REQUEST_URI, CONTENT_LENGTH and REMOTE_ADDR. */
void request_init(struct request *req, const struct http_io *io);
void request_free(struct request *req);
/* Value of request header `name` ("X-Task-Type"), looked up as HTTP_X_TASK_TYPE, or NULL. */
const char *request_header(const struct request *req, const char *name);
/* Reads the body into req->body. Fails with 413 when it exceeds max bytes, 400 when it is
 * shorter than CONTENT_LENGTH, 408 when it did not arrive before the read deadline and 503
 * server_busy when the process's calls in flight hold server.call_memory_mb (memgauge.h). */
int request_read_body(struct request *req, size_t max, struct rerr *err);

void response_init(struct response *resp, const struct http_io *io);
void response_free(struct response *resp);
/* Adds a header line; ignored after resp_begin. Control characters of the value are escaped
 * (log_escape); a value over 16 KiB is left out. */
void resp_header(struct response *resp, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int resp_begin(struct response *resp, int status, const char *content_type);
int resp_write(struct response *resp, const char *p, size_t n);
int resp_flush(struct response *resp);
/* Sends a whole JSON response with Content-Length. Does not steal body. */
int resp_json(struct response *resp, int status, const json_t *body);
/* The same for a body already serialised (len bytes of JSON text). */
int resp_json_text(struct response *resp, int status, const char *text, size_t len);
/* Sends the OpenAI error envelope for e, with Retry-After when e->retry_after > 0. */
int resp_error(struct response *resp, const struct rerr *e);

#endif
