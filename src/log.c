/* log.c - single-line, single-write logging to stderr (see log.h), and the one escaper of control
 * characters that log lines and response headers share (log_escape). */
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

/* Line separators and the bidirectional controls that reorder what a terminal shows. */
static int unicode_control(long cp)
{
	return (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
	       (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

size_t log_escape(char *out, size_t outsz, const char *src, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)src;
	size_t o = 0;
	if (!outsz)
		return 0;
	for (size_t i = 0; i < n;) {
		char esc[8];
		size_t elen = 0, take = 1;
		const char *copy = (const char *)p + i;
		if (p[i] < 0x20 || p[i] == 0x7F) {
			esc[0] = '\\', esc[1] = 'x', esc[2] = hex[p[i] >> 4], esc[3] = hex[p[i] & 15];
			elen = 4;
		} else if (p[i] >= 0x80) {
			long cp = utf8_decode(p + i, n - i, &take);
			if (cp < 0) {
				take = 1;
				esc[0] = '\\', esc[1] = 'x', esc[2] = hex[p[i] >> 4], esc[3] = hex[p[i] & 15];
				elen = 4;
			} else if (unicode_control(cp)) {
				esc[0] = '\\', esc[1] = 'u';
				for (int k = 0; k < 4; k++)
					esc[2 + k] = hex[(cp >> (12 - 4 * k)) & 15];
				elen = 6;
			}
		}
		if (elen)
			copy = esc;
		else
			elen = take;
		if (o + elen >= outsz)
			break;  /* never half an escape or half a character */
		memcpy(out + o, copy, elen);
		o += elen;
		i += take;
	}
	out[o] = '\0';
	return o;
}

void log_msg(enum log_level level, const char *req_id, const char *fmt, ...)
{
	if ((int)level < __atomic_load_n(&log_threshold, __ATOMIC_RELAXED))
		return;
	char msg[2048];
	char line[4096];
	int64_t ms = clock_wall_ms();
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	int n = snprintf(line, sizeof(line),
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ llm-router[%ld] %s %s%.64s%s", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000),
			 (long)getpid(), level_names[level], req_id ? "[" : "", req_id ? req_id : "",
			 req_id ? "] " : "");
	if (n < 0 || (size_t)n >= sizeof(line) / 2)
		return;
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	size_t mlen = (size_t)m < sizeof(msg) ? (size_t)m : sizeof(msg) - 1;
	/* One event, one line: every control character of the message (line breaks, ESC, C1,
	 * U+2028/2029) is escaped, so a message cannot forge another entry or drive a terminal. */
	size_t used = (size_t)n + log_escape(line + n, sizeof(line) - (size_t)n - 1, msg, mlen);
	line[used++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, used);
	(void)w;
}
