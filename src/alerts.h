/* alerts.h - budget alerts: a log line, and a JSON POST to budget.webhook_url.
 *
 * The alert row in budget_alerts (written in the budget transaction) makes each alert fire once
 * per scope, day and level across every process. The webhook is sent by a background thread of
 * the process, with retries, so the request that crossed the threshold never waits for it.
 */
#ifndef ROUTER_ALERTS_H
#define ROUTER_ALERTS_H

#include <stdint.h>

#include "config.h"

/* level: the warn percentage, or 100 when the budget is reached. */
void alerts_budget(const struct config *cfg, const char *day, const char *scope, int64_t level,
		   int64_t spent_nusd, int64_t budget_nusd, const char *request_id);
/* Waits up to timeout_ms for queued webhooks to be sent (shutdown). */
void alerts_flush(long timeout_ms);

#endif
