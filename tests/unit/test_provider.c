/* test_provider.c - what the translators share: usage, cost, status mapping, redaction,
 * finish_reason, dropped parameters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "providers/provider.h"
#include "util.h"

#define SECRET "sk-test-SECRET-0123456789abcdef"

struct fixture {
	struct config cfg;
	struct provider_conf prov;
	struct model_conf model;
	struct xlate_ctx x;
};

static void fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->prov.name = "openai";
	f->prov.api = API_OPENAI;
	f->prov.key_env = "OPENAI_API_KEY";
	f->prov.api_key = SECRET;
	f->prov.base_url = "https://api.openai.com/v1";
	f->prov.developer_role = "developer";
	f->prov.reasoning_field = "";
	f->model.id = "gpt-4o-mini";
	f->model.upstream = "gpt-4o-mini";
	f->model.in_nusd = 150;
	f->model.out_nusd = 600;
	f->model.cached_in_nusd = 75;
	f->model.cache_write_nusd = 190;
	f->x.cfg = &f->cfg;
	f->x.prov = &f->prov;
	f->x.model = &f->model;
	f->x.upstream_model = "gpt-4o-mini";
	f->x.public_model = "gpt-4o-mini";
	f->x.id = "chatcmpl-test";
	f->x.created = 1767225600;
}

static json_t *parse(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, JSON_DECODE_ANY, &e);
	if (!j)
		printf("  bad JSON in the test: %s\n", e.text);
	return j;
}

/* ---- usage ---- */

struct usage_row {
	const char *name;
	const char *json;
	int rc;
	int64_t prompt, completion, total, cached, cache_write, reasoning;
	int have_cost;
	int64_t cost_nusd;
	const char *norm;   /* expected u.json (compared as JSON), NULL = the input itself */
};

static const struct usage_row usage_rows[] = {
	{ "OpenAI",
	  "{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,"
	  "\"prompt_tokens_details\":{\"cached_tokens\":5,\"audio_tokens\":0},"
	  "\"completion_tokens_details\":{\"reasoning_tokens\":3,\"audio_tokens\":0}}",
	  0, 19, 10, 29, 5, -1, 3, 0, 0, NULL },
	{ "OpenAI without details", "{\"prompt_tokens\":14,\"completion_tokens\":30,\"total_tokens\":44}",
	  0, 14, 30, 44, -1, -1, -1, 0, 0, NULL },
	{ "DeepSeek cache counters",
	  "{\"prompt_tokens\":100,\"completion_tokens\":20,\"total_tokens\":120,"
	  "\"prompt_cache_hit_tokens\":60,\"prompt_cache_miss_tokens\":40,"
	  "\"completion_tokens_details\":{\"reasoning_tokens\":15}}",
	  0, 100, 20, 120, 60, -1, 15, 0, 0,
	  "{\"prompt_tokens\":100,\"completion_tokens\":20,\"total_tokens\":120,"
	  "\"prompt_cache_hit_tokens\":60,\"prompt_cache_miss_tokens\":40,"
	  "\"completion_tokens_details\":{\"reasoning_tokens\":15},"
	  "\"prompt_tokens_details\":{\"cached_tokens\":60}}" },
	{ "DeepSeek with both shapes (details win)",
	  "{\"prompt_tokens\":18,\"completion_tokens\":21,\"total_tokens\":39,"
	  "\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":14},"
	  "\"prompt_cache_hit_tokens\":0,\"prompt_cache_miss_tokens\":18}",
	  0, 18, 21, 39, 0, -1, 14, 0, 0, NULL },
	{ "OpenRouter cost",
	  "{\"prompt_tokens\":14,\"completion_tokens\":6,\"total_tokens\":20,\"cost\":0.000132,\"is_byok\":false,"
	  "\"prompt_tokens_details\":{\"cached_tokens\":0,\"cache_write_tokens\":4},"
	  "\"cost_details\":{\"upstream_inference_cost\":null},\"completion_tokens_details\":{\"reasoning_tokens\":0}}",
	  0, 14, 6, 20, 0, 4, 0, 1, 132000, NULL },
	{ "OpenRouter zero cost", "{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2,\"cost\":0}",
	  0, 1, 1, 2, -1, -1, -1, 1, 0, NULL },
	{ "Groq x_groq.usage",
	  "{\"queue_time\":0.012,\"prompt_tokens\":12,\"prompt_time\":0.002,\"completion_tokens\":3,"
	  "\"completion_time\":0.004,\"total_tokens\":15,\"total_time\":0.006}",
	  0, 12, 3, 15, -1, -1, -1, 0, 0, NULL },
	{ "total missing is computed",
	  "{\"prompt_tokens\":7,\"completion_tokens\":5}", 0, 7, 5, 12, -1, -1, -1, 0, 0,
	  "{\"prompt_tokens\":7,\"completion_tokens\":5,\"total_tokens\":12}" },
	{ "completion missing counts as 0",
	  "{\"prompt_tokens\":7}", 0, 7, 0, 7, -1, -1, -1, 0, 0,
	  "{\"prompt_tokens\":7,\"completion_tokens\":0,\"total_tokens\":7}" },
	{ "negative cost is ignored",
	  "{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2,\"cost\":-1}",
	  0, 1, 1, 2, -1, -1, -1, 0, 0, NULL },
	{ "no counters", "{\"foo\":1}", -1, -1, -1, -1, -1, -1, -1, 0, 0, NULL },
	{ "null", "null", -1, -1, -1, -1, -1, -1, -1, 0, 0, NULL },
	{ "an array", "[1]", -1, -1, -1, -1, -1, -1, -1, 0, 0, NULL },
};

TEST(usage_from_openai_table)
{
	for (size_t i = 0; i < sizeof(usage_rows) / sizeof(usage_rows[0]); i++) {
		const struct usage_row *r = &usage_rows[i];
		test_case("%s", r->name);
		json_t *j = parse(r->json);
		struct usage u;
		usage_init(&u);
		CHECK_INT_EQ(usage_from_openai(&u, j), r->rc);
		if (r->rc == 0) {
			CHECK_INT_EQ(u.have, 1);
			CHECK_INT_EQ(u.prompt, r->prompt);
			CHECK_INT_EQ(u.completion, r->completion);
			CHECK_INT_EQ(u.total, r->total);
			CHECK_INT_EQ(u.cached, r->cached);
			CHECK_INT_EQ(u.cache_write, r->cache_write);
			CHECK_INT_EQ(u.reasoning, r->reasoning);
			CHECK_INT_EQ(u.have_cost, r->have_cost);
			if (r->have_cost)
				CHECK_INT_EQ(u.cost_nusd, r->cost_nusd);
			json_t *want = r->norm ? parse(r->norm) : json_incref(j);
			CHECK(json_equal(u.json, want));
			if (!json_equal(u.json, want)) {
				char *got = json_dumps(u.json, JSON_COMPACT | JSON_SORT_KEYS);
				printf("       u.json = %s\n", got);
				free(got);
			}
			/* A copy: the caller's object is not modified. */
			CHECK(u.json != j);
			json_decref(want);
		} else {
			CHECK_INT_EQ(u.have, 0);
			CHECK_NULL(u.json);
		}
		usage_clear(&u);
		json_decref(j);
	}
}

TEST(usage_from_openai_replaces_an_earlier_report)
{
	struct usage u;
	usage_init(&u);
	json_t *a = parse("{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}");
	json_t *b = parse("{\"prompt_tokens\":10,\"completion_tokens\":20,\"total_tokens\":30}");
	CHECK_INT_EQ(usage_from_openai(&u, a), 0);
	CHECK_INT_EQ(usage_from_openai(&u, b), 0);
	CHECK_INT_EQ(u.prompt, 10);
	CHECK(json_equal(u.json, b));
	/* A non-usage value leaves the last report alone. */
	CHECK_INT_EQ(usage_from_openai(&u, NULL), -1);
	CHECK_INT_EQ(u.prompt, 10);
	usage_clear(&u);
	CHECK_INT_EQ(u.have, 0);
	CHECK_INT_EQ(u.prompt, -1);
	json_decref(a);
	json_decref(b);
}

TEST(usage_to_json_from_counters)
{
	struct usage u;
	usage_init(&u);
	u.have = 1;
	u.prompt = 100;
	u.completion = 20;
	u.cached = 30;
	u.reasoning = 5;
	json_t *j = usage_to_json(&u);
	json_t *want = parse("{\"prompt_tokens\":100,\"completion_tokens\":20,\"total_tokens\":120,"
			     "\"prompt_tokens_details\":{\"cached_tokens\":30},"
			     "\"completion_tokens_details\":{\"reasoning_tokens\":5}}");
	CHECK(json_equal(j, want));
	json_decref(j);
	json_decref(want);
	usage_init(&u);
	j = usage_to_json(&u);
	want = parse("{\"prompt_tokens\":0,\"completion_tokens\":0,\"total_tokens\":0}");
	CHECK(json_equal(j, want));
	json_decref(j);
	json_decref(want);
}

TEST(usage_cost_nusd_table)
{
	struct fixture f;
	fixture_init(&f);
	/* in 150, cached 75, cache write 190, out 600 nUSD per token */
	static const struct {
		const char *name;
		int have;
		int64_t prompt, completion, cached, cache_write;
		int have_cost;
		int64_t provider_cost;
		int64_t want;
		const char *source;
	} rows[] = {
		{ "plain", 1, 1000, 100, -1, -1, 0, 0, 1000 * 150 + 100 * 600, "pricing" },
		{ "cached tokens at the cached price", 1, 1000, 100, 400, -1, 0, 0,
		  600 * 150 + 400 * 75 + 100 * 600, "pricing" },
		{ "cache writes at the write price", 1, 1000, 100, 400, 100, 0, 0,
		  500 * 150 + 400 * 75 + 100 * 190 + 100 * 600, "pricing" },
		{ "provider-reported cost wins", 1, 1000, 100, 400, -1, 1, 132000, 132000, "provider" },
		{ "no usage at all", 0, -1, -1, -1, -1, 0, 0, 0, "none" },
		{ "zero tokens", 1, 0, 0, 0, 0, 0, 0, 0, "pricing" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("%s", rows[i].name);
		struct usage u;
		usage_init(&u);
		u.have = rows[i].have;
		u.prompt = rows[i].prompt;
		u.completion = rows[i].completion;
		u.cached = rows[i].cached;
		u.cache_write = rows[i].cache_write;
		u.have_cost = rows[i].have_cost;
		u.cost_nusd = rows[i].provider_cost;
		const char *source = NULL;
		CHECK_INT_EQ(usage_cost_nusd(&u, &f.model, &source), rows[i].want);
		CHECK_STR_EQ(source, rows[i].source);
	}
}

TEST(usage_cost_from_a_real_deepseek_reply)
{
	/* usage_from_openai then usage_cost_nusd: the cache hits are billed at the cached price. */
	struct fixture f;
	fixture_init(&f);
	f.model.in_nusd = 270;
	f.model.cached_in_nusd = 70;
	f.model.out_nusd = 1100;
	json_t *j = parse("{\"prompt_tokens\":100,\"completion_tokens\":20,\"total_tokens\":120,"
			  "\"prompt_cache_hit_tokens\":60,\"prompt_cache_miss_tokens\":40}");
	struct usage u;
	usage_init(&u);
	REQUIRE_INT_EQ(usage_from_openai(&u, j), 0);
	const char *source;
	CHECK_INT_EQ(usage_cost_nusd(&u, &f.model, &source), 40 * 270 + 60 * 70 + 20 * 1100);
	CHECK_STR_EQ(source, "pricing");
	usage_clear(&u);
	json_decref(j);
}

/* ---- status mapping ---- */

TEST(map_upstream_status_table)
{
	static const struct {
		long upstream;
		long retry_after_in;
		int status;
		const char *type;
		const char *code;
		long retry_after;
		int should_retry;
		int carries_text;
	} rows[] = {
		{ 400, 0, 400, "invalid_request_error", NULL, 0, 0, 1 },
		{ 401, 0, 502, "upstream_auth_error", "upstream_authentication_failed", 0, 0, 0 },
		{ 402, 0, 402, "insufficient_quota", "insufficient_quota", 0, 0, 1 },
		{ 403, 0, 502, "upstream_auth_error", "upstream_authentication_failed", 0, 0, 0 },
		{ 404, 0, 404, "invalid_request_error", "model_not_found", 0, 0, 1 },
		{ 408, 0, 504, "timeout_error", NULL, 0, 0, 1 },
		{ 409, 0, 400, "invalid_request_error", NULL, 0, 0, 1 },
		{ 413, 0, 413, "invalid_request_error", "request_too_large", 0, 0, 1 },
		{ 422, 0, 400, "invalid_request_error", NULL, 0, 0, 1 },
		{ 429, 20, 429, "rate_limit_error", "rate_limit_exceeded", 20, 1, 1 },
		{ 429, 0, 429, "rate_limit_error", "rate_limit_exceeded", 1, 1, 1 },
		{ 498, 0, 503, "overloaded_error", "upstream_overloaded", 1, 1, 1 },
		{ 500, 0, 500, "server_error", NULL, 0, 0, 1 },
		{ 502, 0, 502, "server_error", "bad_upstream_response", 0, 0, 1 },
		{ 503, 5, 503, "overloaded_error", "upstream_overloaded", 5, 1, 1 },
		{ 503, 0, 503, "overloaded_error", "upstream_overloaded", 1, 1, 1 },
		{ 504, 0, 504, "timeout_error", NULL, 0, 0, 1 },
		{ 520, 0, 502, "server_error", "bad_upstream_response", 0, 0, 1 },
		{ 529, 30, 503, "overloaded_error", "upstream_overloaded", 30, 1, 1 },
		{ 529, 0, 503, "overloaded_error", "upstream_overloaded", 1, 1, 1 },
	};
	struct fixture f;
	fixture_init(&f);
	const char *upstream_text = "Upstream says: quota for org-XYZ";
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("HTTP %ld (Retry-After %ld)", rows[i].upstream, rows[i].retry_after_in);
		struct rerr err;
		rerr_clear(&err);
		map_upstream_status(&f.x, rows[i].upstream, upstream_text, NULL, NULL,
				    rows[i].retry_after_in, &err);
		CHECK_INT_EQ(err.status, rows[i].status);
		CHECK_STR_EQ(err.type, rows[i].type);
		CHECK_STR_EQ(err.code, rows[i].code);
		CHECK_INT_EQ(err.retry_after, rows[i].retry_after);
		CHECK_INT_EQ(err.should_retry, rows[i].should_retry);
		/* The provider is named; credential errors never carry the upstream text. */
		CHECK_CONTAINS(err.message, "openai");
		if (rows[i].carries_text)
			CHECK_CONTAINS(err.message, upstream_text);
		else
			CHECK_NOT_CONTAINS(err.message, "org-XYZ");
		CHECK_NOT_CONTAINS(err.message, SECRET);
	}
}

TEST(map_upstream_status_credentials_error_names_the_variable)
{
	struct fixture f;
	fixture_init(&f);
	struct rerr err;
	rerr_clear(&err);
	map_upstream_status(&f.x, 401, "Incorrect API key provided: " SECRET, "invalid_api_key", NULL, 0,
			    &err);
	CHECK_INT_EQ(err.status, 502);
	CHECK_CONTAINS(err.message, "OPENAI_API_KEY");
	CHECK_NOT_CONTAINS(err.message, "Incorrect API key");
	CHECK_NOT_CONTAINS(err.message, "sk-test");
	CHECK_STR_EQ(err.param, "");
}

TEST(map_upstream_status_keeps_known_codes_and_param)
{
	struct fixture f;
	fixture_init(&f);
	static const struct {
		const char *code;
		const char *want;
	} rows[] = {
		{ "context_length_exceeded", "context_length_exceeded" },
		{ "unsupported_parameter", "unsupported_parameter" },
		{ "unsupported_value", "unsupported_value" },
		{ "invalid_value", "invalid_value" },
		{ "some_other_code", NULL },
		{ NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("code %s", rows[i].code ? rows[i].code : "(null)");
		struct rerr err;
		rerr_clear(&err);
		map_upstream_status(&f.x, 400, "bad", rows[i].code, "max_tokens", 0, &err);
		CHECK_INT_EQ(err.status, 400);
		CHECK_STR_EQ(err.code, rows[i].want);
		CHECK_STR_EQ(err.param, "max_tokens");
	}
	test_case(NULL);
	struct rerr err;
	rerr_clear(&err);
	map_upstream_status(&f.x, 404, NULL, NULL, NULL, 0, &err);
	CHECK_STR_EQ(err.param, "model");
	CHECK_CONTAINS(err.message, "gpt-4o-mini");
}

TEST(map_upstream_status_redacts_the_key_from_upstream_text)
{
	struct fixture f;
	fixture_init(&f);
	struct rerr err;
	rerr_clear(&err);
	map_upstream_status(&f.x, 400, "key " SECRET " rejected; again: " SECRET, NULL, NULL, 0, &err);
	CHECK_NOT_CONTAINS(err.message, SECRET);
	CHECK_NOT_CONTAINS(err.message, "SECRET");
	CHECK_CONTAINS(err.message, "key ****");
	CHECK_CONTAINS(err.message, "rejected; again: ****");
}

/* A key that straddles a cut (the message's 600 bytes, the param's 96, the moderation message's
 * 600) must not leave its first bytes behind: redaction runs on the whole text, then it is cut. */
TEST(redaction_comes_before_every_cut)
{
	struct fixture f;
	fixture_init(&f);
	static const size_t cuts[] = { 95, 90, 85, 599, 590, 580 };
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		test_case("key at byte %zu", cuts[i]);
		char text[1200];
		memset(text, 'a', cuts[i]);
		snprintf(text + cuts[i], sizeof(text) - cuts[i], "%s tail", SECRET);
		struct rerr err;
		rerr_clear(&err);
		map_upstream_status(&f.x, 400, text, NULL, text, 0, &err);
		CHECK_NOT_CONTAINS(err.param, "sk-te");
		CHECK_NOT_CONTAINS(err.message, "sk-te");
		/* openai_map_error's moderation path (HTTP 403 with a moderation verdict). */
		json_t *body = json_pack("{s:{s:s,s:{s:[s]}}}", "error", "message", text, "metadata",
					 "reasons", "violence");
		char *raw = json_dumps(body, JSON_COMPACT);
		rerr_clear(&err);
		provider_openai.map_error(&f.x, 403, raw, strlen(raw), 0, &err);
		CHECK_INT_EQ(err.status, 403);
		CHECK_NOT_CONTAINS(err.message, "sk-te");
		CHECK_CONTAINS(err.message, "aaaa");
		free(raw);
		json_decref(body);
	}
	test_case(NULL);
}

TEST(map_upstream_status_empty_text_has_no_dangling_separator)
{
	struct fixture f;
	fixture_init(&f);
	struct rerr err;
	rerr_clear(&err);
	map_upstream_status(&f.x, 500, "", NULL, NULL, 0, &err);
	CHECK_STR_EQ(err.message, "openai internal error (HTTP 500)");
	rerr_clear(&err);
	map_upstream_status(&f.x, 400, NULL, NULL, NULL, 0, &err);
	CHECK_STR_EQ(err.message, "openai rejected the request (HTTP 400)");
}

/* ---- redaction ---- */

TEST(redact_secret_table)
{
	static const struct {
		const char *in, *secret, *out;
	} rows[] = {
		{ "key sk-abcdef123 leaked", "sk-abcdef123", "key ************ leaked" },
		{ "sk-abcdef123sk-abcdef123", "sk-abcdef123", "************************" },
		{ "prefix sk-abcdef12 only", "sk-abcdef123", "prefix sk-abcdef12 only" },
		{ "nothing here", "sk-abcdef123", "nothing here" },
		{ "abcdef", "abcdef", "******" },
		{ "", "sk-abcdef123", "" },
		{ "same text", NULL, "same text" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("row %zu", i);
		char s[128];
		snprintf(s, sizeof(s), "%s", rows[i].in);
		redact_secret(s, rows[i].secret);
		CHECK_STR_EQ(s, rows[i].out);
	}
	test_case(NULL);
	redact_secret(NULL, "secret"); /* no crash */
}

/* ---- finish_reason ---- */

TEST(finish_reason_normalize_table)
{
	static const struct {
		const char *raw, *want;
		int changed;
	} rows[] = {
		{ "stop", "stop", 0 },
		{ "length", "length", 0 },
		{ "tool_calls", "tool_calls", 0 },
		{ "content_filter", "content_filter", 0 },
		{ "function_call", "function_call", 0 },
		{ "max_tokens", "length", 1 },
		{ "insufficient_system_resource", "length", 1 },
		{ "end_turn", "stop", 1 },
		{ "eos", "stop", 1 },
		{ "", "stop", 1 },
		{ "STOP", "stop", 1 },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("\"%s\"", rows[i].raw);
		int changed = -1;
		CHECK_STR_EQ(finish_reason_normalize(rows[i].raw, &changed), rows[i].want);
		CHECK_INT_EQ(changed, rows[i].changed);
	}
	test_case(NULL);
	int changed = -1;
	CHECK_NULL(finish_reason_normalize(NULL, &changed));
	CHECK_INT_EQ(changed, 0);
}

/* ---- dropped parameters ---- */

TEST(dropped_add_dedupes)
{
	static const struct {
		const char *adds[6];
		const char *want;
	} rows[] = {
		{ { "logprobs", NULL }, "logprobs" },
		{ { "a", "b", "a", "b", "c", NULL }, "a,b,c" },
		{ { "ab", "a", NULL }, "ab,a" },
		{ { "a", "ab", NULL }, "a,ab" },
		{ { "top_logprobs", "logprobs", "top_logprobs", NULL }, "top_logprobs,logprobs" },
		{ { "x", "x", "x", NULL }, "x" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("row %zu", i);
		struct buf b;
		buf_init(&b, 4096);
		for (size_t k = 0; rows[i].adds[k]; k++)
			dropped_add(&b, rows[i].adds[k]);
		CHECK_STR_EQ(buf_str(&b), rows[i].want);
		buf_free(&b);
	}
}

TEST(param_unsupported_lenient_and_strict)
{
	struct fixture f;
	fixture_init(&f);
	struct buf dropped;
	buf_init(&dropped, 4096);
	struct rerr err;
	rerr_clear(&err);
	f.cfg.strict_params = 0;
	CHECK_INT_EQ(param_unsupported(&f.x, &dropped, "logit_bias", &err), 0);
	CHECK_INT_EQ(param_unsupported(&f.x, &dropped, "logit_bias", &err), 0);
	CHECK_STR_EQ(buf_str(&dropped), "logit_bias");
	CHECK_INT_EQ(err.status, 0);
	f.cfg.strict_params = 1;
	CHECK_INT_EQ(param_unsupported(&f.x, &dropped, "top_logprobs", &err), -1);
	CHECK_INT_EQ(err.status, 400);
	CHECK_STR_EQ(err.type, "invalid_request_error");
	CHECK_STR_EQ(err.code, "unsupported_parameter");
	CHECK_STR_EQ(err.param, "top_logprobs");
	CHECK_STR_EQ(buf_str(&dropped), "logit_bias");
	buf_free(&dropped);
}

TEST(provider_ops_for_each_api)
{
	CHECK(provider_ops_for(API_OPENAI) == &provider_openai);
	CHECK_STR_EQ(provider_openai.api, "openai");
	CHECK_NOT_NULL(provider_openai.build_request);
	CHECK_NOT_NULL(provider_openai.parse_response);
	CHECK_NOT_NULL(provider_openai.stream_new);
	CHECK_NOT_NULL(provider_openai.stream_event);
	CHECK_NOT_NULL(provider_openai.stream_eof);
	CHECK_NOT_NULL(provider_openai.stream_free);
	CHECK_NOT_NULL(provider_openai.map_error);
}

/* ---- errors.c ---- */

TEST(rerr_envelope_shape)
{
	struct rerr err;
	rerr_clear(&err);
	CHECK_INT_EQ(err.should_retry, -1);
	CHECK_INT_EQ(rerr_invalid(&err, "messages[0].role", "Invalid value: '%s'.", "robot"), -1);
	json_t *env = rerr_envelope(&err);
	json_t *want = parse("{\"error\":{\"message\":\"Invalid value: 'robot'.\",\"type\":\"invalid_request_error\","
			     "\"param\":\"messages[0].role\",\"code\":null}}");
	CHECK(json_equal(env, want));
	json_decref(env);
	json_decref(want);
	rerr_clear(&err);
	rerr_set(&err, 503, "overloaded_error", "upstream_overloaded", NULL, "busy");
	env = rerr_envelope(&err);
	want = parse("{\"error\":{\"message\":\"busy\",\"type\":\"overloaded_error\",\"param\":null,"
		     "\"code\":\"upstream_overloaded\"}}");
	CHECK(json_equal(env, want));
	json_decref(env);
	json_decref(want);
	CHECK_STR_EQ(http_reason(429), "Too Many Requests");
	CHECK_STR_EQ(http_reason(503), "Service Unavailable");
}

/* ---- the OpenAI adapter's map_error ---- */

TEST(openai_map_error_keeps_codes_past_the_body)
{
	/* The upstream body is parsed and freed inside map_error: the code it reports must still be
	 * readable afterwards (codes are static strings, errors.h). */
	struct fixture f;
	fixture_init(&f);
	static const struct {
		long status;
		const char *body;
		int want_status;
		const char *code;
		const char *param;
	} rows[] = {
		{ 400, "{\"error\":{\"message\":\"This model's maximum context length is 128000 tokens.\","
		       "\"type\":\"invalid_request_error\",\"param\":\"messages\",\"code\":\"context_length_exceeded\"}}",
		  400, "context_length_exceeded", "messages" },
		{ 422, "{\"error\":{\"message\":\"bad\",\"code\":\"unsupported_parameter\",\"param\":\"logprobs\"}}",
		  400, "unsupported_parameter", "logprobs" },
		{ 400, "{\"error\":{\"message\":\"x\",\"code\":\"weird_code\"}}", 400, NULL, "" },
		{ 404, "{\"error\":{\"message\":\"The model `gpt-9` does not exist\",\"code\":\"model_not_found\"}}",
		  404, "model_not_found", "model" },
		{ 502, "<html>Bad Gateway</html>", 502, "bad_upstream_response", "" },
		{ 503, "{\"error\":\"Service Unavailable\"}", 503, "upstream_overloaded", "" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("HTTP %ld %s", rows[i].status, rows[i].body);
		/* A private copy of the body, overwritten after the call. */
		size_t len = strlen(rows[i].body);
		char *body = malloc(len + 1);
		memcpy(body, rows[i].body, len + 1);
		struct rerr err;
		rerr_clear(&err);
		provider_openai.map_error(&f.x, rows[i].status, body, len, 0, &err);
		memset(body, 'Z', len);
		free(body);
		CHECK_INT_EQ(err.status, rows[i].want_status);
		CHECK_STR_EQ(err.code, rows[i].code);
		CHECK_STR_EQ(err.param, rows[i].param);
		json_t *env = rerr_envelope(&err);
		CHECK(json_is_string(json_object_get(json_object_get(env, "error"), "message")));
		json_decref(env);
	}
}

TEST(openai_map_error_upstream_message_is_kept_and_redacted)
{
	struct fixture f;
	fixture_init(&f);
	const char *body = "{\"error\":{\"message\":\"Rate limit reached for key " SECRET "\",\"code\":\"rate_limit_exceeded\"}}";
	struct rerr err;
	rerr_clear(&err);
	provider_openai.map_error(&f.x, 429, body, strlen(body), 7, &err);
	CHECK_INT_EQ(err.status, 429);
	CHECK_INT_EQ(err.retry_after, 7);
	CHECK_CONTAINS(err.message, "Rate limit reached for key ****");
	CHECK_NOT_CONTAINS(err.message, SECRET);
	/* A plain-text body still gives a usable error. */
	rerr_clear(&err);
	provider_openai.map_error(&f.x, 500, "oops", 4, 0, &err);
	CHECK_INT_EQ(err.status, 500);
	CHECK_STR_EQ(err.type, "server_error");
}

TEST(openai_map_error_403_credentials_vs_moderation)
{
	struct fixture f;
	fixture_init(&f);
	f.prov.name = "openrouter";
	struct rerr err;
	rerr_clear(&err);
	const char *denied = "{\"error\":{\"message\":\"Key " SECRET " is disabled\",\"code\":403}}";
	provider_openai.map_error(&f.x, 403, denied, strlen(denied), 0, &err);
	CHECK_INT_EQ(err.status, 502);
	CHECK_STR_EQ(err.code, "upstream_authentication_failed");
	CHECK_NOT_CONTAINS(err.message, "disabled");
	rerr_clear(&err);
	const char *flagged = "{\"error\":{\"message\":\"Input was flagged by moderation\",\"code\":403,"
			      "\"metadata\":{\"reasons\":[\"violence\"],\"flagged_input\":\"...\"}}}";
	provider_openai.map_error(&f.x, 403, flagged, strlen(flagged), 0, &err);
	CHECK_INT_EQ(err.status, 403);
	CHECK_STR_EQ(err.type, "permission_error");
	CHECK_CONTAINS(err.message, "flagged by moderation");
	CHECK_INT_EQ(err.should_retry, 0);
}

/* An upstream that says the router's key is bad under another status than 401/403, or in an
 * error object of a 2xx body, may echo part of the key ("sk-TES***7890"): the fixed credentials
 * message, never its text. */
TEST(openai_bad_key_under_any_status_is_a_credentials_error)
{
	struct fixture f;
	fixture_init(&f);
	static const char *const bodies[] = {
		"{\"error\":{\"message\":\"Incorrect API key provided: sk-tes***cdef\","
		"\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}",
		"{\"error\":{\"message\":\"Authentication Fails, Your api key: ****cdef is invalid\","
		"\"type\":\"authentication_error\",\"param\":null,\"code\":\"invalid_request_error\"}}",
	};
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		test_case("HTTP 400, body %zu", i);
		struct rerr err;
		rerr_clear(&err);
		provider_openai.map_error(&f.x, 400, bodies[i], strlen(bodies[i]), 0, &err);
		CHECK_INT_EQ(err.status, 502);
		CHECK_STR_EQ(err.code, "upstream_authentication_failed");
		CHECK_NOT_CONTAINS(err.message, "cdef");
		test_case("HTTP 200, body %zu", i);
		rerr_clear(&err);
		json_t *out = NULL;
		struct usage u;
		usage_init(&u);
		CHECK(provider_openai.parse_response(&f.x, bodies[i], strlen(bodies[i]), &out, &u, &err) < 0);
		json_decref(out);
		CHECK_INT_EQ(err.status, 502);
		CHECK_STR_EQ(err.code, "upstream_authentication_failed");
		CHECK_NOT_CONTAINS(err.message, "cdef");
	}
}

/* The output bound of a budget estimate, for thinking budgets up to the largest integer: it never
 * wraps (a budget_tokens of 2^63-1 plus max_tokens overflowed, fell to the model's default and
 * made the estimate small). */
TEST(anthropic_output_bound_saturates)
{
	struct fixture f;
	fixture_init(&f);
	f.prov.api = API_ANTHROPIC;
	f.cfg.providers = &f.prov;
	f.cfg.n_providers = 1;
	f.model.provider = 0;
	f.model.max_output_tokens = 8192;
	static const struct {
		const char *body;
		int64_t want;
	} rows[] = {
		{ "{\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":9223372036854775807}}", USAGE_COUNT_MAX },
		{ "{\"max_tokens\":9223372036854775807,\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":9223372036854775807}}", USAGE_COUNT_MAX },
		{ "{\"max_tokens\":100,\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":2000}}", 2100 },
		{ "{\"max_tokens\":5000,\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":2000}}", 5000 },
		{ "{}", 8192 },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("%s", rows[i].body);
		json_t *c = parse(rows[i].body);
		int sent = 0;
		CHECK_INT_EQ(provider_output_bound(&f.cfg, &f.model, c, &sent), rows[i].want);
		json_decref(c);
	}
}

/* ---- Gemini model ids reach the URL: only letters, digits, '-', '.' and '_' ---- */

TEST(gemini_model_id_cannot_choose_the_url)
{
	static const struct {
		const char *id;
		int ok;
	} cases[] = {
		{ "gemini-2.5-flash", 1 },
		{ "gemini-2.0-flash-001", 1 },
		{ "learnlm_1.5", 1 },
		{ "a/../../../../v1/x?alt=sse&", 0 },
		{ "gemini-2.5-flash:streamGenerateContent?alt=sse&key=x#", 0 },
		{ "..", 0 },
		{ ".hidden", 0 },
		{ "gemini%2F..", 0 },
		{ "gemini 2", 0 },
		{ "", 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		test_case("%s", cases[i].id);
		struct fixture f;
		fixture_init(&f);
		f.prov.name = "gemini";
		f.prov.api = API_GEMINI;
		f.prov.base_url = "https://generativelanguage.googleapis.com/v1beta";
		f.x.upstream_model = cases[i].id;
		f.x.public_model = cases[i].id;
		json_t *body = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
		struct upstream_req ureq;
		memset(&ureq, 0, sizeof(ureq));
		struct buf dropped;
		buf_init(&dropped, 4096);
		struct rerr err;
		rerr_clear(&err);
		int rc = provider_gemini.build_request(&f.x, body, &ureq, &dropped, &err);
		if (cases[i].ok) {
			CHECK_INT_EQ(rc, 0);
			if (rc == 0)
				CHECK_CONTAINS(ureq.url, cases[i].id);
		} else {
			CHECK_INT_EQ(rc, -1);
			CHECK_INT_EQ(err.status, 400);
			CHECK_STR_EQ(err.type, "invalid_request_error");
			CHECK_STR_EQ(err.param, "model");
			CHECK_NULL(ureq.url);
		}
		upstream_req_free(&ureq);
		buf_free(&dropped);
		json_decref(body);
	}
	test_case(NULL);
}

/* ---- stream state bounds (README "Memory per call") ---- */

/* Feeds one Anthropic stream event (its JSON) to the translator. */
static enum stream_status an_event(void *st, const char *data, json_t *chunks, struct usage *u,
				   struct rerr *err)
{
	struct sse_event ev = { .event = "", .data = data, .data_len = strlen(data), .has_data = 1,
				.other = "", .other_len = 0 };
	return provider_anthropic.stream_event(st, &ev, chunks, u, err);
}

/* A thinking block in progress (its text or its signature) is kept only up to the reasoning
 * bound: past it the stream fails with a 502 naming what overflowed. */
TEST(anthropic_thinking_block_in_progress_is_bounded)
{
	static const char *const kinds[] = { "thinking", "signature" };
	char *piece = malloc(4096 + 1);
	REQUIRE_NOT_NULL(piece);
	memset(piece, 't', 4096);
	piece[4096] = '\0';
	char *ev = malloc(4096 + 200);
	REQUIRE_NOT_NULL(ev);
	for (size_t k = 0; k < 2; k++) {
		test_case("%s", kinds[k]);
		struct fixture f;
		fixture_init(&f);
		f.prov.name = "anthropic";
		f.prov.api = API_ANTHROPIC;
		void *st = provider_anthropic.stream_new(&f.x);
		json_t *chunks = json_array();
		struct usage u;
		usage_init(&u);
		struct rerr err;
		rerr_clear(&err);
		CHECK_INT_EQ(an_event(st, "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}", chunks, &u, &err), STREAM_MORE);
		CHECK_INT_EQ(an_event(st, "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}", chunks, &u, &err), STREAM_MORE);
		snprintf(ev, 4096 + 200, "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"%s_delta\",\"%s\":\"%s\"}}", kinds[k], kinds[k], piece);
		enum stream_status rc = STREAM_MORE;
		size_t fed = 0;
		while (rc == STREAM_MORE && fed < ((size_t)16 << 20)) {
			rc = an_event(st, ev, chunks, &u, &err);
			fed += 4096;
			json_array_clear(chunks);
		}
		CHECK_INT_EQ(rc, STREAM_ERROR);
		CHECK(fed > STREAM_MAX_REASONING_BYTES && fed <= STREAM_MAX_REASONING_BYTES + 4096);
		CHECK_INT_EQ(err.status, 502);
		CHECK_STR_EQ(err.code, "bad_upstream_response");
		CHECK_CONTAINS(err.message, kinds[k]);
		CHECK_CONTAINS(err.message, "4 MiB");
		provider_anthropic.stream_free(st);
		json_decref(chunks);
		usage_clear(&u);
	}
	test_case(NULL);
	free(piece);
	free(ev);
}

/* A thinking block under the bound still ends as one thinking_blocks delta. */
TEST(anthropic_thinking_block_under_the_bound_is_kept)
{
	struct fixture f;
	fixture_init(&f);
	f.prov.name = "anthropic";
	f.prov.api = API_ANTHROPIC;
	void *st = provider_anthropic.stream_new(&f.x);
	json_t *chunks = json_array();
	struct usage u;
	usage_init(&u);
	struct rerr err;
	rerr_clear(&err);
	CHECK_INT_EQ(an_event(st, "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"a\",\"signature\":\"\"}}", chunks, &u, &err), STREAM_MORE);
	CHECK_INT_EQ(an_event(st, "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"b\"}}", chunks, &u, &err), STREAM_MORE);
	CHECK_INT_EQ(an_event(st, "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig\"}}", chunks, &u, &err), STREAM_MORE);
	json_array_clear(chunks);
	CHECK_INT_EQ(an_event(st, "{\"type\":\"content_block_stop\",\"index\":0}", chunks, &u, &err), STREAM_MORE);
	const json_t *block = json_array_get(json_object_get(json_object_get(json_array_get(json_object_get(json_array_get(chunks, 0), "choices"), 0), "delta"), "thinking_blocks"), 0);
	CHECK_STR_EQ(json_string_value(json_object_get(block, "thinking")), "ab");
	CHECK_STR_EQ(json_string_value(json_object_get(block, "signature")), "sig");
	provider_anthropic.stream_free(st);
	json_decref(chunks);
	usage_clear(&u);
}

/* Gemini joins a candidate's text parts: the joint text is bounded by the event that carried it
 * and an event whose text cannot be held fails the stream instead of losing text. */
TEST(gemini_stream_text_is_joined_whole)
{
	struct fixture f;
	fixture_init(&f);
	f.prov.name = "gemini";
	f.prov.api = API_GEMINI;
	void *st = provider_gemini.stream_new(&f.x);
	json_t *chunks = json_array();
	struct usage u;
	usage_init(&u);
	struct rerr err;
	rerr_clear(&err);
	const char *data = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\\\"b\"},{\"text\":\"cd\"}],\"role\":\"model\"},\"index\":0}]}";
	struct sse_event ev = { .event = "", .data = data, .data_len = strlen(data), .has_data = 1,
				.other = "", .other_len = 0 };
	CHECK_INT_EQ(provider_gemini.stream_event(st, &ev, chunks, &u, &err), STREAM_MORE);
	const json_t *d = json_object_get(json_array_get(json_object_get(json_array_get(chunks, 1), "choices"), 0), "delta");
	CHECK_STR_EQ(json_string_value(json_object_get(d, "content")), "a\"bcd");
	provider_gemini.stream_free(st);
	json_decref(chunks);
	usage_clear(&u);
}

/* OpenAI's logprobs give a token's bytes as an array of integers: a token of a few bytes, as real
 * tokens are. A long one (a hostile upstream's 15 MiB "token") gets bytes null, as OpenAI allows,
 * instead of an array of one JSON integer a byte, about 60 times its size. */
TEST(gemini_logprob_bytes_are_bounded)
{
	struct fixture f;
	fixture_init(&f);
	f.prov.name = "gemini";
	f.prov.api = API_GEMINI;
	size_t big = 1 << 20;
	char *tok = malloc(big + 1);
	memset(tok, 'a', big);
	tok[big] = '\0';
	char *body = xasprintf("{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hi\"}],\"role\":\"model\"},"
			       "\"finishReason\":\"STOP\",\"index\":0,\"logprobsResult\":{\"chosenCandidates\":["
			       "{\"token\":\"hi\",\"logProbability\":-0.5},{\"token\":\"%s\",\"logProbability\":0}]}}]}",
			       tok);
	json_t *out = NULL;
	struct usage u;
	usage_init(&u);
	struct rerr err;
	rerr_clear(&err);
	REQUIRE(provider_gemini.parse_response(&f.x, body, strlen(body), &out, &u, &err) == 0);
	const json_t *content = json_object_get(json_object_get(json_array_get(json_object_get(out, "choices"), 0), "logprobs"), "content");
	REQUIRE(json_array_size(content) == 2);
	const json_t *b0 = json_object_get(json_array_get(content, 0), "bytes");
	CHECK(json_is_array(b0) && json_array_size(b0) == 2 && json_integer_value(json_array_get(b0, 0)) == 'h');
	CHECK(json_is_null(json_object_get(json_array_get(content, 1), "bytes")));
	CHECK_INT_EQ(strlen(json_string_value(json_object_get(json_array_get(content, 1), "token"))), big);
	json_decref(out);
	usage_clear(&u);
	free(body);
	free(tok);
}
