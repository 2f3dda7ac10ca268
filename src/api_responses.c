/* api_responses.c - the Responses API's own part: what POST /v1/responses needs before it goes the
 * chat way (api_chat.c) - the conversation a previous_response_id continues, item references, the
 * chat request (respx.h) - and stored responses: kept once answered (store true, the default),
 * GET /v1/responses/{id}, GET .../input_items, DELETE, POST .../cancel. A stored response is the
 * Response object as last sent and the request's input items, visible only to the agent that
 * made it (another agent's id is not found).
 */
#include "api_responses.h"

#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth.h"
#include "chatreq.h"
#include "jsonx.h"
#include "log.h"
#include "store.h"
#include "util.h"

/* The longest previous_response_id chain followed. */
#define RESPONSES_MAX_DEPTH 1000

static const char *agent_key(const char *agent)
{
	return agent ? agent : "";
}

/* The response id an item id belongs to ("msg_<hex>_<n>", "fc_<hex>_in<n>" -> "resp_<hex>"). */
static int response_of_item(const char *item_id, char *out, size_t outsz)
{
	const char *a = item_id ? strchr(item_id, '_') : NULL;
	const char *b = a ? strchr(a + 1, '_') : NULL;
	if (!b || b == a + 1)
		return -1;
	snprintf(out, outsz, "resp_%.*s", (int)(b - a - 1), a + 1);
	return 0;
}

static json_t *load_json(const char *text)
{
	json_error_t je;
	return text ? json_loads(text, 0, &je) : NULL;
}

static int db_error(struct rerr *err)
{
	err->retry_after = 5;
	err->should_retry = 1;
	return rerr_set(err, 503, "server_error", "database_unavailable", NULL,
			"The router cannot read its stored responses right now. Retry later.");
}

/* context(P) = context(P.previous) + P.input_items + P.output, oldest first. */
static json_t *context_of(struct store *st, const char *prev, const char *agent, struct rerr *err)
{
	json_t *records = json_array();        /* newest first */
	char *id = xstrdup(prev);
	for (int depth = 0; id && depth < RESPONSES_MAX_DEPTH; depth++) {
		struct stored_response r;
		int rc = st ? store_response_get(st, id, agent_key(agent), &r) : -1;
		if (rc != 0) {
			if (depth == 0 && rc > 0)
				rerr_set(err, 400, "invalid_request_error", "previous_response_not_found",
					 "previous_response_id", "Previous response with id '%s' not found.",
					 id);
			else if (depth == 0 || rc < 0)
				db_error(err);
			free(id);
			if (depth == 0 || rc < 0) {
				json_decref(records);
				return NULL;
			}
			break;           /* an older one is gone (deleted, retention): the rest stands */
		}
		json_t *resp = load_json(r.response);
		json_t *rec = json_pack("{s:o?, s:O?}", "in", load_json(r.input_items), "out",
					json_object_get(resp, "output"));
		json_decref(resp);
		json_array_insert_new(records, 0, rec);
		free(id);
		id = r.previous_id ? xstrdup(r.previous_id) : NULL;
		store_response_free(&r);
	}
	free(id);
	json_t *items = json_array();
	size_t i;
	json_t *rec;
	json_array_foreach(records, i, rec)
	{
		json_t *in = json_object_get(rec, "in"), *out = json_object_get(rec, "out");
		if (json_is_array(in))
			json_array_extend(items, in);
		if (json_is_array(out))
			json_array_extend(items, out);
	}
	json_decref(records);
	return items;
}

/* The item with this id among items, or NULL (borrowed). */
static json_t *find_item(const json_t *items, const char *id)
{
	size_t i;
	json_t *it;
	json_array_foreach(items, i, it)
	{
		const char *x = json_string_value(json_object_get(it, "id"));
		if (x && id && strcmp(x, id) == 0)
			return it;
	}
	return NULL;
}

/* A stored item by id: from the context, else from the stored response its id names (same
 * agent). New reference, or NULL. */
static json_t *stored_item(struct store *st, const char *agent, const json_t *context, const char *id)
{
	json_t *it = find_item(context, id);
	if (it)
		return json_incref(it);
	char rid[96];
	struct stored_response r;
	if (!st || response_of_item(id, rid, sizeof(rid)) < 0 ||
	    store_response_get(st, rid, agent_key(agent), &r) != 0)
		return NULL;
	json_t *in = load_json(r.input_items), *resp = load_json(r.response);
	it = find_item(in, id);
	if (!it)
		it = find_item(json_object_get(resp, "output"), id);
	json_incref(it);
	json_decref(in);
	json_decref(resp);
	store_response_free(&r);
	return it;
}

/* body.input with item_reference items resolved and the items the context already holds (a
 * client re-sending the conversation with previous_response_id) left out. The referenced items
 * are input as the body is: together they may come to max_bytes (server.max_body_bytes), so that
 * a small body naming a large item many times cannot grow a request without bound. */
static int resolve_input(struct store *st, const char *agent, const json_t *context, json_t *body,
			 size_t max_bytes, struct rerr *err)
{
	json_t *input = json_object_get(body, "input");
	if (!json_is_array(input))
		return 0;
	json_t *out = json_array();
	size_t i, referenced = 0;
	json_t *it;
	json_array_foreach(input, i, it)
	{
		const char *type = json_string_value(json_object_get(it, "type"));
		const char *id = json_string_value(json_object_get(it, "id"));
		if (type && strcmp(type, "item_reference") == 0) {
			json_t *found = stored_item(st, agent, context, id);
			if (!found) {
				json_decref(out);
				return rerr_set(err, 404, "invalid_request_error", NULL, "input",
						"Item with id '%s' not found.", id ? id : "");
			}
			referenced += json_dumpb(found, NULL, 0, JSON_COMPACT);
			if (referenced > max_bytes) {
				json_decref(found);
				json_decref(out);
				return rerr_set(err, 413, "invalid_request_error", "request_too_large", "input",
						"The items 'input' references come to more than %zu bytes "
						"(server.max_body_bytes): reference fewer items.", max_bytes);
			}
			json_array_append_new(out, found);
		} else if (!(id && find_item(context, id))) {
			json_array_append(out, it);
		}
	}
	json_object_set_new(body, "input", out);
	return 0;
}

static void keep(void *ud, const json_t *response)
{
	struct responses_state *rs = ud;
	if (!rs->store)
		return;
	char *items = jsonx_dumps(rs->items, JSON_COMPACT);
	char *text = jsonx_dumps(response, JSON_COMPACT);
	struct store *st = reqctx_reader(rs->rc);
	if (!items || !text || !st ||
	    store_response_put(st, rs->call.id, agent_key(rs->agent), rs->rc->t0_wall_ms,
			       rs->previous_id, items, text) < 0)
		log_error(rs->rc->id, "response %s could not be stored (the database failed): a later "
			  "GET or previous_response_id will not find it", rs->call.id);
	free(items);
	free(text);
}

int responses_prepare(struct request_ctx *rc, const char *agent, json_t *body,
		      const struct resp_req *rq, struct responses_state *rs, json_t **chat,
		      struct rerr *err)
{
	memset(rs, 0, sizeof(*rs));
	*chat = NULL;
	buf_init(&rs->unused, 4096);
	respx_unused_fields(body, &rs->unused);
	if (rs->unused.len && rc->cfg->strict_params) {
		char first[64];
		snprintf(first, sizeof(first), "%.*s", (int)strcspn(rs->unused.p, ","), rs->unused.p);
		return rerr_set(err, 400, "invalid_request_error", "unsupported_parameter", first,
				"Unsupported parameter: '%s' is not supported by this router (params.strict "
				"is on).", first);
	}
	rs->rc = rc;
	rs->agent = agent;
	rs->store = rq->store;
	rs->call.body = body;
	rs->call.created_at = rc->t0_wall_ms / 1000;
	rs->call.keep = keep;
	rs->call.ud = rs;
	const char *hex = strchr(rc->id, '-');
	snprintf(rs->call.id, sizeof(rs->call.id), "resp_%s", hex ? hex + 1 : rc->id);
	json_t *context = NULL;
	if (rq->previous_response_id) {
		rs->previous_id = xstrdup(rq->previous_response_id);
		context = context_of(reqctx_reader(rc), rq->previous_response_id, agent, err);
		if (!context)
			return -1;
	}
	int rc_ = resolve_input(reqctx_reader(rc), agent, context, body,
				(size_t)rc->cfg->max_body_bytes, err);
	if (rc_ == 0)
		*chat = respx_to_chat(body, context, err);
	json_decref(context);
	if (!*chat)
		return -1;
	rs->items = respx_input_items(body, rs->call.id);
	return 0;
}

void responses_state_free(struct responses_state *rs)
{
	free(rs->previous_id);
	json_decref(rs->items);
	buf_free(&rs->unused);
	memset(rs, 0, sizeof(*rs));
}

/* ---- GET / DELETE /v1/responses/{id}[/input_items], POST /v1/responses/{id}/cancel ---- */

/* The caller, and the stored response the path names (0), or an answer already sent (-1). */
static int stored_target(struct request_ctx *rc, const char *suffix, char *agent_buf, size_t agentsz,
			 const char **agent, char *id, size_t idsz, struct stored_response *r)
{
	struct rerr err;
	if (auth_identify(rc, agent_buf, agentsz, agent, &err) < 0) {
		reqctx_refuse(rc, &err);
		return -1;
	}
	const char *p = rc->req.path + strlen("/v1/responses/");
	size_t n = strcspn(p, "/");
	int path_ok = n > 0 && n < idsz && (suffix ? strcmp(p + n, suffix) == 0 : p[n] == '\0');
	snprintf(id, idsz, "%.*s", (int)(n < idsz ? n : idsz - 1), p);
	int got = path_ok ? store_response_get(reqctx_reader(rc), id, agent_key(*agent), r) : 1;
	if (got == 0)
		return 0;
	rerr_clear(&err);
	if (got < 0)
		db_error(&err);
	else if (!path_ok)
		rerr_set(&err, 404, "invalid_request_error", "unknown_url", NULL,
			 "Unknown request URL: %s %s.", rc->req.method, rc->req.path);
	else
		rerr_set(&err, 404, "invalid_request_error", NULL, NULL,
			 "Response with id '%s' not found.", id);
	resp_error(&rc->resp, &err);
	return -1;
}

static const char *query_param(struct request_ctx *rc, const char *name, char *out, size_t outsz)
{
	const char *q = rc->req.io->param(rc->req.io->ctx, "QUERY_STRING");
	size_t nl = strlen(name);
	for (const char *p = q; p && *p;) {
		size_t len = strcspn(p, "&");
		if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
			snprintf(out, outsz, "%.*s", (int)(len - nl - 1), p + nl + 1);
			char *d = url_decode(out);
			if (d) {
				snprintf(out, outsz, "%s", d);
				free(d);
			}
			return out;
		}
		p += len + (p[len] == '&');
	}
	return NULL;
}

/* {"object":"list","data","first_id","last_id","has_more"} of the stored input items. */
static json_t *items_page(struct request_ctx *rc, const char *items_text, struct rerr *err)
{
	char lim[16], ord[16], after[128];
	long long limit = 20;
	if (query_param(rc, "limit", lim, sizeof(lim)) && (parse_ll(lim, &limit) < 0 || limit < 1 ||
							   limit > 100)) {
		rerr_invalid(err, "limit", "'limit' must be an integer from 1 to 100.");
		return NULL;
	}
	const char *order = query_param(rc, "order", ord, sizeof(ord));
	if (order && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) {
		rerr_invalid(err, "order", "'order' must be \"asc\" or \"desc\".");
		return NULL;
	}
	int desc = !order || strcmp(order, "desc") == 0;
	const char *a = query_param(rc, "after", after, sizeof(after));
	json_t *all = load_json(items_text), *data = json_array();
	size_t n = json_array_size(all), start = 0;
	for (size_t k = 0; a && k < n; k++) {
		json_t *it = json_array_get(all, desc ? n - 1 - k : k);
		const char *id = json_string_value(json_object_get(it, "id"));
		if (id && strcmp(id, a) == 0)
			start = k + 1;
	}
	for (size_t k = start; k < n && json_array_size(data) < (size_t)limit; k++)
		json_array_append(data, json_array_get(all, desc ? n - 1 - k : k));
	size_t m = json_array_size(data);
	json_t *page = json_pack("{s:s, s:o, s:O?, s:O?, s:b}", "object", "list", "data", data,
				 "first_id", m ? json_object_get(json_array_get(data, 0), "id") : NULL,
				 "last_id", m ? json_object_get(json_array_get(data, m - 1), "id") : NULL,
				 "has_more", start + m < n);
	json_decref(all);
	return page;
}

void api_responses_get(struct request_ctx *rc)
{
	char agent_buf[128], id[128];
	const char *agent = NULL;
	struct stored_response r;
	size_t plen = strlen(rc->req.path);
	int items = plen > 12 && strcmp(rc->req.path + plen - 12, "/input_items") == 0;
	if (stored_target(rc, items ? "/input_items" : NULL, agent_buf, sizeof(agent_buf), &agent, id,
			  sizeof(id), &r) < 0)
		return;
	struct rerr err;
	rerr_clear(&err);
	char flag[16];
	if (!items && query_param(rc, "stream", flag, sizeof(flag)) && strcmp(flag, "false") != 0) {
		/* openai-node's responses.stream({response_id}) replays a stored stream: not kept. */
		rerr_set(&err, 400, "invalid_request_error", "unsupported_parameter", "stream",
			 "Streaming a stored response again is not supported: GET it without "
			 "stream=true.");
		resp_error(&rc->resp, &err);
		store_response_free(&r);
		return;
	}
	json_t *o = items ? items_page(rc, r.input_items, &err) : load_json(r.response);
	if (o)
		resp_json(&rc->resp, 200, o);
	else if (err.status)
		resp_error(&rc->resp, &err);
	else
		resp_error(&rc->resp, (db_error(&err), &err));
	json_decref(o);
	store_response_free(&r);
}

void api_responses_delete(struct request_ctx *rc)
{
	char agent_buf[128], id[128];
	const char *agent = NULL;
	struct stored_response r;
	if (stored_target(rc, NULL, agent_buf, sizeof(agent_buf), &agent, id, sizeof(id), &r) < 0)
		return;
	store_response_free(&r);
	struct rerr err;
	rerr_clear(&err);
	if (store_response_delete(reqctx_reader(rc), id, agent_key(agent)) < 0) {
		resp_error(&rc->resp, (db_error(&err), &err));
		return;
	}
	json_t *o = json_pack("{s:s, s:s, s:b}", "id", id, "object", "response", "deleted", 1);
	resp_json(&rc->resp, 200, o);
	json_decref(o);
}

/* Responses run to their end before the router answers (background ones too): nothing is ever
 * in progress to cancel. A background response comes back as stored; any other is a 400. */
void api_responses_cancel(struct request_ctx *rc)
{
	char agent_buf[128], id[128];
	const char *agent = NULL;
	struct stored_response r;
	if (stored_target(rc, "/cancel", agent_buf, sizeof(agent_buf), &agent, id, sizeof(id), &r) < 0)
		return;
	json_t *o = load_json(r.response);
	store_response_free(&r);
	if (json_is_true(json_object_get(o, "background"))) {
		resp_json(&rc->resp, 200, o);
	} else {
		struct rerr err;
		rerr_clear(&err);
		rerr_invalid(&err, NULL, "Only responses created with background: true can be cancelled.");
		resp_error(&rc->resp, &err);
	}
	json_decref(o);
}
