/* dispatch.h - runs one chat completion against its upstream and answers the client.
 *
 * Given a validated request and the resolved model, dispatch builds the upstream request with the
 * provider's translator, performs the blocking call on the worker's libcurl handle, relays the
 * reply (streamed event by event, or whole), computes usage and cost, fills the request-log
 * record, and commits it before the response's last bytes are flushed.
 */
#ifndef ROUTER_DISPATCH_H
#define ROUTER_DISPATCH_H

#include <jansson.h>

#include "chatreq.h"
#include "fallback.h"
#include "reqctx.h"

struct chat_call {
	json_t *body;                    /* the client's request (borrowed) */
	struct chatreq req;
	const struct model_conf *model;  /* resolved route */
	const char *upstream_model;      /* upstream id to send */
	const char *public_model;        /* id shown to the client */
	const struct chain *chain;       /* models to try, routed model first */
};

void dispatch_chat(struct request_ctx *rc, const struct chat_call *call);

#endif
