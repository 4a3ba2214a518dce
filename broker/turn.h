/*
 * turn.h — one turn of the store thread, the broker's group commit:
 *
 *   1. receive   take the waiting requests (up to a cap), decode and
 *                authenticate them, share the turn between subscriptions
 *                (inbox.h, share.h);
 *   2. apply     apply them all, then expired leases, held fetches and
 *                background work, in ONE write transaction (handlers.h,
 *                background.h, held.h);
 *   3. commit    once (durable: two syncs for the whole turn); when the
 *                group fails, each request is applied alone so one cannot
 *                fail the others;
 *   4. reply     only then send the replies (replies.h).
 * No reply is sent for work that was not committed.
 *
 * Threads: the store thread only.
 */
#ifndef HANDOFF_BROKER_TURN_H
#define HANDOFF_BROKER_TURN_H

#include <stdbool.h>

struct broker;

/* Exit status when the store became unusable (failed write or sync: LMDB
 * refuses further writes; a supervisor restarts the broker). */
#define TURN_STORE_UNUSABLE 3

/* Run one turn. *stopping is set when a stop signal came. 0 to go on, or
 * TURN_STORE_UNUSABLE (logged) to exit without retrying the failed write. */
int turn_run(struct broker *b, bool *stopping);

#endif
