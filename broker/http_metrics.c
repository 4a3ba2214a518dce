/* http_metrics.c — see http_metrics.h. */
#include "http_metrics.h"

#include <stdio.h>
#include <string.h>

#include "prom.h"

typedef Handoff__Wire__SubscriptionStats SubStats;

/* A gauge (or counter) with one sample per subscription. */
static void per_sub(struct prom *p, const Handoff__Wire__StatsReply *s,
		    const char *name, enum prom_type type, const char *help,
		    double (*value)(const SubStats *))
{
	prom_family(p, name, type, help);
	for (size_t i = 0; i < s->n_subscriptions; i++) {
		const SubStats *ss = s->subscriptions[i];
		struct prom_label l[] = { { "topic", ss->topic },
					  { "subscription", ss->name } };
		prom_sample(p, name, l, 2, value(ss));
	}
}

static double ready(const SubStats *s)
{
	return (double)s->ready;
}
static double delayed(const SubStats *s)
{
	return (double)s->delayed;
}
static double leased(const SubStats *s)
{
	return (double)s->leased;
}
static double dead(const SubStats *s)
{
	return (double)s->dead;
}
static double paused(const SubStats *s)
{
	return s->paused ? 1 : 0;
}
static double oldest_age(const SubStats *s)
{
	return (double)s->oldest_ready_age_ms / 1000.0;
}
static double leases(const SubStats *s)
{
	return (double)s->delivered;
}

static void deliveries(struct prom *p, const Handoff__Wire__StatsReply *s)
{
	const char *name = "handoff_deliveries_total";
	prom_family(p, name, PROM_COUNTER,
		    "Deliveries that ended an attempt, by outcome, since the "
		    "subscription was created (kept in the store: survives "
		    "restarts). acked, nacked, expired (lease ran out), "
		    "dead_lettered, replayed (from the dead letters), purged "
		    "(dead letters removed).");
	for (size_t i = 0; i < s->n_subscriptions; i++) {
		const SubStats *ss = s->subscriptions[i];
		const struct {
			const char *outcome;
			uint64_t v;
		} o[] = { { "acked", ss->acked },
			  { "nacked", ss->nacked },
			  { "expired", ss->expired },
			  { "dead_lettered", ss->dead_lettered },
			  { "replayed", ss->replayed },
			  { "purged", ss->purged } };
		for (size_t k = 0; k < sizeof o / sizeof o[0]; k++) {
			struct prom_label l[] = {
				{ "topic", ss->topic },
				{ "subscription", ss->name },
				{ "outcome", o[k].outcome },
			};
			prom_sample(p, name, l, 3, (double)o[k].v);
		}
	}
}

static void push_state(struct prom *p, const Handoff__Wire__StatsReply *s)
{
	static const char *const states[] = { "starting", "healthy", "failing",
					      "probing" };
	const char *name = "handoff_push_endpoint_state";
	prom_family(p, name, PROM_GAUGE,
		    "Push subscriptions only: 1 for the endpoint's current "
		    "state (starting, healthy, failing, probing), 0 for the "
		    "others.");
	for (size_t i = 0; i < s->n_subscriptions; i++) {
		const SubStats *ss = s->subscriptions[i];
		if (!ss->push_url || !ss->push_url[0])
			continue;
		for (size_t k = 0; k < sizeof states / sizeof states[0]; k++) {
			struct prom_label l[] = {
				{ "topic", ss->topic },
				{ "subscription", ss->name },
				{ "state", states[k] },
			};
			bool on = ss->push_state &&
				  strcmp(ss->push_state, states[k]) == 0;
			prom_sample(p, name, l, 3, on ? 1 : 0);
		}
	}
}

static void publishes(struct prom *p, const Handoff__Wire__StatsReply *s)
{
	const Handoff__Wire__ProcessCounters *c = s->process;
	const char *name = "handoff_publish_total";
	prom_family(p, name, PROM_COUNTER,
		    "Events published since the broker started, by result: "
		    "stored, duplicate (idempotency key seen: not stored "
		    "again), refused_full (storage headroom reached), "
		    "refused_limit (a limit such as max_backlog), "
		    "refused_invalid (bad request, no subscriptions), denied "
		    "(access control), failed (store error).");
	const struct {
		const char *result;
		uint64_t v;
	} r[] = { { "stored", c ? c->publish_stored : 0 },
		  { "duplicate", c ? c->publish_duplicate : 0 },
		  { "refused_full", c ? c->publish_refused_full : 0 },
		  { "refused_limit", c ? c->publish_refused_limit : 0 },
		  { "refused_invalid", c ? c->publish_refused_invalid : 0 },
		  { "denied", c ? c->publish_denied : 0 },
		  { "failed", c ? c->publish_failed : 0 } };
	for (size_t k = 0; k < sizeof r / sizeof r[0]; k++) {
		struct prom_label l[] = { { "result", r[k].result } };
		prom_sample(p, name, l, 1, (double)r[k].v);
	}
}

static void histogram(struct prom *p, const char *name, const char *help,
		      const Handoff__Wire__Histogram *h)
{
	if (!h || h->n_counts != h->n_bounds + 1)
		return;
	prom_family(p, name, PROM_HISTOGRAM, help);
	prom_histogram(p, name, NULL, 0, h->bounds, h->counts, h->n_bounds,
		       h->sum);
}

static void gauge(struct prom *p, const char *name, const char *help, double v)
{
	prom_family(p, name, PROM_GAUGE, help);
	prom_sample(p, name, NULL, 0, v);
}

void http_metrics_render(const Handoff__Wire__StatsReply *s,
			 struct http_out *out)
{
	struct prom p;
	prom_init(&p);
	char proto[16], format[16];
	snprintf(proto, sizeof proto, "%d",
		 HANDOFF__WIRE__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT);
	snprintf(format, sizeof format, "%u", s->store_format);
	struct prom_label build[] = {
		{ "version", s->version ? s->version : "" },
		{ "protocol", proto },
		{ "store_format", format },
	};
	prom_family(&p, "handoff_build_info", PROM_GAUGE,
		    "Always 1: the broker's version, wire protocol version "
		    "and on-disk format version.");
	prom_sample(&p, "handoff_build_info", build, 3, 1);
	gauge(&p, "handoff_uptime_seconds", "Seconds since the broker started.",
	      (double)s->uptime_ms / 1000.0);

	per_sub(&p, s, "handoff_subscription_ready_messages", PROM_GAUGE,
		"Deliveries that a fetch would get now (due, not leased).",
		ready);
	per_sub(&p, s, "handoff_subscription_delayed_messages", PROM_GAUGE,
		"Deliveries waiting for a retry time (backoff) before they "
		"become ready.",
		delayed);
	per_sub(&p, s, "handoff_subscription_leased_messages", PROM_GAUGE,
		"Deliveries leased to a consumer, awaiting ack, nack or "
		"expiry.",
		leased);
	per_sub(&p, s, "handoff_subscription_dead_letters", PROM_GAUGE,
		"Deliveries in the subscription's dead letters.", dead);
	per_sub(&p, s, "handoff_subscription_paused", PROM_GAUGE,
		"1 while the subscription is paused (its fetches get "
		"nothing).",
		paused);
	per_sub(&p, s, "handoff_subscription_oldest_ready_age_seconds",
		PROM_GAUGE,
		"How long the oldest deliverable delivery has waited since "
		"it became due: since its event was published, or since its "
		"retry time for a redelivery. 0 when nothing is ready. Grows "
		"while consumers fall behind, stop, or the subscription is "
		"paused; intended delays (backoff) do not count.",
		oldest_age);
	per_sub(&p, s, "handoff_subscription_leases_total", PROM_COUNTER,
		"Leases handed out (every attempt) since the subscription "
		"was created.",
		leases);
	deliveries(&p, s);
	push_state(&p, s);

	prom_family(&p, "handoff_topic_published_total", PROM_COUNTER,
		    "Events stored for the topic since it was first "
		    "published to (kept in the store).");
	for (size_t i = 0; i < s->n_topics; i++) {
		struct prom_label l[] = { { "topic", s->topics[i]->name } };
		prom_sample(&p, "handoff_topic_published_total", l, 1,
			    (double)s->topics[i]->published);
	}
	publishes(&p, s);
	if (s->process) {
		histogram(&p, "handoff_publish_confirm_seconds",
			  "Publish requests: from the turn taking the request "
			  "to its reply (after the commit) being handed to "
			  "the network thread.",
			  s->process->publish_confirm_seconds);
		histogram(&p, "handoff_commit_duration_seconds",
			  "Duration of each commit that wrote something "
			  "(fsync included).",
			  s->process->commit_seconds);
		histogram(&p, "handoff_turn_requests",
			  "Requests applied together in one turn (one "
			  "transaction).",
			  s->process->turn_requests);
	}
	gauge(&p, "handoff_held_fetches",
	      "Fetches held open waiting for deliveries (long polls).",
	      (double)s->held_fetches);
	gauge(&p, "handoff_held_awaits",
	      "Completion receipts (await) held open waiting for acks.",
	      (double)s->held_awaits);
	gauge(&p, "handoff_store_events",
	      "Events whose payload the store still holds.",
	      (double)s->events_stored);
	gauge(&p, "handoff_store_used_bytes",
	      "Bytes of the store's file in use (up to its last used page).",
	      (double)s->store_used_bytes);
	gauge(&p, "handoff_store_limit_bytes",
	      "Bytes the store may grow to: map_size, or less when the disk "
	      "could not reserve that much.",
	      (double)s->store_limit_bytes);
	gauge(&p, "handoff_store_headroom_bytes",
	      "Bytes publishes may still use before they are refused: free "
	      "space minus the reserve kept for acks and purges (0: "
	      "publishes are refused).",
	      (double)s->store_headroom_bytes);
	gauge(&p, "handoff_store_refusing_publishes",
	      "1 while publishes are refused because storage is full.",
	      s->store_refusing ? 1 : 0);

	memset(out, 0, sizeof *out);
	if (prom_finish(&p, &out->body, &out->len)) {
		http_api_problem(out, 500, "INTERNAL", "out of memory", NULL,
				 1000);
		return;
	}
	out->status = 200;
	out->content_type = PROM_CONTENT_TYPE;
}
