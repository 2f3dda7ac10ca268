/* keysnap.c - the key table and its snapshot file (see keysnap.h).
 *
 * The table is a sorted array: a router has tens to thousands of keys, refreshed at most once a
 * second, looked up on every request. Reading a snapshot accepts only a complete file of the
 * current format; anything else (truncated, edited, another version) is refused whole.
 */
#include "keysnap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "util.h"

#define KEYSNAP_HEADER "llm-router key snapshot 1"
/* A line: id (<= 15), hash (64), two times, the agent encoded (at most 3 x its bytes). */
#define KEYSNAP_MAX_AGENT 256

void key_table_free(struct key_table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].agent);
	free(t->v);
	memset(t, 0, sizeof(*t));
}

static int is_hex64(const char *h)
{
	if (strlen(h) != 64)
		return 0;
	for (int i = 0; i < 64; i++)
		if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
			return 0;
	return 1;
}

static int valid_id(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n >= sizeof(((struct key_entry *)0)->id))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (id[i] <= ' ' || id[i] == 0x7f)
			return 0;
	return 1;
}

/* Index of id, or of where it would go (*found says which). */
static size_t find_pos(const struct key_table *t, const char *id, int *found)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(t->v[mid].id, id);
		if (c == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = 0;
	return lo;
}

int key_table_put(struct key_table *t, const char *id, const char *hash, int64_t created_ms,
		  int64_t revoked_ms, const char *agent)
{
	if (!valid_id(id) || !hash || !is_hex64(hash) || !agent || strlen(agent) > KEYSNAP_MAX_AGENT)
		return -1;
	int found;
	size_t at = find_pos(t, id, &found);
	if (!found) {
		if (t->n == t->cap) {
			t->cap = t->cap ? t->cap * 2 : 16;
			t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
		}
		memmove(t->v + at + 1, t->v + at, (t->n - at) * sizeof(*t->v));
		t->n++;
		memset(&t->v[at], 0, sizeof(t->v[at]));
		snprintf(t->v[at].id, sizeof(t->v[at].id), "%s", id);
	}
	struct key_entry *e = &t->v[at];
	memcpy(e->hash, hash, 65);
	e->created_ms = created_ms;
	e->revoked_ms = revoked_ms > 0 ? revoked_ms : 0;
	free(e->agent);
	e->agent = xstrdup(agent);
	return 0;
}

const struct key_entry *key_table_find(const struct key_table *t, const char *id)
{
	int found;
	size_t at = find_pos(t, id, &found);
	return found ? &t->v[at] : NULL;
}

int key_table_equal(const struct key_table *a, const struct key_table *b)
{
	if (a->n != b->n)
		return 0;
	for (size_t i = 0; i < a->n; i++) {
		const struct key_entry *x = &a->v[i], *y = &b->v[i];
		if (strcmp(x->id, y->id) != 0 || strcmp(x->hash, y->hash) != 0 ||
		    x->created_ms != y->created_ms || x->revoked_ms != y->revoked_ms ||
		    strcmp(x->agent, y->agent) != 0)
			return 0;
	}
	return 1;
}

char *keysnap_path(const char *db_path)
{
	const char *slash = strrchr(db_path, '/');
	if (!slash)
		return xstrdup(KEYSNAP_NAME);
	return xasprintf("%.*s/%s", (int)(slash - db_path), db_path, KEYSNAP_NAME);
}

/* ---- the file ---- */

static void put_agent(struct buf *b, const char *agent)
{
	for (const unsigned char *p = (const unsigned char *)agent; *p; p++) {
		if (*p <= ' ' || *p == '%' || *p == 0x7f)
			buf_printf(b, "%%%02X", *p);
		else
			buf_putc(b, (char)*p);
	}
}

/* Decodes the agent field in place; -1 on a bad escape or an empty name. */
static int get_agent(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (*r != '%') {
			*w++ = *r;
			continue;
		}
		int hi = hex_digit(r[1]), lo = hi < 0 ? -1 : hex_digit(r[2]);
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			return -1;
		*w++ = (char)(hi * 16 + lo);
		r += 2;
	}
	*w = '\0';
	return w == s ? -1 : 0;
}

static int parse_i64(const char *s, int64_t *out)
{
	long long v;
	if (parse_ll(s, &v) < 0 || v < 0)
		return -1;
	*out = (int64_t)v;
	return 0;
}

/* One key line into t; -1 when it is malformed. */
static int parse_line(char *line, struct key_table *t)
{
	char *f[5];
	char *save = NULL;
	int n = 0;
	for (char *tok = strtok_r(line, " ", &save); tok && n < 5; tok = strtok_r(NULL, " ", &save))
		f[n++] = tok;
	if (n != 5 || strtok_r(NULL, " ", &save))
		return -1;
	int64_t created, revoked;
	if (parse_i64(f[2], &created) < 0 || parse_i64(f[3], &revoked) < 0 || get_agent(f[4]) < 0)
		return -1;
	if (key_table_find(t, f[0]))
		return -1;
	return key_table_put(t, f[0], f[1], created, revoked, f[4]);
}

static int parse_snapshot(char *text, struct key_table *t)
{
	char *save = NULL;
	char *line = strtok_r(text, "\n", &save);
	if (!line || strcmp(line, KEYSNAP_HEADER) != 0)
		return -1;
	while ((line = strtok_r(NULL, "\n", &save))) {
		if (strncmp(line, "end ", 4) == 0) {
			long long n;
			if (parse_ll(line + 4, &n) < 0 || n < 0 || (size_t)n != t->n)
				return -1;
			return strtok_r(NULL, "\n", &save) ? -1 : 0;
		}
		if (parse_line(line, t) < 0)
			return -1;
	}
	return -1;
}

int keysnap_read(const char *path, struct key_table *t, char *errbuf, size_t errsz)
{
	key_table_free(t);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(errbuf, errsz, "cannot open %s: %s", path, strerror(e));
		errno = e;
		return -1;
	}
	struct buf b;
	buf_init(&b, 64u << 20);
	char chunk[8192];
	ssize_t r;
	int rc = 0;
	while ((r = read(fd, chunk, sizeof(chunk))) > 0) {
		if (buf_append(&b, chunk, (size_t)r) < 0) {
			r = -1;
			errno = EFBIG;
			break;
		}
	}
	size_t len = b.len;
	char *text = buf_steal(&b);
	if (r < 0) {
		snprintf(errbuf, errsz, "cannot read %s: %s", path, strerror(errno));
		rc = -1;
	} else if (memchr(text, '\0', len) || parse_snapshot(text, t) < 0) {
		snprintf(errbuf, errsz, "%s is not a complete key snapshot: ignored", path);
		key_table_free(t);
		rc = -1;
	}
	close(fd);
	free(text);
	if (rc < 0)
		errno = EINVAL;
	return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int keysnap_write(const char *path, const struct key_table *t, const char *owner_of, char *errbuf,
		  size_t errsz)
{
	struct buf b;
	buf_init(&b, BUF_UNLIMITED);
	buf_printf(&b, "%s\n", KEYSNAP_HEADER);
	for (size_t i = 0; i < t->n; i++) {
		const struct key_entry *e = &t->v[i];
		buf_printf(&b, "%s %s %lld %lld ", e->id, e->hash, (long long)e->created_ms,
			   (long long)e->revoked_ms);
		put_agent(&b, e->agent);
		buf_putc(&b, '\n');
	}
	buf_printf(&b, "end %zu\n", t->n);
	/* Unique per writer: threads of one process may write at once (a first start's mark and
	 * a refresh). */
	static unsigned seq;
	char *tmp = xasprintf("%s.tmp-%ld-%u", path, (long)getpid(),
			      __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
	int rc = -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(errbuf, errsz, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	struct stat os;
	if (geteuid() == 0 && owner_of && stat(owner_of, &os) == 0 && fchown(fd, os.st_uid, os.st_gid) < 0) {
		/* Best effort: the file stays root's, which the router can still replace. */
	}
	if (write_all(fd, buf_str(&b), b.len) < 0 || fsync(fd) < 0) {
		snprintf(errbuf, errsz, "cannot write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		snprintf(errbuf, errsz, "cannot replace %s: %s", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	rc = 0;
out:
	free(tmp);
	buf_free(&b);
	return rc;
}

#define KEYSNAP_LOCK_WAIT_MS 2000

int keysnap_lock(const char *path, char *errbuf, size_t errsz)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0)
		return -1;
	for (int waited = 0;; waited++) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return fd;
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK) {
			close(fd);
			return -1;
		}
		if (waited >= KEYSNAP_LOCK_WAIT_MS) {
			snprintf(errbuf, errsz, "another process held the lock of %s for %d ms", path,
				 KEYSNAP_LOCK_WAIT_MS);
			close(fd);
			return -2;
		}
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
}

void keysnap_unlock(int fd)
{
	if (fd >= 0)
		close(fd);   /* releases the flock */
}
