/*
 * loop.c — the event loop and group commit; see loop.h.
 *
 * State kept in memory is only what can be lost without harm: held long
 * polls (the client resends), the last fetch reply per consumer (so a
 * resent fetch gets the same leases back instead of new ones), rate samples
 * and wake-up hints. Everything that matters is in LMDB.
 */
#include "loop.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "arena.h"
#include "auth.h"
#include "clock.h"
#include "codec.h"
#include "handlers.h"
#include "log.h"
#include "metrics.h"
#include "pump.h"
#include "leases.h"
#include "scheduler.h"
#include "space.h"
#include "store.h"
#include "transport.h"

#define MAX_TURN_REQUESTS 512
/* Turn sharing: below this many work units a turn is not shared out. A
 * unit is one delivery fetched or acked; a nack counts NACK_UNITS (it
 * rewrites the record, schedules a retry and is logged twice). */
#define SHARE_MIN_UNITS 512
#define NACK_UNITS 3
#define MAX_TURN_BYTES (64u << 20)
#define MAX_TURN_EXPIRIES 2000
/* Background work (retention, unsubscribe) comes in small slices: a
 * request arriving during an idle turn waits for that turn's commit, and a
 * turn with requests gives it an even smaller share, so dropping millions
 * of deliveries does not slow live traffic (128 per commit still drains
 * some 100,000 a second). */
#define MAX_TURN_CLEANUPS 128
#define MAX_TURN_CLEANUPS_BUSY 8
/* With only background work left, wait this long for a request first: a
 * request then never queues behind a background-only turn. */
#define BACKGROUND_WAIT_MS 1
#define RECOVER_PER_TURN 250
#define FETCH_CACHE_SLOTS 1024
#define FETCH_CACHE_MAX_BYTES (256 * 1024)
#define DIRTY_SLOTS 4096
#define IDLE_WAKE_MS 1000
/* Arena use over this in one turn is returned to the system afterwards. */
#define ARENA_TRIM_BYTES (32u << 20)
/* How often reader slots of dead processes are cleared (mdb_reader_check). */
#define READER_CHECK_MS 5000

struct held_fetch {
	void *ctrl;
	char *sub;
	char *consumer;
	uint64_t seq;
	uint32_t sub_id;
	uint32_t max;
	uint32_t max_bytes;
	uint64_t deadline;
	uint64_t next_check;
	Reply *reply;            /* set when served in this turn */
};

struct cached_fetch {
	char *consumer;
	char *sub;
	uint64_t seq;
	void *bytes;
	size_t len;
};

struct pending {
	void *ctrl;
	const struct config_key *caller; /* NULL: access control off */
	Request *req;
	Reply *reply;
	bool park;
	void *body;              /* the wire bytes, kept until the turn is
				  * sure to apply it (see share_turn) */
	size_t len;
};

/* A request put off to a later turn: its bytes, already authenticated. */
struct deferred {
	void *ctrl;
	void *body;
	size_t len;
	const struct config_key *caller;
};

struct broker {
	const struct config *cfg;
	struct store st;
	struct transport tr;
	struct arena arena;
	struct metrics metrics;
	struct handler_env env;
	struct held_fetch *held;
	size_t n_held, cap_held;
	struct cached_fetch cache[FETCH_CACHE_SLOTS];
	uint8_t dirty[DIRTY_SLOTS / 8];
	uint64_t next_lease_ms;
	uint64_t next_expiry_ms;
	uint64_t next_sample_ms;
	bool cleanup_more;
	uint64_t started_ms;
	/* Progress of background work that a turn's transaction advances; a
	 * rolled-back turn puts it back (see turn_commit). */
	struct background {
		/* Leases from before this start are made ready again a
		 * bounded number per turn, so start-up time does not grow
		 * with them. */
		bool recovering;
		uint64_t recover_deadline;   /* last lease key looked at */
		uint32_t recover_sub;
		uint64_t recover_ev;
		bool recover_begun;
		uint64_t recovered;
		bool unsubscribe_pending;
	} bg;
	int sigfd;
	struct pending pend[MAX_TURN_REQUESTS];
	size_t n_pend;
	struct inmsg inbound[MAX_TURN_REQUESTS];
	struct deferred deferred[MAX_TURN_REQUESTS];
	size_t n_deferred;
	uint64_t deferred_total;     /* requests put off to share turns */
	struct pump pump;
	int exit_status;
	struct space space;
	struct lease_counts leases;
	uint64_t next_reader_check_ms;
	struct auth auth;
};

static void on_ready(void *ctx, uint32_t sub, uint64_t due)
{
	struct broker *b = ctx;
	(void)due;
	b->dirty[(sub % DIRTY_SLOTS) / 8] |= (uint8_t)(1u << (sub % 8));
}

static void on_lease(void *ctx, const char *consumer, int delta,
		     uint64_t leased_ms)
{
	struct broker *b = ctx;
	/* leases from before this start are not in the table */
	if (delta < 0 && leased_ms < b->started_ms)
		return;
	leases_add(&b->leases, consumer, delta);
}

static bool is_dirty(struct broker *b, uint32_t sub)
{
	return b->dirty[(sub % DIRTY_SLOTS) / 8] & (1u << (sub % 8));
}

/* ---- replies ---------------------------------------------------------- */

static uint32_t cache_slot(const char *consumer)
{
	uint32_t h = 2166136261u;
	for (const char *p = consumer; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return h % FETCH_CACHE_SLOTS;
}

static void cache_put(struct broker *b, const char *consumer, const char *sub,
		      uint64_t seq, const void *bytes, size_t len)
{
	if (len > FETCH_CACHE_MAX_BYTES)
		return;
	struct cached_fetch *c = &b->cache[cache_slot(consumer)];
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

static const struct cached_fetch *cache_get(struct broker *b,
					    const char *consumer,
					    const char *sub, uint64_t seq)
{
	struct cached_fetch *c = &b->cache[cache_slot(consumer)];
	if (c->consumer && c->seq == seq && strcmp(c->consumer, consumer) == 0 &&
	    strcmp(c->sub, sub) == 0)
		return c;
	return NULL;
}

static void send_reply(struct broker *b, void *ctrl, const Reply *r,
		       const Handoff__Wire__FetchRequest *fetch)
{
	size_t len;
	void *msg = codec_pack_reply(r, &len);
	if (!msg) {
		pump_send(&b->pump, ctrl, NULL, 0);
		log_event(LOG_ERROR, "reply_dropped", LS("reason", "out of memory"),
			  LOG_END);
		return;
	}
	if (fetch && r->status == HANDOFF__WIRE__STATUS__OK && fetch->fetch_seq)
		cache_put(b, fetch->consumer, fetch->subscription,
			  fetch->fetch_seq, msg, len);
	pump_send(&b->pump, ctrl, msg, len);
}

static Reply *error_reply(struct broker *b, int status, const char *msg)
{
	Reply *r = codec_new_reply(&b->arena);
	if (r)
		handlers_status(&b->arena, r, status, "%s", msg);
	return r;
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

static int held_add(struct broker *b, struct pending *p, uint32_t sub_id,
		    uint64_t next_check, uint64_t now)
{
	const Handoff__Wire__FetchRequest *f = p->req->fetch;
	if (b->n_held == b->cap_held) {
		size_t cap = b->cap_held ? b->cap_held * 2 : 16;
		void *m = realloc(b->held, cap * sizeof *b->held);
		if (!m)
			return ENOMEM;
		b->held = m;
		b->cap_held = cap;
	}
	struct held_fetch *h = &b->held[b->n_held];
	memset(h, 0, sizeof *h);
	h->sub = strdup(f->subscription);
	h->consumer = strdup(f->consumer);
	if (!h->sub || !h->consumer) {
		free(h->sub);
		free(h->consumer);
		return ENOMEM;
	}
	h->ctrl = p->ctrl;
	h->seq = f->fetch_seq;
	h->sub_id = sub_id;
	h->max = f->max_events ? f->max_events : 1;
	h->max_bytes = f->max_bytes;
	h->deadline = now + f->wait_ms;
	h->next_check = next_check;
	b->n_held++;
	p->ctrl = NULL;
	return 0;
}

/* A resent fetch that is already held: answer the newest copy. */
static bool held_takeover(struct broker *b, const Handoff__Wire__FetchRequest *f,
			  void *ctrl)
{
	for (size_t i = 0; i < b->n_held; i++) {
		struct held_fetch *h = &b->held[i];
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

static int serve_held(struct broker *b, struct txn *t)
{
	for (size_t i = 0; i < b->n_held; i++) {
		struct held_fetch *h = &b->held[i];
		h->reply = NULL;
		if (!is_dirty(b, h->sub_id) && h->next_check > t->now_ms)
			continue;
		Reply *r = codec_new_reply(t->arena);
		size_t n;
		if (!r)
			return ENOMEM;
		int rc = handlers_fetch_fill(&b->env, t, h->sub, h->max,
					     h->max_bytes, h->consumer, r, &n);
		if (rc)
			return rc;
		if (n > 0 || r->status != HANDOFF__WIRE__STATUS__OK) {
			h->reply = r;
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

/* After commit: answer served and timed-out held fetches. */
static void finish_held(struct broker *b, uint64_t now, bool committed)
{
	size_t w = 0;
	for (size_t i = 0; i < b->n_held; i++) {
		struct held_fetch *h = &b->held[i];
		Reply *r = committed ? h->reply : NULL;
		if (!r && h->deadline <= now) {
			r = codec_new_reply(&b->arena);
			Handoff__Wire__FetchReply *fr = r ? arena_alloc(&b->arena, sizeof *fr) : NULL;
			if (fr) {
				handoff__wire__fetch_reply__init(fr);
				r->body_case = HANDOFF__WIRE__REPLY__BODY_FETCH;
				r->fetch = fr;
			}
		}
		if (r) {
			Handoff__Wire__FetchRequest f = HANDOFF__WIRE__FETCH_REQUEST__INIT;
			f.consumer = h->consumer;
			f.subscription = h->sub;
			f.fetch_seq = h->seq;
			send_reply(b, h->ctrl, r, &f);
			h->ctrl = NULL;
			held_free(b, h);
			continue;
		}
		h->reply = NULL;
		b->held[w++] = *h;
	}
	b->n_held = w;
}

/* ---- timers: leases, cleanup, rates ----------------------------------- */

static int expire_leases(struct broker *b, struct txn *t)
{
	b->next_lease_ms = UINT64_MAX;
	for (int i = 0; i < MAX_TURN_EXPIRIES; i++) {
		uint64_t deadline, ev;
		uint32_t sub;
		int rc = store_lease_first(t, &deadline, &sub, &ev);
		if (rc == MDB_NOTFOUND)
			return 0;
		if (rc)
			return rc;
		if (deadline > t->now_ms) {
			b->next_lease_ms = deadline;
			return 0;
		}
		rc = sched_expire(t, deadline, sub, ev);
		if (rc)
			return rc;
	}
	b->next_lease_ms = t->now_ms; /* more to expire: come back at once */
	return 0;
}

static int forget_event(struct txn *t, uint64_t ev)
{
	uint32_t sub = 0;
	int rc;
	while ((rc = store_delivery_next_sub(t, ev, 0, &sub)) == 0) {
		rc = store_delivery_del(t, ev, sub);
		if (rc)
			return rc;
	}
	if (rc != MDB_NOTFOUND)
		return rc;
	rc = store_payload_del(t, ev);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	rc = store_event_del(t, ev);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Drop a deleted subscription's deliveries, a bounded number per turn. */
static int drain_unsubscribed(struct broker *b, struct txn *t, int *budget)
{
	uint32_t id = 0;
	int rc;
	bool any = false;
	while ((rc = store_sub_next(t, id, &id)) == 0) {
		SubRecord *sub;
		rc = store_sub_get(t, id, &sub);
		if (rc)
			return rc;
		if (!sub->deleting)
			continue;
		any = true;
		for (; *budget > 0; (*budget)--) {
			uint64_t due, ev, deadline;
			rc = store_ready_first(t, id, &due, &ev);
			if (rc == MDB_NOTFOUND)
				rc = store_dlq_next(t, id, 0, &ev);
			if (rc == MDB_NOTFOUND)
				rc = store_lease_find_sub(t, id, &deadline, &ev);
			if (rc == MDB_NOTFOUND) {
				log_event(LOG_INFO, "subscription_removed",
					  LS("subscription", sub->name),
					  LU("id", id), LOG_END);
				rc = store_sub_delete(t, id);
				if (rc)
					return rc;
				break;
			}
			if (rc)
				return rc;
			rc = sched_drop(t, sub, ev);
			if (rc)
				return rc;
		}
		if (*budget <= 0)
			return 0;
	}
	if (rc != MDB_NOTFOUND)
		return rc;
	b->bg.unsubscribe_pending = any && *budget <= 0;
	return 0;
}

static int cleanup(struct broker *b, struct txn *t)
{
	int budget = b->n_pend ? MAX_TURN_CLEANUPS_BUSY : MAX_TURN_CLEANUPS;
	b->cleanup_more = false;
	if (b->bg.unsubscribe_pending) {
		int rc = drain_unsubscribed(b, t, &budget);
		if (rc)
			return rc;
	}
	for (; budget > 0; budget--) {
		uint64_t at;
		int kind;
		uint8_t id[IDEM_KEY_MAX];
		size_t idlen;
		int rc = store_expiry_first(t, t->now_ms, &at, &kind, id, &idlen);
		if (rc == MDB_NOTFOUND)
			break;
		if (rc)
			return rc;
		if (kind == EXPIRY_IDEM) {
			IdemRecord *ir;
			rc = store_idem_get(t, id, idlen, &ir);
			/* a newer record under the same key keeps living */
			if (rc == 0 && ir->created_ms + b->cfg->dedup_window_ms <= t->now_ms)
				rc = store_idem_del(t, id, idlen);
			else if (rc == MDB_NOTFOUND || rc == MDB_CORRUPTED || rc == 0)
				rc = 0;
		} else if (kind == EXPIRY_HISTORY && idlen == 8) {
			rc = forget_event(t, be64_get(id));
		} else if (kind == EXPIRY_COMMAND && idlen < sizeof id) {
			char cid[IDEM_KEY_MAX + 1];
			memcpy(cid, id, idlen);
			cid[idlen] = '\0';
			rc = store_command_del(t, cid);
			if (rc == MDB_NOTFOUND)
				rc = 0;
		}
		if (!rc)
			rc = store_expiry_del(t, at, kind, id, idlen);
		if (rc)
			return rc;
	}
	b->cleanup_more = budget <= 0 || b->bg.unsubscribe_pending;
	uint64_t at;
	int kind;
	uint8_t id[IDEM_KEY_MAX];
	size_t idlen;
	int rc = store_expiry_first(t, UINT64_MAX, &at, &kind, id, &idlen);
	b->next_expiry_ms = rc ? UINT64_MAX : at;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int sample_rates(struct broker *b, struct txn *t)
{
	char series[600];
	char *name = "";
	int rc;
	if (t->now_ms < b->next_sample_ms)
		return 0;
	b->next_sample_ms = t->now_ms + METRICS_INTERVAL_MS;
	while ((rc = store_topic_next(t, name, &name)) == 0) {
		TopicRecord *tr;
		if (store_topic_get(t, name, &tr) == 0) {
			snprintf(series, sizeof series, "t:%s", name);
			metrics_sample(&b->metrics, series, tr->published, t->now_ms);
		}
	}
	uint32_t id = 0;
	while ((rc = store_sub_next(t, id, &id)) == 0) {
		SubRecord *r;
		if (store_sub_get(t, id, &r))
			continue;
		snprintf(series, sizeof series, "a:%s", r->name);
		metrics_sample(&b->metrics, series, r->acked, t->now_ms);
		snprintf(series, sizeof series, "d:%s", r->name);
		metrics_sample(&b->metrics, series, r->delivered, t->now_ms);
	}
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- one turn --------------------------------------------------------- */

/* Take the requests waiting (up to a turn's worth), or wait up to
 * timeout_ms for one; decode them into the turn's pending list. */
static const char *request_name(const Request *r);

static void share_turn(struct broker *b);

static void receive_batch(struct broker *b, int timeout_ms, bool *stopping)
{
	/* requests put off by the last turn come first, as they came */
	size_t n_old = b->n_deferred;
	for (size_t i = 0; i < n_old; i++)
		b->inbound[i] = (struct inmsg){ b->deferred[i].ctrl,
						b->deferred[i].body,
						b->deferred[i].len };
	b->n_deferred = 0;
	size_t n = n_old + pump_take(&b->pump, b->inbound + n_old,
				     MAX_TURN_REQUESTS - n_old, MAX_TURN_BYTES,
				     n_old ? 0 : timeout_ms, stopping);
	const struct config_key *old_callers[MAX_TURN_REQUESTS];
	for (size_t i = 0; i < n_old; i++)
		old_callers[i] = b->deferred[i].caller;
	b->n_pend = 0;
	for (size_t i = 0; i < n; i++) {
		struct inmsg *in = &b->inbound[i];
		Request *req = codec_decode_request(&b->arena, in->body, in->len);
		const struct config_key *caller = NULL;
		char why[256];
		int ast = HANDOFF__WIRE__STATUS__OK;
		if (req && i < n_old) {
			caller = old_callers[i]; /* checked when it came */
		} else if (req) {
			ast = auth_verify(&b->auth, req, in->body, in->len,
					  clock_now_ms(), &caller, why, sizeof why);
			if (ast == HANDOFF__WIRE__STATUS__OK)
				ast = auth_allows(&b->auth, caller, req, why,
						  sizeof why);
		}
		if (!req || ast != HANDOFF__WIRE__STATUS__OK) {
			free(in->body);
			in->body = NULL;
		}
		if (req && ast != HANDOFF__WIRE__STATUS__OK) {
			log_event(LOG_WARN, "request_denied",
				  LS("request", request_name(req)),
				  LS("key", req->auth && req->auth->key_id
						    ? req->auth->key_id : ""),
				  LS("reason", why), LOG_END);
			Reply *r = error_reply(b, ast, why);
			if (r)
				send_reply(b, in->ctrl, r, NULL);
			else
				pump_send(&b->pump, in->ctrl, NULL, 0);
			continue;
		}
		if (!req) {
			log_event(LOG_WARN, "request_malformed", LU("bytes", in->len),
				  LOG_END);
			Reply *r = error_reply(b, HANDOFF__WIRE__STATUS__BAD_REQUEST,
					       "malformed request: not a handoff "
					       "Request message, or over the "
					       "decode budget");
			if (r)
				send_reply(b, in->ctrl, r, NULL);
			else
				pump_send(&b->pump, in->ctrl, NULL, 0);
			continue;
		}
		/* a resend is the same request: same version, subscription
		 * (which the caller was just allowed to fetch from) and
		 * consumer; anything else goes through every check */
		if (req->protocol_version ==
			    HANDOFF__WIRE__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT &&
		    req->body_case == HANDOFF__WIRE__REQUEST__BODY_FETCH &&
		    req->fetch->consumer && req->fetch->subscription &&
		    req->fetch->fetch_seq) {
			const struct cached_fetch *c =
				cache_get(b, req->fetch->consumer,
					  req->fetch->subscription,
					  req->fetch->fetch_seq);
			if (c) {
				/* resent fetch: the same leases, not new ones */
				void *copy = malloc(c->len ? c->len : 1);
				if (copy)
					memcpy(copy, c->bytes, c->len);
				pump_send(&b->pump, in->ctrl, copy, copy ? c->len : 0);
				free(in->body);
				continue;
			}
			if (held_takeover(b, req->fetch, in->ctrl)) {
				free(in->body);
				continue;
			}
		}
		struct pending *p = &b->pend[b->n_pend++];
		p->ctrl = in->ctrl;
		p->caller = caller;
		p->req = req;
		p->reply = NULL;
		p->park = false;
		p->body = in->body;
		p->len = in->len;
	}
	share_turn(b);
	for (size_t i = 0; i < b->n_pend; i++) {
		free(b->pend[i].body);
		b->pend[i].body = NULL;
	}
}

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
	default:
		return NULL;
	}
}

/*
 * One subscription must not slow the others (promise 4): every request of
 * a turn waits for the same commit, so a subscription whose consumers
 * fetch and nack in a tight loop would make every commit heavy. When a
 * busy turn holds work for several subscriptions, none gets more units
 * than the busiest other one (at least SHARE_MIN_UNITS); its excess
 * requests wait for the next turn, first in line, so each subscription
 * keeps its own order and always moves.
 */
static void share_turn(struct broker *b)
{
	enum { MAX_SUBS = 64 };
	const char *name[MAX_SUBS];
	uint64_t want[MAX_SUBS] = { 0 }, got[MAX_SUBS] = { 0 }, total = 0;
	size_t n_subs = 0, slot[MAX_TURN_REQUESTS];
	for (size_t i = 0; i < b->n_pend; i++) {
		uint64_t u = 0;
		const char *sub = consumer_work(b->pend[i].req, &u);
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
	for (size_t i = 0; i < b->n_pend; i++) {
		struct pending *p = &b->pend[i];
		size_t k = slot[i];
		if (k < MAX_SUBS) {
			uint64_t u = 0;
			consumer_work(p->req, &u);
			/* the first request of each subscription always runs */
			if (got[k] > 0 && got[k] + u > cap[k]) {
				b->deferred[b->n_deferred++] = (struct deferred){
					p->ctrl, p->body, p->len, p->caller };
				continue;
			}
			got[k] += u;
		}
		b->pend[kept++] = *p;
	}
	if (kept < b->n_pend)
		b->deferred_total += b->n_pend - kept;
	b->n_pend = kept;
}

/*
 * After a failed write or fsync, what the kernel holds for the file is
 * unknown (a failed fsync may have dropped the dirty pages): never retry
 * it. Exit, and let the supervisor restart on the last durable commit. A
 * full map or disk is not fatal: publishes are refused, the rest goes on.
 */
static bool error_is_fatal(int rc)
{
	return rc == MDB_PANIC || rc == EIO || rc == EROFS || rc == ENXIO ||
	       rc == ENODEV;
}

static bool store_is_fatal(struct broker *b)
{
	MDB_txn *probe;
	int rc = mdb_txn_begin(b->st.env, NULL, MDB_RDONLY, &probe);
	if (rc == 0) {
		mdb_txn_abort(probe);
		return false;
	}
	return rc == MDB_PANIC || rc == EIO;
}

static const char *request_name(const Request *r)
{
	switch (r->body_case) {
	case HANDOFF__WIRE__REQUEST__BODY_PING: return "ping";
	case HANDOFF__WIRE__REQUEST__BODY_PUBLISH: return "publish";
	case HANDOFF__WIRE__REQUEST__BODY_SUBSCRIBE: return "subscribe";
	case HANDOFF__WIRE__REQUEST__BODY_UNSUBSCRIBE: return "unsubscribe";
	case HANDOFF__WIRE__REQUEST__BODY_LIST_SUBSCRIPTIONS: return "list_subscriptions";
	case HANDOFF__WIRE__REQUEST__BODY_FETCH: return "fetch";
	case HANDOFF__WIRE__REQUEST__BODY_ACK: return "ack";
	case HANDOFF__WIRE__REQUEST__BODY_NACK: return "nack";
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_LIST: return "dlq_list";
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_SHOW: return "dlq_show";
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_REPLAY: return "dlq_replay";
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_PURGE: return "dlq_purge";
	case HANDOFF__WIRE__REQUEST__BODY_TRACE: return "trace";
	case HANDOFF__WIRE__REQUEST__BODY_STATS: return "stats";
	case HANDOFF__WIRE__REQUEST__BODY_AUDIT_LIST: return "audit_list";
	default: return "unknown";
	}
}

static int apply_one(struct broker *b, struct txn *t, struct pending *p)
{
	p->reply = codec_new_reply(t->arena);
	if (!p->reply)
		return ENOMEM;
	b->env.caller = p->caller;
	return handlers_apply(&b->env, t, p->req, p->reply, &p->park);
}

/* Which subscription a held fetch waits on, and when its first delayed
 * delivery (if any) becomes due, so the loop wakes for it. */
static void held_target(struct broker *b, const char *name, uint64_t now,
			uint32_t *sub_id, uint64_t *next_check)
{
	struct txn t;
	SubRecord *r;
	uint64_t due, ev;
	*sub_id = 0;
	*next_check = UINT64_MAX;
	if (store_txn_begin(&b->st, &b->arena, false, now, &t))
		return;
	if (store_sub_by_name(&t, name, &r) == 0) {
		*sub_id = r->id;
		if (store_ready_first(&t, r->id, &due, &ev) == 0)
			*next_check = due;
	}
	store_txn_abort(&t);
}

static int recover_some(struct broker *b, struct txn *t);

/* Apply everything in one transaction; 0 when committed. */
static int turn_commit(struct broker *b, uint64_t now)
{
	struct txn t;
	struct background saved = b->bg;
	int rc = store_txn_begin(&b->st, &b->arena, true, now, &t);
	if (rc)
		return rc;
	b->env.held_fetches = b->n_held;
	b->env.unsubscribed = false;
	if (b->bg.recovering)
		rc = recover_some(b, &t);
	for (size_t i = 0; i < b->n_pend && !rc; i++)
		rc = apply_one(b, &t, &b->pend[i]);
	/* while old leases are recovered, they are not expired instead */
	if (!rc && !b->bg.recovering)
		rc = expire_leases(b, &t);
	if (!rc)
		rc = serve_held(b, &t);
	if (!rc)
		rc = cleanup(b, &t);
	if (!rc)
		rc = sample_rates(b, &t);
	if (rc)
		store_txn_abort(&t);
	else
		rc = store_txn_commit(&t);
	if (rc) {
		b->bg = saved; /* nothing of it reached the disk */
		leases_rollback(&b->leases);
	} else {
		leases_commit(&b->leases);
	}
	return rc;
}

static int storage_status(int rc)
{
	return rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT ||
			       rc == MDB_TXN_FULL
		       ? HANDOFF__WIRE__STATUS__STORAGE_FULL
		       : HANDOFF__WIRE__STATUS__INTERNAL;
}

/* The group failed: apply each request alone so one cannot fail all. */
static int turn_one_by_one(struct broker *b, uint64_t now)
{
	b->env.held_fetches = b->n_held;
	for (size_t i = 0; i < b->n_pend; i++) {
		struct pending *p = &b->pend[i];
		struct txn t;
		log_defer_begin();
		int rc = store_txn_begin(&b->st, &b->arena, true, now, &t);
		if (!rc) {
			rc = apply_one(b, &t, p);
			if (rc)
				store_txn_abort(&t);
			else
				rc = store_txn_commit(&t);
		}
		if (rc)
			leases_rollback(&b->leases);
		else
			leases_commit(&b->leases);
		log_defer_end(rc == 0);
		if (rc) {
			if (error_is_fatal(rc) || store_is_fatal(b))
				return rc;
			p->park = false;
			p->reply = error_reply(b, storage_status(rc),
				storage_status(rc) == HANDOFF__WIRE__STATUS__STORAGE_FULL
				? "storage full: request not applied; retry later"
				: "request not applied: internal store error");
			if (p->reply)
				p->reply->retry_after_ms = 1000;
			const Request *q = p->req;
			bool pub = q->body_case == HANDOFF__WIRE__REQUEST__BODY_PUBLISH;
			log_event(LOG_ERROR, pub ? "publish_failed" : "request_failed",
				  LS("request", request_name(q)),
				  LS("topic", pub ? q->publish->topic : ""),
				  LU("events", pub ? q->publish->n_events : 0),
				  LS("error", mdb_strerror(rc)), LOG_END);
		}
	}
	return 0;
}

static void send_turn_replies(struct broker *b, uint64_t now)
{
	for (size_t i = 0; i < b->n_pend; i++) {
		struct pending *p = &b->pend[i];
		const Handoff__Wire__FetchRequest *f =
			p->req->body_case == HANDOFF__WIRE__REQUEST__BODY_FETCH
				? p->req->fetch : NULL;
		if (p->park) {
			uint32_t sub_id;
			uint64_t next_check;
			held_target(b, f->subscription, now, &sub_id, &next_check);
			if (held_add(b, p, sub_id, next_check, now) == 0)
				continue;
			p->reply = error_reply(b, HANDOFF__WIRE__STATUS__INTERNAL,
					       "out of memory holding the fetch");
		}
		if (p->reply)
			send_reply(b, p->ctrl, p->reply, f);
		else
			pump_send(&b->pump, p->ctrl, NULL, 0);
		p->ctrl = NULL;
	}
	b->n_pend = 0;
}

static int poll_timeout(struct broker *b);

static int turn(struct broker *b, bool *stopping)
{
	/* A turn that decoded a lot (a burst of large or hostile requests)
	 * frees it here; give it back to the system, or glibc keeps most of
	 * it in its heaps for good. */
	size_t turn_bytes = b->arena.used_total;
	arena_reset(&b->arena);
	if (turn_bytes > ARENA_TRIM_BYTES)
		malloc_trim(0);
	receive_batch(b, poll_timeout(b), stopping);
	uint64_t now = clock_now_ms();
	space_update(&b->space, &b->st, now);
	b->env.storage_refusing = space_refusing(&b->space,
						 &b->env.storage_why);
	if (now >= b->next_reader_check_ms) {
		int dead = store_reader_check(&b->st);
		if (dead)
			log_event(LOG_WARN, "stale_readers_cleared",
				  LU("count", dead), LS("why", "a process died "
				  "inside a read transaction"), LOG_END);
		b->next_reader_check_ms = now + READER_CHECK_MS;
	}

	log_defer_begin();
	int rc = turn_commit(b, now);
	log_defer_end(rc == 0);
	bool committed = rc == 0;
	if (rc) {
		if (error_is_fatal(rc) || store_is_fatal(b)) {
			log_event(LOG_ERROR, "store_unusable",
				  LS("error", mdb_strerror(rc)),
				  LS("action", "exiting without retrying the failed "
				     "write; restart recovers from the last durable "
				     "commit"), LOG_END);
			return 3;
		}
		log_event(LOG_WARN, "group_commit_failed",
			  LS("error", mdb_strerror(rc)), LU("requests", b->n_pend),
			  LOG_END);
		rc = turn_one_by_one(b, now);
		if (rc) {
			log_event(LOG_ERROR, "store_unusable",
				  LS("error", mdb_strerror(rc)),
				  LS("action", "exiting without retrying the failed "
				     "write; restart recovers from the last durable "
				     "commit"), LOG_END);
			return 3;
		}
	}
	if (b->env.unsubscribed) {
		b->bg.unsubscribe_pending = true;
		b->env.unsubscribed = false;
	}
	send_turn_replies(b, now);
	finish_held(b, clock_now_ms(), committed);
	pump_flush(&b->pump);
	if (committed)
		memset(b->dirty, 0, sizeof b->dirty);
	return 0;
}

/* ---- start, wait, stop ------------------------------------------------ */

/* Was this lease granted before the broker started? */
static bool leased_before_start(struct broker *b, struct txn *t,
				uint64_t ev, uint32_t sub)
{
	DeliveryRecord *d;
	if (store_delivery_get(t, ev, sub, &d) || d->n_history == 0)
		return true; /* nothing to check against: recover it */
	return d->history[d->n_history - 1]->leased_ms < b->started_ms;
}

/*
 * Every delivery leased before this start becomes ready again (outcome
 * broker_restart), up to RECOVER_PER_TURN per turn, walking the lease index
 * once in key order. Leases granted since the start are stepped over.
 */
static int recover_some(struct broker *b, struct txn *t)
{
	uint64_t deadline = b->bg.recover_deadline, ev = b->bg.recover_ev;
	uint32_t sub = b->bg.recover_sub;
	for (int n = 0; n < RECOVER_PER_TURN; n++) {
		int rc = b->bg.recover_begun
				 ? store_lease_next(t, &deadline, &sub, &ev)
				 : store_lease_first(t, &deadline, &sub, &ev);
		if (rc == MDB_NOTFOUND) {
			b->bg.recovering = false;
			log_event(LOG_INFO, "leases_recovered",
				  LU("count", b->bg.recovered), LOG_END);
			return 0;
		}
		if (rc)
			return rc;
		if (leased_before_start(b, t, ev, sub)) {
			rc = sched_recover(t, deadline, sub, ev);
			if (rc)
				return rc;
			b->bg.recovered++;
		}
		/* the entry is gone or stays: either way continue after it */
		b->bg.recover_begun = true;
		b->bg.recover_deadline = deadline;
		b->bg.recover_sub = sub;
		b->bg.recover_ev = ev;
	}
	return 0;
}

static int poll_timeout(struct broker *b)
{
	uint64_t now = clock_now_ms(), wake = now + IDLE_WAKE_MS;
	if (b->cleanup_more || b->bg.unsubscribe_pending || b->bg.recovering)
		return BACKGROUND_WAIT_MS;
	if (b->next_lease_ms < wake)
		wake = b->next_lease_ms;
	if (b->next_expiry_ms < wake)
		wake = b->next_expiry_ms;
	for (size_t i = 0; i < b->n_held; i++) {
		if (b->held[i].deadline < wake)
			wake = b->held[i].deadline;
		if (b->held[i].next_check < wake)
			wake = b->held[i].next_check;
	}
	return wake <= now ? 0 : (int)(wake - now);
}

static int setup_signals(struct broker *b)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	b->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return b->sigfd < 0 ? errno : 0;
}

/* The store thread: turns until a stop signal, then answers held fetches. */
static void *store_main(void *arg)
{
	struct broker *b = arg;
	bool stopping = false;
	int status = 0;
	while (!stopping) {
		status = turn(b, &stopping);
		if (status)
			break;
	}
	finish_held(b, UINT64_MAX, false);
	b->exit_status = status;
	pump_store_done(&b->pump);
	log_thread_done();
	return NULL;
}

int loop_run(const struct config *cfg)
{
	static struct broker broker; /* large: keep it off the stack */
	struct broker *b = &broker;
	char err[512];
	int status = 1;
	bool pump_ready = false;
	pthread_t store_thread;

	memset(b, 0, sizeof *b);
	b->cfg = cfg;
	b->sigfd = -1;
	b->tr.sock = -1;
	b->bg.unsubscribe_pending = true;
	arena_init(&b->arena);
	metrics_init(&b->metrics);
	sched_init(cfg->history_ms, on_ready, b);
	sched_set_lease_hook(on_lease, b);
	if (leases_init(&b->leases)) {
		log_event(LOG_ERROR, "start_failed", LS("error", strerror(ENOMEM)),
			  LOG_END);
		goto out;
	}
	space_init(&b->space, cfg->storage_headroom_bytes, cfg->map_size_bytes);
	if (auth_init(&b->auth, cfg, clock_now_ms())) {
		log_event(LOG_ERROR, "start_failed", LS("error", strerror(ENOMEM)),
			  LOG_END);
		goto out;
	}
	log_event(LOG_INFO, "access_control",
		  LS("state", cfg->n_keys ? "on" : "off"),
		  LU("keys", cfg->n_keys), LOG_END);

	if (setup_signals(b)) {
		log_event(LOG_ERROR, "start_failed", LS("error", strerror(errno)),
			  LOG_END);
		goto out;
	}
	if (store_open(&b->st, cfg->data_dir, cfg->map_size_bytes, err,
		       sizeof err)) {
		log_event(LOG_ERROR, "start_failed", LS("error", err), LOG_END);
		goto out;
	}
	if (b->st.stale_readers_at_open)
		log_event(LOG_WARN, "stale_readers_cleared",
			  LU("count", b->st.stale_readers_at_open),
			  LS("why", "a process died inside a read transaction"),
			  LOG_END);
	if (b->st.nosync)
		log_event(LOG_WARN, "durability_off",
			  LS("why", "HANDOFF_TEST_NOSYNC=1 (test only)"), LOG_END);
	uint64_t t0 = clock_mono_ms();
	b->started_ms = clock_now_ms();
	b->bg.recovering = true;
	if (transport_open(&b->tr, cfg->listen, cfg->n_listen,
			   cfg->max_request_bytes, err, sizeof err)) {
		log_event(LOG_ERROR, "start_failed", LS("error", err), LOG_END);
		goto out;
	}
	if (pump_init(&b->pump, &b->tr, b->sigfd)) {
		log_event(LOG_ERROR, "start_failed", LS("error", strerror(errno)),
			  LOG_END);
		goto out;
	}
	pump_ready = true;
	b->env = (struct handler_env){ .cfg = cfg, .st = &b->st,
				       .metrics = &b->metrics,
				       .started_ms = b->started_ms,
				       .leases = &b->leases };
	for (size_t i = 0; i < cfg->n_listen; i++)
		log_event(LOG_INFO, "listening", LS("url", cfg->listen[i]), LOG_END);
	log_event(LOG_INFO, "broker_started", LS("version", HANDOFF_BUILD_VERSION),
		  LS("data", cfg->data_dir), LU("next_event_id", b->st.next_event_id),
		  LU("startup_ms", clock_mono_ms() - t0), LOG_END);

	int rc = pthread_create(&store_thread, NULL, store_main, b);
	if (rc) {
		log_event(LOG_ERROR, "start_failed", LS("error", strerror(rc)), LOG_END);
		goto out;
	}
	pump_run(&b->pump);
	pthread_join(store_thread, NULL);
	status = b->exit_status;
	log_event(LOG_INFO, "broker_stopped", LU("exit_status", status), LOG_END);
out:
	for (size_t i = 0; i < b->n_held; i++)
		held_free(b, &b->held[i]);
	/* put-off requests are resent by their clients to the next broker */
	for (size_t i = 0; i < b->n_deferred; i++) {
		pump_send(&b->pump, b->deferred[i].ctrl, NULL, 0);
		free(b->deferred[i].body);
	}
	b->n_deferred = 0;
	free(b->held);
	for (size_t i = 0; i < FETCH_CACHE_SLOTS; i++) {
		free(b->cache[i].consumer);
		free(b->cache[i].sub);
		free(b->cache[i].bytes);
	}
	if (pump_ready)
		pump_fini(&b->pump);
	transport_close(&b->tr);
	store_close(&b->st);
	leases_fini(&b->leases);
	auth_fini(&b->auth);
	metrics_fini(&b->metrics);
	arena_fini(&b->arena);
	if (b->sigfd >= 0)
		close(b->sigfd);
	log_thread_done();
	return status;
}
