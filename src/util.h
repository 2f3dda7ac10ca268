/* util.h - allocation that aborts on out-of-memory, clocks, randomness and small string helpers.
 *
 * Out-of-memory is the one failure the router does not try to survive: x*alloc print a line and
 * abort, so every other error path is kept for real failures (network, provider, database, input).
 * They serve small, bounded allocations; what a client or a provider can make large lives in a
 * struct buf, whose growth fails the one call instead (buf.h).
 */
#ifndef ROUTER_UTIL_H
#define ROUTER_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic clock in microseconds (for latencies). */
int64_t clock_mono_us(void);
/* Wall clock in milliseconds since the epoch. Tests may shift it by LLM_ROUTER_CLOCK_OFFSET_S
 * seconds (read once; every process given the same offset agrees on the time), e.g. to cross a
 * 00:00 UTC budget reset. */
int64_t clock_wall_ms(void);

/* Fills buf with n cryptographically random bytes (getrandom). */
void random_bytes(void *buf, size_t n);
/* Writes prefix followed by `nrand` random base62 characters and a NUL into out (size outsz). */
void random_id(char *out, size_t outsz, const char *prefix, size_t nrand);

/* A request id: prefix, the time in milliseconds (8 base62 digits, so ids sort by time and the
 * database index on them grows at its end) and `nrand` random base62 characters. */
void request_id_new(char *out, size_t outsz, const char *prefix, size_t nrand);

/* Strict decimal parse of the whole string into a long long; returns 0 or -1. */
int parse_ll(const char *s, long long *out);

/* The code point of the valid UTF-8 sequence at p (at most n bytes, n >= 1) and its length in
 * *len, or -1 when p does not start one (overlong forms, surrogates and values past U+10FFFF are
 * invalid). */
long utf8_decode(const unsigned char *p, size_t n, size_t *len);
/* Replaces every byte that is not part of valid UTF-8 (including a sequence cut short at the end)
 * with '?', in place, so the string can always be turned into a JSON string. */
void utf8_sanitize(char *s);
/* Whether s is valid UTF-8 throughout. */
int utf8_valid(const char *s);

/* The value of one hexadecimal digit (either case), or -1. */
int hex_digit(char c);
/* Decodes %XX escapes of a URL path segment into a new string; NULL if an escape is malformed
 * or decodes to a NUL byte. */
char *url_decode(const char *s);

/* url with its user name and password shown as three stars ("http://" "***@proxy:3128"), into
 * out (cut to outsz). The credentials run from after "scheme://" (or the start) to the last '@', so an
 * unencoded '@', '#' or '/' in a password is hidden too. */
void url_hide_userinfo(const char *url, char *out, size_t outsz);
/* In text (NUL-terminated, in a buffer of cap bytes): every copy of url becomes its
 * url_hide_userinfo form, and every copy of its credentials ("user:password") or of the password
 * alone is masked with '*'. For libcurl's error text, which may quote a proxy or URL whole. */
void redact_url_userinfo(char *text, size_t cap, const char *url);

/* Creates the directories leading to path (mode 0750); returns 0, or -1 if one could not be made. */
int mkdir_parents(const char *path);

/* s, or "" when s is NULL. */
const char *str_or_empty(const char *s);
int str_has_prefix(const char *s, const char *prefix);
/* Case-insensitive ASCII comparison of two strings. */
int str_ieq(const char *a, const char *b);
/* Constant-time equality of two byte strings of the given lengths. */
int mem_ct_eq(const void *a, size_t alen, const void *b, size_t blen);

#endif
