/*
 * test_hostile.c — issue "Hostile input" / "Bad requests": what handoffd
 * does with requests that are malformed, truncated, oversized, of an
 * unknown type or version, over a limit, badly named, with invalid
 * policies, or that ack/nack/replay what they have no business touching.
 *
 * Every request is built by hand (protobuf-c structs, or raw bytes with a
 * tiny protobuf writer) and sent on a plain nanomsg REQ socket over
 * tcp://127.0.0.1 — never through libhandoff, whose own checks would hide
 * what the broker does. For each class of bad request the test asserts
 *   1. the status PROTOCOL.md documents (the row is quoted above the check),
 *   2. that nothing changed: subscriptions, their counters, topics and
 *      stored events compare equal before and after (read with a normal
 *      libhandoff client), traces of leased events are untouched,
 *   3. that a control client still gets answers in its normal time
 *      (median ping < max(10 × the baseline measured at the start, 1 s)).
 * At the end the broker still runs, its log shows no crash, its RSS did
 * not keep growing over repeated rounds of bad input, and it stops cleanly
 * on SIGTERM (under ASan that also runs its leak check).
 *
 * Tests named test_bug_* are regression tests of bugs these tests found
 * (each failed before its fix, in the function named):
 *   test_bug_request_of_max_request_bytes  transport.c transport_open
 *   test_bug_fetch_cache_skips_checks      loop.c receive_batch/cache_get
 *   test_bug_fetch_cache_crosses_keys      loop.c receive_batch/cache_get
 *   test_bug_decode_burst_memory_kept      loop.c turn (malloc_trim)
 * HOSTILE_VERBOSE=1 prints the status of every malformed input.
 */
#include "harness.h"
#include "wire_util.h"
#include "request_mac.h"

#include <nanomsg/nn.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char CONFIG[] = "[limits]\n"
			     "max_request = 2M\n"
			     "max_payload = 64K\n"
			     "max_batch = 100\n"
			     "max_wait = 5s\n"
			     "[defaults]\n"
			     "ack_deadline = 120s\n";

#define MAX_REQUEST (2u << 20)
#define MAX_PAYLOAD (64u << 10)
#define MAX_BATCH   100u
#define DAY_MS	    (24u * 3600u * 1000u)
#define NAME_RULE   "must be 1-200 bytes of [A-Za-z0-9._:/-]"

static struct {
	broker *b;
	handoff_client *ctl; /* the normal client: snapshots, traces */
	int req;	     /* REQ socket for the bad requests */
	int ctlreq;	     /* REQ socket for control pings */
	wire_latency base;   /* control ping latency before any abuse */
	uint64_t ev_dead;    /* a dead letter of sa */
} G;

/* ---- a tiny protobuf writer for raw, possibly broken, messages ----------- */

typedef struct pb {
	uint8_t *p;
	size_t n, cap;
} pb;

static void pb_raw(pb *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		assert_non_null(b->p);
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->n, d, n);
	b->n += n;
}

static void pb_byte(pb *b, uint8_t c)
{
	pb_raw(b, &c, 1);
}

static void pb_varint(pb *b, uint64_t v)
{
	do {
		uint8_t c = v & 0x7f;
		v >>= 7;
		pb_byte(b, c | (v ? 0x80 : 0));
	} while (v);
}

static void pb_tag(pb *b, uint32_t field, int wt)
{
	pb_varint(b, (uint64_t)field << 3 | (unsigned)wt);
}

static void pb_bytes(pb *b, uint32_t field, const void *d, size_t n)
{
	pb_tag(b, field, 2);
	pb_varint(b, n);
	pb_raw(b, d, n);
}

static void pb_str(pb *b, uint32_t field, const char *s)
{
	pb_bytes(b, field, s, strlen(s));
}

static void pb_u(pb *b, uint32_t field, uint64_t v)
{
	pb_tag(b, field, 0);
	pb_varint(b, v);
}

static void pb_sub(pb *b, uint32_t field, const pb *inner)
{
	pb_bytes(b, field, inner->p, inner->n);
}

static void pb_free(pb *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

/* ---- requests ------------------------------------------------------------- */

static WRequest req_v1(void)
{
	WRequest r = HANDOFF__WIRE__REQUEST__INIT;
	r.protocol_version = 1;
	return r;
}

static WReply *expect(const WRequest *r, int status, const char *needle,
		      const char *what)
{
	return wire_expect(G.req, r, status, needle, what, true);
}

static void expect1(const WRequest *r, int status, const char *needle,
		    const char *what)
{
	wire_expect(G.req, r, status, needle, what, false);
}

static void expect_bytes(const pb *b, int status, const char *needle,
			 const char *what)
{
	wire_expect_bytes(G.req, b->p, b->n, status, needle, what, false);
}

static void subscribe_req(const char *topic, const char *sub,
			  const Handoff__Wire__Policy *pol, int status,
			  const char *needle, const char *what)
{
	Handoff__Wire__SubscribeRequest s =
		HANDOFF__WIRE__SUBSCRIBE_REQUEST__INIT;
	s.topic = (char *)topic;
	s.subscription = (char *)sub;
	s.policy = (Handoff__Wire__Policy *)pol;
	WRequest r = req_v1();
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_SUBSCRIBE;
	r.subscribe = &s;
	expect1(&r, status, needle, what);
}

static WReply *fetch_req(const char *sub, const char *consumer, uint32_t max,
			 uint32_t wait, uint32_t max_bytes, uint64_t seq,
			 uint32_t version, int status, const char *needle,
			 const char *what)
{
	Handoff__Wire__FetchRequest f = HANDOFF__WIRE__FETCH_REQUEST__INIT;
	f.subscription = (char *)sub;
	f.consumer = (char *)consumer;
	f.max_events = max;
	f.wait_ms = wait;
	f.max_bytes = max_bytes;
	f.fetch_seq = seq;
	WRequest r = req_v1();
	r.protocol_version = version;
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_FETCH;
	r.fetch = &f;
	return expect(&r, status, needle, what);
}

/* Ack (or nack) n items of one (event, token); returns the reply. */
static WReply *ack_req(const char *sub, const uint64_t *ev, const uint64_t *tok,
		       size_t n, int status, const char *needle,
		       const char *what)
{
	Handoff__Wire__AckItem *items = calloc(n ? n : 1, sizeof *items);
	Handoff__Wire__AckItem **pi = calloc(n ? n : 1, sizeof *pi);
	assert_true(items && pi);
	for (size_t i = 0; i < n; i++) {
		handoff__wire__ack_item__init(&items[i]);
		items[i].event_id = ev[i];
		items[i].lease_token = tok[i];
		pi[i] = &items[i];
	}
	Handoff__Wire__AckRequest a = HANDOFF__WIRE__ACK_REQUEST__INIT;
	a.subscription = (char *)sub;
	a.n_items = n;
	a.items = pi;
	WRequest r = req_v1();
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_ACK;
	r.ack = &a;
	WReply *rep = expect(&r, status, needle, what);
	free(items);
	free(pi);
	return rep;
}

typedef struct nack_spec {
	uint64_t ev, tok;
	uint32_t delay;
	bool permanent;
	const char *reason;
} nack_spec;

static WReply *nack_req(const char *sub, const nack_spec *sp, size_t n,
			int status, const char *needle, const char *what)
{
	Handoff__Wire__NackItem *items = calloc(n ? n : 1, sizeof *items);
	Handoff__Wire__NackItem **pi = calloc(n ? n : 1, sizeof *pi);
	assert_true(items && pi);
	for (size_t i = 0; i < n; i++) {
		handoff__wire__nack_item__init(&items[i]);
		items[i].event_id = sp[i].ev;
		items[i].lease_token = sp[i].tok;
		items[i].delay_ms = sp[i].delay;
		items[i].permanent = sp[i].permanent;
		items[i].reason = (char *)(sp[i].reason ? sp[i].reason : "");
		pi[i] = &items[i];
	}
	Handoff__Wire__NackRequest a = HANDOFF__WIRE__NACK_REQUEST__INIT;
	a.subscription = (char *)sub;
	a.n_items = n;
	a.items = pi;
	WRequest r = req_v1();
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_NACK;
	r.nack = &a;
	WReply *rep = expect(&r, status, needle, what);
	free(items);
	free(pi);
	return rep;
}

static void assert_items(WReply *r, const int *want, size_t n, const char *what)
{
	assert_non_null(r);
	if (r->body_case != HANDOFF__WIRE__REPLY__BODY_ITEMS ||
	    r->items->n_statuses != n)
		fail_msg("%s: reply carries no %zu item statuses", what, n);
	for (size_t i = 0; i < n; i++)
		if ((int)r->items->statuses[i] != want[i])
			fail_msg("%s: item %zu is %s, expected %s", what, i,
				 wire_status_name((int)r->items->statuses[i]),
				 wire_status_name(want[i]));
	wire_reply_free(r);
}

enum dlq_kind { DLQ_LIST, DLQ_SHOW, DLQ_REPLAY, DLQ_PURGE };

static WReply *dlq_req(enum dlq_kind k, const char *sub, const uint64_t *ids,
		       size_t n_ids, uint32_t limit, bool dry, bool all,
		       uint64_t show_id, int status, const char *needle,
		       const char *what)
{
	WRequest r = req_v1();
	Handoff__Wire__DlqListRequest l = HANDOFF__WIRE__DLQ_LIST_REQUEST__INIT;
	Handoff__Wire__DlqShowRequest s = HANDOFF__WIRE__DLQ_SHOW_REQUEST__INIT;
	Handoff__Wire__DlqActionRequest a =
		HANDOFF__WIRE__DLQ_ACTION_REQUEST__INIT;
	switch (k) {
	case DLQ_LIST:
		l.subscription = (char *)sub;
		l.limit = limit;
		r.body_case = HANDOFF__WIRE__REQUEST__BODY_DLQ_LIST;
		r.dlq_list = &l;
		break;
	case DLQ_SHOW:
		s.subscription = (char *)sub;
		s.event_id = show_id;
		r.body_case = HANDOFF__WIRE__REQUEST__BODY_DLQ_SHOW;
		r.dlq_show = &s;
		break;
	case DLQ_REPLAY:
	case DLQ_PURGE:
		a.subscription = (char *)sub;
		a.n_event_ids = n_ids;
		a.event_ids = (uint64_t *)ids;
		a.limit = limit;
		a.dry_run = dry;
		a.all = all;
		if (k == DLQ_REPLAY) {
			r.body_case = HANDOFF__WIRE__REQUEST__BODY_DLQ_REPLAY;
			r.dlq_replay = &a;
		} else {
			r.body_case = HANDOFF__WIRE__REQUEST__BODY_DLQ_PURGE;
			r.dlq_purge = &a;
		}
		break;
	}
	return expect(&r, status, needle, what);
}

/* ---- "nothing changed": a snapshot through the normal client -------------- */

#define SNAP_MAX 32

typedef struct snapshot {
	size_t n_subs, n_topics;
	struct {
		char name[256], topic[256];
		handoff_policy pol;
		uint64_t ready, delayed, leased, dead;
		uint64_t delivered, acked, nacked, expired, dead_lettered,
			replayed, purged;
	} subs[SNAP_MAX];
	struct {
		char name[256];
		uint64_t published;
		uint32_t subscriptions;
	} topics[SNAP_MAX];
	uint64_t events_stored, held;
} snapshot;

static void snap(snapshot *s)
{
	memset(s, 0, sizeof *s);
	handoff_subscription_info *info = NULL;
	size_t n = 0;
	assert_int_equal(handoff_list_subscriptions(G.ctl, &info, &n),
			 HANDOFF_OK);
	assert_true(n <= SNAP_MAX);
	s->n_subs = n;
	for (size_t i = 0; i < n; i++) {
		snprintf(s->subs[i].name, 256, "%s", info[i].name);
		snprintf(s->subs[i].topic, 256, "%s", info[i].topic);
		s->subs[i].pol = info[i].policy;
		s->subs[i].ready = info[i].ready;
		s->subs[i].delayed = info[i].delayed;
		s->subs[i].leased = info[i].leased;
		s->subs[i].dead = info[i].dead;
	}
	handoff_subscriptions_free(info, n);
	handoff_stats *st = NULL;
	assert_int_equal(handoff_get_stats(G.ctl, &st), HANDOFF_OK);
	assert_int_equal(st->n_subscriptions, s->n_subs);
	for (size_t i = 0; i < st->n_subscriptions; i++) {
		const handoff_subscription_stats *x = &st->subscriptions[i];
		assert_string_equal(x->name, s->subs[i].name);
		s->subs[i].delivered = x->delivered;
		s->subs[i].acked = x->acked;
		s->subs[i].nacked = x->nacked;
		s->subs[i].expired = x->expired;
		s->subs[i].dead_lettered = x->dead_lettered;
		s->subs[i].replayed = x->replayed;
		s->subs[i].purged = x->purged;
	}
	assert_true(st->n_topics <= SNAP_MAX);
	s->n_topics = st->n_topics;
	for (size_t i = 0; i < st->n_topics; i++) {
		snprintf(s->topics[i].name, 256, "%s", st->topics[i].name);
		s->topics[i].published = st->topics[i].published;
		s->topics[i].subscriptions = st->topics[i].subscriptions;
	}
	s->events_stored = st->events_stored;
	s->held = st->held_fetches;
	handoff_stats_free(st);
}

static void assert_unchanged(const snapshot *before, const char *what)
{
	snapshot *now = malloc(sizeof *now);
	assert_non_null(now);
	snap(now);
	const snapshot *a = before, *b = now;
#define SAME(x, fmt)                                                         \
	do {                                                                 \
		if (a->x != b->x)                                            \
			fail_msg("%s changed %s: " fmt " -> " fmt, what, #x, \
				 a->x, b->x);                                \
	} while (0)
	if (a->n_subs != b->n_subs)
		fail_msg("%s changed the number of subscriptions: %zu -> %zu",
			 what, a->n_subs, b->n_subs);
	if (a->n_topics != b->n_topics)
		fail_msg("%s changed the number of topics: %zu -> %zu", what,
			 a->n_topics, b->n_topics);
	for (size_t i = 0; i < a->n_subs; i++) {
		if (strcmp(a->subs[i].name, b->subs[i].name) ||
		    strcmp(a->subs[i].topic, b->subs[i].topic))
			fail_msg("%s changed subscription %zu: %s -> %s", what,
				 i, a->subs[i].name, b->subs[i].name);
		if (memcmp(&a->subs[i].pol, &b->subs[i].pol,
			   sizeof a->subs[i].pol))
			fail_msg("%s changed the policy of %s", what,
				 a->subs[i].name);
		SAME(subs[i].ready, "%llu");
		SAME(subs[i].delayed, "%llu");
		SAME(subs[i].leased, "%llu");
		SAME(subs[i].dead, "%llu");
		SAME(subs[i].delivered, "%llu");
		SAME(subs[i].acked, "%llu");
		SAME(subs[i].nacked, "%llu");
		SAME(subs[i].expired, "%llu");
		SAME(subs[i].dead_lettered, "%llu");
		SAME(subs[i].replayed, "%llu");
		SAME(subs[i].purged, "%llu");
	}
	for (size_t i = 0; i < a->n_topics; i++) {
		if (strcmp(a->topics[i].name, b->topics[i].name))
			fail_msg("%s changed topic %zu: %s -> %s", what, i,
				 a->topics[i].name, b->topics[i].name);
		SAME(topics[i].published, "%llu");
		SAME(topics[i].subscriptions, "%u");
	}
	SAME(events_stored, "%llu");
	SAME(held, "%llu");
#undef SAME
	free(now);
}

/* The control client still gets answers in its normal time. */
static void control_ok(const char *after)
{
	wire_check_control(G.ctlreq, &G.base, 7, after);
	wire_assert_broker_ok(G.b);
}

/* Run one class: snapshot, the class, nothing changed, control answers. */
#define CLASS(fn, name)                            \
	do {                                       \
		snapshot *s_ = malloc(sizeof *s_); \
		assert_non_null(s_);               \
		snap(s_);                          \
		fn();                              \
		assert_unchanged(s_, name);        \
		free(s_);                          \
		control_ok(name);                  \
	} while (0)

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);
	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* A fresh event on topic t, leased in sa; *tok gets the lease token. */
static uint64_t lease_one(const char *tag, uint64_t *tok)
{
	uint64_t ev = it_publish1(G.ctl, "t", tag, NULL, tag);
	handoff_delivery *d = NULL;
	size_t n = it_fetch(G.ctl, "sa", 1, 0, &d);
	assert_int_equal(n, 1);
	assert_int_equal(d[0].event_id, ev);
	*tok = d[0].lease_token;
	handoff_deliveries_free(d, n);
	return ev;
}

/* ---- group setup / teardown ---------------------------------------------- */

static int group_setup(void **state)
{
	(void)state;
	memset(&G, 0, sizeof G);
	G.b = wire_broker_start_tcp(CONFIG, NULL);
	G.ctl = it_connect(G.b, "hostile-ctl", 0);
	it_subscribe(G.ctl, "t", "sa", 5, 120000, 100, 1000);
	it_subscribe(G.ctl, "t", "sb", 5, 120000, 100, 1000);
	it_subscribe(G.ctl, "t2", "sc", 5, 120000, 100, 1000);
	/* one dead letter in sa (and the same event ready in sb) */
	G.ev_dead = it_publish1(G.ctl, "t", "poison", NULL, "dead-1");
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(G.ctl, "sa", 1, 0, &d), 1);
	assert_int_equal(d[0].event_id, G.ev_dead);
	assert_int_equal(it_nack1(G.ctl, "sa", G.ev_dead, d[0].lease_token, 0,
				  true, "poison"),
			 HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	G.req = wire_req_open(broker_url(G.b));
	G.ctlreq = wire_req_open(broker_url(G.b));
	wire_ping_latency(G.ctlreq, 10); /* warm up */
	G.base = wire_ping_latency(G.ctlreq, 21);
	fprintf(stderr,
		"hostile: broker %s; baseline control ping median "
		"%.2f ms (max %.2f)\n",
		broker_url(G.b), G.base.median_ms, G.base.max_ms);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	wire_req_close(G.req);
	wire_req_close(G.ctlreq);
	handoff_close(G.ctl);
	broker_cleanup(G.b);
	return 0;
}

/* ==== 1. malformed bytes ================================================= */

/*
 * PROTOCOL.md §1: "The bytes do not decode as a `Request`, or decoding
 * would take more than 16 × the message size + 64 KiB of memory →
 * `BAD_REQUEST` "malformed request: …"."
 * A local protobuf-c decode is the oracle for random blobs: those that
 * happen to decode get the status of checks 2 and 3 instead.
 */
static int envelope_oracle(const uint8_t *p, size_t n, const char **needle)
{
	WRequest *r = handoff__wire__request__unpack(NULL, n, p);
	*needle = "malformed request";
	if (!r)
		return WST(BAD_REQUEST);
	*needle = NULL;
	int st = -1;
	if (r->protocol_version != 1)
		st = WST(UNSUPPORTED_VERSION);
	else if (r->body_case == HANDOFF__WIRE__REQUEST__BODY__NOT_SET)
		st = WST(BAD_REQUEST);
	handoff__wire__request__free_unpacked(r, NULL);
	return st;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static void cls_malformed(void)
{
	static const struct {
		const char *bytes;
		size_t n;
		const char *what;
	} cases[] = {
		{ "\x08", 1, "a tag without its value" },
		{ "\x08\x80", 2, "a truncated varint" },
		{ "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12,
		  "an 11-byte varint" },
		{ "\x00\x01", 2, "field number 0" },
		{ "\x0f\x01", 2, "wire type 7" },
		{ "\x0e\x01", 2, "wire type 6" },
		{ "\x0b\x0c", 2, "a start-group on field 1" },
		{ "\x0c", 1, "an end-group with no start" },
		{ "\x53\x0c\x08\x01", 4, "a start-group on the ping field" },
		{ "\x08\x01\x52\xff\xff\xff\xff\x0f", 8,
		  "ping declaring 4 GiB" },
		{ "\x08\x01\x52\x05\x01\x02", 6,
		  "ping declaring 5 bytes, 2 sent" },
		{ "\x08\x01\x52\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 13,
		  "a 10-byte length" },
		{ "\x08\x01\x52\x02\xff\xff", 6, "a ping body of garbage" },
		{ "\x08\x01\x5a\x03\x0a\x05t", 7,
		  "a publish whose topic overruns the body" },
		{ "\x08\x01\x50\x00", 4, "the ping field as a varint" },
		{ "\x08\x01\x55\x00\x00\x00\x00", 7,
		  "the ping field as fixed32" },
		{ "\x0a\x01\x01", 3, "protocol_version as bytes" },
		{ "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 10, "all ones" },
		{ "\x00\x00\x00\x00\x00\x00\x00\x00", 8, "all zeros" },
		{ "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, "an HTTP request" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *needle;
		int want = envelope_oracle((const uint8_t *)cases[i].bytes,
					   cases[i].n, &needle);
		/* each of these is no protobuf at all */
		assert_int_equal(want, WST(BAD_REQUEST));
		assert_non_null(needle);
		if (getenv("HOSTILE_VERBOSE"))
			fprintf(stderr, "hostile: %-42s -> %s\n", cases[i].what,
				wire_status_name(want));
		wire_expect_bytes(G.req, cases[i].bytes, cases[i].n, want,
				  needle, cases[i].what, false);
	}
	/* The ones that cannot decode say so. */
	wire_expect_bytes(G.req, "\x08", 1, WST(BAD_REQUEST),
			  "malformed request", "a lone tag", false);
	/* Random blobs (fixed seed): every one gets the oracle's status. */
	uint8_t blob[4096];
	for (int i = 0; i < 24; i++) {
		size_t n = 1 + (size_t)(rng() % sizeof blob);
		for (size_t k = 0; k < n; k++)
			blob[k] = (uint8_t)rng();
		const char *needle;
		int want = envelope_oracle(blob, n, &needle);
		if (want < 0)
			continue; /* decodes to a real request: not sent */
		if (getenv("HOSTILE_VERBOSE"))
			fprintf(stderr,
				"hostile: random blob %2d (%4zu bytes) "
				"-> %s\n",
				i, n, wire_status_name(want));
		char what[64];
		snprintf(what, sizeof what, "random blob %d (%zu bytes)", i, n);
		wire_expect_bytes(G.req, blob, n, want, needle, what, false);
	}
}

static void test_malformed_bytes(void **state)
{
	(void)state;
	CLASS(cls_malformed, "malformed bytes");
}

/* ==== 2. truncated valid requests ======================================== */

/*
 * §1 again: a proper prefix of a Request is either no protobuf at all
 * ("malformed request", BAD_REQUEST), the version field alone ("No body …
 * → BAD_REQUEST "unknown or missing request type""), or empty ("0, meaning
 * unset, counts as ≠ 1 → UNSUPPORTED_VERSION"). Nothing of a truncated
 * request may be applied. The whole message is sent as well: its status
 * proves the bytes were a real request (chosen so that it changes
 * nothing either: NO_SUBSCRIPTIONS, CONFLICT, LEASE_LOST items, ...).
 */
static void truncations(const WRequest *r, int full_status, const char *what)
{
	size_t len;
	uint8_t *buf = wire_pack(r, &len);
	char w[128];
	for (size_t cut = 0; cut < len; cut++) {
		int want =
			cut == 0 ? WST(UNSUPPORTED_VERSION) : WST(BAD_REQUEST);
		const char *needle =
			cut == 0 ? "protocol version 0 not supported" :
			cut == 2 ? "unknown or missing request type" :
				   "malformed request";
		snprintf(w, sizeof w, "%s cut at %zu of %zu bytes", what, cut,
			 len);
		wire_expect_bytes(G.req, buf, cut, want, needle, w, false);
	}
	snprintf(w, sizeof w, "%s, whole (%zu bytes)", what, len);
	wire_expect_bytes(G.req, buf, len, full_status, NULL, w, false);
	free(buf);
}

static void cls_truncated(void)
{
	/* publish: 2 events with key, headers, idempotency keys */
	Handoff__Wire__Header h[2] = { HANDOFF__WIRE__HEADER__INIT,
				       HANDOFF__WIRE__HEADER__INIT };
	h[0].name = "content-type";
	h[0].value = "text/plain";
	h[1].name = "x-trace";
	h[1].value = "abc123";
	Handoff__Wire__Header *hp[2] = { &h[0], &h[1] };
	Handoff__Wire__PublishEvent e[2] = {
		HANDOFF__WIRE__PUBLISH_EVENT__INIT,
		HANDOFF__WIRE__PUBLISH_EVENT__INIT
	};
	for (int i = 0; i < 2; i++) {
		e[i].payload.data = (uint8_t *)"payload bytes for truncation";
		e[i].payload.len = 28;
		e[i].key = "key-1";
		e[i].idempotency_key = i ? "trunc-idem-2" : "trunc-idem-1";
		e[i].n_headers = 2;
		e[i].headers = hp;
	}
	Handoff__Wire__PublishEvent *ep[2] = { &e[0], &e[1] };
	Handoff__Wire__PublishRequest p = HANDOFF__WIRE__PUBLISH_REQUEST__INIT;
	p.topic =
		"t-none"; /* no subscriptions: the whole one changes nothing */
	p.n_events = 2;
	p.events = ep;
	WRequest r = req_v1();
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_PUBLISH;
	r.publish = &p;
	truncations(&r, WST(NO_SUBSCRIPTIONS), "publish");

	/* subscribe with a policy: sa exists on t, so the whole is CONFLICT */
	Handoff__Wire__Policy pol = HANDOFF__WIRE__POLICY__INIT;
	pol.max_attempts = 7;
	pol.ack_deadline_ms = 30000;
	pol.backoff_min_ms = 100;
	pol.backoff_max_ms = 5000;
	Handoff__Wire__SubscribeRequest s =
		HANDOFF__WIRE__SUBSCRIBE_REQUEST__INIT;
	s.topic = "t-other";
	s.subscription = "sa";
	s.policy = &pol;
	r = req_v1();
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_SUBSCRIBE;
	r.subscribe = &s;
	truncations(&r, WST(CONFLICT), "subscribe");

	/* fetch on sc (nothing ready there) */
	Handoff__Wire__FetchRequest f = HANDOFF__WIRE__FETCH_REQUEST__INIT;
	f.subscription = "sc";
	f.consumer = "truncating-consumer";
	f.max_events = 3;
	f.max_bytes = 4096;
	r = req_v1();
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_FETCH;
	r.fetch = &f;
	truncations(&r, WST(OK), "fetch");

	/* ack with two items that lease nothing */
	Handoff__Wire__AckItem ai[2] = { HANDOFF__WIRE__ACK_ITEM__INIT,
					 HANDOFF__WIRE__ACK_ITEM__INIT };
	ai[0].event_id = G.ev_dead;
	ai[0].lease_token = 0x1234567890abcdefull;
	ai[1].event_id = 999999;
	ai[1].lease_token = 1;
	Handoff__Wire__AckItem *aip[2] = { &ai[0], &ai[1] };
	Handoff__Wire__AckRequest a = HANDOFF__WIRE__ACK_REQUEST__INIT;
	a.subscription = "sa";
	a.n_items = 2;
	a.items = aip;
	r = req_v1();
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_ACK;
	r.ack = &a;
	truncations(&r, WST(OK), "ack");

	/* nack with a delay and a reason */
	Handoff__Wire__NackItem ni = HANDOFF__WIRE__NACK_ITEM__INIT;
	ni.event_id = G.ev_dead;
	ni.lease_token = 77;
	ni.delay_ms = 1000;
	ni.reason = "truncated reason";
	Handoff__Wire__NackItem *nip = &ni;
	Handoff__Wire__NackRequest n = HANDOFF__WIRE__NACK_REQUEST__INIT;
	n.subscription = "sa";
	n.n_items = 1;
	n.items = &nip;
	r = req_v1();
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_NACK;
	r.nack = &n;
	truncations(&r, WST(OK), "nack");

	/* dlq_replay by ids with a filter, dry run */
	uint64_t ids[3] = { 999999, 1ull << 40, 123456789 };
	Handoff__Wire__DlqFilter flt = HANDOFF__WIRE__DLQ_FILTER__INIT;
	flt.error_contains = "nothing like this";
	flt.after_event_id = 5;
	Handoff__Wire__DlqActionRequest d =
		HANDOFF__WIRE__DLQ_ACTION_REQUEST__INIT;
	d.subscription = "sa";
	d.n_event_ids = 3;
	d.event_ids = ids;
	d.filter = &flt;
	d.limit = 10;
	d.dry_run = true;
	r = req_v1();
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_DLQ_REPLAY;
	r.dlq_replay = &d;
	truncations(&r, WST(OK), "dlq_replay");
}

static void test_truncated(void **state)
{
	(void)state;
	CLASS(cls_truncated, "truncated requests");
}

/* ==== 3. oversized requests ============================================== */

/* A publish whose packed size is exactly len bytes (one event, payload
 * padded; over max_payload, so it is refused with LIMIT_EXCEEDED should it
 * arrive). */
static uint8_t *sized_publish(size_t len)
{
	size_t pay = len > 64 ? len - 64 : 1;
	for (;;) {
		uint8_t *data = calloc(1, pay);
		assert_non_null(data);
		Handoff__Wire__PublishEvent e =
			HANDOFF__WIRE__PUBLISH_EVENT__INIT;
		e.payload.data = data;
		e.payload.len = pay;
		e.idempotency_key = "oversized";
		Handoff__Wire__PublishEvent *ep = &e;
		Handoff__Wire__PublishRequest p =
			HANDOFF__WIRE__PUBLISH_REQUEST__INIT;
		p.topic = "t";
		p.n_events = 1;
		p.events = &ep;
		WRequest r = req_v1();
		r.body_case = HANDOFF__WIRE__REQUEST__BODY_PUBLISH;
		r.publish = &p;
		size_t n;
		uint8_t *buf = wire_pack(&r, &n);
		free(data);
		if (n == len)
			return buf;
		free(buf);
		assert_true(n > len ? pay > n - len : true);
		pay = n > len ? pay - (n - len) : pay + (len - n);
	}
}

/*
 * §1 Transport: "the broker sets `NN_RCVMAXSIZE` to `max_request` (default
 * 16 MiB). A larger message never reaches the broker and gets no reply, so
 * the client times out." Limits table: "`max_request` | … | transport | no
 * reply". nanomsg drops the connection; a REQ socket then reconnects and
 * resends by itself, again and again, while the socket stays open — the
 * broker must go on serving everybody else meanwhile.
 */
static void cls_oversized(void)
{
	const size_t sizes[] = { MAX_REQUEST + 1, MAX_REQUEST + 4096,
				 4 * MAX_REQUEST };
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		uint8_t *buf = sized_publish(sizes[i]);
		int big = wire_req_open(broker_url(G.b));
		char what[96];
		snprintf(what, sizeof what,
			 "a %zu-byte request (max_request %u)", sizes[i],
			 MAX_REQUEST);
		wire_expect_silence(big, buf, sizes[i], 1500, what);
		/* while it resends its request in a loop: */
		char after[96];
		snprintf(after, sizeof after, "%zu-byte request (resending)",
			 sizes[i]);
		control_ok(after);
		wire_req_close(big);
		free(buf);
	}
	/* Inside the limit (with room for the 4-byte REQ header nanomsg puts
	 * in front): it arrives and gets its documented refusal. */
	size_t fits = MAX_REQUEST - 4;
	uint8_t *buf = sized_publish(fits);
	wire_expect_bytes(G.req, buf, fits, WST(LIMIT_EXCEEDED),
			  "exceeds max_payload",
			  "a request of max_request - 4 "
			  "bytes",
			  false);
	free(buf);
}

static void test_oversized(void **state)
{
	(void)state;
	CLASS(cls_oversized, "oversized requests");
}

/*
 * KNOWN BROKER BUG (test_bug_*): a request of exactly max_request bytes is
 * not "larger" than max_request and the C client sends requests up to
 * 16 MiB (= the default max_request), but nanomsg counts the 4-byte REQ
 * request id in the message it checks against NN_RCVMAXSIZE, so requests
 * of max_request - 3 … max_request bytes are dropped without a reply and
 * the client retries them until its deadline (HANDOFF_ETIMEDOUT instead of
 * an answer). Fix: broker/transport.c, transport_open(): set NN_RCVMAXSIZE
 * to max_request + 4 (see the report).
 */
static void test_bug_request_of_max_request_bytes(void **state)
{
	(void)state;
	uint8_t *buf = sized_publish(MAX_REQUEST);
	int s = wire_req_open(broker_url(G.b));
	WReply *r = wire_call_bytes(s, buf, MAX_REQUEST, 3000);
	wire_req_close(s);
	free(buf);
	if (!r)
		fail_msg(
			"BROKER BUG: a request of exactly max_request (%u) "
			"bytes got no reply; PROTOCOL.md drops only larger "
			"ones (transport.c: NN_RCVMAXSIZE must allow the 4-byte "
			"REQ header)",
			MAX_REQUEST);
	assert_int_equal(r->status, WST(LIMIT_EXCEEDED));
	wire_reply_free(r);
	control_ok("a request of exactly max_request bytes");
}

/* ==== 4. unknown request body ============================================ */

/*
 * §1: "No body, or a body field this broker does not know → `BAD_REQUEST`
 * "unknown or missing request type"." Unknown fields are skipped by the
 * decoder (proto3), so a known body next to unknown fields is served.
 */
static void cls_unknown_body(void)
{
	pb b = { 0 };
	static const char *const unknown = "unknown or missing request type";

	pb_u(&b, 1, 1);
	expect_bytes(&b, WST(BAD_REQUEST), unknown, "version 1, no body");
	pb_free(&b);

	WRequest r = req_v1(); /* the same from protobuf-c: body NOT_SET */
	expect1(&r, WST(BAD_REQUEST), unknown, "body_case NOT_SET");

	/* 1-24 and 25 (extend) are known; 100 is auth */
	const uint32_t fields[] = { 2, 9, 26, 27, 99, 101, 1000, 536870911 };
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		char what[64];
		pb_u(&b, 1, 1);
		pb_bytes(&b, fields[i], "\x08\x01", 2);
		snprintf(what, sizeof what, "unknown body field %u (bytes)",
			 fields[i]);
		expect_bytes(&b, WST(BAD_REQUEST), unknown, what);
		pb_free(&b);
		pb_u(&b, 1, 1);
		pb_u(&b, fields[i], 12345);
		snprintf(what, sizeof what, "unknown body field %u (varint)",
			 fields[i]);
		expect_bytes(&b, WST(BAD_REQUEST), unknown, what);
		pb_free(&b);
	}

	/* known body + unknown fields around and inside it: served */
	pb inner = { 0 };
	pb_u(&inner, 7, 42);
	pb_str(&inner, 300, "from the future");
	pb_u(&b, 1, 1);
	pb_u(&b, 99, 1); /* 50-59 are backup and health now */
	pb_sub(&b, 10, &inner);
	pb_str(&b, 77, "trailing unknown");
	WReply *rep = wire_expect_bytes(G.req, b.p, b.n, WST(OK), NULL,
					"ping with unknown fields", true);
	assert_int_equal(rep->body_case, HANDOFF__WIRE__REPLY__BODY_PING);
	wire_reply_free(rep);
	pb_free(&b);
	pb_free(&inner);

	/* two bodies: the last one is the request; the first is not applied */
	pb sub = { 0 };
	pb_str(&sub, 1, "t");
	pb_str(&sub, 2, "two-bodies-sub");
	pb_u(&b, 1, 1);
	pb_sub(&b, 12, &sub);
	pb_bytes(&b, 10, "", 0);
	rep = wire_expect_bytes(G.req, b.p, b.n, WST(OK), NULL,
				"subscribe then ping in one request", true);
	assert_int_equal(rep->body_case, HANDOFF__WIRE__REPLY__BODY_PING);
	wire_reply_free(rep);
	pb_free(&b);
	pb_free(&sub);
}

static void test_unknown_body(void **state)
{
	(void)state;
	CLASS(cls_unknown_body, "unknown request bodies");
}

/* ==== 5. protocol version ================================================ */

/*
 * §1: "`protocol_version` ≠ 1 (0, meaning unset, counts as ≠ 1) →
 * `UNSUPPORTED_VERSION` "protocol version N not supported (this broker
 * speaks 1)". This check comes before the body is looked at."
 * Status table: "2 | `UNSUPPORTED_VERSION` | `protocol_version` ≠ 1 | any".
 */
static void cls_version(void)
{
	const uint32_t versions[] = { 0, 2, 3, 100, 0x7fffffff, 0xffffffff };
	char what[96], needle[96];
	for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
		snprintf(needle, sizeof needle,
			 "protocol version %u not supported (this broker "
			 "speaks 1)",
			 versions[i]);
		WRequest r = wire_ping_request();
		r.protocol_version = versions[i];
		snprintf(what, sizeof what, "ping at version %u", versions[i]);
		expect1(&r, WST(UNSUPPORTED_VERSION), needle, what);

		/* a publish that would succeed at version 1 */
		Handoff__Wire__PublishEvent e =
			HANDOFF__WIRE__PUBLISH_EVENT__INIT;
		e.payload.data = (uint8_t *)"x";
		e.payload.len = 1;
		e.idempotency_key = "version-probe";
		Handoff__Wire__PublishEvent *ep = &e;
		Handoff__Wire__PublishRequest p =
			HANDOFF__WIRE__PUBLISH_REQUEST__INIT;
		p.topic = "t";
		p.n_events = 1;
		p.events = &ep;
		r = req_v1();
		r.protocol_version = versions[i];
		r.body_case = HANDOFF__WIRE__REQUEST__BODY_PUBLISH;
		r.publish = &p;
		snprintf(what, sizeof what, "valid publish at version %u",
			 versions[i]);
		expect1(&r, WST(UNSUPPORTED_VERSION), needle, what);

		/* no body at all: the version is checked first */
		r = req_v1();
		r.protocol_version = versions[i];
		snprintf(what, sizeof what, "no body at version %u",
			 versions[i]);
		expect1(&r,
			versions[i] == 1 ? WST(BAD_REQUEST) :
					   WST(UNSUPPORTED_VERSION),
			needle, what);

		/* an unknown body field: the version is checked first */
		pb b = { 0 };
		pb_u(&b, 1, versions[i]);
		pb_bytes(&b, 99, "", 0);
		snprintf(what, sizeof what, "unknown body at version %u",
			 versions[i]);
		expect_bytes(&b, WST(UNSUPPORTED_VERSION), needle, what);
		pb_free(&b);
	}
	/* the empty message is a Request with every field unset */
	wire_expect_bytes(G.req, "", 0, WST(UNSUPPORTED_VERSION),
			  "protocol version 0 not supported",
			  "an empty message", false);
}

static void test_unsupported_version(void **state)
{
	(void)state;
	CLASS(cls_version, "unsupported versions");
}

/* ==== 6. huge counts ===================================================== */

/* Limits table: "`max_batch` | 1000 | events per publish; items per
 * ack/nack; `max_events`; dlq `limit` and `event_ids` | `LIMIT_EXCEEDED`";
 * "`max_wait` | 60 s | fetch `wait_ms` | `LIMIT_EXCEEDED`"; fixed: "fetch
 * `max_bytes` 0 or ≥ 1024 … | `BAD_REQUEST`". §1 on decoding: "decoding
 * would take more than 16 × the message size + 64 KiB of memory →
 * `BAD_REQUEST` "malformed request: …"". */
static void cls_counts(void)
{
	char needle[96];
	/* §5.5: "`LIMIT_EXCEEDED` | "N events exceed max_batch M"" */
	size_t n = MAX_BATCH + 1;
	Handoff__Wire__PublishEvent *e = calloc(n, sizeof *e);
	Handoff__Wire__PublishEvent **ep = calloc(n, sizeof *ep);
	char(*keys)[16] = calloc(n, 16);
	assert_true(e && ep && keys);
	for (size_t i = 0; i < n; i++) {
		handoff__wire__publish_event__init(&e[i]);
		snprintf(keys[i], 16, "batch-%zu", i);
		e[i].idempotency_key = keys[i];
		ep[i] = &e[i];
	}
	Handoff__Wire__PublishRequest p = HANDOFF__WIRE__PUBLISH_REQUEST__INIT;
	p.topic = "t";
	p.n_events = n;
	p.events = ep;
	WRequest r = req_v1();
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_PUBLISH;
	r.publish = &p;
	snprintf(needle, sizeof needle, "%zu events exceed max_batch %u", n,
		 MAX_BATCH);
	expect1(&r, WST(LIMIT_EXCEEDED), needle, "a publish of max_batch + 1");
	free(e);
	free(ep);
	free(keys);

	/* §5.7/§5.8: "`LIMIT_EXCEEDED` | "N items exceed max_batch M"" */
	uint64_t *ev = calloc(n, sizeof *ev), *tok = calloc(n, sizeof *tok);
	nack_spec *ns = calloc(n, sizeof *ns);
	assert_true(ev && tok && ns);
	for (size_t i = 0; i < n; i++) {
		ev[i] = G.ev_dead;
		tok[i] = i + 1;
		ns[i] = (nack_spec){ .ev = G.ev_dead, .tok = i + 1 };
	}
	snprintf(needle, sizeof needle, "%zu items exceed max_batch %u", n,
		 MAX_BATCH);
	wire_reply_free(ack_req("sa", ev, tok, n, WST(LIMIT_EXCEEDED), needle,
				"an ack of max_batch + 1 items"));
	wire_reply_free(nack_req("sa", ns, n, WST(LIMIT_EXCEEDED), needle,
				 "a nack of max_batch + 1 items"));
	free(ev);
	free(tok);
	free(ns);

	/* §5.6: "`LIMIT_EXCEEDED` | "max_events N exceeds max_batch M"",
	 * "`LIMIT_EXCEEDED` | "wait of N ms exceeds max_wait M ms"",
	 * "`BAD_REQUEST` | "max_bytes must be at least 1024"" */
	wire_reply_free(fetch_req("sb", "greedy", MAX_BATCH + 1, 0, 0, 0, 1,
				  WST(LIMIT_EXCEEDED),
				  "max_events 101 exceeds max_batch 100",
				  "fetch max_events 101"));
	wire_reply_free(fetch_req("sb", "greedy", 0xffffffffu, 0, 0, 0, 1,
				  WST(LIMIT_EXCEEDED),
				  "max_events 4294967295 exceeds max_batch",
				  "fetch max_events 2^32-1"));
	wire_reply_free(fetch_req(
		"sb", "greedy", 1, 0xffffffffu, 0, 0, 1, WST(LIMIT_EXCEEDED),
		"wait of 4294967295 ms exceeds max_wait 5000 ms",
		"fetch wait_ms 2^32-1"));
	wire_reply_free(fetch_req(
		"sb", "greedy", 1, 0, 1, 0, 1, WST(BAD_REQUEST),
		"max_bytes must be at least 1024", "fetch max_bytes 1"));
	wire_reply_free(fetch_req(
		"sb", "greedy", 1, 0, 1023, 0, 1, WST(BAD_REQUEST),
		"max_bytes must be at least 1024", "fetch max_bytes 1023"));

	/* §5.10: "`LIMIT_EXCEEDED` | "limit N exceeds max_batch M""; §5.12:
	 * "`LIMIT_EXCEEDED` | "more than max_batch N dead letters in one
	 * request" (`limit` or `event_ids`)" */
	wire_reply_free(dlq_req(DLQ_LIST, "sa", NULL, 0, 0xffffffffu, false,
				false, 0, WST(LIMIT_EXCEEDED),
				"limit 4294967295 exceeds max_batch 100",
				"dlq_list limit 2^32-1"));
	wire_reply_free(dlq_req(DLQ_REPLAY, "sa", NULL, 0, MAX_BATCH + 1, false,
				false, 0, WST(LIMIT_EXCEEDED),
				"more than max_batch 100 dead letters",
				"dlq_replay limit 101"));
	uint64_t many[MAX_BATCH + 1];
	for (size_t i = 0; i <= MAX_BATCH; i++)
		many[i] = G.ev_dead;
	wire_reply_free(dlq_req(DLQ_PURGE, "sa", many, MAX_BATCH + 1, 0, false,
				false, 0, WST(LIMIT_EXCEEDED),
				"more than max_batch 100 dead letters",
				"dlq_purge of 101 ids"));

	/* A packed repeated field that declares 2 GiB of elements in a
	 * 20-byte message: it does not decode. */
	pb in = { 0 }, b = { 0 };
	pb_str(&in, 1, "sa");
	pb_tag(&in, 2, 2);
	pb_varint(&in, 0x7fffffffu);
	pb_raw(&in, "\x01\x02\x03", 3);
	pb_u(&b, 1, 1);
	pb_sub(&b, 20, &in);
	expect_bytes(&b, WST(BAD_REQUEST), "malformed request",
		     "packed event_ids declaring 2 GiB");
	pb_free(&b);
	pb_free(&in);

	/* A million packed one-byte ids in a 1 MB message: decodes within
	 * the budget (8 MB), then is refused by max_batch, for replay and
	 * purge alike. */
	const size_t million = 1000000;
	uint8_t *ones = malloc(million);
	assert_non_null(ones);
	memset(ones, 0x01, million);
	for (int purge = 0; purge < 2; purge++) {
		pb_str(&in, 1, "sa");
		pb_bytes(&in, 2, ones, million);
		pb_u(&b, 1, 1);
		pb_sub(&b, purge ? 21 : 20, &in);
		expect_bytes(&b, WST(LIMIT_EXCEEDED),
			     "more than max_batch 100 dead letters",
			     purge ? "dlq_purge of 1,000,000 packed ids" :
				     "dlq_replay of 1,000,000 packed ids");
		pb_free(&b);
		pb_free(&in);
	}
	free(ones);

	/* 900,000 empty ack items (2 bytes each, 1.8 MB): each would take
	 * ~56 bytes decoded, over 16 × the size: refused as malformed before
	 * the broker allocates it all. */
	const size_t items = 900000;
	pb_str(&in, 1, "sa");
	for (size_t i = 0; i < items; i++)
		pb_raw(&in, "\x12\x00", 2);
	pb_u(&b, 1, 1);
	pb_sub(&b, 16, &in);
	assert_true(b.n < MAX_REQUEST - 4);
	expect_bytes(&b, WST(BAD_REQUEST), "malformed request",
		     "an ack of 900,000 empty items (decode budget)");
	pb_free(&b);
	pb_free(&in);

	/* The same trick with empty publish events (topic first) */
	pb_str(&in, 1, "t");
	for (size_t i = 0; i < items; i++)
		pb_raw(&in, "\x12\x00", 2);
	pb_u(&b, 1, 1);
	pb_sub(&b, 11, &in);
	expect_bytes(&b, WST(BAD_REQUEST), "malformed request",
		     "a publish of 900,000 empty events (decode budget)");
	pb_free(&b);
	pb_free(&in);
}

static void test_huge_counts(void **state)
{
	(void)state;
	CLASS(cls_counts, "huge counts");
	fprintf(stderr,
		"hostile: broker VmHWM %ld KiB, VmRSS %ld KiB after "
		"the huge counts\n",
		wire_proc_kb(G.b->pid, "VmHWM"),
		wire_proc_kb(G.b->pid, "VmRSS"));
}

/*
 * The decode budget is per request (§1: "16 × the message size + 64 KiB"),
 * and a turn takes up to 512 requests or 64 MiB (§2). Sixteen 1.8 MB
 * decode bombs sent at once from sixteen sockets land in one or a few
 * turns: each is refused, and the memory they took is given back after
 * the turn. Reported: the broker's peak RSS (VmHWM) — what a burst of
 * bombs costs.
 */
#define BOMBS 16
static void cls_concurrent_bombs(void)
{
	pb in = { 0 }, b = { 0 };
	pb_str(&in, 1, "sa");
	for (size_t i = 0; i < 900000; i++)
		pb_raw(&in, "\x12\x00", 2);
	pb_u(&b, 1, 1);
	pb_sub(&b, 16, &in);
	pb_free(&in);
	int s[BOMBS];
	for (int i = 0; i < BOMBS; i++) {
		s[i] = wire_req_open(broker_url(G.b));
		wire_ping_latency(s[i], 1); /* connected */
	}
	for (int i = 0; i < BOMBS; i++)
		assert_true(nn_send(s[i], b.p, b.n, 0) == (int)b.n);
	for (int i = 0; i < BOMBS; i++) {
		int to = 20000;
		nn_setsockopt(s[i], NN_SOL_SOCKET, NN_RCVTIMEO, &to, sizeof to);
		void *msg = NULL;
		int n = nn_recv(s[i], &msg, NN_MSG, 0);
		if (n < 0)
			fail_msg("bomb %d: no reply", i);
		WReply *r = handoff__wire__reply__unpack(NULL, (size_t)n, msg);
		nn_freemsg(msg);
		assert_non_null(r);
		if (r->status != WST(BAD_REQUEST) ||
		    !strstr(r->message, "malformed request"))
			fail_msg("bomb %d: %s \"%s\"", i,
				 wire_status_name((int)r->status), r->message);
		wire_reply_free(r);
		wire_req_close(s[i]);
	}
	pb_free(&b);
}

static long bombs_rss0;

static void test_concurrent_bombs(void **state)
{
	(void)state;
	long hwm0 = wire_proc_kb(G.b->pid, "VmHWM");
	bombs_rss0 = wire_proc_kb(G.b->pid, "VmRSS");
	CLASS(cls_concurrent_bombs, "16 concurrent decode bombs");
	long hwm = wire_proc_kb(G.b->pid, "VmHWM");
	fprintf(stderr,
		"hostile: %d concurrent 1.8 MB decode bombs: broker "
		"VmHWM %ld -> %ld KiB (+%ld KiB for %d x %zu KiB sent)\n",
		BOMBS, hwm0, hwm, hwm - hwm0, BOMBS, (size_t)1800);
}

/*
 * KNOWN BROKER BUG: the memory a burst of large requests took while being
 * decoded is freed at the next turn (arena_reset), but glibc keeps most of
 * it in the store thread's heap: after the 16 bombs above the broker's RSS
 * stays ~200 MB up for good (with the default max_request of 16 MiB a
 * single turn may decode 64 MiB × 16). Fix: malloc_trim(0) after a turn
 * whose arena grew past a few tens of MB (broker/loop.c turn(); see the
 * report).
 */
static void test_bug_decode_burst_memory_kept(void **state)
{
	(void)state;
	long limit = bombs_rss0 + (WIRE_ASAN ? 256 * 1024 : 32 * 1024);
	long rss = wire_rss_settle(G.b->pid, limit, 5000);
	fprintf(stderr,
		"hostile: RSS %ld KiB before the bombs, %ld KiB 5 s "
		"after\n",
		bombs_rss0, rss);
	if (rss > limit)
		fail_msg(
			"BROKER BUG: RSS stays at %ld KiB after a burst of "
			"decode bombs (was %ld KiB): freed arena memory is not "
			"given back (loop.c turn: malloc_trim)",
			rss, bombs_rss0);
}

/* ==== 7. names =========================================================== */

/*
 * Conventions: "A *name* (topic, subscription) is 1..`max_name` bytes
 * (default 200) of `[A-Za-z0-9._:/-]`." §5.2: "`BAD_REQUEST` | "topic must
 * be 1-N bytes of [A-Za-z0-9._:/-]"; the same for "subscription""; the
 * same row in §5.3 (unsubscribe), §5.5 (publish), §5.6 (fetch), §5.7 (ack),
 * §5.8 (nack) and §5.9 (every dead-letter request). §5.6: "`BAD_REQUEST` |
 * "consumer must be 1-256 bytes"".
 */
static void cls_names(void)
{
	char *long201 = repeat('n', 201), *long200 = repeat('n', 200);
	char *long1000 = repeat('x', 1000);
	const char *bad[] = {
		"",	long201,    long1000,	   "a b",  "a*",   "a\n",
		"a\tb", "\xc3\xa9", "caf\xc3\xa9", "a%41", "a#b",  "a@b",
		"a,b",	"\x7f",	    "a;b",	   "a|b",  "a\"b", "a'b",
		"a\\b", "a?b",	    "a+b",	   "\x01", "a\rb", "<script>",
		"a=b",	"\xff\xfe", "a b c ",
	};
	const uint64_t one = 1;
	char what[128];
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *nm = bad[i];
		int shown = (int)(strlen(nm) > 12 ? 12 : strlen(nm));
#define W(kind)                                                           \
	(snprintf(what, sizeof what, "%s with name #%zu '%.*s'", kind, i, \
		  shown, nm),                                             \
	 what)
		subscribe_req(nm, "ok-sub", NULL, WST(BAD_REQUEST),
			      "topic " NAME_RULE, W("subscribe topic"));
		subscribe_req("t", nm, NULL, WST(BAD_REQUEST),
			      "subscription " NAME_RULE, W("subscribe name"));

		Handoff__Wire__UnsubscribeRequest u =
			HANDOFF__WIRE__UNSUBSCRIBE_REQUEST__INIT;
		u.subscription = (char *)nm;
		WRequest r = req_v1();
		r.body_case = HANDOFF__WIRE__REQUEST__BODY_UNSUBSCRIBE;
		r.unsubscribe = &u;
		expect1(&r, WST(BAD_REQUEST), "subscription " NAME_RULE,
			W("unsubscribe"));

		Handoff__Wire__PublishEvent e =
			HANDOFF__WIRE__PUBLISH_EVENT__INIT;
		e.idempotency_key = "name-probe";
		Handoff__Wire__PublishEvent *ep = &e;
		Handoff__Wire__PublishRequest p =
			HANDOFF__WIRE__PUBLISH_REQUEST__INIT;
		p.topic = (char *)nm;
		p.n_events = 1;
		p.events = &ep;
		r = req_v1();
		r.body_case = HANDOFF__WIRE__REQUEST__BODY_PUBLISH;
		r.publish = &p;
		expect1(&r, WST(BAD_REQUEST), "topic " NAME_RULE, W("publish"));

		wire_reply_free(
			fetch_req(nm, "c", 1, 0, 0, 0, 1, WST(BAD_REQUEST),
				  "subscription " NAME_RULE, W("fetch")));
		wire_reply_free(ack_req(nm, &G.ev_dead, &one, 1,
					WST(BAD_REQUEST),
					"subscription " NAME_RULE, W("ack")));
		nack_spec ns = { .ev = G.ev_dead, .tok = 1 };
		wire_reply_free(nack_req(nm, &ns, 1, WST(BAD_REQUEST),
					 "subscription " NAME_RULE, W("nack")));
		wire_reply_free(dlq_req(DLQ_LIST, nm, NULL, 0, 0, false, false,
					0, WST(BAD_REQUEST),
					"subscription " NAME_RULE,
					W("dlq_list")));
		wire_reply_free(dlq_req(DLQ_SHOW, nm, NULL, 0, 0, false, false,
					G.ev_dead, WST(BAD_REQUEST),
					"subscription " NAME_RULE,
					W("dlq_show")));
		wire_reply_free(dlq_req(DLQ_REPLAY, nm, &G.ev_dead, 1, 0, false,
					false, 0, WST(BAD_REQUEST),
					"subscription " NAME_RULE,
					W("dlq_replay")));
		wire_reply_free(dlq_req(DLQ_PURGE, nm, &G.ev_dead, 1, 0, false,
					true, 0, WST(BAD_REQUEST),
					"subscription " NAME_RULE,
					W("dlq_purge")));
#undef W
	}
	/* 200 bytes is a name: it passes the check and is simply unknown */
	wire_reply_free(fetch_req(long200, "c", 1, 0, 0, 0, 1, WST(NOT_FOUND),
				  "no subscription",
				  "fetch on a 200-byte name"));
	wire_reply_free(dlq_req(DLQ_LIST, long200, NULL, 0, 0, false, false, 0,
				WST(NOT_FOUND), "no subscription",
				"dlq_list on a 200-byte name"));
	/* Conventions: "anything after a NUL byte is ignored" */
	pb in = { 0 }, b = { 0 };
	pb_bytes(&in, 1, "nosuch\0sa", 9);
	pb_u(&b, 1, 1);
	pb_sub(&b, 18, &in);
	expect_bytes(&b, WST(NOT_FOUND), "no subscription 'nosuch'",
		     "dlq_list of 'nosuch\\0sa'");
	pb_free(&b);
	pb_free(&in);

	/* consumers: 1..256 bytes, any bytes */
	char *c257 = repeat('c', 257), *c256 = repeat('c', 256);
	wire_reply_free(fetch_req("sc", "", 1, 0, 0, 0, 1, WST(BAD_REQUEST),
				  "consumer must be 1-256 bytes",
				  "fetch with an empty consumer"));
	wire_reply_free(fetch_req("sc", c257, 1, 0, 0, 0, 1, WST(BAD_REQUEST),
				  "consumer must be 1-256 bytes",
				  "fetch with a 257-byte consumer"));
	WReply *rep = fetch_req("sc", c256, 1, 0, 0, 0, 1, WST(OK), NULL,
				"fetch with a 256-byte consumer (sc is empty)");
	assert_int_equal(rep->body_case, HANDOFF__WIRE__REPLY__BODY_FETCH);
	assert_int_equal(rep->fetch->n_deliveries, 0);
	wire_reply_free(rep);
	free(c257);
	free(c256);
	free(long200);
	free(long201);
	free(long1000);
}

static void test_names(void **state)
{
	(void)state;
	CLASS(cls_names, "bad names");
}

/* §5.5 PublishEvent: "`payload` | 0..`max_payload`", "`key` | 0..1024
 * bytes", "`headers` | ≤ 64 …; name 1..256 bytes, value 0..4096 bytes",
 * "`idempotency_key` | **required**, 1..256 bytes"; status rows quoted
 * below. "the events are checked in order": a bad second event refuses
 * the whole batch, so the good first one is not stored either. */
static void publish_events(Handoff__Wire__PublishEvent *bad, int status,
			   const char *needle, const char *what)
{
	Handoff__Wire__PublishEvent good = HANDOFF__WIRE__PUBLISH_EVENT__INIT;
	good.payload.data = (uint8_t *)"fine";
	good.payload.len = 4;
	good.idempotency_key = "good-first";
	Handoff__Wire__PublishEvent *ep[2] = { &good, bad };
	Handoff__Wire__PublishRequest p = HANDOFF__WIRE__PUBLISH_REQUEST__INIT;
	p.topic = "t";
	p.n_events = 2;
	p.events = ep;
	WRequest r = req_v1();
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_PUBLISH;
	r.publish = &p;
	expect1(&r, status, needle, what);
}

static void cls_event_fields(void)
{
	char *k257 = repeat('k', 257), *k1025 = repeat('k', 1025);
	char *v4097 = repeat('v', 4097);
	uint8_t *big = calloc(1, MAX_PAYLOAD + 1);
	assert_non_null(big);
	Handoff__Wire__PublishEvent e = HANDOFF__WIRE__PUBLISH_EVENT__INIT;

	/* "`LIMIT_EXCEEDED` | "event I: payload of N bytes exceeds
	 * max_payload M"" */
	e.payload.data = big;
	e.payload.len = MAX_PAYLOAD + 1;
	e.idempotency_key = "big";
	publish_events(
		&e, WST(LIMIT_EXCEEDED),
		"event 1: payload of 65537 bytes exceeds max_payload 65536",
		"payload over max_payload");
	/* "`BAD_REQUEST` | "event I: idempotency_key must be 1-256 bytes"" */
	handoff__wire__publish_event__init(&e);
	publish_events(&e, WST(BAD_REQUEST),
		       "event 1: idempotency_key must be 1-256 bytes",
		       "no idempotency key");
	e.idempotency_key = k257;
	publish_events(&e, WST(BAD_REQUEST),
		       "event 1: idempotency_key must be 1-256 bytes",
		       "a 257-byte idempotency key");
	/* "`BAD_REQUEST` | "event I: key longer than 1024 bytes"" */
	e.idempotency_key = "k";
	e.key = k1025;
	publish_events(&e, WST(BAD_REQUEST),
		       "event 1: key longer than 1024 bytes",
		       "a 1025-byte key");
	e.key = "";
	/* "`BAD_REQUEST` | "event I: more than 64 headers"" */
	Handoff__Wire__Header h[65];
	Handoff__Wire__Header *hp[65];
	for (int i = 0; i < 65; i++) {
		handoff__wire__header__init(&h[i]);
		h[i].name = "h";
		h[i].value = "v";
		hp[i] = &h[i];
	}
	e.n_headers = 65;
	e.headers = hp;
	publish_events(&e, WST(BAD_REQUEST), "event 1: more than 64 headers",
		       "65 headers");
	/* "`BAD_REQUEST` | "event I: header H: name must be 1-256 bytes, value
	 * at most 4096"" */
	e.n_headers = 3;
	h[2].name = "";
	publish_events(&e, WST(BAD_REQUEST),
		       "event 1: header 2: name must be 1-256 bytes",
		       "an empty header name");
	h[2].name = k257;
	publish_events(&e, WST(BAD_REQUEST),
		       "event 1: header 2: name must be 1-256 bytes",
		       "a 257-byte header name");
	h[2].name = "h";
	h[2].value = v4097;
	publish_events(&e, WST(BAD_REQUEST), "value at most 4096",
		       "a 4097-byte header value");
	/* "`BAD_REQUEST` | "publish carries no events"" */
	Handoff__Wire__PublishRequest p = HANDOFF__WIRE__PUBLISH_REQUEST__INIT;
	p.topic = "t";
	WRequest r = req_v1();
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_PUBLISH;
	r.publish = &p;
	expect1(&r, WST(BAD_REQUEST), "publish carries no events",
		"a publish of no events");
	free(k257);
	free(k1025);
	free(v4097);
	free(big);
}

static void test_event_fields(void **state)
{
	(void)state;
	CLASS(cls_event_fields, "bad event fields");
}

/* ==== 8. invalid policies ================================================ */

/*
 * §5.2: "The broker first fills in the defaults, then checks the
 * *effective* policy: `max_attempts` ≤ 10000, `ack_deadline_ms` ≤ 24 h,
 * `backoff_max_ms` ≤ 24 h, and `backoff_min_ms` ≤ `backoff_max_ms`. So
 * `backoff_min_ms = 120000` with a 0 max fails against the default max of
 * 60 s." Rows: "`BAD_REQUEST` | "max_attempts must be 1-10000", "ack_deadline
 * must be at most 24h", "backoff max must be at most 24h", "backoff min
 * must not exceed backoff max""; "`CONFLICT` | the name exists with another
 * effective policy". A 0 field means the default (tested separately: it
 * creates a subscription).
 */
static void cls_policies(void)
{
	static const struct {
		Handoff__Wire__Policy pol;
		const char *needle;
	} cases[] = {
		{ { PROTOBUF_C_MESSAGE_INIT(&handoff__wire__policy__descriptor),
		    10001, 0, 0, 0 },
		  "max_attempts must be 1-10000" },
		{ { PROTOBUF_C_MESSAGE_INIT(&handoff__wire__policy__descriptor),
		    0xffffffffu, 0, 0, 0 },
		  "max_attempts must be 1-10000" },
		{ { PROTOBUF_C_MESSAGE_INIT(&handoff__wire__policy__descriptor),
		    0, DAY_MS + 1, 0, 0 },
		  "ack_deadline must be at most 24h" },
		{ { PROTOBUF_C_MESSAGE_INIT(&handoff__wire__policy__descriptor),
		    0, 0xffffffffu, 0, 0 },
		  "ack_deadline must be at most 24h" },
		{ { PROTOBUF_C_MESSAGE_INIT(&handoff__wire__policy__descriptor),
		    0, 0, 0, DAY_MS + 1 },
		  "backoff max must be at most 24h" },
		{ { PROTOBUF_C_MESSAGE_INIT(&handoff__wire__policy__descriptor),
		    0, 0, 0xffffffffu, 0xffffffffu },
		  "backoff max must be at most 24h" },
		{ { PROTOBUF_C_MESSAGE_INIT(&handoff__wire__policy__descriptor),
		    0, 0, 5000, 1000 },
		  "backoff min must not exceed backoff max" },
		{ { PROTOBUF_C_MESSAGE_INIT(&handoff__wire__policy__descriptor),
		    0, 0, 120000, 0 },
		  "backoff min must not exceed backoff max" },
		{ { PROTOBUF_C_MESSAGE_INIT(&handoff__wire__policy__descriptor),
		    0, 0, 0xffffffffu, 0 },
		  "backoff min must not exceed backoff max" },
		{ { PROTOBUF_C_MESSAGE_INIT(&handoff__wire__policy__descriptor),
		    10000, DAY_MS, DAY_MS, DAY_MS + 1 },
		  "backoff max must be at most 24h" },
	};
	char what[96];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(what, sizeof what, "policy case %zu", i);
		subscribe_req("t-pol", "pol-sub", &cases[i].pol,
			      WST(BAD_REQUEST), cases[i].needle, what);
		/* an existing name is refused the same way, not CONFLICT */
		subscribe_req("t", "sa", &cases[i].pol, WST(BAD_REQUEST),
			      cases[i].needle, what);
	}
	/* sa exists with (5, 120000, 100, 1000): another policy conflicts */
	Handoff__Wire__Policy other = HANDOFF__WIRE__POLICY__INIT;
	other.max_attempts = 6;
	subscribe_req("t", "sa", &other, WST(CONFLICT),
		      "exists with another policy", "sa with another policy");
	subscribe_req("t2", "sa", NULL, WST(CONFLICT), "exists on topic 't'",
		      "sa on another topic");
}

static void test_invalid_policies(void **state)
{
	(void)state;
	CLASS(cls_policies, "invalid policies");
	/* "a 0 field (or no policy) takes the broker default" */
	Handoff__Wire__Policy zero = HANDOFF__WIRE__POLICY__INIT;
	Handoff__Wire__SubscribeRequest s =
		HANDOFF__WIRE__SUBSCRIBE_REQUEST__INIT;
	s.topic = "t-pol";
	s.subscription = "pol-zero";
	s.policy = &zero;
	WRequest r = req_v1();
	r.body_case = HANDOFF__WIRE__REQUEST__BODY_SUBSCRIBE;
	r.subscribe = &s;
	WReply *rep = expect(&r, WST(OK), NULL, "an all-zero policy");
	assert_int_equal(rep->body_case, HANDOFF__WIRE__REPLY__BODY_SUBSCRIBE);
	assert_true(rep->subscribe->created);
	assert_int_equal(rep->subscribe->policy->max_attempts, 5);
	assert_int_equal(rep->subscribe->policy->ack_deadline_ms, 120000);
	assert_int_equal(rep->subscribe->policy->backoff_min_ms, 1000);
	assert_int_equal(rep->subscribe->policy->backoff_max_ms, 60000);
	wire_reply_free(rep);
	assert_int_equal(handoff_unsubscribe(G.ctl, "pol-zero"), HANDOFF_OK);
}

/* ==== 9. acks and nacks that touch nothing =============================== */

/*
 * §5.7 item statuses: "`LEASE_LOST` | not leased under this token: the
 * lease expired or was nacked, the delivery was leased again, it is dead,
 * or the token is 0"; "`NOT_FOUND` | no delivery of this event for this
 * subscription (wrong id, …)". Request statuses: "`BAD_REQUEST` | "ack
 * carries no items"", "`NOT_FOUND` | "no subscription 'S'"". §5.8:
 * "`BAD_REQUEST` | "item I: reason longer than 4096 bytes"", "`BAD_REQUEST`
 * | "item I: delay longer than 24h"" (the whole request: no item is
 * applied). §6: "Only ack or nack with the current token of a `LEASED`
 * delivery acts on it; anything else gets `LEASE_LOST`."
 * The event is leased in sa; sb (same topic) holds it READY; sc (another
 * topic) has no delivery of it.
 */
static uint64_t A_EV, A_TOK;

static void cls_acks(void)
{
	const uint64_t ev = A_EV, tok = A_TOK;
	const int LL = WST(LEASE_LOST), NF = WST(NOT_FOUND);
	uint64_t e1[1], t1[1];
	int want[4];
#define ACK1(sub, e, t, st, what)                                          \
	do {                                                               \
		e1[0] = (e);                                               \
		t1[0] = (t);                                               \
		want[0] = (st);                                            \
		assert_items(ack_req(sub, e1, t1, 1, WST(OK), NULL, what), \
			     want, 1, what);                               \
	} while (0)
	ACK1("sa", 999999, tok, NF, "ack of an event that does not exist");
	ACK1("sa", UINT64_MAX, tok, NF, "ack of event 2^64-1");
	ACK1("sa", 0, 0, NF, "ack of event 0");
	ACK1("sa", ev, tok + 1, LL, "ack with a wrong token");
	ACK1("sa", ev, tok ^ (1ull << 63), LL, "ack with a flipped top bit");
	ACK1("sa", ev, 0, LL, "ack with token 0");
	ACK1("sb", ev, tok, LL, "ack in sb with sa's token");
	ACK1("sb", ev, 0, LL, "ack in sb with token 0");
	ACK1("sc", ev, tok, NF, "ack in sc (other topic) with sa's token");
	ACK1("sa", G.ev_dead, 0, LL, "ack of a dead letter, token 0");
	ACK1("sa", G.ev_dead, tok, LL, "ack of a dead letter, another token");
#undef ACK1
	/* a batch mixing them: each item judged alone */
	uint64_t ev4[4] = { ev, ev, 999999, G.ev_dead };
	uint64_t tok4[4] = { tok + 1, 0, tok, tok };
	int want4[4] = { LL, LL, NF, LL };
	assert_items(ack_req("sa", ev4, tok4, 4, WST(OK), NULL, "mixed ack"),
		     want4, 4, "mixed ack");

	nack_spec n1 = { .ev = ev, .tok = tok };
	want[0] = LL;
	assert_items(nack_req("sb", &n1, 1, WST(OK), NULL,
			      "nack in sb with sa's token"),
		     want, 1, "nack in sb with sa's token");
	n1.permanent = true;
	assert_items(nack_req("sb", &n1, 1, WST(OK), NULL,
			      "permanent nack in sb with sa's token"),
		     want, 1, "permanent nack in sb");
	want[0] = NF;
	assert_items(nack_req("sc", &n1, 1, WST(OK), NULL,
			      "nack in sc with sa's token"),
		     want, 1, "nack in sc with sa's token");
	n1 = (nack_spec){ .ev = ev, .tok = tok + 1, .permanent = true };
	want[0] = LL;
	assert_items(nack_req("sa", &n1, 1, WST(OK), NULL,
			      "permanent nack with a wrong token"),
		     want, 1, "permanent nack with a wrong token");

	/* request-level refusals carrying the right token: not applied */
	nack_spec far = { .ev = ev, .tok = tok, .delay = DAY_MS + 1 };
	wire_reply_free(nack_req("sa", &far, 1, WST(BAD_REQUEST),
				 "item 0: delay longer than 24h",
				 "nack delayed 24h + 1 ms"));
	far.delay = 0xffffffffu;
	wire_reply_free(nack_req("sa", &far, 1, WST(BAD_REQUEST),
				 "item 0: delay longer than 24h",
				 "nack delayed 2^32-1 ms"));
	char *r4097 = repeat('r', 4097);
	nack_spec wordy = { .ev = ev, .tok = tok, .reason = r4097 };
	wire_reply_free(nack_req("sa", &wordy, 1, WST(BAD_REQUEST),
				 "item 0: reason longer than 4096 bytes",
				 "nack with a 4097-byte reason"));
	free(r4097);
	nack_spec two[2] = { { .ev = ev, .tok = tok, .permanent = true },
			     { .ev = ev, .tok = tok, .delay = DAY_MS + 1 } };
	wire_reply_free(nack_req("sa", two, 2, WST(BAD_REQUEST),
				 "item 1: delay longer than 24h",
				 "a valid nack item before a bad one"));
	wire_reply_free(ack_req("sa", NULL, NULL, 0, WST(BAD_REQUEST),
				"ack carries no items", "an ack of no items"));
	wire_reply_free(nack_req("sa", NULL, 0, WST(BAD_REQUEST),
				 "nack carries no items",
				 "a nack of no items"));
	uint64_t tk = tok;
	wire_reply_free(ack_req("nosuch", &ev, &tk, 1, WST(NOT_FOUND),
				"no subscription 'nosuch'",
				"ack in an unknown subscription"));
	wire_reply_free(nack_req("nosuch", &n1, 1, WST(NOT_FOUND),
				 "no subscription 'nosuch'",
				 "nack in an unknown subscription"));
}

static void assert_lease_intact(uint64_t ev, uint64_t deadline)
{
	handoff_trace *t = NULL;
	handoff_subscription_trace *a = it_trace_sub(G.ctl, ev, "sa", &t);
	assert_int_equal(a->state, HANDOFF_STATE_LEASED);
	assert_int_equal(a->lease_deadline_ms, deadline);
	assert_int_equal(a->n_history, 1);
	assert_int_equal(a->history[0].outcome, HANDOFF_OUTCOME_LEASED);
	assert_int_equal(a->history[0].ended_ms, 0);
	handoff_subscription_trace *b = it_trace_find(t, "sb");
	assert_int_equal(b->state, HANDOFF_STATE_READY);
	assert_int_equal(b->n_history, 0);
	assert_int_equal(t->n_subscriptions, 2);
	handoff_trace_free(t);
}

static void test_acks_nacks(void **state)
{
	(void)state;
	A_EV = lease_one("ack-target", &A_TOK);
	handoff_trace *t = NULL;
	uint64_t deadline =
		it_trace_sub(G.ctl, A_EV, "sa", &t)->lease_deadline_ms;
	handoff_trace_free(t);
	CLASS(cls_acks, "foreign acks and nacks");
	assert_lease_intact(A_EV, deadline);
	/* the real lease holder can still ack */
	assert_int_equal(it_ack1(G.ctl, "sa", A_EV, A_TOK), HANDOFF_OK);
	handoff_subscription_trace *a = it_trace_sub(G.ctl, A_EV, "sa", &t);
	assert_int_equal(a->state, HANDOFF_STATE_ACKED);
	assert_int_equal(it_trace_find(t, "sb")->state, HANDOFF_STATE_READY);
	handoff_trace_free(t);
	/* and a repeat of that ack is OK again (§3), the foreign ones still
	 * are not */
	assert_int_equal(it_ack1(G.ctl, "sa", A_EV, A_TOK), HANDOFF_OK);
	assert_int_equal(it_ack1(G.ctl, "sb", A_EV, A_TOK), HANDOFF_ELEASELOST);
}

/* ==== 10. dead-letter operations on what is not there ==================== */

/*
 * §5.9: "Every dead-letter request names a `subscription`. An invalid name
 * gets `BAD_REQUEST`, and an unknown one gets `NOT_FOUND` "no subscription
 * 'S'"." §5.11: "`NOT_FOUND` | "event N is not in the dead-letter queue of
 * 'S'"". §5.12: "`BAD_REQUEST` | purge only: "purge without event ids needs
 * all=true"", "`missing` | requested ids that are not dead letters of this
 * subscription". §5.13: "`NOT_FOUND` | "no record of event N …"". §5.3:
 * "`NOT_FOUND` | "no subscription 'S'"".
 */
static void cls_dlq(void)
{
	const char *nf = "no subscription 'nosuch'";
	wire_reply_free(dlq_req(DLQ_LIST, "nosuch", NULL, 0, 0, false, false, 0,
				WST(NOT_FOUND), nf, "dlq_list nosuch"));
	wire_reply_free(dlq_req(DLQ_SHOW, "nosuch", NULL, 0, 0, false, false,
				G.ev_dead, WST(NOT_FOUND), nf,
				"dlq_show nosuch"));
	wire_reply_free(dlq_req(DLQ_REPLAY, "nosuch", &G.ev_dead, 1, 0, false,
				false, 0, WST(NOT_FOUND), nf,
				"dlq_replay nosuch"));
	wire_reply_free(dlq_req(DLQ_REPLAY, "nosuch", NULL, 0, 0, false, false,
				0, WST(NOT_FOUND), nf,
				"dlq_replay nosuch by filter"));
	wire_reply_free(dlq_req(DLQ_PURGE, "nosuch", &G.ev_dead, 1, 0, false,
				false, 0, WST(NOT_FOUND), nf,
				"dlq_purge nosuch"));
	wire_reply_free(dlq_req(DLQ_PURGE, "nosuch", NULL, 0, 0, false, true, 0,
				WST(NOT_FOUND), nf, "dlq_purge nosuch all"));
	/* a subscription that exists on another topic: its own queue only */
	wire_reply_free(dlq_req(DLQ_SHOW, "sb", NULL, 0, 0, false, false,
				G.ev_dead, WST(NOT_FOUND),
				"is not in the dead-letter queue of 'sb'",
				"dlq_show of sa's dead letter in sb"));
	wire_reply_free(dlq_req(DLQ_SHOW, "sa", NULL, 0, 0, false, false,
				999999, WST(NOT_FOUND),
				"event 999999 is not in the dead-letter queue "
				"of 'sa'",
				"dlq_show of an unknown event"));
	wire_reply_free(dlq_req(DLQ_PURGE, "sa", NULL, 0, 0, false, false, 0,
				WST(BAD_REQUEST),
				"purge without event ids needs all=true",
				"purge by filter without all"));
	/* ids that are not dead letters here: reported missing, none acted on */
	uint64_t ids[3] = { 999999, G.ev_dead, UINT64_MAX };
	for (int k = DLQ_REPLAY; k <= DLQ_PURGE; k++) {
		WReply *r = dlq_req((enum dlq_kind)k, "sb", ids, 3, 0, false,
				    false, 0, WST(OK), NULL,
				    "dlq action on sb's non-dead ids");
		assert_int_equal(r->body_case,
				 HANDOFF__WIRE__REPLY__BODY_DLQ_ACTION);
		assert_int_equal(r->dlq_action->n_event_ids, 0);
		assert_int_equal(r->dlq_action->n_missing, 3);
		wire_reply_free(r);
	}
	/* a dry run in sa names the dead letter, and changes nothing */
	WReply *r = dlq_req(DLQ_PURGE, "sa", NULL, 0, 0, true, false, 0,
			    WST(OK), NULL, "dry-run purge by filter");
	assert_int_equal(r->dlq_action->n_event_ids, 1);
	assert_int_equal(r->dlq_action->event_ids[0], G.ev_dead);
	wire_reply_free(r);

	Handoff__Wire__TraceRequest tq = HANDOFF__WIRE__TRACE_REQUEST__INIT;
	WRequest q = req_v1();
	q.body_case = HANDOFF__WIRE__REQUEST__BODY_TRACE;
	q.trace = &tq;
	const uint64_t evs[] = { 0, 999999, UINT64_MAX };
	for (size_t i = 0; i < 3; i++) {
		tq.event_id = evs[i];
		expect1(&q, WST(NOT_FOUND), "no record of event",
			"trace of an unknown event");
	}
	Handoff__Wire__UnsubscribeRequest u =
		HANDOFF__WIRE__UNSUBSCRIBE_REQUEST__INIT;
	u.subscription = "nosuch";
	q = req_v1();
	q.body_case = HANDOFF__WIRE__REQUEST__BODY_UNSUBSCRIBE;
	q.unsubscribe = &u;
	expect1(&q, WST(NOT_FOUND), nf, "unsubscribe nosuch");
	wire_reply_free(fetch_req("nosuch", "c", 1, 0, 0, 0, 1, WST(NOT_FOUND),
				  nf, "fetch nosuch"));
	wire_reply_free(fetch_req("nosuch", "c", 1, 1000, 0, 0, 1,
				  WST(NOT_FOUND), nf,
				  "long-poll fetch on nosuch"));
}

static void test_dlq_unknown(void **state)
{
	(void)state;
	CLASS(cls_dlq, "dead-letter requests on nothing");
	assert_true(it_dlq_has(G.ctl, "sa", G.ev_dead));
}

/* ==== known bug: the fetch resend cache skips the checks of §1 =========== */

/*
 * KNOWN BROKER BUG. §1: "The broker checks requests in this order, before
 * anything else happens: … 2. `protocol_version` ≠ 1 … →
 * `UNSUPPORTED_VERSION` … This check comes before the body is looked at."
 * broker/loop.c receive_batch() looks a fetch up in the resend cache (and
 * in the held fetches) by consumer + fetch_seq before any check, so a
 * "resend" at another protocol version, or naming an invalid (or another)
 * subscription, is answered OK with the cached deliveries — payloads and
 * lease tokens — of the original fetch. Fix: consult the cache only for
 * version-1 requests whose subscription matches the cached one (see the
 * report).
 */
static void test_bug_fetch_cache_skips_checks(void **state)
{
	(void)state;
	it_subscribe(G.ctl, "tf", "sf", 5, 120000, 100, 1000);
	it_publish1(G.ctl, "tf", "cached", NULL, "cache-1");
	WReply *r = fetch_req("sf", "cache-consumer", 5, 0, 0, 7, 1, WST(OK),
			      NULL, "the original fetch");
	assert_int_equal(r->fetch->n_deliveries, 1);
	wire_reply_free(r);
	/* an identical resend gets the same reply (§3): correct */
	r = fetch_req("sf", "cache-consumer", 5, 0, 0, 7, 1, WST(OK), NULL,
		      "an identical resend");
	assert_int_equal(r->fetch->n_deliveries, 1);
	wire_reply_free(r);

	Handoff__Wire__FetchRequest f = HANDOFF__WIRE__FETCH_REQUEST__INIT;
	f.subscription = "sf";
	f.consumer = "cache-consumer";
	f.max_events = 5;
	f.fetch_seq = 7;
	WRequest q = req_v1();
	q.protocol_version = 2;
	q.body_case = HANDOFF__WIRE__REQUEST__BODY_FETCH;
	q.fetch = &f;
	r = wire_call(G.req, &q, 10000);
	assert_non_null(r);
	int st_version = (int)r->status;
	wire_reply_free(r);
	f.subscription = "not a valid name!";
	q.protocol_version = 1;
	r = wire_call(G.req, &q, 10000);
	assert_non_null(r);
	int st_name = (int)r->status;
	size_t leaked = r->body_case == HANDOFF__WIRE__REPLY__BODY_FETCH ?
				r->fetch->n_deliveries :
				0;
	wire_reply_free(r);
	control_ok("fetch-cache probes");
	if (st_version != WST(UNSUPPORTED_VERSION))
		fprintf(stderr,
			"BROKER BUG: a fetch at protocol version 2 got "
			"%s (the cached reply) instead of UNSUPPORTED_VERSION "
			"(loop.c receive_batch: cache before version check)\n",
			wire_status_name(st_version));
	if (st_name != WST(BAD_REQUEST))
		fprintf(stderr,
			"BROKER BUG: a fetch naming subscription 'not a "
			"valid name!' got %s with %zu cached deliveries instead "
			"of BAD_REQUEST (loop.c receive_batch)\n",
			wire_status_name(st_name), leaked);
	if (st_version != WST(UNSUPPORTED_VERSION) ||
	    st_name != WST(BAD_REQUEST))
		fail_msg(
			"BROKER BUG: the fetch resend cache answers before the "
			"checks of PROTOCOL.md §1 (see above)");
}

/*
 * KNOWN BROKER BUG, with access control on: the resend cache is keyed by
 * consumer + fetch_seq only, and is consulted after the permission check
 * of the *request's* subscription. A key allowed to consume only "public"
 * that names another client's consumer and fetch_seq receives that
 * client's cached deliveries from "billing" — payloads and lease tokens —
 * across the permission boundary (§1.1: a consumer key fetches only
 * "subscriptions matching its `subscriptions` patterns"). Consumer names
 * are NAME:6-hex-digits and fetch_seq counts 1, 2, 3…, and a cache hit
 * is answered without a commit, so guessing is cheap. The same lookup in
 * the held fetches lets such a request take over a victim's long poll.
 */
#define HEX_OPS \
	"3333333333333333333333333333333333333333333333333333333333333333"
#define HEX_BILLING \
	"2222222222222222222222222222222222222222222222222222222222222222"
#define HEX_PUB \
	"1111111111111111111111111111111111111111111111111111111111111111"
#define HEX_MALLORY \
	"4444444444444444444444444444444444444444444444444444444444444444"

static const char ACL_CONFIG[] = "[defaults]\n"
				 "ack_deadline = 120s\n"
				 "[access]\n"
				 "request_window = 60s\n"
				 "[key ops]\n"
				 "role = operator\n"
				 "secret = " HEX_OPS "\n"
				 "[key pub]\n"
				 "role = producer\n"
				 "secret = " HEX_PUB "\n"
				 "topics = *\n"
				 "[key billing]\n"
				 "role = consumer\n"
				 "secret = " HEX_BILLING "\n"
				 "subscriptions = billing\n"
				 "[key mallory]\n"
				 "role = consumer\n"
				 "secret = " HEX_MALLORY "\n"
				 "subscriptions = public\n";

static handoff_client *acl_connect(const broker *b, const char *key,
				   const char *hex, const char *consumer)
{
	unsigned char secret[32];
	assert_int_equal(handoff_parse_secret(hex, secret), HANDOFF_OK);
	handoff_options o = { .deadline_ms = 8000,
			      .consumer_name = consumer,
			      .key_id = key,
			      .secret = secret };
	handoff_client *c = NULL;
	assert_int_equal(handoff_connect(broker_url(b), &o, &c), HANDOFF_OK);
	return c;
}

static void test_bug_fetch_cache_crosses_keys(void **state)
{
	(void)state;
	broker *b = wire_broker_start_tcp(ACL_CONFIG, NULL);
	handoff_client *ops = acl_connect(b, "ops", HEX_OPS, "ops");
	handoff_client *pub = acl_connect(b, "pub", HEX_PUB, "pub");
	handoff_client *victim =
		acl_connect(b, "billing", HEX_BILLING, "billing-worker");
	it_subscribe(ops, "invoices", "billing", 5, 120000, 100, 1000);
	it_subscribe(ops, "news", "public", 5, 120000, 100, 1000);
	uint64_t ev = it_publish1(pub, "invoices", "secret invoice 42", NULL,
				  "inv-42");
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(victim, "billing", 1, 0, &d), 1);
	uint64_t token = d[0].lease_token;
	handoff_deliveries_free(d, 1);
	/* the victim's consumer name (traces show it to an operator; else
	 * NAME + 24 random bits to guess) and its first fetch_seq, 1 */
	handoff_trace *t = NULL;
	char consumer[300];
	snprintf(consumer, sizeof consumer, "%s",
		 it_trace_sub(ops, ev, "billing", &t)->consumer);
	handoff_trace_free(t);

	Handoff__Wire__FetchRequest f = HANDOFF__WIRE__FETCH_REQUEST__INIT;
	f.subscription = "public"; /* the only one mallory may consume */
	f.consumer = consumer;
	f.max_events = 10;
	f.fetch_seq = 1;
	WRequest q = req_v1();
	q.body_case = HANDOFF__WIRE__REQUEST__BODY_FETCH;
	q.fetch = &f;
	size_t len;
	uint8_t *buf = wire_sign(&q, "mallory", HEX_MALLORY, 0x5eed, 1,
				 it_wall_ms(), &len);
	int s = wire_req_open(broker_url(b));
	WReply *r = wire_call_bytes(s, buf, len, 10000);
	free(buf);
	wire_req_close(s);
	assert_non_null(r);
	bool leaked = false;
	uint64_t leaked_token = 0;
	char payload[64] = "";
	if (r->status == WST(OK) &&
	    r->body_case == HANDOFF__WIRE__REPLY__BODY_FETCH)
		for (size_t i = 0; i < r->fetch->n_deliveries; i++)
			if (r->fetch->deliveries[i]->event_id == ev) {
				leaked = true;
				leaked_token =
					r->fetch->deliveries[i]->lease_token;
				snprintf(payload, sizeof payload, "%.*s",
					 (int)r->fetch->deliveries[i]
						 ->payload.len,
					 (const char *)r->fetch->deliveries[i]
						 ->payload.data);
			}
	wire_reply_free(r);
	assert_int_equal(it_ack1(victim, "billing", ev, token), HANDOFF_OK);
	handoff_close(victim);
	handoff_close(pub);
	handoff_close(ops);
	wire_assert_broker_ok(b);
	broker_term(b);
	broker_passed(b);
	broker_cleanup(b);
	if (leaked)
		fail_msg(
			"BROKER BUG: key 'mallory' (may consume 'public' only) "
			"fetched subscription 'billing''s delivery of event "
			"%llu (payload \"%s\", lease token %s) from the resend "
			"cache by naming the victim's consumer and fetch_seq "
			"(loop.c receive_batch: cache keyed by consumer + seq "
			"only)",
			(unsigned long long)ev, payload,
			leaked_token == token ? "the victim's" : "another");
}

/* ==== RSS over repeated rounds =========================================== */

static void bad_round(void)
{
	cls_malformed();
	cls_unknown_body();
	cls_version();
	cls_counts();
	cls_names();
	cls_event_fields();
	cls_policies();
	cls_dlq();
}

static void test_rss_rounds(void **state)
{
	(void)state;
	pid_t pid = G.b->pid;
	bad_round(); /* warm-up: arenas, caches, allocator pools */
	bad_round();
	long warm = wire_proc_kb(pid, "VmRSS");
	long rss[5];
	uint64_t t0 = it_now_ms();
	for (int i = 0; i < 5; i++) {
		bad_round();
		rss[i] = wire_proc_kb(pid, "VmRSS");
	}
	/* A turn that decoded over 32 MB gives its memory back (malloc_trim,
	 * turn.c); under load a warm-up round can end on such a turn, and the
	 * next round grows the heap back once. A leak grows round after
	 * round: measure from the larger of the two. */
	long base = rss[0] > warm ? rss[0] : warm;
	long growth = rss[4] - base;
	/* Generous: each round pushes ~5 MB of bad requests through the
	 * broker; a leak of even 1% of that per round would show as > 5 MB
	 * over 5 rounds at the latest... ASan's quarantine (256 MB) holds
	 * freed memory back, so the bound is wider there. */
	long bound = WIRE_ASAN ? 256 * 1024 : 16 * 1024;
	fprintf(stderr,
		"hostile: RSS after warm-up %ld KiB; after rounds "
		"1-5: %ld %ld %ld %ld %ld KiB (growth %ld KiB, bound %ld); "
		"VmHWM %ld KiB; 5 rounds in %llu ms\n",
		warm, rss[0], rss[1], rss[2], rss[3], rss[4], growth, bound,
		wire_proc_kb(pid, "VmHWM"),
		(unsigned long long)(it_now_ms() - t0));
	if (growth > bound)
		fail_msg(
			"broker RSS grew by %ld KiB over 5 rounds of bad input",
			growth);
	control_ok("5 rounds of bad input");
}

/* ==== the end: alive, clean log, clean stop ============================= */

static void test_broker_survived(void **state)
{
	(void)state;
	wire_assert_broker_ok(G.b);
	assert_false(broker_log_contains(G.b, "event=reply_dropped"));
	/* the malformed ones were logged as such */
	assert_true(broker_log_contains(G.b, "event=request_malformed"));
	control_ok("everything");
	/* a normal client works end to end */
	uint64_t ev = it_publish1(G.ctl, "t2", "still fine", NULL, "final");
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(G.ctl, "sc", 1, 1000, &d), 1);
	assert_int_equal(d[0].event_id, ev);
	assert_int_equal(it_ack1(G.ctl, "sc", ev, d[0].lease_token),
			 HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	handoff_close(G.ctl);
	G.ctl = NULL;
	wire_req_close(G.req);
	wire_req_close(G.ctlreq);
	G.req = G.ctlreq = -1;
	broker_term(G.b); /* exit status 0 (and ASan's leak check) */
	broker_passed(G.b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_malformed_bytes),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_unknown_body),
		cmocka_unit_test(test_unsupported_version),
		cmocka_unit_test(test_huge_counts),
		cmocka_unit_test(test_concurrent_bombs),
		cmocka_unit_test(test_bug_decode_burst_memory_kept),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_event_fields),
		cmocka_unit_test(test_invalid_policies),
		cmocka_unit_test(test_acks_nacks),
		cmocka_unit_test(test_dlq_unknown),
		cmocka_unit_test(test_rss_rounds),
		cmocka_unit_test(test_bug_request_of_max_request_bytes),
		cmocka_unit_test(test_bug_fetch_cache_skips_checks),
		cmocka_unit_test(test_bug_fetch_cache_crosses_keys),
		cmocka_unit_test(test_broker_survived),
	};
	return cmocka_run_group_tests_name("hostile", tests, group_setup,
					   group_teardown);
}
