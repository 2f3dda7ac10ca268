/* test_reqlog_store.c - the SQLite request log (schema, insert, idempotency) and the JSONL
 * fallback of reqlog_write. Rows are read back with sqlite3 directly. */
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "log.h"
#include "reqlog.h"
#include "rowkeep.h"
#include "store.h"

static struct store *open_store(const char *path, char *err, size_t errsz)
{
	struct store_opts o = {
		.path = path,
		.busy_timeout_ms = 0,
		.synchronous_full = 0,
		.checkpoint_pages = 1000,
	};
	return store_open(&o, err, errsz);
}

/* A record with every field set. */
static void full_record(struct reqlog *r, const char *id)
{
	reqlog_init(r);
	r->request_id = id;
	r->ts_start_ms = 1767225600123;
	r->ts_end_ms = 1767225601456;
	r->agent = "devops_agent";
	r->tier = "T2";
	r->task = "code";
	r->requested_model = "gpt-4o";
	r->model = "gpt-4o";
	r->provider = "openai";
	r->upstream_model = "gpt-4o-2024-08-06";
	r->method = "POST";
	r->path = "/v1/chat/completions";
	r->stream = 1;
	r->status = 200;
	r->error_type = "rate_limit_error";
	r->error_code = "rate_limit_exceeded";
	r->error_message = "openai rate limit reached (HTTP 429)";
	r->finish_reason = "stop";
	r->input_tokens = 19;
	r->output_tokens = 10;
	r->cached_tokens = 5;
	r->cache_write_tokens = 2;
	r->reasoning_tokens = 3;
	r->cost_nusd = 123456789;
	r->cost_source = "pricing";
	r->latency_ms = 1333.5;
	r->ttft_ms = 210.25;
	r->upstream_ms = 1300.0;
	r->overhead_ms = 0.75;
	r->dropped_params = "logprobs,top_logprobs";
	r->upstream_request_id = "req_abc";
	r->attempts = 2;
	r->client_gone = 1;
	r->fallback_from = "claude-sonnet-4-5";
	r->partial = 0;
	static const struct attempt_log log[2] = {
		{ .ts_start_ms = 1767225600124, .model = "claude-sonnet-4-5", .provider = "anthropic",
		  .upstream_model = "claude-sonnet-4-5", .outcome = "failed", .upstream_status = 529,
		  .status = 503, .error_type = "overloaded_error", .error_code = "upstream_overloaded",
		  .error_message = "anthropic: Overloaded", .latency_ms = 20.5, .retry_after_s = 3,
		  .upstream_request_id = "req_ant" },
		{ .ts_start_ms = 1767225600150, .model = "gpt-4o", .provider = "openai",
		  .upstream_model = "gpt-4o-2024-08-06", .outcome = "ok", .upstream_status = 200,
		  .latency_ms = 1280.0, .upstream_request_id = "req_abc" },
	};
	r->attempt_log = log;
	r->n_attempt_log = 2;
}

static sqlite3 *open_raw(const char *path)
{
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

static long long query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s;
	long long v = -12345;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return v;
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static char *query_text(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s;
	char *v = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return NULL;
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
		v = strdup((const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	return v;
}

TEST(store_open_creates_directory_and_schema)
{
	char *path = test_path("deep/er/llm_logs.db");
	char err[512] = "";
	struct store *st = open_store(path, err, sizeof(err));
	if (!st)
		printf("       store_open: %s\n", err);
	REQUIRE_NOT_NULL(st);
	CHECK_INT_EQ(store_schema_version(st), STORE_SCHEMA_VERSION);
	store_close(st);

	sqlite3 *db = open_raw(path);
	REQUIRE_NOT_NULL(db);
	CHECK_INT_EQ(query_int(db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
	char *mode = query_text(db, "PRAGMA journal_mode");
	CHECK_STR_EQ(mode, "wal");
	free(mode);
	CHECK_INT_EQ(query_int(db, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='request_log'"), 1);
	CHECK_INT_EQ(query_int(db, "SELECT count(*) FROM sqlite_master WHERE type='index' AND name='request_log_ts'"), 1);
	/* The columns a reader relies on. */
	static const char *const cols[] = {
		"request_id", "ts_start_ms", "ts_end_ms", "agent", "tier", "task", "requested_model",
		"model", "provider", "upstream_model", "stream", "status", "error_type", "error_code",
		"error_message", "finish_reason", "input_tokens", "output_tokens", "cached_tokens",
		"cache_write_tokens", "reasoning_tokens", "cost_nusd", "cost_source", "latency_ms",
		"ttft_ms", "upstream_ms", "overhead_ms", "dropped_params", "upstream_request_id",
		"attempts", "client_gone",
	};
	for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
		test_case("column %s", cols[i]);
		char sql[256];
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM pragma_table_xinfo('request_log') WHERE name='%s'",
			 cols[i]);
		CHECK_INT_EQ(query_int(db, sql), 1);
	}
	sqlite3_close(db);
	free(path);
}

TEST(store_reopen_keeps_schema_and_rows)
{
	char *path = test_path("llm_logs.db");
	char err[512];
	struct store *st = open_store(path, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	struct reqlog r;
	full_record(&r, "chatcmpl-reopen");
	CHECK_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	store_close(st);
	/* A second open (another worker, a restart) finds the schema and runs no migration. */
	st = open_store(path, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	CHECK_INT_EQ(store_schema_version(st), STORE_SCHEMA_VERSION);
	struct store *st2 = open_store(path, err, sizeof(err));
	CHECK_NOT_NULL(st2);
	store_close(st2);
	store_close(st);
	sqlite3 *db = open_raw(path);
	REQUIRE_NOT_NULL(db);
	CHECK_INT_EQ(query_int(db, "SELECT count(*) FROM request_log"), 1);
	sqlite3_close(db);
	free(path);
}

TEST(store_refuses_a_newer_schema)
{
	char *path = test_path("newer.db");
	sqlite3 *db = NULL;
	REQUIRE_INT_EQ(sqlite3_open(path, &db), SQLITE_OK);
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", STORE_SCHEMA_VERSION + 5);
	CHECK_INT_EQ(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	char err[512] = "";
	struct store *st = open_store(path, err, sizeof(err));
	CHECK_NULL(st);
	store_close(st);
	CHECK_CONTAINS(err, "newer");
	free(path);
}

TEST(store_insert_and_read_back_every_column)
{
	char *path = test_path("llm_logs.db");
	char err[512];
	struct store *st = open_store(path, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	struct reqlog r;
	full_record(&r, "chatcmpl-full");
	CHECK_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	store_close(st);

	sqlite3 *db = open_raw(path);
	REQUIRE_NOT_NULL(db);
	sqlite3_stmt *s;
	REQUIRE_INT_EQ(sqlite3_prepare_v2(db,
		"SELECT request_id, ts_start_ms, ts_end_ms, agent, tier, task, requested_model, model,"
		" provider, upstream_model, stream, status, error_type, error_code, error_message,"
		" finish_reason, input_tokens, output_tokens, cached_tokens, cache_write_tokens,"
		" reasoning_tokens, cost_nusd, cost_source, latency_ms, ttft_ms, upstream_ms, overhead_ms,"
		" dropped_params, upstream_request_id, attempts, client_gone, cost_usd"
		" FROM request_log", -1, &s, NULL), SQLITE_OK);
	REQUIRE_INT_EQ(sqlite3_step(s), SQLITE_ROW);
#define TXT(i) ((const char *)sqlite3_column_text(s, (i)))
	CHECK_STR_EQ(TXT(0), "chatcmpl-full");
	CHECK_INT_EQ(sqlite3_column_int64(s, 1), 1767225600123);
	CHECK_INT_EQ(sqlite3_column_int64(s, 2), 1767225601456);
	CHECK_STR_EQ(TXT(3), "devops_agent");
	CHECK_STR_EQ(TXT(4), "T2");
	CHECK_STR_EQ(TXT(5), "code");
	CHECK_STR_EQ(TXT(6), "gpt-4o");
	CHECK_STR_EQ(TXT(7), "gpt-4o");
	CHECK_STR_EQ(TXT(8), "openai");
	CHECK_STR_EQ(TXT(9), "gpt-4o-2024-08-06");
	CHECK_INT_EQ(sqlite3_column_int(s, 10), 1);
	CHECK_INT_EQ(sqlite3_column_int(s, 11), 200);
	CHECK_STR_EQ(TXT(12), "rate_limit_error");
	CHECK_STR_EQ(TXT(13), "rate_limit_exceeded");
	CHECK_STR_EQ(TXT(14), "openai rate limit reached (HTTP 429)");
	CHECK_STR_EQ(TXT(15), "stop");
	CHECK_INT_EQ(sqlite3_column_int64(s, 16), 19);
	CHECK_INT_EQ(sqlite3_column_int64(s, 17), 10);
	CHECK_INT_EQ(sqlite3_column_int64(s, 18), 5);
	CHECK_INT_EQ(sqlite3_column_int64(s, 19), 2);
	CHECK_INT_EQ(sqlite3_column_int64(s, 20), 3);
	CHECK_INT_EQ(sqlite3_column_int64(s, 21), 123456789);
	CHECK_STR_EQ(TXT(22), "pricing");
	CHECK_DBL_EQ(sqlite3_column_double(s, 23), 1333.5);
	CHECK_DBL_EQ(sqlite3_column_double(s, 24), 210.25);
	CHECK_DBL_EQ(sqlite3_column_double(s, 25), 1300.0);
	CHECK_DBL_EQ(sqlite3_column_double(s, 26), 0.75);
	CHECK_STR_EQ(TXT(27), "logprobs,top_logprobs");
	CHECK_STR_EQ(TXT(28), "req_abc");
	CHECK_INT_EQ(sqlite3_column_int(s, 29), 2);
	CHECK_INT_EQ(sqlite3_column_int(s, 30), 1);
	CHECK_DBL_EQ(sqlite3_column_double(s, 31), 0.123456789);
	CHECK_INT_EQ(sqlite3_step(s), SQLITE_DONE);
	sqlite3_finalize(s);

	REQUIRE_INT_EQ(sqlite3_prepare_v2(db, "SELECT fallback_from, partial FROM request_log", -1, &s,
					  NULL), SQLITE_OK);
	REQUIRE_INT_EQ(sqlite3_step(s), SQLITE_ROW);
	CHECK_STR_EQ(TXT(0), "claude-sonnet-4-5");
	CHECK_INT_EQ(sqlite3_column_int(s, 1), 0);
	sqlite3_finalize(s);

	/* Each attempt is a row linked by request_id, numbered from 1. */
	REQUIRE_INT_EQ(sqlite3_prepare_v2(db,
		"SELECT attempt, ts_start_ms, model, provider, upstream_model, outcome, upstream_status,"
		" status, error_type, error_code, error_message, latency_ms, retry_after_s,"
		" upstream_request_id FROM request_attempts WHERE request_id = 'chatcmpl-full'"
		" ORDER BY attempt", -1, &s, NULL), SQLITE_OK);
	REQUIRE_INT_EQ(sqlite3_step(s), SQLITE_ROW);
	CHECK_INT_EQ(sqlite3_column_int(s, 0), 1);
	CHECK_INT_EQ(sqlite3_column_int64(s, 1), 1767225600124);
	CHECK_STR_EQ(TXT(2), "claude-sonnet-4-5");
	CHECK_STR_EQ(TXT(3), "anthropic");
	CHECK_STR_EQ(TXT(4), "claude-sonnet-4-5");
	CHECK_STR_EQ(TXT(5), "failed");
	CHECK_INT_EQ(sqlite3_column_int(s, 6), 529);
	CHECK_INT_EQ(sqlite3_column_int(s, 7), 503);
	CHECK_STR_EQ(TXT(8), "overloaded_error");
	CHECK_STR_EQ(TXT(9), "upstream_overloaded");
	CHECK_STR_EQ(TXT(10), "anthropic: Overloaded");
	CHECK_DBL_EQ(sqlite3_column_double(s, 11), 20.5);
	CHECK_INT_EQ(sqlite3_column_int(s, 12), 3);
	CHECK_STR_EQ(TXT(13), "req_ant");
	REQUIRE_INT_EQ(sqlite3_step(s), SQLITE_ROW);
	CHECK_INT_EQ(sqlite3_column_int(s, 0), 2);
	CHECK_STR_EQ(TXT(2), "gpt-4o");
	CHECK_STR_EQ(TXT(5), "ok");
	CHECK_INT_EQ(sqlite3_column_int(s, 6), 200);
	CHECK_INT_EQ(sqlite3_column_type(s, 7), SQLITE_NULL);
	CHECK_INT_EQ(sqlite3_column_type(s, 8), SQLITE_NULL);
	CHECK_INT_EQ(sqlite3_column_type(s, 12), SQLITE_NULL);
	CHECK_INT_EQ(sqlite3_step(s), SQLITE_DONE);
#undef TXT
	sqlite3_finalize(s);
	sqlite3_close(db);
	free(path);
}

TEST(store_unknown_values_are_null)
{
	char *path = test_path("llm_logs.db");
	char err[512];
	struct store *st = open_store(path, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	struct reqlog r;
	reqlog_init(&r);
	r.request_id = "chatcmpl-sparse";
	r.status = 400;
	r.dropped_params = "";          /* empty list = none */
	r.upstream_request_id = "";
	CHECK_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	store_close(st);
	sqlite3 *db = open_raw(path);
	REQUIRE_NOT_NULL(db);
	static const char *const null_cols[] = {
		"agent", "tier", "task", "model", "provider", "error_type", "finish_reason",
		"input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens",
		"reasoning_tokens", "ttft_ms", "upstream_ms", "dropped_params", "upstream_request_id",
	};
	for (size_t i = 0; i < sizeof(null_cols) / sizeof(null_cols[0]); i++) {
		test_case("column %s", null_cols[i]);
		char sql[160];
		snprintf(sql, sizeof(sql), "SELECT %s IS NULL FROM request_log", null_cols[i]);
		CHECK_INT_EQ(query_int(db, sql), 1);
	}
	test_case(NULL);
	char *src = query_text(db, "SELECT cost_source FROM request_log");
	CHECK_STR_EQ(src, "none");
	free(src);
	CHECK_INT_EQ(query_int(db, "SELECT status FROM request_log"), 400);
	CHECK_INT_EQ(query_int(db, "SELECT cost_nusd FROM request_log"), 0);
	sqlite3_close(db);
	free(path);
}

TEST(store_insert_is_idempotent_per_request_id)
{
	char *path = test_path("llm_logs.db");
	char err[512];
	struct store *st = open_store(path, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	struct reqlog r;
	full_record(&r, "chatcmpl-dup");
	CHECK_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	/* A retried write of the same request (e.g. after a crash between commit and reply) is a
	 * no-op, not an error, and does not overwrite the first row. */
	r.status = 502;
	r.cost_nusd = 1;
	CHECK_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	struct reqlog other;
	full_record(&other, "chatcmpl-other");
	CHECK_INT_EQ(store_insert_reqlog(st, &other, err, sizeof(err)), 0);
	store_close(st);
	sqlite3 *db = open_raw(path);
	REQUIRE_NOT_NULL(db);
	CHECK_INT_EQ(query_int(db, "SELECT count(*) FROM request_log"), 2);
	CHECK_INT_EQ(query_int(db, "SELECT count(*) FROM request_log WHERE request_id='chatcmpl-dup'"), 1);
	CHECK_INT_EQ(query_int(db, "SELECT status FROM request_log WHERE request_id='chatcmpl-dup'"), 200);
	CHECK_INT_EQ(query_int(db, "SELECT cost_nusd FROM request_log WHERE request_id='chatcmpl-dup'"), 123456789);
	sqlite3_close(db);
	free(path);
}

/* ---- reqlog_to_json ---- */

static const char *const json_keys[] = {
	"request_id", "ts_start_ms", "ts_end_ms", "agent", "tier", "task", "requested_model",
	"model", "provider", "upstream_model", "stream", "status", "error_type", "error_code",
	"error_message", "finish_reason", "input_tokens", "output_tokens", "cached_tokens",
	"cache_write_tokens", "reasoning_tokens", "cost_nusd", "cost_source", "latency_ms",
	"ttft_ms", "upstream_ms", "overhead_ms", "dropped_params", "upstream_request_id",
	"attempts", "client_gone", "fallback_from", "partial", "method", "path", "attempt_log",
	"tool_state",
};

/* A text that is not UTF-8 is kept with '?' for each bad byte, never dropped: the fallback line
 * is the row (its agent is the budget scope its replay charges). */
TEST(reqlog_to_json_keeps_text_that_is_not_utf8)
{
	struct reqlog r;
	full_record(&r, "chatcmpl-utf8");
	r.agent = "caf\xe9";
	r.task = "co\xff\xfe";
	r.upstream_request_id = "req_\xc3";
	json_t *o = reqlog_to_json(&r);
	REQUIRE_NOT_NULL(o);
	CHECK_STR_EQ(json_string_value(json_object_get(o, "agent")), "caf?");
	CHECK_STR_EQ(json_string_value(json_object_get(o, "task")), "co??");
	CHECK_STR_EQ(json_string_value(json_object_get(o, "upstream_request_id")), "req_?");
	json_decref(o);
}

TEST(reqlog_to_json_has_every_field)
{
	struct reqlog r;
	full_record(&r, "chatcmpl-json");
	json_t *o = reqlog_to_json(&r);
	REQUIRE_NOT_NULL(o);
	CHECK_INT_EQ(json_object_size(o), sizeof(json_keys) / sizeof(json_keys[0]));
	for (size_t i = 0; i < sizeof(json_keys) / sizeof(json_keys[0]); i++) {
		test_case("key %s", json_keys[i]);
		CHECK_NOT_NULL(json_object_get(o, json_keys[i]));
	}
	test_case(NULL);
	json_error_t e;
	json_t *want = json_loads(
		"{\"request_id\":\"chatcmpl-json\",\"ts_start_ms\":1767225600123,\"ts_end_ms\":1767225601456,"
		"\"agent\":\"devops_agent\",\"tier\":\"T2\",\"task\":\"code\",\"requested_model\":\"gpt-4o\","
		"\"model\":\"gpt-4o\",\"provider\":\"openai\",\"upstream_model\":\"gpt-4o-2024-08-06\","
		"\"stream\":1,\"status\":200,\"error_type\":\"rate_limit_error\","
		"\"error_code\":\"rate_limit_exceeded\",\"error_message\":\"openai rate limit reached (HTTP 429)\","
		"\"finish_reason\":\"stop\",\"input_tokens\":19,\"output_tokens\":10,\"cached_tokens\":5,"
		"\"cache_write_tokens\":2,\"reasoning_tokens\":3,\"cost_nusd\":123456789,\"cost_source\":\"pricing\","
		"\"latency_ms\":1333.5,\"ttft_ms\":210.25,\"upstream_ms\":1300.0,\"overhead_ms\":0.75,"
		"\"dropped_params\":\"logprobs,top_logprobs\",\"upstream_request_id\":\"req_abc\","
		"\"attempts\":2,\"client_gone\":1,\"fallback_from\":\"claude-sonnet-4-5\",\"partial\":0,"
		"\"method\":\"POST\",\"path\":\"/v1/chat/completions\","
		"\"attempt_log\":[{\"attempt\":1,\"ts_start_ms\":1767225600124,\"model\":\"claude-sonnet-4-5\","
		"\"provider\":\"anthropic\",\"upstream_model\":\"claude-sonnet-4-5\",\"outcome\":\"failed\","
		"\"upstream_status\":529,\"status\":503,\"error_type\":\"overloaded_error\","
		"\"error_code\":\"upstream_overloaded\",\"error_message\":\"anthropic: Overloaded\","
		"\"latency_ms\":20.5,\"retry_after_s\":3,\"upstream_request_id\":\"req_ant\"},"
		"{\"attempt\":2,\"ts_start_ms\":1767225600150,\"model\":\"gpt-4o\",\"provider\":\"openai\","
		"\"upstream_model\":\"gpt-4o-2024-08-06\",\"outcome\":\"ok\",\"upstream_status\":200,"
		"\"status\":null,\"error_type\":null,\"error_code\":null,\"error_message\":null,"
		"\"latency_ms\":1280.0,\"retry_after_s\":null,\"upstream_request_id\":\"req_abc\"}],"
		"\"tool_state\":null}",
		0, &e);
	REQUIRE_NOT_NULL(want);
	CHECK(json_equal(o, want));
	json_decref(want);
	json_decref(o);
}

TEST(reqlog_to_json_unknowns_are_null_and_no_secret_field)
{
	struct reqlog r;
	reqlog_init(&r);
	r.request_id = "chatcmpl-x";
	json_t *o = reqlog_to_json(&r);
	static const char *const nulls[] = { "agent", "input_tokens", "ttft_ms", "upstream_ms",
					     "dropped_params", "upstream_request_id", "error_type" };
	for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++) {
		test_case("%s", nulls[i]);
		CHECK(json_is_null(json_object_get(o, nulls[i])));
	}
	test_case(NULL);
	CHECK_STR_EQ(json_string_value(json_object_get(o, "cost_source")), "none");
	/* No key of the record can carry credentials. */
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v)
	{
		test_case("key %s", key);
		CHECK_NOT_CONTAINS(key, "key");
		CHECK_NOT_CONTAINS(key, "auth");
		CHECK_NOT_CONTAINS(key, "secret");
		CHECK_NOT_CONTAINS(key, "header");
	}
	json_decref(o);
}

/* ---- reqlog_write ---- */

/* Every line of the file: a complete JSON object; returns the number of lines (-1 if any is
 * broken or the file does not end with a newline). */
static int count_jsonl(const char *path, const char *want_id)
{
	size_t len = 0;
	char *data = test_read_file(path, &len);
	if (!data)
		return -1;
	int lines = 0;
	char *p = data;
	while (*p) {
		char *nl = strchr(p, '\n');
		if (!nl) {
			lines = -1;
			break;
		}
		json_error_t e;
		json_t *o = json_loadb(p, (size_t)(nl - p), 0, &e);
		if (!json_is_object(o) || json_object_size(o) != sizeof(json_keys) / sizeof(json_keys[0]) ||
		    (want_id && strcmp(json_string_value(json_object_get(o, "request_id")), want_id) != 0)) {
			json_decref(o);
			lines = -1;
			break;
		}
		json_decref(o);
		lines++;
		p = nl + 1;
	}
	free(data);
	return lines;
}

TEST(reqlog_write_without_store_appends_jsonl)
{
	log_set_level(LOG_ERROR);
	char *jl = test_path("fallback.jsonl");
	struct reqlog r;
	full_record(&r, "chatcmpl-jsonl");
	CHECK_INT_EQ(reqlog_write(NULL, jl, &r), 0);
	CHECK_INT_EQ(reqlog_write(NULL, jl, &r), 0);
	CHECK_INT_EQ(count_jsonl(jl, "chatcmpl-jsonl"), 2);
	/* The line is exactly reqlog_to_json. */
	char *data = test_read_file(jl, NULL);
	REQUIRE_NOT_NULL(data);
	char *nl = strchr(data, '\n');
	REQUIRE_NOT_NULL(nl);
	json_error_t e;
	json_t *line = json_loadb(data, (size_t)(nl - data), 0, &e);
	json_t *want = reqlog_to_json(&r);
	CHECK(json_equal(line, want));
	json_decref(line);
	json_decref(want);
	free(data);
	free(jl);
}

TEST(reqlog_write_with_a_working_store_skips_jsonl)
{
	log_set_level(LOG_ERROR);
	char *db = test_path("llm_logs.db");
	char *jl = test_path("fallback.jsonl");
	char err[512];
	struct store *st = open_store(db, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	struct reqlog r;
	full_record(&r, "chatcmpl-db");
	CHECK_INT_EQ(reqlog_write(st, jl, &r), 0);
	CHECK_INT_EQ(access(jl, F_OK), -1);
	store_close(st);
	free(db);
	free(jl);
}

TEST(reqlog_write_falls_back_when_the_database_is_locked)
{
	log_set_level(LOG_ERROR);
	char *db = test_path("llm_logs.db");
	char *jl = test_path("fallback.jsonl");
	char err[512];
	struct store *st = open_store(db, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	/* Another connection holds the write lock; the store's busy timeout is 0. */
	sqlite3 *other = open_raw(db);
	REQUIRE_NOT_NULL(other);
	CHECK_INT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
	struct reqlog r;
	full_record(&r, "chatcmpl-locked");
	CHECK_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), -1);
	CHECK(err[0] != '\0');
	CHECK_INT_EQ(reqlog_write(st, jl, &r), 0);
	CHECK_INT_EQ(count_jsonl(jl, "chatcmpl-locked"), 1);
	sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(other);
	/* Once the lock is gone the store takes rows again. */
	full_record(&r, "chatcmpl-after");
	CHECK_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	store_close(st);
	free(db);
	free(jl);
}

/* Whether this process can create files in a directory with mode 0555 (root can). */
static int can_write_readonly_dirs(const char *dir)
{
	char probe[4096];
	snprintf(probe, sizeof(probe), "%s/.probe", dir);
	int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		return 0;
	close(fd);
	unlink(probe);
	return 1;
}

TEST(reqlog_write_falls_back_when_the_store_cannot_be_opened)
{
	log_set_level(LOG_ERROR);
	char *ro = test_path("readonly");
	REQUIRE_INT_EQ(mkdir(ro, 0755), 0);
	REQUIRE_INT_EQ(chmod(ro, 0555), 0);
	char dbpath[4096];
	snprintf(dbpath, sizeof(dbpath), "%s/llm_logs.db", ro);
	if (can_write_readonly_dirs(ro)) {
		/* Privileged: permissions do not stop us. A path below a regular file cannot be
		 * created by anyone. */
		char *file = test_path("plainfile");
		test_write_file(file, "x", 1);
		snprintf(dbpath, sizeof(dbpath), "%s/sub/llm_logs.db", file);
		free(file);
	}
	char err[512] = "";
	struct store *st = open_store(dbpath, err, sizeof(err));
	CHECK_NULL(st);
	CHECK(err[0] != '\0');
	char *jl = test_path("fallback.jsonl");
	struct reqlog r;
	full_record(&r, "chatcmpl-ro");
	CHECK_INT_EQ(reqlog_write(st, jl, &r), 0);
	CHECK_INT_EQ(count_jsonl(jl, "chatcmpl-ro"), 1);
	store_close(st);
	chmod(ro, 0755);
	free(jl);
	free(ro);
}

/* Runs reqlog_write with stderr (the error line, the marked row) sent to /dev/null. */
static int write_quietly(const char *jl, const struct reqlog *r)
{
	fflush(stderr);
	int saved = dup(2);
	int devnull = open("/dev/null", O_WRONLY);
	if (devnull >= 0) {
		dup2(devnull, 2);
		close(devnull);
	}
	int rc = reqlog_write(NULL, jl, r);
	if (saved >= 0) {
		dup2(saved, 2);
		close(saved);
	}
	return rc;
}

TEST(reqlog_write_keeps_a_row_nothing_takes_then_flushes_it)
{
	log_set_level(LOG_ERROR);
	/* A directory that cannot exist: its name is taken by a file. */
	char *blocker = test_path("not-a-dir");
	test_write_file(blocker, "x", 1);
	free(blocker);
	char *jl = test_path("not-a-dir/fallback.jsonl");
	struct reqlog r;
	full_record(&r, "chatcmpl-lost");
	/* No room in memory: the row is lost (in the error log only). */
	rowkeep_set_max(0);
	CHECK_INT_EQ(write_quietly(jl, &r), -1);
	CHECK_INT_EQ((int)rowkeep_count(), 0);
	CHECK(rowkeep_full());
	/* Room for one: kept, and then the memory is full. */
	rowkeep_set_max(1);
	CHECK_INT_EQ(write_quietly(jl, &r), 0);
	CHECK_INT_EQ((int)rowkeep_count(), 1);
	CHECK(rowkeep_full());
	/* A destination that fails keeps it; one that works takes it. */
	rowkeep_flush(NULL, jl);
	CHECK_INT_EQ((int)rowkeep_count(), 1);
	char *good = test_path("fallback-good.jsonl");
	rowkeep_flush(NULL, good);
	CHECK_INT_EQ((int)rowkeep_count(), 0);
	CHECK_INT_EQ(count_jsonl(good, "chatcmpl-lost"), 1);
	rowkeep_set_max(10000);
	free(good);
	free(jl);
}

/* A data directory that was removed or renamed away is restored by the operator, never made
 * anew by the fallback (an `mv data.off data` would then nest the old one inside). */
TEST(reqlog_write_never_makes_a_missing_directory)
{
	log_set_level(LOG_ERROR);
	char *jl = test_path("gone/again/fallback.jsonl");
	char *dir = test_path("gone");
	struct reqlog r;
	full_record(&r, "chatcmpl-dir");
	rowkeep_set_max(10);
	CHECK_INT_EQ(write_quietly(jl, &r), 0);
	struct stat sb;
	CHECK(stat(dir, &sb) < 0);
	CHECK_INT_EQ((int)rowkeep_count(), 1);
	rowkeep_dump();
	CHECK_INT_EQ((int)rowkeep_count(), 0);
	rowkeep_set_max(10000);
	free(dir);
	free(jl);
}

/* A write that falls short (here: RLIMIT_FSIZE, as a full disk does) is cut back: the file holds
 * whole lines only, and the next append is a line of its own. */
TEST(reqlog_jsonl_short_write_is_undone)
{
	log_set_level(LOG_ERROR);
	char *jl = test_path("short.jsonl");
	struct reqlog r;
	full_record(&r, "chatcmpl-first");
	CHECK_INT_EQ(reqlog_jsonl_append(jl, &r, (char[128]){ 0 }, 128), 0);
	struct stat sb;
	CHECK_INT_EQ(stat(jl, &sb), 0);
	off_t one = sb.st_size;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit rl = { (rlim_t)(one + one / 2), (rlim_t)(one + one / 2) };
		setrlimit(RLIMIT_FSIZE, &rl);
		struct reqlog r2;
		full_record(&r2, "chatcmpl-short");
		char err[256];
		_exit(reqlog_jsonl_append(jl, &r2, err, sizeof(err)) == -1 ? 0 : 1);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_INT_EQ(stat(jl, &sb), 0);
	CHECK_INT_EQ((int)sb.st_size, (int)one);
	full_record(&r, "chatcmpl-after");
	CHECK_INT_EQ(reqlog_jsonl_append(jl, &r, (char[128]){ 0 }, 128), 0);
	/* Two whole lines, the cut one gone. */
	CHECK_INT_EQ(count_jsonl(jl, NULL), 2);
	size_t len = 0;
	char *data = test_read_file(jl, &len);
	CHECK(data && strstr(data, "chatcmpl-first") && strstr(data, "chatcmpl-after") &&
	      !strstr(data, "chatcmpl-short"));
	free(data);
	free(jl);
}

TEST(reqlog_write_concurrent_appends_stay_whole_lines)
{
	log_set_level(LOG_ERROR);
	char *jl = test_path("fallback.jsonl");
	/* Long records (a 3 KB error message) from four processes at once. */
	static char msg[3000];
	memset(msg, 'm', sizeof(msg) - 1);
	enum { PROCS = 4, EACH = 40 };
	pid_t pids[PROCS];
	for (int p = 0; p < PROCS; p++) {
		fflush(stdout);
		pids[p] = fork();
		if (pids[p] == 0) {
			struct reqlog r;
			full_record(&r, "chatcmpl-conc");
			r.error_message = msg;
			int bad = 0;
			for (int i = 0; i < EACH; i++)
				bad += reqlog_write(NULL, jl, &r) != 0;
			_exit(bad ? 1 : 0);
		}
	}
	for (int p = 0; p < PROCS; p++) {
		int status = 0;
		waitpid(pids[p], &status, 0);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	CHECK_INT_EQ(count_jsonl(jl, "chatcmpl-conc"), PROCS * EACH);
	free(jl);
}

/* ---- the writer thread (logwriter.c: group commit) ---- */

struct writer_arg {
	int thread;
	int rows;
	int failures;
};

static void *writer_thread(void *p)
{
	struct writer_arg *a = p;
	for (int i = 0; i < a->rows; i++) {
		char id[64];
		snprintf(id, sizeof(id), "chatcmpl-w%d-%d", a->thread, i);
		struct reqlog r;
		full_record(&r, id);
		char err[256];
		if (logwriter_log(&r, err, sizeof(err)) != 0)
			a->failures++;
	}
	return NULL;
}

TEST(logwriter_commits_every_row_of_concurrent_threads_once)
{
	char *path = test_path("llm_logs.db");
	struct store_opts o = { .path = path, .busy_timeout_ms = 5000, .checkpoint_pages = 100 };
	REQUIRE(logwriter_start(&o) == 0);
	CHECK(logwriter_running());
	enum { THREADS = 8, ROWS = 300 };
	pthread_t t[THREADS];
	struct writer_arg args[THREADS];
	for (int i = 0; i < THREADS; i++) {
		args[i] = (struct writer_arg){ .thread = i, .rows = ROWS };
		pthread_create(&t[i], NULL, writer_thread, &args[i]);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	/* A row whose request id was already committed is not written twice. */
	struct reqlog again;
	full_record(&again, "chatcmpl-w0-0");
	char err[256];
	CHECK_INT_EQ(logwriter_log(&again, err, sizeof(err)), 0);
	logwriter_stop();
	CHECK(!logwriter_running());
	for (int i = 0; i < THREADS; i++)
		CHECK_INT_EQ(args[i].failures, 0);
	sqlite3 *db = open_raw(path);
	REQUIRE_NOT_NULL(db);
	CHECK_INT_EQ(query_int(db, "SELECT count(*) FROM request_log"), THREADS * ROWS);
	CHECK_INT_EQ(query_int(db, "SELECT count(DISTINCT request_id) FROM request_log"), THREADS * ROWS);
	char *ok = query_text(db, "PRAGMA integrity_check");
	CHECK_STR_EQ(ok, "ok");
	free(ok);
	sqlite3_close(db);
	/* After a stop, a row is refused (the caller keeps it in the fallback file). */
	CHECK_INT_EQ(logwriter_log(&again, err, sizeof(err)), -1);
	free(path);
}

TEST(logwriter_fails_rows_fast_when_the_database_cannot_be_opened)
{
	char *blocker = test_path("not-a-directory");
	test_write_file(blocker, "x", (size_t)-1);
	char *path = test_path("not-a-directory/llm_logs.db");
	struct store_opts o = { .path = path, .busy_timeout_ms = 100, .checkpoint_pages = 100 };
	REQUIRE(logwriter_start(&o) == 0);
	struct reqlog r;
	full_record(&r, "chatcmpl-nodb");
	char err[256] = "";
	CHECK_INT_EQ(logwriter_log(&r, err, sizeof(err)), -1);
	CHECK(err[0] != '\0');
	logwriter_stop();
	free(path);
	free(blocker);
}

/* ---- migrations of databases made by older routers ---- */

/* What a router of schema version 2 created (the released migrations 0 -> 1 and 1 -> 2, frozen). */
static const char old_v2_schema[] =
	"CREATE TABLE request_log (  id INTEGER PRIMARY KEY,  request_id TEXT NOT NULL UNIQUE,"
	"  ts_start_ms INTEGER NOT NULL,  ts_end_ms INTEGER NOT NULL,  agent TEXT,  tier TEXT,  task TEXT,"
	"  requested_model TEXT,  model TEXT,  provider TEXT,  upstream_model TEXT,"
	"  stream INTEGER NOT NULL DEFAULT 0,  status INTEGER NOT NULL,  error_type TEXT,  error_code TEXT,"
	"  error_message TEXT,  finish_reason TEXT,  input_tokens INTEGER,  output_tokens INTEGER,"
	"  cached_tokens INTEGER,  cache_write_tokens INTEGER,  reasoning_tokens INTEGER,"
	"  cost_nusd INTEGER NOT NULL DEFAULT 0,"
	"  cost_usd REAL GENERATED ALWAYS AS (cost_nusd / 1e9) VIRTUAL,  cost_source TEXT,"
	"  latency_ms REAL,  ttft_ms REAL,  upstream_ms REAL,  overhead_ms REAL,  dropped_params TEXT,"
	"  upstream_request_id TEXT,  attempts INTEGER NOT NULL DEFAULT 1,"
	"  client_gone INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX request_log_ts ON request_log(ts_start_ms);"
	"CREATE TABLE tool_call_state (  tool_call_id TEXT PRIMARY KEY,  request_id TEXT NOT NULL,"
	"  state TEXT NOT NULL,  ts_ms INTEGER NOT NULL);"
	"CREATE INDEX tool_call_state_ts ON tool_call_state(ts_ms);"
	"INSERT INTO request_log (request_id, ts_start_ms, ts_end_ms, status, cost_nusd)"
	" VALUES ('chatcmpl-v2', 1767225600000, 1767225600100, 200, 42);"
	"INSERT INTO request_log (request_id, ts_start_ms, ts_end_ms, status, agent)"
	" VALUES ('chatcmpl-v2a', 1767225600000, 1767225600100, 200, 'alice');"
	"INSERT INTO tool_call_state VALUES ('toolu_alice', 'chatcmpl-v2a', '{\"provider\":\"a\"}', 1);"
	"INSERT INTO tool_call_state VALUES ('toolu_anon', 'chatcmpl-v2', '{\"provider\":\"b\"}', 1);"
	"PRAGMA user_version = 2;";

static char *schema_of(const char *path)
{
	sqlite3 *db = open_raw(path);
	if (!db)
		return NULL;
	char *sql = query_text(db, "SELECT group_concat(type || ' ' || name || ': ' || sql, '\n') FROM"
				   " (SELECT * FROM sqlite_master ORDER BY name)");
	sqlite3_close(db);
	return sql;
}

/* One agent cannot read another's tool-call state by naming its tool-call id. */
TEST(store_tool_state_is_keyed_by_agent_and_id)
{
	char *path = test_path("ts.db");
	char err[512] = "";
	struct store *st = open_store(path, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	json_t *state = json_pack("{s:{s:s,s:[{s:s}]}}", "toolu_1", "provider", "anthropic",
				  "thinking_blocks", "thinking", "A's secret reasoning");
	struct reqlog r;
	full_record(&r, "chatcmpl-ts-a");
	r.agent = "agent_a";
	r.tool_state = state;
	REQUIRE_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	full_record(&r, "chatcmpl-ts-anon");
	r.agent = NULL;
	json_t *anon = json_pack("{s:{s:s}}", "toolu_2", "provider", "anthropic");
	r.tool_state = anon;
	REQUIRE_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	json_t *got = store_tool_state(st, "agent_a", "toolu_1");
	CHECK_NOT_NULL(got);
	CHECK(json_equal(got, json_object_get(state, "toolu_1")));
	json_decref(got);
	CHECK_NULL(store_tool_state(st, "agent_b", "toolu_1"));
	CHECK_NULL(store_tool_state(st, "", "toolu_1"));
	got = store_tool_state(st, "", "toolu_2");
	CHECK_NOT_NULL(got);
	json_decref(got);
	CHECK_NULL(store_tool_state(st, "agent_a", "toolu_2"));
	store_close(st);
	json_decref(state);
	json_decref(anon);
	free(path);
}

TEST(store_migrates_a_version_2_database_to_the_schema_of_a_new_one)
{
	char *old = test_path("v2.db");
	sqlite3 *db = NULL;
	REQUIRE_INT_EQ(sqlite3_open(old, &db), SQLITE_OK);
	REQUIRE_INT_EQ(sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
	REQUIRE_INT_EQ(sqlite3_exec(db, old_v2_schema, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	char err[512] = "";
	struct store *st = open_store(old, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	CHECK_INT_EQ(store_schema_version(st), STORE_SCHEMA_VERSION);
	/* The old row is kept, with the new columns' defaults; new rows take every column. */
	struct reqlog r;
	full_record(&r, "chatcmpl-v4");
	CHECK_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	store_close(st);
	db = open_raw(old);
	REQUIRE_NOT_NULL(db);
	CHECK_INT_EQ(query_int(db, "SELECT cost_nusd FROM request_log WHERE request_id = 'chatcmpl-v2'"), 42);
	CHECK_INT_EQ(query_int(db, "SELECT partial FROM request_log WHERE request_id = 'chatcmpl-v2'"), 0);
	CHECK_INT_EQ(query_int(db, "SELECT fallback_from IS NULL FROM request_log WHERE request_id = 'chatcmpl-v2'"), 1);
	char *ff = query_text(db, "SELECT fallback_from FROM request_log WHERE request_id = 'chatcmpl-v4'");
	CHECK_STR_EQ(ff, "claude-sonnet-4-5");
	free(ff);
	CHECK_INT_EQ(query_int(db, "SELECT count(*) FROM request_attempts WHERE request_id = 'chatcmpl-v4'"), 2);
	/* Kept tool-call state belongs to the agent of the request that produced it ('' = none). */
	CHECK_INT_EQ(query_int(db, "SELECT count(*) FROM tool_call_state WHERE agent = 'alice'"
			       " AND tool_call_id = 'toolu_alice'"), 1);
	CHECK_INT_EQ(query_int(db, "SELECT count(*) FROM tool_call_state WHERE agent = ''"
			       " AND tool_call_id = 'toolu_anon'"), 1);
	sqlite3_close(db);
	/* Every table, index and view says what a database created new says. */
	char *fresh = test_path("fresh.db");
	st = open_store(fresh, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	store_close(st);
	char *a = schema_of(old), *b = schema_of(fresh);
	CHECK_STR_EQ(a, b);
	free(a);
	free(b);
	free(fresh);
	free(old);
}

/* A database of schema version 6 (budget_alerts as released) keeps its alerts, which the router
 * of version 6 had handled itself: none of them becomes due in the outbox. */
TEST(store_migrates_version_6_alerts_as_not_for_the_outbox)
{
	char *old = test_path("v6.db");
	char err[512] = "";
	/* A new database taken back to version 6: what migrations 6 -> 7, 7 -> 8 and 8 -> 9 added
	 * is removed. */
	struct store *st = open_store(old, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	store_close(st);
	sqlite3 *db = open_raw(old);
	REQUIRE_NOT_NULL(db);
	REQUIRE_INT_EQ(sqlite3_exec(db,
		"DROP TABLE responses;"
		"DROP TABLE metrics_counters; DROP TABLE metrics_hourly; DROP TABLE metrics_daily;"
		"DROP TABLE metrics_state;"
		"ALTER TABLE request_log DROP COLUMN method;"
		"ALTER TABLE request_log DROP COLUMN path;"
		"DROP INDEX budget_alerts_outbox;"
		"ALTER TABLE budget_alerts DROP COLUMN sent_ms;"
		"ALTER TABLE budget_alerts DROP COLUMN attempts;"
		"ALTER TABLE budget_alerts DROP COLUMN next_try_ms;"
		"ALTER TABLE budget_alerts DROP COLUMN last_error;"
		"INSERT INTO budget_alerts VALUES ('2026-01-01', 'tier:T2', 90, 1767225600000, 45, 50);"
		"PRAGMA user_version = 6;", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	st = open_store(old, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	CHECK_INT_EQ(store_schema_version(st), STORE_SCHEMA_VERSION);
	struct alert_row rows[2];
	CHECK_INT_EQ(store_alert_due(st, 1767225600000LL + 1000, 0, rows, 2), 0);
	CHECK_INT_EQ(store_alert_next(st, 0), -1);
	store_close(st);
	db = open_raw(old);
	REQUIRE_NOT_NULL(db);
	CHECK_INT_EQ(query_int(db, "SELECT count(*) FROM budget_alerts WHERE sent_ms IS NULL"
			       " AND next_try_ms IS NULL AND attempts = 0 AND last_error IS NULL"), 1);
	CHECK_INT_EQ(query_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'budget_alerts_outbox'"), 1);
	sqlite3_close(db);
	free(old);
}

/* ---- the operators' counters (store_metrics.c) ---- */

static double counter(sqlite3 *db, const char *family, const char *labels)
{
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "SELECT CAST(coalesce(sum(value), 0) * 1000 AS INTEGER) FROM metrics_counters"
		 " WHERE family = '%s' AND labels = '%s' AND kind IN (0, 3)", family, labels);
	return (double)query_int(db, sql) / 1000.0;
}

/* Rows are counted once each: across rollups, after retention deletes every row (the newest
 * included, so new rows take ids the counters had passed), and never down. */
TEST(store_metrics_count_each_row_once_across_prunes)
{
	char *path = test_path("metrics.db");
	char err[512] = "";
	struct store *st = open_store(path, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	int64_t old = 1767225600123LL;                       /* 2026-01-01 */
	char id[64];
	for (int i = 0; i < 5; i++) {
		struct reqlog r;
		full_record(&r, (snprintf(id, sizeof(id), "chatcmpl-m%d", i), id));
		r.ts_start_ms = r.ts_end_ms = old + i;
		r.status = 200;
		REQUIRE_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	}
	CHECK_INT_EQ(store_metrics_catch_up(st, 2, 100), 5);   /* batches of 2, 2, 1 */
	CHECK_INT_EQ(store_metrics_catch_up(st, 2, 100), 0);
	sqlite3 *db = open_raw(path);
	REQUIRE_NOT_NULL(db);
	const char *lab = "endpoint=\"/v1/chat/completions\",model=\"gpt-4o\",provider=\"openai\","
			  "tier=\"T2\",status=\"200\"";
	CHECK(counter(db, "llm_router_requests_total", lab) == 5);
	CHECK(counter(db, "llm_router_tokens_total", "model=\"gpt-4o\",direction=\"input\"") == 95);
	CHECK(counter(db, "llm_router_request_duration_seconds", "model=\"gpt-4o\"") == 5);
	CHECK(counter(db, "llm_router_fallbacks_total", "from=\"claude-sonnet-4-5\",to=\"gpt-4o\"") == 5);
	CHECK(counter(db, "llm_router_upstream_errors_total", "provider=\"anthropic\",code=\"529\"") == 5);
	/* One more row not yet counted, then retention takes all six: the prune counts it first. */
	struct reqlog r;
	full_record(&r, "chatcmpl-m5");
	r.ts_start_ms = r.ts_end_ms = old + 5;
	REQUIRE_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	CHECK_INT_EQ(store_prune(st, old + 86400000LL, NULL), 6);
	CHECK_INT_EQ(query_int(db, "SELECT count(*) FROM request_log"), 0);
	CHECK(counter(db, "llm_router_requests_total", lab) == 6);
	CHECK_INT_EQ(query_int(db, "SELECT rolled_id FROM metrics_state"), 0);
	/* New rows take ids from 1 again: each is counted. */
	for (int i = 0; i < 3; i++) {
		full_record(&r, (snprintf(id, sizeof(id), "chatcmpl-n%d", i), id));
		REQUIRE_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	}
	CHECK_INT_EQ(store_metrics_catch_up(st, 100, 1), 3);
	CHECK(counter(db, "llm_router_requests_total", lab) == 9);
	CHECK_INT_EQ(query_int(db, "SELECT sum(requests) FROM metrics_daily WHERE kind = 'model'"), 3);
	sqlite3_close(db);
	store_close(st);
	free(path);
}

/* Another process's prune between a batch's read and its write: it counts the same rows, deletes
 * them and puts rolled_id back where the batch read it. The batch must see that and add nothing. */
static struct store *between_other;
static int64_t between_cutoff;

static void prune_in_between(struct store *st)
{
	(void)st;
	store_metrics_between_hook = NULL;
	CHECK_INT_EQ(store_prune(between_other, between_cutoff, NULL), 3);
}

TEST(store_metrics_batch_not_added_twice_when_a_prune_came_between)
{
	char *path = test_path("metrics-aba.db");
	char err[512] = "";
	struct store *st = open_store(path, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	between_other = open_store(path, err, sizeof(err));
	REQUIRE_NOT_NULL(between_other);
	int64_t old = 1767225600123LL;                       /* 2026-01-01 */
	char id[64];
	struct reqlog r;
	for (int i = 0; i < 2; i++) {
		full_record(&r, (snprintf(id, sizeof(id), "chatcmpl-k%d", i), id));
		r.ts_start_ms = r.ts_end_ms = old + 10 * 86400000LL;      /* kept */
		REQUIRE_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	}
	CHECK_INT_EQ(store_metrics_catch_up(st, 100, 1), 2);
	/* Three old rows (imported late), the newest ids: retention takes exactly them. */
	for (int i = 0; i < 3; i++) {
		full_record(&r, (snprintf(id, sizeof(id), "chatcmpl-o%d", i), id));
		r.ts_start_ms = r.ts_end_ms = old + i;
		REQUIRE_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	}
	between_cutoff = old + 86400000LL;
	store_metrics_between_hook = prune_in_between;
	CHECK_INT_EQ(store_metrics_catch_up(st, 100, 3), 0);
	store_metrics_between_hook = NULL;
	sqlite3 *db = open_raw(path);
	REQUIRE_NOT_NULL(db);
	CHECK_INT_EQ(query_int(db, "SELECT count(*) FROM request_log"), 2);
	CHECK_INT_EQ(query_int(db, "SELECT rolled_id FROM metrics_state"), 2);
	const char *lab = "endpoint=\"/v1/chat/completions\",model=\"gpt-4o\",provider=\"openai\","
			  "tier=\"T2\",status=\"200\"";
	CHECK(counter(db, "llm_router_requests_total", lab) == 5);
	sqlite3_close(db);
	store_close(between_other);
	store_close(st);
	free(path);
}

/* Stored responses (POST /v1/responses): put, get and delete are scoped to the agent; retention
 * deletes them with the request log. */
TEST(store_responses_scoped_to_their_agent_and_pruned)
{
	char *path = test_path("responses.db");
	char err[512] = "";
	struct store *st = open_store(path, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	int64_t old = 1767225600123LL;                       /* 2026-01-01 */
	REQUIRE_INT_EQ(store_response_put(st, "resp_a", "kb_manager", old, NULL, "[]", "{\"id\":\"resp_a\"}"), 0);
	REQUIRE_INT_EQ(store_response_put(st, "resp_b", "kb_manager", old + 10 * 86400000LL, "resp_a",
					  "[{\"id\":\"msg_b_in0\"}]", "{\"id\":\"resp_b\"}"), 0);
	struct stored_response r;
	CHECK_INT_EQ(store_response_get(st, "resp_b", "kb_manager", &r), 0);
	CHECK_STR_EQ(r.previous_id, "resp_a");
	CHECK_STR_EQ(r.input_items, "[{\"id\":\"msg_b_in0\"}]");
	CHECK_STR_EQ(r.response, "{\"id\":\"resp_b\"}");
	store_response_free(&r);
	CHECK_INT_EQ(store_response_get(st, "resp_b", "docops_agent", &r), 1);   /* another agent */
	CHECK_INT_EQ(store_response_get(st, "resp_b", "", &r), 1);
	CHECK_INT_EQ(store_response_delete(st, "resp_b", "docops_agent"), 0);
	CHECK_INT_EQ(store_response_get(st, "resp_a", "kb_manager", &r), 0);
	CHECK_NULL(r.previous_id);
	store_response_free(&r);
	/* Retention: resp_a is older than the cutoff, resp_b is not. */
	CHECK_INT_GE(store_prune(st, old + 86400000LL, NULL), 0);
	CHECK_INT_EQ(store_response_get(st, "resp_a", "kb_manager", &r), 1);
	CHECK_INT_EQ(store_response_delete(st, "resp_b", "kb_manager"), 1);
	CHECK_INT_EQ(store_response_get(st, "resp_b", "kb_manager", &r), 1);
	store_close(st);
	free(path);
}
