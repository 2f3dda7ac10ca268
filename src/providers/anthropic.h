/* anthropic.h - private to the Anthropic adapter: the reply half (anthropic_reply.c) seen by
 * anthropic.c.
 *
 * anthropic.c builds requests and holds provider_anthropic; these are the ops it takes from
 * anthropic_reply.c. Their contracts are those of struct provider_ops (provider.h).
 */
#ifndef ROUTER_PROVIDERS_ANTHROPIC_H
#define ROUTER_PROVIDERS_ANTHROPIC_H

#include "provider.h"

int anthropic_parse_response(const struct xlate_ctx *x, const char *body, size_t len,
			     json_t **out, struct usage *u, struct rerr *err);
void anthropic_map_error(const struct xlate_ctx *x, long status, const char *body, size_t len,
			 long retry_after, struct rerr *err);
void *anthropic_stream_new(const struct xlate_ctx *x);
void anthropic_stream_free(void *st);
enum stream_status anthropic_stream_event(void *st, const struct sse_event *ev, json_t *chunks,
					  struct usage *u, struct rerr *err);
enum stream_status anthropic_stream_eof(void *st, json_t *chunks, struct usage *u,
					struct rerr *err);

#endif
