/* alerts.h - budget alerts: a log line, and the outbox of JSON POSTs to budget.webhook_url.
 *
 * The alert is its row in budget_alerts, written in the budget transaction (once per scope, day
 * and level across every process); with a webhook configured the row waits in the outbox until
 * the webhook has taken it. Any process drains the outbox: the sender thread of a FastCGI
 * responder (alerts_start), a plain CGI process once its response is closed, `llm-router replay`
 * (cron on shared hosting). Delivery is at least once; only alerts of the last 24 h are sent.
 */
#ifndef ROUTER_ALERTS_H
#define ROUTER_ALERTS_H

#include <stdint.h>

#include "config.h"
#include "store.h"

/* The alert's log line (its row is already committed); wakes this process's sender, if any.
 * level: the warn percentage, or the block one when the budget is reached. */
void alerts_budget(const struct config *cfg, const char *day, const char *scope, int64_t level,
		   int64_t spent_nusd, int64_t budget_nusd, const char *request_id);

/* Sends the due alerts of the outbox through st to url, one claimed row at a time, until none is
 * due, *stop (read atomically; may be NULL) is set, or there is no time left for one more POST
 * before deadline_us (clock_mono_us). Returns the number sent, or -1 when the database failed. */
int alerts_drain(struct store *st, const char *url, int64_t deadline_us, const int *stop);
/* Whether an alert of the outbox is due now (a plain CGI process then stays on to send it). */
int alerts_due(struct store *st);

/* The sender thread of a FastCGI responder: drains the outbox as soon as an alert is recorded,
 * when a retry is due, and every few seconds for rows other processes left, with its own
 * connection (o is copied). Returns 0 or -1. */
int alerts_start(const struct store_opts *o);
/* Stops it: a POST in progress finishes (or times out), the rows not sent stay in the outbox for
 * the next drainer; returns once the thread is joined (libcurl may then be cleaned up). */
void alerts_stop(void);

#endif
