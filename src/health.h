/* health.h - model cooldown shared by every worker thread and responder process.
 *
 * A model whose attempts fail cooldown.failures times within cooldown.window_s (failures that
 * count: see failure_counts_for_health) is skipped for cooldown.duration_s by every worker; then
 * exactly one request probes it (the others keep skipping it while the probe runs): a success
 * ends the cooldown, a failure starts the next one.
 *
 * The state lives in the database (model_health, store_query.c), so every process sees it; each
 * process keeps a copy that its own threads update at once and that is re-read from the database
 * at most every HEALTH_REFRESH_MS, so the check on the request path is a table lookup. Without a
 * database the state is the process's own.
 */
#ifndef ROUTER_HEALTH_H
#define ROUTER_HEALTH_H

#include <stdint.h>

#include "config.h"

#define HEALTH_REFRESH_MS 250

struct store;

/* Where the database connection comes from (opened on demand); may return NULL. */
struct health_source {
	struct store *(*store)(void *ud);
	void *ud;
};

enum health_verdict {
	HEALTH_OK,        /* use it */
	HEALTH_PROBE,     /* use it: this request is the probe after a cooldown */
	HEALTH_COOLING,   /* skip it; *until_ms says until when */
};

enum health_verdict health_check(const struct config *cfg, const char *model,
				 const struct health_source *src, int64_t *until_ms);
/* Reports an attempt's outcome. error (for failures) is a short reason kept in the table. */
void health_report(const struct config *cfg, const char *model, int ok, const char *error,
		   const struct health_source *src);
/* Forgets the process's copy (tests). */
void health_reset(void);

#endif
