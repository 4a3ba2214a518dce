/*
 * peer_rabbitmq.c — the RabbitMQ peer of peers.sh (librabbitmq 0.11,
 * RabbitMQ 3.10). One durable queue per run, `--variant quorum` (the
 * default: x-queue-type quorum) or `--variant classic`, named uniquely and
 * deleted at the end. Messages go through the default exchange with the
 * queue name as routing key, persistent (delivery_mode 2), with publisher
 * confirms: the producer keeps up to 256 unconfirmed (w256, e2e), one
 * (w1), or publishes open loop at 1,000/s (lat1k), and reads basic.ack /
 * basic.nack frames (with `multiple`) to confirm; confirm latency is taken
 * per message from its publish to its ack. The consumer (e2e, lat1k) has
 * its own connection and thread: basic.qos prefetch, basic.consume with
 * manual ack, one basic.ack per message; delivery latency from the stamp
 * in the payload.
 *
 * Measures, as the other peers (peer_redis.c): w256/w1 rate = confirmed
 * messages over the time from the start to the last confirm, confirm
 * latency from publish to ack; e2e rate = messages the consumer acked
 * before the deadline over the duration (the consumer stops at the
 * deadline; no latencies: they would only show the backlog); lat1k rate =
 * messages published over the duration, confirm latency from the
 * scheduled send time, delivery latency of every message (the consumer
 * lingers until it has them all). After the duration the producer gets
 * DRAIN_NS to collect its outstanding confirms, the lat1k consumer as long
 * to take the last deliveries.
 * Every wait is bounded (connect, RPC and frame timeouts); a watchdog
 * thread shuts the sockets down, then reports and exits, should anything
 * still hang well past the duration.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#include "peer_common.h"

#define CHANNEL		  1
#define WINDOW		  256	 /* unconfirmed publishes, w256/e2e */
#define RING		  65536u /* publish records (power of two) */
#define PREFETCH_E2E	  256
#define PREFETCH_LAT	  64
#define LAT_RATE	  1000.0
#define NS		  1000000000ull
#define CONNECT_TIMEOUT_S 5
#define RPC_TIMEOUT_S	  10
#define DRAIN_NS	  (10 * NS) /* settle time after the duration */
#define POLL_NS		  (100 * 1000000ull) /* consumer wake-up for stop checks */
#define WATCHDOG_SLACK_NS (60 * NS) /* past the duration: shut sockets */
#define WATCHDOG_EXIT_NS  (5 * NS)  /* then: report and exit */

/* ---- small helpers ------------------------------------------------------- */

static void seterr(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;

	if (err[0])
		return; /* keep the first error */
	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
}

static struct timeval tv_of_ns(uint64_t ns)
{
	struct timeval tv = { (time_t)(ns / NS),
			      (suseconds_t)(ns % NS / 1000) };

	return tv;
}

/* Describe a failed RPC reply; returns 0 when r is a normal reply. */
static int reply_err(amqp_rpc_reply_t r, const char *what, char *err, size_t n)
{
	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		return 0;
	case AMQP_RESPONSE_NONE:
		seterr(err, n, "%s: no reply (missing RPC reply type)", what);
		break;
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		seterr(err, n, "%s: %s", what,
		       amqp_error_string2(r.library_error));
		break;
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
			const amqp_connection_close_t *m = r.reply.decoded;

			seterr(err, n,
			       "%s: connection closed by server: %u %.*s", what,
			       (unsigned)m->reply_code, (int)m->reply_text.len,
			       (const char *)m->reply_text.bytes);
		} else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
			const amqp_channel_close_t *m = r.reply.decoded;

			seterr(err, n, "%s: channel closed by server: %u %.*s",
			       what, (unsigned)m->reply_code,
			       (int)m->reply_text.len,
			       (const char *)m->reply_text.bytes);
		} else {
			seterr(err, n, "%s: server exception, method 0x%08x",
			       what, (unsigned)r.reply.id);
		}
		break;
	}
	return -1;
}

/* ---- watchdog ------------------------------------------------------------ */

static atomic_int g_fds[2] = { -1, -1 }; /* producer, consumer sockets */
static atomic_bool g_reported;
static const struct peer_args *g_args;
static uint64_t g_watch_until; /* monotonic ns */

static void *watchdog(void *unused)
{
	struct peer_result *r;

	(void)unused;
	peer_sleep_until_ns(g_watch_until);
	fprintf(stderr,
		"peer-rabbitmq: watchdog: still running %.0f s past "
		"the duration, shutting the sockets down\n",
		(double)WATCHDOG_SLACK_NS / NS);
	for (int i = 0; i < 2; i++) {
		int fd = atomic_load(&g_fds[i]);

		if (fd >= 0)
			shutdown(fd, SHUT_RDWR);
	}
	peer_sleep_until_ns(g_watch_until + WATCHDOG_EXIT_NS);
	if (atomic_exchange(&g_reported, true))
		return NULL;
	r = calloc(1, sizeof(*r));
	if (r)
		snprintf(r->error, sizeof(r->error),
			 "watchdog: hung past "
			 "the duration (server unresponsive?)");
	if (r)
		peer_report(g_args, r);
	fflush(stdout);
	_exit(1);
}

/* ---- connections --------------------------------------------------------- */

/* Connect, log in as guest and open CHANNEL. NULL on failure (err set). */
static amqp_connection_state_t rmq_connect(const struct peer_args *a, int slot,
					   char *err, size_t n)
{
	amqp_connection_state_t c = amqp_new_connection();
	amqp_socket_t *s;
	struct timeval cto = { CONNECT_TIMEOUT_S, 0 };
	struct timeval rto = { RPC_TIMEOUT_S, 0 };
	int rc;

	if (!c) {
		seterr(err, n, "amqp_new_connection failed");
		return NULL;
	}
	s = amqp_tcp_socket_new(c);
	if (!s) {
		seterr(err, n, "amqp_tcp_socket_new failed");
		goto fail;
	}
	rc = amqp_socket_open_noblock(s, a->host, a->port, &cto);
	if (rc != AMQP_STATUS_OK) {
		seterr(err, n, "connect %s:%d: %s", a->host, a->port,
		       amqp_error_string2(rc));
		goto fail;
	}
	if (slot >= 0)
		atomic_store(&g_fds[slot], amqp_get_sockfd(c));
	amqp_set_handshake_timeout(c, &rto);
	amqp_set_rpc_timeout(c, &rto);
	if (reply_err(amqp_login(c, "/", 0, AMQP_DEFAULT_FRAME_SIZE, 0,
				 AMQP_SASL_METHOD_PLAIN, "guest", "guest"),
		      "login", err, n))
		goto fail;
	amqp_channel_open(c, CHANNEL);
	if (reply_err(amqp_get_rpc_reply(c), "channel.open", err, n))
		goto fail;
	return c;
fail:
	if (slot >= 0)
		atomic_store(&g_fds[slot], -1);
	amqp_destroy_connection(c);
	return NULL;
}

/* Close politely when healthy, then free. */
static void rmq_close(amqp_connection_state_t c, int slot, bool healthy)
{
	if (!c)
		return;
	if (healthy) {
		amqp_channel_close(c, CHANNEL, AMQP_REPLY_SUCCESS);
		amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	}
	if (slot >= 0)
		atomic_store(&g_fds[slot], -1);
	amqp_destroy_connection(c);
}

static int declare_queue(amqp_connection_state_t c, const char *queue,
			 const char *type, char *err, size_t n)
{
	amqp_table_entry_t e;
	amqp_table_t args;

	e.key = amqp_cstring_bytes("x-queue-type");
	e.value.kind = AMQP_FIELD_KIND_UTF8;
	e.value.value.bytes = amqp_cstring_bytes(type);
	args.num_entries = 1;
	args.entries = &e;
	/* durable, not exclusive, not auto-delete (quorum queues require it) */
	amqp_queue_declare(c, CHANNEL, amqp_cstring_bytes(queue), 0, 1, 0, 0,
			   args);
	return reply_err(amqp_get_rpc_reply(c), "queue.declare", err, n);
}

/* Delete the run's queue over a fresh connection (the working ones may
 * be broken by then). */
static void delete_queue(const struct peer_args *a, const char *queue,
			 char *err, size_t n)
{
	char e2[256] = "";
	amqp_connection_state_t c = rmq_connect(a, -1, e2, sizeof(e2));

	if (c) {
		amqp_queue_delete(c, CHANNEL, amqp_cstring_bytes(queue), 0, 0);
		reply_err(amqp_get_rpc_reply(c), "queue.delete", e2,
			  sizeof(e2));
		rmq_close(c, -1, !e2[0]);
	}
	if (e2[0]) {
		fprintf(stderr, "peer-rabbitmq: cleanup of queue %s: %s\n",
			queue, e2);
		seterr(err, n, "cleanup: %s", e2);
	}
}

/* ---- consumer ------------------------------------------------------------ */

struct consumer {
	amqp_connection_state_t c;
	atomic_bool stop;	       /* the producer is done: see target */
	atomic_uint_least64_t target;  /* messages published */
	atomic_uint_least64_t stop_at; /* give up at this monotonic ns */
	uint64_t deadline;	       /* e2e: stop here, count acks up to it */
	uint64_t acked;
	uint64_t last_ack_ns;
	atomic_bool broken;
	struct peer_hist hist;
	char err[256];
};

static int consumer_start(struct consumer *k, const struct peer_args *a,
			  const char *queue, uint16_t prefetch)
{
	k->c = rmq_connect(a, 1, k->err, sizeof(k->err));
	if (!k->c)
		return -1;
	amqp_basic_qos(k->c, CHANNEL, 0, prefetch, 0);
	if (reply_err(amqp_get_rpc_reply(k->c), "basic.qos", k->err,
		      sizeof(k->err)))
		return -1;
	amqp_basic_consume(k->c, CHANNEL, amqp_cstring_bytes(queue),
			   amqp_empty_bytes, 0, 0 /* manual ack */, 0,
			   amqp_empty_table);
	if (reply_err(amqp_get_rpc_reply(k->c), "basic.consume", k->err,
		      sizeof(k->err)))
		return -1;
	return 0;
}

/* A frame other than a delivery arrived: closes are errors, the rest is
 * ignored. 0 to go on. */
static int consumer_other_frame(struct consumer *k)
{
	amqp_frame_t f;
	struct timeval tv = { 0, 0 };
	int rc = amqp_simple_wait_frame_noblock(k->c, &f, &tv);

	if (rc == AMQP_STATUS_TIMEOUT)
		return 0;
	if (rc != AMQP_STATUS_OK) {
		seterr(k->err, sizeof(k->err), "consumer: %s",
		       amqp_error_string2(rc));
		return -1;
	}
	if (f.frame_type != AMQP_FRAME_METHOD)
		return 0;
	if (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
		const amqp_channel_close_t *m = f.payload.method.decoded;

		seterr(k->err, sizeof(k->err),
		       "consumer: channel closed by server: %u %.*s",
		       (unsigned)m->reply_code, (int)m->reply_text.len,
		       (const char *)m->reply_text.bytes);
		return -1;
	}
	if (f.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
		const amqp_connection_close_t *m = f.payload.method.decoded;

		seterr(k->err, sizeof(k->err),
		       "consumer: connection closed by server: %u %.*s",
		       (unsigned)m->reply_code, (int)m->reply_text.len,
		       (const char *)m->reply_text.bytes);
		return -1;
	}
	return 0;
}

static void *consumer_run(void *arg)
{
	struct consumer *k = arg;
	struct timeval tv = tv_of_ns(POLL_NS);

	for (;;) {
		amqp_envelope_t env;
		amqp_rpc_reply_t r;
		int rc;

		if (k->deadline && peer_mono_ns() >= k->deadline)
			break;
		if (atomic_load(&k->stop) &&
		    (k->acked >= atomic_load(&k->target) ||
		     peer_mono_ns() >= atomic_load(&k->stop_at)))
			break;
		amqp_maybe_release_buffers(k->c);
		r = amqp_consume_message(k->c, &env, &tv, 0);
		if (r.reply_type == AMQP_RESPONSE_NORMAL) {
			peer_hist_add(&k->hist,
				      peer_stamp_age_ns(env.message.body.bytes,
							env.message.body.len));
			rc = amqp_basic_ack(k->c, CHANNEL, env.delivery_tag, 0);
			amqp_destroy_envelope(&env);
			if (rc != AMQP_STATUS_OK) {
				seterr(k->err, sizeof(k->err),
				       "consumer: basic.ack: %s",
				       amqp_error_string2(rc));
				atomic_store(&k->broken, true);
				break;
			}
			k->last_ack_ns = peer_mono_ns();
			if (!k->deadline || k->last_ack_ns <= k->deadline)
				k->acked++;
			continue;
		}
		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    r.library_error == AMQP_STATUS_TIMEOUT)
			continue;
		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
			if (consumer_other_frame(k)) {
				atomic_store(&k->broken, true);
				break;
			}
			continue;
		}
		reply_err(r, "consumer", k->err, sizeof(k->err));
		atomic_store(&k->broken, true);
		break;
	}
	return NULL;
}

/* ---- producer ------------------------------------------------------------ */

struct producer {
	amqp_connection_state_t c;
	uint64_t next_tag; /* delivery tag of the next publish (from 1) */
	uint64_t low;	   /* lowest tag not yet settled */
	uint64_t inflight;
	uint64_t confirmed, nacked;
	uint64_t last_confirm_ns;
	uint64_t *sent_at;	/* RING, by tag */
	unsigned char *pending; /* RING, by tag */
	struct peer_hist *hist; /* confirm latencies, NULL: not measured */
	char *err;
	size_t errlen;
};

static void settle(struct producer *p, uint64_t tag, bool ok, uint64_t now)
{
	uint64_t i = tag & (RING - 1);

	p->pending[i] = 0;
	p->inflight--;
	if (ok) {
		p->confirmed++;
		if (p->hist)
			peer_hist_add(p->hist, now - p->sent_at[i]);
		p->last_confirm_ns = now;
	} else {
		p->nacked++;
	}
}

static void confirm(struct producer *p, uint64_t tag, bool multiple, bool ok)
{
	uint64_t now = peer_mono_ns();

	if (tag >= p->next_tag)
		tag = p->next_tag - 1; /* never published: ignore the excess */
	if (multiple) {
		for (uint64_t t = p->low; t <= tag; t++)
			if (p->pending[t & (RING - 1)])
				settle(p, t, ok, now);
	} else if (tag >= p->low && p->pending[tag & (RING - 1)]) {
		settle(p, tag, ok, now);
	}
	while (p->low < p->next_tag && !p->pending[p->low & (RING - 1)])
		p->low++;
}

/* Wait for one frame until the monotonic time `until` (at once when
 * past) and handle it. 0 on a frame or timeout, -1 on error. */
static int producer_wait(struct producer *p, uint64_t until)
{
	amqp_frame_t f;
	uint64_t now = peer_mono_ns();
	struct timeval tv = tv_of_ns(until > now ? until - now : 0);
	int rc = amqp_simple_wait_frame_noblock(p->c, &f, &tv);

	if (rc == AMQP_STATUS_TIMEOUT)
		return 0;
	if (rc != AMQP_STATUS_OK) {
		seterr(p->err, p->errlen, "producer: %s",
		       amqp_error_string2(rc));
		return -1;
	}
	if (f.frame_type == AMQP_FRAME_METHOD) {
		switch (f.payload.method.id) {
		case AMQP_BASIC_ACK_METHOD: {
			const amqp_basic_ack_t *m = f.payload.method.decoded;

			confirm(p, m->delivery_tag, m->multiple, true);
			break;
		}
		case AMQP_BASIC_NACK_METHOD: {
			const amqp_basic_nack_t *m = f.payload.method.decoded;

			confirm(p, m->delivery_tag, m->multiple, false);
			break;
		}
		case AMQP_CHANNEL_CLOSE_METHOD: {
			const amqp_channel_close_t *m =
				f.payload.method.decoded;

			seterr(p->err, p->errlen,
			       "producer: channel closed by server: %u %.*s",
			       (unsigned)m->reply_code, (int)m->reply_text.len,
			       (const char *)m->reply_text.bytes);
			return -1;
		}
		case AMQP_CONNECTION_CLOSE_METHOD: {
			const amqp_connection_close_t *m =
				f.payload.method.decoded;

			seterr(p->err, p->errlen,
			       "producer: connection closed by server: %u %.*s",
			       (unsigned)m->reply_code, (int)m->reply_text.len,
			       (const char *)m->reply_text.bytes);
			return -1;
		}
		default:
			break; /* basic.return cannot happen (not mandatory) */
		}
	}
	amqp_maybe_release_buffers(p->c);
	return 0;
}

/* Publish one; its confirm latency counts from `sched` (0: now). */
static int producer_publish(struct producer *p, const char *queue, void *buf,
			    size_t len, uint64_t sched)
{
	amqp_basic_properties_t props;
	uint64_t i = p->next_tag & (RING - 1);
	int rc;

	memset(&props, 0, sizeof(props));
	props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
	props.delivery_mode = 2; /* persistent */
	peer_stamp(buf, len);
	p->sent_at[i] = sched ? sched : peer_mono_ns();
	rc = amqp_basic_publish(p->c, CHANNEL, amqp_empty_bytes,
				amqp_cstring_bytes(queue), 0, 0, &props,
				(amqp_bytes_t){ .len = len, .bytes = buf });
	if (rc != AMQP_STATUS_OK) {
		seterr(p->err, p->errlen, "producer: basic.publish: %s",
		       amqp_error_string2(rc));
		return -1;
	}
	p->pending[i] = 1;
	p->next_tag++;
	p->inflight++;
	return 0;
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
	struct peer_args a = { .name = "rabbitmq" };
	static struct peer_result r;
	static struct consumer k;
	struct producer p;
	char queue[96];
	const char *qtype;
	bool consume, queue_made = false, prod_ok = false;
	bool have_thread = false;
	pthread_t ct, wt;
	void *buf = NULL;
	uint64_t t0 = 0, deadline, drain_until, lat_i = 0;
	int rc;

	if (peer_parse_args(&a, argc, argv))
		return 2;
	if (!a.variant || !a.variant[0])
		a.variant = "quorum";
	if (!a.port)
		a.port = 5672;
	memset(&p, 0, sizeof(p));
	p.hist = a.workload == PEER_E2E ? NULL : &r.confirm;
	p.err = r.error;
	p.errlen = sizeof(r.error);
	p.next_tag = 1;
	p.low = 1;
	consume = a.workload == PEER_E2E || a.workload == PEER_LAT1K;

	g_args = &a;
	g_watch_until = peer_mono_ns() + (uint64_t)(a.duration_s * NS) +
			WATCHDOG_SLACK_NS;
	if (pthread_create(&wt, NULL, watchdog, NULL) == 0)
		pthread_detach(wt);

	if (!strcmp(a.variant, "quorum") || !strcmp(a.variant, "classic")) {
		qtype = a.variant;
	} else {
		seterr(r.error, sizeof(r.error),
		       "unknown variant '%s' (quorum|classic)", a.variant);
		goto report;
	}
	snprintf(queue, sizeof(queue), "handoff-bench-%s-%ld-%" PRIu64, qtype,
		 (long)getpid(), peer_real_ns());

	buf = malloc(a.payload);
	p.sent_at = calloc(RING, sizeof(*p.sent_at));
	p.pending = calloc(RING, 1);
	if (!buf || !p.sent_at || !p.pending) {
		seterr(r.error, sizeof(r.error), "out of memory");
		goto report;
	}

	p.c = rmq_connect(&a, 0, r.error, sizeof(r.error));
	if (!p.c)
		goto report;
	if (declare_queue(p.c, queue, qtype, r.error, sizeof(r.error)))
		goto close;
	queue_made = true;
	amqp_confirm_select(p.c, CHANNEL);
	if (reply_err(amqp_get_rpc_reply(p.c), "confirm.select", r.error,
		      sizeof(r.error)))
		goto close;

	if (consume) {
		if (consumer_start(&k, &a, queue,
				   a.workload == PEER_E2E ? PREFETCH_E2E :
							    PREFETCH_LAT)) {
			seterr(r.error, sizeof(r.error), "%s", k.err);
			atomic_store(&k.broken, true);
			goto close;
		}
	}

	prod_ok = true;
	t0 = peer_mono_ns();
	deadline = t0 + (uint64_t)(a.duration_s * NS);
	if (consume) {
		if (a.workload == PEER_E2E)
			k.deadline = deadline;
		rc = pthread_create(&ct, NULL, consumer_run, &k);
		if (rc) {
			seterr(r.error, sizeof(r.error), "pthread_create: %s",
			       strerror(rc));
			goto close;
		}
		have_thread = true;
	}

	/* Publish until the duration is up. */
	for (;;) {
		uint64_t now = peer_mono_ns(), until = deadline, sched = 0;
		bool room = p.next_tag - p.low < RING, go;

		if (now >= deadline)
			break;
		switch (a.workload) {
		case PEER_W1:
			go = p.inflight == 0;
			break;
		case PEER_LAT1K: {
			uint64_t due = peer_due_ns(t0, lat_i, LAT_RATE);

			go = room && now >= due;
			sched = due;
			if (room && due < until)
				until = due;
			break;
		}
		default:
			go = room && p.inflight < WINDOW;
			break;
		}
		if (go) {
			if (producer_publish(&p, queue, buf, a.payload,
					     sched)) {
				prod_ok = false;
				break;
			}
			lat_i++;
			continue;
		}
		if (producer_wait(&p, until)) {
			prod_ok = false;
			break;
		}
		if (have_thread && atomic_load(&k.broken))
			break; /* the consumer failed: no point going on */
	}

	/* Drain: wait for the outstanding confirms. */
	drain_until = peer_mono_ns() + DRAIN_NS;
	while (prod_ok && p.inflight > 0 && peer_mono_ns() < drain_until) {
		if (producer_wait(&p, drain_until)) {
			prod_ok = false;
			break;
		}
	}
	if (prod_ok && p.inflight > 0) {
		seterr(r.error, sizeof(r.error),
		       "%" PRIu64 " publishes unconfirmed %.0f s after the "
		       "duration",
		       p.inflight, (double)DRAIN_NS / NS);
		prod_ok = false; /* unresponsive: skip the polite close */
	}
	if (p.nacked)
		seterr(r.error, sizeof(r.error), "%" PRIu64 " publishes nacked",
		       p.nacked);

close:
	if (have_thread) {
		atomic_store(&k.stop_at, prod_ok ? peer_mono_ns() + DRAIN_NS :
						   peer_mono_ns());
		atomic_store(&k.target, p.next_tag - 1);
		atomic_store(&k.stop, true);
		pthread_join(ct, NULL);
		if (k.err[0])
			seterr(r.error, sizeof(r.error), "%s", k.err);
		else if (a.workload == PEER_LAT1K && prod_ok &&
			 k.acked < p.next_tag - 1 - p.nacked)
			seterr(r.error, sizeof(r.error),
			       "consumer got %" PRIu64 " of %" PRIu64
			       " messages %.0f s after the duration",
			       k.acked, p.next_tag - 1, (double)DRAIN_NS / NS);
		if (a.workload == PEER_LAT1K)
			r.deliver = k.hist;
	}
	if (k.c)
		rmq_close(k.c, 1, !atomic_load(&k.broken));
	rmq_close(p.c, 0, prod_ok);
	if (t0 && a.workload == PEER_E2E) {
		r.count = k.acked;
		r.rate = (double)r.count / a.duration_s;
	} else if (t0 && a.workload == PEER_LAT1K) {
		r.count = p.next_tag - 1;
		r.rate = (double)r.count / a.duration_s;
	} else if (t0) {
		r.count = p.confirmed;
		if (r.count && p.last_confirm_ns > t0)
			r.rate = (double)r.count * NS /
				 (double)(p.last_confirm_ns - t0);
	}
	if (queue_made)
		delete_queue(&a, queue, r.error, sizeof(r.error));

report:
	free(buf);
	free(p.sent_at);
	free(p.pending);
	if (atomic_exchange(&g_reported, true)) {
		for (;;)
			pause(); /* the watchdog reports and exits */
	}
	return peer_report(&a, &r);
}
