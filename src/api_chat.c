/* api_chat.c - POST /v1/chat/completions: read and validate the request, resolve the model,
 * hand over to dispatch. Every call, refused or not, leaves one row in the request log. */
#include <string.h>

#include "chatreq.h"
#include "dispatch.h"
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

void api_chat_completions(struct request_ctx *rc)
{
	const struct config *cfg = rc->cfg;
	struct rerr err;
	rerr_clear(&err);
	json_t *body = NULL;
	struct chat_call call;
	memset(&call, 0, sizeof(call));

	const char *agent = NULL;
	if (strcmp(cfg->auth_mode, "header") == 0)
		agent = request_header(&rc->req, cfg->agent_header);
	const struct tier_conf *tier = config_tier_for_agent(cfg, agent && agent[0] ? agent : NULL);
	rc->log.agent = agent && agent[0] ? agent : NULL;
	rc->log.tier = tier ? tier->id : NULL;
	rc->log.task = request_header(&rc->req, "X-Task-Type");

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

	call.model = config_find_model(cfg, call.req.model, &call.upstream_model);
	if (!call.model) {
		rerr_set(&err, 404, "invalid_request_error", "model_not_found", "model",
			 "The model '%s' does not exist. GET /v1/models lists the models this router serves.",
			 call.req.model);
		refuse(rc, &err);
		json_decref(body);
		return;
	}
	call.public_model = call.req.model;
	dispatch_chat(rc, &call);
	json_decref(body);
}
