/*
 * seedgen.c — writes the seed corpora of the fuzz targets:
 *
 *   fuzz_seedgen DIR     (or: ninja -C build-fuzz fuzz-seeds)
 *
 * DIR/fuzz_<type>/      body messages of each request type, aimed at the
 *                       fuzz_request.c fixture (s1..s4, t1, t2, c1, c2,
 *                       events 1-10, lease tokens 1..6 meaning the
 *                       fixture's leases): valid requests, every error of
 *                       PROTOCOL.md §5, the limits of fz_config
 * DIR/fuzz_handlers/    operation lists for fuzz_handlers.c: scenarios
 *                       (leases, expiry, retries, dead letters, replay,
 *                       held fetches, resends, restart, dedup, a full
 *                       store, unsubscribe with deliveries, cleanup)
 * DIR/fuzz_client_reply/ call selector + replies for fuzz_client_reply.c:
 *                       a good reply to every call, error statuses,
 *                       SHUTTING_DOWN then OK, wrong bodies
 *
 * Files are named NAME-<what>: rerunning overwrites them, and nothing else
 * in DIR is touched. Built with protobuf-c alone (no fuzzer).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "handoff.pb-c.h"

typedef Handoff__Wire__Request Request;
typedef Handoff__Wire__Reply Reply;

#define BODY(x)	 HANDOFF__WIRE__REQUEST__BODY_##x
#define RBODY(x) HANDOFF__WIRE__REPLY__BODY_##x
#define ST(x)	 HANDOFF__WIRE__STATUS__##x

static const char *root;
static int n_written;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "fuzz_seedgen: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void write_seed(const char *target, const char *name, const void *p,
		       size_t len)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", root, target);
	if (mkdir(path, 0755) && errno != EEXIST)
		die("mkdir %s: %s", path, strerror(errno));
	snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
	FILE *f = fopen(path, "wb");
	if (!f || (len && fwrite(p, 1, len, f) != len) || fclose(f))
		die("write %s: %s", path, strerror(errno));
	n_written++;
}

/* ---- a growing byte buffer -------------------------------------------- */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void put(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			die("out of memory");
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void put_byte(struct buf *b, uint8_t v)
{
	put(b, &v, 1);
}

static void put_varint(struct buf *b, uint64_t v)
{
	while (v >= 0x80) {
		put_byte(b, (uint8_t)(v | 0x80));
		v >>= 7;
	}
	put_byte(b, (uint8_t)v);
}

static void put_msg(struct buf *b, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *tmp = malloc(n ? n : 1);
	if (!tmp)
		die("out of memory");
	protobuf_c_message_pack(m, tmp);
	put(b, tmp, n);
	free(tmp);
}

static void seed_msg(const char *target, const char *name,
		     const ProtobufCMessage *m)
{
	struct buf b = { 0 };
	put_msg(&b, m);
	write_seed(target, name, b.p, b.len);
	free(b.p);
}

/* ---- request bodies --------------------------------------------------- */

static Handoff__Wire__Header hdr_a = {
	PROTOBUF_C_MESSAGE_INIT(&handoff__wire__header__descriptor),
	(char *)"trace", (char *)"abc-123"
};
static Handoff__Wire__Header hdr_b = {
	PROTOBUF_C_MESSAGE_INIT(&handoff__wire__header__descriptor),
	(char *)"content-type", (char *)"text/plain"
};
static Handoff__Wire__Header hdr_empty = {
	PROTOBUF_C_MESSAGE_INIT(&handoff__wire__header__descriptor), (char *)"",
	(char *)"v"
};
static Handoff__Wire__Header *hdrs2[] = { &hdr_a, &hdr_b };
static Handoff__Wire__Header *hdrs_bad[] = { &hdr_a, &hdr_empty };

static char big[8192];

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		die("out of memory");
	memset(s, c, n);
	s[n] = 0;
	return s;
}

/* A publish of n events to topic; keys "<prefix><i>", payload bytes each. */
static Handoff__Wire__PublishRequest *publish(const char *topic, size_t n,
					      const char *prefix,
					      size_t payload, int headers)
{
	Handoff__Wire__PublishRequest *p = calloc(1, sizeof *p);
	Handoff__Wire__PublishEvent **ev = calloc(n ? n : 1, sizeof *ev);
	if (!p || !ev)
		die("out of memory");
	handoff__wire__publish_request__init(p);
	p->topic = (char *)topic;
	p->n_events = n;
	p->events = ev;
	for (size_t i = 0; i < n; i++) {
		ev[i] = calloc(1, sizeof **ev);
		char *key = malloc(64);
		if (!ev[i] || !key)
			die("out of memory");
		handoff__wire__publish_event__init(ev[i]);
		snprintf(key, 64, "%s%zu", prefix, i);
		ev[i]->idempotency_key = key;
		ev[i]->key = (char *)(i % 2 ? "order-7" : "");
		ev[i]->payload.data = (uint8_t *)big;
		ev[i]->payload.len = payload;
		if (headers == 1) {
			ev[i]->n_headers = 2;
			ev[i]->headers = hdrs2;
		} else if (headers == 2) {
			ev[i]->n_headers = 2;
			ev[i]->headers = hdrs_bad;
		}
	}
	return p;
}

static void publish_free(Handoff__Wire__PublishRequest *p)
{
	for (size_t i = 0; i < p->n_events; i++) {
		free(p->events[i]->idempotency_key);
		free(p->events[i]);
	}
	free(p->events);
	free(p);
}

static Handoff__Wire__SubscribeRequest
sub_req(const char *topic, const char *name, Handoff__Wire__Policy *policy)
{
	Handoff__Wire__SubscribeRequest s =
		HANDOFF__WIRE__SUBSCRIBE_REQUEST__INIT;
	s.topic = (char *)topic;
	s.subscription = (char *)name;
	s.policy = policy;
	return s;
}

static Handoff__Wire__FetchRequest fetch_req(const char *sub,
					     const char *consumer, uint32_t max,
					     uint32_t wait, uint64_t seq)
{
	Handoff__Wire__FetchRequest f = HANDOFF__WIRE__FETCH_REQUEST__INIT;
	f.subscription = (char *)sub;
	f.consumer = (char *)consumer;
	f.max_events = max;
	f.wait_ms = wait;
	f.fetch_seq = seq;
	return f;
}

/* items: (event, token) pairs; token 1..63 = the k-th lease seen */
static Handoff__Wire__AckRequest *
ack_req(const char *sub, size_t n, const uint64_t *ev, const uint64_t *tok)
{
	Handoff__Wire__AckRequest *a = calloc(1, sizeof *a);
	Handoff__Wire__AckItem **it = calloc(n ? n : 1, sizeof *it);
	if (!a || !it)
		die("out of memory");
	handoff__wire__ack_request__init(a);
	a->subscription = (char *)sub;
	a->n_items = n;
	a->items = it;
	for (size_t i = 0; i < n; i++) {
		it[i] = calloc(1, sizeof **it);
		if (!it[i])
			die("out of memory");
		handoff__wire__ack_item__init(it[i]);
		it[i]->event_id = ev ? ev[i] : 0;
		it[i]->lease_token = tok ? tok[i] : (uint64_t)(i + 1);
	}
	return a;
}

static void ack_free(Handoff__Wire__AckRequest *a)
{
	for (size_t i = 0; i < a->n_items; i++)
		free(a->items[i]);
	free(a->items);
	free(a);
}

static Handoff__Wire__NackRequest *nack_req(const char *sub, size_t n,
					    const uint64_t *ev,
					    const uint64_t *tok, bool permanent,
					    uint32_t delay, const char *reason)
{
	Handoff__Wire__NackRequest *a = calloc(1, sizeof *a);
	Handoff__Wire__NackItem **it = calloc(n ? n : 1, sizeof *it);
	if (!a || !it)
		die("out of memory");
	handoff__wire__nack_request__init(a);
	a->subscription = (char *)sub;
	a->n_items = n;
	a->items = it;
	for (size_t i = 0; i < n; i++) {
		it[i] = calloc(1, sizeof **it);
		if (!it[i])
			die("out of memory");
		handoff__wire__nack_item__init(it[i]);
		it[i]->event_id = ev ? ev[i] : 0;
		it[i]->lease_token = tok ? tok[i] : (uint64_t)(i + 1);
		it[i]->permanent = permanent;
		it[i]->delay_ms = delay;
		it[i]->reason = (char *)reason;
	}
	return a;
}

static void nack_free(Handoff__Wire__NackRequest *a)
{
	for (size_t i = 0; i < a->n_items; i++)
		free(a->items[i]);
	free(a->items);
	free(a);
}

static Handoff__Wire__ExtendRequest *extend_req(const char *sub, size_t n,
						const uint64_t *ev,
						const uint64_t *tok,
						uint32_t extend_ms)
{
	Handoff__Wire__ExtendRequest *a = calloc(1, sizeof *a);
	Handoff__Wire__ExtendItem **it = calloc(n ? n : 1, sizeof *it);
	if (!a || !it)
		die("out of memory");
	handoff__wire__extend_request__init(a);
	a->subscription = (char *)sub;
	a->n_items = n;
	a->items = it;
	a->extend_ms = extend_ms;
	for (size_t i = 0; i < n; i++) {
		it[i] = calloc(1, sizeof **it);
		if (!it[i])
			die("out of memory");
		handoff__wire__extend_item__init(it[i]);
		it[i]->event_id = ev ? ev[i] : 0;
		it[i]->lease_token = tok ? tok[i] : (uint64_t)(i + 1);
	}
	return a;
}

static void extend_free(Handoff__Wire__ExtendRequest *a)
{
	for (size_t i = 0; i < a->n_items; i++)
		free(a->items[i]);
	free(a->items);
	free(a);
}

static void request_seeds(void)
{
	const char *T;
	char *long_name = repeat('n', 201);
	char *long_str = repeat('r', 4097);
	char *long_consumer = repeat('c', 257);
	char *long_key = repeat('k', 1025);
	char *long_idem = repeat('i', 257);
	char *long_command = repeat('x', 257);

	/* ping, list_subscriptions, stats: empty bodies, and unknown fields */
	static const uint8_t unknown[] = { 0x08, 0x05, 0x12, 0x02, 'h',
					   'i',	 0xa0, 0x06, 0x01 };
	const char *empties[] = { "fuzz_ping", "fuzz_list_subscriptions",
				  "fuzz_stats" };
	/* (fuzz_audit_list has seeds of its own below) */
	for (size_t i = 0; i < 3; i++) {
		write_seed(empties[i], "empty", "", 0);
		write_seed(empties[i], "unknown-fields", unknown,
			   sizeof unknown);
	}

	/* publish */
	T = "fuzz_publish";
	struct {
		const char *name, *topic, *prefix;
		size_t n, payload;
		int headers;
	} pubs[] = {
		{ "one", "t1", "new", 1, 10, 0 },
		{ "three-headers", "t1", "new", 3, 100, 1 },
		{ "t2", "t2", "x", 2, 0, 0 },
		{ "no-subscriptions", "t9", "a", 1, 5, 0 },
		{ "bad-topic", "bad topic!", "a", 1, 5, 0 },
		{ "no-events", "t1", "a", 0, 0, 0 },
		{ "max-batch", "t1", "b", 32, 1, 0 },
		{ "over-batch", "t1", "b", 33, 1, 0 },
		{ "max-payload", "t1", "c", 1, 2048, 0 },
		{ "over-payload", "t1", "c", 1, 2049, 0 },
		{ "duplicate-of-fixture", "t1", "k", 3, 4, 0 },
		{ "empty-header-name", "t1", "d", 1, 4, 2 },
	};
	for (size_t i = 0; i < sizeof pubs / sizeof *pubs; i++) {
		Handoff__Wire__PublishRequest *p =
			publish(pubs[i].topic, pubs[i].n, pubs[i].prefix,
				pubs[i].payload, pubs[i].headers);
		seed_msg(T, pubs[i].name, &p->base);
		publish_free(p);
	}
	{
		Handoff__Wire__PublishRequest *p =
			publish("t1", 2, "same", 3, 0);
		free(p->events[1]->idempotency_key);
		p->events[1]->idempotency_key = strdup("same0");
		seed_msg(T, "same-key-twice", &p->base);
		free(p->events[0]->idempotency_key);
		p->events[0]->idempotency_key = strdup("");
		seed_msg(T, "empty-idempotency-key", &p->base);
		free(p->events[0]->idempotency_key);
		p->events[0]->idempotency_key = strdup(long_idem);
		seed_msg(T, "long-idempotency-key", &p->base);
		p->events[1]->key = long_key;
		seed_msg(T, "long-key", &p->base);
		p->events[1]->key = "";
		p->topic = long_name;
		seed_msg(T, "long-topic", &p->base);
		publish_free(p);
	}

	/* subscribe */
	T = "fuzz_subscribe";
	Handoff__Wire__Policy pol = HANDOFF__WIRE__POLICY__INIT;
	Handoff__Wire__SubscribeRequest s;
	s = sub_req("t1", "s9", NULL);
	seed_msg(T, "new-default-policy", &s.base);
	pol.max_attempts = 2;
	s = sub_req("t1", "s1", &pol);
	seed_msg(T, "existing-same-policy", &s.base);
	s = sub_req("t2", "s1", &pol);
	seed_msg(T, "existing-other-topic", &s.base);
	pol.max_attempts = 7;
	pol.ack_deadline_ms = 5000;
	pol.backoff_min_ms = 10;
	pol.backoff_max_ms = 100;
	s = sub_req("t1", "s1", &pol);
	seed_msg(T, "existing-other-policy", &s.base);
	s = sub_req("t3", "s9", &pol);
	seed_msg(T, "new-policy", &s.base);
	s = sub_req("t2", "s4", NULL);
	seed_msg(T, "reuse-deleted-name", &s.base);
	pol = (Handoff__Wire__Policy)HANDOFF__WIRE__POLICY__INIT;
	pol.max_attempts = 10001;
	s = sub_req("t1", "s9", &pol);
	seed_msg(T, "max-attempts-too-big", &s.base);
	pol.max_attempts = 0;
	pol.ack_deadline_ms = 86400001;
	s = sub_req("t1", "s9", &pol);
	seed_msg(T, "ack-deadline-too-long", &s.base);
	pol.ack_deadline_ms = 0;
	pol.backoff_min_ms = 120000;
	s = sub_req("t1", "s9", &pol);
	seed_msg(T, "backoff-min-over-default-max", &s.base);
	pol.backoff_min_ms = 0;
	pol.backoff_max_ms = 86400001;
	s = sub_req("t1", "s9", &pol);
	seed_msg(T, "backoff-max-too-long", &s.base);
	s = sub_req("bad topic", "s9", NULL);
	seed_msg(T, "bad-topic", &s.base);
	s = sub_req("t1", long_name, NULL);
	seed_msg(T, "long-name", &s.base);
	s = sub_req("t1", "", NULL);
	seed_msg(T, "empty-name", &s.base);

	/* unsubscribe */
	T = "fuzz_unsubscribe";
	const char *unsubs[][2] = {
		{ "s1", "s1" },	     { "s3", "s3" },  { "not-found", "s9" },
		{ "deleted", "s4" }, { "empty", "" }, { "bad-name", "s 1" }
	};
	for (size_t i = 0; i < 6; i++) {
		Handoff__Wire__UnsubscribeRequest u =
			HANDOFF__WIRE__UNSUBSCRIBE_REQUEST__INIT;
		u.subscription = (char *)unsubs[i][1];
		seed_msg(T, unsubs[i][0], &u.base);
	}

	/* pause, resume */
	T = "fuzz_pause";
	const char *pauses[][3] = {
		{ "s1", "s1", "maintenance" }, { "s3", "s3", "x" },
		{ "not-found", "s9", "x" },    { "deleted", "s4", "x" },
		{ "no-reason", "s1", "" },     { "bad-name", "s 1", "x" },
	};
	for (size_t i = 0; i < 6; i++) {
		Handoff__Wire__PauseRequest p =
			HANDOFF__WIRE__PAUSE_REQUEST__INIT;
		p.subscription = (char *)pauses[i][1];
		p.reason = (char *)pauses[i][2];
		seed_msg(T, pauses[i][0], &p.base);
	}
	T = "fuzz_resume";
	for (size_t i = 0; i < 6; i++) {
		Handoff__Wire__ResumeRequest r =
			HANDOFF__WIRE__RESUME_REQUEST__INIT;
		r.subscription = (char *)unsubs[i][1];
		seed_msg(T, unsubs[i][0], &r.base);
	}

	/* fetch */
	T = "fuzz_fetch";
	struct {
		const char *name, *sub, *consumer;
		uint32_t max, wait, max_bytes;
	} fetches[] = {
		{ "s1-c1", "s1", "c1", 5, 0, 0 },
		{ "s2-many", "s2", "c3", 32, 0, 0 },
		{ "s3", "s3", "c2", 1, 0, 0 },
		{ "default-max", "s2", "c2", 0, 0, 0 },
		{ "over-batch", "s2", "c2", 33, 0, 0 },
		{ "long-poll", "s3", "c3", 2, 1000, 0 },
		{ "long-poll-nothing", "s1", "c3", 1, 5000, 0 },
		{ "wait-too-long", "s1", "c1", 1, 60001, 0 },
		{ "max-bytes-small", "s2", "c1", 4, 0, 100 },
		{ "max-bytes-1024", "s2", "c1", 4, 0, 1024 },
		{ "deleted", "s4", "c1", 1, 0, 0 },
		{ "not-found", "s9", "c1", 1, 0, 0 },
		{ "empty-consumer", "s1", "", 1, 0, 0 },
		{ "bad-sub", "s/1 x", "c1", 1, 0, 0 },
	};
	for (size_t i = 0; i < sizeof fetches / sizeof *fetches; i++) {
		Handoff__Wire__FetchRequest f =
			fetch_req(fetches[i].sub, fetches[i].consumer,
				  fetches[i].max, fetches[i].wait, i);
		f.max_bytes = fetches[i].max_bytes;
		seed_msg(T, fetches[i].name, &f.base);
	}
	{
		Handoff__Wire__FetchRequest f =
			fetch_req("s1", long_consumer, 1, 0, 0);
		seed_msg(T, "long-consumer", &f.base);
	}

	/* ack, nack: tokens 1..6 are the fixture's leases (s1: 1-4, s2: 1-2,
	 * s3: 7-9), event 0 = that lease's event */
	uint64_t refs[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	uint64_t zero[9] = { 0 };
	uint64_t evs[] = { 4, 4, 1, 2 };
	uint64_t wrong[] = { 12345678901234ull, 0, 64, 1 };
	T = "fuzz_ack";
	{
		Handoff__Wire__AckRequest *a;
		a = ack_req("", 9, zero, refs);
		seed_msg(T, "every-lease", &a->base);
		ack_free(a);
		a = ack_req("s1", 1, evs, (uint64_t[]){ 4 });
		seed_msg(T, "s1-open", &a->base);
		ack_free(a);
		a = ack_req("s1", 4, evs, wrong);
		seed_msg(T, "wrong-tokens", &a->base);
		ack_free(a);
		a = ack_req("s1", 0, NULL, NULL);
		seed_msg(T, "no-items", &a->base);
		ack_free(a);
		a = ack_req("s1", 33, NULL, NULL);
		seed_msg(T, "over-batch", &a->base);
		ack_free(a);
		a = ack_req("s9", 1, NULL, NULL);
		seed_msg(T, "not-found", &a->base);
		ack_free(a);
		a = ack_req("s 1", 1, NULL, NULL);
		seed_msg(T, "bad-name", &a->base);
		ack_free(a);
		a = ack_req("", 2, zero, (uint64_t[]){ 2, 2 });
		seed_msg(T, "acked-again", &a->base);
		ack_free(a);
	}
	T = "fuzz_extend";
	{
		Handoff__Wire__ExtendRequest *a;
		a = extend_req("", 9, zero, refs, 60000);
		seed_msg(T, "every-lease", &a->base);
		extend_free(a);
		a = extend_req("s1", 1, evs, (uint64_t[]){ 4 }, 1);
		seed_msg(T, "s1-open-1ms", &a->base);
		extend_free(a);
		a = extend_req("", 2, zero, refs, 43200000);
		seed_msg(T, "12h", &a->base);
		extend_free(a);
		a = extend_req("", 1, zero, refs, 43200001);
		seed_msg(T, "over-12h", &a->base);
		extend_free(a);
		a = extend_req("", 1, zero, refs, 0);
		seed_msg(T, "zero-ms", &a->base);
		extend_free(a);
		a = extend_req("s1", 4, evs, wrong, 30000);
		seed_msg(T, "wrong-tokens", &a->base);
		extend_free(a);
		a = extend_req("", 2, zero, (uint64_t[]){ 2, 2 }, 30000);
		seed_msg(T, "acked", &a->base);
		extend_free(a);
		a = extend_req("s1", 0, NULL, NULL, 30000);
		seed_msg(T, "no-items", &a->base);
		extend_free(a);
		a = extend_req("s1", 33, NULL, NULL, 30000);
		seed_msg(T, "over-batch", &a->base);
		extend_free(a);
		a = extend_req("s9", 1, NULL, NULL, 30000);
		seed_msg(T, "not-found", &a->base);
		extend_free(a);
		a = extend_req("s 1", 1, NULL, NULL, 30000);
		seed_msg(T, "bad-name", &a->base);
		extend_free(a);
	}
	T = "fuzz_nack";
	{
		Handoff__Wire__NackRequest *a;
		a = nack_req("", 9, zero, refs, false, 0, "timeout");
		seed_msg(T, "every-lease", &a->base);
		nack_free(a);
		a = nack_req("", 9, zero, refs, false, 0, "consumer stopped");
		a->release = true;
		seed_msg(T, "release-every-lease", &a->base);
		nack_free(a);
		a = nack_req("", 2, zero, refs + 3, false, 5, "");
		a->release = true;
		seed_msg(T, "release-with-delay", &a->base);
		nack_free(a);
		a = nack_req("", 2, zero, refs + 3, true, 0, "");
		a->release = true;
		seed_msg(T, "release-permanent", &a->base);
		nack_free(a);
		a = nack_req("", 3, zero, refs + 3, true, 0, "cannot parse");
		seed_msg(T, "permanent", &a->base);
		nack_free(a);
		a = nack_req("", 2, zero, refs + 3, false, 86400000, "");
		seed_msg(T, "delay-24h", &a->base);
		nack_free(a);
		a = nack_req("", 1, zero, refs + 3, false, 86400001, "");
		seed_msg(T, "delay-too-long", &a->base);
		nack_free(a);
		a = nack_req("", 1, zero, refs + 3, false, 0, long_str);
		seed_msg(T, "reason-too-long", &a->base);
		nack_free(a);
		a = nack_req("s1", 4, evs, wrong, false, 0, NULL);
		seed_msg(T, "wrong-tokens", &a->base);
		nack_free(a);
		a = nack_req("s1", 0, NULL, NULL, false, 0, NULL);
		seed_msg(T, "no-items", &a->base);
		nack_free(a);
		a = nack_req("s1", 33, NULL, NULL, false, 0, NULL);
		seed_msg(T, "over-batch", &a->base);
		nack_free(a);
		a = nack_req("s9", 1, NULL, NULL, false, 0, NULL);
		seed_msg(T, "not-found", &a->base);
		nack_free(a);
		a = nack_req("", 2, zero, (uint64_t[]){ 4, 4 }, false, 5,
			     "twice");
		seed_msg(T, "same-lease-twice", &a->base);
		nack_free(a);
	}

	/* dead letters */
	T = "fuzz_dlq_list";
	{
		Handoff__Wire__DlqFilter f = HANDOFF__WIRE__DLQ_FILTER__INIT;
		Handoff__Wire__DlqListRequest l =
			HANDOFF__WIRE__DLQ_LIST_REQUEST__INIT;
		l.subscription = "s1";
		seed_msg(T, "default-limit", &l.base);
		l.limit = 10;
		seed_msg(T, "s1", &l.base);
		l.subscription = "s3";
		l.limit = 1;
		seed_msg(T, "s3-limit-1", &l.base);
		l.limit = 33;
		seed_msg(T, "over-batch", &l.base);
		l.limit = 10;
		l.filter = &f;
		f.reason = HANDOFF__WIRE__DEAD_REASON__DEAD_REASON_PERMANENT;
		seed_msg(T, "by-reason", &l.base);
		f.reason = 0;
		f.error_contains = "parse";
		seed_msg(T, "by-error", &l.base);
		f.error_contains = "";
		f.after_event_id = 7;
		seed_msg(T, "after-7", &l.base);
		f.after_event_id = 0;
		f.dead_since_ms = 1700000000000ull;
		f.dead_until_ms = 1700000000001ull;
		seed_msg(T, "by-time", &l.base);
		l.filter = NULL;
		l.subscription = "s4";
		seed_msg(T, "deleted", &l.base);
		l.subscription = "";
		seed_msg(T, "empty-name", &l.base);
	}
	T = "fuzz_dlq_show";
	{
		struct {
			const char *name, *sub;
			uint64_t ev;
		} shows[] = {
			{ "s1-1", "s1", 1 },	  { "s3-7", "s3", 7 },
			{ "s3-8", "s3", 8 },	  { "not-dead", "s1", 4 },
			{ "no-event", "s1", 99 }, { "not-found", "s9", 1 },
			{ "bad-name", "", 1 },
		};
		for (size_t i = 0; i < sizeof shows / sizeof *shows; i++) {
			Handoff__Wire__DlqShowRequest d =
				HANDOFF__WIRE__DLQ_SHOW_REQUEST__INIT;
			d.subscription = (char *)shows[i].sub;
			d.event_id = shows[i].ev;
			seed_msg(T, shows[i].name, &d.base);
		}
	}
	for (int purge = 0; purge < 2; purge++) {
		T = purge ? "fuzz_dlq_purge" : "fuzz_dlq_replay";
		Handoff__Wire__DlqFilter f = HANDOFF__WIRE__DLQ_FILTER__INIT;
		Handoff__Wire__DlqActionRequest a =
			HANDOFF__WIRE__DLQ_ACTION_REQUEST__INIT;
		uint64_t ids[] = { 7, 8, 9, 1 };
		uint64_t many[33];
		for (int i = 0; i < 33; i++)
			many[i] = (uint64_t)i + 1;
		a.subscription = "s3";
		a.n_event_ids = 3;
		a.event_ids = ids;
		seed_msg(T, "s3-ids-default-limit", &a.base);
		a.limit = 10;
		seed_msg(T, "s3-ids", &a.base);
		a.dry_run = true;
		seed_msg(T, "s3-ids-dry-run", &a.base);
		a.dry_run = false;
		a.subscription = "s1";
		a.n_event_ids = 4;
		a.event_ids = ids;
		seed_msg(T, "s1-ids-missing", &a.base);
		a.n_event_ids = 0;
		a.all = true;
		seed_msg(T, "s1-all", &a.base);
		a.all = false;
		seed_msg(T, "s1-filter-not-all", &a.base);
		a.subscription = "s3";
		a.filter = &f;
		a.limit = 1;
		a.all = true;
		f.reason = HANDOFF__WIRE__DEAD_REASON__DEAD_REASON_MAX_ATTEMPTS;
		seed_msg(T, "s3-filter-limit-1", &a.base);
		a.dry_run = true;
		a.all = false;
		seed_msg(T, "s3-filter-dry-run", &a.base);
		a.dry_run = false;
		a.filter = NULL;
		a.limit = 33;
		seed_msg(T, "over-batch-limit", &a.base);
		a.limit = 10;
		a.n_event_ids = 33;
		a.event_ids = many;
		seed_msg(T, "over-batch-ids", &a.base);
		a.n_event_ids = 1;
		a.subscription = "s9";
		seed_msg(T, "not-found", &a.base);
		/* operator commands: the fixture ran "cmd-1" */
		a.subscription = "s3";
		a.n_event_ids = 2;
		a.event_ids = ids + 1;
		a.command_id = "cmd-1";
		a.reason = "replayed after the fix of #42";
		seed_msg(T, "command-run-before", &a.base);
		a.command_id = "cmd-new";
		seed_msg(T, "command-new", &a.base);
		a.dry_run = true;
		seed_msg(T, "command-dry-run", &a.base);
		a.dry_run = false;
		a.command_id = long_command;
		seed_msg(T, "command-id-too-long", &a.base);
		a.command_id = "cmd-new";
		a.reason = long_str;
		seed_msg(T, "reason-too-long", &a.base);
		a.command_id = NULL;
		a.reason = NULL;
	}
	T = "fuzz_audit_list";
	{
		Handoff__Wire__AuditListRequest a =
			HANDOFF__WIRE__AUDIT_LIST_REQUEST__INIT;
		seed_msg(T, "default-limit", &a.base);
		a.limit = 10;
		seed_msg(T, "all", &a.base);
		a.after_seq = 1;
		a.limit = 1;
		seed_msg(T, "after-1-limit-1", &a.base);
		a.after_seq = 0;
		a.limit = 33;
		seed_msg(T, "over-batch", &a.base);
		a.limit = 2;
		a.after_seq = UINT64_MAX;
		seed_msg(T, "after-max", &a.base);
	}
	T = "fuzz_trace";
	for (uint64_t ev = 0; ev <= 11; ev++) {
		char name[32];
		Handoff__Wire__TraceRequest t =
			HANDOFF__WIRE__TRACE_REQUEST__INIT;
		t.event_id = ev == 11 ? 999 : ev;
		snprintf(name, sizeof name, "event-%llu",
			 (unsigned long long)t.event_id);
		seed_msg(T, name, &t.base);
	}
	/* await: the fixture's events, named subscriptions (one not of the
	 * topic, a bad name), timeouts 0, held, over max_wait */
	T = "fuzz_await";
	struct {
		const char *name;
		uint64_t ev;
		const char *sub;
		uint32_t timeout_ms;
	} awaits[] = {
		{ "now-1", 1, NULL, 0 },       { "now-2", 2, NULL, 0 },
		{ "now-5", 5, NULL, 0 },       { "held-1", 1, NULL, 1000 },
		{ "held-3", 3, NULL, 500 },    { "named-s1", 1, "s1", 0 },
		{ "named-s3", 3, "s3", 1000 }, { "not-of-topic", 1, "s9", 0 },
		{ "bad-name", 1, "s 1", 0 },   { "unknown", 999, NULL, 100 },
		{ "zero", 0, NULL, 0 },	       { "too-long", 1, NULL, 3600000 },
	};
	for (size_t i = 0; i < sizeof awaits / sizeof awaits[0]; i++) {
		Handoff__Wire__AwaitRequest a =
			HANDOFF__WIRE__AWAIT_REQUEST__INIT;
		char *subs[1] = { (char *)awaits[i].sub };
		a.event_id = awaits[i].ev;
		a.timeout_ms = awaits[i].timeout_ms;
		if (awaits[i].sub) {
			a.subscriptions = subs;
			a.n_subscriptions = 1;
		}
		seed_msg(T, awaits[i].name, &a.base);
	}
	free(long_name);
	free(long_str);
	free(long_consumer);
	free(long_key);
	free(long_idem);
	free(long_command);
}

/* ---- fuzz_handlers: operation lists ------------------------------------ */

/* operations of fuzz_handlers.c */
enum {
	OP_REQ = 0,
	OP_REQ_TURN = 4,
	OP_TURN = 6,
	OP_CLOCK = 8,
	OP_RESEND = 10,
	OP_AMPLIFY = 11,
	OP_RESTART = 12,
	OP_SIGN = 14
};
/* OP_SIGN arguments: the signer, and how to spoil the signature */
enum {
	SG_NONE = 0,
	SG_PROD = 1,
	SG_CONS = 2,
	SG_OPS = 3,
	SG_ALL = 4,
	SG_GHOST = 5,
	SG_PAST = 8,
	SG_FUTURE = 16,
	SG_BAD_MAC = 32
};
/* steps of fuzz_handlers.c */
enum {
	CK_1MS = 1,
	CK_1S = 5,
	CK_1_5S = 6,
	CK_5S = 7,
	CK_30S = 9,
	CK_60S = 10,
	CK_10MIN = 11,
	CK_30MIN = 12,
	CK_1H = 13,
	CK_1D = 14,
	CK_7D = 15
};

static void op_req(struct buf *b, Request *q, bool turn)
{
	struct buf m = { 0 };
	q->protocol_version = q->protocol_version ? q->protocol_version : 1;
	put_msg(&m, &q->base);
	put_byte(b, (uint8_t)(turn ? OP_REQ_TURN : OP_REQ));
	put_varint(b, m.len);
	put(b, m.p, m.len);
	free(m.p);
}

static void op_raw(struct buf *b, const void *p, size_t n, bool turn)
{
	put_byte(b, (uint8_t)(turn ? OP_REQ_TURN : OP_REQ));
	put_varint(b, n);
	put(b, p, n);
}

static void op(struct buf *b, int code, int arg)
{
	put_byte(b, (uint8_t)code);
	if (arg >= 0)
		put_byte(b, (uint8_t)arg);
}

static void r_subscribe(struct buf *b, const char *topic, const char *name,
			uint32_t max_attempts, uint32_t ack_ms, bool turn)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__Policy p = HANDOFF__WIRE__POLICY__INIT;
	p.max_attempts = max_attempts;
	p.ack_deadline_ms = ack_ms;
	p.backoff_min_ms = 100;
	p.backoff_max_ms = 1000;
	Handoff__Wire__SubscribeRequest s = sub_req(topic, name, &p);
	q.body_case = BODY(SUBSCRIBE);
	q.subscribe = &s;
	op_req(b, &q, turn);
}

static void r_unsubscribe(struct buf *b, const char *name, bool turn)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__UnsubscribeRequest u =
		HANDOFF__WIRE__UNSUBSCRIBE_REQUEST__INIT;
	u.subscription = (char *)name;
	q.body_case = BODY(UNSUBSCRIBE);
	q.unsubscribe = &u;
	op_req(b, &q, turn);
}

static void r_publish(struct buf *b, const char *topic, size_t n,
		      const char *prefix, size_t payload, bool turn)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__PublishRequest *p =
		publish(topic, n, prefix, payload, n % 2);
	q.body_case = BODY(PUBLISH);
	q.publish = p;
	op_req(b, &q, turn);
	publish_free(p);
}

static void r_fetch(struct buf *b, const char *sub, const char *consumer,
		    uint32_t max, uint32_t wait, uint64_t seq, bool turn)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__FetchRequest f =
		fetch_req(sub, consumer, max, wait, seq);
	q.body_case = BODY(FETCH);
	q.fetch = &f;
	op_req(b, &q, turn);
}

static void r_ack(struct buf *b, size_t n, const uint64_t *refs, bool turn)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	uint64_t zero[32] = { 0 };
	q.body_case = BODY(ACK);
	q.ack = ack_req("", n, zero, refs);
	op_req(b, &q, turn);
	ack_free(q.ack);
}

static void r_nack(struct buf *b, size_t n, const uint64_t *refs,
		   bool permanent, uint32_t delay, bool turn)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	uint64_t zero[32] = { 0 };
	q.body_case = BODY(NACK);
	q.nack = nack_req("", n, zero, refs, permanent, delay,
			  permanent ? "poison" : "busy");
	op_req(b, &q, turn);
	nack_free(q.nack);
}

static void r_extend(struct buf *b, size_t n, const uint64_t *refs, uint32_t ms,
		     bool turn)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	uint64_t zero[32] = { 0 };
	q.body_case = BODY(EXTEND);
	q.extend = extend_req("", n, zero, refs, ms);
	op_req(b, &q, turn);
	extend_free(q.extend);
}

static void r_simple(struct buf *b, int body, bool turn)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__PingRequest ping = HANDOFF__WIRE__PING_REQUEST__INIT;
	Handoff__Wire__ListSubscriptionsRequest list =
		HANDOFF__WIRE__LIST_SUBSCRIPTIONS_REQUEST__INIT;
	Handoff__Wire__StatsRequest stats = HANDOFF__WIRE__STATS_REQUEST__INIT;
	q.body_case = body;
	if (body == BODY(PING))
		q.ping = &ping;
	else if (body == BODY(LIST_SUBSCRIPTIONS))
		q.list_subscriptions = &list;
	else
		q.stats = &stats;
	op_req(b, &q, turn);
}

static void r_trace(struct buf *b, uint64_t ev, bool turn)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__TraceRequest t = HANDOFF__WIRE__TRACE_REQUEST__INIT;
	t.event_id = ev;
	q.body_case = BODY(TRACE);
	q.trace = &t;
	op_req(b, &q, turn);
}

static const char *dlq_command_id; /* for the next r_dlq calls */

static void r_dlq(struct buf *b, int body, const char *sub, bool by_filter,
		  uint64_t ev, bool turn)
{
	Request q = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__DlqListRequest l = HANDOFF__WIRE__DLQ_LIST_REQUEST__INIT;
	Handoff__Wire__DlqShowRequest s = HANDOFF__WIRE__DLQ_SHOW_REQUEST__INIT;
	Handoff__Wire__DlqActionRequest a =
		HANDOFF__WIRE__DLQ_ACTION_REQUEST__INIT;
	q.body_case = body;
	l.subscription = s.subscription = a.subscription = (char *)sub;
	s.event_id = ev;
	if (!by_filter) {
		a.n_event_ids = 1;
		a.event_ids = &ev;
	}
	a.all = true;
	a.limit = l.limit = 10;
	a.command_id = (char *)dlq_command_id;
	if (body == BODY(DLQ_LIST))
		q.dlq_list = &l;
	else if (body == BODY(DLQ_SHOW))
		q.dlq_show = &s;
	else if (body == BODY(DLQ_REPLAY))
		q.dlq_replay = &a;
	else
		q.dlq_purge = &a;
	op_req(b, &q, turn);
}

static void handler_seeds(void)
{
	const char *T = "fuzz_handlers";
	struct buf b = { 0 };
	uint64_t r123[] = { 1, 2, 3, 4, 5, 6, 7, 8 };

#define SEED(name)                               \
	do {                                     \
		write_seed(T, name, b.p, b.len); \
		b.len = 0;                       \
	} while (0)

	/* lease, ack, nack, list and stats in one turn */
	r_subscribe(&b, "t1", "s1", 3, 30000, false);
	r_publish(&b, "t1", 3, "a", 20, true);
	r_fetch(&b, "s1", "c1", 3, 0, 1, true);
	r_ack(&b, 1, r123, false);
	r_nack(&b, 1, r123 + 1, false, 0, false);
	r_nack(&b, 1, r123 + 2, true, 0, false);
	r_simple(&b, BODY(LIST_SUBSCRIPTIONS), false);
	r_simple(&b, BODY(STATS), true);
	SEED("ack-nack");

	/* expiry to dead letter, replay, lease again, purge */
	r_subscribe(&b, "t1", "s1", 1, 1000, true);
	r_publish(&b, "t1", 2, "e", 5, true);
	r_fetch(&b, "s1", "c1", 2, 0, 1, true);
	op(&b, OP_CLOCK, CK_1_5S);
	op(&b, OP_TURN, -1);
	r_dlq(&b, BODY(DLQ_LIST), "s1", true, 0, true);
	r_dlq(&b, BODY(DLQ_SHOW), "s1", false, 1, true);
	r_dlq(&b, BODY(DLQ_REPLAY), "s1", false, 1, true);
	r_fetch(&b, "s1", "c1", 2, 0, 2, true);
	r_dlq(&b, BODY(DLQ_PURGE), "s1", true, 0, true);
	r_trace(&b, 1, false);
	r_trace(&b, 2, true);
	SEED("expiry-replay-purge");

	/* operator commands: a replay and a purge resent with their command
	 * ids run once; the audit trail lists them */
	r_subscribe(&b, "t1", "s1", 1, 30000, true);
	r_publish(&b, "t1", 3, "o", 5, true);
	r_fetch(&b, "s1", "c1", 3, 0, 1, true);
	r_nack(&b, 3, r123, true, 0, true);
	dlq_command_id = "replay-1";
	r_dlq(&b, BODY(DLQ_REPLAY), "s1", false, 1, true); /* request 4 */
	op(&b, OP_RESEND, 4);
	op(&b, OP_TURN, -1);
	dlq_command_id = "purge-1";
	r_dlq(&b, BODY(DLQ_PURGE), "s1", true, 0, false); /* request 6 */
	op(&b, OP_RESEND, 6);
	op(&b, OP_TURN, -1);
	dlq_command_id = NULL;
	{
		Request q = HANDOFF__WIRE__REQUEST__INIT;
		Handoff__Wire__AuditListRequest al =
			HANDOFF__WIRE__AUDIT_LIST_REQUEST__INIT;
		al.limit = 10;
		q.body_case = BODY(AUDIT_LIST);
		q.audit_list = &al;
		op_req(&b, &q, true);
	}
	op(&b, OP_CLOCK, CK_10MIN);
	op(&b, OP_RESEND, 4);
	op(&b, OP_TURN, -1);
	SEED("operator-commands");

	/* nack with backoff, retry due later, attempts used up */
	r_subscribe(&b, "t1", "s1", 2, 30000, true);
	r_publish(&b, "t1", 1, "r", 5, true);
	r_fetch(&b, "s1", "c1", 1, 0, 1, true);
	r_nack(&b, 1, r123, false, 0, true);
	r_fetch(&b, "s1", "c1", 1, 0, 2, true);
	op(&b, OP_CLOCK, CK_1_5S);
	r_fetch(&b, "s1", "c1", 1, 0, 3, true);
	r_nack(&b, 1, r123 + 1, false, 0, true);
	r_dlq(&b, BODY(DLQ_LIST), "s1", true, 0, true);
	SEED("retry-then-dead");

	/* extend: one lease kept past its deadline, the other expires; then
	 * the kept one expires at its new deadline, and the stale token of
	 * the expired one is refused */
	r_subscribe(&b, "t1", "s1", 3, 1000, true);
	r_publish(&b, "t1", 2, "x", 5, true);
	r_fetch(&b, "s1", "c1", 2, 0, 1, true);
	r_extend(&b, 1, r123, 5000, true);
	op(&b, OP_CLOCK, CK_1_5S);
	op(&b, OP_TURN, -1);
	r_extend(&b, 2, r123, 5000, true);
	r_fetch(&b, "s1", "c2", 2, 0, 1, true);
	op(&b, OP_CLOCK, CK_5S);
	op(&b, OP_TURN, -1);
	r_ack(&b, 1, r123, true);
	SEED("extend");

	/* a held fetch served by a later publish */
	r_subscribe(&b, "t1", "s1", 3, 30000, true);
	r_fetch(&b, "s1", "c1", 2, 5000, 1, true);
	r_publish(&b, "t1", 2, "h", 5, true);
	r_ack(&b, 2, r123, true);
	r_fetch(&b, "s1", "c2", 1, 1000, 1, true);
	op(&b, OP_CLOCK, CK_5S);
	op(&b, OP_TURN, -1);
	SEED("held-fetch");

	/* resent fetches: from the cache, and taking over a held one */
	r_subscribe(&b, "t1", "s1", 3, 30000, false);
	r_publish(&b, "t1", 2, "c", 5, true);
	r_fetch(&b, "s1", "c1", 1, 0, 7, true);
	op(&b, OP_RESEND, 2);
	op(&b, OP_TURN, -1);
	r_fetch(&b, "s1", "c2", 5, 0, 1, true);
	r_fetch(&b, "s1", "c3", 1, 3000, 9, true);
	op(&b, OP_RESEND, 5);
	op(&b, OP_TURN, -1);
	r_publish(&b, "t1", 1, "d", 5, true);
	r_ack(&b, 3, r123, true);
	SEED("resend-fetch");

	/* too many held fetches */
	r_subscribe(&b, "t1", "s1", 3, 30000, true);
	for (int i = 0; i < 5; i++)
		r_fetch(&b, "s1", i % 2 ? "c1" : "c2", 1, 2000, (uint64_t)i + 1,
			false);
	op(&b, OP_TURN, -1);
	r_fetch(&b, "s1", "c3", 1, 2000, 1, true);
	op(&b, OP_CLOCK, CK_5S);
	op(&b, OP_TURN, -1);
	SEED("held-limit");

	/* restart with leases out, then ack with the old token */
	r_subscribe(&b, "t1", "s1", 3, 30000, false);
	r_subscribe(&b, "t1", "s2", 3, 30000, true);
	r_publish(&b, "t1", 3, "x", 5, true);
	r_fetch(&b, "s1", "c1", 3, 0, 1, true);
	r_fetch(&b, "s2", "c1", 1, 0, 2, true);
	r_fetch(&b, "s2", "c2", 1, 4000, 3, true);
	op(&b, OP_RESTART, -1);
	r_ack(&b, 2, r123, true);
	op(&b, OP_TURN, -1);
	r_fetch(&b, "s1", "c1", 3, 0, 1, true);
	r_ack(&b, 4, r123 + 3, true);
	SEED("restart");

	/* deduplication: within the window, then after it */
	r_subscribe(&b, "t1", "s1", 3, 30000, true);
	r_publish(&b, "t1", 2, "k", 5, true);
	r_publish(&b, "t1", 2, "k", 5, false);
	r_publish(&b, "t1", 3, "k", 5, true);
	op(&b, OP_CLOCK, CK_10MIN);
	r_publish(&b, "t1", 2, "k", 5, true);
	op(&b, OP_CLOCK, CK_1_5S);
	op(&b, OP_TURN, -1);
	r_trace(&b, 1, true);
	SEED("dedup-window");

	/* the store fills up: publishes refused, then drained by acks */
	r_subscribe(&b, "t1", "s1", 3, 30000, false);
	r_subscribe(&b, "t1", "s2", 3, 30000, false);
	r_subscribe(&b, "t1", "s3", 3, 30000, true);
	r_publish(&b, "t1", 12, "big", 250, false);
	op(&b, OP_AMPLIFY, 5);
	op(&b, OP_TURN, -1);
	op(&b, OP_AMPLIFY, 5);
	op(&b, OP_TURN, -1);
	op(&b, OP_AMPLIFY, 5);
	op(&b, OP_TURN, -1);
	r_fetch(&b, "s1", "c1", 32, 0, 1, true);
	r_ack(&b, 8, r123, true);
	r_simple(&b, BODY(STATS), true);
	SEED("store-full");

	/* unsubscribe while deliveries are ready, leased and dead */
	r_subscribe(&b, "t1", "s1", 1, 30000, true);
	r_publish(&b, "t1", 4, "u", 5, true);
	r_fetch(&b, "s1", "c1", 2, 0, 1, true);
	r_nack(&b, 1, r123, true, 0, true);
	r_unsubscribe(&b, "s1", false);
	r_ack(&b, 1, r123 + 1, true);
	r_subscribe(&b, "t1", "s1", 2, 30000, true);
	r_publish(&b, "t1", 1, "v", 5, true);
	op(&b, OP_CLOCK, CK_1S);
	op(&b, OP_TURN, -1);
	r_trace(&b, 1, false);
	r_trace(&b, 3, true);
	SEED("unsubscribe-live");

	/* a subscription created and listed in the same turn */
	r_subscribe(&b, "t1", "s1", 3, 30000, false);
	r_simple(&b, BODY(LIST_SUBSCRIPTIONS), false);
	r_subscribe(&b, "t2", "s2", 3, 30000, false);
	r_unsubscribe(&b, "s1", false);
	r_simple(&b, BODY(LIST_SUBSCRIPTIONS), false);
	r_simple(&b, BODY(STATS), true);
	SEED("same-turn-list");

	/* the per-consumer lease limit (24) and max_backlog (300) */
	r_subscribe(&b, "t1", "s1", 3, 30000, true);
	r_publish(&b, "t1", 32, "l", 1, true);
	r_fetch(&b, "s1", "c1", 20, 0, 1, true);
	r_fetch(&b, "s1", "c1", 20, 0, 2, true);
	r_fetch(&b, "s1", "c1", 1, 0, 3, true);
	r_publish(&b, "t1", 32, "m", 1, false);
	op(&b, OP_AMPLIFY, 4);
	op(&b, OP_TURN, -1);
	SEED("limits");

	/* everything finished, then history and dedup records expire */
	r_subscribe(&b, "t1", "s1", 3, 30000, true);
	r_publish(&b, "t1", 2, "z", 5, true);
	r_fetch(&b, "s1", "c1", 2, 0, 1, true);
	r_ack(&b, 2, r123, true);
	op(&b, OP_CLOCK, CK_1H);
	op(&b, OP_TURN, -1);
	op(&b, OP_TURN, -1);
	r_trace(&b, 1, false);
	r_ack(&b, 1, r123, true);
	op(&b, OP_CLOCK, CK_7D);
	op(&b, OP_TURN, -1);
	SEED("history-cleanup");

	/* access control on (the input begins with OP_SIGN): roles, topic
	 * and subscription patterns, unsigned, unknown key, bad MAC, stale
	 * signatures, replays, a restart */
	op(&b, OP_SIGN, SG_ALL);
	r_subscribe(&b, "t1", "s1", 3, 30000, false);
	r_subscribe(&b, "t1", "s2", 3, 30000, true);
	r_publish(&b, "t1", 3, "a", 5, true);
	op(&b, OP_SIGN, SG_PROD);
	r_publish(&b, "t2", 1, "b", 5, false);
	r_publish(&b, "t3", 1, "c", 5, false);
	r_fetch(&b, "s1", "c1", 1, 0, 1, true);
	op(&b, OP_SIGN, SG_CONS);
	r_fetch(&b, "s1", "c1", 2, 0, 2, false);
	r_fetch(&b, "s2", "c1", 1, 0, 3, true);
	r_ack(&b, 1, r123, true);
	op(&b, OP_RESEND, 8);
	op(&b, OP_TURN, -1);
	op(&b, OP_SIGN, SG_OPS);
	r_simple(&b, BODY(STATS), false);
	dlq_command_id = "ops-1";
	r_dlq(&b, BODY(DLQ_PURGE), "s1", true, 0, false);
	dlq_command_id = NULL;
	r_unsubscribe(&b, "s2", true);
	op(&b, OP_SIGN, SG_NONE);
	r_simple(&b, BODY(STATS), false);
	r_simple(&b, BODY(PING), false);
	op(&b, OP_SIGN, SG_GHOST);
	r_simple(&b, BODY(STATS), false);
	op(&b, OP_SIGN, SG_OPS | SG_BAD_MAC);
	r_simple(&b, BODY(STATS), false);
	op(&b, OP_SIGN, SG_OPS | SG_PAST);
	r_simple(&b, BODY(STATS), false);
	op(&b, OP_SIGN, SG_OPS | SG_FUTURE);
	r_simple(&b, BODY(STATS), true);
	op(&b, OP_SIGN, SG_OPS);
	r_simple(&b, BODY(LIST_SUBSCRIPTIONS), false);
	op(&b, OP_CLOCK, CK_60S);
	op(&b, OP_TURN, -1);
	r_simple(&b, BODY(STATS), true);
	op(&b, OP_RESTART, -1);
	op(&b, OP_RESEND, 14);
	r_simple(&b, BODY(STATS), true);
	SEED("access-control");

	/* what does not decode, another version, no body */
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0x0a, 0x99 };
	static const uint8_t v2_ping[] = { 0x08, 0x02, 0x52, 0x00 };
	static const uint8_t v0_ping[] = { 0x52, 0x00 };
	static const uint8_t no_body[] = { 0x08, 0x01 };
	static const uint8_t ping[] = { 0x08, 0x01, 0x52, 0x00 };
	op_raw(&b, junk, sizeof junk, false);
	op_raw(&b, v2_ping, sizeof v2_ping, false);
	op_raw(&b, v0_ping, sizeof v0_ping, false);
	op_raw(&b, no_body, sizeof no_body, false);
	op_raw(&b, ping, sizeof ping, false);
	op_raw(&b, "", 0, true);
	SEED("malformed");
	free(b.p);
#undef SEED
}

/* ---- fuzz_client_reply ------------------------------------------------ */

static void client_seed(const char *name, int which, int n, int id,
			Reply *const *replies, size_t n_replies)
{
	struct buf b = { 0 };
	put_byte(&b, (uint8_t)which);
	put_byte(&b, (uint8_t)(n - 1));
	put_byte(&b, (uint8_t)id);
	for (size_t i = 0; i < n_replies; i++) {
		struct buf m = { 0 };
		replies[i]->protocol_version = 1;
		put_msg(&m, &replies[i]->base);
		put_varint(&b, m.len);
		put(&b, m.p, m.len);
		free(m.p);
	}
	write_seed("fuzz_client_reply", name, b.p, b.len);
	free(b.p);
}

static void client_seeds(void)
{
	Reply ok = HANDOFF__WIRE__REPLY__INIT;
	Reply err = HANDOFF__WIRE__REPLY__INIT;
	Reply down = HANDOFF__WIRE__REPLY__INIT;
	Reply *one[1], *two[2];

	err.status = ST(NOT_FOUND);
	err.message = "no subscription 's1'";
	down.status = ST(SHUTTING_DOWN);
	down.retry_after_ms = 100;
	down.message = "stopping";

	Handoff__Wire__PingReply ping = HANDOFF__WIRE__PING_REPLY__INIT;
	ping.version = HANDOFF_BUILD_VERSION;
	ok.body_case = RBODY(PING);
	ok.ping = &ping;
	one[0] = &ok;
	client_seed("connect", 0, 1, 0, one, 1);
	Reply v2 = ok;
	v2.status = ST(UNSUPPORTED_VERSION);
	v2.message = "protocol version 1 not supported";
	one[0] = &v2;
	client_seed("connect-version", 0, 1, 0, one, 1);

	/* publish of 2 */
	uint64_t ids[] = { 11, 12 };
	protobuf_c_boolean dups[] = { 0, 1 };
	Handoff__Wire__PublishReply pr = HANDOFF__WIRE__PUBLISH_REPLY__INIT;
	pr.n_event_ids = 2;
	pr.event_ids = ids;
	pr.n_duplicates = 2;
	pr.duplicates = dups;
	ok.body_case = RBODY(PUBLISH);
	ok.publish = &pr;
	one[0] = &ok;
	client_seed("publish", 1, 2, 0, one, 1);
	two[0] = &down;
	two[1] = &ok;
	client_seed("publish-after-shutting-down", 1, 2, 0, two, 2);
	pr.n_duplicates = 0;
	client_seed("publish-no-duplicates", 1, 2, 0, one, 1);
	one[0] = &err;
	client_seed("publish-error", 1, 2, 0, one, 1);

	/* subscribe */
	Handoff__Wire__Policy pol = {
		PROTOBUF_C_MESSAGE_INIT(&handoff__wire__policy__descriptor), 3,
		30000, 1000, 60000
	};
	Handoff__Wire__SubscribeReply sr = HANDOFF__WIRE__SUBSCRIBE_REPLY__INIT;
	sr.created = 1;
	sr.policy = &pol;
	ok.body_case = RBODY(SUBSCRIBE);
	ok.subscribe = &sr;
	one[0] = &ok;
	client_seed("subscribe", 2, 3, 0, one, 1);
	sr.policy = NULL;
	client_seed("subscribe-no-policy", 2, 3, 0, one, 1);

	/* unsubscribe: no body */
	ok.body_case = RBODY(_NOT_SET);
	client_seed("unsubscribe", 3, 1, 0, one, 1);
	ok.body_case = RBODY(PING);
	ok.ping = &ping;
	client_seed("unsubscribe-with-body", 3, 1, 0, one, 1);

	/* list */
	Handoff__Wire__SubscriptionInfo
		si = HANDOFF__WIRE__SUBSCRIPTION_INFO__INIT,
		*sip[2] = { &si, &si };
	si.name = "s1";
	si.topic = "t1";
	si.policy = &pol;
	si.ready = 3;
	si.dead = 1;
	Handoff__Wire__ListSubscriptionsReply lr =
		HANDOFF__WIRE__LIST_SUBSCRIPTIONS_REPLY__INIT;
	lr.n_subscriptions = 2;
	lr.subscriptions = sip;
	ok.body_case = RBODY(LIST_SUBSCRIPTIONS);
	ok.list_subscriptions = &lr;
	client_seed("list", 4, 1, 0, one, 1);

	/* fetch of up to 3 */
	Handoff__Wire__Delivery dv = HANDOFF__WIRE__DELIVERY__INIT,
				*dvp[3] = { &dv, &dv, &dv };
	dv.event_id = 5;
	dv.topic = "t1";
	dv.payload.data = (uint8_t *)"hello";
	dv.payload.len = 5;
	dv.key = "k";
	dv.n_headers = 2;
	dv.headers = hdrs2;
	dv.attempt = 1;
	dv.lease_token = 0x1234567890abcdefull;
	dv.lease_deadline_ms = 1700000030000ull;
	Handoff__Wire__FetchReply fr = HANDOFF__WIRE__FETCH_REPLY__INIT;
	fr.n_deliveries = 3;
	fr.deliveries = dvp;
	ok.body_case = RBODY(FETCH);
	ok.fetch = &fr;
	client_seed("fetch", 5, 3, 0, one, 1);
	client_seed("fetch-too-many", 5, 2, 0, one, 1);
	fr.n_deliveries = 0;
	client_seed("fetch-empty", 5, 3, 0, one, 1);
	Reply limited = ok;
	limited.status = ST(LIMIT_EXCEEDED);
	limited.message = "wait too long";
	limited.retry_after_ms = 1000;
	one[0] = &limited;
	client_seed("fetch-limit-with-body", 5, 3, 0, one, 1);
	one[0] = &ok;

	/* ack / nack of 3 */
	Handoff__Wire__Status sts[] = { ST(OK), ST(LEASE_LOST), ST(NOT_FOUND) };
	Handoff__Wire__ItemsReply ir = HANDOFF__WIRE__ITEMS_REPLY__INIT;
	ir.n_statuses = 3;
	ir.statuses = sts;
	ok.body_case = RBODY(ITEMS);
	ok.items = &ir;
	client_seed("ack", 6, 3, 5, one, 1);
	client_seed("nack", 7, 3, 5, one, 1);
	client_seed("extend", 15, 3, 5, one, 1);
	client_seed("ack-count-mismatch", 6, 2, 5, one, 1);
	client_seed("extend-count-mismatch", 15, 2, 5, one, 1);
	sts[2] = (Handoff__Wire__Status)42;
	client_seed("nack-unknown-status", 7, 3, 5, one, 1);
	sts[2] = ST(NOT_FOUND);

	/* dead letters */
	Handoff__Wire__Attempt at = HANDOFF__WIRE__ATTEMPT__INIT,
			       *atp[2] = { &at, &at };
	at.attempt = 1;
	at.consumer = "c1";
	at.outcome = HANDOFF__WIRE__OUTCOME__OUTCOME_NACKED;
	at.error = "boom";
	Handoff__Wire__DeadLetter dl = HANDOFF__WIRE__DEAD_LETTER__INIT,
				  *dlp[2] = { &dl, &dl };
	dl.event_id = 9;
	dl.topic = "t1";
	dl.reason = HANDOFF__WIRE__DEAD_REASON__DEAD_REASON_PERMANENT;
	dl.error = "boom";
	dl.attempts = 2;
	Handoff__Wire__DlqListReply dlr = HANDOFF__WIRE__DLQ_LIST_REPLY__INIT;
	dlr.n_dead_letters = 2;
	dlr.dead_letters = dlp;
	dlr.more = 1;
	ok.body_case = RBODY(DLQ_LIST);
	ok.dlq_list = &dlr;
	client_seed("dlq-list", 8, 2, 1, one, 1);
	dl.n_history = 2;
	dl.history = atp;
	dl.payload.data = (uint8_t *)"payload";
	dl.payload.len = 7;
	dl.n_headers = 2;
	dl.headers = hdrs2;
	Handoff__Wire__DlqShowReply dsr = HANDOFF__WIRE__DLQ_SHOW_REPLY__INIT;
	dsr.dead_letter = &dl;
	ok.body_case = RBODY(DLQ_SHOW);
	ok.dlq_show = &dsr;
	client_seed("dlq-show", 9, 1, 9, one, 1);
	client_seed("dlq-show-other-event", 9, 1, 8, one, 1);
	dsr.dead_letter = NULL;
	client_seed("dlq-show-empty", 9, 1, 9, one, 1);
	uint64_t done[] = { 3, 4 }, missing[] = { 5 };
	Handoff__Wire__DlqActionReply dar =
		HANDOFF__WIRE__DLQ_ACTION_REPLY__INIT;
	dar.n_event_ids = 2;
	dar.event_ids = done;
	dar.n_missing = 1;
	dar.missing = missing;
	ok.body_case = RBODY(DLQ_ACTION);
	ok.dlq_action = &dar;
	client_seed("dlq-replay-ids", 10, 3, 3, one, 1);
	client_seed("dlq-purge-filter", 11, 3, 2, one, 1);

	/* trace */
	Handoff__Wire__SubscriptionTrace
		stt = HANDOFF__WIRE__SUBSCRIPTION_TRACE__INIT,
		*sttp[2] = { &stt, &stt };
	stt.subscription = "s1";
	stt.state = HANDOFF__WIRE__DELIVERY_STATE__DELIVERY_STATE_LEASED;
	stt.consumer = "c1";
	stt.n_history = 2;
	stt.history = atp;
	Handoff__Wire__TraceReply tr = HANDOFF__WIRE__TRACE_REPLY__INIT;
	tr.event_id = 4;
	tr.topic = "t1";
	tr.idempotency_key = "k1";
	tr.n_subscriptions = 2;
	tr.subscriptions = sttp;
	ok.body_case = RBODY(TRACE);
	ok.trace = &tr;
	client_seed("trace", 12, 1, 4, one, 1);
	client_seed("trace-other-event", 12, 1, 5, one, 1);

	/* await */
	Handoff__Wire__AwaitState aws = HANDOFF__WIRE__AWAIT_STATE__INIT,
				  *awsp[2] = { &aws, &aws };
	aws.subscription = "s1";
	aws.state = HANDOFF__WIRE__DELIVERY_STATE__DELIVERY_STATE_DEAD;
	aws.attempts = 3;
	aws.dead_reason = HANDOFF__WIRE__DEAD_REASON__DEAD_REASON_PERMANENT;
	aws.error = "bad card";
	Handoff__Wire__AwaitReply awr = HANDOFF__WIRE__AWAIT_REPLY__INIT;
	awr.event_id = 4;
	awr.topic = "t1";
	awr.result = HANDOFF__WIRE__AWAIT_RESULT__AWAIT_RESULT_DEAD_LETTERED;
	awr.n_subscriptions = 2;
	awr.subscriptions = awsp;
	char *ok_message = ok.message;
	ok.body_case = RBODY(AWAIT);
	ok.await = &awr;
	ok.message = "dead-lettered by 's1' (permanent after 3 attempts): x";
	client_seed("await", 16, 2, 4, one, 1);
	client_seed("await-other-event", 16, 2, 5, one, 1);
	awr.result = 9; /* a result this library does not know */
	client_seed("await-bad-result", 16, 1, 4, one, 1);
	ok.message = ok_message;

	/* stats */
	Handoff__Wire__TopicStats ts = HANDOFF__WIRE__TOPIC_STATS__INIT,
				  *tsp[1] = { &ts };
	ts.name = "t1";
	ts.published = 10;
	ts.publish_rate = 1.5;
	Handoff__Wire__SubscriptionStats
		ss = HANDOFF__WIRE__SUBSCRIPTION_STATS__INIT,
		*ssp[1] = { &ss };
	ss.name = "s1";
	ss.topic = "t1";
	ss.acked = 7;
	Handoff__Wire__StatsReply str = HANDOFF__WIRE__STATS_REPLY__INIT;
	str.version = HANDOFF_BUILD_VERSION;
	str.n_topics = 1;
	str.topics = tsp;
	str.n_subscriptions = 1;
	str.subscriptions = ssp;
	ok.body_case = RBODY(STATS);
	ok.stats = &str;
	client_seed("stats", 13, 1, 0, one, 1);
	two[0] = &down;
	two[1] = &ok;
	client_seed("stats-after-shutting-down", 13, 1, 0, two, 2);
	one[0] = &err;
	client_seed("stats-error", 13, 1, 0, one, 1);
	/* a reply with the wrong body for the call */
	one[0] = &ok;
	client_seed("trace-got-stats", 12, 1, 0, one, 1);

	/* audit list */
	uint64_t aids[] = { 7, 8 };
	Handoff__Wire__AuditRecord au = HANDOFF__WIRE__AUDIT_RECORD__INIT,
				   *aup[2] = { &au, &au };
	au.seq = 3;
	au.key_id = "ops";
	au.role = "operator";
	au.action = "purge";
	au.subscription = "s1";
	au.n_event_ids = 2;
	au.event_ids = aids;
	au.count = 2;
	au.selector = "event_ids (2 given)";
	Handoff__Wire__AuditListReply alr =
		HANDOFF__WIRE__AUDIT_LIST_REPLY__INIT;
	alr.n_records = 2;
	alr.records = aup;
	alr.more = 1;
	ok.body_case = RBODY(AUDIT_LIST);
	ok.audit_list = &alr;
	client_seed("audit-list", 14, 2, 0, one, 1);

	/* a signed handle (top bit of byte 1): STALE_REQUEST, then OK */
	Reply stale = HANDOFF__WIRE__REPLY__INIT;
	stale.status = ST(STALE_REQUEST);
	stale.message = "request sequence 2 of this session was used already";
	two[0] = &stale;
	two[1] = &ok;
	client_seed("audit-list-signed-stale", 14, 0x80 + 2, 0, two, 2);
	Reply denied = HANDOFF__WIRE__REPLY__INIT;
	denied.status = ST(PERMISSION_DENIED);
	denied.message = "permission denied: key 'k1' has no operator role";
	one[0] = &denied;
	client_seed("stats-signed-denied", 13, 0x80 + 1, 0, one, 1);
}

int main(int argc, char **argv)
{
	if (argc != 2)
		die("usage: fuzz_seedgen CORPUS_DIR");
	root = argv[1];
	if (mkdir(root, 0755) && errno != EEXIST)
		die("mkdir %s: %s", root, strerror(errno));
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (char)('a' + i % 26);
	request_seeds();
	handler_seeds();
	client_seeds();
	printf("fuzz_seedgen: %d seed files under %s\n", n_written, root);
	return 0;
}
