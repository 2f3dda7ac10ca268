/* test_config.c - the shipped configuration, lookups, broken files and the environment.
 *
 * Broken files are variations of one small valid file (`base_lines`): each row replaces one line
 * and names the exact first error line config_load must report ("FILE:LINE: reason").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "harness.h"
#include "util.h"

static const char *const router_env[] = {
	"OPENAI_API_KEY",     "OPENAI_BASE_URL",     "ANTHROPIC_API_KEY",  "ANTHROPIC_BASE_URL",
	"GEMINI_API_KEY",     "GEMINI_BASE_URL",     "DEEPSEEK_API_KEY",   "DEEPSEEK_BASE_URL",
	"OPENROUTER_API_KEY", "OPENROUTER_BASE_URL", "GROQ_API_KEY",       "GROQ_BASE_URL",
	"LLM_ROUTER_DEMO_URL", "LLM_ROUTER_HOME",    "TEST_ROUTER_KEY",    "TEST_ROUTER_URL",
};

/* Every test starts from an environment without provider keys or router variables. */
static void clear_router_env(void)
{
	for (size_t i = 0; i < sizeof(router_env) / sizeof(router_env[0]); i++)
		unsetenv(router_env[i]);
}

static struct config *load_shipped(struct buf *errors)
{
	char *path = test_repo_path("conf/llm-router.conf");
	buf_init(errors, 1 << 20);
	struct config *cfg = config_load(path, errors);
	if (!cfg)
		printf("  config_load(%s) failed:\n%s", path, buf_str(errors));
	free(path);
	return cfg;
}

/* ---- the shipped file ---- */

TEST(config_shipped_file_loads)
{
	clear_router_env();
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	CHECK_STR_EQ(buf_str(&errors), "");
	CHECK_INT_EQ(cfg->n_providers, 6);
	CHECK_INT_EQ(cfg->n_models, 16);
	CHECK_INT_EQ(cfg->n_tiers, 4);
	CHECK_INT_EQ(cfg->n_tasks, 7);
	CHECK_INT_EQ(cfg->refs, 1);
	CHECK(cfg->path[0] == '/');

	static const char *const providers[] = { "openai", "anthropic", "gemini",
						 "deepseek", "openrouter", "groq" };
	static const enum provider_api apis[] = { API_OPENAI, API_ANTHROPIC, API_GEMINI,
						  API_OPENAI, API_OPENAI,    API_OPENAI };
	for (size_t i = 0; i < 6 && i < cfg->n_providers; i++) {
		test_case("provider %s", providers[i]);
		CHECK_STR_EQ(cfg->providers[i].name, providers[i]);
		CHECK_INT_EQ(cfg->providers[i].api, apis[i]);
		/* No key in the environment and no demo URL: unavailable, with the reason. */
		CHECK_INT_EQ(cfg->providers[i].available, 0);
		CHECK_NULL(cfg->providers[i].api_key);
	}
	test_case(NULL);
	CHECK_STR_EQ(provider_api_name(API_OPENAI), "openai");
	CHECK_STR_EQ(provider_api_name(API_ANTHROPIC), "anthropic");
	CHECK_STR_EQ(provider_api_name(API_GEMINI), "gemini");
	config_free(cfg);
	buf_free(&errors);
}

TEST(config_shipped_defaults_and_sections)
{
	clear_router_env();
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	CHECK_INT_EQ(cfg->threads, 8);
	CHECK_INT_EQ(cfg->max_body_bytes, 8388608);
	CHECK_INT_EQ(cfg->reload_interval_s, 2);
	CHECK_INT_EQ(cfg->max_threads, 1024);
	CHECK_INT_EQ(cfg->call_memory_mb, 256);
	CHECK_STR_EQ(cfg->log_level, "info");
	CHECK_INT_EQ(cfg->retention_days, 90);
	CHECK_INT_EQ(cfg->busy_timeout_ms, 5000);
	CHECK_STR_EQ(cfg->synchronous, "normal");
	CHECK_INT_EQ(cfg->checkpoint_pages, 1000);
	CHECK_INT_EQ(cfg->connect_timeout_ms, 10000);
	CHECK_INT_EQ(cfg->timeout_ms, 120000);
	CHECK_INT_EQ(cfg->stream_idle_timeout_ms, 60000);
	CHECK_INT_EQ(cfg->keepalive_interval_ms, 15000);
	CHECK_INT_EQ(cfg->max_retries, 2);
	REQUIRE_INT_EQ(cfg->retry_on.n, 5);
	static const int64_t retry[] = { 500, 502, 503, 504, 529 };
	for (size_t i = 0; i < 5; i++)
		CHECK_INT_EQ(cfg->retry_on.v[i], retry[i]);
	CHECK_INT_EQ(cfg->max_response_bytes, 16777216);
	CHECK_STR_EQ(cfg->proxy, "");
	CHECK_STR_EQ(cfg->ca_file, "");
	CHECK_INT_EQ(cfg->strict_params, 0);
	CHECK_INT_EQ(cfg->reasoning_prefixes.n, 4);
	CHECK_STR_EQ(cfg->demo_url_env, "LLM_ROUTER_DEMO_URL");
	CHECK_STR_EQ(cfg->default_tier_name, "T3");
	CHECK_STR_EQ(cfg->auth_mode, "key");
	CHECK_STR_EQ(cfg->agent_header, "X-Agent-Name");
	CHECK_INT_EQ(cfg->warn_percent, 90);
	CHECK_INT_EQ(cfg->block_percent, 100);
	/* Relative storage paths resolve against the home: the directory above conf/. */
	char *db = test_repo_path("data/llm_logs.db");
	char *jl = test_repo_path("data/llm_logs_fallback.jsonl");
	CHECK_STR_EQ(cfg->db_path, db);
	CHECK_STR_EQ(cfg->fallback_jsonl, jl);
	CHECK_STR_EQ(cfg->home, test_repo_root());
	free(db);
	free(jl);
	/* The source list holds the main file. */
	CHECK_INT_GE(cfg->sources.n, 1);
	if (cfg->sources.n)
		CHECK_STR_EQ(cfg->sources.v[0], cfg->path);
	config_free(cfg);
	buf_free(&errors);
}

TEST(config_shipped_provider_rows)
{
	clear_router_env();
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	REQUIRE_INT_EQ(cfg->n_providers, 6);
	const struct provider_conf *openai = &cfg->providers[0];
	const struct provider_conf *deepseek = &cfg->providers[3];
	const struct provider_conf *openrouter = &cfg->providers[4];
	const struct provider_conf *groq = &cfg->providers[5];
	CHECK_STR_EQ(openai->key_env, "OPENAI_API_KEY");
	CHECK_STR_EQ(openai->base_url, "https://api.openai.com/v1");
	CHECK_STR_EQ(openai->developer_role, "developer");
	CHECK_INT_EQ(openai->max_n, 0);
	CHECK_STR_EQ(deepseek->developer_role, "system");
	CHECK_INT_EQ(deepseek->keep_reasoning_content, 1);
	CHECK_STR_EQ(deepseek->base_url, "https://api.deepseek.com");
	CHECK_STR_EQ(openrouter->reasoning_field, "reasoning");
	REQUIRE_INT_EQ(openrouter->headers.n, 1);
	CHECK_STR_EQ(openrouter->headers.v[0], "X-OpenRouter-Title: LLM Router");
	CHECK_INT_EQ(openai->custom_tools, 1);
	CHECK_INT_EQ(openai->reject_params.n, 0);
	CHECK_INT_EQ(deepseek->custom_tools, 0);
	REQUIRE_INT_EQ(deepseek->reject_params.n, 2);
	CHECK_STR_EQ(deepseek->reject_params.v[0], "audio");
	CHECK_STR_EQ(deepseek->reject_params.v[1], "modalities");
	CHECK_INT_GE(deepseek->unsupported_params.n, 1);
	CHECK_STR_EQ(groq->developer_role, "system");
	CHECK_INT_EQ(groq->strip_message_name, 1);
	CHECK_INT_EQ(groq->max_n, 1);
	CHECK_INT_EQ(groq->custom_tools, 0);
	REQUIRE_INT_GE(groq->unsupported_params.n, 3);
	CHECK_STR_EQ(groq->unsupported_params.v[0], "logprobs");
	CHECK_STR_EQ(groq->unsupported_params.v[1], "top_logprobs");
	CHECK_STR_EQ(groq->unsupported_params.v[2], "logit_bias");
	REQUIRE_INT_EQ(groq->reject_params.n, 2);
	CHECK_STR_EQ(groq->reject_params.v[0], "audio");
	config_free(cfg);
	buf_free(&errors);
}

TEST(config_shipped_model_prices_in_nano_usd_per_token)
{
	clear_router_env();
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	/* USD per million tokens * 1e9 nUSD/USD / 1e6 tokens = USD/Mtok * 1000 nUSD per token. */
	static const struct {
		const char *id;
		const char *provider;
		int64_t in, out;
		int reasoning;
	} rows[] = {
		{ "claude-opus-4-6", "anthropic", 15000, 75000, 0 },
		{ "claude-sonnet-4-5", "anthropic", 3000, 15000, 0 },
		{ "claude-haiku-4-5", "anthropic", 800, 4000, 0 },
		{ "gpt-4o", "openai", 2500, 10000, 0 },
		{ "gpt-4o-mini", "openai", 150, 600, 0 },
		{ "gpt-4-turbo", "openai", 10000, 30000, 0 },
		{ "o1", "openai", 15000, 60000, 1 },
		{ "o3-mini", "openai", 1100, 4400, 1 },
		{ "gemini-2.5-pro", "gemini", 1250, 10000, 0 },
		{ "gemini-2.0-flash", "gemini", 100, 400, 0 },
		{ "deepseek-chat", "deepseek", 270, 1100, 0 },
		{ "deepseek-reasoner", "deepseek", 550, 2190, 0 },
		{ "text-embedding-3-small", "openai", 20, 0, 0 },
		{ "text-embedding-3-large", "openai", 130, 0, 0 },
		{ "gemini-embedding-001", "gemini", 150, 0, 0 },
		{ "openrouter/*", "openrouter", 15000, 75000, 0 },
	};
	REQUIRE_INT_EQ(cfg->n_models, sizeof(rows) / sizeof(rows[0]));
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("model %s", rows[i].id);
		const struct model_conf *m = &cfg->models[i];
		CHECK_STR_EQ(m->id, rows[i].id);
		CHECK_STR_EQ(cfg->providers[m->provider].name, rows[i].provider);
		CHECK_INT_EQ(m->in_nusd, rows[i].in);
		CHECK_INT_EQ(m->out_nusd, rows[i].out);
		/* Cached and cache-write prices default to the input price. */
		CHECK_INT_EQ(m->cached_in_nusd, rows[i].in);
		CHECK_INT_EQ(m->cache_write_nusd, rows[i].in);
		CHECK_INT_EQ(m->reasoning, rows[i].reasoning);
		CHECK_INT_EQ(config_model_index(cfg, rows[i].id), (long long)i);
		CHECK(m->created > 0);
		CHECK_INT_EQ(m->embedding, i >= 12 && i < 15);
		/* DeepSeek takes no images and emulates json_schema; o3-mini takes no images. */
		unsigned caps = i >= 12 && i < 15 ? 0
				: strcmp(rows[i].provider, "deepseek") == 0 ? (unsigned)(CAP_TOOLS | CAP_JSON_OBJECT)
				: strcmp(rows[i].id, "o3-mini") == 0 ? (unsigned)(CAP_ALL & ~CAP_IMAGES)
								    : (unsigned)CAP_ALL;
		CHECK_INT_EQ(m->caps, caps);
		if (i < 15) {
			CHECK_NULL(m->prefix);
			CHECK_STR_EQ(m->upstream, rows[i].id);
		} else {
			CHECK_STR_EQ(m->prefix, "openrouter/");
		}
	}
	config_free(cfg);
	buf_free(&errors);
}

static int model_idx(const struct config *cfg, const char *id)
{
	return config_model_index(cfg, id);
}

TEST(config_shipped_fallback_chains)
{
	clear_router_env();
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	static const struct {
		const char *id, *f1, *f2;
	} rows[] = {
		{ "claude-opus-4-6", "claude-sonnet-4-5", "gpt-4o" },
		{ "claude-sonnet-4-5", "gpt-4o", "gemini-2.5-pro" },
		{ "gpt-4o-mini", "gemini-2.0-flash", "deepseek-chat" },
		{ "o1", "o3-mini", "claude-opus-4-6" },
		{ "deepseek-reasoner", "o3-mini", "deepseek-chat" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("fallback of %s", rows[i].id);
		int mi = model_idx(cfg, rows[i].id);
		REQUIRE(mi >= 0);
		const struct model_conf *m = &cfg->models[mi];
		REQUIRE_INT_EQ(m->n_fallback, 2);
		CHECK_INT_EQ(m->fallback[0], model_idx(cfg, rows[i].f1));
		CHECK_INT_EQ(m->fallback[1], model_idx(cfg, rows[i].f2));
	}
	test_case(NULL);
	CHECK_INT_EQ(cfg->models[model_idx(cfg, "openrouter/*")].n_fallback, 0);
	config_free(cfg);
	buf_free(&errors);
}

TEST(config_shipped_tiers)
{
	clear_router_env();
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	REQUIRE_INT_EQ(cfg->n_tiers, 4);
	static const struct {
		const char *id, *name;
		double budget;
		int all, passthrough;
		size_t n_models, n_downgrades;
	} rows[] = {
		{ "T1", "Strategic", 50.0, 1, 1, 0, 0 },
		{ "T2", "Operational", 15.0, 0, 0, 12, 4 },
		{ "T3", "Execution", 5.0, 0, 0, 9, 7 },
		{ "T4", "Automation", 10.0, 0, 0, 7, 9 },
	};
	for (size_t i = 0; i < 4; i++) {
		test_case("tier %s", rows[i].id);
		const struct tier_conf *t = &cfg->tiers[i];
		CHECK_STR_EQ(t->id, rows[i].id);
		CHECK_STR_EQ(t->name, rows[i].name);
		CHECK_DBL_EQ(t->daily_budget_usd, rows[i].budget);
		CHECK_INT_EQ(t->all_models, rows[i].all);
		CHECK_INT_EQ(t->allow_passthrough, rows[i].passthrough);
		CHECK_INT_EQ(t->n_models, rows[i].n_models);
		CHECK_INT_EQ(t->n_downgrades, rows[i].n_downgrades);
	}
	test_case(NULL);
	CHECK_INT_EQ(cfg->default_tier, 2);
	/* T3 sends the OpenRouter pass-through to gpt-4o-mini. */
	const struct tier_conf *t3 = &cfg->tiers[2];
	int found = 0;
	for (size_t d = 0; d < t3->n_downgrades; d++) {
		if (t3->downgrades[d].from == (size_t)model_idx(cfg, "openrouter/*")) {
			found = 1;
			CHECK_INT_EQ(t3->downgrades[d].to, model_idx(cfg, "gpt-4o-mini"));
		}
	}
	CHECK(found);
	config_free(cfg);
	buf_free(&errors);
}

TEST(config_shipped_tasks_match_the_spec)
{
	clear_router_env();
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	static const struct {
		const char *task, *model, *fallback;
	} rows[] = {
		{ "strategy", "claude-opus-4-6", "gpt-4o" },
		{ "analysis", "claude-sonnet-4-5", "gpt-4o" },
		{ "content", "claude-sonnet-4-5", "gpt-4o" },
		{ "code", "claude-sonnet-4-5", "deepseek-chat" },
		{ "skills", "claude-haiku-4-5", "gpt-4o-mini" },
		{ "queries", "deepseek-chat", "gpt-4o-mini" },
		{ "translation", "gpt-4o-mini", "deepseek-chat" },
	};
	REQUIRE_INT_EQ(cfg->n_tasks, 7);
	for (size_t i = 0; i < 7; i++) {
		test_case("task %s", rows[i].task);
		const struct task_conf *t = &cfg->tasks[i];
		CHECK_STR_EQ(t->name, rows[i].task);
		CHECK_STR_EQ(cfg->models[t->model].id, rows[i].model);
		CHECK_INT_EQ(t->has_fallback, 1);
		CHECK_STR_EQ(cfg->models[t->fallback].id, rows[i].fallback);
	}
	config_free(cfg);
	buf_free(&errors);
}

TEST(config_every_spec_agent_is_in_its_tier)
{
	clear_router_env();
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	/* SPEC.md "Agent -> tier mapping". */
	static const struct {
		const char *agent, *tier;
	} rows[] = {
		{ "ai_director", "T1" },
		{ "chief_of_staff", "T1" },
		{ "personal_assistant", "T2" },
		{ "sysadmin_agent", "T2" },
		{ "devops_agent", "T2" },
		{ "ops_automation_lead", "T2" },
		{ "vp_contentops", "T2" },
		{ "sales_agent", "T2" },
		{ "marketing_agent", "T2" },
		{ "hr_agent", "T2" },
		{ "growth_analyst", "T2" },
		{ "data_compliance", "T2" },
		{ "qa_risk_officer", "T2" },
		{ "agent_creator", "T2" },
		{ "skill_creator", "T2" },
		{ "elevenlabs_specialist", "T3" },
		{ "docops_agent", "T3" },
		{ "bitrix24_admin", "T3" },
		{ "kb_manager", "T3" },
		{ "n8n_engineer", "T4" },
		/* any other agent: the default tier */
		{ "unknown_agent", "T3" },
		{ "", "T3" },
		{ "AI_DIRECTOR", "T3" }, /* names are exact */
	};
	size_t listed = 0;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("agent \"%s\"", rows[i].agent);
		const struct tier_conf *t = config_tier_for_agent(cfg, rows[i].agent);
		REQUIRE_NOT_NULL(t);
		CHECK_STR_EQ(t->id, rows[i].tier);
	}
	test_case(NULL);
	/* And no tier lists an agent the SPEC does not place: 20 agents in all. */
	for (size_t i = 0; i < cfg->n_tiers; i++)
		listed += cfg->tiers[i].agents.n;
	CHECK_INT_EQ(listed, 20);
	/* Anonymous callers get the default tier too. */
	const struct tier_conf *anon = config_tier_for_agent(cfg, NULL);
	REQUIRE_NOT_NULL(anon);
	CHECK_STR_EQ(anon->id, "T3");
	config_free(cfg);
	buf_free(&errors);
}

TEST(config_find_model_table)
{
	clear_router_env();
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	static const struct {
		const char *id;
		const char *model;      /* public id of the matched route, NULL = no match */
		const char *upstream;
	} rows[] = {
		{ "gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini" },
		{ "claude-sonnet-4-5", "claude-sonnet-4-5", "claude-sonnet-4-5" },
		{ "openrouter/anthropic/claude-sonnet-4.5", "openrouter/*", "anthropic/claude-sonnet-4.5" },
		{ "openrouter/meta-llama/llama-3.3-70b-instruct:free", "openrouter/*",
		  "meta-llama/llama-3.3-70b-instruct:free" },
		{ "openrouter/a/b/c", "openrouter/*", "a/b/c" },
		{ "openrouter/x", NULL, NULL },
		{ "openrouter/", NULL, NULL },
		{ "openrouter//model", NULL, NULL },
		{ "openrouter/vendor/", NULL, NULL },
		{ "openrouter/*", NULL, NULL },
		{ "openrouter", NULL, NULL },
		{ "OpenRouter/a/b", NULL, NULL },
		{ "gpt-4o-mini-2024", NULL, NULL },
		{ "", NULL, NULL },
		{ "nope", NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("config_find_model(\"%s\")", rows[i].id);
		const char *up = "untouched";
		const struct model_conf *m = config_find_model(cfg, rows[i].id, &up);
		if (!rows[i].model) {
			CHECK_NULL(m);
			continue;
		}
		REQUIRE_NOT_NULL(m);
		CHECK_STR_EQ(m->id, rows[i].model);
		CHECK_STR_EQ(up, rows[i].upstream);
		/* NULL upstream_out is allowed. */
		CHECK(config_find_model(cfg, rows[i].id, NULL) == m);
	}
	test_case(NULL);
	/* The pass-through upstream points into the id. */
	const char *id = "openrouter/google/gemini-2.5-flash";
	const char *up = NULL;
	CHECK_NOT_NULL(config_find_model(cfg, id, &up));
	CHECK(up == id + strlen("openrouter/"));
	CHECK_INT_EQ(config_model_index(cfg, "nope"), -1);
	config_free(cfg);
	buf_free(&errors);
}

/* ---- the environment ---- */

TEST(config_provider_with_key_is_available)
{
	clear_router_env();
	setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef", 1);
	setenv("GROQ_API_KEY", "gsk-test", 1);
	setenv("GROQ_BASE_URL", "http://127.0.0.1:9/groq/v1//", 1);
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	const struct provider_conf *openai = &cfg->providers[0];
	const struct provider_conf *anthropic = &cfg->providers[1];
	const struct provider_conf *groq = &cfg->providers[5];
	CHECK_INT_EQ(openai->available, 1);
	CHECK_INT_EQ(openai->demo, 0);
	CHECK_STR_EQ(openai->api_key, "sk-test-0123456789abcdef");
	CHECK_STR_EQ(openai->base_url, "https://api.openai.com/v1");
	CHECK_NULL(openai->unavailable_reason);
	/* A base URL from the environment wins, without trailing slashes. */
	CHECK_INT_EQ(groq->available, 1);
	CHECK_STR_EQ(groq->base_url, "http://127.0.0.1:9/groq/v1");
	/* Without a key: unavailable, the reason names the variable, never a value. */
	CHECK_INT_EQ(anthropic->available, 0);
	CHECK_NULL(anthropic->api_key);
	CHECK_NOT_NULL(anthropic->unavailable_reason);
	CHECK_CONTAINS(anthropic->unavailable_reason, "ANTHROPIC_API_KEY");
	CHECK_STR_EQ(anthropic->base_url, "https://api.anthropic.com");
	config_free(cfg);
	buf_free(&errors);
}

TEST(config_empty_key_counts_as_missing)
{
	clear_router_env();
	setenv("DEEPSEEK_API_KEY", "", 1);
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	CHECK_INT_EQ(cfg->providers[3].available, 0);
	CHECK_CONTAINS(cfg->providers[3].unavailable_reason, "DEEPSEEK_API_KEY");
	config_free(cfg);
	buf_free(&errors);
}

TEST(config_demo_url_serves_providers_without_a_key)
{
	clear_router_env();
	setenv("LLM_ROUTER_DEMO_URL", "http://127.0.0.1:4010", 1);
	setenv("OPENAI_API_KEY", "sk-real-key-000000", 1);
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	static const struct {
		const char *name;
		int demo;
		const char *base_url;
	} rows[] = {
		{ "openai", 0, "https://api.openai.com/v1" },
		{ "anthropic", 1, "http://127.0.0.1:4010/anthropic" },
		{ "gemini", 1, "http://127.0.0.1:4010/gemini/v1beta" },
		{ "deepseek", 1, "http://127.0.0.1:4010/deepseek" },
		{ "openrouter", 1, "http://127.0.0.1:4010/openrouter/api/v1" },
		{ "groq", 1, "http://127.0.0.1:4010/groq/openai/v1" },
	};
	for (size_t i = 0; i < 6; i++) {
		test_case("provider %s", rows[i].name);
		const struct provider_conf *p = &cfg->providers[i];
		CHECK_STR_EQ(p->name, rows[i].name);
		CHECK_INT_EQ(p->available, 1);
		CHECK_INT_EQ(p->demo, rows[i].demo);
		CHECK_STR_EQ(p->base_url, rows[i].base_url);
		CHECK_NOT_NULL(p->api_key);
		CHECK_NULL(p->unavailable_reason);
	}
	config_free(cfg);
	buf_free(&errors);
}

TEST(config_home_from_the_environment)
{
	clear_router_env();
	const char *home = test_tmpdir();
	setenv("LLM_ROUTER_HOME", home, 1);
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	char want[4096];
	snprintf(want, sizeof(want), "%s/data/llm_logs.db", home);
	CHECK_STR_EQ(cfg->db_path, want);
	CHECK_STR_EQ(cfg->home, home);
	config_free(cfg);
	buf_free(&errors);
}

/* ---- broken files ---- */

/* A small valid file; rows below replace one of its lines (1-based). */
static const char *const base_lines[] = {
	/*  1 */ "server = {",
	/*  2 */ "  threads = 8;",
	/*  3 */ "};",
	/*  4 */ "log = {",
	/*  5 */ "  level = \"info\";",
	/*  6 */ "};",
	/*  7 */ "routing = {",
	/*  8 */ "  default_tier = \"T3\";",
	/*  9 */ "};",
	/* 10 */ "providers = {",
	/* 11 */ "  openai = {",
	/* 12 */ "    api = \"openai\";",
	/* 13 */ "    key_env = \"TEST_ROUTER_KEY\";",
	/* 14 */ "    base_url = \"https://api.openai.com/v1\";",
	/* 15 */ "  };",
	/* 16 */ "};",
	/* 17 */ "models = (",
	/* 18 */ "  { id = \"m1\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 2.0; },",
	/* 19 */ "  { id = \"m2\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 2.0; fallback = [ \"m1\" ]; },",
	/* 20 */ "  { id = \"m3\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 2.0; }",
	/* 21 */ ");",
	/* 22 */ "tiers = {",
	/* 23 */ "  T1 = {",
	/* 24 */ "    daily_budget_usd = 10.0;",
	/* 25 */ "    models = [ \"*\" ];",
	/* 26 */ "    agents = [ \"boss\" ];",
	/* 27 */ "  };",
	/* 28 */ "  T3 = {",
	/* 29 */ "    daily_budget_usd = 1.0;",
	/* 30 */ "    models = [ \"m1\", \"m2\" ];",
	/* 31 */ "    downgrade = ( { from = \"m3\"; to = \"m1\"; } );",
	/* 32 */ "    agents = [ \"worker\" ];",
	/* 33 */ "  };",
	/* 34 */ "};",
	/* 35 */ "tasks = {",
	/* 36 */ "  code = { model = \"m2\"; fallback = \"m1\"; };",
	/* 37 */ "};",
};

#define N_BASE (sizeof(base_lines) / sizeof(base_lines[0]))

/* Writes the base file with lines line..line+span-1 replaced by `text` (NULL = base unchanged;
 * "" empties the line but keeps the numbering). span 0 means 1. */
static char *write_variant_span(const char *name, int line, int span, const char *text)
{
	struct buf b;
	buf_init(&b, BUF_UNLIMITED);
	if (span < 1)
		span = 1;
	for (size_t i = 0; i < N_BASE; i++) {
		int n = (int)i + 1;
		if (text && n > line && n < line + span)
			continue;
		buf_puts(&b, n == line && text ? text : base_lines[i]);
		buf_putc(&b, '\n');
	}
	char *path = test_path(name);
	test_write_file(path, b.p, b.len);
	buf_free(&b);
	return path;
}

static char *write_variant(const char *name, int line, const char *text)
{
	return write_variant_span(name, line, 1, text);
}

static char *first_line(const char *s)
{
	const char *nl = strchr(s, '\n');
	size_t n = nl ? (size_t)(nl - s) : strlen(s);
	char *out = malloc(n + 1);
	memcpy(out, s, n);
	out[n] = '\0';
	return out;
}

TEST(config_base_variant_is_valid)
{
	clear_router_env();
	char *path = write_variant("base.conf", 0, NULL);
	struct buf errors;
	buf_init(&errors, 1 << 20);
	struct config *cfg = config_load(path, &errors);
	CHECK_STR_EQ(buf_str(&errors), "");
	REQUIRE_NOT_NULL(cfg);
	CHECK_INT_EQ(cfg->n_models, 3);
	CHECK_INT_EQ(cfg->n_tiers, 2);
	CHECK_INT_EQ(cfg->providers[0].available, 0);
	CHECK_STR_EQ(cfg->providers[0].unavailable_reason, "TEST_ROUTER_KEY is not set");
	CHECK_STR_EQ(config_tier_for_agent(cfg, "boss")->id, "T1");
	CHECK_STR_EQ(config_tier_for_agent(cfg, "worker")->id, "T3");
	CHECK_STR_EQ(config_tier_for_agent(cfg, "other")->id, "T3");
	config_free(cfg);
	buf_free(&errors);
	free(path);
}

/* Proxies libcurl takes load: a percent-encoded password, SOCKS, and host:port (libcurl's http
 * default); their credentials are split off for libcurl. */
TEST(config_valid_proxies_load)
{
	clear_router_env();
	static const struct {
		const char *proxy, *url, *user, *password;
	} ok[] = {
		/* libcurl gets the credentials apart, decoded, and the proxy without them */
		{ "http://alice:p%40ss@proxy.example:3128", "http://proxy.example:3128/", "alice", "p@ss" },
		{ "socks5://bob@10.0.0.1:1080", "socks5://10.0.0.1:1080/", "bob", "" },
		{ "socks5h://127.0.0.1:1080", "socks5h://127.0.0.1:1080", NULL, NULL },
		{ "proxy.example:3128", "proxy.example:3128", NULL, NULL },
		{ "https://proxy.example", "https://proxy.example", NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		test_case("%s", ok[i].proxy);
		char text[256];
		snprintf(text, sizeof(text), "  threads = 8; };\nupstream = { proxy = \"%s\";", ok[i].proxy);
		char *path = write_variant("proxy.conf", 2, text);
		struct buf errors;
		buf_init(&errors, 1 << 20);
		struct config *cfg = config_load(path, &errors);
		CHECK_STR_EQ(buf_str(&errors), "");
		REQUIRE_NOT_NULL(cfg);
		CHECK_STR_EQ(cfg->proxy, ok[i].proxy);
		CHECK_STR_EQ(cfg->proxy_url, ok[i].url);
		CHECK_STR_EQ(cfg->proxy_user, ok[i].user);
		CHECK_STR_EQ(cfg->proxy_password, ok[i].password);
		config_free(cfg);
		buf_free(&errors);
		free(path);
	}
}

/* A Gemini request names its model in the URL: a pass-through route there would let the client
 * choose the upstream path and query ("gemini/a/../../../../v1/x?alt=sse&"). */
TEST(config_gemini_pass_through_is_rejected)
{
	clear_router_env();
	char *path = write_variant_span("gemini-pt.conf", 12, 9,
					"    api = \"gemini\";\n"
					"    key_env = \"TEST_ROUTER_KEY\";\n"
					"    base_url = \"https://generativelanguage.googleapis.com/v1beta\";\n"
					"  };\n"
					"};\n"
					"models = (\n"
					"  { id = \"m1\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 2.0; },\n"
					"  { id = \"m2\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 2.0; fallback = [ \"m1\" ]; },\n"
					"  { id = \"gemini/*\"; provider = \"openai\"; passthrough = true; input_usd_per_mtok = 1.0; output_usd_per_mtok = 2.0; }");
	struct buf errors;
	buf_init(&errors, 1 << 20);
	struct config *cfg = config_load(path, &errors);
	CHECK_NULL(cfg);
	CHECK_CONTAINS(buf_str(&errors), ":20: pass-through model \"gemini/*\": provider \"openai\" speaks the Gemini API");
	config_free(cfg);
	buf_free(&errors);
	free(path);
}

struct broken_row {
	const char *name;
	int line;              /* line of the base file to replace */
	const char *text;      /* its replacement */
	const char *first;     /* expected first error line, "%s" = the file's path */
	int span;              /* lines replaced from `line` on (0 = 1) */
};

static const struct broken_row broken[] = {
	{ "unknown key", 2, "  thread = 8;",
	  "%s:2: unknown key 'thread' in server (known keys: threads, max_body_bytes, reload_interval_s, body_timeout_ms, max_threads, call_memory_mb)", 0 },
	{ "unknown top-level key", 3, "};\nsevrer = { threads = 8; };",
	  "%s:4: unknown key 'sevrer' (known keys: server, log, storage, upstream, params, demo, routing, budget, cooldown, providers, models, tiers, tasks)", 0 },
	{ "wrong type: string for an integer", 2, "  threads = \"8\";",
	  "%s:2: 'server.threads' must be an integer, not a string", 0 },
	{ "wrong type: float for an integer", 2, "  threads = 8.5;",
	  "%s:2: 'server.threads' must be an integer, not a number", 0 },
	{ "wrong type: integer for a string", 5, "  level = 3;",
	  "%s:5: 'log.level' must be a string, not an integer", 0 },
	{ "wrong type: string for a boolean", 12, "    api = \"openai\"; strip_message_name = \"yes\";",
	  "%s:12: 'providers.openai.strip_message_name' must be true or false, not a string", 0 },
	{ "wrong type: string for a string list", 26, "    agents = \"boss\";",
	  "%s:26: 'tiers.T1.agents' must be an array of strings [ \"...\" ], not a string", 0 },
	{ "wrong type: integer for a section", 4, "log = 5;\n\n",
	  "%s:4: 'log' must be a group { ... }, not an integer", 3 },
	{ "out-of-range int (low)", 2, "  threads = 0;",
	  "%s:2: 'server.threads' is 0, outside the allowed range 1..256", 0 },
	{ "out-of-range int (high)", 2, "  threads = 257;",
	  "%s:2: 'server.threads' is 257, outside the allowed range 1..256", 0 },
	{ "call memory below its floor", 2, "  call_memory_mb = 8;",
	  "%s:2: 'server.call_memory_mb' is 8, outside the allowed range 16..65536", 0 },
	{ "out-of-range price", 18,
	  "  { id = \"m1\"; provider = \"openai\"; input_usd_per_mtok = -1.0; output_usd_per_mtok = 2.0; },",
	  "%s:18: 'models[0].input_usd_per_mtok' is -1, outside the allowed range 0..100000", 0 },
	{ "out-of-range list element", 2, "  threads = 8; };\nupstream = { retry_on = [ 500, 600 ];",
	  "%s:3: 'upstream.retry_on' contains 600, outside 100..599", 0 },
	{ "bad enum string", 5, "  level = \"loud\";",
	  "%s:5: 'log.level' is \"loud\"; allowed values: \"debug\", \"info\", \"warn\", \"error\"", 0 },
	{ "bad provider api", 12, "    api = \"soap\";",
	  "%s:12: 'providers.openai.api' is \"soap\"; allowed values: \"openai\", \"anthropic\", \"gemini\"", 0 },
	{ "empty required string", 13, "    key_env = \"\";",
	  "%s:13: 'providers.openai.key_env' must not be empty", 0 },
	{ "missing required key", 13, "",
	  "%s:11: missing required key 'key_env' in providers.openai", 0 },
	{ "missing required model price", 20, "  { id = \"m3\"; provider = \"openai\"; input_usd_per_mtok = 1.0; }",
	  "%s:20: model \"m3\": output_usd_per_mtok is required", 0 },
	{ "an embedding model with a fallback", 20,
	  "  { id = \"m3\"; provider = \"openai\"; kind = \"embedding\"; input_usd_per_mtok = 1.0; fallback = [ \"m1\" ]; }",
	  "%s:20: embedding model \"m3\" cannot have a fallback: another model's vectors are not comparable with its own (its calls are retried on the same model)", 0 },
	{ "an unknown capability", 20,
	  "  { id = \"m3\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 2.0; capabilities = [ \"tools\", \"vision\" ]; }",
	  "%s:20: unknown capability \"vision\" (known: tools, images, json_object, json_schema)", 0 },
	{ "a chat model falling back to an embedding model", 19,
	  "  { id = \"m2\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 2.0; fallback = [ \"m3\" ]; },\n"
	  "  { id = \"m3\"; provider = \"openai\"; kind = \"embedding\"; input_usd_per_mtok = 1.0; }",
	  "%s:19: model \"m2\": fallback \"m3\" is an embedding model, not a chat model", 2 },
	{ "unknown provider of a model", 18,
	  "  { id = \"m1\"; provider = \"nope\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 2.0; },",
	  "%s:18: model \"m1\": unknown provider \"nope\"", 0 },
	{ "fallback to an unknown model", 19,
	  "  { id = \"m2\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 2.0; fallback = [ \"zz\" ]; },",
	  "%s:19: model \"m2\": fallback \"zz\" is not a configured model", 0 },
	{ "fallback to itself (cycle)", 19,
	  "  { id = \"m2\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 2.0; fallback = [ \"m2\" ]; },",
	  "%s:19: model \"m2\": its fallback chain contains itself (a cycle)", 0 },
	/* A proxy libcurl would refuse: its error text quotes the whole value, password included, so
	 * the router refuses it at load and never quotes it. */
	{ "a proxy with an unencoded @ in its password", 2,
	  "  threads = 8; };\nupstream = { proxy = \"http://alice:p@ss@proxy.example:3128\";",
	  "%s:3: 'upstream.proxy' is not a proxy URL libcurl takes (scheme://[user:password@]host[:port], scheme http, https, socks4, socks4a, socks5 or socks5h; percent-encode @ # / : in the user name and password); its value is not shown: it may hold a password", 0 },
	{ "a proxy with an unknown scheme", 2,
	  "  threads = 8; };\nupstream = { proxy = \"htps://alice:SecretPw1@proxy.example:3128\";",
	  "%s:3: 'upstream.proxy' is not a proxy URL libcurl takes (scheme://[user:password@]host[:port], scheme http, https, socks4, socks4a, socks5 or socks5h; percent-encode @ # / : in the user name and password); its value is not shown: it may hold a password", 0 },
	{ "a proxy with a port out of range", 2,
	  "  threads = 8; };\nupstream = { proxy = \"http://alice:SecretPw1@proxy.example:99999\";",
	  "%s:3: 'upstream.proxy' is not a proxy URL libcurl takes (scheme://[user:password@]host[:port], scheme http, https, socks4, socks4a, socks5 or socks5h; percent-encode @ # / : in the user name and password); its value is not shown: it may hold a password", 0 },
	/* A header line may carry a credential: a repeated one is named by position, not quoted. */
	{ "a header listed twice", 14,
	  "    base_url = \"https://api.openai.com/v1\";\n"
	  "    headers = [ \"cf-aig-authorization: Bearer GwSecret123\", \"cf-aig-authorization: Bearer GwSecret123\" ];",
	  "%s:15: 'providers.openai.headers' lists its entry 2 twice (the same as an earlier entry; header values are not shown)", 0 },
	/* A reservation reclaimed while its call still runs would let another call spend the same
	 * budget. */
	{ "a reservation timeout shorter than the deadline", 2,
	  "  threads = 8; };\nbudget = { reservation_timeout_s = 10;",
	  "%s:3: 'budget.reservation_timeout_s' (10 s) must outlast upstream.deadline_ms (300000 ms) by a minute: a reservation reclaimed while its call still runs lets another call spend the same budget", 0 },
	{ "fallback listed twice", 19,
	  "  { id = \"m2\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 2.0; fallback = [ \"m1\", \"m1\" ]; },",
	  "%s:19: 'models[1].fallback' lists \"m1\" twice", 0 },
	{ "duplicate model id", 20,
	  "  { id = \"m1\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 2.0; }",
	  "%s:20: model \"m1\" is defined twice", 0 },
	{ "pass-through id without /*", 20,
	  "  { id = \"or\"; provider = \"openai\"; passthrough = true; input_usd_per_mtok = 1.0; output_usd_per_mtok = 2.0; }",
	  "%s:20: pass-through model \"or\": id must end in \"/*\" (e.g. \"openrouter/*\")", 0 },
	{ "star in a plain model id", 20,
	  "  { id = \"m*\"; provider = \"openai\"; input_usd_per_mtok = 1.0; output_usd_per_mtok = 2.0; }",
	  "%s:20: model \"m*\": '*' is only allowed in pass-through ids", 0 },
	{ "tier model unknown", 30, "    models = [ \"m1\", \"zz\" ];",
	  "%s:28: tier T3: model \"zz\" is not a configured model", 0 },
	{ "downgrade target outside the tier's models", 31,
	  "    downgrade = ( { from = \"m1\"; to = \"m3\"; } );",
	  "%s:31: tier T3: downgrade target \"m3\" is not among the tier's models", 0 },
	{ "downgrade from an unknown model", 31,
	  "    downgrade = ( { from = \"zz\"; to = \"m1\"; } );",
	  "%s:31: tier T3: downgrade from unknown model \"zz\"", 0 },
	{ "two downgrades for one model", 31,
	  "    downgrade = ( { from = \"m3\"; to = \"m1\"; }, { from = \"m3\"; to = \"m2\"; } );",
	  "%s:31: tier T3: two downgrades for \"m3\"", 0 },
	{ "agent in two tiers", 32, "    agents = [ \"worker\", \"boss\" ];",
	  "%s:32: agent \"boss\" is in tiers T1 and T3", 0 },
	{ "agent twice in one tier", 32, "    agents = [ \"worker\", \"worker\" ];",
	  "%s:32: 'tiers.T3.agents' lists \"worker\" twice", 0 },
	{ "unknown default tier", 8, "  default_tier = \"T9\";",
	  "%s:8: routing.default_tier \"T9\" is not a configured tier", 0 },
	{ "task with an unknown model", 36, "  code = { model = \"zz\"; fallback = \"m1\"; };",
	  "%s:36: task code: model \"zz\" is not a configured model", 0 },
	{ "task falling back to itself", 36, "  code = { model = \"m2\"; fallback = \"m2\"; };",
	  "%s:36: task code: fallback is the preferred model itself (a cycle)", 0 },
	{ "base URL without a scheme", 14, "    base_url = \"api.openai.com/v1\";",
	  "%s:14: providers.openai.base_url must start with http:// or https://", 0 },
	{ "block below warn", 3, "};\nbudget = { warn_percent = 90; block_percent = 80; };",
	  "%s:4: budget.block_percent (80) is below budget.warn_percent (90)", 0 },
	{ "syntax error", 2, "  threads = ;", "%s:2: syntax error", 0 },
	{ "syntax error: unclosed group (reported at the end of the file)", 37, "", "%s:38: syntax error", 0 },
};

TEST(config_broken_files_report_file_line_reason)
{
	clear_router_env();
	for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
		const struct broken_row *row = &broken[i];
		test_case("%s", row->name);
		char name[32];
		snprintf(name, sizeof(name), "broken-%zu.conf", i);
		char *path = write_variant_span(name, row->line, row->span, row->text);
		struct buf errors;
		buf_init(&errors, 1 << 20);
		struct config *cfg = config_load(path, &errors);
		CHECK_NULL(cfg);
		config_free(cfg);
		char want[1024];
		snprintf(want, sizeof(want), row->first, path);
		char *got = first_line(buf_str(&errors));
		CHECK_STR_EQ(got, want);
		/* Every reported line has the FILE: prefix and the list ends with a newline. */
		CHECK(errors.len > 0 && errors.p[errors.len - 1] == '\n');
		free(got);
		buf_free(&errors);
		free(path);
	}
}

TEST(config_missing_section_is_reported)
{
	clear_router_env();
	/* Drop the whole tiers section (lines 22-34). */
	struct buf b;
	buf_init(&b, BUF_UNLIMITED);
	for (size_t i = 0; i < N_BASE; i++) {
		if (i + 1 >= 22 && i + 1 <= 34)
			continue;
		buf_puts(&b, base_lines[i]);
		buf_putc(&b, '\n');
	}
	char *path = test_path("no-tiers.conf");
	test_write_file(path, b.p, b.len);
	buf_free(&b);
	struct buf errors;
	buf_init(&errors, 1 << 20);
	struct config *cfg = config_load(path, &errors);
	CHECK_NULL(cfg);
	char want[1024];
	snprintf(want, sizeof(want), "%s", path);
	CHECK(strncmp(buf_str(&errors), want, strlen(want)) == 0);
	CHECK_CONTAINS(buf_str(&errors), "missing required key 'tiers'");
	buf_free(&errors);
	free(path);
}

TEST(config_every_problem_is_reported)
{
	clear_router_env();
	/* Two independent problems: an unknown key (line 2) and a bad enum (line 5). */
	struct buf b;
	buf_init(&b, BUF_UNLIMITED);
	for (size_t i = 0; i < N_BASE; i++) {
		const char *l = base_lines[i];
		if (i + 1 == 2)
			l = "  thread = 8;";
		else if (i + 1 == 5)
			l = "  level = \"loud\";";
		buf_puts(&b, l);
		buf_putc(&b, '\n');
	}
	char *path = test_path("two.conf");
	test_write_file(path, b.p, b.len);
	buf_free(&b);
	struct buf errors;
	buf_init(&errors, 1 << 20);
	CHECK_NULL(config_load(path, &errors));
	size_t lines = 0;
	for (size_t i = 0; i < errors.len; i++)
		lines += errors.p[i] == '\n';
	CHECK_INT_EQ(lines, 2);
	char l2[1024], l5[1024];
	snprintf(l2, sizeof(l2), "%s:2: ", path);
	snprintf(l5, sizeof(l5), "\n%s:5: ", path);
	CHECK(strncmp(buf_str(&errors), l2, strlen(l2)) == 0);
	CHECK_CONTAINS(buf_str(&errors), l5);
	buf_free(&errors);
	free(path);
}

TEST(config_empty_sections_are_rejected)
{
	/* providers, models and tiers are required, and the default tier must be a configured one:
	 * an empty section is as good as a missing one. */
	clear_router_env();
	static const struct {
		const char *name;
		int line, span;
		const char *text;
		const char *reason;
	} rows[] = {
		{ "no provider", 10, 7, "providers = {};\n\n\n\n\n\n", "no provider is configured" },
		{ "no tier", 22, 13, "tiers = {};\n\n\n\n\n\n\n\n\n\n\n\n", "tier" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("%s", rows[i].name);
		char name[32];
		snprintf(name, sizeof(name), "empty-%zu.conf", i);
		char *path = write_variant_span(name, rows[i].line, rows[i].span, rows[i].text);
		struct buf errors;
		buf_init(&errors, 1 << 20);
		struct config *cfg = config_load(path, &errors);
		CHECK_NULL(cfg);
		config_free(cfg);
		CHECK_CONTAINS(buf_str(&errors), rows[i].reason);
		buf_free(&errors);
		free(path);
	}
}

TEST(config_unreadable_file)
{
	clear_router_env();
	char *path = test_path("does-not-exist.conf");
	struct buf errors;
	buf_init(&errors, 1 << 20);
	CHECK_NULL(config_load(path, &errors));
	char want[1024];
	snprintf(want, sizeof(want), "%s: cannot read the file: No such file or directory\n", path);
	CHECK_STR_EQ(buf_str(&errors), want);
	buf_free(&errors);
	free(path);
}

TEST(config_demo_mode_with_a_bad_base_url_is_rejected_cleanly)
{
	/* A base_url shorter than "https://" in demo mode: the file is rejected with the base_url
	 * error, and building the demo URL must not read past the end of the configured string. */
	clear_router_env();
	setenv("LLM_ROUTER_DEMO_URL", "http://127.0.0.1:4010", 1);
	static const char *const urls[] = { "x", "http:/", "ftp://a" };
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		test_case("base_url = \"%s\"", urls[i]);
		char line[128];
		snprintf(line, sizeof(line), "    base_url = \"%s\";", urls[i]);
		char name[32];
		snprintf(name, sizeof(name), "demo-%zu.conf", i);
		char *path = write_variant(name, 14, line);
		struct buf errors;
		buf_init(&errors, 1 << 20);
		struct config *cfg = config_load(path, &errors);
		CHECK_NULL(cfg);
		config_free(cfg);
		char want[1024];
		snprintf(want, sizeof(want), "%s:14: providers.openai.base_url must start with http:// or https://",
			 path);
		char *got = first_line(buf_str(&errors));
		CHECK_STR_EQ(got, want);
		free(got);
		buf_free(&errors);
		free(path);
	}
}

TEST(config_global_acquire_release)
{
	clear_router_env();
	struct buf errors;
	struct config *cfg = load_shipped(&errors);
	REQUIRE_NOT_NULL(cfg);
	config_global_set(cfg);
	struct config *a = config_acquire();
	CHECK(a == cfg);
	CHECK_INT_EQ(cfg->refs, 2);
	config_release(a);
	CHECK_INT_EQ(cfg->refs, 1);
	config_global_set(NULL); /* drops the last reference */
	CHECK_NULL(config_acquire());
	buf_free(&errors);
}

TEST(config_env_file_lines)
{
	static const struct {
		const char *line;
		int rc;
		const char *name, *value;
	} cases[] = {
		{ "OPENAI_API_KEY=sk-abc\n", 1, "OPENAI_API_KEY", "sk-abc" },
		{ "export GROQ_API_KEY=gsk_1\r\n", 1, "GROQ_API_KEY", "gsk_1" },
		{ "  A=\"quoted value\"", 1, "A", "quoted value" },
		{ "B='x=y'", 1, "B", "x=y" },
		{ "C=", 1, "C", "" },
		{ "D=\"unbalanced'", 1, "D", "\"unbalanced'" },
		{ "", 0, NULL, NULL },
		{ "   \n", 0, NULL, NULL },
		{ "# OPENAI_API_KEY=commented out", 0, NULL, NULL },
		{ "NO_EQUALS_SIGN", -1, NULL, NULL },
		{ "=value", -1, NULL, NULL },
		{ "9LIVES=1", -1, NULL, NULL },
		{ "BAD NAME=1", -1, NULL, NULL },
		{ "BAD-NAME=1", -1, NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		test_case("%s", cases[i].line);
		char line[256];
		snprintf(line, sizeof(line), "%s", cases[i].line);
		char *name = NULL, *value = NULL;
		CHECK_INT_EQ(config_env_line(line, &name, &value), cases[i].rc);
		if (cases[i].rc == 1) {
			CHECK_STR_EQ(name, cases[i].name);
			CHECK_STR_EQ(value, cases[i].value);
		}
	}
	test_case(NULL);
}

/* llm-router.env is re-read by a reload when it changes: a key added, changed (within the same
 * second, same length) or removed reaches the next config; a variable of the real environment
 * wins over the file. */
TEST(config_env_file_is_reread_on_change)
{
	clear_router_env();
	struct buf errors;
	struct config *first = load_shipped(&errors); /* the process's first load is behind us */
	REQUIRE_NOT_NULL(first);
	config_free(first);
	buf_free(&errors);
	char *conf_dir = test_path("conf");
	CHECK_INT_EQ(mkdir(conf_dir, 0700), 0);
	char *shipped = test_repo_path("conf/llm-router.conf");
	char *text = test_read_file(shipped, NULL);
	REQUIRE_NOT_NULL(text);
	char *conf = xasprintf("%s/llm-router.conf", conf_dir);
	char *env = xasprintf("%s/llm-router.env", conf_dir);
	test_write_file(conf, text, (size_t)-1);
	test_write_file(env, "GROQ_API_KEY=gsk-one\n", (size_t)-1);
	buf_init(&errors, 1 << 20);
	struct config *cfg = config_load(conf, &errors);
	REQUIRE_NOT_NULL(cfg);
	config_global_set(cfg);
	CHECK_STR_EQ(cfg->providers[5].api_key, "gsk-one");
	CHECK_INT_EQ(config_reload(0), 0); /* nothing changed */

	test_write_file(env, "GROQ_API_KEY=gsk-two\n", (size_t)-1);
	CHECK_INT_EQ(config_reload(0), 1);
	struct config *c = config_acquire();
	CHECK_STR_EQ(c->providers[5].api_key, "gsk-two");
	config_release(c);

	setenv("GROQ_API_KEY", "gsk-real-environment", 1);
	CHECK_INT_EQ(config_reload(1), 1);
	c = config_acquire();
	CHECK_STR_EQ(c->providers[5].api_key, "gsk-real-environment");
	config_release(c);
	unsetenv("GROQ_API_KEY");

	test_rm_rf(env);
	CHECK_INT_EQ(config_reload(0), 1);
	c = config_acquire();
	CHECK_INT_EQ(c->providers[5].available, 0);
	CHECK_NULL(c->providers[5].api_key);
	config_release(c);
	config_global_set(NULL);
	buf_free(&errors);
	free(text);
	free(shipped);
	free(conf);
	free(env);
	free(conf_dir);
}
