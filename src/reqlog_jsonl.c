/* reqlog_jsonl.c - the JSONL fallback file: a request-log row appended when the database cannot
 * take it, and the file imported into the database once it can (replay).
 *
 * The file is opened with O_APPEND for every record and each record is one complete line written
 * by a single write(2) under flock(LOCK_EX), so lines from concurrent threads and processes never
 * interleave. A replay moves the file aside under that lock before importing it (new rows go to a
 * new file), commits its rows, and only then deletes it; a line is the row's JSON form
 * (reqlog_to_json), so it carries every column, the attempts and the tool-call state.
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
		int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
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
	off_t start = lseek(fd, 0, SEEK_END);
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

/* Imports one claimed file (fd locked by us) in transactions of up to BATCH rows. */
#define REPLAY_BATCH 500

static int import_file(struct store *st, int fd, const char *name, struct replay_stats *stats)
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
	while ((n = getline(&line, &cap, f)) > 0) {
		if (!in_tx) {
			if (store_begin(st) < 0) {
				rc = -1;
				break;
			}
			in_tx = 1;
		}
		json_error_t je;
		json_t *o = json_loadb(line, (size_t)n, 0, &je);
		struct reqlog r;
		struct attempt_log *att = NULL;
		if (!json_is_object(o) || reqlog_from_json(o, &r, &att) < 0) {
			stats->malformed++;
			log_warn(NULL, "replay of %s: a line that is not a request-log record is skipped "
				 "(%zd bytes)", name, n);
		} else {
			int inserted = store_insert_reqlog_new(st, &r, err, sizeof(err));
			if (inserted < 0) {
				log_error(r.request_id, "replay of %s failed: %s", name, err);
				rc = -1;
			} else if (inserted) {
				stats->imported++;
			} else {
				stats->already++;
			}
		}
		free(att);
		json_decref(o);
		if (rc < 0)
			break;
		if (++batch == REPLAY_BATCH) {
			if (store_commit(st) < 0) {
				rc = -1;
				in_tx = 0;
				break;
			}
			in_tx = 0;
			batch = 0;
		}
	}
	if (in_tx) {
		if (rc == 0 && store_commit(st) < 0)
			rc = -1;
		if (rc < 0)
			store_rollback(st);
	}
	free(line);
	fclose(f);
	return rc;
}

/* Claims path for replay: under the appenders' lock, moves it aside to a name of our own; the
 * lock stays held on the moved file while it is imported. Returns the fd, or -1. */
static int claim(const char *path, char *moved, size_t movedsz)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
		;
	struct stat a, b;
	if (fstat(fd, &a) < 0 || stat(path, &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
		close(fd);    /* somebody else moved it first */
		return -1;
	}
	snprintf(moved, movedsz, "%s.replay-%ld-%lld", path, (long)getpid(), (long long)clock_wall_ms());
	if (rename(path, moved) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int replay_one(struct store *st, int fd, const char *name, struct replay_stats *stats)
{
	int rc = import_file(st, fd, name, stats);
	if (rc == 0) {
		/* Every row is committed: only now does the file go. */
		unlink(name);
		stats->files++;
	}
	close(fd);
	return rc;
}

int reqlog_replay(struct store *st, const char *jsonl_path, struct replay_stats *stats)
{
	memset(stats, 0, sizeof(*stats));
	int rc = 0;
	/* Files an interrupted replay left behind: whoever gets the lock imports them again (rows
	 * already in the database are skipped by request id). */
	char *dir = xstrdup(jsonl_path);
	char *slash = strrchr(dir, '/');
	const char *base = slash ? slash + 1 : jsonl_path;
	if (slash)
		*slash = '\0';
	DIR *d = opendir(slash ? dir : ".");
	size_t blen = strlen(base);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (strncmp(e->d_name, base, blen) != 0 || strncmp(e->d_name + blen, ".replay-", 8) != 0)
				continue;
			char *p = xasprintf("%s/%s", slash ? dir : ".", e->d_name);
			int fd = open(p, O_RDONLY | O_CLOEXEC);
			if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0) {
				log_info(NULL, "resuming the replay of %s", p);
				if (replay_one(st, fd, p, stats) < 0)
					rc = -1;
			} else if (fd >= 0) {
				close(fd);    /* another process is importing it */
			}
			free(p);
		}
		closedir(d);
	}
	free(dir);
	char moved[4096];
	int fd = claim(jsonl_path, moved, sizeof(moved));
	if (fd >= 0 && replay_one(st, fd, moved, stats) < 0)
		rc = -1;
	if (stats->imported || stats->already || stats->malformed)
		log_info(NULL, "replayed %s: %lld row(s) imported, %lld already in the database, %lld "
			 "unreadable line(s) skipped", jsonl_path, (long long)stats->imported,
			 (long long)stats->already, (long long)stats->malformed);
	return rc;
}
