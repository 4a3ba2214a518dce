/*
 * push_receiver.c — the push scenario's receiver: a minimal HTTP/1.1
 * server on 127.0.0.1 (a free port) that answers 204 at once to every
 * request, on keep-alive connections, from one epoll thread.
 *
 * Per request it counts one event, and when the body (the payload, byte
 * for byte) carries the publish stamp in its first 8 bytes and the
 * Handoff-Attempt header says 1, it records publish -> receive in its
 * histogram. An `Expect: 100-continue` is answered with 100 first.
 * Requests are read with Content-Length only (the push thread sends it);
 * a connection that sends anything else is closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench.h"

#define RX_MAX_CONNS 64
#define RX_BUF_CAP   (1u << 20) /* largest request accepted */
#define RX_WAIT_MS   50

struct rx_conn {
	int fd; /* -1: free slot */
	char *buf;
	size_t have;
};

static const char reply_204[] = "HTTP/1.1 204 No Content\r\n\r\n";
static const char reply_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void conn_close(int ep, struct rx_conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->have = 0;
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

/* Answer every complete request in c's buffer: 0, or -1 to close. */
static int serve(struct push_receiver *rx, struct rx_conn *c)
{
	for (;;) {
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
			hist_add(&rx->deliver, rt > st ? rt - st : 0);
		}
		if (send_all(c->fd, reply_204, sizeof reply_204 - 1))
			return -1;
		atomic_store(&rx->last_ns, bench_now_ns());
		atomic_fetch_add(&rx->received, 1);
		size_t used = head_len + body_len;
		memmove(c->buf, c->buf + used, c->have - used);
		c->have -= used;
	}
}

static void accept_all(struct push_receiver *rx, struct rx_conn *conns)
{
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
		c->fd = fd;
		c->have = 0;
		ev.data.ptr = c;
		if (epoll_ctl(rx->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			close(fd);
			c->fd = -1;
		} else {
			atomic_fetch_add(&rx->connections, 1);
		}
	}
}

static void *receiver_main(void *arg)
{
	struct push_receiver *rx = arg;
	struct rx_conn *conns = calloc(RX_MAX_CONNS, sizeof *conns);
	struct epoll_event evs[16];

	if (conns == NULL)
		return NULL;
	for (int i = 0; i < RX_MAX_CONNS; i++)
		conns[i].fd = -1;
	while (!atomic_load(&rx->stop)) {
		int n = epoll_wait(rx->epoll_fd, evs, 16, RX_WAIT_MS);
		for (int i = 0; i < n; i++) {
			struct rx_conn *c = evs[i].data.ptr;
			if (c == NULL) {
				accept_all(rx, conns);
				continue;
			}
			if (c->buf == NULL &&
			    (c->buf = malloc(RX_BUF_CAP)) == NULL) {
				conn_close(rx->epoll_fd, c);
				continue;
			}
			ssize_t r = recv(c->fd, c->buf + c->have,
					 RX_BUF_CAP - c->have, 0);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0) {
				conn_close(rx->epoll_fd, c);
				continue;
			}
			c->have += (size_t)r;
			if (serve(rx, c))
				conn_close(rx->epoll_fd, c);
		}
	}
	for (int i = 0; i < RX_MAX_CONNS; i++) {
		if (conns[i].fd >= 0)
			conn_close(rx->epoll_fd, &conns[i]);
		free(conns[i].buf);
	}
	free(conns);
	return NULL;
}

int push_receiver_start(struct push_receiver *rx, char *err, size_t errlen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof sa;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	memset(rx, 0, sizeof *rx);
	rx->epoll_fd = -1;
	hist_init(&rx->deliver);
	rx->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (rx->listen_fd < 0 ||
	    bind(rx->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
	    listen(rx->listen_fd, 64) != 0 ||
	    getsockname(rx->listen_fd, (struct sockaddr *)&sa, &sl) != 0) {
		bench_errf(err, errlen, "push receiver: listen: %s",
			   strerror(errno));
		goto fail;
	}
	rx->port = ntohs(sa.sin_port);
	rx->epoll_fd = epoll_create1(0);
	if (rx->epoll_fd < 0 ||
	    epoll_ctl(rx->epoll_fd, EPOLL_CTL_ADD, rx->listen_fd, &ev) != 0) {
		bench_errf(err, errlen, "push receiver: epoll: %s",
			   strerror(errno));
		goto fail;
	}
	if (pthread_create(&rx->th, NULL, receiver_main, rx) != 0) {
		bench_errf(err, errlen, "push receiver: cannot start thread");
		goto fail;
	}
	rx->running = true;
	return 0;
fail:
	if (rx->epoll_fd >= 0)
		close(rx->epoll_fd);
	if (rx->listen_fd >= 0)
		close(rx->listen_fd);
	rx->epoll_fd = rx->listen_fd = -1;
	return -1;
}

void push_receiver_stop(struct push_receiver *rx)
{
	if (!rx->running)
		return;
	atomic_store(&rx->stop, true);
	pthread_join(rx->th, NULL);
	close(rx->epoll_fd);
	close(rx->listen_fd);
	rx->epoll_fd = rx->listen_fd = -1;
	rx->running = false;
}
