/*
 * fuzz_common.c — settings, throw-away stores, reply checks, the store
 * consistency check and the table of leases seen, for the broker fuzz
 * targets; see fuzz.h.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "handlers.h"

#define ST(x)	 HANDOFF__WIRE__STATUS__##x
#define DS(x)	 HANDOFF__WIRE__DELIVERY_STATE__DELIVERY_STATE_##x
#define BODY(x)	 HANDOFF__WIRE__REQUEST__BODY_##x
#define RBODY(x) HANDOFF__WIRE__REPLY__BODY_##x

static const struct config *fz_cfg;

/* ---- settings --------------------------------------------------------- */

void fz_config(struct config *c, uint64_t map_size)
{
	FZ_ASSERT(config_init(c) == 0, "config_init failed");
	c->map_size_bytes = map_size;
	/* small limits: a few KiB of input reaches every one of them */
	c->max_payload_bytes = 2048;
	c->max_batch = 32;
	c->max_subscriptions = 12;
	c->max_held_fetches = 3;
	c->max_backlog = 2000;
	c->max_leases_per_consumer = 24;
	/* short windows: the clock steps of an input reach them */
	c->dedup_window_ms = 10 * 60 * 1000;
	c->history_ms = 30 * 60 * 1000;
	c->max_attempts = 3;
	fz_cfg = c;
}

/* ---- stores ----------------------------------------------------------- */

#define MAX_STORES 4
static char made_dirs[MAX_STORES][PATH_MAX];
static size_t n_made;

static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		char path[PATH_MAX + 300];
		while ((e = readdir(d)) != NULL) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
			if (unlink(path) && errno == EISDIR)
				remove_tree(path);
		}
		closedir(d);
	}
	rmdir(dir);
}

static void remove_made(void)
{
	for (size_t i = 0; i < n_made; i++)
		remove_tree(made_dirs[i]);
	n_made = 0;
}

static void open_store(struct fz_store *s, struct store *st)
{
	char err[512];
	int rc = store_open(st, s->dir, s->map_size, err, sizeof err);
	FZ_ASSERT(rc == 0, "store_open %s: %s", s->dir, err);
}

void fz_store_create(struct fz_store *s, struct store *st, uint64_t map_size)
{
	const char *bases[] = { "/dev/shm", getenv("TMPDIR"), "/tmp" };
	char tmpl[PATH_MAX];
	char *made = NULL;

	/* fast commits; the fuzzers never test durability */
	setenv("HANDOFF_TEST_NOSYNC", "1", 1);
	memset(s, 0, sizeof *s);
	s->map_size = map_size;
	for (size_t i = 0; i < sizeof bases / sizeof *bases && !made; i++) {
		if (!bases[i] || !*bases[i] || access(bases[i], W_OK))
			continue;
		snprintf(tmpl, sizeof tmpl, "%s/handoff-fuzz-XXXXXX", bases[i]);
		made = mkdtemp(tmpl);
	}
	FZ_ASSERT(made, "cannot make a temporary folder");
	FZ_ASSERT(n_made < MAX_STORES, "too many stores");
	if (n_made == 0)
		atexit(remove_made);
	snprintf(made_dirs[n_made++], PATH_MAX, "%s", made);
	snprintf(s->dir, sizeof s->dir, "%s/store", made);

	open_store(s, st);
	store_close(st);
	char path[PATH_MAX + 16];
	snprintf(path, sizeof path, "%s/data.mdb", s->dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	FZ_ASSERT(fd >= 0, "open %s: %s", path, strerror(errno));
	struct stat sb;
	FZ_ASSERT(fstat(fd, &sb) == 0 && sb.st_size > 0, "stat %s", path);
	s->pristine_len = (size_t)sb.st_size;
	s->pristine = malloc(s->pristine_len);
	FZ_ASSERT(s->pristine, "out of memory");
	FZ_ASSERT(read(fd, s->pristine, s->pristine_len) ==
			  (ssize_t)s->pristine_len,
		  "read %s", path);
	close(fd);
	/* The file keeps the whole map allocated from now on, so the broker's
	 * disk reservation (space.c) finds it done for every input alike;
	 * what lies past the brand-new pages is never read by LMDB. */
	fd = open(path, O_WRONLY | O_CLOEXEC);
	FZ_ASSERT(fd >= 0 && posix_fallocate(fd, 0, (off_t)map_size) == 0,
		  "fallocate %s", path);
	close(fd);
	open_store(s, st);
}

void fz_store_fresh(struct fz_store *s, struct store *st)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof path, "%s/data.mdb", s->dir);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	FZ_ASSERT(fd >= 0, "open %s: %s", path, strerror(errno));
	FZ_ASSERT(pwrite(fd, s->pristine, s->pristine_len, 0) ==
			  (ssize_t)s->pristine_len,
		  "write %s", path);
	close(fd);
	open_store(s, st);
}

void fz_store_clear(struct store *st)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
	FZ_ASSERT(rc == 0, "txn: %s", mdb_strerror(rc));
	for (int i = 0; i < DB_COUNT && !rc; i++)
		if (i != DB_META)
			rc = mdb_drop(txn, st->dbi[i], 0);
	/* the counters and cursors go (ids, topic ids, the dedup sweep); the
	 * schema version and the clock mark stay */
	const char *counters[] = { "next_event", "next_sub", "next_topic",
				   "idem_swept", "payloads" };
	for (size_t i = 0; i < sizeof counters / sizeof *counters && !rc; i++) {
		MDB_val k = { strlen(counters[i]), (void *)counters[i] };
		rc = mdb_del(txn, st->dbi[DB_META], &k, NULL);
		if (rc == MDB_NOTFOUND)
			rc = 0;
	}
	FZ_ASSERT(rc == 0, "clearing the store: %s", mdb_strerror(rc));
	rc = mdb_txn_commit(txn);
	FZ_ASSERT(rc == 0, "clearing the store: %s", mdb_strerror(rc));
	st->next_event_id = 1;
	st->next_sub_id = 1;
}

void fz_store_reopen(struct fz_store *s, struct store *st)
{
	store_close(st);
	open_store(s, st);
}

void fz_db_counts(struct txn *t, struct fz_counts *c)
{
	for (int i = 0; i < DB_COUNT; i++) {
		MDB_stat ms;
		int rc = mdb_stat(t->txn, t->st->dbi[i], &ms);
		FZ_ASSERT(rc == 0, "mdb_stat: %s", mdb_strerror(rc));
		c->n[i] = ms.ms_entries;
	}
}

bool fz_counts_equal(const struct fz_counts *a, const struct fz_counts *b)
{
	return memcmp(a->n, b->n, sizeof a->n) == 0;
}

bool fz_txn_dirty(const struct txn *t)
{
	for (size_t i = 0; i < t->n_subs; i++)
		if (t->sub_dirty[i])
			return true;
	return false;
}

/* ---- store consistency ------------------------------------------------ */

static bool key_exists(struct txn *t, int db, const void *key, size_t len)
{
	MDB_val k = { len, (void *)key }, d;
	int rc = mdb_get(t->txn, t->st->dbi[db], &k, &d);
	FZ_ASSERT(rc == 0 || rc == MDB_NOTFOUND, "mdb_get: %s",
		  mdb_strerror(rc));
	return rc == 0;
}

/* Whether the expiry index holds an entry of kind for id due at or after
 * min_at. A record whose window ran out across a restart is given a later
 * entry (it lives out a window of the new run: background.c), so the
 * entry may be later than created + window, never earlier. */
static bool expiry_entry_for(struct txn *t, int kind, const void *id,
			     size_t idlen, uint64_t min_at)
{
	MDB_cursor *cur;
	MDB_val k, d;
	bool found = false;
	int rc = mdb_cursor_open(t->txn, t->st->dbi[DB_EXPIRY], &cur);
	FZ_ASSERT(rc == 0, "cursor: %s", mdb_strerror(rc));
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0 && !found;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
		const uint8_t *key = k.mv_data;
		found = k.mv_size == 9 + idlen && key[8] == kind &&
			be64_get(key) >= min_at &&
			memcmp(key + 9, id, idlen) == 0;
	}
	FZ_ASSERT(found || rc == MDB_NOTFOUND, "cursor: %s", mdb_strerror(rc));
	mdb_cursor_close(cur);
	return found;
}

struct sub_seen {
	uint32_t id;
	SubRecord *r;
	uint64_t ready, leased, dead;
};

struct consumer_count {
	char *name;
	uint32_t n;
};

struct check {
	struct txn *t;
	struct sub_seen *subs;
	size_t n_subs, cap_subs;
	uint32_t *non_final;  /* per event id */
	uint8_t *history_due; /* per event id: has a history expiry entry */
	uint64_t n_events;    /* array length: next_event_id */
	uint64_t n_payloads;  /* events whose payload is held */
	struct consumer_count *cons;
	size_t n_cons, cap_cons;
	uint64_t started_ms;
	bool count_leases;
	uint64_t n_audit; /* audit records seen, in order */
};

static struct sub_seen *sub_find(struct check *c, uint32_t id)
{
	for (size_t i = 0; i < c->n_subs; i++)
		if (c->subs[i].id == id)
			return &c->subs[i];
	return NULL;
}

static void sub_add(struct check *c, uint32_t id)
{
	if (sub_find(c, id))
		return;
	SubRecord *r;
	int rc = store_sub_get(c->t, id, &r);
	FZ_ASSERT(rc == 0, "subscription %u: %s", id, mdb_strerror(rc));
	FZ_ASSERT(r->id == id, "subscription record %u says id %u", id, r->id);
	if (c->n_subs == c->cap_subs) {
		c->cap_subs = c->cap_subs ? 2 * c->cap_subs : 16;
		c->subs = realloc(c->subs, c->cap_subs * sizeof *c->subs);
		FZ_ASSERT(c->subs, "out of memory");
	}
	c->subs[c->n_subs++] = (struct sub_seen){ .id = id, .r = r };
}

static void consumer_count(struct check *c, const char *name)
{
	for (size_t i = 0; i < c->n_cons; i++) {
		if (!strcmp(c->cons[i].name, name)) {
			c->cons[i].n++;
			return;
		}
	}
	if (c->n_cons == c->cap_cons) {
		c->cap_cons = c->cap_cons ? 2 * c->cap_cons : 16;
		c->cons = realloc(c->cons, c->cap_cons * sizeof *c->cons);
		FZ_ASSERT(c->cons, "out of memory");
	}
	c->cons[c->n_cons].name = strdup(name);
	FZ_ASSERT(c->cons[c->n_cons].name, "out of memory");
	c->cons[c->n_cons++].n = 1;
}

static uint32_t consumer_expected(struct check *c, const char *name)
{
	for (size_t i = 0; i < c->n_cons; i++)
		if (!strcmp(c->cons[i].name, name))
			return c->cons[i].n;
	return 0;
}

typedef void (*visit_fn)(struct check *c, const MDB_val *k, const MDB_val *d);

static void scan(struct check *c, int db, visit_fn fn)
{
	MDB_cursor *cur;
	MDB_val k, d;
	int rc = mdb_cursor_open(c->t->txn, c->t->st->dbi[db], &cur);
	FZ_ASSERT(rc == 0, "cursor: %s", mdb_strerror(rc));
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT))
		fn(c, &k, &d);
	FZ_ASSERT(rc == MDB_NOTFOUND, "scan: %s", mdb_strerror(rc));
	mdb_cursor_close(cur);
}

static void visit_sub_key(struct check *c, const MDB_val *k, const MDB_val *d)
{
	(void)d;
	FZ_ASSERT(k->mv_size == 4, "subs key of %zu bytes", k->mv_size);
	sub_add(c, be32_get(k->mv_data));
}

static DeliveryRecord *delivery(struct check *c, uint64_t ev, uint32_t sub)
{
	DeliveryRecord *d;
	int rc = store_delivery_get(c->t, ev, sub, &d);
	if (rc == MDB_NOTFOUND)
		return NULL;
	FZ_ASSERT(rc == 0, "delivery %llu/%u: %s", (unsigned long long)ev, sub,
		  mdb_strerror(rc));
	return d;
}

static void visit_ready(struct check *c, const MDB_val *k, const MDB_val *d)
{
	(void)d;
	FZ_ASSERT(k->mv_size == 20, "ready key of %zu bytes", k->mv_size);
	uint32_t sub = be32_get(k->mv_data);
	uint64_t due = be64_get((uint8_t *)k->mv_data + 4);
	uint64_t ev = be64_get((uint8_t *)k->mv_data + 12);
	struct sub_seen *s = sub_find(c, sub);
	FZ_ASSERT(s,
		  "ready entry of event %llu for subscription %u, which "
		  "has no record",
		  (unsigned long long)ev, sub);
	s->ready++;
	DeliveryRecord *r = delivery(c, ev, sub);
	FZ_ASSERT(r, "ready entry %u/%llu without its delivery", sub,
		  (unsigned long long)ev);
	FZ_ASSERT(r->state == DS(READY) && r->due_ms == due,
		  "ready entry %u/%llu due %llu, delivery in state %d due %llu",
		  sub, (unsigned long long)ev, (unsigned long long)due,
		  r->state, (unsigned long long)r->due_ms);
}

static void visit_lease(struct check *c, const MDB_val *k, const MDB_val *d)
{
	(void)d;
	FZ_ASSERT(k->mv_size == 20, "lease key of %zu bytes", k->mv_size);
	uint64_t deadline = be64_get(k->mv_data);
	uint32_t sub = be32_get((uint8_t *)k->mv_data + 8);
	uint64_t ev = be64_get((uint8_t *)k->mv_data + 12);
	struct sub_seen *s = sub_find(c, sub);
	FZ_ASSERT(s,
		  "lease entry of event %llu for subscription %u, which "
		  "has no record",
		  (unsigned long long)ev, sub);
	s->leased++;
	DeliveryRecord *r = delivery(c, ev, sub);
	FZ_ASSERT(r, "lease entry %u/%llu without its delivery", sub,
		  (unsigned long long)ev);
	FZ_ASSERT(r->state == DS(LEASED) && r->lease_deadline_ms == deadline,
		  "lease entry %u/%llu deadline %llu, delivery in state %d "
		  "deadline %llu",
		  sub, (unsigned long long)ev, (unsigned long long)deadline,
		  r->state, (unsigned long long)r->lease_deadline_ms);
}

static void visit_dlq(struct check *c, const MDB_val *k, const MDB_val *d)
{
	(void)d;
	FZ_ASSERT(k->mv_size == 12, "dlq key of %zu bytes", k->mv_size);
	uint32_t sub = be32_get(k->mv_data);
	uint64_t ev = be64_get((uint8_t *)k->mv_data + 4);
	struct sub_seen *s = sub_find(c, sub);
	FZ_ASSERT(s,
		  "dlq entry of event %llu for subscription %u, which has "
		  "no record",
		  (unsigned long long)ev, sub);
	s->dead++;
	DeliveryRecord *r = delivery(c, ev, sub);
	FZ_ASSERT(r && r->state == DS(DEAD),
		  "dlq entry %u/%llu, delivery in state %d", sub,
		  (unsigned long long)ev, r ? r->state : -1);
}

static void visit_delivery(struct check *c, const MDB_val *k, const MDB_val *d)
{
	(void)d;
	FZ_ASSERT(k->mv_size == 12, "delivery key of %zu bytes", k->mv_size);
	uint64_t ev = be64_get(k->mv_data);
	uint32_t sub = be32_get((uint8_t *)k->mv_data + 8);
	DeliveryRecord *r = delivery(c, ev, sub);
	FZ_ASSERT(r, "delivery %llu/%u vanished", (unsigned long long)ev, sub);
	FZ_ASSERT(ev > 0 && ev < c->n_events,
		  "delivery of event %llu, next "
		  "event id %llu",
		  (unsigned long long)ev, (unsigned long long)c->n_events);
	bool final = false;
	uint8_t key[20];
	switch (r->state) {
	case DS(READY):
		be32_put(key, sub);
		be64_put(key + 4, r->due_ms);
		be64_put(key + 12, ev);
		FZ_ASSERT(key_exists(c->t, DB_READY, key, 20),
			  "READY delivery %llu/%u due %llu has no ready entry",
			  (unsigned long long)ev, sub,
			  (unsigned long long)r->due_ms);
		break;
	case DS(LEASED):
		be64_put(key, r->lease_deadline_ms);
		be32_put(key + 8, sub);
		be64_put(key + 12, ev);
		FZ_ASSERT(key_exists(c->t, DB_LEASES, key, 20),
			  "LEASED delivery %llu/%u has no lease entry",
			  (unsigned long long)ev, sub);
		FZ_ASSERT(r->lease_token != 0,
			  "LEASED delivery %llu/%u with "
			  "token 0",
			  (unsigned long long)ev, sub);
		FZ_ASSERT(
			r->n_history > 0 &&
				r->history[r->n_history - 1]->outcome ==
					HANDOFF__WIRE__OUTCOME__OUTCOME_LEASED,
			"LEASED delivery %llu/%u: last attempt not in progress",
			(unsigned long long)ev, sub);
		if (c->count_leases &&
		    r->history[r->n_history - 1]->leased_ms >= c->started_ms)
			consumer_count(c, r->consumer ? r->consumer : "");
		break;
	case DS(DEAD):
		be32_put(key, sub);
		be64_put(key + 4, ev);
		FZ_ASSERT(key_exists(c->t, DB_DLQ, key, 12),
			  "DEAD delivery %llu/%u has no dlq entry",
			  (unsigned long long)ev, sub);
		FZ_ASSERT(r->dead_reason >= 1 && r->dead_reason <= 3,
			  "DEAD delivery %llu/%u with dead reason %d",
			  (unsigned long long)ev, sub, r->dead_reason);
		break;
	case DS(ACKED):
	case DS(PURGED):
	case DS(UNSUBSCRIBED):
		final = true;
		break;
	default:
		FZ_ASSERT(0, "delivery %llu/%u in state %d",
			  (unsigned long long)ev, sub, r->state);
	}
	if (!final) {
		FZ_ASSERT(sub_find(c, sub),
			  "live delivery %llu/%u (state %d) "
			  "of a subscription that has no record",
			  (unsigned long long)ev, sub, r->state);
		c->non_final[ev]++;
	}
	FZ_ASSERT(r->budget_used <= r->attempts,
		  "delivery %llu/%u: budget "
		  "%u > attempts %u",
		  (unsigned long long)ev, sub, r->budget_used, r->attempts);
}

/* A topic_log entry: a READY delivery (with no record of its own) of every
 * subscription of its topic whose cursor is at or before it and that was
 * not unsubscribed before it was published. */
static void visit_log(struct check *c, const MDB_val *k, const MDB_val *d)
{
	FZ_ASSERT(k->mv_size == 12, "topic_log key of %zu bytes", k->mv_size);
	FZ_ASSERT(d->mv_size == 8, "topic_log value of %zu bytes", d->mv_size);
	uint32_t tid = be32_get(k->mv_data);
	uint64_t ev = be64_get((uint8_t *)k->mv_data + 4);
	FZ_ASSERT(tid > 0 && ev > 0 && ev < c->n_events,
		  "topic_log entry %u/%llu, next event id %llu", tid,
		  (unsigned long long)ev, (unsigned long long)c->n_events);
	EventMeta *m;
	int rc = store_event_get(c->t, ev, &m);
	FZ_ASSERT(rc == 0 && m->topic_id == tid,
		  "topic_log entry %u/%llu: event record %s (topic id %u)", tid,
		  (unsigned long long)ev, rc ? mdb_strerror(rc) : "found",
		  rc ? 0 : m->topic_id);
	for (size_t i = 0; i < c->n_subs; i++) {
		struct sub_seen *s = &c->subs[i];
		const SubRecord *r = s->r;
		if (r->topic_id != tid || ev < r->log_cursor ||
		    (r->log_end && ev >= r->log_end))
			continue;
		uint8_t key[12];
		be64_put(key, ev);
		be32_put(key + 8, s->id);
		FZ_ASSERT(!key_exists(c->t, DB_DELIVERIES, key, 12),
			  "event %llu is both in subscription %u's log (cursor "
			  "%llu) and in its stored deliveries",
			  (unsigned long long)ev, s->id,
			  (unsigned long long)r->log_cursor);
		DeliveryRecord *dr = delivery(c, ev, s->id);
		FZ_ASSERT(dr && dr->state == DS(READY) &&
				  dr->due_ms == be64_get(d->mv_data),
			  "log delivery %llu/%u does not read as READY at its "
			  "publish time",
			  (unsigned long long)ev, s->id);
		s->ready++;
		c->non_final[ev]++;
	}
}

static void visit_expiry(struct check *c, const MDB_val *k, const MDB_val *d)
{
	(void)d;
	FZ_ASSERT(k->mv_size >= 9 && k->mv_size <= 9 + IDEM_KEY_MAX,
		  "expiry key of %zu bytes", k->mv_size);
	int kind = ((uint8_t *)k->mv_data)[8];
	FZ_ASSERT(kind == EXPIRY_IDEM || kind == EXPIRY_HISTORY ||
			  kind == EXPIRY_COMMAND,
		  "expiry entry of kind %d", kind);
	if (kind == EXPIRY_HISTORY) {
		FZ_ASSERT(k->mv_size == 17, "history expiry key of %zu bytes",
			  k->mv_size);
		uint64_t ev = be64_get((uint8_t *)k->mv_data + 9);
		if (ev < c->n_events)
			c->history_due[ev] = 1;
	}
}

static void visit_event(struct check *c, const MDB_val *k, const MDB_val *d)
{
	(void)d;
	FZ_ASSERT(k->mv_size == 8, "events key of %zu bytes", k->mv_size);
	uint64_t ev = be64_get(k->mv_data);
	FZ_ASSERT(ev > 0 && ev < c->n_events, "event %llu, next event id %llu",
		  (unsigned long long)ev, (unsigned long long)c->n_events);
	EventMeta *m;
	int rc = store_event_get(c->t, ev, &m);
	FZ_ASSERT(rc == 0, "event %llu: %s", (unsigned long long)ev,
		  mdb_strerror(rc));
	FZ_ASSERT(m->pending_subscriptions == c->non_final[ev],
		  "event %llu: pending_subscriptions %u but %u live deliveries",
		  (unsigned long long)ev, m->pending_subscriptions,
		  c->non_final[ev]);
	FZ_ASSERT(m->payload_removed == (m->pending_subscriptions == 0),
		  "event %llu: payload_removed %d with %u pending",
		  (unsigned long long)ev, m->payload_removed,
		  m->pending_subscriptions);
	EventBody *b;
	rc = store_payload_get(c->t, ev, &b);
	FZ_ASSERT(rc == 0 || rc == MDB_NOTFOUND, "payload %llu: %s",
		  (unsigned long long)ev, store_strerror(rc));
	bool has_payload = rc == 0;
	c->n_payloads += has_payload;
	FZ_ASSERT(has_payload == !m->payload_removed,
		  "event %llu: payload_removed %d, payload record %s",
		  (unsigned long long)ev, m->payload_removed,
		  has_payload ? "present" : "absent");
	if (m->payload_removed)
		FZ_ASSERT(c->history_due[ev],
			  "event %llu: payload removed "
			  "but no history expiry entry: its trace is kept "
			  "forever",
			  (unsigned long long)ev);
}

static void visit_idem(struct check *c, const MDB_val *k, const MDB_val *d)
{
	(void)d;
	IdemRecord *r;
	FZ_ASSERT(k->mv_size > 0 && k->mv_size <= IDEM_KEY_MAX,
		  "idem key of %zu bytes", k->mv_size);
	int rc = store_idem_get(c->t, k->mv_data, k->mv_size, &r);
	FZ_ASSERT(rc == 0, "idem record: %s", mdb_strerror(rc));
	FZ_ASSERT(r->event_id > 0 && r->event_id < c->n_events,
		  "idem record names event %llu",
		  (unsigned long long)r->event_id);
	if (fz_cfg) {
		/* removed by the sweep of the events (its event not swept
		 * yet, naming this key), or by its own expiry entry */
		uint64_t swept = 0;
		EventMeta *m;
		uint8_t key[IDEM_KEY_MAX];
		size_t len;
		rc = store_meta_get(c->t, "idem_swept", &swept);
		FZ_ASSERT(rc == 0 || rc == MDB_NOTFOUND, "idem_swept: %s",
			  store_strerror(rc));
		bool swept_later =
			r->event_id > swept &&
			store_event_get(c->t, r->event_id, &m) == 0 &&
			m->topic_id && m->idempotency_key &&
			store_idem_key(m->topic_id, m->idempotency_key, key,
				       &len) == 0 &&
			len == k->mv_size && !memcmp(key, k->mv_data, len);
		FZ_ASSERT(swept_later ||
				  expiry_entry_for(
					  c->t, EXPIRY_IDEM, k->mv_data,
					  k->mv_size,
					  r->created_ms +
						  fz_cfg->dedup_window_ms),
			  "idem record of event %llu is neither left to the "
			  "sweep nor has an expiry entry: it would be kept "
			  "forever",
			  (unsigned long long)r->event_id);
	}
}

static void visit_command(struct check *c, const MDB_val *k, const MDB_val *d)
{
	(void)d;
	char id[IDEM_KEY_MAX + 1];
	CommandRecord *r;
	FZ_ASSERT(k->mv_size > 0 && k->mv_size <= 256,
		  "command id of %zu bytes", k->mv_size);
	memcpy(id, k->mv_data, k->mv_size);
	id[k->mv_size] = 0;
	int rc = store_command_get(c->t, id, &r);
	/* its reply is part of the record: decoded by store_command_get */
	FZ_ASSERT(rc == 0,
		  "command record %s (or its reply) does not decode: "
		  "%s",
		  id, store_strerror(rc));
	FZ_ASSERT(r->audit_seq >= 1 && r->audit_seq <= c->n_audit,
		  "command %s names audit record %llu of %llu", id,
		  (unsigned long long)r->audit_seq,
		  (unsigned long long)c->n_audit);
	if (fz_cfg) {
		FZ_ASSERT(expiry_entry_for(
				  c->t, EXPIRY_COMMAND, k->mv_data, k->mv_size,
				  r->created_ms + fz_cfg->dedup_window_ms),
			  "command record %s has no expiry entry: it would be "
			  "kept forever",
			  id);
	}
}

static void visit_audit(struct check *c, const MDB_val *k, const MDB_val *d)
{
	(void)d;
	FZ_ASSERT(k->mv_size == 8, "audit key of %zu bytes", k->mv_size);
	uint64_t seq = be64_get(k->mv_data);
	FZ_ASSERT(seq == c->n_audit + 1, "audit record %llu after %llu",
		  (unsigned long long)seq, (unsigned long long)c->n_audit);
	c->n_audit = seq;
	AuditRecord *r;
	int rc = store_audit_next(c->t, seq - 1, &r);
	FZ_ASSERT(rc == 0 && r->seq == seq, "audit record %llu: %s",
		  (unsigned long long)seq, rc ? mdb_strerror(rc) : "other seq");
}

static void visit_sub_name(struct check *c, const MDB_val *k, const MDB_val *d)
{
	FZ_ASSERT(d->mv_size == 4, "sub_names value of %zu bytes", d->mv_size);
	uint32_t id = be32_get(d->mv_data);
	struct sub_seen *s = sub_find(c, id);
	FZ_ASSERT(s, "name %.*s names subscription %u, which has no record",
		  (int)k->mv_size, (char *)k->mv_data, id);
	FZ_ASSERT(!s->r->deleting, "name %.*s names deleted subscription %u",
		  (int)k->mv_size, (char *)k->mv_data, id);
	FZ_ASSERT(strlen(s->r->name) == k->mv_size &&
			  !memcmp(s->r->name, k->mv_data, k->mv_size),
		  "name %.*s names subscription %u called %s", (int)k->mv_size,
		  (char *)k->mv_data, id, s->r->name);
}

static void visit_topic_sub(struct check *c, const MDB_val *k, const MDB_val *d)
{
	FZ_ASSERT(d->mv_size == 4, "topic_subs value of %zu bytes", d->mv_size);
	uint32_t id = be32_get(d->mv_data);
	struct sub_seen *s = sub_find(c, id);
	FZ_ASSERT(s && !s->r->deleting,
		  "topic_subs entry names subscription "
		  "%u: %s",
		  id, s ? "deleted" : "no record");
	size_t tl = strlen(s->r->topic), nl = strlen(s->r->name);
	FZ_ASSERT(k->mv_size == tl + 1 + nl &&
			  !memcmp(k->mv_data, s->r->topic, tl) &&
			  ((char *)k->mv_data)[tl] == 0 &&
			  !memcmp((char *)k->mv_data + tl + 1, s->r->name, nl),
		  "topic_subs entry for subscription %u (%s on %s) has another "
		  "key",
		  id, s->r->name, s->r->topic);
}

void fz_check_store(struct txn *t, const struct lease_counts *leases,
		    uint64_t started_ms, char *const *consumers,
		    size_t n_consumers)
{
	struct check c = { .t = t,
			   .started_ms = started_ms,
			   .count_leases = leases != NULL };

	c.n_events = t->next_event_id;
	FZ_ASSERT(c.n_events >= 1 && c.n_events < (1u << 22),
		  "next event id %llu", (unsigned long long)c.n_events);
	c.non_final = calloc(c.n_events, sizeof *c.non_final);
	c.history_due = calloc(c.n_events, 1);
	FZ_ASSERT(c.non_final && c.history_due, "out of memory");

	/* subscriptions: the records written, and those of this txn that are
	 * still in its cache only */
	scan(&c, DB_SUBS, visit_sub_key);
	for (size_t i = 0; i < t->n_subs; i++)
		sub_add(&c, t->subs[i]->id);
	for (size_t i = 0; i < c.n_subs; i++) {
		SubRecord *r = c.subs[i].r;
		FZ_ASSERT(r->id > 0 && r->id < t->next_sub_id,
			  "subscription id %u, next %u", r->id, t->next_sub_id);
		FZ_ASSERT(r->name && r->topic && r->policy,
			  "subscription %u lacks name, topic or policy", r->id);
		TopicRecord *tr;
		FZ_ASSERT(
			r->topic_id && store_topic_get(t, r->topic, &tr) == 0 &&
				tr->id == r->topic_id,
			"subscription %u (%s): topic id %u is not its topic's",
			r->id, r->name, r->topic_id);
		FZ_ASSERT(r->log_cursor >= 1 &&
				  r->log_cursor <= t->next_event_id,
			  "subscription %u: log cursor %llu, next event %llu",
			  r->id, (unsigned long long)r->log_cursor,
			  (unsigned long long)t->next_event_id);
		if (!r->deleting) {
			MDB_val k = { strlen(r->name), r->name }, d;
			int rc = mdb_get(t->txn, t->st->dbi[DB_SUB_NAMES], &k,
					 &d);
			FZ_ASSERT(
				rc == 0 && d.mv_size == 4 &&
					be32_get(d.mv_data) == r->id,
				"live subscription %u (%s) not under its name",
				r->id, r->name);
		}
	}

	scan(&c, DB_READY, visit_ready);
	scan(&c, DB_LEASES, visit_lease);
	scan(&c, DB_DLQ, visit_dlq);
	scan(&c, DB_DELIVERIES, visit_delivery);
	scan(&c, DB_TOPIC_LOG, visit_log);
	scan(&c, DB_EXPIRY, visit_expiry);
	scan(&c, DB_EVENTS, visit_event);
	/* format 2: payloads live in their events' records */
	MDB_stat pst;
	FZ_ASSERT(mdb_stat(t->txn, t->st->dbi[DB_PAYLOADS], &pst) == 0 &&
			  pst.ms_entries == 0,
		  "the format-1 payloads database is not empty");
	uint64_t counted;
	FZ_ASSERT(store_payload_count(t, &counted) == 0 &&
			  counted == c.n_payloads,
		  "meta counts %llu payloads, the events hold %llu",
		  (unsigned long long)counted,
		  (unsigned long long)c.n_payloads);
	scan(&c, DB_IDEM, visit_idem);
	scan(&c, DB_SUB_NAMES, visit_sub_name);
	scan(&c, DB_TOPIC_SUBS, visit_topic_sub);
	scan(&c, DB_AUDIT, visit_audit);
	scan(&c, DB_COMMANDS, visit_command);

	for (size_t i = 0; i < c.n_subs; i++) {
		struct sub_seen *s = &c.subs[i];
		FZ_ASSERT(
			s->r->ready == s->ready && s->r->leased == s->leased &&
				s->r->dead == s->dead,
			"subscription %u (%s%s): counters ready %llu leased "
			"%llu dead %llu, index ready %llu leased %llu dead %llu",
			s->id, s->r->name, s->r->deleting ? ", deleting" : "",
			(unsigned long long)s->r->ready,
			(unsigned long long)s->r->leased,
			(unsigned long long)s->r->dead,
			(unsigned long long)s->ready,
			(unsigned long long)s->leased,
			(unsigned long long)s->dead);
	}

	if (leases) {
		for (size_t i = 0; i < c.n_cons; i++)
			FZ_ASSERT(leases_held(leases, c.cons[i].name) ==
					  c.cons[i].n,
				  "consumer %s: lease table says %u, the store "
				  "holds %u leases granted since the start",
				  c.cons[i].name,
				  leases_held(leases, c.cons[i].name),
				  c.cons[i].n);
		for (size_t i = 0; i < n_consumers; i++) {
			uint32_t want = consumer_expected(&c, consumers[i]);
			FZ_ASSERT(leases_held(leases, consumers[i]) == want,
				  "consumer %s: lease table says %u, the store "
				  "holds %u leases granted since the start",
				  consumers[i],
				  leases_held(leases, consumers[i]), want);
		}
	}

	for (size_t i = 0; i < c.n_cons; i++)
		free(c.cons[i].name);
	free(c.cons);
	free(c.subs);
	free(c.non_final);
	free(c.history_due);
}

void fz_check_views(struct handler_env *env, struct txn *t)
{
	Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__ListSubscriptionsRequest lr =
		HANDOFF__WIRE__LIST_SUBSCRIPTIONS_REQUEST__INIT;
	Handoff__Wire__StatsRequest sr = HANDOFF__WIRE__STATS_REQUEST__INIT;
	struct fetch_hold hold;
	req.protocol_version = 1;

	req.body_case = BODY(LIST_SUBSCRIPTIONS);
	req.list_subscriptions = &lr;
	Reply *list = codec_new_reply(t->arena);
	FZ_ASSERT(list, "out of memory");
	int rc = handlers_apply(env, t, &req, list, &hold);
	FZ_ASSERT(rc == 0 && list->status == ST(OK) &&
			  list->body_case == RBODY(LIST_SUBSCRIPTIONS),
		  "list_subscriptions: rc %d status %d", rc, list->status);

	req.body_case = BODY(STATS);
	req.stats = &sr;
	Reply *stats = codec_new_reply(t->arena);
	FZ_ASSERT(stats, "out of memory");
	rc = handlers_apply(env, t, &req, stats, &hold);
	FZ_ASSERT(rc == 0 && stats->status == ST(OK) &&
			  stats->body_case == RBODY(STATS),
		  "stats: rc %d status %d", rc, stats->status);

	const Handoff__Wire__ListSubscriptionsReply *l =
		list->list_subscriptions;
	const Handoff__Wire__StatsReply *s = stats->stats;
	FZ_ASSERT(l->n_subscriptions == s->n_subscriptions,
		  "list shows %zu subscriptions, stats %zu", l->n_subscriptions,
		  s->n_subscriptions);
	for (size_t i = 0; i < l->n_subscriptions; i++) {
		const Handoff__Wire__SubscriptionInfo *si = l->subscriptions[i];
		const Handoff__Wire__SubscriptionStats *ss =
			s->subscriptions[i];
		SubRecord *r;
		rc = store_sub_by_name(t, si->name, &r);
		FZ_ASSERT(rc == 0 && !r->deleting, "listed subscription %s: %s",
			  si->name, rc ? mdb_strerror(rc) : "deleting");
		FZ_ASSERT(!strcmp(si->name, ss->name) &&
				  !strcmp(si->topic, ss->topic),
			  "list and stats disagree on subscription %zu", i);
		FZ_ASSERT(si->ready + si->delayed == r->ready &&
				  si->leased == r->leased &&
				  si->dead == r->dead,
			  "list of %s: ready %llu + delayed %llu, leased %llu, "
			  "dead %llu; record ready %llu leased %llu dead %llu",
			  si->name, (unsigned long long)si->ready,
			  (unsigned long long)si->delayed,
			  (unsigned long long)si->leased,
			  (unsigned long long)si->dead,
			  (unsigned long long)r->ready,
			  (unsigned long long)r->leased,
			  (unsigned long long)r->dead);
		FZ_ASSERT(ss->ready == si->ready &&
				  ss->delayed == si->delayed &&
				  ss->leased == si->leased &&
				  ss->dead == si->dead,
			  "stats and list disagree on the counts of %s",
			  si->name);
	}
	/* every live subscription is listed (records written by earlier
	 * commits and those created in this transaction alike) */
	size_t live = 0;
	MDB_stat ms;
	rc = mdb_stat(t->txn, t->st->dbi[DB_SUB_NAMES], &ms);
	FZ_ASSERT(rc == 0, "mdb_stat: %s", mdb_strerror(rc));
	live = ms.ms_entries;
	FZ_ASSERT(l->n_subscriptions == live,
		  "list_subscriptions shows %zu subscriptions, %zu exist",
		  l->n_subscriptions, live);
	uint64_t payloads = 0, ev = 0;
	EventBody *body;
	while (store_event_next(t, ev, &ev) == 0)
		payloads += store_payload_get(t, ev, &body) == 0;
	FZ_ASSERT(s->events_stored == payloads,
		  "stats: events_stored %llu, %llu payloads",
		  (unsigned long long)s->events_stored,
		  (unsigned long long)payloads);
	for (size_t i = 0; i < s->n_topics; i++) {
		uint32_t *ids;
		size_t n;
		rc = store_topic_subs(t, s->topics[i]->name, &ids, &n);
		FZ_ASSERT(rc == 0 && s->topics[i]->subscriptions == n,
			  "stats: topic %s has %u subscriptions, index %zu",
			  s->topics[i]->name, s->topics[i]->subscriptions, n);
	}
}

/* ---- replies ---------------------------------------------------------- */

bool fz_status_valid(int status)
{
	return status >= ST(OK) && status <= ST(STALE_REQUEST) &&
	       status != ST(SHUTTING_DOWN);
}

#define B(x) (1u << ST(x))

/* The statuses proto/PROTOCOL.md lists for each request type (§4, §5);
 * STORAGE_FULL and INTERNAL can come from any (§2), PERMISSION_DENIED and
 * STALE_REQUEST from any when access control is on. */
static unsigned allowed_statuses(const struct config *cfg, int body_case)
{
	unsigned any = B(OK) | B(STORAGE_FULL) | B(INTERNAL);
	if (cfg->n_keys)
		any |= B(PERMISSION_DENIED) | B(STALE_REQUEST);
	switch (body_case) {
	case BODY(PING):
	case BODY(LIST_SUBSCRIPTIONS):
	case BODY(STATS):
		return any;
	case BODY(AUDIT_LIST):
		return any | B(LIMIT_EXCEEDED);
	case BODY(PUBLISH):
		return any | B(BAD_REQUEST) | B(NO_SUBSCRIPTIONS) |
		       B(LIMIT_EXCEEDED);
	case BODY(SUBSCRIBE):
		return any | B(BAD_REQUEST) | B(CONFLICT) | B(LIMIT_EXCEEDED);
	case BODY(UNSUBSCRIBE):
	case BODY(PAUSE):
	case BODY(RESUME):
		return any | B(BAD_REQUEST) | B(NOT_FOUND);
	case BODY(FETCH):
	case BODY(ACK):
	case BODY(NACK):
	case BODY(EXTEND):
	case BODY(DLQ_LIST):
	case BODY(DLQ_REPLAY):
	case BODY(DLQ_PURGE):
		return any | B(BAD_REQUEST) | B(NOT_FOUND) | B(LIMIT_EXCEEDED);
	case BODY(DLQ_SHOW):
		return any | B(BAD_REQUEST) | B(NOT_FOUND);
	case BODY(TRACE):
		return any | B(NOT_FOUND);
	case BODY(AWAIT):
		return any | B(BAD_REQUEST) | B(NOT_FOUND) | B(LIMIT_EXCEEDED);
	case BODY(HEALTH): /* OK only (§5.18), STORAGE_FULL never */
		return B(OK) | B(INTERNAL);
	case BODY(BACKUP):
		return any | B(BAD_REQUEST) | B(CONFLICT) | B(NOT_FOUND);
	default:
		return B(BAD_REQUEST);
	}
}

static bool valid_name(const char *s, uint32_t max)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789._-:/",
			    s[i]))
			return false;
	return true;
}

static void check_items(const Reply *r, size_t n_items)
{
	FZ_ASSERT(r->body_case == RBODY(ITEMS) && r->items,
		  "ack/nack/extend OK without items body (case %d)",
		  r->body_case);
	FZ_ASSERT(r->items->n_statuses == n_items,
		  "ack/nack/extend of %zu items got %zu statuses", n_items,
		  r->items->n_statuses);
	for (size_t i = 0; i < n_items; i++) {
		int s = r->items->statuses[i];
		FZ_ASSERT(s == ST(OK) || s == ST(LEASE_LOST) ||
				  s == ST(NOT_FOUND),
			  "item %zu status %d", i, s);
	}
}

static void check_policy(const struct config *cfg,
			 const Handoff__Wire__Policy *want,
			 const Handoff__Wire__Policy *got)
{
	FZ_ASSERT(got, "subscribe OK without the effective policy");
	FZ_ASSERT(got->max_attempts >= 1 && got->max_attempts <= 10000 &&
			  got->ack_deadline_ms <= 24u * 3600 * 1000 &&
			  got->backoff_max_ms <= 24u * 3600 * 1000 &&
			  got->backoff_min_ms <= got->backoff_max_ms,
		  "subscribe OK with an invalid policy (%u %u %u..%u)",
		  got->max_attempts, got->ack_deadline_ms, got->backoff_min_ms,
		  got->backoff_max_ms);
#define FIELD(f, dflt)                                                   \
	FZ_ASSERT(got->f == (want && want->f ? want->f : (dflt)),        \
		  "subscribe OK: effective " #f " %u, asked %u", got->f, \
		  want ? want->f : 0)
	FIELD(max_attempts, cfg->max_attempts);
	FIELD(ack_deadline_ms, cfg->ack_deadline_ms);
	FIELD(backoff_min_ms, cfg->backoff_min_ms);
	FIELD(backoff_max_ms, cfg->backoff_max_ms);
#undef FIELD
}

static void check_dlq_filter(const Handoff__Wire__DlqFilter *f,
			     const uint64_t *ids, size_t n)
{
	uint64_t prev = f ? f->after_event_id : 0;
	for (size_t i = 0; i < n; i++) {
		FZ_ASSERT(ids[i] > prev,
			  "dead letters out of order or at/before "
			  "the cursor: %llu after %llu",
			  (unsigned long long)ids[i], (unsigned long long)prev);
		prev = ids[i];
	}
}

static void check_ok_body(const struct config *cfg, const Request *q,
			  const Reply *r, size_t len)
{
	switch (q->body_case) {
	case BODY(PING):
		FZ_ASSERT(r->body_case == RBODY(PING) && r->ping &&
				  !strcmp(r->ping->version,
					  HANDOFF_BUILD_VERSION) &&
				  r->ping->max_request_bytes ==
					  cfg->max_request_bytes,
			  "ping OK without the version and request limit");
		break;
	case BODY(AUDIT_LIST): {
		const Handoff__Wire__AuditListReply *a = r->audit_list;
		uint32_t limit =
			q->audit_list->limit ? q->audit_list->limit : 100;
		FZ_ASSERT(r->body_case == RBODY(AUDIT_LIST) && a,
			  "audit_list OK without its body");
		FZ_ASSERT(a->n_records <= limit, "audit_list limit %u: %zu",
			  limit, a->n_records);
		uint64_t prev = q->audit_list->after_seq;
		for (size_t i = 0; i < a->n_records; i++) {
			const Handoff__Wire__AuditRecord *ar = a->records[i];
			FZ_ASSERT(ar->seq > prev,
				  "audit records out of order: "
				  "%llu after %llu",
				  (unsigned long long)ar->seq,
				  (unsigned long long)prev);
			prev = ar->seq;
			FZ_ASSERT(!strcmp(ar->action, "replay") ||
					  !strcmp(ar->action, "purge") ||
					  !strcmp(ar->action, "unsubscribe") ||
					  !strcmp(ar->action, "pause") ||
					  !strcmp(ar->action, "resume"),
				  "audit record of action '%s'", ar->action);
			FZ_ASSERT(ar->count == ar->n_event_ids,
				  "audit record: count %u, %zu ids", ar->count,
				  ar->n_event_ids);
		}
		break;
	}
	case BODY(PUBLISH): {
		const Handoff__Wire__PublishReply *p = r->publish;
		FZ_ASSERT(r->body_case == RBODY(PUBLISH) && p,
			  "publish OK without publish body");
		FZ_ASSERT(p->n_event_ids == q->publish->n_events &&
				  p->n_duplicates == q->publish->n_events,
			  "publish of %zu events: %zu ids, %zu duplicate flags",
			  q->publish->n_events, p->n_event_ids,
			  p->n_duplicates);
		for (size_t i = 0; i < p->n_event_ids; i++)
			FZ_ASSERT(p->event_ids[i] > 0, "event id 0");
		break;
	}
	case BODY(SUBSCRIBE):
		FZ_ASSERT(r->body_case == RBODY(SUBSCRIBE) && r->subscribe,
			  "subscribe OK without subscribe body");
		check_policy(cfg, q->subscribe->policy, r->subscribe->policy);
		break;
	case BODY(UNSUBSCRIBE):
		FZ_ASSERT(r->body_case == RBODY(_NOT_SET),
			  "unsubscribe OK with a body (case %d)", r->body_case);
		break;
	case BODY(PAUSE):
		/* paused now, by this request or an earlier one (whose reason
		 * stays); a pause always has a reason */
		FZ_ASSERT(r->body_case == RBODY(PAUSE) && r->pause &&
				  r->pause->paused &&
				  r->pause->paused->reason &&
				  *r->pause->paused->reason,
			  "pause OK but not paused");
		FZ_ASSERT(!r->pause->changed ||
				  !strcmp(r->pause->paused->reason,
					  q->pause->reason),
			  "pause changed it with another reason");
		break;
	case BODY(RESUME):
		FZ_ASSERT(r->body_case == RBODY(PAUSE) && r->pause &&
				  !r->pause->paused,
			  "resume OK but still paused");
		break;
	case BODY(LIST_SUBSCRIPTIONS): {
		const Handoff__Wire__ListSubscriptionsReply *l =
			r->list_subscriptions;
		FZ_ASSERT(r->body_case == RBODY(LIST_SUBSCRIPTIONS) && l,
			  "list OK without its body");
		for (size_t i = 0; i < l->n_subscriptions; i++)
			FZ_ASSERT(valid_name(l->subscriptions[i]->name,
					     cfg->max_name_bytes) &&
					  l->subscriptions[i]->policy,
				  "listed subscription %zu malformed", i);
		break;
	}
	case BODY(FETCH): {
		const Handoff__Wire__FetchRequest *f = q->fetch;
		const Handoff__Wire__FetchReply *fr = r->fetch;
		uint32_t max = f->max_events ? f->max_events : 1;
		FZ_ASSERT(r->body_case == RBODY(FETCH) && fr,
			  "fetch OK without fetch body");
		FZ_ASSERT(fr->n_deliveries <= max,
			  "fetch of %u: %zu deliveries", max, fr->n_deliveries);
		FZ_ASSERT(!fr->paused || fr->n_deliveries == 0,
			  "fetch of a paused subscription: %zu deliveries",
			  fr->n_deliveries);
		for (size_t i = 0; i < fr->n_deliveries; i++) {
			const Handoff__Wire__Delivery *d = fr->deliveries[i];
			FZ_ASSERT(
				d->event_id > 0 && d->lease_token != 0 &&
					d->attempt >= 1,
				"delivery %zu: event %llu token %llu attempt %u",
				i, (unsigned long long)d->event_id,
				(unsigned long long)d->lease_token, d->attempt);
			FZ_ASSERT(d->payload.len <= cfg->max_payload_bytes,
				  "delivery %zu: payload of %zu bytes", i,
				  d->payload.len);
		}
		uint64_t max_bytes = f->max_bytes ? f->max_bytes : (64u << 20);
		FZ_ASSERT(fr->n_deliveries <= 1 || len <= max_bytes,
			  "fetch reply of %zu bytes exceeds max_bytes %llu",
			  len, (unsigned long long)max_bytes);
		break;
	}
	case BODY(ACK):
		check_items(r, q->ack->n_items);
		break;
	case BODY(NACK):
		check_items(r, q->nack->n_items);
		/* a release takes neither delay nor permanent (PROTOCOL.md
		 * 5.8): such a request is refused whole */
		for (size_t i = 0; q->nack->release && i < q->nack->n_items;
		     i++)
			FZ_ASSERT(!q->nack->items[i]->delay_ms &&
					  !q->nack->items[i]->permanent,
				  "release OK with item %zu delayed or "
				  "permanent",
				  i);
		break;
	case BODY(EXTEND):
		check_items(r, q->extend->n_items);
		/* PROTOCOL.md 5.16: 1 ms .. 12 h, at least one item */
		FZ_ASSERT(q->extend->extend_ms >= 1 &&
				  q->extend->extend_ms <= 12u * 3600 * 1000 &&
				  q->extend->n_items >= 1,
			  "extend of %u ms with %zu items OK",
			  q->extend->extend_ms, q->extend->n_items);
		break;
	case BODY(DLQ_LIST): {
		const Handoff__Wire__DlqListReply *l = r->dlq_list;
		uint32_t limit = q->dlq_list->limit ? q->dlq_list->limit : 100;
		FZ_ASSERT(r->body_case == RBODY(DLQ_LIST) && l,
			  "dlq_list OK without its body");
		FZ_ASSERT(l->n_dead_letters <= limit, "dlq_list limit %u: %zu",
			  limit, l->n_dead_letters);
		uint64_t ids[1024];
		FZ_ASSERT(l->n_dead_letters <= 1024, "too many dead letters");
		const Handoff__Wire__DlqFilter *f = q->dlq_list->filter;
		for (size_t i = 0; i < l->n_dead_letters; i++) {
			const Handoff__Wire__DeadLetter *d = l->dead_letters[i];
			ids[i] = d->event_id;
			FZ_ASSERT(d->reason >= 1 && d->reason <= 3,
				  "dead letter with reason %d", d->reason);
			FZ_ASSERT(d->n_history == 0 && d->payload.len == 0 &&
					  d->n_headers == 0,
				  "dlq_list carries history/payload/headers");
			if (f && f->reason)
				FZ_ASSERT(d->reason == f->reason,
					  "filter on "
					  "reason %d matched %d",
					  f->reason, d->reason);
			if (f && f->dead_since_ms)
				FZ_ASSERT(d->dead_ms >= f->dead_since_ms,
					  "filter dead_since not applied");
			if (f && f->dead_until_ms)
				FZ_ASSERT(d->dead_ms <= f->dead_until_ms,
					  "filter dead_until not applied");
			if (f && f->error_contains && *f->error_contains)
				FZ_ASSERT(strstr(d->error, f->error_contains),
					  "filter error_contains not applied");
		}
		check_dlq_filter(f, ids, l->n_dead_letters);
		break;
	}
	case BODY(DLQ_SHOW):
		FZ_ASSERT(r->body_case == RBODY(DLQ_SHOW) && r->dlq_show &&
				  r->dlq_show->dead_letter &&
				  r->dlq_show->dead_letter->event_id ==
					  q->dlq_show->event_id &&
				  r->dlq_show->dead_letter->reason >= 1 &&
				  r->dlq_show->dead_letter->reason <= 3,
			  "dlq_show OK without the dead letter asked for");
		break;
	case BODY(DLQ_REPLAY):
	case BODY(DLQ_PURGE): {
		const Handoff__Wire__DlqActionRequest *a =
			q->body_case == BODY(DLQ_REPLAY) ? q->dlq_replay :
							   q->dlq_purge;
		const Handoff__Wire__DlqActionReply *ar = r->dlq_action;
		FZ_ASSERT(r->body_case == RBODY(DLQ_ACTION) && ar,
			  "dlq action OK without its body");
		/* a command id seen before gets that command's reply again,
		 * whatever this request asks (checked by fuzz_handlers) */
		if (a->command_id && *a->command_id && !a->dry_run)
			break;
		if (a->n_event_ids) {
			FZ_ASSERT(
				ar->n_event_ids + ar->n_missing ==
					a->n_event_ids,
				"dlq action on %zu ids: %zu done + %zu missing",
				a->n_event_ids, ar->n_event_ids, ar->n_missing);
			FZ_ASSERT(!ar->more,
				  "dlq action by ids with more=true");
		} else {
			uint32_t limit = a->limit ? a->limit : 100;
			FZ_ASSERT(ar->n_event_ids <= limit &&
					  ar->n_missing == 0,
				  "dlq action by filter: %zu done (limit %u), "
				  "%zu missing",
				  ar->n_event_ids, limit, ar->n_missing);
			check_dlq_filter(a->filter, ar->event_ids,
					 ar->n_event_ids);
		}
		break;
	}
	case BODY(TRACE):
		FZ_ASSERT(r->body_case == RBODY(TRACE) && r->trace &&
				  r->trace->event_id == q->trace->event_id,
			  "trace OK without the event asked for");
		for (size_t i = 0; i < r->trace->n_subscriptions; i++) {
			int s = r->trace->subscriptions[i]->state;
			FZ_ASSERT(s >= 1 && s <= 7, "trace state %d", s);
		}
		break;
	case BODY(AWAIT): {
		/* no body: held (the turn answers it later) */
		if (r->body_case == RBODY(_NOT_SET))
			break;
		const Handoff__Wire__AwaitReply *a = r->await;
		FZ_ASSERT(r->body_case == RBODY(AWAIT) && a &&
				  a->event_id == q->await->event_id,
			  "await OK without the event asked for");
		FZ_ASSERT(a->result >= 1 && a->result <= 3, "await result %d",
			  a->result);
		FZ_ASSERT(a->n_subscriptions > 0, "await of no subscription");
		FZ_ASSERT(!q->await->n_subscriptions ||
				  a->n_subscriptions <=
					  q->await->n_subscriptions,
			  "await of %zu names: %zu states",
			  q->await->n_subscriptions, a->n_subscriptions);
		size_t acked = 0;
		for (size_t i = 0; i < a->n_subscriptions; i++) {
			int s = a->subscriptions[i]->state;
			FZ_ASSERT(s >= 0 && s <= 7, "await state %d", s);
			acked += s == 4;
		}
		FZ_ASSERT((a->result == 1) == (acked == a->n_subscriptions),
			  "await result %d with %zu of %zu acked", a->result,
			  acked, a->n_subscriptions);
		break;
	}
	case BODY(STATS):
		FZ_ASSERT(r->body_case == RBODY(STATS) && r->stats &&
				  !strcmp(r->stats->version,
					  HANDOFF_BUILD_VERSION),
			  "stats OK without its body");
		break;
	case BODY(HEALTH):
		FZ_ASSERT(r->body_case == RBODY(HEALTH) && r->health &&
				  (!r->health->ready || r->health->live),
			  "health OK without its body, or ready but not live");
		break;
	case BODY(BACKUP):
		FZ_ASSERT(r->body_case == RBODY(BACKUP) && r->backup,
			  "backup OK without its body");
		break;
	default:
		FZ_ASSERT(0, "OK reply to an unknown request type %d",
			  q->body_case);
	}
}

Reply *fz_check_reply(const struct config *cfg, const Request *q,
		      const void *buf, size_t len)
{
	Reply *r = handoff__wire__reply__unpack(NULL, len, buf);
	FZ_ASSERT(r, "the broker's reply (%zu bytes) does not decode", len);
	FZ_ASSERT(r->protocol_version == 1, "reply protocol_version %u",
		  r->protocol_version);
	FZ_ASSERT(fz_status_valid(r->status),
		  "reply status %d outside the "
		  "closed set",
		  r->status);
	FZ_ASSERT(r->status == ST(OK) || (r->message && *r->message),
		  "error reply %d without a message", r->status);
	FZ_ASSERT(r->status != ST(INTERNAL),
		  "INTERNAL reply (a store error "
		  "other than a full store): %s",
		  r->message);
	if (r->status == ST(STORAGE_FULL))
		FZ_ASSERT(r->retry_after_ms == 1000,
			  "STORAGE_FULL with "
			  "retry_after_ms %u",
			  r->retry_after_ms);
	if (!q) {
		FZ_ASSERT(r->status == ST(BAD_REQUEST),
			  "malformed request got "
			  "status %d",
			  r->status);
		return r;
	}
	/* access control comes next (PROTOCOL.md §1); the harness that
	 * signs checks its verdicts */
	if (cfg->n_keys && (r->status == ST(PERMISSION_DENIED) ||
			    r->status == ST(STALE_REQUEST)))
		return r;
	FZ_ASSERT(r->status != ST(PERMISSION_DENIED) &&
			  r->status != ST(STALE_REQUEST),
		  "access control is off, and the reply is %d", r->status);
	if (q->protocol_version != 1) {
		FZ_ASSERT(r->status == ST(UNSUPPORTED_VERSION),
			  "request of version %u got status %d",
			  q->protocol_version, r->status);
		return r;
	}
	FZ_ASSERT(allowed_statuses(cfg, q->body_case) & (1u << r->status),
		  "request type %d got status %d (%s), which PROTOCOL.md does "
		  "not list for it",
		  q->body_case, r->status, r->message);
	if (r->status == ST(OK))
		check_ok_body(cfg, q, r, len);
	return r;
}

/* ---- leases seen ------------------------------------------------------ */

void fz_leases_clear(struct fz_leases *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].sub);
		free(l->v[i].consumer);
	}
	free(l->v);
	memset(l, 0, sizeof *l);
}

struct fz_lease *fz_leases_find(struct fz_leases *l, const char *sub,
				uint64_t event, uint64_t token)
{
	for (size_t i = 0; i < l->n; i++) {
		struct fz_lease *e = &l->v[i];
		if (e->event == event && e->token == token &&
		    !strcmp(e->sub, sub))
			return e;
	}
	return NULL;
}

void fz_leases_add_fetch(struct fz_leases *l, const char *sub,
			 const char *consumer, const Reply *r)
{
	if (r->status != ST(OK) || r->body_case != RBODY(FETCH) || !r->fetch)
		return;
	for (size_t i = 0; i < r->fetch->n_deliveries; i++) {
		const Handoff__Wire__Delivery *d = r->fetch->deliveries[i];
		struct fz_lease *e =
			fz_leases_find(l, sub, d->event_id, d->lease_token);
		if (e)
			continue; /* a resent fetch answered from the cache */
		for (size_t j = 0; j < l->n; j++)
			FZ_ASSERT(l->v[j].token != d->lease_token,
				  "lease token %llu handed out twice",
				  (unsigned long long)d->lease_token);
		if (l->n == l->cap) {
			l->cap = l->cap ? 2 * l->cap : 32;
			l->v = realloc(l->v, l->cap * sizeof *l->v);
			FZ_ASSERT(l->v, "out of memory");
		}
		e = &l->v[l->n++];
		e->sub = strdup(sub);
		e->consumer = strdup(consumer);
		FZ_ASSERT(e->sub && e->consumer, "out of memory");
		e->event = d->event_id;
		e->token = d->lease_token;
		e->state = FZ_OPEN;
	}
}

/* The subscription and items of an ack, nack or extend (else false);
 * item i's event id and token through item_refs. */
static bool lease_items(Request *q, char ***sub, size_t *n)
{
	switch (q->body_case) {
	case BODY(ACK):
		*sub = &q->ack->subscription;
		*n = q->ack->n_items;
		return true;
	case BODY(NACK):
		*sub = &q->nack->subscription;
		*n = q->nack->n_items;
		return true;
	case BODY(EXTEND):
		*sub = &q->extend->subscription;
		*n = q->extend->n_items;
		return true;
	default:
		return false;
	}
}

static void item_refs(Request *q, size_t i, uint64_t **ev, uint64_t **tok)
{
	switch (q->body_case) {
	case BODY(ACK):
		*ev = &q->ack->items[i]->event_id;
		*tok = &q->ack->items[i]->lease_token;
		break;
	case BODY(NACK):
		*ev = &q->nack->items[i]->event_id;
		*tok = &q->nack->items[i]->lease_token;
		break;
	default:
		*ev = &q->extend->items[i]->event_id;
		*tok = &q->extend->items[i]->lease_token;
		break;
	}
}

void fz_leases_check_items(struct fz_leases *l, const Request *q,
			   const Reply *r)
{
	Request *qq = (Request *)q; /* only read here */
	char **subp;
	size_t n;
	if (r->status != ST(OK) || q->protocol_version != 1 ||
	    !lease_items(qq, &subp, &n))
		return;
	const char *what = q->body_case == BODY(ACK)  ? "ack" :
			   q->body_case == BODY(NACK) ? "nack" :
							"extend";
	const char *sub = *subp;
	for (size_t i = 0; i < n; i++) {
		uint64_t *evp, *tokp;
		item_refs(qq, i, &evp, &tokp);
		uint64_t ev = *evp, tok = *tokp;
		if (r->items->statuses[i] != ST(OK))
			continue;
		struct fz_lease *e = fz_leases_find(l, sub, ev, tok);
		FZ_ASSERT(e,
			  "%s of %s/%llu token %llu succeeded, but no fetch "
			  "handed out that lease",
			  what, sub, (unsigned long long)ev,
			  (unsigned long long)tok);
		if (q->body_case == BODY(ACK)) {
			FZ_ASSERT(e->state != FZ_ENDED,
				  "ack of %s/%llu token %llu "
				  "succeeded after its lease had ended",
				  sub, (unsigned long long)ev,
				  (unsigned long long)tok);
			e->state = FZ_ACKED;
		} else {
			/* nack ends the lease; extend keeps it open */
			FZ_ASSERT(e->state == FZ_OPEN,
				  "%s of %s/%llu token %llu "
				  "succeeded after its lease had %s",
				  what, sub, (unsigned long long)ev,
				  (unsigned long long)tok,
				  e->state == FZ_ACKED ? "been acked" :
							 "ended");
			if (q->body_case == BODY(NACK))
				e->state = FZ_ENDED;
		}
	}
}

void fz_leases_observe(struct fz_leases *l, struct txn *t)
{
	for (size_t i = 0; i < l->n; i++) {
		struct fz_lease *e = &l->v[i];
		if (e->state != FZ_OPEN)
			continue;
		SubRecord *sub;
		DeliveryRecord *d;
		int rc = store_sub_by_name(t, e->sub, &sub);
		if (rc == 0)
			rc = store_delivery_get(t, e->event, sub->id, &d);
		FZ_ASSERT(rc == 0 || rc == MDB_NOTFOUND,
			  "observing a lease: %s", mdb_strerror(rc));
		if (rc || d->state != DS(LEASED) || d->lease_token != e->token)
			e->state = FZ_ENDED;
	}
}

void fz_leases_fixup(struct fz_leases *l, Request *q)
{
	char **sub;
	size_t n;
	if (!l->n || !lease_items(q, &sub, &n))
		return;
	for (size_t i = 0; i < n; i++) {
		uint64_t *ev, *tok;
		item_refs(q, i, &ev, &tok);
		if (*tok == 0 || *tok > 63)
			continue;
		const struct fz_lease *e = &l->v[(*tok - 1) % l->n];
		*tok = e->token;
		if (*ev == 0)
			*ev = e->event;
		if (!*sub || !**sub)
			*sub = e->sub;
	}
}
