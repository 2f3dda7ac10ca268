/* attempt.c - one attempt of a chat completion: build, call, relay (see attempt.h).
 *
 * Non-streaming: the upstream body is collected (bounded by upstream.max_response_bytes), then
 * translated; the walk sends it with Content-Length. Streaming: the upstream status is known from
 * the head callback; a 2xx body is fed to the relay as it arrives and the client events made from
 * each piece are flushed as soon as that piece is relayed (headers go out with the first event that
 * carries content, so until then another model can still answer). While the client is connected
 * and the upstream silent, a ": keep-alive" comment is flushed every
 * upstream.keepalive_interval_ms. The client's connection is watched during every upstream wait
 * and every backoff: when the client leaves, the upstream transfer is aborted at once and
 * s->cancelled is set. The final frame of a stream stays buffered until the walk has committed
 * the request's row.
 */
#include "attempt.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "jsonx.h"
#include "memgauge.h"
#include "store.h"
#include "toolstate.h"
#include "util.h"

static void set_common_headers(struct attempt *a)
{
	struct response *resp = &a->rc->resp;
	resp_header(resp, "X-Router-Model", "%s", a->public_model);
	resp_header(resp, "X-Router-Provider", "%s", a->provider_label);
	resp_header(resp, "X-Router-Attempts", "%d", a->s->calls);
	if (a->s->fallback_from.len)
		resp_header(resp, "X-Router-Fallback-From", "%s", a->s->fallback_from.p);
	if (a->dropped.len)
		resp_header(resp, "X-Router-Dropped-Params", "%s", a->dropped.p);
	if (a->upstream_request_id[0])
		resp_header(resp, "X-Upstream-Request-Id", "%s", a->upstream_request_id);
	if (a->usage.estimated)
		resp_header(resp, "X-Router-Usage-Estimated", "true");
}

/* The upstream's share of this attempt so far. */
int64_t attempt_upstream_span_us(const struct attempt *a, int64_t now)
{
	if (!a->called)
		return 0;
	return (a->t_last_byte_us ? a->t_last_byte_us : now) - a->t_up_start_us;
}

/* Router-owned time so far: everything but upstream calls and waits between attempts. */
double attempt_overhead_ms(const struct attempt *a)
{
	int64_t now = clock_mono_us();
	int64_t own = now - a->rc->t0_us - a->s->excluded_us - attempt_upstream_span_us(a, now);
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
	case UPSTREAM_DEADLINE:
		rerr_set(e, 504, "timeout_error", "deadline_exceeded", NULL,
			 "The reply of provider %s was cut at upstream.deadline_ms (%lld ms after the "
			 "request arrived)", prov, (long long)a->rc->cfg->deadline_ms);
		break;
	default:
		rerr_set(e, 502, "server_error", "bad_upstream_response", NULL,
			 "The connection to provider %s failed: %s", prov, a->ures.error);
		break;
	}
	e->should_retry = 1;
}

/* A growth of this attempt (its reply, a stream event, their parse) was refused because the
 * process's calls in flight hold server.call_memory_mb: the attempt fails as for a reply past its
 * own bounds, but the message names the process's limit, not the provider's reply. */
static void blame_call_memory(const struct attempt *a, struct rerr *e)
{
	if (!memgauge_refused() || a->transport_failed)
		return;
	rerr_set(e, 502, "server_error", "bad_upstream_response", NULL,
		 "The reply of provider %s could not be held: the router's calls in flight hold its "
		 "limit of memory (server.call_memory_mb = %zu MB)", a->x.prov->name,
		 memgauge_cap() >> 20);
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

/* What the pieces relayed so far carried, for upstream.c's timers: data when the relay turned an
 * event into something for the client since the last piece, content once the first content event
 * came. Comments and keep-alives are neither. */
static int stream_progress(struct attempt *a, int64_t events_before)
{
	int got = 0;
	if (a->relay.progress_events != events_before)
		got |= UPSTREAM_PROGRESS_DATA;
	if (a->relay.first_content_us || a->relay.state == RELAY_DONE)
		got |= UPSTREAM_PROGRESS_CONTENT;
	return got;
}

static int on_body(void *ud, const char *p, size_t n)
{
	struct attempt *a = ud;
	a->t_last_byte_us = clock_mono_us();
	if (a->relaying) {
		int64_t before = a->relay.progress_events;
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
			return stream_progress(a, before);
		/* After the end of the stream, let the rest of the body drain so the connection can be
		 * reused; stop at once when the client left or the stream failed. */
		return a->relay.state == RELAY_DONE ? UPSTREAM_PROGRESS_DATA | UPSTREAM_PROGRESS_CONTENT
						    : -1;
	}
	if (buf_append(&a->body, p, n) < 0) {
		rerr_set(&a->err, 502, "server_error", "bad_upstream_response", NULL,
			 "Provider %s sent a reply larger than %zu bytes", a->x.prov->name, a->body.max);
		a->malformed = 1;
		return -1;
	}
	/* A whole reply (or an error body) is bounded by timeout_ms: never content. */
	return UPSTREAM_PROGRESS_DATA;
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
		struct attempt_shared *s = a->s;
		if (!s->t_heartbeat_us)
			s->t_heartbeat_us = now;
		if (io->heartbeat && now - s->t_heartbeat_us >= cfg->keepalive_interval_ms * 1000) {
			s->t_heartbeat_us = now;
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
static int client_check(struct attempt_shared *s)
{
	const struct http_io *io = s->rc->req.io;
	int g = io->peer_gone ? io->peer_gone(io->ctx) : 0;
	/* Something that stays readable without meaning anything would wake every wait. */
	if (g == 2 && ++s->watch_wakeups > 8)
		g = 0;
	if (g == 1) {
		s->cancelled = 1;
		s->rc->resp.client_gone = 1;
		return -1;
	}
	return g == 2 ? 1 : 0;
}

static int on_watch(void *ud)
{
	struct attempt *a = ud;
	int w = client_check(a->s);
	if (w < 0 && a->relay_ready)
		a->relay.state = RELAY_CLIENT_GONE;
	return w;
}

static int client_fd(const struct attempt_shared *s)
{
	const struct http_io *io = s->rc->req.io;
	return io->peer_fd ? io->peer_fd(io->ctx) : -1;
}

/* The head of a stream, once: the router's headers and the event-stream type. */
static int stream_begin(struct attempt *a)
{
	struct response *resp = &a->rc->resp;
	if (resp->started)
		return 0;
	a->overhead_ms = attempt_overhead_ms(a);
	set_common_headers(a);
	resp_header(resp, "X-Router-Overhead-Ms", "%.3f", a->overhead_ms);
	resp_header(resp, "Cache-Control", "no-cache");
	resp_header(resp, "X-Accel-Buffering", "no");
	return resp_begin(resp, 200, "text/event-stream");
}

static int responses_write(struct attempt *a, const char *p, size_t n);

static int stream_sink(void *ud, const char *p, size_t n)
{
	struct attempt *a = ud;
	struct response *resp = &a->rc->resp;
	if (a->call->responses)
		return responses_write(a, p, n);
	if (stream_begin(a) < 0)
		return -1;
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

/* ---- POST /v1/responses: the relay's chat frames as the Responses API's events ---- */

/* The sink of a Responses stream (respx_frames). Once the terminal event is made, the final
 * response is kept (rs->keep) before it is written; it is the final frame (held until the log row
 * commits). */
static int responses_write(struct attempt *a, const char *p, size_t n)
{
	struct response *resp = &a->rc->resp;
	const struct resp_call *rs = a->call->responses;
	struct buf out;
	buf_init(&out, BUF_UNLIMITED);
	if (!a->resp_stream)
		a->resp_stream = respx_stream_new(rs->body, rs->id, rs->created_at);
	if (respx_frames(a->resp_stream, p, n, &a->resp_done, &out) && rs->keep) {
		json_t *final = respx_stream_response(a->resp_stream);
		rs->keep(rs->ud, final);
		json_decref(final);
	}
	int rc = stream_begin(a);
	if (rc == 0 && out.len)
		rc = resp_write(resp, out.p, out.len);
	buf_free(&out);
	if (rc < 0)
		return -1;
	a->t_last_write_us = clock_mono_us();
	a->unflushed = 1;
	a->final_pending = a->resp_done;
	return 0;
}

/* ---- one attempt ---- */

static void upstream_opts_for(struct attempt *a, struct upstream_opts *o)
{
	const struct config *cfg = a->rc->cfg;
	int64_t left_ms = (a->s->deadline_us - clock_mono_us()) / 1000;
	if (left_ms < 1)
		left_ms = 1;
	memset(o, 0, sizeof(*o));
	o->connect_timeout_ms = (long)(cfg->connect_timeout_ms < left_ms ? cfg->connect_timeout_ms : left_ms);
	o->timeout_ms = (long)(cfg->timeout_ms < left_ms ? cfg->timeout_ms : left_ms);
	o->idle_timeout_ms = a->x.stream ? (long)cfg->stream_idle_timeout_ms : 0;
	o->total_ms = (long)left_ms;
	o->proxy = cfg->proxy_url;
	o->proxy_user = cfg->proxy_user;
	o->proxy_password = cfg->proxy_password;
	o->ca_file = cfg->ca_file;
	o->watch_fd = client_fd(a->s);
}

/* Makes the upstream call with this attempt's callbacks and bounds; upstream_perform's result. */
static int call_upstream(struct attempt *a)
{
	struct upstream_cb cb = { on_head, on_body, on_tick, on_watch, a };
	struct upstream_opts opts;
	upstream_opts_for(a, &opts);
	a->t_up_start_us = clock_mono_us();
	a->called = 1;
	int rc = upstream_perform(a->rc->w->up, &a->ureq, &opts, &cb, &a->ures);
	/* Each request libcurl sent again by itself reached the provider: one more call. */
	a->s->calls += a->ures.resends;
	return rc;
}

static enum attempt_result run_nonstream(struct attempt *a)
{
	int rc = call_upstream(a);
	a->t_last_byte_us = clock_mono_us();
	if (a->s->cancelled)
		return ATTEMPT_CANCELLED;
	if (rc < 0) {
		if (!a->err.status) {
			map_transport_failure(a, &a->err);
			a->transport_failed = 1;
		}
		blame_call_memory(a, &a->err);
		return ATTEMPT_FAILED;
	}
	if (a->ures.status < 200 || a->ures.status >= 300) {
		a->ops->map_error(&a->x, a->ures.status, a->body.p ? a->body.p : "", a->body.len,
				  a->ures.retry_after, &a->err);
		return ATTEMPT_FAILED;
	}
	if (a->call->embed)
		return ATTEMPT_ANSWERED;       /* run_embed reads the reply */
	if (relay_response(a->ops, &a->x, a->body.p ? a->body.p : "", a->body.len, &a->response,
			   &a->usage, &a->err) < 0) {
		a->malformed = 1;
		blame_call_memory(a, &a->err);
		return ATTEMPT_FAILED;
	}
	return ATTEMPT_ANSWERED;
}

/* An embeddings call: one upstream call per slice of the inputs the provider takes at once
 * (embed_chunk), the vectors put together in input order as the text of the reply (a->embed_text).
 * One failed slice fails the attempt; a reply too large for the router is refused (413), not
 * retried. */
static enum attempt_result run_embed(struct attempt *a)
{
	const struct embedreq *r = a->call->embed;
	size_t per = embed_chunk(&a->x, r->n);
	struct buf items;
	buf_init(&items, 2 * (size_t)a->rc->cfg->max_response_bytes);
	int64_t t_first = 0;
	enum attempt_result res = ATTEMPT_ANSWERED;
	for (size_t from = 0; from < r->n && res == ATTEMPT_ANSWERED; from += per) {
		size_t count = r->n - from < per ? r->n - from : per;
		if (from > 0) {
			upstream_req_free(&a->ureq);
			memset(&a->ureq, 0, sizeof(a->ureq));
			buf_reset(&a->body);
			if (embed_build_request(&a->x, a->call->body, r, from, count, &a->ureq,
						&a->dropped, &a->err) < 0) {
				res = ATTEMPT_REFUSED;
				break;
			}
		}
		res = run_nonstream(a);
		if (!t_first)
			t_first = a->t_up_start_us;
		a->t_up_start_us = t_first;    /* the attempt's upstream span covers every slice */
		if (res == ATTEMPT_ANSWERED &&
		    embed_parse_reply(&a->x, r, a->call->body, a->body.p ? a->body.p : "", a->body.len,
				      from, count, &items, &a->usage, &a->err) < 0) {
			/* An unusable reply may be worth a retry; one too large to hold is not. */
			a->malformed = a->err.status == 502;
			res = a->malformed ? ATTEMPT_FAILED : ATTEMPT_REFUSED;
		}
	}
	if (res == ATTEMPT_ANSWERED) {
		embed_response_text(&a->x, &items, &a->usage, &a->embed_text);
		a->response = json_object();    /* answered; the reply is a->embed_text */
	}
	buf_free(&items);
	return res;
}

/* A non-streaming reply that the provider cut short for lack of capacity (DeepSeek's
 * insufficient_system_resource) is worth another model when one is left. */
int attempt_reply_overloaded(const struct attempt *a)
{
	const json_t *c0 = json_array_get(json_object_get(a->response, "choices"), 0);
	const char *raw = json_string_value(json_object_get(c0, "provider_finish_reason"));
	return raw && strcmp(raw, "insufficient_system_resource") == 0;
}

void attempt_send_reply(struct attempt *a)
{
	const json_t *c0 = json_array_get(json_object_get(a->response, "choices"), 0);
	const char *fr = json_string_value(json_object_get(c0, "finish_reason"));
	if (fr)
		a->rc->log.finish_reason = fr;
	a->overhead_ms = attempt_overhead_ms(a);
	set_common_headers(a);
	resp_header(&a->rc->resp, "X-Router-Overhead-Ms", "%.3f", a->overhead_ms);
	const struct resp_call *rs = a->call->responses;
	if (a->call->embed) {
		resp_json_text(&a->rc->resp, 200, a->embed_text.p, a->embed_text.len);
	} else if (rs) {
		json_t *r = respx_from_chat(rs->body, a->response, rs->id, rs->created_at);
		if (rs->keep)
			rs->keep(rs->ud, r);
		resp_json(&a->rc->resp, 200, r);
		json_decref(r);
	} else {
		resp_json(&a->rc->resp, 200, a->response);
	}
}

static enum attempt_result run_stream(struct attempt *a)
{
	int rc = call_upstream(a);
	if (!a->t_last_byte_us)
		a->t_last_byte_us = clock_mono_us();
	struct relay *r = &a->relay;
	if (a->s->cancelled || r->state == RELAY_CLIENT_GONE) {
		a->s->cancelled = 1;
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
		blame_call_memory(a, &a->err);
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
	if (r->state == RELAY_FAILED)
		blame_call_memory(a, &r->err);
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
	/* Only the calling agent's own state ('' for anonymous callers): the row that kept it was
	 * logged with the same rc->log.agent. */
	return st ? store_tool_state(st, rc->log.agent ? rc->log.agent : "", tool_call_id) : NULL;
}

void attempt_init(struct attempt *a, struct attempt_shared *s, size_t model, int routed)
{
	struct request_ctx *rc = s->rc;
	const struct config *cfg = rc->cfg;
	const struct chat_call *call = s->call;
	memset(a, 0, sizeof(*a));
	a->s = s;
	a->rc = rc;
	a->call = call;
	rerr_clear(&a->err);
	usage_init(&a->usage);
	buf_init(&a->dropped, 4096);
	buf_init(&a->body, (size_t)cfg->max_response_bytes);
	buf_init(&a->embed_text, BUF_UNLIMITED);
	if (call->dropped && call->dropped[0])
		buf_puts(&a->dropped, call->dropped);
	a->model = &cfg->models[model];
	/* The routed model keeps the id the client used (a pass-through route's full id). */
	const char *upstream_model = routed ? call->upstream_model : a->model->upstream;
	a->public_model = routed ? call->public_model : a->model->id;
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
		.embed = call->embed != NULL,
	};
	a->ops = provider_ops_for(p->api);
	a->ts_start_ms = clock_wall_ms();
}

void attempt_free(struct attempt *a)
{
	if (a->relay_ready)
		relay_free(&a->relay);
	a->relay_ready = 0;
	json_decref(a->response);
	a->response = NULL;
	buf_free(&a->embed_text);
	if (a->resp_stream)
		respx_stream_free(a->resp_stream);
	a->resp_stream = NULL;
	json_decref(a->tool_state);
	a->tool_state = NULL;
	usage_clear(&a->usage);
	upstream_req_free(&a->ureq);
	buf_free(&a->body);
	buf_free(&a->dropped);
}

/* Sleeps ms while watching the client. Returns -1 when the client left. */
int attempt_wait_watching(struct attempt_shared *s, int64_t ms)
{
	int64_t end = clock_mono_us() + ms * 1000;
	int fd = client_fd(s);
	for (;;) {
		int64_t left = (end - clock_mono_us()) / 1000;
		if (left <= 0)
			return 0;
		struct pollfd p = { .fd = fd, .events = POLLIN, .revents = 0 };
		int n = poll(fd >= 0 ? &p : NULL, fd >= 0 ? 1 : 0, (int)left);
		if (n > 0 && p.revents) {
			int w = client_check(s);
			if (w < 0)
				return -1;
			if (w == 0)
				fd = -1;
		}
	}
}

/* Calls the attempt's model: builds the upstream request (restoring tool-call state the client
 * dropped) and runs it, streaming or not. A streamed answer has reached the client by the time it
 * returns ATTEMPT_ANSWERED; a non-streaming one is in a->response. */
enum attempt_result attempt_run(struct attempt *a)
{
	struct attempt_shared *s = a->s;
	struct request_ctx *rc = a->rc;
	const struct provider_conf *p = a->x.prov;
	if (!a->ops) {
		rerr_set(&a->err, 503, "provider_unavailable", "adapter_unavailable", "model",
			 "Model %s is unavailable: this build has no adapter for the %s API.",
			 a->public_model, provider_api_name(p->api));
		return ATTEMPT_NO_ADAPTER;
	}
	/* A refusal of the gauge of call memory from here on is this attempt's (blame_call_memory). */
	memgauge_clear();
	int built;
	if (a->call->embed) {
		built = embed_build_request(&a->x, a->call->body, a->call->embed, 0,
					    embed_chunk(&a->x, a->call->embed->n), &a->ureq, &a->dropped,
					    &a->err);
	} else {
		/* A client that dropped the extension fields of an earlier tool-call turn gets
		 * them back. */
		json_t *restored = toolstate_restore(a->call->body, p, lookup_state, rc);
		built = a->ops->build_request(&a->x, restored ? restored : a->call->body, &a->ureq,
					      &a->dropped, &a->err);
		json_decref(restored);
	}
	/* No database connection is held through the upstream call. */
	reqctx_reader_release(rc);
	if (built < 0)
		return ATTEMPT_REFUSED;
	s->calls++;
	if (s->tried.len)
		buf_puts(&s->tried, ", ");
	buf_puts(&s->tried, a->public_model);
	if (a->call->embed)
		return run_embed(a);
	if (a->x.stream) {
		struct relay_sink sink = { stream_sink, a };
		relay_init(&a->relay, a->ops, &a->x, &sink);
		/* The output cap, when the upstream request carries a bound (else none: the
		 * upstream's own default applies). */
		int sent;
		int64_t bound = provider_output_bound(rc->cfg, a->model, a->call->body, &sent);
		a->relay.max_out_tokens = sent ? bound : 0;
		a->relay_ready = 1;
		return run_stream(a);
	}
	return run_nonstream(a);
}

