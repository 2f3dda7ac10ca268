/* config_file.c - reads a configuration file: its groups, then providers, models, tiers and tasks.
 *
 * Model: libconfig parses the file (with its @include files); the flat groups go through the schema
 * (config_schema.c), then each list is read element by element with its own field table into a
 * scratch struct and converted (prices to nano-USD per token, names to indexes), and the
 * cross-references are checked once everything they may name is known: the provider of a model,
 * fallback chains, the models and downgrades of a tier, agents in two tiers, the tasks, the
 * default tier and the auto model. Every problem is reported with its FILE:LINE, not just the
 * first. Provider keys and base URLs are read from the environment here, as each provider is read.
 * With config_schema.c, the only user of libconfig (through the private config_schema.h).
 */
#include "config_file.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config_schema.h"
#include "util.h"

static const char *const dev_roles[] = { "developer", "system", NULL };
static const char *const model_kinds[] = { "chat", "embedding", NULL };

/* A `capabilities` list (s: its owner's setting) as CAP_* bits; dflt when it is absent or empty.
 * An unknown name is reported. */
static unsigned caps_of(struct loader *ld, config_setting_t *s, const struct strv *names,
			unsigned dflt)
{
	if (!names->n)
		return dflt;
	unsigned caps = 0;
	for (size_t i = 0; i < names->n; i++) {
		int k = 0;
		while (config_cap_names[k] && strcmp(config_cap_names[k], names->v[i]) != 0)
			k++;
		if (config_cap_names[k])
			caps |= 1u << k;
		else
			config_schema_error(ld, s, "unknown capability \"%s\" (known: tools, images, "
					    "json_object, json_schema)", names->v[i]);
	}
	return caps;
}

#define P(field) offsetof(struct provider_conf, field)

static const struct field provider_fields[] = {
	{ "api", F_STR, NO_OFF, REQUIRED, 0, 0, config_api_names },
	{ "key_env", F_STR, P(key_env), REQUIRED, 1, 0, NULL },
	{ "base_url_env", F_STR, P(base_url_env), "", 0, 0, NULL },
	{ "base_url", F_STR, P(base_url_default), REQUIRED, 1, 0, NULL },
	{ "developer_role", F_STR, P(developer_role), "developer", 0, 0, dev_roles },
	{ "strip_message_name", F_BOOL, P(strip_message_name), "false", 0, 0, NULL },
	{ "keep_reasoning_content", F_BOOL, P(keep_reasoning_content), "false", 0, 0, NULL },
	{ "reasoning_field", F_STR, P(reasoning_field), "", 0, 0, NULL },
	{ "unsupported_params", F_STRV, P(unsupported_params), "", 0, 0, NULL },
	{ "reject_params", F_STRV, P(reject_params), "", 0, 0, NULL },
	{ "custom_tools", F_BOOL, P(custom_tools), "false", 0, 0, NULL },
	{ "max_n", F_INT, P(max_n), "0", 0, 128, NULL },
	{ "headers", F_STRV, P(headers), "", 0, 0, NULL },
	{ "capabilities", F_STRV, P(capabilities), "", 0, 0, NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL }
};

#undef P

/* Model fields are read into a scratch struct, then converted. */
struct model_raw {
	char *id;
	char *provider;
	char *upstream;
	int passthrough;
	double in, out, cached_in, cache_write;
	int reasoning;                /* -1 = derive from the prefixes */
	int64_t max_output_tokens;
	struct strv fallback;
	struct strv unsupported_params;
	int64_t created;
	char *kind;
	int64_t dimensions;
	struct strv capabilities;
};

#define M(field) offsetof(struct model_raw, field)

static const struct field model_fields[] = {
	{ "id", F_STR, M(id), REQUIRED, 1, 0, NULL },
	{ "provider", F_STR, M(provider), REQUIRED, 1, 0, NULL },
	{ "upstream", F_STR, M(upstream), "", 0, 0, NULL },
	{ "passthrough", F_BOOL, M(passthrough), "false", 0, 0, NULL },
	{ "input_usd_per_mtok", F_DOUBLE, M(in), REQUIRED, 0, 100000, NULL },
	{ "output_usd_per_mtok", F_DOUBLE, M(out), "-1", -1, 100000, NULL },
	{ "cached_input_usd_per_mtok", F_DOUBLE, M(cached_in), "-1", -1, 100000, NULL },
	{ "cache_write_usd_per_mtok", F_DOUBLE, M(cache_write), "-1", -1, 100000, NULL },
	{ "reasoning", F_BOOL, M(reasoning), "auto", 0, 0, NULL },
	{ "max_output_tokens", F_INT, M(max_output_tokens), "4096", 1, 10000000, NULL },
	{ "fallback", F_STRV, M(fallback), "", 0, 0, NULL },
	{ "unsupported_params", F_STRV, M(unsupported_params), "", 0, 0, NULL },
	{ "created", F_INT, M(created), "0", 0, 4102444800.0, NULL },
	{ "kind", F_STR, M(kind), "chat", 1, 0, model_kinds },
	{ "dimensions", F_INT, M(dimensions), "0", 0, 65536, NULL },
	{ "capabilities", F_STRV, M(capabilities), "", 0, 0, NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL }
};

#undef M

struct tier_raw {
	char *name;
	double budget;
	double agent_budget;
	struct strv models;
	struct strv agents;
};

#define T(field) offsetof(struct tier_raw, field)

static const struct field tier_fields[] = {
	{ "name", F_STR, T(name), "", 0, 0, NULL },
	{ "daily_budget_usd", F_DOUBLE, T(budget), REQUIRED, 0, 1e9, NULL },
	{ "agent_daily_budget_usd", F_DOUBLE, T(agent_budget), "0", 0, 1e9, NULL },
	{ "models", F_STRV, T(models), REQUIRED, 0, 0, NULL },
	{ "downgrade", F_SUB, NO_OFF, "", 0, 0, NULL },
	{ "agents", F_STRV, T(agents), "", 0, 0, NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL }
};

#undef T

struct pair_raw {
	char *from, *to;
};

static const struct field downgrade_fields[] = {
	{ "from", F_STR, offsetof(struct pair_raw, from), REQUIRED, 1, 0, NULL },
	{ "to", F_STR, offsetof(struct pair_raw, to), REQUIRED, 1, 0, NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL }
};

struct task_raw {
	char *model, *fallback;
};

static const struct field task_fields[] = {
	{ "model", F_STR, offsetof(struct task_raw, model), REQUIRED, 1, 0, NULL },
	{ "fallback", F_STR, offsetof(struct task_raw, fallback), "", 0, 0, NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL }
};

/* ---------------------------------------------------------------------------------------------- */
/* Sections */

static void strip_trailing_slash(char *s)
{
	size_t n = strlen(s);
	while (n > 1 && s[n - 1] == '/')
		s[--n] = '\0';
}

static void load_providers(struct loader *ld, config_setting_t *g)
{
	struct config *cfg = ld->cfg;
	if (!config_setting_is_group(g)) {
		config_schema_error(ld, g, "'providers' must be a group { name = { ... }; ... }");
		return;
	}
	int n = config_setting_length(g);
	cfg->providers = xcalloc((size_t)n, sizeof(struct provider_conf));
	const char *demo_url = cfg->demo_url_env[0] ? config_getenv(cfg, cfg->demo_url_env) : NULL;
	if (demo_url && !demo_url[0])
		demo_url = NULL;
	for (int i = 0; i < n; i++) {
		config_setting_t *ps = config_setting_get_elem(g, (unsigned)i);
		struct provider_conf *p = &cfg->providers[cfg->n_providers++];
		p->name = xstrdup(config_setting_name(ps));
		config_schema_parse(ld, ps, provider_fields, p);
		p->caps = caps_of(ld, ps, &p->capabilities, CAP_ALL);
		const char *api = NULL;
		if (config_setting_is_group(ps) && config_setting_lookup_string(ps, "api", &api)) {
			for (int k = 0; config_api_names[k]; k++) {
				if (strcmp(config_api_names[k], api) == 0)
					p->api = (enum provider_api)k;
			}
		}
		if (!p->base_url_default)
			continue;
		strip_trailing_slash(p->base_url_default);
		const char *scheme_end = str_has_prefix(p->base_url_default, "https://") ? "https://"
					 : str_has_prefix(p->base_url_default, "http://") ? "http://"
											    : NULL;
		if (!scheme_end) {
			config_schema_error(ld, config_setting_get_member(ps, "base_url"),
				  "providers.%s.base_url must start with http:// or https://", p->name);
			continue;
		}
		const char *key = p->key_env && p->key_env[0] ? config_getenv(cfg, p->key_env) : NULL;
		const char *url = p->base_url_env && p->base_url_env[0] ? config_getenv(cfg, p->base_url_env)
									 : NULL;
		if (key && key[0]) {
			p->api_key = xstrdup(key);
			p->base_url = xstrdup(url && url[0] ? url : p->base_url_default);
			p->available = 1;
		} else if (demo_url) {
			/* Demo mode: the project's fake provider answers for every provider without a
			 * key, under /<provider>/<path of the public base URL>. */
			const char *path = strchr(p->base_url_default + strlen(scheme_end), '/');
			p->base_url = xasprintf("%s/%s%s", demo_url, p->name, path ? path : "");
			p->api_key = xstrdup("demo-key-not-secret");
			p->available = 1;
			p->demo = 1;
		} else {
			p->base_url = xstrdup(url && url[0] ? url : p->base_url_default);
			p->unavailable_reason = xasprintf("%s is not set", p->key_env);
		}
		strip_trailing_slash(p->base_url);
	}
}

static int find_provider(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_providers; i++) {
		if (strcmp(cfg->providers[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

static int64_t price_nusd(double usd_per_mtok)
{
	return llround(usd_per_mtok * 1000.0);
}

static int matches_prefix(const struct strv *prefixes, const char *id)
{
	for (size_t i = 0; i < prefixes->n; i++) {
		if (str_has_prefix(id, prefixes->v[i]))
			return 1;
	}
	return 0;
}

/* Model i of the list, from its scratch struct r (already parsed from ms): its id, provider,
 * pass-through prefix or upstream id, prices, reasoning rule. r->unsupported_params is moved. */
static void convert_model(struct loader *ld, config_setting_t *ms, int i, struct model_raw *r,
			  struct model_conf *m)
{
	struct config *cfg = ld->cfg;
	m->id = xstrdup(r->id);
	for (int k = 0; k < i; k++) {
		if (cfg->models[k].id && strcmp(cfg->models[k].id, r->id) == 0)
			config_schema_error(ld, ms, "model \"%s\" is defined twice", r->id);
	}
	int pi = find_provider(cfg, r->provider);
	if (pi < 0)
		config_schema_error(ld, ms, "model \"%s\": unknown provider \"%s\"", r->id, r->provider);
	m->provider = pi < 0 ? 0 : pi;
	size_t idlen = strlen(r->id);
	if (r->passthrough) {
		if (idlen < 3 || strcmp(r->id + idlen - 2, "/*") != 0)
			config_schema_error(ld, ms,
				  "pass-through model \"%s\": id must end in \"/*\" (e.g. \"openrouter/*\")",
				  r->id);
		if (r->upstream && r->upstream[0])
			config_schema_error(ld, ms, "pass-through model \"%s\" cannot set 'upstream'", r->id);
		/* A Gemini request names its model in the URL path: a client-chosen id must never
		 * reach it (gemini/a/../../v1/x?alt=sse&). */
		if (pi >= 0 && cfg->providers[pi].api == API_GEMINI)
			config_schema_error(ld, ms,
				  "pass-through model \"%s\": provider \"%s\" speaks the Gemini API, whose"
				  " model id is part of the request URL; list its models one by one", r->id,
				  r->provider);
		m->prefix = xstrndup(r->id, idlen ? idlen - 1 : 0);
		m->upstream = xstrdup("");
	} else {
		if (strchr(r->id, '*'))
			config_schema_error(ld, ms, "model \"%s\": '*' is only allowed in pass-through ids", r->id);
		m->upstream = xstrdup(r->upstream && r->upstream[0] ? r->upstream : r->id);
	}
	m->embedding = r->kind && strcmp(r->kind, "embedding") == 0;
	m->dimensions = r->dimensions;
	if (m->embedding) {
		/* Vectors are only comparable with vectors of the same model: no pattern, no chain. */
		if (r->passthrough)
			config_schema_error(ld, ms, "embedding model \"%s\" cannot be a pass-through route",
				  r->id);
		if (r->fallback.n)
			config_schema_error(ld, ms,
				  "embedding model \"%s\" cannot have a fallback: another model's vectors are "
				  "not comparable with its own (its calls are retried on the same model)", r->id);
		if (pi >= 0 && cfg->providers[pi].api == API_ANTHROPIC)
			config_schema_error(ld, ms,
				  "embedding model \"%s\": provider \"%s\" speaks the Anthropic API, which has "
				  "no embeddings", r->id, r->provider);
		if (r->out > 0)
			config_schema_error(ld, ms,
				  "embedding model \"%s\": an embedding has no output tokens; leave "
				  "output_usd_per_mtok out", r->id);
	} else {
		if (r->out < 0)
			config_schema_error(ld, ms, "model \"%s\": output_usd_per_mtok is required", r->id);
		if (r->dimensions)
			config_schema_error(ld, ms, "model \"%s\": 'dimensions' is for kind = \"embedding\"",
				  r->id);
	}
	m->caps = m->embedding ? 0 : caps_of(ld, ms, &r->capabilities,
						 pi >= 0 ? cfg->providers[pi].caps : CAP_ALL);
	if (m->embedding && r->capabilities.n)
		config_schema_error(ld, ms, "embedding model \"%s\": 'capabilities' is for chat models",
			  r->id);
	m->in_nusd = price_nusd(r->in);
	m->out_nusd = r->out < 0 ? 0 : price_nusd(r->out);
	m->cached_in_nusd = r->cached_in < 0 ? m->in_nusd : price_nusd(r->cached_in);
	m->cache_write_nusd = r->cache_write < 0 ? m->in_nusd : price_nusd(r->cache_write);
	m->reasoning = r->reasoning >= 0 ? r->reasoning
					 : matches_prefix(&cfg->reasoning_prefixes, m->upstream);
	m->max_output_tokens = r->max_output_tokens;
	m->unsupported_params = r->unsupported_params;
	r->unsupported_params.v = NULL;
	r->unsupported_params.n = 0;
	m->created = r->created ? r->created : cfg->loaded_at;
}

/* The fallback chain of model i (ms: its setting), once every model id is known: each entry a
 * configured model, not itself, not a pass-through pattern, not twice. */
static void resolve_fallbacks(struct loader *ld, config_setting_t *ms, int i,
			      const struct strv *fallback)
{
	struct config *cfg = ld->cfg;
	struct model_conf *m = &cfg->models[i];
	m->fallback = xcalloc(fallback->n ? fallback->n : 1, sizeof(size_t));
	for (size_t k = 0; k < fallback->n; k++) {
		const char *fid = fallback->v[k];
		int fi = config_model_index(cfg, fid);
		if (fi < 0) {
			config_schema_error(ld, ms, "model \"%s\": fallback \"%s\" is not a configured model",
				  m->id, fid);
			continue;
		}
		if ((size_t)fi == (size_t)i) {
			config_schema_error(ld, ms, "model \"%s\": its fallback chain contains itself (a cycle)",
				  m->id);
			continue;
		}
		if (cfg->models[fi].prefix) {
			config_schema_error(ld, ms,
				  "model \"%s\": fallback \"%s\" is a pass-through pattern, not a model",
				  m->id, fid);
			continue;
		}
		if (cfg->models[fi].embedding) {
			config_schema_error(ld, ms,
				  "model \"%s\": fallback \"%s\" is an embedding model, not a chat model",
				  m->id, fid);
			continue;
		}
		int dup = 0;
		for (size_t d = 0; d < m->n_fallback; d++)
			dup |= m->fallback[d] == (size_t)fi;
		if (dup) {
			config_schema_error(ld, ms,
				  "model \"%s\": fallback \"%s\" appears twice in its chain (a cycle)",
				  m->id, fid);
			continue;
		}
		m->fallback[m->n_fallback++] = (size_t)fi;
	}
}

static void model_raw_free(struct model_raw *r)
{
	free(r->id);
	free(r->provider);
	free(r->upstream);
	free(r->kind);
	config_strv_free(&r->capabilities);
	config_strv_free(&r->fallback);
	config_strv_free(&r->unsupported_params);
}

static void load_models(struct loader *ld, config_setting_t *l)
{
	struct config *cfg = ld->cfg;
	if (!config_setting_is_list(l)) {
		config_schema_error(ld, l, "'models' must be a list ( { ... }, { ... } )");
		return;
	}
	int n = config_setting_length(l);
	cfg->models = xcalloc((size_t)n, sizeof(struct model_conf));
	struct model_raw *raws = xcalloc((size_t)n, sizeof(struct model_raw));
	config_setting_t **sets = xcalloc((size_t)n, sizeof(*sets));
	for (int i = 0; i < n; i++) {
		config_setting_t *ms = config_setting_get_elem(l, (unsigned)i);
		struct model_conf *m = &cfg->models[cfg->n_models++];
		sets[i] = ms;
		config_schema_parse(ld, ms, model_fields, &raws[i]);
		if (raws[i].id && raws[i].provider)
			convert_model(ld, ms, i, &raws[i], m);
	}
	/* Fallback chains reference other models: resolve once every id is known. */
	for (int i = 0; i < n; i++) {
		if (cfg->models[i].id)
			resolve_fallbacks(ld, sets[i], i, &raws[i].fallback);
	}
	for (int i = 0; i < n; i++)
		model_raw_free(&raws[i]);
	free(raws);
	free(sets);
}

/* The tier's allowed models (ts: its setting): "*" allows all of them and the pass-through route,
 * a pass-through pattern allows that route. */
static void tier_models(struct loader *ld, config_setting_t *ts, struct tier_conf *t,
			const struct strv *models)
{
	struct config *cfg = ld->cfg;
	t->models = xcalloc(models->n ? models->n : 1, sizeof(size_t));
	for (size_t k = 0; k < models->n; k++) {
		const char *id = models->v[k];
		if (strcmp(id, "*") == 0) {
			t->all_models = 1;
			t->allow_passthrough = 1;
			continue;
		}
		int mi = config_model_index(cfg, id);
		if (mi < 0) {
			config_schema_error(ld, ts, "tier %s: model \"%s\" is not a configured model", t->id, id);
			continue;
		}
		if (cfg->models[mi].prefix)
			t->allow_passthrough = 1;
		t->models[t->n_models++] = (size_t)mi;
	}
	if (!t->all_models && t->n_models == 0)
		config_schema_error(ld, ts, "tier %s allows no model", t->id);
}

/* One downgrade {from, to} of tier t (ds: its setting): both configured models, the target among
 * the tier's models, one downgrade per source model. */
static void tier_downgrade(struct loader *ld, config_setting_t *ds, struct tier_conf *t)
{
	struct config *cfg = ld->cfg;
	struct pair_raw pr = { 0 };
	config_schema_parse(ld, ds, downgrade_fields, &pr);
	if (pr.from && pr.to) {
		int fi = config_model_index(cfg, pr.from);
		int ti = config_model_index(cfg, pr.to);
		if (fi < 0)
			config_schema_error(ld, ds, "tier %s: downgrade from unknown model \"%s\"", t->id, pr.from);
		if (ti < 0)
			config_schema_error(ld, ds, "tier %s: downgrade to unknown model \"%s\"", t->id, pr.to);
		if (fi >= 0 && ti >= 0) {
			int allowed = t->all_models;
			for (size_t a = 0; a < t->n_models; a++)
				allowed |= t->models[a] == (size_t)ti;
			if (!allowed)
				config_schema_error(ld, ds,
					  "tier %s: downgrade target \"%s\" is not among the tier's models",
					  t->id, pr.to);
			if (cfg->models[fi].embedding != cfg->models[ti].embedding)
				config_schema_error(ld, ds,
					  "tier %s: downgrade from \"%s\" to \"%s\" crosses between a chat and "
					  "an embedding model", t->id, pr.from, pr.to);
			for (size_t d = 0; d < t->n_downgrades; d++) {
				if (t->downgrades[d].from == (size_t)fi)
					config_schema_error(ld, ds, "tier %s: two downgrades for \"%s\"", t->id,
						  pr.from);
			}
			t->downgrades[t->n_downgrades].from = (size_t)fi;
			t->downgrades[t->n_downgrades].to = (size_t)ti;
			t->n_downgrades++;
		}
	}
	free(pr.from);
	free(pr.to);
}

/* The tier's downgrade list, if any. Returns -1 when it is not a list (reported; the caller then
 * skips the tier's remaining checks). */
static int tier_downgrades(struct loader *ld, config_setting_t *ts, struct tier_conf *t)
{
	config_setting_t *dl = config_setting_is_group(ts) ? config_setting_get_member(ts, "downgrade")
							   : NULL;
	if (!dl)
		return 0;
	if (!config_setting_is_list(dl)) {
		config_schema_error(ld, dl,
			  "tiers.%s.downgrade must be a list ( { from = \"...\"; to = \"...\"; }, ... )",
			  t->id);
		return -1;
	}
	int nd = config_setting_length(dl);
	t->downgrades = xcalloc((size_t)(nd ? nd : 1), sizeof(struct downgrade));
	for (int k = 0; k < nd; k++)
		tier_downgrade(ld, config_setting_get_elem(dl, (unsigned)k), t);
	return 0;
}

/* An agent belongs to one tier: t (the last one read) against the tiers before it. */
static void tier_agents_unique(struct loader *ld, config_setting_t *ts, const struct tier_conf *t)
{
	struct config *cfg = ld->cfg;
	for (size_t a = 0; a < t->agents.n; a++) {
		for (size_t j = 0; j + 1 < cfg->n_tiers; j++) {
			if (config_strv_contains(&cfg->tiers[j].agents, t->agents.v[a]))
				config_schema_error(ld, config_setting_get_member(ts, "agents"),
					  "agent \"%s\" is in tiers %s and %s", t->agents.v[a],
					  cfg->tiers[j].id, t->id);
		}
	}
}

static void load_tiers(struct loader *ld, config_setting_t *g)
{
	struct config *cfg = ld->cfg;
	if (!config_setting_is_group(g)) {
		config_schema_error(ld, g, "'tiers' must be a group { T1 = { ... }; ... }");
		return;
	}
	int n = config_setting_length(g);
	cfg->tiers = xcalloc((size_t)n, sizeof(struct tier_conf));
	for (int i = 0; i < n; i++) {
		config_setting_t *ts = config_setting_get_elem(g, (unsigned)i);
		struct tier_conf *t = &cfg->tiers[cfg->n_tiers++];
		struct tier_raw r = { 0 };
		t->id = xstrdup(config_setting_name(ts));
		config_schema_parse(ld, ts, tier_fields, &r);
		t->name = r.name ? r.name : xstrdup("");
		t->daily_budget_usd = r.budget;
		t->agent_daily_budget_usd = r.agent_budget;
		t->agents = r.agents;
		tier_models(ld, ts, t, &r.models);
		config_strv_free(&r.models);
		if (tier_downgrades(ld, ts, t) < 0)
			continue;
		tier_agents_unique(ld, ts, t);
	}
}

static void load_tasks(struct loader *ld, config_setting_t *g)
{
	struct config *cfg = ld->cfg;
	if (!config_setting_is_group(g)) {
		config_schema_error(ld, g, "'tasks' must be a group { name = { model = \"...\"; }; ... }");
		return;
	}
	int n = config_setting_length(g);
	cfg->tasks = xcalloc((size_t)(n ? n : 1), sizeof(struct task_conf));
	for (int i = 0; i < n; i++) {
		config_setting_t *ts = config_setting_get_elem(g, (unsigned)i);
		struct task_raw r = { 0 };
		config_schema_parse(ld, ts, task_fields, &r);
		struct task_conf *t = &cfg->tasks[cfg->n_tasks++];
		t->name = xstrdup(config_setting_name(ts));
		if (r.model) {
			int mi = config_model_index(cfg, r.model);
			if (mi < 0)
				config_schema_error(ld, ts, "task %s: model \"%s\" is not a configured model", t->name,
					  r.model);
			else if (cfg->models[mi].embedding)
				config_schema_error(ld, ts, "task %s: model \"%s\" is an embedding model", t->name,
					  r.model);
			t->model = mi < 0 ? 0 : (size_t)mi;
		}
		if (r.fallback && r.fallback[0]) {
			int fi = config_model_index(cfg, r.fallback);
			if (fi < 0)
				config_schema_error(ld, ts, "task %s: fallback \"%s\" is not a configured model", t->name,
					  r.fallback);
			else if (cfg->models[fi].embedding)
				config_schema_error(ld, ts, "task %s: fallback \"%s\" is an embedding model",
					  t->name, r.fallback);
			else if (r.model && strcmp(r.model, r.fallback) == 0)
				config_schema_error(ld, ts, "task %s: fallback is the preferred model itself (a cycle)",
					  t->name);
			t->fallback = fi < 0 ? 0 : (size_t)fi;
			t->has_fallback = fi >= 0;
		}
		free(r.model);
		free(r.fallback);
	}
}

/* ---------------------------------------------------------------------------------------------- */
/* Cross-checks once every section is read */

/* Each list that is present must hold an element. */
static void check_not_empty(struct loader *ld, config_setting_t *root)
{
	struct config *cfg = ld->cfg;
	if (cfg->n_providers == 0 && config_setting_get_member(root, "providers"))
		config_schema_error(ld, config_setting_get_member(root, "providers"),
				    "no provider is configured");
	if (cfg->n_models == 0 && config_setting_get_member(root, "models"))
		config_schema_error(ld, config_setting_get_member(root, "models"), "no model is configured");
	config_setting_t *tiers_set = config_setting_get_member(root, "tiers");
	if (tiers_set && cfg->n_tiers == 0)
		config_schema_error(ld, tiers_set, "no tier is configured");
}

/* routing.default_tier and routing.auto_model name a configured tier and model. */
static void resolve_routing(struct loader *ld, config_setting_t *root)
{
	struct config *cfg = ld->cfg;
	if (cfg->default_tier_name && cfg->n_tiers) {
		int found = 0;
		for (size_t i = 0; i < cfg->n_tiers; i++) {
			if (strcmp(cfg->tiers[i].id, cfg->default_tier_name) == 0) {
				cfg->default_tier = i;
				found = 1;
			}
		}
		config_setting_t *routing = config_setting_get_member(root, "routing");
		config_setting_t *dt = routing && config_setting_is_group(routing)
					       ? config_setting_get_member(routing, "default_tier")
					       : NULL;
		if (!found)
			config_schema_error(ld, dt ? dt : routing,
				  "routing.default_tier \"%s\" is not a configured tier",
				  cfg->default_tier_name);
	}
	cfg->has_auto_model = 0;
	if (cfg->auto_model_name && cfg->auto_model_name[0] && cfg->n_models) {
		int ai = config_model_index(cfg, cfg->auto_model_name);
		config_setting_t *routing = config_setting_get_member(root, "routing");
		if (ai < 0 || cfg->models[ai].prefix || cfg->models[ai].embedding)
			config_schema_error(ld, routing, "routing.auto_model \"%s\" is not a configured model",
				  cfg->auto_model_name);
		cfg->auto_model = ai < 0 ? 0 : (size_t)ai;
		cfg->has_auto_model = ai >= 0;
	}
}

/* A copy of a part libcurl allocated (freed here) when ok, else NULL. */
static char *take_part(char *part, int ok)
{
	char *s = ok ? xstrdup(part) : NULL;
	curl_free(part);
	return s;
}

/* Parses proxy as libcurl 7.88 parses CURLOPT_PROXY (a URL, "http" when it names no scheme) and
 * checks that its scheme is one libcurl speaks; splits off its credentials (decoded) into
 * cfg->proxy_user and cfg->proxy_password and leaves cfg->proxy_url without them. 0, or -1. */
static int split_proxy(struct config *cfg, const char *proxy)
{
	static const char *const schemes[] = { "http", "https", "socks4", "socks4a", "socks5",
					       "socks5h" };
	CURLU *u = curl_url();
	char *scheme = NULL, *user = NULL, *password = NULL, *url = NULL;
	int ok = u && curl_url_set(u, CURLUPART_URL, proxy,
				   CURLU_NON_SUPPORT_SCHEME | CURLU_GUESS_SCHEME) == CURLUE_OK &&
		 curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK;
	int known = 0;
	for (size_t i = 0; ok && i < sizeof(schemes) / sizeof(schemes[0]); i++)
		known |= str_ieq(scheme, schemes[i]);
	curl_free(scheme);
	ok = ok && known;
	CURLUcode ru = ok ? curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE) : CURLUE_NO_USER;
	CURLUcode rp = ok ? curl_url_get(u, CURLUPART_PASSWORD, &password, CURLU_URLDECODE)
			  : CURLUE_NO_PASSWORD;
	if ((ru != CURLUE_OK && ru != CURLUE_NO_USER) ||
	    (rp != CURLUE_OK && rp != CURLUE_NO_PASSWORD))
		ok = 0;    /* credentials that do not decode (a %00) */
	cfg->proxy_user = take_part(user, ok && ru == CURLUE_OK);
	cfg->proxy_password = take_part(password, ok && rp == CURLUE_OK);
	if (ok && (cfg->proxy_user || cfg->proxy_password)) {
		if (!cfg->proxy_user)
			cfg->proxy_user = xstrdup("");
		if (!cfg->proxy_password)
			cfg->proxy_password = xstrdup("");
		ok = curl_url_set(u, CURLUPART_USER, NULL, 0) == CURLUE_OK &&
		     curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) == CURLUE_OK &&
		     curl_url_get(u, CURLUPART_URL, &url, 0) == CURLUE_OK;
		cfg->proxy_url = take_part(url, ok);
	} else {
		cfg->proxy_url = ok ? xstrdup(proxy) : NULL;
	}
	curl_url_cleanup(u);
	return ok ? 0 : -1;
}

/* A proxy libcurl refuses would fail every call, and libcurl's error text quotes it whole, its
 * password included: refused here, without quoting it. */
static void check_upstream(struct loader *ld, config_setting_t *root)
{
	const char *proxy = ld->cfg->proxy;
	if (!proxy || !proxy[0] || split_proxy(ld->cfg, proxy) == 0)
		return;
	config_schema_error(ld, config_setting_lookup(root, "upstream.proxy"),
		  "'upstream.proxy' is not a proxy URL libcurl takes (scheme://[user:password@]host[:port], "
		  "scheme http, https, socks4, socks4a, socks5 or socks5h; percent-encode @ # / : in the "
		  "user name and password); its value is not shown: it may hold a password");
}

static void check_budget(struct loader *ld, config_setting_t *root)
{
	struct config *cfg = ld->cfg;
	if (cfg->webhook_url && cfg->webhook_url[0] && !str_has_prefix(cfg->webhook_url, "http://") &&
	    !str_has_prefix(cfg->webhook_url, "https://"))
		config_schema_error(ld, config_setting_get_member(root, "budget"),
			  "budget.webhook_url must be an http:// or https:// URL");
	if (cfg->reservation_timeout_s * 1000 < cfg->deadline_ms + 60000)
		config_schema_error(ld, config_setting_lookup(root, "budget.reservation_timeout_s"),
			  "'budget.reservation_timeout_s' (%lld s) must outlast upstream.deadline_ms (%lld ms) by "
			  "a minute: a reservation reclaimed while its call still runs lets another call spend "
			  "the same budget", (long long)cfg->reservation_timeout_s,
			  (long long)cfg->deadline_ms);
	if (cfg->block_percent < cfg->warn_percent)
		config_schema_error(ld, config_setting_get_member(root, "budget"),
			  "budget.block_percent (%lld) is below budget.warn_percent (%lld)",
			  (long long)cfg->block_percent, (long long)cfg->warn_percent);
}

/* ---------------------------------------------------------------------------------------------- */

int config_file_read(struct config *cfg, const char *path, const char *include_dir,
		     struct buf *errors)
{
	struct loader ld = { .path = path, .errors = errors, .cfg = cfg };
	config_t lc;
	config_init(&lc);
	config_set_include_dir(&lc, include_dir);
	if (!config_read_file(&lc, cfg->path)) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			buf_printf(errors, "%s: cannot read the file: %s\n", path, strerror(errno));
		else
			buf_printf(errors, "%s:%d: %s\n",
				   config_error_file(&lc) ? config_error_file(&lc) : path,
				   config_error_line(&lc), config_error_text(&lc));
		config_destroy(&lc);
		return -1;
	}
	config_setting_t *root = config_root_setting(&lc);
	config_schema_parse_globals(&ld, root);
	config_setting_t *s;
	if ((s = config_setting_get_member(root, "providers")))
		load_providers(&ld, s);
	if ((s = config_setting_get_member(root, "models")))
		load_models(&ld, s);
	if ((s = config_setting_get_member(root, "tiers")))
		load_tiers(&ld, s);
	if ((s = config_setting_get_member(root, "tasks")))
		load_tasks(&ld, s);
	check_not_empty(&ld, root);
	resolve_routing(&ld, root);
	check_upstream(&ld, root);
	check_budget(&ld, root);
	config_destroy(&lc);
	return ld.nerr;
}
