/*
 * loop.h — the broker's single event loop. It owns all state: the store,
 * the request socket, the held long polls. Each turn it
 *   1. receives every waiting request (up to a cap) and decodes it,
 *   2. applies them all, then expired leases, held fetches and cleanup, in
 *      ONE write transaction,
 *   3. commits once (durable: two syncs for the whole turn),
 *   4. only then sends the replies.
 * No reply is sent for work that was not committed.
 */
#ifndef HANDOFF_BROKER_LOOP_H
#define HANDOFF_BROKER_LOOP_H

#include "config.h"

/* Run until SIGTERM/SIGINT. Returns the process exit status: 0 after a
 * clean stop, 1 when start-up failed, 3 when the store became unusable
 * (failed sync: LMDB refuses further writes; a supervisor restarts us). */
int loop_run(const struct config *cfg);

#endif
