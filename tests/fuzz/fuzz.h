/*
 * fuzz.h — what the broker fuzz targets of tests/fuzz share (fuzz_common.c):
 * the broker settings the fuzzers run with, a throw-away store that can be
 * reset to the same bytes for every input, the checks of a reply against
 * its request (closed status set, body per type, the per-type status list
 * of proto/PROTOCOL.md) and the consistency check of a whole store (every
 * index entry matches its delivery record and the subscription counters,
 * payload retention, the idempotency, command, audit and expiry records),
 * plus the table of leases the harness has seen handed out, against which
 * every successful ack or nack is checked.
 *
 * A failed check prints what was violated and aborts: libFuzzer then saves
 * the input as a crash artifact.
 */
#ifndef HANDOFF_FUZZ_H
#define HANDOFF_FUZZ_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "config.h"
#include "leases.h"
#include "store.h"
#include "fuzz_util.h"

#define FZ_T0 1700000000000ull /* virtual time every input starts at */

/* ---- settings --------------------------------------------------------- */
/* Broker defaults with small limits, so that inputs of a few KiB reach
 * every limit; map_size as given. */
void fz_config(struct config *c, uint64_t map_size);

/* ---- the store -------------------------------------------------------- */
struct fz_store {
	char dir[PATH_MAX];
	uint64_t map_size;
	void *pristine; /* data.mdb of a brand-new store */
	size_t pristine_len;
};

/* A new store in a fresh folder under /dev/shm (or $TMPDIR, /tmp), opened
 * into st; its folder is removed at exit. Aborts on failure. */
void fz_store_create(struct fz_store *s, struct store *st, uint64_t map_size);
/* Put the brand-new data file back and open it into st (closed before):
 * every input sees exactly the same bytes. */
void fz_store_fresh(struct fz_store *s, struct store *st);
/* Empty every database of the open store st, as if brand-new (the data
 * file keeps its size and free pages): much cheaper than fz_store_fresh,
 * and what LMDB leaves differs only in page numbers and the free list. */
void fz_store_clear(struct store *st);
/* Close and open again, keeping the data (a broker restart). */
void fz_store_reopen(struct fz_store *s, struct store *st);

/* Entries per database, to compare before/after a request. */
struct fz_counts {
	size_t n[DB_COUNT];
};
void fz_db_counts(struct txn *t, struct fz_counts *c);
bool fz_counts_equal(const struct fz_counts *a, const struct fz_counts *b);
/* Whether t has a subscription record marked for writing back. */
bool fz_txn_dirty(const struct txn *t);

/*
 * Check the whole store as seen by t (see the top of this file). leases
 * and started_ms, when leases is not NULL: the per-consumer open-lease
 * counts must equal the LEASED deliveries granted since started_ms.
 * consumers: the names to check those counts for (n_consumers).
 */
void fz_check_store(struct txn *t, const struct lease_counts *leases,
		    uint64_t started_ms, char *const *consumers,
		    size_t n_consumers);
/* list_subscriptions and stats, applied in t, must report the counts the
 * index holds. */
struct handler_env;
void fz_check_views(struct handler_env *env, struct txn *t);

/* ---- replies ---------------------------------------------------------- */
/*
 * Check a packed reply to req (NULL: the request did not decode). Returns
 * the decoded reply (free with handoff__wire__reply__free_unpacked(r,
 * NULL)). cfg gives the limits the reply must respect.
 */
Reply *fz_check_reply(const struct config *cfg, const Request *req,
		      const void *buf, size_t len);
/* The closed status set (SHUTTING_DOWN is reserved, never sent). */
bool fz_status_valid(int status);

/* ---- leases seen ------------------------------------------------------ */
enum fz_lease_state { FZ_OPEN, FZ_ACKED, FZ_ENDED };

struct fz_lease {
	char *sub;
	char *consumer;
	uint64_t event;
	uint64_t token;
	enum fz_lease_state state;
};

struct fz_leases {
	struct fz_lease *v;
	size_t n, cap;
};

void fz_leases_clear(struct fz_leases *l);
/* Record the deliveries of an OK fetch reply (subscription, consumer from
 * the request). */
void fz_leases_add_fetch(struct fz_leases *l, const char *sub,
			 const char *consumer, const Reply *r);
struct fz_lease *fz_leases_find(struct fz_leases *l, const char *sub,
				uint64_t event, uint64_t token);
/*
 * Check an ack, nack or extend reply against what was leased, and record
 * what it ended: an item may be OK only for a lease handed out earlier (by
 * a fetch reply the harness saw) and not ended since; a repeated ack under
 * the same token may be OK again; an extend keeps the lease open.
 */
void fz_leases_check_items(struct fz_leases *l, const Request *req,
			   const Reply *r);
/* After a turn: a lease whose delivery is no longer LEASED under its token
 * (expired, recovered after a restart, unsubscribed) has ended. */
void fz_leases_observe(struct fz_leases *l, struct txn *t);
/* Small tokens (1..63) in an ack/nack/extend stand for the k-th lease seen, a zero
 * event id for its event, an empty subscription for its subscription: the
 * fuzzer cannot guess 64-bit random tokens. Applied to a decoded request in
 * place (strings point into l). */
void fz_leases_fixup(struct fz_leases *l, Request *req);

#endif
