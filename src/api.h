/* api.h - the endpoint handlers (api_*.c) that the route table (routes.c) points to.
 *
 * Each takes the request context (borrowed) and answers through rc->resp before it returns; a
 * handler whose request is logged (POST /v1/chat/completions) also commits its row. Handlers call
 * down (auth, budget, dispatch, reqctx), never back into routes or server.
 */
#ifndef ROUTER_API_H
#define ROUTER_API_H

#include "reqctx.h"

/* GET /v1/models, GET /v1/models/{id} (api_models.c). */
void api_models_list(struct request_ctx *rc);
void api_models_get(struct request_ctx *rc);
/* POST /v1/chat/completions (api_chat.c). */
void api_chat_completions(struct request_ctx *rc);
/* POST /v1/embeddings: the same steps (api_chat.c) with an embedding model and no fallback. */
void api_embeddings(struct request_ctx *rc);
/* POST /v1/responses: translated to a chat request (api_responses.c), then as chat (api_chat.c). */
void api_responses(struct request_ctx *rc);
/* GET /v1/responses/{id}[/input_items], DELETE /v1/responses/{id}, POST .../cancel
 * (api_responses.c). */
void api_responses_get(struct request_ctx *rc);
void api_responses_delete(struct request_ctx *rc);
void api_responses_cancel(struct request_ctx *rc);
/* GET /v1/router/budget, GET /v1/router/budgets (api_budget.c). */
void api_budget_get(struct request_ctx *rc);
void api_budgets_admin(struct request_ctx *rc);
/* GET /metrics, GET /v1/router/stats (api_metrics.c). */
void api_metrics(struct request_ctx *rc);
void api_router_stats(struct request_ctx *rc);

#endif
