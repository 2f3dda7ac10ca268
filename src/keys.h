/* keys.h - agents' API keys: "lrk_<id>_<secret>".
 *
 * The id (12 base62 characters) is public and names the key in `llm-router keys list`; the secret
 * (32 base62 characters, about 190 bits) is shown once, at creation. The database keeps only the
 * SHA-256 of the whole key, found by its id and compared in constant time.
 */
#ifndef ROUTER_KEYS_H
#define ROUTER_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define KEY_ID_LEN 12
#define KEY_SECRET_LEN 32
#define KEY_LEN (4 + KEY_ID_LEN + 1 + KEY_SECRET_LEN)   /* "lrk_" id "_" secret */

struct store;

/* A new key in key (size > KEY_LEN) and its id in id (size > KEY_ID_LEN). */
void key_generate(char *key, char *id);
/* Copies the id of a well-formed key into id; returns 0, or -1 when the key is malformed. */
int key_parse(const char *key, char id[KEY_ID_LEN + 1]);

enum key_status { KEY_OK, KEY_MISSING, KEY_MALFORMED, KEY_UNKNOWN, KEY_REVOKED, KEY_DB_ERROR };

/* Checks an Authorization header value ("Bearer <key>") against the database alone (no cache);
 * on KEY_OK copies the agent's name. KEY_DB_ERROR when st is NULL or cannot be read. */
enum key_status key_check(struct store *st, const char *authorization, char *agent, size_t agentsz);

/* The key table of one process, kept in memory so that keys are verified through any fault of
 * the database (the router's path, auth.c).
 *
 * It is refreshed from the database at most every refresh_ms (a full read of api_keys, one thread
 * at a time, the others go on with the table they have), and at once when the snapshot file
 * (keysnap.h) changed, which `llm-router keys create/revoke` rewrite: a revocation holds from the
 * next request. A key the table does not know is looked up in the database at once, so a new key
 * works immediately. When the database cannot be read the table stays as it was; a process that
 * has none yet (plain CGI, a responder started during an outage) reads the snapshot. After a
 * refresh whose table differs from the snapshot, the snapshot is rewritten. Thread-safe. */
struct key_cache;

struct key_cache *key_cache_new(const char *db_path, int64_t refresh_ms);
void key_cache_free(struct key_cache *kc);
/* The process's cache for db_path, made on first use (a configuration naming another database
 * starts it over). Lives as long as the process. */
struct key_cache *key_cache_global(const char *db_path);
/* As key_check, through the cache; st (the caller's connection, may be NULL) is used for the
 * refresh and for keys the cache does not know. KEY_DB_ERROR only when neither the database nor
 * the snapshot can be read: nothing can verify the key. */
enum key_status key_cache_check(struct key_cache *kc, struct store *st, const char *authorization,
				char *agent, size_t agentsz);
/* A refresh now (a responder's idle refresh, so that a process that serves no request still
 * knows the keys when the database goes away). Returns 1 when the database was read, 0 when it
 * could not be, -1 when another thread's refresh was running. */
int key_cache_refresh(struct key_cache *kc, struct store *st);
/* Where the table came from: 0 nowhere yet, 1 the database, 2 the snapshot. */
int key_cache_source(struct key_cache *kc);

/* Writes the snapshot of db_path's key table from st (after keys create/revoke, init). Returns 0,
 * or -1 with a message in errbuf. */
int key_snapshot_save(struct store *st, const char *db_path, char *errbuf, size_t errsz);
/* Inserts the keys of db_path's snapshot into st (a new database: llm-router init). Returns the
 * number of keys, 0 when there is no snapshot, or -1 with a message in errbuf. */
int key_snapshot_restore(struct store *st, const char *db_path, char *errbuf, size_t errsz);

/* Creates a key for agent and stores its hash; writes the key (shown once) and id. */
int key_create(struct store *st, const char *agent, char *key, char *id);

#endif
