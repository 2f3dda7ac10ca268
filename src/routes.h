/* routes.h - the route table: method + path -> handler, with 404 and 405 answers. */
#ifndef ROUTER_ROUTES_H
#define ROUTER_ROUTES_H

#include "server.h"

void routes_dispatch(struct request_ctx *rc);

/* Handlers (api_*.c). Each answers through rc->resp. */
void api_models_list(struct request_ctx *rc);
void api_models_get(struct request_ctx *rc);
void api_chat_completions(struct request_ctx *rc);
void api_budget_get(struct request_ctx *rc);
void api_budgets_admin(struct request_ctx *rc);

/* The caller's agent name (routing.auth_mode): from its key, from the trusted header, or none
 * (*out = NULL). Returns 0, or -1 after answering the request with the error (401, 503). */
int api_identify(struct request_ctx *rc, char *agent, size_t agentsz, const char **out);

#endif
