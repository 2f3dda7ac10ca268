/* test_toolstate.c - the state an assistant turn with tool calls carries into the next request:
 * what is kept, and what a later request gets back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "toolstate.h"
#include "util.h"

static json_t *parse(const char *s)
{
	json_error_t e;
	json_t *j = json_loads(s, 0, &e);
	if (!j)
		printf("  bad JSON in the test: %s\n", e.text);
	return j;
}

static struct provider_conf provider(const char *name, enum provider_api api)
{
	struct provider_conf p;
	memset(&p, 0, sizeof(p));
	p.name = (char *)name;
	p.api = api;
	return p;
}

/* A turn's thinking is kept once, with its first tool call: restore looks for it there, and a
 * copy per call made one row of a 1 MiB thinking block and 200 calls 200 MiB. */
TEST(toolstate_keeps_the_turn_with_its_first_call_only)
{
	struct provider_conf anth = provider("anthropic", API_ANTHROPIC);
	json_t *msg = parse("{\"role\":\"assistant\",\"thinking_blocks\":[{\"type\":\"thinking\",\"thinking\":\"t\","
			    "\"signature\":\"s\"}],\"tool_calls\":[{\"id\":\"toolu_1\",\"type\":\"function\"},"
			    "{\"id\":\"toolu_2\",\"type\":\"function\"},{\"id\":\"toolu_3\",\"type\":\"function\"}]}");
	REQUIRE_NOT_NULL(msg);
	json_t *st = toolstate_from_message(msg, &anth);
	REQUIRE_NOT_NULL(st);
	CHECK_INT_EQ(json_object_size(st), 1);
	CHECK(json_is_array(json_object_get(json_object_get(st, "toolu_1"), "thinking_blocks")));
	CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(st, "toolu_1"), "provider")), "anthropic");
	json_decref(st);
	json_decref(msg);

	/* Gemini's state is per call: every call keeps its own. */
	struct provider_conf gem = provider("gemini", API_GEMINI);
	msg = parse("{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"a\",\"extra_content\":{\"google\":{\"thought_signature\":\"x\"}}},"
		    "{\"id\":\"b\",\"extra_content\":{\"google\":{\"thought_signature\":\"y\"}}}]}");
	st = toolstate_from_message(msg, &gem);
	REQUIRE_NOT_NULL(st);
	CHECK_INT_EQ(json_object_size(st), 2);
	json_decref(st);
	json_decref(msg);
}

struct lookups {
	json_t *state;
	int calls;
};

static json_t *lookup(void *ud, const char *id)
{
	struct lookups *l = ud;
	l->calls++;
	json_t *s = json_object_get(l->state, id);
	return s ? json_deep_copy(s) : NULL;
}

/* A stored turn goes back into the one assistant message that made its calls: a request naming
 * the same call in thousands of messages made thousands of copies (and an upstream body of
 * hundreds of MB). */
TEST(toolstate_restores_a_call_once_a_request)
{
	struct provider_conf anth = provider("anthropic", API_ANTHROPIC);
	struct lookups l = { .state = parse("{\"toolu_1\":{\"provider\":\"anthropic\",\"thinking_blocks\":"
					   "[{\"type\":\"thinking\",\"thinking\":\"t\",\"signature\":\"s\"}]}}") };
	REQUIRE_NOT_NULL(l.state);
	const char *turn = "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"toolu_1\",\"type\":\"function\","
			   "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}";
	char *text = xasprintf("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},%s,"
			       "{\"role\":\"tool\",\"tool_call_id\":\"toolu_1\",\"content\":\"ok\"},%s,%s]}",
			       turn, turn, turn);
	json_t *body = parse(text);
	free(text);
	REQUIRE_NOT_NULL(body);
	json_t *fixed = toolstate_restore(body, &anth, lookup, &l);
	REQUIRE_NOT_NULL(fixed);
	CHECK_INT_EQ(l.calls, 1);
	const json_t *msgs = json_object_get(fixed, "messages");
	CHECK(json_is_array(json_object_get(json_array_get(msgs, 1), "thinking_blocks")));
	CHECK_NULL(json_object_get(json_array_get(msgs, 3), "thinking_blocks"));
	CHECK_NULL(json_object_get(json_array_get(msgs, 4), "thinking_blocks"));
	json_decref(fixed);
	json_decref(body);

	/* The ordinary case: one assistant turn with two calls gets its thinking back. */
	l.calls = 0;
	body = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
		     "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"toolu_1\",\"type\":\"function\"},"
		     "{\"id\":\"toolu_2\",\"type\":\"function\"}]}]}");
	fixed = toolstate_restore(body, &anth, lookup, &l);
	REQUIRE_NOT_NULL(fixed);
	CHECK(json_is_array(json_object_get(json_array_get(json_object_get(fixed, "messages"), 1), "thinking_blocks")));
	json_decref(fixed);
	json_decref(body);
	json_decref(l.state);
}
