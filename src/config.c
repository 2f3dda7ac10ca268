/* config.c - the struct config: its lifetime, its string lists and the lookups on it.
 *
 * Model: a struct config is built once by config_load() (config_load.c, over config_file.c and
 * config_schema.c) and not modified afterwards (config.h names the one exception); everything
 * here only reads it, except config_free, which its last user calls (the reference count lives in
 * config_load.c). No file
 * here touches libconfig or the environment: a struct config can be built and queried in a test
 * without either.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

const char *const config_api_names[] = { "openai", "anthropic", "gemini", NULL };
const char *const config_cap_names[] = { "tools", "images", "json_object", "json_schema", NULL };

/* ---------------------------------------------------------------------------------------------- */
/* String lists */

void config_strv_free(struct strv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sv->v = NULL;
	sv->n = 0;
}

void config_strv_push(struct strv *sv, const char *s)
{
	sv->v = xrealloc(sv->v, (sv->n + 1) * sizeof(char *));
	sv->v[sv->n++] = xstrdup(s);
}

int config_strv_contains(const struct strv *sv, const char *s)
{
	for (size_t i = 0; i < sv->n; i++) {
		if (strcmp(sv->v[i], s) == 0)
			return 1;
	}
	return 0;
}


/* ---------------------------------------------------------------------------------------------- */
/* The environment as a config sees it */

/* Names the first load put into the process environment from llm-router.env (they were not
 * there): written once, before any thread exists, and only read afterwards. */
static struct strv env_from_file;

void config_env_from_file(const char *name)
{
	config_strv_push(&env_from_file, name);
}

static const char *env_file_value(const struct config *cfg, const char *name)
{
	size_t nl = strlen(name);
	for (size_t i = cfg->env_file.n; i-- > 0;) {
		const char *line = cfg->env_file.v[i];
		if (strncmp(line, name, nl) == 0 && line[nl] == '=')
			return line + nl + 1;
	}
	return NULL;
}

const char *config_getenv(const struct config *cfg, const char *name)
{
	if (!config_strv_contains(&env_from_file, name)) {
		const char *v = getenv(name);
		if (v)
			return v;
	}
	return env_file_value(cfg, name);
}

/* ---------------------------------------------------------------------------------------------- */
/* Lifetime */

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	free(cfg->home);
	config_strv_free(&cfg->sources);
	for (size_t i = 0; i < cfg->env_file.n; i++)
		explicit_bzero(cfg->env_file.v[i], strlen(cfg->env_file.v[i]));
	config_strv_free(&cfg->env_file);
	free(cfg->log_level);
	free(cfg->db_path);
	free(cfg->fallback_jsonl);
	free(cfg->synchronous);
	free(cfg->when_unrecorded);
	free(cfg->retry_on.v);
	free(cfg->proxy);
	free(cfg->proxy_url);
	free(cfg->proxy_user);
	free(cfg->proxy_password);
	free(cfg->ca_file);
	config_strv_free(&cfg->reasoning_prefixes);
	free(cfg->demo_url_env);
	free(cfg->default_tier_name);
	free(cfg->auth_mode);
	free(cfg->agent_header);
	free(cfg->admin_key_env);
	if (cfg->admin_key) {
		explicit_bzero(cfg->admin_key, strlen(cfg->admin_key));
		free(cfg->admin_key);
	}
	free(cfg->auto_model_name);
	free(cfg->webhook_url);
	free(cfg->budget_when_db_down);
	for (size_t i = 0; i < cfg->n_providers; i++) {
		struct provider_conf *p = &cfg->providers[i];
		free(p->name);
		free(p->key_env);
		free(p->base_url_env);
		free(p->base_url_default);
		free(p->developer_role);
		free(p->reasoning_field);
		config_strv_free(&p->unsupported_params);
		config_strv_free(&p->reject_params);
		config_strv_free(&p->headers);
		config_strv_free(&p->capabilities);
		if (p->api_key) {
			explicit_bzero(p->api_key, strlen(p->api_key));
			free(p->api_key);
		}
		free(p->base_url);
		free(p->unavailable_reason);
	}
	free(cfg->providers);
	for (size_t i = 0; i < cfg->n_models; i++) {
		struct model_conf *m = &cfg->models[i];
		free(m->id);
		free(m->prefix);
		free(m->upstream);
		config_strv_free(&m->unsupported_params);
		free(m->fallback);
	}
	free(cfg->models);
	for (size_t i = 0; i < cfg->n_tiers; i++) {
		struct tier_conf *t = &cfg->tiers[i];
		free(t->id);
		free(t->name);
		free(t->models);
		free(t->downgrades);
		config_strv_free(&t->agents);
	}
	free(cfg->tiers);
	for (size_t i = 0; i < cfg->n_tasks; i++)
		free(cfg->tasks[i].name);
	free(cfg->tasks);
	free(cfg);
}

void config_log_errors(const struct buf *errors, const char *what)
{
	const char *p = buf_str(errors);
	while (*p) {
		size_t n = strcspn(p, "\n");
		log_error(NULL, "%s: %.*s", what, (int)n, p);
		p += n + (p[n] == '\n');
	}
}

/* ---------------------------------------------------------------------------------------------- */
/* Lookups */

int config_model_index(const struct config *cfg, const char *id)
{
	for (size_t i = 0; i < cfg->n_models; i++) {
		if (cfg->models[i].id && strcmp(cfg->models[i].id, id) == 0)
			return (int)i;
	}
	return -1;
}

const struct model_conf *config_find_model(const struct config *cfg, const char *id,
					   const char **upstream_out)
{
	int i = config_model_index(cfg, id);
	if (i >= 0 && !cfg->models[i].prefix) {
		if (upstream_out)
			*upstream_out = cfg->models[i].upstream;
		return &cfg->models[i];
	}
	for (size_t k = 0; k < cfg->n_models; k++) {
		const struct model_conf *m = &cfg->models[k];
		if (!m->prefix || !str_has_prefix(id, m->prefix))
			continue;
		const char *rest = id + strlen(m->prefix);
		/* openrouter/<vendor>/<model>: a vendor, a slash and a model are required. */
		const char *slash = strchr(rest, '/');
		if (!slash || slash == rest || slash[1] == '\0')
			return NULL;
		if (upstream_out)
			*upstream_out = rest;
		return m;
	}
	return NULL;
}

const struct tier_conf *config_tier_for_agent(const struct config *cfg, const char *agent)
{
	if (agent) {
		for (size_t i = 0; i < cfg->n_tiers; i++) {
			if (config_strv_contains(&cfg->tiers[i].agents, agent))
				return &cfg->tiers[i];
		}
	}
	return cfg->n_tiers ? &cfg->tiers[cfg->default_tier] : NULL;
}

const char *provider_api_name(enum provider_api api)
{
	return config_api_names[api];
}
