/* provider.h - the provider vtable: pure translators between OpenAI's Chat Completions and an
 * upstream API.
 *
 * One struct provider_ops per wire protocol (curl's vtls model): openai.c serves OpenAI and every
 * OpenAI-compatible provider (DeepSeek, OpenRouter, Groq are configuration rows, not files).
 * Translators are pure functions - JSON in, JSON out, no I/O - so the fixture tests and fuzz
 * targets drive them directly. Streams are small state machines fed one upstream SSE event at a
 * time; each call appends zero or more OpenAI chunk objects to an array, which the relay
 * (relay.c) stamps with id/model/created and writes to the client.
 *
 * Rules every translator follows (provider-protocols.md 2.8):
 * - Never silent. A client field the target cannot honour is translated when possible, else
 *   dropped and named through param_unsupported() (which turns it into a 400 in strict mode); a
 *   field set to its default value (or null/false) is removed without notice. Fields that would
 *   change the result and cannot be emulated (n > 1 where only one choice exists, audio output,
 *   OpenAI's custom tools, file_id references, audio input where unsupported) are refused with
 *   400 unsupported_parameter, strict or not. Top-level fields a non-OpenAI translator does not
 *   know are dropped and named the same way (they would be rejected upstream).
 * - Reasoning that must survive a turn travels in extension fields the client sends back:
 *     message.reasoning_content        reasoning text (all providers; DeepSeek needs it back on
 *                                      tool-call turns)
 *     message.thinking_blocks          Anthropic thinking/redacted_thinking blocks, verbatim, with
 *                                      signatures; streams emit each completed block as a delta
 *                                      {"thinking_blocks":[block]}
 *     tool_calls[i].extra_content.google.thought_signature
 *                                      Gemini's signature of that function call
 *     tool_calls[i].extra_content.google.function_call_id
 *                                      the id Gemini gave the call, when it gave one
 *   When a client drops them, the dispatcher restores them from its store before translating
 *   (keyed by tool call id), so translators only ever read the message fields.
 * - A provider's finish reason that OpenAI's enum cannot express exactly is kept in
 *   choices[i].provider_finish_reason.
 * - Usage follows OpenAI's invariants (10.2): prompt includes cached tokens, completion includes
 *   reasoning tokens, total = prompt + completion.
 */
#ifndef ROUTER_PROVIDER_H
#define ROUTER_PROVIDER_H

#include <jansson.h>
#include <stdint.h>

#include "../buf.h"
#include "../config.h"
#include "../errors.h"
#include "../sse.h"
#include "../upstream.h"

/* Token usage in OpenAI's semantics: prompt includes cached tokens, completion includes
 * reasoning tokens. -1 = not reported. */
struct usage {
	int have;
	int64_t prompt, completion, total, cached, cache_write, reasoning;
	int estimated;        /* the counts are the router's estimate (the upstream gave none) */
	int have_cost;        /* the provider reported the cost itself (OpenRouter) */
	int64_t cost_nusd;
	json_t *json;         /* the normalised usage object for the client (owned), or NULL */
};

/* Token counts from an upstream are clamped to 0..USAGE_COUNT_MAX (a reply of more than a billion
 * tokens is a broken or hostile upstream), so cost products stay far inside int64. */
#define USAGE_COUNT_MAX 1000000000LL
/* An upstream count as the router keeps it: -1 when v is not a non-negative number (integer or
 * real), else v clamped to USAGE_COUNT_MAX. Every provider's usage parser reads counts with it. */
int64_t usage_count(const json_t *v);
/* Saturating cost arithmetic in nano-USD on non-negative operands: the result is clamped to
 * 0..COST_NUSD_MAX (one million USD), never wraps. */
#define COST_NUSD_MAX 1000000000000000LL
int64_t cost_mul(int64_t tokens, int64_t price_nusd);
int64_t cost_add(int64_t a, int64_t b);

void usage_init(struct usage *u);
void usage_clear(struct usage *u);
/* Reads an OpenAI-shaped usage object (also DeepSeek's cache counters and OpenRouter's cost)
 * into u and keeps a normalised copy in u->json. Returns 0, or -1 if it is not a usage object. */
int usage_from_openai(struct usage *u, const json_t *usage);
/* Cost in nano-USD from the model's prices (or the provider-reported cost when present). */
int64_t usage_cost_nusd(const struct usage *u, const struct model_conf *m, const char **source);
/* A fresh OpenAI usage object built from the counters. */
json_t *usage_to_json(const struct usage *u);

/* Everything a translator knows about one upstream attempt; all borrowed. */
struct xlate_ctx {
	const struct config *cfg;
	const struct provider_conf *prov;
	const struct model_conf *model;
	const char *upstream_model;
	const char *public_model;
	const char *id;            /* the router's request id, "chatcmpl-..." */
	int64_t created;           /* unix seconds */
	int stream;
	int include_usage;         /* the client asked for a usage chunk */
	int embed;                 /* an embeddings request (embed_*), not a chat completion */
};

enum stream_status { STREAM_MORE = 0, STREAM_DONE = 1, STREAM_ERROR = -1 };

/* The most reasoning text (and its signature) one stream may make the router keep: a stream state
 * or relay buffer that would grow past it fails the attempt (README "Memory per call"). */
#define STREAM_MAX_REASONING_BYTES (4u << 20)

struct provider_ops {
	const char *api;
	/* Builds the upstream request from the validated client request (borrowed). Parameters the
	 * target cannot honour are appended to `dropped` (comma-separated); in strict mode they are
	 * an error instead. Returns 0 or -1 with err set. */
	int (*build_request)(const struct xlate_ctx *x, const json_t *client, struct upstream_req *out,
			     struct buf *dropped, struct rerr *err);
	/* Translates a 2xx non-streaming reply into a chat.completion (new reference in *out).
	 * Returns 0 or -1 with err set (502 for an unusable body). */
	int (*parse_response)(const struct xlate_ctx *x, const char *body, size_t len, json_t **out,
			      struct usage *u, struct rerr *err);
	void *(*stream_new)(const struct xlate_ctx *x);
	/* Feeds one upstream SSE event; appends chunk objects to `chunks` (the relay sets their
	 * id/object/created/model, in place if they have an "id" member). Returns STREAM_MORE, STREAM_DONE at the upstream's end marker, or STREAM_ERROR
	 * with err set for an error reported inside the stream. */
	enum stream_status (*stream_event)(void *st, const struct sse_event *ev, json_t *chunks,
					   struct usage *u, struct rerr *err);
	/* The upstream closed the stream. Returns STREAM_DONE if the stream was complete (chunks
	 * may still be appended), else STREAM_ERROR with err set. */
	enum stream_status (*stream_eof)(void *st, json_t *chunks, struct usage *u, struct rerr *err);
	void (*stream_free)(void *st);
	/* Maps a non-2xx upstream reply to the router's error. */
	void (*map_error)(const struct xlate_ctx *x, long status, const char *body, size_t len,
			  long retry_after, struct rerr *err);
	/* The most output tokens per choice (reasoning and thinking included) the request that
	 * build_request makes from `client` lets the upstream write, by the same rules; 0 when it
	 * sends no bound (the upstream's default applies). Pure. */
	int64_t (*max_output_tokens)(const struct model_conf *m, const json_t *client);
};

const struct provider_ops *provider_ops_for(enum provider_api api);

/* The output bound of one call to model m for this client request, over all its choices: the
 * provider's max_output_tokens() times n. *sent (may be NULL) says whether the upstream request
 * carries that bound; when it carries none, the model's max_output_tokens stands in. The budget
 * estimate and the relay's output cap both use it. */
int64_t provider_output_bound(const struct config *cfg, const struct model_conf *m,
			      const json_t *client, int *sent);
/* max_completion_tokens, else max_tokens, when a positive integer; else 0. */
int64_t client_max_tokens(const json_t *client);

extern const struct provider_ops provider_openai;
extern const struct provider_ops provider_anthropic;
extern const struct provider_ops provider_gemini;

/* ---- embeddings (embed.c) ---- */

struct embedreq;
/* How many of the n inputs one upstream call takes (Gemini: 100 at most). */
size_t embed_chunk(const struct xlate_ctx *x, size_t n);
/* The upstream request for inputs [from, from + count) of a validated embeddings request.
 * Returns 0 or -1 with err set (400 for what the provider cannot take). */
int embed_build_request(const struct xlate_ctx *x, const json_t *client, const struct embedreq *r,
			size_t from, size_t count, struct upstream_req *out, struct buf *dropped,
			struct rerr *err);
/* Appends the items of a 2xx reply for inputs [from, from + count) to items, as the text of the
 * client's data array (comma-separated objects, in input order, in the client's encoding_format),
 * and adds its token count to u (estimated when the upstream gives none). Returns 0, or -1 with
 * err set: 502 for a reply it cannot use, 413 when items would pass its limit (503 server_busy
 * when the gauge of call memory refused); items then holds what it held before. */
int embed_parse_reply(const struct xlate_ctx *x, const struct embedreq *r, const json_t *client,
		      const char *body, size_t len, size_t from, size_t count, struct buf *items,
		      struct usage *u, struct rerr *err);
/* The client's reply as JSON text: {"object":"list","data":[items],"model","usage"}. Returns 0
 * or -1 (out's limit). */
int embed_response_text(const struct xlate_ctx *x, const struct buf *items, const struct usage *u,
			struct buf *out);

/* ---- helpers shared by the translators (provider.c) ---- */

/* Appends name to the comma-separated list unless already present. */
void dropped_add(struct buf *dropped, const char *name);
/* Handles one parameter the target cannot honour: strict mode -> 400 naming it (returns -1);
 * otherwise records it in `dropped` and returns 0. */
int param_unsupported(const struct xlate_ctx *x, struct buf *dropped, const char *name,
		      struct rerr *err);
/* Drops body[name] when present: silently if it holds dflt (or null/false; pass NAN for "no
 * default"), else through param_unsupported. Returns 0 or -1 (strict mode). */
int param_drop(const struct xlate_ctx *x, json_t *body, const char *name, double dflt,
	       struct buf *dropped, struct rerr *err);
/* Names every top-level member of client not listed in known (NULL-terminated) through
 * param_unsupported. Returns 0 or -1 (strict mode). */
int params_unknown(const struct xlate_ctx *x, const json_t *client, const char *const *known,
		   struct buf *dropped, struct rerr *err);
/* 400 unsupported_parameter naming param (for fields no mode can drop). Returns -1. */
int param_refused(const struct xlate_ctx *x, const char *param, const char *what, struct rerr *err);
/* Splits "data:<mime>;base64,<data>": returns 0 with mime copied and *data pointing into url, or
 * -1 when url is not a base64 data URL. */
int data_url_split(const char *url, char *mime, size_t mimesz, const char **data);
/* A tool call's arguments string as the JSON object providers want: "" -> {}, an object as is,
 * other JSON -> {"value": ...}, invalid JSON -> {"_raw": "<the string>"}. New reference. */
json_t *tool_arguments_object(const char *arguments);
/* Text of a message's content (a string, or the text/refusal parts of an array joined); new
 * string the caller frees, "" for none. */
char *content_text(const json_t *content);
/* Thinking budget for an OpenAI reasoning_effort: minimal/low 1024, medium 2048, high 4096,
 * xhigh/max 8192, none 0; -1 for an unknown value. */
long reasoning_effort_budget(const char *effort);
/* The tool call id the router gives a call that came without one: "call_<request id
 * suffix>_<k>", unique per request and stable for a given request id. */
void tool_call_id_make(const struct xlate_ctx *x, size_t k, char *out, size_t outsz);

/* Upstream status -> router status/type/code per provider-protocols.md 10.3. The message is
 * prefixed with the provider name; credentials errors never carry upstream text. The strings
 * passed in are copied or matched against static ones: they may be freed afterwards. */
void map_upstream_status(const struct xlate_ctx *x, long status, const char *upstream_msg,
			 const char *upstream_code, const char *upstream_param, long retry_after,
			 struct rerr *err);
/* Removes every occurrence of the provider's API key from s (in place). */
void redact_secret(char *s, const char *secret);
/* Copies src (NULL = "") into dst, cut to dstsz - 1 bytes, with every occurrence of secret
 * removed first: the whole text is redacted before the cut, so a key across it leaves nothing. */
void redact_cut(char *dst, size_t dstsz, const char *src, const char *secret);
/* The OpenAI finish_reason for a provider value; sets *changed when it differs. */
const char *finish_reason_normalize(const char *raw, int *changed);

#endif
