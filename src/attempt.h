/* attempt.h - one attempt of a chat completion: translate, call the upstream, relay the reply.
 *
 * dispatch.c's walk makes one struct attempt per chain position it calls (or passes over) and
 * runs it with attempt_run(): the provider's translator builds the upstream request, the blocking
 * call runs on the worker's libcurl handle, and the reply is relayed - a stream event by event as
 * it arrives, a whole reply kept in a->response for attempt_send_reply(). What the attempts of one
 * request share (calls made, models that failed, the deadline, whether the client left) is a
 * struct attempt_shared that the walk owns. An attempt decides nothing about what comes next:
 * that is fallback_decide()'s (fallback.h).
 */
#ifndef ROUTER_ATTEMPT_H
#define ROUTER_ATTEMPT_H

#include <jansson.h>
#include <stdint.h>

#include "buf.h"
#include "chatreq.h"
#include "embedreq.h"
#include "fallback.h"
#include "providers/provider.h"
#include "relay.h"
#include "respx.h"
#include "reqctx.h"
#include "upstream.h"

/* A POST /v1/responses call: its chat request goes the same way, and the reply is translated back
 * (respx.h) as it is sent. keep() gets the final Response object before its last bytes are
 * flushed (stored responses: a client that asks for it at once finds it). */
struct resp_call {
	const json_t *body;              /* the Responses request (borrowed) */
	char id[64];                     /* "resp_..." */
	int64_t created_at;              /* unix seconds */
	void (*keep)(void *ud, const json_t *response);
	void *ud;
};

/* A validated request on its way to the upstream (api_chat.c fills it, dispatch walks it). */
struct chat_call {
	json_t *body;                    /* the client's request (borrowed) */
	struct chatreq req;
	const struct model_conf *model;  /* resolved route */
	const char *upstream_model;      /* upstream id to send */
	const char *public_model;        /* id shown to the client */
	const struct chain *chain;       /* models to try, routed model first */
	const struct embedreq *embed;    /* an embeddings request (POST /v1/embeddings), else NULL */
	struct resp_call *responses;     /* POST /v1/responses, else NULL */
	const char *dropped;             /* request fields already left out before translation
					  * (comma-separated; NULL for none): every attempt names them */
	unsigned needs;                  /* chatreq_needs(): a chain model that cannot honour them
					  * is passed over */
	int64_t max_cost_nusd;           /* the budget estimate when it is an upper bound (every
					  * request carries an output bound): the charge is capped
					  * at it; 0 = no cap */
};

/* What the attempts of one request share; owned by the walk (dispatch.c). */
struct attempt_shared {
	struct request_ctx *rc;
	const struct chat_call *call;
	int calls;                     /* upstream calls made */
	struct buf fallback_from;      /* models that failed or were skipped, in order */
	struct buf tried;              /* models called, for the final error */
	int cancelled;                 /* the client left */
	int watch_wakeups;             /* the client's connection was readable, the client still there */
	int64_t deadline_us;
	int64_t excluded_us;           /* upstream time of finished attempts, and waits */
	int64_t t_heartbeat_us;        /* last heartbeat to the web server (nothing sent yet) */
};

/* How attempt_run ended. */
enum attempt_result {
	ATTEMPT_ANSWERED,     /* the reply went (or, non-streaming, is ready to go) to the client */
	ATTEMPT_FAILED,       /* nothing reached the client; a->err says why */
	ATTEMPT_NO_ADAPTER,   /* no call: this build cannot speak the provider's API */
	ATTEMPT_REFUSED,      /* no call: the translator refused the request (a->err) */
	ATTEMPT_CANCELLED,    /* the client left before anything was sent */
};

struct attempt {
	struct attempt_shared *s;
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
	struct buf embed_text;     /* an embeddings reply: its JSON text (response is then {}) */
	struct respx_stream *resp_stream;   /* a Responses stream: its events (respx.h) */
	int resp_done;             /* its terminal event is written */
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


/* Prepares an attempt at configured model index `model`; routed: it is the model the request was
 * routed to, which keeps the id (and upstream id) the client used. s is borrowed for the
 * attempt's life. Release with attempt_free. */
void attempt_init(struct attempt *a, struct attempt_shared *s, size_t model, int routed);
void attempt_free(struct attempt *a);

/* Builds the upstream request (restoring tool-call state the client dropped) and calls the
 * upstream, counting the call in s->calls and s->tried. A streamed answer has reached the client
 * when it returns ATTEMPT_ANSWERED; a non-streaming one is in a->response. */
enum attempt_result attempt_run(struct attempt *a);

/* A non-streaming reply cut short for lack of capacity (DeepSeek's insufficient_system_resource). */
int attempt_reply_overloaded(const struct attempt *a);
/* Sends a->response with the router's headers. */
void attempt_send_reply(struct attempt *a);

/* The upstream's share of the attempt up to now (0 before the call). */
int64_t attempt_upstream_span_us(const struct attempt *a, int64_t now);
/* Router-owned time so far (ms): everything but upstream calls and the waits between attempts. */
double attempt_overhead_ms(const struct attempt *a);

/* Sleeps ms while watching the client's connection. Returns -1 when the client left (then
 * s->cancelled is set). */
int attempt_wait_watching(struct attempt_shared *s, int64_t ms);

#endif
