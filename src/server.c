/* server.c - responder processes: worker threads, signals, reload; each request handed to routes.
 *
 * Threads of a FastCGI responder: N workers (server.threads) each looping accept -> handle ->
 * finish with their own libcurl handle (struct worker, reqctx.h); one signal thread that owns every
 * process signal (all other threads block them) and also polls the config file for changes; the
 * store's writer and WAL checkpointer (store.h), through which the workers commit their
 * request-log rows. SIGTERM, SIGINT and SIGUSR1 start a graceful stop: no new request is accepted
 * (the listening socket is shut down), requests in flight run to completion, then the process
 * exits 0. SIGHUP re-reads the configuration.
 *
 * Handling one request is reqctx_begin, routes_dispatch, reqctx_end: what happens in between
 * (answering, the request-log row) belongs to the handler and reqctx.c.
 */
#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fcgi_io.h"
#include "log.h"
#include "logwriter.h"
#include "reqctx.h"
#include "routes.h"
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
	routes_dispatch(&rc);
	if (rc.resp.status == 408)
		log_warn(rc.id, "the request body did not arrive within server.body_timeout_ms (%lld ms); "
			 "answered 408", rc.cfg ? (long long)rc.cfg->body_timeout_ms : 0LL);
	/* No flush here: finishing the request flushes the rest together with FastCGI's end record
	 * in one write (the CGI path flushes stdout itself). */
	reqctx_end(&rc);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
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
			handle_one(w, fcgi_conn_io(c));
			fcgi_conn_finish(c);
		}
	}
	fcgi_conn_free(c);
	upstream_free(w->up);
	store_close(w->st);
	store_close(w->reader);
	return NULL;
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

static void *signal_main(void *arg)
{
	(void)arg;
	sigset_t set;
	process_signals(&set);
	int64_t next_check = clock_mono_us();
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
			fcgi_io_shutdown_pending();
			/* Wakes the thread blocked in accept(); the others see the stop flag. */
			shutdown(g_listen_fd, SHUT_RDWR);
			break;
		} else if (sig < 0) {
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
	return NULL;
}

static void block_process_signals(sigset_t *old)
{
	sigset_t set;
	process_signals(&set);
	pthread_sigmask(SIG_BLOCK, &set, old);
}

int server_run_fastcgi(int listen_fd)
{
	g_listen_fd = listen_fd;
	signal(SIGPIPE, SIG_IGN);
	/* Before any thread exists: every thread inherits the mask, so only the signal thread ever
	 * sees these signals (libfcgi installed handlers for some of them). */
	sigset_t old;
	block_process_signals(&old);
	struct config *cfg = config_acquire();
	size_t nthreads = (size_t)cfg->threads;
	struct store_opts so;
	reqctx_store_opts(cfg, &so, 1);
	if (logwriter_start(&so) < 0) {
		log_error(NULL, "cannot start the database writer thread");
		return 1;
	}
	config_release(cfg);

	pthread_t sig_thread;
	if (pthread_create(&sig_thread, NULL, signal_main, NULL) != 0) {
		log_error(NULL, "cannot start the signal thread");
		return 1;
	}
	struct worker *workers = xcalloc(nthreads, sizeof(*workers));
	pthread_t *threads = xcalloc(nthreads, sizeof(*threads));
	size_t started = 0;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 2 * 1024 * 1024);
	for (size_t i = 0; i < nthreads; i++) {
		workers[i].index = (int)i;
		if (pthread_create(&threads[i], &attr, worker_main, &workers[i]) != 0) {
			log_error(NULL, "cannot start worker thread %zu", i);
			break;
		}
		started++;
	}
	pthread_attr_destroy(&attr);
	log_info(NULL, "FastCGI responder ready with %zu worker threads", started);
	for (size_t i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	__atomic_store_n(&g_stopping, 1, __ATOMIC_RELAXED);
	pthread_kill(sig_thread, SIGTERM);
	pthread_join(sig_thread, NULL);
	logwriter_stop();
	free(workers);
	free(threads);
	log_info(NULL, "responder stopped");
	return started ? 0 : 1;
}

int server_run_cgi(void)
{
	signal(SIGPIPE, SIG_IGN);
	struct worker w = { .index = 0 };
	w.up = upstream_new();
	if (!w.up)
		return 1;
	handle_one(&w, cgi_io());
	fflush(stdout);
	cgi_drain_body();
	/* No writer thread imports rows that went to the fallback file: the first request that finds
	 * the database working again does (cheap when there is no file; concurrent processes claim
	 * the file one at a time). */
	struct config *cfg = config_acquire();
	if (w.st && cfg && cfg->fallback_jsonl) {
		struct replay_stats rs;
		reqlog_replay(w.st, cfg->fallback_jsonl, &rs);
	}
	config_release(cfg);
	upstream_free(w.up);
	store_close(w.st);
	return 0;
}
