/* relay.c - upstream reply to client response, streaming and not (see relay.h). */
#include "relay.h"

#include <string.h>

#include "jsonx.h"
#include "util.h"

/* An upstream SSE event larger than this is treated as a broken stream. */
#define MAX_EVENT_BYTES (16u << 20)
/* Memory bounds of one stream (README "Memory per call"): frames held back before the first
 * content (role chunks: a few hundred bytes in a real stream), the reasoning text kept for the
 * next turn (DeepSeek: at most ~64K tokens), and one serialised client frame. Crossing one fails
 * the attempt: before any content another model may answer; after it the client gets an error
 * event and [DONE]. */
#define MAX_HELD_BYTES (1u << 20)
#define MAX_REASONING_BYTES STREAM_MAX_REASONING_BYTES
#define MAX_FRAME_BYTES (2 * MAX_EVENT_BYTES)
/* Thinking blocks (each a thinking text and a signature of at most the reasoning bound), tool call
 * ids and extra_content kept for the next turn, as JSON. */
#define MAX_TURN_BYTES (2 * MAX_REASONING_BYTES)

void relay_init(struct relay *r, const struct provider_ops *ops, const struct xlate_ctx *x,
		const struct relay_sink *sink)
{
	memset(r, 0, sizeof(*r));
	r->ops = ops;
	r->x = x;
	r->sink = *sink;
	r->st = ops->stream_new(x);
	sse_init(&r->sse, MAX_EVENT_BYTES);
	r->chunks = json_array();
	buf_init(&r->held, MAX_HELD_BYTES);
	buf_init(&r->frame, MAX_FRAME_BYTES);
	buf_init(&r->reasoning, MAX_REASONING_BYTES);
	rerr_clear(&r->err);
	usage_init(&r->usage);
}

void relay_free(struct relay *r)
{
	if (r->st)
		r->ops->stream_free(r->st);
	sse_free(&r->sse);
	json_decref(r->chunks);
	buf_free(&r->held);
	buf_free(&r->frame);
	buf_free(&r->reasoning);
	json_decref(r->turn);
	usage_clear(&r->usage);
}

int relay_started(const struct relay *r)
{
	return r->frames_out > 0;
}

/* A bound of this stream was crossed: the attempt fails with a bad upstream response. */
static int fail_bound(struct relay *r, const char *fmt, unsigned limit)
{
	rerr_set(&r->err, 502, "server_error", "bad_upstream_response", NULL, fmt, r->x->prov->name,
		 limit >> 20);
	r->state = RELAY_FAILED;
	return -1;
}

static int sink_write(struct relay *r, const char *p, size_t n)
{
	if (r->state == RELAY_CLIENT_GONE)
		return -1;
	if (r->sink.write(r->sink.ud, p, n) < 0) {
		r->state = RELAY_CLIENT_GONE;
		return -1;
	}
	r->frames_out++;
	return 0;
}

/* Held frames go out together with the first frame that matters. */
static int flush_held(struct relay *r)
{
	if (!r->held.len)
		return 0;
	int rc = sink_write(r, r->held.p, r->held.len);
	buf_reset(&r->held);
	return rc;
}

static int delta_has_content(const json_t *chunk)
{
	const json_t *choices = json_object_get(chunk, "choices");
	size_t i;
	const json_t *c;
	json_array_foreach(choices, i, c)
	{
		if (!json_is_null(json_object_get(c, "finish_reason")) &&
		    json_object_get(c, "finish_reason"))
			return 1;
		const json_t *d = json_object_get(c, "delta");
		const char *keys[] = { "content", "tool_calls", "refusal", "reasoning_content",
				       "function_call", "audio" };
		for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
			const json_t *v = json_object_get(d, keys[k]);
			if (!v || json_is_null(v))
				continue;
			if (json_is_string(v) && json_string_length(v) == 0)
				continue;
			return 1;
		}
	}
	return 0;
}

/* Counts the text a chunk carries: the measure of a stream cut before its usage arrived. */
static void count_text(struct relay *r, const json_t *chunk)
{
	const json_t *choices = json_object_get(chunk, "choices");
	size_t i, j;
	const json_t *c, *tc;
	json_array_foreach(choices, i, c)
	{
		const json_t *d = json_object_get(c, "delta");
		if (!json_is_object(d))
			continue;
		const char *keys[] = { "content", "reasoning_content", "refusal" };
		for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
			const json_t *v = json_object_get(d, keys[k]);
			if (json_is_string(v))
				r->out_chars += (int64_t)json_string_length(v);
		}
		json_array_foreach(json_object_get(d, "tool_calls"), j, tc)
		{
			const json_t *args = json_object_get(json_object_get(tc, "function"), "arguments");
			if (json_is_string(args))
				r->out_chars += (int64_t)json_string_length(args);
		}
	}
}

/* The output cap: a stream whose text passes what the request allows, measured as the partial
 * stream's charge is (about 4 characters a token) with a margin of 2x and 4,096 characters for
 * the measure's error, is a runaway upstream: it is cut there, before the frame that passes it
 * goes out. Returns -1 (the relay failed, r->err says why) when the cap is passed. */
#define OUTPUT_CAP_CHARS_PER_TOKEN 8
#define OUTPUT_CAP_SLACK_CHARS 4096
static int output_cap(struct relay *r)
{
	if (r->max_out_tokens <= 0 ||
	    r->out_chars <= r->max_out_tokens * OUTPUT_CAP_CHARS_PER_TOKEN + OUTPUT_CAP_SLACK_CHARS)
		return 0;
	rerr_set(&r->err, 502, "server_error", "output_limit_exceeded", NULL,
		 "%s sent more output than the request allows (%lld tokens); the stream was ended there.",
		 r->x->prov->name, (long long)r->max_out_tokens);
	r->state = RELAY_FAILED;
	return -1;
}

/* What of a delta note_turn keeps for the next turn, as JSON bytes: thinking blocks, tool call ids
 * and extra_content (not the arguments). Bounded like the reasoning text, since a provider's
 * translator may hand over large blocks one by one. */
static size_t kept_bytes(const json_t *blocks, const json_t *calls)
{
	size_t n = json_array_size(blocks) ? json_dumpb(blocks, NULL, 0, JSON_COMPACT) : 0;
	size_t i;
	const json_t *tc;
	json_array_foreach(calls, i, tc)
	{
		const json_t *extra = json_object_get(tc, "extra_content");
		if (json_str(tc, "id"))
			n += json_string_length(json_object_get(tc, "id"));
		if (extra)
			n += json_dumpb(extra, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
	}
	return n;
}

/* Collects, from choice 0's delta, what toolstate_from_message may keep. */
static void note_turn(struct relay *r, const json_t *chunk)
{
	const json_t *c0 = json_array_get(json_object_get(chunk, "choices"), 0);
	const json_t *d = json_object_get(c0, "delta");
	if (!json_is_object(d) || json_integer_value(json_object_get(c0, "index")) != 0)
		return;
	const json_t *calls = json_object_get(d, "tool_calls");
	const json_t *blocks = json_object_get(d, "thinking_blocks");
	const char *reasoning = json_str(d, "reasoning_content");
	if (reasoning && r->x->prov->keep_reasoning_content && buf_puts(&r->reasoning, reasoning) < 0) {
		fail_bound(r, "%s sent more than %u MiB of reasoning_content", MAX_REASONING_BYTES);
		return;
	}
	if (!json_array_size(calls) && !json_array_size(blocks))
		return;
	r->turn_bytes += kept_bytes(blocks, calls);
	if (r->turn_bytes > MAX_TURN_BYTES) {
		fail_bound(r, "%s sent more than %u MiB of thinking blocks and tool calls to keep",
			   MAX_TURN_BYTES);
		return;
	}
	if (!r->turn) {
		r->turn = json_object();
		json_object_set_new(r->turn, "tool_calls", json_array());
		json_object_set_new(r->turn, "thinking_blocks", json_array());
	}
	json_array_extend(json_object_get(r->turn, "thinking_blocks"), (json_t *)blocks);
	json_t *acc = json_object_get(r->turn, "tool_calls");
	size_t i;
	const json_t *tc;
	json_array_foreach(calls, i, tc)
	{
		const json_t *idx = json_object_get(tc, "index");
		if (!json_is_integer(idx) || json_integer_value(idx) < 0 || json_integer_value(idx) > 4096)
			continue;
		size_t k = (size_t)json_integer_value(idx);
		while (json_array_size(acc) <= k)
			json_array_append_new(acc, json_object());
		json_t *slot = json_array_get(acc, k);
		if (json_str(tc, "id"))
			json_object_set(slot, "id", json_object_get(tc, "id"));
		if (json_object_get(tc, "extra_content"))
			json_object_set(slot, "extra_content", json_object_get(tc, "extra_content"));
	}
}

const json_t *relay_turn(struct relay *r)
{
	if (!r->turn)
		return NULL;
	if (r->reasoning.len)
		json_object_set_new(r->turn, "reasoning_content", json_string(buf_str(&r->reasoning)));
	return r->turn;
}

static void note_finish(struct relay *r, const json_t *chunk)
{
	const json_t *choices = json_object_get(chunk, "choices");
	size_t i;
	const json_t *c;
	json_array_foreach(choices, i, c)
	{
		const char *fr = json_str(c, "finish_reason");
		if (fr) {
			size_t n = strlen(fr);
			if (n >= sizeof(r->finish_reason))
				n = sizeof(r->finish_reason) - 1;
			memcpy(r->finish_reason, fr, n);
			r->finish_reason[n] = '\0';
		}
	}
}

/* Serialises one chunk with the router's id/object/created/model. A chunk that already has an
 * "id" member (a relayed OpenAI chunk) gets the values in place; otherwise they go in front. */
static int frame_chunk(struct relay *r, json_t *body)
{
	const struct xlate_ctx *x = r->x;
	json_t *c = body;
	if (json_object_get(body, "id")) {
		json_incref(c);
	} else {
		c = json_object();
		json_object_set_new(c, "id", json_null());
		json_object_set_new(c, "object", json_null());
		json_object_set_new(c, "created", json_null());
		json_object_set_new(c, "model", json_null());
		json_object_update(c, body);
	}
	json_object_set_new(c, "id", json_string(x->id));
	json_object_set_new(c, "object", json_string("chat.completion.chunk"));
	json_object_set_new(c, "created", json_integer(x->created));
	json_object_set_new(c, "model", json_string(x->public_model));
	buf_reset(&r->frame);
	int rc = buf_puts(&r->frame, "data: ") | json_to_buf(c, &r->frame) |
		 buf_puts(&r->frame, "\n\n");
	json_decref(c);
	if (rc < 0)
		return fail_bound(r, "%s sent a stream event that makes a client frame over %u MiB",
				  MAX_FRAME_BYTES);
	return 0;
}

static int emit_chunks(struct relay *r)
{
	size_t i;
	json_t *chunk;
	int rc = 0;
	json_array_foreach(r->chunks, i, chunk)
	{
		if (rc < 0)
			break;
		note_finish(r, chunk);
		note_turn(r, chunk);
		count_text(r, chunk);
		if (output_cap(r) < 0 || r->state == RELAY_FAILED || frame_chunk(r, chunk) < 0) {
			rc = -1;
			break;
		}
		if (!relay_started(r) && !delta_has_content(chunk)) {
			if (buf_append(&r->held, r->frame.p, r->frame.len) < 0) {
				rc = fail_bound(r, "%s sent more than %u MiB of stream before any content",
						MAX_HELD_BYTES);
				break;
			}
			continue;
		}
		if (!r->first_content_us)
			r->first_content_us = clock_mono_us();
		if (flush_held(r) < 0 || sink_write(r, r->frame.p, r->frame.len) < 0)
			rc = -1;
	}
	json_array_clear(r->chunks);
	return rc;
}

static void finish_ok(struct relay *r)
{
	if (flush_held(r) < 0)
		return;
	if (r->x->include_usage) {
		json_t *u = r->usage.json ? json_incref(r->usage.json) : usage_to_json(&r->usage);
		json_t *body = json_object();
		json_object_set_new(body, "choices", json_array());
		json_object_set_new(body, "usage", u);
		int rc = frame_chunk(r, body);
		json_decref(body);
		if (rc < 0 || sink_write(r, r->frame.p, r->frame.len) < 0)
			return;
	}
	static const char done[] = "data: [DONE]\n\n";
	if (sink_write(r, done, sizeof(done) - 1) < 0)
		return;
	r->state = RELAY_DONE;
}

static int on_event(void *ud, const struct sse_event *ev)
{
	struct relay *r = ud;
	unsigned long refused = jsonx_refusals();
	enum stream_status st = r->ops->stream_event(r->st, ev, r->chunks, &r->usage, &r->err);
	if (st == STREAM_ERROR && jsonx_refusals() != refused)
		rerr_set(&r->err, 502, "server_error", "bad_upstream_response", NULL,
			 "%s sent a stream event too large to parse (over %zu MiB of memory)",
			 r->x->prov->name, jsonx_parse_ceiling(ev->data_len) >> 20);
	if (json_array_size(r->chunks))
		r->progress_events++;
	if (emit_chunks(r) < 0)
		return -1;
	if (st == STREAM_DONE) {
		finish_ok(r);
		return 1;
	}
	if (st == STREAM_ERROR) {
		r->state = RELAY_FAILED;
		return 1;
	}
	return 0;
}

int relay_feed(struct relay *r, const char *p, size_t n)
{
	if (r->state != RELAY_RUNNING)
		return -1;
	int rc = sse_feed(&r->sse, p, n, on_event, r);
	if (rc == -1 && r->state == RELAY_RUNNING) {
		rerr_set(&r->err, 502, "server_error", "bad_upstream_response", NULL,
			 "%s sent a stream event larger than %u bytes", r->x->prov->name, MAX_EVENT_BYTES);
		r->state = RELAY_FAILED;
	}
	return r->state == RELAY_RUNNING ? 0 : -1;
}

void relay_finish(struct relay *r)
{
	if (r->state != RELAY_RUNNING)
		return;
	int rc = sse_finish(&r->sse, on_event, r);
	if (rc == -1 && r->state == RELAY_RUNNING) {
		rerr_set(&r->err, 502, "server_error", "bad_upstream_response", NULL,
			 "%s sent a stream event larger than %u bytes", r->x->prov->name, MAX_EVENT_BYTES);
		r->state = RELAY_FAILED;
	}
	if (rc != 0 || r->state != RELAY_RUNNING)
		return;
	enum stream_status st = r->ops->stream_eof(r->st, r->chunks, &r->usage, &r->err);
	if (emit_chunks(r) < 0)
		return;
	if (st == STREAM_DONE)
		finish_ok(r);
	else
		r->state = RELAY_FAILED;
}

void relay_fail(struct relay *r, const struct rerr *e)
{
	if (r->state != RELAY_RUNNING)
		return;
	r->err = *e;
	r->state = RELAY_FAILED;
}

void relay_emit_error(struct relay *r)
{
	if (r->state == RELAY_CLIENT_GONE || !relay_started(r))
		return;
	json_t *env = rerr_envelope(&r->err);
	buf_reset(&r->frame);
	buf_puts(&r->frame, "data: ");
	json_to_buf(env, &r->frame);
	buf_puts(&r->frame, "\n\ndata: [DONE]\n\n");
	json_decref(env);
	sink_write(r, r->frame.p, r->frame.len);
}

int relay_response(const struct provider_ops *ops, const struct xlate_ctx *x, const char *body,
		   size_t len, json_t **out, struct usage *u, struct rerr *err)
{
	json_t *resp = NULL;
	unsigned long refused = jsonx_refusals();
	if (ops->parse_response(x, body, len, &resp, u, err) < 0) {
		if (jsonx_refusals() != refused)
			rerr_set(err, 502, "server_error", "bad_upstream_response", NULL,
				 "%s returned a reply too large to parse (over %zu MiB of memory)",
				 x->prov->name, jsonx_parse_ceiling(len) >> 20);
		return -1;
	}
	/* The router's id and the public model name go first, as in OpenAI's own replies. */
	json_t *c = json_object();
	json_object_set_new(c, "id", json_string(x->id));
	json_object_set_new(c, "object", json_string("chat.completion"));
	json_t *created = json_object_get(resp, "created");
	json_object_set_new(c, "created",
			    json_is_integer(created) ? json_incref(created) : json_integer(x->created));
	json_object_set_new(c, "model", json_string(x->public_model));
	json_object_del(resp, "id");
	json_object_del(resp, "object");
	json_object_del(resp, "created");
	json_object_del(resp, "model");
	json_object_update(c, resp);
	json_decref(resp);
	*out = c;
	return 0;
}
