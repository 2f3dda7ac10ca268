/* store_wal.c - WAL checkpoints in the background: the writer connection's WAL hook and the
 * checkpointer thread.
 *
 * The writer's connection (store_wal_attach) has wal_autocheckpoint disabled and a WAL hook that
 * wakes the checkpointer thread once the WAL holds checkpoint_pages pages; the checkpointer also
 * runs every few seconds, on a connection of its own. It uses PASSIVE checkpoints, which never
 * block writers, and a RESTART checkpoint only when the WAL has passed the hard cap
 * (STORE_WAL_CAP_FACTOR x checkpoint_pages). One checkpointer per process: its state is static.
 */
#include "store_wal.h"

#include "store_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "util.h"

static pthread_mutex_t ck_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ck_cond = PTHREAD_COND_INITIALIZER;
static pthread_t ck_thread;
static int ck_running;
static int ck_stop;
static int ck_wanted;
static long ck_pages = 1000;

/* Frames in the WAL at which the checkpointer is woken next. A background checkpoint that copies
 * every frame still leaves the WAL in place when the next commit has already begun, so waking it
 * after each commit past a fixed size would checkpoint (and fsync) at every commit: the threshold
 * moves one checkpoint_pages past what the last checkpoint saw, and falls back once the WAL has
 * started over. */
static long ck_threshold = 1000;
static int ck_last_pages;          /* the writer's thread only */

static int wal_hook(void *ud, sqlite3 *db, const char *name, int pages)
{
	(void)ud;
	(void)db;
	(void)name;
	long base = __atomic_load_n(&ck_pages, __ATOMIC_RELAXED);
	if (pages < ck_last_pages)
		__atomic_store_n(&ck_threshold, base, __ATOMIC_RELAXED);
	ck_last_pages = pages;
	if (pages >= __atomic_load_n(&ck_threshold, __ATOMIC_RELAXED) &&
	    !__atomic_load_n(&ck_wanted, __ATOMIC_RELAXED)) {
		pthread_mutex_lock(&ck_mu);
		__atomic_store_n(&ck_wanted, 1, __ATOMIC_RELAXED);
		pthread_cond_signal(&ck_cond);
		pthread_mutex_unlock(&ck_mu);
	}
	return SQLITE_OK;
}

void store_wal_attach(sqlite3 *db, const struct store_opts *o)
{
	if (o->checkpoint_pages <= 0)
		return;
	/* A background checkpointer runs; keep checkpoints off the request path. */
	sqlite3_wal_autocheckpoint(db, 0);
	sqlite3_wal_hook(db, wal_hook, NULL);
}

/* One checkpoint pass; returns 0, or -1 when the connection should be reopened. */
static int checkpoint(sqlite3 *db, const struct store_opts *o)
{
	int wal_pages = 0, done = 0;
	int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &wal_pages, &done);
	if (rc == SQLITE_OK)
		__atomic_store_n(&ck_threshold, (long)wal_pages + o->checkpoint_pages, __ATOMIC_RELAXED);
	if (rc == SQLITE_OK && wal_pages >= STORE_WAL_CAP_FACTOR * o->checkpoint_pages) {
		/* Commits that never stop keep a background checkpoint from ever reaching the end of
		 * the WAL, so it would grow without bound: make writers wait for one checkpoint that
		 * lets the next commit start the WAL over. */
		rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_RESTART, &wal_pages, &done);
	}
	if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
		log_warn(NULL, "WAL checkpoint of %s failed: %s", o->path, sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

static void *checkpointer_main(void *arg)
{
	pthread_setname_np(pthread_self(), "llm-checkpoint");
	struct store_opts *o = arg;
	char errbuf[256];
	sqlite3 *db = NULL;
	pthread_mutex_lock(&ck_mu);
	while (!ck_stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 5;
		while (!ck_stop && !__atomic_load_n(&ck_wanted, __ATOMIC_RELAXED)) {
			if (pthread_cond_timedwait(&ck_cond, &ck_mu, &until) == ETIMEDOUT)
				break;
		}
		if (ck_stop)
			break;
		__atomic_store_n(&ck_wanted, 0, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&ck_mu);
		if (!db)
			db = store_db_open(o, errbuf, sizeof(errbuf));
		if (db && checkpoint(db, o) < 0) {
			sqlite3_close(db);
			db = NULL;
		}
		pthread_mutex_lock(&ck_mu);
	}
	pthread_mutex_unlock(&ck_mu);
	sqlite3_close(db);
	free((char *)o->path);
	free(o);
	return NULL;
}

int store_checkpointer_start(const struct store_opts *o)
{
	if (o->checkpoint_pages <= 0)
		return 0;
	struct store_opts *copy = xmalloc(sizeof(*copy));
	*copy = *o;
	copy->path = xstrdup(o->path);
	copy->jsonl_path = NULL;
	__atomic_store_n(&ck_pages, o->checkpoint_pages, __ATOMIC_RELAXED);
	__atomic_store_n(&ck_threshold, o->checkpoint_pages, __ATOMIC_RELAXED);
	ck_stop = 0;
	if (pthread_create(&ck_thread, NULL, checkpointer_main, copy) != 0) {
		free((char *)copy->path);
		free(copy);
		return -1;
	}
	ck_running = 1;
	return 0;
}

void store_checkpointer_stop(void)
{
	if (!ck_running)
		return;
	pthread_mutex_lock(&ck_mu);
	ck_stop = 1;
	pthread_cond_signal(&ck_cond);
	pthread_mutex_unlock(&ck_mu);
	pthread_join(ck_thread, NULL);
	ck_running = 0;
}
