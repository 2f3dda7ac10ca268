/* store_responses.c - stored responses of POST /v1/responses (table responses, schema 9): put,
 * get and delete, each scoped to the agent that made the response. */
#include "store.h"
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

int store_response_put(struct store *st, const char *id, const char *agent, int64_t ts_ms,
		       const char *previous_id, const char *input_items, const char *response)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db,
			       "INSERT OR REPLACE INTO responses (id, agent, ts_ms, previous_id,"
			       " input_items, response) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", -1, &s,
			       NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, agent ? agent : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, ts_ms);
	if (previous_id)
		sqlite3_bind_text(s, 4, previous_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, input_items, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, response, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -1;
}

static char *col_dup(sqlite3_stmt *s, int i)
{
	const char *t = (const char *)sqlite3_column_text(s, i);
	return t ? xstrdup(t) : NULL;
}

int store_response_get(struct store *st, const char *id, const char *agent,
		       struct stored_response *out)
{
	memset(out, 0, sizeof(*out));
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db,
			       "SELECT previous_id, input_items, response FROM responses"
			       " WHERE id = ?1 AND agent = ?2", -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, agent ? agent : "", -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		out->previous_id = col_dup(s, 0);
		out->input_items = col_dup(s, 1);
		out->response = col_dup(s, 2);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
}

void store_response_free(struct stored_response *r)
{
	free(r->previous_id);
	free(r->input_items);
	free(r->response);
	memset(r, 0, sizeof(*r));
}

int store_response_delete(struct store *st, const char *id, const char *agent)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, "DELETE FROM responses WHERE id = ?1 AND agent = ?2", -1, &s,
			       NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, agent ? agent : "", -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int n = sqlite3_changes(st->db);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? (n > 0) : -1;
}
