/*
 * handoff.h — the C client library of handoff, a durable event broker.
 *
 * One handle (handoff_client) speaks to one broker over one nanomsg REQ
 * socket. Every call is a request/reply round trip with a deadline; calls
 * retry transient failures by themselves (timeouts, refused connections,
 * a broker restarting or shutting down) with exponential backoff until the
 * handle's deadline, resending the *same* request, so a retried publish
 * carries the same idempotency key and is stored once. A call returns
 * HANDOFF_OK only when the broker's reply said so: a lost reply is never
 * reported as success.
 *
 * Errors: every function returning int returns HANDOFF_OK (0) or one of
 * the handoff_error codes below; handoff_strerror() names each, and
 * handoff_last_message() gives the broker's own text for the last error.
 * Each function lists the codes particular to it. Besides those, every
 * call that talks to the broker (all but handoff_strerror, the *_name and
 * *_free functions, handoff_parse_secret, handoff_close and the handle
 * getters/setters) can return:
 *
 *   HANDOFF_EINVAL       c is NULL, or another argument the function
 *                        names is NULL or out of range. Nothing is sent.
 *   HANDOFF_ENOMEM       an allocation in the library failed.
 *   HANDOFF_ETOOBIG      the packed request is over 16 MiB or over the
 *                        broker's max_request_bytes (its ping says). Not
 *                        sent.
 *   HANDOFF_ETIMEDOUT    no reply with a final status before the handle's
 *                        deadline (retries included). The request may or
 *                        may not have been applied: every request is safe
 *                        to send again (idempotency keys, lease tokens,
 *                        command ids).
 *   HANDOFF_ETRANSPORT   the nanomsg socket failed for good (not merely a
 *                        broker that is down: that is retried, then
 *                        HANDOFF_ETIMEDOUT).
 *   HANDOFF_EPROTO       the reply could not be decoded (malformed, or
 *                        over the library's decode budget), carries a
 *                        status this library doesn't know or the wrong
 *                        body, or contradicts the request (e.g. more
 *                        items than asked for).
 *   HANDOFF_EPERM        the broker has access control on and the handle
 *                        is unsigned, its key is unknown, its secret wrong,
 *                        or the key's role or patterns don't allow this.
 *   HANDOFF_EINTERNAL    the broker failed to apply the request: nothing
 *                        was applied; retry after
 *                        handoff_last_retry_after_ms().
 *   HANDOFF_ESTORAGEFULL the broker's store is full: nothing applied;
 *                        retry after handoff_last_retry_after_ms().
 *   HANDOFF_EBADREQUEST  the broker could not decode the request, or found
 *                        an argument invalid (e.g. a name outside its
 *                        alphabet or over max_name_bytes).
 *   HANDOFF_EVERSION     the broker speaks another protocol version.
 *
 *   HANDOFF_ESTALE       (signed handles) the broker refused every try
 *                        as stale until the deadline: its clock and ours
 *                        differ by more than its request_window and it
 *                        did not tell us its clock in a way we could
 *                        check (an older broker, or a reply whose clock
 *                        failed its MAC). handoff_clock_skew_ms() says
 *                        by how much, when known. Applied or not, as for
 *                        HANDOFF_ETIMEDOUT.
 *
 * HANDOFF_ESHUTTINGDOWN never reaches the caller: a broker shutting down is
 * retried until the deadline (then HANDOFF_ETIMEDOUT). A signature the
 * broker finds stale is signed again and resent at once; when the broker's
 * reply carries its clock (MACed with the handle's key), the handle signs
 * with that clock from then on (carried forward by CLOCK_MONOTONIC), so a
 * clock that differs from the broker's, by any amount, costs one extra
 * round trip. All timeouts and deadlines of the library are measured with
 * CLOCK_MONOTONIC: a step of the wall clock changes none of them. On any
 * error the outputs are as each function says (cleared where it says so),
 * never half-filled.
 *
 * Ownership: strings and buffers passed in are only read during the call
 * (handoff_connect() copies what it keeps). Results the library allocates
 * are owned by the caller and released with the matching *_free function,
 * which accepts NULL; every pointer inside a result belongs to that
 * result.
 *
 * Threads: a handle is not thread-safe; use one handle per thread (each
 * has its own socket), or serialise all calls on it, including
 * handoff_close(), handoff_last_message() and handoff_set_deadline().
 * Distinct handles need no locking. Functions without a handle
 * (handoff_strerror, the *_name functions, handoff_parse_secret, the
 * *_free functions on distinct results) are thread-safe. Call
 * handoff_connect() before fork() only if the child never uses the handle:
 * nanomsg starts threads with its first socket.
 */
#ifndef HANDOFF_H
#define HANDOFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* HANDOFF_VERSION: this library's release, "MAJOR.MINOR.PATCH" (generated
 * from the project version in the top-level meson.build). */
#include "handoff_version.h"
/* The endpoint handoffd listens on and the CLI uses when not told. */
#define HANDOFF_DEFAULT_URL "tcp://127.0.0.1:7450"

/* Error codes. 1..12 mirror the broker's wire statuses (proto/PROTOCOL.md);
 * 100 and up arise in the client. */
typedef enum handoff_error {
	HANDOFF_OK = 0,
	HANDOFF_EBADREQUEST = 1, /* the broker found the request invalid */
	HANDOFF_EVERSION = 2,	 /* protocol version not spoken by broker */
	/* publish to a topic with no subscription */
	HANDOFF_ENOSUBSCRIPTIONS = 3,
	HANDOFF_ENOTFOUND = 4,	  /* no such subscription / event / letter */
	HANDOFF_ECONFLICT = 5,	  /* subscription exists with other policy */
	HANDOFF_ELEASELOST = 6,	  /* ack/nack/release/extend for a lease no
				      * longer held */
	HANDOFF_ELIMIT = 7,	  /* a configured limit was exceeded */
	HANDOFF_ESTORAGEFULL = 8, /* broker store full; retry later */
	/* broker stopping (retried until deadline) */
	HANDOFF_ESHUTTINGDOWN = 9,
	HANDOFF_EINTERNAL = 10,	  /* broker-side failure; nothing applied */
	HANDOFF_EPERM = 11,	  /* not authenticated, or the key's role
				      * may not do this; nothing applied */
	HANDOFF_ESTALE = 12,	  /* signed requests refused as stale until
				      * the deadline (clocks differ) */
	HANDOFF_ETIMEDOUT = 100,  /* no confirmed reply before the deadline */
	HANDOFF_EINVAL = 101,	  /* invalid argument to this library */
	HANDOFF_ENOMEM = 102,	  /* allocation failed */
	HANDOFF_ETRANSPORT = 103, /* socket could not be created/connected */
	HANDOFF_EPROTO = 104,	  /* broker reply could not be decoded */
	HANDOFF_ETOOBIG = 105,	  /* request larger than the send limit */
} handoff_error;

/* A static, never-NULL description of an error code (unknown codes too).
 * Never fails; thread-safe. */
const char *handoff_strerror(int err);

typedef struct handoff_client handoff_client;

typedef struct handoff_options {
	/* Total time one call may take, retries included; 0 = 10000 ms. */
	uint32_t deadline_ms;
	/* Time one attempt waits for a reply before resending; 0 = 2000 ms.
	 * A fetch waits its long-poll time on top of this. */
	uint32_t attempt_timeout_ms;
	/* Largest reply accepted (NN_RCVMAXSIZE); 0 = 64 MiB. */
	uint32_t max_reply_bytes;
	/* Consumer name shown in traces; NULL = "HOST:PID". Copied; the
	 * library appends ":" and 6 random hex digits so that two handles
	 * with one name stay apart (the broker keys resent fetches on it). */
	const char *consumer_name;
	/* Access control (a broker with [key NAME] sections): the key's name
	 * and its 32-byte secret. Each request is signed with HMAC-SHA-256;
	 * the secret itself is never sent. Both NULL: requests go unsigned.
	 * Copied at connect; the caller may wipe its copy afterwards. */
	const char *key_id;
	const unsigned char *secret; /* 32 bytes */
} handoff_options;

/* Parse 64 hex digits (surrounding whitespace allowed) into out[32], for
 * secrets kept in files. HANDOFF_OK, or HANDOFF_EINVAL: hex or out NULL,
 * not exactly 64 hex digits, or anything else after them (out may then be
 * partly written). Reads hex, writes the caller's out; thread-safe. */
int handoff_parse_secret(const char *hex, unsigned char out[32]);

/*
 * Connect to the broker at url (NULL = HANDOFF_DEFAULT_URL) and check that
 * it answers a ping, retrying until opts->deadline_ms (nanomsg connects
 * lazily: only an answer proves a broker is there). opts may be NULL for
 * defaults. On success *out is a new handle the caller owns and closes
 * with handoff_close(); on error *out is NULL (if out is not).
 * Errors:
 *   HANDOFF_EINVAL      out NULL; url ""; url malformed or of a transport
 *                       nanomsg doesn't know; key_id without secret or the
 *                       other way round; key_id "" or over 64 bytes.
 *   HANDOFF_ETRANSPORT  libsodium failed to initialise, or the socket could
 *                       not be created, configured or connected.
 *   HANDOFF_ETIMEDOUT   no broker answered before the deadline.
 *   HANDOFF_EPERM       a broker with access control refused the signed
 *                       ping: unknown key_id or wrong secret.
 *   HANDOFF_EVERSION, HANDOFF_EPROTO, HANDOFF_ENOMEM, and the broker's
 *   HANDOFF_EINTERNAL / HANDOFF_ESTORAGEFULL / HANDOFF_EBADREQUEST.
 * url, opts and its strings are only read (copied where kept); the caller
 * may wipe opts->secret afterwards. Thread-safe (it touches no other
 * handle).
 */
int handoff_connect(const char *url, const handoff_options *opts,
		    handoff_client **out);
/* Close the socket, wipe the secret and free the handle (NULL is
 * ignored). Never fails. Nothing else may use c during or after it. */
void handoff_close(handoff_client *c);
/* Change the per-call deadline of an open handle; 0 = the default (10 s).
 * Applies to the next call. NULL is ignored. */
void handoff_set_deadline(handoff_client *c, uint32_t deadline_ms);
/* The text of the last reply the last call on c received (the broker's
 * reason for an error), or "" when it got none or c is NULL. Never NULL.
 * The string belongs to the handle: valid until the next call on c or
 * handoff_close(). */
const char *handoff_last_message(const handoff_client *c);
/* The retry hint (ms) of the last reply the last call on c received, or 0
 * (none sent, no reply, c NULL). Brokers send one with
 * HANDOFF_ESTORAGEFULL, HANDOFF_EINTERNAL and the HANDOFF_ELIMIT of
 * max_backlog and max_leases_per_consumer: limits that drain by waiting. */
uint32_t handoff_last_retry_after_ms(const handoff_client *c);
/* By how much the broker's clock was ahead of this host's wall clock (ms;
 * negative: behind) when the broker last told it, which it does only when
 * it refused a signed request as stale; 0 when it never did or c is NULL.
 * The handle then signs with the broker's clock. Never fails. */
int64_t handoff_clock_skew_ms(const handoff_client *c);

/* ---- publishing ------------------------------------------------------- */

typedef struct handoff_header {
	const char *name;
	const char *value;
} handoff_header;

/* Everything in an event is the caller's and only read during the call. */
typedef struct handoff_event {
	const void *payload; /* may be NULL when payload_len is 0 */
	size_t payload_len;
	const char *key;	     /* NULL or "" = none */
	const char *idempotency_key; /* NULL = the library makes a random one */
	const handoff_header *headers;
	size_t n_headers;
} handoff_event;

/*
 * Publish events to topic, all in one request: the broker stores all or
 * none, durably, before it confirms. On HANDOFF_OK event_ids[i] (caller's
 * array of n) holds the id of events[i]; duplicates (may be NULL, else the
 * caller's array of n) tells which ids came from an earlier publish with
 * the same idempotency key. Neither array is written on error.
 * Errors (besides those every call can return):
 *   HANDOFF_EINVAL        topic, events or event_ids NULL; n == 0; an
 *                         event with payload NULL but payload_len > 0, or
 *                         headers NULL but n_headers > 0, or a header
 *                         with a NULL name or value.
 *   HANDOFF_ENOSUBSCRIPTIONS  topic has no subscription: nothing stored.
 *   HANDOFF_ELIMIT        more than max_batch events, a payload over
 *                         max_payload, or a subscription of topic already
 *                         owes max_backlog deliveries.
 *   HANDOFF_ESTORAGEFULL  the store is below its headroom: retry after
 *                         handoff_last_retry_after_ms().
 *   HANDOFF_EBADREQUEST   a bad topic name, an idempotency key over 256
 *                         bytes, a key over 1024, more than 64 headers, a
 *                         header name "" or over 256 bytes or a value over
 *                         4096.
 *   HANDOFF_ETIMEDOUT     the publish may or may not be stored: publish
 *                         the same events again with the same idempotency
 *                         keys to find out (set them yourself to do so).
 */
int handoff_publish(handoff_client *c, const char *topic,
		    const handoff_event *events, size_t n, uint64_t *event_ids,
		    bool *duplicates);

/* ---- subscriptions ---------------------------------------------------- */

/* Zero in a field = the broker's default. */
typedef struct handoff_policy {
	uint32_t max_attempts;
	uint32_t ack_deadline_ms;
	uint32_t backoff_min_ms;
	uint32_t backoff_max_ms;
} handoff_policy;

/*
 * Create subscription name on topic (an operator request). Idempotent: an
 * existing subscription with the same topic and policy gives HANDOFF_OK
 * and *created = false. policy may be NULL (defaults); created and
 * effective (may be NULL) receive whether it was new and the policy in
 * force, on HANDOFF_OK only.
 * Errors (besides those every call can return):
 *   HANDOFF_EINVAL       topic or name NULL.
 *   HANDOFF_ECONFLICT    name exists on another topic or with another
 *                        policy.
 *   HANDOFF_ELIMIT       max_subscriptions exist already.
 *   HANDOFF_EBADREQUEST  a bad topic or subscription name, or a policy the
 *                        broker refuses (handoff_last_message() says why).
 */
int handoff_subscribe(handoff_client *c, const char *topic, const char *name,
		      const handoff_policy *policy, bool *created,
		      handoff_policy *effective);

/* A push subscription's endpoint: the broker POSTs every delivery to url
 * itself (README "Push delivery"). Strings are only read during the call. */
typedef struct handoff_push_config {
	const char *url;      /* http:// or https:// */
	uint32_t timeout_ms;  /* per request; 0: the broker's default (10 s);
			       * must be shorter than the ack deadline */
	uint32_t concurrency; /* requests in flight; 0: default (4), max 256 */
	const char *secret;   /* Standard Webhooks "whsec_" + base64 of
			       * 24-64 bytes; NULL or "": unsigned */
} handoff_push_config;

/*
 * handoff_subscribe() making a push subscription (push NULL or its url
 * NULL/"": a plain one). The broker keeps the config, secret included, in
 * the subscription; an existing subscription with another push config is
 * HANDOFF_ECONFLICT. Errors as handoff_subscribe(), and
 * HANDOFF_EBADREQUEST for a bad URL, timeout, concurrency or secret,
 * HANDOFF_EPERM when access control is on and the key's push_urls do not
 * allow the URL.
 */
int handoff_subscribe_push(handoff_client *c, const char *topic,
			   const char *name, const handoff_policy *policy,
			   const handoff_push_config *push, bool *created,
			   handoff_policy *effective);
/* Delete a subscription and all its deliveries and dead letters (an
 * operator request, recorded in the audit log).
 * Errors (besides those every call can return): HANDOFF_EINVAL (name
 * NULL), HANDOFF_ENOTFOUND (no such subscription; also when a resend finds
 * it already deleted), HANDOFF_EBADREQUEST (a bad name). */
int handoff_unsubscribe(handoff_client *c, const char *name);

/* A subscription's pause (handoff_pause()). The strings belong to the
 * struct that holds this one, and are "" while it runs. */
typedef struct handoff_pause_state {
	bool paused;
	char *reason;	   /* the operator's reason */
	char *by;	   /* key id; "" when access control is off */
	uint64_t since_ms; /* broker time of the pause */
} handoff_pause_state;

/* name and topic belong to the array handoff_list_subscriptions() made. */
typedef struct handoff_subscription_info {
	char *name;
	char *topic;
	handoff_policy policy;
	uint64_t ready, delayed, leased, dead;
	uint64_t created_ms;
	handoff_pause_state pause;
	/* push subscriptions: the URL and the endpoint's state ("healthy",
	 * "failing", "probing", "paused", "starting"); both "" otherwise */
	char *push_url;
	char *push_state;
} handoff_subscription_info;

/* Every subscription (an operator request). On HANDOFF_OK *out is an array
 * of *n the caller frees with handoff_subscriptions_free(), NULL when
 * *n == 0; on error *out = NULL and *n = 0. Errors: those every call can
 * return (HANDOFF_EINVAL: out or n NULL). */
int handoff_list_subscriptions(handoff_client *c,
			       handoff_subscription_info **out, size_t *n);
/* Frees the n entries of s and s itself; NULL is ignored. */
void handoff_subscriptions_free(handoff_subscription_info *s, size_t n);

/*
 * Pause subscription name (an operator request, recorded in the audit log
 * with reason). While paused it still receives every event published to
 * its topic, but nothing is delivered from it: fetches get no deliveries
 * (handoff_last_fetch_paused() then says why), held long polls wait;
 * leases already handed out may still be acked, nacked or released; a
 * lease whose ack deadline passes while paused is given back uncounted
 * (like handoff_release(): no attempt spent, never dead-lettered); delayed
 * retries wait. The pause survives broker restarts. Pausing a paused
 * subscription changes nothing (the first reason stays; not audited).
 * changed (may be NULL) receives whether this call paused it, on
 * HANDOFF_OK only.
 * Errors (besides those every call can return):
 *   HANDOFF_EINVAL       name or reason NULL.
 *   HANDOFF_ENOTFOUND    no such subscription.
 *   HANDOFF_EBADREQUEST  a bad name, or reason "" or over 4096 bytes.
 */
int handoff_pause(handoff_client *c, const char *name, const char *reason,
		  bool *changed);
/* Resume a paused subscription (an operator request, audited): its ready
 * backlog is deliverable at once and held long polls on it are served.
 * Resuming a running one changes nothing. changed and errors as for
 * handoff_pause() (no reason). */
int handoff_resume(handoff_client *c, const char *name, bool *changed);

/* ---- consuming -------------------------------------------------------- */

typedef struct handoff_delivery {
	uint64_t event_id;
	char *topic;
	void *payload;
	size_t payload_len;
	char *key;		 /* "" when none */
	handoff_header *headers; /* name/value point into this delivery */
	size_t n_headers;
	uint32_t attempt;	    /* 1 on the first delivery */
	uint64_t lease_token;	    /* give it back with ack/nack */
	uint64_t lease_deadline_ms; /* unix ms; ack before it */
	uint64_t published_ms;
} handoff_delivery;

/* Each field of a delivery belongs to the array handoff_fetch() made. */

/*
 * Lease up to max deliveries of subscription sub, waiting up to wait_ms for
 * the first one (long poll; the wait is added to the handle's deadline).
 * On HANDOFF_OK *out is an array of *n the caller frees with
 * handoff_deliveries_free(); *n is 0 and *out NULL when the wait ran out.
 * On error *out = NULL and *n = 0. A fetch that is resent after a lost
 * reply gets the same deliveries back.
 * Errors (besides those every call can return):
 *   HANDOFF_EINVAL       sub, out or n NULL, or max == 0.
 *   HANDOFF_ENOTFOUND    no such subscription.
 *   HANDOFF_ELIMIT       max over max_batch, wait_ms over max_wait,
 *                        max_held_fetches long polls already waiting, or
 *                        this consumer holds max_leases_per_consumer.
 *   HANDOFF_EBADREQUEST  a bad subscription name, a consumer name over 256
 *                        bytes, or max_reply_bytes under 1024.
 */
int handoff_fetch(handoff_client *c, const char *sub, size_t max,
		  uint32_t wait_ms, handoff_delivery **out, size_t *n);
/* Whether the last handoff_fetch() on c got no deliveries because its
 * subscription is paused (handoff_pause()); false otherwise and for NULL.
 * Keep polling: a resume makes the backlog deliverable at once. */
bool handoff_last_fetch_paused(const handoff_client *c);
/* Frees the n deliveries of d and d itself; NULL is ignored. */
void handoff_deliveries_free(handoff_delivery *d, size_t n);

typedef struct handoff_ack_item {
	uint64_t event_id;
	uint64_t lease_token;
} handoff_ack_item;

/*
 * Ack deliveries of subscription sub: each is done once the broker
 * confirms (durably). The call returns HANDOFF_OK when the request was
 * valid; results (may be NULL, else the caller's array of n) then gets
 * each item's own handoff_error: HANDOFF_OK, HANDOFF_ELEASELOST (lease
 * expired or reassigned: the event will be delivered again) or
 * HANDOFF_ENOTFOUND (no such delivery). results is not written on error.
 * Errors (besides those every call can return):
 *   HANDOFF_EINVAL       sub or items NULL, or n == 0.
 *   HANDOFF_ENOTFOUND    no such subscription.
 *   HANDOFF_ELIMIT       n over max_batch.
 *   HANDOFF_EBADREQUEST  a bad subscription name.
 *   HANDOFF_EPROTO       also: not one status per item, or an unknown one.
 */
int handoff_ack(handoff_client *c, const char *sub,
		const handoff_ack_item *items, size_t n, int *results);

typedef struct handoff_nack_item {
	uint64_t event_id;
	uint64_t lease_token;
	uint32_t delay_ms;  /* 0 = the subscription's backoff */
	bool permanent;	    /* dead-letter now: the event can never succeed */
	const char *reason; /* error text kept in the history; may be NULL */
} handoff_nack_item;

/* Nack deliveries: each becomes due again after its delay, or is
 * dead-lettered (permanent, or out of attempts). results as for
 * handoff_ack(). Errors as for handoff_ack(), and HANDOFF_EBADREQUEST for
 * a reason over 4096 bytes or a delay over 24 h. */
int handoff_nack(handoff_client *c, const char *sub,
		 const handoff_nack_item *items, size_t n, int *results);

/*
 * Release deliveries: give leases back unworked, for a consumer that stops
 * before (or while) working on them. Each becomes due again at once, and
 * the attempt does not count: its attempt number and the max_attempts
 * budget are as before the lease (the history keeps it with outcome
 * HANDOFF_OUTCOME_RELEASED and the item's reason), so a release never
 * dead-letters. Use it only for work not done: a consumer that releases
 * instead of nacking retries a failing event for ever. Of each item only
 * event_id, lease_token and reason are used; delay_ms must be 0 and
 * permanent false. results as for handoff_ack(): HANDOFF_ELEASELOST when
 * the lease had ended already (also for a repeated release).
 * Errors as for handoff_nack(), and HANDOFF_EINVAL for an item with a
 * delay_ms or permanent set.
 */
int handoff_release(handoff_client *c, const char *sub,
		    const handoff_nack_item *items, size_t n, int *results);

/* The longest one handoff_extend() may set a lease for (12 h): the
 * broker's limit (proto/PROTOCOL.md, extend). */
#define HANDOFF_MAX_EXTEND_MS (12u * 3600u * 1000u)

/*
 * Extend leases of subscription sub: for work that takes longer than the
 * ack deadline, call it before each lease runs out (at half of it, say).
 * Each lease still held under its token gets the deadline now + extend_ms
 * on the broker's clock (measured from now, not added: a shorter extend_ms
 * brings the deadline closer), and keeps its token, so ack or nack it as
 * before. The new deadline is at least the time of this call + extend_ms.
 * A lease is never extended once its deadline has passed, even if the
 * broker has not redelivered it yet. Each delivery's lease_deadline_ms
 * (handoff_delivery) is not updated: it is the caller's copy.
 * The call returns HANDOFF_OK when the request was valid; results (may be
 * NULL, else the caller's array of n) then gets each item's own
 * handoff_error: HANDOFF_OK (extended), HANDOFF_ELEASELOST (acked,
 * nacked, released, expired or leased again: stop working on it, the
 * event will be delivered again or is done) or HANDOFF_ENOTFOUND (no such
 * delivery). results is not written on error. Sending the same extend
 * again is harmless (the deadline moves to the resend's now + extend_ms).
 * Errors (besides those every call can return):
 *   HANDOFF_EINVAL       sub or items NULL, n == 0, extend_ms == 0 or
 *                        over HANDOFF_MAX_EXTEND_MS. Nothing is sent.
 *   HANDOFF_ENOTFOUND    no such subscription.
 *   HANDOFF_ELIMIT       n over max_batch.
 *   HANDOFF_EBADREQUEST  a bad subscription name.
 *   HANDOFF_EPERM        also: the key has no consumer role for sub.
 *   HANDOFF_EPROTO       also: not one status per item, or an unknown one.
 * Threads and ownership as for every call: items is only read during it.
 */
int handoff_extend(handoff_client *c, const char *sub,
		   const handoff_ack_item *items, size_t n, uint32_t extend_ms,
		   int *results);

/* ---- dead letters ----------------------------------------------------- */

typedef enum handoff_outcome {
	HANDOFF_OUTCOME_NONE = 0,
	HANDOFF_OUTCOME_LEASED = 1,
	HANDOFF_OUTCOME_ACKED = 2,
	HANDOFF_OUTCOME_NACKED = 3,
	HANDOFF_OUTCOME_PERMANENT = 4,
	HANDOFF_OUTCOME_EXPIRED = 5,
	HANDOFF_OUTCOME_BROKER_RESTART = 6,
	HANDOFF_OUTCOME_CORRUPT = 7,
	HANDOFF_OUTCOME_UNSUBSCRIBED = 8,
	HANDOFF_OUTCOME_RELEASED = 9, /* handoff_release(): not counted */
} handoff_outcome;
/* "leased", "acked", "nacked", ...; "unknown" otherwise (static; thread-safe). */
const char *handoff_outcome_name(int outcome);

typedef struct handoff_attempt {
	uint32_t attempt;
	char *consumer;
	uint64_t leased_ms;
	uint64_t ended_ms; /* 0 while in progress */
	handoff_outcome outcome;
	char *error;
	uint32_t retry_delay_ms;
} handoff_attempt;

typedef enum handoff_dead_reason {
	HANDOFF_DEAD_NONE = 0,
	HANDOFF_DEAD_MAX_ATTEMPTS = 1,
	HANDOFF_DEAD_PERMANENT = 2,
	HANDOFF_DEAD_CORRUPT = 3,
} handoff_dead_reason;
/* "max_attempts", "permanent", "corrupt"; "none" otherwise (static;
 * thread-safe). */
const char *handoff_dead_reason_name(int reason);

typedef struct handoff_dead_letter {
	uint64_t event_id;
	char *topic;
	char *key;
	handoff_dead_reason reason;
	char *error;
	uint64_t dead_ms;
	uint64_t published_ms;
	uint32_t attempts;
	uint32_t replays;
	handoff_attempt *history; /* handoff_dlq_show only */
	size_t n_history;
	void *payload; /* handoff_dlq_show only */
	size_t payload_len;
	handoff_header *headers; /* handoff_dlq_show only */
	size_t n_headers;
} handoff_dead_letter;

/* Zero fields match everything. Only read during a call. */
typedef struct handoff_dlq_filter {
	uint64_t after_event_id;
	uint64_t dead_since_ms;
	uint64_t dead_until_ms;
	handoff_dead_reason reason; /* HANDOFF_DEAD_NONE = any */
	const char *error_contains; /* NULL = any */
} handoff_dlq_filter;

/*
 * List up to limit (0 = 100) dead letters of sub matching filter (may be
 * NULL), in event id order (an operator request). On HANDOFF_OK *out is an
 * array of *n the caller frees with handoff_dead_letters_free() (NULL when
 * *n == 0) and *more (may be NULL) tells whether more match past the last
 * one; on error *out = NULL, *n = 0, *more = false.
 * Errors (besides those every call can return):
 *   HANDOFF_EINVAL       sub, out or n NULL, or filter->reason not a
 *                        handoff_dead_reason.
 *   HANDOFF_ENOTFOUND    no such subscription.
 *   HANDOFF_ELIMIT       limit over max_batch.
 *   HANDOFF_EBADREQUEST  a bad subscription name.
 */
int handoff_dlq_list(handoff_client *c, const char *sub,
		     const handoff_dlq_filter *filter, uint32_t limit,
		     handoff_dead_letter **out, size_t *n, bool *more);
/* One dead letter with payload, headers and full attempt history (an
 * operator request). On HANDOFF_OK *out is one entry the caller frees with
 * handoff_dead_letters_free(*out, 1); on error *out = NULL.
 * Errors (besides those every call can return): HANDOFF_EINVAL (sub or out
 * NULL), HANDOFF_ENOTFOUND (no such subscription, or event_id is not in
 * its dead-letter queue), HANDOFF_EBADREQUEST (a bad name). */
int handoff_dlq_show(handoff_client *c, const char *sub, uint64_t event_id,
		     handoff_dead_letter **out);
/* Frees the n dead letters of d and d itself; NULL is ignored. */
void handoff_dead_letters_free(handoff_dead_letter *d, size_t n);

/* Only read during a call. */
typedef struct handoff_dlq_action {
	const uint64_t *event_ids; /* act on these ... */
	size_t n_event_ids;
	const handoff_dlq_filter *filter; /* ... or on the filter's matches */
	uint32_t limit;		/* at most this many per call; 0 = 100 */
	bool dry_run;		/* report only, change nothing */
	bool all;		/* purge: required to act on a filter */
	const char *reason;	/* why: kept in the broker's audit record */
	const char *command_id; /* NULL: the library makes one per call, so
				      * a resent request runs once */
} handoff_dlq_action;

/* Filled by a replay or purge; its arrays are the caller's, freed with
 * handoff_dlq_result_free() (the struct itself is the caller's too). */
typedef struct handoff_dlq_result {
	uint64_t *event_ids; /* affected (dry run: would be) */
	size_t n_event_ids;
	uint64_t *missing; /* requested ids not in the queue */
	size_t n_missing;
	bool more; /* matches remain past limit */
} handoff_dlq_result;

/*
 * Replay: each dead letter of sub that action names becomes ready again
 * with a fresh attempt budget, its history kept, in the same commit that
 * takes it off the queue (an operator request, recorded in the audit log).
 * *result is zeroed first and filled on HANDOFF_OK only: what was (or on a
 * dry run would be) affected, requested ids not in the queue, and whether
 * matches remain past action->limit.
 * Errors (besides those every call can return):
 *   HANDOFF_EINVAL       sub, action or result NULL; event_ids NULL with
 *                        n_event_ids > 0; filter->reason not a
 *                        handoff_dead_reason.
 *   HANDOFF_ENOTFOUND    no such subscription.
 *   HANDOFF_ELIMIT       limit or n_event_ids over max_batch.
 *   HANDOFF_EBADREQUEST  a bad name, command_id over 256 bytes or reason
 *                        over 4096.
 */
int handoff_dlq_replay(handoff_client *c, const char *sub,
		       const handoff_dlq_action *action,
		       handoff_dlq_result *result);
/* Purge: remove dead letters for good. As handoff_dlq_replay(), and
 * HANDOFF_EBADREQUEST for a filter (no event ids) without all = true
 * unless it is a dry run. */
int handoff_dlq_purge(handoff_client *c, const char *sub,
		      const handoff_dlq_action *action,
		      handoff_dlq_result *result);
/* Frees r's arrays and zeroes *r (not r itself); NULL is ignored. */
void handoff_dlq_result_free(handoff_dlq_result *r);

/* ---- operator audit --------------------------------------------------- */

typedef struct handoff_audit_record {
	uint64_t seq;
	uint64_t at_ms; /* wall clock, ms */
	char *key_id;	/* "" when access control is off */
	char *role;	/* "operator", or "open" */
	char *action; /* "replay", "purge", "unsubscribe", "pause", "resume" */
	char *subscription;
	uint64_t *event_ids; /* affected */
	size_t n_event_ids;
	char *selector;	  /* ids given, or the filter, as text */
	uint32_t missing; /* requested ids not in the queue */
	char *reason;
	char *command_id;
} handoff_audit_record;

/* Operator actions with seq > after_seq, oldest first, at most limit
 * (0 = 100; an operator request). On HANDOFF_OK *out is an array of *n
 * (NULL when *n == 0) the caller frees with handoff_audit_free(), and
 * *more (may be NULL) says whether more follow; on error *out = NULL,
 * *n = 0, *more = false.
 * Errors (besides those every call can return): HANDOFF_EINVAL (out or n
 * NULL), HANDOFF_ELIMIT (limit over max_batch). */
int handoff_audit_list(handoff_client *c, uint64_t after_seq, uint32_t limit,
		       handoff_audit_record **out, size_t *n, bool *more);
/* Frees the n records of r and r itself; NULL is ignored. */
void handoff_audit_free(handoff_audit_record *r, size_t n);

/* ---- tracing and stats ------------------------------------------------ */

typedef enum handoff_delivery_state {
	HANDOFF_STATE_NONE = 0,
	HANDOFF_STATE_READY = 1,
	HANDOFF_STATE_DELAYED = 2,
	HANDOFF_STATE_LEASED = 3,
	HANDOFF_STATE_ACKED = 4,
	HANDOFF_STATE_DEAD = 5,
	HANDOFF_STATE_PURGED = 6,
	HANDOFF_STATE_UNSUBSCRIBED = 7,
} handoff_delivery_state;
/* "ready", "delayed", "leased", ...; "unknown" otherwise (static;
 * thread-safe). */
const char *handoff_state_name(int state);

typedef struct handoff_subscription_trace {
	char *subscription;
	handoff_delivery_state state;
	char *consumer;
	uint64_t lease_deadline_ms;
	uint64_t due_ms;
	uint64_t done_ms;
	handoff_dead_reason dead_reason;
	char *error;
	uint32_t replays;
	handoff_attempt *history;
	size_t n_history;
	bool paused; /* the subscription is paused */
} handoff_subscription_trace;

typedef struct handoff_trace {
	uint64_t event_id;
	char *topic;
	char *key;
	char *idempotency_key;
	uint64_t published_ms;
	uint64_t payload_bytes;
	bool payload_removed;
	bool corrupt;
	handoff_subscription_trace *subscriptions;
	size_t n_subscriptions;
} handoff_trace;

/* Where event_id is for each subscription (an operator request). On
 * HANDOFF_OK *out is a trace the caller frees with handoff_trace_free();
 * on error *out = NULL.
 * Errors (besides those every call can return): HANDOFF_EINVAL (out NULL),
 * HANDOFF_ENOTFOUND (the broker holds no record of it: never published, or
 * past history), HANDOFF_EPROTO (also: a trace of another event). */
int handoff_trace_event(handoff_client *c, uint64_t event_id,
			handoff_trace **out);
/* Frees t and everything in it; NULL is ignored. */
void handoff_trace_free(handoff_trace *t);

typedef struct handoff_topic_stats {
	char *name;
	uint64_t published;
	double publish_rate;
	uint32_t subscriptions;
} handoff_topic_stats;

typedef struct handoff_subscription_stats {
	char *name;
	char *topic;
	uint64_t ready, delayed, leased, dead;
	uint64_t delivered, acked, nacked, expired, dead_lettered, replayed,
		purged;
	double ack_rate, deliver_rate;
	handoff_pause_state pause;
	char *push_url;	       /* "" for pull subscriptions */
	char *push_state;      /* as in handoff_subscription_info */
	char *push_last_error; /* the endpoint's last failure, "" none */
} handoff_subscription_stats;

typedef struct handoff_stats {
	char *version;
	uint64_t uptime_ms;
	uint64_t events_stored;
	uint64_t store_used_bytes;
	uint64_t store_map_bytes;
	uint64_t held_fetches;
	uint64_t held_awaits; /* completion receipts held (handoff_await) */
	handoff_topic_stats *topics;
	size_t n_topics;
	handoff_subscription_stats *subscriptions;
	size_t n_subscriptions;
} handoff_stats;

/* The broker's counters and rates (an operator request). On HANDOFF_OK
 * *out is the caller's, freed with handoff_stats_free(); on error
 * *out = NULL. Errors: those every call can return (HANDOFF_EINVAL: out
 * NULL). */
int handoff_get_stats(handoff_client *c, handoff_stats **out);
/* Frees s and everything in it; NULL is ignored. */
void handoff_stats_free(handoff_stats *s);

/* ---- health ---------------------------------------------------------- */

/* Liveness and readiness, as GET /healthz and /readyz report them (see
 * the README, "Health probes"). Needs no key. */
typedef struct handoff_health {
	bool live;  /* the broker's store loop is turning */
	bool ready; /* store open, lease recovery done, not
				* stopping, no fatal store error */
	bool store_open;
	bool recovered;	      /* lease recovery is done */
	bool storage_full;    /* publishes refused for space; still ready */
	bool stopping;	      /* a stop signal came */
	uint64_t loop_age_ms; /* since the store loop last turned */
	uint64_t recovered_leases; /* made ready again at this start */
	char *reason;		   /* why not ready; "" when ready */
	char *version;		   /* the broker's */
} handoff_health;

/* The broker's health. On HANDOFF_OK *out is the caller's, freed with
 * handoff_health_free(); on error *out = NULL. A broker whose loop hangs
 * does not answer: the call then fails with HANDOFF_ETIMEDOUT (or the
 * error of the connection). Errors: those every call can return
 * (HANDOFF_EINVAL: out NULL). */
int handoff_get_health(handoff_client *c, handoff_health **out);
/* Frees h and everything in it; NULL is ignored. */
void handoff_health_free(handoff_health *h);
/* ---- backup --------------------------------------------------------- */

typedef enum handoff_backup_state {
	HANDOFF_BACKUP_RUNNING = 1,
	HANDOFF_BACKUP_DONE = 2,
	HANDOFF_BACKUP_FAILED = 3,
} handoff_backup_state;

/* A backup as the broker reports it. The strings belong to the struct
 * (handoff_backup_info_free). */
typedef struct handoff_backup_info {
	char *name;
	char *path; /* the copy's folder, on the broker's machine */
	handoff_backup_state state;
	uint64_t bytes;	      /* written so far; the copy's size when done */
	uint64_t duration_ms; /* so far, or start to end */
	uint64_t started_ms;  /* broker time */
	char *error;	      /* HANDOFF_BACKUP_FAILED: why; "" otherwise */
} handoff_backup_info;

/*
 * A hot backup (an operator request, audited): the broker copies its store
 * (consistent as of one commit, compacted) to BACKUP_DIR/name/data.mdb,
 * where BACKUP_DIR is its configured backup_dir, while it goes on
 * serving; handoffd --data BACKUP_DIR/name starts on the copy. name is a
 * file name (1-200 bytes of letters, digits, '.', '_', '-'), never a path.
 *
 * With status_only false this starts the backup and returns at once with
 * out->state HANDOFF_BACKUP_RUNNING (sending it again while it runs
 * starts nothing and reports it); with status_only true it only reports
 * backup name. Call it with status_only true until the state is DONE or
 * FAILED to wait for the copy. On HANDOFF_OK *out is the caller's (free
 * it with handoff_backup_info_free); on error it is zeroed.
 * Errors: HANDOFF_EBADREQUEST (a bad name, or the broker has no
 * backup_dir), HANDOFF_ECONFLICT (another backup is running, or a backup
 * of that name exists), HANDOFF_ENOTFOUND (status_only: no backup of that
 * name since the broker started), HANDOFF_EINTERNAL (backup_dir
 * unusable); handoff_last_message() says which.
 */
int handoff_backup(handoff_client *c, const char *name, bool status_only,
		   handoff_backup_info *out);
/* Frees the strings of b (not b); NULL is ignored. */
void handoff_backup_info_free(handoff_backup_info *b);
/* ---- completion receipts ---------------------------------------------- */

typedef enum handoff_await_result {
	HANDOFF_AWAIT_NONE = 0,
	HANDOFF_AWAIT_ACKED = 1,	 /* every awaited subscription acked */
	HANDOFF_AWAIT_DEAD_LETTERED = 2, /* one never will (see message) */
	HANDOFF_AWAIT_TIMED_OUT = 3,	 /* the timeout came first */
} handoff_await_result;
/* "acked", "dead_lettered", "timed_out"; "unknown" otherwise (static;
 * thread-safe). */
const char *handoff_await_result_name(int result);

/* One awaited subscription's delivery of the event, when the broker
 * answered. Its strings belong to the handoff_await_reply. */
typedef struct handoff_await_state {
	char *subscription;
	handoff_delivery_state state; /* NONE: its record is damaged */
	uint32_t attempts;	      /* every attempt so far */
	handoff_dead_reason dead_reason;
	char *error;	  /* the last error text; "" when none */
	char *consumer;	  /* leased: to whom; "" otherwise */
	uint64_t done_ms; /* acked, purged, unsubscribed: when (unix ms) */
	uint64_t dead_ms; /* dead: when (unix ms) */
	bool paused;	  /* the subscription is paused */
} handoff_await_state;

typedef struct handoff_await_reply {
	uint64_t event_id;
	char *topic;
	handoff_await_result result;
	/* DEAD_LETTERED: which subscription and why, e.g. "dead-lettered by
	 * 'billing' (permanent after 1 attempts): bad card"; "" otherwise */
	char *message;
	handoff_await_state *subscriptions; /* the awaited ones */
	size_t n_subscriptions;
} handoff_await_reply;

/*
 * A completion receipt: wait up to timeout_ms until every subscription
 * the event was delivered to (or the n_subscriptions named, which must be
 * among them) has acked event_id. The broker holds the request (a long
 * poll, woken by the acks themselves; the wait is added to the handle's
 * deadline) and answers HANDOFF_AWAIT_ACKED as soon as the last one acks;
 * HANDOFF_AWAIT_DEAD_LETTERED at once when one of them dead-letters it
 * (or it was purged from the dead letters, or the subscription deleted):
 * *out's message and that subscription's entry say which and why; and
 * HANDOFF_AWAIT_TIMED_OUT at the timeout, with each one's state. A
 * timeout_ms of 0 answers at once with the state now. The call retries
 * like any other: across a broker restart the same request is resent, and
 * the new broker waits its timeout_ms afresh, within the call's deadline
 * (the handle's deadline plus timeout_ms; past it HANDOFF_ETIMEDOUT).
 *
 * Who may: with access control on, an operator key, or a producer key that
 * may publish to the event's topic.
 *
 * On HANDOFF_OK *out is a reply the caller frees with handoff_await_free()
 * (for every result, TIMED_OUT included); on error *out = NULL.
 * Errors (besides those every call can return):
 *   HANDOFF_EINVAL       out NULL, or subscriptions NULL (or one of them
 *                        NULL) with n_subscriptions > 0.
 *   HANDOFF_ENOTFOUND    no such event: never published, or finished
 *                        (every subscription acked it, purged it or was
 *                        deleted) more than the broker's history period
 *                        ago, when its record is gone and which of those
 *                        it was is no longer known; handoff_last_message()
 *                        says which case.
 *   HANDOFF_EBADREQUEST  a named subscription was not delivered the event
 *                        (not a subscription of its topic, or created
 *                        after it), or a bad name.
 *   HANDOFF_ELIMIT       timeout_ms over the broker's max_wait, more
 *                        names than max_subscriptions, or
 *                        max_held_fetches awaits already waiting.
 */
int handoff_await(handoff_client *c, uint64_t event_id,
		  const char *const *subscriptions, size_t n_subscriptions,
		  uint32_t timeout_ms, handoff_await_reply **out);
/* Frees r and everything in it; NULL is ignored. */
void handoff_await_free(handoff_await_reply *r);

#ifdef __cplusplus
}
#endif
#endif /* HANDOFF_H */
