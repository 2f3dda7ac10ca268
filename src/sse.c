/* sse.c - incremental SSE parser (see sse.h). */
#include "sse.h"

#include <string.h>

/* A buffer grown past this by one event is freed when the event ends. */
#define SSE_KEEP_CAP (64u << 10)

void sse_init(struct sse_parser *p, size_t max_event)
{
	memset(p, 0, sizeof(*p));
	p->max = max_event;
	buf_init(&p->line, max_event);
	buf_init(&p->data, max_event);
	buf_init(&p->event, max_event);
	buf_init(&p->other, max_event);
}

void sse_free(struct sse_parser *p)
{
	buf_free(&p->line);
	buf_free(&p->data);
	buf_free(&p->event);
	buf_free(&p->other);
}

static void trim(struct buf *b)
{
	if (b->cap > SSE_KEEP_CAP)
		buf_free(b);
	else
		buf_reset(b);
}

/* Whether a line of len bytes (its end counted as one) fits the event read so far. A line cut
 * across pieces is checked as it grows, and its last check is the one a whole line gets, so the
 * limit does not depend on how the input was cut; what a line adds to the event is never more
 * than len + 1 bytes, so the event never holds more than max bytes, the line being read included. */
static int fits_line(const struct sse_parser *p, size_t len)
{
	size_t held = p->data.len + p->event.len + p->other.len;
	return len < p->max && held <= p->max - len - 1;
}

static int dispatch(struct sse_parser *p, sse_event_fn fn, void *ud)
{
	int rc = 0;
	if (p->has_data || p->event.len || p->other.len) {
		/* The data buffer ends with the '\n' of its last line: drop it. */
		size_t dlen = p->data.len;
		if (dlen && p->data.p[dlen - 1] == '\n')
			p->data.p[--dlen] = '\0';
		size_t olen = p->other.len;
		if (olen && p->other.p[olen - 1] == '\n')
			p->other.p[--olen] = '\0';
		struct sse_event ev = {
			.event = buf_str(&p->event),
			.data = buf_str(&p->data),
			.data_len = dlen,
			.has_data = p->has_data,
			.other = buf_str(&p->other),
			.other_len = olen,
		};
		rc = fn(ud, &ev);
	}
	trim(&p->data);
	trim(&p->event);
	trim(&p->other);
	p->has_data = 0;
	return rc;
}

/* The first data line of an event, read across pieces into p->line: its buffer becomes the data
 * buffer (the value moved to its front), so that the line is not held twice. */
static void take_line(struct sse_parser *p, const char *val, size_t vlen)
{
	struct buf t = p->data;
	p->data = p->line;
	p->line = t;
	memmove(p->data.p, val, vlen);
	p->data.len = vlen;
	p->data.p[vlen] = '\0';
}

/* line is p->line's content when `owned`, else a piece of the input. */
static int process_line(struct sse_parser *p, const char *line, size_t len, int owned,
			sse_event_fn fn, void *ud)
{
	if (len == 0)
		return dispatch(p, fn, ud);
	if (!fits_line(p, len))
		return -1;
	if (line[0] == ':') {
		p->comments++;
		return 0;
	}
	const char *colon = memchr(line, ':', len);
	size_t nlen = colon ? (size_t)(colon - line) : len;
	const char *val = colon ? colon + 1 : line + len;
	size_t vlen = colon ? len - nlen - 1 : 0;
	if (vlen && val[0] == ' ') {
		val++;
		vlen--;
	}
	if (nlen == 4 && memcmp(line, "data", 4) == 0) {
		p->has_data = 1;
		if (owned && p->data.len == 0) {
			take_line(p, val, vlen);
			return buf_putc(&p->data, '\n');
		}
		if (buf_append(&p->data, val, vlen) < 0 || buf_putc(&p->data, '\n') < 0)
			return -1;
	} else if (nlen == 5 && memcmp(line, "event", 5) == 0) {
		buf_reset(&p->event);
		if (buf_append(&p->event, val, vlen) < 0)
			return -1;
	} else if ((nlen == 2 && memcmp(line, "id", 2) == 0) ||
		   (nlen == 5 && memcmp(line, "retry", 5) == 0)) {
		/* Not used by any upstream of the router. */
	} else {
		if (buf_append(&p->other, line, len) < 0 || buf_putc(&p->other, '\n') < 0)
			return -1;
	}
	return 0;
}

int sse_feed(struct sse_parser *p, const char *data, size_t len, sse_event_fn fn, void *ud)
{
	size_t i = 0;
	if (p->skip_lf && len > 0) {
		if (data[0] == '\n')
			i = 1;
		p->skip_lf = 0;
	}
	while (i < len) {
		const char *start = data + i;
		size_t rest = len - i;
		size_t k;
		for (k = 0; k < rest; k++) {
			if (start[k] == '\n' || start[k] == '\r')
				break;
		}
		if (k == rest) {
			if (!fits_line(p, p->line.len + rest) ||
			    buf_append(&p->line, start, rest) < 0)
				return -1;
			return 0;
		}
		int rc;
		if (p->line.len) {
			if (!fits_line(p, p->line.len + k) || buf_append(&p->line, start, k) < 0)
				return -1;
			rc = process_line(p, p->line.p, p->line.len, 1, fn, ud);
			trim(&p->line);
		} else {
			rc = process_line(p, start, k, 0, fn, ud);
		}
		i += k + 1;
		if (start[k] == '\r') {
			if (i < len) {
				if (data[i] == '\n')
					i++;
			} else {
				p->skip_lf = 1;
			}
		}
		if (rc)
			return rc;
	}
	return 0;
}

int sse_finish(struct sse_parser *p, sse_event_fn fn, void *ud)
{
	int rc = 0;
	if (p->line.len) {
		rc = process_line(p, p->line.p, p->line.len, 1, fn, ud);
		trim(&p->line);
		if (rc)
			return rc;
	}
	return dispatch(p, fn, ud);
}
