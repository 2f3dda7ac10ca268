/* harness.c - registry, checks, fixtures and main() of the unit-test runner (see harness.h).
 *
 * The parent process owns the registry and one temporary base directory for the whole run; every
 * test gets <base>/<n>-<name> as its private directory and, unless TEST_NOFORK is set, runs in a
 * forked child that reports its check and failure counts back through a pipe. The parent removes
 * the base directory at the end, so even a crashed test leaves nothing behind.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jsonx.h"

struct test_entry {
	const char *file;
	int line;
	const char *name;
	test_fn fn;
};

static struct test_entry *registry;
static size_t n_registry, cap_registry;

/* State of the running test. */
static const char *cur_file, *cur_name;
static char cur_case[256];
static long cur_checks, cur_failures;
static int verbose;

static char base_dir[PATH_MAX];
static char cur_dir[PATH_MAX];
static int cur_dir_made;
static size_t cur_index;

void test_register(const char *file, int line, const char *name, test_fn fn)
{
	if (n_registry == cap_registry) {
		cap_registry = cap_registry ? cap_registry * 2 : 64;
		registry = realloc(registry, cap_registry * sizeof(*registry));
		if (!registry)
			abort();
	}
	registry[n_registry++] = (struct test_entry){ file, line, name, fn };
}

void test_case(const char *fmt, ...)
{
	if (!fmt) {
		cur_case[0] = '\0';
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cur_case, sizeof(cur_case), fmt, ap);
	va_end(ap);
}

static void fail_header(const char *file, int line)
{
	cur_failures++;
	printf("  FAIL %s:%d: in %s", file, line, cur_name ? cur_name : "?");
	if (cur_case[0]) {
		printf(" [");
		for (const char *p = cur_case; *p; p++) {
			if (*p == '\n')
				printf("\\n");
			else if (*p == '\t')
				printf("\\t");
			else if (*p == '\r')
				printf("\\r");
			else
				putchar(*p);
		}
		printf("]");
	}
	printf("\n");
}

/* Prints a string value with C escapes, or NULL. */
static void print_value(const char *s, size_t len)
{
	if (!s) {
		printf("NULL");
		return;
	}
	putchar('"');
	size_t shown = len > 400 ? 400 : len;
	for (size_t i = 0; i < shown; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			printf("\\n");
		else if (c == '\r')
			printf("\\r");
		else if (c < 0x20 || c >= 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	putchar('"');
	if (shown < len)
		printf("... (%zu bytes)", len);
}

int test_check(int ok, const char *file, int line, const char *expr)
{
	cur_checks++;
	if (ok)
		return 1;
	fail_header(file, line);
	printf("       expected: %s\n", expr);
	return 0;
}

int test_check_int(long long a, long long b, const char *op, const char *file, int line,
		   const char *ea, const char *eb)
{
	cur_checks++;
	int ok;
	if (strcmp(op, "==") == 0)
		ok = a == b;
	else if (strcmp(op, "!=") == 0)
		ok = a != b;
	else if (strcmp(op, "<") == 0)
		ok = a < b;
	else if (strcmp(op, "<=") == 0)
		ok = a <= b;
	else
		ok = a >= b;
	if (ok)
		return 1;
	fail_header(file, line);
	printf("       expected: %s %s %s\n", ea, op, eb);
	printf("       actual:   %lld %s %lld\n", a, op, b);
	return 0;
}

int test_check_str(const char *a, const char *b, const char *file, int line, const char *ea,
		   const char *eb)
{
	cur_checks++;
	if ((a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0))
		return 1;
	fail_header(file, line);
	printf("       expected: %s == %s\n       left:  ", ea, eb);
	print_value(a, a ? strlen(a) : 0);
	printf("\n       right: ");
	print_value(b, b ? strlen(b) : 0);
	printf("\n");
	return 0;
}

int test_check_mem(const void *a, size_t alen, const void *b, size_t blen, const char *file,
		   int line, const char *ea, const char *eb)
{
	cur_checks++;
	if (alen == blen && (alen == 0 || (a && b && memcmp(a, b, alen) == 0)))
		return 1;
	fail_header(file, line);
	printf("       expected: %s == %s\n       left (%zu):  ", ea, eb, alen);
	print_value(a, alen);
	printf("\n       right (%zu): ", blen);
	print_value(b, blen);
	printf("\n");
	return 0;
}

int test_check_contains(const char *hay, const char *needle, int want, const char *file, int line,
			const char *eh, const char *en)
{
	cur_checks++;
	int has = hay && needle && strstr(hay, needle) != NULL;
	if (has == want)
		return 1;
	fail_header(file, line);
	printf("       expected: %s %s %s\n       haystack: ", eh, want ? "contains" : "does not contain",
	       en);
	print_value(hay, hay ? strlen(hay) : 0);
	printf("\n       needle:   ");
	print_value(needle, needle ? strlen(needle) : 0);
	printf("\n");
	return 0;
}

int test_check_dbl(double a, double b, double eps, const char *file, int line, const char *ea,
		   const char *eb)
{
	cur_checks++;
	double d = a - b;
	if (d < 0)
		d = -d;
	if (d <= eps)
		return 1;
	fail_header(file, line);
	printf("       expected: %s == %s\n       actual:   %.17g vs %.17g\n", ea, eb, a, b);
	return 0;
}

/* ---- fixtures ---- */

void test_rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		chmod(path, 0700);
		DIR *d = opendir(path);
		if (d) {
			struct dirent *e;
			while ((e = readdir(d)) != NULL) {
				if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
					continue;
				char sub[PATH_MAX];
				snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
				test_rm_rf(sub);
			}
			closedir(d);
		}
		rmdir(path);
	} else {
		unlink(path);
	}
}

const char *test_tmpdir(void)
{
	if (!cur_dir_made) {
		int w = snprintf(cur_dir, sizeof(cur_dir), "%.3000s/%zu-%.200s", base_dir, cur_index,
				 cur_name ? cur_name : "test");
		if (w < 0 || (size_t)w >= sizeof(cur_dir))
			abort();
		if (mkdir(cur_dir, 0700) < 0 && errno != EEXIST) {
			printf("harness: cannot create %s: %s\n", cur_dir, strerror(errno));
			abort();
		}
		cur_dir_made = 1;
	}
	return cur_dir;
}

char *test_path(const char *name)
{
	const char *dir = test_tmpdir();
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	if (!p)
		abort();
	snprintf(p, n, "%s/%s", dir, name);
	return p;
}

void test_write_file(const char *path, const char *data, size_t len)
{
	if (len == (size_t)-1)
		len = strlen(data);
	FILE *f = fopen(path, "wb");
	if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
		printf("harness: cannot write %s: %s\n", path, strerror(errno));
		abort();
	}
}

char *test_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 4096, n = 0;
	char *p = malloc(cap);
	if (!p)
		abort();
	size_t r;
	while ((r = fread(p + n, 1, cap - n - 1, f)) > 0) {
		n += r;
		if (cap - n - 1 == 0) {
			cap *= 2;
			p = realloc(p, cap);
			if (!p)
				abort();
		}
	}
	fclose(f);
	p[n] = '\0';
	if (len)
		*len = n;
	return p;
}

static int is_repo_root(const char *dir)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/conf/llm-router.conf", dir);
	if (access(p, R_OK) != 0)
		return 0;
	snprintf(p, sizeof(p), "%s/src/config.h", dir);
	return access(p, R_OK) == 0;
}

const char *test_repo_root(void)
{
	static char root[PATH_MAX];
	if (root[0])
		return root;
	const char *env = getenv("TEST_REPO_ROOT");
	char cand[PATH_MAX];
	if (env && env[0] && realpath(env, cand) && is_repo_root(cand)) {
		snprintf(root, sizeof(root), "%s", cand);
		return root;
	}
	if (getcwd(cand, sizeof(cand)) && is_repo_root(cand)) {
		snprintf(root, sizeof(root), "%s", cand);
		return root;
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		/* The binary lives in a build directory one level below the repository. */
		for (int up = 1; up <= 3; up++) {
			char *slash = strrchr(exe, '/');
			if (!slash)
				break;
			*slash = '\0';
			if (is_repo_root(exe)) {
				snprintf(root, sizeof(root), "%s", exe);
				return root;
			}
		}
	}
	printf("harness: cannot find the repository (set TEST_REPO_ROOT)\n");
	abort();
}

char *test_repo_path(const char *rel)
{
	const char *root = test_repo_root();
	size_t n = strlen(root) + strlen(rel) + 2;
	char *p = malloc(n);
	if (!p)
		abort();
	snprintf(p, n, "%s/%s", root, rel);
	return p;
}

/* ---- runner ---- */

/* Under UndefinedBehaviorSanitizer a report stops the test (it then fails) instead of scrolling
 * by; UBSAN_OPTIONS still overrides this. Unused in builds without the sanitizer. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

static int entry_cmp(const void *a, const void *b)
{
	const struct test_entry *x = a, *y = b;
	int c = strcmp(x->file, y->file);
	if (c)
		return c;
	return x->line - y->line;
}

static int selected(const struct test_entry *t, int argc, char **argv, int first)
{
	int any = 0;
	char full[512];
	snprintf(full, sizeof(full), "%s:%s", t->file, t->name);
	for (int i = first; i < argc; i++) {
		any = 1;
		if (strstr(full, argv[i]))
			return 1;
	}
	return !any;
}

static void begin_test(size_t idx, const struct test_entry *t)
{
	cur_file = t->file;
	cur_name = t->name;
	cur_case[0] = '\0';
	cur_checks = cur_failures = 0;
	cur_dir_made = 0;
	cur_index = idx;
}

static void end_test(void)
{
	if (cur_dir_made)
		test_rm_rf(cur_dir);
	cur_dir_made = 0;
}

/* Runs one test; returns 1 if it passed. *checks gets its number of checks. */
static int run_one(size_t idx, const struct test_entry *t, int nofork, long *checks)
{
	begin_test(idx, t);
	if (nofork) {
		t->fn();
		end_test();
		*checks = cur_checks;
		return cur_failures == 0;
	}
	int fds[2];
	if (pipe(fds) < 0) {
		perror("pipe");
		exit(2);
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		close(fds[0]);
		t->fn();
		end_test();
		long rep[2] = { cur_checks, cur_failures };
		ssize_t w = write(fds[1], rep, sizeof(rep));
		(void)w;
		close(fds[1]);
		fflush(stdout);
		/* exit(), not _exit(): LeakSanitizer checks the test at exit. */
		exit(cur_failures ? 1 : 0);
	}
	close(fds[1]);
	long rep[2] = { 0, 0 };
	ssize_t r = read(fds[0], rep, sizeof(rep));
	close(fds[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	*checks = rep[0];
	cur_name = t->name;
	cur_case[0] = '\0';
	if (WIFSIGNALED(status)) {
		printf("  FAIL %s: %s crashed (signal %d)\n", t->file, t->name, WTERMSIG(status));
		return 0;
	}
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 2;
	if (r != (ssize_t)sizeof(rep)) {
		printf("  FAIL %s: %s stopped before its end (exit status %d; see the report above)\n",
		       t->file, t->name, code);
		return 0;
	}
	if (rep[1] == 0 && code != 0) {
		printf("  FAIL %s: %s passed its checks but exited with status %d (sanitizer report above?)\n",
		       t->file, t->name, code);
		return 0;
	}
	return rep[1] == 0;
}

int main(int argc, char **argv)
{
	/* As the router does (main.c): jansson's heap counts in the gauge of call memory. */
	jsonx_count_memory();
	int first = 1, list = 0;
	while (first < argc && argv[first][0] == '-') {
		if (strcmp(argv[first], "-v") == 0)
			verbose = 1;
		else if (strcmp(argv[first], "-l") == 0)
			list = 1;
		else {
			fprintf(stderr, "usage: %s [-v] [-l] [SUBSTRING...]\n", argv[0]);
			return 2;
		}
		first++;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	qsort(registry, n_registry, sizeof(*registry), entry_cmp);
	if (list) {
		for (size_t i = 0; i < n_registry; i++) {
			if (selected(&registry[i], argc, argv, first))
				printf("%s:%s\n", registry[i].file, registry[i].name);
		}
		free(registry);
		return 0;
	}
	const char *tmp = getenv("TMPDIR");
	char tmpl[PATH_MAX];
	snprintf(tmpl, sizeof(tmpl), "%s/llm-router-unit.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		return 2;
	}
	if (!realpath(tmpl, base_dir)) {
		perror("realpath");
		return 2;
	}
	const char *nf = getenv("TEST_NOFORK");
	int nofork = nf && nf[0] && strcmp(nf, "0") != 0;

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	size_t run = 0, failed = 0;
	long checks = 0;
	const char **failed_names = calloc(n_registry ? n_registry : 1, sizeof(char *));
	const char **failed_files = calloc(n_registry ? n_registry : 1, sizeof(char *));
	for (size_t i = 0; i < n_registry; i++) {
		const struct test_entry *t = &registry[i];
		if (!selected(t, argc, argv, first))
			continue;
		if (verbose)
			printf("RUN  %s:%s\n", t->file, t->name);
		long c = 0;
		int ok = run_one(i, t, nofork, &c);
		run++;
		checks += c;
		if (!ok) {
			failed_files[failed] = t->file;
			failed_names[failed++] = t->name;
		} else if (verbose) {
			printf("  ok   %s (%ld checks)\n", t->name, c);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1000.0 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	test_rm_rf(base_dir);

	printf("\n%zu tests, %ld checks, %zu failed (%.0f ms)\n", run, checks, failed, ms);
	for (size_t i = 0; i < failed; i++)
		printf("  failed: %s:%s\n", failed_files[i], failed_names[i]);
	free(failed_names);
	free(failed_files);
	free(registry);
	return failed ? 1 : 0;
}
