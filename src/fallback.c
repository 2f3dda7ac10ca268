/* fallback.c - fallback chains and the retry policy: every decision of dispatch's walk (pure).
 *
 * No I/O, no clock, no randomness: the time left and the jitter are inputs, so that every row of
 * the policy is a unit test (tests/unit/test_fallback.c). dispatch.c carries out the steps.
 */
#include "fallback.h"

static void chain_add(struct chain *c, size_t m)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->model[i] == m)
			return;
	if (c->n < CHAIN_MAX)
		c->model[c->n++] = m;
}

void chain_build(const struct config *cfg, size_t primary, const struct task_conf *task,
		 struct chain *out)
{
	out->n = 0;
	chain_add(out, primary);
	if (task && task->model == primary && task->has_fallback)
		chain_add(out, task->fallback);
	if (primary < cfg->n_models) {
		const struct model_conf *m = &cfg->models[primary];
		for (size_t i = 0; i < m->n_fallback; i++)
			chain_add(out, m->fallback[i]);
	}
}

const char *failure_kind_name(enum failure_kind k)
{
	switch (k) {
	case FAIL_NONE: return "none";
	case FAIL_FINAL: return "final";
	case FAIL_STATUS: return "status";
	case FAIL_RATE_LIMIT: return "rate_limit";
	case FAIL_AUTH: return "auth";
	case FAIL_NETWORK: return "network";
	case FAIL_MALFORMED: return "malformed";
	case FAIL_OVERLOAD: return "overload";
	case FAIL_CANCELLED: return "cancelled";
	}
	return "unknown";
}

enum failure_kind failure_classify(const struct config *cfg, long status, int transport_failed,
				   int malformed)
{
	if (transport_failed)
		return cfg->retry_on_network ? FAIL_NETWORK : FAIL_FINAL;
	if (status >= 200 && status < 300)
		return malformed ? (cfg->retry_on_network ? FAIL_MALFORMED : FAIL_FINAL) : FAIL_NONE;
	for (size_t i = 0; i < cfg->retry_on.n; i++)
		if (cfg->retry_on.v[i] == status)
			return FAIL_STATUS;
	if (status == 429)
		return FAIL_RATE_LIMIT;
	if (status == 401 || status == 403)
		return FAIL_AUTH;
	return FAIL_FINAL;
}

int failure_counts_for_health(enum failure_kind k)
{
	return k != FAIL_NONE && k != FAIL_FINAL && k != FAIL_CANCELLED;
}

int64_t fallback_backoff_ms(const struct config *cfg, int n, double jitter)
{
	int64_t d = cfg->backoff_ms;
	for (int i = 1; i < n && d < cfg->backoff_max_ms; i++)
		d *= 2;
	if (d > cfg->backoff_max_ms)
		d = cfg->backoff_max_ms;
	if (jitter < 0 || jitter >= 1)
		jitter = 0;
	return d / 2 + (int64_t)((double)(d - d / 2) * jitter);
}

/* The policy after a failed call at position k of a chain of n models. */
static void next_after_failure(const struct config *cfg, size_t n, size_t k, size_t attempts,
			       enum failure_kind kind, long retry_after_s, int backoffs,
			       int same_provider, double jitter, struct next_step *out)
{
	out->action = NEXT_STOP;
	out->wait_ms = 0;
	if (kind == FAIL_NONE || kind == FAIL_FINAL || kind == FAIL_CANCELLED)
		return;
	if (attempts >= (size_t)cfg->max_retries + 1)
		return;
	/* A rate limit that asks for a short wait: wait, and ask the same model again. */
	if (kind == FAIL_RATE_LIMIT && retry_after_s > 0 &&
	    retry_after_s * 1000 <= cfg->retry_after_max_ms) {
		out->action = NEXT_SAME;
		out->wait_ms = retry_after_s * 1000;
		return;
	}
	if (k + 1 < n) {
		out->action = NEXT_MODEL;
		/* Another provider is asked at once; the same provider gets a moment to recover. */
		out->wait_ms = same_provider ? fallback_backoff_ms(cfg, backoffs + 1, jitter) : 0;
		return;
	}
	/* The chain is used up: a transient failure is worth another try of the same model, a bad
	 * key or a long rate limit is not. */
	if (kind == FAIL_AUTH || kind == FAIL_RATE_LIMIT)
		return;
	out->action = NEXT_SAME;
	out->wait_ms = fallback_backoff_ms(cfg, backoffs + 1, jitter);
}

void fallback_next(const struct config *cfg, const struct chain *ch, size_t k, size_t attempts,
		   enum failure_kind kind, long retry_after_s, int backoffs, int same_provider,
		   double jitter, struct next_step *out)
{
	next_after_failure(cfg, ch->n, k, attempts, kind, retry_after_s, backoffs, same_provider,
			   jitter, out);
}

/* Before a call: the model must be reachable, and an attempt and some time must be left. */
static void decide_before(const struct config *cfg, const struct fallback_input *in,
			  struct fallback_step *out)
{
	if (in->k >= in->n) {
		out->why = FB_WHY_EXHAUSTED;
	} else if (!in->provider_available) {
		out->action = FB_SKIP;
		out->row = FB_ROW_SKIPPED;
	} else if (in->calls >= cfg->max_retries + 1) {
		out->why = FB_WHY_EXHAUSTED;
	} else if (in->time_left_us <= 0) {
		out->why = FB_WHY_DEADLINE;
	} else {
		out->action = FB_CALL;
	}
}

/* After a call. */
static void decide_reply(const struct config *cfg, const struct fallback_input *in,
			 struct fallback_step *out)
{
	if (in->kind == FAIL_NONE) {
		/* A stream that failed after content reached the client is still the answer. */
		out->action = FB_ANSWER;
		out->row = in->partial ? FB_ROW_PARTIAL : FB_ROW_OK;
		out->health_failure = in->partial;
		out->health_success = !in->partial;
		return;
	}
	out->health_failure = failure_counts_for_health(in->kind);
	struct next_step next;
	next_after_failure(cfg, in->n, in->k, in->calls > 0 ? (size_t)in->calls : 0, in->kind,
			   in->retry_after_s, in->backoffs, in->same_provider, in->jitter, &next);
	if (in->kind == FAIL_OVERLOAD && next.action == NEXT_STOP) {
		/* No other model left: the cut-short reply is still the best answer. */
		out->action = FB_ANSWER;
		out->row = FB_ROW_OK;
		out->health_success = 1;
		return;
	}
	out->row = FB_ROW_FAILED;
	if (next.action == NEXT_STOP) {
		out->why = in->kind == FAIL_FINAL ? FB_WHY_FINAL : FB_WHY_EXHAUSTED;
		return;
	}
	out->planned = next.action == NEXT_MODEL ? FB_NEXT_MODEL : FB_RETRY_SAME;
	out->wait_ms = next.wait_ms;
	if (next.wait_ms > 0 && next.wait_ms * 1000 >= in->time_left_us) {
		out->why = FB_WHY_NO_TIME;
		return;
	}
	out->action = out->planned;
	/* Waiting out a 429's Retry-After is not a backoff. */
	out->backoff = next.wait_ms > 0 && (next.action == NEXT_MODEL || in->retry_after_s == 0 ||
					    in->http_status != 429);
}

void fallback_decide(const struct config *cfg, const struct fallback_input *in,
		     struct fallback_step *out)
{
	out->action = FB_GIVE_UP;
	out->planned = FB_GIVE_UP;
	out->wait_ms = 0;
	out->why = FB_WHY_NONE;
	out->row = FB_ROW_NONE;
	out->health_failure = 0;
	out->health_success = 0;
	out->backoff = 0;
	switch (in->event) {
	case FB_EV_BEFORE:
		decide_before(cfg, in, out);
		return;
	case FB_EV_COOLING:
	case FB_EV_UNAVAILABLE:
		out->action = FB_SKIP;
		out->row = FB_ROW_SKIPPED;
		return;
	case FB_EV_REFUSED:
		/* The routed model refuses the request itself: that is the answer. A fallback model
		 * that cannot take it is passed over. */
		out->action = in->k == 0 ? FB_ANSWER : FB_SKIP;
		out->row = in->k == 0 ? FB_ROW_NONE : FB_ROW_SKIPPED;
		return;
	case FB_EV_CLIENT_GONE:
		out->action = FB_CLIENT_GONE;
		out->row = FB_ROW_CANCELLED;
		return;
	case FB_EV_REPLY:
		decide_reply(cfg, in, out);
		return;
	}
}
