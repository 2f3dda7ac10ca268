/* store_budget.c - the budget ledger's SQL: spend per UTC day and scope, reservations, alerts.
 *
 * Only the mechanics live here; whether a reservation fits a limit is decided by budget.c, inside
 * the transaction its caller holds. Invariant: budget_spend.reserved_nusd of a scope and day is the
 * sum of the outstanding reservations that name it; a reservation ends exactly once (settled with
 * its row in store_reqlog.c, released, or reclaimed there with a row charging its worst case),
 * and its amount leaves the sum then.
 */
#include "store.h"

#include "store_int.h"

#include <stdio.h>
#include <string.h>

int store_spend_add(struct store *st, const char *day, const char *scope, int64_t spent,
		    int64_t reserved, int requests)
{
	return store_run(st, ST_SPEND_ADD, "ttIIi", day, scope, spent, reserved, requests) < 0 ? -1 : 0;
}

int store_reservation_end(struct store *st, const char *request_id, char day[11], char *tier_scope,
			  char *agent_scope, size_t scopesz, int64_t *amount)
{
	sqlite3_stmt *s = store_bind(st, ST_RES_DELETE, "t", request_id);
	int rc = sqlite3_step(s);
	int found = rc == SQLITE_ROW;
	if (found) {
		snprintf(day, 11, "%s", (const char *)sqlite3_column_text(s, 0));
		snprintf(tier_scope, scopesz, "%s", (const char *)sqlite3_column_text(s, 1));
		const char *as = (const char *)sqlite3_column_text(s, 2);
		snprintf(agent_scope, scopesz, "%s", as ? as : "");
		*amount = sqlite3_column_int64(s, 3);
		rc = sqlite3_step(s);
	}
	store_reset(s);
	if (rc != SQLITE_DONE)
		return -1;
	if (found) {
		if (store_spend_add(st, day, tier_scope, 0, -*amount, 0) < 0 ||
		    (agent_scope[0] && store_spend_add(st, day, agent_scope, 0, -*amount, 0) < 0))
			return -1;
	}
	return found;
}

int store_budget_spend(struct store *st, const char *day, const char *scope, int64_t *spent,
		       int64_t *reserved)
{
	sqlite3_stmt *s = store_bind(st, ST_SPEND_GET, "tt", day, scope);
	int rc = sqlite3_step(s);
	*spent = *reserved = 0;
	if (rc == SQLITE_ROW) {
		*spent = sqlite3_column_int64(s, 0);
		*reserved = sqlite3_column_int64(s, 1);
		rc = SQLITE_DONE;
	}
	store_reset(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_budget_limit_set(struct store *st, const char *scope, int64_t budget_nusd)
{
	return store_run(st, ST_LIMIT_SET, "tI", scope, budget_nusd) < 0 ? -1 : 0;
}

int store_budget_alert(struct store *st, const char *day, const char *scope, int level,
		       int64_t now_ms, int64_t spent_nusd, int64_t budget_nusd, int outbox)
{
	sqlite3_stmt *s = store_bind(st, ST_ALERT_INSERT, "ttiIII", day, scope, level, now_ms,
				     spent_nusd, budget_nusd);
	if (outbox)
		sqlite3_bind_int64(s, 7, now_ms);
	int rc = sqlite3_step(s);
	int n = rc == SQLITE_DONE ? sqlite3_changes(st->db) : -1;
	store_reset(s);
	return n;
}

/* ---- the alert outbox ---- */

int store_alert_due(struct store *st, int64_t now_ms, int64_t since_ms, struct alert_row *rows,
		    int max)
{
	sqlite3_stmt *s = store_bind(st, ST_ALERT_DUE, "IIi", now_ms, since_ms, max);
	int n = 0, rc = SQLITE_DONE;
	while (n < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct alert_row *a = &rows[n];
		const char *day = (const char *)sqlite3_column_text(s, 0);
		const char *scope = (const char *)sqlite3_column_text(s, 1);
		if (!day || !scope || strlen(day) >= sizeof(a->day) || strlen(scope) >= sizeof(a->scope))
			continue;   /* not a key this router writes */
		memcpy(a->day, day, strlen(day) + 1);
		memcpy(a->scope, scope, strlen(scope) + 1);
		a->level = sqlite3_column_int(s, 2);
		a->ts_ms = sqlite3_column_int64(s, 3);
		a->spent_nusd = sqlite3_column_int64(s, 4);
		a->limit_nusd = sqlite3_column_int64(s, 5);
		a->attempts = sqlite3_column_int(s, 6);
		n++;
	}
	if (n < max && rc != SQLITE_DONE)
		n = -1;
	store_reset(s);
	return n;
}

int store_alert_claim(struct store *st, const struct alert_row *a, int64_t now_ms, int64_t until_ms)
{
	return store_run(st, ST_ALERT_CLAIM, "ttiII", a->day, a->scope, a->level, now_ms, until_ms);
}

int store_alert_sent(struct store *st, const struct alert_row *a, int64_t now_ms)
{
	return store_run(st, ST_ALERT_SENT, "ttiI", a->day, a->scope, a->level, now_ms) < 0 ? -1 : 0;
}

int store_alert_failed(struct store *st, const struct alert_row *a, int64_t next_try_ms,
		       const char *error)
{
	return store_run(st, ST_ALERT_FAILED, "ttiIt", a->day, a->scope, a->level, next_try_ms,
			 error) < 0 ? -1 : 0;
}

int64_t store_alert_next(struct store *st, int64_t since_ms)
{
	sqlite3_stmt *s = store_bind(st, ST_ALERT_NEXT, "I", since_ms);
	int64_t next = -1;
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
		next = sqlite3_column_int64(s, 0);
	store_reset(s);
	return next;
}

int store_budget_hold(struct store *st, const char *request_id, const char *day,
		      const char *tier_scope, const char *agent_scope, int64_t amount_nusd,
		      int64_t now_ms)
{
	if (store_run(st, ST_RES_INSERT, "ttttII", request_id, day, tier_scope, agent_scope,
		      amount_nusd, now_ms) < 0)
		return -1;
	if (store_spend_add(st, day, tier_scope, 0, amount_nusd, 0) < 0)
		return -1;
	if (agent_scope && store_spend_add(st, day, agent_scope, 0, amount_nusd, 0) < 0)
		return -1;
	return 0;
}

int store_budget_release(struct store *st, const char *request_id)
{
	char day[11], ts[160], as[160];
	int64_t amount;
	return store_reservation_end(st, request_id, day, ts, as, sizeof(ts), &amount) < 0 ? -1 : 0;
}
