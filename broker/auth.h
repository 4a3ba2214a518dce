/*
 * auth.h — access control: which key sent a request, whether it is fresh,
 * and whether the key's role allows it.
 *
 * Access control is on when the config has any [key NAME] section. Then
 * every request but ping and health must carry an Auth (proto/handoff.proto): an
 * HMAC-SHA-256 over the request's bytes keyed by the key's secret, with a
 * session id, a sequence number and the signing time (the exact bytes:
 * common/request_mac.h, shared with the client). The secret never
 * travels; MACs are compared in constant time; secrets are never logged.
 *
 * Replays: a request signed more than request_window ago (or ahead) by
 * broker time (clock.h), or before this broker started, is stale; within
 * the window each (session, seq) is accepted once (a 64-wide sliding
 * window per session, as IPsec does). A legitimate resend that was already
 * applied is told STALE_REQUEST and signs again: every request is safe to
 * apply twice (idempotency keys, lease tokens, fetch sequence, command
 * ids). A STALE_REQUEST reply carries the broker's clock, MACed with the
 * key (auth_sign_clock), so that a client whose clock differs signs its
 * next try against the broker's.
 *
 * Ownership: struct auth owns its session table; keys belong to the config.
 * Thread-safety: none; the store thread owns it.
 */
#ifndef HANDOFF_BROKER_AUTH_H
#define HANDOFF_BROKER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "config.h"

struct auth_session;

struct auth {
	const struct config *cfg;
	uint64_t started_ms;	    /* broker time (clock.h) */
	struct auth_session *table; /* open addressing */
	size_t cap, used;
	uint64_t next_sweep_ms;
};

/* 0 or ENOMEM. With no keys configured, everything is allowed. */
int auth_init(struct auth *a, const struct config *cfg, uint64_t started_ms);
void auth_fini(struct auth *a);
bool auth_enabled(const struct auth *a);

/*
 * Who sent req, whose wire bytes are buf/len. Returns a wire Status: OK
 * (*key is the key, NULL when access control is off or for an unsigned
 * ping), PERMISSION_DENIED or STALE_REQUEST, with the reason in why.
 */
int auth_verify(struct auth *a, const Request *req, const void *buf, size_t len,
		uint64_t now_ms, const struct config_key **key, char *why,
		size_t whylen);

/* The MAC of broker time now_ms for the client that signed req
 * (request_clock_mac), into mac; false (mac untouched) when req is not
 * signed by a configured key. Call it only for a request auth_verify()
 * answered STALE_REQUEST: its MAC was checked, so only the key's holder
 * is told the clock. */
bool auth_sign_clock(const struct auth *a, const Request *req, uint64_t now_ms,
		     uint8_t mac[32]);

/* OK, or PERMISSION_DENIED with the reason, for key making req (key may be
 * NULL only when access control is off). */
int auth_allows(const struct auth *a, const struct config_key *key,
		const Request *req, char *why, size_t whylen);

/* Whether key may await an event of topic (a completion receipt): an
 * operator any, a producer those of the topics it may publish to (NULL key:
 * access control off, anything). auth_allows() has already checked that
 * the key is a producer or an operator. */
bool auth_may_await(const struct config_key *key, const char *topic);

/* The role name to record for key ("open" when access control is off). */
const char *auth_role_name(const struct config_key *key);

#endif
