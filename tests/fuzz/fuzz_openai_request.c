/* fuzz_openai_request.c - chatreq_parse, then provider_openai.build_request for every
 * OpenAI-compatible provider row, lenient and strict.
 *
 * Properties: a built request is a JSON object naming the upstream model, posted to
 * <base_url>/chat/completions with the provider key; a stream always asks for usage; a reasoning
 * model never gets max_tokens or sampling parameters; a provider's unsupported parameters are
 * gone; a refusal is a 400 with a valid envelope. Everything is freed.
 */
#include <stdint.h>
#include <string.h>

#include "chatreq.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	fuzz_load_config(argv);
	fuzz_build_contexts();
	return 0;
}

static void check_request(const struct xlate_ctx *x, const struct upstream_req *req)
{
	json_error_t jerr;
	json_t *b = json_loadb(req->body, req->body_len, 0, &jerr);
	FUZZ_ASSERT(json_is_object(b));
	FUZZ_ASSERT(strlen(req->body) == req->body_len);
	FUZZ_ASSERT(strcmp(json_string_value(json_object_get(b, "model")), x->upstream_model) == 0);
	FUZZ_ASSERT(json_is_array(json_object_get(b, "messages")));
	if (x->stream) {
		FUZZ_ASSERT(req->stream);
		FUZZ_ASSERT(json_is_true(json_object_get(json_object_get(b, "stream_options"), "include_usage")));
	}
	if (x->model->reasoning) {
		static const char *const gone[] = { "max_tokens", "temperature", "top_p", "presence_penalty",
						    "frequency_penalty", "logprobs", "top_logprobs", "logit_bias" };
		for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
			FUZZ_ASSERT(json_object_get(b, gone[i]) == NULL);
	}
	for (size_t i = 0; i < x->prov->unsupported_params.n; i++)
		FUZZ_ASSERT(json_object_get(b, x->prov->unsupported_params.v[i]) == NULL);
	size_t k;
	json_t *m;
	json_array_foreach(json_object_get(b, "messages"), k, m)
	{
		const char *role = json_string_value(json_object_get(m, "role"));
		if (strcmp(x->prov->developer_role, "system") == 0)
			FUZZ_ASSERT(!role || strcmp(role, "developer") != 0);
		if (x->prov->strip_message_name)
			FUZZ_ASSERT(json_object_get(m, "name") == NULL);
		FUZZ_ASSERT(json_object_get(m, "thinking_blocks") == NULL);
	}
	json_decref(b);
	char want[512];
	snprintf(want, sizeof(want), "%s/chat/completions", x->prov->base_url);
	FUZZ_ASSERT(strcmp(req->url, want) == 0);
	int auth = 0;
	for (size_t i = 0; i < req->n_headers; i++) {
		if (strcmp(req->headers[i], "Authorization: Bearer " FUZZ_SECRET) == 0)
			auth = 1;
	}
	FUZZ_ASSERT(auth);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *body = NULL;
	struct chatreq cr;
	struct rerr err;
	rerr_clear(&err);
	if (chatreq_parse((const char *)data, size, &body, &cr, &err) < 0)
		return 0;
	for (int strict = 0; strict <= 1; strict++) {
		fuzz_cfg->strict_params = strict;
		for (int i = 0; i < FUZZ_N_CTX; i++) {
			struct xlate_ctx x = fuzz_ctx[i];
			x.stream = cr.stream;
			x.include_usage = cr.include_usage;
			struct upstream_req req;
			memset(&req, 0, sizeof(req));
			struct buf dropped;
			buf_init(&dropped, 4096);
			rerr_clear(&err);
			int rc = provider_openai.build_request(&x, body, &req, &dropped, &err);
			if (rc == 0) {
				check_request(&x, &req);
				fuzz_check_output_bound(&provider_openai, &x, body, &req, "max_completion_tokens|max_tokens");
				if (strict)
					FUZZ_ASSERT(dropped.len == 0);
			} else {
				FUZZ_ASSERT(rc == -1);
				FUZZ_ASSERT(err.status == 400);
				fuzz_check_rerr(&err, 0);
			}
			upstream_req_free(&req);
			buf_free(&dropped);
		}
	}
	fuzz_cfg->strict_params = 0;
	/* The client body is borrowed: it must be unchanged enough to validate again. */
	struct chatreq again;
	FUZZ_ASSERT(chatreq_validate(body, &again, &err) == 0);
	json_decref(body);
	return 0;
}
