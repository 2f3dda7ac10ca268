/* relay.h - turns an upstream reply into the client's response, for one attempt.
 *
 * Streams: relay_feed() takes upstream body bytes as they arrive, parses SSE, runs the provider's
 * stream state machine and writes OpenAI chunks ("data: {...}\n\n", stamped with the router's id,
 * created time and the public model name) to a sink, one event at a time. Frames that carry no
 * content yet (the role chunk) are held back until the first content-bearing frame, so a failure
 * before the first token leaves the client untouched and the caller may still answer with an
 * HTTP error (or try another model). At the end a usage chunk (if the client asked for one) and
 * "data: [DONE]" follow. Non-streaming replies go through relay_response(). Memory is bounded
 * (relay.c: held frames, kept reasoning, kept thinking blocks and tool call ids, one frame,
 * one event); crossing a bound fails the relay with a 502 bad_upstream_response like any broken
 * stream.
 *
 * Pure: no I/O except through the sink; the fixture tests and fuzz targets drive it directly.
 */
#ifndef ROUTER_RELAY_H
#define ROUTER_RELAY_H

#include <stdint.h>

#include "providers/provider.h"

struct relay_sink {
	/* Writes complete SSE frames. Returns 0, or -1 when the client is gone. */
	int (*write)(void *ud, const char *p, size_t n);
	void *ud;
};

enum relay_state { RELAY_RUNNING, RELAY_DONE, RELAY_FAILED, RELAY_CLIENT_GONE };

struct relay {
	const struct provider_ops *ops;
	const struct xlate_ctx *x;
	struct relay_sink sink;
	void *st;
	struct sse_parser sse;
	json_t *chunks;
	struct buf held;              /* frames not yet written (nothing of substance so far) */
	struct buf frame;
	enum relay_state state;
	struct rerr err;
	struct usage usage;
	int64_t frames_out;           /* frames written to the sink */
	int64_t out_chars;            /* text relayed (content, reasoning, refusal, tool arguments) */
	int64_t first_content_us;     /* clock_mono_us() of the first content frame, 0 = none */
	int64_t progress_events;      /* upstream events that gave the client something (not comments
				       * or pings): what resets the caller's idle timer */
	int64_t max_out_tokens;       /* the output the request allows (provider_output_bound), 0 =
				       * no cap: the stream is cut past it (relay.c, output_cap) */
	char finish_reason[32];
	/* What of choice 0 may have to be kept for the next turn (toolstate.h): tool call ids and
	 * their extra_content, thinking blocks, and reasoning text when the provider needs it back. */
	json_t *turn;
	struct buf reasoning;
	size_t turn_bytes;            /* JSON size of what turn has been handed (bounded) */
};

void relay_init(struct relay *r, const struct provider_ops *ops, const struct xlate_ctx *x,
		const struct relay_sink *sink);
void relay_free(struct relay *r);
/* Feeds upstream bytes. Returns 0 while the relay is running, -1 once it has stopped (done,
 * failed or the client is gone): the caller should then stop the transfer. */
int relay_feed(struct relay *r, const char *p, size_t n);
/* The upstream body ended. */
void relay_finish(struct relay *r);
/* The transfer failed (network, timeout) with e. */
void relay_fail(struct relay *r, const struct rerr *e);
/* Whether any frame reached the client. */
int relay_started(const struct relay *r);
/* After a failure with relay_started(): writes the error event and [DONE] to the client. */
void relay_emit_error(struct relay *r);

/* The streamed assistant message as far as toolstate_from_message needs it (borrowed), or NULL. */
const json_t *relay_turn(struct relay *r);

/* Non-streaming: translates a 2xx body and stamps id/object/model. Returns 0 with *out set, or
 * -1 with err set. */
int relay_response(const struct provider_ops *ops, const struct xlate_ctx *x, const char *body,
		   size_t len, json_t **out, struct usage *u, struct rerr *err);

#endif
