/* api_chat.c - POST /v1/chat/completions: who is calling, read and validate the request, route it
 * (task, tier policy, fallback chain), reserve its budget, hand over to dispatch. Every call,
 * refused or not, leaves one row in the request log.
 *
 * Routing: a task type (X-Task-Type header or metadata.task_type) selects the task's preferred
 * model and puts its fallback second in the chain; the model "auto" without a task type is
 * routing.auto_model. The caller's tier then applies: a model the tier may not use becomes the
 * tier's downgrade for it (403 when the tier has none), and fallback models outside the tier are
 * left out of the chain.
 */
#include <string.h>

#include "budget.h"
#include "chatreq.h"
#include "dispatch.h"
#include "fallback.h"
#include "keys.h"
#include "log.h"
#include "routes.h"
#include "util.h"

static void refuse(struct request_ctx *rc, const struct rerr *e)
{
	resp_error(&rc->resp, e);
	rc->log.error_type = e->type;
	rc->log.error_code = e->code;
	rc->log.error_message = e->message;
	server_commit_log(rc);
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

/* The caller's agent name: from its key, from the trusted header, or none. Returns 0, or -1
 * after refusing the request. */
int api_identify(struct request_ctx *rc, char *agent, size_t agentsz, const char **out)
{
	const struct config *cfg = rc->cfg;
	struct rerr err;
	rerr_clear(&err);
	*out = NULL;
	if (strcmp(cfg->auth_mode, "header") == 0) {
		const char *h = request_header(&rc->req, cfg->agent_header);
		if (h && h[0]) {
			snprintf(agent, agentsz, "%s", h);
			*out = agent;
		}
		return 0;
	}
	if (strcmp(cfg->auth_mode, "key") != 0)
		return 0;
	enum key_status ks = key_check(server_reader(rc), request_header(&rc->req, "Authorization"),
				       agent, agentsz);
	switch (ks) {
	case KEY_OK:
		*out = agent;
		return 0;
	case KEY_MISSING:
		rerr_set(&err, 401, "invalid_request_error", "missing_api_key", NULL,
			 "You didn't provide an API key. Send 'Authorization: Bearer <key>' with the key "
			 "created for your agent by 'llm-router keys create --agent NAME'.");
		break;
	case KEY_REVOKED:
		rerr_set(&err, 401, "invalid_request_error", "invalid_api_key", NULL,
			 "This API key has been revoked.");
		break;
	case KEY_DB_ERROR:
		rerr_set(&err, 503, "server_error", "keys_unavailable", NULL,
			 "API keys cannot be checked: the database is unavailable. Retry later.");
		break;
	default:
		rerr_set(&err, 401, "invalid_request_error", "invalid_api_key", NULL,
			 "Incorrect API key provided.");
		break;
	}
	if (ks != KEY_DB_ERROR)
		log_info(rc->id, "refused: %s", err.message);
	if (strcmp(rc->req.path, "/v1/chat/completions") == 0)
		refuse(rc, &err);
	else
		resp_error(&rc->resp, &err);
	return -1;
}

void api_chat_completions(struct request_ctx *rc)
{
	const struct config *cfg = rc->cfg;
	struct rerr err;
	rerr_clear(&err);
	json_t *body = NULL;
	struct chat_call call;
	memset(&call, 0, sizeof(call));
	char agent_buf[128];
	const char *agent = NULL;
	if (api_identify(rc, agent_buf, sizeof(agent_buf), &agent) < 0)
		return;
	const struct tier_conf *tier = config_tier_for_agent(cfg, agent);
	rc->log.agent = agent;
	rc->log.tier = tier ? tier->id : NULL;
	if (tier)
		resp_header(&rc->resp, "X-Router-Tier", "%s", tier->id);
	rc->log.task = request_header(&rc->req, "X-Task-Type");
	if (rc->log.task && !rc->log.task[0])
		rc->log.task = NULL;

	if (request_read_body(&rc->req, (size_t)cfg->max_body_bytes, &err) < 0 ||
	    chatreq_parse(rc->req.body.p ? rc->req.body.p : "", rc->req.body.len, &body, &call.req,
			  &err) < 0) {
		refuse(rc, &err);
		return;
	}
	call.body = body;
	rc->log.requested_model = call.req.model;
	rc->log.stream = call.req.stream;
	if (!rc->log.task)
		rc->log.task = call.req.task;
	resp_header(&rc->resp, "X-Router-Requested-Model", "%s", call.req.model);

	/* Task route. */
	const struct task_conf *task = NULL;
	if (rc->log.task) {
		for (size_t i = 0; i < cfg->n_tasks; i++)
			if (strcmp(cfg->tasks[i].name, rc->log.task) == 0)
				task = &cfg->tasks[i];
		if (!task) {
			rerr_set(&err, 400, "invalid_request_error", "unknown_task_type", "metadata.task_type",
				 "Unknown task type '%s'.", rc->log.task);
			refuse(rc, &err);
			json_decref(body);
			return;
		}
	}
	size_t primary;
	if (task) {
		primary = task->model;
	} else if (strcmp(call.req.model, "auto") == 0 && cfg->has_auto_model) {
		primary = cfg->auto_model;
	} else {
		call.model = config_find_model(cfg, call.req.model, &call.upstream_model);
		if (!call.model) {
			rerr_set(&err, 404, "invalid_request_error", "model_not_found", "model",
				 "The model '%s' does not exist. GET /v1/models lists the models this router serves.",
				 call.req.model);
			refuse(rc, &err);
			json_decref(body);
			return;
		}
		primary = (size_t)(call.model - cfg->models);
	}
	/* Tier policy. */
	if (!tier_allows(tier, cfg, primary)) {
		size_t to;
		if (!tier_downgrade(tier, primary, &to)) {
			rerr_set(&err, 403, "permission_error", "model_not_allowed", "model",
				 "Model '%s' is not available to tier %s (%s).", call.req.model, tier->id,
				 tier->name);
			refuse(rc, &err);
			json_decref(body);
			return;
		}
		log_info(rc->id, "tier %s: %s downgraded to %s", tier->id,
			 call.model && call.model->prefix ? call.req.model : cfg->models[primary].id,
			 cfg->models[to].id);
		primary = to;
	}
	if (!call.model || (size_t)(call.model - cfg->models) != primary) {
		call.model = &cfg->models[primary];
		call.upstream_model = call.model->upstream;
		call.public_model = call.model->id;
	} else {
		call.public_model = call.req.model;
	}
	struct chain ch;
	chain_build(cfg, primary, task, &ch);
	size_t kept = 1;
	for (size_t k = 1; k < ch.n; k++)
		if (tier_allows(tier, cfg, ch.model[k]))
			ch.model[kept++] = ch.model[k];
	ch.n = kept;
	call.chain = &ch;

	/* Budget. */
	struct budget_state bs;
	int64_t estimate = budget_estimate_nusd(cfg, body, rc->req.body.len, &call.req, &ch);
	if (budget_reserve(cfg->budget_enabled ? server_reader(rc) : NULL, cfg, tier, agent, rc->id,
			   rc->t0_wall_ms, estimate, &bs, &err) < 0) {
		budget_headers(&rc->resp, &bs);
		rc->log.model = call.public_model;
		refuse(rc, &err);
		json_decref(body);
		return;
	}
	budget_headers(&rc->resp, &bs);
	dispatch_chat(rc, &call);
	json_decref(body);
}
