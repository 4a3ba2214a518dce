/*
 * push_receiver.c — the push scenarios' receiver: a minimal HTTP/1.1
 * server on 127.0.0.1 (a free port) that answers every request (204 at
 * once by default; another status, or after a delay, for the neighbour
 * benchmark's bad endpoints), on keep-alive connections, from one or more
 * epoll threads. Each thread has its own epoll set and connections: the
 * listening socket is in every set (EPOLLEXCLUSIVE) and whoever accepts a
 * connection serves it, so one busy thread does not hold up the others'
 * replies.
 *
 * Per request it counts one event, and when the body (the payload, byte
 * for byte) carries the publish stamp in its first 8 bytes and the
 * Handoff-Attempt header says 1, it records publish -> receive in its
 * histogram. An `Expect: 100-continue` is answered with 100 first.
 * Requests are read with Content-Length only (the push thread sends it);
 * a connection that sends anything else is closed.
 */
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench.h"

#define RX_MAX_CONNS 256	/* per thread */
#define RX_BUF_CAP   (1u << 20) /* largest request accepted */
#define RX_WAIT_MS   50

struct rx_conn {
	int fd; /* -1: free slot */
	char *buf;
	size_t have;
	uint64_t due_ns; /* a delayed reply is owed at this time; 0: none */
	size_t owed;	 /* bytes of the request it answers */
};

static const char reply_204[] = "HTTP/1.1 204 No Content\r\n\r\n";
static const char reply_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void conn_close(int ep, struct rx_conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->have = 0;
	c->due_ns = 0;
}

/* Loopback writes of a few bytes do not block in practice; a short
 * write drops the connection (the broker retries). */
static int send_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* The value of header name in head (which ends in "\r\n\r\n"), or NULL. */
static const char *header_value(const char *head, size_t head_len,
				const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	const char *p =
		memchr(head, '\n', head_len); /* skip the request line */
	const char *end = head + head_len;

	while (p != NULL && p + 1 < end) {
		const char *line = p + 1;
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (eol == NULL)
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

static int send_reply(const struct push_receiver *rx, int fd)
{
	char line[64];
	unsigned st = rx->o.status ? rx->o.status : 204;
	if (st == 204)
		return send_all(fd, reply_204, sizeof reply_204 - 1);
	int n = snprintf(line, sizeof line,
			 "HTTP/1.1 %u Status\r\nContent-Length: 0\r\n\r\n", st);
	return send_all(fd, line, (size_t)n);
}

/* Count a request answered. */
static void answered(struct push_receiver *rx, struct rx_conn *c, size_t used)
{
	atomic_store(&rx->last_ns, bench_now_ns());
	atomic_fetch_add(&rx->received, 1);
	memmove(c->buf, c->buf + used, c->have - used);
	c->have -= used;
}

/* Answer every complete request in c's buffer (with a delay: note the
 * first as owed and stop): 0, or -1 to close. */
static int serve(struct rx_thread *t, struct rx_conn *c)
{
	struct push_receiver *rx = t->rx;
	while (c->due_ns == 0) {
		char *hend = memmem(c->buf, c->have, "\r\n\r\n", 4);
		if (hend == NULL)
			return c->have >= RX_BUF_CAP ? -1 : 0;
		size_t head_len = (size_t)(hend - c->buf) + 4;
		size_t vlen = 0, body_len = 0;
		const char *v =
			header_value(c->buf, head_len, "Content-Length", &vlen);
		if (v != NULL) {
			char num[24];
			if (vlen == 0 || vlen >= sizeof num)
				return -1;
			memcpy(num, v, vlen);
			num[vlen] = '\0';
			char *e;
			unsigned long long n = strtoull(num, &e, 10);
			if (*e != '\0' || n > RX_BUF_CAP - head_len)
				return -1;
			body_len = (size_t)n;
		} else if (header_value(c->buf, head_len, "Transfer-Encoding",
					&vlen) != NULL) {
			return -1;
		}
		if (c->have < head_len + body_len) {
			const char *ex =
				header_value(c->buf, head_len, "Expect", &vlen);
			if (ex != NULL && vlen == 12 &&
			    strncasecmp(ex, "100-continue", 12) == 0 &&
			    c->have == head_len &&
			    send_all(c->fd, reply_100, sizeof reply_100 - 1))
				return -1;
			return 0;
		}
		uint64_t rt = bench_realtime_ns();
		const char *body = c->buf + head_len;
		const char *att = header_value(c->buf, head_len,
					       "Handoff-Attempt", &vlen);
		bool first = att != NULL && vlen == 1 && att[0] == '1';
		if (first && body_len >= 8) {
			uint64_t st;
			memcpy(&st, body, sizeof st);
			hist_add(&t->deliver, rt > st ? rt - st : 0);
		}
		if (rx->o.delay_ms) {
			c->due_ns = bench_now_ns() +
				    (uint64_t)rx->o.delay_ms * 1000000ULL;
			c->owed = head_len + body_len;
			return 0;
		}
		if (send_reply(rx, c->fd))
			return -1;
		answered(rx, c, head_len + body_len);
	}
	return 0;
}

static void accept_all(struct rx_thread *t, struct rx_conn *conns)
{
	struct push_receiver *rx = t->rx;
	for (;;) {
		int fd = accept4(rx->listen_fd, NULL, NULL, SOCK_NONBLOCK);
		if (fd < 0)
			return;
		struct rx_conn *c = NULL;
		for (int i = 0; i < RX_MAX_CONNS && c == NULL; i++)
			if (conns[i].fd < 0)
				c = &conns[i];
		struct epoll_event ev = { .events = EPOLLIN };
		if (c == NULL) {
			close(fd);
			continue;
		}
		int one = 1; /* a reply is one send: never hold it back */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c->fd = fd;
		c->have = 0;
		c->due_ns = 0;
		ev.data.ptr = c;
		if (epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			close(fd);
			c->fd = -1;
		} else {
			atomic_fetch_add(&rx->connections, 1);
		}
		if (rx->n_threads > 1)
			return; /* one at a time: the others take theirs */
	}
}

/* Send the delayed replies that are due; the ms until the next one. */
static int send_due(struct rx_thread *t, struct rx_conn *conns)
{
	uint64_t now = bench_now_ns(), next = 0;
	for (int i = 0; i < RX_MAX_CONNS; i++) {
		struct rx_conn *c = &conns[i];
		if (c->fd < 0 || c->due_ns == 0)
			continue;
		if (c->due_ns > now) {
			if (next == 0 || c->due_ns < next)
				next = c->due_ns;
			continue;
		}
		c->due_ns = 0;
		if (send_reply(t->rx, c->fd)) {
			conn_close(t->epoll_fd, c);
			continue;
		}
		answered(t->rx, c, c->owed);
		if (serve(t, c))
			conn_close(t->epoll_fd, c);
		else if (c->due_ns && (next == 0 || c->due_ns < next))
			next = c->due_ns;
	}
	if (next == 0)
		return RX_WAIT_MS;
	uint64_t ms = (next - now + 999999) / 1000000;
	return ms < RX_WAIT_MS ? (int)ms : RX_WAIT_MS;
}

static void *receiver_main(void *arg)
{
	struct rx_thread *t = arg;
	struct push_receiver *rx = t->rx;
	struct rx_conn *conns = calloc(RX_MAX_CONNS, sizeof *conns);
	struct epoll_event evs[64];
	int wait_ms = RX_WAIT_MS;

	if (conns == NULL)
		return NULL;
	for (int i = 0; i < RX_MAX_CONNS; i++)
		conns[i].fd = -1;
	while (!atomic_load(&rx->stop)) {
		int n = epoll_wait(t->epoll_fd, evs, 64, wait_ms);
		for (int i = 0; i < n; i++) {
			struct rx_conn *c = evs[i].data.ptr;
			if (c == NULL) {
				accept_all(t, conns);
				continue;
			}
			if (c->buf == NULL &&
			    (c->buf = malloc(RX_BUF_CAP)) == NULL) {
				conn_close(t->epoll_fd, c);
				continue;
			}
			ssize_t r = recv(c->fd, c->buf + c->have,
					 RX_BUF_CAP - c->have, 0);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0) {
				conn_close(t->epoll_fd, c);
				continue;
			}
			c->have += (size_t)r;
			if (serve(t, c))
				conn_close(t->epoll_fd, c);
		}
		if (rx->o.delay_ms)
			wait_ms = send_due(t, conns);
	}
	for (int i = 0; i < RX_MAX_CONNS; i++) {
		if (conns[i].fd >= 0)
			conn_close(t->epoll_fd, &conns[i]);
		free(conns[i].buf);
	}
	free(conns);
	return NULL;
}

static void stop_threads(struct push_receiver *rx)
{
	atomic_store(&rx->stop, true);
	for (unsigned i = 0; i < rx->n_threads; i++) {
		struct rx_thread *t = &rx->t[i];
		if (t->started)
			pthread_join(t->th, NULL);
		t->started = false;
		if (t->epoll_fd >= 0)
			close(t->epoll_fd);
		t->epoll_fd = -1;
		hist_merge(&rx->deliver, &t->deliver);
	}
}

int push_receiver_start(struct push_receiver *rx,
			const struct push_receiver_opts *o, char *err,
			size_t errlen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof sa;

	memset(rx, 0, sizeof *rx);
	if (o != NULL)
		rx->o = *o;
	rx->n_threads = rx->o.threads ? rx->o.threads : 1;
	if (rx->n_threads > RX_MAX_THREADS)
		rx->n_threads = RX_MAX_THREADS;
	for (unsigned i = 0; i < RX_MAX_THREADS; i++)
		rx->t[i].epoll_fd = -1;
	hist_init(&rx->deliver);
	rx->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (rx->listen_fd < 0 ||
	    bind(rx->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
	    listen(rx->listen_fd, 256) != 0 ||
	    getsockname(rx->listen_fd, (struct sockaddr *)&sa, &sl) != 0) {
		bench_errf(err, errlen, "push receiver: listen: %s",
			   strerror(errno));
		goto fail;
	}
	rx->port = ntohs(sa.sin_port);
	for (unsigned i = 0; i < rx->n_threads; i++) {
		struct rx_thread *t = &rx->t[i];
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
		if (rx->n_threads > 1)
			ev.events |= EPOLLEXCLUSIVE;
		t->rx = rx;
		hist_init(&t->deliver);
		t->epoll_fd = epoll_create1(0);
		if (t->epoll_fd < 0 || epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD,
						 rx->listen_fd, &ev) != 0) {
			bench_errf(err, errlen, "push receiver: epoll: %s",
				   strerror(errno));
			goto fail;
		}
		if (pthread_create(&t->th, NULL, receiver_main, t) != 0) {
			bench_errf(err, errlen,
				   "push receiver: cannot start thread");
			goto fail;
		}
		t->started = true;
	}
	rx->running = true;
	return 0;
fail:
	stop_threads(rx);
	if (rx->listen_fd >= 0)
		close(rx->listen_fd);
	rx->listen_fd = -1;
	return -1;
}

void push_receiver_stop(struct push_receiver *rx)
{
	if (!rx->running)
		return;
	stop_threads(rx);
	close(rx->listen_fd);
	rx->listen_fd = -1;
	rx->running = false;
}

int dead_port_open(int *fd, unsigned *port, char *err, size_t errlen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof sa;
	*fd = socket(AF_INET, SOCK_STREAM, 0);
	if (*fd < 0 || bind(*fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
	    getsockname(*fd, (struct sockaddr *)&sa, &sl) != 0) {
		bench_errf(err, errlen, "dead port: %s", strerror(errno));
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return 0;
}
