/* fuzz_gemini_stream.c - the relay over the Gemini adapter, fed with the input as an upstream
 * SSE body (streamGenerateContent?alt=sse) in pieces cut at input-derived positions, then
 * relay_finish, and relay_emit_error when the stream failed.
 *
 * The model, include_usage and the point at which the client "goes away" are also drawn from the
 * input. Properties: every write to the client is a sequence of complete "data: <JSON object or
 * [DONE]>\n\n" frames; each chunk is stamped with the router's id and public model and holds at
 * most one choice whose delta is an object; per choice index the role goes out once and first,
 * nothing follows its finish chunk, finish reasons are OpenAI values, tool call deltas are whole
 * (id, type function, name, JSON arguments) with an index counting 0, 1, ... per choice; a usage
 * chunk comes only when asked for, once, right before [DONE]. After relay_finish the relay is no
 * longer running; a finished stream ends with [DONE] and every started choice has finished (or
 * the client left); a failed stream has an error value that never quotes the provider key, and
 * once something was sent the client gets an error event followed by [DONE].
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "relay.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct xlate_ctx gm_ctx[2];

static void gm_build_contexts(void)
{
	static const char *const models[] = { "gemini-2.0-flash", "gemini-2.5-pro" };
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
		const char *up = NULL;
		const struct model_conf *m = config_find_model(fuzz_cfg, models[i], &up);
		if (!m) {
			fprintf(stderr, "fuzz: model %s is not configured\n", models[i]);
			exit(2);
		}
		struct xlate_ctx *x = &gm_ctx[i];
		memset(x, 0, sizeof(*x));
		x->cfg = fuzz_cfg;
		x->prov = &fuzz_cfg->providers[m->provider];
		x->model = m;
		x->upstream_model = up;
		x->public_model = models[i];
		x->id = "chatcmpl-fuzz0123456789";
		x->created = 1767225600;
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	fuzz_load_config(argv);
	gm_build_contexts();
	return 0;
}

#define SLOTS 64

struct client {
	const struct xlate_ctx *x;
	int writes;
	int gone_after;      /* writes accepted before the client leaves, -1 = never */
	int saw_done;        /* [DONE] was written (nothing may follow) */
	int saw_error;       /* an error event was written */
	int saw_usage;       /* the usage chunk was written (only [DONE] may follow) */
	unsigned char started[SLOTS], finished[SLOTS];
	long calls[SLOTS];   /* tool calls seen per choice: the next index */
};

static int openai_finish_reason(const char *s)
{
	static const char *const ok[] = { "stop", "length", "tool_calls", "content_filter" };
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (strcmp(s, ok[i]) == 0)
			return 1;
	}
	return 0;
}

static void check_choice(struct client *c, const json_t *ch)
{
	const json_t *idx = json_object_get(ch, "index");
	FUZZ_ASSERT(json_is_integer(idx));
	json_int_t i = json_integer_value(idx);
	FUZZ_ASSERT(i >= 0 && i < SLOTS);
	const json_t *d = json_object_get(ch, "delta");
	FUZZ_ASSERT(json_is_object(d));
	FUZZ_ASSERT(!c->finished[i]);
	if (json_object_get(d, "role")) {
		FUZZ_ASSERT(!c->started[i]);
		c->started[i] = 1;
	}
	FUZZ_ASSERT(c->started[i]);
	const json_t *v = json_object_get(d, "content");
	FUZZ_ASSERT(!v || json_is_string(v));
	v = json_object_get(d, "reasoning_content");
	FUZZ_ASSERT(!v || json_is_string(v));
	size_t k;
	const json_t *tc;
	json_array_foreach(json_object_get(d, "tool_calls"), k, tc)
	{
		FUZZ_ASSERT(json_integer_value(json_object_get(tc, "index")) == c->calls[i]);
		c->calls[i]++;
		FUZZ_ASSERT(json_string_length(json_object_get(tc, "id")) > 0);
		FUZZ_ASSERT(strcmp(json_string_value(json_object_get(tc, "type")), "function") == 0);
		const json_t *fn = json_object_get(tc, "function");
		FUZZ_ASSERT(json_is_string(json_object_get(fn, "name")));
		const char *args = json_string_value(json_object_get(fn, "arguments"));
		FUZZ_ASSERT(args != NULL);
		json_error_t jerr;
		json_t *a = json_loads(args, JSON_DECODE_ANY, &jerr);
		FUZZ_ASSERT(a != NULL);
		json_decref(a);
	}
	const json_t *fr = json_object_get(ch, "finish_reason");
	if (json_is_string(fr)) {
		FUZZ_ASSERT(openai_finish_reason(json_string_value(fr)));
		FUZZ_ASSERT(json_object_size(d) == 0);
		c->finished[i] = 1;
	} else {
		FUZZ_ASSERT(json_is_null(fr));
	}
}

static void check_frames(struct client *c, const char *p, size_t n)
{
	static const char done[] = "[DONE]";
	size_t at = 0;
	FUZZ_ASSERT(n > 0);
	while (at < n) {
		FUZZ_ASSERT(n - at >= 8 && memcmp(p + at, "data: ", 6) == 0);
		const char *start = p + at + 6;
		const char *end = memmem(start, n - at - 6, "\n\n", 2);
		FUZZ_ASSERT(end != NULL);
		size_t len = (size_t)(end - start);
		FUZZ_ASSERT(!c->saw_done); /* nothing after [DONE] */
		if (len == sizeof(done) - 1 && memcmp(start, done, len) == 0) {
			c->saw_done = 1;
		} else {
			FUZZ_ASSERT(!c->saw_usage);
			json_error_t jerr;
			json_t *j = json_loadb(start, len, 0, &jerr);
			FUZZ_ASSERT(json_is_object(j));
			if (json_object_get(j, "error")) {
				c->saw_error = 1;
			} else {
				FUZZ_ASSERT(!c->saw_error);
				FUZZ_ASSERT(strcmp(json_string_value(json_object_get(j, "id")), c->x->id) == 0);
				FUZZ_ASSERT(strcmp(json_string_value(json_object_get(j, "model")),
						   c->x->public_model) == 0);
				FUZZ_ASSERT(strcmp(json_string_value(json_object_get(j, "object")),
						   "chat.completion.chunk") == 0);
				const json_t *choices = json_object_get(j, "choices");
				FUZZ_ASSERT(json_is_array(choices));
				if (json_array_size(choices) == 0) {
					FUZZ_ASSERT(c->x->include_usage);
					FUZZ_ASSERT(json_is_object(json_object_get(j, "usage")));
					c->saw_usage = 1;
				} else {
					FUZZ_ASSERT(json_array_size(choices) == 1);
					FUZZ_ASSERT(json_object_get(j, "usage") == NULL);
					check_choice(c, json_array_get(choices, 0));
				}
			}
			json_decref(j);
		}
		at = (size_t)(end - p) + 2;
	}
}

static int client_write(void *ud, const char *p, size_t n)
{
	struct client *c = ud;
	if (c->gone_after >= 0 && c->writes >= c->gone_after)
		return -1;
	c->writes++;
	check_frames(c, p, n);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t seed = fuzz_hash(data, size);
	uint64_t pick = fuzz_next(&seed);
	struct xlate_ctx x = gm_ctx[pick % 2];
	x.stream = 1;
	x.include_usage = (int)((pick >> 8) & 1);
	static struct client c;
	memset(&c, 0, sizeof(c));
	c.x = &x;
	c.gone_after = (pick >> 16) % 8 == 0 ? (int)((pick >> 24) % 4) : -1;
	struct relay_sink sink = { client_write, &c };
	struct relay r;
	relay_init(&r, &provider_gemini, &x, &sink);
	size_t at = 0;
	int rc = 0;
	while (at < size && rc == 0) {
		size_t n = (size_t)(fuzz_next(&seed) % 64);
		if (n > size - at)
			n = size - at;
		rc = relay_feed(&r, (const char *)data + at, n);
		at += n;
		FUZZ_ASSERT(rc == 0 ? r.state == RELAY_RUNNING : r.state != RELAY_RUNNING);
	}
	relay_finish(&r);
	FUZZ_ASSERT(r.state != RELAY_RUNNING);
	switch (r.state) {
	case RELAY_DONE:
		FUZZ_ASSERT(c.saw_done);
		FUZZ_ASSERT(!c.saw_error);
		FUZZ_ASSERT(r.err.status == 0);
		FUZZ_ASSERT(c.saw_usage == x.include_usage);
		for (size_t i = 0; i < SLOTS; i++)
			FUZZ_ASSERT(!c.started[i] || c.finished[i]);
		FUZZ_ASSERT(!r.usage.have || r.usage.total == r.usage.prompt + r.usage.completion);
		break;
	case RELAY_FAILED:
		fuzz_check_rerr(&r.err, 1);
		FUZZ_ASSERT(!c.saw_done);
		if (relay_started(&r)) {
			relay_emit_error(&r);
			FUZZ_ASSERT(c.gone_after >= 0 || (c.saw_error && c.saw_done));
		}
		break;
	case RELAY_CLIENT_GONE:
		FUZZ_ASSERT(c.gone_after >= 0);
		break;
	case RELAY_RUNNING:
		break;
	}
	relay_free(&r);
	return 0;
}
