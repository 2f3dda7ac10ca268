/* upstream.h - blocking HTTP calls to providers; the only module that uses libcurl.
 *
 * Each worker thread owns one struct upstream for its whole life (its easy handle and a wake-up
 * descriptor); one transfer engine per process (a libcurl multi handle on a thread of its own)
 * drives every call in flight, so connections, TLS sessions, DNS answers and the parsed CA bundle
 * are held once per process and shared by every worker. A call is one blocking
 * upstream_perform(); the response is handed to the caller as it arrives through callbacks (head
 * once, body pieces, a tick at least every 200 ms), all run on the calling thread, any of which
 * can abort the transfer. The wait also watches one more descriptor - the client's connection - so
 * a client that leaves stops the upstream transfer at once, even while the provider sends nothing.
 *
 * Timeouts: connect; timeout_ms until the caller reports content (on_body returning
 * UPSTREAM_PROGRESS_CONTENT: a non-streaming call never does, so it bounds the whole call); idle
 * time between pieces the caller reports as data (UPSTREAM_PROGRESS_DATA: SSE comments and other
 * bytes that carry nothing do not count); and total_ms, the hard bound of the whole call. libcurl
 * re-sends a request by itself when a reused connection dies before any reply byte: the body is
 * handed over through a read callback so that each re-send is counted (res->resends).
 */
#ifndef ROUTER_UPSTREAM_H
#define ROUTER_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

struct upstream_req {
	char *url;
	char **headers;      /* "Name: value" lines (may hold the API key: never log them) */
	size_t n_headers;
	char *body;
	size_t body_len;
	size_t body_counted;  /* bytes of body in the gauge of call memory, released with it */
	int stream;
};

void upstream_req_free(struct upstream_req *r);
void upstream_req_add_header(struct upstream_req *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

struct upstream_opts {
	long connect_timeout_ms;
	long timeout_ms;          /* until the first content (non-stream: the whole call) */
	long idle_timeout_ms;     /* stream: longest time between two pieces carrying data; 0 = none */
	long total_ms;            /* the whole call, whatever arrives (the request's deadline); 0 = none */
	const char *proxy;        /* "" = no proxy; without credentials */
	const char *proxy_user;   /* the proxy's credentials, or NULL */
	const char *proxy_password;
	const char *ca_file;      /* "" = system bundle */
	int watch_fd;             /* the client's connection, watched while waiting; -1 = none */
};

struct upstream_head {
	long status;
	const char *content_type;   /* "" if absent */
	long retry_after;           /* seconds, 0 if absent */
	const char *request_id;     /* x-request-id / request-id, "" if absent */
};

/* What a piece of the body carried, as on_body understood it (a mask). */
#define UPSTREAM_PROGRESS_DATA 1      /* something for the client: resets the idle timer */
#define UPSTREAM_PROGRESS_CONTENT 2   /* content has arrived (now or before): ends timeout_ms */

struct upstream_cb {
	int (*on_head)(void *ud, const struct upstream_head *h);   /* 0 = go on, -1 = abort */
	/* -1 = abort, otherwise a mask of UPSTREAM_PROGRESS_* (0 = bytes that carry nothing) */
	int (*on_body)(void *ud, const char *p, size_t n);
	int (*on_tick)(void *ud);                                  /* 0 = go on, -1 = abort */
	/* watch_fd became readable: -1 = abort (the client is gone), 1 = go on watching, 0 = go on
	 * without watching */
	int (*on_watch)(void *ud);
	void *ud;
};

enum upstream_fail {
	UPSTREAM_OK = 0,          /* a complete HTTP response arrived (any status) */
	UPSTREAM_CONNECT,         /* DNS or TCP/TLS connection failed */
	UPSTREAM_TIMEOUT,         /* connect timeout, or no content within timeout_ms */
	UPSTREAM_STALLED,         /* no data within idle_timeout_ms */
	UPSTREAM_ABORTED,         /* a callback asked to stop */
	UPSTREAM_BROKEN,          /* connection lost or protocol error mid-response */
	UPSTREAM_DEADLINE,        /* total_ms ran out (the stream may have sent content) */
};

struct upstream_result {
	enum upstream_fail fail;
	long status;
	long retry_after;
	char request_id[128];
	char content_type[128];
	char error[256];          /* human-readable transport error, no secrets */
	double total_ms;          /* whole transfer */
	double connect_ms;
	int64_t body_bytes;
	int resends;              /* times libcurl sent the request again on a fresh connection after
				   * a reused one died before any reply byte (each reached the provider) */
};

/* A one-off POST of a JSON body on a handle of its own (alert webhooks). Returns 0 with *status
 * set when an answer arrived, -1 with err set otherwise. */
int upstream_post_json(const char *url, const char *body, long timeout_ms, long *status, char *err,
		       size_t errsz);

int upstream_global_init(void);
/* Stops this process's transfer engine (no call may be in flight); also before a fork whose
 * child makes no provider call. upstream_new starts it again. */
void upstream_shutdown(void);
void upstream_global_cleanup(void);
struct upstream *upstream_new(void);
void upstream_free(struct upstream *u);
/* Performs the call. Returns 0 when a complete response arrived (inspect res->status), -1 on a
 * transport failure or abort (res->fail and res->error say which). */
int upstream_perform(struct upstream *u, const struct upstream_req *req,
		     const struct upstream_opts *opts, const struct upstream_cb *cb,
		     struct upstream_result *res);

#endif
