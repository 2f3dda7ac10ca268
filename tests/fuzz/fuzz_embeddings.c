/* fuzz_embeddings.c - POST /v1/embeddings: the request parser (embedreq_parse) and translator
 * (embed_build_request) on the input as a client body, and the reply parser (embed_parse_reply)
 * on the same bytes as an upstream reply, for an OpenAI and a Gemini embedding model.
 *
 * Properties: a request is refused with a valid envelope (400/413/503) or validated with 1 to
 * EMBEDREQ_MAX_INPUTS inputs; a translated request is JSON that goes to the model's embeddings URL
 * and never carries the key in its body or URL; Gemini gets at most 100 inputs per call. A reply
 * is refused with a 502 (413 past the items' limit) and appends nothing, or gives a reply that
 * parses as JSON with exactly one item per input, indexed in order, each a float array or a
 * base64 string (as the client asked), with usage prompt = total >= 0.
 */
#include <stdint.h>
#include <string.h>

#include "embedreq.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct xlate_ctx em_ctx[2];
static const char *const em_models[2] = { "text-embedding-3-small", "gemini-embedding-001" };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	fuzz_load_config(argv);
	for (size_t i = 0; i < 2; i++) {
		const char *up = NULL;
		const struct model_conf *m = config_find_model(fuzz_cfg, em_models[i], &up);
		if (!m || !m->embedding) {
			fprintf(stderr, "fuzz: embedding model %s is not configured\n", em_models[i]);
			exit(2);
		}
		struct xlate_ctx *x = &em_ctx[i];
		memset(x, 0, sizeof(*x));
		x->cfg = fuzz_cfg;
		x->prov = &fuzz_cfg->providers[m->provider];
		x->model = m;
		x->upstream_model = up;
		x->public_model = em_models[i];
		x->id = "chatcmpl-fuzz0123456789";
		x->created = 1767225600;
		x->embed = 1;
	}
	return 0;
}

static int client_has_key;

static void check_request(const struct xlate_ctx *x, const json_t *body, const struct embedreq *r)
{
	for (size_t from = 0; from < r->n; from += embed_chunk(x, r->n)) {
		size_t per = embed_chunk(x, r->n);
		size_t count = r->n - from < per ? r->n - from : per;
		FUZZ_ASSERT(count >= 1 && count <= (x->prov->api == API_GEMINI ? 100u : r->n));
		struct upstream_req u;
		memset(&u, 0, sizeof(u));
		struct buf dropped;
		buf_init(&dropped, 4096);
		struct rerr err;
		rerr_clear(&err);
		if (embed_build_request(x, body, r, from, count, &u, &dropped, &err) == 0) {
			json_error_t je;
			json_t *j = json_loadb(u.body, u.body_len, 0, &je);
			FUZZ_ASSERT(json_is_object(j));
			FUZZ_ASSERT(strstr(u.url, "mbed") != NULL);
			/* (unless the client itself sent the key's text) */
			if (x->prov->api_key && x->prov->api_key[0] && !client_has_key) {
				FUZZ_ASSERT(strstr(u.body, x->prov->api_key) == NULL);
				FUZZ_ASSERT(strstr(u.url, x->prov->api_key) == NULL);
			}
			if (x->prov->api == API_GEMINI)
				FUZZ_ASSERT(json_array_size(json_object_get(j, "requests")) == count);
			json_decref(j);
		} else {
			fuzz_check_rerr(&err, 1);
			FUZZ_ASSERT(err.status == 400);
		}
		upstream_req_free(&u);
		buf_free(&dropped);
	}
}

static void check_reply(const struct xlate_ctx *x, const struct embedreq *r, const json_t *client,
			const uint8_t *data, size_t size)
{
	size_t count = embed_chunk(x, r->n);
	struct buf items, text;
	buf_init(&items, 1 << 20);
	buf_init(&text, BUF_UNLIMITED);
	struct usage u;
	usage_init(&u);
	struct rerr err;
	rerr_clear(&err);
	if (embed_parse_reply(x, r, client, (const char *)data, size, 0, count, &items, &u, &err) == 0) {
		FUZZ_ASSERT(u.have && u.prompt >= 0 && u.total == u.prompt && u.completion == 0);
		FUZZ_ASSERT(embed_response_text(x, &items, &u, &text) == 0);
		json_error_t je;
		json_t *resp = json_loadb(text.p, text.len, 0, &je);
		FUZZ_ASSERT(json_is_object(resp));
		const json_t *d = json_object_get(resp, "data");
		FUZZ_ASSERT(json_array_size(d) == count);
		for (size_t i = 0; i < count; i++) {
			const json_t *it = json_array_get(d, i);
			FUZZ_ASSERT((size_t)json_integer_value(json_object_get(it, "index")) == i);
			const json_t *e = json_object_get(it, "embedding");
			if (r->base64)
				FUZZ_ASSERT(json_is_string(e) && json_string_length(e) % 4 == 0 &&
					    json_string_length(e) > 0);
			else
				FUZZ_ASSERT(json_is_array(e) && json_array_size(e) > 0);
		}
		FUZZ_ASSERT(strcmp(json_string_value(json_object_get(resp, "model")), x->public_model) == 0);
		json_decref(resp);
	} else {
		fuzz_check_rerr(&err, 1);
		FUZZ_ASSERT(err.status == 502 || err.status == 413);
		FUZZ_ASSERT(items.len == 0);
	}
	usage_clear(&u);
	buf_free(&items);
	buf_free(&text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *body = NULL;
	struct embedreq r;
	struct rerr err;
	rerr_clear(&err);
	client_has_key = memmem(data, size, FUZZ_SECRET, strlen(FUZZ_SECRET)) != NULL;
	if (embedreq_parse((const char *)data, size, &body, &r, &err) == 0) {
		FUZZ_ASSERT(r.n >= 1 && r.n <= EMBEDREQ_MAX_INPUTS);
		for (size_t i = 0; i < 2; i++)
			check_request(&em_ctx[i], body, &r);
	} else {
		fuzz_check_rerr(&err, 1);
		FUZZ_ASSERT(err.status == 400 || err.status == 413 || err.status == 503);
	}
	json_decref(body);
	/* The same bytes as the reply to a fixed request of three texts, in both encodings. */
	static const char *const reqs[2] = {
		"{\"model\":\"m\",\"input\":[\"a\",\"bb\",\"ccc\"],\"dimensions\":2}",
		"{\"model\":\"m\",\"input\":[\"a\",\"bb\",\"ccc\"],\"encoding_format\":\"base64\"}",
	};
	for (size_t k = 0; k < 2; k++) {
		json_t *client = NULL;
		rerr_clear(&err);
		FUZZ_ASSERT(embedreq_parse(reqs[k], strlen(reqs[k]), &client, &r, &err) == 0);
		for (size_t i = 0; i < 2; i++)
			check_reply(&em_ctx[i], &r, client, data, size);
		json_decref(client);
	}
	return 0;
}
