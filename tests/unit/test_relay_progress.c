/* test_relay_progress.c - what a stream's pieces carried, for the caller's timers (issue 13):
 * comments and pings are no progress, a role-only chunk is data but not content, the first
 * content (or tool call) event ends the wait for content. */
#include <string.h>

#include "harness.h"
#include "relay.h"

struct pfix {
	struct config cfg;
	struct provider_conf prov;
	struct model_conf model;
	struct xlate_ctx x;
	struct buf out;
};

static int pfix_write(void *ud, const char *p, size_t n)
{
	return buf_append(ud, p, n);
}

static void pfix_init(struct pfix *f, struct relay *r, const struct provider_ops *ops,
		      enum provider_api api)
{
	memset(f, 0, sizeof(*f));
	f->prov.name = "openrouter";
	f->prov.api = api;
	f->prov.key_env = "K";
	f->prov.api_key = "k";
	f->prov.base_url = "https://example.invalid/v1";
	f->model.id = "m";
	f->model.upstream = "m";
	f->x.cfg = &f->cfg;
	f->x.prov = &f->prov;
	f->x.model = &f->model;
	f->x.upstream_model = "m";
	f->x.public_model = "m";
	f->x.id = "chatcmpl-progress";
	f->x.stream = 1;
	buf_init(&f->out, BUF_UNLIMITED);
	struct relay_sink sink = { pfix_write, &f->out };
	relay_init(r, ops, &f->x, &sink);
}

#define FEED(r, s) relay_feed((r), (s), strlen(s))

TEST(relay_progress_comments_role_chunks_and_content)
{
	struct pfix f;
	struct relay r;
	pfix_init(&f, &r, &provider_openai, API_OPENAI);
	for (int i = 0; i < 50; i++)
		CHECK_INT_EQ(FEED(&r, ": OPENROUTER PROCESSING\n\n"), 0);
	CHECK_INT_EQ(r.progress_events, 0);
	CHECK_INT_EQ(r.first_content_us, 0);
	CHECK_INT_EQ(FEED(&r, "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"), 0);
	CHECK_INT_EQ(r.progress_events, 1);
	CHECK_INT_EQ(r.first_content_us, 0);
	/* Half an event is nothing yet. */
	CHECK_INT_EQ(FEED(&r, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}"), 0);
	CHECK_INT_EQ(r.progress_events, 1);
	CHECK_INT_EQ(FEED(&r, "\n\n"), 0);
	CHECK_INT_EQ(r.progress_events, 2);
	CHECK(r.first_content_us > 0);
	relay_free(&r);
	buf_free(&f.out);
}

TEST(relay_progress_a_tool_call_is_content)
{
	struct pfix f;
	struct relay r;
	pfix_init(&f, &r, &provider_openai, API_OPENAI);
	CHECK_INT_EQ(FEED(&r, "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n"), 0);
	CHECK(r.first_content_us > 0);
	relay_free(&r);
	buf_free(&f.out);
}

TEST(relay_progress_anthropic_pings_are_no_progress)
{
	struct pfix f;
	struct relay r;
	pfix_init(&f, &r, &provider_anthropic, API_ANTHROPIC);
	for (int i = 0; i < 20; i++)
		CHECK_INT_EQ(FEED(&r, "event: ping\ndata: {\"type\":\"ping\"}\n\n"), 0);
	CHECK_INT_EQ(r.progress_events, 0);
	CHECK_INT_EQ(r.first_content_us, 0);
	relay_free(&r);
	buf_free(&f.out);
}
