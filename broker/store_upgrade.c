/*
 * store_upgrade.c — a format-1 store becomes a format-2 one, crash-safely
 * (store.h: store_upgrade). Part of the store: the only other file that
 * talks to LMDB.
 *
 * Format 2 adds the topic log (store.h). A format-1 store has a record and
 * a ready entry for every delivery, so nothing of it needs the log: every
 * record and entry is copied as it is, and only these change:
 *   - topics get an id (meta "next_topic");
 *   - subscriptions get their topic's id and a log cursor at the old
 *     store's next event id (owed, from the log, only what is published
 *     from now on); one being deleted is owed nothing more from it;
 *   - dedup records (and their expiry entries) are keyed by topic id
 *     instead of topic name; they keep their expiry entries, and the
 *     sweep of events that removes format 2's starts after the old events
 *     (meta "idem_swept");
 *   - an event's metadata (events) and payload (payloads) become one
 *     value in events (store.c, "events"), with the payload's checksum as
 *     it was; meta "payloads" counts them;
 *   - meta "schema" becomes 2, written in the last transaction.
 * The copy is made in dir/upgrade.mdb (its own environment, no lock file:
 * the folder lock is ours), synced, the old data file is hard-linked as
 * dir/format-1/data.mdb, and one rename puts the new file in place. So at
 * any moment dir/data.mdb is either the old store, untouched, or the new
 * one complete; a start that finds the old one upgrades again from
 * scratch. The old file is opened read-only and never written.
 *
 * Test hooks, for the crash tests (tests/upgrade):
 * HANDOFF_TEST_UPGRADE_KILL=copying|built|kept|renamed makes the process
 * kill itself (SIGKILL) at that step; HANDOFF_TEST_UPGRADE_NOSYNC=1 leaves
 * the new file unsynced before the rename (the negative control: a power
 * cut then leaves an incomplete store in place).
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "store_internal.h"

/* puts per transaction of the copy: bounded dirty pages */
#define COMMIT_EVERY 20000

static void test_kill_at(const char *step)
{
	const char *at = getenv("HANDOFF_TEST_UPGRADE_KILL");
	if (at && strcmp(at, step) == 0)
		raise(SIGKILL);
}

static bool test_skip_sync(void)
{
	const char *v = getenv("HANDOFF_TEST_UPGRADE_NOSYNC");
	return v && strcmp(v, "1") == 0;
}

/* The topics of the old store and their new ids, sorted by name. */
struct topic_map {
	char **names;
	uint32_t *ids;
	size_t n, cap;
};

static void topic_map_free(struct topic_map *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->names[i]);
	free(m->names);
	free(m->ids);
}

/* Names come in LMDB's key order, which for names without NUL is
 * strcmp's: appending keeps the map sorted. */
static int topic_map_add(struct topic_map *m, const void *name, size_t len,
			 uint32_t id)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		char **names = realloc(m->names, cap * sizeof *names);
		if (!names)
			return ENOMEM;
		m->names = names;
		uint32_t *ids = realloc(m->ids, cap * sizeof *ids);
		if (!ids)
			return ENOMEM;
		m->ids = ids;
		m->cap = cap;
	}
	char *s = malloc(len + 1);
	if (!s)
		return ENOMEM;
	memcpy(s, name, len);
	s[len] = '\0';
	m->names[m->n] = s;
	m->ids[m->n] = id;
	m->n++;
	return 0;
}

static uint32_t topic_map_find(const struct topic_map *m, const char *name)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m->names[mid], name);
		if (c == 0)
			return m->ids[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* The copy: an old read transaction for the whole of it, new write
 * transactions committed every COMMIT_EVERY puts. */
struct copy {
	MDB_env *to_env;
	MDB_txn *from, *to;
	MDB_dbi from_dbi[DB_COUNT], to_dbi[DB_COUNT];
	bool from_has[DB_COUNT];
	uint64_t puts, records, payloads;
	uint64_t next_event;
	uint32_t next_topic;
	struct topic_map topics;
};

static int put(struct copy *c, int db, MDB_val *k, MDB_val *d, unsigned flags)
{
	int rc = mdb_put(c->to, c->to_dbi[db], k, d, flags);
	if (rc == MDB_KEYEXIST && (flags & MDB_APPEND)) /* out of order */
		rc = mdb_put(c->to, c->to_dbi[db], k, d, flags & ~MDB_APPEND);
	if (rc)
		return rc;
	c->records++;
	if (++c->puts % COMMIT_EVERY)
		return 0;
	rc = mdb_txn_commit(c->to);
	c->to = NULL;
	if (!rc)
		rc = mdb_txn_begin(c->to_env, NULL, 0, &c->to);
	return rc;
}

static int put_packed(struct copy *c, int db, MDB_val *k,
		      const ProtobufCMessage *msg, unsigned flags)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(n ? n : 1);
	if (!buf)
		return ENOMEM;
	protobuf_c_message_pack(msg, buf);
	MDB_val d = { n, buf };
	int rc = put(c, db, k, &d, flags);
	free(buf);
	return rc;
}

static int add_topic(struct copy *c, const char *name, uint32_t *id);

/* A format-1 dedup key, topic '\0' key, as format 2's: topic id (4) + key,
 * into out (IDEM_KEY_MAX). 0 (*len 0: not one, left as it is) or an error. */
static int idem_key_v2(struct copy *c, const void *v1, size_t n, uint8_t *out,
		       size_t *len)
{
	char topic[IDEM_KEY_MAX + 1];
	const char *p = v1, *nul = memchr(p, '\0', n);
	uint32_t id;
	*len = 0;
	if (!nul || nul == p)
		return 0;
	size_t tl = (size_t)(nul - p), kl = n - tl - 1;
	memcpy(topic, p, tl);
	topic[tl] = '\0';
	id = topic_map_find(&c->topics, topic);
	int rc = id ? 0 : add_topic(c, topic, &id);
	if (rc)
		return rc;
	if (4 + kl > IDEM_KEY_MAX)
		return 0;
	be32_put(out, id);
	memcpy(out + 4, nul + 1, kl);
	*len = 4 + kl;
	return 0;
}

/* Dedup records and their expiry entries: keyed by topic id now. */
static int convert_key(struct copy *c, int db, MDB_val *k, uint8_t *buf)
{
	size_t len;
	int rc = 0;
	if (db == DB_IDEM) {
		rc = idem_key_v2(c, k->mv_data, k->mv_size, buf, &len);
	} else if (db == DB_EXPIRY && k->mv_size > 9 &&
		   ((uint8_t *)k->mv_data)[8] == EXPIRY_IDEM) {
		memcpy(buf, k->mv_data, 9);
		rc = idem_key_v2(c, (uint8_t *)k->mv_data + 9, k->mv_size - 9,
				 buf + 9, &len);
		if (len)
			len += 9;
	} else {
		return 0;
	}
	if (!rc && len) {
		k->mv_data = buf;
		k->mv_size = len;
	}
	return rc;
}

/* Every entry of db as it is (keys come sorted: appended). */
static int copy_raw(struct copy *c, int db)
{
	MDB_cursor *cur;
	MDB_val k, d;
	if (!c->from_has[db])
		return 0;
	int rc = mdb_cursor_open(c->from, c->from_dbi[db], &cur);
	if (rc)
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); !rc;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
		uint8_t buf[IDEM_KEY_MAX + 9];
		if (db == DB_META && k.mv_size == 6 &&
		    memcmp(k.mv_data, "schema", 6) == 0)
			continue; /* written last */
		rc = convert_key(c, db, &k, buf);
		if (!rc)
			rc = put(c, db, &k, &d, MDB_APPEND);
		if (rc)
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Topics get ids in name order. */
static int copy_topics(struct copy *c)
{
	MDB_cursor *cur;
	MDB_val k, d;
	if (!c->from_has[DB_TOPICS])
		return 0;
	int rc = mdb_cursor_open(c->from, c->from_dbi[DB_TOPICS], &cur);
	if (rc)
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); !rc;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
		TopicRecord *r = handoff__store__topic_record__unpack(
			NULL, d.mv_size, d.mv_data);
		TopicRecord blank = HANDOFF__STORE__TOPIC_RECORD__INIT;
		/* a damaged counter starts again from zero, as a publish
		 * would have it */
		TopicRecord *use = r ? r : &blank;
		use->id = c->next_topic++;
		rc = topic_map_add(&c->topics, k.mv_data, k.mv_size, use->id);
		if (!rc)
			rc = put_packed(c, DB_TOPICS, &k, &use->base,
					MDB_APPEND);
		if (r)
			handoff__store__topic_record__free_unpacked(r, NULL);
		if (rc)
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* A topic a subscription names but the topics database lacks. */
static int add_topic(struct copy *c, const char *name, uint32_t *id)
{
	TopicRecord r = HANDOFF__STORE__TOPIC_RECORD__INIT;
	r.id = c->next_topic++;
	MDB_val k = { strlen(name), (void *)name };
	int rc = put_packed(c, DB_TOPICS, &k, &r.base, 0);
	if (rc)
		return rc;
	/* keep the map sorted: rare, so a plain insertion */
	rc = topic_map_add(&c->topics, name, strlen(name), r.id);
	if (rc)
		return rc;
	for (size_t i = c->topics.n - 1;
	     i > 0 && strcmp(c->topics.names[i - 1], c->topics.names[i]) > 0;
	     i--) {
		char *n = c->topics.names[i];
		uint32_t v = c->topics.ids[i];
		c->topics.names[i] = c->topics.names[i - 1];
		c->topics.ids[i] = c->topics.ids[i - 1];
		c->topics.names[i - 1] = n;
		c->topics.ids[i - 1] = v;
	}
	*id = r.id;
	return 0;
}

static int copy_subs(struct copy *c)
{
	MDB_cursor *cur;
	MDB_val k, d;
	if (!c->from_has[DB_SUBS])
		return 0;
	int rc = mdb_cursor_open(c->from, c->from_dbi[DB_SUBS], &cur);
	if (rc)
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); !rc;
	     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
		SubRecord *r = handoff__store__subscription_record__unpack(
			NULL, d.mv_size, d.mv_data);
		if (!r || !r->topic) {
			/* damaged: kept as it is, as format 1 had it */
			if (r)
				handoff__store__subscription_record__free_unpacked(
					r, NULL);
			rc = put(c, DB_SUBS, &k, &d, MDB_APPEND);
			if (rc)
				break;
			continue;
		}
		uint32_t tid = topic_map_find(&c->topics, r->topic);
		rc = tid ? 0 : add_topic(c, r->topic, &tid);
		if (!rc) {
			r->topic_id = tid;
			r->log_cursor = c->next_event;
			r->log_end = r->deleting ? c->next_event : 0;
			rc = put_packed(c, DB_SUBS, &k, &r->base, MDB_APPEND);
		}
		handoff__store__subscription_record__free_unpacked(r, NULL);
		if (rc)
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* One format-2 event value: body crc, meta length, meta, body. */
static int put_event(struct copy *c, MDB_val *k, const MDB_val *meta,
		     const MDB_val *payload)
{
	/* format 1's payload value is crc32 (4) + EventBody: the crc is
	 * the same one, over the same bytes */
	size_t ml = meta ? meta->mv_size : 0;
	size_t bl = payload && payload->mv_size >= 4 ? payload->mv_size - 4 : 0;
	if (payload && payload->mv_size < 4) /* damaged as it was: no crc */
		bl = 0;
	uint8_t *buf = malloc(8 + ml + bl);
	if (!buf)
		return ENOMEM;
	memset(buf, 0, 4);
	if (payload && payload->mv_size >= 4)
		memcpy(buf, payload->mv_data, 4);
	else if (payload) /* no crc to check against: stays damaged */
		memset(buf, 0xff, 4);
	/* store.c's EVENT_NO_BODY: the payload was removed */
	be32_put(buf + 4, (uint32_t)ml | (payload ? 0 : 0x80000000u));
	if (ml)
		memcpy(buf + 8, meta->mv_data, ml);
	if (bl)
		memcpy(buf + 8 + ml, (uint8_t *)payload->mv_data + 4, bl);
	MDB_val d = { 8 + ml + bl, buf };
	int rc = put(c, DB_EVENTS, k, &d, MDB_APPEND);
	free(buf);
	if (!rc && payload)
		c->payloads++;
	return rc;
}

/* Format 1 kept an event's metadata and payload in two databases; format 2
 * keeps them in one value. Both are in event id order: merged. */
static int merge_events(struct copy *c)
{
	MDB_cursor *ec = NULL, *pc = NULL;
	MDB_val ek, ed, pk, pd;
	int erc = MDB_NOTFOUND, prc = MDB_NOTFOUND, rc = 0;
	if (c->from_has[DB_EVENTS]) {
		rc = mdb_cursor_open(c->from, c->from_dbi[DB_EVENTS], &ec);
		if (!rc)
			erc = mdb_cursor_get(ec, &ek, &ed, MDB_FIRST);
	}
	if (!rc && c->from_has[DB_PAYLOADS]) {
		rc = mdb_cursor_open(c->from, c->from_dbi[DB_PAYLOADS], &pc);
		if (!rc)
			prc = mdb_cursor_get(pc, &pk, &pd, MDB_FIRST);
	}
	while (!rc && (erc == 0 || prc == 0)) {
		int order = erc ? 1 :
			    prc ? -1 :
				  memcmp(ek.mv_data, pk.mv_data,
					 ek.mv_size < pk.mv_size ? ek.mv_size :
								   pk.mv_size);
		if (order == 0 && ek.mv_size != pk.mv_size)
			order = ek.mv_size < pk.mv_size ? -1 : 1;
		if (order == 0) {
			rc = put_event(c, &ek, &ed, &pd);
			erc = mdb_cursor_get(ec, &ek, &ed, MDB_NEXT);
			prc = mdb_cursor_get(pc, &pk, &pd, MDB_NEXT);
		} else if (order < 0) { /* payload removed */
			rc = put_event(c, &ek, &ed, NULL);
			erc = mdb_cursor_get(ec, &ek, &ed, MDB_NEXT);
		} else { /* a payload without its event: kept, as it was */
			rc = put_event(c, &pk, NULL, &pd);
			prc = mdb_cursor_get(pc, &pk, &pd, MDB_NEXT);
		}
		if (!rc && erc && erc != MDB_NOTFOUND)
			rc = erc;
		if (!rc && prc && prc != MDB_NOTFOUND)
			rc = prc;
	}
	if (ec)
		mdb_cursor_close(ec);
	if (pc)
		mdb_cursor_close(pc);
	return rc;
}

static int copy_all(MDB_env *from_env, MDB_env *to_env, uint64_t *records)
{
	struct copy c = { .to_env = to_env, .next_event = 1, .next_topic = 1 };
	int rc = mdb_txn_begin(from_env, NULL, MDB_RDONLY, &c.from);
	if (rc)
		return rc;
	rc = mdb_txn_begin(to_env, NULL, 0, &c.to);
	if (rc)
		goto out;
	/* format 1's databases are format 2's but the topic log */
	for (int db = 0; db < DB_COUNT && !rc; db++) {
		if (db != DB_TOPIC_LOG) {
			rc = mdb_dbi_open(c.from, store_db_name(db), 0,
					  &c.from_dbi[db]);
			c.from_has[db] = rc == 0;
			if (rc == MDB_NOTFOUND)
				rc = 0;
		}
		if (!rc)
			rc = mdb_dbi_open(c.to, store_db_name(db), MDB_CREATE,
					  &c.to_dbi[db]);
	}
	if (rc)
		goto out;
	MDB_val k = { 10, "next_event" }, d;
	if (c.from_has[DB_META] &&
	    !mdb_get(c.from, c.from_dbi[DB_META], &k, &d) && d.mv_size == 8)
		c.next_event = be64_get(d.mv_data);
	rc = copy_topics(&c);
	if (!rc)
		rc = copy_subs(&c);
	if (!rc) {
		/* one commit here at least, for the crash tests' "copying" */
		rc = mdb_txn_commit(c.to);
		c.to = NULL;
		if (!rc)
			rc = mdb_txn_begin(to_env, NULL, 0, &c.to);
	}
	if (!rc)
		test_kill_at("copying");
	if (!rc)
		rc = merge_events(&c);
	for (int db = 0; db < DB_COUNT && !rc; db++)
		if (db != DB_TOPICS && db != DB_SUBS && db != DB_TOPIC_LOG &&
		    db != DB_EVENTS && db != DB_PAYLOADS)
			rc = copy_raw(&c, db);
	if (!rc) {
		uint8_t v[4];
		be32_put(v, c.next_topic);
		MDB_val nk = { 10, "next_topic" }, nd = { 4, v };
		rc = mdb_put(c.to, c.to_dbi[DB_META], &nk, &nd, 0);
	}
	if (!rc) {
		/* format 1's dedup records keep their expiry entries: the
		 * sweep of the events starts after them */
		uint8_t v[8];
		be64_put(v, c.next_event - 1);
		MDB_val nk = { 10, "idem_swept" }, nd = { 8, v };
		rc = mdb_put(c.to, c.to_dbi[DB_META], &nk, &nd, 0);
	}
	if (!rc) {
		uint8_t v[8];
		be64_put(v, c.payloads);
		MDB_val nk = { 8, "payloads" }, nd = { 8, v };
		rc = mdb_put(c.to, c.to_dbi[DB_META], &nk, &nd, 0);
	}
	if (!rc) {
		uint8_t v[4];
		be32_put(v, STORE_FORMAT_VERSION);
		MDB_val sk = { 6, "schema" }, sd = { 4, v };
		rc = mdb_put(c.to, c.to_dbi[DB_META], &sk, &sd, 0);
	}
	if (!rc) {
		rc = mdb_txn_commit(c.to);
		c.to = NULL;
	}
	if (!rc && !test_skip_sync())
		rc = mdb_env_sync(to_env, 1);
out:
	if (c.to)
		mdb_txn_abort(c.to);
	mdb_txn_abort(c.from);
	topic_map_free(&c.topics);
	*records = c.records;
	return rc;
}

static int open_env(MDB_env **env, const char *path, unsigned flags,
		    uint64_t map_size)
{
	int rc = store_env_new(env, map_size);
	if (!rc)
		rc = mdb_env_open(*env, path, flags, 0600);
	if (rc && *env) {
		mdb_env_close(*env);
		*env = NULL;
	}
	return rc;
}

int store_upgrade(const char *dir, uint64_t map_size,
		  struct store_upgrade_info *info, char *err, size_t errlen)
{
	char data[PATH_MAX], tmp[PATH_MAX], keep_dir[PATH_MAX],
		keep[PATH_MAX + 16];
	MDB_env *from = NULL, *to = NULL;
	struct stat dsb, ksb;
	uint64_t started = clock_mono_ms();
	const char *step = "copying the store";
	int rc;

	memset(info, 0, sizeof *info);
	if (snprintf(data, sizeof data, "%s/data.mdb", dir) >=
		    (int)sizeof data ||
	    snprintf(tmp, sizeof tmp, "%s/upgrade.mdb", dir) >=
		    (int)sizeof tmp ||
	    snprintf(keep_dir, sizeof keep_dir, "%s/format-%d", dir,
		     STORE_UPGRADES_FROM) >= (int)sizeof keep_dir) {
		snprintf(err, errlen, "data dir path too long");
		return ENAMETOOLONG;
	}
	snprintf(keep, sizeof keep, "%s/data.mdb", keep_dir);
	/* what an upgrade cut off earlier left: made again from scratch */
	if (unlink(tmp) && errno != ENOENT) {
		rc = errno;
		step = "removing an unfinished upgrade.mdb";
		goto fail;
	}
	rc = open_env(&from, dir, MDB_RDONLY | MDB_NOLOCK, map_size);
	if (!rc)
		rc = open_env(&to, tmp, MDB_NOSUBDIR | MDB_NOLOCK | MDB_NOSYNC,
			      map_size);
	if (!rc)
		rc = copy_all(from, to, &info->records);
	if (from)
		mdb_env_close(from);
	if (to)
		mdb_env_close(to);
	from = to = NULL;
	if (rc)
		goto fail;
	step = "syncing upgrade.mdb";
	rc = test_skip_sync() ? 0 : store_fsync_path(tmp, O_RDONLY);
	if (rc)
		goto fail;
	test_kill_at("built");

	/* keep the old file under a name of its own */
	step = "keeping the old data file";
	if (mkdir(keep_dir, 0700) && errno != EEXIST) {
		rc = errno;
		goto fail;
	}
	if (stat(data, &dsb)) {
		rc = errno;
		goto fail;
	}
	if (stat(keep, &ksb) == 0) {
		if (ksb.st_dev != dsb.st_dev || ksb.st_ino != dsb.st_ino) {
			(void)unlink(tmp);
			snprintf(err, errlen,
				 "upgrading the store in %s: %s exists and is "
				 "not this store's data file (an older kept "
				 "store?): move it elsewhere, then start again",
				 dir, keep);
			return EEXIST;
		}
	} else if (errno != ENOENT) {
		rc = errno;
		goto fail;
	} else if (link(data, keep)) {
		rc = errno;
		goto fail;
	}
	rc = store_fsync_path(keep_dir, O_RDONLY | O_DIRECTORY);
	if (!rc)
		rc = store_fsync_path(dir, O_RDONLY | O_DIRECTORY);
	if (rc)
		goto fail;
	test_kill_at("kept");

	step = "putting upgrade.mdb in place of data.mdb";
	if (rename(tmp, data)) {
		rc = errno;
		goto fail;
	}
	rc = store_fsync_path(dir, O_RDONLY | O_DIRECTORY);
	if (rc) {
		/* in place, maybe not durably: the next start sees either */
		snprintf(err, errlen, "upgrading the store in %s: fsync: %s",
			 dir, strerror(rc));
		return rc;
	}
	test_kill_at("renamed");
	info->from = STORE_UPGRADES_FROM;
	info->to = STORE_FORMAT_VERSION;
	info->elapsed_ms = clock_mono_ms() - started;
	size_t kl = strlen(keep);
	if (kl >= sizeof info->kept)
		kl = sizeof info->kept - 1;
	memcpy(info->kept, keep, kl);
	info->kept[kl] = '\0';
	return 0;
fail:
	(void)unlink(tmp);
	snprintf(err, errlen,
		 "upgrading the store in %s from format %d to %d failed while "
		 "%s: %s (the old store is unchanged; the upgrade needs about "
		 "as much free space as data.mdb takes)",
		 dir, STORE_UPGRADES_FROM, STORE_FORMAT_VERSION, step,
		 rc > 0 ? strerror(rc) : mdb_strerror(rc));
	return rc;
}
