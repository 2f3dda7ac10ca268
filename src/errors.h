/* errors.h - errors as values: an HTTP status, an OpenAI error type/code/param and a message.
 *
 * A function that can fail returns -1 (or NULL) and fills a caller-owned struct rerr. Exactly one
 * place (errors_envelope) turns it into the OpenAI error envelope
 * {"error":{"message","type","param","code"}}, so every failure the router reports has the same
 * shape. Types and codes are static strings; the message is copied into the struct.
 */
#ifndef ROUTER_ERRORS_H
#define ROUTER_ERRORS_H

#include <jansson.h>
#include <stddef.h>

struct rerr {
	int status;           /* HTTP status to answer with; 0 = no error recorded */
	const char *type;     /* OpenAI error type, e.g. "invalid_request_error" */
	const char *code;     /* e.g. "model_not_found"; NULL for none */
	char param[96];       /* offending parameter, "" for none */
	char message[768];
	long retry_after;     /* seconds for a Retry-After header; 0 = none */
	int should_retry;     /* x-should-retry: 1 true, 0 false, -1 not sent */
};

void rerr_clear(struct rerr *e);
/* Sets every field; param may be NULL. Returns -1 so callers can `return rerr_set(...)`. */
int rerr_set(struct rerr *e, int status, const char *type, const char *code, const char *param,
	     const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Shorthands for the common client errors. */
int rerr_invalid(struct rerr *e, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* 503 server_error / server_busy with Retry-After: 1: the calls in flight of the process hold
 * server.call_memory_mb (cap_mb) and this call cannot have its share now. Returns -1. */
int rerr_server_busy(struct rerr *e, size_t cap_mb);

/* New reference to {"error":{...}}. */
json_t *rerr_envelope(const struct rerr *e);
/* Reason phrase for a status line ("Not Found"). */
const char *http_reason(int status);

#endif
