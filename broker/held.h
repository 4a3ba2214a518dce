/*
 * held.h — fetches that wait (long polls) and the fetch resend cache.
 *
 * A fetch that finds nothing and may wait is held here, off the turn, until
 * a delivery of its subscription becomes ready (the scheduler's on_ready
 * hook marks the subscription), its first delayed delivery comes due, or
 * its wait runs out. A fetch on a paused subscription waits the same way
 * (only a resume, which marks the subscription ready, wakes it; if its
 * wait runs out the empty reply says paused). Each turn serves the held fetches that may have work
 * inside the turn's transaction (held_serve); after the commit the served
 * and timed-out ones are answered (held_finish).
 *
 * An await (a completion receipt, handlers_await_fill) that is not
 * complete is held the same way: the scheduler's on_done hook marks its
 * event when one of its deliveries is acked or dead-lettered (or purged,
 * or unsubscribed), and the next turn looks again inside its transaction
 * (held_serve); at its deadline it is answered TIMED_OUT with each
 * subscription's state. Held awaits count against max_held_fetches apart
 * from the fetches. A broker that stops drops them unanswered: the client
 * library resends the same request to the next broker, which evaluates it
 * afresh (the wait starts again there).
 *
 * The resend cache keeps the last fetch reply per consumer (one slot per
 * hash of the consumer name): a fetch resent after a lost reply (by the
 * client library, or by an HTTP client with the same fetch_seq) gets the
 * same leases back instead of new ones.
 *
 * Ownership: the holds own their copies of names and cached reply bytes;
 * a held fetch owns its pump control header until it is answered or
 * dropped. Threads: the store thread only.
 */
#ifndef HANDOFF_BROKER_HELD_H
#define HANDOFF_BROKER_HELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "store.h"

#define FETCH_CACHE_SLOTS     1024
#define FETCH_CACHE_MAX_BYTES (256 * 1024)
#define READY_SLOTS	      4096

struct broker;

struct held_fetch {
	void *ctrl; /* the waiting client's pump header */
	char *sub;
	char *consumer;
	uint64_t seq; /* the client's fetch_seq */
	uint32_t sub_id;
	uint32_t max;
	uint32_t max_bytes;
	uint64_t deadline;   /* answer empty then */
	uint64_t next_check; /* first delayed delivery due */
	bool paused;	     /* its subscription was paused at the last look */
	Reply *reply;	     /* set when served in this turn */
};

struct held_await {
	void *ctrl; /* the waiting client's pump header */
	uint64_t event;
	char **subs; /* the subscriptions named; none: all */
	size_t n_subs;
	uint64_t deadline;   /* answer TIMED_OUT then */
	uint64_t next_check; /* look again then (UINT64_MAX: when marked) */
	Reply *reply;	     /* set when served in this turn */
};

struct cached_fetch {
	char *consumer;
	char *sub;
	uint64_t seq;
	void *bytes; /* the packed reply */
	size_t len;
};

struct holds {
	struct held_fetch *held;
	size_t n_held, cap_held;
	struct cached_fetch cache[FETCH_CACHE_SLOTS];
	/* subscriptions (by id, hashed) that got a ready delivery since the
	 * last commit: their held fetches are served this turn */
	uint8_t ready[READY_SLOTS / 8];
	struct held_await *awaits;
	size_t n_awaits, cap_awaits;
	/* events (hashed) that a delivery of was acked or dead-lettered
	 * since the last commit: their held awaits look again this turn */
	uint8_t done[READY_SLOTS / 8];
	/* this turn's held_serve has looked at the awaits: a delivery done
	 * later in it (background work) has its awaits look next turn */
	bool awaits_served;
};

/* Free everything; held fetches are dropped through b's pump unanswered. */
void holds_fini(struct broker *b);

/* The scheduler's on_ready hook: sub has a ready delivery. */
void held_mark_ready(struct holds *h, uint32_t sub);
/* The scheduler's on_done hook: a delivery of event is acked or never
 * will be. */
void held_mark_done(struct holds *h, uint64_t event);
/* After a commit: no subscription (and no event) is marked any more. */
void held_clear_ready(struct holds *h);

/* Hold the fetch of request req (from ctrl) on subscription sub_id until
 * deadline now + wait; next_check is its first delayed delivery's due time
 * (UINT64_MAX: none). The hold takes ctrl over. 0 or ENOMEM. */
int held_add(struct holds *h, const Handoff__Wire__FetchRequest *f, void *ctrl,
	     uint32_t sub_id, uint64_t next_check, bool paused, uint64_t now);

/* Hold the await q (from ctrl) until now + its timeout. The hold takes
 * ctrl over. 0 or ENOMEM. */
int held_await_add(struct holds *h, const Handoff__Wire__AwaitRequest *q,
		   void *ctrl, uint64_t now);

/* A resent fetch that is already held: the hold answers the newest copy
 * (the old header is dropped). true when taken over (ctrl now held). */
bool held_takeover(struct broker *b, const Handoff__Wire__FetchRequest *f,
		   void *ctrl);

/* Inside the turn's transaction: lease deliveries to the held fetches
 * that may have some, and answer the held awaits whose event was marked
 * (if complete) or whose deadline came. 0 or a store error (abort the
 * transaction). */
int held_serve(struct broker *b, struct txn *t);

/* After the turn: answer the fetches served by a committed turn and those
 * whose wait ran out by now, and the awaits served by a committed turn
 * (or, when no commit could look at one whose time is up, INTERNAL); the
 * others wait on. At shutdown (now UINT64_MAX, not committed) every held
 * fetch gets its empty reply and the awaits are left to holds_fini. */
void held_finish(struct broker *b, uint64_t now, bool committed);

/* The earliest time a held fetch or await needs a turn (UINT64_MAX: none). */
uint64_t held_next_wake(const struct holds *h);

/* The resend cache. put copies bytes (over FETCH_CACHE_MAX_BYTES: not
 * kept; out of memory: not kept). get returns the entry or NULL. */
void held_cache_put(struct holds *h, const char *consumer, const char *sub,
		    uint64_t seq, const void *bytes, size_t len);
const struct cached_fetch *held_cache_get(const struct holds *h,
					  const char *consumer, const char *sub,
					  uint64_t seq);

#endif
