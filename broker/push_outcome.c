/*
 * push_outcome.c — classifying push attempts; see push_outcome.h.
 */
#include "push_outcome.h"

#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <string.h>
#include <strings.h>

/* CURLcode values (curl/curl.h, stable across versions) */
enum {
	C_COULDNT_RESOLVE_PROXY = 5,
	C_COULDNT_RESOLVE_HOST = 6,
	C_COULDNT_CONNECT = 7,
	C_OPERATION_TIMEDOUT = 28,
	C_SSL_CONNECT_ERROR = 35,
	C_GOT_NOTHING = 52,
	C_SEND_ERROR = 55,
	C_RECV_ERROR = 56,
	C_PEER_FAILED_VERIFICATION = 60,
};

static const char *transport_kind(int code)
{
	switch (code) {
	case C_COULDNT_RESOLVE_PROXY:
	case C_COULDNT_RESOLVE_HOST:
		return "DNS failure";
	case C_COULDNT_CONNECT:
		return "connection failed";
	case C_OPERATION_TIMEDOUT:
		return "timeout";
	case C_SSL_CONNECT_ERROR:
	case C_PEER_FAILED_VERIFICATION:
		return "TLS failure";
	case C_GOT_NOTHING:
		return "connection closed without a reply";
	case C_SEND_ERROR:
	case C_RECV_ERROR:
		return "connection broken";
	default:
		return "transport error";
	}
}

void push_classify(const struct push_result *r, struct push_outcome *o)
{
	memset(o, 0, sizeof *o);
	o->action = PUSH_NACK;
	if (r->address_denied) {
		o->connection_failure = true;
		snprintf(o->text, sizeof o->text,
			 "address denied: the URL resolves only to private, "
			 "loopback or link-local addresses ([push] "
			 "deny_private)");
		return;
	}
	if (r->transport) {
		const char *e = r->transport_error ? r->transport_error : "";
		o->connection_failure = true;
		if (r->transport == C_OPERATION_TIMEDOUT)
			snprintf(o->text, sizeof o->text,
				 "timeout: no complete reply within %u ms "
				 "(%s)",
				 r->timeout_ms, e);
		else
			snprintf(o->text, sizeof o->text, "%s (curl %d): %s",
				 transport_kind(r->transport), r->transport, e);
		return;
	}
	const char *line = r->body_line ? r->body_line : "";
	if (r->status >= 200 && r->status <= 299) {
		o->action = PUSH_ACK;
		return;
	}
	if (r->status == 410) {
		o->gone = true;
		snprintf(o->text, sizeof o->text,
			 "410 Gone: endpoint gone; subscription paused%s%s",
			 *line ? ": " : "", line);
		return;
	}
	if ((r->status == 429 || r->status == 503) && r->retry_after_s > 0) {
		long s = r->retry_after_s;
		if (s > PUSH_RETRY_AFTER_MAX_S)
			s = PUSH_RETRY_AFTER_MAX_S;
		o->delay_ms = (uint32_t)s * 1000u;
	}
	if (r->status >= 300 && r->status <= 399)
		snprintf(o->text, sizeof o->text,
			 "HTTP %ld: redirect not followed%s%s", r->status,
			 *line ? ": " : "", line);
	else
		snprintf(o->text, sizeof o->text, "HTTP %ld%s%s", r->status,
			 *line ? ": " : "", line);
}

static bool ipv4_private(uint32_t a) /* host order */
{
	uint8_t b0 = (uint8_t)(a >> 24), b1 = (uint8_t)(a >> 16);
	return b0 == 0 || b0 == 10 || b0 == 127 || b0 >= 224 ||
	       (b0 == 169 && b1 == 254) || (b0 == 172 && (b1 & 0xf0) == 16) ||
	       (b0 == 192 && b1 == 168) || (b0 == 100 && (b1 & 0xc0) == 64);
}

bool push_address_private(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		return ipv4_private(ntohl(in->sin_addr.s_addr));
	}
	if (sa->sa_family != AF_INET6)
		return true;
	const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0,    0,
					    0, 0, 0, 0, 0xff, 0xff };
	if (memcmp(b, mapped, sizeof mapped) == 0)
		return ipv4_private((uint32_t)b[12] << 24 |
				    (uint32_t)b[13] << 16 |
				    (uint32_t)b[14] << 8 | b[15]);
	static const uint8_t zero[15] = { 0 };
	if (memcmp(b, zero, sizeof zero) == 0 && (b[15] == 0 || b[15] == 1))
		return true;				  /* :: and ::1 */
	return (b[0] & 0xfe) == 0xfc ||			  /* fc00::/7 */
	       (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || /* fe80::/10 */
	       b[0] == 0xff;				  /* multicast */
}

/* ---- who pushes, and to what ------------------------------------------- */

/* The push thread's caller: consumer of every subscription (so fetch, ack
 * and nack pass auth_allows with access control on) and operator (list). */
static const struct config_key caller = {
	.id = (char *)"handoffd-push",
	.roles = ROLE_CONSUMER | ROLE_OPERATOR,
	.subs = { (char *)"*" },
	.n_subs = 1,
};

const struct config_key *push_caller(void)
{
	return &caller;
}

const char *push_url_problem(const char *url)
{
	const char *host;
	size_t n = strlen(url);
	if (n > PUSH_MAX_URL_BYTES)
		return "push URL longer than 2048 bytes";
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f)
			return "push URL has spaces or control characters";
	if (strncasecmp(url, "http://", 7) == 0)
		host = url + 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		host = url + 8;
	else
		return "push URL must start with http:// or https://";
	if (!*host || *host == '/' || *host == ':' || *host == '?')
		return "push URL has no host";
	return NULL;
}
