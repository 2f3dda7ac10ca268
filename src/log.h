/* log.h - the router's one log function: one line per event on stderr (the web server's error log).
 *
 * Each line is "<UTC time> llm-router[<pid>] <level> [<request id>] <message>" and is written with a
 * single write(2), so lines of concurrent threads and processes never interleave. Usage records
 * go to SQLite, not here. Never pass a secret (API key, Authorization header) to these functions.
 */
#ifndef ROUTER_LOG_H
#define ROUTER_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
/* Parses "debug", "info", "warn" or "error"; returns -1 for anything else. */
int log_level_parse(const char *s, enum log_level *out);
/* req_id may be NULL for process-level events. */
void log_msg(enum log_level level, const char *req_id, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_debug(id, ...) log_msg(LOG_DEBUG, id, __VA_ARGS__)
#define log_info(id, ...) log_msg(LOG_INFO, id, __VA_ARGS__)
#define log_warn(id, ...) log_msg(LOG_WARN, id, __VA_ARGS__)
#define log_error(id, ...) log_msg(LOG_ERROR, id, __VA_ARGS__)

#endif
