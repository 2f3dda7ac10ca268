/* fcgi_io.c - FastCGI (libfcgi FCGX_ API) and plain CGI behind struct http_io.
 *
 * Threading: FCGX_Init runs once in main before threads start; each worker owns its FCGX_Request.
 * FCGX_Accept_r is called under accept_mu. Parameter strings returned by FCGX_GetParam live until
 * FCGX_Finish_r, which is exactly the lifetime promised by struct http_io.
 *
 * Body reads are bounded by the request's read deadline: libfcgi's reads block, and a web server
 * that does not buffer request bodies (Apache mod_proxy_fcgi) passes a slow upload on as it comes.
 * What libfcgi already holds is taken without waiting; otherwise one buffer fill runs with
 * SO_RCVTIMEO set to the time left, so a read that would wait past the deadline fails (-2) and
 * the request is answered 408. Plain CGI polls stdin against the same deadline.
 *
 * Writes are bounded the same way (SO_SNDTIMEO set to the time left before each write and flush):
 * a client that stops reading, or reads a trickle, makes them fail at the request's write deadline
 * as if it had left. A request's head (BEGIN_REQUEST and its parameters) is read by libfcgi inside
 * FCGX_Accept_r, under accept_mu: the listening socket carries a receive timeout of HEAD_TIMEOUT_MS,
 * which accepted connections inherit, so a connection that sends nothing for that long is dropped instead of
 * holding every other worker off accept; accept itself returns without a connection as often, and is
 * called again.
 */
#include "fcgi_io.h"

#include <errno.h>
#include <fcntl.h>
#include <fastcgi.h>
#include <fcgiapp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "util.h"

struct fcgi_conn {
	FCGX_Request rq;
	struct http_io io;
	int accepted;
	int wrote;                     /* response bytes were handed to libfcgi */
	int64_t read_deadline_us;      /* body reads give up then (0 = never) */
	int64_t write_deadline_us;     /* writes give up then (0 = never) */
};

#define HEAD_TIMEOUT_MS 1000

static pthread_mutex_t accept_mu = PTHREAD_MUTEX_INITIALIZER;
static int stop_pending;

/* libfcgi's blocking reads (opt SO_RCVTIMEO) or writes (SO_SNDTIMEO) of fd give up after ms (0 =
 * never). */
static void set_timeout(int fd, int opt, int64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
	(void)setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

void fcgi_io_prepare_listener(int fd)
{
	set_timeout(fd, SO_RCVTIMEO, HEAD_TIMEOUT_MS);
}

int fcgi_io_init(void)
{
	return FCGX_Init() == 0 ? 0 : -1;
}

int fcgi_io_is_fastcgi(void)
{
	return !FCGX_IsCGI();
}

int fcgi_io_listen(const char *spec, int backlog)
{
	/* libfcgi binds ":PORT" to every interface; a FastCGI socket must never be reachable from
	 * outside (CVE-2025-23016), so only an address (not a wildcard one) or a unix socket path is
	 * accepted. */
	if (spec[0] == ':' || str_has_prefix(spec, "0.0.0.0:") || str_has_prefix(spec, "[::]:") ||
	    str_has_prefix(spec, "*:")) {
		errno = EINVAL;
		return -1;
	}
	int fd = FCGX_OpenSocket(spec, backlog);
	/* A unix socket: the owner and its group (the web server's) only. */
	if (fd >= 0 && !strchr(spec, ':') && chmod(spec, 0660) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

void fcgi_io_shutdown_pending(void)
{
	__atomic_store_n(&stop_pending, 1, __ATOMIC_RELAXED);
	FCGX_ShutdownPending();
}

static const char *fcgi_param(void *ctx, const char *name)
{
	struct fcgi_conn *c = ctx;
	return FCGX_GetParam(name, c->rq.envp);
}

static long fcgi_read(void *ctx, char *p, size_t n)
{
	struct fcgi_conn *c = ctx;
	FCGX_Stream *in = c->rq.in;
	if (n > (size_t)1 << 30)
		n = (size_t)1 << 30;
	size_t held = in->stop > in->rdNext ? (size_t)(in->stop - in->rdNext) : 0;
	int r;
	if (!c->read_deadline_us || held > 0 || in->isClosed) {
		/* Without a deadline, or from what libfcgi holds: no wait. */
		r = FCGX_GetStr(p, (int)(c->read_deadline_us && held < n ? held : n), in);
	} else {
		int64_t left_ms = (c->read_deadline_us - clock_mono_us() + 999) / 1000;
		if (left_ms <= 0)
			return -2;
		/* One byte: one buffer fill, whose reads each wait at most the time left; the rest of
		 * what it brought is taken by the next call without waiting. */
		set_timeout(c->rq.ipcFd, SO_RCVTIMEO, left_ms);
		r = FCGX_GetStr(p, 1, in);
		set_timeout(c->rq.ipcFd, SO_RCVTIMEO, 0);
	}
	if (r == 0 && FCGX_GetError(in) != 0) {
		int e = FCGX_GetError(in);
		return e == EAGAIN || e == EWOULDBLOCK ? -2 : -1;
	}
	return r;
}

static void fcgi_set_read_deadline(void *ctx, int64_t deadline_us)
{
	struct fcgi_conn *c = ctx;
	c->read_deadline_us = deadline_us;
}

static void fcgi_set_write_deadline(void *ctx, int64_t deadline_us)
{
	struct fcgi_conn *c = ctx;
	c->write_deadline_us = deadline_us;
}

/* Before a write or flush that may block: the time left to the write deadline, as the socket's
 * send timeout (a write that can make no progress until then fails). -1 when it has passed. */
static int write_window(struct fcgi_conn *c)
{
	if (!c->write_deadline_us)
		return 0;
	int64_t left_ms = (c->write_deadline_us - clock_mono_us() + 999) / 1000;
	if (left_ms <= 0)
		return -1;
	set_timeout(c->rq.ipcFd, SO_SNDTIMEO, left_ms);
	return 0;
}

static int fcgi_write(void *ctx, const char *p, size_t n)
{
	struct fcgi_conn *c = ctx;
	c->wrote = 1;
	if (write_window(c) < 0)
		return -1;
	while (n > 0) {
		int chunk = n > (size_t)1 << 30 ? 1 << 30 : (int)n;
		if (FCGX_PutStr(p, chunk, c->rq.out) != chunk)
			return -1;
		p += chunk;
		n -= (size_t)chunk;
	}
	return FCGX_GetError(c->rq.out) == 0 ? 0 : -1;
}

static int fcgi_flush(void *ctx)
{
	struct fcgi_conn *c = ctx;
	if (write_window(c) < 0)
		return -1;
	return FCGX_FFlush(c->rq.out) == 0 ? 0 : -1;
}

static int fcgi_peer_fd(void *ctx)
{
	struct fcgi_conn *c = ctx;
	return c->accepted ? c->rq.ipcFd : -1;
}

/* The request is read whole before any upstream call, so what arrives on the connection now is
 * the web server closing it (the client left), an FCGI_ABORT_REQUEST record, or the empty
 * FCGI_STDIN record that ends the body when the body was read without it. */
static int fcgi_peer_gone(void *ctx)
{
	struct fcgi_conn *c = ctx;
	if (!c->accepted || c->rq.ipcFd < 0)
		return 1;
	unsigned char hdr[8];
	ssize_t n = recv(c->rq.ipcFd, hdr, sizeof(hdr), MSG_PEEK | MSG_DONTWAIT);
	if (n == 0)
		return 1;
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 2 : 1;
	if (n >= 2 && hdr[1] == FCGI_ABORT_REQUEST)
		return 1;
	if (n == (ssize_t)sizeof(hdr) && hdr[1] == FCGI_STDIN && hdr[4] == 0 && hdr[5] == 0) {
		/* The end of the body: let libfcgi consume it, then keep watching. */
		char b;
		FCGX_GetStr(&b, 1, c->rq.in);
		return 2;
	}
	return 0;
}

/* An empty FCGI_STDERR record: the web server reads a record (which restarts mod_fcgid's
 * FcgidIOTimeout and lighttpd's read-timeout), logs nothing and sends the client nothing. Written
 * straight to the socket, which is safe only while libfcgi holds no output of this request; the
 * router never writes to libfcgi's error stream, so libfcgi ends no stderr stream of its own. */
static void fcgi_heartbeat(void *ctx)
{
	struct fcgi_conn *c = ctx;
	if (!c->accepted || c->wrote || c->rq.ipcFd < 0)
		return;
	const unsigned char rec[8] = { FCGI_VERSION_1, FCGI_STDERR,
				       (unsigned char)(c->rq.requestId >> 8),
				       (unsigned char)(c->rq.requestId & 0xff), 0, 0, 0, 0 };
	(void)!send(c->rq.ipcFd, rec, sizeof(rec), MSG_NOSIGNAL);
}

struct fcgi_conn *fcgi_conn_new(int listen_fd)
{
	struct fcgi_conn *c = xcalloc(1, sizeof(*c));
	FCGX_InitRequest(&c->rq, listen_fd, 0);
	c->io.param = fcgi_param;
	c->io.read = fcgi_read;
	c->io.write = fcgi_write;
	c->io.flush = fcgi_flush;
	c->io.ctx = c;
	c->io.peer_fd = fcgi_peer_fd;
	c->io.peer_gone = fcgi_peer_gone;
	c->io.heartbeat = fcgi_heartbeat;
	c->io.set_read_deadline = fcgi_set_read_deadline;
	c->io.set_write_deadline = fcgi_set_write_deadline;
	return c;
}

void fcgi_conn_free(struct fcgi_conn *c)
{
	if (!c)
		return;
	FCGX_Free(&c->rq, 1);
	free(c);
}

int fcgi_conn_accept(struct fcgi_conn *c)
{
	int rc;
	for (;;) {
		pthread_mutex_lock(&accept_mu);
		rc = FCGX_Accept_r(&c->rq);
		pthread_mutex_unlock(&accept_mu);
		/* No connection within HEAD_TIMEOUT_MS (the listening socket's timeout): again. */
		if ((rc != -EAGAIN && rc != -EWOULDBLOCK) || __atomic_load_n(&stop_pending, __ATOMIC_RELAXED))
			break;
	}
	c->accepted = rc >= 0;
	c->wrote = 0;
	c->read_deadline_us = 0;
	c->write_deadline_us = 0;
	if (rc < 0) {
		errno = rc == -9999 ? EIO : -rc;
		return -1;
	}
	/* The head is read: the request's own deadlines apply from here. */
	set_timeout(c->rq.ipcFd, SO_RCVTIMEO, 0);
	return 0;
}

const struct http_io *fcgi_conn_io(struct fcgi_conn *c)
{
	return &c->io;
}

void fcgi_conn_finish(struct fcgi_conn *c)
{
	if (c->accepted)
		FCGX_Finish_r(&c->rq);
	c->accepted = 0;
}

/* ---- plain CGI ---- */

static const char *cgi_param(void *ctx, const char *name)
{
	(void)ctx;
	return getenv(name);
}

static long long cgi_body_read;       /* request body bytes consumed from stdin */
static int64_t cgi_read_deadline_us;  /* 0 = none */
static int cgi_read_timed_out;

static long cgi_read(void *ctx, char *p, size_t n)
{
	(void)ctx;
	for (;;) {
		if (cgi_read_deadline_us) {
			int64_t left_ms = (cgi_read_deadline_us - clock_mono_us() + 999) / 1000;
			struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN, .revents = 0 };
			int pr = left_ms > 0 ? poll(&pfd, 1, left_ms > 3600000 ? 3600000 : (int)left_ms) : 0;
			if (pr < 0 && errno == EINTR)
				continue;
			if (pr == 0) {
				cgi_read_timed_out = 1;
				return -2;
			}
		}
		ssize_t r = read(STDIN_FILENO, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r > 0)
			cgi_body_read += r;
		return (long)r;
	}
}

static void cgi_set_read_deadline(void *ctx, int64_t deadline_us)
{
	(void)ctx;
	cgi_read_deadline_us = deadline_us;
}

void cgi_drain_body(void)
{
	/* Under mod_cgid stdin and stdout are one socket: closing it with request bytes still unread
	 * resets the connection, and Apache loses the response (a 401 or 413 is sent without reading
	 * the body). Read the rest - CONTENT_LENGTH says how much; without it, until EOF - giving up
	 * after a second of silence, 64 MiB or the body's deadline. A body that missed its deadline is
	 * not waited for: the client is too slow to matter, and the process ends now. */
	if (cgi_read_timed_out)
		return;
	const char *cl = getenv("CONTENT_LENGTH");
	long long want = -1;
	if (cl && cl[0] && parse_ll(cl, &want) < 0)
		want = -1;
	long long left = want >= 0 ? want - cgi_body_read : (64LL << 20);
	if (left > (64LL << 20))
		left = 64LL << 20;
	char sink[16384];
	while (left > 0) {
		/* Within the body's deadline too (server.body_timeout_ms from the request's start): a
		 * client dripping a body it was refused does not keep the process. */
		int wait_ms = 1000;
		if (cgi_read_deadline_us) {
			int64_t until_ms = (cgi_read_deadline_us - clock_mono_us()) / 1000;
			if (until_ms <= 0)
				break;
			if (until_ms < wait_ms)
				wait_ms = (int)until_ms;
		}
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		int pr = poll(&pfd, 1, wait_ms);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			break;
		ssize_t r = read(STDIN_FILENO, sink, left < (long long)sizeof(sink) ? (size_t)left : sizeof(sink));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		left -= r;
	}
}

void cgi_close_response(void)
{
	fflush(stdout);
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		close(STDOUT_FILENO);
		close(STDIN_FILENO);
		return;
	}
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

static int cgi_write(void *ctx, const char *p, size_t n)
{
	(void)ctx;
	return fwrite(p, 1, n, stdout) == n ? 0 : -1;
}

static int cgi_flush(void *ctx)
{
	(void)ctx;
	return fflush(stdout) == 0 ? 0 : -1;
}

/* The web server signals a CGI program whose client left (mod_cgid sends SIGTERM): the handler
 * writes to a pipe the request's waits watch, so the upstream call stops and the log row is still
 * written before the process exits. */
static int cgi_term_pipe[2] = { -1, -1 };
static volatile sig_atomic_t cgi_terminated;

static void cgi_on_term(int sig)
{
	(void)sig;
	int saved = errno;
	cgi_terminated = 1;
	if (cgi_term_pipe[1] >= 0)
		(void)!write(cgi_term_pipe[1], "t", 1);
	errno = saved;
}

static int cgi_peer_fd(void *ctx)
{
	(void)ctx;
	return cgi_term_pipe[0];
}

static int cgi_peer_gone(void *ctx)
{
	(void)ctx;
	return cgi_terminated ? 1 : 2;
}

const struct http_io *cgi_io(void)
{
	static const struct http_io io = { cgi_param, cgi_read, cgi_write, cgi_flush, NULL,
					   cgi_peer_fd, cgi_peer_gone, NULL, cgi_set_read_deadline, NULL };
	if (cgi_term_pipe[0] < 0 && pipe2(cgi_term_pipe, O_CLOEXEC | O_NONBLOCK) == 0) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = cgi_on_term;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
	}
	return &io;
}
