/* fuzz_openai_stream.c - the relay fed with the input as an upstream SSE body, in pieces cut at
 * input-derived positions, then relay_finish, and relay_emit_error when the stream failed.
 *
 * The provider row, include_usage and the point at which the client "goes away" are also drawn
 * from the input. Properties: every write to the client is a sequence of complete
 * "data: <JSON object or [DONE]>\n\n" frames, each chunk stamped with the router's id and the
 * public model; after relay_finish the relay is no longer running; a finished stream ends with
 * [DONE]; a failed stream has an error value (that never quotes the provider key), and once
 * something was sent the client gets an error event followed by [DONE].
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "relay.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	fuzz_load_config(argv);
	fuzz_build_contexts();
	return 0;
}

struct client {
	const struct xlate_ctx *x;
	int writes;
	int gone_after;      /* writes accepted before the client leaves, -1 = never */
	int saw_done;        /* the last frame written was [DONE] */
	int saw_error;       /* an error event was written */
};

static void check_frames(struct client *c, const char *p, size_t n)
{
	static const char done[] = "[DONE]";
	size_t at = 0;
	FUZZ_ASSERT(n > 0);
	while (at < n) {
		FUZZ_ASSERT(n - at >= 8 && memcmp(p + at, "data: ", 6) == 0);
		const char *start = p + at + 6;
		const char *end = memmem(start, n - at - 6, "\n\n", 2);
		FUZZ_ASSERT(end != NULL);
		size_t len = (size_t)(end - start);
		FUZZ_ASSERT(!c->saw_done); /* nothing after [DONE] */
		if (len == sizeof(done) - 1 && memcmp(start, done, len) == 0) {
			c->saw_done = 1;
		} else {
			json_error_t jerr;
			json_t *j = json_loadb(start, len, 0, &jerr);
			FUZZ_ASSERT(json_is_object(j));
			if (json_object_get(j, "error")) {
				c->saw_error = 1;
			} else {
				FUZZ_ASSERT(strcmp(json_string_value(json_object_get(j, "id")), c->x->id) == 0);
				FUZZ_ASSERT(strcmp(json_string_value(json_object_get(j, "model")),
						   c->x->public_model) == 0);
				FUZZ_ASSERT(strcmp(json_string_value(json_object_get(j, "object")),
						   "chat.completion.chunk") == 0);
				FUZZ_ASSERT(json_is_array(json_object_get(j, "choices")));
			}
			json_decref(j);
		}
		at = (size_t)(end - p) + 2;
	}
}

static int client_write(void *ud, const char *p, size_t n)
{
	struct client *c = ud;
	if (c->gone_after >= 0 && c->writes >= c->gone_after)
		return -1;
	c->writes++;
	check_frames(c, p, n);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t seed = fuzz_hash(data, size);
	uint64_t pick = fuzz_next(&seed);
	static const int rows[] = { FUZZ_CTX_OPENAI, FUZZ_CTX_DEEPSEEK, FUZZ_CTX_OPENROUTER,
				    FUZZ_CTX_GROQ };
	struct xlate_ctx x = fuzz_ctx[rows[pick % 4]];
	x.stream = 1;
	x.include_usage = (int)((pick >> 8) & 1);
	struct client c = { .x = &x, .gone_after = (pick >> 16) % 8 == 0 ? (int)((pick >> 24) % 4) : -1 };
	struct relay_sink sink = { client_write, &c };
	struct relay r;
	relay_init(&r, &provider_openai, &x, &sink);
	size_t at = 0;
	int rc = 0;
	while (at < size && rc == 0) {
		size_t n = (size_t)(fuzz_next(&seed) % 64);
		if (n > size - at)
			n = size - at;
		rc = relay_feed(&r, (const char *)data + at, n);
		at += n;
		FUZZ_ASSERT(rc == 0 ? r.state == RELAY_RUNNING : r.state != RELAY_RUNNING);
	}
	relay_finish(&r);
	FUZZ_ASSERT(r.state != RELAY_RUNNING);
	switch (r.state) {
	case RELAY_DONE:
		FUZZ_ASSERT(c.saw_done);
		FUZZ_ASSERT(r.err.status == 0);
		break;
	case RELAY_FAILED:
		fuzz_check_rerr(&r.err, 1);
		FUZZ_ASSERT(!c.saw_done);
		if (relay_started(&r)) {
			relay_emit_error(&r);
			FUZZ_ASSERT(c.gone_after >= 0 || (c.saw_error && c.saw_done));
		}
		break;
	case RELAY_CLIENT_GONE:
		FUZZ_ASSERT(c.gone_after >= 0);
		break;
	case RELAY_RUNNING:
		break;
	}
	relay_free(&r);
	return 0;
}
