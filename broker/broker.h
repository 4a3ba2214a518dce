/*
 * broker.h — the state of one running broker, and its set-up.
 *
 * Every part lives in the module that works on it; this struct only holds
 * them together so that one turn (turn.h) can reach them all:
 *
 *   st, arena           the store and this turn's scratch memory
 *   inbox               this turn's requests (inbox.h)
 *   holds               held long polls and the fetch resend cache (held.h)
 *   bg                  background work: lease recovery and expiry,
 *                       retention, unsubscribe clean-up (background.h)
 *   sched               what the scheduler needs besides the transaction
 *   env                 what the handlers need besides the transaction
 *   pump                the mailbox to the network thread (pump.h)
 *   backup              a hot backup's thread and state (backup.h)
 *   tele                process counters and histograms (telemetry.h)
 *
 * What is kept in memory is only what can be lost without harm: held long
 * polls (the client resends), the last fetch reply per consumer, rate
 * samples, lease counts and wake-up hints. Everything that matters is in
 * LMDB.
 *
 * Threads: the store thread owns all of it once loop_run() starts it; the
 * network thread touches only the pump (under its mutex). The push thread
 * (push.h, started by loop.c; env.push points at it) posts requests into
 * the pump like the HTTP thread and owns nothing here.
 */
#ifndef HANDOFF_BROKER_BROKER_H
#define HANDOFF_BROKER_BROKER_H

#include <stdbool.h>
#include <stdint.h>

#include "arena.h"
#include "auth.h"
#include "backup.h"
#include "background.h"
#include "config.h"
#include "handlers.h"
#include "held.h"
#include "inbox.h"
#include "leases.h"
#include "metrics.h"
#include "pump.h"
#include "scheduler.h"
#include "space.h"
#include "store.h"
#include "telemetry.h"
#include "transport.h"

struct broker {
	const struct config *cfg;
	struct store st;
	struct transport tr;
	struct pump pump;
	struct arena arena;
	struct metrics metrics;
	struct telemetry tele; /* process counters for /metrics */
	struct auth auth;
	struct space space;
	struct lease_counts leases;
	struct sched sched;
	struct handler_env env;
	struct inbox inbox;
	struct holds holds;
	struct background bg;
	struct backup backup; /* the hot backup thread (backup.h) */
	uint64_t started_ms;
	/* the store's clock mark at this start: the broker time earlier runs
	 * reached (clock_window_over) */
	uint64_t start_mark_ms;
	int sigfd;
	int exit_status;
};

/*
 * Set up the in-memory state of a zeroed broker whose store b->st is open
 * (or about to be): everything but the store, the transport and the pump.
 * started_ms is the broker's start; leases granted before it are
 * recovered. b->st.clock_mark_ms must hold the store's clock mark as read
 * at this start (store_read_clock_mark), before any commit.
 * 0 or ENOMEM (then broker_fini() cleans up).
 */
int broker_init(struct broker *b, const struct config *cfg,
		uint64_t started_ms);

/* Free the in-memory state. Held fetches and put-off requests are dropped
 * without a reply through the pump (their clients resend); the store, the
 * transport and the pump are the caller's. */
void broker_fini(struct broker *b);

#endif
