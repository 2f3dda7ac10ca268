/* fuzz_config.c - config_load on the input written to a temporary file.
 *
 * Each input is loaded twice: with provider keys in the environment, and in demo mode
 * (LLM_ROUTER_DEMO_URL set, no keys), the two ways a provider row is resolved. Properties: a
 * failed load returns NULL with at least one error line, each "FILE...: reason" and ending in a
 * newline; a successful load reports nothing and yields a usable struct (lookups work on it).
 * Inputs with an @include directive are skipped: the file is the operator's, and an include of a
 * device such as /dev/zero would only stall the fuzzer inside libconfig.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[PATH_MAX];
static char file[PATH_MAX + 32];

static void remove_dir(void)
{
	unlink(file);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/fuzz-config.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(2);
	}
	snprintf(file, sizeof(file), "%s/fuzz.conf", dir);
	/* Relative storage paths resolve against this directory, never the repository. */
	setenv("LLM_ROUTER_HOME", dir, 1);
	atexit(remove_dir);
	return 0;
}

static void load_once(void)
{
	struct buf errors;
	buf_init(&errors, 1 << 20);
	struct config *cfg = config_load(file, &errors);
	if (cfg) {
		FUZZ_ASSERT(errors.len == 0);
		FUZZ_ASSERT(cfg->n_providers > 0 && cfg->n_models > 0);
		FUZZ_ASSERT(cfg->n_tiers == 0 || cfg->default_tier < cfg->n_tiers);
		for (size_t i = 0; i < cfg->n_models; i++) {
			const struct model_conf *m = &cfg->models[i];
			FUZZ_ASSERT(m->provider >= 0 && (size_t)m->provider < cfg->n_providers);
			for (size_t k = 0; k < m->n_fallback; k++)
				FUZZ_ASSERT(m->fallback[k] < cfg->n_models && m->fallback[k] != i);
			FUZZ_ASSERT(config_find_model(cfg, m->id, NULL) != NULL || m->prefix);
		}
		for (size_t i = 0; i < cfg->n_providers; i++) {
			const struct provider_conf *p = &cfg->providers[i];
			FUZZ_ASSERT(p->base_url != NULL);
			FUZZ_ASSERT(p->available || p->unavailable_reason);
		}
		for (size_t i = 0; i < cfg->n_tiers; i++) {
			const struct tier_conf *t = &cfg->tiers[i];
			for (size_t k = 0; k < t->n_models; k++)
				FUZZ_ASSERT(t->models[k] < cfg->n_models);
			for (size_t k = 0; k < t->n_downgrades; k++)
				FUZZ_ASSERT(t->downgrades[k].from < cfg->n_models &&
					    t->downgrades[k].to < cfg->n_models);
		}
		(void)config_tier_for_agent(cfg, "agent");
		config_free(cfg);
	} else {
		FUZZ_ASSERT(errors.len > 0);
		FUZZ_ASSERT(errors.p[errors.len - 1] == '\n');
		const char *nl = strchr(errors.p, '\n');
		const char *sep = strstr(errors.p, ": ");
		FUZZ_ASSERT(sep != NULL && sep < nl && sep > errors.p);
	}
	buf_free(&errors);
}

/* Whether the input holds an include directive (any case). */
static int has_include(const uint8_t *data, size_t size)
{
	static const char word[] = "include";
	for (size_t i = 0; i + sizeof(word) - 1 <= size; i++) {
		size_t k;
		for (k = 0; k < sizeof(word) - 1; k++) {
			uint8_t c = data[i + k];
			if (c >= 'A' && c <= 'Z')
				c = (uint8_t)(c + 32);
			if (c != (uint8_t)word[k])
				break;
		}
		if (k == sizeof(word) - 1)
			return 1;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (has_include(data, size))
		return 0;
	FILE *f = fopen(file, "wb");
	if (!f)
		abort();
	if (size && fwrite(data, 1, size, f) != size)
		abort();
	fclose(f);

	fuzz_set_provider_keys();
	load_once();

	static const char *const keys[] = { "OPENAI_API_KEY",   "ANTHROPIC_API_KEY",  "GEMINI_API_KEY",
					    "DEEPSEEK_API_KEY", "OPENROUTER_API_KEY", "GROQ_API_KEY" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		unsetenv(keys[i]);
	setenv("LLM_ROUTER_DEMO_URL", "http://127.0.0.1:4010", 1);
	load_once();
	unsetenv("LLM_ROUTER_DEMO_URL");
	return 0;
}
