/* test_relay.c - the relay's stream state machine and non-streaming stamping over the OpenAI
 * adapter: held role frames, usage chunk, [DONE], failures before and after the first token,
 * a client that goes away, and the end of an upstream body. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "relay.h"

struct fixture {
	struct config cfg;
	struct provider_conf prov;
	struct model_conf model;
	struct xlate_ctx x;
};

static void fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->prov.name = "openrouter";
	f->prov.api = API_OPENAI;
	f->prov.key_env = "OPENROUTER_API_KEY";
	f->prov.api_key = "sk-or-test-0000000000";
	f->prov.base_url = "https://openrouter.ai/api/v1";
	f->prov.developer_role = "developer";
	f->prov.reasoning_field = "reasoning";
	f->model.id = "openrouter/*";
	f->model.prefix = "openrouter/";
	f->model.upstream = "";
	f->x.cfg = &f->cfg;
	f->x.prov = &f->prov;
	f->x.model = &f->model;
	f->x.upstream_model = "anthropic/claude-sonnet-4.5";
	f->x.public_model = "openrouter/anthropic/claude-sonnet-4.5";
	f->x.id = "chatcmpl-relaytest";
	f->x.created = 1767225600;
	f->x.stream = 1;
}

struct sink_rec {
	struct buf all;
	int writes;
	int fail_after;     /* writes accepted before the client "leaves"; -1 = never */
};

static int sink_write(void *ud, const char *p, size_t n)
{
	struct sink_rec *s = ud;
	if (s->fail_after >= 0 && s->writes >= s->fail_after)
		return -1;
	s->writes++;
	buf_append(&s->all, p, n);
	return 0;
}

static void sink_init(struct sink_rec *s)
{
	memset(s, 0, sizeof(*s));
	buf_init(&s->all, BUF_UNLIMITED);
	s->fail_after = -1;
}

#define ROLE "data: {\"id\":\"gen-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"
#define HI "data: {\"id\":\"gen-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n"
#define END "data: {\"id\":\"gen-1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"end_turn\"}]}\n\n"
#define USAGE "data: {\"id\":\"gen-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4,\"cost\":0.000002}}\n\n"
#define DONE "data: [DONE]\n\n"

TEST(relay_stream_happy_path)
{
	struct fixture f;
	fixture_init(&f);
	f.x.include_usage = 1;
	struct sink_rec s;
	sink_init(&s);
	struct relay_sink sink = { sink_write, &s };
	struct relay r;
	relay_init(&r, &provider_openai, &f.x, &sink);
	CHECK_INT_EQ(relay_feed(&r, ROLE, strlen(ROLE)), 0);
	/* The role frame carries nothing yet: held back. */
	CHECK_INT_EQ(s.writes, 0);
	CHECK_INT_EQ(relay_started(&r), 0);
	CHECK_INT_EQ(relay_feed(&r, HI, strlen(HI)), 0);
	CHECK_INT_EQ(s.writes, 2); /* held role frame, then the content frame */
	CHECK_INT_EQ(relay_started(&r), 1);
	CHECK_INT_EQ(relay_feed(&r, END USAGE, strlen(END USAGE)), 0);
	CHECK_INT_EQ(relay_feed(&r, DONE, strlen(DONE)), -1); /* stopped: done */
	CHECK_INT_EQ(r.state, RELAY_DONE);
	CHECK_STR_EQ(r.finish_reason, "stop");
	const char *out = buf_str(&s.all);
	CHECK_CONTAINS(out, "\"id\":\"chatcmpl-relaytest\"");
	CHECK_CONTAINS(out, "\"model\":\"openrouter/anthropic/claude-sonnet-4.5\"");
	CHECK_CONTAINS(out, "\"object\":\"chat.completion.chunk\"");
	CHECK_CONTAINS(out, "\"created\":1767225600");
	CHECK_CONTAINS(out, "\"provider_finish_reason\":\"end_turn\"");
	CHECK_NOT_CONTAINS(out, "gen-1");
	CHECK_CONTAINS(out, "\"usage\":{");
	CHECK_CONTAINS(out, "\"cost\":");
	size_t dl = strlen(DONE);
	CHECK(s.all.len >= dl && memcmp(s.all.p + s.all.len - dl, DONE, dl) == 0);
	CHECK_INT_EQ(r.usage.prompt, 3);
	CHECK_INT_EQ(r.usage.have_cost, 1);
	CHECK_INT_EQ(r.usage.cost_nusd, 2000);
	relay_free(&r);
	buf_free(&s.all);
}

TEST(relay_stream_without_usage_request_hides_usage_chunk)
{
	struct fixture f;
	fixture_init(&f);
	f.x.include_usage = 0;
	struct sink_rec s;
	sink_init(&s);
	struct relay_sink sink = { sink_write, &s };
	struct relay r;
	relay_init(&r, &provider_openai, &f.x, &sink);
	const char *in = ROLE HI END USAGE DONE;
	CHECK_INT_EQ(relay_feed(&r, in, strlen(in)), -1);
	CHECK_INT_EQ(r.state, RELAY_DONE);
	CHECK_NOT_CONTAINS(buf_str(&s.all), "\"usage\"");
	CHECK_INT_EQ(r.usage.prompt, 3); /* still accounted */
	relay_free(&r);
	buf_free(&s.all);
}

TEST(relay_failure_before_first_token_leaves_client_untouched)
{
	struct fixture f;
	fixture_init(&f);
	struct sink_rec s;
	sink_init(&s);
	struct relay_sink sink = { sink_write, &s };
	struct relay r;
	relay_init(&r, &provider_openai, &f.x, &sink);
	const char *in = ROLE "data: {\"error\":{\"code\":429,\"message\":\"slow down\"}}\n\n";
	CHECK_INT_EQ(relay_feed(&r, in, strlen(in)), -1);
	CHECK_INT_EQ(r.state, RELAY_FAILED);
	CHECK_INT_EQ(relay_started(&r), 0);
	CHECK_INT_EQ(s.writes, 0);
	CHECK_INT_EQ(r.err.status, 429);
	relay_emit_error(&r); /* nothing to do: the caller answers with an HTTP error */
	CHECK_INT_EQ(s.writes, 0);
	relay_free(&r);
	buf_free(&s.all);
}

TEST(relay_failure_after_first_token_emits_error_event)
{
	struct fixture f;
	fixture_init(&f);
	struct sink_rec s;
	sink_init(&s);
	struct relay_sink sink = { sink_write, &s };
	struct relay r;
	relay_init(&r, &provider_openai, &f.x, &sink);
	const char *in = ROLE HI;
	CHECK_INT_EQ(relay_feed(&r, in, strlen(in)), 0);
	relay_finish(&r); /* the upstream closed without a finish_reason */
	CHECK_INT_EQ(r.state, RELAY_FAILED);
	CHECK_INT_EQ(r.err.status, 502);
	CHECK_INT_EQ(relay_started(&r), 1);
	relay_emit_error(&r);
	const char *out = buf_str(&s.all);
	CHECK_CONTAINS(out, "data: {\"error\":{");
	size_t dl = strlen(DONE);
	CHECK(s.all.len >= dl && memcmp(s.all.p + s.all.len - dl, DONE, dl) == 0);
	relay_free(&r);
	buf_free(&s.all);
}

TEST(relay_client_gone_stops_the_relay)
{
	struct fixture f;
	fixture_init(&f);
	struct sink_rec s;
	sink_init(&s);
	s.fail_after = 0;
	struct relay_sink sink = { sink_write, &s };
	struct relay r;
	relay_init(&r, &provider_openai, &f.x, &sink);
	const char *in = ROLE HI END DONE;
	CHECK_INT_EQ(relay_feed(&r, in, strlen(in)), -1);
	CHECK_INT_EQ(r.state, RELAY_CLIENT_GONE);
	CHECK_INT_EQ(relay_feed(&r, HI, strlen(HI)), -1);
	relay_finish(&r);
	CHECK_INT_EQ(r.state, RELAY_CLIENT_GONE);
	relay_free(&r);
	buf_free(&s.all);
}

TEST(relay_finish_ends_a_stream_without_done_marker)
{
	struct fixture f;
	fixture_init(&f);
	struct sink_rec s;
	sink_init(&s);
	struct relay_sink sink = { sink_write, &s };
	struct relay r;
	relay_init(&r, &provider_openai, &f.x, &sink);
	/* The last event has no blank line after it and there is no [DONE]. */
	const char *in = ROLE HI "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}";
	CHECK_INT_EQ(relay_feed(&r, in, strlen(in)), 0);
	relay_finish(&r);
	CHECK_INT_EQ(r.state, RELAY_DONE);
	CHECK_STR_EQ(r.finish_reason, "stop");
	relay_free(&r);
	buf_free(&s.all);
}

TEST(relay_oversized_event_fails_the_stream)
{
	struct fixture f;
	fixture_init(&f);
	struct sink_rec s;
	sink_init(&s);
	struct relay_sink sink = { sink_write, &s };
	struct relay r;
	relay_init(&r, &provider_openai, &f.x, &sink);
	size_t big = (size_t)17 << 20; /* above the relay's 16 MiB event cap */
	char *line = malloc(big);
	REQUIRE_NOT_NULL(line);
	memcpy(line, "data: ", 6);
	memset(line + 6, 'x', big - 6);
	CHECK_INT_EQ(relay_feed(&r, line, big), -1);
	CHECK_INT_EQ(r.state, RELAY_FAILED);
	CHECK_INT_EQ(r.err.status, 502);
	free(line);
	relay_free(&r);
	buf_free(&s.all);
}

TEST(relay_finish_with_an_oversized_last_event_fails_the_stream)
{
	/* The event grows past the cap only when relay_finish delivers its unterminated last
	 * line: the relay must still end as failed (not stay "running" with nothing sent). */
	struct fixture f;
	fixture_init(&f);
	struct sink_rec s;
	sink_init(&s);
	struct relay_sink sink = { sink_write, &s };
	struct relay r;
	relay_init(&r, &provider_openai, &f.x, &sink);
	size_t first = ((size_t)16 << 20) - 16; /* one data line just under the cap */
	char *line = malloc(first + 7);
	REQUIRE_NOT_NULL(line);
	memcpy(line, "data: ", 6);
	memset(line + 6, 'x', first);
	line[6 + first] = '\n';
	CHECK_INT_EQ(relay_feed(&r, line, first + 7), 0);
	const char *tail = "data: 0123456789012345678901234567890123456789";
	/* The cap counts the line being read: the tail may already fail as it arrives. */
	int rc = relay_feed(&r, tail, strlen(tail));
	CHECK(rc == 0 || rc == -1);
	relay_finish(&r);
	CHECK_INT_NE(r.state, RELAY_RUNNING);
	CHECK_INT_EQ(r.state, RELAY_FAILED);
	CHECK_INT_EQ(r.err.status, 502);
	free(line);
	relay_free(&r);
	buf_free(&s.all);
}

TEST(relay_finish_with_an_overlong_unterminated_event_line_fails_the_stream)
{
	/* Same end state, small input: the last line is an "event:" field longer than the parser
	 * keeps for an event name, and it has no line end, so it is only parsed by relay_finish. */
	struct fixture f;
	fixture_init(&f);
	struct sink_rec s;
	sink_init(&s);
	struct relay_sink sink = { sink_write, &s };
	struct relay r;
	relay_init(&r, &provider_openai, &f.x, &sink);
	CHECK_INT_EQ(relay_feed(&r, ROLE HI, strlen(ROLE HI)), 0);
	char tail[400];
	memcpy(tail, "event: ", 7);
	memset(tail + 7, 'e', sizeof(tail) - 8);
	tail[sizeof(tail) - 1] = '\0';
	/* The cap counts the line being read: the tail may already fail as it arrives. */
	int rc = relay_feed(&r, tail, strlen(tail));
	CHECK(rc == 0 || rc == -1);
	relay_finish(&r);
	CHECK_INT_NE(r.state, RELAY_RUNNING);
	CHECK_INT_EQ(r.state, RELAY_FAILED);
	relay_free(&r);
	buf_free(&s.all);
}

TEST(relay_response_stamps_the_router_fields)
{
	struct fixture f;
	fixture_init(&f);
	f.x.stream = 0;
	const char *body =
		"{\"id\":\"gen-9\",\"object\":\"chat.completion\",\"created\":1741569952,\"model\":\"anthropic/claude\","
		"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello\",\"reasoning\":\"think\"},"
		"\"finish_reason\":\"end_turn\"}],"
		"\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29}}";
	json_t *out = NULL;
	struct usage u;
	usage_init(&u);
	struct rerr err;
	rerr_clear(&err);
	REQUIRE_INT_EQ(relay_response(&provider_openai, &f.x, body, strlen(body), &out, &u, &err), 0);
	CHECK_STR_EQ(json_string_value(json_object_get(out, "id")), "chatcmpl-relaytest");
	CHECK_STR_EQ(json_string_value(json_object_get(out, "object")), "chat.completion");
	CHECK_STR_EQ(json_string_value(json_object_get(out, "model")), "openrouter/anthropic/claude-sonnet-4.5");
	CHECK_INT_EQ(json_integer_value(json_object_get(out, "created")), 1741569952);
	json_t *c0 = json_array_get(json_object_get(out, "choices"), 0);
	CHECK_STR_EQ(json_string_value(json_object_get(c0, "finish_reason")), "stop");
	CHECK_STR_EQ(json_string_value(json_object_get(c0, "provider_finish_reason")), "end_turn");
	json_t *msg = json_object_get(c0, "message");
	CHECK_STR_EQ(json_string_value(json_object_get(msg, "reasoning_content")), "think");
	CHECK_NULL(json_object_get(msg, "reasoning"));
	CHECK_INT_EQ(u.prompt, 19);
	/* The keys come in OpenAI's order: id, object, created, model first. */
	char *dump = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
	CHECK(strncmp(dump, "{\"id\":\"chatcmpl-relaytest\",\"object\":\"chat.completion\",\"created\":", 64) == 0);
	free(dump);
	json_decref(out);
	usage_clear(&u);
}

TEST(relay_response_rejects_unusable_bodies)
{
	struct fixture f;
	fixture_init(&f);
	static const struct {
		const char *body;
		int status;
	} rows[] = {
		{ "", 502 },
		{ "not json", 502 },
		{ "[]", 502 },
		{ "{\"object\":\"chat.completion\"}", 502 },
		{ "{\"error\":{\"message\":\"overloaded\",\"type\":\"overloaded_error\"}}", 503 },
		{ "{\"error\":{\"message\":\"slow\",\"code\":429}}", 429 },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		test_case("body %s", rows[i].body);
		json_t *out = NULL;
		struct usage u;
		usage_init(&u);
		struct rerr err;
		rerr_clear(&err);
		CHECK_INT_EQ(relay_response(&provider_openai, &f.x, rows[i].body, strlen(rows[i].body), &out, &u, &err), -1);
		CHECK_NULL(out);
		CHECK_INT_EQ(err.status, rows[i].status);
		usage_clear(&u);
	}
}

/* Frames held before the first content are bounded (1 MiB): a flood of role-only chunks fails the
 * attempt with nothing sent, so another model may answer. */
TEST(relay_held_frames_are_bounded)
{
	struct fixture f;
	fixture_init(&f);
	struct sink_rec s;
	sink_init(&s);
	struct relay_sink sink = { sink_write, &s };
	struct relay r;
	relay_init(&r, &provider_openai, &f.x, &sink);
	int rc = 0;
	size_t fed = 0;
	while (rc == 0 && fed < ((size_t)8 << 20)) {
		rc = relay_feed(&r, ROLE, strlen(ROLE));
		fed += strlen(ROLE);
	}
	CHECK_INT_EQ(rc, -1);
	CHECK(fed < ((size_t)2 << 20));
	CHECK_INT_EQ(r.state, RELAY_FAILED);
	CHECK_INT_EQ(relay_started(&r), 0);
	CHECK_INT_EQ(s.writes, 0);
	CHECK_INT_EQ(r.err.status, 502);
	CHECK_STR_EQ(r.err.code, "bad_upstream_response");
	CHECK_CONTAINS(r.err.message, "before any content");
	relay_free(&r);
	buf_free(&s.all);
}

/* The reasoning kept for the next turn is bounded (4 MiB): past it the stream, already started,
 * ends with an error event and [DONE]. */
TEST(relay_kept_reasoning_is_bounded)
{
	struct fixture f;
	fixture_init(&f);
	f.prov.keep_reasoning_content = 1;
	struct sink_rec s;
	sink_init(&s);
	struct relay_sink sink = { sink_write, &s };
	struct relay r;
	relay_init(&r, &provider_openai, &f.x, &sink);
	char text[4001];
	memset(text, 'r', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	char ev[4200];
	snprintf(ev, sizeof(ev), "data: {\"id\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"%s\"},\"finish_reason\":null}]}\n\n", text);
	int rc = 0;
	size_t fed = 0;
	while (rc == 0 && fed < ((size_t)16 << 20)) {
		rc = relay_feed(&r, ev, strlen(ev));
		fed += strlen(text);
	}
	CHECK_INT_EQ(rc, -1);
	CHECK(fed > ((size_t)4 << 20) && fed < ((size_t)5 << 20));
	CHECK_INT_EQ(r.state, RELAY_FAILED);
	CHECK_INT_EQ(relay_started(&r), 1);
	CHECK_CONTAINS(r.err.message, "reasoning_content");
	relay_emit_error(&r);
	const char *tail = "\"code\":\"bad_upstream_response\"}}\n\ndata: [DONE]\n\n";
	CHECK(s.all.len > strlen(tail) && strcmp(s.all.p + s.all.len - strlen(tail), tail) == 0);
	relay_free(&r);
	buf_free(&s.all);
}

/* What is kept for the next turn from thinking_blocks deltas is bounded (8 MiB of JSON): blocks
 * handed over one by one, each small, fail the stream past it. */
TEST(relay_kept_thinking_blocks_are_bounded)
{
	struct fixture f;
	fixture_init(&f);
	struct sink_rec s;
	sink_init(&s);
	struct relay_sink sink = { sink_write, &s };
	struct relay r;
	relay_init(&r, &provider_openai, &f.x, &sink);
	char text[16001];
	memset(text, 't', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	char ev[16300];
	snprintf(ev, sizeof(ev), "data: {\"id\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\",\"thinking_blocks\":[{\"type\":\"thinking\",\"thinking\":\"%s\",\"signature\":\"s\"}]},\"finish_reason\":null}]}\n\n", text);
	int rc = 0;
	size_t fed = 0;
	while (rc == 0 && fed < ((size_t)32 << 20)) {
		rc = relay_feed(&r, ev, strlen(ev));
		fed += strlen(text);
	}
	CHECK_INT_EQ(rc, -1);
	CHECK(fed > ((size_t)7 << 20) && fed < ((size_t)9 << 20));
	CHECK_INT_EQ(r.state, RELAY_FAILED);
	CHECK_CONTAINS(r.err.message, "thinking blocks");
	CHECK_CONTAINS(r.err.message, "8 MiB");
	relay_free(&r);
	buf_free(&s.all);
}

/* Tool-call arguments are relayed, not kept: a long arguments stream is not held to the bound of
 * what is kept for the next turn. */
TEST(relay_tool_call_arguments_do_not_count_as_kept)
{
	struct fixture f;
	fixture_init(&f);
	struct sink_rec s;
	sink_init(&s);
	struct relay_sink sink = { sink_write, &s };
	struct relay r;
	relay_init(&r, &provider_openai, &f.x, &sink);
	char args[16001];
	memset(args, 'a', sizeof(args) - 1);
	args[sizeof(args) - 1] = '\0';
	char ev[16300];
	snprintf(ev, sizeof(ev), "data: {\"id\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"function\":{\"arguments\":\"%s\"}}]},\"finish_reason\":null}]}\n\n", args);
	int rc = 0;
	size_t fed = 0;
	while (rc == 0 && fed < ((size_t)12 << 20)) {
		rc = relay_feed(&r, ev, strlen(ev));
		fed += strlen(args);
	}
	CHECK_INT_EQ(rc, 0);
	CHECK_INT_EQ(r.state, RELAY_RUNNING);
	relay_free(&r);
	buf_free(&s.all);
}
