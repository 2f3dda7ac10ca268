/* jsonx.h - small jansson helpers used across modules. */
#ifndef ROUTER_JSONX_H
#define ROUTER_JSONX_H

#include <jansson.h>

#include "buf.h"

/* Serialises j compactly, appending to out. Returns 0, or -1 if out's limit is hit (or j cannot
 * be serialised); out is then unchanged: same len, same content. */
int json_to_buf(const json_t *j, struct buf *out);
/* The string member `key` of obj, or NULL if absent or not a string. */
const char *json_str(const json_t *obj, const char *key);

#endif
