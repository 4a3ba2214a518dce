/*
 * client_internal.h — what the files of libhandoff share and users never
 * see: the handle itself, the one round-trip function every call goes
 * through (call.c), and the copy helpers that turn decoded wire messages
 * into the plain structs of handoff.h (convert.c).
 */
#ifndef HANDOFF_CLIENT_INTERNAL_H
#define HANDOFF_CLIENT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* The library is built with hidden visibility: only handoff.h's functions
 * form its ABI, never the hc_ helpers or the generated protobuf code. */
#pragma GCC visibility push(default)
#include "handoff.h"
#pragma GCC visibility pop
#include "handoff.pb-c.h"

#define HC_DEFAULT_DEADLINE_MS	      10000u
#define HC_DEFAULT_ATTEMPT_TIMEOUT_MS 2000u
#define HC_DEFAULT_MAX_REPLY_BYTES    (64u * 1024u * 1024u)
/* Largest request we send; the broker refuses bigger ones anyway. */
#define HC_MAX_REQUEST_BYTES (16u * 1024u * 1024u)
/* The "0 = 100" default of dlq list / replay / purge. */
#define HC_DEFAULT_DLQ_LIMIT 100u

struct handoff_client {
	int sock;	      /* nanomsg REQ socket */
	char *url;	      /* to open a fresh socket (hc_open_socket) */
	uint32_t deadline_ms; /* per call, retries included */
	uint32_t attempt_timeout_ms; /* per attempt before resending */
	uint32_t max_reply_bytes;    /* NN_RCVMAXSIZE and fetch max_bytes */
	char *consumer;		     /* "name:suffix", unique per handle */
	uint64_t fetch_seq;	     /* one per handoff_fetch call */
	char *last_message;	     /* last reply's text; NULL = "" */
	uint32_t last_retry_after_ms;
	bool last_fetch_paused; /* the last fetch found its sub paused */
	char *key_id;		/* NULL: requests go unsigned */
	unsigned char secret[32];
	uint64_t session;	    /* random per handle */
	uint64_t seq;		    /* last sequence number signed */
	uint32_t max_request_bytes; /* the broker's limit (its ping says) */
	/* The broker's clock, once a STALE_REQUEST reply told it (call.c):
	 * requests are then signed with CLOCK_MONOTONIC + clock_offset_ms,
	 * so a step of our own wall clock changes nothing either. */
	int clock_known;
	int64_t clock_offset_ms; /* broker time - CLOCK_MONOTONIC ms */
	int64_t clock_skew_ms;	 /* broker time - our wall clock, then */
};

/*
 * One request/reply round trip with retries (call.c). Fills in
 * req->protocol_version, packs req once and resends those bytes after
 * timeouts, transport errors and SHUTTING_DOWN replies until the handle's
 * deadline (plus extra_wait_ms, the long-poll time of a fetch, which is also
 * added to each attempt's receive timeout).
 *
 * Returns HANDOFF_OK only for a reply with status OK whose body case is
 * expect (HANDOFF__WIRE__REPLY__BODY__NOT_SET for "no body"); *out then
 * holds it and the caller frees it with hc_reply_free(). Otherwise *out is
 * NULL and the result is the mapped broker status or a client error.
 */
int hc_call(handoff_client *c, Handoff__Wire__Request *req,
	    Handoff__Wire__Reply__BodyCase expect, uint32_t extra_wait_ms,
	    Handoff__Wire__Reply **out);
void hc_reply_free(Handoff__Wire__Reply *r);
/* A wire pause state (NULL: running) into the caller's *out, strings
 * malloc'd ("" while running). HANDOFF_OK or HANDOFF_ENOMEM (then *out
 * holds what was copied: free it with hc_pause_free). */
int hc_copy_pause(const Handoff__Wire__PauseState *w, handoff_pause_state *out);
void hc_pause_free(handoff_pause_state *p);
/* Open a new REQ socket to c->url (options set, connected) and close the
 * old one, if any. HANDOFF_OK, HANDOFF_EINVAL (bad URL) or
 * HANDOFF_ETRANSPORT. */
int hc_open_socket(handoff_client *c);

/* Wire status -> handoff_error; -1 for a status this library doesn't know. */
int hc_map_status(int status);

/* ---- copy helpers (convert.c); all return NULL / an error on ENOMEM ---- */

/* strdup that reads NULL as "". */
char *hc_strdup(const char *s);
/* Copies bytes into a new buffer with a NUL after them (handy for text
 * payloads; never counted in the length). Never returns NULL on success. */
void *hc_memdup(const ProtobufCBinaryData *b);
/* Copies n wire headers into ONE allocation (the array, then the strings
 * it points to), so freeing *out frees all. *out = NULL when n == 0. */
int hc_copy_headers(Handoff__Wire__Header *const *src, size_t n,
		    handoff_header **out);
int hc_copy_attempts(Handoff__Wire__Attempt *const *src, size_t n,
		     handoff_attempt **out);
void hc_attempts_free(handoff_attempt *a, size_t n);
/* A missing wire policy reads as all zeros. */
void hc_copy_policy(const Handoff__Wire__Policy *src, handoff_policy *dst);

#endif /* HANDOFF_CLIENT_INTERNAL_H */
