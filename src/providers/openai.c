/* openai.c - the OpenAI Chat Completions adapter, for OpenAI and every OpenAI-compatible provider.
 *
 * DeepSeek, OpenRouter and Groq differ from OpenAI only in configuration (struct provider_conf):
 * how `developer` messages are sent, whether messages[].name is accepted, where reasoning text
 * lives, which parameters are unsupported. The request is forwarded with every field the client
 * sent (unknown ones included) after: the model id is replaced; a stream always asks for usage
 * (the usage-only chunk is withheld from a client that did not ask for it); OpenAI's
 * reasoning-model rules are applied; unsupported parameters are dropped and reported (or refused
 * in strict mode); router-only extension fields are removed from messages.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../jsonx.h"
#include "../util.h"
#include "provider.h"

struct oa_stream {
	const struct xlate_ctx *x;
	int finished;          /* a choice carried a finish_reason */
	unsigned char role_sent[16];   /* bit per choice index < 128: its role went out */
};

static int apply_reasoning_rules(const struct xlate_ctx *x, json_t *body, struct buf *dropped,
				 struct rerr *err)
{
	json_t *mt = json_object_get(body, "max_tokens");
	if (mt) {
		if (!json_object_get(body, "max_completion_tokens"))
			json_object_set(body, "max_completion_tokens", mt);
		else if (param_unsupported(x, dropped, "max_tokens", err) < 0)
			return -1;
		json_object_del(body, "max_tokens");
	}
	static const struct {
		const char *name;
		double dflt;
	} sampling[] = {
		{ "temperature", 1 },   { "top_p", 1 },       { "presence_penalty", 0 },
		{ "frequency_penalty", 0 }, { "logprobs", 0 }, { "top_logprobs", NAN },
		{ "logit_bias", NAN },
	};
	for (size_t i = 0; i < ARRAY_SIZE(sampling); i++) {
		if (param_drop(x, body, sampling[i].name, sampling[i].dflt, dropped, err) < 0)
			return -1;
	}
	return 0;
}

/* Returns a new messages array adapted to the provider, or NULL when none needs a change. */
static json_t *adapt_messages(const struct xlate_ctx *x, const json_t *messages)
{
	const struct provider_conf *p = x->prov;
	int dev_to_system = strcmp(p->developer_role, "system") == 0;
	size_t i;
	json_t *m;
	int needed = 0;
	json_array_foreach(messages, i, m)
	{
		const char *role = json_string_value(json_object_get(m, "role"));
		if ((dev_to_system && role && strcmp(role, "developer") == 0) ||
		    (p->strip_message_name && json_object_get(m, "name")) ||
		    json_object_get(m, "thinking_blocks") || json_object_get(m, "reasoning_content"))
			needed = 1;
	}
	if (!needed)
		return NULL;
	json_t *out = json_array();
	json_array_foreach(messages, i, m)
	{
		json_t *c = json_copy(m);
		const char *role = json_string_value(json_object_get(c, "role"));
		if (dev_to_system && role && strcmp(role, "developer") == 0)
			json_object_set_new(c, "role", json_string("system"));
		if (p->strip_message_name)
			json_object_del(c, "name");
		json_object_del(c, "thinking_blocks");
		/* DeepSeek needs the reasoning of a tool-call turn back; everywhere else the field is
		 * the router's own extension and would be rejected. */
		int keep = p->keep_reasoning_content && json_is_array(json_object_get(c, "tool_calls")) &&
			   json_array_size(json_object_get(c, "tool_calls")) > 0;
		if (!keep)
			json_object_del(c, "reasoning_content");
		json_array_append_new(out, c);
	}
	return out;
}

/* response_format json_schema for a model without structured outputs (DeepSeek refuses it with
 * 400 "This response_format type is unavailable now"): JSON mode plus the schema in a system
 * message, named in the dropped parameters as response_format.json_schema (strict_params: 400).
 * With strict: true the schema cannot be guaranteed: 400 (a chain passes such a model over). */
static int emulate_json_schema(const struct xlate_ctx *x, json_t *body, struct buf *dropped,
			       struct rerr *err)
{
	const json_t *rf = json_object_get(body, "response_format");
	const char *type = json_string_value(json_object_get(rf, "type"));
	if (!type || strcmp(type, "json_schema") != 0 || (x->model->caps & CAP_JSON_SCHEMA))
		return 0;
	const json_t *js = json_object_get(rf, "json_schema");
	if (json_is_true(json_object_get(js, "strict")) || !(x->model->caps & CAP_JSON_OBJECT))
		return param_refused(x, "response_format", "response_format json_schema with "
				     "strict: true (structured outputs)", err);
	if (param_unsupported(x, dropped, "response_format.json_schema", err) < 0)
		return -1;
	const json_t *schema = json_object_get(js, "schema");
	char *text = schema ? jsonx_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	const char *name = json_string_value(json_object_get(js, "name"));
	const char *desc = json_string_value(json_object_get(js, "description"));
	char *prompt = xasprintf("Answer with one JSON object and nothing else. It must conform to "
				 "this JSON Schema%s%s%s%s%s:\n%s", name ? " (\"" : "", name ? name : "",
				 name ? "\")" : "", desc ? ", described as: " : "", desc ? desc : "",
				 text ? text : "{}");
	free(text);
	/* After the leading system and developer messages, before the conversation. */
	json_t *msgs = json_array(), *m;
	size_t i, at = 0;
	json_array_foreach(json_object_get(body, "messages"), i, m)
	{
		const char *role = json_string_value(json_object_get(m, "role"));
		if (at == i && role && (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0))
			at = i + 1;
		json_array_append(msgs, m);
	}
	json_array_insert_new(msgs, at, json_pack("{s:s, s:s}", "role", "system", "content", prompt));
	free(prompt);
	json_object_set_new(body, "messages", msgs);
	json_object_set_new(body, "response_format", json_pack("{s:s}", "type", "json_object"));
	return 0;
}

static int openai_build(const struct xlate_ctx *x, const json_t *client, struct upstream_req *out,
			struct buf *dropped, struct rerr *err)
{
	json_t *body = json_copy((json_t *)client);
	int rc = -1;
	json_object_set_new(body, "model", json_string(x->upstream_model));
	if (x->stream) {
		json_t *so = json_object_get(body, "stream_options");
		json_t *nso = json_is_object(so) ? json_copy(so) : json_object();
		json_object_set_new(nso, "include_usage", json_true());
		json_object_set_new(body, "stream_options", nso);
	}
	if (x->model->reasoning && apply_reasoning_rules(x, body, dropped, err) < 0)
		goto out;
	/* metadata.task_type is the router's own routing hint, not the provider's business. */
	json_t *md = json_object_get(body, "metadata");
	if (json_is_object(md) && json_object_get(md, "task_type")) {
		json_t *nmd = json_copy(md);
		json_object_del(nmd, "task_type");
		if (json_object_size(nmd))
			json_object_set_new(body, "metadata", nmd);
		else {
			json_decref(nmd);
			json_object_del(body, "metadata");
		}
	}
	for (size_t i = 0; i < x->prov->reject_params.n; i++) {
		const char *name = x->prov->reject_params.v[i];
		json_t *v = json_object_get(body, name);
		if (v && !json_is_null(v) && !json_is_false(v)) {
			rerr_set(err, 400, "invalid_request_error", "unsupported_parameter", name,
				 "Unsupported parameter: '%s' is not supported by model %s (provider %s).",
				 name, x->public_model, x->prov->name);
			goto out;
		}
	}
	if (!x->prov->custom_tools) {
		size_t ti;
		json_t *t;
		json_array_foreach(json_object_get(body, "tools"), ti, t)
		{
			const char *type = json_string_value(json_object_get(t, "type"));
			if (type && strcmp(type, "custom") == 0) {
				rerr_set(err, 400, "invalid_request_error", "unsupported_parameter", "tools",
					 "Unsupported value: custom tools (tools[%zu].type \"custom\") are only supported by OpenAI models, not by %s.",
					 ti, x->public_model);
				goto out;
			}
		}
	}
	const struct strv *lists[] = { &x->prov->unsupported_params, &x->model->unsupported_params };
	for (size_t l = 0; l < ARRAY_SIZE(lists); l++) {
		for (size_t i = 0; i < lists[l]->n; i++) {
			if (param_drop(x, body, lists[l]->v[i], NAN, dropped, err) < 0)
				goto out;
		}
	}
	json_t *n = json_object_get(body, "n");
	if (x->prov->max_n > 0 && json_is_integer(n) && json_integer_value(n) > x->prov->max_n) {
		rerr_set(err, 400, "invalid_request_error", "unsupported_parameter", "n",
			 "Unsupported value: 'n' above %lld is not supported by model %s (provider %s).",
			 (long long)x->prov->max_n, x->public_model, x->prov->name);
		goto out;
	}
	if (emulate_json_schema(x, body, dropped, err) < 0)
		goto out;
	json_t *msgs = adapt_messages(x, json_object_get(body, "messages"));
	if (msgs)
		json_object_set_new(body, "messages", msgs);

	struct buf b;
	buf_init(&b, BUF_UNLIMITED);
	json_to_buf(body, &b);
	out->body_len = b.len;
	out->body = buf_steal_counted(&b, &out->body_counted);
	out->url = xasprintf("%s/chat/completions", x->prov->base_url);
	out->stream = x->stream;
	upstream_req_add_header(out, "Authorization: Bearer %s", x->prov->api_key);
	upstream_req_add_header(out, "Content-Type: application/json");
	upstream_req_add_header(out, "Accept: %s", x->stream ? "text/event-stream" : "application/json");
	for (size_t i = 0; i < x->prov->headers.n; i++)
		upstream_req_add_header(out, "%s", x->prov->headers.v[i]);
	rc = 0;
out:
	json_decref(body);
	return rc;
}

/* Reasoning text under the provider's own name becomes the reasoning_content extension. */
static void rename_reasoning(const struct xlate_ctx *x, json_t *obj)
{
	const char *f = x->prov->reasoning_field;
	if (!json_is_object(obj) || !f || !f[0])
		return;
	json_t *r = json_object_get(obj, f);
	if (json_is_string(r) && !json_object_get(obj, "reasoning_content"))
		json_object_set(obj, "reasoning_content", r);
	if (r)
		json_object_del(obj, f);
}

static void normalize_choice(const struct xlate_ctx *x, json_t *choice, const char *part)
{
	rename_reasoning(x, json_object_get(choice, part));
	json_t *fr = json_object_get(choice, "finish_reason");
	if (json_is_string(fr)) {
		int changed;
		const char *norm = finish_reason_normalize(json_string_value(fr), &changed);
		if (changed) {
			json_object_set(choice, "provider_finish_reason", fr);
			json_object_set_new(choice, "finish_reason", json_string(norm));
		}
	}
}

/* Whether an error object says the router's own key is bad (OpenAI and Groq: code
 * "invalid_api_key"; DeepSeek: type "authentication_error"), whatever the status: its text may
 * quote part of the key, so it is answered as a 401 is (map_upstream_status). */
static int says_bad_key(const json_t *e)
{
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *type = json_string_value(json_object_get(e, "type"));
	return (code && strcmp(code, "invalid_api_key") == 0) ||
	       (type && strcmp(type, "authentication_error") == 0);
}

/* An error object inside a 2xx body or a stream event -> err. */
static void error_from_object(const struct xlate_ctx *x, const json_t *e, struct rerr *err)
{
	const char *msg = json_string_value(json_object_get(e, "message"));
	const json_t *code = json_object_get(e, "code");
	long status = 502;
	if (json_is_integer(code) && json_integer_value(code) >= 400 && json_integer_value(code) < 600)
		status = (long)json_integer_value(code);
	const char *type = json_string_value(json_object_get(e, "type"));
	if (says_bad_key(e))
		status = 401;
	else if (status == 502 && type) {
		if (strstr(type, "overloaded") || strstr(type, "unavailable"))
			status = 503;
		else if (strstr(type, "rate_limit"))
			status = 429;
		else if (strstr(type, "server_error") || strstr(type, "api_error"))
			status = 500;
	}
	map_upstream_status(x, status, msg ? msg : "error reported by the upstream",
			    json_string_value(code), json_string_value(json_object_get(e, "param")), 0,
			    err);
}

static int openai_parse_response(const struct xlate_ctx *x, const char *body, size_t len,
				 json_t **out, struct usage *u, struct rerr *err)
{
	json_error_t jerr;
	json_t *resp = jsonx_loadb(body, len, 0, &jerr);
	if (!json_is_object(resp)) {
		json_decref(resp);
		return rerr_set(err, 502, "server_error", "bad_upstream_response", NULL,
				"%s returned a reply that is not a JSON object", x->prov->name);
	}
	json_t *e = json_object_get(resp, "error");
	json_t *choices = json_object_get(resp, "choices");
	if (json_is_object(e) && !json_is_array(choices)) {
		error_from_object(x, e, err);
		json_decref(resp);
		return -1;
	}
	if (!json_is_array(choices)) {
		json_decref(resp);
		return rerr_set(err, 502, "server_error", "bad_upstream_response", NULL,
				"%s returned a reply without choices", x->prov->name);
	}
	size_t i;
	json_t *c;
	json_array_foreach(choices, i, c)
		normalize_choice(x, c, "message");
	if (usage_from_openai(u, json_object_get(resp, "usage")) == 0)
		json_object_set(resp, "usage", u->json);
	else
		json_object_del(resp, "usage");   /* not counts the router can read: not relayed */
	*out = resp;
	return 0;
}

static void *openai_stream_new(const struct xlate_ctx *x)
{
	struct oa_stream *s = xcalloc(1, sizeof(*s));
	s->x = x;
	return s;
}

static enum stream_status openai_stream_event(void *st, const struct sse_event *ev, json_t *chunks,
					      struct usage *u, struct rerr *err)
{
	struct oa_stream *s = st;
	const struct xlate_ctx *x = s->x;
	if (!ev->has_data)
		return STREAM_MORE;
	if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)
		return STREAM_DONE;
	json_error_t jerr;
	json_t *chunk = jsonx_loadb(ev->data, ev->data_len, 0, &jerr);
	if (!json_is_object(chunk)) {
		json_decref(chunk);
		rerr_set(err, 502, "server_error", "bad_upstream_response", NULL,
			 "%s sent a stream event that is not a JSON object", x->prov->name);
		return STREAM_ERROR;
	}
	json_t *e = json_object_get(chunk, "error");
	if (e) {
		error_from_object(x, json_is_object(e) ? e : chunk, err);
		json_decref(chunk);
		return STREAM_ERROR;
	}
	usage_from_openai(u, json_object_get(chunk, "usage"));
	json_t *xg = json_object_get(chunk, "x_groq");
	if (json_is_object(xg))
		usage_from_openai(u, json_object_get(xg, "usage"));
	json_t *choices = json_object_get(chunk, "choices");
	if (!json_is_array(choices) || json_array_size(choices) == 0) {
		/* The usage-only chunk: the relay sends its own, if the client asked for it. */
		json_decref(chunk);
		return STREAM_MORE;
	}
	/* Usage goes out in the relay's own final chunk; id, object, created and model are
	 * overwritten by the relay. */
	json_object_del(chunk, "usage");
	size_t i;
	json_t *c;
	json_array_foreach(choices, i, c)
	{
		const char *fr = json_string_value(json_object_get(c, "finish_reason"));
		if (fr && strcmp(fr, "error") == 0) {
			rerr_set(err, 502, "server_error", "bad_upstream_response", NULL,
				 "%s reported an error in the middle of the stream", x->prov->name);
			json_decref(chunk);
			return STREAM_ERROR;
		}
		if (fr)
			s->finished = 1;
		json_t *idx = json_object_get(c, "index");
		json_t *delta = json_object_get(c, "delta");
		if (json_is_integer(idx) && json_integer_value(idx) >= 0 && json_integer_value(idx) < 128 &&
		    json_object_get(delta, "role")) {
			/* The role goes out once per choice (some upstreams repeat it on every delta). */
			size_t k = (size_t)json_integer_value(idx);
			unsigned char bit = (unsigned char)(1u << (k % 8));
			if (s->role_sent[k / 8] & bit)
				json_object_del(delta, "role");
			s->role_sent[k / 8] |= bit;
		}
		normalize_choice(x, c, "delta");
	}
	json_array_append_new(chunks, chunk);
	return STREAM_MORE;
}

static enum stream_status openai_stream_eof(void *st, json_t *chunks, struct usage *u,
					    struct rerr *err)
{
	(void)chunks;
	(void)u;
	struct oa_stream *s = st;
	if (s->finished)
		return STREAM_DONE;
	rerr_set(err, 502, "server_error", "bad_upstream_response", NULL,
		 "the upstream closed the stream before it finished");
	return STREAM_ERROR;
}

static void openai_map_error(const struct xlate_ctx *x, long status, const char *body, size_t len,
			     long retry_after, struct rerr *err)
{
	json_error_t jerr;
	json_t *j = jsonx_loadb(body, len, 0, &jerr);
	json_t *e = json_object_get(j, "error");
	const char *msg = NULL, *code = NULL, *param = NULL;
	if (json_is_object(e)) {
		msg = json_string_value(json_object_get(e, "message"));
		code = json_string_value(json_object_get(e, "code"));
		param = json_string_value(json_object_get(e, "param"));
	} else if (json_is_string(e)) {
		msg = json_string_value(e);
	}
	if (!msg && json_is_string(json_object_get(j, "message")))
		msg = json_string_value(json_object_get(j, "message"));
	const json_t *meta = json_object_get(e, "metadata");
	if (status == 403 && (json_object_get(meta, "reasons") || json_object_get(meta, "flagged_input") ||
			      (msg && (strcasestr(msg, "moderation") || strcasestr(msg, "flagged"))))) {
		/* A moderation verdict on the client's input (OpenRouter), not a credentials problem:
		 * its message is passed on, redacted whole and then cut to 600 bytes. */
		char m[600];
		redact_cut(m, sizeof(m), msg ? msg : "input flagged by moderation", x->prov->api_key);
		rerr_set(err, 403, "permission_error", "content_flagged", NULL, "%s: %s", x->prov->name, m);
		err->should_retry = 0;
	} else {
		map_upstream_status(x, json_is_object(e) && says_bad_key(e) ? 401 : status, msg, code,
				    param, retry_after, err);
	}
	json_decref(j);
}

/* max_completion_tokens (it bounds reasoning too) and max_tokens are sent as the client gave them
 * (a reasoning model gets max_tokens moved into max_completion_tokens): the larger bounds. */
static int64_t openai_max_output_tokens(const struct model_conf *m, const json_t *client)
{
	(void)m;
	const json_t *mt = json_object_get(client, "max_tokens");
	int64_t a = client_max_tokens(client);
	int64_t b = json_is_integer(mt) ? (int64_t)json_integer_value(mt) : 0;
	return b > a ? b : a;
}

const struct provider_ops provider_openai = {
	.api = "openai",
	.build_request = openai_build,
	.parse_response = openai_parse_response,
	.stream_new = openai_stream_new,
	.stream_event = openai_stream_event,
	.stream_eof = openai_stream_eof,
	.stream_free = free,
	.map_error = openai_map_error,
	.max_output_tokens = openai_max_output_tokens,
};
