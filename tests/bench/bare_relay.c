/* bare_relay.c - benchmark baseline: the bare relay, the ceiling of the router's design.
 *
 *   BARE_RELAY_UPSTREAM=http://127.0.0.1:PORT/openai/v1/chat/completions bare_relay [THREADS]
 *   (THREADS, or FCGI_THREADS in the environment; default 8)
 *
 * A threaded FastCGI responder (listening socket on fd 0, FCGX_Accept_r serialised by a mutex)
 * in which each thread owns one libcurl easy handle, configured once and reused for every request
 * so the upstream connection stays alive. A request's body is POSTed unchanged to the fixed
 * upstream URL and the reply is relayed back:
 *   - an upstream reply with Content-Type text/event-stream and a 2xx status is streamed: every
 *     chunk libcurl hands to the write callback is written with FCGX_PutStr and flushed with
 *     FCGX_FFlush at once;
 *   - anything else is collected and written with its status, Content-Type and Content-Length.
 * A transport failure before anything was sent becomes a 502. Nothing else happens: no JSON
 * parsing, no logging, no accounting.
 */
#include <curl/curl.h>
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_BODY_BYTES (8u * 1024 * 1024)

static pthread_mutex_t accept_mu = PTHREAD_MUTEX_INITIALIZER;
static const char *upstream_url;
static char auth_header[512];

struct buf {
	char *p;
	size_t len, cap;
};

static int buf_add(struct buf *b, const char *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		while (cap < b->len + n)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (!q)
			return -1;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

struct exchange {
	FCGX_Request *rq;
	long status;
	char ctype[128];
	int streaming;             /* 2xx event stream: relayed chunk by chunk */
	int head_sent;
	struct buf resp;           /* collected reply when not streaming */
};

/* FCGX_FPrintF has its own printf that lacks %zu: format with snprintf instead. */
static void put_head(FCGX_Stream *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_head(FCGX_Stream *out, const char *fmt, ...)
{
	char head[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	if (n > 0)
		FCGX_PutStr(head, n < (int)sizeof(head) ? n : (int)sizeof(head) - 1, out);
}

static size_t on_header(char *line, size_t size, size_t nitems, void *ud)
{
	struct exchange *x = ud;
	size_t n = size * nitems;
	if (n > 5 && memcmp(line, "HTTP/", 5) == 0) {
		const char *sp = memchr(line, ' ', n);
		x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		x->ctype[0] = '\0';
	} else if (n > 13 && strncasecmp(line, "content-type:", 13) == 0) {
		const char *v = line + 13;
		size_t vl = n - 13;
		while (vl && (*v == ' ' || *v == '\t')) {
			v++;
			vl--;
		}
		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
			vl--;
		if (vl >= sizeof(x->ctype))
			vl = sizeof(x->ctype) - 1;
		memcpy(x->ctype, v, vl);
		x->ctype[vl] = '\0';
	}
	return n;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
	struct exchange *x = ud;
	size_t n = size * nmemb;
	if (!x->head_sent && !x->streaming && x->status >= 200 && x->status < 300 &&
	    strncasecmp(x->ctype, "text/event-stream", 17) == 0)
		x->streaming = 1;
	if (!x->streaming)
		return buf_add(&x->resp, p, n) == 0 ? n : CURL_WRITEFUNC_ERROR;
	if (!x->head_sent) {
		x->head_sent = 1;
		put_head(x->rq->out, "Status: %ld\r\nContent-Type: %s\r\nCache-Control: no-cache\r\n\r\n",
			     x->status, x->ctype);
	}
	if (FCGX_PutStr(p, (int)n, x->rq->out) != (int)n || FCGX_FFlush(x->rq->out) != 0)
		return CURL_WRITEFUNC_ERROR; /* the client left */
	return n;
}

static void *worker(void *arg)
{
	(void)arg;
	FCGX_Request rq;
	if (FCGX_InitRequest(&rq, 0, 0) != 0)
		return NULL;
	CURL *h = curl_easy_init();
	if (!h)
		return NULL;
	struct curl_slist *hl = NULL;
	hl = curl_slist_append(hl, "Content-Type: application/json");
	hl = curl_slist_append(hl, auth_header);
	hl = curl_slist_append(hl, "Expect:");
	struct exchange x;
	curl_easy_setopt(h, CURLOPT_URL, upstream_url);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);

	struct buf req = { 0 };
	memset(&x, 0, sizeof(x));
	for (;;) {
		pthread_mutex_lock(&accept_mu);
		int rc = FCGX_Accept_r(&rq);
		pthread_mutex_unlock(&accept_mu);
		if (rc < 0)
			break;
		req.len = 0;
		char chunk[16384];
		int r, too_big = 0;
		while ((r = FCGX_GetStr(chunk, sizeof(chunk), rq.in)) > 0) {
			if (req.len + (size_t)r > MAX_BODY_BYTES || buf_add(&req, chunk, (size_t)r) < 0)
				too_big = 1;
		}
		if (too_big) {
			put_head(rq.out, "Status: 413\r\nContent-Type: application/json\r\n\r\n"
					     "{\"error\":{\"message\":\"request body too large\"}}");
			FCGX_Finish_r(&rq);
			continue;
		}
		x.rq = &rq;
		x.status = 0;
		x.ctype[0] = '\0';
		x.streaming = 0;
		x.head_sent = 0;
		x.resp.len = 0;
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.p ? req.p : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req.len);
		CURLcode cc = curl_easy_perform(h);
		if (!x.head_sent) {
			if (cc != CURLE_OK) {
				put_head(rq.out,
					     "Status: 502\r\nContent-Type: application/json\r\n\r\n"
					     "{\"error\":{\"message\":\"upstream: %s\",\"type\":\"server_error\"}}",
					     curl_easy_strerror(cc));
			} else {
				put_head(rq.out, "Status: %ld\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n",
					     x.status, x.ctype[0] ? x.ctype : "application/json", x.resp.len);
				if (x.resp.len)
					FCGX_PutStr(x.resp.p, (int)x.resp.len, rq.out);
			}
		}
		FCGX_Finish_r(&rq);
	}
	curl_easy_cleanup(h);
	curl_slist_free_all(hl);
	free(req.p);
	free(x.resp.p);
	return NULL;
}

int main(int argc, char **argv)
{
	upstream_url = getenv("BARE_RELAY_UPSTREAM");
	if (!upstream_url || !*upstream_url) {
		fprintf(stderr, "bare_relay: set BARE_RELAY_UPSTREAM to the upstream URL\n");
		return 2;
	}
	const char *key = getenv("OPENAI_API_KEY");
	snprintf(auth_header, sizeof(auth_header), "Authorization: Bearer %s",
		 key && *key ? key : "bench-key");
	const char *t = argc > 1 ? argv[1] : getenv("FCGI_THREADS");
	int n = t && *t ? atoi(t) : 8;
	if (n < 1 || n > 1024) {
		fprintf(stderr, "bare_relay: thread count must be 1..1024\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK || FCGX_Init() != 0)
		return 1;
	pthread_t *th = calloc((size_t)n, sizeof(*th));
	if (!th)
		return 1;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 512 * 1024);
	int started = 0;
	for (int i = 0; i < n; i++) {
		if (pthread_create(&th[i], &attr, worker, NULL) != 0)
			break;
		started++;
	}
	pthread_attr_destroy(&attr);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	free(th);
	curl_global_cleanup();
	return started ? 0 : 1;
}
