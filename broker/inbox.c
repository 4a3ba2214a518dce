/*
 * inbox.c — receiving, decoding and authenticating a turn's requests; see
 * inbox.h.
 */
#include "inbox.h"

#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "clock.h"
#include "log.h"
#include "replies.h"
#include "share.h"

const char *inbox_request_name(const Request *r)
{
	switch (r->body_case) {
	case HANDOFF__WIRE__REQUEST__BODY_PING:
		return "ping";
	case HANDOFF__WIRE__REQUEST__BODY_PUBLISH:
		return "publish";
	case HANDOFF__WIRE__REQUEST__BODY_SUBSCRIBE:
		return "subscribe";
	case HANDOFF__WIRE__REQUEST__BODY_UNSUBSCRIBE:
		return "unsubscribe";
	case HANDOFF__WIRE__REQUEST__BODY_LIST_SUBSCRIPTIONS:
		return "list_subscriptions";
	case HANDOFF__WIRE__REQUEST__BODY_FETCH:
		return "fetch";
	case HANDOFF__WIRE__REQUEST__BODY_ACK:
		return "ack";
	case HANDOFF__WIRE__REQUEST__BODY_NACK:
		return "nack";
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_LIST:
		return "dlq_list";
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_SHOW:
		return "dlq_show";
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_REPLAY:
		return "dlq_replay";
	case HANDOFF__WIRE__REQUEST__BODY_DLQ_PURGE:
		return "dlq_purge";
	case HANDOFF__WIRE__REQUEST__BODY_TRACE:
		return "trace";
	case HANDOFF__WIRE__REQUEST__BODY_STATS:
		return "stats";
	case HANDOFF__WIRE__REQUEST__BODY_AUDIT_LIST:
		return "audit_list";
	case HANDOFF__WIRE__REQUEST__BODY_EXTEND:
		return "extend";
	case HANDOFF__WIRE__REQUEST__BODY_PAUSE:
		return "pause";
	case HANDOFF__WIRE__REQUEST__BODY_RESUME:
		return "resume";
	case HANDOFF__WIRE__REQUEST__BODY_HEALTH:
		return "health";
	case HANDOFF__WIRE__REQUEST__BODY_BACKUP:
		return "backup";
	case HANDOFF__WIRE__REQUEST__BODY_AWAIT:
		return "await";
	default:
		return "unknown";
	}
}

/* Who sent the request, when access control allows it; else the status
 * that refuses it, with why filled. */
static int authenticate(struct broker *b, const Request *req,
			const struct inmsg *in, uint64_t now,
			const struct config_key **caller, char *why,
			size_t whylen)
{
	int st = auth_verify(&b->auth, req, in->body, in->len, now, caller, why,
			     whylen);
	if (st == HANDOFF__WIRE__STATUS__OK)
		st = auth_allows(&b->auth, *caller, req, why, whylen);
	return st;
}

/* Refuse req with status ast. A stale signed request is told the broker's
 * clock (MACed with its key), so that a client whose clock differs signs
 * its next try against it. */
static void refuse(struct broker *b, void *ctrl, const Request *req, int ast,
		   uint64_t now, const char *why)
{
	Handoff__Wire__BrokerClock *clk = NULL;
	uint8_t *mac = NULL;
	Reply *r = reply_error(b, ast, why);
	if (r && ast == HANDOFF__WIRE__STATUS__STALE_REQUEST) {
		clk = arena_alloc(&b->arena, sizeof *clk);
		mac = arena_alloc(&b->arena, 32);
	}
	if (clk && mac && auth_sign_clock(&b->auth, req, now, mac)) {
		handoff__wire__broker_clock__init(clk);
		clk->now_ms = now;
		clk->mac.data = mac;
		clk->mac.len = 32;
		r->clock = clk;
	}
	if (r)
		reply_send(b, ctrl, r, NULL);
	else
		pump_send(&b->pump, ctrl, NULL, 0);
}

/*
 * A resent fetch is the same request: same version, subscription (which
 * the caller was just allowed to fetch from) and consumer. Its cached reply
 * gives the same leases back instead of new ones; a copy already held takes
 * the resend over. true when answered (in's ctrl is then used up).
 */
static bool answer_resent_fetch(struct broker *b, const Request *req,
				struct inmsg *in)
{
	if (req->protocol_version !=
		    HANDOFF__WIRE__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT ||
	    req->body_case != HANDOFF__WIRE__REQUEST__BODY_FETCH ||
	    !req->fetch->consumer || !req->fetch->subscription ||
	    !req->fetch->fetch_seq)
		return false;
	const struct cached_fetch *c =
		held_cache_get(&b->holds, req->fetch->consumer,
			       req->fetch->subscription, req->fetch->fetch_seq);
	if (c) {
		void *copy = malloc(c->len ? c->len : 1);
		if (copy)
			memcpy(copy, c->bytes, c->len);
		pump_send(&b->pump, in->ctrl, copy, copy ? c->len : 0);
		return true;
	}
	return held_takeover(b, req->fetch, in->ctrl);
}

/* Requests put off by the last turn come first, as they came. Returns how
 * many; their callers are in callers[]. */
static size_t take_deferred(struct inbox *ib, const struct config_key **callers)
{
	size_t n = ib->n_deferred;
	for (size_t i = 0; i < n; i++) {
		ib->inbound[i] = (struct inmsg){ .ctrl = ib->deferred[i].ctrl,
						 .body = ib->deferred[i].body,
						 .len = ib->deferred[i].len };
		callers[i] = ib->deferred[i].caller;
	}
	ib->n_deferred = 0;
	return n;
}

void inbox_receive(struct broker *b, int timeout_ms, bool *stopping)
{
	struct inbox *ib = &b->inbox;
	const struct config_key *old_callers[MAX_TURN_REQUESTS];
	size_t n_old = take_deferred(ib, old_callers);
	size_t n = n_old + pump_take(&b->pump, ib->inbound + n_old,
				     MAX_TURN_REQUESTS - n_old, MAX_TURN_BYTES,
				     n_old ? 0 : timeout_ms, stopping);
	ib->n_pend = 0;
	uint64_t now = clock_now_ms();
	for (size_t i = 0; i < n; i++) {
		struct inmsg *in = &ib->inbound[i];
		Request *req =
			codec_decode_request(&b->arena, in->body, in->len);
		const struct config_key *caller = NULL;
		char why[256];
		int ast = HANDOFF__WIRE__STATUS__OK;
		if (req && i < n_old) {
			caller = old_callers[i]; /* checked when it came */
		} else if (req && in->preauth) {
			/* HTTP: the token named the caller; the role and
			 * patterns are checked here, as for native requests */
			caller = in->caller;
			ast = auth_allows(&b->auth, caller, req, why,
					  sizeof why);
		} else if (req) {
			ast = authenticate(b, req, in, now, &caller, why,
					   sizeof why);
		}
		if (!req || ast != HANDOFF__WIRE__STATUS__OK) {
			free(in->body);
			in->body = NULL;
		}
		if (req && ast != HANDOFF__WIRE__STATUS__OK) {
			const char *key = in->preauth ?
						  (caller ? caller->id : "") :
					  req->auth && req->auth->key_id ?
						  req->auth->key_id :
						  "";
			log_event(LOG_WARN, "request_denied",
				  LS("request", inbox_request_name(req)),
				  LS("key", key),
				  LS("via", in->preauth ? "http" : "native"),
				  LS("reason", why), LOG_END);
			telemetry_publish_denied(&b->tele, req);
			refuse(b, in->ctrl, req, ast, now, why);
			continue;
		}
		if (!req) {
			log_event(LOG_WARN, "request_malformed",
				  LU("bytes", in->len), LOG_END);
			reply_send_error(b, in->ctrl,
					 HANDOFF__WIRE__STATUS__BAD_REQUEST,
					 "malformed request: not a handoff "
					 "Request message, or over the "
					 "decode budget");
			continue;
		}
		/* a resent fetch, native or HTTP (a nonzero fetch_seq) */
		if (answer_resent_fetch(b, req, in)) {
			free(in->body);
			continue;
		}
		ib->pend[ib->n_pend++] = (struct pending){ .ctrl = in->ctrl,
							   .caller = caller,
							   .req = req,
							   .body = in->body,
							   .len = in->len };
	}
	share_turn(ib);
	for (size_t i = 0; i < ib->n_pend; i++) {
		free(ib->pend[i].body);
		ib->pend[i].body = NULL;
	}
}

void inbox_fini(struct broker *b)
{
	struct inbox *ib = &b->inbox;
	for (size_t i = 0; i < ib->n_deferred; i++) {
		pump_send(&b->pump, ib->deferred[i].ctrl, NULL, 0);
		free(ib->deferred[i].body);
	}
	ib->n_deferred = 0;
}
