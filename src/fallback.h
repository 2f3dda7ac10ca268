/* fallback.h - which models a request may try, and what a failed attempt leads to (pure).
 *
 * A request's chain is its model, then (for a task route) the task's fallback, then the model's
 * configured `fallback` list, without repeats. dispatch.c walks it: every attempt's outcome is
 * classified here, and fallback_next() decides whether the next attempt goes to the next model,
 * to the same model again (a 429 that asks for a short wait, or a retryable failure with no
 * model left), or whether the failure is the answer. At most 1 + upstream.max_retries attempts
 * are made, within upstream.deadline_ms.
 */
#ifndef ROUTER_FALLBACK_H
#define ROUTER_FALLBACK_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define CHAIN_MAX 16

struct chain {
	size_t model[CHAIN_MAX];   /* model indexes, in order */
	size_t n;
};

/* primary: the routed model's index; task: its task route or NULL. */
void chain_build(const struct config *cfg, size_t primary, const struct task_conf *task,
		 struct chain *out);

enum failure_kind {
	FAIL_NONE = 0,      /* the attempt answered */
	FAIL_FINAL,         /* the upstream refused the request itself (400, 404, 422, ...): the answer */
	FAIL_STATUS,        /* an upstream.retry_on status (5xx, 529 by default) */
	FAIL_RATE_LIMIT,    /* 429 */
	FAIL_AUTH,          /* 401/403: the router's own key is wrong or revoked */
	FAIL_NETWORK,       /* DNS, connect, timeout, stall, broken connection */
	FAIL_MALFORMED,     /* a 2xx reply the router cannot read */
	FAIL_OVERLOAD,      /* a 2xx reply cut short for lack of capacity (DeepSeek) */
	FAIL_CANCELLED,     /* the client went away */
};

const char *failure_kind_name(enum failure_kind k);

/* Upstream HTTP status (0 when none arrived) and whether a transport failure happened -> kind.
 * A failure kind that the configuration does not treat as a trigger comes back as FAIL_FINAL. */
enum failure_kind failure_classify(const struct config *cfg, long status, int transport_failed,
				   int malformed);

/* Whether a failure of this kind counts toward the model's cooldown. */
int failure_counts_for_health(enum failure_kind k);

enum next_action { NEXT_STOP, NEXT_MODEL, NEXT_SAME };

struct next_step {
	enum next_action action;
	int64_t wait_ms;           /* sleep before the next attempt */
};

/* After attempt number `attempts` (1-based) failed with kind on chain position k:
 *   retry_after_s   the provider's Retry-After (0 = none)
 *   backoffs    backoffs already taken in this request
 *   same_provider   the next chain model (if any) has the same provider as this one
 *   jitter          a uniform random number in [0, 1)
 * NEXT_STOP also when the attempt budget or the chain is used up. */
void fallback_next(const struct config *cfg, const struct chain *ch, size_t k, size_t attempts,
		   enum failure_kind kind, long retry_after_s, int backoffs, int same_provider,
		   double jitter, struct next_step *out);

/* Exponential backoff with jitter: the n-th (1-based) retry waits between half and all of
 * min(backoff_max_ms, backoff_ms * 2^(n-1)). */
int64_t fallback_backoff_ms(const struct config *cfg, int n, double jitter);

#endif
