/*
 * consume.c — leasing deliveries (fetch), settling them (ack, nack,
 * release) and keeping them (extend).
 *
 * A fetch carries the handle's consumer name and a fetch_seq that grows by
 * one per handoff_fetch call, not per resend: a resent fetch is the same
 * bytes, so the broker hands back the very deliveries whose reply was lost
 * instead of leasing new ones that nobody would ever see.
 */
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

static void delivery_fini(handoff_delivery *d)
{
	free(d->topic);
	free(d->payload);
	free(d->key);
	free(d->headers); /* one block with its strings */
}

void handoff_deliveries_free(handoff_delivery *d, size_t n)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		delivery_fini(&d[i]);
	free(d);
}

static int copy_delivery(const Handoff__Wire__Delivery *w, handoff_delivery *d)
{
	d->event_id = w->event_id;
	d->attempt = w->attempt;
	d->lease_token = w->lease_token;
	d->lease_deadline_ms = w->lease_deadline_ms;
	d->published_ms = w->published_ms;
	d->payload_len = w->payload.data != NULL ? w->payload.len : 0;
	d->topic = hc_strdup(w->topic);
	d->key = hc_strdup(w->key);
	d->payload = hc_memdup(&w->payload);
	if (d->topic == NULL || d->key == NULL || d->payload == NULL)
		return HANDOFF_ENOMEM;
	if (hc_copy_headers(w->headers, w->n_headers, &d->headers) !=
	    HANDOFF_OK)
		return HANDOFF_ENOMEM;
	d->n_headers = w->n_headers;
	return HANDOFF_OK;
}

int handoff_fetch(handoff_client *c, const char *sub, size_t max,
		  uint32_t wait_ms, handoff_delivery **out, size_t *n)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__FetchRequest fetch = HANDOFF__WIRE__FETCH_REQUEST__INIT;
	Handoff__Wire__Reply *reply = NULL;
	const Handoff__Wire__FetchReply *r;
	handoff_delivery *d = NULL;
	size_t count = 0;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (n != NULL)
		*n = 0;
	if (c == NULL || sub == NULL || out == NULL || n == NULL || max == 0)
		return HANDOFF_EINVAL;

	c->last_fetch_paused = false;
	fetch.subscription = (char *)sub; /* only read by packing */
	fetch.max_events = max > UINT32_MAX ? UINT32_MAX : (uint32_t)max;
	fetch.wait_ms = wait_ms;
	fetch.consumer = c->consumer;
	fetch.fetch_seq = ++c->fetch_seq;
	fetch.max_bytes = c->max_reply_bytes;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_FETCH;
	req.fetch = &fetch;

	/* The long poll is added to the deadline and to each attempt. */
	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_FETCH, wait_ms,
		     &reply);
	if (rc != HANDOFF_OK)
		goto done;
	r = reply->fetch;
	c->last_fetch_paused = r->paused && r->n_deliveries == 0;
	if (r->n_deliveries > fetch.max_events) {
		rc = HANDOFF_EPROTO;
		goto done;
	}
	if (r->n_deliveries == 0)
		goto done;
	d = calloc(r->n_deliveries, sizeof(*d));
	if (d == NULL) {
		rc = HANDOFF_ENOMEM;
		goto done;
	}
	for (count = 0; count < r->n_deliveries; count++) {
		rc = copy_delivery(r->deliveries[count], &d[count]);
		if (rc != HANDOFF_OK) {
			count++; /* free the half-copied one too */
			goto done;
		}
	}
	*out = d;
	*n = count;
	d = NULL;

done:
	handoff_deliveries_free(d, count);
	hc_reply_free(reply);
	return rc;
}

/* Per-item statuses of an ack/nack reply into results (may be NULL). */
static int copy_item_statuses(const Handoff__Wire__ItemsReply *r, size_t n,
			      int *results)
{
	if (r->n_statuses != n)
		return HANDOFF_EPROTO;
	/* Check all before writing any, so results is untouched on error. */
	for (size_t i = 0; i < n; i++) {
		if (hc_map_status((int)r->statuses[i]) < 0)
			return HANDOFF_EPROTO;
	}
	if (results != NULL) {
		for (size_t i = 0; i < n; i++)
			results[i] = hc_map_status((int)r->statuses[i]);
	}
	return HANDOFF_OK;
}

/*
 * Ack (nacks == NULL) or nack (acks == NULL; release: give the leases back
 * uncounted) n items of sub in one request;
 * per-item statuses into results (may be NULL) as handoff_ack() says. The
 * wire items point into the caller's items, which packing only reads.
 */
static int settle(handoff_client *c, const char *sub,
		  const handoff_ack_item *acks, const handoff_nack_item *nacks,
		  bool release, size_t n, int *results)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__AckRequest ack = HANDOFF__WIRE__ACK_REQUEST__INIT;
	Handoff__Wire__NackRequest nack = HANDOFF__WIRE__NACK_REQUEST__INIT;
	Handoff__Wire__Reply *reply = NULL;
	Handoff__Wire__AckItem *aw = NULL, **aptrs = NULL;
	Handoff__Wire__NackItem *nw = NULL, **nptrs = NULL;
	int rc;

	if (c == NULL || sub == NULL || (acks == NULL && nacks == NULL) ||
	    n == 0)
		return HANDOFF_EINVAL;
	if (nacks != NULL) {
		nw = calloc(n, sizeof(*nw));
		nptrs = calloc(n, sizeof(*nptrs));
	} else {
		aw = calloc(n, sizeof(*aw));
		aptrs = calloc(n, sizeof(*aptrs));
	}
	if (nacks != NULL ? nw == NULL || nptrs == NULL :
			    aw == NULL || aptrs == NULL) {
		rc = HANDOFF_ENOMEM;
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		if (nacks != NULL) {
			const handoff_nack_item *it = &nacks[i];
			Handoff__Wire__NackItem init =
				HANDOFF__WIRE__NACK_ITEM__INIT;

			nw[i] = init;
			nw[i].event_id = it->event_id;
			nw[i].lease_token = it->lease_token;
			nw[i].delay_ms = it->delay_ms;
			nw[i].permanent = it->permanent;
			nw[i].reason = (char *)(it->reason ? it->reason : "");
			nptrs[i] = &nw[i];
		} else {
			Handoff__Wire__AckItem init =
				HANDOFF__WIRE__ACK_ITEM__INIT;

			aw[i] = init;
			aw[i].event_id = acks[i].event_id;
			aw[i].lease_token = acks[i].lease_token;
			aptrs[i] = &aw[i];
		}
	}
	if (nacks != NULL) {
		nack.subscription = (char *)sub;
		nack.items = nptrs;
		nack.n_items = n;
		nack.release = release;
		req.body_case = HANDOFF__WIRE__REQUEST__BODY_NACK;
		req.nack = &nack;
	} else {
		ack.subscription = (char *)sub;
		ack.items = aptrs;
		ack.n_items = n;
		req.body_case = HANDOFF__WIRE__REQUEST__BODY_ACK;
		req.ack = &ack;
	}

	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_ITEMS, 0, &reply);
	if (rc == HANDOFF_OK)
		rc = copy_item_statuses(reply->items, n, results);

done:
	hc_reply_free(reply);
	free(nptrs);
	free(nw);
	free(aptrs);
	free(aw);
	return rc;
}

int handoff_ack(handoff_client *c, const char *sub,
		const handoff_ack_item *items, size_t n, int *results)
{
	if (items == NULL)
		return HANDOFF_EINVAL;
	return settle(c, sub, items, NULL, false, n, results);
}

int handoff_nack(handoff_client *c, const char *sub,
		 const handoff_nack_item *items, size_t n, int *results)
{
	if (items == NULL)
		return HANDOFF_EINVAL;
	return settle(c, sub, NULL, items, false, n, results);
}

int handoff_release(handoff_client *c, const char *sub,
		    const handoff_nack_item *items, size_t n, int *results)
{
	if (items == NULL)
		return HANDOFF_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (items[i].delay_ms || items[i].permanent)
			return HANDOFF_EINVAL;
	return settle(c, sub, NULL, items, true, n, results);
}

int handoff_extend(handoff_client *c, const char *sub,
		   const handoff_ack_item *items, size_t n, uint32_t extend_ms,
		   int *results)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__ExtendRequest ext = HANDOFF__WIRE__EXTEND_REQUEST__INIT;
	Handoff__Wire__Reply *reply = NULL;
	Handoff__Wire__ExtendItem *w = NULL, **ptrs = NULL;
	int rc;

	if (c == NULL || sub == NULL || items == NULL || n == 0 ||
	    extend_ms == 0 || extend_ms > HANDOFF_MAX_EXTEND_MS)
		return HANDOFF_EINVAL;
	w = calloc(n, sizeof(*w));
	ptrs = calloc(n, sizeof(*ptrs));
	if (w == NULL || ptrs == NULL) {
		rc = HANDOFF_ENOMEM;
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		Handoff__Wire__ExtendItem init =
			HANDOFF__WIRE__EXTEND_ITEM__INIT;

		w[i] = init;
		w[i].event_id = items[i].event_id;
		w[i].lease_token = items[i].lease_token;
		ptrs[i] = &w[i];
	}
	ext.subscription = (char *)sub; /* only read by packing */
	ext.items = ptrs;
	ext.n_items = n;
	ext.extend_ms = extend_ms;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_EXTEND;
	req.extend = &ext;

	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_ITEMS, 0, &reply);
	if (rc == HANDOFF_OK)
		rc = copy_item_statuses(reply->items, n, results);

done:
	hc_reply_free(reply);
	free(ptrs);
	free(w);
	return rc;
}
