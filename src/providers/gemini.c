/* gemini.c - the Google Gemini adapter: Chat Completions <-> generateContent (API v1beta).
 *
 * A request becomes {contents, systemInstruction, tools, toolConfig, generationConfig} posted to
 * {base}/models/{model}:generateContent, or :streamGenerateContent?alt=sse for a stream, with the
 * key in the x-goog-api-key header (never in the URL, where it would reach logs). System and
 * developer messages form systemInstruction; user, assistant and tool messages become "user" and
 * "model" contents, consecutive contents of one role merged into one; a tool result is a
 * functionResponse part named after the call it answers (looked up in the preceding assistant
 * message). Gemini's opaque thoughtSignature and its own function call id ride on each tool call
 * as tool_calls[i].extra_content.google and are put back on the functionCall part they came with.
 * Every client field is translated, refused, or dropped and named (provider.h).
 *
 * Replies map candidates to choices; thought parts become the reasoning_content extension;
 * finish reasons follow provider-protocols.md 10.1, the raw value kept in provider_finish_reason
 * when the mapping loses it. A stream is a small state machine per candidate: a role chunk once,
 * text and thought deltas, one chunk per (always whole) function call, a finish chunk. Gemini
 * sends no end marker, so a stream is complete only when every candidate it started has a
 * finishReason, or the prompt was blocked. Usage (10.2): prompt = promptTokenCount +
 * toolUsePromptTokenCount, completion = candidatesTokenCount + thoughtsTokenCount, total = prompt +
 * completion; a stream keeps the last usageMetadata it saw.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../jsonx.h"
#include "../util.h"
#include "provider.h"

/* Gemini's limit on candidateCount. */
#define GM_MAX_CANDIDATES 8
/* Candidate indexes a stream may use (its state is a fixed array). */
#define GM_STREAM_SLOTS 64
/* A token counter above this is read as this, so that sums cannot overflow. */
#define GM_COUNT_MAX 1000000000000LL
/* Longest Retry-After taken from a RetryInfo detail, in seconds. */
#define GM_RETRY_MAX 86400

/* ---- request: messages -> contents ---- */

struct gm_req {
	const struct xlate_ctx *x;
	struct buf *dropped;
	struct rerr *err;
	json_t *contents;      /* [Content] */
	json_t *system;        /* [Part] of systemInstruction */
};

static json_t *text_part(const char *text)
{
	json_t *p = json_object();
	json_object_set_new(p, "text", json_string(text));
	return p;
}

static json_t *blob_part(const char *field, const char *mime_key, const char *mime,
			 const char *data_key, const char *data)
{
	json_t *blob = json_object();
	json_object_set_new(blob, mime_key, json_string(mime));
	json_object_set_new(blob, data_key, json_string(data));
	json_t *p = json_object();
	json_object_set_new(p, field, blob);
	return p;
}

/* Appends a content, merged into the previous one when the role is the same; parts is stolen.
 * A content without parts is not sent (Gemini rejects it). */
static void add_content(struct gm_req *g, const char *role, json_t *parts)
{
	if (json_array_size(parts) == 0) {
		json_decref(parts);
		return;
	}
	size_t n = json_array_size(g->contents);
	json_t *last = n ? json_array_get(g->contents, n - 1) : NULL;
	if (last && strcmp(json_str(last, "role"), role) == 0) {
		json_array_extend(json_object_get(last, "parts"), parts);
		json_decref(parts);
		return;
	}
	json_t *c = json_object();
	json_object_set_new(c, "role", json_string(role));
	json_object_set_new(c, "parts", parts);
	json_array_append_new(g->contents, c);
}

/* MIME type of an image URL from the extension of its path; JPEG when unknown. */
static const char *image_mime_from_url(const char *url)
{
	static const struct {
		const char *ext, *mime;
	} table[] = { { "jpg", "image/jpeg" }, { "jpeg", "image/jpeg" }, { "png", "image/png" },
		      { "gif", "image/gif" },  { "webp", "image/webp" } };
	const char *host = strstr(url, "://");
	size_t end = strcspn(url, "?#");
	const char *path = host ? strchr(host + 3, '/') : NULL;
	if (!path || (size_t)(path - url) >= end)
		return "image/jpeg";
	const char *dot = NULL;
	for (const char *p = path; p < url + end; p++) {
		if (*p == '/')
			dot = NULL;
		else if (*p == '.')
			dot = p;
	}
	if (!dot)
		return "image/jpeg";
	size_t n = (size_t)(url + end - dot - 1);
	for (size_t k = 0; k < ARRAY_SIZE(table); k++) {
		if (strlen(table[k].ext) == n && strncasecmp(dot + 1, table[k].ext, n) == 0)
			return table[k].mime;
	}
	return "image/jpeg";
}

static int image_part(struct gm_req *g, const json_t *iu, const char *where, json_t *parts)
{
	const char *url = json_str(iu, "url");
	char param[160];
	if (!url) {
		snprintf(param, sizeof(param), "%s.image_url.url", where);
		return rerr_invalid(g->err, param, "Missing required parameter: '%s'.", param);
	}
	const char *detail = json_str(iu, "detail");
	if (detail && strcmp(detail, "auto") != 0 &&
	    param_unsupported(g->x, g->dropped, "messages[].content[].image_url.detail", g->err) < 0)
		return -1;
	if (str_has_prefix(url, "data:")) {
		char mime[128];
		const char *data;
		if (data_url_split(url, mime, sizeof(mime), &data) < 0) {
			snprintf(param, sizeof(param), "%s.image_url.url", where);
			return rerr_invalid(g->err, param,
					    "Invalid '%s': a data URL must have the form data:<mime type>;base64,<data>.",
					    param);
		}
		json_array_append_new(parts, blob_part("inlineData", "mimeType", mime, "data", data));
		return 0;
	}
	if (str_has_prefix(url, "https://") || str_has_prefix(url, "http://")) {
		json_array_append_new(parts, blob_part("fileData", "mimeType", image_mime_from_url(url),
						       "fileUri", url));
		return 0;
	}
	snprintf(param, sizeof(param), "%s.image_url.url", where);
	return rerr_invalid(g->err, param,
			    "Invalid '%s': expected an http(s) URL or a base64 data URL.", param);
}

static int audio_part(struct gm_req *g, const json_t *ia, const char *where, json_t *parts)
{
	const char *format = json_str(ia, "format");
	const char *data = json_str(ia, "data");
	const char *mime = !format		     ? NULL
			   : strcmp(format, "wav") == 0 ? "audio/wav"
			   : strcmp(format, "mp3") == 0 ? "audio/mp3"
							: NULL;
	if (!mime || !data) {
		char param[160];
		snprintf(param, sizeof(param), "%s.input_audio.format", where);
		return rerr_invalid(g->err, param,
				    "Invalid value for '%s': '%s'. Supported values are: 'wav' and 'mp3'.",
				    param, format ? format : "(none)");
	}
	json_array_append_new(parts, blob_part("inlineData", "mimeType", mime, "data", data));
	return 0;
}

static int file_part(struct gm_req *g, const json_t *f, const char *where, json_t *parts)
{
	char param[160];
	const json_t *id = json_object_get(f, "file_id");
	if (id && !json_is_null(id)) {
		snprintf(param, sizeof(param), "%s.file.file_id", where);
		return param_refused(g->x, param, "file_id references (files stored at OpenAI)",
				     g->err);
	}
	const char *fd = json_str(f, "file_data");
	char mime[128];
	const char *data;
	snprintf(param, sizeof(param), "%s.file.file_data", where);
	if (!fd || data_url_split(fd, mime, sizeof(mime), &data) < 0)
		return rerr_invalid(g->err, param,
				    "Invalid '%s': expected a base64 data URL (data:<mime type>;base64,<data>).",
				    param);
	json_array_append_new(parts, blob_part("inlineData", "mimeType", mime, "data", data));
	return 0;
}

static int user_parts(struct gm_req *g, const json_t *content, size_t mi, json_t *parts)
{
	if (json_is_string(content)) {
		json_array_append_new(parts, text_part(json_string_value(content)));
		return 0;
	}
	size_t k;
	const json_t *p;
	json_array_foreach(content, k, p)
	{
		char where[64];
		snprintf(where, sizeof(where), "messages[%zu].content[%zu]", mi, k);
		const char *type = json_str(p, "type");
		int rc = 0;
		if (!type)
			rc = rerr_invalid(g->err, where, "Missing required parameter: '%s.type'.", where);
		else if (strcmp(type, "text") == 0)
			json_array_append_new(parts, text_part(json_str(p, "text")));
		else if (strcmp(type, "image_url") == 0)
			rc = image_part(g, json_object_get(p, "image_url"), where, parts);
		else if (strcmp(type, "input_audio") == 0)
			rc = audio_part(g, json_object_get(p, "input_audio"), where, parts);
		else if (strcmp(type, "file") == 0)
			rc = file_part(g, json_object_get(p, "file"), where, parts);
		else
			rc = rerr_invalid(g->err, where, "Invalid value for '%s.type': '%s'.", where, type);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static json_t *function_call_part(const char *name, const char *arguments, const json_t *google)
{
	json_t *fc = json_object();
	json_object_set_new(fc, "name", json_string(name ? name : ""));
	json_object_set_new(fc, "args", tool_arguments_object(arguments));
	const char *id = json_str(google, "function_call_id");
	if (id)
		json_object_set_new(fc, "id", json_string(id));
	json_t *part = json_object();
	json_object_set_new(part, "functionCall", fc);
	const char *sig = json_str(google, "thought_signature");
	if (sig)
		json_object_set_new(part, "thoughtSignature", json_string(sig));
	return part;
}

/* An assistant message: its text, then one functionCall part per tool call carrying the
 * signature and id Gemini gave it. */
static int model_parts(struct gm_req *g, const json_t *m, size_t mi, json_t *parts)
{
	char *text = content_text(json_object_get(m, "content"));
	const char *refusal = json_str(m, "refusal");
	if (!text[0] && refusal) {
		free(text);
		text = xstrdup(refusal);
	}
	if (text[0])
		json_array_append_new(parts, text_part(text));
	free(text);
	size_t k;
	const json_t *tc;
	json_array_foreach(json_object_get(m, "tool_calls"), k, tc)
	{
		const char *type = json_str(tc, "type");
		if (type && strcmp(type, "function") != 0) {
			char param[96];
			snprintf(param, sizeof(param), "messages[%zu].tool_calls[%zu].type", mi, k);
			return param_refused(g->x, param, "custom tool calls", g->err);
		}
		const json_t *fn = json_object_get(tc, "function");
		const json_t *google = json_object_get(json_object_get(tc, "extra_content"), "google");
		json_array_append_new(parts, function_call_part(json_str(fn, "name"),
								json_str(fn, "arguments"), google));
	}
	/* The deprecated single function_call of older clients. */
	const json_t *fcall = json_object_get(m, "function_call");
	if (json_is_string(json_object_get(fcall, "name")))
		json_array_append_new(parts, function_call_part(json_str(fcall, "name"),
								json_str(fcall, "arguments"), NULL));
	const json_t *audio = json_object_get(m, "audio");
	if (audio && !json_is_null(audio) &&
	    param_unsupported(g->x, g->dropped, "messages[].audio", g->err) < 0)
		return -1;
	return 0;
}

/* A tool result as the object functionResponse.response must be. */
static json_t *tool_response(const json_t *content)
{
	char *text = content_text(content);
	json_error_t jerr;
	json_t *v = json_loads(text, 0, &jerr);
	if (!json_is_object(v)) {
		json_decref(v);
		v = json_object();
		json_object_set_new(v, "result", json_string(text));
	}
	free(text);
	return v;
}

static json_t *function_response_part(const char *name, const char *id, const json_t *content)
{
	json_t *fr = json_object();
	json_object_set_new(fr, "name", json_string(name));
	if (id)
		json_object_set_new(fr, "id", json_string(id));
	json_object_set_new(fr, "response", tool_response(content));
	json_t *part = json_object();
	json_object_set_new(part, "functionResponse", fr);
	return part;
}

/* A tool message answers a call of the preceding assistant message (calls: its tool_calls). */
static int tool_part(struct gm_req *g, const json_t *m, size_t mi, const json_t *calls,
		     json_t *parts)
{
	const char *id = json_str(m, "tool_call_id");
	size_t k;
	const json_t *tc, *call = NULL;
	json_array_foreach(calls, k, tc)
	{
		const char *cid = json_str(tc, "id");
		if (cid && id && strcmp(cid, id) == 0) {
			call = tc;
			break;
		}
	}
	if (!call) {
		char param[64];
		snprintf(param, sizeof(param), "messages[%zu].tool_call_id", mi);
		return rerr_invalid(g->err, param,
				    "Invalid '%s': '%.100s' does not match a tool call of the preceding assistant message.",
				    param, id ? id : "");
	}
	const char *name = json_str(json_object_get(call, "function"), "name");
	const json_t *google = json_object_get(json_object_get(call, "extra_content"), "google");
	json_array_append_new(parts, function_response_part(name ? name : "",
							    json_str(google, "function_call_id"),
							    json_object_get(m, "content")));
	return 0;
}

static int convert_messages(struct gm_req *g, const json_t *messages)
{
	const json_t *calls = NULL;   /* tool_calls of the latest assistant message */
	size_t i;
	const json_t *m;
	json_array_foreach(messages, i, m)
	{
		const char *role = json_str(m, "role");
		if (!role)
			return rerr_invalid(g->err, "messages",
					    "Missing required parameter: 'messages[%zu].role'.", i);
		int is_function = strcmp(role, "function") == 0;
		if (!is_function && json_is_string(json_object_get(m, "name")) &&
		    param_unsupported(g->x, g->dropped, "messages[].name", g->err) < 0)
			return -1;
		json_t *parts = json_array();
		int rc = 0;
		const char *as = "user";
		if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
			char *text = content_text(json_object_get(m, "content"));
			if (text[0])
				json_array_append_new(g->system, text_part(text));
			free(text);
		} else if (strcmp(role, "user") == 0) {
			rc = user_parts(g, json_object_get(m, "content"), i, parts);
		} else if (strcmp(role, "assistant") == 0) {
			as = "model";
			rc = model_parts(g, m, i, parts);
			calls = json_object_get(m, "tool_calls");
		} else if (strcmp(role, "tool") == 0) {
			rc = tool_part(g, m, i, calls, parts);
		} else if (is_function) {
			json_t *fr = function_response_part(json_str(m, "name"), NULL,
							    json_object_get(m, "content"));
			json_array_append_new(parts, fr);
		} else {
			char param[64];
			snprintf(param, sizeof(param), "messages[%zu].role", i);
			rc = rerr_invalid(g->err, param, "Invalid value for '%s': '%s'.", param, role);
		}
		if (rc < 0) {
			json_decref(parts);
			return -1;
		}
		add_content(g, as, parts);
	}
	if (json_array_size(g->contents) == 0) {
		/* Only system messages: Gemini needs a turn, so they become the user's. */
		if (json_array_size(g->system) == 0)
			return rerr_invalid(g->err, "messages",
					    "Invalid 'messages': there is no text or content to send.");
		add_content(g, "user", json_copy(g->system));
		json_array_clear(g->system);
	}
	return 0;
}

/* ---- request: parameters ---- */

static int is_set(const json_t *v)
{
	return v && !json_is_null(v);
}

static int generation_config(struct gm_req *g, const json_t *req, json_t *gc)
{
	const struct xlate_ctx *x = g->x;
	const json_t *mct = json_object_get(req, "max_completion_tokens");
	const json_t *mt = json_object_get(req, "max_tokens");
	if (is_set(mct)) {
		json_object_set(gc, "maxOutputTokens", (json_t *)mct);
		if (is_set(mt) && !json_equal((json_t *)mt, (json_t *)mct) &&
		    param_unsupported(x, g->dropped, "max_tokens", g->err) < 0)
			return -1;
	} else if (is_set(mt)) {
		json_object_set(gc, "maxOutputTokens", (json_t *)mt);
	}
	static const struct {
		const char *from, *to;
	} same[] = { { "temperature", "temperature" }, { "top_p", "topP" }, { "seed", "seed" } };
	for (size_t i = 0; i < ARRAY_SIZE(same); i++) {
		const json_t *v = json_object_get(req, same[i].from);
		if (is_set(v))
			json_object_set(gc, same[i].to, (json_t *)v);
	}
	/* Penalties at their default are left out: not every Gemini model accepts them. */
	static const struct {
		const char *from, *to;
	} penalties[] = { { "presence_penalty", "presencePenalty" },
			  { "frequency_penalty", "frequencyPenalty" } };
	for (size_t i = 0; i < ARRAY_SIZE(penalties); i++) {
		const json_t *v = json_object_get(req, penalties[i].from);
		if (json_is_number(v) && json_number_value(v) != 0)
			json_object_set(gc, penalties[i].to, (json_t *)v);
	}
	const json_t *stop = json_object_get(req, "stop");
	if (json_is_string(stop)) {
		json_t *list = json_array();
		json_array_append(list, (json_t *)stop);
		json_object_set_new(gc, "stopSequences", list);
	} else if (json_is_array(stop) && json_array_size(stop) > 0) {
		json_object_set(gc, "stopSequences", (json_t *)stop);
	}
	const json_t *n = json_object_get(req, "n");
	if (json_is_integer(n) && json_integer_value(n) > GM_MAX_CANDIDATES)
		return rerr_set(g->err, 400, "invalid_request_error", "unsupported_parameter", "n",
				"Unsupported value: 'n' above %d is not supported by model %s (provider %s).",
				GM_MAX_CANDIDATES, x->public_model, x->prov->name);
	if (json_is_integer(n) && json_integer_value(n) > 1)
		json_object_set(gc, "candidateCount", (json_t *)n);
	const json_t *tl = json_object_get(req, "top_logprobs");
	if (json_is_true(json_object_get(req, "logprobs"))) {
		json_object_set_new(gc, "responseLogprobs", json_true());
		if (json_is_integer(tl) && json_integer_value(tl) > 0)
			json_object_set(gc, "logprobs", (json_t *)tl);
	} else if (json_is_integer(tl) && json_integer_value(tl) > 0) {
		return rerr_invalid(g->err, "top_logprobs",
				    "Invalid 'top_logprobs': it requires 'logprobs' to be true.");
	}
	const json_t *rf = json_object_get(req, "response_format");
	const char *rft = json_str(rf, "type");
	if (rft && strcmp(rft, "json_object") == 0) {
		json_object_set_new(gc, "responseMimeType", json_string("application/json"));
	} else if (rft && strcmp(rft, "json_schema") == 0) {
		json_object_set_new(gc, "responseMimeType", json_string("application/json"));
		const json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
		if (json_is_object(schema))
			json_object_set(gc, "responseJsonSchema", (json_t *)schema);
	}
	const char *effort = json_str(req, "reasoning_effort");
	if (effort) {
		long budget = reasoning_effort_budget(effort);
		if (budget < 0)
			return rerr_invalid(g->err, "reasoning_effort",
					    "Invalid value for 'reasoning_effort': '%s'. Supported values are: 'none', 'minimal', 'low', 'medium', 'high', 'xhigh' and 'max'.",
					    effort);
		if (str_has_prefix(x->upstream_model, "gemini-2.0")) {
			/* Not a thinking model: "none" is what it does anyway. */
			if (budget > 0 &&
			    param_unsupported(x, g->dropped, "reasoning_effort", g->err) < 0)
				return -1;
		} else if (budget == 0 && str_has_prefix(x->upstream_model, "gemini-2.5-pro")) {
			/* 2.5 Pro always thinks (its smallest budget is 128 tokens): "none" cannot be
			 * honoured, and a budget of 0 would be refused. */
			if (param_unsupported(x, g->dropped, "reasoning_effort", g->err) < 0)
				return -1;
		} else {
			json_t *tcfg = json_object();
			json_object_set_new(tcfg, "thinkingBudget", json_integer(budget));
			if (budget > 0)
				json_object_set_new(tcfg, "includeThoughts", json_true());
			json_object_set_new(gc, "thinkingConfig", tcfg);
		}
	}
	return 0;
}

/* One FunctionDeclaration from an OpenAI function definition ({name, description?,
 * parameters?, strict?}). */
static int declaration(struct gm_req *g, const json_t *fn, const char *where, json_t *decls)
{
	const char *name = json_str(fn, "name");
	if (!name || !name[0])
		return rerr_invalid(g->err, where, "Missing required parameter: '%s.name'.", where);
	const json_t *params = json_object_get(fn, "parameters");
	if (is_set(params) && !json_is_object(params))
		return rerr_invalid(g->err, where, "'%s.parameters' must be an object.", where);
	if (json_is_true(json_object_get(fn, "strict")) &&
	    param_unsupported(g->x, g->dropped, "tools[].function.strict", g->err) < 0)
		return -1;
	const char *desc = json_str(fn, "description");
	json_t *d = json_object();
	json_object_set_new(d, "name", json_string(name));
	/* The proto marks description as required. */
	json_object_set_new(d, "description", json_string(desc && desc[0] ? desc : name));
	if (json_is_object(params))
		json_object_set(d, "parametersJsonSchema", (json_t *)params);
	json_array_append_new(decls, d);
	return 0;
}

static int declared(const json_t *decls, const char *name)
{
	size_t i;
	const json_t *d;
	json_array_foreach(decls, i, d)
	{
		if (strcmp(json_str(d, "name"), name) == 0)
			return 1;
	}
	return 0;
}

static json_t *calling_config(const char *mode, json_t *allowed)
{
	json_t *fcc = json_object();
	json_object_set_new(fcc, "mode", json_string(mode));
	if (allowed)
		json_object_set_new(fcc, "allowedFunctionNames", allowed);
	json_t *tc = json_object();
	json_object_set_new(tc, "functionCallingConfig", fcc);
	return tc;
}

/* tool_choice (or the deprecated function_call) -> toolConfig; *decls may be narrowed. */
static int tool_config(struct gm_req *g, const json_t *choice, const char *param, json_t *decls,
		       json_t **out)
{
	*out = NULL;
	if (json_is_string(choice)) {
		const char *s = json_string_value(choice);
		const char *mode = strcmp(s, "none") == 0     ? "NONE"
				   : strcmp(s, "auto") == 0   ? "AUTO"
				   : strcmp(s, "required") == 0 ? "ANY"
								: NULL;
		if (!mode)
			return rerr_invalid(g->err, param, "Invalid value for '%s': '%s'.", param, s);
		if (strcmp(mode, "ANY") == 0 && json_array_size(decls) == 0)
			return rerr_invalid(g->err, param, "'%s' \"required\" needs tools.", param);
		*out = calling_config(mode, NULL);
		return 0;
	}
	const char *type = json_str(choice, "type");
	const char *name = NULL;
	if (!type && json_is_string(json_object_get(choice, "name"))) {
		name = json_str(choice, "name");   /* function_call {"name": ...} */
	} else if (type && strcmp(type, "function") == 0) {
		name = json_str(json_object_get(choice, "function"), "name");
		if (!name)
			return rerr_invalid(g->err, param, "Missing required parameter: '%s.function.name'.",
					    param);
	} else if (type && strcmp(type, "custom") == 0) {
		return param_refused(g->x, param, "custom tools", g->err);
	} else if (!type || strcmp(type, "allowed_tools") != 0) {
		return rerr_invalid(g->err, param, "Invalid value for '%s.type': '%s'.", param,
				    type ? type : "(none)");
	}
	if (name) {
		if (!declared(decls, name))
			return rerr_invalid(g->err, param, "Invalid '%s': function '%s' is not in tools.",
					    param, name);
		json_t *allowed = json_array();
		json_array_append_new(allowed, json_string(name));
		*out = calling_config("ANY", allowed);
		return 0;
	}
	const json_t *at = json_object_get(choice, "allowed_tools");
	const char *mode = json_str(at, "mode");
	if (!mode || (strcmp(mode, "auto") != 0 && strcmp(mode, "required") != 0))
		return rerr_invalid(g->err, param,
				    "Invalid '%s.allowed_tools.mode': expected 'auto' or 'required'.", param);
	json_t *allowed = json_array();
	size_t i;
	const json_t *t;
	json_array_foreach(json_object_get(at, "tools"), i, t)
	{
		const char *ttype = json_str(t, "type");
		const char *tname = json_str(json_object_get(t, "function"), "name");
		if (ttype && strcmp(ttype, "custom") == 0) {
			json_decref(allowed);
			return param_refused(g->x, param, "custom tools", g->err);
		}
		if (!tname || !declared(decls, tname)) {
			json_decref(allowed);
			return rerr_invalid(g->err, param,
					    "Invalid '%s.allowed_tools.tools[%zu]': not a function in tools.",
					    param, i);
		}
		json_array_append_new(allowed, json_string(tname));
	}
	if (json_array_size(allowed) == 0) {
		json_decref(allowed);
		return rerr_invalid(g->err, param, "Invalid '%s.allowed_tools.tools': empty.", param);
	}
	if (strcmp(mode, "required") == 0) {
		*out = calling_config("ANY", allowed);
		return 0;
	}
	/* allowedFunctionNames is only valid with ANY; "auto among these" is AUTO over just these
	 * declarations. */
	for (i = json_array_size(decls); i-- > 0;) {
		const char *dn = json_str(json_array_get(decls, i), "name");
		size_t k;
		const json_t *a;
		int keep = 0;
		json_array_foreach(allowed, k, a)
			keep |= strcmp(json_string_value(a), dn) == 0;
		if (!keep)
			json_array_remove(decls, i);
	}
	json_decref(allowed);
	*out = calling_config("AUTO", NULL);
	return 0;
}

static int build_tools(struct gm_req *g, const json_t *req, json_t *body)
{
	json_t *decls = json_array();
	json_t *tcfg = NULL;
	int rc = -1;
	size_t i;
	const json_t *t;
	char where[64];
	json_array_foreach(json_object_get(req, "tools"), i, t)
	{
		const char *type = json_str(t, "type");
		if (type && strcmp(type, "custom") == 0) {
			param_refused(g->x, "tools", "custom tools (tools[].type \"custom\")", g->err);
			goto out;
		}
		snprintf(where, sizeof(where), "tools[%zu].function", i);
		if (declaration(g, json_object_get(t, "function"), where, decls) < 0)
			goto out;
	}
	/* The deprecated functions list. */
	const json_t *functions = json_object_get(req, "functions");
	if (is_set(functions) && !json_is_array(functions)) {
		rerr_invalid(g->err, "functions", "Invalid type for 'functions': expected an array.");
		goto out;
	}
	json_array_foreach(functions, i, t)
	{
		snprintf(where, sizeof(where), "functions[%zu]", i);
		if (!json_is_object(t)) {
			rerr_invalid(g->err, where, "Invalid type for '%s': expected an object.", where);
			goto out;
		}
		if (declaration(g, t, where, decls) < 0)
			goto out;
	}
	const json_t *choice = json_object_get(req, "tool_choice");
	const char *param = "tool_choice";
	if (!is_set(choice)) {
		choice = json_object_get(req, "function_call");
		param = "function_call";
	}
	if (is_set(choice) && tool_config(g, choice, param, decls, &tcfg) < 0)
		goto out;
	if (json_array_size(decls) > 0) {
		json_t *tool = json_object();
		json_object_set(tool, "functionDeclarations", decls);
		json_t *tools = json_array();
		json_array_append_new(tools, tool);
		json_object_set_new(body, "tools", tools);
		if (tcfg) {
			json_object_set_new(body, "toolConfig", tcfg);
			tcfg = NULL;
		}
	}
	rc = 0;
out:
	json_decref(tcfg);
	json_decref(decls);
	return rc;
}

/* Fields with no Gemini equivalent: dropped (named unless at their default) or refused. */
static int drop_params(struct gm_req *g, json_t *req)
{
	const struct xlate_ctx *x = g->x;
	static const char *const hints[] = { "user",         "logit_bias",        "store",
					     "prompt_cache_key", "safety_identifier", "verbosity",
					     "prediction",   "web_search_options" };
	for (size_t i = 0; i < ARRAY_SIZE(hints); i++) {
		if (param_drop(x, req, hints[i], NAN, g->dropped, g->err) < 0)
			return -1;
	}
	/* Gemini may always call several functions at once: only false cannot be honoured. */
	if (json_is_false(json_object_get(req, "parallel_tool_calls")) &&
	    param_unsupported(x, g->dropped, "parallel_tool_calls", g->err) < 0)
		return -1;
	const json_t *tier = json_object_get(req, "service_tier");
	if (is_set(tier) &&
	    !(json_is_string(tier) && (strcmp(json_string_value(tier), "auto") == 0 ||
				       strcmp(json_string_value(tier), "default") == 0)) &&
	    param_unsupported(x, g->dropped, "service_tier", g->err) < 0)
		return -1;
	/* metadata.task_type is the router's own routing hint, not the provider's business. */
	const json_t *md = json_object_get(req, "metadata");
	if (json_is_object(md) &&
	    json_object_size(md) > (json_object_get(md, "task_type") ? 1u : 0u) &&
	    param_unsupported(x, g->dropped, "metadata", g->err) < 0)
		return -1;
	const json_t *audio = json_object_get(req, "audio");
	if (is_set(audio) && !json_is_false(audio))
		return param_refused(x, "audio", "audio output", g->err);
	const json_t *modalities = json_object_get(req, "modalities");
	if (is_set(modalities) && !json_is_array(modalities))
		return param_refused(x, "modalities", "output modalities other than text", g->err);
	size_t i;
	const json_t *mod;
	json_array_foreach(modalities, i, mod)
	{
		if (!json_is_string(mod) || strcmp(json_string_value(mod), "text") != 0)
			return param_refused(x, "modalities", "output modalities other than text",
					     g->err);
	}
	return 0;
}

/* The deployment's own lists (providers.gemini / the model's unsupported_params and
 * reject_params), applied to the working copy of the request before it is translated. */
static int config_params(struct gm_req *g, json_t *req)
{
	const struct xlate_ctx *x = g->x;
	for (size_t i = 0; i < x->prov->reject_params.n; i++) {
		const char *name = x->prov->reject_params.v[i];
		const json_t *v = json_object_get(req, name);
		if (is_set(v) && !json_is_false(v)) {
			char what[128];
			snprintf(what, sizeof(what), "'%.100s'", name);
			return param_refused(x, name, what, g->err);
		}
	}
	const struct strv *lists[] = { &x->prov->unsupported_params, &x->model->unsupported_params };
	for (size_t l = 0; l < ARRAY_SIZE(lists); l++) {
		for (size_t i = 0; i < lists[l]->n; i++) {
			if (param_drop(x, req, lists[l]->v[i], NAN, g->dropped, g->err) < 0)
				return -1;
		}
	}
	return 0;
}

static const char *const known_params[] = {
	"model",          "messages",          "stream",           "stream_options",
	"max_tokens",     "max_completion_tokens", "temperature",  "top_p",
	"stop",           "n",                 "seed",             "presence_penalty",
	"frequency_penalty", "logprobs",       "top_logprobs",     "response_format",
	"reasoning_effort", "tools",           "tool_choice",      "functions",
	"function_call",  "parallel_tool_calls", "user",           "metadata",
	"logit_bias",     "service_tier",      "store",            "prompt_cache_key",
	"safety_identifier", "verbosity",      "prediction",       "web_search_options",
	"audio",          "modalities",        NULL,
};

static int gemini_build(const struct xlate_ctx *x, const json_t *client, struct upstream_req *out,
			struct buf *dropped, struct rerr *err)
{
	json_t *req = json_copy((json_t *)client);
	json_t *body = json_object();
	struct gm_req g = { .x = x, .dropped = dropped, .err = err, .contents = json_array(),
			    .system = json_array() };
	int rc = -1;
	if (config_params(&g, req) < 0 || drop_params(&g, req) < 0 ||
	    params_unknown(x, req, known_params, dropped, err) < 0 ||
	    convert_messages(&g, json_object_get(req, "messages")) < 0)
		goto out;
	json_object_set(body, "contents", g.contents);
	if (json_array_size(g.system) > 0) {
		json_t *si = json_object();
		json_object_set(si, "parts", g.system);
		json_object_set_new(body, "systemInstruction", si);
	}
	if (build_tools(&g, req, body) < 0)
		goto out;
	json_t *gc = json_object();
	if (generation_config(&g, req, gc) < 0) {
		json_decref(gc);
		goto out;
	}
	if (json_object_size(gc) > 0)
		json_object_set_new(body, "generationConfig", gc);
	else
		json_decref(gc);

	struct buf b;
	buf_init(&b, BUF_UNLIMITED);
	json_to_buf(body, &b);
	out->body_len = b.len;
	out->body = buf_steal(&b);
	out->url = xasprintf("%s/models/%s:%s", x->prov->base_url, x->upstream_model,
			     x->stream ? "streamGenerateContent?alt=sse" : "generateContent");
	out->stream = x->stream;
	upstream_req_add_header(out, "x-goog-api-key: %s", x->prov->api_key ? x->prov->api_key : "");
	upstream_req_add_header(out, "Content-Type: application/json");
	upstream_req_add_header(out, "Accept: %s", x->stream ? "text/event-stream" : "application/json");
	for (size_t i = 0; i < x->prov->headers.n; i++)
		upstream_req_add_header(out, "%s", x->prov->headers.v[i]);
	rc = 0;
out:
	json_decref(g.contents);
	json_decref(g.system);
	json_decref(body);
	json_decref(req);
	return rc;
}

/* ---- errors ---- */

static long google_status_code(const char *status)
{
	static const struct {
		const char *name;
		long code;
	} table[] = {
		{ "INVALID_ARGUMENT", 400 },  { "FAILED_PRECONDITION", 400 }, { "OUT_OF_RANGE", 400 },
		{ "UNAUTHENTICATED", 401 },   { "PERMISSION_DENIED", 403 },   { "NOT_FOUND", 404 },
		{ "ABORTED", 409 },           { "ALREADY_EXISTS", 409 },      { "RESOURCE_EXHAUSTED", 429 },
		{ "CANCELLED", 499 },         { "INTERNAL", 500 },            { "UNKNOWN", 500 },
		{ "DATA_LOSS", 500 },         { "NOT_IMPLEMENTED", 501 },     { "UNAVAILABLE", 503 },
		{ "DEADLINE_EXCEEDED", 504 },
	};
	for (size_t i = 0; status && i < ARRAY_SIZE(table); i++) {
		if (strcmp(status, table[i].name) == 0)
			return table[i].code;
	}
	return 0;
}

/* A google.protobuf.Duration in JSON ("37s", "1.5s") as whole seconds, rounded up; 0 if
 * malformed. */
static long duration_seconds(const char *s)
{
	long secs = 0;
	int frac = 0;
	const char *p = s;
	if (!p || *p < '0' || *p > '9')
		return 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (secs < GM_RETRY_MAX)
			secs = secs * 10 + (*p - '0');
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return 0;
		for (; *p >= '0' && *p <= '9'; p++)
			frac |= *p != '0';
	}
	if (p[0] != 's' || p[1])
		return 0;
	secs += frac;
	return secs > GM_RETRY_MAX ? GM_RETRY_MAX : secs;
}

static long retry_info_seconds(const json_t *details)
{
	size_t i;
	const json_t *d;
	json_array_foreach(details, i, d)
	{
		const char *type = json_str(d, "@type");
		if (type && strstr(type, "google.rpc.RetryInfo"))
			return duration_seconds(json_str(d, "retryDelay"));
	}
	return 0;
}

static int has_reason(const json_t *details, const char *reason)
{
	size_t i;
	const json_t *d;
	json_array_foreach(details, i, d)
	{
		const char *r = json_str(d, "reason");
		if (r && strcmp(r, reason) == 0)
			return 1;
	}
	return 0;
}

/* A Google RPC error object {code, message, status, details} -> err. status is the HTTP status,
 * or 0 when the error came inside a 2xx reply or a stream (its own code then decides). */
static void google_error(const struct xlate_ctx *x, long status, const json_t *e, long retry_after,
			 struct rerr *err)
{
	const char *msg = json_str(e, "message");
	const json_t *code = json_object_get(e, "code");
	const json_t *details = json_object_get(e, "details");
	if (status < 400 || status > 599) {
		status = 0;
		if (json_is_integer(code) && json_integer_value(code) >= 400 &&
		    json_integer_value(code) <= 599)
			status = (long)json_integer_value(code);
		if (!status)
			status = google_status_code(json_str(e, "status"));
		if (!status)
			status = 502;
	}
	/* An invalid key is the router's own credential, whatever status Google gives it. */
	if (status == 400 && has_reason(details, "API_KEY_INVALID"))
		status = 401;
	if (retry_after <= 0)
		retry_after = retry_info_seconds(details);
	const char *ucode = msg && strstr(msg, "exceeds the maximum number of tokens")
				    ? "context_length_exceeded"
				    : NULL;
	map_upstream_status(x, status, msg ? msg : "error reported by the upstream", ucode, NULL,
			    retry_after, err);
}

/* The error object of a reply (also the first element of a JSON array, the shape of errors on
 * the non-SSE streaming endpoint), or NULL. */
static const json_t *error_object(const json_t *j)
{
	if (json_is_array(j))
		j = json_array_get(j, 0);
	const json_t *e = json_object_get(j, "error");
	return json_is_object(e) ? e : NULL;
}

static void gemini_map_error(const struct xlate_ctx *x, long status, const char *body, size_t len,
			     long retry_after, struct rerr *err)
{
	json_error_t jerr;
	json_t *j = json_loadb(body, len, 0, &jerr);
	const json_t *e = error_object(j);
	if (e)
		google_error(x, status, e, retry_after, err);
	else
		map_upstream_status(x, status, NULL, NULL, NULL, retry_after, err);
	json_decref(j);
}

/* ---- replies ---- */

/* 10.1; *lossy is set when the OpenAI value does not say what Gemini said. */
static const char *finish_reason_map(const char *raw, int has_calls, int *lossy)
{
	static const char *const filtered[] = { "SAFETY",          "PROHIBITED_CONTENT",
						"BLOCKLIST",       "SPII",
						"IMAGE_SAFETY",    "IMAGE_PROHIBITED_CONTENT",
						"RECITATION",      "IMAGE_RECITATION" };
	*lossy = 0;
	if (!raw || strcmp(raw, "STOP") == 0)
		return has_calls ? "tool_calls" : "stop";
	if (strcmp(raw, "MAX_TOKENS") == 0)
		return "length";
	*lossy = 1;
	for (size_t i = 0; i < ARRAY_SIZE(filtered); i++) {
		if (strcmp(raw, filtered[i]) == 0)
			return "content_filter";
	}
	return "stop";
}

static void set_finish(json_t *choice, const char *raw, int has_calls)
{
	int lossy;
	json_object_set_new(choice, "finish_reason",
			    json_string(finish_reason_map(raw, has_calls, &lossy)));
	if (lossy)
		json_object_set_new(choice, "provider_finish_reason", json_string(raw));
}

static int64_t token_count(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	double d;
	if (json_is_integer(v))
		d = (double)json_integer_value(v);
	else if (json_is_real(v))
		d = json_real_value(v);
	else
		return -1;
	if (!(d >= 0))
		return 0;
	return d > (double)GM_COUNT_MAX ? GM_COUNT_MAX : (int64_t)d;
}

static int64_t nonneg(int64_t v)
{
	return v < 0 ? 0 : v;
}

/* usageMetadata -> u (replacing what it held). */
static void usage_from_gemini(struct usage *u, const json_t *um)
{
	if (!json_is_object(um))
		return;
	u->have = 1;
	u->prompt = nonneg(token_count(um, "promptTokenCount")) +
		    nonneg(token_count(um, "toolUsePromptTokenCount"));
	u->completion = nonneg(token_count(um, "candidatesTokenCount")) +
			nonneg(token_count(um, "thoughtsTokenCount"));
	u->total = u->prompt + u->completion;
	u->cached = token_count(um, "cachedContentTokenCount");
	u->cache_write = -1;
	u->reasoning = token_count(um, "thoughtsTokenCount");
	json_decref(u->json);
	u->json = usage_to_json(u);
}

static json_t *logprob_entry(const json_t *c)
{
	const char *tok = json_str(c, "token");
	if (!tok)
		tok = "";
	json_t *e = json_object();
	json_object_set_new(e, "token", json_string(tok));
	const json_t *lp = json_object_get(c, "logProbability");
	json_object_set_new(e, "logprob", json_real(json_is_number(lp) ? json_number_value(lp) : 0.0));
	json_t *bytes = json_array();
	for (const unsigned char *p = (const unsigned char *)tok; *p; p++)
		json_array_append_new(bytes, json_integer(*p));
	json_object_set_new(e, "bytes", bytes);
	return e;
}

/* logprobsResult -> OpenAI's choice logprobs {content: [...], refusal: null}, or NULL. */
static json_t *logprobs_from_gemini(const json_t *lr)
{
	const json_t *chosen = json_object_get(lr, "chosenCandidates");
	if (!json_is_array(chosen))
		return NULL;
	const json_t *top = json_object_get(lr, "topCandidates");
	json_t *content = json_array();
	size_t i;
	const json_t *c;
	json_array_foreach(chosen, i, c)
	{
		json_t *e = logprob_entry(c);
		json_t *tops = json_array();
		size_t k;
		const json_t *t;
		json_array_foreach(json_object_get(json_array_get(top, i), "candidates"), k, t)
			json_array_append_new(tops, logprob_entry(t));
		json_object_set_new(e, "top_logprobs", tops);
		json_array_append_new(content, e);
	}
	json_t *lp = json_object();
	json_object_set_new(lp, "content", content);
	json_object_set_new(lp, "refusal", json_null());
	return lp;
}

/* A functionCall part as an OpenAI tool call; index >= 0 adds the stream's "index". ordinal
 * numbers the calls of the whole reply (for the ids the router makes up). */
static json_t *tool_call_from_part(const struct xlate_ctx *x, const json_t *part, long index,
				   size_t ordinal)
{
	const json_t *fc = json_object_get(part, "functionCall");
	const char *gid = json_str(fc, "id");
	if (gid && !gid[0])
		gid = NULL;
	char made[192] = "";
	if (!gid)
		tool_call_id_make(x, ordinal, made, sizeof(made));
	const json_t *args = json_object_get(fc, "args");
	char *a = is_set(args) ? json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	const char *name = json_str(fc, "name");
	json_t *fn = json_object();
	json_object_set_new(fn, "name", json_string(name ? name : ""));
	json_object_set_new(fn, "arguments", json_string(a ? a : "{}"));
	free(a);
	json_t *tc = json_object();
	if (index >= 0)
		json_object_set_new(tc, "index", json_integer(index));
	json_object_set_new(tc, "id", json_string(gid ? gid : made));
	json_object_set_new(tc, "type", json_string("function"));
	json_object_set_new(tc, "function", fn);
	const char *sig = json_str(part, "thoughtSignature");
	if (sig || gid) {
		json_t *google = json_object();
		if (sig)
			json_object_set_new(google, "thought_signature", json_string(sig));
		if (gid)
			json_object_set_new(google, "function_call_id", json_string(gid));
		json_t *extra = json_object();
		json_object_set_new(extra, "google", google);
		json_object_set_new(tc, "extra_content", extra);
	}
	return tc;
}

static long candidate_index(const json_t *cand, size_t pos)
{
	const json_t *idx = json_object_get(cand, "index");
	if (json_is_integer(idx))
		return json_integer_value(idx) >= 0 && json_integer_value(idx) < (1 << 20)
			       ? (long)json_integer_value(idx)
			       : -1;
	return (long)pos;
}

static json_t *message_new(void)
{
	json_t *msg = json_object();
	json_object_set_new(msg, "role", json_string("assistant"));
	json_object_set_new(msg, "content", json_null());
	json_object_set_new(msg, "refusal", json_null());
	return msg;
}

static json_t *choice_new(long index, const char *member, json_t *obj)
{
	json_t *c = json_object();
	json_object_set_new(c, "index", json_integer(index));
	json_object_set_new(c, member, obj);
	json_object_set_new(c, "logprobs", json_null());
	json_object_set_new(c, "finish_reason", json_null());
	return c;
}

static json_t *choice_from_candidate(const struct xlate_ctx *x, const json_t *cand, long index,
				     size_t *ordinal)
{
	struct buf text, thought;
	buf_init(&text, BUF_UNLIMITED);
	buf_init(&thought, BUF_UNLIMITED);
	json_t *calls = json_array();
	size_t i;
	const json_t *part;
	json_array_foreach(json_object_get(json_object_get(cand, "content"), "parts"), i, part)
	{
		const char *t = json_str(part, "text");
		if (json_is_object(json_object_get(part, "functionCall")))
			json_array_append_new(calls, tool_call_from_part(x, part, -1, (*ordinal)++));
		else if (t)
			buf_puts(json_is_true(json_object_get(part, "thought")) ? &thought : &text, t);
	}
	json_t *msg = message_new();
	if (text.len)
		json_object_set_new(msg, "content", json_stringn(text.p, text.len));
	if (thought.len)
		json_object_set_new(msg, "reasoning_content", json_stringn(thought.p, thought.len));
	if (json_array_size(calls))
		json_object_set(msg, "tool_calls", calls);
	json_t *choice = choice_new(index, "message", msg);
	json_t *lp = logprobs_from_gemini(json_object_get(cand, "logprobsResult"));
	if (lp)
		json_object_set_new(choice, "logprobs", lp);
	set_finish(choice, json_str(cand, "finishReason"), json_array_size(calls) > 0);
	json_decref(calls);
	buf_free(&text);
	buf_free(&thought);
	return choice;
}

static int bad_reply(const struct xlate_ctx *x, const char *what, struct rerr *err)
{
	return rerr_set(err, 502, "server_error", "bad_upstream_response", NULL, "%s returned %s",
			x->prov->name, what);
}

static int gemini_parse_response(const struct xlate_ctx *x, const char *body, size_t len,
				 json_t **out, struct usage *u, struct rerr *err)
{
	json_error_t jerr;
	json_t *resp = json_loadb(body, len, 0, &jerr);
	json_t *result = NULL;
	int rc = -1;
	if (!json_is_object(resp)) {
		bad_reply(x, "a reply that is not a JSON object", err);
		goto out;
	}
	const json_t *e = error_object(resp);
	if (e) {
		google_error(x, 0, e, 0, err);
		goto out;
	}
	const json_t *cands = json_object_get(resp, "candidates");
	if (is_set(cands) && !json_is_array(cands)) {
		bad_reply(x, "a reply whose candidates are not an array", err);
		goto out;
	}
	json_t *choices = json_array();
	result = json_object();
	json_object_set_new(result, "object", json_string("chat.completion"));
	json_object_set_new(result, "created", json_integer(x->created));
	json_object_set_new(result, "choices", choices);
	if (json_array_size(cands) == 0) {
		const char *block = json_str(json_object_get(resp, "promptFeedback"), "blockReason");
		if (!block) {
			bad_reply(x, "a reply without candidates", err);
			goto out;
		}
		/* The prompt was blocked: one empty choice stopped by the content filter. */
		json_t *c = choice_new(0, "message", message_new());
		json_object_set_new(c, "finish_reason", json_string("content_filter"));
		json_object_set_new(c, "provider_finish_reason", json_string(block));
		json_array_append_new(choices, c);
	}
	size_t i, ordinal = 0;
	const json_t *cand;
	json_array_foreach(cands, i, cand)
	{
		long index = candidate_index(cand, i);
		if (!json_is_object(cand) || index < 0) {
			bad_reply(x, "a malformed candidate", err);
			goto out;
		}
		json_array_append_new(choices, choice_from_candidate(x, cand, index, &ordinal));
	}
	usage_from_gemini(u, json_object_get(resp, "usageMetadata"));
	if (u->json)
		json_object_set(result, "usage", u->json);
	*out = result;
	result = NULL;
	rc = 0;
out:
	json_decref(result);
	json_decref(resp);
	return rc;
}

/* ---- streams ---- */

struct gm_cand {
	int started;           /* its role chunk went out */
	int finished;          /* its finish chunk went out */
	long calls;            /* function calls emitted: the next tool_calls index */
};

struct gm_stream {
	const struct xlate_ctx *x;
	struct gm_cand cand[GM_STREAM_SLOTS];
	size_t calls;          /* function calls of all candidates: numbers the made-up ids */
};

static void *gemini_stream_new(const struct xlate_ctx *x)
{
	struct gm_stream *s = xcalloc(1, sizeof(*s));
	s->x = x;
	return s;
}

/* Appends a one-choice chunk {"choices":[choice]} and returns the choice (borrowed). */
static json_t *chunk_add(json_t *chunks, long index, json_t *delta)
{
	json_t *choice = choice_new(index, "delta", delta);
	json_t *choices = json_array();
	json_array_append_new(choices, choice);
	json_t *chunk = json_object();
	json_object_set_new(chunk, "choices", choices);
	json_array_append_new(chunks, chunk);
	return choice;
}

static json_t *delta_text(const char *key, const char *text, size_t len)
{
	json_t *d = json_object();
	json_object_set_new(d, key, json_stringn(text, len));
	return d;
}

static void stream_start(struct gm_stream *s, long index, json_t *chunks)
{
	if (s->cand[index].started)
		return;
	json_t *d = json_object();
	json_object_set_new(d, "role", json_string("assistant"));
	json_object_set_new(d, "content", json_string(""));
	chunk_add(chunks, index, d);
	s->cand[index].started = 1;
}

/* The chunks of one candidate of one event. Adjacent text parts of one kind go out as one
 * delta; the event's logprobs ride on the first chunk after the role chunk. */
static void stream_candidate(struct gm_stream *s, const json_t *cand, long index, json_t *chunks)
{
	struct gm_cand *gc = &s->cand[index];
	if (gc->finished)
		return;   /* nothing may follow a finish chunk */
	stream_start(s, index, chunks);
	size_t first = json_array_size(chunks);
	struct buf text;
	buf_init(&text, BUF_UNLIMITED);
	const char *kind = NULL;   /* "content" or "reasoning_content" held in text */
	size_t i;
	const json_t *part;
	json_array_foreach(json_object_get(json_object_get(cand, "content"), "parts"), i, part)
	{
		int call = json_is_object(json_object_get(part, "functionCall"));
		const char *t = json_str(part, "text");
		const char *k = json_is_true(json_object_get(part, "thought")) ? "reasoning_content"
										 : "content";
		if (!call && !(t && t[0]))
			continue;
		if (kind && (call || strcmp(kind, k) != 0)) {
			chunk_add(chunks, index, delta_text(kind, text.p, text.len));
			buf_reset(&text);
			kind = NULL;
		}
		if (call) {
			json_t *tcs = json_array();
			json_array_append_new(tcs,
					      tool_call_from_part(s->x, part, gc->calls++, s->calls++));
			json_t *d = json_object();
			json_object_set_new(d, "tool_calls", tcs);
			chunk_add(chunks, index, d);
		} else {
			kind = k;
			buf_puts(&text, t);
		}
	}
	if (kind)
		chunk_add(chunks, index, delta_text(kind, text.p, text.len));
	buf_free(&text);
	json_t *lp = logprobs_from_gemini(json_object_get(cand, "logprobsResult"));
	const char *fr = json_str(cand, "finishReason");
	if (fr) {
		json_t *choice = chunk_add(chunks, index, json_object());
		set_finish(choice, fr, gc->calls > 0);
		gc->finished = 1;
	}
	if (lp && first < json_array_size(chunks)) {
		json_t *head = json_array_get(chunks, first);
		json_object_set_new(json_array_get(json_object_get(head, "choices"), 0), "logprobs", lp);
	} else {
		json_decref(lp);
	}
}

static enum stream_status stream_error_json(const struct xlate_ctx *x, const char *text, size_t len,
					    struct rerr *err)
{
	json_error_t jerr;
	json_t *j = json_loadb(text, len, 0, &jerr);
	const json_t *e = error_object(j);
	if (e)
		google_error(x, 0, e, 0, err);
	json_decref(j);
	return e ? STREAM_ERROR : STREAM_MORE;
}

static enum stream_status gemini_stream_event(void *st, const struct sse_event *ev, json_t *chunks,
					      struct usage *u, struct rerr *err)
{
	struct gm_stream *s = st;
	const struct xlate_ctx *x = s->x;
	/* An error after the stream started may come as bare JSON lines instead of a data event. */
	if (ev->other_len && stream_error_json(x, ev->other, ev->other_len, err) == STREAM_ERROR)
		return STREAM_ERROR;
	if (!ev->has_data)
		return STREAM_MORE;
	json_error_t jerr;
	json_t *resp = json_loadb(ev->data, ev->data_len, 0, &jerr);
	enum stream_status rc = STREAM_MORE;
	if (!json_is_object(resp)) {
		bad_reply(x, "a stream event that is not a JSON object", err);
		rc = STREAM_ERROR;
		goto out;
	}
	const json_t *e = error_object(resp);
	if (e) {
		google_error(x, 0, e, 0, err);
		rc = STREAM_ERROR;
		goto out;
	}
	usage_from_gemini(u, json_object_get(resp, "usageMetadata"));
	const json_t *cands = json_object_get(resp, "candidates");
	if (is_set(cands) && !json_is_array(cands)) {
		bad_reply(x, "a stream event whose candidates are not an array", err);
		rc = STREAM_ERROR;
		goto out;
	}
	size_t i;
	const json_t *cand;
	json_array_foreach(cands, i, cand)
	{
		long index = candidate_index(cand, i);
		if (!json_is_object(cand) || index < 0 || index >= GM_STREAM_SLOTS) {
			bad_reply(x, "a malformed candidate in a stream event", err);
			rc = STREAM_ERROR;
			goto out;
		}
		stream_candidate(s, cand, index, chunks);
	}
	const char *block = json_str(json_object_get(resp, "promptFeedback"), "blockReason");
	if (json_array_size(cands) == 0 && block && !s->cand[0].started) {
		/* The prompt was blocked: an empty choice stopped by the content filter. */
		stream_start(s, 0, chunks);
		json_t *choice = chunk_add(chunks, 0, json_object());
		json_object_set_new(choice, "finish_reason", json_string("content_filter"));
		json_object_set_new(choice, "provider_finish_reason", json_string(block));
		s->cand[0].finished = 1;
	}
out:
	json_decref(resp);
	return rc;
}

static enum stream_status gemini_stream_eof(void *st, json_t *chunks, struct usage *u,
					    struct rerr *err)
{
	(void)chunks;
	(void)u;
	struct gm_stream *s = st;
	int started = 0, open = 0;
	for (size_t i = 0; i < GM_STREAM_SLOTS; i++) {
		started |= s->cand[i].started;
		open |= s->cand[i].started && !s->cand[i].finished;
	}
	if (started && !open)
		return STREAM_DONE;
	rerr_set(err, 502, "server_error", "bad_upstream_response", NULL,
		 started ? "%s closed the stream before it finished"
			 : "%s closed the stream without sending a candidate",
		 s->x->prov->name);
	return STREAM_ERROR;
}

const struct provider_ops provider_gemini = {
	.api = "gemini",
	.build_request = gemini_build,
	.parse_response = gemini_parse_response,
	.stream_new = gemini_stream_new,
	.stream_event = gemini_stream_event,
	.stream_eof = gemini_stream_eof,
	.stream_free = free,
	.map_error = gemini_map_error,
};
