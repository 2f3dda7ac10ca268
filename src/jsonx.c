/* jsonx.c - small jansson helpers (see jsonx.h).
 *
 * json_to_buf serialises straight into a struct buf and keeps its contract: the limit is never
 * crossed, and an append that fails leaves the buffer exactly as it was (a partial text written
 * before the limit stopped it is taken back). Pure functions, no state.
 */
#include "jsonx.h"

static int dump_cb(const char *p, size_t n, void *ud)
{
	return buf_append(ud, p, n);
}

int json_to_buf(const json_t *j, struct buf *out)
{
	size_t len = out->len;
	/* One pass into spare room when it fits (most chunks): json_dumpb returns the size needed. */
	size_t room = out->cap > len + 1 ? out->cap - len - 1 : 0;
	if (room >= 64) {
		size_t n = json_dumpb(j, out->p + len, room, JSON_COMPACT);
		if (n > 0 && n <= room && n <= out->max - len) {
			out->len += n;
			out->p[out->len] = '\0';
			return 0;
		}
		/* Only the spare room past the NUL was written: restore the NUL. */
		out->p[len] = '\0';
	}
	if (json_dump_callback(j, dump_cb, out, JSON_COMPACT) == 0)
		return 0;
	/* The callback may have appended part of the text before the limit stopped it: drop it, so
	 * that a failed call leaves out as it was (buf.h). */
	out->len = len;
	if (out->p)
		out->p[len] = '\0';
	return -1;
}

const char *json_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}
