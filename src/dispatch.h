/* dispatch.h - runs one chat completion along its fallback chain and answers the client.
 *
 * Given a validated request and its chain (api_chat.c), dispatch walks the chain as
 * fallback_decide() (fallback.h) directs: for each attempt it builds the upstream request with the
 * provider's translator, performs the blocking call on the worker's libcurl handle and relays the
 * reply (streamed event by event, or whole). It then computes usage and cost, fills the
 * request-log record with one row per attempt, and commits it (reqctx_commit_log) before the
 * response's last bytes are flushed. It sits below the api_* handlers and above reqctx, relay,
 * upstream and the providers; it calls nothing above it.
 */
#ifndef ROUTER_DISPATCH_H
#define ROUTER_DISPATCH_H

#include "attempt.h"
#include "reqctx.h"

/* Answers rc's request: the client gets the reply or one error, rc->log is filled and committed.
 * call and what it points to are borrowed; call->chain (NULL: the model's own) is not empty. */
void dispatch_chat(struct request_ctx *rc, const struct chat_call *call);

#endif
