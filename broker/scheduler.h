/*
 * scheduler.h — the delivery scheduler: every state change of a delivery
 * (one event for one subscription) happens here, inside the caller's write
 * transaction, together with its index entries and the subscription's
 * counters:
 *
 *   (new) -> READY -> LEASED -> ACKED                      (final)
 *                       |-> READY (nack, expiry, restart)   retry, backoff
 *                       |-> READY (release)   at once, attempt not counted
 *                       |-> LEASED (extend)   same token, new deadline
 *                       |-> READY (expiry while the subscription is paused)
 *                       |             at once, attempt not counted
 *                       '-> DEAD (attempts used up, permanent, corrupt)
 *   DEAD -> READY (replay: fresh attempt budget, history kept)
 *   DEAD -> PURGED (final);   any live state -> UNSUBSCRIBED (final)
 *
 * Only sched_ack() with the current lease's token makes a delivery ACKED.
 * When the last subscription is done with an event its payload is deleted
 * and its trace kept for the history period.
 *
 * Errors: functions return 0 or a store error (the transaction must then be
 * aborted); the outcome for the client is in *status (a wire status).
 * Every redelivery, dead-lettering, replay and purge is logged with ids.
 */
#ifndef HANDOFF_BROKER_SCHEDULER_H
#define HANDOFF_BROKER_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "handoff.pb-c.h"
#include "store.h"

typedef Handoff__Wire__Status Status;

/*
 * What the scheduler needs besides the store: handed in through the
 * transaction (txn.sched), which every sched_* function takes. Whoever
 * opens a write transaction that changes deliveries sets it; it stays the
 * caller's. The hooks may be NULL.
 */
struct sched {
	uint64_t history_ms; /* how long a finished event's trace is kept */
	/* Told of every delivery put in the ready index (so held fetches can
	 * be woken). */
	void (*on_ready)(void *ctx, uint32_t sub, uint64_t due);
	/* Told of every lease that starts (delta 1) or ends (delta -1, with
	 * the time it was granted), for the per-consumer lease limit. Called
	 * inside the transaction: the hook must undo its changes on rollback. */
	void (*on_lease)(void *ctx, const char *consumer, int delta,
			 uint64_t leased_ms);
	/* Told of every delivery of event that is acked, dead-lettered,
	 * purged or dropped by an unsubscribe (so held awaits of the event,
	 * held.h, can be woken). It may be told and the transaction still
	 * roll back: it only prompts a look. */
	void (*on_done)(void *ctx, uint64_t event);
	void *ctx; /* passed to every hook */
};

/* A new delivery of event for sub, ready at due: a log delivery (store.h),
 * so the caller has put event in the topic log (store_log_put). */
int sched_enqueue(struct txn *t, SubRecord *sub, uint64_t event, uint64_t due);
/*
 * Lease sub's delivery of event (whose ready entry is at due) to consumer.
 * *d receives the updated record (arena). If its payload fails the checksum
 * it is dead-lettered instead and *body is NULL; else *body is the payload.
 */
int sched_lease(struct txn *t, SubRecord *sub, uint64_t event, uint64_t due,
		const char *consumer, DeliveryRecord **d, EventBody **body,
		EventMeta **meta);
/* Forget the calling thread's lease tokens drawn ahead from libsodium's
 * random source, so the next are drawn afresh. For a caller that re-seeds
 * that source (the fuzz harness, per input, so that an input's tokens
 * depend on the input alone). */
void sched_tokens_discard(void);
int sched_ack(struct txn *t, SubRecord *sub, uint64_t event, uint64_t token,
	      Status *status);
int sched_nack(struct txn *t, SubRecord *sub, uint64_t event, uint64_t token,
	       uint32_t delay_ms, bool permanent, const char *reason,
	       Status *status);
/*
 * The consumer gives the lease back unworked (it is stopping): READY at
 * once, the attempt closed as RELEASED with reason as its error, and not
 * counted: attempts and budget_used go back to what they were before the
 * lease, so releasing never dead-letters. Statuses as for sched_ack.
 */
int sched_release(struct txn *t, SubRecord *sub, uint64_t event, uint64_t token,
		  const char *reason, Status *status);
/*
 * Move the lease's deadline to now + extend_ms (which may be earlier than
 * the current one): same token, consumer and attempt; the lease index entry
 * moves with it. LEASE_LOST as for sched_ack, and also when the deadline
 * has passed already (not yet expired, but never revived); NOT_FOUND for
 * no such delivery. extend_ms is the caller's to bound.
 */
int sched_extend(struct txn *t, SubRecord *sub, uint64_t event, uint64_t token,
		 uint32_t extend_ms, Status *status);
/* The lease entry (deadline, sub, event) has passed its deadline. When sub
 * is paused the lease is given back as by sched_release (never retried
 * against the budget, never dead-lettered): it waits for the resume. */
int sched_expire(struct txn *t, uint64_t deadline, uint32_t sub_id,
		 uint64_t event);
/* At start: a lease from before the restart becomes ready at once. */
int sched_recover(struct txn *t, uint64_t deadline, uint32_t sub_id,
		  uint64_t event);
/* Replay / purge one dead letter; NOT_FOUND when it is not in the queue. */
int sched_replay(struct txn *t, SubRecord *sub, uint64_t event, Status *status);
int sched_purge(struct txn *t, SubRecord *sub, uint64_t event, Status *status);
/* Unsubscribing: finish a live delivery as UNSUBSCRIBED. */
int sched_drop(struct txn *t, SubRecord *sub, uint64_t event);

#endif
