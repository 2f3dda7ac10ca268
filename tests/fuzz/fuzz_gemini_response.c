/* fuzz_gemini_response.c - the Gemini adapter's parse_response through relay_response, and its
 * map_error on the same bytes as an error body, for both configured Gemini models.
 *
 * Properties of a translated reply: a chat.completion stamped with the router's id, the public
 * model name and an integer created; at least one choice, each with an integer index, an
 * assistant message whose content is a string or null, OpenAI finish_reasons only (the raw value
 * at most in provider_finish_reason), tool calls with an id and arguments that are JSON; usage,
 * when reported, keeps total = prompt + completion and is also the response's usage object. A
 * failure is an error value with no output that serialises into a valid envelope and never quotes
 * the provider key. map_error (status drawn from the input) gives one of the mapped statuses,
 * turns credential failures into 502 without upstream text, and advises a retry with a positive,
 * bounded Retry-After exactly for 429 and 503.
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

static int openai_finish_reason(const char *s)
{
	static const char *const ok[] = { "stop", "length", "tool_calls", "content_filter" };
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (strcmp(s, ok[i]) == 0)
			return 1;
	}
	return 0;
}

static void check_tool_call(const json_t *tc)
{
	FUZZ_ASSERT(json_is_string(json_object_get(tc, "id")));
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
	const json_t *extra = json_object_get(tc, "extra_content");
	FUZZ_ASSERT(!extra || json_is_object(json_object_get(extra, "google")));
}

static void check_response(const struct xlate_ctx *x, const json_t *out, const struct usage *u)
{
	FUZZ_ASSERT(json_is_object(out));
	FUZZ_ASSERT(strcmp(json_string_value(json_object_get(out, "id")), x->id) == 0);
	FUZZ_ASSERT(strcmp(json_string_value(json_object_get(out, "model")), x->public_model) == 0);
	FUZZ_ASSERT(strcmp(json_string_value(json_object_get(out, "object")), "chat.completion") == 0);
	FUZZ_ASSERT(json_is_integer(json_object_get(out, "created")));
	const json_t *choices = json_object_get(out, "choices");
	FUZZ_ASSERT(json_is_array(choices) && json_array_size(choices) > 0);
	size_t k;
	const json_t *c;
	json_array_foreach(choices, k, c)
	{
		FUZZ_ASSERT(json_is_integer(json_object_get(c, "index")));
		const char *fr = json_string_value(json_object_get(c, "finish_reason"));
		FUZZ_ASSERT(fr && openai_finish_reason(fr));
		const json_t *pfr = json_object_get(c, "provider_finish_reason");
		FUZZ_ASSERT(!pfr || json_is_string(pfr));
		const json_t *m = json_object_get(c, "message");
		FUZZ_ASSERT(strcmp(json_string_value(json_object_get(m, "role")), "assistant") == 0);
		const json_t *content = json_object_get(m, "content");
		FUZZ_ASSERT(json_is_string(content) || json_is_null(content));
		const json_t *rc = json_object_get(m, "reasoning_content");
		FUZZ_ASSERT(!rc || json_is_string(rc));
		const json_t *tcs = json_object_get(m, "tool_calls");
		FUZZ_ASSERT(!tcs || (json_is_array(tcs) && json_array_size(tcs) > 0));
		size_t i;
		const json_t *tc;
		json_array_foreach(tcs, i, tc)
			check_tool_call(tc);
		if (tcs && strcmp(fr, "stop") == 0)
			FUZZ_ASSERT(pfr != NULL);   /* only a lossy mapping turns a call turn into stop */
	}
	const json_t *usage = json_object_get(out, "usage");
	if (u->have) {
		FUZZ_ASSERT(u->prompt >= 0 && u->completion >= 0);
		FUZZ_ASSERT(u->total == u->prompt + u->completion);
		FUZZ_ASSERT(u->reasoning < 0 || u->reasoning <= u->completion);
		FUZZ_ASSERT(json_is_object(usage) && json_equal((json_t *)usage, u->json));
		FUZZ_ASSERT(json_integer_value(json_object_get(usage, "total_tokens")) == u->total);
	} else {
		FUZZ_ASSERT(usage == NULL);
	}
	const char *source = NULL;
	(void)usage_cost_nusd(u, x->model, &source);
	FUZZ_ASSERT(source != NULL);
	char *s = json_dumps(out, JSON_COMPACT);
	FUZZ_ASSERT(s != NULL);
	free(s);
}

static void check_map_error(const struct xlate_ctx *x, long status, const char *body, size_t len)
{
	struct rerr err;
	rerr_clear(&err);
	provider_gemini.map_error(x, status, body, len, 0, &err);
	fuzz_check_rerr(&err, 1);
	static const int allowed[] = { 400, 402, 404, 413, 429, 500, 502, 503, 504 };
	int ok = 0;
	for (size_t k = 0; k < sizeof(allowed) / sizeof(allowed[0]); k++)
		ok |= err.status == allowed[k];
	FUZZ_ASSERT(ok);
	if (status == 401 || status == 403 || strcmp(err.type, "upstream_auth_error") == 0) {
		FUZZ_ASSERT(err.status == 502);
		FUZZ_ASSERT(strstr(err.message, "refused the router's credentials") != NULL);
	}
	if (err.status == 429 || err.status == 503) {
		FUZZ_ASSERT(err.retry_after > 0 && err.retry_after <= 86400);
		FUZZ_ASSERT(err.should_retry == 1);
	} else {
		FUZZ_ASSERT(err.should_retry == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = { 400, 401, 402, 403, 404, 408, 409, 413, 422,
					 429, 499, 500, 501, 502, 503, 504, 529 };
	uint64_t seed = fuzz_hash(data, size);
	long status = statuses[fuzz_next(&seed) % (sizeof(statuses) / sizeof(statuses[0]))];
	for (size_t i = 0; i < sizeof(gm_ctx) / sizeof(gm_ctx[0]); i++) {
		const struct xlate_ctx *x = &gm_ctx[i];
		json_t *out = NULL;
		struct usage u;
		usage_init(&u);
		struct rerr err;
		rerr_clear(&err);
		int rc = relay_response(&provider_gemini, x, (const char *)data, size, &out, &u, &err);
		if (rc == 0) {
			check_response(x, out, &u);
			json_decref(out);
		} else {
			FUZZ_ASSERT(rc == -1);
			FUZZ_ASSERT(out == NULL);
			fuzz_check_rerr(&err, 1);
		}
		usage_clear(&u);
		check_map_error(x, status, (const char *)data, size);
	}
	return 0;
}
