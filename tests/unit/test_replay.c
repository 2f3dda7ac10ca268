/* test_replay.c - the JSONL fallback read back and replayed exactly once (also interrupted, also
 * by two processes at once while a third appends), retention, and the query plan of every
 * statement on a request's path. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "harness.h"
#include "reqlog.h"
#include "store.h"
#include "util.h"

static struct store *open_at_waiting(const char *path, long busy_ms)
{
	struct store_opts o = { .path = path, .busy_timeout_ms = busy_ms };
	char err[256];
	return store_open(&o, err, sizeof(err));
}

static struct store *open_at(const char *path)
{
	struct store_opts o = { .path = path, .busy_timeout_ms = 5000 };
	char err[256];
	return store_open(&o, err, sizeof(err));
}

static void record(struct reqlog *r, const char *id, int64_t ts, int64_t cost)
{
	reqlog_init(r);
	r->request_id = id;
	r->ts_start_ms = ts;
	r->ts_end_ms = ts + 5;
	r->tier = "T3";
	r->agent = "kb_manager";
	r->model = "gpt-4o-mini";
	r->status = 200;
	r->cost_nusd = cost;
	r->attempts = 1;
}

static long long count(const char *db, const char *sql)
{
	sqlite3 *h;
	long long n = -1;
	if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
		sqlite3_stmt *s;
		if (sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
			n = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
	}
	sqlite3_close(h);
	return n;
}

TEST(replay_reads_back_every_field)
{
	struct reqlog r;
	record(&r, "chatcmpl-rt", 1795651200123, 4242);
	static const struct attempt_log att[1] = { { .ts_start_ms = 1795651200124, .model = "gpt-4o",
						     .provider = "openai", .outcome = "failed",
						     .upstream_status = 503, .status = 503,
						     .error_type = "overloaded_error",
						     .error_message = "down", .latency_ms = 3.5,
						     .retry_after_s = 2 } };
	r.attempt_log = att;
	r.n_attempt_log = 1;
	r.fallback_from = "gpt-4o";
	r.finish_reason = "stop";
	r.ttft_ms = 12.5;
	json_t *o = reqlog_to_json(&r);
	struct reqlog back;
	struct attempt_log *a = NULL;
	REQUIRE_INT_EQ(reqlog_from_json(o, &back, &a), 0);
	json_t *again = reqlog_to_json(&back);
	CHECK(json_equal(o, again));
	free(a);
	json_decref(again);
	json_decref(o);
	json_t *bad = json_pack("{s:i}", "ts_start_ms", 1);
	CHECK_INT_EQ(reqlog_from_json(bad, &back, &a), -1);
	json_decref(bad);
}

TEST(replay_imports_exactly_once_and_only_then_removes_the_file)
{
	char *db = test_path("replay.db");
	char *jl = test_path("fallback.jsonl");
	struct reqlog r;
	char id[32];
	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "chatcmpl-j%d", i);
		record(&r, id, 1795651200000 + i, 1000);
		REQUIRE_INT_EQ(reqlog_write(NULL, jl, &r), 0);
	}
	/* A torn last line (a crash in the middle of a write) is skipped, not fatal. */
	FILE *f = fopen(jl, "a");
	REQUIRE_NOT_NULL(f);
	fputs("{\"request_id\": \"chatcmpl-torn\", \"ts_st", f);
	fclose(f);
	struct store *st = open_at(db);
	REQUIRE_NOT_NULL(st);
	struct replay_stats rs;
	CHECK_INT_EQ(reqlog_replay(st, jl, NULL, &rs), 0);
	CHECK_INT_EQ(rs.imported, 5);
	CHECK_INT_EQ(rs.malformed, 1);
	CHECK(access(jl, F_OK) != 0);
	CHECK_INT_EQ(count(db, "SELECT count(*) FROM request_log"), 5);
	CHECK_INT_EQ(count(db, "SELECT spent_nusd FROM budget_spend WHERE scope = 'tier:T3'"), 5000);
	/* The same rows again (a replay that died after committing, before deleting): no twins, no
	 * double spend. */
	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "chatcmpl-j%d", i);
		record(&r, id, 1795651200000 + i, 1000);
		REQUIRE_INT_EQ(reqlog_write(NULL, jl, &r), 0);
	}
	CHECK_INT_EQ(reqlog_replay(st, jl, NULL, &rs), 0);
	CHECK_INT_EQ(rs.imported, 0);
	CHECK_INT_EQ(rs.already, 5);
	CHECK_INT_EQ(count(db, "SELECT count(*) FROM request_log"), 5);
	CHECK_INT_EQ(count(db, "SELECT spent_nusd FROM budget_spend WHERE scope = 'tier:T3'"), 5000);
	/* Nothing to do is not an error. */
	CHECK_INT_EQ(reqlog_replay(st, jl, NULL, &rs), 0);
	CHECK_INT_EQ(rs.imported + rs.already, 0);
	store_close(st);
	free(db);
	free(jl);
}

TEST(an_append_after_a_torn_line_cuts_the_torn_line_instead_of_gluing_to_it)
{
	char *db = test_path("torn.db");
	char *jl = test_path("torn.jsonl");
	struct reqlog r;
	record(&r, "chatcmpl-t0", 1795651200000, 1000);
	REQUIRE_INT_EQ(reqlog_write(NULL, jl, &r), 0);
	/* A writer killed between a short write and its undo. */
	FILE *f = fopen(jl, "a");
	REQUIRE_NOT_NULL(f);
	fputs("{\"request_id\": \"chatcmpl-killed\", \"ts_st", f);
	fclose(f);
	record(&r, "chatcmpl-t1", 1795651200001, 1000);
	REQUIRE_INT_EQ(reqlog_write(NULL, jl, &r), 0);
	struct store *st = open_at(db);
	REQUIRE_NOT_NULL(st);
	struct replay_stats rs;
	CHECK_INT_EQ(reqlog_replay(st, jl, NULL, &rs), 0);
	CHECK_INT_EQ(rs.imported, 2);
	CHECK_INT_EQ(rs.malformed, 0);
	CHECK_INT_EQ(count(db, "SELECT count(*) FROM request_log WHERE request_id IN ('chatcmpl-t0', 'chatcmpl-t1')"), 2);
	store_close(st);
	free(db);
	free(jl);
}

TEST(replay_resumes_a_file_an_interrupted_replay_left)
{
	char *db = test_path("resume.db");
	char *jl = test_path("fallback.jsonl");
	char leftover[4096];
	snprintf(leftover, sizeof(leftover), "%s.replay-99999-1", jl);
	struct reqlog r;
	char id[32];
	for (int i = 0; i < 4; i++) {
		snprintf(id, sizeof(id), "chatcmpl-l%d", i);
		record(&r, id, 1795651200000 + i, 10);
		REQUIRE_INT_EQ(reqlog_write(NULL, leftover, &r), 0);
	}
	struct store *st = open_at(db);
	REQUIRE_NOT_NULL(st);
	/* Two of them made it before the interruption. */
	record(&r, "chatcmpl-l0", 1795651200000, 10);
	char err[256];
	REQUIRE_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	record(&r, "chatcmpl-l1", 1795651200001, 10);
	REQUIRE_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	struct replay_stats rs;
	CHECK_INT_EQ(reqlog_replay(st, jl, NULL, &rs), 0);
	CHECK_INT_EQ(rs.imported, 2);
	CHECK_INT_EQ(rs.already, 2);
	CHECK(access(leftover, F_OK) != 0);
	CHECK_INT_EQ(count(db, "SELECT count(*) FROM request_log"), 4);
	store_close(st);
	free(db);
	free(jl);
}

TEST(replay_by_two_processes_while_a_third_appends_loses_and_doubles_nothing)
{
	char *db = test_path("race.db");
	char *jl = test_path("fallback.jsonl");
	struct store *st = open_at(db);
	REQUIRE_NOT_NULL(st);
	store_close(st);
	enum { ROWS = 600 };
	pid_t kids[3];
	for (int k = 0; k < 3; k++) {
		kids[k] = fork();
		REQUIRE(kids[k] >= 0);
		if (kids[k] == 0) {
			if (k == 0) {
				struct reqlog r;
				char id[32];
				for (int i = 0; i < ROWS; i++) {
					snprintf(id, sizeof(id), "chatcmpl-race%04d", i);
					record(&r, id, 1795651200000 + i, 1);
					if (reqlog_write(NULL, jl, &r) < 0)
						_exit(1);
					if (i % 50 == 0)
						usleep(2000);
				}
				_exit(0);
			}
			struct store *s2 = open_at(db);
			struct replay_stats rs;
			for (int i = 0; i < 40; i++) {
				if (!s2 || reqlog_replay(s2, jl, NULL, &rs) < 0)
					_exit(1);
				usleep(3000);
			}
			store_close(s2);
			_exit(0);
		}
	}
	for (int k = 0; k < 3; k++) {
		int status = 0;
		waitpid(kids[k], &status, 0);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	st = open_at(db);
	REQUIRE_NOT_NULL(st);
	struct replay_stats rs;
	CHECK_INT_EQ(reqlog_replay(st, jl, NULL, &rs), 0);
	store_close(st);
	CHECK_INT_EQ(count(db, "SELECT count(*) FROM request_log"), ROWS);
	CHECK_INT_EQ(count(db, "SELECT count(DISTINCT request_id) FROM request_log"), ROWS);
	CHECK_INT_EQ(count(db, "SELECT sum(spent_nusd) FROM budget_spend WHERE scope = 'tier:T3'"), ROWS);
	free(db);
	free(jl);
}

/* Files beside jl named jl.replay-*, and whether jl itself is there. */
static int moved_files(const char *jl)
{
	const char *slash = strrchr(jl, '/');
	char dir[4096];
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - jl), jl);
	char pattern[4096];
	snprintf(pattern, sizeof(pattern), "%s.replay-", slash + 1);
	int n = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += strncmp(e->d_name, pattern, strlen(pattern)) == 0;
	if (d)
		closedir(d);
	return n;
}

static void append_rows(const char *jl, const char *prefix, int from, int n)
{
	struct reqlog r;
	char id[48];
	for (int i = from; i < from + n; i++) {
		snprintf(id, sizeof(id), "chatcmpl-%s%04d", prefix, i);
		record(&r, id, 1795651200000 + i, 100);
		REQUIRE_INT_EQ(reqlog_write(NULL, jl, &r), 0);
	}
}

TEST(replay_against_a_locked_database_leaves_one_moved_file_however_often_it_runs)
{
	char *db = test_path("locked.db");
	char *jl = test_path("fallback.jsonl");
	struct store *st = open_at_waiting(db, 50);
	REQUIRE_NOT_NULL(st);
	sqlite3 *holder;
	REQUIRE_INT_EQ(sqlite3_open(db, &holder), SQLITE_OK);
	REQUIRE_INT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE; INSERT INTO model_health (model) VALUES ('x')",
				    NULL, NULL, NULL), SQLITE_OK);
	struct replay_stats rs;
	/* Each plain CGI request of an outage appends its row and then tries a replay. */
	for (int k = 0; k < 5; k++) {
		append_rows(jl, "lk", k * 10, 10);
		CHECK_INT_EQ(reqlog_replay(st, jl, NULL, &rs), -1);
		CHECK_INT_EQ(moved_files(jl), 1);
	}
	CHECK(access(jl, F_OK) == 0);
	sqlite3_exec(holder, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(holder);
	CHECK_INT_EQ(reqlog_replay(st, jl, NULL, &rs), 0);
	CHECK_INT_EQ(rs.imported, 50);
	CHECK_INT_EQ(moved_files(jl), 0);
	CHECK(access(jl, F_OK) != 0);
	store_close(st);
	CHECK_INT_EQ(count(db, "SELECT count(DISTINCT request_id) FROM request_log"), 50);
	CHECK_INT_EQ(count(db, "SELECT count(*) FROM request_log"), 50);
	CHECK_INT_EQ(count(db, "SELECT spent_nusd FROM budget_spend WHERE scope = 'tier:T3'"), 5000);
	free(db);
	free(jl);
}

TEST(replay_never_waits_for_an_import_or_an_appender)
{
	char *db = test_path("nowait.db");
	char *jl = test_path("fallback.jsonl");
	char leftover[4096];
	snprintf(leftover, sizeof(leftover), "%s.replay-99999-1", jl);
	append_rows(jl, "nw", 0, 5);
	append_rows(leftover, "nwl", 0, 5);
	struct store *st = open_at(db);
	REQUIRE_NOT_NULL(st);
	/* Another importer owns the moved file: it is left to it, and no new file is claimed. */
	int owner = open(leftover, O_RDWR);
	REQUIRE(owner >= 0);
	struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	REQUIRE_INT_EQ(fcntl(owner, F_OFD_SETLK, &l), 0);
	struct replay_stats rs;
	int64_t t0 = clock_mono_us();
	CHECK_INT_EQ(reqlog_replay(st, jl, NULL, &rs), 0);
	CHECK_INT_LT(clock_mono_us() - t0, 500000);
	CHECK_INT_EQ(rs.imported, 0);
	CHECK(access(jl, F_OK) == 0);
	CHECK(access(leftover, F_OK) == 0);
	close(owner);
	/* An appender holding its lock (for one line, normally) is waited for briefly, then left. */
	int appender = open(jl, O_WRONLY | O_APPEND);
	REQUIRE(appender >= 0);
	REQUIRE_INT_EQ(flock(appender, LOCK_EX), 0);
	t0 = clock_mono_us();
	CHECK_INT_EQ(reqlog_replay(st, jl, NULL, &rs), 0);
	CHECK_INT_LT(clock_mono_us() - t0, 500000);
	CHECK_INT_EQ(rs.imported, 5);          /* the leftover, now free */
	CHECK(access(leftover, F_OK) != 0);
	CHECK(access(jl, F_OK) == 0);
	close(appender);
	CHECK_INT_EQ(reqlog_replay(st, jl, NULL, &rs), 0);
	CHECK_INT_EQ(rs.imported, 5);
	CHECK(access(jl, F_OK) != 0);
	store_close(st);
	CHECK_INT_EQ(count(db, "SELECT count(*) FROM request_log"), 10);
	free(db);
	free(jl);
}

/* The operator's command (reqlog_replay_wait) waits for a file another process is importing:
 * here that process stops after 300 ms without finishing, and the command imports what it left,
 * then the fallback file. */
TEST(replay_wait_waits_for_another_importer_then_imports_what_it_left)
{
	char *db = test_path("wait.db");
	char *jl = test_path("fallback.jsonl");
	char leftover[4096];
	snprintf(leftover, sizeof(leftover), "%s.replay-99999-1", jl);
	append_rows(jl, "wt", 0, 5);
	append_rows(leftover, "wtl", 0, 5);
	int sync[2];
	REQUIRE_INT_EQ(pipe(sync), 0);
	pid_t child = fork();
	REQUIRE(child >= 0);
	if (child == 0) {
		int fd = open(leftover, O_RDWR);
		struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		if (fd < 0 || fcntl(fd, F_OFD_SETLK, &l) < 0)
			_exit(1);
		(void)!write(sync[1], "x", 1);
		usleep(300000);
		_exit(0);
	}
	close(sync[1]);
	char c;
	REQUIRE_INT_EQ(read(sync[0], &c, 1), 1);
	close(sync[0]);
	struct store *st = open_at(db);
	REQUIRE_NOT_NULL(st);
	struct replay_stats rs;
	int64_t t0 = clock_mono_us();
	CHECK_INT_EQ(reqlog_replay_wait(st, jl, &rs), 0);
	CHECK_INT_GE(clock_mono_us() - t0, 200000);
	CHECK_INT_EQ(rs.imported, 10);
	CHECK_INT_EQ(rs.files, 2);
	CHECK(access(leftover, F_OK) != 0);
	CHECK(access(jl, F_OK) != 0);
	int status;
	CHECK_INT_EQ(waitpid(child, &status, 0), child);
	store_close(st);
	CHECK_INT_EQ(count(db, "SELECT count(*) FROM request_log"), 10);
	free(db);
	free(jl);
}

TEST(replay_and_retention_stop_between_transactions)
{
	char *db = test_path("stop.db");
	char *jl = test_path("fallback.jsonl");
	append_rows(jl, "st", 0, 20);
	struct store *st = open_at(db);
	REQUIRE_NOT_NULL(st);
	int stop = 1;
	struct replay_stats rs;
	CHECK_INT_EQ(reqlog_replay(st, jl, &stop, &rs), 0);
	CHECK_INT_EQ(rs.imported, 0);
	CHECK_INT_EQ(store_prune(st, 1795651200000 + 100, &stop), 0);
	stop = 0;
	CHECK_INT_EQ(reqlog_replay(st, jl, &stop, &rs), 0);
	CHECK_INT_EQ(rs.imported, 20);
	CHECK_INT_EQ(store_prune(st, 1795651200000 + 10, &stop), 10);
	store_close(st);
	CHECK_INT_EQ(count(db, "SELECT count(*) FROM request_log"), 10);
	free(db);
	free(jl);
}

TEST(retention_deletes_old_rows_in_batches_and_keeps_the_rest)
{
	char *db = test_path("prune.db");
	struct store *st = open_at(db);
	REQUIRE_NOT_NULL(st);
	int64_t day = 86400000;
	int64_t now = 1795651200000;
	struct reqlog r;
	char id[32], err[256];
	static const struct attempt_log att[1] = { { .model = "gpt-4o-mini", .outcome = "ok" } };
	REQUIRE_INT_EQ(store_begin(st), 0);
	for (int i = 0; i < 2500; i++) {
		snprintf(id, sizeof(id), "chatcmpl-old%05d", i);
		record(&r, id, now - 100 * day + i, 1);
		struct attempt_log a = att[0];
		a.ts_start_ms = r.ts_start_ms;
		r.attempt_log = &a;
		r.n_attempt_log = 1;
		REQUIRE_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	}
	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof(id), "chatcmpl-new%02d", i);
		record(&r, id, now - day + i, 1);
		REQUIRE_INT_EQ(store_insert_reqlog(st, &r, err, sizeof(err)), 0);
	}
	REQUIRE_INT_EQ(store_commit(st), 0);
	CHECK_INT_EQ(store_prune(st, now - 90 * day, NULL), 2500);
	store_close(st);
	CHECK_INT_EQ(count(db, "SELECT count(*) FROM request_log"), 10);
	CHECK_INT_EQ(count(db, "SELECT count(*) FROM request_attempts"), 0);
	CHECK_INT_EQ(count(db, "SELECT count(*) FROM budget_spend"), 2);
	CHECK_INT_EQ(count(db, "PRAGMA auto_vacuum"), 2);
	free(db);
}

/* Statements allowed to read a whole table: tiny tables read rarely. */
static int scan_allowed(const char *sql)
{
	return strstr(sql, "FROM model_health WHERE failures > 0") != NULL ||
	       strstr(sql, "FROM api_keys ORDER BY") != NULL;
}

TEST(query_plans_of_request_path_statements_use_indexes)
{
	char *db = test_path("plans.db");
	struct store *st = open_at(db);
	REQUIRE_NOT_NULL(st);
	for (size_t i = 0; i < store_statement_count(); i++) {
		const char *sql = store_statement(i);
		struct buf plan;
		buf_init(&plan, 1 << 16);
		test_case("%s", sql);
		REQUIRE_INT_EQ(store_query_plan(st, sql, &plan), 0);
		const char *p = buf_str(&plan);
		if (!scan_allowed(sql)) {
			/* "SCAN t" is a full table scan; "SCAN t USING ... INDEX" walks an index. */
			const char *s = p;
			while ((s = strstr(s, "SCAN "))) {
				const char *eol = strchr(s, '\n');
				int indexed = eol && memmem(s, (size_t)(eol - s), "INDEX", 5) != NULL;
				if (!indexed)
					printf("  full scan: %.*s\n", eol ? (int)(eol - s) : 40, s);
				CHECK(indexed);
				s += 5;
			}
		}
		buf_free(&plan);
	}
	/* The queries of reports, retention and the budget views use the time index. */
	static const char *const more[] = {
		"SELECT model, count(*) FROM request_log WHERE ts_start_ms >= 1 AND ts_start_ms < 2 GROUP BY 1",
		"SELECT id FROM request_log WHERE ts_start_ms < 5 ORDER BY ts_start_ms LIMIT 1000",
		"SELECT request_id, attempt FROM request_attempts WHERE ts_start_ms < 5 ORDER BY ts_start_ms LIMIT 1000",
		"SELECT * FROM spend_today_tier",
		"SELECT * FROM spend_today_model",
	};
	for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
		struct buf plan;
		buf_init(&plan, 1 << 16);
		test_case("%s", more[i]);
		REQUIRE_INT_EQ(store_query_plan(st, more[i], &plan), 0);
		CHECK(strstr(buf_str(&plan), "SCAN request_log\n") == NULL);
		CHECK(strstr(buf_str(&plan), "SCAN request_attempts\n") == NULL);
		CHECK(strstr(buf_str(&plan), "SCAN budget_spend\n") == NULL);
		buf_free(&plan);
	}
	test_case(NULL);
	store_close(st);
	free(db);
}
