/* provider.c - what every translator shares: usage normalisation and cost, the record of dropped
 * parameters, upstream status mapping (provider-protocols.md 10.3) and finish_reason clean-up.
 * Pure functions; no I/O.
 */
#include "provider.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../jsonx.h"
#include "../util.h"

const struct provider_ops *provider_ops_for(enum provider_api api)
{
	switch (api) {
	case API_OPENAI:
		return &provider_openai;
	case API_ANTHROPIC:
		return &provider_anthropic;
	case API_GEMINI:
		return &provider_gemini;
	}
	return NULL;
}

/* ---- usage ---- */

void usage_init(struct usage *u)
{
	memset(u, 0, sizeof(*u));
	u->prompt = u->completion = u->total = -1;
	u->cached = u->cache_write = u->reasoning = -1;
}

void usage_clear(struct usage *u)
{
	json_decref(u->json);
	usage_init(u);
}

int64_t usage_count(const json_t *v)
{
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		return i < 0 ? -1 : i > USAGE_COUNT_MAX ? USAGE_COUNT_MAX : (int64_t)i;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (!(d >= 0))
			return -1;
		return d > (double)USAGE_COUNT_MAX ? USAGE_COUNT_MAX : (int64_t)d;
	}
	return -1;
}

int64_t cost_mul(int64_t tokens, int64_t price_nusd)
{
	if (tokens <= 0 || price_nusd <= 0)
		return 0;
	if (tokens > COST_NUSD_MAX / price_nusd)
		return COST_NUSD_MAX;
	return tokens * price_nusd;
}

int64_t cost_add(int64_t a, int64_t b)
{
	a = a < 0 ? 0 : a;
	b = b < 0 ? 0 : b;
	return a > COST_NUSD_MAX - b ? COST_NUSD_MAX : a + b;
}

static int64_t int_at(const json_t *obj, const char *key)
{
	return usage_count(json_object_get(obj, key));
}

int usage_from_openai(struct usage *u, const json_t *usage)
{
	if (!json_is_object(usage))
		return -1;
	json_t *norm = json_deep_copy(usage);
	int64_t prompt = int_at(usage, "prompt_tokens");
	int64_t completion = int_at(usage, "completion_tokens");
	int64_t total = int_at(usage, "total_tokens");
	if (prompt < 0 && completion < 0) {
		json_decref(norm);
		return -1;
	}
	if (prompt < 0) {
		prompt = 0;
		json_object_set_new(norm, "prompt_tokens", json_integer(0));
	}
	if (completion < 0) {
		completion = 0;
		json_object_set_new(norm, "completion_tokens", json_integer(0));
	}
	if (total < 0 || total > prompt + completion ||
	    !json_is_integer(json_object_get(usage, "total_tokens"))) {
		total = prompt + completion;
		json_object_set_new(norm, "total_tokens", json_integer(total));
	}
	/* The client sees the counts the router charged (clamped, integers). */
	json_object_set_new(norm, "prompt_tokens", json_integer(prompt));
	json_object_set_new(norm, "completion_tokens", json_integer(completion));
	const json_t *pd = json_object_get(usage, "prompt_tokens_details");
	const json_t *cd = json_object_get(usage, "completion_tokens_details");
	int64_t cached = int_at(pd, "cached_tokens");
	if (cached < 0) {
		/* DeepSeek reports cache hits beside the details object. */
		cached = int_at(usage, "prompt_cache_hit_tokens");
		if (cached >= 0) {
			json_t *npd = json_object_get(norm, "prompt_tokens_details");
			if (!json_is_object(npd)) {
				npd = json_object();
				json_object_set_new(norm, "prompt_tokens_details", npd);
			}
			json_object_set_new(npd, "cached_tokens", json_integer(cached));
		}
	}
	u->have = 1;
	u->prompt = prompt;
	u->completion = completion;
	u->total = total;
	u->cached = cached;
	u->cache_write = int_at(pd, "cache_write_tokens");
	u->reasoning = int_at(cd, "reasoning_tokens");
	const json_t *cost = json_object_get(usage, "cost");
	if (json_is_number(cost) && json_number_value(cost) >= 0 && json_number_value(cost) < 1e6) {
		u->have_cost = 1;
		u->cost_nusd = llround(json_number_value(cost) * 1e9);
	}
	json_decref(u->json);
	u->json = norm;
	return 0;
}

json_t *usage_to_json(const struct usage *u)
{
	json_t *j = json_object();
	int64_t p = u->prompt < 0 ? 0 : u->prompt;
	int64_t c = u->completion < 0 ? 0 : u->completion;
	json_object_set_new(j, "prompt_tokens", json_integer(p));
	json_object_set_new(j, "completion_tokens", json_integer(c));
	json_object_set_new(j, "total_tokens", json_integer(u->total >= 0 ? u->total : p + c));
	if (u->cached >= 0 || u->cache_write >= 0) {
		json_t *pd = json_object();
		json_object_set_new(pd, "cached_tokens", json_integer(u->cached < 0 ? 0 : u->cached));
		if (u->cache_write >= 0)
			json_object_set_new(pd, "cache_write_tokens", json_integer(u->cache_write));
		json_object_set_new(j, "prompt_tokens_details", pd);
	}
	if (u->reasoning >= 0) {
		json_t *cd = json_object();
		json_object_set_new(cd, "reasoning_tokens", json_integer(u->reasoning));
		json_object_set_new(j, "completion_tokens_details", cd);
	}
	return j;
}

int64_t usage_cost_nusd(const struct usage *u, const struct model_conf *m, const char **source)
{
	if (u->have_cost) {
		*source = "provider";
		return u->cost_nusd;
	}
	if (!u->have) {
		*source = "none";
		return 0;
	}
	int64_t prompt = u->prompt < 0 ? 0 : u->prompt;
	int64_t cached = u->cached < 0 ? 0 : u->cached;
	int64_t written = u->cache_write < 0 ? 0 : u->cache_write;
	int64_t plain = prompt - cached - written;
	if (plain < 0)
		plain = 0;
	int64_t completion = u->completion < 0 ? 0 : u->completion;
	*source = "pricing";
	return cost_add(cost_add(cost_mul(plain, m->in_nusd), cost_mul(cached, m->cached_in_nusd)),
			cost_add(cost_mul(written, m->cache_write_nusd), cost_mul(completion, m->out_nusd)));
}

/* ---- the output bound ---- */

int64_t client_max_tokens(const json_t *client)
{
	const json_t *v = json_object_get(client, "max_completion_tokens");
	if (!json_is_integer(v) || json_integer_value(v) < 1)
		v = json_object_get(client, "max_tokens");
	return json_is_integer(v) && json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
}

int64_t provider_output_bound(const struct config *cfg, const struct model_conf *m,
			      const json_t *client, int *sent)
{
	const struct provider_ops *ops = provider_ops_for(cfg->providers[m->provider].api);
	int64_t per = ops && ops->max_output_tokens ? ops->max_output_tokens(m, client) : 0;
	if (sent)
		*sent = per > 0;
	if (per <= 0)
		per = m->max_output_tokens;
	if (per > USAGE_COUNT_MAX)
		per = USAGE_COUNT_MAX;
	const json_t *n = json_object_get(client, "n");
	int64_t k = json_is_integer(n) ? (int64_t)json_integer_value(n) : 1;
	k = k < 1 ? 1 : k > 128 ? 128 : k;
	return (per < 1 ? 1 : per) * k;
}

/* ---- dropped parameters ---- */

void dropped_add(struct buf *dropped, const char *name_in)
{
	/* The list is comma-separated: a name is kept to [A-Za-z0-9_.[]-], anything else becomes
	 * '_' (client field names are arbitrary). */
	char name[64];
	size_t n = 0;
	for (; name_in[n] && n < sizeof(name) - 1; n++) {
		char c = name_in[n];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			 c == '_' || c == '.' || c == '[' || c == ']' || c == '-';
		name[n] = ok ? c : '_';
	}
	if (n == 0)
		name[n++] = '_';
	name[n] = '\0';
	const char *p = buf_str(dropped);
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == n && memcmp(p, name, n) == 0)
			return;
		p += len + (comma ? 1 : 0);
	}
	if (dropped->len)
		buf_putc(dropped, ',');
	buf_puts(dropped, name);
}

int param_unsupported(const struct xlate_ctx *x, struct buf *dropped, const char *name,
		      struct rerr *err)
{
	if (x->cfg->strict_params)
		return rerr_set(err, 400, "invalid_request_error", "unsupported_parameter", name,
				"Unsupported parameter: '%s' is not supported by model %s (provider %s).",
				name, x->public_model, x->prov->name);
	dropped_add(dropped, name);
	return 0;
}

static int is_default_value(const json_t *v, double dflt)
{
	if (json_is_null(v) || json_is_false(v))
		return 1;
	return json_is_number(v) && json_number_value(v) == dflt;
}

int param_drop(const struct xlate_ctx *x, json_t *body, const char *name, double dflt,
	       struct buf *dropped, struct rerr *err)
{
	json_t *v = json_object_get(body, name);
	if (!v)
		return 0;
	if (!is_default_value(v, dflt) && param_unsupported(x, dropped, name, err) < 0)
		return -1;
	json_object_del(body, name);
	return 0;
}

int params_unknown(const struct xlate_ctx *x, const json_t *client, const char *const *known,
		   struct buf *dropped, struct rerr *err)
{
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)client, key, v)
	{
		size_t i;
		for (i = 0; known[i]; i++) {
			if (strcmp(known[i], key) == 0)
				break;
		}
		if (!known[i] && !json_is_null(v) && param_unsupported(x, dropped, key, err) < 0)
			return -1;
	}
	return 0;
}

int param_refused(const struct xlate_ctx *x, const char *param, const char *what, struct rerr *err)
{
	return rerr_set(err, 400, "invalid_request_error", "unsupported_parameter", param,
			"Unsupported parameter: %s is not supported by model %s (provider %s).", what,
			x->public_model, x->prov->name);
}

int data_url_split(const char *url, char *mime, size_t mimesz, const char **data)
{
	if (!str_has_prefix(url, "data:"))
		return -1;
	const char *m = url + 5;
	const char *semi = strchr(m, ';');
	if (!semi || !str_has_prefix(semi, ";base64,") || semi == m || (size_t)(semi - m) >= mimesz)
		return -1;
	memcpy(mime, m, (size_t)(semi - m));
	mime[semi - m] = '\0';
	*data = semi + strlen(";base64,");
	return 0;
}

json_t *tool_arguments_object(const char *arguments)
{
	const char *p = arguments ? arguments : "";
	while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
		p++;
	if (!*p)
		return json_object();
	json_error_t jerr;
	json_t *v = jsonx_loadb(arguments, strlen(arguments), JSON_DECODE_ANY, &jerr);
	if (json_is_object(v))
		return v;
	json_t *o = json_object();
	if (v)
		json_object_set_new(o, "value", v);
	else
		json_object_set_new(o, "_raw", json_string(arguments));
	return o;
}

char *content_text(const json_t *content)
{
	if (json_is_string(content))
		return xstrdup(json_string_value(content));
	struct buf b;
	buf_init(&b, BUF_UNLIMITED);
	size_t i;
	const json_t *part;
	json_array_foreach(content, i, part)
	{
		const char *t = json_string_value(json_object_get(part, "text"));
		if (!t)
			t = json_string_value(json_object_get(part, "refusal"));
		if (t)
			buf_puts(&b, t);
	}
	return buf_steal(&b);
}

long reasoning_effort_budget(const char *effort)
{
	static const struct {
		const char *name;
		long budget;
	} table[] = { { "none", 0 },      { "minimal", 1024 }, { "low", 1024 }, { "medium", 2048 },
		      { "high", 4096 },   { "xhigh", 8192 },   { "max", 8192 } };
	for (size_t i = 0; effort && i < ARRAY_SIZE(table); i++) {
		if (strcmp(table[i].name, effort) == 0)
			return table[i].budget;
	}
	return -1;
}

void tool_call_id_make(const struct xlate_ctx *x, size_t k, char *out, size_t outsz)
{
	const char *suffix = str_has_prefix(x->id, "chatcmpl-") ? x->id + strlen("chatcmpl-") : x->id;
	snprintf(out, outsz, "call_%s_%zu", suffix, k);
}

/* ---- errors ---- */

void redact_secret(char *s, const char *secret)
{
	if (!s || !secret)
		return;
	size_t n = strlen(secret);
	if (n < 6)
		return;
	char *p = s;
	while ((p = strstr(p, secret)) != NULL) {
		memset(p, '*', n);
		p += n;
	}
}

void redact_cut(char *dst, size_t dstsz, const char *src, const char *secret)
{
	if (!dstsz)
		return;
	char *full = xstrdup(src ? src : "");
	redact_secret(full, secret);
	snprintf(dst, dstsz, "%s", full);
	free(full);
}

/* Upstream codes the router keeps, as static strings (struct rerr holds no pointer into a
 * parsed upstream body). */
static const char *known_code(const char *code)
{
	static const char *const keep[] = { "context_length_exceeded", "unsupported_parameter",
					    "unsupported_value", "invalid_value" };
	for (size_t i = 0; code && i < ARRAY_SIZE(keep); i++) {
		if (strcmp(code, keep[i]) == 0)
			return keep[i];
	}
	return NULL;
}

void map_upstream_status(const struct xlate_ctx *x, long status, const char *upstream_msg,
			 const char *upstream_code, const char *upstream_param, long retry_after,
			 struct rerr *err)
{
	const char *prov = x->prov->name;
	/* Both upstream texts are redacted whole, then cut: no part of a key that straddles a cut
	 * survives. */
	char msg[600];
	redact_cut(msg, sizeof(msg), upstream_msg, x->prov->api_key);
	char param[96];
	redact_cut(param, sizeof(param), upstream_param, x->prov->api_key);
	upstream_param = upstream_param ? param : NULL;
	const char *sep = msg[0] ? ": " : "";
	err->should_retry = 0;
	switch (status) {
	case 400:
	case 422:
		rerr_set(err, 400, "invalid_request_error", known_code(upstream_code), upstream_param, "%s rejected the request (HTTP %ld)%s%s", prov, status, sep, msg);
		break;
	case 401:
	case 403:
		/* The router's own credential is wrong: never the client's 401, never upstream text
		 * (it may quote part of the key). */
		rerr_set(err, 502, "upstream_auth_error", "upstream_authentication_failed", NULL,
			 "Provider %s refused the router's credentials (HTTP %ld); the operator must check %s.",
			 prov, status, x->prov->key_env);
		break;
	case 402:
		rerr_set(err, 402, "insufficient_quota", "insufficient_quota", NULL,
			 "%s: the router's account has insufficient credit (HTTP 402)%s%s", prov, sep, msg);
		break;
	case 404:
		rerr_set(err, 404, "invalid_request_error", "model_not_found", "model",
			 "%s does not know model '%s' (HTTP 404)%s%s", prov, x->upstream_model, sep, msg);
		break;
	case 408:
	case 504:
		rerr_set(err, 504, "timeout_error", NULL, NULL, "%s timed out (HTTP %ld)%s%s", prov,
			 status, sep, msg);
		break;
	case 413:
		rerr_set(err, 413, "invalid_request_error", "request_too_large", NULL,
			 "%s: request too large (HTTP 413)%s%s", prov, sep, msg);
		break;
	case 429:
		rerr_set(err, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
			 "%s rate limit reached (HTTP 429)%s%s", prov, sep, msg);
		err->retry_after = retry_after > 0 ? retry_after : 1;
		err->should_retry = 1;
		break;
	case 498:
	case 503:
	case 529:
		rerr_set(err, 503, "overloaded_error", "upstream_overloaded", NULL,
			 "%s is overloaded (HTTP %ld)%s%s", prov, status, sep, msg);
		err->retry_after = retry_after > 0 ? retry_after : 1;
		err->should_retry = 1;
		break;
	case 500:
		rerr_set(err, 500, "server_error", NULL, NULL, "%s internal error (HTTP 500)%s%s", prov,
			 sep, msg);
		break;
	default:
		if (status >= 500)
			rerr_set(err, 502, "server_error", "bad_upstream_response", NULL,
				 "%s failed (HTTP %ld)%s%s", prov, status, sep, msg);
		else
			rerr_set(err, 400, "invalid_request_error", NULL, upstream_param,
				 "%s rejected the request (HTTP %ld)%s%s", prov, status, sep, msg);
		break;
	}
}

const char *finish_reason_normalize(const char *raw, int *changed)
{
	static const char *const openai[] = { "stop", "length", "tool_calls", "content_filter",
					      "function_call" };
	*changed = 0;
	if (!raw)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(openai); i++) {
		if (strcmp(raw, openai[i]) == 0)
			return openai[i];
	}
	*changed = 1;
	if (strcmp(raw, "insufficient_system_resource") == 0 || strcmp(raw, "max_tokens") == 0)
		return "length";
	return "stop";
}
