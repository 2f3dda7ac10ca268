/* toolstate.h - what an assistant turn with tool calls must carry into the next request.
 *
 * Providers need parts of their previous answer sent back when the conversation continues after
 * a tool call: Anthropic its thinking blocks (with signatures), Gemini the thought signature of
 * each function call, DeepSeek the reasoning_content of the turn. Clients receive them in
 * extension fields (provider.h) but many drop unknown fields. The router therefore keeps that
 * state per tool call id (store_reqlog.c) and puts it back into a request whose assistant messages lack
 * it. These functions are pure: state is a JSON object {tool_call_id: {"provider": name,
 * "thinking_blocks": [...], "reasoning_content": "...", "extra_content": {...}}}.
 */
#ifndef ROUTER_TOOLSTATE_H
#define ROUTER_TOOLSTATE_H

#include <jansson.h>

#include "config.h"

/* The state worth keeping from an assistant message of `prov`'s answer (a complete message, or
 * the one a stream assembled), or NULL when there is none. New reference. */
json_t *toolstate_from_message(const json_t *message, const struct provider_conf *prov);

/* Calls lookup(ud, tool_call_id) for every tool call of an assistant message in `body` that lacks
 * state `prov` needs; lookup returns a new reference to that call's state or NULL. Returns a new
 * copy of body with the state restored, or NULL when nothing was missing or found. */
json_t *toolstate_restore(const json_t *body, const struct provider_conf *prov,
			  json_t *(*lookup)(void *ud, const char *tool_call_id), void *ud);

#endif
