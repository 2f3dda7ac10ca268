/* server.c - responder processes: worker threads, signals, reload; each request handed to routes.
 *
 * Threads of a FastCGI responder: a pool of workers, server.threads of them always waiting to accept
 * and more while requests hold them (up to server.max_threads; see "The worker pool" below), each
 * looping accept -> handle -> finish with its own libcurl handle (struct worker, reqctx.h); one
 * signal thread that owns every process signal (all other threads block them) and also polls the
 * config file for changes; the store's writer and WAL checkpointer (store.h), through which the
 * workers commit their request-log rows; the budget alert sender (alerts.h), joined before the
 * process cleans up libcurl. SIGTERM, SIGINT and SIGUSR1 start a graceful stop: no new request is accepted
 * (the listening socket is shut down), requests in flight run to completion, then the process
 * exits 0. SIGHUP re-reads the configuration.
 *
 * Handling one request is reqctx_begin, routes_dispatch, reqctx_end: what happens in between
 * (answering, the request-log row) belongs to the handler and reqctx.c. A plain CGI process
 * closes its response before any background work (server_run_cgi).
 */
#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alerts.h"
#include "dbdown.h"
#include "fcgi_io.h"
#include "keys.h"
#include "log.h"
#include "logwriter.h"
#include "maint.h"
#include "reqctx.h"
#include "routes.h"
#include "rowkeep.h"
#include "store.h"
#include "upstream.h"
#include "util.h"

static int g_listen_fd = -1;
static int g_stopping;

static void handle_one(struct worker *w, const struct http_io *io)
{
	struct request_ctx rc;
	reqctx_begin(&rc, w, io);
	/* The body must arrive within server.body_timeout_ms of the request's start, whatever the
	 * web server in front does (mod_proxy_fcgi passes a slow upload on as it comes). */
	if (io->set_read_deadline && rc.cfg)
		io->set_read_deadline(io->ctx, rc.t0_us + rc.cfg->body_timeout_ms * 1000);
	/* The answer must be taken by then: the body's time, every attempt's (upstream.deadline_ms)
	 * and a stream's longest silence once more for the client to read the end. */
	if (io->set_write_deadline && rc.cfg)
		io->set_write_deadline(io->ctx, rc.t0_us + (rc.cfg->body_timeout_ms + rc.cfg->deadline_ms +
							   rc.cfg->stream_idle_timeout_ms) * 1000);
	routes_dispatch(&rc);
	if (rc.resp.status == 408)
		log_warn(rc.id, "the request body did not arrive within server.body_timeout_ms (%lld ms); "
			 "answered 408", rc.cfg ? (long long)rc.cfg->body_timeout_ms : 0LL);
	/* No flush here: finishing the request flushes the rest together with FastCGI's end record
	 * in one write (the CGI path flushes stdout itself). */
	reqctx_end(&rc);
}

/* The worker pool. server.threads workers always wait to accept; when a worker takes a request
 * and none is left waiting, one more starts (up to server.max_threads), so requests that hold a
 * worker for long (a silent upstream until its timeout_ms, a long stream) never keep the next
 * request in the socket's backlog. A worker that finishes a request while the pool is above
 * server.threads and server.threads others are waiting exits, so the pool shrinks back as the
 * load goes, without a thread ending and another starting per request under a steady load.
 * With server.threads = 1 (mod_fcgid, which sends a process one request at a time) the pool never
 * grows: no second request would come while the first runs. Every worker is joined: an exited
 * one by the next worker start or at the end of server_run_fastcgi. */
#define POOL_CAP 1024 /* the largest server.max_threads */
/* Slots for the live workers and for those still leaving (a worker that exits keeps its slot until
 * it is joined): at server.max_threads live, a slot held by one on its way out must not stop the
 * next start, or a request would wait in the backlog for a thread the pool is allowed to have. */
#define POOL_SLOTS (2 * POOL_CAP)

enum slot_state { SLOT_FREE, SLOT_LIVE, SLOT_DONE };

struct pool_slot {
	pthread_t thread;
	struct worker w;
	enum slot_state state;
};

/* What a leaving worker still counts as: waiting to accept, or already not live. */
enum worker_count { AS_IDLE, AS_GONE };

static struct {
	pthread_mutex_t mu;
	pthread_cond_t gone;         /* a worker left */
	struct pool_slot *slots;     /* POOL_SLOTS */
	pthread_attr_t attr;
	size_t base;                 /* server.threads */
	size_t live;                 /* workers running */
	size_t idle;                 /* of those, waiting to accept */
	size_t running;              /* threads started and not yet done (live ones and leaving ones) */
	size_t done;                 /* slots of exited workers not joined yet */
	int64_t full_said_us;        /* when "all max_threads busy" may be logged again */
	int64_t grew_us;             /* when the last worker beyond server.threads was started */
} pool = { .mu = PTHREAD_MUTEX_INITIALIZER, .gone = PTHREAD_COND_INITIALIZER };

static void *worker_main(void *arg);

static void pool_reap_locked(void)
{
	for (size_t i = 0; pool.done && i < POOL_SLOTS; i++) {
		if (pool.slots[i].state == SLOT_DONE) {
			/* It set SLOT_DONE as its last act under the mutex: the join does not wait. */
			pthread_join(pool.slots[i].thread, NULL);
			pool.slots[i].state = SLOT_FREE;
			pool.done--;
		}
	}
}

/* Starts one more worker, counted as waiting to accept. Returns 0, or -1. */
static int pool_start_locked(void)
{
	pool_reap_locked();
	for (size_t i = 0; i < POOL_SLOTS; i++) {
		struct pool_slot *s = &pool.slots[i];
		if (s->state != SLOT_FREE)
			continue;
		memset(&s->w, 0, sizeof(s->w));
		s->w.index = (int)i;
		int e = pthread_create(&s->thread, &pool.attr, worker_main, s);
		if (e != 0) {
			errno = e;
			return -1;
		}
		s->state = SLOT_LIVE;
		pool.running++;
		pool.live++;
		pool.idle++;
		return 0;
	}
	errno = EAGAIN; /* every slot holds a thread, some of them leaving */
	return -1;
}

/* A worker accepted a request: if none is left waiting, start one. */
static void pool_took_request(void)
{
	pthread_mutex_lock(&pool.mu);
	pool.idle--;
	if (pool.idle == 0 && pool.base > 1 && !__atomic_load_n(&g_stopping, __ATOMIC_RELAXED)) {
		struct config *cfg = config_acquire();
		size_t max = cfg ? (size_t)cfg->max_threads : pool.base;
		config_release(cfg);
		if (max < pool.base)
			max = pool.base;
		if (pool.live < max) {
			pool.grew_us = clock_mono_us();
			if (pool_start_locked() < 0)
				log_error(NULL, "cannot start worker thread %zu (%s)", pool.live + 1, strerror(errno));
		} else if (clock_mono_us() >= pool.full_said_us) {
			pool.full_said_us = clock_mono_us() + 60 * 1000000LL;
			log_warn(NULL, "all %zu worker threads (server.max_threads) are busy; new requests wait "
				 "for one to finish (said at most once a minute)", pool.live);
		}
	}
	pthread_mutex_unlock(&pool.mu);
}

/* A worker finished a request. Returns 1 when it should exit (the pool is above server.threads,
 * at least server.threads workers, plus an eighth of those above it, are already waiting, and
 * the pool has not had to grow for POOL_SHRINK_AFTER_US), and then no longer counts it as live.
 * Under a steady load a few workers wait at a time, so a grown pool keeps its threads (and their
 * connections) instead of ending and starting one per request: with a thousand calls in flight,
 * calls that end together leave dozens waiting for a moment, and without the eighth each of those
 * would exit and be started again at once (measured with 1,024 streams in flight in one process:
 * 264 calls/s with the churn, 323 without). Many short calls at once on one core (64 connections
 * to a fast upstream) leave workers waiting and short by turns, many times a second: without the
 * wait since the last growth, 700 workers a second ended and started again (3,400 calls/s). */
#define POOL_SHRINK_AFTER_US (1 * 1000000LL)
static int pool_finished_request(void)
{
	pthread_mutex_lock(&pool.mu);
	int leave = pool.live > pool.base && pool.idle >= pool.base + (pool.live - pool.base) / 8 &&
		    clock_mono_us() - pool.grew_us >= POOL_SHRINK_AFTER_US;
	if (leave)
		pool.live--;
	else
		pool.idle++;
	pool_reap_locked();
	pthread_mutex_unlock(&pool.mu);
	return leave;
}

static void pool_leave(struct pool_slot *s, enum worker_count as)
{
	pthread_mutex_lock(&pool.mu);
	if (as == AS_IDLE) {
		pool.idle--;
		pool.live--;
	}
	s->state = SLOT_DONE;
	pool.running--;
	pool.done++;
	pthread_cond_broadcast(&pool.gone);
	pthread_mutex_unlock(&pool.mu);
}

static void *worker_main(void *arg)
{
	struct pool_slot *s = arg;
	struct worker *w = &s->w;
	enum worker_count as = AS_IDLE;
	/* Request workers show as "llm-worker" in ps -L and /proc/PID/task/x/comm; every other thread
	 * but the main one has a name of its own too (README "Threads of a responder"). */
	pthread_setname_np(pthread_self(), "llm-worker");
	w->up = upstream_new();
	struct fcgi_conn *c = fcgi_conn_new(g_listen_fd);
	if (!w->up) {
		log_error(NULL, "worker %d: cannot create a libcurl handle", w->index);
	} else {
		while (!__atomic_load_n(&g_stopping, __ATOMIC_RELAXED)) {
			if (fcgi_conn_accept(c) < 0) {
				if (!__atomic_load_n(&g_stopping, __ATOMIC_RELAXED))
					log_error(NULL, "worker %d: accept failed (%s); worker exits", w->index,
						  strerror(errno));
				break;
			}
			pool_took_request();
			handle_one(w, fcgi_conn_io(c));
			fcgi_conn_finish(c);
			if (pool_finished_request()) {
				as = AS_GONE;
				break;
			}
		}
	}
	fcgi_conn_free(c);
	upstream_free(w->up);
	reqctx_worker_done(w);
	pool_leave(s, as);
	return NULL;
}

/* Starts the server.threads workers; returns how many started. */
static size_t pool_start(size_t nthreads)
{
	pool.slots = xcalloc(POOL_SLOTS, sizeof(*pool.slots));
	pthread_attr_init(&pool.attr);
	pthread_attr_setstacksize(&pool.attr, 2 * 1024 * 1024);
	pthread_mutex_lock(&pool.mu);
	pool.base = nthreads;
	for (size_t i = 0; i < nthreads; i++) {
		if (pool_start_locked() < 0) {
			log_error(NULL, "cannot start worker thread %zu (%s)", i, strerror(errno));
			break;
		}
	}
	size_t started = pool.live;
	pthread_mutex_unlock(&pool.mu);
	return started;
}

/* Waits until every worker has left (they do after the stop flag), and joins them. */
static void pool_wait(void)
{
	pthread_mutex_lock(&pool.mu);
	while (pool.running > 0)
		pthread_cond_wait(&pool.gone, &pool.mu);
	pool_reap_locked();
	pthread_mutex_unlock(&pool.mu);
	pthread_attr_destroy(&pool.attr);
	free(pool.slots);
	pool.slots = NULL;
}

/* The signals only the signal thread receives. */
static void process_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGUSR1);
	sigaddset(set, SIGHUP);
}

/* The signal thread's connection for refreshing the key cache while the process is idle, so that
 * every responder knows the keys (and revocations) when the database goes away (keys.h). */
static struct {
	struct store *st;
	int64_t retry_us;
} idle_keys;

static void idle_keys_refresh(void)
{
	struct config *cfg = config_acquire();
	if (!cfg || strcmp(cfg->auth_mode, "key") != 0)
		goto out;
	if (idle_keys.st && store_file_moved(idle_keys.st)) {
		store_close(idle_keys.st);
		idle_keys.st = NULL;
	}
	if (!idle_keys.st && clock_mono_us() >= idle_keys.retry_us) {
		struct store_opts o;
		reqctx_store_opts(cfg, &o, 0);
		char err[512];
		idle_keys.st = store_open(&o, err, sizeof(err));
		if (!idle_keys.st)
			idle_keys.retry_us = clock_mono_us() + 5000000;
	}
	if (key_cache_refresh(key_cache_global(cfg->db_path), idle_keys.st) == 0 && idle_keys.st) {
		/* A connection that cannot read (a replaced file, corruption) is opened anew later. */
		store_close(idle_keys.st);
		idle_keys.st = NULL;
		idle_keys.retry_us = clock_mono_us() + 5000000;
	}
out:
	config_release(cfg);
}

static void *signal_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "llm-signal");
	sigset_t set;
	process_signals(&set);
	int64_t next_check = clock_mono_us();
	idle_keys_refresh();
	for (;;) {
		struct timespec ts = { 1, 0 };
		int sig = sigtimedwait(&set, NULL, &ts);
		if (__atomic_load_n(&g_stopping, __ATOMIC_RELAXED))
			break;
		if (sig == SIGHUP) {
			log_info(NULL, "SIGHUP: reloading the configuration");
			config_reload(1);
		} else if (sig == SIGTERM || sig == SIGINT || sig == SIGUSR1) {
			log_info(NULL, "signal %d: finishing requests in flight, then exiting", sig);
			__atomic_store_n(&g_stopping, 1, __ATOMIC_RELAXED);
			/* Workers waiting in accept() see it within the listening socket's timeout (1 s,
			 * fcgi_io.c). The socket itself is left alone: processes started together on one
			 * socket (spawn-fcgi -F N) go on serving. */
			fcgi_io_shutdown_pending();
			break;
		} else if (sig < 0) {
			idle_keys_refresh();
			struct config *cfg = config_acquire();
			int64_t every = cfg ? cfg->reload_interval_s : 0;
			config_release(cfg);
			int64_t now = clock_mono_us();
			if (every > 0 && now >= next_check) {
				next_check = now + every * 1000000;
				config_reload(0);
			}
		}
	}
	store_close(idle_keys.st);
	idle_keys.st = NULL;
	return NULL;
}

static void block_process_signals(sigset_t *old)
{
	sigset_t set;
	process_signals(&set);
	pthread_sigmask(SIG_BLOCK, &set, old);
}

/* mod_fcgid spawned this process: it hands the process its listening socket on stdin like
 * lighttpd does, but sends it one request at a time, and its process manager - our parent - is an
 * Apache process (a shared host's .htaccess cannot set LLM_ROUTER_THREADS for it). */
static int spawned_by_apache(void)
{
	char comm[32] = "";
	char *path = xasprintf("/proc/%ld/comm", (long)getppid());
	FILE *f = fopen(path, "re");
	free(path);
	if (!f)
		return 0;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	comm[strcspn(comm, "\n")] = '\0';
	return strcmp(comm, "apache2") == 0 || strcmp(comm, "httpd") == 0 ||
	       strcmp(comm, "apache") == 0;
}

/* The worker count: server.threads (or LLM_ROUTER_THREADS), but one when mod_fcgid spawned the
 * process and LLM_ROUTER_THREADS says nothing. */
static size_t worker_count(const struct config *cfg, int listen_fd)
{
	if (listen_fd == 0 && !config_getenv(cfg, "LLM_ROUTER_THREADS") && spawned_by_apache()) {
		log_info(NULL, "spawned by Apache (mod_fcgid sends one request at a time): one worker "
			 "thread (LLM_ROUTER_THREADS overrides)");
		return 1;
	}
	return (size_t)cfg->threads;
}

int server_run_fastcgi(int listen_fd)
{
	g_listen_fd = listen_fd;
	fcgi_io_prepare_listener(listen_fd);
	signal(SIGPIPE, SIG_IGN);
	/* Before any thread exists: every thread inherits the mask, so only the signal thread ever
	 * sees these signals (libfcgi installed handlers for some of them). */
	sigset_t old;
	block_process_signals(&old);
	struct config *cfg = config_acquire();
	size_t nthreads = worker_count(cfg, listen_fd);
	struct store_opts so;
	reqctx_store_opts(cfg, &so, 1);
	if (logwriter_start(&so) < 0) {
		log_error(NULL, "cannot start the database writer thread");
		return 1;
	}
	if (maint_start(&so) < 0)
		log_warn(NULL, "cannot start the maintenance thread (replay and prune with the command-line tool)");

	struct store_opts direct;
	reqctx_store_opts(cfg, &direct, 0);
	if (alerts_start(&direct) < 0)
		log_warn(NULL, "cannot start the budget alert sender thread (alerts wait in the outbox)");
	config_release(cfg);

	pthread_t sig_thread;
	if (pthread_create(&sig_thread, NULL, signal_main, NULL) != 0) {
		log_error(NULL, "cannot start the signal thread");
		alerts_stop();
		logwriter_stop();
		return 1;
	}
	size_t started = pool_start(nthreads);
	log_info(NULL, "FastCGI responder ready with %zu worker threads", started);
	pool_wait();
	__atomic_store_n(&g_stopping, 1, __ATOMIC_RELAXED);
	pthread_kill(sig_thread, SIGTERM);
	pthread_join(sig_thread, NULL);
	alerts_stop();
	maint_stop();
	logwriter_stop();
	reqctx_readers_close();
	log_info(NULL, "responder stopped");
	return started ? 0 : 1;
}

/* The web server ends a CGI program that outlives its response (mod_cgid and mod_cgi send
 * SIGTERM when the request is over, SIGKILL 3 s later): background work runs in a child of a
 * session of its own. Returns 1 in the parent (which exits), 0 in the child, or when there is no
 * child (the work is then done here, as far as it gets). */
static int cgi_detach(void)
{
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		log_warn(NULL, "cannot fork for background work (%s): doing it before exiting", strerror(errno));
		return 0;
	}
	if (pid > 0)
		return 1;
	setsid();
	return 0;
}

/* How long a CGI process's background sending of alerts may take in all. */
#define CGI_ALERTS_MS 30000

int server_run_cgi(void)
{
	signal(SIGPIPE, SIG_IGN);
	struct worker w = { .index = 0 };
	w.up = upstream_new();
	if (!w.up)
		return 1;
	struct config *c0 = config_acquire();
	dbdown_set_marker(c0 ? c0->db_path : NULL);
	config_release(c0);
	handle_one(&w, cgi_io());
	fflush(stdout);
	cgi_drain_body();
	/* The response is complete (its row committed): the web server ends it now, and whatever
	 * else this process does no client waits for. */
	cgi_close_response();
	/* No writer thread imports rows that went to the fallback file, nor sends the alert outbox:
	 * the first request that finds the database working again does (concurrent processes claim
	 * the file, and each alert, one at a time). */
	struct config *cfg = config_acquire();
	const char *hook = cfg ? cfg->webhook_url : NULL;
	struct store_opts o;
	memset(&o, 0, sizeof(o));
	if (cfg)
		reqctx_store_opts(cfg, &o, 0);
	int replay = w.st && cfg && cfg->fallback_jsonl && !dbdown_is_down() &&
		     reqlog_replay_pending(cfg->fallback_jsonl);
	int alerts = 0;
	if (hook && hook[0]) {
		/* An alert left by another process, or due for a retry, is sent by whichever comes next
		 * (a request that did not open the database opens it for this). */
		char err[512];
		struct store *st = w.st ? w.st : store_open(&o, err, sizeof(err));
		alerts = alerts_due(st);
		if (st != w.st)
			store_close(st);
	}
	upstream_free(w.up);
	w.up = NULL;
	upstream_shutdown(); /* no thread is carried across fork */
	store_close(w.st);   /* no connection is carried across fork */
	w.st = NULL;
	rowkeep_dump();      /* a row nothing took: in the error log, before anything else */
	if ((replay || alerts) && cgi_detach() == 0) {
		char err[512];
		struct store *st = store_open(&o, err, sizeof(err));
		if (st && replay) {
			struct replay_stats rs;
			reqlog_replay(st, cfg->fallback_jsonl, NULL, &rs);
		}
		if (st && alerts)
			alerts_drain(st, hook, clock_mono_us() + CGI_ALERTS_MS * 1000LL, NULL);
		store_close(st);
	}
	config_release(cfg);
	dbdown_set_marker(NULL);
	return 0;
}
