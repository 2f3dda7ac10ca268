/* api_models.c - GET /v1/models and GET /v1/models/{id}: the configured routes in OpenAI's shape.
 *
 * Each model carries, beside OpenAI's fields, `available` (its provider has a key, or the demo
 * upstream serves it), `endpoints` (["/v1/chat/completions"] or ["/v1/embeddings"]), an embedding
 * model's `dimensions`, a chat model's `capabilities` (beyond text: tools, images, json_object,
 * json_schema), and, for the OpenRouter route, `passthrough`. The list also carries a
 * `providers` array telling which providers are available and, if not, why; clients that only
 * know OpenAI's shape ignore both.
 */
#include <string.h>

#include "api.h"
#include "util.h"

static json_t *model_object(const struct config *cfg, const struct model_conf *m,
			    const char *id)
{
	const struct provider_conf *p = &cfg->providers[m->provider];
	json_t *o = json_object();
	json_object_set_new(o, "id", json_string(id));
	json_object_set_new(o, "object", json_string("model"));
	json_object_set_new(o, "created", json_integer(m->created));
	json_object_set_new(o, "owned_by", json_string(p->name));
	json_object_set_new(o, "available", json_boolean(p->available));
	/* What the model serves: a chat model never embeds, an embedding model never chats. */
	json_object_set_new(o, "endpoints", json_pack("[s]", m->embedding ? "/v1/embeddings"
								    : "/v1/chat/completions"));
	if (m->embedding && m->dimensions)
		json_object_set_new(o, "dimensions", json_integer(m->dimensions));
	if (!m->embedding) {
		json_t *caps = json_array();
		for (int k = 0; config_cap_names[k]; k++)
			if (m->caps & (1u << k))
				json_array_append_new(caps, json_string(config_cap_names[k]));
		json_object_set_new(o, "capabilities", caps);
	}
	if (p->demo)
		json_object_set_new(o, "served_by", json_string("demo"));
	if (m->prefix)
		json_object_set_new(o, "passthrough", json_true());
	return o;
}

void api_models_list(struct request_ctx *rc)
{
	const struct config *cfg = rc->cfg;
	json_t *data = json_array();
	for (size_t i = 0; i < cfg->n_models; i++)
		json_array_append_new(data, model_object(cfg, &cfg->models[i], cfg->models[i].id));
	json_t *provs = json_array();
	for (size_t i = 0; i < cfg->n_providers; i++) {
		const struct provider_conf *p = &cfg->providers[i];
		json_t *o = json_object();
		json_object_set_new(o, "id", json_string(p->name));
		json_object_set_new(o, "api", json_string(provider_api_name(p->api)));
		json_object_set_new(o, "available", json_boolean(p->available));
		json_object_set_new(o, "status", json_string(p->demo ? "demo" : p->available ? "active"
											      : "unavailable"));
		if (p->unavailable_reason)
			json_object_set_new(o, "reason", json_string(p->unavailable_reason));
		json_array_append_new(provs, o);
	}
	json_t *body = json_object();
	json_object_set_new(body, "object", json_string("list"));
	json_object_set_new(body, "data", data);
	json_object_set_new(body, "providers", provs);
	resp_json(&rc->resp, 200, body);
	json_decref(body);
}

void api_models_get(struct request_ctx *rc)
{
	/* Clients percent-encode the id ("openrouter%2Fopenai%2Fgpt-4o"). */
	char *id = url_decode(rc->req.path + strlen("/v1/models/"));
	/* An id that is not UTF-8 is no model's (a pass-through route would take it otherwise). */
	const struct model_conf *m = id && utf8_valid(id) ? config_find_model(rc->cfg, id, NULL) : NULL;
	if (!m) {
		struct rerr e;
		rerr_clear(&e);
		rerr_set(&e, 404, "invalid_request_error", "model_not_found", "model",
			 "The model '%s' does not exist.", id ? id : rc->req.path);
		resp_error(&rc->resp, &e);
		free(id);
		return;
	}
	json_t *o = model_object(rc->cfg, m, id);
	resp_json(&rc->resp, 200, o);
	json_decref(o);
	free(id);
}
