/*
 * auth.c — request authentication and roles; see auth.h.
 */
#include "auth.h"

#include <errno.h>
#include <fnmatch.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request_mac.h"

#define ST(x)	       HANDOFF__WIRE__STATUS__##x
#define MAX_KEY_ID     64
#define MAX_AUTH_BYTES 256
#define SESSION_CAP    (1u << 17) /* slots; at most half are used */
#define SWEEP_MS       1000
#define SEQ_WINDOW     64

_Static_assert(REQUEST_MAC_BYTES == 32, "auth_sign_clock's mac");
_Static_assert(CONFIG_SECRET_BYTES == REQUEST_MAC_SECRET_BYTES,
	       "a key's secret is the MAC's key");

struct auth_session {
	uint64_t session;
	const struct config_key *key; /* NULL: free slot */
	uint64_t max_seq;
	uint64_t seen; /* bit i: max_seq - i was accepted */
	uint64_t last_ms;
};

int auth_init(struct auth *a, const struct config *cfg, uint64_t started_ms)
{
	memset(a, 0, sizeof *a);
	a->cfg = cfg;
	a->started_ms = started_ms;
	if (cfg->n_keys == 0)
		return 0;
	a->table = calloc(SESSION_CAP, sizeof *a->table);
	if (!a->table)
		return ENOMEM;
	a->cap = SESSION_CAP;
	return 0;
}

void auth_fini(struct auth *a)
{
	free(a->table);
	memset(a, 0, sizeof *a);
}

bool auth_enabled(const struct auth *a)
{
	return a->cfg->n_keys > 0;
}

static const struct config_key *find_key(const struct auth *a, const char *id)
{
	for (size_t i = 0; i < a->cfg->n_keys; i++)
		if (strcmp(a->cfg->keys[i].id, id) == 0)
			return &a->cfg->keys[i];
	return NULL;
}

static size_t slot_of(const struct auth *a, const struct config_key *k,
		      uint64_t session)
{
	uint64_t h = session ^ ((uint64_t)(uintptr_t)k * 0x9e3779b97f4a7c15ull);
	h ^= h >> 31;
	return (size_t)(h % a->cap);
}

/* Drop sessions idle longer than the window: their requests are stale by
 * time anyway. Rebuilds the table (open addressing has no deletes). */
static void sweep(struct auth *a, uint64_t now)
{
	uint64_t window = a->cfg->request_window_ms;
	struct auth_session *old = a->table;
	struct auth_session *fresh = calloc(a->cap, sizeof *fresh);
	if (!fresh)
		return;
	a->used = 0;
	for (size_t i = 0; i < a->cap; i++) {
		if (!old[i].key || old[i].last_ms + 2 * window < now)
			continue;
		size_t s = slot_of(a, old[i].key, old[i].session);
		while (fresh[s].key)
			s = (s + 1) % a->cap;
		fresh[s] = old[i];
		a->used++;
	}
	free(old);
	a->table = fresh;
}

/* Accept (key, session, seq) once. */
static int check_seq(struct auth *a, const struct config_key *k,
		     uint64_t session, uint64_t seq, uint64_t now, char *why,
		     size_t whylen)
{
	if (now >= a->next_sweep_ms || a->used >= a->cap / 2) {
		sweep(a, now);
		a->next_sweep_ms = now + SWEEP_MS;
	}
	size_t s = slot_of(a, k, session);
	while (a->table[s].key &&
	       (a->table[s].key != k || a->table[s].session != session))
		s = (s + 1) % a->cap;
	struct auth_session *e = &a->table[s];
	if (!e->key) {
		if (a->used >= a->cap / 2) {
			snprintf(why, whylen,
				 "too many signing sessions at "
				 "once; retry later");
			return ST(STALE_REQUEST);
		}
		*e = (struct auth_session){ session, k, seq, 1, now };
		a->used++;
		return ST(OK);
	}
	e->last_ms = now;
	if (seq > e->max_seq) {
		uint64_t shift = seq - e->max_seq;
		e->seen = shift >= SEQ_WINDOW ? 1 : (e->seen << shift) | 1;
		e->max_seq = seq;
		return ST(OK);
	}
	uint64_t back = e->max_seq - seq;
	if (back >= SEQ_WINDOW || (e->seen & (1ull << back))) {
		snprintf(why, whylen,
			 "request sequence %llu of this session was "
			 "used already (a replay, or a resend after it was "
			 "applied): sign again",
			 (unsigned long long)seq);
		return ST(STALE_REQUEST);
	}
	e->seen |= 1ull << back;
	return ST(OK);
}

int auth_verify(struct auth *a, const Request *req, const void *buf, size_t len,
		uint64_t now_ms, const struct config_key **key, char *why,
		size_t whylen)
{
	const Handoff__Wire__Auth *au = req->auth;
	*key = NULL;
	if (!auth_enabled(a))
		return ST(OK);
	if (!au) {
		if (req->body_case == HANDOFF__WIRE__REQUEST__BODY_PING ||
		    req->body_case == HANDOFF__WIRE__REQUEST__BODY_HEALTH)
			return ST(OK);
		snprintf(why, whylen,
			 "authentication required: this broker "
			 "has access control on; sign requests with a key");
		return ST(PERMISSION_DENIED);
	}
	if (!au->key_id || strlen(au->key_id) > MAX_KEY_ID ||
	    au->mac.len != crypto_auth_hmacsha256_BYTES) {
		snprintf(why, whylen, "malformed authentication");
		return ST(PERMISSION_DENIED);
	}
	/* The Auth field must be the message's last bytes: the MAC covers
	 * everything before it, exactly as it was sent. */
	Request only = HANDOFF__WIRE__REQUEST__INIT;
	only.auth = (Handoff__Wire__Auth *)au;
	uint8_t tail[MAX_AUTH_BYTES];
	size_t tlen = handoff__wire__request__get_packed_size(&only);
	if (tlen > sizeof tail || tlen > len) {
		snprintf(why, whylen, "malformed authentication");
		return ST(PERMISSION_DENIED);
	}
	handoff__wire__request__pack(&only, tail);
	const uint8_t *bytes = buf;
	if (memcmp(bytes + len - tlen, tail, tlen) != 0) {
		snprintf(why, whylen,
			 "authentication must be the last field "
			 "of the request");
		return ST(PERMISSION_DENIED);
	}
	const struct config_key *k = find_key(a, au->key_id);
	uint8_t mac[crypto_auth_hmacsha256_BYTES];
	/* Unknown keys are answered like bad MACs, after the same work. */
	static const struct config_key nobody;
	request_mac((k ? k : &nobody)->secret, au->key_id, au->session, au->seq,
		    au->timestamp_ms, bytes, len - tlen, mac);
	int good = sodium_memcmp(mac, au->mac.data, sizeof mac) == 0;
	sodium_memzero(mac, sizeof mac);
	if (!k || !good) {
		snprintf(why, whylen,
			 "authentication failed: unknown key or "
			 "bad signature");
		return ST(PERMISSION_DENIED);
	}
	uint64_t window = a->cfg->request_window_ms;
	if (au->timestamp_ms + window < now_ms ||
	    au->timestamp_ms > now_ms + window) {
		snprintf(why, whylen,
			 "request signed %lld ms from now, outside "
			 "the %llu ms window: sign again",
			 (long long)(au->timestamp_ms - now_ms),
			 (unsigned long long)window);
		return ST(STALE_REQUEST);
	}
	if (au->timestamp_ms < a->started_ms) {
		snprintf(why, whylen,
			 "request signed before this broker "
			 "started: sign again");
		return ST(STALE_REQUEST);
	}
	int st = check_seq(a, k, au->session, au->seq, now_ms, why, whylen);
	if (st == ST(OK))
		*key = k;
	return st;
}

bool auth_sign_clock(const struct auth *a, const Request *req, uint64_t now_ms,
		     uint8_t mac[32])
{
	const Handoff__Wire__Auth *au = req->auth;
	if (!auth_enabled(a) || !au || !au->key_id)
		return false;
	const struct config_key *k = find_key(a, au->key_id);
	if (!k)
		return false;
	request_clock_mac(k->secret, au->key_id, au->session, au->seq, now_ms,
			  mac);
	return true;
}

static bool matches(char *const *patterns, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (fnmatch(patterns[i], name, 0) == 0)
			return true;
	return false;
}

bool auth_may_await(const struct config_key *key, const char *topic)
{
	if (!key || (key->roles & ROLE_OPERATOR))
		return true;
	return (key->roles & ROLE_PRODUCER) &&
	       matches(key->topics, key->n_topics, topic ? topic : "");
}

const char *auth_role_name(const struct config_key *key)
{
	if (!key)
		return "open";
	if (key->roles & ROLE_OPERATOR)
		return "operator";
	if (key->roles & ROLE_PRODUCER)
		return "producer";
	if (key->roles & ROLE_CONSUMER)
		return "consumer";
	return "monitor";
}

int auth_allows(const struct auth *a, const struct config_key *key,
		const Request *req, char *why, size_t whylen)
{
	const char *name = NULL, *what;
	unsigned need;
	if (!auth_enabled(a))
		return ST(OK);
	switch (req->body_case) {
	case HANDOFF__WIRE__REQUEST__BODY_PING:
	case HANDOFF__WIRE__REQUEST__BODY_HEALTH: /* probes carry no key */
		return ST(OK);
	case HANDOFF__WIRE__REQUEST__BODY_PUBLISH:
		need = ROLE_PRODUCER;
		what = "publish to";
		name = req->publish->topic;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_FETCH:
		need = ROLE_CONSUMER;
		what = "fetch from";
		name = req->fetch->subscription;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_ACK:
		need = ROLE_CONSUMER;
		what = "ack on";
		name = req->ack->subscription;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_NACK:
		need = ROLE_CONSUMER;
		what = "nack on";
		name = req->nack->subscription;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_EXTEND:
		need = ROLE_CONSUMER;
		what = "extend leases on";
		name = req->extend->subscription;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_AWAIT:
		/* Which topic is known only once the event is read: the
		 * handler checks a producer's topics (auth_may_await). */
		need = ROLE_PRODUCER | ROLE_OPERATOR;
		what = "await events";
		if (!key)
			break;
		if (key->roles & need)
			return ST(OK);
		snprintf(why, whylen,
			 "permission denied: key '%s' has neither the "
			 "producer nor the operator role to await events",
			 key->id);
		return ST(PERMISSION_DENIED);
	case HANDOFF__WIRE__REQUEST__BODY_STATS:
	case HANDOFF__WIRE__REQUEST__BODY_LIST_SUBSCRIPTIONS:
		/* read only: a metrics scraper's monitor key is enough */
		need = ROLE_OPERATOR | ROLE_MONITOR;
		what = "read stats";
		break;
	default:
		need = ROLE_OPERATOR;
		what = "run operator requests";
		break;
	}
	if (!key) {
		snprintf(why, whylen, "authentication required");
		return ST(PERMISSION_DENIED);
	}
	if (!(key->roles & need)) {
		snprintf(why, whylen,
			 "permission denied: key '%s' has no %s "
			 "role to %s%s%s",
			 key->id,
			 need == ROLE_PRODUCER ? "producer" :
			 need == ROLE_CONSUMER ? "consumer" :
			 need == ROLE_OPERATOR ? "operator" :
						 "operator or monitor",
			 what, name ? " " : "", name ? name : "");
		return ST(PERMISSION_DENIED);
	}
	if (need == ROLE_PRODUCER &&
	    !matches(key->topics, key->n_topics, name ? name : "")) {
		snprintf(why, whylen,
			 "permission denied: key '%s' may not "
			 "publish to topic '%s'",
			 key->id, name ? name : "");
		return ST(PERMISSION_DENIED);
	}
	if (need == ROLE_CONSUMER &&
	    !matches(key->subs, key->n_subs, name ? name : "")) {
		snprintf(why, whylen,
			 "permission denied: key '%s' may not "
			 "consume subscription '%s'",
			 key->id, name ? name : "");
		return ST(PERMISSION_DENIED);
	}
	/* A push subscription makes the broker call the URL: only URLs the
	 * key's push_urls patterns allow (none: no push at all). */
	if (req->body_case == HANDOFF__WIRE__REQUEST__BODY_SUBSCRIBE &&
	    req->subscribe->push && req->subscribe->push->url &&
	    req->subscribe->push->url[0] &&
	    !matches(key->push_urls, key->n_push_urls,
		     req->subscribe->push->url)) {
		snprintf(why, whylen,
			 "permission denied: key '%s' may not create push "
			 "subscriptions to that URL (push_urls)",
			 key->id);
		return ST(PERMISSION_DENIED);
	}
	return ST(OK);
}
