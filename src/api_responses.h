/* api_responses.h - POST /v1/responses before it goes the chat way (api_chat.c), and the stored
 * responses' endpoints (api_responses.c). */
#ifndef ROUTER_API_RESPONSES_H
#define ROUTER_API_RESPONSES_H

#include <jansson.h>

#include "attempt.h"
#include "reqctx.h"
#include "respx.h"

/* One POST /v1/responses call's state: what the attempt translates with (call), and what is
 * stored once it is answered. */
struct responses_state {
	struct resp_call call;
	struct request_ctx *rc;
	const char *agent;             /* borrowed; NULL for anonymous callers */
	int store;
	char *previous_id;
	json_t *items;                 /* the request's input items as stored */
	struct buf unused;             /* fields it neither forwards nor honours (respx_unused_fields) */
};

/* The chat request for a validated Responses request of agent: the conversation
 * previous_response_id continues (400 previous_response_not_found), item_reference items
 * resolved (404 when not found), items the conversation already holds left out. body (owned by
 * the caller) gets its resolved input. Returns 0 with *chat a new reference, or -1 with err. */
int responses_prepare(struct request_ctx *rc, const char *agent, json_t *body,
		      const struct resp_req *rq, struct responses_state *rs, json_t **chat,
		      struct rerr *err);
void responses_state_free(struct responses_state *rs);

#endif
