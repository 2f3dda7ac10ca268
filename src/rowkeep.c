/* rowkeep.c - request-log rows kept in memory until a destination takes them (rowkeep.h).
 *
 * A kept row is its JSON line (reqlog_to_json), so it owns nothing of the request; the list is
 * guarded by one mutex, taken briefly (the writes happen with the list detached).
 */
#include "rowkeep.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "jsonx.h"
#include "log.h"
#include "reqlog_jsonl.h"
#include "store.h"
#include "util.h"

struct kept {
	char *line;   /* the row's JSON, no newline */
	struct kept *next;
};

static struct {
	pthread_mutex_t mu;
	struct kept *head, *tail;
	size_t n;
	long max;
} K = { .mu = PTHREAD_MUTEX_INITIALIZER, .max = 10000 };

void rowkeep_set_max(long max_rows)
{
	pthread_mutex_lock(&K.mu);
	K.max = max_rows < 0 ? 0 : max_rows;
	pthread_mutex_unlock(&K.mu);
}

size_t rowkeep_count(void)
{
	pthread_mutex_lock(&K.mu);
	size_t n = K.n;
	pthread_mutex_unlock(&K.mu);
	return n;
}

int rowkeep_full(void)
{
	pthread_mutex_lock(&K.mu);
	int full = (long)K.n >= K.max;
	pthread_mutex_unlock(&K.mu);
	return full;
}

/* One whole line to stderr (a single write, so lines of threads never interleave). */
static void mark_line(const char *json)
{
	char *l = xasprintf("%s%s\n", ROWKEEP_MARK, json);
	size_t len = strlen(l), off = 0;
	while (off < len) {
		ssize_t w = write(STDERR_FILENO, l + off, len - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	free(l);
}

int rowkeep_keep(const struct reqlog *r)
{
	json_t *o = reqlog_to_json(r);
	char *line = jsonx_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!line)
		return -1;
	mark_line(line);
	pthread_mutex_lock(&K.mu);
	if ((long)K.n >= K.max) {
		pthread_mutex_unlock(&K.mu);
		free(line);
		return -1;
	}
	struct kept *k = xcalloc(1, sizeof(*k));
	k->line = line;
	if (K.tail)
		K.tail->next = k;
	else
		K.head = k;
	K.tail = k;
	K.n++;
	pthread_mutex_unlock(&K.mu);
	return 0;
}

/* Puts a detached list back at the front (rows keep their order). */
static void put_back(struct kept *list, size_t n)
{
	if (!list)
		return;
	struct kept *last = list;
	while (last->next)
		last = last->next;
	pthread_mutex_lock(&K.mu);
	last->next = K.head;
	K.head = list;
	if (!K.tail)
		K.tail = last;
	K.n += n;
	pthread_mutex_unlock(&K.mu);
}

static void free_list(struct kept *k)
{
	while (k) {
		struct kept *next = k->next;
		free(k->line);
		free(k);
		k = next;
	}
}

/* The row of one JSON line into st: 1 new, 0 already logged, -1 failed (and -2 unreadable). */
static int insert_line(struct store *st, const char *line, size_t len)
{
	json_error_t je;
	/* A web server may also add its own text after the line (mod_cgid: ": <script>"). */
	json_t *o = json_loadb(line, len, JSON_DISABLE_EOF_CHECK, &je);
	struct reqlog r;
	struct attempt_log *att = NULL;
	int rc = -2;
	char err[256];
	if (json_is_object(o) && reqlog_from_json(o, &r, &att) == 0)
		rc = store_insert_reqlog_new(st, &r, err, sizeof(err));
	free(att);
	json_decref(o);
	return rc;
}

static int flush_db(struct store *st, struct kept *list)
{
	char err[256];
	if (store_begin_err(st, err, sizeof(err)) < 0)
		return -1;
	for (struct kept *k = list; k; k = k->next) {
		if (insert_line(st, k->line, strlen(k->line)) == -1) {
			store_rollback(st);
			return -1;
		}
	}
	if (store_commit_err(st, err, sizeof(err)) < 0) {
		store_rollback(st);
		return -1;
	}
	return 0;
}

/* Takes every kept row out of the list (the caller puts back what no destination took). */
static struct kept *take_all(size_t *n)
{
	pthread_mutex_lock(&K.mu);
	struct kept *list = K.head;
	*n = K.n;
	K.head = K.tail = NULL;
	K.n = 0;
	pthread_mutex_unlock(&K.mu);
	return list;
}

void rowkeep_flush(struct store *st, const char *jsonl_path)
{
	size_t n;
	struct kept *list = take_all(&n);
	if (!list)
		return;
	if (st && flush_db(st, list) == 0) {
		log_info(NULL, "%zu request-log row(s) kept in memory are now in the database", n);
		free_list(list);
		return;
	}
	size_t done = 0;
	char err[256];
	while (list && jsonl_path) {
		if (reqlog_jsonl_append_line(jsonl_path, list->line, strlen(list->line), err,
					     sizeof(err)) < 0)
			break;
		struct kept *next = list->next;
		free(list->line);
		free(list);
		list = next;
		done++;
	}
	if (done)
		log_info(NULL, "%zu request-log row(s) kept in memory are now in %s", done, jsonl_path);
	put_back(list, n - done);
}

void rowkeep_dump(void)
{
	size_t n;
	struct kept *list = take_all(&n);
	if (n)
		log_error(NULL, "%zu request-log row(s) could be written neither to the database nor to the "
			  "fallback file: they are in this error log only, on lines starting \"%s\"; import "
			  "them with: llm-router replay --log <this log file>", n, ROWKEEP_MARK);
	free_list(list);
}

int rowkeep_import_log(struct store *st, const char *path, long long *imported, long long *already,
		       char *err, size_t errsz)
{
	*imported = *already = 0;
	snprintf(err, errsz, "the database failed");
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errsz, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0, batch = 0;
	size_t mlen = strlen(ROWKEEP_MARK);
	if (store_begin_err(st, err, errsz) < 0)
		rc = -1;
	while (rc == 0 && (n = getline(&line, &cap, f)) > 0) {
		/* A web server may put its own prefix before what the process wrote. */
		char *m = strstr(line, ROWKEEP_MARK);
		if (!m)
			continue;
		m += mlen;
		int r = insert_line(st, m, (size_t)(line + n - m));
		if (r == -1)
			rc = -1;
		else if (r == 1)
			(*imported)++;
		else if (r == 0)
			(*already)++;
		if (rc == 0 && ++batch % 500 == 0 &&
		    (store_commit_err(st, err, errsz) < 0 || store_begin_err(st, err, errsz) < 0))
			rc = -1;
	}
	if (rc == 0 && store_commit_err(st, err, errsz) < 0)
		rc = -1;
	if (rc < 0)
		store_rollback(st);
	free(line);
	fclose(f);
	return rc;
}
