/*
 * test_http_api.c — the HTTP API's translation (broker/http_api.c), with
 * no server: routes (paths, 404, 405 with Allow), requests (the packed
 * Request decodes to the fields the HTTP request gave; bad JSON, wrong
 * types, unknown fields, duplicate keys and non-UTF-8 names are 400
 * naming the field), and replies (status mapping, Retry-After, u64 as
 * strings, payloads as text or base64, broker text that is not UTF-8).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "codec.h"
#include "http_api.h"

static Request *decode(const void *buf, size_t len)
{
	Request *r = handoff__wire__request__unpack(NULL, len, buf);
	assert_non_null(r);
	return r;
}

/* Route and translate; true when a Request was built (in *req). */
static bool translate(const char *method, const char *path,
		      const struct http_kv *hdr, size_t n_hdr,
		      const struct http_kv *q, size_t n_q, const char *body,
		      struct http_route *r, struct http_out *out, Request **req)
{
	void *buf = NULL;
	size_t len = 0;
	memset(out, 0, sizeof *out);
	assert_true(http_api_route(method, path, r, out));
	struct http_in in = {
		hdr, n_hdr, q, n_q, body, body ? strlen(body) : 0
	};
	bool ok = http_api_request(r, &in, &buf, &len, out);
	*req = ok ? decode(buf, len) : NULL;
	free(buf);
	return ok;
}

static json_t *body_json(const struct http_out *out)
{
	json_error_t e;
	json_t *j = json_loadb(out->body, out->len, 0, &e);
	assert_non_null(j);
	return j;
}

static void assert_problem(struct http_out *out, int status, const char *name,
			   const char *field)
{
	assert_int_equal(out->status, status);
	assert_string_equal(out->content_type, "application/problem+json");
	json_t *j = body_json(out);
	assert_string_equal(
		json_string_value(json_object_get(j, "handoff_status")), name);
	assert_int_equal(json_integer_value(json_object_get(j, "status")),
			 status);
	if (field)
		assert_string_equal(
			json_string_value(json_object_get(j, "field")), field);
	json_decref(j);
}

static void test_routes(void **state)
{
	(void)state;
	static const struct {
		const char *method, *path;
		enum http_op op;
		const char *name;
	} ok[] = {
		{ "GET", "/v1/health", HOP_HEALTH, NULL },
		{ "GET", "/v1/version", HOP_VERSION, NULL },
		{ "POST", "/v1/topics/a/b/events", HOP_PUBLISH, "a/b" },
		{ "POST", "/v1/topics/t/events:batch", HOP_PUBLISH_BATCH, "t" },
		{ "PUT", "/v1/subscriptions/s", HOP_SUB_PUT, "s" },
		{ "GET", "/v1/subscriptions", HOP_SUB_LIST, NULL },
		{ "GET", "/v1/subscriptions/s", HOP_SUB_GET, "s" },
		{ "DELETE", "/v1/subscriptions/s", HOP_SUB_DELETE, "s" },
		{ "POST", "/v1/subscriptions/s/fetch", HOP_FETCH, "s" },
		{ "POST", "/v1/subscriptions/s/ack", HOP_ACK, "s" },
		{ "POST", "/v1/subscriptions/s/nack", HOP_NACK, "s" },
		{ "POST", "/v1/subscriptions/s/extend", HOP_EXTEND, "s" },
		{ "GET", "/v1/subscriptions/s/dead-letters", HOP_DLQ_LIST,
		  "s" },
		{ "GET", "/v1/subscriptions/s/dead-letters/42", HOP_DLQ_SHOW,
		  "s" },
		{ "POST", "/v1/subscriptions/s/dead-letters:replay",
		  HOP_DLQ_REPLAY, "s" },
		{ "POST", "/v1/subscriptions/s/dead-letters:purge",
		  HOP_DLQ_PURGE, "s" },
		{ "GET", "/v1/events/7", HOP_TRACE, NULL },
		{ "GET", "/v1/stats", HOP_STATS, NULL },
		{ "GET", "/v1/audit", HOP_AUDIT, NULL },
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		struct http_route r;
		struct http_out out = { 0 };
		assert_true(http_api_route(ok[i].method, ok[i].path, &r, &out));
		assert_int_equal(r.op, ok[i].op);
		if (ok[i].name)
			assert_string_equal(r.path_name, ok[i].name);
		assert_int_equal(r.open, ok[i].op == HOP_HEALTH ||
						 ok[i].op == HOP_VERSION);
		http_route_free(&r);
	}
	struct http_route r;
	struct http_out out = { 0 };
	assert_false(http_api_route("GET", "/v2/stats", &r, &out));
	assert_problem(&out, 404, "NOT_FOUND", NULL);
	http_out_free(&out);
	assert_false(http_api_route("GET", "/v1/events/x1", &r, &out));
	assert_problem(&out, 404, "NOT_FOUND", NULL);
	http_out_free(&out);
	assert_false(http_api_route("DELETE", "/v1/stats", &r, &out));
	assert_problem(&out, 405, "BAD_REQUEST", NULL);
	assert_string_equal(out.allow, "GET");
	http_out_free(&out);
	assert_false(
		http_api_route("GET", "/v1/subscriptions/s/fetch", &r, &out));
	assert_int_equal(out.status, 405);
	http_out_free(&out);
}

static void test_publish_one(void **state)
{
	(void)state;
	struct http_kv hdr[] = {
		{ "Idempotency-Key", "K1" },
		{ "handoff-key", "acct-42" },
		{ "Handoff-Header-Kind", "close" },
		{ "Content-Type", "text/plain" },
	};
	struct http_route r;
	struct http_out out;
	Request *q;
	assert_true(translate("POST", "/v1/topics/settle/events", hdr, 4, NULL,
			      0, "payload", &r, &out, &q));
	assert_int_equal(q->body_case, HANDOFF__WIRE__REQUEST__BODY_PUBLISH);
	assert_int_equal(q->protocol_version, 1);
	assert_null(q->auth);
	assert_string_equal(q->publish->topic, "settle");
	assert_int_equal(q->publish->n_events, 1);
	Handoff__Wire__PublishEvent *e = q->publish->events[0];
	assert_int_equal(e->payload.len, 7);
	assert_memory_equal(e->payload.data, "payload", 7);
	assert_string_equal(e->key, "acct-42");
	assert_string_equal(e->idempotency_key, "K1");
	assert_int_equal(e->n_headers, 1);
	assert_string_equal(e->headers[0]->name, "Kind");
	assert_string_equal(e->headers[0]->value, "close");
	handoff__wire__request__free_unpacked(q, NULL);
	http_route_free(&r);

	/* no key given: one is made up; a bad key is refused */
	assert_true(translate("POST", "/v1/topics/t/events", NULL, 0, NULL, 0,
			      "", &r, &out, &q));
	assert_true(strncmp(q->publish->events[0]->idempotency_key, "http-",
			    5) == 0);
	handoff__wire__request__free_unpacked(q, NULL);
	http_route_free(&r);
	struct http_kv bad[] = { { "Idempotency-Key", "a\x01" } };
	assert_false(translate("POST", "/v1/topics/t/events", bad, 1, NULL, 0,
			       "", &r, &out, &q));
	assert_problem(&out, 400, "BAD_REQUEST", "Idempotency-Key");
	http_out_free(&out);
	http_route_free(&r);
	assert_false(translate("POST", "/v1/topics/a\xff/events", NULL, 0, NULL,
			       0, "", &r, &out, &q));
	assert_problem(&out, 400, "BAD_REQUEST", "topic");
	http_out_free(&out);
	http_route_free(&r);
}

static void test_batch(void **state)
{
	(void)state;
	struct http_route r;
	struct http_out out;
	Request *q;
	assert_true(translate(
		"POST", "/v1/topics/t/events:batch", NULL, 0, NULL, 0,
		"{\"events\":[{\"payload\":\"a\\u0000b\",\"idempotency_key\":"
		"\"i1\"},{\"payload\":\"/wA=\",\"payload_encoding\":\"base64\","
		"\"key\":\"k\",\"headers\":[{\"name\":\"n\",\"value\":\"v\"}]}]}",
		&r, &out, &q));
	assert_int_equal(q->publish->n_events, 2);
	assert_int_equal(q->publish->events[0]->payload.len, 3);
	assert_memory_equal(q->publish->events[0]->payload.data, "a\0b", 3);
	assert_int_equal(q->publish->events[1]->payload.len, 2);
	assert_memory_equal(q->publish->events[1]->payload.data, "\xff\x00", 2);
	assert_string_equal(q->publish->events[1]->headers[0]->value, "v");
	handoff__wire__request__free_unpacked(q, NULL);
	http_route_free(&r);

	static const struct {
		const char *body, *field;
	} bad[] = {
		{ "{\"events\":[]}", "events" },
		{ "{\"events\":{}}", "events" },
		{ "{\"events\":[{\"payload\":1}]}", "events[].payload" },
		{ "{\"events\":[{\"payload\":\"%\",\"payload_encoding\":"
		  "\"base64\"}]}",
		  "events[].payload" },
		{ "{\"events\":[{\"payload\":\"x\",\"payload_encoding\":"
		  "\"rot13\"}]}",
		  "events[].payload_encoding" },
		{ "{\"events\":[{\"payload\":\"x\",\"extra\":1}]}",
		  "events[].extra" },
		{ "{\"events\":[{\"payload\":\"x\",\"headers\":[{\"value\":"
		  "\"v\"}]}]}",
		  "headers[].name" },
		{ "{\"events\":[],\"events\":[]}", "body" },
		{ "{\"events\":", "body" },
		{ "[]", "body" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_false(translate("POST", "/v1/topics/t/events:batch",
				       NULL, 0, NULL, 0, bad[i].body, &r, &out,
				       &q));
		assert_problem(&out, 400, "BAD_REQUEST", bad[i].field);
		http_out_free(&out);
		http_route_free(&r);
	}
}

static void test_consume(void **state)
{
	(void)state;
	struct http_route r;
	struct http_out out;
	Request *q;
	assert_true(translate("POST", "/v1/subscriptions/s/fetch", NULL, 0,
			      NULL, 0, "", &r, &out, &q));
	assert_int_equal(q->fetch->max_events, 1);
	assert_int_equal(q->fetch->fetch_seq, 0); /* no resend cache */
	assert_string_equal(q->fetch->consumer, "http");
	assert_string_equal(q->fetch->subscription, "s");
	handoff__wire__request__free_unpacked(q, NULL);
	http_route_free(&r);
	assert_false(translate("POST", "/v1/subscriptions/s/fetch", NULL, 0,
			       NULL, 0, "{\"wait_ms\":\"5\"}", &r, &out, &q));
	assert_problem(&out, 400, "BAD_REQUEST", "wait_ms");
	http_out_free(&out);
	http_route_free(&r);

	assert_true(translate(
		"POST", "/v1/subscriptions/s/ack", NULL, 0, NULL, 0,
		"{\"items\":[{\"event_id\":\"7\",\"lease_token\":"
		"\"18446744073709551615\"},{\"event_id\":8,\"lease_token\":9}]}",
		&r, &out, &q));
	assert_int_equal(q->ack->n_items, 2);
	assert_true(q->ack->items[0]->lease_token == UINT64_MAX);
	assert_int_equal(q->ack->items[1]->event_id, 8);
	assert_int_equal(r.n_items, 2);
	assert_int_equal(r.item_ids[0], 7);
	handoff__wire__request__free_unpacked(q, NULL);
	http_route_free(&r);
	assert_true(translate("POST", "/v1/subscriptions/s/nack", NULL, 0, NULL,
			      0,
			      "{\"items\":[{\"event_id\":\"7\",\"lease_token\":"
			      "\"1\",\"delay_ms\":500,\"permanent\":true,"
			      "\"reason\":\"bad\"}]}",
			      &r, &out, &q));
	assert_int_equal(q->nack->items[0]->delay_ms, 500);
	assert_true(q->nack->items[0]->permanent);
	assert_string_equal(q->nack->items[0]->reason, "bad");
	handoff__wire__request__free_unpacked(q, NULL);
	http_route_free(&r);
	assert_false(
		translate("POST", "/v1/subscriptions/s/ack", NULL, 0, NULL, 0,
			  "{\"items\":[{\"event_id\":\"18446744073709551616"
			  "\",\"lease_token\":\"1\"}]}",
			  &r, &out, &q));
	assert_problem(&out, 400, "BAD_REQUEST", "items[].event_id");
	http_out_free(&out);
	http_route_free(&r);
	assert_false(
		translate("POST", "/v1/subscriptions/s/ack", NULL, 0, NULL, 0,
			  "{\"items\":[{\"event_id\":\"1\",\"lease_token\":"
			  "\"1\",\"delay_ms\":1}]}",
			  &r, &out, &q));
	assert_problem(&out, 400, "BAD_REQUEST", "items[].delay_ms");
	http_out_free(&out);
	http_route_free(&r);
}

static void test_operator(void **state)
{
	(void)state;
	struct http_route r;
	struct http_out out;
	Request *q;
	struct http_kv qs[] = { { "reason", "permanent" },
				{ "after_event_id", "10" },
				{ "error_contains", "smtp" },
				{ "limit", "5" } };
	assert_true(translate("GET", "/v1/subscriptions/s/dead-letters", NULL,
			      0, qs, 4, NULL, &r, &out, &q));
	assert_int_equal(q->dlq_list->filter->reason,
			 HANDOFF__WIRE__DEAD_REASON__DEAD_REASON_PERMANENT);
	assert_int_equal(q->dlq_list->filter->after_event_id, 10);
	assert_string_equal(q->dlq_list->filter->error_contains, "smtp");
	assert_int_equal(q->dlq_list->limit, 5);
	handoff__wire__request__free_unpacked(q, NULL);
	http_route_free(&r);
	struct http_kv badq[] = { { "limit", "-1" } };
	assert_false(translate("GET", "/v1/subscriptions/s/dead-letters", NULL,
			       0, badq, 1, NULL, &r, &out, &q));
	assert_problem(&out, 400, "BAD_REQUEST", "limit");
	http_out_free(&out);
	http_route_free(&r);

	struct http_kv hdr[] = { { "Idempotency-Key", "cmd-1" } };
	assert_true(
		translate("POST", "/v1/subscriptions/s/dead-letters:replay",
			  hdr, 1, NULL, 0,
			  "{\"event_ids\":[\"3\",4],\"rate\":2,\"limit\":50,"
			  "\"dry_run\":true,\"reason\":\"fixed\"}",
			  &r, &out, &q));
	assert_int_equal(q->body_case, HANDOFF__WIRE__REQUEST__BODY_DLQ_REPLAY);
	assert_int_equal(q->dlq_replay->n_event_ids, 2);
	assert_int_equal(q->dlq_replay->event_ids[1], 4);
	assert_int_equal(q->dlq_replay->limit, 2); /* rate caps it */
	assert_true(q->dlq_replay->dry_run);
	assert_string_equal(q->dlq_replay->command_id, "cmd-1");
	assert_string_equal(q->dlq_replay->reason, "fixed");
	handoff__wire__request__free_unpacked(q, NULL);
	http_route_free(&r);
	assert_true(translate("POST", "/v1/subscriptions/s/dead-letters:purge",
			      NULL, 0, NULL, 0,
			      "{\"all\":true,\"filter\":{\"reason\":"
			      "\"max_attempts\",\"dead_since_ms\":\"5\"}}",
			      &r, &out, &q));
	assert_int_equal(q->body_case, HANDOFF__WIRE__REQUEST__BODY_DLQ_PURGE);
	assert_true(q->dlq_purge->all);
	assert_int_equal(q->dlq_purge->filter->dead_since_ms, 5);
	handoff__wire__request__free_unpacked(q, NULL);
	http_route_free(&r);
	assert_true(
		translate("PUT", "/v1/subscriptions/s", NULL, 0, NULL, 0,
			  "{\"topic\":\"t\",\"policy\":{\"max_attempts\":3}}",
			  &r, &out, &q));
	assert_string_equal(q->subscribe->topic, "t");
	assert_int_equal(q->subscribe->policy->max_attempts, 3);
	handoff__wire__request__free_unpacked(q, NULL);
	http_route_free(&r);
	assert_false(
		translate("PUT", "/v1/subscriptions/s", NULL, 0, NULL, 0,
			  "{\"topic\":\"t\",\"policy\":{\"max_attempt\":3}}",
			  &r, &out, &q));
	assert_problem(&out, 400, "BAD_REQUEST", "policy.max_attempt");
	http_out_free(&out);
	http_route_free(&r);
}

/* Reply r (packed) for route of method path, into out. */
static void reply_for(const char *method, const char *path, const Reply *rep,
		      struct http_out *out)
{
	struct http_route r;
	size_t len;
	memset(out, 0, sizeof *out);
	assert_true(http_api_route(method, path, &r, out));
	void *buf = codec_pack_reply(rep, &len);
	assert_non_null(buf);
	http_api_reply(&r, buf, len, out);
	free(buf);
	http_route_free(&r);
}

static void test_replies(void **state)
{
	(void)state;
	Reply rep = HANDOFF__WIRE__REPLY__INIT;
	Handoff__Wire__FetchReply fr = HANDOFF__WIRE__FETCH_REPLY__INIT;
	Handoff__Wire__Delivery d = HANDOFF__WIRE__DELIVERY__INIT;
	Handoff__Wire__Delivery *dp = &d;
	struct http_out out;
	d.event_id = 5;
	d.topic = (char *)"t";
	d.key = (char *)"";
	d.payload.data = (uint8_t *)"\xff\x01";
	d.payload.len = 2;
	d.lease_token = UINT64_MAX;
	d.attempt = 1;
	fr.n_deliveries = 1;
	fr.deliveries = &dp;
	rep.body_case = HANDOFF__WIRE__REPLY__BODY_FETCH;
	rep.fetch = &fr;
	reply_for("POST", "/v1/subscriptions/s/fetch", &rep, &out);
	assert_int_equal(out.status, 200);
	json_t *j = body_json(&out);
	json_t *x = json_array_get(json_object_get(j, "deliveries"), 0);
	assert_string_equal(json_string_value(json_object_get(x, "event_id")),
			    "5");
	assert_string_equal(
		json_string_value(json_object_get(x, "lease_token")),
		"18446744073709551615");
	assert_string_equal(
		json_string_value(json_object_get(x, "payload_encoding")),
		"base64");
	assert_string_equal(json_string_value(json_object_get(x, "payload")),
			    "/wE=");
	json_decref(j);
	http_out_free(&out);

	static const struct {
		int status;
		const char *msg;
		uint32_t retry;
		int http;
		const char *name;
	} errs[] = {
		{ HANDOFF__WIRE__STATUS__LEASE_LOST, "x", 0, 409,
		  "LEASE_LOST" },
		{ HANDOFF__WIRE__STATUS__NO_SUBSCRIPTIONS, "x", 0, 409,
		  "NO_SUBSCRIPTIONS" },
		{ HANDOFF__WIRE__STATUS__NOT_FOUND, "x", 0, 404, "NOT_FOUND" },
		{ HANDOFF__WIRE__STATUS__LIMIT_EXCEEDED,
		  "payload over max_payload", 0, 413, "LIMIT_EXCEEDED" },
		{ HANDOFF__WIRE__STATUS__LIMIT_EXCEEDED, "over max_backlog",
		  1000, 429, "LIMIT_EXCEEDED" },
		{ HANDOFF__WIRE__STATUS__STORAGE_FULL, "full", 1500, 503,
		  "STORAGE_FULL" },
		{ HANDOFF__WIRE__STATUS__PERMISSION_DENIED, "no", 0, 403,
		  "PERMISSION_DENIED" },
		{ HANDOFF__WIRE__STATUS__INTERNAL, "bad \xff byte", 0, 500,
		  "INTERNAL" },
	};
	for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
		Reply e = HANDOFF__WIRE__REPLY__INIT;
		e.status = errs[i].status;
		e.message = (char *)errs[i].msg;
		e.retry_after_ms = errs[i].retry;
		reply_for("POST", "/v1/topics/t/events", &e, &out);
		assert_problem(&out, errs[i].http, errs[i].name, NULL);
		assert_int_equal(out.retry_after_s,
				 (errs[i].retry + 999) / 1000);
		http_out_free(&out);
	}
	/* no reply at all (not applied): 503 with a retry hint */
	struct http_route r;
	memset(&out, 0, sizeof out);
	assert_true(http_api_route("GET", "/v1/stats", &r, &out));
	http_api_reply(&r, NULL, 0, &out);
	assert_problem(&out, 503, "SHUTTING_DOWN", NULL);
	assert_int_equal(out.retry_after_s, 1);
	http_out_free(&out);
	/* garbage: 500, never a crash */
	http_api_reply(&r, "\xff\xff\xff", 3, &out);
	assert_int_equal(out.status, 500);
	http_out_free(&out);
	/* OK with the wrong body: 500 */
	Reply ok = HANDOFF__WIRE__REPLY__INIT;
	reply_for("GET", "/v1/stats", &ok, &out);
	assert_int_equal(out.status, 500);
	http_out_free(&out);
	http_route_free(&r);
	/* publish: 201 when new, 200 when a duplicate */
	Handoff__Wire__PublishReply pr = HANDOFF__WIRE__PUBLISH_REPLY__INIT;
	uint64_t id = 9;
	protobuf_c_boolean dup = 1;
	pr.n_event_ids = 1;
	pr.event_ids = &id;
	pr.n_duplicates = 1;
	pr.duplicates = &dup;
	Reply p = HANDOFF__WIRE__REPLY__INIT;
	p.body_case = HANDOFF__WIRE__REPLY__BODY_PUBLISH;
	p.publish = &pr;
	reply_for("POST", "/v1/topics/t/events", &p, &out);
	assert_int_equal(out.status, 200);
	http_out_free(&out);
	dup = 0;
	reply_for("POST", "/v1/topics/t/events", &p, &out);
	assert_int_equal(out.status, 201);
	assert_string_equal(out.body,
			    "{\"event_id\":\"9\",\"duplicate\":false}");
	http_out_free(&out);
}

/* GET /v1/events/{id}?await=acked: an AwaitRequest (a trace without it);
 * its query checked; the reply as a receipt. */
static void test_await(void **state)
{
	(void)state;
	struct http_route r;
	struct http_out out;
	Request *q;
	const struct http_kv full[] = { { "await", "acked" },
					{ "timeout_ms", "1500" },
					{ "subscriptions", "a,b.c" } };
	assert_true(translate("GET", "/v1/events/7", NULL, 0, full, 3, NULL, &r,
			      &out, &q));
	assert_int_equal(r.op, HOP_AWAIT);
	assert_string_equal(r.name, "await");
	assert_int_equal(q->body_case, HANDOFF__WIRE__REQUEST__BODY_AWAIT);
	assert_int_equal(q->await->event_id, 7);
	assert_int_equal(q->await->timeout_ms, 1500);
	assert_int_equal(q->await->n_subscriptions, 2);
	assert_string_equal(q->await->subscriptions[0], "a");
	assert_string_equal(q->await->subscriptions[1], "b.c");
	handoff__wire__request__free_unpacked(q, NULL);

	/* the reply, through the same route */
	Reply rep = HANDOFF__WIRE__REPLY__INIT;
	Handoff__Wire__AwaitReply ar = HANDOFF__WIRE__AWAIT_REPLY__INIT;
	Handoff__Wire__AwaitState st = HANDOFF__WIRE__AWAIT_STATE__INIT,
				  *stp = &st;
	st.subscription = (char *)"a";
	st.state = HANDOFF__WIRE__DELIVERY_STATE__DELIVERY_STATE_DEAD;
	st.dead_reason = HANDOFF__WIRE__DEAD_REASON__DEAD_REASON_PERMANENT;
	st.attempts = 2;
	st.error = (char *)"bad";
	ar.event_id = 7;
	ar.topic = (char *)"t";
	ar.result = HANDOFF__WIRE__AWAIT_RESULT__AWAIT_RESULT_DEAD_LETTERED;
	ar.n_subscriptions = 1;
	ar.subscriptions = &stp;
	rep.body_case = HANDOFF__WIRE__REPLY__BODY_AWAIT;
	rep.await = &ar;
	rep.message = (char *)"dead-lettered by 'a'";
	size_t len;
	void *buf = codec_pack_reply(&rep, &len);
	assert_non_null(buf);
	http_api_reply(&r, buf, len, &out);
	free(buf);
	assert_int_equal(out.status, 200);
	json_t *j = body_json(&out);
	assert_string_equal(json_string_value(json_object_get(j, "event_id")),
			    "7");
	assert_string_equal(json_string_value(json_object_get(j, "result")),
			    "dead_lettered");
	assert_string_equal(json_string_value(json_object_get(j, "message")),
			    "dead-lettered by 'a'");
	json_t *s0 = json_array_get(json_object_get(j, "subscriptions"), 0);
	assert_string_equal(json_string_value(json_object_get(s0, "state")),
			    "dead");
	assert_string_equal(
		json_string_value(json_object_get(s0, "dead_reason")),
		"permanent");
	assert_int_equal(json_integer_value(json_object_get(s0, "attempts")),
			 2);
	json_decref(j);
	http_out_free(&out);
	http_route_free(&r);

	/* defaults: every subscription, 30 s */
	const struct http_kv only[] = { { "await", "acked" } };
	assert_true(translate("GET", "/v1/events/8", NULL, 0, only, 1, NULL, &r,
			      &out, &q));
	assert_int_equal(q->await->timeout_ms, 30000);
	assert_int_equal(q->await->n_subscriptions, 0);
	handoff__wire__request__free_unpacked(q, NULL);
	http_route_free(&r);
	/* without await: the trace */
	assert_true(translate("GET", "/v1/events/8", NULL, 0, NULL, 0, NULL, &r,
			      &out, &q));
	assert_int_equal(q->body_case, HANDOFF__WIRE__REQUEST__BODY_TRACE);
	handoff__wire__request__free_unpacked(q, NULL);
	http_route_free(&r);

	static const struct {
		struct http_kv kv[2];
		const char *field;
	} bad[] = {
		{ { { "await", "done" }, { "timeout_ms", "1" } }, "await" },
		{ { { "await", "acked" }, { "timeout_ms", "x" } },
		  "timeout_ms" },
		{ { { "await", "acked" }, { "timeout_ms", "4294967296" } },
		  "timeout_ms" },
		{ { { "await", "acked" }, { "subscriptions", "a,,b" } },
		  "subscriptions" },
		{ { { "await", "acked" }, { "subscriptions", "" } },
		  "subscriptions" },
		{ { { "await", "acked" }, { "bogus", "1" } }, "bogus" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_false(translate("GET", "/v1/events/8", NULL, 0,
				       bad[i].kv, 2, NULL, &r, &out, &q));
		assert_problem(&out, 400, "BAD_REQUEST", bad[i].field);
		http_out_free(&out);
		http_route_free(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_publish_one),
		cmocka_unit_test(test_batch),
		cmocka_unit_test(test_consume),
		cmocka_unit_test(test_operator),
		cmocka_unit_test(test_replies),
		cmocka_unit_test(test_await),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
