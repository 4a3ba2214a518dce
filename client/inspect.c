/*
 * inspect.c — read-only views of the broker: where one event is for each
 * subscription (trace), and the broker's counters and rates (stats).
 */
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

/* ---- trace ------------------------------------------------------------ */

void handoff_trace_free(handoff_trace *t)
{
	if (t == NULL)
		return;
	free(t->topic);
	free(t->key);
	free(t->idempotency_key);
	if (t->subscriptions != NULL) {
		for (size_t i = 0; i < t->n_subscriptions; i++) {
			handoff_subscription_trace *s = &t->subscriptions[i];

			free(s->subscription);
			free(s->consumer);
			free(s->error);
			hc_attempts_free(s->history, s->n_history);
		}
		free(t->subscriptions);
	}
	free(t);
}

static int copy_subscription_trace(const Handoff__Wire__SubscriptionTrace *w,
				   handoff_subscription_trace *s)
{
	s->state = (handoff_delivery_state)w->state;
	s->lease_deadline_ms = w->lease_deadline_ms;
	s->due_ms = w->due_ms;
	s->done_ms = w->done_ms;
	s->dead_reason = (handoff_dead_reason)w->dead_reason;
	s->replays = w->replays;
	s->paused = w->paused;
	s->subscription = hc_strdup(w->subscription);
	s->consumer = hc_strdup(w->consumer);
	s->error = hc_strdup(w->error);
	if (s->subscription == NULL || s->consumer == NULL || s->error == NULL)
		return HANDOFF_ENOMEM;
	if (hc_copy_attempts(w->history, w->n_history, &s->history) !=
	    HANDOFF_OK)
		return HANDOFF_ENOMEM;
	s->n_history = w->n_history;
	return HANDOFF_OK;
}

static int copy_trace(const Handoff__Wire__TraceReply *w, handoff_trace *t)
{
	t->event_id = w->event_id;
	t->published_ms = w->published_ms;
	t->payload_bytes = w->payload_bytes;
	t->payload_removed = w->payload_removed;
	t->corrupt = w->corrupt;
	t->topic = hc_strdup(w->topic);
	t->key = hc_strdup(w->key);
	t->idempotency_key = hc_strdup(w->idempotency_key);
	if (t->topic == NULL || t->key == NULL || t->idempotency_key == NULL)
		return HANDOFF_ENOMEM;
	if (w->n_subscriptions == 0)
		return HANDOFF_OK;
	t->subscriptions =
		calloc(w->n_subscriptions, sizeof(*t->subscriptions));
	if (t->subscriptions == NULL)
		return HANDOFF_ENOMEM;
	/* Count each entry as it is started so a failure frees it too. */
	for (size_t i = 0; i < w->n_subscriptions; i++) {
		t->n_subscriptions = i + 1;
		if (copy_subscription_trace(w->subscriptions[i],
					    &t->subscriptions[i]) != HANDOFF_OK)
			return HANDOFF_ENOMEM;
	}
	return HANDOFF_OK;
}

int handoff_trace_event(handoff_client *c, uint64_t event_id,
			handoff_trace **out)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__TraceRequest trace = HANDOFF__WIRE__TRACE_REQUEST__INIT;
	Handoff__Wire__Reply *reply = NULL;
	handoff_trace *t = NULL;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (c == NULL || out == NULL)
		return HANDOFF_EINVAL;
	trace.event_id = event_id;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_TRACE;
	req.trace = &trace;

	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_TRACE, 0, &reply);
	if (rc != HANDOFF_OK)
		goto done;
	if (reply->trace->event_id != event_id) {
		rc = HANDOFF_EPROTO;
		goto done;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		rc = HANDOFF_ENOMEM;
		goto done;
	}
	rc = copy_trace(reply->trace, t);
	if (rc != HANDOFF_OK)
		goto done;
	*out = t;
	t = NULL;

done:
	handoff_trace_free(t);
	hc_reply_free(reply);
	return rc;
}

/* ---- stats ------------------------------------------------------------ */

void handoff_stats_free(handoff_stats *s)
{
	if (s == NULL)
		return;
	free(s->version);
	if (s->topics != NULL) {
		for (size_t i = 0; i < s->n_topics; i++)
			free(s->topics[i].name);
		free(s->topics);
	}
	if (s->subscriptions != NULL) {
		for (size_t i = 0; i < s->n_subscriptions; i++) {
			free(s->subscriptions[i].name);
			free(s->subscriptions[i].topic);
			hc_pause_free(&s->subscriptions[i].pause);
			free(s->subscriptions[i].push_url);
			free(s->subscriptions[i].push_state);
			free(s->subscriptions[i].push_last_error);
		}
		free(s->subscriptions);
	}
	free(s);
}

static int copy_topics(const Handoff__Wire__StatsReply *w, handoff_stats *s)
{
	if (w->n_topics == 0)
		return HANDOFF_OK;
	s->topics = calloc(w->n_topics, sizeof(*s->topics));
	if (s->topics == NULL)
		return HANDOFF_ENOMEM;
	for (size_t i = 0; i < w->n_topics; i++) {
		const Handoff__Wire__TopicStats *wt = w->topics[i];
		handoff_topic_stats *t = &s->topics[i];

		s->n_topics = i + 1;
		t->published = wt->published;
		t->publish_rate = wt->publish_rate;
		t->subscriptions = wt->subscriptions;
		t->name = hc_strdup(wt->name);
		if (t->name == NULL)
			return HANDOFF_ENOMEM;
	}
	return HANDOFF_OK;
}

static int copy_subscription_stats(const Handoff__Wire__StatsReply *w,
				   handoff_stats *s)
{
	if (w->n_subscriptions == 0)
		return HANDOFF_OK;
	s->subscriptions =
		calloc(w->n_subscriptions, sizeof(*s->subscriptions));
	if (s->subscriptions == NULL)
		return HANDOFF_ENOMEM;
	for (size_t i = 0; i < w->n_subscriptions; i++) {
		const Handoff__Wire__SubscriptionStats *ws =
			w->subscriptions[i];
		handoff_subscription_stats *d = &s->subscriptions[i];

		s->n_subscriptions = i + 1;
		d->ready = ws->ready;
		d->delayed = ws->delayed;
		d->leased = ws->leased;
		d->dead = ws->dead;
		d->delivered = ws->delivered;
		d->acked = ws->acked;
		d->nacked = ws->nacked;
		d->expired = ws->expired;
		d->dead_lettered = ws->dead_lettered;
		d->replayed = ws->replayed;
		d->purged = ws->purged;
		d->ack_rate = ws->ack_rate;
		d->deliver_rate = ws->deliver_rate;
		d->name = hc_strdup(ws->name);
		d->topic = hc_strdup(ws->topic);
		d->push_url = hc_strdup(ws->push_url ? ws->push_url : "");
		d->push_state = hc_strdup(ws->push_state ? ws->push_state : "");
		d->push_last_error = hc_strdup(
			ws->push_last_error ? ws->push_last_error : "");
		if (d->name == NULL || d->topic == NULL ||
		    d->push_url == NULL || d->push_state == NULL ||
		    d->push_last_error == NULL)
			return HANDOFF_ENOMEM;
		if (hc_copy_pause(ws->paused, &d->pause) != HANDOFF_OK)
			return HANDOFF_ENOMEM;
	}
	return HANDOFF_OK;
}

int handoff_get_stats(handoff_client *c, handoff_stats **out)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__StatsRequest stats = HANDOFF__WIRE__STATS_REQUEST__INIT;
	Handoff__Wire__Reply *reply = NULL;
	const Handoff__Wire__StatsReply *w;
	handoff_stats *s = NULL;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (c == NULL || out == NULL)
		return HANDOFF_EINVAL;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_STATS;
	req.stats = &stats;

	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_STATS, 0, &reply);
	if (rc != HANDOFF_OK)
		goto done;
	w = reply->stats;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		rc = HANDOFF_ENOMEM;
		goto done;
	}
	s->uptime_ms = w->uptime_ms;
	s->events_stored = w->events_stored;
	s->store_used_bytes = w->store_used_bytes;
	s->store_map_bytes = w->store_map_bytes;
	s->held_fetches = w->held_fetches;
	s->held_awaits = w->held_awaits;
	s->version = hc_strdup(w->version);
	if (s->version == NULL) {
		rc = HANDOFF_ENOMEM;
		goto done;
	}
	rc = copy_topics(w, s);
	if (rc == HANDOFF_OK)
		rc = copy_subscription_stats(w, s);
	if (rc != HANDOFF_OK)
		goto done;
	*out = s;
	s = NULL;

done:
	handoff_stats_free(s);
	hc_reply_free(reply);
	return rc;
}

void handoff_health_free(handoff_health *h)
{
	if (h == NULL)
		return;
	free(h->reason);
	free(h->version);
	free(h);
}

int handoff_get_health(handoff_client *c, handoff_health **out)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__HealthRequest health =
		HANDOFF__WIRE__HEALTH_REQUEST__INIT;
	Handoff__Wire__Reply *reply = NULL;
	const Handoff__Wire__HealthReply *w;
	handoff_health *h = NULL;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (c == NULL || out == NULL)
		return HANDOFF_EINVAL;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_HEALTH;
	req.health = &health;

	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_HEALTH, 0, &reply);
	if (rc != HANDOFF_OK)
		goto done;
	w = reply->health;
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		rc = HANDOFF_ENOMEM;
		goto done;
	}
	h->live = w->live;
	h->ready = w->ready;
	h->store_open = w->store_open;
	h->recovered = w->recovered;
	h->storage_full = w->storage_full;
	h->stopping = w->stopping;
	h->loop_age_ms = w->loop_age_ms;
	h->recovered_leases = w->recovered_leases;
	h->reason = hc_strdup(w->reason);
	h->version = hc_strdup(w->version);
	if (h->reason == NULL || h->version == NULL) {
		rc = HANDOFF_ENOMEM;
		goto done;
	}
	*out = h;
	h = NULL;

done:
	handoff_health_free(h);
	hc_reply_free(reply);
	return rc;
}
