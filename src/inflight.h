/* inflight.h - requests in flight, counted across every responder process of one database.
 *
 * Each process owns a slot in a small shared file beside the database (<db>.inflight, mapped
 * MAP_SHARED): its pid and its count, changed with atomic operations. The sum over the slots of
 * live processes is the gateway's figure; a process that died leaves a slot that is skipped, and
 * taken over by the next process that needs one. Without the file (a directory the process cannot
 * write) the count is the process's own.
 */
#ifndef ROUTER_INFLIGHT_H
#define ROUTER_INFLIGHT_H

/* Maps the file for db_path (once per process; later calls do nothing). */
void inflight_init(const char *db_path);
/* A request starts, ends. */
void inflight_enter(void);
void inflight_leave(void);
/* Requests in flight in every live process. */
long inflight_total(void);

#endif
