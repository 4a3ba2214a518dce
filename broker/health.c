/*
 * health.c — liveness and readiness state; see health.h.
 */
#include "health.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "clock.h"
#include "log.h"

static _Atomic uint64_t beat_ms;
static _Atomic uint64_t stale_after_ms = HEALTH_STALE_MS;
static _Atomic uint64_t recovered_leases;
static atomic_bool store_open, recovered, storage_full, stopping, fatal;

/* failure logging: under log_mu */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static const char *last_reason;
static uint64_t last_logged_ms;
static uint64_t unlogged;

void health_reset(uint64_t stale_ms)
{
	atomic_store(&stale_after_ms, stale_ms ? stale_ms : HEALTH_STALE_MS);
	atomic_store(&beat_ms, clock_mono_ms());
	atomic_store(&recovered_leases, 0);
	atomic_store(&store_open, false);
	atomic_store(&recovered, false);
	atomic_store(&storage_full, false);
	atomic_store(&stopping, false);
	atomic_store(&fatal, false);
	pthread_mutex_lock(&log_mu);
	last_reason = NULL;
	last_logged_ms = 0;
	unlogged = 0;
	pthread_mutex_unlock(&log_mu);
}

void health_set_store_open(bool open)
{
	atomic_store(&store_open, open);
}

void health_beat(uint64_t now_ms)
{
	atomic_store(&beat_ms, now_ms);
}

void health_set_recovered(uint64_t leases)
{
	atomic_store(&recovered_leases, leases);
	atomic_store(&recovered, true);
}

bool health_recovered(void)
{
	return atomic_load(&recovered);
}

void health_set_storage_full(bool full)
{
	atomic_store(&storage_full, full);
}

void health_set_stopping(void)
{
	atomic_store(&stopping, true);
}

void health_set_fatal(void)
{
	atomic_store(&fatal, true);
}

void health_report(struct health_report *r, uint64_t now_ms)
{
	uint64_t beat = atomic_load(&beat_ms);
	*r = (struct health_report){
		.store_open = atomic_load(&store_open),
		.recovered = atomic_load(&recovered),
		.storage_full = atomic_load(&storage_full),
		.stopping = atomic_load(&stopping),
		.fatal = atomic_load(&fatal),
		.loop_age_ms = now_ms > beat ? now_ms - beat : 0,
		.recovered_leases = atomic_load(&recovered_leases),
		.reason = "",
	};
	r->live = r->loop_age_ms <= atomic_load(&stale_after_ms) && !r->fatal;
	/* the first reason that applies, most serious first */
	if (r->fatal)
		r->reason = "store unusable: exiting to recover from the last "
			    "durable commit";
	else if (!r->live)
		r->reason = "store loop not turning";
	else if (!r->store_open)
		r->reason = "store not open";
	else if (r->stopping)
		r->reason = "stopping";
	else if (!r->recovered)
		r->reason = "recovering leases from before the start";
	r->ready = r->reason[0] == '\0';
}

void health_log_failure(const struct health_report *r, const char *probe,
			const char *via, uint64_t now_ms)
{
	pthread_mutex_lock(&log_mu);
	bool changed = last_reason != r->reason;
	if (!changed && last_logged_ms &&
	    now_ms - last_logged_ms < HEALTH_LOG_EVERY_MS) {
		unlogged++;
		pthread_mutex_unlock(&log_mu);
		return;
	}
	uint64_t since = unlogged;
	last_reason = r->reason;
	last_logged_ms = now_ms ? now_ms : 1;
	unlogged = 0;
	pthread_mutex_unlock(&log_mu);
	log_event(LOG_WARN, r->live ? "not_ready" : "not_live",
		  LS("probe", probe), LS("via", via), LS("reason", r->reason),
		  LU("loop_age_ms", r->loop_age_ms),
		  LU("failures_unlogged", since), LOG_END);
}
