/* test_reqlog_row.c - every column of the request-log row survives SQLite and the JSONL fallback.
 *
 * The row is filled by walking reqlog_columns itself (so a column added later is filled and
 * compared without touching this file): every column gets a value that is not its default,
 * strings with quotes, backslashes, newlines and non-ASCII text, integers past 32 bits. It is then
 * written to a database and read back with sqlite3 directly, and written to the JSONL file, read
 * back with reqlog_from_json and replayed into a fresh database; each time every column, every
 * attempt column and the tool-call state are compared.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "harness.h"
#include "log.h"
#include "reqlog.h"
#include "store.h"

#define MAX_COLS 64

/* Strings that must come back byte for byte. */
static const char *const nasty[] = {
	"quote \" apostrophe ' backslash \\ slash /",
	"line\nbreak\r\nand\ttab",
	"unicode: \xc3\xa9t\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x99\x82",
	"{\"looks\": [\"like\", \"json\"]}",
};

struct full_row {
	struct reqlog r;
	struct attempt_log att[2];
	char text[MAX_COLS][160];
	char atext[2][MAX_COLS][160];
	json_t *tool_state;
};

/* A value of column k of a table that is not the column's default. */
static void fill_value(const struct reqlog_col *c, size_t k, int salt, char *text, size_t textsz,
		       struct reqlog_val *v)
{
	memset(v, 0, sizeof(*v));
	switch (c->type) {
	case COL_TEXT:
	case COL_TEXT_SET:
		snprintf(text, textsz, "%s %d: %s", c->name, salt, nasty[(k + (size_t)salt) % 4]);
		v->kind = VAL_TEXT;
		v->s = text;
		break;
	case COL_INT:
	case COL_POS_INT:
	case COL_POS_LONG:
		v->kind = VAL_INT;
		v->i = 1000 + (int64_t)k + salt;
		break;
	case COL_INT64:
		/* Past 32 bits; still a time gmtime can read (ts_start_ms names a UTC day). */
		v->kind = VAL_INT;
		v->i = (1LL << 41) + (int64_t)k * 1000 + salt;
		break;
	case COL_COUNT:
		v->kind = VAL_INT;
		v->i = INT64_MAX - (int64_t)k - salt;
		break;
	case COL_MS:
		v->kind = VAL_REAL;
		v->d = (double)k + salt + 1.0 / 3.0;
		break;
	case COL_ATTEMPTS:
	case COL_JSON:
	case COL_SQL_ONLY:
		v->kind = VAL_NULL;
		break;
	}
}

static void fill_row(struct full_row *f, const char *request_id)
{
	memset(f, 0, sizeof(*f));
	reqlog_init(&f->r);
	REQUIRE(reqlog_n_columns <= MAX_COLS && reqlog_attempt_n_columns <= MAX_COLS);
	for (size_t k = 0; k < reqlog_n_columns; k++) {
		const struct reqlog_col *c = &reqlog_columns[k];
		struct reqlog_val v;
		fill_value(c, k, 0, f->text[k], sizeof(f->text[k]), &v);
		if (v.kind != VAL_NULL)
			reqlog_col_set(c, &f->r, &v, 0);
	}
	f->r.request_id = request_id;
	for (int a = 0; a < 2; a++) {
		for (size_t k = 0; k < reqlog_attempt_n_columns; k++) {
			const struct reqlog_col *c = &reqlog_attempt_columns[k];
			struct reqlog_val v;
			fill_value(c, k, a + 1, f->atext[a][k], sizeof(f->atext[a][k]), &v);
			reqlog_col_set(c, &f->att[a], &v, 0);
		}
	}
	f->r.attempt_log = f->att;
	f->r.n_attempt_log = 2;
	json_error_t e;
	f->tool_state = json_loads("{\"call_\\\"1\\\"\": {\"text\": \"line\\nbreak \\u00e9\", "
				   "\"n\": 9007199254740993}, \"call_2\": [1, 2.5, null]}",
				   0, &e);
	f->r.tool_state = f->tool_state;
}

static int val_eq(const struct reqlog_val *a, const struct reqlog_val *b)
{
	if (a->kind != b->kind)
		return 0;
	switch (a->kind) {
	case VAL_INT:
		return a->i == b->i;
	case VAL_REAL:
		return a->d == b->d;
	case VAL_TEXT:
		return strcmp(a->s, b->s) == 0;
	case VAL_NULL:
		break;
	}
	return 1;
}

static void check_val(const char *where, const char *name, const struct reqlog_val *got,
		      const struct reqlog_val *want)
{
	test_case("%s: column %s", where, name);
	if (!CHECK(val_eq(got, want)))
		printf("       kind %d/%d int %lld/%lld real %.17g/%.17g text [%s]/[%s]\n", got->kind,
		       want->kind, (long long)got->i, (long long)want->i, got->d, want->d,
		       got->s ? got->s : "", want->s ? want->s : "");
}

static void sql_val(sqlite3_stmt *s, int i, struct reqlog_val *v)
{
	memset(v, 0, sizeof(*v));
	switch (sqlite3_column_type(s, i)) {
	case SQLITE_INTEGER:
		v->kind = VAL_INT;
		v->i = sqlite3_column_int64(s, i);
		break;
	case SQLITE_FLOAT:
		v->kind = VAL_REAL;
		v->d = sqlite3_column_double(s, i);
		break;
	case SQLITE_TEXT:
		v->kind = VAL_TEXT;
		v->s = (const char *)sqlite3_column_text(s, i);
		break;
	default:
		v->kind = VAL_NULL;
	}
}

static int is_scalar(const struct reqlog_col *c)
{
	return c->type != COL_ATTEMPTS && c->type != COL_JSON && c->type != COL_SQL_ONLY;
}

/* SELECT <every scalar column of a table> FROM <table> WHERE request_id = id <tail> */
static sqlite3_stmt *select_columns(sqlite3 *db, const struct reqlog_col *cols, size_t n,
				    const char *table, const char *id, const char *tail)
{
	char sql[4096];
	size_t len = (size_t)snprintf(sql, sizeof(sql), "SELECT ");
	int first = 1;
	for (size_t k = 0; k < n; k++) {
		if (!is_scalar(&cols[k]))
			continue;
		len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s%s", first ? "" : ", ", cols[k].name);
		first = 0;
	}
	snprintf(sql + len, sizeof(sql) - len, " FROM %s WHERE request_id = ?1%s", table, tail);
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
		printf("       %s: %s\n", sql, sqlite3_errmsg(db));
		return NULL;
	}
	sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
	return s;
}

static void compare_step(const char *where, sqlite3_stmt *s, const struct reqlog_col *cols, size_t n,
			 const void *want)
{
	int i = 0;
	for (size_t k = 0; k < n; k++) {
		if (!is_scalar(&cols[k]))
			continue;
		struct reqlog_val got, exp;
		sql_val(s, i++, &got);
		reqlog_col_get(&cols[k], want, &exp);
		check_val(where, cols[k].name, &got, &exp);
	}
}

/* The row as the database holds it equals f, column by column. */
static void compare_db(const char *where, const char *path, const struct full_row *f)
{
	sqlite3 *db = NULL;
	REQUIRE_INT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_stmt *s = select_columns(db, reqlog_columns, reqlog_n_columns, "request_log",
					 f->r.request_id, "");
	REQUIRE_NOT_NULL(s);
	REQUIRE_INT_EQ(sqlite3_step(s), SQLITE_ROW);
	compare_step(where, s, reqlog_columns, reqlog_n_columns, &f->r);
	sqlite3_finalize(s);

	s = select_columns(db, reqlog_attempt_columns, reqlog_attempt_n_columns, "request_attempts",
			   f->r.request_id, " ORDER BY attempt");
	REQUIRE_NOT_NULL(s);
	for (int a = 0; a < 2; a++) {
		test_case("%s: attempt %d", where, a + 1);
		REQUIRE_INT_EQ(sqlite3_step(s), SQLITE_ROW);
		compare_step(where, s, reqlog_attempt_columns, reqlog_attempt_n_columns, &f->att[a]);
	}
	CHECK_INT_EQ(sqlite3_step(s), SQLITE_DONE);
	sqlite3_finalize(s);

	test_case("%s: tool_state", where);
	REQUIRE_INT_EQ(sqlite3_prepare_v2(db, "SELECT tool_call_id, state FROM tool_call_state WHERE"
					  " request_id = ?1", -1, &s, NULL), SQLITE_OK);
	sqlite3_bind_text(s, 1, f->r.request_id, -1, SQLITE_STATIC);
	json_t *state = json_object();
	while (sqlite3_step(s) == SQLITE_ROW) {
		json_error_t e;
		json_object_set_new(state, (const char *)sqlite3_column_text(s, 0),
				    json_loads((const char *)sqlite3_column_text(s, 1), 0, &e));
	}
	sqlite3_finalize(s);
	CHECK(json_equal(state, f->tool_state));
	json_decref(state);
	test_case(NULL);
	sqlite3_close(db);
}

TEST(full_row_has_no_default_column)
{
	struct full_row *f = calloc(1, sizeof(*f));
	fill_row(f, "chatcmpl-full-row");
	struct reqlog dflt;
	reqlog_init(&dflt);
	for (size_t k = 0; k < reqlog_n_columns; k++) {
		const struct reqlog_col *c = &reqlog_columns[k];
		if (!is_scalar(c))
			continue;
		struct reqlog_val v, d;
		reqlog_col_get(c, &f->r, &v);
		reqlog_col_get(c, &dflt, &d);
		test_case("column %s", c->name);
		CHECK(v.kind != VAL_NULL);
		CHECK(!val_eq(&v, &d));
	}
	test_case(NULL);
	json_decref(f->tool_state);
	free(f);
}

TEST(full_row_round_trips_through_sqlite)
{
	struct full_row *f = calloc(1, sizeof(*f));
	fill_row(f, "chatcmpl-sql \"'\n\xc3\xa9");
	char *path = test_path("full.db");
	struct store_opts o = { .path = path, .busy_timeout_ms = 1000 };
	char err[512] = "";
	struct store *st = store_open(&o, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	CHECK_INT_EQ(store_insert_reqlog(st, &f->r, err, sizeof(err)), 0);
	store_close(st);
	compare_db("sqlite", path, f);
	json_decref(f->tool_state);
	free(f);
	free(path);
}

TEST(full_row_round_trips_through_jsonl_and_replay)
{
	log_set_level(LOG_ERROR);
	struct full_row *f = calloc(1, sizeof(*f));
	fill_row(f, "chatcmpl-jsonl");
	char *jl = test_path("fallback.jsonl");
	REQUIRE_INT_EQ(reqlog_write(NULL, jl, &f->r), 0);

	/* The line read back: every column, attempt and the tool state. */
	char *data = test_read_file(jl, NULL);
	REQUIRE_NOT_NULL(data);
	json_error_t e;
	json_t *line = json_loads(data, 0, &e);
	free(data);
	REQUIRE_NOT_NULL(line);
	for (size_t k = 0; k < reqlog_n_columns; k++) {
		const struct reqlog_col *c = &reqlog_columns[k];
		test_case("jsonl key %s", c->name);
		if (c->type == COL_SQL_ONLY)
			CHECK_NULL(json_object_get(line, c->name));
		else
			CHECK(json_object_get(line, c->name) && !json_is_null(json_object_get(line, c->name)));
	}
	struct reqlog back;
	struct attempt_log *att = NULL;
	REQUIRE_INT_EQ(reqlog_from_json(line, &back, &att), 0);
	for (size_t k = 0; k < reqlog_n_columns; k++) {
		const struct reqlog_col *c = &reqlog_columns[k];
		if (!is_scalar(c))
			continue;
		struct reqlog_val got, want;
		reqlog_col_get(c, &back, &got);
		reqlog_col_get(c, &f->r, &want);
		check_val("from_json", c->name, &got, &want);
	}
	REQUIRE_INT_EQ(back.n_attempt_log, 2);
	for (int a = 0; a < 2; a++) {
		for (size_t k = 0; k < reqlog_attempt_n_columns; k++) {
			const struct reqlog_col *c = &reqlog_attempt_columns[k];
			struct reqlog_val got, want;
			reqlog_col_get(c, &back.attempt_log[a], &got);
			reqlog_col_get(c, &f->att[a], &want);
			check_val(a ? "from_json attempt 2" : "from_json attempt 1", c->name, &got, &want);
		}
	}
	test_case("from_json tool_state");
	CHECK(json_equal(back.tool_state, f->tool_state));
	test_case(NULL);
	free(att);
	json_decref(line);

	/* Replayed into a fresh database: the same row as a direct insert. */
	char *db = test_path("replayed.db");
	struct store_opts o = { .path = db, .busy_timeout_ms = 1000 };
	char err[512] = "";
	struct store *st = store_open(&o, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	struct replay_stats rs;
	CHECK_INT_EQ(reqlog_replay(st, jl, NULL, &rs), 0);
	CHECK_INT_EQ(rs.imported, 1);
	store_close(st);
	compare_db("replay", db, f);
	json_decref(f->tool_state);
	free(f);
	free(db);
	free(jl);
}
