/*
 * handoff.c — the handle's life (connect, settings, close) and the static
 * names of error codes and enums. The calls themselves live in publish.c,
 * subscriptions.c, consume.c, dlq.c and inspect.c; the round trip and its
 * retries in call.c.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <sodium.h>

#include "client_internal.h"

/* Our retries resend; nanomsg's own resend timer must never fire first. */
#define REQ_RESEND_IVL_MS (3600 * 1000)
/* Random hex chars appended to the consumer name, unique per handle. */
#define CONSUMER_SUFFIX_BYTES 3

const char *handoff_strerror(int err)
{
	switch (err) {
	case HANDOFF_OK:
		return "success";
	case HANDOFF_EBADREQUEST:
		return "request rejected as invalid";
	case HANDOFF_EVERSION:
		return "protocol version not supported by broker";
	case HANDOFF_ENOSUBSCRIPTIONS:
		return "topic has no subscriptions";
	case HANDOFF_ENOTFOUND:
		return "not found";
	case HANDOFF_ECONFLICT:
		return "conflicts with what the broker has (a subscription with another topic or policy, or a backup of that name or one running)";
	case HANDOFF_ELEASELOST:
		return "lease lost";
	case HANDOFF_ELIMIT:
		return "limit exceeded";
	case HANDOFF_ESTORAGEFULL:
		return "broker storage full";
	case HANDOFF_ESHUTTINGDOWN:
		return "broker shutting down";
	case HANDOFF_EINTERNAL:
		return "broker internal error";
	case HANDOFF_EPERM:
		return "permission denied";
	case HANDOFF_ESTALE:
		return "request signature stale";
	case HANDOFF_ETIMEDOUT:
		return "no reply before the deadline";
	case HANDOFF_EINVAL:
		return "invalid argument";
	case HANDOFF_ENOMEM:
		return "out of memory";
	case HANDOFF_ETRANSPORT:
		return "transport error";
	case HANDOFF_EPROTO:
		return "malformed reply from broker";
	case HANDOFF_ETOOBIG:
		return "request too large";
	default:
		return "unknown error";
	}
}

const char *handoff_outcome_name(int outcome)
{
	switch (outcome) {
	case HANDOFF_OUTCOME_LEASED:
		return "leased";
	case HANDOFF_OUTCOME_ACKED:
		return "acked";
	case HANDOFF_OUTCOME_NACKED:
		return "nacked";
	case HANDOFF_OUTCOME_PERMANENT:
		return "permanent";
	case HANDOFF_OUTCOME_EXPIRED:
		return "expired";
	case HANDOFF_OUTCOME_BROKER_RESTART:
		return "broker_restart";
	case HANDOFF_OUTCOME_CORRUPT:
		return "corrupt";
	case HANDOFF_OUTCOME_UNSUBSCRIBED:
		return "unsubscribed";
	case HANDOFF_OUTCOME_RELEASED:
		return "released";
	default:
		return "unknown";
	}
}

const char *handoff_dead_reason_name(int reason)
{
	switch (reason) {
	case HANDOFF_DEAD_MAX_ATTEMPTS:
		return "max_attempts";
	case HANDOFF_DEAD_PERMANENT:
		return "permanent";
	case HANDOFF_DEAD_CORRUPT:
		return "corrupt";
	default:
		return "none";
	}
}

const char *handoff_state_name(int state)
{
	switch (state) {
	case HANDOFF_STATE_READY:
		return "ready";
	case HANDOFF_STATE_DELAYED:
		return "delayed";
	case HANDOFF_STATE_LEASED:
		return "leased";
	case HANDOFF_STATE_ACKED:
		return "acked";
	case HANDOFF_STATE_DEAD:
		return "dead";
	case HANDOFF_STATE_PURGED:
		return "purged";
	case HANDOFF_STATE_UNSUBSCRIBED:
		return "unsubscribed";
	default:
		return "unknown";
	}
}

/* "name:xxxxxx", name defaulting to "HOST:PID": the random suffix keeps two
 * handles of one process apart, since the broker keys fetch_seq by it. */
static char *make_consumer(const char *name)
{
	unsigned char rnd[CONSUMER_SUFFIX_BYTES];
	char hex[2 * CONSUMER_SUFFIX_BYTES + 1];
	char host[256];
	char *s = NULL;
	int n;

	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
	if (name != NULL && name[0] != '\0') {
		n = asprintf(&s, "%s:%s", name, hex);
	} else {
		if (gethostname(host, sizeof(host)) != 0)
			strcpy(host, "unknown");
		host[sizeof(host) - 1] =
			'\0'; /* may be truncated unterminated */
		n = asprintf(&s, "%s:%ld:%s", host, (long)getpid(), hex);
	}
	return n < 0 ? NULL : s;
}

static int set_int_option(int sock, int level, int option, int value)
{
	return nn_setsockopt(sock, level, option, &value, sizeof(value));
}

int hc_open_socket(handoff_client *c)
{
	int sock = nn_socket(AF_SP, NN_REQ);

	if (sock < 0)
		return HANDOFF_ETRANSPORT;
	if (set_int_option(sock, NN_SOL_SOCKET, NN_RCVMAXSIZE,
			   (int)c->max_reply_bytes) < 0 ||
	    set_int_option(sock, NN_REQ, NN_REQ_RESEND_IVL, REQ_RESEND_IVL_MS) <
		    0) {
		nn_close(sock);
		return HANDOFF_ETRANSPORT;
	}
	if (nn_connect(sock, c->url) < 0) {
		int e = nn_errno();

		nn_close(sock);
		/* A malformed or unknown-scheme URL is the caller's mistake. */
		return (e == EINVAL || e == EPROTONOSUPPORT ||
			e == ENAMETOOLONG) ?
			       HANDOFF_EINVAL :
			       HANDOFF_ETRANSPORT;
	}
	if (c->sock >= 0) {
		while (nn_close(c->sock) < 0 && nn_errno() == EINTR)
			;
	}
	c->sock = sock;
	return HANDOFF_OK;
}

int handoff_connect(const char *url, const handoff_options *opts,
		    handoff_client **out)
{
	static const handoff_options defaults;
	Handoff__Wire__Request req = HANDOFF__WIRE__REQUEST__INIT;
	Handoff__Wire__PingRequest ping = HANDOFF__WIRE__PING_REQUEST__INIT;
	Handoff__Wire__Reply *reply = NULL;
	handoff_client *c = NULL;
	int rc;

	if (out == NULL)
		return HANDOFF_EINVAL;
	*out = NULL;
	if (url == NULL)
		url = HANDOFF_DEFAULT_URL;
	if (url[0] == '\0')
		return HANDOFF_EINVAL;
	if (opts == NULL)
		opts = &defaults;
	/* Random idempotency keys and consumer suffixes come from here. */
	if (sodium_init() < 0)
		return HANDOFF_ETRANSPORT;

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return HANDOFF_ENOMEM;
	c->sock = -1;
	c->deadline_ms =
		opts->deadline_ms ? opts->deadline_ms : HC_DEFAULT_DEADLINE_MS;
	c->attempt_timeout_ms = opts->attempt_timeout_ms ?
					opts->attempt_timeout_ms :
					HC_DEFAULT_ATTEMPT_TIMEOUT_MS;
	c->max_reply_bytes = opts->max_reply_bytes ? opts->max_reply_bytes :
						     HC_DEFAULT_MAX_REPLY_BYTES;
	if (c->max_reply_bytes > INT_MAX)
		c->max_reply_bytes = INT_MAX; /* NN_RCVMAXSIZE is an int */
	c->consumer = make_consumer(opts->consumer_name);
	if (c->consumer == NULL) {
		rc = HANDOFF_ENOMEM;
		goto fail;
	}
	if ((opts->key_id == NULL) != (opts->secret == NULL) ||
	    (opts->key_id != NULL &&
	     (opts->key_id[0] == '\0' || strlen(opts->key_id) > 64))) {
		rc = HANDOFF_EINVAL;
		goto fail;
	}
	if (opts->key_id != NULL) {
		c->key_id = strdup(opts->key_id);
		if (c->key_id == NULL) {
			rc = HANDOFF_ENOMEM;
			goto fail;
		}
		memcpy(c->secret, opts->secret, sizeof c->secret);
		randombytes_buf(&c->session, sizeof c->session);
	}

	c->url = strdup(url);
	if (c->url == NULL) {
		rc = HANDOFF_ENOMEM;
		goto fail;
	}
	rc = hc_open_socket(c);
	if (rc != HANDOFF_OK)
		goto fail;

	/* nn_connect succeeds with nobody listening: only an answer proves
	 * a broker is there and speaks our protocol version. */
	req.body_case = HANDOFF__WIRE__REQUEST__BODY_PING;
	req.ping = &ping;
	rc = hc_call(c, &req, HANDOFF__WIRE__REPLY__BODY_PING, 0, &reply);
	if (rc == HANDOFF_OK)
		c->max_request_bytes = reply->ping->max_request_bytes;
	hc_reply_free(reply);
	if (rc != HANDOFF_OK)
		goto fail;
	*out = c;
	return HANDOFF_OK;

fail:
	handoff_close(c);
	return rc;
}

void handoff_close(handoff_client *c)
{
	if (c == NULL)
		return;
	if (c->sock >= 0) {
		while (nn_close(c->sock) < 0 && nn_errno() == EINTR)
			;
	}
	free(c->consumer);
	free(c->url);
	free(c->last_message);
	free(c->key_id);
	sodium_memzero(c->secret, sizeof c->secret);
	free(c);
}

int handoff_parse_secret(const char *hex, unsigned char out[32])
{
	size_t len = 0;
	const char *end = NULL;
	if (hex == NULL || out == NULL)
		return HANDOFF_EINVAL;
	while (*hex == ' ' || *hex == '\t' || *hex == '\n' || *hex == '\r')
		hex++;
	if (sodium_hex2bin(out, 32, hex, strlen(hex), NULL, &len, &end) ||
	    len != 32)
		return HANDOFF_EINVAL;
	while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')
		end++;
	return *end == '\0' ? HANDOFF_OK : HANDOFF_EINVAL;
}

void handoff_set_deadline(handoff_client *c, uint32_t deadline_ms)
{
	if (c == NULL)
		return;
	c->deadline_ms = deadline_ms ? deadline_ms : HC_DEFAULT_DEADLINE_MS;
}

const char *handoff_last_message(const handoff_client *c)
{
	if (c == NULL || c->last_message == NULL)
		return "";
	return c->last_message;
}

bool handoff_last_fetch_paused(const handoff_client *c)
{
	return c != NULL && c->last_fetch_paused;
}

uint32_t handoff_last_retry_after_ms(const handoff_client *c)
{
	return c != NULL ? c->last_retry_after_ms : 0;
}
