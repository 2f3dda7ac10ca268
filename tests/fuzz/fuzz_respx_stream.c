/* fuzz_respx_stream.c - the Responses stream translator (respx_out.c) fed the input as chat
 * chunks, one JSON text per line, then ended ([DONE]) or failed; and the same bytes as a
 * chat.completion for respx_from_chat.
 *
 * The first byte chooses: bit 0 end or fail, bits 1-2 the failure's status and code, bit 3 the
 * request body (plain, or with instructions, tools and settings), bit 4 whether the response is
 * also taken in mid-stream. Properties of the events: sequence numbers 0..n-1 consecutive; the first
 * is response.created and exactly one terminal event (completed, incomplete or failed) comes, last;
 * every event naming an item_id names an item added and not yet done; item ids are unique; each
 * output_item.added has output_index = the number of items added before it, and a matching .done
 * (same id, type and index) before the terminal event; every item is well-formed (§3 shapes, ids
 * "<prefix>_<hex>_<output_index>"); the terminal response's output is the .done items in order and
 * equals respx_stream_response; nothing is lost: the output's text, refusal and reasoning are the
 * chunks' deltas concatenated, and there is one function_call item per tool call index. respx_from_chat
 * on the same bytes gives a well-formed response.
 */
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "fuzz_common.h"
#include "respx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RESP_ID "resp_fz01"
#define HEX "fz01"

static int is_str(const json_t *o, const char *key)
{
	return json_is_string(json_object_get(o, key));
}

static const char *str_of(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static int is_status(const char *s, int in_progress_ok)
{
	return s && (strcmp(s, "completed") == 0 || strcmp(s, "incomplete") == 0 ||
		     (in_progress_ok && strcmp(s, "in_progress") == 0));
}

static void check_part(const json_t *p)
{
	const char *type = str_of(p, "type");
	FUZZ_ASSERT(type != NULL);
	if (strcmp(type, "output_text") == 0) {
		FUZZ_ASSERT(is_str(p, "text"));
		FUZZ_ASSERT(json_is_array(json_object_get(p, "annotations")));
		FUZZ_ASSERT(json_is_array(json_object_get(p, "logprobs")));
	} else {
		FUZZ_ASSERT(strcmp(type, "refusal") == 0 && is_str(p, "refusal"));
	}
}

/* An output item as §3 shapes it; `index` its output_index (-1: not checked). */
static void check_item(const json_t *item, long index, int in_progress_ok)
{
	const char *type = str_of(item, "type"), *id = str_of(item, "id");
	FUZZ_ASSERT(type != NULL && id != NULL);
	const char *prefix;
	if (strcmp(type, "message") == 0) {
		prefix = "msg";
		FUZZ_ASSERT(is_status(str_of(item, "status"), in_progress_ok));
		FUZZ_ASSERT(strcmp(str_of(item, "role"), "assistant") == 0);
		const json_t *content = json_object_get(item, "content");
		FUZZ_ASSERT(json_is_array(content));
		size_t i;
		const json_t *p;
		json_array_foreach(content, i, p)
			check_part(p);
	} else if (strcmp(type, "function_call") == 0) {
		prefix = "fc";
		FUZZ_ASSERT(is_status(str_of(item, "status"), in_progress_ok));
		FUZZ_ASSERT(is_str(item, "call_id") && json_string_length(json_object_get(item, "call_id")) > 0);
		FUZZ_ASSERT(is_str(item, "name") && is_str(item, "arguments"));
	} else {
		FUZZ_ASSERT(strcmp(type, "reasoning") == 0);
		prefix = "rs";
		const json_t *summary = json_object_get(item, "summary");
		FUZZ_ASSERT(json_is_array(summary));
		size_t i;
		const json_t *p;
		json_array_foreach(summary, i, p)
		{
			FUZZ_ASSERT(strcmp(str_of(p, "type"), "summary_text") == 0);
			FUZZ_ASSERT(is_str(p, "text"));
		}
	}
	if (index >= 0) {
		char want[64];
		snprintf(want, sizeof(want), "%s_%s_%ld", prefix, HEX, index);
		FUZZ_ASSERT(strcmp(id, want) == 0);
	}
}

/* A Response object: required members, status, well-formed output and (when final) usage. */
static void check_response(const json_t *r, int final)
{
	static const char *const required[] = { "id", "object", "created_at", "error",
						"incomplete_details", "instructions", "model", "tools",
						"output", "parallel_tool_calls", "metadata",
						"tool_choice", "temperature", "top_p" };
	FUZZ_ASSERT(json_is_object(r));
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		FUZZ_ASSERT(json_object_get(r, required[i]) != NULL);
	FUZZ_ASSERT(strcmp(str_of(r, "id"), RESP_ID) == 0);
	FUZZ_ASSERT(is_str(r, "model"));
	const json_t *out = json_object_get(r, "output");
	FUZZ_ASSERT(json_is_array(out));
	size_t i;
	const json_t *item;
	json_array_foreach(out, i, item)
		check_item(item, (long)i, !final);
	const json_t *u = json_object_get(r, "usage");
	if (!final) {
		FUZZ_ASSERT(u == NULL);
		return;
	}
	static const char *const counts[] = { "input_tokens", "output_tokens", "total_tokens" };
	for (size_t k = 0; k < 3; k++)
		FUZZ_ASSERT(json_integer_value(json_object_get(u, counts[k])) >= 0);
	FUZZ_ASSERT(json_is_integer(json_object_get(json_object_get(u, "input_tokens_details"),
						    "cached_tokens")));
	FUZZ_ASSERT(json_is_integer(json_object_get(json_object_get(u, "output_tokens_details"),
						    "reasoning_tokens")));
	const char *status = str_of(r, "status");
	FUZZ_ASSERT(status != NULL);
	if (strcmp(status, "incomplete") == 0)
		FUZZ_ASSERT(is_str(json_object_get(r, "incomplete_details"), "reason"));
	else
		FUZZ_ASSERT(json_is_null(json_object_get(r, "incomplete_details")));
	if (strcmp(status, "failed") == 0)
		FUZZ_ASSERT(is_str(json_object_get(r, "error"), "code"));
	else
		FUZZ_ASSERT(json_is_null(json_object_get(r, "error")));
}

struct tracker {
	json_int_t seq;       /* the next sequence_number */
	json_t *open;         /* item id -> output_index of the items added and not done */
	json_t *added;        /* the added items, by output_index */
	json_t *done;         /* the done items, by output_index */
	json_t *terminal;     /* the terminal event's response (borrowed from the events) */
};

static int is_terminal(const char *type)
{
	return strcmp(type, "response.completed") == 0 || strcmp(type, "response.incomplete") == 0 ||
	       strcmp(type, "response.failed") == 0;
}

static void on_item_event(struct tracker *t, const char *type, const json_t *ev)
{
	const json_t *item = json_object_get(ev, "item");
	const json_t *at = json_object_get(ev, "output_index");
	FUZZ_ASSERT(json_is_integer(at));
	const char *id = str_of(item, "id");
	FUZZ_ASSERT(id != NULL);
	if (strcmp(type, "response.output_item.added") == 0) {
		FUZZ_ASSERT((size_t)json_integer_value(at) == json_array_size(t->added));
		FUZZ_ASSERT(json_object_size(t->open) == 0); /* one open item at a time */
		for (size_t i = 0; i < json_array_size(t->added); i++)
			FUZZ_ASSERT(strcmp(str_of(json_array_get(t->added, i), "id"), id) != 0);
		check_item(item, (long)json_integer_value(at), 1);
		json_object_set_new(t->open, id, json_incref((json_t *)at));
		json_array_append(t->added, (json_t *)item);
	} else {
		const json_t *idx = json_object_get(t->open, id);
		FUZZ_ASSERT(idx && json_integer_value(idx) == json_integer_value(at));
		FUZZ_ASSERT((size_t)json_integer_value(at) == json_array_size(t->done));
		const json_t *added = json_array_get(t->added, (size_t)json_integer_value(at));
		FUZZ_ASSERT(strcmp(str_of(added, "type"), str_of(item, "type")) == 0);
		FUZZ_ASSERT(json_equal(json_object_get(added, "call_id"), json_object_get(item, "call_id")) ||
			    !json_object_get(added, "call_id"));
		check_item(item, (long)json_integer_value(at), 0);
		json_object_del(t->open, id);
		json_array_append(t->done, (json_t *)item);
	}
}

static void check_events(struct tracker *t, const json_t *events)
{
	size_t i;
	const json_t *ev;
	json_array_foreach(events, i, ev)
	{
		const char *type = str_of(ev, "type");
		FUZZ_ASSERT(type != NULL);
		FUZZ_ASSERT(t->terminal == NULL); /* nothing after the terminal event */
		FUZZ_ASSERT(json_integer_value(json_object_get(ev, "sequence_number")) == t->seq);
		FUZZ_ASSERT((t->seq == 0) == (strcmp(type, "response.created") == 0));
		t->seq++;
		char *text = json_dumps(ev, JSON_COMPACT);
		FUZZ_ASSERT(text != NULL);
		free(text);
		if (strncmp(type, "response.output_item.", 21) == 0) {
			on_item_event(t, type, ev);
		} else if (json_object_get(ev, "item_id")) {
			const json_t *idx = json_object_get(t->open, str_of(ev, "item_id"));
			FUZZ_ASSERT(idx != NULL);
			FUZZ_ASSERT(json_equal(idx, json_object_get(ev, "output_index")));
			FUZZ_ASSERT(is_str(ev, "delta") || is_str(ev, "text") || is_str(ev, "refusal") ||
				    is_str(ev, "arguments") || json_is_object(json_object_get(ev, "part")));
		} else if (strcmp(type, "error") == 0) {
			FUZZ_ASSERT(is_str(ev, "code") && is_str(ev, "message"));
			FUZZ_ASSERT(json_is_object(json_object_get(ev, "error")));
		} else {
			const json_t *r = json_object_get(ev, "response");
			int term = is_terminal(type);
			FUZZ_ASSERT(term || strcmp(type, "response.created") == 0 ||
				    strcmp(type, "response.in_progress") == 0);
			check_response(r, term);
			if (term)
				t->terminal = (json_t *)r;
		}
	}
}

/* What the chunks carried for choice 0: the text, refusal and reasoning deltas concatenated, and
 * the distinct tool call indexes. Nothing is lost: the output holds exactly these. */
struct expect {
	struct buf text, refusal, reasoning;
	json_t *calls;        /* index (decimal) -> true */
};

static void expect_str(struct buf *b, const json_t *v)
{
	if (json_is_string(v))
		buf_append(b, json_string_value(v), json_string_length(v));
}

static void expect_chunk(struct expect *x, const json_t *chunk)
{
	size_t i, k;
	const json_t *choice, *tc;
	json_array_foreach(json_object_get(chunk, "choices"), i, choice)
	{
		const json_t *idx = json_object_get(choice, "index");
		if (json_is_integer(idx) && json_integer_value(idx) != 0)
			continue;
		const json_t *d = json_object_get(choice, "delta");
		const json_t *r = json_object_get(d, "reasoning_content");
		if (!json_is_string(r) || json_string_length(r) == 0)
			r = json_object_get(d, "reasoning");
		expect_str(&x->reasoning, r);
		expect_str(&x->text, json_object_get(d, "content"));
		expect_str(&x->refusal, json_object_get(d, "refusal"));
		json_array_foreach(json_object_get(d, "tool_calls"), k, tc)
		{
			if (!json_is_object(tc))
				continue;
			const json_t *ci = json_object_get(tc, "index");
			char key[32];
			snprintf(key, sizeof(key), "%lld",
				 json_is_integer(ci) ? (long long)json_integer_value(ci) : (long long)k);
			if (json_object_size(x->calls) < 128 || json_object_get(x->calls, key))
				json_object_set_new(x->calls, key, json_true());
		}
	}
}

/* The output's texts, refusals, summaries and calls are what the chunks carried. */
static void expect_check(struct expect *x, const json_t *output)
{
	struct buf text, refusal, reasoning;
	buf_init(&text, BUF_UNLIMITED);
	buf_init(&refusal, BUF_UNLIMITED);
	buf_init(&reasoning, BUF_UNLIMITED);
	size_t calls = 0, i, k;
	const json_t *item, *p;
	json_array_foreach(output, i, item)
	{
		const char *type = str_of(item, "type");
		if (strcmp(type, "function_call") == 0)
			calls++;
		json_array_foreach(json_object_get(item, "summary"), k, p)
			expect_str(&reasoning, json_object_get(p, "text"));
		json_array_foreach(json_object_get(item, "content"), k, p)
		{
			expect_str(&text, json_object_get(p, "text"));
			expect_str(&refusal, json_object_get(p, "refusal"));
		}
	}
	FUZZ_ASSERT(calls == json_object_size(x->calls));
	FUZZ_ASSERT(text.len == x->text.len && memcmp(buf_str(&text), buf_str(&x->text), text.len) == 0);
	FUZZ_ASSERT(refusal.len == x->refusal.len &&
		    memcmp(buf_str(&refusal), buf_str(&x->refusal), refusal.len) == 0);
	FUZZ_ASSERT(reasoning.len == x->reasoning.len &&
		    memcmp(buf_str(&reasoning), buf_str(&x->reasoning), reasoning.len) == 0);
	buf_free(&text);
	buf_free(&refusal);
	buf_free(&reasoning);
}

static json_t *make_body(int rich)
{
	if (!rich)
		return json_pack("{ssss}", "model", "m", "input", "hi");
	return json_pack("{sssssss[{sssss{}}]sss{ss}sisb}", "model", "m", "input", "hi", "instructions",
			 "Be brief.", "tools", "type", "function", "name", "f", "parameters",
			 "tool_choice", "required", "metadata", "k", "v", "max_output_tokens", 64,
			 "store", 0);
}

static void fail_stream(struct respx_stream *s, unsigned mode, json_t *events)
{
	static const struct {
		int status;
		const char *type, *code;
	} errs[] = { { 429, "rate_limit_error", NULL },
		     { 500, "server_error", NULL },
		     { 402, "insufficient_quota", "insufficient_quota" },
		     { 400, "invalid_request_error", "invalid_prompt" } };
	struct rerr e;
	rerr_clear(&e);
	unsigned k = (mode >> 1) & 3;
	rerr_set(&e, errs[k].status, errs[k].type, errs[k].code, k == 3 ? "input" : NULL,
		 "upstream failed (%u)", mode);
	respx_stream_fail(s, &e, events);
}

static void fuzz_stream(const json_t *body, unsigned mode, const uint8_t *p, size_t n)
{
	struct respx_stream *s = respx_stream_new(body, RESP_ID, 1767225600);
	struct tracker t = { 0, json_object(), json_array(), json_array(), NULL };
	json_t *events = json_array();
	struct expect x = { .calls = json_object() };
	buf_init(&x.text, BUF_UNLIMITED);
	buf_init(&x.refusal, BUF_UNLIMITED);
	buf_init(&x.reasoning, BUF_UNLIMITED);
	for (size_t at = 0; at < n;) {
		const uint8_t *nl = memchr(p + at, '\n', n - at);
		size_t len = nl ? (size_t)(nl - (p + at)) : n - at;
		json_error_t je;
		json_t *c = json_loadb((const char *)p + at, len, 0, &je);
		if (c) {
			respx_stream_chunk(s, c, events);
			if (json_is_object(c))
				expect_chunk(&x, c);
		}
		json_decref(c);
		at += len + (nl != NULL);
		if (mode & 16) {
			json_t *now = respx_stream_response(s);
			check_response(now, 0);
			json_decref(now);
		}
	}
	if (mode & 1)
		fail_stream(s, mode, events);
	else
		respx_stream_end(s, events);
	check_events(&t, events);
	FUZZ_ASSERT(t.terminal != NULL);
	FUZZ_ASSERT(json_object_size(t.open) == 0);
	FUZZ_ASSERT(json_array_size(t.added) == json_array_size(t.done));
	FUZZ_ASSERT(json_equal(json_object_get(t.terminal, "output"), t.done));
	FUZZ_ASSERT((strcmp(str_of(t.terminal, "status"), "failed") == 0) == (int)(mode & 1));
	expect_check(&x, t.done);
	buf_free(&x.text);
	buf_free(&x.refusal);
	buf_free(&x.reasoning);
	json_decref(x.calls);
	json_t *final = respx_stream_response(s);
	FUZZ_ASSERT(json_equal(final, t.terminal));
	json_decref(final);
	/* Nothing more once finished. */
	json_t *more = json_array();
	respx_stream_end(s, more);
	fail_stream(s, mode, more);
	FUZZ_ASSERT(json_array_size(more) == 0);
	json_decref(more);
	json_decref(events);
	json_decref(t.open);
	json_decref(t.added);
	json_decref(t.done);
	respx_stream_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	unsigned mode = data[0];
	json_t *body = make_body((mode >> 3) & 1);
	fuzz_stream(body, mode, data + 1, size - 1);
	json_error_t je;
	json_t *c = json_loadb((const char *)data + 1, size - 1, 0, &je);
	if (c) {
		json_t *r = respx_from_chat(body, c, RESP_ID, 1767225600);
		check_response(r, 1);
		const char *status = str_of(r, "status");
		FUZZ_ASSERT(strcmp(status, "completed") == 0 || strcmp(status, "incomplete") == 0);
		json_decref(r);
		json_decref(c);
	}
	json_decref(body);
	return 0;
}
