/* budget.h - daily budgets per tier (pooled across its agents) and per agent, in USD.
 *
 * Before the upstream call, one BEGIN IMMEDIATE transaction (the writer's group commit, or
 * budget_reserve_tx on a direct connection) reads each scope's committed spend and outstanding
 * reservations, decides with the admission rule (budget_admit: spend plus reservations plus this
 * request's estimate against the limit), and reserves the estimate (store.h has the statements).
 * The request's log row settles it: the reservation is deleted and the actual cost added to the
 * ledger in the row's own transaction, so the ledger always sums to the logged costs. Reservations
 * of a worker that died are reclaimed after budget.reservation_timeout_s.
 *
 * The estimate is an upper bound when every request of the chain carries an output bound: every
 * byte of the request counts as an input token (no tokenizer makes more tokens than bytes; an
 * image counts 2,000 tokens instead of its bytes), and the output is what the translated request
 * lets the upstream write (max_tokens raised by a thinking budget for Anthropic) x n, priced at
 * the dearest model of the chain. Without any bound sent the model's max_output_tokens stands in.
 * The charge of a bounded call is capped at its estimate (dispatch.c) and its stream is cut past
 * its output bound (relay.c), so with max_tokens sent committed spend never passes the limit.
 */
#ifndef ROUTER_BUDGET_H
#define ROUTER_BUDGET_H

#include <jansson.h>
#include <stdint.h>

#include "chatreq.h"
#include "config.h"
#include "errors.h"
#include "fallback.h"
#include "http.h"
#include "reqlog_row.h"
#include "store.h"

/* One scope of a reservation: its limits (budget_scope_init), and what the transaction read. */
struct budget_scope {
	const char *scope;
	int64_t budget_nusd;     /* the daily budget (0 = none: tracked only) */
	int64_t limit_nusd;      /* refuse beyond this (budget x block_percent), 0 = never */
	int64_t warn_nusd;       /* alert from this (budget x warn_percent), 0 = never */
	int64_t spent_nusd;      /* out: committed spend today */
	int64_t reserved_nusd;   /* out: outstanding reservations today */
	int warn_due, block_due; /* out (budget_admit): an alert of that level is due */
	int new_warn, new_block; /* out: this call recorded the day's first alert of that level */
};
/* Why budget_admit refused. */
enum budget_refusal {
	BUDGET_ADMITTED = 0,
	BUDGET_EXHAUSTED,        /* not even the request's floor fits: spend plus reservations reached
				  * the limit for it (the block alert fires) */
	BUDGET_TOO_LARGE,        /* its floor fits, its worst case does not: lower max_tokens */
};
struct budget_ask {
	const char *request_id;
	char day[11];            /* UTC day, YYYY-MM-DD */
	int64_t now_ms;
	int64_t amount_nusd;     /* the request's estimated cost (its worst case) */
	int64_t floor_nusd;      /* the same request with one output token: the least it can cost */
	int warn_level, block_level;   /* the alert levels recorded (budget.warn/block_percent) */
	int outbox;              /* alerts wait in the outbox for budget.webhook_url */
	enum budget_refusal refusal;   /* out (budget_admit) */
	struct budget_scope scopes[2];   /* [0] the tier; [1] the agent, when known */
	size_t n;
	int admitted;            /* out */
	int blocked;             /* out: index of the scope that refused, -1 = none */
};

struct budget_state {
	int reserved;                  /* a reservation is held (settled by the log row) */
	struct budget_ask ask;
	char tier_scope[80];
	char agent_scope[160];
	int64_t limit_nusd;            /* the tightest scope's budget, -1 = none */
	int64_t remaining_nusd;
	struct reqlog_spent spent_after;   /* filled by the row's settlement (its spent_after) */
};

/* What budget_estimate_nusd works out besides the worst case. */
struct budget_estimate {
	int64_t floor_nusd;      /* the input bound and one output token: the least the request
				  * could be made to cost by lowering max_tokens */
	int bounded;             /* every model's request carries an output bound (else a model's
				  * max_output_tokens stood in) */
};
/* The request's cost upper bound in nano-USD (see above): over the chain, the input bound plus
 * provider_output_bound() (what each model's translated request lets the upstream write:
 * thinking budgets, reasoning, n) at the model's prices. Saturates at COST_NUSD_MAX. e may be
 * NULL. */
int64_t budget_estimate_nusd(const struct config *cfg, const json_t *body, size_t body_len,
			     const struct chain *ch, struct budget_estimate *e);

/* Whether budget_reserve() needs a connection of the caller's now: without a writer thread (plain
 * CGI) always; with one only when the reclaim of stale reservations is due (every 10 s), since the
 * reservation itself is the writer's job. A worker that holds no connection while it waits for the
 * writer's group commit leaves the process's read connections to those that read (measured: 64
 * calls at once each holding one through the wait kept opening and closing connections, a third
 * of the responder's time). */
int budget_wants_store(int64_t now_ms);
/* Reserves amount for the tier (and the agent, when known). Returns 0 when the call may go on
 * (admitted, budgets off, or the database is down and budget.when_database_down = "serve"), or -1
 * with err set: 429 when a budget is exhausted, 503 when the database is down and the policy is
 * "refuse". now_ms is the request's wall clock. st may be NULL when budget_wants_store() is 0. */
int budget_reserve(struct store *st, const struct config *cfg, const struct tier_conf *tier,
		   const char *agent, const char *request_id, int64_t now_ms,
		   int64_t amount_nusd, int64_t floor_nusd, struct budget_state *bs, struct rerr *err);

/* After the request's row settled its reservation: a scope whose committed spend this settlement
 * (or one beside it) took past budget.warn_percent gets its warn alert now, once per day. The
 * spend is the one the row's settlement read in its own transaction (bs->spent_after), else a
 * read on st; a write only at the crossing. */
void budget_settled(struct store *st, const struct config *cfg, struct budget_state *bs);

/* Whether budget_settled needs a connection: the row's settlement read no spend (its row went to
 * the fallback file, or nothing was reserved), or a warn alert is due. */
int budget_settle_wants_store(const struct budget_state *bs);

/* A scope's limits from its daily budget in USD (0 or less: none) and budget.block_percent and
 * budget.warn_percent; the spend fields are zeroed. */
void budget_scope_init(struct budget_scope *sc, const char *scope, double budget_usd,
		       const struct config *cfg);
/* What is left of a scope's budget after its spend and reservations (negative when overspent). */
int64_t budget_scope_left(const struct budget_scope *sc);

/* The admission rule, on the spends and reservations read in the transaction: the first scope
 * whose spend plus reservations plus the amount passes its limit refuses (ask->blocked, else -1),
 * and ask->refusal says why: BUDGET_EXHAUSTED when not even the request's floor fits what is left,
 * else BUDGET_TOO_LARGE. A scope's warn alert is due once its committed spend reached warn_nusd,
 * its block alert once spend plus reservations leave less than the floor of a request it refused
 * (a request too large for what is left raises no alert). Pure. */
void budget_admit(struct budget_ask *ask);

/* On a direct connection, in one BEGIN IMMEDIATE transaction: reads each scope's spend and
 * reservations, records the alerts due, and, when budget_admit admits, reserves the amount.
 * Returns 0 (see ask->admitted) or -1 on a database error. */
int budget_reserve_tx(struct store *st, struct budget_ask *ask);

/* X-Budget-Limit-USD and X-Budget-Remaining-USD for the tightest scope. */
void budget_headers(struct response *resp, const struct budget_state *bs);

/* Seconds until the next 00:00 UTC. */
long budget_seconds_to_reset(int64_t now_ms);

#endif
