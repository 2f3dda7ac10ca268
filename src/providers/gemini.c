/* gemini.c - the Google Gemini adapter: Chat Completions -> generateContent (v1beta), and its ops.
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
 * Replies, errors and streams are translated back in gemini_reply.c; the provider_ops table at
 * the end joins the two halves.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../jsonx.h"
#include "../util.h"
#include "gemini.h"
#include "provider.h"

/* Gemini's limit on candidateCount. */
#define GM_MAX_CANDIDATES 8

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
	json_t *v = jsonx_loadb(text, strlen(text), 0, &jerr);
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

/* max_completion_tokens (or max_tokens) -> maxOutputTokens; a different max_tokens beside it is
 * dropped and named. */
static int max_output_tokens(struct gm_req *g, const json_t *req, json_t *gc)
{
	const json_t *mct = json_object_get(req, "max_completion_tokens");
	const json_t *mt = json_object_get(req, "max_tokens");
	if (is_set(mct)) {
		json_object_set(gc, "maxOutputTokens", (json_t *)mct);
		if (is_set(mt) && !json_equal((json_t *)mt, (json_t *)mct) &&
		    param_unsupported(g->x, g->dropped, "max_tokens", g->err) < 0)
			return -1;
	} else if (is_set(mt)) {
		json_object_set(gc, "maxOutputTokens", (json_t *)mt);
	}
	return 0;
}

/* reasoning_effort -> thinkingConfig, as each model family allows. */
static int thinking_config(struct gm_req *g, const json_t *req, json_t *gc)
{
	const struct xlate_ctx *x = g->x;
	const char *effort = json_str(req, "reasoning_effort");
	if (!effort)
		return 0;
	long budget = reasoning_effort_budget(effort);
	if (budget < 0)
		return rerr_invalid(g->err, "reasoning_effort",
				    "Invalid value for 'reasoning_effort': '%s'. Supported values are: 'none', 'minimal', 'low', 'medium', 'high', 'xhigh' and 'max'.",
				    effort);
	if (str_has_prefix(x->upstream_model, "gemini-2.0")) {
		/* Not a thinking model: "none" is what it does anyway. */
		if (budget > 0 && param_unsupported(x, g->dropped, "reasoning_effort", g->err) < 0)
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
	return 0;
}

/* generationConfig: output tokens, sampling, stop sequences, candidates, logprobs, the response
 * format and thinking. */
static int generation_config(struct gm_req *g, const json_t *req, json_t *gc)
{
	const struct xlate_ctx *x = g->x;
	if (max_output_tokens(g, req, gc) < 0)
		return -1;
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
	return thinking_config(g, req, gc);
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

/* tool_choice {"type": "allowed_tools", "allowed_tools": {mode, tools}} -> toolConfig: "required"
 * is ANY over the allowed names; "auto" is AUTO over only the allowed declarations (*decls is
 * narrowed), since allowedFunctionNames is only valid with ANY. */
static int allowed_tools_config(struct gm_req *g, const json_t *choice, const char *param,
				json_t *decls, json_t **out)
{
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
	return allowed_tools_config(g, choice, param, decls, out);
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

/* Gemini model ids are letters, digits, '-', '.' and '_' (not first: no "." or ".." segment).
 * The id is part of the request URL, so nothing else may reach it: no '/', '?', '%', '#' that
 * would choose another path or query under the router's key. Every allowed character is
 * unreserved (RFC 3986), so the id needs no percent-escaping. */
static int model_id_ok(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > 256 || id[0] == '.' || id[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.' || c == '_'))
			return 0;
	}
	return 1;
}

static int gemini_build(const struct xlate_ctx *x, const json_t *client, struct upstream_req *out,
			struct buf *dropped, struct rerr *err)
{
	if (!model_id_ok(x->upstream_model))
		return rerr_set(err, 400, "invalid_request_error", NULL, "model",
				"Invalid model '%.256s': a Gemini model id has only letters, digits, '-', '.' and '_'.",
				x->public_model);
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
	out->body = buf_steal_counted(&b, &out->body_counted);
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


/* maxOutputTokens (max_output_tokens() above) counts the thoughts too. */
static int64_t gemini_max_output_tokens(const struct model_conf *m, const json_t *client)
{
	(void)m;
	return client_max_tokens(client);
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
	.max_output_tokens = gemini_max_output_tokens,
};
