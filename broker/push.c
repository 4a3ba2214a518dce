/*
 * push.c — the push thread: native fetches in, HTTP POSTs out, native acks
 * and nacks back; see push.h.
 */
#include "push.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "config.h"
#include "log.h"
#include "pump.h"
#include "push_outcome.h"
#include "push_sign.h"

#define LIST_EVERY_MS	      30000
#define PUSH_IDLE_CONNECTIONS 1024
#define FETCH_WAIT_MS	      5000
#define RETRY_POST_MS	      100
#define BODY_LINE_MAX	      200
#define POLL_MS		      100
/* Transfers (an easy handle and a buffer) kept for reuse, at most this
 * many idle in all: each is kept by its subscription with the options that
 * do not change between its POSTs already set (xfer_new), so a POST sets
 * only its body and headers. */
#define IDLE_XFER_MAX 256
/* An idle transfer keeps its buffer up to this size (most POSTs then need
 * no allocation at all) */
#define XFER_BUF_KEEP 16384
/* A header line (name, ": ", value) this long or longer is left out. */
#define HEADER_LINE_MAX 8192
/* Prefetch: beyond its concurrency a healthy subscription keeps up to
 * this many leased deliveries queued, so a slot that frees never waits
 * for a fetch round trip (a store commit) ... */
#define PREFETCH_MAX 512
/* ... but no more than it is expected to POST within this long (and half
 * the lease's slack past the timeout), so queued leases start well inside
 * their deadline; one that would not end inside it is extended first. */
#define PREFETCH_HORIZON_MS 500
/* Outcomes are sent as one ack (nack, release, extend) request per
 * subscription per loop turn, or sooner when this many are waiting; acks
 * also wait while the subscription's previous ack request is unanswered
 * (it is in the store thread's turn: the next one joins the turn after),
 * though never longer than ACK_WAIT_MS. */
#define OUTCOME_BATCH_MAX 256
/* How often the leases waiting in a queue are looked at (extend_queued). */
#define QUEUE_SCAN_MS 100
#define ACK_WAIT_MS   1000

enum endpoint_state { EP_HEALTHY, EP_FAILING, EP_PROBING, EP_PAUSED };

static const char *const state_names[] = { "healthy", "failing", "probing",
					   "paused" };

/* Outcomes to report with one native request each kind (see flush). */
struct item {
	uint64_t event_id, lease_token;
	uint32_t delay_ms;
	char *reason; /* nacks and releases */
};

struct items {
	struct item *v;
	size_t n, cap;
};

/* A fetch reply whose deliveries are leased and not all POSTed yet. */
struct batch {
	Reply *reply;
	size_t next; /* the first not yet started */
	struct batch *later;
};

struct sub {
	char *name;
	char *url;
	uint32_t timeout_ms, concurrency;
	uint8_t key[PUSH_KEY_MAX];
	size_t keylen; /* 0: unsigned */
	char *secret;  /* as stored, to notice changes */
	uint32_t backoff_min_ms, backoff_max_ms;
	uint32_t ack_deadline_ms; /* the lease a fetch takes */
	bool listed;		  /* in the last list reply */
	bool fetching;		  /* a fetch is posted and not answered */
	/* ack requests posted and not answered: while one is out, 2xx
	 * outcomes gather for the next, so each store turn gets one ack
	 * request of many items rather than many of a few */
	unsigned acks_out;
	uint64_t acks_sent_ms; /* when the last one was posted */
	unsigned in_flight;
	bool probe_out;		   /* the probe is in flight */
	enum endpoint_state state; /* written under mu */
	unsigned conn_failures;
	uint32_t probe_delay_ms;
	uint64_t next_fetch_ms;
	uint64_t next_queue_scan_ms;	/* extend_queued: broker time */
	char last_error[PUSH_TEXT_MAX]; /* written under mu */
	/* prefetched: leased, not yet POSTed, oldest first */
	struct batch *queue, *queue_last;
	size_t queued;
	double post_ms; /* moving average of 2xx POSTs' durations; 0: none */
	struct items acks, nacks, releases, extends; /* to send */
	/* idle transfers, set up for url and timeout_ms of generation
	 * easy_gen (bumped when they change: older ones are dropped) */
	struct xfer *idle;
	uint32_t easy_gen;
	struct sub *next;
};

enum call_kind {
	CALL_LIST,
	CALL_FETCH,
	CALL_ACK,
	CALL_NACK,
	CALL_PAUSE,
	CALL_EXTEND
};

static const char *const call_names[] = { "list", "fetch", "ack",
					  "nack", "pause", "extend" };

/* One posted request, until its reply; the pump hands it back. */
struct call {
	enum call_kind kind;
	char *sub;  /* fetch, ack, nack */
	void *body; /* packed, while not yet posted */
	size_t len;
	struct call *prev, *next; /* all calls, for push_stop */
};

struct answer {
	struct call *call;
	void *buf;
	size_t len;
};

/* One POST in flight, or idle in its subscription for the next. Its easy
 * handle points at it (private, write and open-socket data, error buffer)
 * for its whole life. */
struct xfer {
	CURL *easy;
	CURLU *url;	   /* easy's URL, parsed once (NULL: see xfer_new) */
	uint32_t easy_gen; /* the sub's generation easy was set up for */
	struct sub *sub;
	struct push *push;
	/* the header list's nodes, their text, then the body */
	char *buf;
	size_t buf_cap;
	struct curl_slist *hdrs; /* in buf */
	char *body;		 /* in buf */
	uint64_t event_id, lease_token;
	uint32_t attempt;
	bool probe;
	bool denied;
	char err[CURL_ERROR_SIZE];
	char line[BODY_LINE_MAX + 1];
	size_t line_len;
	bool line_done;
	struct xfer *prev, *next; /* all in flight (for push_stop), or the
				   * sub's idle ones (next only) */
};

struct push {
	const struct config *cfg;
	struct pump *pump;
	CURLM *multi;
	pthread_t thread;
	pthread_mutex_t mu;
	/* under mu */
	bool stop;
	bool relist;
	struct answer *answers;
	size_t n_answers, cap_answers;
	struct sub *subs; /* list changes and state under mu; read freely
			   * by the push thread */
	/* push thread only */
	struct call *calls;
	struct xfer *xfers;
	struct call **unposted;
	size_t n_unposted, cap_unposted;
	bool list_out;
	uint64_t next_list_ms;
	size_t n_idle_xfers; /* in all subscriptions' idle lists */
	/* curl's sockets and timer, driven with curl_multi_socket_action:
	 * curl_multi_perform polled every transfer's socket once per call */
	int epoll_fd;
	int wake_fd;	     /* eventfd: other threads wake the loop */
	uint8_t *sock_state; /* by fd: SOCK_* (see sock_state) */
	size_t sock_cap;
	uint64_t curl_due_ms; /* curl's timer; UINT64_MAX: none */
};

/* ---- calls: posting native requests ------------------------------------- */

static void call_free(struct push *p, struct call *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		p->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c->sub);
	free(c->body);
	free(c);
}

/* Post what is packed in c, now or (inbox full) later. */
static void post(struct push *p, struct call *c)
{
	int rc = pump_post_push(p->pump, c, push_caller(), c->body, c->len);
	if (rc == 0) {
		c->body = NULL; /* the pump's now */
		return;
	}
	if (rc == EAGAIN) {
		struct call **u = p->unposted;
		if (p->n_unposted == p->cap_unposted) {
			size_t cap = p->cap_unposted ? 2 * p->cap_unposted : 64;
			u = realloc(p->unposted, cap * sizeof *u);
			if (u) {
				p->unposted = u;
				p->cap_unposted = cap;
			}
		}
		if (p->n_unposted < p->cap_unposted) {
			p->unposted[p->n_unposted++] = c;
			return;
		}
	}
	/* stopping, or no memory: the lease expires, the delivery comes
	 * again (at least once) */
	if (c->kind == CALL_LIST)
		p->list_out = false;
	call_free(p, c);
}

static void post_unposted(struct push *p)
{
	size_t n = p->n_unposted;
	struct call **copy = p->unposted;
	if (!n)
		return;
	p->unposted = NULL;
	p->n_unposted = p->cap_unposted = 0;
	for (size_t i = 0; i < n; i++)
		post(p, copy[i]);
	free(copy);
}

/* Pack req into a new call of kind for sub and post it. */
/* false: not posted (no memory; logged). */
static bool send_request(struct push *p, enum call_kind kind, const char *sub,
			 Request *req)
{
	struct call *c = calloc(1, sizeof *c);
	req->protocol_version =
		HANDOFF__WIRE__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
	size_t len = handoff__wire__request__get_packed_size(req);
	if (c) {
		c->kind = kind;
		c->sub = sub ? strdup(sub) : NULL;
		c->body = malloc(len ? len : 1);
	}
	if (!c || (sub && !c->sub) || !c->body) {
		if (c) {
			free(c->sub);
			free(c->body);
			free(c);
		}
		log_event(LOG_ERROR, "push_request_dropped",
			  LS("reason", "out of memory"), LOG_END);
		if (kind == CALL_LIST)
			p->list_out = false;
		return false;
	}
	c->len = handoff__wire__request__pack(req, c->body);
	c->next = p->calls;
	if (p->calls)
		p->calls->prev = c;
	p->calls = c;
	post(p, c);
	return true;
}

static void send_list(struct push *p)
{
	Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__ListSubscriptionsRequest l =
		HANDOFF__WIRE__LIST_SUBSCRIPTIONS_REQUEST__INIT;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_LIST_SUBSCRIPTIONS;
	req.list_subscriptions = &l;
	p->list_out = true;
	send_request(p, CALL_LIST, NULL, &req);
}

static void send_fetch(struct push *p, struct sub *s, uint32_t max)
{
	Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__FetchRequest f = HANDOFF__WIRE__FETCH_REQUEST__INIT;
	char consumer[300];
	uint32_t wait = FETCH_WAIT_MS;
	if (wait > p->cfg->max_wait_ms)
		wait = p->cfg->max_wait_ms;
	if (max > p->cfg->max_batch)
		max = p->cfg->max_batch;
	snprintf(consumer, sizeof consumer, "push:%.250s", s->name);
	f.subscription = s->name;
	f.max_events = max;
	f.wait_ms = wait;
	f.consumer = consumer;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_FETCH;
	req.fetch = &f;
	s->fetching = true;
	send_request(p, CALL_FETCH, s->name, &req);
}

/* ---- outcomes: collected per subscription, sent in batches ------------- */

static void items_clear(struct items *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].reason);
	l->n = 0;
}

static void items_free(struct items *l)
{
	items_clear(l);
	free(l->v);
	l->v = NULL;
	l->cap = 0;
}

/* false: no memory (the lease expires; the delivery comes again). */
static bool items_add(struct items *l, uint64_t event_id, uint64_t token,
		      uint32_t delay_ms, const char *reason)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct item *v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return false;
		l->v = v;
		l->cap = cap;
	}
	char *r = NULL;
	if (reason && !(r = strdup(reason)))
		return false;
	l->v[l->n++] = (struct item){ event_id, token, delay_ms, r };
	return true;
}

/* Items per ack, nack or extend request: the broker's max_batch. The
 * queue may hold more leases than that (several fetches of max_batch). */
static size_t batch_limit(const struct push *p)
{
	return p->cfg->max_batch ? p->cfg->max_batch : 1000;
}

/* One request of kind per max_batch items of l, then l is emptied:
 * CALL_ACK; CALL_NACK (release: the leases given back unworked, their
 * attempts not counted); CALL_EXTEND (prefetched leases about to be
 * POSTed that could not end inside their deadline: a fresh lease each, as
 * long as a fetch's). Out of memory, the items are dropped and logged:
 * their leases expire and the deliveries come again. */
static void send_items(struct push *p, struct sub *s, enum call_kind kind,
		       struct items *l, bool release)
{
	Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__AckRequest a = HANDOFF__WIRE__ACK_REQUEST__INIT;
	Handoff__Wire__NackRequest nk = HANDOFF__WIRE__NACK_REQUEST__INIT;
	Handoff__Wire__ExtendRequest e = HANDOFF__WIRE__EXTEND_REQUEST__INIT;
	union {
		Handoff__Wire__AckItem ack;
		Handoff__Wire__NackItem nack;
		Handoff__Wire__ExtendItem extend;
	} *it = calloc(l->n, sizeof *it);
	/* the items' pointers, written and read as kind's pointer type */
	void *ptrs = calloc(l->n, sizeof(void *));
	if (!it || !ptrs) {
		log_event(LOG_ERROR, "push_request_dropped",
			  LS("reason", "out of memory"), LOG_END);
		goto out;
	}
	for (size_t i = 0; i < l->n; i++) {
		const struct item *v = &l->v[i];
		if (kind == CALL_ACK) {
			handoff__wire__ack_item__init(&it[i].ack);
			it[i].ack.event_id = v->event_id;
			it[i].ack.lease_token = v->lease_token;
			((Handoff__Wire__AckItem **)ptrs)[i] = &it[i].ack;
		} else if (kind == CALL_NACK) {
			handoff__wire__nack_item__init(&it[i].nack);
			it[i].nack.event_id = v->event_id;
			it[i].nack.lease_token = v->lease_token;
			it[i].nack.delay_ms = release ? 0 : v->delay_ms;
			it[i].nack.reason = v->reason ? v->reason : "";
			((Handoff__Wire__NackItem **)ptrs)[i] = &it[i].nack;
		} else {
			handoff__wire__extend_item__init(&it[i].extend);
			it[i].extend.event_id = v->event_id;
			it[i].extend.lease_token = v->lease_token;
			((Handoff__Wire__ExtendItem **)ptrs)[i] = &it[i].extend;
		}
	}
	a.subscription = nk.subscription = e.subscription = s->name;
	nk.release = release;
	e.extend_ms = s->ack_deadline_ms;
	if (kind == CALL_ACK) {
		req.body_case = HANDOFF__WIRE__REQUEST__BODY_ACK;
		req.ack = &a;
	} else if (kind == CALL_NACK) {
		req.body_case = HANDOFF__WIRE__REQUEST__BODY_NACK;
		req.nack = &nk;
	} else {
		req.body_case = HANDOFF__WIRE__REQUEST__BODY_EXTEND;
		req.extend = &e;
	}
	for (size_t at = 0, chunk = batch_limit(p); at < l->n; at += chunk) {
		size_t n = l->n - at < chunk ? l->n - at : chunk;
		a.n_items = nk.n_items = e.n_items = n;
		a.items = (Handoff__Wire__AckItem **)ptrs + at;
		nk.items = (Handoff__Wire__NackItem **)ptrs + at;
		e.items = (Handoff__Wire__ExtendItem **)ptrs + at;
		if (send_request(p, kind, s->name, &req) && kind == CALL_ACK) {
			s->acks_out++;
			s->acks_sent_ms = clock_mono_ms();
		}
	}
out:
	free(it);
	free(ptrs);
	items_clear(l);
}

/* Send what s has collected: extends first (their POSTs have started),
 * then acks, nacks and releases. */
static void flush(struct push *p, struct sub *s)
{
	if (s->extends.n)
		send_items(p, s, CALL_EXTEND, &s->extends, false);
	/* an answer lost (out of memory in the pump) must not hold acks
	 * back for good: after ACK_WAIT_MS they go anyway */
	if (s->acks.n &&
	    (!s->acks_out || clock_mono_ms() - s->acks_sent_ms > ACK_WAIT_MS))
		send_items(p, s, CALL_ACK, &s->acks, false);
	if (s->nacks.n)
		send_items(p, s, CALL_NACK, &s->nacks, false);
	if (s->releases.n)
		send_items(p, s, CALL_NACK, &s->releases, true);
}

static void add_outcome(struct push *p, struct sub *s, struct items *l,
			uint64_t event_id, uint64_t token, uint32_t delay_ms,
			const char *reason)
{
	if (!items_add(l, event_id, token, delay_ms, reason)) {
		log_event(LOG_ERROR, "push_request_dropped",
			  LS("subscription", s->name), LU("event", event_id),
			  LS("reason", "out of memory"), LOG_END);
		return;
	}
	if (l->n >= OUTCOME_BATCH_MAX)
		flush(p, s);
}

static void add_ack(struct push *p, const struct xfer *x)
{
	add_outcome(p, x->sub, &x->sub->acks, x->event_id, x->lease_token, 0,
		    NULL);
}

/* release: give the lease back unworked (the attempt does not count). */
static void add_nack(struct push *p, const struct xfer *x, uint32_t delay_ms,
		     const char *reason, bool release)
{
	struct sub *s = x->sub;
	add_outcome(p, s, release ? &s->releases : &s->nacks, x->event_id,
		    x->lease_token, release ? 0 : delay_ms, reason);
}

/* A 410 Gone: the endpoint says it is gone for good, so the subscription
 * is paused (audited, as an operator's pause) instead of burning attempts;
 * an operator resumes it once the receiver is back. */
static void send_pause(struct push *p, struct sub *s, const char *why)
{
	Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__PauseRequest q = HANDOFF__WIRE__PAUSE_REQUEST__INIT;
	char reason[1024];
	snprintf(reason, sizeof reason, "push endpoint %.300s answered %.600s",
		 s->url, why);
	q.subscription = s->name;
	q.reason = reason;
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_PAUSE;
	req.pause = &q;
	send_request(p, CALL_PAUSE, s->name, &req);
}

/* Any thread: wake the push thread's loop. */
static void wake(struct push *p)
{
	uint64_t one = 1;
	ssize_t w = write(p->wake_fd, &one, sizeof one);
	(void)w; /* EAGAIN: the counter is full, a wake-up is pending */
}

void push_on_reply(void *ctx, void *call, void *buf, size_t len)
{
	struct push *p = ctx;
	pthread_mutex_lock(&p->mu);
	if (p->n_answers == p->cap_answers) {
		size_t cap = p->cap_answers ? 2 * p->cap_answers : 64;
		struct answer *a = realloc(p->answers, cap * sizeof *a);
		if (a) {
			p->answers = a;
			p->cap_answers = cap;
		}
	}
	if (p->n_answers < p->cap_answers) {
		p->answers[p->n_answers++] =
			(struct answer){ call, buf, buf ? len : 0 };
		buf = NULL;
	}
	pthread_mutex_unlock(&p->mu);
	/* Without room the reply is lost like a dropped connection's: the
	 * call stays in the list (freed at stop); leases expire. */
	free(buf);
	wake(p);
}

void push_subscriptions_changed(struct push *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->relist = true;
	pthread_mutex_unlock(&p->mu);
	wake(p);
}

/* ---- subscriptions ------------------------------------------------------ */

static struct sub *find_sub(struct push *p, const char *name)
{
	for (struct sub *s = p->subs; s; s = s->next)
		if (strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

void push_endpoint(struct push *p, const char *sub, char *state,
		   size_t state_len, char *error, size_t error_len)
{
	snprintf(state, state_len, "%s", "");
	snprintf(error, error_len, "%s", "");
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	struct sub *s = find_sub(p, sub);
	if (s) {
		snprintf(state, state_len, "%s", state_names[s->state]);
		snprintf(error, error_len, "%s", s->last_error);
	}
	pthread_mutex_unlock(&p->mu);
}

static void free_queue(struct sub *s);

static void xfer_free(struct xfer *x);

/* Free s's idle transfers (its subscription changed or went). */
static void drop_idle(struct push *p, struct sub *s)
{
	while (s->idle) {
		struct xfer *x = s->idle;
		s->idle = x->next;
		p->n_idle_xfers--;
		xfer_free(x);
	}
}

static void sub_free(struct push *p, struct sub *s)
{
	drop_idle(p, s);
	free_queue(s);
	items_free(&s->acks);
	items_free(&s->nacks);
	items_free(&s->releases);
	items_free(&s->extends);
	sodium_memzero(s->key, sizeof s->key);
	free(s->name);
	free(s->url);
	free(s->secret);
	free(s);
}

static void set_state(struct push *p, struct sub *s, enum endpoint_state st,
		      const char *error)
{
	enum endpoint_state old = s->state;
	pthread_mutex_lock(&p->mu);
	s->state = st;
	if (error)
		snprintf(s->last_error, sizeof s->last_error, "%s", error);
	pthread_mutex_unlock(&p->mu);
	if (old != st)
		log_event(st == EP_HEALTHY ? LOG_INFO : LOG_WARN,
			  "push_endpoint_state", LS("subscription", s->name),
			  LS("url", s->url), LS("state", state_names[st]),
			  LS("was", state_names[old]),
			  LS("error", error ? error : ""), LOG_END);
}

/* (Re)configure s from a listed subscription. false: a bad config (the
 * broker checked it when it was created: only a damaged record). */
static bool configure(struct sub *s, const Handoff__Wire__SubscriptionInfo *si)
{
	const Handoff__Wire__PushConfig *pc = si->push;
	const char *secret = pc->secret ? pc->secret : "";
	char *url = strdup(pc->url), *sec = strdup(secret);
	if (!url || !sec) {
		free(url);
		free(sec);
		return false;
	}
	s->keylen = 0;
	if (*secret && push_secret_decode(secret, s->key, &s->keylen)) {
		free(url);
		free(sec);
		return false;
	}
	free(s->url);
	free(s->secret);
	s->url = url;
	s->secret = sec;
	s->timeout_ms =
		pc->timeout_ms ? pc->timeout_ms : PUSH_DEFAULT_TIMEOUT_MS;
	s->concurrency =
		pc->concurrency ? pc->concurrency : PUSH_DEFAULT_CONCURRENCY;
	s->backoff_min_ms = si->policy && si->policy->backoff_min_ms ?
				    si->policy->backoff_min_ms :
				    1000;
	s->backoff_max_ms = si->policy && si->policy->backoff_max_ms ?
				    si->policy->backoff_max_ms :
				    s->backoff_min_ms;
	/* the broker's default when the list leaves it out: no prefetch */
	s->ack_deadline_ms = si->policy ? si->policy->ack_deadline_ms : 0;
	return true;
}

static void release_queue(struct push *p, struct sub *s, const char *why);

/* A listed subscription's pause, as the list shows it right after a pause
 * or resume: leases fetched ahead go back unspent at once. */
static void follow_pause(struct push *p, struct sub *s,
			 const Handoff__Wire__SubscriptionInfo *si)
{
	if (si->paused && s->state != EP_PAUSED) {
		set_state(p, s, EP_PAUSED, NULL);
		release_queue(p, s, "push: subscription paused");
	} else if (!si->paused && s->state == EP_PAUSED) {
		set_state(p, s, EP_HEALTHY, NULL);
		s->next_fetch_ms = 0;
	}
}

static void on_list(struct push *p, const Reply *r)
{
	if (r->status != HANDOFF__WIRE__STATUS__OK ||
	    r->body_case != HANDOFF__WIRE__REPLY__BODY_LIST_SUBSCRIPTIONS) {
		log_event(LOG_WARN, "push_list_failed",
			  LS("error", r->message ? r->message : ""), LOG_END);
		p->next_list_ms = clock_mono_ms() + 1000;
		return;
	}
	for (struct sub *s = p->subs; s; s = s->next)
		s->listed = false;
	const Handoff__Wire__ListSubscriptionsReply *l = r->list_subscriptions;
	for (size_t i = 0; i < l->n_subscriptions; i++) {
		const Handoff__Wire__SubscriptionInfo *si = l->subscriptions[i];
		if (!si->push || !si->push->url || !si->push->url[0])
			continue;
		struct sub *s = find_sub(p, si->name);
		bool fresh = !s;
		if (fresh) {
			s = calloc(1, sizeof *s);
			if (!s || !(s->name = strdup(si->name))) {
				free(s);
				continue;
			}
		} else if (strcmp(s->url, si->push->url) == 0 &&
			   strcmp(s->secret,
				  si->push->secret ? si->push->secret : "") ==
				   0 &&
			   s->timeout_ms == si->push->timeout_ms &&
			   s->concurrency == si->push->concurrency &&
			   s->ack_deadline_ms ==
				   (si->policy ? si->policy->ack_deadline_ms :
						 0)) {
			s->listed = true;
			follow_pause(p, s, si);
			continue;
		}
		uint32_t old_timeout_ms = s->timeout_ms;
		bool same_url = !fresh && strcmp(s->url, si->push->url) == 0;
		if (!configure(s, si)) {
			log_event(LOG_ERROR, "push_config_bad",
				  LS("subscription", si->name), LOG_END);
			if (fresh)
				sub_free(p, s);
			continue;
		}
		if (!fresh && (!same_url || s->timeout_ms != old_timeout_ms)) {
			/* those in flight are freed when they end */
			drop_idle(p, s);
			s->easy_gen++;
		}
		s->listed = true;
		follow_pause(p, s, si);
		if (fresh) {
			s->probe_delay_ms = s->backoff_min_ms;
			pthread_mutex_lock(&p->mu);
			s->next = p->subs;
			p->subs = s;
			pthread_mutex_unlock(&p->mu);
			log_event(LOG_INFO, "push_subscription",
				  LS("subscription", s->name),
				  LS("url", s->url),
				  LU("timeout_ms", s->timeout_ms),
				  LU("concurrency", s->concurrency),
				  LS("signed", s->keylen ? "yes" : "no"),
				  LOG_END);
		}
	}
}

/* Forget subscriptions gone from the list once nothing of theirs is out. */
static void drop_unlisted(struct push *p)
{
	struct sub **pp = &p->subs;
	while (*pp) {
		struct sub *s = *pp;
		if (s->listed || s->fetching || s->in_flight || s->acks.n ||
		    s->acks_out || s->nacks.n || s->releases.n ||
		    s->extends.n) {
			pp = &s->next;
			continue;
		}
		pthread_mutex_lock(&p->mu);
		*pp = s->next;
		pthread_mutex_unlock(&p->mu);
		log_event(LOG_INFO, "push_subscription_gone",
			  LS("subscription", s->name), LOG_END);
		sub_free(p, s);
	}
}

/* ---- HTTP requests ------------------------------------------------------ */

static size_t on_body(char *data, size_t size, size_t n, void *user)
{
	struct xfer *x = user;
	size_t len = size * n;
	for (size_t i = 0; i < len && !x->line_done; i++) {
		char ch = data[i];
		if (ch == '\n' || ch == '\r' || x->line_len == BODY_LINE_MAX) {
			x->line_done = true;
			break;
		}
		x->line[x->line_len++] = (unsigned char)ch < ' ' ? ' ' : ch;
	}
	return len; /* the rest is read and dropped */
}

/* ---- curl's sockets in the push thread's epoll set ----------------------
 *
 * A POST on a kept-alive connection used to cost three epoll_ctl calls:
 * curl stops watching the socket when a transfer ends and asks for it
 * again with the next one. A socket curl opened through open_socket
 * therefore stays in the set, with the events it had, while curl does not
 * watch it; an event on it then takes it out (the connection idles in
 * curl's cache; the next transfer's liveness check sees why it woke).
 * close_socket forgets it, so an fd number used again starts afresh.
 * Other sockets of curl's (a resolver's socket pair) come and go at once. */
enum {
	SOCK_OURS = 1,	  /* opened by open_socket, not yet closed */
	SOCK_IN = 2,	  /* in the epoll set for EPOLLIN */
	SOCK_OUT = 4,	  /* in the epoll set for EPOLLOUT */
	SOCK_WATCHED = 8, /* curl wants its events */
};

/* fd's state, the table grown to hold it; NULL: no memory (the caller
 * then adds and removes at once, as for a socket not its own). */
static uint8_t *sock_state(struct push *p, curl_socket_t fd)
{
	if (fd < 0)
		return NULL;
	if ((size_t)fd >= p->sock_cap) {
		size_t cap = p->sock_cap ? p->sock_cap : 64;
		while (cap <= (size_t)fd)
			cap *= 2;
		uint8_t *t = realloc(p->sock_state, cap);
		if (!t)
			return NULL;
		memset(t + p->sock_cap, 0, cap - p->sock_cap);
		p->sock_state = t;
		p->sock_cap = cap;
	}
	return &p->sock_state[fd];
}

static curl_socket_t open_socket(void *user, curlsocktype purpose,
				 struct curl_sockaddr *a)
{
	struct xfer *x = user;
	if (x->push->cfg->push_deny_private && purpose == CURLSOCKTYPE_IPCXN &&
	    push_address_private(&a->addr)) {
		x->denied = true;
		return CURL_SOCKET_BAD;
	}
	curl_socket_t fd =
		socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	uint8_t *st = sock_state(x->push, fd);
	if (st)
		*st = SOCK_OURS;
	return fd;
}

static int close_socket(void *user, curl_socket_t fd)
{
	uint8_t *st = sock_state(user, fd);
	if (st)
		*st = 0; /* closing takes it out of the epoll set */
	return close(fd);
}

static bool token_char(char c)
{
	switch (c) {
	case '!':
	case '#':
	case '$':
	case '%':
	case '&':
	case '\'':
	case '*':
	case '+':
	case '-':
	case '.':
	case '^':
	case '_':
	case '`':
	case '|':
	case '~':
		return true;
	default:
		return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		       (c >= '0' && c <= '9');
	}
}

/* A header name is an HTTP token; a value has no CR, LF or NUL. */
static bool header_ok(const char *name, const char *value)
{
	if (!*name)
		return false;
	for (const char *c = name; *c; c++)
		if (!token_char(*c))
			return false;
	for (const char *c = value; *c; c++)
		if (*c == '\r' || *c == '\n')
			return false;
	return true;
}

/* Headers of the event that are not passed on: the request's own and the
 * connection's. */
static bool header_reserved(const char *name)
{
	static const char *const exact[] = {
		"host",		"content-length", "transfer-encoding",
		"connection",	"expect",	  "te",
		"upgrade",	"keep-alive",	  "trailer",
		"content-type",
	};
	for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
		if (strcasecmp(name, exact[i]) == 0)
			return true;
	return strncasecmp(name, "webhook-", 8) == 0 ||
	       strncasecmp(name, "handoff-", 8) == 0 ||
	       strncasecmp(name, "proxy-", 6) == 0;
}

/* Where put_header writes header lines: with nodes NULL it only counts
 * them (n lines, len bytes of text with their NULs). libcurl only reads
 * the list, so its nodes and text live in the transfer's buffer. */
struct header_out {
	struct curl_slist *nodes;
	char *text;
	size_t n, len;
};

static void put_header(struct header_out *h, const char *name,
		       const char *value)
{
	size_t nlen = strlen(name), vlen = strlen(value);
	size_t len = nlen + 2 + vlen;
	if (len >= HEADER_LINE_MAX)
		return; /* too long to pass on: left out */
	if (h->nodes) {
		char *t = h->text + h->len;
		memcpy(t, name, nlen);
		memcpy(t + nlen, ": ", 2);
		memcpy(t + nlen + 2, value, vlen);
		t[len] = '\0';
		h->nodes[h->n] = (struct curl_slist){ .data = t, .next = NULL };
		if (h->n)
			h->nodes[h->n - 1].next = &h->nodes[h->n];
	}
	h->n++;
	h->len += len + 1;
}

/* The headers of one POST that are not the event's own. */
struct post_headers {
	const char *ctype, *id, *ts, *sig, *event, *attempt;
};

static void put_headers(struct header_out *h, const struct post_headers *f,
			const Handoff__Wire__Delivery *d)
{
	put_header(h, "Content-Type", f->ctype);
	put_header(h, "webhook-id", f->id);
	put_header(h, "webhook-timestamp", f->ts);
	if (f->sig)
		put_header(h, "webhook-signature", f->sig);
	put_header(h, "Handoff-Event-Id", f->event);
	put_header(h, "Handoff-Attempt", f->attempt);
	if (d->topic && header_ok("x", d->topic))
		put_header(h, "Handoff-Topic", d->topic);
	if (d->key && *d->key && header_ok("x", d->key))
		put_header(h, "Handoff-Key", d->key);
	for (size_t i = 0; i < d->n_headers; i++) {
		const Handoff__Wire__Header *e = d->headers[i];
		if (e->name && e->value && header_ok(e->name, e->value) &&
		    !header_reserved(e->name) && *e->value)
			put_header(h, e->name, e->value);
	}
	/* no "Expect: 100-continue" round trip for large bodies */
	put_header(h, "Expect", "");
}

/* Write d's header list and body into x's buffer (grown when too small).
 * false: no memory. */
static bool build_request(struct sub *s, struct xfer *x,
			  const Handoff__Wire__Delivery *d)
{
	char id[4 + PUSH_DECIMAL_MAX] = "evt_", ts[PUSH_DECIMAL_MAX];
	char attempt[PUSH_DECIMAL_MAX], sig[PUSH_SIG_MAX];
	struct post_headers f = { .ctype = "application/octet-stream",
				  .id = id,
				  .ts = ts,
				  .event = id + 4,
				  .attempt = attempt };
	uint64_t now = (uint64_t)time(NULL);

	push_decimal(d->event_id, id + 4);
	push_decimal(now, ts);
	push_decimal(d->attempt, attempt);
	for (size_t i = 0; i < d->n_headers; i++)
		if (d->headers[i]->name && d->headers[i]->value &&
		    strcasecmp(d->headers[i]->name, "content-type") == 0 &&
		    header_ok("content-type", d->headers[i]->value))
			f.ctype = d->headers[i]->value;
	if (s->keylen) {
		push_sign(s->key, s->keylen, id, now, d->payload.data,
			  d->payload.len, sig);
		f.sig = sig;
	}
	struct header_out h = { 0 };
	put_headers(&h, &f, d);
	size_t nodes = h.n * sizeof(struct curl_slist);
	/* + 1: the body points into the buffer even when empty */
	size_t need = nodes + h.len + d->payload.len + 1;
	if (need > x->buf_cap) {
		char *b = malloc(need);
		if (!b)
			return false;
		free(x->buf);
		x->buf = b;
		x->buf_cap = need;
	}
	h = (struct header_out){ .nodes = (struct curl_slist *)(void *)x->buf,
				 .text = x->buf + nodes };
	put_headers(&h, &f, d);
	x->hdrs = h.n ? h.nodes : NULL;
	x->body = h.text + h.len;
	if (d->payload.len)
		memcpy(x->body, d->payload.data, d->payload.len);
	return true;
}

static void xfer_free(struct xfer *x)
{
	if (x->easy)
		curl_easy_cleanup(x->easy);
	curl_url_cleanup(x->url); /* after easy, which points at it */
	free(x->buf);
	free(x);
}

#define SET(opt, val) (rc = rc ? rc : curl_easy_setopt(e, opt, val))

/* A new transfer for s, its easy handle set up with the options all its
 * POSTs share. NULL: no memory. */
static struct xfer *xfer_new(struct push *p, struct sub *s)
{
	CURLcode rc = CURLE_OK;
	struct xfer *x = calloc(1, sizeof *x);
	CURL *e = curl_easy_init();
	if (!x || !e) {
		free(x);
		if (e)
			curl_easy_cleanup(e);
		return NULL;
	}
	x->easy = e;
	x->sub = s;
	x->push = p;
	x->easy_gen = s->easy_gen;
	/* Given as a URL, libcurl parses it again for every transfer; given
	 * parsed (with the flags it parses a URL option with), it copies it.
	 * A URL it cannot parse is set as text, to fail each POST as before. */
	x->url = curl_url();
	if (x->url &&
	    curl_url_set(x->url, CURLUPART_URL, s->url,
			 CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) !=
		    CURLUE_OK) {
		curl_url_cleanup(x->url);
		x->url = NULL;
	}
	if (x->url)
		SET(CURLOPT_CURLU, x->url);
	else
		SET(CURLOPT_URL, s->url);
	SET(CURLOPT_POST, 1L);
	SET(CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)s->timeout_ms);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_PROXY, "");
	/* with no proxy no host is exempt either: set, so that libcurl does
	 * not read no_proxy/NO_PROXY from the environment for every POST */
	SET(CURLOPT_NOPROXY, "");
	SET(CURLOPT_USERAGENT, "handoffd/" HANDOFF_BUILD_VERSION);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, x);
	SET(CURLOPT_ERRORBUFFER, x->err);
	SET(CURLOPT_PRIVATE, x);
	SET(CURLOPT_QUICK_EXIT, 1L);
	SET(CURLOPT_OPENSOCKETFUNCTION, open_socket);
	SET(CURLOPT_OPENSOCKETDATA, x);
	SET(CURLOPT_CLOSESOCKETFUNCTION, close_socket);
	SET(CURLOPT_CLOSESOCKETDATA, p);
	if (rc != CURLE_OK) {
		xfer_free(x);
		return NULL;
	}
	return x;
}

/* x, ended, back to its subscription for its next POST, or freed when the
 * subscription changed since or enough are idle. */
static void xfer_put(struct push *p, struct xfer *x)
{
	struct sub *s = x->sub;
	if (x->easy_gen != s->easy_gen || !s->listed ||
	    p->n_idle_xfers >= IDLE_XFER_MAX) {
		xfer_free(x);
		return;
	}
	if (x->buf_cap > XFER_BUF_KEEP) {
		free(x->buf);
		x->buf = NULL;
		x->buf_cap = 0;
	}
	x->hdrs = NULL;
	x->body = NULL;
	x->prev = NULL;
	x->next = s->idle;
	s->idle = x;
	p->n_idle_xfers++;
}

/* Take x out of the multi and keep or free it. */
static void xfer_end(struct push *p, struct xfer *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		p->xfers = x->next;
	if (x->next)
		x->next->prev = x->prev;
	curl_multi_remove_handle(p->multi, x->easy);
	xfer_put(p, x);
}

/* Start POSTing delivery d of s. false: it could not start (no memory). */
static bool start_xfer(struct push *p, struct sub *s,
		       const Handoff__Wire__Delivery *d, bool probe)
{
	struct xfer *x = s->idle;
	CURLcode rc = CURLE_OK;
	if (x) {
		s->idle = x->next;
		x->next = NULL;
		p->n_idle_xfers--;
	} else if (!(x = xfer_new(p, s))) {
		return false;
	}
	x->event_id = d->event_id;
	x->lease_token = d->lease_token;
	x->attempt = d->attempt;
	x->probe = probe;
	x->denied = false;
	x->err[0] = '\0';
	x->line_len = 0;
	x->line_done = false;
	CURL *e = x->easy;
	if (!build_request(s, x, d))
		goto fail;
	SET(CURLOPT_POSTFIELDS, x->body);
	SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->payload.len);
	SET(CURLOPT_HTTPHEADER, x->hdrs);
	if (rc != CURLE_OK || curl_multi_add_handle(p->multi, e) != CURLM_OK)
		goto fail;
	x->next = p->xfers;
	if (p->xfers)
		p->xfers->prev = x;
	p->xfers = x;
	s->in_flight++;
	if (probe)
		s->probe_out = true;
	return true;
fail:
	xfer_free(x);
	return false;
}

#undef SET

/* Give every prefetched delivery of s back unworked (probing began, the
 * endpoint is gone): their attempts do not count. */
static void release_queue(struct push *p, struct sub *s, const char *why)
{
	while (s->queue) {
		struct batch *b = s->queue;
		const Handoff__Wire__FetchReply *f = b->reply->fetch;
		for (; b->next < f->n_deliveries; b->next++) {
			const Handoff__Wire__Delivery *d =
				f->deliveries[b->next];
			add_outcome(p, s, &s->releases, d->event_id,
				    d->lease_token, 0, why);
		}
		s->queue = b->later;
		handoff__wire__reply__free_unpacked(b->reply, NULL);
		free(b);
	}
	s->queue_last = NULL;
	s->queued = 0;
}

static void free_queue(struct sub *s)
{
	while (s->queue) {
		struct batch *b = s->queue;
		s->queue = b->later;
		handoff__wire__reply__free_unpacked(b->reply, NULL);
		free(b);
	}
	s->queue_last = NULL;
	s->queued = 0;
}

/* How long a lease must still run when its POST starts: the push timeout
 * plus half the slack a fresh lease has past it (at most 1 s); 0 when
 * the lease is no longer than the timeout (nothing is fetched ahead). */
static uint64_t lease_margin(const struct sub *s)
{
	uint32_t slack = s->ack_deadline_ms > s->timeout_ms ?
				 s->ack_deadline_ms - s->timeout_ms :
				 0;
	if (!slack)
		return 0;
	return s->timeout_ms + (slack / 2 < 1000 ? slack / 2 : 1000);
}

/* Extend the queued leases that would run out before their POST could
 * end. Leases are fetched ahead at the endpoint's recent pace; when it
 * slows down, the queue drains more slowly than planned, and a lease that
 * expired in the queue would spend an attempt on a POST never made. */
static void extend_queued(struct push *p, struct sub *s)
{
	uint64_t now = clock_now_ms(), margin = lease_margin(s);
	if (!s->queue || !margin || now < s->next_queue_scan_ms)
		return;
	s->next_queue_scan_ms = now + QUEUE_SCAN_MS;
	for (struct batch *b = s->queue; b; b = b->later) {
		const Handoff__Wire__FetchReply *f = b->reply->fetch;
		for (size_t i = b->next; i < f->n_deliveries; i++) {
			Handoff__Wire__Delivery *d = f->deliveries[i];
			if (d->lease_deadline_ms <= now ||
			    d->lease_deadline_ms >=
				    now + margin + QUEUE_SCAN_MS)
				continue;
			add_outcome(p, s, &s->extends, d->event_id,
				    d->lease_token, 0, NULL);
			/* as the broker will have it once the extend is in */
			d->lease_deadline_ms = now + s->ack_deadline_ms;
		}
	}
}

/* Start POSTs from s's queue while it has room: up to its concurrency, or
 * one probe at a time while probing. */
static void start_queued(struct push *p, struct sub *s)
{
	uint64_t now = clock_now_ms();
	if (!s->listed) { /* deleted: its leases went with it */
		free_queue(s);
		return;
	}
	while (s->queue) {
		struct batch *b = s->queue;
		const Handoff__Wire__FetchReply *f = b->reply->fetch;
		if (b->next == f->n_deliveries) {
			s->queue = b->later;
			if (!s->queue)
				s->queue_last = NULL;
			handoff__wire__reply__free_unpacked(b->reply, NULL);
			free(b);
			continue;
		}
		bool probe = false;
		if (s->state == EP_PROBING) {
			if (s->in_flight || s->probe_out)
				return;
			probe = true;
		} else if (s->in_flight >= s->concurrency) {
			return;
		}
		const Handoff__Wire__Delivery *d = f->deliveries[b->next++];
		s->queued--;
		if (d->lease_deadline_ms <= now)
			continue; /* lost already: the broker delivers it
				   * again; a POST now could be a duplicate */
		/* waited in the queue so long that its POST could outlast
		 * the lease: extended first */
		uint64_t margin = lease_margin(s);
		if (margin && d->lease_deadline_ms < now + margin)
			add_outcome(p, s, &s->extends, d->event_id,
				    d->lease_token, 0, NULL);
		if (!start_xfer(p, s, d, probe)) {
			log_event(LOG_ERROR, "push_not_started",
				  LS("subscription", s->name),
				  LU("event", d->event_id),
				  LS("reason", "out of memory"), LOG_END);
			add_outcome(p, s, &s->releases, d->event_id,
				    d->lease_token, 0, "push: out of memory");
		}
	}
}

static void on_fetch(struct push *p, struct sub *s, Reply **rp)
{
	uint64_t now = clock_mono_ms();
	const Reply *r = *rp;
	s->fetching = false;
	if (!r) { /* not applied (stopping, no memory): later */
		s->next_fetch_ms = now + 1000;
		return;
	}
	if (r->status == HANDOFF__WIRE__STATUS__NOT_FOUND) {
		s->listed = false; /* deleted: the next list confirms */
		p->next_list_ms = now;
		return;
	}
	if (r->status != HANDOFF__WIRE__STATUS__OK ||
	    r->body_case != HANDOFF__WIRE__REPLY__BODY_FETCH) {
		log_event(LOG_WARN, "push_fetch_failed",
			  LS("subscription", s->name),
			  LS("error", r->message ? r->message : ""), LOG_END);
		s->next_fetch_ms = now + 1000;
		return;
	}
	const Handoff__Wire__FetchReply *f = r->fetch;
	if (f->paused) {
		set_state(p, s, EP_PAUSED, NULL);
		release_queue(p, s, "push: subscription paused");
	} else if (s->state == EP_PAUSED && f->n_deliveries > 0)
		set_state(p, s, EP_HEALTHY, NULL); /* resumed */
	if (!f->n_deliveries)
		return;
	struct batch *b = calloc(1, sizeof *b);
	if (!b) {
		log_event(LOG_ERROR, "push_not_started",
			  LS("subscription", s->name),
			  LS("reason", "out of memory"), LOG_END);
		for (size_t i = 0; i < f->n_deliveries; i++)
			add_outcome(p, s, &s->releases,
				    f->deliveries[i]->event_id,
				    f->deliveries[i]->lease_token, 0,
				    "push: out of memory");
		return;
	}
	b->reply = *rp;
	*rp = NULL; /* the queue's now */
	if (s->queue_last)
		s->queue_last->later = b;
	else
		s->queue = b;
	s->queue_last = b;
	s->queued += f->n_deliveries;
	start_queued(p, s);
}

static void on_items(const struct call *c, const Reply *r)
{
	if (!r)
		return; /* not applied: the leases expire and count */
	size_t bad = r->status != HANDOFF__WIRE__STATUS__OK;
	if (!bad && r->body_case == HANDOFF__WIRE__REPLY__BODY_ITEMS)
		for (size_t i = 0; i < r->items->n_statuses; i++)
			bad += r->items->statuses[i] !=
			       HANDOFF__WIRE__STATUS__OK;
	/* an extend may cross the ack of a POST that was quicker: harmless */
	if (bad)
		log_event(c->kind == CALL_EXTEND ? LOG_DEBUG : LOG_WARN,
			  "push_outcome_not_recorded",
			  LS("subscription", c->sub ? c->sub : ""),
			  LS("request", call_names[c->kind]),
			  LU("items", (uint64_t)bad),
			  LS("why", r->message && *r->message ?
					    r->message :
					    "lease lost (expired or "
					    "recovered): the delivery "
					    "comes again"),
			  LOG_END);
}

static void take_answers(struct push *p)
{
	pthread_mutex_lock(&p->mu);
	struct answer *a = p->answers;
	size_t n = p->n_answers;
	p->answers = NULL;
	p->n_answers = p->cap_answers = 0;
	pthread_mutex_unlock(&p->mu);
	for (size_t i = 0; i < n; i++) {
		struct call *c = a[i].call;
		Reply *r = a[i].buf ? handoff__wire__reply__unpack(
					      NULL, a[i].len, a[i].buf) :
				      NULL;
		struct sub *s = c->sub ? find_sub(p, c->sub) : NULL;
		switch (c->kind) {
		case CALL_LIST:
			p->list_out = false;
			if (r)
				on_list(p, r);
			else
				p->next_list_ms = clock_mono_ms() + 1000;
			break;
		case CALL_FETCH:
			if (s)
				on_fetch(p, s, &r);
			break;
		case CALL_ACK:
			if (s && s->acks_out)
				s->acks_out--;
			on_items(c, r);
			break;
		case CALL_NACK:
		case CALL_EXTEND:
			on_items(c, r);
			break;
		case CALL_PAUSE:
			if (!r || r->status != HANDOFF__WIRE__STATUS__OK)
				log_event(LOG_ERROR, "push_pause_failed",
					  LS("subscription",
					     c->sub ? c->sub : ""),
					  LS("why", r && r->message ?
							    r->message :
							    "not applied"),
					  LOG_END);
			break;
		}
		if (r)
			handoff__wire__reply__free_unpacked(r, NULL);
		free(a[i].buf);
		call_free(p, c);
	}
	free(a);
}

/* One attempt ended: ack, nack or release it, and move the endpoint's
 * state. */
static void finish(struct push *p, struct xfer *x, CURLcode code)
{
	struct sub *s = x->sub;
	struct push_result res = { .transport = (int)code,
				   .transport_error = x->err,
				   .address_denied = x->denied,
				   .timeout_ms = s->timeout_ms,
				   .body_line = x->line };
	struct push_outcome o;
	curl_off_t retry = 0;
	uint64_t now = clock_mono_ms();

	x->line[x->line_len] = '\0';
	if (code == CURLE_OK) {
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &res.status);
		if (curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &retry) ==
		    CURLE_OK)
			res.retry_after_s = retry > 0 ? (long)retry : 0;
	}
	if (code != CURLE_OK && !x->err[0])
		snprintf(x->err, sizeof x->err, "%s", curl_easy_strerror(code));
	push_classify(&res, &o);
	s->in_flight--;
	if (x->probe)
		s->probe_out = false;

	if (o.action == PUSH_ACK) {
		curl_off_t us = 0;
		add_ack(p, x);
		if (curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &us) ==
			    CURLE_OK &&
		    us >= 0) {
			double ms = (double)us / 1000.0;
			s->post_ms = s->post_ms > 0 ?
					     0.9 * s->post_ms + 0.1 * ms :
					     ms;
		}
		s->conn_failures = 0;
		s->probe_delay_ms = s->backoff_min_ms;
		set_state(p, s, EP_HEALTHY, NULL);
	} else if (o.gone) {
		/* gone for good: pause, and give the delivery back unspent */
		send_pause(p, s, o.text);
		add_nack(p, x, 0, o.text, true);
		release_queue(p, s, o.text);
		s->conn_failures = 0;
		log_event(LOG_WARN, "push_endpoint_gone",
			  LS("subscription", s->name), LS("url", s->url),
			  LS("why", "410 Gone: the subscription is paused "
				    "until an operator resumes it"),
			  LOG_END);
		set_state(p, s, EP_PAUSED, o.text);
	} else if (!o.connection_failure) {
		/* the endpoint answers: a normal failed attempt */
		add_nack(p, x, o.delay_ms, o.text, false);
		s->conn_failures = 0;
		s->probe_delay_ms = s->backoff_min_ms;
		set_state(p, s, EP_FAILING, o.text);
	} else if (s->state == EP_PROBING && !x->probe) {
		/* in flight when probing began: back unworked */
		add_nack(p, x, 0, o.text, true);
	} else {
		add_nack(p, x, o.delay_ms, o.text, false);
		s->conn_failures++;
		if (s->state == EP_PROBING ||
		    s->conn_failures >= PUSH_PROBE_AFTER) {
			s->next_fetch_ms = now + s->probe_delay_ms;
			if (s->state == EP_PROBING) {
				uint64_t d = 2 * (uint64_t)s->probe_delay_ms;
				s->probe_delay_ms = d > s->backoff_max_ms ?
							    s->backoff_max_ms :
							    (uint32_t)d;
			}
			set_state(p, s, EP_PROBING, o.text);
			release_queue(p, s, o.text);
		} else {
			set_state(p, s, EP_FAILING, o.text);
		}
	}
	log_event(LOG_DEBUG, "push_attempt", LS("subscription", s->name),
		  LU("event", x->event_id), LU("attempt", x->attempt),
		  LU("status", (uint64_t)res.status),
		  LS("outcome", o.action == PUSH_ACK ? "ack" : o.text),
		  LOG_END);
	xfer_end(p, x);
}

/* How many leased deliveries a healthy s keeps queued beyond its
 * concurrency: none until a POST has succeeded, then as many as it is
 * expected to start within PREFETCH_HORIZON_MS (and half the slack between
 * the push timeout and the lease), at most PREFETCH_MAX. */
static uint32_t prefetch_margin(const struct sub *s)
{
	if (s->state != EP_HEALTHY || s->post_ms <= 0 ||
	    s->ack_deadline_ms <= s->timeout_ms)
		return 0;
	double horizon = (s->ack_deadline_ms - s->timeout_ms) / 2.0;
	if (horizon > PREFETCH_HORIZON_MS)
		horizon = PREFETCH_HORIZON_MS;
	double ms = s->post_ms < 0.01 ? 0.01 : s->post_ms;
	double n = s->concurrency * horizon / ms;
	return n >= PREFETCH_MAX ? PREFETCH_MAX : (uint32_t)n;
}

static void maybe_fetch(struct push *p, struct sub *s, uint64_t now)
{
	if (!s->listed || s->fetching || now < s->next_fetch_ms)
		return;
	size_t have = s->in_flight + s->queued;
	size_t room;
	if (s->state == EP_PROBING) {
		room = have ? 0 : 1; /* one probe at a time */
	} else {
		size_t window = s->concurrency + prefetch_margin(s);
		room = have < window ? window - have : 0;
	}
	if (room)
		send_fetch(p, s, (uint32_t)room);
}

/* curl: watch socket s for what (CURL_POLL_*). */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *user,
		     void *socketp)
{
	struct push *p = user;
	struct epoll_event ev = { .data.fd = s };
	uint8_t *st = sock_state(p, s);
	(void)easy;
	(void)socketp;
	if (what == CURL_POLL_REMOVE) {
		if (st && (*st & SOCK_OURS)) {
			*st &= (uint8_t)~SOCK_WATCHED;
			return 0;
		}
		epoll_ctl(p->epoll_fd, EPOLL_CTL_DEL, s, NULL);
		if (st)
			*st = 0;
		return 0;
	}
	uint8_t want = 0;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) {
		ev.events |= EPOLLIN;
		want |= SOCK_IN;
	}
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) {
		ev.events |= EPOLLOUT;
		want |= SOCK_OUT;
	}
	uint8_t have = st ? *st & (SOCK_IN | SOCK_OUT) : 0;
	if (st && have == want) {
		*st |= SOCK_WATCHED;
		return 0;
	}
	int op = have ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(p->epoll_fd, op, s, &ev) != 0) {
		/* no state known (no memory): whichever it needs */
		if (errno == ENOENT)
			epoll_ctl(p->epoll_fd, EPOLL_CTL_ADD, s, &ev);
		else if (errno == EEXIST)
			epoll_ctl(p->epoll_fd, EPOLL_CTL_MOD, s, &ev);
	}
	if (st)
		*st = (uint8_t)((*st & SOCK_OURS) | want | SOCK_WATCHED);
	return 0;
}

/* An event on a socket of curl's that curl does not watch: out of the
 * set, or it would wake every wait (see "curl's sockets" above). */
static bool unwatched(struct push *p, int fd)
{
	if (fd < 0 || (size_t)fd >= p->sock_cap ||
	    (p->sock_state[fd] & SOCK_WATCHED) ||
	    !(p->sock_state[fd] & (SOCK_IN | SOCK_OUT)))
		return false;
	epoll_ctl(p->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
	p->sock_state[fd] &= SOCK_OURS;
	return true;
}

/* curl: call back in timeout_ms (-1: no timer). */
static int on_timer(CURLM *multi, long timeout_ms, void *user)
{
	struct push *p = user;
	(void)multi;
	p->curl_due_ms = timeout_ms < 0 ?
				 UINT64_MAX :
				 clock_mono_ms() + (uint64_t)timeout_ms;
	return 0;
}

#define EPOLL_BATCH 64

/* Wait up to max_ms for a socket, curl's timer or a wake-up, and let curl
 * act on what happened. */
static void run_curl(struct push *p, int max_ms)
{
	struct epoll_event evs[EPOLL_BATCH];
	int running, wait_ms = max_ms;
	uint64_t now = clock_mono_ms();
	if (p->curl_due_ms != UINT64_MAX)
		wait_ms = p->curl_due_ms <= now ? 0 :
			  p->curl_due_ms - now < (uint64_t)max_ms ?
						  (int)(p->curl_due_ms - now) :
						  max_ms;
	int n = epoll_wait(p->epoll_fd, evs, EPOLL_BATCH, wait_ms);
	for (int i = 0; i < n; i++) {
		int fd = evs[i].data.fd;
		if (fd == p->wake_fd) {
			uint64_t v;
			ssize_t r = read(p->wake_fd, &v, sizeof v);
			(void)r;
			continue;
		}
		if (unwatched(p, fd))
			continue;
		int mask = 0;
		if (evs[i].events & (EPOLLIN | EPOLLHUP))
			mask |= CURL_CSELECT_IN;
		if (evs[i].events & EPOLLOUT)
			mask |= CURL_CSELECT_OUT;
		if (evs[i].events & EPOLLERR)
			mask |= CURL_CSELECT_ERR;
		curl_multi_socket_action(p->multi, fd, mask, &running);
	}
	if (p->curl_due_ms != UINT64_MAX && clock_mono_ms() >= p->curl_due_ms) {
		p->curl_due_ms = UINT64_MAX;
		curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0,
					 &running);
	}
}

static void *push_main(void *arg)
{
	struct push *p = arg;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		bool stop = p->stop, relist = p->relist;
		p->relist = false;
		pthread_mutex_unlock(&p->mu);
		if (stop)
			break;
		take_answers(p);
		uint64_t now = clock_mono_ms();
		if (relist)
			p->next_list_ms = now;
		if (!p->list_out && now >= p->next_list_ms) {
			p->next_list_ms = now + LIST_EVERY_MS;
			send_list(p);
		}
		post_unposted(p);
		drop_unlisted(p);
		for (struct sub *s = p->subs; s; s = s->next)
			start_queued(p, s);
		run_curl(p, p->n_unposted ? RETRY_POST_MS : POLL_MS);
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(p->multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			struct xfer *x;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE,
					  (char **)&x);
			finish(p, x, m->data.result);
		}
		/* refill the slots that ended, report, and fetch ahead: one
		 * request of each kind per subscription per turn */
		now = clock_mono_ms();
		for (struct sub *s = p->subs; s; s = s->next) {
			extend_queued(p, s);
			start_queued(p, s);
			flush(p, s);
			maybe_fetch(p, s, now);
		}
	}
	log_thread_done();
	return NULL;
}

int push_start(const struct config *cfg, struct pump *pump, struct push **out)
{
	struct push *p = calloc(1, sizeof *p);
	int rc;
	*out = NULL;
	if (!p)
		return ENOMEM;
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT)) {
		free(p);
		return ENOMEM;
	}
	p->cfg = cfg;
	p->pump = pump;
	p->multi = curl_multi_init();
	if (!p->multi) {
		curl_global_cleanup();
		free(p);
		return ENOMEM;
	}
	/* Each POST has an easy handle of its own, and libcurl sizes its
	 * cache of idle connections by the handles alive at the time: with
	 * few in flight it closed the receivers' keep-alive connections
	 * after every few requests. Keep enough for every subscription. */
	curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS,
			  (long)PUSH_IDLE_CONNECTIONS);
	p->curl_due_ms = UINT64_MAX;
	p->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	p->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN };
	ev.data.fd = p->wake_fd;
	if (p->epoll_fd < 0 || p->wake_fd < 0 ||
	    epoll_ctl(p->epoll_fd, EPOLL_CTL_ADD, p->wake_fd, &ev) != 0) {
		rc = errno ? errno : ENOMEM;
		goto fail;
	}
	curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
	curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
	pthread_mutex_init(&p->mu, NULL);
	rc = pthread_create(&p->thread, NULL, push_main, p);
	if (rc == 0)
		pthread_setname_np(p->thread, "handoff-push");
	if (rc) {
		pthread_mutex_destroy(&p->mu);
		goto fail;
	}
	*out = p;
	return 0;
fail:
	curl_multi_cleanup(p->multi);
	if (p->epoll_fd >= 0)
		close(p->epoll_fd);
	if (p->wake_fd >= 0)
		close(p->wake_fd);
	curl_global_cleanup();
	free(p);
	return rc;
}

void push_stop(struct push *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_mutex_unlock(&p->mu);
	wake(p);
	pthread_join(p->thread, NULL);
	/* requests in flight are abandoned: their leases come back at the
	 * next start (delivery is at least once) */
	while (p->xfers)
		xfer_end(p, p->xfers);
	for (size_t i = 0; i < p->n_answers; i++)
		free(p->answers[i].buf);
	free(p->answers);
	free(p->unposted);
	while (p->calls)
		call_free(p, p->calls);
	while (p->subs) {
		struct sub *s = p->subs;
		p->subs = s->next;
		sub_free(p, s);
	}
	curl_multi_cleanup(p->multi); /* closes through close_socket */
	free(p->sock_state);
	close(p->epoll_fd);
	close(p->wake_fd);
	pthread_mutex_destroy(&p->mu);
	curl_global_cleanup();
	free(p);
}
