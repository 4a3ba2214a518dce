/*
 * test_publish.c — promises 1 (durable publish), 2 (safe producer
 * retries), 3 (every transient failure retried, never a false success) and
 * the publish-side limits, against a real handoffd.
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

/* ---- helpers ------------------------------------------------------------- */

typedef struct seen {
	uint64_t id;
	char *payload;
	size_t len;
	char *key;
	uint32_t attempt;
	size_t n_headers;
	char hname[4][32];
	char hvalue[4][64];
} seen;

/*
 * Fetch and ack everything sub holds until a fetch waiting quiet_ms comes
 * back empty; copies every delivery into *out (grown). Returns the count.
 */
static size_t drain(handoff_client *c, const char *sub, uint32_t quiet_ms,
		    seen **out)
{
	size_t n = 0, cap = 0;
	*out = NULL;
	for (;;) {
		handoff_delivery *d = NULL;
		size_t k = it_fetch(c, sub, 64, quiet_ms, &d);
		if (k == 0)
			break;
		handoff_ack_item items[64];
		int res[64];
		for (size_t i = 0; i < k; i++) {
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				*out = realloc(*out, cap * sizeof(seen));
				assert_non_null(*out);
			}
			seen *s = &(*out)[n++];
			memset(s, 0, sizeof(*s));
			s->id = d[i].event_id;
			s->payload = malloc(d[i].payload_len + 1);
			assert_non_null(s->payload);
			if (d[i].payload_len)
				memcpy(s->payload, d[i].payload,
				       d[i].payload_len);
			s->payload[d[i].payload_len] = '\0';
			s->len = d[i].payload_len;
			s->key = strdup(d[i].key ? d[i].key : "");
			s->attempt = d[i].attempt;
			s->n_headers = d[i].n_headers;
			for (size_t h = 0; h < d[i].n_headers && h < 4; h++) {
				snprintf(s->hname[h], sizeof(s->hname[h]), "%s",
					 d[i].headers[h].name);
				snprintf(s->hvalue[h], sizeof(s->hvalue[h]),
					 "%s", d[i].headers[h].value);
			}
			items[i].event_id = d[i].event_id;
			items[i].lease_token = d[i].lease_token;
		}
		assert_int_equal(handoff_ack(c, sub, items, k, res),
				 HANDOFF_OK);
		for (size_t i = 0; i < k; i++)
			assert_int_equal(res[i], HANDOFF_OK);
		handoff_deliveries_free(d, k);
	}
	return n;
}

static void seen_free(seen *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(s[i].payload);
		free(s[i].key);
	}
	free(s);
}

static const seen *find_seen(const seen *s, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (s[i].id == id)
			return &s[i];
	return NULL;
}

static const char *seen_header(const seen *s, const char *name)
{
	for (size_t h = 0; h < s->n_headers && h < 4; h++)
		if (strcmp(s->hname[h], name) == 0)
			return s->hvalue[h];
	return NULL;
}

/* ---- promise 1: a confirmed publish survives kill -9 --------------------- */

static void test_durable_across_kill9(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "producer", 0);
	it_subscribe(c, "payments", "ledger", 3, 30000, 50, 200);

	enum { SINGLES = 5, BATCH = 20, TOTAL = SINGLES + BATCH };
	uint64_t ids[TOTAL];
	char payloads[TOTAL][64];
	char keys[TOTAL][32];

	for (int i = 0; i < SINGLES; i++) {
		snprintf(payloads[i], sizeof(payloads[i]), "single-%d", i);
		snprintf(keys[i], sizeof(keys[i]), "acct-%d", i);
		char hv[32];
		snprintf(hv, sizeof(hv), "v%d", i);
		handoff_header hs[2] = { { "trace-id", hv },
					 { "content-type", "text/plain" } };
		handoff_event ev = { .payload = payloads[i],
				     .payload_len = strlen(payloads[i]),
				     .key = keys[i],
				     .headers = hs,
				     .n_headers = 2 };
		bool dup = true;
		assert_int_equal(
			handoff_publish(c, "payments", &ev, 1, &ids[i], &dup),
			HANDOFF_OK);
		assert_false(dup);
		assert_true(ids[i] != 0);
	}
	handoff_event evs[BATCH];
	handoff_header bh[BATCH][1];
	char bhv[BATCH][32];
	for (int j = 0; j < BATCH; j++) {
		int i = SINGLES + j;
		/* Payloads of varied size, one empty, one with NUL bytes. */
		snprintf(payloads[i], sizeof(payloads[i]), "batch-%d-%.*s", j,
			 j, "xxxxxxxxxxxxxxxxxxxxxxxx");
		snprintf(keys[i], sizeof(keys[i]), j % 2 ? "k-%d" : "", j);
		snprintf(bhv[j], sizeof(bhv[j]), "b%d", j);
		bh[j][0] = (handoff_header){ "seq", bhv[j] };
		evs[j] = (handoff_event){ .payload = payloads[i],
					  .payload_len = strlen(payloads[i]),
					  .key = keys[i],
					  .headers = bh[j],
					  .n_headers = 1 };
	}
	bool dups[BATCH];
	assert_int_equal(
		handoff_publish(c, "payments", evs, BATCH, ids + SINGLES, dups),
		HANDOFF_OK);
	for (int i = 0; i < TOTAL; i++) {
		assert_true(ids[i] != 0);
		for (int j = 0; j < i; j++)
			assert_true(ids[i] != ids[j]);
	}
	for (int j = 0; j < BATCH; j++)
		assert_false(dups[j]);

	broker_kill9(b);
	broker_spawn(b);

	/* The old handle must reconnect by itself (promise 11). */
	seen *s = NULL;
	size_t n = drain(c, "ledger", 500, &s);
	assert_int_equal(n, TOTAL);
	for (int i = 0; i < TOTAL; i++) {
		const seen *x = find_seen(s, n, ids[i]);
		assert_non_null(x);
		assert_int_equal(x->len, strlen(payloads[i]));
		assert_string_equal(x->payload, payloads[i]);
		assert_string_equal(x->key, keys[i]);
		assert_int_equal(x->attempt, 1);
		if (i < SINGLES) {
			char hv[32];
			snprintf(hv, sizeof(hv), "v%d", i);
			assert_int_equal(x->n_headers, 2);
			assert_non_null(seen_header(x, "trace-id"));
			assert_string_equal(seen_header(x, "trace-id"), hv);
			assert_non_null(seen_header(x, "content-type"));
			assert_string_equal(seen_header(x, "content-type"),
					    "text/plain");
		} else {
			assert_int_equal(x->n_headers, 1);
			assert_non_null(seen_header(x, "seq"));
			assert_string_equal(seen_header(x, "seq"),
					    bhv[i - SINGLES]);
		}
	}
	seen_free(s, n);

	/* And the acks were durable too: nothing comes back after another
	 * kill -9. */
	broker_kill9(b);
	broker_spawn(b);
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "ledger", 10, 300, &d), 0);
	handoff_subscription_info info = it_sub_info(c, "ledger");
	assert_int_equal(info.ready + info.delayed + info.leased + info.dead,
			 0);
	handoff_close(c);
	broker_passed(b);
}

/* ---- promise 2: same idempotency key = same event, stored once ----------- */

static void test_duplicate_idempotency_key(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "producer", 0);
	it_subscribe(c, "orders", "billing", 3, 30000, 50, 200);

	handoff_event ev = { .payload = "order 42",
			     .payload_len = 8,
			     .key = "cust-7",
			     .idempotency_key = "order-42" };
	uint64_t id1 = 0, id2 = 0;
	bool dup1 = true, dup2 = false;
	assert_int_equal(handoff_publish(c, "orders", &ev, 1, &id1, &dup1),
			 HANDOFF_OK);
	assert_false(dup1);
	assert_int_equal(handoff_publish(c, "orders", &ev, 1, &id2, &dup2),
			 HANDOFF_OK);
	assert_true(dup2);
	assert_int_equal(id1, id2);

	/* In a batch: the known key maps to the old id, the new one is new. */
	handoff_event evs[2] = {
		{ .payload = "order 42 again",
		  .payload_len = 14,
		  .idempotency_key = "order-42" },
		{ .payload = "order 43",
		  .payload_len = 8,
		  .idempotency_key = "order-43" },
	};
	uint64_t ids[2] = { 0, 0 };
	bool dups[2] = { false, true };
	assert_int_equal(handoff_publish(c, "orders", evs, 2, ids, dups),
			 HANDOFF_OK);
	assert_int_equal(ids[0], id1);
	assert_true(dups[0]);
	assert_false(dups[1]);
	assert_true(ids[1] != id1);

	/* The trace keeps the key. */
	handoff_trace *t = NULL;
	assert_int_equal(handoff_trace_event(c, id1, &t), HANDOFF_OK);
	assert_string_equal(t->idempotency_key, "order-42");
	assert_string_equal(t->key, "cust-7");
	assert_string_equal(t->topic, "orders");
	handoff_trace_free(t);

	/* The subscriber receives the event once, with the first payload. */
	seen *s = NULL;
	size_t n = drain(c, "billing", 700, &s);
	assert_int_equal(n, 2);
	const seen *a = find_seen(s, n, id1);
	const seen *bb = find_seen(s, n, ids[1]);
	assert_non_null(a);
	assert_non_null(bb);
	assert_string_equal(a->payload, "order 42");
	assert_string_equal(bb->payload, "order 43");
	seen_free(s, n);

	/* Dedup survives a restart (the record is durable). */
	broker_restart(b, true);
	uint64_t id3 = 0;
	bool dup3 = false;
	assert_int_equal(handoff_publish(c, "orders", &ev, 1, &id3, &dup3),
			 HANDOFF_OK);
	assert_true(dup3);
	assert_int_equal(id3, id1);
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "billing", 10, 500, &d), 0);

	handoff_subscription_stats st = it_sub_stats(c, "billing");
	assert_int_equal(st.acked, 2);
	handoff_close(c);
	broker_passed(b);
}

/* ---- promise 13: no subscription, no store ------------------------------- */

static void test_no_subscriptions(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "producer", 0);
	handoff_event ev = { .payload = "lost?", .payload_len = 5 };
	uint64_t id = 0;
	assert_int_equal(
		handoff_publish(c, "nobody-listens", &ev, 1, &id, NULL),
		HANDOFF_ENOSUBSCRIPTIONS);

	/* Nothing was stored for later: a subscription made afterwards gets
	 * nothing, and the store holds no event. */
	it_subscribe(c, "nobody-listens", "late", 3, 30000, 50, 200);
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "late", 10, 300, &d), 0);
	handoff_stats *st = NULL;
	assert_int_equal(handoff_get_stats(c, &st), HANDOFF_OK);
	assert_int_equal(st->events_stored, 0);
	for (size_t i = 0; i < st->n_topics; i++)
		if (strcmp(st->topics[i].name, "nobody-listens") == 0)
			assert_int_equal(st->topics[i].published, 0);
	handoff_stats_free(st);

	/* Now that it has a subscription, the same publish works. */
	uint64_t id2 = it_publish1(c, "nobody-listens", "found", NULL, NULL);
	assert_int_equal(it_fetch(c, "late", 10, 2000, &d), 1);
	assert_int_equal(d[0].event_id, id2);
	assert_memory_equal(d[0].payload, "found", 5);
	assert_int_equal(it_ack1(c, "late", d[0].event_id, d[0].lease_token),
			 HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	handoff_close(c);
	broker_passed(b);
}

/* ---- limits: an oversized payload is refused and nothing is stored ------- */

static void test_oversized_payload(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "producer", 0);
	it_subscribe(c, "blobs", "store", 3, 30000, 50, 200);

	const size_t limit = 64 * 1024;
	char *big = malloc(limit + 1);
	assert_non_null(big);
	memset(big, 'z', limit + 1);

	handoff_event ev = { .payload = big, .payload_len = limit + 1 };
	uint64_t id = 0;
	assert_int_equal(handoff_publish(c, "blobs", &ev, 1, &id, NULL),
			 HANDOFF_ELIMIT);

	/* All or nothing: a batch with one oversized event stores none. */
	handoff_event evs[2] = {
		{ .payload = "small",
		  .payload_len = 5,
		  .idempotency_key = "small-1" },
		{ .payload = big, .payload_len = limit + 1 },
	};
	uint64_t ids[2];
	assert_int_equal(handoff_publish(c, "blobs", evs, 2, ids, NULL),
			 HANDOFF_ELIMIT);

	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "store", 10, 300, &d), 0);
	handoff_subscription_info info = it_sub_info(c, "store");
	assert_int_equal(info.ready + info.delayed + info.leased, 0);
	handoff_stats *st = NULL;
	assert_int_equal(handoff_get_stats(c, &st), HANDOFF_OK);
	assert_int_equal(st->events_stored, 0);
	handoff_stats_free(st);

	/* The refused batch left no idempotency record: "small-1" is new. */
	uint64_t sid = 0;
	bool sdup = true;
	assert_int_equal(handoff_publish(c, "blobs", &evs[0], 1, &sid, &sdup),
			 HANDOFF_OK);
	assert_false(sdup);

	/* A payload of exactly the limit is accepted and delivered whole. */
	big[0] = 'A';
	big[limit - 1] = 'Z';
	ev.payload_len = limit;
	assert_int_equal(handoff_publish(c, "blobs", &ev, 1, &id, NULL),
			 HANDOFF_OK);
	size_t got = 0;
	bool have_big = false, have_small = false;
	for (int round = 0; round < 10 && got < 2; round++) {
		size_t k = it_fetch(c, "store", 10, 1000, &d);
		for (size_t i = 0; i < k; i++) {
			if (d[i].event_id == id) {
				assert_int_equal(d[i].payload_len, limit);
				assert_memory_equal(d[i].payload, big, limit);
				have_big = true;
			} else {
				assert_int_equal(d[i].event_id, sid);
				have_small = true;
			}
			assert_int_equal(it_ack1(c, "store", d[i].event_id,
						 d[i].lease_token),
					 HANDOFF_OK);
		}
		got += k;
		handoff_deliveries_free(d, k);
	}
	assert_true(have_big);
	assert_true(have_small);
	free(big);
	handoff_close(c);
	broker_passed(b);
}

/* ---- promise 3: a call made while the broker is down waits for it -------- */

static void test_publish_while_broker_down(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "producer", 20000);
	it_subscribe(c, "late-start", "sub", 3, 30000, 50, 200);
	broker_term(b);

	/* The broker comes back 1 s from now; the publish is issued now. */
	broker_spawn_delayed(b, 1000);
	uint64_t t0 = it_now_ms();
	handoff_event ev = { .payload = "patience",
			     .payload_len = 8,
			     .idempotency_key = "p-1" };
	uint64_t id = 0;
	bool dup = true;
	int rc = handoff_publish(c, "late-start", &ev, 1, &id, &dup);
	uint64_t took = it_now_ms() - t0;
	if (rc != HANDOFF_OK)
		fprintf(stderr, "publish while down: %s after %llu ms\n",
			handoff_strerror(rc), (unsigned long long)took);
	assert_int_equal(rc, HANDOFF_OK);
	assert_false(dup);
	/* It cannot have been confirmed before the broker existed. */
	assert_true(took >= 900);
	broker_wait_ready(b);

	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "sub", 10, 2000, &d), 1);
	assert_int_equal(d[0].event_id, id);
	assert_memory_equal(d[0].payload, "patience", 8);
	assert_int_equal(it_ack1(c, "sub", id, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	assert_int_equal(it_fetch(c, "sub", 10, 300, &d), 0);
	handoff_close(c);
	broker_passed(b);
}

/* ---- promises 2+3: publishes retried through a kill -9 are stored once --- */

enum { LOOP_N = 120 };

typedef struct pub_loop {
	const char *url;
	volatile int done; /* publishes finished */
	int rc[LOOP_N];
	uint64_t id[LOOP_N];
	bool dup[LOOP_N];
	uint64_t max_call_ms;
} pub_loop;

/* Event i has payload "p-i"; even i carry the fixed key "fixed-i", odd i
 * let the library generate one. */
static void *publisher(void *arg)
{
	pub_loop *pl = arg;
	handoff_options o = { .deadline_ms = 30000,
			      .consumer_name = "loop-producer" };
	handoff_client *c = NULL;
	if (handoff_connect(pl->url, &o, &c) != HANDOFF_OK) {
		for (int i = 0; i < LOOP_N; i++)
			pl->rc[i] = -1;
		__atomic_store_n(&pl->done, LOOP_N, __ATOMIC_SEQ_CST);
		return NULL;
	}
	for (int i = 0; i < LOOP_N; i++) {
		char payload[32], key[32];
		snprintf(payload, sizeof(payload), "p-%d", i);
		snprintf(key, sizeof(key), "fixed-%d", i);
		handoff_event ev = { .payload = payload,
				     .payload_len = strlen(payload),
				     .idempotency_key = i % 2 ? NULL : key };
		uint64_t t0 = it_now_ms();
		pl->rc[i] = handoff_publish(c, "restarts", &ev, 1, &pl->id[i],
					    &pl->dup[i]);
		uint64_t took = it_now_ms() - t0;
		if (took > pl->max_call_ms)
			pl->max_call_ms = took;
		__atomic_store_n(&pl->done, i + 1, __ATOMIC_SEQ_CST);
	}
	handoff_close(c);
	return NULL;
}

static void test_publish_retried_through_restart(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "consumer", 20000);
	it_subscribe(c, "restarts", "sink", 3, 30000, 50, 200);

	pub_loop *pl = calloc(1, sizeof(*pl));
	assert_non_null(pl);
	pl->url = broker_url(b);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, publisher, pl), 0);

	/* Kill the broker in the middle of the stream, twice. */
	uint64_t t0 = it_now_ms();
	while (__atomic_load_n(&pl->done, __ATOMIC_SEQ_CST) < 30 &&
	       it_now_ms() - t0 < 20000)
		it_sleep_ms(1);
	broker_kill9(b);
	int done_at_kill1 = __atomic_load_n(&pl->done, __ATOMIC_SEQ_CST);
	it_sleep_ms(300);
	broker_spawn(b);
	int done_at_second = __atomic_load_n(&pl->done, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&pl->done, __ATOMIC_SEQ_CST) <
		       done_at_second + 20 &&
	       it_now_ms() - t0 < 30000)
		it_sleep_ms(1);
	broker_kill9(b);
	int done_at_kill2 = __atomic_load_n(&pl->done, __ATOMIC_SEQ_CST);
	broker_spawn(b);
	pthread_join(th, NULL);
	if (getenv("HANDOFF_TEST_VERBOSE"))
		fprintf(stderr,
			"kills after %d and %d of %d publishes; "
			"longest publish %llu ms\n",
			done_at_kill1, done_at_kill2, LOOP_N,
			(unsigned long long)pl->max_call_ms);
	/* Both kills hit the stream, and some publish waited out the
	 * 300 ms outage: otherwise this test proved nothing. */
	assert_true(done_at_kill1 < LOOP_N);
	assert_true(done_at_kill2 < LOOP_N);
	assert_true(pl->max_call_ms >= 250);

	int stored = 0;
	for (int i = 0; i < LOOP_N; i++) {
		if (pl->rc[i] != HANDOFF_OK)
			fprintf(stderr, "publish %d: %s\n", i,
				handoff_strerror(pl->rc[i]));
		/* The broker was back within the deadline: every call
		 * must have succeeded (promise 3). */
		assert_int_equal(pl->rc[i], HANDOFF_OK);
		stored++;
	}
	assert_int_equal(stored, LOOP_N);

	/* Re-publish every fixed key in one batch: each maps to its id. */
	handoff_event evs[LOOP_N / 2];
	char payloads[LOOP_N / 2][32], keys[LOOP_N / 2][32];
	uint64_t rids[LOOP_N / 2];
	bool rdups[LOOP_N / 2];
	for (int j = 0; j < LOOP_N / 2; j++) {
		snprintf(payloads[j], sizeof(payloads[j]), "p-%d", 2 * j);
		snprintf(keys[j], sizeof(keys[j]), "fixed-%d", 2 * j);
		evs[j] = (handoff_event){ .payload = payloads[j],
					  .payload_len = strlen(payloads[j]),
					  .idempotency_key = keys[j] };
	}
	assert_int_equal(
		handoff_publish(c, "restarts", evs, LOOP_N / 2, rids, rdups),
		HANDOFF_OK);
	for (int j = 0; j < LOOP_N / 2; j++) {
		assert_int_equal(rids[j], pl->id[2 * j]);
		assert_true(rdups[j]);
	}

	/* The consumer sees each payload under exactly one event id, and
	 * that id is the one the producer was given. */
	seen *s = NULL;
	size_t n = drain(c, "sink", 700, &s);
	uint64_t *id_of = calloc(LOOP_N, sizeof(uint64_t));
	assert_non_null(id_of);
	for (size_t k = 0; k < n; k++) {
		int i = -1;
		assert_int_equal(sscanf(s[k].payload, "p-%d", &i), 1);
		assert_true(i >= 0 && i < LOOP_N);
		if (id_of[i] && id_of[i] != s[k].id)
			fprintf(stderr,
				"payload p-%d stored twice: ids %llu "
				"and %llu\n",
				i, (unsigned long long)id_of[i],
				(unsigned long long)s[k].id);
		assert_true(id_of[i] == 0 || id_of[i] == s[k].id);
		id_of[i] = s[k].id;
	}
	for (int i = 0; i < LOOP_N; i++) {
		if (id_of[i] == 0)
			fprintf(stderr,
				"confirmed publish p-%d (id %llu) was "
				"never delivered\n",
				i, (unsigned long long)pl->id[i]);
		assert_int_equal(id_of[i], pl->id[i]);
	}
	/* Each delivered at most... once here, since nothing expired (30 s
	 * ack deadline) and acks went straight back. */
	assert_int_equal(n, LOOP_N);
	handoff_subscription_info info = it_sub_info(c, "sink");
	assert_int_equal(info.ready + info.delayed + info.leased, 0);
	seen_free(s, n);
	free(id_of);
	free(pl);
	handoff_close(c);
	broker_passed(b);
}

/* ---- promise 3: nothing listening → ETIMEDOUT after the deadline --------- */

static void test_timeout_when_nothing_listens(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "producer", 0);
	it_subscribe(c, "void", "sub", 3, 30000, 50, 200);
	broker_kill9(b);

	handoff_set_deadline(c, 1500);
	handoff_event ev = { .payload = "x",
			     .payload_len = 1,
			     .idempotency_key = "never-confirmed" };
	uint64_t t0 = it_now_ms();
	uint64_t id = 0;
	int rc = handoff_publish(c, "void", &ev, 1, &id, NULL);
	uint64_t took = it_now_ms() - t0;
	assert_int_equal(rc, HANDOFF_ETIMEDOUT);
	assert_true(took >= 1300);
	assert_true(took < 10000);

	/* Other calls behave the same. */
	handoff_delivery *d = NULL;
	size_t n = 0;
	t0 = it_now_ms();
	rc = handoff_fetch(c, "sub", 10, 0, &d, &n);
	took = it_now_ms() - t0;
	assert_int_equal(rc, HANDOFF_ETIMEDOUT);
	assert_int_equal(n, 0);
	assert_true(took >= 1300 && took < 10000);
	handoff_ack_item ai = { 1, 1 };
	assert_int_equal(handoff_ack(c, "sub", &ai, 1, NULL),
			 HANDOFF_ETIMEDOUT);

	/* A fresh connect to an address with no listener also times out. */
	char url[400];
	snprintf(url, sizeof(url), "ipc://%s/nobody.sock", b->dir);
	handoff_options o = { .deadline_ms = 800 };
	handoff_client *c2 = NULL;
	t0 = it_now_ms();
	rc = handoff_connect(url, &o, &c2);
	took = it_now_ms() - t0;
	assert_int_equal(rc, HANDOFF_ETIMEDOUT);
	assert_null(c2);
	assert_true(took >= 600 && took < 10000);

	/* The same handle works again once the broker is back. (Whether
	 * the timed-out publish got stored is not promised either way; a
	 * publish with the same key tells, and gives one id.) */
	broker_spawn(b);
	handoff_set_deadline(c, 15000);
	uint64_t id2 = 0, id3 = 0;
	assert_int_equal(handoff_publish(c, "void", &ev, 1, &id2, NULL),
			 HANDOFF_OK);
	bool dup = false;
	assert_int_equal(handoff_publish(c, "void", &ev, 1, &id3, &dup),
			 HANDOFF_OK);
	assert_true(dup);
	assert_int_equal(id2, id3);
	assert_int_equal(it_fetch(c, "sub", 10, 2000, &d), 1);
	assert_int_equal(d[0].event_id, id2);
	handoff_deliveries_free(d, 1);
	handoff_close(c);
	broker_passed(b);
}

/* ---- a full store refuses publishes, loses nothing, keeps serving --------- */

/*
 * With a deliberately small LMDB map, publishes are eventually refused with
 * STORAGE_FULL and a retry hint. Two paths lead there, one test each:
 *  - headroom (the default): once less than storage_headroom is free, the
 *    broker refuses publishes before LMDB is full, so acks always fit;
 *  - map full (headroom set to one page): the group commit hits
 *    MDB_MAP_FULL, the broker retries each request of the turn alone, and
 *    the one that does not fit gets STORAGE_FULL.
 * Either way every publish confirmed before that is still delivered whole,
 * acks keep working, and once the backlog is drained a publish fits again.
 */
static const char SMALL_MAP_CONFIG[] = "[broker]\n"
				       "map_size = 2M\n"
				       "[defaults]\n"
				       "max_attempts = 3\n"
				       "ack_deadline = 30s\n"
				       "[limits]\n"
				       "max_payload = 64K\n";

static const char SMALL_MAP_NO_HEADROOM_CONFIG[] = "[broker]\n"
						   "map_size = 2M\n"
						   "[defaults]\n"
						   "max_attempts = 3\n"
						   "ack_deadline = 30s\n"
						   "[limits]\n"
						   "max_payload = 64K\n"
						   "storage_headroom = 4K\n";

static int small_map_setup(void **state)
{
	*state = broker_start(SMALL_MAP_CONFIG);
	return 0;
}

static int small_map_no_headroom_setup(void **state)
{
	*state = broker_start(SMALL_MAP_NO_HEADROOM_CONFIG);
	return 0;
}

static void fill_and_drain(broker *b, const char *log_needle)
{
	enum { SIZE = 32 * 1024, MAX = 200 };
	handoff_client *c = it_connect(b, "filler", 0);
	it_subscribe(c, "full", "s", 3, 30000, 50, 200);
	char *buf = malloc(SIZE);
	assert_non_null(buf);
	uint64_t ids[MAX];
	int confirmed = 0, rc = HANDOFF_OK;
	for (int i = 0; i < MAX; i++) {
		char key[32];
		snprintf(key, sizeof key, "fill-%d", i);
		memset(buf, 'a' + i % 26, SIZE);
		handoff_event ev = { .payload = buf,
				     .payload_len = SIZE,
				     .idempotency_key = key };
		rc = handoff_publish(c, "full", &ev, 1, &ids[confirmed], NULL);
		if (rc != HANDOFF_OK)
			break;
		confirmed++;
	}
	assert_int_equal(rc, HANDOFF_ESTORAGEFULL);
	assert_true(confirmed > 5);
	assert_true(handoff_last_retry_after_ms(c) > 0);
	assert_true(broker_log_contains(b, log_needle));

	/* Everything confirmed is still there, whole, and acks still work. */
	int drained = 0;
	while (drained < confirmed) {
		handoff_delivery *d = NULL;
		size_t k = it_fetch(c, "s", 8, 2000, &d);
		assert_true(k > 0);
		for (size_t j = 0; j < k; j++) {
			assert_int_equal(d[j].event_id, ids[drained]);
			assert_int_equal(d[j].payload_len, SIZE);
			char want = (char)('a' + drained % 26);
			const char *p = d[j].payload;
			assert_true(p[0] == want && p[SIZE - 1] == want);
			assert_int_equal(it_ack1(c, "s", d[j].event_id,
						 d[j].lease_token),
					 HANDOFF_OK);
			drained++;
		}
		handoff_deliveries_free(d, k);
	}
	handoff_subscription_info info = it_sub_info(c, "s");
	assert_int_equal(info.ready + info.delayed + info.leased, 0);

	/* The space the acks freed is used again, without a restart. */
	memset(buf, 'z', 1024);
	handoff_event small = { .payload = buf,
				.payload_len = 1024,
				.idempotency_key = "after-drain" };
	uint64_t id = 0;
	assert_int_equal(handoff_publish(c, "full", &small, 1, &id, NULL),
			 HANDOFF_OK);
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 8, 2000, &d), 1);
	assert_int_equal(d[0].event_id, id);
	handoff_deliveries_free(d, 1);
	free(buf);
	handoff_close(c);
}

static void test_storage_full(void **state)
{
	broker *b = *state;
	fill_and_drain(b, "event=storage_full");
	assert_true(broker_log_contains(b, "event=storage_available"));
	assert_false(broker_log_contains(b, "event=publish_failed"));
	broker_passed(b);
}

static void test_map_full(void **state)
{
	broker *b = *state;
	fill_and_drain(b, "event=publish_failed");
	broker_passed(b);
}

int main(void)
{
	it_default_config = CONFIG;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_durable_across_kill9,
						it_setup, it_teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_idempotency_key,
						it_setup, it_teardown),
		cmocka_unit_test_setup_teardown(test_no_subscriptions, it_setup,
						it_teardown),
		cmocka_unit_test_setup_teardown(test_oversized_payload,
						it_setup, it_teardown),
		cmocka_unit_test_setup_teardown(test_publish_while_broker_down,
						it_setup, it_teardown),
		cmocka_unit_test_setup_teardown(
			test_publish_retried_through_restart, it_setup,
			it_teardown),
		cmocka_unit_test_setup_teardown(
			test_timeout_when_nothing_listens, it_setup,
			it_teardown),
		cmocka_unit_test_setup_teardown(test_storage_full,
						small_map_setup, it_teardown),
		cmocka_unit_test_setup_teardown(test_map_full,
						small_map_no_headroom_setup,
						it_teardown),
	};
	return cmocka_run_group_tests_name("publish", tests, NULL, NULL);
}
