/* harness.h - a tiny unit-test harness: self-registering tests, CHECK macros, a summary.
 *
 * A test is a function declared with TEST(name) in any .c file of tests/unit; a constructor adds it
 * to the registry, and harness.c's main() runs the registry in file and line order. Each test runs
 * in a child process by default, so a crash, an abort or a sanitizer report fails that test alone
 * and the other tests still run (set TEST_NOFORK=1 to run everything in one process, e.g. under a
 * debugger). Usage: test_unit [-v] [-l] [SUBSTRING...] runs the tests whose "file:name" contains
 * one of the substrings (all by default); -l lists them; -v prints every test as it runs.
 *
 * CHECK_* macros record a failure with file:line, the expressions and their values, and go on;
 * REQUIRE_* do the same and then return from the test (for preconditions such as a non-NULL
 * pointer). Table-driven tests call test_case("...") for each row so that a failure names the row.
 * The exit status is 0 when every test passed and 1 otherwise.
 */
#ifndef ROUTER_TEST_HARNESS_H
#define ROUTER_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>

typedef void (*test_fn)(void);

void test_register(const char *file, int line, const char *name, test_fn fn);

#define TEST(name)                                                                             \
	static void name(void);                                                                \
	__attribute__((constructor)) static void name##_register(void)                        \
	{                                                                                      \
		test_register(__FILE__, __LINE__, #name, name);                                \
	}                                                                                      \
	static void name(void)

/* Labels the following failures (a table row); printf-style. test_case(NULL) clears it. */
void test_case(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Each returns 1 when the check passed, 0 after recording a failure. */
int test_check(int ok, const char *file, int line, const char *expr);
int test_check_int(long long a, long long b, const char *op, const char *file, int line,
		   const char *ea, const char *eb);
int test_check_str(const char *a, const char *b, const char *file, int line, const char *ea,
		   const char *eb);
int test_check_mem(const void *a, size_t alen, const void *b, size_t blen, const char *file,
		   int line, const char *ea, const char *eb);
int test_check_contains(const char *hay, const char *needle, int want, const char *file, int line,
			const char *eh, const char *en);
int test_check_dbl(double a, double b, double eps, const char *file, int line, const char *ea,
		   const char *eb);

#define CHECK(c) test_check(!!(c), __FILE__, __LINE__, #c)
#define CHECK_INT_EQ(a, b) test_check_int((long long)(a), (long long)(b), "==", __FILE__, __LINE__, #a, #b)
#define CHECK_INT_NE(a, b) test_check_int((long long)(a), (long long)(b), "!=", __FILE__, __LINE__, #a, #b)
#define CHECK_INT_LT(a, b) test_check_int((long long)(a), (long long)(b), "<", __FILE__, __LINE__, #a, #b)
#define CHECK_INT_LE(a, b) test_check_int((long long)(a), (long long)(b), "<=", __FILE__, __LINE__, #a, #b)
#define CHECK_INT_GE(a, b) test_check_int((long long)(a), (long long)(b), ">=", __FILE__, __LINE__, #a, #b)
#define CHECK_STR_EQ(a, b) test_check_str((a), (b), __FILE__, __LINE__, #a, #b)
#define CHECK_MEM_EQ(a, alen, b, blen) test_check_mem((a), (alen), (b), (blen), __FILE__, __LINE__, #a, #b)
#define CHECK_CONTAINS(hay, needle) test_check_contains((hay), (needle), 1, __FILE__, __LINE__, #hay, #needle)
#define CHECK_NOT_CONTAINS(hay, needle) test_check_contains((hay), (needle), 0, __FILE__, __LINE__, #hay, #needle)
#define CHECK_DBL_EQ(a, b) test_check_dbl((a), (b), 1e-9, __FILE__, __LINE__, #a, #b)
#define CHECK_NULL(p) test_check((p) == NULL, __FILE__, __LINE__, #p " == NULL")
#define CHECK_NOT_NULL(p) test_check((p) != NULL, __FILE__, __LINE__, #p " != NULL")

#define REQUIRE(c)                                                                             \
	do {                                                                                   \
		if (!CHECK(c))                                                                 \
			return;                                                                \
	} while (0)
#define REQUIRE_NOT_NULL(p)                                                                    \
	do {                                                                                   \
		if (!CHECK_NOT_NULL(p))                                                        \
			return;                                                                \
	} while (0)
#define REQUIRE_INT_EQ(a, b)                                                                   \
	do {                                                                                   \
		if (!CHECK_INT_EQ(a, b))                                                       \
			return;                                                                \
	} while (0)
#define REQUIRE_INT_GE(a, b)                                                                   \
	do {                                                                                   \
		if (!CHECK_INT_GE(a, b))                                                       \
			return;                                                                \
	} while (0)

/* ---- fixtures ---- */

/* A fresh private directory (realpath'd) for the current test; removed with its content after
 * the test. Returns the same directory on every call within one test. */
const char *test_tmpdir(void);
/* malloc'd "<test_tmpdir()>/<name>". */
char *test_path(const char *name);
/* Writes len bytes (or strlen(data) if len is (size_t)-1) to path; aborts the test run on I/O
 * error. */
void test_write_file(const char *path, const char *data, size_t len);
/* Reads a whole file (malloc'd, NUL-terminated, length in *len if len is not NULL), or NULL. */
char *test_read_file(const char *path, size_t *len);
/* Removes a file or a directory tree; missing paths are fine. */
void test_rm_rf(const char *path);
/* The repository's top level (the directory holding conf/ and src/), found from the current
 * directory or the test binary's location; aborts when it cannot be found. */
const char *test_repo_root(void);
/* malloc'd "<test_repo_root()>/<rel>". */
char *test_repo_path(const char *rel);

#endif
