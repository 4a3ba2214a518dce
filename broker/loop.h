/*
 * loop.h — running handoffd: start-up, its two threads, shutdown.
 *
 * loop_run() opens the store, binds the request socket and starts two
 * threads (pump.h):
 *   - the network thread makes every nanomsg call: it receives requests
 *     into the pump's inbox and sends the replies posted to its outbox;
 *   - the store thread owns the broker's state (broker.h) and runs one
 *     turn after another (turn.h): receive, apply in one transaction,
 *     commit, reply. No reply is sent for work that was not committed.
 * While one turn's commit syncs to disk, the next turn's requests are
 * already being received.
 */
#ifndef HANDOFF_BROKER_LOOP_H
#define HANDOFF_BROKER_LOOP_H

#include "config.h"

/* Run until SIGTERM/SIGINT. Returns the process exit status: 0 after a
 * clean stop, 1 when start-up failed, 3 (TURN_STORE_UNUSABLE) when the
 * store became unusable (failed write or sync: LMDB refuses further
 * writes; a supervisor restarts us). */
int loop_run(const struct config *cfg);

#endif
