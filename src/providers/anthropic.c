/* anthropic.c - the Anthropic Messages adapter (claude-* models behind the OpenAI API).
 *
 * Requests: system and developer messages become the top-level `system` (one text block per
 * message, in order, their position in the conversation is lost); the rest becomes alternating
 * user/assistant turns of content blocks - tool results grouped into one user turn ahead of any
 * other block, assistant turns carrying their thinking blocks first (verbatim, as the client sent
 * them back in `thinking_blocks`), then text, then tool_use. max_tokens is always set. Parameters
 * Anthropic lacks are dropped and named (provider.h); those that would change the answer are
 * refused. reasoning_effort becomes extended thinking with a token budget.
 *
 * Responses: text blocks join into content, tool_use blocks become tool_calls (ids verbatim),
 * thinking becomes reasoning_content plus the thinking_blocks extension. The stream translator is
 * a state machine over Anthropic's events (message_start, content_block_start/delta/stop,
 * message_delta, message_stop, ping, error): content block indexes map to OpenAI tool-call
 * ordinals, each event yields at most a few chunks, and nothing is held beyond the event except
 * the text of the thinking block in progress (emitted whole, with its signature, at its end).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../jsonx.h"
#include "../util.h"
#include "provider.h"

#define ANTHROPIC_VERSION "2023-06-01"

static const char *str_or(const char *s, const char *dflt)
{
	return s ? s : dflt;
}

/* Top-level request fields this adapter knows (translated, dropped with notice or refused). */
static const char *const known_fields[] = {
	"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
	"top_k", "stop", "stream", "stream_options", "user", "safety_identifier", "tools",
	"tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort", "thinking",
	"n", "audio", "modalities", "logprobs", "top_logprobs", "seed", "logit_bias",
	"presence_penalty", "frequency_penalty", "store", "metadata", "service_tier",
	"prompt_cache_key", "verbosity", "prediction", "web_search_options", NULL,
};

/* ---- request ---- */

static json_t *text_block(const char *text)
{
	json_t *b = json_object();
	json_object_set_new(b, "type", json_string("text"));
	json_object_set_new(b, "text", json_string(text));
	return b;
}

/* Appends the system blocks of one system/developer message. */
static void system_blocks(json_t *system, const json_t *content)
{
	if (json_is_string(content)) {
		if (json_string_length(content))
			json_array_append_new(system, text_block(json_string_value(content)));
		return;
	}
	size_t i;
	const json_t *part;
	json_array_foreach(content, i, part)
	{
		const char *t = json_str(part, "text");
		if (t && t[0])
			json_array_append_new(system, text_block(t));
	}
}

static json_t *image_block(const struct xlate_ctx *x, const char *url, const char *where,
			   struct rerr *err)
{
	json_t *src = json_object();
	char mime[64];
	const char *data;
	if (data_url_split(url, mime, sizeof(mime), &data) == 0) {
		json_object_set_new(src, "type", json_string("base64"));
		json_object_set_new(src, "media_type", json_string(mime));
		json_object_set_new(src, "data", json_string(data));
	} else if (str_has_prefix(url, "https://") || str_has_prefix(url, "http://")) {
		json_object_set_new(src, "type", json_string("url"));
		json_object_set_new(src, "url", json_string(url));
	} else {
		json_decref(src);
		param_refused(x, where, "an image URL that is neither http(s) nor a base64 data URL",
			      err);
		return NULL;
	}
	json_t *b = json_object();
	json_object_set_new(b, "type", json_string("image"));
	json_object_set_new(b, "source", src);
	return b;
}

/* Content blocks of a user message. Returns 0 or -1 (err set). */
static int user_blocks(const struct xlate_ctx *x, const json_t *content, size_t mi, json_t *out,
		       struct rerr *err)
{
	if (json_is_string(content)) {
		if (json_string_length(content))
			json_array_append_new(out, text_block(json_string_value(content)));
		return 0;
	}
	size_t i;
	const json_t *part;
	char where[96];
	json_array_foreach(content, i, part)
	{
		snprintf(where, sizeof(where), "messages[%zu].content[%zu]", mi, i);
		const char *type = json_str(part, "type");
		if (strcmp(type, "text") == 0) {
			const char *t = json_str(part, "text");
			if (t[0])
				json_array_append_new(out, text_block(t));
		} else if (strcmp(type, "image_url") == 0) {
			json_t *b = image_block(x, json_str(json_object_get(part, "image_url"), "url"),
						where, err);
			if (!b)
				return -1;
			json_array_append_new(out, b);
		} else if (strcmp(type, "file") == 0) {
			const json_t *f = json_object_get(part, "file");
			const char *fd = json_str(f, "file_data");
			char mime[64];
			const char *data;
			if (!fd || data_url_split(fd, mime, sizeof(mime), &data) < 0 ||
			    strcmp(mime, "application/pdf") != 0)
				return param_refused(x, where,
						     "a file other than a PDF given as a base64 data URL (file_id references exist only at OpenAI)",
						     err);
			json_t *src = json_object();
			json_object_set_new(src, "type", json_string("base64"));
			json_object_set_new(src, "media_type", json_string(mime));
			json_object_set_new(src, "data", json_string(data));
			json_t *b = json_object();
			json_object_set_new(b, "type", json_string("document"));
			json_object_set_new(b, "source", src);
			json_array_append_new(out, b);
		} else {
			return param_refused(x, where, "audio input", err);
		}
	}
	return 0;
}

/* Blocks of an assistant message: thinking blocks, text, tool_use. */
static int assistant_blocks(const struct xlate_ctx *x, const json_t *m, size_t mi, json_t *out,
			    struct rerr *err)
{
	size_t i;
	json_t *tb;
	json_array_foreach(json_object_get(m, "thinking_blocks"), i, tb)
	{
		const char *type = json_str(tb, "type");
		if (type && (strcmp(type, "thinking") == 0 || strcmp(type, "redacted_thinking") == 0))
			json_array_append(out, tb);
	}
	char *text = content_text(json_object_get(m, "content"));
	if (text[0])
		json_array_append_new(out, text_block(text));
	free(text);
	const char *refusal = json_str(m, "refusal");
	if (refusal && refusal[0] && !json_object_get(m, "content"))
		json_array_append_new(out, text_block(refusal));
	json_t *tc;
	json_array_foreach(json_object_get(m, "tool_calls"), i, tc)
	{
		const char *type = json_str(tc, "type");
		if (type && strcmp(type, "function") != 0) {
			char where[96];
			snprintf(where, sizeof(where), "messages[%zu].tool_calls[%zu]", mi, i);
			return param_refused(x, where, "a custom tool call", err);
		}
		const json_t *fn = json_object_get(tc, "function");
		json_t *b = json_object();
		json_object_set_new(b, "type", json_string("tool_use"));
		json_object_set_new(b, "id", json_string(json_str(tc, "id")));
		json_object_set_new(b, "name", json_string(json_str(fn, "name")));
		json_object_set_new(b, "input", tool_arguments_object(json_str(fn, "arguments")));
		json_array_append_new(out, b);
	}
	return 0;
}

static json_t *tool_result_block(const json_t *m)
{
	json_t *b = json_object();
	json_object_set_new(b, "type", json_string("tool_result"));
	json_object_set_new(b, "tool_use_id", json_string(json_str(m, "tool_call_id")));
	const json_t *content = json_object_get(m, "content");
	if (json_is_string(content)) {
		json_object_set(b, "content", (json_t *)content);
	} else {
		json_t *blocks = json_array();
		system_blocks(blocks, content);
		json_object_set_new(b, "content", blocks);
	}
	return b;
}

/* Appends blocks to the conversation as role, merging with a preceding turn of the same role.
 * A user turn made of one string message stays a string, as Anthropic's own clients send it;
 * it becomes a block list only when something merges into it. */
static void add_turn(json_t *turns, const char *role, json_t *blocks, const json_t *as_string)
{
	if (json_array_size(blocks) == 0) {
		json_decref(blocks);
		return;
	}
	json_t *last = json_array_get(turns, json_array_size(turns) - 1);
	if (last && strcmp(json_str(last, "role"), role) == 0) {
		json_t *content = json_object_get(last, "content");
		if (json_is_string(content)) {
			json_t *arr = json_array();
			json_array_append_new(arr, text_block(json_string_value(content)));
			json_object_set_new(last, "content", arr);
			content = arr;
		}
		json_array_extend(content, blocks);
		json_decref(blocks);
		return;
	}
	json_t *t = json_object();
	json_object_set_new(t, "role", json_string(role));
	if (as_string) {
		json_object_set(t, "content", (json_t *)as_string);
		json_decref(blocks);
	} else {
		json_object_set_new(t, "content", blocks);
	}
	json_array_append_new(turns, t);
}

/* Within a user turn every tool_result must come before any other block. */
static void tool_results_first(json_t *turns)
{
	size_t i;
	json_t *t;
	json_array_foreach(turns, i, t)
	{
		json_t *content = json_object_get(t, "content");
		if (strcmp(json_str(t, "role"), "user") != 0 || !json_is_array(content))
			continue;
		json_t *sorted = json_array();
		for (int pass = 0; pass < 2; pass++) {
			size_t k;
			json_t *b;
			json_array_foreach(content, k, b)
			{
				int is_result = strcmp(json_str(b, "type"), "tool_result") == 0;
				if (is_result == (pass == 0))
					json_array_append(sorted, b);
			}
		}
		json_object_set_new(t, "content", sorted);
	}
}

static int convert_messages(const struct xlate_ctx *x, const json_t *messages, json_t *body,
			    struct buf *dropped, struct rerr *err)
{
	json_t *system = json_array();
	json_t *turns = json_array();
	int named = 0;
	size_t i;
	json_t *m;
	json_array_foreach(messages, i, m)
	{
		const char *role = json_str(m, "role");
		const json_t *content = json_object_get(m, "content");
		if (json_object_get(m, "name") && !named) {
			named = 1;
			if (param_unsupported(x, dropped, "messages[].name", err) < 0)
				goto fail;
		}
		if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
			system_blocks(system, content);
			continue;
		}
		json_t *blocks = json_array();
		int rc = 0;
		const char *as = "user";
		if (strcmp(role, "user") == 0) {
			rc = user_blocks(x, content, i, blocks, err);
		} else if (strcmp(role, "assistant") == 0) {
			rc = assistant_blocks(x, m, i, blocks, err);
			as = "assistant";
		} else if (strcmp(role, "tool") == 0) {
			json_array_append_new(blocks, tool_result_block(m));
		} else {
			/* The deprecated "function" role: its result is plain user text. */
			char *t = content_text(content);
			if (t[0])
				json_array_append_new(blocks, text_block(t));
			free(t);
		}
		if (rc < 0) {
			json_decref(blocks);
			goto fail;
		}
		int plain = strcmp(role, "user") == 0 && json_is_string(content) && json_string_length(content);
		add_turn(turns, as, blocks, plain ? content : NULL);
	}
	tool_results_first(turns);
	if (json_array_size(system))
		json_object_set_new(body, "system", system);
	else
		json_decref(system);
	json_object_set_new(body, "messages", turns);
	return 0;
fail:
	json_decref(system);
	json_decref(turns);
	return -1;
}

static json_t *convert_tool(const json_t *t)
{
	const json_t *fn = json_object_get(t, "function");
	json_t *o = json_object();
	json_object_set_new(o, "name", json_string(json_str(fn, "name")));
	const char *desc = json_str(fn, "description");
	if (desc)
		json_object_set_new(o, "description", json_string(desc));
	const json_t *params = json_object_get(fn, "parameters");
	if (json_is_object(params)) {
		json_object_set(o, "input_schema", (json_t *)params);
	} else {
		json_t *schema = json_object();
		json_object_set_new(schema, "type", json_string("object"));
		json_object_set_new(schema, "properties", json_object());
		json_object_set_new(o, "input_schema", schema);
	}
	const json_t *strict = json_object_get(fn, "strict");
	if (json_is_boolean(strict))
		json_object_set(o, "strict", (json_t *)strict);
	return o;
}

/* tools and tool_choice (4.4). Returns 0 or -1. */
static int convert_tools(const struct xlate_ctx *x, const json_t *client, json_t *body,
			 struct rerr *err)
{
	const json_t *tools = json_object_get(client, "tools");
	const json_t *choice = json_object_get(client, "tool_choice");
	const json_t *allowed = NULL;
	json_t *tc = NULL;
	if (json_is_string(choice)) {
		const char *c = json_string_value(choice);
		tc = json_object();
		json_object_set_new(tc, "type", json_string(strcmp(c, "required") == 0 ? "any"
							    : strcmp(c, "none") == 0   ? "none"
										       : "auto"));
	} else if (json_is_object(choice)) {
		const char *type = json_str(choice, "type");
		if (strcmp(type, "function") == 0) {
			tc = json_object();
			json_object_set_new(tc, "type", json_string("tool"));
			const char *fname = json_str(json_object_get(choice, "function"), "name");
			json_object_set_new(tc, "name", json_string(str_or(fname, "")));
		} else if (strcmp(type, "allowed_tools") == 0) {
			const json_t *at = json_object_get(choice, "allowed_tools");
			allowed = json_object_get(at, "tools");
			const char *mode = json_str(at, "mode");
			tc = json_object();
			json_object_set_new(tc, "type", json_string(mode && strcmp(mode, "required") == 0
									    ? "any"
									    : "auto"));
		} else {
			return param_refused(x, "tool_choice", "a tool_choice of this type", err);
		}
	}
	if (json_is_array(tools) && json_array_size(tools)) {
		json_t *out = json_array();
		size_t i;
		json_t *t;
		json_array_foreach(tools, i, t)
		{
			if (strcmp(json_str(t, "type"), "function") != 0) {
				json_decref(out);
				json_decref(tc);
				return param_refused(x, "tools", "custom tools (tools[].type \"custom\")",
						     err);
			}
			const char *name = json_str(json_object_get(t, "function"), "name");
			if (allowed) {
				int keep = 0;
				size_t k;
				json_t *a;
				json_array_foreach(allowed, k, a)
				{
					const char *an = json_str(json_object_get(a, "function"), "name");
					if (!an)
						an = json_str(a, "name");
					keep |= an && strcmp(an, name) == 0;
				}
				if (!keep)
					continue;
			}
			json_array_append_new(out, convert_tool(t));
		}
		json_object_set_new(body, "tools", out);
	}
	if (json_is_false(json_object_get(client, "parallel_tool_calls"))) {
		if (!tc) {
			tc = json_object();
			json_object_set_new(tc, "type", json_string("auto"));
		}
		if (strcmp(json_str(tc, "type"), "none") != 0)
			json_object_set_new(tc, "disable_parallel_tool_use", json_true());
	}
	if (tc)
		json_object_set_new(body, "tool_choice", tc);
	return 0;
}

static void convert_response_format(const json_t *client, json_t *body)
{
	const json_t *rf = json_object_get(client, "response_format");
	const char *type = json_str(rf, "type");
	if (!type || strcmp(type, "text") == 0)
		return;
	json_t *schema;
	if (strcmp(type, "json_schema") == 0) {
		const json_t *s = json_object_get(json_object_get(rf, "json_schema"), "schema");
		schema = json_is_object(s) ? json_deep_copy(s) : json_object();
	} else {
		schema = json_object();
		json_object_set_new(schema, "type", json_string("object"));
	}
	json_t *format = json_object();
	json_object_set_new(format, "type", json_string("json_schema"));
	json_object_set_new(format, "schema", schema);
	json_t *oc = json_object();
	json_object_set_new(oc, "format", format);
	json_object_set_new(body, "output_config", oc);
}

/* Parameters with no Anthropic counterpart: dropped (named unless at their default). */
static int drop_unsupported(const struct xlate_ctx *x, json_t *c, struct buf *dropped,
			    struct rerr *err)
{
	static const struct {
		const char *name;
		double dflt;
	} list[] = {
		{ "logprobs", 0 },        { "top_logprobs", NAN },     { "seed", NAN },
		{ "logit_bias", NAN },    { "presence_penalty", 0 },   { "frequency_penalty", 0 },
		{ "store", 0 },           { "service_tier", NAN },     { "prompt_cache_key", NAN },
		{ "verbosity", NAN },     { "prediction", NAN },       { "web_search_options", NAN },
	};
	for (size_t i = 0; i < ARRAY_SIZE(list); i++) {
		if (param_drop(x, c, list[i].name, list[i].dflt, dropped, err) < 0)
			return -1;
	}
	json_t *md = json_object_get(c, "metadata");
	if (json_is_object(md)) {
		/* metadata.task_type is the router's own routing hint. */
		int only_task = json_object_size(md) == 1 && json_object_get(md, "task_type");
		if (!only_task && param_unsupported(x, dropped, "metadata", err) < 0)
			return -1;
	}
	return 0;
}

/* What Anthropic cannot do at all is refused (unknown fields, n > 1, audio output, non-text
 * modalities); what it merely lacks is dropped and named. */
static int refuse_unsupported(const struct xlate_ctx *x, json_t *c, struct buf *dropped,
			      struct rerr *err)
{
	if (params_unknown(x, c, known_fields, dropped, err) < 0)
		return -1;
	const json_t *n = json_object_get(c, "n");
	if (json_is_integer(n) && json_integer_value(n) > 1)
		return param_refused(x, "n", "more than one choice (n > 1)", err);
	const json_t *audio = json_object_get(c, "audio");
	if (audio && !json_is_null(audio))
		return param_refused(x, "audio", "audio output", err);
	const json_t *mods = json_object_get(c, "modalities");
	size_t mi;
	json_t *mv;
	json_array_foreach(mods, mi, mv)
	{
		if (!json_is_string(mv) || strcmp(json_string_value(mv), "text") != 0)
			return param_refused(x, "modalities", "output modalities other than text", err);
	}
	return drop_unsupported(x, c, dropped, err);
}

/* Extended thinking: the client's own `thinking` object, or reasoning_effort. *thinking is set to
 * the new object (NULL: none), also when -1 is returned; *param names the field it came from. */
static int thinking_from_client(const struct xlate_ctx *x, const json_t *c, struct buf *dropped,
				json_t **thinking, const char **param, struct rerr *err)
{
	*thinking = NULL;
	*param = "reasoning_effort";
	const json_t *ct = json_object_get(c, "thinking");
	const char *effort = json_str(c, "reasoning_effort");
	if (json_is_object(ct)) {
		const json_t *cbt = json_object_get(ct, "budget_tokens");
		if (cbt && (!json_is_integer(cbt) || json_integer_value(cbt) < 1 ||
			    json_integer_value(cbt) > 10000000))
			return rerr_invalid(err, "thinking.budget_tokens",
					    "Invalid value for 'thinking.budget_tokens': expected an integer from 1 to 10000000.");
		*thinking = json_deep_copy(ct);
		*param = "thinking";
		if (effort && param_unsupported(x, dropped, "reasoning_effort", err) < 0)
			return -1;
	} else if (effort) {
		long budget = reasoning_effort_budget(effort);
		if (budget < 0)
			return rerr_invalid(err, "reasoning_effort",
					    "Invalid value for 'reasoning_effort': '%s'. Supported values are: 'none', 'minimal', 'low', 'medium', 'high', 'xhigh' and 'max'.",
					    effort);
		if (budget > 0) {
			*thinking = json_object();
			json_object_set_new(*thinking, "type", json_string("enabled"));
			json_object_set_new(*thinking, "budget_tokens", json_integer(budget));
		}
	}
	return 0;
}

/* Thinking against the rest of the request (its tools already in body): a forced tool wins over
 * it (*thinking is then freed and set to NULL); when it is on, sampling fields at their thinking
 * values are dropped and max_tokens is raised above the thinking budget. */
static int settle_thinking(const struct xlate_ctx *x, json_t *c, json_t *body, json_t **thinking,
			   const char *param, json_int_t max_tokens, struct buf *dropped,
			   struct rerr *err)
{
	const char *tct = json_str(json_object_get(body, "tool_choice"), "type");
	if (*thinking && tct && (strcmp(tct, "any") == 0 || strcmp(tct, "tool") == 0)) {
		/* Anthropic refuses thinking with a forced tool: the forced tool wins. */
		json_decref(*thinking);
		*thinking = NULL;
		if (param_unsupported(x, dropped, param, err) < 0)
			return -1;
	}
	const char *ttype = json_str(*thinking, "type");
	if (!ttype || strcmp(ttype, "disabled") == 0)
		return 0;
	if (param_drop(x, c, "temperature", 1, dropped, err) < 0 ||
	    param_drop(x, c, "top_p", 1, dropped, err) < 0 ||
	    param_drop(x, c, "top_k", NAN, dropped, err) < 0)
		return -1;
	const json_t *bt = json_object_get(*thinking, "budget_tokens");
	if (json_is_integer(bt) && max_tokens <= json_integer_value(bt))
		json_object_set_new(body, "max_tokens", json_integer(json_integer_value(bt) + max_tokens));
	return 0;
}

/* temperature (Anthropic's range is 0..1; it excludes top_p), top_p, top_k, stop. */
static int sampling_params(const struct xlate_ctx *x, json_t *c, json_t *body,
			   struct buf *dropped, struct rerr *err)
{
	const json_t *temp = json_object_get(c, "temperature");
	if (json_is_number(temp)) {
		double t = json_number_value(temp);
		if (t > 1) {
			/* Anthropic's range is 0..1. */
			if (param_unsupported(x, dropped, "temperature", err) < 0)
				return -1;
			t = 1;
		}
		json_object_set_new(body, "temperature", json_real(t));
		if (json_object_get(c, "top_p") && param_drop(x, c, "top_p", 1, dropped, err) < 0)
			return -1;
	}
	const json_t *top_p = json_object_get(c, "top_p");
	if (json_is_number(top_p))
		json_object_set(body, "top_p", (json_t *)top_p);
	const json_t *top_k = json_object_get(c, "top_k");
	if (json_is_integer(top_k))
		json_object_set(body, "top_k", (json_t *)top_k);
	const json_t *stop = json_object_get(c, "stop");
	if (json_is_string(stop)) {
		json_t *l = json_array();
		json_array_append(l, (json_t *)stop);
		json_object_set_new(body, "stop_sequences", l);
	} else if (json_is_array(stop) && json_array_size(stop)) {
		json_object_set(body, "stop_sequences", (json_t *)stop);
	}
	return 0;
}

/* The upstream request around a finished body: URL, key and headers. */
static void messages_request(const struct xlate_ctx *x, const json_t *body,
			     struct upstream_req *out)
{
	struct buf b;
	buf_init(&b, BUF_UNLIMITED);
	json_to_buf(body, &b);
	out->body_len = b.len;
	out->body = buf_steal(&b);
	out->url = xasprintf("%s/v1/messages", x->prov->base_url);
	out->stream = x->stream;
	upstream_req_add_header(out, "x-api-key: %s", x->prov->api_key);
	upstream_req_add_header(out, "anthropic-version: %s", ANTHROPIC_VERSION);
	upstream_req_add_header(out, "Content-Type: application/json");
	upstream_req_add_header(out, "Accept: %s", x->stream ? "text/event-stream" : "application/json");
	for (size_t i = 0; i < x->prov->headers.n; i++)
		upstream_req_add_header(out, "%s", x->prov->headers.v[i]);
}

static int anthropic_build(const struct xlate_ctx *x, const json_t *client, struct upstream_req *out,
			   struct buf *dropped, struct rerr *err)
{
	/* A shallow copy the checks below may prune; the request body is built fresh. */
	json_t *c = json_copy((json_t *)client);
	json_t *body = json_object();
	json_t *thinking = NULL;
	const char *thinking_param;
	int rc = -1;

	if (refuse_unsupported(x, c, dropped, err) < 0)
		goto out;
	json_object_set_new(body, "model", json_string(x->upstream_model));
	const json_t *mct = json_object_get(c, "max_completion_tokens");
	const json_t *mt = json_object_get(c, "max_tokens");
	json_int_t max_tokens = json_is_integer(mct)  ? json_integer_value(mct)
				: json_is_integer(mt) ? json_integer_value(mt)
						      : (json_int_t)x->model->max_output_tokens;
	json_object_set_new(body, "max_tokens", json_integer(max_tokens));
	if (convert_messages(x, json_object_get(c, "messages"), body, dropped, err) < 0 ||
	    thinking_from_client(x, c, dropped, &thinking, &thinking_param, err) < 0 ||
	    convert_tools(x, c, body, err) < 0 ||
	    settle_thinking(x, c, body, &thinking, thinking_param, max_tokens, dropped, err) < 0 ||
	    sampling_params(x, c, body, dropped, err) < 0)
		goto out;
	if (x->stream)
		json_object_set_new(body, "stream", json_true());
	const char *uid = json_str(c, "safety_identifier");
	if (!uid)
		uid = json_str(c, "user");
	if (uid) {
		json_t *md = json_object();
		json_object_set_new(md, "user_id", json_string(uid));
		json_object_set_new(body, "metadata", md);
	}
	if (thinking) {
		json_object_set_new(body, "thinking", thinking);
		thinking = NULL;
	}
	convert_response_format(c, body);
	messages_request(x, body, out);
	rc = 0;
out:
	json_decref(thinking);
	json_decref(c);
	json_decref(body);
	return rc;
}

/* ---- response ---- */

/* stop_reason -> finish_reason (10.1); *keep says whether the raw value adds information. */
static const char *finish_reason_of(const char *stop, int *keep)
{
	static const struct {
		const char *from, *to;
		int keep;
	} map[] = {
		{ "end_turn", "stop", 0 },
		{ "stop_sequence", "stop", 1 },
		{ "max_tokens", "length", 0 },
		{ "tool_use", "tool_calls", 0 },
		{ "pause_turn", "stop", 1 },
		{ "refusal", "content_filter", 1 },
		{ "model_context_window_exceeded", "length", 1 },
	};
	*keep = 1;
	if (!stop)
		return "stop";
	for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
		if (strcmp(map[i].from, stop) == 0) {
			*keep = map[i].keep;
			return map[i].to;
		}
	}
	return "stop";
}

static void set_finish(json_t *choice, const char *stop_reason)
{
	int keep;
	json_object_set_new(choice, "finish_reason", json_string(finish_reason_of(stop_reason, &keep)));
	if (keep && stop_reason)
		json_object_set_new(choice, "provider_finish_reason", json_string(stop_reason));
}

static int64_t count_at(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	return json_is_integer(v) && json_integer_value(v) >= 0 ? json_integer_value(v) : -1;
}

struct an_counts {
	int64_t input, cache_read, cache_write, output, thinking;
};

static void counts_update(struct an_counts *k, const json_t *usage)
{
	int64_t v;
	if ((v = count_at(usage, "input_tokens")) >= 0)
		k->input = v;
	if ((v = count_at(usage, "cache_read_input_tokens")) >= 0)
		k->cache_read = v;
	if ((v = count_at(usage, "cache_creation_input_tokens")) >= 0)
		k->cache_write = v;
	if ((v = count_at(usage, "output_tokens")) >= 0)
		k->output = v;
	if ((v = count_at(json_object_get(usage, "output_tokens_details"), "thinking_tokens")) >= 0)
		k->thinking = v;
}

/* Anthropic counts -> OpenAI usage (10.2). */
static void counts_to_usage(const struct an_counts *k, struct usage *u)
{
	int64_t in = k->input < 0 ? 0 : k->input;
	int64_t cr = k->cache_read < 0 ? 0 : k->cache_read;
	int64_t cw = k->cache_write < 0 ? 0 : k->cache_write;
	int64_t out = k->output < 0 ? 0 : k->output;
	u->have = 1;
	u->prompt = in + cr + cw;
	u->completion = out;
	u->total = u->prompt + out;
	u->cached = cr;
	u->cache_write = cw;
	u->reasoning = k->thinking;
	json_decref(u->json);
	u->json = usage_to_json(u);
}

static void anthropic_error_status(const char *type, long *status)
{
	static const struct {
		const char *type;
		long status;
	} map[] = {
		{ "invalid_request_error", 400 }, { "authentication_error", 401 },
		{ "billing_error", 402 },         { "permission_error", 403 },
		{ "not_found_error", 404 },       { "request_too_large", 413 },
		{ "rate_limit_error", 429 },      { "api_error", 500 },
		{ "timeout_error", 504 },         { "overloaded_error", 529 },
	};
	for (size_t i = 0; type && i < ARRAY_SIZE(map); i++) {
		if (strcmp(map[i].type, type) == 0)
			*status = map[i].status;
	}
}

/* An error object ({"type":"error","error":{...}}) met where a reply was expected. */
static void error_from_envelope(const struct xlate_ctx *x, const json_t *j, struct rerr *err)
{
	const json_t *e = json_object_get(j, "error");
	long status = 502;
	anthropic_error_status(json_str(e, "type"), &status);
	map_upstream_status(x, status, json_str(e, "message"), NULL, NULL, 0, err);
}

/* A tool_use block as an OpenAI tool call. */
static json_t *tool_call_from_block(const json_t *b)
{
	json_t *fn = json_object();
	json_object_set_new(fn, "name", json_string(str_or(json_str(b, "name"), "")));
	const json_t *input = json_object_get(b, "input");
	char *args = input ? json_dumps(input, JSON_COMPACT) : NULL;
	json_object_set_new(fn, "arguments", json_string(args ? args : "{}"));
	free(args);
	json_t *call = json_object();
	json_object_set_new(call, "id", json_string(str_or(json_str(b, "id"), "")));
	json_object_set_new(call, "type", json_string("function"));
	json_object_set_new(call, "function", fn);
	return call;
}

/* The assistant message of a reply's content blocks: text blocks joined into content, tool_use
 * blocks as tool_calls, thinking text as reasoning_content, thinking and redacted_thinking blocks
 * kept verbatim in thinking_blocks. */
static json_t *message_from_content(const json_t *content)
{
	struct buf text, reasoning;
	buf_init(&text, BUF_UNLIMITED);
	buf_init(&reasoning, BUF_UNLIMITED);
	int have_text = 0, have_reasoning = 0;
	json_t *calls = json_array();
	json_t *blocks = json_array();
	size_t i;
	json_t *b;
	json_array_foreach(content, i, b)
	{
		const char *bt = json_str(b, "type");
		if (!bt)
			continue;
		if (strcmp(bt, "text") == 0 && json_str(b, "text")) {
			buf_puts(&text, json_str(b, "text"));
			have_text = 1;
		} else if (strcmp(bt, "tool_use") == 0) {
			json_array_append_new(calls, tool_call_from_block(b));
		} else if (strcmp(bt, "thinking") == 0) {
			if (json_str(b, "thinking")) {
				buf_puts(&reasoning, json_str(b, "thinking"));
				have_reasoning = 1;
			}
			json_array_append(blocks, b);
		} else if (strcmp(bt, "redacted_thinking") == 0) {
			json_array_append(blocks, b);
		}
	}
	json_t *message = json_object();
	json_object_set_new(message, "role", json_string("assistant"));
	json_object_set_new(message, "content", have_text ? json_string(buf_str(&text)) : json_null());
	json_object_set_new(message, "refusal", json_null());
	if (json_array_size(calls))
		json_object_set(message, "tool_calls", calls);
	if (have_reasoning)
		json_object_set_new(message, "reasoning_content", json_string(buf_str(&reasoning)));
	if (json_array_size(blocks))
		json_object_set(message, "thinking_blocks", blocks);
	json_decref(calls);
	json_decref(blocks);
	buf_free(&text);
	buf_free(&reasoning);
	return message;
}

static int anthropic_parse_response(const struct xlate_ctx *x, const char *body, size_t len,
				    json_t **out, struct usage *u, struct rerr *err)
{
	json_error_t jerr;
	json_t *msg = json_loadb(body, len, 0, &jerr);
	if (!json_is_object(msg)) {
		json_decref(msg);
		return rerr_set(err, 502, "server_error", "bad_upstream_response", NULL,
				"%s returned a reply that is not a JSON object", x->prov->name);
	}
	const char *type = json_str(msg, "type");
	if (type && strcmp(type, "error") == 0) {
		error_from_envelope(x, msg, err);
		json_decref(msg);
		return -1;
	}
	const json_t *content = json_object_get(msg, "content");
	if (!json_is_array(content)) {
		json_decref(msg);
		return rerr_set(err, 502, "server_error", "bad_upstream_response", NULL,
				"%s returned a message without content", x->prov->name);
	}
	json_t *message = message_from_content(content);

	json_t *choice = json_object();
	json_object_set_new(choice, "index", json_integer(0));
	json_object_set_new(choice, "message", message);
	json_object_set_new(choice, "logprobs", json_null());
	set_finish(choice, json_str(msg, "stop_reason"));
	json_t *choices = json_array();
	json_array_append_new(choices, choice);

	struct an_counts k = { -1, -1, -1, -1, -1 };
	counts_update(&k, json_object_get(msg, "usage"));
	counts_to_usage(&k, u);

	json_t *resp = json_object();
	json_object_set_new(resp, "object", json_string("chat.completion"));
	json_object_set_new(resp, "created", json_integer(x->created));
	json_object_set_new(resp, "choices", choices);
	json_object_set(resp, "usage", u->json);
	json_decref(msg);
	*out = resp;
	return 0;
}

/* ---- stream ---- */

enum block_kind { BLOCK_OTHER, BLOCK_TEXT, BLOCK_TOOL, BLOCK_THINKING, BLOCK_REDACTED };

struct an_block {
	enum block_kind kind;
	size_t tool;               /* OpenAI tool-call index of a tool_use block */
};

struct an_stream {
	const struct xlate_ctx *x;
	int started;               /* message_start seen: the role chunk went out */
	int finished;              /* message_delta with a stop_reason seen */
	struct an_block *blocks;   /* by Anthropic content block index */
	size_t n_blocks;
	size_t n_tools;
	struct buf thinking;       /* the thinking block in progress */
	struct buf signature;
	json_t *redacted;          /* the redacted_thinking block in progress */
	struct an_counts counts;
};

static void *anthropic_stream_new(const struct xlate_ctx *x)
{
	struct an_stream *s = xcalloc(1, sizeof(*s));
	s->x = x;
	buf_init(&s->thinking, BUF_UNLIMITED);
	buf_init(&s->signature, BUF_UNLIMITED);
	s->counts = (struct an_counts){ -1, -1, -1, -1, -1 };
	return s;
}

static void anthropic_stream_free(void *st)
{
	struct an_stream *s = st;
	buf_free(&s->thinking);
	buf_free(&s->signature);
	json_decref(s->redacted);
	free(s->blocks);
	free(s);
}

/* A chunk with one choice whose delta is `delta` (stolen). */
static void push_delta(json_t *chunks, json_t *delta)
{
	json_t *choice = json_object();
	json_object_set_new(choice, "index", json_integer(0));
	json_object_set_new(choice, "delta", delta);
	json_object_set_new(choice, "logprobs", json_null());
	json_object_set_new(choice, "finish_reason", json_null());
	json_t *choices = json_array();
	json_array_append_new(choices, choice);
	json_t *chunk = json_object();
	json_object_set_new(chunk, "choices", choices);
	json_array_append_new(chunks, chunk);
}

static void push_string_delta(json_t *chunks, const char *key, const char *value)
{
	json_t *d = json_object();
	json_object_set_new(d, key, json_string(value));
	push_delta(chunks, d);
}

static void push_thinking_block(json_t *chunks, json_t *block)
{
	json_t *arr = json_array();
	json_array_append_new(arr, block);
	json_t *d = json_object();
	json_object_set_new(d, "thinking_blocks", arr);
	push_delta(chunks, d);
}

static struct an_block *block_at(struct an_stream *s, const json_t *ev)
{
	const json_t *idx = json_object_get(ev, "index");
	if (!json_is_integer(idx) || json_integer_value(idx) < 0 || json_integer_value(idx) > 100000)
		return NULL;
	size_t i = (size_t)json_integer_value(idx);
	if (i >= s->n_blocks) {
		s->blocks = xrealloc(s->blocks, (i + 1) * sizeof(*s->blocks));
		memset(s->blocks + s->n_blocks, 0, (i + 1 - s->n_blocks) * sizeof(*s->blocks));
		s->n_blocks = i + 1;
	}
	return &s->blocks[i];
}

static void block_start(struct an_stream *s, const json_t *ev, json_t *chunks)
{
	struct an_block *b = block_at(s, ev);
	const json_t *cb = json_object_get(ev, "content_block");
	const char *type = json_str(cb, "type");
	if (!b || !type)
		return;
	if (strcmp(type, "text") == 0) {
		b->kind = BLOCK_TEXT;
		const char *t = json_str(cb, "text");
		if (t && t[0])
			push_string_delta(chunks, "content", t);
	} else if (strcmp(type, "tool_use") == 0) {
		b->kind = BLOCK_TOOL;
		b->tool = s->n_tools++;
		json_t *fn = json_object();
		json_object_set_new(fn, "name", json_string(str_or(json_str(cb, "name"), "")));
		json_object_set_new(fn, "arguments", json_string(""));
		json_t *call = json_object();
		json_object_set_new(call, "index", json_integer((json_int_t)b->tool));
		json_object_set_new(call, "id", json_string(str_or(json_str(cb, "id"), "")));
		json_object_set_new(call, "type", json_string("function"));
		json_object_set_new(call, "function", fn);
		json_t *calls = json_array();
		json_array_append_new(calls, call);
		json_t *d = json_object();
		json_object_set_new(d, "tool_calls", calls);
		push_delta(chunks, d);
	} else if (strcmp(type, "thinking") == 0) {
		b->kind = BLOCK_THINKING;
		buf_reset(&s->thinking);
		buf_reset(&s->signature);
		const char *t = json_str(cb, "thinking");
		if (t && t[0]) {
			buf_puts(&s->thinking, t);
			push_string_delta(chunks, "reasoning_content", t);
		}
		if (json_str(cb, "signature"))
			buf_puts(&s->signature, json_str(cb, "signature"));
	} else if (strcmp(type, "redacted_thinking") == 0) {
		b->kind = BLOCK_REDACTED;
		json_decref(s->redacted);
		s->redacted = json_deep_copy(cb);
	} else {
		b->kind = BLOCK_OTHER;   /* server tools, citations: not part of the OpenAI shape */
	}
}

static void block_delta(struct an_stream *s, const json_t *ev, json_t *chunks)
{
	struct an_block *b = block_at(s, ev);
	const json_t *d = json_object_get(ev, "delta");
	const char *type = json_str(d, "type");
	if (!b || !type)
		return;
	if (strcmp(type, "text_delta") == 0 && b->kind == BLOCK_TEXT) {
		const char *t = json_str(d, "text");
		if (t && t[0])
			push_string_delta(chunks, "content", t);
	} else if (strcmp(type, "input_json_delta") == 0 && b->kind == BLOCK_TOOL) {
		const char *frag = json_str(d, "partial_json");
		if (!frag || !frag[0])
			return;
		json_t *fn = json_object();
		json_object_set_new(fn, "arguments", json_string(frag));
		json_t *call = json_object();
		json_object_set_new(call, "index", json_integer((json_int_t)b->tool));
		json_object_set_new(call, "function", fn);
		json_t *calls = json_array();
		json_array_append_new(calls, call);
		json_t *delta = json_object();
		json_object_set_new(delta, "tool_calls", calls);
		push_delta(chunks, delta);
	} else if (strcmp(type, "thinking_delta") == 0 && b->kind == BLOCK_THINKING) {
		const char *t = json_str(d, "thinking");
		if (t && t[0]) {
			buf_puts(&s->thinking, t);
			push_string_delta(chunks, "reasoning_content", t);
		}
	} else if (strcmp(type, "signature_delta") == 0 && b->kind == BLOCK_THINKING) {
		const char *sig = json_str(d, "signature");
		if (sig)
			buf_puts(&s->signature, sig);
	}
}

static void block_stop(struct an_stream *s, const json_t *ev, json_t *chunks)
{
	struct an_block *b = block_at(s, ev);
	if (!b)
		return;
	if (b->kind == BLOCK_THINKING) {
		json_t *block = json_object();
		json_object_set_new(block, "type", json_string("thinking"));
		json_object_set_new(block, "thinking", json_string(buf_str(&s->thinking)));
		json_object_set_new(block, "signature", json_string(buf_str(&s->signature)));
		push_thinking_block(chunks, block);
		buf_reset(&s->thinking);
		buf_reset(&s->signature);
	} else if (b->kind == BLOCK_REDACTED && s->redacted) {
		push_thinking_block(chunks, s->redacted);
		s->redacted = NULL;
	}
	b->kind = BLOCK_OTHER;
}

static enum stream_status anthropic_stream_event(void *st, const struct sse_event *ev,
						 json_t *chunks, struct usage *u, struct rerr *err)
{
	struct an_stream *s = st;
	const struct xlate_ctx *x = s->x;
	if (!ev->has_data)
		return STREAM_MORE;
	json_error_t jerr;
	json_t *data = json_loadb(ev->data, ev->data_len, 0, &jerr);
	if (!json_is_object(data)) {
		json_decref(data);
		rerr_set(err, 502, "server_error", "bad_upstream_response", NULL,
			 "%s sent a stream event that is not a JSON object", x->prov->name);
		return STREAM_ERROR;
	}
	const char *type = json_str(data, "type");
	if (!type)
		type = ev->event;
	enum stream_status rc = STREAM_MORE;
	int content_event = str_has_prefix(type, "content_block_") || strcmp(type, "message_delta") == 0;
	if ((strcmp(type, "message_start") == 0 || content_event) && !s->started) {
		/* The role chunk comes first, even from a stream that skipped message_start. */
		s->started = 1;
		json_t *d = json_object();
		json_object_set_new(d, "role", json_string("assistant"));
		json_object_set_new(d, "content", json_string(""));
		push_delta(chunks, d);
	}
	if (strcmp(type, "message_start") == 0) {
		counts_update(&s->counts, json_object_get(json_object_get(data, "message"), "usage"));
		counts_to_usage(&s->counts, u);
	} else if (strcmp(type, "content_block_start") == 0) {
		block_start(s, data, chunks);
	} else if (strcmp(type, "content_block_delta") == 0) {
		block_delta(s, data, chunks);
	} else if (strcmp(type, "content_block_stop") == 0) {
		block_stop(s, data, chunks);
	} else if (strcmp(type, "message_delta") == 0) {
		counts_update(&s->counts, json_object_get(data, "usage"));
		counts_to_usage(&s->counts, u);
		const char *stop = json_str(json_object_get(data, "delta"), "stop_reason");
		if (stop && !s->finished) {
			s->finished = 1;
			json_t *choice = json_object();
			json_object_set_new(choice, "index", json_integer(0));
			json_object_set_new(choice, "delta", json_object());
			json_object_set_new(choice, "logprobs", json_null());
			set_finish(choice, stop);
			json_t *choices = json_array();
			json_array_append_new(choices, choice);
			json_t *chunk = json_object();
			json_object_set_new(chunk, "choices", choices);
			json_array_append_new(chunks, chunk);
		}
	} else if (strcmp(type, "message_stop") == 0) {
		rc = STREAM_DONE;
	} else if (strcmp(type, "error") == 0) {
		error_from_envelope(x, data, err);
		rc = STREAM_ERROR;
	}
	/* ping and event types added later are ignored. */
	json_decref(data);
	return rc;
}

static enum stream_status anthropic_stream_eof(void *st, json_t *chunks, struct usage *u,
					       struct rerr *err)
{
	(void)chunks;
	(void)u;
	struct an_stream *s = st;
	if (s->finished)
		return STREAM_DONE;
	rerr_set(err, 502, "server_error", "bad_upstream_response", NULL,
		 "%s closed the stream before the message ended", s->x->prov->name);
	return STREAM_ERROR;
}

static void anthropic_map_error(const struct xlate_ctx *x, long status, const char *body,
				size_t len, long retry_after, struct rerr *err)
{
	json_error_t jerr;
	json_t *j = json_loadb(body, len, 0, &jerr);
	const json_t *e = json_object_get(j, "error");
	const char *msg = json_str(e, "message");
	map_upstream_status(x, status, msg, NULL, NULL, retry_after, err);
	json_decref(j);
}

const struct provider_ops provider_anthropic = {
	.api = "anthropic",
	.build_request = anthropic_build,
	.parse_response = anthropic_parse_response,
	.stream_new = anthropic_stream_new,
	.stream_event = anthropic_stream_event,
	.stream_eof = anthropic_stream_eof,
	.stream_free = anthropic_stream_free,
	.map_error = anthropic_map_error,
};
