/*
 * fuzz_request.c — one libFuzzer target per request type: fuzz_<type> is
 * this file compiled with -DFUZZ_REQUEST=<the Request body case> (see
 * meson.build).
 *
 * The input is the body message of that type (say a PublishRequest). It is
 * wrapped in a Request envelope of protocol version 1 and decoded as the
 * broker decodes every request (codec_decode_request: arena, budget), then
 * applied by handlers_apply in a write transaction on a fixture store
 * (subscriptions, events ready, delayed, leased, acked and dead-lettered,
 * a subscription being deleted; built once) and rolled back, so every input
 * meets the same store. Checked for each input:
 *   - decoding: NULL or a Request of this type whose packed form is a
 *     fixed point (pack, unpack, pack again gives the same bytes), with the
 *     arena's own budget restored;
 *   - the reply: it packs and decodes; status from the closed set and from
 *     those PROTOCOL.md lists for this type, a message on every error, the
 *     body this type answers with on OK (item count, ids, limits, filters,
 *     effective policy);
 *   - "an error reply means nothing was applied": no database gained or
 *     lost an entry, no subscription record is to be written back, no id
 *     was allocated; the same for read-only types on OK;
 *   - an ack/nack/extend item is OK only for a lease the fixture handed
 *     out and did not end (tokens 1..63 in the input stand for the fixture's
 *     leases, see fz_leases_fixup);
 *   - the store stays consistent (fz_check_store: index entries, delivery
 *     states, counters, per-consumer lease counts, retention records) and
 *     list_subscriptions / stats report what it holds.
 * AddressSanitizer, UBSan and LeakSanitizer watch the rest.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "handlers.h"
#include "metrics.h"
#include "scheduler.h"

#ifndef FUZZ_REQUEST
#error "compile with -DFUZZ_REQUEST=HANDOFF__WIRE__REQUEST__BODY_<TYPE>"
#endif

#define ST(x)	       HANDOFF__WIRE__STATUS__##x
#define BODY(x)	       HANDOFF__WIRE__REQUEST__BODY_##x
#define MAP_SIZE       (4u << 20)
#define MAX_BODY_BYTES (256u << 10)
/* the fixture is built at T0; inputs run 2 s later, when the delayed
 * retry of the fixture is due */
#define NOW (FZ_T0 + 2000)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the health handler reads the loop's heartbeat against the monotonic
 * clock; a fixed clock keeps the input's outcome reproducible */
uint64_t clock_mono_ms(void);
uint64_t clock_mono_ms(void)
{
	return NOW;
}

static struct config cfg;
static struct fz_store fs;
static struct store st;
static struct metrics metrics;
static struct lease_counts lc;
static struct sched sched;
static struct handler_env env;
static struct arena arena;
static struct fz_leases fixture; /* leases the fixture handed out */
static enum fz_lease_state *fixture_state;
static char *consumers[] = { "c1", "c2", "c3" };
static bool trace; /* FUZZ_TRACE=1: print each reply's status */

static void on_lease(void *ctx, const char *consumer, int delta,
		     uint64_t leased_ms)
{
	(void)leased_ms;
	leases_add(ctx, consumer, delta);
}

/* ---- the fixture ------------------------------------------------------ */

static Reply *apply(struct txn *t, Request *q, int want)
{
	Reply *r = codec_new_reply(t->arena);
	struct fetch_hold hold;
	FZ_ASSERT(r, "out of memory");
	q->protocol_version = 1;
	int rc = handlers_apply(&env, t, q, r, &hold);
	FZ_ASSERT(rc == 0 && (int)r->status == want,
		  "fixture: request %d: rc %d status %d (%s)", q->body_case, rc,
		  r->status, r->message ? r->message : "");
	return r;
}

static void fx_subscribe(struct txn *t, const char *topic, const char *name,
			 uint32_t max_attempts)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__SubscribeRequest s =
		HANDOFF__WIRE__SUBSCRIBE_REQUEST__INIT;
	Handoff__Wire__Policy p = HANDOFF__WIRE__POLICY__INIT;
	p.max_attempts = max_attempts;
	s.topic = (char *)topic;
	s.subscription = (char *)name;
	s.policy = &p;
	q.body_case = BODY(SUBSCRIBE);
	q.subscribe = &s;
	apply(t, &q, ST(OK));
}

static void fx_unsubscribe(struct txn *t, const char *name)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__UnsubscribeRequest u =
		HANDOFF__WIRE__UNSUBSCRIBE_REQUEST__INIT;
	u.subscription = (char *)name;
	q.body_case = BODY(UNSUBSCRIBE);
	q.unsubscribe = &u;
	apply(t, &q, ST(OK));
}

static void fx_publish(struct txn *t, const char *topic, int n, int first)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__PublishRequest p = HANDOFF__WIRE__PUBLISH_REQUEST__INIT;
	Handoff__Wire__PublishEvent ev[8], *evp[8];
	Handoff__Wire__Header h[2], *hp[2];
	char idem[8][16], key[8][16], payload[8][32];
	FZ_ASSERT(n <= 8, "fixture publish too big");
	for (int i = 0; i < 2; i++) {
		handoff__wire__header__init(&h[i]);
		h[i].name = i ? (char *)"content-type" : (char *)"trace";
		h[i].value = i ? (char *)"text/plain" : (char *)"abc-123";
		hp[i] = &h[i];
	}
	for (int i = 0; i < n; i++) {
		handoff__wire__publish_event__init(&ev[i]);
		snprintf(idem[i], sizeof idem[i], "k%d", first + i);
		snprintf(key[i], sizeof key[i], "key%d", (first + i) % 3);
		snprintf(payload[i], sizeof payload[i], "payload of event %d",
			 first + i);
		ev[i].idempotency_key = idem[i];
		ev[i].key = key[i];
		ev[i].payload.data = (uint8_t *)payload[i];
		ev[i].payload.len = strlen(payload[i]);
		ev[i].n_headers = (size_t)(i % 3);
		ev[i].headers = hp;
		evp[i] = &ev[i];
	}
	p.topic = (char *)topic;
	p.n_events = (size_t)n;
	p.events = evp;
	q.body_case = BODY(PUBLISH);
	q.publish = &p;
	apply(t, &q, ST(OK));
}

static void fx_fetch(struct txn *t, const char *sub, const char *consumer,
		     uint32_t max)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__FetchRequest f = HANDOFF__WIRE__FETCH_REQUEST__INIT;
	f.subscription = (char *)sub;
	f.consumer = (char *)consumer;
	f.max_events = max;
	q.body_case = BODY(FETCH);
	q.fetch = &f;
	Reply *r = apply(t, &q, ST(OK));
	FZ_ASSERT(r->fetch->n_deliveries == max, "fixture: fetch of %u got %zu",
		  max, r->fetch->n_deliveries);
	fz_leases_add_fetch(&fixture, sub, consumer, r);
}

/* End the fixture lease of sub/event: ack, or nack (permanent or not). */
static void fx_end(struct txn *t, const char *sub, uint64_t event, bool ack,
		   bool permanent)
{
	struct fz_lease *e = NULL;
	for (size_t i = 0; i < fixture.n && !e; i++)
		if (!strcmp(fixture.v[i].sub, sub) &&
		    fixture.v[i].event == event)
			e = &fixture.v[i];
	FZ_ASSERT(e, "fixture: no lease of %s/%llu", sub,
		  (unsigned long long)event);
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__AckRequest a = HANDOFF__WIRE__ACK_REQUEST__INIT;
	Handoff__Wire__AckItem ai = HANDOFF__WIRE__ACK_ITEM__INIT, *aip = &ai;
	Handoff__Wire__NackRequest n = HANDOFF__WIRE__NACK_REQUEST__INIT;
	Handoff__Wire__NackItem ni = HANDOFF__WIRE__NACK_ITEM__INIT, *nip = &ni;
	if (ack) {
		ai.event_id = event;
		ai.lease_token = e->token;
		a.subscription = (char *)sub;
		a.n_items = 1;
		a.items = &aip;
		q.body_case = BODY(ACK);
		q.ack = &a;
	} else {
		ni.event_id = event;
		ni.lease_token = e->token;
		ni.permanent = permanent;
		ni.reason = permanent ? (char *)"cannot parse the payload" :
					(char *)"downstream timeout";
		n.subscription = (char *)sub;
		n.n_items = 1;
		n.items = &nip;
		q.body_case = BODY(NACK);
		q.nack = &n;
	}
	Reply *r = apply(t, &q, ST(OK));
	FZ_ASSERT(r->items->statuses[0] == ST(OK), "fixture: %s of %s/%llu: %d",
		  ack ? "ack" : "nack", sub, (unsigned long long)event,
		  r->items->statuses[0]);
	e->state = ack ? FZ_ACKED : FZ_ENDED;
}

/* A replay of an event that is not dead, under a command id: an audit
 * record and a command record, no delivery changed. */
static void fx_replay_missing(struct txn *t, const char *sub, uint64_t event,
			      const char *command_id)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__DlqActionRequest a =
		HANDOFF__WIRE__DLQ_ACTION_REQUEST__INIT;
	a.subscription = (char *)sub;
	a.n_event_ids = 1;
	a.event_ids = &event;
	a.limit = 10;
	a.command_id = (char *)command_id;
	a.reason = (char *)"fixture";
	q.body_case = BODY(DLQ_REPLAY);
	q.dlq_replay = &a;
	Reply *r = apply(t, &q, ST(OK));
	FZ_ASSERT(r->dlq_action->n_missing == 1, "fixture: replay of %llu",
		  (unsigned long long)event);
}

/*
 * s1 on t1 (2 attempts), s2 on t1, s3 on t2 (1 attempt), s4 on t2 (being
 * deleted); events 1-6 on t1, 7-9 and 10 on t2; audit records 1
 * (unsubscribe s4) and 2 (replay on s1 under command id "cmd-1").
 *   s1: 1 dead (permanent), 2 acked, 3 delayed retry, 4 leased, 5-6 ready
 *   s2: 1 acked, 2 leased, 3-6 ready
 *   s3: 7 dead (max attempts), 8 dead (permanent), 9 leased, 10 ready
 *   s4: 10 ready (subscription deleted, not drained yet)
 */
static void build_fixture(void)
{
	struct txn t;
	fz_rng_seed(0xf1);
	sched_tokens_discard();
	arena_reset(&arena);
	int rc = store_txn_begin(&st, &arena, true, FZ_T0, &t);
	FZ_ASSERT(rc == 0, "txn: %s", mdb_strerror(rc));
	t.sched = &sched;
	fx_subscribe(&t, "t1", "s1", 2);
	fx_subscribe(&t, "t1", "s2", 0);
	fx_subscribe(&t, "t2", "s3", 1);
	fx_publish(&t, "t1", 6, 1);
	fx_publish(&t, "t2", 3, 7);
	fx_subscribe(&t, "t2", "s4", 0);
	fx_publish(&t, "t2", 1, 10);
	fx_fetch(&t, "s1", "c1", 4);
	fx_end(&t, "s1", 1, false, true);
	fx_end(&t, "s1", 2, true, false);
	fx_end(&t, "s1", 3, false, false);
	fx_fetch(&t, "s2", "c2", 2);
	fx_end(&t, "s2", 1, true, false);
	fx_fetch(&t, "s3", "c1", 3);
	fx_end(&t, "s3", 7, false, false);
	fx_end(&t, "s3", 8, false, true);
	fx_unsubscribe(&t, "s4");
	fx_replay_missing(&t, "s1", 99, "cmd-1");
	rc = store_txn_commit(&t);
	FZ_ASSERT(rc == 0, "fixture commit: %s", mdb_strerror(rc));
	leases_commit(&lc);
	arena_reset(&arena);

	fixture_state = malloc(fixture.n * sizeof *fixture_state);
	FZ_ASSERT(fixture_state, "out of memory");
	for (size_t i = 0; i < fixture.n; i++)
		fixture_state[i] = fixture.v[i].state;

	rc = store_txn_begin(&st, &arena, false, NOW, &t);
	FZ_ASSERT(rc == 0, "txn: %s", mdb_strerror(rc));
	fz_check_store(&t, &lc, 0, consumers, 3);
	fz_check_views(&env, &t);
	store_txn_abort(&t);
	arena_reset(&arena);
}

static void cleanup(void)
{
	store_close(&st);
	leases_fini(&lc);
	metrics_fini(&metrics);
	arena_fini(&arena);
	fz_leases_clear(&fixture);
	free(fixture_state);
	config_free(&cfg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_rng_install();
	fz_log_init();
	const char *e = getenv("FUZZ_TRACE");
	trace = e && !strcmp(e, "1");
	fz_config(&cfg, MAP_SIZE);
	arena_init(&arena);
	metrics_init(&metrics);
	FZ_ASSERT(leases_init(&lc) == 0, "out of memory");
	sched = (struct sched){ .history_ms = cfg.history_ms,
				.on_lease = on_lease,
				.ctx = &lc };
	fz_store_create(&fs, &st, MAP_SIZE);
	env = (struct handler_env){ .cfg = &cfg,
				    .st = &st,
				    .metrics = &metrics,
				    .started_ms = FZ_T0,
				    .leases = &lc };
	build_fixture();
	atexit(cleanup);
	return 0;
}

/* ---- one input -------------------------------------------------------- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Request{protocol_version: 1, <FUZZ_REQUEST>: data}, malloc'd. */
static uint8_t *envelope(const uint8_t *data, size_t size, size_t *len)
{
	uint8_t *buf = malloc(size + 16);
	FZ_ASSERT(buf, "out of memory");
	size_t n = 0;
	buf[n++] = 0x08; /* field 1, varint */
	buf[n++] = 0x01;
	n += put_varint(buf + n, ((uint64_t)FUZZ_REQUEST << 3) | 2);
	n += put_varint(buf + n, size);
	if (size)
		memcpy(buf + n, data, size);
	*len = n + size;
	return buf;
}

/* Whether m or a message inside it kept unknown fields. */
static bool has_unknown(const ProtobufCMessage *m)
{
	if (m->n_unknown_fields)
		return true;
	const ProtobufCMessageDescriptor *d = m->descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		const char *base = (const char *)m;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n =
				*(const size_t *)(base + f->quantifier_offset);
			ProtobufCMessage *const *v =
				*(ProtobufCMessage *const *const *)(base +
								    f->offset);
			for (size_t k = 0; k < n; k++)
				if (has_unknown(v[k]))
					return true;
		} else {
			if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF &&
			    *(const uint32_t *)(base + f->quantifier_offset) !=
				    f->id)
				continue;
			const ProtobufCMessage *sub =
				*(ProtobufCMessage *const *)(base + f->offset);
			if (sub && has_unknown(sub))
				return true;
		}
	}
	return false;
}

/*
 * pack(unpack(pack(q))) == pack(q): the decoded request is whole. The one
 * exception is protobuf-c's own: it accepts an unknown field numbered 0
 * when its tag takes two bytes (80 00), keeps it, and packs it as 00, which
 * it then refuses; so packed bytes that do not decode are accepted only
 * from a request that kept unknown fields.
 */
static void check_roundtrip(const Request *q)
{
	size_t len = handoff__wire__request__get_packed_size(q);
	uint8_t *a = malloc(len ? len : 1);
	FZ_ASSERT(a, "out of memory");
	FZ_ASSERT(handoff__wire__request__pack(q, a) == len, "pack size");
	Request *q2 = handoff__wire__request__unpack(NULL, len, a);
	if (!q2) {
		FZ_ASSERT(has_unknown(&q->base), "a decoded request packs into "
						 "bytes that do not decode");
		free(a);
		return;
	}
	FZ_ASSERT(q2->body_case == q->body_case, "body case changed on repack");
	size_t len2 = handoff__wire__request__get_packed_size(q2);
	uint8_t *b = malloc(len2 ? len2 : 1);
	FZ_ASSERT(b, "out of memory");
	handoff__wire__request__pack(q2, b);
	FZ_ASSERT(len == len2 && !memcmp(a, b, len),
		  "repacking changed the "
		  "request (%zu -> %zu bytes)",
		  len, len2);
	handoff__wire__request__free_unpacked(q2, NULL);
	free(a);
	free(b);
}

static bool read_only(const Request *q)
{
	switch (q->body_case) {
	case BODY(PING):
	case BODY(LIST_SUBSCRIPTIONS):
	case BODY(DLQ_LIST):
	case BODY(DLQ_SHOW):
	case BODY(TRACE):
	case BODY(STATS):
	case BODY(AUDIT_LIST):
	case BODY(AWAIT):
		return true;
	case BODY(DLQ_REPLAY):
		return q->dlq_replay->dry_run;
	case BODY(DLQ_PURGE):
		return q->dlq_purge->dry_run;
	default:
		return false;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > MAX_BODY_BYTES)
		return 0;
	size_t len;
	uint8_t *buf = envelope(data, size, &len);
	fz_rng_seed(1);
	sched_tokens_discard(); /* drawn from the last input's seed */
	arena_reset(&arena);

	Request *q = codec_decode_request(&arena, buf, len);
	FZ_ASSERT(arena.budget == 0, "decode left the arena with a budget");
	if (!q) {
		free(buf);
		return 0;
	}
	FZ_ASSERT(q->protocol_version == 1 && q->body_case == FUZZ_REQUEST &&
			  q->ping != NULL,
		  "decoded as version %u, body %d", q->protocol_version,
		  q->body_case);
	check_roundtrip(q);
	fz_leases_fixup(&fixture, q);

	struct txn t;
	struct fz_counts before, after;
	int rc = store_txn_begin(&st, &arena, true, NOW, &t);
	FZ_ASSERT(rc == 0, "txn: %s", mdb_strerror(rc));
	t.sched = &sched;
	fz_db_counts(&t, &before);
	Reply *reply = codec_new_reply(&arena);
	FZ_ASSERT(reply, "out of memory");
	struct fetch_hold hold = { .hold = false };
	rc = handlers_apply(&env, &t, q, reply, &hold);
	/* a full store aborts the turn (the loop then answers STORAGE_FULL);
	 * any other store error would be an INTERNAL reply */
	FZ_ASSERT(rc == 0 || rc == MDB_MAP_FULL || rc == MDB_TXN_FULL,
		  "handler failed: %s", mdb_strerror(rc));
	if (rc == 0) {
		size_t rlen;
		void *rbuf = codec_pack_reply(reply, &rlen);
		FZ_ASSERT(rbuf, "out of memory");
		Reply *r = fz_check_reply(&cfg, q, rbuf, rlen);
		if (trace) {
			fprintf(stderr, "status %d %s", r->status, r->message);
			for (size_t i = 0;
			     r->body_case == HANDOFF__WIRE__REPLY__BODY_ITEMS &&
			     i < r->items->n_statuses;
			     i++)
				fprintf(stderr, " [%d]", r->items->statuses[i]);
			fputc('\n', stderr);
		}
		if (hold.hold && q->body_case == BODY(AWAIT))
			FZ_ASSERT(
				q->await->timeout_ms > 0 &&
					r->status == ST(OK) &&
					r->body_case ==
						HANDOFF__WIRE__REPLY__BODY__NOT_SET,
				"parked an await that cannot wait");
		else if (q->body_case == BODY(AWAIT) && r->status == ST(OK))
			FZ_ASSERT(
				r->await->result !=
						HANDOFF__WIRE__AWAIT_RESULT__AWAIT_RESULT_TIMED_OUT ||
					q->await->timeout_ms == 0,
				"await timed out before its timeout");
		else if (hold.hold)
			FZ_ASSERT(q->body_case == BODY(FETCH) &&
					  q->fetch->wait_ms > 0 &&
					  r->status == ST(OK) &&
					  r->fetch->n_deliveries == 0,
				  "parked a request that cannot wait");
		fz_db_counts(&t, &after);
		bool changed = !fz_counts_equal(&before, &after) ||
			       fz_txn_dirty(&t) ||
			       t.next_event_id != st.next_event_id ||
			       t.next_sub_id != st.next_sub_id;
		FZ_ASSERT(!changed || r->status == ST(OK),
			  "error reply %d (%s) but the store changed",
			  r->status, r->message);
		FZ_ASSERT(!changed || !read_only(q),
			  "read-only request %d changed the store",
			  q->body_case);
		fz_leases_check_items(&fixture, q, r);
		fz_check_store(&t, &lc, 0, consumers, 3);
		fz_check_views(&env, &t);
		handoff__wire__reply__free_unpacked(r, NULL);
		free(rbuf);
	}
	store_txn_abort(&t);
	leases_rollback(&lc);
	for (size_t i = 0; i < fixture.n; i++)
		fixture.v[i].state = fixture_state[i];
	arena_reset(&arena);
	free(buf);
	return 0;
}
