/* errors.c - error values and the OpenAI error envelope (see errors.h). */
#include "errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

void rerr_clear(struct rerr *e)
{
	memset(e, 0, sizeof(*e));
	e->should_retry = -1;
}

static void rerr_vset(struct rerr *e, int status, const char *type, const char *code,
		      const char *param, const char *fmt, va_list ap)
{
	e->status = status;
	e->type = type;
	e->code = code;
	snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	utf8_sanitize(e->message);
	utf8_sanitize(e->param);
}

int rerr_set(struct rerr *e, int status, const char *type, const char *code, const char *param,
	     const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	rerr_vset(e, status, type, code, param, fmt, ap);
	va_end(ap);
	return -1;
}

int rerr_invalid(struct rerr *e, const char *param, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	rerr_vset(e, 400, "invalid_request_error", NULL, param, fmt, ap);
	va_end(ap);
	return -1;
}

int rerr_server_busy(struct rerr *e, size_t cap_mb)
{
	rerr_set(e, 503, "server_error", "server_busy", NULL,
		 "The router is holding its limit of memory for calls in flight "
		 "(server.call_memory_mb = %zu MB); try again shortly.", cap_mb);
	e->retry_after = 1;
	e->should_retry = 1;
	return -1;
}

json_t *rerr_envelope(const struct rerr *e)
{
	json_t *err = json_object();
	json_object_set_new(err, "message", json_string(e->message));
	json_object_set_new(err, "type", json_string(e->type ? e->type : "server_error"));
	json_object_set_new(err, "param", e->param[0] ? json_string(e->param) : json_null());
	json_object_set_new(err, "code", e->code ? json_string(e->code) : json_null());
	json_t *env = json_object();
	json_object_set_new(env, "error", err);
	return env;
}

const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Unknown";
	}
}
