/* config_schema.c - the schema of the flat groups and the generic parser every group goes through.
 *
 * Model: one table of fields per group (name, type, offset, default, bounds, allowed values) drives
 * a generic group parser that applies the defaults, rejects unknown keys and bad values with the
 * file and line of the offending setting, and goes on, so that every problem is reported. The
 * tables of the flat groups (server, log, storage, upstream, params, demo, routing, budget,
 * cooldown) are here; the element tables of the lists (providers, models, tiers, tasks) sit in
 * config_file.c beside the code that converts them. This file and config_file.c are the only users
 * of libconfig, through the private header config_schema.h.
 */
#include "config_schema.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *const log_levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const sync_modes[] = { "normal", "full", NULL };
static const char *const auth_modes[] = { "key", "header", "none", NULL };
static const char *const db_down_modes[] = { "serve", "refuse", NULL };
static const char *const unrecorded_modes[] = { "refuse", "serve", NULL };

#define C(field) offsetof(struct config, field)

static const struct field server_fields[] = {
	{ "threads", F_INT, C(threads), "8", 1, 256, NULL },
	{ "max_body_bytes", F_INT, C(max_body_bytes), "8388608", 1024, 1073741824, NULL },
	{ "reload_interval_s", F_INT, C(reload_interval_s), "2", 0, 86400, NULL },
	{ "body_timeout_ms", F_INT, C(body_timeout_ms), "30000", 100, 3600000, NULL },
	{ "max_threads", F_INT, C(max_threads), "1024", 1, 1024, NULL },
	{ "call_memory_mb", F_INT, C(call_memory_mb), "256", 16, 65536, NULL },
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
	{ "kept_rows_max", F_INT, C(kept_rows_max), "10000", 0, 1000000, NULL },
	{ "when_unrecorded", F_STR, C(when_unrecorded), "refuse", 0, 0, unrecorded_modes },
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
	{ "max_response_bytes", F_INT, C(max_response_bytes), "16777216", 65536, 1073741824, NULL },
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
	{ "reservation_timeout_s", F_INT, C(reservation_timeout_s), "900", 10, 172800, NULL },
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

/* ---------------------------------------------------------------------------------------------- */
/* Error reporting */

void config_schema_error(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
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
			config_strv_push(sv, item);
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

static void parse_int(struct loader *ld, const struct field *f, config_setting_t *s,
		      const char *where, char *dst)
{
	int t = config_setting_type(s);
	if (!is_int_type(t)) {
		config_schema_error(ld, s, "'%s' must be an integer, not %s", where, type_name(t));
		return;
	}
	long long v = config_setting_get_int64(s);
	if ((double)v < f->min || (double)v > f->max) {
		config_schema_error(ld, s, "'%s' is %lld, outside the allowed range %.0f..%.0f", where, v,
			  f->min, f->max);
		return;
	}
	*(int64_t *)dst = v;
}

static void parse_bool(struct loader *ld, config_setting_t *s, const char *where, char *dst)
{
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_BOOL) {
		config_schema_error(ld, s, "'%s' must be true or false, not %s", where, type_name(t));
		return;
	}
	*(int *)dst = config_setting_get_bool(s);
}

static void parse_double(struct loader *ld, const struct field *f, config_setting_t *s,
			 const char *where, char *dst)
{
	int t = config_setting_type(s);
	double v;
	if (t == CONFIG_TYPE_FLOAT)
		v = config_setting_get_float(s);
	else if (is_int_type(t))
		v = (double)config_setting_get_int64(s);
	else {
		config_schema_error(ld, s, "'%s' must be a number, not %s", where, type_name(t));
		return;
	}
	if (!isfinite(v) || v < f->min || v > f->max) {
		config_schema_error(ld, s, "'%s' is %g, outside the allowed range %g..%g", where, v, f->min,
			  f->max);
		return;
	}
	*(double *)dst = v;
}

/* Whether v is one of the field's allowed values (any value when it has none); reports it when
 * not, listing the allowed ones. */
static int check_choice(struct loader *ld, const struct field *f, config_setting_t *s,
			const char *where, const char *v)
{
	if (!f->choices)
		return 1;
	size_t i;
	for (i = 0; f->choices[i]; i++) {
		if (strcmp(f->choices[i], v) == 0)
			return 1;
	}
	struct buf allowed;
	buf_init(&allowed, BUF_UNLIMITED);
	for (i = 0; f->choices[i]; i++)
		buf_printf(&allowed, "%s\"%s\"", i ? ", " : "", f->choices[i]);
	config_schema_error(ld, s, "'%s' is \"%s\"; allowed values: %s", where, v, buf_str(&allowed));
	buf_free(&allowed);
	return 0;
}

/* A field without an offset (NO_OFF) is checked, not stored. */
static void parse_str(struct loader *ld, const struct field *f, config_setting_t *s,
		      const char *where, char *dst)
{
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_STRING) {
		config_schema_error(ld, s, "'%s' must be a string, not %s", where, type_name(t));
		return;
	}
	const char *v = config_setting_get_string(s);
	if (f->min >= 1 && v[0] == '\0') {
		config_schema_error(ld, s, "'%s' must not be empty", where);
		return;
	}
	if (!check_choice(ld, f, s, where, v))
		return;
	if (f->off != NO_OFF) {
		free(*(char **)dst);
		*(char **)dst = xstrdup(v);
	}
}

/* The setting replaces the default list; bad, empty and repeated elements are reported and
 * skipped. */
/* quiet: the values may carry credentials (a provider's extra header lines): an error names an
 * entry by its position, never by its value. */
static void parse_strv(struct loader *ld, config_setting_t *s, const char *where, int quiet,
		       char *dst)
{
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) {
		config_schema_error(ld, s, "'%s' must be an array of strings [ \"...\" ], not %s", where,
			  type_name(t));
		return;
	}
	struct strv *sv = (struct strv *)dst;
	config_strv_free(sv);
	int n = config_setting_length(s);
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			config_schema_error(ld, e, "'%s' must contain only strings", where);
			continue;
		}
		const char *v = config_setting_get_string(e);
		if (!v[0]) {
			config_schema_error(ld, e, "'%s' contains an empty string", where);
			continue;
		}
		if (config_strv_contains(sv, v)) {
			if (quiet)
				config_schema_error(ld, e, "'%s' lists its entry %d twice (the same as an "
					  "earlier entry; header values are not shown)", where, i + 1);
			else
				config_schema_error(ld, e, "'%s' lists \"%s\" twice", where, v);
			continue;
		}
		config_strv_push(sv, v);
	}
}

/* As parse_strv, for integers within the field's element bounds. */
static void parse_intv(struct loader *ld, const struct field *f, config_setting_t *s,
		       const char *where, char *dst)
{
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) {
		config_schema_error(ld, s, "'%s' must be an array of integers [ ... ], not %s", where,
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
			config_schema_error(ld, e, "'%s' must contain only integers", where);
			continue;
		}
		long long v = config_setting_get_int64(e);
		if ((double)v < f->min || (double)v > f->max) {
			config_schema_error(ld, e, "'%s' contains %lld, outside %.0f..%.0f", where, v, f->min,
				  f->max);
			continue;
		}
		iv->v = xrealloc(iv->v, (iv->n + 1) * sizeof(int64_t));
		iv->v[iv->n++] = v;
	}
}

/* Checks setting s against field f and stores its value into base; a bad value is reported and
 * leaves the target as it was (its default). */
static void parse_value(struct loader *ld, const struct field *f, config_setting_t *s, void *base)
{
	char where[160];
	setting_path(s, where, sizeof(where));
	char *dst = (char *)base + (f->off == NO_OFF ? 0 : f->off);
	switch (f->type) {
	case F_INT:
		parse_int(ld, f, s, where, dst);
		return;
	case F_BOOL:
		parse_bool(ld, s, where, dst);
		return;
	case F_DOUBLE:
		parse_double(ld, f, s, where, dst);
		return;
	case F_STR:
		parse_str(ld, f, s, where, dst);
		return;
	case F_STRV:
		parse_strv(ld, s, where, strcmp(f->name, "headers") == 0, dst);
		return;
	case F_INTV:
		parse_intv(ld, f, s, where, dst);
		return;
	case F_SUB:
		return;
	}
}

void config_schema_parse(struct loader *ld, config_setting_t *g, const struct field *fields,
			 void *base)
{
	char where[160] = "";
	if (g) {
		note_source(ld, g);
		setting_path(g, where, sizeof(where));
		if (!config_setting_is_group(g)) {
			config_schema_error(ld, g, "'%s' must be a group { ... }, not %s", where,
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
				config_schema_error(ld, m, "unknown key '%s'%s%s (known keys: %s)", name,
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
			config_schema_error(ld, g, "missing required key '%s'%s%s", f->name, where[0] ? " in " : "",
				  where);
	}
}

/* The web server's set-up decides what threads are worth: mod_fcgid sends one request at a time to
 * a process (its vhost sets LLM_ROUTER_THREADS=1). */
static void threads_from_env(struct loader *ld)
{
	const char *threads_env = config_getenv(ld->cfg, "LLM_ROUTER_THREADS");
	if (!threads_env || !threads_env[0])
		return;
	long long v;
	if (parse_ll(threads_env, &v) == 0 && v >= 1 && v <= 256) {
		ld->cfg->threads = v;
	} else {
		buf_printf(ld->errors, "LLM_ROUTER_THREADS=%s: expected an integer from 1 to 256\n",
			   threads_env);
		ld->nerr++;
	}
}

void config_schema_parse_globals(struct loader *ld, config_setting_t *root)
{
	static const struct {
		const char *name;
		const struct field *fields;
	} groups[] = {
		{ "log", log_fields },
		{ "storage", storage_fields },
		{ "upstream", upstream_fields },
		{ "params", params_fields },
		{ "demo", demo_fields },
		{ "routing", routing_fields },
		{ "budget", budget_fields },
		{ "cooldown", cooldown_fields },
	};
	struct config *cfg = ld->cfg;
	config_schema_parse(ld, root, root_fields, cfg);
	config_schema_parse(ld, config_setting_get_member(root, "server"), server_fields, cfg);
	threads_from_env(ld);
	for (size_t i = 0; i < ARRAY_SIZE(groups); i++)
		config_schema_parse(ld, config_setting_get_member(root, groups[i].name),
				    groups[i].fields, cfg);
}
