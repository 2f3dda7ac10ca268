/* gemini.h - private to the Gemini adapter: the reply half (gemini_reply.c) seen by gemini.c.
 *
 * gemini.c builds requests and holds provider_gemini; these are the ops it takes from
 * gemini_reply.c. Their contracts are those of struct provider_ops (provider.h).
 */
#ifndef ROUTER_PROVIDERS_GEMINI_H
#define ROUTER_PROVIDERS_GEMINI_H

#include "provider.h"

int gemini_parse_response(const struct xlate_ctx *x, const char *body, size_t len, json_t **out,
			  struct usage *u, struct rerr *err);
void gemini_map_error(const struct xlate_ctx *x, long status, const char *body, size_t len,
		      long retry_after, struct rerr *err);
/* The stream state is freed with free(). */
void *gemini_stream_new(const struct xlate_ctx *x);
enum stream_status gemini_stream_event(void *st, const struct sse_event *ev, json_t *chunks,
				       struct usage *u, struct rerr *err);
enum stream_status gemini_stream_eof(void *st, json_t *chunks, struct usage *u, struct rerr *err);

#endif
