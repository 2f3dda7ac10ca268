/* test_buf.c - the bounded buffer: limits, printf, consume, steal, reset, JSON appends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "harness.h"
#include "jsonx.h"

TEST(buf_starts_empty)
{
	struct buf b;
	buf_init(&b, 16);
	CHECK_NULL(b.p);
	CHECK_INT_EQ(b.len, 0);
	CHECK_INT_EQ(b.max, 16);
	CHECK_STR_EQ(buf_str(&b), "");
	buf_free(&b);
	buf_free(&b); /* idempotent */
	CHECK_NULL(b.p);
}

TEST(buf_append_up_to_the_limit)
{
	struct buf b;
	buf_init(&b, 8);
	CHECK_INT_EQ(buf_append(&b, "abcd", 4), 0);
	CHECK_INT_EQ(buf_puts(&b, "efg"), 0);
	CHECK_INT_EQ(buf_putc(&b, 'h'), 0);
	CHECK_INT_EQ(b.len, 8);
	CHECK_STR_EQ(buf_str(&b), "abcdefgh");
	CHECK_INT_EQ(b.p[b.len], '\0');
	/* One byte more fails and changes nothing. */
	CHECK_INT_EQ(buf_putc(&b, 'i'), -1);
	CHECK_INT_EQ(buf_append(&b, "xy", 2), -1);
	CHECK_INT_EQ(buf_puts(&b, "z"), -1);
	CHECK_INT_EQ(b.len, 8);
	CHECK_STR_EQ(buf_str(&b), "abcdefgh");
	/* Appending nothing at the limit is fine. */
	CHECK_INT_EQ(buf_append(&b, "", 0), 0);
	buf_free(&b);
}

TEST(buf_append_that_would_cross_the_limit_is_refused_whole)
{
	struct buf b;
	buf_init(&b, 10);
	CHECK_INT_EQ(buf_puts(&b, "12345678"), 0);
	CHECK_INT_EQ(buf_puts(&b, "abc"), -1);
	CHECK_INT_EQ(b.len, 8);
	CHECK_STR_EQ(buf_str(&b), "12345678");
	CHECK_INT_EQ(buf_puts(&b, "ab"), 0);
	CHECK_STR_EQ(buf_str(&b), "12345678ab");
	buf_free(&b);
}

TEST(buf_zero_limit_accepts_nothing)
{
	struct buf b;
	buf_init(&b, 0);
	CHECK_INT_EQ(buf_putc(&b, 'a'), -1);
	CHECK_INT_EQ(buf_printf(&b, "%d", 1), -1);
	CHECK_INT_EQ(buf_append(&b, "", 0), 0);
	CHECK_INT_EQ(b.len, 0);
	CHECK_STR_EQ(buf_str(&b), "");
	buf_free(&b);
}

TEST(buf_grows_past_its_first_allocation)
{
	struct buf b;
	buf_init(&b, BUF_UNLIMITED);
	char chunk[100];
	memset(chunk, 'q', sizeof(chunk));
	for (int i = 0; i < 100; i++)
		REQUIRE_INT_EQ(buf_append(&b, chunk, sizeof(chunk)), 0);
	CHECK_INT_EQ(b.len, 10000);
	CHECK(b.cap > b.len);
	CHECK_INT_EQ(b.p[10000], '\0');
	CHECK_INT_EQ(b.p[9999], 'q');
	buf_free(&b);
}

TEST(buf_keeps_embedded_nul_bytes)
{
	struct buf b;
	buf_init(&b, 64);
	CHECK_INT_EQ(buf_append(&b, "a\0b", 3), 0);
	CHECK_INT_EQ(b.len, 3);
	CHECK_MEM_EQ(b.p, b.len, "a\0b", 3);
	buf_free(&b);
}

TEST(buf_printf_formats_and_respects_the_limit)
{
	struct buf b;
	buf_init(&b, 12);
	CHECK_INT_EQ(buf_printf(&b, "%s=%d", "n", 42), 0);
	CHECK_STR_EQ(buf_str(&b), "n=42");
	CHECK_INT_EQ(buf_printf(&b, ";%05.1f", 2.25), 0);
	CHECK_STR_EQ(buf_str(&b), "n=42;002.2");
	CHECK_INT_EQ(b.len, 10);
	/* "xyz" would make 13 bytes: refused, content unchanged. */
	CHECK_INT_EQ(buf_printf(&b, "%s", "xyz"), -1);
	CHECK_STR_EQ(buf_str(&b), "n=42;002.2");
	CHECK_INT_EQ(b.len, 10);
	/* Exactly at the limit. */
	CHECK_INT_EQ(buf_printf(&b, "%c%c", 'x', 'y'), 0);
	CHECK_STR_EQ(buf_str(&b), "n=42;002.2xy");
	CHECK_INT_EQ(buf_printf(&b, "%s", ""), 0);
	CHECK_INT_EQ(b.len, 12);
	buf_free(&b);
}

TEST(buf_printf_long_output)
{
	struct buf b;
	buf_init(&b, BUF_UNLIMITED);
	char big[3000];
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK_INT_EQ(buf_printf(&b, "<%s>", big), 0);
	CHECK_INT_EQ(b.len, sizeof(big) + 1);
	CHECK_INT_EQ(b.p[0], '<');
	CHECK_INT_EQ(b.p[b.len - 1], '>');
	CHECK_INT_EQ(b.p[b.len], '\0');
	buf_free(&b);
}

TEST(buf_consume_table)
{
	static const struct {
		const char *start;
		size_t n;
		const char *left;
	} rows[] = {
		{ "hello world", 0, "hello world" },
		{ "hello world", 6, "world" },
		{ "hello world", 10, "d" },
		{ "hello world", 11, "" },
		{ "hello world", 500, "" },
		{ "", 3, "" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("consume %zu of \"%s\"", rows[i].n, rows[i].start);
		struct buf b;
		buf_init(&b, 64);
		buf_puts(&b, rows[i].start);
		buf_consume(&b, rows[i].n);
		CHECK_STR_EQ(buf_str(&b), rows[i].left);
		CHECK_INT_EQ(b.len, strlen(rows[i].left));
		/* The buffer is usable afterwards. */
		CHECK_INT_EQ(buf_puts(&b, "!"), 0);
		CHECK_INT_EQ(b.len, strlen(rows[i].left) + 1);
		buf_free(&b);
	}
}

TEST(buf_consume_frees_room_under_the_limit)
{
	struct buf b;
	buf_init(&b, 4);
	CHECK_INT_EQ(buf_puts(&b, "abcd"), 0);
	CHECK_INT_EQ(buf_putc(&b, 'e'), -1);
	buf_consume(&b, 2);
	CHECK_INT_EQ(buf_puts(&b, "ef"), 0);
	CHECK_STR_EQ(buf_str(&b), "cdef");
	buf_free(&b);
}

TEST(buf_reset_keeps_the_allocation)
{
	struct buf b;
	buf_init(&b, 64);
	buf_puts(&b, "something");
	char *p = b.p;
	size_t cap = b.cap;
	buf_reset(&b);
	CHECK_INT_EQ(b.len, 0);
	CHECK_STR_EQ(buf_str(&b), "");
	CHECK(b.p == p);
	CHECK_INT_EQ(b.cap, cap);
	buf_puts(&b, "again");
	CHECK_STR_EQ(buf_str(&b), "again");
	buf_free(&b);
	/* Reset of a never-used buffer. */
	buf_init(&b, 64);
	buf_reset(&b);
	CHECK_STR_EQ(buf_str(&b), "");
	buf_free(&b);
}

TEST(buf_steal_transfers_ownership)
{
	struct buf b;
	buf_init(&b, 64);
	buf_puts(&b, "owned");
	char *s = buf_steal(&b);
	CHECK_STR_EQ(s, "owned");
	CHECK_NULL(b.p);
	CHECK_INT_EQ(b.len, 0);
	CHECK_INT_EQ(b.cap, 0);
	CHECK_STR_EQ(buf_str(&b), "");
	/* The buffer keeps its limit and works again. */
	CHECK_INT_EQ(b.max, 64);
	CHECK_INT_EQ(buf_puts(&b, "new"), 0);
	CHECK_STR_EQ(buf_str(&b), "new");
	free(s);
	buf_free(&b);
}

TEST(buf_steal_of_an_empty_buffer_is_an_empty_string)
{
	struct buf b;
	buf_init(&b, 64);
	char *s = buf_steal(&b);
	REQUIRE_NOT_NULL(s);
	CHECK_STR_EQ(s, "");
	free(s);
	buf_free(&b);
}

/* json_to_buf keeps buf.h's contract: an append that fails leaves the buffer as it was, length and
 * bytes, and the buffer stays usable. Each row takes a different way to the failure: an empty
 * buffer (no spare room: the text is streamed in pieces until the limit stops it), text that fits
 * the spare room of the allocation but not the limit, and text larger than both. */
TEST(json_to_buf_that_fails_leaves_the_buffer_unchanged)
{
	static const struct {
		size_t max;
		const char *prefix; /* NULL: nothing appended before, nothing allocated */
		size_t items;       /* ["abcd",...]: 7 bytes per item + 1 */
	} rows[] = {
		{ 10, NULL, 10 },
		{ 100, "data: ", 20 },
		{ 300, "data: ", 80 },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("max %zu, prefix %s, %zu items", rows[i].max,
			  rows[i].prefix ? rows[i].prefix : "(none)", rows[i].items);
		json_t *arr = json_array();
		for (size_t k = 0; k < rows[i].items; k++)
			json_array_append_new(arr, json_string("abcd"));
		const char *prefix = rows[i].prefix ? rows[i].prefix : "";
		struct buf b;
		buf_init(&b, rows[i].max);
		if (rows[i].prefix)
			REQUIRE_INT_EQ(buf_puts(&b, prefix), 0);
		CHECK_INT_EQ(json_to_buf(arr, &b), -1);
		CHECK_INT_EQ(b.len, strlen(prefix));
		CHECK_STR_EQ(buf_str(&b), prefix);
		if (b.p)
			CHECK_INT_EQ(b.p[b.len], '\0');
		/* A value that fits still goes after the old content. */
		json_t *small = json_pack("[i]", 1);
		CHECK_INT_EQ(json_to_buf(small, &b), 0);
		char want[32];
		snprintf(want, sizeof(want), "%s[1]", prefix);
		CHECK_STR_EQ(buf_str(&b), want);
		json_decref(small);
		json_decref(arr);
		buf_free(&b);
	}
}
