/* fake_upstream.c - a fast canned OpenAI-compatible upstream for the benchmarks.
 *
 *   fake_upstream [--host 127.0.0.1] [--port 0] [--delay-ms N] [--chunk-delay-ms N]
 *
 * One thread, one epoll set, non-blocking sockets, HTTP/1.1 keep-alive (no pipelining: a request
 * that arrives while the previous answer is still going out waits for it). Request bodies are
 * read by Content-Length. Any POST gets an OpenAI chat completion:
 *   - a chat.completion JSON object (Content-Length) when the body does not ask for a stream;
 *   - when the body holds "stream":true, an SSE stream in chunked transfer encoding (one chunk per
 *     event): a role chunk, 8 content chunks, a finish chunk, a usage chunk ("choices":[] and
 *     "usage") only when the body holds "include_usage":true, then "data: [DONE]".
 * A path ending in /v1/messages gets the same answer in Anthropic's Messages format instead (a
 * message object, or its event stream when the body asks for one).
 * A path starting with /status/NNN/ is answered with status NNN and an OpenAI error object instead
 * (for scenarios in which an upstream fails). Other methods get 404.
 *
 * Every answer is built once at start-up and sent straight from that buffer, so a request costs
 * the fake a read, a scan of its head and body, and normally one write.
 *
 * --delay-ms N holds each answer for N ms after its request arrived, without blocking other
 * connections (a min-heap of deadlines bounds the epoll_wait timeout). --chunk-delay-ms N sends
 * the stream's events N ms apart instead of in one write.
 *
 * On start it prints {"port":N} (the bound port) on stdout. SIGTERM/SIGINT stop it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEAD_BYTES (64u * 1024)
#define MAX_BODY_BYTES (64u * 1024 * 1024)
#define MAX_EVENTS 256

/* ---- small growable buffer ---- */

struct sbuf {
	char *p;
	size_t len, cap;
};

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void sb_reserve(struct sbuf *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + extra)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		die("realloc");
	b->p = p;
	b->cap = cap;
}

static void sb_add(struct sbuf *b, const char *p, size_t n)
{
	sb_reserve(b, n + 1);
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		die("vsnprintf");
	sb_reserve(b, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* ---- canned answers ---- */

/* One complete HTTP response. seg[] marks the ends of the pieces sent one timer tick apart with
 * --chunk-delay-ms (the head with the first event, then one event each); without it the whole
 * response goes out at once. */
struct canned {
	struct sbuf b;
	size_t nseg;
	size_t seg_end[32];
};

enum { C_JSON, C_SSE, C_SSE_USAGE, C_NOTFOUND, C_ANTH_JSON, C_ANTH_SSE, C_KINDS };

static struct canned canned[C_KINDS][2]; /* [kind][connection: close] */

static const char MODEL[] = "gpt-4o-mini-2024-07-18";
static const char CMPL_ID[] = "chatcmpl-BenchFake0000000000000000001";
static const long CREATED = 1741569952;

static const char *const WORDS[8] = { "Hello", "!", " How", " can", " I", " help", " you", " today?" };

static void head_common(struct sbuf *b, int status, const char *reason, const char *ctype, int cl)
{
	sb_printf(b,
		  "HTTP/1.1 %d %s\r\n"
		  "Content-Type: %s\r\n"
		  "x-request-id: req_benchfake0001\r\n"
		  "openai-processing-ms: 1\r\n"
		  "Connection: %s\r\n",
		  status, reason, ctype, cl ? "close" : "keep-alive");
}

static void build_json(struct canned *c, int status, const char *reason, const char *body, int cl)
{
	head_common(&c->b, status, reason, "application/json", cl);
	sb_printf(&c->b, "Content-Length: %zu\r\n\r\n", strlen(body));
	sb_add(&c->b, body, strlen(body));
	c->nseg = 1;
	c->seg_end[0] = c->b.len;
}

static void add_event_chunk(struct canned *c, const char *data)
{
	struct sbuf ev = { 0 };
	sb_printf(&ev, "data: %s\n\n", data);
	sb_printf(&c->b, "%zx\r\n", ev.len);
	sb_add(&c->b, ev.p, ev.len);
	sb_add(&c->b, "\r\n", 2);
	free(ev.p);
	c->seg_end[c->nseg++] = c->b.len;
}

static void build_sse(struct canned *c, int with_usage, int cl)
{
	head_common(&c->b, 200, "OK", "text/event-stream; charset=utf-8", cl);
	sb_printf(&c->b, "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n");
	char pre[256];
	snprintf(pre, sizeof(pre),
		 "{\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%ld,\"model\":\"%s\","
		 "\"system_fingerprint\":\"fp_bench0001\",",
		 CMPL_ID, CREATED, MODEL);
	struct sbuf d = { 0 };
	sb_printf(&d, "%s\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\","
		      "\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]}",
		  pre);
	add_event_chunk(c, d.p);
	for (size_t i = 0; i < sizeof(WORDS) / sizeof(WORDS[0]); i++) {
		d.len = 0;
		sb_printf(&d, "%s\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s\"},"
			      "\"logprobs\":null,\"finish_reason\":null}]}",
			  pre, WORDS[i]);
		add_event_chunk(c, d.p);
	}
	d.len = 0;
	sb_printf(&d, "%s\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
		      "\"finish_reason\":\"stop\"}]}",
		  pre);
	add_event_chunk(c, d.p);
	if (with_usage) {
		d.len = 0;
		sb_printf(&d, "%s\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,"
			      "\"total_tokens\":29,\"prompt_tokens_details\":{\"cached_tokens\":0,"
			      "\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,"
			      "\"audio_tokens\":0,\"accepted_prediction_tokens\":0,"
			      "\"rejected_prediction_tokens\":0}}}",
			  pre);
		add_event_chunk(c, d.p);
	}
	add_event_chunk(c, "[DONE]");
	sb_add(&c->b, "0\r\n\r\n", 5);
	c->seg_end[c->nseg - 1] = c->b.len;
	free(d.p);
}

/* Anthropic's Messages API: the same answer as its event stream (message_start, one text block,
 * message_delta, message_stop, with a ping) or as one message object. */
static void add_named_event(struct canned *c, const char *name, const char *data)
{
	struct sbuf ev = { 0 };
	sb_printf(&ev, "event: %s\ndata: %s\n\n", name, data);
	sb_printf(&c->b, "%zx\r\n", ev.len);
	sb_add(&c->b, ev.p, ev.len);
	sb_add(&c->b, "\r\n", 2);
	free(ev.p);
	c->seg_end[c->nseg++] = c->b.len;
}

static void build_anthropic_sse(struct canned *c, int cl)
{
	head_common(&c->b, 200, "OK", "text/event-stream; charset=utf-8", cl);
	sb_printf(&c->b, "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n");
	add_named_event(c, "message_start",
			"{\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench0001\",\"type\":\"message\","
			"\"role\":\"assistant\",\"model\":\"claude-haiku-4-5\",\"content\":[],"
			"\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":19,"
			"\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}");
	add_named_event(c, "content_block_start",
			"{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
			"\"text\":\"\"}}");
	add_named_event(c, "ping", "{\"type\":\"ping\"}");
	struct sbuf d = { 0 };
	for (size_t i = 0; i < sizeof(WORDS) / sizeof(WORDS[0]); i++) {
		d.len = 0;
		sb_printf(&d, "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
			      "\"text_delta\",\"text\":\"%s\"}}",
			  WORDS[i]);
		add_named_event(c, "content_block_delta", d.p);
	}
	free(d.p);
	add_named_event(c, "content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}");
	add_named_event(c, "message_delta",
			"{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
			"\"stop_sequence\":null},\"usage\":{\"output_tokens\":10}}");
	add_named_event(c, "message_stop", "{\"type\":\"message_stop\"}");
	sb_add(&c->b, "0\r\n\r\n", 5);
	c->seg_end[c->nseg - 1] = c->b.len;
}

static void build_all(void)
{
	char body[2048];
	snprintf(body, sizeof(body),
		 "{\"id\":\"%s\",\"object\":\"chat.completion\",\"created\":%ld,\"model\":\"%s\","
		 "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
		 "\"content\":\"Hello! How can I help you today?\",\"refusal\":null,\"annotations\":[]},"
		 "\"logprobs\":null,\"finish_reason\":\"stop\"}],"
		 "\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,"
		 "\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},"
		 "\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,"
		 "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}},"
		 "\"service_tier\":\"default\",\"system_fingerprint\":\"fp_bench0001\"}",
		 CMPL_ID, CREATED, MODEL);
	static const char anth[] =
		"{\"id\":\"msg_bench0001\",\"type\":\"message\",\"role\":\"assistant\","
		"\"model\":\"claude-haiku-4-5\",\"content\":[{\"type\":\"text\","
		"\"text\":\"Hello! How can I help you today?\"}],\"stop_reason\":\"end_turn\","
		"\"stop_sequence\":null,\"usage\":{\"input_tokens\":19,\"cache_creation_input_tokens\":0,"
		"\"cache_read_input_tokens\":0,\"output_tokens\":10}}";
	static const char notfound[] =
		"{\"error\":{\"message\":\"Unknown request URL. Only POST is served here.\","
		"\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"unknown_url\"}}";
	for (int cl = 0; cl < 2; cl++) {
		build_json(&canned[C_JSON][cl], 200, "OK", body, cl);
		build_sse(&canned[C_SSE][cl], 0, cl);
		build_sse(&canned[C_SSE_USAGE][cl], 1, cl);
		build_json(&canned[C_NOTFOUND][cl], 404, "Not Found", notfound, cl);
		build_json(&canned[C_ANTH_JSON][cl], 200, "OK", anth, cl);
		build_anthropic_sse(&canned[C_ANTH_SSE][cl], cl);
	}
}

/* Error answers for /status/NNN/ paths, built on first use and kept. */
struct status_answer {
	int status;
	struct canned c[2];
	struct status_answer *next;
};
static struct status_answer *status_answers;

static const struct canned *status_canned(int status, int cl)
{
	struct status_answer *s;
	for (s = status_answers; s; s = s->next) {
		if (s->status == status)
			return &s->c[cl];
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		die("calloc");
	s->status = status;
	const char *type = status == 429 ? "rate_limit_exceeded" : status >= 500 ? "server_error"
										  : "invalid_request_error";
	char body[512];
	snprintf(body, sizeof(body),
		 "{\"error\":{\"message\":\"The fake upstream answers %d on this path.\",\"type\":\"%s\","
		 "\"param\":null,\"code\":null}}",
		 status, type);
	for (int k = 0; k < 2; k++)
		build_json(&s->c[k], status, status >= 500 ? "Service Unavailable" : "Error", body, k);
	s->next = status_answers;
	status_answers = s;
	return &s->c[cl];
}

/* ---- connections ---- */

enum cstate { READING, WAITING, WRITING };

struct conn {
	int fd;
	uint32_t gen;              /* bumped on close: stale timer entries are ignored */
	enum cstate st;
	struct sbuf in;
	size_t head_len;           /* bytes of the request head, 0 until complete */
	size_t body_len;           /* Content-Length */
	int close_after;
	const struct canned *out;
	size_t sent;               /* bytes of out written */
	size_t avail;              /* bytes of out released for writing */
	size_t seg;                /* segments released */
};

static struct conn **conns;
static size_t nconns;
static int epfd;
static int64_t delay_ns, chunk_delay_ns;
static volatile sig_atomic_t stop;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- timers: a binary min-heap of (deadline, fd, generation) ---- */

struct timer {
	int64_t at;
	int fd;
	uint32_t gen;
};
static struct timer *heap;
static size_t nheap, capheap;

static void heap_push(int64_t at, int fd, uint32_t gen)
{
	if (nheap == capheap) {
		capheap = capheap ? capheap * 2 : 256;
		heap = realloc(heap, capheap * sizeof(*heap));
		if (!heap)
			die("realloc");
	}
	size_t i = nheap++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (heap[parent].at <= at)
			break;
		heap[i] = heap[parent];
		i = parent;
	}
	heap[i] = (struct timer){ at, fd, gen };
}

static struct timer heap_pop(void)
{
	struct timer top = heap[0];
	struct timer last = heap[--nheap];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const struct timer *best = &last;
		if (l < nheap && heap[l].at < best->at) {
			m = l;
			best = &heap[l];
		}
		if (r < nheap && heap[r].at < best->at)
			m = r;
		if (m == i)
			break;
		heap[i] = heap[m];
		i = m;
	}
	if (nheap)
		heap[i] = last;
	return top;
}

static void conn_close(struct conn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->gen++;
	c->in.len = 0;
	if (c->in.cap > 1 << 20) { /* give back buffers grown by a huge body */
		free(c->in.p);
		c->in.p = NULL;
		c->in.cap = 0;
	}
}

static struct conn *conn_get(int fd)
{
	if ((size_t)fd >= nconns) {
		size_t n = nconns ? nconns : 64;
		while (n <= (size_t)fd)
			n *= 2;
		conns = realloc(conns, n * sizeof(*conns));
		if (!conns)
			die("realloc");
		memset(conns + nconns, 0, (n - nconns) * sizeof(*conns));
		nconns = n;
	}
	if (!conns[fd]) {
		conns[fd] = calloc(1, sizeof(struct conn));
		if (!conns[fd])
			die("calloc");
	}
	return conns[fd];
}

/* Case-insensitive search for a header's value in the head; returns its start or NULL. */
static const char *find_header(const char *head, size_t n, const char *name, size_t *vlen)
{
	size_t k = strlen(name);
	const char *p = memchr(head, '\n', n);
	const char *end = head + n;
	while (p && p + 1 < end) {
		p++;
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			break;
		if ((size_t)(eol - p) > k && p[k] == ':' && strncasecmp(p, name, k) == 0) {
			const char *v = p + k + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			const char *ve = eol;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
				ve--;
			*vlen = (size_t)(ve - v);
			return v;
		}
		p = eol;
	}
	return NULL;
}

/* True when the JSON text holds "key" : true (whitespace allowed around the colon). */
static int json_flag(const char *p, size_t n, const char *key)
{
	size_t k = strlen(key);
	const char *end = p + n;
	while (p < end) {
		const char *q = memmem(p, (size_t)(end - p), key, k);
		if (!q)
			return 0;
		q += k;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
			q++;
		if (q < end && *q == ':') {
			q++;
			while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
				q++;
			if ((size_t)(end - q) >= 4 && memcmp(q, "true", 4) == 0)
				return 1;
		}
		p = q;
	}
	return 0;
}

static void release_segment(struct conn *c)
{
	if (chunk_delay_ns > 0 && c->seg < c->out->nseg) {
		c->avail = c->out->seg_end[c->seg++];
		if (c->seg < c->out->nseg)
			heap_push(now_ns() + chunk_delay_ns, c->fd, c->gen);
	} else {
		c->avail = c->out->b.len;
		c->seg = c->out->nseg;
	}
}

static void conn_write(struct conn *c);

static void start_answer(struct conn *c)
{
	c->st = WRITING;
	c->sent = 0;
	c->seg = 0;
	release_segment(c);
	conn_write(c);
}

/* A whole request is in c->in: pick the answer. */
static void on_request(struct conn *c)
{
	const char *h = c->in.p;
	const char *body = h + c->head_len;
	int cl = c->close_after;
	if (strncmp(h, "POST ", 5) != 0) {
		c->out = &canned[C_NOTFOUND][cl];
	} else if (strncmp(h + 5, "/status/", 8) == 0 && atoi(h + 13) >= 200 && atoi(h + 13) <= 599) {
		c->out = status_canned(atoi(h + 13), cl);
	} else if (memmem(h, c->head_len, "/v1/messages ", 13)) {
		c->out = json_flag(body, c->body_len, "\"stream\"") ? &canned[C_ANTH_SSE][cl]
								   : &canned[C_ANTH_JSON][cl];
	} else if (json_flag(body, c->body_len, "\"stream\"")) {
		c->out = json_flag(body, c->body_len, "\"include_usage\"") ? &canned[C_SSE_USAGE][cl]
									  : &canned[C_SSE][cl];
	} else {
		c->out = &canned[C_JSON][cl];
	}
	if (delay_ns > 0) {
		c->st = WAITING;
		heap_push(now_ns() + delay_ns, c->fd, c->gen);
	} else {
		start_answer(c);
	}
}

/* Parse what has been read; returns -1 when the connection must be dropped. */
static int try_parse(struct conn *c)
{
	if (!c->head_len) {
		char *e = memmem(c->in.p, c->in.len, "\r\n\r\n", 4);
		if (!e)
			return c->in.len > MAX_HEAD_BYTES ? -1 : 0;
		c->head_len = (size_t)(e - c->in.p) + 4;
		size_t vl;
		const char *v = find_header(c->in.p, c->head_len, "content-length", &vl);
		c->body_len = v ? strtoul(v, NULL, 10) : 0;
		if (c->body_len > MAX_BODY_BYTES)
			return -1;
		if (find_header(c->in.p, c->head_len, "transfer-encoding", &vl))
			return -1; /* chunked request bodies are not supported */
		v = find_header(c->in.p, c->head_len, "connection", &vl);
		const char *eol = memchr(c->in.p, '\n', c->head_len);
		int http10 = eol && eol - c->in.p >= 9 && memcmp(eol - 9, "HTTP/1.0", 8) == 0;
		if (v)
			c->close_after = vl == 5 && strncasecmp(v, "close", 5) == 0;
		else
			c->close_after = http10;
		if (http10 && v && vl == 10 && strncasecmp(v, "keep-alive", 10) == 0)
			c->close_after = 0;
	}
	if (c->in.len < c->head_len + c->body_len)
		return 0;
	on_request(c);
	return 0;
}

static void conn_read(struct conn *c)
{
	for (;;) {
		sb_reserve(&c->in, 16384);
		ssize_t r = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len - 1);
		if (r > 0) {
			c->in.len += (size_t)r;
			c->in.p[c->in.len] = '\0';
			continue;
		}
		if (r == 0) {
			conn_close(c);
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		conn_close(c);
		return;
	}
	if (c->st == READING && try_parse(c) < 0)
		conn_close(c);
}

static void answer_done(struct conn *c)
{
	if (c->close_after) {
		conn_close(c);
		return;
	}
	/* Keep whatever followed this request (the next one, sent early) and parse it. */
	size_t used = c->head_len + c->body_len;
	memmove(c->in.p, c->in.p + used, c->in.len - used);
	c->in.len -= used;
	c->head_len = c->body_len = 0;
	c->st = READING;
	c->out = NULL;
	if (c->in.len && try_parse(c) < 0)
		conn_close(c);
}

static void conn_write(struct conn *c)
{
	while (c->sent < c->avail) {
		ssize_t w = send(c->fd, c->out->b.p + c->sent, c->avail - c->sent, MSG_NOSIGNAL);
		if (w > 0) {
			c->sent += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return; /* EPOLLOUT (edge-triggered) resumes */
		conn_close(c);
		return;
	}
	if (c->sent == c->out->b.len)
		answer_done(c);
}

static void on_timer(const struct timer *t)
{
	if ((size_t)t->fd >= nconns || !conns[t->fd])
		return;
	struct conn *c = conns[t->fd];
	if (c->fd < 0 || c->gen != t->gen)
		return;
	if (c->st == WAITING) {
		start_answer(c);
	} else if (c->st == WRITING) {
		release_segment(c);
		conn_write(c);
	}
}

static void on_accept(int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return; /* EAGAIN, or out of descriptors: try again on the next event */
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct conn *c = conn_get(fd);
		c->fd = fd;
		c->st = READING;
		c->in.len = 0;
		c->head_len = c->body_len = 0;
		c->close_after = 0;
		c->out = NULL;
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
					  .data.fd = fd };
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			c->fd = -1;
			c->gen++;
		}
	}
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static long arg_long(const char *flag, const char *v)
{
	char *end;
	long n = v ? strtol(v, &end, 10) : -1;
	if (!v || *end || n < 0) {
		fprintf(stderr, "fake_upstream: %s needs a non-negative integer\n", flag);
		exit(2);
	}
	return n;
}

int main(int argc, char **argv)
{
	const char *host = "127.0.0.1";
	long port = 0;
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(argv[i], "--host") == 0 && v) {
			host = v;
			i++;
		} else if (strcmp(argv[i], "--port") == 0) {
			port = arg_long(argv[i], v);
			i++;
		} else if (strcmp(argv[i], "--delay-ms") == 0) {
			delay_ns = arg_long(argv[i], v) * 1000000LL;
			i++;
		} else if (strcmp(argv[i], "--chunk-delay-ms") == 0) {
			chunk_delay_ns = arg_long(argv[i], v) * 1000000LL;
			i++;
		} else {
			fprintf(stderr,
				"usage: fake_upstream [--host ADDR] [--port N] [--delay-ms N] "
				"[--chunk-delay-ms N]\n");
			return 2;
		}
	}
	build_all();

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
		fprintf(stderr, "fake_upstream: bad address %s\n", host);
		return 2;
	}
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		die("bind");
	if (listen(lfd, 4096) < 0)
		die("listen");
	socklen_t sl = sizeof(sin);
	if (getsockname(lfd, (struct sockaddr *)&sin, &sl) < 0)
		die("getsockname");
	printf("{\"port\":%u}\n", ntohs(sin.sin_port));
	fflush(stdout);

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1");
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll_ctl");

	struct epoll_event evs[MAX_EVENTS];
	while (!stop) {
		int timeout = -1;
		if (nheap) {
			int64_t wait = heap[0].at - now_ns();
			timeout = wait <= 0 ? 0 : (int)((wait + 999999) / 1000000);
		}
		int n = epoll_wait(epfd, evs, MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == lfd) {
				on_accept(lfd);
				continue;
			}
			struct conn *c = conns[fd];
			if (c->fd < 0)
				continue;
			if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				conn_read(c);
			if (c->fd >= 0 && c->st == WRITING && (evs[i].events & EPOLLOUT))
				conn_write(c);
		}
		if (nheap) {
			int64_t t = now_ns();
			while (nheap && heap[0].at <= t) {
				struct timer tm = heap_pop();
				on_timer(&tm);
			}
		}
	}
	close(lfd);
	close(epfd);
	return 0;
}
