/* respx_frames.c - the relay's chat stream frames as the Responses API's event frames (pure): what
 * attempt.c writes to a POST /v1/responses client, and what the fixture tests replay. */
#include "respx.h"

#include <stdio.h>
#include <string.h>

#include "jsonx.h"

/* The relay's error frame ({"error": {...}}) as the error respx_stream_fail reports; the strings
 * point into env. */
static void error_from_envelope(const json_t *env, struct rerr *e)
{
	rerr_clear(e);
	const char *type = json_string_value(json_object_get(env, "type"));
	const char *code = json_string_value(json_object_get(env, "code"));
	const char *msg = json_string_value(json_object_get(env, "message"));
	e->status = type && strcmp(type, "rate_limit_error") == 0 ? 429 : 500;
	e->type = type ? type : "server_error";
	e->code = code;
	snprintf(e->message, sizeof(e->message), "%s", msg ? msg : "the upstream failed");
}

/* One data frame's events. Returns 1 when it ended the stream. */
static int data_frame(struct respx_stream *s, const char *d, size_t dl, json_t *events)
{
	if (dl == 6 && memcmp(d, "[DONE]", 6) == 0) {
		respx_stream_end(s, events);
		return 1;
	}
	json_error_t je;
	json_t *c = json_loadb(d, dl, 0, &je);
	const json_t *env = json_object_get(c, "error");
	int end = 0;
	if (json_is_object(env)) {
		struct rerr e;
		error_from_envelope(env, &e);
		respx_stream_fail(s, &e, events);
		end = 1;
	} else if (json_is_object(c)) {
		respx_stream_chunk(s, c, events);
	}
	json_decref(c);
	return end;
}

int respx_frames(struct respx_stream *s, const char *p, size_t n, int *done, struct buf *out)
{
	json_t *events = json_array();
	int was_done = *done;
	for (const char *end = p + n; p < end;) {
		const char *nl = memmem(p, (size_t)(end - p), "\n\n", 2);
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (len > 6 && memcmp(p, "data: ", 6) == 0 && !*done)
			*done = data_frame(s, p + 6, len - 6, events);
		else if (len && p[0] == ':' && buf_append(out, p, len) == 0)
			buf_puts(out, "\n\n");           /* a comment (keep-alive) passes */
		p = nl ? nl + 2 : end;
	}
	if (!*done && respx_stream_finished(s))
		*done = 1;              /* a chunk it could not keep whole failed the stream */
	size_t i;
	json_t *ev;
	json_array_foreach(events, i, ev)
	{
		buf_printf(out, "event: %s\ndata: ", json_string_value(json_object_get(ev, "type")));
		json_to_buf(ev, out);
		buf_puts(out, "\n\n");
	}
	json_decref(events);
	return *done && !was_done;
}
