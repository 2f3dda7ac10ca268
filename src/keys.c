/* keys.c - agents' API keys (see keys.h): parsing, the database check, and the per-process key
 * cache that keeps verifying keys while the database is down.
 *
 * The cache's table is swapped whole under its mutex; a refresh reads the database (or the
 * snapshot) outside the mutex, one thread at a time (the others keep answering from the table
 * they have). Hashes are compared in constant time whatever the table says.
 */
#include "keys.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "keysnap.h"
#include "log.h"
#include "sha256.h"
#include "store.h"
#include "util.h"

static int is_base62(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

void key_generate(char *key, char *id)
{
	char rid[KEY_ID_LEN + 1], secret[KEY_SECRET_LEN + 1];
	random_id(rid, sizeof(rid), "", KEY_ID_LEN);
	random_id(secret, sizeof(secret), "", KEY_SECRET_LEN);
	snprintf(key, KEY_LEN + 1, "lrk_%s_%s", rid, secret);
	memcpy(id, rid, sizeof(rid));
	explicit_bzero(secret, sizeof(secret));
}

int key_parse(const char *key, char id[KEY_ID_LEN + 1])
{
	if (strlen(key) != KEY_LEN || strncmp(key, "lrk_", 4) != 0 || key[4 + KEY_ID_LEN] != '_')
		return -1;
	for (size_t i = 4; i < KEY_LEN; i++) {
		if (i != 4 + KEY_ID_LEN && !is_base62(key[i]))
			return -1;
	}
	memcpy(id, key + 4, KEY_ID_LEN);
	id[KEY_ID_LEN] = '\0';
	return 0;
}

/* The key of an Authorization value, or a refusal (KEY_MISSING, KEY_MALFORMED). */
static enum key_status bearer_key(const char *authorization, const char **key, char id[KEY_ID_LEN + 1])
{
	if (!authorization || !authorization[0])
		return KEY_MISSING;
	if (strncasecmp(authorization, "Bearer ", 7) != 0)
		return KEY_MALFORMED;
	const char *k = authorization + 7;
	while (*k == ' ')
		k++;
	if (key_parse(k, id) < 0)
		return KEY_MALFORMED;
	*key = k;
	return KEY_OK;
}

/* The verdict on key given what is known of its id (found = 0: nothing). */
static enum key_status verdict(const char *key, int found, const char *stored, int64_t revoked)
{
	char hash[65];
	sha256_hex(key, KEY_LEN, hash);
	/* Compared in full whatever the result, so timing says nothing about the stored hash. */
	int same = mem_ct_eq(hash, 64, found ? stored : "", found ? strlen(stored) : 0);
	explicit_bzero(hash, sizeof(hash));
	if (!found || !same)
		return KEY_UNKNOWN;
	return revoked ? KEY_REVOKED : KEY_OK;
}

enum key_status key_check(struct store *st, const char *authorization, char *agent, size_t agentsz)
{
	const char *key = NULL;
	char id[KEY_ID_LEN + 1];
	enum key_status ks = bearer_key(authorization, &key, id);
	if (ks != KEY_OK)
		return ks;
	if (!st)
		return KEY_DB_ERROR;
	char stored[65];
	int64_t revoked = 0;
	int found = store_key_get(st, id, agent, agentsz, stored, &revoked);
	if (found < 0)
		return KEY_DB_ERROR;
	return verdict(key, found, stored, revoked);
}

int key_create(struct store *st, const char *agent, char *key, char *id)
{
	key_generate(key, id);
	char hash[65];
	sha256_hex(key, KEY_LEN, hash);
	return store_key_insert(st, id, agent, hash, clock_wall_ms());
}

/* ---- the key cache ---- */

enum { SRC_NONE, SRC_DB, SRC_SNAPSHOT };

/* What identifies one version of the snapshot file (all zero: there is none). */
struct snap_sig {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

struct key_cache {
	pthread_mutex_t mu;
	pthread_cond_t refreshed;    /* a refresh ended */
	char *db_path, *snap_path;
	int64_t refresh_us;
	struct key_table t;
	int source;
	int refreshing;
	int db_down;                 /* the last refresh could not read the database */
	int dirty;                   /* a key was added from the database, or the snapshot could
				      * not be written: the snapshot may lack the table's keys */
	int snap_failing;            /* the last snapshot write failed (said once) */
	int64_t next_refresh_us;     /* 0: due at the next check */
	struct snap_sig sig;         /* of the snapshot when last looked at */
	struct snap_sig table_sig;   /* of the snapshot that held the table's keys */
};

static struct snap_sig snap_sig_of(const char *path)
{
	struct snap_sig g;
	memset(&g, 0, sizeof(g));
	struct stat sb;
	if (stat(path, &sb) == 0) {
		g.dev = sb.st_dev;
		g.ino = sb.st_ino;
		g.size = sb.st_size;
		g.mtime = sb.st_mtim;
	}
	return g;
}

static int snap_sig_eq(const struct snap_sig *a, const struct snap_sig *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

struct key_cache *key_cache_new(const char *db_path, int64_t refresh_ms)
{
	struct key_cache *kc = xcalloc(1, sizeof(*kc));
	pthread_mutex_init(&kc->mu, NULL);
	pthread_cond_init(&kc->refreshed, NULL);
	kc->db_path = xstrdup(db_path);
	kc->snap_path = keysnap_path(db_path);
	kc->refresh_us = refresh_ms * 1000;
	return kc;
}

void key_cache_free(struct key_cache *kc)
{
	if (!kc)
		return;
	key_table_free(&kc->t);
	free(kc->db_path);
	free(kc->snap_path);
	pthread_cond_destroy(&kc->refreshed);
	pthread_mutex_destroy(&kc->mu);
	free(kc);
}

struct key_cache *key_cache_global(const char *db_path)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	static struct key_cache *kc;
	pthread_mutex_lock(&mu);
	if (!kc) {
		kc = key_cache_new(db_path, 1000);
	} else if (strcmp(kc->db_path, db_path) != 0) {
		/* Another database: start over (the paths change only under both mutexes). */
		pthread_mutex_lock(&kc->mu);
		key_table_free(&kc->t);
		free(kc->db_path);
		free(kc->snap_path);
		kc->db_path = xstrdup(db_path);
		kc->snap_path = keysnap_path(db_path);
		kc->source = SRC_NONE;
		kc->next_refresh_us = 0;
		pthread_mutex_unlock(&kc->mu);
	}
	pthread_mutex_unlock(&mu);
	return kc;
}

int key_cache_source(struct key_cache *kc)
{
	pthread_mutex_lock(&kc->mu);
	int s = kc->source;
	pthread_mutex_unlock(&kc->mu);
	return s;
}

static void put_row(void *ud, const char *id, const char *agent, const char *hash,
		    int64_t created_ms, int64_t revoked_ms)
{
	/* A row of another shape (edited by hand) cannot match any key: left out. */
	key_table_put(ud, id, hash, created_ms, revoked_ms, agent);
}

/* Rewrites the snapshot from the database's table when it does not hold it. The table is read
 * inside the snapshot lock: a writer that read it earlier (before `keys create` stored a key)
 * could otherwise rename its older table over the newer one the command wrote. On success *t is
 * the table read. Returns 0, or -1 with a message in errbuf (the snapshot is unchanged). */
static int snapshot_sync(struct store *st, const char *snap_path, const char *db_path,
			 struct key_table *t, char *errbuf, size_t errsz)
{
	int lock = keysnap_lock(snap_path, errbuf, errsz);
	if (lock == -2)
		return -1;
	struct key_table now = { 0 }, disk = { 0 };
	int rc = -1;
	if (store_key_load(st, put_row, &now) < 0) {
		snprintf(errbuf, errsz, "cannot read the keys of %s", db_path);
	} else {
		char ignore[256];
		int same = keysnap_read(snap_path, &disk, ignore, sizeof(ignore)) == 0 &&
			   key_table_equal(&disk, &now);
		rc = same ? 0 : keysnap_write(snap_path, &now, db_path, errbuf, errsz);
		struct key_table old = *t;
		*t = now;
		now = old;
	}
	keysnap_unlock(lock);
	key_table_free(&now);
	key_table_free(&disk);
	return rc;
}

/* One refresh (the caller won kc->refreshing): the database's table, else the snapshot's when
 * the cache has none or an older one. Returns 0 when the database was read, else -1. */
static int cache_refresh(struct key_cache *kc, struct store *st, char *snap_path, char *db_path)
{
	struct key_table fresh = { 0 };
	char err[512];
	if (st && store_key_load(st, put_row, &fresh) == 0) {
		pthread_mutex_lock(&kc->mu);
		int changed = kc->source != SRC_DB || kc->dirty || !key_table_equal(&kc->t, &fresh);
		int was_down = kc->db_down;
		kc->dirty = 0;
		pthread_mutex_unlock(&kc->mu);
		if (was_down)
			log_info(NULL, "API keys: the database %s can be read again", db_path);
		int sync_failed = changed && snapshot_sync(st, snap_path, db_path, &fresh, err, sizeof(err)) < 0;
		struct snap_sig sig = snap_sig_of(snap_path);
		pthread_mutex_lock(&kc->mu);
		/* A snapshot that could not be written is tried again at the next refresh; said once. */
		int said = kc->snap_failing;
		kc->snap_failing = sync_failed;
		kc->dirty |= sync_failed;
		struct key_table old = kc->t;
		kc->t = fresh;
		fresh = old;
		kc->source = SRC_DB;
		kc->db_down = 0;
		kc->sig = sig;
		kc->table_sig = sig;
		pthread_mutex_unlock(&kc->mu);
		key_table_free(&fresh);
		if (sync_failed && !said)
			log_warn(NULL, "API keys: cannot update the key snapshot: %s", err);
		else if (!sync_failed && said)
			log_info(NULL, "API keys: the key snapshot is up to date again");
		return 0;
	}
	key_table_free(&fresh);
	struct snap_sig sig = snap_sig_of(snap_path);
	pthread_mutex_lock(&kc->mu);
	int source = kc->source, was_down = kc->db_down;
	size_t known = kc->t.n;
	/* A snapshot written since this table was read (by `keys create/revoke` or another
	 * process) is newer than the table: it is read. */
	int newer = source == SRC_NONE || !snap_sig_eq(&sig, &kc->table_sig);
	kc->db_down = 1;
	pthread_mutex_unlock(&kc->mu);
	if (!newer || keysnap_read(snap_path, &fresh, err, sizeof(err)) < 0) {
		if (source == SRC_NONE && !was_down)
			log_error(NULL, "API keys cannot be verified: neither the database %s nor the key "
				  "snapshot can be read (%s)", db_path, err);
		else if (!was_down)
			log_warn(NULL, "API keys: the database %s cannot be read: keys are verified with "
				 "the %zu this process knows until it can", db_path, known);
		return -1;
	}
	if (!was_down)
		log_warn(NULL, "API keys: the database %s cannot be read: keys are verified with the "
			 "snapshot %s (%zu keys)", db_path, snap_path, fresh.n);
	pthread_mutex_lock(&kc->mu);
	struct key_table old = kc->t;
	kc->t = fresh;
	kc->source = SRC_SNAPSHOT;
	kc->table_sig = sig;
	pthread_mutex_unlock(&kc->mu);
	key_table_free(&old);
	return -1;
}

/* Refreshes when due (or now, with force): every refresh_us, and at once when the snapshot file
 * changed. Returns 1 when the database was read, 0 when it could not be, -1 when no refresh ran
 * (not due, or another thread's is running). */
static int cache_maybe_refresh(struct key_cache *kc, struct store *st, int force)
{
	int64_t now = clock_mono_us();
	pthread_mutex_lock(&kc->mu);
	struct snap_sig sig = snap_sig_of(kc->snap_path);
	if (!snap_sig_eq(&sig, &kc->sig)) {
		kc->sig = sig;
		kc->next_refresh_us = 0;
	}
	if (kc->refreshing && kc->source == SRC_NONE) {
		/* No table yet (a process just started): the first refresh's answer is awaited
		 * rather than refusing keys nobody has read. */
		while (kc->refreshing)
			pthread_cond_wait(&kc->refreshed, &kc->mu);
		pthread_mutex_unlock(&kc->mu);
		return -1;
	}
	if (kc->refreshing || (!force && now < kc->next_refresh_us)) {
		pthread_mutex_unlock(&kc->mu);
		return -1;
	}
	kc->refreshing = 1;
	kc->next_refresh_us = now + kc->refresh_us;
	char *snap_path = xstrdup(kc->snap_path), *db_path = xstrdup(kc->db_path);
	pthread_mutex_unlock(&kc->mu);
	int rc = cache_refresh(kc, st, snap_path, db_path);
	pthread_mutex_lock(&kc->mu);
	kc->refreshing = 0;
	pthread_cond_broadcast(&kc->refreshed);
	pthread_mutex_unlock(&kc->mu);
	free(snap_path);
	free(db_path);
	return rc == 0;
}

int key_cache_refresh(struct key_cache *kc, struct store *st)
{
	return cache_maybe_refresh(kc, st, 1);
}

enum key_status key_cache_check(struct key_cache *kc, struct store *st, const char *authorization,
				char *agent, size_t agentsz)
{
	const char *key = NULL;
	char id[KEY_ID_LEN + 1];
	enum key_status ks = bearer_key(authorization, &key, id);
	if (ks != KEY_OK)
		return ks;
	cache_maybe_refresh(kc, st, 0);
	char stored[65] = "";
	int64_t revoked = 0;
	pthread_mutex_lock(&kc->mu);
	const struct key_entry *e = key_table_find(&kc->t, id);
	int found = e != NULL, source = kc->source, snapshot_there = kc->sig.ino != 0;
	if (e) {
		memcpy(stored, e->hash, sizeof(stored));
		revoked = e->revoked_ms;
		snprintf(agent, agentsz, "%s", e->agent);
	}
	pthread_mutex_unlock(&kc->mu);
	if (!found && st) {
		/* A key made since the last refresh works at once. */
		found = store_key_get(st, id, agent, agentsz, stored, &revoked);
		if (found > 0) {
			pthread_mutex_lock(&kc->mu);
			key_table_put(&kc->t, id, stored, clock_wall_ms(), revoked, agent);
			kc->dirty = 1;
			kc->next_refresh_us = 0;   /* the next check refreshes the table and the snapshot */
			pthread_mutex_unlock(&kc->mu);
		}
	}
	if (found < 0 || (!found && !st)) {
		/* The database could not say. A key the table holds is answered from it; one it does
		 * not hold is unknown only if the snapshot (which holds every key the database had, and
		 * is read when newer than the table) is there to say so: without it, the key may have
		 * been made since the table was read, and is not refused as unknown. */
		if (source == SRC_NONE || !snapshot_there)
			return KEY_DB_ERROR;
		found = 0;
	}
	return verdict(key, found, stored, revoked);
}

/* ---- the snapshot from the command line ---- */

int key_snapshot_save(struct store *st, const char *db_path, char *errbuf, size_t errsz)
{
	struct key_table t = { 0 };
	char *snap = keysnap_path(db_path);
	int rc = snapshot_sync(st, snap, db_path, &t, errbuf, errsz);
	free(snap);
	key_table_free(&t);
	return rc;
}

int key_snapshot_restore(struct store *st, const char *db_path, char *errbuf, size_t errsz)
{
	char *snap = keysnap_path(db_path);
	struct key_table t = { 0 };
	int rc = keysnap_read(snap, &t, errbuf, errsz);
	if (rc < 0 && errno == ENOENT) {
		rc = 0;
	} else if (rc == 0) {
		for (size_t i = 0; i < t.n && rc >= 0; i++) {
			const struct key_entry *e = &t.v[i];
			if (store_key_restore(st, e->id, e->agent, e->hash, e->created_ms, e->revoked_ms) < 0) {
				snprintf(errbuf, errsz, "cannot insert key %s into %s", e->id, db_path);
				rc = -1;
			}
		}
		if (rc == 0)
			rc = (int)t.n;
	}
	key_table_free(&t);
	free(snap);
	return rc;
}
