/* test_keycache.c - the key table and its snapshot file (keysnap.h), the per-process key cache
 * through database faults (keys.h), and the first-start rule of store_open (store.h). */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "keys.h"
#include "keysnap.h"
#include "sha256.h"
#include "store.h"

#define H(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c

TEST(keysnap_table_is_sorted_and_replaces_by_id)
{
	struct key_table t = { 0 };
	CHECK_INT_EQ(key_table_put(&t, "bbb", H("1"), 5, 0, "b"), 0);
	CHECK_INT_EQ(key_table_put(&t, "aaa", H("2"), 6, 0, "a"), 0);
	CHECK_INT_EQ(key_table_put(&t, "ccc", H("3"), 7, 9, "c"), 0);
	CHECK_INT_EQ(key_table_put(&t, "bbb", H("4"), 8, 1, "b2"), 0);
	REQUIRE_INT_EQ(t.n, 3);
	CHECK_STR_EQ(t.v[0].id, "aaa");
	CHECK_STR_EQ(t.v[1].id, "bbb");
	CHECK_STR_EQ(t.v[2].id, "ccc");
	const struct key_entry *e = key_table_find(&t, "bbb");
	REQUIRE_NOT_NULL(e);
	CHECK_STR_EQ(e->hash, H("4"));
	CHECK_STR_EQ(e->agent, "b2");
	CHECK_INT_EQ(e->revoked_ms, 1);
	CHECK_NULL(key_table_find(&t, "abc"));
	/* Shapes a key never has are refused. */
	CHECK_INT_EQ(key_table_put(&t, "", H("1"), 0, 0, "x"), -1);
	CHECK_INT_EQ(key_table_put(&t, "a b", H("1"), 0, 0, "x"), -1);
	CHECK_INT_EQ(key_table_put(&t, "ddd", "abc", 0, 0, "x"), -1);
	CHECK_INT_EQ(key_table_put(&t, "ddd", H("G"), 0, 0, "x"), -1);
	CHECK_INT_EQ(t.n, 3);
	key_table_free(&t);
}

TEST(keysnap_round_trip_atomic_0600_and_no_key)
{
	char *path = test_path("llm_keys.snapshot");
	struct key_table t = { 0 }, back = { 0 };
	key_table_put(&t, "3fK9aQ2LmZ0x", H("a"), 1795651200000, 0, "devops_agent");
	key_table_put(&t, "AAAAAAAAAAAA", H("b"), 1795651200001, 1795651200002, "odd agent%\n\t");
	char err[256];
	REQUIRE_INT_EQ(keysnap_write(path, &t, NULL, err, sizeof(err)), 0);
	struct stat sb;
	REQUIRE_INT_EQ(stat(path, &sb), 0);
	CHECK_INT_EQ(sb.st_mode & 0777, 0600);
	char *text = test_read_file(path, NULL);
	REQUIRE_NOT_NULL(text);
	CHECK_CONTAINS(text, "llm-router key snapshot 1\n");
	CHECK_CONTAINS(text, "3fK9aQ2LmZ0x " H("a") " 1795651200000 0 devops_agent\n");
	CHECK_CONTAINS(text, "odd%20agent%25%0A%09\n");
	CHECK_CONTAINS(text, "\nend 2\n");
	free(text);
	REQUIRE_INT_EQ(keysnap_read(path, &back, err, sizeof(err)), 0);
	CHECK(key_table_equal(&t, &back));
	CHECK_STR_EQ(key_table_find(&back, "AAAAAAAAAAAA")->agent, "odd agent%\n\t");
	/* No temporary file is left beside it. */
	int others = 0;
	DIR *d = opendir(test_tmpdir());
	REQUIRE_NOT_NULL(d);
	for (struct dirent *e; (e = readdir(d));)
		others += e->d_name[0] != '.' && strcmp(e->d_name, "llm_keys.snapshot") != 0;
	closedir(d);
	CHECK_INT_EQ(others, 0);
	/* The empty table too. */
	struct key_table empty = { 0 };
	REQUIRE_INT_EQ(keysnap_write(path, &empty, NULL, err, sizeof(err)), 0);
	REQUIRE_INT_EQ(keysnap_read(path, &back, err, sizeof(err)), 0);
	CHECK_INT_EQ(back.n, 0);
	key_table_free(&t);
	key_table_free(&back);
	free(path);
}

TEST(keysnap_refuses_truncated_edited_and_missing_files)
{
	char *path = test_path("s");
	struct key_table t = { 0 };
	char err[256];
	static const char *const bad[] = {
		"",
		"llm-router key snapshot 1\n",                                         /* no end */
		"llm-router key snapshot 1\nabc " H("a") " 1 0 x\n",                   /* cut */
		"llm-router key snapshot 1\nabc " H("a") " 1 0 x\nend 2\n",            /* count */
		"llm-router key snapshot 2\nend 0\n",                                  /* version */
		"llm-router key snapshot 1\nabc " H("a") " 1 0\nend 1\n",              /* fields */
		"llm-router key snapshot 1\nabc " H("a") " 1 -5 x\nend 1\n",           /* negative */
		"llm-router key snapshot 1\nabc " H("a") " 1 0 x%zz\nend 1\n",         /* escape */
		"llm-router key snapshot 1\nabc " H("a") " 1 0 x\nabc " H("b") " 1 0 y\nend 2\n", /* twice */
		"llm-router key snapshot 1\nend 0\ntrailing\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		test_case("%zu", i);
		test_write_file(path, bad[i], (size_t)-1);
		key_table_put(&t, "old", H("c"), 0, 0, "o");
		CHECK_INT_EQ(keysnap_read(path, &t, err, sizeof(err)), -1);
		CHECK_INT_EQ(t.n, 0);
		CHECK_CONTAINS(err, "not a complete key snapshot");
	}
	test_case(NULL);
	char *none = test_path("none");
	CHECK_INT_EQ(keysnap_read(none, &t, err, sizeof(err)), -1);
	CHECK_INT_EQ(errno, ENOENT);
	free(none);
	free(path);
	key_table_free(&t);
	char *p = keysnap_path("/var/lib/llm-router/data/llm_logs.db");
	CHECK_STR_EQ(p, "/var/lib/llm-router/data/llm_keys.snapshot");
	free(p);
}

static struct store *open_db(const char *path, enum store_create create, const char *fallback,
			     char *err, size_t errsz)
{
	struct store_opts o = { .path = path, .busy_timeout_ms = 1000, .create = create,
				.fallback_path = fallback };
	return store_open(&o, err, errsz);
}

static void auth_of(const char *key, char *out, size_t outsz)
{
	snprintf(out, outsz, "Bearer %s", key);
}

TEST(key_cache_answers_through_a_database_fault_and_from_the_snapshot)
{
	char *db = test_path("data/llm_logs.db");
	char err[512];
	struct store *st = open_db(db, STORE_CREATE_ANY, NULL, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	char k1[KEY_LEN + 1], id1[KEY_ID_LEN + 1], k2[KEY_LEN + 1], id2[KEY_ID_LEN + 1];
	REQUIRE_INT_EQ(key_create(st, "devops_agent", k1, id1), 0);
	REQUIRE_INT_EQ(key_create(st, "sales_agent", k2, id2), 0);
	REQUIRE_INT_EQ(store_key_revoke(st, id2, 5), 1);
	REQUIRE_INT_EQ(key_snapshot_save(st, db, err, sizeof(err)), 0);
	char a1[80], a2[80], agent[64];
	auth_of(k1, a1, sizeof(a1));
	auth_of(k2, a2, sizeof(a2));
	char unknown[80];
	auth_of("lrk_Zz9Zz9Zz9Zz9_qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", unknown, sizeof(unknown));

	/* A process that read the database: the database gone, the table answers. */
	struct key_cache *kc = key_cache_new(db, 1000);
	CHECK_INT_EQ(key_cache_check(kc, st, a1, agent, sizeof(agent)), KEY_OK);
	CHECK_STR_EQ(agent, "devops_agent");
	CHECK_INT_EQ(key_cache_source(kc), 1);
	CHECK_INT_EQ(key_cache_check(kc, NULL, a1, agent, sizeof(agent)), KEY_OK);
	CHECK_INT_EQ(key_cache_check(kc, NULL, a2, agent, sizeof(agent)), KEY_REVOKED);
	CHECK_INT_EQ(key_cache_check(kc, NULL, unknown, agent, sizeof(agent)), KEY_UNKNOWN);
	/* A forged secret for a known id. */
	char forged[80];
	snprintf(forged, sizeof(forged), "%s", a1);
	forged[strlen(forged) - 1] = forged[strlen(forged) - 1] == 'a' ? 'b' : 'a';
	CHECK_INT_EQ(key_cache_check(kc, NULL, forged, agent, sizeof(agent)), KEY_UNKNOWN);
	CHECK_INT_EQ(key_cache_check(kc, NULL, "Bearer nope", agent, sizeof(agent)), KEY_MALFORMED);
	CHECK_INT_EQ(key_cache_check(kc, NULL, NULL, agent, sizeof(agent)), KEY_MISSING);
	key_cache_free(kc);

	/* A new process during the outage: the snapshot answers. */
	kc = key_cache_new(db, 1000);
	CHECK_INT_EQ(key_cache_check(kc, NULL, a1, agent, sizeof(agent)), KEY_OK);
	CHECK_INT_EQ(key_cache_source(kc), 2);
	CHECK_INT_EQ(key_cache_check(kc, NULL, a2, agent, sizeof(agent)), KEY_REVOKED);
	CHECK_INT_EQ(key_cache_check(kc, NULL, unknown, agent, sizeof(agent)), KEY_UNKNOWN);
	key_cache_free(kc);

	/* Neither: nothing can verify a key. */
	char *snap = keysnap_path(db);
	char *moved = test_path("moved.snapshot");
	struct key_cache *had = key_cache_new(db, 1000);
	CHECK_INT_EQ(key_cache_check(had, st, a1, agent, sizeof(agent)), KEY_OK);
	REQUIRE_INT_EQ(rename(snap, moved), 0);
	kc = key_cache_new(db, 1000);
	CHECK_INT_EQ(key_cache_check(kc, NULL, a1, agent, sizeof(agent)), KEY_DB_ERROR);
	CHECK_INT_EQ(key_cache_check(kc, NULL, unknown, agent, sizeof(agent)), KEY_DB_ERROR);
	key_cache_free(kc);
	/* A process that read the table: its keys are answered, an unknown one cannot be refused
	 * as unknown (it may be newer than the table). */
	CHECK_INT_EQ(key_cache_check(had, NULL, a1, agent, sizeof(agent)), KEY_OK);
	CHECK_INT_EQ(key_cache_check(had, NULL, a2, agent, sizeof(agent)), KEY_REVOKED);
	CHECK_INT_EQ(key_cache_check(had, NULL, unknown, agent, sizeof(agent)), KEY_DB_ERROR);
	key_cache_free(had);
	REQUIRE_INT_EQ(rename(moved, snap), 0);
	free(moved);
	free(snap);
	store_close(st);
	free(db);
}

TEST(key_cache_sees_new_keys_at_once_and_revocations_within_the_refresh)
{
	char *db = test_path("data/llm_logs.db");
	char err[512];
	struct store *st = open_db(db, STORE_CREATE_ANY, NULL, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	struct key_cache *kc = key_cache_new(db, 50);
	char k1[KEY_LEN + 1], id1[KEY_ID_LEN + 1], a1[80], agent[64];
	char unknown[80];
	auth_of("lrk_Zz9Zz9Zz9Zz9_qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", unknown, sizeof(unknown));
	CHECK_INT_EQ(key_cache_check(kc, st, unknown, agent, sizeof(agent)), KEY_UNKNOWN);
	/* Made after the cache's first read: found in the database at once. */
	REQUIRE_INT_EQ(key_create(st, "kb_manager", k1, id1), 0);
	auth_of(k1, a1, sizeof(a1));
	CHECK_INT_EQ(key_cache_check(kc, st, a1, agent, sizeof(agent)), KEY_OK);
	CHECK_STR_EQ(agent, "kb_manager");
	/* The next check refreshes: the snapshot now holds it (written by the cache, no CLI). */
	CHECK_INT_EQ(key_cache_check(kc, st, a1, agent, sizeof(agent)), KEY_OK);
	char *snap = keysnap_path(db);
	struct key_table t = { 0 };
	REQUIRE_INT_EQ(keysnap_read(snap, &t, err, sizeof(err)), 0);
	CHECK_NOT_NULL(key_table_find(&t, id1));
	/* Revoked in the database without touching the snapshot: refused after one refresh. */
	REQUIRE_INT_EQ(store_key_revoke(st, id1, 7), 1);
	usleep(60 * 1000);
	CHECK_INT_EQ(key_cache_check(kc, st, a1, agent, sizeof(agent)), KEY_REVOKED);
	/* ... and the snapshot was rewritten with the revocation. */
	REQUIRE_INT_EQ(keysnap_read(snap, &t, err, sizeof(err)), 0);
	REQUIRE_NOT_NULL(key_table_find(&t, id1));
	CHECK_INT_EQ(key_table_find(&t, id1)->revoked_ms, 7);
	key_table_free(&t);
	free(snap);
	key_cache_free(kc);
	store_close(st);
	free(db);
}

TEST(store_open_first_start_rule)
{
	char err[512];
	char *db = test_path("data/llm_logs.db");
	char *jsonl = test_path("data/llm_logs_fallback.jsonl");
	/* No directory: the router creates nothing. */
	CHECK_NULL(open_db(db, STORE_CREATE_FIRST, jsonl, err, sizeof(err)));
	CHECK_CONTAINS(err, "the data directory");
	CHECK_CONTAINS(err, "is missing");
	char *dir = test_path("data");
	struct stat sb;
	CHECK_INT_EQ(stat(dir, &sb), -1);
	/* keys create may make it: a first start, with the (empty) snapshot as its mark. */
	struct store *st = open_db(db, STORE_CREATE_FIRST_DIR, jsonl, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	store_close(st);
	char *snap = keysnap_path(db);
	CHECK_INT_EQ(stat(snap, &sb), 0);
	/* Removed: not a first start any more. */
	for (const char *ext = ""; ext; ext = !*ext ? "-wal" : strcmp(ext, "-wal") == 0 ? "-shm" : NULL) {
		char p[512];
		snprintf(p, sizeof(p), "%s%s", db, ext);
		unlink(p);
	}
	CHECK_NULL(open_db(db, STORE_CREATE_FIRST, jsonl, err, sizeof(err)));
	CHECK_CONTAINS(err, "is missing but");
	CHECK_CONTAINS(err, "llm_keys.snapshot is left from an earlier one");
	CHECK_CONTAINS(err, "llm-router init");
	CHECK_INT_EQ(stat(db, &sb), -1);
	/* Without the snapshot, a fallback file or a replay file also marks the directory. */
	unlink(snap);
	test_write_file(jsonl, "{}\n", (size_t)-1);
	CHECK_NULL(open_db(db, STORE_CREATE_FIRST, jsonl, err, sizeof(err)));
	CHECK_CONTAINS(err, "llm_logs_fallback.jsonl is left");
	char *replay = test_path("data/llm_logs_fallback.jsonl.replay-12-34");
	REQUIRE_INT_EQ(rename(jsonl, replay), 0);
	CHECK_NULL(open_db(db, STORE_CREATE_FIRST, jsonl, err, sizeof(err)));
	CHECK_CONTAINS(err, ".replay-*");
	unlink(replay);
	/* A clean directory: a first start. */
	st = open_db(db, STORE_CREATE_FIRST, jsonl, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	store_close(st);
	/* Garbage in place of the file is never overwritten. */
	test_write_file(db, "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ", (size_t)-1);
	unlink(snap);
	CHECK_NULL(open_db(db, STORE_CREATE_FIRST, jsonl, err, sizeof(err)));
	CHECK_CONTAINS(err, "is not an SQLite database");
	char *text = test_read_file(db, NULL);
	CHECK(text && strncmp(text, "ZZZZ", 4) == 0);
	free(text);
	free(replay);
	free(snap);
	free(dir);
	free(jsonl);
	free(db);
}

TEST(key_snapshot_restore_fills_a_new_database)
{
	char err[512];
	char *db = test_path("d/llm_logs.db");
	struct store *st = open_db(db, STORE_CREATE_ANY, NULL, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	char k1[KEY_LEN + 1], id1[KEY_ID_LEN + 1];
	REQUIRE_INT_EQ(key_create(st, "devops_agent", k1, id1), 0);
	REQUIRE_INT_EQ(store_key_revoke(st, id1, 9), 1);
	REQUIRE_INT_EQ(key_snapshot_save(st, db, err, sizeof(err)), 0);
	store_close(st);
	unlink(db);
	st = open_db(db, STORE_CREATE_ANY, NULL, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	CHECK_INT_EQ(key_snapshot_restore(st, db, err, sizeof(err)), 1);
	char agent[64], hash[65];
	int64_t revoked = 0;
	CHECK_INT_EQ(store_key_get(st, id1, agent, sizeof(agent), hash, &revoked), 1);
	CHECK_STR_EQ(agent, "devops_agent");
	CHECK_INT_EQ(revoked, 9);
	char want[65];
	sha256_hex(k1, KEY_LEN, want);
	CHECK_STR_EQ(hash, want);
	store_close(st);
	free(db);
}

/* Snapshot writers race: a responder's refresh that read the table before `keys create` stored a
 * key must not write its older table over the snapshot the command wrote after it. A refresher
 * thread (a responder, its table always one change behind) runs beside a creator (the command
 * line) and a reader that checks, at every moment, that the snapshot holds every key whose save
 * has returned. */
#define RACE_KEYS 150
static struct {
	const char *db;
	char ids[RACE_KEYS][KEY_ID_LEN + 1];
	int saved;                  /* keys whose snapshot save returned */
	int stop;
	int reads, stale, first_stale;
} race;

static void *race_refresher(void *arg)
{
	(void)arg;
	char err[512];
	struct store *st = open_db(race.db, STORE_CREATE_NONE, NULL, err, sizeof(err));
	struct key_cache *kc = key_cache_new(race.db, 0);
	while (st && !__atomic_load_n(&race.stop, __ATOMIC_ACQUIRE))
		key_cache_refresh(kc, st);
	key_cache_free(kc);
	store_close(st);
	return NULL;
}

static void *race_reader(void *arg)
{
	(void)arg;
	char *snap = keysnap_path(race.db);
	while (!__atomic_load_n(&race.stop, __ATOMIC_ACQUIRE)) {
		int saved = __atomic_load_n(&race.saved, __ATOMIC_ACQUIRE);
		struct key_table t = { 0 };
		char err[256];
		if (keysnap_read(snap, &t, err, sizeof(err)) == 0) {
			race.reads++;
			for (int i = 0; i < saved; i++)
				if (!key_table_find(&t, race.ids[i])) {
					if (!race.stale++)
						race.first_stale = i;
					break;
				}
		}
		key_table_free(&t);
	}
	free(snap);
	return NULL;
}

TEST(key_snapshot_never_goes_back_to_an_older_table)
{
	char err[512];
	char *db = test_path("race/llm_logs.db");
	struct store *st = open_db(db, STORE_CREATE_FIRST_DIR, NULL, err, sizeof(err));
	REQUIRE_NOT_NULL(st);
	memset(&race, 0, sizeof(race));
	race.db = db;
	pthread_t refresher, reader;
	REQUIRE(pthread_create(&refresher, NULL, race_refresher, NULL) == 0);
	REQUIRE(pthread_create(&reader, NULL, race_reader, NULL) == 0);
	int failed = 0;
	for (int i = 0; i < RACE_KEYS; i++) {
		char key[KEY_LEN + 1];
		failed += key_create(st, "devops_agent", key, race.ids[i]) < 0;
		failed += key_snapshot_save(st, db, err, sizeof(err)) < 0;
		__atomic_store_n(&race.saved, i + 1, __ATOMIC_RELEASE);
		usleep(200);
	}
	usleep(20 * 1000);
	__atomic_store_n(&race.stop, 1, __ATOMIC_RELEASE);
	pthread_join(refresher, NULL);
	pthread_join(reader, NULL);
	CHECK_INT_EQ(failed, 0);
	CHECK(race.reads > 0);
	if (race.stale)
		fprintf(stderr, "  %d of %d reads lacked a saved key (the first: key %d)\n", race.stale,
			race.reads, race.first_stale);
	CHECK_INT_EQ(race.stale, 0);
	/* The end state: every key. */
	char *snap = keysnap_path(db);
	struct key_table t = { 0 };
	REQUIRE_INT_EQ(keysnap_read(snap, &t, err, sizeof(err)), 0);
	CHECK_INT_EQ(t.n, RACE_KEYS);
	key_table_free(&t);
	free(snap);
	store_close(st);
	free(db);
}
