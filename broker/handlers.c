/*
 * handlers.c — request handlers; see handlers.h.
 *
 * Every handler validates first (names, sizes, counts, policy), so a bad
 * request changes nothing and gets BAD_REQUEST or LIMIT_EXCEEDED with a
 * message naming the field. Store work goes through store.c and the
 * delivery state machine in scheduler.c; store records become wire
 * messages (and back) through records.c.
 *
 * A stored record that is damaged (STORE_EDECODE) fails the request like
 * any store error, except where a handler says it is tolerated and how.
 */
#include "handlers.h"

#include "auth.h"
#include "backup.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "health.h"
#include "log.h"
#include "push_outcome.h"
#include "push_sign.h"
#include "records.h"
#include "scheduler.h"

#define ST(x)	  HANDOFF__WIRE__STATUS__##x
#define DS(x)	  HANDOFF__WIRE__DELIVERY_STATE__DELIVERY_STATE_##x
#define STORED(x) HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_##x

#define MAX_KEY_BYTES	   1024
#define MAX_IDEM_BYTES	   256
#define MAX_HEADERS	   64
#define MAX_HEADER_NAME	   256
#define MAX_COMMAND_ID	   256
#define MAX_HEADER_VALUE   4096
#define MAX_REASON_BYTES   4096
#define MAX_EXTEND_MS	   (12u * 3600 * 1000) /* PROTOCOL.md §5.16 */
#define DEFAULT_LIST_LIMIT 100
#define DLQ_SCAN_BUDGET	   100000
#define DELIVERY_OVERHEAD  256
#define DEFAULT_MAX_REPLY  (64u << 20)

void handlers_status(struct arena *a, Reply *reply, int status, const char *fmt,
		     ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	reply->status = (Handoff__Wire__Status)status;
	char *m = arena_strdup(a, buf);
	reply->message = m ? m : (char *)"";
}

#define FAIL(status, ...)                                                  \
	do {                                                               \
		handlers_status(t->arena, reply, ST(status), __VA_ARGS__); \
		return 0;                                                  \
	} while (0)

/* Names are used in keys and logs: a small, printable alphabet. */
/* Tell the push thread that push subscriptions came or went. */
static void notify_push(struct handler_env *env)
{
	if (env->push_changed)
		env->push_changed(env->push);
}

static bool valid_name(const char *s, uint32_t max)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-' || c == ':' || c == '/'))
			return false;
	}
	return true;
}

#define CHECK_NAME(what, s)                                               \
	do {                                                              \
		if (!valid_name((s), env->cfg->max_name_bytes))           \
			FAIL(BAD_REQUEST,                                 \
			     "%s must be 1-%u bytes of [A-Za-z0-9._:/-]", \
			     what, env->cfg->max_name_bytes);             \
	} while (0)

static void *alloc0(struct txn *t, size_t n)
{
	void *p = arena_alloc(t->arena, n);
	if (p)
		memset(p, 0, n);
	return p;
}

/* A growing array of pointers in the txn arena, for reply lists. */
struct ptr_list {
	void **v;
	size_t n, cap;
};

static int ptr_push(struct txn *t, struct ptr_list *l, void *item)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		void **v = arena_alloc(t->arena, cap * sizeof *v);
		if (!v)
			return ENOMEM;
		if (l->n)
			memcpy(v, l->v, l->n * sizeof *v);
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = item;
	return 0;
}

/* The next subscription after *id that is not being deleted, with its
 * ready entries split into due now and delayed. MDB_NOTFOUND at the end. */
static int next_live_sub(struct txn *t, uint32_t *id, SubRecord **r,
			 uint64_t *ready, uint64_t *delayed)
{
	int rc;
	while ((rc = store_sub_next(t, *id, id)) == 0) {
		rc = store_sub_get(t, *id, r);
		if (rc)
			return rc;
		if ((*r)->deleting)
			continue;
		rc = store_ready_delayed(t, (*r)->id, delayed);
		if (rc)
			return rc;
		if (*delayed > (*r)->ready)
			*delayed = (*r)->ready;
		*ready = (*r)->ready > *delayed ? (*r)->ready - *delayed : 0;
		return 0;
	}
	return rc;
}

/* A paused subscription's pause as shown; NULL while it runs. */
static int pause_view(struct txn *t, const SubRecord *r,
		      Handoff__Wire__PauseState **out)
{
	*out = NULL;
	if (!r->paused)
		return 0;
	Handoff__Wire__PauseState *p = alloc0(t, sizeof *p);
	if (!p)
		return ENOMEM;
	handoff__wire__pause_state__init(p);
	p->reason = r->paused_reason;
	p->by = r->paused_by;
	p->since_ms = r->paused_ms;
	*out = p;
	return 0;
}

/* ---- publish ---------------------------------------------------------- */

static int check_event(struct handler_env *env,
		       const Handoff__Wire__PublishEvent *e, size_t i,
		       char *why, size_t whylen, int *status)
{
	*status = ST(BAD_REQUEST);
	if (e->payload.len > env->cfg->max_payload_bytes) {
		*status = ST(LIMIT_EXCEEDED);
		snprintf(why, whylen,
			 "event %zu: payload of %zu bytes exceeds "
			 "max_payload %u",
			 i, e->payload.len, env->cfg->max_payload_bytes);
		return -1;
	}
	if (!e->idempotency_key || !*e->idempotency_key ||
	    strlen(e->idempotency_key) > MAX_IDEM_BYTES) {
		snprintf(why, whylen,
			 "event %zu: idempotency_key must be 1-%d "
			 "bytes",
			 i, MAX_IDEM_BYTES);
		return -1;
	}
	if (e->key && strlen(e->key) > MAX_KEY_BYTES) {
		snprintf(why, whylen, "event %zu: key longer than %d bytes", i,
			 MAX_KEY_BYTES);
		return -1;
	}
	if (e->n_headers > MAX_HEADERS) {
		snprintf(why, whylen, "event %zu: more than %d headers", i,
			 MAX_HEADERS);
		return -1;
	}
	for (size_t h = 0; h < e->n_headers; h++) {
		const char *n = e->headers[h]->name, *v = e->headers[h]->value;
		if (!n || !*n || strlen(n) > MAX_HEADER_NAME ||
		    (v && strlen(v) > MAX_HEADER_VALUE)) {
			snprintf(why, whylen,
				 "event %zu: header %zu: name must "
				 "be 1-%d bytes, value at most %d",
				 i, h, MAX_HEADER_NAME, MAX_HEADER_VALUE);
			return -1;
		}
	}
	return 0;
}

static int publish_one(struct txn *t, const char *topic,
		       const Handoff__Wire__PublishEvent *e, SubRecord **subs,
		       size_t n_subs, uint64_t window_ms, uint64_t started_ms,
		       uint64_t start_mark_ms, uint64_t *id, bool *dup)
{
	uint8_t ikey[IDEM_KEY_MAX];
	size_t ilen;
	IdemRecord *ir;
	/* every subscription of the topic has the same topic id */
	uint32_t topic_id = n_subs ? subs[0]->topic_id : 0;
	int rc = store_idem_key(topic_id, e->idempotency_key, ikey, &ilen);
	if (rc)
		return rc; /* names and keys are checked before: cannot happen */
	rc = store_idem_get(t, ikey, ilen, &ir);
	if (rc == 0 && !clock_window_over(ir->created_ms, window_ms, started_ms,
					  start_mark_ms, t->now_ms)) {
		*id = ir->event_id;
		*dup = true;
		return 0;
	}
	/* A damaged record is replaced below, as if none were there: the
	 * event is published anew (at worst a duplicate) rather than every
	 * publish with this key refused. */
	if (rc && rc != MDB_NOTFOUND && rc != STORE_EDECODE)
		return rc;

	*dup = false;
	*id = store_alloc_event_id(t);
	EventBody body = HANDOFF__STORE__EVENT_BODY__INIT;
	body.payload = e->payload;
	body.n_headers = e->n_headers;
	rc = records_headers_to_store(t->arena, e->headers, e->n_headers,
				      &body.headers);
	if (rc)
		return rc;
	EventMeta m = HANDOFF__STORE__EVENT_META__INIT;
	m.topic = (char *)topic;
	m.key = e->key ? e->key : (char *)"";
	m.published_ms = t->now_ms;
	m.payload_bytes = handoff__store__event_body__get_packed_size(&body);
	m.idempotency_key = e->idempotency_key;
	m.pending_subscriptions = (uint32_t)n_subs;
	m.topic_id = topic_id;
	rc = store_event_create(t, *id, &m, &body);
	if (!rc && m.topic_id)
		rc = store_log_put(t, m.topic_id, *id, t->now_ms);
	for (size_t s = 0; s < n_subs && !rc; s++)
		rc = sched_enqueue(t, subs[s], *id, t->now_ms);
	if (rc)
		return rc;
	IdemRecord nr = HANDOFF__STORE__IDEMPOTENCY_RECORD__INIT;
	nr.event_id = *id;
	nr.created_ms = t->now_ms;
	/* removed by retention's sweep of the events once the window is
	 * over (background.c): no expiry entry */
	return store_idem_put(t, ikey, ilen, &nr);
}

static int handle_publish(struct handler_env *env, struct txn *t,
			  const Handoff__Wire__PublishRequest *p, Reply *reply)
{
	char why[256];
	int status;
	CHECK_NAME("topic", p->topic);
	if (p->n_events == 0)
		FAIL(BAD_REQUEST, "publish carries no events");
	if (p->n_events > env->cfg->max_batch)
		FAIL(LIMIT_EXCEEDED, "%zu events exceed max_batch %u",
		     p->n_events, env->cfg->max_batch);
	for (size_t i = 0; i < p->n_events; i++) {
		if (check_event(env, p->events[i], i, why, sizeof why,
				&status)) {
			handlers_status(t->arena, reply, status, "%s", why);
			log_event(LOG_WARN, "publish_refused",
				  LS("topic", p->topic), LS("reason", why),
				  LOG_END);
			return 0;
		}
	}

	uint32_t *ids;
	size_t n_subs;
	int rc = store_topic_subs(t, p->topic, &ids, &n_subs);
	if (rc)
		return rc;
	if (n_subs == 0) {
		log_event(LOG_WARN, "publish_refused", LS("topic", p->topic),
			  LS("reason", "no subscriptions"), LOG_END);
		FAIL(NO_SUBSCRIPTIONS,
		     "topic '%s' has no subscriptions: "
		     "nothing would receive the event",
		     p->topic);
	}
	if (env->storage_refusing) {
		log_event(LOG_WARN, "publish_refused", LS("topic", p->topic),
			  LU("events", p->n_events),
			  LS("reason", env->storage_why), LOG_END);
		reply->retry_after_ms = 1000;
		FAIL(STORAGE_FULL, "%s", env->storage_why);
	}
	SubRecord **subs = arena_alloc(t->arena, n_subs * sizeof *subs);
	if (!subs)
		return ENOMEM;
	for (size_t s = 0; s < n_subs; s++) {
		rc = store_sub_get(t, ids[s], &subs[s]);
		if (rc)
			return rc;
		uint64_t owed = subs[s]->ready + subs[s]->leased;
		uint32_t cap = env->cfg->max_backlog;
		if (cap && owed + p->n_events > cap) {
			log_event(LOG_WARN, "publish_refused",
				  LS("topic", p->topic),
				  LU("events", p->n_events),
				  LS("subscription", subs[s]->name),
				  LS("reason", "max_backlog"),
				  LU("backlog", owed), LOG_END);
			reply->retry_after_ms = 1000;
			FAIL(LIMIT_EXCEEDED,
			     "subscription '%s' already owes %llu "
			     "deliveries (max_backlog %u): retry when it has "
			     "drained",
			     subs[s]->name, (unsigned long long)owed, cap);
		}
	}

	Handoff__Wire__PublishReply *pr = alloc0(t, sizeof *pr);
	uint64_t *eids = alloc0(t, p->n_events * sizeof *eids);
	protobuf_c_boolean *dups = alloc0(t, p->n_events * sizeof *dups);
	if (!pr || !eids || !dups)
		return ENOMEM;
	handoff__wire__publish_reply__init(pr);
	uint64_t fresh = 0;
	for (size_t i = 0; i < p->n_events; i++) {
		bool dup;
		rc = publish_one(t, p->topic, p->events[i], subs, n_subs,
				 env->cfg->dedup_window_ms, env->started_ms,
				 env->start_mark_ms, &eids[i], &dup);
		if (rc)
			return rc;
		dups[i] = dup;
		fresh += !dup;
	}
	if (fresh) {
		TopicRecord *tr;
		TopicRecord blank = HANDOFF__STORE__TOPIC_RECORD__INIT;
		rc = store_topic_get(t, p->topic, &tr);
		/* a damaged counter starts again from zero */
		if (rc == MDB_NOTFOUND || rc == STORE_EDECODE) {
			tr = &blank;
			rc = 0;
		}
		if (rc)
			return rc;
		tr->published += fresh;
		rc = store_topic_put(t, p->topic, tr);
		if (rc)
			return rc;
	}
	pr->n_event_ids = p->n_events;
	pr->event_ids = eids;
	pr->n_duplicates = p->n_events;
	pr->duplicates = dups;
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_PUBLISH;
	reply->publish = pr;
	return 0;
}

/* ---- subscriptions ---------------------------------------------------- */

static Handoff__Wire__Policy *effective_policy(struct handler_env *env,
					       struct txn *t,
					       const Handoff__Wire__Policy *in)
{
	Handoff__Wire__Policy *p = arena_alloc(t->arena, sizeof *p);
	if (!p)
		return NULL;
	handoff__wire__policy__init(p);
	const struct config *c = env->cfg;
	p->max_attempts =
		in && in->max_attempts ? in->max_attempts : c->max_attempts;
	p->ack_deadline_ms = in && in->ack_deadline_ms ? in->ack_deadline_ms :
							 c->ack_deadline_ms;
	p->backoff_min_ms = in && in->backoff_min_ms ? in->backoff_min_ms :
						       c->backoff_min_ms;
	p->backoff_max_ms = in && in->backoff_max_ms ? in->backoff_max_ms :
						       c->backoff_max_ms;
	return p;
}

static const char *policy_problem(const Handoff__Wire__Policy *p)
{
	if (p->max_attempts > 10000)
		return "max_attempts must be 1-10000";
	if (p->ack_deadline_ms > 24u * 3600 * 1000)
		return "ack_deadline must be at most 24h";
	if (p->backoff_max_ms > 24u * 3600 * 1000)
		return "backoff max must be at most 24h";
	if (p->backoff_min_ms > p->backoff_max_ms)
		return "backoff min must not exceed backoff max";
	return NULL;
}

static bool same_policy(const Handoff__Store__Policy *a,
			const Handoff__Wire__Policy *b)
{
	return a->max_attempts == b->max_attempts &&
	       a->ack_deadline_ms == b->ack_deadline_ms &&
	       a->backoff_min_ms == b->backoff_min_ms &&
	       a->backoff_max_ms == b->backoff_max_ms;
}

/* The effective push config of a subscribe request (defaults filled in), or
 * what is wrong with it. */
static const char *push_problem(const Handoff__Wire__PushConfig *in,
				const Handoff__Wire__Policy *p,
				Handoff__Wire__PushConfig *out)
{
	*out = (Handoff__Wire__PushConfig)HANDOFF__WIRE__PUSH_CONFIG__INIT;
	out->url = in->url;
	out->secret = in->secret ? in->secret : (char *)"";
	out->timeout_ms =
		in->timeout_ms ? in->timeout_ms : PUSH_DEFAULT_TIMEOUT_MS;
	out->concurrency =
		in->concurrency ? in->concurrency : PUSH_DEFAULT_CONCURRENCY;
	out->has_secret = out->secret[0] != '\0';
	const char *problem = push_url_problem(in->url);
	if (problem)
		return problem;
	if (out->timeout_ms > PUSH_MAX_TIMEOUT_MS)
		return "push timeout must be at most 5m";
	/* the POST must end inside the lease, or its ack finds it lost */
	if (out->timeout_ms >= p->ack_deadline_ms)
		return "push timeout must be shorter than the ack deadline";
	if (out->concurrency > PUSH_MAX_CONCURRENCY)
		return "push concurrency must be 1-256";
	uint8_t key[PUSH_KEY_MAX];
	size_t keylen;
	if (out->has_secret && push_secret_decode(out->secret, key, &keylen))
		return "push secret must be whsec_ followed by the base64 of "
		       "24-64 bytes";
	return NULL;
}

static bool same_push(const SubRecord *r, const Handoff__Wire__PushConfig *pc)
{
	const char *url = pc ? pc->url : "";
	if (strcmp(r->push_url ? r->push_url : "", url) != 0)
		return false;
	return !pc ||
	       (r->push_timeout_ms == pc->timeout_ms &&
		r->push_concurrency == pc->concurrency &&
		strcmp(r->push_secret ? r->push_secret : "", pc->secret) == 0);
}

static int handle_subscribe(struct handler_env *env, struct txn *t,
			    const Handoff__Wire__SubscribeRequest *s,
			    Reply *reply)
{
	CHECK_NAME("topic", s->topic);
	CHECK_NAME("subscription", s->subscription);
	Handoff__Wire__Policy *p = effective_policy(env, t, s->policy);
	Handoff__Wire__SubscribeReply *sr = alloc0(t, sizeof *sr);
	if (!p || !sr)
		return ENOMEM;
	const char *problem = policy_problem(p);
	if (problem)
		FAIL(BAD_REQUEST, "%s", problem);
	handoff__wire__subscribe_reply__init(sr);
	Handoff__Wire__PushConfig push_cfg, *push = NULL;
	if (s->push && s->push->url && s->push->url[0]) {
		problem = push_problem(s->push, p, &push_cfg);
		if (problem)
			FAIL(BAD_REQUEST, "%s", problem);
		push = &push_cfg;
	}

	SubRecord *old;
	int rc = store_sub_by_name(t, s->subscription, &old);
	if (rc == 0) {
		if (strcmp(old->topic, s->topic) != 0)
			FAIL(CONFLICT, "subscription '%s' exists on topic '%s'",
			     s->subscription, old->topic);
		if (!old->policy || !same_policy(old->policy, p))
			FAIL(CONFLICT,
			     "subscription '%s' exists with another "
			     "policy (max_attempts=%u ack_deadline_ms=%u "
			     "backoff=%u..%u ms)",
			     s->subscription,
			     old->policy ? old->policy->max_attempts : 0,
			     old->policy ? old->policy->ack_deadline_ms : 0,
			     old->policy ? old->policy->backoff_min_ms : 0,
			     old->policy ? old->policy->backoff_max_ms : 0);
		if (!same_push(old, push))
			FAIL(CONFLICT,
			     "subscription '%s' exists with another push "
			     "config (url '%s')",
			     s->subscription,
			     old->push_url ? old->push_url : "");
		sr->created = false;
		rc = records_policy_to_wire(t->arena, old->policy, &sr->policy);
		if (!rc)
			rc = records_push_to_wire(t->arena, old, false,
						  &sr->push);
		if (rc)
			return rc;
		goto done;
	}
	if (rc != MDB_NOTFOUND)
		return rc;

	uint64_t live;
	rc = store_sub_count(t, &live);
	if (rc)
		return rc;
	if (live >= env->cfg->max_subscriptions)
		FAIL(LIMIT_EXCEEDED,
		     "%u subscriptions exist (max_subscriptions)",
		     env->cfg->max_subscriptions);

	SubRecord *r = alloc0(t, sizeof *r);
	if (!r)
		return ENOMEM;
	handoff__store__subscription_record__init(r);
	r->name = s->subscription;
	r->topic = s->topic;
	r->created_ms = t->now_ms;
	if (push) {
		r->push_url = push->url;
		r->push_timeout_ms = push->timeout_ms;
		r->push_concurrency = push->concurrency;
		r->push_secret = push->secret;
	}
	rc = records_policy_to_store(t->arena, p, &r->policy);
	if (!rc)
		rc = store_sub_create(t, r);
	if (rc)
		return rc;
	TopicRecord *tr;
	rc = store_topic_get(t, s->topic, &tr);
	if (rc == MDB_NOTFOUND) {
		TopicRecord blank = HANDOFF__STORE__TOPIC_RECORD__INIT;
		rc = store_topic_put(t, s->topic, &blank);
	}
	if (rc)
		return rc;
	log_event(LOG_INFO, "subscription_created", LS("subscription", r->name),
		  LS("topic", r->topic), LU("id", r->id),
		  LU("max_attempts", p->max_attempts),
		  LU("ack_deadline_ms", p->ack_deadline_ms),
		  LU("backoff_min_ms", p->backoff_min_ms),
		  LU("backoff_max_ms", p->backoff_max_ms),
		  LS("push_url", push ? push->url : ""), LOG_END);
	sr->created = true;
	sr->policy = p;
	if (push) {
		rc = records_push_to_wire(t->arena, r, false, &sr->push);
		if (rc)
			return rc;
		notify_push(env);
	}
done:
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_SUBSCRIBE;
	reply->subscribe = sr;
	return 0;
}

static int audit(struct handler_env *env, struct txn *t, const char *action,
		 const char *sub, const uint64_t *ids, size_t n_ids,
		 const char *selector, size_t missing, const char *reason,
		 const char *command_id, uint64_t *seq);

static int handle_unsubscribe(struct handler_env *env, struct txn *t,
			      const Handoff__Wire__UnsubscribeRequest *u,
			      Reply *reply)
{
	SubRecord *r;
	CHECK_NAME("subscription", u->subscription);
	int rc = store_sub_by_name(t, u->subscription, &r);
	if (rc == MDB_NOTFOUND)
		FAIL(NOT_FOUND, "no subscription '%s'", u->subscription);
	if (rc)
		return rc;
	rc = store_sub_unlink(t, r);
	if (rc)
		return rc;
	env->unsubscribed = true;
	if (r->push_url && r->push_url[0])
		notify_push(env);
	log_event(LOG_WARN, "subscription_deleted", LS("subscription", r->name),
		  LS("topic", r->topic), LU("id", r->id), LU("ready", r->ready),
		  LU("leased", r->leased), LU("dead", r->dead), LOG_END);
	char what[160];
	snprintf(what, sizeof what,
		 "topic %.100s; ready=%llu leased=%llu "
		 "dead=%llu dropped",
		 r->topic, (unsigned long long)r->ready,
		 (unsigned long long)r->leased, (unsigned long long)r->dead);
	return audit(env, t, "unsubscribe", r->name, NULL, 0, what, 0, "", "",
		     NULL);
}

static int pause_reply(struct txn *t, Reply *reply, const SubRecord *r,
		       bool changed)
{
	Handoff__Wire__PauseReply *pr = alloc0(t, sizeof *pr);
	if (!pr)
		return ENOMEM;
	handoff__wire__pause_reply__init(pr);
	pr->changed = changed;
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_PAUSE;
	reply->pause = pr;
	return pause_view(t, r, &pr->paused);
}

/* Pausing a paused subscription changes nothing (its first reason stays)
 * and is not audited, so a resent pause is harmless; likewise resume. */
static int handle_pause(struct handler_env *env, struct txn *t,
			const Handoff__Wire__PauseRequest *p, Reply *reply)
{
	SubRecord *r;
	CHECK_NAME("subscription", p->subscription);
	if (!p->reason || !*p->reason || strlen(p->reason) > MAX_REASON_BYTES)
		FAIL(BAD_REQUEST, "reason must be 1-%d bytes",
		     MAX_REASON_BYTES);
	int rc = store_sub_by_name(t, p->subscription, &r);
	if (rc == MDB_NOTFOUND)
		FAIL(NOT_FOUND, "no subscription '%s'", p->subscription);
	if (rc)
		return rc;
	if (r->paused)
		return pause_reply(t, reply, r, false);
	r->paused = true;
	r->paused_reason = arena_strdup(t->arena, p->reason);
	r->paused_by =
		arena_strdup(t->arena, env->caller ? env->caller->id : "");
	r->paused_ms = t->now_ms;
	if (!r->paused_reason || !r->paused_by)
		return ENOMEM;
	store_sub_mark(t, r);
	log_event(LOG_WARN, "subscription_paused", LS("subscription", r->name),
		  LS("reason", r->paused_reason), LU("ready", r->ready),
		  LU("leased", r->leased), LOG_END);
	char what[160];
	snprintf(what, sizeof what, "ready=%llu leased=%llu at pause",
		 (unsigned long long)r->ready, (unsigned long long)r->leased);
	rc = audit(env, t, "pause", r->name, NULL, 0, what, 0, p->reason, "",
		   NULL);
	/* the push thread holds fetched-ahead leases: it gives them back
	 * unspent instead of POSTing them to a receiver known to be down */
	if (!rc && r->push_url && r->push_url[0])
		notify_push(env);
	return rc ? rc : pause_reply(t, reply, r, true);
}

static int handle_resume(struct handler_env *env, struct txn *t,
			 const Handoff__Wire__ResumeRequest *q, Reply *reply)
{
	SubRecord *r;
	CHECK_NAME("subscription", q->subscription);
	int rc = store_sub_by_name(t, q->subscription, &r);
	if (rc == MDB_NOTFOUND)
		FAIL(NOT_FOUND, "no subscription '%s'", q->subscription);
	if (rc)
		return rc;
	if (!r->paused)
		return pause_reply(t, reply, r, false);
	char what[160];
	snprintf(what, sizeof what, "paused %llu ms; ready=%llu",
		 (unsigned long long)(t->now_ms > r->paused_ms ?
					      t->now_ms - r->paused_ms :
					      0),
		 (unsigned long long)r->ready);
	r->paused = false;
	r->paused_reason = (char *)"";
	r->paused_by = (char *)"";
	r->paused_ms = 0;
	store_sub_mark(t, r);
	/* the backlog is deliverable at once: wake its held fetches */
	if (t->sched && t->sched->on_ready)
		t->sched->on_ready(t->sched->ctx, r->id, t->now_ms);
	log_event(LOG_WARN, "subscription_resumed", LS("subscription", r->name),
		  LU("ready", r->ready), LOG_END);
	rc = audit(env, t, "resume", r->name, NULL, 0, what, 0, "", "", NULL);
	if (!rc && r->push_url && r->push_url[0])
		notify_push(env);
	return rc ? rc : pause_reply(t, reply, r, true);
}

/* The endpoint state of push subscription r as the push thread sees it
 * (in memory only), into the txn arena. */
static int push_state_of(struct handler_env *env, struct txn *t,
			 const SubRecord *r, char **state, char **error)
{
	char st[32], err[512];
	*state = *error = (char *)"";
	if (!r->push_url || !r->push_url[0])
		return 0;
	st[0] = err[0] = '\0';
	if (env->push_endpoint)
		env->push_endpoint(env->push, r->name, st, sizeof st, err,
				   sizeof err);
	*state = arena_strdup(t->arena, st[0] ? st : "starting");
	*error = arena_strdup(t->arena, err);
	return *state && *error ? 0 : ENOMEM;
}

static int handle_list_subscriptions(struct handler_env *env, struct txn *t,
				     Reply *reply)
{
	/* only the push thread is shown push secrets: it signs with them */
	bool internal = env->caller && env->caller == push_caller();
	struct ptr_list l = { 0 };
	Handoff__Wire__ListSubscriptionsReply *lr = alloc0(t, sizeof *lr);
	if (!lr)
		return ENOMEM;
	handoff__wire__list_subscriptions_reply__init(lr);
	uint32_t id = 0;
	SubRecord *r;
	uint64_t ready, delayed;
	int rc;
	while ((rc = next_live_sub(t, &id, &r, &ready, &delayed)) == 0) {
		Handoff__Wire__SubscriptionInfo *si = alloc0(t, sizeof *si);
		if (!si || ptr_push(t, &l, si))
			return ENOMEM;
		handoff__wire__subscription_info__init(si);
		si->name = r->name;
		si->topic = r->topic;
		rc = records_policy_to_wire(t->arena, r->policy, &si->policy);
		if (rc)
			return rc;
		si->ready = ready;
		si->delayed = delayed;
		si->leased = r->leased;
		si->dead = r->dead;
		si->created_ms = r->created_ms;
		rc = pause_view(t, r, &si->paused);
		char *unused;
		rc = records_push_to_wire(t->arena, r, internal, &si->push);
		if (!rc)
			rc = push_state_of(env, t, r, &si->push_state, &unused);
		if (rc)
			return rc;
	}
	if (rc != MDB_NOTFOUND)
		return rc;
	lr->n_subscriptions = l.n;
	lr->subscriptions = (Handoff__Wire__SubscriptionInfo **)l.v;
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_LIST_SUBSCRIPTIONS;
	reply->list_subscriptions = lr;
	return 0;
}

/* ---- consuming -------------------------------------------------------- */

int handlers_fetch_fill(struct handler_env *env, struct txn *t,
			const char *subname, uint32_t max, uint32_t max_bytes,
			const char *consumer, Reply *reply, size_t *n)
{
	SubRecord *sub;
	*n = 0;
	int rc = store_sub_by_name(t, subname, &sub);
	if (rc == MDB_NOTFOUND)
		FAIL(NOT_FOUND, "no subscription '%s'", subname);
	if (rc)
		return rc;
	if (sub->paused) {
		/* Nothing is delivered; the consumer keeps polling. */
		Handoff__Wire__FetchReply *pr = alloc0(t, sizeof *pr);
		if (!pr)
			return ENOMEM;
		handoff__wire__fetch_reply__init(pr);
		pr->paused = true;
		reply->body_case = HANDOFF__WIRE__REPLY__BODY_FETCH;
		reply->fetch = pr;
		return 0;
	}
	uint32_t lease_cap = env->cfg->max_leases_per_consumer;
	if (lease_cap && env->leases) {
		uint32_t held = leases_held(env->leases, consumer);
		if (held >= lease_cap) {
			reply->retry_after_ms = 1000;
			FAIL(LIMIT_EXCEEDED,
			     "consumer '%s' holds %u open leases "
			     "(max_leases_per_consumer %u): ack or nack some first",
			     consumer, held, lease_cap);
		}
		if (max > lease_cap - held)
			max = lease_cap - held;
	}
	Handoff__Wire__FetchReply *fr = alloc0(t, sizeof *fr);
	Handoff__Wire__Delivery **v = arena_alloc(t->arena, max * sizeof *v);
	if (!fr || !v)
		return ENOMEM;
	handoff__wire__fetch_reply__init(fr);
	if (max_bytes == 0)
		max_bytes = DEFAULT_MAX_REPLY;
	uint64_t bytes = 64;
	while (*n < max) {
		uint64_t due, ev;
		rc = store_ready_first(t, sub->id, &due, &ev);
		if (rc == MDB_NOTFOUND || (!rc && due > t->now_ms))
			break;
		if (rc)
			return rc;
		EventMeta *peek;
		if (*n > 0) {
			rc = store_event_get(t, ev, &peek);
			/* missing or damaged: sched_lease dead-letters it */
			if (rc && rc != MDB_NOTFOUND && rc != STORE_EDECODE)
				return rc;
			if (!rc && bytes + peek->payload_bytes +
						   strlen(peek->topic) +
						   strlen(peek->key) +
						   DELIVERY_OVERHEAD >
					   max_bytes)
				break; /* the consumer could not receive more */
		}
		DeliveryRecord *d;
		EventBody *body;
		EventMeta *meta;
		rc = sched_lease(t, sub, ev, due, consumer, &d, &body, &meta);
		if (rc)
			return rc;
		if (!d || !body)
			continue; /* dead-lettered as corrupt, or a stray entry */
		Handoff__Wire__Delivery *dv = alloc0(t, sizeof *dv);
		if (!dv)
			return ENOMEM;
		handoff__wire__delivery__init(dv);
		dv->event_id = ev;
		dv->topic = meta->topic;
		dv->payload = body->payload;
		dv->key = meta->key;
		dv->n_headers = body->n_headers;
		rc = records_headers_to_wire(t->arena, body->headers,
					     body->n_headers, &dv->headers);
		if (rc)
			return rc;
		dv->attempt = d->attempts;
		dv->lease_token = d->lease_token;
		dv->lease_deadline_ms = d->lease_deadline_ms;
		dv->published_ms = meta->published_ms;
		bytes += meta->payload_bytes + strlen(meta->topic) +
			 strlen(meta->key) + DELIVERY_OVERHEAD;
		v[(*n)++] = dv;
	}
	fr->n_deliveries = *n;
	fr->deliveries = v;
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_FETCH;
	reply->fetch = fr;
	return 0;
}

static int handle_fetch(struct handler_env *env, struct txn *t,
			const Handoff__Wire__FetchRequest *f, Reply *reply,
			struct fetch_hold *hold)
{
	CHECK_NAME("subscription", f->subscription);
	if (!f->consumer || !*f->consumer || strlen(f->consumer) > 256)
		FAIL(BAD_REQUEST, "consumer must be 1-256 bytes");
	uint32_t max = f->max_events ? f->max_events : 1;
	if (max > env->cfg->max_batch)
		FAIL(LIMIT_EXCEEDED, "max_events %u exceeds max_batch %u", max,
		     env->cfg->max_batch);
	if (f->wait_ms > env->cfg->max_wait_ms)
		FAIL(LIMIT_EXCEEDED, "wait of %u ms exceeds max_wait %u ms",
		     f->wait_ms, env->cfg->max_wait_ms);
	if (f->max_bytes && f->max_bytes < 1024)
		FAIL(BAD_REQUEST, "max_bytes must be at least 1024");
	size_t n;
	int rc = handlers_fetch_fill(env, t, f->subscription, max, f->max_bytes,
				     f->consumer, reply, &n);
	if (rc)
		return rc;
	if (reply->status == ST(OK) && n == 0 && f->wait_ms > 0) {
		if (env->held_fetches >= env->cfg->max_held_fetches) {
			reply->body_case = HANDOFF__WIRE__REPLY__BODY__NOT_SET;
			FAIL(LIMIT_EXCEEDED,
			     "%u fetches already waiting "
			     "(max_held_fetches)",
			     env->cfg->max_held_fetches);
		}
		SubRecord *sub;
		uint64_t due, ev;
		rc = store_sub_by_name(t, f->subscription, &sub);
		if (rc)
			return rc;
		rc = store_ready_first(t, sub->id, &due, &ev);
		if (rc && rc != MDB_NOTFOUND)
			return rc;
		env->held_fetches++; /* counts fetches held earlier this turn */
		hold->hold = true;
		hold->sub_id = sub->id;
		hold->paused = sub->paused;
		/* paused: only a resume (which marks it ready) wakes it */
		hold->next_check = rc || sub->paused ? UINT64_MAX : due;
	}
	return 0;
}

static int items_reply(struct txn *t, Reply *reply, size_t n,
		       Handoff__Wire__Status **statuses)
{
	Handoff__Wire__ItemsReply *ir = alloc0(t, sizeof *ir);
	*statuses = alloc0(t, (n ? n : 1) * sizeof **statuses);
	if (!ir || !*statuses)
		return ENOMEM;
	handoff__wire__items_reply__init(ir);
	ir->n_statuses = n;
	ir->statuses = *statuses;
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_ITEMS;
	reply->items = ir;
	return 0;
}

static int handle_ack(struct handler_env *env, struct txn *t,
		      const Handoff__Wire__AckRequest *a, Reply *reply)
{
	CHECK_NAME("subscription", a->subscription);
	if (a->n_items == 0)
		FAIL(BAD_REQUEST, "ack carries no items");
	if (a->n_items > env->cfg->max_batch)
		FAIL(LIMIT_EXCEEDED, "%zu items exceed max_batch %u",
		     a->n_items, env->cfg->max_batch);
	SubRecord *sub;
	int rc = store_sub_by_name(t, a->subscription, &sub);
	if (rc == MDB_NOTFOUND)
		FAIL(NOT_FOUND, "no subscription '%s'", a->subscription);
	if (rc)
		return rc;
	Handoff__Wire__Status *st;
	rc = items_reply(t, reply, a->n_items, &st);
	for (size_t i = 0; i < a->n_items && !rc; i++)
		rc = sched_ack(t, sub, a->items[i]->event_id,
			       a->items[i]->lease_token, &st[i]);
	return rc;
}

static int handle_nack(struct handler_env *env, struct txn *t,
		       const Handoff__Wire__NackRequest *a, Reply *reply)
{
	CHECK_NAME("subscription", a->subscription);
	if (a->n_items == 0)
		FAIL(BAD_REQUEST, "nack carries no items");
	if (a->n_items > env->cfg->max_batch)
		FAIL(LIMIT_EXCEEDED, "%zu items exceed max_batch %u",
		     a->n_items, env->cfg->max_batch);
	for (size_t i = 0; i < a->n_items; i++) {
		const Handoff__Wire__NackItem *it = a->items[i];
		if (it->reason && strlen(it->reason) > MAX_REASON_BYTES)
			FAIL(BAD_REQUEST,
			     "item %zu: reason longer than %d bytes", i,
			     MAX_REASON_BYTES);
		if (it->delay_ms > 24u * 3600 * 1000)
			FAIL(BAD_REQUEST, "item %zu: delay longer than 24h", i);
		if (a->release && (it->delay_ms || it->permanent))
			FAIL(BAD_REQUEST,
			     "item %zu: a release takes no delay and is not "
			     "permanent",
			     i);
	}
	SubRecord *sub;
	int rc = store_sub_by_name(t, a->subscription, &sub);
	if (rc == MDB_NOTFOUND)
		FAIL(NOT_FOUND, "no subscription '%s'", a->subscription);
	if (rc)
		return rc;
	Handoff__Wire__Status *st;
	rc = items_reply(t, reply, a->n_items, &st);
	for (size_t i = 0; i < a->n_items && !rc; i++) {
		const Handoff__Wire__NackItem *it = a->items[i];
		if (a->release)
			rc = sched_release(t, sub, it->event_id,
					   it->lease_token, it->reason, &st[i]);
		else
			rc = sched_nack(t, sub, it->event_id, it->lease_token,
					it->delay_ms, it->permanent, it->reason,
					&st[i]);
	}
	return rc;
}

static int handle_extend(struct handler_env *env, struct txn *t,
			 const Handoff__Wire__ExtendRequest *a, Reply *reply)
{
	CHECK_NAME("subscription", a->subscription);
	if (a->n_items == 0)
		FAIL(BAD_REQUEST, "extend carries no items");
	if (a->n_items > env->cfg->max_batch)
		FAIL(LIMIT_EXCEEDED, "%zu items exceed max_batch %u",
		     a->n_items, env->cfg->max_batch);
	if (a->extend_ms == 0)
		FAIL(BAD_REQUEST, "extend_ms must be at least 1");
	if (a->extend_ms > MAX_EXTEND_MS)
		FAIL(LIMIT_EXCEEDED, "extend of %u ms exceeds the 12h maximum",
		     a->extend_ms);
	SubRecord *sub;
	int rc = store_sub_by_name(t, a->subscription, &sub);
	if (rc == MDB_NOTFOUND)
		FAIL(NOT_FOUND, "no subscription '%s'", a->subscription);
	if (rc)
		return rc;
	Handoff__Wire__Status *st;
	rc = items_reply(t, reply, a->n_items, &st);
	for (size_t i = 0; i < a->n_items && !rc; i++)
		rc = sched_extend(t, sub, a->items[i]->event_id,
				  a->items[i]->lease_token, a->extend_ms,
				  &st[i]);
	return rc;
}

/* ---- dead letters ----------------------------------------------------- */

static bool filter_match(const Handoff__Wire__DlqFilter *f,
			 const DeliveryRecord *d)
{
	if (!f)
		return true;
	if (f->dead_since_ms && d->dead_ms < f->dead_since_ms)
		return false;
	if (f->dead_until_ms && d->dead_ms > f->dead_until_ms)
		return false;
	if (f->reason &&
	    records_dead_reason_to_wire(d->dead_reason) != f->reason)
		return false;
	if (f->error_contains && *f->error_contains &&
	    (!d->error || !strstr(d->error, f->error_contains)))
		return false;
	return true;
}

/* A dead letter as shown. Its event record or payload may be gone or
 * damaged (a payload that failed its checksum is why many are here): the
 * fields they would fill are then left empty. */
static int dead_letter_view(struct txn *t, uint64_t ev, const DeliveryRecord *d,
			    bool full, Handoff__Wire__DeadLetter **out)
{
	Handoff__Wire__DeadLetter *dl = alloc0(t, sizeof *dl);
	*out = dl;
	if (!dl)
		return ENOMEM;
	handoff__wire__dead_letter__init(dl);
	dl->event_id = ev;
	dl->reason = records_dead_reason_to_wire(d->dead_reason);
	dl->error = d->error;
	dl->dead_ms = d->dead_ms;
	dl->attempts = d->attempts;
	dl->replays = d->replays;
	EventMeta *m;
	int rc = store_event_get(t, ev, &m);
	if (rc == 0) {
		dl->topic = m->topic;
		dl->key = m->key;
		dl->published_ms = m->published_ms;
	} else if (rc != MDB_NOTFOUND && rc != STORE_EDECODE) {
		return rc;
	}
	if (!full)
		return 0;
	dl->n_history = d->n_history;
	rc = records_history_to_wire(t->arena, d->history, d->n_history,
				     &dl->history);
	if (rc)
		return rc;
	EventBody *b;
	rc = store_payload_get(t, ev, &b);
	if (rc == MDB_NOTFOUND || rc == STORE_EDECODE)
		return 0;
	if (rc)
		return rc;
	dl->payload = b->payload;
	dl->n_headers = b->n_headers;
	return records_headers_to_wire(t->arena, b->headers, b->n_headers,
				       &dl->headers);
}

static int find_sub(struct handler_env *env, struct txn *t, const char *name,
		    SubRecord **sub, Reply *reply)
{
	*sub = NULL;
	CHECK_NAME("subscription", name);
	int rc = store_sub_by_name(t, name, sub);
	if (rc == MDB_NOTFOUND) {
		*sub = NULL;
		FAIL(NOT_FOUND, "no subscription '%s'", name);
	}
	return rc;
}

/* Next dead letter of sub after *cursor that matches f; MDB_NOTFOUND at
 * the end, SCAN_BUDGET_SPENT when this request may look at no more. */
#define SCAN_BUDGET_SPENT 1
static int dlq_next_match(struct txn *t, SubRecord *sub,
			  const Handoff__Wire__DlqFilter *f, uint64_t *cursor,
			  DeliveryRecord **d, size_t *budget)
{
	int rc;
	while ((rc = store_dlq_next(t, sub->id, *cursor, cursor)) == 0) {
		if ((*budget)-- == 0)
			return SCAN_BUDGET_SPENT;
		rc = store_delivery_get(t, *cursor, sub->id, d);
		/* a stray entry, or a damaged record: skipped, so that the
		 * rest of the queue can still be listed and acted on */
		if (rc == MDB_NOTFOUND || rc == STORE_EDECODE)
			continue;
		if (rc)
			return rc;
		if (filter_match(f, *d))
			return 0;
	}
	return rc;
}

static int handle_dlq_list(struct handler_env *env, struct txn *t,
			   const Handoff__Wire__DlqListRequest *l, Reply *reply)
{
	SubRecord *sub;
	int rc = find_sub(env, t, l->subscription, &sub, reply);
	if (rc || !sub)
		return rc;
	uint32_t limit = l->limit ? l->limit : DEFAULT_LIST_LIMIT;
	if (limit > env->cfg->max_batch)
		FAIL(LIMIT_EXCEEDED, "limit %u exceeds max_batch %u", limit,
		     env->cfg->max_batch);
	Handoff__Wire__DlqListReply *lr = alloc0(t, sizeof *lr);
	Handoff__Wire__DeadLetter **v =
		arena_alloc(t->arena, limit * sizeof *v);
	if (!lr || !v)
		return ENOMEM;
	handoff__wire__dlq_list_reply__init(lr);
	uint64_t cursor = l->filter ? l->filter->after_event_id : 0;
	size_t budget = DLQ_SCAN_BUDGET, n = 0;
	DeliveryRecord *d;
	while ((rc = dlq_next_match(t, sub, l->filter, &cursor, &d, &budget)) ==
	       0) {
		if (n == limit) {
			lr->more = true;
			break;
		}
		rc = dead_letter_view(t, cursor, d, false, &v[n++]);
		if (rc)
			return rc;
	}
	if (rc == SCAN_BUDGET_SPENT)
		lr->more = true;
	else if (rc && rc != MDB_NOTFOUND)
		return rc;
	lr->n_dead_letters = n;
	lr->dead_letters = v;
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_DLQ_LIST;
	reply->dlq_list = lr;
	return 0;
}

static int handle_dlq_show(struct handler_env *env, struct txn *t,
			   const Handoff__Wire__DlqShowRequest *s, Reply *reply)
{
	SubRecord *sub;
	DeliveryRecord *d;
	int rc = find_sub(env, t, s->subscription, &sub, reply);
	if (rc || !sub)
		return rc;
	rc = store_delivery_get(t, s->event_id, sub->id, &d);
	if (rc == MDB_NOTFOUND || (!rc && d->state != STORED(DEAD)))
		FAIL(NOT_FOUND,
		     "event %llu is not in the dead-letter queue of "
		     "'%s'",
		     (unsigned long long)s->event_id, s->subscription);
	if (rc)
		return rc;
	Handoff__Wire__DlqShowReply *sr = alloc0(t, sizeof *sr);
	if (!sr)
		return ENOMEM;
	handoff__wire__dlq_show_reply__init(sr);
	rc = dead_letter_view(t, s->event_id, d, true, &sr->dead_letter);
	if (rc)
		return rc;
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_DLQ_SHOW;
	reply->dlq_show = sr;
	return 0;
}

/* ---- hot backup (backup.h) ----------------------------------------------- */

static int audit(struct handler_env *env, struct txn *t, const char *action,
		 const char *sub, const uint64_t *ids, size_t n_ids,
		 const char *selector, size_t missing, const char *reason,
		 const char *command_id, uint64_t *seq);

/* Start a backup (audited; it starts once this turn commits) or tell how
 * one goes. The copy runs on the backup thread: nothing here waits. */
static int handle_backup(struct handler_env *env, struct txn *t,
			 const Handoff__Wire__BackupRequest *q, Reply *reply)
{
	struct backup_view v;
	bool started = false;
	char why[512];
	int st = backup_request(env->backup, q->name ? q->name : "",
				q->status_only, t->now_ms, &v, &started, why,
				sizeof why);
	if (st != HANDOFF__WIRE__STATUS__OK) {
		handlers_status(t->arena, reply, st, "%s", why);
		return 0;
	}
	if (started) {
		int rc = audit(env, t, "backup", "", NULL, 0, v.path, 0, "", "",
			       NULL);
		if (rc)
			return rc;
	}
	Handoff__Wire__BackupReply *br = alloc0(t, sizeof *br);
	if (!br)
		return ENOMEM;
	handoff__wire__backup_reply__init(br);
	br->name = arena_strdup(t->arena, v.name);
	br->path = arena_strdup(t->arena, v.path);
	br->error = arena_strdup(t->arena, v.error);
	if (!br->name || !br->path || !br->error)
		return ENOMEM;
	br->state = (Handoff__Wire__BackupState)v.state;
	br->bytes = v.bytes;
	br->duration_ms = v.duration_ms;
	br->started_ms = v.started_ms;
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_BACKUP;
	reply->backup = br;
	return 0;
}

/* ---- operator audit ---------------------------------------------------- */

/* Record an operator action durably, in this turn's transaction. */
static int audit(struct handler_env *env, struct txn *t, const char *action,
		 const char *sub, const uint64_t *ids, size_t n_ids,
		 const char *selector, size_t missing, const char *reason,
		 const char *command_id, uint64_t *seq)
{
	AuditRecord r = HANDOFF__STORE__AUDIT_RECORD__INIT;
	r.at_ms = t->now_ms;
	r.key_id = env->caller ? env->caller->id : (char *)"";
	r.role = (char *)auth_role_name(env->caller);
	r.action = (char *)action;
	r.subscription = (char *)sub;
	r.event_ids = (uint64_t *)ids;
	r.n_event_ids = n_ids;
	r.selector = (char *)selector;
	r.count = (uint32_t)n_ids;
	r.missing = (uint32_t)missing;
	r.reason = (char *)(reason ? reason : "");
	r.command_id = (char *)(command_id ? command_id : "");
	int rc = store_audit_append(t, &r);
	if (rc)
		return rc;
	if (seq)
		*seq = r.seq;
	log_event(LOG_WARN, "operator_action", LU("audit_seq", r.seq),
		  LS("action", action), LS("subscription", sub),
		  LU("count", n_ids), LS("selector", selector),
		  LS("key", r.key_id), LS("role", r.role),
		  LS("reason", r.reason), LS("command_id", r.command_id),
		  LOG_END);
	return 0;
}

static int handle_audit_list(struct handler_env *env, struct txn *t,
			     const Handoff__Wire__AuditListRequest *l,
			     Reply *reply)
{
	uint32_t limit = l->limit ? l->limit : DEFAULT_LIST_LIMIT;
	if (limit > env->cfg->max_batch)
		FAIL(LIMIT_EXCEEDED, "limit %u exceeds max_batch %u", limit,
		     env->cfg->max_batch);
	Handoff__Wire__AuditListReply *ar = alloc0(t, sizeof *ar);
	Handoff__Wire__AuditRecord **v =
		arena_alloc(t->arena, limit * sizeof *v);
	if (!ar || !v)
		return ENOMEM;
	handoff__wire__audit_list_reply__init(ar);
	uint64_t after = l->after_seq;
	size_t n = 0;
	AuditRecord *r;
	int rc;
	while ((rc = store_audit_next(t, after, &r)) == 0) {
		if (n == limit) {
			ar->more = true;
			break;
		}
		rc = records_audit_to_wire(t->arena, r, &v[n++]);
		if (rc)
			return rc;
		after = r->seq;
	}
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	ar->n_records = n;
	ar->records = v;
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_AUDIT_LIST;
	reply->audit_list = ar;
	return 0;
}

/* What a replay or purge acted on, as text for the audit record. */
static const char *selector_text(struct txn *t,
				 const Handoff__Wire__DlqActionRequest *a)
{
	char buf[512];
	if (a->n_event_ids) {
		snprintf(buf, sizeof buf, "event_ids (%zu given)",
			 a->n_event_ids);
	} else {
		const Handoff__Wire__DlqFilter *f = a->filter;
		snprintf(
			buf, sizeof buf,
			"filter after_event_id=%llu dead_since_ms=%llu "
			"dead_until_ms=%llu reason=%d error_contains='%.200s'%s "
			"limit=%u",
			f ? (unsigned long long)f->after_event_id : 0ull,
			f ? (unsigned long long)f->dead_since_ms : 0ull,
			f ? (unsigned long long)f->dead_until_ms : 0ull,
			f ? (int)f->reason : 0,
			f && f->error_contains ? f->error_contains : "",
			a->all ? " all" : "", a->limit);
	}
	return arena_strdup(t->arena, buf);
}

/* A command resent with an id already applied gets the recorded reply. */
static int command_replayed(struct txn *t, const char *id, const char *verb,
			    Reply *reply, bool *done)
{
	CommandRecord *c;
	*done = false;
	int rc = store_command_get(t, id, &c);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return rc; /* damaged too: never run the command twice */
	Handoff__Wire__DlqActionReply *ar;
	rc = records_command_reply_to_wire(t->arena, c->reply, &ar);
	if (rc)
		return rc;
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_DLQ_ACTION;
	reply->dlq_action = ar;
	log_event(LOG_INFO, "operator_command_repeated", LS("command_id", id),
		  LS("action", verb), LU("audit_seq", c->audit_seq), LOG_END);
	*done = true;
	return 0;
}

static int remember_command(struct handler_env *env, struct txn *t,
			    const char *id, uint64_t audit_seq,
			    const Handoff__Wire__DlqActionReply *ar)
{
	CommandRecord c = HANDOFF__STORE__COMMAND_RECORD__INIT;
	c.audit_seq = audit_seq;
	c.created_ms = t->now_ms;
	int rc = records_command_reply_to_store(t->arena, ar, &c.reply);
	if (!rc)
		rc = store_command_put(t, id, &c);
	if (!rc)
		rc = store_expiry_put(t, t->now_ms + env->cfg->dedup_window_ms,
				      EXPIRY_COMMAND, id, strlen(id));
	return rc;
}

typedef int (*dlq_action_fn)(struct txn *, SubRecord *, uint64_t, Status *);

static int handle_dlq_action(struct handler_env *env, struct txn *t,
			     const Handoff__Wire__DlqActionRequest *a,
			     Reply *reply, bool purge)
{
	const char *verb = purge ? "purge" : "replay";
	dlq_action_fn act = purge ? sched_purge : sched_replay;
	SubRecord *sub;
	int rc = find_sub(env, t, a->subscription, &sub, reply);
	if (rc || !sub)
		return rc;
	uint32_t limit = a->limit ? a->limit : DEFAULT_LIST_LIMIT;
	if (limit > env->cfg->max_batch || a->n_event_ids > env->cfg->max_batch)
		FAIL(LIMIT_EXCEEDED,
		     "more than max_batch %u dead letters in one "
		     "request",
		     env->cfg->max_batch);
	if (purge && a->n_event_ids == 0 && !a->all && !a->dry_run)
		FAIL(BAD_REQUEST, "purge without event ids needs all=true");
	if (a->command_id && strlen(a->command_id) > MAX_COMMAND_ID)
		FAIL(BAD_REQUEST, "command_id over %d bytes", MAX_COMMAND_ID);
	if (a->reason && strlen(a->reason) > MAX_REASON_BYTES)
		FAIL(BAD_REQUEST, "reason over %d bytes", MAX_REASON_BYTES);
	bool has_cmd = a->command_id && *a->command_id && !a->dry_run;
	if (has_cmd) {
		bool repeated;
		rc = command_replayed(t, a->command_id, verb, reply, &repeated);
		if (rc || repeated)
			return rc;
	}
	size_t cap = a->n_event_ids ? a->n_event_ids : limit;
	Handoff__Wire__DlqActionReply *ar = alloc0(t, sizeof *ar);
	uint64_t *done = alloc0(t, (cap + 1) * sizeof *done);
	uint64_t *missing = alloc0(t, (cap + 1) * sizeof *missing);
	if (!ar || !done || !missing)
		return ENOMEM;
	handoff__wire__dlq_action_reply__init(ar);
	size_t n_done = 0, n_missing = 0;
	Status st;
	if (a->n_event_ids) {
		for (size_t i = 0; i < a->n_event_ids; i++) {
			uint64_t ev = a->event_ids[i];
			DeliveryRecord *d;
			if (a->dry_run) {
				rc = store_delivery_get(t, ev, sub->id, &d);
				st = (!rc && d->state == STORED(DEAD)) ?
					     ST(OK) :
					     ST(NOT_FOUND);
				/* a damaged record is reported missing (the
				 * real replay or purge fails on it instead) */
				if (rc == MDB_NOTFOUND || rc == STORE_EDECODE)
					rc = 0;
			} else {
				rc = act(t, sub, ev, &st);
			}
			if (rc)
				return rc;
			if (st == ST(OK))
				done[n_done++] = ev;
			else
				missing[n_missing++] = ev;
		}
	} else {
		uint64_t cursor = a->filter ? a->filter->after_event_id : 0;
		size_t budget = DLQ_SCAN_BUDGET;
		DeliveryRecord *d;
		while ((rc = dlq_next_match(t, sub, a->filter, &cursor, &d,
					    &budget)) == 0) {
			if (n_done == limit) {
				ar->more = true;
				break;
			}
			if (!a->dry_run) {
				rc = act(t, sub, cursor, &st);
				if (rc)
					return rc;
			}
			done[n_done++] = cursor;
		}
		if (rc == SCAN_BUDGET_SPENT)
			ar->more = true;
		else if (rc && rc != MDB_NOTFOUND)
			return rc;
	}
	log_event(LOG_INFO, purge ? "dlq_purge" : "dlq_replay",
		  LS("subscription", sub->name), LU("count", n_done),
		  LU("missing", n_missing), LU("dry_run", a->dry_run),
		  LU("by_filter", a->n_event_ids == 0), LOG_END);
	ar->n_event_ids = n_done;
	ar->event_ids = done;
	ar->n_missing = n_missing;
	ar->missing = missing;
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_DLQ_ACTION;
	reply->dlq_action = ar;
	if (a->dry_run)
		return 0;
	uint64_t seq = 0;
	rc = audit(env, t, verb, sub->name, done, n_done, selector_text(t, a),
		   n_missing, a->reason, a->command_id, &seq);
	if (!rc && has_cmd)
		rc = remember_command(env, t, a->command_id, seq, ar);
	return rc;
}

/* ---- trace, stats, ping ----------------------------------------------- */

static int handle_trace(struct handler_env *env, struct txn *t,
			const Handoff__Wire__TraceRequest *q, Reply *reply)
{
	(void)env;
	EventMeta *m;
	int rc = store_event_get(t, q->event_id, &m);
	if (rc == MDB_NOTFOUND)
		FAIL(NOT_FOUND,
		     "no record of event %llu (never published, or "
		     "past the history period)",
		     (unsigned long long)q->event_id);
	Handoff__Wire__TraceReply *tr = alloc0(t, sizeof *tr);
	if (!tr)
		return ENOMEM;
	handoff__wire__trace_reply__init(tr);
	tr->event_id = q->event_id;
	if (rc == STORE_EDECODE) {
		tr->corrupt = true;
		log_event(LOG_ERROR, "event_corrupt",
			  LU("event_id", q->event_id),
			  LS("where", "event record"), LOG_END);
	} else if (rc) {
		return rc;
	} else {
		tr->topic = m->topic;
		tr->key = m->key;
		tr->published_ms = m->published_ms;
		tr->payload_bytes = m->payload_bytes;
		tr->payload_removed = m->payload_removed;
		tr->idempotency_key = m->idempotency_key;
		EventBody *b;
		rc = m->payload_removed ? MDB_NOTFOUND :
					  store_payload_get(t, q->event_id, &b);
		if (rc == STORE_EDECODE) {
			tr->corrupt = true;
			log_event(LOG_ERROR, "event_corrupt",
				  LU("event_id", q->event_id),
				  LS("where", "payload"), LOG_END);
		} else if (rc && rc != MDB_NOTFOUND) {
			return rc;
		}
	}
	struct ptr_list l = { 0 };
	uint32_t sid = 0;
	bool first = true;
	for (;;) {
		rc = store_delivery_next_sub(t, q->event_id, first ? 0 : sid,
					     &sid);
		first = false;
		if (rc == MDB_NOTFOUND)
			break;
		if (rc)
			return rc;
		DeliveryRecord *d;
		rc = store_delivery_get(t, q->event_id, sid, &d);
		if (rc == STORE_EDECODE || rc == MDB_NOTFOUND)
			continue; /* damaged: left out of the trace */
		if (rc)
			return rc;
		Handoff__Wire__SubscriptionTrace *s = alloc0(t, sizeof *s);
		if (!s || ptr_push(t, &l, s))
			return ENOMEM;
		handoff__wire__subscription_trace__init(s);
		SubRecord *sub;
		char idname[32];
		bool deleting = false;
		rc = store_sub_get(t, sid, &sub);
		if (rc == 0) {
			s->subscription = sub->name;
			deleting = sub->deleting;
			s->paused = sub->paused && !sub->deleting;
		} else if (rc == MDB_NOTFOUND || rc == STORE_EDECODE) {
			/* removed since, or damaged: named by its id */
			snprintf(idname, sizeof idname, "#%u", sid);
			s->subscription = arena_strdup(t->arena, idname);
		} else {
			return rc;
		}
		s->state = records_state_to_wire(d->state);
		if (d->state == STORED(READY) && d->due_ms > t->now_ms)
			s->state = DS(DELAYED);
		bool live = d->state == STORED(READY) ||
			    d->state == STORED(LEASED) ||
			    d->state == STORED(DEAD);
		if (live && deleting) {
			/* Unsubscribed; the background drain has not reached
			 * this delivery yet, but it will never be delivered. */
			s->state = DS(UNSUBSCRIBED);
		}
		s->consumer = d->consumer;
		s->lease_deadline_ms = d->lease_deadline_ms;
		s->due_ms = d->due_ms;
		s->done_ms = d->done_ms;
		s->dead_reason = records_dead_reason_to_wire(d->dead_reason);
		s->error = d->error;
		s->replays = d->replays;
		s->n_history = d->n_history;
		rc = records_history_to_wire(t->arena, d->history, d->n_history,
					     &s->history);
		if (rc)
			return rc;
		if (sid == UINT32_MAX)
			break;
	}
	tr->n_subscriptions = l.n;
	tr->subscriptions = (Handoff__Wire__SubscriptionTrace **)l.v;
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_TRACE;
	reply->trace = tr;
	return 0;
}

/* ---- completion receipts (await) -------------------------------------- */

#define AR(x) HANDOFF__WIRE__AWAIT_RESULT__AWAIT_RESULT_##x

static bool await_names(const Handoff__Wire__AwaitRequest *q, const char *name)
{
	if (q->n_subscriptions == 0)
		return true;
	for (size_t i = 0; i < q->n_subscriptions; i++)
		if (strcmp(q->subscriptions[i], name) == 0)
			return true;
	return false;
}

static const char *await_dead_reason(Handoff__Wire__DeadReason r)
{
	switch (r) {
	case HANDOFF__WIRE__DEAD_REASON__DEAD_REASON_MAX_ATTEMPTS:
		return "max_attempts";
	case HANDOFF__WIRE__DEAD_REASON__DEAD_REASON_PERMANENT:
		return "permanent";
	case HANDOFF__WIRE__DEAD_REASON__DEAD_REASON_CORRUPT:
		return "corrupt";
	default:
		return "unknown reason";
	}
}

/* One awaited delivery as shown, its state as trace shows it. */
static int await_state(struct txn *t, uint64_t ev, uint32_t sid,
		       const SubRecord *sub, Handoff__Wire__AwaitState **out)
{
	Handoff__Wire__AwaitState *s = alloc0(t, sizeof *s);
	if (!s)
		return ENOMEM;
	handoff__wire__await_state__init(s);
	s->subscription = sub->name;
	s->paused = sub->paused && !sub->deleting;
	*out = s;
	DeliveryRecord *d;
	int rc = store_delivery_get(t, ev, sid, &d);
	if (rc == STORE_EDECODE || rc == MDB_NOTFOUND) {
		/* never counted as acked; the await times out on it */
		s->error = (char *)"delivery record damaged";
		return 0;
	}
	if (rc)
		return rc;
	s->state = records_state_to_wire(d->state);
	if (d->state == STORED(READY) && d->due_ms > t->now_ms)
		s->state = DS(DELAYED);
	if (sub->deleting &&
	    (d->state == STORED(READY) || d->state == STORED(LEASED) ||
	     d->state == STORED(DEAD)))
		s->state = DS(UNSUBSCRIBED); /* never delivered again */
	s->attempts = d->attempts;
	s->dead_reason = records_dead_reason_to_wire(d->dead_reason);
	s->error = d->error;
	if (d->state == STORED(LEASED))
		s->consumer = d->consumer;
	s->done_ms = d->done_ms;
	s->dead_ms = d->dead_ms;
	return 0;
}

int handlers_await_fill(struct handler_env *env, struct txn *t,
			const Handoff__Wire__AwaitRequest *q, bool held,
			bool final, Reply *reply, bool *complete)
{
	*complete = true;
	EventMeta *m;
	int rc = store_event_get(t, q->event_id, &m);
	if (rc == MDB_NOTFOUND && q->event_id > 0 &&
	    q->event_id < t->next_event_id)
		FAIL(NOT_FOUND,
		     "event %llu finished more than the history period ago "
		     "and its record is gone: every subscription was done "
		     "with it (acked, purged or unsubscribed), but which, the "
		     "broker no longer knows",
		     (unsigned long long)q->event_id);
	if (rc == MDB_NOTFOUND)
		FAIL(NOT_FOUND, "no event %llu (never published)",
		     (unsigned long long)q->event_id);
	if (rc == STORE_EDECODE)
		FAIL(INTERNAL, "event %llu's record is damaged",
		     (unsigned long long)q->event_id);
	if (rc)
		return rc;
	if (!auth_may_await(env->caller, m->topic))
		FAIL(PERMISSION_DENIED,
		     "permission denied: key '%s' may not await events of "
		     "topic '%s'",
		     env->caller->id, m->topic);
	Handoff__Wire__AwaitReply *ar = alloc0(t, sizeof *ar);
	if (!ar)
		return ENOMEM;
	handoff__wire__await_reply__init(ar);
	ar->event_id = q->event_id;
	ar->topic = m->topic;
	struct ptr_list l = { 0 };
	uint32_t sid = 0;
	bool first = true;
	bool *found = alloc0(t, q->n_subscriptions + 1);
	if (!found)
		return ENOMEM;
	for (;;) {
		rc = store_delivery_next_sub(t, q->event_id, first ? 0 : sid,
					     &sid);
		first = false;
		if (rc == MDB_NOTFOUND)
			break;
		if (rc)
			return rc;
		SubRecord *sub;
		rc = store_sub_get(t, sid, &sub);
		if (rc == MDB_NOTFOUND || rc == STORE_EDECODE) {
			if (q->n_subscriptions)
				continue; /* cannot be named */
			/* removed since (unsubscribed), or damaged */
			sub = alloc0(t, sizeof *sub);
			char idname[32];
			snprintf(idname, sizeof idname, "#%u", sid);
			if (!sub ||
			    !(sub->name = arena_strdup(t->arena, idname)))
				return ENOMEM;
			sub->deleting = rc == MDB_NOTFOUND;
		} else if (rc) {
			return rc;
		}
		if (await_names(q, sub->name)) {
			Handoff__Wire__AwaitState *s;
			for (size_t i = 0; i < q->n_subscriptions; i++)
				if (strcmp(q->subscriptions[i], sub->name) == 0)
					found[i] = true;
			rc = await_state(t, q->event_id, sid, sub, &s);
			if (!rc && ptr_push(t, &l, s))
				rc = ENOMEM;
			if (rc)
				return rc;
		}
		if (sid == UINT32_MAX)
			break;
	}
	for (size_t i = 0; i < q->n_subscriptions; i++) {
		if (found[i])
			continue;
		if (held) {
			/* It was delivered the event when the await came: its
			 * subscription has been deleted since (and its record
			 * removed, or its name taken by a new one). */
			Handoff__Wire__AwaitState *s = alloc0(t, sizeof *s);
			if (!s || ptr_push(t, &l, s))
				return ENOMEM;
			handoff__wire__await_state__init(s);
			s->subscription = q->subscriptions[i];
			s->state = DS(UNSUBSCRIBED);
			continue;
		}
		FAIL(BAD_REQUEST,
		     "subscription '%s' was not delivered event %llu "
		     "(not a subscription of topic '%s', or created "
		     "after the event)",
		     q->subscriptions[i], (unsigned long long)q->event_id,
		     m->topic);
	}
	if (l.n == 0)
		FAIL(NOT_FOUND, "event %llu has no delivery records left",
		     (unsigned long long)q->event_id);
	ar->n_subscriptions = l.n;
	ar->subscriptions = (Handoff__Wire__AwaitState **)l.v;
	size_t acked = 0;
	const Handoff__Wire__AwaitState *lost = NULL;
	for (size_t i = 0; i < l.n; i++) {
		const Handoff__Wire__AwaitState *s = ar->subscriptions[i];
		if (s->state == DS(ACKED))
			acked++;
		/* a dead letter is named before a purge or an unsubscribe */
		if ((s->state == DS(DEAD) &&
		     (!lost || lost->state != DS(DEAD))) ||
		    (!lost &&
		     (s->state == DS(PURGED) || s->state == DS(UNSUBSCRIBED))))
			lost = s;
	}
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_AWAIT;
	reply->await = ar;
	if (lost) {
		ar->result = AR(DEAD_LETTERED);
		if (lost->state == DS(DEAD))
			handlers_status(
				t->arena, reply, ST(OK),
				"dead-lettered by '%s' (%s after %u attempts): %s",
				lost->subscription,
				await_dead_reason(lost->dead_reason),
				lost->attempts,
				lost->error && *lost->error ? lost->error :
							      "no error text");
		else
			handlers_status(t->arena, reply, ST(OK),
					"never to be acked by '%s': %s",
					lost->subscription,
					lost->state == DS(PURGED) ?
						"purged from its dead letters" :
						"unsubscribed");
	} else if (acked == l.n) {
		ar->result = AR(ACKED);
	} else if (final || q->timeout_ms == 0) {
		ar->result = AR(TIMED_OUT);
	} else {
		*complete = false;
	}
	return 0;
}

static int handle_await(struct handler_env *env, struct txn *t,
			const Handoff__Wire__AwaitRequest *q, Reply *reply,
			struct fetch_hold *hold)
{
	if (q->timeout_ms > env->cfg->max_wait_ms)
		FAIL(LIMIT_EXCEEDED, "timeout of %u ms exceeds max_wait %u ms",
		     q->timeout_ms, env->cfg->max_wait_ms);
	if (q->n_subscriptions > env->cfg->max_subscriptions)
		FAIL(LIMIT_EXCEEDED,
		     "%zu subscriptions named exceed max_subscriptions %u",
		     q->n_subscriptions, env->cfg->max_subscriptions);
	for (size_t i = 0; i < q->n_subscriptions; i++)
		CHECK_NAME("subscription", q->subscriptions[i]);
	bool complete;
	int rc = handlers_await_fill(env, t, q, false, false, reply, &complete);
	if (rc || complete)
		return rc;
	reply->body_case = HANDOFF__WIRE__REPLY__BODY__NOT_SET;
	reply->await = NULL;
	if (env->held_awaits >= env->cfg->max_held_fetches) {
		reply->retry_after_ms = 1000;
		FAIL(LIMIT_EXCEEDED,
		     "%u awaits already waiting (max_held_fetches)",
		     env->cfg->max_held_fetches);
	}
	env->held_awaits++; /* counts awaits held earlier this turn */
	hold->hold = true;
	hold->await = true;
	return 0;
}

#undef AR

static int handle_stats(struct handler_env *env, struct txn *t, Reply *reply)
{
	Handoff__Wire__StatsReply *sr = alloc0(t, sizeof *sr);
	if (!sr)
		return ENOMEM;
	handoff__wire__stats_reply__init(sr);
	sr->uptime_ms = t->now_ms - env->started_ms;
	sr->version = HANDOFF_BUILD_VERSION;
	sr->held_fetches = env->held_fetches;
	sr->held_awaits = env->held_awaits;
	store_usage(env->st, &sr->store_used_bytes, &sr->store_map_bytes);
	sr->store_limit_bytes = env->storage_limit_bytes ?
					env->storage_limit_bytes :
					sr->store_map_bytes;
	sr->store_headroom_bytes = env->storage_headroom_bytes;
	sr->store_refusing = env->storage_refusing;
	sr->store_format = STORE_FORMAT_VERSION;
	int rc = env->tele ?
			 telemetry_snapshot(env->tele, t->arena, &sr->process) :
			 0;
	if (rc)
		return rc;
	rc = store_payload_count(t, &sr->events_stored);
	if (rc)
		return rc;

	struct ptr_list tl = { 0 }, sl = { 0 };
	char *name = "";
	while ((rc = store_topic_next(t, name, &name)) == 0) {
		TopicRecord *tr;
		uint32_t *ids;
		size_t nsubs;
		rc = store_topic_get(t, name, &tr);
		if (rc == MDB_NOTFOUND || rc == STORE_EDECODE)
			continue; /* damaged: left out, the other topics shown */
		if (rc)
			return rc;
		rc = store_topic_subs(t, name, &ids, &nsubs);
		if (rc)
			return rc;
		Handoff__Wire__TopicStats *ts = alloc0(t, sizeof *ts);
		if (!ts || ptr_push(t, &tl, ts))
			return ENOMEM;
		handoff__wire__topic_stats__init(ts);
		ts->name = name;
		ts->published = tr->published;
		ts->subscriptions = (uint32_t)nsubs;
		ts->publish_rate =
			metrics_rate_of(env->metrics, METRIC_PUBLISHED, name);
	}
	if (rc != MDB_NOTFOUND)
		return rc;
	sr->n_topics = tl.n;
	sr->topics = (Handoff__Wire__TopicStats **)tl.v;

	uint32_t id = 0;
	SubRecord *r;
	uint64_t ready, delayed;
	while ((rc = next_live_sub(t, &id, &r, &ready, &delayed)) == 0) {
		Handoff__Wire__SubscriptionStats *ss = alloc0(t, sizeof *ss);
		if (!ss || ptr_push(t, &sl, ss))
			return ENOMEM;
		handoff__wire__subscription_stats__init(ss);
		ss->name = r->name;
		ss->topic = r->topic;
		ss->delayed = delayed;
		ss->ready = ready;
		ss->leased = r->leased;
		ss->dead = r->dead;
		ss->delivered = r->delivered;
		ss->acked = r->acked;
		ss->nacked = r->nacked;
		ss->expired = r->expired;
		ss->dead_lettered = r->dead_lettered;
		ss->replayed = r->replayed;
		ss->purged = r->purged;
		ss->ack_rate =
			metrics_rate_of(env->metrics, METRIC_ACKED, r->name);
		ss->deliver_rate = metrics_rate_of(env->metrics,
						   METRIC_DELIVERED, r->name);
		rc = pause_view(t, r, &ss->paused);
		if (rc)
			return rc;
		uint64_t due, ev;
		rc = store_ready_first(t, r->id, &due, &ev);
		if (rc && rc != MDB_NOTFOUND)
			return rc;
		if (!rc && due <= t->now_ms)
			ss->oldest_ready_age_ms = t->now_ms - due;
		ss->push_url = r->push_url ? r->push_url : (char *)"";
		rc = push_state_of(env, t, r, &ss->push_state,
				   &ss->push_last_error);
		if (rc)
			return rc;
	}
	if (rc != MDB_NOTFOUND)
		return rc;
	sr->n_subscriptions = sl.n;
	sr->subscriptions = (Handoff__Wire__SubscriptionStats **)sl.v;
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_STATS;
	reply->stats = sr;
	return 0;
}

/* The same state as GET /healthz and /readyz (health.h). */
static int handle_health(struct txn *t, Reply *reply)
{
	struct health_report hr;
	uint64_t now = clock_mono_ms();
	health_report(&hr, now);
	if (!hr.ready)
		health_log_failure(&hr, "health", "native", now);
	Handoff__Wire__HealthReply *h = alloc0(t, sizeof *h);
	if (!h)
		return ENOMEM;
	handoff__wire__health_reply__init(h);
	h->live = hr.live;
	h->ready = hr.ready;
	h->reason = (char *)hr.reason;
	h->store_open = hr.store_open;
	h->recovered = hr.recovered;
	h->storage_full = hr.storage_full;
	h->stopping = hr.stopping;
	h->loop_age_ms = hr.loop_age_ms;
	h->recovered_leases = hr.recovered_leases;
	h->version = HANDOFF_BUILD_VERSION;
	reply->body_case = HANDOFF__WIRE__REPLY__BODY_HEALTH;
	reply->health = h;
	return 0;
}

int handlers_apply(struct handler_env *env, struct txn *t, const Request *req,
		   Reply *reply, struct fetch_hold *hold)
{
	*hold = (struct fetch_hold){ .hold = false };
	if (req->protocol_version !=
	    HANDOFF__WIRE__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT)
		FAIL(UNSUPPORTED_VERSION,
		     "protocol version %u not supported "
		     "(this broker speaks %d)",
		     req->protocol_version,
		     HANDOFF__WIRE__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT);
	switch (req->body_case) {
	case HANDOFF__WIRE__REQUEST__BODY_PING: {
		Handoff__Wire__PingReply *p = alloc0(t, sizeof *p);
		if (!p)
			return ENOMEM;
		handoff__wire__ping_reply__init(p);
		p->version = HANDOFF_BUILD_VERSION;
		p->max_request_bytes = env->cfg->max_request_bytes;
		reply->body_case = HANDOFF__WIRE__REPLY__BODY_PING;
		reply->ping = p;
		return 0;
	}
	case HANDOFF__WIRE__REQUEST__BODY_PUBLISH:
		return handle_publish(env, t, req->publish, reply);
	case HANDOFF__WIRE__REQUEST__BODY_SUBSCRIBE:
		return handle_subscribe(env, t, req->subscribe, reply);
	case HANDOFF__WIRE__REQUEST__BODY_UNSUBSCRIBE:
		return handle_unsubscribe(env, t, req->unsubscribe, reply);
	case HANDOFF__WIRE__REQUEST__BODY_LIST_SUBSCRIPTIONS:
		return handle_list_subscriptions(env, t, reply);
	case HANDOFF__WIRE__REQUEST__BODY_FETCH:
		return handle_fetch(env, t, req->fetch, reply, hold);
	case HANDOFF__WIRE__REQUEST__BODY_ACK:
		return handle_ack(env, t, req->ack, reply);
	case HANDOFF__WIRE__REQUEST__BODY_NACK:
		return handle_nack(env, t, req->nack, reply);
	case HANDOFF__WIRE__REQUEST__BODY_EXTEND:
		return handle_extend(env, t, req->extend, reply);
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_LIST:
		return handle_dlq_list(env, t, req->dlq_list, reply);
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_SHOW:
		return handle_dlq_show(env, t, req->dlq_show, reply);
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_REPLAY:
		return handle_dlq_action(env, t, req->dlq_replay, reply, false);
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_PURGE:
		return handle_dlq_action(env, t, req->dlq_purge, reply, true);
	case HANDOFF__WIRE__REQUEST__BODY_TRACE:
		return handle_trace(env, t, req->trace, reply);
	case HANDOFF__WIRE__REQUEST__BODY_STATS:
		return handle_stats(env, t, reply);
	case HANDOFF__WIRE__REQUEST__BODY_AUDIT_LIST:
		return handle_audit_list(env, t, req->audit_list, reply);
	case HANDOFF__WIRE__REQUEST__BODY_PAUSE:
		return handle_pause(env, t, req->pause, reply);
	case HANDOFF__WIRE__REQUEST__BODY_RESUME:
		return handle_resume(env, t, req->resume, reply);
	case HANDOFF__WIRE__REQUEST__BODY_HEALTH:
		return handle_health(t, reply);
	case HANDOFF__WIRE__REQUEST__BODY_BACKUP:
		return handle_backup(env, t, req->backup, reply);
	case HANDOFF__WIRE__REQUEST__BODY_AWAIT:
		return handle_await(env, t, req->await, reply, hold);
	default:
		FAIL(BAD_REQUEST, "unknown or missing request type");
	}
}
