/* respx_out.c - the Responses API's response side: a chat.completion as a Response object, and a
 * chat stream as the Responses API's semantic events (responses-embeddings-protocol.md §3, §4,
 * §6.2, §6.4).
 *
 * Pure: JSON in, JSON out, no I/O. Both paths start from one response skeleton that echoes the
 * request's settings (response_base) and end in one terminal step (set_terminal: status,
 * incomplete_details, usage), so a stored non-streamed response and a stored stream look alike.
 *
 * The stream is a state machine with at most one open output item (reasoning, message, or
 * function_call) at a time; opening another kind closes it first, so output_index grows by one per
 * output_item.added and every closed item is appended to the response's output exactly as its
 * output_item.done carried it. A message holds one part at a time (output_text or refusal; a
 * switch closes the part and opens the next content_index). Tool calls are streamed in the order
 * they are opened: the first call seen while no call is open opens at once and streams its
 * argument fragments; a call that starts while another is open is buffered whole, and the
 * buffered calls (in index order) are opened, given their arguments as one delta and closed when
 * the open call closes (a non-call delta, the finish chunk, the end or a failure), so interleaved
 * fragments are never lost. Fragments for a call already closed are dropped.
 *
 * Limits: the text a stream keeps (reasoning summaries, message parts, calls' arguments, of every
 * item together) is at most RESPX_MAX_TEXT_BYTES, and a stream has at most RESPX_MAX_CALLS tool
 * calls; a delta that would cross either (or that the call-memory gauge refuses) ends the stream
 * as failed (error and response.failed), so nothing is ever left out of what the client is told
 * is the answer.
 *
 * Status: finish_reason length -> "incomplete" {reason:max_output_tokens}, content_filter ->
 * "incomplete" {reason:content_filter}, anything else (or none) -> "completed"; the items open when
 * an incomplete stream finishes (and the last item of an incomplete reply) get status
 * "incomplete". Responses in progress carry no usage (the spec's ResponseUsage is not nullable);
 * terminal ones always do (zeros when the upstream sent none).
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jsonx.h"
#include "memgauge.h"
#include "respx.h"
#include "util.h"

#define RESPX_MAX_ITEM_BYTES ((size_t)64 << 20)
/* All the text one stream keeps: the final response holds every closed item. */
#define RESPX_MAX_TEXT_BYTES RESPX_MAX_ITEM_BYTES
#define RESPX_MAX_CALLS 128
/* Token counts are clamped to this, so that sums never overflow. */
#define RESPX_MAX_COUNT ((json_int_t)1 << 50)

enum finish { FIN_NONE, FIN_STOP, FIN_LENGTH, FIN_FILTER };

/* ---- shared helpers ---- */

/* A JSON string for s (NULL = ""), bytes that are not UTF-8 replaced. */
static json_t *json_text(const char *s)
{
	json_t *j = json_string(s ? s : "");
	if (!j) {
		char *c = xstrdup(s);
		utf8_sanitize(c);
		j = json_string(c);
		free(c);
	}
	return j;
}

/* A JSON string of a buffer's bytes (built from JSON strings, so valid UTF-8). */
static json_t *json_of_buf(const struct buf *b)
{
	json_t *j = json_stringn(buf_str(b), b->len);
	return j ? j : json_text(buf_str(b));
}

/* The hex part of a response id ("resp_<hex>"), as a string that is valid UTF-8. */
static char *resp_hex(const char *resp_id)
{
	const char *s = resp_id ? resp_id : "";
	char *hex = xstrdup(str_has_prefix(s, "resp_") ? s + 5 : s);
	utf8_sanitize(hex);
	return hex;
}

static char *item_id(const char *prefix, const char *hex, size_t n)
{
	return xasprintf("%s_%s_%zu", prefix, hex, n);
}

static enum finish finish_of(const char *fr)
{
	if (!fr)
		return FIN_NONE;
	if (strcmp(fr, "length") == 0)
		return FIN_LENGTH;
	if (strcmp(fr, "content_filter") == 0)
		return FIN_FILTER;
	return FIN_STOP;
}

static int finish_incomplete(enum finish f)
{
	return f == FIN_LENGTH || f == FIN_FILTER;
}

static int str_in(const char *s, const char *const *list)
{
	for (; s && *list; list++) {
		if (strcmp(s, *list) == 0)
			return 1;
	}
	return 0;
}

/* A token count of obj[key]: a non-negative number, else 0; clamped to RESPX_MAX_COUNT. */
static json_int_t count_of(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);
	double d = json_is_number(v) ? json_number_value(v) : 0;
	if (!(d > 0))
		return 0;
	return d >= (double)RESPX_MAX_COUNT ? RESPX_MAX_COUNT : (json_int_t)d;
}

/* Chat usage -> Responses usage (§6.4); every key present, zeros when unknown (u may be NULL). */
static json_t *usage_of(const json_t *u)
{
	const json_t *pd = json_object_get(u, "prompt_tokens_details");
	const json_t *cd = json_object_get(u, "completion_tokens_details");
	json_int_t in = count_of(u, "prompt_tokens"), out = count_of(u, "completion_tokens");
	json_int_t total = json_is_number(json_object_get(u, "total_tokens")) ?
				   count_of(u, "total_tokens") : in + out;
	return json_pack("{sIs{sIsI}sIs{sI}sI}", "input_tokens", in, "input_tokens_details",
			 "cached_tokens", count_of(pd, "cached_tokens"), "cache_write_tokens",
			 count_of(pd, "cache_write_tokens"), "output_tokens", out,
			 "output_tokens_details", "reasoning_tokens", count_of(cd, "reasoning_tokens"),
			 "total_tokens", total);
}

/* ---- the response skeleton: the request's settings echoed ---- */

static int bool_or(const json_t *body, const char *key, int dflt)
{
	const json_t *v = json_object_get(body, key);
	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static json_t *number_or(const json_t *body, const char *key, double dflt)
{
	const json_t *v = json_object_get(body, key);
	return json_is_number(v) ? json_deep_copy(v) : json_real(dflt);
}

/* reasoning {effort, summary} as sent (values the spec knows), else null. */
static json_t *reasoning_echo(const json_t *body)
{
	static const char *const efforts[] = { "none", "minimal", "low", "medium", "high",
					       "xhigh", "max", NULL };
	static const char *const summaries[] = { "auto", "concise", "detailed", NULL };
	const json_t *r = json_object_get(body, "reasoning");
	if (!json_is_object(r))
		return json_null();
	const char *effort = json_str(r, "effort");
	const char *summary = json_str(r, "summary");
	json_t *o = json_object();
	json_object_set_new(o, "effort", str_in(effort, efforts) ? json_string(effort) : json_null());
	json_object_set_new(o, "summary",
			    str_in(summary, summaries) ? json_string(summary) : json_null());
	return o;
}

/* text as sent, with format defaulting to {"type":"text"}. */
static json_t *text_echo(const json_t *body)
{
	const json_t *t = json_object_get(body, "text");
	json_t *o = json_is_object(t) ? json_deep_copy(t) : json_object();
	if (!json_is_object(json_object_get(o, "format")))
		json_object_set_new(o, "format", json_pack("{ss}", "type", "text"));
	return o;
}

/* tool_choice as sent, default "auto"; {"type":"auto"|"none"|"required"} as the string (§2.3). */
static json_t *tool_choice_echo(const json_t *body)
{
	static const char *const modes[] = { "none", "auto", "required", NULL };
	const json_t *tc = json_object_get(body, "tool_choice");
	if (json_is_string(tc))
		return json_deep_copy(tc);
	if (json_is_object(tc)) {
		const char *type = json_str(tc, "type");
		if (str_in(type, modes) && json_object_size(tc) == 1)
			return json_string(type);
		return json_deep_copy(tc);
	}
	return json_string("auto");
}

/* tools as sent; a function tool gets the members the spec's FunctionTool requires: "strict" null
 * when it was not sent (the router forwards strict only when sent, §2.3), "parameters" null. */
static json_t *tools_echo(const json_t *body)
{
	const json_t *t = json_object_get(body, "tools");
	json_t *out = json_is_array(t) ? json_deep_copy(t) : json_array();
	size_t i;
	json_t *tool;
	json_array_foreach(out, i, tool)
	{
		const char *type = json_str(tool, "type");
		if (!type || strcmp(type, "function") != 0)
			continue;
		if (!json_object_get(tool, "strict"))
			json_object_set_new(tool, "strict", json_null());
		if (!json_object_get(tool, "parameters"))
			json_object_set_new(tool, "parameters", json_null());
	}
	return out;
}

/* The Response object with status "in_progress", empty output and no usage. */
static json_t *response_base(const json_t *body, const char *resp_id, int64_t created_at,
			     const char *model)
{
	static const char *const tiers[] = { "auto", "default", "flex", "scale", "priority",
					     "fast", "ultrafast", NULL };
	json_t *r = json_object();
	json_object_set_new(r, "id", json_text(resp_id));
	json_object_set_new(r, "object", json_string("response"));
	json_object_set_new(r, "created_at", json_integer(created_at));
	json_object_set_new(r, "status", json_string("in_progress"));
	json_object_set_new(r, "completed_at", json_null());
	json_object_set_new(r, "error", json_null());
	json_object_set_new(r, "incomplete_details", json_null());
	const json_t *v = json_object_get(body, "instructions");
	json_object_set_new(r, "instructions",
			    json_is_string(v) || json_is_array(v) ? json_deep_copy(v) : json_null());
	v = json_object_get(body, "max_output_tokens");
	json_object_set_new(r, "max_output_tokens", json_is_integer(v) ? json_deep_copy(v) : json_null());
	json_object_set_new(r, "model", json_text(model));
	json_object_set_new(r, "output", json_array());
	json_object_set_new(r, "parallel_tool_calls",
			    json_boolean(bool_or(body, "parallel_tool_calls", 1)));
	v = json_object_get(body, "previous_response_id");
	json_object_set_new(r, "previous_response_id", json_is_string(v) ? json_deep_copy(v) : json_null());
	json_object_set_new(r, "reasoning", reasoning_echo(body));
	json_object_set_new(r, "store", json_boolean(bool_or(body, "store", 1)));
	json_object_set_new(r, "temperature", number_or(body, "temperature", 1));
	json_object_set_new(r, "text", text_echo(body));
	json_object_set_new(r, "tool_choice", tool_choice_echo(body));
	json_object_set_new(r, "tools", tools_echo(body));
	json_object_set_new(r, "top_p", number_or(body, "top_p", 1));
	json_object_set_new(r, "truncation", json_string("disabled"));
	v = json_object_get(body, "user");
	if (json_is_string(v))
		json_object_set_new(r, "user", json_deep_copy(v));
	v = json_object_get(body, "metadata");
	json_object_set_new(r, "metadata", json_is_object(v) ? json_deep_copy(v) : json_object());
	json_object_set_new(r, "background", json_boolean(bool_or(body, "background", 0)));
	if (str_in(json_str(body, "service_tier"), tiers))
		json_object_set_new(r, "service_tier", json_deep_copy(json_object_get(body, "service_tier")));
	v = json_object_get(body, "top_logprobs");
	if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 20)
		json_object_set_new(r, "top_logprobs", json_deep_copy(v));
	static const char *const strs[] = { "safety_identifier", "prompt_cache_key" };
	for (size_t i = 0; i < ARRAY_SIZE(strs); i++) {
		v = json_object_get(body, strs[i]);
		if (json_is_string(v) && (i > 0 || json_string_length(v) <= 64))
			json_object_set_new(r, strs[i], json_deep_copy(v));
	}
	return r;
}

/* The terminal status from the finish reason, incomplete_details, completed_at and usage (stolen). */
static void set_terminal(json_t *r, enum finish fin, json_t *usage)
{
	const char *reason = fin == FIN_LENGTH ? "max_output_tokens" : "content_filter";
	int done = !finish_incomplete(fin);
	json_object_set_new(r, "status", json_string(done ? "completed" : "incomplete"));
	json_object_set_new(r, "incomplete_details",
			    done ? json_null() : json_pack("{ss}", "reason", reason));
	json_object_set(r, "completed_at",
			done ? json_object_get(r, "created_at") : json_null());
	json_object_set_new(r, "usage", usage);
}

/* ---- output items ---- */

static json_t *part_new(int refusal, json_t *text)
{
	if (refusal)
		return json_pack("{ssso}", "type", "refusal", "refusal", text);
	return json_pack("{sssos[]s[]}", "type", "output_text", "text", text, "annotations",
			 "logprobs");
}

static json_t *message_item(const char *id, const char *status, json_t *content)
{
	return json_pack("{ssssssssso}", "type", "message", "id", id, "status", status, "role",
			 "assistant", "content", content);
}

static json_t *call_item(const char *id, const char *call_id, const char *name, json_t *args,
			 const char *status)
{
	return json_pack("{sssssosososs}", "type", "function_call", "id", id, "call_id",
			 json_text(call_id), "name", json_text(name), "arguments", args, "status",
			 status);
}

static json_t *reasoning_item(const char *id, json_t *summary)
{
	return json_pack("{ssssso}", "type", "reasoning", "id", id, "summary", summary);
}

static json_t *summary_part(json_t *text)
{
	return json_pack("{ssso}", "type", "summary_text", "text", text);
}

/* ---- a chat.completion as a Response ---- */

/* The text of a message's content: a string, or the "text" of each part of an array. */
static json_t *content_text(const json_t *content)
{
	if (json_is_string(content))
		return json_deep_copy(content);
	struct buf b;
	buf_init(&b, RESPX_MAX_ITEM_BYTES);
	size_t i;
	const json_t *p;
	json_array_foreach(content, i, p)
	{
		const json_t *t = json_object_get(p, "text");
		if (json_is_string(t))
			buf_append(&b, json_string_value(t), json_string_length(t));
	}
	json_t *j = json_of_buf(&b);
	buf_free(&b);
	return j;
}

/* A tool call's arguments: a string as it is, another value serialised. */
static json_t *call_arguments(const json_t *a)
{
	if (json_is_string(a))
		return json_deep_copy(a);
	char *s = a ? jsonx_dumps(a, JSON_COMPACT) : NULL;
	json_t *j = json_text(s ? s : "");
	free(s);
	return j;
}

static void append_message(json_t *out, const char *hex, const json_t *msg)
{
	json_t *parts = json_array();
	json_t *text = content_text(json_object_get(msg, "content"));
	if (json_string_length(text) > 0)
		json_array_append_new(parts, part_new(0, json_incref(text)));
	json_decref(text);
	const json_t *refusal = json_object_get(msg, "refusal");
	if (json_is_string(refusal) && json_string_length(refusal) > 0)
		json_array_append_new(parts, part_new(1, json_deep_copy(refusal)));
	if (json_array_size(parts) == 0) {
		json_decref(parts);
		return;
	}
	char *id = item_id("msg", hex, json_array_size(out));
	json_array_append_new(out, message_item(id, "completed", parts));
	free(id);
}

static void append_calls(json_t *out, const char *hex, const json_t *calls)
{
	size_t i;
	const json_t *tc;
	json_array_foreach(calls, i, tc)
	{
		const json_t *fn = json_object_get(tc, "function");
		if (!json_is_object(fn))
			continue;
		size_t n = json_array_size(out);
		char *id = item_id("fc", hex, n);
		const char *call_id = json_str(tc, "id");
		char *made = call_id && *call_id ? NULL : item_id("call", hex, n);
		json_array_append_new(out, call_item(id, made ? made : call_id, json_str(fn, "name"),
						     call_arguments(json_object_get(fn, "arguments")),
						     "completed"));
		free(made);
		free(id);
	}
}

/* The reasoning text of a message or a delta: reasoning_content, else OpenRouter's reasoning. */
static const json_t *reasoning_of(const json_t *m)
{
	const json_t *r = json_object_get(m, "reasoning_content");
	if (!json_is_string(r) || json_string_length(r) == 0)
		r = json_object_get(m, "reasoning");
	return json_is_string(r) && json_string_length(r) > 0 ? r : NULL;
}

json_t *respx_from_chat(const json_t *body, const json_t *completion, const char *resp_id,
			int64_t created_at)
{
	char *hex = resp_hex(resp_id);
	const char *model = json_str(completion, "model");
	json_t *r = response_base(body, resp_id, created_at, model ? model : json_str(body, "model"));
	json_t *out = json_object_get(r, "output");
	const json_t *choice = json_array_get(json_object_get(completion, "choices"), 0);
	const json_t *msg = json_object_get(choice, "message");
	const json_t *rc = reasoning_of(msg);
	if (rc) {
		char *id = item_id("rs", hex, 0);
		json_t *summary = json_pack("[o]", summary_part(json_deep_copy(rc)));
		json_array_append_new(out, reasoning_item(id, summary));
		free(id);
	}
	append_message(out, hex, msg);
	append_calls(out, hex, json_object_get(msg, "tool_calls"));
	enum finish fin = finish_of(json_str(choice, "finish_reason"));
	json_t *last = json_array_get(out, json_array_size(out) - 1);
	if (finish_incomplete(fin) && json_object_get(last, "status"))
		json_object_set_new(last, "status", json_string("incomplete"));
	set_terminal(r, fin, usage_of(json_object_get(completion, "usage")));
	free(hex);
	return r;
}

/* ---- a chat stream as events ---- */

enum kind { K_NONE, K_REASONING, K_MESSAGE, K_CALL };
enum part { P_NONE, P_TEXT, P_REFUSAL };
enum call_state { CALL_PENDING, CALL_OPEN, CALL_DONE };

struct call {
	json_int_t index;      /* the chat tool call index */
	char *id, *name;       /* NULL until a delta carries them */
	struct buf args;
	enum call_state state;
};

struct respx_stream {
	json_t *resp;          /* the response: settings, closed items in output, status */
	char *hex;             /* resp_id without "resp_" */
	json_int_t seq;        /* the next sequence_number */
	int started, finished;
	enum finish fin;       /* the last finish_reason seen */
	json_t *usage;         /* Responses usage, NULL until a chunk carries one */
	/* the open item */
	enum kind open;
	size_t out_index;      /* its output_index */
	char *item_id;
	json_t *parts;         /* message: its closed parts */
	enum part part;        /* message: the open part */
	struct buf text;       /* the open reasoning summary or message part */
	size_t cur;            /* K_CALL: calls[cur] */
	struct call *calls;
	size_t ncalls;
	size_t kept;           /* text taken so far, every item's (RESPX_MAX_TEXT_BYTES) */
};

/* Appends an event {type, sequence_number} to events; returns it (borrowed) for its fields. */
static json_t *ev_push(struct respx_stream *s, json_t *events, const char *type)
{
	json_t *ev = json_object();
	json_object_set_new(ev, "type", json_string(type));
	json_object_set_new(ev, "sequence_number", json_integer(s->seq++));
	json_array_append_new(events, ev);
	return ev;
}

/* An event about the open item: + item_id, output_index. */
static json_t *ev_item(struct respx_stream *s, json_t *events, const char *type)
{
	json_t *ev = ev_push(s, events, type);
	json_object_set_new(ev, "item_id", json_string(s->item_id));
	json_object_set_new(ev, "output_index", json_integer((json_int_t)s->out_index));
	return ev;
}

/* response.output_item.added / .done with item (stolen). */
static void ev_output_item(struct respx_stream *s, json_t *events, const char *type, json_t *item)
{
	json_t *ev = ev_push(s, events, type);
	json_object_set_new(ev, "output_index", json_integer((json_int_t)s->out_index));
	json_object_set_new(ev, "item", item);
}

/* Appends a delta's text to b unless that would cross the stream's limit (or b's); 0 when
 * appended. */
static int take(struct respx_stream *s, struct buf *b, const json_t *str)
{
	size_t n = json_string_length(str);
	if (n > RESPX_MAX_TEXT_BYTES - s->kept || buf_append(b, json_string_value(str), n) < 0)
		return -1;
	s->kept += n;
	return 0;
}

/* What the stream cannot keep (an item's text past RESPX_MAX_ITEM_BYTES, the call-memory gauge
 * full, a call past RESPX_MAX_CALLS) ends it as failed: never a delta or a call left out. */
static void overflow(struct respx_stream *s, json_t *events, const char *what)
{
	struct rerr e;
	rerr_clear(&e);
	if (memgauge_refused())
		rerr_server_busy(&e, memgauge_cap() >> 20);
	else
		rerr_set(&e, 502, "server_error", "bad_upstream_response", NULL,
			 "The upstream's reply cannot be relayed whole: %s.", what);
	respx_stream_fail(s, &e, events);
}

/* Opens an item of kind k; its id is "<prefix>_<hex>_<output_index>". */
static void item_begin(struct respx_stream *s, enum kind k, const char *prefix)
{
	s->open = k;
	s->out_index = json_array_size(json_object_get(s->resp, "output"));
	s->item_id = item_id(prefix, s->hex, s->out_index);
}

/* Closes the open item: item (stolen) goes into the output and out with output_item.done. */
static void item_end(struct respx_stream *s, json_t *events, json_t *item)
{
	ev_output_item(s, events, "response.output_item.done", json_deep_copy(item));
	json_array_append_new(json_object_get(s->resp, "output"), item);
	free(s->item_id);
	s->item_id = NULL;
	s->open = K_NONE;
}

static void start(struct respx_stream *s, json_t *events)
{
	if (s->started)
		return;
	s->started = 1;
	json_object_set_new(ev_push(s, events, "response.created"), "response",
			    json_deep_copy(s->resp));
	json_object_set_new(ev_push(s, events, "response.in_progress"), "response",
			    json_deep_copy(s->resp));
}

/* -- reasoning -- */

static void reasoning_open(struct respx_stream *s, json_t *events)
{
	item_begin(s, K_REASONING, "rs");
	buf_reset(&s->text);
	ev_output_item(s, events, "response.output_item.added", reasoning_item(s->item_id, json_array()));
	json_t *ev = ev_item(s, events, "response.reasoning_summary_part.added");
	json_object_set_new(ev, "summary_index", json_integer(0));
	json_object_set_new(ev, "part", summary_part(json_string("")));
}

static void reasoning_close(struct respx_stream *s, json_t *events)
{
	json_t *text = json_of_buf(&s->text);
	json_t *ev = ev_item(s, events, "response.reasoning_summary_text.done");
	json_object_set_new(ev, "summary_index", json_integer(0));
	json_object_set(ev, "text", text);
	ev = ev_item(s, events, "response.reasoning_summary_part.done");
	json_object_set_new(ev, "summary_index", json_integer(0));
	json_object_set_new(ev, "part", summary_part(json_incref(text)));
	item_end(s, events, reasoning_item(s->item_id, json_pack("[o]", summary_part(text))));
}

/* -- message -- */

static void part_open(struct respx_stream *s, enum part p, json_t *events)
{
	s->part = p;
	buf_reset(&s->text);
	json_t *ev = ev_item(s, events, "response.content_part.added");
	json_object_set_new(ev, "content_index", json_integer((json_int_t)json_array_size(s->parts)));
	json_object_set_new(ev, "part", part_new(p == P_REFUSAL, json_string("")));
}

static void part_close(struct respx_stream *s, json_t *events)
{
	int refusal = s->part == P_REFUSAL;
	json_int_t ci = (json_int_t)json_array_size(s->parts);
	json_t *text = json_of_buf(&s->text);
	json_t *ev = ev_item(s, events, refusal ? "response.refusal.done" : "response.output_text.done");
	json_object_set_new(ev, "content_index", json_integer(ci));
	json_object_set(ev, refusal ? "refusal" : "text", text);
	if (!refusal)
		json_object_set_new(ev, "logprobs", json_array());
	json_t *part = part_new(refusal, text);
	ev = ev_item(s, events, "response.content_part.done");
	json_object_set_new(ev, "content_index", json_integer(ci));
	json_object_set(ev, "part", part);
	json_array_append_new(s->parts, part);
	s->part = P_NONE;
}

static void message_open(struct respx_stream *s, json_t *events)
{
	item_begin(s, K_MESSAGE, "msg");
	s->parts = json_array();
	s->part = P_NONE;
	ev_output_item(s, events, "response.output_item.added",
		       message_item(s->item_id, "in_progress", json_array()));
}

static void message_close(struct respx_stream *s, const char *status, json_t *events)
{
	if (s->part != P_NONE)
		part_close(s, events);
	json_t *parts = s->parts;
	s->parts = NULL;
	item_end(s, events, message_item(s->item_id, status, parts));
}

/* -- function calls -- */

static void call_open(struct respx_stream *s, struct call *c, json_t *events)
{
	item_begin(s, K_CALL, "fc");
	s->cur = (size_t)(c - s->calls);
	c->state = CALL_OPEN;
	if (!c->id)
		c->id = item_id("call", s->hex, s->out_index);
	ev_output_item(s, events, "response.output_item.added",
		       call_item(s->item_id, c->id, c->name, json_string(""), "in_progress"));
	if (c->args.len > 0) {
		json_t *ev = ev_item(s, events, "response.function_call_arguments.delta");
		json_object_set_new(ev, "delta", json_of_buf(&c->args));
	}
}

static void call_close(struct respx_stream *s, struct call *c, const char *status, json_t *events)
{
	json_t *args = json_of_buf(&c->args);
	json_t *ev = ev_item(s, events, "response.function_call_arguments.done");
	json_object_set_new(ev, "name", json_text(c->name));
	json_object_set(ev, "arguments", args);
	c->state = CALL_DONE;
	item_end(s, events, call_item(s->item_id, c->id, c->name, args, status));
}

/* The buffered call with the lowest index, or NULL. */
static struct call *call_pending(struct respx_stream *s)
{
	struct call *best = NULL;
	for (size_t i = 0; i < s->ncalls; i++) {
		struct call *c = &s->calls[i];
		if (c->state == CALL_PENDING && (!best || c->index < best->index))
			best = c;
	}
	return best;
}

/* Closes the open item with status; closing a call also opens and closes the buffered calls. */
static void close_open(struct respx_stream *s, const char *status, json_t *events)
{
	switch (s->open) {
	case K_REASONING:
		reasoning_close(s, events);
		break;
	case K_MESSAGE:
		message_close(s, status, events);
		break;
	case K_CALL:
		call_close(s, &s->calls[s->cur], status, events);
		for (struct call *c; (c = call_pending(s)) != NULL;) {
			call_open(s, c, events);
			call_close(s, c, status, events);
		}
		break;
	case K_NONE:
		break;
	}
}

static struct call *call_get(struct respx_stream *s, json_int_t index)
{
	for (size_t i = 0; i < s->ncalls; i++) {
		if (s->calls[i].index == index)
			return &s->calls[i];
	}
	if (s->ncalls == RESPX_MAX_CALLS)
		return NULL;
	if (!s->calls)
		s->calls = xcalloc(RESPX_MAX_CALLS, sizeof(*s->calls));
	struct call *c = &s->calls[s->ncalls++];
	memset(c, 0, sizeof(*c));
	c->index = index;
	buf_init(&c->args, RESPX_MAX_ITEM_BYTES);
	c->state = CALL_PENDING;
	return c;
}

/* One tool_calls[pos] delta: opens the call when no call is open, else buffers it. */
static void on_call(struct respx_stream *s, const json_t *tc, size_t pos, json_t *events)
{
	const json_t *idx = json_object_get(tc, "index");
	struct call *c = call_get(s, json_is_integer(idx) ? json_integer_value(idx) : (json_int_t)pos);
	if (!c) {
		overflow(s, events, "more than 128 tool calls in one reply");
		return;
	}
	if (c->state == CALL_DONE)
		return;
	const json_t *fn = json_object_get(tc, "function");
	const char *id = json_str(tc, "id"), *name = json_str(fn, "name");
	if (id && *id && !c->id)
		c->id = xstrdup(id);
	if (name && *name && !c->name)
		c->name = xstrdup(name);
	if (c->state == CALL_PENDING && s->open != K_CALL) {
		close_open(s, "completed", events);
		call_open(s, c, events);
	}
	const json_t *args = json_object_get(fn, "arguments");
	if (!json_is_string(args) || json_string_length(args) == 0)
		return;
	if (take(s, &c->args, args) < 0) {
		overflow(s, events, "more than 64 MiB of text (with tool-call arguments) in one reply");
		return;
	}
	if (c->state == CALL_OPEN) {
		json_t *ev = ev_item(s, events, "response.function_call_arguments.delta");
		json_object_set_new(ev, "delta", json_deep_copy(args));
	}
}

static void on_reasoning(struct respx_stream *s, const json_t *str, json_t *events)
{
	if (s->open != K_REASONING) {
		close_open(s, "completed", events);
		reasoning_open(s, events);
	}
	if (take(s, &s->text, str) < 0) {
		overflow(s, events, "more than 64 MiB of text in one reply");
		return;
	}
	json_t *ev = ev_item(s, events, "response.reasoning_summary_text.delta");
	json_object_set_new(ev, "summary_index", json_integer(0));
	json_object_set_new(ev, "delta", json_deep_copy(str));
}

static void on_text(struct respx_stream *s, const json_t *str, enum part p, json_t *events)
{
	if (s->open != K_MESSAGE) {
		close_open(s, "completed", events);
		message_open(s, events);
	}
	if (s->part != p) {
		if (s->part != P_NONE)
			part_close(s, events);
		part_open(s, p, events);
	}
	if (take(s, &s->text, str) < 0) {
		overflow(s, events, "more than 64 MiB of text in one reply");
		return;
	}
	json_t *ev = ev_item(s, events, p == P_REFUSAL ? "response.refusal.delta" :
							    "response.output_text.delta");
	json_object_set_new(ev, "content_index", json_integer((json_int_t)json_array_size(s->parts)));
	json_object_set_new(ev, "delta", json_deep_copy(str));
	if (p == P_TEXT)
		json_object_set_new(ev, "logprobs", json_array());
}

static int nonempty(const json_t *v)
{
	return json_is_string(v) && json_string_length(v) > 0;
}

static void on_delta(struct respx_stream *s, const json_t *delta, json_t *events)
{
	const json_t *r = reasoning_of(delta);
	if (r)
		on_reasoning(s, r, events);
	const json_t *v = json_object_get(delta, "content");
	if (nonempty(v))
		on_text(s, v, P_TEXT, events);
	v = json_object_get(delta, "refusal");
	if (nonempty(v))
		on_text(s, v, P_REFUSAL, events);
	size_t i;
	const json_t *tc;
	json_array_foreach(json_object_get(delta, "tool_calls"), i, tc)
	{
		if (json_is_object(tc))
			on_call(s, tc, i, events);
	}
}

struct respx_stream *respx_stream_new(const json_t *body, const char *resp_id, int64_t created_at)
{
	struct respx_stream *s = xcalloc(1, sizeof(*s));
	s->hex = resp_hex(resp_id);
	s->resp = response_base(body, resp_id, created_at, json_str(body, "model"));
	buf_init(&s->text, RESPX_MAX_ITEM_BYTES);
	return s;
}

void respx_stream_chunk(struct respx_stream *s, const json_t *chunk, json_t *events)
{
	if (s->finished || !json_is_object(chunk))
		return;
	const char *model = json_str(chunk, "model");
	if (model && *model)
		json_object_set_new(s->resp, "model", json_text(model));
	start(s, events);
	const json_t *u = json_object_get(chunk, "usage");
	if (json_is_object(u)) {
		json_decref(s->usage);
		s->usage = usage_of(u);
	}
	size_t i;
	const json_t *choice;
	json_array_foreach(json_object_get(chunk, "choices"), i, choice)
	{
		const json_t *idx = json_object_get(choice, "index");
		if (json_is_integer(idx) && json_integer_value(idx) != 0)
			continue;
		on_delta(s, json_object_get(choice, "delta"), events);
		if (s->finished)
			return;             /* it could not be kept (overflow) */
		const char *fr = json_str(choice, "finish_reason");
		if (fr) {
			s->fin = finish_of(fr);
			close_open(s, finish_incomplete(s->fin) ? "incomplete" : "completed", events);
		}
	}
}

/* The terminal fields of the response (usage: the stream's, else zeros). */
static void stream_terminal(struct respx_stream *s)
{
	set_terminal(s->resp, s->fin, s->usage ? json_deep_copy(s->usage) : usage_of(NULL));
	s->finished = 1;
}

void respx_stream_end(struct respx_stream *s, json_t *events)
{
	if (s->finished)
		return;
	start(s, events);
	int incomplete = finish_incomplete(s->fin);
	close_open(s, incomplete ? "incomplete" : "completed", events);
	stream_terminal(s);
	const char *type = incomplete ? "response.incomplete" : "response.completed";
	json_object_set_new(ev_push(s, events, type), "response", json_deep_copy(s->resp));
}

/* The code of response.error: one the spec's ResponseErrorCode knows, else by status. */
static const char *failed_code(const char *code, int status)
{
	static const char *const known[] = {
		"server_error", "rate_limit_exceeded", "invalid_prompt", "data_residency_mismatch",
		"bio_policy", "vector_store_timeout", "invalid_image", "invalid_image_format",
		"invalid_base64_image", "invalid_image_url", "image_too_large", "image_too_small",
		"image_parse_error", "image_content_policy_violation", "invalid_image_mode",
		"image_file_too_large", "unsupported_image_media_type", "empty_image_file",
		"failed_to_download_image", "image_file_not_found", NULL
	};
	if (str_in(code, known))
		return code;
	return status == 429 ? "rate_limit_exceeded" : "server_error";
}

void respx_stream_fail(struct respx_stream *s, const struct rerr *e, json_t *events)
{
	if (s->finished)
		return;
	start(s, events);
	close_open(s, "incomplete", events);
	int status = e ? e->status : 500;
	const char *code = e && e->code && *e->code ? e->code : failed_code(NULL, status);
	const char *type = e && e->type && *e->type ? e->type : "server_error";
	const char *text = e && e->message[0] ? e->message : "the upstream failed";
	json_t *message = json_text(text);
	json_t *param = e && e->param[0] ? json_text(e->param) : json_null();
	json_t *ev = ev_push(s, events, "error");
	json_object_set_new(ev, "code", json_text(code));
	json_object_set(ev, "message", message);
	json_object_set(ev, "param", param);
	json_object_set_new(ev, "error", json_pack("{sosOsOsO}", "type", json_text(type), "code",
						   json_object_get(ev, "code"), "message", message,
						   "param", param));
	json_decref(param);
	s->fin = FIN_STOP;
	stream_terminal(s);
	json_object_set_new(s->resp, "status", json_string("failed"));
	json_object_set_new(s->resp, "completed_at", json_null());
	json_object_set_new(s->resp, "error", json_pack("{sssO}", "code", failed_code(code, status),
							"message", message));
	json_decref(message);
	json_object_set_new(ev_push(s, events, "response.failed"), "response",
			    json_deep_copy(s->resp));
}

/* The open item as it stands (status in_progress). */
static json_t *open_snapshot(const struct respx_stream *s)
{
	switch (s->open) {
	case K_REASONING:
		return reasoning_item(s->item_id, json_pack("[o]", summary_part(json_of_buf(&s->text))));
	case K_MESSAGE: {
		json_t *parts = json_deep_copy(s->parts);
		if (s->part != P_NONE)
			json_array_append_new(parts, part_new(s->part == P_REFUSAL, json_of_buf(&s->text)));
		return message_item(s->item_id, "in_progress", parts);
	}
	case K_CALL: {
		const struct call *c = &s->calls[s->cur];
		return call_item(s->item_id, c->id, c->name, json_of_buf(&c->args), "in_progress");
	}
	case K_NONE:
		break;
	}
	return NULL;
}

json_t *respx_stream_response(const struct respx_stream *s)
{
	json_t *r = json_deep_copy(s->resp);
	json_t *item = s->finished ? NULL : open_snapshot(s);
	if (item)
		json_array_append_new(json_object_get(r, "output"), item);
	return r;
}

void respx_stream_free(struct respx_stream *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->ncalls; i++) {
		free(s->calls[i].id);
		free(s->calls[i].name);
		buf_free(&s->calls[i].args);
	}
	free(s->calls);
	json_decref(s->resp);
	json_decref(s->usage);
	json_decref(s->parts);
	buf_free(&s->text);
	free(s->item_id);
	free(s->hex);
	free(s);
}

int respx_stream_finished(const struct respx_stream *s)
{
	return s->finished;
}
