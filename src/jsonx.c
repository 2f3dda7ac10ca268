/* jsonx.c - small jansson helpers (see jsonx.h).
 *
 * json_to_buf serialises straight into a struct buf and keeps its contract: the limit is never
 * crossed, and an append that fails leaves the buffer exactly as it was (a partial text written
 * before the limit stopped it is taken back). jsonx_loadb parses untrusted text under a memory
 * ceiling and within the process's gauge of call memory (below); a per-thread count of its
 * refusals is the module's only state.
 */
#include "jsonx.h"

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memgauge.h"

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

char *jsonx_dumps(const json_t *j, size_t flags)
{
	struct buf b;
	buf_init(&b, BUF_UNLIMITED);
	if (json_dump_callback(j, dump_cb, &b, flags) != 0) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

const char *json_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

const json_t *jsonx_opt(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_null(v) ? NULL : v;
}

const char *jsonx_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "an unknown type";
}

/* ---- jansson's heap in the gauge of call memory ----
 *
 * Each block is allocated one byte longer than jansson asks, and its last usable byte (which
 * jansson never touches) says whether it was counted: blocks taken on a thread that serves calls
 * are, others are not, so a block freed on another thread releases exactly what it charged. The
 * charge is the block's usable size. No size header precedes the block: the text json_dumps
 * returns is jansson's and its callers free() it, which must stay valid. Such a text taken on a
 * thread that serves calls would stay counted after that free(): the router makes its texts with
 * jsonx_dumps instead. These functions never refuse: jansson's lexer does not survive a failed
 * allocation (below); a parse is refused before it starts instead. */

#define JX_COUNTED 0xC5
#define JX_UNCOUNTED 0x3A

static void *jx_malloc(size_t n)
{
	if (n >= SIZE_MAX)
		return NULL;
	unsigned char *p = malloc(n + 1);
	if (!p)
		return NULL;
	size_t got = malloc_usable_size(p);
	if (memgauge_on_call_thread()) {
		p[got - 1] = JX_COUNTED;
		memgauge_charge(got, 0);
	} else {
		p[got - 1] = JX_UNCOUNTED;
	}
	return p;
}

static void jx_free(void *ptr)
{
	if (!ptr)
		return;
	unsigned char *p = ptr;
	size_t got = malloc_usable_size(p);
	if (p[got - 1] == JX_COUNTED)
		memgauge_release(got);
	free(p);
}

void jsonx_count_memory(void)
{
	json_set_alloc_funcs(jx_malloc, jx_free);
}

/* ---- a memory bound for parsing untrusted JSON ----
 *
 * The bound is checked before jansson runs, by one pass over the bytes that counts what the parse
 * would allocate. Refusing jansson's allocations instead (json_set_alloc_funcs with a budget) is
 * not safe: jansson 2.14's lexer ignores a failed growth of its token buffer and then decodes past
 * its end, so an allocation refused in the middle of a long string corrupts the heap. The same
 * count is what the parse reserves in the gauge of call memory before it starts. */

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

/* A parse refused before it started: err says why (no line or position). */
static json_t *refused(json_error_t *err, const char *why)
{
	if (err) {
		memset(err, 0, sizeof(*err));
		err->line = -1;
		err->column = -1;
		err->position = -1;
		snprintf(err->text, sizeof(err->text), "%s", why);
	}
	return NULL;
}

json_t *jsonx_loadb(const char *p, size_t len, size_t flags, json_error_t *err)
{
	size_t ceiling = jsonx_parse_ceiling(len);
	size_t cost = jsonx_parse_cost(p, len);
	char why[JSON_ERROR_TEXT_LENGTH];
	if (cost > ceiling) {
		jx_refusals++;
		snprintf(why, sizeof(why), "the document would need more than %zu MiB of memory",
			 ceiling >> 20);
		return refused(err, why);
	}
	if (memgauge_parse_begin(cost) < 0) {
		snprintf(why, sizeof(why),
			 "the memory of calls in flight is at its limit (server.call_memory_mb = %zu MB)",
			 memgauge_cap() >> 20);
		return refused(err, why);
	}
	json_t *j = json_loadb(p, len, flags, err);
	memgauge_parse_end();
	return j;
}

unsigned long jsonx_refusals(void)
{
	return jx_refusals;
}
