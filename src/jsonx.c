/* jsonx.c - small jansson helpers (see jsonx.h).
 *
 * json_to_buf serialises straight into a struct buf and keeps its contract: the limit is never
 * crossed, and an append that fails leaves the buffer exactly as it was (a partial text written
 * before the limit stopped it is taken back). jsonx_loadb parses untrusted text under a memory
 * ceiling (below); a per-thread count of its refusals is the module's only state.
 */
#include "jsonx.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

/* ---- a memory bound for parsing untrusted JSON ----
 *
 * The bound is checked before jansson runs, by one pass over the bytes that counts what the parse
 * would allocate. Refusing jansson's allocations instead (json_set_alloc_funcs with a budget) is
 * not safe: jansson 2.14's lexer ignores a failed growth of its token buffer and then decodes past
 * its end, so an allocation refused in the middle of a long string corrupts the heap. */

static _Thread_local unsigned long jx_refusals; /* parses refused on this thread */

size_t jsonx_parse_cost(const char *p, size_t len)
{
	size_t tokens = 0, strings = 0, longest = 0, cur = 0;
	int in_str = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (in_str) {
			if (c == '"') {
				in_str = 0;
				if (cur > longest)
					longest = cur;
			} else {
				if (c == '\\') {
					i++;
					cur++;
				}
				cur++;
			}
		} else if (c == '"') {
			in_str = 1;
			strings++;
			cur = 0;
		} else if (c == ',' || c == ':') {
			tokens++;
		} else if (c == '[') {
			tokens += 2; /* an array starts with a table of 8 slots */
		} else if (c == '{') {
			tokens += 4; /* an object starts with a hash table of 8 buckets */
		}
	}
	if (cur > longest)
		longest = cur;
	/* Each value or member costs jansson at most JSONX_TOKEN_COST bytes of its own, an empty
	 * array or object two or four times that, a string half that more, its contents once
	 * (measured, glibc, a million of each in one document: 0 40 bytes, "a" 88, [] 136, {} 232,
	 * {"a":0} 344); the lexer's buffer grows (doubling) to hold the longest token. None of the
	 * terms can overflow: len bounds each of them. */
	return tokens * JSONX_TOKEN_COST + strings * (JSONX_TOKEN_COST / 2) + len + 2 * longest + 4096;
}

size_t jsonx_parse_ceiling(size_t len)
{
	if (len > (SIZE_MAX / 2 - JSONX_PARSE_BASE) / JSONX_PARSE_FACTOR)
		return SIZE_MAX / 2;
	return JSONX_PARSE_BASE + JSONX_PARSE_FACTOR * len;
}

json_t *jsonx_loadb(const char *p, size_t len, size_t flags, json_error_t *err)
{
	size_t ceiling = jsonx_parse_ceiling(len);
	if (jsonx_parse_cost(p, len) > ceiling) {
		jx_refusals++;
		if (err) {
			memset(err, 0, sizeof(*err));
			err->line = -1;
			err->column = -1;
			err->position = -1;
			snprintf(err->text, sizeof(err->text),
				 "the document would need more than %zu MiB of memory", ceiling >> 20);
		}
		return NULL;
	}
	return json_loadb(p, len, flags, err);
}

unsigned long jsonx_refusals(void)
{
	return jx_refusals;
}
