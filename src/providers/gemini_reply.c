/* gemini_reply.c - the Google Gemini adapter, upstream to client: errors, replies and streams.
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
#include <stdlib.h>
#include <string.h>

#include "../jsonx.h"
#include "../util.h"
#include "gemini.h"
#include "provider.h"

/* Candidate indexes a stream may use (its state is a fixed array). */
#define GM_STREAM_SLOTS 64
/* Longest Retry-After taken from a RetryInfo detail, in seconds. */
#define GM_RETRY_MAX 86400

/* Present and not null (as in gemini.c). */
static int is_set(const json_t *v)
{
	return v && !json_is_null(v);
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

void gemini_map_error(const struct xlate_ctx *x, long status, const char *body, size_t len,
		      long retry_after, struct rerr *err)
{
	json_error_t jerr;
	json_t *j = jsonx_loadb(body, len, 0, &jerr);
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
	return usage_count(json_object_get(o, key));
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

/* The longest token whose bytes are listed: real tokens are a few bytes, and a listed byte costs
 * a JSON integer (some 60 bytes of memory); a longer one gets bytes null, as OpenAI allows. */
#define LOGPROB_BYTES_MAX 256

static json_t *logprob_entry(const json_t *c)
{
	const char *tok = json_str(c, "token");
	if (!tok)
		tok = "";
	json_t *e = json_object();
	json_object_set_new(e, "token", json_string(tok));
	const json_t *lp = json_object_get(c, "logProbability");
	json_object_set_new(e, "logprob", json_real(json_is_number(lp) ? json_number_value(lp) : 0.0));
	if (strlen(tok) > LOGPROB_BYTES_MAX) {
		json_object_set_new(e, "bytes", json_null());
		return e;
	}
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
	char *a = is_set(args) ? jsonx_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
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

/* The choice of one candidate, or NULL when its text could not be held. Text joined from parts is
 * never longer than the JSON that carried it: `max` is the reply's size. */
static json_t *choice_from_candidate(const struct xlate_ctx *x, const json_t *cand, long index,
				     size_t *ordinal, size_t max)
{
	struct buf text, thought;
	buf_init(&text, max);
	buf_init(&thought, max);
	int full = 0;
	json_t *calls = json_array();
	size_t i;
	const json_t *part;
	json_array_foreach(json_object_get(json_object_get(cand, "content"), "parts"), i, part)
	{
		const char *t = json_str(part, "text");
		if (json_is_object(json_object_get(part, "functionCall")))
			json_array_append_new(calls, tool_call_from_part(x, part, -1, (*ordinal)++));
		else if (t && buf_puts(json_is_true(json_object_get(part, "thought")) ? &thought : &text,
				       t) < 0)
			full = 1;
	}
	if (full) {
		json_decref(calls);
		buf_free(&text);
		buf_free(&thought);
		return NULL;
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

int gemini_parse_response(const struct xlate_ctx *x, const char *body, size_t len,
			  json_t **out, struct usage *u, struct rerr *err)
{
	json_error_t jerr;
	json_t *resp = jsonx_loadb(body, len, 0, &jerr);
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
		json_t *choice = choice_from_candidate(x, cand, index, &ordinal, len);
		if (!choice) {
			bad_reply(x, "a candidate whose text could not be held", err);
			goto out;
		}
		json_array_append_new(choices, choice);
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

void *gemini_stream_new(const struct xlate_ctx *x)
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
static int stream_candidate(struct gm_stream *s, const json_t *cand, long index, json_t *chunks,
			    size_t max)
{
	struct gm_cand *gc = &s->cand[index];
	if (gc->finished)
		return 0;   /* nothing may follow a finish chunk */
	stream_start(s, index, chunks);
	size_t first = json_array_size(chunks);
	/* Adjacent parts' text, never longer than the event that carried it (max). */
	struct buf text;
	buf_init(&text, max);
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
			if (buf_puts(&text, t) < 0) {
				buf_free(&text);
				return -1;
			}
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
	return 0;
}

static enum stream_status stream_error_json(const struct xlate_ctx *x, const char *text, size_t len,
					    struct rerr *err)
{
	json_error_t jerr;
	json_t *j = jsonx_loadb(text, len, 0, &jerr);
	const json_t *e = error_object(j);
	if (e)
		google_error(x, 0, e, 0, err);
	json_decref(j);
	return e ? STREAM_ERROR : STREAM_MORE;
}

enum stream_status gemini_stream_event(void *st, const struct sse_event *ev, json_t *chunks,
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
	json_t *resp = jsonx_loadb(ev->data, ev->data_len, 0, &jerr);
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
		if (stream_candidate(s, cand, index, chunks, ev->data_len) < 0) {
			bad_reply(x, "a stream event whose text could not be held", err);
			rc = STREAM_ERROR;
			goto out;
		}
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

enum stream_status gemini_stream_eof(void *st, json_t *chunks, struct usage *u,
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
