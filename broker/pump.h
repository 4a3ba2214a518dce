/*
 * pump.h — the broker's two threads and the mailbox between them.
 *
 * The network thread makes every nanomsg call (NOTES: keep them on one
 * thread): it receives requests into the inbox and sends what the store
 * thread put in the outbox. The store thread (turn.c) takes a batch from
 * the inbox, applies and commits it, and posts the replies. So while one
 * turn's commit syncs to disk, the next turn's requests are already being
 * received: group commit with receiving overlapped.
 *
 * Ownership: an inbound message's body is malloc'd (copied out of
 * nanomsg) and owned by whoever took it; its ctrl (the sender's opaque
 * header) must come back through pump_send() exactly once, with a reply
 * buffer (malloc'd, ownership passes) or with NULL to drop it.
 *
 * HTTP requests (http.h) come in through the same inbox: the HTTP thread
 * posts a packed Request with pump_post_http(), its caller already
 * authenticated by bearer token. Its ctrl is one of the pump's HTTP slots
 * (pump_is_http() tells them apart by address, so nothing downstream needs
 * to know), and at pump_flush() its reply goes to the HTTP module's
 * callback instead of nanomsg. The nanomsg path is unchanged.
 *
 * The push thread (push.h) posts its native requests the same way through
 * a second set of slots (pump_enable_push, pump_post_push); their replies
 * go to its own callback. Both kinds are "local" requests (pump_is_local).
 */
#ifndef HANDOFF_BROKER_PUMP_H
#define HANDOFF_BROKER_PUMP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "transport.h"

struct config_key;

struct inmsg {
	void *ctrl;
	void *body;
	size_t len;
	/* HTTP requests only: authenticated already (by token; the inbox
	 * still checks the role), caller NULL when access control is off */
	bool preauth;
	const struct config_key *caller;
};

/* Store thread: the reply (buf NULL: none, answer "not applied") to the
 * HTTP request that was posted with call. Ownership of buf passes. */
typedef void pump_http_reply_fn(void *ctx, void *call, void *buf, size_t len);

struct pump_http_slot {
	void *call; /* the HTTP module's request; NULL: free */
	size_t next_free;
};

struct outmsg {
	void *ctrl;
	void *buf; /* NULL: drop ctrl, send nothing */
	size_t len;
};

struct pump {
	struct transport *tr;
	int sigfd;
	int notify_fd; /* eventfd: store -> network */
	pthread_mutex_t mu;
	pthread_cond_t cond; /* the store thread waits on it */
	struct inmsg *in;    /* under mu */
	size_t n_in, cap_in, in_bytes;
	struct outmsg *out; /* under mu */
	size_t n_out, cap_out;
	struct outmsg *staged; /* store thread only, until pump_flush */
	size_t n_staged, cap_staged;
	bool stopping;	 /* under mu: a signal came */
	bool store_done; /* under mu */
	size_t max_in;	 /* inbox cap: past it, stop receiving */
	size_t max_in_bytes;
	struct pump_http_slot *http_slots; /* fixed; free list under mu */
	size_t n_http_slots, http_free;
	pump_http_reply_fn *http_reply;
	void *http_ctx;
	struct pump_http_slot *push_slots; /* the same, for the push thread */
	size_t n_push_slots, push_free;
	pump_http_reply_fn *push_reply;
	void *push_ctx;
};

int pump_init(struct pump *p, struct transport *tr, int sigfd);
void pump_fini(struct pump *p);

/* Before the threads start: accept up to slots HTTP requests in flight,
 * answered through reply(ctx, ...). 0 or ENOMEM. */
int pump_enable_http(struct pump *p, size_t slots, pump_http_reply_fn *reply,
		     void *ctx);
/* HTTP thread: post a packed Request for the store thread. 0 (body passes
 * to the pump; the reply comes through the callback, maybe before this
 * returns), EAGAIN (inbox full or no slot free: retry later) or
 * ESHUTDOWN (the broker is stopping); then body stays the caller's. */
int pump_post_http(struct pump *p, void *call, const struct config_key *caller,
		   void *body, size_t len);
/* Whether ctrl is an HTTP request's (any thread; no lock needed). */
bool pump_is_http(const struct pump *p, const void *ctrl);

/* The same for the push thread (push.h): before the threads start, up to
 * slots requests in flight answered through reply(ctx, call, ...); posting
 * as pump_post_http. */
int pump_enable_push(struct pump *p, size_t slots, pump_http_reply_fn *reply,
		     void *ctx);
int pump_post_push(struct pump *p, void *call, const struct config_key *caller,
		   void *body, size_t len);
/* Whether ctrl is an HTTP or push request's (no nanomsg ctrl). */
bool pump_is_local(const struct pump *p, const void *ctrl);

/* Store thread: wait up to timeout_ms (0 = don't wait) for requests; take
 * up to max of them and max_bytes in all (always at least one waiting).
 * *stopping tells that the broker was asked to stop. */
size_t pump_take(struct pump *p, struct inmsg *out, size_t max,
		 size_t max_bytes, int timeout_ms, bool *stopping);
/* Store thread: queue a reply (or a drop, buf NULL); sent after flush. */
void pump_send(struct pump *p, void *ctrl, void *buf, size_t len);
void pump_flush(struct pump *p);
/* Store thread: it has finished; the network thread sends what is queued
 * and returns from pump_run. */
void pump_store_done(struct pump *p);

/* Network thread: run until the store thread is done. */
void pump_run(struct pump *p);

#endif
