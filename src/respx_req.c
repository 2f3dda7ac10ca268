/* respx_req.c - the request side of POST /v1/responses: validation, the chat request, the stored
 * input items (see respx.h).
 *
 * One builder (build_chat) turns a Responses request into the router's Chat Completions request
 * and checks every field it maps as it goes, naming the parameter by its path
 * ("input[2].content[0].text"); respx_validate runs the same builder and throws the result away,
 * so whatever validates also maps. The builder has two modes: validation accepts item_reference
 * items (the caller resolves them from the store) and does not pair function_call_output items
 * with their calls (the calls may be in the inherited context); the final build refuses both.
 * Fields that are not forwarded (store, metadata, include, truncation, background, ...) are
 * checked by respx_validate alone. A field set to null counts as absent. Unknown fields are left
 * alone. Pure: no I/O.
 *
 * Items become chat messages in order. An assistant message, and every function_call after it
 * with nothing but reasoning in between, make one assistant turn (text as content, the calls as
 * tool_calls); the summary text of reasoning items waits for the next assistant turn and becomes
 * its reasoning_content, and is dropped when another role speaks first.
 */
#include "respx.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "chatreq.h"
#include "jsonx.h"
#include "util.h"

/* The largest max_output_tokens: chat's max_completion_tokens takes no more (chatreq.c). */
#define RESPX_MAX_OUTPUT_TOKENS 100000000
#define PATH_LEN 128

/* "base.key", or "key" when base is empty. */
static const char *join_path(char p[PATH_LEN], const char *base, const char *key)
{
	if (base && base[0])
		snprintf(p, PATH_LEN, "%.80s.%.40s", base, key);
	else
		snprintf(p, PATH_LEN, "%.80s", key);
	return p;
}

static int bad_type(struct rerr *err, const char *base, const char *key, const char *want,
		    const json_t *v)
{
	char p[PATH_LEN];
	join_path(p, base, key);
	return rerr_invalid(err, p, "Invalid type for '%s': expected %s, but got %s instead.", p, want,
			    jsonx_type_name(v));
}

static int missing(struct rerr *err, const char *base, const char *key)
{
	char p[PATH_LEN];
	join_path(p, base, key);
	return rerr_invalid(err, p, "Missing required parameter: '%s'.", p);
}

/* A required non-empty string member; *out borrows it. */
static int need_string(const json_t *obj, const char *base, const char *key, const char **out,
		       struct rerr *err)
{
	const json_t *v = jsonx_opt(obj, key);
	if (!v)
		return missing(err, base, key);
	if (!json_is_string(v))
		return bad_type(err, base, key, "a string", v);
	if (json_string_length(v) == 0) {
		char p[PATH_LEN];
		join_path(p, base, key);
		return rerr_invalid(err, p, "Invalid '%s': empty string.", p);
	}
	*out = json_string_value(v);
	return 0;
}

/* An optional member of JSON type t (JSON_TRUE: a boolean). */
static int check_kind(const json_t *obj, const char *base, const char *key, json_type t,
		      const char *want, struct rerr *err)
{
	const json_t *v = jsonx_opt(obj, key);
	if (v && (t == JSON_TRUE ? !json_is_boolean(v) : json_typeof(v) != t))
		return bad_type(err, base, key, want, v);
	return 0;
}

/* An optional string member that must be one of vals (NULL-terminated). */
static int check_enum(const json_t *obj, const char *base, const char *key,
		      const char *const *vals, struct rerr *err)
{
	const json_t *v = jsonx_opt(obj, key);
	if (!v)
		return 0;
	if (!json_is_string(v))
		return bad_type(err, base, key, "a string", v);
	for (size_t i = 0; vals[i]; i++) {
		if (strcmp(json_string_value(v), vals[i]) == 0)
			return 0;
	}
	char p[PATH_LEN], list[256] = "";
	size_t n = 0;
	for (size_t i = 0; vals[i]; i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s'%s'", i ? ", " : "", vals[i]);
	join_path(p, base, key);
	return rerr_invalid(err, p, "Invalid value for '%s': '%.100s'. Supported values are: %s.", p,
			    json_string_value(v), list);
}

/* A required name matching ^[a-zA-Z0-9_-]{1,64}$. */
static int need_name(const json_t *obj, const char *base, const char **out, struct rerr *err)
{
	const json_t *v = jsonx_opt(obj, "name");
	if (!v)
		return missing(err, base, "name");
	if (!json_is_string(v))
		return bad_type(err, base, "name", "a string", v);
	if (!chatreq_valid_name(json_string_value(v))) {
		char p[PATH_LEN];
		join_path(p, base, "name");
		return rerr_invalid(err, p, "Invalid '%s': must match ^[a-zA-Z0-9_-]{1,64}$.", p);
	}
	*out = json_string_value(v);
	return 0;
}

static int unsupported(struct rerr *err, const char *param, const char *what)
{
	return rerr_set(err, 400, "invalid_request_error", "unsupported_value", param,
			"%s is not supported by this router.", what);
}

/* The strings of arr joined by sep: a new string. */
static json_t *join_strings(const json_t *arr, const char *sep)
{
	size_t total = 0, seplen = strlen(sep), i;
	const json_t *s;
	json_array_foreach(arr, i, s)
		total += json_string_length(s) + (i ? seplen : 0);
	char *p = xmalloc(total + 1);
	size_t n = 0;
	json_array_foreach(arr, i, s)
	{
		if (i) {
			memcpy(p + n, sep, seplen);
			n += seplen;
		}
		memcpy(p + n, json_string_value(s), json_string_length(s));
		n += json_string_length(s);
	}
	p[n] = '\0';
	json_t *out = json_stringn_nocheck(p, n);
	free(p);
	return out;
}

/* ---- input items -> chat messages ---- */

enum role { ROLE_USER, ROLE_SYSTEM, ROLE_DEVELOPER, ROLE_ASSISTANT, ROLE_TOOL };

static const char *const role_names[] = { "user", "system", "developer", "assistant", NULL };

struct walk {
	json_t *msgs;      /* the chat messages built so far */
	json_t *asst;      /* borrowed: the last message, while function calls may join it */
	json_t *thought;   /* reasoning texts waiting for the next assistant turn */
	json_t *calls;     /* call_id -> true for every function_call seen */
	int final;         /* pair outputs with calls, refuse item_reference */
};

/* A message of another role ends the assistant turn and drops its pending reasoning. */
static void push_other(struct walk *w, json_t *msg)
{
	json_array_append_new(w->msgs, msg);
	w->asst = NULL;
	json_array_clear(w->thought);
}

/* The pending reasoning becomes (or extends) msg's reasoning_content. */
static void attach_thought(struct walk *w, json_t *msg)
{
	if (json_array_size(w->thought) == 0)
		return;
	const json_t *had = json_object_get(msg, "reasoning_content");
	if (json_is_string(had))
		json_array_insert(w->thought, 0, (json_t *)had);
	json_object_set_new(msg, "reasoning_content", join_strings(w->thought, "\n\n"));
	json_array_clear(w->thought);
}

static int is_text_part(const char *type)
{
	return strcmp(type, "input_text") == 0 || strcmp(type, "output_text") == 0 ||
	       strcmp(type, "text") == 0;
}

static json_t *text_part(const char *text, size_t len)
{
	return json_pack("{s:s, s:s%}", "type", "text", "text", text, len);
}

static int map_image(const json_t *part, const char *p, json_t **out, struct rerr *err)
{
	static const char *const details[] = { "low", "high", "auto", "original", NULL };
	if (check_enum(part, p, "detail", details, err) < 0)
		return -1;
	const json_t *url = jsonx_opt(part, "image_url");
	char q[PATH_LEN];
	if (url && !json_is_string(url))
		return bad_type(err, p, "image_url", "a string", url);
	if (!url && check_kind(part, p, "file_id", JSON_STRING, "a string", err) < 0)
		return -1;
	if (!url && jsonx_opt(part, "file_id"))
		return unsupported(err, join_path(q, p, "file_id"),
				   "An input_image given by file_id (send image_url)");
	if (!url)
		return missing(err, p, "image_url");
	json_t *iu = json_pack("{s:O}", "url", url);
	const char *detail = json_string_value(jsonx_opt(part, "detail"));
	if (detail)
		json_object_set_new(iu, "detail",
				    json_string(strcmp(detail, "original") == 0 ? "high" : detail));
	*out = json_pack("{s:s, s:o}", "type", "image_url", "image_url", iu);
	return 0;
}

static int map_file(const json_t *part, const char *p, json_t **out, struct rerr *err)
{
	static const char *const keys[] = { "file_data", "file_id", "file_url", "filename",
					    "file_name", NULL };
	for (size_t i = 0; keys[i]; i++) {
		if (check_kind(part, p, keys[i], JSON_STRING, "a string", err) < 0)
			return -1;
	}
	const json_t *data = jsonx_opt(part, "file_data"), *id = jsonx_opt(part, "file_id");
	const json_t *name = jsonx_opt(part, "filename");
	char q[PATH_LEN];
	if (!name)
		name = jsonx_opt(part, "file_name");   /* n8n's spelling */
	if (!data && !id && jsonx_opt(part, "file_url"))
		return unsupported(err, join_path(q, p, "file_url"),
				   "An input_file given by file_url (send file_data or file_id)");
	if (!data && !id)
		return rerr_invalid(err, p, "Invalid '%s': an input_file needs 'file_data' or 'file_id'.",
				    p);
	json_t *file = json_object();
	json_object_set(file, data ? "file_data" : "file_id", (json_t *)(data ? data : id));
	if (name)
		json_object_set(file, "filename", (json_t *)name);
	*out = json_pack("{s:s, s:o}", "type", "file", "file", file);
	return 0;
}

/* One content part of a message (role) or of a function_call_output (ROLE_TOOL) as a chat part;
 * p names it. */
static int map_part(const json_t *part, const char *p, enum role role, json_t **out,
		    struct rerr *err)
{
	if (!json_is_object(part))
		return bad_type(err, NULL, p, "an object", part);
	const char *type = NULL;
	if (need_string(part, p, "type", &type, err) < 0)
		return -1;
	const json_t *text;
	char q[PATH_LEN];
	if (is_text_part(type) || (role == ROLE_ASSISTANT && strcmp(type, "refusal") == 0)) {
		const char *key = type[0] == 'r' ? "refusal" : "text";
		text = jsonx_opt(part, key);
		if (!text)
			return missing(err, p, key);
		if (!json_is_string(text))
			return bad_type(err, p, key, "a string", text);
		*out = text_part(json_string_value(text), json_string_length(text));
		return 0;
	}
	if (strcmp(type, "input_image") != 0 && strcmp(type, "input_file") != 0)
		return rerr_invalid(err, join_path(q, p, "type"),
				    "Invalid value for '%s': '%.100s' is not a content part type this "
				    "router knows.", q, type);
	if (role != ROLE_USER)
		return rerr_set(err, 400, "invalid_request_error", "unsupported_value", p,
				"An %s part is only supported in user messages here (the chat form has "
				"no place for it in %s content).", type,
				role == ROLE_TOOL ? "tool" : role_names[role]);
	if (strcmp(type, "input_image") == 0)
		return map_image(part, p, out, err);
	return map_file(part, p, out, err);
}

/* Message (or tool output) content as chat content: a string when it is all text (assistant
 * and tool content always are), else an array of parts. */
static int map_content(const json_t *content, const char *base, const char *key, enum role role,
		       json_t **out, struct rerr *err)
{
	char where[PATH_LEN], p[PATH_LEN];
	join_path(where, base, key);
	if (json_is_string(content)) {
		*out = json_deep_copy(content);
		return 0;
	}
	if (!json_is_array(content))
		return bad_type(err, NULL, where, "a string or an array of content parts", content);
	json_t *parts = json_array(), *texts = json_array();
	int all_text = 1;
	size_t i;
	const json_t *part;
	json_array_foreach(content, i, part)
	{
		json_t *c = NULL;
		snprintf(p, sizeof(p), "%.80s[%zu]", where, i);
		if (map_part(part, p, role, &c, err) < 0) {
			json_decref(parts);
			json_decref(texts);
			return -1;
		}
		if (strcmp(json_string_value(json_object_get(c, "type")), "text") == 0)
			json_array_append(texts, json_object_get(c, "text"));
		else
			all_text = 0;
		json_array_append_new(parts, c);
	}
	if (all_text && (role >= ROLE_ASSISTANT || json_array_size(parts) <= 1)) {
		*out = join_strings(texts, "");
		json_decref(parts);
	} else {
		*out = parts;
	}
	json_decref(texts);
	return 0;
}

static int map_message(struct walk *w, const json_t *item, const char *where, struct rerr *err)
{
	const char *role = NULL;
	if (need_string(item, where, "role", &role, err) < 0 ||
	    check_enum(item, where, "role", role_names, err) < 0)
		return -1;
	enum role r = ROLE_USER;
	while (strcmp(role_names[r], role) != 0)
		r++;
	const json_t *content = jsonx_opt(item, "content");
	if (!content)
		return missing(err, where, "content");
	json_t *c = NULL;
	if (map_content(content, where, "content", r, &c, err) < 0)
		return -1;
	json_t *msg = json_pack("{s:s, s:o}", "role", role, "content", c);
	if (r != ROLE_ASSISTANT) {
		push_other(w, msg);
		return 0;
	}
	attach_thought(w, msg);
	json_array_append_new(w->msgs, msg);
	w->asst = msg;
	return 0;
}

static int map_function_call(struct walk *w, const json_t *item, const char *where,
			     struct rerr *err)
{
	const char *call_id = NULL, *name = NULL;
	if (need_string(item, where, "call_id", &call_id, err) < 0 ||
	    need_string(item, where, "name", &name, err) < 0)
		return -1;
	const json_t *args = jsonx_opt(item, "arguments");
	if (!args)
		return missing(err, where, "arguments");
	if (!json_is_string(args))
		return bad_type(err, where, "arguments", "a string (JSON text)", args);
	if (!w->asst) {
		w->asst = json_pack("{s:s, s:n}", "role", "assistant", "content");
		json_array_append_new(w->msgs, w->asst);
	}
	json_t *calls = json_object_get(w->asst, "tool_calls");
	if (!calls) {
		calls = json_array();
		json_object_set_new(w->asst, "tool_calls", calls);
	}
	json_array_append_new(calls, json_pack("{s:s, s:s, s:{s:s, s:O}}", "id", call_id, "type",
					       "function", "function", "name", name, "arguments",
					       args));
	attach_thought(w, w->asst);
	json_object_set_new(w->calls, call_id, json_true());
	return 0;
}

static int map_call_output(struct walk *w, const json_t *item, const char *where,
			   struct rerr *err)
{
	const char *call_id = NULL;
	if (need_string(item, where, "call_id", &call_id, err) < 0)
		return -1;
	const json_t *output = jsonx_opt(item, "output");
	if (!output)
		return missing(err, where, "output");
	json_t *c = NULL;
	if (map_content(output, where, "output", ROLE_TOOL, &c, err) < 0)
		return -1;
	if (w->final && !json_object_get(w->calls, call_id)) {
		json_decref(c);
		return rerr_invalid(err, "input",
				    "No tool call found for function call output with call_id %.200s.",
				    call_id);
	}
	push_other(w, json_pack("{s:s, s:s, s:o}", "role", "tool", "tool_call_id", call_id,
				"content", c));
	return 0;
}

/* The texts of arr's parts ({text}) appended to out; p names arr. */
static int part_texts(const json_t *arr, const char *base, const char *key, json_t *out,
		      struct rerr *err)
{
	if (!arr)
		return 0;
	char where[PATH_LEN], p[PATH_LEN];
	join_path(where, base, key);
	if (!json_is_array(arr))
		return bad_type(err, NULL, where, "an array", arr);
	size_t i;
	const json_t *part;
	json_array_foreach(arr, i, part)
	{
		snprintf(p, sizeof(p), "%.80s[%zu]", where, i);
		if (!json_is_object(part))
			return bad_type(err, NULL, p, "an object", part);
		const json_t *text = jsonx_opt(part, "text");
		if (!text)
			return missing(err, p, "text");
		if (!json_is_string(text))
			return bad_type(err, p, "text", "a string", text);
		if (json_string_length(text) > 0)
			json_array_append(out, (json_t *)text);
	}
	return 0;
}

/* Its summary texts (else its reasoning_text content) wait for the next assistant turn;
 * encrypted_content is not read here. */
static int map_reasoning(struct walk *w, const json_t *item, const char *where, struct rerr *err)
{
	json_t *texts = json_array();
	int rc = part_texts(jsonx_opt(item, "summary"), where, "summary", texts, err);
	if (rc == 0 && json_array_size(texts) == 0)
		rc = part_texts(jsonx_opt(item, "content"), where, "content", texts, err);
	if (rc == 0)
		rc = check_kind(item, where, "encrypted_content", JSON_STRING, "a string", err);
	if (rc == 0)
		json_array_extend(w->thought, texts);
	json_decref(texts);
	return rc;
}

static int map_item(struct walk *w, const json_t *item, const char *where, struct rerr *err)
{
	if (!json_is_object(item))
		return bad_type(err, NULL, where, "an object", item);
	const json_t *tv = jsonx_opt(item, "type");
	if (tv && !json_is_string(tv))
		return bad_type(err, where, "type", "a string", tv);
	if (!tv && !jsonx_opt(item, "role"))
		return missing(err, where, "type");
	const char *type = tv ? json_string_value(tv) : "message";
	if (strcmp(type, "message") == 0)
		return map_message(w, item, where, err);
	if (strcmp(type, "function_call") == 0)
		return map_function_call(w, item, where, err);
	if (strcmp(type, "function_call_output") == 0)
		return map_call_output(w, item, where, err);
	if (strcmp(type, "reasoning") == 0)
		return map_reasoning(w, item, where, err);
	if (strcmp(type, "item_reference") == 0) {
		const char *id = NULL;
		if (need_string(item, where, "id", &id, err) < 0)
			return -1;
		if (w->final)
			return rerr_invalid(err, where, "Item with id '%.100s' was not resolved: an "
					    "item_reference cannot be sent upstream.", id);
		return 0;
	}
	return rerr_set(err, 400, "invalid_request_error", "unsupported_value", where,
			"Item type '%.100s' is not supported by this router (%s): it takes message, "
			"function_call, function_call_output, reasoning and item_reference items.",
			type, where);
}

/* items: a string (one user message) or an array of items, named name in errors. */
static int walk_items(struct walk *w, const json_t *items, const char *name, struct rerr *err)
{
	if (json_is_string(items)) {
		push_other(w, json_pack("{s:s, s:O}", "role", "user", "content", items));
		return 0;
	}
	if (!json_is_array(items))
		return bad_type(err, NULL, name, "a string or an array of items", items);
	size_t i;
	const json_t *item;
	char where[PATH_LEN];
	json_array_foreach(items, i, item)
	{
		snprintf(where, sizeof(where), "%.40s[%zu]", name, i);
		if (map_item(w, item, where, err) < 0)
			return -1;
	}
	return 0;
}

/* ---- tools, tool_choice, text, reasoning ---- */

static int map_tools(const json_t *body, json_t *chat, struct rerr *err)
{
	const json_t *tools = jsonx_opt(body, "tools");
	if (!tools)
		return 0;
	if (!json_is_array(tools))
		return bad_type(err, NULL, "tools", "an array", tools);
	json_t *out = json_array();
	json_object_set_new(chat, "tools", out);
	size_t i;
	const json_t *t;
	char p[PATH_LEN], q[PATH_LEN];
	json_array_foreach(tools, i, t)
	{
		snprintf(p, sizeof(p), "tools[%zu]", i);
		const char *type = NULL, *name = NULL;
		if (!json_is_object(t))
			return bad_type(err, NULL, p, "an object", t);
		if (need_string(t, p, "type", &type, err) < 0)
			return -1;
		if (strcmp(type, "function") != 0)
			return rerr_set(err, 400, "invalid_request_error", "unsupported_value",
					join_path(q, p, "type"),
					"Tool type '%.100s' is not supported by this router: only "
					"'function' tools are.", type);
		if (need_name(t, p, &name, err) < 0 ||
		    check_kind(t, p, "description", JSON_STRING, "a string", err) < 0 ||
		    check_kind(t, p, "parameters", JSON_OBJECT, "an object", err) < 0 ||
		    check_kind(t, p, "strict", JSON_TRUE, "a boolean", err) < 0)
			return -1;
		json_t *fn = json_pack("{s:s}", "name", name);
		static const char *const keys[] = { "description", "parameters", "strict", NULL };
		for (size_t k = 0; keys[k]; k++) {
			const json_t *v = jsonx_opt(t, keys[k]);
			if (v)
				json_object_set_new(fn, keys[k], json_deep_copy(v));
		}
		json_array_append_new(out, json_pack("{s:s, s:o}", "type", "function", "function", fn));
	}
	return 0;
}

/* {"type":"allowed_tools","mode","tools":[{"type":"function","name"}]} in chat's nested form. */
static int map_allowed_tools(const json_t *tc, json_t **out, struct rerr *err)
{
	static const char *const modes[] = { "auto", "required", NULL };
	const char *mode = NULL;
	if (need_string(tc, "tool_choice", "mode", &mode, err) < 0 ||
	    check_enum(tc, "tool_choice", "mode", modes, err) < 0)
		return -1;
	const json_t *tools = jsonx_opt(tc, "tools");
	if (!tools)
		return missing(err, "tool_choice", "tools");
	if (!json_is_array(tools))
		return bad_type(err, "tool_choice", "tools", "an array", tools);
	json_t *list = json_array();
	size_t i;
	const json_t *t;
	char p[PATH_LEN], q[PATH_LEN];
	json_array_foreach(tools, i, t)
	{
		const char *type = NULL, *name = NULL;
		snprintf(p, sizeof(p), "tool_choice.tools[%zu]", i);
		int rc = json_is_object(t) ? need_string(t, p, "type", &type, err)
					   : bad_type(err, NULL, p, "an object", t);
		if (rc == 0 && strcmp(type, "function") != 0)
			rc = unsupported(err, join_path(q, p, "type"), "An allowed tool not of type 'function'");
		if (rc == 0)
			rc = need_name(t, p, &name, err);
		if (rc < 0) {
			json_decref(list);
			return -1;
		}
		json_array_append_new(list, json_pack("{s:s, s:{s:s}}", "type", "function", "function",
						      "name", name));
	}
	*out = json_pack("{s:s, s:{s:s, s:o}}", "type", "allowed_tools", "allowed_tools", "mode", mode,
			 "tools", list);
	return 0;
}

static int map_tool_choice(const json_t *body, json_t *chat, struct rerr *err)
{
	static const char *const modes[] = { "none", "auto", "required", NULL };
	const json_t *tc = jsonx_opt(body, "tool_choice");
	if (!tc)
		return 0;
	if (json_is_string(tc)) {
		if (check_enum(body, NULL, "tool_choice", modes, err) < 0)
			return -1;
		json_object_set_new(chat, "tool_choice", json_deep_copy(tc));
		return 0;
	}
	if (!json_is_object(tc))
		return bad_type(err, NULL, "tool_choice", "a string or an object", tc);
	const char *type = NULL, *name = NULL;
	if (need_string(tc, "tool_choice", "type", &type, err) < 0)
		return -1;
	json_t *out = NULL;
	if (strcmp(type, "function") == 0) {
		if (need_name(tc, "tool_choice", &name, err) < 0)
			return -1;
		out = json_pack("{s:s, s:{s:s}}", "type", "function", "function", "name", name);
	} else if (strcmp(type, "allowed_tools") == 0) {
		if (map_allowed_tools(tc, &out, err) < 0)
			return -1;
	} else if (check_enum(tc, "tool_choice", "type", modes, err) == 0) {
		out = json_string(type);   /* {"type":"auto"} as Cursor sends it */
	} else {
		return rerr_set(err, 400, "invalid_request_error", "unsupported_value", "tool_choice",
				"tool_choice of type '%.100s' is not supported by this router: use "
				"'none', 'auto', 'required', a function or allowed_tools.", type);
	}
	json_object_set_new(chat, "tool_choice", out);
	return 0;
}

/* text.format -> response_format, text.verbosity -> verbosity. */
static int map_text(const json_t *body, json_t *chat, struct rerr *err)
{
	static const char *const types[] = { "text", "json_object", "json_schema", NULL };
	static const char *const verbosities[] = { "low", "medium", "high", NULL };
	const json_t *text = jsonx_opt(body, "text");
	if (!text)
		return 0;
	if (!json_is_object(text))
		return bad_type(err, NULL, "text", "an object", text);
	if (check_enum(text, "text", "verbosity", verbosities, err) < 0)
		return -1;
	const json_t *verbosity = jsonx_opt(text, "verbosity");
	if (verbosity)
		json_object_set_new(chat, "verbosity", json_deep_copy(verbosity));
	const json_t *f = jsonx_opt(text, "format");
	if (!f)
		return 0;
	if (!json_is_object(f))
		return bad_type(err, "text", "format", "an object", f);
	const char *type = NULL, *name = NULL;
	if (need_string(f, "text.format", "type", &type, err) < 0 ||
	    check_enum(f, "text.format", "type", types, err) < 0)
		return -1;
	if (strcmp(type, "json_object") == 0)
		json_object_set_new(chat, "response_format", json_pack("{s:s}", "type", "json_object"));
	if (strcmp(type, "json_schema") != 0)
		return 0;
	if (need_name(f, "text.format", &name, err) < 0)
		return -1;
	if (!jsonx_opt(f, "schema"))
		return missing(err, "text.format", "schema");
	if (check_kind(f, "text.format", "schema", JSON_OBJECT, "an object", err) < 0 ||
	    check_kind(f, "text.format", "strict", JSON_TRUE, "a boolean", err) < 0 ||
	    check_kind(f, "text.format", "description", JSON_STRING, "a string", err) < 0)
		return -1;
	json_t *js = json_pack("{s:s}", "name", name);
	static const char *const keys[] = { "schema", "strict", "description", NULL };
	for (size_t k = 0; keys[k]; k++) {
		const json_t *v = jsonx_opt(f, keys[k]);
		if (v)
			json_object_set_new(js, keys[k], json_deep_copy(v));
	}
	json_object_set_new(chat, "response_format",
			    json_pack("{s:s, s:o}", "type", "json_schema", "json_schema", js));
	return 0;
}

/* reasoning.effort -> reasoning_effort; summary checked (the provider asks for visible
 * reasoning); mode, context and generate_summary ignored. */
static int map_reasoning_opts(const json_t *body, json_t *chat, struct rerr *err)
{
	static const char *const efforts[] = { "none", "minimal", "low", "medium", "high", "xhigh",
					       "max", NULL };
	static const char *const summaries[] = { "auto", "concise", "detailed", NULL };
	const json_t *r = jsonx_opt(body, "reasoning");
	if (!r)
		return 0;
	if (!json_is_object(r))
		return bad_type(err, NULL, "reasoning", "an object", r);
	if (check_enum(r, "reasoning", "effort", efforts, err) < 0 ||
	    check_enum(r, "reasoning", "summary", summaries, err) < 0)
		return -1;
	const json_t *effort = jsonx_opt(r, "effort");
	if (effort)
		json_object_set_new(chat, "reasoning_effort", json_deep_copy(effort));
	return 0;
}

/* ---- scalars ---- */

enum kind { K_BOOL, K_STRING, K_NUMBER, K_INT, K_OBJECT };

static const struct field {
	const char *key;
	const char *chat;     /* its name in the chat request; NULL: not forwarded (or specially) */
	enum kind kind;
	double lo, hi;
} fields[] = {
	{ "temperature", "temperature", K_NUMBER, 0, 2 },
	{ "top_p", "top_p", K_NUMBER, 0, 1 },
	{ "max_output_tokens", "max_completion_tokens", K_INT, 1, RESPX_MAX_OUTPUT_TOKENS },
	{ "top_logprobs", "top_logprobs", K_INT, 0, 20 },
	{ "parallel_tool_calls", "parallel_tool_calls", K_BOOL, 0, 0 },
	{ "user", "user", K_STRING, 0, 0 },
	{ "safety_identifier", "safety_identifier", K_STRING, 0, 0 },
	{ "prompt_cache_key", "prompt_cache_key", K_STRING, 0, 0 },
	{ "service_tier", "service_tier", K_STRING, 0, 0 },
	{ "instructions", NULL, K_STRING, 0, 0 },
	{ "stream", NULL, K_BOOL, 0, 0 },
	{ "stream_options", NULL, K_OBJECT, 0, 0 },
	{ "store", NULL, K_BOOL, 0, 0 },
	{ "background", NULL, K_BOOL, 0, 0 },
	{ "previous_response_id", NULL, K_STRING, 0, 0 },
};

static int check_field(const json_t *body, const struct field *f, struct rerr *err)
{
	static const char *const want[] = { "a boolean", "a string", "a number", "an integer",
					    "an object" };
	const json_t *v = jsonx_opt(body, f->key);
	if (!v)
		return 0;
	int ok = f->kind == K_BOOL ? json_is_boolean(v) : f->kind == K_STRING ? json_is_string(v)
		 : f->kind == K_NUMBER ? json_is_number(v) : f->kind == K_INT ? json_is_integer(v)
		 : json_is_object(v);
	if (!ok)
		return bad_type(err, NULL, f->key, want[f->kind], v);
	if (f->kind != K_NUMBER && f->kind != K_INT)
		return 0;
	double d = json_number_value(v);
	if (f->kind == K_INT && (json_integer_value(v) < (json_int_t)f->lo ||
				 json_integer_value(v) > (json_int_t)f->hi))
		return rerr_invalid(err, f->key, "Invalid value for '%s': %" JSON_INTEGER_FORMAT
				    " is outside %.0f..%.0f.", f->key, json_integer_value(v), f->lo, f->hi);
	if (!isfinite(d) || d < f->lo || d > f->hi)
		return rerr_invalid(err, f->key, "Invalid value for '%s': %g is outside %g..%g.", f->key,
				    d, f->lo, f->hi);
	return 0;
}

static void map_scalars(const json_t *body, json_t *chat)
{
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
		const json_t *v = jsonx_opt(body, fields[i].key);
		if (v && fields[i].chat)
			json_object_set_new(chat, fields[i].chat, json_deep_copy(v));
	}
	if (jsonx_opt(body, "top_logprobs"))
		json_object_set_new(chat, "logprobs", json_true());
	/* Clients send parallel_tool_calls without tools (n8n always does), which OpenAI refuses
	 * ("only allowed when 'tools' are specified"): without tools it means nothing. */
	if (json_array_size(jsonx_opt(body, "tools")) == 0)
		json_object_del(chat, "parallel_tool_calls");
	if (json_is_true(jsonx_opt(body, "stream"))) {
		json_object_set_new(chat, "stream", json_true());
		json_object_set_new(chat, "stream_options", json_pack("{s:b}", "include_usage", 1));
	}
}

/* ---- the chat request ---- */

/* instructions, then the context items, then the input, as chat messages into w. */
static int walk_all(struct walk *w, const json_t *body, const json_t *context, struct rerr *err)
{
	const json_t *instr = jsonx_opt(body, "instructions");
	if (json_string_length(instr) > 0)
		push_other(w, json_pack("{s:s, s:O}", "role", "system", "content", instr));
	if (context && walk_items(w, context, "context", err) < 0) {
		/* The inherited items are the store's, not the client's: name where they came from. */
		snprintf(err->param, sizeof(err->param), "previous_response_id");
		return -1;
	}
	const json_t *input = jsonx_opt(body, "input");
	if (input && walk_items(w, input, "input", err) < 0)
		return -1;
	if (w->final && json_array_size(w->msgs) == 0)
		return rerr_invalid(err, "input", "The request has no input: send 'input' (a string or "
				    "an array of items).");
	return 0;
}

/* The chat request; final as in struct walk. NULL with err set. */
static json_t *build_chat(const json_t *body, const json_t *context, int final,
			  struct rerr *err)
{
	struct walk w = { json_array(), NULL, json_array(), json_object(), final };
	json_t *chat = json_object();
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < ARRAY_SIZE(fields); i++)
		rc = check_field(body, &fields[i], err);
	if (rc == 0)
		rc = walk_all(&w, body, context, err);
	if (rc == 0) {
		json_object_set_new(chat, "model", json_deep_copy(json_object_get(body, "model")));
		json_object_set(chat, "messages", w.msgs);
		if (map_tools(body, chat, err) < 0 || map_tool_choice(body, chat, err) < 0 ||
		    map_text(body, chat, err) < 0 || map_reasoning_opts(body, chat, err) < 0)
			rc = -1;
	}
	if (rc == 0)
		map_scalars(body, chat);
	json_decref(w.msgs);
	json_decref(w.thought);
	json_decref(w.calls);
	if (rc < 0) {
		json_decref(chat);
		return NULL;
	}
	return chat;
}

json_t *respx_to_chat(const json_t *body, const json_t *context, struct rerr *err)
{
	if (!json_is_object(body)) {
		rerr_invalid(err, NULL, "The request body must be a JSON object.");
		return NULL;
	}
	return build_chat(body, context, 1, err);
}

/* ---- validation ---- */

/* The number of code points of valid UTF-8 text. */
static size_t utf8_chars(const char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		n += ((unsigned char)s[i] & 0xC0) != 0x80;
	return n;
}

static int check_metadata(const json_t *body, struct rerr *err)
{
	const json_t *md = jsonx_opt(body, "metadata");
	if (!md)
		return 0;
	if (!json_is_object(md))
		return bad_type(err, NULL, "metadata", "an object", md);
	if (json_object_size(md) > 16)
		return rerr_invalid(err, "metadata", "Invalid 'metadata': %zu pairs; at most 16.",
				    json_object_size(md));
	const char *key;
	const json_t *v;
	json_object_foreach((json_t *)md, key, v)
	{
		size_t klen = utf8_chars(key, strlen(key));
		if (klen > 64)
			return rerr_invalid(err, "metadata", "Invalid 'metadata': a key of %zu characters; "
					    "keys have at most 64.", klen);
		if (!json_is_string(v))
			return rerr_invalid(err, "metadata", "Invalid 'metadata.%.64s': expected a string, "
					    "but got %s instead.", key, jsonx_type_name(v));
		size_t vlen = utf8_chars(json_string_value(v), json_string_length(v));
		if (vlen > 512)
			return rerr_invalid(err, "metadata", "Invalid 'metadata.%.64s': %zu characters; "
					    "values have at most 512.", key, vlen);
	}
	return 0;
}

static int check_unmapped(const json_t *body, struct rerr *err)
{
	static const char *const truncations[] = { "auto", "disabled", NULL };
	if (check_metadata(body, err) < 0 || check_enum(body, NULL, "truncation", truncations, err) < 0)
		return -1;
	const json_t *inc = jsonx_opt(body, "include");
	if (inc && !json_is_array(inc))
		return bad_type(err, NULL, "include", "an array of strings", inc);
	size_t i;
	const json_t *v;
	char p[PATH_LEN];
	json_array_foreach(inc, i, v)
	{
		snprintf(p, sizeof(p), "include[%zu]", i);
		if (!json_is_string(v))
			return bad_type(err, NULL, p, "a string", v);
	}
	return 0;
}

int respx_validate(const json_t *body, struct resp_req *out, struct rerr *err)
{
	memset(out, 0, sizeof(*out));
	if (!json_is_object(body))
		return rerr_invalid(err, NULL, "The request body must be a JSON object.");
	static const char *const refused[] = { "conversation", "prompt" };
	for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
		if (jsonx_opt(body, refused[i]))
			return rerr_set(err, 400, "invalid_request_error", "unsupported_parameter",
					refused[i], "The '%s' parameter is not supported by this router.",
					refused[i]);
	}
	const json_t *model = jsonx_opt(body, "model");
	if (!model)
		return rerr_invalid(err, "model", "You must provide a model parameter.");
	if (!json_is_string(model))
		return bad_type(err, NULL, "model", "a string", model);
	if (json_string_length(model) == 0 || json_string_length(model) > CHATREQ_MAX_NAME_BYTES)
		return rerr_invalid(err, "model", "Invalid 'model': %zu bytes long; a model id has 1 to "
				    "%d bytes.", json_string_length(model), CHATREQ_MAX_NAME_BYTES);
	if (!jsonx_opt(body, "input") && !jsonx_opt(body, "previous_response_id"))
		return missing(err, NULL, "input");
	json_t *chat = build_chat(body, NULL, 0, err);
	if (!chat)
		return -1;
	json_decref(chat);
	if (check_unmapped(body, err) < 0)
		return -1;
	out->model = json_string_value(model);
	out->stream = json_is_true(jsonx_opt(body, "stream"));
	out->store = !json_is_false(jsonx_opt(body, "store"));
	out->background = json_is_true(jsonx_opt(body, "background"));
	out->previous_response_id = json_string_value(jsonx_opt(body, "previous_response_id"));
	if (out->background && out->stream)
		return rerr_set(err, 400, "invalid_request_error", "unsupported_value", "background",
				"'background' cannot be combined with 'stream' here: send one or the other.");
	if (out->background && !out->store)
		return rerr_set(err, 400, "invalid_request_error", "unsupported_value", "background",
				"'background' requires 'store' to be true.");
	return 0;
}

/* ---- stored input items ---- */

static const char *item_prefix(const char *type)
{
	if (strcmp(type, "message") == 0)
		return "msg_";
	if (strcmp(type, "function_call") == 0)
		return "fc_";
	if (strcmp(type, "function_call_output") == 0)
		return "fco_";
	if (strcmp(type, "reasoning") == 0)
		return "rs_";
	return "item_";
}

/* A message item as OpenAI lists it: content as parts, a status. */
static void normalise_message(json_t *item)
{
	const json_t *content = json_object_get(item, "content");
	if (json_is_string(content)) {
		int asst = strcmp(str_or_empty(json_string_value(json_object_get(item, "role"))),
				  "assistant") == 0;
		json_t *part = json_pack("{s:s, s:O}", "type", asst ? "output_text" : "input_text",
					 "text", content);
		json_object_set_new(item, "content", json_pack("[o]", part));
	}
	/* output_text parts as the API lists them: with annotations and logprobs. */
	size_t k;
	json_t *part;
	json_array_foreach(json_object_get(item, "content"), k, part)
	{
		const char *type = json_string_value(json_object_get(part, "type"));
		if (!type || strcmp(type, "output_text") != 0)
			continue;
		if (!json_is_array(json_object_get(part, "annotations")))
			json_object_set_new(part, "annotations", json_array());
		if (!json_is_array(json_object_get(part, "logprobs")))
			json_object_set_new(part, "logprobs", json_array());
	}
	if (!json_is_string(json_object_get(item, "status")))
		json_object_set_new(item, "status", json_string("completed"));
}

/* A copy of item i of the input as a stored item: a type, an id, messages normalised. */
static json_t *stored_item(const json_t *item, const char *hex, size_t i)
{
	json_t *copy = json_deep_copy(item);
	const char *type = json_string_value(json_object_get(copy, "type"));
	if (!type) {
		json_object_set_new(copy, "type", json_string("message"));
		type = "message";
	}
	if (strcmp(type, "message") == 0)
		normalise_message(copy);
	const json_t *id = json_object_get(copy, "id");
	if (!json_is_string(id) || json_string_length(id) == 0) {
		char *s = xasprintf("%s%s_in%zu", item_prefix(type), hex, i);
		json_object_set_new(copy, "id", json_string(s));
		free(s);
	}
	return copy;
}

json_t *respx_input_items(const json_t *body, const char *resp_id)
{
	const char *hex = resp_id ? resp_id : "";
	if (str_has_prefix(hex, "resp_"))
		hex += 5;
	json_t *items = json_array();
	const json_t *input = json_object_get(body, "input");
	if (json_is_string(input)) {
		json_t *msg = json_pack("{s:s, s:s, s:O}", "type", "message", "role", "user", "content",
					input);
		json_array_append_new(items, stored_item(msg, hex, 0));
		json_decref(msg);
		return items;
	}
	size_t i;
	const json_t *item;
	json_array_foreach(input, i, item)
	{
		if (json_is_object(item))
			json_array_append_new(items, stored_item(item, hex, i));
	}
	return items;
}

void respx_unused_fields(const json_t *body, struct buf *out)
{
	static const char *const known[] = {
		"model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text",
		"reasoning", "max_output_tokens", "temperature", "top_p", "top_logprobs", "user",
		"safety_identifier", "prompt_cache_key", "service_tier", "metadata", "store",
		"previous_response_id", "stream", "stream_options", "background", "include", "truncation",
		NULL
	};
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)body, key, v)
	{
		size_t i = 0;
		while (known[i] && strcmp(known[i], key) != 0)
			i++;
		int unused = !known[i] ||
			     (strcmp(key, "include") == 0 && json_array_size(v) > 0) ||
			     (strcmp(key, "truncation") == 0 &&
			      strcmp(str_or_empty(json_string_value(v)), "auto") == 0);
		if (unused && !json_is_null(v)) {
			if (out->len)
				buf_putc(out, ',');
			buf_printf(out, "%.63s", key);
		}
	}
}
