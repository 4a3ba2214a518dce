/*
 * hist.c — a small log-linear latency histogram (HdrHistogram's layout).
 *
 * Index of a value v (ns): below 2^(SUB+1) = 128 the value itself; above,
 * with e = floor(log2 v) - SUB, the index is e * 2^SUB + (v >> e), where
 * v >> e lies in [64, 128). Each power of two thus gets 64 buckets and the
 * relative error is below 1/64. 60 s < 2^36 needs index < 30 * 64 + 128.
 */
#include <string.h>

#include "bench.h"

#define HIST_MIN_NS 1000ULL		  /* 1 us */
#define HIST_MAX_NS 60000000000ULL	  /* 60 s */
#define SUB_COUNT   (1U << HIST_SUB_BITS) /* 64 */

_Static_assert((HIST_MAX_NS >> 29) < 2 * SUB_COUNT &&
		       29 * SUB_COUNT + 2 * SUB_COUNT <= HIST_BUCKETS,
	       "histogram too small for 60 s");

static unsigned bucket_of(uint64_t v)
{
	if (v < 2 * SUB_COUNT)
		return (unsigned)v;
	unsigned e = (unsigned)(63 - __builtin_clzll(v)) - HIST_SUB_BITS;
	return e * SUB_COUNT + (unsigned)(v >> e);
}

static void bucket_range(unsigned idx, uint64_t *lo, uint64_t *width)
{
	if (idx < 2 * SUB_COUNT) {
		*lo = idx;
		*width = 1;
		return;
	}
	unsigned e = idx / SUB_COUNT - 1;
	uint64_t m = idx - e * SUB_COUNT;
	*lo = m << e;
	*width = 1ULL << e;
}

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof *h);
}

void hist_add(struct hist *h, uint64_t ns)
{
	if (ns < HIST_MIN_NS)
		ns = HIST_MIN_NS;
	if (ns > HIST_MAX_NS)
		ns = HIST_MAX_NS;
	if (h->count == 0 || ns < h->min)
		h->min = ns;
	if (ns > h->max)
		h->max = ns;
	h->count++;
	h->sum += ns;
	h->b[bucket_of(ns)]++;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
	if (src->count == 0)
		return;
	if (dst->count == 0 || src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
	dst->count += src->count;
	dst->sum += src->sum;
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	if (h->count == 0)
		return 0;
	if (q <= 0)
		return h->min;
	if (q >= 1)
		return h->max;
	uint64_t rank = (uint64_t)(q * (double)h->count);
	if ((double)rank < q * (double)h->count)
		rank++;
	if (rank == 0)
		rank = 1;
	uint64_t cum = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		cum += h->b[i];
		if (cum >= rank) {
			uint64_t lo, width, v;
			bucket_range(i, &lo, &width);
			v = lo + width / 2;
			if (v < h->min)
				v = h->min;
			if (v > h->max)
				v = h->max;
			return v;
		}
	}
	return h->max;
}
