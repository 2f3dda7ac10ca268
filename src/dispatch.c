/* dispatch.c - one chat completion: walk the fallback chain, translate, call the upstream, relay,
 * account, log.
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
 * Non-streaming: the upstream body is collected (bounded by upstream.max_response_bytes), then
 * translated and sent with Content-Length. Streaming: the upstream status is known from the head
 * callback; a 2xx body is fed to the relay as it arrives and the client events made from each piece
 * are flushed as soon as that piece is relayed (headers go out with the first event that carries
 * content, so until then another model can still answer). While the client is connected and the
 * upstream silent, a ": keep-alive" comment is flushed every upstream.keepalive_interval_ms. The
 * client's connection is watched during every upstream wait and every backoff: when the client
 * leaves, the upstream transfer is aborted at once and the row records the cancellation.
 *
 * Timing: X-Router-Overhead-Ms is the router's own share of the latency up to the moment the
 * headers are written: the elapsed time minus upstream calls and the waits between attempts.
 */
#include "dispatch.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "fallback.h"
#include "health.h"
#include "log.h"
#include "providers/provider.h"
#include "relay.h"
#include "store.h"
#include "toolstate.h"
#include "upstream.h"
#include "util.h"

#define MAX_LOG 24

/* How run_attempt ended. */
enum attempt_result {
	ATTEMPT_ANSWERED,     /* the reply went (or, non-streaming, is ready to go) to the client */
	ATTEMPT_FAILED,       /* nothing reached the client; a->err says why */
	ATTEMPT_NO_ADAPTER,   /* no call: this build cannot speak the provider's API */
	ATTEMPT_REFUSED,      /* no call: the translator refused the request (a->err) */
	ATTEMPT_CANCELLED,    /* the client left before anything was sent */
};

struct attempt {
	struct dispatch *d;
	struct request_ctx *rc;
	const struct chat_call *call;
	const struct model_conf *model;
	const char *public_model;
	const struct provider_ops *ops;
	struct xlate_ctx x;
	char provider_label[96];
	struct buf dropped;
	struct upstream_req ureq;
	struct upstream_result ures;
	struct rerr err;
	struct usage usage;        /* non-streaming usage (streams keep theirs in the relay) */
	struct buf body;           /* non-2xx or non-streaming upstream body */
	struct relay relay;
	int relay_ready;
	json_t *response;          /* non-streaming reply sent to the client */
	json_t *tool_state;        /* state of this turn's tool calls to keep (toolstate.h) */
	int relaying;              /* stream with a 2xx head: body goes to the relay */
	long status;
	int64_t ts_start_ms;
	int64_t t_up_start_us;
	int64_t t_last_byte_us;
	int64_t t_last_write_us;
	double overhead_ms;
	int called;                /* the upstream call was made */
	int unflushed;             /* stream frames written since the last flush */
	int final_pending;         /* the last frame written ends the stream */
	int transport_failed;
	int malformed;             /* a 2xx reply the router could not use */
	char upstream_request_id[128];
	enum attempt_result res;
	enum failure_kind kind;    /* res ATTEMPT_FAILED, or an overloaded reply */
	double span_ms;            /* upstream time of this attempt */
};

struct dispatch {
	struct request_ctx *rc;
	const struct chat_call *call;
	struct chain chain;
	struct attempt_log log[MAX_LOG];
	char *owned[MAX_LOG][4];       /* strings the log entries point to */
	size_t n_log;
	struct buf fallback_from;      /* models that failed or were skipped, in order */
	struct buf tried;              /* models called, for the final error */
	int calls;                     /* upstream calls made */
	int backoffs;
	int cancelled;                 /* the client left */
	int watch_wakeups;             /* the client's connection was readable, the client still there */
	int64_t deadline_us;
	int64_t excluded_us;           /* upstream time of finished attempts, and waits */
	double upstream_ms;            /* upstream time of every call */
	int64_t cooling_until_ms;      /* earliest end of a cooldown that made us skip a model */
	int64_t t_heartbeat_us;        /* last heartbeat to the web server (nothing sent yet) */
	struct rerr last_err;          /* what the client gets when nothing answers */
	struct health_source hs;
	size_t k;                      /* chain position of the current attempt */
	struct attempt a;              /* the current attempt, always initialised */
};

static void set_common_headers(struct attempt *a)
{
	struct response *resp = &a->rc->resp;
	resp_header(resp, "X-Router-Model", "%s", a->public_model);
	resp_header(resp, "X-Router-Provider", "%s", a->provider_label);
	resp_header(resp, "X-Router-Attempts", "%d", a->d->calls);
	if (a->d->fallback_from.len)
		resp_header(resp, "X-Router-Fallback-From", "%s", a->d->fallback_from.p);
	if (a->dropped.len)
		resp_header(resp, "X-Router-Dropped-Params", "%s", a->dropped.p);
	if (a->upstream_request_id[0])
		resp_header(resp, "X-Upstream-Request-Id", "%s", a->upstream_request_id);
}

/* The upstream's share of this attempt so far. */
static int64_t upstream_span_us(const struct attempt *a, int64_t now)
{
	if (!a->called)
		return 0;
	return (a->t_last_byte_us ? a->t_last_byte_us : now) - a->t_up_start_us;
}

/* Router-owned time so far: everything but upstream calls and waits between attempts. */
static double overhead_now(const struct attempt *a)
{
	int64_t now = clock_mono_us();
	int64_t own = now - a->rc->t0_us - a->d->excluded_us - upstream_span_us(a, now);
	return own < 0 ? 0 : (double)own / 1000.0;
}

static void map_transport_failure(struct attempt *a, struct rerr *e)
{
	const char *prov = a->x.prov->name;
	switch (a->ures.fail) {
	case UPSTREAM_CONNECT:
		rerr_set(e, 502, "server_error", "upstream_unreachable", NULL,
			 "Could not reach provider %s: %s", prov, a->ures.error);
		break;
	case UPSTREAM_TIMEOUT:
		rerr_set(e, 504, "timeout_error", "upstream_timeout", NULL,
			 "Provider %s did not answer in time: %s", prov, a->ures.error);
		break;
	case UPSTREAM_STALLED:
		rerr_set(e, 504, "timeout_error", "upstream_stalled", NULL,
			 "Provider %s stopped sending: %s", prov, a->ures.error);
		break;
	default:
		rerr_set(e, 502, "server_error", "bad_upstream_response", NULL,
			 "The connection to provider %s failed: %s", prov, a->ures.error);
		break;
	}
	e->should_retry = 1;
}

/* ---- callbacks ---- */

static int on_head(void *ud, const struct upstream_head *h)
{
	struct attempt *a = ud;
	a->status = h->status;
	snprintf(a->upstream_request_id, sizeof(a->upstream_request_id), "%s", h->request_id);
	a->relaying = a->x.stream && h->status >= 200 && h->status < 300;
	return 0;
}

static int on_body(void *ud, const char *p, size_t n)
{
	struct attempt *a = ud;
	a->t_last_byte_us = clock_mono_us();
	if (a->relaying) {
		int rc = relay_feed(&a->relay, p, n);
		/* Every event of this piece went out together: one flush, unless the last frame is the
		 * end of the stream, which waits for the log row (stream_sink). */
		if (a->unflushed && !a->final_pending) {
			a->unflushed = 0;
			if (resp_flush(&a->rc->resp) < 0) {
				a->relay.state = RELAY_CLIENT_GONE;
				return -1;
			}
		}
		if (rc == 0)
			return 0;
		/* After the end of the stream, let the rest of the body drain so the connection can be
		 * reused; stop at once when the client left or the stream failed. */
		return a->relay.state == RELAY_DONE ? 0 : -1;
	}
	if (buf_append(&a->body, p, n) < 0) {
		rerr_set(&a->err, 502, "server_error", "bad_upstream_response", NULL,
			 "Provider %s sent a reply larger than %zu bytes", a->x.prov->name, a->body.max);
		a->malformed = 1;
		return -1;
	}
	return 0;
}

static int on_tick(void *ud)
{
	struct attempt *a = ud;
	struct response *resp = &a->rc->resp;
	const struct config *cfg = a->rc->cfg;
	if (cfg->keepalive_interval_ms <= 0)
		return 0;
	int64_t now = clock_mono_us();
	if (!resp->started) {
		/* Nothing sent yet (a non-streaming call, or a stream before its first byte): keep the
		 * web server's idle timer (mod_fcgid's FcgidIOTimeout, 40 s by default) from cutting a
		 * long call, without sending the client anything. */
		const struct http_io *io = resp->io;
		struct dispatch *d = a->d;
		if (!d->t_heartbeat_us)
			d->t_heartbeat_us = now;
		if (io->heartbeat && now - d->t_heartbeat_us >= cfg->keepalive_interval_ms * 1000) {
			d->t_heartbeat_us = now;
			io->heartbeat(io->ctx);
		}
		return 0;
	}
	if (!a->relaying)
		return 0;
	if (now - a->t_last_write_us < cfg->keepalive_interval_ms * 1000)
		return 0;
	a->t_last_write_us = now;
	static const char ping[] = ": keep-alive\n\n";
	if (resp_write(resp, ping, sizeof(ping) - 1) < 0 || resp_flush(resp) < 0) {
		a->relay.state = RELAY_CLIENT_GONE;
		return -1;
	}
	return 0;
}

/* The client's connection became readable while we wait: -1 the client is gone, 1 keep
 * watching, 0 stop watching. */
static int client_check(struct dispatch *d)
{
	const struct http_io *io = d->rc->req.io;
	int g = io->peer_gone ? io->peer_gone(io->ctx) : 0;
	/* Something that stays readable without meaning anything would wake every wait. */
	if (g == 2 && ++d->watch_wakeups > 8)
		g = 0;
	if (g == 1) {
		d->cancelled = 1;
		d->rc->resp.client_gone = 1;
		return -1;
	}
	return g == 2 ? 1 : 0;
}

static int on_watch(void *ud)
{
	struct attempt *a = ud;
	int w = client_check(a->d);
	if (w < 0 && a->relay_ready)
		a->relay.state = RELAY_CLIENT_GONE;
	return w;
}

static int client_fd(const struct dispatch *d)
{
	const struct http_io *io = d->rc->req.io;
	return io->peer_fd ? io->peer_fd(io->ctx) : -1;
}

static int stream_sink(void *ud, const char *p, size_t n)
{
	struct attempt *a = ud;
	struct response *resp = &a->rc->resp;
	if (!resp->started) {
		a->overhead_ms = overhead_now(a);
		set_common_headers(a);
		resp_header(resp, "X-Router-Overhead-Ms", "%.3f", a->overhead_ms);
		resp_header(resp, "Cache-Control", "no-cache");
		resp_header(resp, "X-Accel-Buffering", "no");
		if (resp_begin(resp, 200, "text/event-stream") < 0)
			return -1;
	}
	if (resp_write(resp, p, n) < 0)
		return -1;
	a->t_last_write_us = clock_mono_us();
	a->unflushed = 1;
	/* The final frame stays buffered until the log row is committed (reqctx_commit_log). */
	static const char done[] = "data: [DONE]\n\n";
	a->final_pending = n >= sizeof(done) - 1 &&
			   memcmp(p + n - (sizeof(done) - 1), done, sizeof(done) - 1) == 0;
	return 0;
}

/* ---- one attempt ---- */

static void upstream_opts_for(struct attempt *a, struct upstream_opts *o)
{
	const struct config *cfg = a->rc->cfg;
	int64_t left_ms = (a->d->deadline_us - clock_mono_us()) / 1000;
	if (left_ms < 1)
		left_ms = 1;
	memset(o, 0, sizeof(*o));
	o->connect_timeout_ms = (long)(cfg->connect_timeout_ms < left_ms ? cfg->connect_timeout_ms : left_ms);
	o->timeout_ms = (long)(cfg->timeout_ms < left_ms ? cfg->timeout_ms : left_ms);
	o->idle_timeout_ms = a->x.stream ? (long)cfg->stream_idle_timeout_ms : 0;
	o->proxy = cfg->proxy;
	o->ca_file = cfg->ca_file;
	o->watch_fd = client_fd(a->d);
}

static enum attempt_result run_nonstream(struct attempt *a)
{
	struct upstream_cb cb = { on_head, on_body, on_tick, on_watch, a };
	struct upstream_opts opts;
	upstream_opts_for(a, &opts);
	a->t_up_start_us = clock_mono_us();
	a->called = 1;
	int rc = upstream_perform(a->rc->w->up, &a->ureq, &opts, &cb, &a->ures);
	a->t_last_byte_us = clock_mono_us();
	if (a->d->cancelled)
		return ATTEMPT_CANCELLED;
	if (rc < 0) {
		if (!a->err.status) {
			map_transport_failure(a, &a->err);
			a->transport_failed = 1;
		}
		return ATTEMPT_FAILED;
	}
	if (a->ures.status < 200 || a->ures.status >= 300) {
		a->ops->map_error(&a->x, a->ures.status, a->body.p ? a->body.p : "", a->body.len,
				  a->ures.retry_after, &a->err);
		return ATTEMPT_FAILED;
	}
	if (relay_response(a->ops, &a->x, a->body.p ? a->body.p : "", a->body.len, &a->response,
			   &a->usage, &a->err) < 0) {
		a->malformed = 1;
		return ATTEMPT_FAILED;
	}
	return ATTEMPT_ANSWERED;
}

/* A non-streaming reply that the provider cut short for lack of capacity (DeepSeek's
 * insufficient_system_resource) is worth another model when one is left. */
static int reply_overloaded(const struct attempt *a)
{
	const json_t *c0 = json_array_get(json_object_get(a->response, "choices"), 0);
	const char *raw = json_string_value(json_object_get(c0, "provider_finish_reason"));
	return raw && strcmp(raw, "insufficient_system_resource") == 0;
}

static void send_reply(struct attempt *a)
{
	const json_t *c0 = json_array_get(json_object_get(a->response, "choices"), 0);
	const char *fr = json_string_value(json_object_get(c0, "finish_reason"));
	if (fr)
		a->rc->log.finish_reason = fr;
	a->overhead_ms = overhead_now(a);
	set_common_headers(a);
	resp_header(&a->rc->resp, "X-Router-Overhead-Ms", "%.3f", a->overhead_ms);
	resp_json(&a->rc->resp, 200, a->response);
}

static enum attempt_result run_stream(struct attempt *a)
{
	struct upstream_cb cb = { on_head, on_body, on_tick, on_watch, a };
	struct upstream_opts opts;
	upstream_opts_for(a, &opts);
	a->t_up_start_us = clock_mono_us();
	a->called = 1;
	int rc = upstream_perform(a->rc->w->up, &a->ureq, &opts, &cb, &a->ures);
	if (!a->t_last_byte_us)
		a->t_last_byte_us = clock_mono_us();
	struct relay *r = &a->relay;
	if (a->d->cancelled || r->state == RELAY_CLIENT_GONE) {
		a->d->cancelled = 1;
		a->rc->resp.client_gone = 1;
		return relay_started(r) ? ATTEMPT_ANSWERED : ATTEMPT_CANCELLED;
	}
	if (!a->relaying) {
		if (rc < 0) {
			if (!a->err.status) {
				map_transport_failure(a, &a->err);
				a->transport_failed = 1;
			}
		} else {
			a->ops->map_error(&a->x, a->ures.status, a->body.p ? a->body.p : "", a->body.len,
					  a->ures.retry_after, &a->err);
		}
		return ATTEMPT_FAILED;
	}
	if (rc < 0 && r->state == RELAY_RUNNING) {
		struct rerr e;
		rerr_clear(&e);
		map_transport_failure(a, &e);
		a->transport_failed = 1;
		relay_fail(r, &e);
	} else if (rc == 0) {
		relay_finish(r);
	}
	if (r->state == RELAY_FAILED && !relay_started(r)) {
		/* Nothing reached the client: another model may still answer. An unreadable stream is
		 * malformed; an error event inside it counts with the status it maps to. */
		a->err = r->err;
		if (!a->transport_failed && (r->err.status >= 500 || r->err.status == 0) &&
		    (!r->err.code || strcmp(r->err.code, "upstream_overloaded") != 0))
			a->malformed = 1;
		return ATTEMPT_FAILED;
	}
	if (r->state == RELAY_FAILED) {
		a->err = r->err;
		relay_emit_error(r);
	}
	if (a->unflushed && !a->final_pending && resp_flush(&a->rc->resp) < 0)
		r->state = RELAY_CLIENT_GONE;
	if (r->first_content_us)
		a->rc->log.ttft_ms = (double)(r->first_content_us - a->rc->t0_us) / 1000.0;
	if (r->finish_reason[0])
		a->rc->log.finish_reason = r->finish_reason;
	return ATTEMPT_ANSWERED;
}

static json_t *lookup_state(void *ud, const char *tool_call_id)
{
	struct request_ctx *rc = ud;
	struct store *st = reqctx_reader(rc);
	return st ? store_tool_state(st, tool_call_id) : NULL;
}

static struct store *health_store(void *ud)
{
	return reqctx_reader(ud);
}

static void attempt_init(struct attempt *a, struct dispatch *d, size_t k)
{
	struct request_ctx *rc = d->rc;
	const struct config *cfg = rc->cfg;
	const struct chat_call *call = d->call;
	memset(a, 0, sizeof(*a));
	a->d = d;
	a->rc = rc;
	a->call = call;
	rerr_clear(&a->err);
	usage_init(&a->usage);
	buf_init(&a->dropped, 4096);
	buf_init(&a->body, (size_t)cfg->max_response_bytes);
	a->model = &cfg->models[d->chain.model[k]];
	/* The routed model keeps the id the client used (a pass-through route's full id). */
	const char *upstream_model = k == 0 ? call->upstream_model : a->model->upstream;
	a->public_model = k == 0 ? call->public_model : a->model->id;
	const struct provider_conf *p = &cfg->providers[a->model->provider];
	snprintf(a->provider_label, sizeof(a->provider_label), "%s%s", p->demo ? "demo:" : "", p->name);
	a->x = (struct xlate_ctx){
		.cfg = cfg,
		.prov = p,
		.model = a->model,
		.upstream_model = upstream_model,
		.public_model = a->public_model,
		.id = rc->id,
		.created = rc->t0_wall_ms / 1000,
		.stream = call->req.stream,
		.include_usage = call->req.include_usage,
	};
	a->ops = provider_ops_for(p->api);
	a->ts_start_ms = clock_wall_ms();
}

static void attempt_free(struct attempt *a)
{
	if (a->relay_ready)
		relay_free(&a->relay);
	a->relay_ready = 0;
	json_decref(a->response);
	a->response = NULL;
	json_decref(a->tool_state);
	a->tool_state = NULL;
	usage_clear(&a->usage);
	upstream_req_free(&a->ureq);
	buf_free(&a->body);
	buf_free(&a->dropped);
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
	const char *p = buf_str(&d->fallback_from);
	size_t n = strlen(model);
	for (;;) {
		const char *hit = strstr(p, model);
		if (!hit)
			break;
		if ((hit == d->fallback_from.p || hit[-1] == ',') && (hit[n] == ',' || hit[n] == '\0'))
			return;
		p = hit + 1;
	}
	if (d->fallback_from.len)
		buf_putc(&d->fallback_from, ',');
	buf_puts(&d->fallback_from, model);
}

/* Skips chain position k without calling it. */
static void skip_model(struct dispatch *d, struct attempt *a, const struct rerr *why)
{
	log_attempt(d, a, "skipped", why, -1);
	note_failed_model(d, a->public_model);
	/* Without any call, the first reason (the routed model's) is the one to report. */
	if (!d->calls && !d->last_err.status)
		d->last_err = *why;
}

static double random_unit(void)
{
	uint32_t r;
	random_bytes(&r, sizeof(r));
	return (double)r / 4294967296.0;
}

/* Sleeps ms while watching the client. Returns -1 when the client left. */
static int wait_watching(struct dispatch *d, int64_t ms)
{
	int64_t end = clock_mono_us() + ms * 1000;
	int fd = client_fd(d);
	for (;;) {
		int64_t left = (end - clock_mono_us()) / 1000;
		if (left <= 0)
			return 0;
		struct pollfd p = { .fd = fd, .events = POLLIN, .revents = 0 };
		int n = poll(fd >= 0 ? &p : NULL, fd >= 0 ? 1 : 0, (int)left);
		if (n > 0 && p.revents) {
			int w = client_check(d);
			if (w < 0)
				return -1;
			if (w == 0)
				fd = -1;
		}
	}
}

/* Calls chain position d->k: builds the upstream request (restoring tool-call state the client
 * dropped) and runs it, streaming or not. A streamed answer has reached the client by the time it
 * returns ATTEMPT_ANSWERED; a non-streaming one is in a->response. */
static enum attempt_result run_attempt(struct dispatch *d, struct attempt *a)
{
	struct request_ctx *rc = d->rc;
	const struct provider_conf *p = a->x.prov;
	if (!a->ops) {
		rerr_set(&a->err, 503, "provider_unavailable", "adapter_unavailable", "model",
			 "Model %s is unavailable: this build has no adapter for the %s API.",
			 a->public_model, provider_api_name(p->api));
		return ATTEMPT_NO_ADAPTER;
	}
	/* A client that dropped the extension fields of an earlier tool-call turn gets them back. */
	json_t *restored = toolstate_restore(d->call->body, p, lookup_state, rc);
	int built = a->ops->build_request(&a->x, restored ? restored : d->call->body, &a->ureq,
					  &a->dropped, &a->err);
	json_decref(restored);
	if (built < 0)
		return ATTEMPT_REFUSED;
	d->calls++;
	if (d->tried.len)
		buf_puts(&d->tried, ", ");
	buf_puts(&d->tried, a->public_model);
	if (a->x.stream) {
		struct relay_sink sink = { stream_sink, a };
		relay_init(&a->relay, a->ops, &a->x, &sink);
		a->relay_ready = 1;
		return run_stream(a);
	}
	return run_nonstream(a);
}

static void fill_log(struct dispatch *d, struct attempt *a)
{
	struct reqlog *l = &d->rc->log;
	const struct usage *u = a->relay_ready ? &a->relay.usage : &a->usage;
	l->model = d->n_log ? d->log[d->n_log - 1].model : a->public_model;
	l->provider = d->n_log ? d->log[d->n_log - 1].provider : a->provider_label;
	l->upstream_model = a->x.upstream_model;
	l->attempts = d->calls;
	l->dropped_params = a->dropped.len ? a->dropped.p : NULL;
	l->upstream_request_id = a->upstream_request_id;
	l->fallback_from = d->fallback_from.len ? d->fallback_from.p : NULL;
	l->attempt_log = d->log;
	l->n_attempt_log = d->n_log;
	if (d->calls)
		l->upstream_ms = d->upstream_ms;
	if (u->have) {
		l->input_tokens = u->prompt;
		l->output_tokens = u->completion;
		l->cached_tokens = u->cached;
		l->cache_write_tokens = u->cache_write;
		l->reasoning_tokens = u->reasoning;
	}
	l->cost_nusd = usage_cost_nusd(u, a->model, &l->cost_source);
	int64_t seen_tokens = (a->relay_ready ? a->relay.out_chars + 3 : 0) / 4;
	if (a->relay_ready && relay_started(&a->relay) && a->relay.state != RELAY_DONE &&
	    !u->have_cost && (!u->have || u->completion < seen_tokens)) {
		/* A stream cut before its final usage: count what was seen (about 4 characters a
		 * token). */
		struct usage seen = *u;
		seen.have = 1;
		seen.completion = seen_tokens;
		l->output_tokens = seen.completion;
		if (seen.prompt < 0)
			seen.prompt = 0;
		l->cost_nusd = usage_cost_nusd(&seen, a->model, &l->cost_source);
		l->cost_source = "estimate";
	}
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
	} else if (d->cancelled || (a->relay_ready && a->relay.state == RELAY_CLIENT_GONE)) {
		l->error_type = "client_disconnected";
		l->partial = a->relay_ready && relay_started(&a->relay) && a->relay.state != RELAY_DONE;
	}
}

/* Nothing answered: the last failure, naming the models tried (every model cooling down: when
 * to come back). */
static void send_final_error(struct dispatch *d, struct attempt *a)
{
	if (!d->calls && d->cooling_until_ms && d->last_err.code &&
	    strcmp(d->last_err.code, "model_cooling_down") == 0) {
		int64_t secs = (d->cooling_until_ms - clock_wall_ms() + 999) / 1000;
		rerr_set(&d->last_err, 503, "overloaded_error", "model_cooling_down", "model",
			 "Every model of the chain of %s is cooling down after repeated failures; "
			 "retry in %lld s.", d->call->public_model, (long long)(secs > 0 ? secs : 1));
		d->last_err.retry_after = secs > 0 ? secs : 1;
	}
	struct rerr e = d->last_err;
	if (!e.status)
		rerr_set(&e, 503, "overloaded_error", "no_model_available", "model",
			 "No model could take the request.");
	if (d->calls > 1 || d->fallback_from.len) {
		size_t n = strlen(e.message);
		if (d->tried.len)
			snprintf(e.message + n, sizeof(e.message) - n, " (models tried: %s)", d->tried.p);
		e.should_retry = e.retry_after > 0;
	}
	if (d->fallback_from.len)
		resp_header(&d->rc->resp, "X-Router-Fallback-From", "%s", d->fallback_from.p);
	resp_header(&d->rc->resp, "X-Router-Attempts", "%d", d->calls);
	resp_header(&d->rc->resp, "X-Router-Overhead-Ms", "%.3f", overhead_now(a));
	resp_error(&d->rc->resp, &e);
	/* The row carries the final error. */
	a->err = e;
}

/* ---- the walk: one function per state; fallback_decide() chooses the next ---- */

/* The decision's inputs at the current chain position after event ev. */
static void decision_input(struct dispatch *d, enum fallback_event ev, struct fallback_input *in)
{
	const struct config *cfg = d->rc->cfg;
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
	in->calls = d->calls;
	in->backoffs = d->backoffs;
	in->time_left_us = d->deadline_us - clock_mono_us();
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
	attempt_init(&d->a, d, k);
}

/* State "gate", before calling position d->k: a model without a key or cooling down is passed
 * over (its reason in a->err); at the chain's end, the attempt limit or the deadline the walk
 * gives up. */
static void state_gate(struct dispatch *d, struct fallback_step *st)
{
	struct request_ctx *rc = d->rc;
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
	const struct config *cfg = d->rc->cfg;
	struct attempt *a = &d->a;
	a->res = run_attempt(d, a);
	a->span_ms = (double)upstream_span_us(a, clock_mono_us()) / 1000.0;
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
		d->rc->resp.status = 499;
		ev = FB_EV_CLIENT_GONE;
		break;
	case ATTEMPT_FAILED:
		a->kind = classify_failure(cfg, a);
		break;
	case ATTEMPT_ANSWERED:
		/* The client may have left in the middle of the stream. */
		if (d->cancelled)
			ev = FB_EV_CLIENT_GONE;
		else if (!a->x.stream && reply_overloaded(a))
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
	const struct config *cfg = d->rc->cfg;
	struct attempt *a = &d->a;
	const char *reason = a->kind == FAIL_OVERLOAD ? "insufficient_system_resource"
			     : a->err.status ? a->err.message : "ok";
	if (st->health_failure)
		health_report(cfg, a->public_model, 0, reason, &d->hs);
	if (a->res == ATTEMPT_FAILED && a->kind == FAIL_AUTH)
		log_error(d->rc->id, "provider %s rejected the router's credentials for %s (HTTP %ld): "
			  "check %s", a->x.prov->name, a->public_model, a->ures.status, a->x.prov->key_env);
	if (st->health_success)
		health_report(cfg, a->public_model, 1, NULL, &d->hs);
}

/* A failed call's row; its error becomes the last failure, and its model is named in
 * X-Router-Fallback-From when another attempt was planned. */
static void record_failure(struct dispatch *d, const struct fallback_step *st)
{
	struct request_ctx *rc = d->rc;
	const struct config *cfg = rc->cfg;
	struct attempt *a = &d->a;
	if (a->kind == FAIL_OVERLOAD)
		rerr_set(&a->err, 503, "overloaded_error", "upstream_overloaded", NULL,
			 "%s cut the reply short: insufficient_system_resource", a->x.prov->name);
	log_attempt(d, a, "failed", &a->err, a->span_ms);
	d->last_err = a->err;
	d->excluded_us += (int64_t)(a->span_ms * 1000);
	enum fallback_action next = st->action == FB_GIVE_UP ? st->planned : st->action;
	if (next != FB_NEXT_MODEL && next != FB_RETRY_SAME)
		return;
	note_failed_model(d, a->public_model);
	log_info(rc->id, "%s failed (%s: %s); trying %s%s", a->public_model,
		 failure_kind_name(a->kind), a->err.code ? a->err.code : a->err.type,
		 next == FB_RETRY_SAME ? "it again" : cfg->models[d->chain.model[d->k + 1]].id,
		 st->wait_ms ? " after a pause" : "");
}

/* State "record": the attempt's row in request_attempts. */
static void state_record(struct dispatch *d, const struct fallback_step *st)
{
	struct attempt *a = &d->a;
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
	int gone = wait_watching(d, st->wait_ms) < 0;
	d->excluded_us += clock_mono_us() - t;
	if (gone) {
		d->rc->resp.status = 499;
		return -1;
	}
	return 0;
}

/* State "answer": the reply (a stream is already out), the routed model's refusal, or the final
 * error; then the request's row, committed before the response's last bytes are flushed. */
static void state_answer(struct dispatch *d, const struct fallback_step *st)
{
	struct request_ctx *rc = d->rc;
	struct attempt *a = &d->a;
	if (st->action == FB_ANSWER && a->called) {
		if (!a->x.stream)
			send_reply(a);
	} else if (st->action == FB_ANSWER && a->err.status) {
		/* The routed model's translator refused the request. */
		resp_header(&rc->resp, "X-Router-Overhead-Ms", "%.3f", overhead_now(a));
		resp_error(&rc->resp, &a->err);
	} else if (st->action == FB_GIVE_UP && !d->cancelled) {
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
	d->rc = rc;
	d->call = call;
	rerr_clear(&d->last_err);
	buf_init(&d->fallback_from, 4096);
	buf_init(&d->tried, 4096);
	d->deadline_us = rc->t0_us + cfg->deadline_ms * 1000;
	d->hs = (struct health_source){ health_store, rc };
	if (call->chain)
		d->chain = *call->chain;
	else
		chain_build(cfg, (size_t)(call->model - cfg->models), NULL, &d->chain);
	attempt_init(&d->a, d, 0);
}

static void dispatch_free(struct dispatch *d)
{
	attempt_free(&d->a);
	for (size_t i = 0; i < d->n_log; i++)
		for (size_t j = 0; j < 4; j++)
			free(d->owned[i][j]);
	buf_free(&d->fallback_from);
	buf_free(&d->tried);
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
