/* cli.c - command-line entry points (see cli.h). Output goes to stdout, problems to stderr;
 * exit status 0 on success, 1 on failure, 2 on a usage error. Never prints a secret. */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "alerts.h"
#include "config.h"
#include "keys.h"
#include "report.h"
#include "reqlog.h"
#include "rowkeep.h"
#include "store.h"
#include "store_diag.h"
#include "upstream.h"
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
		"  llm-router init                  create the data directory and the database (a new\n"
		"                                   database gets the keys of the key snapshot)\n"
		"  llm-router keys create --agent NAME   a new key for an agent (printed once)\n"
		"  llm-router keys list             every key: id, agent, tier, created, status\n"
		"  llm-router keys revoke ID        revoke a key (takes effect at once)\n"
		"  llm-router report [--day YYYY-MM-DD | --days N] [--by tier|agent|model|day]\n"
		"                    [--format text|json|csv]\n"
		"                                   spend from the request log: calls, tokens, USD,\n"
		"                                   errors per group (today, by tier, as a table by\n"
		"                                   default). json: one object, \"rows\" and \"total\";\n"
		"                                   csv: RFC 4180, a header row, a row per group, no\n"
		"                                   total row\n"
		"  llm-router replay                import the JSONL fallback into the database and send\n"
		"                                   the budget alerts waiting for budget.webhook_url\n"
		"  llm-router replay --log FILE     import the rows an error log holds (lines marked\n"
		"                                   \"" ROWKEEP_MARK "\")\n"
		"  llm-router prune                 delete rows older than storage.retention_days\n"
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
		char url[512];    /* a base URL's credentials (a gateway's) show as stars */
		url_hide_userinfo(p->base_url ? p->base_url : "", url, sizeof(url));
		printf("  %-11s %-9s %-11s %s\n", p->name, provider_api_name(p->api),
		       p->demo ? "demo" : p->available ? "available" : "unavailable",
		       p->available ? url : p->unavailable_reason);
	}
	printf("models: %zu, tiers: %zu, tasks: %zu\n", cfg->n_models, cfg->n_tiers, cfg->n_tasks);
	config_free(cfg);
	buf_free(&errors);
	free(def);
	return 0;
}

/* ---- keys and reports: commands that open the configured database ---- */

static struct config *load_for_cli(void)
{
	char *path = config_default_path();
	struct buf errors;
	buf_init(&errors, 1 << 20);
	struct config *cfg = config_load(path, &errors);
	if (!cfg) {
		fputs(buf_str(&errors), stderr);
		fprintf(stderr, "%s: configuration is invalid\n", path);
	}
	buf_free(&errors);
	free(path);
	return cfg;
}

/* create: what may be made when the database is missing (store_opts.h): `init` makes a new one,
 * `keys create` one on a first start (its directory too), every other command only on a first
 * start, like the router. */
static struct store *open_for_cli(const struct config *cfg, enum store_create create)
{
	struct store_opts o = { .path = cfg->db_path, .busy_timeout_ms = cfg->busy_timeout_ms,
				.synchronous_full = strcmp(cfg->synchronous, "full") == 0,
				.create = create, .fallback_path = cfg->fallback_jsonl };
	char err[512];
	struct store *st = store_open(&o, err, sizeof(err));
	if (!st)
		fprintf(stderr, "llm-router: %s\n", err);
	return st;
}

/* The key snapshot beside the database, after a change of the keys: the routers verify keys
 * with it while the database is down, and notice the change at their next request. */
static void save_snapshot(struct store *st, const struct config *cfg)
{
	char err[512];
	if (key_snapshot_save(st, cfg->db_path, err, sizeof(err)) < 0)
		fprintf(stderr, "llm-router: warning: %s (the routers update it within a second)\n", err);
}

static void print_key_row(void *ud, const char *id, const char *agent, int64_t created_ms,
			  int64_t revoked_ms)
{
	const struct config *cfg = ud;
	const struct tier_conf *t = config_tier_for_agent(cfg, agent);
	char created[11], revoked[11];
	store_utc_day(created_ms, created);
	store_utc_day(revoked_ms, revoked);
	printf("%-14s %-24s %-4s %-10s %s\n", id, agent, t ? t->id : "-", created,
	       revoked_ms ? revoked : "active");
}

static int keys_cmd(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: llm-router keys create --agent NAME | keys list | keys revoke ID\n");
		return 2;
	}
	const char *agent = NULL;
	if (strcmp(argv[2], "create") == 0) {
		for (int i = 3; i + 1 < argc; i++)
			if (strcmp(argv[i], "--agent") == 0)
				agent = argv[i + 1];
		size_t n = agent ? strlen(agent) : 0;
		int ok = n > 0 && n < 100;
		for (size_t i = 0; ok && i < n; i++)
			ok = (agent[i] >= 'a' && agent[i] <= 'z') || (agent[i] >= 'A' && agent[i] <= 'Z') ||
			     (agent[i] >= '0' && agent[i] <= '9') || agent[i] == '_' || agent[i] == '-' ||
			     agent[i] == '.';
		if (!ok) {
			fprintf(stderr, "usage: llm-router keys create --agent NAME  (NAME: 1-99 of A-Z a-z 0-9 _ - .)\n");
			return 2;
		}
	} else if (strcmp(argv[2], "revoke") == 0 && argc != 4) {
		fprintf(stderr, "usage: llm-router keys revoke ID\n");
		return 2;
	} else if (strcmp(argv[2], "list") != 0 && strcmp(argv[2], "revoke") != 0) {
		fprintf(stderr, "llm-router: unknown keys command '%s'\n", argv[2]);
		return 2;
	}
	struct config *cfg = load_for_cli();
	if (!cfg)
		return 1;
	struct store *st = open_for_cli(cfg, strcmp(argv[2], "create") == 0 ? STORE_CREATE_FIRST_DIR
								      : STORE_CREATE_FIRST);
	int rc = 1;
	if (!st)
		goto out;
	if (strcmp(argv[2], "create") == 0) {
		char key[KEY_LEN + 1], id[KEY_ID_LEN + 1];
		if (key_create(st, agent, key, id) < 0) {
			fprintf(stderr, "llm-router: could not store the key (%s); nothing was stored, "
				"run it again\n", store_errmsg(st));
			store_diagnose(st, NULL);   /* a file it cannot write, a full disk: says the fix */
		} else {
			const struct tier_conf *t = config_tier_for_agent(cfg, agent);
			int listed = 0;
			for (size_t i = 0; i < cfg->n_tiers; i++)
				for (size_t j = 0; j < cfg->tiers[i].agents.n; j++)
					listed |= strcmp(cfg->tiers[i].agents.v[j], agent) == 0;
			printf("%s\n", key);
			fprintf(stderr, "key %s for agent %s (tier %s%s). It is shown only now: store it.\n", id,
				agent, t ? t->id : "-", listed ? "" : ", the default tier: the agent is in no tier's list");
			rc = 0;
			save_snapshot(st, cfg);
		}
		explicit_bzero(key, sizeof(key));
	} else if (strcmp(argv[2], "list") == 0) {
		printf("%-14s %-24s %-4s %-10s %s\n", "ID", "AGENT", "TIER", "CREATED", "STATUS");
		rc = store_key_list(st, print_key_row, cfg) < 0;
	} else {
		int n = store_key_revoke(st, argv[3], clock_wall_ms());
		if (n == 1) {
			printf("key %s revoked\n", argv[3]);
			rc = 0;
			save_snapshot(st, cfg);
		} else if (n < 0) {
			fprintf(stderr, "llm-router: could not revoke the key (%s); nothing was changed, "
				"run it again\n", store_errmsg(st));
			store_diagnose(st, NULL);
		} else {
			fprintf(stderr, "llm-router: no active key with id '%s'\n", argv[3]);
		}
	}
out:
	store_close(st);
	config_free(cfg);
	return rc;
}

static int parse_day(const char *s, int64_t *ms)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(s, "%Y-%m-%d", &tm);
	if (!end || *end)
		return -1;
	*ms = (int64_t)timegm(&tm) * 1000;
	return 0;
}

#define REPORT_USAGE \
	"usage: llm-router report [--day YYYY-MM-DD | --days N] [--by tier|agent|model|day]\n" \
	"                         [--format text|json|csv]\n"

static int report_cmd(int argc, char **argv)
{
	const char *by = "tier", *day = NULL;
	long long days = 1;
	enum report_format format = REPORT_TEXT;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--by") == 0 && i + 1 < argc)
			by = argv[++i];
		else if (strcmp(argv[i], "--day") == 0 && i + 1 < argc)
			day = argv[++i];
		else if (strcmp(argv[i], "--days") == 0 && i + 1 < argc) {
			if (parse_ll(argv[++i], &days) < 0 || days < 1 || days > 3660) {
				fprintf(stderr, "llm-router: --days takes 1..3660\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) {
			if (report_format_parse(argv[++i], &format) < 0) {
				fprintf(stderr, "llm-router: --format takes text, json or csv\n");
				return 2;
			}
		} else {
			fputs(REPORT_USAGE, stderr);
			return 2;
		}
	}
	if (strcmp(by, "tier") && strcmp(by, "agent") && strcmp(by, "model") && strcmp(by, "day")) {
		fprintf(stderr, "llm-router: --by takes tier, agent, model or day\n");
		return 2;
	}
	int64_t from, to;
	if (day) {
		if (parse_day(day, &from) < 0) {
			fprintf(stderr, "llm-router: --day takes YYYY-MM-DD\n");
			return 2;
		}
		days = 1;
	} else {
		int64_t now = clock_wall_ms();
		from = now - now % 86400000 - (days - 1) * 86400000;
	}
	to = from + days * 86400000;
	struct config *cfg = load_for_cli();
	if (!cfg)
		return 1;
	struct store *st = open_for_cli(cfg, STORE_CREATE_FIRST);
	int rc = 1;
	if (st) {
		char d0[11], d1[11];
		store_utc_day(from, d0);
		store_utc_day(to - 1, d1);
		struct report_out out = { .f = stdout, .format = format, .cfg = cfg, .by = by,
					  .from_day = d0, .to_day = d1, .days = (int)days };
		report_begin(&out);
		rc = store_report(st, from, to, by, report_add_row, &out) < 0;
		if (rc)
			fprintf(stderr, "llm-router: the report failed (%s); the output is incomplete\n",
				store_errmsg(st));
		else
			report_end(&out);
		if (fflush(stdout) != 0 || ferror(stdout)) {
			fprintf(stderr, "llm-router: cannot write the report\n");
			rc = 1;
		}
	}
	store_close(st);
	config_free(cfg);
	return rc;
}

/* How long `replay` may spend sending the alert outbox. */
#define CLI_ALERTS_MS 120000

static int replay_cmd(const char *log_file)
{
	struct config *cfg = load_for_cli();
	if (!cfg)
		return 1;
	struct store *st = open_for_cli(cfg, STORE_CREATE_FIRST);
	int rc = 1;
	if (st && log_file) {
		long long imported, already;
		char err[512];
		rc = rowkeep_import_log(st, log_file, &imported, &already, err, sizeof(err)) < 0;
		if (rc)
			fprintf(stderr, "llm-router: cannot import the rows of %s (%s); nothing was "
				"imported, run it again\n", log_file, err);
		else
			printf("%s: %lld row(s) imported, %lld already in the database\n", log_file,
			       imported, already);
	} else if (st) {
		struct replay_stats rs;
		rc = reqlog_replay_wait(st, cfg->fallback_jsonl, &rs) < 0;
		if (rc) {
			fprintf(stderr, "llm-router: the replay of %s stopped: the database failed (%s); "
				"the rows not imported stay in their file, run it again\n",
				cfg->fallback_jsonl, rs.err[0] ? rs.err : store_errmsg(st));
			store_diagnose(st, NULL);   /* a file it cannot write, a full disk: says the fix */
		}
		printf("%s: %lld row(s) imported, %lld already in the database, %lld unreadable line(s) "
		       "skipped, %lld file(s) done\n", cfg->fallback_jsonl, rs.imported, rs.already,
		       rs.malformed, rs.files);
		/* The budget alerts no process has sent yet (cron drains the outbox on shared hosting). */
		if (cfg->webhook_url && cfg->webhook_url[0] && upstream_global_init() == 0) {
			int sent = alerts_drain(st, cfg->webhook_url, clock_mono_us() + CLI_ALERTS_MS * 1000LL,
						NULL);
			upstream_global_cleanup();
			if (sent < 0)
				rc = 1;
			printf("budget alerts: %d sent to budget.webhook_url%s\n", sent < 0 ? 0 : sent,
			       sent < 0 ? " (the database failed)" : alerts_due(st) ? ", more still due" : "");
		}
	}
	store_close(st);
	config_free(cfg);
	return rc;
}

static int prune_cmd(void)
{
	struct config *cfg = load_for_cli();
	if (!cfg)
		return 1;
	struct store *st = open_for_cli(cfg, STORE_CREATE_FIRST);
	int rc = 1;
	if (st) {
		int64_t cutoff = clock_wall_ms() - cfg->retention_days * 86400000LL;
		char day[11];
		store_utc_day(cutoff, day);
		long long n = store_prune(st, cutoff, NULL);
		if (n >= 0) {
			printf("%lld request-log row(s) from before %s (retention %lld days) deleted\n", n, day,
			       (long long)cfg->retention_days);
			rc = 0;
		} else {
			fprintf(stderr, "llm-router: pruning failed\n");
		}
	}
	store_close(st);
	config_free(cfg);
	return rc;
}

/* A first setup, or a deliberate fresh start: the data directory and the database (kept when it
 * exists); a new database gets the keys of the snapshot left by the one it replaces. */
static int init_cmd(void)
{
	struct config *cfg = load_for_cli();
	if (!cfg)
		return 1;
	struct stat sb;
	int existed = stat(cfg->db_path, &sb) == 0;
	struct store *st = open_for_cli(cfg, STORE_CREATE_ANY);
	int rc = 1;
	char err[512];
	if (!st)
		goto out;
	if (existed) {
		printf("%s: the database exists (schema version %d); nothing to do\n", cfg->db_path,
		       store_schema_version(st));
		rc = 0;
		goto out;
	}
	int n = key_snapshot_restore(st, cfg->db_path, err, sizeof(err));
	if (n < 0) {
		fprintf(stderr, "llm-router: %s\n", err);
		goto out;
	}
	if (key_snapshot_save(st, cfg->db_path, err, sizeof(err)) < 0)
		fprintf(stderr, "llm-router: warning: %s\n", err);
	printf("%s: a new database (schema version %d)", cfg->db_path, store_schema_version(st));
	if (n > 0)
		printf(" with the %d key(s) of the snapshot", n);
	printf("\n");
	rc = 0;
out:
	store_close(st);
	config_free(cfg);
	return rc;
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
	if (strcmp(argv[1], "init") == 0 && argc == 2)
		return init_cmd();
	if (strcmp(argv[1], "keys") == 0)
		return keys_cmd(argc, argv);
	if (strcmp(argv[1], "report") == 0)
		return report_cmd(argc, argv);
	if (strcmp(argv[1], "replay") == 0 && argc == 2)
		return replay_cmd(NULL);
	if (strcmp(argv[1], "replay") == 0 && argc == 4 && strcmp(argv[2], "--log") == 0)
		return replay_cmd(argv[3]);
	if (strcmp(argv[1], "prune") == 0 && argc == 2)
		return prune_cmd();
	fprintf(stderr, "llm-router: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
