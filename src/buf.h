/* buf.h - one bounded, growable byte buffer used for every body and string build.
 *
 * A buf's maximum size is fixed when it is created, so a request body, an upstream reply or an
 * SSE line can never grow past the limit the caller chose: appends that would cross it fail with
 * -1 and leave the buffer unchanged. The content is always NUL-terminated (the NUL is not counted
 * in len), so buf->p can be handed to string functions. An append the allocator cannot serve
 * fails with -1 like one past the limit (the buffer unchanged), so that one call's oversized
 * buffer fails that call instead of aborting every call of the process.
 *
 * Capacity is counted in the process's gauge of call memory (memgauge.h). On a thread serving a
 * call, an append that grows a buffer with a limit (not BUF_UNLIMITED) past MEMGAUGE_SMALL_BYTES
 * fails with -1 as well when the gauge would pass server.call_memory_mb; memgauge_refused() then
 * tells it from the buffer's own limit.
 */
#ifndef ROUTER_BUF_H
#define ROUTER_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *p;     /* content, NUL-terminated; NULL until the first append */
	size_t len;  /* bytes used, excluding the NUL */
	size_t cap;  /* bytes allocated */
	size_t max;  /* hard limit on len */
};

#define BUF_UNLIMITED ((size_t)-1 / 2)

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
/* Empties the buffer but keeps its allocation (for reuse across requests). */
void buf_reset(struct buf *b);
/* Returns 0, or -1 when the result would exceed b->max, the allocator or the gauge refused the
 * growth (b unchanged). */
int buf_append(struct buf *b, const void *data, size_t len);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Removes the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Returns the content as a string ("" when empty); the pointer stays owned by b. */
const char *buf_str(const struct buf *b);
/* Transfers the content to the caller (free() it) and leaves b empty; the text is no longer
 * counted in the gauge. */
char *buf_steal(struct buf *b);
/* buf_steal, except that the text stays counted: *counted gets the bytes to release
 * (memgauge_release) when the caller frees it. */
char *buf_steal_counted(struct buf *b, size_t *counted);

#endif
