/* fcgi_fixed.c - benchmark baseline: a threaded FastCGI responder that answers every request with
 * a fixed body. Behind lighttpd it measures what the web server and the FastCGI hop cost on their
 * own, with no upstream call.
 *
 *   fcgi_fixed [THREADS]        (or FCGI_THREADS in the environment; default 8)
 *
 * Runs as a FastCGI application spawned by the web server (the listening socket is fd 0). Each of
 * THREADS threads loops FCGX_Accept_r (serialised by a mutex, as in libfcgi's threaded example),
 * reads and discards the request body, and writes a fixed OpenAI chat.completion JSON with
 * Content-Length - or, when the body holds "stream":true, a fixed SSE stream (role chunk, content
 * chunks, finish chunk, usage chunk, [DONE]) in one write.
 */
#include <fcgiapp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t accept_mu = PTHREAD_MUTEX_INITIALIZER;

static const char JSON_BODY[] =
	"{\"id\":\"chatcmpl-BenchFixed000000000000000001\",\"object\":\"chat.completion\","
	"\"created\":1741569952,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"message\":"
	"{\"role\":\"assistant\",\"content\":\"Hello! How can I help you today?\",\"refusal\":null,"
	"\"annotations\":[]},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{"
	"\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,\"prompt_tokens_details\":"
	"{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,"
	"\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}},"
	"\"service_tier\":\"default\",\"system_fingerprint\":\"fp_bench0001\"}";

#define CHUNK_PRE                                                                                  \
	"data: {\"id\":\"chatcmpl-BenchFixed000000000000000001\",\"object\":\"chat.completion.chunk\"," \
	"\"created\":1741569952,\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_bench0001\","
#define CONTENT(t)                                                                                 \
	CHUNK_PRE "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" t "\"},\"logprobs\":null,"   \
		  "\"finish_reason\":null}]}\n\n"

static const char SSE_BODY[] =
	CHUNK_PRE "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\","
		  "\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
	CONTENT("Hello") CONTENT("!") CONTENT(" How") CONTENT(" can") CONTENT(" I") CONTENT(" help")
	CONTENT(" you") CONTENT(" today?")
	CHUNK_PRE "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n"
	CHUNK_PRE "\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,"
		  "\"total_tokens\":29}}\n\n"
	"data: [DONE]\n\n";

static const char SSE_HEAD[] =
	"Status: 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
static char json_head[256];
static int json_head_len;

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

static void *worker(void *arg)
{
	(void)arg;
	FCGX_Request rq;
	if (FCGX_InitRequest(&rq, 0, 0) != 0)
		return NULL;
	size_t cap = 65536;
	char *body = malloc(cap);
	if (!body)
		return NULL;
	for (;;) {
		pthread_mutex_lock(&accept_mu);
		int rc = FCGX_Accept_r(&rq);
		pthread_mutex_unlock(&accept_mu);
		if (rc < 0)
			break;
		/* Read the whole body; keep the first 64 KiB to look for "stream":true. */
		size_t len = 0;
		char scratch[16384];
		for (;;) {
			char *dst = len < cap ? body + len : scratch;
			int room = len < cap ? (int)(cap - len) : (int)sizeof(scratch);
			int r = FCGX_GetStr(dst, room, rq.in);
			if (r <= 0)
				break;
			if (len < cap)
				len += (size_t)r;
		}
		if (json_flag(body, len, "\"stream\"")) {
			FCGX_PutStr(SSE_HEAD, (int)sizeof(SSE_HEAD) - 1, rq.out);
			FCGX_PutStr(SSE_BODY, (int)sizeof(SSE_BODY) - 1, rq.out);
		} else {
			FCGX_PutStr(json_head, json_head_len, rq.out);
			FCGX_PutStr(JSON_BODY, (int)sizeof(JSON_BODY) - 1, rq.out);
		}
		FCGX_Finish_r(&rq);
	}
	free(body);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *t = argc > 1 ? argv[1] : getenv("FCGI_THREADS");
	int n = t && *t ? atoi(t) : 8;
	if (n < 1 || n > 1024) {
		fprintf(stderr, "fcgi_fixed: thread count must be 1..1024\n");
		return 2;
	}
	json_head_len = snprintf(json_head, sizeof(json_head),
				 "Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
				 sizeof(JSON_BODY) - 1);
	if (FCGX_Init() != 0)
		return 1;
	pthread_t *th = calloc((size_t)n, sizeof(*th));
	if (!th)
		return 1;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
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
	return started ? 0 : 1;
}
