/* dispatch.c - one chat completion: walk the fallback chain, one attempt after another; account,
 * log, answer.
 *
 * The walk is a loop over states, one function each: gate (may chain position k be called?),
 * attempt (call it), account (the model's health), record (the attempt's row), wait (the pause
 * before the next attempt), answer (the reply, or one final error naming the models tried, then
 * the request's row). Which state follows is never decided here: after the gate and after every
 * attempt, fallback_decide() (fallback.h, pure) turns what happened into the next step, and the
 * loop only carries it out. A model in cooldown (health.h) or without an available provider is
 * skipped; an attempt that fails before anything reached the client - an error status, a
 * transport failure, a reply the router cannot read, a stream that breaks before its first
 * content event - may be followed by another. Every attempt (and every skip) becomes a row of
 * request_attempts with the request's row. The current attempt lives in struct dispatch and is
 * always initialised: the final error and the row are made from the last one.
 *
 * One attempt - translating, calling the upstream, relaying the reply, watching the client - is
 * attempt.c's; what the attempts share is the struct attempt_shared inside struct dispatch. Here:
 * the attempt rows, the model's health, the final error, usage and cost, and the request's row,
 * committed (reqctx_commit_log) before a stream's last frame is flushed.
 *
 * Timing: X-Router-Overhead-Ms is the router's own share of the latency up to the moment the
 * headers are written: the elapsed time minus upstream calls and the waits between attempts.
 */
#include "dispatch.h"

#include <stdio.h>
#include <string.h>

#include "attempt.h"
#include "fallback.h"
#include "health.h"
#include "log.h"
#include "toolstate.h"
#include "util.h"

#define MAX_LOG 24

struct dispatch {
	struct attempt_shared s;       /* rc, call, calls, fallback_from, tried, cancelled, deadline */
	struct chain chain;
	struct attempt_log log[MAX_LOG];
	char *owned[MAX_LOG][4];       /* strings the log entries point to */
	size_t n_log;
	int backoffs;
	double upstream_ms;            /* upstream time of every call */
	int64_t cooling_until_ms;      /* earliest end of a cooldown that made us skip a model */
	int64_t failed_cost_nusd;      /* what failed attempts were billed (their usage said so) */
	struct rerr last_err;          /* what the client gets when nothing answers */
	struct health_source hs;
	size_t k;                      /* chain position of the current attempt */
	struct attempt a;              /* the current attempt, always initialised */
};

static struct store *health_store(void *ud)
{
	return reqctx_reader(ud);
}

/* Records one attempt (or skip) for the log. Strings are copied. */
static void log_attempt(struct dispatch *d, const struct attempt *a, const char *outcome,
			const struct rerr *e, double latency_ms)
{
	if (d->n_log == MAX_LOG)
		return;
	size_t i = d->n_log++;
	struct attempt_log *l = &d->log[i];
	memset(l, 0, sizeof(*l));
	l->ts_start_ms = a->ts_start_ms;
	l->model = d->owned[i][0] = xstrdup(a->public_model);
	l->provider = d->owned[i][1] = xstrdup(a->provider_label);
	l->upstream_model = a->x.upstream_model;
	l->outcome = outcome;
	l->upstream_status = a->called ? (int)a->ures.status : 0;
	l->latency_ms = latency_ms;
	if (e && e->status) {
		l->status = e->status;
		l->error_type = e->type;
		l->error_code = e->code;
		l->error_message = d->owned[i][2] = xstrdup(e->message);
		l->retry_after_s = e->retry_after;
	}
	if (a->upstream_request_id[0])
		l->upstream_request_id = d->owned[i][3] = xstrdup(a->upstream_request_id);
}

static void note_failed_model(struct dispatch *d, const char *model)
{
	const char *p = buf_str(&d->s.fallback_from);
	size_t n = strlen(model);
	for (;;) {
		const char *hit = strstr(p, model);
		if (!hit)
			break;
		if ((hit == d->s.fallback_from.p || hit[-1] == ',') && (hit[n] == ',' || hit[n] == '\0'))
			return;
		p = hit + 1;
	}
	if (d->s.fallback_from.len)
		buf_putc(&d->s.fallback_from, ',');
	buf_puts(&d->s.fallback_from, model);
}

/* Skips chain position k without calling it. */
static void skip_model(struct dispatch *d, struct attempt *a, const struct rerr *why)
{
	log_attempt(d, a, "skipped", why, -1);
	note_failed_model(d, a->public_model);
	/* Without any call, the first reason (the routed model's) is the one to report. */
	if (!d->s.calls && !d->last_err.status)
		d->last_err = *why;
}

static double random_unit(void)
{
	uint32_t r;
	random_bytes(&r, sizeof(r));
	return (double)r / 4294967296.0;
}

/* What the provider reported for an attempt: its stream's usage, or its reply's. */
static const struct usage *attempt_usage(const struct attempt *a)
{
	return a->relay_ready ? &a->relay.usage : &a->usage;
}

static void fill_log(struct dispatch *d, struct attempt *a)
{
	struct reqlog *l = &d->s.rc->log;
	const struct usage *u = attempt_usage(a);
	l->model = d->n_log ? d->log[d->n_log - 1].model : a->public_model;
	l->provider = d->n_log ? d->log[d->n_log - 1].provider : a->provider_label;
	l->upstream_model = a->x.upstream_model;
	l->attempts = d->s.calls;
	l->dropped_params = a->dropped.len ? a->dropped.p : NULL;
	l->upstream_request_id = a->upstream_request_id;
	l->fallback_from = d->s.fallback_from.len ? d->s.fallback_from.p : NULL;
	l->attempt_log = d->log;
	l->n_attempt_log = d->n_log;
	if (d->s.calls)
		l->upstream_ms = d->upstream_ms;
	if (u->have) {
		l->input_tokens = u->prompt;
		l->output_tokens = u->completion;
		l->cached_tokens = u->cached;
		l->cache_write_tokens = u->cache_write;
		l->reasoning_tokens = u->reasoning;
	}
	l->cost_nusd = usage_cost_nusd(u, a->model, &l->cost_source);
	if (u->estimated && !u->have_cost)
		l->cost_source = "estimate";   /* the upstream gave no token counts (Gemini embeddings) */
	int64_t seen_tokens = (a->relay_ready ? a->relay.out_chars + 3 : 0) / 4;
	if (a->relay_ready && relay_started(&a->relay) && a->relay.state != RELAY_DONE &&
	    !u->have_cost && (!u->have || u->completion < seen_tokens)) {
		/* A stream cut before its final usage: count what was seen, and when the upstream
		 * had not said how long the prompt was (OpenAI-compatible streams say it last), what
		 * was sent (about 4 characters a token, both). */
		struct usage seen = *u;
		seen.have = 1;
		seen.completion = seen_tokens;
		l->output_tokens = seen.completion;
		if (seen.prompt < 0 || !u->have) {
			seen.prompt = (int64_t)((a->ureq.body_len + 3) / 4);
			l->input_tokens = seen.prompt;
		}
		l->cost_nusd = usage_cost_nusd(&seen, a->model, &l->cost_source);
		l->cost_source = "estimate";
	}
	/* A bounded call never costs more than its reservation's worst case, whatever it reports. */
	if (d->s.call->max_cost_nusd > 0 && l->cost_nusd > d->s.call->max_cost_nusd)
		l->cost_nusd = d->s.call->max_cost_nusd;
	/* Attempts that failed after the provider billed them (a 2xx reply refused, usage given)
	 * are charged besides: the provider charges them. */
	l->cost_nusd = cost_add(l->cost_nusd, d->failed_cost_nusd);
	const json_t *turn = NULL;
	if (a->response)
		turn = json_object_get(json_array_get(json_object_get(a->response, "choices"), 0), "message");
	else if (a->relay_ready)
		turn = relay_turn(&a->relay);
	if (turn && !a->err.status)
		a->tool_state = toolstate_from_message(turn, a->x.prov);
	l->tool_state = a->tool_state;
	if (a->err.status) {
		l->error_type = a->err.type;
		l->error_code = a->err.code;
		l->error_message = a->err.message;
		l->partial = a->relay_ready && relay_started(&a->relay);
	} else if (d->s.cancelled || (a->relay_ready && a->relay.state == RELAY_CLIENT_GONE)) {
		l->error_type = "client_disconnected";
		l->partial = a->relay_ready && relay_started(&a->relay) && a->relay.state != RELAY_DONE;
	}
}

/* Nothing answered: the last failure, naming the models tried (every model cooling down: when
 * to come back). */
static void send_final_error(struct dispatch *d, struct attempt *a)
{
	if (!d->s.calls && d->cooling_until_ms && d->last_err.code &&
	    strcmp(d->last_err.code, "model_cooling_down") == 0) {
		int64_t secs = (d->cooling_until_ms - clock_wall_ms() + 999) / 1000;
		rerr_set(&d->last_err, 503, "overloaded_error", "model_cooling_down", "model",
			 "Every model of the chain of %s is cooling down after repeated failures; "
			 "retry in %lld s.", d->s.call->public_model, (long long)(secs > 0 ? secs : 1));
		d->last_err.retry_after = secs > 0 ? secs : 1;
	}
	struct rerr e = d->last_err;
	if (!e.status)
		rerr_set(&e, 503, "overloaded_error", "no_model_available", "model",
			 "No model could take the request.");
	if (d->s.calls > 1 || d->s.fallback_from.len) {
		size_t n = strlen(e.message);
		if (d->s.tried.len)
			snprintf(e.message + n, sizeof(e.message) - n, " (models tried: %s)", d->s.tried.p);
		e.should_retry = e.retry_after > 0;
	}
	if (d->s.fallback_from.len)
		resp_header(&d->s.rc->resp, "X-Router-Fallback-From", "%s", d->s.fallback_from.p);
	resp_header(&d->s.rc->resp, "X-Router-Attempts", "%d", d->s.calls);
	resp_header(&d->s.rc->resp, "X-Router-Overhead-Ms", "%.3f", attempt_overhead_ms(a));
	resp_error(&d->s.rc->resp, &e);
	/* The row carries the final error. */
	a->err = e;
}

/* ---- the walk: one function per state; fallback_decide() chooses the next ---- */

/* The decision's inputs at the current chain position after event ev. */
static void decision_input(struct dispatch *d, enum fallback_event ev, struct fallback_input *in)
{
	const struct config *cfg = d->s.rc->cfg;
	const struct attempt *a = &d->a;
	size_t k = d->k;
	memset(in, 0, sizeof(*in));
	in->event = ev;
	in->k = k;
	in->n = d->chain.n;
	if (k < d->chain.n) {
		in->provider_available = a->x.prov->available;
		in->same_provider = k + 1 < d->chain.n &&
				    cfg->models[d->chain.model[k + 1]].provider == a->model->provider;
	}
	in->kind = a->kind;
	in->partial = a->relay_ready && a->relay.state == RELAY_FAILED;
	in->http_status = a->ures.status;
	in->retry_after_s = a->err.retry_after;
	in->calls = d->s.calls;
	in->backoffs = d->backoffs;
	in->time_left_us = d->s.deadline_us - clock_mono_us();
	in->jitter = ev == FB_EV_REPLY ? random_unit() : 0;
}

/* Moves the walk to chain position k with a fresh attempt; past the chain's end the last attempt
 * stays (the final error and the row are made from it). */
static void attempt_move(struct dispatch *d, size_t k)
{
	d->k = k;
	if (k >= d->chain.n)
		return;
	attempt_free(&d->a);
	attempt_init(&d->a, &d->s, d->chain.model[k], k == 0);
}

/* State "gate", before calling position d->k: a model without a key or cooling down is passed
 * over (its reason in a->err); at the chain's end, the attempt limit or the deadline the walk
 * gives up. */
static void state_gate(struct dispatch *d, struct fallback_step *st)
{
	struct request_ctx *rc = d->s.rc;
	const struct config *cfg = rc->cfg;
	struct attempt *a = &d->a;
	struct fallback_input in;
	decision_input(d, FB_EV_BEFORE, &in);
	fallback_decide(cfg, &in, st);
	if (st->action == FB_SKIP) {
		const struct provider_conf *p = a->x.prov;
		rerr_set(&a->err, 503, "provider_unavailable", "provider_unavailable", "model",
			 "Model %s is unavailable: provider %s has no API key (%s).", a->public_model,
			 p->name, p->unavailable_reason ? p->unavailable_reason : "not configured");
		return;
	}
	if (st->why == FB_WHY_DEADLINE)
		rerr_set(&d->last_err, 504, "timeout_error", "deadline_exceeded", NULL,
			 "No model answered within upstream.deadline_ms (%lld ms)",
			 (long long)cfg->deadline_ms);
	if (st->action != FB_CALL)
		return;
	/* A model that cannot honour what the request needs (tools, images, structured outputs)
	 * would only answer with its provider's 400: passed over, as a model without a key is. */
	unsigned missing = chatreq_missing(d->s.call->needs, a->model->caps);
	if (missing) {
		const char *what;
		const char *param = chatreq_need_param(missing, &what);
		rerr_set(&a->err, 400, "invalid_request_error", "unsupported_parameter", param,
			 "Model %s cannot honour %s: passed over.", a->public_model, what);
		log_info(rc->id, "%s skipped: it cannot honour %s", a->public_model, what);
		decision_input(d, FB_EV_UNAVAILABLE, &in);
		fallback_decide(cfg, &in, st);
		return;
	}
	int64_t until = 0;
	if (health_check(cfg, a->public_model, &d->hs, &until) != HEALTH_COOLING)
		return;
	int64_t secs = (until - clock_wall_ms() + 999) / 1000;
	rerr_set(&a->err, 503, "overloaded_error", "model_cooling_down", "model",
		 "Model %s is skipped for %lld s after repeated failures.", a->public_model,
		 (long long)(secs > 0 ? secs : 1));
	a->err.retry_after = secs > 0 ? secs : 1;
	if (!d->cooling_until_ms || until < d->cooling_until_ms)
		d->cooling_until_ms = until;
	log_info(rc->id, "%s skipped: cooling down for %lld s more", a->public_model,
		 (long long)a->err.retry_after);
	decision_input(d, FB_EV_COOLING, &in);
	fallback_decide(cfg, &in, st);
}

/* An attempt that failed: its kind. An error event inside a 2xx stream counts with the status it
 * maps to. */
static enum failure_kind classify_failure(const struct config *cfg, const struct attempt *a)
{
	long st = a->ures.status;
	if (!a->transport_failed && !a->malformed && st >= 200 && st < 300)
		st = a->err.status;
	return failure_classify(cfg, a->transport_failed || a->malformed ? 200 : st,
				a->transport_failed, a->malformed);
}

/* State "attempt": calls position d->k, tells how it went, and decides what comes next. */
static void state_attempt(struct dispatch *d, struct fallback_step *st)
{
	const struct config *cfg = d->s.rc->cfg;
	struct attempt *a = &d->a;
	a->res = attempt_run(a);
	a->span_ms = (double)attempt_upstream_span_us(a, clock_mono_us()) / 1000.0;
	if (a->called)
		d->upstream_ms += a->span_ms;
	enum fallback_event ev = FB_EV_REPLY;
	switch (a->res) {
	case ATTEMPT_NO_ADAPTER:
		ev = FB_EV_UNAVAILABLE;
		break;
	case ATTEMPT_REFUSED:
		ev = FB_EV_REFUSED;
		break;
	case ATTEMPT_CANCELLED:
		rerr_set(&a->err, 499, "client_disconnected", "client_disconnected", NULL,
			 "The client closed the connection before the answer.");
		d->s.rc->resp.status = 499;
		ev = FB_EV_CLIENT_GONE;
		break;
	case ATTEMPT_FAILED:
		a->kind = classify_failure(cfg, a);
		break;
	case ATTEMPT_ANSWERED:
		/* The client may have left in the middle of the stream. */
		if (d->s.cancelled)
			ev = FB_EV_CLIENT_GONE;
		else if (!a->x.stream && attempt_reply_overloaded(a))
			a->kind = FAIL_OVERLOAD;
		break;
	}
	struct fallback_input in;
	decision_input(d, ev, &in);
	fallback_decide(cfg, &in, st);
}

/* State "account": the model's health, and the log line for a key the provider rejected. */
static void state_account(struct dispatch *d, const struct fallback_step *st)
{
	const struct config *cfg = d->s.rc->cfg;
	struct attempt *a = &d->a;
	const char *reason = a->kind == FAIL_OVERLOAD ? "insufficient_system_resource"
			     : a->err.status ? a->err.message : "ok";
	if (st->health_failure)
		health_report(cfg, a->public_model, 0, reason, &d->hs);
	if (a->res == ATTEMPT_FAILED && a->kind == FAIL_AUTH)
		log_error(d->s.rc->id, "provider %s rejected the router's credentials for %s (HTTP %ld): "
			  "check %s", a->x.prov->name, a->public_model, a->ures.status, a->x.prov->key_env);
	if (st->health_success)
		health_report(cfg, a->public_model, 1, NULL, &d->hs);
}

/* A failed call's row; its error becomes the last failure, and its model is named in
 * X-Router-Fallback-From when another attempt was planned. */
static void record_failure(struct dispatch *d, const struct fallback_step *st)
{
	struct request_ctx *rc = d->s.rc;
	const struct config *cfg = rc->cfg;
	struct attempt *a = &d->a;
	if (a->kind == FAIL_OVERLOAD)
		rerr_set(&a->err, 503, "overloaded_error", "upstream_overloaded", NULL,
			 "%s cut the reply short: insufficient_system_resource", a->x.prov->name);
	log_attempt(d, a, "failed", &a->err, a->span_ms);
	const struct usage *u = attempt_usage(a);
	if (u->have || u->have_cost) {
		const char *source;
		d->failed_cost_nusd = cost_add(d->failed_cost_nusd, usage_cost_nusd(u, a->model, &source));
	}
	d->last_err = a->err;
	d->s.excluded_us += (int64_t)(a->span_ms * 1000);
	enum fallback_action next = st->action == FB_GIVE_UP ? st->planned : st->action;
	if (next != FB_NEXT_MODEL && next != FB_RETRY_SAME)
		return;
	note_failed_model(d, a->public_model);
	log_info(rc->id, "%s failed (%s: %s); trying %s%s", a->public_model,
		 failure_kind_name(a->kind), a->err.code ? a->err.code : a->err.type,
		 next == FB_RETRY_SAME ? "it again" : cfg->models[d->chain.model[d->k + 1]].id,
		 st->wait_ms ? " after a pause" : "");
}

/* The requests libcurl sent again by itself on a fresh connection (a reused one died before any
 * reply byte): the provider received each, so each is a failed attempt of its own. */
static void record_resends(struct dispatch *d, const struct attempt *a)
{
	for (int i = 0; i < a->ures.resends; i++) {
		struct rerr e;
		rerr_clear(&e);    /* rerr_set leaves retry_after and should_retry as they were */
		rerr_set(&e, 502, "server_error", "connection_dropped", NULL,
			 "The reused connection to provider %s closed before any reply; the request was "
			 "sent again on a new connection", a->x.prov->name);
		log_attempt(d, a, "failed", &e, -1);
		if (d->n_log)
			d->log[d->n_log - 1].upstream_status = 0;
	}
	if (a->ures.resends)
		log_warn(d->s.rc->id, "provider %s: a reused connection closed before any reply; the "
			 "request was sent %d more time(s)", a->x.prov->name, a->ures.resends);
}

/* State "record": the attempt's row in request_attempts. */
static void state_record(struct dispatch *d, const struct fallback_step *st)
{
	struct attempt *a = &d->a;
	if (a->called)
		record_resends(d, a);
	switch (st->row) {
	case FB_ROW_NONE:
		break;
	case FB_ROW_SKIPPED:
		skip_model(d, a, &a->err);
		break;
	case FB_ROW_OK:
		log_attempt(d, a, "ok", NULL, a->span_ms);
		break;
	case FB_ROW_PARTIAL:
		log_attempt(d, a, "partial", &a->err, a->span_ms);
		break;
	case FB_ROW_CANCELLED:
		log_attempt(d, a, "cancelled", a->res == ATTEMPT_CANCELLED ? &a->err : NULL, a->span_ms);
		break;
	case FB_ROW_FAILED:
		record_failure(d, st);
		break;
	}
}

/* State "wait": the pause before the next attempt, watching the client. Returns -1 when the
 * client left. */
static int state_wait(struct dispatch *d, const struct fallback_step *st)
{
	if (st->wait_ms <= 0)
		return 0;
	int64_t t = clock_mono_us();
	if (st->backoff)
		d->backoffs++;
	reqctx_reader_release(d->s.rc);
	int gone = attempt_wait_watching(&d->s, st->wait_ms) < 0;
	d->s.excluded_us += clock_mono_us() - t;
	if (gone) {
		d->s.rc->resp.status = 499;
		return -1;
	}
	return 0;
}

/* State "answer": the reply (a stream is already out), the routed model's refusal, or the final
 * error; then the request's row, committed before the response's last bytes are flushed. */
static void state_answer(struct dispatch *d, const struct fallback_step *st)
{
	struct request_ctx *rc = d->s.rc;
	struct attempt *a = &d->a;
	if (st->action == FB_ANSWER && a->called) {
		if (!a->x.stream)
			attempt_send_reply(a);
	} else if (st->action == FB_ANSWER && a->err.status) {
		/* The routed model's translator refused the request. */
		resp_header(&rc->resp, "X-Router-Overhead-Ms", "%.3f", attempt_overhead_ms(a));
		resp_error(&rc->resp, &a->err);
	} else if (st->action == FB_GIVE_UP && !d->s.cancelled) {
		send_final_error(d, a);
	}
	if (a->dropped.len)
		log_info(rc->id, "parameters dropped for %s: %s", a->public_model, a->dropped.p);
	fill_log(d, a);
	reqctx_commit_log(rc);
}

static void dispatch_init(struct dispatch *d, struct request_ctx *rc, const struct chat_call *call)
{
	const struct config *cfg = rc->cfg;
	memset(d, 0, sizeof(*d));
	d->s.rc = rc;
	d->s.call = call;
	rerr_clear(&d->last_err);
	buf_init(&d->s.fallback_from, 4096);
	buf_init(&d->s.tried, 4096);
	d->s.deadline_us = rc->t0_us + cfg->deadline_ms * 1000;
	d->hs = (struct health_source){ health_store, rc };
	if (call->chain)
		d->chain = *call->chain;
	else
		chain_build(cfg, (size_t)(call->model - cfg->models), NULL, &d->chain);
	attempt_init(&d->a, &d->s, d->chain.model[0], 1);
}

static void dispatch_free(struct dispatch *d)
{
	attempt_free(&d->a);
	for (size_t i = 0; i < d->n_log; i++)
		for (size_t j = 0; j < 4; j++)
			free(d->owned[i][j]);
	buf_free(&d->s.fallback_from);
	buf_free(&d->s.tried);
}

void dispatch_chat(struct request_ctx *rc, const struct chat_call *call)
{
	struct dispatch d;
	dispatch_init(&d, rc, call);
	struct fallback_step st;
	for (;;) {
		state_gate(&d, &st);
		if (st.action == FB_CALL)
			state_attempt(&d, &st);
		state_account(&d, &st);
		state_record(&d, &st);
		if (st.action == FB_SKIP) {
			attempt_move(&d, d.k + 1);
			continue;
		}
		if (st.action != FB_NEXT_MODEL && st.action != FB_RETRY_SAME)
			break;
		if (state_wait(&d, &st) < 0) {
			st.action = FB_CLIENT_GONE;
			break;
		}
		attempt_move(&d, st.action == FB_NEXT_MODEL ? d.k + 1 : d.k);
	}
	state_answer(&d, &st);
	dispatch_free(&d);
}

