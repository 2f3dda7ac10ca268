/* keysnap.h - a table of agents' keys (id, SHA-256 hash, agent, created, revoked) and its
 * snapshot file beside the database.
 *
 * The snapshot lets a process verify keys when the database cannot be read (keys.h): a plain CGI
 * process, or a responder started during an outage, has nothing else. It holds what api_keys
 * holds and never a key: one line per key, "<id> <hash> <created_ms> <revoked_ms> <agent>"
 * (revoked_ms 0 = active; the agent with bytes <= 0x20, '%' and 0x7f written as %XX), between a
 * first line "llm-router key snapshot 1" and a last line "end <count>", so that a truncated file
 * is refused as a whole. It is written to a temporary file (mode 0600) in the same directory,
 * synced, then renamed over the old one: a reader sees the old table or the new, never a mix.
 * Its existence also marks a directory whose database has been created (store.h: the first-start
 * rule). Writers (the command line, every responder's refresh, a first start) take the snapshot
 * lock and read what they write inside it, so that the last rename holds the newest table. A
 * leaf: libc only.
 */
#ifndef ROUTER_KEYSNAP_H
#define ROUTER_KEYSNAP_H

#include <stddef.h>
#include <stdint.h>

#define KEYSNAP_NAME "llm_keys.snapshot"

struct key_entry {
	char id[16];
	char hash[65];
	int64_t created_ms;
	int64_t revoked_ms;    /* 0: active */
	char *agent;           /* owned */
};

/* Sorted by id, ids unique. A zeroed table is empty. */
struct key_table {
	struct key_entry *v;
	size_t n, cap;
};

void key_table_free(struct key_table *t);
/* Adds or replaces the entry of id. Returns 0, or -1 for an id or hash of the wrong shape. */
int key_table_put(struct key_table *t, const char *id, const char *hash, int64_t created_ms,
		  int64_t revoked_ms, const char *agent);
/* The entry of id, or NULL. */
const struct key_entry *key_table_find(const struct key_table *t, const char *id);
/* 1 when both hold the same entries. */
int key_table_equal(const struct key_table *a, const struct key_table *b);

/* The snapshot path of a database: KEYSNAP_NAME in the database file's directory. Malloc'd. */
char *keysnap_path(const char *db_path);
/* Reads a snapshot into t (emptied first). Returns 0; -1 with errno ENOENT when there is none;
 * -1 with a message in errbuf when it cannot be read or is malformed (t is then empty). */
int keysnap_read(const char *path, struct key_table *t, char *errbuf, size_t errsz);
/* Writes t atomically as path (mode 0600; run as root, the file gets the owner of owner_of when
 * that names a file). Returns 0, or -1 with a message in errbuf (nothing is left behind). */
int keysnap_write(const char *path, const struct key_table *t, const char *owner_of, char *errbuf,
		  size_t errsz);

/* The snapshot lock: an exclusive flock on the directory of path, waited for up to
 * KEYSNAP_LOCK_WAIT_MS, 2 s (another writer's read of the table and fsync). Returns a descriptor for
 * keysnap_unlock; -1 when the directory cannot be opened or locked (a file system without flock:
 * the write goes ahead unlocked); -2 when another writer held it all that time (message in errbuf:
 * nothing should be written). */
int keysnap_lock(const char *path, char *errbuf, size_t errsz);
void keysnap_unlock(int fd);

#endif
