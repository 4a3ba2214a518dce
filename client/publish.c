/*
 * publish.c — handoff_publish: one request carrying a batch of events that
 * the broker stores all-or-nothing. Every event without an idempotency key
 * gets a random one here, once, before the first send, so that each resend
 * of the same bytes is recognised by the broker as the same publish.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "client_internal.h"

#define IDEMPOTENCY_KEY_BYTES 12
/* 12 hex digits of unix ms, '-', 24 hex digits of randomness, NUL */
#define IDEMPOTENCY_KEY_LEN (12 + 1 + 2 * IDEMPOTENCY_KEY_BYTES + 1)

typedef char idempotency_key[IDEMPOTENCY_KEY_LEN];

/*
 * A unique key that sorts by time: the broker keeps idempotency records in
 * key order, so time-ordered keys are appended (one page per commit) where
 * random ones would each dirty a random page of the tree.
 */
static void make_key(idempotency_key out)
{
	unsigned char rnd[IDEMPOTENCY_KEY_BYTES];
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	unsigned long long ms = (unsigned long long)ts.tv_sec * 1000ull +
				(unsigned long long)ts.tv_nsec / 1000000ull;
	snprintf(out, 14, "%012llx-", ms & 0xffffffffffffull);
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(out + 13, IDEMPOTENCY_KEY_LEN - 13, rnd, sizeof(rnd));
}

/* Checks the events and counts their headers (for one allocation). */
static int check_events(const handoff_event *events, size_t n,
			size_t *n_headers)
{
	size_t total = 0;

	for (size_t i = 0; i < n; i++) {
		const handoff_event *e = &events[i];

		if (e->payload == NULL && e->payload_len > 0)
			return HANDOFF_EINVAL;
		if (e->headers == NULL && e->n_headers > 0)
			return HANDOFF_EINVAL;
		for (size_t j = 0; j < e->n_headers; j++) {
			if (e->headers[j].name == NULL ||
			    e->headers[j].value == NULL)
				return HANDOFF_EINVAL;
		}
		if (e->n_headers > SIZE_MAX - total)
			return HANDOFF_EINVAL;
		total += e->n_headers;
	}
	*n_headers = total;
	return HANDOFF_OK;
}

static int check_reply(const Handoff__Wire__PublishReply *r, size_t n)
{
	if (r->n_event_ids != n)
		return HANDOFF_EPROTO;
	/* An all-false list may be left out entirely. */
	if (r->n_duplicates != n && r->n_duplicates != 0)
		return HANDOFF_EPROTO;
	return HANDOFF_OK;
}

int handoff_publish(handoff_client *c, const char *topic,
		    const handoff_event *events, size_t n, uint64_t *event_ids,
		    bool *duplicates)
{
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__PublishRequest pub =
		HANDOFF__WIRE__PUBLISH_REQUEST__INIT;
	Handoff__Wire__Reply *reply = NULL;
	Handoff__Wire__PublishEvent *ev = NULL, **ev_ptrs = NULL;
	Handoff__Wire__Header *hdr = NULL, **hdr_ptrs = NULL;
	idempotency_key *keys = NULL;
	size_t n_headers = 0, next_header = 0;
	int rc;

	if (c == NULL || topic == NULL || events == NULL || n == 0 ||
	    event_ids == NULL)
		return HANDOFF_EINVAL;
	rc = check_events(events, n, &n_headers);
	if (rc != HANDOFF_OK)
		return rc;

	ev = calloc(n, sizeof(*ev));
	ev_ptrs = calloc(n, sizeof(*ev_ptrs));
	keys = calloc(n, sizeof(*keys));
	hdr = calloc(n_headers ? n_headers : 1, sizeof(*hdr));
	hdr_ptrs = calloc(n_headers ? n_headers : 1, sizeof(*hdr_ptrs));
	if (ev == NULL || ev_ptrs == NULL || keys == NULL || hdr == NULL ||
	    hdr_ptrs == NULL) {
		rc = HANDOFF_ENOMEM;
		goto done;
	}

	/* The wire structs only borrow the caller's strings: packing reads
	 * them, nothing writes through these casts. */
	for (size_t i = 0; i < n; i++) {
		const handoff_event *e = &events[i];
		Handoff__Wire__PublishEvent init =
			HANDOFF__WIRE__PUBLISH_EVENT__INIT;

		ev[i] = init;
		ev[i].payload.data = (uint8_t *)e->payload;
		ev[i].payload.len = e->payload_len;
		ev[i].key = (char *)(e->key ? e->key : "");
		if (e->idempotency_key != NULL) {
			ev[i].idempotency_key = (char *)e->idempotency_key;
		} else {
			make_key(keys[i]);
			ev[i].idempotency_key = keys[i];
		}
		ev[i].headers = &hdr_ptrs[next_header];
		ev[i].n_headers = e->n_headers;
		for (size_t j = 0; j < e->n_headers; j++) {
			Handoff__Wire__Header hinit =
				HANDOFF__WIRE__HEADER__INIT;

			hdr[next_header] = hinit;
			hdr[next_header].name = (char *)e->headers[j].name;
			hdr[next_header].value = (char *)e->headers[j].value;
			hdr_ptrs[next_header] = &hdr[next_header];
			next_header++;
		}
		ev_ptrs[i] = &ev[i];
	}
	pub.topic = (char *)topic;
	pub.events = ev_ptrs;
	pub.n_events = n;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_PUBLISH;
	req.publish = &pub;

	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_PUBLISH, 0, &reply);
	if (rc != HANDOFF_OK)
		goto done;
	rc = check_reply(reply->publish, n);
	if (rc != HANDOFF_OK)
		goto done;
	for (size_t i = 0; i < n; i++) {
		event_ids[i] = reply->publish->event_ids[i];
		if (duplicates != NULL)
			duplicates[i] = reply->publish->n_duplicates > 0 &&
					reply->publish->duplicates[i];
	}

done:
	hc_reply_free(reply);
	free(hdr_ptrs);
	free(hdr);
	free(keys);
	free(ev_ptrs);
	free(ev);
	return rc;
}
