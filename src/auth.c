/* auth.c - identifies the caller of a request: its API key or the trusted agent header.
 *
 * Modes (routing.auth_mode): "key" checks the Authorization bearer against the process's key
 * cache, refreshed through the worker's reader connection (keys.h), and yields the key's agent; "header" trusts the
 * configured agent header as the web server passes it; anything else identifies nobody. Refusals
 * come back as errors for the handler to answer; a refusal for a bad key is logged at info level
 * here, once.
 */
#include "auth.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "keys.h"
#include "log.h"
#include "util.h"

int auth_identify(struct request_ctx *rc, char *agent, size_t agentsz, const char **out,
		  struct rerr *err)
{
	const struct config *cfg = rc->cfg;
	rerr_clear(err);
	*out = NULL;
	if (strcmp(cfg->auth_mode, "header") == 0) {
		const char *h = request_header(&rc->req, cfg->agent_header);
		if (h && h[0]) {
			/* Cut to the buffer, then '?' for each byte that is not UTF-8 (a character the
			 * cut split included): the name the row, its budget scope and JSON all agree on. */
			snprintf(agent, agentsz, "%s", h);
			utf8_sanitize(agent);
			*out = agent;
		}
		return 0;
	}
	if (strcmp(cfg->auth_mode, "key") != 0)
		return 0;
	enum key_status ks = key_cache_check(key_cache_global(cfg->db_path), reqctx_reader(rc),
					     request_header(&rc->req, "Authorization"), agent, agentsz);
	switch (ks) {
	case KEY_OK:
		*out = agent;
		return 0;
	case KEY_MISSING:
		rerr_set(err, 401, "invalid_request_error", "missing_api_key", NULL,
			 "You didn't provide an API key. Send 'Authorization: Bearer <key>' with the key "
			 "created for your agent by 'llm-router keys create --agent NAME'.");
		break;
	case KEY_REVOKED:
		rerr_set(err, 401, "invalid_request_error", "invalid_api_key", NULL,
			 "This API key has been revoked.");
		break;
	case KEY_DB_ERROR: {
		/* Neither the database nor the key snapshot beside it can be read (its directory
		 * was removed, say): nothing can tell a valid key from a forged one. */
		const char *slash = strrchr(cfg->db_path, '/');
		int dirlen = slash ? (int)(slash - cfg->db_path) : 1;
		rerr_set(err, 503, "server_error", "keys_unavailable", NULL,
			 "API keys cannot be verified: neither the database nor the key snapshot in "
			 "the data directory %.*s can be read (is the directory missing?). Retry later.",
			 dirlen, slash ? cfg->db_path : ".");
		break;
	}
	default:
		rerr_set(err, 401, "invalid_request_error", "invalid_api_key", NULL,
			 "Incorrect API key provided.");
		break;
	}
	if (ks != KEY_DB_ERROR)
		log_info(rc->id, "refused: %s", err->message);
	return -1;
}

int auth_admin(struct request_ctx *rc, struct rerr *err)
{
	const struct config *cfg = rc->cfg;
	rerr_clear(err);
	if (!cfg->admin_key) {
		rerr_set(err, 403, "permission_error", "admin_disabled", NULL,
			 "Administrative endpoints are off: set %s for the router to enable them.",
			 cfg->admin_key_env && cfg->admin_key_env[0] ? cfg->admin_key_env : "an admin key");
		return -1;
	}
	const char *auth = request_header(&rc->req, "Authorization");
	const char *given = auth && strncasecmp(auth, "Bearer ", 7) == 0 ? auth + 7 : "";
	if (!mem_ct_eq(given, strlen(given), cfg->admin_key, strlen(cfg->admin_key))) {
		rerr_set(err, 401, "invalid_request_error", "invalid_api_key", NULL,
			 "This endpoint needs the router's admin key.");
		return -1;
	}
	return 0;
}
