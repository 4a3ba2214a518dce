/*
 * subscriptions.c — creating, deleting and listing subscriptions.
 */
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

int handoff_subscribe(handoff_client *c, const char *topic, const char *name,
		      const handoff_policy *policy, bool *created,
		      handoff_policy *effective)
{
	return handoff_subscribe_push(c, topic, name, policy, NULL, created,
				      effective);
}

int handoff_subscribe_push(handoff_client *c, const char *topic,
			   const char *name, const handoff_policy *policy,
			   const handoff_push_config *push, bool *created,
			   handoff_policy *effective)
{
	Handoff__Wire__PushConfig wpush = HANDOFF__WIRE__PUSH_CONFIG__INIT;
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__SubscribeRequest sub =
		HANDOFF__WIRE__SUBSCRIBE_REQUEST__INIT;
	Handoff__Wire__Policy wp = HANDOFF__WIRE__POLICY__INIT;
	Handoff__Wire__Reply *reply = NULL;
	int rc;

	if (c == NULL || topic == NULL || name == NULL)
		return HANDOFF_EINVAL;
	if (policy != NULL) {
		wp.max_attempts = policy->max_attempts;
		wp.ack_deadline_ms = policy->ack_deadline_ms;
		wp.backoff_min_ms = policy->backoff_min_ms;
		wp.backoff_max_ms = policy->backoff_max_ms;
	}
	sub.topic = (char *)topic; /* only read by packing */
	sub.subscription = (char *)name;
	sub.policy = &wp;
	if (push != NULL && push->url != NULL && push->url[0] != '\0') {
		wpush.url = (char *)push->url;
		wpush.timeout_ms = push->timeout_ms;
		wpush.concurrency = push->concurrency;
		wpush.secret = (char *)(push->secret ? push->secret : "");
		sub.push = &wpush;
	}
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_SUBSCRIBE;
	req.subscribe = &sub;

	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_SUBSCRIBE, 0, &reply);
	if (rc != HANDOFF_OK)
		goto done;
	/* Replies always carry the policy in force. */
	if (reply->subscribe->policy == NULL) {
		rc = HANDOFF_EPROTO;
		goto done;
	}
	if (created != NULL)
		*created = reply->subscribe->created;
	if (effective != NULL)
		hc_copy_policy(reply->subscribe->policy, effective);

done:
	hc_reply_free(reply);
	return rc;
}

int handoff_unsubscribe(handoff_client *c, const char *name)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__UnsubscribeRequest unsub =
		HANDOFF__WIRE__UNSUBSCRIBE_REQUEST__INIT;
	Handoff__Wire__Reply *reply = NULL;
	int rc;

	if (c == NULL || name == NULL)
		return HANDOFF_EINVAL;
	unsub.subscription = (char *)name;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_UNSUBSCRIBE;
	req.unsubscribe = &unsub;
	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY__NOT_SET, 0, &reply);
	hc_reply_free(reply);
	return rc;
}

int hc_copy_pause(const Handoff__Wire__PauseState *w, handoff_pause_state *out)
{
	out->paused = w != NULL;
	out->since_ms = w != NULL ? w->since_ms : 0;
	out->reason = hc_strdup(w != NULL ? w->reason : "");
	out->by = hc_strdup(w != NULL ? w->by : "");
	if (out->reason == NULL || out->by == NULL)
		return HANDOFF_ENOMEM;
	return HANDOFF_OK;
}

void hc_pause_free(handoff_pause_state *p)
{
	free(p->reason);
	free(p->by);
	p->reason = NULL;
	p->by = NULL;
}

/* Pause (reason set) or resume name. */
static int pause_or_resume(handoff_client *c, const char *name,
			   const char *reason, bool *changed)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__PauseRequest pause = HANDOFF__WIRE__PAUSE_REQUEST__INIT;
	Handoff__Wire__ResumeRequest resume =
		HANDOFF__WIRE__RESUME_REQUEST__INIT;
	Handoff__Wire__Reply *reply = NULL;
	int rc;

	if (reason != NULL) {
		pause.subscription = (char *)name; /* only read by packing */
		pause.reason = (char *)reason;
		req.body_case = HANDOFF__WIRE__REQUEST__BODY_PAUSE;
		req.pause = &pause;
	} else {
		resume.subscription = (char *)name;
		req.body_case = HANDOFF__WIRE__REQUEST__BODY_RESUME;
		req.resume = &resume;
	}
	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_PAUSE, 0, &reply);
	if (rc == HANDOFF_OK && changed != NULL)
		*changed = reply->pause->changed;
	hc_reply_free(reply);
	return rc;
}

int handoff_pause(handoff_client *c, const char *name, const char *reason,
		  bool *changed)
{
	if (c == NULL || name == NULL || reason == NULL)
		return HANDOFF_EINVAL;
	return pause_or_resume(c, name, reason, changed);
}

int handoff_resume(handoff_client *c, const char *name, bool *changed)
{
	if (c == NULL || name == NULL)
		return HANDOFF_EINVAL;
	return pause_or_resume(c, name, NULL, changed);
}

void handoff_subscriptions_free(handoff_subscription_info *s, size_t n)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(s[i].name);
		free(s[i].topic);
		hc_pause_free(&s[i].pause);
		free(s[i].push_url);
		free(s[i].push_state);
	}
	free(s);
}

int handoff_list_subscriptions(handoff_client *c,
			       handoff_subscription_info **out, size_t *n)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__ListSubscriptionsRequest list =
		HANDOFF__WIRE__LIST_SUBSCRIPTIONS_REQUEST__INIT;
	Handoff__Wire__Reply *reply = NULL;
	const Handoff__Wire__ListSubscriptionsReply *r;
	handoff_subscription_info *s = NULL;
	size_t count = 0;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (n != NULL)
		*n = 0;
	if (c == NULL || out == NULL || n == NULL)
		return HANDOFF_EINVAL;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_LIST_SUBSCRIPTIONS;
	req.list_subscriptions = &list;

	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_LIST_SUBSCRIPTIONS, 0,
		     &reply);
	if (rc != HANDOFF_OK)
		goto done;
	r = reply->list_subscriptions;
	if (r->n_subscriptions == 0)
		goto done;
	s = calloc(r->n_subscriptions, sizeof(*s));
	if (s == NULL) {
		rc = HANDOFF_ENOMEM;
		goto done;
	}
	for (count = 0; count < r->n_subscriptions; count++) {
		const Handoff__Wire__SubscriptionInfo *w =
			r->subscriptions[count];
		handoff_subscription_info *d = &s[count];

		d->name = hc_strdup(w->name);
		d->topic = hc_strdup(w->topic);
		d->push_url =
			hc_strdup(w->push && w->push->url ? w->push->url : "");
		d->push_state = hc_strdup(w->push_state ? w->push_state : "");
		if (d->name == NULL || d->topic == NULL ||
		    d->push_url == NULL || d->push_state == NULL) {
			count++; /* so the cleanup frees this one too */
			rc = HANDOFF_ENOMEM;
			goto done;
		}
		if (hc_copy_pause(w->paused, &d->pause) != HANDOFF_OK) {
			count++;
			rc = HANDOFF_ENOMEM;
			goto done;
		}
		hc_copy_policy(w->policy, &d->policy);
		d->ready = w->ready;
		d->delayed = w->delayed;
		d->leased = w->leased;
		d->dead = w->dead;
		d->created_ms = w->created_ms;
	}
	*out = s;
	*n = count;
	s = NULL;

done:
	handoff_subscriptions_free(s, count);
	hc_reply_free(reply);
	return rc;
}
