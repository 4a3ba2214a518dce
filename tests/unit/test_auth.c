/*
 * test_auth.c — access control (broker/auth.c) at its boundaries: which
 * MACs are accepted, the request_window edges in both directions, requests
 * signed before the broker started, the 64-wide replay window per
 * (key, session), and what each role may do to which names.
 *
 * Requests are built as a client sends them (packed without Auth, then the
 * Auth appended; proto/PROTOCOL.md §1.1) and decoded again before
 * auth_verify(), as the broker does. Tampered requests carry a MAC made
 * over other values than the ones they send.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "auth.h"
#include "request_mac.h"

#define ST(x) HANDOFF__WIRE__STATUS__##x

#define WINDOW_MS  60000u
#define STARTED_MS 10000000u
#define NOW_MS	   (STARTED_MS + 200000u) /* now - WINDOW is after the start */

/* "k0" and "k1" are one bit apart and share a secret: only the MAC's
 * cover of key_id tells a request of one from the other's. */
static const uint8_t SECRET_K[32] = { 0x10, 0x11, 0x12, 0x13, 0x14, 0x15 };
static const uint8_t SECRET_WORK[32] = { 0x20, 0x21, 0x22, 0x23 };
static const uint8_t SECRET_OPS[32] = { 0x30, 0x31, 0x32, 0x33 };
static const uint8_t SECRET_BOTH[32] = { 0x40, 0x41 };

enum { K0, K1, WORK, OPS, BOTH, BARE, MON, N_KEYS };

static struct config cfg;

static void add_key(int i, const char *id, unsigned roles,
		    const uint8_t secret[32])
{
	struct config_key *k = &cfg.keys[i];
	k->id = (char *)id;
	k->roles = roles;
	memcpy(k->secret, secret, sizeof k->secret);
	k->has_secret = 1;
}

static int setup(void **state)
{
	(void)state;
	memset(&cfg, 0, sizeof cfg);
	add_key(K0, "k0", ROLE_PRODUCER, SECRET_K);
	cfg.keys[K0].topics[cfg.keys[K0].n_topics++] = "orders.*";
	add_key(K1, "k1", ROLE_PRODUCER, SECRET_K);
	cfg.keys[K1].topics[cfg.keys[K1].n_topics++] = "orders.*";
	add_key(WORK, "work", ROLE_CONSUMER, SECRET_WORK);
	cfg.keys[WORK].subs[cfg.keys[WORK].n_subs++] = "billing-?";
	cfg.keys[WORK].subs[cfg.keys[WORK].n_subs++] = "audit";
	add_key(OPS, "ops", ROLE_OPERATOR, SECRET_OPS);
	/* patterns a config may give an operator; only a role uses them */
	cfg.keys[OPS].topics[cfg.keys[OPS].n_topics++] = "*";
	cfg.keys[OPS].subs[cfg.keys[OPS].n_subs++] = "*";
	add_key(BOTH, "both", ROLE_PRODUCER | ROLE_CONSUMER | ROLE_OPERATOR,
		SECRET_BOTH);
	cfg.keys[BOTH].topics[cfg.keys[BOTH].n_topics++] = "t.*";
	cfg.keys[BOTH].subs[cfg.keys[BOTH].n_subs++] = "s.*";
	add_key(BARE, "bare", ROLE_PRODUCER | ROLE_CONSUMER, SECRET_BOTH);
	add_key(MON, "prometheus", ROLE_MONITOR, SECRET_OPS);
	/* patterns do not widen a monitor */
	cfg.keys[MON].topics[cfg.keys[MON].n_topics++] = "*";
	cfg.keys[MON].subs[cfg.keys[MON].n_subs++] = "*";
	cfg.n_keys = N_KEYS;
	cfg.request_window_ms = WINDOW_MS;
	return 0;
}

/* ---- building requests ------------------------------------------------ */

/* Every body a request can have, so that any body case can be built. */
struct bodies {
	Handoff__Wire__PingRequest ping;
	Handoff__Wire__PublishRequest publish;
	Handoff__Wire__SubscribeRequest subscribe;
	Handoff__Wire__UnsubscribeRequest unsubscribe;
	Handoff__Wire__ListSubscriptionsRequest list;
	Handoff__Wire__FetchRequest fetch;
	Handoff__Wire__AckRequest ack;
	Handoff__Wire__NackRequest nack;
	Handoff__Wire__ExtendRequest extend;
	Handoff__Wire__DlqListRequest dlq_list;
	Handoff__Wire__DlqShowRequest dlq_show;
	Handoff__Wire__DlqActionRequest dlq_action;
	Handoff__Wire__TraceRequest trace;
	Handoff__Wire__StatsRequest stats;
	Handoff__Wire__AuditListRequest audit;
	Handoff__Wire__AwaitRequest await;
};

/* A request of body case bc naming name (the topic of a publish, the
 * subscription of a fetch, ack, nack or extend; other bodies name
 * nothing). */
static void build(Request *q, struct bodies *b,
		  Handoff__Wire__Request__BodyCase bc, const char *name)
{
	*b = (struct bodies){
		.ping = HANDOFF__WIRE__PING_REQUEST__INIT,
		.publish = HANDOFF__WIRE__PUBLISH_REQUEST__INIT,
		.subscribe = HANDOFF__WIRE__SUBSCRIBE_REQUEST__INIT,
		.unsubscribe = HANDOFF__WIRE__UNSUBSCRIBE_REQUEST__INIT,
		.list = HANDOFF__WIRE__LIST_SUBSCRIPTIONS_REQUEST__INIT,
		.fetch = HANDOFF__WIRE__FETCH_REQUEST__INIT,
		.ack = HANDOFF__WIRE__ACK_REQUEST__INIT,
		.nack = HANDOFF__WIRE__NACK_REQUEST__INIT,
		.extend = HANDOFF__WIRE__EXTEND_REQUEST__INIT,
		.dlq_list = HANDOFF__WIRE__DLQ_LIST_REQUEST__INIT,
		.dlq_show = HANDOFF__WIRE__DLQ_SHOW_REQUEST__INIT,
		.dlq_action = HANDOFF__WIRE__DLQ_ACTION_REQUEST__INIT,
		.trace = HANDOFF__WIRE__TRACE_REQUEST__INIT,
		.stats = HANDOFF__WIRE__STATS_REQUEST__INIT,
		.audit = HANDOFF__WIRE__AUDIT_LIST_REQUEST__INIT,
		.await = HANDOFF__WIRE__AWAIT_REQUEST__INIT,
	};
	*q = (Request)HANDOFF__WIRE__REQUEST__INIT;
	q->protocol_version = 1;
	q->body_case = bc;
	switch (bc) {
	case HANDOFF__WIRE__REQUEST__BODY_PING:
		q->ping = &b->ping;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_PUBLISH:
		b->publish.topic = (char *)name;
		q->publish = &b->publish;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_SUBSCRIBE:
		q->subscribe = &b->subscribe;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_UNSUBSCRIBE:
		q->unsubscribe = &b->unsubscribe;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_LIST_SUBSCRIPTIONS:
		q->list_subscriptions = &b->list;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_FETCH:
		b->fetch.subscription = (char *)name;
		q->fetch = &b->fetch;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_ACK:
		b->ack.subscription = (char *)name;
		q->ack = &b->ack;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_NACK:
		b->nack.subscription = (char *)name;
		q->nack = &b->nack;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_EXTEND:
		b->extend.subscription = (char *)name;
		q->extend = &b->extend;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_LIST:
		q->dlq_list = &b->dlq_list;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_SHOW:
		q->dlq_show = &b->dlq_show;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_REPLAY:
		q->dlq_replay = &b->dlq_action;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_PURGE:
		q->dlq_purge = &b->dlq_action;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_TRACE:
		q->trace = &b->trace;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_STATS:
		q->stats = &b->stats;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_AUDIT_LIST:
		q->audit_list = &b->audit;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_AWAIT:
		q->await = &b->await;
		break;
	default:
		fail_msg("no such body case %d", (int)bc);
	}
}

/* What an Auth carries, or what its MAC was made over. */
struct fields {
	const char *key_id;
	uint64_t session, seq, ts;
};

struct wire {
	uint8_t buf[1024];
	size_t len;
	size_t content_len; /* the bytes before the Auth */
};

#define NO_FLIP (-1)

/*
 * The bytes a client sends for q: q packed without Auth, then an Auth
 * carrying sent, whose MAC is made with secret over signed_ (equal to sent
 * unless tampering), mac_len bytes of it sent (32 unless tampering), with
 * bit flip_bit of it flipped (NO_FLIP unless tampering).
 */
static void forge(struct wire *w, Request *q, const uint8_t secret[32],
		  const struct fields *signed_, const struct fields *sent,
		  size_t mac_len, int flip_bit)
{
	uint8_t mac[REQUEST_MAC_BYTES + 1] = { 0 };
	Handoff__Wire__Auth au = HANDOFF__WIRE__AUTH__INIT;
	Request only = HANDOFF__WIRE__REQUEST__INIT;

	q->auth = NULL;
	w->content_len = handoff__wire__request__get_packed_size(q);
	assert_true(w->content_len < sizeof w->buf / 2);
	handoff__wire__request__pack(q, w->buf);
	request_mac(secret, signed_->key_id, signed_->session, signed_->seq,
		    signed_->ts, w->buf, w->content_len, mac);
	if (flip_bit != NO_FLIP)
		mac[flip_bit / 8] ^= (uint8_t)(1u << (flip_bit % 8));
	au.key_id = (char *)sent->key_id;
	au.session = sent->session;
	au.seq = sent->seq;
	au.timestamp_ms = sent->ts;
	au.mac.data = mac;
	au.mac.len = mac_len;
	only.auth = &au;
	w->len =
		w->content_len + handoff__wire__request__get_packed_size(&only);
	assert_true(w->len <= sizeof w->buf);
	handoff__wire__request__pack(&only, w->buf + w->content_len);
}

static void sign(struct wire *w, Request *q, const uint8_t secret[32],
		 const struct fields *f)
{
	forge(w, q, secret, f, f, REQUEST_MAC_BYTES, NO_FLIP);
}

/* Decode w as the broker does and verify it at now; *key as auth_verify
 * left it. A refusal must say why. */
static int verify_at(struct auth *a, const struct wire *w, uint64_t now,
		     const struct config_key **key)
{
	char why[256] = "";
	Request *q = handoff__wire__request__unpack(NULL, w->len, w->buf);
	assert_non_null(q);
	int st = auth_verify(a, q, w->buf, w->len, now, key, why, sizeof why);
	handoff__wire__request__free_unpacked(q, NULL);
	if (st != ST(OK))
		assert_true(why[0] != '\0');
	return st;
}

/* A publish to orders.eu signed by key k0 (or as f says) verified at
 * NOW_MS; the key must come back exactly when it is accepted. */
static int verify_publish(struct auth *a, const struct fields *f)
{
	struct bodies b;
	Request q;
	struct wire w;
	const struct config_key *key = (const void *)&key;

	build(&q, &b, HANDOFF__WIRE__REQUEST__BODY_PUBLISH, "orders.eu");
	sign(&w, &q, SECRET_K, f);
	int st = verify_at(a, &w, NOW_MS, &key);
	if (st == ST(OK)) {
		assert_non_null(key);
		assert_string_equal(key->id, f->key_id);
	} else {
		assert_null(key);
	}
	return st;
}

/* ---- the MAC ---------------------------------------------------------- */

/* request_mac() makes the MAC PROTOCOL.md §1.1 spells out, byte by byte
 * (a one-shot HMAC over the concatenation here, so that the broker, the
 * client and this test can't agree on other bytes among themselves). */
static void test_mac_is_the_documented_one(void **state)
{
	(void)state;
	static const uint8_t content[] = { 0x08, 0x01, 0x52, 0x00 };
	uint8_t msg[128], want[32], got[32];
	size_t n = 0;
	memcpy(msg + n, "handoff-auth-v1", 16); /* with its NUL */
	n += 16;
	memcpy(msg + n, "k0", 3);
	n += 3;
	const uint64_t nums[3] = { 0x0102030405060708ull, 42,
				   1700000000123ull };
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 8; j++)
			msg[n++] = (uint8_t)(nums[i] >> (8 * j));
	memcpy(msg + n, content, sizeof content);
	n += sizeof content;
	crypto_auth_hmacsha256(want, msg, n, SECRET_K);
	request_mac(SECRET_K, "k0", nums[0], nums[1], nums[2], content,
		    sizeof content, got);
	assert_memory_equal(got, want, sizeof want);
}

static void test_good_mac_accepted(void **state)
{
	(void)state;
	struct auth a;
	assert_int_equal(auth_init(&a, &cfg, STARTED_MS), 0);
	assert_true(auth_enabled(&a));
	struct fields f = { "k0", 7, 1, NOW_MS };
	assert_int_equal(verify_publish(&a, &f), ST(OK));
	/* the other key with the same secret, its own MAC */
	f.key_id = "k1";
	assert_int_equal(verify_publish(&a, &f), ST(OK));
	auth_fini(&a);
}

/* One bit flipped anywhere the MAC covers, or in the MAC itself, is
 * refused as a bad signature (PERMISSION_DENIED), never as stale: every
 * tampered value below is otherwise fresh and unused. */
static void test_flipped_bits_refused(void **state)
{
	(void)state;
	struct auth a;
	struct bodies b;
	Request q;
	struct wire w;
	const struct config_key *key;
	const struct fields good = { "k0", 7, 100, NOW_MS };
	struct fields sent;

	assert_int_equal(auth_init(&a, &cfg, STARTED_MS), 0);
	build(&q, &b, HANDOFF__WIRE__REQUEST__BODY_PUBLISH, "orders.eu");

	/* the MAC: its first and its last bit */
	forge(&w, &q, SECRET_K, &good, &good, REQUEST_MAC_BYTES, 0);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));
	assert_null(key);
	forge(&w, &q, SECRET_K, &good, &good, REQUEST_MAC_BYTES, 255);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));

	/* the key id: k1 is a real key with the same secret */
	sent = good;
	sent.key_id = "k1";
	forge(&w, &q, SECRET_K, &good, &sent, REQUEST_MAC_BYTES, NO_FLIP);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));

	/* the session, the sequence number, the time (still in the window) */
	sent = good;
	sent.session ^= 1;
	forge(&w, &q, SECRET_K, &good, &sent, REQUEST_MAC_BYTES, NO_FLIP);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));
	sent = good;
	sent.seq ^= 1;
	forge(&w, &q, SECRET_K, &good, &sent, REQUEST_MAC_BYTES, NO_FLIP);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));
	sent = good;
	sent.ts ^= 1;
	forge(&w, &q, SECRET_K, &good, &sent, REQUEST_MAC_BYTES, NO_FLIP);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));

	/* the content: one bit of the topic ("orders.eu" -> "orders.et"),
	 * still a topic k0 may publish to */
	sign(&w, &q, SECRET_K, &good);
	uint8_t *u = memmem(w.buf, w.content_len, "orders.eu", 9);
	assert_non_null(u);
	u[8] ^= 0x01;
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));

	/* the secret: a MAC made with another key's secret */
	forge(&w, &q, SECRET_WORK, &good, &good, REQUEST_MAC_BYTES, NO_FLIP);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));

	/* none of the above used up (session 7, seq 100): it is still good */
	sign(&w, &q, SECRET_K, &good);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key), ST(OK));
	assert_ptr_equal(key, &cfg.keys[K0]);
	auth_fini(&a);
}

static void test_malformed_and_unknown_refused(void **state)
{
	(void)state;
	struct auth a;
	struct bodies b;
	Request q;
	struct wire w;
	const struct config_key *key;
	struct fields f = { "k0", 7, 1, NOW_MS };

	assert_int_equal(auth_init(&a, &cfg, STARTED_MS), 0);
	build(&q, &b, HANDOFF__WIRE__REQUEST__BODY_PUBLISH, "orders.eu");
	/* a MAC a byte short (the right MAC's first 31), a byte long, none */
	forge(&w, &q, SECRET_K, &f, &f, REQUEST_MAC_BYTES - 1, NO_FLIP);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));
	forge(&w, &q, SECRET_K, &f, &f, REQUEST_MAC_BYTES + 1, NO_FLIP);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));
	forge(&w, &q, SECRET_K, &f, &f, 0, NO_FLIP);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));

	/* a key the broker doesn't have, with a MAC made in its name */
	f.key_id = "k2";
	sign(&w, &q, SECRET_K, &f);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));
	assert_null(key);
	f.key_id = "";
	sign(&w, &q, SECRET_K, &f);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));
	/* ... even with the MAC the broker computes for unknown keys (it
	 * does the same work with an all-zero secret) */
	static const uint8_t zeros[32];
	f.key_id = "k2";
	sign(&w, &q, zeros, &f);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));
	assert_null(key);

	/* a good Auth that is not the last field: content after it */
	f.key_id = "k0";
	sign(&w, &q, SECRET_K, &f);
	w.buf[w.len++] = 0x08; /* protocol_version = 1, again */
	w.buf[w.len++] = 0x01;
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));

	/* unsigned: only a ping passes (with no key) */
	q.auth = NULL;
	w.len = handoff__wire__request__pack(&q, w.buf);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key),
			 ST(PERMISSION_DENIED));
	build(&q, &b, HANDOFF__WIRE__REQUEST__BODY_PING, NULL);
	w.len = handoff__wire__request__pack(&q, w.buf);
	key = (const void *)&key;
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key), ST(OK));
	assert_null(key);
	auth_fini(&a);
}

/* With no keys configured everything passes, signed or not. */
static void test_open_broker(void **state)
{
	(void)state;
	struct config open;
	struct auth a;
	struct bodies b;
	Request q;
	struct wire w;
	const struct config_key *key = (const void *)&key;
	char why[64];

	memset(&open, 0, sizeof open);
	assert_int_equal(auth_init(&a, &open, STARTED_MS), 0);
	assert_false(auth_enabled(&a));
	build(&q, &b, HANDOFF__WIRE__REQUEST__BODY_PUBLISH, "orders.eu");
	w.len = handoff__wire__request__pack(&q, w.buf);
	assert_int_equal(verify_at(&a, &w, NOW_MS, &key), ST(OK));
	assert_null(key);
	build(&q, &b, HANDOFF__WIRE__REQUEST__BODY_STATS, NULL);
	assert_int_equal(auth_allows(&a, NULL, &q, why, sizeof why), ST(OK));
	assert_string_equal(auth_role_name(NULL), "open");
	auth_fini(&a);
}

/* ---- the time window -------------------------------------------------- */

static void test_time_window_edges(void **state)
{
	(void)state;
	struct auth a;
	assert_int_equal(auth_init(&a, &cfg, STARTED_MS), 0);
	struct fields f = { "k0", 7, 1, NOW_MS - WINDOW_MS };
	/* exactly a window ago: in; a millisecond more: out */
	assert_int_equal(verify_publish(&a, &f), ST(OK));
	f.seq++;
	f.ts = NOW_MS - WINDOW_MS - 1;
	assert_int_equal(verify_publish(&a, &f), ST(STALE_REQUEST));
	/* exactly a window ahead: in; a millisecond more: out */
	f.seq++;
	f.ts = NOW_MS + WINDOW_MS;
	assert_int_equal(verify_publish(&a, &f), ST(OK));
	f.seq++;
	f.ts = NOW_MS + WINDOW_MS + 1;
	assert_int_equal(verify_publish(&a, &f), ST(STALE_REQUEST));
	/* far out either way */
	f.seq++;
	f.ts = 0;
	assert_int_equal(verify_publish(&a, &f), ST(STALE_REQUEST));
	f.seq++;
	f.ts = UINT64_MAX - WINDOW_MS / 2;
	assert_int_equal(verify_publish(&a, &f), ST(STALE_REQUEST));
	/* the refused ones did not use their seq up */
	f.seq = 2;
	f.ts = NOW_MS;
	assert_int_equal(verify_publish(&a, &f), ST(OK));
	auth_fini(&a);
}

/* Signed before this broker started: stale even inside the window (a
 * request captured before a restart can't be replayed after it). */
static void test_signed_before_start(void **state)
{
	(void)state;
	struct auth a;
	struct bodies b;
	Request q;
	struct wire w;
	const struct config_key *key;
	const uint64_t now = STARTED_MS + 1000;

	assert_int_equal(auth_init(&a, &cfg, STARTED_MS), 0);
	build(&q, &b, HANDOFF__WIRE__REQUEST__BODY_PUBLISH, "orders.eu");
	struct fields f = { "k0", 7, 1, STARTED_MS - 1 };
	sign(&w, &q, SECRET_K, &f);
	assert_int_equal(verify_at(&a, &w, now, &key), ST(STALE_REQUEST));
	assert_null(key);
	f.ts = STARTED_MS;
	sign(&w, &q, SECRET_K, &f);
	assert_int_equal(verify_at(&a, &w, now, &key), ST(OK));
	auth_fini(&a);
}

/* ---- the replay window ------------------------------------------------ */

static void test_replay_window(void **state)
{
	(void)state;
	struct auth a;
	assert_int_equal(auth_init(&a, &cfg, STARTED_MS), 0);
	struct fields f = { "k0", 7, 100, NOW_MS };
#define SEQ(n, want)                                                \
	do {                                                        \
		f.seq = (n);                                        \
		assert_int_equal(verify_publish(&a, &f), ST(want)); \
	} while (0)

	SEQ(100, OK);
	SEQ(100, STALE_REQUEST); /* the same (session, seq) again */
	SEQ(101, OK);		 /* the window now ends at 101 */
	SEQ(38, OK);		 /* 63 back: in the window, unseen */
	SEQ(38, STALE_REQUEST);	 /* ... once */
	SEQ(37, STALE_REQUEST);	 /* 64 back: older than the window */
	SEQ(0, STALE_REQUEST);
	SEQ(95, OK); /* out of order within the window */
	SEQ(90, OK);
	SEQ(95, STALE_REQUEST); /* ... each once */
	SEQ(90, STALE_REQUEST);
	SEQ(100, STALE_REQUEST); /* still remembered after the above */
	SEQ(101, STALE_REQUEST);
	SEQ(106, OK); /* a step of 5 keeps what was seen */
	SEQ(101, STALE_REQUEST);
	SEQ(100, STALE_REQUEST);
	SEQ(102, OK);		 /* the gap left by the step */
	SEQ(170, OK);		 /* a step of 64 forgets everything ... */
	SEQ(106, STALE_REQUEST); /* ... 64 back */
	SEQ(107, OK);		 /* ... 63 back: in, unseen */
	SEQ(170, STALE_REQUEST);

	/* each session and each key has a window of its own */
	f.session = 8;
	SEQ(100, OK);
	SEQ(170, OK);
	f.key_id = "k1";
	f.session = 7;
	SEQ(100, OK);
	SEQ(170, OK);
	SEQ(170, STALE_REQUEST);
#undef SEQ
	auth_fini(&a);
}

/* ---- roles and patterns ----------------------------------------------- */

static const Handoff__Wire__Request__BodyCase all_cases[] = {
	HANDOFF__WIRE__REQUEST__BODY_PING,
	HANDOFF__WIRE__REQUEST__BODY_PUBLISH,
	HANDOFF__WIRE__REQUEST__BODY_SUBSCRIBE,
	HANDOFF__WIRE__REQUEST__BODY_UNSUBSCRIBE,
	HANDOFF__WIRE__REQUEST__BODY_LIST_SUBSCRIPTIONS,
	HANDOFF__WIRE__REQUEST__BODY_FETCH,
	HANDOFF__WIRE__REQUEST__BODY_ACK,
	HANDOFF__WIRE__REQUEST__BODY_NACK,
	HANDOFF__WIRE__REQUEST__BODY_DLQ_LIST,
	HANDOFF__WIRE__REQUEST__BODY_DLQ_SHOW,
	HANDOFF__WIRE__REQUEST__BODY_DLQ_REPLAY,
	HANDOFF__WIRE__REQUEST__BODY_DLQ_PURGE,
	HANDOFF__WIRE__REQUEST__BODY_TRACE,
	HANDOFF__WIRE__REQUEST__BODY_STATS,
	HANDOFF__WIRE__REQUEST__BODY_AUDIT_LIST,
	HANDOFF__WIRE__REQUEST__BODY_EXTEND,
};
#define N_CASES (sizeof all_cases / sizeof all_cases[0])

static int allows(const struct auth *a, int k,
		  Handoff__Wire__Request__BodyCase bc, const char *name)
{
	struct bodies b;
	Request q;
	char why[256] = "";
	build(&q, &b, bc, name);
	int st = auth_allows(a, k < 0 ? NULL : &cfg.keys[k], &q, why,
			     sizeof why);
	if (st != ST(OK))
		assert_true(why[0] != '\0');
	return st;
}

/* Which body cases key k may send, each naming name: exactly those in
 * "ok" (of n). */
static void check_role(const struct auth *a, int k, const char *name,
		       const Handoff__Wire__Request__BodyCase *ok, size_t n)
{
	for (size_t i = 0; i < N_CASES; i++) {
		int want = ST(PERMISSION_DENIED);
		for (size_t j = 0; j < n; j++)
			if (ok[j] == all_cases[i])
				want = ST(OK);
		if (allows(a, k, all_cases[i], name) != want)
			fail_msg("key %s, body case %d: expected %d",
				 cfg.keys[k].id, (int)all_cases[i], want);
	}
}

static Handoff__Wire__Request__BodyCase aw_case(void)
{
	return HANDOFF__WIRE__REQUEST__BODY_AWAIT;
}

static void test_each_role(void **state)
{
	(void)state;
	struct auth a;
	assert_int_equal(auth_init(&a, &cfg, STARTED_MS), 0);
	static const Handoff__Wire__Request__BodyCase producer[] = {
		HANDOFF__WIRE__REQUEST__BODY_PING,
		HANDOFF__WIRE__REQUEST__BODY_PUBLISH,
	};
	static const Handoff__Wire__Request__BodyCase consumer[] = {
		HANDOFF__WIRE__REQUEST__BODY_PING,
		HANDOFF__WIRE__REQUEST__BODY_FETCH,
		HANDOFF__WIRE__REQUEST__BODY_ACK,
		HANDOFF__WIRE__REQUEST__BODY_NACK,
		HANDOFF__WIRE__REQUEST__BODY_EXTEND,
	};
	static const Handoff__Wire__Request__BodyCase operator[] = {
		HANDOFF__WIRE__REQUEST__BODY_PING,
		HANDOFF__WIRE__REQUEST__BODY_SUBSCRIBE,
		HANDOFF__WIRE__REQUEST__BODY_UNSUBSCRIBE,
		HANDOFF__WIRE__REQUEST__BODY_LIST_SUBSCRIPTIONS,
		HANDOFF__WIRE__REQUEST__BODY_DLQ_LIST,
		HANDOFF__WIRE__REQUEST__BODY_DLQ_SHOW,
		HANDOFF__WIRE__REQUEST__BODY_DLQ_REPLAY,
		HANDOFF__WIRE__REQUEST__BODY_DLQ_PURGE,
		HANDOFF__WIRE__REQUEST__BODY_TRACE,
		HANDOFF__WIRE__REQUEST__BODY_STATS,
		HANDOFF__WIRE__REQUEST__BODY_AUDIT_LIST,
	};
	static const Handoff__Wire__Request__BodyCase monitor[] = {
		HANDOFF__WIRE__REQUEST__BODY_PING,
		HANDOFF__WIRE__REQUEST__BODY_LIST_SUBSCRIPTIONS,
		HANDOFF__WIRE__REQUEST__BODY_STATS,
	};
	/* names each key's patterns match, so that only the role decides */
	check_role(&a, K0, "orders.eu", producer, 2);
	check_role(&a, WORK, "billing-1", consumer, 5);
	check_role(&a, OPS, "anything", operator, 11);
	/* a monitor reads stats (GET /metrics) and nothing else: no trace,
	 * no dead letters, no purge, no publish, no fetch */
	check_role(&a, MON, "anything", monitor, 3);
	assert_int_equal(allows(&a, MON, aw_case(), NULL),
			 ST(PERMISSION_DENIED));
	/* an operator is no producer or consumer, though its patterns match */
	assert_int_equal(
		allows(&a, OPS, HANDOFF__WIRE__REQUEST__BODY_PUBLISH, "*"),
		ST(PERMISSION_DENIED));
	assert_int_equal(
		allows(&a, OPS, HANDOFF__WIRE__REQUEST__BODY_FETCH, "*"),
		ST(PERMISSION_DENIED));
	assert_int_equal(allows(&a, OPS, HANDOFF__WIRE__REQUEST__BODY_ACK, "x"),
			 ST(PERMISSION_DENIED));
	/* no key (an unsigned ping got through auth_verify): ping only */
	assert_int_equal(
		allows(&a, -1, HANDOFF__WIRE__REQUEST__BODY_PING, NULL),
		ST(OK));
	assert_int_equal(
		allows(&a, -1, HANDOFF__WIRE__REQUEST__BODY_STATS, NULL),
		ST(PERMISSION_DENIED));
	assert_int_equal(allows(&a, -1, HANDOFF__WIRE__REQUEST__BODY_PUBLISH,
				"orders.eu"),
			 ST(PERMISSION_DENIED));

	/* await: a producer or an operator (the handler checks a producer's
	 * topics once it knows the event's: auth_may_await) */
	static const Handoff__Wire__Request__BodyCase aw =
		HANDOFF__WIRE__REQUEST__BODY_AWAIT;
	assert_int_equal(allows(&a, K0, aw, NULL), ST(OK));
	assert_int_equal(allows(&a, OPS, aw, NULL), ST(OK));
	assert_int_equal(allows(&a, WORK, aw, NULL), ST(PERMISSION_DENIED));
	assert_int_equal(allows(&a, -1, aw, NULL), ST(PERMISSION_DENIED));
	assert_true(auth_may_await(&cfg.keys[OPS], "any.topic"));
	assert_true(auth_may_await(NULL, "any.topic"));
	assert_false(auth_may_await(&cfg.keys[WORK], "orders.eu"));
	assert_true(auth_may_await(&cfg.keys[K0], "orders.eu"));
	assert_false(auth_may_await(&cfg.keys[K0], "payments"));

	assert_string_equal(auth_role_name(&cfg.keys[K0]), "producer");
	assert_string_equal(auth_role_name(&cfg.keys[WORK]), "consumer");
	assert_string_equal(auth_role_name(&cfg.keys[OPS]), "operator");
	assert_string_equal(auth_role_name(&cfg.keys[BOTH]), "operator");
	assert_string_equal(auth_role_name(&cfg.keys[MON]), "monitor");
	auth_fini(&a);
}

static void test_patterns(void **state)
{
	(void)state;
	struct auth a;
	assert_int_equal(auth_init(&a, &cfg, STARTED_MS), 0);
	const Handoff__Wire__Request__BodyCase pub =
		HANDOFF__WIRE__REQUEST__BODY_PUBLISH;
	const Handoff__Wire__Request__BodyCase fetch =
		HANDOFF__WIRE__REQUEST__BODY_FETCH;
	const Handoff__Wire__Request__BodyCase ack =
		HANDOFF__WIRE__REQUEST__BODY_ACK;
	const Handoff__Wire__Request__BodyCase nack =
		HANDOFF__WIRE__REQUEST__BODY_NACK;
	const Handoff__Wire__Request__BodyCase extend =
		HANDOFF__WIRE__REQUEST__BODY_EXTEND;

	/* topics "orders.*" */
	assert_int_equal(allows(&a, K0, pub, "orders.eu"), ST(OK));
	assert_int_equal(allows(&a, K0, pub, "orders."), ST(OK));
	assert_int_equal(allows(&a, K0, pub, "orders"), ST(PERMISSION_DENIED));
	assert_int_equal(allows(&a, K0, pub, "xorders.eu"),
			 ST(PERMISSION_DENIED));
	assert_int_equal(allows(&a, K0, pub, "payments"),
			 ST(PERMISSION_DENIED));
	assert_int_equal(allows(&a, K0, pub, ""), ST(PERMISSION_DENIED));
	assert_int_equal(allows(&a, K0, pub, NULL), ST(PERMISSION_DENIED));

	/* subscriptions "billing-?" and "audit", for fetch, ack, nack and
	 * extend */
	const Handoff__Wire__Request__BodyCase uses[] = { fetch, ack, nack,
							  extend };
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(allows(&a, WORK, uses[i], "billing-1"),
				 ST(OK));
		assert_int_equal(allows(&a, WORK, uses[i], "audit"), ST(OK));
		assert_int_equal(allows(&a, WORK, uses[i], "billing-10"),
				 ST(PERMISSION_DENIED));
		assert_int_equal(allows(&a, WORK, uses[i], "billing-"),
				 ST(PERMISSION_DENIED));
		assert_int_equal(allows(&a, WORK, uses[i], "audits"),
				 ST(PERMISSION_DENIED));
		assert_int_equal(allows(&a, WORK, uses[i], "Audit"),
				 ST(PERMISSION_DENIED));
	}

	/* a key with several roles: each role with its own patterns; a
	 * topic pattern says nothing about subscriptions and back */
	assert_int_equal(allows(&a, BOTH, pub, "t.x"), ST(OK));
	assert_int_equal(allows(&a, BOTH, pub, "s.x"), ST(PERMISSION_DENIED));
	assert_int_equal(allows(&a, BOTH, fetch, "s.x"), ST(OK));
	assert_int_equal(allows(&a, BOTH, ack, "s.x"), ST(OK));
	assert_int_equal(allows(&a, BOTH, nack, "s.x"), ST(OK));
	assert_int_equal(allows(&a, BOTH, fetch, "t.x"), ST(PERMISSION_DENIED));
	assert_int_equal(
		allows(&a, BOTH, HANDOFF__WIRE__REQUEST__BODY_STATS, NULL),
		ST(OK));

	/* roles without patterns reach nothing */
	assert_int_equal(allows(&a, BARE, pub, "t.x"), ST(PERMISSION_DENIED));
	assert_int_equal(allows(&a, BARE, fetch, "s.x"), ST(PERMISSION_DENIED));
	assert_int_equal(allows(&a, BARE, pub, ""), ST(PERMISSION_DENIED));
	auth_fini(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_mac_is_the_documented_one, setup),
		cmocka_unit_test_setup(test_good_mac_accepted, setup),
		cmocka_unit_test_setup(test_flipped_bits_refused, setup),
		cmocka_unit_test_setup(test_malformed_and_unknown_refused,
				       setup),
		cmocka_unit_test_setup(test_open_broker, setup),
		cmocka_unit_test_setup(test_time_window_edges, setup),
		cmocka_unit_test_setup(test_signed_before_start, setup),
		cmocka_unit_test_setup(test_replay_window, setup),
		cmocka_unit_test_setup(test_each_role, setup),
		cmocka_unit_test_setup(test_patterns, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
