/* dbdown.c - the process's "database down" state and the marker file of plain CGI (dbdown.h).
 */
#include "dbdown.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static int down;          /* atomic */
static int marker_seen;   /* a marker existed, or this process wrote one (atomic) */
static char *marker;      /* set once before threads start */

void dbdown_set_marker(const char *db_path)
{
	free(marker);
	marker = db_path ? xasprintf("%s.down", db_path) : NULL;
}

int dbdown_is_down(void)
{
	return __atomic_load_n(&down, __ATOMIC_ACQUIRE);
}

void dbdown_failed(const char *why)
{
	if (!__atomic_exchange_n(&down, 1, __ATOMIC_ACQ_REL))
		log_error(NULL, "the database is down (%s): request-log rows go to the fallback file and "
			  "budgets follow budget.when_database_down until it answers (tried every %d ms)",
			  why && *why ? why : "a write failed", DBDOWN_PROBE_MS);
	if (!marker)
		return;
	/* Written anew each time: its mtime says when the database was last found down. */
	int fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd >= 0) {
		char line[32];
		int n = snprintf(line, sizeof(line), "%lld\n", (long long)clock_wall_ms());
		if (write(fd, line, (size_t)n) < 0) {
			/* A read-only or full directory: CGI processes then each try with the short timeout. */
		}
		close(fd);
		__atomic_store_n(&marker_seen, 1, __ATOMIC_RELEASE);
	}
}

void dbdown_up(void)
{
	if (__atomic_exchange_n(&down, 0, __ATOMIC_ACQ_REL))
		log_info(NULL, "the database answers again: request-log rows and budgets use it");
	if (marker && __atomic_exchange_n(&marker_seen, 0, __ATOMIC_ACQ_REL))
		unlink(marker);
}

int dbdown_marker_check(void)
{
	struct stat sb;
	if (!marker || stat(marker, &sb) < 0)
		return 0;
	__atomic_store_n(&marker_seen, 1, __ATOMIC_RELEASE);
	return 1;
}
