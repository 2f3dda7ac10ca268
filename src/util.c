/* util.c - aborting allocators, clocks, randomness and string helpers (see util.h). */
#include "util.h"

#include <errno.h>
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static void oom(size_t n)
{
	fprintf(stderr, "[fatal] llm-router: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom(0);
	char *p = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

int64_t clock_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t clock_wall_ms(void)
{
	static int64_t offset_ms;
	static int offset_read;
	if (!__atomic_load_n(&offset_read, __ATOMIC_ACQUIRE)) {
		const char *f = getenv("LLM_ROUTER_CLOCK_OFFSET_S");
		long long v;
		int64_t off = 0;
		if (f && parse_ll(f, &v) == 0 && v > -(1LL << 40) && v < (1LL << 40))
			off = (int64_t)v * 1000;
		__atomic_store_n(&offset_ms, off, __ATOMIC_RELAXED);
		__atomic_store_n(&offset_read, 1, __ATOMIC_RELEASE);
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
	       __atomic_load_n(&offset_ms, __ATOMIC_RELAXED);
}

void random_bytes(void *buf, size_t n)
{
	unsigned char *p = buf;
	while (n > 0) {
		ssize_t r = getrandom(p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "[fatal] llm-router: getrandom failed: %s\n", strerror(errno));
			abort();
		}
		p += r;
		n -= (size_t)r;
	}
}

void random_id(char *out, size_t outsz, const char *prefix, size_t nrand)
{
	static const char alphabet[] =
		"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	size_t plen = strlen(prefix);
	if (outsz == 0)
		return;
	if (plen + nrand + 1 > outsz)
		nrand = outsz > plen + 1 ? outsz - plen - 1 : 0;
	if (plen >= outsz)
		plen = outsz - 1;
	memcpy(out, prefix, plen);
	unsigned char rnd[64];
	size_t done = 0;
	while (done < nrand) {
		size_t chunk = nrand - done < sizeof(rnd) ? nrand - done : sizeof(rnd);
		random_bytes(rnd, chunk);
		for (size_t i = 0; i < chunk; i++)
			out[plen + done + i] = alphabet[rnd[i] % 62];
		done += chunk;
	}
	out[plen + nrand] = '\0';
}

void request_id_new(char *out, size_t outsz, const char *prefix, size_t nrand)
{
	static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	char t[9];
	uint64_t ms = (uint64_t)clock_wall_ms();
	for (int i = 7; i >= 0; i--) {
		t[i] = digits[ms % 62];
		ms /= 62;
	}
	t[8] = '\0';
	char pre[64];
	snprintf(pre, sizeof(pre), "%s%s", prefix, t);
	random_id(out, outsz, pre, nrand);
}

int parse_ll(const char *s, long long *out)
{
	/* strtoll would skip leading white space: the whole string must be the number. */
	if (!s || !(*s == '-' || *s == '+' || (*s >= '0' && *s <= '9')))
		return -1;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end != '\0' || end == s)
		return -1;
	*out = v;
	return 0;
}

const char *str_or_empty(const char *s)
{
	return s ? s : "";
}

int str_has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

int str_ieq(const char *a, const char *b)
{
	for (; *a && *b; a++, b++) {
		char ca = (*a >= 'A' && *a <= 'Z') ? (char)(*a + 32) : *a;
		char cb = (*b >= 'A' && *b <= 'Z') ? (char)(*b + 32) : *b;
		if (ca != cb)
			return 0;
	}
	return *a == *b;
}

int mem_ct_eq(const void *a, size_t alen, const void *b, size_t blen)
{
	const unsigned char *x = a, *y = b;
	size_t n = alen > blen ? alen : blen;
	unsigned char diff = (unsigned char)(alen != blen);
	for (size_t i = 0; i < n; i++) {
		unsigned char cx = i < alen ? x[i] : 0;
		unsigned char cy = i < blen ? y[i] : 0;
		diff |= (unsigned char)(cx ^ cy);
	}
	return diff == 0;
}

long utf8_decode(const unsigned char *p, size_t n, size_t *len)
{
	unsigned char c = p[0];
	size_t need;
	unsigned long min;
	if (c < 0x80) {
		*len = 1;
		return c;
	} else if ((c & 0xE0) == 0xC0) {
		need = 1;
		min = 0x80;
	} else if ((c & 0xF0) == 0xE0) {
		need = 2;
		min = 0x800;
	} else if ((c & 0xF8) == 0xF0) {
		need = 3;
		min = 0x10000;
	} else {
		return -1;
	}
	if (need >= n)
		return -1;
	unsigned long cp = c & (0x3Fu >> need);
	for (size_t i = 1; i <= need; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return -1;
		cp = (cp << 6) | (p[i] & 0x3Fu);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return -1;
	*len = need + 1;
	return (long)cp;
}

void utf8_sanitize(char *s)
{
	unsigned char *p = (unsigned char *)s;
	while (*p) {
		size_t len;
		/* A NUL ends the string before any sequence could run past it: it is no continuation
		 * byte, so utf8_decode stops there. */
		if (utf8_decode(p, SIZE_MAX, &len) < 0)
			*p++ = '?';
		else
			p += len;
	}
}

int utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		size_t len;
		if (utf8_decode(p, SIZE_MAX, &len) < 0)
			return 0;
		p += len;
	}
	return 1;
}

int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *url_decode(const char *s)
{
	size_t n = strlen(s);
	char *out = xmalloc(n + 1);
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '%') {
			out[j++] = s[i];
			continue;
		}
		int hi = i + 2 < n ? hex_digit(s[i + 1]) : -1;
		int lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
			free(out);
			return NULL;
		}
		out[j++] = (char)(hi * 16 + lo);
		i += 2;
	}
	out[j] = '\0';
	return out;
}

/* Where url's credentials start (after "scheme://", or at the start) and the '@' that ends them;
 * NULL when it has none. */
static const char *userinfo_end(const char *url, const char **start)
{
	const char *sep = strstr(url, "://");
	*start = sep ? sep + 3 : url;
	return strrchr(*start, '@');
}

void url_hide_userinfo(const char *url, char *out, size_t outsz)
{
	if (!outsz)
		return;
	const char *start;
	const char *at = userinfo_end(url, &start);
	if (!at)
		snprintf(out, outsz, "%s", url);
	else
		snprintf(out, outsz, "%.*s***%s", (int)(start - url), url, at);
}

/* Masks every copy of the n bytes at s in text with '*' (n of 4 or more). */
static void mask_all(char *text, const char *s, size_t n)
{
	if (n < 4)
		return;
	char *p = text;
	while ((p = memmem(p, strlen(p), s, n)) != NULL) {
		memset(p, '*', n);
		p += n;
	}
}

void redact_url_userinfo(char *text, size_t cap, const char *url)
{
	if (!text || !cap || !url)
		return;
	const char *start;
	const char *at = userinfo_end(url, &start);
	if (!at)
		return;
	size_t ulen = strlen(url);
	size_t hlen = ulen + 4;
	char *hidden = malloc(hlen);
	size_t tlen = strlen(text);
	/* A copy of url (1 byte or more) becomes at most 3 bytes longer: 4 times the text at most. */
	char *out = malloc(4 * tlen + 1);
	if (!hidden || !out) {
		free(hidden);
		free(out);
		memset(text, '*', tlen);    /* nothing can be shown safely */
		return;
	}
	url_hide_userinfo(url, hidden, hlen);
	size_t n = 0;
	for (const char *p = text; *p;) {
		const char *hit = strstr(p, url);
		size_t keep = hit ? (size_t)(hit - p) : strlen(p);
		memcpy(out + n, p, keep);
		n += keep;
		if (!hit)
			break;
		n += (size_t)snprintf(out + n, hlen, "%s", hidden);
		p = hit + ulen;
	}
	out[n] = '\0';
	snprintf(text, cap, "%s", out);
	free(out);
	free(hidden);
	mask_all(text, start, (size_t)(at - start));
	const char *colon = memchr(start, ':', (size_t)(at - start));
	if (colon)
		mask_all(text, colon + 1, (size_t)(at - colon - 1));
}

int mkdir_parents(const char *path)
{
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	int rc = 0;
	if (slash && slash != dir) {
		*slash = '\0';
		for (char *p = dir + 1; *p; p++) {
			if (*p != '/')
				continue;
			*p = '\0';
			if (mkdir(dir, 0750) < 0 && errno != EEXIST)
				rc = -1;
			*p = '/';
		}
		if (mkdir(dir, 0750) < 0 && errno != EEXIST)
			rc = -1;
	}
	free(dir);
	return rc;
}
