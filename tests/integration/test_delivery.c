/*
 * test_delivery.c — promises 4 (at-least-once to every subscription, no
 * head-of-line blocking between subscriptions), 5 (only an ack by the
 * current lease ends a delivery; an extended lease is kept past its first
 * deadline) and 6 (bounded, visible retries), against a real handoffd.
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

/* ---- subscribe: defaults, idempotence, conflict -------------------------- */

static void test_subscribe_policy(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "admin", 0);
	handoff_policy eff = { 0 };
	bool created = false;
	/* All-zero policy = the [defaults] of the config file. */
	assert_int_equal(
		handoff_subscribe(c, "t", "defaults", NULL, &created, &eff),
		HANDOFF_OK);
	assert_true(created);
	assert_int_equal(eff.max_attempts, 3);
	assert_int_equal(eff.ack_deadline_ms, 500);
	assert_int_equal(eff.backoff_min_ms, 50);
	assert_int_equal(eff.backoff_max_ms, 200);
	/* Again: OK, not created. */
	created = true;
	assert_int_equal(
		handoff_subscribe(c, "t", "defaults", NULL, &created, NULL),
		HANDOFF_OK);
	assert_false(created);
	/* Explicit values equal to the defaults are the same policy. */
	handoff_policy same = { 3, 500, 50, 200 };
	assert_int_equal(
		handoff_subscribe(c, "t", "defaults", &same, &created, NULL),
		HANDOFF_OK);
	assert_false(created);
	/* Another policy or topic: conflict, and the original is unchanged. */
	handoff_policy other = { 7, 500, 50, 200 };
	assert_int_equal(
		handoff_subscribe(c, "t", "defaults", &other, &created, NULL),
		HANDOFF_ECONFLICT);
	assert_int_equal(
		handoff_subscribe(c, "t2", "defaults", NULL, &created, NULL),
		HANDOFF_ECONFLICT);
	handoff_subscription_info info = it_sub_info(c, "defaults");
	assert_int_equal(info.policy.max_attempts, 3);
	assert_int_equal(info.policy.ack_deadline_ms, 500);
	/* An explicit policy is kept as given. */
	assert_true(it_subscribe(c, "t", "custom", 9, 1234, 10, 900));
	info = it_sub_info(c, "custom");
	assert_int_equal(info.policy.max_attempts, 9);
	assert_int_equal(info.policy.ack_deadline_ms, 1234);
	assert_int_equal(info.policy.backoff_min_ms, 10);
	assert_int_equal(info.policy.backoff_max_ms, 900);
	/* Unknown subscription. */
	handoff_delivery *d = NULL;
	size_t n = 0;
	assert_int_equal(handoff_fetch(c, "no-such-sub", 1, 0, &d, &n),
			 HANDOFF_ENOTFOUND);
	handoff_close(c);
	broker_passed(b);
}

/* ---- promise 4+6: fan-out, one subscription fails everything ------------ */

static void test_fanout_one_fails(void **state)
{
	broker *b = *state;
	handoff_client *admin = it_connect(b, "admin", 0);
	handoff_client *good = it_connect(b, "good-consumer", 0);
	handoff_client *bad = it_connect(b, "bad-consumer", 0);
	it_subscribe(admin, "orders", "good", 3, 3000, 50, 200);
	it_subscribe(admin, "orders", "bad", 3, 3000, 50, 200);

	enum { N = 5 };
	uint64_t ids[N];
	for (int i = 0; i < N; i++) {
		char p[32];
		snprintf(p, sizeof(p), "order-%d", i);
		ids[i] = it_publish1(admin, "orders", p, "k", NULL);
	}
	/* A subscription made after the publishes gets none of them. */
	it_subscribe(admin, "orders", "late", 3, 3000, 50, 200);

	size_t good_acked = 0, bad_nacks = 0;
	uint64_t t0 = it_now_ms();
	while ((good_acked < N || it_dlq_count(admin, "bad") < N) &&
	       it_now_ms() - t0 < 30000) {
		handoff_delivery *d = NULL;
		size_t k = it_fetch(good, "good", 10, 50, &d);
		for (size_t i = 0; i < k; i++) {
			assert_int_equal(d[i].attempt, 1);
			assert_int_equal(it_ack1(good, "good", d[i].event_id,
						 d[i].lease_token),
					 HANDOFF_OK);
			good_acked++;
		}
		handoff_deliveries_free(d, k);
		k = it_fetch(bad, "bad", 10, 100, &d);
		for (size_t i = 0; i < k; i++) {
			char reason[64];
			snprintf(reason, sizeof(reason), "boom on attempt %u",
				 d[i].attempt);
			assert_true(d[i].attempt >= 1 && d[i].attempt <= 3);
			assert_int_equal(it_nack1(bad, "bad", d[i].event_id,
						  d[i].lease_token, 0, false,
						  reason),
					 HANDOFF_OK);
			bad_nacks++;
		}
		handoff_deliveries_free(d, k);
	}
	assert_int_equal(good_acked, N);
	assert_int_equal(bad_nacks, 3 * N);
	assert_int_equal(it_dlq_count(admin, "bad"), N);

	/* The failing subscription: each event dead with max_attempts, the
	 * last error text, and 3 nacked attempts in its history. */
	for (int i = 0; i < N; i++) {
		handoff_dead_letter *dl = NULL;
		assert_int_equal(handoff_dlq_show(admin, "bad", ids[i], &dl),
				 HANDOFF_OK);
		assert_int_equal(dl->event_id, ids[i]);
		assert_int_equal(dl->reason, HANDOFF_DEAD_MAX_ATTEMPTS);
		assert_string_equal(dl->error, "boom on attempt 3");
		assert_int_equal(dl->attempts, 3);
		assert_int_equal(dl->replays, 0);
		assert_int_equal(dl->n_history, 3);
		for (uint32_t a = 0; a < 3; a++) {
			handoff_attempt *h = &dl->history[a];
			char want[64];
			snprintf(want, sizeof(want), "boom on attempt %u",
				 a + 1);
			assert_int_equal(h->attempt, a + 1);
			assert_int_equal(h->outcome, HANDOFF_OUTCOME_NACKED);
			assert_string_equal(h->error, want);
			it_assert_consumer(h->consumer, "bad-consumer");
			assert_true(h->leased_ms > 0);
			assert_true(h->ended_ms >= h->leased_ms);
			if (a < 2) {
				it_assert_backoff(h->retry_delay_ms, a + 1, 50,
						  200);
				/* Not redelivered before the delay. */
				assert_true(dl->history[a + 1].leased_ms + 2 >=
					    h->ended_ms + h->retry_delay_ms);
			}
		}
		assert_true(dl->dead_ms >= dl->history[2].ended_ms);
		handoff_dead_letters_free(dl, 1);

		/* The trace shows both sides. */
		handoff_trace *t = NULL;
		handoff_subscription_trace *g =
			it_trace_sub(admin, ids[i], "good", &t);
		assert_int_equal(g->state, HANDOFF_STATE_ACKED);
		assert_true(g->done_ms > 0);
		assert_int_equal(g->n_history, 1);
		assert_int_equal(g->history[0].outcome, HANDOFF_OUTCOME_ACKED);
		it_assert_consumer(g->history[0].consumer, "good-consumer");
		handoff_subscription_trace *x = it_trace_find(t, "bad");
		assert_int_equal(x->state, HANDOFF_STATE_DEAD);
		assert_int_equal(x->dead_reason, HANDOFF_DEAD_MAX_ATTEMPTS);
		assert_string_equal(x->error, "boom on attempt 3");
		assert_int_equal(x->n_history, 3);
		handoff_trace_free(t);
	}

	handoff_subscription_stats gs = it_sub_stats(admin, "good");
	assert_int_equal(gs.acked, N);
	assert_int_equal(gs.ready + gs.delayed + gs.leased + gs.dead, 0);
	assert_int_equal(gs.delivered, N);
	handoff_subscription_stats bs = it_sub_stats(admin, "bad");
	assert_int_equal(bs.acked, 0);
	assert_int_equal(bs.nacked, 3 * N);
	assert_int_equal(bs.delivered, 3 * N);
	assert_int_equal(bs.dead_lettered, N);
	assert_int_equal(bs.dead, N);
	assert_int_equal(bs.ready + bs.delayed + bs.leased, 0);

	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(admin, "late", 10, 200, &d), 0);
	assert_int_equal(it_fetch(good, "good", 10, 300, &d), 0);
	assert_int_equal(it_fetch(bad, "bad", 10, 300, &d), 0);
	handoff_close(admin);
	handoff_close(good);
	handoff_close(bad);
	broker_passed(b);
}

/* ---- promise 4: a dead or hogging subscription does not delay another ---- */

static void test_stuck_subscription_does_not_block(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "fast-consumer", 0);
	handoff_client *hog = it_connect(b, "hog", 0);
	it_subscribe(c, "feed", "fast", 3, 5000, 50, 200);
	it_subscribe(c, "feed", "never-fetched", 3, 5000, 50, 200);
	it_subscribe(c, "feed", "hogging", 3, 60000, 50, 200);

	enum { N = 60 };
	handoff_event evs[10];
	char payloads[10][16];
	uint64_t ids[N];
	for (int batch = 0; batch < N / 10; batch++) {
		for (int j = 0; j < 10; j++) {
			snprintf(payloads[j], sizeof(payloads[j]), "e%d",
				 batch * 10 + j);
			evs[j] = (handoff_event){ .payload = payloads[j],
						  .payload_len =
							  strlen(payloads[j]) };
		}
		assert_int_equal(handoff_publish(c, "feed", evs, 10,
						 ids + batch * 10, NULL),
				 HANDOFF_OK);
		/* The hog leases everything it can and never acks. */
		handoff_delivery *d = NULL;
		size_t k = it_fetch(hog, "hogging", 100, 0, &d);
		handoff_deliveries_free(d, k);
	}

	uint64_t t0 = it_now_ms();
	size_t got = 0;
	bool *seen_id = calloc(N, sizeof(bool));
	assert_non_null(seen_id);
	while (got < N && it_now_ms() - t0 < 10000) {
		handoff_delivery *d = NULL;
		size_t k = it_fetch(c, "fast", 25, 1000, &d);
		for (size_t i = 0; i < k; i++) {
			int idx = -1;
			for (int j = 0; j < N; j++)
				if (ids[j] == d[i].event_id)
					idx = j;
			assert_true(idx >= 0);
			assert_false(seen_id[idx]);
			seen_id[idx] = true;
			assert_int_equal(d[i].attempt, 1);
			assert_int_equal(it_ack1(c, "fast", d[i].event_id,
						 d[i].lease_token),
					 HANDOFF_OK);
			got++;
		}
		handoff_deliveries_free(d, k);
	}
	free(seen_id);
	assert_int_equal(got, N);

	handoff_subscription_info nf = it_sub_info(c, "never-fetched");
	assert_int_equal(nf.ready, N);
	assert_int_equal(nf.leased + nf.dead, 0);
	handoff_subscription_info hg = it_sub_info(c, "hogging");
	assert_int_equal(hg.leased, N);
	handoff_subscription_info fs = it_sub_info(c, "fast");
	assert_int_equal(fs.ready + fs.delayed + fs.leased + fs.dead, 0);

	/* The never-fetched subscription still gets every event. */
	size_t late = 0;
	for (int round = 0; round < 10 && late < N; round++) {
		handoff_delivery *d = NULL;
		size_t k = it_fetch(c, "never-fetched", 100, 1000, &d);
		for (size_t i = 0; i < k; i++)
			assert_int_equal(it_ack1(c, "never-fetched",
						 d[i].event_id,
						 d[i].lease_token),
					 HANDOFF_OK);
		late += k;
		handoff_deliveries_free(d, k);
	}
	assert_int_equal(late, N);
	handoff_close(hog);
	handoff_close(c);
	broker_passed(b);
}

/* ---- promise 5: an expired lease is retried; its token is dead ---------- */

static void test_lease_expiry(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "slowpoke", 0);
	it_subscribe(c, "jobs", "workers", 3, 300, 50, 100);
	uint64_t id = it_publish1(c, "jobs", "job-1", NULL, NULL);

	handoff_delivery *d = NULL;
	uint64_t wall0 = it_wall_ms();
	assert_int_equal(it_fetch(c, "workers", 1, 2000, &d), 1);
	uint64_t t_first = it_now_ms();
	assert_int_equal(d[0].event_id, id);
	assert_int_equal(d[0].attempt, 1);
	uint64_t tok1 = d[0].lease_token;
	/* The deadline is about now + 300 ms (generous clock slack). */
	assert_true(d[0].lease_deadline_ms + 100 >= wall0 + 300);
	assert_true(d[0].lease_deadline_ms <= it_wall_ms() + 300 + 1000);
	handoff_deliveries_free(d, 1);

	handoff_trace *t = NULL;
	handoff_subscription_trace *s = it_trace_sub(c, id, "workers", &t);
	assert_int_equal(s->state, HANDOFF_STATE_LEASED);
	it_assert_consumer(s->consumer, "slowpoke");
	assert_true(s->lease_deadline_ms > 0);
	handoff_trace_free(t);

	/* No ack: it comes back as attempt 2, with a new token. */
	assert_int_equal(it_fetch(c, "workers", 1, 5000, &d), 1);
	uint64_t waited = it_now_ms() - t_first;
	assert_int_equal(d[0].event_id, id);
	assert_int_equal(d[0].attempt, 2);
	assert_true(waited >= 250);
	uint64_t tok2 = d[0].lease_token;
	assert_true(tok2 != tok1);
	handoff_deliveries_free(d, 1);

	/* The old token is refused and changes nothing. */
	assert_int_equal(it_ack1(c, "workers", id, tok1), HANDOFF_ELEASELOST);
	assert_int_equal(it_nack1(c, "workers", id, tok1, 0, true, "late"),
			 HANDOFF_ELEASELOST);
	s = it_trace_sub(c, id, "workers", &t);
	assert_int_equal(s->state, HANDOFF_STATE_LEASED);
	assert_int_equal(s->n_history, 2);
	assert_int_equal(s->history[0].attempt, 1);
	assert_int_equal(s->history[0].outcome, HANDOFF_OUTCOME_EXPIRED);
	assert_int_equal(s->history[1].attempt, 2);
	assert_int_equal(s->history[1].outcome, HANDOFF_OUTCOME_LEASED);
	handoff_trace_free(t);
	assert_true(!it_dlq_has(c, "workers", id));

	/* The current token acks it for good. */
	assert_int_equal(it_ack1(c, "workers", id, tok2), HANDOFF_OK);
	s = it_trace_sub(c, id, "workers", &t);
	assert_int_equal(s->state, HANDOFF_STATE_ACKED);
	assert_int_equal(s->history[1].outcome, HANDOFF_OUTCOME_ACKED);
	handoff_trace_free(t);
	handoff_subscription_stats st = it_sub_stats(c, "workers");
	assert_int_equal(st.expired, 1);
	assert_int_equal(st.acked, 1);
	/* Acked stays acked: nothing comes back after another deadline. */
	assert_int_equal(it_fetch(c, "workers", 1, 800, &d), 0);
	handoff_close(c);
	broker_passed(b);
}

/* ---- promise 5+6: expiry with no consumer at all runs out to the DLQ ----- */

static void test_expiry_until_dead(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "ghost", 0);
	it_subscribe(c, "jobs", "ghosts", 2, 300, 50, 100);
	uint64_t id = it_publish1(c, "jobs", "job-x", NULL, NULL);
	handoff_delivery *d = NULL;
	for (uint32_t a = 1; a <= 2; a++) {
		assert_int_equal(it_fetch(c, "ghosts", 1, 5000, &d), 1);
		assert_int_equal(d[0].attempt, a);
		handoff_deliveries_free(d, 1);
	}
	/* After the second lease expires, it is dead, never acked. */
	uint64_t t0 = it_now_ms();
	while (!it_dlq_has(c, "ghosts", id) && it_now_ms() - t0 < 5000)
		it_sleep_ms(50);
	handoff_dead_letter *dl = NULL;
	assert_int_equal(handoff_dlq_show(c, "ghosts", id, &dl), HANDOFF_OK);
	assert_int_equal(dl->reason, HANDOFF_DEAD_MAX_ATTEMPTS);
	assert_int_equal(dl->attempts, 2);
	assert_int_equal(dl->n_history, 2);
	assert_int_equal(dl->history[0].outcome, HANDOFF_OUTCOME_EXPIRED);
	assert_int_equal(dl->history[1].outcome, HANDOFF_OUTCOME_EXPIRED);
	handoff_dead_letters_free(dl, 1);
	assert_int_equal(it_fetch(c, "ghosts", 1, 300, &d), 0);
	handoff_close(c);
	broker_passed(b);
}

/* ---- promise 6: a consumer-chosen delay is honoured ---------------------- */

static void test_nack_delay(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "c", 0);
	it_subscribe(c, "later", "s", 3, 10000, 50, 200);
	uint64_t id = it_publish1(c, "later", "hold on", NULL, NULL);
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 1, 2000, &d), 1);
	uint64_t tok = d[0].lease_token;
	handoff_deliveries_free(d, 1);

	uint64_t wall = it_wall_ms();
	assert_int_equal(
		it_nack1(c, "s", id, tok, 1000, false, "downstream busy"),
		HANDOFF_OK);
	uint64_t t_nack = it_now_ms();

	handoff_trace *t = NULL;
	handoff_subscription_trace *s = it_trace_sub(c, id, "s", &t);
	assert_int_equal(s->state, HANDOFF_STATE_DELAYED);
	assert_true(s->due_ms + 50 >= wall + 1000);
	assert_int_equal(s->n_history, 1);
	assert_int_equal(s->history[0].outcome, HANDOFF_OUTCOME_NACKED);
	assert_int_equal(s->history[0].retry_delay_ms, 1000);
	assert_string_equal(s->history[0].error, "downstream busy");
	handoff_trace_free(t);
	handoff_subscription_info info = it_sub_info(c, "s");
	assert_int_equal(info.delayed, 1);
	assert_int_equal(info.ready, 0);

	/* Not before the delay. */
	assert_int_equal(it_fetch(c, "s", 1, 300, &d), 0);
	/* But after it. */
	size_t k = 0;
	while (k == 0 && it_now_ms() - t_nack < 6000)
		k = it_fetch(c, "s", 1, 200, &d);
	uint64_t waited = it_now_ms() - t_nack;
	assert_int_equal(k, 1);
	assert_int_equal(d[0].event_id, id);
	assert_int_equal(d[0].attempt, 2);
	assert_true(waited >= 900);
	assert_int_equal(it_ack1(c, "s", id, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	/* The stale token of attempt 1 does nothing now. */
	assert_int_equal(it_ack1(c, "s", id, tok), HANDOFF_ELEASELOST);
	handoff_close(c);
	broker_passed(b);
}

/* ---- promise 6: exponential backoff with jitter and a ceiling ------------ */

static void test_backoff_ceiling(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "c", 0);
	enum { MAX = 6, BMIN = 50, BMAX = 120 };
	it_subscribe(c, "flaky", "s", MAX, 10000, BMIN, BMAX);
	uint64_t id = it_publish1(c, "flaky", "again", NULL, NULL);

	uint64_t nacked_at = 0;
	for (uint32_t a = 1; a <= MAX; a++) {
		handoff_delivery *d = NULL;
		assert_int_equal(it_fetch(c, "s", 1, 5000, &d), 1);
		uint64_t now = it_now_ms();
		if (nacked_at)
			/* Never faster than backoff_min/2, never stuck. */
			assert_true(now - nacked_at >= BMIN / 2 - 5);
		assert_int_equal(d[0].event_id, id);
		assert_int_equal(d[0].attempt, a);
		assert_int_equal(it_nack1(c, "s", id, d[0].lease_token, 0,
					  false, "nope"),
				 HANDOFF_OK);
		nacked_at = it_now_ms();
		handoff_deliveries_free(d, 1);
	}
	handoff_dead_letter *dl = NULL;
	assert_int_equal(handoff_dlq_show(c, "s", id, &dl), HANDOFF_OK);
	assert_int_equal(dl->reason, HANDOFF_DEAD_MAX_ATTEMPTS);
	assert_int_equal(dl->attempts, MAX);
	assert_int_equal(dl->n_history, MAX);
	for (uint32_t a = 1; a < MAX; a++) {
		handoff_attempt *h = &dl->history[a - 1];
		assert_int_equal(h->attempt, a);
		assert_int_equal(h->outcome, HANDOFF_OUTCOME_NACKED);
		assert_true(h->retry_delay_ms <= BMAX);
		it_assert_backoff(h->retry_delay_ms, a, BMIN, BMAX);
		assert_true(dl->history[a].leased_ms + 2 >=
			    h->ended_ms + h->retry_delay_ms);
	}
	handoff_dead_letters_free(dl, 1);
	handoff_close(c);
	broker_passed(b);
}

/* ---- promise 6: permanent failure dead-letters at once ------------------- */

static void test_permanent_nack(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "validator", 0);
	it_subscribe(c, "in", "s", 5, 10000, 50, 200);
	uint64_t id = it_publish1(c, "in", "{bad json", "k1", NULL);
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 1, 2000, &d), 1);
	assert_int_equal(it_nack1(c, "s", id, d[0].lease_token, 0, true,
				  "schema: unexpected end"),
			 HANDOFF_OK);
	handoff_deliveries_free(d, 1);

	handoff_dead_letter *dl = NULL;
	size_t n = 0;
	bool more = true;
	assert_int_equal(handoff_dlq_list(c, "s", NULL, 0, &dl, &n, &more),
			 HANDOFF_OK);
	assert_int_equal(n, 1);
	assert_false(more);
	assert_int_equal(dl[0].event_id, id);
	assert_int_equal(dl[0].reason, HANDOFF_DEAD_PERMANENT);
	assert_int_equal(dl[0].attempts, 1);
	assert_string_equal(dl[0].error, "schema: unexpected end");
	assert_string_equal(dl[0].key, "k1");
	assert_string_equal(dl[0].topic, "in");
	handoff_dead_letters_free(dl, n);

	handoff_trace *t = NULL;
	handoff_subscription_trace *s = it_trace_sub(c, id, "s", &t);
	assert_int_equal(s->state, HANDOFF_STATE_DEAD);
	assert_int_equal(s->dead_reason, HANDOFF_DEAD_PERMANENT);
	assert_int_equal(s->n_history, 1);
	assert_int_equal(s->history[0].outcome, HANDOFF_OUTCOME_PERMANENT);
	assert_string_equal(s->history[0].error, "schema: unexpected end");
	handoff_trace_free(t);
	assert_int_equal(it_fetch(c, "s", 1, 300, &d), 0);
	handoff_close(c);
	broker_passed(b);
}

/* ---- promise 5: acks — idempotent, wrong token, unknown event ----------- */

static void test_ack_rules(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "acker", 0);
	it_subscribe(c, "acks", "s", 3, 500, 50, 200);
	it_subscribe(c, "elsewhere", "other", 3, 5000, 50, 200);
	uint64_t a = it_publish1(c, "acks", "A", NULL, NULL);
	uint64_t bid = it_publish1(c, "acks", "B", NULL, NULL);
	uint64_t x = it_publish1(c, "elsewhere", "X", NULL, NULL);

	handoff_delivery *d = NULL;
	size_t k = 0;
	uint64_t ta = 0, tb = 0;
	for (int round = 0; round < 10 && (ta == 0 || tb == 0); round++) {
		k = it_fetch(c, "s", 2, 1000, &d);
		for (size_t i = 0; i < k; i++) {
			if (d[i].event_id == a)
				ta = d[i].lease_token;
			else if (d[i].event_id == bid)
				tb = d[i].lease_token;
			else
				fail();
		}
		handoff_deliveries_free(d, k);
	}
	assert_true(ta && tb);

	/* Wrong token: refused, nothing changes. */
	assert_int_equal(it_ack1(c, "s", a, ta + 1), HANDOFF_ELEASELOST);
	handoff_trace *t = NULL;
	handoff_subscription_trace *s = it_trace_sub(c, a, "s", &t);
	assert_int_equal(s->state, HANDOFF_STATE_LEASED);
	handoff_trace_free(t);

	/* Right token, then the same ack again: both OK. */
	assert_int_equal(it_ack1(c, "s", a, ta), HANDOFF_OK);
	assert_int_equal(it_ack1(c, "s", a, ta), HANDOFF_OK);

	/* Per-item results in one batch. */
	handoff_ack_item items[4] = {
		{ a, ta },	      /* already acked, same token: OK */
		{ bid, tb ^ 0x5a5a }, /* wrong token */
		{ x, 1 },	      /* never had by s */
		{ 987654321, 1 },     /* no such event */
	};
	int res[4] = { -1, -1, -1, -1 };
	assert_int_equal(handoff_ack(c, "s", items, 4, res), HANDOFF_OK);
	assert_int_equal(res[0], HANDOFF_OK);
	assert_int_equal(res[1], HANDOFF_ELEASELOST);
	assert_int_equal(res[2], HANDOFF_ENOTFOUND);
	assert_int_equal(res[3], HANDOFF_ENOTFOUND);

	assert_int_equal(it_ack1(c, "s", bid, tb), HANDOFF_OK);
	handoff_subscription_stats st = it_sub_stats(c, "s");
	assert_int_equal(st.acked, 2);
	assert_int_equal(st.ready + st.delayed + st.leased + st.dead, 0);
	s = it_trace_sub(c, a, "s", &t);
	assert_int_equal(s->state, HANDOFF_STATE_ACKED);
	assert_int_equal(s->n_history, 1);
	handoff_trace_free(t);
	/* Past the 500 ms deadline nothing comes back. */
	assert_int_equal(it_fetch(c, "s", 2, 1000, &d), 0);
	/* The event of the other topic is untouched by the stray ack. */
	s = it_trace_sub(c, x, "other", &t);
	assert_int_equal(s->state, HANDOFF_STATE_READY);
	handoff_trace_free(t);
	handoff_close(c);
	broker_passed(b);
}

/* ---- long poll ----------------------------------------------------------- */

typedef struct late_pub {
	const char *url;
	uint32_t delay_ms;
	int rc;
	uint64_t id;
} late_pub;

static void *late_publisher(void *arg)
{
	late_pub *lp = arg;
	handoff_options o = { .deadline_ms = 10000 };
	handoff_client *c = NULL;
	lp->rc = handoff_connect(lp->url, &o, &c);
	if (lp->rc != HANDOFF_OK)
		return NULL;
	it_sleep_ms(lp->delay_ms);
	handoff_event ev = { .payload = "wake up", .payload_len = 7 };
	lp->rc = handoff_publish(c, "poll", &ev, 1, &lp->id, NULL);
	handoff_close(c);
	return NULL;
}

static void test_long_poll(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "poller", 30000);
	it_subscribe(c, "poll", "s", 3, 5000, 50, 200);

	/* Nothing there: the fetch waits its time and returns empty. */
	handoff_delivery *d = NULL;
	uint64_t t0 = it_now_ms();
	assert_int_equal(it_fetch(c, "s", 10, 700, &d), 0);
	uint64_t took = it_now_ms() - t0;
	assert_true(took >= 600);
	assert_true(took < 8000);

	/* Something published from another handle ends the wait early. */
	late_pub lp = { .url = broker_url(b), .delay_ms = 500 };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, late_publisher, &lp), 0);
	t0 = it_now_ms();
	size_t k = it_fetch(c, "s", 10, 15000, &d);
	took = it_now_ms() - t0;
	pthread_join(th, NULL);
	assert_int_equal(lp.rc, HANDOFF_OK);
	assert_int_equal(k, 1);
	assert_int_equal(d[0].event_id, lp.id);
	assert_memory_equal(d[0].payload, "wake up", 7);
	assert_true(took >= 400);
	assert_true(took < 8000);
	assert_int_equal(it_ack1(c, "s", lp.id, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, k);

	/* A retry that becomes due during the wait ends it too: one long
	 * poll, issued while the event is delayed, gets it once due. */
	uint64_t id = it_publish1(c, "poll", "retry me", NULL, NULL);
	assert_int_equal(it_fetch(c, "s", 1, 2000, &d), 1);
	assert_int_equal(
		it_nack1(c, "s", id, d[0].lease_token, 400, false, "later"),
		HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	t0 = it_now_ms();
	k = it_fetch(c, "s", 1, 15000, &d);
	took = it_now_ms() - t0;
	assert_int_equal(k, 1);
	assert_int_equal(d[0].event_id, id);
	assert_int_equal(d[0].attempt, 2);
	assert_true(took >= 300);
	assert_true(took < 8000);
	assert_int_equal(it_ack1(c, "s", id, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, k);

	/* So does a lease of another consumer that expires. */
	id = it_publish1(c, "poll", "expire me", NULL, NULL);
	it_subscribe(c, "poll2", "short", 3, 300, 50, 100);
	handoff_client *other = it_connect(b, "other", 0);
	uint64_t id2 = it_publish1(c, "poll2", "short lease", NULL, NULL);
	assert_int_equal(it_fetch(other, "short", 1, 2000, &d), 1);
	assert_int_equal(d[0].event_id, id2);
	handoff_deliveries_free(d, 1);
	t0 = it_now_ms();
	k = it_fetch(c, "short", 1, 15000, &d);
	took = it_now_ms() - t0;
	assert_int_equal(k, 1);
	assert_int_equal(d[0].event_id, id2);
	assert_int_equal(d[0].attempt, 2);
	assert_true(took >= 200);
	assert_true(took < 8000);
	assert_int_equal(it_ack1(c, "short", id2, d[0].lease_token),
			 HANDOFF_OK);
	handoff_deliveries_free(d, k);
	/* (and the first subscription still has its own event) */
	assert_int_equal(it_fetch(c, "s", 1, 2000, &d), 1);
	assert_int_equal(d[0].event_id, id);
	assert_int_equal(it_ack1(c, "s", id, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	handoff_close(other);
	handoff_close(c);
	broker_passed(b);
}

/* ---- unsubscribing while running ---------------------------------------- */

/*
 * Deleting a subscription takes its ready, leased and dead deliveries out in
 * the background while the broker runs. The other subscription is
 * unaffected, and once it acks, no subscription still owes the events:
 * their payloads are removed (trace: payload_removed; stats: none stored),
 * with the dropped subscription's deliveries shown as unsubscribed.
 */
static void test_unsubscribe_while_running(void **state)
{
	enum { N = 30 };
	broker *b = *state;
	handoff_client *c = it_connect(b, "unsub", 0);
	it_subscribe(c, "u", "keep", 3, 30000, 50, 200);
	it_subscribe(c, "u", "drop", 3, 30000, 50, 200);
	uint64_t ids[N];
	for (int i = 0; i < N; i++) {
		char key[16];
		snprintf(key, sizeof key, "u-%d", i);
		ids[i] = it_publish1(c, "u", "payload", NULL, key);
	}
	/* "drop": one leased, one dead, the rest ready */
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "drop", 2, 1000, &d), 2);
	assert_int_equal(it_nack1(c, "drop", d[1].event_id, d[1].lease_token, 0,
				  true, "bad"),
			 HANDOFF_OK);
	handoff_deliveries_free(d, 2);
	assert_true(it_dlq_has(c, "drop", ids[1]));

	assert_int_equal(handoff_unsubscribe(c, "drop"), HANDOFF_OK);
	assert_int_equal(handoff_unsubscribe(c, "drop"), HANDOFF_ENOTFOUND);
	d = NULL;
	size_t n = 0;
	assert_int_equal(handoff_fetch(c, "drop", 1, 0, &d, &n),
			 HANDOFF_ENOTFOUND);

	/* "keep" gets and acks every event. */
	size_t got = 0;
	while (got < N) {
		size_t k = it_fetch(c, "keep", N, 1000, &d);
		assert_true(k > 0);
		for (size_t i = 0; i < k; i++)
			assert_int_equal(it_ack1(c, "keep", d[i].event_id,
						 d[i].lease_token),
					 HANDOFF_OK);
		got += k;
		handoff_deliveries_free(d, k);
	}

	/* The background drop finishes within a few loop turns. */
	uint64_t stored = 1;
	for (int tries = 0; tries < 50 && stored; tries++) {
		handoff_stats *st = NULL;
		assert_int_equal(handoff_get_stats(c, &st), HANDOFF_OK);
		stored = st->events_stored;
		handoff_stats_free(st);
		if (stored)
			it_sleep_ms(100);
	}
	assert_int_equal(stored, 0);
	for (int i = 0; i < 3; i++) {
		handoff_trace *t = NULL;
		assert_int_equal(handoff_trace_event(c, ids[i], &t),
				 HANDOFF_OK);
		assert_true(t->payload_removed);
		bool saw_drop = false;
		for (size_t s = 0; s < t->n_subscriptions; s++) {
			if (t->subscriptions[s].state ==
			    HANDOFF_STATE_UNSUBSCRIBED)
				saw_drop = true;
			else
				assert_int_equal(t->subscriptions[s].state,
						 HANDOFF_STATE_ACKED);
		}
		assert_true(saw_drop);
		handoff_trace_free(t);
	}
	assert_true(broker_log_contains(b, "event=subscription_removed"));
	handoff_close(c);
	broker_passed(b);
}

/*
 * Acks cannot be forged or made late: a consumer whose lease expired can
 * neither ack nor nack with its old token, whether the delivery is waiting
 * for its retry or already leased to someone else, and the delivery stays
 * with whoever holds it now, who can still ack it.
 */
static void test_stale_token_leaves_new_holder(void **state)
{
	broker *b = *state;
	handoff_client *slow = it_connect(b, "slow", 0);
	handoff_client *fast = it_connect(b, "fast", 0);
	it_subscribe(slow, "stale", "s", 5, 500, 50, 50);
	uint64_t id = it_publish1(slow, "stale", "E", NULL, NULL);
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(slow, "s", 1, 0, &d), 1);
	uint64_t old = d[0].lease_token;
	handoff_deliveries_free(d, 1);

	/* expired, not yet leased again: refused, still owed */
	it_sleep_ms(800);
	assert_int_equal(it_ack1(slow, "s", id, old), HANDOFF_ELEASELOST);
	handoff_trace *t = NULL;
	handoff_subscription_trace *st = it_trace_sub(slow, id, "s", &t);
	assert_true(st->state == HANDOFF_STATE_READY ||
		    st->state == HANDOFF_STATE_DELAYED);
	handoff_trace_free(t);

	/* leased to another consumer: the old token still cannot ack or
	 * nack, and the new holder keeps it */
	assert_int_equal(it_fetch(fast, "s", 1, 2000, &d), 1);
	assert_int_equal(d[0].event_id, id);
	assert_int_equal(d[0].attempt, 2);
	uint64_t fresh = d[0].lease_token;
	assert_true(fresh != old);
	handoff_deliveries_free(d, 1);
	assert_int_equal(it_ack1(slow, "s", id, old), HANDOFF_ELEASELOST);
	assert_int_equal(it_nack1(slow, "s", id, old, 0, true, "forged"),
			 HANDOFF_ELEASELOST);
	st = it_trace_sub(fast, id, "s", &t);
	assert_int_equal(st->state, HANDOFF_STATE_LEASED);
	it_assert_consumer(st->consumer, "fast");
	assert_int_equal(st->n_history, 2);
	handoff_trace_free(t);
	assert_int_equal(it_ack1(fast, "s", id, fresh), HANDOFF_OK);
	st = it_trace_sub(fast, id, "s", &t);
	assert_int_equal(st->state, HANDOFF_STATE_ACKED);
	handoff_trace_free(t);
	/* and a zero token never acks anything */
	assert_int_equal(it_ack1(slow, "s", id, 0), HANDOFF_ELEASELOST);
	handoff_close(slow);
	handoff_close(fast);
	broker_passed(b);
}

/*
 * Extending a lease keeps it: an extended delivery is not redelivered after
 * its original deadline while an unextended one of the same fetch is; it
 * keeps its token and consumer, and expires at the extended deadline.
 */
static void test_lease_extension(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "long-job", 0);
	handoff_client *other = it_connect(b, "other", 0);
	it_subscribe(c, "long", "ext", 3, 400, 50, 50);
	uint64_t a = it_publish1(c, "long", "A", NULL, NULL);
	uint64_t bb = it_publish1(c, "long", "B", NULL, NULL);
	handoff_delivery *d = NULL;
	uint64_t t0 = it_now_ms(), wall0 = it_wall_ms();
	assert_int_equal(it_fetch(c, "ext", 2, 0, &d), 2);
	assert_int_equal(d[0].event_id, a);
	assert_int_equal(d[1].event_id, bb);
	uint64_t tok_a = d[0].lease_token, tok_b = d[1].lease_token;
	handoff_deliveries_free(d, 2);

	/* A is extended to 3 s from now, B is left alone */
	handoff_ack_item it = { a, tok_a };
	int res = -1;
	assert_int_equal(handoff_extend(c, "ext", &it, 1, 3000, &res),
			 HANDOFF_OK);
	assert_int_equal(res, HANDOFF_OK);

	/* well past the 400 ms deadline: only B comes back */
	it_sleep_ms(800);
	assert_int_equal(it_fetch(other, "ext", 2, 300, &d), 1);
	assert_int_equal(d[0].event_id, bb);
	assert_int_equal(d[0].attempt, 2);
	assert_int_equal(it_ack1(other, "ext", bb, d[0].lease_token),
			 HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	handoff_trace *t = NULL;
	handoff_subscription_trace *st = it_trace_sub(c, a, "ext", &t);
	assert_int_equal(st->state, HANDOFF_STATE_LEASED);
	it_assert_consumer(st->consumer, "long-job");
	assert_int_equal(st->n_history, 1);
	assert_true(st->lease_deadline_ms >= wall0 + 3000);
	handoff_trace_free(t);

	/* B's old token, an unknown event: per item; bad arguments: EINVAL */
	handoff_ack_item items[3] = { { bb, tok_b },
				      { a + 1000, tok_a },
				      { a, tok_a } };
	int r3[3] = { -1, -1, -1 };
	assert_int_equal(handoff_extend(c, "ext", items, 3, 3000, r3),
			 HANDOFF_OK);
	assert_int_equal(r3[0], HANDOFF_ELEASELOST);
	assert_int_equal(r3[1], HANDOFF_ENOTFOUND);
	assert_int_equal(r3[2], HANDOFF_OK);
	uint64_t t_ext = it_now_ms();
	assert_int_equal(handoff_extend(c, "ext", &it, 1, 0, NULL),
			 HANDOFF_EINVAL);
	assert_int_equal(handoff_extend(c, "ext", &it, 1,
					HANDOFF_MAX_EXTEND_MS + 1, NULL),
			 HANDOFF_EINVAL);
	assert_int_equal(handoff_extend(c, "no-such", &it, 1, 1000, NULL),
			 HANDOFF_ENOTFOUND);

	/* no longer extended: A expires at its new deadline, not before */
	assert_int_equal(it_fetch(other, "ext", 1, 8000, &d), 1);
	assert_int_equal(d[0].event_id, a);
	assert_int_equal(d[0].attempt, 2);
	assert_true(it_now_ms() - t_ext >= 2900);
	assert_true(it_now_ms() - t0 >= 3500);
	uint64_t tok_a2 = d[0].lease_token;
	handoff_deliveries_free(d, 1);
	/* the expired lease is gone for good: neither extended nor acked */
	res = -1;
	assert_int_equal(handoff_extend(c, "ext", &it, 1, 3000, &res),
			 HANDOFF_OK);
	assert_int_equal(res, HANDOFF_ELEASELOST);
	assert_int_equal(it_ack1(c, "ext", a, tok_a), HANDOFF_ELEASELOST);
	assert_int_equal(it_ack1(other, "ext", a, tok_a2), HANDOFF_OK);
	st = it_trace_sub(c, a, "ext", &t);
	assert_int_equal(st->state, HANDOFF_STATE_ACKED);
	assert_int_equal(st->n_history, 2);
	assert_int_equal(st->history[0].outcome, HANDOFF_OUTCOME_EXPIRED);
	handoff_trace_free(t);
	handoff_close(c);
	handoff_close(other);
	broker_passed(b);
}

int main(void)
{
	it_default_config = CONFIG;
#define T(f) cmocka_unit_test_setup_teardown(f, it_setup, it_teardown)
	const struct CMUnitTest tests[] = {
		T(test_subscribe_policy),
		T(test_fanout_one_fails),
		T(test_stuck_subscription_does_not_block),
		T(test_lease_expiry),
		T(test_expiry_until_dead),
		T(test_nack_delay),
		T(test_backoff_ceiling),
		T(test_permanent_nack),
		T(test_ack_rules),
		T(test_stale_token_leaves_new_holder),
		T(test_lease_extension),
		T(test_long_poll),
		T(test_unsubscribe_while_running),
	};
	return cmocka_run_group_tests_name("delivery", tests, NULL, NULL);
}
