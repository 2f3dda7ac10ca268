/* cli.c - command-line entry points (see cli.h). Output goes to stdout, problems to stderr;
 * exit status 0 on success, 1 on failure, 2 on a usage error. Never prints a secret. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "util.h"
#include "version.h"

static void usage(FILE *f)
{
	fprintf(f,
		"LLM Router %s - one OpenAI-compatible endpoint in front of several LLM providers.\n"
		"\n"
		"Run by a web server, llm-router is a FastCGI responder (lighttpd mod_fastcgi,\n"
		"Apache mod_fcgid) or a plain CGI program; there is nothing to start by hand.\n"
		"\n"
		"Usage:\n"
		"  llm-router check-config [FILE]   validate a configuration file and summarise it\n"
		"  llm-router serve --listen ADDR   FastCGI responder on a socket (path or host:port)\n"
		"  llm-router --version             print the version\n"
		"  llm-router --help                this text\n"
		"\n"
		"Configuration: $LLM_ROUTER_CONFIG, else conf/llm-router.conf beside or above the binary.\n"
		"Provider keys come from the environment variables the configuration names\n"
		"(OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, DEEPSEEK_API_KEY,\n"
		"OPENROUTER_API_KEY, GROQ_API_KEY by default).\n",
		ROUTER_VERSION);
}

static int check_config(const char *path)
{
	char *def = NULL;
	if (!path)
		path = def = config_default_path();
	struct buf errors;
	buf_init(&errors, 1 << 20);
	struct config *cfg = config_load(path, &errors);
	if (!cfg) {
		fputs(buf_str(&errors), stderr);
		fprintf(stderr, "%s: configuration is invalid\n", path);
		buf_free(&errors);
		free(def);
		return 1;
	}
	printf("%s: OK\n", cfg->path);
	printf("home: %s\ndatabase: %s\nfallback log: %s\n", cfg->home, cfg->db_path,
	       cfg->fallback_jsonl);
	printf("providers:\n");
	for (size_t i = 0; i < cfg->n_providers; i++) {
		const struct provider_conf *p = &cfg->providers[i];
		printf("  %-11s %-9s %-11s %s\n", p->name, provider_api_name(p->api),
		       p->demo ? "demo" : p->available ? "available" : "unavailable",
		       p->available ? p->base_url : p->unavailable_reason);
	}
	printf("models: %zu, tiers: %zu, tasks: %zu\n", cfg->n_models, cfg->n_tiers, cfg->n_tasks);
	config_free(cfg);
	buf_free(&errors);
	free(def);
	return 0;
}

int cli_main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("llm-router %s\n", ROUTER_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "check-config") == 0) {
		if (argc > 3) {
			fprintf(stderr, "usage: llm-router check-config [FILE]\n");
			return 2;
		}
		return check_config(argc == 3 ? argv[2] : NULL);
	}
	fprintf(stderr, "llm-router: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
