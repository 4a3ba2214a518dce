/*
 * test_dlq.c — promises 7 (dead letters kept until an operator acts; list,
 * show, replay with dry run, purge; a replay loses nothing) and 8 (every
 * event traceable through its life), against a real handoffd.
 */
#include "harness.h"

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

enum { NLET = 6 };

/*
 * Subscription "s" on topic "pay" (max_attempts 2, ack deadline 5 s,
 * backoff 50..100 ms) and NLET events in its DLQ: even ones dead by
 * max_attempts with error "timeout talking to bank (attempt N)", odd ones
 * permanent with "invalid iban". ids[] receives the ids in publish order.
 */
static void make_dead_letters(handoff_client *c, uint64_t ids[NLET])
{
	it_subscribe(c, "pay", "s", 2, 5000, 50, 100);
	for (int i = 0; i < NLET; i++) {
		char p[32], k[32], hv[32];
		snprintf(p, sizeof(p), "payment-%d", i);
		snprintf(k, sizeof(k), "acct-%d", i);
		snprintf(hv, sizeof(hv), "%d", i * 100);
		handoff_header h[1] = { { "amount", hv } };
		handoff_event ev = { .payload = p,
				     .payload_len = strlen(p),
				     .key = k,
				     .headers = h,
				     .n_headers = 1 };
		assert_int_equal(
			handoff_publish(c, "pay", &ev, 1, &ids[i], NULL),
			HANDOFF_OK);
	}
	uint64_t t0 = it_now_ms();
	while (it_dlq_count(c, "s") < NLET && it_now_ms() - t0 < 20000) {
		handoff_delivery *d = NULL;
		size_t k = it_fetch(c, "s", NLET, 200, &d);
		for (size_t i = 0; i < k; i++) {
			int idx = -1;
			for (int j = 0; j < NLET; j++)
				if (ids[j] == d[i].event_id)
					idx = j;
			assert_true(idx >= 0);
			char reason[64];
			if (idx % 2)
				snprintf(reason, sizeof(reason),
					 "invalid iban");
			else
				snprintf(reason, sizeof(reason),
					 "timeout talking to bank (attempt %u)",
					 d[i].attempt);
			assert_int_equal(it_nack1(c, "s", d[i].event_id,
						  d[i].lease_token, 0, idx % 2,
						  reason),
					 HANDOFF_OK);
		}
		handoff_deliveries_free(d, k);
	}
	assert_int_equal(it_dlq_count(c, "s"), NLET);
}

static void list(handoff_client *c, const handoff_dlq_filter *f, uint32_t limit,
		 handoff_dead_letter **d, size_t *n, bool *more)
{
	int rc = handoff_dlq_list(c, "s", f, limit, d, n, more);
	assert_int_equal(rc, HANDOFF_OK);
}

/* ---- list and its filters ------------------------------------------------ */

static void test_list_filters(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "ops", 0);
	uint64_t ids[NLET];
	uint64_t before = it_wall_ms();
	make_dead_letters(c, ids);
	uint64_t after = it_wall_ms();

	handoff_dead_letter *d = NULL;
	size_t n = 0;
	bool more = true;

	list(c, NULL, 0, &d, &n, &more);
	assert_int_equal(n, NLET);
	assert_false(more);
	for (size_t i = 0; i < n; i++) {
		/* In event id order == publish order here. */
		assert_int_equal(d[i].event_id, ids[i]);
		assert_string_equal(d[i].topic, "pay");
		char k[32];
		snprintf(k, sizeof(k), "acct-%zu", i);
		assert_string_equal(d[i].key, k);
		assert_true(d[i].dead_ms + 1000 >= before);
		assert_true(d[i].dead_ms <= after + 1000);
		assert_true(d[i].published_ms > 0);
		if (i % 2) {
			assert_int_equal(d[i].reason, HANDOFF_DEAD_PERMANENT);
			assert_int_equal(d[i].attempts, 1);
			assert_string_equal(d[i].error, "invalid iban");
		} else {
			assert_int_equal(d[i].reason,
					 HANDOFF_DEAD_MAX_ATTEMPTS);
			assert_int_equal(d[i].attempts, 2);
			assert_string_equal(
				d[i].error,
				"timeout talking to bank (attempt 2)");
		}
	}
	handoff_dead_letters_free(d, n);

	handoff_dlq_filter f = { .reason = HANDOFF_DEAD_PERMANENT };
	list(c, &f, 0, &d, &n, &more);
	assert_int_equal(n, NLET / 2);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(d[i].reason, HANDOFF_DEAD_PERMANENT);
		assert_int_equal(d[i].event_id, ids[2 * i + 1]);
	}
	handoff_dead_letters_free(d, n);

	f = (handoff_dlq_filter){ .reason = HANDOFF_DEAD_MAX_ATTEMPTS };
	list(c, &f, 0, &d, &n, &more);
	assert_int_equal(n, NLET / 2);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(d[i].event_id, ids[2 * i]);
	handoff_dead_letters_free(d, n);

	f = (handoff_dlq_filter){ .error_contains = "bank" };
	list(c, &f, 0, &d, &n, &more);
	assert_int_equal(n, NLET / 2);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(d[i].event_id, ids[2 * i]);
	handoff_dead_letters_free(d, n);

	f = (handoff_dlq_filter){ .error_contains = "no such text" };
	list(c, &f, 0, &d, &n, &more);
	assert_int_equal(n, 0);
	handoff_dead_letters_free(d, n);

	f = (handoff_dlq_filter){ .after_event_id = ids[2] };
	list(c, &f, 0, &d, &n, &more);
	assert_int_equal(n, NLET - 3);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(d[i].event_id, ids[3 + i]);
	handoff_dead_letters_free(d, n);

	/* Combined filters. */
	f = (handoff_dlq_filter){ .after_event_id = ids[2],
				  .reason = HANDOFF_DEAD_PERMANENT };
	list(c, &f, 0, &d, &n, &more);
	assert_int_equal(n, 2);
	assert_int_equal(d[0].event_id, ids[3]);
	assert_int_equal(d[1].event_id, ids[5]);
	handoff_dead_letters_free(d, n);

	/* Time window. */
	f = (handoff_dlq_filter){ .dead_since_ms = after + 3600 * 1000 };
	list(c, &f, 0, &d, &n, &more);
	assert_int_equal(n, 0);
	handoff_dead_letters_free(d, n);
	f = (handoff_dlq_filter){ .dead_since_ms = before - 60000,
				  .dead_until_ms = after + 60000 };
	list(c, &f, 0, &d, &n, &more);
	assert_int_equal(n, NLET);
	handoff_dead_letters_free(d, n);

	/* Paging. */
	list(c, NULL, 2, &d, &n, &more);
	assert_int_equal(n, 2);
	assert_true(more);
	assert_int_equal(d[0].event_id, ids[0]);
	assert_int_equal(d[1].event_id, ids[1]);
	handoff_dead_letters_free(d, n);

	/* Unknown subscription. */
	assert_int_equal(handoff_dlq_list(c, "nope", NULL, 0, &d, &n, &more),
			 HANDOFF_ENOTFOUND);
	handoff_close(c);
	broker_passed(b);
}

/* ---- show: payload, headers and full history ------------------------------ */

static void test_show(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "ops", 0);
	uint64_t ids[NLET];
	make_dead_letters(c, ids);

	handoff_dead_letter *dl = NULL;
	assert_int_equal(handoff_dlq_show(c, "s", ids[4], &dl), HANDOFF_OK);
	assert_int_equal(dl->event_id, ids[4]);
	assert_int_equal(dl->payload_len, strlen("payment-4"));
	assert_memory_equal(dl->payload, "payment-4", dl->payload_len);
	assert_string_equal(dl->key, "acct-4");
	assert_string_equal(dl->topic, "pay");
	assert_int_equal(dl->n_headers, 1);
	assert_string_equal(dl->headers[0].name, "amount");
	assert_string_equal(dl->headers[0].value, "400");
	assert_int_equal(dl->reason, HANDOFF_DEAD_MAX_ATTEMPTS);
	assert_int_equal(dl->attempts, 2);
	assert_int_equal(dl->n_history, 2);
	for (uint32_t a = 0; a < 2; a++) {
		handoff_attempt *h = &dl->history[a];
		char want[64];
		snprintf(want, sizeof(want),
			 "timeout talking to bank (attempt %u)", a + 1);
		assert_int_equal(h->attempt, a + 1);
		it_assert_consumer(h->consumer, "ops");
		assert_int_equal(h->outcome, HANDOFF_OUTCOME_NACKED);
		assert_string_equal(h->error, want);
		assert_true(h->leased_ms > 0);
		assert_true(h->ended_ms >= h->leased_ms);
	}
	it_assert_backoff(dl->history[0].retry_delay_ms, 1, 50, 100);
	assert_true(dl->dead_ms >= dl->history[1].ended_ms);
	handoff_dead_letters_free(dl, 1);

	assert_int_equal(handoff_dlq_show(c, "s", ids[1], &dl), HANDOFF_OK);
	assert_int_equal(dl->reason, HANDOFF_DEAD_PERMANENT);
	assert_int_equal(dl->n_history, 1);
	assert_int_equal(dl->history[0].outcome, HANDOFF_OUTCOME_PERMANENT);
	assert_string_equal(dl->history[0].error, "invalid iban");
	handoff_dead_letters_free(dl, 1);

	/* Not in the queue. */
	dl = NULL;
	assert_int_equal(handoff_dlq_show(c, "s", ids[5] + 1000, &dl),
			 HANDOFF_ENOTFOUND);
	handoff_close(c);
	broker_passed(b);
}

/* ---- replay: dry run, by id, fresh budget, history kept ------------------- */

static void test_replay_by_id(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "ops", 0);
	uint64_t ids[NLET];
	make_dead_letters(c, ids);
	uint64_t id = ids[0]; /* max_attempts, 2 attempts */

	/* Dry run: reports, changes nothing. */
	handoff_dlq_action act = { .event_ids = &id,
				   .n_event_ids = 1,
				   .dry_run = true };
	handoff_dlq_result r = { 0 };
	assert_int_equal(handoff_dlq_replay(c, "s", &act, &r), HANDOFF_OK);
	assert_int_equal(r.n_event_ids, 1);
	assert_int_equal(r.event_ids[0], id);
	assert_int_equal(r.n_missing, 0);
	handoff_dlq_result_free(&r);
	handoff_dlq_filter all = { 0 };
	act = (handoff_dlq_action){ .filter = &all, .dry_run = true };
	assert_int_equal(handoff_dlq_replay(c, "s", &act, &r), HANDOFF_OK);
	assert_int_equal(r.n_event_ids, NLET);
	handoff_dlq_result_free(&r);
	assert_int_equal(it_dlq_count(c, "s"), NLET);
	assert_true(it_dlq_has(c, "s", id));
	handoff_trace *t = NULL;
	handoff_subscription_trace *st = it_trace_sub(c, id, "s", &t);
	assert_int_equal(st->state, HANDOFF_STATE_DEAD);
	assert_int_equal(st->replays, 0);
	handoff_trace_free(t);
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 10, 300, &d), 0);

	/* Real replay of one id plus one that is not there. */
	uint64_t req[2] = { id, ids[NLET - 1] + 5000 };
	act = (handoff_dlq_action){ .event_ids = req, .n_event_ids = 2 };
	assert_int_equal(handoff_dlq_replay(c, "s", &act, &r), HANDOFF_OK);
	assert_int_equal(r.n_event_ids, 1);
	assert_int_equal(r.event_ids[0], id);
	assert_int_equal(r.n_missing, 1);
	assert_int_equal(r.missing[0], req[1]);
	handoff_dlq_result_free(&r);
	assert_false(it_dlq_has(c, "s", id));
	assert_int_equal(it_dlq_count(c, "s"), NLET - 1);

	/* Ready at once; the attempt number continues; history kept. */
	uint64_t t0 = it_now_ms();
	assert_int_equal(it_fetch(c, "s", 10, 3000, &d), 1);
	assert_true(it_now_ms() - t0 < 2500);
	assert_int_equal(d[0].event_id, id);
	assert_int_equal(d[0].attempt, 3);
	assert_memory_equal(d[0].payload, "payment-0", 9);
	st = it_trace_sub(c, id, "s", &t);
	assert_int_equal(st->state, HANDOFF_STATE_LEASED);
	assert_int_equal(st->replays, 1);
	assert_int_equal(st->n_history, 3);
	assert_int_equal(st->history[0].outcome, HANDOFF_OUTCOME_NACKED);
	assert_int_equal(st->history[1].outcome, HANDOFF_OUTCOME_NACKED);
	assert_string_equal(st->history[1].error,
			    "timeout talking to bank (attempt 2)");
	assert_int_equal(st->history[2].attempt, 3);
	handoff_trace_free(t);

	/* Fresh budget: max_attempts (2) more attempts before it is dead
	 * again, so a nack now retries instead of dead-lettering. */
	assert_int_equal(
		it_nack1(c, "s", id, d[0].lease_token, 0, false, "still down"),
		HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	assert_false(it_dlq_has(c, "s", id));
	assert_int_equal(it_fetch(c, "s", 10, 3000, &d), 1);
	assert_int_equal(d[0].event_id, id);
	assert_int_equal(d[0].attempt, 4);
	/* The ack ends it. */
	assert_int_equal(it_ack1(c, "s", id, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	st = it_trace_sub(c, id, "s", &t);
	assert_int_equal(st->state, HANDOFF_STATE_ACKED);
	assert_true(st->done_ms > 0);
	assert_int_equal(st->replays, 1);
	assert_int_equal(st->n_history, 4);
	assert_int_equal(st->history[2].outcome, HANDOFF_OUTCOME_NACKED);
	assert_int_equal(st->history[3].outcome, HANDOFF_OUTCOME_ACKED);
	handoff_trace_free(t);
	assert_false(it_dlq_has(c, "s", id));
	handoff_subscription_stats ss = it_sub_stats(c, "s");
	assert_int_equal(ss.replayed, 1);
	assert_int_equal(ss.dead, NLET - 1);
	assert_int_equal(ss.acked, 1);
	handoff_close(c);
	broker_passed(b);
}

/* ---- replay budget runs out again: dead once more, replays counted ------- */

static void test_replay_dies_again(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "ops", 0);
	uint64_t ids[NLET];
	make_dead_letters(c, ids);
	uint64_t id = ids[1]; /* permanent, 1 attempt */
	handoff_dlq_action act = { .event_ids = &id, .n_event_ids = 1 };
	handoff_dlq_result r = { 0 };
	assert_int_equal(handoff_dlq_replay(c, "s", &act, &r), HANDOFF_OK);
	assert_int_equal(r.n_event_ids, 1);
	handoff_dlq_result_free(&r);
	for (uint32_t a = 2; a <= 3; a++) {
		handoff_delivery *d = NULL;
		assert_int_equal(it_fetch(c, "s", 1, 3000, &d), 1);
		assert_int_equal(d[0].event_id, id);
		assert_int_equal(d[0].attempt, a);
		assert_int_equal(it_nack1(c, "s", id, d[0].lease_token, 0,
					  false, "nope again"),
				 HANDOFF_OK);
		handoff_deliveries_free(d, 1);
	}
	handoff_dead_letter *dl = NULL;
	assert_int_equal(handoff_dlq_show(c, "s", id, &dl), HANDOFF_OK);
	assert_int_equal(dl->reason, HANDOFF_DEAD_MAX_ATTEMPTS);
	assert_int_equal(dl->replays, 1);
	assert_int_equal(dl->attempts, 3);
	assert_int_equal(dl->n_history, 3);
	assert_int_equal(dl->history[0].outcome, HANDOFF_OUTCOME_PERMANENT);
	assert_string_equal(dl->history[0].error, "invalid iban");
	assert_int_equal(dl->history[2].outcome, HANDOFF_OUTCOME_NACKED);
	assert_string_equal(dl->error, "nope again");
	handoff_dead_letters_free(dl, 1);
	handoff_close(c);
	broker_passed(b);
}

/* ---- replay by filter, with a limit ---------------------------------------- */

static void test_replay_by_filter(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "ops", 0);
	uint64_t ids[NLET];
	make_dead_letters(c, ids);

	/* limit 1: one replayed, more remain. */
	handoff_dlq_filter perm = { .reason = HANDOFF_DEAD_PERMANENT };
	handoff_dlq_action act = { .filter = &perm, .limit = 1 };
	handoff_dlq_result r = { 0 };
	assert_int_equal(handoff_dlq_replay(c, "s", &act, &r), HANDOFF_OK);
	assert_int_equal(r.n_event_ids, 1);
	assert_int_equal(r.event_ids[0], ids[1]);
	assert_true(r.more);
	handoff_dlq_result_free(&r);

	/* The rest of the filter. */
	act.limit = 0;
	assert_int_equal(handoff_dlq_replay(c, "s", &act, &r), HANDOFF_OK);
	assert_int_equal(r.n_event_ids, 2);
	assert_int_equal(r.event_ids[0], ids[3]);
	assert_int_equal(r.event_ids[1], ids[5]);
	assert_false(r.more);
	handoff_dlq_result_free(&r);

	/* Exactly the permanent ones left the DLQ; the others stayed. */
	assert_int_equal(it_dlq_count(c, "s"), NLET / 2);
	for (int i = 0; i < NLET; i++)
		assert_int_equal(it_dlq_has(c, "s", ids[i]), i % 2 == 0);

	/* And exactly they are delivered again. */
	bool got[NLET] = { false };
	size_t total = 0;
	for (int round = 0; round < 10 && total < NLET / 2; round++) {
		handoff_delivery *d = NULL;
		size_t k = it_fetch(c, "s", 10, 1000, &d);
		for (size_t i = 0; i < k; i++) {
			int idx = -1;
			for (int j = 0; j < NLET; j++)
				if (ids[j] == d[i].event_id)
					idx = j;
			assert_true(idx >= 0 && idx % 2 == 1);
			assert_false(got[idx]);
			got[idx] = true;
			assert_int_equal(d[i].attempt, 2);
			assert_int_equal(it_ack1(c, "s", d[i].event_id,
						 d[i].lease_token),
					 HANDOFF_OK);
		}
		total += k;
		handoff_deliveries_free(d, k);
	}
	assert_int_equal(total, NLET / 2);
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 10, 300, &d), 0);
	handoff_close(c);
	broker_passed(b);
}

/* ---- purge -------------------------------------------------------------- */

static void test_purge(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "ops", 0);
	uint64_t ids[NLET];
	make_dead_letters(c, ids);

	/* Dry run changes nothing. */
	handoff_dlq_action act = { .event_ids = &ids[0],
				   .n_event_ids = 1,
				   .dry_run = true };
	handoff_dlq_result r = { 0 };
	assert_int_equal(handoff_dlq_purge(c, "s", &act, &r), HANDOFF_OK);
	assert_int_equal(r.n_event_ids, 1);
	handoff_dlq_result_free(&r);
	assert_true(it_dlq_has(c, "s", ids[0]));

	/* By id. */
	uint64_t req[2] = { ids[0], ids[NLET - 1] + 777 };
	act = (handoff_dlq_action){ .event_ids = req, .n_event_ids = 2 };
	assert_int_equal(handoff_dlq_purge(c, "s", &act, &r), HANDOFF_OK);
	assert_int_equal(r.n_event_ids, 1);
	assert_int_equal(r.event_ids[0], ids[0]);
	assert_int_equal(r.n_missing, 1);
	assert_int_equal(r.missing[0], req[1]);
	handoff_dlq_result_free(&r);
	assert_false(it_dlq_has(c, "s", ids[0]));
	assert_int_equal(it_dlq_count(c, "s"), NLET - 1);
	handoff_trace *t = NULL;
	handoff_subscription_trace *st = it_trace_sub(c, ids[0], "s", &t);
	assert_int_equal(st->state, HANDOFF_STATE_PURGED);
	handoff_trace_free(t);
	handoff_dead_letter *dl = NULL;
	assert_int_equal(handoff_dlq_show(c, "s", ids[0], &dl),
			 HANDOFF_ENOTFOUND);

	/* A filter without all=true purges nothing. */
	handoff_dlq_filter perm = { .reason = HANDOFF_DEAD_PERMANENT };
	act = (handoff_dlq_action){ .filter = &perm };
	int rc = handoff_dlq_purge(c, "s", &act, &r);
	if (rc == HANDOFF_OK)
		assert_int_equal(r.n_event_ids, 0);
	handoff_dlq_result_free(&r);
	assert_int_equal(it_dlq_count(c, "s"), NLET - 1);

	/* A filter with all=true: only its matches. */
	act.all = true;
	assert_int_equal(handoff_dlq_purge(c, "s", &act, &r), HANDOFF_OK);
	assert_int_equal(r.n_event_ids, NLET / 2);
	handoff_dlq_result_free(&r);
	assert_int_equal(it_dlq_count(c, "s"), NLET / 2 - 1);

	/* Everything. */
	act = (handoff_dlq_action){ .all = true };
	assert_int_equal(handoff_dlq_purge(c, "s", &act, &r), HANDOFF_OK);
	assert_int_equal(r.n_event_ids, NLET / 2 - 1);
	handoff_dlq_result_free(&r);
	assert_int_equal(it_dlq_count(c, "s"), 0);
	for (int i = 0; i < NLET; i++) {
		st = it_trace_sub(c, ids[i], "s", &t);
		assert_int_equal(st->state, HANDOFF_STATE_PURGED);
		handoff_trace_free(t);
	}
	/* Purged is gone for good: nothing delivered, replay finds nothing. */
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 10, 300, &d), 0);
	act = (handoff_dlq_action){ .event_ids = ids, .n_event_ids = NLET };
	assert_int_equal(handoff_dlq_replay(c, "s", &act, &r), HANDOFF_OK);
	assert_int_equal(r.n_event_ids, 0);
	assert_int_equal(r.n_missing, NLET);
	handoff_dlq_result_free(&r);
	handoff_subscription_stats ss = it_sub_stats(c, "s");
	assert_int_equal(ss.purged, NLET);
	assert_int_equal(ss.dead, 0);
	handoff_close(c);
	broker_passed(b);
}

/* ---- trace through a whole life ------------------------------------------ */

static void test_trace_lifecycle(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "tracer", 0);
	it_subscribe(c, "life", "ok", 3, 5000, 50, 100);
	it_subscribe(c, "life", "bad", 3, 5000, 50, 100);
	it_subscribe(c, "life", "later", 3, 5000, 50, 100);
	handoff_header h[1] = { { "h", "v" } };
	handoff_event ev = { .payload = "life",
			     .payload_len = 4,
			     .key = "K",
			     .idempotency_key = "life-1",
			     .headers = h,
			     .n_headers = 1 };
	uint64_t id = 0;
	uint64_t before = it_wall_ms();
	assert_int_equal(handoff_publish(c, "life", &ev, 1, &id, NULL),
			 HANDOFF_OK);

	handoff_trace *t = NULL;
	assert_int_equal(handoff_trace_event(c, id, &t), HANDOFF_OK);
	assert_int_equal(t->event_id, id);
	assert_string_equal(t->topic, "life");
	assert_string_equal(t->key, "K");
	assert_string_equal(t->idempotency_key, "life-1");
	/* payload_bytes is the stored record's size (broker/handlers.c packs
	 * the whole event body), not the 4 payload bytes alone. */
	assert_true(t->payload_bytes >= 4);
	assert_false(t->payload_removed);
	assert_false(t->corrupt);
	assert_true(t->published_ms + 1000 >= before);
	assert_int_equal(t->n_subscriptions, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(t->subscriptions[i].state,
				 HANDOFF_STATE_READY);
		assert_int_equal(t->subscriptions[i].n_history, 0);
	}
	handoff_trace_free(t);

	/* ok: ready → leased (to whom, until when) → acked (when). */
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "ok", 1, 2000, &d), 1);
	handoff_subscription_trace *s = it_trace_sub(c, id, "ok", &t);
	assert_int_equal(s->state, HANDOFF_STATE_LEASED);
	it_assert_consumer(s->consumer, "tracer");
	assert_int_equal(s->lease_deadline_ms, d[0].lease_deadline_ms);
	assert_int_equal(s->n_history, 1);
	assert_int_equal(s->history[0].outcome, HANDOFF_OUTCOME_LEASED);
	assert_int_equal(s->history[0].ended_ms, 0);
	/* The others are untouched. */
	assert_int_equal(it_trace_find(t, "bad")->state, HANDOFF_STATE_READY);
	handoff_trace_free(t);
	assert_int_equal(it_ack1(c, "ok", id, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	s = it_trace_sub(c, id, "ok", &t);
	assert_int_equal(s->state, HANDOFF_STATE_ACKED);
	assert_true(s->done_ms + 1000 >= before);
	assert_int_equal(s->history[0].outcome, HANDOFF_OUTCOME_ACKED);
	assert_true(s->history[0].ended_ms >= s->history[0].leased_ms);
	handoff_trace_free(t);

	/* later: nacked with a delay → delayed, due when, retried why. */
	assert_int_equal(it_fetch(c, "later", 1, 2000, &d), 1);
	assert_int_equal(it_nack1(c, "later", id, d[0].lease_token, 60000,
				  false, "rate limited"),
			 HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	s = it_trace_sub(c, id, "later", &t);
	assert_int_equal(s->state, HANDOFF_STATE_DELAYED);
	assert_true(s->due_ms >= it_wall_ms() + 50000);
	assert_string_equal(s->history[0].error, "rate limited");
	assert_int_equal(s->history[0].outcome, HANDOFF_OUTCOME_NACKED);
	handoff_trace_free(t);

	/* bad: dead-lettered why → purged. */
	assert_int_equal(it_fetch(c, "bad", 1, 2000, &d), 1);
	assert_int_equal(it_nack1(c, "bad", id, d[0].lease_token, 0, true,
				  "cannot parse"),
			 HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	s = it_trace_sub(c, id, "bad", &t);
	assert_int_equal(s->state, HANDOFF_STATE_DEAD);
	assert_int_equal(s->dead_reason, HANDOFF_DEAD_PERMANENT);
	assert_string_equal(s->error, "cannot parse");
	handoff_trace_free(t);
	handoff_dlq_action act = { .event_ids = &id, .n_event_ids = 1 };
	handoff_dlq_result r = { 0 };
	assert_int_equal(handoff_dlq_purge(c, "bad", &act, &r), HANDOFF_OK);
	assert_int_equal(r.n_event_ids, 1);
	handoff_dlq_result_free(&r);

	assert_int_equal(handoff_trace_event(c, id, &t), HANDOFF_OK);
	assert_int_equal(it_trace_find(t, "ok")->state, HANDOFF_STATE_ACKED);
	assert_int_equal(it_trace_find(t, "bad")->state, HANDOFF_STATE_PURGED);
	assert_int_equal(it_trace_find(t, "later")->state,
			 HANDOFF_STATE_DELAYED);
	/* "later" still owes a delivery: the payload is kept. */
	assert_false(t->payload_removed);
	handoff_trace_free(t);

	/* The trace survives a restart. */
	broker_restart(b, true);
	assert_int_equal(handoff_trace_event(c, id, &t), HANDOFF_OK);
	assert_int_equal(it_trace_find(t, "ok")->state, HANDOFF_STATE_ACKED);
	assert_int_equal(it_trace_find(t, "bad")->state, HANDOFF_STATE_PURGED);
	assert_int_equal(it_trace_find(t, "later")->state,
			 HANDOFF_STATE_DELAYED);
	handoff_trace_free(t);

	/* No record of an unknown id. */
	t = NULL;
	assert_int_equal(handoff_trace_event(c, id + 100000, &t),
			 HANDOFF_ENOTFOUND);
	handoff_close(c);
	broker_passed(b);
}

/* ---- nothing leaves the DLQ on its own ------------------------------------ */

static void test_nothing_leaves_on_its_own(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "ops", 0);
	/* Short deadlines: anything timer-driven would have fired. */
	it_subscribe(c, "q", "s", 1, 300, 50, 100);
	uint64_t ids[3];
	for (int i = 0; i < 3; i++)
		ids[i] = it_publish1(c, "q", "doomed", NULL, NULL);
	/* Leases that expire (max_attempts 1) → dead by expiry. */
	handoff_delivery *d = NULL;
	size_t got = 0;
	for (int round = 0; round < 10 && got < 3; round++) {
		size_t k = it_fetch(c, "s", 3, 1000, &d);
		got += k;
		handoff_deliveries_free(d, k);
	}
	assert_int_equal(got, 3);
	uint64_t t0 = it_now_ms();
	while (it_dlq_count(c, "s") < 3 && it_now_ms() - t0 < 5000)
		it_sleep_ms(50);
	assert_int_equal(it_dlq_count(c, "s"), 3);

	it_sleep_ms(1500);
	assert_int_equal(it_dlq_count(c, "s"), 3);
	assert_int_equal(it_fetch(c, "s", 3, 300, &d), 0);
	broker_restart(b, false);
	assert_int_equal(it_dlq_count(c, "s"), 3);
	broker_restart(b, true);
	it_sleep_ms(500);
	assert_int_equal(it_dlq_count(c, "s"), 3);
	for (int i = 0; i < 3; i++) {
		handoff_dead_letter *dl = NULL;
		assert_int_equal(handoff_dlq_show(c, "s", ids[i], &dl),
				 HANDOFF_OK);
		assert_int_equal(dl->reason, HANDOFF_DEAD_MAX_ATTEMPTS);
		assert_int_equal(dl->n_history, 1);
		assert_int_equal(dl->history[0].outcome,
				 HANDOFF_OUTCOME_EXPIRED);
		handoff_dead_letters_free(dl, 1);
	}
	assert_int_equal(it_fetch(c, "s", 3, 300, &d), 0);
	handoff_close(c);
	broker_passed(b);
}

/* ---- a confirmed replay survives kill -9 ----------------------------------- */

static void test_replay_survives_kill9(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "ops", 0);
	uint64_t ids[NLET];
	make_dead_letters(c, ids);

	handoff_dlq_filter mx = { .reason = HANDOFF_DEAD_MAX_ATTEMPTS };
	handoff_dlq_action act = { .filter = &mx };
	handoff_dlq_result r = { 0 };
	assert_int_equal(handoff_dlq_replay(c, "s", &act, &r), HANDOFF_OK);
	assert_int_equal(r.n_event_ids, NLET / 2);
	handoff_dlq_result_free(&r);
	broker_kill9(b);
	broker_spawn(b);

	/* Each replayed letter is out of the DLQ and ready, not lost. */
	for (int i = 0; i < NLET; i++)
		assert_int_equal(it_dlq_has(c, "s", ids[i]), i % 2 == 1);
	handoff_subscription_info info = it_sub_info(c, "s");
	assert_int_equal(info.ready, NLET / 2);
	assert_int_equal(info.dead, NLET / 2);
	bool got[NLET] = { false };
	size_t total = 0;
	for (int round = 0; round < 10 && total < NLET / 2; round++) {
		handoff_delivery *d = NULL;
		size_t k = it_fetch(c, "s", 10, 1000, &d);
		for (size_t i = 0; i < k; i++) {
			int idx = -1;
			for (int j = 0; j < NLET; j++)
				if (ids[j] == d[i].event_id)
					idx = j;
			assert_true(idx >= 0 && idx % 2 == 0);
			assert_false(got[idx]);
			got[idx] = true;
			assert_int_equal(d[i].attempt, 3);
			handoff_trace *t = NULL;
			handoff_subscription_trace *s =
				it_trace_sub(c, d[i].event_id, "s", &t);
			assert_int_equal(s->replays, 1);
			assert_int_equal(s->n_history, 3);
			handoff_trace_free(t);
			assert_int_equal(it_ack1(c, "s", d[i].event_id,
						 d[i].lease_token),
					 HANDOFF_OK);
		}
		total += k;
		handoff_deliveries_free(d, k);
	}
	assert_int_equal(total, NLET / 2);
	handoff_close(c);
	broker_passed(b);
}

/* ---- the CLI refuses an unconfirmed purge (operator safety) --------------- */

static void test_cli_purge_needs_yes(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "ops", 0);
	uint64_t ids[NLET];
	make_dead_letters(c, ids);
	char idtxt[32];
	snprintf(idtxt, sizeof(idtxt), "%llu", (unsigned long long)ids[0]);

	cli_result r;
	if (!cli_run(b, NULL, 0, &r, "dlq", "purge", "s", idtxt, NULL)) {
		handoff_close(c);
		broker_passed(b);
		skip();
	}
	if (r.status != 2)
		fprintf(stderr, "cli stdout: %s\ncli stderr: %s\n", r.out,
			r.err);
	assert_int_equal(r.status, 2);
	cli_result_free(&r);
	assert_int_equal(it_dlq_count(c, "s"), NLET);

	assert_true(cli_run(b, NULL, 0, &r, "dlq", "list", "s", NULL));
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, idtxt));
	cli_result_free(&r);

	assert_true(cli_run(b, NULL, 0, &r, "dlq", "purge", "s", idtxt, "--yes",
			    "--why", "test", NULL));
	if (r.status != 0)
		fprintf(stderr, "cli stdout: %s\ncli stderr: %s\n", r.out,
			r.err);
	assert_int_equal(r.status, 0);
	cli_result_free(&r);
	assert_false(it_dlq_has(c, "s", ids[0]));
	assert_int_equal(it_dlq_count(c, "s"), NLET - 1);
	handoff_close(c);
	broker_passed(b);
}

int main(void)
{
	it_default_config = CONFIG;
#define T(f) cmocka_unit_test_setup_teardown(f, it_setup, it_teardown)
	const struct CMUnitTest tests[] = {
		T(test_list_filters),
		T(test_show),
		T(test_replay_by_id),
		T(test_replay_dies_again),
		T(test_replay_by_filter),
		T(test_purge),
		T(test_trace_lifecycle),
		T(test_nothing_leaves_on_its_own),
		T(test_replay_survives_kill9),
		T(test_cli_purge_needs_yes),
	};
	return cmocka_run_group_tests_name("dlq", tests, NULL, NULL);
}
