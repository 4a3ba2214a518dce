/*
 * receiver.c — the push receiver of the torture workload: the HTTP
 * endpoint of the run's push subscriptions (POST /hook/SUB), a worker
 * process like the producers and consumers, started before the first
 * subscription and kept for the whole run (only the broker is killed).
 *
 * It listens on 127.0.0.1 on a free port and publishes the port in
 * RUN/push/port (written to a temporary name, then renamed). One thread,
 * epoll, HTTP/1.1 keep-alive, bodies by Content-Length (the push thread
 * always sends one).
 *
 * Every request it reads is checked and recorded before it is answered:
 * the Standard Webhooks signature (HMAC-SHA256 of "id.timestamp.body" with
 * the key of RUN/push/SUB.secret, timestamp within 5 minutes), the payload
 * against payload.h, and one P line (record.h) with the event id, attempt,
 * webhook-id, key, a checksum of the body, the verdict and the status it
 * is about to answer. The lines of every request read in one loop turn are
 * written and fdatasync'd together, and only then are the answers sent: a
 * 2xx is never sent that the records do not hold.
 *
 * Answers (per mille, until SIGUSR1): 40 get 503, 20 get 500, 10 get no
 * answer at all (the connection is closed), the rest 200 or 204; a request
 * with a bad signature or payload gets 400. After SIGUSR1 (the final
 * drain) every good request gets 200. SIGTERM ends it with exit 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "payload.h"
#include "record.h"
#include "roles.h"
#include "tt.h"

#define RX_CONNS	256
#define RX_BUF		(64u * 1024u) /* a request: headers + <= 2 KiB */
#define RX_OUT		4096u
#define RX_WAIT_MS	50
#define RX_SUBS		8
#define RX_KEY_MAX	64
#define RX_TS_TOLERANCE 300 /* seconds, as the reference libraries */
#define RX_FAIL_503	40  /* per mille */
#define RX_FAIL_500	20
#define RX_FAIL_NOREPLY 10

struct rx_conn {
	int fd; /* -1: free */
	char *in;
	size_t have;
	char out[RX_OUT];
	size_t out_len;
	bool close_after, touched;
};

struct rx_secret {
	char sub[64];
	unsigned char key[RX_KEY_MAX];
	size_t keylen; /* 0: no readable secret */
};

struct receiver {
	const struct role_args *a;
	struct rec_writer rec;
	struct tt_rng rng;
	int listen_fd, ep;
	struct rx_conn conns[RX_CONNS];
	struct rx_conn *touched[RX_CONNS];
	size_t n_touched;
	struct rx_secret secrets[RX_SUBS];
	size_t n_secrets;
	bool clean;
	uint64_t n_requests, n_ok, n_failed, n_bad;
};

static const char reply_200[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
static const char reply_204[] = "HTTP/1.1 204 No Content\r\n\r\n";
static const char reply_400[] = "HTTP/1.1 400 Bad Request\r\n"
				"Content-Length: 21\r\n\r\n"
				"torture: bad request\n";
static const char reply_500[] = "HTTP/1.1 500 Internal Server Error\r\n"
				"Content-Length: 22\r\n\r\n"
				"torture: injected 500\n";
static const char reply_503[] = "HTTP/1.1 503 Service Unavailable\r\n"
				"Content-Length: 22\r\n\r\n"
				"torture: injected 503\n";
static const char reply_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* Header values and names the records carry: no spaces, bounded. */
static void safe_copy(const char *in, size_t len, char *out, size_t outlen)
{
	size_t i = 0;
	for (; i < len && i + 1 < outlen; i++) {
		char ch = in[i];
		bool ok = (ch >= 'a' && ch <= 'z') ||
			  (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
			  ch == '.';
		out[i] = ok ? ch : '?';
	}
	out[i] = '\0';
	if (i == 0)
		snprintf(out, outlen, "-");
}

/* The value of header name in head (which ends in "\r\n\r\n"), or NULL. */
static const char *header(const char *head, size_t head_len, const char *name,
			  size_t *vlen)
{
	size_t nl = strlen(name);
	const char *end = head + head_len;
	const char *p = memchr(head, '\n', head_len);
	while (p && p + 1 < end) {
		const char *line = p + 1;
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			break;
		if ((size_t)(eol - line) > nl && line[nl] == ':' &&
		    strncasecmp(line, name, nl) == 0) {
			const char *v = line + nl + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			const char *ve = eol;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
				ve--;
			*vlen = (size_t)(ve - v);
			return v;
		}
		p = eol;
	}
	return NULL;
}

static bool header_u64(const char *head, size_t head_len, const char *name,
		       unsigned long long *out)
{
	size_t vlen = 0;
	const char *v = header(head, head_len, name, &vlen);
	char num[24], *e;
	if (!v || vlen == 0 || vlen >= sizeof(num))
		return false;
	memcpy(num, v, vlen);
	num[vlen] = '\0';
	*out = strtoull(num, &e, 10);
	return *e == '\0';
}

/* The key of subscription sub from RUN/push/SUB.secret (cached). */
static const struct rx_secret *secret_of(struct receiver *x, const char *sub)
{
	for (size_t i = 0; i < x->n_secrets; i++)
		if (strcmp(x->secrets[i].sub, sub) == 0)
			return &x->secrets[i];
	if (x->n_secrets == RX_SUBS)
		return NULL;
	struct rx_secret *s = &x->secrets[x->n_secrets];
	char path[TT_PATH + 96];
	memset(s, 0, sizeof(*s));
	if (!tt_fmt(path, sizeof(path), "%s/push/%s.secret", x->a->dir, sub))
		return NULL;
	char *text = tt_read_file(path, NULL);
	if (!text)
		return NULL; /* not written yet: not cached, asked again */
	snprintf(s->sub, sizeof(s->sub), "%s", sub);
	text[strcspn(text, "\r\n")] = '\0';
	const char *end = NULL;
	if (strncmp(text, "whsec_", 6) != 0 ||
	    sodium_base642bin(s->key, sizeof(s->key), text + 6,
			      strlen(text + 6), NULL, &s->keylen, &end,
			      sodium_base64_VARIANT_ORIGINAL) ||
	    (end && *end))
		s->keylen = 0;
	free(text);
	x->n_secrets++;
	return s;
}

/* Does one of the space-separated "v1,<base64>" signatures match? */
static bool signature_ok(const struct rx_secret *s, const char *wid,
			 size_t wid_len, const char *ts, size_t ts_len,
			 const char *sig, size_t sig_len, const char *body,
			 size_t body_len)
{
	crypto_auth_hmacsha256_state st;
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	char want[sodium_base64_ENCODED_LEN(crypto_auth_hmacsha256_BYTES,
					    sodium_base64_VARIANT_ORIGINAL)];
	if (!s || !s->keylen)
		return false;
	crypto_auth_hmacsha256_init(&st, s->key, s->keylen);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)wid, wid_len);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, ts_len);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)body,
				      body_len);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_bin2base64(want, sizeof(want), mac, sizeof(mac),
			  sodium_base64_VARIANT_ORIGINAL);
	size_t want_len = strlen(want);
	const char *p = sig, *end = sig + sig_len;
	while (p < end) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		const char *te = sp ? sp : end;
		if ((size_t)(te - p) == want_len + 3 &&
		    strncmp(p, "v1,", 3) == 0 &&
		    sodium_memcmp(p + 3, want, want_len) == 0)
			return true;
		p = sp ? sp + 1 : end;
	}
	return false;
}

static void queue(struct rx_conn *c, const char *text, size_t len)
{
	if (c->out_len + len > sizeof(c->out)) {
		c->close_after = true; /* cannot happen with one request */
		return;
	}
	memcpy(c->out + c->out_len, text, len);
	c->out_len += len;
}

/* One complete request (head_len bytes of head, then the body): check,
 * record, queue the answer. */
static void handle(struct receiver *x, struct rx_conn *c, const char *head,
		   size_t head_len, const char *body, size_t body_len)
{
	char sub[64] = "-", wid[128], key[128], skey[128];
	const char *verdict = "ok";
	unsigned long long id = 0, attempt = 0, ts = 0;
	size_t wl = 0, tl = 0, sl = 0, kl = 0;
	x->n_requests++;

	/* "POST /hook/SUB HTTP/1.1" */
	if (strncmp(head, "POST /hook/", 11) == 0) {
		const char *p = head + 11;
		size_t n = strcspn(p, " \r\n?");
		safe_copy(p, n, sub, sizeof(sub));
	}
	const char *w = header(head, head_len, "webhook-id", &wl);
	const char *t = header(head, head_len, "webhook-timestamp", &tl);
	const char *s = header(head, head_len, "webhook-signature", &sl);
	const char *k = header(head, head_len, "Handoff-Key", &kl);
	header_u64(head, head_len, "Handoff-Event-Id", &id);
	header_u64(head, head_len, "Handoff-Attempt", &attempt);
	header_u64(head, head_len, "webhook-timestamp", &ts);
	safe_copy(w ? w : "", w ? wl : 0, wid, sizeof(wid));
	safe_copy(k ? k : "", k ? kl : 0, skey, sizeof(skey));
	snprintf(key, sizeof(key), "%.*s", k ? (int)kl : 0, k ? k : "");

	long long now = (long long)time(NULL);
	if (!w || !t || !s ||
	    !signature_ok(secret_of(x, sub), w, wl, t, tl, s, sl, body,
			  body_len))
		verdict = "badsig";
	else if ((long long)ts < now - RX_TS_TOLERANCE ||
		 (long long)ts > now + RX_TS_TOLERANCE)
		verdict = "badts";
	else if (!k || !payload_verify(key, body, body_len))
		verdict = "bad";

	int status;
	unsigned r = (unsigned)tt_below(&x->rng, 1000);
	if (strcmp(verdict, "ok") != 0)
		status = 400;
	else if (x->clean)
		status = 200;
	else if (r < RX_FAIL_503)
		status = 503;
	else if (r < RX_FAIL_503 + RX_FAIL_500)
		status = 500;
	else if (r < RX_FAIL_503 + RX_FAIL_500 + RX_FAIL_NOREPLY)
		status = 0; /* no answer: the connection is closed */
	else
		status = r & 1 ? 200 : 204;

	/* FNV-1a of the body: which bytes came, for the record */
	uint64_t sum = 1469598103934665603ull;
	for (size_t i = 0; i < body_len; i++)
		sum = (sum ^ (unsigned char)body[i]) * 1099511628211ull;
	rec_add(&x->rec, "P %llu %s %llu %llu %s %s %016llx %s %d",
		(unsigned long long)tt_mono_ns(), sub, id, attempt, wid, skey,
		(unsigned long long)sum, verdict, status);
	if (strcmp(verdict, "ok") != 0) {
		x->n_bad++;
		fprintf(stderr,
			"receiver=%s event=bad_request verdict=%s sub=%s "
			"id=%llu attempt=%llu webhook_id=%s\n",
			x->a->name, verdict, sub, id, attempt, wid);
	}
	switch (status) {
	case 0:
		c->close_after = true;
		x->n_failed++;
		break;
	case 200:
		queue(c, reply_200, sizeof(reply_200) - 1);
		x->n_ok++;
		break;
	case 204:
		queue(c, reply_204, sizeof(reply_204) - 1);
		x->n_ok++;
		break;
	case 400:
		queue(c, reply_400, sizeof(reply_400) - 1);
		break;
	case 500:
		queue(c, reply_500, sizeof(reply_500) - 1);
		x->n_failed++;
		break;
	default:
		queue(c, reply_503, sizeof(reply_503) - 1);
		x->n_failed++;
		break;
	}
}

/* Handle every complete request in c's buffer; false: close it. */
static bool serve(struct receiver *x, struct rx_conn *c)
{
	while (!c->close_after) {
		char *hend = memmem(c->in, c->have, "\r\n\r\n", 4);
		if (!hend)
			return c->have < RX_BUF;
		size_t head_len = (size_t)(hend - c->in) + 4, vlen = 0;
		unsigned long long body_len = 0;
		if (!header_u64(c->in, head_len, "Content-Length", &body_len) ||
		    body_len > RX_BUF - head_len)
			return false;
		if (c->have < head_len + body_len) {
			const char *ex =
				header(c->in, head_len, "Expect", &vlen);
			if (ex && vlen == 12 &&
			    strncasecmp(ex, "100-continue", 12) == 0 &&
			    c->have == head_len)
				queue(c, reply_100, sizeof(reply_100) - 1);
			return true;
		}
		handle(x, c, c->in, head_len, c->in + head_len,
		       (size_t)body_len);
		size_t used = head_len + (size_t)body_len;
		memmove(c->in, c->in + used, c->have - used);
		c->have -= used;
	}
	return true;
}

static void conn_close(struct receiver *x, struct rx_conn *c)
{
	epoll_ctl(x->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->have = c->out_len = 0;
	c->close_after = false;
}

/* Loopback writes of a few hundred bytes do not block in practice; a
 * short write drops the connection (the broker retries). */
static void flush(struct receiver *x, struct rx_conn *c)
{
	size_t off = 0;
	while (off < c->out_len) {
		ssize_t k = send(c->fd, c->out + off, c->out_len - off,
				 MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			c->close_after = true;
			break;
		}
		off += (size_t)k;
	}
	c->out_len = 0;
	if (c->close_after)
		conn_close(x, c);
}

static void accept_all(struct receiver *x)
{
	for (;;) {
		int fd = accept4(x->listen_fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct rx_conn *c = NULL;
		for (size_t i = 0; i < RX_CONNS && !c; i++)
			if (x->conns[i].fd < 0)
				c = &x->conns[i];
		if (!c || (!c->in && !(c->in = malloc(RX_BUF)))) {
			close(fd);
			continue;
		}
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		c->fd = fd;
		c->have = c->out_len = 0;
		c->close_after = c->touched = false;
		if (epoll_ctl(x->ep, EPOLL_CTL_ADD, fd, &ev)) {
			close(fd);
			c->fd = -1;
		}
	}
}

static int write_port(struct receiver *x, unsigned port)
{
	char dir[TT_PATH + 8], tmp[TT_PATH + 32], path[TT_PATH + 32], txt[16];
	snprintf(dir, sizeof(dir), "%s/push", x->a->dir);
	snprintf(tmp, sizeof(tmp), "%s/port.tmp", dir);
	snprintf(path, sizeof(path), "%s/port", dir);
	snprintf(txt, sizeof(txt), "%u\n", port);
	int rc = tt_mkdirs(dir);
	if (!rc)
		rc = tt_write_file(tmp, txt);
	if (!rc && rename(tmp, path))
		rc = errno;
	return rc;
}

static int listen_loopback(struct receiver *x)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	x->listen_fd =
		socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (x->listen_fd < 0 ||
	    bind(x->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(x->listen_fd, 256) ||
	    getsockname(x->listen_fd, (struct sockaddr *)&sa, &sl))
		return errno;
	x->ep = epoll_create1(EPOLL_CLOEXEC);
	if (x->ep < 0 || epoll_ctl(x->ep, EPOLL_CTL_ADD, x->listen_fd, &ev))
		return errno;
	return write_port(x, ntohs(sa.sin_port));
}

/* SIGUSR1 (blocked, like SIGTERM) switches to the drain's answers. */
static void poll_clean(struct receiver *x)
{
	sigset_t usr1;
	struct timespec zero = { 0, 0 };
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	if (!x->clean && sigtimedwait(&usr1, NULL, &zero) == SIGUSR1) {
		x->clean = true;
		fprintf(stderr, "receiver=%s event=clean\n", x->a->name);
	}
}

static void turn(struct receiver *x)
{
	struct epoll_event evs[64];
	int n = epoll_wait(x->ep, evs, 64, RX_WAIT_MS);
	x->n_touched = 0;
	for (int i = 0; i < n; i++) {
		struct rx_conn *c = evs[i].data.ptr;
		if (!c) {
			accept_all(x);
			continue;
		}
		ssize_t k = recv(c->fd, c->in + c->have, RX_BUF - c->have, 0);
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (k <= 0) {
			conn_close(x, c);
			continue;
		}
		c->have += (size_t)k;
		if (!serve(x, c))
			c->close_after = true;
		if (!c->touched) {
			c->touched = true;
			x->touched[x->n_touched++] = c;
		}
	}
	if (!x->n_touched)
		return;
	/* The records first: no answer goes out that they do not hold. */
	if (rec_sync(&x->rec)) {
		fprintf(stderr, "receiver=%s event=record_failed error=%s\n",
			x->a->name, strerror(x->rec.err));
		exit(1);
	}
	for (size_t i = 0; i < x->n_touched; i++) {
		struct rx_conn *c = x->touched[i];
		c->touched = false;
		flush(x, c);
	}
}

int receiver_main(const struct role_args *a)
{
	struct receiver *x = calloc(1, sizeof(*x));
	char path[TT_PATH];
	int status = 1, rc;
	sigset_t usr1;
	if (!x)
		return 1;
	x->a = a;
	x->rec.fd = -1;
	x->listen_fd = x->ep = -1;
	for (size_t i = 0; i < RX_CONNS; i++)
		x->conns[i].fd = -1;
	tt_rng_seed(&x->rng, a->seed ^ tt_hash(a->name));
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	role_setup_signals();
	if (sodium_init() < 0) {
		fprintf(stderr, "receiver=%s event=sodium_init_failed\n",
			a->name);
		goto out;
	}
	role_rec_path(a, path, sizeof(path));
	if ((rc = rec_open(&x->rec, path))) {
		fprintf(stderr,
			"receiver=%s event=record_open_failed path=%s "
			"error=%s\n",
			a->name, path, strerror(rc));
		x->rec.fd = -1;
		goto out;
	}
	if ((rc = listen_loopback(x))) {
		fprintf(stderr, "receiver=%s event=listen_failed error=%s\n",
			a->name, strerror(rc));
		goto out;
	}
	while (!role_should_stop()) {
		poll_clean(x);
		turn(x);
	}
	status = 0;
	fprintf(stderr,
		"receiver=%s event=stopped requests=%llu ok=%llu failed=%llu "
		"bad=%llu\n",
		a->name, (unsigned long long)x->n_requests,
		(unsigned long long)x->n_ok, (unsigned long long)x->n_failed,
		(unsigned long long)x->n_bad);
out:
	for (size_t i = 0; i < RX_CONNS; i++) {
		if (x->conns[i].fd >= 0)
			close(x->conns[i].fd);
		free(x->conns[i].in);
	}
	if (x->ep >= 0)
		close(x->ep);
	if (x->listen_fd >= 0)
		close(x->listen_fd);
	rec_close(&x->rec);
	free(x);
	return status;
}
