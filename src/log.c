/* log.c - single-line, single-write logging to stderr (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static int log_threshold = LOG_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_set_level(enum log_level level)
{
	__atomic_store_n(&log_threshold, (int)level, __ATOMIC_RELAXED);
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

void log_msg(enum log_level level, const char *req_id, const char *fmt, ...)
{
	if ((int)level < __atomic_load_n(&log_threshold, __ATOMIC_RELAXED))
		return;
	char line[2048];
	int64_t ms = clock_wall_ms();
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	int n = snprintf(line, sizeof(line),
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ llm-router[%ld] %s %s%s%s", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000),
			 (long)getpid(), level_names[level], req_id ? "[" : "", req_id ? req_id : "",
			 req_id ? "] " : "");
	if (n < 0)
		return;
	size_t used = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + used, sizeof(line) - used, fmt, ap);
	va_end(ap);
	if (m > 0)
		used += (size_t)m < sizeof(line) - used ? (size_t)m : sizeof(line) - used - 1;
	/* One event, one line: fold embedded newlines so a message cannot forge another entry. */
	for (size_t i = 0; i < used; i++) {
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	}
	if (used >= sizeof(line) - 1)
		used = sizeof(line) - 2;
	line[used++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, used);
	(void)w;
}
