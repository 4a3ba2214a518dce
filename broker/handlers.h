/*
 * handlers.h — one function per request type: validate the decoded request,
 * apply it to the store inside the turn's write transaction, and fill the
 * reply. Nothing here commits or sends: the turn (turn.h) commits it whole,
 * then sends every reply (group commit).
 *
 * Errors: a handler returns 0 with the outcome in reply->status, or a store
 * error that forces the turn to abort the transaction (the turn then
 * retries each request of the turn alone, so one request's failure, e.g. a
 * full store, cannot fail the others).
 */
#ifndef HANDOFF_BROKER_HANDLERS_H
#define HANDOFF_BROKER_HANDLERS_H

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"
#include "config.h"
#include "leases.h"
#include "metrics.h"
#include "store.h"
#include "telemetry.h"

struct push;
struct backup;

struct handler_env {
	const struct config *cfg;
	struct store *st;
	struct metrics *metrics;
	uint64_t started_ms;
	uint64_t start_mark_ms; /* the store's clock mark at the start */
	uint64_t held_fetches;
	uint64_t held_awaits;  /* awaits held (held.h), against the same cap */
	bool unsubscribed;     /* set when a request unsubscribed: the turn
				 * then drops that subscription's deliveries */
	bool storage_refusing; /* publishes refused: headroom reached */
	const char *storage_why;
	uint64_t storage_limit_bytes;	 /* space.h: the capacity */
	uint64_t storage_headroom_bytes; /* what publishes may still use */
	const struct telemetry *tele;	 /* copied into stats replies */
	struct lease_counts *leases;	 /* open leases per consumer */
	const struct config_key *caller; /* who sent the request being
				 * applied (NULL: access control off) */
	/* push delivery (push.h), when its thread runs; NULL: none. Called
	 * through these so the handlers do not link the push thread. */
	struct push *push;
	/* hot backups (backup.h); NULL: refused as off */
	struct backup *backup;
	void (*push_changed)(struct push *p); /* subscriptions came or went */
	void (*push_endpoint)(struct push *p, const char *sub, char *state,
			      size_t state_len, char *error, size_t error_len);
};

/*
 * What handlers_apply tells of a fetch that found nothing and may wait:
 * the turn holds it (held.h) on subscription sub_id and looks again at
 * next_check, the subscription's first delayed delivery's due time
 * (UINT64_MAX: none), or as soon as a delivery of it becomes ready.
 */
struct fetch_hold {
	bool hold;
	bool await;  /* not a fetch but an await (the request's own fields
		     * say what it waits for; the rest is unused) */
	bool paused; /* the subscription is paused: say so if it times out */
	uint32_t sub_id;
	uint64_t next_check;
};

/*
 * Apply req. For a fetch that found nothing and may wait, hold->hold is set
 * and the reply is left for the turn to complete later
 * (handlers_fetch_fill).
 */
int handlers_apply(struct handler_env *env, struct txn *t, const Request *req,
		   Reply *reply, struct fetch_hold *hold);

/* Lease up to max deliveries of subscription sub into reply (a fetch
 * reply body is attached). *n gets the number leased; NOT_FOUND status when
 * the subscription is gone; none and reply->fetch->paused when it is
 * paused. */
int handlers_fetch_fill(struct handler_env *env, struct txn *t, const char *sub,
			uint32_t max, uint32_t max_bytes, const char *consumer,
			Reply *reply, size_t *n);

/*
 * Evaluate the await q (a completion receipt) inside t: *complete is set
 * when reply is its answer (every awaited subscription acked it, one will
 * never, or an error status; with final, the timeout: TIMED_OUT with each
 * one's state), else cleared and the await waits on (the reply is then
 * to be ignored). held: q is a held await looked at again (its names were
 * checked when it came: one that no longer names a subscription of the
 * event was deleted since, and shows as UNSUBSCRIBED).
 */
int handlers_await_fill(struct handler_env *env, struct txn *t,
			const Handoff__Wire__AwaitRequest *q, bool held,
			bool final, Reply *reply, bool *complete);

/* Set reply's status and a printf-style message (in the txn arena). */
void handlers_status(struct arena *a, Reply *reply, int status, const char *fmt,
		     ...) __attribute__((format(printf, 4, 5)));

#endif
