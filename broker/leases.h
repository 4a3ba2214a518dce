/*
 * leases.h — open leases per consumer, for the max_leases_per_consumer
 * limit.
 *
 * Kept in memory only: a restart makes every earlier lease ready again, so
 * counting from zero at start is exact (the caller does not count down
 * leases granted before the start). Changes made while a transaction is
 * open are logged; leases_commit() keeps them, leases_rollback() undoes
 * them, so the counts always match what is on disk.
 *
 * Ownership: the table owns its entries and copies of the names.
 * Thread-safety: none; the store thread owns it.
 */
#ifndef HANDOFF_BROKER_LEASES_H
#define HANDOFF_BROKER_LEASES_H

#include <stddef.h>
#include <stdint.h>

struct lease_entry;

struct lease_counts {
	struct lease_entry **buckets;
	size_t n_buckets;
	struct lease_undo {
		struct lease_entry *e;
		int32_t delta;
	} * undo;
	size_t n_undo, cap_undo;
};

/* 0 or ENOMEM. */
int leases_init(struct lease_counts *lc);
void leases_fini(struct lease_counts *lc);
/* Add delta to consumer's count (never below 0). 0 or ENOMEM (then nothing
 * changed: the count is only a limit, so the caller may go on). */
int leases_add(struct lease_counts *lc, const char *consumer, int32_t delta);
uint32_t leases_held(const struct lease_counts *lc, const char *consumer);
/* Keep (commit) or undo (rollback) the changes since the last call. */
void leases_commit(struct lease_counts *lc);
void leases_rollback(struct lease_counts *lc);

#endif
