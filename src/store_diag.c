/* store_diag.c - what to do when the file system refuses a write: one log line naming the file
 * and the fix.
 *
 * SQLite says "attempt to write a readonly database" or "database or disk is full" without
 * saying which file: after a failure the files are looked at (the database, its -wal and -shm,
 * its directory, or the JSONL fallback file) with stat and access() as this process, and the line
 * names each one this process cannot write, why (its mode, another owner, the immutable flag, a
 * read-only mount) and the command that fixes it, or the file system that is full and how much
 * space is left. A lock held by another connection is not a fault and says nothing. At most one
 * line a minute per process for the database, and one for the fallback file.
 */
#include "store_diag.h"

#include "store_int.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "util.h"

#define SAY_EVERY_MS 60000
/* A file system with less than this left counts as full. */
#define FULL_BYTES (256 * 1024LL)

static int64_t said_db_ms = -SAY_EVERY_MS, said_file_ms = -SAY_EVERY_MS;

/* Once a minute per process for each kind of line. */
static int may_say(int64_t *last_ms)
{
	int64_t now = clock_mono_us() / 1000;
	int64_t last = __atomic_load_n(last_ms, __ATOMIC_RELAXED);
	return now - last >= SAY_EVERY_MS &&
	       __atomic_compare_exchange_n(last_ms, &last, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

static void user_name(uid_t uid, char *out, size_t outsz)
{
	struct passwd pw, *res = NULL;
	char tmp[1024];
	if (getpwuid_r(uid, &pw, tmp, sizeof(tmp), &res) == 0 && res)
		snprintf(out, outsz, "%s", pw.pw_name);
	else
		snprintf(out, outsz, "%lu", (unsigned long)uid);
}

static char *dir_of(const char *path)
{
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (!slash) {
		free(dir);
		return xstrdup(".");
	}
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	return dir;
}

/* Appends to out why this process cannot write path, and the fix; returns 1, or 0 when it can
 * (or path does not exist). A read-only mount is said once (*rofs_said). */
static int why_unwritable(const char *path, int is_dir, struct buf *out, int *rofs_said)
{
	struct stat sb;
	if (stat(path, &sb) < 0)
		return 0;
	if (is_dir != !!S_ISDIR(sb.st_mode)) {
		if (out->len)
			buf_puts(out, "; ");
		buf_printf(out, is_dir ? "%s is not a directory: move it away and put the directory back"
				       : "%s is a directory where a file belongs: move it away and put the file back",
			   path);
		return 1;
	}
	if (access(path, is_dir ? W_OK | X_OK : W_OK) == 0)
		return 0;
	int e = errno;
	if (e == EROFS && (*rofs_said)++)
		return 1;
	char me[64], owner[64];
	uid_t uid = geteuid();
	user_name(uid, me, sizeof(me));
	user_name(sb.st_uid, owner, sizeof(owner));
	unsigned mode = (unsigned)(sb.st_mode & 07777);
	if (out->len)
		buf_puts(out, "; ");
	if (e == EROFS)
		buf_printf(out, "%s is on a file system mounted read-only (so is the rest of its directory): "
			   "remount it read-write", path);
	else if (e == EPERM || (sb.st_uid == uid && (mode & 0200)))
		buf_printf(out, "%s has the immutable (or append-only) attribute: chattr -i -a %s", path, path);
	else if (sb.st_uid != uid)
		buf_printf(out, "%s is owned by %s (mode %04o) and this router runs as %s: chown %s %s "
			   "(as root; the same for any other file of the router's that %s owns)", path, owner,
			   mode, me, me, path, owner);
	else
		buf_printf(out, "%s is not writable (mode %04o): chmod %04o %s", path, mode,
			   mode | (is_dir ? 0700u : 0600u), path);
	return 1;
}

/* Appends the free space of the file system holding path (its directory) to out; returns 1 when
 * it is full (less than FULL_BYTES left for this process). */
static int space_left(const char *path, struct buf *out)
{
	char *dir = dir_of(path);
	struct statvfs vfs;
	int full = 0;
	if (statvfs(dir, &vfs) == 0) {
		unsigned long long avail = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
		unsigned long long size = (unsigned long long)vfs.f_blocks * vfs.f_frsize;
		full = avail < (unsigned long long)FULL_BYTES;
		buf_printf(out, "the file system holding %s has %llu KiB free of %llu KiB", dir, avail / 1024,
			   size / 1024);
	}
	free(dir);
	return full;
}

/* The disk-full line; returns 1 when said. */
static int say_full(const char *what, const char *path, const char *setting, int known_full,
		    int64_t *last_ms)
{
	struct buf b;
	buf_init(&b, 4096);
	int full = space_left(path, &b);
	int said = 0;
	if ((known_full || full) && may_say(last_ms)) {
		log_error(NULL, "%s %s cannot grow: the disk is full (%s); fix: free space there, or move it "
			  "to a larger file system (%s)", what, path, buf_str(&b), setting);
		said = 1;
	}
	buf_free(&b);
	return said;
}

void store_diagnose(struct store *st, const char *path)
{
	int code = SQLITE_CANTOPEN;
	if (st) {
		code = sqlite3_extended_errcode(st->db) & 0xff;
		const char *name = sqlite3_db_filename(st->db, "main");
		if (name && name[0])
			path = name;
	}
	/* After a rollback the code may be SQLITE_OK: the files then say what it was. */
	if (!path || code == SQLITE_BUSY || code == SQLITE_LOCKED || code == SQLITE_CONSTRAINT)
		return;
	struct buf b;
	buf_init(&b, 8192);
	char *wal = xasprintf("%s-wal", path), *shm = xasprintf("%s-shm", path), *dir = dir_of(path);
	int rofs = 0;
	int n = why_unwritable(path, 0, &b, &rofs) + why_unwritable(wal, 0, &b, &rofs) +
		why_unwritable(shm, 0, &b, &rofs) + why_unwritable(dir, 1, &b, &rofs);
	if (n) {
		if (may_say(&said_db_ms))
			log_error(NULL, "the database cannot be written by this process; fix: %s", buf_str(&b));
	} else {
		say_full("the database", path, "storage.db_path", code == SQLITE_FULL, &said_db_ms);
	}
	buf_free(&b);
	free(wal);
	free(shm);
	free(dir);
}

void store_diagnose_file(const char *path, int errnum)
{
	if (!path)
		return;
	struct buf b;
	buf_init(&b, 8192);
	char *dir = dir_of(path);
	int rofs = 0;
	int n = why_unwritable(path, 0, &b, &rofs) + why_unwritable(dir, 1, &b, &rofs);
	if (n) {
		if (may_say(&said_file_ms))
			log_error(NULL, "the fallback file cannot be written by this process (%s); fix: %s",
				  strerror(errnum), buf_str(&b));
	} else {
		say_full("the fallback file", path, "storage.fallback_jsonl", errnum == ENOSPC || errnum == EDQUOT,
			 &said_file_ms);
	}
	buf_free(&b);
	free(dir);
}
