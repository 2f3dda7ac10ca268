/* test_sse.c - the incremental SSE parser: line endings, splits, fields, limits, stop values.
 *
 * Each table row is parsed whole, byte by byte and at every split into two and three pieces; the
 * events delivered (feed + finish) must be the same transcript every time.
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "sse.h"

struct rec {
	struct buf out;     /* transcript: one line per event */
	int calls;
	int stop_at;        /* return stop_value on this call (1-based); 0 = never */
	int stop_value;
	int bad_lengths;    /* data_len/other_len disagree with the strings */
};

static void rec_init(struct rec *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->out, BUF_UNLIMITED);
}

static void rec_escape(struct buf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			buf_puts(b, "\\n");
		else if (s[i] == '\r')
			buf_puts(b, "\\r");
		else
			buf_putc(b, s[i]);
	}
}

static int rec_cb(void *ud, const struct sse_event *ev)
{
	struct rec *r = ud;
	r->calls++;
	if (ev->data_len != strlen(ev->data) || ev->other_len != strlen(ev->other))
		r->bad_lengths++;
	if (ev->event[0]) {
		buf_puts(&r->out, "[event:");
		rec_escape(&r->out, ev->event, strlen(ev->event));
		buf_puts(&r->out, "]");
	}
	if (ev->has_data) {
		buf_puts(&r->out, "[data:");
		rec_escape(&r->out, ev->data, ev->data_len);
		buf_puts(&r->out, "]");
	}
	if (ev->other_len) {
		buf_puts(&r->out, "[other:");
		rec_escape(&r->out, ev->other, ev->other_len);
		buf_puts(&r->out, "]");
	}
	buf_putc(&r->out, '\n');
	if (r->stop_at && r->calls == r->stop_at)
		return r->stop_value;
	return 0;
}

struct sse_row {
	const char *name;
	const char *in;
	const char *events;    /* expected transcript */
	size_t comments;
};

static const struct sse_row rows[] = {
	{ "LF endings", "data: a\n\ndata: b\n\n", "[data:a]\n[data:b]\n", 0 },
	{ "CRLF endings", "data: a\r\n\r\ndata: b\r\n\r\n", "[data:a]\n[data:b]\n", 0 },
	{ "CR endings", "data: a\r\rdata: b\r\r", "[data:a]\n[data:b]\n", 0 },
	{ "mixed endings", "data: a\r\n\ndata: b\r\rdata: c\n\r\n", "[data:a]\n[data:b]\n[data:c]\n", 0 },
	{ "multi-line data joined with LF", "data: line1\ndata: line2\ndata: line3\n\n",
	  "[data:line1\\nline2\\nline3]\n", 0 },
	{ "multi-line data with CRLF", "data: {\"a\":\r\ndata: 1}\r\n\r\n", "[data:{\"a\":\\n1}]\n", 0 },
	{ "no space after the colon", "data:x\n\n", "[data:x]\n", 0 },
	{ "only one leading space is removed", "data:  two\n\n", "[data: two]\n", 0 },
	{ "empty data field", "data:\n\n", "[data:]\n", 0 },
	{ "data without colon", "data\n\n", "[data:]\n", 0 },
	{ "empty data lines keep their place", "data: a\ndata:\ndata: b\n\n", "[data:a\\n\\nb]\n", 0 },
	{ "colon inside the value", "data: {\"k\": \"v:w\"}\n\n", "[data:{\"k\": \"v:w\"}]\n", 0 },
	{ "comments are counted and skipped", ": keep-alive\n\n: ping\ndata: x\n: mid\n\n",
	  "[data:x]\n", 3 },
	{ "comment without space", ":\n:x\n\n", "", 2 },
	{ "event name", "event: message_start\ndata: {}\n\n", "[event:message_start][data:{}]\n", 0 },
	{ "last event field wins", "event: a\nevent: b\ndata: x\n\n", "[event:b][data:x]\n", 0 },
	{ "event name does not leak into the next event", "event: a\ndata: 1\n\ndata: 2\n\n",
	  "[event:a][data:1]\n[data:2]\n", 0 },
	{ "event without data", "event: ping\n\n", "[event:ping]\n", 0 },
	{ "non-field line kept in other", "{\"error\":{\"message\":\"boom\"}}\n\n",
	  "[other:{\"error\":{\"message\":\"boom\"}}]\n", 0 },
	{ "non-field lines joined with LF", "oops\nnot sse\n\n", "[other:oops\\nnot sse]\n", 0 },
	{ "other next to data", "data: d\ngarbage line\n\n", "[data:d][other:garbage line]\n", 0 },
	{ "id and retry are ignored", "id: 7\nretry: 1000\ndata: x\n\nid: 8\n\n", "[data:x]\n", 0 },
	{ "blank lines alone deliver nothing", "\n\n\r\n\r\r\n", "", 0 },
	{ "last event without blank line (newline)", "data: a\n\ndata: tail\n", "[data:a]\n[data:tail]\n",
	  0 },
	{ "last event without blank line (no newline)", "data: a\n\ndata: tail",
	  "[data:a]\n[data:tail]\n", 0 },
	{ "last line is CR-terminated", "data: a\r", "[data:a]\n", 0 },
	{ "trailing partial non-field line", "data: a\n\n{\"error\":1}", "[data:a]\n[other:{\"error\":1}]\n",
	  0 },
	{ "OpenAI stream tail", "data: {\"choices\":[]}\n\ndata: [DONE]\n\n",
	  "[data:{\"choices\":[]}]\n[data:[DONE]]\n", 0 },
	{ "Anthropic event pair", "event: content_block_delta\r\ndata: {\"type\":\"x\"}\r\n\r\nevent: message_stop\r\ndata: {}\r\n\r\n",
	  "[event:content_block_delta][data:{\"type\":\"x\"}]\n[event:message_stop][data:{}]\n", 0 },
};

/* Parses `in` in pieces cut at the given positions (sorted, < len) and finishes. */
static int parse_pieces(const char *in, size_t len, const size_t *cuts, size_t ncuts,
			struct rec *r, size_t *comments)
{
	struct sse_parser p;
	sse_init(&p, 1 << 20);
	size_t at = 0;
	int rc = 0;
	for (size_t i = 0; i <= ncuts && rc == 0; i++) {
		size_t end = i < ncuts ? cuts[i] : len;
		rc = sse_feed(&p, in + at, end - at, rec_cb, r);
		at = end;
	}
	if (rc == 0)
		rc = sse_finish(&p, rec_cb, r);
	*comments = p.comments;
	sse_free(&p);
	return rc;
}

static void check_transcript(const struct sse_row *row, const size_t *cuts, size_t ncuts,
			     const char *how)
{
	struct rec r;
	rec_init(&r);
	size_t comments = 0;
	int rc = parse_pieces(row->in, strlen(row->in), cuts, ncuts, &r, &comments);
	test_case("%s (%s)", row->name, how);
	CHECK_INT_EQ(rc, 0);
	CHECK_STR_EQ(buf_str(&r.out), row->events);
	CHECK_INT_EQ(comments, row->comments);
	CHECK_INT_EQ(r.bad_lengths, 0);
	buf_free(&r.out);
}

TEST(sse_table_whole_input)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		check_transcript(&rows[i], NULL, 0, "whole");
}

TEST(sse_table_byte_by_byte)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		size_t len = strlen(rows[i].in);
		size_t cuts[256];
		size_t n = 0;
		for (size_t k = 1; k < len && n < 256; k++)
			cuts[n++] = k;
		check_transcript(&rows[i], cuts, n, "byte by byte");
	}
}

TEST(sse_table_every_split_in_two_and_three)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		size_t len = strlen(rows[i].in);
		for (size_t a = 0; a <= len; a++) {
			size_t one[1] = { a };
			char how[96];
			snprintf(how, sizeof(how), "split at %zu", a);
			check_transcript(&rows[i], one, 1, how);
			for (size_t b = a; b <= len; b++) {
				size_t two[2] = { a, b };
				snprintf(how, sizeof(how), "split at %zu and %zu", a, b);
				check_transcript(&rows[i], two, 2, how);
			}
		}
	}
}

TEST(sse_crlf_split_between_cr_and_lf_is_one_line_end)
{
	/* "\r" ends the first piece, "\n" starts the second: one line end, not an empty line. */
	struct sse_parser p;
	struct rec r;
	rec_init(&r);
	sse_init(&p, 1024);
	CHECK_INT_EQ(sse_feed(&p, "data: a\r", 8, rec_cb, &r), 0);
	CHECK_INT_EQ(r.calls, 0);
	CHECK_INT_EQ(sse_feed(&p, "\ndata: b\r", 9, rec_cb, &r), 0);
	CHECK_INT_EQ(r.calls, 0); /* still one event in progress */
	CHECK_INT_EQ(sse_feed(&p, "\n", 1, rec_cb, &r), 0);
	CHECK_INT_EQ(sse_feed(&p, "\r\n", 2, rec_cb, &r), 0);
	CHECK_INT_EQ(r.calls, 1);
	CHECK_STR_EQ(buf_str(&r.out), "[data:a\\nb]\n");
	/* Empty pieces change nothing. */
	CHECK_INT_EQ(sse_feed(&p, "", 0, rec_cb, &r), 0);
	CHECK_INT_EQ(sse_finish(&p, rec_cb, &r), 0);
	CHECK_INT_EQ(r.calls, 1);
	sse_free(&p);
	buf_free(&r.out);
}

TEST(sse_events_are_delivered_as_soon_as_complete)
{
	struct sse_parser p;
	struct rec r;
	rec_init(&r);
	sse_init(&p, 1024);
	CHECK_INT_EQ(sse_feed(&p, "data: one\n", 10, rec_cb, &r), 0);
	CHECK_INT_EQ(r.calls, 0);
	CHECK_INT_EQ(sse_feed(&p, "\n", 1, rec_cb, &r), 0);
	CHECK_INT_EQ(r.calls, 1);
	CHECK_INT_EQ(sse_feed(&p, "data: two\n\ndata: three\n\n", 24, rec_cb, &r), 0);
	CHECK_INT_EQ(r.calls, 3);
	CHECK_STR_EQ(buf_str(&r.out), "[data:one]\n[data:two]\n[data:three]\n");
	sse_free(&p);
	buf_free(&r.out);
}

TEST(sse_finish_on_empty_input_delivers_nothing)
{
	struct sse_parser p;
	struct rec r;
	rec_init(&r);
	sse_init(&p, 1024);
	CHECK_INT_EQ(sse_finish(&p, rec_cb, &r), 0);
	CHECK_INT_EQ(r.calls, 0);
	CHECK_INT_EQ(sse_feed(&p, "data: x\n\n", 9, rec_cb, &r), 0);
	CHECK_INT_EQ(sse_finish(&p, rec_cb, &r), 0);
	CHECK_INT_EQ(r.calls, 1);
	sse_free(&p);
	buf_free(&r.out);
}

TEST(sse_size_limit_returns_minus_one)
{
	static const struct {
		const char *name;
		const char *in;
		size_t cut;            /* 0 = one piece */
	} lim[] = {
		{ "one long data line", "data: 0123456789abcdefghijklmnopqrstuvwxyz\n\n", 0 },
		{ "long data line split", "data: 0123456789abcdefghijklmnopqrstuvwxyz\n\n", 20 },
		{ "many short data lines", "data: 0123456789\ndata: 0123456789\ndata: 0123456789\ndata: 0123456789\n\n", 0 },
		{ "long unterminated line", "data: 0123456789abcdefghijklmnopqrstuvwxyz", 0 },
		{ "long non-field lines", "0123456789abcdef\n0123456789abcdef\n0123456789abcdef\n\n", 0 },
		{ "long event name", "event: 0123456789abcdefghijklmnopqrstuvwxyz0123456789\n\n", 10 },
	};
	for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++) {
		test_case("%s", lim[i].name);
		struct sse_parser p;
		struct rec r;
		rec_init(&r);
		sse_init(&p, 32);
		size_t len = strlen(lim[i].in);
		int rc;
		if (lim[i].cut) {
			rc = sse_feed(&p, lim[i].in, lim[i].cut, rec_cb, &r);
			if (rc == 0)
				rc = sse_feed(&p, lim[i].in + lim[i].cut, len - lim[i].cut, rec_cb, &r);
		} else {
			rc = sse_feed(&p, lim[i].in, len, rec_cb, &r);
		}
		if (rc == 0)
			rc = sse_finish(&p, rec_cb, &r);
		CHECK_INT_EQ(rc, -1);
		CHECK_INT_EQ(r.calls, 0);
		sse_free(&p);
		buf_free(&r.out);
	}
}

TEST(sse_long_event_name_under_the_cap_is_delivered)
{
	/* The cap is max_event bytes per event: a 300-byte event name in a 1 MiB cap is fine. */
	struct sse_parser p;
	struct rec r;
	rec_init(&r);
	sse_init(&p, 1 << 20);
	struct buf in;
	buf_init(&in, BUF_UNLIMITED);
	buf_puts(&in, "event: ");
	for (int i = 0; i < 300; i++)
		buf_putc(&in, (char)('a' + i % 26));
	buf_puts(&in, "\ndata: {}\n\n");
	CHECK_INT_EQ(sse_feed(&p, in.p, in.len, rec_cb, &r), 0);
	CHECK_INT_EQ(sse_finish(&p, rec_cb, &r), 0);
	CHECK_INT_EQ(r.calls, 1);
	sse_free(&p);
	buf_free(&r.out);
	buf_free(&in);
}

TEST(sse_events_under_the_limit_pass)
{
	struct sse_parser p;
	struct rec r;
	rec_init(&r);
	sse_init(&p, 32);
	/* 16 bytes of data, twice, as separate events: each is well under the cap. */
	const char *in = "data: 0123456789abcdef\n\ndata: 0123456789abcdef\n\n";
	CHECK_INT_EQ(sse_feed(&p, in, strlen(in), rec_cb, &r), 0);
	CHECK_INT_EQ(sse_finish(&p, rec_cb, &r), 0);
	CHECK_INT_EQ(r.calls, 2);
	sse_free(&p);
	buf_free(&r.out);
}

TEST(sse_callback_stop_value_is_returned_by_feed)
{
	struct sse_parser p;
	struct rec r;
	rec_init(&r);
	r.stop_at = 2;
	r.stop_value = 7;
	sse_init(&p, 1024);
	const char *in = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
	CHECK_INT_EQ(sse_feed(&p, in, strlen(in), rec_cb, &r), 7);
	/* The parse stopped at the second event: the third was not delivered. */
	CHECK_INT_EQ(r.calls, 2);
	CHECK_STR_EQ(buf_str(&r.out), "[data:1]\n[data:2]\n");
	sse_free(&p);
	buf_free(&r.out);
}

TEST(sse_callback_stop_value_is_returned_by_finish)
{
	struct sse_parser p;
	struct rec r;
	rec_init(&r);
	r.stop_at = 1;
	r.stop_value = 3;
	sse_init(&p, 1024);
	CHECK_INT_EQ(sse_feed(&p, "data: last", 10, rec_cb, &r), 0);
	CHECK_INT_EQ(sse_finish(&p, rec_cb, &r), 3);
	CHECK_INT_EQ(r.calls, 1);
	CHECK_STR_EQ(buf_str(&r.out), "[data:last]\n");
	sse_free(&p);
	buf_free(&r.out);

	/* A negative stop value is passed through as well. */
	rec_init(&r);
	r.stop_at = 1;
	r.stop_value = -5;
	sse_init(&p, 1024);
	CHECK_INT_EQ(sse_feed(&p, "data: x\r\n\r\n", 11, rec_cb, &r), -5);
	sse_free(&p);
	buf_free(&r.out);
}

TEST(sse_comments_counted_across_pieces)
{
	struct sse_parser p;
	struct rec r;
	rec_init(&r);
	sse_init(&p, 1024);
	const char *in = ": keep-alive\n\n: keep-alive\r\n\r\n: OPENROUTER PROCESSING\r\rdata: x\n\n";
	size_t len = strlen(in);
	for (size_t i = 0; i < len; i += 3)
		CHECK_INT_EQ(sse_feed(&p, in + i, len - i < 3 ? len - i : 3, rec_cb, &r), 0);
	CHECK_INT_EQ(sse_finish(&p, rec_cb, &r), 0);
	CHECK_INT_EQ(p.comments, 3);
	CHECK_STR_EQ(buf_str(&r.out), "[data:x]\n");
	sse_free(&p);
	buf_free(&r.out);
}

/* The cap counts the whole event: data, non-field lines, its name and the line being read. Each
 * part under the cap, together over it, fails, in one piece or byte by byte. */
TEST(sse_size_limit_counts_the_whole_event)
{
	static const char *const ins[] = {
		"data: 0123456789abcdef\n0123456789abcdef\n\n",
		"event: 0123456789abcdef\ndata: 0123456789abcdef\n\n",
		"data: 0123456789abcdef\ndata: 0123456789abcdef\n\n",
		"data: 0123456789abcdef\n0123456789abcdef",
	};
	for (size_t i = 0; i < sizeof(ins) / sizeof(ins[0]); i++) {
		for (int bytewise = 0; bytewise < 2; bytewise++) {
			test_case("%zu %s", i, bytewise ? "byte by byte" : "whole");
			struct sse_parser p;
			struct rec r;
			rec_init(&r);
			sse_init(&p, 32);
			size_t len = strlen(ins[i]);
			int rc = 0;
			if (bytewise) {
				for (size_t k = 0; k < len && rc == 0; k++)
					rc = sse_feed(&p, ins[i] + k, 1, rec_cb, &r);
			} else {
				rc = sse_feed(&p, ins[i], len, rec_cb, &r);
			}
			if (rc == 0)
				rc = sse_finish(&p, rec_cb, &r);
			CHECK_INT_EQ(rc, -1);
			CHECK_INT_EQ(r.calls, 0);
			sse_free(&p);
			buf_free(&r.out);
		}
	}
	test_case(NULL);
}

/* A one-line event read across pieces is held once (the line becomes the data) and is delivered
 * whole up to the cap; the buffers one large event grew are freed when it ends. */
TEST(sse_large_event_is_held_once_and_released)
{
	size_t n = (size_t)1 << 20;
	struct buf in;
	buf_init(&in, BUF_UNLIMITED);
	buf_puts(&in, "data: ");
	for (size_t i = 0; i < n; i++)
		buf_putc(&in, (char)('a' + i % 26));
	buf_puts(&in, "\ndata: tail\n\n");
	struct sse_parser p;
	struct rec r;
	rec_init(&r);
	sse_init(&p, n + 16);
	/* Pieces of 16 KiB, as libcurl hands them over. */
	size_t peak = 0;
	int rc = 0;
	for (size_t k = 0; k < in.len && rc == 0; k += 16384) {
		size_t m = in.len - k < 16384 ? in.len - k : 16384;
		rc = sse_feed(&p, in.p + k, m, rec_cb, &r);
		if (p.line.cap + p.data.cap > peak)
			peak = p.line.cap + p.data.cap;
	}
	CHECK_INT_EQ(rc, 0);
	CHECK_INT_EQ(r.calls, 1);
	/* The event's text was delivered whole: its transcript holds both data lines. */
	CHECK(r.out.len > n);
	CHECK_CONTAINS(buf_str(&r.out), "\\ntail]");
	CHECK(p.line.cap <= 65536 && p.data.cap <= 65536);
	/* Never a line buffer and a data buffer of the event's size at once. */
	CHECK(peak < 3 * n);
	sse_free(&p);
	buf_free(&r.out);
	buf_free(&in);
}

/* Where the input is cut does not change where the cap falls: every event length around the cap,
 * whole and byte by byte, gives the same answer. */
TEST(sse_size_limit_does_not_depend_on_the_cuts)
{
	for (size_t n = 1; n < 40; n++) {
		for (int shape = 0; shape < 3; shape++) {
			test_case("%zu bytes, shape %d", n, shape);
			char in[256];
			char fill[64];
			memset(fill, 'x', n);
			fill[n] = '\0';
			if (shape == 0)
				snprintf(in, sizeof(in), "data: %s\n\n", fill);
			else if (shape == 1)
				snprintf(in, sizeof(in), "event: e\ndata: 1\n%s\n\n", fill);
			else
				snprintf(in, sizeof(in), "data: 1\n: %s\ndata: %s", fill, fill);
			int rcs[2];
			size_t calls[2];
			for (int bytewise = 0; bytewise < 2; bytewise++) {
				struct sse_parser p;
				struct rec r;
				rec_init(&r);
				sse_init(&p, 32);
				size_t len = strlen(in);
				int rc = 0;
				if (bytewise) {
					for (size_t k = 0; k < len && rc == 0; k++)
						rc = sse_feed(&p, in + k, 1, rec_cb, &r);
				} else {
					rc = sse_feed(&p, in, len, rec_cb, &r);
				}
				if (rc == 0)
					rc = sse_finish(&p, rec_cb, &r);
				rcs[bytewise] = rc;
				calls[bytewise] = (size_t)r.calls;
				sse_free(&p);
				buf_free(&r.out);
			}
			CHECK_INT_EQ(rcs[0], rcs[1]);
			CHECK_INT_EQ((long long)calls[0], (long long)calls[1]);
		}
	}
	test_case(NULL);
}
