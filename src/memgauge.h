/* memgauge.h - one process-wide gauge of the memory that calls in flight hold, under a cap
 * (server.call_memory_mb).
 *
 * Each call is bounded on its own (README "Memory per call"); the gauge bounds them together, so
 * that a responder running hundreds of worker threads cannot grow by hundreds of times the worst
 * case of one call. It counts bytes in one atomic counter: the capacity of every struct buf (buf.c
 * charges each growth and releases it when the buffer is freed or its content stolen) and the
 * heap jansson takes on a thread that serves calls (jsonx_count_memory), until it is freed. What
 * libcurl, libfcgi and SQLite allocate is not counted.
 *
 * A charge is refused only where the caller has a failure path, and only on a thread that serves
 * calls (one that called memgauge_clear): a buffer with a limit growing past MEMGAUGE_SMALL_BYTES
 * (buf.c), and a JSON parse (jsonx_loadb), which reserves before jansson runs what the parse may
 * take. Every other charge is taken even above the cap: small buffers, buffers without a limit
 * and jansson's own allocations never fail because of the gauge. A refusal sets the thread's
 * memgauge_refused(), counts one more in memgauge_refusals() and logs a warning (at most one every
 * MEMGAUGE_WARN_EVERY_S seconds per process).
 */
#ifndef ROUTER_MEMGAUGE_H
#define ROUTER_MEMGAUGE_H

#include <stddef.h>

/* A buffer whose capacity stays at or below this is never refused. */
#define MEMGAUGE_SMALL_BYTES ((size_t)64 << 10)
/* The cap until a configuration sets one (server.call_memory_mb's default). */
#define MEMGAUGE_DEFAULT_MB 256
#define MEMGAUGE_WARN_EVERY_S 10

/* The cap in bytes; set at every configuration load and reload, read by every charge. */
void memgauge_set_cap(size_t bytes);
size_t memgauge_cap(void);
/* Bytes counted now, process-wide. */
size_t memgauge_held(void);
/* Charges refused since the process started, process-wide. */
unsigned long memgauge_refusals(void);

/* A call starts on this thread: forgets its earlier refusals, and from now on charges made on this
 * thread may be refused (threads that never call it - the database writer, the transfer engine,
 * the command-line tool - are never refused). */
void memgauge_clear(void);
/* Whether a charge was refused on this thread since its last memgauge_clear. */
int memgauge_refused(void);
/* Whether this thread serves calls (memgauge_clear was called on it). */
int memgauge_on_call_thread(void);

/* Counts n more bytes. With may_refuse, on a thread that serves calls, a charge that would take
 * the count past the cap is refused instead: returns -1 and counts nothing. Returns 0 otherwise. */
int memgauge_charge(size_t n, int may_refuse);
/* Counts n bytes fewer (each release matches an earlier charge). */
void memgauge_release(size_t n);

/* A guarded parse on this thread: reserves n bytes (refusable as memgauge_charge(n, 1) when n is
 * over MEMGAUGE_SMALL_BYTES); the charges made on this thread until memgauge_parse_end draw on the
 * reservation first, and memgauge_parse_end releases what is left of it. Returns 0, or -1 when
 * refused. On a thread that does not serve calls it reserves nothing and returns 0. */
int memgauge_parse_begin(size_t n);
void memgauge_parse_end(void);

#endif
