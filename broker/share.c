/*
 * share.c — turn sharing between subscriptions; see share.h.
 */
#include "share.h"

#include <string.h>

/* The subscription a consumer request works on, and its work units. */
static const char *consumer_work(const Request *r, uint64_t *units)
{
	switch (r->body_case) {
	case HANDOFF__WIRE__REQUEST__BODY_FETCH:
		*units = r->fetch->max_events ? r->fetch->max_events : 1;
		return r->fetch->subscription;
	case HANDOFF__WIRE__REQUEST__BODY_ACK:
		*units = r->ack->n_items;
		return r->ack->subscription;
	case HANDOFF__WIRE__REQUEST__BODY_NACK:
		*units = (uint64_t)r->nack->n_items * NACK_UNITS;
		return r->nack->subscription;
	case HANDOFF__WIRE__REQUEST__BODY_EXTEND:
		*units = r->extend->n_items;
		return r->extend->subscription;
	default:
		return NULL;
	}
}

void share_turn(struct inbox *in)
{
	enum { MAX_SUBS = 64 };
	const char *name[MAX_SUBS];
	uint64_t want[MAX_SUBS] = { 0 }, got[MAX_SUBS] = { 0 }, total = 0;
	size_t n_subs = 0, slot[MAX_TURN_REQUESTS];
	for (size_t i = 0; i < in->n_pend; i++) {
		uint64_t u = 0;
		const char *sub = consumer_work(in->pend[i].req, &u);
		slot[i] = MAX_SUBS;
		if (!sub)
			continue;
		size_t k = 0;
		while (k < n_subs && strcmp(name[k], sub) != 0)
			k++;
		if (k == n_subs) {
			if (n_subs == MAX_SUBS)
				continue; /* past 64 at once: not shared out */
			name[n_subs++] = sub;
		}
		want[k] += u;
		total += u;
		slot[i] = k;
	}
	if (n_subs < 2 || total < SHARE_MIN_UNITS)
		return;
	uint64_t cap[MAX_SUBS];
	for (size_t k = 0; k < n_subs; k++) {
		uint64_t other = 0;
		for (size_t j = 0; j < n_subs; j++)
			if (j != k && want[j] > other)
				other = want[j];
		cap[k] = other > SHARE_MIN_UNITS ? other : SHARE_MIN_UNITS;
	}
	size_t kept = 0;
	for (size_t i = 0; i < in->n_pend; i++) {
		struct pending *p = &in->pend[i];
		size_t k = slot[i];
		if (k < MAX_SUBS) {
			uint64_t u = 0;
			consumer_work(p->req, &u);
			if (got[k] > 0 && got[k] + u > cap[k]) {
				in->deferred[in->n_deferred++] =
					(struct deferred){ p->ctrl, p->body,
							   p->len, p->caller };
				continue;
			}
			got[k] += u;
		}
		in->pend[kept++] = *p;
	}
	if (kept < in->n_pend)
		in->deferred_total += in->n_pend - kept;
	in->n_pend = kept;
}
