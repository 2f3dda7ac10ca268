/* buf.c - bounded growable buffer (see buf.h for the contract).
 *
 * Every buffer's capacity is counted in the process's gauge of call memory (memgauge.h): charged
 * as it grows, released when it is freed or its content stolen. A growth past MEMGAUGE_SMALL_BYTES
 * of a buffer with a limit is refused like one past that limit when the gauge would pass its cap.
 */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memgauge.h"
#include "util.h"

void buf_init(struct buf *b, size_t max)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

void buf_free(struct buf *b)
{
	memgauge_release(b->cap);
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->p)
		b->p[0] = '\0';
}

static int buf_reserve(struct buf *b, size_t extra)
{
	if (extra > b->max - b->len)
		return -1;
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > b->max ? need : cap * 2;
	/* Small buffers and buffers without a limit (whose callers may not look at the result) never
	 * fail because of the gauge. */
	int may_refuse = cap > MEMGAUGE_SMALL_BYTES && b->max < BUF_UNLIMITED;
	if (memgauge_charge(cap - b->cap, may_refuse) < 0)
		return -1;
	/* Out of memory fails this append (and so the one call it serves), not the process. */
	char *p = realloc(b->p, cap);
	if (!p) {
		memgauge_release(cap - b->cap);
		return -1;
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	if (buf_reserve(b, len) < 0)
		return -1;
	if (len)
		memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
	return 0;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_putc(struct buf *b, char c)
{
	return buf_append(b, &c, 1);
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list aq;
	va_copy(aq, ap);
	int n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0 || buf_reserve(b, (size_t)n) < 0)
		return -1;
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		buf_reset(b);
		return;
	}
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
	b->p[b->len] = '\0';
}

const char *buf_str(const struct buf *b)
{
	return b->p ? b->p : "";
}

char *buf_steal_counted(struct buf *b, size_t *counted)
{
	char *p = b->p ? b->p : xstrdup("");
	*counted = b->cap;
	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}

char *buf_steal(struct buf *b)
{
	char *p = b->p ? b->p : xstrdup("");
	/* The caller owns the text now: it is no longer counted. */
	memgauge_release(b->cap);
	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}
