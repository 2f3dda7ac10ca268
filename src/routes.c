/* routes.c - one static table of {method, path, handler}; routing is on REQUEST_URI so that
 * lighttpd, Apache (mod_fcgid, CGI, .htaccess rewrites) and mod_proxy_fcgi behave the same.
 *
 * Between server.c above and the handlers (api.h) below: the first route whose path and method
 * match gets the request; a path that matches with another method gets 405 with Allow, anything
 * else 404. Both refusals are written to the request log (method and path). */
#include "routes.h"

#include <string.h>

#include "api.h"
#include "util.h"

struct route {
	const char *method;
	const char *path;
	int prefix;                   /* path is a prefix; the rest is the handler's */
	void (*handler)(struct request_ctx *rc);
};

static const struct route routes[] = {
	{ "GET", "/v1/models", 0, api_models_list },
	{ "GET", "/v1/models/", 1, api_models_get },
	{ "POST", "/v1/chat/completions", 0, api_chat_completions },
	{ "POST", "/v1/embeddings", 0, api_embeddings },
	{ "POST", "/v1/responses", 0, api_responses },
	{ "GET", "/v1/responses/", 1, api_responses_get },
	{ "DELETE", "/v1/responses/", 1, api_responses_delete },
	{ "POST", "/v1/responses/", 1, api_responses_cancel },
	{ "GET", "/v1/router/budget", 0, api_budget_get },
	{ "GET", "/v1/router/budgets", 0, api_budgets_admin },
	{ "GET", "/v1/router/stats", 0, api_router_stats },
	{ "GET", "/metrics", 0, api_metrics },
};

static int path_matches(const struct route *r, const char *path)
{
	if (r->prefix)
		return str_has_prefix(path, r->path) && path[strlen(r->path)] != '\0';
	return strcmp(path, r->path) == 0;
}

void routes_dispatch(struct request_ctx *rc)
{
	const char *path = rc->req.path;
	const struct route *path_hit = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
		if (!path_matches(&routes[i], path))
			continue;
		if (strcmp(routes[i].method, rc->req.method) == 0) {
			routes[i].handler(rc);
			return;
		}
		if (!path_hit)
			path_hit = &routes[i];
	}
	struct rerr e;
	rerr_clear(&e);
	if (path_hit) {
		resp_header(&rc->resp, "Allow", "%s", path_hit->method);
		rerr_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL,
			 "Method %s is not allowed for %s; use %s.", rc->req.method, path,
			 path_hit->method);
	} else {
		rerr_set(&e, 404, "invalid_request_error", "unknown_url", NULL,
			 "Unknown request URL: %s %s. Endpoints: GET /v1/models, POST /v1/chat/completions, "
			 "POST /v1/embeddings, POST /v1/responses, GET /v1/router/budget.",
			 rc->req.method, path);
	}
	/* Logged like any refusal: a client calling what the router lacks shows on its side. */
	reqctx_refuse(rc, &e);
}
