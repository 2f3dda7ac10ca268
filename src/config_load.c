/* config_load.c - builds a struct config from a file and the environment, and publishes it.
 *
 * Model: config_load reads llm-router.env into the struct (and, at the first load only, before
 * any thread exists, into the process environment for the libraries that read it), has
 * config_file.c read and check the file, then resolves what depends on the environment (home,
 * admin key, provider keys, absolute paths) through config_getenv. The env file is one of the
 * sources whose change a reload notices. An invalid file never yields a struct. The process-wide
 * current config is a pointer guarded by a mutex with a reference count per struct: a request
 * acquires it once and releases it when it ends, and a reload builds a new struct and swaps the
 * pointer; the old struct is freed when its last user releases it. No libconfig here:
 * config_file.c is the only file that opens a configuration.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_file.h"
#include "log.h"
#include "memgauge.h"
#include "util.h"

/* ---------------------------------------------------------------------------------------------- */
/* Paths */

static char *resolve_path(const char *home, const char *p)
{
	if (p[0] == '/')
		return xstrdup(p);
	return xasprintf("%s/%s", home, p);
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

static char *absolute_path(const char *path)
{
	char *real = realpath(path, NULL);
	if (real)
		return real;
	if (path[0] == '/')
		return xstrdup(path);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return xstrdup(path);
	return xasprintf("%s/%s", cwd, path);
}

/* A stamp of the files' states (mtime to the nanosecond, size, inode; a missing file counts too):
 * any edit, replacement, creation or removal changes it. */
static uint64_t sources_stamp(const struct strv *files)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < files->n; i++) {
		struct stat st;
		uint64_t part[4] = { 0, 0, 0, 0 };
		if (stat(files->v[i], &st) == 0) {
			part[0] = (uint64_t)st.st_mtim.tv_sec;
			part[1] = (uint64_t)st.st_mtim.tv_nsec;
			part[2] = (uint64_t)st.st_size;
			part[3] = (uint64_t)st.st_ino;
		}
		for (size_t k = 0; k < 4; k++)
			h = (h ^ part[k]) * 1099511628211ULL;
	}
	return h;
}

/* ---------------------------------------------------------------------------------------------- */
/* llm-router.env */

int config_env_line(char *line, char **name, char **value)
{
	line[strcspn(line, "\r\n")] = '\0';
	char *p = line + strspn(line, " \t");
	if (*p == '\0' || *p == '#')
		return 0;
	if (str_has_prefix(p, "export "))
		p += 7;
	size_t name_len = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_");
	if (name_len == 0 || p[name_len] != '=' || (p[0] >= '0' && p[0] <= '9'))
		return -1;
	p[name_len] = '\0';
	char *val = p + name_len + 1;
	size_t vl = strlen(val);
	if (vl >= 2 && (val[0] == '"' || val[0] == '\'') && val[vl - 1] == val[0]) {
		val[vl - 1] = '\0';
		val++;
	}
	*name = p;
	*value = val;
	return 1;
}

/* Set by the first load, which runs before any thread exists; later loads run on one thread (the
 * signal thread's reloads). */
static int env_loaded_once;

/* llm-router.env beside the configuration: NAME=value lines (provider keys, base URLs) for hosts
 * where the web server cannot set the router's environment (shared hosting, .htaccess). Read by
 * every load, so that a reload (the file is one of the sources) applies an edit to new requests
 * without a restart; the values stay in the struct (config_getenv), since setenv is not safe once
 * threads run. The first load of the process also sets the variables the environment lacks, for
 * libraries that read the environment themselves. */
static int load_env_file(struct config *cfg, const char *config_dir, struct buf *errors)
{
	int first = !env_loaded_once;
	env_loaded_once = 1;
	int bad = 0;
	char *file = xasprintf("%s/llm-router.env", config_dir);
	config_strv_push(&cfg->sources, file);
	FILE *f = fopen(file, "re");
	if (!f) {
		if (errno != ENOENT) {
			buf_printf(errors, "%s: cannot read the file: %s\n", file, strerror(errno));
			bad++;
		}
		free(file);
		return bad;
	}
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 007))
		log_warn(NULL, "%s is readable by other users: chmod 600 it (it holds provider keys)",
			 file);
	char line[8192];
	int lineno = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		char *name, *val;
		int r = config_env_line(line, &name, &val);
		if (r < 0) {
			/* Name the line, never its content: it may hold a key. */
			buf_printf(errors, "%s:%d: expected NAME=value\n", file, lineno);
			bad++;
		} else if (r > 0) {
			char *kv = xasprintf("%s=%s", name, val);
			config_strv_push(&cfg->env_file, kv);
			explicit_bzero(kv, strlen(kv));
			free(kv);
			if (first && !getenv(name)) {
				setenv(name, val, 0);
				config_env_from_file(name);
			}
		}
	}
	explicit_bzero(line, sizeof(line));
	fclose(f);
	free(file);
	return bad;
}

/* ---------------------------------------------------------------------------------------------- */
/* Loading */

/* The environment's part of a loaded file: the home that relative paths are based on
 * ($LLM_ROUTER_HOME, else the parent of the configuration's directory), the admin key, and the
 * storage and CA paths made absolute. */
static void apply_environment(struct config *cfg, const char *dir)
{
	const char *home_env = config_getenv(cfg, "LLM_ROUTER_HOME");
	if (home_env && home_env[0])
		cfg->home = absolute_path(home_env);
	else
		cfg->home = dir_of(dir);
	if (cfg->admin_key_env && cfg->admin_key_env[0]) {
		const char *v = config_getenv(cfg, cfg->admin_key_env);
		if (v && v[0])
			cfg->admin_key = xstrdup(v);
	}
	if (cfg->db_path && cfg->fallback_jsonl) {
		char *db = resolve_path(cfg->home, cfg->db_path);
		char *jl = resolve_path(cfg->home, cfg->fallback_jsonl);
		free(cfg->db_path);
		free(cfg->fallback_jsonl);
		cfg->db_path = db;
		cfg->fallback_jsonl = jl;
	}
	if (cfg->ca_file && cfg->ca_file[0]) {
		char *ca = resolve_path(cfg->home, cfg->ca_file);
		free(cfg->ca_file);
		cfg->ca_file = ca;
	}
}

struct config *config_load(const char *path, struct buf *errors)
{
	static uint64_t generation;
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	cfg->refs = 1;
	cfg->path = absolute_path(path);
	char *dir = dir_of(cfg->path);
	config_strv_push(&cfg->sources, cfg->path);
	/* First: the file may set variables read below (LLM_ROUTER_HOME, provider keys). */
	int nerr = load_env_file(cfg, dir, errors);
	cfg->loaded_at = clock_wall_ms() / 1000;
	int found = config_file_read(cfg, path, dir, errors);
	if (found < 0) {
		free(dir);
		config_free(cfg);
		return NULL;
	}
	nerr += found;
	apply_environment(cfg, dir);
	free(dir);
	if (nerr) {
		config_free(cfg);
		return NULL;
	}
	cfg->sources_stamp = sources_stamp(&cfg->sources);
	cfg->generation = __atomic_add_fetch(&generation, 1, __ATOMIC_RELAXED);
	return cfg;
}

char *config_default_path(void)
{
	const char *env = getenv("LLM_ROUTER_CONFIG");
	if (env && env[0])
		return xstrdup(env);
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *dir = dir_of(exe);
		static const char *const rel[] = { "../conf/llm-router.conf", "conf/llm-router.conf",
						   "../etc/llm-router/llm-router.conf" };
		for (size_t i = 0; i < ARRAY_SIZE(rel); i++) {
			char *cand = xasprintf("%s/%s", dir, rel[i]);
			if (access(cand, R_OK) == 0) {
				free(dir);
				return cand;
			}
			free(cand);
		}
		char *fallback = xasprintf("%s/../conf/llm-router.conf", dir);
		free(dir);
		return fallback;
	}
	/* Without /proc: make install's location; never a path relative to the working directory. */
	return xstrdup("/usr/local/etc/llm-router/llm-router.conf");
}

/* ---------------------------------------------------------------------------------------------- */
/* Process-wide current config */

static pthread_mutex_t current_mu = PTHREAD_MUTEX_INITIALIZER;
static struct config *current;

void config_global_set(struct config *cfg)
{
	if (cfg)
		memgauge_set_cap((size_t)cfg->call_memory_mb << 20);
	pthread_mutex_lock(&current_mu);
	struct config *old = current;
	current = cfg;
	pthread_mutex_unlock(&current_mu);
	if (old)
		config_release(old);
}

struct config *config_acquire(void)
{
	pthread_mutex_lock(&current_mu);
	struct config *cfg = current;
	if (cfg)
		cfg->refs++;
	pthread_mutex_unlock(&current_mu);
	return cfg;
}

void config_release(struct config *cfg)
{
	if (!cfg)
		return;
	pthread_mutex_lock(&current_mu);
	int left = --cfg->refs;
	pthread_mutex_unlock(&current_mu);
	if (left == 0)
		config_free(cfg);
}

int config_reload(int force)
{
	struct config *cur = config_acquire();
	if (!cur)
		return -1;
	if (!force && sources_stamp(&cur->sources) == cur->sources_stamp) {
		config_release(cur);
		return 0;
	}
	struct buf errors;
	buf_init(&errors, 65536);
	struct config *fresh = config_load(cur->path, &errors);
	if (!fresh) {
		/* Remember the broken file's state so that it is reported once, not every interval. */
		pthread_mutex_lock(&current_mu);
		cur->sources_stamp = sources_stamp(&cur->sources);
		pthread_mutex_unlock(&current_mu);
		config_log_errors(&errors, "config reload rejected, keeping the previous configuration");
		buf_free(&errors);
		config_release(cur);
		return -1;
	}
	buf_free(&errors);
	if (fresh->threads != cur->threads)
		log_warn(NULL, "config reload: server.threads changed to %lld; takes effect on restart",
			 (long long)fresh->threads);
	if (strcmp(fresh->db_path, cur->db_path) != 0)
		log_warn(NULL, "config reload: storage.db_path changed; takes effect on restart");
	enum log_level lvl;
	if (log_level_parse(fresh->log_level, &lvl) == 0)
		log_set_level(lvl);
	log_info(NULL, "configuration reloaded from %s (generation %llu)", fresh->path,
		 (unsigned long long)fresh->generation);
	config_release(cur);
	config_global_set(fresh);
	return 1;
}
