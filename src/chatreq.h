/* chatreq.h - parsing and validation of a client's Chat Completions request (pure, no I/O). */
#ifndef ROUTER_CHATREQ_H
#define ROUTER_CHATREQ_H

#include <jansson.h>
#include <stddef.h>

#include "errors.h"

/* The longest model id and task type accepted, in bytes (longer ones get 400): both are stored
 * in every request-log row and echoed in response headers. */
#define CHATREQ_MAX_NAME_BYTES 256

/* What the router itself needs from a validated request; strings borrowed from the body. */
struct chatreq {
	const char *model;
	int stream;
	int include_usage;       /* stream_options.include_usage */
	const char *task;        /* metadata.task_type, NULL if absent */
};

/* Parses data as JSON and validates it. On success *body is a new reference the caller owns and
 * out points into it; on failure returns -1 with a 400 in err (413 when the parse would take too
 * much memory, 503 server_busy when the process's calls in flight hold server.call_memory_mb). */
int chatreq_parse(const char *data, size_t len, json_t **body, struct chatreq *out,
		  struct rerr *err);
/* A function (or schema) name as OpenAI takes it: 1 to 64 of [A-Za-z0-9_-]. */
int chatreq_valid_name(const char *s);
/* The JSON parse alone, bounded as chatreq_parse's (400 with `empty` for an empty body). */
int chatreq_load(const char *data, size_t len, const char *empty, json_t **out, struct rerr *err);
/* Validates an already parsed body. */
int chatreq_validate(const json_t *body, struct chatreq *out, struct rerr *err);

/* What a validated request needs of the model beyond plain text, as CAP_* bits (config.h):
 * CAP_TOOLS for tools or functions, CAP_IMAGES for an image_url part, CAP_JSON_OBJECT for
 * response_format json_object, CAP_JSON_SCHEMA for json_schema with strict true, and
 * NEED_JSON_LOOSE for json_schema without it (a json_object model can take that, the schema in
 * the prompt). */
#define NEED_JSON_LOOSE 16u
unsigned chatreq_needs(const json_t *body);
/* The needs a model with capabilities caps cannot honour; 0 when it honours them all. */
unsigned chatreq_missing(unsigned needs, unsigned caps);
/* The request parameter behind the lowest missing need, and (what) how to name it in a
 * message. */
const char *chatreq_need_param(unsigned missing, const char **what);

#endif
