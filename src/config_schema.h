/* config_schema.h - private to config_schema.c and config_file.c: the schema-driven parser.
 *
 * These two files are the only users of libconfig (config_file.c opens the file and walks its
 * sections, config_schema.c parses each group against a table of fields); this header is the one
 * place that passes libconfig types between them, and no other file includes it. Everything else
 * sees only struct config.
 *
 * A schema is a NULL-terminated array of struct field: {name, type, offset in the target struct,
 * default as text (REQUIRED: must be present), bounds, allowed values}. Problems are reported as
 * "FILE:LINE: reason" lines appended to the loader's errors, and counted; parsing goes on, so every
 * problem of a file is reported, not just the first.
 */
#ifndef ROUTER_CONFIG_SCHEMA_H
#define ROUTER_CONFIG_SCHEMA_H

#include <libconfig.h>
#include <stddef.h>

#include "buf.h"
#include "config.h"

enum ftype { F_INT, F_BOOL, F_DOUBLE, F_STR, F_STRV, F_INTV, F_SUB };

#define NO_OFF ((size_t)-1)
#define REQUIRED NULL

struct field {
	const char *name;
	enum ftype type;
	size_t off;                   /* offset in the target struct; NO_OFF: checked, not stored */
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

/* Reports a problem at setting s as "FILE:LINE: " + fmt (NULL or a setting without a line: the
 * file alone) and counts it. Every check of the configuration reports through it. */
void config_schema_error(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Parses the members of group g (may be NULL: all defaults) into base according to fields:
 * unknown keys, missing required keys and bad values are reported. F_SUB members are only checked
 * for presence; the caller handles them. */
void config_schema_parse(struct loader *ld, config_setting_t *g, const struct field *fields,
			 void *base);

/* Parses the root group and the flat groups (server, log, storage, upstream, params, demo,
 * routing, budget, cooldown) into ld->cfg, with their defaults; LLM_ROUTER_THREADS overrides
 * server.threads. The lists (providers, models, tiers, tasks) are left to the caller. */
void config_schema_parse_globals(struct loader *ld, config_setting_t *root);

#endif
