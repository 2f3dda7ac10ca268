/* routes.h - the route table: method + path -> handler, with 404 and 405 answers. */
#ifndef ROUTER_ROUTES_H
#define ROUTER_ROUTES_H

#include "server.h"

void routes_dispatch(struct request_ctx *rc);

/* Handlers (api_*.c). Each answers through rc->resp. */
void api_models_list(struct request_ctx *rc);
void api_models_get(struct request_ctx *rc);
void api_chat_completions(struct request_ctx *rc);

#endif
