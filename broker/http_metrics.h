/*
 * http_metrics.h — GET /metrics: the Stats reply (proto/handoff.proto
 * StatsReply, with its metrics fields) rendered as Prometheus text
 * (prom.h). The names, units and labels are listed in README.md "Metrics
 * and alerts"; labels name a topic or a subscription (and a fixed set of
 * outcomes, results and states), never an event or a consumer.
 *
 * The reply carries everything: the store thread computed it in one read
 * of the store that scans nothing (store_ready_delayed, the first ready
 * entry, record counters) and copied its process counters (telemetry.h)
 * into it; this only formats.
 *
 * Ownership: out's body is malloc'd (http_out_free). Threads: any.
 */
#ifndef HANDOFF_BROKER_HTTP_METRICS_H
#define HANDOFF_BROKER_HTTP_METRICS_H

#include "handoff.pb-c.h"
#include "http_api.h"

/* Fill out with the exposition of s (200), or a 500 problem when out of
 * memory. */
void http_metrics_render(const Handoff__Wire__StatsReply *s,
			 struct http_out *out);

#endif
