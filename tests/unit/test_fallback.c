/* test_fallback.c - fallback chains from the configuration, the retry policy, the whole decision
 * of the dispatch walk (one row per case of the README's fallback table), and model cooldown
 * (process copy and the shared table). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fallback.h"
#include "harness.h"
#include "health.h"
#include "store.h"

static struct config *load_file(const char *path, struct buf *errors)
{
	buf_init(errors, 1 << 20);
	return config_load(path, errors);
}

static struct config *load_shipped(struct buf *errors)
{
	char *path = test_repo_path("conf/llm-router.conf");
	struct config *cfg = load_file(path, errors);
	if (!cfg)
		printf("  config_load(%s) failed:\n%s", path, buf_str(errors));
	free(path);
	return cfg;
}

static size_t idx(const struct config *cfg, const char *id)
{
	int i = config_model_index(cfg, id);
	return i < 0 ? (size_t)-1 : (size_t)i;
}

/* ---- chains ---- */

TEST(fallback_every_priced_model_has_a_chain_of_other_models)
{
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	static const char *const priced[] = { "claude-opus-4-6", "claude-sonnet-4-5", "claude-haiku-4-5",
					      "gpt-4o", "gpt-4o-mini", "gpt-4-turbo", "o1", "o3-mini",
					      "gemini-2.5-pro", "gemini-2.0-flash", "deepseek-chat",
					      "deepseek-reasoner" };
	for (size_t i = 0; i < sizeof(priced) / sizeof(priced[0]); i++) {
		test_case("%s", priced[i]);
		size_t m = idx(cfg, priced[i]);
		REQUIRE(m != (size_t)-1);
		struct chain ch;
		chain_build(cfg, m, NULL, &ch);
		/* SPEC: at most 2 retries, so the chain's two fallbacks are what a request can use. */
		CHECK_INT_EQ(ch.n, 3);
		CHECK_INT_EQ(ch.model[0], m);
		for (size_t k = 1; k < ch.n; k++) {
			CHECK(ch.model[k] != m);
			CHECK(cfg->models[ch.model[k]].prefix == NULL);
			/* A fallback on another provider survives that provider's outage. */
			if (k == ch.n - 1)
				CHECK(cfg->models[ch.model[k]].provider != cfg->models[m].provider ||
				      cfg->models[ch.model[1]].provider != cfg->models[m].provider);
		}
	}
	test_case(NULL);
	/* SPEC's example chain. */
	struct chain ch;
	chain_build(cfg, idx(cfg, "claude-opus-4-6"), NULL, &ch);
	REQUIRE_INT_EQ(ch.n, 3);
	CHECK_STR_EQ(cfg->models[ch.model[1]].id, "claude-sonnet-4-5");
	CHECK_STR_EQ(cfg->models[ch.model[2]].id, "gpt-4o");
	config_free(cfg);
	buf_free(&errors);
}

TEST(fallback_task_route_puts_the_task_fallback_next)
{
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	for (size_t t = 0; t < cfg->n_tasks; t++) {
		const struct task_conf *task = &cfg->tasks[t];
		test_case("task %s", task->name);
		struct chain ch;
		chain_build(cfg, task->model, task, &ch);
		REQUIRE(ch.n >= 2);
		CHECK_INT_EQ(ch.model[0], task->model);
		CHECK_INT_EQ(ch.model[1], task->fallback);
		for (size_t a = 0; a < ch.n; a++)
			for (size_t b = a + 1; b < ch.n; b++)
				CHECK(ch.model[a] != ch.model[b]);
	}
	test_case(NULL);
	/* strategy: claude-opus-4-6 -> gpt-4o (task), then the model's own chain. */
	const struct task_conf *strategy = NULL;
	for (size_t t = 0; t < cfg->n_tasks; t++)
		if (strcmp(cfg->tasks[t].name, "strategy") == 0)
			strategy = &cfg->tasks[t];
	REQUIRE_NOT_NULL(strategy);
	struct chain ch;
	chain_build(cfg, strategy->model, strategy, &ch);
	REQUIRE_INT_EQ(ch.n, 3);
	CHECK_STR_EQ(cfg->models[ch.model[0]].id, "claude-opus-4-6");
	CHECK_STR_EQ(cfg->models[ch.model[1]].id, "gpt-4o");
	CHECK_STR_EQ(cfg->models[ch.model[2]].id, "claude-sonnet-4-5");
	/* A task route that does not start at the task's model adds nothing. */
	chain_build(cfg, idx(cfg, "gpt-4o-mini"), strategy, &ch);
	CHECK_INT_EQ(ch.model[0], idx(cfg, "gpt-4o-mini"));
	CHECK_STR_EQ(cfg->models[ch.model[1]].id, "gemini-2.0-flash");
	config_free(cfg);
	buf_free(&errors);
}

/* A small valid file with one model line replaced. */
static void check_broken_chain(const char *models, const char *want)
{
	char *path = test_path("chain.conf");
	char text[2048];
	snprintf(text, sizeof(text),
		 "providers = { openai = { api = \"openai\"; key_env = \"TEST_ROUTER_KEY\";"
		 " base_url = \"http://127.0.0.1:9/v1\"; }; };\n"
		 "models = (\n%s\n);\n"
		 "tiers = { T3 = { name = \"x\"; daily_budget_usd = 1.0; models = [\"*\"]; agents = []; }; };\n",
		 models);
	test_write_file(path, text, strlen(text));
	struct buf errors;
	struct config *cfg = load_file(path, &errors);
	CHECK(cfg == NULL);
	CHECK(strstr(buf_str(&errors), want) != NULL);
	if (!strstr(buf_str(&errors), want))
		printf("  errors: %s", buf_str(&errors));
	CHECK(strstr(buf_str(&errors), "chain.conf:") != NULL);
	config_free(cfg);
	buf_free(&errors);
	free(path);
}

TEST(fallback_chains_with_unknown_models_or_cycles_are_refused)
{
	test_case("unknown");
	check_broken_chain("{ id = \"a\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 1.0;"
			   " fallback = [\"nope\"]; }",
			   "fallback \"nope\" is not a configured model");
	test_case("itself");
	check_broken_chain("{ id = \"a\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 1.0;"
			   " fallback = [\"a\"]; }",
			   "its fallback chain contains itself (a cycle)");
	test_case("twice");
	check_broken_chain("{ id = \"a\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 1.0;"
			   " fallback = [\"b\", \"b\"]; },\n"
			   "{ id = \"b\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 1.0; }",
			   "lists \"b\" twice");
	test_case(NULL);
}

/* ---- classification and the next step ---- */

TEST(fallback_classify_statuses_and_transport)
{
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	static const struct {
		long status;
		int transport, malformed;
		enum failure_kind want;
	} rows[] = {
		{ 200, 0, 0, FAIL_NONE },       { 200, 0, 1, FAIL_MALFORMED },
		{ 0, 1, 0, FAIL_NETWORK },      { 500, 0, 0, FAIL_STATUS },
		{ 502, 0, 0, FAIL_STATUS },     { 503, 0, 0, FAIL_STATUS },
		{ 504, 0, 0, FAIL_STATUS },     { 529, 0, 0, FAIL_STATUS },
		{ 429, 0, 0, FAIL_RATE_LIMIT }, { 401, 0, 0, FAIL_AUTH },
		{ 403, 0, 0, FAIL_AUTH },       { 400, 0, 0, FAIL_FINAL },
		{ 404, 0, 0, FAIL_FINAL },      { 422, 0, 0, FAIL_FINAL },
		{ 402, 0, 0, FAIL_FINAL },      { 413, 0, 0, FAIL_FINAL },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("status %ld transport %d malformed %d", rows[i].status, rows[i].transport,
			  rows[i].malformed);
		CHECK_STR_EQ(failure_kind_name(failure_classify(cfg, rows[i].status, rows[i].transport,
								rows[i].malformed)),
			     failure_kind_name(rows[i].want));
	}
	test_case(NULL);
	/* Turning network failures off makes them final. */
	cfg->retry_on_network = 0;
	CHECK_INT_EQ(failure_classify(cfg, 0, 1, 0), FAIL_FINAL);
	CHECK_INT_EQ(failure_classify(cfg, 200, 0, 1), FAIL_FINAL);
	CHECK(!failure_counts_for_health(FAIL_FINAL));
	CHECK(!failure_counts_for_health(FAIL_CANCELLED));
	CHECK(failure_counts_for_health(FAIL_AUTH));
	config_free(cfg);
	buf_free(&errors);
}

TEST(fallback_next_step_policy)
{
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	struct chain ch;
	chain_build(cfg, idx(cfg, "claude-opus-4-6"), NULL, &ch);
	struct next_step n;
	/* A trigger status moves on; to another provider at once, to the same one after a pause. */
	fallback_next(cfg, &ch, 0, 1, FAIL_STATUS, 0, 0, 0, 0.5, &n);
	CHECK_INT_EQ(n.action, NEXT_MODEL);
	CHECK_INT_EQ(n.wait_ms, 0);
	fallback_next(cfg, &ch, 0, 1, FAIL_STATUS, 0, 0, 1, 0.5, &n);
	CHECK_INT_EQ(n.action, NEXT_MODEL);
	CHECK(n.wait_ms >= cfg->backoff_ms / 2 && n.wait_ms <= cfg->backoff_ms);
	/* Final failures and cancellations stop. */
	fallback_next(cfg, &ch, 0, 1, FAIL_FINAL, 0, 0, 0, 0.5, &n);
	CHECK_INT_EQ(n.action, NEXT_STOP);
	fallback_next(cfg, &ch, 0, 1, FAIL_CANCELLED, 0, 0, 0, 0.5, &n);
	CHECK_INT_EQ(n.action, NEXT_STOP);
	/* No attempt beyond 1 + max_retries. */
	fallback_next(cfg, &ch, 1, (size_t)cfg->max_retries + 1, FAIL_STATUS, 0, 0, 0, 0.5, &n);
	CHECK_INT_EQ(n.action, NEXT_STOP);
	/* 429: a short Retry-After is waited out on the same model, a long one moves on. */
	fallback_next(cfg, &ch, 0, 1, FAIL_RATE_LIMIT, 1, 0, 0, 0.5, &n);
	CHECK_INT_EQ(n.action, NEXT_SAME);
	CHECK_INT_EQ(n.wait_ms, 1000);
	fallback_next(cfg, &ch, 0, 1, FAIL_RATE_LIMIT, 30, 0, 0, 0.5, &n);
	CHECK_INT_EQ(n.action, NEXT_MODEL);
	fallback_next(cfg, &ch, 0, 1, FAIL_RATE_LIMIT, 0, 0, 0, 0.5, &n);
	CHECK_INT_EQ(n.action, NEXT_MODEL);
	/* 401/403 move on. */
	fallback_next(cfg, &ch, 0, 1, FAIL_AUTH, 0, 0, 0, 0.5, &n);
	CHECK_INT_EQ(n.action, NEXT_MODEL);
	/* At the end of the chain: a transient failure retries the same model, auth and long rate
	 * limits do not. */
	struct chain one = { .model = { idx(cfg, "gpt-4o") }, .n = 1 };
	fallback_next(cfg, &one, 0, 1, FAIL_NETWORK, 0, 0, 0, 0.0, &n);
	CHECK_INT_EQ(n.action, NEXT_SAME);
	CHECK_INT_EQ(n.wait_ms, cfg->backoff_ms / 2);
	fallback_next(cfg, &one, 0, 1, FAIL_AUTH, 0, 0, 0, 0.5, &n);
	CHECK_INT_EQ(n.action, NEXT_STOP);
	fallback_next(cfg, &one, 0, 1, FAIL_RATE_LIMIT, 60, 0, 0, 0.5, &n);
	CHECK_INT_EQ(n.action, NEXT_STOP);
	/* No retries configured: the first failure is the answer. */
	cfg->max_retries = 0;
	fallback_next(cfg, &ch, 0, 1, FAIL_STATUS, 0, 0, 0, 0.5, &n);
	CHECK_INT_EQ(n.action, NEXT_STOP);
	config_free(cfg);
	buf_free(&errors);
}

TEST(fallback_backoff_grows_with_jitter_and_is_capped)
{
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	cfg->backoff_ms = 100;
	cfg->backoff_max_ms = 2000;
	CHECK_INT_EQ(fallback_backoff_ms(cfg, 1, 0.0), 50);
	CHECK_INT_EQ(fallback_backoff_ms(cfg, 1, 0.999999), 99);
	CHECK_INT_EQ(fallback_backoff_ms(cfg, 2, 0.0), 100);
	CHECK_INT_EQ(fallback_backoff_ms(cfg, 3, 0.0), 200);
	CHECK_INT_EQ(fallback_backoff_ms(cfg, 10, 0.0), 1000);
	CHECK(fallback_backoff_ms(cfg, 30, 0.99) <= 2000);
	CHECK_INT_EQ(fallback_backoff_ms(cfg, 1, 7.0), 50);     /* out-of-range jitter counts as 0 */
	config_free(cfg);
	buf_free(&errors);
}

/* ---- the whole walk: README "Fallback, retries and cooldown", one row per case ---- */

enum { H_NONE, H_FAIL, H_OK, H_FAIL_OK };   /* health reports wanted */

struct decide_row {
	const char *name;
	enum fallback_event ev;
	long status;            /* FB_EV_REPLY: the status classified (failure_classify) */
	long http_status;       /* the upstream's HTTP status when it differs (a stream's error event) */
	int transport;          /* DNS, connect, timeout, stall, lost connection */
	int malformed;          /* an unreadable 2xx reply */
	int overloaded;         /* DeepSeek's reply cut short (insufficient_system_resource) */
	int partial;            /* a stream that failed after content reached the client */
	long retry_after_s;
	size_t k, n;            /* chain position and length */
	int calls, backoffs;
	int same_provider;      /* position k + 1 is on the same provider */
	int no_key;             /* FB_EV_BEFORE: the provider has no key */
	int no_retries;         /* upstream.max_retries = 0 instead of the shipped 2 */
	int64_t left_ms;        /* time to the deadline; 0 = plenty, < 0 = passed */
	enum fallback_action want;
	int64_t want_wait;
	enum fallback_why want_why;
	enum fallback_row want_row;
	int want_health;
	int want_backoff;
};

/* backoff_ms = 100 and jitter 0.5: the first backoff is 75 ms, the second 150. */
static const struct decide_row decide_rows[] = {
	/* retry_on statuses: next model; another provider at once */
	{ "500 -> next model", FB_EV_REPLY, .status = 500, .k = 0, .n = 3, .calls = 1,
	  .want = FB_NEXT_MODEL, .want_wait = 0, .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "502 -> next model", FB_EV_REPLY, .status = 502, .k = 0, .n = 3, .calls = 1,
	  .want = FB_NEXT_MODEL, .want_wait = 0, .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "503 -> next model", FB_EV_REPLY, .status = 503, .k = 0, .n = 3, .calls = 1,
	  .want = FB_NEXT_MODEL, .want_wait = 0, .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "504 -> next model", FB_EV_REPLY, .status = 504, .k = 0, .n = 3, .calls = 1,
	  .want = FB_NEXT_MODEL, .want_wait = 0, .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "529 -> next model", FB_EV_REPLY, .status = 529, .k = 0, .n = 3, .calls = 1,
	  .want = FB_NEXT_MODEL, .want_wait = 0, .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	/* network failures and unreadable replies (upstream.retry_on_network) */
	{ "DNS or connection failure -> next model", FB_EV_REPLY, .transport = 1, .k = 0, .n = 3,
	  .calls = 1, .want = FB_NEXT_MODEL, .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "timeout -> next model", FB_EV_REPLY, .transport = 1, .k = 1, .n = 3, .calls = 2,
	  .want = FB_NEXT_MODEL, .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "stream silent / connection lost -> next model", FB_EV_REPLY, .status = 200, .transport = 1,
	  .k = 0, .n = 2, .calls = 1, .want = FB_NEXT_MODEL, .want_row = FB_ROW_FAILED,
	  .want_health = H_FAIL },
	{ "unreadable 2xx body -> next model", FB_EV_REPLY, .status = 200, .malformed = 1, .k = 0,
	  .n = 3, .calls = 1, .want = FB_NEXT_MODEL, .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	/* DeepSeek's cut reply */
	{ "insufficient_system_resource, a model left -> next model", FB_EV_REPLY, .status = 200,
	  .overloaded = 1, .k = 0, .n = 3, .calls = 1, .want = FB_NEXT_MODEL,
	  .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "insufficient_system_resource, no attempt left -> the cut reply is the answer",
	  FB_EV_REPLY, .status = 200, .overloaded = 1, .k = 2, .n = 3, .calls = 3,
	  .want = FB_ANSWER, .want_row = FB_ROW_OK, .want_health = H_FAIL_OK },
	{ "insufficient_system_resource on the only model, attempts left -> same model after a "
	  "backoff", FB_EV_REPLY, .status = 200, .overloaded = 1, .k = 0, .n = 1, .calls = 1,
	  .want = FB_RETRY_SAME, .want_wait = 75, .want_row = FB_ROW_FAILED, .want_health = H_FAIL,
	  .want_backoff = 1 },
	/* the router's own key */
	{ "401 -> next model", FB_EV_REPLY, .status = 401, .k = 0, .n = 3, .calls = 1,
	  .want = FB_NEXT_MODEL, .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "403 -> next model", FB_EV_REPLY, .status = 403, .k = 1, .n = 3, .calls = 2,
	  .want = FB_NEXT_MODEL, .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "401 on the last model -> give up, not the same key again", FB_EV_REPLY, .status = 401,
	  .k = 0, .n = 1, .calls = 1, .want = FB_GIVE_UP, .want_why = FB_WHY_EXHAUSTED,
	  .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	/* rate limits */
	{ "429 Retry-After 1 s -> wait, same model", FB_EV_REPLY, .status = 429, .retry_after_s = 1,
	  .k = 0, .n = 3, .calls = 1, .want = FB_RETRY_SAME, .want_wait = 1000,
	  .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "429 Retry-After = retry_after_max_ms -> wait, same model", FB_EV_REPLY, .status = 429,
	  .retry_after_s = 2, .k = 0, .n = 3, .calls = 1, .want = FB_RETRY_SAME, .want_wait = 2000,
	  .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "429 Retry-After 3 s (long) -> next model at once", FB_EV_REPLY, .status = 429,
	  .retry_after_s = 3, .k = 0, .n = 3, .calls = 1, .want = FB_NEXT_MODEL, .want_wait = 0,
	  .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "429 without Retry-After -> next model at once", FB_EV_REPLY, .status = 429, .k = 0,
	  .n = 3, .calls = 1, .want = FB_NEXT_MODEL, .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "429 long on the last model -> give up", FB_EV_REPLY, .status = 429, .retry_after_s = 60,
	  .k = 0, .n = 1, .calls = 1, .want = FB_GIVE_UP, .want_why = FB_WHY_EXHAUSTED,
	  .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "429 error event inside a 2xx stream -> wait, same model, counted as a backoff",
	  FB_EV_REPLY, .status = 429, .http_status = 200, .retry_after_s = 1, .k = 0, .n = 3,
	  .calls = 1, .want = FB_RETRY_SAME, .want_wait = 1000, .want_row = FB_ROW_FAILED,
	  .want_health = H_FAIL, .want_backoff = 1 },
	/* the request itself is refused: the answer */
	{ "400 -> the answer", FB_EV_REPLY, .status = 400, .k = 0, .n = 3, .calls = 1,
	  .want = FB_GIVE_UP, .want_why = FB_WHY_FINAL, .want_row = FB_ROW_FAILED },
	{ "404 -> the answer", FB_EV_REPLY, .status = 404, .k = 0, .n = 3, .calls = 1,
	  .want = FB_GIVE_UP, .want_why = FB_WHY_FINAL, .want_row = FB_ROW_FAILED },
	{ "422 -> the answer", FB_EV_REPLY, .status = 422, .k = 1, .n = 3, .calls = 2,
	  .want = FB_GIVE_UP, .want_why = FB_WHY_FINAL, .want_row = FB_ROW_FAILED },
	{ "402 -> the answer", FB_EV_REPLY, .status = 402, .k = 0, .n = 3, .calls = 1,
	  .want = FB_GIVE_UP, .want_why = FB_WHY_FINAL, .want_row = FB_ROW_FAILED },
	{ "413 -> the answer", FB_EV_REPLY, .status = 413, .k = 0, .n = 3, .calls = 1,
	  .want = FB_GIVE_UP, .want_why = FB_WHY_FINAL, .want_row = FB_ROW_FAILED },
	/* at most 1 + max_retries calls */
	{ "500 on the third call -> give up", FB_EV_REPLY, .status = 500, .k = 2, .n = 3, .calls = 3,
	  .want = FB_GIVE_UP, .want_why = FB_WHY_EXHAUSTED, .want_row = FB_ROW_FAILED,
	  .want_health = H_FAIL },
	{ "max_retries 0: the first failure -> give up", FB_EV_REPLY, .status = 500, .k = 0, .n = 3,
	  .calls = 1, .no_retries = 1, .want = FB_GIVE_UP, .want_why = FB_WHY_EXHAUSTED,
	  .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "before a fourth call -> give up", FB_EV_BEFORE, .k = 2, .n = 3, .calls = 3,
	  .want = FB_GIVE_UP, .want_why = FB_WHY_EXHAUSTED },
	{ "before a call with attempts left -> call", FB_EV_BEFORE, .k = 1, .n = 3, .calls = 1,
	  .want = FB_CALL },
	{ "chain used up, 500 with calls left -> same model after a backoff", FB_EV_REPLY,
	  .status = 500, .k = 0, .n = 1, .calls = 1, .want = FB_RETRY_SAME, .want_wait = 75,
	  .want_row = FB_ROW_FAILED, .want_health = H_FAIL, .want_backoff = 1 },
	{ "chain used up, timeout, second backoff -> same model after a longer one", FB_EV_REPLY,
	  .transport = 1, .k = 0, .n = 1, .calls = 2, .backoffs = 1, .want = FB_RETRY_SAME,
	  .want_wait = 150, .want_row = FB_ROW_FAILED, .want_health = H_FAIL, .want_backoff = 1 },
	{ "past the chain's end -> give up (all models failed)", FB_EV_BEFORE, .k = 3, .n = 3,
	  .calls = 2, .want = FB_GIVE_UP, .want_why = FB_WHY_EXHAUSTED },
	/* the deadline */
	{ "deadline passed before a call -> give up", FB_EV_BEFORE, .k = 1, .n = 3, .calls = 1,
	  .left_ms = -1, .want = FB_GIVE_UP, .want_why = FB_WHY_DEADLINE },
	{ "backoff that would cross the deadline -> give up", FB_EV_REPLY, .status = 500, .k = 0,
	  .n = 3, .calls = 1, .same_provider = 1, .left_ms = 50, .want = FB_GIVE_UP, .want_wait = 75,
	  .want_why = FB_WHY_NO_TIME, .want_row = FB_ROW_FAILED, .want_health = H_FAIL },
	{ "Retry-After that would cross the deadline -> give up", FB_EV_REPLY, .status = 429,
	  .retry_after_s = 1, .k = 0, .n = 3, .calls = 1, .left_ms = 500, .want = FB_GIVE_UP,
	  .want_wait = 1000, .want_why = FB_WHY_NO_TIME, .want_row = FB_ROW_FAILED,
	  .want_health = H_FAIL },
	{ "next provider at once, even with little time left", FB_EV_REPLY, .status = 503, .k = 0,
	  .n = 3, .calls = 1, .left_ms = 1, .want = FB_NEXT_MODEL, .want_row = FB_ROW_FAILED,
	  .want_health = H_FAIL },
	/* models passed over without a call */
	{ "model cooling down -> skipped", FB_EV_COOLING, .k = 0, .n = 3, .want = FB_SKIP,
	  .want_row = FB_ROW_SKIPPED },
	{ "last model cooling down -> skipped (then give up)", FB_EV_COOLING, .k = 2, .n = 3,
	  .calls = 1, .want = FB_SKIP, .want_row = FB_ROW_SKIPPED },
	{ "provider without a key -> skipped", FB_EV_BEFORE, .k = 0, .n = 3, .no_key = 1,
	  .want = FB_SKIP, .want_row = FB_ROW_SKIPPED },
	{ "provider without a key, no attempt left -> skipped all the same", FB_EV_BEFORE, .k = 2,
	  .n = 3, .calls = 3, .no_key = 1, .want = FB_SKIP, .want_row = FB_ROW_SKIPPED },
	{ "no adapter for the API -> skipped", FB_EV_UNAVAILABLE, .k = 0, .n = 2, .want = FB_SKIP,
	  .want_row = FB_ROW_SKIPPED },
	{ "routed model's translator refuses the request -> the answer", FB_EV_REFUSED, .k = 0,
	  .n = 3, .want = FB_ANSWER },
	{ "fallback model's translator refuses the request -> skipped", FB_EV_REFUSED, .k = 1,
	  .n = 3, .calls = 1, .want = FB_SKIP, .want_row = FB_ROW_SKIPPED },
	/* same provider: a pause; another provider: at once */
	{ "500, next model on the same provider -> after a backoff", FB_EV_REPLY, .status = 500,
	  .k = 0, .n = 3, .calls = 1, .same_provider = 1, .want = FB_NEXT_MODEL, .want_wait = 75,
	  .want_row = FB_ROW_FAILED, .want_health = H_FAIL, .want_backoff = 1 },
	{ "500, same provider, second backoff -> twice as long", FB_EV_REPLY, .status = 500,
	  .k = 1, .n = 3, .calls = 2, .backoffs = 1, .same_provider = 1, .want = FB_NEXT_MODEL,
	  .want_wait = 150, .want_row = FB_ROW_FAILED, .want_health = H_FAIL, .want_backoff = 1 },
	{ "401, next model on the same provider -> after a backoff", FB_EV_REPLY, .status = 401,
	  .k = 0, .n = 3, .calls = 1, .same_provider = 1, .want = FB_NEXT_MODEL, .want_wait = 75,
	  .want_row = FB_ROW_FAILED, .want_health = H_FAIL, .want_backoff = 1 },
	/* answers */
	{ "2xx reply -> the answer", FB_EV_REPLY, .status = 200, .k = 0, .n = 3, .calls = 1,
	  .want = FB_ANSWER, .want_row = FB_ROW_OK, .want_health = H_OK },
	{ "stream broken after content -> the answer, partial", FB_EV_REPLY, .status = 200,
	  .partial = 1, .k = 0, .n = 3, .calls = 1, .want = FB_ANSWER, .want_row = FB_ROW_PARTIAL,
	  .want_health = H_FAIL },
	/* the client leaving */
	{ "client left during the call -> stop", FB_EV_CLIENT_GONE, .k = 0, .n = 3, .calls = 1,
	  .want = FB_CLIENT_GONE, .want_row = FB_ROW_CANCELLED },
	{ "client left during a fallback's stream -> stop", FB_EV_CLIENT_GONE, .k = 1, .n = 3,
	  .calls = 2, .want = FB_CLIENT_GONE, .want_row = FB_ROW_CANCELLED },
};

static const char *action_name(enum fallback_action a)
{
	static const char *const names[] = { "call", "skip", "next model", "retry same", "answer",
					     "give up", "client gone" };
	return (size_t)a < sizeof(names) / sizeof(names[0]) ? names[a] : "?";
}

TEST(fallback_decide_follows_the_readme_table)
{
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	REQUIRE_INT_EQ(cfg->max_retries, 2);
	cfg->backoff_ms = 100;
	cfg->backoff_max_ms = 2000;
	cfg->retry_after_max_ms = 2000;
	for (size_t i = 0; i < sizeof(decide_rows) / sizeof(decide_rows[0]); i++) {
		const struct decide_row *r = &decide_rows[i];
		test_case("%s", r->name);
		cfg->max_retries = r->no_retries ? 0 : 2;
		struct fallback_input in;
		memset(&in, 0, sizeof(in));
		in.event = r->ev;
		in.k = r->k;
		in.n = r->n;
		in.provider_available = !r->no_key;
		in.kind = r->overloaded ? FAIL_OVERLOAD
					: failure_classify(cfg, r->status, r->transport, r->malformed);
		in.partial = r->partial;
		in.http_status = r->http_status ? r->http_status : r->status;
		in.retry_after_s = r->retry_after_s;
		in.calls = r->calls;
		in.backoffs = r->backoffs;
		in.same_provider = r->same_provider;
		in.time_left_us = r->left_ms == 0 ? 300000000LL : r->left_ms < 0 ? 0 : r->left_ms * 1000;
		in.jitter = 0.5;
		struct fallback_step st;
		fallback_decide(cfg, &in, &st);
		CHECK_STR_EQ(action_name(st.action), action_name(r->want));
		CHECK_INT_EQ(st.wait_ms, r->want_wait);
		CHECK_INT_EQ(st.why, r->want_why);
		CHECK_INT_EQ(st.row, r->want_row);
		CHECK_INT_EQ(st.health_failure, r->want_health == H_FAIL || r->want_health == H_FAIL_OK);
		CHECK_INT_EQ(st.health_success, r->want_health == H_OK || r->want_health == H_FAIL_OK);
		CHECK_INT_EQ(st.backoff, r->want_backoff);
		if (r->want_why == FB_WHY_NO_TIME)
			CHECK_STR_EQ(action_name(st.planned), action_name(r->status == 429 ? FB_RETRY_SAME
											    : FB_NEXT_MODEL));
	}
	test_case(NULL);
	config_free(cfg);
	buf_free(&errors);
}

/* ---- cooldown ---- */

static struct store *the_store;
static struct store *get_store(void *ud)
{
	(void)ud;
	return the_store;
}

TEST(health_local_copy_trips_after_k_failures_and_probes_once)
{
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	cfg->cooldown_failures = 3;
	cfg->cooldown_window_s = 60;
	cfg->cooldown_s = 1;
	health_reset();
	int64_t until;
	CHECK_INT_EQ(health_check(cfg, "m", NULL, &until), HEALTH_OK);
	health_report(cfg, "m", 0, "boom", NULL);
	health_report(cfg, "m", 0, "boom", NULL);
	CHECK_INT_EQ(health_check(cfg, "m", NULL, &until), HEALTH_OK);
	/* A success in between starts the count over. */
	health_report(cfg, "m", 1, NULL, NULL);
	health_report(cfg, "m", 0, "boom", NULL);
	health_report(cfg, "m", 0, "boom", NULL);
	CHECK_INT_EQ(health_check(cfg, "m", NULL, &until), HEALTH_OK);
	health_report(cfg, "m", 0, "boom", NULL);
	CHECK_INT_EQ(health_check(cfg, "m", NULL, &until), HEALTH_COOLING);
	CHECK(until > 0);
	CHECK_INT_EQ(health_check(cfg, "other", NULL, &until), HEALTH_OK);
	usleep(1100 * 1000);
	/* One probe; the others keep skipping while it runs. */
	CHECK_INT_EQ(health_check(cfg, "m", NULL, &until), HEALTH_PROBE);
	CHECK_INT_EQ(health_check(cfg, "m", NULL, &until), HEALTH_COOLING);
	/* A failed probe starts the next cooldown at once. */
	health_report(cfg, "m", 0, "still down", NULL);
	CHECK_INT_EQ(health_check(cfg, "m", NULL, &until), HEALTH_COOLING);
	usleep(1100 * 1000);
	CHECK_INT_EQ(health_check(cfg, "m", NULL, &until), HEALTH_PROBE);
	health_report(cfg, "m", 1, NULL, NULL);
	CHECK_INT_EQ(health_check(cfg, "m", NULL, &until), HEALTH_OK);
	/* failures = 0 turns cooldown off. */
	cfg->cooldown_failures = 0;
	for (int i = 0; i < 10; i++)
		health_report(cfg, "n", 0, "x", NULL);
	CHECK_INT_EQ(health_check(cfg, "n", NULL, &until), HEALTH_OK);
	config_free(cfg);
	buf_free(&errors);
}

TEST(health_state_is_shared_through_the_database)
{
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	cfg->cooldown_failures = 2;
	cfg->cooldown_window_s = 60;
	cfg->cooldown_s = 1;
	char *path = test_path("health.db");
	struct store_opts o = { .path = path, .busy_timeout_ms = 2000 };
	char err[256];
	the_store = store_open(&o, err, sizeof(err));
	REQUIRE_NOT_NULL(the_store);
	struct health_source src = { get_store, NULL };
	health_reset();
	health_report(cfg, "shared", 0, "e1", &src);
	health_report(cfg, "shared", 0, "e2", &src);
	int64_t until;
	CHECK_INT_EQ(health_check(cfg, "shared", &src, &until), HEALTH_COOLING);
	/* Another process: no copy of its own, reads the table. */
	health_reset();
	CHECK_INT_EQ(health_check(cfg, "shared", &src, &until), HEALTH_COOLING);
	usleep(1100 * 1000);
	/* After the cooldown exactly one process wins the probe. */
	CHECK_INT_EQ(health_check(cfg, "shared", &src, &until), HEALTH_PROBE);
	health_reset();
	CHECK_INT_EQ(health_check(cfg, "shared", &src, &until), HEALTH_COOLING);
	/* The probe's success clears the table for everybody. */
	health_report(cfg, "shared", 1, NULL, &src);
	health_reset();
	CHECK_INT_EQ(health_check(cfg, "shared", &src, &until), HEALTH_OK);
	store_close(the_store);
	the_store = NULL;
	free(path);
	config_free(cfg);
	buf_free(&errors);
}
