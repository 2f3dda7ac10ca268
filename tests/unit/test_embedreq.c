/* test_embedreq.c - validation of embeddings request bodies: one row per case. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "embedreq.h"
#include "harness.h"
#include "providers/provider.h"

struct embed_row {
	const char *name;
	const char *body;
	const char *param;     /* NULL: valid; else the expected 400's param ("" = none) */
	size_t n;              /* valid: inputs */
	int tokens, base64;
	long long bound;       /* valid: embedreq_token_bound */
};

static const struct embed_row rows[] = {
	{ "one string", "{\"model\":\"m\",\"input\":\"hello\"}", NULL, 1, 0, 0, 5 },
	{ "strings, base64, dimensions, user", "{\"model\":\"m\",\"input\":[\"ab\",\"c\"],"
		"\"encoding_format\":\"base64\",\"dimensions\":256,\"user\":\"u\"}", NULL, 2, 0, 1, 3 },
	{ "token ids", "{\"model\":\"m\",\"input\":[1,2,3]}", NULL, 1, 1, 0, 3 },
	{ "token id arrays", "{\"model\":\"m\",\"input\":[[1,2],[3]]}", NULL, 2, 1, 0, 3 },
	{ "nulls are absent", "{\"model\":\"m\",\"input\":\"x\",\"dimensions\":null,"
		"\"encoding_format\":null,\"user\":null}", NULL, 1, 0, 0, 1 },
	{ "not an object", "[1]", "", 0, 0, 0, 0 },
	{ "no model", "{\"input\":\"x\"}", "model", 0, 0, 0, 0 },
	{ "empty model", "{\"model\":\"\",\"input\":\"x\"}", "model", 0, 0, 0, 0 },
	{ "no input", "{\"model\":\"m\"}", "input", 0, 0, 0, 0 },
	{ "empty string", "{\"model\":\"m\",\"input\":\"\"}", "input", 0, 0, 0, 0 },
	{ "empty array", "{\"model\":\"m\",\"input\":[]}", "input", 0, 0, 0, 0 },
	{ "an empty string in the array", "{\"model\":\"m\",\"input\":[\"a\",\"\"]}", "input", 0, 0, 0, 0 },
	{ "mixed strings and numbers", "{\"model\":\"m\",\"input\":[\"a\",1]}", "input", 0, 0, 0, 0 },
	{ "a negative token id", "{\"model\":\"m\",\"input\":[1,-2]}", "input", 0, 0, 0, 0 },
	{ "an empty token array", "{\"model\":\"m\",\"input\":[[1],[]]}", "input", 0, 0, 0, 0 },
	{ "an object input", "{\"model\":\"m\",\"input\":{\"a\":1}}", "input", 0, 0, 0, 0 },
	{ "dimensions 0", "{\"model\":\"m\",\"input\":\"x\",\"dimensions\":0}", "dimensions", 0, 0, 0, 0 },
	{ "dimensions a string", "{\"model\":\"m\",\"input\":\"x\",\"dimensions\":\"8\"}", "dimensions", 0, 0, 0, 0 },
	{ "dimensions too large", "{\"model\":\"m\",\"input\":\"x\",\"dimensions\":65537}", "dimensions", 0, 0, 0, 0 },
	{ "an unknown encoding", "{\"model\":\"m\",\"input\":\"x\",\"encoding_format\":\"int8\"}", "encoding_format", 0, 0, 0, 0 },
	{ "user not a string", "{\"model\":\"m\",\"input\":\"x\",\"user\":5}", "user", 0, 0, 0, 0 },
	{ "stream", "{\"model\":\"m\",\"input\":\"x\",\"stream\":true}", "stream", 0, 0, 0, 0 },
};

TEST(embedreq_rows)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct embed_row *r = &rows[i];
		test_case("%s", r->name);
		json_t *body = NULL;
		struct embedreq q;
		struct rerr err;
		rerr_clear(&err);
		int rc = embedreq_parse(r->body, strlen(r->body), &body, &q, &err);
		if (!r->param) {
			CHECK_INT_EQ(rc, 0);
			CHECK_INT_EQ(q.n, r->n);
			CHECK_INT_EQ(q.tokens, r->tokens);
			CHECK_INT_EQ(q.base64, r->base64);
			CHECK_INT_EQ(embedreq_token_bound(&q), r->bound);
			CHECK_STR_EQ(q.model, "m");
		} else {
			CHECK_INT_EQ(rc, -1);
			CHECK_INT_EQ(err.status, 400);
			CHECK_STR_EQ(err.param, r->param);
			CHECK_NULL(body);
		}
		json_decref(body);
	}
	test_case(NULL);
}

TEST(embedreq_input_count_bounds)
{
	/* 2048 inputs pass, 2049 are refused naming input; the empty body has its own message. */
	for (int n = 2048; n <= 2049; n++) {
		struct buf b;
		buf_init(&b, 1 << 20);
		buf_puts(&b, "{\"model\":\"m\",\"input\":[");
		for (int i = 0; i < n; i++)
			buf_printf(&b, "%s\"t\"", i ? "," : "");
		buf_puts(&b, "]}");
		json_t *body = NULL;
		struct embedreq q;
		struct rerr err;
		rerr_clear(&err);
		int rc = embedreq_parse(b.p, b.len, &body, &q, &err);
		CHECK_INT_EQ(rc, n == 2048 ? 0 : -1);
		if (rc == 0)
			CHECK_STR_EQ(embedreq_text(body, 2047), "t");
		else
			CHECK_STR_EQ(err.param, "input");
		json_decref(body);
		buf_free(&b);
	}
	json_t *body = NULL;
	struct embedreq q;
	struct rerr err;
	rerr_clear(&err);
	CHECK_INT_EQ(embedreq_parse("", 0, &body, &q, &err), -1);
	CHECK(strstr(err.message, "'input'") != NULL);
}

/* A vector value beyond float32's range (an OpenAI-compatible upstream's 1e300) is not a vector:
 * 502, as a non-finite value is, never an Infinity in a base64 vector. */
TEST(embed_reply_values_beyond_float_are_refused)
{
	struct provider_conf prov;
	memset(&prov, 0, sizeof(prov));
	prov.name = "openai";
	prov.api = API_OPENAI;
	struct model_conf model;
	memset(&model, 0, sizeof(model));
	model.id = "m";
	struct xlate_ctx x = { .prov = &prov, .model = &model, .upstream_model = "m", .public_model = "m",
			       .embed = 1 };
	static const char *const replies[] = {
		"{\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":[1e300,0.5]}],\"usage\":{\"prompt_tokens\":1}}",
		"{\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":[0.5,-1e39]}],\"usage\":{\"prompt_tokens\":1}}",
	};
	for (int base64 = 0; base64 < 2; base64++) {
		const char *body = base64 ? "{\"model\":\"m\",\"input\":\"x\",\"encoding_format\":\"base64\"}"
					  : "{\"model\":\"m\",\"input\":\"x\"}";
		json_t *client = NULL;
		struct embedreq q;
		struct rerr err;
		rerr_clear(&err);
		REQUIRE(embedreq_parse(body, strlen(body), &client, &q, &err) == 0);
		for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
			test_case("%s, %s", base64 ? "base64" : "float", replies[i]);
			struct buf items;
			buf_init(&items, 1 << 20);
			struct usage u;
			usage_init(&u);
			rerr_clear(&err);
			CHECK_INT_EQ(embed_parse_reply(&x, &q, client, replies[i], strlen(replies[i]), 0, 1, &items, &u, &err), -1);
			CHECK_INT_EQ(err.status, 502);
			CHECK_STR_EQ(err.code, "bad_upstream_response");
			buf_free(&items);
			usage_clear(&u);
		}
		json_decref(client);
	}
}
