/* test_memgauge.c - the process-wide gauge of call memory: its arithmetic, buffers refused past
 * 64 KiB only when the gauge is full, JSON parses refused before jansson runs (jansson's own
 * allocations never), the count back where it started once everything is freed, and what a
 * client is answered when its body cannot be held. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "chatreq.h"
#include "config.h"
#include "harness.h"
#include "http.h"
#include "jsonx.h"
#include "memgauge.h"
#include "providers/provider.h"
#include "util.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* A call starts on this thread with a cap of `room` bytes above what the process holds now. */
static size_t start_call(size_t room)
{
	memgauge_clear();
	size_t held = memgauge_held();
	memgauge_set_cap(held + room);
	return held;
}

/* A chat body of one user message of n bytes of text. */
static char *text_body(size_t n, size_t *len)
{
	const char *head = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"";
	const char *tail = "\"}]}";
	size_t hl = strlen(head), tl = strlen(tail);
	char *s = malloc(hl + n + tl + 1);
	memcpy(s, head, hl);
	for (size_t i = 0; i < n; i++)
		s[hl + i] = "lorem ipsum dolor sit amet "[i % 27];
	memcpy(s + hl + n, tail, tl + 1);
	*len = hl + n + tl;
	return s;
}

TEST(memgauge_charges_add_up_and_refusals_leave_the_count)
{
	size_t held = start_call(MiB);
	unsigned long refusals = memgauge_refusals();
	CHECK_INT_EQ(memgauge_charge(600 * KiB, 1), 0);
	CHECK_INT_EQ(memgauge_held(), held + 600 * KiB);
	CHECK(!memgauge_refused());
	/* 600 + 600 KiB would pass the 1 MiB of room: refused, nothing counted. */
	CHECK_INT_EQ(memgauge_charge(600 * KiB, 1), -1);
	CHECK_INT_EQ(memgauge_held(), held + 600 * KiB);
	CHECK(memgauge_refused());
	CHECK_INT_EQ(memgauge_refusals(), refusals + 1);
	/* Exactly up to the cap fits. */
	CHECK_INT_EQ(memgauge_charge(MiB - 600 * KiB, 1), 0);
	CHECK_INT_EQ(memgauge_held(), memgauge_cap());
	/* A charge that may not be refused is taken past the cap; refusable ones then fail. */
	CHECK_INT_EQ(memgauge_charge(KiB, 0), 0);
	CHECK_INT_EQ(memgauge_held(), memgauge_cap() + KiB);
	CHECK_INT_EQ(memgauge_charge(1, 1), -1);
	/* A new call forgets the refusal; releasing makes room again. */
	memgauge_clear();
	CHECK(!memgauge_refused());
	memgauge_release(MiB + KiB);
	CHECK_INT_EQ(memgauge_held(), held);
	CHECK_INT_EQ(memgauge_charge(MiB, 1), 0);
	memgauge_release(MiB);
	CHECK_INT_EQ(memgauge_held(), held);
	CHECK_INT_EQ(memgauge_refusals(), refusals + 2);
}

static void *charge_off_call_thread(void *arg)
{
	(void)arg;
	/* This thread never started a call: nothing it charges is refused. */
	long rc = memgauge_charge(8 * MiB, 1);
	memgauge_release(8 * MiB);
	return (void *)rc;
}

TEST(memgauge_refuses_only_on_a_thread_serving_a_call)
{
	size_t held = start_call(KiB);
	pthread_t t;
	void *rc = (void *)-2;
	REQUIRE(pthread_create(&t, NULL, charge_off_call_thread, NULL) == 0);
	pthread_join(t, &rc);
	CHECK_INT_EQ((long)rc, 0);
	CHECK_INT_EQ(memgauge_held(), held);
	CHECK_INT_EQ(memgauge_charge(8 * MiB, 1), -1);
}

TEST(memgauge_parse_reservation_covers_the_parse_then_is_released)
{
	size_t held = start_call(MiB);
	CHECK_INT_EQ(memgauge_parse_begin(512 * KiB), 0);
	CHECK_INT_EQ(memgauge_held(), held + 512 * KiB);
	/* Charges inside the parse draw on the reservation first. */
	CHECK_INT_EQ(memgauge_charge(100 * KiB, 0), 0);
	CHECK_INT_EQ(memgauge_held(), held + 512 * KiB);
	CHECK_INT_EQ(memgauge_charge(500 * KiB, 0), 0);
	CHECK_INT_EQ(memgauge_held(), held + 600 * KiB);
	memgauge_parse_end();
	CHECK_INT_EQ(memgauge_held(), held + 600 * KiB);
	memgauge_release(600 * KiB);
	/* Only what is left of a reservation goes back at its end. */
	CHECK_INT_EQ(memgauge_parse_begin(512 * KiB), 0);
	CHECK_INT_EQ(memgauge_charge(12 * KiB, 0), 0);
	memgauge_parse_end();
	CHECK_INT_EQ(memgauge_held(), held + 12 * KiB);
	memgauge_release(12 * KiB);
	/* Over the cap: a large parse is refused, a small one never. */
	CHECK_INT_EQ(memgauge_parse_begin(2 * MiB), -1);
	CHECK(memgauge_refused());
	CHECK_INT_EQ(memgauge_held(), held);
	CHECK_INT_EQ(memgauge_charge(MiB, 0), 0);
	CHECK_INT_EQ(memgauge_parse_begin(MEMGAUGE_SMALL_BYTES), 0);
	memgauge_parse_end();
	memgauge_release(MiB);
	CHECK_INT_EQ(memgauge_held(), held);
}

TEST(memgauge_buf_growth_refused_past_64k_only_when_the_gauge_is_full)
{
	size_t held = start_call(2 * MiB);
	struct buf b, big, open_ended;
	buf_init(&b, 8 * MiB);
	buf_init(&big, 8 * MiB);
	buf_init(&open_ended, BUF_UNLIMITED);
	char chunk[4096];
	memset(chunk, 'x', sizeof(chunk));
	/* Under the cap a buffer grows as always, and its capacity is counted. */
	while (b.len < 512 * KiB)
		REQUIRE(buf_append(&b, chunk, sizeof(chunk)) == 0);
	CHECK_INT_EQ(memgauge_held(), held + b.cap);
	CHECK(!memgauge_refused());
	/* Fill the gauge past its cap with charges that are never refused. */
	CHECK_INT_EQ(memgauge_charge(2 * MiB, 0), 0);
	/* A small buffer still grows up to 64 KiB... */
	while (big.len + sizeof(chunk) < MEMGAUGE_SMALL_BYTES)
		REQUIRE(buf_append(&big, chunk, sizeof(chunk)) == 0);
	CHECK(!memgauge_refused());
	CHECK(big.cap <= MEMGAUGE_SMALL_BYTES);
	/* ...but not past it: refused like its own limit, unchanged, and the flag tells why. */
	size_t len = big.len, cap = big.cap;
	size_t before = memgauge_held();
	CHECK_INT_EQ(buf_append(&big, chunk, sizeof(chunk)), -1);
	CHECK(memgauge_refused());
	CHECK_INT_EQ(big.len, len);
	CHECK_INT_EQ(big.cap, cap);
	CHECK_INT_EQ(memgauge_held(), before);
	/* An append within the capacity it has needs no growth. */
	CHECK_INT_EQ(buf_printf(&big, "%s", "a few bytes more"), 0);
	/* A buffer without a limit is never refused (its callers may not look). */
	while (open_ended.len < 256 * KiB)
		REQUIRE(buf_append(&open_ended, chunk, sizeof(chunk)) == 0);
	/* Once the gauge has room again, the same growth succeeds. */
	memgauge_release(2 * MiB);
	buf_free(&open_ended);
	memgauge_clear();
	CHECK_INT_EQ(buf_append(&big, chunk, sizeof(chunk)), 0);
	CHECK(!memgauge_refused());
	/* Freeing releases every byte charged; a stolen text is no longer counted. */
	buf_free(&b);
	char *t = buf_steal(&big);
	free(t);
	CHECK_INT_EQ(memgauge_held(), held);
}

TEST(memgauge_json_parse_refused_inside_jsonx_loadb_only)
{
	size_t len;
	char *doc = text_body(512 * KiB, &len);
	size_t held = start_call(4 * MiB);
	unsigned long jx = jsonx_refusals();
	/* With room, the parse goes through and its tree is counted while it lives. */
	json_error_t e;
	json_t *j = jsonx_loadb(doc, len, 0, &e);
	REQUIRE_NOT_NULL(j);
	CHECK(memgauge_held() >= held + 512 * KiB);
	CHECK(!memgauge_refused());
	json_decref(j);
	CHECK_INT_EQ(memgauge_held(), held);
	/* Over the cap, the same parse is refused before jansson runs, and says why. */
	CHECK_INT_EQ(memgauge_charge(4 * MiB, 0), 0);
	j = jsonx_loadb(doc, len, 0, &e);
	CHECK_NULL(j);
	CHECK(memgauge_refused());
	CHECK_CONTAINS(e.text, "server.call_memory_mb");
	CHECK_INT_EQ(jsonx_refusals(), jx);
	/* jansson outside a guarded parse is never refused: the same text, and trees built by hand. */
	j = json_loadb(doc, len, 0, &e);
	CHECK(j != NULL);
	json_t *o = json_object();
	for (int i = 0; i < 1000; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		CHECK_INT_EQ(json_object_set_new(o, k, json_string(doc + len - 2000)), 0);
	}
	CHECK_INT_EQ(json_object_size(o), 1000);
	/* A small parse (a stream event) is never refused either. */
	const char *ev = "{\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}";
	json_t *small = jsonx_loadb(ev, strlen(ev), 0, &e);
	CHECK(small != NULL);
	json_decref(small);
	json_decref(o);
	json_decref(j);
	memgauge_release(4 * MiB);
	CHECK_INT_EQ(memgauge_held(), held);
	free(doc);
}

static void *free_tree(void *arg)
{
	json_decref(arg);
	return NULL;
}

TEST(memgauge_count_returns_to_its_start)
{
	size_t len;
	char *doc = text_body(200 * KiB, &len);
	size_t held = start_call(64 * MiB);
	json_error_t e;
	json_t *j = jsonx_loadb(doc, len, 0, &e);
	REQUIRE_NOT_NULL(j);
	struct buf out;
	buf_init(&out, 16 * MiB);
	CHECK_INT_EQ(json_to_buf(j, &out), 0);
	char *text = jsonx_dumps(j, JSON_COMPACT);
	REQUIRE_NOT_NULL(text);
	CHECK_INT_EQ(strlen(text), out.len);
	free(text);
	CHECK(memgauge_held() > held + 2 * 200 * KiB);
	/* A text taken with its count stays counted until its owner releases it. */
	size_t counted = 0, before = memgauge_held();
	char *kept = buf_steal_counted(&out, &counted);
	CHECK(counted >= 200 * KiB);
	CHECK_INT_EQ(memgauge_held(), before);
	free(kept);
	memgauge_release(counted);
	/* A tree freed on another thread releases what it charged here. */
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, free_tree, j) == 0);
	pthread_join(t, NULL);
	CHECK_INT_EQ(memgauge_held(), held);
	free(doc);
}

/* Texts the router makes from JSON are jsonx_dumps's: json_dumps's text, taken through the
 * gauge's allocator on a thread serving calls and given back with free(), stayed counted, so the
 * count crept up with every embeddings call until the gauge refused everything. */
TEST(memgauge_embeddings_answer_leaves_the_count_where_it_was)
{
	size_t held = start_call(64 * MiB);
	struct xlate_ctx x = { .public_model = "text-embedding-3-small", .embed = 1 };
	struct buf items, out;
	buf_init(&items, BUF_UNLIMITED);
	buf_puts(&items, "{\"object\":\"embedding\",\"index\":0,\"embedding\":[0.5]}");
	struct usage u;
	usage_init(&u);
	u.prompt = 3;
	for (int i = 0; i < 100; i++) {
		buf_init(&out, BUF_UNLIMITED);
		CHECK_INT_EQ(embed_response_text(&x, &items, &u, &out), 0);
		if (i == 0)
			CHECK_CONTAINS(buf_str(&out), "\"model\":\"text-embedding-3-small\"");
		buf_free(&out);
	}
	buf_free(&items);
	CHECK_INT_EQ(memgauge_held(), held);
}

/* ---- what the client gets ---- */

struct body_io {
	const char *p;
	size_t len, off;
	char cl[32];
};

static const char *body_param(void *ctx, const char *name)
{
	struct body_io *b = ctx;
	if (strcmp(name, "REQUEST_METHOD") == 0)
		return "POST";
	if (strcmp(name, "REQUEST_URI") == 0)
		return "/v1/chat/completions";
	if (strcmp(name, "CONTENT_LENGTH") == 0)
		return b->cl;
	return NULL;
}

static long body_read(void *ctx, char *p, size_t n)
{
	struct body_io *b = ctx;
	size_t k = b->len - b->off < n ? b->len - b->off : n;
	memcpy(p, b->p + b->off, k);
	b->off += k;
	return (long)k;
}

static int body_write(void *ctx, const char *p, size_t n)
{
	(void)ctx, (void)p, (void)n;
	return 0;
}

static int body_flush(void *ctx)
{
	(void)ctx;
	return 0;
}

TEST(memgauge_full_body_is_503_server_busy_not_413)
{
	size_t len;
	char *doc = text_body(2 * MiB, &len);
	struct body_io bio = { .p = doc, .len = len };
	snprintf(bio.cl, sizeof(bio.cl), "%zu", len);
	struct http_io io = { .param = body_param, .read = body_read, .write = body_write,
			      .flush = body_flush, .ctx = &bio };
	size_t held = start_call(MiB);
	struct request req;
	request_init(&req, &io);
	struct rerr err;
	rerr_clear(&err);
	CHECK_INT_EQ(request_read_body(&req, 8 * MiB, &err), -1);
	CHECK_INT_EQ(err.status, 503);
	CHECK_STR_EQ(err.type, "server_error");
	CHECK_STR_EQ(err.code, "server_busy");
	CHECK_INT_EQ(err.retry_after, 1);
	CHECK_CONTAINS(err.message, "server.call_memory_mb = ");
	request_free(&req);
	CHECK_INT_EQ(memgauge_held(), held);
	/* With room for the body (a 4 MiB buffer), but not for its parse (about 6 MiB): 503 too. */
	start_call(5 * MiB);
	bio.off = 0;
	request_init(&req, &io);
	rerr_clear(&err);
	CHECK_INT_EQ(request_read_body(&req, 8 * MiB, &err), 0);
	json_t *body = NULL;
	struct chatreq cr;
	CHECK_INT_EQ(chatreq_parse(req.body.p, req.body.len, &body, &cr, &err), -1);
	CHECK_NULL(body);
	CHECK_INT_EQ(err.status, 503);
	CHECK_STR_EQ(err.code, "server_busy");
	CHECK_INT_EQ(err.retry_after, 1);
	request_free(&req);
	/* The body past the request's own limit is still a 413. */
	start_call(64 * MiB);
	bio.off = 0;
	request_init(&req, &io);
	rerr_clear(&err);
	CHECK_INT_EQ(request_read_body(&req, MiB, &err), -1);
	CHECK_INT_EQ(err.status, 413);
	CHECK_STR_EQ(err.code, "request_too_large");
	request_free(&req);
	CHECK_INT_EQ(memgauge_held(), held);
	free(doc);
}

/* ---- the cap comes from the configuration ---- */

static void write_with_cap(const char *path, const char *shipped, const char *mb)
{
	const char *key = "call_memory_mb = 256;";
	const char *at = strstr(shipped, key);
	char *text = xasprintf("%.*scall_memory_mb = %s;%s", (int)(at ? at - shipped : 0), shipped, mb,
			       at ? at + strlen(key) : "");
	test_write_file(path, text, (size_t)-1);
	free(text);
}

TEST(memgauge_cap_follows_the_configuration_and_its_reload)
{
	char *shipped_path = test_repo_path("conf/llm-router.conf");
	char *shipped = test_read_file(shipped_path, NULL);
	REQUIRE_NOT_NULL(shipped);
	REQUIRE(strstr(shipped, "call_memory_mb = 256;") != NULL);
	char *dir = test_path("conf");
	CHECK_INT_EQ(mkdir(dir, 0700), 0);
	char *conf = xasprintf("%s/llm-router.conf", dir);
	write_with_cap(conf, shipped, "64");
	struct buf errors;
	buf_init(&errors, 1 << 20);
	struct config *cfg = config_load(conf, &errors);
	REQUIRE_NOT_NULL(cfg);
	CHECK_INT_EQ(cfg->call_memory_mb, 64);
	config_global_set(cfg);
	CHECK_INT_EQ(memgauge_cap(), 64 * MiB);
	/* A reload applies the new cap at once; a rejected one keeps the last. */
	write_with_cap(conf, shipped, "1024 ");
	CHECK_INT_EQ(config_reload(1), 1);
	CHECK_INT_EQ(memgauge_cap(), 1024 * MiB);
	write_with_cap(conf, shipped, "8");
	CHECK_INT_EQ(config_reload(1), -1);
	CHECK_INT_EQ(memgauge_cap(), 1024 * MiB);
	config_global_set(NULL);
	buf_free(&errors);
	free(conf);
	free(dir);
	free(shipped);
	free(shipped_path);
}
