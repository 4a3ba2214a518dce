/*
 * inbox.h — requests in: the first step of a turn.
 *
 * inbox_receive() takes the requests waiting at the pump (up to a turn's
 * worth), decodes and authenticates each, answers at once what needs no
 * transaction (malformed, denied, a resent fetch whose reply is cached or
 * whose first copy is held), and leaves the rest in pend[] for the turn to
 * apply. Requests that turn sharing (share.h) put off wait in deferred[]
 * and come first next turn, already authenticated. HTTP requests
 * (pump.h's preauth) come with their caller known from the bearer token:
 * they skip the signature check, not the role check (auth_allows), and
 * never use the fetch resend cache.
 *
 * Ownership: a pending request's decoded form lives in the turn's arena;
 * its wire bytes are freed once the turn is sure to apply it; its ctrl
 * passes to the reply (replies.h). Deferred requests own their bytes and
 * ctrl until taken again. Threads: the store thread only.
 */
#ifndef HANDOFF_BROKER_INBOX_H
#define HANDOFF_BROKER_INBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "config.h"
#include "pump.h"

#define MAX_TURN_REQUESTS 512
#define MAX_TURN_BYTES	  (64u << 20)

struct broker;

struct pending {
	void *ctrl;
	const struct config_key *caller; /* NULL: access control off */
	Request *req;
	Reply *reply;
	bool park;	     /* a fetch to hold (held.h) */
	bool park_paused;    /* its subscription is paused */
	uint32_t park_sub;   /* its subscription id */
	uint64_t park_check; /* its first delayed delivery's due time */
	void *body;	     /* the wire bytes, kept until the turn is
				  * sure to apply it (see share.h) */
	size_t len;
};

/* A request put off to a later turn: its bytes, already authenticated. */
struct deferred {
	void *ctrl;
	void *body;
	size_t len;
	const struct config_key *caller;
};

struct inbox {
	struct pending pend[MAX_TURN_REQUESTS];
	size_t n_pend;
	struct inmsg inbound[MAX_TURN_REQUESTS];
	struct deferred deferred[MAX_TURN_REQUESTS];
	size_t n_deferred;
	uint64_t deferred_total; /* requests put off to share turns */
};

/* Fill b->inbox.pend with this turn's requests, waiting up to timeout_ms
 * for the first when nothing was put off. *stopping: a stop signal came. */
void inbox_receive(struct broker *b, int timeout_ms, bool *stopping);

/* Drop the put-off requests unanswered (their clients resend to the next
 * broker) and free their bytes. */
void inbox_fini(struct broker *b);

/* The request's name in log lines ("publish", "fetch", ...). */
const char *inbox_request_name(const Request *r);

#endif
