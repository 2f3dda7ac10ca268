/* maint.c - the maintenance thread: JSONL replay and retention on a connection of their own.
 *
 * One thread per responder process, its state static. It sleeps on a condition variable until
 * the next job is due or it is told to stop; the stop flag is also handed to the jobs, which read
 * it between two transactions. Its connection (M.st) belongs to this thread alone: opened when a
 * job has work, dropped after a failure that is not a lock (and when its file was moved or
 * deleted), reopened at the next job. The writer thread (logwriter.c) and this one never wait for
 * each other in the process: they only meet at the database's lock, which maintenance holds for
 * one short transaction at a time.
 */
#include "maint.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "dbdown.h"
#include "log.h"
#include "reqlog_jsonl.h"
#include "store.h"
#include "util.h"

/* Retention runs every PRUNE_EVERY_MS, the first PRUNE_FIRST_MS after the start. */
#define PRUNE_EVERY_MS (3600 * 1000LL)
#define PRUNE_FIRST_MS (60 * 1000LL)

static struct {
	pthread_mutex_t mu;
	pthread_cond_t wake;
	int stop;                     /* atomic: also read by the jobs */
	int running;
	pthread_t thread;
	struct store_opts opts;
	struct store *st;             /* maintenance thread only */
	int64_t next_replay_ms, next_prune_ms;
} M = { .mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };

static int stopping(void)
{
	return __atomic_load_n(&M.stop, __ATOMIC_ACQUIRE);
}

/* The connection, opened when needed (NULL when the database cannot be opened now). */
static struct store *maint_db(void)
{
	if (M.st && store_file_moved(M.st)) {
		store_close(M.st);
		M.st = NULL;
	}
	if (!M.st) {
		char err[256];
		M.st = store_open(&M.opts, err, sizeof(err));
	}
	return M.st;
}

/* After a job failed: a connection that failed for good is dropped (a lock is only waited out). */
static void maint_failed(void)
{
	if (M.st && store_failed_for_good(M.st)) {
		store_close(M.st);
		M.st = NULL;
	}
}

static void run_replay(void)
{
	/* Cheap when there is nothing to import: no database is opened. Nothing while the database
	 * is known down: the writer's probe says when it answers again. */
	if (dbdown_is_down() || !reqlog_replay_pending(M.opts.jsonl_path) || !maint_db())
		return;
	struct replay_stats rs;
	if (reqlog_replay(M.st, M.opts.jsonl_path, &M.stop, &rs) < 0)
		maint_failed();
}

static void run_prune(void)
{
	if (dbdown_is_down()) {
		M.next_prune_ms = clock_wall_ms() + MAINT_REPLAY_CHECK_MS;   /* once it is back */
		return;
	}
	if (!maint_db())
		return;
	int64_t t0 = clock_mono_us();
	long long n = store_prune(M.st, clock_wall_ms() - M.opts.retention_days * 86400000LL, &M.stop);
	if (n < 0)
		maint_failed();
	else if (n > 0)
		log_info(NULL, "retention: %lld request-log row(s) older than %ld days deleted (%lld ms)",
			 n, M.opts.retention_days, (long long)((clock_mono_us() - t0) / 1000));
}

static void *maint_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "llm-maint");
	pthread_mutex_lock(&M.mu);
	while (!stopping()) {
		int64_t now = clock_wall_ms();
		int replay = M.opts.jsonl_path && now >= M.next_replay_ms;
		int prune = M.opts.retention_days > 0 && now >= M.next_prune_ms;
		if (!replay && !prune) {
			int64_t next = M.opts.jsonl_path ? M.next_replay_ms : M.next_prune_ms;
			if (M.opts.retention_days > 0 && M.next_prune_ms < next)
				next = M.next_prune_ms;
			if (next - now > MAINT_REPLAY_CHECK_MS)
				next = now + MAINT_REPLAY_CHECK_MS;
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			int64_t ns = until.tv_nsec + (next - now) * 1000000LL;
			until.tv_sec += ns / 1000000000LL;
			until.tv_nsec = ns % 1000000000LL;
			pthread_cond_timedwait(&M.wake, &M.mu, &until);
			continue;
		}
		pthread_mutex_unlock(&M.mu);
		if (replay) {
			M.next_replay_ms = now + MAINT_REPLAY_CHECK_MS;
			run_replay();
		}
		if (prune && !stopping()) {
			M.next_prune_ms = now + PRUNE_EVERY_MS;
			run_prune();
		}
		pthread_mutex_lock(&M.mu);
	}
	pthread_mutex_unlock(&M.mu);
	store_close(M.st);
	M.st = NULL;
	return NULL;
}

int maint_start(const struct store_opts *o)
{
	if (!o->jsonl_path && o->retention_days <= 0)
		return 0;
	/* The same creation rule as every connection of the router (a removed database is never
	 * replaced by an empty one); its own connection checkpoints itself. */
	store_opts_copy(&M.opts, o);
	M.opts.checkpoint_pages = 0;
	M.next_replay_ms = 0;
	M.next_prune_ms = clock_wall_ms() + PRUNE_FIRST_MS;
	M.stop = 0;
	if (pthread_create(&M.thread, NULL, maint_main, NULL) != 0) {
		store_opts_free(&M.opts);
		return -1;
	}
	M.running = 1;
	return 0;
}

void maint_stop(void)
{
	if (!M.running)
		return;
	pthread_mutex_lock(&M.mu);
	__atomic_store_n(&M.stop, 1, __ATOMIC_RELEASE);
	pthread_cond_signal(&M.wake);
	pthread_mutex_unlock(&M.mu);
	pthread_join(M.thread, NULL);
	M.running = 0;
	store_opts_free(&M.opts);
}
