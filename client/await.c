/*
 * await.c — completion receipts: wait until the subscriptions of an event
 * have acked it (handoff_await). The broker holds the request like a long
 * poll; the retry loop of call.c resends it after a lost reply or a broker
 * restart, and the broker evaluates the resent copy afresh.
 */
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

const char *handoff_await_result_name(int result)
{
	switch (result) {
	case HANDOFF_AWAIT_ACKED:
		return "acked";
	case HANDOFF_AWAIT_DEAD_LETTERED:
		return "dead_lettered";
	case HANDOFF_AWAIT_TIMED_OUT:
		return "timed_out";
	default:
		return "unknown";
	}
}

void handoff_await_free(handoff_await_reply *r)
{
	if (r == NULL)
		return;
	free(r->topic);
	free(r->message);
	if (r->subscriptions != NULL) {
		for (size_t i = 0; i < r->n_subscriptions; i++) {
			free(r->subscriptions[i].subscription);
			free(r->subscriptions[i].error);
			free(r->subscriptions[i].consumer);
		}
		free(r->subscriptions);
	}
	free(r);
}

static int copy_await(const Handoff__Wire__Reply *w, handoff_await_reply *r)
{
	const Handoff__Wire__AwaitReply *a = w->await;

	r->event_id = a->event_id;
	r->result = (handoff_await_result)a->result;
	r->topic = hc_strdup(a->topic);
	r->message = hc_strdup(w->message);
	if (r->topic == NULL || r->message == NULL)
		return HANDOFF_ENOMEM;
	if (a->n_subscriptions == 0)
		return HANDOFF_OK;
	r->subscriptions =
		calloc(a->n_subscriptions, sizeof(*r->subscriptions));
	if (r->subscriptions == NULL)
		return HANDOFF_ENOMEM;
	/* Count each entry as it is started so a failure frees it too. */
	for (size_t i = 0; i < a->n_subscriptions; i++) {
		const Handoff__Wire__AwaitState *ws = a->subscriptions[i];
		handoff_await_state *s = &r->subscriptions[i];

		r->n_subscriptions = i + 1;
		s->state = (handoff_delivery_state)ws->state;
		s->attempts = ws->attempts;
		s->dead_reason = (handoff_dead_reason)ws->dead_reason;
		s->done_ms = ws->done_ms;
		s->dead_ms = ws->dead_ms;
		s->paused = ws->paused;
		s->subscription = hc_strdup(ws->subscription);
		s->error = hc_strdup(ws->error);
		s->consumer = hc_strdup(ws->consumer);
		if (s->subscription == NULL || s->error == NULL ||
		    s->consumer == NULL)
			return HANDOFF_ENOMEM;
	}
	return HANDOFF_OK;
}

int handoff_await(handoff_client *c, uint64_t event_id,
		  const char *const *subscriptions, size_t n_subscriptions,
		  uint32_t timeout_ms, handoff_await_reply **out)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__AwaitRequest aw = HANDOFF__WIRE__AWAIT_REQUEST__INIT;
	Handoff__Wire__Reply *reply = NULL;
	handoff_await_reply *r = NULL;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (c == NULL || out == NULL ||
	    (subscriptions == NULL && n_subscriptions > 0))
		return HANDOFF_EINVAL;
	for (size_t i = 0; i < n_subscriptions; i++)
		if (subscriptions[i] == NULL)
			return HANDOFF_EINVAL;
	aw.event_id = event_id;
	aw.subscriptions = (char **)subscriptions;
	aw.n_subscriptions = n_subscriptions;
	aw.timeout_ms = timeout_ms;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_AWAIT;
	req.await = &aw;

	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_AWAIT, timeout_ms,
		     &reply);
	if (rc != HANDOFF_OK)
		goto done;
	if (reply->await->event_id != event_id ||
	    (reply->await->result !=
		     HANDOFF__WIRE__AWAIT_RESULT__AWAIT_RESULT_ACKED &&
	     reply->await->result !=
		     HANDOFF__WIRE__AWAIT_RESULT__AWAIT_RESULT_DEAD_LETTERED &&
	     reply->await->result !=
		     HANDOFF__WIRE__AWAIT_RESULT__AWAIT_RESULT_TIMED_OUT)) {
		rc = HANDOFF_EPROTO;
		goto done;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		rc = HANDOFF_ENOMEM;
		goto done;
	}
	rc = copy_await(reply, r);
	if (rc != HANDOFF_OK)
		goto done;
	*out = r;
	r = NULL;

done:
	handoff_await_free(r);
	hc_reply_free(reply);
	return rc;
}
