/* fuzz_anthropic_request.c - chatreq_parse, then provider_anthropic.build_request for the
 * Anthropic models of the shipped configuration, lenient and strict, streaming or not.
 *
 * Properties of a built request (provider-protocols.md 4.1-4.6 and the router's decisions): a
 * JSON object posted to <base_url>/v1/messages with x-api-key and anthropic-version, never an
 * Authorization header; only Anthropic top-level fields; the upstream model; an integer
 * max_tokens >= 1; "stream": true exactly for streams; system an array of non-empty text
 * blocks; messages alternate user/assistant (same-role turns merged), no empty text block,
 * tool_result blocks only in user turns and before any other block of that turn, tool_use and
 * thinking blocks only in assistant turns, tool_use input an object;
 * temperature within 0..1 and never together with top_p; with thinking enabled a budget of at
 * least 1024 below max_tokens, no temperature/top_p/top_k and no forced tool_choice;
 * metadata holds only user_id; tools have a name and an object input_schema. The dropped list
 * is a comma-separated set without empty names or duplicates (when the client's own field
 * names allow that), and empty in strict mode. A
 * refusal is a 400 with a valid envelope. The client body (borrowed) is never modified.
 */
#include <stdint.h>
#include <string.h>

#include "chatreq.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The Anthropic rows of the shipped configuration. */
static const char *const anth_models[] = { "claude-sonnet-4-5", "claude-opus-4-6",
					   "claude-haiku-4-5" };
#define N_ANTH (sizeof(anth_models) / sizeof(anth_models[0]))
static struct xlate_ctx anth_ctx[N_ANTH];

static void anth_contexts(void)
{
	for (size_t i = 0; i < N_ANTH; i++) {
		const char *up = NULL;
		const struct model_conf *m = config_find_model(fuzz_cfg, anth_models[i], &up);
		if (!m || fuzz_cfg->providers[m->provider].api != API_ANTHROPIC) {
			fprintf(stderr, "fuzz: %s is not an Anthropic model of the configuration\n",
				anth_models[i]);
			exit(2);
		}
		struct xlate_ctx *x = &anth_ctx[i];
		memset(x, 0, sizeof(*x));
		x->cfg = fuzz_cfg;
		x->prov = &fuzz_cfg->providers[m->provider];
		x->model = m;
		x->upstream_model = up;
		x->public_model = anth_models[i];
		x->id = "chatcmpl-fuzz0123456789";
		x->created = 1767225600;
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	fuzz_load_config(argv);
	anth_contexts();
	return 0;
}

static int is_one_of(const char *s, const char *const *set)
{
	for (size_t i = 0; s && set[i]; i++) {
		if (strcmp(s, set[i]) == 0)
			return 1;
	}
	return 0;
}

static void check_text_block(const json_t *b)
{
	const json_t *t = json_object_get(b, "text");
	FUZZ_ASSERT(json_is_string(t));
	FUZZ_ASSERT(json_string_length(t) > 0);
}

static void check_messages(const json_t *msgs)
{
	FUZZ_ASSERT(json_is_array(msgs));
	const char *prev = NULL;
	size_t i;
	const json_t *m;
	json_array_foreach(msgs, i, m)
	{
		FUZZ_ASSERT(json_is_object(m));
		const char *role = json_string_value(json_object_get(m, "role"));
		FUZZ_ASSERT(role && (strcmp(role, "user") == 0 || strcmp(role, "assistant") == 0));
		/* Consecutive same-role turns are merged (4.3 step 3). */
		FUZZ_ASSERT(!prev || strcmp(prev, role) != 0);
		prev = role;
		int user = strcmp(role, "user") == 0;
		const json_t *content = json_object_get(m, "content");
		if (json_is_string(content))
			continue;
		FUZZ_ASSERT(json_is_array(content));
		int other_seen = 0;      /* a block that is not tool_result (user turns) */
		size_t k;
		const json_t *b;
		json_array_foreach(content, k, b)
		{
			FUZZ_ASSERT(json_is_object(b));
			const char *type = json_string_value(json_object_get(b, "type"));
			FUZZ_ASSERT(type != NULL);
			if (strcmp(type, "text") == 0)
				check_text_block(b);
			if (strcmp(type, "tool_result") == 0) {
				FUZZ_ASSERT(user);
				FUZZ_ASSERT(!other_seen);
				FUZZ_ASSERT(json_is_string(json_object_get(b, "tool_use_id")));
			} else {
				other_seen = 1;
			}
			if (strcmp(type, "tool_use") == 0) {
				FUZZ_ASSERT(!user);
				FUZZ_ASSERT(json_is_string(json_object_get(b, "id")));
				FUZZ_ASSERT(json_is_string(json_object_get(b, "name")));
				FUZZ_ASSERT(json_is_object(json_object_get(b, "input")));
			}
			/* Thinking blocks go back in assistant turns only (4.3, 4.6). They are first in
			 * their own message, but two merged assistant messages may hold them further on,
			 * exactly as the API's own merge would. */
			if (strcmp(type, "thinking") == 0 || strcmp(type, "redacted_thinking") == 0)
				FUZZ_ASSERT(!user);
			if (strcmp(type, "image") == 0 || strcmp(type, "document") == 0)
				FUZZ_ASSERT(json_is_object(json_object_get(b, "source")));
		}
	}
}

static void check_request(const struct xlate_ctx *x, const struct upstream_req *req)
{
	static const char *const allowed[] = { "model",       "max_tokens",     "messages",
					       "system",      "temperature",    "top_p",
					       "top_k",       "stop_sequences", "stream",
					       "tools",       "tool_choice",    "thinking",
					       "metadata",    "output_config",  NULL };
	FUZZ_ASSERT(req->body != NULL);
	FUZZ_ASSERT(strlen(req->body) == req->body_len);
	json_error_t jerr;
	json_t *b = json_loadb(req->body, req->body_len, 0, &jerr);
	FUZZ_ASSERT(json_is_object(b));
	const char *key;
	json_t *v;
	json_object_foreach(b, key, v)
		FUZZ_ASSERT(is_one_of(key, allowed));
	FUZZ_ASSERT(strcmp(json_string_value(json_object_get(b, "model")), x->upstream_model) == 0);
	const json_t *mt = json_object_get(b, "max_tokens");
	FUZZ_ASSERT(json_is_integer(mt) && json_integer_value(mt) >= 1);
	FUZZ_ASSERT(x->stream ? json_is_true(json_object_get(b, "stream"))
			      : !json_is_true(json_object_get(b, "stream")));
	FUZZ_ASSERT(req->stream == x->stream);
	check_messages(json_object_get(b, "messages"));

	const json_t *sys = json_object_get(b, "system");
	if (sys) {
		FUZZ_ASSERT(json_is_array(sys));
		size_t i;
		json_t *blk;
		json_array_foreach(sys, i, blk)
		{
			FUZZ_ASSERT(strcmp(json_string_value(json_object_get(blk, "type")), "text") == 0);
			check_text_block(blk);
		}
	}
	const json_t *temp = json_object_get(b, "temperature");
	if (temp) {
		FUZZ_ASSERT(json_is_number(temp));
		FUZZ_ASSERT(json_number_value(temp) >= 0 && json_number_value(temp) <= 1);
		FUZZ_ASSERT(json_object_get(b, "top_p") == NULL);
	}
	const json_t *ss = json_object_get(b, "stop_sequences");
	if (ss)
		FUZZ_ASSERT(json_is_array(ss));
	const json_t *md = json_object_get(b, "metadata");
	if (md) {
		FUZZ_ASSERT(json_is_object(md));
		json_object_foreach((json_t *)md, key, v)
			FUZZ_ASSERT(strcmp(key, "user_id") == 0);
	}
	const json_t *tools = json_object_get(b, "tools");
	if (tools) {
		FUZZ_ASSERT(json_is_array(tools));
		size_t i;
		json_t *t;
		json_array_foreach(tools, i, t)
		{
			FUZZ_ASSERT(json_is_string(json_object_get(t, "name")));
			FUZZ_ASSERT(json_is_object(json_object_get(t, "input_schema")));
		}
	}
	const char *tc_type = json_string_value(json_object_get(json_object_get(b, "tool_choice"), "type"));
	if (json_object_get(b, "tool_choice")) {
		static const char *const types[] = { "auto", "any", "tool", "none", NULL };
		FUZZ_ASSERT(is_one_of(tc_type, types));
	}
	const json_t *th = json_object_get(b, "thinking");
	const char *th_type = json_string_value(json_object_get(th, "type"));
	if (th_type && strcmp(th_type, "enabled") == 0) {
		const json_t *bt = json_object_get(th, "budget_tokens");
		/* max_tokens MUST exceed the budget (4.2); a router-made budget is at least 1024. */
		if (json_is_integer(bt))
			FUZZ_ASSERT(json_integer_value(bt) < json_integer_value(mt));
		FUZZ_ASSERT(json_object_get(b, "temperature") == NULL);
		FUZZ_ASSERT(json_object_get(b, "top_p") == NULL);
		FUZZ_ASSERT(json_object_get(b, "top_k") == NULL);
		/* Thinking may not be enabled when tool_choice forces tool use (4.4). */
		FUZZ_ASSERT(!tc_type || strcmp(tc_type, "auto") == 0 || strcmp(tc_type, "none") == 0);
	}
	json_decref(b);

	char want[512];
	snprintf(want, sizeof(want), "%s/v1/messages", x->prov->base_url);
	FUZZ_ASSERT(req->url && strcmp(req->url, want) == 0);
	int key_hdr = 0, version = 0;
	for (size_t i = 0; i < req->n_headers; i++) {
		if (strcasecmp(req->headers[i], "x-api-key: " FUZZ_SECRET) == 0)
			key_hdr = 1;
		if (strcasecmp(req->headers[i], "anthropic-version: 2023-06-01") == 0)
			version = 1;
		FUZZ_ASSERT(strncasecmp(req->headers[i], "Authorization:", 14) != 0);
	}
	FUZZ_ASSERT(key_hdr && version);
}

/* Whether every top-level key of the client body can be named in a comma-separated list (an
 * unknown key is reported under its own name, so "a,b" or "" would make the list ambiguous;
 * such keys are the client's own doing). */
static int plain_keys(const json_t *body)
{
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)body, key, v)
	{
		if (!key[0] || strchr(key, ','))
			return 0;
	}
	return 1;
}

static void check_dropped(const struct buf *dropped)
{
	const char *s = buf_str(dropped);
	if (!*s)
		return;
	FUZZ_ASSERT(s[0] != ',' && s[strlen(s) - 1] != ',' && !strstr(s, ",,"));
	/* No name twice. */
	const char *p = s;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		const char *q = comma ? comma + 1 : p + len;
		while (*q) {
			const char *c2 = strchr(q, ',');
			size_t l2 = c2 ? (size_t)(c2 - q) : strlen(q);
			FUZZ_ASSERT(!(l2 == len && memcmp(p, q, len) == 0));
			q += l2 + (c2 ? 1 : 0);
		}
		p += len + (comma ? 1 : 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *body = NULL;
	struct chatreq cr;
	struct rerr err;
	rerr_clear(&err);
	if (chatreq_parse((const char *)data, size, &body, &cr, &err) < 0)
		return 0;
	json_t *before = json_deep_copy(body);
	for (int strict = 0; strict <= 1; strict++) {
		fuzz_cfg->strict_params = strict;
		for (size_t i = 0; i < N_ANTH; i++) {
			struct xlate_ctx x = anth_ctx[i];
			x.stream = cr.stream;
			x.include_usage = cr.include_usage;
			struct upstream_req req;
			memset(&req, 0, sizeof(req));
			struct buf dropped;
			buf_init(&dropped, 4096);
			rerr_clear(&err);
			int rc = provider_anthropic.build_request(&x, body, &req, &dropped, &err);
			if (rc == 0) {
				check_request(&x, &req);
				fuzz_check_output_bound(&provider_anthropic, &x, body, &req, "max_tokens");
				if (plain_keys(body))
					check_dropped(&dropped);
				if (strict)
					FUZZ_ASSERT(dropped.len == 0);
			} else {
				FUZZ_ASSERT(rc == -1);
				FUZZ_ASSERT(err.status == 400);
				fuzz_check_rerr(&err, 0);
			}
			upstream_req_free(&req);
			buf_free(&dropped);
		}
	}
	fuzz_cfg->strict_params = 0;
	/* The client body is borrowed: unchanged. */
	FUZZ_ASSERT(json_equal(before, body));
	json_decref(before);
	json_decref(body);
	return 0;
}
