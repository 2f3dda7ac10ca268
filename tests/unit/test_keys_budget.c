/* test_keys_budget.c - SHA-256 vectors, agent keys (format, parse, check against the store), the
 * budget estimate, and reservations in the ledger (admission, settlement with the row, reclaim). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "config.h"
#include "harness.h"
#include "keys.h"
#include "providers/provider.h"
#include "relay.h"
#include "reqlog.h"
#include "sha256.h"
#include "store.h"
#include "store_int.h"
#include "util.h"

TEST(sha256_known_vectors)
{
	char hex[65];
	sha256_hex("", 0, hex);
	CHECK_STR_EQ(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sha256_hex("abc", 3, hex);
	CHECK_STR_EQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	sha256_hex(two, strlen(two), hex);
	CHECK_STR_EQ(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	char *million = malloc(1000000);
	REQUIRE_NOT_NULL(million);
	memset(million, 'a', 1000000);
	sha256_hex(million, 1000000, hex);
	CHECK_STR_EQ(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(million);
	/* 55, 56 and 64 bytes: the padding edges. */
	char buf[64];
	memset(buf, 'a', sizeof(buf));
	sha256_hex(buf, 55, hex);
	CHECK_STR_EQ(hex, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
	sha256_hex(buf, 56, hex);
	CHECK_STR_EQ(hex, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
	sha256_hex(buf, 64, hex);
	CHECK_STR_EQ(hex, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST(keys_generate_parse_and_reject_malformed)
{
	char key[KEY_LEN + 1], id[KEY_ID_LEN + 1], parsed[KEY_ID_LEN + 1];
	key_generate(key, id);
	CHECK_INT_EQ(strlen(key), KEY_LEN);
	CHECK(strncmp(key, "lrk_", 4) == 0);
	CHECK_INT_EQ(key_parse(key, parsed), 0);
	CHECK_STR_EQ(parsed, id);
	char other[KEY_LEN + 1], id2[KEY_ID_LEN + 1];
	key_generate(other, id2);
	CHECK(strcmp(key, other) != 0);
	static const char *const bad[] = { "", "lrk_", "sk-abc", "lrk_short_secret",
					   "lrk_AAAAAAAAAAAA-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
					   "lrk_AAAAAAAAAAA!_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
					   "lrk_AAAAAAAAAAAA_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbX" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		test_case("%s", bad[i]);
		CHECK_INT_EQ(key_parse(bad[i], parsed), -1);
	}
	test_case(NULL);
}

static struct store *fresh_store(void)
{
	char *path = test_path("kb.db");
	struct store_opts o = { .path = path, .busy_timeout_ms = 2000 };
	char err[256];
	struct store *st = store_open(&o, err, sizeof(err));
	free(path);
	return st;
}

TEST(keys_check_against_the_store)
{
	struct store *st = fresh_store();
	REQUIRE_NOT_NULL(st);
	char key[KEY_LEN + 1], id[KEY_ID_LEN + 1], agent[128];
	REQUIRE_INT_EQ(key_create(st, "devops_agent", key, id), 0);
	char auth[128];
	snprintf(auth, sizeof(auth), "Bearer %s", key);
	CHECK_INT_EQ(key_check(st, auth, agent, sizeof(agent)), KEY_OK);
	CHECK_STR_EQ(agent, "devops_agent");
	CHECK_INT_EQ(key_check(st, NULL, agent, sizeof(agent)), KEY_MISSING);
	CHECK_INT_EQ(key_check(st, "", agent, sizeof(agent)), KEY_MISSING);
	CHECK_INT_EQ(key_check(st, "Basic abc", agent, sizeof(agent)), KEY_MALFORMED);
	/* Right id, wrong secret. */
	char forged[128];
	snprintf(forged, sizeof(forged), "Bearer %s", key);
	forged[strlen(forged) - 1] = forged[strlen(forged) - 1] == 'a' ? 'b' : 'a';
	CHECK_INT_EQ(key_check(st, forged, agent, sizeof(agent)), KEY_UNKNOWN);
	CHECK_INT_EQ(key_check(NULL, auth, agent, sizeof(agent)), KEY_DB_ERROR);
	CHECK_INT_EQ(store_key_revoke(st, id, 1), 1);
	CHECK_INT_EQ(key_check(st, auth, agent, sizeof(agent)), KEY_REVOKED);
	CHECK_INT_EQ(store_key_revoke(st, id, 2), 0);
	store_close(st);
}

/* The single integer a query returns (-1 on error). */
static int64_t store_count(struct store *st, const char *sql)
{
	sqlite3_stmt *s;
	int64_t v = -1;
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

TEST(budget_reserve_settle_and_reclaim_keep_the_ledger_exact)
{
	struct store *st = fresh_store();
	REQUIRE_NOT_NULL(st);
	struct budget_ask a;
	memset(&a, 0, sizeof(a));
	a.request_id = "chatcmpl-r1";
	snprintf(a.day, sizeof(a.day), "2026-11-26");
	a.now_ms = 1795651200000;
	a.amount_nusd = 600;
	a.floor_nusd = 500;
	a.warn_level = 80;
	a.block_level = 100;
	a.scopes[0] = (struct budget_scope){ .scope = "tier:T9", .budget_nusd = 1000, .limit_nusd = 1000,
					     .warn_nusd = 900 };
	a.n = 1;
	REQUIRE_INT_EQ(budget_reserve_tx(st, &a), 0);
	CHECK(a.admitted);
	/* A second one does not fit next to the first reservation. */
	a.request_id = "chatcmpl-r2";
	REQUIRE_INT_EQ(budget_reserve_tx(st, &a), 0);
	CHECK(!a.admitted);
	CHECK_INT_EQ(a.blocked, 0);
	CHECK_INT_EQ(a.scopes[0].reserved_nusd, 600);
	CHECK_INT_EQ(a.refusal, BUDGET_EXHAUSTED);
	CHECK(a.scopes[0].new_block);
	/* Recorded at the configured level. */
	CHECK_INT_EQ(store_count(st, "SELECT count(*) FROM budget_alerts WHERE level = 100"), 1);
	/* A smaller request whose worst case does not fit what is left: no block alert. */
	a.request_id = "chatcmpl-r2b";
	a.amount_nusd = 500;
	a.floor_nusd = 300;
	a.scopes[0].scope = "tier:T8";
	REQUIRE_INT_EQ(budget_reserve_tx(st, &a), 0);
	CHECK(a.admitted);
	a.request_id = "chatcmpl-r2c";
	a.amount_nusd = 600;
	REQUIRE_INT_EQ(budget_reserve_tx(st, &a), 0);
	CHECK(!a.admitted);
	CHECK_INT_EQ(a.refusal, BUDGET_TOO_LARGE);
	CHECK(!a.scopes[0].new_block);
	CHECK_INT_EQ(store_count(st, "SELECT count(*) FROM budget_alerts WHERE scope = 'tier:T8'"), 0);
	CHECK_INT_EQ(store_budget_release(st, "chatcmpl-r2b"), 0);
	a.amount_nusd = 600;
	a.scopes[0].scope = "tier:T9";
	/* The first request's row settles its reservation at its actual cost. */
	struct reqlog r;
	reqlog_init(&r);
	r.request_id = "chatcmpl-r1";
	r.ts_start_ms = a.now_ms;
	r.ts_end_ms = a.now_ms + 10;
	r.tier = "T9";
	r.status = 200;
	r.cost_nusd = 250;
	char err[256];
	REQUIRE_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	int64_t spent, reserved;
	REQUIRE_INT_EQ(store_budget_spend(st, "2026-11-26", "tier:T9", &spent, &reserved), 0);
	CHECK_INT_EQ(spent, 250);
	CHECK_INT_EQ(reserved, 0);
	/* Logging the same row again changes nothing. */
	REQUIRE_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	REQUIRE_INT_EQ(store_budget_spend(st, "2026-11-26", "tier:T9", &spent, &reserved), 0);
	CHECK_INT_EQ(spent, 250);
	/* Now 600 fits again; a reservation never settled is reclaimed after its timeout. */
	a.request_id = "chatcmpl-r3";
	a.now_ms += 1000;
	REQUIRE_INT_EQ(budget_reserve_tx(st, &a), 0);
	CHECK(a.admitted);
	CHECK_INT_EQ(store_budget_reclaim(st, a.now_ms - 1), 0);
	CHECK_INT_EQ(store_budget_reclaim(st, a.now_ms + 1), 1);
	/* Its call's cost is not known (its responder died): its worst case is charged, with a row
	 * that says so, and the ledger still sums to the logged costs. */
	REQUIRE_INT_EQ(store_budget_spend(st, "2026-11-26", "tier:T9", &spent, &reserved), 0);
	CHECK_INT_EQ(reserved, 0);
	CHECK_INT_EQ(spent, 850);
	CHECK_INT_EQ(store_count(st, "SELECT cost_nusd FROM request_log WHERE request_id = 'chatcmpl-r3'"
				     " AND cost_source = 'reclaimed' AND error_code = 'responder_lost'"
				     " AND tier = 'T9' AND ts_start_ms = 1795651201000"), 600);
	CHECK_INT_EQ(store_count(st, "SELECT sum(cost_nusd) FROM request_log"), 850);
	/* A row arriving after that (a fallback line replayed late) changes nothing. */
	r.request_id = "chatcmpl-r3";
	r.cost_nusd = 100;
	REQUIRE_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	REQUIRE_INT_EQ(store_budget_spend(st, "2026-11-26", "tier:T9", &spent, &reserved), 0);
	CHECK_INT_EQ(spent, 850);
	CHECK_INT_EQ(reserved, 0);
	store_close(st);
}

/* The admission rule alone: spend and reservations as the transaction read them. */
TEST(budget_admit_refuses_the_first_scope_past_its_limit_and_says_which_alerts_are_due)
{
	static const struct {
		const char *name;
		int64_t amount;
		int64_t limit0, warn0, spent0, reserved0;   /* the tier */
		int64_t limit1, warn1, spent1, reserved1;   /* the agent (limit1 < 0: no agent scope) */
		int blocked;
		int warn0_due, block0_due, warn1_due, block1_due;
	} rows[] = {
		{ "fits", 100, 1000, 900, 0, 0, -1, 0, 0, 0, -1, 0, 0, 0, 0 },
		{ "exactly at the limit fits", 400, 1000, 900, 300, 300, -1, 0, 0, 0, -1, 0, 0, 0, 0 },
		{ "one past the limit", 401, 1000, 900, 300, 300, -1, 0, 0, 0, 0, 0, 1, 0, 0 },
		{ "reservations count", 1, 1000, 900, 0, 1000, -1, 0, 0, 0, 0, 0, 1, 0, 0 },
		{ "warn due from the warn level", 1, 1000, 900, 900, 0, -1, 0, 0, 0, -1, 1, 0, 0, 0 },
		{ "spent at the limit: block alert due", 0, 1000, 900, 1000, 0, -1, 0, 0, 0, -1, 1, 1, 0, 0 },
		{ "no limit: never refused", 1 << 29, 0, 0, 5000, 0, -1, 0, 0, 0, -1, 0, 0, 0, 0 },
		{ "the agent refuses", 200, 1000, 900, 0, 0, 100, 90, 0, 0, 1, 0, 0, 0, 1 },
		{ "the tier refuses first", 2000, 1000, 900, 0, 0, 100, 90, 95, 0, 0, 0, 1, 1, 0 },
		/* floor 10 below: the request would fit with a lower max_tokens */
		{ "too large for what is left: no block alert", 401 + (10LL << 32), 1000, 900, 300, 300, -1, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ "not even the floor fits: exhausted", 500 + (450LL << 32), 1000, 900, 300, 300, -1, 0, 0, 0, 0, 0, 1, 0, 0 },
		{ "too large for the whole budget", 5000 + (10LL << 32), 1000, 900, 0, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("%s", rows[i].name);
		struct budget_ask a;
		memset(&a, 0, sizeof(a));
		/* amount's high 32 bits, when set, are the floor (else the floor is the amount) */
		a.amount_nusd = rows[i].amount & 0xffffffff;
		a.floor_nusd = rows[i].amount >> 32 ? rows[i].amount >> 32 : a.amount_nusd;
		a.scopes[0] = (struct budget_scope){ .scope = "tier:T", .limit_nusd = rows[i].limit0,
						     .warn_nusd = rows[i].warn0, .spent_nusd = rows[i].spent0,
						     .reserved_nusd = rows[i].reserved0 };
		a.n = 1;
		if (rows[i].limit1 >= 0) {
			a.scopes[1] = (struct budget_scope){ .scope = "agent:a", .limit_nusd = rows[i].limit1,
							     .warn_nusd = rows[i].warn1,
							     .spent_nusd = rows[i].spent1,
							     .reserved_nusd = rows[i].reserved1 };
			a.n = 2;
		}
		budget_admit(&a);
		CHECK_INT_EQ(a.blocked, rows[i].blocked);
		CHECK_INT_EQ(a.refusal, a.blocked < 0 ? BUDGET_ADMITTED
				       : a.floor_nusd < a.amount_nusd && rows[i].block0_due + rows[i].block1_due == 0
					       ? BUDGET_TOO_LARGE
					       : BUDGET_EXHAUSTED);
		CHECK_INT_EQ(a.scopes[0].warn_due, rows[i].warn0_due);
		CHECK_INT_EQ(a.scopes[0].block_due, rows[i].block0_due);
		CHECK_INT_EQ(a.scopes[1].warn_due, rows[i].warn1_due);
		CHECK_INT_EQ(a.scopes[1].block_due, rows[i].block1_due);
	}
	test_case(NULL);
}

TEST(budget_scope_limits_come_from_the_budget_and_the_percentages)
{
	struct config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.block_percent = 100;
	cfg.warn_percent = 80;
	struct budget_scope sc;
	budget_scope_init(&sc, "tier:T1", 12.5, &cfg);
	CHECK_INT_EQ(sc.budget_nusd, 12500000000);
	CHECK_INT_EQ(sc.limit_nusd, 12500000000);
	CHECK_INT_EQ(sc.warn_nusd, 10000000000);
	sc.spent_nusd = 2500000000;
	sc.reserved_nusd = 1000000000;
	CHECK_INT_EQ(budget_scope_left(&sc), 9000000000);
	budget_scope_init(&sc, "tier:T1", 0, &cfg);
	CHECK_INT_EQ(sc.budget_nusd, 0);
	CHECK_INT_EQ(sc.limit_nusd, 0);
	CHECK_INT_EQ(sc.warn_nusd, 0);
}

TEST(budget_estimate_is_an_upper_bound_priced_at_the_dearest_model)
{
	char *path = test_repo_path("conf/llm-router.conf");
	struct buf errors;
	buf_init(&errors, 1 << 20);
	struct config *cfg = config_load(path, &errors);
	free(path);
	REQUIRE_NOT_NULL(cfg);
	const char *text = "{\"model\":\"gpt-4o-mini\",\"max_tokens\":100,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";
	json_error_t e;
	json_t *body = json_loads(text, 0, &e);
	REQUIRE_NOT_NULL(body);
	int mini = config_model_index(cfg, "gpt-4o-mini");
	int opus = config_model_index(cfg, "claude-opus-4-6");
	struct chain one = { .model = { (size_t)mini }, .n = 1 };
	struct budget_estimate be;
	int64_t est = budget_estimate_nusd(cfg, body, strlen(text), &one, &be);
	CHECK_INT_EQ(be.bounded, 1);
	CHECK_INT_EQ(be.floor_nusd, (int64_t)strlen(text) * 150 + 600);
	/* every byte an input token at $0.15/M, 100 output tokens at $0.60/M */
	CHECK_INT_EQ(est, (int64_t)strlen(text) * 150 + 100 * 600);
	struct chain two = { .model = { (size_t)mini, (size_t)opus }, .n = 2 };
	CHECK_INT_EQ(budget_estimate_nusd(cfg, body, strlen(text), &two, NULL),
		     (int64_t)strlen(text) * 15000 + 100 * 75000);
	json_decref(body);
	/* An image counts 2,000 tokens, not its bytes; no max_tokens: the model's default. */
	char big[9000];
	char data[8001];
	memset(data, 'A', 8000);
	data[8000] = '\0';
	snprintf(big, sizeof(big),
		 "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
		 "\"image_url\":{\"url\":\"data:image/png;base64,%s\"}}]}]}", data);
	body = json_loads(big, 0, &e);
	REQUIRE_NOT_NULL(body);
	int64_t in = (int64_t)strlen(big) - (int64_t)strlen("data:image/png;base64,") - 8000 + 2000;
	CHECK_INT_EQ(budget_estimate_nusd(cfg, body, strlen(big), &one, &be),
		     in * 150 + cfg->models[mini].max_output_tokens * 600);
	CHECK_INT_EQ(be.bounded, 0);
	json_decref(body);
	/* What is sent upstream: Anthropic raises max_tokens 1 to budget_tokens + 1 for thinking. */
	const char *think = "{\"model\":\"claude-opus-4-6\",\"max_tokens\":1,\"thinking\":{\"type\":"
			    "\"enabled\",\"budget_tokens\":31999},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	body = json_loads(think, 0, &e);
	REQUIRE_NOT_NULL(body);
	struct chain op = { .model = { (size_t)opus }, .n = 1 };
	CHECK_INT_EQ(budget_estimate_nusd(cfg, body, strlen(think), &op, &be),
		     (int64_t)strlen(think) * 15000 + 32000LL * 75000);
	CHECK_INT_EQ(be.bounded, 1);
	json_decref(body);
	/* reasoning_effort: up to 8,192 thinking tokens; n multiplies the output (OpenAI). */
	const char *effort = "{\"model\":\"claude-opus-4-6\",\"max_tokens\":10,\"reasoning_effort\":\"high\","
			     "\"messages\":[]}";
	body = json_loads(effort, 0, &e);
	CHECK_INT_EQ(budget_estimate_nusd(cfg, body, strlen(effort), &op, NULL),
		     (int64_t)strlen(effort) * 15000 + (4096 + 10) * 75000LL);
	json_decref(body);
	const char *nn = "{\"model\":\"gpt-4o-mini\",\"n\":128,\"max_tokens\":100000000,\"messages\":[]}";
	body = json_loads(nn, 0, &e);
	CHECK_INT_EQ(budget_estimate_nusd(cfg, body, strlen(nn), &one, NULL),
		     (int64_t)strlen(nn) * 150 + 128LL * 100000000 * 600);
	json_decref(body);
	CHECK_INT_EQ(budget_seconds_to_reset(1795651200000), 86400);
	CHECK_INT_EQ(budget_seconds_to_reset(1795651200000 + 86399000), 1);
	config_free(cfg);
	buf_free(&errors);
}

/* Absurd counts from any upstream are clamped, the cost saturates and is never negative. */
TEST(usage_counts_are_clamped_and_cost_saturates)
{
	static const char *const absurd[] = {
		"{\"prompt_tokens\":10,\"completion_tokens\":123000000000000,\"total_tokens\":5}",
		"{\"prompt_tokens\":-5,\"completion_tokens\":-9223372036854775807}",
		"{\"prompt_tokens\":9223372036854775807,\"completion_tokens\":9223372036854775807}",
		"{\"prompt_tokens\":1e300,\"completion_tokens\":1.5e19}",
	};
	struct model_conf m;
	memset(&m, 0, sizeof(m));
	m.in_nusd = m.cached_in_nusd = m.cache_write_nusd = 15000;
	m.out_nusd = 75000;
	for (size_t i = 0; i < ARRAY_SIZE(absurd); i++) {
		test_case("%s", absurd[i]);
		json_error_t e;
		json_t *j = json_loads(absurd[i], 0, &e);
		REQUIRE_NOT_NULL(j);
		struct usage u;
		usage_init(&u);
		usage_from_openai(&u, j);
		CHECK(u.prompt <= USAGE_COUNT_MAX && u.completion <= USAGE_COUNT_MAX);
		CHECK(u.total <= 2 * USAGE_COUNT_MAX);
		const char *src;
		int64_t c = usage_cost_nusd(&u, &m, &src);
		CHECK(c >= 0 && c <= COST_NUSD_MAX);
		const json_t *ct = json_object_get(u.json, "completion_tokens");
		CHECK(!ct || (json_integer_value(ct) >= 0 && json_integer_value(ct) <= USAGE_COUNT_MAX));
		usage_clear(&u);
		json_decref(j);
	}
	test_case(NULL);
	json_t *neg = json_integer(-1), *big = json_integer(INT64_MAX);
	CHECK_INT_EQ(usage_count(neg), -1);
	CHECK_INT_EQ(usage_count(big), USAGE_COUNT_MAX);
	json_decref(neg);
	json_decref(big);
	CHECK_INT_EQ(cost_mul(INT64_MAX, INT64_MAX), COST_NUSD_MAX);
	CHECK_INT_EQ(cost_mul(-5, 10), 0);
	CHECK_INT_EQ(cost_add(COST_NUSD_MAX, COST_NUSD_MAX), COST_NUSD_MAX);
}

/* Schema version 5: the triggers refuse a negative or absurd cost and a negative spend. */
TEST(schema_refuses_negative_costs_and_spend)
{
	struct store *st = fresh_store();
	REQUIRE_NOT_NULL(st);
	struct reqlog r;
	reqlog_init(&r);
	r.request_id = "chatcmpl-neg";
	r.ts_start_ms = r.ts_end_ms = 1795651200000;
	r.status = 200;
	r.cost_nusd = -9200000000000000000LL;
	char err[256] = "";
	CHECK_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), -1);
	CHECK(strstr(err, "cost_nusd out of range") != NULL);
	r.cost_nusd = 2000000000000000LL;
	CHECK_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), -1);
	r.cost_nusd = 5;
	CHECK_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	CHECK_INT_EQ(store_exec(st->db, "UPDATE request_log SET cost_nusd = -1", err, sizeof(err)), -1);
	CHECK_INT_EQ(store_exec(st->db, "INSERT INTO budget_spend (day, scope, spent_nusd) VALUES ('d', 's', -1)",
				err, sizeof(err)), -1);
	CHECK_INT_EQ(store_spend_add(st, "d", "s", 10, 0, 1), 0);
	CHECK_INT_EQ(store_spend_add(st, "d", "s", -11, 0, 1), -1);
	CHECK_INT_EQ(store_count(st, "SELECT sum(cost_nusd) FROM request_log"), 5);
	store_close(st);
}

static int cap_sink(void *ud, const char *p, size_t n)
{
	buf_append(ud, p, n);
	return 0;
}

/* The relay's output cap: a stream past max_out_tokens (x 8 characters, + 4,096) is ended before
 * the frame that passes it; the error event and [DONE] follow. */
TEST(relay_cuts_a_stream_past_the_output_its_request_allows)
{
	struct config cfg;
	struct provider_conf prov;
	struct model_conf model;
	memset(&cfg, 0, sizeof(cfg));
	memset(&prov, 0, sizeof(prov));
	memset(&model, 0, sizeof(model));
	prov.name = "openai";
	prov.api = API_OPENAI;
	prov.developer_role = "developer";
	model.id = "m";
	struct xlate_ctx x = { .cfg = &cfg, .prov = &prov, .model = &model, .upstream_model = "m",
			       .public_model = "m", .id = "chatcmpl-cap", .created = 1, .stream = 1 };
	struct buf out;
	buf_init(&out, BUF_UNLIMITED);
	struct relay_sink sink = { cap_sink, &out };
	struct relay r;
	relay_init(&r, &provider_openai, &x, &sink);
	r.max_out_tokens = 10;
	static const char ev[] = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
				 "\"0123456789\"},\"finish_reason\":null}]}\n\n";
	int fed = 0;
	while (fed < 1000 && relay_feed(&r, ev, sizeof(ev) - 1) == 0)
		fed++;
	/* 4,176 characters allowed: 417 events of 10 went out, the 418th passed the cap. */
	CHECK_INT_EQ(fed, 417);
	CHECK_INT_EQ(r.state, RELAY_FAILED);
	CHECK_STR_EQ(r.err.code, "output_limit_exceeded");
	CHECK(r.out_chars <= 10 * 8 + 4096 + 10);
	relay_emit_error(&r);
	CHECK(strstr(buf_str(&out), "output_limit_exceeded") != NULL);
	CHECK(strstr(buf_str(&out), "data: [DONE]") != NULL);
	relay_free(&r);
	buf_free(&out);
}

/* The alert outbox: a row recorded for the webhook is due until sent; a claim is a lease that a
 * second drainer cannot take; a failure schedules the next try; rows recorded with no webhook,
 * or older than the window asked for, are never due. */
TEST(alert_outbox_claims_leases_retries_and_marks_sent)
{
	struct store *st = fresh_store();
	REQUIRE_NOT_NULL(st);
	int64_t t = 1767225600000LL;
	CHECK_INT_EQ(store_budget_alert(st, "2026-01-01", "tier:T2", 90, t, 45, 50, 1), 1);
	CHECK_INT_EQ(store_budget_alert(st, "2026-01-01", "tier:T2", 90, t + 5, 46, 50, 1), 0);
	CHECK_INT_EQ(store_budget_alert(st, "2026-01-01", "tier:T3", 90, t, 45, 50, 0), 1);
	CHECK_INT_EQ(store_budget_alert(st, "2025-12-30", "tier:T2", 100, t - 200000000LL, 50, 50, 1), 1);
	struct alert_row rows[4];
	/* Only the first: T3 had no webhook, the 100 % one is older than the window. */
	REQUIRE_INT_EQ(store_alert_due(st, t + 10, t - 86400000LL, rows, 4), 1);
	CHECK_STR_EQ(rows[0].scope, "tier:T2");
	CHECK_STR_EQ(rows[0].day, "2026-01-01");
	CHECK_INT_EQ(rows[0].level, 90);
	CHECK_INT_EQ(rows[0].spent_nusd, 45);
	CHECK_INT_EQ(rows[0].limit_nusd, 50);
	CHECK_INT_EQ(rows[0].attempts, 0);
	CHECK_INT_EQ(store_alert_next(st, t - 86400000LL), t);
	/* Two drainers read it; one claim wins, the other finds the lease. */
	CHECK_INT_EQ(store_alert_claim(st, &rows[0], t + 10, t + 60010), 1);
	CHECK_INT_EQ(store_alert_claim(st, &rows[0], t + 11, t + 60011), 0);
	CHECK_INT_EQ(store_alert_due(st, t + 20, t - 86400000LL, rows + 1, 3), 0);
	/* The lease ran out (its drainer died): due again, with the attempt counted. */
	REQUIRE_INT_EQ(store_alert_due(st, t + 60010, t - 86400000LL, rows, 4), 1);
	CHECK_INT_EQ(rows[0].attempts, 1);
	CHECK_INT_EQ(store_alert_claim(st, &rows[0], t + 60010, t + 120010), 1);
	CHECK_INT_EQ(store_alert_failed(st, &rows[0], t + 64000, "the webhook answered HTTP 500"), 0);
	CHECK_INT_EQ(store_alert_due(st, t + 63999, t - 86400000LL, rows + 1, 3), 0);
	CHECK_INT_EQ(store_alert_next(st, t - 86400000LL), t + 64000);
	REQUIRE_INT_EQ(store_alert_due(st, t + 64000, t - 86400000LL, rows, 4), 1);
	CHECK_INT_EQ(rows[0].attempts, 2);
	CHECK_INT_EQ(store_alert_claim(st, &rows[0], t + 64000, t + 124000), 1);
	CHECK_INT_EQ(store_alert_sent(st, &rows[0], t + 64100), 0);
	CHECK_INT_EQ(store_alert_due(st, t + 999999, t - 86400000LL, rows, 4), 0);
	CHECK_INT_EQ(store_alert_next(st, t - 86400000LL), -1);
	/* A sent row is not claimed again, even with its lease past. */
	CHECK_INT_EQ(store_alert_claim(st, &rows[0], t + 999999, t + 1999999), 0);
	store_close(st);
}
