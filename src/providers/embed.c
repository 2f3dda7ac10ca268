/* embed.c - POST /v1/embeddings translated to and from each provider (responses-embeddings-
 * protocol.md 7), pure like the chat translators.
 *
 * OpenAI-compatible providers (OpenAI, OpenRouter, ...) take the client's body as it is, the
 * upstream model id put in; their reply is checked item by item and re-emitted. Gemini takes
 * batchEmbedContents requests of at most GEMINI_EMBED_BATCH inputs, so the attempt calls it once
 * per slice of the inputs (embed_chunk) and the slices' vectors are put together in input order;
 * `dimensions` becomes outputDimensionality, and the vectors are brought to unit length (Gemini
 * normalises only its full-length output) as OpenAI's are. Token-id input has no Gemini form (no
 * detokeniser): 400. Gemini reports no token counts: usage is estimated (UTF-8 bytes / 4, at
 * least one per input) and marked so. Whatever the upstream's encoding, the client gets its own
 * encoding_format: float arrays, or base64 of little-endian float32.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../embedreq.h"
#include "../jsonx.h"
#include "../memgauge.h"
#include "../util.h"
#include "provider.h"

#define GEMINI_EMBED_BATCH 100

size_t embed_chunk(const struct xlate_ctx *x, size_t n)
{
	return x->prov->api == API_GEMINI && n > GEMINI_EMBED_BATCH ? GEMINI_EMBED_BATCH : n;
}

static void finish_request(const struct xlate_ctx *x, json_t *body, const char *url,
			   const char *auth_fmt, struct upstream_req *out)
{
	struct buf b;
	buf_init(&b, BUF_UNLIMITED);
	json_to_buf(body, &b);
	out->body_len = b.len;
	out->body = buf_steal_counted(&b, &out->body_counted);
	out->url = xstrdup(url);
	out->stream = 0;
	upstream_req_add_header(out, auth_fmt, x->prov->api_key ? x->prov->api_key : "");
	upstream_req_add_header(out, "Content-Type: application/json");
	upstream_req_add_header(out, "Accept: application/json");
	for (size_t i = 0; i < x->prov->headers.n; i++)
		upstream_req_add_header(out, "%s", x->prov->headers.v[i]);
}

static int gemini_build(const struct xlate_ctx *x, const json_t *client, const struct embedreq *r,
			size_t from, size_t count, struct upstream_req *out, struct buf *dropped,
			struct rerr *err)
{
	static const char *const known[] = { "model", "input", "dimensions", "encoding_format",
					     "user", NULL };
	if (r->tokens)
		return rerr_set(err, 400, "invalid_request_error", "unsupported_value", "input",
				"Unsupported value: 'input' as token ids is not supported by model %s "
				"(provider %s, which takes text only); send the text.", x->public_model,
				x->prov->name);
	if (params_unknown(x, client, known, dropped, err) < 0 ||
	    (json_is_string(json_object_get(client, "user")) &&
	     param_unsupported(x, dropped, "user", err) < 0))
		return -1;
	char model[512];
	snprintf(model, sizeof(model), "models/%s", x->upstream_model);
	json_t *reqs = json_array();
	for (size_t i = from; i < from + count; i++) {
		json_t *q = json_pack("{s:s, s:{s:[{s:s}]}}", "model", model, "content", "parts",
				      "text", embedreq_text(client, i));
		if (r->dimensions)
			json_object_set_new(q, "outputDimensionality", json_integer(r->dimensions));
		json_array_append_new(reqs, q);
	}
	json_t *body = json_pack("{s:o}", "requests", reqs);
	char *url = xasprintf("%s/models/%s:batchEmbedContents", x->prov->base_url, x->upstream_model);
	finish_request(x, body, url, "x-goog-api-key: %s", out);
	free(url);
	json_decref(body);
	return 0;
}

int embed_build_request(const struct xlate_ctx *x, const json_t *client, const struct embedreq *r,
			size_t from, size_t count, struct upstream_req *out, struct buf *dropped,
			struct rerr *err)
{
	if (x->prov->api == API_GEMINI)
		return gemini_build(x, client, r, from, count, out, dropped, err);
	if (x->prov->api != API_OPENAI)
		return rerr_set(err, 400, "invalid_request_error", "model_not_embedding", "model",
				"Model %s (provider %s) has no embeddings API.", x->public_model,
				x->prov->name);
	json_t *body = json_deep_copy(client);
	json_object_set_new(body, "model", json_string(x->upstream_model));
	char *url = xasprintf("%s/embeddings", x->prov->base_url);
	finish_request(x, body, url, "Authorization: Bearer %s", out);
	free(url);
	json_decref(body);
	return 0;
}

/* ---- vectors ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 of the values as little-endian float32, quoted. */
static int write_base64(struct buf *out, const double *v, size_t n)
{
	char q[4];
	unsigned char p[3];
	size_t len = n * 4, k = 0;
	if (buf_putc(out, '"') < 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		float f = (float)v[i / 4];
		uint32_t u;
		memcpy(&u, &f, 4);
		p[k++] = (unsigned char)(u >> (8 * (i % 4)));    /* little-endian */
		if (k == 3 || i + 1 == len) {
			uint32_t w = (uint32_t)p[0] << 16 | (k > 1 ? (uint32_t)p[1] << 8 : 0) |
				     (k > 2 ? p[2] : 0);
			q[0] = b64[w >> 18 & 63];
			q[1] = b64[w >> 12 & 63];
			q[2] = k > 1 ? b64[w >> 6 & 63] : '=';
			q[3] = k > 2 ? b64[w & 63] : '=';
			if (buf_append(out, q, 4) < 0)
				return -1;
			k = 0;
		}
	}
	return buf_putc(out, '"');
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

/* Base64 of little-endian float32 -> values (malloc'd, *n set). NULL when it is not that. */
static double *decode_base64(const char *s, size_t slen, size_t *n)
{
	if (slen % 4 != 0)
		return NULL;
	size_t pad = slen && s[slen - 1] == '=' ? (slen > 1 && s[slen - 2] == '=' ? 2 : 1) : 0;
	size_t len = slen / 4 * 3 - pad;
	if (len % 4 != 0)
		return NULL;
	unsigned char *p = xmalloc(len ? len : 1);
	size_t o = 0;
	for (size_t i = 0; i < slen; i += 4) {
		uint32_t w = 0;
		for (int k = 0; k < 4; k++) {
			int d = s[i + (size_t)k] == '=' && i + 4 == slen && k >= 4 - (int)pad
					? 0 : b64_value(s[i + (size_t)k]);
			if (d < 0) {
				free(p);
				return NULL;
			}
			w = w << 6 | (uint32_t)d;
		}
		for (int k = 0; k < 3 && o < len; k++)
			p[o++] = (unsigned char)(w >> (16 - 8 * k));
	}
	*n = len / 4;
	double *v = xmalloc((*n ? *n : 1) * sizeof(double));
	for (size_t i = 0; i < *n; i++) {
		uint32_t u = (uint32_t)p[i * 4] | (uint32_t)p[i * 4 + 1] << 8 |
			     (uint32_t)p[i * 4 + 2] << 16 | (uint32_t)p[i * 4 + 3] << 24;
		float f;
		memcpy(&f, &u, 4);
		v[i] = f;
	}
	free(p);
	return v;
}

/* An upstream vector (an array of numbers, or base64 of float32) -> values; NULL if it is
 * neither, empty, or not finite. */
static double *read_vector(const json_t *e, size_t *n)
{
	double *v = NULL;
	if (json_is_string(e)) {
		v = decode_base64(json_string_value(e), json_string_length(e), n);
	} else if (json_is_array(e)) {
		*n = json_array_size(e);
		v = xmalloc((*n ? *n : 1) * sizeof(double));
		for (size_t i = 0; i < *n; i++) {
			const json_t *x = json_array_get(e, i);
			if (!json_is_number(x)) {
				free(v);
				return NULL;
			}
			v[i] = json_number_value(x);
		}
	}
	/* A value float32 cannot hold is no embedding's (and would be Infinity in base64). */
	for (size_t i = 0; v && i < *n; i++) {
		if (!isfinite(v[i]) || fabs(v[i]) > FLT_MAX) {
			free(v);
			return NULL;
		}
	}
	if (v && *n == 0) {
		free(v);
		v = NULL;
	}
	return v;
}

static void normalise(double *v, size_t n)
{
	double ss = 0;
	for (size_t i = 0; i < n; i++)
		ss += v[i] * v[i];
	if (ss <= 0)
		return;
	double norm = sqrt(ss);
	for (size_t i = 0; i < n; i++)
		v[i] /= norm;
}

/* One item of the client's data array, in its encoding_format: a float array (9 significant
 * digits: every float32 exactly) or base64. The vectors are kept as text from here on (a JSON
 * tree of a few million numbers would take ten times the memory). */
static int write_item(struct buf *out, const struct embedreq *r, size_t index, const double *v,
		      size_t n)
{
	if ((out->len && buf_putc(out, ',') < 0) ||
	    buf_printf(out, "{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", index) < 0)
		return -1;
	if (r->base64) {
		if (write_base64(out, v, n) < 0)
			return -1;
	} else {
		if (buf_putc(out, '[') < 0)
			return -1;
		for (size_t i = 0; i < n; i++) {
			char num[40];
			int k = snprintf(num, sizeof(num), i ? ",%.9g" : "%.9g", v[i]);
			if (!strpbrk(num, ".e"))
				memcpy(num + k, ".0", 3);          /* a number, written as a real */
			if (buf_puts(out, num) < 0)
				return -1;
		}
		if (buf_putc(out, ']') < 0)
			return -1;
	}
	return buf_putc(out, '}');
}

static int bad_reply(const struct xlate_ctx *x, struct rerr *err, const char *what)
{
	return rerr_set(err, 502, "server_error", "bad_upstream_response", NULL,
			"%s returned an embeddings reply the router cannot read (%s).", x->prov->name,
			what);
}

static int too_large(const struct xlate_ctx *x, const struct buf *out, struct rerr *err)
{
	if (memgauge_refused())
		return rerr_server_busy(err, memgauge_cap() >> 20);
	return rerr_set(err, 413, "invalid_request_error", "request_too_large", "input",
			"The embeddings of this request come to more than %zu MiB (twice "
			"upstream.max_response_bytes), the most the router holds for one call: send fewer "
			"inputs, ask for fewer dimensions, or ask for encoding_format \"base64\" (model %s).",
			out->max >> 20, x->public_model);
}

/* Estimated tokens of inputs [from, from + count): UTF-8 bytes / 4, at least one each. */
static int64_t estimate_tokens(const json_t *client, size_t from, size_t count)
{
	int64_t t = 0;
	for (size_t i = from; i < from + count; i++) {
		const char *s = embedreq_text(client, i);
		int64_t b = s ? (int64_t)strlen(s) : 0;
		t += b / 4 + (b % 4 != 0) + (b == 0);
	}
	return t;
}

static void add_prompt(struct usage *u, int64_t tokens, int estimated)
{
	u->have = 1;
	u->prompt = (u->prompt > 0 ? u->prompt : 0) + tokens;
	u->completion = 0;
	u->total = u->prompt;
	u->estimated |= estimated;
}

/* The vectors of one reply, each slot the vector of input from + k. Returns 0, or -1 with a 502
 * in err (slots freed). gemini: Gemini's shape, whose vectors are brought to unit length. */
static int read_vectors(const struct xlate_ctx *x, const struct embedreq *r, const json_t *reply,
			size_t count, int gemini, double **slot, size_t *dims, struct rerr *err)
{
	const json_t *items = json_object_get(reply, gemini ? "embeddings" : "data");
	if (!json_is_array(items) || json_array_size(items) != count)
		return bad_reply(x, err, "not one vector per input");
	for (size_t i = 0; i < count; i++) {
		const json_t *it = json_array_get(items, i);
		const json_t *ix = gemini ? NULL : json_object_get(it, "index");
		size_t k = json_is_integer(ix) ? (size_t)json_integer_value(ix) : i;
		double *v = k < count && !slot[k]
				    ? read_vector(json_object_get(it, gemini ? "values" : "embedding"),
						  &dims[k])
				    : NULL;
		if (!v || (r->dimensions && dims[k] != (size_t)r->dimensions)) {
			free(v);
			for (size_t j = 0; j < count; j++) {
				free(slot[j]);
				slot[j] = NULL;
			}
			return bad_reply(x, err, v ? "a vector of another length than 'dimensions'"
						   : "an item without a usable vector");
		}
		if (gemini)
			normalise(v, dims[k]);
		slot[k] = v;
	}
	return 0;
}

static void reply_usage(const struct embedreq *r, const json_t *client, const json_t *reply,
			int gemini, size_t from, size_t count, struct usage *u)
{
	const json_t *usage = json_object_get(reply, gemini ? "usageMetadata" : "usage");
	int64_t p = usage_count(json_object_get(usage, gemini ? "promptTokenCount" : "prompt_tokens"));
	if (p >= 0)
		add_prompt(u, p, 0);
	else
		add_prompt(u, r->tokens ? r->token_ids : estimate_tokens(client, from, count), 1);
	const json_t *cost = json_object_get(usage, "cost");          /* OpenRouter */
	if (!gemini && json_is_number(cost) && json_number_value(cost) >= 0 &&
	    json_number_value(cost) < 1e6) {
		u->have_cost = 1;
		u->cost_nusd = cost_add(u->cost_nusd, (int64_t)llround(json_number_value(cost) * 1e9));
	}
}

int embed_parse_reply(const struct xlate_ctx *x, const struct embedreq *r, const json_t *client,
		      const char *body, size_t len, size_t from, size_t count, struct buf *items,
		      struct usage *u, struct rerr *err)
{
	json_error_t je;
	json_t *reply = jsonx_loadb(body, len, 0, &je);
	if (!json_is_object(reply)) {
		json_decref(reply);
		return bad_reply(x, err, "not a JSON object");
	}
	int gemini = x->prov->api == API_GEMINI;
	double **slot = xcalloc(count ? count : 1, sizeof(*slot));
	size_t *dims = xcalloc(count ? count : 1, sizeof(*dims));
	int rc = read_vectors(x, r, reply, count, gemini, slot, dims, err);
	if (rc == 0)
		reply_usage(r, client, reply, gemini, from, count, u);
	json_decref(reply);
	size_t before = items->len;
	for (size_t k = 0; k < count; k++) {
		if (rc == 0 && write_item(items, r, from + k, slot[k], dims[k]) < 0) {
			items->len = before;          /* nothing of this reply stays */
			items->p[before] = '\0';
			rc = too_large(x, items, err);
		}
		free(slot[k]);
	}
	free(slot);
	free(dims);
	return rc;
}

int embed_response_text(const struct xlate_ctx *x, const struct buf *items, const struct usage *u,
			struct buf *out)
{
	int64_t p = u->prompt > 0 ? u->prompt : 0;
	json_t *model = json_string(x->public_model);
	char *m = jsonx_dumps(model, JSON_ENCODE_ANY);
	json_decref(model);
	int rc = buf_puts(out, "{\"object\":\"list\",\"data\":[") < 0 ||
			 buf_append(out, buf_str(items), items->len) < 0 ||
			 buf_printf(out, "],\"model\":%s,\"usage\":{\"prompt_tokens\":%lld,"
				    "\"total_tokens\":%lld}}", m ? m : "\"\"", (long long)p,
				    (long long)p) < 0
		 ? -1 : 0;
	free(m);
	return rc;
}
