/* alerts.c - budget alerts (see alerts.h). */
#include "alerts.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "upstream.h"
#include "util.h"

#define QUEUE_MAX 256
#define ATTEMPTS 4

struct item {
	char *url;
	char *body;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct item queue[QUEUE_MAX];
static size_t q_head, q_len;
static int busy;
static int started;

static void *sender_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		while (!q_len)
			pthread_cond_wait(&cond, &mu);
		struct item it = queue[q_head];
		q_head = (q_head + 1) % QUEUE_MAX;
		q_len--;
		busy = 1;
		pthread_mutex_unlock(&mu);
		long status = 0;
		char err[256] = "";
		for (int a = 0; a < ATTEMPTS; a++) {
			if (a) {
				struct timespec ts = { .tv_sec = 1L << (a - 1), .tv_nsec = 0 };
				nanosleep(&ts, NULL);
			}
			if (upstream_post_json(it.url, it.body, 5000, &status, err, sizeof(err)) == 0 &&
			    status >= 200 && status < 300)
				break;
			if (a == ATTEMPTS - 1)
				log_error(NULL, "budget alert webhook failed after %d attempts: %s", ATTEMPTS,
					  err[0] ? err : "non-2xx answer");
		}
		free(it.url);
		free(it.body);
		pthread_mutex_lock(&mu);
		busy = 0;
		pthread_cond_broadcast(&cond);
	}
	return NULL;
}

void alerts_budget(const struct config *cfg, const char *day, const char *scope, int64_t level,
		   int64_t spent_nusd, int64_t budget_nusd, const char *request_id)
{
	log_warn(request_id, "budget alert: %s reached %lld %% of its daily budget on %s: $%.4f of $%.2f%s",
		 scope, (long long)level, day, (double)spent_nusd / 1e9, (double)budget_nusd / 1e9,
		 level >= cfg->block_percent ? " (requests are refused until 00:00 UTC)" : "");
	if (!cfg->webhook_url || !cfg->webhook_url[0])
		return;
	json_t *o = json_object();
	json_object_set_new(o, "type", json_string("budget_alert"));
	json_object_set_new(o, "level_percent", json_integer(level));
	json_object_set_new(o, "scope", json_string(scope));
	json_object_set_new(o, "day", json_string(day));
	json_object_set_new(o, "spent_usd", json_real((double)spent_nusd / 1e9));
	json_object_set_new(o, "budget_usd", json_real((double)budget_nusd / 1e9));
	json_object_set_new(o, "ts_ms", json_integer(clock_wall_ms()));
	char *body = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	pthread_mutex_lock(&mu);
	if (!started) {
		pthread_t t;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		started = pthread_create(&t, &at, sender_main, NULL) == 0;
		pthread_attr_destroy(&at);
	}
	if (q_len == QUEUE_MAX || !started) {
		pthread_mutex_unlock(&mu);
		log_error(request_id, "budget alert webhook dropped: %s", started ? "queue full" : "no sender thread");
		free(body);
		return;
	}
	queue[(q_head + q_len) % QUEUE_MAX] = (struct item){ xstrdup(cfg->webhook_url), body };
	q_len++;
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&mu);
}

void alerts_flush(long timeout_ms)
{
	int64_t end = clock_mono_us() + (int64_t)timeout_ms * 1000;
	pthread_mutex_lock(&mu);
	while ((q_len || busy) && clock_mono_us() < end) {
		pthread_mutex_unlock(&mu);
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 20 * 1000000L };
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&mu);
	}
	pthread_mutex_unlock(&mu);
}
