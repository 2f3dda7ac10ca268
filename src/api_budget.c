/* api_budget.c - GET /v1/router/budget: the calling agent's limits and today's spend;
 * GET /v1/router/budgets: every tier's (admin key required).
 *
 * Read-only: the caller is identified by auth.h, today's spend and reservations are read through
 * the worker's reader connection (reqctx_reader), and a database that cannot be opened turns the
 * answer into a 503 that still carries the limits. Neither writes a request-log row for an answer;
 * a refusal (no key, a wrong one) is logged.
 */
#include <string.h>

#include "api.h"
#include "auth.h"
#include "budget.h"
#include "util.h"

static json_t *scope_json(struct store *st, const char *day, const char *scope, double budget_usd,
			  const struct config *cfg)
{
	int64_t spent = 0, reserved = 0;
	if (st)
		store_budget_spend(st, day, scope, &spent, &reserved);
	json_t *o = json_object();
	json_object_set_new(o, "scope", json_string(scope));
	json_object_set_new(o, "spent_usd", json_real((double)spent / 1e9));
	json_object_set_new(o, "reserved_usd", json_real((double)reserved / 1e9));
	if (budget_usd > 0) {
		struct budget_scope sc;
		budget_scope_init(&sc, scope, budget_usd, cfg);
		sc.spent_nusd = spent;
		sc.reserved_nusd = reserved;
		json_object_set_new(o, "budget_usd", json_real(budget_usd));
		json_object_set_new(o, "limit_usd", json_real((double)sc.limit_nusd / 1e9));
		int64_t left = budget_scope_left(&sc);
		json_object_set_new(o, "remaining_usd", json_real((double)(left < 0 ? 0 : left) / 1e9));
		json_object_set_new(o, "percent_used", json_real(100.0 * (double)spent / (double)sc.budget_nusd));
	} else {
		json_object_set_new(o, "budget_usd", json_null());
	}
	return o;
}

static json_t *head_json(const struct request_ctx *rc, char day[11])
{
	store_utc_day(rc->t0_wall_ms, day);
	json_t *o = json_object();
	json_object_set_new(o, "object", json_string("router.budget"));
	json_object_set_new(o, "day", json_string(day));
	json_object_set_new(o, "resets_in_s", json_integer(budget_seconds_to_reset(rc->t0_wall_ms)));
	json_object_set_new(o, "enabled", json_boolean(rc->cfg->budget_enabled));
	return o;
}

void api_budget_get(struct request_ctx *rc)
{
	const struct config *cfg = rc->cfg;
	char agent_buf[128];
	const char *agent = NULL;
	struct rerr err;
	if (auth_identify(rc, agent_buf, sizeof(agent_buf), &agent, &err) < 0) {
		reqctx_refuse(rc, &err);
		return;
	}
	const struct tier_conf *tier = config_tier_for_agent(cfg, agent);
	char day[11];
	json_t *o = head_json(rc, day);
	json_object_set_new(o, "agent", agent ? json_string(agent) : json_null());
	json_object_set_new(o, "tier", tier ? json_string(tier->id) : json_null());
	json_t *scopes = json_array();
	struct store *st = reqctx_reader(rc);
	if (tier) {
		char scope[200];
		snprintf(scope, sizeof(scope), "tier:%s", tier->id);
		json_array_append_new(scopes, scope_json(st, day, scope, tier->daily_budget_usd, cfg));
		if (agent) {
			snprintf(scope, sizeof(scope), "agent:%s", agent);
			json_array_append_new(scopes,
					      scope_json(st, day, scope, tier->agent_daily_budget_usd, cfg));
		}
	}
	json_object_set_new(o, "scopes", scopes);
	resp_json(&rc->resp, st ? 200 : 503, o);
	json_decref(o);
}

void api_budgets_admin(struct request_ctx *rc)
{
	const struct config *cfg = rc->cfg;
	struct rerr err;
	if (auth_admin(rc, &err) < 0) {
		reqctx_refuse(rc, &err);
		return;
	}
	char day[11];
	json_t *o = head_json(rc, day);
	json_t *scopes = json_array();
	struct store *st = reqctx_reader(rc);
	for (size_t i = 0; i < cfg->n_tiers; i++) {
		char scope[80];
		snprintf(scope, sizeof(scope), "tier:%s", cfg->tiers[i].id);
		json_array_append_new(scopes, scope_json(st, day, scope, cfg->tiers[i].daily_budget_usd, cfg));
	}
	json_object_set_new(o, "scopes", scopes);
	resp_json(&rc->resp, st ? 200 : 503, o);
	json_decref(o);
}
