/*
 * background.c — lease recovery and expiry, retention, the unsubscribe
 * drain, rate samples and reader checks; see background.h.
 */
#include "background.h"

#include <string.h>

#include "broker.h"
#include "clock.h"
#include "log.h"

#define RECOVER_PER_TURN  250
#define MAX_TURN_EXPIRIES 2000
/* Background work (retention, unsubscribe) comes in small slices: a
 * request arriving during an idle turn waits for that turn's commit, and a
 * turn with requests gives it an even smaller share, so dropping millions
 * of deliveries does not slow live traffic (128 per commit still drains
 * some 100,000 a second). */
/* dedup records swept a turn (each one B-tree delete at the tree's start) */
#define MAX_TURN_IDEM_SWEEP	 1024
#define MAX_TURN_IDEM_SWEEP_BUSY 256
#define MAX_TURN_CLEANUPS	 128
#define MAX_TURN_CLEANUPS_BUSY	 8
/* How often reader slots of dead processes are cleared. */
#define READER_CHECK_MS 5000

void bg_init(struct background *bg)
{
	*bg = (struct background){ 0 };
	bg->progress.recovering = true;
	bg->progress.unsubscribe_pending = true;
}

void bg_check_readers(struct broker *b, uint64_t now)
{
	if (now < b->bg.next_reader_check_ms)
		return;
	int dead = store_reader_check(&b->st);
	if (dead)
		log_event(LOG_WARN, "stale_readers_cleared", LU("count", dead),
			  LS("why", "a process died inside a read transaction"),
			  LOG_END);
	b->bg.next_reader_check_ms = now + READER_CHECK_MS;
}

/* ---- recovery of leases from before the start ------------------------- */

/* Was this lease granted before the broker started? */
static bool leased_before_start(struct broker *b, struct txn *t, uint64_t ev,
				uint32_t sub)
{
	DeliveryRecord *d;
	if (store_delivery_get(t, ev, sub, &d) || d->n_history == 0)
		return true; /* nothing to check against: recover it */
	return d->history[d->n_history - 1]->leased_ms < b->started_ms;
}

/*
 * Every delivery leased before this start becomes ready again (outcome
 * broker_restart), up to RECOVER_PER_TURN per turn, walking the lease index
 * once in key order. Leases granted since the start are stepped over.
 */
int bg_recover(struct broker *b, struct txn *t)
{
	struct bg_progress *p = &b->bg.progress;
	if (!p->recovering)
		return 0;
	uint64_t deadline = p->recover_deadline, ev = p->recover_ev;
	uint32_t sub = p->recover_sub;
	for (int n = 0; n < RECOVER_PER_TURN; n++) {
		int rc = p->recover_begun ?
				 store_lease_next(t, &deadline, &sub, &ev) :
				 store_lease_first(t, &deadline, &sub, &ev);
		if (rc == MDB_NOTFOUND) {
			p->recovering = false;
			log_event(LOG_INFO, "leases_recovered",
				  LU("count", p->recovered), LOG_END);
			return 0;
		}
		if (rc)
			return rc;
		if (leased_before_start(b, t, ev, sub)) {
			rc = sched_recover(t, deadline, sub, ev);
			if (rc)
				return rc;
			p->recovered++;
		}
		/* the entry is gone or stays: either way continue after it */
		p->recover_begun = true;
		p->recover_deadline = deadline;
		p->recover_sub = sub;
		p->recover_ev = ev;
	}
	return 0;
}

/* ---- lease expiry ----------------------------------------------------- */

int bg_expire(struct broker *b, struct txn *t)
{
	/* while old leases are recovered, they are not expired instead */
	if (b->bg.progress.recovering)
		return 0;
	b->bg.next_lease_ms = UINT64_MAX;
	for (int i = 0; i < MAX_TURN_EXPIRIES; i++) {
		uint64_t deadline, ev;
		uint32_t sub;
		int rc = store_lease_first(t, &deadline, &sub, &ev);
		if (rc == MDB_NOTFOUND)
			return 0;
		if (rc)
			return rc;
		if (deadline > t->now_ms) {
			b->bg.next_lease_ms = deadline;
			return 0;
		}
		rc = sched_expire(t, deadline, sub, ev);
		if (rc)
			return rc;
	}
	b->bg.next_lease_ms = t->now_ms; /* more to expire: come back at once */
	return 0;
}

/* ---- retention and unsubscribe clean-up ------------------------------- */

/* When the dedup record of an event published at created_ms is due to go
 * (clock_window_over). */
static uint64_t idem_due(const struct broker *b, uint64_t created_ms)
{
	uint64_t window = b->cfg->dedup_window_ms;
	if (created_ms >= b->started_ms ||
	    created_ms + window <= b->start_mark_ms)
		return created_ms + window;
	return b->started_ms + window; /* > created_ms + window */
}

/* Remove event ev's dedup record if it is still ev's (a later publish
 * with the key after the window has its own). */
static int drop_idem(struct txn *t, uint64_t ev, const EventMeta *m)
{
	uint8_t key[IDEM_KEY_MAX];
	size_t len;
	IdemRecord *ir;
	if (!m->idempotency_key || !*m->idempotency_key || !m->topic_id ||
	    store_idem_key(m->topic_id, m->idempotency_key, key, &len))
		return 0;
	int rc = store_idem_get(t, key, len, &ir);
	if (rc == MDB_NOTFOUND || rc == STORE_EDECODE)
		return 0;
	if (rc)
		return rc;
	if (ir->event_id != ev)
		return 0;
	rc = store_idem_del(t, key, len);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * Dedup records go in publish order: the events tree is in that order, and
 * a record's window ends later for a later event (broker time never goes
 * back), so the sweep walks the events from meta "idem_swept" and stops at
 * the first whose window is not over. *due: when that one's is.
 */
static int sweep_idem(struct broker *b, struct txn *t, uint64_t *due)
{
	uint64_t at = 0, ev;
	int budget = b->inbox.n_pend ? MAX_TURN_IDEM_SWEEP_BUSY :
				       MAX_TURN_IDEM_SWEEP;
	int rc = store_meta_get(t, "idem_swept", &at);
	if (rc && rc != MDB_NOTFOUND && rc != STORE_EDECODE)
		return rc;
	uint64_t from = at;
	*due = UINT64_MAX;
	while ((rc = store_event_next(t, at, &ev)) == 0) {
		EventMeta *m;
		rc = store_event_get(t, ev, &m);
		if (rc && rc != STORE_EDECODE)
			return rc;
		if (!rc && m->idempotency_key && *m->idempotency_key) {
			if (!clock_window_over(m->published_ms,
					       b->cfg->dedup_window_ms,
					       b->started_ms, b->start_mark_ms,
					       t->now_ms)) {
				*due = idem_due(b, m->published_ms);
				break;
			}
			rc = drop_idem(t, ev, m);
			if (rc)
				return rc;
		}
		at = ev;
		if (--budget == 0) {
			*due = t->now_ms; /* more at once */
			break;
		}
	}
	if (rc && rc != MDB_NOTFOUND && rc != STORE_EDECODE)
		return rc;
	return at != from ? store_meta_put(t, "idem_swept", at) : 0;
}

/* A finished event's history period is over: its trace goes. */
static int forget_event(struct broker *b, struct txn *t, uint64_t ev)
{
	uint32_t sub = 0;
	EventMeta *m;
	int rc = store_event_get(t, ev, &m);
	if (rc == 0 && m->topic_id) {
		rc = store_log_del(t, m->topic_id, ev);
		if (rc && rc != MDB_NOTFOUND)
			return rc;
		/* not swept yet (a history shorter than the dedup window):
		 * its dedup record goes now, or gets an expiry entry */
		uint64_t swept = 0;
		rc = store_meta_get(t, "idem_swept", &swept);
		if (rc && rc != MDB_NOTFOUND && rc != STORE_EDECODE)
			return rc;
		if (ev > swept && m->idempotency_key && *m->idempotency_key) {
			uint8_t key[IDEM_KEY_MAX];
			size_t len;
			if (clock_window_over(
				    m->published_ms, b->cfg->dedup_window_ms,
				    b->started_ms, b->start_mark_ms, t->now_ms))
				rc = drop_idem(t, ev, m);
			else if (!store_idem_key(m->topic_id,
						 m->idempotency_key, key, &len))
				rc = store_expiry_put(
					t, idem_due(b, m->published_ms),
					EXPIRY_IDEM, key, len);
			else
				rc = 0;
			if (rc)
				return rc;
		}
	} else if (rc && rc != MDB_NOTFOUND && rc != STORE_EDECODE) {
		return rc;
	}
	while ((rc = store_delivery_next_sub(t, ev, 0, &sub)) == 0) {
		rc = store_delivery_del(t, ev, sub);
		if (rc)
			return rc;
	}
	if (rc != MDB_NOTFOUND)
		return rc;
	rc = store_payload_del(t, ev);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	rc = store_event_del(t, ev);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Drop a deleted subscription's deliveries, a bounded number per turn. */
static int drain_unsubscribed(struct broker *b, struct txn *t, int *budget)
{
	uint32_t id = 0;
	int rc;
	bool any = false;
	while ((rc = store_sub_next(t, id, &id)) == 0) {
		SubRecord *sub;
		rc = store_sub_get(t, id, &sub);
		if (rc)
			return rc;
		if (!sub->deleting)
			continue;
		any = true;
		for (; *budget > 0; (*budget)--) {
			uint64_t due, ev, deadline;
			rc = store_ready_first(t, id, &due, &ev);
			if (rc == MDB_NOTFOUND)
				rc = store_dlq_next(t, id, 0, &ev);
			if (rc == MDB_NOTFOUND)
				rc = store_lease_find_sub(t, id, &deadline,
							  &ev);
			if (rc == MDB_NOTFOUND) {
				log_event(LOG_INFO, "subscription_removed",
					  LS("subscription", sub->name),
					  LU("id", id), LOG_END);
				rc = store_sub_delete(t, id);
				if (rc)
					return rc;
				break;
			}
			if (rc)
				return rc;
			rc = sched_drop(t, sub, ev);
			if (rc)
				return rc;
		}
		if (*budget <= 0)
			return 0;
	}
	if (rc != MDB_NOTFOUND)
		return rc;
	b->bg.progress.unsubscribe_pending = any && *budget <= 0;
	return 0;
}

/* A dedup record from before this start whose window ran out by the
 * clock also lives out a window of this run (clock_window_over): it comes
 * due again then. */
static int outlive_restart(struct broker *b, struct txn *t, int kind,
			   const uint8_t *id, size_t idlen)
{
	return store_expiry_put(t, b->started_ms + b->cfg->dedup_window_ms,
				kind, id, idlen);
}

/* One retention entry that came due: what it names goes. */
static int expire_entry(struct broker *b, struct txn *t, int kind,
			const uint8_t *id, size_t idlen)
{
	int rc = 0;
	uint64_t window = b->cfg->dedup_window_ms;
	if (kind == EXPIRY_IDEM) {
		IdemRecord *ir;
		rc = store_idem_get(t, id, idlen, &ir);
		/* a newer record under the same key keeps living; a gone or
		 * damaged one has nothing to expire (its entry goes) */
		if (rc == 0 &&
		    clock_window_over(ir->created_ms, window, b->started_ms,
				      b->start_mark_ms, t->now_ms))
			rc = store_idem_del(t, id, idlen);
		else if (rc == 0 && ir->created_ms + window <= t->now_ms)
			rc = outlive_restart(b, t, kind, id, idlen);
		else if (rc == MDB_NOTFOUND || rc == STORE_EDECODE)
			rc = 0;
	} else if (kind == EXPIRY_HISTORY && idlen == 8) {
		rc = forget_event(b, t, be64_get(id));
	} else if (kind == EXPIRY_COMMAND && idlen < IDEM_KEY_MAX) {
		char cid[IDEM_KEY_MAX + 1];
		CommandRecord *c;
		memcpy(cid, id, idlen);
		cid[idlen] = '\0';
		rc = store_command_get(t, cid, &c);
		if (rc == 0 &&
		    !clock_window_over(c->created_ms, window, b->started_ms,
				       b->start_mark_ms, t->now_ms))
			return outlive_restart(b, t, kind, id, idlen);
		rc = store_command_del(t, cid);
		if (rc == MDB_NOTFOUND)
			rc = 0;
	}
	return rc;
}

int bg_clean_up(struct broker *b, struct txn *t)
{
	int budget =
		b->inbox.n_pend ? MAX_TURN_CLEANUPS_BUSY : MAX_TURN_CLEANUPS;
	uint64_t at;
	int kind, rc;
	uint8_t id[IDEM_KEY_MAX];
	size_t idlen;
	b->bg.cleanup_more = false;
	if (b->bg.progress.unsubscribe_pending) {
		rc = drain_unsubscribed(b, t, &budget);
		if (rc)
			return rc;
	}
	for (; budget > 0; budget--) {
		rc = store_expiry_first(t, t->now_ms, &at, &kind, id, &idlen);
		if (rc == MDB_NOTFOUND)
			break;
		if (rc)
			return rc;
		rc = expire_entry(b, t, kind, id, idlen);
		if (!rc)
			rc = store_expiry_del(t, at, kind, id, idlen);
		if (rc)
			return rc;
	}
	uint64_t sweep_due;
	rc = sweep_idem(b, t, &sweep_due);
	if (rc)
		return rc;
	b->bg.cleanup_more = budget <= 0 || b->bg.progress.unsubscribe_pending;
	rc = store_expiry_first(t, UINT64_MAX, &at, &kind, id, &idlen);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	b->bg.next_expiry_ms = rc ? UINT64_MAX : at;
	if (sweep_due < b->bg.next_expiry_ms)
		b->bg.next_expiry_ms = sweep_due;
	return 0;
}

/* ---- rate samples ----------------------------------------------------- */

int bg_sample_rates(struct broker *b, struct txn *t)
{
	char *name = "";
	int rc;
	if (t->now_ms < b->bg.next_sample_ms)
		return 0;
	b->bg.next_sample_ms = t->now_ms + METRICS_INTERVAL_MS;
	while ((rc = store_topic_next(t, name, &name)) == 0) {
		TopicRecord *tr;
		if (store_topic_get(t, name, &tr) == 0)
			metrics_sample_of(&b->metrics, METRIC_PUBLISHED, name,
					  tr->published, t->now_ms);
	}
	uint32_t id = 0;
	while ((rc = store_sub_next(t, id, &id)) == 0) {
		SubRecord *r;
		if (store_sub_get(t, id, &r))
			continue;
		metrics_sample_of(&b->metrics, METRIC_ACKED, r->name, r->acked,
				  t->now_ms);
		metrics_sample_of(&b->metrics, METRIC_DELIVERED, r->name,
				  r->delivered, t->now_ms);
	}
	return rc == MDB_NOTFOUND ? 0 : rc;
}

bool bg_busy(const struct background *bg)
{
	return bg->cleanup_more || bg->progress.unsubscribe_pending ||
	       bg->progress.recovering;
}

uint64_t bg_next_wake(const struct background *bg)
{
	return bg->next_lease_ms < bg->next_expiry_ms ? bg->next_lease_ms :
							bg->next_expiry_ms;
}
