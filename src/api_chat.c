/* api_chat.c - POST /v1/chat/completions, and the same steps for POST /v1/embeddings (an embedding
 * model, no fallback) and POST /v1/responses (its request translated to a chat request first,
 * api_responses.c, and the reply back as it is sent, attempt.c): who is calling, read and validate
 * the request, route it (task, tier policy, fallback chain), reserve its budget, hand over to
 * dispatch (and, once the row settled the reservation, raise the warn alert the settlement
 * crossed). Every call, refused or not, leaves one row in the request log.
 *
 * api_chat_completions runs the steps in that order; a step that refuses the request answers it
 * and commits the row itself (reqctx_refuse) and returns -1, which ends the call. A request that
 * passes every step is answered, logged and committed by dispatch_chat.
 *
 * Routing: a task type (X-Task-Type header or metadata.task_type) selects the task's preferred
 * model and puts its fallback second in the chain; the model "auto" without a task type is
 * routing.auto_model. The caller's tier then applies: a model the tier may not use becomes the
 * tier's downgrade for it (403 when the tier has none), and fallback models outside the tier are
 * left out of the chain.
 */
#include <string.h>

#include "api.h"
#include "api_responses.h"
#include "auth.h"
#include "budget.h"
#include "chatreq.h"
#include "embedreq.h"
#include "dispatch.h"
#include "fallback.h"
#include "log.h"
#include "providers/provider.h"
#include "util.h"

/* Everything the steps work out; lives on api_chat_completions' stack for the whole call. */
struct chat_plan {
	char agent_buf[128];
	const char *agent;
	const struct tier_conf *tier;
	json_t *body;                    /* the client's request (owned) */
	const struct task_conf *task;    /* the task route, or NULL */
	size_t primary;                  /* the routed model's index */
	struct chain chain;
	struct chat_call call;
	struct budget_state budget;      /* the reservation, settled by the row (budget_settled) */
	int embed;                       /* POST /v1/embeddings */
	struct embedreq embedreq;
	int responses;                   /* POST /v1/responses: body is its chat translation */
	json_t *resp_body;               /* the Responses request (owned) */
	struct resp_req resp_req;
	struct responses_state resp_state;
};

/* POST /v1/responses: the Responses request read and validated, then translated to the chat
 * request the other steps work on (the conversation it continues included). */
static int read_responses(struct request_ctx *rc, struct chat_plan *pl, struct rerr *err)
{
	if (chatreq_load(rc->req.body.p ? rc->req.body.p : "", rc->req.body.len,
			 "The request body is empty; send a JSON object with 'model' and 'input'.",
			 &pl->resp_body, err) < 0 ||
	    respx_validate(pl->resp_body, &pl->resp_req, err) < 0 ||
	    responses_prepare(rc, pl->agent, pl->resp_body, &pl->resp_req, &pl->resp_state, &pl->body,
			      err) < 0)
		return -1;
	pl->call.responses = &pl->resp_state.call;
	pl->call.dropped = pl->resp_state.unused.len ? pl->resp_state.unused.p : NULL;
	if (chatreq_validate(pl->body, &pl->call.req, err) < 0) {
		/* A translation the chat validator refuses: the router's fault, said plainly. */
		log_error(rc->id, "a Responses request translated to an invalid chat request: %s",
			  err->message);
		return -1;
	}
	return 0;
}

static int tier_allows(const struct tier_conf *t, const struct config *cfg, size_t m)
{
	if (!t || t->all_models)
		return 1;
	if (cfg->models[m].prefix)
		return t->allow_passthrough;
	for (size_t i = 0; i < t->n_models; i++)
		if (t->models[i] == m)
			return 1;
	return 0;
}

static int tier_downgrade(const struct tier_conf *t, size_t m, size_t *to)
{
	for (size_t i = 0; t && i < t->n_downgrades; i++) {
		if (t->downgrades[i].from == m) {
			*to = t->downgrades[i].to;
			return 1;
		}
	}
	return 0;
}

/* The caller and its tier; the task type from the header. */
static int step_identify(struct request_ctx *rc, struct chat_plan *pl)
{
	struct rerr err;
	if (auth_identify(rc, pl->agent_buf, sizeof(pl->agent_buf), &pl->agent, &err) < 0) {
		reqctx_refuse(rc, &err);
		return -1;
	}
	pl->tier = config_tier_for_agent(rc->cfg, pl->agent);
	rc->log.agent = pl->agent;
	rc->log.tier = pl->tier ? pl->tier->id : NULL;
	if (pl->tier)
		resp_header(&rc->resp, "X-Router-Tier", "%s", pl->tier->id);
	rc->log.task = request_header(&rc->req, "X-Task-Type");
	if (rc->log.task && !rc->log.task[0])
		rc->log.task = NULL;
	if (rc->log.task && strlen(rc->log.task) > CHATREQ_MAX_NAME_BYTES) {
		rc->log.task = NULL;  /* the row keeps no unbounded client string */
		rerr_clear(&err);
		rerr_set(&err, 400, "invalid_request_error", NULL, "X-Task-Type",
			 "Invalid X-Task-Type header: a task type has at most %d bytes.",
			 CHATREQ_MAX_NAME_BYTES);
		reqctx_refuse(rc, &err);
		return -1;
	}
	if (rc->log.task && !utf8_valid(rc->log.task)) {
		rc->log.task = NULL;  /* no configured task has such a name, and JSON cannot hold it */
		rerr_clear(&err);
		rerr_set(&err, 400, "invalid_request_error", NULL, "X-Task-Type",
			 "Invalid X-Task-Type header: a task type is UTF-8 text.");
		reqctx_refuse(rc, &err);
		return -1;
	}
	return 0;
}

/* The body, read (bounded by server.max_body_bytes), parsed and validated. */
static int step_read(struct request_ctx *rc, struct chat_plan *pl)
{
	struct rerr err;
	rerr_clear(&err);
	struct chat_call *call = &pl->call;
	/* A slow client's body is not read with a database connection held. */
	reqctx_reader_release(rc);
	if (request_read_body(&rc->req, (size_t)rc->cfg->max_body_bytes, &err) < 0 ||
	    (pl->responses ? read_responses(rc, pl, &err)
	     : pl->embed ? embedreq_parse(rc->req.body.p ? rc->req.body.p : "", rc->req.body.len,
					&pl->body, &pl->embedreq, &err)
		       : chatreq_parse(rc->req.body.p ? rc->req.body.p : "", rc->req.body.len,
				       &pl->body, &call->req, &err)) < 0) {
		reqctx_refuse(rc, &err);
		return -1;
	}
	if (pl->embed) {
		call->embed = &pl->embedreq;
		call->req.model = pl->embedreq.model;
	}
	call->body = pl->body;
	rc->log.requested_model = call->req.model;
	rc->log.stream = call->req.stream;
	if (!rc->log.task)
		rc->log.task = call->req.task;
	resp_header(&rc->resp, "X-Router-Requested-Model", "%s", call->req.model);
	return 0;
}

/* The routed model: the task's, routing.auto_model for "auto", or the one named (404 when no
 * route serves it). */
static int step_route(struct request_ctx *rc, struct chat_plan *pl)
{
	const struct config *cfg = rc->cfg;
	struct chat_call *call = &pl->call;
	struct rerr err;
	rerr_clear(&err);
	if (rc->log.task && !pl->embed) {        /* task routes choose chat models */
		for (size_t i = 0; i < cfg->n_tasks; i++)
			if (strcmp(cfg->tasks[i].name, rc->log.task) == 0)
				pl->task = &cfg->tasks[i];
		if (!pl->task) {
			rerr_set(&err, 400, "invalid_request_error", "unknown_task_type", "metadata.task_type",
				 "Unknown task type '%s'.", rc->log.task);
			reqctx_refuse(rc, &err);
			return -1;
		}
	}
	if (pl->task) {
		pl->primary = pl->task->model;
	} else if (strcmp(call->req.model, "auto") == 0 && cfg->has_auto_model && !pl->embed) {
		pl->primary = cfg->auto_model;
	} else {
		call->model = config_find_model(cfg, call->req.model, &call->upstream_model);
		if (!call->model) {
			rerr_set(&err, 404, "invalid_request_error", "model_not_found", "model",
				 "The model '%s' does not exist. GET /v1/models lists the models this router serves.",
				 call->req.model);
			reqctx_refuse(rc, &err);
			return -1;
		}
		pl->primary = (size_t)(call->model - cfg->models);
		if (call->model->embedding != pl->embed) {
			if (pl->embed)
				rerr_set(&err, 400, "invalid_request_error", "model_not_embedding", "model",
					 "The model '%s' does not create embeddings; POST it to "
					 "/v1/chat/completions, or name an embedding model (GET /v1/models "
					 "lists each model's endpoints).", call->req.model);
			else
				rerr_set(&err, 400, "invalid_request_error", "model_not_chat", "model",
					 "The model '%s' is an embedding model; POST it to /v1/embeddings, or "
					 "name a chat model (GET /v1/models lists each model's endpoints).",
					 call->req.model);
			rc->log.model = call->req.model;
			reqctx_refuse(rc, &err);
			return -1;
		}
	}
	return 0;
}

/* The tier's policy: a model the tier may not use becomes its downgrade (403 without one). Then
 * the call names the model it will ask first. */
static int step_tier_policy(struct request_ctx *rc, struct chat_plan *pl)
{
	const struct config *cfg = rc->cfg;
	const struct tier_conf *tier = pl->tier;
	struct chat_call *call = &pl->call;
	if (!tier_allows(tier, cfg, pl->primary)) {
		size_t to;
		if (!tier_downgrade(tier, pl->primary, &to)) {
			struct rerr err;
			rerr_clear(&err);
			rerr_set(&err, 403, "permission_error", "model_not_allowed", "model",
				 "Model '%s' is not available to tier %s (%s).", call->req.model, tier->id,
				 tier->name);
			reqctx_refuse(rc, &err);
			return -1;
		}
		log_info(rc->id, "tier %s: %s downgraded to %s", tier->id,
			 call->model && call->model->prefix ? call->req.model : cfg->models[pl->primary].id,
			 cfg->models[to].id);
		pl->primary = to;
	}
	if (!call->model || (size_t)(call->model - cfg->models) != pl->primary) {
		call->model = &cfg->models[pl->primary];
		call->upstream_model = call->model->upstream;
		call->public_model = call->model->id;
	} else {
		call->public_model = call->req.model;
	}
	return 0;
}

/* 400 when no model of the chain can honour what the request needs (tools, images, structured
 * outputs): naming the parameter, instead of a provider's 400 at the end of the chain. */
static int chain_can_honour(struct request_ctx *rc, struct chat_plan *pl)
{
	const struct config *cfg = rc->cfg;
	const struct chain *ch = &pl->chain;
	unsigned needs = pl->call.needs;
	for (size_t k = 0; k < ch->n; k++)
		if (!chatreq_missing(needs, cfg->models[ch->model[k]].caps))
			return 0;
	const char *what;
	const char *param = chatreq_need_param(chatreq_missing(needs, cfg->models[ch->model[0]].caps),
					       &what);
	struct buf others;
	buf_init(&others, 4096);
	for (size_t k = 1; k < ch->n; k++)
		buf_printf(&others, "%s%s", k > 1 ? ", " : "", cfg->models[ch->model[k]].id);
	struct rerr err;
	rerr_clear(&err);
	rerr_set(&err, 400, "invalid_request_error", "unsupported_parameter", param,
		 "Model %s cannot honour %s%s%s%s. GET /v1/models lists each model's capabilities.",
		 pl->call.public_model, what, ch->n > 1 ? ", and neither can its fallback models (" : "",
		 buf_str(&others), ch->n > 1 ? ")" : "");
	buf_free(&others);
	rc->log.model = pl->call.public_model;
	reqctx_refuse(rc, &err);
	return -1;
}

/* The fallback chain, without the models the tier may not use (the routed model stays). */
static int step_chain(struct request_ctx *rc, struct chat_plan *pl)
{
	const struct config *cfg = rc->cfg;
	struct chain *ch = &pl->chain;
	chain_build(cfg, pl->primary, pl->task, ch);
	if (pl->embed)
		ch->n = 1;     /* another model's vectors are useless: retries of this one only */
	size_t kept = 1;
	for (size_t k = 1; k < ch->n; k++)
		if (tier_allows(pl->tier, cfg, ch->model[k]))
			ch->model[kept++] = ch->model[k];
	ch->n = kept;
	pl->call.chain = ch;
	if (pl->embed)
		return 0;
	pl->call.needs = chatreq_needs(pl->body);
	return chain_can_honour(rc, pl);
}

/* The request's estimated cost reserved against the tier's and the agent's daily budgets. */
static int step_budget(struct request_ctx *rc, struct chat_plan *pl)
{
	const struct config *cfg = rc->cfg;
	struct rerr err;
	rerr_clear(&err);
	struct budget_state *bs = &pl->budget;
	struct budget_estimate e;
	int64_t estimate;
	if (pl->embed) {
		/* Input only, and a token covers at least a byte: an upper bound. */
		estimate = cost_mul(embedreq_token_bound(&pl->embedreq), cfg->models[pl->primary].in_nusd);
		e.floor_nusd = estimate;
		e.bounded = 1;
	} else {
		/* What goes upstream: for the Responses API its chat translation, which carries the
		 * conversation previous_response_id continues and the items the input references. */
		size_t len = rc->req.body.len;
		if (pl->responses) {
			size_t chat_len = json_dumpb(pl->body, NULL, 0, JSON_COMPACT);
			if (chat_len > len)
				len = chat_len;
		}
		estimate = budget_estimate_nusd(cfg, pl->body, len, &pl->chain, &e);
	}
	/* A bounded call is never charged more than its worst case (dispatch.c). */
	pl->call.max_cost_nusd = e.bounded ? estimate : 0;
	struct store *st = cfg->budget_enabled && budget_wants_store(rc->t0_wall_ms) ? reqctx_reader(rc)
										     : NULL;
	if (budget_reserve(st, cfg, pl->tier, pl->agent,
			   rc->id, rc->t0_wall_ms, estimate, e.floor_nusd, bs, &err) < 0) {
		budget_headers(&rc->resp, bs);
		rc->log.model = pl->call.public_model;
		reqctx_refuse(rc, &err);
		return -1;
	}
	budget_headers(&rc->resp, bs);
	/* The row's settlement reads the scopes' spend for budget_settled's warn check. */
	if (bs->reserved)
		rc->log.spent_after = &bs->spent_after;
	return 0;
}

enum call_kind { KIND_CHAT, KIND_EMBEDDINGS, KIND_RESPONSES };

static void serve(struct request_ctx *rc, enum call_kind kind)
{
	struct chat_plan pl;
	memset(&pl, 0, sizeof(pl));
	pl.embed = kind == KIND_EMBEDDINGS;
	pl.responses = kind == KIND_RESPONSES;
	if (!reqctx_can_record(rc) && strcmp(rc->cfg->when_unrecorded, "serve") != 0) {
		/* Nothing could record this call: refused rather than served unrecorded. */
		struct rerr err;
		rerr_clear(&err);
		rerr_set(&err, 503, "server_error", "request_log_unavailable", NULL,
			 "The router cannot record calls right now (its database and its fallback file "
			 "are not writable). Retry later.");
		err.retry_after = 5;
		err.should_retry = 1;
		reqctx_refuse(rc, &err);
		return;
	}
	if (step_identify(rc, &pl) == 0 && step_read(rc, &pl) == 0 && step_route(rc, &pl) == 0 &&
	    step_tier_policy(rc, &pl) == 0) {
		if (step_chain(rc, &pl) == 0 && step_budget(rc, &pl) == 0) {
			dispatch_chat(rc, &pl.call);
			if (budget_settle_wants_store(&pl.budget))
				budget_settled(reqctx_reader(rc), rc->cfg, &pl.budget);
		}
	}
	json_decref(pl.body);
	json_decref(pl.resp_body);
	responses_state_free(&pl.resp_state);
}

void api_chat_completions(struct request_ctx *rc)
{
	serve(rc, KIND_CHAT);
}

void api_embeddings(struct request_ctx *rc)
{
	serve(rc, KIND_EMBEDDINGS);
}

void api_responses(struct request_ctx *rc)
{
	serve(rc, KIND_RESPONSES);
}
