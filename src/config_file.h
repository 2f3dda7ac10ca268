/* config_file.h - reads one configuration file into a struct config (config_load's middle step).
 *
 * Private to the configuration: config_load() (config_load.c) is the entry point everyone else uses.
 */
#ifndef ROUTER_CONFIG_FILE_H
#define ROUTER_CONFIG_FILE_H

#include "buf.h"
#include "config.h"

/* Reads the file at cfg->path (its @include files relative to include_dir) into cfg: every group
 * with its defaults, the providers (their keys and base URLs from the environment), models, tiers
 * and tasks, and their cross-references. path is the name the caller gave, used in messages where
 * libconfig knows no file. Appends one "FILE:LINE: reason" line per problem to errors. Returns the
 * number of problems found, or -1 when the file cannot be read or parsed at all (one line
 * appended). cfg is left for config_free in every case. */
int config_file_read(struct config *cfg, const char *path, const char *include_dir,
		     struct buf *errors);

#endif
