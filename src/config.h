/* config.h - the router's configuration: an immutable struct built from a libconfig file.
 *
 * config_load() (config_load.c) parses and validates a file against one declarative schema
 * (config_schema.c, config_file.c); every problem is reported as "FILE:LINE: reason" and an
 * invalid file never yields a struct. A loaded struct config is not modified (but for
 * sources_stamp, which a rejected reload moves forward under the lock so that a broken file is
 * reported once): the process holds one current config behind a reference count
 * (config_acquire/config_release), and a reload builds a new struct and swaps the pointer, so a
 * request keeps the config it started with while new requests see the new one.
 *
 * Secrets are not in the file: each provider names the environment variables that hold its API key
 * and base URL; the key value is read at load time (from the process environment, else from
 * llm-router.env beside the file, see config_getenv) and is never logged or printed.
 */
#ifndef ROUTER_CONFIG_H
#define ROUTER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"

enum provider_api { API_OPENAI, API_ANTHROPIC, API_GEMINI };

/* What a chat model can honour beyond plain text (`capabilities` of a provider or a model). */
enum {
	CAP_TOOLS = 1,           /* tools / tool_choice */
	CAP_IMAGES = 2,          /* image_url content parts */
	CAP_JSON_OBJECT = 4,     /* response_format json_object */
	CAP_JSON_SCHEMA = 8,     /* response_format json_schema, strict included */
	CAP_ALL = 15
};

struct strv {
	char **v;
	size_t n;
};

/* String-list helpers: push copies s; free empties the list. */
void config_strv_push(struct strv *sv, const char *s);
void config_strv_free(struct strv *sv);
int config_strv_contains(const struct strv *sv, const char *s);

struct intv {
	int64_t *v;
	size_t n;
};

struct provider_conf {
	char *name;
	enum provider_api api;
	char *key_env;
	char *base_url_env;
	char *base_url_default;
	char *developer_role;          /* role `developer` messages are sent as ("developer", "system") */
	int strip_message_name;        /* drop messages[].name (Groq rejects it) */
	int keep_reasoning_content;    /* send reasoning_content back on tool-call turns (DeepSeek) */
	char *reasoning_field;         /* upstream name of reasoning text ("reasoning"), "" = none */
	struct strv unsupported_params;/* client fields this provider ignores: dropped, reported */
	struct strv reject_params;     /* client fields that change the result: refused with 400 */
	int custom_tools;              /* accepts tools[].type "custom" (OpenAI only) */
	int64_t max_n;                 /* largest `n` accepted; 0 = no limit */
	struct strv capabilities;      /* as written; caps is what counts */
	unsigned caps;                 /* CAP_*: the default of its models (all when not given) */
	struct strv headers;           /* extra request headers "Name: value" (no secrets) */
	/* Resolved at load time from the environment. */
	char *api_key;                 /* NULL when unavailable */
	char *base_url;                /* never ends with '/' */
	int available;
	int demo;                      /* served by the demo upstream (LLM_ROUTER_DEMO_URL) */
	char *unavailable_reason;
};

struct model_conf {
	char *id;                      /* public id; a pass-through route ends in a star */
	char *prefix;                  /* pass-through: "openrouter/", else NULL */
	int provider;                  /* index into config.providers */
	char *upstream;                /* upstream model id (pass-through: unused) */
	int64_t in_nusd;               /* price per input token, nano-USD */
	int64_t out_nusd;              /* price per output token */
	int64_t cached_in_nusd;        /* price per cached input token */
	int64_t cache_write_nusd;      /* price per cache-write input token */
	int reasoning;                 /* OpenAI reasoning-model rules apply */
	int64_t max_output_tokens;     /* default max_tokens when the client sends none */
	struct strv unsupported_params;
	size_t *fallback;              /* model indexes of the fallback chain, in order */
	size_t n_fallback;
	int64_t created;               /* unix seconds shown in /v1/models */
	int embedding;                 /* kind = "embedding": serves /v1/embeddings only */
	unsigned caps;                 /* CAP_*: its own `capabilities`, else its provider's */
	int64_t dimensions;            /* an embedding model's vector length (0: not stated) */
};

struct downgrade {
	size_t from, to;               /* model indexes */
};

struct tier_conf {
	char *id;                      /* "T1" */
	char *name;                    /* "Strategic" */
	double daily_budget_usd;
	double agent_daily_budget_usd; /* per agent of the tier; 0 = only the pooled budget */
	int all_models;                /* models = ["*"] */
	size_t *models;                /* allowed model indexes */
	size_t n_models;
	int allow_passthrough;         /* may use the pass-through route */
	struct downgrade *downgrades;
	size_t n_downgrades;
	struct strv agents;
};

struct task_conf {
	char *name;
	size_t model;
	size_t fallback;
	int has_fallback;
};

struct config {
	int refs;
	uint64_t generation;
	char *path;                    /* absolute path of the main file */
	char *home;                    /* base for relative paths */
	struct strv sources;           /* every file read (main + @include + llm-router.env), for
					* change detection */
	uint64_t sources_stamp;        /* their mtimes, sizes and inodes at load, hashed */
	struct strv env_file;          /* llm-router.env's NAME=value lines at load (secrets) */
	int64_t loaded_at;             /* unix seconds */

	/* server */
	int64_t threads;
	int64_t max_body_bytes;
	int64_t reload_interval_s;
	int64_t body_timeout_ms;       /* the whole request body must arrive within this */
	int64_t max_threads;           /* the worker pool grows up to this while requests hold workers */
	int64_t call_memory_mb;        /* what the calls in flight of a process hold together (memgauge.h) */
	/* log */
	char *log_level;
	/* storage */
	int request_log;               /* write a row per call (off only to measure its cost) */
	char *db_path;                 /* absolute */
	char *fallback_jsonl;          /* absolute */
	int64_t retention_days;
	int64_t busy_timeout_ms;
	char *synchronous;
	int64_t checkpoint_pages;
	int64_t kept_rows_max;         /* rows kept in memory when neither database nor fallback takes them */
	char *when_unrecorded;         /* "refuse" (503 while nothing can record a call) | "serve" */
	/* upstream */
	int64_t connect_timeout_ms;
	int64_t timeout_ms;
	int64_t stream_idle_timeout_ms;
	int64_t keepalive_interval_ms;
	int64_t deadline_ms;           /* all attempts of one request together */
	int64_t max_retries;           /* further attempts after the first */
	struct intv retry_on;          /* upstream statuses that trigger fallback */
	int retry_on_network;          /* connect/DNS/timeouts/stalls/broken or malformed replies too */
	int64_t retry_after_max_ms;    /* a 429 asking to wait up to this is retried on the same model */
	int64_t backoff_ms;            /* first backoff before retrying the same provider */
	int64_t backoff_max_ms;
	int64_t max_response_bytes;
	char *proxy;                   /* as configured */
	char *proxy_url;               /* proxy without its credentials: what libcurl is given */
	char *proxy_user;              /* its credentials, decoded; NULL when it has none (libcurl */
	char *proxy_password;          /* gets them apart, so that no error text can quote them) */
	char *ca_file;
	/* params */
	int strict_params;
	struct strv reasoning_prefixes;
	/* demo */
	char *demo_url_env;
	/* routing */
	char *default_tier_name;
	size_t default_tier;
	char *auth_mode;               /* "key" | "header" | "none" */
	char *agent_header;            /* e.g. "X-Agent-Name" */
	char *admin_key_env;           /* variable holding the admin key ("" = no admin endpoints) */
	char *admin_key;               /* its value at load, NULL when unset */
	char *auto_model_name;         /* model "auto" without a task type ("" = none) */
	size_t auto_model;
	int has_auto_model;
	/* budget */
	int budget_enabled;
	int64_t warn_percent;
	int64_t block_percent;
	int64_t reservation_timeout_s;  /* a reservation older than this is reclaimed */
	char *webhook_url;             /* alerts are POSTed here ("" = none) */
	char *budget_when_db_down;     /* "serve" (unchecked) | "refuse" (503) */
	/* cooldown: a model failing `failures` times within window_s is skipped for duration_s */
	int64_t cooldown_failures;     /* 0 = never */
	int64_t cooldown_window_s;
	int64_t cooldown_s;

	struct provider_conf *providers;
	size_t n_providers;
	struct model_conf *models;
	size_t n_models;
	struct tier_conf *tiers;
	size_t n_tiers;
	struct task_conf *tasks;
	size_t n_tasks;
};

/* Parses and validates `path`. On failure returns NULL and appends one "FILE:LINE: reason" line
 * per problem to errors. The environment is read for provider keys and base URLs. */
struct config *config_load(const char *path, struct buf *errors);
void config_free(struct config *cfg);
/* Logs each "FILE:LINE: reason" line of errors as one error, prefixed with what. */
void config_log_errors(const struct buf *errors, const char *what);

/* The path used when none is given: $LLM_ROUTER_CONFIG, else ../conf/llm-router.conf,
 * conf/llm-router.conf or ../etc/llm-router/llm-router.conf relative to the executable's directory
 * (never the working directory). Returns a malloc'd string. */
char *config_default_path(void);

/* One line of llm-router.env (the file beside the configuration that carries environment
 * variables where the web server cannot set them): NAME=value, optionally after "export ", the
 * value optionally in matching quotes. Edits line in place. Returns 1 with *name and *value set,
 * 0 for a blank line or a # comment, -1 for anything else. */
int config_env_line(char *line, char **name, char **value);

/* The value of an environment variable as this config sees it: the process environment's (a
 * variable set there wins), else llm-router.env's as read with this config, else NULL. Variables
 * the file put into the process environment at the first load (for libraries that read it) still
 * follow the file: an edit of the file reaches new requests with the next reload. */
const char *config_getenv(const struct config *cfg, const char *name);
/* Records that the first load set name in the process environment from llm-router.env. */
void config_env_from_file(const char *name);

/* Process-wide current configuration. config_global_set takes ownership of cfg. */
void config_global_set(struct config *cfg);
/* Returns the current config with a reference held; pair with config_release. */
struct config *config_acquire(void);
void config_release(struct config *cfg);
/* Re-reads the current config's file. On success swaps it in and returns 1; when the file is
 * broken, keeps the old one, logs why and returns -1; returns 0 when nothing changed on disk and
 * force is 0. */
int config_reload(int force);

/* Lookups. config_find_model returns the model for a public id (pass-through routes match their
 * prefix, and *upstream_out then points into id after the prefix), or NULL. */
const struct model_conf *config_find_model(const struct config *cfg, const char *id,
					   const char **upstream_out);
int config_model_index(const struct config *cfg, const char *id);
const struct tier_conf *config_tier_for_agent(const struct config *cfg, const char *agent);
const char *provider_api_name(enum provider_api api);
/* The configuration names of enum provider_api, in its order, NULL-terminated. */
extern const char *const config_api_names[];
/* The configuration names of the CAP_* bits, lowest bit first, NULL-terminated. */
extern const char *const config_cap_names[];

#endif
