/* toolstate.c - tool-call state kept between turns (see toolstate.h). Pure: no I/O.
 *
 * Which state a provider needs back: Anthropic the turn's thinking blocks; Gemini each call's
 * extra_content (thought signature, Gemini's own call id); a provider with keep_reasoning_content
 * (DeepSeek) the turn's reasoning_content. State is only ever restored into a request for the
 * provider that produced it: signatures are bound to their model family.
 */
#include "toolstate.h"

#include <string.h>

#include "jsonx.h"
#include "util.h"

static int wants_thinking(const struct provider_conf *p)
{
	return p->api == API_ANTHROPIC;
}

static int wants_extra(const struct provider_conf *p)
{
	return p->api == API_GEMINI;
}

static int wants_reasoning(const struct provider_conf *p)
{
	return p->keep_reasoning_content;
}

json_t *toolstate_from_message(const json_t *message, const struct provider_conf *prov)
{
	const json_t *calls = json_object_get(message, "tool_calls");
	if (!json_is_array(calls) || json_array_size(calls) == 0)
		return NULL;
	const json_t *blocks = json_object_get(message, "thinking_blocks");
	const json_t *reasoning = json_object_get(message, "reasoning_content");
	json_t *state = json_object();
	size_t i;
	const json_t *c;
	json_array_foreach(calls, i, c)
	{
		const char *id = json_str(c, "id");
		if (!id || !id[0])
			continue;
		json_t *s = json_object();
		/* The turn's thinking or reasoning goes with its first call only: toolstate_restore
		 * looks for it there, and a copy per call would store it as many times. */
		if (i == 0 && wants_thinking(prov) && json_is_array(blocks) && json_array_size(blocks))
			json_object_set(s, "thinking_blocks", (json_t *)blocks);
		if (i == 0 && wants_reasoning(prov) && json_is_string(reasoning))
			json_object_set(s, "reasoning_content", (json_t *)reasoning);
		const json_t *extra = json_object_get(c, "extra_content");
		if (wants_extra(prov) && json_is_object(extra))
			json_object_set(s, "extra_content", (json_t *)extra);
		if (json_object_size(s) == 0) {
			json_decref(s);
			continue;
		}
		json_object_set_new(s, "provider", json_string(prov->name));
		json_object_set_new(state, id, s);
	}
	if (json_object_size(state) == 0) {
		json_decref(state);
		return NULL;
	}
	return state;
}

/* State of one call if it came from prov, else NULL (new reference). */
static json_t *state_for(const char *id, const struct provider_conf *prov,
			 json_t *(*lookup)(void *, const char *), void *ud)
{
	json_t *s = lookup(ud, id);
	if (s && strcmp(str_or_empty(json_str(s, "provider")), prov->name) != 0) {
		json_decref(s);
		return NULL;
	}
	return s;
}

json_t *toolstate_restore(const json_t *body, const struct provider_conf *prov,
			  json_t *(*lookup)(void *ud, const char *tool_call_id), void *ud)
{
	if (!wants_thinking(prov) && !wants_extra(prov) && !wants_reasoning(prov))
		return NULL;
	const json_t *messages = json_object_get(body, "messages");
	json_t *fixed = NULL;
	/* A call's state goes back once a request, into the first message that names the call: a
	 * body naming it in thousands of messages would otherwise copy it thousands of times. */
	json_t *seen = json_object();
	size_t i;
	const json_t *m;
	json_array_foreach(messages, i, m)
	{
		const json_t *calls = json_object_get(m, "tool_calls");
		const char *role = json_str(m, "role");
		if (!role || strcmp(role, "assistant") != 0 || !json_is_array(calls) ||
		    json_array_size(calls) == 0)
			continue;
		int need_turn = (wants_thinking(prov) && !json_object_get(m, "thinking_blocks")) ||
				(wants_reasoning(prov) && !json_object_get(m, "reasoning_content"));
		int need_calls = 0;
		size_t k;
		const json_t *c;
		json_array_foreach(calls, k, c)
		{
			if (wants_extra(prov) && !json_object_get(c, "extra_content"))
				need_calls = 1;
		}
		if (!need_turn && !need_calls)
			continue;
		json_t *nm = json_copy((json_t *)m);
		json_t *ncalls = json_deep_copy(calls);
		int changed = 0;
		json_t *nc;
		json_array_foreach(ncalls, k, nc)
		{
			const char *id = json_str(nc, "id");
			if (!id)
				continue;
			json_t *s = NULL;
			if (((need_turn && k == 0) || (need_calls && !json_object_get(nc, "extra_content"))) &&
			    !json_object_get(seen, id)) {
				json_object_set_new(seen, id, json_true());
				s = state_for(id, prov, lookup, ud);
			}
			if (!s)
				continue;
			if (k == 0 && need_turn) {
				json_t *tb = json_object_get(s, "thinking_blocks");
				json_t *rc = json_object_get(s, "reasoning_content");
				if (wants_thinking(prov) && tb && !json_object_get(nm, "thinking_blocks")) {
					json_object_set(nm, "thinking_blocks", tb);
					changed = 1;
				}
				if (wants_reasoning(prov) && rc && !json_object_get(nm, "reasoning_content")) {
					json_object_set(nm, "reasoning_content", rc);
					changed = 1;
				}
			}
			json_t *extra = json_object_get(s, "extra_content");
			if (wants_extra(prov) && extra && !json_object_get(nc, "extra_content")) {
				json_object_set(nc, "extra_content", extra);
				changed = 1;
			}
			json_decref(s);
		}
		if (changed) {
			json_object_set_new(nm, "tool_calls", ncalls);
			if (!fixed) {
				fixed = json_copy((json_t *)body);
				json_object_set_new(fixed, "messages", json_copy((json_t *)messages));
			}
			json_array_set_new(json_object_get(fixed, "messages"), i, nm);
		} else {
			json_decref(ncalls);
			json_decref(nm);
		}
	}
	json_decref(seen);
	return fixed;
}
