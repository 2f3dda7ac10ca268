/* keys.c - agents' API keys (see keys.h). */
#include "keys.h"

#include <stdio.h>
#include <string.h>

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

enum key_status key_check(struct store *st, const char *authorization, char *agent, size_t agentsz)
{
	if (!authorization || !authorization[0])
		return KEY_MISSING;
	if (strncasecmp(authorization, "Bearer ", 7) != 0)
		return KEY_MALFORMED;
	const char *key = authorization + 7;
	while (*key == ' ')
		key++;
	char id[KEY_ID_LEN + 1];
	if (key_parse(key, id) < 0)
		return KEY_MALFORMED;
	if (!st)
		return KEY_DB_ERROR;
	char stored[65];
	int64_t revoked = 0;
	int found = store_key_get(st, id, agent, agentsz, stored, &revoked);
	if (found < 0)
		return KEY_DB_ERROR;
	char hash[65];
	sha256_hex(key, KEY_LEN, hash);
	/* Compared in full whatever the result, so timing says nothing about the stored hash. */
	int same = mem_ct_eq(hash, 64, found ? stored : "", found ? strlen(stored) : 0);
	explicit_bzero(hash, sizeof(hash));
	if (!found || !same)
		return KEY_UNKNOWN;
	return revoked ? KEY_REVOKED : KEY_OK;
}

int key_create(struct store *st, const char *agent, char *key, char *id)
{
	key_generate(key, id);
	char hash[65];
	sha256_hex(key, KEY_LEN, hash);
	return store_key_insert(st, id, agent, hash, clock_wall_ms());
}
