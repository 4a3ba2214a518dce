/*
 * test_handlers.c — request handlers (broker/handlers.h) applied to a real
 * store in a temporary folder, one write transaction per request, as a
 * turn applies them (but without the turn's background work, so an
 * unsubscribed subscription's deliveries stay undrained):
 *   trace: deliveries of a subscription being unsubscribed (ready, leased
 *   and dead ones not yet reached by the drain) show as UNSUBSCRIBED under
 *   their name, the other subscriptions' as they are;
 *   nack with release: a release with a delay or permanent is refused
 *   whole (BAD_REQUEST, nothing changed); an OK release makes the delivery
 *   ready at once, its attempt closed RELEASED with the reason, and the
 *   next fetch hands it out as attempt 1 again; a repeated release gets
 *   LEASE_LOST;
 *   extend: 0 ms (BAD_REQUEST), over 12 h (LIMIT_EXCEEDED), no items
 *   (BAD_REQUEST), an unknown subscription (NOT_FOUND) are refused whole
 *   and change nothing; 12 h exactly is accepted; per item OK, LEASE_LOST
 *   for a wrong token, NOT_FOUND for an unknown event; the trace shows the
 *   new deadline.
 *   pause and resume: see test_pause_resume.
 *   await: see test_await.
 */
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
#include "codec.h"
#include "config.h"
#include "handlers.h"
#include "leases.h"
#include "metrics.h"
#include "scheduler.h"
#include "store.h"

#define MAP_SIZE (64ull << 20)
#define T0	 1700000000000ull

#define BODY(x) HANDOFF__WIRE__REQUEST__BODY_##x
#define ST(x)	HANDOFF__WIRE__STATUS__##x
#define DS(x)	HANDOFF__WIRE__DELIVERY_STATE__DELIVERY_STATE_##x
#define OUT(x)	HANDOFF__WIRE__OUTCOME__OUTCOME_##x

struct fx {
	char base[PATH_MAX];
	char dir[PATH_MAX + 16];
	char err[512];
	struct config cfg;
	struct store st;
	bool open;
	struct metrics metrics;
	struct lease_counts lc;
	struct sched sched;
	struct handler_env env;
	struct arena a;
	struct txn t;
	uint64_t now;
};

static void on_lease(void *ctx, const char *consumer, int delta,
		     uint64_t leased_ms)
{
	(void)leased_ms;
	leases_add(ctx, consumer, delta);
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
	*state = f;
	if (!tmp || !*tmp || strlen(tmp) > PATH_MAX / 2)
		tmp = "/tmp";
	snprintf(f->base, sizeof f->base, "%s/handoff-test-handlers-XXXXXX",
		 tmp);
	if (!mkdtemp(f->base))
		return -1;
	snprintf(f->dir, sizeof f->dir, "%s/data", f->base);
	if (config_init(&f->cfg))
		return -1;
	f->cfg.max_attempts = 1;
	arena_init(&f->a);
	metrics_init(&f->metrics);
	if (leases_init(&f->lc))
		return -1;
	f->now = T0;
	if (store_open(&f->st, f->dir, MAP_SIZE, f->err, sizeof f->err))
		return -1;
	f->open = true;
	f->sched = (struct sched){ .history_ms = f->cfg.history_ms,
				   .on_lease = on_lease,
				   .ctx = &f->lc };
	f->env = (struct handler_env){ .cfg = &f->cfg,
				       .st = &f->st,
				       .metrics = &f->metrics,
				       .started_ms = T0,
				       .leases = &f->lc };
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
	leases_fini(&f->lc);
	config_free(&f->cfg);
	nftw(f->base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* Apply q in a transaction of its own, committed; the reply stays valid
 * until the next apply (it lives in the arena). */
static Reply *apply(struct fx *f, Request *q, int want)
{
	struct fetch_hold hold = { 0 };
	arena_reset(&f->a);
	assert_int_equal(store_txn_begin(&f->st, &f->a, true, f->now, &f->t),
			 0);
	f->t.sched = &f->sched;
	Reply *r = codec_new_reply(&f->a);
	assert_non_null(r);
	q->protocol_version = 1;
	assert_int_equal(handlers_apply(&f->env, &f->t, q, r, &hold), 0);
	assert_false(hold.hold);
	if ((int)r->status != want)
		fail_msg("request %d: status %d (%s), want %d", q->body_case,
			 r->status, r->message ? r->message : "", want);
	assert_int_equal(store_txn_commit(&f->t), 0);
	leases_commit(&f->lc);
	return r;
}

static void subscribe(struct fx *f, const char *topic, const char *name)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__SubscribeRequest s =
		HANDOFF__WIRE__SUBSCRIBE_REQUEST__INIT;
	s.topic = (char *)topic;
	s.subscription = (char *)name;
	q.body_case = BODY(SUBSCRIBE);
	q.subscribe = &s;
	apply(f, &q, ST(OK));
}

static void unsubscribe(struct fx *f, const char *name)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__UnsubscribeRequest u =
		HANDOFF__WIRE__UNSUBSCRIBE_REQUEST__INIT;
	u.subscription = (char *)name;
	q.body_case = BODY(UNSUBSCRIBE);
	q.unsubscribe = &u;
	apply(f, &q, ST(OK));
}

static uint64_t publish(struct fx *f, const char *topic)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__PublishRequest p = HANDOFF__WIRE__PUBLISH_REQUEST__INIT;
	Handoff__Wire__PublishEvent ev = HANDOFF__WIRE__PUBLISH_EVENT__INIT,
				    *evp = &ev;
	static int n;
	char idem[32];
	snprintf(idem, sizeof idem, "idem-%d", ++n);
	ev.idempotency_key = idem;
	ev.payload.data = (uint8_t *)"hello";
	ev.payload.len = 5;
	p.topic = (char *)topic;
	p.events = &evp;
	p.n_events = 1;
	q.body_case = BODY(PUBLISH);
	q.publish = &p;
	Reply *r = apply(f, &q, ST(OK));
	assert_int_equal(r->publish->n_event_ids, 1);
	return r->publish->event_ids[0];
}

/* Lease one delivery of sub: its token (the event must be ev). */
static uint64_t fetch_one(struct fx *f, const char *sub, uint64_t ev,
			  uint32_t want_attempt)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__FetchRequest fr = HANDOFF__WIRE__FETCH_REQUEST__INIT;
	static uint64_t seq;
	fr.subscription = (char *)sub;
	fr.max_events = 1;
	fr.consumer = (char *)"c1";
	fr.fetch_seq = ++seq;
	q.body_case = BODY(FETCH);
	q.fetch = &fr;
	Reply *r = apply(f, &q, ST(OK));
	assert_int_equal(r->fetch->n_deliveries, 1);
	assert_int_equal(r->fetch->deliveries[0]->event_id, ev);
	assert_int_equal(r->fetch->deliveries[0]->attempt, want_attempt);
	return r->fetch->deliveries[0]->lease_token;
}

/* A nack of one item; the item status, or -1 when the request failed. */
static int nack(struct fx *f, const char *sub, uint64_t ev, uint64_t tok,
		bool release, uint32_t delay, bool permanent, int want)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__NackRequest n = HANDOFF__WIRE__NACK_REQUEST__INIT;
	Handoff__Wire__NackItem it = HANDOFF__WIRE__NACK_ITEM__INIT, *itp = &it;
	it.event_id = ev;
	it.lease_token = tok;
	it.delay_ms = delay;
	it.permanent = permanent;
	it.reason = (char *)"consumer stopped";
	n.subscription = (char *)sub;
	n.items = &itp;
	n.n_items = 1;
	n.release = release;
	q.body_case = BODY(NACK);
	q.nack = &n;
	Reply *r = apply(f, &q, want);
	if (want != ST(OK))
		return -1;
	assert_int_equal(r->items->n_statuses, 1);
	return r->items->statuses[0];
}

/* An extend of n items (ev/tok each); the reply (statuses when OK). */
static Reply *extend(struct fx *f, const char *sub, size_t n,
		     const uint64_t *ev, const uint64_t *tok, uint32_t ms,
		     int want)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__ExtendRequest x = HANDOFF__WIRE__EXTEND_REQUEST__INIT;
	Handoff__Wire__ExtendItem it[4], *itp[4];
	assert_true(n <= 4);
	for (size_t i = 0; i < n; i++) {
		handoff__wire__extend_item__init(&it[i]);
		it[i].event_id = ev[i];
		it[i].lease_token = tok[i];
		itp[i] = &it[i];
	}
	x.subscription = (char *)sub;
	x.items = itp;
	x.n_items = n;
	x.extend_ms = ms;
	q.body_case = BODY(EXTEND);
	q.extend = &x;
	Reply *r = apply(f, &q, want);
	if (want == ST(OK))
		assert_int_equal(r->items->n_statuses, n);
	return r;
}

static Handoff__Wire__TraceReply *trace(struct fx *f, uint64_t ev)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__TraceRequest tr = HANDOFF__WIRE__TRACE_REQUEST__INIT;
	tr.event_id = ev;
	q.body_case = BODY(TRACE);
	q.trace = &tr;
	Reply *r = apply(f, &q, ST(OK));
	assert_non_null(r->trace);
	return r->trace;
}

static const Handoff__Wire__SubscriptionTrace *
sub_trace(const Handoff__Wire__TraceReply *t, const char *name)
{
	for (size_t i = 0; i < t->n_subscriptions; i++)
		if (!strcmp(t->subscriptions[i]->subscription, name))
			return t->subscriptions[i];
	fail_msg("no trace of subscription %s", name);
	return NULL;
}

/* ---- tests -------------------------------------------------------------- */

static void test_trace_unsubscribing(void **state)
{
	struct fx *f = *state;
	subscribe(f, "t", "keep");
	subscribe(f, "t", "ready-one");
	subscribe(f, "t", "leased-one");
	subscribe(f, "t", "dead-one");
	uint64_t ev = publish(f, "t");
	fetch_one(f, "leased-one", ev, 1);
	uint64_t tok = fetch_one(f, "dead-one", ev, 1);
	assert_int_equal(nack(f, "dead-one", ev, tok, false, 0, true, ST(OK)),
			 ST(OK));
	Handoff__Wire__TraceReply *t = trace(f, ev);
	assert_int_equal(sub_trace(t, "ready-one")->state, DS(READY));
	assert_int_equal(sub_trace(t, "leased-one")->state, DS(LEASED));
	assert_int_equal(sub_trace(t, "dead-one")->state, DS(DEAD));

	unsubscribe(f, "ready-one");
	unsubscribe(f, "leased-one");
	unsubscribe(f, "dead-one");
	/* no turn ran: the drain has reached none of them */
	t = trace(f, ev);
	assert_int_equal(t->n_subscriptions, 4);
	assert_int_equal(sub_trace(t, "keep")->state, DS(READY));
	assert_int_equal(sub_trace(t, "ready-one")->state, DS(UNSUBSCRIBED));
	assert_int_equal(sub_trace(t, "leased-one")->state, DS(UNSUBSCRIBED));
	assert_int_equal(sub_trace(t, "dead-one")->state, DS(UNSUBSCRIBED));
}

static void test_release(void **state)
{
	struct fx *f = *state;
	subscribe(f, "t", "s"); /* max_attempts 1 (the config's default) */
	uint64_t ev = publish(f, "t");
	uint64_t tok = fetch_one(f, "s", ev, 1);
	/* refused whole: a release takes no delay and is not permanent */
	nack(f, "s", ev, tok, true, 5, false, ST(BAD_REQUEST));
	nack(f, "s", ev, tok, true, 0, true, ST(BAD_REQUEST));
	assert_int_equal(sub_trace(trace(f, ev), "s")->state, DS(LEASED));

	f->now += 100;
	assert_int_equal(nack(f, "s", ev, tok, true, 0, false, ST(OK)), ST(OK));
	const Handoff__Wire__SubscriptionTrace *s =
		sub_trace(trace(f, ev), "s");
	assert_int_equal(s->state, DS(READY));
	assert_int_equal(s->due_ms, f->now);
	assert_int_equal(s->n_history, 1);
	assert_int_equal(s->history[0]->outcome, OUT(RELEASED));
	assert_string_equal(s->history[0]->error, "consumer stopped");
	/* repeated: the lease is gone */
	assert_int_equal(nack(f, "s", ev, tok, true, 0, false, ST(OK)),
			 ST(LEASE_LOST));

	/* max_attempts 1, yet delivered again, as attempt 1 */
	tok = fetch_one(f, "s", ev, 1);
	assert_int_equal(nack(f, "s", ev, tok, false, 0, false, ST(OK)),
			 ST(OK));
	s = sub_trace(trace(f, ev), "s");
	assert_int_equal(s->state, DS(DEAD));
	assert_int_equal(s->n_history, 2);
	assert_int_equal(s->history[1]->outcome, OUT(NACKED));
}

static void test_extend(void **state)
{
	struct fx *f = *state;
	subscribe(f, "t", "s");
	uint64_t ev = publish(f, "t");
	uint64_t tok = fetch_one(f, "s", ev, 1);
	uint64_t deadline = sub_trace(trace(f, ev), "s")->lease_deadline_ms;
	assert_true(deadline > f->now);

	/* refused whole, nothing changed */
	extend(f, "s", 1, &ev, &tok, 0, ST(BAD_REQUEST));
	extend(f, "s", 1, &ev, &tok, 12u * 3600 * 1000 + 1, ST(LIMIT_EXCEEDED));
	extend(f, "s", 0, NULL, NULL, 1000, ST(BAD_REQUEST));
	extend(f, "nosuch", 1, &ev, &tok, 1000, ST(NOT_FOUND));
	assert_int_equal(sub_trace(trace(f, ev), "s")->lease_deadline_ms,
			 deadline);

	/* per item */
	f->now += 10;
	uint64_t evs[3] = { ev, ev, ev + 100 }, toks[3] = { tok, tok + 1, tok };
	Reply *r = extend(f, "s", 3, evs, toks, 12u * 3600 * 1000, ST(OK));
	assert_int_equal(r->items->statuses[0], ST(OK));
	assert_int_equal(r->items->statuses[1], ST(LEASE_LOST));
	assert_int_equal(r->items->statuses[2], ST(NOT_FOUND));
	const Handoff__Wire__SubscriptionTrace *s =
		sub_trace(trace(f, ev), "s");
	assert_int_equal(s->state, DS(LEASED));
	assert_int_equal(s->lease_deadline_ms, f->now + 12u * 3600 * 1000);
	assert_int_equal(s->n_history, 1);
}

static uint32_t woken_sub; /* the last subscription the ready hook saw */

static void on_ready_seen(void *ctx, uint32_t sub, uint64_t due)
{
	(void)ctx;
	(void)due;
	woken_sub = sub;
}

/* A pause or resume request; the reply's body. */
static Handoff__Wire__PauseReply *pause_req(struct fx *f, const char *sub,
					    const char *reason, int want)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__PauseRequest p = HANDOFF__WIRE__PAUSE_REQUEST__INIT;
	Handoff__Wire__ResumeRequest r = HANDOFF__WIRE__RESUME_REQUEST__INIT;
	if (reason) {
		p.subscription = (char *)sub;
		p.reason = (char *)reason;
		q.body_case = BODY(PAUSE);
		q.pause = &p;
	} else {
		r.subscription = (char *)sub;
		q.body_case = BODY(RESUME);
		q.resume = &r;
	}
	Reply *rep = apply(f, &q, want);
	if (want != ST(OK))
		return NULL;
	assert_int_equal(rep->body_case, HANDOFF__WIRE__REPLY__BODY_PAUSE);
	return rep->pause;
}

/* pause: validated (reason required, subscription must exist); a paused
 * subscription still gets its deliveries enqueued, fetches of it answer
 * OK with no deliveries and paused set (a waiting one is held, to be woken
 * only by the resume); pausing again changes nothing, its first reason
 * kept; the state shows in list, stats and trace; resume wakes held
 * fetches through the ready hook and fetching works again; both are
 * audited once each. */
static void test_pause_resume(void **state)
{
	struct fx *f = *state;
	f->sched.on_ready = on_ready_seen;
	subscribe(f, "t", "s");
	subscribe(f, "t", "o");
	pause_req(f, "s", "", ST(BAD_REQUEST));
	pause_req(f, "missing", "x", ST(NOT_FOUND));
	Handoff__Wire__PauseReply *pr = pause_req(f, "s", "deploy", ST(OK));
	assert_true(pr->changed);
	assert_non_null(pr->paused);
	assert_string_equal(pr->paused->reason, "deploy");
	assert_int_equal(pr->paused->since_ms, f->now);
	pr = pause_req(f, "s", "other reason", ST(OK));
	assert_false(pr->changed);
	assert_string_equal(pr->paused->reason, "deploy");

	uint64_t ev = publish(f, "t");
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__FetchRequest fr = HANDOFF__WIRE__FETCH_REQUEST__INIT;
	fr.subscription = (char *)"s";
	fr.max_events = 5;
	fr.consumer = (char *)"c1";
	q.body_case = BODY(FETCH);
	q.fetch = &fr;
	Reply *r = apply(f, &q, ST(OK));
	assert_int_equal(r->fetch->n_deliveries, 0);
	assert_true(r->fetch->paused);
	fetch_one(f, "o", ev, 1); /* the other subscription is not paused */

	/* a long poll is held, paused, and never looked at by due time */
	struct fetch_hold hold = { 0 };
	arena_reset(&f->a);
	assert_int_equal(store_txn_begin(&f->st, &f->a, true, f->now, &f->t),
			 0);
	f->t.sched = &f->sched;
	Reply *held = codec_new_reply(&f->a);
	fr.wait_ms = 1000;
	q.protocol_version = 1;
	assert_int_equal(handlers_apply(&f->env, &f->t, &q, held, &hold), 0);
	assert_true(hold.hold);
	assert_true(hold.paused);
	assert_int_equal(hold.next_check, UINT64_MAX);
	store_txn_abort(&f->t);

	Request lq = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__ListSubscriptionsRequest l =
		HANDOFF__WIRE__LIST_SUBSCRIPTIONS_REQUEST__INIT;
	lq.body_case = BODY(LIST_SUBSCRIPTIONS);
	lq.list_subscriptions = &l;
	r = apply(f, &lq, ST(OK));
	assert_int_equal(r->list_subscriptions->n_subscriptions, 2);
	for (size_t i = 0; i < 2; i++) {
		Handoff__Wire__SubscriptionInfo *si =
			r->list_subscriptions->subscriptions[i];
		assert_int_equal(si->paused != NULL,
				 strcmp(si->name, "s") == 0);
		if (si->paused)
			assert_int_equal(si->ready, 1);
	}
	Request sq = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__StatsRequest st = HANDOFF__WIRE__STATS_REQUEST__INIT;
	sq.body_case = BODY(STATS);
	sq.stats = &st;
	r = apply(f, &sq, ST(OK));
	for (size_t i = 0; i < r->stats->n_subscriptions; i++)
		assert_int_equal(
			r->stats->subscriptions[i]->paused != NULL,
			strcmp(r->stats->subscriptions[i]->name, "s") == 0);
	assert_true(sub_trace(trace(f, ev), "s")->paused);
	assert_false(sub_trace(trace(f, ev), "o")->paused);

	woken_sub = 0;
	pr = pause_req(f, "s", NULL, ST(OK));
	assert_true(pr->changed);
	assert_null(pr->paused);
	assert_int_not_equal(woken_sub, 0); /* held fetches are woken */
	pr = pause_req(f, "s", NULL, ST(OK));
	assert_false(pr->changed);
	fetch_one(f, "s", ev, 1);
	assert_false(sub_trace(trace(f, ev), "s")->paused);

	Request aq = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__AuditListRequest al =
		HANDOFF__WIRE__AUDIT_LIST_REQUEST__INIT;
	aq.body_case = BODY(AUDIT_LIST);
	aq.audit_list = &al;
	r = apply(f, &aq, ST(OK));
	assert_int_equal(r->audit_list->n_records, 2);
	assert_string_equal(r->audit_list->records[0]->action, "pause");
	assert_string_equal(r->audit_list->records[0]->reason, "deploy");
	assert_string_equal(r->audit_list->records[1]->action, "resume");
}

/* ---- await (completion receipts) --------------------------------------- */

#define AR(x) HANDOFF__WIRE__AWAIT_RESULT__AWAIT_RESULT_##x

static unsigned done_calls;
static uint64_t done_event;

static void on_done(void *ctx, uint64_t event)
{
	(void)ctx;
	done_calls++;
	done_event = event;
}

/* Apply an await; *held tells whether the turn would hold it. */
static Reply *await_apply(struct fx *f, uint64_t ev, const char *sub,
			  uint32_t timeout_ms, int want, bool *held)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__AwaitRequest a = HANDOFF__WIRE__AWAIT_REQUEST__INIT;
	char *subs[1] = { (char *)sub };
	struct fetch_hold hold = { 0 };
	a.event_id = ev;
	a.timeout_ms = timeout_ms;
	a.subscriptions = sub ? subs : NULL;
	a.n_subscriptions = sub ? 1 : 0;
	q.body_case = BODY(AWAIT);
	q.await = &a;
	q.protocol_version = 1;
	arena_reset(&f->a);
	assert_int_equal(store_txn_begin(&f->st, &f->a, true, f->now, &f->t),
			 0);
	f->t.sched = &f->sched;
	Reply *r = codec_new_reply(&f->a);
	assert_non_null(r);
	assert_int_equal(handlers_apply(&f->env, &f->t, &q, r, &hold), 0);
	if ((int)r->status != want)
		fail_msg("await: status %d (%s), want %d", r->status,
			 r->message ? r->message : "", want);
	*held = hold.hold;
	if (hold.hold) {
		/* what the held copy is told at its deadline */
		bool complete = false;
		assert_true(hold.await);
		assert_int_equal(handlers_await_fill(&f->env, &f->t, &a, true,
						     true, r, &complete),
				 0);
		assert_true(complete);
		assert_int_equal(r->await->result, AR(TIMED_OUT));
	}
	assert_int_equal(store_txn_commit(&f->t), 0);
	return r;
}

static int await_state_of(const Reply *r, const char *sub)
{
	for (size_t i = 0; i < r->await->n_subscriptions; i++)
		if (strcmp(r->await->subscriptions[i]->subscription, sub) == 0)
			return r->await->subscriptions[i]->state;
	fail_msg("no await state for %s", sub);
	return -1;
}

/*
 * await: an incomplete await with a timeout is held (and told TIMED_OUT
 * with the states at its deadline), with 0 answered at once; the
 * scheduler's on_done hook fires for an ack and a dead letter of the
 * event; all acked -> ACKED; a dead letter -> DEAD_LETTERED naming it; an
 * unsubscribed subscription never acks (DEAD_LETTERED, "unsubscribed");
 * unknown ids and names not delivered the event are refused; a producer
 * key may await only its topics' events; a consumer key is refused by
 * auth before the handler (auth.c), which test_auth covers not.
 */
static void test_await(void **state)
{
	struct fx *f = *state;
	bool held;
	f->sched.on_done = on_done;
	subscribe(f, "t", "a");
	subscribe(f, "t", "b");
	subscribe(f, "u", "elsewhere");
	uint64_t ev = publish(f, "t");

	Reply *r = await_apply(f, ev, NULL, 1000, ST(OK), &held);
	assert_true(held);
	r = await_apply(f, ev, NULL, 0, ST(OK), &held);
	assert_false(held);
	assert_int_equal(r->await->result, AR(TIMED_OUT));
	assert_int_equal(r->await->n_subscriptions, 2);
	assert_int_equal(await_state_of(r, "a"), DS(READY));

	done_calls = 0;
	uint64_t tok = fetch_one(f, "a", ev, 1);
	assert_int_equal(done_calls, 0); /* a lease is not done */
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__AckRequest ack = HANDOFF__WIRE__ACK_REQUEST__INIT;
	Handoff__Wire__AckItem it = HANDOFF__WIRE__ACK_ITEM__INIT, *itp = &it;
	it.event_id = ev;
	it.lease_token = tok;
	ack.subscription = (char *)"a";
	ack.items = &itp;
	ack.n_items = 1;
	q.body_case = BODY(ACK);
	q.ack = &ack;
	apply(f, &q, ST(OK));
	assert_int_equal(done_calls, 1);
	assert_int_equal(done_event, ev);

	r = await_apply(f, ev, "a", 1000, ST(OK), &held);
	assert_false(held);
	assert_int_equal(r->await->result, AR(ACKED));
	assert_int_equal(r->await->n_subscriptions, 1);
	r = await_apply(f, ev, NULL, 1000, ST(OK), &held);
	assert_true(held); /* b has not acked */

	/* b dead-letters it: the await ends, naming b and why */
	tok = fetch_one(f, "b", ev, 1);
	assert_int_equal(nack(f, "b", ev, tok, false, 0, true, ST(OK)), ST(OK));
	assert_int_equal(done_calls, 2);
	r = await_apply(f, ev, NULL, 1000, ST(OK), &held);
	assert_false(held);
	assert_int_equal(r->await->result, AR(DEAD_LETTERED));
	assert_int_equal(await_state_of(r, "a"), DS(ACKED));
	assert_int_equal(await_state_of(r, "b"), DS(DEAD));
	assert_non_null(strstr(r->message, "'b'"));
	assert_non_null(strstr(r->message, "consumer stopped"));

	/* an unsubscribed subscription will never ack */
	uint64_t ev2 = publish(f, "t");
	fetch_one(f, "a", ev2, 1);
	unsubscribe(f, "b");
	r = await_apply(f, ev2, NULL, 1000, ST(OK), &held);
	assert_false(held);
	assert_int_equal(r->await->result, AR(DEAD_LETTERED));
	assert_int_equal(await_state_of(r, "b"), DS(UNSUBSCRIBED));
	assert_int_equal(await_state_of(r, "a"), DS(LEASED));
	assert_non_null(strstr(r->message, "unsubscribed"));

	/* refusals */
	await_apply(f, ev + 100, NULL, 0, ST(NOT_FOUND), &held);
	await_apply(f, ev, "elsewhere", 0, ST(BAD_REQUEST), &held);
	await_apply(f, ev, "bad name!", 0, ST(BAD_REQUEST), &held);
	await_apply(f, ev, NULL, f->cfg.max_wait_ms + 1, ST(LIMIT_EXCEEDED),
		    &held);

	/* a producer key: only the events of the topics it may publish to */
	struct config_key k = { .id = (char *)"prod", .roles = ROLE_PRODUCER };
	k.topics[0] = (char *)"u*";
	k.n_topics = 1;
	f->env.caller = &k;
	await_apply(f, ev, NULL, 0, ST(PERMISSION_DENIED), &held);
	k.topics[0] = (char *)"t";
	await_apply(f, ev, NULL, 0, ST(OK), &held);
	f->env.caller = NULL;

	/* a full table of held awaits refuses another one to hold */
	f->env.held_awaits = f->cfg.max_held_fetches;
	uint64_t ev3 = publish(f, "t");
	await_apply(f, ev3, NULL, 1000, ST(LIMIT_EXCEEDED), &held);
	assert_false(held);
	await_apply(f, ev3, NULL, 0, ST(OK), &held); /* no hold needed */
}

#undef AR

int main(void)
{
	setenv("HANDOFF_TEST_NOSYNC", "1", 1);
	if (sodium_init() < 0)
		return 1;
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_trace_unsubscribing), T(test_release), T(test_extend),
		T(test_pause_resume),	     T(test_await),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
