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

/* Checks an Authorization header value ("Bearer <key>"); on KEY_OK copies the agent's name. */
enum key_status key_check(struct store *st, const char *authorization, char *agent, size_t agentsz);

/* Creates a key for agent and stores its hash; writes the key (shown once) and id. */
int key_create(struct store *st, const char *agent, char *key, char *id);

#endif
