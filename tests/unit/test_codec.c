/*
 * test_codec.c — codec_decode_request: a packed request decodes back to
 * the same fields in the arena; garbage, truncated input and requests
 * whose decoded size exceeds the budget (16x input + 64 KiB) give NULL;
 * the arena's own budget is restored afterwards. codec_new_reply gives an
 * OK reply of the current protocol version; codec_pack_reply gives a
 * malloc'd buffer of the packed size that decodes back to the reply.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arena.h"
#include "codec.h"

static int setup(void **state)
{
	struct arena *a = malloc(sizeof *a);
	if (!a)
		return -1;
	arena_init(a);
	*state = a;
	return 0;
}

static int teardown(void **state)
{
	struct arena *a = *state;
	arena_fini(a);
	free(a);
	return 0;
}

/* A publish of n events, packed into a malloc'd buffer. */
static uint8_t *pack_publish(size_t n_events, size_t payload_len, size_t *len)
{
	Handoff__Wire__Request r = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__PublishRequest pr = HANDOFF__WIRE__PUBLISH_REQUEST__INIT;
	Handoff__Wire__PublishEvent *ev = calloc(n_events, sizeof *ev);
	Handoff__Wire__PublishEvent **evp = calloc(n_events, sizeof *evp);
	uint8_t *payload = malloc(payload_len + 1);
	assert_non_null(ev);
	assert_non_null(evp);
	assert_non_null(payload);
	for (size_t i = 0; i < payload_len; i++)
		payload[i] = (uint8_t)(i * 7);
	for (size_t i = 0; i < n_events; i++) {
		handoff__wire__publish_event__init(&ev[i]);
		ev[i].payload.data = payload;
		ev[i].payload.len = payload_len;
		evp[i] = &ev[i];
	}
	pr.topic = (char *)"orders";
	pr.n_events = n_events;
	pr.events = evp;
	r.protocol_version = 1;
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_PUBLISH;
	r.publish = &pr;
	*len = handoff__wire__request__get_packed_size(&r);
	uint8_t *buf = malloc(*len);
	assert_non_null(buf);
	handoff__wire__request__pack(&r, buf);
	free(payload);
	free(evp);
	free(ev);
	return buf;
}

static void test_decode_roundtrip(void **state)
{
	struct arena *a = *state;
	Handoff__Wire__Request r = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__AckRequest ar = HANDOFF__WIRE__ACK_REQUEST__INIT;
	Handoff__Wire__AckItem it[2] = { HANDOFF__WIRE__ACK_ITEM__INIT,
					 HANDOFF__WIRE__ACK_ITEM__INIT };
	Handoff__Wire__AckItem *itp[2] = { &it[0], &it[1] };
	it[0].event_id = 42;
	it[0].lease_token = 0x1122334455667788ull;
	it[1].event_id = UINT64_MAX;
	it[1].lease_token = 1;
	ar.subscription = (char *)"billing";
	ar.n_items = 2;
	ar.items = itp;
	r.protocol_version = 1;
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_ACK;
	r.ack = &ar;
	size_t len = handoff__wire__request__get_packed_size(&r);
	uint8_t buf[256];
	assert_true(len <= sizeof buf);
	handoff__wire__request__pack(&r, buf);

	Request *d = codec_decode_request(a, buf, len);
	assert_non_null(d);
	assert_int_equal(d->protocol_version, 1);
	assert_int_equal(d->body_case, HANDOFF__WIRE__REQUEST__BODY_ACK);
	assert_string_equal(d->ack->subscription, "billing");
	assert_int_equal(d->ack->n_items, 2);
	assert_int_equal(d->ack->items[0]->event_id, 42);
	assert_int_equal(d->ack->items[0]->lease_token, 0x1122334455667788ull);
	assert_int_equal(d->ack->items[1]->event_id, UINT64_MAX);
	assert_true(a->used_total > 0); /* decoded into the arena */
	assert_int_equal(a->budget, 0); /* the arena's budget restored */
}

static void test_decode_publish_with_payload(void **state)
{
	struct arena *a = *state;
	size_t len;
	uint8_t *buf = pack_publish(3, 5000, &len);
	Request *d = codec_decode_request(a, buf, len);
	assert_non_null(d);
	assert_int_equal(d->body_case, HANDOFF__WIRE__REQUEST__BODY_PUBLISH);
	assert_string_equal(d->publish->topic, "orders");
	assert_int_equal(d->publish->n_events, 3);
	assert_int_equal(d->publish->events[1]->payload.len, 5000);
	assert_int_equal(d->publish->events[1]->payload.data[4999],
			 (uint8_t)(4999 * 7));
	free(buf);
}

/* The empty message is a valid request (version 0, no body). */
static void test_decode_empty(void **state)
{
	struct arena *a = *state;
	Request *d = codec_decode_request(a, "", 0);
	assert_non_null(d);
	assert_int_equal(d->protocol_version, 0);
	assert_int_equal(d->body_case, HANDOFF__WIRE__REQUEST__BODY__NOT_SET);
}

static void test_decode_garbage(void **state)
{
	struct arena *a = *state;
	/* an unterminated varint */
	const uint8_t g1[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
			       0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	/* wire type 7 does not exist */
	const uint8_t g2[] = { 0x0f, 0x01 };
	/* field 11 (publish) claims 100 bytes, 2 follow */
	const uint8_t g3[] = { 0x5a, 0x64, 0x0a, 0x00 };
	/* field number 0 is invalid */
	const uint8_t g4[] = { 0x00, 0x01 };
	assert_null(codec_decode_request(a, g1, sizeof g1));
	assert_null(codec_decode_request(a, g2, sizeof g2));
	assert_null(codec_decode_request(a, g3, sizeof g3));
	assert_null(codec_decode_request(a, g4, sizeof g4));
	assert_int_equal(a->budget, 0);
}

/* Cutting a packed request anywhere inside its payload bytes fails. */
static void test_decode_truncated(void **state)
{
	struct arena *a = *state;
	size_t len;
	uint8_t *buf = pack_publish(1, 300, &len);
	assert_non_null(codec_decode_request(a, buf, len));
	for (size_t cut = 1; cut <= 300; cut += 37) {
		arena_reset(a);
		assert_null(codec_decode_request(a, buf, len - cut));
	}
	/* a truncated copy in its own exact-size buffer (ASan: no overread) */
	uint8_t *shorter = malloc(len - 10);
	assert_non_null(shorter);
	memcpy(shorter, buf, len - 10);
	assert_null(codec_decode_request(a, shorter, len - 10));
	free(shorter);
	free(buf);
}

/* Many tiny events: 2 wire bytes each decode to a struct of ~80 bytes
 * plus a pointer, far beyond 16x the input + 64 KiB: refused. The same
 * shape with few events fits. */
static void test_decode_over_budget(void **state)
{
	struct arena *a = *state;
	size_t len;
	uint8_t *buf = pack_publish(200, 0, &len);
	Request *ok = codec_decode_request(a, buf, len);
	assert_non_null(ok);
	assert_int_equal(ok->publish->n_events, 200);
	free(buf);

	arena_reset(a);
	buf = pack_publish(20000, 0, &len);
	assert_true(len < 50000);
	assert_null(codec_decode_request(a, buf, len));
	/* the budget was the decode's alone: the arena has its own back */
	assert_int_equal(a->budget, 0);
	assert_non_null(arena_alloc(a, 1 << 20));
	free(buf);

	/* an arena with its own budget keeps it after a decode */
	arena_reset(a);
	a->budget = 12345;
	assert_null(codec_decode_request(a, "\x0f\x01", 2));
	assert_int_equal(a->budget, 12345);
}

/* The budget is relative to what the arena already holds: a decode after
 * earlier allocations in the same turn still gets its full allowance. */
static void test_decode_budget_relative_to_used(void **state)
{
	struct arena *a = *state;
	assert_non_null(arena_alloc(a, 4u << 20));
	size_t len;
	uint8_t *buf = pack_publish(200, 100, &len);
	Request *d = codec_decode_request(a, buf, len);
	assert_non_null(d);
	assert_int_equal(d->publish->n_events, 200);
	free(buf);
}

static void test_new_reply(void **state)
{
	struct arena *a = *state;
	Reply *r = codec_new_reply(a);
	assert_non_null(r);
	assert_int_equal(
		r->protocol_version,
		HANDOFF__WIRE__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT);
	assert_int_equal(r->protocol_version, 1);
	assert_int_equal(r->status, HANDOFF__WIRE__STATUS__OK);
	assert_int_equal(r->body_case, HANDOFF__WIRE__REPLY__BODY__NOT_SET);
	assert_int_equal(r->retry_after_ms, 0);
	assert_true(r->message == NULL || r->message[0] == '\0');
	/* allocation failure: NULL */
	a->budget = a->used_total;
	assert_null(codec_new_reply(a));
}

static void test_pack_reply_roundtrip(void **state)
{
	struct arena *a = *state;
	Reply *r = codec_new_reply(a);
	assert_non_null(r);
	Handoff__Wire__PublishReply *pr = arena_alloc(a, sizeof *pr);
	assert_non_null(pr);
	handoff__wire__publish_reply__init(pr);
	uint64_t ids[3] = { 7, 8, 1ull << 40 };
	protobuf_c_boolean dups[3] = { 0, 1, 0 };
	pr->n_event_ids = 3;
	pr->event_ids = ids;
	pr->n_duplicates = 3;
	pr->duplicates = dups;
	r->status = HANDOFF__WIRE__STATUS__STORAGE_FULL;
	r->message = (char *)"full";
	r->retry_after_ms = 250;
	r->body_case = HANDOFF__WIRE__REPLY__BODY_PUBLISH;
	r->publish = pr;

	size_t len = 0;
	void *msg = codec_pack_reply(r, &len);
	assert_non_null(msg);
	assert_int_equal(len, handoff__wire__reply__get_packed_size(r));
	assert_true(len > 0);
	Handoff__Wire__Reply *back =
		handoff__wire__reply__unpack(NULL, len, msg);
	assert_non_null(back);
	assert_int_equal(back->protocol_version, 1);
	assert_int_equal(back->status, HANDOFF__WIRE__STATUS__STORAGE_FULL);
	assert_string_equal(back->message, "full");
	assert_int_equal(back->retry_after_ms, 250);
	assert_int_equal(back->body_case, HANDOFF__WIRE__REPLY__BODY_PUBLISH);
	assert_int_equal(back->publish->n_event_ids, 3);
	assert_int_equal(back->publish->event_ids[2], 1ull << 40);
	assert_int_equal(back->publish->duplicates[1], 1);
	handoff__wire__reply__free_unpacked(back, NULL);
	free(msg);
}

/* An empty OK reply of the current version still packs (the version
 * field alone) and decodes back. */
static void test_pack_minimal_reply(void **state)
{
	struct arena *a = *state;
	Reply *r = codec_new_reply(a);
	assert_non_null(r);
	size_t len = 99;
	void *msg = codec_pack_reply(r, &len);
	assert_non_null(msg);
	assert_int_equal(len, 2); /* 0x08 0x01 */
	assert_memory_equal(msg, "\x08\x01", 2);
	Handoff__Wire__Reply *back =
		handoff__wire__reply__unpack(NULL, len, msg);
	assert_non_null(back);
	assert_int_equal(back->status, HANDOFF__WIRE__STATUS__OK);
	handoff__wire__reply__free_unpacked(back, NULL);
	free(msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_decode_roundtrip, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_decode_publish_with_payload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decode_empty, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_decode_garbage, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_decode_truncated, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_decode_over_budget, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_decode_budget_relative_to_used, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_reply, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pack_reply_roundtrip,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_pack_minimal_reply, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
