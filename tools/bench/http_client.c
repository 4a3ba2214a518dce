/*
 * http_client.c — the HTTP side of handoff-bench: a minimal HTTP/1.1 client
 * (one persistent connection per thread, one request in flight) and the few
 * JSON bodies the HTTP scenarios send and read. See bench.h.
 *
 * Hand-written rather than libcurl: the scenarios compare the broker's HTTP
 * path with its native one, so the client should cost as little as the
 * native client does. A request is one send() of head and body (no Nagle
 * wait, no 100-continue), a response one or two recv()s, parsed for its
 * status, Content-Length and Connection: close only; the replies the
 * scenarios need (fetch, ack) are scanned for their few fields rather than
 * parsed by a JSON library. The broker's replies are compact JSON in a
 * fixed field order (jansson, JSON_COMPACT, insertion order); anything else
 * fails the scenario loudly rather than being measured wrongly.
 *
 * Errors: functions return 0 or -1 with err filled; nothing aborts.
 * Ownership: a struct bench_http and its buffers belong to one thread; a
 * response's body points into them until the next call.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "bench.h"

#define HEAD_MAX     1024	 /* our request heads */
#define RESP_INITIAL (64 * 1024) /* grows for large fetch replies */
#define RESP_MAX     (256u << 20)

int bench_http_open(struct bench_http *h, const char *host, unsigned port,
		    uint32_t timeout_ms, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV },
			*ai = NULL;
	char ps[16];

	memset(h, 0, sizeof *h);
	h->fd = -1;
	h->timeout_ms = timeout_ms;
	snprintf(h->host, sizeof h->host, "%s", host);
	h->port = port;
	snprintf(ps, sizeof ps, "%u", port);
	int gai = getaddrinfo(host, ps, &hints, &ai);
	if (gai) {
		bench_errf(err, errlen, "%s:%u: %s", host, port,
			   gai_strerror(gai));
		return -1;
	}
	if (ai->ai_addrlen > sizeof h->addr) {
		freeaddrinfo(ai);
		bench_errf(err, errlen, "%s:%u: address too long", host, port);
		return -1;
	}
	memcpy(&h->addr, ai->ai_addr, ai->ai_addrlen);
	h->addr_len = ai->ai_addrlen;
	h->family = ai->ai_family;
	freeaddrinfo(ai);
	h->cap = RESP_INITIAL;
	h->buf = malloc(h->cap);
	h->req_cap = HEAD_MAX + 4096;
	h->req = malloc(h->req_cap);
	if (h->buf == NULL || h->req == NULL) {
		bench_http_close(h);
		bench_errf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

void bench_http_close(struct bench_http *h)
{
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
	free(h->buf);
	free(h->req);
	h->buf = h->req = NULL;
}

static int http_connect(struct bench_http *h, char *err, size_t errlen)
{
	struct timeval tv = { .tv_sec = h->timeout_ms / 1000,
			      .tv_usec = (h->timeout_ms % 1000) * 1000 };
	int one = 1;
	int fd = socket(h->family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		bench_errf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	/* every call's send and receive are bounded by the timeout */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&h->addr, h->addr_len) != 0) {
		bench_errf(err, errlen, "connect %s:%u: %s", h->host, h->port,
			   strerror(errno));
		close(fd);
		return -1;
	}
	h->fd = fd;
	h->connects++;
	h->have = 0;
	return 0;
}

static void drop_connection(struct bench_http *h)
{
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
	h->have = 0;
}

static int send_all(struct bench_http *h, const char *p, size_t n, char *err,
		    size_t errlen)
{
	while (n > 0) {
		ssize_t w = send(h->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			bench_errf(err, errlen, "send: %s",
				   w < 0 ? strerror(errno) : "closed");
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Receive more into buf (growing it up to need + 1 bytes). */
static int recv_more(struct bench_http *h, size_t need, char *err,
		     size_t errlen)
{
	if (need + 1 > h->cap) {
		size_t cap = h->cap;
		while (cap < need + 1)
			cap *= 2;
		char *b = realloc(h->buf, cap);
		if (b == NULL) {
			bench_errf(err, errlen, "out of memory");
			return -1;
		}
		h->buf = b;
		h->cap = cap;
	}
	for (;;) {
		ssize_t r =
			recv(h->fd, h->buf + h->have, h->cap - 1 - h->have, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			bench_errf(err, errlen, "receive: %s",
				   errno == EAGAIN || errno == EWOULDBLOCK ?
					   "timed out" :
					   strerror(errno));
			return -1;
		}
		if (r == 0) {
			bench_errf(err, errlen,
				   "the broker closed the connection");
			return -1;
		}
		h->have += (size_t)r;
		return 0;
	}
}

/* The value of header name in the head [p, end), or NULL. */
static const char *header_value(const char *p, const char *end,
				const char *name, size_t *vlen)
{
	size_t nl = strlen(name);

	while (p < end) {
		const char *eol = memchr(p, '\r', (size_t)(end - p));
		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - p) > nl && p[nl] == ':' &&
		    strncasecmp(p, name, nl) == 0) {
			const char *v = p + nl + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			*vlen = (size_t)(eol - v);
			return v;
		}
		p = eol + 2;
	}
	return NULL;
}

/* Read one response into buf: the status, the body after the head. */
static int read_response(struct bench_http *h, struct bench_http_resp *resp,
			 bool *close_after, char *err, size_t errlen)
{
	char *head_end = NULL;
	size_t head_len, body_len, vlen;
	const char *v;

	while ((head_end = h->have >= 4 ?
				   memmem(h->buf, h->have, "\r\n\r\n", 4) :
				   NULL) == NULL) {
		if (h->have > 64 * 1024) {
			bench_errf(err, errlen, "response head too long");
			return -1;
		}
		if (recv_more(h, h->have + 4096, err, errlen))
			return -1;
	}
	head_len = (size_t)(head_end - h->buf) + 4;
	int major, minor, status;
	if (sscanf(h->buf, "HTTP/%d.%d %d", &major, &minor, &status) != 3) {
		bench_errf(err, errlen, "not an HTTP response");
		return -1;
	}
	const char *hp = memchr(h->buf, '\n', head_len);
	hp = hp ? hp + 1 : h->buf + head_len;
	if (header_value(hp, head_end, "Transfer-Encoding", &vlen)) {
		bench_errf(err, errlen,
			   "a chunked response (this client reads "
			   "Content-Length only)");
		return -1;
	}
	v = header_value(hp, head_end, "Content-Length", &vlen);
	if (v == NULL) {
		bench_errf(err, errlen, "a response without Content-Length");
		return -1;
	}
	body_len = strtoull(v, NULL, 10);
	if (body_len > RESP_MAX) {
		bench_errf(err, errlen, "response body of %zu bytes", body_len);
		return -1;
	}
	v = header_value(hp, head_end, "Connection", &vlen);
	*close_after = (v && vlen == 5 && strncasecmp(v, "close", 5) == 0) ||
		       (major == 1 && minor == 0);
	while (h->have < head_len + body_len) {
		if (recv_more(h, head_len + body_len, err, errlen))
			return -1;
	}
	if (h->have > head_len + body_len) {
		/* one request in flight: nothing may follow the response */
		bench_errf(err, errlen, "bytes after the response");
		return -1;
	}
	h->buf[head_len + body_len] = '\0';
	resp->status = status;
	resp->body = h->buf + head_len;
	resp->len = body_len;
	return 0;
}

int bench_http_call(struct bench_http *h, const char *method, const char *path,
		    const char *content_type, const char *body, size_t len,
		    struct bench_http_resp *resp, char *err, size_t errlen)
{
	bool close_after = false;

	memset(resp, 0, sizeof *resp);
	if (HEAD_MAX + len > h->req_cap) {
		size_t cap = HEAD_MAX + len;
		char *r = realloc(h->req, cap);
		if (r == NULL) {
			bench_errf(err, errlen, "out of memory");
			return -1;
		}
		h->req = r;
		h->req_cap = cap;
	}
	int n = snprintf(h->req, HEAD_MAX,
			 "%s %s HTTP/1.1\r\n"
			 "Host: %s:%u\r\n"
			 "Content-Type: %s\r\n"
			 "Content-Length: %zu\r\n"
			 "\r\n",
			 method, path, h->host, h->port, content_type, len);
	if (n < 0 || n >= HEAD_MAX) {
		bench_errf(err, errlen, "request head too long");
		return -1;
	}
	memcpy(h->req + n, body, len);
	if (h->fd < 0 && http_connect(h, err, errlen))
		return -1;
	h->have = 0;
	h->requests++;
	if (send_all(h, h->req, (size_t)n + len, err, errlen) ||
	    read_response(h, resp, &close_after, err, errlen)) {
		drop_connection(h);
		return -1;
	}
	if (close_after) { /* the body stays readable in buf */
		close(h->fd);
		h->fd = -1;
	}
	return 0;
}

void bench_http_error_text(const struct bench_http_resp *resp, char *out,
			   size_t len)
{
	/* problem+json: the detail is what says why */
	const char *d = strstr(resp->body ? resp->body : "", "\"detail\":\"");
	if (d) {
		d += 10;
		const char *e = strchr(d, '"');
		snprintf(out, len, "HTTP %d: %.*s", resp->status,
			 (int)(e ? e - d : 120), d);
	} else {
		snprintf(out, len, "HTTP %d: %.120s", resp->status,
			 resp->body ? resp->body : "");
	}
}

/* ---- bodies -------------------------------------------------------------- */

void bench_http_payload_fill(char *p, size_t len, uint64_t stamp)
{
	char digits[BENCH_HTTP_STAMP_DIGITS + 1];

	if (len < BENCH_HTTP_STAMP_DIGITS)
		return;
	snprintf(digits, sizeof digits, "%0*" PRIu64, BENCH_HTTP_STAMP_DIGITS,
		 stamp);
	memcpy(p, digits, BENCH_HTTP_STAMP_DIGITS);
}

/* The number at p (digits up to a non-digit); p advanced past it. */
static bool scan_u64(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;

	if (*s < '0' || *s > '9')
		return false;
	while (*s >= '0' && *s <= '9') {
		if (x > (UINT64_MAX - 9) / 10)
			return false;
		x = x * 10 + (uint64_t)(*s++ - '0');
	}
	*v = x;
	*p = s;
	return true;
}

/* Move *p past the next needle before end; false when there is none. */
static bool skip_past(const char **p, const char *end, const char *needle)
{
	size_t nl = strlen(needle);
	const char *f = memmem(*p, (size_t)(end - *p), needle, nl);

	if (f == NULL)
		return false;
	*p = f + nl;
	return true;
}

int bench_http_scan_fetch(const char *body, size_t len,
			  struct bench_http_delivery *out, size_t max,
			  size_t *n)
{
	const char *p = body, *end = body + len;

	*n = 0;
	if (!skip_past(&p, end, "{\"deliveries\":["))
		return -1;
	while (skip_past(&p, end, "{\"event_id\":\"")) {
		struct bench_http_delivery d = { 0 };
		uint64_t attempt;
		if (*n == max || !scan_u64(&p, &d.event_id) ||
		    !skip_past(&p, end, "\"attempt\":") ||
		    !scan_u64(&p, &attempt) ||
		    !skip_past(&p, end, "\"payload\":\""))
			return -1;
		d.attempt = (uint32_t)attempt;
		const char *pl = p;
		if (end - pl > BENCH_HTTP_STAMP_DIGITS &&
		    scan_u64(&pl, &d.stamp) &&
		    pl - p == BENCH_HTTP_STAMP_DIGITS)
			d.stamped = true;
		if (!skip_past(&p, end, "\"lease_token\":\"") ||
		    !scan_u64(&p, &d.lease_token))
			return -1;
		out[(*n)++] = d;
	}
	return 0;
}

int bench_http_ack_body(char *buf, size_t cap,
			const struct bench_http_delivery *d, size_t n)
{
	size_t at = 0;
	int w = snprintf(buf, cap, "{\"items\":[");

	if (w < 0 || (size_t)w >= cap)
		return -1;
	at = (size_t)w;
	for (size_t i = 0; i < n; i++) {
		w = snprintf(buf + at, cap - at,
			     "%s{\"event_id\":\"%" PRIu64
			     "\",\"lease_token\":\"%" PRIu64 "\"}",
			     i ? "," : "", d[i].event_id, d[i].lease_token);
		if (w < 0 || (size_t)w >= cap - at)
			return -1;
		at += (size_t)w;
	}
	w = snprintf(buf + at, cap - at, "]}");
	if (w < 0 || (size_t)w >= cap - at)
		return -1;
	return (int)(at + (size_t)w);
}

int bench_http_scan_acks(const char *body, size_t len, uint64_t *ok,
			 uint64_t *other)
{
	const char *p = body, *end = body + len;

	*ok = *other = 0;
	if (!skip_past(&p, end, "{\"results\":["))
		return -1;
	while (skip_past(&p, end, "\"status\":\"")) {
		if (end - p >= 3 && memcmp(p, "OK\"", 3) == 0)
			(*ok)++;
		else
			(*other)++;
	}
	return 0;
}

int bench_http_batch_init(struct bench_http_batch *b, size_t n,
			  uint32_t payload)
{
	static const char pre[] = "{\"payload\":\"", post[] = "\"}";
	size_t one = sizeof pre - 1 + payload + sizeof post - 1;

	memset(b, 0, sizeof *b);
	b->n = n;
	b->payload = payload;
	b->cap = 16 + n * (one + 1);
	b->body = malloc(b->cap);
	b->at = calloc(n, sizeof *b->at);
	if (b->body == NULL || b->at == NULL)
		return -1;
	size_t at = 0;
	memcpy(b->body, "{\"events\":[", 11);
	at = 11;
	for (size_t i = 0; i < n; i++) {
		if (i)
			b->body[at++] = ',';
		memcpy(b->body + at, pre, sizeof pre - 1);
		at += sizeof pre - 1;
		b->at[i] = at;
		memset(b->body + at, 'p', payload);
		at += payload;
		memcpy(b->body + at, post, sizeof post - 1);
		at += sizeof post - 1;
	}
	memcpy(b->body + at, "]}", 2);
	b->len = at + 2;
	return 0;
}

void bench_http_batch_stamp(struct bench_http_batch *b, uint64_t stamp)
{
	for (size_t i = 0; i < b->n; i++)
		bench_http_payload_fill(b->body + b->at[i], b->payload, stamp);
}

void bench_http_batch_free(struct bench_http_batch *b)
{
	free(b->body);
	free(b->at);
	b->body = NULL;
	b->at = NULL;
}
