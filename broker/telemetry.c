/* telemetry.c — see telemetry.h. */
#include "telemetry.h"

#include <errno.h>
#include <string.h>

#define ST(x) HANDOFF__WIRE__STATUS__##x

/* Seconds: a commit with fsync takes a millisecond or more on most disks;
 * the top buckets catch stalls. */
static const double latency_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01,
					 0.025,	 0.05,	0.1,	0.25,  0.5,
					 1,	 2.5,	5,	10 };
/* Requests: a turn takes at most MAX_TURN_REQUESTS (512). */
static const double turn_bounds[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512 };

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

_Static_assert(COUNT(latency_bounds) <= TELEMETRY_MAX_BOUNDS, "bounds");
_Static_assert(COUNT(turn_bounds) <= TELEMETRY_MAX_BOUNDS, "bounds");

void telemetry_init(struct telemetry *tm)
{
	memset(tm, 0, sizeof *tm);
	tm->confirm_s.bounds = latency_bounds;
	tm->confirm_s.n_bounds = COUNT(latency_bounds);
	tm->commit_s.bounds = latency_bounds;
	tm->commit_s.n_bounds = COUNT(latency_bounds);
	tm->turn_requests.bounds = turn_bounds;
	tm->turn_requests.n_bounds = COUNT(turn_bounds);
}

void histogram_observe(struct histogram *h, double v)
{
	size_t i = 0;
	while (i < h->n_bounds && v > h->bounds[i])
		i++;
	h->counts[i]++;
	h->sum += v;
}

static enum publish_result refusal(int status)
{
	switch (status) {
	case ST(STORAGE_FULL):
		return PUBLISH_REFUSED_FULL;
	case ST(LIMIT_EXCEEDED):
		return PUBLISH_REFUSED_LIMIT;
	case ST(INTERNAL):
		return PUBLISH_FAILED;
	case ST(PERMISSION_DENIED):
	case ST(STALE_REQUEST):
		return PUBLISH_DENIED;
	default:
		return PUBLISH_REFUSED_INVALID;
	}
}

void telemetry_publish_reply(struct telemetry *tm, const Request *req,
			     const Reply *rep)
{
	if (!req || req->body_case != HANDOFF__WIRE__REQUEST__BODY_PUBLISH ||
	    !req->publish)
		return;
	uint64_t n = req->publish->n_events;
	if (!rep) {
		tm->publish[PUBLISH_FAILED] += n;
		return;
	}
	if (rep->status != ST(OK)) {
		tm->publish[refusal((int)rep->status)] += n;
		return;
	}
	const Handoff__Wire__PublishReply *p =
		rep->body_case == HANDOFF__WIRE__REPLY__BODY_PUBLISH ?
			rep->publish :
			NULL;
	uint64_t dups = 0;
	for (size_t i = 0; p && i < p->n_duplicates; i++)
		dups += p->duplicates[i] != 0;
	tm->publish[PUBLISH_DUPLICATE] += dups;
	tm->publish[PUBLISH_STORED] += n > dups ? n - dups : 0;
}

void telemetry_publish_denied(struct telemetry *tm, const Request *req)
{
	if (req && req->body_case == HANDOFF__WIRE__REQUEST__BODY_PUBLISH &&
	    req->publish)
		tm->publish[PUBLISH_DENIED] += req->publish->n_events;
}

static Handoff__Wire__Histogram *histogram_copy(const struct histogram *h,
						struct arena *a)
{
	Handoff__Wire__Histogram *w = arena_alloc(a, sizeof *w);
	double *bounds = arena_alloc(a, h->n_bounds * sizeof *bounds);
	uint64_t *counts = arena_alloc(a, (h->n_bounds + 1) * sizeof *counts);
	if (!w || !bounds || !counts)
		return NULL;
	handoff__wire__histogram__init(w);
	memcpy(bounds, h->bounds, h->n_bounds * sizeof *bounds);
	memcpy(counts, h->counts, (h->n_bounds + 1) * sizeof *counts);
	w->n_bounds = h->n_bounds;
	w->bounds = bounds;
	w->n_counts = h->n_bounds + 1;
	w->counts = counts;
	w->sum = h->sum;
	return w;
}

int telemetry_snapshot(const struct telemetry *tm, struct arena *a,
		       Handoff__Wire__ProcessCounters **out)
{
	Handoff__Wire__ProcessCounters *p = arena_alloc(a, sizeof *p);
	if (!p)
		return ENOMEM;
	handoff__wire__process_counters__init(p);
	p->publish_stored = tm->publish[PUBLISH_STORED];
	p->publish_duplicate = tm->publish[PUBLISH_DUPLICATE];
	p->publish_refused_full = tm->publish[PUBLISH_REFUSED_FULL];
	p->publish_refused_limit = tm->publish[PUBLISH_REFUSED_LIMIT];
	p->publish_refused_invalid = tm->publish[PUBLISH_REFUSED_INVALID];
	p->publish_denied = tm->publish[PUBLISH_DENIED];
	p->publish_failed = tm->publish[PUBLISH_FAILED];
	p->turns = tm->turns;
	p->publish_confirm_seconds = histogram_copy(&tm->confirm_s, a);
	p->commit_seconds = histogram_copy(&tm->commit_s, a);
	p->turn_requests = histogram_copy(&tm->turn_requests, a);
	if (!p->publish_confirm_seconds || !p->commit_seconds ||
	    !p->turn_requests)
		return ENOMEM;
	*out = p;
	return 0;
}
