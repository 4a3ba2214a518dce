/*
 * fuzz_handlers.c — sequences of requests through the broker's own turn
 * (turn_run, turn.h, linked as handoffd links it), on a small store, with
 * a virtual clock and a stand-in for the pump (pump.h) that feeds the
 * input's requests in and collects every reply.
 *
 * Input: a list of operations, each one byte, then its argument:
 *   op & 15 = 0-3, 13, 15 a request: varint length, then that many bytes
 *                         (a Request, or anything)
 *   op & 15 = 4, 5        the same, then run a turn
 *   op & 15 = 6, 7        run a turn (decode, one write transaction for all
 *                         the queued requests, expiry, held fetches,
 *                         cleanup, commit; the one-by-one retry when the
 *                         group fails)
 *   op & 15 = 8, 9        one byte: advance the clock by steps[byte & 15]
 *   op & 15 = 10          one byte k: send request k % n again (the same
 *                         bytes, as nanomsg REQ resends)
 *   op & 15 = 11          one byte k: 2^(k % 6) copies of the last publish,
 *                         each with its own idempotency keys (fills the
 *                         store)
 *   op & 15 = 12          restart the broker after the last commit (held
 *                         fetches die unanswered; leases are recovered); at
 *                         most MAX_RESTARTS per input
 *   op & 15 = 14          one byte b: requests sent from now on are signed
 *                         by key b % 6 - 1 (-1: unsigned; 0-3 the keys
 *                         "prod", "cons", "ops", "all"; 4 a key the broker
 *                         does not know), with a timestamp just before or
 *                         after the window (bits 3, 4 of b) or a bad MAC
 *                         (bit 5). An input whose first operation is this
 *                         one runs with access control on (cfg_auth).
 * An ack or nack carrying a lease token 1..63 gets the token of the k-th
 * lease handed out so far (and its event and subscription when those are
 * 0 / empty): see fz_leases_fixup.
 *
 * Checked after every turn:
 *   - every reply decodes, with a status from the closed set, the statuses
 *     PROTOCOL.md lists for its type and the right body (fz_check_reply);
 *     no request is answered twice;
 *   - an ack/nack item is OK only for a lease a fetch reply handed out and
 *     that has not ended (ack: or was acked with the same token), and an
 *     item refused while the lease was open leaves it ended by the end of
 *     the turn;
 *   - publish: a key seen within the dedup window gets the same id back as
 *     a duplicate, a new event gets an id never handed out before;
 *     deliveries name published events;
 *   - list_subscriptions names exactly the subscriptions created and not
 *     removed by the replies before it (a later request sees an earlier
 *     one's work, also within one turn);
 *   - a replay or purge with a command id runs once: within the dedup
 *     window the same id gets the same reply;
 *   - with access control on, every request gets exactly the verdict the
 *     rules of README "Access control" give for its bytes (unsigned, bad
 *     or unknown key, outside the window, signed before the start,
 *     sequence number used, role or pattern not allowed: refused; else
 *     taken), worked out independently by the harness;
 *   - the store is consistent and its counters match list and stats
 *     (fz_check_store, fz_check_views), and the per-consumer lease table
 *     matches the leases in the store.
 * At the end held fetches time out and the broker shuts down: every request
 * must then have had exactly one reply, except a held fetch superseded by
 * its own resend (dropped by design) or a fetch or await held when the
 * broker restarted.
 */
#include <fnmatch.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "clock.h"
#include "log.h"
#include "turn.h"

#include "fuzz.h"
#include "request_mac.h"

#define MAP_SIZE     (1u << 20)
#define MAX_REQUEST  (64u << 10)
#define TURN_CAP     48
#define MAX_OPS	     4096
#define MAX_RESTARTS 4 /* a restart reopens LMDB: about 1 ms */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct config cfg_open;		/* access control off */
static struct config cfg_auth;		/* four keys (access control on) */
static struct config *acfg = &cfg_open; /* this input's */
static struct fz_store fs;
static struct broker the_broker;
static struct broker *const B = &the_broker;
static uint64_t vnow;
static bool trace; /* FUZZ_TRACE=1: print what each input does */
/* FUZZ_FRESH_STORE=1: every input opens a byte-identical brand-new store
 * (exactly reproducible, about 4 times slower). By default the store stays
 * open and is emptied between inputs: LMDB's page numbers and free list
 * then differ from a new store's, which can move the point where a full
 * store refuses a write by a few pages. */
static bool fresh_store;

/* ---- stand-ins: clock, pump -------------------------------------------- */

uint64_t clock_now_ms(void)
{
	return vnow;
}

uint64_t clock_mono_ms(void)
{
	return vnow;
}

void pump_flush(struct pump *p)
{
	(void)p;
}

/* requests sent, in order */
struct sent {
	uint8_t *bytes;
	size_t len;
	Request *req; /* as the broker decodes it; NULL: malformed */
	int replies;
	bool dropped;	   /* its ctrl came back without a reply */
	bool lost;	   /* held when the broker restarted */
	void *fetch_reply; /* OK fetch reply bytes (fetch_seq != 0) */
	size_t fetch_reply_len;
	int auth_expect; /* what access control must answer: OK,
				* PERMISSION_DENIED, STALE_REQUEST, or
				* AUTH_BY_HANDLER */
};

static struct sent *sent;
static size_t n_sent, cap_sent;
static size_t queue[TURN_CAP];
static size_t n_queue;

/* ---- access control --------------------------------------------------- */

static void *grow(void *v, size_t *cap, size_t n, size_t size);
static char *xstrdup(const char *s);

/* The keys of cfg_auth, and one the broker does not know. A request is
 * signed as PROTOCOL.md and proto/handoff.proto (message Auth) say: an
 * HMAC-SHA-256 keyed by the secret over "handoff-auth-v1" 0, key id 0,
 * le64 session, seq and timestamp, then the request packed without its
 * Auth, which is packed after it as the last bytes. */
struct signer {
	const char *id;
	unsigned roles;
	const char *topics, *subs; /* one fnmatch pattern each */
	uint8_t secret[32];
	uint64_t seq; /* last signed, this input */
	/* what the broker accepted of this key's session, this input */
	uint64_t *accepted;
	size_t n_accepted, cap_accepted;
	uint64_t max_accepted;
};

#define N_KEYS	4
#define SESSION 0x5e55104eull
static struct signer signers[N_KEYS + 1] = {
	{ "prod", ROLE_PRODUCER, "t[12]", NULL, { 1 }, 0, NULL, 0, 0, 0 },
	{ "cons", ROLE_CONSUMER, NULL, "s1", { 2 }, 0, NULL, 0, 0, 0 },
	{ "ops", ROLE_OPERATOR, NULL, NULL, { 3 }, 0, NULL, 0, 0, 0 },
	{ "all",
	  ROLE_PRODUCER | ROLE_CONSUMER | ROLE_OPERATOR,
	  "*",
	  "*",
	  { 4 },
	  0,
	  NULL,
	  0,
	  0,
	  0 },
	{ "ghost", ROLE_OPERATOR, NULL, NULL, { 5 }, 0, NULL, 0, 0, 0 },
};
static bool auth_on;	/* this input runs with access control */
static int signer = -1; /* who signs what is sent next; -1: nobody */
static unsigned sign_flags;
#define SIGN_PAST    1 /* timestamp just outside the window, before */
#define SIGN_FUTURE  2 /* ... after */
#define SIGN_BAD_MAC 4

static void add_keys(struct config *c)
{
	for (int i = 0; i < N_KEYS; i++) {
		struct config_key *k = &c->keys[i];
		const struct signer *sg = &signers[i];
		k->id = xstrdup(sg->id);
		k->roles = sg->roles;
		memcpy(k->secret, sg->secret, sizeof k->secret);
		k->has_secret = 1;
		if (sg->topics)
			k->topics[k->n_topics++] = xstrdup(sg->topics);
		if (sg->subs)
			k->subs[k->n_subs++] = xstrdup(sg->subs);
	}
	c->n_keys = N_KEYS;
	/* the documented default (config_init leaves it 0: see the report) */
	c->request_window_ms = 60 * 1000;
}

static void auth_mac(const struct signer *sg, const Handoff__Wire__Auth *au,
		     const uint8_t *content, size_t len, uint8_t mac[32])
{
	request_mac(sg->secret, au->key_id, au->session, au->seq,
		    au->timestamp_ms, content, len, mac);
}

/* q packed and signed by the current signer (q->auth is ignored). */
static uint8_t *sign(Request *q, size_t *len)
{
	struct signer *sg = &signers[signer];
	Handoff__Wire__Auth *own = q->auth;
	q->auth = NULL;
	size_t clen = handoff__wire__request__get_packed_size(q);
	Request only = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__Auth au = HANDOFF__WIRE__AUTH__INIT;
	uint8_t mac[32];
	au.key_id = (char *)sg->id;
	au.session = SESSION + (uint64_t)signer;
	au.seq = ++sg->seq;
	au.timestamp_ms = vnow;
	if (sign_flags & SIGN_PAST)
		au.timestamp_ms = vnow - acfg->request_window_ms - 1;
	if (sign_flags & SIGN_FUTURE)
		au.timestamp_ms = vnow + acfg->request_window_ms + 1;
	au.mac.data = mac;
	au.mac.len = sizeof mac;
	only.auth = &au;
	size_t alen = handoff__wire__request__get_packed_size(&only);
	uint8_t *b = malloc(clen + alen);
	FZ_ASSERT(b, "out of memory");
	handoff__wire__request__pack(q, b);
	auth_mac(sg, &au, b, clen, mac);
	if (sign_flags & SIGN_BAD_MAC)
		mac[0] ^= 1;
	handoff__wire__request__pack(&only, b + clen);
	q->auth = own;
	*len = clen + alen;
	return b;
}

static bool matches(const char *pattern, const char *name)
{
	return pattern && fnmatch(pattern, name ? name : "", 0) == 0;
}

/* auth_expect: taken by access control, and the handler decides (an await
 * by a producer key: whether it may publish to the event's topic). */
#define AUTH_BY_HANDLER (-1)

/* What access control must answer to s, taken at vnow: worked out from
 * its bytes alone (a fuzzer may copy a signed request into another
 * input), by the rules of README "Access control". */
static int auth_expect(const struct sent *s)
{
	const Request *q = s->req;
	const Handoff__Wire__Auth *au;
	if (!auth_on || !q)
		return HANDOFF__WIRE__STATUS__OK;
	au = q->auth;
	if (!au) /* probes carry no key */
		return q->body_case == HANDOFF__WIRE__REQUEST__BODY_PING ||
				       q->body_case ==
					       HANDOFF__WIRE__REQUEST__BODY_HEALTH ?
			       HANDOFF__WIRE__STATUS__OK :
			       HANDOFF__WIRE__STATUS__PERMISSION_DENIED;
	if (!au->key_id || strlen(au->key_id) > 64 || au->mac.len != 32)
		return HANDOFF__WIRE__STATUS__PERMISSION_DENIED;
	Request only = HANDOFF__WIRE__REQUEST__INIT;
	only.auth = (Handoff__Wire__Auth *)au;
	size_t tlen = handoff__wire__request__get_packed_size(&only);
	uint8_t tail[512];
	if (tlen > sizeof tail || tlen > s->len)
		return HANDOFF__WIRE__STATUS__PERMISSION_DENIED;
	handoff__wire__request__pack(&only, tail);
	if (memcmp(s->bytes + s->len - tlen, tail, tlen))
		return HANDOFF__WIRE__STATUS__PERMISSION_DENIED;
	struct signer *sg = NULL;
	for (int i = 0; i < N_KEYS && !sg; i++)
		if (!strcmp(signers[i].id, au->key_id))
			sg = &signers[i];
	uint8_t mac[32];
	if (!sg)
		return HANDOFF__WIRE__STATUS__PERMISSION_DENIED;
	auth_mac(sg, au, s->bytes, s->len - tlen, mac);
	if (memcmp(mac, au->mac.data, 32))
		return HANDOFF__WIRE__STATUS__PERMISSION_DENIED;
	uint64_t w = acfg->request_window_ms;
	if ((vnow > w && au->timestamp_ms < vnow - w) ||
	    au->timestamp_ms > vnow + w || au->timestamp_ms < B->started_ms)
		return HANDOFF__WIRE__STATUS__STALE_REQUEST;
	/* each (session, seq) once; only the last 64 are remembered. Only
	 * the harness signs (the MAC covers the session): one per key */
	FZ_ASSERT(au->session == SESSION + (uint64_t)(sg - signers),
		  "a valid MAC over a session the harness never signed");
	for (size_t i = 0; i < sg->n_accepted; i++)
		if (sg->accepted[i] == au->seq)
			return HANDOFF__WIRE__STATUS__STALE_REQUEST;
	if (sg->n_accepted && au->seq + 64 <= sg->max_accepted)
		return HANDOFF__WIRE__STATUS__STALE_REQUEST;
	sg->accepted = grow(sg->accepted, &sg->cap_accepted, sg->n_accepted,
			    sizeof *sg->accepted);
	sg->accepted[sg->n_accepted++] = au->seq;
	if (au->seq > sg->max_accepted)
		sg->max_accepted = au->seq;
	/* the role */
	const char *topic = NULL, *sub = NULL;
	unsigned need = ROLE_OPERATOR;
	switch (q->body_case) {
	case HANDOFF__WIRE__REQUEST__BODY_PING:
	case HANDOFF__WIRE__REQUEST__BODY_HEALTH:
		return HANDOFF__WIRE__STATUS__OK;
	case HANDOFF__WIRE__REQUEST__BODY_PUBLISH:
		need = ROLE_PRODUCER;
		topic = q->publish->topic;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_FETCH:
		need = ROLE_CONSUMER;
		sub = q->fetch->subscription;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_ACK:
		need = ROLE_CONSUMER;
		sub = q->ack->subscription;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_NACK:
		need = ROLE_CONSUMER;
		sub = q->nack->subscription;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_EXTEND:
		need = ROLE_CONSUMER;
		sub = q->extend->subscription;
		break;
	case HANDOFF__WIRE__REQUEST__BODY_AWAIT:
		/* an operator, or a producer of the event's topic, which only
		 * the handler knows (it may also answer NOT_FOUND first) */
		if (sg->roles & ROLE_OPERATOR)
			return HANDOFF__WIRE__STATUS__OK;
		if (sg->roles & ROLE_PRODUCER)
			return AUTH_BY_HANDLER;
		return HANDOFF__WIRE__STATUS__PERMISSION_DENIED;
	default:
		break;
	}
	if (!(sg->roles & need) ||
	    (need == ROLE_PRODUCER && !matches(sg->topics, topic)) ||
	    (need == ROLE_CONSUMER && !matches(sg->subs, sub)))
		return HANDOFF__WIRE__STATUS__PERMISSION_DENIED;
	return HANDOFF__WIRE__STATUS__OK;
}

/* The broker forgets the sequence numbers it accepted when it restarts
 * (all signed before are stale by then); the signers go on counting. */
static void signers_restart(void)
{
	for (int i = 0; i <= N_KEYS; i++) {
		free(signers[i].accepted);
		signers[i].accepted = NULL;
		signers[i].n_accepted = signers[i].cap_accepted = 0;
		signers[i].max_accepted = 0;
	}
}

static void signers_reset(void)
{
	signers_restart();
	for (int i = 0; i <= N_KEYS; i++)
		signers[i].seq = 0;
	signer = -1;
	sign_flags = 0;
}

/* replies and drops, in the order the broker sent them */
struct outgoing {
	size_t idx;
	void *buf;
	size_t len;
};
static struct outgoing *out;
static size_t n_out, cap_out;

size_t pump_take(struct pump *p, struct inmsg *in, size_t max, size_t max_bytes,
		 int timeout_ms, bool *stopping)
{
	(void)p, (void)max_bytes, (void)timeout_ms;
	*stopping = false;
	size_t n = n_queue < max ? n_queue : max;
	for (size_t i = 0; i < n; i++) {
		struct sent *s = &sent[queue[i]];
		/* the broker verifies each request as it takes it */
		s->auth_expect = auth_expect(s);
		in[i].ctrl = (void *)(uintptr_t)(queue[i] + 1);
		in[i].len = s->len;
		in[i].body = malloc(s->len ? s->len : 1);
		FZ_ASSERT(in[i].body, "out of memory");
		if (s->len)
			memcpy(in[i].body, s->bytes, s->len);
	}
	memmove(queue, queue + n, (n_queue - n) * sizeof *queue);
	n_queue -= n;
	return n;
}

void pump_send(struct pump *p, void *ctrl, void *buf, size_t len)
{
	(void)p;
	uintptr_t id = (uintptr_t)ctrl;
	FZ_ASSERT(id >= 1 && id <= n_sent, "reply to an unknown ctrl %p", ctrl);
	if (n_out == cap_out) {
		cap_out = cap_out ? 2 * cap_out : 64;
		out = realloc(out, cap_out * sizeof *out);
		FZ_ASSERT(out, "out of memory");
	}
	out[n_out++] =
		(struct outgoing){ .idx = id - 1, .buf = buf, .len = len };
}

/* ---- what the harness knows ------------------------------------------- */

static struct arena harena; /* the harness's decoded requests */
static struct arena oarena; /* observation transactions */
static struct fz_leases leases;
static char **consumers;
static size_t n_consumers, cap_consumers;
static char **live_subs; /* subscriptions created, not removed */
static size_t n_live, cap_live;
static size_t *refused; /* leases an item was refused for while open */
static size_t n_refused, cap_refused;
static uint64_t max_event_id;

struct idem {
	char *topic, *key;
	uint64_t id, created_ms;
};
static struct idem *idems;
static size_t n_idems, cap_idems;

/* operator commands run: id -> the reply body of its first run */
struct command {
	char *id;
	void *reply;
	size_t len;
	uint64_t created_ms;
};
static struct command *commands;
static size_t n_commands, cap_commands;

static void *grow(void *v, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return v;
	*cap = *cap ? 2 * *cap : 16;
	v = realloc(v, *cap * size);
	FZ_ASSERT(v, "out of memory");
	return v;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");
	FZ_ASSERT(d, "out of memory");
	return d;
}

static void note_consumer(const char *c)
{
	for (size_t i = 0; i < n_consumers; i++)
		if (!strcmp(consumers[i], c))
			return;
	consumers =
		grow(consumers, &cap_consumers, n_consumers, sizeof *consumers);
	consumers[n_consumers++] = xstrdup(c);
}

static ssize_t live_find(const char *name)
{
	for (size_t i = 0; i < n_live; i++)
		if (!strcmp(live_subs[i], name))
			return (ssize_t)i;
	return -1;
}

static struct idem *idem_find(const char *topic, const char *key)
{
	for (size_t i = 0; i < n_idems; i++)
		if (!strcmp(idems[i].topic, topic) &&
		    !strcmp(idems[i].key, key))
			return &idems[i];
	return NULL;
}

/* Free what the harness keeps for one input: every input frees all it
 * allocates, so libFuzzer's per-input leak check stays on. */
static void forget_everything(void)
{
	for (size_t i = 0; i < n_sent; i++) {
		free(sent[i].bytes);
		free(sent[i].fetch_reply);
	}
	free(sent);
	sent = NULL;
	n_sent = cap_sent = 0;
	n_queue = 0;
	for (size_t i = 0; i < n_out; i++)
		free(out[i].buf);
	free(out);
	out = NULL;
	n_out = cap_out = 0;
	fz_leases_clear(&leases);
	for (size_t i = 0; i < n_consumers; i++)
		free(consumers[i]);
	free(consumers);
	consumers = NULL;
	n_consumers = cap_consumers = 0;
	for (size_t i = 0; i < n_live; i++)
		free(live_subs[i]);
	free(live_subs);
	live_subs = NULL;
	n_live = cap_live = 0;
	free(refused);
	refused = NULL;
	n_refused = cap_refused = 0;
	for (size_t i = 0; i < n_idems; i++) {
		free(idems[i].topic);
		free(idems[i].key);
	}
	free(idems);
	idems = NULL;
	n_idems = cap_idems = 0;
	for (size_t i = 0; i < n_commands; i++) {
		free(commands[i].id);
		free(commands[i].reply);
	}
	free(commands);
	commands = NULL;
	n_commands = cap_commands = 0;
	max_event_id = 0;
	signers_reset();
	arena_reset(&harena);
	arena_reset(&oarena);
}

/* ---- the broker's in-memory state (what loop_run sets up) -------------- */

static void broker_up(void)
{
	struct store st = B->st;
	memset(B, 0, sizeof *B);
	B->st = st;
	B->sigfd = -1;
	B->tr.sock = -1;
	/* as loop.c's start_clock: the mark of the earlier runs */
	FZ_ASSERT(store_read_clock_mark(&B->st) == 0, "reading the clock mark");
	FZ_ASSERT(broker_init(B, acfg, clock_now_ms()) == 0, "out of memory");
}

/* Everything but the store goes, as when the process dies. Requests held
 * as long polls or put off to the next turn die with it: never answered. */
static void broker_down(void)
{
	for (size_t i = 0; i < B->holds.n_held; i++) {
		struct held_fetch *h = &B->holds.held[i];
		uintptr_t id = (uintptr_t)h->ctrl;
		if (id >= 1 && id <= n_sent)
			sent[id - 1].lost = true;
		h->ctrl = NULL;
	}
	for (size_t i = 0; i < B->holds.n_awaits; i++) {
		struct held_await *a = &B->holds.awaits[i];
		uintptr_t id = (uintptr_t)a->ctrl;
		if (id >= 1 && id <= n_sent)
			sent[id - 1].lost = true;
		a->ctrl = NULL;
	}
	for (size_t i = 0; i < B->inbox.n_deferred; i++)
		free(B->inbox.deferred[i].body);
	B->inbox.n_deferred = 0;
	broker_fini(B);
}

/* ---- checking replies -------------------------------------------------- */

static void check_publish(const Request *q, const Reply *r)
{
	const Handoff__Wire__PublishRequest *p = q->publish;
	uint64_t window = acfg->dedup_window_ms;
	for (size_t i = 0; i < p->n_events; i++) {
		uint64_t id = r->publish->event_ids[i];
		bool dup = r->publish->duplicates[i];
		struct idem *e =
			idem_find(p->topic, p->events[i]->idempotency_key);
		/* A key from before the last start lives out a window of this
		 * run too, unless its window was over by the broker time the
		 * earlier runs reached (clock_window_over). */
		bool over = e && e->created_ms + window <= vnow &&
			    (e->created_ms >= B->started_ms ||
			     B->started_ms + window <= vnow ||
			     e->created_ms + window <= B->start_mark_ms);
		bool live = e && !over;
		if (dup) {
			FZ_ASSERT(
				live && e->id == id,
				"publish to %s key %s: duplicate of %llu, but "
				"the harness knows %s",
				p->topic, p->events[i]->idempotency_key,
				(unsigned long long)id,
				!e   ? "no event with that key" :
				live ? "another id" :
				       "only an expired one");
			continue;
		}
		FZ_ASSERT(!live,
			  "publish to %s key %s within the dedup window "
			  "of event %llu got a new event %llu",
			  p->topic, p->events[i]->idempotency_key,
			  (unsigned long long)e->id, (unsigned long long)id);
		FZ_ASSERT(id > max_event_id,
			  "new event id %llu, but %llu was "
			  "handed out before",
			  (unsigned long long)id,
			  (unsigned long long)max_event_id);
		max_event_id = id;
		if (!e) {
			idems = grow(idems, &cap_idems, n_idems, sizeof *idems);
			e = &idems[n_idems++];
			e->topic = xstrdup(p->topic);
			e->key = xstrdup(p->events[i]->idempotency_key);
		}
		e->id = id;
		e->created_ms = vnow;
	}
}

/* A replay or purge with a command id runs once: within the dedup window
 * the same id gets the first run's reply again (after it, the record may
 * still be there until cleanup reaches it). */
static void check_command(const Request *q, const Reply *r)
{
	const Handoff__Wire__DlqActionRequest *a =
		q->body_case == HANDOFF__WIRE__REQUEST__BODY_DLQ_REPLAY ?
			q->dlq_replay :
			q->dlq_purge;
	if (!a->command_id || !*a->command_id || a->dry_run)
		return;
	size_t len =
		handoff__wire__dlq_action_reply__get_packed_size(r->dlq_action);
	uint8_t *bytes = malloc(len ? len : 1);
	FZ_ASSERT(bytes, "out of memory");
	handoff__wire__dlq_action_reply__pack(r->dlq_action, bytes);
	struct command *c = NULL;
	for (size_t i = 0; i < n_commands && !c; i++)
		if (!strcmp(commands[i].id, a->command_id))
			c = &commands[i];
	bool same = c && c->len == len && !memcmp(c->reply, bytes, len);
	if (c && c->created_ms + acfg->dedup_window_ms > vnow)
		FZ_ASSERT(same,
			  "command %s ran again within the dedup window "
			  "(another reply)",
			  a->command_id);
	if (c && same) {
		free(bytes);
		return;
	}
	if (!c) {
		commands = grow(commands, &cap_commands, n_commands,
				sizeof *commands);
		c = &commands[n_commands++];
		c->id = xstrdup(a->command_id);
	} else {
		free(c->reply);
	}
	c->reply = bytes;
	c->len = len;
	c->created_ms = vnow;
}

static void check_list(const Reply *r)
{
	const Handoff__Wire__ListSubscriptionsReply *l = r->list_subscriptions;
	for (size_t i = 0; i < l->n_subscriptions; i++)
		FZ_ASSERT(live_find(l->subscriptions[i]->name) >= 0,
			  "list_subscriptions shows %s, which no subscribe "
			  "created (or an unsubscribe removed)",
			  l->subscriptions[i]->name);
	for (size_t i = 0; i < n_live; i++) {
		bool found = false;
		for (size_t j = 0; j < l->n_subscriptions && !found; j++)
			found = !strcmp(l->subscriptions[j]->name,
					live_subs[i]);
		FZ_ASSERT(found,
			  "list_subscriptions misses %s, created by an "
			  "earlier subscribe (same turn or before)",
			  live_subs[i]);
	}
}

/* Items refused while their lease was open must have lost the lease by
 * the end of the turn (an expiry in the same turn, say). */
static void note_refusals(const Request *q, const Reply *r)
{
	bool ack = q->body_case == HANDOFF__WIRE__REQUEST__BODY_ACK;
	bool ext = q->body_case == HANDOFF__WIRE__REQUEST__BODY_EXTEND;
	if (r->status != HANDOFF__WIRE__STATUS__OK)
		return;
	const char *sub = ack ? q->ack->subscription :
			  ext ? q->extend->subscription :
				q->nack->subscription;
	size_t n = ack ? q->ack->n_items :
		   ext ? q->extend->n_items :
			 q->nack->n_items;
	for (size_t i = 0; i < n; i++) {
		if (r->items->statuses[i] == HANDOFF__WIRE__STATUS__OK)
			continue;
		uint64_t ev = ack ? q->ack->items[i]->event_id :
			      ext ? q->extend->items[i]->event_id :
				    q->nack->items[i]->event_id;
		uint64_t tok = ack ? q->ack->items[i]->lease_token :
			       ext ? q->extend->items[i]->lease_token :
				     q->nack->items[i]->lease_token;
		struct fz_lease *e = fz_leases_find(&leases, sub, ev, tok);
		if (e && e->state == FZ_OPEN) {
			refused = grow(refused, &cap_refused, n_refused,
				       sizeof *refused);
			refused[n_refused++] = (size_t)(e - leases.v);
		}
	}
}

/* A fetch with the subscription, consumer and fetch_seq of an earlier one
 * is answered from the cache with that one's reply, whatever else it asks
 * (PROTOCOL.md §3): the earlier request whose reply these bytes are, or
 * NULL. */
static const Request *cached_fetch(size_t idx, const void *buf, size_t len)
{
	const Request *q = sent[idx].req;
	if (!q || q->protocol_version != 1 ||
	    q->body_case != HANDOFF__WIRE__REQUEST__BODY_FETCH ||
	    !q->fetch->fetch_seq || !q->fetch->consumer)
		return NULL;
	for (size_t i = 0; i < idx; i++) {
		const Request *e = sent[i].req;
		if (sent[i].fetch_reply &&
		    e->fetch->fetch_seq == q->fetch->fetch_seq &&
		    !strcmp(e->fetch->consumer, q->fetch->consumer) &&
		    !strcmp(e->fetch->subscription, q->fetch->subscription) &&
		    sent[i].fetch_reply_len == len &&
		    !memcmp(sent[i].fetch_reply, buf, len))
			return e;
	}
	return NULL;
}

static void take_reply(struct outgoing *o)
{
	struct sent *s = &sent[o->idx];
	FZ_ASSERT(s->replies == 0 && !s->dropped && !s->lost,
		  "request %zu answered twice (or after its drop)", o->idx);
	if (!o->buf) {
		s->dropped = true;
		if (trace)
			fprintf(stderr, "  #%zu dropped\n", o->idx);
		return;
	}
	s->replies++;
	const Request *q = s->req;
	const Request *orig = cached_fetch(o->idx, o->buf, o->len);
	/* a reply from the cache is checked against the request it answered
	 * first; its leases are already known */
	Reply *r = fz_check_reply(acfg, orig ? orig : q, o->buf, o->len);
	if (s->auth_expect == AUTH_BY_HANDLER)
		FZ_ASSERT(r->status != HANDOFF__WIRE__STATUS__STALE_REQUEST,
			  "access control refused an await as stale: %s",
			  r->message);
	else if (s->auth_expect != HANDOFF__WIRE__STATUS__OK)
		FZ_ASSERT((int)r->status == s->auth_expect,
			  "access control should have answered %d, the reply "
			  "is %d (%s)",
			  s->auth_expect, r->status, r->message);
	else
		FZ_ASSERT(
			r->status != HANDOFF__WIRE__STATUS__PERMISSION_DENIED &&
				r->status !=
					HANDOFF__WIRE__STATUS__STALE_REQUEST,
			"access control refused a request it must take: %d "
			"(%s)",
			r->status, r->message);
	if (trace)
		fprintf(stderr, "  #%zu %s -> %d %s\n", o->idx,
			q ? inbox_request_name(q) : "(malformed)", r->status,
			r->message);
	bool ok = r->status == HANDOFF__WIRE__STATUS__OK && q &&
		  q->protocol_version == 1 &&
		  s->auth_expect == HANDOFF__WIRE__STATUS__OK;
	switch (ok ? q->body_case : HANDOFF__WIRE__REQUEST__BODY__NOT_SET) {
	case HANDOFF__WIRE__REQUEST__BODY_FETCH: {
		const Handoff__Wire__FetchRequest *f = q->fetch;
		for (size_t i = 0; i < r->fetch->n_deliveries; i++)
			FZ_ASSERT(r->fetch->deliveries[i]->event_id <=
					  max_event_id,
				  "delivery of event %llu, never published",
				  (unsigned long long)r->fetch->deliveries[i]
					  ->event_id);
		if (orig)
			break;
		fz_leases_add_fetch(&leases, f->subscription, f->consumer, r);
		note_consumer(f->consumer);
		if (f->fetch_seq) {
			s->fetch_reply = malloc(o->len ? o->len : 1);
			FZ_ASSERT(s->fetch_reply, "out of memory");
			memcpy(s->fetch_reply, o->buf, o->len);
			s->fetch_reply_len = o->len;
		}
		break;
	}
	case HANDOFF__WIRE__REQUEST__BODY_ACK:
	case HANDOFF__WIRE__REQUEST__BODY_NACK:
	case HANDOFF__WIRE__REQUEST__BODY_EXTEND:
		fz_leases_check_items(&leases, q, r);
		note_refusals(q, r);
		break;
	case HANDOFF__WIRE__REQUEST__BODY_PUBLISH:
		check_publish(q, r);
		break;
	case HANDOFF__WIRE__REQUEST__BODY_SUBSCRIBE:
		if (live_find(q->subscribe->subscription) < 0) {
			FZ_ASSERT(r->subscribe->created,
				  "subscribe of new %s "
				  "says created=false",
				  q->subscribe->subscription);
			live_subs = grow(live_subs, &cap_live, n_live,
					 sizeof *live_subs);
			live_subs[n_live++] =
				xstrdup(q->subscribe->subscription);
		} else {
			FZ_ASSERT(!r->subscribe->created,
				  "subscribe of existing "
				  "%s says created=true",
				  q->subscribe->subscription);
		}
		break;
	case HANDOFF__WIRE__REQUEST__BODY_UNSUBSCRIBE: {
		ssize_t i = live_find(q->unsubscribe->subscription);
		FZ_ASSERT(i >= 0, "unsubscribe of %s OK, which does not exist",
			  q->unsubscribe->subscription);
		free(live_subs[i]);
		live_subs[i] = live_subs[--n_live];
		break;
	}
	case HANDOFF__WIRE__REQUEST__BODY_LIST_SUBSCRIPTIONS:
		check_list(r);
		break;
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_REPLAY:
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_PURGE:
		check_command(q, r);
		break;
	default:
		break;
	}
	handoff__wire__reply__free_unpacked(r, NULL);
}

static void take_replies(void)
{
	for (size_t i = 0; i < n_out; i++) {
		take_reply(&out[i]);
		free(out[i].buf);
	}
	n_out = 0;
}

/* After a commit: the store as a whole, and what the harness expects. */
static void observe(void)
{
	struct txn t;
	arena_reset(&oarena);
	int rc = store_txn_begin(&B->st, &oarena, false, vnow, &t);
	FZ_ASSERT(rc == 0, "txn: %s", mdb_strerror(rc));
	fz_leases_observe(&leases, &t);
	for (size_t i = 0; i < n_refused; i++)
		FZ_ASSERT(leases.v[refused[i]].state != FZ_OPEN,
			  "an ack/nack of %s/%llu was refused while its lease "
			  "was open, and the lease is still open",
			  leases.v[refused[i]].sub,
			  (unsigned long long)leases.v[refused[i]].event);
	n_refused = 0;
	fz_check_store(&t, &B->leases, B->started_ms, consumers, n_consumers);
	fz_check_views(&B->env, &t);
	store_txn_abort(&t);
	arena_reset(&oarena);
}

static void run_turn(void)
{
	bool stopping = false;
	if (trace)
		fprintf(stderr, "turn at T0+%llu ms: %zu requests, %zu held\n",
			(unsigned long long)(vnow - FZ_T0), n_queue,
			B->holds.n_held);
	int rc = turn_run(B, &stopping);
	FZ_ASSERT(rc == 0, "the turn found the store unusable (status %d)", rc);
	FZ_ASSERT(n_queue == 0, "requests left in the inbox");
	take_replies();
	observe();
}

/* ---- sending ---------------------------------------------------------- */

static void enqueue_bytes(uint8_t *bytes, size_t len)
{
	if (n_queue == TURN_CAP)
		run_turn();
	sent = grow(sent, &cap_sent, n_sent, sizeof *sent);
	struct sent *s = &sent[n_sent];
	memset(s, 0, sizeof *s);
	s->bytes = bytes;
	s->len = len;
	s->req = codec_decode_request(&harena, bytes, len);
	queue[n_queue++] = n_sent++;
}

static void enqueue_copy(const uint8_t *p, size_t len)
{
	uint8_t *b = malloc(len ? len : 1);
	FZ_ASSERT(b, "out of memory");
	if (len)
		memcpy(b, p, len);
	enqueue_bytes(b, len);
}

static void enqueue_packed(const Request *q)
{
	size_t len = handoff__wire__request__get_packed_size(q);
	uint8_t *b = malloc(len ? len : 1);
	FZ_ASSERT(b, "out of memory");
	handoff__wire__request__pack(q, b);
	enqueue_bytes(b, len);
}

/* A new request: ack/nack/extend lease references resolved
 * (fz_leases_fixup), signed when a signer is chosen. */
static void send_request(const uint8_t *p, size_t len)
{
	Request *q = handoff__wire__request__unpack(NULL, len, p);
	bool items = q && (q->body_case == HANDOFF__WIRE__REQUEST__BODY_ACK ||
			   q->body_case == HANDOFF__WIRE__REQUEST__BODY_NACK ||
			   q->body_case == HANDOFF__WIRE__REQUEST__BODY_EXTEND);
	char **subp = !items ? NULL :
		      q->body_case == HANDOFF__WIRE__REQUEST__BODY_ACK ?
			       &q->ack->subscription :
		      q->body_case == HANDOFF__WIRE__REQUEST__BODY_NACK ?
			       &q->nack->subscription :
			       &q->extend->subscription;
	char *own = subp ? *subp : NULL;
	if (items)
		fz_leases_fixup(&leases, q);
	if (q && signer >= 0) {
		size_t n;
		uint8_t *b = sign(q, &n);
		enqueue_bytes(b, n);
	} else if (items) {
		enqueue_packed(q);
	} else {
		enqueue_copy(p, len);
	}
	if (subp)
		*subp = own; /* free_unpacked frees what unpack made */
	if (q)
		handoff__wire__request__free_unpacked(q, NULL);
}

/* 2^k copies of the last request sent, if it is a publish, each with its
 * own idempotency keys: a store fills up in a few operations. */
static void amplify(unsigned k)
{
	if (!n_sent)
		return;
	struct sent *last = &sent[n_sent - 1];
	Request *q =
		handoff__wire__request__unpack(NULL, last->len, last->bytes);
	if (!q || q->body_case != HANDOFF__WIRE__REQUEST__BODY_PUBLISH) {
		if (q)
			handoff__wire__request__free_unpacked(q, NULL);
		return;
	}
	size_t n = q->publish->n_events;
	char **own = calloc(n ? n : 1, sizeof *own);
	char(*keys)[300] = calloc(n ? n : 1, sizeof *keys);
	FZ_ASSERT(own && keys, "out of memory");
	for (size_t i = 0; i < n; i++)
		own[i] = q->publish->events[i]->idempotency_key;
	for (unsigned c = 1; c <= (1u << (k % 6)); c++) {
		for (size_t i = 0; i < n; i++) {
			snprintf(keys[i], sizeof keys[i], "%.200s.%u",
				 own[i] ? own[i] : "", c);
			q->publish->events[i]->idempotency_key = keys[i];
		}
		if (signer >= 0) {
			size_t blen;
			uint8_t *b = sign(q, &blen);
			enqueue_bytes(b, blen);
		} else {
			enqueue_packed(q);
		}
	}
	for (size_t i = 0; i < n; i++)
		q->publish->events[i]->idempotency_key = own[i];
	handoff__wire__request__free_unpacked(q, NULL);
	free(own);
	free(keys);
}

static void restart(void)
{
	if (n_queue)
		run_turn();
	broker_down();
	if (trace)
		fprintf(stderr, "restart\n");
	vnow += 1000; /* a restart takes time: its leases are all older */
	signers_restart();
	fz_store_reopen(&fs, &B->st);
	broker_up(); /* an empty lease table: leases from before the start
		      * are not counted (fz_check_store, started_ms) */
}

/* ---- the end ---------------------------------------------------------- */

static void finish(void)
{
	if (n_queue)
		run_turn();
	/* held fetches time out */
	vnow += acfg->max_wait_ms + 1;
	run_turn();
	/* shutdown: whatever fetch is still held gets its empty reply; held
	 * awaits (none should be left, their time is up) die unanswered */
	held_finish(B, UINT64_MAX, false);
	take_replies();
	for (size_t i = 0; i < B->holds.n_awaits; i++) {
		uintptr_t id = (uintptr_t)B->holds.awaits[i].ctrl;
		if (id >= 1 && id <= n_sent)
			sent[id - 1].lost = true;
		B->holds.awaits[i].ctrl = NULL;
	}
	for (size_t i = 0; i < n_sent; i++) {
		struct sent *s = &sent[i];
		if (s->replies == 1)
			continue;
		FZ_ASSERT(s->replies == 0, "request %zu got %d replies", i,
			  s->replies);
		const Request *q = s->req;
		bool fetch = q && q->protocol_version == 1 &&
			     q->body_case == HANDOFF__WIRE__REQUEST__BODY_FETCH;
		bool await = q && q->protocol_version == 1 &&
			     q->body_case == HANDOFF__WIRE__REQUEST__BODY_AWAIT;
		FZ_ASSERT((fetch && (s->dropped || s->lost)) ||
				  (await && s->lost),
			  "request %zu (type %d) got no reply", i,
			  q ? (int)q->body_case : -1);
		if (s->lost)
			continue;
		/* dropped: only when its own resend took the held fetch over */
		bool resent = false;
		for (size_t j = i + 1; j < n_sent && !resent; j++) {
			const Request *r = sent[j].req;
			resent = r && r->body_case == q->body_case &&
				 q->fetch->fetch_seq &&
				 r->fetch->fetch_seq == q->fetch->fetch_seq &&
				 !strcmp(r->fetch->consumer,
					 q->fetch->consumer) &&
				 !strcmp(r->fetch->subscription,
					 q->fetch->subscription);
		}
		FZ_ASSERT(resent,
			  "fetch %zu dropped without a resend taking it "
			  "over",
			  i);
	}
}

/* ---- libFuzzer -------------------------------------------------------- */

static void fz_cleanup(void)
{
	if (!fresh_store)
		store_close(&B->st);
	forget_everything();
	arena_fini(&harena);
	arena_fini(&oarena);
	config_free(&cfg_open);
	config_free(&cfg_auth);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_rng_install();
	fz_log_init();
	fz_config(&cfg_open, MAP_SIZE);
	fz_config(&cfg_auth, MAP_SIZE);
	add_keys(&cfg_auth);
	const char *e = getenv("FUZZ_TRACE");
	trace = e && !strcmp(e, "1");
	arena_init(&harena);
	arena_init(&oarena);
	vnow = FZ_T0;
	e = getenv("FUZZ_FRESH_STORE");
	fresh_store = e && !strcmp(e, "1");
	fz_store_create(&fs, &B->st, MAP_SIZE);
	if (fresh_store)
		store_close(&B->st); /* each input opens a brand-new copy */
	atexit(fz_cleanup);
	return 0;
}

static const uint64_t steps[16] = {
	0,
	1,
	10,
	100,
	999,
	1000,
	1500,
	5000,
	29999,
	30000,
	60001,
	10 * 60 * 1000,
	30 * 60 * 1000,
	3600 * 1000,
	24 * 3600 * 1000ull,
	7 * 24 * 3600 * 1000ull,
};

static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;

	vnow = FZ_T0;
	/* an input that begins by choosing a signer runs with access
	 * control on */
	auth_on = size > 0 && (data[0] & 15) == 14;
	acfg = auth_on ? &cfg_auth : &cfg_open;
	if (fresh_store)
		fz_store_fresh(&fs, &B->st);
	else
		fz_store_clear(&B->st);
	fz_rng_seed(2);
	sched_tokens_discard(); /* drawn from the last input's seed */
	broker_up();

	int restarts = 0;
	for (int ops = 0; p < end && ops < MAX_OPS; ops++) {
		uint8_t op = *p++;
		uint64_t len;
		switch (op & 15) {
		case 8:
		case 9:
			if (p < end)
				vnow += steps[*p++ & 15];
			break;
		case 6:
		case 7:
			run_turn();
			break;
		case 10:
			if (p < end && n_sent) {
				struct sent *s = &sent[*p++ % n_sent];
				enqueue_copy(s->bytes, s->len);
			}
			break;
		case 11:
			if (p < end)
				amplify(*p++);
			break;
		case 12:
			if (restarts++ < MAX_RESTARTS)
				restart();
			break;
		case 14:
			if (p < end) {
				signer = *p % (N_KEYS + 2) - 1;
				sign_flags = (*p++ >> 3) & 7;
			}
			break;
		default:
			if (!get_varint(&p, end, &len) || len > MAX_REQUEST ||
			    len > (uint64_t)(end - p))
				goto done;
			send_request(p, (size_t)len);
			p += len;
			if ((op & 15) == 4 || (op & 15) == 5)
				run_turn();
			break;
		}
	}
done:
	finish();
	broker_down();
	if (fresh_store)
		store_close(&B->st);
	forget_everything();
	log_thread_done();
	return 0;
}
