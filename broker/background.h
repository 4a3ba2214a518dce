/*
 * background.h — the work a turn does besides its requests, each a bounded
 * slice per turn so live traffic never waits long behind it:
 *
 *   recovery    leases from before this start become ready again
 *               (RECOVER_PER_TURN a turn, walking the lease index once);
 *               while it runs, leases are not expired instead
 *   expiry      leases past their deadline (MAX_TURN_EXPIRIES a turn)
 *   retention   expired idempotency records, command records and finished
 *               events' traces (MAX_TURN_CLEANUPS a turn, fewer when the
 *               turn has requests)
 *   unsubscribe a deleted subscription's deliveries are dropped, then the
 *               subscription itself
 *   rates       per-minute rate samples (metrics.h), every few seconds
 *   readers     reader slots of dead processes are cleared (every 5 s,
 *               between transactions)
 *
 * Progress that a turn's transaction advances (struct bg_progress) is put
 * back when the turn rolls back. Threads: the store thread only.
 */
#ifndef HANDOFF_BROKER_BACKGROUND_H
#define HANDOFF_BROKER_BACKGROUND_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

struct broker;

/* Progress kept with the transaction: saved before, restored on rollback. */
struct bg_progress {
	/* Leases from before this start are made ready again a bounded
	 * number per turn, so start-up time does not grow with them. */
	bool recovering;
	uint64_t recover_deadline; /* last lease key looked at */
	uint32_t recover_sub;
	uint64_t recover_ev;
	bool recover_begun;
	uint64_t recovered;
	bool unsubscribe_pending; /* a deleted subscription is draining */
};

struct background {
	struct bg_progress progress;
	uint64_t next_lease_ms;	 /* first lease deadline */
	uint64_t next_expiry_ms; /* first retention expiry */
	uint64_t next_sample_ms;
	uint64_t next_reader_check_ms;
	bool cleanup_more; /* retention has more due now */
};

/* A broker starting: recovery and the unsubscribe drain are pending. */
void bg_init(struct background *bg);

/* Between transactions: clear reader slots of dead processes when due. */
void bg_check_readers(struct broker *b, uint64_t now);

/* Inside the turn's transaction, each returning 0 or a store error (abort
 * the transaction). Before the requests: recover leases from before the
 * start (while recovering). After them: expire leases (unless
 * recovering); then, after held fetches are served, retention and
 * unsubscribe clean-up, and rate samples. */
int bg_recover(struct broker *b, struct txn *t);
int bg_expire(struct broker *b, struct txn *t);
int bg_clean_up(struct broker *b, struct txn *t);
int bg_sample_rates(struct broker *b, struct txn *t);

/* Whether background work is waiting to run at once. */
bool bg_busy(const struct background *bg);
/* The earliest timer of the background work (UINT64_MAX: none). */
uint64_t bg_next_wake(const struct background *bg);

#endif
