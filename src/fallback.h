/* fallback.h - which models a request may try, and what each attempt leads to (pure).
 *
 * A request's chain is its model, then (for a task route) the task's fallback, then the model's
 * configured `fallback` list, without repeats. dispatch.c walks it; every decision of the walk is
 * made here, by fallback_decide(), from what just happened and the walk's state: whether chain
 * position k is called or passed over (no key, no adapter, cooling down), and after a call
 * whether its reply is the answer, whether the next attempt goes to the next model or to the same
 * model again (a 429 that asks for a short wait, or a retryable failure with no model left) and
 * after what pause, or whether the walk gives up and answers with the last failure. At most
 * 1 + upstream.max_retries calls are made, within upstream.deadline_ms. Nothing here does I/O,
 * reads a clock or draws a random number: those come in as inputs.
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
 *   backoffs        backoffs already taken in this request
 *   same_provider   the next chain model (if any) has the same provider as this one
 *   jitter          a uniform random number in [0, 1)
 * NEXT_STOP also when the attempt budget or the chain is used up. The retry policy alone, as
 * fallback_decide() applies it to a failed call (which adds the deadline, the overloaded reply
 * that is still the answer, and the rest of the walk). */
void fallback_next(const struct config *cfg, const struct chain *ch, size_t k, size_t attempts,
		   enum failure_kind kind, long retry_after_s, int backoffs, int same_provider,
		   double jitter, struct next_step *out);

/* Exponential backoff with jitter: the n-th (1-based) retry waits between half and all of
 * min(backoff_max_ms, backoff_ms * 2^(n-1)). */
int64_t fallback_backoff_ms(const struct config *cfg, int n, double jitter);

/* ---- the whole walk ---- */

/* What just happened at chain position k. */
enum fallback_event {
	FB_EV_BEFORE,        /* position k is about to be called (k may be past the chain's end) */
	FB_EV_COOLING,       /* its model is cooling down (health.h) */
	FB_EV_UNAVAILABLE,   /* this build has no adapter for its provider's API */
	FB_EV_REFUSED,       /* its translator refused the request, before any call */
	FB_EV_REPLY,         /* it was called and its attempt ended: kind says how */
	FB_EV_CLIENT_GONE,   /* the client left during the attempt */
};

struct fallback_input {
	enum fallback_event event;
	size_t k;                   /* chain position */
	size_t n;                   /* chain length */
	int provider_available;     /* FB_EV_BEFORE: the provider has a key (or is the demo) */
	enum failure_kind kind;     /* FB_EV_REPLY: FAIL_NONE for a usable reply */
	int partial;                /* FB_EV_REPLY, FAIL_NONE: a stream that failed after content */
	long http_status;           /* FB_EV_REPLY: the upstream's HTTP status (0 when none) */
	long retry_after_s;         /* FB_EV_REPLY: the failure's Retry-After (0 = none) */
	int calls;                  /* upstream calls made so far, this attempt's included */
	int backoffs;               /* backoffs taken so far */
	int same_provider;          /* position k + 1 exists and has the provider of position k */
	int64_t time_left_us;       /* until upstream.deadline_ms (<= 0: passed) */
	double jitter;              /* uniform in [0, 1) */
};

enum fallback_action {
	FB_CALL,           /* call position k now */
	FB_SKIP,           /* pass over position k without calling it; go on with k + 1 */
	FB_NEXT_MODEL,     /* after wait_ms, go on with position k + 1 */
	FB_RETRY_SAME,     /* after wait_ms, call position k again */
	FB_ANSWER,         /* this attempt is the answer: its reply, or the request's refusal */
	FB_GIVE_UP,        /* answer with the last failure (naming the models tried) */
	FB_CLIENT_GONE,    /* stop: nobody is left to answer */
};

/* Why FB_GIVE_UP. */
enum fallback_why {
	FB_WHY_NONE,
	FB_WHY_FINAL,      /* the failure is the upstream's answer to the request itself (400, ...) */
	FB_WHY_EXHAUSTED,  /* no model or no attempt left */
	FB_WHY_DEADLINE,   /* upstream.deadline_ms passed before the next call */
	FB_WHY_NO_TIME,    /* the pause before the next call would cross the deadline */
};

/* The attempt's row in request_attempts. */
enum fallback_row { FB_ROW_NONE, FB_ROW_SKIPPED, FB_ROW_OK, FB_ROW_PARTIAL, FB_ROW_FAILED,
		    FB_ROW_CANCELLED };

struct fallback_step {
	enum fallback_action action;
	enum fallback_action planned;  /* FB_WHY_NO_TIME: the attempt that did not fit */
	int64_t wait_ms;               /* FB_NEXT_MODEL, FB_RETRY_SAME (and FB_WHY_NO_TIME) */
	enum fallback_why why;
	enum fallback_row row;
	int health_failure;            /* report a failure of the model (health.h) ... */
	int health_success;            /* ... then a success (both: a cut reply that is the answer) */
	int backoff;                   /* the wait counts as a backoff (not a Retry-After wait) */
};

/* The next step of the walk after the event in *in. */
void fallback_decide(const struct config *cfg, const struct fallback_input *in,
		     struct fallback_step *out);

#endif
