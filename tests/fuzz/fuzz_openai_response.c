/* fuzz_openai_response.c - the OpenAI adapter's parse_response through relay_response, for every
 * OpenAI-compatible provider row of the shipped configuration.
 *
 * Properties: a success is a chat.completion stamped with the router's id, the public model name
 * and an integer created, whose finish_reasons are OpenAI values; a failure is an error value
 * with no output that serialises into a valid envelope and never quotes the provider key.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "relay.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	fuzz_load_config(argv);
	fuzz_build_contexts();
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int i = 0; i < FUZZ_N_CTX; i++) {
		const struct xlate_ctx *x = &fuzz_ctx[i];
		json_t *out = NULL;
		struct usage u;
		usage_init(&u);
		struct rerr err;
		rerr_clear(&err);
		int rc = relay_response(&provider_openai, x, (const char *)data, size, &out, &u, &err);
		if (rc == 0) {
			FUZZ_ASSERT(json_is_object(out));
			FUZZ_ASSERT(strcmp(json_string_value(json_object_get(out, "id")), x->id) == 0);
			FUZZ_ASSERT(strcmp(json_string_value(json_object_get(out, "model")), x->public_model) == 0);
			FUZZ_ASSERT(strcmp(json_string_value(json_object_get(out, "object")), "chat.completion") == 0);
			FUZZ_ASSERT(json_is_integer(json_object_get(out, "created")));
			json_t *choices = json_object_get(out, "choices");
			FUZZ_ASSERT(json_is_array(choices));
			size_t k;
			json_t *c;
			json_array_foreach(choices, k, c)
			{
				const char *fr = json_string_value(json_object_get(c, "finish_reason"));
				FUZZ_ASSERT(!fr || openai_finish_reason(fr));
			}
			FUZZ_ASSERT(!u.have || (u.prompt >= 0 && u.completion >= 0 && u.total >= 0));
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
	return 0;
}
