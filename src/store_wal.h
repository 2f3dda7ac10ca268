/* store_wal.h - the WAL checkpointer thread of a process whose writes go through one connection
 * (logwriter.h). That connection (store_open with checkpoint_pages > 0) never checkpoints on the
 * request path: its commits wake this thread, which runs PASSIVE checkpoints on a connection of its
 * own, and a RESTART checkpoint only once the WAL has passed 16 x checkpoint_pages.
 */
#ifndef ROUTER_STORE_WAL_H
#define ROUTER_STORE_WAL_H

#include "store_opts.h"

/* Starts the checkpointer thread for the database o->path (nothing when o->checkpoint_pages is
 * 0). Returns 0 or -1. */
int store_checkpointer_start(const struct store_opts *o);
/* Stops it (nothing when it does not run). */
void store_checkpointer_stop(void);

#endif
