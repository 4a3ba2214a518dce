/*
 * check.h — the one checker of every torture run.
 *
 * It reads the record files of a run (RUN/rec/NAME.rec, see record.h) and
 * asks the broker, through client/handoff.h, for the final state: the
 * subscriptions (handoff_list_subscriptions), every dead-letter queue
 * (handoff_dlq_list, paged) and the trace of every event id from 1 up to
 * past the highest id anyone saw (handoff_trace_event, several handles in
 * parallel). Run it after the final drain, with the broker up.
 *
 * Per subscription it counts (each must be 0):
 *   lost                  confirmed, but neither acked nor in the
 *                         subscription's dead-letter queue (or the id holds
 *                         another key, or the broker has no record);
 *   unexpected            delivered or stored but never published, or
 *                         delivered with a payload other than the key's;
 *   duplicate_stored      one idempotency key under two event ids;
 *   done_without_ack      acked on the broker, but no consumer recorded an
 *                         ack intent for that attempt;
 *   redelivered_after_ack delivered by a fetch first sent after a consumer
 *                         had its ack of the event confirmed;
 *   dead_without_cause    dead-lettered while attempts were left and no
 *                         consumer recorded a permanent nack of that attempt
 *                         (the attempt history is replayed against the
 *                         policy, including replays and restart refunds).
 * and reports confirmed, delivered, acked, dead, duplicate_deliveries
 * (delivered again after a consumer had sent its ack) and redeliveries
 * (every delivery of an event after its first).
 *
 * Push subscriptions (an S record ending in "push") are checked with the
 * same counts; their consumer is the run's receiver, whose P records say
 * what it was sent and answered. A delivery is a P record, an ack intent
 * a P record with a 2xx answer (recorded before the answer was sent), so
 * done_without_ack is "acked on the broker, but the receiver never
 * answered 2xx to that attempt". A bad signature or timestamp counts as
 * unexpected, like a bad payload. The receiver never sees the broker's ack
 * confirmed, so redelivered_after_ack is "delivered with a higher attempt
 * than the one the broker's trace holds as acked". One more count, push
 * only (must be 0):
 *   webhook_id_unstable   deliveries of one event with different
 *                         webhook-ids, or two events with one webhook-id
 *                         (a receiver deduplicating by it would drop one).
 * The push thread nacks permanently only when out of memory and the
 * receiver records no permanent-nack intents: a permanent dead letter on a
 * push subscription is dead_without_cause.
 */
#ifndef HANDOFF_TORTURE_CHECK_H
#define HANDOFF_TORTURE_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define CHECK_MAX_SUBS 16

struct check_opts {
	const char *dir;   /* run folder (records in DIR/rec) */
	const char *url;   /* broker */
	unsigned threads;  /* trace handles in parallel; 0 = 4 */
	unsigned examples; /* violations printed per kind; 0 = 5 */
	FILE *out;	   /* lines go here; NULL = stdout */
};

struct check_counts {
	uint64_t lost, unexpected, duplicate_stored, done_without_ack,
		redelivered_after_ack, dead_without_cause, webhook_id_unstable;
	uint64_t confirmed, delivered, acked, dead, duplicate_deliveries,
		redeliveries;
};

struct check_result {
	int status;	   /* 0 clean, 1 violations, 2 could not check */
	bool broker_error; /* status 2 because a broker call failed */
	struct check_counts total; /* duplicate_stored: distinct keys */
	size_t n_subs;
	char sub_names[CHECK_MAX_SUBS][64];
	struct check_counts subs[CHECK_MAX_SUBS];
	bool sub_push[CHECK_MAX_SUBS];
	struct check_counts push; /* the push subscriptions summed */
	uint64_t intents, unconfirmed, unconfirmed_stored, republished,
		publish_errors, events_traced, max_id, partial_lines, bad_lines,
		files, unverifiable;
};

/* Run the check; prints one "sub=..." line per subscription and a
 * "check: ..." summary line. Returns r->status. */
int check_run(const struct check_opts *o, struct check_result *r);

/* The violations of a result (the seven counts summed). */
uint64_t check_violations(const struct check_result *r);

#endif
