/*
 * store_internal.h — what store.c shares with store_upgrade.c, the other
 * file of the store module; nothing outside the store includes it.
 *
 * Errors: 0, an errno value (store_fsync_path) or an LMDB code
 * (store_env_new). Threads: as store.h.
 */
#ifndef HANDOFF_BROKER_STORE_INTERNAL_H
#define HANDOFF_BROKER_STORE_INTERNAL_H

#include <lmdb.h>
#include <stdint.h>

/* Open path with flags (O_RDONLY, | O_DIRECTORY for a folder), fsync it,
 * close it. */
int store_fsync_path(const char *path, int flags);

/* A new LMDB environment sized for this format's databases and map_size,
 * not yet opened; *env is NULL on failure. */
int store_env_new(MDB_env **env, uint64_t map_size);

#endif
