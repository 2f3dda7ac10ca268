/* test_respx_req.c - the request side of POST /v1/responses: validation (one row per case), the
 * chat request built from a Responses request (one row per case, the expected chat body in full),
 * and the input items as stored. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chatreq.h"
#include "harness.h"
#include "buf.h"
#include "respx.h"

/* The two requests of n8n's OpenAI node v2 from the issue. */
#define N8N_1 "{\"model\":\"gpt-4o-mini\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":" \
	"\"input_text\",\"text\":\"Say hello\"}]}],\"parallel_tool_calls\":true,\"store\":true," \
	"\"background\":false}"
#define N8N_2 "{\"input\":[{\"type\":\"message\",\"role\":\"user\",\"content\":\"Say hello\"}]," \
	"\"model\":\"gpt-4o-mini\",\"stream\":false,\"text\":{}}"

#define M "\"model\":\"m\""
#define HI "\"input\":\"hi\""
#define ITEMS(x) "{" M ",\"input\":[" x "]}"
#define USER_PARTS(x) ITEMS("{\"role\":\"user\",\"content\":[" x "]}")

static json_t *load(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	if (!j)
		printf("  test JSON does not parse: %s: %s\n", jerr.text, text);
	return j;
}

/* ---- validation ---- */

struct val_row {
	const char *name;
	const char *body;
	const char *param;     /* NULL: valid; else the expected 400's param ("" = none) */
	const char *code;      /* the expected error code, NULL for none */
};

static const struct val_row val_rows[] = {
	/* valid */
	{ "n8n: input_text parts, store, parallel_tool_calls, background", N8N_1, NULL, NULL },
	{ "n8n: a message item, stream false, text {}", N8N_2, NULL, NULL },
	{ "string input", "{" M "," HI "}", NULL, NULL },
	{ "every known field", "{" M "," HI ",\"instructions\":\"s\",\"tools\":[{\"type\":\"function\","
		"\"name\":\"get_weather-2\",\"description\":\"d\",\"parameters\":{\"type\":\"object\"},"
		"\"strict\":false}],\"tool_choice\":{\"type\":\"function\",\"name\":\"get_weather-2\"},"
		"\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"out\",\"schema\":{},"
		"\"strict\":true,\"description\":\"x\"},\"verbosity\":\"low\"},\"reasoning\":{\"effort\":"
		"\"xhigh\",\"summary\":\"auto\"},\"max_output_tokens\":1,\"temperature\":2,\"top_p\":0,"
		"\"top_logprobs\":20,\"metadata\":{\"k\":\"v\"},\"store\":false,\"stream\":true,"
		"\"stream_options\":{\"include_obfuscation\":false},\"background\":false,"
		"\"previous_response_id\":\"resp_1\",\"parallel_tool_calls\":false,\"user\":\"u\","
		"\"safety_identifier\":\"s\",\"prompt_cache_key\":\"k\",\"include\":["
		"\"reasoning.encrypted_content\"],\"truncation\":\"auto\",\"service_tier\":\"flex\","
		"\"max_tool_calls\":3}", NULL, NULL },
	{ "nulls are absent", "{" M "," HI ",\"instructions\":null,\"tools\":null,\"tool_choice\":null,"
		"\"text\":null,\"reasoning\":null,\"max_output_tokens\":null,\"temperature\":null,"
		"\"top_p\":null,\"top_logprobs\":null,\"metadata\":null,\"store\":null,\"stream\":null,"
		"\"background\":null,\"previous_response_id\":null,\"parallel_tool_calls\":null,"
		"\"user\":null,\"include\":null,\"truncation\":null,\"service_tier\":null,"
		"\"conversation\":null,\"prompt\":null}", NULL, NULL },
	{ "no input but a previous response", "{" M ",\"previous_response_id\":\"resp_1\"}", NULL, NULL },
	{ "tool_choice as Cursor sends it", "{" M "," HI ",\"tool_choice\":{\"type\":\"required\"}}", NULL, NULL },
	{ "tool_choice allowed_tools", "{" M "," HI ",\"tool_choice\":{\"type\":\"allowed_tools\","
		"\"mode\":\"auto\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}]}}", NULL, NULL },
	{ "text format text", "{" M "," HI ",\"text\":{\"format\":{\"type\":\"text\"}}}", NULL, NULL },
	{ "input_text, output_text and text in any role", ITEMS(
		"{\"role\":\"system\",\"content\":[{\"type\":\"output_text\",\"text\":\"a\"}]},"
		"{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"b\"}]},"
		"{\"role\":\"assistant\",\"content\":[{\"type\":\"input_text\",\"text\":\"c\"},"
			"{\"type\":\"refusal\",\"refusal\":\"no\"}]}"), NULL, NULL },
	{ "reasoning without encrypted content", ITEMS("{\"type\":\"reasoning\",\"id\":\"rs_1\","
		"\"summary\":[],\"encrypted_content\":null},{\"role\":\"user\",\"content\":\"x\"}"), NULL, NULL },
	{ "an item_reference (the caller resolves it)", ITEMS("{\"type\":\"item_reference\",\"id\":\"msg_1\"}"), NULL, NULL },
	{ "an output without its call (it may be in the context)", ITEMS("{\"type\":"
		"\"function_call_output\",\"call_id\":\"c\",\"output\":\"r\"}"), NULL, NULL },
	{ "image and file parts", USER_PARTS("{\"type\":\"input_image\",\"image_url\":\"https://x/y.png\","
		"\"detail\":\"original\"},{\"type\":\"input_file\",\"file_data\":\"data:application/pdf;"
		"base64,AAAA\",\"file_name\":\"a.pdf\"},{\"type\":\"input_file\",\"file_id\":\"file-1\"}"), NULL, NULL },

	/* top level */
	{ "not an object", "[1]", "", NULL },
	{ "no model", "{" HI "}", "model", NULL },
	{ "model not a string", "{\"model\":5," HI "}", "model", NULL },
	{ "empty model", "{\"model\":\"\"," HI "}", "model", NULL },
	{ "no input", "{" M "}", "input", NULL },
	{ "input a number", "{" M ",\"input\":5}", "input", NULL },
	{ "conversation", "{" M "," HI ",\"conversation\":\"conv_1\"}", "conversation", "unsupported_parameter" },
	{ "prompt", "{" M ",\"prompt\":{\"id\":\"pmpt_1\"}}", "prompt", "unsupported_parameter" },
	{ "background with stream", "{" M "," HI ",\"background\":true,\"stream\":true}", "background", "unsupported_value" },
	{ "background without store", "{" M "," HI ",\"background\":true,\"store\":false}", "background", "unsupported_value" },
	{ "instructions a number", "{" M "," HI ",\"instructions\":5}", "instructions", NULL },
	{ "store a string", "{" M "," HI ",\"store\":\"yes\"}", "store", NULL },
	{ "stream a number", "{" M "," HI ",\"stream\":1}", "stream", NULL },
	{ "background a string", "{" M "," HI ",\"background\":\"no\"}", "background", NULL },
	{ "previous_response_id a number", "{" M "," HI ",\"previous_response_id\":5}", "previous_response_id", NULL },
	{ "user a number", "{" M "," HI ",\"user\":5}", "user", NULL },
	{ "parallel_tool_calls a string", "{" M "," HI ",\"parallel_tool_calls\":\"true\"}", "parallel_tool_calls", NULL },
	{ "max_output_tokens 0", "{" M "," HI ",\"max_output_tokens\":0}", "max_output_tokens", NULL },
	{ "max_output_tokens a real", "{" M "," HI ",\"max_output_tokens\":16.5}", "max_output_tokens", NULL },
	{ "max_output_tokens too large", "{" M "," HI ",\"max_output_tokens\":100000001}", "max_output_tokens", NULL },
	{ "temperature above 2", "{" M "," HI ",\"temperature\":2.5}", "temperature", NULL },
	{ "top_p below 0", "{" M "," HI ",\"top_p\":-0.1}", "top_p", NULL },
	{ "top_logprobs 21", "{" M "," HI ",\"top_logprobs\":21}", "top_logprobs", NULL },
	{ "metadata a string value of another type", "{" M "," HI ",\"metadata\":{\"k\":1}}", "metadata", NULL },
	{ "metadata 17 pairs", "{" M "," HI ",\"metadata\":{\"a\":\"\",\"b\":\"\",\"c\":\"\",\"d\":\"\","
		"\"e\":\"\",\"f\":\"\",\"g\":\"\",\"h\":\"\",\"i\":\"\",\"j\":\"\",\"k\":\"\",\"l\":\"\","
		"\"m\":\"\",\"n\":\"\",\"o\":\"\",\"p\":\"\",\"q\":\"\"}}", "metadata", NULL },
	{ "include not strings", "{" M "," HI ",\"include\":[\"a\",1]}", "include[1]", NULL },
	{ "truncation unknown", "{" M "," HI ",\"truncation\":\"sometimes\"}", "truncation", NULL },
	{ "service_tier a number", "{" M "," HI ",\"service_tier\":1}", "service_tier", NULL },

	/* items */
	{ "an item not an object", ITEMS("\"hi\""), "input[0]", NULL },
	{ "an item without type or role", ITEMS("{\"content\":\"x\"}"), "input[0].type", NULL },
	{ "a message without role", ITEMS("{\"type\":\"message\",\"content\":\"x\"}"), "input[0].role", NULL },
	{ "an unknown role", ITEMS("{\"role\":\"tool\",\"content\":\"x\"}"), "input[0].role", NULL },
	{ "a message without content", ITEMS("{\"role\":\"user\"}"), "input[0].content", NULL },
	{ "content a number", ITEMS("{\"role\":\"user\",\"content\":5}"), "input[0].content", NULL },
	{ "a part without text", USER_PARTS("{\"type\":\"input_text\",\"text\":\"a\"},{\"type\":\"input_text\"}"), "input[0].content[1].text", NULL },
	{ "a text that is a number", ITEMS("{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\","
		"\"content\":\"b\"},{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":1}]}"),
		"input[2].content[0].text", NULL },
	{ "a part without type", USER_PARTS("{\"text\":\"a\"}"), "input[0].content[0].type", NULL },
	{ "an unknown part type", USER_PARTS("{\"type\":\"input_audio\",\"text\":\"a\"}"), "input[0].content[0].type", NULL },
	{ "a refusal part from the user", USER_PARTS("{\"type\":\"refusal\",\"refusal\":\"a\"}"), "input[0].content[0].type", NULL },
	{ "an image from the assistant", ITEMS("{\"role\":\"assistant\",\"content\":[{\"type\":"
		"\"input_image\",\"image_url\":\"https://x\"}]}"), "input[0].content[0]", "unsupported_value" },
	{ "a file in a system message", ITEMS("{\"role\":\"system\",\"content\":[{\"type\":"
		"\"input_file\",\"file_id\":\"f\"}]}"), "input[0].content[0]", "unsupported_value" },
	{ "an image by file_id", USER_PARTS("{\"type\":\"input_image\",\"file_id\":\"file-1\"}"), "input[0].content[0].file_id", "unsupported_value" },
	{ "an image without url", USER_PARTS("{\"type\":\"input_image\",\"detail\":\"auto\"}"), "input[0].content[0].image_url", NULL },
	{ "an image detail unknown", USER_PARTS("{\"type\":\"input_image\",\"image_url\":\"u\",\"detail\":\"max\"}"), "input[0].content[0].detail", NULL },
	{ "a file by URL", USER_PARTS("{\"type\":\"input_file\",\"file_url\":\"https://x/a.pdf\"}"), "input[0].content[0].file_url", "unsupported_value" },
	{ "a file with nothing", USER_PARTS("{\"type\":\"input_file\",\"filename\":\"a.pdf\"}"), "input[0].content[0]", NULL },
	{ "a function_call without call_id", ITEMS("{\"type\":\"function_call\",\"name\":\"f\",\"arguments\":\"{}\"}"), "input[0].call_id", NULL },
	{ "a function_call without name", ITEMS("{\"type\":\"function_call\",\"call_id\":\"c\",\"arguments\":\"{}\"}"), "input[0].name", NULL },
	{ "a function_call with object arguments", ITEMS("{\"type\":\"function_call\",\"call_id\":\"c\","
		"\"name\":\"f\",\"arguments\":{}}"), "input[0].arguments", NULL },
	{ "a function_call_output without output", ITEMS("{\"type\":\"function_call_output\",\"call_id\":\"c\"}"), "input[0].output", NULL },
	{ "a function_call_output with an image", ITEMS("{\"type\":\"function_call_output\",\"call_id\":"
		"\"c\",\"output\":[{\"type\":\"input_image\",\"image_url\":\"u\"}]}"), "input[0].output[0]", "unsupported_value" },
	{ "a reasoning summary not an array", ITEMS("{\"type\":\"reasoning\",\"summary\":\"x\"}"), "input[0].summary", NULL },
	{ "an item_reference without id", ITEMS("{\"type\":\"item_reference\"}"), "input[0].id", NULL },
	{ "web_search_call", ITEMS("{\"role\":\"user\",\"content\":\"x\"},{\"type\":\"web_search_call\",\"id\":\"ws_1\"}"), "input[1]", "unsupported_value" },
	{ "computer_call", ITEMS("{\"type\":\"computer_call\"}"), "input[0]", "unsupported_value" },
	{ "code_interpreter_call", ITEMS("{\"type\":\"code_interpreter_call\"}"), "input[0]", "unsupported_value" },
	{ "mcp_call", ITEMS("{\"type\":\"mcp_call\"}"), "input[0]", "unsupported_value" },
	{ "mcp_list_tools", ITEMS("{\"type\":\"mcp_list_tools\"}"), "input[0]", "unsupported_value" },
	{ "custom_tool_call", ITEMS("{\"type\":\"custom_tool_call\"}"), "input[0]", "unsupported_value" },
	{ "shell_call", ITEMS("{\"type\":\"shell_call\"}"), "input[0]", "unsupported_value" },
	{ "local_shell_call", ITEMS("{\"type\":\"local_shell_call\"}"), "input[0]", "unsupported_value" },
	{ "image_generation_call", ITEMS("{\"type\":\"image_generation_call\"}"), "input[0]", "unsupported_value" },
	{ "file_search_call", ITEMS("{\"type\":\"file_search_call\"}"), "input[0]", "unsupported_value" },
	{ "an unknown item type", ITEMS("{\"type\":\"hologram\"}"), "input[0]", "unsupported_value" },

	/* tools and tool_choice */
	{ "tools not an array", "{" M "," HI ",\"tools\":{}}", "tools", NULL },
	{ "a built-in tool", "{" M "," HI ",\"tools\":[{\"type\":\"function\",\"name\":\"f\"},"
		"{\"type\":\"web_search_preview\"}]}", "tools[1].type", "unsupported_value" },
	{ "a custom tool", "{" M "," HI ",\"tools\":[{\"type\":\"custom\",\"name\":\"f\"}]}", "tools[0].type", "unsupported_value" },
	{ "an mcp tool", "{" M "," HI ",\"tools\":[{\"type\":\"mcp\",\"server_label\":\"x\"}]}", "tools[0].type", "unsupported_value" },
	{ "a tool without type", "{" M "," HI ",\"tools\":[{\"name\":\"f\"}]}", "tools[0].type", NULL },
	{ "a tool name with a space", "{" M "," HI ",\"tools\":[{\"type\":\"function\",\"name\":\"get weather\"}]}", "tools[0].name", NULL },
	{ "a tool without name", "{" M "," HI ",\"tools\":[{\"type\":\"function\"}]}", "tools[0].name", NULL },
	{ "a tool name of 65 bytes", "{" M "," HI ",\"tools\":[{\"type\":\"function\",\"name\":"
		"\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}]}", "tools[0].name", NULL },
	{ "tool parameters an array", "{" M "," HI ",\"tools\":[{\"type\":\"function\",\"name\":\"f\","
		"\"parameters\":[]}]}", "tools[0].parameters", NULL },
	{ "tool strict a string", "{" M "," HI ",\"tools\":[{\"type\":\"function\",\"name\":\"f\","
		"\"strict\":\"yes\"}]}", "tools[0].strict", NULL },
	{ "tool description a number", "{" M "," HI ",\"tools\":[{\"type\":\"function\",\"name\":\"f\","
		"\"description\":1}]}", "tools[0].description", NULL },
	{ "tool_choice unknown string", "{" M "," HI ",\"tool_choice\":\"sometimes\"}", "tool_choice", NULL },
	{ "tool_choice a number", "{" M "," HI ",\"tool_choice\":1}", "tool_choice", NULL },
	{ "tool_choice a hosted tool", "{" M "," HI ",\"tool_choice\":{\"type\":\"web_search_preview\"}}", "tool_choice", "unsupported_value" },
	{ "tool_choice function without name", "{" M "," HI ",\"tool_choice\":{\"type\":\"function\"}}", "tool_choice.name", NULL },
	{ "tool_choice allowed_tools bad mode", "{" M "," HI ",\"tool_choice\":{\"type\":\"allowed_tools\","
		"\"mode\":\"none\",\"tools\":[]}}", "tool_choice.mode", NULL },
	{ "tool_choice allowed_tools a hosted tool", "{" M "," HI ",\"tool_choice\":{\"type\":"
		"\"allowed_tools\",\"mode\":\"auto\",\"tools\":[{\"type\":\"file_search\"}]}}",
		"tool_choice.tools[0].type", "unsupported_value" },

	/* text and reasoning */
	{ "text a string", "{" M "," HI ",\"text\":\"json\"}", "text", NULL },
	{ "text.format unknown", "{" M "," HI ",\"text\":{\"format\":{\"type\":\"xml\"}}}", "text.format.type", NULL },
	{ "text.format without type", "{" M "," HI ",\"text\":{\"format\":{}}}", "text.format.type", NULL },
	{ "json_schema without name", "{" M "," HI ",\"text\":{\"format\":{\"type\":\"json_schema\","
		"\"schema\":{}}}}", "text.format.name", NULL },
	{ "json_schema with a bad name", "{" M "," HI ",\"text\":{\"format\":{\"type\":\"json_schema\","
		"\"name\":\"a.b\",\"schema\":{}}}}", "text.format.name", NULL },
	{ "json_schema without schema", "{" M "," HI ",\"text\":{\"format\":{\"type\":\"json_schema\","
		"\"name\":\"n\"}}}", "text.format.schema", NULL },
	{ "json_schema strict a string", "{" M "," HI ",\"text\":{\"format\":{\"type\":\"json_schema\","
		"\"name\":\"n\",\"schema\":{},\"strict\":\"true\"}}}", "text.format.strict", NULL },
	{ "verbosity unknown", "{" M "," HI ",\"text\":{\"verbosity\":\"loud\"}}", "text.verbosity", NULL },
	{ "reasoning not an object", "{" M "," HI ",\"reasoning\":\"high\"}", "reasoning", NULL },
	{ "reasoning effort unknown", "{" M "," HI ",\"reasoning\":{\"effort\":\"extreme\"}}", "reasoning.effort", NULL },
	{ "reasoning summary unknown", "{" M "," HI ",\"reasoning\":{\"summary\":\"short\"}}", "reasoning.summary", NULL },
};

TEST(respx_validate_rows)
{
	for (size_t i = 0; i < sizeof(val_rows) / sizeof(val_rows[0]); i++) {
		const struct val_row *r = &val_rows[i];
		test_case("%s", r->name);
		json_t *body = load(r->body);
		if (!CHECK_NOT_NULL(body))
			continue;
		struct resp_req q;
		struct rerr err;
		rerr_clear(&err);
		int rc = respx_validate(body, &q, &err);
		if (!r->param) {
			CHECK_INT_EQ(rc, 0);
			CHECK_INT_EQ(err.status, 0);
			if (rc < 0)
				printf("       error: %s: %s\n", err.param, err.message);
		} else {
			CHECK_INT_EQ(rc, -1);
			CHECK_INT_EQ(err.status, 400);
			CHECK_STR_EQ(err.type, "invalid_request_error");
			CHECK_STR_EQ(err.param, r->param);
			CHECK_STR_EQ(err.code, r->code);
			CHECK(err.message[0] != '\0');
		}
		json_decref(body);
	}
	test_case(NULL);
}

TEST(respx_validate_fills_resp_req)
{
	static const struct {
		const char *body;
		int stream, store, background;
		const char *prev;
	} rows[] = {
		{ N8N_1, 0, 1, 0, NULL },
		{ N8N_2, 0, 1, 0, NULL },
		{ "{" M "," HI ",\"stream\":true,\"store\":false}", 1, 0, 0, NULL },
		{ "{" M "," HI ",\"store\":null,\"background\":true}", 0, 1, 1, NULL },
		{ "{" M ",\"input\":[],\"previous_response_id\":\"resp_9\"}", 0, 1, 0, "resp_9" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("%s", rows[i].body);
		json_t *body = load(rows[i].body);
		struct resp_req q;
		struct rerr err;
		rerr_clear(&err);
		REQUIRE_INT_EQ(respx_validate(body, &q, &err), 0);
		CHECK(q.model == json_string_value(json_object_get(body, "model")));
		CHECK_INT_EQ(q.stream, rows[i].stream);
		CHECK_INT_EQ(q.store, rows[i].store);
		CHECK_INT_EQ(q.background, rows[i].background);
		CHECK_STR_EQ(q.previous_response_id, rows[i].prev);
		json_decref(body);
	}
	test_case(NULL);
}

TEST(respx_validate_string_bounds)
{
	/* model: 256 bytes pass, 257 do not; metadata: keys of 64 characters and values of 512
	 * characters (multi-byte ones count once) pass, one more does not. */
	char model[300], key[80], val[2048];
	for (int n = 256; n <= 257; n++) {
		memset(model, 'm', (size_t)n);
		model[n] = '\0';
		json_t *body = json_pack("{s:s, s:s}", "model", model, "input", "hi");
		struct resp_req q;
		struct rerr err;
		rerr_clear(&err);
		test_case("model of %d bytes", n);
		CHECK_INT_EQ(respx_validate(body, &q, &err), n == 256 ? 0 : -1);
		json_decref(body);
	}
	for (int n = 64; n <= 65; n++) {
		memset(key, 'k', (size_t)n);
		key[n] = '\0';
		for (int v = 512; v <= 513; v++) {
			val[0] = '\0';
			for (int c = 0; c < v; c++)
				strcat(val, "\xc3\xa9");   /* é: 2 bytes, one character */
			json_t *body = json_pack("{s:s, s:s, s:{s:s}}", "model", "m", "input", "hi",
						 "metadata", key, val);
			struct resp_req q;
			struct rerr err;
			rerr_clear(&err);
			test_case("metadata key of %d, value of %d characters", n, v);
			int ok = n == 64 && v == 512;
			CHECK_INT_EQ(respx_validate(body, &q, &err), ok ? 0 : -1);
			if (!ok)
				CHECK_STR_EQ(err.param, "metadata");
			json_decref(body);
		}
	}
	test_case(NULL);
}

/* ---- the chat request ---- */

#define WEATHER_TOOL "{\"type\":\"function\",\"name\":\"get_weather\",\"description\":\"Weather\"," \
	"\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}},\"strict\":true}"
#define WEATHER_CHAT "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":" \
	"\"Weather\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}," \
	"\"strict\":true}}"
#define CALL(id, args) "{\"type\":\"function_call\",\"id\":\"fc_" id "\",\"call_id\":\"" id "\"," \
	"\"name\":\"get_weather\",\"arguments\":\"" args "\",\"status\":\"completed\"}"
#define TC(id, args) "{\"id\":\"" id "\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\"," \
	"\"arguments\":\"" args "\"}}"
#define OUT(id, text) "{\"type\":\"function_call_output\",\"call_id\":\"" id "\",\"output\":\"" text "\"}"
#define TOOL(id, text) "{\"role\":\"tool\",\"tool_call_id\":\"" id "\",\"content\":\"" text "\"}"
#define USER(text) "{\"role\":\"user\",\"content\":\"" text "\"}"

struct chat_row {
	const char *name;
	const char *body;
	const char *context;   /* NULL: none */
	const char *chat;      /* the expected chat request; NULL: expect a 400 */
	const char *param;     /* the 400's param */
	const char *message;   /* a piece of the 400's message, or NULL */
};

static const struct chat_row chat_rows[] = {
	{ "n8n: input_text parts; store, background and parallel_tool_calls (no tools) dropped", N8N_1,
		NULL, "{\"model\":\"gpt-4o-mini\",\"messages\":[" USER("Say hello") "]}", NULL, NULL },
	{ "n8n: a message item, stream false, text {}", N8N_2, NULL,
		"{\"model\":\"gpt-4o-mini\",\"messages\":[" USER("Say hello") "]}", NULL, NULL },
	{ "string input, instructions first", "{" M ",\"instructions\":\"Be brief.\"," HI "}", NULL,
		"{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"}," USER("hi") "]}",
		NULL, NULL },
	{ "empty instructions are left out", "{" M ",\"instructions\":\"\"," HI "}", NULL,
		"{\"model\":\"m\",\"messages\":[" USER("hi") "]}", NULL, NULL },
	{ "two-turn function call", "{" M ",\"tools\":[" WEATHER_TOOL "],\"input\":["
		USER("Weather in Paris?") "," CALL("call_1", "{\\\"city\\\":\\\"Paris\\\"}") ","
		OUT("call_1", "18C") "]}", NULL,
		"{\"model\":\"m\",\"messages\":[" USER("Weather in Paris?") ",{\"role\":\"assistant\","
		"\"content\":null,\"tool_calls\":[" TC("call_1", "{\\\"city\\\":\\\"Paris\\\"}") "]},"
		TOOL("call_1", "18C") "],\"tools\":[" WEATHER_CHAT "]}", NULL, NULL },
	{ "reasoning, text and parallel calls make one assistant turn", "{" M ",\"input\":["
		USER("Paris and Rome?") ",{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[{\"type\":"
		"\"summary_text\",\"text\":\"Two cities.\"},{\"type\":\"summary_text\",\"text\":\"Two calls.\"}]},"
		"{\"type\":\"message\",\"role\":\"assistant\",\"id\":\"msg_1\",\"status\":\"completed\","
		"\"content\":[{\"type\":\"output_text\",\"text\":\"Checking\",\"annotations\":[]},"
		"{\"type\":\"output_text\",\"text\":\" both.\"}]},"
		CALL("a", "{}") "," CALL("b", "{}") "," OUT("a", "18C") "," OUT("b", "21C") "]}", NULL,
		"{\"model\":\"m\",\"messages\":[" USER("Paris and Rome?") ",{\"role\":\"assistant\","
		"\"content\":\"Checking both.\",\"reasoning_content\":\"Two cities.\\n\\nTwo calls.\","
		"\"tool_calls\":[" TC("a", "{}") "," TC("b", "{}") "]}," TOOL("a", "18C") ","
		TOOL("b", "21C") "]}", NULL, NULL },
	{ "reasoning goes to the next turn only", "{" M ",\"input\":[{\"type\":\"reasoning\","
		"\"summary\":[{\"type\":\"summary_text\",\"text\":\"lost\"}]}," USER("hi") ","
		"{\"type\":\"reasoning\",\"summary\":[],\"content\":[{\"type\":\"reasoning_text\","
		"\"text\":\"kept\"}]},{\"role\":\"assistant\",\"content\":\"hello\"},{\"type\":\"reasoning\","
		"\"summary\":[{\"type\":\"summary_text\",\"text\":\"trailing\"}]}]}", NULL,
		"{\"model\":\"m\",\"messages\":[" USER("hi") ",{\"role\":\"assistant\",\"content\":\"hello\","
		"\"reasoning_content\":\"kept\"}]}", NULL, NULL },
	{ "a call after a tool output opens a new turn", "{" M ",\"input\":[" USER("x") ","
		"{\"role\":\"assistant\",\"content\":\"a\"}," CALL("c1", "{}") "," OUT("c1", "r1") ","
		CALL("c2", "{}") "," OUT("c2", "r2") "]}", NULL,
		"{\"model\":\"m\",\"messages\":[" USER("x") ",{\"role\":\"assistant\",\"content\":\"a\","
		"\"tool_calls\":[" TC("c1", "{}") "]}," TOOL("c1", "r1") ",{\"role\":\"assistant\","
		"\"content\":null,\"tool_calls\":[" TC("c2", "{}") "]}," TOOL("c2", "r2") "]}", NULL, NULL },
	{ "n8n: input_text in an assistant turn; refusal as text", "{" M ",\"input\":[" USER("hi") ","
		"{\"role\":\"assistant\",\"content\":[{\"type\":\"input_text\",\"text\":\"Hello\"},"
		"{\"type\":\"refusal\",\"refusal\":\" (no)\"}]}," USER("again") "]}", NULL,
		"{\"model\":\"m\",\"messages\":[" USER("hi") ",{\"role\":\"assistant\",\"content\":"
		"\"Hello (no)\"}," USER("again") "]}", NULL, NULL },
	{ "system and developer parts; several text parts stay parts", "{" M ",\"input\":["
		"{\"role\":\"developer\",\"content\":[{\"type\":\"input_text\",\"text\":\"d\"}]},"
		"{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":[{\"type\":"
		"\"input_text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}]}", NULL,
		"{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"d\"},{\"role\":"
		"\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
		"\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}]}", NULL, NULL },
	{ "images and files", USER_PARTS("{\"type\":\"input_text\",\"text\":\"see\"},{\"type\":"
		"\"input_image\",\"image_url\":\"https://x/y.png\",\"detail\":\"original\"},{\"type\":"
		"\"input_image\",\"image_url\":\"data:image/png;base64,AA\"},{\"type\":\"input_file\","
		"\"file_data\":\"data:application/pdf;base64,AAAA\",\"file_name\":\"a.pdf\"},{\"type\":"
		"\"input_file\",\"file_id\":\"file-1\"}"), NULL,
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
		"\"see\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\",\"detail\":"
		"\"high\"}},{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AA\"}},"
		"{\"type\":\"file\",\"file\":{\"file_data\":\"data:application/pdf;base64,AAAA\","
		"\"filename\":\"a.pdf\"}},{\"type\":\"file\",\"file\":{\"file_id\":\"file-1\"}}]}]}", NULL, NULL },
	{ "tool output as parts", "{" M ",\"input\":[" CALL("c", "{}") ",{\"type\":"
		"\"function_call_output\",\"call_id\":\"c\",\"output\":[{\"type\":\"input_text\",\"text\":"
		"\"1\"},{\"type\":\"input_text\",\"text\":\"2\"}]}]}", NULL,
		"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
		TC("c", "{}") "]}," TOOL("c", "12") "]}", NULL, NULL },
	{ "parameters", "{" M "," HI ",\"tools\":[" WEATHER_TOOL ",{\"type\":\"function\",\"name\":"
		"\"g\"}],\"tool_choice\":{\"type\":\"function\",\"name\":\"get_weather\"},\"text\":{"
		"\"format\":{\"type\":\"json_schema\",\"name\":\"out\",\"schema\":{\"type\":\"object\"},"
		"\"strict\":true},\"verbosity\":\"low\"},\"reasoning\":{\"effort\":\"high\",\"summary\":"
		"\"auto\"},\"max_output_tokens\":500,\"temperature\":0.5,\"top_p\":1,\"top_logprobs\":3,"
		"\"stream\":true,\"parallel_tool_calls\":false,\"user\":\"u\",\"safety_identifier\":\"s\","
		"\"prompt_cache_key\":\"k\",\"service_tier\":\"flex\",\"store\":false,\"metadata\":{\"a\":"
		"\"b\"},\"include\":[],\"truncation\":\"auto\",\"previous_response_id\":\"resp_1\","
		"\"background\":false}", NULL,
		"{\"model\":\"m\",\"messages\":[" USER("hi") "],\"tools\":[" WEATHER_CHAT ",{\"type\":"
		"\"function\",\"function\":{\"name\":\"g\"}}],\"tool_choice\":{\"type\":\"function\","
		"\"function\":{\"name\":\"get_weather\"}},\"response_format\":{\"type\":\"json_schema\","
		"\"json_schema\":{\"name\":\"out\",\"schema\":{\"type\":\"object\"},\"strict\":true}},"
		"\"verbosity\":\"low\",\"reasoning_effort\":\"high\",\"max_completion_tokens\":500,"
		"\"temperature\":0.5,\"top_p\":1,\"top_logprobs\":3,\"logprobs\":true,\"stream\":true,"
		"\"stream_options\":{\"include_usage\":true},\"parallel_tool_calls\":false,\"user\":\"u\","
		"\"safety_identifier\":\"s\",\"prompt_cache_key\":\"k\",\"service_tier\":\"flex\"}", NULL, NULL },
	{ "json_object, allowed_tools, tool_choice object form", "{" M "," HI ",\"text\":{\"format\":"
		"{\"type\":\"json_object\"}},\"tool_choice\":{\"type\":\"allowed_tools\",\"mode\":"
		"\"required\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}]}}", NULL,
		"{\"model\":\"m\",\"messages\":[" USER("hi") "],\"response_format\":{\"type\":"
		"\"json_object\"},\"tool_choice\":{\"type\":\"allowed_tools\",\"allowed_tools\":{\"mode\":"
		"\"required\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}}}", NULL, NULL },
	{ "tool_choice {type: none}; text format text", "{" M "," HI ",\"tool_choice\":{\"type\":"
		"\"none\"},\"text\":{\"format\":{\"type\":\"text\"}}}", NULL,
		"{\"model\":\"m\",\"messages\":[" USER("hi") "],\"tool_choice\":\"none\"}", NULL, NULL },
	{ "context, then input", "{" M ",\"instructions\":\"sys\",\"input\":[{\"type\":"
		"\"function_call_output\",\"call_id\":\"call_9\",\"output\":[{\"type\":\"input_text\","
		"\"text\":\"42\"}]}]}",
		"[{\"type\":\"message\",\"id\":\"msg_a_in0\",\"status\":\"completed\",\"role\":\"user\","
		"\"content\":[{\"type\":\"input_text\",\"text\":\"Hi\"}]},{\"type\":\"message\",\"id\":"
		"\"msg_a_0\",\"status\":\"completed\",\"role\":\"assistant\",\"phase\":\"final_answer\","
		"\"content\":[{\"type\":\"output_text\",\"text\":\"Hello\",\"annotations\":[]}]},"
		"{\"type\":\"message\",\"id\":\"msg_b_in0\",\"status\":\"completed\",\"role\":\"user\","
		"\"content\":[{\"type\":\"input_text\",\"text\":\"Answer?\"}]},{\"type\":\"reasoning\","
		"\"id\":\"rs_b_0\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"look it up\"}]},"
		"{\"type\":\"function_call\",\"id\":\"fc_b_1\",\"call_id\":\"call_9\",\"name\":\"f\","
		"\"arguments\":\"{}\",\"status\":\"completed\"}]",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"sys\"}," USER("Hi") ","
		"{\"role\":\"assistant\",\"content\":\"Hello\"}," USER("Answer?") ",{\"role\":\"assistant\","
		"\"content\":null,\"tool_calls\":[{\"id\":\"call_9\",\"type\":\"function\",\"function\":"
		"{\"name\":\"f\",\"arguments\":\"{}\"}}],\"reasoning_content\":\"look it up\"},"
		"{\"role\":\"tool\",\"tool_call_id\":\"call_9\",\"content\":\"42\"}]}", NULL, NULL },
	{ "a previous response alone", "{" M ",\"previous_response_id\":\"resp_1\"}",
		"[" USER("Hi") ",{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":"
		"\"output_text\",\"text\":\"Hello\"}]}]", "{\"model\":\"m\",\"messages\":[" USER("Hi") ","
		"{\"role\":\"assistant\",\"content\":\"Hello\"}]}", NULL, NULL },

	/* 400s */
	{ "an output without its call", "{" M ",\"input\":[" USER("x") "," OUT("call_404", "r") "]}",
		NULL, NULL, "input", "No tool call found for function call output with call_id call_404." },
	{ "an output before its call", "{" M ",\"input\":[" OUT("c", "r") "," CALL("c", "{}") "]}",
		NULL, NULL, "input", "call_id c." },
	{ "an output whose call is in another context", "{" M ",\"input\":[" OUT("c", "r") "]}",
		"[" CALL("d", "{}") "]", NULL, "input", "call_id c." },
	{ "an unresolved item_reference", "{" M ",\"input\":[" USER("x") ",{\"type\":"
		"\"item_reference\",\"id\":\"msg_1\"}]}", NULL, NULL, "input[1]", "msg_1" },
	{ "no messages at all", "{" M ",\"input\":[{\"type\":\"reasoning\",\"summary\":[]}]}", NULL,
		NULL, "input", NULL },
	{ "a bad context item names previous_response_id", "{" M "," HI "}",
		"[{\"type\":\"web_search_call\"}]", NULL, "previous_response_id", NULL },
};

static void check_chat_row(const struct chat_row *r)
{
	json_t *body = load(r->body);
	json_t *ctx = r->context ? load(r->context) : NULL;
	struct resp_req q;
	struct rerr err;
	rerr_clear(&err);
	if (!CHECK_NOT_NULL(body) || (r->context && !CHECK_NOT_NULL(ctx)))
		goto out;
	if (!r->context && r->chat && !CHECK_INT_EQ(respx_validate(body, &q, &err), 0)) {
		printf("       error: %s: %s\n", err.param, err.message);
		goto out;
	}
	rerr_clear(&err);
	json_t *chat = respx_to_chat(body, ctx, &err);
	if (!r->chat) {
		CHECK_NULL(chat);
		CHECK_INT_EQ(err.status, 400);
		CHECK_STR_EQ(err.param, r->param);
		if (r->message)
			CHECK_CONTAINS(err.message, r->message);
		json_decref(chat);
		goto out;
	}
	if (!CHECK_NOT_NULL(chat)) {
		printf("       error: %s: %s\n", err.param, err.message);
		goto out;
	}
	json_t *want = load(r->chat);
	if (!CHECK(json_equal(chat, want))) {
		char *g = json_dumps(chat, JSON_COMPACT), *w = json_dumps(want, JSON_COMPACT);
		printf("       got:  %s\n       want: %s\n", g, w);
		free(g);
		free(w);
	}
	/* What the router builds is always a chat request it would accept from a client. */
	struct chatreq cr;
	rerr_clear(&err);
	if (!CHECK_INT_EQ(chatreq_validate(chat, &cr, &err), 0))
		printf("       chatreq: %s: %s\n", err.param, err.message);
	json_decref(want);
	json_decref(chat);
out:
	json_decref(body);
	json_decref(ctx);
}

TEST(respx_to_chat_rows)
{
	for (size_t i = 0; i < sizeof(chat_rows) / sizeof(chat_rows[0]); i++) {
		test_case("%s", chat_rows[i].name);
		check_chat_row(&chat_rows[i]);
	}
	test_case(NULL);
}

TEST(respx_valid_rows_make_valid_chat_requests)
{
	/* Every request that validates maps, and the map is a valid chat request (the rows without
	 * an input need a context, and an output without its call one with the call). */
	for (size_t i = 0; i < sizeof(val_rows) / sizeof(val_rows[0]); i++) {
		const struct val_row *r = &val_rows[i];
		if (r->param)
			continue;
		test_case("%s", r->name);
		json_t *body = load(r->body);
		json_t *ctx = json_pack("[{s:s, s:s}, {s:s, s:s, s:s, s:s}]", "role", "user", "content",
					"earlier", "type", "function_call", "call_id", "c", "name", "f",
					"arguments", "{}");
		struct rerr err;
		rerr_clear(&err);
		json_t *chat = respx_to_chat(body, ctx, &err);
		if (strstr(r->name, "item_reference")) {
			CHECK_NULL(chat);
			CHECK_INT_EQ(err.status, 400);
		} else if (CHECK_NOT_NULL(chat)) {
			struct chatreq cr;
			if (!CHECK_INT_EQ(chatreq_validate(chat, &cr, &err), 0))
				printf("       chatreq: %s: %s\n", err.param, err.message);
		} else {
			printf("       error: %s: %s\n", err.param, err.message);
		}
		json_decref(chat);
		json_decref(ctx);
		json_decref(body);
	}
	test_case(NULL);
}

/* ---- stored input items ---- */

TEST(respx_input_items_string)
{
	json_t *body = load("{" M ",\"input\":\"Say hello\"}");
	json_t *items = respx_input_items(body, "resp_5f2c");
	json_t *want = load("[{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":"
			    "\"input_text\",\"text\":\"Say hello\"}],\"status\":\"completed\","
			    "\"id\":\"msg_5f2c_in0\"}]");
	CHECK(json_equal(items, want));
	json_decref(want);
	json_decref(items);
	json_decref(body);
}

TEST(respx_input_items_array)
{
	json_t *body = load("{" M ",\"input\":[" USER("hi") ",{\"type\":\"message\",\"role\":"
			    "\"assistant\",\"content\":\"a\",\"id\":\"msg_keep\",\"status\":"
			    "\"incomplete\"},{\"type\":\"reasoning\",\"summary\":[]},"
			    CALL("c", "{}") ",{\"type\":\"function_call\",\"call_id\":\"d\",\"name\":\"f\","
			    "\"arguments\":\"{}\",\"id\":null}," OUT("c", "r") ",{\"type\":"
			    "\"item_reference\",\"id\":\"msg_old\"}]}");
	struct resp_req q;
	struct rerr err;
	rerr_clear(&err);
	REQUIRE_INT_EQ(respx_validate(body, &q, &err), 0);
	json_t *items = respx_input_items(body, "resp_ab12");
	json_t *want = load("[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"hi\"}],"
			    "\"type\":\"message\",\"status\":\"completed\",\"id\":\"msg_ab12_in0\"},"
			    "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":"
			    "\"output_text\",\"text\":\"a\",\"annotations\":[],\"logprobs\":[]}],"
			    "\"id\":\"msg_keep\","
			    "\"status\":\"incomplete\"},{\"type\":\"reasoning\",\"summary\":[],\"id\":"
			    "\"rs_ab12_in2\"}," CALL("c", "{}") ",{\"type\":\"function_call\",\"call_id\":"
			    "\"d\",\"name\":\"f\",\"arguments\":\"{}\",\"id\":\"fc_ab12_in4\"},"
			    "{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":\"r\",\"id\":"
			    "\"fco_ab12_in5\"},{\"type\":\"item_reference\",\"id\":\"msg_old\"}]");
	if (!CHECK(json_equal(items, want))) {
		char *g = json_dumps(items, JSON_COMPACT);
		printf("       got: %s\n", g);
		free(g);
	}
	/* The body is not modified. */
	CHECK_INT_EQ(json_is_string(json_object_get(json_array_get(json_object_get(body, "input"), 0),
						    "content")), 1);
	json_decref(want);
	json_decref(items);
	json_decref(body);
}

TEST(respx_input_items_are_resolvable_context)
{
	/* The stored items of one request, given back as the context of the next, map as the
	 * request did. */
	json_t *body = load("{" M ",\"input\":[" USER("hi") "," CALL("c", "{}") "]}");
	json_t *items = respx_input_items(body, "resp_1");
	json_t *next = load("{" M ",\"input\":[" OUT("c", "r") "]}");
	struct rerr err;
	rerr_clear(&err);
	json_t *chat = respx_to_chat(next, items, &err);
	REQUIRE_NOT_NULL(chat);
	json_t *want = load("{\"model\":\"m\",\"messages\":[" USER("hi") ",{\"role\":\"assistant\","
			    "\"content\":null,\"tool_calls\":[" TC("c", "{}") "]}," TOOL("c", "r") "]}");
	CHECK(json_equal(chat, want));
	json_decref(want);
	json_decref(chat);
	json_decref(next);
	json_decref(items);
	json_decref(body);
}

/* The fields a Responses request sends that the router neither forwards nor honours. */
TEST(respx_unused_fields_named)
{
	json_t *body = load("{\"model\":\"m\",\"input\":\"hi\",\"max_tool_calls\":3,\"include\":[],"
			    "\"truncation\":\"disabled\",\"context_management\":null,\"moderation\":{},"
			    "\"store\":false}");
	struct buf b;
	buf_init(&b, 4096);
	respx_unused_fields(body, &b);
	CHECK_STR_EQ(buf_str(&b), "max_tool_calls,moderation");
	json_decref(body);
	body = load("{\"model\":\"m\",\"input\":\"hi\",\"include\":[\"reasoning.encrypted_content\"],"
		    "\"truncation\":\"auto\"}");
	buf_reset(&b);
	respx_unused_fields(body, &b);
	CHECK_STR_EQ(buf_str(&b), "include,truncation");
	json_decref(body);
	buf_free(&b);
}
