/* jsonx.h - small jansson helpers used across modules. */
#ifndef ROUTER_JSONX_H
#define ROUTER_JSONX_H

#include <jansson.h>

#include "buf.h"

/* Serialises j compactly, appending to out. Returns 0, or -1 if out's limit is hit (or j cannot
 * be serialised); out is then unchanged: same len, same content. */
int json_to_buf(const json_t *j, struct buf *out);
/* json_dumps, except that the text is the caller's to free() (json_dumps's is jansson's heap,
 * counted in the gauge of call memory: see jsonx_count_memory). NULL when j cannot be
 * serialised. */
char *jsonx_dumps(const json_t *j, size_t flags);
/* Hands jansson the allocation functions that count its heap in the gauge of call memory
 * (memgauge.h): on a thread that serves calls, every block until it is freed. Call once at process
 * start, before any other jansson function. */
void jsonx_count_memory(void);
/* The string member `key` of obj, or NULL if absent or not a string. */
const char *json_str(const json_t *obj, const char *key);
/* Member lookup that treats null as absent (OpenAI's rule for optional fields). */
const json_t *jsonx_opt(const json_t *obj, const char *key);
/* "an object", "a string", ... for messages that say what was sent instead. */
const char *jsonx_type_name(const json_t *v);

/* Parsing untrusted JSON under a memory bound. jansson spends ~45 bytes of heap on a 2-byte value
 * ("0,"), so a 60 MiB reply of [0,0,...] would take 1.35 GB. jsonx_loadb is json_loadb, except that
 * a document whose parse would cost more than jsonx_parse_ceiling(len) is refused before jansson
 * sees it: JSONX_PARSE_BASE plus JSONX_PARSE_FACTOR bytes per byte of text, which any document made
 * mostly of strings and ordinary numbers (chat bodies and replies) stays far under. The cost is
 * jsonx_parse_cost: one pass over the bytes, JSONX_TOKEN_COST per value or member (more for a
 * string, an array, an object), the string contents, and twice the longest string (jansson's
 * lexer buffer). A refused parse returns NULL
 * with err->text saying so, and jsonx_refusals() counts one more.
 *
 * The same cost is reserved in the gauge of call memory before jansson runs (memgauge_parse_begin):
 * a parse over MEMGAUGE_SMALL_BYTES that would take the gauge past server.call_memory_mb is
 * refused (NULL, err->text naming the limit, memgauge_refused() set; jsonx_refusals() unchanged).
 * jansson's own allocations are never refused. */
#define JSONX_PARSE_BASE ((size_t)16 << 20)
#define JSONX_PARSE_FACTOR 4
#define JSONX_TOKEN_COST 64
size_t jsonx_parse_cost(const char *p, size_t len);
size_t jsonx_parse_ceiling(size_t len);
json_t *jsonx_loadb(const char *p, size_t len, size_t flags, json_error_t *err);
/* Parses refused on this thread since it started. */
unsigned long jsonx_refusals(void);

#endif
