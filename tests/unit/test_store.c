/*
 * test_store.c — the LMDB layer:
 *   opening: a fresh store is created through a sibling DIR.init-PID folder
 *   (none left behind), an empty folder is adopted, a foreign non-empty
 *   folder is refused, a second store_open on the same folder fails
 *   ("another handoffd") until the first is closed;
 *   counters (next event / subscription id) survive a reopen, an aborted
 *   txn leaves them alone;
 *   records: events, payloads (CRC-32 checked: a flipped byte, a bad CRC,
 *   a short value, garbage with a good CRC all give STORE_EDECODE),
 *   subscriptions (create / by_name / unlink / delete / next, duplicate
 *   names, cached counters written back at commit only when marked),
 *   topic subscriptions (ascending, exact topic match), topics, deliveries;
 *   indexes: ready (per sub, ordered by due then event; the delayed count
 *   kept incrementally equals a full count through random changes, aborts
 *   and a reopen), leases (global
 *   deadline order), dlq (per sub, by event id); idempotency keys and
 *   records; the expiry queue;
 *   format: records of format version 1 as first written read and write
 *   back byte for byte; a record with fields of a newer build decodes (and
 *   keeps them); a damaged record is STORE_EDECODE and a failed allocation
 *   ENOMEM, never "not found"; a store of another format version, or with
 *   none, is refused at open and left as it was.
 *
 * Each test uses its own mkdtemp folder, removed in teardown.
 */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "arena.h"
#include "records.h"
#include "store.h"
#include "payload_bytes.h"

#define MAP_SIZE (64ull << 20)
#define NOW	 1700000000000ull

struct fx {
	char base[PATH_MAX];	 /* mkdtemp folder */
	char dir[PATH_MAX + 16]; /* base/data: the store */
	char err[512];
	struct store st;
	bool open;
	struct arena a;
	struct txn t;
};

static int rm_one(const char *p, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void rm_rf(const char *p)
{
	nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	const char *tmp = getenv("TMPDIR");
	if (!f)
		return -1;
	if (!tmp || !*tmp || strlen(tmp) > PATH_MAX / 2)
		tmp = "/tmp";
	snprintf(f->base, sizeof f->base, "%s/handoff-test-store-XXXXXX", tmp);
	if (!mkdtemp(f->base)) {
		free(f);
		return -1;
	}
	snprintf(f->dir, sizeof f->dir, "%s/data", f->base);
	arena_init(&f->a);
	*state = f;
	return 0;
}

/* setup + an open store */
static int setup_open(void **state)
{
	if (setup(state))
		return -1;
	struct fx *f = *state;
	if (store_open(&f->st, f->dir, MAP_SIZE, f->err, sizeof f->err))
		return -1;
	f->open = true;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (f->t.txn)
		store_txn_abort(&f->t);
	if (f->open)
		store_close(&f->st);
	arena_fini(&f->a);
	rm_rf(f->base);
	free(f);
	return 0;
}

static void begin(struct fx *f, bool write)
{
	arena_reset(&f->a);
	assert_int_equal(store_txn_begin(&f->st, &f->a, write, NOW, &f->t), 0);
}

static void commit(struct fx *f)
{
	assert_int_equal(store_txn_commit(&f->t), 0);
	assert_null(f->t.txn);
}

static void reopen(struct fx *f)
{
	store_close(&f->st);
	f->open = false;
	assert_int_equal(
		store_open(&f->st, f->dir, MAP_SIZE, f->err, sizeof f->err), 0);
	f->open = true;
}

/* Number of entries in base other than . and .. */
static int count_entries(const char *dir, const char *containing)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (!containing || strstr(e->d_name, containing))
			n++;
	}
	closedir(d);
	return n;
}

static SubRecord *new_sub(struct fx *f, const char *name, const char *topic)
{
	SubRecord *r = arena_alloc(&f->a, sizeof *r);
	Handoff__Store__Policy *p = arena_alloc(&f->a, sizeof *p);
	assert_non_null(r);
	assert_non_null(p);
	handoff__store__subscription_record__init(r);
	handoff__store__policy__init(p);
	p->max_attempts = 5;
	p->ack_deadline_ms = 30000;
	p->backoff_min_ms = 100;
	p->backoff_max_ms = 10000;
	r->name = arena_strdup(&f->a, name);
	r->topic = arena_strdup(&f->a, topic);
	r->policy = p;
	r->created_ms = NOW;
	return r;
}

/* ---- opening ------------------------------------------------------------ */

static void test_open_creates_fresh(void **state)
{
	struct fx *f = *state;
	char path[PATH_MAX + 64];
	struct stat sb;
	assert_int_equal(
		store_open(&f->st, f->dir, MAP_SIZE, f->err, sizeof f->err), 0);
	f->open = true;
	snprintf(path, sizeof path, "%s/data.mdb", f->dir);
	assert_int_equal(stat(path, &sb), 0);
	snprintf(path, sizeof path, "%s/handoffd.lock", f->dir);
	assert_int_equal(stat(path, &sb), 0);
	/* the sibling DIR.init-PID was renamed away: only "data" remains */
	assert_int_equal(count_entries(f->base, ".init-"), 0);
	assert_int_equal(count_entries(f->base, NULL), 1);
	assert_int_equal(f->st.next_event_id, 1);
	assert_int_equal(f->st.next_sub_id, 1);
	uint64_t used, map;
	store_usage(&f->st, &used, &map);
	assert_int_equal(map, MAP_SIZE);
	assert_true(used > 0 && used < map);
}

/* An existing empty folder is taken over. */
static void test_open_empty_folder(void **state)
{
	struct fx *f = *state;
	assert_int_equal(mkdir(f->dir, 0700), 0);
	assert_int_equal(
		store_open(&f->st, f->dir, MAP_SIZE, f->err, sizeof f->err), 0);
	f->open = true;
	assert_int_equal(count_entries(f->dir, "data.mdb"), 1);
	assert_int_equal(count_entries(f->base, ".init-"), 0);
}

/* A folder holding someone else's files is never adopted. */
static void test_open_refuses_foreign_folder(void **state)
{
	struct fx *f = *state;
	char path[PATH_MAX + 64];
	assert_int_equal(mkdir(f->dir, 0700), 0);
	snprintf(path, sizeof path, "%s/precious.txt", f->dir);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("keep me", fp);
	fclose(fp);
	f->err[0] = 0;
	assert_int_not_equal(
		store_open(&f->st, f->dir, MAP_SIZE, f->err, sizeof f->err), 0);
	assert_non_null(strstr(f->err, "not empty"));
	assert_int_equal(count_entries(f->dir, NULL), 1);
	assert_int_equal(count_entries(f->dir, "precious.txt"), 1);
	assert_int_equal(count_entries(f->base, ".init-"), 0);
}

/* A leftover DIR.init-PID from a crash does not stop creation. */
static void test_open_over_leftover_init(void **state)
{
	struct fx *f = *state;
	char tmp[PATH_MAX + 64];
	snprintf(tmp, sizeof tmp, "%s.init-%d", f->dir, (int)getpid());
	assert_int_equal(mkdir(tmp, 0700), 0);
	assert_int_equal(
		store_open(&f->st, f->dir, MAP_SIZE, f->err, sizeof f->err), 0);
	f->open = true;
	assert_int_equal(count_entries(f->base, ".init-"), 0);
	assert_int_equal(count_entries(f->dir, "data.mdb"), 1);
}

/* One broker per folder: a second open fails while the first holds it. */
static void test_second_open_locked(void **state)
{
	struct fx *f = *state;
	struct store second;
	char err[512] = "";
	assert_int_not_equal(
		store_open(&second, f->dir, MAP_SIZE, err, sizeof err), 0);
	assert_non_null(strstr(err, "another handoffd"));
	assert_null(second.env);
	assert_int_equal(second.lock_fd, -1);
	/* the first still works */
	begin(f, true);
	assert_int_equal(store_alloc_event_id(&f->t), 1);
	commit(f);
	/* released by close */
	store_close(&f->st);
	f->open = false;
	assert_int_equal(store_open(&second, f->dir, MAP_SIZE, err, sizeof err),
			 0);
	assert_int_equal(second.next_event_id, 2);
	store_close(&second);
}

/* Id counters are durable at commit and untouched by an abort. */
static void test_counters_persist(void **state)
{
	struct fx *f = *state;
	begin(f, true);
	assert_int_equal(store_alloc_event_id(&f->t), 1);
	assert_int_equal(store_alloc_event_id(&f->t), 2);
	assert_int_equal(store_alloc_event_id(&f->t), 3);
	SubRecord *r = new_sub(f, "s1", "t");
	assert_int_equal(store_sub_create(&f->t, r), 0);
	assert_int_equal(r->id, 1);
	commit(f);
	assert_int_equal(f->st.next_event_id, 4);
	assert_int_equal(f->st.next_sub_id, 2);

	begin(f, true);
	assert_int_equal(store_alloc_event_id(&f->t), 4);
	store_txn_abort(&f->t);
	assert_int_equal(f->st.next_event_id, 4);

	reopen(f);
	assert_int_equal(f->st.next_event_id, 4);
	assert_int_equal(f->st.next_sub_id, 2);
	begin(f, true);
	assert_int_equal(store_alloc_event_id(&f->t), 4);
	SubRecord *r2 = new_sub(f, "s2", "t");
	assert_int_equal(store_sub_create(&f->t, r2), 0);
	assert_int_equal(r2->id, 2);
	commit(f);
}

/* ---- events and payloads ---------------------------------------------- */

static void test_event_roundtrip(void **state)
{
	struct fx *f = *state;
	EventMeta m = HANDOFF__STORE__EVENT_META__INIT;
	m.topic = (char *)"orders";
	m.key = (char *)"k1";
	m.published_ms = NOW;
	m.payload_bytes = 321;
	m.idempotency_key = (char *)"idem-1";
	m.pending_subscriptions = 3;
	begin(f, true);
	assert_int_equal(store_event_put(&f->t, 7, &m), 0);
	commit(f);

	begin(f, false);
	EventMeta *g;
	assert_int_equal(store_event_get(&f->t, 7, &g), 0);
	assert_string_equal(g->topic, "orders");
	assert_string_equal(g->key, "k1");
	assert_int_equal(g->published_ms, NOW);
	assert_int_equal(g->payload_bytes, 321);
	assert_string_equal(g->idempotency_key, "idem-1");
	assert_int_equal(g->pending_subscriptions, 3);
	assert_false(g->payload_removed);
	assert_int_equal(store_event_get(&f->t, 8, &g), MDB_NOTFOUND);
	store_txn_abort(&f->t);

	begin(f, true);
	assert_int_equal(store_event_del(&f->t, 7), 0);
	assert_int_equal(store_event_get(&f->t, 7, &g), MDB_NOTFOUND);
	assert_int_equal(store_event_del(&f->t, 7), MDB_NOTFOUND);
	commit(f);
}

static void put_body(struct fx *f, uint64_t id, const char *payload)
{
	EventBody b = HANDOFF__STORE__EVENT_BODY__INIT;
	Handoff__Store__Header h = HANDOFF__STORE__HEADER__INIT;
	Handoff__Store__Header *hp = &h;
	h.name = (char *)"content-type";
	h.value = (char *)"text/plain";
	b.payload.data = (uint8_t *)payload;
	b.payload.len = strlen(payload);
	b.n_headers = 1;
	b.headers = &hp;
	assert_int_equal(store_payload_put(&f->t, id, &b), 0);
}

static void test_payload_roundtrip(void **state)
{
	struct fx *f = *state;
	begin(f, true);
	put_body(f, 5, "five");
	put_body(f, 3, "three"); /* below the last id: the non-append path */
	put_body(f, 9, "nine");
	commit(f);

	begin(f, false);
	EventBody *b;
	assert_int_equal(store_payload_get(&f->t, 3, &b), 0);
	assert_int_equal(b->payload.len, 5);
	assert_memory_equal(b->payload.data, "three", 5);
	assert_int_equal(b->n_headers, 1);
	assert_string_equal(b->headers[0]->name, "content-type");
	assert_string_equal(b->headers[0]->value, "text/plain");
	assert_int_equal(store_payload_get(&f->t, 5, &b), 0);
	assert_memory_equal(b->payload.data, "five", 4);
	assert_int_equal(store_payload_get(&f->t, 9, &b), 0);
	assert_memory_equal(b->payload.data, "nine", 4);
	assert_int_equal(store_payload_get(&f->t, 4, &b), MDB_NOTFOUND);
	store_txn_abort(&f->t);

	/* overwriting an existing id replaces it */
	begin(f, true);
	put_body(f, 5, "FIVE!");
	assert_int_equal(store_payload_get(&f->t, 5, &b), 0);
	assert_int_equal(b->payload.len, 5);
	assert_memory_equal(b->payload.data, "FIVE!", 5);
	assert_int_equal(store_payload_del(&f->t, 5), 0);
	assert_int_equal(store_payload_get(&f->t, 5, &b), MDB_NOTFOUND);
	assert_int_equal(store_payload_del(&f->t, 5), MDB_NOTFOUND);
	commit(f);
}

/* Rewrite a payload's stored bytes (as format 1 laid them out: crc, body),
 * flipping the bit(s) in mask at pos. */
static void flip_payload_byte(struct fx *f, uint64_t id, size_t pos,
			      uint8_t mask)
{
	uint8_t *copy;
	size_t n = payload_bytes_get(f->t.txn, f->st.dbi[DB_EVENTS], id, &copy);
	assert_true(pos < n);
	copy[pos] ^= mask;
	payload_bytes_put(f->t.txn, f->st.dbi[DB_EVENTS], id, copy, n);
	free(copy);
}

static void raw_payload(struct fx *f, uint64_t id, const void *p, size_t n)
{
	payload_bytes_put(f->t.txn, f->st.dbi[DB_EVENTS], id, p, n);
}

/* A stored payload that fails its CRC is never returned as good. */
static void test_payload_corruption_detected(void **state)
{
	struct fx *f = *state;
	EventBody *b = NULL;
	begin(f, true);
	put_body(f, 1, "a payload long enough to flip bytes in");
	put_body(f, 2, "another payload");
	put_body(f, 3, "crc byte");
	commit(f);

	begin(f, true);
	flip_payload_byte(f, 1, 10, 0x01); /* one bit in the body */
	flip_payload_byte(f, 3, 0, 0x80);  /* one bit of the CRC itself */
	commit(f);

	begin(f, false);
	assert_int_equal(store_payload_get(&f->t, 1, &b), STORE_EDECODE);
	assert_int_equal(store_payload_get(&f->t, 3, &b), STORE_EDECODE);
	b = NULL;
	assert_int_equal(store_payload_get(&f->t, 2, &b), 0); /* untouched */
	assert_non_null(b);
	assert_memory_equal(b->payload.data, "another payload", 15);
	store_txn_abort(&f->t);

	/* direct writes of bad values */
	begin(f, true);
	raw_payload(f, 10, "\x01\x02", 2); /* shorter than a CRC */
	raw_payload(f, 11,
		    "\0\0\0\0\x0a\x03"
		    "abc",
		    9); /* CRC 0: wrong */
	/* a correct CRC over bytes that are no EventBody (wire type 7) */
	uint8_t bad[8] = { 0, 0, 0, 0, 0x0f, 0xff, 0xff, 0xff };
	be32_put(bad, (uint32_t)crc32(0L, bad + 4, 4));
	raw_payload(f, 12, bad, sizeof bad);
	/* and a correct CRC over a good body is accepted */
	uint8_t good[9] = { 0, 0, 0, 0, 0x0a, 0x03, 'a', 'b', 'c' };
	be32_put(good, (uint32_t)crc32(0L, good + 4, 5));
	raw_payload(f, 13, good, sizeof good);
	commit(f);

	begin(f, false);
	assert_int_equal(store_payload_get(&f->t, 10, &b), STORE_EDECODE);
	assert_int_equal(store_payload_get(&f->t, 11, &b), STORE_EDECODE);
	assert_int_equal(store_payload_get(&f->t, 12, &b), STORE_EDECODE);
	assert_int_equal(store_payload_get(&f->t, 13, &b), 0);
	assert_int_equal(b->payload.len, 3);
	assert_memory_equal(b->payload.data, "abc", 3);
	store_txn_abort(&f->t);
}

/* ---- subscriptions ----------------------------------------------------- */

static void test_sub_create_lookup(void **state)
{
	struct fx *f = *state;
	begin(f, true);
	SubRecord *a = new_sub(f, "billing", "orders");
	SubRecord *b = new_sub(f, "audit", "orders");
	SubRecord *c = new_sub(f, "mail", "orders-eu");
	assert_int_equal(store_sub_create(&f->t, a), 0);
	assert_int_equal(store_sub_create(&f->t, b), 0);
	assert_int_equal(store_sub_create(&f->t, c), 0);
	assert_int_equal(a->id, 1);
	assert_int_equal(b->id, 2);
	assert_int_equal(c->id, 3);
	/* within the txn the cached record itself is returned */
	SubRecord *g;
	assert_int_equal(store_sub_by_name(&f->t, "audit", &g), 0);
	assert_ptr_equal(g, b);
	/* the same name again is refused */
	SubRecord *dup = new_sub(f, "billing", "other");
	assert_int_equal(store_sub_create(&f->t, dup), MDB_KEYEXIST);
	store_txn_abort(&f->t);

	/* the abort undid everything */
	begin(f, false);
	assert_int_equal(store_sub_by_name(&f->t, "billing", &g), MDB_NOTFOUND);
	assert_int_equal(store_sub_get(&f->t, 1, &g), MDB_NOTFOUND);
	store_txn_abort(&f->t);

	begin(f, true);
	a = new_sub(f, "billing", "orders");
	b = new_sub(f, "audit", "orders");
	c = new_sub(f, "mail", "orders-eu");
	assert_int_equal(store_sub_create(&f->t, a), 0);
	assert_int_equal(store_sub_create(&f->t, b), 0);
	assert_int_equal(store_sub_create(&f->t, c), 0);
	uint32_t a_id = a->id, c_id = c->id;
	commit(f);

	reopen(f); /* (a, b, c were in the arena: gone after the reset) */
	begin(f, false);
	assert_int_equal(store_sub_by_name(&f->t, "billing", &g), 0);
	assert_int_equal(g->id, a_id);
	assert_string_equal(g->topic, "orders");
	assert_non_null(g->policy);
	assert_int_equal(g->policy->max_attempts, 5);
	assert_int_equal(g->policy->backoff_max_ms, 10000);
	assert_int_equal(g->created_ms, NOW);
	assert_false(g->deleting);
	assert_int_equal(store_sub_get(&f->t, c_id, &g), 0);
	assert_string_equal(g->name, "mail");
	assert_int_equal(store_sub_by_name(&f->t, "bill", &g), MDB_NOTFOUND);

	/* topic subs: exact topic only, ascending ids */
	uint32_t *ids;
	size_t n;
	assert_int_equal(store_topic_subs(&f->t, "orders", &ids, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], 1);
	assert_int_equal(ids[1], 2);
	assert_int_equal(store_topic_subs(&f->t, "orders-eu", &ids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], 3);
	assert_int_equal(store_topic_subs(&f->t, "order", &ids, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(store_topic_subs(&f->t, "zzz", &ids, &n), 0);
	assert_int_equal(n, 0);

	/* iteration over ids */
	uint32_t id = 0, seen[4];
	int k = 0;
	int rc;
	while ((rc = store_sub_next(&f->t, id, &id)) == 0 && k < 4)
		seen[k++] = id;
	assert_int_equal(rc, MDB_NOTFOUND);
	assert_int_equal(k, 3);
	assert_int_equal(seen[0], 1);
	assert_int_equal(seen[2], 3);
	assert_int_equal(store_sub_next(&f->t, 2, &id), 0);
	assert_int_equal(id, 3);
	assert_int_equal(store_sub_next(&f->t, UINT32_MAX, &id), MDB_NOTFOUND);
	store_txn_abort(&f->t);
}

/* Many subscriptions on one topic come back sorted, whatever the order
 * of their names (the index is by name). */
static void test_topic_subs_sorted(void **state)
{
	struct fx *f = *state;
	begin(f, true);
	char name[32];
	for (int i = 0; i < 20; i++) {
		/* names in reverse order of ids */
		snprintf(name, sizeof name, "sub-%02d", 40 - i);
		assert_int_equal(store_sub_create(&f->t, new_sub(f, name, "t")),
				 0);
	}
	commit(f);
	begin(f, false);
	uint32_t *ids;
	size_t n;
	assert_int_equal(store_topic_subs(&f->t, "t", &ids, &n), 0);
	assert_int_equal(n, 20);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ids[i], i + 1);
	store_txn_abort(&f->t);
}

/* Counters changed on a cached record reach the store at commit when
 * marked, and not otherwise. */
static void test_sub_mark_writes_back(void **state)
{
	struct fx *f = *state;
	begin(f, true);
	SubRecord *s1 = new_sub(f, "one", "t"), *s2 = new_sub(f, "two", "t");
	assert_int_equal(store_sub_create(&f->t, s1), 0);
	assert_int_equal(store_sub_create(&f->t, s2), 0);
	commit(f);

	begin(f, true);
	SubRecord *g1, *g2;
	assert_int_equal(store_sub_get(&f->t, 1, &g1), 0);
	assert_int_equal(store_sub_get(&f->t, 2, &g2), 0);
	g1->ready = 11;
	g1->acked = 22;
	store_sub_mark(&f->t, g1);
	g2->ready = 99; /* not marked */
	commit(f);

	begin(f, false);
	assert_int_equal(store_sub_get(&f->t, 1, &g1), 0);
	assert_int_equal(g1->ready, 11);
	assert_int_equal(g1->acked, 22);
	assert_int_equal(store_sub_get(&f->t, 2, &g2), 0);
	assert_int_equal(g2->ready, 0);
	store_txn_abort(&f->t);

	/* an aborted change is lost */
	begin(f, true);
	assert_int_equal(store_sub_get(&f->t, 1, &g1), 0);
	g1->ready = 500;
	store_sub_mark(&f->t, g1);
	store_txn_abort(&f->t);
	begin(f, false);
	assert_int_equal(store_sub_get(&f->t, 1, &g1), 0);
	assert_int_equal(g1->ready, 11);
	store_txn_abort(&f->t);
}

static void test_sub_unlink_delete(void **state)
{
	struct fx *f = *state;
	begin(f, true);
	SubRecord *s = new_sub(f, "gone", "t"), *o = new_sub(f, "stays", "t");
	assert_int_equal(store_sub_create(&f->t, s), 0);
	assert_int_equal(store_sub_create(&f->t, o), 0);
	commit(f);

	begin(f, true);
	SubRecord *g;
	assert_int_equal(store_sub_by_name(&f->t, "gone", &g), 0);
	assert_int_equal(store_sub_unlink(&f->t, g), 0);
	assert_true(g->deleting);
	commit(f);

	begin(f, true);
	uint32_t *ids;
	size_t n;
	assert_int_equal(store_sub_by_name(&f->t, "gone", &g), MDB_NOTFOUND);
	assert_int_equal(store_topic_subs(&f->t, "t", &ids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], 2);
	/* the record stays, marked deleting */
	assert_int_equal(store_sub_get(&f->t, 1, &g), 0);
	assert_true(g->deleting);
	assert_string_equal(g->name, "gone");
	/* the name is free again: a new subscription gets a new id */
	SubRecord *again = new_sub(f, "gone", "t");
	assert_int_equal(store_sub_create(&f->t, again), 0);
	assert_int_equal(again->id, 3);
	/* delete (also from the txn cache: commit must not resurrect it) */
	g->ready = 5;
	store_sub_mark(&f->t, g);
	assert_int_equal(store_sub_delete(&f->t, 1), 0);
	assert_int_equal(store_sub_delete(&f->t, 1), MDB_NOTFOUND);
	commit(f);

	begin(f, false);
	assert_int_equal(store_sub_get(&f->t, 1, &g), MDB_NOTFOUND);
	assert_int_equal(store_sub_by_name(&f->t, "gone", &g), 0);
	assert_int_equal(g->id, 3);
	uint32_t id;
	assert_int_equal(store_sub_next(&f->t, 0, &id), 0);
	assert_int_equal(id, 2);
	store_txn_abort(&f->t);
}

/* ---- topics ------------------------------------------------------------ */

static void test_topics(void **state)
{
	struct fx *f = *state;
	begin(f, true);
	TopicRecord r = HANDOFF__STORE__TOPIC_RECORD__INIT;
	const char *names[] = { "orders", "audit", "orders.eu", "b" };
	for (int i = 0; i < 4; i++) {
		r.published = (uint64_t)i + 10;
		assert_int_equal(store_topic_put(&f->t, names[i], &r), 0);
	}
	commit(f);
	begin(f, false);
	TopicRecord *g;
	assert_int_equal(store_topic_get(&f->t, "orders.eu", &g), 0);
	assert_int_equal(g->published, 12);
	assert_int_equal(store_topic_get(&f->t, "order", &g), MDB_NOTFOUND);
	const char *want[] = { "audit", "b", "orders", "orders.eu" };
	char *name;
	const char *after = "";
	for (int i = 0; i < 4; i++) {
		assert_int_equal(store_topic_next(&f->t, after, &name), 0);
		assert_string_equal(name, want[i]);
		after = name;
	}
	assert_int_equal(store_topic_next(&f->t, after, &name), MDB_NOTFOUND);
	/* a name that is not a topic: the next one after it */
	assert_int_equal(store_topic_next(&f->t, "c", &name), 0);
	assert_string_equal(name, "orders");
	store_txn_abort(&f->t);
}

/* ---- deliveries -------------------------------------------------------- */

static void test_deliveries(void **state)
{
	struct fx *f = *state;
	begin(f, true);
	DeliveryRecord d = HANDOFF__STORE__DELIVERY_RECORD__INIT;
	d.state = HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_LEASED;
	d.attempts = 2;
	d.lease_token = 0xfeedfacecafebeefull;
	d.consumer = (char *)"worker-1";
	assert_int_equal(store_delivery_put(&f->t, 100, 3, &d), 0);
	d.state = HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_READY;
	assert_int_equal(store_delivery_put(&f->t, 100, 7, &d), 0);
	assert_int_equal(store_delivery_put(&f->t, 101, 1, &d), 0);
	assert_int_equal(store_delivery_put(&f->t, 99, 9, &d), 0);
	commit(f);

	begin(f, true);
	DeliveryRecord *g;
	assert_int_equal(store_delivery_get(&f->t, 100, 3, &g), 0);
	assert_int_equal(g->state,
			 HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_LEASED);
	assert_int_equal(g->attempts, 2);
	assert_int_equal(g->lease_token, 0xfeedfacecafebeefull);
	assert_string_equal(g->consumer, "worker-1");
	assert_int_equal(store_delivery_get(&f->t, 100, 4, &g), MDB_NOTFOUND);
	/* subscriptions of event 100 only */
	uint32_t sub;
	assert_int_equal(store_delivery_next_sub(&f->t, 100, 0, &sub), 0);
	assert_int_equal(sub, 3);
	assert_int_equal(store_delivery_next_sub(&f->t, 100, 3, &sub), 0);
	assert_int_equal(sub, 7);
	assert_int_equal(store_delivery_next_sub(&f->t, 100, 7, &sub),
			 MDB_NOTFOUND);
	assert_int_equal(store_delivery_next_sub(&f->t, 102, 0, &sub),
			 MDB_NOTFOUND);
	assert_int_equal(store_delivery_next_sub(&f->t, 100, UINT32_MAX, &sub),
			 MDB_NOTFOUND);
	assert_int_equal(store_delivery_del(&f->t, 100, 3), 0);
	assert_int_equal(store_delivery_next_sub(&f->t, 100, 0, &sub), 0);
	assert_int_equal(sub, 7);
	assert_int_equal(store_delivery_del(&f->t, 100, 3), MDB_NOTFOUND);
	commit(f);
}

/* ---- indexes ----------------------------------------------------------- */

static void test_ready_index(void **state)
{
	struct fx *f = *state;
	begin(f, true);
	uint64_t due, ev, cnt;
	assert_int_equal(store_ready_first(&f->t, 2, &due, &ev), MDB_NOTFOUND);
	/* sub 2: out of order inserts; sub 1 and 3 around it */
	assert_int_equal(store_ready_put(&f->t, 2, 5000, 8), 0);
	assert_int_equal(store_ready_put(&f->t, 2, 1000, 9), 0);
	assert_int_equal(store_ready_put(&f->t, 2, 1000, 4), 0);
	assert_int_equal(store_ready_put(&f->t, 2, 3000, 1), 0);
	assert_int_equal(store_ready_put(&f->t, 1, 10, 100), 0);
	assert_int_equal(store_ready_put(&f->t, 3, 1, 1), 0);
	commit(f);

	begin(f, true);
	assert_int_equal(store_ready_first(&f->t, 2, &due, &ev), 0);
	assert_int_equal(due, 1000);
	assert_int_equal(ev, 4);
	assert_int_equal(store_ready_first(&f->t, 1, &due, &ev), 0);
	assert_int_equal(due, 10);
	assert_int_equal(ev, 100);
	assert_int_equal(store_ready_first(&f->t, 4, &due, &ev), MDB_NOTFOUND);
	/* counting: due strictly after `from`, capped, this sub only */
	assert_int_equal(store_ready_count_after(&f->t, 2, 0, 100, &cnt), 0);
	assert_int_equal(cnt, 4);
	assert_int_equal(store_ready_count_after(&f->t, 2, 1000, 100, &cnt), 0);
	assert_int_equal(cnt, 2);
	assert_int_equal(store_ready_count_after(&f->t, 2, 2999, 100, &cnt), 0);
	assert_int_equal(cnt, 2);
	assert_int_equal(store_ready_count_after(&f->t, 2, 3000, 100, &cnt), 0);
	assert_int_equal(cnt, 1);
	assert_int_equal(store_ready_count_after(&f->t, 2, 0, 3, &cnt), 0);
	assert_int_equal(cnt, 3);
	assert_int_equal(store_ready_count_after(&f->t, 2, 9999, 100, &cnt), 0);
	assert_int_equal(cnt, 0);
	assert_int_equal(store_ready_count_after(&f->t, 5, 0, 100, &cnt), 0);
	assert_int_equal(cnt, 0);
	/* removing the first moves first to the next */
	assert_int_equal(store_ready_del(&f->t, 2, 1000, 4), 0);
	assert_int_equal(store_ready_first(&f->t, 2, &due, &ev), 0);
	assert_int_equal(due, 1000);
	assert_int_equal(ev, 9);
	assert_int_equal(store_ready_del(&f->t, 2, 1000, 4), MDB_NOTFOUND);
	assert_int_equal(store_ready_del(&f->t, 2, 1000, 9), 0);
	assert_int_equal(store_ready_first(&f->t, 2, &due, &ev), 0);
	assert_int_equal(due, 3000);
	commit(f);
}

static void test_lease_index(void **state)
{
	struct fx *f = *state;
	begin(f, true);
	uint64_t dl, ev;
	uint32_t sub;
	assert_int_equal(store_lease_first(&f->t, &dl, &sub, &ev),
			 MDB_NOTFOUND);
	assert_int_equal(store_lease_put(&f->t, 9000, 1, 5), 0);
	assert_int_equal(store_lease_put(&f->t, 7000, 2, 6), 0);
	assert_int_equal(store_lease_put(&f->t, 8000, 2, 3), 0);
	assert_int_equal(store_lease_first(&f->t, &dl, &sub, &ev), 0);
	assert_int_equal(dl, 7000);
	assert_int_equal(sub, 2);
	assert_int_equal(ev, 6);
	assert_int_equal(store_lease_find_sub(&f->t, 1, &dl, &ev), 0);
	assert_int_equal(dl, 9000);
	assert_int_equal(ev, 5);
	assert_int_equal(store_lease_find_sub(&f->t, 4, &dl, &ev),
			 MDB_NOTFOUND);
	assert_int_equal(store_lease_del(&f->t, 7000, 2, 6), 0);
	assert_int_equal(store_lease_first(&f->t, &dl, &sub, &ev), 0);
	assert_int_equal(dl, 8000);
	assert_int_equal(ev, 3);
	assert_int_equal(store_lease_del(&f->t, 7000, 2, 6), MDB_NOTFOUND);
	commit(f);
}

static void test_dlq_index(void **state)
{
	struct fx *f = *state;
	begin(f, true);
	uint64_t ev;
	assert_int_equal(store_dlq_put(&f->t, 2, 30), 0);
	assert_int_equal(store_dlq_put(&f->t, 2, 10), 0);
	assert_int_equal(store_dlq_put(&f->t, 2, 20), 0);
	assert_int_equal(store_dlq_put(&f->t, 1, 5), 0);
	assert_int_equal(store_dlq_put(&f->t, 3, 1), 0);
	commit(f);
	begin(f, true);
	uint64_t want[] = { 10, 20, 30 }, after = 0;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(store_dlq_next(&f->t, 2, after, &ev), 0);
		assert_int_equal(ev, want[i]);
		after = ev;
	}
	assert_int_equal(store_dlq_next(&f->t, 2, after, &ev), MDB_NOTFOUND);
	assert_int_equal(store_dlq_next(&f->t, 2, 15, &ev), 0);
	assert_int_equal(ev, 20);
	assert_int_equal(store_dlq_next(&f->t, 2, UINT64_MAX, &ev),
			 MDB_NOTFOUND);
	assert_int_equal(store_dlq_next(&f->t, 4, 0, &ev), MDB_NOTFOUND);
	assert_int_equal(store_dlq_del(&f->t, 2, 10), 0);
	assert_int_equal(store_dlq_next(&f->t, 2, 0, &ev), 0);
	assert_int_equal(ev, 20);
	assert_int_equal(store_dlq_del(&f->t, 2, 10), MDB_NOTFOUND);
	commit(f);
}

/* ---- idempotency and expiry -------------------------------------------- */

static void test_idem(void **state)
{
	struct fx *f = *state;
	uint8_t k1[IDEM_KEY_MAX], k2[IDEM_KEY_MAX], k3[IDEM_KEY_MAX],
		k4[IDEM_KEY_MAX];
	size_t l1, l2, l3, l4;
	char longkey[IDEM_KEY_MAX + 1];
	assert_int_equal(store_idem_key(7, "key-1", k1, &l1), 0);
	assert_int_equal(store_idem_key(7, "key-1", k2, &l2), 0);
	assert_int_equal(l1, l2);
	assert_memory_equal(k1, k2, l1);
	assert_int_equal(store_idem_key(7, "key-2", k3, &l3), 0);
	assert_memory_not_equal(k1, k3, l1);
	/* the topic matters: the same key on another topic is another */
	assert_int_equal(store_idem_key(1, "c", k3, &l3), 0);
	assert_int_equal(store_idem_key(256, "c", k4, &l4), 0);
	assert_int_equal(l3, l4);
	assert_memory_not_equal(k3, k4, l3);
	/* a key that would not fit an LMDB key is refused, not cut */
	memset(longkey, 'x', sizeof longkey - 1);
	longkey[sizeof longkey - 1] = 0;
	assert_int_equal(store_idem_key(1, longkey, k2, &l2), EINVAL);

	begin(f, true);
	IdemRecord r = HANDOFF__STORE__IDEMPOTENCY_RECORD__INIT;
	r.event_id = 77;
	r.created_ms = NOW;
	assert_int_equal(store_idem_put(&f->t, k1, l1, &r), 0);
	commit(f);
	begin(f, true);
	IdemRecord *g;
	assert_int_equal(store_idem_get(&f->t, k1, l1, &g), 0);
	assert_int_equal(g->event_id, 77);
	assert_int_equal(g->created_ms, NOW);
	assert_int_equal(store_idem_get(&f->t, k4, l4, &g), MDB_NOTFOUND);
	assert_int_equal(store_idem_del(&f->t, k1, l1), 0);
	assert_int_equal(store_idem_get(&f->t, k1, l1, &g), MDB_NOTFOUND);
	commit(f);
}

static void test_expiry_queue(void **state)
{
	struct fx *f = *state;
	uint8_t hash[IDEM_KEY_MAX], ev[8], id[IDEM_KEY_MAX];
	uint64_t at;
	int kind;
	size_t idlen;
	memset(hash, 0x42, sizeof hash);
	be64_put(ev, 12345);
	begin(f, true);
	assert_int_equal(
		store_expiry_first(&f->t, UINT64_MAX, &at, &kind, id, &idlen),
		MDB_NOTFOUND);
	assert_int_equal(
		store_expiry_put(&f->t, 2000, EXPIRY_IDEM, hash, IDEM_KEY_MAX),
		0);
	assert_int_equal(store_expiry_put(&f->t, 1000, EXPIRY_HISTORY, ev, 8),
			 0);
	assert_int_equal(
		store_expiry_put(&f->t, 1, EXPIRY_IDEM, hash, IDEM_KEY_MAX + 1),
		EINVAL);
	commit(f);

	begin(f, true);
	/* nothing due yet */
	assert_int_equal(store_expiry_first(&f->t, 999, &at, &kind, id, &idlen),
			 MDB_NOTFOUND);
	assert_int_equal(
		store_expiry_first(&f->t, 1000, &at, &kind, id, &idlen), 0);
	assert_int_equal(at, 1000);
	assert_int_equal(kind, EXPIRY_HISTORY);
	assert_int_equal(idlen, 8);
	assert_int_equal(be64_get(id), 12345);
	assert_int_equal(store_expiry_del(&f->t, 1000, EXPIRY_HISTORY, ev, 8),
			 0);
	assert_int_equal(
		store_expiry_first(&f->t, 1999, &at, &kind, id, &idlen),
		MDB_NOTFOUND);
	assert_int_equal(
		store_expiry_first(&f->t, 5000, &at, &kind, id, &idlen), 0);
	assert_int_equal(at, 2000);
	assert_int_equal(kind, EXPIRY_IDEM);
	assert_int_equal(idlen, IDEM_KEY_MAX);
	assert_memory_equal(id, hash, IDEM_KEY_MAX);
	assert_int_equal(
		store_expiry_del(&f->t, 2000, EXPIRY_IDEM, hash, IDEM_KEY_MAX),
		0);
	assert_int_equal(
		store_expiry_del(&f->t, 2000, EXPIRY_IDEM, hash, IDEM_KEY_MAX),
		MDB_NOTFOUND);
	assert_int_equal(
		store_expiry_first(&f->t, UINT64_MAX, &at, &kind, id, &idlen),
		MDB_NOTFOUND);
	commit(f);
}

/* ---- format ------------------------------------------------------------- */

/* Records of format version 1 as the first builds wrote them (their
 * store.proto embedded wire messages: Header, Policy, Attempt, AuditRecord,
 * a packed DlqActionReply), every field set. */
static const uint8_t v1_event_body[46] = {
	0x0a, 0x07, 0x70, 0x61, 0x79, 0x6c, 0x6f, 0x61, 0x64, 0x12, 0x1a, 0x0a,
	0x0c, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x74, 0x79, 0x70,
	0x65, 0x12, 0x0a, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x70, 0x6c, 0x61, 0x69,
	0x6e, 0x12, 0x07, 0x0a, 0x05, 0x74, 0x72, 0x61, 0x63, 0x65,
};
static const uint8_t v1_subscription[63] = {
	0x08, 0x07, 0x12, 0x07, 0x62, 0x69, 0x6c, 0x6c, 0x69, 0x6e, 0x67,
	0x1a, 0x06, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x73, 0x22, 0x0c, 0x08,
	0x05, 0x10, 0xb0, 0xea, 0x01, 0x18, 0x64, 0x20, 0xe0, 0xd4, 0x03,
	0x28, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31, 0x30, 0x01, 0x38, 0x02,
	0x40, 0x03, 0x48, 0x04, 0x50, 0x05, 0x58, 0x06, 0x60, 0x07, 0x68,
	0x08, 0x70, 0x09, 0x78, 0x0a, 0x80, 0x01, 0x0b,
};
static const uint8_t v1_delivery[104] = {
	0x08, 0x05, 0x10, 0x02, 0x18, 0x02, 0x20, 0x0b, 0x28, 0x0c, 0x30, 0x0d,
	0x3a, 0x02, 0x63, 0x32, 0x40, 0x0e, 0x48, 0x03, 0x50, 0x0f, 0x5a, 0x20,
	0x73, 0x74, 0x6f, 0x72, 0x65, 0x64, 0x20, 0x65, 0x76, 0x65, 0x6e, 0x74,
	0x20, 0x66, 0x61, 0x69, 0x6c, 0x65, 0x64, 0x20, 0x69, 0x74, 0x73, 0x20,
	0x63, 0x68, 0x65, 0x63, 0x6b, 0x73, 0x75, 0x6d, 0x60, 0x01, 0x6a, 0x17,
	0x08, 0x01, 0x12, 0x02, 0x63, 0x31, 0x18, 0xe8, 0x07, 0x20, 0xd0, 0x0f,
	0x28, 0x03, 0x32, 0x04, 0x62, 0x6f, 0x6f, 0x6d, 0x38, 0xfa, 0x01, 0x6a,
	0x13, 0x08, 0x02, 0x12, 0x02, 0x63, 0x32, 0x18, 0xb8, 0x17, 0x20, 0xa0,
	0x1f, 0x28, 0x07, 0x32, 0x03, 0x63, 0x72, 0x63,
};
static const uint8_t v1_command[24] = {
	0x08, 0x04, 0x10, 0x81, 0xd0, 0x95, 0xff, 0xbc, 0x31, 0x1a, 0x0d, 0x0a,
	0x06, 0x01, 0xac, 0x02, 0xf0, 0xa2, 0x04, 0x12, 0x01, 0x09, 0x18, 0x01,
};
static const uint8_t v1_command_empty[9] = {
	0x08, 0x05, 0x10, 0x82, 0xd0, 0x95, 0xff, 0xbc, 0x31,
};
static const uint8_t v1_audit[88] = {
	0x08, 0x03, 0x10, 0x83, 0xd0, 0x95, 0xff, 0xbc, 0x31, 0x1a, 0x03,
	0x6f, 0x70, 0x73, 0x22, 0x08, 0x6f, 0x70, 0x65, 0x72, 0x61, 0x74,
	0x6f, 0x72, 0x2a, 0x06, 0x72, 0x65, 0x70, 0x6c, 0x61, 0x79, 0x32,
	0x07, 0x62, 0x69, 0x6c, 0x6c, 0x69, 0x6e, 0x67, 0x3a, 0x06, 0x01,
	0xac, 0x02, 0xf0, 0xa2, 0x04, 0x42, 0x13, 0x65, 0x76, 0x65, 0x6e,
	0x74, 0x5f, 0x69, 0x64, 0x73, 0x20, 0x28, 0x33, 0x20, 0x67, 0x69,
	0x76, 0x65, 0x6e, 0x29, 0x48, 0x03, 0x50, 0x01, 0x5a, 0x05, 0x66,
	0x69, 0x78, 0x65, 0x64, 0x62, 0x05, 0x63, 0x6d, 0x64, 0x2d, 0x31,
};

/* bytes decode as desc and pack back to exactly bytes */
static ProtobufCMessage *same_bytes(const ProtobufCMessageDescriptor *desc,
				    const uint8_t *bytes, size_t n)
{
	ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, n, bytes);
	uint8_t out[256];
	assert_non_null(m);
	assert_int_equal(protobuf_c_message_get_packed_size(m), n);
	assert_true(n <= sizeof out);
	protobuf_c_message_pack(m, out);
	assert_memory_equal(out, bytes, n);
	return m;
}

static void test_format_v1_records(void **state)
{
	struct fx *f = *state;
	ProtobufCMessage *m;

	m = same_bytes(&handoff__store__event_body__descriptor, v1_event_body,
		       sizeof v1_event_body);
	EventBody *b = (EventBody *)m;
	assert_int_equal(b->payload.len, 7);
	assert_memory_equal(b->payload.data, "payload", 7);
	assert_int_equal(b->n_headers, 2);
	assert_string_equal(b->headers[0]->name, "content-type");
	assert_string_equal(b->headers[0]->value, "text/plain");
	assert_string_equal(b->headers[1]->name, "trace");
	assert_string_equal(b->headers[1]->value, "");
	protobuf_c_message_free_unpacked(m, NULL);

	m = same_bytes(&handoff__store__subscription_record__descriptor,
		       v1_subscription, sizeof v1_subscription);
	SubRecord *r = (SubRecord *)m;
	assert_int_equal(r->id, 7);
	assert_string_equal(r->name, "billing");
	assert_string_equal(r->topic, "orders");
	assert_non_null(r->policy);
	assert_int_equal(r->policy->max_attempts, 5);
	assert_int_equal(r->policy->ack_deadline_ms, 30000);
	assert_int_equal(r->policy->backoff_min_ms, 100);
	assert_int_equal(r->policy->backoff_max_ms, 60000);
	assert_int_equal(r->created_ms, NOW);
	assert_true(r->deleting);
	assert_int_equal(r->ready, 2);
	assert_int_equal(r->purged, 11);
	protobuf_c_message_free_unpacked(m, NULL);

	m = same_bytes(&handoff__store__delivery_record__descriptor,
		       v1_delivery, sizeof v1_delivery);
	DeliveryRecord *d = (DeliveryRecord *)m;
	assert_int_equal(d->state,
			 HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_DEAD);
	assert_int_equal(d->dead_reason,
			 HANDOFF__STORE__DEAD_REASON__DEAD_REASON_CORRUPT);
	assert_int_equal(d->attempts, 2);
	assert_int_equal(d->lease_token, 13);
	assert_string_equal(d->consumer, "c2");
	assert_int_equal(d->replays, 1);
	assert_int_equal(d->n_history, 2);
	assert_int_equal(d->history[0]->outcome,
			 HANDOFF__STORE__OUTCOME__OUTCOME_NACKED);
	assert_string_equal(d->history[0]->error, "boom");
	assert_int_equal(d->history[0]->retry_delay_ms, 250);
	assert_int_equal(d->history[1]->outcome,
			 HANDOFF__STORE__OUTCOME__OUTCOME_CORRUPT);
	assert_int_equal(d->history[1]->ended_ms, 4000);
	protobuf_c_message_free_unpacked(m, NULL);

	m = same_bytes(&handoff__store__audit_record__descriptor, v1_audit,
		       sizeof v1_audit);
	AuditRecord *a = (AuditRecord *)m;
	assert_int_equal(a->seq, 3);
	assert_string_equal(a->role, "operator");
	assert_string_equal(a->action, "replay");
	assert_int_equal(a->n_event_ids, 3);
	assert_int_equal(a->event_ids[2], 70000);
	assert_string_equal(a->selector, "event_ids (3 given)");
	assert_int_equal(a->missing, 1);
	assert_string_equal(a->command_id, "cmd-1");
	protobuf_c_message_free_unpacked(m, NULL);

	m = same_bytes(&handoff__store__command_record__descriptor, v1_command,
		       sizeof v1_command);
	CommandRecord *c = (CommandRecord *)m;
	assert_int_equal(c->audit_seq, 4);
	assert_non_null(c->reply);
	assert_int_equal(c->reply->n_event_ids, 3);
	assert_int_equal(c->reply->event_ids[1], 300);
	assert_int_equal(c->reply->n_missing, 1);
	assert_int_equal(c->reply->missing[0], 9);
	assert_true(c->reply->more);
	protobuf_c_message_free_unpacked(m, NULL);
	m = same_bytes(&handoff__store__command_record__descriptor,
		       v1_command_empty, sizeof v1_command_empty);
	assert_null(((CommandRecord *)m)->reply);
	protobuf_c_message_free_unpacked(m, NULL);

	/* and the replies the handlers store become those same bytes */
	uint64_t ids[3] = { 1, 300, 70000 }, miss[1] = { 9 };
	Handoff__Wire__DlqActionReply ar =
		HANDOFF__WIRE__DLQ_ACTION_REPLY__INIT;
	CommandRecord cr = HANDOFF__STORE__COMMAND_RECORD__INIT;
	uint8_t out[64];
	cr.audit_seq = 5;
	cr.created_ms = NOW + 2;
	assert_int_equal(records_command_reply_to_store(&f->a, &ar, &cr.reply),
			 0);
	assert_null(cr.reply);
	assert_int_equal(handoff__store__command_record__pack(&cr, out),
			 sizeof v1_command_empty);
	assert_memory_equal(out, v1_command_empty, sizeof v1_command_empty);
	ar.n_event_ids = 3;
	ar.event_ids = ids;
	ar.n_missing = 1;
	ar.missing = miss;
	ar.more = true;
	cr.audit_seq = 4;
	cr.created_ms = NOW + 1;
	assert_int_equal(records_command_reply_to_store(&f->a, &ar, &cr.reply),
			 0);
	assert_int_equal(handoff__store__command_record__pack(&cr, out),
			 sizeof v1_command);
	assert_memory_equal(out, v1_command, sizeof v1_command);
}

static void raw_put(struct fx *f, enum store_db db, const void *key,
		    size_t klen, const void *val, size_t vlen)
{
	MDB_val k = { klen, (void *)key }, d = { vlen, (void *)val };
	assert_int_equal(mdb_put(f->t.txn, f->st.dbi[db], &k, &d, 0), 0);
}

/* A newer build may add fields: this one reads the rest, and an update
 * keeps what it does not know. */
static void test_unknown_fields_kept(void **state)
{
	struct fx *f = *state;
	EventMeta m = HANDOFF__STORE__EVENT_META__INIT;
	uint8_t val[128], key[8];
	/* field 90 (varint 42) and field 91 (string "new") */
	static const uint8_t extra[] = { 0xd0, 0x05, 0x2a, 0xda, 0x05,
					 0x03, 'n',  'e',  'w' };
	m.topic = (char *)"orders";
	m.published_ms = NOW;
	m.pending_subscriptions = 2;
	/* format 2's event value: crc 0 and meta length, then the meta */
	size_t n = handoff__store__event_meta__pack(&m, val + 8);
	memcpy(val + 8 + n, extra, sizeof extra);
	memset(val, 0, 4);
	be32_put(val + 4, (uint32_t)(n + sizeof extra));
	be64_put(key, 1);
	begin(f, true);
	raw_put(f, DB_EVENTS, key, 8, val, 8 + n + sizeof extra);
	commit(f);

	begin(f, true);
	EventMeta *g;
	assert_int_equal(store_event_get(&f->t, 1, &g), 0);
	assert_string_equal(g->topic, "orders");
	assert_int_equal(g->published_ms, NOW);
	assert_int_equal(g->pending_subscriptions, 2);
	g->pending_subscriptions = 1;
	assert_int_equal(store_event_put(&f->t, 1, g), 0);
	commit(f);

	begin(f, false);
	MDB_val k = { 8, key }, d;
	assert_int_equal(mdb_get(f->t.txn, f->st.dbi[DB_EVENTS], &k, &d), 0);
	assert_non_null(memmem(d.mv_data, d.mv_size, extra, sizeof extra));
	assert_int_equal(store_event_get(&f->t, 1, &g), 0);
	assert_int_equal(g->pending_subscriptions, 1);
	store_txn_abort(&f->t);
}

/* A record that does not decode is STORE_EDECODE, whatever kind it is; a
 * failed allocation is ENOMEM. Neither is "not found". */
static void test_damaged_record_errors(void **state)
{
	struct fx *f = *state;
	static const uint8_t junk[] = { 0x0f, 0xff, 0xff }; /* wire type 7 */
	uint8_t key[12];
	begin(f, true);
	be64_put(key, 5);
	raw_put(f, DB_EVENTS, key, 8, junk, sizeof junk);
	be32_put(key, 9);
	raw_put(f, DB_SUBS, key, 4, junk, sizeof junk);
	raw_put(f, DB_SUB_NAMES, "short", 5, "abc", 3); /* an id is 4 bytes */
	be64_put(key, 5);
	be32_put(key + 8, 9);
	raw_put(f, DB_DELIVERIES, key, 12, junk, sizeof junk);
	raw_put(f, DB_TOPICS, "t", 1, junk, sizeof junk);
	raw_put(f, DB_IDEM, "t\0k", 3, junk, sizeof junk);
	raw_put(f, DB_COMMANDS, "cmd", 3, junk, sizeof junk);
	be64_put(key, 1);
	raw_put(f, DB_AUDIT, key, 8, junk, sizeof junk);
	EventMeta m = HANDOFF__STORE__EVENT_META__INIT;
	m.topic = (char *)"good";
	assert_int_equal(store_event_put(&f->t, 6, &m), 0);
	commit(f);

	begin(f, false);
	EventMeta *em;
	SubRecord *sr;
	DeliveryRecord *dr;
	TopicRecord *tr;
	IdemRecord *ir;
	CommandRecord *cr;
	AuditRecord *ar;
	assert_int_equal(store_event_get(&f->t, 5, &em), STORE_EDECODE);
	assert_int_equal(store_sub_get(&f->t, 9, &sr), STORE_EDECODE);
	assert_int_equal(store_sub_by_name(&f->t, "short", &sr), STORE_EDECODE);
	assert_int_equal(store_delivery_get(&f->t, 5, 9, &dr), STORE_EDECODE);
	assert_int_equal(store_topic_get(&f->t, "t", &tr), STORE_EDECODE);
	assert_int_equal(store_idem_get(&f->t, (const uint8_t *)"t\0k", 3, &ir),
			 STORE_EDECODE);
	assert_int_equal(store_command_get(&f->t, "cmd", &cr), STORE_EDECODE);
	assert_int_equal(store_audit_next(&f->t, 0, &ar), STORE_EDECODE);
	/* the transaction goes on after a damaged record */
	assert_int_equal(store_event_get(&f->t, 6, &em), 0);
	assert_string_equal(em->topic, "good");
	/* an arena that can give nothing more */
	f->a.budget = f->a.used_total + 1;
	assert_int_equal(store_event_get(&f->t, 6, &em), ENOMEM);
	f->a.budget = 0;
	store_txn_abort(&f->t);

	assert_non_null(strstr(store_strerror(STORE_EDECODE), "damaged"));
	assert_string_equal(store_strerror(MDB_NOTFOUND),
			    mdb_strerror(MDB_NOTFOUND));
	assert_string_equal(store_strerror(ENOSPC), strerror(ENOSPC));
	assert_false(store_is_broken(&f->st));
}

/* LMDB directly, as another program (or another handoff build) would. */
struct raw_env {
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta;
};

static void raw_begin(struct raw_env *r, const char *dir)
{
	assert_int_equal(mdb_env_create(&r->env), 0);
	assert_int_equal(mdb_env_set_maxdbs(r->env, 32), 0);
	assert_int_equal(mdb_env_set_mapsize(r->env, MAP_SIZE), 0);
	assert_int_equal(mdb_env_open(r->env, dir, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(r->env, NULL, 0, &r->txn), 0);
	assert_int_equal(mdb_dbi_open(r->txn, "meta", 0, &r->meta), 0);
}

static void raw_end(struct raw_env *r)
{
	assert_int_equal(mdb_txn_commit(r->txn), 0);
	mdb_env_close(r->env);
}

static char *slurp_data(struct fx *f, size_t *len)
{
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/data.mdb", f->dir);
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	long n = ftell(fp);
	assert_true(n > 0);
	rewind(fp);
	char *buf = malloc((size_t)n);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

/* A store of a format version this build does not read is refused with a
 * message that says so, and left as it was (its version included). */
static void test_open_refuses_unknown_version(void **state)
{
	struct fx *f = *state;
	struct raw_env r;
	uint8_t v[4];
	MDB_val k = { 6, "schema" }, d = { 4, v };
	store_close(&f->st);
	f->open = false;
	raw_begin(&r, f->dir);
	be32_put(v, 7);
	assert_int_equal(mdb_put(r.txn, r.meta, &k, &d, 0), 0);
	raw_end(&r);
	size_t n0, n1;
	char *before = slurp_data(f, &n0);

	f->err[0] = 0;
	assert_int_equal(
		store_open(&f->st, f->dir, MAP_SIZE, f->err, sizeof f->err),
		EINVAL);
	assert_string_equal(f->err,
			    "store format version 7 is not one this "
			    "build reads (it reads version 2 and upgrades "
			    "version 1): written by another handoff version?");
	assert_null(f->st.env);
	assert_int_equal(f->st.lock_fd, -1);
	char *after = slurp_data(f, &n1);
	assert_int_equal(n0, n1);
	assert_memory_equal(before, after, n0);
	free(before);
	free(after);

	raw_begin(&r, f->dir);
	assert_int_equal(mdb_get(r.txn, r.meta, &k, &d), 0);
	assert_int_equal(d.mv_size, 4);
	assert_int_equal(be32_get(d.mv_data), 7);
	raw_end(&r);
}

/* No format version at all: not a handoff store (the key is not made up). */
static void test_open_refuses_missing_version(void **state)
{
	struct fx *f = *state;
	struct raw_env r;
	MDB_val k = { 6, "schema" }, d;
	store_close(&f->st);
	f->open = false;
	raw_begin(&r, f->dir);
	assert_int_equal(mdb_del(r.txn, r.meta, &k, NULL), 0);
	raw_end(&r);

	f->err[0] = 0;
	assert_int_equal(
		store_open(&f->st, f->dir, MAP_SIZE, f->err, sizeof f->err),
		MDB_NOTFOUND);
	assert_non_null(strstr(f->err, "no store format version"));
	assert_non_null(strstr(f->err, "not a handoff store"));
	assert_null(f->st.env);

	raw_begin(&r, f->dir);
	assert_int_equal(mdb_get(r.txn, r.meta, &k, &d), MDB_NOTFOUND);
	raw_end(&r);
}

static void test_big_endian_helpers(void **state)
{
	(void)state;
	uint8_t b[8];
	be64_put(b, 0x0102030405060708ull);
	assert_memory_equal(b, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
	assert_int_equal(be64_get(b), 0x0102030405060708ull);
	be64_put(b, UINT64_MAX);
	assert_int_equal(be64_get(b), UINT64_MAX);
	be32_put(b, 0xa1b2c3d4u);
	assert_memory_equal(b, "\xa1\xb2\xc3\xd4", 4);
	assert_int_equal(be32_get(b), 0xa1b2c3d4u);
	/* byte order is numeric order */
	uint8_t x[8], y[8];
	be64_put(x, 255);
	be64_put(y, 256);
	assert_true(memcmp(x, y, 8) < 0);
}

/* store_ready_delayed always equals a full count of the entries due after
 * now, through puts and deletes on both sides of the horizon, time moving
 * on, aborted transactions and a reopen; random operations, fixed seed. */
static void test_ready_delayed_incremental(void **state)
{
	struct fx *f = *state;
	enum { SUBS = 3, SLOTS = 400 };
	uint64_t due_of[SUBS][SLOTS] = { { 0 } }; /* 0: no entry */
	uint64_t now = 10000;
	unsigned seed = 12345;
	for (int round = 0; round < 60; round++) {
		uint64_t saved[SUBS][SLOTS];
		memcpy(saved, due_of, sizeof saved);
		arena_reset(&f->a);
		assert_int_equal(
			store_txn_begin(&f->st, &f->a, true, now, &f->t), 0);
		for (int op = 0; op < 50; op++) {
			uint32_t sub = (uint32_t)(rand_r(&seed) % SUBS);
			uint64_t ev = (uint64_t)(rand_r(&seed) % SLOTS);
			uint64_t *d = &due_of[sub][ev];
			if (*d) {
				assert_int_equal(store_ready_del(&f->t, sub + 1,
								 *d, ev + 1),
						 0);
				*d = 0;
			} else {
				/* due around now: past, now, or up to 3 s on */
				*d = now - 2000 +
				     (uint64_t)(rand_r(&seed) % 5000);
				assert_int_equal(store_ready_put(&f->t, sub + 1,
								 *d, ev + 1),
						 0);
			}
			if (op % 10 == 0) {
				uint32_t s = (uint32_t)(rand_r(&seed) % SUBS);
				uint64_t got, want = 0;
				for (int i = 0; i < SLOTS; i++)
					want += due_of[s][i] > now;
				assert_int_equal(
					store_ready_delayed(&f->t, s + 1, &got),
					0);
				assert_int_equal(got, want);
			}
		}
		if (round % 7 == 3) {
			store_txn_abort(&f->t);
			memcpy(due_of, saved, sizeof saved);
		} else {
			commit(f);
		}
		if (round == 30)
			reopen(f);
		now += (uint64_t)(rand_r(&seed) % 700);
		/* a read-only look after each round */
		arena_reset(&f->a);
		assert_int_equal(
			store_txn_begin(&f->st, &f->a, false, now, &f->t), 0);
		for (uint32_t s = 0; s < SUBS; s++) {
			uint64_t got, want = 0, full;
			for (int i = 0; i < SLOTS; i++)
				want += due_of[s][i] > now;
			assert_int_equal(
				store_ready_delayed(&f->t, s + 1, &got), 0);
			assert_int_equal(got, want);
			assert_int_equal(
				store_ready_count_after(&f->t, s + 1, now,
							UINT64_MAX, &full),
				0);
			assert_int_equal(full, want);
		}
		store_txn_abort(&f->t);
	}
}

int main(void)
{
	setenv("HANDOFF_TEST_NOSYNC", "1", 1);
#define T(fn)  cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define TO(fn) cmocka_unit_test_setup_teardown(fn, setup_open, teardown)
	const struct CMUnitTest tests[] = {
		T(test_open_creates_fresh),
		T(test_open_empty_folder),
		T(test_open_refuses_foreign_folder),
		T(test_open_over_leftover_init),
		TO(test_second_open_locked),
		TO(test_counters_persist),
		TO(test_event_roundtrip),
		TO(test_payload_roundtrip),
		TO(test_payload_corruption_detected),
		TO(test_sub_create_lookup),
		TO(test_topic_subs_sorted),
		TO(test_sub_mark_writes_back),
		TO(test_sub_unlink_delete),
		TO(test_topics),
		TO(test_deliveries),
		TO(test_ready_index),
		TO(test_ready_delayed_incremental),
		TO(test_lease_index),
		TO(test_dlq_index),
		TO(test_idem),
		TO(test_expiry_queue),
		TO(test_format_v1_records),
		TO(test_unknown_fields_kept),
		TO(test_damaged_record_errors),
		TO(test_open_refuses_unknown_version),
		TO(test_open_refuses_missing_version),
		cmocka_unit_test(test_big_endian_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
