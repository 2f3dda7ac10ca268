/* auth.h - who is calling: the agent name of a request (routing.auth_mode).
 *
 * Used by the handlers that depend on the caller (api_chat.c, api_budget.c); it answers nothing
 * itself, so each handler decides how a refusal is answered and logged.
 */
#ifndef ROUTER_AUTH_H
#define ROUTER_AUTH_H

#include <stddef.h>

#include "errors.h"
#include "reqctx.h"

/* The caller's agent name: from its API key (auth_mode "key"), from the trusted header
 * (auth_mode "header"), or none (*out = NULL). On success *out is NULL or agent (the caller's
 * buffer of agentsz bytes) and 0 is returned. A missing, unknown or revoked key (401) or a
 * database that cannot check keys (503) returns -1 with the refusal in *err. */
int auth_identify(struct request_ctx *rc, char *agent, size_t agentsz, const char **out,
		  struct rerr *err);

/* Whether the request carries the router's admin key (Authorization: Bearer, compared in constant
 * time): 0, or -1 with 401 (missing or wrong key) or 403 (no admin key is configured) in *err. */
int auth_admin(struct request_ctx *rc, struct rerr *err);

#endif
