/* reqlog_jsonl.c - the JSONL fallback file: a request-log row appended when the database cannot
 * take it, and the file imported into the database once it can (replay).
 *
 * The file is opened with O_APPEND for every record and each record is one complete line written
 * by a single write(2) under flock(LOCK_EX), so lines from concurrent threads and processes never
 * interleave. A replay moves the file aside under that lock before importing it (new rows go to a
 * new file), commits its rows in short paced transactions (store_pace, store.h), and only then
 * deletes it; a line is the row's JSON form (reqlog_to_json), so it carries every column, the
 * attempts and the tool-call state. Nobody waits for an import: claims take the appenders' lock
 * without blocking, and the moved file is owned by an OFD lock that only other replays look at.
 */
#include "reqlog_jsonl.h"

#include <dirent.h>
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
#include "jsonx.h"
#include "log.h"
#include "store.h"
#include "util.h"

int reqlog_jsonl_append(const char *path, const struct reqlog *r, char *errbuf, size_t errsz)
{
	json_t *o = reqlog_to_json(r);
	struct buf line;
	buf_init(&line, BUF_UNLIMITED);
	json_to_buf(o, &line);
	json_decref(o);
	int rc = reqlog_jsonl_append_line(path, line.p, line.len, errbuf, errsz);
	buf_free(&line);
	return rc;
}

/* Opens path for appending, locked and still the file at path. The directory is never created:
 * a data directory that was removed is not silently replaced by an empty one. Returns the fd. */
static int open_locked(const char *path, char *errbuf, size_t errsz)
{
	for (int tries = 0; tries < 8; tries++) {
		/* Never the directory: a data directory that was removed or renamed away is restored,
		 * not started over (and an operator's `mv data.off data` would nest the old one). */
		int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0) {
			snprintf(errbuf, errsz, "cannot open %s: %s", path, strerror(errno));
			return -1;
		}
		while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
			;
		/* A replay may have moved the file away while we waited for the lock: append to the
		 * file now at path, never to one being imported. */
		struct stat a, b;
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
			return fd;
		close(fd);
	}
	snprintf(errbuf, errsz, "cannot open %s: it keeps being moved", path);
	return -1;
}

/* Under the lock: a file that does not end in a newline holds the start of a line whose writer
 * was killed between a short write and its undo. It is cut back to its last complete line, so
 * that the next record is not glued to it (both would be lost to the replay). Returns the end. */
static off_t cut_partial_tail(int fd, const char *path)
{
	off_t end = lseek(fd, 0, SEEK_END);
	char c;
	if (end <= 0 || pread(fd, &c, 1, end - 1) != 1 || c == '\n')
		return end;
	char chunk[4096];
	off_t pos = end, keep = 0;
	while (pos > 0 && keep == 0) {
		size_t n = pos > (off_t)sizeof(chunk) ? sizeof(chunk) : (size_t)pos;
		pos -= (off_t)n;
		if (pread(fd, chunk, n, pos) != (ssize_t)n)
			return end;
		for (size_t i = n; i > 0 && keep == 0; i--)
			if (chunk[i - 1] == '\n')
				keep = pos + (off_t)i;
	}
	if (ftruncate(fd, keep) < 0) {
		log_error(NULL, "cannot remove the partial line at the end of %s (%s): the next replay "
			  "skips it as unreadable", path, strerror(errno));
		return end;
	}
	log_warn(NULL, "removed a partial line of %lld byte(s) at the end of %s: a process stopped "
		 "while writing it, before its request was answered", (long long)(end - keep), path);
	return keep;
}

int reqlog_jsonl_append_line(const char *path, const char *json, size_t len, char *errbuf,
			     size_t errsz)
{
	struct buf line;
	buf_init(&line, BUF_UNLIMITED);
	buf_append(&line, json, len);
	buf_putc(&line, '\n');
	int rc = -1;
	int fd = open_locked(path, errbuf, errsz);
	if (fd < 0)
		goto out;
	/* Under the lock: where this line starts, so that a short write is undone (a partial line
	 * would glue to the next record and both be lost to the replay). */
	off_t start = cut_partial_tail(fd, path);
	size_t off = 0;
	while (off < line.len) {
		ssize_t w = write(fd, line.p + off, line.len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(errbuf, errsz, "cannot write %s: %s", path, w < 0 ? strerror(errno) : "no space");
			break;
		}
		off += (size_t)w;
	}
	if (off == line.len) {
		rc = 0;
	} else if (off > 0 && start >= 0 && ftruncate(fd, start) < 0) {
		log_error(NULL, "cannot undo a partial line in %s (%s): the next replay skips it as "
			  "unreadable", path, strerror(errno));
	}
	flock(fd, LOCK_UN);
	close(fd);
out:
	buf_free(&line);
	return rc;
}

/* ---- replay ---- */

/* A file being imported belongs to its importer by an open-file-description lock (fcntl
 * F_OFD_SETLK on the moved file), not by the appenders' flock: an appender or a claimer that opened
 * the file just before it was moved waits for one line's flock at most, never for an import. */
static int own(int fd)
{
	struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	return fcntl(fd, F_OFD_SETLK, &l);
}

/* Whether fd is still the file at path. */
static int still_at(int fd, const char *path)
{
	struct stat a, b;
	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

/* The files beside jsonl_path that a replay moved aside and did not finish (NAME.replay-*): a
 * NULL-terminated array of paths, freed by the caller. */
static char **leftovers(const char *jsonl_path)
{
	size_t n = 0;
	char **v = xcalloc(1, sizeof(*v));
	char *dir = xstrdup(jsonl_path);
	char *slash = strrchr(dir, '/');
	const char *base = slash ? slash + 1 : jsonl_path;
	if (slash)
		*slash = '\0';
	DIR *d = opendir(slash ? dir : ".");
	size_t blen = strlen(base);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (strncmp(e->d_name, base, blen) != 0 || strncmp(e->d_name + blen, ".replay-", 8) != 0)
			continue;
		v = xrealloc(v, (n + 2) * sizeof(*v));
		v[n++] = xasprintf("%s/%s", slash ? dir : ".", e->d_name);
		v[n] = NULL;
	}
	if (d)
		closedir(d);
	free(dir);
	return v;
}

static void free_list(char **v)
{
	for (size_t i = 0; v[i]; i++)
		free(v[i]);
	free(v);
}

/* Imports one owned file, in paced transactions (store.h) of at most REPLAY_BATCH rows. Returns 0
 * when every row is committed, 1 when stopped first, -1 when the database failed. */
#define REPLAY_BATCH 500

static int import_file(struct store *st, int fd, const char *name, struct store_pace *pace,
		       struct replay_stats *stats)
{
	int dfd = dup(fd);
	FILE *f = dfd >= 0 ? fdopen(dfd, "r") : NULL;
	if (!f) {
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int in_tx = 0, batch = 0, rc = 0;
	char err[512];
	while (rc == 0 && (n = getline(&line, &cap, f)) > 0) {
		json_error_t je;
		json_t *o = json_loadb(line, (size_t)n, 0, &je);
		struct reqlog r;
		struct attempt_log *att = NULL;
		if (!json_is_object(o) || reqlog_from_json(o, &r, &att) < 0) {
			stats->malformed++;
			log_warn(NULL, "replay of %s: a line that is not a request-log record is skipped "
				 "(%zd bytes)", name, n);
		} else if (!in_tx && store_pace_stopped(pace)) {
			rc = 1;
		} else if (!in_tx && store_pace_begin(st, pace) < 0) {
			snprintf(stats->err, sizeof(stats->err), "%s", store_errmsg(st));
			rc = -1;
		} else {
			in_tx = 1;
			int inserted = store_insert_reqlog_new(st, &r, err, sizeof(err));
			if (inserted < 0) {
				log_error(r.request_id, "replay of %s failed: %s", name, err);
				snprintf(stats->err, sizeof(stats->err), "%s", err);
				rc = -1;
			} else if (inserted) {
				stats->imported++;
			} else {
				stats->already++;
			}
		}
		free(att);
		json_decref(o);
		if (rc == 0 && in_tx && (++batch == REPLAY_BATCH || store_pace_due(pace))) {
			in_tx = 0;
			batch = 0;
			if (store_pace_commit(st, pace) < 0) {
				snprintf(stats->err, sizeof(stats->err), "%s", store_errmsg(st));
				rc = -1;
			}
		}
	}
	if (in_tx) {
		if (rc == 0 && store_pace_commit(st, pace) < 0) {
			snprintf(stats->err, sizeof(stats->err), "%s", store_errmsg(st));
			rc = -1;
		} else if (rc != 0)
			store_rollback(st);
	}
	free(line);
	fclose(f);
	return rc;
}

/* Claims path for replay: under the appenders' lock (waited for briefly: they hold it for one
 * line), and only when no file is left over from an earlier replay, moves it aside to a name of
 * our own and owns it. Returns the fd, or -1. */
#define CLAIM_TRIES 50

static int claim(const char *path, char *moved, size_t movedsz)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int locked = 0;
	for (int i = 0; i < CLAIM_TRIES && !(locked = flock(fd, LOCK_EX | LOCK_NB) == 0); i++) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	char **left = NULL;
	if (!locked || !still_at(fd, path) || (left = leftovers(path))[0]) {
		if (left)
			free_list(left);
		close(fd);    /* moved by somebody else first, or one is still being imported */
		return -1;
	}
	free_list(left);
	snprintf(moved, movedsz, "%s.replay-%ld-%lld", path, (long)getpid(), (long long)clock_wall_ms());
	if (rename(path, moved) < 0 || own(fd) < 0) {
		close(fd);    /* not owned: a replay that found it moved imports it */
		return -1;
	}
	flock(fd, LOCK_UN);
	return fd;
}

/* Imports an owned file and deletes it once every row is committed. Returns import_file's. */
static int replay_one(struct store *st, int fd, const char *name, struct store_pace *pace,
		      struct replay_stats *stats)
{
	int rc = import_file(st, fd, name, pace, stats);
	if (rc == 0) {
		unlink(name);
		stats->files++;
	}
	close(fd);
	return rc;
}

/* Imports the files earlier replays left. Returns -1 when the database failed, 1 when a file is
 * still there (being imported by another process, or stopped), else 0. */
static int replay_leftovers(struct store *st, const char *jsonl_path, struct store_pace *pace,
			    struct replay_stats *stats)
{
	char **files = leftovers(jsonl_path);
	int rc = 0;
	for (size_t i = 0; files[i] && rc >= 0; i++) {
		int fd = open(files[i], O_RDWR | O_CLOEXEC);
		if (fd >= 0 && own(fd) == 0 && still_at(fd, files[i])) {
			log_info(NULL, "resuming the replay of %s", files[i]);
			int r = replay_one(st, fd, files[i], pace, stats);
			if (r != 0)
				rc = r;
		} else {
			if (fd >= 0)
				close(fd);
			if (access(files[i], F_OK) == 0)
				rc = 1;    /* another process is importing it (or it cannot be opened) */
		}
	}
	free_list(files);
	return rc;
}

int reqlog_replay(struct store *st, const char *jsonl_path, const int *stop,
		  struct replay_stats *stats)
{
	memset(stats, 0, sizeof(*stats));
	struct store_pace pace;
	store_pace_init(&pace, stop, REPLAY_BATCH, REPLAY_BATCH);
	/* Files an interrupted or failed replay left: imported first (rows already in the database
	 * are skipped by request id). A new file is claimed only once none is left, so a database
	 * that cannot take rows leaves one moved file at most, however many replays try. */
	int rc = replay_leftovers(st, jsonl_path, &pace, stats);
	if (rc == 0 && !store_pace_stopped(&pace)) {
		char moved[4096];
		int fd = claim(jsonl_path, moved, sizeof(moved));
		if (fd >= 0)
			rc = replay_one(st, fd, moved, &pace, stats);
	}
	if (stats->imported || stats->already || stats->malformed)
		log_info(NULL, "replayed %s: %lld row(s) imported, %lld already in the database, %lld "
			 "unreadable line(s) skipped", jsonl_path, (long long)stats->imported,
			 (long long)stats->already, (long long)stats->malformed);
	return rc < 0 ? -1 : 0;
}

/* Blocks until no process imports one of the files left beside jsonl_path. Returns how many were
 * being imported. */
static int wait_for_importers(const char *jsonl_path)
{
	char **files = leftovers(jsonl_path);
	int waited = 0;
	for (size_t i = 0; files[i]; i++) {
		int fd = open(files[i], O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		if (fcntl(fd, F_OFD_SETLK, &l) < 0) {
			log_info(NULL, "waiting for another process to finish importing %s", files[i]);
			waited++;
			while (fcntl(fd, F_OFD_SETLKW, &l) < 0 && errno == EINTR)
				;
		}
		close(fd);             /* the lock goes with it */
	}
	free_list(files);
	return waited;
}

int reqlog_replay_wait(struct store *st, const char *jsonl_path, struct replay_stats *stats)
{
	struct replay_stats total = { 0 }, rs;
	/* A pass finds a file being imported when a responder's maintenance thread claimed it
	 * first (before or during the pass): wait for it, then look again. Bounded: each pass after
	 * the first follows another process's import. */
	for (int pass = 0; pass < 100; pass++) {
		int waited = wait_for_importers(jsonl_path);
		int rc = reqlog_replay(st, jsonl_path, NULL, &rs);
		total.imported += rs.imported;
		total.already += rs.already;
		total.malformed += rs.malformed;
		total.files += rs.files;
		if (rs.err[0] && !total.err[0])
			memcpy(total.err, rs.err, sizeof(total.err));
		char **left = leftovers(jsonl_path);
		int more = left[0] != NULL;
		free_list(left);
		*stats = total;
		if (rc < 0 || !more)
			return rc;
		if (pass > 0 && !waited)
			break;         /* left, nobody importing it, and we could not */
	}
	log_error(NULL, "a file left beside %s by an earlier replay cannot be imported (it cannot be "
		  "opened or locked): see its permissions", jsonl_path);
	return -1;
}

int reqlog_replay_pending(const char *jsonl_path)
{
	if (access(jsonl_path, F_OK) == 0)
		return 1;
	char **files = leftovers(jsonl_path);
	int any = files[0] != NULL;
	free_list(files);
	return any;
}

/* Newline-ended lines of one file (0 when it cannot be read). */
static long long file_lines(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char b[65536];
	long long n = 0;
	ssize_t got;
	while ((got = read(fd, b, sizeof(b))) > 0)
		for (char *p = b; (p = memchr(p, '\n', (size_t)(b + got - p))) != NULL; p++)
			n++;
	close(fd);
	return n;
}

long long reqlog_jsonl_pending_rows(const char *jsonl_path)
{
	long long n = file_lines(jsonl_path);
	char **files = leftovers(jsonl_path);
	for (char **f = files; *f; f++)
		n += file_lines(*f);
	free_list(files);
	return n;
}
