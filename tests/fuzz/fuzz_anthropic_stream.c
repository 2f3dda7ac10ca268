/* fuzz_anthropic_stream.c - the relay over provider_anthropic fed with the input as an upstream
 * Anthropic SSE body, in pieces cut at input-derived positions, then relay_finish, and
 * relay_emit_error when the stream failed.
 *
 * The model, include_usage and the point at which the client "goes away" are drawn from the
 * input. Properties (provider-protocols.md 2.5, 4.8, provider.h): every write is a sequence of
 * complete "data: <JSON object or [DONE]>\n\n" frames; each chunk is stamped with the router's
 * id and public model and has choices[0].index 0 and an object delta; the role appears at most
 * once, in the first chunk; tool call indexes are ordinals: a call's first chunk (with id, type
 * function and a name) takes the next index, later fragments name a known index; finish
 * reasons are OpenAI values; thinking_blocks deltas hold thinking / redacted_thinking objects;
 * a usage chunk (choices []) comes only when the client asked, once, right before [DONE], with
 * total = prompt + completion; after relay_finish the relay is not running; a finished stream
 * ends with [DONE]; a failed stream has an error value (never the provider key), and once
 * something was sent the client gets an error event followed by [DONE].
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "relay.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const anth_models[] = { "claude-sonnet-4-5", "claude-opus-4-6" };
#define N_ANTH (sizeof(anth_models) / sizeof(anth_models[0]))
static struct xlate_ctx anth_ctx[N_ANTH];

static void anth_contexts(void)
{
	for (size_t i = 0; i < N_ANTH; i++) {
		const char *up = NULL;
		const struct model_conf *m = config_find_model(fuzz_cfg, anth_models[i], &up);
		if (!m || fuzz_cfg->providers[m->provider].api != API_ANTHROPIC) {
			fprintf(stderr, "fuzz: %s is not an Anthropic model of the configuration\n",
				anth_models[i]);
			exit(2);
		}
		struct xlate_ctx *x = &anth_ctx[i];
		memset(x, 0, sizeof(*x));
		x->cfg = fuzz_cfg;
		x->prov = &fuzz_cfg->providers[m->provider];
		x->model = m;
		x->upstream_model = up;
		x->public_model = anth_models[i];
		x->id = "chatcmpl-fuzz0123456789";
		x->created = 1767225600;
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	fuzz_load_config(argv);
	anth_contexts();
	return 0;
}

struct client {
	const struct xlate_ctx *x;
	int writes;
	int gone_after;      /* writes accepted before the client leaves, -1 = never */
	int chunks;          /* chunk frames seen */
	int roles;           /* chunks carrying delta.role */
	long next_tool;      /* the index the next new tool call must take */
	int saw_usage;       /* the usage chunk was the last frame */
	int saw_done;
	int saw_error;
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

static void check_delta(struct client *c, const json_t *delta)
{
	FUZZ_ASSERT(json_is_object(delta));
	const json_t *role = json_object_get(delta, "role");
	if (role) {
		FUZZ_ASSERT(strcmp(json_string_value(role), "assistant") == 0);
		c->roles++;
		FUZZ_ASSERT(c->roles == 1 && c->chunks == 1);
	}
	const json_t *content = json_object_get(delta, "content");
	FUZZ_ASSERT(!content || json_is_string(content) || json_is_null(content));
	const json_t *rc = json_object_get(delta, "reasoning_content");
	FUZZ_ASSERT(!rc || json_is_string(rc));
	const json_t *tcs = json_object_get(delta, "tool_calls");
	if (tcs) {
		FUZZ_ASSERT(json_is_array(tcs));
		size_t i;
		json_t *tc;
		json_array_foreach(tcs, i, tc)
		{
			const json_t *idx = json_object_get(tc, "index");
			FUZZ_ASSERT(json_is_integer(idx));
			long k = (long)json_integer_value(idx);
			const json_t *fn = json_object_get(tc, "function");
			FUZZ_ASSERT(json_is_object(fn));
			FUZZ_ASSERT(json_is_string(json_object_get(fn, "arguments")));
			if (json_object_get(tc, "id")) {
				/* A new call: the next ordinal. */
				FUZZ_ASSERT(k == c->next_tool);
				c->next_tool++;
				FUZZ_ASSERT(json_is_string(json_object_get(tc, "id")));
				FUZZ_ASSERT(strcmp(json_string_value(json_object_get(tc, "type")), "function") == 0);
				FUZZ_ASSERT(json_is_string(json_object_get(fn, "name")));
			} else {
				FUZZ_ASSERT(k >= 0 && k < c->next_tool);
				/* Empty fragments are skipped (4.8). */
				FUZZ_ASSERT(json_string_length(json_object_get(fn, "arguments")) > 0);
			}
		}
	}
	const json_t *tb = json_object_get(delta, "thinking_blocks");
	if (tb) {
		FUZZ_ASSERT(json_is_array(tb) && json_array_size(tb) > 0);
		size_t i;
		json_t *b;
		json_array_foreach(tb, i, b)
		{
			const char *type = json_string_value(json_object_get(b, "type"));
			FUZZ_ASSERT(type && (strcmp(type, "thinking") == 0 ||
					     strcmp(type, "redacted_thinking") == 0));
		}
	}
}

static void check_chunk(struct client *c, const json_t *j)
{
	FUZZ_ASSERT(strcmp(json_string_value(json_object_get(j, "id")), c->x->id) == 0);
	FUZZ_ASSERT(strcmp(json_string_value(json_object_get(j, "model")), c->x->public_model) == 0);
	FUZZ_ASSERT(strcmp(json_string_value(json_object_get(j, "object")), "chat.completion.chunk") == 0);
	const json_t *choices = json_object_get(j, "choices");
	FUZZ_ASSERT(json_is_array(choices));
	FUZZ_ASSERT(!c->saw_usage); /* the usage chunk is the last one */
	c->chunks++;
	if (json_array_size(choices) == 0) {
		FUZZ_ASSERT(c->x->include_usage);
		const json_t *u = json_object_get(j, "usage");
		FUZZ_ASSERT(json_is_object(u));
		json_int_t p = json_integer_value(json_object_get(u, "prompt_tokens"));
		json_int_t q = json_integer_value(json_object_get(u, "completion_tokens"));
		json_int_t t = json_integer_value(json_object_get(u, "total_tokens"));
		FUZZ_ASSERT(p >= 0 && q >= 0 && t == p + q);
		c->saw_usage = 1;
		return;
	}
	FUZZ_ASSERT(json_array_size(choices) == 1);
	const json_t *ch = json_array_get(choices, 0);
	FUZZ_ASSERT(json_integer_value(json_object_get(ch, "index")) == 0);
	const json_t *fr = json_object_get(ch, "finish_reason");
	FUZZ_ASSERT(!fr || json_is_null(fr) || (json_is_string(fr) && openai_finish_reason(json_string_value(fr))));
	check_delta(c, json_object_get(ch, "delta"));
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
		FUZZ_ASSERT(memchr(start, '\n', len) == NULL);
		if (len == sizeof(done) - 1 && memcmp(start, done, len) == 0) {
			c->saw_done = 1;
		} else {
			json_error_t jerr;
			json_t *j = json_loadb(start, len, 0, &jerr);
			FUZZ_ASSERT(json_is_object(j));
			if (json_object_get(j, "error")) {
				FUZZ_ASSERT(!c->saw_error);
				c->saw_error = 1;
			} else {
				FUZZ_ASSERT(!c->saw_error);
				check_chunk(c, j);
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
	struct xlate_ctx x = anth_ctx[pick % N_ANTH];
	x.stream = 1;
	x.include_usage = (int)((pick >> 8) & 1);
	struct client c = { .x = &x, .gone_after = (pick >> 16) % 8 == 0 ? (int)((pick >> 24) % 4) : -1 };
	struct relay_sink sink = { client_write, &c };
	struct relay r;
	relay_init(&r, &provider_anthropic, &x, &sink);
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
		FUZZ_ASSERT(r.err.status == 0);
		FUZZ_ASSERT(c.saw_usage == x.include_usage);
		break;
	case RELAY_FAILED:
		fuzz_check_rerr(&r.err, 1);
		FUZZ_ASSERT(!c.saw_done && !c.saw_usage);
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
