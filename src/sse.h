/* sse.h - incremental Server-Sent-Events parser for upstream streams.
 *
 * Bytes arrive in arbitrary pieces (libcurl write callbacks ignore event boundaries); the parser
 * keeps the partial line and event and calls back once per complete event. It accepts "\n",
 * "\r\n" and "\r" line endings (also split across pieces), joins multi-line data fields with
 * "\n", skips ":" comment lines, and keeps lines that are not SSE fields (some upstreams send a
 * bare JSON error object mid-stream) in `other`. Each event is capped at max_event bytes in all:
 * the line being read plus the event's data, other lines and name. A data line read across
 * pieces becomes the event's data without a copy, so a one-line event is held once, and buffers
 * grown past a few KiB by one event are freed when it ends. Pure: no I/O, no allocation beyond
 * its own buffers.
 */
#ifndef ROUTER_SSE_H
#define ROUTER_SSE_H

#include <stddef.h>

#include "buf.h"

struct sse_event {
	const char *event;    /* value of the last "event:" field, "" if none */
	const char *data;     /* data fields joined with '\n', "" if none */
	size_t data_len;
	int has_data;
	const char *other;    /* non-field lines joined with '\n', "" if none */
	size_t other_len;
};

struct sse_parser {
	struct buf line;
	struct buf data;
	struct buf event;
	struct buf other;
	int has_data;
	int skip_lf;          /* the previous piece ended with '\r' */
	size_t comments;      /* comment lines seen (keep-alives) */
	size_t max;           /* bytes one event may hold in all (line, data, event, other) */
};

/* Returns 0 to continue or any other value to stop the parse (returned by sse_feed). */
typedef int (*sse_event_fn)(void *ud, const struct sse_event *ev);

void sse_init(struct sse_parser *p, size_t max_event);
void sse_free(struct sse_parser *p);
/* Returns 0, the callback's non-zero value, or -1 when an event exceeds the size limit (or a
 * buffer cannot grow); the parser must not be fed again after -1. */
int sse_feed(struct sse_parser *p, const char *data, size_t len, sse_event_fn fn, void *ud);
/* End of input: a last line without a newline and a last event without its blank line are
 * still delivered. */
int sse_finish(struct sse_parser *p, sse_event_fn fn, void *ud);

#endif
