/* fuzz_common.h - shared set-up of the libFuzzer targets: the shipped configuration, translation
 * contexts over it, a tiny deterministic PRNG for input-derived splits, and property checks.
 *
 * The configuration is loaded once (LLVMFuzzerInitialize) with a fake key for every provider so
 * that each provider row is usable, and freed at exit so LeakSanitizer sees a clean process. The
 * contexts cover the OpenAI-compatible rows that behave differently: OpenAI (plain and a
 * reasoning model), DeepSeek (developer -> system, reasoning_content kept on tool turns),
 * OpenRouter (pass-through id, reasoning field, extra header) and Groq (name stripped, unsupported
 * parameters, n limited to 1).
 */
#ifndef ROUTER_FUZZ_COMMON_H
#define ROUTER_FUZZ_COMMON_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "errors.h"
#include "providers/provider.h"

#define FUZZ_SECRET "sk-fuzz-SECRET-0123456789abcdef"

/* Not every target uses every helper. */
#define FUZZ_MAYBE_UNUSED __attribute__((unused))

/* Stops the process so that libFuzzer records the input as a crash. */
#define FUZZ_ASSERT(c)                                                                         \
	do {                                                                                   \
		if (!(c)) {                                                                    \
			fprintf(stderr, "fuzz property failed: %s (%s:%d)\n", #c, __FILE__,      \
				__LINE__);                                                     \
			abort();                                                               \
		}                                                                              \
	} while (0)

FUZZ_MAYBE_UNUSED static struct config *fuzz_cfg;

FUZZ_MAYBE_UNUSED static void fuzz_free_config(void)
{
	config_free(fuzz_cfg);
	fuzz_cfg = NULL;
}

/* conf/llm-router.conf: $FUZZ_CONFIG, else from the current directory, else next to the build
 * directory holding the binary. */
FUZZ_MAYBE_UNUSED static char *fuzz_config_path(const char *argv0)
{
	const char *env = getenv("FUZZ_CONFIG");
	if (env && env[0])
		return strdup(env);
	if (access("conf/llm-router.conf", R_OK) == 0)
		return strdup("conf/llm-router.conf");
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0 && argv0) {
		snprintf(exe, sizeof(exe), "%s", argv0);
		n = (ssize_t)strlen(exe);
	}
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			char cand[PATH_MAX + 32];
			snprintf(cand, sizeof(cand), "%s/../conf/llm-router.conf", exe);
			if (access(cand, R_OK) == 0)
				return strdup(cand);
		}
	}
	return strdup("conf/llm-router.conf");
}

FUZZ_MAYBE_UNUSED static void fuzz_set_provider_keys(void)
{
	static const char *const keys[] = { "OPENAI_API_KEY",   "ANTHROPIC_API_KEY",  "GEMINI_API_KEY",
					    "DEEPSEEK_API_KEY", "OPENROUTER_API_KEY", "GROQ_API_KEY" };
	static const char *const urls[] = { "OPENAI_BASE_URL",   "ANTHROPIC_BASE_URL",  "GEMINI_BASE_URL",
					    "DEEPSEEK_BASE_URL", "OPENROUTER_BASE_URL", "GROQ_BASE_URL" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		setenv(keys[i], FUZZ_SECRET, 1);
		unsetenv(urls[i]);
	}
	unsetenv("LLM_ROUTER_DEMO_URL");
}

FUZZ_MAYBE_UNUSED static void fuzz_load_config(char ***argv)
{
	fuzz_set_provider_keys();
	char *path = fuzz_config_path(argv && *argv ? (*argv)[0] : NULL);
	struct buf errors;
	buf_init(&errors, 1 << 20);
	fuzz_cfg = config_load(path, &errors);
	if (!fuzz_cfg) {
		fprintf(stderr, "fuzz: cannot load %s:\n%s", path, buf_str(&errors));
		exit(2);
	}
	buf_free(&errors);
	free(path);
	atexit(fuzz_free_config);
}

FUZZ_MAYBE_UNUSED static int fuzz_provider(const char *name)
{
	for (size_t i = 0; i < fuzz_cfg->n_providers; i++) {
		if (strcmp(fuzz_cfg->providers[i].name, name) == 0)
			return (int)i;
	}
	fprintf(stderr, "fuzz: provider %s is not configured\n", name);
	exit(2);
}

enum { FUZZ_CTX_OPENAI, FUZZ_CTX_REASONING, FUZZ_CTX_DEEPSEEK, FUZZ_CTX_OPENROUTER, FUZZ_CTX_GROQ,
       FUZZ_N_CTX };

FUZZ_MAYBE_UNUSED static struct xlate_ctx fuzz_ctx[FUZZ_N_CTX];

/* Builds the contexts; provider rows come from the shipped configuration. */
FUZZ_MAYBE_UNUSED static void fuzz_build_contexts(void)
{
	static const struct {
		const char *public_model;   /* as a client names it */
		const char *provider;       /* NULL = the model's own provider */
		const char *upstream;       /* NULL = the model's upstream id */
	} rows[FUZZ_N_CTX] = {
		[FUZZ_CTX_OPENAI] = { "gpt-4o-mini", NULL, NULL },
		[FUZZ_CTX_REASONING] = { "o3-mini", NULL, NULL },
		[FUZZ_CTX_DEEPSEEK] = { "deepseek-reasoner", NULL, NULL },
		[FUZZ_CTX_OPENROUTER] = { "openrouter/anthropic/claude-sonnet-4.5", NULL, NULL },
		/* No Groq model is configured: the Groq row over an ordinary model. */
		[FUZZ_CTX_GROQ] = { "gpt-4o-mini", "groq", "llama-3.3-70b-versatile" },
	};
	for (int i = 0; i < FUZZ_N_CTX; i++) {
		const char *up = NULL;
		const struct model_conf *m = config_find_model(fuzz_cfg, rows[i].public_model, &up);
		if (!m) {
			fprintf(stderr, "fuzz: model %s is not configured\n", rows[i].public_model);
			exit(2);
		}
		int pi = rows[i].provider ? fuzz_provider(rows[i].provider) : m->provider;
		struct xlate_ctx *x = &fuzz_ctx[i];
		memset(x, 0, sizeof(*x));
		x->cfg = fuzz_cfg;
		x->prov = &fuzz_cfg->providers[pi];
		x->model = m;
		x->upstream_model = rows[i].upstream ? rows[i].upstream : up;
		x->public_model = rows[i].public_model;
		x->id = "chatcmpl-fuzz0123456789";
		x->created = 1767225600;
	}
}

/* FNV-1a of the input: the seed of the split and option choices. */
FUZZ_MAYBE_UNUSED static uint64_t fuzz_hash(const uint8_t *data, size_t size)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < size; i++) {
		h ^= data[i];
		h *= 1099511628211ULL;
	}
	return h;
}

FUZZ_MAYBE_UNUSED static uint64_t fuzz_next(uint64_t *s)
{
	/* xorshift64* */
	uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ULL;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 2685821657736338717ULL;
}

/* An error value must have a status and serialise into a valid envelope (message present, so
 * the text was valid UTF-8 after sanitising). With upstream_text set (the error was built from
 * an upstream reply) its message must not hold the provider key either; client-made errors may
 * quote whatever the client sent. */
FUZZ_MAYBE_UNUSED static void fuzz_check_rerr(const struct rerr *err, int upstream_text)
{
	FUZZ_ASSERT(err->status >= 400 && err->status <= 599);
	FUZZ_ASSERT(memchr(err->message, '\0', sizeof(err->message)) != NULL);
	FUZZ_ASSERT(memchr(err->param, '\0', sizeof(err->param)) != NULL);
	json_t *env = rerr_envelope(err);
	json_t *e = json_object_get(env, "error");
	FUZZ_ASSERT(json_is_string(json_object_get(e, "message")));
	FUZZ_ASSERT(json_is_string(json_object_get(e, "type")));
	FUZZ_ASSERT(err->param[0] == '\0' || json_is_string(json_object_get(e, "param")));
	char *s = json_dumps(env, JSON_COMPACT);
	FUZZ_ASSERT(s != NULL);
	free(s);
	if (upstream_text)
		FUZZ_ASSERT(strstr(err->message, FUZZ_SECRET) == NULL);
	json_decref(env);
}


/* The output bound the budget reserves for (provider_output_bound) covers what was sent: the
 * upstream's output limit field, at `path` in the built body (a "/"-separated member path, or
 * alternatives "a|b"), is
 * never above it; without such a field the translator reports no bound. */
FUZZ_MAYBE_UNUSED static void fuzz_check_output_bound(const struct provider_ops *ops,
						       const struct xlate_ctx *x, const json_t *client,
						       const struct upstream_req *req, const char *path)
{
	json_error_t jerr;
	json_t *b = json_loadb(req->body, req->body_len, 0, &jerr);
	FUZZ_ASSERT(json_is_object(b));
	/* `path` may name alternatives: "a|b" (the first present wins). */
	const json_t *v = NULL;
	char part[64];
	for (const char *alt = path; !v && *alt;) {
		size_t an = strcspn(alt, "|");
		v = b;
		for (const char *p = alt; v && p < alt + an;) {
			size_t n = strcspn(p, "/|");
			FUZZ_ASSERT(n < sizeof(part));
			memcpy(part, p, n);
			part[n] = '\0';
			v = json_object_get(v, part);
			p += n + (p[n] == '/');
		}
		alt += an + (alt[an] == '|');
	}
	int64_t bound = ops->max_output_tokens(x->model, client);
	FUZZ_ASSERT(bound >= 0);
	if (json_is_integer(v))
		FUZZ_ASSERT(json_integer_value(v) <= bound);
	else
		FUZZ_ASSERT(bound == 0);
	int sent;
	int64_t total = provider_output_bound(x->cfg, x->model, client, &sent);
	FUZZ_ASSERT(total >= 1 && sent == (bound > 0));
	json_decref(b);
}

#endif
