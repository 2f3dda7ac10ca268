/* test_util.c - utf8_sanitize, random_id, parse_ll, mem_ct_eq, str_ieq, str_has_prefix. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "http.h"
#include "log.h"
#include "util.h"

TEST(utf8_sanitize_table)
{
	static const struct {
		const char *name;
		const char *in;
		const char *out;
	} rows[] = {
		{ "empty", "", "" },
		{ "ascii", "plain ASCII text\t\n", "plain ASCII text\t\n" },
		{ "2-byte", "caf\xC3\xA9", "caf\xC3\xA9" },
		{ "3-byte", "\xE2\x82\xAC 5", "\xE2\x82\xAC 5" },
		{ "4-byte", "\xF0\x9F\x98\x80!", "\xF0\x9F\x98\x80!" },
		{ "max code point U+10FFFF", "\xF4\x8F\xBF\xBF", "\xF4\x8F\xBF\xBF" },
		{ "U+FFFF", "\xEF\xBF\xBF", "\xEF\xBF\xBF" },
		{ "lone continuation byte", "a\x80" "b", "a?b" },
		{ "two continuation bytes", "\xBF\xBF", "??" },
		{ "invalid lead 0xFF", "x\xFFy", "x?y" },
		{ "invalid lead 0xF8", "\xF8\x88\x80\x80\x80", "?????" },
		{ "overlong 2-byte C0 80", "\xC0\x80", "??" },
		{ "overlong 2-byte C1 BF", "\xC1\xBF", "??" },
		{ "overlong 3-byte E0 80 80", "\xE0\x80\x80", "???" },
		{ "overlong 4-byte F0 80 80 80", "\xF0\x80\x80\x80", "????" },
		{ "surrogate D800", "\xED\xA0\x80", "???" },
		{ "surrogate DFFF", "\xED\xBF\xBF", "???" },
		{ "above U+10FFFF", "\xF4\x90\x80\x80", "????" },
		{ "lead F5", "\xF5\x80\x80\x80", "????" },
		{ "2-byte lead then ASCII", "\xC3" "A", "?A" },
		{ "3-byte lead missing the last byte then ASCII", "\xE2\x82" "A", "??A" },
		{ "lead followed by another valid sequence", "\xC3\xC3\xA9", "?\xC3\xA9" },
		{ "truncated 2-byte at the end", "ok\xC3", "ok?" },
		{ "truncated 3-byte at the end", "ok\xE2\x82", "ok??" },
		{ "truncated 4-byte at the end", "ok\xF0\x9F\x98", "ok???" },
		{ "valid after invalid", "\xFF\xE2\x82\xAC", "?\xE2\x82\xAC" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("%s", rows[i].name);
		char s[64];
		snprintf(s, sizeof(s), "%s", rows[i].in);
		utf8_sanitize(s);
		CHECK_STR_EQ(s, rows[i].out);
		CHECK_INT_EQ(strlen(s), strlen(rows[i].in));
	}
}

TEST(utf8_sanitize_never_reads_past_the_terminator)
{
	/* A lead byte right before the NUL, with bytes after the NUL that look like continuations:
	 * they must not be consumed. */
	char s[8] = { 'a', (char)0xE2, '\0', (char)0x82, (char)0xAC, '\0' };
	utf8_sanitize(s);
	CHECK_STR_EQ(s, "a?");
	CHECK_INT_EQ((unsigned char)s[3], 0x82);
	CHECK_INT_EQ((unsigned char)s[4], 0xAC);
}

static int is_base62(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

TEST(random_id_shape)
{
	char id[64];
	random_id(id, sizeof(id), "chatcmpl-", 29);
	CHECK_INT_EQ(strlen(id), 9 + 29);
	CHECK(strncmp(id, "chatcmpl-", 9) == 0);
	int all = 1;
	for (size_t i = 9; i < strlen(id); i++)
		all &= is_base62(id[i]);
	CHECK(all);
	/* Two ids differ. */
	char id2[64];
	random_id(id2, sizeof(id2), "chatcmpl-", 29);
	CHECK(strcmp(id, id2) != 0);
}

TEST(random_id_uses_the_whole_alphabet_over_many_draws)
{
	/* 100 draws of 62 characters: every base62 character shows up (a failure here is a
	 * 1-in-10^20 event for a uniform source). */
	int seen[128] = { 0 };
	char id[80];
	for (int i = 0; i < 100; i++) {
		random_id(id, sizeof(id), "", 62);
		for (const char *p = id; *p; p++)
			seen[(unsigned char)*p] = 1;
	}
	int count = 0;
	for (int c = 0; c < 128; c++)
		count += seen[c];
	CHECK_INT_EQ(count, 62);
}

TEST(random_id_truncates_to_the_output_size)
{
	char id[12];
	memset(id, 'X', sizeof(id));
	random_id(id, sizeof(id), "req-", 29);
	CHECK_INT_EQ(strlen(id), sizeof(id) - 1);
	CHECK(strncmp(id, "req-", 4) == 0);

	char tiny[4];
	random_id(tiny, sizeof(tiny), "prefix-", 10);
	CHECK_INT_EQ(strlen(tiny), 3);
	CHECK_STR_EQ(tiny, "pre");

	char one[1] = { 'X' };
	random_id(one, sizeof(one), "p", 5);
	CHECK_INT_EQ(one[0], '\0');

	char none[4] = "abc";
	random_id(none, 0, "p", 5); /* nothing written */
	CHECK_STR_EQ(none, "abc");

	char nrand0[16];
	random_id(nrand0, sizeof(nrand0), "only", 0);
	CHECK_STR_EQ(nrand0, "only");
}

TEST(parse_ll_table)
{
	static const struct {
		const char *in;
		int rc;
		long long v;
	} rows[] = {
		{ "0", 0, 0 },
		{ "42", 0, 42 },
		{ "-7", 0, -7 },
		{ "000123", 0, 123 },
		{ "9223372036854775807", 0, 9223372036854775807LL },
		{ "-9223372036854775808", 0, (-9223372036854775807LL - 1) },
		{ "9223372036854775808", -1, 0 },   /* overflow */
		{ "-9223372036854775809", -1, 0 },  /* underflow */
		{ "", -1, 0 },
		{ "-", -1, 0 },
		{ "abc", -1, 0 },
		{ "12abc", -1, 0 },
		{ "1.5", -1, 0 },
		{ "0x10", -1, 0 },
		{ "1e3", -1, 0 },
		{ "42 ", -1, 0 },
		{ "4 2", -1, 0 },
		/* "Strict decimal parse of the whole string": leading white space is not part of a
		 * decimal number either. */
		{ " 42", -1, 0 },
		{ "\t42", -1, 0 },
		{ "\n42", -1, 0 },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("parse_ll(\"%s\")", rows[i].in);
		long long v = 1234;
		int rc = parse_ll(rows[i].in, &v);
		CHECK_INT_EQ(rc, rows[i].rc);
		if (rows[i].rc == 0)
			CHECK_INT_EQ(v, rows[i].v);
	}
	test_case(NULL);
	long long v = 5;
	CHECK_INT_EQ(parse_ll(NULL, &v), -1);
}

TEST(mem_ct_eq_table)
{
	static const struct {
		const char *a;
		size_t alen;
		const char *b;
		size_t blen;
		int eq;
	} rows[] = {
		{ "secret", 6, "secret", 6, 1 },
		{ "secret", 6, "secreT", 6, 0 },
		{ "secret", 6, "Secret", 6, 0 },
		{ "secret", 6, "secret!", 7, 0 },
		{ "secret!", 7, "secret", 6, 0 },
		{ "", 0, "", 0, 1 },
		{ "", 0, "a", 1, 0 },
		{ "a", 1, "", 0, 0 },
		/* Shorter input padded with zeros must not compare equal to a zero-padded longer one. */
		{ "ab\0", 3, "ab", 2, 0 },
		{ "a\0b", 3, "a\0b", 3, 1 },
		{ "a\0b", 3, "a\0c", 3, 0 },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("row %zu", i);
		CHECK_INT_EQ(mem_ct_eq(rows[i].a, rows[i].alen, rows[i].b, rows[i].blen), rows[i].eq);
	}
}

TEST(str_ieq_table)
{
	static const struct {
		const char *a, *b;
		int eq;
	} rows[] = {
		{ "Content-Type", "content-type", 1 },
		{ "X-AGENT-NAME", "x-agent-name", 1 },
		{ "abc", "abc", 1 },
		{ "", "", 1 },
		{ "abc", "abcd", 0 },
		{ "abcd", "abc", 0 },
		{ "abc", "", 0 },
		{ "abc", "abd", 0 },
		{ "[", "{", 0 },           /* 0x5B vs 0x7B: only letters fold */
		{ "@", "`", 0 },
		{ "\xC3\x89", "\xC3\xA9", 0 }, /* ASCII only */
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("str_ieq(\"%s\", \"%s\")", rows[i].a, rows[i].b);
		CHECK_INT_EQ(str_ieq(rows[i].a, rows[i].b), rows[i].eq);
		CHECK_INT_EQ(str_ieq(rows[i].b, rows[i].a), rows[i].eq);
	}
}

TEST(str_has_prefix_table)
{
	CHECK(str_has_prefix("openrouter/x/y", "openrouter/"));
	CHECK(str_has_prefix("abc", ""));
	CHECK(str_has_prefix("abc", "abc"));
	CHECK(!str_has_prefix("ab", "abc"));
	CHECK(!str_has_prefix("Abc", "abc"));
}

TEST(url_decode_table)
{
	static const struct {
		const char *in, *out;
	} rows[] = {
		{ "gpt-4o", "gpt-4o" },
		{ "openrouter%2Fopenai%2Fgpt-4o", "openrouter/openai/gpt-4o" },
		{ "a%2fb", "a/b" },
		{ "%41%42%43", "ABC" },
		{ "", "" },
		{ "100%25", "100%" },
		{ "plus+stays", "plus+stays" },
		{ "%", NULL },
		{ "%4", NULL },
		{ "abc%", NULL },
		{ "%zz", NULL },
		{ "%4g", NULL },
		{ "%00", NULL },   /* a NUL byte is refused */
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("url_decode(\"%s\")", rows[i].in);
		char *s = url_decode(rows[i].in);
		CHECK_STR_EQ(s, rows[i].out);
		free(s);
	}
}

TEST(xstrndup_and_xasprintf)
{
	char *s = xstrndup("abcdef", 3);
	CHECK_STR_EQ(s, "abc");
	free(s);
	s = xasprintf("%s-%d", "id", 7);
	CHECK_STR_EQ(s, "id-7");
	free(s);
	s = xasprintf("%s", "");
	CHECK_STR_EQ(s, "");
	free(s);
}

/* ---- control characters in log lines and response headers ---- */

TEST(log_escape_table)
{
	static const struct {
		const char *name, *in, *out;
	} rows[] = {
		{ "plain", "gpt-4o-mini", "gpt-4o-mini" },
		{ "ESC", "a\x1b[31mred", "a\\x1b[31mred" },
		{ "CR LF", "a\r\nb", "a\\x0d\\x0ab" },
		{ "tab and NUL-free C0", "\t\x01\x1f", "\\x09\\x01\\x1f" },
		{ "DEL", "x\x7fy", "x\\x7fy" },
		{ "U+0085 (NEL)", "a\xc2\x85" "b", "a\\u0085b" },
		{ "U+0080 and U+009F", "\xc2\x80\xc2\x9f", "\\u0080\\u009f" },
		{ "U+2028 and U+2029", "a\xe2\x80\xa8" "b\xe2\x80\xa9", "a\\u2028b\\u2029" },
		{ "bidi override U+202E", "\xe2\x80\xae" "x", "\\u202ex" },
		{ "U+00A0 is kept", "\xc2\xa0", "\xc2\xa0" },
		{ "accents and emoji are kept", "caf\xc3\xa9 \xf0\x9f\x98\x80", "caf\xc3\xa9 \xf0\x9f\x98\x80" },
		{ "a lone C1 byte (Latin-1 NEL)", "a\x85" "b", "a\\x85b" },
		{ "truncated sequence", "ok\xe2\x80", "ok\\xe2\\x80" },
		{ "overlong", "\xc0\x8a", "\\xc0\\x8a" },
		{ "backslash is kept", "a\\b", "a\\b" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("%s", rows[i].name);
		char out[128];
		size_t n = log_escape(out, sizeof(out), rows[i].in, strlen(rows[i].in));
		CHECK_STR_EQ(out, rows[i].out);
		CHECK_INT_EQ(n, strlen(rows[i].out));
	}
	test_case(NULL);
}

TEST(log_escape_never_cuts_an_escape_or_a_character)
{
	char out[6];
	CHECK_INT_EQ(log_escape(out, sizeof(out), "ab\x1b", 3), 2);
	CHECK_STR_EQ(out, "ab");
	CHECK_INT_EQ(log_escape(out, sizeof(out), "abc\xc3\xa9", 5), 5);
	CHECK_STR_EQ(out, "abc\xc3\xa9");
	CHECK_INT_EQ(log_escape(out, sizeof(out), "abcd\xc3\xa9", 6), 4);
	CHECK_STR_EQ(out, "abcd");
	CHECK_INT_EQ(log_escape(out, 1, "abc", 3), 0);
	CHECK_STR_EQ(out, "");
}

TEST(resp_header_escapes_control_characters)
{
	struct response resp;
	response_init(&resp, NULL);
	resp_header(&resp, "X-Router-Model", "%s", "m\r\nSet-Cookie: a=b\x1b[2J\xc2\x85\xe2\x80\xa8z");
	CHECK_STR_EQ(buf_str(&resp.headers),
		     "X-Router-Model: m\\x0d\\x0aSet-Cookie: a=b\\x1b[2J\\u0085\\u2028z\r\n");
	response_free(&resp);
}

TEST(url_hide_userinfo_table)
{
	static const struct {
		const char *in, *out;
	} rows[] = {
		{ "http://alice:secret@proxy.example:3128", "http://***@proxy.example:3128" },
		{ "http://alice:p@ss@proxy.example:3128", "http://***@proxy.example:3128" },
		{ "http://alice:pa#ss/x@proxy.example:3128", "http://***@proxy.example:3128" },
		{ "alice:pw@proxy:3128", "***@proxy:3128" },
		{ "https://u:BaseUrlPw@gw.example/v1", "https://***@gw.example/v1" },
		{ "https://api.openai.com/v1", "https://api.openai.com/v1" },
		{ "socks5h://127.0.0.1:1080", "socks5h://127.0.0.1:1080" },
		{ "", "" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("url_hide_userinfo(\"%s\")", rows[i].in);
		char out[128];
		url_hide_userinfo(rows[i].in, out, sizeof(out));
		CHECK_STR_EQ(out, rows[i].out);
	}
	char small[8];
	url_hide_userinfo("http://alice:secret@proxy.example:3128", small, sizeof(small));
	CHECK(strstr(small, "secret") == NULL && strstr(small, "alice") == NULL);
}

/* libcurl's error text may quote a proxy or URL whole ("Unsupported proxy syntax in '...'"). */
TEST(redact_url_userinfo_in_error_text)
{
	static const struct {
		const char *text, *url, *out;
	} rows[] = {
		{ "Unsupported proxy syntax in 'http://alice:p@ss@proxy.example:3128'",
		  "http://alice:p@ss@proxy.example:3128",
		  "Unsupported proxy syntax in 'http://***@proxy.example:3128'" },
		{ "Unsupported proxy scheme for 'htps://alice:SecretPw1@proxy:3128'",
		  "htps://alice:SecretPw1@proxy:3128",
		  "Unsupported proxy scheme for 'htps://***@proxy:3128'" },
		/* the credentials alone, however they are quoted */
		{ "login alice:SecretPw1 refused", "http://alice:SecretPw1@proxy:3128",
		  "login *************** refused" },
		{ "Could not resolve proxy: proxy.example", "http://alice:SecretPw1@proxy.example:3128",
		  "Could not resolve proxy: proxy.example" },
		{ "Failed to connect", "", "Failed to connect" },
		{ "Failed to connect", NULL, "Failed to connect" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("%s", rows[i].text);
		char text[256];
		snprintf(text, sizeof(text), "%s", rows[i].text);
		redact_url_userinfo(text, sizeof(text), rows[i].url);
		CHECK_STR_EQ(text, rows[i].out);
	}
}
