/*
 * push_outcome.h — what one push attempt's result means for its delivery.
 *
 * A 2xx reply acks. Everything else is a failed attempt under the
 * subscription's policy (a nack; finally dead-lettered with the text):
 * transport errors (refused, DNS, TLS, timeout, closed connection), any
 * 3xx (redirects are not followed), 4xx and 5xx. No network error is "not
 * retryable". Retry-After on 429 and 503 becomes the nack's delay. 410
 * Gone would pause the subscription; this build has no pause, so it is a
 * failed attempt with a text saying so.
 *
 * Pure; thread-safe. Curl's codes come in as plain numbers so that this
 * stays testable without a network.
 */
#ifndef HANDOFF_BROKER_PUSH_OUTCOME_H
#define HANDOFF_BROKER_PUSH_OUTCOME_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

#define PUSH_MAX_URL_BYTES 2048
/* a push subscription's timeout and concurrency: defaults and bounds */
#define PUSH_DEFAULT_TIMEOUT_MS	 10000
#define PUSH_MAX_TIMEOUT_MS	 300000
#define PUSH_DEFAULT_CONCURRENCY 4
#define PUSH_MAX_CONCURRENCY	 256

#define PUSH_TEXT_MAX	       320
#define PUSH_RETRY_AFTER_MAX_S 3600 /* a longer Retry-After is capped */

/* One attempt's result, as the push thread saw it. */
struct push_result {
	int transport;		     /* CURLcode; 0: an HTTP reply came */
	const char *transport_error; /* curl's error buffer ("" or NULL) */
	bool address_denied;	     /* deny_private refused every address */
	uint32_t timeout_ms;	     /* the subscription's push timeout */
	long status;		     /* HTTP status when transport == 0 */
	long retry_after_s;	     /* CURLINFO_RETRY_AFTER (<= 0: none) */
	const char *body_line;	     /* first line of the reply body, or "" */
};

enum push_action {
	PUSH_ACK,
	PUSH_NACK, /* with delay_ms (0: the subscription's backoff) */
};

struct push_outcome {
	enum push_action action;
	uint32_t delay_ms;
	bool connection_failure;  /* no HTTP reply at all: counts toward
				  * probing (push.h) */
	bool gone;		  /* 410: the endpoint says it is gone */
	char text[PUSH_TEXT_MAX]; /* the failure, for the nack's reason */
};

void push_classify(const struct push_result *r, struct push_outcome *o);

struct sockaddr;
/* Whether sa is an address [push] deny_private refuses: unspecified,
 * loopback, private (RFC 1918, unique local fc00::/7, shared 100.64/10),
 * link-local, multicast or broadcast; IPv4-mapped IPv6 addresses
 * (::ffff:a.b.c.d) are judged as the IPv4 address they carry. Unknown
 * families are refused. */
bool push_address_private(const struct sockaddr *sa);

/* The caller the push thread's requests carry: a consumer of every
 * subscription, and the only one shown push secrets. */
const struct config_key *push_caller(void);

/* Whether url may be a push URL: http:// or https://, a host, at most
 * PUSH_MAX_URL_BYTES, no spaces or control characters. NULL or why not. */
const char *push_url_problem(const char *url);

#endif
