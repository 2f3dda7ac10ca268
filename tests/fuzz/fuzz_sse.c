/* fuzz_sse.c - the SSE parser fed in pieces cut at input-derived positions.
 *
 * Properties: the events delivered and the final return value (0, or -1 for a size limit) are the
 * same whether the input arrives whole, in input-derived pieces (empty pieces included) or byte
 * by byte; an event's data and other fields are NUL-terminated at their lengths and never hold a
 * CR; event names hold no line break. A second parse with a tiny event cap only has to stay
 * memory-safe and return 0 or -1.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct transcript {
	struct buf out;
	size_t events;
};

static void put_field(struct buf *b, char tag, const char *s, size_t n)
{
	buf_printf(b, "%c%zu:", tag, n);
	buf_append(b, s, n);
}

static int on_event(void *ud, const struct sse_event *ev)
{
	struct transcript *t = ud;
	FUZZ_ASSERT(ev->event && ev->data && ev->other);
	FUZZ_ASSERT(ev->data[ev->data_len] == '\0');
	FUZZ_ASSERT(ev->other[ev->other_len] == '\0');
	FUZZ_ASSERT(memchr(ev->data, '\r', ev->data_len) == NULL);
	FUZZ_ASSERT(memchr(ev->other, '\r', ev->other_len) == NULL);
	FUZZ_ASSERT(strpbrk(ev->event, "\r\n") == NULL);
	FUZZ_ASSERT(ev->has_data || ev->data_len == 0);
	put_field(&t->out, 'E', ev->event, strlen(ev->event));
	put_field(&t->out, ev->has_data ? 'D' : 'd', ev->data, ev->data_len);
	put_field(&t->out, 'O', ev->other, ev->other_len);
	t->events++;
	return 0;
}

/* Parses with pieces of lengths drawn from `seed` (0 = whole; 1 = byte by byte). */
static int parse(const uint8_t *data, size_t size, uint64_t seed, size_t max_event,
		 struct transcript *t, size_t *comments)
{
	struct sse_parser p;
	sse_init(&p, max_event);
	buf_init(&t->out, BUF_UNLIMITED);
	t->events = 0;
	int rc = 0;
	size_t at = 0;
	while (at < size && rc == 0) {
		size_t n;
		if (seed == 0)
			n = size;
		else if (seed == 1)
			n = 1;
		else
			n = (size_t)(fuzz_next(&seed) % 9); /* 0..8: empty pieces too */
		if (n > size - at)
			n = size - at;
		rc = sse_feed(&p, (const char *)data + at, n, on_event, t);
		at += n;
	}
	if (rc == 0)
		rc = sse_finish(&p, on_event, t);
	if (comments)
		*comments = p.comments;
	sse_free(&p);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t seed = fuzz_hash(data, size) | 2; /* never 0 or 1 */
	struct transcript whole, split, bytes;
	size_t cw = 0, cs = 0, cb = 0;
	int rw = parse(data, size, 0, 1 << 20, &whole, &cw);
	int rs = parse(data, size, seed, 1 << 20, &split, &cs);
	FUZZ_ASSERT(rw == 0 || rw == -1);
	FUZZ_ASSERT(rw == rs);
	FUZZ_ASSERT(whole.events == split.events);
	FUZZ_ASSERT(whole.out.len == split.out.len);
	FUZZ_ASSERT(whole.out.len == 0 || memcmp(whole.out.p, split.out.p, whole.out.len) == 0);
	FUZZ_ASSERT(cw == cs);
	if (size <= 1024) {
		int rb = parse(data, size, 1, 1 << 20, &bytes, &cb);
		FUZZ_ASSERT(rb == rw);
		FUZZ_ASSERT(whole.out.len == bytes.out.len);
		FUZZ_ASSERT(whole.out.len == 0 || memcmp(whole.out.p, bytes.out.p, whole.out.len) == 0);
		FUZZ_ASSERT(cw == cb);
		buf_free(&bytes.out);
	}
	buf_free(&whole.out);
	buf_free(&split.out);

	/* A small cap: only -1 may be added, and nothing may go wrong in memory. */
	struct transcript small;
	int rsm = parse(data, size, seed, 24, &small, NULL);
	FUZZ_ASSERT(rsm == 0 || rsm == -1);
	buf_free(&small.out);
	return 0;
}
