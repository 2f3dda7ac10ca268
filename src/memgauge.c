/* memgauge.c - the process-wide gauge of the memory calls in flight hold (see memgauge.h).
 *
 * State: the count, the cap and the refusal count are process-wide atomics; a charge that may be
 * refused adds to the count with a compare-and-swap, so that concurrent charges never take it
 * past the cap together. Whether a thread serves calls, its refusal flag and its parse
 * reservation are thread-local. The count may stand above the cap (charges that are never
 * refused); a refusable charge then fails until enough is released.
 */
#include "memgauge.h"

#include <stdatomic.h>
#include <stdint.h>

#include "log.h"
#include "util.h"

static atomic_size_t held;
static atomic_size_t cap = (size_t)MEMGAUGE_DEFAULT_MB << 20;
static atomic_ulong refusals;
static _Atomic int64_t next_warn_us;     /* a refusal may be logged from then on */

static _Thread_local int call_thread;
static _Thread_local int refused;
static _Thread_local size_t reserve;     /* what is left of this thread's parse reservation */

void memgauge_set_cap(size_t bytes)
{
	atomic_store(&cap, bytes);
}

size_t memgauge_cap(void)
{
	return atomic_load(&cap);
}

size_t memgauge_held(void)
{
	return atomic_load(&held);
}

unsigned long memgauge_refusals(void)
{
	return atomic_load(&refusals);
}

void memgauge_clear(void)
{
	call_thread = 1;
	refused = 0;
}

int memgauge_refused(void)
{
	return refused;
}

int memgauge_on_call_thread(void)
{
	return call_thread;
}

static void refuse(size_t n, size_t now_held, size_t limit)
{
	refused = 1;
	unsigned long total = atomic_fetch_add(&refusals, 1) + 1;
	int64_t now = clock_mono_us();
	int64_t next = atomic_load(&next_warn_us);
	if (now < next ||
	    !atomic_compare_exchange_strong(&next_warn_us, &next, now + MEMGAUGE_WARN_EVERY_S * 1000000LL))
		return;
	log_warn(NULL, "calls in flight hold %zu bytes, at the limit of server.call_memory_mb (%zu MB): "
		 "a growth of %zu bytes was refused and its call answered busy or failed (%lu refused "
		 "since start)", now_held, limit >> 20, n, total);
}

int memgauge_charge(size_t n, int may_refuse)
{
	if (reserve) {
		size_t take = n < reserve ? n : reserve;
		reserve -= take;
		n -= take;
	}
	if (!n)
		return 0;
	if (!may_refuse || !call_thread) {
		atomic_fetch_add(&held, n);
		return 0;
	}
	size_t limit = atomic_load(&cap);
	size_t cur = atomic_load(&held);
	do {
		if (cur > limit || n > limit - cur) {
			refuse(n, cur, limit);
			return -1;
		}
	} while (!atomic_compare_exchange_weak(&held, &cur, cur + n));
	return 0;
}

void memgauge_release(size_t n)
{
	if (n)
		atomic_fetch_sub(&held, n);
}

int memgauge_parse_begin(size_t n)
{
	memgauge_parse_end();
	if (!call_thread)
		return 0;
	/* A small parse (a stream event, tool arguments) is never refused: the calls in flight go on
	 * to their end and release what they hold. */
	if (memgauge_charge(n, n > MEMGAUGE_SMALL_BYTES) < 0)
		return -1;
	reserve = n;
	return 0;
}

void memgauge_parse_end(void)
{
	memgauge_release(reserve);
	reserve = 0;
}
