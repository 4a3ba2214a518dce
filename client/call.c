/*
 * call.c — the one request/reply round trip every libhandoff call makes.
 *
 * A request is packed once; the same bytes are then sent again after every
 * transient failure (no reply within the attempt timeout, a refused or
 * broken connection, a broker answering SHUTTING_DOWN), with exponential
 * backoff and jitter, until the call's deadline. Resending identical bytes
 * is what makes retries safe: a publish carries the same idempotency keys
 * and a fetch the same fetch_seq, so the broker stores once and replays
 * the same reply. Nothing but a decoded OK reply counts as success.
 *
 * nanomsg's REQ socket has one request in flight: a new send cancels the
 * old one and late replies to it are dropped, so an answer to an earlier
 * attempt can never be mistaken for this one's. Its own resend timer is
 * set to an hour at connect so that only these explicit retries resend.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nanomsg/nn.h>
#include <sodium.h>

#include "client_internal.h"
#include "request_mac.h"

#define BACKOFF_MIN_MS 50u
#define BACKOFF_MAX_MS 1000u

/* How much decoding may allocate, per reply byte plus a fixed slack. A
 * protobuf-c struct is a few times larger than its encoding (an id of one
 * varint byte becomes 8 bytes); a hostile reply of empty submessages could
 * otherwise make each 2 wire bytes cost a 100-byte struct. */
#define DECODE_BYTES_PER_WIRE_BYTE 16u
#define DECODE_SLACK_BYTES	   (1u << 20)

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec req = { .tv_sec = (time_t)(ms / 1000u),
				.tv_nsec = (long)(ms % 1000u) * 1000000L };

	/* A signal must not cut the backoff short into a resend storm. */
	while (nanosleep(&req, &req) != 0 && errno == EINTR)
		;
}

int hc_map_status(int status)
{
	if (status == HANDOFF__WIRE__STATUS__OK)
		return HANDOFF_OK;
	/* Wire statuses 1..12 are handoff_error 1..12 by design. */
	if (status >= HANDOFF__WIRE__STATUS__BAD_REQUEST &&
	    status <= HANDOFF__WIRE__STATUS__STALE_REQUEST)
		return status;
	return -1;
}

/* ---- bounded decoding ------------------------------------------------- */

struct bounded_alloc {
	size_t used;
	size_t cap;
	int exceeded; /* the cap, not malloc, refused an allocation */
};

static void *bounded_alloc_fn(void *data, size_t size)
{
	struct bounded_alloc *b = data;

	if (size > b->cap - b->used) {
		b->exceeded = 1;
		return NULL;
	}
	b->used += size;
	return malloc(size ? size : 1);
}

/* Matches protobuf-c's default free, so replies are freed with NULL. */
static void bounded_free_fn(void *data, void *p)
{
	(void)data;
	free(p);
}

static int decode_reply(const void *buf, size_t len, Handoff__Wire__Reply **out)
{
	struct bounded_alloc b = { 0, 0, 0 };
	ProtobufCAllocator alloc = { bounded_alloc_fn, bounded_free_fn, &b };

	b.cap = DECODE_SLACK_BYTES;
	if (len > (SIZE_MAX - b.cap) / DECODE_BYTES_PER_WIRE_BYTE)
		b.cap = SIZE_MAX;
	else
		b.cap += len * DECODE_BYTES_PER_WIRE_BYTE;

	errno = 0;
	*out = handoff__wire__reply__unpack(&alloc, len, buf);
	if (*out != NULL)
		return HANDOFF_OK;
	/* protobuf-c doesn't say why unpack failed: tell malloc running dry
	 * apart from a malformed or oversized reply. */
	if (!b.exceeded && errno == ENOMEM)
		return HANDOFF_ENOMEM;
	return HANDOFF_EPROTO;
}

void hc_reply_free(Handoff__Wire__Reply *r)
{
	if (r != NULL)
		handoff__wire__reply__free_unpacked(r, NULL);
}

/* ---- one attempt ------------------------------------------------------ */

/* Negative so they never collide with a handoff_error. */
enum attempt_result {
	ATTEMPT_REPLY = -1,	/* *out holds a decoded reply */
	ATTEMPT_TRANSIENT = -2, /* nothing usable came back: back off, resend */
};

/* errno values after which the socket itself is unusable. */
static int fatal_nn_errno(int e)
{
	return e == EBADF || e == ETERM || e == ENOTSUP || e == EFSM;
}

static int set_timeout(int sock, int option, uint64_t ms)
{
	int v = ms > INT_MAX ? INT_MAX : (int)ms;

	if (v < 1)
		v = 1; /* 0 would mean "don't wait at all" */
	return nn_setsockopt(sock, NN_SOL_SOCKET, option, &v, sizeof(v));
}

/* Returns an attempt_result, or a handoff_error that ends the call. */
static int attempt(handoff_client *c, const void *buf, size_t len,
		   uint64_t send_ms, uint64_t recv_ms,
		   Handoff__Wire__Reply **out)
{
	void *msg = NULL;
	int n;
	int rc;

	*out = NULL;
	if (set_timeout(c->sock, NN_SNDTIMEO, send_ms) < 0 ||
	    set_timeout(c->sock, NN_RCVTIMEO, recv_ms) < 0)
		return HANDOFF_ETRANSPORT;

	if (nn_send(c->sock, buf, len, 0) < 0)
		return fatal_nn_errno(nn_errno()) ? HANDOFF_ETRANSPORT :
						    ATTEMPT_TRANSIENT;

	n = nn_recv(c->sock, &msg, NN_MSG, 0);
	if (n < 0)
		return fatal_nn_errno(nn_errno()) ? HANDOFF_ETRANSPORT :
						    ATTEMPT_TRANSIENT;

	rc = decode_reply(msg, (size_t)n, out);
	nn_freemsg(msg);
	return rc == HANDOFF_OK ? ATTEMPT_REPLY : rc;
}

/* Silent attempts in a row after which the socket is replaced. */
#define RESOCKET_AFTER 3

/* ---- signing ---------------------------------------------------------- */

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The time to sign with: the broker's clock as last learnt (carried on by
 * the monotonic clock), else our wall clock. */
static uint64_t signing_ms(const handoff_client *c)
{
	if (c->clock_known)
		return (uint64_t)((int64_t)now_ms() + c->clock_offset_ms);
	return wall_ms();
}

/*
 * A STALE_REQUEST reply to the request we signed last may carry the
 * broker's clock, MACed with our key over our session and seq: adopt it
 * (only then: a forged clock would have us sign requests that become valid
 * later). Returns whether it did.
 */
static int learn_clock(handoff_client *c, const Handoff__Wire__Reply *r)
{
	const Handoff__Wire__BrokerClock *clk = r->clock;
	uint8_t mac[REQUEST_MAC_BYTES];
	int good;

	if (clk == NULL || clk->mac.len != sizeof mac || clk->now_ms == 0 ||
	    clk->now_ms > INT64_MAX / 2)
		return 0;
	request_clock_mac(c->secret, c->key_id, c->session, c->seq, clk->now_ms,
			  mac);
	good = sodium_memcmp(mac, clk->mac.data, sizeof mac) == 0;
	sodium_memzero(mac, sizeof mac);
	if (!good)
		return 0;
	c->clock_offset_ms = (int64_t)clk->now_ms - (int64_t)now_ms();
	c->clock_skew_ms = (int64_t)clk->now_ms - (int64_t)wall_ms();
	c->clock_known = 1;
	return 1;
}

/*
 * Pack req into a new buffer; with a key, append an Auth field whose MAC
 * covers every byte before it (proto/handoff.proto, message Auth). Each
 * call takes a new sequence number.
 */
static int pack_signed(handoff_client *c, Handoff__Wire__Request *req,
		       uint8_t **out, size_t *out_len)
{
	Handoff__Wire__Request only = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__Auth au = HANDOFF__WIRE__AUTH__INIT;
	uint8_t mac[REQUEST_MAC_BYTES];
	size_t len, alen = 0;
	uint8_t *buf;

	req->auth = NULL;
	len = handoff__wire__request__get_packed_size(req);
	if (c->key_id != NULL) {
		au.key_id = c->key_id;
		au.session = c->session;
		au.seq = ++c->seq;
		au.timestamp_ms = signing_ms(c);
		au.mac.data = mac;
		au.mac.len = sizeof mac;
		only.auth = &au;
		alen = handoff__wire__request__get_packed_size(&only);
	}
	/* nanomsg drops an oversized message without telling either side,
	 * and our resends would loop until the deadline: refuse it here. */
	if (len + alen > HC_MAX_REQUEST_BYTES ||
	    (c->max_request_bytes && len + alen > c->max_request_bytes))
		return HANDOFF_ETOOBIG;
	buf = malloc(len + alen ? len + alen : 1);
	if (buf == NULL)
		return HANDOFF_ENOMEM;
	handoff__wire__request__pack(req, buf);
	if (c->key_id != NULL) {
		request_mac(c->secret, c->key_id, au.session, au.seq,
			    au.timestamp_ms, buf, len, mac);
		handoff__wire__request__pack(&only, buf + len);
	}
	*out = buf;
	*out_len = len + alen;
	return HANDOFF_OK;
}

/* ---- the retry loop --------------------------------------------------- */

/* The last reply's text and hint are what handoff_last_message() and
 * handoff_last_retry_after_ms() report. */
static void remember_reply(handoff_client *c, const Handoff__Wire__Reply *r)
{
	free(c->last_message);
	c->last_message = NULL;
	if (r->message != NULL && r->message[0] != '\0')
		c->last_message = strdup(r->message); /* NULL reads as "" */
	c->last_retry_after_ms = r->retry_after_ms;
}

/* Body-less OK replies are acceptable only where the request expects none. */
static int check_body(const Handoff__Wire__Reply *r,
		      Handoff__Wire__Reply__BodyCase expect)
{
	if (r->body_case != expect)
		return HANDOFF_EPROTO;
	/* A set oneof always has its submessage, but never trust the peer.
	 * Every union member is a pointer, so reading one reads any. */
	if (expect != HANDOFF__WIRE__REPLY__BODY__NOT_SET && r->ping == NULL)
		return HANDOFF_EPROTO;
	return HANDOFF_OK;
}

int64_t handoff_clock_skew_ms(const handoff_client *c)
{
	return c != NULL && c->clock_known ? c->clock_skew_ms : 0;
}

int hc_call(handoff_client *c, Handoff__Wire__Request *req,
	    Handoff__Wire__Reply__BodyCase expect, uint32_t extra_wait_ms,
	    Handoff__Wire__Reply **out)
{
	Handoff__Wire__Reply *reply = NULL;
	uint8_t *buf = NULL;
	size_t len;
	uint64_t deadline;
	uint32_t backoff = BACKOFF_MIN_MS;
	unsigned stale_resigns = 0, silent_attempts = 0;
	int stale_last = 0; /* the last attempt was refused as stale */
	int rc;

	*out = NULL;
	free(c->last_message);
	c->last_message = NULL;
	c->last_retry_after_ms = 0;

	req->protocol_version =
		HANDOFF__WIRE__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
	rc = pack_signed(c, req, &buf, &len);
	if (rc != HANDOFF_OK)
		return rc;

	deadline = now_ms() + c->deadline_ms + extra_wait_ms;
	for (;;) {
		uint64_t now = now_ms();
		uint64_t left, delay;

		if (now >= deadline) {
			rc = stale_last ? HANDOFF_ESTALE : HANDOFF_ETIMEDOUT;
			goto done;
		}
		left = deadline - now;
		rc = attempt(c, buf, len, min_u64(left, c->attempt_timeout_ms),
			     min_u64(left, (uint64_t)c->attempt_timeout_ms +
						   extra_wait_ms),
			     &reply);
		if (rc != ATTEMPT_REPLY && rc != ATTEMPT_TRANSIENT)
			goto done;
		/* A socket that keeps getting no answer is replaced: torture
		 * runs saw a REQ socket stay silent across broker restarts
		 * while fresh ones were answered. The resent bytes are the
		 * same request, so this is as safe as any resend. */
		if (rc == ATTEMPT_TRANSIENT &&
		    ++silent_attempts % RESOCKET_AFTER == 0)
			(void)hc_open_socket(c);
		if (rc == ATTEMPT_REPLY)
			silent_attempts = 0;
		stale_last =
			rc == ATTEMPT_REPLY &&
			reply->status == HANDOFF__WIRE__STATUS__STALE_REQUEST;

		delay = backoff / 2 + randombytes_uniform(backoff / 2 + 1);
		if (rc == ATTEMPT_REPLY) {
			remember_reply(c, reply);
			if (reply->status ==
				    HANDOFF__WIRE__STATUS__STALE_REQUEST &&
			    c->key_id != NULL) {
				/* Signed too long ago, by a clock other than
				 * the broker's, before a broker restart, or
				 * already applied (a resend): sign anew, with
				 * the broker's clock when it told it. Every
				 * request is safe to apply twice. */
				(void)learn_clock(c, reply);
				free(buf);
				buf = NULL;
				hc_reply_free(reply);
				reply = NULL;
				rc = pack_signed(c, req, &buf, &len);
				if (rc != HANDOFF_OK)
					goto done;
				if (stale_resigns++ == 0)
					delay = 0; /* the first one at once */
			} else if (reply->status !=
				   HANDOFF__WIRE__STATUS__SHUTTING_DOWN) {
				break;
			} else {
				/* The broker is going away; its restarted self
				 * may take longer than our backoff says. */
				if (reply->retry_after_ms > delay)
					delay = reply->retry_after_ms;
				hc_reply_free(reply);
				reply = NULL;
			}
		}

		now = now_ms();
		if (now >= deadline) {
			rc = stale_last ? HANDOFF_ESTALE : HANDOFF_ETIMEDOUT;
			goto done;
		}
		sleep_ms(min_u64(delay, deadline - now));
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS :
							 backoff * 2;
	}

	rc = hc_map_status(reply->status);
	if (rc < 0) {
		rc = HANDOFF_EPROTO; /* a status newer than this library */
		goto done;
	}
	if (rc != HANDOFF_OK)
		goto done;
	rc = check_body(reply, expect);
	if (rc != HANDOFF_OK)
		goto done;
	*out = reply;
	reply = NULL;

done:
	hc_reply_free(reply);
	free(buf);
	return rc;
}
