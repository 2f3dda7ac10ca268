/* respx.h - the Responses API (POST /v1/responses) translated to and from the router's Chat
 * Completions form, pure (no I/O): responses-embeddings-protocol.md sections 2-4 and 6.
 *
 * A Responses request becomes a chat request (respx_req.c), which the router routes, budgets,
 * falls back and logs as any chat completion; the chat.completion that comes back becomes a
 * Response object, and a chat stream becomes the Responses API's semantic events
 * (respx_out.c). Storage (store, previous_response_id, GET/DELETE) is the caller's: these
 * functions take the inherited items and give back what to keep.
 *
 * Item ids the router gives: "msg_<hex>_<n>", "fc_<hex>_<n>", "rs_<hex>_<n>" (output items) and
 * the same prefixes plus "fco_" for input items, where <hex> is the response id without "resp_"
 * and <n> the item's position. call_id of a function_call is the chat tool call id.
 */
#ifndef ROUTER_RESPX_H
#define ROUTER_RESPX_H

#include <jansson.h>
#include <stdint.h>

#include "errors.h"

/* What the router itself needs from a validated Responses request; strings borrowed. */
struct resp_req {
	const char *model;
	int stream;
	int store;                         /* default true */
	int background;
	const char *previous_response_id;  /* NULL when absent */
};

/* ---- request side (respx_req.c) ---- */

/* Validates a parsed Responses request (CreateResponse). 400 invalid_request_error naming the
 * parameter (param "input[3].content[0].type", "tools[1].type", ...) for a malformed field, and
 * 400 with code "unsupported_parameter" / "unsupported_value" for what no provider behind the
 * router can honour: built-in tools (web_search*, file_search, code_interpreter, computer*,
 * image_generation, mcp, local_shell, shell, apply_patch, custom, ...), built-in tool items in
 * input, item types it does not know, `conversation`, `prompt`, background with stream. */
int respx_validate(const json_t *body, struct resp_req *out, struct rerr *err);

/* The chat request for a validated Responses request: instructions as the first system
 * message, then the context items (the inherited conversation, NULL for none: items as
 * respx_input_items and respx output items give them), then body.input; consecutive
 * function_call items (and an assistant message right before them) make one assistant message
 * with tool_calls; function_call_output -> tool message; reasoning items carry their summary text
 * back as reasoning_content of the next assistant message; item_reference items must have been
 * resolved by the caller (400 if one is left). Tools flattened -> nested, tool_choice, text.format
 * -> response_format, text.verbosity -> verbosity, reasoning.effort -> reasoning_effort,
 * max_output_tokens -> max_completion_tokens, top_logprobs -> logprobs + top_logprobs, stream ->
 * stream + stream_options.include_usage, temperature/top_p/parallel_tool_calls/user/
 * safety_identifier/prompt_cache_key/service_tier as they are; store, metadata, include,
 * truncation, previous_response_id, background are not forwarded. A function_call_output whose
 * call_id matches no function_call before it -> 400 param "input". New reference, or NULL with
 * err set. */
json_t *respx_to_chat(const json_t *body, const json_t *context, struct rerr *err);

/* The request's input as stored items: a string input becomes one user message item
 * {"type":"message","role":"user","content":[{"type":"input_text","text":...}]}; every item gets
 * "type" and an "id" when it has none (prefix per type + response hex + "_in" + index; messages
 * also "status":"completed"). New reference (an array). */
json_t *respx_input_items(const json_t *body, const char *resp_id);

struct buf;
/* The request's top-level fields the router neither forwards nor honours, comma-separated into
 * out: unknown ones and OpenAI-only ones (max_tool_calls, context_management, moderation, ...),
 * `include` (no encrypted reasoning or output logprobs are returned), `truncation: "auto"` (acts
 * as "disabled"). They are named in X-Router-Dropped-Params and the row, or refused in strict
 * mode (params.strict). */
void respx_unused_fields(const json_t *body, struct buf *out);

/* ---- response side (respx_out.c) ---- */

/* The Response object for a chat.completion (the router's reply, choice 0): output items in the
 * order reasoning (when reasoning_content is present), message (content or refusal), then one
 * function_call per tool call; status "completed", or "incomplete" with incomplete_details.reason
 * "max_output_tokens" (finish_reason length) or "content_filter"; usage mapped (input_tokens,
 * input_tokens_details.cached_tokens, output_tokens, output_tokens_details.reasoning_tokens,
 * total_tokens; zeros when unknown). The request's settings are echoed (instructions, tools as
 * sent, tool_choice default "auto", parallel_tool_calls default true, temperature/top_p default
 * 1, text default {"format":{"type":"text"}}, metadata default {}, store, previous_response_id,
 * max_output_tokens, reasoning, truncation "disabled", user). model = the completion's model
 * (the one that answered). New reference. */
json_t *respx_from_chat(const json_t *body, const json_t *completion, const char *resp_id,
			int64_t created_at);

/* A stream: fed the chat chunks the router relays, it gives the Responses events, each a JSON
 * object with "type" and "sequence_number" (0, 1, ...) in the order of section 4.3: created and
 * in_progress before the first item; one open item at a time (reasoning, message with one
 * output_text part, or function_call), closed before the next opens; response.completed or
 * response.incomplete last, carrying the full response. */
struct respx_stream;
struct respx_stream *respx_stream_new(const json_t *body, const char *resp_id, int64_t created_at);
/* Appends the events for one chat chunk (an object with choices[0].delta and possibly usage and
 * finish_reason) to events (an array). */
void respx_stream_chunk(struct respx_stream *s, const json_t *chunk, json_t *events);
/* The chat stream ended ([DONE]): closes what is open and appends the terminal event. */
void respx_stream_end(struct respx_stream *s, json_t *events);
/* The chat stream failed after it started: closes what is open as incomplete and appends an
 * "error" event ({type:"error", code, message, param, error:{type, code, message, param}}) and
 * response.failed (status "failed", error {code, message}). code: the error's code, else
 * "rate_limit_exceeded" for status 429, else "server_error". */
void respx_stream_fail(struct respx_stream *s, const struct rerr *e, json_t *events);
/* The response as it stands (the final one after end or fail): what a stored response keeps.
 * New reference. */
json_t *respx_stream_response(const struct respx_stream *s);
void respx_stream_free(struct respx_stream *s);
/* Whether the terminal event was made (by end or fail, or when a chunk could not be kept whole:
 * more than 128 tool calls, more than 64 MiB of text in all, the call-memory gauge full). */
int respx_stream_finished(const struct respx_stream *s);

/* ---- the relay's frames (respx_frames.c) ---- */

/* Translates n bytes of complete SSE frames the chat relay writes ("data: <chunk>", "data:
 * [DONE]", its error frame "data: {"error": {...}}", comments) into Responses event frames
 * appended to out ("event: <type>\ndata: <event>\n\n"; comments pass as they are). *done (0 at
 * first) is set once the terminal event is made; nothing after it counts. Returns 1 when these
 * frames made it, else 0. */
int respx_frames(struct respx_stream *s, const char *p, size_t n, int *done, struct buf *out);

#endif
