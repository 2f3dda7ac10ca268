/* anthropic.c - the Anthropic Messages adapter (claude-* models behind the OpenAI API): requests.
 *
 * Requests: system and developer messages become the top-level `system` (one text block per
 * message, in order, their position in the conversation is lost); the rest becomes alternating
 * user/assistant turns of content blocks - tool results grouped into one user turn ahead of any
 * other block, assistant turns carrying their thinking blocks first (verbatim, as the client sent
 * them back in `thinking_blocks`), then text, then tool_use. max_tokens is always set. Parameters
 * Anthropic lacks are dropped and named (provider.h); those that would change the answer are
 * refused. reasoning_effort becomes extended thinking with a token budget.
 *
 * Replies, errors and streams are translated back in anthropic_reply.c; the provider_ops table at
 * the end joins the two halves.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../jsonx.h"
#include "../util.h"
#include "anthropic.h"
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

/* Anthropic wants max_tokens above the thinking budget: a max_tokens at or under it becomes
 * budget + max_tokens (the client's max_tokens then bounds the answer after the thinking). The
 * sum saturates: a budget estimate may see any integer a client sends. */
static int64_t thinking_max_tokens(int64_t max_tokens, int64_t budget)
{
	if (max_tokens > budget)
		return max_tokens;
	if (max_tokens < 0)
		max_tokens = 0;
	return budget > INT64_MAX - max_tokens ? INT64_MAX : budget + max_tokens;
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
	if (json_is_integer(bt))
		json_object_set_new(body, "max_tokens",
				    json_integer(thinking_max_tokens(max_tokens, json_integer_value(bt))));
	return 0;
}

/* The max_tokens anthropic_build sends: the client's (or the model's max_output_tokens), raised
 * by thinking_max_tokens when a thinking object or reasoning_effort asks for a budget (a forced
 * tool would turn thinking off: the bound is the worst case). */
static int64_t anthropic_max_output_tokens(const struct model_conf *m, const json_t *c)
{
	int64_t max_tokens = client_max_tokens(c);
	if (!max_tokens)
		max_tokens = m->max_output_tokens;
	const json_t *ct = json_object_get(c, "thinking");
	int64_t budget = 0;
	if (json_is_object(ct)) {
		const char *type = json_str(ct, "type");
		const json_t *bt = json_object_get(ct, "budget_tokens");
		if ((!type || strcmp(type, "disabled") != 0) && json_is_integer(bt))
			budget = json_integer_value(bt);
	} else if (json_str(c, "reasoning_effort")) {
		budget = reasoning_effort_budget(json_str(c, "reasoning_effort"));
	}
	return budget > 0 ? thinking_max_tokens(max_tokens, budget) : max_tokens;
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
	out->body = buf_steal_counted(&b, &out->body_counted);
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
	json_int_t max_tokens = client_max_tokens(c);
	if (!max_tokens)
		max_tokens = (json_int_t)x->model->max_output_tokens;
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

const struct provider_ops provider_anthropic = {
	.api = "anthropic",
	.build_request = anthropic_build,
	.parse_response = anthropic_parse_response,
	.stream_new = anthropic_stream_new,
	.stream_event = anthropic_stream_event,
	.stream_eof = anthropic_stream_eof,
	.stream_free = anthropic_stream_free,
	.map_error = anthropic_map_error,
	.max_output_tokens = anthropic_max_output_tokens,
};
