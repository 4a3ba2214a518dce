/*
 * test_restart.c — promise 11 (restarts are routine: SIGTERM exits 0 and
 * keeps everything, leased deliveries are ready again at once after any
 * restart, old lease tokens are refused, clients reconnect by themselves)
 * and the durability side of promise 5 (a confirmed ack survives kill -9).
 */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char CONFIG[] = "[defaults]\n"
			     "max_attempts = 3\n"
			     "ack_deadline = 500ms\n"
			     "backoff_min = 50ms\n"
			     "backoff_max = 200ms\n"
			     "[limits]\n"
			     "max_payload = 64K\n";

/* ---- SIGTERM: exit 0, everything kept ------------------------------------ */

static void test_sigterm_keeps_everything(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "c", 0);
	it_subscribe(c, "t", "s", 4, 30000, 50, 200);
	it_subscribe(c, "t", "other", 3, 0, 0, 0);
	uint64_t ida = it_publish1(c, "t", "to-ack", NULL, "idem-a");
	uint64_t idd = it_publish1(c, "t", "to-dead", NULL, "idem-d");
	uint64_t idr = it_publish1(c, "t", "to-stay", "kk", "idem-r");

	handoff_delivery *d = NULL;
	size_t got = 0;
	for (int round = 0; round < 10 && got < 2; round++) {
		size_t k = it_fetch(c, "s", 2 - got, 1000, &d);
		for (size_t i = 0; i < k; i++) {
			if (d[i].event_id == ida)
				assert_int_equal(
					it_ack1(c, "s", ida, d[i].lease_token),
					HANDOFF_OK);
			else if (d[i].event_id == idd)
				assert_int_equal(it_nack1(c, "s", idd,
							  d[i].lease_token, 0,
							  true, "broken"),
						 HANDOFF_OK);
			else
				fail_msg("unexpected delivery %llu",
					 (unsigned long long)d[i].event_id);
		}
		got += k;
		handoff_deliveries_free(d, k);
	}
	assert_int_equal(got, 2);

	broker_term(b); /* asserts exit status 0 */
	broker_spawn(b);

	/* Subscriptions and their policies. */
	handoff_subscription_info s = it_sub_info(c, "s");
	assert_int_equal(s.policy.max_attempts, 4);
	assert_int_equal(s.policy.ack_deadline_ms, 30000);
	assert_int_equal(s.ready, 1);
	assert_int_equal(s.leased, 0);
	assert_int_equal(s.dead, 1);
	handoff_subscription_info o = it_sub_info(c, "other");
	assert_int_equal(o.policy.max_attempts, 3);
	assert_int_equal(o.policy.ack_deadline_ms, 500);
	assert_int_equal(o.ready, 3);

	/* States. */
	handoff_trace *t = NULL;
	assert_int_equal(it_trace_sub(c, ida, "s", &t)->state,
			 HANDOFF_STATE_ACKED);
	handoff_trace_free(t);
	handoff_subscription_trace *st = it_trace_sub(c, idd, "s", &t);
	assert_int_equal(st->state, HANDOFF_STATE_DEAD);
	assert_int_equal(st->dead_reason, HANDOFF_DEAD_PERMANENT);
	assert_string_equal(st->error, "broken");
	handoff_trace_free(t);
	assert_true(it_dlq_has(c, "s", idd));

	/* Dedup records. */
	uint64_t id2 = 0;
	bool dup = false;
	handoff_event ev = { .payload = "to-stay",
			     .payload_len = 7,
			     .idempotency_key = "idem-r" };
	assert_int_equal(handoff_publish(c, "t", &ev, 1, &id2, &dup),
			 HANDOFF_OK);
	assert_true(dup);
	assert_int_equal(id2, idr);

	/* The ready one is delivered, first attempt, intact. */
	assert_int_equal(it_fetch(c, "s", 10, 2000, &d), 1);
	assert_int_equal(d[0].event_id, idr);
	assert_int_equal(d[0].attempt, 1);
	assert_memory_equal(d[0].payload, "to-stay", 7);
	assert_string_equal(d[0].key, "kk");
	assert_int_equal(it_ack1(c, "s", idr, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	assert_int_equal(it_fetch(c, "s", 10, 300, &d), 0);

	/* A second clean stop works as well. */
	broker_term(b);
	broker_spawn(b);
	assert_int_equal(it_sub_info(c, "s").dead, 1);
	handoff_close(c);
	broker_passed(b);
}

/* ---- leased deliveries come back at once after a restart ----------------- */

static void leases_recovered(broker *b, bool hard)
{
	handoff_client *c = it_connect(b, "before", 0);
	/* A 60 s ack deadline: expiry cannot explain a quick redelivery. */
	it_subscribe(c, "work", "s", 3, 60000, 50, 200);
	enum { N = 4 };
	uint64_t ids[N], tok[N];
	for (int i = 0; i < N; i++) {
		char p[32];
		snprintf(p, sizeof(p), "w%d", i);
		ids[i] = it_publish1(c, "work", p, NULL, NULL);
	}
	handoff_delivery *d = NULL;
	size_t got = 0;
	for (int round = 0; round < 10 && got < N; round++) {
		size_t k = it_fetch(c, "s", N, 1000, &d);
		for (size_t i = 0; i < k; i++) {
			int idx = -1;
			for (int j = 0; j < N; j++)
				if (ids[j] == d[i].event_id)
					idx = j;
			assert_true(idx >= 0);
			assert_int_equal(d[i].attempt, 1);
			tok[idx] = d[i].lease_token;
		}
		got += k;
		handoff_deliveries_free(d, k);
	}
	assert_int_equal(got, N);
	/* One of them is acked before the restart: it must stay acked. */
	assert_int_equal(it_ack1(c, "s", ids[0], tok[0]), HANDOFF_OK);
	assert_int_equal(it_sub_info(c, "s").leased, N - 1);

	broker_restart(b, hard);

	handoff_client *c2 = it_connect(b, "after", 0);
	/* Ready at once: the info shows them ready, not leased. */
	handoff_subscription_info info = it_sub_info(c2, "s");
	assert_int_equal(info.leased, 0);
	assert_int_equal(info.ready, N - 1);
	uint64_t t0 = it_now_ms();
	uint64_t newtok[N] = { 0 };
	got = 0;
	while (got < N - 1 && it_now_ms() - t0 < 10000) {
		size_t k = it_fetch(c2, "s", N, 500, &d);
		for (size_t i = 0; i < k; i++) {
			int idx = -1;
			for (int j = 1; j < N; j++)
				if (ids[j] == d[i].event_id)
					idx = j;
			assert_true(idx >= 1);
			assert_int_equal(newtok[idx], 0);
			assert_int_equal(d[i].attempt, 2);
			assert_true(d[i].lease_token != tok[idx]);
			newtok[idx] = d[i].lease_token;
		}
		got += k;
		handoff_deliveries_free(d, k);
	}
	assert_int_equal(got, N - 1);
	/* Well before the 60 s deadline (generous bound for slow builds). */
	assert_true(it_now_ms() - t0 < 10000);

	for (int i = 1; i < N; i++) {
		handoff_trace *t = NULL;
		handoff_subscription_trace *s =
			it_trace_sub(c2, ids[i], "s", &t);
		assert_int_equal(s->state, HANDOFF_STATE_LEASED);
		it_assert_consumer(s->consumer, "after");
		assert_int_equal(s->n_history, 2);
		assert_int_equal(s->history[0].attempt, 1);
		it_assert_consumer(s->history[0].consumer, "before");
		assert_int_equal(s->history[0].outcome,
				 HANDOFF_OUTCOME_BROKER_RESTART);
		assert_true(s->history[0].ended_ms > 0);
		assert_int_equal(s->history[1].attempt, 2);
		handoff_trace_free(t);
		/* The old consumer's token is refused (from its old handle,
		 * which reconnected by itself). */
		assert_int_equal(it_ack1(c, "s", ids[i], tok[i]),
				 HANDOFF_ELEASELOST);
		assert_int_equal(
			it_nack1(c, "s", ids[i], tok[i], 0, true, "stale"),
			HANDOFF_ELEASELOST);
	}
	/* The acked one stayed acked. */
	handoff_trace *t = NULL;
	assert_int_equal(it_trace_sub(c2, ids[0], "s", &t)->state,
			 HANDOFF_STATE_ACKED);
	handoff_trace_free(t);
	for (int i = 1; i < N; i++)
		assert_int_equal(it_ack1(c2, "s", ids[i], newtok[i]),
				 HANDOFF_OK);
	assert_int_equal(it_dlq_count(c2, "s"), 0);
	info = it_sub_info(c2, "s");
	assert_int_equal(info.ready + info.delayed + info.leased + info.dead,
			 0);
	handoff_close(c);
	handoff_close(c2);
	broker_passed(b);
}

static void test_leases_recovered_after_kill9(void **state)
{
	leases_recovered(*state, true);
}

static void test_leases_recovered_after_sigterm(void **state)
{
	leases_recovered(*state, false);
}

/* ---- a restart is no consumer failure: it uses no attempt budget --------
 * (broker/scheduler.c: "A broker restart is not the consumer's failure: no budget
 * used"). The attempt number still counts on, the history shows the
 * restart, and the budget still ends in the DLQ. */

static void test_restart_uses_no_budget(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "c", 0);
	it_subscribe(c, "x", "s", 2, 60000, 50, 200);
	uint64_t id = it_publish1(c, "x", "p", NULL, NULL);
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 1, 2000, &d), 1);
	handoff_deliveries_free(d, 1);
	broker_restart(b, true);
	for (uint32_t a = 2; a <= 3; a++) {
		/* Poll in short waits: this test is about budgets, not about
		 * long-poll wake-ups (test_delivery covers those). */
		size_t k = 0;
		uint64_t t0 = it_now_ms();
		while (k == 0 && it_now_ms() - t0 < 5000)
			k = it_fetch(c, "s", 1, 200, &d);
		assert_int_equal(k, 1);
		assert_int_equal(d[0].event_id, id);
		assert_int_equal(d[0].attempt, a);
		assert_false(it_dlq_has(c, "s", id));
		assert_int_equal(it_nack1(c, "s", id, d[0].lease_token, 0,
					  false, "after restart"),
				 HANDOFF_OK);
		handoff_deliveries_free(d, 1);
	}
	/* Two consumer failures on a budget of 2: dead now. */
	handoff_dead_letter *dl = NULL;
	assert_int_equal(handoff_dlq_show(c, "s", id, &dl), HANDOFF_OK);
	assert_int_equal(dl->reason, HANDOFF_DEAD_MAX_ATTEMPTS);
	assert_int_equal(dl->n_history, 3);
	assert_int_equal(dl->history[0].outcome,
			 HANDOFF_OUTCOME_BROKER_RESTART);
	assert_int_equal(dl->history[1].outcome, HANDOFF_OUTCOME_NACKED);
	assert_int_equal(dl->history[2].outcome, HANDOFF_OUTCOME_NACKED);
	assert_string_equal(dl->error, "after restart");
	handoff_dead_letters_free(dl, 1);
	assert_int_equal(it_fetch(c, "s", 1, 300, &d), 0);
	handoff_close(c);
	broker_passed(b);
}

/* ---- promise 5: a confirmed ack survives kill -9 ------------------------- */

static void test_ack_durable_across_kill9(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "c", 0);
	it_subscribe(c, "acks", "s", 3, 60000, 50, 200);
	enum { N = 20 };
	handoff_event evs[N];
	uint64_t ids[N];
	for (int i = 0; i < N; i++)
		evs[i] = (handoff_event){ .payload = "a", .payload_len = 1 };
	assert_int_equal(handoff_publish(c, "acks", evs, N, ids, NULL),
			 HANDOFF_OK);
	handoff_delivery *d = NULL;
	size_t got = 0;
	for (int round = 0; round < 10 && got < N; round++) {
		size_t k = it_fetch(c, "s", N, 1000, &d);
		handoff_ack_item items[N];
		int res[N];
		for (size_t i = 0; i < k; i++)
			items[i] = (handoff_ack_item){ d[i].event_id,
						       d[i].lease_token };
		if (k) {
			assert_int_equal(handoff_ack(c, "s", items, k, res),
					 HANDOFF_OK);
			for (size_t i = 0; i < k; i++)
				assert_int_equal(res[i], HANDOFF_OK);
		}
		got += k;
		handoff_deliveries_free(d, k);
	}
	assert_int_equal(got, N);
	broker_kill9(b);
	broker_spawn(b);
	/* Nothing comes back; every event is acked. */
	assert_int_equal(it_fetch(c, "s", N, 700, &d), 0);
	for (int i = 0; i < N; i++) {
		handoff_trace *t = NULL;
		assert_int_equal(it_trace_sub(c, ids[i], "s", &t)->state,
				 HANDOFF_STATE_ACKED);
		handoff_trace_free(t);
	}
	handoff_close(c);
	broker_passed(b);
}

/* ---- clients reconnect by themselves --------------------------------------- */

typedef struct poller {
	const char *url;
	int rc;	     /* first non-OK fetch/ack status, else OK */
	int fetches; /* fetch calls made */
	size_t n;
	uint64_t id;
} poller;

/* A consumer loop: long polls until it gets one delivery (or 25 s pass).
 * A restart may end a poll early and empty; it must never show up as an
 * error. */
static void *long_poller(void *arg)
{
	poller *p = arg;
	handoff_options o = { .deadline_ms = 30000, .consumer_name = "poller" };
	handoff_client *c = NULL;
	p->rc = handoff_connect(p->url, &o, &c);
	if (p->rc != HANDOFF_OK)
		return NULL;
	uint64_t t0 = it_now_ms();
	while (p->n == 0 && it_now_ms() - t0 < 25000) {
		handoff_delivery *d = NULL;
		p->fetches++;
		int rc = handoff_fetch(c, "s", 1, 20000, &d, &p->n);
		if (rc != HANDOFF_OK) {
			p->rc = rc;
			break;
		}
		if (p->n == 1) {
			p->id = d[0].event_id;
			handoff_ack_item it = { d[0].event_id,
						d[0].lease_token };
			int res = -1;
			if (handoff_ack(c, "s", &it, 1, &res) != HANDOFF_OK ||
			    res != HANDOFF_OK)
				p->rc = -2;
		}
		handoff_deliveries_free(d, p->n);
	}
	handoff_close(c);
	return NULL;
}

static void test_client_reconnects(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "c", 20000);
	it_subscribe(c, "r", "s", 3, 60000, 50, 200);

	/* A long poll in flight across a SIGTERM restart. */
	poller p = { .url = broker_url(b) };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, long_poller, &p), 0);
	it_sleep_ms(500);
	broker_restart(b, false);
	uint64_t id1 = it_publish1(c, "r", "after-term", NULL, NULL);
	pthread_join(th, NULL);
	if (p.rc != HANDOFF_OK)
		fprintf(stderr, "poller: %s after %d fetches\n",
			handoff_strerror(p.rc), p.fetches);
	assert_int_equal(p.rc, HANDOFF_OK);
	assert_int_equal(p.n, 1);
	assert_int_equal(p.id, id1);

	/* The same handle, across kill -9, for every kind of call. */
	broker_restart(b, true);
	uint64_t id2 = it_publish1(c, "r", "after-kill", NULL, NULL);
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 1, 2000, &d), 1);
	assert_int_equal(d[0].event_id, id2);
	uint64_t tok = d[0].lease_token;
	handoff_deliveries_free(d, 1);
	broker_restart(b, true);
	/* The lease was lost with the restart; the event comes back. */
	assert_int_equal(it_ack1(c, "s", id2, tok), HANDOFF_ELEASELOST);
	assert_int_equal(it_fetch(c, "s", 1, 2000, &d), 1);
	assert_int_equal(d[0].event_id, id2);
	assert_int_equal(d[0].attempt, 2);
	assert_int_equal(it_ack1(c, "s", id2, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	handoff_stats *st = NULL;
	assert_int_equal(handoff_get_stats(c, &st), HANDOFF_OK);
	assert_non_null(st->version);
	handoff_stats_free(st);
	handoff_close(c);
	broker_passed(b);
}

/* ---- many leases: recovery spread over turns loses none ------------------ */

/*
 * The broker recovers old leases a bounded number per loop turn, so that start-up
 * does not grow with them. With 2,500 leased when the broker is killed, every
 * one must come back (attempt 2, broker_restart in its history), none twice,
 * and a lease granted after the restart must not be taken back.
 */
static void test_many_leases_recovered(void **state)
{
	enum { N = 2500, BATCH = 500 };
	broker *b = *state;
	handoff_client *c = it_connect(b, "many", 30000);
	it_subscribe(c, "bulk", "s", 3, 600000, 50, 200);
	static handoff_event evs[BATCH];
	static char keys[BATCH][32];
	uint64_t ids[BATCH];
	for (int round = 0; round < N / BATCH; round++) {
		for (int i = 0; i < BATCH; i++) {
			snprintf(keys[i], sizeof keys[i], "k-%d-%d", round, i);
			evs[i] = (handoff_event){ .payload = "x",
						  .payload_len = 1,
						  .idempotency_key = keys[i] };
		}
		assert_int_equal(
			handoff_publish(c, "bulk", evs, BATCH, ids, NULL),
			HANDOFF_OK);
	}
	size_t leased = 0;
	while (leased < N) {
		handoff_delivery *d = NULL;
		size_t k = it_fetch(c, "s", 1000, 1000, &d);
		assert_true(k > 0);
		for (size_t i = 0; i < k; i++)
			assert_int_equal(d[i].attempt, 1);
		leased += k;
		handoff_deliveries_free(d, k);
	}
	assert_int_equal(leased, N);
	assert_int_equal(it_sub_info(c, "s").leased, N);

	broker_kill9(b);
	broker_spawn(b);

	/* Every delivery comes back exactly once, as attempt 2. */
	static unsigned char seen[N + 1];
	memset(seen, 0, sizeof seen);
	size_t back = 0;
	uint64_t first_id = 0;
	while (back < N) {
		handoff_delivery *d = NULL;
		size_t k = it_fetch(c, "s", 1000, 3000, &d);
		assert_true(k > 0);
		for (size_t i = 0; i < k; i++) {
			assert_int_equal(d[i].attempt, 2);
			if (!first_id)
				first_id = d[i].event_id;
			assert_true(d[i].event_id >= 1 && d[i].event_id <= N);
			assert_int_equal(seen[d[i].event_id], 0);
			seen[d[i].event_id] = 1;
		}
		back += k;
		handoff_deliveries_free(d, k);
	}
	/* Leases granted after the restart stay leased: nothing more comes. */
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 10, 500, &d), 0);
	handoff_subscription_info si = it_sub_info(c, "s");
	assert_int_equal(si.leased, N);
	assert_int_equal(si.ready, 0);
	handoff_trace *tr = NULL;
	handoff_subscription_trace *st = it_trace_sub(c, first_id, "s", &tr);
	assert_non_null(st);
	assert_true(st->n_history >= 2);
	assert_int_equal(st->history[0].outcome,
			 HANDOFF_OUTCOME_BROKER_RESTART);
	assert_int_equal(st->history[1].outcome, HANDOFF_OUTCOME_LEASED);
	handoff_trace_free(tr);
	assert_true(
		broker_log_contains(b, "event=leases_recovered count=2500"));
	handoff_close(c);
	broker_passed(b);
}

int main(void)
{
	it_default_config = CONFIG;
#define T(f) cmocka_unit_test_setup_teardown(f, it_setup, it_teardown)
	const struct CMUnitTest tests[] = {
		T(test_sigterm_keeps_everything),
		T(test_leases_recovered_after_kill9),
		T(test_leases_recovered_after_sigterm),
		T(test_restart_uses_no_budget),
		T(test_ack_durable_across_kill9),
		T(test_client_reconnects),
		T(test_many_leases_recovered),
	};
	return cmocka_run_group_tests_name("restart", tests, NULL, NULL);
}
