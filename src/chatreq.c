/* chatreq.c - parses and validates a client's Chat Completions request body.
 *
 * The checks follow OpenAI's CreateChatCompletionRequest: required fields, the type and range of
 * every known field, the shape of each message by role and of each content part, tools and
 * tool_choice. A field set to null counts as absent, as OpenAI treats it. Unknown fields are left
 * alone (they are forwarded to OpenAI-compatible upstreams). Errors name the offending parameter
 * with its path ("messages[2].content[0].image_url.url"). Pure: no I/O.
 */
#include "chatreq.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "jsonx.h"
#include "memgauge.h"
#include "util.h"

static int bad_type(struct rerr *err, const char *param, const char *want, const json_t *v)
{
	return rerr_invalid(err, param, "Invalid type for '%s': expected %s, but got %s instead.",
			    param, want, jsonx_type_name(v));
}

static int check_number(const json_t *body, const char *key, double lo, double hi, struct rerr *err)
{
	const json_t *v = jsonx_opt(body, key);
	if (!v)
		return 0;
	if (!json_is_number(v))
		return bad_type(err, key, "a number", v);
	double d = json_number_value(v);
	if (!isfinite(d) || d < lo || d > hi)
		return rerr_invalid(err, key, "Invalid value for '%s': %g is outside %g..%g.", key, d, lo,
				    hi);
	return 0;
}

static int check_int(const json_t *body, const char *key, long long lo, long long hi,
		     struct rerr *err)
{
	const json_t *v = jsonx_opt(body, key);
	if (!v)
		return 0;
	if (!json_is_integer(v))
		return bad_type(err, key, "an integer", v);
	long long n = json_integer_value(v);
	if (n < lo || n > hi)
		return rerr_invalid(err, key, "Invalid value for '%s': %lld is outside %lld..%lld.", key,
				    n, lo, hi);
	return 0;
}

static int check_kind(const json_t *body, const char *key, json_type t, const char *want,
		      struct rerr *err)
{
	const json_t *v = jsonx_opt(body, key);
	if (!v)
		return 0;
	if (t == JSON_TRUE ? !json_is_boolean(v) : json_typeof(v) != t)
		return bad_type(err, key, want, v);
	return 0;
}

/* Which content parts a role may send. */
enum part_set { PARTS_TEXT, PARTS_ASSISTANT, PARTS_USER };

static int check_parts(const json_t *content, const char *where, enum part_set set,
		       struct rerr *err)
{
	size_t i;
	const json_t *part;
	char p[224];
	json_array_foreach(content, i, part)
	{
		snprintf(p, sizeof(p), "%.150s[%zu]", where, i);
		if (!json_is_object(part))
			return bad_type(err, p, "an object", part);
		const char *type = json_string_value(json_object_get(part, "type"));
		if (!type)
			return rerr_invalid(err, p, "Missing required parameter: '%s.type'.", p);
		if (strcmp(type, "text") == 0) {
			if (!json_is_string(json_object_get(part, "text")))
				return rerr_invalid(err, p, "'%s.text' must be a string.", p);
		} else if (set == PARTS_ASSISTANT && strcmp(type, "refusal") == 0) {
			if (!json_is_string(json_object_get(part, "refusal")))
				return rerr_invalid(err, p, "'%s.refusal' must be a string.", p);
		} else if (set == PARTS_USER && strcmp(type, "image_url") == 0) {
			const json_t *iu = json_object_get(part, "image_url");
			if (!json_is_object(iu) || !json_is_string(json_object_get(iu, "url")))
				return rerr_invalid(err, p, "'%s.image_url.url' must be a string.", p);
		} else if (set == PARTS_USER && strcmp(type, "input_audio") == 0) {
			const json_t *ia = json_object_get(part, "input_audio");
			if (!json_is_object(ia) || !json_is_string(json_object_get(ia, "data")) ||
			    !json_is_string(json_object_get(ia, "format")))
				return rerr_invalid(err, p,
						    "'%s.input_audio' needs string 'data' and 'format'.", p);
		} else if (set == PARTS_USER && strcmp(type, "file") == 0) {
			if (!json_is_object(json_object_get(part, "file")))
				return rerr_invalid(err, p, "'%s.file' must be an object.", p);
		} else if (set == PARTS_USER) {
			return rerr_invalid(err, p,
					    "Invalid value for '%s.type': '%s' is not a known content part type.",
					    p, type);
		} else {
			return rerr_invalid(err, p, "Invalid value for '%s.type': '%s' is not allowed here.",
					    p, type);
		}
	}
	return 0;
}

static int check_tool_calls(const json_t *tcs, const char *where, struct rerr *err)
{
	char p[224];
	if (!json_is_array(tcs)) {
		snprintf(p, sizeof(p), "%.150s.tool_calls", where);
		return bad_type(err, p, "an array", tcs);
	}
	size_t i;
	const json_t *tc;
	json_array_foreach(tcs, i, tc)
	{
		snprintf(p, sizeof(p), "%.150s.tool_calls[%zu]", where, i);
		if (!json_is_object(tc))
			return bad_type(err, p, "an object", tc);
		if (!json_is_string(json_object_get(tc, "id")))
			return rerr_invalid(err, p, "Missing required parameter: '%s.id'.", p);
		const char *type = json_string_value(json_object_get(tc, "type"));
		if (type && strcmp(type, "function") != 0 && strcmp(type, "custom") != 0)
			return rerr_invalid(err, p, "Invalid value for '%s.type': '%s'.", p, type);
		const json_t *fn = json_object_get(tc, "function");
		if (!type || strcmp(type, "function") == 0) {
			if (!json_is_object(fn) || !json_is_string(json_object_get(fn, "name")))
				return rerr_invalid(err, p, "'%s.function.name' must be a string.", p);
			const json_t *args = json_object_get(fn, "arguments");
			if (!json_is_string(args))
				return rerr_invalid(err, p, "'%s.function.arguments' must be a string.", p);
		}
	}
	return 0;
}

static int check_message(const json_t *m, size_t idx, struct rerr *err)
{
	char where[64];
	char p[224];
	snprintf(where, sizeof(where), "messages[%zu]", idx);
	if (!json_is_object(m))
		return bad_type(err, where, "an object", m);
	const json_t *rolev = json_object_get(m, "role");
	snprintf(p, sizeof(p), "%s.role", where);
	if (!rolev)
		return rerr_invalid(err, p, "Missing required parameter: '%s'.", p);
	if (!json_is_string(rolev))
		return bad_type(err, p, "a string", rolev);
	const char *role = json_string_value(rolev);
	const json_t *content = jsonx_opt(m, "content");
	snprintf(p, sizeof(p), "%s.content", where);
	const json_t *name = jsonx_opt(m, "name");
	if (name && !json_is_string(name)) {
		snprintf(p, sizeof(p), "%s.name", where);
		return bad_type(err, p, "a string", name);
	}
	if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0 ||
	    strcmp(role, "tool") == 0) {
		if (!content)
			return rerr_invalid(err, p, "Missing required parameter: '%s'.", p);
		if (json_is_array(content)) {
			if (check_parts(content, p, PARTS_TEXT, err) < 0)
				return -1;
		} else if (!json_is_string(content)) {
			return bad_type(err, p, "a string or an array of text parts", content);
		}
		if (strcmp(role, "tool") == 0) {
			const json_t *tcid = json_object_get(m, "tool_call_id");
			snprintf(p, sizeof(p), "%s.tool_call_id", where);
			if (!json_is_string(tcid))
				return rerr_invalid(err, p, "Missing required parameter: '%s'.", p);
		}
		return 0;
	}
	if (strcmp(role, "user") == 0) {
		if (!content)
			return rerr_invalid(err, p, "Missing required parameter: '%s'.", p);
		if (json_is_array(content))
			return check_parts(content, p, PARTS_USER, err);
		if (!json_is_string(content))
			return bad_type(err, p, "a string or an array of content parts", content);
		return 0;
	}
	if (strcmp(role, "assistant") == 0) {
		const json_t *tcs = jsonx_opt(m, "tool_calls");
		if (tcs && check_tool_calls(tcs, where, err) < 0)
			return -1;
		if (content) {
			if (json_is_array(content))
				return check_parts(content, p, PARTS_ASSISTANT, err);
			if (!json_is_string(content))
				return bad_type(err, p, "a string, an array of parts or null", content);
		} else if (!tcs && !jsonx_opt(m, "function_call") && !jsonx_opt(m, "refusal") && !jsonx_opt(m, "audio")) {
			return rerr_invalid(err, p,
					    "Missing required parameter: '%s' (an assistant message needs content or tool_calls).",
					    p);
		}
		return 0;
	}
	if (strcmp(role, "function") == 0) {
		if (!json_is_string(json_object_get(m, "name"))) {
			snprintf(p, sizeof(p), "%s.name", where);
			return rerr_invalid(err, p, "Missing required parameter: '%s'.", p);
		}
		return 0;
	}
	snprintf(p, sizeof(p), "%s.role", where);
	return rerr_invalid(err, p,
			    "Invalid value for '%s': '%s'. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool' and 'function'.",
			    p, role);
}

int chatreq_valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

static int check_tools(const json_t *body, struct rerr *err)
{
	const json_t *tools = jsonx_opt(body, "tools");
	char p[96];
	if (tools) {
		if (!json_is_array(tools))
			return bad_type(err, "tools", "an array", tools);
		size_t i;
		const json_t *t;
		json_array_foreach(tools, i, t)
		{
			snprintf(p, sizeof(p), "tools[%zu]", i);
			if (!json_is_object(t))
				return bad_type(err, p, "an object", t);
			const char *type = json_string_value(json_object_get(t, "type"));
			if (!type)
				return rerr_invalid(err, p, "Missing required parameter: '%s.type'.", p);
			if (strcmp(type, "custom") == 0)
				continue;
			if (strcmp(type, "function") != 0)
				return rerr_invalid(err, p, "Invalid value for '%s.type': '%s'.", p, type);
			const json_t *fn = json_object_get(t, "function");
			if (!json_is_object(fn))
				return rerr_invalid(err, p, "Missing required parameter: '%s.function'.", p);
			const char *fname = json_string_value(json_object_get(fn, "name"));
			if (!fname || !chatreq_valid_name(fname))
				return rerr_invalid(err, p,
						    "Invalid '%s.function.name': must match ^[a-zA-Z0-9_-]{1,64}$.",
						    p);
			const json_t *params = jsonx_opt(fn, "parameters");
			if (params && !json_is_object(params))
				return rerr_invalid(err, p, "'%s.function.parameters' must be an object.", p);
		}
	}
	const json_t *tc = jsonx_opt(body, "tool_choice");
	if (tc) {
		if (json_is_string(tc)) {
			const char *s = json_string_value(tc);
			if (strcmp(s, "none") != 0 && strcmp(s, "auto") != 0 && strcmp(s, "required") != 0)
				return rerr_invalid(err, "tool_choice",
						    "Invalid value for 'tool_choice': '%s'. Supported values are: 'none', 'auto' and 'required'.",
						    s);
		} else if (json_is_object(tc)) {
			if (!json_is_string(json_object_get(tc, "type")))
				return rerr_invalid(err, "tool_choice",
						    "Missing required parameter: 'tool_choice.type'.");
		} else {
			return bad_type(err, "tool_choice", "a string or an object", tc);
		}
	}
	return 0;
}

static int check_response_format(const json_t *body, struct rerr *err)
{
	const json_t *rf = jsonx_opt(body, "response_format");
	if (!rf)
		return 0;
	if (!json_is_object(rf))
		return bad_type(err, "response_format", "an object", rf);
	const char *type = json_string_value(json_object_get(rf, "type"));
	if (!type)
		return rerr_invalid(err, "response_format",
				    "Missing required parameter: 'response_format.type'.");
	if (strcmp(type, "json_schema") == 0) {
		const json_t *js = json_object_get(rf, "json_schema");
		if (!json_is_object(js) || !json_is_string(json_object_get(js, "name")))
			return rerr_invalid(err, "response_format",
					    "'response_format.json_schema' needs a string 'name'.");
		const json_t *schema = jsonx_opt(js, "schema");
		if (schema && !json_is_object(schema))
			return rerr_invalid(err, "response_format",
					    "'response_format.json_schema.schema' must be an object.");
	} else if (strcmp(type, "text") != 0 && strcmp(type, "json_object") != 0) {
		return rerr_invalid(err, "response_format",
				    "Invalid value for 'response_format.type': '%s'. Supported values are: 'text', 'json_object' and 'json_schema'.",
				    type);
	}
	return 0;
}

static int check_stop(const json_t *body, struct rerr *err)
{
	const json_t *stop = jsonx_opt(body, "stop");
	if (!stop || json_is_string(stop))
		return 0;
	if (!json_is_array(stop))
		return bad_type(err, "stop", "a string or an array of strings", stop);
	if (json_array_size(stop) > 4)
		return rerr_invalid(err, "stop", "'stop' accepts at most 4 sequences.");
	size_t i;
	const json_t *s;
	json_array_foreach(stop, i, s)
	{
		if (!json_is_string(s))
			return bad_type(err, "stop", "an array of strings", stop);
	}
	return 0;
}

int chatreq_validate(const json_t *body, struct chatreq *out, struct rerr *err)
{
	memset(out, 0, sizeof(*out));
	if (!json_is_object(body))
		return rerr_invalid(err, NULL, "The request body must be a JSON object.");
	const json_t *model = json_object_get(body, "model");
	if (!model || json_is_null(model))
		return rerr_invalid(err, "model", "You must provide a model parameter.");
	if (!json_is_string(model))
		return bad_type(err, "model", "a string", model);
	if (json_string_length(model) == 0)
		return rerr_invalid(err, "model", "The model parameter must not be empty.");
	if (json_string_length(model) > CHATREQ_MAX_NAME_BYTES)
		return rerr_invalid(err, "model",
				    "Invalid 'model': %zu bytes long; a model id has at most %d bytes.",
				    json_string_length(model), CHATREQ_MAX_NAME_BYTES);
	const json_t *msgs = json_object_get(body, "messages");
	if (!msgs || json_is_null(msgs))
		return rerr_invalid(err, "messages", "Missing required parameter: 'messages'.");
	if (!json_is_array(msgs))
		return bad_type(err, "messages", "an array", msgs);
	if (json_array_size(msgs) == 0)
		return rerr_invalid(err, "messages",
				    "Invalid 'messages': empty array. Expected an array with minimum length 1.");
	size_t i;
	const json_t *m;
	json_array_foreach(msgs, i, m)
	{
		if (check_message(m, i, err) < 0)
			return -1;
	}
	if (check_kind(body, "stream", JSON_TRUE, "a boolean", err) < 0 ||
	    check_kind(body, "stream_options", JSON_OBJECT, "an object", err) < 0 ||
	    check_number(body, "temperature", 0, 2, err) < 0 ||
	    check_number(body, "top_p", 0, 1, err) < 0 ||
	    check_int(body, "n", 1, 128, err) < 0 ||
	    check_int(body, "max_tokens", 1, 100000000, err) < 0 ||
	    check_int(body, "max_completion_tokens", 1, 100000000, err) < 0 ||
	    check_number(body, "presence_penalty", -2, 2, err) < 0 ||
	    check_number(body, "frequency_penalty", -2, 2, err) < 0 ||
	    check_kind(body, "logprobs", JSON_TRUE, "a boolean", err) < 0 ||
	    check_int(body, "top_logprobs", 0, 20, err) < 0 ||
	    check_kind(body, "seed", JSON_INTEGER, "an integer", err) < 0 ||
	    check_kind(body, "user", JSON_STRING, "a string", err) < 0 ||
	    check_kind(body, "logit_bias", JSON_OBJECT, "an object", err) < 0 ||
	    check_kind(body, "metadata", JSON_OBJECT, "an object", err) < 0 ||
	    check_kind(body, "parallel_tool_calls", JSON_TRUE, "a boolean", err) < 0 ||
	    check_kind(body, "reasoning_effort", JSON_STRING, "a string", err) < 0 ||
	    check_stop(body, err) < 0 || check_tools(body, err) < 0 ||
	    check_response_format(body, err) < 0)
		return -1;
	out->model = json_string_value(model);
	out->stream = json_is_true(json_object_get(body, "stream"));
	const json_t *so = jsonx_opt(body, "stream_options");
	if (so) {
		if (!out->stream)
			return rerr_invalid(err, "stream_options",
					    "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
		const json_t *iu = jsonx_opt(so, "include_usage");
		if (iu && !json_is_boolean(iu))
			return bad_type(err, "stream_options.include_usage", "a boolean", iu);
		out->include_usage = json_is_true(iu);
	}
	const json_t *md = jsonx_opt(body, "metadata");
	const json_t *task = md ? json_object_get(md, "task_type") : NULL;
	if (json_is_string(task) && json_string_length(task) > CHATREQ_MAX_NAME_BYTES)
		return rerr_invalid(err, "metadata.task_type",
				    "Invalid 'metadata.task_type': %zu bytes long; a task type has at most %d bytes.",
				    json_string_length(task), CHATREQ_MAX_NAME_BYTES);
	out->task = json_string_value(task);
	return 0;
}

int chatreq_load(const char *data, size_t len, const char *empty, json_t **out, struct rerr *err)
{
	*out = NULL;
	if (len == 0)
		return rerr_invalid(err, NULL, "%s", empty);
	json_error_t jerr;
	unsigned long refused = jsonx_refusals();
	json_t *j = jsonx_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j && memgauge_refused())
		return rerr_server_busy(err, memgauge_cap() >> 20);
	if (!j && jsonx_refusals() != refused)
		return rerr_set(err, 413, "invalid_request_error", "request_too_large", NULL,
				"The JSON body of your request is too complex: holding it would take more "
				"than %zu MiB of memory. Send fewer values.",
				jsonx_parse_ceiling(len) >> 20);
	if (!j)
		return rerr_invalid(err, NULL,
				    "We could not parse the JSON body of your request: %s (line %d, column %d).",
				    jerr.text, jerr.line, jerr.column);
	*out = j;
	return 0;
}

int chatreq_parse(const char *data, size_t len, json_t **body, struct chatreq *out,
		  struct rerr *err)
{
	*body = NULL;
	json_t *j;
	if (chatreq_load(data, len, "The request body is empty; send a JSON object with 'model' and "
			 "'messages'.", &j, err) < 0)
		return -1;
	if (chatreq_validate(j, out, err) < 0) {
		json_decref(j);
		return -1;
	}
	*body = j;
	return 0;
}

unsigned chatreq_needs(const json_t *body)
{
	unsigned needs = 0;
	const json_t *tools = json_object_get(body, "tools");
	const json_t *fns = json_object_get(body, "functions");
	if (json_array_size(tools) > 0 || json_array_size(fns) > 0)
		needs |= CAP_TOOLS;
	size_t i, k;
	const json_t *m, *part;
	json_array_foreach(json_object_get(body, "messages"), i, m)
	{
		json_array_foreach(json_object_get(m, "content"), k, part)
		{
			const char *type = json_string_value(json_object_get(part, "type"));
			if (type && strcmp(type, "image_url") == 0)
				needs |= CAP_IMAGES;
		}
	}
	const json_t *rf = json_object_get(body, "response_format");
	const char *type = json_string_value(json_object_get(rf, "type"));
	if (type && strcmp(type, "json_object") == 0)
		needs |= CAP_JSON_OBJECT;
	if (type && strcmp(type, "json_schema") == 0)
		needs |= json_is_true(json_object_get(json_object_get(rf, "json_schema"), "strict"))
				 ? CAP_JSON_SCHEMA : NEED_JSON_LOOSE;
	return needs;
}

unsigned chatreq_missing(unsigned needs, unsigned caps)
{
	unsigned json = CAP_JSON_OBJECT | CAP_JSON_SCHEMA;
	unsigned missing = needs & ~caps & (CAP_TOOLS | CAP_IMAGES | CAP_JSON_SCHEMA);
	if ((needs & (CAP_JSON_OBJECT | NEED_JSON_LOOSE)) && !(caps & json))
		missing |= needs & (CAP_JSON_OBJECT | NEED_JSON_LOOSE);
	return missing;
}

const char *chatreq_need_param(unsigned missing, const char **what)
{
	if (missing & CAP_TOOLS) {
		*what = "tools (function calling)";
		return "tools";
	}
	if (missing & CAP_IMAGES) {
		*what = "image input (image_url content parts)";
		return "messages";
	}
	if (missing & CAP_JSON_SCHEMA) {
		*what = "response_format json_schema with strict: true (structured outputs)";
		return "response_format";
	}
	*what = missing & CAP_JSON_OBJECT ? "response_format json_object (JSON mode)"
					  : "response_format json_schema (structured outputs)";
	return "response_format";
}
