/* dispatch.c - one chat completion: translate, call the upstream, relay, account, log.
 *
 * Non-streaming: the upstream body is collected (bounded by upstream.max_response_bytes), then
 * translated and sent with Content-Length. Streaming: the upstream status is known from the head
 * callback; a 2xx body is fed to the relay as it arrives and the client events made from each piece
 * are flushed as soon as that piece is relayed (headers go out with the first event that carries
 * content), a non-2xx body is collected and mapped to an error. While the client is connected and the upstream silent, a ": keep-alive"
 * comment is flushed every upstream.keepalive_interval_ms; a failed write means the client left
 * and the upstream transfer is aborted at once.
 *
 * Timing: X-Router-Overhead-Ms is the router's own share of the latency up to the moment the
 * headers are written - the time before the upstream call started plus the time spent after the
 * upstream delivered what the headers go out with.
 */
#include "dispatch.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "providers/provider.h"
#include "relay.h"
#include "store.h"
#include "toolstate.h"
#include "upstream.h"
#include "util.h"

struct attempt {
	struct request_ctx *rc;
	const struct chat_call *call;
	const struct provider_ops *ops;
	struct xlate_ctx x;
	const char *provider_label;
	struct buf dropped;
	struct upstream_req ureq;
	struct upstream_result ures;
	struct rerr err;
	struct usage usage;        /* non-streaming usage (streams keep theirs in the relay) */
	struct buf body;           /* non-2xx or non-streaming upstream body */
	struct relay relay;
	json_t *response;          /* non-streaming reply sent to the client */
	json_t *tool_state;        /* state of this turn's tool calls to keep (toolstate.h) */
	int relaying;              /* stream with a 2xx head: body goes to the relay */
	long status;
	int64_t t_up_start_us;
	int64_t t_last_byte_us;
	int64_t t_last_write_us;
	double overhead_ms;
	int called;                /* the upstream call was made */
	int unflushed;             /* stream frames written since the last flush */
	int final_pending;         /* the last frame written ends the stream */
	char upstream_request_id[128];
};

static void set_common_headers(struct attempt *a)
{
	struct response *resp = &a->rc->resp;
	resp_header(resp, "X-Router-Model", "%s", a->call->public_model);
	resp_header(resp, "X-Router-Provider", "%s", a->provider_label);
	resp_header(resp, "X-Router-Attempts", "%d", 1);
	if (a->dropped.len)
		resp_header(resp, "X-Router-Dropped-Params", "%s", a->dropped.p);
	if (a->upstream_request_id[0])
		resp_header(resp, "X-Upstream-Request-Id", "%s", a->upstream_request_id);
}

/* Router-owned time so far: before the upstream call, plus since its last byte arrived. */
static double overhead_now(const struct attempt *a)
{
	int64_t now = clock_mono_us();
	int64_t pre = a->t_up_start_us - a->rc->t0_us;
	int64_t post = a->t_last_byte_us ? now - a->t_last_byte_us : 0;
	return (double)(pre + post) / 1000.0;
}

static void send_error(struct attempt *a, const struct rerr *e)
{
	a->overhead_ms = overhead_now(a);
	resp_header(&a->rc->resp, "X-Router-Overhead-Ms", "%.3f", a->overhead_ms);
	resp_error(&a->rc->resp, e);
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
		return -1;
	}
	return 0;
}

static int on_tick(void *ud)
{
	struct attempt *a = ud;
	struct response *resp = &a->rc->resp;
	const struct config *cfg = a->rc->cfg;
	if (!a->relaying || !resp->started || cfg->keepalive_interval_ms <= 0)
		return 0;
	int64_t now = clock_mono_us();
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
	/* The final frame stays buffered until the log row is committed (server_commit_log). */
	static const char done[] = "data: [DONE]\n\n";
	a->final_pending = n >= sizeof(done) - 1 &&
			   memcmp(p + n - (sizeof(done) - 1), done, sizeof(done) - 1) == 0;
	return 0;
}

/* ---- the call ---- */

static void run_nonstream(struct attempt *a)
{
	struct upstream_cb cb = { on_head, on_body, on_tick, a };
	const struct config *cfg = a->rc->cfg;
	struct upstream_opts opts = {
		.connect_timeout_ms = (long)cfg->connect_timeout_ms,
		.timeout_ms = (long)cfg->timeout_ms,
		.idle_timeout_ms = 0,
		.proxy = cfg->proxy,
		.ca_file = cfg->ca_file,
	};
	a->t_up_start_us = clock_mono_us();
	a->called = 1;
	int rc = upstream_perform(a->rc->w->up, &a->ureq, &opts, &cb, &a->ures);
	a->t_last_byte_us = clock_mono_us();
	if (rc < 0) {
		if (!a->err.status)
			map_transport_failure(a, &a->err);
		send_error(a, &a->err);
		return;
	}
	if (a->ures.status < 200 || a->ures.status >= 300) {
		a->ops->map_error(&a->x, a->ures.status, a->body.p ? a->body.p : "", a->body.len,
				  a->ures.retry_after, &a->err);
		send_error(a, &a->err);
		return;
	}
	if (relay_response(a->ops, &a->x, a->body.p ? a->body.p : "", a->body.len, &a->response,
			   &a->usage, &a->err) < 0) {
		send_error(a, &a->err);
		return;
	}
	const json_t *choices = json_object_get(a->response, "choices");
	const json_t *c0 = json_array_get(choices, 0);
	const char *fr = json_string_value(json_object_get(c0, "finish_reason"));
	if (fr)
		a->rc->log.finish_reason = fr;
	a->overhead_ms = overhead_now(a);
	set_common_headers(a);
	resp_header(&a->rc->resp, "X-Router-Overhead-Ms", "%.3f", a->overhead_ms);
	resp_json(&a->rc->resp, 200, a->response);
}

static void run_stream(struct attempt *a)
{
	struct upstream_cb cb = { on_head, on_body, on_tick, a };
	const struct config *cfg = a->rc->cfg;
	struct upstream_opts opts = {
		.connect_timeout_ms = (long)cfg->connect_timeout_ms,
		.timeout_ms = (long)cfg->timeout_ms,
		.idle_timeout_ms = (long)cfg->stream_idle_timeout_ms,
		.proxy = cfg->proxy,
		.ca_file = cfg->ca_file,
	};
	a->t_up_start_us = clock_mono_us();
	a->called = 1;
	int rc = upstream_perform(a->rc->w->up, &a->ureq, &opts, &cb, &a->ures);
	struct relay *r = &a->relay;
	if (!a->relaying) {
		if (rc < 0) {
			if (!a->err.status)
				map_transport_failure(a, &a->err);
		} else {
			a->ops->map_error(&a->x, a->ures.status, a->body.p ? a->body.p : "", a->body.len,
					  a->ures.retry_after, &a->err);
		}
		send_error(a, &a->err);
		return;
	}
	if (rc < 0 && r->state == RELAY_RUNNING) {
		struct rerr e;
		rerr_clear(&e);
		map_transport_failure(a, &e);
		relay_fail(r, &e);
	} else if (rc == 0) {
		relay_finish(r);
	}
	if (r->state == RELAY_FAILED) {
		a->err = r->err;
		if (relay_started(r))
			relay_emit_error(r);
		else
			send_error(a, &a->err);
	}
	if (a->unflushed && !a->final_pending && resp_flush(&a->rc->resp) < 0)
		r->state = RELAY_CLIENT_GONE;
	if (r->first_content_us)
		a->rc->log.ttft_ms = (double)(r->first_content_us - a->rc->t0_us) / 1000.0;
	if (r->finish_reason[0])
		a->rc->log.finish_reason = r->finish_reason;
}

static json_t *lookup_state(void *ud, const char *tool_call_id)
{
	struct request_ctx *rc = ud;
	struct store *st = server_reader(rc);
	return st ? store_tool_state(st, tool_call_id) : NULL;
}

static void fill_log(struct attempt *a, const struct usage *u)
{
	struct reqlog *l = &a->rc->log;
	l->model = a->call->public_model;
	l->provider = a->provider_label;
	l->upstream_model = a->x.upstream_model;
	l->attempts = 1;
	l->dropped_params = a->dropped.len ? a->dropped.p : NULL;
	l->upstream_request_id = a->upstream_request_id;
	if (a->called)
		l->upstream_ms = a->ures.total_ms;
	if (u->have) {
		l->input_tokens = u->prompt;
		l->output_tokens = u->completion;
		l->cached_tokens = u->cached;
		l->cache_write_tokens = u->cache_write;
		l->reasoning_tokens = u->reasoning;
	}
	l->cost_nusd = usage_cost_nusd(u, a->call->model, &l->cost_source);
	const json_t *turn = NULL;
	if (a->response)
		turn = json_object_get(json_array_get(json_object_get(a->response, "choices"), 0), "message");
	else if (a->relay.ops)
		turn = relay_turn(&a->relay);
	if (turn && !a->err.status)
		a->tool_state = toolstate_from_message(turn, a->x.prov);
	l->tool_state = a->tool_state;
	if (a->err.status) {
		l->error_type = a->err.type;
		l->error_code = a->err.code;
		l->error_message = a->err.message;
	} else if (a->relay.state == RELAY_CLIENT_GONE) {
		l->error_type = "client_disconnected";
	}
}

void dispatch_chat(struct request_ctx *rc, const struct chat_call *call)
{
	const struct config *cfg = rc->cfg;
	struct attempt a;
	memset(&a, 0, sizeof(a));
	a.rc = rc;
	a.call = call;
	rerr_clear(&a.err);
	usage_init(&a.usage);
	buf_init(&a.dropped, 4096);
	buf_init(&a.body, (size_t)cfg->max_response_bytes);
	const struct model_conf *m = call->model;
	const struct provider_conf *p = &cfg->providers[m->provider];
	char label[96];
	snprintf(label, sizeof(label), "%s%s", p->demo ? "demo:" : "", p->name);
	a.provider_label = label;
	a.x = (struct xlate_ctx){
		.cfg = cfg,
		.prov = p,
		.model = m,
		.upstream_model = call->upstream_model,
		.public_model = call->public_model,
		.id = rc->id,
		.created = rc->t0_wall_ms / 1000,
		.stream = call->req.stream,
		.include_usage = call->req.include_usage,
	};
	a.ops = provider_ops_for(p->api);
	int relay_ready = 0;

	if (!p->available) {
		rerr_set(&a.err, 503, "provider_unavailable", "provider_unavailable", "model",
			 "Model %s is unavailable: provider %s has no API key (%s).", call->public_model,
			 p->name, p->unavailable_reason ? p->unavailable_reason : "not configured");
		send_error(&a, &a.err);
		goto out;
	}
	if (!a.ops) {
		rerr_set(&a.err, 503, "provider_unavailable", "adapter_unavailable", "model",
			 "Model %s is unavailable: this build has no adapter for the %s API.",
			 call->public_model, provider_api_name(p->api));
		send_error(&a, &a.err);
		goto out;
	}
	a.t_up_start_us = clock_mono_us();
	/* A client that dropped the extension fields of an earlier tool-call turn gets them back. */
	json_t *restored = toolstate_restore(call->body, p, lookup_state, rc);
	int built = a.ops->build_request(&a.x, restored ? restored : call->body, &a.ureq, &a.dropped,
					 &a.err);
	json_decref(restored);
	if (built < 0) {
		send_error(&a, &a.err);
		goto out;
	}
	if (a.x.stream) {
		struct relay_sink sink = { stream_sink, &a };
		relay_init(&a.relay, a.ops, &a.x, &sink);
		relay_ready = 1;
		run_stream(&a);
	} else {
		run_nonstream(&a);
	}
out:
	if (a.dropped.len)
		log_info(rc->id, "parameters dropped for %s: %s", call->public_model, a.dropped.p);
	fill_log(&a, relay_ready ? &a.relay.usage : &a.usage);
	server_commit_log(rc);
	if (relay_ready)
		relay_free(&a.relay);
	json_decref(a.response);
	json_decref(a.tool_state);
	usage_clear(&a.usage);
	upstream_req_free(&a.ureq);
	buf_free(&a.body);
	buf_free(&a.dropped);
}
