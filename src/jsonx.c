/* jsonx.c - small jansson helpers (see jsonx.h). */
#include "jsonx.h"

static int dump_cb(const char *p, size_t n, void *ud)
{
	return buf_append(ud, p, n);
}

int json_to_buf(const json_t *j, struct buf *out)
{
	return json_dump_callback(j, dump_cb, out, JSON_COMPACT);
}

const char *json_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}
