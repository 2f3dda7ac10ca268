/* dbdown.h - whether this process knows the database to be down, so that nobody waits on it.
 *
 * The first write that fails (a lock held past storage.busy_timeout_ms, a read-only or vanished
 * file, a full disk, garbage in its place) marks the database down: from then on request-log rows
 * go straight to the JSONL fallback and budget reservations follow budget.when_database_down,
 * with no wait at all, until a probe (a BEGIN IMMEDIATE with a short timeout, about once a
 * second: the writer thread of a FastCGI responder) finds it answering again. So a fault costs
 * one busy timeout, once per process.
 *
 * A plain CGI process lives for one request and cannot learn this by itself: the process that
 * finds the database down also writes a marker file beside the database file (db_path + ".down";
 * its mtime says when), and one whose write succeeds removes it. A CGI process that finds the
 * marker at its start opens the database with a busy timeout of DBDOWN_CGI_TIMEOUT_MS instead of
 * storage.busy_timeout_ms: its first write is the probe, and once that fails the process treats
 * the database as down like any other.
 *
 * A leaf above util and log only.
 */
#ifndef ROUTER_DBDOWN_H
#define ROUTER_DBDOWN_H

/* How often a database known to be down is tried again, and how long such a try waits. */
#define DBDOWN_PROBE_MS 1000
#define DBDOWN_PROBE_TIMEOUT_MS 100
/* How long the writes of a plain CGI process wait for the lock while the marker is there. */
#define DBDOWN_CGI_TIMEOUT_MS 50

/* The marker file beside the database at db_path (NULL: none). Call before any thread starts. */
void dbdown_set_marker(const char *db_path);
/* Whether the database is known to be down (no write should wait on it). */
int dbdown_is_down(void);
/* A write failed: the database is down (logged on the change, with why), and the marker is
 * refreshed. */
void dbdown_failed(const char *why);
/* A write or a probe succeeded: the database is up again (logged on the change); the marker
 * goes. */
void dbdown_up(void);
/* Plain CGI at start: 1 when the marker is there (another process found the database down and
 * nobody found it answering since), else 0. */
int dbdown_marker_check(void);

#endif
