/* config.c - loads, validates and publishes the configuration; the only user of libconfig.
 *
 * Model: a declarative schema (one table of fields per group: name, type, offset, default, bounds,
 * allowed values) drives a generic group parser that rejects unknown keys and bad values with the
 * file and line of the offending setting. Lists of providers, models, tiers and tasks reuse the
 * same parser per element, then cross-references (provider of a model, models of a tier, fallback
 * chains, agents) are checked. Every problem is reported, not just the first.
 *
 * The resulting struct config is immutable. The process-wide current config is a pointer guarded
 * by a mutex with a reference count per struct: a request acquires it once and releases it when it
 * ends, and a reload swaps the pointer; the old struct is freed when its last user releases it.
 */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

enum ftype { F_INT, F_BOOL, F_DOUBLE, F_STR, F_STRV, F_INTV, F_SUB };

#define NO_OFF ((size_t)-1)
#define REQUIRED NULL

struct field {
	const char *name;
	enum ftype type;
	size_t off;                   /* offset in the target struct, NO_OFF for F_SUB */
	const char *def;              /* default as text; REQUIRED when the key must be present */
	double min, max;              /* bounds for numbers, element bounds for F_INTV */
	const char *const *choices;   /* allowed values for F_STR (NULL-terminated) */
};

struct loader {
	const char *path;
	struct buf *errors;
	int nerr;
	struct config *cfg;
};

static const char *const log_levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const sync_modes[] = { "normal", "full", NULL };
static const char *const apis[] = { "openai", "anthropic", "gemini", NULL };
static const char *const dev_roles[] = { "developer", "system", NULL };
static const char *const auth_modes[] = { "key", "header", "none", NULL };
static const char *const db_down_modes[] = { "serve", "refuse", NULL };

#define C(field) offsetof(struct config, field)

static const struct field server_fields[] = {
	{ "threads", F_INT, C(threads), "8", 1, 256, NULL },
	{ "max_body_bytes", F_INT, C(max_body_bytes), "8388608", 1024, 1073741824, NULL },
	{ "reload_interval_s", F_INT, C(reload_interval_s), "2", 0, 86400, NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL }
};

static const struct field log_fields[] = {
	{ "level", F_STR, C(log_level), "info", 0, 0, log_levels },
	{ NULL, 0, 0, NULL, 0, 0, NULL }
};

static const struct field storage_fields[] = {
	{ "request_log", F_BOOL, C(request_log), "true", 0, 0, NULL },
	{ "db_path", F_STR, C(db_path), "data/llm_logs.db", 1, 0, NULL },
	{ "fallback_jsonl", F_STR, C(fallback_jsonl), "data/llm_logs_fallback.jsonl", 1, 0, NULL },
	{ "retention_days", F_INT, C(retention_days), "90", 1, 36500, NULL },
	{ "busy_timeout_ms", F_INT, C(busy_timeout_ms), "5000", 0, 600000, NULL },
	{ "synchronous", F_STR, C(synchronous), "normal", 0, 0, sync_modes },
	{ "checkpoint_pages", F_INT, C(checkpoint_pages), "1000", 10, 1000000, NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL }
};

static const struct field upstream_fields[] = {
	{ "connect_timeout_ms", F_INT, C(connect_timeout_ms), "10000", 1, 600000, NULL },
	{ "timeout_ms", F_INT, C(timeout_ms), "120000", 1, 3600000, NULL },
	{ "stream_idle_timeout_ms", F_INT, C(stream_idle_timeout_ms), "60000", 1, 3600000, NULL },
	{ "keepalive_interval_ms", F_INT, C(keepalive_interval_ms), "15000", 0, 3600000, NULL },
	{ "deadline_ms", F_INT, C(deadline_ms), "300000", 1, 86400000, NULL },
	{ "max_retries", F_INT, C(max_retries), "2", 0, 10, NULL },
	{ "retry_on", F_INTV, C(retry_on), "500,502,503,504,529", 100, 599, NULL },
	{ "retry_on_network", F_BOOL, C(retry_on_network), "true", 0, 0, NULL },
	{ "retry_after_max_ms", F_INT, C(retry_after_max_ms), "2000", 0, 600000, NULL },
	{ "backoff_ms", F_INT, C(backoff_ms), "100", 0, 600000, NULL },
	{ "backoff_max_ms", F_INT, C(backoff_max_ms), "2000", 0, 600000, NULL },
	{ "max_response_bytes", F_INT, C(max_response_bytes), "67108864", 65536, 1073741824, NULL },
	{ "proxy", F_STR, C(proxy), "", 0, 0, NULL },
	{ "ca_file", F_STR, C(ca_file), "", 0, 0, NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL }
};

static const struct field params_fields[] = {
	{ "strict", F_BOOL, C(strict_params), "false", 0, 0, NULL },
	{ "reasoning_model_prefixes", F_STRV, C(reasoning_prefixes), "o1,o3,o4,gpt-5", 0, 0, NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL }
};

static const struct field demo_fields[] = {
	{ "base_url_env", F_STR, C(demo_url_env), "LLM_ROUTER_DEMO_URL", 0, 0, NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL }
};

static const struct field routing_fields[] = {
	{ "default_tier", F_STR, C(default_tier_name), "T3", 1, 0, NULL },
	{ "auth_mode", F_STR, C(auth_mode), "key", 0, 0, auth_modes },
	{ "agent_header", F_STR, C(agent_header), "X-Agent-Name", 1, 0, NULL },
	{ "admin_key_env", F_STR, C(admin_key_env), "LLM_ROUTER_ADMIN_KEY", 0, 0, NULL },
	{ "auto_model", F_STR, C(auto_model_name), "", 0, 0, NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL }
};

static const struct field budget_fields[] = {
	{ "enabled", F_BOOL, C(budget_enabled), "true", 0, 0, NULL },
	{ "warn_percent", F_INT, C(warn_percent), "90", 1, 100, NULL },
	{ "block_percent", F_INT, C(block_percent), "100", 1, 1000, NULL },
	{ "reservation_timeout_s", F_INT, C(reservation_timeout_s), "900", 10, 86400, NULL },
	{ "webhook_url", F_STR, C(webhook_url), "", 0, 0, NULL },
	{ "when_database_down", F_STR, C(budget_when_db_down), "serve", 0, 0, db_down_modes },
	{ NULL, 0, 0, NULL, 0, 0, NULL }
};

static const struct field cooldown_fields[] = {
	{ "failures", F_INT, C(cooldown_failures), "3", 0, 1000, NULL },
	{ "window_s", F_INT, C(cooldown_window_s), "60", 1, 86400, NULL },
	{ "duration_s", F_INT, C(cooldown_s), "30", 1, 86400, NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL }
};

static const struct field root_fields[] = {
	{ "server", F_SUB, NO_OFF, "", 0, 0, NULL },
	{ "log", F_SUB, NO_OFF, "", 0, 0, NULL },
	{ "storage", F_SUB, NO_OFF, "", 0, 0, NULL },
	{ "upstream", F_SUB, NO_OFF, "", 0, 0, NULL },
	{ "params", F_SUB, NO_OFF, "", 0, 0, NULL },
	{ "demo", F_SUB, NO_OFF, "", 0, 0, NULL },
	{ "routing", F_SUB, NO_OFF, "", 0, 0, NULL },
	{ "budget", F_SUB, NO_OFF, "", 0, 0, NULL },
	{ "cooldown", F_SUB, NO_OFF, "", 0, 0, NULL },
	{ "providers", F_SUB, NO_OFF, REQUIRED, 0, 0, NULL },
	{ "models", F_SUB, NO_OFF, REQUIRED, 0, 0, NULL },
	{ "tiers", F_SUB, NO_OFF, REQUIRED, 0, 0, NULL },
	{ "tasks", F_SUB, NO_OFF, "", 0, 0, NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL }
};

#undef C
#define P(field) offsetof(struct provider_conf, field)

static const struct field provider_fields[] = {
	{ "api", F_STR, NO_OFF, REQUIRED, 0, 0, apis },
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
};

#define M(field) offsetof(struct model_raw, field)

static const struct field model_fields[] = {
	{ "id", F_STR, M(id), REQUIRED, 1, 0, NULL },
	{ "provider", F_STR, M(provider), REQUIRED, 1, 0, NULL },
	{ "upstream", F_STR, M(upstream), "", 0, 0, NULL },
	{ "passthrough", F_BOOL, M(passthrough), "false", 0, 0, NULL },
	{ "input_usd_per_mtok", F_DOUBLE, M(in), REQUIRED, 0, 100000, NULL },
	{ "output_usd_per_mtok", F_DOUBLE, M(out), REQUIRED, 0, 100000, NULL },
	{ "cached_input_usd_per_mtok", F_DOUBLE, M(cached_in), "-1", -1, 100000, NULL },
	{ "cache_write_usd_per_mtok", F_DOUBLE, M(cache_write), "-1", -1, 100000, NULL },
	{ "reasoning", F_BOOL, M(reasoning), "auto", 0, 0, NULL },
	{ "max_output_tokens", F_INT, M(max_output_tokens), "4096", 1, 10000000, NULL },
	{ "fallback", F_STRV, M(fallback), "", 0, 0, NULL },
	{ "unsupported_params", F_STRV, M(unsupported_params), "", 0, 0, NULL },
	{ "created", F_INT, M(created), "0", 0, 4102444800.0, NULL },
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
/* Error reporting */

static void cfg_error(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void cfg_error(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
	const char *file = s ? config_setting_source_file(s) : NULL;
	unsigned line = s ? config_setting_source_line(s) : 0;
	if (line)
		buf_printf(ld->errors, "%s:%u: ", file ? file : ld->path, line);
	else
		buf_printf(ld->errors, "%s: ", file ? file : ld->path);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(ld->errors, fmt, ap);
	va_end(ap);
	buf_putc(ld->errors, '\n');
	ld->nerr++;
}

static void note_source(struct loader *ld, const config_setting_t *s)
{
	const char *file = config_setting_source_file(s);
	if (!file)
		return;
	struct strv *src = &ld->cfg->sources;
	for (size_t i = 0; i < src->n; i++) {
		if (strcmp(src->v[i], file) == 0)
			return;
	}
	src->v = xrealloc(src->v, (src->n + 1) * sizeof(char *));
	src->v[src->n++] = xstrdup(file);
}

/* Path of a setting for messages: "models.[3].fallback". */
static void setting_path(const config_setting_t *s, char *out, size_t outsz)
{
	const config_setting_t *chain[16];
	size_t n = 0;
	for (const config_setting_t *p = s; p && !config_setting_is_root(p) && n < ARRAY_SIZE(chain);
	     p = config_setting_parent(p))
		chain[n++] = p;
	size_t used = 0;
	out[0] = '\0';
	while (n-- > 0) {
		const config_setting_t *p = chain[n];
		const char *name = config_setting_name(p);
		int w;
		if (name)
			w = snprintf(out + used, outsz - used, "%s%s", used ? "." : "", name);
		else
			w = snprintf(out + used, outsz - used, "[%d]", config_setting_index(p));
		if (w < 0 || (size_t)w >= outsz - used)
			return;
		used += (size_t)w;
	}
}

/* ---------------------------------------------------------------------------------------------- */
/* Generic group parser */

static void strv_free(struct strv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sv->v = NULL;
	sv->n = 0;
}

static void strv_push(struct strv *sv, const char *s)
{
	sv->v = xrealloc(sv->v, (sv->n + 1) * sizeof(char *));
	sv->v[sv->n++] = xstrdup(s);
}

static int strv_contains(const struct strv *sv, const char *s)
{
	for (size_t i = 0; i < sv->n; i++) {
		if (strcmp(sv->v[i], s) == 0)
			return 1;
	}
	return 0;
}

/* Applies a field's textual default to the target. */
static void set_default(const struct field *f, void *base)
{
	char *dst = (char *)base + f->off;
	switch (f->type) {
	case F_INT: {
		long long v = 0;
		parse_ll(f->def, &v);
		*(int64_t *)dst = v;
		break;
	}
	case F_BOOL:
		*(int *)dst = strcmp(f->def, "true") == 0 ? 1 : strcmp(f->def, "auto") == 0 ? -1 : 0;
		break;
	case F_DOUBLE:
		*(double *)dst = strtod(f->def, NULL);
		break;
	case F_STR:
		*(char **)dst = xstrdup(f->def);
		break;
	case F_STRV: {
		struct strv *sv = (struct strv *)dst;
		const char *p = f->def;
		while (*p) {
			const char *comma = strchr(p, ',');
			size_t n = comma ? (size_t)(comma - p) : strlen(p);
			char *item = xstrndup(p, n);
			strv_push(sv, item);
			free(item);
			p += n + (comma ? 1 : 0);
		}
		break;
	}
	case F_INTV: {
		struct intv *iv = (struct intv *)dst;
		const char *p = f->def;
		while (*p) {
			char *end;
			long long v = strtoll(p, &end, 10);
			iv->v = xrealloc(iv->v, (iv->n + 1) * sizeof(int64_t));
			iv->v[iv->n++] = v;
			p = *end == ',' ? end + 1 : end;
		}
		break;
	}
	case F_SUB:
		break;
	}
}

static const char *type_name(int t)
{
	switch (t) {
	case CONFIG_TYPE_GROUP: return "a group { }";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64: return "an integer";
	case CONFIG_TYPE_FLOAT: return "a number";
	case CONFIG_TYPE_STRING: return "a string";
	case CONFIG_TYPE_BOOL: return "a boolean";
	case CONFIG_TYPE_ARRAY: return "an array [ ]";
	case CONFIG_TYPE_LIST: return "a list ( )";
	default: return "an unknown type";
	}
}

static int is_int_type(int t)
{
	return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
}

static void parse_value(struct loader *ld, const struct field *f, config_setting_t *s, void *base)
{
	char where[160];
	setting_path(s, where, sizeof(where));
	char *dst = (char *)base + (f->off == NO_OFF ? 0 : f->off);
	int t = config_setting_type(s);
	switch (f->type) {
	case F_INT: {
		if (!is_int_type(t)) {
			cfg_error(ld, s, "'%s' must be an integer, not %s", where, type_name(t));
			return;
		}
		long long v = config_setting_get_int64(s);
		if ((double)v < f->min || (double)v > f->max) {
			cfg_error(ld, s, "'%s' is %lld, outside the allowed range %.0f..%.0f", where, v,
				  f->min, f->max);
			return;
		}
		*(int64_t *)dst = v;
		return;
	}
	case F_BOOL:
		if (t != CONFIG_TYPE_BOOL) {
			cfg_error(ld, s, "'%s' must be true or false, not %s", where, type_name(t));
			return;
		}
		*(int *)dst = config_setting_get_bool(s);
		return;
	case F_DOUBLE: {
		double v;
		if (t == CONFIG_TYPE_FLOAT)
			v = config_setting_get_float(s);
		else if (is_int_type(t))
			v = (double)config_setting_get_int64(s);
		else {
			cfg_error(ld, s, "'%s' must be a number, not %s", where, type_name(t));
			return;
		}
		if (!isfinite(v) || v < f->min || v > f->max) {
			cfg_error(ld, s, "'%s' is %g, outside the allowed range %g..%g", where, v, f->min,
				  f->max);
			return;
		}
		*(double *)dst = v;
		return;
	}
	case F_STR: {
		if (t != CONFIG_TYPE_STRING) {
			cfg_error(ld, s, "'%s' must be a string, not %s", where, type_name(t));
			return;
		}
		const char *v = config_setting_get_string(s);
		if (f->min >= 1 && v[0] == '\0') {
			cfg_error(ld, s, "'%s' must not be empty", where);
			return;
		}
		if (f->choices) {
			size_t i;
			for (i = 0; f->choices[i]; i++) {
				if (strcmp(f->choices[i], v) == 0)
					break;
			}
			if (!f->choices[i]) {
				struct buf allowed;
				buf_init(&allowed, BUF_UNLIMITED);
				for (i = 0; f->choices[i]; i++)
					buf_printf(&allowed, "%s\"%s\"", i ? ", " : "", f->choices[i]);
				cfg_error(ld, s, "'%s' is \"%s\"; allowed values: %s", where, v,
					  buf_str(&allowed));
				buf_free(&allowed);
				return;
			}
		}
		if (f->off != NO_OFF) {
			free(*(char **)dst);
			*(char **)dst = xstrdup(v);
		}
		return;
	}
	case F_STRV: {
		if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) {
			cfg_error(ld, s, "'%s' must be an array of strings [ \"...\" ], not %s", where,
				  type_name(t));
			return;
		}
		struct strv *sv = (struct strv *)dst;
		strv_free(sv);
		int n = config_setting_length(s);
		for (int i = 0; i < n; i++) {
			config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
			if (config_setting_type(e) != CONFIG_TYPE_STRING) {
				cfg_error(ld, e, "'%s' must contain only strings", where);
				continue;
			}
			const char *v = config_setting_get_string(e);
			if (!v[0]) {
				cfg_error(ld, e, "'%s' contains an empty string", where);
				continue;
			}
			if (strv_contains(sv, v)) {
				cfg_error(ld, e, "'%s' lists \"%s\" twice", where, v);
				continue;
			}
			strv_push(sv, v);
		}
		return;
	}
	case F_INTV: {
		if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) {
			cfg_error(ld, s, "'%s' must be an array of integers [ ... ], not %s", where,
				  type_name(t));
			return;
		}
		struct intv *iv = (struct intv *)dst;
		free(iv->v);
		iv->v = NULL;
		iv->n = 0;
		int n = config_setting_length(s);
		for (int i = 0; i < n; i++) {
			config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
			if (!is_int_type(config_setting_type(e))) {
				cfg_error(ld, e, "'%s' must contain only integers", where);
				continue;
			}
			long long v = config_setting_get_int64(e);
			if ((double)v < f->min || (double)v > f->max) {
				cfg_error(ld, e, "'%s' contains %lld, outside %.0f..%.0f", where, v, f->min,
					  f->max);
				continue;
			}
			iv->v = xrealloc(iv->v, (iv->n + 1) * sizeof(int64_t));
			iv->v[iv->n++] = v;
		}
		return;
	}
	case F_SUB:
		return;
	}
}

/* Parses the members of group g (may be NULL: all defaults) into base according to fields.
 * F_SUB members are only checked for presence; the caller handles them. */
static void parse_group(struct loader *ld, config_setting_t *g, const struct field *fields,
			void *base)
{
	char where[160] = "";
	if (g) {
		note_source(ld, g);
		setting_path(g, where, sizeof(where));
		if (!config_setting_is_group(g)) {
			cfg_error(ld, g, "'%s' must be a group { ... }, not %s", where,
				  type_name(config_setting_type(g)));
			return;
		}
		int n = config_setting_length(g);
		for (int i = 0; i < n; i++) {
			config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
			const char *name = config_setting_name(m);
			const struct field *f;
			for (f = fields; f->name; f++) {
				if (strcmp(f->name, name) == 0)
					break;
			}
			if (!f->name) {
				struct buf known;
				buf_init(&known, BUF_UNLIMITED);
				for (const struct field *k = fields; k->name; k++)
					buf_printf(&known, "%s%s", k == fields ? "" : ", ", k->name);
				cfg_error(ld, m, "unknown key '%s'%s%s (known keys: %s)", name,
					  where[0] ? " in " : "", where, buf_str(&known));
				buf_free(&known);
			}
		}
	}
	for (const struct field *f = fields; f->name; f++) {
		config_setting_t *m = g ? config_setting_get_member(g, f->name) : NULL;
		if (f->off != NO_OFF && f->def)
			set_default(f, base);
		if (m)
			parse_value(ld, f, m, base);
		else if (!f->def)
			cfg_error(ld, g, "missing required key '%s'%s%s", f->name, where[0] ? " in " : "",
				  where);
	}
}

/* ---------------------------------------------------------------------------------------------- */
/* Sections */

static char *resolve_path(const char *home, const char *p)
{
	if (p[0] == '/')
		return xstrdup(p);
	return xasprintf("%s/%s", home, p);
}

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
		cfg_error(ld, g, "'providers' must be a group { name = { ... }; ... }");
		return;
	}
	int n = config_setting_length(g);
	cfg->providers = xcalloc((size_t)n, sizeof(struct provider_conf));
	const char *demo_url = cfg->demo_url_env[0] ? getenv(cfg->demo_url_env) : NULL;
	if (demo_url && !demo_url[0])
		demo_url = NULL;
	for (int i = 0; i < n; i++) {
		config_setting_t *ps = config_setting_get_elem(g, (unsigned)i);
		struct provider_conf *p = &cfg->providers[cfg->n_providers++];
		p->name = xstrdup(config_setting_name(ps));
		parse_group(ld, ps, provider_fields, p);
		const char *api = NULL;
		if (config_setting_is_group(ps) && config_setting_lookup_string(ps, "api", &api)) {
			for (int k = 0; apis[k]; k++) {
				if (strcmp(apis[k], api) == 0)
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
			cfg_error(ld, config_setting_get_member(ps, "base_url"),
				  "providers.%s.base_url must start with http:// or https://", p->name);
			continue;
		}
		const char *key = p->key_env && p->key_env[0] ? getenv(p->key_env) : NULL;
		const char *url = p->base_url_env && p->base_url_env[0] ? getenv(p->base_url_env) : NULL;
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

static void load_models(struct loader *ld, config_setting_t *l)
{
	struct config *cfg = ld->cfg;
	if (!config_setting_is_list(l)) {
		cfg_error(ld, l, "'models' must be a list ( { ... }, { ... } )");
		return;
	}
	int n = config_setting_length(l);
	cfg->models = xcalloc((size_t)n, sizeof(struct model_conf));
	struct model_raw *raws = xcalloc((size_t)n, sizeof(struct model_raw));
	config_setting_t **sets = xcalloc((size_t)n, sizeof(*sets));
	for (int i = 0; i < n; i++) {
		config_setting_t *ms = config_setting_get_elem(l, (unsigned)i);
		struct model_raw *r = &raws[i];
		struct model_conf *m = &cfg->models[cfg->n_models++];
		sets[i] = ms;
		parse_group(ld, ms, model_fields, r);
		if (!r->id || !r->provider)
			continue;
		m->id = xstrdup(r->id);
		for (int k = 0; k < i; k++) {
			if (cfg->models[k].id && strcmp(cfg->models[k].id, r->id) == 0)
				cfg_error(ld, ms, "model \"%s\" is defined twice", r->id);
		}
		int pi = find_provider(cfg, r->provider);
		if (pi < 0)
			cfg_error(ld, ms, "model \"%s\": unknown provider \"%s\"", r->id, r->provider);
		m->provider = pi < 0 ? 0 : pi;
		size_t idlen = strlen(r->id);
		if (r->passthrough) {
			if (idlen < 3 || strcmp(r->id + idlen - 2, "/*") != 0)
				cfg_error(ld, ms,
					  "pass-through model \"%s\": id must end in \"/*\" (e.g. \"openrouter/*\")",
					  r->id);
			if (r->upstream && r->upstream[0])
				cfg_error(ld, ms, "pass-through model \"%s\" cannot set 'upstream'", r->id);
			m->prefix = xstrndup(r->id, idlen ? idlen - 1 : 0);
			m->upstream = xstrdup("");
		} else {
			if (strchr(r->id, '*'))
				cfg_error(ld, ms, "model \"%s\": '*' is only allowed in pass-through ids",
					  r->id);
			m->upstream = xstrdup(r->upstream && r->upstream[0] ? r->upstream : r->id);
		}
		m->in_nusd = price_nusd(r->in);
		m->out_nusd = price_nusd(r->out);
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
	/* Fallback chains reference other models: resolve once every id is known. */
	for (int i = 0; i < n; i++) {
		struct model_raw *r = &raws[i];
		struct model_conf *m = &cfg->models[i];
		if (!m->id)
			continue;
		m->fallback = xcalloc(r->fallback.n ? r->fallback.n : 1, sizeof(size_t));
		for (size_t k = 0; k < r->fallback.n; k++) {
			const char *fid = r->fallback.v[k];
			int fi = config_model_index(cfg, fid);
			if (fi < 0) {
				cfg_error(ld, sets[i], "model \"%s\": fallback \"%s\" is not a configured model",
					  m->id, fid);
				continue;
			}
			if ((size_t)fi == (size_t)i) {
				cfg_error(ld, sets[i], "model \"%s\": its fallback chain contains itself (a cycle)",
					  m->id);
				continue;
			}
			if (cfg->models[fi].prefix) {
				cfg_error(ld, sets[i],
					  "model \"%s\": fallback \"%s\" is a pass-through pattern, not a model",
					  m->id, fid);
				continue;
			}
			int dup = 0;
			for (size_t d = 0; d < m->n_fallback; d++)
				dup |= m->fallback[d] == (size_t)fi;
			if (dup) {
				cfg_error(ld, sets[i],
					  "model \"%s\": fallback \"%s\" appears twice in its chain (a cycle)",
					  m->id, fid);
				continue;
			}
			m->fallback[m->n_fallback++] = (size_t)fi;
		}
	}
	for (int i = 0; i < n; i++) {
		free(raws[i].id);
		free(raws[i].provider);
		free(raws[i].upstream);
		strv_free(&raws[i].fallback);
		strv_free(&raws[i].unsupported_params);
	}
	free(raws);
	free(sets);
}

static void load_tiers(struct loader *ld, config_setting_t *g)
{
	struct config *cfg = ld->cfg;
	if (!config_setting_is_group(g)) {
		cfg_error(ld, g, "'tiers' must be a group { T1 = { ... }; ... }");
		return;
	}
	int n = config_setting_length(g);
	cfg->tiers = xcalloc((size_t)n, sizeof(struct tier_conf));
	for (int i = 0; i < n; i++) {
		config_setting_t *ts = config_setting_get_elem(g, (unsigned)i);
		struct tier_conf *t = &cfg->tiers[cfg->n_tiers++];
		struct tier_raw r = { 0 };
		t->id = xstrdup(config_setting_name(ts));
		parse_group(ld, ts, tier_fields, &r);
		t->name = r.name ? r.name : xstrdup("");
		t->daily_budget_usd = r.budget;
		t->agent_daily_budget_usd = r.agent_budget;
		t->agents = r.agents;
		t->models = xcalloc(r.models.n ? r.models.n : 1, sizeof(size_t));
		for (size_t k = 0; k < r.models.n; k++) {
			const char *id = r.models.v[k];
			if (strcmp(id, "*") == 0) {
				t->all_models = 1;
				t->allow_passthrough = 1;
				continue;
			}
			int mi = config_model_index(cfg, id);
			if (mi < 0) {
				cfg_error(ld, ts, "tier %s: model \"%s\" is not a configured model", t->id, id);
				continue;
			}
			if (cfg->models[mi].prefix)
				t->allow_passthrough = 1;
			t->models[t->n_models++] = (size_t)mi;
		}
		if (!t->all_models && t->n_models == 0)
			cfg_error(ld, ts, "tier %s allows no model", t->id);
		strv_free(&r.models);
		config_setting_t *dl = config_setting_is_group(ts) ? config_setting_get_member(ts, "downgrade")
								   : NULL;
		if (dl) {
			if (!config_setting_is_list(dl)) {
				cfg_error(ld, dl,
					  "tiers.%s.downgrade must be a list ( { from = \"...\"; to = \"...\"; }, ... )",
					  t->id);
				continue;
			}
			int nd = config_setting_length(dl);
			t->downgrades = xcalloc((size_t)(nd ? nd : 1), sizeof(struct downgrade));
			for (int k = 0; k < nd; k++) {
				config_setting_t *ds = config_setting_get_elem(dl, (unsigned)k);
				struct pair_raw pr = { 0 };
				parse_group(ld, ds, downgrade_fields, &pr);
				if (pr.from && pr.to) {
					int fi = config_model_index(cfg, pr.from);
					int ti = config_model_index(cfg, pr.to);
					if (fi < 0)
						cfg_error(ld, ds, "tier %s: downgrade from unknown model \"%s\"",
							  t->id, pr.from);
					if (ti < 0)
						cfg_error(ld, ds, "tier %s: downgrade to unknown model \"%s\"", t->id,
							  pr.to);
					if (fi >= 0 && ti >= 0) {
						int allowed = t->all_models;
						for (size_t a = 0; a < t->n_models; a++)
							allowed |= t->models[a] == (size_t)ti;
						if (!allowed)
							cfg_error(ld, ds,
								  "tier %s: downgrade target \"%s\" is not among the tier's models",
								  t->id, pr.to);
						for (size_t d = 0; d < t->n_downgrades; d++) {
							if (t->downgrades[d].from == (size_t)fi)
								cfg_error(ld, ds,
									  "tier %s: two downgrades for \"%s\"",
									  t->id, pr.from);
						}
						t->downgrades[t->n_downgrades].from = (size_t)fi;
						t->downgrades[t->n_downgrades].to = (size_t)ti;
						t->n_downgrades++;
					}
				}
				free(pr.from);
				free(pr.to);
			}
		}
		for (size_t a = 0; a < t->agents.n; a++) {
			for (size_t j = 0; j + 1 < cfg->n_tiers; j++) {
				if (strv_contains(&cfg->tiers[j].agents, t->agents.v[a]))
					cfg_error(ld, config_setting_get_member(ts, "agents"), "agent \"%s\" is in tiers %s and %s", t->agents.v[a],
						  cfg->tiers[j].id, t->id);
			}
		}
	}
}

static void load_tasks(struct loader *ld, config_setting_t *g)
{
	struct config *cfg = ld->cfg;
	if (!config_setting_is_group(g)) {
		cfg_error(ld, g, "'tasks' must be a group { name = { model = \"...\"; }; ... }");
		return;
	}
	int n = config_setting_length(g);
	cfg->tasks = xcalloc((size_t)(n ? n : 1), sizeof(struct task_conf));
	for (int i = 0; i < n; i++) {
		config_setting_t *ts = config_setting_get_elem(g, (unsigned)i);
		struct task_raw r = { 0 };
		parse_group(ld, ts, task_fields, &r);
		struct task_conf *t = &cfg->tasks[cfg->n_tasks++];
		t->name = xstrdup(config_setting_name(ts));
		if (r.model) {
			int mi = config_model_index(cfg, r.model);
			if (mi < 0)
				cfg_error(ld, ts, "task %s: model \"%s\" is not a configured model", t->name,
					  r.model);
			t->model = mi < 0 ? 0 : (size_t)mi;
		}
		if (r.fallback && r.fallback[0]) {
			int fi = config_model_index(cfg, r.fallback);
			if (fi < 0)
				cfg_error(ld, ts, "task %s: fallback \"%s\" is not a configured model", t->name,
					  r.fallback);
			else if (r.model && strcmp(r.model, r.fallback) == 0)
				cfg_error(ld, ts, "task %s: fallback is the preferred model itself (a cycle)",
					  t->name);
			t->fallback = fi < 0 ? 0 : (size_t)fi;
			t->has_fallback = fi >= 0;
		}
		free(r.model);
		free(r.fallback);
	}
}

/* ---------------------------------------------------------------------------------------------- */

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

static char *absolute_path(const char *path)
{
	char *real = realpath(path, NULL);
	if (real)
		return real;
	if (path[0] == '/')
		return xstrdup(path);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return xstrdup(path);
	return xasprintf("%s/%s", cwd, path);
}

static time_t newest_mtime(const struct strv *files)
{
	time_t newest = 0;
	for (size_t i = 0; i < files->n; i++) {
		struct stat st;
		if (stat(files->v[i], &st) == 0 && st.st_mtime > newest)
			newest = st.st_mtime;
	}
	return newest;
}

int config_env_line(char *line, char **name, char **value)
{
	line[strcspn(line, "\r\n")] = '\0';
	char *p = line + strspn(line, " \t");
	if (*p == '\0' || *p == '#')
		return 0;
	if (str_has_prefix(p, "export "))
		p += 7;
	size_t name_len = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_");
	if (name_len == 0 || p[name_len] != '=' || (p[0] >= '0' && p[0] <= '9'))
		return -1;
	p[name_len] = '\0';
	char *val = p + name_len + 1;
	size_t vl = strlen(val);
	if (vl >= 2 && (val[0] == '"' || val[0] == '\'') && val[vl - 1] == val[0]) {
		val[vl - 1] = '\0';
		val++;
	}
	*name = p;
	*value = val;
	return 1;
}

/* llm-router.env beside the configuration: NAME=value lines (provider keys, base URLs) for hosts
 * where the web server cannot set the router's environment (shared hosting, .htaccess). A variable
 * already in the environment wins. Read once per process, by the first config_load, which always
 * runs before any thread starts (setenv is not thread-safe); a changed file needs a restart. */
static int load_env_file(const char *config_dir, struct buf *errors)
{
	static int done;
	if (done)
		return 0;
	done = 1;
	int bad = 0;
	char *file = xasprintf("%s/llm-router.env", config_dir);
	FILE *f = fopen(file, "re");
	if (!f) {
		if (errno != ENOENT) {
			buf_printf(errors, "%s: cannot read the file: %s\n", file, strerror(errno));
			bad++;
		}
		free(file);
		return bad;
	}
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 007))
		log_warn(NULL, "%s is readable by other users: chmod 600 it (it holds provider keys)",
			 file);
	char line[8192];
	int lineno = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		char *name, *val;
		int r = config_env_line(line, &name, &val);
		if (r < 0) {
			/* Name the line, never its content: it may hold a key. */
			buf_printf(errors, "%s:%d: expected NAME=value\n", file, lineno);
			bad++;
		} else if (r > 0) {
			setenv(name, val, 0);
		}
	}
	fclose(f);
	free(file);
	return bad;
}

struct config *config_load(const char *path, struct buf *errors)
{
	static uint64_t generation;
	struct loader ld = { .path = path, .errors = errors };
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	ld.cfg = cfg;
	cfg->refs = 1;
	cfg->path = absolute_path(path);
	char *dir = dir_of(cfg->path);
	/* First: the file may set variables read below (LLM_ROUTER_HOME, the clock offset). */
	ld.nerr += load_env_file(dir, errors);
	cfg->loaded_at = clock_wall_ms() / 1000;
	strv_push(&cfg->sources, cfg->path);

	config_t lc;
	config_init(&lc);
	config_set_include_dir(&lc, dir);
	if (!config_read_file(&lc, cfg->path)) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			buf_printf(errors, "%s: cannot read the file: %s\n", path, strerror(errno));
		else
			buf_printf(errors, "%s:%d: %s\n",
				   config_error_file(&lc) ? config_error_file(&lc) : path,
				   config_error_line(&lc), config_error_text(&lc));
		config_destroy(&lc);
		free(dir);
		config_free(cfg);
		return NULL;
	}
	config_setting_t *root = config_root_setting(&lc);

	const char *home_env = getenv("LLM_ROUTER_HOME");
	if (home_env && home_env[0])
		cfg->home = absolute_path(home_env);
	else
		cfg->home = dir_of(dir);

	parse_group(&ld, root, root_fields, cfg);
	parse_group(&ld, config_setting_get_member(root, "server"), server_fields, cfg);
	/* The web server's set-up decides what threads are worth: mod_fcgid sends one request at a
	 * time to a process (its vhost sets LLM_ROUTER_THREADS=1). */
	const char *threads_env = getenv("LLM_ROUTER_THREADS");
	if (threads_env && threads_env[0]) {
		long long v;
		if (parse_ll(threads_env, &v) == 0 && v >= 1 && v <= 256) {
			cfg->threads = v;
		} else {
			buf_printf(errors, "LLM_ROUTER_THREADS=%s: expected an integer from 1 to 256\n",
				   threads_env);
			ld.nerr++;
		}
	}
	parse_group(&ld, config_setting_get_member(root, "log"), log_fields, cfg);
	parse_group(&ld, config_setting_get_member(root, "storage"), storage_fields, cfg);
	parse_group(&ld, config_setting_get_member(root, "upstream"), upstream_fields, cfg);
	parse_group(&ld, config_setting_get_member(root, "params"), params_fields, cfg);
	parse_group(&ld, config_setting_get_member(root, "demo"), demo_fields, cfg);
	parse_group(&ld, config_setting_get_member(root, "routing"), routing_fields, cfg);
	parse_group(&ld, config_setting_get_member(root, "budget"), budget_fields, cfg);
	parse_group(&ld, config_setting_get_member(root, "cooldown"), cooldown_fields, cfg);

	config_setting_t *s;
	if ((s = config_setting_get_member(root, "providers")))
		load_providers(&ld, s);
	if ((s = config_setting_get_member(root, "models")))
		load_models(&ld, s);
	if ((s = config_setting_get_member(root, "tiers")))
		load_tiers(&ld, s);
	if ((s = config_setting_get_member(root, "tasks")))
		load_tasks(&ld, s);

	if (cfg->n_providers == 0 && config_setting_get_member(root, "providers"))
		cfg_error(&ld, config_setting_get_member(root, "providers"), "no provider is configured");
	if (cfg->n_models == 0 && config_setting_get_member(root, "models"))
		cfg_error(&ld, config_setting_get_member(root, "models"), "no model is configured");
	config_setting_t *tiers_set = config_setting_get_member(root, "tiers");
	if (tiers_set && cfg->n_tiers == 0)
		cfg_error(&ld, tiers_set, "no tier is configured");
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
			cfg_error(&ld, dt ? dt : routing,
				  "routing.default_tier \"%s\" is not a configured tier",
				  cfg->default_tier_name);
	}
	cfg->has_auto_model = 0;
	if (cfg->auto_model_name && cfg->auto_model_name[0] && cfg->n_models) {
		int ai = config_model_index(cfg, cfg->auto_model_name);
		config_setting_t *routing = config_setting_get_member(root, "routing");
		if (ai < 0 || cfg->models[ai].prefix)
			cfg_error(&ld, routing, "routing.auto_model \"%s\" is not a configured model",
				  cfg->auto_model_name);
		cfg->auto_model = ai < 0 ? 0 : (size_t)ai;
		cfg->has_auto_model = ai >= 0;
	}
	if (cfg->admin_key_env && cfg->admin_key_env[0]) {
		const char *v = getenv(cfg->admin_key_env);
		if (v && v[0])
			cfg->admin_key = xstrdup(v);
	}
	if (cfg->webhook_url && cfg->webhook_url[0] && !str_has_prefix(cfg->webhook_url, "http://") &&
	    !str_has_prefix(cfg->webhook_url, "https://"))
		cfg_error(&ld, config_setting_get_member(root, "budget"),
			  "budget.webhook_url must be an http:// or https:// URL");
	if (cfg->block_percent < cfg->warn_percent)
		cfg_error(&ld, config_setting_get_member(root, "budget"),
			  "budget.block_percent (%lld) is below budget.warn_percent (%lld)",
			  (long long)cfg->block_percent, (long long)cfg->warn_percent);

	if (cfg->db_path && cfg->fallback_jsonl) {
		char *db = resolve_path(cfg->home, cfg->db_path);
		char *jl = resolve_path(cfg->home, cfg->fallback_jsonl);
		free(cfg->db_path);
		free(cfg->fallback_jsonl);
		cfg->db_path = db;
		cfg->fallback_jsonl = jl;
	}
	if (cfg->ca_file && cfg->ca_file[0]) {
		char *ca = resolve_path(cfg->home, cfg->ca_file);
		free(cfg->ca_file);
		cfg->ca_file = ca;
	}

	config_destroy(&lc);
	free(dir);
	if (ld.nerr) {
		config_free(cfg);
		return NULL;
	}
	cfg->sources_mtime = newest_mtime(&cfg->sources);
	cfg->generation = __atomic_add_fetch(&generation, 1, __ATOMIC_RELAXED);
	return cfg;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	free(cfg->home);
	strv_free(&cfg->sources);
	free(cfg->log_level);
	free(cfg->db_path);
	free(cfg->fallback_jsonl);
	free(cfg->synchronous);
	free(cfg->retry_on.v);
	free(cfg->proxy);
	free(cfg->ca_file);
	strv_free(&cfg->reasoning_prefixes);
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
		strv_free(&p->unsupported_params);
		strv_free(&p->reject_params);
		strv_free(&p->headers);
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
		strv_free(&m->unsupported_params);
		free(m->fallback);
	}
	free(cfg->models);
	for (size_t i = 0; i < cfg->n_tiers; i++) {
		struct tier_conf *t = &cfg->tiers[i];
		free(t->id);
		free(t->name);
		free(t->models);
		free(t->downgrades);
		strv_free(&t->agents);
	}
	free(cfg->tiers);
	for (size_t i = 0; i < cfg->n_tasks; i++)
		free(cfg->tasks[i].name);
	free(cfg->tasks);
	free(cfg);
}

char *config_default_path(void)
{
	const char *env = getenv("LLM_ROUTER_CONFIG");
	if (env && env[0])
		return xstrdup(env);
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *dir = dir_of(exe);
		static const char *const rel[] = { "../conf/llm-router.conf", "conf/llm-router.conf",
						   "../etc/llm-router/llm-router.conf" };
		for (size_t i = 0; i < ARRAY_SIZE(rel); i++) {
			char *cand = xasprintf("%s/%s", dir, rel[i]);
			if (access(cand, R_OK) == 0) {
				free(dir);
				return cand;
			}
			free(cand);
		}
		char *fallback = xasprintf("%s/../conf/llm-router.conf", dir);
		free(dir);
		return fallback;
	}
	/* Without /proc: make install's location; never a path relative to the working directory. */
	return xstrdup("/usr/local/etc/llm-router/llm-router.conf");
}

/* ---------------------------------------------------------------------------------------------- */
/* Process-wide current config */

static pthread_mutex_t current_mu = PTHREAD_MUTEX_INITIALIZER;
static struct config *current;

void config_global_set(struct config *cfg)
{
	pthread_mutex_lock(&current_mu);
	struct config *old = current;
	current = cfg;
	pthread_mutex_unlock(&current_mu);
	if (old)
		config_release(old);
}

struct config *config_acquire(void)
{
	pthread_mutex_lock(&current_mu);
	struct config *cfg = current;
	if (cfg)
		cfg->refs++;
	pthread_mutex_unlock(&current_mu);
	return cfg;
}

void config_release(struct config *cfg)
{
	if (!cfg)
		return;
	pthread_mutex_lock(&current_mu);
	int left = --cfg->refs;
	pthread_mutex_unlock(&current_mu);
	if (left == 0)
		config_free(cfg);
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

int config_reload(int force)
{
	struct config *cur = config_acquire();
	if (!cur)
		return -1;
	if (!force && newest_mtime(&cur->sources) == cur->sources_mtime) {
		config_release(cur);
		return 0;
	}
	struct buf errors;
	buf_init(&errors, 65536);
	struct config *fresh = config_load(cur->path, &errors);
	if (!fresh) {
		/* Remember the broken file's time so that it is reported once, not every interval. */
		pthread_mutex_lock(&current_mu);
		cur->sources_mtime = newest_mtime(&cur->sources);
		pthread_mutex_unlock(&current_mu);
		config_log_errors(&errors, "config reload rejected, keeping the previous configuration");
		buf_free(&errors);
		config_release(cur);
		return -1;
	}
	buf_free(&errors);
	if (fresh->threads != cur->threads)
		log_warn(NULL, "config reload: server.threads changed to %lld; takes effect on restart",
			 (long long)fresh->threads);
	if (strcmp(fresh->db_path, cur->db_path) != 0)
		log_warn(NULL, "config reload: storage.db_path changed; takes effect on restart");
	enum log_level lvl;
	if (log_level_parse(fresh->log_level, &lvl) == 0)
		log_set_level(lvl);
	log_info(NULL, "configuration reloaded from %s (generation %llu)", fresh->path,
		 (unsigned long long)fresh->generation);
	config_release(cur);
	config_global_set(fresh);
	return 1;
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
			if (strv_contains(&cfg->tiers[i].agents, agent))
				return &cfg->tiers[i];
		}
	}
	return cfg->n_tiers ? &cfg->tiers[cfg->default_tier] : NULL;
}

const char *provider_api_name(enum provider_api api)
{
	return apis[api];
}
