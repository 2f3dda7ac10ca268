/* anthropic_reply.c - the Anthropic Messages adapter, upstream to client: replies, streams, errors.
 *
 * Responses: text blocks join into content, tool_use blocks become tool_calls (ids verbatim),
 * thinking becomes reasoning_content plus the thinking_blocks extension. The stream translator is
 * a state machine over Anthropic's events (message_start, content_block_start/delta/stop,
 * message_delta, message_stop, ping, error): content block indexes map to OpenAI tool-call
 * ordinals, each event yields at most a few chunks, and nothing is held beyond the event except
 * the text of the thinking block in progress (emitted whole, with its signature, at its end;
 * each at most STREAM_MAX_REASONING_BYTES, past which the stream fails).
 */
#include <stdlib.h>
#include <string.h>

#include "../jsonx.h"
#include "../util.h"
#include "anthropic.h"
#include "provider.h"

/* s, or dflt when s is NULL (as in anthropic.c). */
static const char *str_or(const char *s, const char *dflt)
{
	return s ? s : dflt;
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
	return usage_count(json_object_get(o, key));
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
	char *args = input ? jsonx_dumps(input, JSON_COMPACT) : NULL;
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

int anthropic_parse_response(const struct xlate_ctx *x, const char *body, size_t len,
			     json_t **out, struct usage *u, struct rerr *err)
{
	json_error_t jerr;
	json_t *msg = jsonx_loadb(body, len, 0, &jerr);
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
	struct buf thinking;       /* the thinking block in progress (bounded) */
	struct buf signature;      /* its signature (bounded) */
	const char *overflow;      /* the buffer that crossed its bound: "thinking" or "signature" */
	json_t *redacted;          /* the redacted_thinking block in progress */
	struct an_counts counts;
};

void *anthropic_stream_new(const struct xlate_ctx *x)
{
	struct an_stream *s = xcalloc(1, sizeof(*s));
	s->x = x;
	buf_init(&s->thinking, STREAM_MAX_REASONING_BYTES);
	buf_init(&s->signature, STREAM_MAX_REASONING_BYTES);
	s->counts = (struct an_counts){ -1, -1, -1, -1, -1 };
	return s;
}

void anthropic_stream_free(void *st)
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

/* Appends to the thinking block in progress; past the bound (or out of memory) the stream fails
 * at the end of this event (anthropic_stream_event). */
static void keep(struct an_stream *s, struct buf *b, const char *what, const char *t)
{
	if (!s->overflow && buf_puts(b, t) < 0)
		s->overflow = what;
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
			keep(s, &s->thinking, "thinking", t);
			push_string_delta(chunks, "reasoning_content", t);
		}
		if (json_str(cb, "signature"))
			keep(s, &s->signature, "signature", json_str(cb, "signature"));
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
			keep(s, &s->thinking, "thinking", t);
			push_string_delta(chunks, "reasoning_content", t);
		}
	} else if (strcmp(type, "signature_delta") == 0 && b->kind == BLOCK_THINKING) {
		const char *sig = json_str(d, "signature");
		if (sig)
			keep(s, &s->signature, "signature", sig);
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

enum stream_status anthropic_stream_event(void *st, const struct sse_event *ev,
					  json_t *chunks, struct usage *u, struct rerr *err)
{
	struct an_stream *s = st;
	const struct xlate_ctx *x = s->x;
	if (!ev->has_data)
		return STREAM_MORE;
	json_error_t jerr;
	json_t *data = jsonx_loadb(ev->data, ev->data_len, 0, &jerr);
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
	if (s->overflow && rc != STREAM_ERROR) {
		rerr_set(err, 502, "server_error", "bad_upstream_response", NULL,
			 "%s sent a thinking block whose %s is over %u MiB", x->prov->name, s->overflow,
			 STREAM_MAX_REASONING_BYTES >> 20);
		rc = STREAM_ERROR;
	}
	return rc;
}

enum stream_status anthropic_stream_eof(void *st, json_t *chunks, struct usage *u,
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

void anthropic_map_error(const struct xlate_ctx *x, long status, const char *body,
			 size_t len, long retry_after, struct rerr *err)
{
	json_error_t jerr;
	json_t *j = jsonx_loadb(body, len, 0, &jerr);
	const json_t *e = json_object_get(j, "error");
	const char *msg = json_str(e, "message");
	map_upstream_status(x, status, msg, NULL, NULL, retry_after, err);
	json_decref(j);
}
