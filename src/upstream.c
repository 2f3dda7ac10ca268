/* upstream.c - provider calls: each worker makes one blocking call; one transfer engine per
 * process drives every call in flight.
 *
 * The engine is a thread of its own around one libcurl multi handle, so that everything libcurl
 * caches is held once per process and shared by every call: the connection cache (TLS and TCP
 * connections to a provider are reused by whichever worker calls next), the parsed CA bundle
 * (libcurl keeps it per multi handle) and, through a share handle, the DNS cache and the TLS
 * sessions. A worker keeps its own easy handle (configured anew for every call, see
 * upstream_perform), hands it to the engine and waits on an eventfd of its own, which the engine
 * signals when the head has arrived, when body bytes are waiting and when the transfer is over.
 * The worker alone runs the caller's callbacks (head, body, tick, watch), so a slow client or a
 * slow translation holds back only its own call: body bytes wait for the worker in an inbox of at
 * most INBOX_MAX bytes, and past that the engine pauses the transfer (CURL_WRITEFUNC_PAUSE) until
 * the worker has taken them. The worker also applies every timeout beyond libcurl's connect
 * timeout (until the first content, idle time between data, the total bound) and watches the
 * client's connection; to stop a transfer it asks the engine to remove it and waits until it is
 * gone, so the easy handle and the call's state are never touched by two threads at once.
 *
 * CURLOPT_NOSIGNAL is set because the process is threaded; SIGPIPE is ignored process-wide by the
 * server. CURLOPT_PROXY is always set so that proxy variables in the environment can never divert
 * provider traffic. The request body goes through a read callback with a seek callback: libcurl
 * rewinds it exactly when it sends the request again on a fresh connection (a reused connection
 * that died before any reply byte), which is how res->resends counts the POSTs the provider
 * received that the caller did not ask for.
 */
#include "upstream.h"

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "memgauge.h"
#include "util.h"

/* Longest wait of a worker between two looks at its call (timeouts, ticks, the client). */
#define TICK_MS 200
/* Body bytes waiting for a worker before the engine pauses its transfer. */
#define INBOX_MAX (64 * 1024)
/* A call that is not streamed wakes its worker only when it is over or when this much of its
 * body waits: its worker has nothing to relay before the end, and each wake is two context
 * switches on a busy core (its head and body are still taken at every TICK_MS, so the idle
 * timeout sees the body arrive). */
#define INBOX_WAKE_LAZY (INBOX_MAX / 2)
/* Longest sleep of the engine without anything to do (libcurl's own timers shorten it). */
#define ENGINE_IDLE_MS 1000

struct upstream {
	CURL *h;
	int evfd;        /* signalled by the engine */
	int wakes;       /* the engine's wakes under way (atomic): the eventfd stays open for them */
};

enum xfer_state { X_IDLE, X_ADD, X_ACTIVE, X_DONE };

struct call {
	/* The worker's own. */
	const struct upstream_opts *opts;
	const struct upstream_cb *cb;
	struct upstream_result *res;
	int64_t t0_us;
	int64_t last_data_us;      /* last piece carrying data (or the first body byte) */
	int content;               /* on_body reported content */
	int stop;                  /* enum upstream_fail to report when we aborted */
	int head_taken;
	/* The engine's while the transfer runs (libcurl's callbacks); the worker reads them once
	 * the transfer is over. */
	const char *body;          /* the request body, sent through on_read */
	size_t body_len;
	size_t body_off;
	int resends;
	int head_done;
	long status;
	long retry_after;          /* -1: an HTTP date, converted by libcurl after the transfer */
	char content_type[128];
	char request_id[128];
	/* Shared, under E.mu. */
	struct call *next;         /* on the engine's pending list */
	int queued;
	enum xfer_state state;
	int want_cancel;
	int want_unpause;
	int paused;
	int head_ready;
	int lazy;                  /* not streamed: wake the worker as INBOX_WAKE_LAZY says */
	struct upstream_head head; /* copied at the end of the head; its strings point below */
	char head_ct[128];
	char head_id[128];
	struct buf inbox;
	CURLcode result;
	CURL *h;
	struct upstream *u;
};

/* The process's transfer engine. */
static struct {
	pthread_mutex_t mu;          /* the pending list and every call's shared fields */
	pthread_mutex_t start_mu;
	pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
	CURLM *m;
	CURLSH *sh;
	pthread_t thread;
	pid_t pid;                   /* the process that started it (none is carried across fork) */
	int running;
	int stop;
	struct call *pending;
	struct call **work;          /* the engine's own: the calls taken from the list */
	size_t work_cap;
} E = { .mu = PTHREAD_MUTEX_INITIALIZER, .start_mu = PTHREAD_MUTEX_INITIALIZER };

void upstream_req_free(struct upstream_req *r)
{
	free(r->url);
	for (size_t i = 0; i < r->n_headers; i++) {
		explicit_bzero(r->headers[i], strlen(r->headers[i]));
		free(r->headers[i]);
	}
	free(r->headers);
	free(r->body);
	memgauge_release(r->body_counted);
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

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *ud)
{
	(void)h;
	(void)a;
	(void)ud;
	pthread_mutex_lock(&E.share_mu[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *ud)
{
	(void)h;
	(void)ud;
	pthread_mutex_unlock(&E.share_mu[d]);
}

/* A worker is woken in two steps: wake_hold under E.mu, wake_send once E.mu is let go, so
 * that the woken worker does not find the lock still held by the engine and sleep on it again
 * (two more context switches a wake on a busy core). The hold keeps the worker's eventfd open
 * until the send (upstream_free waits for it), though the call itself may be over by then. */
static struct upstream *wake_hold(struct call *c)
{
	__atomic_add_fetch(&c->u->wakes, 1, __ATOMIC_RELAXED);
	return c->u;
}

static void wake_send(struct upstream *u)
{
	if (!u)
		return;
	uint64_t one = 1;
	ssize_t w;
	do
		w = write(u->evfd, &one, sizeof(one));
	while (w < 0 && errno == EINTR);
	__atomic_sub_fetch(&u->wakes, 1, __ATOMIC_RELEASE);
}

/* Under E.mu: puts the call on the engine's list (once). The caller wakes the engine. */
static void enqueue(struct call *c)
{
	if (c->queued)
		return;
	c->queued = 1;
	c->next = E.pending;
	E.pending = c;
}

/* Under E.mu: the transfer is over and out of the multi handle. Once its worker sees that, it
 * returns and the call is gone, so the call leaves the pending list too (a request it made just
 * before the transfer ended is moot). Returns the wake for the caller to send (wake_send) once it
 * has let go of E.mu. */
static struct upstream *finish(struct call *c, CURLcode result)
{
	if (c->queued) {
		for (struct call **pp = &E.pending; *pp; pp = &(*pp)->next) {
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		}
		c->queued = 0;
	}
	if (c->state != X_DONE) {
		c->state = X_DONE;
		c->result = result;
	}
	return wake_hold(c);
}

enum action { A_NONE, A_ADD, A_CANCEL_ACTIVE, A_UNPAUSE };

/* Takes the pending list and does what each call's worker asked: add, remove, resume. */
static void engine_take(void)
{
	pthread_mutex_lock(&E.mu);
	size_t n = 0;
	for (struct call *c = E.pending; c; c = c->next) {
		if (n == E.work_cap) {
			E.work_cap = E.work_cap ? 2 * E.work_cap : 64;
			E.work = xrealloc(E.work, E.work_cap * sizeof(*E.work));
		}
		E.work[n++] = c;
	}
	E.pending = NULL;
	/* What to do with each, decided under the lock; done (libcurl calls) outside it, since
	 * resuming a transfer may call its write callback at once. A call is not freed by its
	 * worker before it is done, and only the engine makes it done. */
	enum action *act = n ? xcalloc(n, sizeof(*act)) : NULL;
	for (size_t i = 0; i < n; i++) {
		struct call *c = E.work[i];
		c->queued = 0;
		if (c->want_cancel && c->state == X_ADD) {
			wake_send(finish(c, CURLE_ABORTED_BY_CALLBACK));
		} else if (c->want_cancel && c->state == X_ACTIVE) {
			act[i] = A_CANCEL_ACTIVE;
		} else if (c->state == X_ADD) {
			act[i] = A_ADD;
		} else if (c->want_unpause && c->state == X_ACTIVE) {
			c->want_unpause = 0;
			c->paused = 0;
			act[i] = A_UNPAUSE;
		}
	}
	pthread_mutex_unlock(&E.mu);
	for (size_t i = 0; i < n; i++) {
		struct call *c = E.work[i];
		switch (act[i]) {
		case A_ADD: {
			CURLMcode mc = curl_multi_add_handle(E.m, c->h);
			struct upstream *wake = NULL;
			pthread_mutex_lock(&E.mu);
			if (mc == CURLM_OK) {
				c->state = X_ACTIVE;
				if (c->want_cancel)
					enqueue(c);    /* asked while it was being added: next round */
			} else {
				wake = finish(c, CURLE_FAILED_INIT);
			}
			pthread_mutex_unlock(&E.mu);
			wake_send(wake);
			break;
		}
		case A_CANCEL_ACTIVE:
			/* Removing an unfinished transfer closes its connection: the provider sees it at
			 * once. */
			curl_multi_remove_handle(E.m, c->h);
			pthread_mutex_lock(&E.mu);
			struct upstream *wake = finish(c, CURLE_ABORTED_BY_CALLBACK);
			pthread_mutex_unlock(&E.mu);
			wake_send(wake);
			break;
		case A_UNPAUSE:
			curl_easy_pause(c->h, CURLPAUSE_CONT);
			break;
		case A_NONE:
			break;
		}
	}
	free(act);
}

static void *engine_main(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&E.mu);
		int stop = E.stop;
		pthread_mutex_unlock(&E.mu);
		if (stop)
			break;
		engine_take();
		int running = 0;
		curl_multi_perform(E.m, &running);
		int left;
		CURLMsg *msg;
		while ((msg = curl_multi_info_read(E.m, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct call *c = NULL;
			CURL *h = msg->easy_handle;
			CURLcode result = msg->data.result;
			curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&c);
			curl_multi_remove_handle(E.m, h);
			pthread_mutex_lock(&E.mu);
			struct upstream *wake = finish(c, result);
			pthread_mutex_unlock(&E.mu);
			wake_send(wake);
		}
		curl_multi_poll(E.m, NULL, 0, ENGINE_IDLE_MS, NULL);
	}
	return NULL;
}

/* Starts the engine of this process once. Returns 0, or -1. */
static int engine_start(void)
{
	int rc = 0;
	pthread_mutex_lock(&E.start_mu);
	if (E.running && E.pid == getpid())
		goto out;
	E.running = 0;    /* a copy inherited across fork has no thread: start one */
	E.stop = 0;
	E.pending = NULL;
	rc = -1;
	E.m = curl_multi_init();
	E.sh = curl_share_init();
	if (!E.m || !E.sh)
		goto fail;
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&E.share_mu[i], NULL);
	curl_share_setopt(E.sh, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(E.sh, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(E.sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(E.sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	/* The multi handle's own connection cache holds every connection (no per-host cap). */
	curl_multi_setopt(E.m, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	int e = pthread_create(&E.thread, &attr, engine_main, NULL);
	pthread_attr_destroy(&attr);
	if (e != 0)
		goto fail;
	pthread_setname_np(E.thread, "llm-upstream");
	E.running = 1;
	E.pid = getpid();
	rc = 0;
	goto out;
fail:
	log_error(NULL, "cannot start the transfer engine");
	curl_multi_cleanup(E.m);
	curl_share_cleanup(E.sh);
	E.m = NULL;
	E.sh = NULL;
out:
	pthread_mutex_unlock(&E.start_mu);
	return rc;
}

void upstream_shutdown(void)
{
	pthread_mutex_lock(&E.start_mu);
	if (E.running && E.pid == getpid()) {
		pthread_mutex_lock(&E.mu);
		E.stop = 1;
		pthread_mutex_unlock(&E.mu);
		curl_multi_wakeup(E.m);
		pthread_join(E.thread, NULL);
		curl_multi_cleanup(E.m);
		curl_share_cleanup(E.sh);
		for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
			pthread_mutex_destroy(&E.share_mu[i]);
		free(E.work);
		E.work = NULL;
		E.work_cap = 0;
	}
	E.running = 0;
	E.m = NULL;
	E.sh = NULL;
	pthread_mutex_unlock(&E.start_mu);
}

int upstream_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_ALL) == CURLE_OK ? 0 : -1;
}

void upstream_global_cleanup(void)
{
	upstream_shutdown();
	curl_global_cleanup();
}

struct upstream *upstream_new(void)
{
	if (engine_start() < 0)
		return NULL;
	struct upstream *u = xcalloc(1, sizeof(*u));
	u->h = curl_easy_init();
	u->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!u->h || u->evfd < 0) {
		curl_easy_cleanup(u->h);
		if (u->evfd >= 0)
			close(u->evfd);
		free(u);
		return NULL;
	}
	return u;
}

void upstream_free(struct upstream *u)
{
	if (!u)
		return;
	curl_easy_cleanup(u->h);
	while (__atomic_load_n(&u->wakes, __ATOMIC_ACQUIRE) > 0)
		sched_yield();    /* a wake of the engine's, sent just after the call's end */
	close(u->evfd);
	free(u);
}

/* The worker's side of a transfer: hands it to the engine, runs the caller's callbacks with what
 * arrives, applies the timeouts and watches the client; returns when the engine says the
 * transfer is over (finished, failed, or removed at our request). */
static int deliver(struct call *c, const char *p, size_t n)
{
	if (c->res->body_bytes == 0)
		c->last_data_us = clock_mono_us();
	c->res->body_bytes += (int64_t)n;
	int got = c->cb->on_body ? c->cb->on_body(c->cb->ud, p, n) : UPSTREAM_PROGRESS_DATA;
	if (got < 0)
		return -1;
	if (got & UPSTREAM_PROGRESS_DATA)
		c->last_data_us = clock_mono_us();
	if (got & UPSTREAM_PROGRESS_CONTENT)
		c->content = 1;
	return 0;
}

/* The reason to stop the transfer now, or 0. */
static int overdue(struct call *c)
{
	int64_t now = clock_mono_us();
	const struct upstream_opts *o = c->opts;
	if (o->total_ms > 0 && now - c->t0_us > (int64_t)o->total_ms * 1000)
		return UPSTREAM_DEADLINE;
	if (!c->content && o->timeout_ms > 0 && now - c->t0_us > (int64_t)o->timeout_ms * 1000)
		return UPSTREAM_TIMEOUT;
	if (c->res->body_bytes > 0 && o->idle_timeout_ms > 0 &&
	    now - c->last_data_us > (int64_t)o->idle_timeout_ms * 1000)
		return UPSTREAM_STALLED;
	if (c->cb->on_tick && c->cb->on_tick(c->cb->ud) < 0)
		return UPSTREAM_ABORTED;
	return 0;
}

static CURLcode perform(struct upstream *u, struct call *c)
{
	struct buf work;
	buf_init(&work, BUF_UNLIMITED);
	c->h = u->h;
	c->u = u;
	buf_init(&c->inbox, BUF_UNLIMITED);
	uint64_t drained;
	while (read(u->evfd, &drained, sizeof(drained)) > 0)
		;    /* nothing left from an earlier call */
	pthread_mutex_lock(&E.mu);
	c->state = X_ADD;
	enqueue(c);
	pthread_mutex_unlock(&E.mu);
	curl_multi_wakeup(E.m);

	int watch = c->opts->watch_fd;
	int cancelled = 0;
	CURLcode result = CURLE_OK;
	for (;;) {
		struct pollfd pf[2] = { { .fd = u->evfd, .events = POLLIN },
					{ .fd = watch, .events = POLLIN } };
		int npf = watch >= 0 && !cancelled ? 2 : 1;
		if (poll(pf, (nfds_t)npf, TICK_MS) > 0 && (pf[0].revents & POLLIN))
			while (read(u->evfd, &drained, sizeof(drained)) > 0)
				;
		pthread_mutex_lock(&E.mu);
		int done = c->state == X_DONE;
		result = c->result;
		int head = c->head_ready && !c->head_taken;
		struct upstream_head h = c->head;
		char ct[sizeof(c->head_ct)], id[sizeof(c->head_id)];
		if (head) {
			c->head_taken = 1;
			memcpy(ct, c->head_ct, sizeof(ct));
			memcpy(id, c->head_id, sizeof(id));
			h.content_type = ct;
			h.request_id = id;
		}
		struct buf t = c->inbox;
		c->inbox = work;
		work = t;
		int paused = c->paused;
		pthread_mutex_unlock(&E.mu);
		int stop = 0;
		if (cancelled) {
			work.len = 0;    /* the caller stopped: what still arrives is not for it */
			if (done)
				break;
			continue;
		}
		if (head && c->cb->on_head && c->cb->on_head(c->cb->ud, &h) < 0)
			stop = UPSTREAM_ABORTED;
		if (!stop && work.len && deliver(c, work.p, work.len) < 0)
			stop = UPSTREAM_ABORTED;
		work.len = 0;
		if (!stop && done)
			break;
		if (!stop && paused) {
			pthread_mutex_lock(&E.mu);
			int ask = c->paused && !c->want_unpause && c->inbox.len == 0;
			if (ask) {
				c->want_unpause = 1;
				enqueue(c);
			}
			pthread_mutex_unlock(&E.mu);
			if (ask)
				curl_multi_wakeup(E.m);
		}
		if (!stop && watch >= 0 && (pf[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			int w = c->cb->on_watch ? c->cb->on_watch(c->cb->ud) : 0;
			if (w < 0)
				stop = UPSTREAM_ABORTED;
			else if (w == 0)
				watch = -1;
		}
		if (!stop)
			stop = overdue(c);
		if (!stop)
			continue;
		c->stop = stop;
		pthread_mutex_lock(&E.mu);
		done = c->state == X_DONE;
		if (!done) {
			c->want_cancel = 1;
			enqueue(c);
		}
		pthread_mutex_unlock(&E.mu);
		cancelled = 1;
		result = CURLE_ABORTED_BY_CALLBACK;
		if (done)
			break;
		curl_multi_wakeup(E.m);
	}
	if (cancelled)
		result = CURLE_ABORTED_BY_CALLBACK;
	buf_free(&work);
	buf_free(&c->inbox);
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
	const char *v;
	size_t vl;
	if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
		/* A new status line (also after a 1xx interim reply): forget earlier headers. */
		c->retry_after = 0;
		c->request_id[0] = '\0';
		c->content_type[0] = '\0';
		const char *sp = memchr(line, ' ', n);
		c->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		return n;
	}
	if (header_is(line, n, "content-type", &v, &vl)) {
		copy_trimmed(c->content_type, sizeof(c->content_type), v, vl);
	} else if (header_is(line, n, "x-request-id", &v, &vl) ||
		   header_is(line, n, "request-id", &v, &vl) ||
		   header_is(line, n, "x-generation-id", &v, &vl)) {
		if (!c->request_id[0]) {
			copy_trimmed(c->request_id, sizeof(c->request_id), v, vl);
			utf8_sanitize(c->request_id);    /* the row's upstream_request_id is text */
		}
	} else if (header_is(line, n, "retry-after", &v, &vl)) {
		char tmp[64];
		copy_trimmed(tmp, sizeof(tmp), v, vl);
		long long secs;
		if (parse_ll(tmp, &secs) == 0 && secs > 0)
			c->retry_after = secs > 86400 ? 86400 : (long)secs;
		else
			c->retry_after = -1;    /* an HTTP date: libcurl converts it after the transfer */
	} else if ((n == 2 && line[0] == '\r') || (n == 1 && line[0] == '\n')) {
		if (c->status >= 200 && !c->head_done) {
			c->head_done = 1;
			pthread_mutex_lock(&E.mu);
			if (c->want_cancel) {
				pthread_mutex_unlock(&E.mu);
				return 0;
			}
			c->head = (struct upstream_head){
				.status = c->status,
				.retry_after = c->retry_after > 0 ? c->retry_after : 0,
			};
			memcpy(c->head_ct, c->content_type, sizeof(c->head_ct));
			memcpy(c->head_id, c->request_id, sizeof(c->head_id));
			c->head_ready = 1;
			struct upstream *wake = c->lazy ? NULL : wake_hold(c);
			pthread_mutex_unlock(&E.mu);
			wake_send(wake);
		}
	}
	return n;
}

/* Body bytes go to the call's inbox; past INBOX_MAX the transfer waits for the worker. */
static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
	struct call *c = ud;
	size_t n = size * nmemb;
	pthread_mutex_lock(&E.mu);
	if (c->want_cancel) {
		pthread_mutex_unlock(&E.mu);
		return CURL_WRITEFUNC_ERROR;
	}
	if (c->inbox.len > 0 && c->inbox.len + n > INBOX_MAX) {
		c->paused = 1;
		struct upstream *wake = c->lazy ? wake_hold(c) : NULL;
		pthread_mutex_unlock(&E.mu);
		wake_send(wake);
		return CURL_WRITEFUNC_PAUSE;
	}
	size_t before = c->inbox.len;
	if (buf_append(&c->inbox, p, n) < 0) {
		pthread_mutex_unlock(&E.mu);
		return CURL_WRITEFUNC_ERROR;
	}
	struct upstream *wake = NULL;
	if (c->lazy ? before < INBOX_WAKE_LAZY && c->inbox.len >= INBOX_WAKE_LAZY : before == 0)
		wake = wake_hold(c);
	pthread_mutex_unlock(&E.mu);
	wake_send(wake);
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
		c->resends++;
	c->body_off = (size_t)offset;
	return CURL_SEEKFUNC_OK;
}

/* How a call reaches its provider: proxy, TLS trust, HTTP version, timeouts, buffers. */
static void set_transport(CURL *h, const struct upstream_opts *opts, int stream)
{
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROXY, opts->proxy ? opts->proxy : "");
	if (opts->proxy_user) {
		curl_easy_setopt(h, CURLOPT_PROXYUSERNAME, opts->proxy_user);
		curl_easy_setopt(h, CURLOPT_PROXYPASSWORD, str_or_empty(opts->proxy_password));
	}
	if (opts->ca_file && opts->ca_file[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, opts->ca_file);
	/* The CA bundle file alone, no CA directory (Debian's libcurl has /etc/ssl/certs as its
	 * default): libcurl keeps the parsed bundle in the engine's multi handle only when no CA
	 * directory is set, and parses it for every new connection otherwise. */
	curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, opts->connect_timeout_ms);
	if (!stream && opts->timeout_ms > 0)
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, opts->timeout_ms);
	else if (opts->total_ms > 0)
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, opts->total_ms + 2 * TICK_MS);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	/* A request body is in memory whole: the smallest upload buffer libcurl takes (its default,
	 * 64 KB, is kept by every worker's handle). */
	curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
	/* A 4 KB receive buffer (libcurl's default, 16 KB, is kept by every worker's handle, and a
	 * thousand calls in flight are a thousand handles): stream events are far smaller, a large
	 * reply only takes a few more reads (README "Calls in flight, by set-up"). */
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 4096L);
	/* No compressed replies: without Accept-Encoding libcurl decodes nothing, so a body sent
	 * with Content-Encoding anyway reaches the translators as the bytes it is (and fails to
	 * parse): a gzip bomb is never inflated (README "Memory per call"). */
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, NULL);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	/* A transfer removed while its name is still being resolved (the client left, a connect
	 * timeout) does not wait for the resolver thread: that would stop the one engine thread, and
	 * with it every call of the process, until getaddrinfo returns. */
	curl_easy_setopt(h, CURLOPT_QUICK_EXIT, 1L);
}

int upstream_perform(struct upstream *u, const struct upstream_req *req,
		     const struct upstream_opts *opts, const struct upstream_cb *cb,
		     struct upstream_result *res)
{
	memset(res, 0, sizeof(*res));
	struct call c = { .opts = opts, .cb = cb, .res = res, .body = req->body ? req->body : "",
			  .body_len = req->body_len, .state = X_IDLE, .lazy = !req->stream };
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
	set_transport(h, opts, req->stream);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &c);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &c);
	curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)&c);
	curl_easy_setopt(h, CURLOPT_SHARE, E.sh);

	c.t0_us = clock_mono_us();
	c.last_data_us = c.t0_us;
	CURLcode rc = perform(u, &c);
	curl_slist_free_all(hl);
	/* The transfer is over and out of the engine: what its callbacks saw is ours now. */
	memcpy(res->content_type, c.content_type, sizeof(res->content_type));
	memcpy(res->request_id, c.request_id, sizeof(res->request_id));
	res->retry_after = c.retry_after;
	res->resends = c.resends;

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
	/* libcurl's text may quote a URL whole; one with credentials in it shows them as stars. */
	snprintf(res->error, sizeof(res->error), "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
	redact_url_userinfo(res->error, sizeof(res->error), req->url);
	redact_url_userinfo(res->error, sizeof(res->error), opts->proxy);
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
	else {
		snprintf(err, errsz, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
		redact_url_userinfo(err, errsz, url);
	}
	curl_slist_free_all(hl);
	curl_easy_cleanup(h);
	return rc == CURLE_OK ? 0 : -1;
}
