/*
 * test_pause.c — pausing a subscription (issue 15, part 1) against a real
 * handoffd: deliveries stop while events still fan out to it; a lease that
 * expires while paused spends no attempt and is never dead-lettered (even
 * with max_attempts 1); held long polls wait and are served on resume; the
 * pause, its reason and who set it survive kill -9; resume delivers the
 * whole backlog.
 */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char CONFIG[] = "[defaults]\n"
			     "max_attempts = 3\n"
			     "ack_deadline = 5s\n"
			     "backoff_min = 50ms\n"
			     "backoff_max = 200ms\n";

/* A long poll on another handle, so that the test can resume meanwhile. */
struct poller {
	const broker *b;
	size_t got;
	uint64_t took_ms;
	uint64_t want; /* this event's attempt goes to attempt */
	uint32_t attempt;
};

static void *poll_once(void *arg)
{
	struct poller *p = arg;
	handoff_client *c = it_connect(p->b, "poller", 20000);
	handoff_delivery *d = NULL;
	uint64_t t0 = it_now_ms();
	size_t n = 0;
	int rc = handoff_fetch(c, "s", 10, 8000, &d, &n);
	p->took_ms = it_now_ms() - t0;
	p->got = rc == HANDOFF_OK ? n : 0;
	for (size_t i = 0; i < n; i++)
		if (d[i].event_id == p->want)
			p->attempt = d[i].attempt;
	handoff_deliveries_free(d, n);
	handoff_close(c);
	return NULL;
}

static void test_pause_and_resume(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "c", 0);
	/* max_attempts 1 and a 1 s ack deadline: a lease that expired the
	 * normal way would be dead-lettered at once */
	it_subscribe(c, "t", "s", 1, 1000, 50, 200);
	it_subscribe(c, "t", "other", 3, 0, 0, 0);
	uint64_t e1 = it_publish1(c, "t", "one", NULL, "idem-1");

	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 1, 2000, &d), 1);
	assert_int_equal(d[0].event_id, e1);
	assert_int_equal(d[0].attempt, 1);
	handoff_deliveries_free(d, 1);

	bool changed = false;
	assert_int_equal(handoff_pause(c, "s", "schema migration", &changed),
			 HANDOFF_OK);
	assert_true(changed);
	assert_int_equal(handoff_pause(c, "s", "again", &changed), HANDOFF_OK);
	assert_false(changed); /* the first reason stays */
	assert_int_equal(handoff_pause(c, "nope", "x", NULL),
			 HANDOFF_ENOTFOUND);
	assert_int_equal(handoff_pause(c, "s", "", NULL), HANDOFF_EBADREQUEST);

	/* publishes still fan out to it */
	uint64_t e2 = it_publish1(c, "t", "two", NULL, "idem-2");
	uint64_t e3 = it_publish1(c, "t", "three", NULL, "idem-3");
	handoff_subscription_info si = it_sub_info(c, "s");
	assert_int_equal(si.ready, 2);
	assert_int_equal(si.leased, 1);
	assert_int_equal(it_sub_info(c, "other").ready, 3);

	/* nothing is delivered; the fetch says why */
	size_t n = 9;
	assert_int_equal(handoff_fetch(c, "s", 10, 300, &d, &n), HANDOFF_OK);
	assert_int_equal(n, 0);
	assert_true(handoff_last_fetch_paused(c));
	assert_int_equal(handoff_fetch(c, "other", 1, 0, &d, &n), HANDOFF_OK);
	assert_int_equal(n, 1);
	assert_false(handoff_last_fetch_paused(c));
	handoff_deliveries_free(d, n);

	/* the lease of e1 expires while paused: no attempt spent, not
	 * dead-lettered */
	it_sleep_ms(3000);
	handoff_trace *t = NULL;
	handoff_subscription_trace *st = it_trace_sub(c, e1, "s", &t);
	assert_int_equal(st->state, HANDOFF_STATE_READY);
	assert_true(st->paused);
	assert_int_equal(st->n_history, 1);
	assert_int_equal(st->history[0].outcome, HANDOFF_OUTCOME_EXPIRED);
	handoff_trace_free(t);
	assert_int_equal(it_dlq_count(c, "s"), 0);
	si = it_sub_info(c, "s");
	assert_int_equal(si.ready, 3);
	assert_int_equal(si.leased, 0);
	assert_int_equal(si.dead, 0);
	handoff_subscription_stats ss = it_sub_stats(c, "s");
	assert_int_equal(ss.expired, 1);
	assert_int_equal(ss.dead_lettered, 0);

	/* the pause survives kill -9, with its reason */
	broker_restart(b, true);
	handoff_subscription_info *all = NULL;
	size_t na = 0;
	assert_int_equal(handoff_list_subscriptions(c, &all, &na), HANDOFF_OK);
	bool seen = false;
	for (size_t i = 0; i < na; i++) {
		if (strcmp(all[i].name, "s") == 0) {
			seen = true;
			assert_true(all[i].pause.paused);
			assert_string_equal(all[i].pause.reason,
					    "schema migration");
			assert_true(all[i].pause.since_ms > 0);
		} else {
			assert_false(all[i].pause.paused);
		}
	}
	assert_true(seen);
	handoff_subscriptions_free(all, na);
	handoff_stats *stats = NULL;
	assert_int_equal(handoff_get_stats(c, &stats), HANDOFF_OK);
	for (size_t i = 0; i < stats->n_subscriptions; i++)
		assert_int_equal(stats->subscriptions[i].pause.paused,
				 strcmp(stats->subscriptions[i].name, "s") ==
					 0);
	handoff_stats_free(stats);
	assert_int_equal(handoff_fetch(c, "s", 10, 0, &d, &n), HANDOFF_OK);
	assert_int_equal(n, 0);
	assert_true(handoff_last_fetch_paused(c));

	/* a long poll waits while paused and is served by the resume */
	struct poller p = { .b = b, .want = e1 };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, poll_once, &p), 0);
	it_sleep_ms(1000);
	assert_int_equal(handoff_resume(c, "s", &changed), HANDOFF_OK);
	assert_true(changed);
	assert_int_equal(handoff_resume(c, "s", &changed), HANDOFF_OK);
	assert_false(changed);
	pthread_join(th, NULL);
	assert_int_equal(p.got, 3);
	assert_true(p.took_ms >= 900); /* it was held, not answered empty */
	assert_true(p.took_ms < 5000); /* woken by the resume, not timeout */
	/* e1's expired lease was not counted: delivered as attempt 1 again
	 * (its history keeps both: the uncounted expiry, then this lease) */
	assert_int_equal(p.attempt, 1);
	(void)e2;
	(void)e3;

	st = it_trace_sub(c, e1, "s", &t);
	assert_int_equal(st->state, HANDOFF_STATE_LEASED);
	assert_int_equal(st->n_history, 2);
	assert_int_equal(st->history[1].attempt, 1);
	assert_false(st->paused);
	handoff_trace_free(t);
	handoff_close(c);
	broker_passed(b);
}

/* Leases handed out before the pause run their course: they can be
 * acked, and an ack while paused finishes the delivery. */
static void test_ack_while_paused(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "c", 0);
	it_subscribe(c, "t", "s", 3, 30000, 50, 200);
	uint64_t e1 = it_publish1(c, "t", "one", NULL, "idem-1");
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 1, 2000, &d), 1);
	assert_int_equal(handoff_pause(c, "s", "hold on", NULL), HANDOFF_OK);
	assert_int_equal(it_ack1(c, "s", e1, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	handoff_trace *t = NULL;
	assert_int_equal(it_trace_sub(c, e1, "s", &t)->state,
			 HANDOFF_STATE_ACKED);
	handoff_trace_free(t);

	/* the audit log has both actions with the reason */
	assert_int_equal(handoff_resume(c, "s", NULL), HANDOFF_OK);
	handoff_audit_record *a = NULL;
	size_t na = 0;
	assert_int_equal(handoff_audit_list(c, 0, 100, &a, &na, NULL),
			 HANDOFF_OK);
	assert_int_equal(na, 2);
	assert_string_equal(a[0].action, "pause");
	assert_string_equal(a[0].subscription, "s");
	assert_string_equal(a[0].reason, "hold on");
	assert_string_equal(a[1].action, "resume");
	handoff_audit_free(a, na);
	handoff_close(c);
	broker_passed(b);
}

int main(void)
{
	it_default_config = CONFIG;
#define T(f) cmocka_unit_test_setup_teardown(f, it_setup, it_teardown)
	const struct CMUnitTest tests[] = {
		T(test_pause_and_resume),
		T(test_ack_while_paused),
	};
	return cmocka_run_group_tests_name("pause", tests, NULL, NULL);
}
