/* gemini.c - placeholder until the adapter lands. */
#include "provider.h"

static int stub_build(const struct xlate_ctx *x, const json_t *client, struct upstream_req *out,
		      struct buf *dropped, struct rerr *err)
{
	(void)client;
	(void)out;
	(void)dropped;
	return rerr_set(err, 503, "provider_unavailable", "adapter_unavailable", "model",
			"Model %s is unavailable: no adapter yet.", x->public_model);
}

const struct provider_ops provider_gemini = {
	.api = "gemini",
	.build_request = stub_build,
};
