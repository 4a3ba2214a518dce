/*
 * fuzz_client_reply.c — libhandoff's handling of the broker's replies,
 * through its public API (client/handoff.h). The client sources are
 * compiled into this target (meson.build) and nanomsg is replaced by the
 * stand-in below: nn_recv answers with the replies the input carries, one
 * per attempt, then fails with EBADF (a dead socket), which ends the call.
 * nanosleep is renamed for the client (-Dnanosleep=fz_nanosleep) and does
 * not sleep, so the retries after a SHUTTING_DOWN reply cost nothing.
 *
 * Input: byte 0 picks the call (connect, publish, subscribe, unsubscribe,
 * list, fetch, ack, nack, dlq list/show/replay/purge, trace, stats, audit
 * list, extend, await), byte 1 a count 1..8 (events, items, max deliveries, limit) and,
 * in its top bit, whether the handle signs its requests (access control),
 * byte 2 an event id; then the replies, each a varint length and that many
 * bytes (the last may run to the end of the input). The connect's ping is
 * answered with a good ping reply first, except for call 0, whose replies
 * answer the ping.
 *
 * Checked: every request the client sends is a Request of version 1 with
 * the body of the call, signed (an Auth with the key and a 32-byte MAC, as
 * its last bytes) exactly when the handle has a key, resent unchanged but
 * signed again with a new sequence number after a STALE_REQUEST reply; the
 * call returns a handoff_error code; on error its results are empty (NULL,
 * 0), on success they respect what was asked (at most max deliveries, one
 * result per item, the event asked for); every result is freed by its
 * _free function (LeakSanitizer), and no read goes past a reply
 * (AddressSanitizer: each reply is its own allocation).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nanomsg/nn.h>

#include "client_internal.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_REPLIES 16

static const uint8_t *replies[MAX_REPLIES + 1];
static size_t reply_len[MAX_REPLIES + 1];
static size_t n_replies, next_reply;
static int mock_errno;
static int expect_body; /* the Request body case the call must send */
static bool signing;	/* the handle has a key */
static uint64_t last_seq;
static bool stale_before; /* the last reply said STALE_REQUEST */
static uint8_t ping_reply[64];
static size_t ping_reply_len;

/* ---- nanomsg, as far as libhandoff uses it ----------------------------- */

int fz_nanosleep(const struct timespec *req, struct timespec *rem);
int fz_nanosleep(const struct timespec *req, struct timespec *rem)
{
	(void)req;
	(void)rem;
	return 0;
}

int nn_socket(int domain, int protocol)
{
	(void)domain;
	(void)protocol;
	return 3;
}

int nn_close(int s)
{
	FZ_ASSERT(s == 3, "nn_close of socket %d", s);
	return 0;
}

int nn_setsockopt(int s, int level, int option, const void *optval,
		  size_t optvallen)
{
	(void)level;
	(void)option;
	FZ_ASSERT(s == 3 && optval && optvallen == sizeof(int),
		  "nn_setsockopt(%d, ..., %zu bytes)", s, optvallen);
	return 0;
}

int nn_connect(int s, const char *addr)
{
	FZ_ASSERT(s == 3 && addr, "nn_connect");
	return 1;
}

int nn_send(int s, const void *buf, size_t len, int flags)
{
	(void)flags;
	FZ_ASSERT(s == 3, "nn_send on socket %d", s);
	Handoff__Wire__Request *q =
		handoff__wire__request__unpack(NULL, len, buf);
	FZ_ASSERT(q, "the client sent %zu bytes that are not a Request", len);
	FZ_ASSERT(q->protocol_version == 1, "request of version %u",
		  q->protocol_version);
	FZ_ASSERT((int)q->body_case == expect_body,
		  "the client sent body %d, "
		  "the call is %d",
		  q->body_case, expect_body);
	FZ_ASSERT(!q->auth == !signing, "request %s, the handle %s a key",
		  q->auth ? "signed" : "unsigned", signing ? "has" : "has no");
	if (q->auth) {
		Handoff__Wire__Request only = HANDOFF__WIRE__REQUEST__INIT;
		uint8_t tail[256];
		only.auth = q->auth;
		size_t tlen = handoff__wire__request__get_packed_size(&only);
		FZ_ASSERT(!strcmp(q->auth->key_id, "k1") &&
				  q->auth->mac.len == 32 &&
				  tlen <= sizeof tail && tlen <= len,
			  "malformed Auth");
		handoff__wire__request__pack(&only, tail);
		FZ_ASSERT(
			!memcmp((const uint8_t *)buf + len - tlen, tail, tlen),
			"the Auth field is not the last bytes of the request");
		/* a resend is the same bytes; after STALE_REQUEST the request
		 * is signed again, with a new sequence number */
		FZ_ASSERT(q->auth->seq >= last_seq &&
				  (!stale_before || q->auth->seq > last_seq),
			  "sequence %llu after %llu%s",
			  (unsigned long long)q->auth->seq,
			  (unsigned long long)last_seq,
			  stale_before ? " and a STALE_REQUEST reply" : "");
		last_seq = q->auth->seq;
	}
	handoff__wire__request__free_unpacked(q, NULL);
	return (int)len;
}

int nn_recv(int s, void *buf, size_t len, int flags)
{
	(void)flags;
	FZ_ASSERT(s == 3 && len == NN_MSG, "nn_recv without NN_MSG");
	if (next_reply == n_replies) {
		mock_errno = EBADF; /* the socket is gone: the call ends */
		return -1;
	}
	size_t n = reply_len[next_reply];
	Handoff__Wire__Reply *r =
		handoff__wire__reply__unpack(NULL, n, replies[next_reply]);
	stale_before = r && r->status == HANDOFF__WIRE__STATUS__STALE_REQUEST;
	if (r)
		handoff__wire__reply__free_unpacked(r, NULL);
	void *msg = malloc(n ? n : 1); /* exactly n: overreads are caught */
	FZ_ASSERT(msg, "out of memory");
	if (n)
		memcpy(msg, replies[next_reply], n);
	next_reply++;
	*(void **)buf = msg;
	return (int)n;
}

int nn_freemsg(void *msg)
{
	free(msg);
	return 0;
}

int nn_errno(void)
{
	return mock_errno;
}

/* ---- the calls -------------------------------------------------------- */

static bool valid_rc(int rc)
{
	return (rc >= HANDOFF_OK && rc <= HANDOFF_ESTALE) ||
	       (rc >= HANDOFF_ETIMEDOUT && rc <= HANDOFF_ETOOBIG);
}

static void check_headers(const handoff_header *h, size_t n)
{
	FZ_ASSERT(n == 0 || h, "%zu headers without an array", n);
	for (size_t i = 0; i < n; i++)
		FZ_ASSERT(h[i].name && h[i].value &&
				  strlen(h[i].name) < (1u << 24),
			  "header %zu", i);
}

static void check_attempts(const handoff_attempt *a, size_t n)
{
	FZ_ASSERT(n == 0 || a, "%zu attempts without an array", n);
	for (size_t i = 0; i < n; i++)
		FZ_ASSERT(a[i].consumer && a[i].error, "attempt %zu", i);
	for (size_t i = 0; i < n; i++)
		(void)handoff_outcome_name(a[i].outcome);
}

static void check_dead_letter(const handoff_dead_letter *d, bool full)
{
	FZ_ASSERT(d->topic && d->key && d->error, "dead letter strings");
	(void)handoff_dead_reason_name(d->reason);
	if (full) {
		check_attempts(d->history, d->n_history);
		check_headers(d->headers, d->n_headers);
		FZ_ASSERT(d->payload, "dlq_show without a payload buffer");
		FZ_ASSERT(((const char *)d->payload)[d->payload_len] == '\0',
			  "payload not terminated");
	}
}

static int call(handoff_client *c, int which, size_t n, uint64_t id)
{
	int rc = HANDOFF_OK;
	switch (which) {
	case 1: {
		handoff_event ev[8];
		handoff_header h = { "h", "v" };
		uint64_t ids[8];
		bool dups[8];
		memset(ev, 0, sizeof ev);
		for (size_t i = 0; i < n; i++) {
			ev[i].payload = "x";
			ev[i].payload_len = 1;
			ev[i].headers = &h;
			ev[i].n_headers = i % 2;
			ev[i].idempotency_key = i == 1 ? "fixed-key" : NULL;
		}
		expect_body = HANDOFF__WIRE__REQUEST__BODY_PUBLISH;
		rc = handoff_publish(c, "t1", ev, n, ids, dups);
		break;
	}
	case 2: {
		handoff_policy p = { (uint32_t)n, 0, 0, 0 }, eff;
		bool created;
		expect_body = HANDOFF__WIRE__REQUEST__BODY_SUBSCRIBE;
		rc = handoff_subscribe(c, "t1", "s1", &p, &created, &eff);
		break;
	}
	case 3:
		expect_body = HANDOFF__WIRE__REQUEST__BODY_UNSUBSCRIBE;
		rc = handoff_unsubscribe(c, "s1");
		break;
	case 4: {
		handoff_subscription_info *s = (void *)1;
		size_t k = 99;
		expect_body = HANDOFF__WIRE__REQUEST__BODY_LIST_SUBSCRIPTIONS;
		rc = handoff_list_subscriptions(c, &s, &k);
		FZ_ASSERT(rc == HANDOFF_OK || (!s && !k),
			  "list failed with results");
		for (size_t i = 0; i < k; i++)
			FZ_ASSERT(s[i].name && s[i].topic, "subscription %zu",
				  i);
		handoff_subscriptions_free(s, k);
		break;
	}
	case 5: {
		handoff_delivery *d = (void *)1;
		size_t k = 99;
		expect_body = HANDOFF__WIRE__REQUEST__BODY_FETCH;
		rc = handoff_fetch(c, "s1", n, 0, &d, &k);
		FZ_ASSERT(rc == HANDOFF_OK || (!d && !k),
			  "fetch failed with results");
		FZ_ASSERT(k <= n, "fetch of %zu gave %zu", n, k);
		FZ_ASSERT(k == 0 || d, "%zu deliveries without an array", k);
		for (size_t i = 0; i < k; i++) {
			FZ_ASSERT(d[i].topic && d[i].key && d[i].payload,
				  "delivery %zu", i);
			FZ_ASSERT(((const char *)d[i]
					   .payload)[d[i].payload_len] == 0,
				  "payload not terminated");
			check_headers(d[i].headers, d[i].n_headers);
		}
		handoff_deliveries_free(d, k);
		break;
	}
	case 6:
	case 7: {
		handoff_ack_item a[8];
		handoff_nack_item nk[8];
		int results[9];
		for (size_t i = 0; i < 9; i++)
			results[i] = -12345;
		for (size_t i = 0; i < n; i++) {
			a[i] = (handoff_ack_item){ id + i, 77 + i };
			nk[i] = (handoff_nack_item){ id + i, 77 + i,
						     (uint32_t)i, i == 2,
						     i == 1 ? NULL : "err" };
		}
		expect_body = which == 6 ? HANDOFF__WIRE__REQUEST__BODY_ACK :
					   HANDOFF__WIRE__REQUEST__BODY_NACK;
		rc = which == 6 ? handoff_ack(c, "s1", a, n, results) :
				  handoff_nack(c, "s1", nk, n, results);
		for (size_t i = 0; i < n; i++)
			FZ_ASSERT(rc != HANDOFF_OK ||
					  (results[i] >= 0 && results[i] <= 12),
				  "item result %d", results[i]);
		FZ_ASSERT(results[n] == -12345, "results written past n");
		break;
	}
	case 8: {
		handoff_dead_letter *d = (void *)1;
		size_t k = 99;
		bool more;
		handoff_dlq_filter f = { .after_event_id = id,
					 .error_contains = "x" };
		expect_body = HANDOFF__WIRE__REQUEST__BODY_DLQ_LIST;
		rc = handoff_dlq_list(c, "s1", id % 2 ? &f : NULL, (uint32_t)n,
				      &d, &k, &more);
		FZ_ASSERT(rc == HANDOFF_OK || (!d && !k),
			  "dlq_list failed with results");
		FZ_ASSERT(k <= n, "dlq_list limit %zu gave %zu", n, k);
		for (size_t i = 0; i < k; i++)
			check_dead_letter(&d[i], false);
		handoff_dead_letters_free(d, k);
		break;
	}
	case 9: {
		handoff_dead_letter *d = (void *)1;
		expect_body = HANDOFF__WIRE__REQUEST__BODY_DLQ_SHOW;
		rc = handoff_dlq_show(c, "s1", id, &d);
		FZ_ASSERT(rc == HANDOFF_OK ? d != NULL : d == NULL,
			  "dlq_show result %p with rc %d", (void *)d, rc);
		if (d) {
			FZ_ASSERT(d->event_id == id,
				  "dlq_show of %llu gave %llu",
				  (unsigned long long)id,
				  (unsigned long long)d->event_id);
			check_dead_letter(d, true);
		}
		handoff_dead_letters_free(d, 1);
		break;
	}
	case 10:
	case 11: {
		uint64_t ids[8];
		handoff_dlq_filter f = { .reason = HANDOFF_DEAD_PERMANENT };
		handoff_dlq_action a = { .limit = (uint32_t)n };
		handoff_dlq_result r;
		for (size_t i = 0; i < n; i++)
			ids[i] = id + i;
		if (id % 2) {
			a.event_ids = ids;
			a.n_event_ids = n;
		} else {
			a.filter = &f;
			a.all = true;
		}
		expect_body = which == 10 ?
				      HANDOFF__WIRE__REQUEST__BODY_DLQ_REPLAY :
				      HANDOFF__WIRE__REQUEST__BODY_DLQ_PURGE;
		rc = which == 10 ? handoff_dlq_replay(c, "s1", &a, &r) :
				   handoff_dlq_purge(c, "s1", &a, &r);
		FZ_ASSERT(rc == HANDOFF_OK || (!r.event_ids && !r.missing &&
					       !r.n_event_ids && !r.n_missing),
			  "dlq action failed with results");
		FZ_ASSERT(!r.n_event_ids == !r.event_ids &&
				  !r.n_missing == !r.missing,
			  "dlq result arrays and counts disagree");
		handoff_dlq_result_free(&r);
		break;
	}
	case 12: {
		handoff_trace *t = (void *)1;
		expect_body = HANDOFF__WIRE__REQUEST__BODY_TRACE;
		rc = handoff_trace_event(c, id, &t);
		FZ_ASSERT(rc == HANDOFF_OK ? t != NULL : t == NULL,
			  "trace result %p with rc %d", (void *)t, rc);
		if (t) {
			FZ_ASSERT(t->event_id == id && t->topic && t->key &&
					  t->idempotency_key,
				  "trace result");
			for (size_t i = 0; i < t->n_subscriptions; i++) {
				const handoff_subscription_trace *s =
					&t->subscriptions[i];
				FZ_ASSERT(s->subscription && s->consumer &&
						  s->error,
					  "trace subscription %zu", i);
				check_attempts(s->history, s->n_history);
				(void)handoff_state_name(s->state);
			}
		}
		handoff_trace_free(t);
		break;
	}
	case 15: {
		handoff_ack_item a[8];
		int results[9];
		for (size_t i = 0; i < 9; i++)
			results[i] = -12345;
		for (size_t i = 0; i < n; i++)
			a[i] = (handoff_ack_item){ id + i, 77 + i };
		expect_body = HANDOFF__WIRE__REQUEST__BODY_EXTEND;
		rc = handoff_extend(c, "s1", a, n, 30000, results);
		for (size_t i = 0; i < n; i++)
			FZ_ASSERT(rc != HANDOFF_OK ||
					  (results[i] >= 0 && results[i] <= 12),
				  "item result %d", results[i]);
		for (size_t i = 0; rc != HANDOFF_OK && i < n; i++)
			FZ_ASSERT(results[i] == -12345,
				  "results written on error %d", rc);
		FZ_ASSERT(results[n] == -12345, "results written past n");
		break;
	}
	case 14: {
		handoff_audit_record *a = (void *)1;
		size_t k = 99;
		bool more;
		expect_body = HANDOFF__WIRE__REQUEST__BODY_AUDIT_LIST;
		rc = handoff_audit_list(c, id, (uint32_t)n, &a, &k, &more);
		FZ_ASSERT(rc == HANDOFF_OK || (!a && !k),
			  "audit_list failed with "
			  "results");
		for (size_t i = 0; i < k; i++)
			FZ_ASSERT(
				a[i].key_id && a[i].role && a[i].action &&
					a[i].subscription && a[i].selector &&
					a[i].reason && a[i].command_id &&
					(!a[i].n_event_ids == !a[i].event_ids),
				"audit record %zu", i);
		handoff_audit_free(a, k);
		break;
	}
	case 16: {
		handoff_await_reply *r = (void *)1;
		static const char *const subs[] = { "s1", "s2" };
		expect_body = HANDOFF__WIRE__REQUEST__BODY_AWAIT;
		rc = handoff_await(c, id, subs, n % 3, (uint32_t)n * 10, &r);
		FZ_ASSERT(rc == HANDOFF_OK ? r != NULL : r == NULL,
			  "await result %p with rc %d", (void *)r, rc);
		if (r) {
			FZ_ASSERT(r->event_id == id && r->topic && r->message &&
					  r->result >= HANDOFF_AWAIT_ACKED &&
					  r->result <= HANDOFF_AWAIT_TIMED_OUT,
				  "await result");
			for (size_t i = 0; i < r->n_subscriptions; i++)
				FZ_ASSERT(r->subscriptions[i].subscription &&
						  r->subscriptions[i].error &&
						  r->subscriptions[i].consumer,
					  "await subscription %zu", i);
			(void)handoff_await_result_name(r->result);
		}
		handoff_await_free(r);
		break;
	}
	case 13: {
		handoff_stats *s = (void *)1;
		expect_body = HANDOFF__WIRE__REQUEST__BODY_STATS;
		rc = handoff_get_stats(c, &s);
		FZ_ASSERT(rc == HANDOFF_OK ? s != NULL : s == NULL,
			  "stats result %p with rc %d", (void *)s, rc);
		if (s) {
			FZ_ASSERT(s->version, "stats without version");
			for (size_t i = 0; i < s->n_topics; i++)
				FZ_ASSERT(s->topics[i].name, "topic %zu", i);
			for (size_t i = 0; i < s->n_subscriptions; i++)
				FZ_ASSERT(s->subscriptions[i].name &&
						  s->subscriptions[i].topic,
					  "subscription %zu", i);
		}
		handoff_stats_free(s);
		break;
	}
	}
	return rc;
}

/* ---- libFuzzer -------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_rng_install();
	Handoff__Wire__Reply r = HANDOFF__WIRE__REPLY__INIT;
	Handoff__Wire__PingReply p = HANDOFF__WIRE__PING_REPLY__INIT;
	r.protocol_version = 1;
	p.version = (char *)HANDOFF_BUILD_VERSION;
	r.body_case = HANDOFF__WIRE__REPLY__BODY_PING;
	r.ping = &p;
	ping_reply_len = handoff__wire__reply__get_packed_size(&r);
	FZ_ASSERT(ping_reply_len <= sizeof ping_reply, "ping reply too big");
	handoff__wire__reply__pack(&r, ping_reply);
	return 0;
}

static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	int which = data[0] % 17;
	size_t n = 1 + data[1] % 8;
	signing = data[1] & 0x80;
	last_seq = 0;
	stale_before = false;
	uint64_t id = data[2];
	const uint8_t *p = data + 3, *end = data + size;

	fz_rng_seed(3);
	n_replies = next_reply = 0;
	mock_errno = 0;
	if (which != 0) {
		replies[n_replies] = ping_reply;
		reply_len[n_replies++] = ping_reply_len;
	}
	while (p < end && n_replies < MAX_REPLIES) {
		const uint8_t *start = p;
		uint64_t len;
		if (!get_varint(&p, end, &len) || len > (uint64_t)(end - p)) {
			/* no valid length: the rest is one reply */
			replies[n_replies] = start;
			reply_len[n_replies++] = (size_t)(end - start);
			break;
		}
		replies[n_replies] = p;
		reply_len[n_replies++] = (size_t)len;
		p += len;
	}

	static const unsigned char secret[32] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	handoff_options o = { .consumer_name = "fz" };
	if (signing) {
		o.key_id = "k1";
		o.secret = secret;
	}
	handoff_client *c = (void *)1;
	expect_body = HANDOFF__WIRE__REQUEST__BODY_PING;
	int rc = handoff_connect("tcp://127.0.0.1:1", &o, &c);
	FZ_ASSERT(valid_rc(rc), "handoff_connect returned %d", rc);
	FZ_ASSERT(rc == HANDOFF_OK ? c != NULL : c == NULL,
		  "handoff_connect: rc %d, handle %p", rc, (void *)c);
	if (rc != HANDOFF_OK)
		return 0;
	FZ_ASSERT(which != 0 || next_reply > 0, "connect without a ping");
	rc = call(c, which, n, id);
	FZ_ASSERT(valid_rc(rc), "call %d returned %d", which, rc);
	FZ_ASSERT(handoff_last_message(c) != NULL, "NULL last message");
	(void)handoff_strerror(rc);
	(void)handoff_last_retry_after_ms(c);
	handoff_close(c);
	return 0;
}
