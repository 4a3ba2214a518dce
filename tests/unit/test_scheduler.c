/*
 * test_scheduler.c — the delivery state machine (see broker/scheduler.h), driven
 * through a real store in a temporary folder:
 *   enqueue -> READY (ready entry, counter, ready hook);
 *   lease -> LEASED (token, deadline, attempt history, payload returned);
 *   ack: only the current token makes ACKED; a wrong token is LEASE_LOST,
 *   an unknown delivery NOT_FOUND, the same ack again OK (no double count);
 *   nack: permanent -> DEAD/PERMANENT; with a delay -> READY at now+delay;
 *   without -> the subscription's backoff; after max_attempts failures ->
 *   DEAD/MAX_ATTEMPTS with that many history entries;
 *   expiry -> history EXPIRED and a retry (or DEAD when the budget is used);
 *   expiry while paused -> READY at once, not counted, never DEAD;
 *   recover (restart) -> READY at once, BROKER_RESTART, budget not used;
 *   release -> READY at once, RELEASED with the reason, attempts and budget
 *   as before the lease (max_attempts 1 released many times is never
 *   dead-lettered; the next nack is), not counted as a nack; a wrong or
 *   stale token (also a repeated release) is LEASE_LOST, an unknown
 *   delivery NOT_FOUND, and change nothing;
 *   extend -> still LEASED with the same token, consumer and attempt, the
 *   lease index entry moved to now + extend (the old one gone), the lease
 *   then expires at the new deadline and not the old one; a wrong, stale
 *   or zero token is LEASE_LOST, so is a lease past its deadline not yet
 *   expired (and it then expires as due), an unknown delivery NOT_FOUND;
 *   replay -> READY, budget reset, replays+1, history kept, dlq entry gone
 *   in the same txn (an aborted replay changes nothing);
 *   purge -> PURGED; the payload is deleted when the last subscription is
 *   done with the event (pending_subscriptions 0, payload_removed, a
 *   history expiry entry);
 *   a corrupted payload is dead-lettered (CORRUPT) at lease, never served;
 *   drop -> UNSUBSCRIBED from any live state; history keeps the first and newest 19;
 *   after every step the subscription's counters match the index entries
 *   and the delivery states (check_counts), also when a transaction touches
 *   more subscriptions than the txn cache holds.
 */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <sodium.h>

#include "arena.h"
#include "scheduler.h"
#include "store.h"
#include "payload_bytes.h"

#define MAP_SIZE (64ull << 20)
#define T0	 1700000000000ull
#define HIST_MS	 3600000ull

#define ST(x)	   HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_##x
#define OUT(x)	   HANDOFF__STORE__OUTCOME__OUTCOME_##x
#define WHY(x)	   HANDOFF__STORE__DEAD_REASON__DEAD_REASON_##x
#define S_OK	   HANDOFF__WIRE__STATUS__OK
#define S_LOST	   HANDOFF__WIRE__STATUS__LEASE_LOST
#define S_NOTFOUND HANDOFF__WIRE__STATUS__NOT_FOUND

struct fx {
	char base[PATH_MAX];
	char dir[PATH_MAX + 16];
	char err[512];
	struct store st;
	bool open;
	struct arena a;
	struct txn t;
	struct sched sched;
	uint64_t now;
	/* ready hook calls */
	int hook_calls;
	uint32_t hook_sub;
	uint64_t hook_due;
};

static void hook(void *ctx, uint32_t sub, uint64_t due)
{
	struct fx *f = ctx;
	f->hook_calls++;
	f->hook_sub = sub;
	f->hook_due = due;
}

static int rm_one(const char *p, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	const char *tmp = getenv("TMPDIR");
	if (!f)
		return -1;
	if (!tmp || !*tmp || strlen(tmp) > PATH_MAX / 2)
		tmp = "/tmp";
	snprintf(f->base, sizeof f->base, "%s/handoff-test-sched-XXXXXX", tmp);
	if (!mkdtemp(f->base)) {
		free(f);
		return -1;
	}
	snprintf(f->dir, sizeof f->dir, "%s/data", f->base);
	arena_init(&f->a);
	f->now = T0;
	*state = f;
	if (store_open(&f->st, f->dir, MAP_SIZE, f->err, sizeof f->err))
		return -1;
	f->open = true;
	f->sched = (struct sched){ .history_ms = HIST_MS,
				   .on_ready = hook,
				   .ctx = f };
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (f->t.txn)
		store_txn_abort(&f->t);
	if (f->open)
		store_close(&f->st);
	arena_fini(&f->a);
	nftw(f->base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static void begin(struct fx *f)
{
	arena_reset(&f->a);
	assert_int_equal(store_txn_begin(&f->st, &f->a, true, f->now, &f->t),
			 0);
	f->t.sched = &f->sched;
}

static void commit(struct fx *f)
{
	assert_int_equal(store_txn_commit(&f->t), 0);
}

static SubRecord *sub_named(struct fx *f, const char *name)
{
	SubRecord *s;
	assert_int_equal(store_sub_by_name(&f->t, name, &s), 0);
	return s;
}

static uint32_t mk_sub(struct fx *f, const char *name, const char *topic,
		       uint32_t max_attempts, uint32_t ack_ms, uint32_t bmin,
		       uint32_t bmax)
{
	begin(f);
	SubRecord *r = arena_alloc(&f->a, sizeof *r);
	Handoff__Store__Policy *p = arena_alloc(&f->a, sizeof *p);
	assert_non_null(r);
	assert_non_null(p);
	handoff__store__subscription_record__init(r);
	handoff__store__policy__init(p);
	p->max_attempts = max_attempts;
	p->ack_deadline_ms = ack_ms;
	p->backoff_min_ms = bmin;
	p->backoff_max_ms = bmax;
	r->name = arena_strdup(&f->a, name);
	r->topic = arena_strdup(&f->a, topic);
	r->policy = p;
	r->created_ms = f->now;
	assert_int_equal(store_sub_create(&f->t, r), 0);
	uint32_t id = r->id;
	commit(f);
	return id;
}

/* As handlers.c publish_one does: event, payload, its topic_log entry, one
 * (log) delivery per sub. */
static uint64_t publish(struct fx *f, const char *topic, const char *payload)
{
	begin(f);
	uint32_t *ids;
	size_t n;
	assert_int_equal(store_topic_subs(&f->t, topic, &ids, &n), 0);
	assert_true(n > 0);
	SubRecord **subs = arena_alloc(&f->a, n * sizeof *subs);
	assert_non_null(subs);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(store_sub_get(&f->t, ids[i], &subs[i]), 0);
	uint64_t id = store_alloc_event_id(&f->t);
	EventBody body = HANDOFF__STORE__EVENT_BODY__INIT;
	body.payload.data = (uint8_t *)payload;
	body.payload.len = strlen(payload);
	EventMeta m = HANDOFF__STORE__EVENT_META__INIT;
	m.topic = (char *)topic;
	m.key = (char *)"key";
	m.published_ms = f->now;
	m.payload_bytes = handoff__store__event_body__get_packed_size(&body);
	m.idempotency_key = (char *)"idem";
	m.pending_subscriptions = (uint32_t)n;
	m.topic_id = subs[0]->topic_id;
	assert_true(m.topic_id != 0);
	assert_int_equal(store_event_put(&f->t, id, &m), 0);
	assert_int_equal(store_payload_put(&f->t, id, &body), 0);
	assert_int_equal(store_log_put(&f->t, m.topic_id, id, f->now), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(sched_enqueue(&f->t, subs[i], id, f->now), 0);
	commit(f);
	return id;
}

/* Read a delivery (valid until the next begin). */
static DeliveryRecord *delivery(struct fx *f, uint64_t ev, uint32_t sub)
{
	struct txn t;
	DeliveryRecord *d = NULL;
	assert_int_equal(store_txn_begin(&f->st, &f->a, false, f->now, &t), 0);
	assert_int_equal(store_delivery_get(&t, ev, sub, &d), 0);
	store_txn_abort(&t);
	return d;
}

static SubRecord *sub_record(struct fx *f, uint32_t id)
{
	struct txn t;
	SubRecord *s = NULL;
	assert_int_equal(store_txn_begin(&f->st, &f->a, false, f->now, &t), 0);
	assert_int_equal(store_sub_get(&t, id, &s), 0);
	store_txn_abort(&t);
	return s;
}

static EventMeta *meta(struct fx *f, uint64_t ev)
{
	struct txn t;
	EventMeta *m = NULL;
	assert_int_equal(store_txn_begin(&f->st, &f->a, false, f->now, &t), 0);
	assert_int_equal(store_event_get(&t, ev, &m), 0);
	store_txn_abort(&t);
	return m;
}

static int payload_rc(struct fx *f, uint64_t ev)
{
	struct txn t;
	EventBody *b;
	assert_int_equal(store_txn_begin(&f->st, &f->a, false, f->now, &t), 0);
	int rc = store_payload_get(&t, ev, &b);
	store_txn_abort(&t);
	return rc;
}

/* Lease sub's first ready delivery (the clock moved to its due time if it
 * is later). Returns the event id; *d the leased record, *body payload. */
static uint64_t lease(struct fx *f, const char *name, const char *consumer,
		      DeliveryRecord **d, EventBody **body)
{
	uint64_t due, ev;
	EventMeta *m;
	EventBody *b;
	begin(f);
	SubRecord *s = sub_named(f, name);
	assert_int_equal(store_ready_first(&f->t, s->id, &due, &ev), 0);
	if (due > f->now) {
		store_txn_abort(&f->t);
		f->now = due;
		begin(f);
		s = sub_named(f, name);
	}
	assert_int_equal(sched_lease(&f->t, s, ev, due, consumer, d, &b, &m),
			 0);
	if (body)
		*body = b;
	commit(f);
	return ev;
}

static Status ack(struct fx *f, const char *name, uint64_t ev, uint64_t tok)
{
	Status st = -1;
	begin(f);
	assert_int_equal(sched_ack(&f->t, sub_named(f, name), ev, tok, &st), 0);
	commit(f);
	return st;
}

static Status nack(struct fx *f, const char *name, uint64_t ev, uint64_t tok,
		   uint32_t delay, bool permanent, const char *reason)
{
	Status st = -1;
	begin(f);
	assert_int_equal(sched_nack(&f->t, sub_named(f, name), ev, tok, delay,
				    permanent, reason, &st),
			 0);
	commit(f);
	return st;
}

static Status release(struct fx *f, const char *name, uint64_t ev, uint64_t tok,
		      const char *reason)
{
	Status st = -1;
	begin(f);
	assert_int_equal(
		sched_release(&f->t, sub_named(f, name), ev, tok, reason, &st),
		0);
	commit(f);
	return st;
}

static Status extend(struct fx *f, const char *name, uint64_t ev, uint64_t tok,
		     uint32_t ms)
{
	Status st = -1;
	begin(f);
	assert_int_equal(
		sched_extend(&f->t, sub_named(f, name), ev, tok, ms, &st), 0);
	commit(f);
	return st;
}

/* The deadlines of sub's lease index entries for ev (up to max). */
static size_t lease_entries(struct fx *f, uint32_t sub_id, uint64_t ev,
			    uint64_t *dl, size_t max)
{
	struct txn t;
	uint64_t d, e;
	uint32_t s;
	size_t n = 0;
	assert_int_equal(store_txn_begin(&f->st, &f->a, false, f->now, &t), 0);
	int rc = store_lease_first(&t, &d, &s, &e);
	for (; rc == 0; rc = store_lease_next(&t, &d, &s, &e))
		if (s == sub_id && e == ev && n < max)
			dl[n++] = d;
	assert_int_equal(rc, MDB_NOTFOUND);
	store_txn_abort(&t);
	return n;
}

static Status replay(struct fx *f, const char *name, uint64_t ev)
{
	Status st = -1;
	begin(f);
	assert_int_equal(sched_replay(&f->t, sub_named(f, name), ev, &st), 0);
	commit(f);
	return st;
}

static Status purge(struct fx *f, const char *name, uint64_t ev)
{
	Status st = -1;
	begin(f);
	assert_int_equal(sched_purge(&f->t, sub_named(f, name), ev, &st), 0);
	commit(f);
	return st;
}

/* Expire (or recover) every lease due by now; returns how many. */
static int end_leases(struct fx *f, bool recover)
{
	uint64_t dl, ev;
	uint32_t sub;
	int n = 0, rc;
	begin(f);
	while ((rc = store_lease_first(&f->t, &dl, &sub, &ev)) == 0 &&
	       (recover || dl <= f->now)) {
		if (recover)
			assert_int_equal(sched_recover(&f->t, dl, sub, ev), 0);
		else
			assert_int_equal(sched_expire(&f->t, dl, sub, ev), 0);
		n++;
	}
	assert_true(rc == 0 || rc == MDB_NOTFOUND);
	commit(f);
	return n;
}

struct counts {
	uint64_t by_state[8];
	uint64_t ready_idx, lease_idx, dlq_idx;
};

/* Count sub's deliveries by state and its index entries with raw cursors,
 * check every index entry against its record, and check the counters in
 * the subscription record against both. */
static struct counts check_counts(struct fx *f, uint32_t sub_id)
{
	struct counts c;
	struct txn t;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;
	memset(&c, 0, sizeof c);
	assert_int_equal(store_txn_begin(&f->st, &f->a, false, f->now, &t), 0);

	assert_int_equal(mdb_cursor_open(t.txn, f->st.dbi[DB_DELIVERIES], &cur),
			 0);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		assert_int_equal(k.mv_size, 12);
		if (be32_get((uint8_t *)k.mv_data + 8) != sub_id)
			continue;
		DeliveryRecord *d;
		assert_int_equal(
			store_delivery_get(&t, be64_get(k.mv_data), sub_id, &d),
			0);
		assert_true(d->state < 8);
		c.by_state[d->state]++;
	}
	mdb_cursor_close(cur);

	assert_int_equal(mdb_cursor_open(t.txn, f->st.dbi[DB_READY], &cur), 0);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		assert_int_equal(k.mv_size, 20);
		if (be32_get(k.mv_data) != sub_id)
			continue;
		DeliveryRecord *d;
		uint64_t ev = be64_get((uint8_t *)k.mv_data + 12);
		assert_int_equal(store_delivery_get(&t, ev, sub_id, &d), 0);
		assert_int_equal(d->state, ST(READY));
		assert_int_equal(d->due_ms, be64_get((uint8_t *)k.mv_data + 4));
		c.ready_idx++;
	}
	mdb_cursor_close(cur);

	assert_int_equal(mdb_cursor_open(t.txn, f->st.dbi[DB_LEASES], &cur), 0);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		assert_int_equal(k.mv_size, 20);
		if (be32_get((uint8_t *)k.mv_data + 8) != sub_id)
			continue;
		DeliveryRecord *d;
		uint64_t ev = be64_get((uint8_t *)k.mv_data + 12);
		assert_int_equal(store_delivery_get(&t, ev, sub_id, &d), 0);
		assert_int_equal(d->state, ST(LEASED));
		assert_int_equal(d->lease_deadline_ms, be64_get(k.mv_data));
		c.lease_idx++;
	}
	mdb_cursor_close(cur);

	assert_int_equal(mdb_cursor_open(t.txn, f->st.dbi[DB_DLQ], &cur), 0);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		assert_int_equal(k.mv_size, 12);
		if (be32_get(k.mv_data) != sub_id)
			continue;
		DeliveryRecord *d;
		uint64_t ev = be64_get((uint8_t *)k.mv_data + 4);
		assert_int_equal(store_delivery_get(&t, ev, sub_id, &d), 0);
		assert_int_equal(d->state, ST(DEAD));
		c.dlq_idx++;
	}
	mdb_cursor_close(cur);

	SubRecord *s;
	assert_int_equal(store_sub_get(&t, sub_id, &s), 0);

	/* log deliveries: the topic's log from the cursor on, READY due at
	 * their publish time, with no record or ready entry of their own */
	uint64_t log_deliveries = 0;
	assert_int_equal(mdb_cursor_open(t.txn, f->st.dbi[DB_TOPIC_LOG], &cur),
			 0);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		assert_int_equal(k.mv_size, 12);
		uint64_t ev = be64_get((uint8_t *)k.mv_data + 4);
		if (be32_get(k.mv_data) != s->topic_id || ev < s->log_cursor ||
		    (s->log_end && ev >= s->log_end))
			continue;
		uint8_t dk[12];
		be64_put(dk, ev);
		be32_put(dk + 8, sub_id);
		MDB_val dkey = { 12, dk }, dval;
		assert_int_equal(
			mdb_get(t.txn, f->st.dbi[DB_DELIVERIES], &dkey, &dval),
			MDB_NOTFOUND);
		DeliveryRecord *d;
		assert_int_equal(store_delivery_get(&t, ev, sub_id, &d), 0);
		assert_int_equal(d->state, ST(READY));
		assert_int_equal(d->due_ms, be64_get(v.mv_data));
		log_deliveries++;
	}
	mdb_cursor_close(cur);
	store_txn_abort(&t);

	assert_int_equal(c.ready_idx, c.by_state[ST(READY)]);
	c.by_state[ST(READY)] += log_deliveries;
	c.ready_idx += log_deliveries;
	assert_int_equal(c.lease_idx, c.by_state[ST(LEASED)]);
	assert_int_equal(c.dlq_idx, c.by_state[ST(DEAD)]);
	assert_int_equal(s->ready, c.ready_idx);
	assert_int_equal(s->leased, c.lease_idx);
	assert_int_equal(s->dead, c.dlq_idx);
	return c;
}

/* Number of expiry entries of kind HISTORY for event ev, and their time. */
static int history_expiries(struct fx *f, uint64_t ev, uint64_t *at)
{
	struct txn t;
	MDB_cursor *cur;
	MDB_val k, v;
	int n = 0;
	assert_int_equal(store_txn_begin(&f->st, &f->a, false, f->now, &t), 0);
	assert_int_equal(mdb_cursor_open(t.txn, f->st.dbi[DB_EXPIRY], &cur), 0);
	for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const uint8_t *p = k.mv_data;
		if (k.mv_size == 17 && p[8] == EXPIRY_HISTORY &&
		    be64_get(p + 9) == ev) {
			n++;
			*at = be64_get(p);
		}
	}
	mdb_cursor_close(cur);
	store_txn_abort(&t);
	return n;
}

/* Rewrite event ev's stored payload bytes (as format 1 laid them out: crc,
 * body) with one bit flipped. */
static void corrupt_payload(struct fx *f, uint64_t ev, size_t pos)
{
	uint8_t *copy;
	begin(f);
	size_t n = payload_bytes_get(f->t.txn, f->st.dbi[DB_EVENTS], ev, &copy);
	assert_true(pos < n);
	copy[pos] ^= 0x20;
	payload_bytes_put(f->t.txn, f->st.dbi[DB_EVENTS], ev, copy, n);
	commit(f);
	free(copy);
}

/* ---- tests ------------------------------------------------------------- */

static void test_enqueue_ready(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 5, 30000, 100, 1000);
	f->hook_calls = 0;
	uint64_t ev = publish(f, "t", "hello");
	assert_int_equal(f->hook_calls, 1);
	assert_int_equal(f->hook_sub, sid);
	assert_int_equal(f->hook_due, T0);
	DeliveryRecord *d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(READY));
	assert_int_equal(d->due_ms, T0);
	assert_int_equal(d->attempts, 0);
	assert_int_equal(d->n_history, 0);
	struct counts c = check_counts(f, sid);
	assert_int_equal(c.ready_idx, 1);
	assert_int_equal(sub_record(f, sid)->ready, 1);
	assert_int_equal(meta(f, ev)->pending_subscriptions, 1);
}

static void test_lease_then_ack(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 5, 30000, 100, 1000);
	uint64_t ev = publish(f, "t", "hello");
	f->now += 7;
	DeliveryRecord *d;
	EventBody *b;
	assert_int_equal(lease(f, "s", "worker-1", &d, &b), ev);
	assert_non_null(d);
	assert_non_null(b);
	assert_int_equal(b->payload.len, 5);
	assert_memory_equal(b->payload.data, "hello", 5);
	uint64_t tok = d->lease_token;
	assert_int_not_equal(tok, 0);

	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(LEASED));
	assert_int_equal(d->lease_token, tok);
	assert_int_equal(d->lease_deadline_ms, T0 + 7 + 30000);
	assert_int_equal(d->attempts, 1);
	assert_int_equal(d->budget_used, 1);
	assert_string_equal(d->consumer, "worker-1");
	assert_int_equal(d->n_history, 1);
	assert_int_equal(d->history[0]->attempt, 1);
	assert_int_equal(d->history[0]->outcome, OUT(LEASED));
	assert_int_equal(d->history[0]->leased_ms, T0 + 7);
	assert_string_equal(d->history[0]->consumer, "worker-1");
	SubRecord *s = sub_record(f, sid);
	assert_int_equal(s->ready, 0);
	assert_int_equal(s->leased, 1);
	assert_int_equal(s->delivered, 1);
	struct counts c = check_counts(f, sid);
	assert_int_equal(c.lease_idx, 1);

	f->now += 100;
	assert_int_equal(ack(f, "s", ev, tok), S_OK);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(ACKED));
	assert_int_equal(d->done_ms, T0 + 107);
	assert_int_equal(d->lease_deadline_ms, 0);
	assert_int_equal(d->history[0]->outcome, OUT(ACKED));
	assert_int_equal(d->history[0]->ended_ms, T0 + 107);
	s = sub_record(f, sid);
	assert_int_equal(s->acked, 1);
	assert_int_equal(s->leased, 0);
	c = check_counts(f, sid);
	assert_int_equal(c.by_state[ST(ACKED)], 1);
	assert_int_equal(c.lease_idx, 0);
	/* the only subscription is done: payload gone, trace kept */
	assert_int_equal(payload_rc(f, ev), MDB_NOTFOUND);
	EventMeta *m = meta(f, ev);
	assert_int_equal(m->pending_subscriptions, 0);
	assert_true(m->payload_removed);
	uint64_t at = 0;
	assert_int_equal(history_expiries(f, ev, &at), 1);
	assert_int_equal(at, T0 + 107 + HIST_MS);

	/* the same ack again: OK, and nothing counted twice */
	f->now += 5;
	assert_int_equal(ack(f, "s", ev, tok), S_OK);
	assert_int_equal(sub_record(f, sid)->acked, 1);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(ACKED));
	assert_int_equal(d->done_ms, T0 + 107);
	assert_int_equal(history_expiries(f, ev, &at), 1);
	assert_int_equal(meta(f, ev)->pending_subscriptions, 0);
	/* but another token after the ack is not OK */
	assert_int_equal(ack(f, "s", ev, tok + 1), S_LOST);
	check_counts(f, sid);
}

static void test_ack_statuses(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 5, 1000, 100, 1000);
	mk_sub(f, "other", "u", 5, 1000, 100, 1000);
	uint64_t ev = publish(f, "t", "one");
	uint64_t ev2 = publish(f, "t", "two");
	DeliveryRecord *d;
	assert_int_equal(lease(f, "s", "c", &d, NULL), ev);
	uint64_t tok = d->lease_token;

	assert_int_equal(ack(f, "s", ev, tok ^ 0x5555), S_LOST);
	assert_int_equal(ack(f, "s", ev, 0), S_LOST);
	assert_int_equal(ack(f, "s", 999, tok), S_NOTFOUND);
	assert_int_equal(ack(f, "other", ev, tok), S_NOTFOUND);
	/* a READY delivery was never leased: its token 0 is no lease */
	assert_int_equal(ack(f, "s", ev2, 0), S_LOST);
	assert_int_equal(delivery(f, ev2, sid)->state, ST(READY));
	/* none of that touched the lease */
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(LEASED));
	assert_int_equal(d->lease_token, tok);
	SubRecord *s = sub_record(f, sid);
	assert_int_equal(s->acked, 0);
	assert_int_equal(s->leased, 1);
	check_counts(f, sid);

	/* the lease expires and the event is leased again: the old token is
	 * lost, the new one acks */
	f->now += 1001;
	assert_int_equal(end_leases(f, false), 1);
	assert_int_equal(lease(f, "s", "c2", &d, NULL), ev2);
	uint64_t ev_again = lease(f, "s", "c2", &d, NULL);
	assert_int_equal(ev_again, ev);
	uint64_t tok2 = d->lease_token;
	assert_int_not_equal(tok2, tok);
	assert_int_equal(ack(f, "s", ev, tok), S_LOST);
	assert_int_equal(delivery(f, ev, sid)->state, ST(LEASED));
	assert_int_equal(ack(f, "s", ev, tok2), S_OK);
	assert_int_equal(delivery(f, ev, sid)->state, ST(ACKED));
	assert_int_equal(sub_record(f, sid)->acked, 1);
	check_counts(f, sid);
}

static void test_nack_permanent(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 5, 30000, 100, 1000);
	uint64_t ev = publish(f, "t", "bad");
	DeliveryRecord *d;
	lease(f, "s", "c", &d, NULL);
	f->now += 50;
	assert_int_equal(nack(f, "s", ev, d->lease_token, 0, true, "bad json"),
			 S_OK);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(DEAD));
	assert_int_equal(d->dead_reason, WHY(PERMANENT));
	assert_int_equal(d->dead_ms, T0 + 50);
	assert_string_equal(d->error, "bad json");
	assert_int_equal(d->lease_deadline_ms, 0);
	assert_int_equal(d->n_history, 1);
	assert_int_equal(d->history[0]->outcome, OUT(PERMANENT));
	assert_string_equal(d->history[0]->error, "bad json");
	assert_int_equal(d->history[0]->ended_ms, T0 + 50);
	SubRecord *s = sub_record(f, sid);
	assert_int_equal(s->dead, 1);
	assert_int_equal(s->dead_lettered, 1);
	assert_int_equal(s->nacked, 1);
	assert_int_equal(s->leased, 0);
	struct counts c = check_counts(f, sid);
	assert_int_equal(c.dlq_idx, 1);
	/* a dead letter keeps its payload */
	assert_int_equal(payload_rc(f, ev), 0);
	assert_int_equal(meta(f, ev)->pending_subscriptions, 1);
	assert_false(meta(f, ev)->payload_removed);
}

static void test_max_attempts(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 3, 30000, 100, 1000);
	uint64_t ev = publish(f, "t", "flaky");
	DeliveryRecord *d;
	for (uint32_t i = 1; i <= 3; i++) {
		assert_int_equal(lease(f, "s", "c", &d, NULL), ev);
		assert_int_equal(d->attempts, i);
		char why[16];
		snprintf(why, sizeof why, "boom %u", i);
		uint64_t at = f->now;
		assert_int_equal(
			nack(f, "s", ev, d->lease_token, 0, false, why), S_OK);
		d = delivery(f, ev, sid);
		assert_string_equal(d->error, why);
		if (i < 3) {
			/* backoff after attempt i: base 100 * 2^(i-1) */
			uint64_t base = 100ull << (i - 1);
			assert_int_equal(d->state, ST(READY));
			assert_true(d->due_ms >= at + base);
			assert_true(d->due_ms <= at + base + base / 2);
			assert_int_equal(d->history[i - 1]->retry_delay_ms,
					 d->due_ms - at);
		}
		check_counts(f, sid);
	}
	assert_int_equal(d->state, ST(DEAD));
	assert_int_equal(d->dead_reason, WHY(MAX_ATTEMPTS));
	assert_int_equal(d->attempts, 3);
	assert_int_equal(d->budget_used, 3);
	assert_int_equal(d->n_history, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(d->history[i]->attempt, i + 1);
		assert_int_equal(d->history[i]->outcome, OUT(NACKED));
	}
	SubRecord *s = sub_record(f, sid);
	assert_int_equal(s->nacked, 3);
	assert_int_equal(s->delivered, 3);
	assert_int_equal(s->dead, 1);
	assert_int_equal(s->dead_lettered, 1);
	assert_int_equal(s->ready, 0);
	check_counts(f, sid);
}

static void test_nack_with_delay(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 5, 30000, 100, 1000);
	uint64_t ev = publish(f, "t", "later");
	DeliveryRecord *d;
	lease(f, "s", "c", &d, NULL);
	f->now += 20;
	f->hook_calls = 0;
	assert_int_equal(nack(f, "s", ev, d->lease_token, 5000, false, "busy"),
			 S_OK);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(READY));
	assert_int_equal(d->due_ms, T0 + 20 + 5000);
	assert_int_equal(d->lease_deadline_ms, 0);
	assert_int_equal(d->history[0]->outcome, OUT(NACKED));
	assert_int_equal(d->history[0]->retry_delay_ms, 5000);
	assert_string_equal(d->history[0]->error, "busy");
	assert_int_equal(f->hook_calls, 1);
	assert_int_equal(f->hook_due, T0 + 20 + 5000);
	/* the ready entry is at the new due time */
	begin(f);
	uint64_t due, e, cnt;
	assert_int_equal(store_ready_first(&f->t, sid, &due, &e), 0);
	assert_int_equal(due, T0 + 5020);
	assert_int_equal(e, ev);
	assert_int_equal(store_ready_count_after(&f->t, sid, f->now, 10, &cnt),
			 0);
	assert_int_equal(cnt, 1);
	store_txn_abort(&f->t);
	SubRecord *s = sub_record(f, sid);
	assert_int_equal(s->ready, 1);
	assert_int_equal(s->leased, 0);
	assert_int_equal(s->nacked, 1);
	assert_int_equal(s->dead, 0);
	check_counts(f, sid);
}

static void test_nack_statuses(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 5, 30000, 100, 1000);
	uint64_t ev = publish(f, "t", "x");
	DeliveryRecord *d;
	lease(f, "s", "c", &d, NULL);
	uint64_t tok = d->lease_token;
	assert_int_equal(nack(f, "s", ev, tok + 1, 0, true, "no"), S_LOST);
	assert_int_equal(nack(f, "s", ev, 0, 0, false, "no"), S_LOST);
	assert_int_equal(nack(f, "s", ev + 100, tok, 0, false, "no"),
			 S_NOTFOUND);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(LEASED));
	assert_int_equal(sub_record(f, sid)->nacked, 0);
	assert_int_equal(ack(f, "s", ev, tok), S_OK);
	/* after the ack a nack cannot undo it */
	assert_int_equal(nack(f, "s", ev, tok, 0, true, "late"), S_LOST);
	assert_int_equal(delivery(f, ev, sid)->state, ST(ACKED));
	SubRecord *s = sub_record(f, sid);
	assert_int_equal(s->dead, 0);
	assert_int_equal(s->nacked, 0);
	check_counts(f, sid);
}

static void test_expiry_retries(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 5, 1000, 200, 5000);
	uint64_t ev = publish(f, "t", "slow");
	DeliveryRecord *d;
	lease(f, "s", "sleepy", &d, NULL);
	uint64_t tok = d->lease_token;
	/* not yet */
	f->now += 999;
	assert_int_equal(end_leases(f, false), 0);
	assert_int_equal(delivery(f, ev, sid)->state, ST(LEASED));
	f->now += 1;
	assert_int_equal(end_leases(f, false), 1);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(READY));
	assert_int_equal(d->attempts, 1);
	assert_int_equal(d->budget_used, 1);
	assert_int_equal(d->lease_deadline_ms, 0);
	assert_true(d->due_ms >= f->now + 200);
	assert_true(d->due_ms <= f->now + 300);
	assert_int_equal(d->n_history, 1);
	assert_int_equal(d->history[0]->outcome, OUT(EXPIRED));
	assert_int_equal(d->history[0]->ended_ms, f->now);
	assert_int_equal(d->history[0]->retry_delay_ms, d->due_ms - f->now);
	assert_non_null(d->history[0]->error);
	assert_true(strlen(d->history[0]->error) > 0);
	SubRecord *s = sub_record(f, sid);
	assert_int_equal(s->expired, 1);
	assert_int_equal(s->leased, 0);
	assert_int_equal(s->ready, 1);
	assert_int_equal(s->nacked, 0);
	check_counts(f, sid);
	/* the expired lease's token no longer acks */
	assert_int_equal(ack(f, "s", ev, tok), S_LOST);
	assert_int_equal(delivery(f, ev, sid)->state, ST(READY));

	/* a stale lease entry (not this delivery's deadline) is only removed */
	lease(f, "s", "c2", &d, NULL);
	uint64_t dl = d->lease_deadline_ms;
	begin(f);
	assert_int_equal(store_lease_put(&f->t, dl - 500, sid, ev), 0);
	commit(f);
	begin(f);
	assert_int_equal(sched_expire(&f->t, dl - 500, sid, ev), 0);
	commit(f);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(LEASED));
	assert_int_equal(d->lease_deadline_ms, dl);
	assert_int_equal(sub_record(f, sid)->expired, 1);
	struct counts c = check_counts(f, sid);
	assert_int_equal(c.lease_idx, 1);
}

/* Expiry of the last attempt of the budget dead-letters. */
static void test_expiry_exhausts_budget(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 1, 1000, 200, 5000);
	uint64_t ev = publish(f, "t", "x");
	DeliveryRecord *d;
	lease(f, "s", "c", &d, NULL);
	f->now += 5000;
	assert_int_equal(end_leases(f, false), 1);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(DEAD));
	assert_int_equal(d->dead_reason, WHY(MAX_ATTEMPTS));
	assert_int_equal(d->n_history, 1);
	assert_int_equal(d->history[0]->outcome, OUT(EXPIRED));
	SubRecord *s = sub_record(f, sid);
	assert_int_equal(s->expired, 1);
	assert_int_equal(s->dead, 1);
	check_counts(f, sid);
}

/* A lease that expires while its subscription is paused spends no
 * attempt and is never dead-lettered, even with max_attempts 1: it is
 * READY again at once (waiting for the resume), attempts and budget as
 * before the lease, the history entry EXPIRED; after the resume the same
 * expiry dead-letters as always. */
static void test_expiry_while_paused(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 1, 1000, 200, 5000);
	uint64_t ev = publish(f, "t", "x");
	DeliveryRecord *d;
	lease(f, "s", "c", &d, NULL);
	begin(f);
	SubRecord *r = sub_named(f, "s");
	r->paused = true;
	store_sub_mark(&f->t, r);
	commit(f);
	for (int round = 0; round < 3; round++) {
		f->now += 5000;
		assert_int_equal(end_leases(f, false), round == 0 ? 1 : 0);
		d = delivery(f, ev, sid);
		assert_int_equal(d->state, ST(READY));
		assert_int_equal(d->attempts, 0);
		assert_int_equal(d->budget_used, 0);
		assert_int_equal(d->n_history, 1);
		assert_int_equal(d->history[0]->outcome, OUT(EXPIRED));
		SubRecord *s = sub_record(f, sid);
		assert_int_equal(s->dead, 0);
		assert_int_equal(s->dead_lettered, 0);
		assert_int_equal(s->ready, 1);
		assert_int_equal(s->leased, 0);
		check_counts(f, sid);
	}
	/* resumed: the next lease is attempt 1 again, and its expiry counts */
	begin(f);
	r = sub_named(f, "s");
	r->paused = false;
	store_sub_mark(&f->t, r);
	commit(f);
	lease(f, "s", "c", &d, NULL);
	assert_int_equal(d->attempts, 1);
	f->now += 5000;
	assert_int_equal(end_leases(f, false), 1);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(DEAD));
	assert_int_equal(d->dead_reason, WHY(MAX_ATTEMPTS));
	check_counts(f, sid);
}

/* A broker restart is not the consumer's failure. */
static void test_recover(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 1, 30000, 200, 5000);
	uint64_t ev = publish(f, "t", "x");
	DeliveryRecord *d;
	lease(f, "s", "c", &d, NULL);
	uint64_t tok = d->lease_token;
	f->now += 10; /* lease deadline still far away */
	assert_int_equal(end_leases(f, true), 1);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(READY));
	assert_int_equal(d->due_ms, f->now);
	assert_int_equal(d->attempts, 1);
	assert_int_equal(d->budget_used, 0);
	assert_int_equal(d->n_history, 1);
	assert_int_equal(d->history[0]->outcome, OUT(BROKER_RESTART));
	assert_int_equal(d->history[0]->ended_ms, f->now);
	SubRecord *s = sub_record(f, sid);
	assert_int_equal(s->expired, 0);
	assert_int_equal(s->leased, 0);
	assert_int_equal(s->ready, 1);
	assert_int_equal(s->dead, 0);
	check_counts(f, sid);
	assert_int_equal(ack(f, "s", ev, tok), S_LOST);

	/* max_attempts 1: the budget is still whole, so one more attempt */
	assert_int_equal(lease(f, "s", "c", &d, NULL), ev);
	assert_int_equal(d->attempts, 2);
	assert_int_equal(d->budget_used, 1);
	assert_int_equal(nack(f, "s", ev, d->lease_token, 0, false, "x"), S_OK);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(DEAD));
	assert_int_equal(d->dead_reason, WHY(MAX_ATTEMPTS));
	assert_int_equal(d->n_history, 2);
	assert_int_equal(d->history[0]->outcome, OUT(BROKER_RESTART));
	assert_int_equal(d->history[1]->outcome, OUT(NACKED));
	check_counts(f, sid);
}

static void test_release(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 1, 30000, 200, 5000);
	uint64_t ev = publish(f, "t", "x");
	DeliveryRecord *d;
	/* max_attempts 1, released three times: never dead-lettered */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(lease(f, "s", "c", &d, NULL), ev);
		assert_int_equal(d->attempts, 1);
		assert_int_equal(d->budget_used, 1);
		uint64_t tok = d->lease_token;
		f->now += 10;
		assert_int_equal(release(f, "s", ev, tok, "consumer stopped"),
				 S_OK);
		d = delivery(f, ev, sid);
		assert_int_equal(d->state, ST(READY));
		assert_int_equal(d->due_ms, f->now);
		assert_int_equal(d->attempts, 0);
		assert_int_equal(d->budget_used, 0);
		assert_int_equal(d->lease_deadline_ms, 0);
		assert_int_equal(d->n_history, (size_t)i + 1);
		assert_int_equal(d->history[i]->outcome, OUT(RELEASED));
		assert_string_equal(d->history[i]->error, "consumer stopped");
		assert_int_equal(d->history[i]->ended_ms, f->now);
		check_counts(f, sid);
		/* the old token is spent: a repeated release or an ack */
		assert_int_equal(release(f, "s", ev, tok, "again"), S_LOST);
		assert_int_equal(ack(f, "s", ev, tok), S_LOST);
		assert_int_equal(delivery(f, ev, sid)->n_history,
				 (size_t)i + 1);
	}
	SubRecord *s = sub_record(f, sid);
	assert_int_equal(s->nacked, 0);
	assert_int_equal(s->expired, 0);
	assert_int_equal(s->dead, 0);
	assert_int_equal(s->ready, 1);
	assert_int_equal(s->leased, 0);

	/* the budget is whole: the first real failure is the last attempt */
	assert_int_equal(lease(f, "s", "c", &d, NULL), ev);
	assert_int_equal(d->attempts, 1);
	assert_int_equal(release(f, "s", ev, d->lease_token + 1, "x"), S_LOST);
	assert_int_equal(release(f, "s", ev, 0, "x"), S_LOST);
	assert_int_equal(release(f, "s", ev + 100, d->lease_token, "x"),
			 S_NOTFOUND);
	assert_int_equal(delivery(f, ev, sid)->state, ST(LEASED));
	assert_int_equal(nack(f, "s", ev, d->lease_token, 0, false, "boom"),
			 S_OK);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(DEAD));
	assert_int_equal(d->dead_reason, WHY(MAX_ATTEMPTS));
	assert_int_equal(d->attempts, 1);
	assert_int_equal(d->n_history, 4);
	assert_int_equal(d->history[3]->outcome, OUT(NACKED));
	assert_int_equal(d->history[3]->attempt, 1);
	check_counts(f, sid);
	/* a dead delivery cannot be released */
	assert_int_equal(release(f, "s", ev, d->lease_token, "x"), S_LOST);
	assert_int_equal(delivery(f, ev, sid)->state, ST(DEAD));
}

static void test_extend(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 3, 1000, 200, 5000);
	uint64_t ev = publish(f, "t", "x");
	DeliveryRecord *d;
	uint64_t dl[4];
	assert_int_equal(lease(f, "s", "worker-1", &d, NULL), ev);
	uint64_t tok = d->lease_token, leased_at = f->now;
	assert_int_equal(d->lease_deadline_ms, leased_at + 1000);

	/* 800 ms in: extend by 5 s -> deadline now + 5 s, entry moved */
	f->now += 800;
	assert_int_equal(extend(f, "s", ev, tok, 5000), S_OK);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(LEASED));
	assert_int_equal(d->lease_token, tok);
	assert_string_equal(d->consumer, "worker-1");
	assert_int_equal(d->attempts, 1);
	assert_int_equal(d->budget_used, 1);
	assert_int_equal(d->lease_deadline_ms, f->now + 5000);
	assert_int_equal(d->n_history, 1);
	assert_int_equal(d->history[0]->outcome, OUT(LEASED));
	assert_int_equal(lease_entries(f, sid, ev, dl, 4), 1);
	assert_int_equal(dl[0], f->now + 5000);
	check_counts(f, sid);
	uint64_t new_deadline = f->now + 5000;

	/* wrong, zero, unknown: nothing changes */
	assert_int_equal(extend(f, "s", ev, tok + 1, 5000), S_LOST);
	assert_int_equal(extend(f, "s", ev, 0, 5000), S_LOST);
	assert_int_equal(extend(f, "s", ev + 100, tok, 5000), S_NOTFOUND);
	assert_int_equal(delivery(f, ev, sid)->lease_deadline_ms, new_deadline);

	/* past the original deadline nothing expires */
	f->now = leased_at + 1500;
	assert_int_equal(end_leases(f, false), 0);
	assert_int_equal(delivery(f, ev, sid)->state, ST(LEASED));
	/* and at the new one it does, as an expiry of that attempt */
	f->now = new_deadline;
	assert_int_equal(end_leases(f, false), 1);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(READY));
	assert_int_equal(d->history[0]->outcome, OUT(EXPIRED));
	assert_int_equal(lease_entries(f, sid, ev, dl, 4), 0);
	check_counts(f, sid);
	/* the expired lease's token is stale */
	assert_int_equal(extend(f, "s", ev, tok, 5000), S_LOST);
	assert_int_equal(delivery(f, ev, sid)->state, ST(READY));

	/* a lease past its deadline, not yet expired, is not revived */
	assert_int_equal(lease(f, "s", "worker-2", &d, NULL), ev);
	tok = d->lease_token;
	uint64_t due = d->lease_deadline_ms;
	f->now = due;
	assert_int_equal(extend(f, "s", ev, tok, 5000), S_LOST);
	d = delivery(f, ev, sid);
	assert_int_equal(d->lease_deadline_ms, due);
	assert_int_equal(end_leases(f, false), 1);
	assert_int_equal(delivery(f, ev, sid)->state, ST(READY));

	/* extend may shorten; after an ack the token is spent */
	assert_int_equal(lease(f, "s", "worker-3", &d, NULL), ev);
	tok = d->lease_token;
	assert_int_equal(extend(f, "s", ev, tok, 10), S_OK);
	assert_int_equal(delivery(f, ev, sid)->lease_deadline_ms, f->now + 10);
	assert_int_equal(ack(f, "s", ev, tok), S_OK);
	assert_int_equal(extend(f, "s", ev, tok, 5000), S_LOST);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(ACKED));
	assert_int_equal(lease_entries(f, sid, ev, dl, 4), 0);
	check_counts(f, sid);
}

static void test_replay(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 1, 30000, 200, 5000);
	uint64_t ev = publish(f, "t", "x");
	uint64_t ev_live = publish(f, "t", "y");
	DeliveryRecord *d;
	lease(f, "s", "c", &d, NULL);
	assert_int_equal(nack(f, "s", ev, d->lease_token, 0, false, "err"),
			 S_OK);
	assert_int_equal(delivery(f, ev, sid)->state, ST(DEAD));

	/* not dead letters */
	assert_int_equal(replay(f, "s", ev_live), S_NOTFOUND);
	assert_int_equal(replay(f, "s", 12345), S_NOTFOUND);
	assert_int_equal(delivery(f, ev_live, sid)->state, ST(READY));

	/* an aborted replay changes nothing */
	f->now += 1000;
	begin(f);
	Status st;
	SubRecord *s = sub_named(f, "s");
	assert_int_equal(sched_replay(&f->t, s, ev, &st), 0);
	assert_int_equal(st, S_OK);
	uint64_t e;
	/* within the txn the dlq entry is already gone */
	assert_int_equal(store_dlq_next(&f->t, sid, 0, &e), MDB_NOTFOUND);
	store_txn_abort(&f->t);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(DEAD));
	assert_int_equal(d->replays, 0);
	struct counts c = check_counts(f, sid);
	assert_int_equal(c.dlq_idx, 1);

	assert_int_equal(replay(f, "s", ev), S_OK);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(READY));
	assert_int_equal(d->due_ms, f->now);
	assert_int_equal(d->budget_used, 0);
	assert_int_equal(d->replays, 1);
	assert_int_equal(d->attempts, 1);
	assert_int_equal(d->n_history, 1);
	assert_int_equal(d->history[0]->outcome, OUT(NACKED));
	assert_int_equal(d->dead_reason, WHY(UNSPECIFIED));
	assert_int_equal(d->dead_ms, 0);
	s = sub_record(f, sid);
	assert_int_equal(s->dead, 0);
	assert_int_equal(s->replayed, 1);
	assert_int_equal(s->ready, 2);
	assert_int_equal(s->dead_lettered, 1);
	c = check_counts(f, sid);
	assert_int_equal(c.dlq_idx, 0);
	/* the same replay again: no longer in the queue */
	assert_int_equal(replay(f, "s", ev), S_NOTFOUND);
	assert_int_equal(sub_record(f, sid)->replayed, 1);

	/* the fresh budget allows one more attempt; the history grows */
	assert_int_equal(lease(f, "s", "c", &d, NULL), ev_live);
	assert_int_equal(lease(f, "s", "c", &d, NULL), ev);
	assert_int_equal(d->attempts, 2);
	assert_int_equal(d->budget_used, 1);
	assert_int_equal(nack(f, "s", ev, d->lease_token, 0, false, "again"),
			 S_OK);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(DEAD));
	assert_int_equal(d->dead_reason, WHY(MAX_ATTEMPTS));
	assert_int_equal(d->n_history, 2);
	assert_int_equal(d->replays, 1);
	check_counts(f, sid);
}

/* The payload goes when the last subscription is done with the event,
 * whether that is an ack or a purge. */
static void test_purge_releases_payload(void **state)
{
	struct fx *f = *state;
	uint32_t a = mk_sub(f, "a", "t", 5, 30000, 100, 1000);
	uint32_t b = mk_sub(f, "b", "t", 5, 30000, 100, 1000);
	uint64_t ev = publish(f, "t", "shared");
	uint64_t at;
	assert_int_equal(meta(f, ev)->pending_subscriptions, 2);
	DeliveryRecord *d;
	lease(f, "a", "ca", &d, NULL);
	assert_int_equal(nack(f, "a", ev, d->lease_token, 0, true, "no"), S_OK);
	/* a READY delivery is not a dead letter */
	assert_int_equal(purge(f, "b", ev), S_NOTFOUND);
	lease(f, "b", "cb", &d, NULL);
	assert_int_equal(ack(f, "b", ev, d->lease_token), S_OK);
	/* a still holds it as a dead letter */
	EventMeta *m = meta(f, ev);
	assert_int_equal(m->pending_subscriptions, 1);
	assert_false(m->payload_removed);
	assert_int_equal(payload_rc(f, ev), 0);
	assert_int_equal(history_expiries(f, ev, &at), 0);

	f->now += 60000;
	assert_int_equal(purge(f, "a", ev), S_OK);
	d = delivery(f, ev, a);
	assert_int_equal(d->state, ST(PURGED));
	assert_int_equal(d->done_ms, f->now);
	SubRecord *s = sub_record(f, a);
	assert_int_equal(s->purged, 1);
	assert_int_equal(s->dead, 0);
	m = meta(f, ev);
	assert_int_equal(m->pending_subscriptions, 0);
	assert_true(m->payload_removed);
	assert_int_equal(payload_rc(f, ev), MDB_NOTFOUND);
	assert_int_equal(history_expiries(f, ev, &at), 1);
	assert_int_equal(at, f->now + HIST_MS);
	struct counts c = check_counts(f, a);
	assert_int_equal(c.dlq_idx, 0);
	assert_int_equal(c.by_state[ST(PURGED)], 1);
	check_counts(f, b);
	/* final: neither purge nor replay finds it again */
	assert_int_equal(purge(f, "a", ev), S_NOTFOUND);
	assert_int_equal(replay(f, "a", ev), S_NOTFOUND);
	assert_int_equal(sub_record(f, a)->purged, 1);
	assert_int_equal(meta(f, ev)->pending_subscriptions, 0);
	assert_int_equal(history_expiries(f, ev, &at), 1);

	/* the other order: purge first, then the ack releases it */
	uint64_t ev2 = publish(f, "t", "second");
	lease(f, "a", "ca", &d, NULL);
	assert_int_equal(nack(f, "a", ev2, d->lease_token, 0, true, "no"),
			 S_OK);
	assert_int_equal(purge(f, "a", ev2), S_OK);
	assert_int_equal(meta(f, ev2)->pending_subscriptions, 1);
	assert_int_equal(payload_rc(f, ev2), 0);
	lease(f, "b", "cb", &d, NULL);
	assert_int_equal(ack(f, "b", ev2, d->lease_token), S_OK);
	assert_int_equal(meta(f, ev2)->pending_subscriptions, 0);
	assert_true(meta(f, ev2)->payload_removed);
	assert_int_equal(payload_rc(f, ev2), MDB_NOTFOUND);
	assert_int_equal(history_expiries(f, ev2, &at), 1);
	check_counts(f, a);
	check_counts(f, b);
}

/* A payload failing its checksum is dead-lettered at lease, not served. */
static void test_corrupt_payload_dead_letters(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 5, 30000, 100, 1000);
	uint64_t ev = publish(f, "t", "precious bytes");
	uint64_t ev2 = publish(f, "t", "more precious bytes");
	corrupt_payload(f, ev, 8);
	assert_int_equal(payload_rc(f, ev), STORE_EDECODE);

	DeliveryRecord *d;
	EventBody *body = (EventBody *)1;
	assert_int_equal(lease(f, "s", "c", &d, &body), ev);
	assert_null(body);
	assert_non_null(d);
	assert_int_equal(d->state, ST(DEAD));
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(DEAD));
	assert_int_equal(d->dead_reason, WHY(CORRUPT));
	assert_int_equal(d->lease_token, 0);
	assert_int_equal(d->n_history, 1);
	assert_int_equal(d->history[0]->outcome, OUT(CORRUPT));
	assert_non_null(strstr(d->error, "checksum"));
	SubRecord *s = sub_record(f, sid);
	assert_int_equal(s->dead, 1);
	assert_int_equal(s->leased, 0);
	assert_int_equal(s->ready, 1);
	struct counts c = check_counts(f, sid);
	assert_int_equal(c.lease_idx, 0);
	assert_int_equal(c.dlq_idx, 1);

	/* a direct write of wrong bytes (bad CRC) for the second event */
	begin(f);
	uint8_t junk[12] = {
		1, 2, 3, 4, 0x0a, 0x05, 'w', 'r', 'o', 'n', 'g', 0
	};
	payload_bytes_put(f->t.txn, f->st.dbi[DB_EVENTS], ev2, junk,
			  sizeof junk);
	commit(f);
	assert_int_equal(payload_rc(f, ev2), STORE_EDECODE);
	body = (EventBody *)1;
	assert_int_equal(lease(f, "s", "c", &d, &body), ev2);
	assert_null(body);
	d = delivery(f, ev2, sid);
	assert_int_equal(d->state, ST(DEAD));
	assert_int_equal(d->dead_reason, WHY(CORRUPT));

	/* replayed, it is still never served */
	assert_int_equal(replay(f, "s", ev), S_OK);
	body = (EventBody *)1;
	assert_int_equal(lease(f, "s", "c", &d, &body), ev);
	assert_null(body);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(DEAD));
	assert_int_equal(d->dead_reason, WHY(CORRUPT));
	assert_int_equal(d->n_history, 2);
	s = sub_record(f, sid);
	assert_int_equal(s->dead, 2);
	assert_int_equal(s->leased, 0);
	assert_int_equal(s->ready, 0);
	check_counts(f, sid);
}

/* Unsubscribing finishes READY, LEASED and DEAD deliveries alike. */
static void test_drop(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 5, 30000, 100, 1000);
	uint64_t e_dead = publish(f, "t", "1");
	uint64_t e_leased = publish(f, "t", "2");
	uint64_t e_ready = publish(f, "t", "3");
	uint64_t e_acked = publish(f, "t", "4");
	DeliveryRecord *d;
	lease(f, "s", "c", &d, NULL);
	assert_int_equal(nack(f, "s", e_dead, d->lease_token, 0, true, "x"),
			 S_OK);
	lease(f, "s", "c", &d, NULL);
	uint64_t tok = d->lease_token;
	/* ack the 4th after leasing it out of order */
	begin(f);
	SubRecord *s = sub_named(f, "s");
	EventBody *b;
	EventMeta *m;
	assert_int_equal(
		sched_lease(&f->t, s, e_acked, f->now, "c", &d, &b, &m), 0);
	uint64_t tok4 = d->lease_token;
	commit(f);
	assert_int_equal(ack(f, "s", e_acked, tok4), S_OK);
	struct counts c = check_counts(f, sid);
	assert_int_equal(c.ready_idx, 1);
	assert_int_equal(c.lease_idx, 1);
	assert_int_equal(c.dlq_idx, 1);

	begin(f);
	s = sub_named(f, "s");
	assert_int_equal(store_sub_unlink(&f->t, s), 0);
	uint64_t evs[] = { e_dead, e_leased, e_ready, e_acked };
	for (int i = 0; i < 4; i++)
		assert_int_equal(sched_drop(&f->t, s, evs[i]), 0);
	commit(f);
	for (int i = 0; i < 3; i++) {
		d = delivery(f, evs[i], sid);
		assert_int_equal(d->state, ST(UNSUBSCRIBED));
		assert_int_equal(d->done_ms, f->now);
		assert_int_equal(payload_rc(f, evs[i]), MDB_NOTFOUND);
		assert_int_equal(meta(f, evs[i])->pending_subscriptions, 0);
	}
	assert_int_equal(delivery(f, e_acked, sid)->state, ST(ACKED));
	c = check_counts(f, sid);
	assert_int_equal(c.by_state[ST(UNSUBSCRIBED)], 3);
	assert_int_equal(c.ready_idx + c.lease_idx + c.dlq_idx, 0);
	SubRecord *r = sub_record(f, sid);
	assert_true(r->deleting);
	assert_int_equal(r->acked, 1);
	/* the dropped lease's token no longer acks */
	begin(f);
	Status st;
	assert_int_equal(store_sub_get(&f->t, sid, &s), 0);
	assert_int_equal(sched_ack(&f->t, s, e_leased, tok, &st), 0);
	assert_int_equal(st, S_LOST);
	commit(f);
	assert_int_equal(delivery(f, e_leased, sid)->state, ST(UNSUBSCRIBED));
	assert_int_equal(sub_record(f, sid)->acked, 1);
}

/* A lease of an unsubscribed (deleting) subscription that expires is
 * finished as UNSUBSCRIBED, not retried; one of a deleted subscription
 * just loses its stale lease entry. */
static void test_expire_after_unsubscribe(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 5, 1000, 100, 1000);
	uint32_t gid = mk_sub(f, "g", "t", 5, 1000, 100, 1000);
	uint64_t ev = publish(f, "t", "x");
	DeliveryRecord *d;
	lease(f, "s", "c", &d, NULL);
	lease(f, "g", "c", &d, NULL);
	begin(f);
	assert_int_equal(store_sub_unlink(&f->t, sub_named(f, "s")), 0);
	assert_int_equal(store_sub_delete(&f->t, gid), 0);
	commit(f);
	f->now += 1000;
	assert_int_equal(end_leases(f, false), 2);
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(UNSUBSCRIBED));
	SubRecord *r = sub_record(f, sid);
	assert_int_equal(r->leased, 0);
	assert_int_equal(r->ready, 0);
	assert_int_equal(r->expired, 0);
	struct counts c = check_counts(f, sid);
	assert_int_equal(c.lease_idx, 0);
	/* no lease entries left at all */
	begin(f);
	uint64_t dl, e;
	uint32_t sub;
	assert_int_equal(store_lease_first(&f->t, &dl, &sub, &e), MDB_NOTFOUND);
	store_txn_abort(&f->t);
	/* s is done with the event; g's delivery is still counted */
	assert_int_equal(meta(f, ev)->pending_subscriptions, 1);
	assert_int_equal(payload_rc(f, ev), 0);
}

/* The first attempt and the newest 19 are kept; attempts counts all. */
static void test_history_capped(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 1000, 30000, 100, 1000);
	uint64_t ev = publish(f, "t", "x");
	DeliveryRecord *d;
	for (int i = 0; i < 105; i++) {
		lease(f, "s", "c", &d, NULL);
		assert_int_equal(
			nack(f, "s", ev, d->lease_token, 1, false, "e"), S_OK);
	}
	d = delivery(f, ev, sid);
	assert_int_equal(d->state, ST(READY));
	assert_int_equal(d->attempts, 105);
	assert_int_equal(d->n_history, 20);
	assert_int_equal(d->history[0]->attempt, 1);
	assert_int_equal(d->history[1]->attempt, 87);
	assert_int_equal(d->history[19]->attempt, 105);
	for (size_t i = 0; i < 20; i++)
		assert_int_equal(d->history[i]->outcome, OUT(NACKED));
	check_counts(f, sid);
}

/* A mix of events and outcomes: counters match the indexes throughout. */
static void test_counters_consistent_mixed(void **state)
{
	struct fx *f = *state;
	uint32_t sid = mk_sub(f, "s", "t", 2, 1000, 10, 20);
	uint32_t oid = mk_sub(f, "o", "t", 2, 1000, 10, 20);
	uint64_t evs[12];
	for (int i = 0; i < 12; i++)
		evs[i] = publish(f, "t", "payload");
	DeliveryRecord *d;
	int acks = 0;
	for (int round = 0; round < 30; round++) {
		uint64_t due, ev;
		begin(f);
		SubRecord *s = sub_named(f, "s");
		int rc = store_ready_first(&f->t, s->id, &due, &ev);
		store_txn_abort(&f->t);
		if (rc == MDB_NOTFOUND)
			break;
		ev = lease(f, "s", "c", &d, NULL);
		switch (ev % 4) {
		case 0:
			assert_int_equal(ack(f, "s", ev, d->lease_token), S_OK);
			acks++;
			break;
		case 1:
			assert_int_equal(
				nack(f, "s", ev, d->lease_token, 0, false, "e"),
				S_OK);
			break;
		case 2:
			f->now += 2000;
			assert_true(end_leases(f, false) >= 1);
			break;
		default:
			assert_int_equal(
				nack(f, "s", ev, d->lease_token, 0, true, "p"),
				S_OK);
			break;
		}
		check_counts(f, sid);
	}
	struct counts c = check_counts(f, sid);
	assert_int_equal(c.by_state[ST(ACKED)], acks);
	assert_int_equal(sub_record(f, sid)->acked, acks);
	assert_int_equal(c.by_state[ST(READY)] + c.by_state[ST(LEASED)] +
				 c.by_state[ST(DEAD)] + c.by_state[ST(ACKED)],
			 12);
	/* the other subscription was untouched */
	c = check_counts(f, oid);
	assert_int_equal(c.ready_idx, 12);
	for (int i = 0; i < 12; i++)
		assert_int_equal(
			meta(f, evs[i])->pending_subscriptions,
			delivery(f, evs[i], sid)->state == ST(ACKED) ? 1 : 2);
}

/* A transaction touching many subscriptions (a turn with many requests, a
 * topic with many subscriptions) must still count every lease, delivery and
 * ack: the txn's subscription cache once held only 64 records and lost
 * counter updates past that. N subscriptions on one topic, one event
 * published to all. */
enum { MANY = 70 };

static uint64_t many_subs(struct fx *f, uint32_t *ids)
{
	char name[32];
	for (int i = 0; i < MANY; i++) {
		snprintf(name, sizeof name, "sub-%03d", i);
		ids[i] = mk_sub(f, name, "many", 5, 30000, 100, 1000);
	}
	uint64_t ev = publish(f, "many", "fan-out");
	for (int i = 0; i < MANY; i++)
		assert_int_equal(sub_record(f, ids[i])->ready, 1);
	return ev;
}

/* Begin a txn and read every subscription: each is cached once. */
static void begin_full_cache(struct fx *f, const uint32_t *ids)
{
	SubRecord *s;
	begin(f);
	for (int i = 0; i < MANY; i++)
		assert_int_equal(store_sub_get(&f->t, ids[i], &s), 0);
	assert_int_equal(f->t.n_subs, MANY);
}

static void test_lease_counters_beyond_txn_cache(void **state)
{
	struct fx *f = *state;
	uint32_t ids[MANY];
	uint64_t ev = many_subs(f, ids);
	begin_full_cache(f, ids);
	SubRecord *s;
	assert_int_equal(store_sub_get(&f->t, ids[MANY - 1], &s), 0);
	DeliveryRecord *d;
	EventBody *b;
	EventMeta *m;
	assert_int_equal(sched_lease(&f->t, s, ev, T0, "c", &d, &b, &m), 0);
	assert_int_equal(d->state, ST(LEASED));
	commit(f);
	SubRecord *r = sub_record(f, ids[MANY - 1]);
	assert_int_equal(r->ready, 0);
	assert_int_equal(r->leased, 1);
	assert_int_equal(r->delivered, 1);
	check_counts(f, ids[MANY - 1]);
}

static void test_ack_counters_beyond_txn_cache(void **state)
{
	struct fx *f = *state;
	uint32_t ids[MANY];
	uint64_t ev = many_subs(f, ids);
	DeliveryRecord *d;
	assert_int_equal(lease(f, "sub-069", "c", &d, NULL), ev);
	uint64_t tok = d->lease_token;
	SubRecord *r = sub_record(f, ids[MANY - 1]);
	assert_int_equal(r->leased, 1);

	begin_full_cache(f, ids);
	SubRecord *s;
	assert_int_equal(store_sub_get(&f->t, ids[MANY - 1], &s), 0);
	Status st;
	assert_int_equal(sched_ack(&f->t, s, ev, tok, &st), 0);
	assert_int_equal(st, S_OK);
	commit(f);
	assert_int_equal(delivery(f, ev, ids[MANY - 1])->state, ST(ACKED));
	r = sub_record(f, ids[MANY - 1]);
	assert_int_equal(r->leased, 0);
	assert_int_equal(r->acked, 1);
	check_counts(f, ids[MANY - 1]);
}

int main(void)
{
	setenv("HANDOFF_TEST_NOSYNC", "1", 1);
	if (sodium_init() < 0)
		return 1;
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_enqueue_ready),
		T(test_lease_then_ack),
		T(test_ack_statuses),
		T(test_nack_permanent),
		T(test_max_attempts),
		T(test_nack_with_delay),
		T(test_nack_statuses),
		T(test_expiry_retries),
		T(test_expiry_exhausts_budget),
		T(test_expiry_while_paused),
		T(test_recover),
		T(test_release),
		T(test_extend),
		T(test_replay),
		T(test_purge_releases_payload),
		T(test_corrupt_payload_dead_letters),
		T(test_drop),
		T(test_expire_after_unsubscribe),
		T(test_history_capped),
		T(test_counters_consistent_mixed),
		T(test_lease_counters_beyond_txn_cache),
		T(test_ack_counters_beyond_txn_cache),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
