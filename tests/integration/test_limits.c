/*
 * test_limits.c — promise 9 (backpressure, not loss): every configured
 * limit refuses with its own clear error and changes nothing, and a full
 * disk refuses publishes while acks keep working, against a real handoffd.
 *
 * Each limit is checked at its boundary: the last request inside the limit
 * is accepted, the first one over it is refused with HANDOFF_ELIMIT (or
 * HANDOFF_ESTORAGEFULL) and a message naming the setting, nothing of the
 * refused request is stored, and the limit lets work in again once the
 * cause is gone.
 */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

static const char CONFIG[] = "[defaults]\n"
			     "max_attempts = 3\n"
			     "ack_deadline = 1s\n"
			     "backoff_min = 50ms\n"
			     "backoff_max = 200ms\n"
			     "[limits]\n"
			     "max_payload = 1K\n"
			     "max_batch = 10\n"
			     "max_subscriptions = 3\n"
			     "max_held_fetches = 2\n"
			     "max_backlog = 5\n"
			     "max_leases_per_consumer = 3\n";

static void assert_message_names(handoff_client *c, const char *setting)
{
	const char *m = handoff_last_message(c);
	if (!strstr(m, setting))
		fail_msg("message '%s' does not name %s", m, setting);
}

static int publish_n(handoff_client *c, const char *topic, int n,
		     const char *prefix, size_t len)
{
	handoff_event ev[16];
	char keys[16][32];
	char *payload = calloc(1, len + 1);
	assert_non_null(payload);
	memset(payload, 'p', len);
	assert_true(n <= 16);
	for (int i = 0; i < n; i++) {
		snprintf(keys[i], sizeof keys[i], "%s-%d", prefix, i);
		ev[i] = (handoff_event){ .payload = payload,
					 .payload_len = len,
					 .idempotency_key = keys[i] };
	}
	uint64_t ids[16];
	int rc = handoff_publish(c, topic, ev, (size_t)n, ids, NULL);
	free(payload);
	return rc;
}

static uint64_t owed(handoff_client *c, const char *sub)
{
	handoff_subscription_info i = it_sub_info(c, sub);
	return i.ready + i.delayed + i.leased;
}

static void test_payload_and_batch(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "limits", 0);
	it_subscribe(c, "big", "big-s", 3, 1000, 50, 200);

	assert_int_equal(publish_n(c, "big", 1, "fits", 1024), HANDOFF_OK);
	assert_int_equal(publish_n(c, "big", 1, "over", 1025), HANDOFF_ELIMIT);
	assert_message_names(c, "max_payload");
	assert_int_equal(owed(c, "big-s"), 1);

	/* max_backlog 5 is below max_batch 10: use a second subscription
	 * only to reach the batch limit through the batch check. */
	assert_int_equal(publish_n(c, "big", 11, "batch", 8), HANDOFF_ELIMIT);
	assert_message_names(c, "max_batch");
	assert_int_equal(owed(c, "big-s"), 1);

	handoff_delivery *d = NULL;
	size_t dn = 0;
	assert_int_equal(handoff_fetch(c, "big-s", 11, 0, &d, &dn),
			 HANDOFF_ELIMIT);
	assert_message_names(c, "max_batch");
	handoff_close(c);
	broker_passed(b);
}

static void test_max_subscriptions(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "limits", 0);
	it_subscribe(c, "t", "s1", 3, 1000, 50, 200);
	it_subscribe(c, "t", "s2", 3, 1000, 50, 200);
	it_subscribe(c, "t", "s3", 3, 1000, 50, 200);
	bool created = true;
	assert_int_equal(handoff_subscribe(c, "t", "s4", NULL, &created, NULL),
			 HANDOFF_ELIMIT);
	assert_message_names(c, "max_subscriptions");
	handoff_subscription_info *list = NULL;
	size_t n = 0;
	assert_int_equal(handoff_list_subscriptions(c, &list, &n), HANDOFF_OK);
	assert_int_equal(n, 3);
	handoff_subscriptions_free(list, n);
	/* Room again after an unsubscribe. */
	assert_int_equal(handoff_unsubscribe(c, "s1"), HANDOFF_OK);
	assert_true(it_subscribe(c, "t", "s4", 3, 1000, 50, 200));
	handoff_close(c);
	broker_passed(b);
}

/* A backlog at max_backlog refuses whole publishes (all or nothing, with a
 * retry hint) until the subscription has drained. */
static void test_max_backlog(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "limits", 0);
	it_subscribe(c, "deep", "deep-s", 3, 1000, 50, 200);
	it_subscribe(c, "deep", "other-s", 3, 1000, 50, 200);

	assert_int_equal(publish_n(c, "deep", 4, "a", 16), HANDOFF_OK);
	/* 4 owed + 2 > 5: the whole batch is refused, nothing stored. */
	assert_int_equal(publish_n(c, "deep", 2, "b", 16), HANDOFF_ELIMIT);
	assert_message_names(c, "max_backlog");
	assert_true(handoff_last_retry_after_ms(c) > 0);
	assert_int_equal(owed(c, "deep-s"), 4);
	assert_int_equal(owed(c, "other-s"), 4);
	assert_int_equal(publish_n(c, "deep", 1, "c", 16), HANDOFF_OK);
	assert_int_equal(publish_n(c, "deep", 1, "d", 16), HANDOFF_ELIMIT);
	assert_true(broker_log_contains(b, "reason=max_backlog"));

	/* Draining one subscription is not enough: the other still owes 5. */
	handoff_delivery *d = NULL;
	size_t k = it_fetch(c, "deep-s", 2, 0, &d);
	assert_int_equal(k, 2);
	for (size_t i = 0; i < k; i++)
		assert_int_equal(
			it_ack1(c, "deep-s", d[i].event_id, d[i].lease_token),
			HANDOFF_OK);
	handoff_deliveries_free(d, k);
	assert_int_equal(publish_n(c, "deep", 1, "e", 16), HANDOFF_ELIMIT);
	k = it_fetch(c, "other-s", 2, 0, &d);
	assert_int_equal(k, 2);
	for (size_t i = 0; i < k; i++)
		assert_int_equal(
			it_ack1(c, "other-s", d[i].event_id, d[i].lease_token),
			HANDOFF_OK);
	handoff_deliveries_free(d, k);
	assert_int_equal(publish_n(c, "deep", 2, "f", 16), HANDOFF_OK);
	assert_int_equal(owed(c, "deep-s"), 5);
	handoff_close(c);
	broker_passed(b);
}

/* A consumer holding max_leases_per_consumer leases gets no more until it
 * acks, nacks or its leases expire; another consumer is not affected. */
static void test_max_leases_per_consumer(void **state)
{
	broker *b = *state;
	handoff_client *a = it_connect(b, "greedy", 0);
	handoff_client *o = it_connect(b, "other", 0);
	it_subscribe(a, "lease", "lease-s", 5, 1000, 50, 200);
	assert_int_equal(publish_n(a, "lease", 5, "l", 16), HANDOFF_OK);

	handoff_delivery *d = NULL;
	size_t k = it_fetch(a, "lease-s", 10, 0, &d);
	assert_int_equal(k, 3); /* clamped to the limit, not refused */
	handoff_delivery *more = NULL;
	size_t mn = 0;
	assert_int_equal(handoff_fetch(a, "lease-s", 1, 0, &more, &mn),
			 HANDOFF_ELIMIT);
	assert_message_names(a, "max_leases_per_consumer");
	assert_int_equal(it_sub_info(a, "lease-s").leased, 3);

	/* Someone else still gets the rest. */
	size_t ko = it_fetch(o, "lease-s", 10, 0, &more);
	assert_int_equal(ko, 2);
	handoff_deliveries_free(more, ko);

	/* An ack gives one back, a nack another. */
	assert_int_equal(it_ack1(a, "lease-s", d[0].event_id, d[0].lease_token),
			 HANDOFF_OK);
	assert_int_equal(it_nack1(a, "lease-s", d[1].event_id, d[1].lease_token,
				  0, false, "again"),
			 HANDOFF_OK);
	size_t k2 = it_fetch(a, "lease-s", 10, 2000, &more);
	assert_true(k2 >= 1 && k2 <= 2);
	handoff_deliveries_free(more, k2);
	handoff_deliveries_free(d, k);

	/* Expired leases count down too: after the ack deadline (1 s) every
	 * lease of both consumers has expired and "greedy" may take 3 again. */
	it_sleep_ms(1500);
	k = it_fetch(a, "lease-s", 10, 3000, &d);
	assert_int_equal(k, 3);
	handoff_deliveries_free(d, k);
	handoff_close(a);
	handoff_close(o);
	broker_passed(b);
}

struct held_call {
	const broker *b;
	int rc;
};

static void *held_fetch(void *arg)
{
	struct held_call *h = arg;
	handoff_client *c = it_connect(h->b, "waiter", 0);
	handoff_delivery *d = NULL;
	size_t n = 0;
	h->rc = handoff_fetch(c, "held-s", 1, 3000, &d, &n);
	handoff_deliveries_free(d, n);
	handoff_close(c);
	return NULL;
}

/* Two long polls may wait at once; the third is refused at once. */
static void test_max_held_fetches(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "limits", 0);
	it_subscribe(c, "held", "held-s", 3, 1000, 50, 200);
	pthread_t th[2];
	struct held_call hc[2] = { { b, -1 }, { b, -1 } };
	for (int i = 0; i < 2; i++)
		assert_int_equal(
			pthread_create(&th[i], NULL, held_fetch, &hc[i]), 0);
	it_sleep_ms(800); /* both are parked by now */
	handoff_delivery *d = NULL;
	uint64_t t0 = it_now_ms();
	size_t n = 0;
	assert_int_equal(handoff_fetch(c, "held-s", 1, 3000, &d, &n),
			 HANDOFF_ELIMIT);
	assert_message_names(c, "max_held_fetches");
	assert_true(it_now_ms() - t0 < 2500); /* refused, not parked */
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(hc[i].rc, HANDOFF_OK);
	}
	/* Once they are answered, a long poll may wait again. */
	assert_int_equal(handoff_fetch(c, "held-s", 1, 200, &d, &n),
			 HANDOFF_OK);
	assert_int_equal(n, 0);
	handoff_close(c);
	broker_passed(b);
}

/* ---- a full disk ----------------------------------------------------------
 * RLIMIT_FSIZE (inherited by the broker, which ignores SIGXFSZ) makes every
 * write past 6 MiB of a file fail with EFBIG, like a full disk. The broker
 * keeps headroom allocated in its data file, so once publishes are refused
 * the backlog still drains, and the pages the acks free take publishes
 * again without a restart.
 */
static const char DISK_CONFIG[] = "[broker]\n"
				  "map_size = 64M\n"
				  "[defaults]\n"
				  "max_attempts = 3\n"
				  "ack_deadline = 30s\n"
				  "[limits]\n"
				  "max_payload = 64K\n"
				  "storage_headroom = 1M\n";

static void test_disk_full(void **state)
{
	(void)state;
	enum { SIZE = 32 * 1024, MAX = 400 };
	broker *b = broker_prepare(DISK_CONFIG);
	struct rlimit old, lim;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 6u << 20;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	broker_spawn(b); /* inherits the limit */
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);

	handoff_client *c = it_connect(b, "filler", 0);
	it_subscribe(c, "disk", "s", 3, 30000, 50, 200);
	char *buf = malloc(SIZE);
	assert_non_null(buf);
	uint64_t *ids = calloc(MAX, sizeof *ids);
	assert_non_null(ids);
	int confirmed = 0, rc = HANDOFF_OK;
	for (int i = 0; i < MAX; i++) {
		char key[32];
		snprintf(key, sizeof key, "disk-%d", i);
		memset(buf, 'a' + i % 26, SIZE);
		handoff_event ev = { .payload = buf,
				     .payload_len = SIZE,
				     .idempotency_key = key };
		rc = handoff_publish(c, "disk", &ev, 1, &ids[confirmed], NULL);
		if (rc != HANDOFF_OK)
			break;
		confirmed++;
	}
	assert_int_equal(rc, HANDOFF_ESTORAGEFULL);
	assert_true(confirmed > 20);
	assert_true(handoff_last_retry_after_ms(c) > 0);
	assert_true(broker_log_contains(b, "event=disk_space_short"));
	assert_true(broker_log_contains(b, "event=storage_full"));
	assert_true(broker_log_contains(b, "limit=disk"));
	char path[400];
	struct stat sb;
	snprintf(path, sizeof path, "%s/data.mdb", b->data);
	assert_int_equal(stat(path, &sb), 0);
	assert_true(sb.st_size <= (6 << 20));

	/* Everything confirmed drains, whole, with every ack accepted. */
	int seen = 0;
	while (seen < confirmed) {
		handoff_delivery *d = NULL;
		size_t k = it_fetch(c, "s", 8, 2000, &d);
		assert_true(k > 0);
		for (size_t j = 0; j < k; j++) {
			assert_int_equal(d[j].event_id, ids[seen]);
			assert_int_equal(d[j].payload_len, SIZE);
			const char *p = d[j].payload;
			char want = (char)('a' + seen % 26);
			assert_true(p[0] == want && p[SIZE - 1] == want);
			assert_int_equal(it_ack1(c, "s", d[j].event_id,
						 d[j].lease_token),
					 HANDOFF_OK);
			seen++;
		}
		handoff_deliveries_free(d, k);
	}
	/* The disk is still "full", but the file's own freed pages take new
	 * publishes, without a restart. */
	memset(buf, 'z', SIZE);
	handoff_event again = { .payload = buf,
				.payload_len = SIZE,
				.idempotency_key = "after-drain" };
	uint64_t id = 0;
	uint64_t t0 = it_now_ms();
	for (;;) {
		rc = handoff_publish(c, "disk", &again, 1, &id, NULL);
		if (rc == HANDOFF_OK || it_now_ms() - t0 > 10000)
			break;
		it_sleep_ms(200);
	}
	assert_int_equal(rc, HANDOFF_OK);
	assert_true(broker_log_contains(b, "event=storage_available"));
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 8, 2000, &d), 1);
	assert_int_equal(d[0].event_id, id);
	handoff_deliveries_free(d, 1);
	assert_false(broker_log_contains(b, "event=store_unusable"));
	free(ids);
	free(buf);
	handoff_close(c);
	broker_passed(b);
	broker_cleanup(b);
}

/* A request over the broker's max_request would be dropped by nanomsg
 * without a word to either side (and resent until the deadline): the
 * client learns the limit from the broker's ping and refuses at once. */
static const char SMALL_REQUEST_CONFIG[] = "[limits]\n"
					   "max_payload = 32K\n"
					   "max_request = 64K\n";

static void test_max_request(void **state)
{
	(void)state;
	broker *b = broker_start(SMALL_REQUEST_CONFIG);
	handoff_client *c = it_connect(b, "big", 20000);
	it_subscribe(c, "req", "req-s", 3, 1000, 50, 200);
	char *payload = malloc(30 * 1024);
	assert_non_null(payload);
	memset(payload, 'r', 30 * 1024);
	handoff_event ev[3];
	const char *keys[3] = { "r0", "r1", "r2" };
	for (int i = 0; i < 3; i++)
		ev[i] = (handoff_event){ .payload = payload,
					 .payload_len = 30 * 1024,
					 .idempotency_key = keys[i] };
	uint64_t ids[3];
	uint64_t t0 = it_now_ms();
	assert_int_equal(handoff_publish(c, "req", ev, 3, ids, NULL),
			 HANDOFF_ETOOBIG);
	assert_true(it_now_ms() - t0 < 5000); /* refused, not timed out */
	assert_int_equal(owed(c, "req-s"), 0);
	/* two of them fit in one request */
	assert_int_equal(handoff_publish(c, "req", ev, 2, ids, NULL),
			 HANDOFF_OK);
	assert_int_equal(owed(c, "req-s"), 2);
	free(payload);
	handoff_close(c);
	broker_passed(b);
	broker_cleanup(b);
}

int main(void)
{
	it_default_config = CONFIG;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_payload_and_batch,
						it_setup, it_teardown),
		cmocka_unit_test_setup_teardown(test_max_subscriptions,
						it_setup, it_teardown),
		cmocka_unit_test_setup_teardown(test_max_backlog, it_setup,
						it_teardown),
		cmocka_unit_test_setup_teardown(test_max_leases_per_consumer,
						it_setup, it_teardown),
		cmocka_unit_test_setup_teardown(test_max_held_fetches, it_setup,
						it_teardown),
		cmocka_unit_test(test_disk_full),
		cmocka_unit_test(test_max_request),
	};
	return cmocka_run_group_tests_name("limits", tests, NULL, NULL);
}
