/* fuzz_gemini_request.c - chatreq_parse, then provider_gemini.build_request for both configured
 * Gemini models, streaming and not, lenient and strict.
 *
 * Properties: a built request is a JSON object with a non-empty contents array of "user"/"model"
 * contents with non-empty parts (no empty content, no two adjacent contents of one role), no
 * OpenAI field at the top level, systemInstruction and tools (one Tool of functionDeclarations
 * with a name and description each) only when non-empty; it is posted to
 * <base_url>/models/<model>:generateContent or :streamGenerateContent?alt=sse with the key in
 * x-goog-api-key and never in the URL; strict mode drops nothing. A refusal is a 400 with a valid
 * envelope. The borrowed client body is left unchanged, and everything is freed.
 */
#include <stdint.h>
#include <string.h>

#include "chatreq.h"
#include "fuzz_common.h"

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

static void check_parts(const json_t *parts)
{
	FUZZ_ASSERT(json_is_array(parts) && json_array_size(parts) > 0);
	size_t i;
	const json_t *p;
	json_array_foreach(parts, i, p)
		FUZZ_ASSERT(json_is_object(p) && json_object_size(p) > 0);
}

static void check_request(const struct xlate_ctx *x, const struct upstream_req *req)
{
	json_error_t jerr;
	json_t *b = json_loadb(req->body, req->body_len, 0, &jerr);
	FUZZ_ASSERT(json_is_object(b));
	FUZZ_ASSERT(strlen(req->body) == req->body_len);
	static const char *const top[] = { "contents", "systemInstruction", "tools", "toolConfig",
					   "generationConfig" };
	const char *key;
	json_t *v;
	json_object_foreach(b, key, v)
	{
		int ok = 0;
		for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++)
			ok |= strcmp(key, top[i]) == 0;
		FUZZ_ASSERT(ok);
	}
	const json_t *contents = json_object_get(b, "contents");
	FUZZ_ASSERT(json_is_array(contents) && json_array_size(contents) > 0);
	const char *prev = NULL;
	size_t i;
	const json_t *c;
	json_array_foreach(contents, i, c)
	{
		const char *role = json_string_value(json_object_get(c, "role"));
		FUZZ_ASSERT(role && (strcmp(role, "user") == 0 || strcmp(role, "model") == 0));
		FUZZ_ASSERT(!prev || strcmp(prev, role) != 0);
		prev = role;
		check_parts(json_object_get(c, "parts"));
	}
	const json_t *si = json_object_get(b, "systemInstruction");
	if (si)
		check_parts(json_object_get(si, "parts"));
	const json_t *tools = json_object_get(b, "tools");
	if (tools) {
		FUZZ_ASSERT(json_is_array(tools) && json_array_size(tools) == 1);
		const json_t *decls = json_object_get(json_array_get(tools, 0), "functionDeclarations");
		FUZZ_ASSERT(json_is_array(decls) && json_array_size(decls) > 0);
		const json_t *d;
		json_array_foreach(decls, i, d)
		{
			FUZZ_ASSERT(json_string_length(json_object_get(d, "name")) > 0);
			FUZZ_ASSERT(json_string_length(json_object_get(d, "description")) > 0);
		}
	}
	FUZZ_ASSERT(!json_object_get(b, "toolConfig") || tools);
	const json_t *gc = json_object_get(b, "generationConfig");
	FUZZ_ASSERT(!gc || (json_is_object(gc) && json_object_size(gc) > 0));
	json_decref(b);

	char want[512];
	snprintf(want, sizeof(want), "%s/models/%s:%s", x->prov->base_url, x->upstream_model,
		 x->stream ? "streamGenerateContent?alt=sse" : "generateContent");
	FUZZ_ASSERT(strcmp(req->url, want) == 0);
	FUZZ_ASSERT(strstr(req->url, FUZZ_SECRET) == NULL);
	FUZZ_ASSERT(req->stream == x->stream);
	int key_hdr = 0;
	for (size_t k = 0; k < req->n_headers; k++) {
		if (strcmp(req->headers[k], "x-goog-api-key: " FUZZ_SECRET) == 0)
			key_hdr = 1;
		FUZZ_ASSERT(strncmp(req->headers[k], "Authorization:", 14) != 0);
	}
	FUZZ_ASSERT(key_hdr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *body = NULL;
	struct chatreq cr;
	struct rerr err;
	rerr_clear(&err);
	if (chatreq_parse((const char *)data, size, &body, &cr, &err) < 0)
		return 0;
	json_t *before = json_deep_copy(body);
	for (int strict = 0; strict <= 1; strict++) {
		fuzz_cfg->strict_params = strict;
		for (size_t i = 0; i < sizeof(gm_ctx) / sizeof(gm_ctx[0]); i++) {
			for (int stream = 0; stream <= 1; stream++) {
				struct xlate_ctx x = gm_ctx[i];
				x.stream = stream;
				x.include_usage = stream && cr.include_usage;
				struct upstream_req req;
				memset(&req, 0, sizeof(req));
				struct buf dropped;
				buf_init(&dropped, 4096);
				rerr_clear(&err);
				int rc = provider_gemini.build_request(&x, body, &req, &dropped, &err);
				if (rc == 0) {
					check_request(&x, &req);
				fuzz_check_output_bound(&provider_gemini, &x, body, &req, "generationConfig/maxOutputTokens");
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
	}
	fuzz_cfg->strict_params = 0;
	/* The client body is borrowed: it must come back unchanged. */
	FUZZ_ASSERT(json_equal(body, before));
	json_decref(before);
	json_decref(body);
	return 0;
}
