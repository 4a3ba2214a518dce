/*
 * health.h — liveness and readiness, one state read by every way of asking
 * (GET /healthz and /readyz on the HTTP thread, the native health request
 * on the store thread, sd_notify from the store thread):
 *
 *   live   the store thread's loop is turning: it beat (health_beat, every
 *          turn; an idle turn wakes at least once a second) within
 *          the liveness timeout. A loop stuck in a write or a sync is not live.
 *   ready  live, the store open, lease recovery done, not stopping, and no
 *          fatal store error. A full store is reported (storage_full) but
 *          still ready: acks, nacks and purges go on, and they are what
 *          frees space.
 *
 * The state is process-wide (one broker per process): loop.c resets it at
 * start. Threads: the store thread writes it (loop.c, turn.c), any thread
 * reads it; every field is an atomic of its own, so a report may mix two
 * moments a few microseconds apart, never torn values.
 */
#ifndef HANDOFF_BROKER_HEALTH_H
#define HANDOFF_BROKER_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

/* A loop that has not turned for this long is not live (the default of
 * [broker] liveness_timeout). Generous: a turn is bounded work, but one
 * sync on a busy disk can take seconds. */
#define HEALTH_STALE_MS 15000

struct health_report {
	bool live;
	bool ready;
	bool store_open;
	bool recovered;	      /* lease recovery is done */
	bool storage_full;    /* publishes refused for space; still ready */
	bool stopping;	      /* a stop signal came */
	bool fatal;	      /* the store is unusable: exiting */
	uint64_t loop_age_ms; /* since the loop last turned */
	uint64_t recovered_leases; /* made ready again at this start */
	const char *reason;	   /* why not ready (or not live); "" */
};

/* Start-up: nothing open, nothing recovered; the loop counts as just
 * turned (start-up itself is the grace period). */
void health_reset(uint64_t stale_ms);
void health_set_store_open(bool open);
/* Store thread, every turn: the loop turned at now_ms (monotonic). */
void health_beat(uint64_t now_ms);
void health_set_recovered(uint64_t leases);
void health_set_storage_full(bool full);
void health_set_stopping(void);
void health_set_fatal(void);
bool health_recovered(void);

/* Any thread: the state now (now_ms monotonic, clock_mono_ms()). */
void health_report(struct health_report *r, uint64_t now_ms);

/*
 * Any thread: log a failed probe (probes discard bodies, so the log is
 * where the reason is seen). Rate-limited, never silenced: the first
 * failure, a change of reason, and then one line per HEALTH_LOG_EVERY_MS
 * with the count of failures in between. via: "http", "native".
 */
#define HEALTH_LOG_EVERY_MS 10000
void health_log_failure(const struct health_report *r, const char *probe,
			const char *via, uint64_t now_ms);

#endif
