/* jsonx.c - small jansson helpers (see jsonx.h). */
#include "jsonx.h"

static int dump_cb(const char *p, size_t n, void *ud)
{
	return buf_append(ud, p, n);
}

int json_to_buf(const json_t *j, struct buf *out)
{
	/* One pass into spare room when it fits (most chunks): json_dumpb returns the size needed. */
	size_t room = out->cap > out->len + 1 ? out->cap - out->len - 1 : 0;
	if (room >= 64) {
		size_t n = json_dumpb(j, out->p + out->len, room, JSON_COMPACT);
		if (n > 0 && n <= room && n <= out->max - out->len) {
			out->len += n;
			out->p[out->len] = '\0';
			return 0;
		}
		if (out->p)
			out->p[out->len] = '\0';
	}
	return json_dump_callback(j, dump_cb, out, JSON_COMPACT);
}

const char *json_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}
