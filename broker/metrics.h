/*
 * metrics.h — per-minute rates from monotonically growing counters
 * (published per topic, delivered and acked per subscription). The turn
 * samples the counters every few seconds; a rate is the growth between the
 * oldest and newest sample of the last minute. Counters themselves live in
 * the store (durable); only the samples are in memory.
 *
 * Not thread-safe. Memory is bounded by the number of series.
 */
#ifndef HANDOFF_BROKER_METRICS_H
#define HANDOFF_BROKER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_SAMPLES	    13 /* 12 intervals of 5 s: one minute */
#define METRICS_INTERVAL_MS 5000

struct metric_series;

struct metrics {
	struct metric_series *series;
	size_t n, cap;
};

void metrics_init(struct metrics *m);
void metrics_fini(struct metrics *m);
/* Record counter value v of series name at now (ms). 0 or ENOMEM. */
int metrics_sample(struct metrics *m, const char *name, uint64_t v,
		   uint64_t now);
/* Per-second rate of series name over the last minute (0 if unknown). */
double metrics_rate(const struct metrics *m, const char *name);

/* The counters the broker keeps rates of, one series per topic or
 * subscription name. */
enum metric_kind {
	METRIC_PUBLISHED, /* per topic */
	METRIC_DELIVERED, /* per subscription */
	METRIC_ACKED,	  /* per subscription */
};
/* metrics_sample and metrics_rate for the series of kind and name. */
int metrics_sample_of(struct metrics *m, enum metric_kind kind,
		      const char *name, uint64_t v, uint64_t now);
double metrics_rate_of(const struct metrics *m, enum metric_kind kind,
		       const char *name);

#endif
