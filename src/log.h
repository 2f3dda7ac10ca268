/* log.h - the router's one log function: one line per event on stderr (the web server's error log).
 *
 * Each line is "<UTC time> llm-router[<pid>] <level> [<request id>] <message>" and is written with a
 * single write(2), so lines of concurrent threads and processes never interleave. Usage records
 * go to SQLite, not here. Never pass a secret (API key, Authorization header) to these functions.
 */
#ifndef ROUTER_LOG_H
#define ROUTER_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
/* Parses "debug", "info", "warn" or "error"; returns -1 for anything else. */
int log_level_parse(const char *s, enum log_level *out);
/* req_id may be NULL for process-level events. */
void log_msg(enum log_level level, const char *req_id, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Copies the n bytes of src into out (outsz bytes, always NUL-terminated) with every control
 * character escaped: C0 bytes and DEL as "\xNN", the C1 controls U+0080..U+009F, the line and
 * paragraph separators U+2028/U+2029 and the bidirectional controls as "\uNNNN", and a byte that
 * does not start valid UTF-8 as "\xNN". Other UTF-8 is copied as is. Stops before an escape or a
 * character that would not fit. Returns the length written. */
size_t log_escape(char *out, size_t outsz, const char *src, size_t n);

#define log_debug(id, ...) log_msg(LOG_DEBUG, id, __VA_ARGS__)
#define log_info(id, ...) log_msg(LOG_INFO, id, __VA_ARGS__)
#define log_warn(id, ...) log_msg(LOG_WARN, id, __VA_ARGS__)
#define log_error(id, ...) log_msg(LOG_ERROR, id, __VA_ARGS__)

#endif
