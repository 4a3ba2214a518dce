/*
 * test_await.c — completion receipts (issue 15, part 2) against a real
 * handoffd: an await held by the broker returns as soon as the last
 * awaited subscription acks (not at its timeout), only the named
 * subscriptions count, a dead letter ends it at once saying which and why
 * (so does deleting an awaited subscription),
 * the timeout reports each subscription's state, unknown and aged-out
 * event ids are NOT_FOUND, the held-await table is bounded, and an await
 * in flight across a broker restart (kill -9 and SIGTERM) still gets its
 * answer.
 */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char CONFIG[] = "[defaults]\n"
			     "max_attempts = 3\n"
			     "ack_deadline = 30s\n"
			     "backoff_min = 50ms\n"
			     "backoff_max = 200ms\n";

/* An await on its own handle, so that the test can ack meanwhile. */
struct waiter {
	const broker *b;
	uint64_t id;
	const char *const *subs;
	size_t n_subs;
	uint32_t timeout_ms;
	int rc;
	char message[256]; /* handoff_last_message() after the call */
	handoff_await_reply *r;
	uint64_t done_at; /* it_now_ms() when the call returned */
	volatile int done;
	pthread_t th;
};

static void *await_thread(void *arg)
{
	struct waiter *w = arg;
	handoff_client *c = it_connect(w->b, "waiter", 20000);
	w->rc = handoff_await(c, w->id, w->subs, w->n_subs, w->timeout_ms,
			      &w->r);
	w->done_at = it_now_ms();
	snprintf(w->message, sizeof w->message, "%s", handoff_last_message(c));
	__atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
	handoff_close(c);
	return NULL;
}

/* A copy of *init on the heap, waiting: a test that fails before the
 * join leaves the thread writing to memory that stays valid. */
static struct waiter *waiter_start(const struct waiter *init)
{
	struct waiter *w = malloc(sizeof *w);
	assert_non_null(w);
	*w = *init;
	assert_int_equal(pthread_create(&w->th, NULL, await_thread, w), 0);
	it_sleep_ms(500); /* held by now: ample for a connect and one send */
	return w;
}

/* Whether done_at is at most ms after since. Under load the await may
 * only reach the broker after the ack (or in its turn), and return before
 * since was taken: that is in time too. */
static bool within(uint64_t done_at, uint64_t since, uint64_t ms)
{
	return done_at <= since || done_at - since < ms;
}

static bool waiter_done(struct waiter *w)
{
	return __atomic_load_n(&w->done, __ATOMIC_SEQ_CST) != 0;
}

static void waiter_join(struct waiter *w)
{
	pthread_join(w->th, NULL);
}

static void waiter_free(struct waiter *w)
{
	handoff_await_free(w->r);
	free(w);
}

static const handoff_await_state *state_of(const handoff_await_reply *r,
					   const char *sub)
{
	for (size_t i = 0; i < r->n_subscriptions; i++)
		if (strcmp(r->subscriptions[i].subscription, sub) == 0)
			return &r->subscriptions[i];
	fail_msg("no state for subscription %s", sub);
	return NULL;
}

/* Lease the one delivery of sub and ack it; returns when the ack is in. */
static void fetch_and_ack(handoff_client *c, const char *sub, uint64_t id)
{
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, sub, 1, 2000, &d), 1);
	assert_int_equal(d[0].event_id, id);
	assert_int_equal(it_ack1(c, sub, id, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, 1);
}

/* ---- acked by all; a named subset ------------------------------------ */

static void test_acked_by_all(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "c", 0);
	it_subscribe(c, "orders", "billing", 3, 0, 0, 0);
	it_subscribe(c, "orders", "shipping", 3, 0, 0, 0);
	uint64_t id = it_publish1(c, "orders", "o-1", NULL, NULL);

	struct waiter *w = waiter_start(
		&(struct waiter){ .b = b, .id = id, .timeout_ms = 15000 });
	fetch_and_ack(c, "billing", id);
	it_sleep_ms(500);
	assert_false(waiter_done(w)); /* shipping has not acked yet */
	fetch_and_ack(c, "shipping", id);
	uint64_t acked_at = it_now_ms();
	waiter_join(w);
	assert_int_equal(w->rc, HANDOFF_OK);
	/* Woken by the ack itself, not by its 15 s timeout. */
	assert_true(within(w->done_at, acked_at, 2000));
	assert_int_equal(w->r->result, HANDOFF_AWAIT_ACKED);
	assert_int_equal(w->r->event_id, id);
	assert_string_equal(w->r->topic, "orders");
	assert_int_equal(w->r->n_subscriptions, 2);
	assert_int_equal(state_of(w->r, "billing")->state, HANDOFF_STATE_ACKED);
	assert_int_equal(state_of(w->r, "shipping")->state,
			 HANDOFF_STATE_ACKED);
	assert_int_equal(state_of(w->r, "shipping")->attempts, 1);
	assert_true(state_of(w->r, "shipping")->done_ms > 0);
	waiter_free(w);

	/* Already acked: the answer is at once. */
	handoff_await_reply *r = NULL;
	assert_int_equal(handoff_await(c, id, NULL, 0, 0, &r), HANDOFF_OK);
	assert_int_equal(r->result, HANDOFF_AWAIT_ACKED);
	handoff_await_free(r);

	/* Only the named subscriptions count. */
	uint64_t id2 = it_publish1(c, "orders", "o-2", NULL, NULL);
	static const char *const only_billing[] = { "billing" };
	struct waiter *w2 =
		waiter_start(&(struct waiter){ .b = b,
					       .id = id2,
					       .subs = only_billing,
					       .n_subs = 1,
					       .timeout_ms = 15000 });
	fetch_and_ack(c, "billing", id2);
	acked_at = it_now_ms();
	waiter_join(w2);
	assert_int_equal(w2->rc, HANDOFF_OK);
	assert_true(within(w2->done_at, acked_at, 2000));
	assert_int_equal(w2->r->result, HANDOFF_AWAIT_ACKED);
	assert_int_equal(w2->r->n_subscriptions, 1);
	assert_string_equal(w2->r->subscriptions[0].subscription, "billing");
	waiter_free(w2);
	/* ... while all of them have not. */
	assert_int_equal(handoff_await(c, id2, NULL, 0, 0, &r), HANDOFF_OK);
	assert_int_equal(r->result, HANDOFF_AWAIT_TIMED_OUT);
	assert_int_equal(state_of(r, "shipping")->state, HANDOFF_STATE_READY);
	handoff_await_free(r);
	handoff_close(c);
	broker_passed(b);
}

/* ---- dead-lettered by one --------------------------------------------- */

static void test_dead_lettered(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "c", 0);
	it_subscribe(c, "pay", "ledger", 3, 0, 0, 0);
	it_subscribe(c, "pay", "cards", 3, 0, 0, 0);
	uint64_t id = it_publish1(c, "pay", "p-1", NULL, NULL);

	struct waiter *w = waiter_start(
		&(struct waiter){ .b = b, .id = id, .timeout_ms = 15000 });
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "cards", 1, 2000, &d), 1);
	assert_int_equal(it_nack1(c, "cards", id, d[0].lease_token, 0, true,
				  "card declined"),
			 HANDOFF_OK);
	uint64_t nacked_at = it_now_ms();
	handoff_deliveries_free(d, 1);
	waiter_join(w);
	assert_int_equal(w->rc, HANDOFF_OK);
	assert_true(within(w->done_at, nacked_at, 2000)); /* at once */
	assert_int_equal(w->r->result, HANDOFF_AWAIT_DEAD_LETTERED);
	assert_non_null(strstr(w->r->message, "'cards'"));
	assert_non_null(strstr(w->r->message, "permanent"));
	assert_non_null(strstr(w->r->message, "card declined"));
	const handoff_await_state *s = state_of(w->r, "cards");
	assert_int_equal(s->state, HANDOFF_STATE_DEAD);
	assert_int_equal(s->dead_reason, HANDOFF_DEAD_PERMANENT);
	assert_string_equal(s->error, "card declined");
	assert_int_equal(s->attempts, 1);
	assert_true(s->dead_ms > 0);
	assert_int_equal(state_of(w->r, "ledger")->state, HANDOFF_STATE_READY);
	waiter_free(w);

	/* A subscription deleted while awaits wait on it will never ack:
	 * they end when its deliveries are dropped, named or not. */
	uint64_t id2 = it_publish1(c, "pay", "p-2", NULL, NULL);
	static const char *const only_cards[] = { "cards" };
	struct waiter *all = waiter_start(
		&(struct waiter){ .b = b, .id = id2, .timeout_ms = 15000 });
	struct waiter *named =
		waiter_start(&(struct waiter){ .b = b,
					       .id = id2,
					       .subs = only_cards,
					       .n_subs = 1,
					       .timeout_ms = 15000 });
	assert_int_equal(handoff_unsubscribe(c, "cards"), HANDOFF_OK);
	uint64_t gone_at = it_now_ms();
	waiter_join(all);
	waiter_join(named);
	assert_int_equal(all->rc, HANDOFF_OK);
	assert_int_equal(named->rc, HANDOFF_OK);
	assert_true(within(all->done_at, gone_at, 3000));
	assert_true(within(named->done_at, gone_at, 3000));
	assert_int_equal(all->r->result, HANDOFF_AWAIT_DEAD_LETTERED);
	assert_int_equal(named->r->result, HANDOFF_AWAIT_DEAD_LETTERED);
	assert_non_null(strstr(named->r->message, "unsubscribed"));
	assert_int_equal(named->r->n_subscriptions, 1);
	assert_int_equal(named->r->subscriptions[0].state,
			 HANDOFF_STATE_UNSUBSCRIBED);
	assert_int_equal(state_of(all->r, "ledger")->state,
			 HANDOFF_STATE_READY);
	waiter_free(all);
	waiter_free(named);
	handoff_close(c);
	broker_passed(b);
}

/* ---- timeout: each subscription's state -------------------------------- */

static void test_timeout(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "c", 0);
	it_subscribe(c, "mail", "sender", 3, 0, 0, 0);
	it_subscribe(c, "mail", "archive", 3, 0, 0, 0);
	it_subscribe(c, "mail", "audit", 3, 0, 0, 0);
	uint64_t id = it_publish1(c, "mail", "m-1", NULL, NULL);
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "sender", 1, 2000, &d), 1); /* leased */
	handoff_deliveries_free(d, 1);
	fetch_and_ack(c, "audit", id);
	assert_int_equal(handoff_pause(c, "archive", "maintenance", NULL),
			 HANDOFF_OK);

	handoff_await_reply *r = NULL;
	uint64_t t0 = it_now_ms();
	assert_int_equal(handoff_await(c, id, NULL, 0, 800, &r), HANDOFF_OK);
	uint64_t took = it_now_ms() - t0;
	assert_true(took >= 750);
	assert_true(took < 5000);
	assert_int_equal(r->result, HANDOFF_AWAIT_TIMED_OUT);
	assert_int_equal(r->n_subscriptions, 3);
	const handoff_await_state *s = state_of(r, "sender");
	assert_int_equal(s->state, HANDOFF_STATE_LEASED);
	it_assert_consumer(s->consumer, "c");
	assert_int_equal(s->attempts, 1);
	s = state_of(r, "archive");
	assert_int_equal(s->state, HANDOFF_STATE_READY);
	assert_true(s->paused);
	assert_int_equal(s->attempts, 0);
	assert_int_equal(state_of(r, "audit")->state, HANDOFF_STATE_ACKED);
	handoff_await_free(r);
	handoff_close(c);
	broker_passed(b);
}

/* ---- errors: unknown id, a name not of the topic, limits --------------- */

static void test_errors(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "c", 0);
	it_subscribe(c, "t", "s", 3, 0, 0, 0);
	it_subscribe(c, "other", "elsewhere", 3, 0, 0, 0);
	uint64_t id = it_publish1(c, "t", "x", NULL, NULL);
	handoff_await_reply *r = NULL;

	assert_int_equal(handoff_await(c, id + 1000, NULL, 0, 500, &r),
			 HANDOFF_ENOTFOUND);
	assert_null(r);
	assert_non_null(strstr(handoff_last_message(c), "never published"));
	assert_int_equal(handoff_await(c, 0, NULL, 0, 0, &r),
			 HANDOFF_ENOTFOUND);

	static const char *const bad[] = { "s", "elsewhere" };
	assert_int_equal(handoff_await(c, id, bad, 2, 500, &r),
			 HANDOFF_EBADREQUEST);
	assert_non_null(strstr(handoff_last_message(c), "'elsewhere'"));
	/* created after the event: it was never delivered it */
	it_subscribe(c, "t", "late", 3, 0, 0, 0);
	static const char *const late[] = { "late" };
	assert_int_equal(handoff_await(c, id, late, 1, 500, &r),
			 HANDOFF_EBADREQUEST);
	assert_int_equal(handoff_await(c, id, NULL, 0, 0, &r), HANDOFF_OK);
	assert_int_equal(r->n_subscriptions, 1); /* "late" is not awaited */
	handoff_await_free(r);
	r = NULL;

	assert_int_equal(handoff_await(c, id, NULL, 0, 61000, &r),
			 HANDOFF_ELIMIT); /* over max_wait (60 s) */
	assert_int_equal(handoff_await(c, id, NULL, 1, 0, &r), HANDOFF_EINVAL);
	handoff_close(c);
	broker_passed(b);
}

/* ---- the held-await table is bounded; aged-out events ------------------ */

static void test_limit_and_history(void **state)
{
	(void)state;
	broker *b = broker_start("[limits]\n"
				 "max_held_fetches = 1\n"
				 "[retention]\n"
				 "history = 1s\n");
	handoff_client *c = it_connect(b, "c", 0);
	it_subscribe(c, "t", "s", 3, 0, 0, 0);
	uint64_t id = it_publish1(c, "t", "x", NULL, NULL);

	/* Two awaits, one table slot: whichever comes second is refused at
	 * once; the first is held until the ack. */
	struct waiter *w1 = waiter_start(
		&(struct waiter){ .b = b, .id = id, .timeout_ms = 15000 });
	struct waiter *w2 = waiter_start(
		&(struct waiter){ .b = b, .id = id, .timeout_ms = 15000 });
	for (int i = 0; i < 200 && !waiter_done(w1) && !waiter_done(w2); i++)
		it_sleep_ms(50);
	struct waiter *refused = waiter_done(w1) ? w1 : w2;
	struct waiter *held = refused == w1 ? w2 : w1;
	assert_true(waiter_done(refused));
	assert_false(waiter_done(held));
	assert_int_equal(refused->rc, HANDOFF_ELIMIT);
	assert_non_null(strstr(refused->message, "max_held_fetches"));
	/* an await that needs no holding is answered all the same */
	handoff_await_reply *r = NULL;
	assert_int_equal(handoff_await(c, id, NULL, 0, 0, &r), HANDOFF_OK);
	handoff_await_free(r);
	r = NULL;
	/* stats (and GET /metrics) count the held one */
	handoff_stats *st = NULL;
	assert_int_equal(handoff_get_stats(c, &st), HANDOFF_OK);
	assert_int_equal(st->held_awaits, 1);
	handoff_stats_free(st);
	fetch_and_ack(c, "s", id);
	waiter_join(held);
	waiter_join(refused);
	assert_int_equal(held->rc, HANDOFF_OK);
	assert_int_equal(held->r->result, HANDOFF_AWAIT_ACKED);
	waiter_free(w1);
	waiter_free(w2);

	/* Past the history period the record is gone: NOT_FOUND, and the
	 * message says why rather than "never published". */
	int rc = HANDOFF_OK;
	for (int i = 0; i < 100 && rc == HANDOFF_OK; i++) {
		it_sleep_ms(100);
		rc = handoff_await(c, id, NULL, 0, 0, &r);
		handoff_await_free(r);
		r = NULL;
	}
	assert_int_equal(rc, HANDOFF_ENOTFOUND);
	assert_non_null(strstr(handoff_last_message(c), "history period"));
	handoff_close(c);
	broker_passed(b);
	broker_cleanup(b);
}

/* ---- a broker restart while an await is held --------------------------- */

static void restart_while_waiting(broker *b, handoff_client *c, bool hard)
{
	uint64_t id =
		it_publish1(c, "jobs", hard ? "kill" : "term", NULL, NULL);
	struct waiter *w = waiter_start(
		&(struct waiter){ .b = b, .id = id, .timeout_ms = 20000 });
	broker_restart(b, hard);
	assert_false(waiter_done(w)); /* the client resends, not fails */
	fetch_and_ack(c, "worker", id);
	uint64_t acked_at = it_now_ms();
	waiter_join(w);
	assert_int_equal(w->rc, HANDOFF_OK);
	assert_int_equal(w->r->result, HANDOFF_AWAIT_ACKED);
	assert_true(
		within(w->done_at, acked_at, 5000)); /* not at the timeout */
	waiter_free(w);
}

static void test_restart_while_waiting(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "c", 20000);
	it_subscribe(c, "jobs", "worker", 3, 0, 0, 0);
	restart_while_waiting(b, c, true);
	restart_while_waiting(b, c, false);
	handoff_close(c);
	broker_passed(b);
}

int main(void)
{
	it_default_config = CONFIG;
#define T(f) cmocka_unit_test_setup_teardown(f, it_setup, it_teardown)
	const struct CMUnitTest tests[] = {
		T(test_acked_by_all),
		T(test_dead_lettered),
		T(test_timeout),
		T(test_errors),
		cmocka_unit_test(test_limit_and_history),
		T(test_restart_while_waiting),
	};
	return cmocka_run_group_tests_name("await", tests, NULL, NULL);
}
