/* test_chatreq.c - validation of Chat Completions request bodies: one row per case. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chatreq.h"
#include "config.h"
#include "harness.h"

#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

struct req_row {
	const char *name;
	const char *body;
	const char *param;     /* NULL: valid; else the expected 400's param ("" = none) */
};

static const struct req_row rows[] = {
	/* valid */
	{ "minimal", "{\"model\":\"gpt-4o-mini\"," MSG "}", NULL },
	{ "every role", "{\"model\":\"m\",\"messages\":["
		"{\"role\":\"system\",\"content\":\"s\"},"
		"{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"d\"}]},"
		"{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"u\"},"
			"{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\"}},"
			"{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"AAA=\",\"format\":\"wav\"}},"
			"{\"type\":\"file\",\"file\":{\"file_id\":\"f\"}}]},"
		"{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
			"\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
		"{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"r\"},"
		"{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"refusal\",\"refusal\":\"no\"}]},"
		"{\"role\":\"function\",\"name\":\"f\",\"content\":\"x\"}]}", NULL },
	{ "assistant with refusal only", "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"refusal\":\"no\"}]}", NULL },
	{ "custom tool call", "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"custom\",\"custom\":{\"name\":\"g\",\"input\":\"x\"}}]}]}", NULL },
	{ "all sampling parameters at their bounds", "{\"model\":\"m\"," MSG ",\"temperature\":2,\"top_p\":0,"
		"\"n\":128,\"max_tokens\":1,\"max_completion_tokens\":100000000,\"presence_penalty\":-2,"
		"\"frequency_penalty\":2.0,\"logprobs\":true,\"top_logprobs\":20,\"seed\":-5,\"user\":\"u\","
		"\"logit_bias\":{\"50256\":-100},\"metadata\":{\"task_type\":\"code\"},\"parallel_tool_calls\":false,"
		"\"reasoning_effort\":\"low\",\"stop\":[\"a\",\"b\",\"c\",\"d\"]}", NULL },
	{ "tools and tool_choice", "{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\",\"function\":"
		"{\"name\":\"get_weather-2\",\"parameters\":{\"type\":\"object\"}}},{\"type\":\"custom\",\"custom\":{\"name\":\"x\"}}],"
		"\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_weather-2\"}}}", NULL },
	{ "tool_choice strings", "{\"model\":\"m\"," MSG ",\"tool_choice\":\"required\"}", NULL },
	{ "response formats", "{\"model\":\"m\"," MSG ",\"response_format\":{\"type\":\"json_schema\","
		"\"json_schema\":{\"name\":\"s\",\"schema\":{\"type\":\"object\"}}}}", NULL },
	{ "stream with options", "{\"model\":\"m\"," MSG ",\"stream\":true,\"stream_options\":{\"include_usage\":true}}", NULL },
	{ "stop as a string", "{\"model\":\"m\"," MSG ",\"stop\":\"END\"}", NULL },
	{ "unknown fields are allowed", "{\"model\":\"m\"," MSG ",\"store\":true,\"x_custom\":{\"a\":1}}", NULL },
	{ "null treated as absent", "{\"model\":\"m\"," MSG ",\"temperature\":null,\"top_p\":null,\"n\":null,"
		"\"max_tokens\":null,\"stop\":null,\"tools\":null,\"tool_choice\":null,\"response_format\":null,"
		"\"stream\":null,\"stream_options\":null,\"seed\":null,\"user\":null,\"logit_bias\":null,"
		"\"metadata\":null,\"logprobs\":null,\"top_logprobs\":null,\"presence_penalty\":null,"
		"\"frequency_penalty\":null,\"parallel_tool_calls\":null,\"reasoning_effort\":null,"
		"\"max_completion_tokens\":null}", NULL },
	{ "null message fields treated as absent", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":null},"
		"{\"role\":\"assistant\",\"content\":\"y\",\"tool_calls\":null}]}", NULL },

	/* model */
	{ "model missing", "{" MSG "}", "model" },
	{ "model null", "{\"model\":null," MSG "}", "model" },
	{ "model not a string", "{\"model\":4," MSG "}", "model" },
	{ "model empty", "{\"model\":\"\"," MSG "}", "model" },
	/* messages */
	{ "messages missing", "{\"model\":\"m\"}", "messages" },
	{ "messages null", "{\"model\":\"m\",\"messages\":null}", "messages" },
	{ "messages not an array", "{\"model\":\"m\",\"messages\":{\"role\":\"user\"}}", "messages" },
	{ "messages empty", "{\"model\":\"m\",\"messages\":[]}", "messages" },
	{ "message not an object", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},\"hi\"]}", "messages[1]" },
	{ "role missing", "{\"model\":\"m\",\"messages\":[{\"content\":\"a\"}]}", "messages[0].role" },
	{ "role not a string", "{\"model\":\"m\",\"messages\":[{\"role\":1,\"content\":\"a\"}]}", "messages[0].role" },
	{ "bad role", "{\"model\":\"m\",\"messages\":[{\"role\":\"robot\",\"content\":\"a\"}]}", "messages[0].role" },
	{ "user content missing", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", "messages[0].content" },
	{ "user content null", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":null}]}", "messages[0].content" },
	{ "system content missing", "{\"model\":\"m\",\"messages\":[{\"role\":\"system\"}]}", "messages[0].content" },
	{ "user content a number", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content" },
	{ "assistant without content or tool_calls", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\"}]}", "messages[1].content" },
	{ "message name not a string", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"name\":3}]}", "messages[0].name" },
	{ "tool message without tool_call_id", "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"r\"}]}", "messages[0].tool_call_id" },
	{ "tool message with numeric tool_call_id", "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"r\",\"tool_call_id\":1}]}", "messages[0].tool_call_id" },
	{ "function message without name", "{\"model\":\"m\",\"messages\":[{\"role\":\"function\",\"content\":\"r\"}]}", "messages[0].name" },
	{ "assistant tool_calls not an array", "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":{}}]}", "messages[0].tool_calls" },
	{ "assistant tool_call not an object", "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[1]}]}", "messages[0].tool_calls[0]" },
	{ "assistant tool_call without id", "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}]}", "messages[0].tool_calls[0]" },
	{ "assistant tool_call with a bad type", "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"fn\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}]}", "messages[0].tool_calls[0]" },
	{ "assistant tool_call without function", "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\"}]}]}", "messages[0].tool_calls[0]" },
	{ "assistant tool_call arguments not a string", "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":{}}}]}]}", "messages[0].tool_calls[0]" },
	{ "second tool_call bad", "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}},{\"id\":\"d\"}]}]}", "messages[0].tool_calls[1]" },
	/* content parts */
	{ "user part not an object", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[\"x\"]}]}", "messages[0].content[0]" },
	{ "user part without type", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}", "messages[0].content[0]" },
	{ "user part of unknown type", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"video\"}]}]}", "messages[0].content[1]" },
	{ "user text part without text", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", "messages[0].content[0]" },
	{ "image part without url", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]}", "messages[0].content[0]" },
	{ "audio part without format", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"A\"}}]}]}", "messages[0].content[0]" },
	{ "file part not an object", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"file\",\"file\":\"f\"}]}]}", "messages[0].content[0]" },
	{ "system image part", "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"u\"}}]}]}", "messages[0].content[0]" },
	{ "system refusal part", "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"refusal\",\"refusal\":\"r\"}]}]}", "messages[0].content[0]" },
	{ "assistant refusal part without refusal", "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"refusal\"}]}]}", "messages[0].content[0]" },
	{ "tool content a number", "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":1}]}", "messages[0].content" },
	/* numbers */
	{ "temperature too high", "{\"model\":\"m\"," MSG ",\"temperature\":2.5}", "temperature" },
	{ "temperature negative", "{\"model\":\"m\"," MSG ",\"temperature\":-0.1}", "temperature" },
	{ "temperature a string", "{\"model\":\"m\"," MSG ",\"temperature\":\"0.5\"}", "temperature" },
	{ "top_p above 1", "{\"model\":\"m\"," MSG ",\"top_p\":1.01}", "top_p" },
	{ "presence_penalty below -2", "{\"model\":\"m\"," MSG ",\"presence_penalty\":-3}", "presence_penalty" },
	{ "n = 0", "{\"model\":\"m\"," MSG ",\"n\":0}", "n" },
	{ "n = 129", "{\"model\":\"m\"," MSG ",\"n\":129}", "n" },
	{ "n not an integer", "{\"model\":\"m\"," MSG ",\"n\":1.5}", "n" },
	{ "max_tokens = 0", "{\"model\":\"m\"," MSG ",\"max_tokens\":0}", "max_tokens" },
	{ "max_tokens a string", "{\"model\":\"m\"," MSG ",\"max_tokens\":\"10\"}", "max_tokens" },
	{ "max_completion_tokens negative", "{\"model\":\"m\"," MSG ",\"max_completion_tokens\":-1}", "max_completion_tokens" },
	{ "top_logprobs = 21", "{\"model\":\"m\"," MSG ",\"top_logprobs\":21}", "top_logprobs" },
	{ "seed a float", "{\"model\":\"m\"," MSG ",\"seed\":1.5}", "seed" },
	/* kinds */
	{ "stream a string", "{\"model\":\"m\"," MSG ",\"stream\":\"true\"}", "stream" },
	{ "logprobs a number", "{\"model\":\"m\"," MSG ",\"logprobs\":1}", "logprobs" },
	{ "user a number", "{\"model\":\"m\"," MSG ",\"user\":1}", "user" },
	{ "metadata an array", "{\"model\":\"m\"," MSG ",\"metadata\":[]}", "metadata" },
	{ "logit_bias a string", "{\"model\":\"m\"," MSG ",\"logit_bias\":\"x\"}", "logit_bias" },
	{ "parallel_tool_calls a string", "{\"model\":\"m\"," MSG ",\"parallel_tool_calls\":\"yes\"}", "parallel_tool_calls" },
	{ "reasoning_effort a number", "{\"model\":\"m\"," MSG ",\"reasoning_effort\":1}", "reasoning_effort" },
	/* stop */
	{ "stop with 5 entries", "{\"model\":\"m\"," MSG ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop" },
	{ "stop with a number", "{\"model\":\"m\"," MSG ",\"stop\":[\"a\",1]}", "stop" },
	{ "stop an object", "{\"model\":\"m\"," MSG ",\"stop\":{}}", "stop" },
	/* tools */
	{ "tools not an array", "{\"model\":\"m\"," MSG ",\"tools\":{}}", "tools" },
	{ "tool not an object", "{\"model\":\"m\"," MSG ",\"tools\":[\"f\"]}", "tools[0]" },
	{ "tool without type", "{\"model\":\"m\"," MSG ",\"tools\":[{\"function\":{\"name\":\"f\"}}]}", "tools[0]" },
	{ "tool of unknown type", "{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"retrieval\"}]}", "tools[0]" },
	{ "tool without function", "{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\"}]}", "tools[0]" },
	{ "tool with a bad function name", "{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get weather\"}}]}", "tools[0]" },
	{ "tool with an empty function name", "{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"\"}}]}", "tools[0]" },
	{ "tool with a 65-character name", "{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a1234567890123456789012345678901234567890123456789012345678901234\"}}]}", "tools[0]" },
	{ "second tool bad", "{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"ok\"}},{\"type\":\"function\",\"function\":{\"name\":\"a.b\"}}]}", "tools[1]" },
	{ "tool parameters not an object", "{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":[]}}]}", "tools[0]" },
	{ "tool_choice bad string", "{\"model\":\"m\"," MSG ",\"tool_choice\":\"sometimes\"}", "tool_choice" },
	{ "tool_choice a number", "{\"model\":\"m\"," MSG ",\"tool_choice\":1}", "tool_choice" },
	{ "tool_choice object without type", "{\"model\":\"m\"," MSG ",\"tool_choice\":{\"function\":{\"name\":\"f\"}}}", "tool_choice" },
	/* response_format */
	{ "response_format bad type", "{\"model\":\"m\"," MSG ",\"response_format\":{\"type\":\"yaml\"}}", "response_format" },
	{ "response_format without type", "{\"model\":\"m\"," MSG ",\"response_format\":{}}", "response_format" },
	{ "response_format a string", "{\"model\":\"m\"," MSG ",\"response_format\":\"json\"}", "response_format" },
	{ "json_schema without name", "{\"model\":\"m\"," MSG ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{}}}", "response_format" },
	{ "json_schema schema not an object", "{\"model\":\"m\"," MSG ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"n\",\"schema\":1}}}", "response_format" },
	/* streaming */
	{ "stream_options without stream", "{\"model\":\"m\"," MSG ",\"stream_options\":{\"include_usage\":true}}", "stream_options" },
	{ "stream_options with stream false", "{\"model\":\"m\"," MSG ",\"stream\":false,\"stream_options\":{}}", "stream_options" },
	{ "stream_options not an object", "{\"model\":\"m\"," MSG ",\"stream\":true,\"stream_options\":true}", "stream_options" },
	{ "include_usage not a boolean", "{\"model\":\"m\"," MSG ",\"stream\":true,\"stream_options\":{\"include_usage\":1}}", "stream_options.include_usage" },
	/* the body itself */
	{ "malformed JSON", "{\"model\":\"m\",", "" },
	{ "trailing garbage", "{\"model\":\"m\"," MSG "} x", "" },
	{ "not an object", "[1,2]", "" },
	{ "a string", "\"hello\"", "" },
	{ "duplicate keys", "{\"model\":\"m\",\"model\":\"n\"," MSG "}", "" },
	{ "duplicate keys inside a message", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"role\":\"system\",\"content\":\"x\"}]}", "" },
	{ "invalid UTF-8", "{\"model\":\"m\xff\"," MSG "}", "" },
};

/* Model ids and task types are stored in every log row and echoed in headers: at most 256 bytes. */
TEST(chatreq_names_are_bounded)
{
	static const struct {
		size_t len;
		int task;
		const char *param;
	} cases[] = {
		{ 256, 0, NULL }, { 257, 0, "model" }, { 2000000, 0, "model" },
		{ 256, 1, NULL }, { 257, 1, "metadata.task_type" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		test_case("%s of %zu bytes", cases[i].task ? "task" : "model", cases[i].len);
		char *name = malloc(cases[i].len + 1);
		memset(name, 'm', cases[i].len);
		name[cases[i].len] = '\0';
		json_t *body = json_pack("{s:s,s:[{s:s,s:s}],s:{s:s}}", "model", cases[i].task ? "m" : name,
					 "messages", "role", "user", "content", "hi", "metadata", "task_type",
					 cases[i].task ? name : "t");
		struct chatreq cr;
		struct rerr err;
		rerr_clear(&err);
		int rc = chatreq_validate(body, &cr, &err);
		CHECK_INT_EQ(rc, cases[i].param ? -1 : 0);
		if (cases[i].param) {
			CHECK_INT_EQ(err.status, 400);
			CHECK_STR_EQ(err.type, "invalid_request_error");
			CHECK_STR_EQ(err.param, cases[i].param);
			CHECK_CONTAINS(err.message, "at most 256 bytes");
		}
		json_decref(body);
		free(name);
	}
	test_case(NULL);
}

TEST(chatreq_table)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct req_row *row = &rows[i];
		test_case("%s", row->name);
		json_t *body = (json_t *)1;
		struct chatreq cr;
		struct rerr err;
		rerr_clear(&err);
		int rc = chatreq_parse(row->body, strlen(row->body), &body, &cr, &err);
		if (!row->param) {
			CHECK_INT_EQ(rc, 0);
			CHECK_INT_EQ(err.status, 0);
			if (rc == 0) {
				CHECK_NOT_NULL(body);
				CHECK_STR_EQ(err.message, "");
			} else {
				printf("       error: %s (param %s)\n", err.message, err.param);
			}
		} else {
			CHECK_INT_EQ(rc, -1);
			CHECK_NULL(body);
			CHECK_INT_EQ(err.status, 400);
			CHECK_STR_EQ(err.type, "invalid_request_error");
			CHECK_STR_EQ(err.param, row->param);
			CHECK(err.message[0] != '\0');
		}
		json_decref(rc == 0 ? body : NULL);
	}
}

TEST(chatreq_empty_body)
{
	json_t *body = NULL;
	struct chatreq cr;
	struct rerr err;
	rerr_clear(&err);
	CHECK_INT_EQ(chatreq_parse("", 0, &body, &cr, &err), -1);
	CHECK_NULL(body);
	CHECK_INT_EQ(err.status, 400);
	CHECK_STR_EQ(err.param, "");
	CHECK_CONTAINS(err.message, "empty");
	/* White space only is malformed JSON. */
	rerr_clear(&err);
	CHECK_INT_EQ(chatreq_parse("  \n", 3, &body, &cr, &err), -1);
	CHECK_INT_EQ(err.status, 400);
}

TEST(chatreq_body_length_is_respected)
{
	/* Bytes after len are not part of the body. */
	const char *full = "{\"model\":\"m\"," MSG "}GARBAGE";
	size_t len = strlen(full) - strlen("GARBAGE");
	json_t *body = NULL;
	struct chatreq cr;
	struct rerr err;
	rerr_clear(&err);
	CHECK_INT_EQ(chatreq_parse(full, len, &body, &cr, &err), 0);
	json_decref(body);
}

TEST(chatreq_extracted_fields)
{
	const char *in = "{\"model\":\"gpt-4o\"," MSG ",\"stream\":true,"
			 "\"stream_options\":{\"include_usage\":true},\"metadata\":{\"task_type\":\"code\"}}";
	json_t *body = NULL;
	struct chatreq cr;
	struct rerr err;
	rerr_clear(&err);
	REQUIRE_INT_EQ(chatreq_parse(in, strlen(in), &body, &cr, &err), 0);
	CHECK_STR_EQ(cr.model, "gpt-4o");
	CHECK_INT_EQ(cr.stream, 1);
	CHECK_INT_EQ(cr.include_usage, 1);
	CHECK_STR_EQ(cr.task, "code");
	/* Strings are borrowed from the body. */
	CHECK(cr.model == json_string_value(json_object_get(body, "model")));
	json_decref(body);

	in = "{\"model\":\"m\"," MSG ",\"stream\":true,\"stream_options\":{\"include_usage\":false},"
	     "\"metadata\":{\"task_type\":7}}";
	REQUIRE_INT_EQ(chatreq_parse(in, strlen(in), &body, &cr, &err), 0);
	CHECK_INT_EQ(cr.stream, 1);
	CHECK_INT_EQ(cr.include_usage, 0);
	CHECK_NULL(cr.task);
	json_decref(body);

	in = "{\"model\":\"m\"," MSG "}";
	REQUIRE_INT_EQ(chatreq_parse(in, strlen(in), &body, &cr, &err), 0);
	CHECK_INT_EQ(cr.stream, 0);
	CHECK_INT_EQ(cr.include_usage, 0);
	CHECK_NULL(cr.task);
	json_decref(body);
}

TEST(chatreq_validate_rejects_non_objects)
{
	struct chatreq cr;
	struct rerr err;
	rerr_clear(&err);
	json_t *arr = json_array();
	CHECK_INT_EQ(chatreq_validate(arr, &cr, &err), -1);
	CHECK_INT_EQ(err.status, 400);
	json_decref(arr);
	rerr_clear(&err);
	CHECK_INT_EQ(chatreq_validate(NULL, &cr, &err), -1);
	CHECK_INT_EQ(err.status, 400);
}

TEST(chatreq_error_names_the_value_and_is_valid_utf8)
{
	/* A bad role with invalid UTF-8 in it (escaped as a lone surrogate is rejected by the
	 * parser, so use a long role that gets cut): the message stays a valid JSON string. */
	char in[4096];
	char role[1200];
	for (size_t i = 0; i + 2 < sizeof(role); i += 2) {
		role[i] = (char)0xC3;
		role[i + 1] = (char)0xA9;
	}
	role[sizeof(role) - 1] = '\0';
	if (sizeof(role) % 2 == 0)
		role[sizeof(role) - 2] = 'x';
	snprintf(in, sizeof(in), "{\"model\":\"m\",\"messages\":[{\"role\":\"%s\",\"content\":\"a\"}]}", role);
	json_t *body = NULL;
	struct chatreq cr;
	struct rerr err;
	rerr_clear(&err);
	CHECK_INT_EQ(chatreq_parse(in, strlen(in), &body, &cr, &err), -1);
	CHECK_STR_EQ(err.param, "messages[0].role");
	json_t *env = rerr_envelope(&err);
	json_t *msg = json_object_get(json_object_get(env, "error"), "message");
	CHECK(json_is_string(msg));
	json_decref(env);
}

/* What a request needs of the model, and what a model's capabilities leave missing. */
TEST(chatreq_needs_and_missing)
{
	static const struct {
		const char *body;
		unsigned needs;
	} need_rows[] = {
		{ "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 0 },
		{ "{\"messages\":[],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}", CAP_TOOLS },
		{ "{\"messages\":[],\"tools\":[]}", 0 },
		{ "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
		  "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\"}}]}]}", CAP_IMAGES },
		{ "{\"messages\":[],\"response_format\":{\"type\":\"json_object\"}}", CAP_JSON_OBJECT },
		{ "{\"messages\":[],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"n\"}}}",
		  NEED_JSON_LOOSE },
		{ "{\"messages\":[],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"n\","
		  "\"strict\":true}}}", CAP_JSON_SCHEMA },
		{ "{\"messages\":[],\"response_format\":{\"type\":\"text\"}}", 0 },
	};
	for (size_t i = 0; i < sizeof(need_rows) / sizeof(need_rows[0]); i++) {
		test_case("row %zu", i);
		json_error_t je;
		json_t *b = json_loads(need_rows[i].body, 0, &je);
		REQUIRE_NOT_NULL(b);
		CHECK_INT_EQ(chatreq_needs(b), need_rows[i].needs);
		json_decref(b);
	}
	test_case(NULL);
	unsigned deepseek = CAP_TOOLS | CAP_JSON_OBJECT;
	CHECK_INT_EQ(chatreq_missing(NEED_JSON_LOOSE, deepseek), 0);          /* emulated */
	CHECK_INT_EQ(chatreq_missing(CAP_JSON_SCHEMA, deepseek), CAP_JSON_SCHEMA);
	CHECK_INT_EQ(chatreq_missing(CAP_IMAGES | CAP_TOOLS, deepseek), CAP_IMAGES);
	CHECK_INT_EQ(chatreq_missing(CAP_JSON_OBJECT, CAP_TOOLS), CAP_JSON_OBJECT);
	CHECK_INT_EQ(chatreq_missing(CAP_ALL | NEED_JSON_LOOSE, CAP_ALL), 0);
	const char *what;
	CHECK_STR_EQ(chatreq_need_param(CAP_IMAGES, &what), "messages");
	CHECK(strstr(what, "image") != NULL);
	CHECK_STR_EQ(chatreq_need_param(CAP_JSON_SCHEMA, &what), "response_format");
	CHECK(strstr(what, "strict") != NULL);
}
