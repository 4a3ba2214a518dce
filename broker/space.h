/*
 * space.h — storage headroom: when publishes must be refused so that acks,
 * nacks, dead-lettering and purges always find room.
 *
 * Two limits can fill the store: LMDB's map (map_size, fixed while the
 * broker runs: the map never grows at runtime) and the disk under the data
 * file. The broker keeps `headroom` bytes free for the work that drains
 * the backlog:
 *   - map: publishes are refused while fewer than headroom bytes of the map
 *     are free (pages never used plus pages on LMDB's free list);
 *   - disk: the data file is kept allocated (posix_fallocate) to headroom
 *     bytes past its last used page, so draining writes land on blocks the
 *     file already owns. When the disk cannot give that much, publishes are
 *     refused while the file's own free space is under the headroom, and
 *     the reservation is retried every second.
 * Freed space (a drained backlog, a purge, an operator freeing disk) lets
 * publishes in again without a restart.
 *
 * Thread-safety: used by the store thread only, between transactions.
 */
#ifndef HANDOFF_BROKER_SPACE_H
#define HANDOFF_BROKER_SPACE_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

struct space {
	uint64_t headroom;	  /* bytes */
	uint64_t reserved;	  /* bytes of the file known to be allocated */
	uint64_t next_reserve_ms; /* after a failed reservation */
	int reserve_error;	  /* errno of the last failed reservation */
	bool refusing;		  /* publishes are refused */
	char why[200];		  /* the reason given to refused publishers */
	uint64_t capacity;	  /* as of the last update: the map, or what
				   * the disk let the file have (bytes) */
	uint64_t free_bytes;	  /* of capacity; the free list is counted
				   * only when nearly full */
};

/* headroom 0 picks map_size / 64 within [1 MiB, 64 MiB]. */
void space_init(struct space *s, uint64_t headroom, uint64_t map_size);

/* Re-check the space (cheap unless nearly full) and reserve disk. Call
 * between turns, with no transaction of this thread open. */
void space_update(struct space *s, struct store *st, uint64_t now_ms);

/* Whether publishes are refused now; *why says why (owned by s). */
bool space_refusing(const struct space *s, const char **why);

#endif
