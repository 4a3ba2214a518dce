/*
 * held.c — held long polls and the fetch resend cache; see held.h.
 */
#include "held.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "replies.h"

void held_mark_ready(struct holds *h, uint32_t sub)
{
	h->ready[(sub % READY_SLOTS) / 8] |= (uint8_t)(1u << (sub % 8));
}

void held_mark_done(struct holds *h, uint64_t event)
{
	uint32_t slot = (uint32_t)(event % READY_SLOTS);
	h->done[slot / 8] |= (uint8_t)(1u << (slot % 8));
	/* After this turn's look (an unsubscribe's drain): the commit clears
	 * the mark, so look next turn. */
	for (size_t i = 0; h->awaits_served && i < h->n_awaits; i++)
		if (h->awaits[i].event == event)
			h->awaits[i].next_check = 0;
}

void held_clear_ready(struct holds *h)
{
	memset(h->ready, 0, sizeof h->ready);
	memset(h->done, 0, sizeof h->done);
}

static bool is_done(const struct holds *h, uint64_t event)
{
	uint32_t slot = (uint32_t)(event % READY_SLOTS);
	return h->done[slot / 8] & (1u << (slot % 8));
}

static bool is_ready(const struct holds *h, uint32_t sub)
{
	return h->ready[(sub % READY_SLOTS) / 8] & (1u << (sub % 8));
}

/* ---- the resend cache ------------------------------------------------- */

static uint32_t cache_slot(const char *consumer)
{
	uint32_t x = 2166136261u;
	for (const char *p = consumer; *p; p++)
		x = (x ^ (uint8_t)*p) * 16777619u;
	return x % FETCH_CACHE_SLOTS;
}

void held_cache_put(struct holds *h, const char *consumer, const char *sub,
		    uint64_t seq, const void *bytes, size_t len)
{
	if (len > FETCH_CACHE_MAX_BYTES)
		return;
	struct cached_fetch *c = &h->cache[cache_slot(consumer)];
	void *copy = malloc(len ? len : 1);
	char *name = strdup(consumer), *subname = strdup(sub);
	if (!copy || !name || !subname) {
		free(copy);
		free(name);
		free(subname);
		return;
	}
	memcpy(copy, bytes, len);
	free(c->consumer);
	free(c->sub);
	free(c->bytes);
	c->consumer = name;
	c->sub = subname;
	c->seq = seq;
	c->bytes = copy;
	c->len = len;
}

const struct cached_fetch *held_cache_get(const struct holds *h,
					  const char *consumer, const char *sub,
					  uint64_t seq)
{
	const struct cached_fetch *c = &h->cache[cache_slot(consumer)];
	if (c->consumer && c->seq == seq &&
	    strcmp(c->consumer, consumer) == 0 && strcmp(c->sub, sub) == 0)
		return c;
	return NULL;
}

/* ---- held fetches ----------------------------------------------------- */

static void held_free(struct broker *b, struct held_fetch *h)
{
	free(h->sub);
	free(h->consumer);
	if (h->ctrl)
		pump_send(&b->pump, h->ctrl, NULL, 0);
	memset(h, 0, sizeof *h);
}

static void await_free(struct broker *b, struct held_await *a)
{
	for (size_t i = 0; i < a->n_subs; i++)
		free(a->subs[i]);
	free(a->subs);
	if (a->ctrl)
		pump_send(&b->pump, a->ctrl, NULL, 0);
	memset(a, 0, sizeof *a);
}

void holds_fini(struct broker *b)
{
	struct holds *hs = &b->holds;
	for (size_t i = 0; i < hs->n_awaits; i++)
		await_free(b, &hs->awaits[i]);
	free(hs->awaits);
	hs->awaits = NULL;
	hs->n_awaits = hs->cap_awaits = 0;
	for (size_t i = 0; i < hs->n_held; i++)
		held_free(b, &hs->held[i]);
	free(hs->held);
	hs->held = NULL;
	hs->n_held = hs->cap_held = 0;
	for (size_t i = 0; i < FETCH_CACHE_SLOTS; i++) {
		free(hs->cache[i].consumer);
		free(hs->cache[i].sub);
		free(hs->cache[i].bytes);
	}
	memset(hs->cache, 0, sizeof hs->cache);
}

int held_add(struct holds *hs, const Handoff__Wire__FetchRequest *f, void *ctrl,
	     uint32_t sub_id, uint64_t next_check, bool paused, uint64_t now)
{
	if (hs->n_held == hs->cap_held) {
		size_t cap = hs->cap_held ? hs->cap_held * 2 : 16;
		void *m = realloc(hs->held, cap * sizeof *hs->held);
		if (!m)
			return ENOMEM;
		hs->held = m;
		hs->cap_held = cap;
	}
	struct held_fetch *h = &hs->held[hs->n_held];
	memset(h, 0, sizeof *h);
	h->sub = strdup(f->subscription);
	h->consumer = strdup(f->consumer);
	if (!h->sub || !h->consumer) {
		free(h->sub);
		free(h->consumer);
		return ENOMEM;
	}
	h->ctrl = ctrl;
	h->seq = f->fetch_seq;
	h->sub_id = sub_id;
	h->max = f->max_events ? f->max_events : 1;
	h->max_bytes = f->max_bytes;
	h->deadline = now + f->wait_ms;
	h->paused = paused;
	/* a delivery made ready later in the same turn: look next turn */
	h->next_check = is_ready(hs, sub_id) ? now : next_check;
	hs->n_held++;
	return 0;
}

int held_await_add(struct holds *hs, const Handoff__Wire__AwaitRequest *q,
		   void *ctrl, uint64_t now)
{
	if (hs->n_awaits == hs->cap_awaits) {
		size_t cap = hs->cap_awaits ? hs->cap_awaits * 2 : 16;
		void *m = realloc(hs->awaits, cap * sizeof *hs->awaits);
		if (!m)
			return ENOMEM;
		hs->awaits = m;
		hs->cap_awaits = cap;
	}
	struct held_await *a = &hs->awaits[hs->n_awaits];
	memset(a, 0, sizeof *a);
	if (q->n_subscriptions) {
		a->subs = calloc(q->n_subscriptions, sizeof *a->subs);
		if (!a->subs)
			return ENOMEM;
	}
	for (; a->n_subs < q->n_subscriptions; a->n_subs++) {
		a->subs[a->n_subs] = strdup(q->subscriptions[a->n_subs]);
		if (!a->subs[a->n_subs]) {
			for (size_t i = 0; i < a->n_subs; i++)
				free(a->subs[i]);
			free(a->subs);
			return ENOMEM;
		}
	}
	a->ctrl = ctrl;
	a->event = q->event_id;
	a->deadline = now + q->timeout_ms;
	/* acked (or dead-lettered) later in the same turn: look next turn */
	a->next_check = is_done(hs, q->event_id) ? now : UINT64_MAX;
	hs->n_awaits++;
	return 0;
}

/* Look at the held awaits that may be complete, or whose time is up. */
static int serve_awaits(struct broker *b, struct txn *t)
{
	struct holds *hs = &b->holds;
	hs->awaits_served = true;
	for (size_t i = 0; i < hs->n_awaits; i++) {
		struct held_await *a = &hs->awaits[i];
		a->reply = NULL;
		bool final = a->deadline <= t->now_ms;
		if (!final && !is_done(hs, a->event) &&
		    a->next_check > t->now_ms)
			continue;
		Handoff__Wire__AwaitRequest q =
			HANDOFF__WIRE__AWAIT_REQUEST__INIT;
		q.event_id = a->event;
		q.subscriptions = a->subs;
		q.n_subscriptions = a->n_subs;
		q.timeout_ms = 1; /* still waiting: not "answer at once" */
		Reply *r = codec_new_reply(t->arena);
		bool complete;
		if (!r)
			return ENOMEM;
		b->env.caller = NULL; /* checked when the await came */
		int rc = handlers_await_fill(&b->env, t, &q, true, final, r,
					     &complete);
		if (rc)
			return rc;
		a->next_check = UINT64_MAX;
		if (complete)
			a->reply = r;
	}
	return 0;
}

bool held_takeover(struct broker *b, const Handoff__Wire__FetchRequest *f,
		   void *ctrl)
{
	struct holds *hs = &b->holds;
	for (size_t i = 0; i < hs->n_held; i++) {
		struct held_fetch *h = &hs->held[i];
		if (f->fetch_seq && h->seq == f->fetch_seq &&
		    strcmp(h->consumer, f->consumer) == 0 &&
		    strcmp(h->sub, f->subscription) == 0) {
			pump_send(&b->pump, h->ctrl, NULL, 0);
			h->ctrl = ctrl;
			return true;
		}
	}
	return false;
}

int held_serve(struct broker *b, struct txn *t)
{
	struct holds *hs = &b->holds;
	int rc = serve_awaits(b, t);
	if (rc)
		return rc;
	for (size_t i = 0; i < hs->n_held; i++) {
		struct held_fetch *h = &hs->held[i];
		h->reply = NULL;
		if (!is_ready(hs, h->sub_id) && h->next_check > t->now_ms)
			continue;
		Reply *r = codec_new_reply(t->arena);
		size_t n;
		if (!r)
			return ENOMEM;
		rc = handlers_fetch_fill(&b->env, t, h->sub, h->max,
					 h->max_bytes, h->consumer, r, &n);
		if (rc)
			return rc;
		if (n > 0 || r->status != HANDOFF__WIRE__STATUS__OK) {
			h->reply = r;
			continue;
		}
		h->paused = r->fetch && r->fetch->paused;
		if (h->paused) {
			h->next_check = UINT64_MAX; /* until the resume */
			continue;
		}
		uint64_t due, ev;
		rc = store_ready_first(t, h->sub_id, &due, &ev);
		if (rc && rc != MDB_NOTFOUND)
			return rc;
		h->next_check = rc ? UINT64_MAX : due;
	}
	return 0;
}

/* An empty fetch reply: the wait ran out. */
static Reply *empty_fetch_reply(struct arena *a, bool paused)
{
	Reply *r = codec_new_reply(a);
	Handoff__Wire__FetchReply *fr = r ? arena_alloc(a, sizeof *fr) : NULL;
	if (!fr)
		return r;
	handoff__wire__fetch_reply__init(fr);
	fr->paused = paused;
	r->body_case = HANDOFF__WIRE__REPLY__BODY_FETCH;
	r->fetch = fr;
	return r;
}

void held_finish(struct broker *b, uint64_t now, bool committed)
{
	struct holds *hs = &b->holds;
	size_t w = 0;
	for (size_t i = 0; i < hs->n_held; i++) {
		struct held_fetch *h = &hs->held[i];
		Reply *r = committed ? h->reply : NULL;
		if (!r && h->deadline <= now)
			r = empty_fetch_reply(&b->arena, h->paused);
		if (r) {
			Handoff__Wire__FetchRequest f =
				HANDOFF__WIRE__FETCH_REQUEST__INIT;
			f.consumer = h->consumer;
			f.subscription = h->sub;
			f.fetch_seq = h->seq;
			reply_send(b, h->ctrl, r, &f);
			h->ctrl = NULL;
			held_free(b, h);
			continue;
		}
		h->reply = NULL;
		hs->held[w++] = *h;
	}
	hs->n_held = w;
	hs->awaits_served = false;
	w = 0;
	for (size_t i = 0; i < hs->n_awaits; i++) {
		struct held_await *a = &hs->awaits[i];
		/* A reply from a turn that did not commit may tell of acks
		 * that never happened: it waits for a turn that commits. */
		Reply *r = committed ? a->reply : NULL;
		/* Time is up but no turn could look (a commit failed: a full
		 * store): say so rather than spin on it. Not at shutdown
		 * (now UINT64_MAX): holds_fini drops it, and the client
		 * resends it to the next broker. */
		if (!r && !committed && a->deadline <= now &&
		    now != UINT64_MAX) {
			r = reply_error(
				b, HANDOFF__WIRE__STATUS__INTERNAL,
				"the await could not be evaluated at its "
				"timeout (the store refused a commit); "
				"retry");
			if (r)
				r->retry_after_ms = 1000;
		}
		if (r) {
			reply_send(b, a->ctrl, r, NULL);
			a->ctrl = NULL;
			await_free(b, a);
			continue;
		}
		a->reply = NULL;
		hs->awaits[w++] = *a;
	}
	hs->n_awaits = w;
}

uint64_t held_next_wake(const struct holds *hs)
{
	uint64_t wake = UINT64_MAX;
	for (size_t i = 0; i < hs->n_held; i++) {
		if (hs->held[i].deadline < wake)
			wake = hs->held[i].deadline;
		if (hs->held[i].next_check < wake)
			wake = hs->held[i].next_check;
	}
	for (size_t i = 0; i < hs->n_awaits; i++) {
		if (hs->awaits[i].deadline < wake)
			wake = hs->awaits[i].deadline;
		if (hs->awaits[i].next_check < wake)
			wake = hs->awaits[i].next_check;
	}
	return wake;
}
