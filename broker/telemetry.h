/*
 * telemetry.h — process counters and histograms for GET /metrics: publish
 * results, publish confirm latency, commit duration and requests per turn.
 * They live in memory only and start from zero at every start (Prometheus
 * counters may reset; rate() handles it). What lasts across restarts (the
 * per-subscription delivery counters) is in the store's records instead.
 *
 * Threads: the store thread owns a struct telemetry (in struct broker):
 * turn.c and inbox.c update it, and the Stats handler copies it into the
 * reply (telemetry_snapshot) within the same thread, so nothing here is
 * shared or locked. The HTTP thread sees only that copy, in the packed
 * reply, and renders it (http_metrics.h).
 *
 * Memory: fixed size; the snapshot is allocated from the caller's arena.
 */
#ifndef HANDOFF_BROKER_TELEMETRY_H
#define HANDOFF_BROKER_TELEMETRY_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "codec.h"

#define TELEMETRY_MAX_BOUNDS 16

struct histogram {
	const double *bounds; /* increasing; static */
	size_t n_bounds;
	uint64_t counts[TELEMETRY_MAX_BOUNDS + 1]; /* last: above all */
	double sum;
};

enum publish_result {
	PUBLISH_STORED,
	PUBLISH_DUPLICATE,
	PUBLISH_REFUSED_FULL,
	PUBLISH_REFUSED_LIMIT,
	PUBLISH_REFUSED_INVALID,
	PUBLISH_DENIED,
	PUBLISH_FAILED,
	PUBLISH_RESULTS
};

struct telemetry {
	uint64_t publish[PUBLISH_RESULTS]; /* events */
	uint64_t turns;
	struct histogram confirm_s; /* publish: taken by a turn -> replied */
	struct histogram commit_s;  /* a commit that wrote something */
	struct histogram turn_requests; /* requests applied per turn */
};

void telemetry_init(struct telemetry *tm);
void histogram_observe(struct histogram *h, double v);

/* Count the events of publish request req by the reply it gets (rep NULL:
 * none could be built, counted as failed). Other requests are ignored. */
void telemetry_publish_reply(struct telemetry *tm, const Request *req,
			     const Reply *rep);
/* A publish refused before it reached a turn (access control): denied. */
void telemetry_publish_denied(struct telemetry *tm, const Request *req);

/* A copy for a reply, in arena a. 0 or ENOMEM. */
int telemetry_snapshot(const struct telemetry *tm, struct arena *a,
		       Handoff__Wire__ProcessCounters **out);

#endif
