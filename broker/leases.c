/*
 * leases.c — open leases per consumer; see leases.h.
 */
#include "leases.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define N_BUCKETS 4096

struct lease_entry {
	struct lease_entry *next;
	uint32_t count;
	int dying;
	char name[];
};

static size_t bucket_of(const struct lease_counts *lc, const char *name)
{
	uint32_t h = 2166136261u;
	for (const char *p = name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return h % lc->n_buckets;
}

int leases_init(struct lease_counts *lc)
{
	memset(lc, 0, sizeof *lc);
	lc->buckets = calloc(N_BUCKETS, sizeof *lc->buckets);
	if (!lc->buckets)
		return ENOMEM;
	lc->n_buckets = N_BUCKETS;
	return 0;
}

void leases_fini(struct lease_counts *lc)
{
	for (size_t i = 0; i < lc->n_buckets; i++) {
		struct lease_entry *e = lc->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(lc->buckets);
	free(lc->undo);
	memset(lc, 0, sizeof *lc);
}

static struct lease_entry *find(const struct lease_counts *lc, const char *name)
{
	if (!lc->buckets)
		return NULL;
	struct lease_entry *e = lc->buckets[bucket_of(lc, name)];
	while (e && strcmp(e->name, name))
		e = e->next;
	return e;
}

int leases_add(struct lease_counts *lc, const char *consumer, int32_t delta)
{
	if (!lc->buckets || !consumer)
		return 0;
	struct lease_entry *e = find(lc, consumer);
	if (!e && delta <= 0)
		return 0; /* a lease from before the table knew the consumer */
	if (lc->n_undo == lc->cap_undo) {
		size_t cap = lc->cap_undo ? lc->cap_undo * 2 : 256;
		struct lease_undo *u = realloc(lc->undo, cap * sizeof *u);
		if (!u)
			return ENOMEM;
		lc->undo = u;
		lc->cap_undo = cap;
	}
	if (!e) {
		size_t len = strlen(consumer);
		e = calloc(1, sizeof *e + len + 1);
		if (!e)
			return ENOMEM;
		memcpy(e->name, consumer, len + 1);
		size_t b = bucket_of(lc, consumer);
		e->next = lc->buckets[b];
		lc->buckets[b] = e;
	}
	if (delta < 0 && (uint32_t)-delta > e->count)
		delta = -(int32_t)e->count;
	e->count += (uint32_t)delta;
	lc->undo[lc->n_undo++] = (struct lease_undo){ e, delta };
	return 0;
}

uint32_t leases_held(const struct lease_counts *lc, const char *consumer)
{
	const struct lease_entry *e = consumer ? find(lc, consumer) : NULL;
	return e ? e->count : 0;
}

/* Free the entries touched since the last call that dropped to zero: the
 * first undo record of each becomes its owner (delta INT32_MIN) in a first
 * pass, so the second pass frees each once. */
static void sweep(struct lease_counts *lc)
{
	for (size_t i = 0; i < lc->n_undo; i++) {
		struct lease_entry *e = lc->undo[i].e;
		if (e->count || e->dying)
			continue;
		e->dying = 1;
		struct lease_entry **pp = &lc->buckets[bucket_of(lc, e->name)];
		while (*pp && *pp != e)
			pp = &(*pp)->next;
		if (*pp)
			*pp = e->next;
		lc->undo[i].delta = INT32_MIN;
	}
	for (size_t i = 0; i < lc->n_undo; i++)
		if (lc->undo[i].delta == INT32_MIN)
			free(lc->undo[i].e);
	lc->n_undo = 0;
}

void leases_commit(struct lease_counts *lc)
{
	sweep(lc);
}

void leases_rollback(struct lease_counts *lc)
{
	for (size_t i = lc->n_undo; i-- > 0;)
		lc->undo[i].e->count -= (uint32_t)lc->undo[i].delta;
	sweep(lc);
}
