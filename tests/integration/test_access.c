/*
 * test_access.c — access control against a real handoffd: roles at every
 * boundary, request MACs, replay protection, audited operator commands
 * that run once per command id, and the listen-address rules.
 *
 * Requests that the client library would never send (old timestamps,
 * replayed bytes, tampered content) are built here by hand: the same
 * signing as client/call.c, then sent on a plain nanomsg REQ socket.
 */
#include "harness.h"
#include "wire_util.h"

#include <nanomsg/nn.h>
#include <pthread.h>
#include <signal.h>
#include <nanomsg/reqrep.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "handoff.pb-c.h"
#include "request_mac.h"

#define PRODUCER_HEX \
	"1111111111111111111111111111111111111111111111111111111111111111"
#define CONSUMER_HEX \
	"2222222222222222222222222222222222222222222222222222222222222222"
#define OPERATOR_HEX \
	"3333333333333333333333333333333333333333333333333333333333333333"

/* request_window is left at its default (60 s), as most configs will. */
static const char CONFIG[] = "[defaults]\n"
			     "max_attempts = 1\n"
			     "ack_deadline = 5s\n"
			     "[key scheduler]\n"
			     "role = producer\n"
			     "secret = " PRODUCER_HEX "\n"
			     "topics = settle.*\n"
			     "[key billing]\n"
			     "role = consumer\n"
			     "secret = " CONSUMER_HEX "\n"
			     "subscriptions = billing\n"
			     "[key ops]\n"
			     "role = operator\n"
			     "secret = " OPERATOR_HEX "\n";

static handoff_client *connect_as(const broker *b, const char *key,
				  const char *hex)
{
	unsigned char secret[32];
	handoff_options o = { .deadline_ms = 8000, .consumer_name = key };
	handoff_client *c = NULL;
	if (key) {
		assert_int_equal(handoff_parse_secret(hex, secret), HANDOFF_OK);
		o.key_id = key;
		o.secret = secret;
	}
	assert_int_equal(handoff_connect(broker_url(b), &o, &c), HANDOFF_OK);
	return c;
}

static int publish(handoff_client *c, const char *topic, const char *idem)
{
	handoff_event ev = { .payload = "p",
			     .payload_len = 1,
			     .idempotency_key = idem };
	uint64_t id;
	return handoff_publish(c, topic, &ev, 1, &id, NULL);
}

static void setup_subscriptions(const broker *b)
{
	handoff_client *ops = connect_as(b, "ops", OPERATOR_HEX);
	it_subscribe(ops, "settle.close", "billing", 1, 5000, 50, 200);
	it_subscribe(ops, "settle.close", "ledger", 1, 5000, 50, 200);
	handoff_close(ops);
}

/* ---- roles ----------------------------------------------------------------- */

static void test_unsigned_is_denied(void **state)
{
	broker *b = *state;
	setup_subscriptions(b);
	handoff_client *anon = connect_as(b, NULL, NULL); /* ping is open */
	assert_int_equal(publish(anon, "settle.close", "a1"), HANDOFF_EPERM);
	assert_non_null(
		strstr(handoff_last_message(anon), "authentication required"));
	handoff_stats *s = NULL;
	assert_int_equal(handoff_get_stats(anon, &s), HANDOFF_EPERM);
	handoff_delivery *d = NULL;
	size_t n = 0;
	assert_int_equal(handoff_fetch(anon, "billing", 1, 0, &d, &n),
			 HANDOFF_EPERM);
	handoff_close(anon);

	/* a wrong secret and an unknown key are refused alike, at connect
	 * already (the ping is signed too) */
	unsigned char secret[32];
	assert_int_equal(handoff_parse_secret(CONSUMER_HEX, secret),
			 HANDOFF_OK);
	handoff_options o = { .deadline_ms = 5000,
			      .key_id = "scheduler",
			      .secret = secret };
	handoff_client *forged = NULL;
	assert_int_equal(handoff_connect(broker_url(b), &o, &forged),
			 HANDOFF_EPERM);
	assert_null(forged);
	o.key_id = "nobody";
	assert_int_equal(handoff_connect(broker_url(b), &o, &forged),
			 HANDOFF_EPERM);
	assert_true(broker_log_contains(b, "authentication failed"));

	/* nothing of it was stored */
	handoff_client *ops = connect_as(b, "ops", OPERATOR_HEX);
	assert_int_equal(it_sub_info(ops, "billing").ready, 0);
	handoff_close(ops);
	/* the log says who was refused, never a secret */
	assert_true(broker_log_contains(b, "event=request_denied"));
	assert_false(broker_log_contains(b, PRODUCER_HEX));
	assert_false(broker_log_contains(b, CONSUMER_HEX));
	assert_false(broker_log_contains(b, OPERATOR_HEX));
	broker_passed(b);
}

static void test_producer_boundary(void **state)
{
	broker *b = *state;
	setup_subscriptions(b);
	handoff_client *p = connect_as(b, "scheduler", PRODUCER_HEX);
	assert_int_equal(publish(p, "settle.close", "p1"), HANDOFF_OK);
	/* a topic outside its patterns */
	assert_int_equal(publish(p, "payments.close", "p2"), HANDOFF_EPERM);
	assert_non_null(strstr(handoff_last_message(p), "payments.close"));
	/* consumer and operator requests */
	handoff_delivery *d = NULL;
	size_t n = 0;
	assert_int_equal(handoff_fetch(p, "billing", 1, 0, &d, &n),
			 HANDOFF_EPERM);
	bool created;
	assert_int_equal(handoff_subscribe(p, "settle.close", "mine", NULL,
					   &created, NULL),
			 HANDOFF_EPERM);
	handoff_dlq_action all = { .all = true, .reason = "x" };
	handoff_dlq_result r;
	assert_int_equal(handoff_dlq_purge(p, "billing", &all, &r),
			 HANDOFF_EPERM);
	handoff_close(p);
	handoff_client *ops = connect_as(b, "ops", OPERATOR_HEX);
	assert_int_equal(it_sub_info(ops, "billing").ready, 1);
	handoff_subscription_info *list = NULL;
	size_t nl = 0;
	assert_int_equal(handoff_list_subscriptions(ops, &list, &nl),
			 HANDOFF_OK);
	assert_int_equal(nl, 2); /* "mine" was not created */
	handoff_subscriptions_free(list, nl);
	handoff_close(ops);
	broker_passed(b);
}

static void test_consumer_boundary(void **state)
{
	broker *b = *state;
	setup_subscriptions(b);
	handoff_client *p = connect_as(b, "scheduler", PRODUCER_HEX);
	assert_int_equal(publish(p, "settle.close", "c1"), HANDOFF_OK);
	handoff_close(p);

	handoff_client *c = connect_as(b, "billing", CONSUMER_HEX);
	handoff_delivery *d = NULL;
	size_t n = 0;
	/* another subscription's deliveries: not this key's */
	assert_int_equal(handoff_fetch(c, "ledger", 1, 0, &d, &n),
			 HANDOFF_EPERM);
	assert_non_null(strstr(handoff_last_message(c), "ledger"));
	assert_int_equal(publish(c, "settle.close", "c2"), HANDOFF_EPERM);
	handoff_stats *s = NULL;
	assert_int_equal(handoff_get_stats(c, &s), HANDOFF_EPERM);
	/* its own subscription works end to end */
	assert_int_equal(it_fetch(c, "billing", 1, 0, &d), 1);
	uint64_t id = d[0].event_id, token = d[0].lease_token;
	handoff_deliveries_free(d, 1);
	/* acking on another subscription is refused before anything is
	 * looked at; the ledger delivery stays owed */
	handoff_ack_item item = { id, token };
	assert_int_equal(handoff_ack(c, "ledger", &item, 1, NULL),
			 HANDOFF_EPERM);
	assert_int_equal(it_ack1(c, "billing", id, token), HANDOFF_OK);
	handoff_close(c);
	handoff_client *ops = connect_as(b, "ops", OPERATOR_HEX);
	assert_int_equal(it_sub_info(ops, "ledger").ready, 1);
	assert_int_equal(it_sub_info(ops, "billing").ready +
				 it_sub_info(ops, "billing").leased,
			 0);
	handoff_close(ops);
	broker_passed(b);
}

static void test_operator_boundary(void **state)
{
	broker *b = *state;
	setup_subscriptions(b);
	handoff_client *ops = connect_as(b, "ops", OPERATOR_HEX);
	assert_int_equal(publish(ops, "settle.close", "o1"), HANDOFF_EPERM);
	handoff_delivery *d = NULL;
	size_t n = 0;
	assert_int_equal(handoff_fetch(ops, "billing", 1, 0, &d, &n),
			 HANDOFF_EPERM);
	handoff_stats *s = NULL;
	assert_int_equal(handoff_get_stats(ops, &s), HANDOFF_OK);
	handoff_stats_free(s);
	handoff_audit_record *a = NULL;
	size_t na = 0;
	assert_int_equal(handoff_audit_list(ops, 0, 10, &a, &na, NULL),
			 HANDOFF_OK);
	handoff_audit_free(a, na);
	handoff_close(ops);
	broker_passed(b);
}

/* Pause and resume are operator requests: a producer or a consumer (even
 * of that very subscription) is refused, and nothing changes. */
static void test_pause_needs_operator(void **state)
{
	broker *b = *state;
	setup_subscriptions(b);
	handoff_client *p = connect_as(b, "scheduler", PRODUCER_HEX);
	handoff_client *c = connect_as(b, "billing", CONSUMER_HEX);
	handoff_client *ops = connect_as(b, "ops", OPERATOR_HEX);
	assert_int_equal(handoff_pause(p, "billing", "no", NULL),
			 HANDOFF_EPERM);
	assert_int_equal(handoff_pause(c, "billing", "no", NULL),
			 HANDOFF_EPERM);
	assert_false(it_sub_info(ops, "billing").pause.paused);
	assert_int_equal(handoff_pause(ops, "billing", "incident 7", NULL),
			 HANDOFF_OK);
	assert_int_equal(handoff_resume(p, "billing", NULL), HANDOFF_EPERM);
	assert_int_equal(handoff_resume(c, "billing", NULL), HANDOFF_EPERM);
	handoff_subscription_info si = it_sub_info(ops, "billing");
	assert_true(si.pause.paused);
	/* the consumer's fetch gets nothing, and is told why */
	assert_int_equal(publish(p, "settle.close", "pz"), HANDOFF_OK);
	handoff_delivery *d = NULL;
	size_t n = 9;
	assert_int_equal(handoff_fetch(c, "billing", 1, 0, &d, &n), HANDOFF_OK);
	assert_int_equal(n, 0);
	assert_true(handoff_last_fetch_paused(c));
	/* the audit record names the operator's key */
	handoff_audit_record *a = NULL;
	size_t na = 0;
	assert_int_equal(handoff_audit_list(ops, 0, 10, &a, &na, NULL),
			 HANDOFF_OK);
	assert_int_equal(na, 1);
	assert_string_equal(a[0].action, "pause");
	assert_string_equal(a[0].key_id, "ops");
	assert_string_equal(a[0].reason, "incident 7");
	handoff_audit_free(a, na);
	handoff_subscription_info *all = NULL;
	assert_int_equal(handoff_list_subscriptions(ops, &all, &na),
			 HANDOFF_OK);
	for (size_t i = 0; i < na; i++)
		if (strcmp(all[i].name, "billing") == 0)
			assert_string_equal(all[i].pause.by, "ops");
	handoff_subscriptions_free(all, na);
	handoff_close(p);
	handoff_close(c);
	handoff_close(ops);
	broker_passed(b);
}

/* ---- audited, once-only operator commands ---------------------------------- */

static uint64_t dead_one(const broker *b, const char *idem)
{
	handoff_client *p = connect_as(b, "scheduler", PRODUCER_HEX);
	handoff_event ev = { .payload = "x",
			     .payload_len = 1,
			     .idempotency_key = idem };
	uint64_t id;
	assert_int_equal(handoff_publish(p, "settle.close", &ev, 1, &id, NULL),
			 HANDOFF_OK);
	handoff_close(p);
	handoff_client *c = connect_as(b, "billing", CONSUMER_HEX);
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "billing", 1, 0, &d), 1);
	assert_int_equal(it_nack1(c, "billing", d[0].event_id, d[0].lease_token,
				  0, true, "poison"),
			 HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	handoff_close(c);
	return id;
}

static void test_audit_and_command_ids(void **state)
{
	broker *b = *state;
	setup_subscriptions(b);
	uint64_t id = dead_one(b, "dead-1");
	handoff_client *ops = connect_as(b, "ops", OPERATOR_HEX);
	assert_true(it_dlq_has(ops, "billing", id));

	/* the same command id twice: one replay, one audit record, the same
	 * answer both times */
	handoff_dlq_action act = { .event_ids = &id,
				   .n_event_ids = 1,
				   .reason = "fixed the parser, INC-42",
				   .command_id = "cmd-replay-1" };
	handoff_dlq_result r1, r2;
	assert_int_equal(handoff_dlq_replay(ops, "billing", &act, &r1),
			 HANDOFF_OK);
	assert_int_equal(r1.n_event_ids, 1);
	assert_int_equal(handoff_dlq_replay(ops, "billing", &act, &r2),
			 HANDOFF_OK);
	assert_int_equal(r2.n_event_ids, 1);
	assert_int_equal(r2.event_ids[0], id);
	assert_int_equal(r2.n_missing, 0);
	handoff_dlq_result_free(&r1);
	handoff_dlq_result_free(&r2);
	assert_true(broker_log_contains(b, "event=operator_command_repeated"));
	/* the replayed letter is delivered again; ack it */
	handoff_client *c = connect_as(b, "billing", CONSUMER_HEX);
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "billing", 1, 2000, &d), 1);
	assert_int_equal(d[0].event_id, id);
	assert_int_equal(it_ack1(c, "billing", id, d[0].lease_token),
			 HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	handoff_close(c);

	/* a second, different command is a new action */
	uint64_t id2 = dead_one(b, "dead-2");
	handoff_dlq_action purge = { .event_ids = &id2,
				     .n_event_ids = 1,
				     .reason = "duplicate of 41" };
	assert_int_equal(handoff_dlq_purge(ops, "billing", &purge, &r1),
			 HANDOFF_OK);
	assert_int_equal(r1.n_event_ids, 1);
	handoff_dlq_result_free(&r1);
	assert_int_equal(handoff_unsubscribe(ops, "ledger"), HANDOFF_OK);

	handoff_audit_record *a = NULL;
	size_t na = 0;
	bool more = true;
	assert_int_equal(handoff_audit_list(ops, 0, 100, &a, &na, &more),
			 HANDOFF_OK);
	assert_int_equal(na, 3);
	assert_false(more);
	assert_string_equal(a[0].action, "replay");
	assert_string_equal(a[0].key_id, "ops");
	assert_string_equal(a[0].role, "operator");
	assert_string_equal(a[0].subscription, "billing");
	assert_string_equal(a[0].reason, "fixed the parser, INC-42");
	assert_string_equal(a[0].command_id, "cmd-replay-1");
	assert_int_equal(a[0].n_event_ids, 1);
	assert_int_equal(a[0].event_ids[0], id);
	assert_true(a[0].at_ms > 0);
	assert_string_equal(a[1].action, "purge");
	assert_int_equal(a[1].event_ids[0], id2);
	assert_string_equal(a[1].reason, "duplicate of 41");
	assert_true(strlen(a[1].command_id) > 0); /* the library made one */
	assert_string_equal(a[2].action, "unsubscribe");
	assert_string_equal(a[2].subscription, "ledger");
	assert_true(a[1].seq > a[0].seq && a[2].seq > a[1].seq);
	uint64_t last = a[2].seq;
	handoff_audit_free(a, na);
	/* paging */
	assert_int_equal(handoff_audit_list(ops, last - 1, 100, &a, &na, NULL),
			 HANDOFF_OK);
	assert_int_equal(na, 1);
	handoff_audit_free(a, na);

	/* the record survives a restart */
	handoff_close(ops);
	broker_restart(b, true);
	ops = connect_as(b, "ops", OPERATOR_HEX);
	assert_int_equal(handoff_audit_list(ops, 0, 100, &a, &na, NULL),
			 HANDOFF_OK);
	assert_int_equal(na, 3);
	handoff_audit_free(a, na);
	/* and so does the command id: the resent replay still runs once */
	assert_int_equal(handoff_dlq_replay(ops, "billing", &act, &r2),
			 HANDOFF_OK);
	assert_int_equal(r2.n_event_ids, 1);
	handoff_dlq_result_free(&r2);
	assert_int_equal(handoff_audit_list(ops, 0, 100, &a, &na, NULL),
			 HANDOFF_OK);
	assert_int_equal(na, 3);
	handoff_audit_free(a, na);
	handoff_close(ops);
	broker_passed(b);
}

/* ---- hand-signed requests ---------------------------------------------------- */

static uint64_t wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Send raw bytes on a fresh REQ socket; the reply's status. */
static int send_raw(const broker *b, const uint8_t *buf, size_t len)
{
	int s = nn_socket(AF_SP, NN_REQ);
	assert_true(s >= 0);
	int to = 5000;
	assert_int_equal(
		nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &to, sizeof to),
		0);
	assert_true(nn_connect(s, broker_url(b)) >= 0);
	assert_int_equal(nn_send(s, buf, len, 0), (int)len);
	void *msg = NULL;
	int n = nn_recv(s, &msg, NN_MSG, 0);
	assert_true(n >= 0);
	Handoff__Wire__Reply *r =
		handoff__wire__reply__unpack(NULL, (size_t)n, msg);
	assert_non_null(r);
	int status = r->status;
	handoff__wire__reply__free_unpacked(r, NULL);
	nn_freemsg(msg);
	nn_close(s);
	return status;
}

static uint8_t *unsubscribe_request(const char *sub, uint64_t session,
				    uint64_t seq, uint64_t ts, size_t *len)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__UnsubscribeRequest u =
		HANDOFF__WIRE__UNSUBSCRIBE_REQUEST__INIT;
	u.subscription = (char *)sub;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_UNSUBSCRIBE;
	req.unsubscribe = &u;
	return wire_sign(&req, "ops", OPERATOR_HEX, session, seq, ts, len);
}

static bool has_sub(const broker *b, const char *name)
{
	handoff_client *ops = connect_as(b, "ops", OPERATOR_HEX);
	handoff_subscription_info *list = NULL;
	size_t n = 0;
	bool found = false;
	assert_int_equal(handoff_list_subscriptions(ops, &list, &n),
			 HANDOFF_OK);
	for (size_t i = 0; i < n; i++)
		found |= strcmp(list[i].name, name) == 0;
	handoff_subscriptions_free(list, n);
	handoff_close(ops);
	return found;
}

static void resubscribe(const broker *b, const char *name)
{
	handoff_client *ops = connect_as(b, "ops", OPERATOR_HEX);
	it_subscribe(ops, "settle.close", name, 1, 5000, 50, 200);
	handoff_close(ops);
}

/* A captured request cannot be played again: not at once, not after the
 * thing it did was undone, not after a restart, not with its timestamp
 * out of the window, not with its content changed. */
static void test_replay_protection(void **state)
{
	broker *b = *state;
	setup_subscriptions(b);
	enum { ST_OK = 0, ST_NOT_FOUND = 4, ST_DENIED = 11, ST_STALE = 12 };
	size_t len;
	uint64_t session = 0x5e55104;
	uint8_t *captured =
		unsubscribe_request("ledger", session, 1, wall_now(), &len);
	assert_int_equal(send_raw(b, captured, len), ST_OK);
	assert_false(has_sub(b, "ledger"));
	resubscribe(b, "ledger");
	/* the same bytes again: refused, the new subscription stays */
	assert_int_equal(send_raw(b, captured, len), ST_STALE);
	assert_true(has_sub(b, "ledger"));

	/* tampered content under a valid-looking auth */
	size_t len2;
	uint8_t *other =
		unsubscribe_request("billing", session, 2, wall_now(), &len2);
	uint8_t *pos = memmem(other, len2, "billing", 7);
	assert_non_null(pos);
	memcpy(pos, "ledgerX", 7); /* same length, different target */
	assert_int_equal(send_raw(b, other, len2), ST_DENIED);
	assert_true(has_sub(b, "billing"));
	free(other);

	/* out of the window, either side */
	other = unsubscribe_request("ledger", session, 3, wall_now() - 120000,
				    &len2);
	assert_int_equal(send_raw(b, other, len2), ST_STALE);
	free(other);
	other = unsubscribe_request("ledger", session, 4, wall_now() + 120000,
				    &len2);
	assert_int_equal(send_raw(b, other, len2), ST_STALE);
	free(other);
	assert_true(has_sub(b, "ledger"));

	/* signed before a restart, never used: refused after it */
	other = unsubscribe_request("ledger", session, 5, wall_now(), &len2);
	broker_restart(b, true);
	assert_int_equal(send_raw(b, other, len2), ST_STALE);
	assert_true(has_sub(b, "ledger"));
	free(other);
	/* so is the first capture, even though the restart forgot sessions */
	assert_int_equal(send_raw(b, captured, len), ST_STALE);
	free(captured);

	/* a fresh, correctly signed request still works */
	other = unsubscribe_request("ledger", session + 1, 1, wall_now(),
				    &len2);
	assert_int_equal(send_raw(b, other, len2), ST_OK);
	assert_int_equal(send_raw(b, other, len2), ST_STALE);
	free(other);
	assert_false(has_sub(b, "ledger"));
	broker_passed(b);
}

/* The library re-signs by itself when told its request is stale, so a
 * handle opened before a restart keeps working after it. */
struct inflight {
	handoff_client *c;
	int rc;
};

static void *publish_inflight(void *arg)
{
	struct inflight *f = arg;
	f->rc = publish(f->c, "settle.close", "r2");
	return NULL;
}

static void test_client_resigns_after_restart(void **state)
{
	broker *b = *state;
	setup_subscriptions(b);
	handoff_client *p = connect_as(b, "scheduler", PRODUCER_HEX);
	handoff_set_deadline(p, 30000);
	assert_int_equal(publish(p, "settle.close", "r1"), HANDOFF_OK);
	/* a publish signed while the broker hangs, resent to its successor:
	 * refused as signed before the start, signed again, stored once */
	assert_int_equal(kill(b->pid, SIGSTOP), 0);
	struct inflight f = { p, -1 };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, publish_inflight, &f), 0);
	it_sleep_ms(500);
	broker_restart(b, true);
	pthread_join(th, NULL);
	assert_int_equal(f.rc, HANDOFF_OK);
	assert_true(
		broker_log_contains(b, "signed before this broker started"));
	handoff_close(p);
	handoff_client *ops = connect_as(b, "ops", OPERATOR_HEX);
	assert_int_equal(it_sub_info(ops, "billing").ready, 2);
	handoff_close(ops);
	broker_passed(b);
}

/* The CLI signs with --auth-key/--auth-secret-file, refuses a secret file
 * others can read, and exits 10 when the broker denies a request. */
static void test_cli_signs(void **state)
{
	broker *b = *state;
	char path[400];
	snprintf(path, sizeof path, "%s/ops.key", b->dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(OPERATOR_HEX "\n", f);
	fclose(f);
	assert_int_equal(chmod(path, 0600), 0);
	cli_result r;
	assert_true(cli_run(b, NULL, 0, &r, "stats", NULL));
	assert_int_equal(r.status, 10);
	assert_non_null(strstr(r.err, "authentication required"));
	cli_result_free(&r);
	assert_true(cli_run(b, NULL, 0, &r, "--auth-key", "ops",
			    "--auth-secret-file", path, "stats", NULL));
	assert_int_equal(r.status, 0);
	cli_result_free(&r);
	assert_true(cli_run(b, NULL, 0, &r, "--auth-key", "ops",
			    "--auth-secret-file", path, "--json", "audit",
			    NULL));
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "["));
	cli_result_free(&r);
	/* producer commands with the operator's key: denied */
	assert_true(cli_run(b, NULL, 0, &r, "--auth-key", "ops",
			    "--auth-secret-file", path, "publish", "settle.x",
			    "data", NULL));
	assert_int_equal(r.status, 10);
	cli_result_free(&r);
	assert_int_equal(chmod(path, 0644), 0);
	assert_true(cli_run(b, NULL, 0, &r, "--auth-key", "ops",
			    "--auth-secret-file", path, "stats", NULL));
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "can be read by others"));
	cli_result_free(&r);
	broker_passed(b);
}

/* ---- where the broker listens -------------------------------------------------- */

static void test_ipc_dir_must_be_private(void **state)
{
	(void)state;
	broker *b = broker_prepare("");
	/* the socket file itself is private */
	broker_spawn(b);
	struct stat sb;
	assert_int_equal(stat(b->url + 6, &sb), 0);
	assert_int_equal(sb.st_mode & 077, 0);
	broker_term(b);
	/* a directory others can write is refused */
	assert_int_equal(chmod(b->dir, 0777), 0);
	const char *argv[] = { getenv("HANDOFFD"), "--data", b->data,
			       "--listen",	   b->url,   NULL };
	cli_result r;
	int st = it_run(argv, NULL, 20000, &r);
	assert_int_not_equal(st, 0);
	assert_true(st < 128); /* refused, not crashed */
	assert_non_null(strstr(r.err, "can be written by other users"));
	cli_result_free(&r);
	assert_int_equal(chmod(b->dir, 0700), 0);
	broker_passed(b);
	broker_cleanup(b);
}

static void test_wildcard_needs_flag(void **state)
{
	(void)state;
	broker *b = broker_prepare("");
	const char *argv[] = { getenv("HANDOFFD"), "--data",	      b->data,
			       "--listen",	   "tcp://0.0.0.0:7", NULL };
	cli_result r;
	int st = it_run(argv, NULL, 20000, &r);
	assert_int_equal(st, 2);
	assert_non_null(strstr(r.err, "allow_wildcard"));
	cli_result_free(&r);
	broker_passed(b);
	broker_cleanup(b);
}

/* A completion receipt: a producer of the event's topic or an operator;
 * not a consumer, not an unsigned client. */
static void test_await_roles(void **state)
{
	broker *b = *state;
	setup_subscriptions(b);
	handoff_client *p = connect_as(b, "scheduler", PRODUCER_HEX);
	handoff_event ev = { .payload = "p",
			     .payload_len = 1,
			     .idempotency_key = "aw1" };
	uint64_t id;
	assert_int_equal(handoff_publish(p, "settle.close", &ev, 1, &id, NULL),
			 HANDOFF_OK);
	handoff_await_reply *r = NULL;
	assert_int_equal(handoff_await(p, id, NULL, 0, 0, &r), HANDOFF_OK);
	assert_int_equal(r->result, HANDOFF_AWAIT_TIMED_OUT);
	assert_int_equal(r->n_subscriptions, 2);
	handoff_await_free(r);
	handoff_close(p);
	handoff_client *ops = connect_as(b, "ops", OPERATOR_HEX);
	assert_int_equal(handoff_await(ops, id, NULL, 0, 0, &r), HANDOFF_OK);
	handoff_await_free(r);
	handoff_close(ops);
	handoff_client *c = connect_as(b, "billing", CONSUMER_HEX);
	r = (void *)1;
	assert_int_equal(handoff_await(c, id, NULL, 0, 0, &r), HANDOFF_EPERM);
	assert_null(r);
	assert_non_null(strstr(handoff_last_message(c), "await"));
	handoff_close(c);
	handoff_client *anon = connect_as(b, NULL, NULL);
	assert_int_equal(handoff_await(anon, id, NULL, 0, 0, &r),
			 HANDOFF_EPERM);
	handoff_close(anon);
	broker_passed(b);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	it_default_config = CONFIG;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_unsigned_is_denied,
						it_setup, it_teardown),
		cmocka_unit_test_setup_teardown(test_producer_boundary,
						it_setup, it_teardown),
		cmocka_unit_test_setup_teardown(test_consumer_boundary,
						it_setup, it_teardown),
		cmocka_unit_test_setup_teardown(test_operator_boundary,
						it_setup, it_teardown),
		cmocka_unit_test_setup_teardown(test_pause_needs_operator,
						it_setup, it_teardown),
		cmocka_unit_test_setup_teardown(test_await_roles, it_setup,
						it_teardown),
		cmocka_unit_test_setup_teardown(test_audit_and_command_ids,
						it_setup, it_teardown),
		cmocka_unit_test_setup_teardown(test_replay_protection,
						it_setup, it_teardown),
		cmocka_unit_test_setup_teardown(
			test_client_resigns_after_restart, it_setup,
			it_teardown),
		cmocka_unit_test_setup_teardown(test_cli_signs, it_setup,
						it_teardown),
		cmocka_unit_test(test_ipc_dir_must_be_private),
		cmocka_unit_test(test_wildcard_needs_flag),
	};
	return cmocka_run_group_tests_name("access", tests, NULL, NULL);
}
