/*
 * scheduler.c — delivery state transitions; see scheduler.h for the state machine.
 *
 * Each function reads the delivery record, checks that the transition is
 * allowed from its current state, then rewrites the record, its index entry
 * and the subscription counters in the caller's transaction. Nothing here
 * commits: the turn (turn.h) commits once and only then replies.
 */
#include "scheduler.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "backoff.h"
#include "log.h"

/* A delivery record keeps the first attempt and the newest ones, this many
 * in all (attempts counts every one): a record rewritten on every attempt
 * must stay small, or a subscription that fails everything makes each
 * commit heavy for every other one. 20 covers every attempt of any policy
 * up to 20 attempts. */
#define MAX_HISTORY 20

/* A delivery of event is acked, or never will be: wake its awaits. */
static void delivery_done(struct txn *t, uint64_t event)
{
	const struct sched *s = t->sched;
	if (s && s->on_done)
		s->on_done(s->ctx, event);
}

/* A lease of d ends (ack, nack, expiry, restart, unsubscribe). */
static void lease_gone(struct txn *t, const DeliveryRecord *d)
{
	const struct sched *s = t->sched;
	uint64_t leased =
		d->n_history ? d->history[d->n_history - 1]->leased_ms : 0;
	if (s && s->on_lease)
		s->on_lease(s->ctx, d->consumer, -1, leased);
}

static int put_ready(struct txn *t, SubRecord *sub, uint64_t event,
		     DeliveryRecord *d, uint64_t due)
{
	d->state = HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_READY;
	d->due_ms = due;
	d->lease_deadline_ms = 0;
	int rc = store_ready_put(t, sub->id, due, event);
	if (!rc)
		rc = store_delivery_put(t, event, sub->id, d);
	if (rc)
		return rc;
	sub->ready++;
	store_sub_mark(t, sub);
	if (t->sched && t->sched->on_ready)
		t->sched->on_ready(t->sched->ctx, sub->id, due);
	return 0;
}

int sched_enqueue(struct txn *t, SubRecord *sub, uint64_t event, uint64_t due)
{
	/* a log delivery: the event's topic_log entry is its whole state */
	(void)event;
	sub->ready++;
	store_sub_mark(t, sub);
	if (t->sched && t->sched->on_ready)
		t->sched->on_ready(t->sched->ctx, sub->id, due);
	return 0;
}

static int add_attempt(struct txn *t, DeliveryRecord *d, const char *consumer)
{
	Handoff__Store__Attempt *a = arena_alloc(t->arena, sizeof *a);
	Handoff__Store__Attempt **h =
		arena_alloc(t->arena, MAX_HISTORY * sizeof *h);
	if (!a || !h)
		return ENOMEM;
	handoff__store__attempt__init(a);
	a->attempt = d->attempts;
	a->consumer = arena_strdup(t->arena, consumer);
	a->leased_ms = t->now_ms;
	a->outcome = HANDOFF__STORE__OUTCOME__OUTCOME_LEASED;
	if (!a->consumer)
		return ENOMEM;
	size_t n = d->n_history;
	if (n < MAX_HISTORY) {
		if (n)
			memcpy(h, d->history, n * sizeof *h);
		h[n++] = a;
	} else {
		/* the first attempt, then the newest MAX_HISTORY - 2, then a */
		h[0] = d->history[0];
		memcpy(h + 1, d->history + (n - (MAX_HISTORY - 2)),
		       (MAX_HISTORY - 2) * sizeof *h);
		h[MAX_HISTORY - 1] = a;
		n = MAX_HISTORY;
	}
	d->history = h;
	d->n_history = n;
	return 0;
}

/* Close the attempt in progress with its outcome. */
static void end_attempt(struct txn *t, DeliveryRecord *d,
			Handoff__Store__Outcome outcome, const char *error)
{
	if (d->n_history == 0)
		return;
	Handoff__Store__Attempt *a = d->history[d->n_history - 1];
	if (a->outcome != HANDOFF__STORE__OUTCOME__OUTCOME_LEASED)
		return;
	a->ended_ms = t->now_ms;
	a->outcome = outcome;
	if (error && *error) {
		char *e = arena_strdup(t->arena, error);
		if (e)
			a->error = e;
	}
}

static const char *reason_name(Handoff__Store__DeadReason r)
{
	switch (r) {
	case HANDOFF__STORE__DEAD_REASON__DEAD_REASON_MAX_ATTEMPTS:
		return "max_attempts";
	case HANDOFF__STORE__DEAD_REASON__DEAD_REASON_PERMANENT:
		return "permanent";
	case HANDOFF__STORE__DEAD_REASON__DEAD_REASON_CORRUPT:
		return "corrupt";
	default:
		return "none";
	}
}

static int dead_letter(struct txn *t, SubRecord *sub, uint64_t event,
		       DeliveryRecord *d, Handoff__Store__DeadReason reason)
{
	d->state = HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_DEAD;
	d->dead_reason = reason;
	d->dead_ms = t->now_ms;
	d->lease_deadline_ms = 0;
	int rc = store_dlq_put(t, sub->id, event);
	if (!rc)
		rc = store_delivery_put(t, event, sub->id, d);
	if (rc)
		return rc;
	sub->dead++;
	sub->dead_lettered++;
	store_sub_mark(t, sub);
	delivery_done(t, event);
	log_event(LOG_WARN, "dead_lettered", LU("event_id", event),
		  LS("subscription", sub->name),
		  LS("reason", reason_name(reason)),
		  LU("attempts", d->attempts), LS("error", d->error), LOG_END);
	return 0;
}

/* After a failed attempt: retry after a delay, or dead-letter. */
static int retry_or_dead(struct txn *t, SubRecord *sub, uint64_t event,
			 DeliveryRecord *d, uint32_t delay_ms, bool permanent,
			 const char *why)
{
	if (permanent)
		return dead_letter(
			t, sub, event, d,
			HANDOFF__STORE__DEAD_REASON__DEAD_REASON_PERMANENT);
	uint32_t max = sub->policy ? sub->policy->max_attempts : 1;
	if (d->budget_used >= max)
		return dead_letter(
			t, sub, event, d,
			HANDOFF__STORE__DEAD_REASON__DEAD_REASON_MAX_ATTEMPTS);
	if (delay_ms == 0 && sub->policy)
		delay_ms =
			backoff_delay_ms(sub->policy->backoff_min_ms,
					 sub->policy->backoff_max_ms,
					 d->budget_used, randombytes_random());
	if (d->n_history)
		d->history[d->n_history - 1]->retry_delay_ms = delay_ms;
	log_event(LOG_INFO, "redelivery_scheduled", LU("event_id", event),
		  LS("subscription", sub->name), LU("attempt", d->attempts),
		  LS("why", why), LU("delay_ms", delay_ms),
		  LS("error", d->error), LOG_END);
	return put_ready(t, sub, event, d, t->now_ms + delay_ms);
}

/* One subscription is done with event: drop the payload after the last. */
static int release_event(struct txn *t, uint64_t event)
{
	EventMeta *m;
	int rc = store_event_get(t, event, &m);
	if (rc == MDB_NOTFOUND || rc == STORE_EDECODE) {
		/* Nothing to account against (no record, or a damaged one, left
		 * as it is); still never keep the payload. */
		rc = store_payload_del(t, event);
		return rc == MDB_NOTFOUND ? 0 : rc;
	}
	if (rc)
		return rc;
	if (m->pending_subscriptions > 0)
		m->pending_subscriptions--;
	if (m->pending_subscriptions == 0 && !m->payload_removed) {
		m->payload_removed = true;
		uint8_t id[8];
		be64_put(id, event);
		rc = store_expiry_put(t, t->now_ms + t->sched->history_ms,
				      EXPIRY_HISTORY, id, 8);
		if (rc)
			return rc;
		/* the record rewritten once: without its payload */
		return store_event_put_removed(t, event, m);
	}
	return store_event_put(t, event, m);
}

/* Lease tokens drawn ahead: one getrandom call per lease was a system call
 * per delivery, so random bytes are drawn 64 tokens at a time. */
static _Thread_local uint64_t token_pool[64];
static _Thread_local unsigned tokens_left;

/* A lease token: secret and never 0. */
static uint64_t lease_token(void)
{
	uint64_t token;
	do {
		if (tokens_left == 0) {
			randombytes_buf(token_pool, sizeof token_pool);
			tokens_left = sizeof token_pool / sizeof token_pool[0];
		}
		token = token_pool[--tokens_left];
		/* a token handed out stays only in its lease */
		token_pool[tokens_left] = 0;
	} while (token == 0);
	return token;
}

void sched_tokens_discard(void)
{
	sodium_memzero(token_pool, sizeof token_pool);
	tokens_left = 0;
}

int sched_lease(struct txn *t, SubRecord *sub, uint64_t event, uint64_t due,
		const char *consumer, DeliveryRecord **out, EventBody **body,
		EventMeta **meta)
{
	DeliveryRecord *d;
	*body = NULL;
	*meta = NULL;
	/* read before the ready entry goes: a log delivery reads as a record
	 * only while the subscription's cursor is at or before it */
	int drc = store_delivery_get(t, event, sub->id, &d);
	if (drc && drc != MDB_NOTFOUND && drc != STORE_EDECODE)
		return drc;
	int rc = store_ready_del(t, sub->id, due, event);
	if (rc)
		return rc;
	if (sub->ready)
		sub->ready--;
	store_sub_mark(t, sub);
	rc = drc;
	if (rc == MDB_NOTFOUND) {
		/* A ready entry without its record: drop the stray entry. */
		log_event(LOG_ERROR, "ready_entry_without_delivery",
			  LU("event_id", event), LS("subscription", sub->name),
			  LOG_END);
		*out = NULL;
		return 0;
	}
	if (rc && rc != STORE_EDECODE)
		return rc;
	if (rc == STORE_EDECODE) {
		/* Left as it is, out of the ready index: never delivered. */
		log_event(LOG_ERROR, "delivery_record_corrupt",
			  LU("event_id", event), LS("subscription", sub->name),
			  LOG_END);
		*out = NULL;
		return 0;
	}
	d->attempts++;
	d->budget_used++;
	rc = add_attempt(t, d, consumer);
	if (rc)
		return rc;
	*out = d;

	int brc = store_payload_get(t, event, body);
	int mrc = store_event_get(t, event, meta);
	if (brc == STORE_EDECODE || mrc == STORE_EDECODE ||
	    brc == MDB_NOTFOUND || mrc == MDB_NOTFOUND) {
		/* Damaged (or missing) data is never delivered as good. */
		*body = NULL;
		end_attempt(t, d, HANDOFF__STORE__OUTCOME__OUTCOME_CORRUPT,
			    "stored event failed its checksum");
		d->error = arena_strdup(t->arena,
					"stored event failed its checksum");
		log_event(LOG_ERROR, "event_corrupt", LU("event_id", event),
			  LS("subscription", sub->name), LOG_END);
		return dead_letter(
			t, sub, event, d,
			HANDOFF__STORE__DEAD_REASON__DEAD_REASON_CORRUPT);
	}
	if (brc)
		return brc;
	if (mrc)
		return mrc;

	uint64_t token = lease_token();
	uint32_t deadline_ms =
		sub->policy ? sub->policy->ack_deadline_ms : 30000;
	d->state = HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_LEASED;
	d->lease_token = token;
	d->lease_deadline_ms = t->now_ms + deadline_ms;
	d->consumer = arena_strdup(t->arena, consumer);
	d->due_ms = 0;
	rc = store_lease_put(t, d->lease_deadline_ms, sub->id, event);
	if (!rc)
		rc = store_delivery_put(t, event, sub->id, d);
	if (rc)
		return rc;
	sub->leased++;
	sub->delivered++;
	if (t->sched && t->sched->on_lease)
		t->sched->on_lease(t->sched->ctx, consumer, 1, t->now_ms);
	if (d->attempts > 1)
		log_event(LOG_INFO, "redelivered", LU("event_id", event),
			  LS("subscription", sub->name),
			  LU("attempt", d->attempts), LS("consumer", consumer),
			  LOG_END);
	return 0;
}

/* The delivery leased under token, or a status saying why not. */
static int leased_delivery(struct txn *t, SubRecord *sub, uint64_t event,
			   uint64_t token, DeliveryRecord **d, Status *status)
{
	int rc = store_delivery_get(t, event, sub->id, d);
	if (rc == MDB_NOTFOUND) {
		*status = HANDOFF__WIRE__STATUS__NOT_FOUND;
		return 0;
	}
	if (rc)
		return rc;
	if ((*d)->state !=
		    HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_LEASED ||
	    (*d)->lease_token != token || token == 0) {
		*status = HANDOFF__WIRE__STATUS__LEASE_LOST;
		return 0;
	}
	*status = HANDOFF__WIRE__STATUS__OK;
	rc = store_lease_del(t, (*d)->lease_deadline_ms, sub->id, event);
	if (rc)
		return rc;
	lease_gone(t, *d);
	if (sub->leased)
		sub->leased--;
	store_sub_mark(t, sub);
	return 0;
}

int sched_ack(struct txn *t, SubRecord *sub, uint64_t event, uint64_t token,
	      Status *status)
{
	DeliveryRecord *d;
	int rc = leased_delivery(t, sub, event, token, &d, status);
	if (rc)
		return rc;
	if (*status == HANDOFF__WIRE__STATUS__LEASE_LOST &&
	    d->state == HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_ACKED &&
	    d->lease_token == token && token != 0) {
		/* the same ack again (a resent request): already done */
		*status = HANDOFF__WIRE__STATUS__OK;
		return 0;
	}
	if (*status != HANDOFF__WIRE__STATUS__OK)
		return 0;
	d->state = HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_ACKED;
	d->done_ms = t->now_ms;
	d->lease_deadline_ms = 0;
	end_attempt(t, d, HANDOFF__STORE__OUTCOME__OUTCOME_ACKED, NULL);
	rc = store_delivery_put(t, event, sub->id, d);
	if (rc)
		return rc;
	sub->acked++;
	delivery_done(t, event);
	return release_event(t, event);
}

int sched_nack(struct txn *t, SubRecord *sub, uint64_t event, uint64_t token,
	       uint32_t delay_ms, bool permanent, const char *reason,
	       Status *status)
{
	DeliveryRecord *d;
	int rc = leased_delivery(t, sub, event, token, &d, status);
	if (rc || *status != HANDOFF__WIRE__STATUS__OK)
		return rc;
	end_attempt(t, d,
		    permanent ? HANDOFF__STORE__OUTCOME__OUTCOME_PERMANENT :
				HANDOFF__STORE__OUTCOME__OUTCOME_NACKED,
		    reason);
	if (reason && *reason)
		d->error = arena_strdup(t->arena, reason);
	sub->nacked++;
	return retry_or_dead(t, sub, event, d, delay_ms, permanent,
			     permanent ? "nack_permanent" : "nack");
}

int sched_release(struct txn *t, SubRecord *sub, uint64_t event, uint64_t token,
		  const char *reason, Status *status)
{
	DeliveryRecord *d;
	int rc = leased_delivery(t, sub, event, token, &d, status);
	if (rc || *status != HANDOFF__WIRE__STATUS__OK)
		return rc;
	end_attempt(t, d, HANDOFF__STORE__OUTCOME__OUTCOME_RELEASED, reason);
	/* Not the event's failure: the lease is as if never granted, so a
	 * consumer stopped on the last attempt cannot dead-letter it. */
	if (d->attempts)
		d->attempts--;
	if (d->budget_used)
		d->budget_used--;
	log_event(LOG_INFO, "lease_released", LU("event_id", event),
		  LS("subscription", sub->name), LU("attempt", d->attempts + 1),
		  LS("consumer", d->consumer), LS("reason", reason), LOG_END);
	return put_ready(t, sub, event, d, t->now_ms);
}

int sched_extend(struct txn *t, SubRecord *sub, uint64_t event, uint64_t token,
		 uint32_t extend_ms, Status *status)
{
	DeliveryRecord *d;
	int rc = store_delivery_get(t, event, sub->id, &d);
	if (rc == MDB_NOTFOUND) {
		*status = HANDOFF__WIRE__STATUS__NOT_FOUND;
		return 0;
	}
	if (rc)
		return rc;
	/* A lease past its deadline waits for expiry in this very turn: it
	 * is not brought back to life. */
	if (d->state != HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_LEASED ||
	    d->lease_token != token || token == 0 ||
	    d->lease_deadline_ms <= t->now_ms) {
		*status = HANDOFF__WIRE__STATUS__LEASE_LOST;
		return 0;
	}
	*status = HANDOFF__WIRE__STATUS__OK;
	uint64_t old = d->lease_deadline_ms;
	d->lease_deadline_ms = t->now_ms + extend_ms;
	if (d->lease_deadline_ms == old)
		return 0;
	rc = store_lease_del(t, old, sub->id, event);
	if (!rc)
		rc = store_lease_put(t, d->lease_deadline_ms, sub->id, event);
	if (!rc)
		rc = store_delivery_put(t, event, sub->id, d);
	if (rc)
		return rc;
	log_event(LOG_DEBUG, "lease_extended", LU("event_id", event),
		  LS("subscription", sub->name), LU("attempt", d->attempts),
		  LS("consumer", d->consumer), LU("deadline_ms", old),
		  LU("new_deadline_ms", d->lease_deadline_ms), LOG_END);
	return 0;
}

/* A lease ended without ack or nack (expiry, restart). */
static int lease_ended(struct txn *t, uint64_t deadline, uint32_t sub_id,
		       uint64_t event, Handoff__Store__Outcome outcome)
{
	SubRecord *sub;
	DeliveryRecord *d;
	int rc = store_lease_del(t, deadline, sub_id, event);
	if (rc)
		return rc;
	rc = store_sub_get(t, sub_id, &sub);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return rc;
	rc = store_delivery_get(t, event, sub_id, &d);
	if (rc == MDB_NOTFOUND || rc == STORE_EDECODE)
		return 0; /* a stale index entry (removed above), or a damaged
			   * record: left as it is */
	if (rc)
		return rc;
	if (d->state != HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_LEASED ||
	    d->lease_deadline_ms != deadline)
		return 0;
	if (sub->deleting)
		return sched_drop(t, sub, event); /* lease entry already gone */
	lease_gone(t, d);
	if (sub->leased)
		sub->leased--;
	store_sub_mark(t, sub);
	if (outcome == HANDOFF__STORE__OUTCOME__OUTCOME_EXPIRED &&
	    sub->paused) {
		/* Paused: the broker spends no attempt and dead-letters
		 * nothing. The lease is given back as by a release: ready
		 * (it waits for the resume), attempt and budget as before. */
		end_attempt(t, d, outcome,
			    "ack deadline passed while paused: not counted");
		if (d->attempts)
			d->attempts--;
		if (d->budget_used)
			d->budget_used--;
		sub->expired++;
		log_event(LOG_INFO, "lease_expired_paused",
			  LU("event_id", event), LS("subscription", sub->name),
			  LU("attempt", d->attempts + 1),
			  LS("consumer", d->consumer), LOG_END);
		return put_ready(t, sub, event, d, t->now_ms);
	}
	if (outcome == HANDOFF__STORE__OUTCOME__OUTCOME_EXPIRED) {
		end_attempt(t, d, outcome, "ack deadline passed");
		d->error =
			(char *)"lease expired: no ack within the ack deadline";
		sub->expired++;
		log_event(LOG_INFO, "lease_expired", LU("event_id", event),
			  LS("subscription", sub->name),
			  LU("attempt", d->attempts),
			  LS("consumer", d->consumer), LOG_END);
		return retry_or_dead(t, sub, event, d, 0, false,
				     "lease_expired");
	}
	/* A broker restart is not the consumer's failure: no budget used. */
	end_attempt(t, d, outcome, "broker restarted during the lease");
	if (d->budget_used)
		d->budget_used--;
	log_event(LOG_INFO, "lease_recovered", LU("event_id", event),
		  LS("subscription", sub->name), LU("attempt", d->attempts),
		  LS("consumer", d->consumer), LOG_END);
	return put_ready(t, sub, event, d, t->now_ms);
}

int sched_expire(struct txn *t, uint64_t deadline, uint32_t sub_id,
		 uint64_t event)
{
	return lease_ended(t, deadline, sub_id, event,
			   HANDOFF__STORE__OUTCOME__OUTCOME_EXPIRED);
}

int sched_recover(struct txn *t, uint64_t deadline, uint32_t sub_id,
		  uint64_t event)
{
	return lease_ended(t, deadline, sub_id, event,
			   HANDOFF__STORE__OUTCOME__OUTCOME_BROKER_RESTART);
}

static int dead_delivery(struct txn *t, SubRecord *sub, uint64_t event,
			 DeliveryRecord **d, Status *status)
{
	int rc = store_delivery_get(t, event, sub->id, d);
	if (rc == MDB_NOTFOUND ||
	    (!rc &&
	     (*d)->state !=
		     HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_DEAD)) {
		*status = HANDOFF__WIRE__STATUS__NOT_FOUND;
		return 0;
	}
	if (rc)
		return rc;
	*status = HANDOFF__WIRE__STATUS__OK;
	rc = store_dlq_del(t, sub->id, event);
	if (rc)
		return rc;
	if (sub->dead)
		sub->dead--;
	store_sub_mark(t, sub);
	return 0;
}

int sched_replay(struct txn *t, SubRecord *sub, uint64_t event, Status *status)
{
	DeliveryRecord *d;
	int rc = dead_delivery(t, sub, event, &d, status);
	if (rc || *status != HANDOFF__WIRE__STATUS__OK)
		return rc;
	d->budget_used = 0;
	d->replays++;
	d->dead_reason = HANDOFF__STORE__DEAD_REASON__DEAD_REASON_UNSPECIFIED;
	d->dead_ms = 0;
	sub->replayed++;
	log_event(LOG_INFO, "dead_letter_replayed", LU("event_id", event),
		  LS("subscription", sub->name), LU("replays", d->replays),
		  LU("attempts", d->attempts), LOG_END);
	return put_ready(t, sub, event, d, t->now_ms);
}

int sched_purge(struct txn *t, SubRecord *sub, uint64_t event, Status *status)
{
	DeliveryRecord *d;
	int rc = dead_delivery(t, sub, event, &d, status);
	if (rc || *status != HANDOFF__WIRE__STATUS__OK)
		return rc;
	d->state = HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_PURGED;
	d->done_ms = t->now_ms;
	rc = store_delivery_put(t, event, sub->id, d);
	if (rc)
		return rc;
	sub->purged++;
	delivery_done(t, event);
	log_event(LOG_WARN, "dead_letter_purged", LU("event_id", event),
		  LS("subscription", sub->name), LU("attempts", d->attempts),
		  LOG_END);
	return release_event(t, event);
}

int sched_drop(struct txn *t, SubRecord *sub, uint64_t event)
{
	DeliveryRecord *d;
	int rc = store_delivery_get(t, event, sub->id, &d);
	if (rc == MDB_NOTFOUND || rc == STORE_EDECODE)
		return 0; /* nothing to drop, or damaged: left as it is */
	if (rc)
		return rc;
	switch (d->state) {
	case HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_READY:
		rc = store_ready_del(t, sub->id, d->due_ms, event);
		if (sub->ready)
			sub->ready--;
		break;
	case HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_LEASED:
		rc = store_lease_del(t, d->lease_deadline_ms, sub->id, event);
		if (sub->leased)
			sub->leased--;
		lease_gone(t, d);
		break;
	case HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_DEAD:
		rc = store_dlq_del(t, sub->id, event);
		if (sub->dead)
			sub->dead--;
		break;
	default:
		return 0; /* already final */
	}
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	end_attempt(t, d, HANDOFF__STORE__OUTCOME__OUTCOME_UNSUBSCRIBED,
		    "subscription deleted");
	d->state = HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_UNSUBSCRIBED;
	d->done_ms = t->now_ms;
	rc = store_delivery_put(t, event, sub->id, d);
	if (rc)
		return rc;
	store_sub_mark(t, sub);
	delivery_done(t, event);
	return release_event(t, event);
}
