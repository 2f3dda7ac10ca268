/* reqlog_row.c - the columns of the request-log row, and its JSON form (the JSONL fallback line).
 *
 * reqlog_columns is the only description of the row: the order of its entries is the column order
 * of request_log (new columns go at the end, as ALTER TABLE puts them) and the key order of the JSON
 * object. A value is "none" the same way everywhere: reqlog_col_get turns the field's sentinel
 * (NULL, "", -1, 0) into VAL_NULL, which is SQL NULL and JSON null, and reqlog_col_set turns it
 * back. Pure functions: no I/O, no global state.
 */
#include "reqlog_row.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#define R(f, type, sql, since, flags, dflt) { #f, type, offsetof(struct reqlog, f), sql, since, flags, dflt }
#define A(f, type, sql, flags, dflt) { #f, type, offsetof(struct attempt_log, f), sql, 3, flags, dflt }

const struct reqlog_col reqlog_columns[] = {
	{ "id", COL_SQL_ONLY, 0, "INTEGER PRIMARY KEY", 1, 0, NULL },
	R(request_id, COL_TEXT, "TEXT NOT NULL UNIQUE", 1, COL_REQUIRED, NULL),
	R(ts_start_ms, COL_INT64, "INTEGER NOT NULL", 1, COL_REQUIRED, NULL),
	R(ts_end_ms, COL_INT64, "INTEGER NOT NULL", 1, COL_DEFAULT_START, NULL),
	R(agent, COL_TEXT, "TEXT", 1, 0, NULL),
	R(tier, COL_TEXT, "TEXT", 1, 0, NULL),
	R(task, COL_TEXT, "TEXT", 1, 0, NULL),
	R(requested_model, COL_TEXT, "TEXT", 1, 0, NULL),
	R(model, COL_TEXT, "TEXT", 1, 0, NULL),
	R(provider, COL_TEXT, "TEXT", 1, 0, NULL),
	R(upstream_model, COL_TEXT, "TEXT", 1, 0, NULL),
	R(stream, COL_INT, "INTEGER NOT NULL DEFAULT 0", 1, 0, NULL),
	R(status, COL_INT, "INTEGER NOT NULL", 1, 0, NULL),
	R(error_type, COL_TEXT, "TEXT", 1, 0, NULL),
	R(error_code, COL_TEXT, "TEXT", 1, 0, NULL),
	R(error_message, COL_TEXT, "TEXT", 1, 0, NULL),
	R(finish_reason, COL_TEXT, "TEXT", 1, 0, NULL),
	R(input_tokens, COL_COUNT, "INTEGER", 1, 0, NULL),
	R(output_tokens, COL_COUNT, "INTEGER", 1, 0, NULL),
	R(cached_tokens, COL_COUNT, "INTEGER", 1, 0, NULL),
	R(cache_write_tokens, COL_COUNT, "INTEGER", 1, 0, NULL),
	R(reasoning_tokens, COL_COUNT, "INTEGER", 1, 0, NULL),
	R(cost_nusd, COL_INT64, "INTEGER NOT NULL DEFAULT 0", 1, 0, NULL),
	{ "cost_usd", COL_SQL_ONLY, 0, "REAL GENERATED ALWAYS AS (cost_nusd / 1e9) VIRTUAL", 1, 0, NULL },
	R(cost_source, COL_TEXT, "TEXT", 1, 0, "none"),
	R(latency_ms, COL_MS, "REAL", 1, 0, NULL),
	R(ttft_ms, COL_MS, "REAL", 1, 0, NULL),
	R(upstream_ms, COL_MS, "REAL", 1, 0, NULL),
	R(overhead_ms, COL_MS, "REAL", 1, 0, NULL),
	R(dropped_params, COL_TEXT_SET, "TEXT", 1, 0, NULL),
	R(upstream_request_id, COL_TEXT_SET, "TEXT", 1, 0, NULL),
	R(attempts, COL_INT, "INTEGER NOT NULL DEFAULT 1", 1, 0, NULL),
	R(client_gone, COL_INT, "INTEGER NOT NULL DEFAULT 0", 1, 0, NULL),
	R(fallback_from, COL_TEXT_SET, "TEXT", 3, 0, NULL),
	R(partial, COL_INT, "INTEGER NOT NULL DEFAULT 0", 3, 0, NULL),
	R(method, COL_TEXT, "TEXT", 8, 0, NULL),
	R(path, COL_TEXT, "TEXT", 8, 0, NULL),
	/* Kept in tables of their own, linked by request_id. */
	R(attempt_log, COL_ATTEMPTS, NULL, 3, 0, NULL),
	R(tool_state, COL_JSON, NULL, 2, 0, NULL),
};
const size_t reqlog_n_columns = ARRAY_SIZE(reqlog_columns);

/* A request_attempts row is also keyed by (request_id, attempt): the row's id and the attempt's
 * number from 1, which every writer adds. */
const struct reqlog_col reqlog_attempt_columns[] = {
	A(ts_start_ms, COL_INT64, "INTEGER NOT NULL", COL_DEFAULT_START, NULL),
	A(model, COL_TEXT, "TEXT NOT NULL", 0, ""),
	A(provider, COL_TEXT, "TEXT", 0, NULL),
	A(upstream_model, COL_TEXT, "TEXT", 0, NULL),
	A(outcome, COL_TEXT, "TEXT NOT NULL", 0, "failed"),
	A(upstream_status, COL_POS_INT, "INTEGER", 0, NULL),
	A(status, COL_POS_INT, "INTEGER", 0, NULL),
	A(error_type, COL_TEXT, "TEXT", 0, NULL),
	A(error_code, COL_TEXT, "TEXT", 0, NULL),
	A(error_message, COL_TEXT_SET, "TEXT", 0, NULL),
	A(latency_ms, COL_MS, "REAL", 0, NULL),
	A(retry_after_s, COL_POS_LONG, "INTEGER", 0, NULL),
	A(upstream_request_id, COL_TEXT_SET, "TEXT", 0, NULL),
};
const size_t reqlog_attempt_n_columns = ARRAY_SIZE(reqlog_attempt_columns);

void reqlog_init(struct reqlog *r)
{
	memset(r, 0, sizeof(*r));
	r->input_tokens = r->output_tokens = r->cached_tokens = -1;
	r->cache_write_tokens = r->reasoning_tokens = -1;
	r->ttft_ms = r->upstream_ms = -1;
	r->cost_source = "none";
	r->attempts = 0;
}

void reqlog_col_get(const struct reqlog_col *c, const void *row, struct reqlog_val *v)
{
	const char *p = (const char *)row + c->off;
	memset(v, 0, sizeof(*v));
	v->kind = VAL_NULL;
	switch (c->type) {
	case COL_TEXT:
	case COL_TEXT_SET:
		v->s = *(const char *const *)p;
		if (v->s && (c->type == COL_TEXT || v->s[0]))
			v->kind = VAL_TEXT;
		else
			v->s = NULL;
		break;
	case COL_INT:
		v->i = *(const int *)p;
		v->kind = VAL_INT;
		break;
	case COL_INT64:
		v->i = *(const int64_t *)p;
		v->kind = VAL_INT;
		break;
	case COL_COUNT:
		v->i = *(const int64_t *)p;
		v->kind = v->i >= 0 ? VAL_INT : VAL_NULL;
		break;
	case COL_POS_INT:
		v->i = *(const int *)p;
		v->kind = v->i > 0 ? VAL_INT : VAL_NULL;
		break;
	case COL_POS_LONG:
		v->i = *(const long *)p;
		v->kind = v->i > 0 ? VAL_INT : VAL_NULL;
		break;
	case COL_MS:
		v->d = *(const double *)p;
		v->kind = v->d >= 0 ? VAL_REAL : VAL_NULL;
		break;
	case COL_ATTEMPTS:
	case COL_JSON:
	case COL_SQL_ONLY:
		break;
	}
	if (v->kind == VAL_NULL)
		v->i = 0, v->d = 0;
}

void reqlog_col_set(const struct reqlog_col *c, void *row, const struct reqlog_val *v, int64_t start)
{
	char *p = (char *)row + c->off;
	int is_int = v->kind == VAL_INT;
	int64_t none = c->flags & COL_DEFAULT_START ? start : 0;
	switch (c->type) {
	case COL_TEXT:
	case COL_TEXT_SET:
		*(const char **)p = v->kind == VAL_TEXT ? v->s : c->dflt;
		break;
	case COL_INT:
		*(int *)p = (int)(is_int ? v->i : none);
		break;
	case COL_INT64:
		*(int64_t *)p = is_int ? v->i : none;
		break;
	case COL_COUNT:
		*(int64_t *)p = is_int ? v->i : -1;
		break;
	case COL_POS_INT:
		*(int *)p = is_int ? (int)v->i : 0;
		break;
	case COL_POS_LONG:
		*(long *)p = is_int ? (long)v->i : 0;
		break;
	case COL_MS:
		*(double *)p = is_int ? (double)v->i : v->kind == VAL_REAL ? v->d : -1;
		break;
	case COL_ATTEMPTS:
	case COL_JSON:
	case COL_SQL_ONLY:
		break;
	}
}

/* ---- JSON ---- */

static json_t *val_to_json(const struct reqlog_val *v)
{
	switch (v->kind) {
	case VAL_INT:
		return json_integer((json_int_t)v->i);
	case VAL_REAL:
		return json_real(v->d);
	case VAL_TEXT: {
		json_t *j = json_string(v->s);
		if (j || !v->s)
			return j;
		/* Not UTF-8 (a header's bytes): kept with '?' for each bad byte, never dropped. */
		char *clean = xstrdup(v->s);
		utf8_sanitize(clean);
		j = json_string(clean);
		free(clean);
		return j;
	}
	case VAL_NULL:
		break;
	}
	return json_null();
}

static void val_from_json(const json_t *j, struct reqlog_val *v)
{
	memset(v, 0, sizeof(*v));
	if (json_is_integer(j)) {
		v->kind = VAL_INT;
		v->i = json_integer_value(j);
	} else if (json_is_real(j)) {
		v->kind = VAL_REAL;
		v->d = json_real_value(j);
	} else if (json_is_string(j)) {
		v->kind = VAL_TEXT;
		v->s = json_string_value(j);
	} else {
		v->kind = VAL_NULL;
	}
}

static json_t *attempts_to_json(const struct reqlog *r)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < r->n_attempt_log; i++) {
		json_t *x = json_object();
		json_object_set_new(x, "attempt", json_integer((json_int_t)i + 1));
		for (size_t k = 0; k < reqlog_attempt_n_columns; k++) {
			struct reqlog_val v;
			reqlog_col_get(&reqlog_attempt_columns[k], &r->attempt_log[i], &v);
			json_object_set_new(x, reqlog_attempt_columns[k].name, val_to_json(&v));
		}
		json_array_append_new(arr, x);
	}
	return arr;
}

json_t *reqlog_to_json(const struct reqlog *r)
{
	json_t *o = json_object();
	for (size_t k = 0; k < reqlog_n_columns; k++) {
		const struct reqlog_col *c = &reqlog_columns[k];
		json_t *j;
		if (c->type == COL_SQL_ONLY) {
			continue;
		} else if (c->type == COL_ATTEMPTS) {
			j = attempts_to_json(r);
		} else if (c->type == COL_JSON) {
			const json_t *v = *(const json_t *const *)((const char *)r + c->off);
			j = v ? json_deep_copy(v) : json_null();
		} else {
			struct reqlog_val v;
			reqlog_col_get(c, r, &v);
			j = val_to_json(&v);
		}
		json_object_set_new(o, c->name, j);
	}
	return o;
}

static struct attempt_log *attempts_from_json(const json_t *arr, int64_t start, size_t *n)
{
	*n = json_is_array(arr) ? json_array_size(arr) : 0;
	if (!*n)
		return NULL;
	struct attempt_log *a = xcalloc(*n, sizeof(*a));
	for (size_t i = 0; i < *n; i++) {
		const json_t *x = json_array_get(arr, i);
		for (size_t k = 0; k < reqlog_attempt_n_columns; k++) {
			struct reqlog_val v;
			val_from_json(json_object_get(x, reqlog_attempt_columns[k].name), &v);
			reqlog_col_set(&reqlog_attempt_columns[k], &a[i], &v, start);
		}
	}
	return a;
}

int reqlog_from_json(const json_t *o, struct reqlog *r, struct attempt_log **attempts)
{
	reqlog_init(r);
	*attempts = NULL;
	for (size_t k = 0; k < reqlog_n_columns; k++) {
		const struct reqlog_col *c = &reqlog_columns[k];
		const json_t *j = json_object_get(o, c->name);
		if (!(c->flags & COL_REQUIRED))
			continue;
		if (c->type == COL_TEXT ? !json_is_string(j) || !json_string_value(j)[0] : !json_is_integer(j))
			return -1;
	}
	for (size_t k = 0; k < reqlog_n_columns; k++) {
		const struct reqlog_col *c = &reqlog_columns[k];
		const json_t *j = json_object_get(o, c->name);
		if (c->type == COL_SQL_ONLY) {
			continue;
		} else if (c->type == COL_ATTEMPTS) {
			*attempts = attempts_from_json(j, r->ts_start_ms, &r->n_attempt_log);
			r->attempt_log = *attempts;
		} else if (c->type == COL_JSON) {
			*(const json_t **)((char *)r + c->off) = json_is_object(j) ? j : NULL;
		} else {
			struct reqlog_val v;
			val_from_json(j, &v);
			reqlog_col_set(c, r, &v, r->ts_start_ms);
		}
	}
	return 0;
}
