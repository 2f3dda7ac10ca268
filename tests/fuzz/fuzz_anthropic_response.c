/* fuzz_anthropic_response.c - provider_anthropic.parse_response through relay_response on an
 * arbitrary 2xx body, for the Anthropic models of the shipped configuration; then
 * provider_anthropic.map_error on the same body with a status and Retry-After drawn from it.
 *
 * Properties of a translated reply (provider-protocols.md 4.7, 10.1, 10.2, provider.h): a
 * chat.completion stamped with the router's id, the public model and an integer created; one
 * choice with index 0, an OpenAI finish_reason (the provider's own value, when kept, in
 * provider_finish_reason as a string), logprobs null; an assistant message whose content is a
 * string or null, refusal null, tool_calls of type function with string ids and arguments that
 * are valid JSON, reasoning_content a string, thinking_blocks an array of thinking /
 * redacted_thinking objects; usage with total = prompt + completion, cached + cache_write <=
 * prompt, and the usage object equal to the counters. A failure is an error value with no
 * output, a valid envelope, and never the provider key. map_error always yields a mapped status
 * with a valid envelope, credentials failures become a 502 without upstream text, 429 and 529
 * carry a positive Retry-After and ask for a retry.
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

static int openai_finish_reason(const char *s)
{
	static const char *const ok[] = { "stop", "length", "tool_calls", "content_filter",
					   "function_call" };
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (strcmp(s, ok[i]) == 0)
			return 1;
	}
	return 0;
}

static int64_t num(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_integer(v) ? json_integer_value(v) : -1;
}

static void check_message(const json_t *msg)
{
	FUZZ_ASSERT(json_is_object(msg));
	FUZZ_ASSERT(strcmp(json_string_value(json_object_get(msg, "role")), "assistant") == 0);
	const json_t *content = json_object_get(msg, "content");
	FUZZ_ASSERT(json_is_string(content) || json_is_null(content));
	FUZZ_ASSERT(json_is_null(json_object_get(msg, "refusal")));
	const json_t *tcs = json_object_get(msg, "tool_calls");
	if (tcs) {
		FUZZ_ASSERT(json_is_array(tcs) && json_array_size(tcs) > 0);
		size_t i;
		json_t *tc;
		json_array_foreach(tcs, i, tc)
		{
			FUZZ_ASSERT(json_is_string(json_object_get(tc, "id")));
			FUZZ_ASSERT(strcmp(json_string_value(json_object_get(tc, "type")), "function") == 0);
			const json_t *fn = json_object_get(tc, "function");
			FUZZ_ASSERT(json_is_string(json_object_get(fn, "name")));
			const char *args = json_string_value(json_object_get(fn, "arguments"));
			FUZZ_ASSERT(args != NULL);
			json_error_t jerr;
			json_t *parsed = json_loads(args, JSON_DECODE_ANY, &jerr);
			FUZZ_ASSERT(parsed != NULL);
			json_decref(parsed);
		}
	}
	const json_t *rc = json_object_get(msg, "reasoning_content");
	FUZZ_ASSERT(!rc || json_is_string(rc));
	const json_t *tb = json_object_get(msg, "thinking_blocks");
	if (tb) {
		FUZZ_ASSERT(json_is_array(tb));
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

static void check_usage(const struct usage *u, const json_t *uj)
{
	if (!u->have)
		return;
	FUZZ_ASSERT(u->prompt >= 0 && u->completion >= 0 && u->total >= 0);
	FUZZ_ASSERT(u->total == u->prompt + u->completion);
	int64_t cached = u->cached < 0 ? 0 : u->cached;
	int64_t written = u->cache_write < 0 ? 0 : u->cache_write;
	FUZZ_ASSERT(cached + written <= u->prompt);
	FUZZ_ASSERT(json_is_object(uj));
	FUZZ_ASSERT(num(uj, "prompt_tokens") == u->prompt);
	FUZZ_ASSERT(num(uj, "completion_tokens") == u->completion);
	FUZZ_ASSERT(num(uj, "total_tokens") == u->total);
}

static void check_reply(const struct xlate_ctx *x, const char *data, size_t size)
{
	json_t *out = NULL;
	struct usage u;
	usage_init(&u);
	struct rerr err;
	rerr_clear(&err);
	int rc = relay_response(&provider_anthropic, x, data, size, &out, &u, &err);
	if (rc == 0) {
		FUZZ_ASSERT(json_is_object(out));
		FUZZ_ASSERT(strcmp(json_string_value(json_object_get(out, "id")), x->id) == 0);
		FUZZ_ASSERT(strcmp(json_string_value(json_object_get(out, "model")), x->public_model) == 0);
		FUZZ_ASSERT(strcmp(json_string_value(json_object_get(out, "object")), "chat.completion") == 0);
		FUZZ_ASSERT(json_is_integer(json_object_get(out, "created")));
		json_t *choices = json_object_get(out, "choices");
		FUZZ_ASSERT(json_is_array(choices) && json_array_size(choices) == 1);
		json_t *c = json_array_get(choices, 0);
		FUZZ_ASSERT(num(c, "index") == 0);
		FUZZ_ASSERT(json_is_null(json_object_get(c, "logprobs")));
		const char *fr = json_string_value(json_object_get(c, "finish_reason"));
		FUZZ_ASSERT(fr && openai_finish_reason(fr));
		const json_t *pfr = json_object_get(c, "provider_finish_reason");
		FUZZ_ASSERT(!pfr || json_is_string(pfr));
		check_message(json_object_get(c, "message"));
		check_usage(&u, json_object_get(out, "usage"));
		const char *source = NULL;
		(void)usage_cost_nusd(&u, x->model, &source);
		FUZZ_ASSERT(source != NULL);
		char *s = json_dumps(out, JSON_COMPACT);
		FUZZ_ASSERT(s != NULL);
		free(s);
		json_decref(out);
	} else {
		FUZZ_ASSERT(rc == -1);
		FUZZ_ASSERT(out == NULL);
		fuzz_check_rerr(&err, 1);
	}
	usage_clear(&u);
}

static void check_map_error(const struct xlate_ctx *x, long status, long retry_after,
			    const char *body, size_t len)
{
	struct rerr err;
	rerr_clear(&err);
	provider_anthropic.map_error(x, status, body, len, retry_after, &err);
	fuzz_check_rerr(&err, 1);
	static const int allowed[] = { 400, 402, 404, 413, 429, 500, 502, 503, 504 };
	int ok = 0;
	for (size_t k = 0; k < sizeof(allowed) / sizeof(allowed[0]); k++)
		ok |= err.status == allowed[k];
	FUZZ_ASSERT(ok);
	FUZZ_ASSERT(err.type != NULL);
	if (status == 401 || status == 403) {
		/* The router's own credential: never the client's 401, never upstream text. */
		FUZZ_ASSERT(err.status == 502);
		FUZZ_ASSERT(err.param[0] == '\0');
	}
	if (status == 429 || status == 529) {
		FUZZ_ASSERT(err.retry_after > 0);
		FUZZ_ASSERT(err.should_retry == 1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (size_t i = 0; i < N_ANTH; i++)
		check_reply(&anth_ctx[i], (const char *)data, size);
	/* The same bytes as an error reply: status and Retry-After from the input's hash. */
	uint64_t seed = fuzz_hash(data, size);
	static const long statuses[] = { 400, 401, 402, 403, 404, 408, 413, 422, 429,
					 500, 502, 503, 504, 529, 418, 599 };
	long status = statuses[fuzz_next(&seed) % (sizeof(statuses) / sizeof(statuses[0]))];
	long retry_after = (long)(fuzz_next(&seed) % 300) - 16;
	check_map_error(&anth_ctx[0], status, retry_after, (const char *)data, size);
	return 0;
}
