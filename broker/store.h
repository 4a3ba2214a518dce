/*
 * store.h — handoff's state in one LMDB environment. The only module that
 * talks to LMDB and knows the databases, key layouts and record encodings.
 *
 * Databases (keys big-endian so LMDB's byte order is numeric order; the
 * records are the messages of proto/store.proto, format version 2):
 *   meta        "schema"                                  -> format version (4)
 *               "next_event"                              -> next event id (8)
 *               "next_sub"                                -> next sub id (4)
 *               "next_topic"                              -> next topic id (4)
 *               "idem_swept"                              -> event id (8)
 *               "payloads"                                -> events with a payload (8)
 *               "clock_mark"                              -> broker time (8)
 *   events      event id (8)                              -> crc32 of the body (4)
 *                                                            + meta length (4)
 *                                                            + EventMeta + EventBody
 *   payloads    (format 1 only: its payloads; empty in format 2)
 *   subs        subscription id (4)                       -> SubscriptionRecord
 *   sub_names   name                                      -> subscription id (4)
 *   topic_subs  topic '\0' name                           -> subscription id (4)
 *   topics      topic                                     -> TopicRecord
 *   deliveries  event id (8) + subscription id (4)        -> DeliveryRecord
 *   ready       sub id (4) + due ms (8) + event id (8)    -> (empty)
 *   leases      deadline ms (8) + sub id (4) + event (8)  -> (empty)
 *   dlq         sub id (4) + event id (8)                 -> (empty)
 *   idem        topic id (4) + idempotency key            -> IdempotencyRecord
 *   expiry      at ms (8) + kind (1) + id                 -> (empty)
 *               id: event id (8) for EXPIRY_HISTORY, an idem key for
 *               EXPIRY_IDEM, a command id for EXPIRY_COMMAND
 *   audit       sequence number (8), from 1               -> AuditRecord
 *   commands    operator command id (1..256 bytes)        -> CommandRecord
 *   topic_log   topic id (4) + event id (8)               -> published ms (8)
 *
 * A subscription is a cursor over its topic's log (format 2): an event of
 * the log at or after its log_cursor (and before its log_end, once it is
 * unsubscribed) is a READY delivery of it due at its publish time, with no
 * record and no ready entry of its own (a "log delivery"). Taking one
 * (store_ready_del: a lease, an unsubscribe) moves the cursor past it; from
 * then on the delivery has a record in deliveries like any other. So
 * publishing costs one topic_log entry per event, whatever the number of
 * subscriptions. store_ready_first, store_ready_del, store_delivery_get
 * and store_delivery_next_sub see log deliveries as if they were stored;
 * the other functions see only the stored ones. A topic_log entry goes with
 * its event's history (forget).
 * Idempotency records are keyed by the key itself, not a hash of it: keys
 * the client library makes are time-ordered, so their inserts land at the
 * end of the tree (one page per commit) instead of one random page each.
 * They have no expiry entry of their own (format 2): the events tree is in
 * publish order, so retention walks it from meta "idem_swept" and removes
 * each event's record once its window is over (background.c); only an
 * event forgotten before that gets an EXPIRY_IDEM entry.
 * Every stored READY delivery has one ready entry, every LEASED one lease entry,
 * every DEAD one dlq entry, in the same transaction as its record.
 * sub_names and topic_subs hold live subscriptions only (an unsubscribed
 * one keeps its record, marked deleting, until its deliveries are gone).
 *
 * Errors: functions return 0; MDB_NOTFOUND where documented (no such
 * record or entry); STORE_EDECODE for a stored record or entry that is
 * damaged (a value that fails its checksum, is too short or does not
 * decode; a key or a stored id whose size is checked and wrong): it is
 * there, but unreadable; ENOMEM when the arena is exhausted; or an LMDB
 * (or errno) code. After STORE_EDECODE the transaction can go on (LMDB
 * itself found nothing wrong); after any other code but MDB_NOTFOUND it
 * must be aborted. store_strerror() names every one. Records read are
 * allocated from the transaction's arena and live until the arena is
 * reset.
 *
 * Threads: nothing here locks; one thread at a time uses a store (but
 * store_copy, which LMDB lets run beside the writer). In
 * handoffd, loop_run() opens it before the store thread (loop.c,
 * store_main) starts and closes it after that thread ends; in between the
 * store thread is its only user: every transaction, space check and
 * reader check.
 */
#ifndef HANDOFF_BROKER_STORE_H
#define HANDOFF_BROKER_STORE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"

/* The on-disk format version (meta "schema"), and the one older version
 * store_open upgrades from (see store_upgrade). */
#define STORE_FORMAT_VERSION 2
#define STORE_UPGRADES_FROM  1
#include "store.pb-c.h"

typedef Handoff__Store__EventMeta EventMeta;
typedef Handoff__Store__EventBody EventBody;
typedef Handoff__Store__SubscriptionRecord SubRecord;
typedef Handoff__Store__TopicRecord TopicRecord;
typedef Handoff__Store__DeliveryRecord DeliveryRecord;
typedef Handoff__Store__IdempotencyRecord IdemRecord;
typedef Handoff__Store__CommandRecord CommandRecord;
typedef Handoff__Store__AuditRecord AuditRecord;

/* A stored record or entry is damaged (see Errors above). Negative like
 * LMDB's codes (MDB_KEYEXIST -30799 .. MDB_LAST_ERRCODE) but outside them;
 * errno values are positive. */
#define STORE_EDECODE (-30500)

enum store_db {
	DB_META,
	DB_EVENTS,
	DB_PAYLOADS,
	DB_SUBS,
	DB_SUB_NAMES,
	DB_TOPIC_SUBS,
	DB_TOPICS,
	DB_DELIVERIES,
	DB_READY,
	DB_LEASES,
	DB_DLQ,
	DB_IDEM,
	DB_EXPIRY,
	DB_AUDIT,
	DB_COMMANDS,
	DB_TOPIC_LOG,
	DB_COUNT
};

enum expiry_kind { EXPIRY_IDEM = 1, EXPIRY_HISTORY = 2, EXPIRY_COMMAND = 3 };

/* topic id (4) + key (<= 256) fits one LMDB key with the expiry prefix
 * (9 + 500 < 511) */
#define IDEM_KEY_MAX 500

/* What store_upgrade did, for the start-up log (from == 0: nothing). */
struct store_upgrade_info {
	uint32_t from, to;
	uint64_t records;    /* records and entries copied */
	uint64_t elapsed_ms; /* wall time of the upgrade */
	char kept[400];	     /* where the old data file is kept */
};

struct store {
	MDB_env *env;
	MDB_dbi dbi[DB_COUNT];
	uint64_t next_event_id; /* as of the last commit */
	uint32_t next_sub_id;
	int lock_fd;
	int lmdb_lock_fd;	   /* lock.mdb, open until LMDB's env closes */
	int nosync;		   /* test-only: MDB_NOSYNC (not durable) */
	int stale_readers_at_open; /* reader slots of dead processes cleared */
	/* what store_open did about the filesystem, for the start-up log:
	 * bytes of a copy-on-write data.mdb copied into a NOCOW one (btrfs),
	 * and a risk it could not remove ("" when none) */
	uint64_t nocow_converted_bytes;
	char fs_warning[400];
	struct store_upgrade_info upgrade;
	/* meta "clock_mark" as of the last commit: every commit that wrote
	 * anything writes its now_ms there too (clock.h), so no time stored
	 * is past it */
	uint64_t clock_mark_ms;
	/* delayed-entry counts kept for store_ready_delayed, sorted by sub */
	struct delayed_count *delayed;
	size_t n_delayed, cap_delayed;
};

/* How many ready entries of sub are due after horizon (broker time). */
struct delayed_count {
	uint32_t sub;
	uint64_t horizon;
	uint64_t count;
};

struct sched;

struct txn {
	struct store *st;
	MDB_txn *txn;
	struct arena *arena;
	uint64_t now_ms;
	bool wrote; /* something was put or deleted (for the clock mark) */
	int64_t payloads_delta; /* payloads stored minus removed (meta) */
	uint64_t next_event_id;
	uint32_t next_sub_id;
	/* the scheduler's context (scheduler.h): set by the opener of a
	 * write transaction that changes deliveries; NULL otherwise */
	const struct sched *sched;
	/* subscription records read in this txn, written back at commit;
	 * one copy per subscription, so changes to it can never be lost */
	SubRecord **subs;
	bool *sub_dirty;
	size_t n_subs, cap_subs;
};

/*
 * Open (creating it crash-safely if needed) the environment in dir and take
 * the folder's lock so no second broker uses it. Fills err on failure; a
 * damaged store (truncated file, bad meta pages) gives a message starting
 * "store damaged:" and an error for which store_error_is_damage() is true.
 */
int store_open(struct store *st, const char *dir, uint64_t map_size, char *err,
	       size_t errlen);
void store_close(struct store *st);
/*
 * Upgrade the format-STORE_UPGRADES_FROM store in dir to this format
 * (store_upgrade.c), called by store_open with the folder lock held and no
 * environment of dir open. Crash-safe: the new store is built and synced
 * in dir/upgrade.mdb, the old data file is kept (hard-linked) as
 * dir/format-N/data.mdb, and only then does one rename put the new file in
 * place of dir/data.mdb; an upgrade cut off before that rename leaves the
 * old store as it was (the next start upgrades again), after it the new
 * one complete. The old file is never written. Fills *info and err.
 */
int store_upgrade(const char *dir, uint64_t map_size,
		  struct store_upgrade_info *info, char *err, size_t errlen);
/* The name of database db (enum store_db) in this format. */
const char *store_db_name(int db);
/* Whether an LMDB error says the file is damaged (not an I/O error). */
bool store_error_is_damage(int rc);
/* Text for any code a store function returns: STORE_EDECODE, LMDB's codes
 * and errno values (static storage; never NULL). */
const char *store_strerror(int rc);
/* Whether the store is unusable for good: a read transaction cannot even
 * begin, failing with MDB_PANIC or EIO (asked after a failed commit, to
 * tell a broken environment from a full map or disk). Opens and aborts a
 * read transaction: call it with no transaction of this thread open. */
bool store_is_broken(struct store *st);
/* Clear reader slots left by dead processes (a tool killed inside a read
 * transaction pins old pages, so the file would grow); how many. */
int store_reader_check(struct store *st);
/* Pages up to the last one in use (free ones included), the map's size in
 * pages, and the page size. */
void store_pages(struct store *st, uint64_t *used, uint64_t *map,
		 uint32_t *page_size);
/* Pages on LMDB's free list (reusable). Opens a read transaction: call it
 * with no transaction of this thread open. */
int store_free_pages(struct store *st, uint64_t *pages);
/* Make sure the data file has its first `bytes` allocated on disk
 * (posix_fallocate), so page writes below them cannot hit a full disk.
 * Asks only for what lies past the end of a file without holes. Returns 0
 * or an errno (ENOSPC, EFBIG, EDQUOT...). */
int store_reserve(struct store *st, uint64_t bytes);
/* Size of the data file in bytes (0 if it cannot be read). */
uint64_t store_file_bytes(struct store *st);
/* Bytes in use by the data file's pages, and the map size. */
void store_usage(struct store *st, uint64_t *used, uint64_t *map);

/* Write a consistent, compacted copy of the whole environment (a data.mdb
 * as LMDB makes it: free pages left out) to fd, as of the last commit
 * before the call: LMDB's mdb_env_copyfd2 with MDB_CP_COMPACT, inside a
 * read transaction of its own that does not block the writer (but pins
 * the pages it sees, so the file may grow while a long copy runs). The
 * one call here that another thread may make while the store thread works:
 * it touches no field of st but the environment, which must stay open
 * until it returns. 0 or an LMDB or errno code (a pipe closed by the
 * reader: EPIPE). */
int store_copy(struct store *st, int fd);

/* Read meta "clock_mark" into st->clock_mark_ms (0 when there is none):
 * 0 or an LMDB error. */
int store_read_clock_mark(struct store *st);

int store_txn_begin(struct store *st, struct arena *a, bool write,
		    uint64_t now_ms, struct txn *t);
/* Writes back dirty subscription records, counters and the clock mark
 * (when due), then commits
 * durably (two syncs). On failure the txn is gone (aborted). */
int store_txn_commit(struct txn *t);
void store_txn_abort(struct txn *t);

/* events and payloads: one record per event (store.c), the payload's
 * part removable on its own */
/* A new event with its payload, in one put. */
int store_event_create(struct txn *t, uint64_t id, const EventMeta *m,
		       const EventBody *b);
int store_event_get(struct txn *t, uint64_t id, EventMeta **out);
int store_event_put(struct txn *t, uint64_t id, const EventMeta *m);
/* Rewrite the event's metadata and remove its payload, in one put. */
int store_event_put_removed(struct txn *t, uint64_t id, const EventMeta *m);
int store_event_del(struct txn *t, uint64_t id);
/* The first event id > after that has a record; MDB_NOTFOUND at the end. */
int store_event_next(struct txn *t, uint64_t after, uint64_t *id);
/* An 8-byte counter in meta by name: MDB_NOTFOUND when it has none. */
int store_meta_get(struct txn *t, const char *name, uint64_t *v);
int store_meta_put(struct txn *t, const char *name, uint64_t v);
/* MDB_NOTFOUND when the event has no record or its payload was removed;
 * STORE_EDECODE when the payload fails its checksum or does not decode (or
 * the record's layout is damaged): a damaged payload is never returned as
 * good. */
int store_payload_get(struct txn *t, uint64_t id, EventBody **out);
int store_payload_put(struct txn *t, uint64_t id, const EventBody *b);
int store_payload_del(struct txn *t, uint64_t id);
uint64_t store_alloc_event_id(struct txn *t);
/* Number of events whose payload is still held. */
int store_payload_count(struct txn *t, uint64_t *count);

/* subscriptions (records cached per txn: modify in place, then mark) */
int store_sub_get(struct txn *t, uint32_t id, SubRecord **out);
int store_sub_by_name(struct txn *t, const char *name, SubRecord **out);
void store_sub_mark(struct txn *t, const SubRecord *r);
/* Assigns r->id, indexes the name and topic. r must be arena-allocated. */
int store_sub_create(struct txn *t, SubRecord *r);
/* Removes name and topic entries (the record stays, marked deleting). */
int store_sub_unlink(struct txn *t, SubRecord *r);
int store_sub_delete(struct txn *t, uint32_t id);
/* Number of live subscriptions (those with a name: not being deleted). */
int store_sub_count(struct txn *t, uint64_t *count);
/* Next subscription id > after (0 = first); MDB_NOTFOUND at the end. */
int store_sub_next(struct txn *t, uint32_t after, uint32_t *id);
/* Ids of the live subscriptions of topic, ascending (arena array). */
int store_topic_subs(struct txn *t, const char *topic, uint32_t **ids,
		     size_t *n);
int store_topic_get(struct txn *t, const char *topic, TopicRecord **out);
int store_topic_put(struct txn *t, const char *topic, const TopicRecord *r);
/* The topic's id for the topic log; one is given (meta "next_topic") to a
 * topic that has none, making its record if need be. */
int store_topic_id(struct txn *t, const char *topic, uint32_t *id);
/* Append event ev of topic id to the log (a log delivery for every
 * subscription whose cursor is at or before it); drop it (forget). */
int store_log_put(struct txn *t, uint32_t topic, uint64_t ev,
		  uint64_t published_ms);
int store_log_del(struct txn *t, uint32_t topic, uint64_t ev);
/* Topic names in order: next after `after` ("" = first). *name in arena. */
int store_topic_next(struct txn *t, const char *after, char **name);

/* deliveries: a log delivery reads as a READY record (due_ms its publish
 * time, no attempts) that is not stored */
int store_delivery_get(struct txn *t, uint64_t event, uint32_t sub,
		       DeliveryRecord **out);
int store_delivery_put(struct txn *t, uint64_t event, uint32_t sub,
		       const DeliveryRecord *d);
int store_delivery_del(struct txn *t, uint64_t event, uint32_t sub);
/* Subscription of the next delivery of event with sub id > after (stored or
 * log delivery). */
int store_delivery_next_sub(struct txn *t, uint64_t event, uint32_t after,
			    uint32_t *sub);

/* indexes */
int store_ready_put(struct txn *t, uint32_t sub, uint64_t due, uint64_t ev);
/* Remove the ready entry; for sub's first log delivery (ev, any due), move
 * its cursor past it instead. MDB_NOTFOUND when it is neither. */
int store_ready_del(struct txn *t, uint32_t sub, uint64_t due, uint64_t ev);
/* First ready entry of sub (any due), its log deliveries included (the
 * earliest by due time, then event id); MDB_NOTFOUND when none. */
int store_ready_first(struct txn *t, uint32_t sub, uint64_t *due, uint64_t *ev);
/* Count sub's ready entries due after `from` (stops at cap); stored ones
 * only (a log delivery is due at its publish time, never later than now). */
int store_ready_count_after(struct txn *t, uint32_t sub, uint64_t from,
			    uint64_t cap, uint64_t *count);
/*
 * The number of sub's ready entries due after t->now_ms (delayed: not yet
 * deliverable), without counting them all each time. The store keeps, per
 * subscription asked about, the count of entries due after a horizon;
 * every ready put and delete in a write transaction adjusts it, and each
 * call moves the horizon to now by walking either the entries that became
 * due since the last call or the delayed ones, whichever run ends first
 * (two cursors in step). So a call costs O(min(entries due since the last
 * call, delayed entries)): a backlog of millions of ready deliveries costs
 * nothing, a large delayed backlog only its first count. The counts are
 * memory only: dropped when a transaction that wrote is aborted or fails to
 * commit (the next call counts again), and at close.
 */
int store_ready_delayed(struct txn *t, uint32_t sub, uint64_t *count);
int store_lease_put(struct txn *t, uint64_t deadline, uint32_t sub,
		    uint64_t ev);
int store_lease_del(struct txn *t, uint64_t deadline, uint32_t sub,
		    uint64_t ev);
/* Earliest lease entry; MDB_NOTFOUND when none. */
int store_lease_first(struct txn *t, uint64_t *deadline, uint32_t *sub,
		      uint64_t *ev);
/* First lease entry after (deadline, sub, ev) in key order. */
int store_lease_next(struct txn *t, uint64_t *deadline, uint32_t *sub,
		     uint64_t *ev);
/* First lease entry of sub (scans: for unsubscribing only). */
int store_lease_find_sub(struct txn *t, uint32_t sub, uint64_t *deadline,
			 uint64_t *ev);
int store_dlq_put(struct txn *t, uint32_t sub, uint64_t ev);
int store_dlq_del(struct txn *t, uint32_t sub, uint64_t ev);
/* Next event id > after in sub's dead-letter queue. */
int store_dlq_next(struct txn *t, uint32_t sub, uint64_t after, uint64_t *ev);

/* idempotency records */
/* The record key of (topic id, key) into out (IDEM_KEY_MAX bytes): 0, or
 * EINVAL when it would not fit. */
int store_idem_key(uint32_t topic_id, const char *key, uint8_t *out,
		   size_t *len);
int store_idem_get(struct txn *t, const uint8_t *key, size_t len,
		   IdemRecord **out);
int store_idem_put(struct txn *t, const uint8_t *key, size_t len,
		   const IdemRecord *r);
int store_idem_del(struct txn *t, const uint8_t *key, size_t len);

/* expiry queue: id is an event id (8 bytes, EXPIRY_HISTORY), an
 * idempotency record key (EXPIRY_IDEM) or a command id (EXPIRY_COMMAND),
 * of up to IDEM_KEY_MAX bytes */
int store_expiry_put(struct txn *t, uint64_t at, int kind, const void *id,
		     size_t idlen);
/* First entry due at or before now; id copied into idbuf (IDEM_KEY_MAX). */
int store_expiry_first(struct txn *t, uint64_t now, uint64_t *at, int *kind,
		       uint8_t *idbuf, size_t *idlen);
int store_expiry_del(struct txn *t, uint64_t at, int kind, const void *id,
		     size_t idlen);

/* audit: operator actions, in order. append sets r->seq. */
int store_audit_append(struct txn *t, AuditRecord *r);
/* The first record with seq > after; MDB_NOTFOUND at the end. */
int store_audit_next(struct txn *t, uint64_t after, AuditRecord **out);
/* commands: operator command id (1..256 bytes) -> its recorded reply. */
int store_command_get(struct txn *t, const char *id, CommandRecord **out);
int store_command_put(struct txn *t, const char *id, const CommandRecord *r);
int store_command_del(struct txn *t, const char *id);

uint64_t be64_get(const void *p);
void be64_put(void *p, uint64_t v);
uint32_t be32_get(const void *p);
void be32_put(void *p, uint32_t v);

#endif
