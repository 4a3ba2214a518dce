/*
 * peer_beanstalkd.c — beanstalkd peer for peers.sh, speaking the
 * text protocol over TCP by hand.
 *
 * Publish = `put <pri> <delay> <ttr> <bytes>\r\n<data>\r\n`, confirmed by
 * `INSERTED <id>` (with `-b DIR -f 0` beanstalkd fsyncs the binlog before
 * replying). Consume = `reserve-with-timeout 1` → `RESERVED <id> <bytes>`,
 * then `delete <id>` and wait for `DELETED`. One tube per run
 * (hbench-PID-WORKLOAD: `use` on the producer, `watch` + `ignore default`
 * on the consumer, which has its own thread and connection).
 *
 *   w256   puts pipelined on one connection, at most 256 without a reply
 *   w1     one put at a time
 *   e2e    w256 producer + consumer; rate = deleted jobs per second
 *   lat1k  puts at 1,000/s open loop (replies read as they come);
 *          confirm latency from the scheduled send time, delivery latency
 *          from the payload stamp
 */
#include "peer_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WINDOW 256
#define RBUF   65536

struct conn {
	int fd;
	char rbuf[RBUF];
	size_t rlen, rpos;
	char *wbuf;
	size_t wlen, wcap;
};

static int conn_open(struct conn *c, const struct peer_args *a, char *err,
		     size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai = NULL, *p;
	char port[16];
	int one = 1, rc;

	memset(c, 0, sizeof *c);
	c->fd = -1;
	snprintf(port, sizeof port, "%d", a->port);
	rc = getaddrinfo(a->host, port, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "resolve %s: %s", a->host,
			 gai_strerror(rc));
		return -1;
	}
	for (p = ai; p; p = p->ai_next) {
		c->fd = socket(p->ai_family, p->ai_socktype, p->ai_protocol);
		if (c->fd < 0)
			continue;
		if (connect(c->fd, p->ai_addr, p->ai_addrlen) == 0)
			break;
		close(c->fd);
		c->fd = -1;
	}
	freeaddrinfo(ai);
	if (c->fd < 0) {
		snprintf(err, errlen, "connect %s:%d: %s", a->host, a->port,
			 strerror(errno));
		return -1;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return 0;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->wbuf);
	c->wbuf = NULL;
}

static int wappend(struct conn *c, const void *data, size_t len)
{
	if (c->wlen + len > c->wcap) {
		size_t cap = c->wcap ? c->wcap : 4096;
		char *nb;
		while (cap < c->wlen + len)
			cap *= 2;
		nb = realloc(c->wbuf, cap);
		if (!nb)
			return -1;
		c->wbuf = nb;
		c->wcap = cap;
	}
	memcpy(c->wbuf + c->wlen, data, len);
	c->wlen += len;
	return 0;
}

static int wflush(struct conn *c)
{
	size_t off = 0;
	while (off < c->wlen) {
		ssize_t n = write(c->fd, c->wbuf + off, c->wlen - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		off += (size_t)n;
	}
	c->wlen = 0;
	return 0;
}

static int send_str(struct conn *c, const char *s)
{
	return wappend(c, s, strlen(s)) || wflush(c) ? -1 : 0;
}

static int append_put(struct conn *c, const void *data, size_t len)
{
	char head[64];
	int n = snprintf(head, sizeof head, "put 1024 0 60 %zu\r\n", len);
	return wappend(c, head, (size_t)n) || wappend(c, data, len) ||
			       wappend(c, "\r\n", 2) ?
		       -1 :
		       0;
}

/* Read more bytes into rbuf (blocking). 0, or -1 on error/EOF. */
static int fill(struct conn *c)
{
	ssize_t n;
	if (c->rpos > 0) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	if (c->rlen == RBUF)
		return -1;
	do
		n = read(c->fd, c->rbuf + c->rlen, RBUF - c->rlen);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return -1;
	c->rlen += (size_t)n;
	return 0;
}

/* A complete line already buffered: copied (without CRLF) to out. 1 when
 * there is one, 0 when not yet. */
static int take_line(struct conn *c, char *out, size_t outlen)
{
	char *start = c->rbuf + c->rpos;
	char *nl = memchr(start, '\n', c->rlen - c->rpos);
	size_t len;

	if (!nl)
		return 0;
	len = (size_t)(nl - start);
	if (len > 0 && start[len - 1] == '\r')
		len--;
	if (len >= outlen)
		len = outlen - 1;
	memcpy(out, start, len);
	out[len] = '\0';
	c->rpos += (size_t)(nl - start) + 1;
	return 1;
}

static int read_line(struct conn *c, char *out, size_t outlen)
{
	while (!take_line(c, out, outlen))
		if (fill(c) != 0)
			return -1;
	return 0;
}

/* Read exactly len bytes + CRLF of a job body; body points into rbuf and
 * stays valid until the next read. */
static int read_body(struct conn *c, size_t len, const char **body)
{
	while (c->rlen - c->rpos < len + 2)
		if (fill(c) != 0)
			return -1;
	*body = c->rbuf + c->rpos;
	c->rpos += len + 2;
	return 0;
}

/* Send a command and expect a reply starting with want. */
static int command(struct conn *c, const char *cmd, const char *want, char *err,
		   size_t errlen)
{
	char line[256];
	if (send_str(c, cmd) != 0 || read_line(c, line, sizeof line) != 0) {
		snprintf(err, errlen, "%.*s: connection lost",
			 (int)strcspn(cmd, "\r"), cmd);
		return -1;
	}
	if (strncmp(line, want, strlen(want)) != 0) {
		snprintf(err, errlen, "%.*s: %.120s",
			 (int)strcspn(cmd, "\r") & 0x7f, cmd, line);
		return -1;
	}
	return 0;
}

/* ---- the run ---------------------------------------------------------- */

struct run {
	struct peer_args *a;
	char tube[128];
	uint64_t start, deadline;
	struct peer_consumer cons;
};

static void *consumer_main(void *arg)
{
	struct run *run = arg;
	struct conn *c = calloc(1, sizeof *c);
	int lat = run->a->workload == PEER_LAT1K;
	uint64_t linger = 0;
	char cmd[192], line[256];

	if (!c) {
		snprintf(run->cons.err, sizeof run->cons.err, "out of memory");
		return NULL;
	}
	if (conn_open(c, run->a, run->cons.err, sizeof run->cons.err) != 0)
		goto out;
	snprintf(cmd, sizeof cmd, "watch %s\r\n", run->tube);
	if (command(c, cmd, "WATCHING", run->cons.err, sizeof run->cons.err) !=
		    0 ||
	    command(c, "ignore default\r\n", "WATCHING", run->cons.err,
		    sizeof run->cons.err) != 0)
		goto out;
	for (;;) {
		unsigned long long id;
		size_t len;
		const char *body;
		uint64_t now = peer_mono_ns();

		if (!lat && now >= run->deadline)
			break;
		if (lat && atomic_load(&run->cons.stop)) {
			if (!linger)
				linger = now + 2000000000ull;
			if (run->cons.acked_total >= run->cons.expect ||
			    now >= linger)
				break;
		}
		if (send_str(c, "reserve-with-timeout 1\r\n") != 0 ||
		    read_line(c, line, sizeof line) != 0) {
			snprintf(run->cons.err, sizeof run->cons.err,
				 "reserve: connection lost");
			break;
		}
		if (strcmp(line, "TIMED_OUT") == 0 ||
		    strcmp(line, "DEADLINE_SOON") == 0)
			continue;
		if (sscanf(line, "RESERVED %llu %zu", &id, &len) != 2) {
			snprintf(run->cons.err, sizeof run->cons.err,
				 "reserve: %.120s", line);
			break;
		}
		if (read_body(c, len, &body) != 0) {
			snprintf(run->cons.err, sizeof run->cons.err,
				 "reserve: connection lost in job body");
			break;
		}
		if (lat)
			peer_hist_add(&run->cons.deliver,
				      peer_stamp_age_ns(body, len));
		snprintf(cmd, sizeof cmd, "delete %llu\r\n", id);
		if (command(c, cmd, "DELETED", run->cons.err,
			    sizeof run->cons.err) != 0)
			break;
		run->cons.acked_total++;
		if (lat || peer_mono_ns() <= run->deadline)
			atomic_fetch_add(&run->cons.acked, 1);
	}
out:
	conn_close(c);
	free(c);
	return NULL;
}

/* A put reply: INSERTED is the confirm; anything else is an error. */
static int check_put(const char *line, char *err, size_t errlen)
{
	if (strncmp(line, "INSERTED ", 9) == 0)
		return 0;
	snprintf(err, errlen, "put: %.120s", line);
	return -1;
}

static int produce_window(struct conn *c, struct run *run,
			  struct peer_result *res, int measure)
{
	size_t plen = run->a->payload;
	char *buf = malloc(plen);
	uint64_t sent_at[WINDOW];
	uint64_t head = 0, tail = 0;
	char line[256];

	if (!buf) {
		snprintf(res->error, sizeof res->error, "out of memory");
		return -1;
	}
	for (;;) {
		uint64_t now = peer_mono_ns();
		int more = now < run->deadline;

		while (more && head - tail < WINDOW) {
			peer_stamp(buf, plen);
			if (append_put(c, buf, plen) != 0)
				goto lost;
			sent_at[head % WINDOW] = now;
			head++;
		}
		if (head == tail)
			break;
		if (wflush(c) != 0 || read_line(c, line, sizeof line) != 0)
			goto lost;
		do {
			if (check_put(line, res->error, sizeof res->error)) {
				free(buf);
				return -1;
			}
			if (measure)
				peer_hist_add(&res->confirm,
					      peer_mono_ns() -
						      sent_at[tail % WINDOW]);
			tail++;
		} while (take_line(c, line, sizeof line));
	}
	res->count = tail;
	res->rate =
		(double)tail / ((double)(peer_mono_ns() - run->start) / 1e9);
	free(buf);
	return 0;
lost:
	snprintf(res->error, sizeof res->error, "put: connection lost");
	free(buf);
	return -1;
}

static int produce_one(struct conn *c, struct run *run, struct peer_result *res)
{
	size_t plen = run->a->payload;
	char *buf = malloc(plen);
	uint64_t n = 0, now;
	char line[256];

	if (!buf) {
		snprintf(res->error, sizeof res->error, "out of memory");
		return -1;
	}
	while ((now = peer_mono_ns()) < run->deadline) {
		peer_stamp(buf, plen);
		if (append_put(c, buf, plen) != 0 || wflush(c) != 0 ||
		    read_line(c, line, sizeof line) != 0) {
			snprintf(res->error, sizeof res->error,
				 "put: connection lost");
			free(buf);
			return -1;
		}
		if (check_put(line, res->error, sizeof res->error)) {
			free(buf);
			return -1;
		}
		peer_hist_add(&res->confirm, peer_mono_ns() - now);
		n++;
	}
	res->count = n;
	res->rate = (double)n / ((double)(peer_mono_ns() - run->start) / 1e9);
	free(buf);
	return 0;
}

static int produce_open_loop(struct conn *c, struct run *run,
			     struct peer_result *res)
{
	size_t plen = run->a->payload;
	char *buf = malloc(plen);
	uint64_t *due_q = calloc(65536, sizeof *due_q);
	uint64_t head = 0, tail = 0;
	char line[256];
	int rc = -1;

	if (!buf || !due_q) {
		snprintf(res->error, sizeof res->error, "out of memory");
		goto out;
	}
	for (;;) {
		uint64_t due = peer_due_ns(run->start, head, 1000.0);
		uint64_t now;
		int sending = due < run->deadline;
		uint64_t until = sending ? due : peer_mono_ns() + 2000000000ull;

		if (!sending && tail == head)
			break;
		while ((now = peer_mono_ns()) < until && tail < head) {
			struct pollfd p = { .fd = c->fd, .events = POLLIN };
			int ms = (int)((until - now + 999999) / 1000000);
			int pr = poll(&p, 1, ms);
			if (pr < 0)
				continue;
			if (pr == 0)
				break;
			if (fill(c) != 0)
				goto lost;
			while (tail < head && take_line(c, line, sizeof line)) {
				if (check_put(line, res->error,
					      sizeof res->error))
					goto out;
				peer_hist_add(&res->confirm,
					      peer_mono_ns() -
						      due_q[tail % 65536]);
				tail++;
			}
		}
		if (!sending) {
			if (tail < head) {
				snprintf(res->error, sizeof res->error,
					 "%llu put replies missing",
					 (unsigned long long)(head - tail));
				goto out;
			}
			break;
		}
		peer_sleep_until_ns(due);
		if (head - tail >= 65536) {
			snprintf(res->error, sizeof res->error,
				 "65536 puts without reply");
			goto out;
		}
		peer_stamp(buf, plen);
		if (append_put(c, buf, plen) != 0 || wflush(c) != 0)
			goto lost;
		due_q[head % 65536] = due;
		head++;
	}
	res->count = head;
	res->rate = (double)head / run->a->duration_s;
	run->cons.expect = head;
	rc = 0;
	goto out;
lost:
	snprintf(res->error, sizeof res->error, "put: connection lost");
out:
	free(buf);
	free(due_q);
	return rc;
}

int main(int argc, char **argv)
{
	struct peer_args a = { .name = "beanstalkd" };
	static struct peer_result res;
	static struct run run;
	static struct conn c;
	pthread_t consumer;
	char cmd[192];
	int consuming, rc;

	if (peer_parse_args(&a, argc, argv) != 0)
		return 2;
	if (a.port == 0)
		a.port = 11300;
	run.a = &a;
	snprintf(run.tube, sizeof run.tube, "hbench-%ld-%s", (long)getpid(),
		 peer_workload_name(a.workload));
	consuming = a.workload == PEER_E2E || a.workload == PEER_LAT1K;

	if (conn_open(&c, &a, res.error, sizeof res.error) != 0)
		return peer_report(&a, &res);
	snprintf(cmd, sizeof cmd, "use %s\r\n", run.tube);
	if (command(&c, cmd, "USING", res.error, sizeof res.error) != 0) {
		conn_close(&c);
		return peer_report(&a, &res);
	}

	run.start = peer_mono_ns();
	run.deadline = run.start + (uint64_t)(a.duration_s * 1e9);
	if (consuming &&
	    pthread_create(&consumer, NULL, consumer_main, &run) != 0) {
		snprintf(res.error, sizeof res.error, "pthread_create failed");
		conn_close(&c);
		return peer_report(&a, &res);
	}
	switch (a.workload) {
	case PEER_W256:
		rc = produce_window(&c, &run, &res, 1);
		break;
	case PEER_W1:
		rc = produce_one(&c, &run, &res);
		break;
	case PEER_E2E:
		rc = produce_window(&c, &run, &res, 0);
		break;
	case PEER_LAT1K:
	default:
		rc = produce_open_loop(&c, &run, &res);
		break;
	}
	atomic_store(&run.cons.stop, 1);
	if (consuming) {
		pthread_join(consumer, NULL);
		peer_consumer_result(&a, &run.cons, rc, "deleted", &res);
	}
	conn_close(&c);
	return peer_report(&a, &res);
}
