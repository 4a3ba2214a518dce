/*
 * peer_nats.c — the NATS JetStream peer of peers.sh (libnats 3.4,
 * nats-server 2.9 with -js). One file-storage stream per run (subject
 * `bench.<run>`), deleted at the end.
 *
 * NOTE: NATS 2.9 does not fsync per write: JetStream acknowledges a
 * publish once the message is in the file store's buffers and syncs in
 * the background (there is no option to sync before acknowledging;
 * `sync_interval` came in 2.10). Its row is a non-durable reference,
 * not a like-for-like durable peer.
 *
 * Producer: w256/e2e publish with js_PublishAsync, at most 256 awaiting
 * their JetStream ack (jsOptions.PublishAsync.MaxPending), acks handled
 * in an ack-handler callback; w1 publishes with the synchronous
 * js_Publish; lat1k publishes asynchronously open loop at 1,000/s. The
 * payload carries the realtime stamp (bytes 0-7) and the monotonic time
 * its confirm latency counts from (bytes 8-15, when the payload has room;
 * else the stamp serves). Consumer (e2e, lat1k): its
 * own connection and thread, a push subscription (ephemeral consumer,
 * explicit ack, at most 256 unacked) read with natsSubscription_NextMsg,
 * natsMsg_Ack for each message; delivery latency from the payload stamp.
 *
 * Measures, as the other peers (peer_redis.c): w256/w1 rate = acknowledged
 * publishes over the time from the start to the last ack, confirm latency
 * from publish to ack; e2e rate = messages the consumer acked before the
 * deadline over the duration (the consumer stops at the deadline; no
 * latencies: they would only show the backlog); lat1k rate = messages
 * published over the duration, confirm latency from the scheduled send
 * time, delivery latency of every message (the consumer lingers until it
 * has them all). After the duration the producer gets DRAIN_NS to collect
 * its outstanding acks, the lat1k consumer as long to take the last
 * deliveries. Reconnects are off and every wait is bounded; a watchdog
 * thread reports and exits should anything still hang well past the
 * duration.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "peer_common.h"

#define WINDOW		   256 /* unacked publishes / deliveries */
#define LAT_RATE	   1000.0
#define NS		   1000000000ull
#define CONNECT_TIMEOUT_MS 5000
#define API_WAIT_MS	   10000     /* JetStream API and sync publish */
#define STALL_WAIT_MS	   100	     /* js_PublishAsync when window full */
#define DRAIN_NS	   (10 * NS) /* settle time after the duration */
#define POLL_MS		   100	     /* consumer wake-up for stop checks */
#define WATCHDOG_SLACK_NS  (60 * NS) /* past the duration: report, exit */

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

static void nats_err(char *err, size_t n, const char *what, natsStatus s,
		     jsErrCode jerr)
{
	natsStatus ls = NATS_OK;
	const char *last = nats_GetLastError(&ls);

	if (ls != s)
		last = NULL; /* a stale error of an earlier call */

	if (jerr)
		seterr(err, n, "%s: %s (JetStream error %d)%s%s", what,
		       natsStatus_GetText(s), (int)jerr, last ? ": " : "",
		       last ? last : "");
	else
		seterr(err, n, "%s: %s%s%s", what, natsStatus_GetText(s),
		       last ? ": " : "", last ? last : "");
}

/* ---- watchdog ------------------------------------------------------------ */

static atomic_bool g_reported;
static const struct peer_args *g_args;
static uint64_t g_watch_until; /* monotonic ns */

static void *watchdog(void *unused)
{
	struct peer_result *r;

	(void)unused;
	peer_sleep_until_ns(g_watch_until);
	if (atomic_exchange(&g_reported, true))
		return NULL;
	r = calloc(1, sizeof(*r));
	if (r) {
		snprintf(r->error, sizeof(r->error),
			 "watchdog: hung past "
			 "the duration (server unresponsive?)");
		peer_report(g_args, r);
	}
	fflush(stdout);
	_exit(1);
}

/* ---- connections --------------------------------------------------------- */

/* send_asap: write each publish (and ack) at once instead of leaving it
 * to the library's flusher thread, which batches for throughput but adds
 * up to about a millisecond to every message: used for lat1k. */
static natsConnection *nats_connect(const char *url, bool send_asap, char *err,
				    size_t n)
{
	natsOptions *o = NULL;
	natsConnection *nc = NULL;
	natsStatus s;

	s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetURL(o, url);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, CONNECT_TIMEOUT_MS);
	if (s == NATS_OK)
		s = natsOptions_SetAllowReconnect(o, false);
	if (s == NATS_OK)
		s = natsOptions_SetSendAsap(o, send_asap);
	if (s == NATS_OK)
		s = natsConnection_Connect(&nc, o);
	if (s != NATS_OK) {
		char what[300];

		snprintf(what, sizeof(what), "connect %s", url);
		nats_err(err, n, what, s, 0);
		nc = NULL;
	}
	natsOptions_Destroy(o);
	return nc;
}

/* ---- producer state (the async ack handler runs on a library thread) ---- */

struct producer {
	pthread_mutex_t mu;
	uint64_t published;
	uint64_t acked;
	uint64_t failed;
	uint64_t last_ack_ns;
	struct peer_hist *hist; /* confirm latencies, NULL: not measured */
	char err[256];
};

/* Stamp buf for publishing: the realtime stamp, then (room permitting)
 * the monotonic time the confirm latency counts from. */
static void stamp(void *buf, size_t len, uint64_t sched)
{
	peer_stamp(buf, len);
	if (len >= 16)
		memcpy((char *)buf + 8, &sched, 8);
}

/* Confirm latency of a message stamped by stamp(). */
static uint64_t confirm_age(const char *data, int len, uint64_t now)
{
	uint64_t sched;

	if (!data || len < 16)
		return peer_stamp_age_ns(data,
					 data && len > 0 ? (size_t)len : 0);
	memcpy(&sched, data + 8, 8);
	return now > sched ? now - sched : 0;
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
		   void *closure)
{
	struct producer *p = closure;
	uint64_t age = 0, now = peer_mono_ns();

	(void)js;
	if (pa && p->hist)
		age = confirm_age(natsMsg_GetData(msg),
				  natsMsg_GetDataLength(msg), now);
	pthread_mutex_lock(&p->mu);
	if (pa) {
		p->acked++;
		p->last_ack_ns = now;
		if (p->hist)
			peer_hist_add(p->hist, age);
	} else {
		p->failed++;
		if (pae)
			seterr(p->err, sizeof(p->err),
			       "publish ack: %s (JetStream error %d) %s",
			       natsStatus_GetText(pae->Err), (int)pae->ErrCode,
			       pae->ErrText ? pae->ErrText : "");
		else
			seterr(p->err, sizeof(p->err), "publish ack failed");
	}
	pthread_mutex_unlock(&p->mu);
	natsMsg_Destroy(msg);
}

static void producer_counts(struct producer *p, uint64_t *acked,
			    uint64_t *failed)
{
	pthread_mutex_lock(&p->mu);
	*acked = p->acked;
	*failed = p->failed;
	pthread_mutex_unlock(&p->mu);
}

/* ---- consumer ------------------------------------------------------------ */

struct consumer {
	natsConnection *nc;
	jsCtx *js;
	natsSubscription *sub;
	atomic_bool stop;	       /* the producer is done: see target */
	atomic_uint_least64_t target;  /* messages published */
	atomic_uint_least64_t stop_at; /* give up at this monotonic ns */
	uint64_t deadline;	       /* e2e: stop here, count acks to it */
	atomic_bool broken;
	uint64_t acked;
	uint64_t last_ack_ns;
	struct peer_hist hist;
	char err[256];
};

static int consumer_start(struct consumer *k, const char *url, bool send_asap,
			  const char *stream, const char *subject)
{
	jsOptions jo;
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;

	k->nc = nats_connect(url, send_asap, k->err, sizeof(k->err));
	if (!k->nc)
		return -1;
	jsOptions_Init(&jo);
	jo.Wait = API_WAIT_MS;
	s = natsConnection_JetStream(&k->js, k->nc, &jo);
	if (s != NATS_OK) {
		nats_err(k->err, sizeof(k->err), "consumer: JetStream", s, 0);
		return -1;
	}
	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.Config.DeliverPolicy = js_DeliverAll;
	so.Config.AckPolicy = js_AckExplicit;
	so.Config.MaxAckPending = WINDOW;
	s = js_SubscribeSync(&k->sub, k->js, subject, NULL, &so, &jerr);
	if (s != NATS_OK) {
		nats_err(k->err, sizeof(k->err), "consumer: subscribe", s,
			 jerr);
		k->sub = NULL;
		return -1;
	}
	return 0;
}

static void *consumer_run(void *arg)
{
	struct consumer *k = arg;

	for (;;) {
		natsMsg *m = NULL;
		natsStatus s;

		if (k->deadline && peer_mono_ns() >= k->deadline)
			break;
		if (atomic_load(&k->stop) &&
		    (k->acked >= atomic_load(&k->target) ||
		     peer_mono_ns() >= atomic_load(&k->stop_at)))
			break;
		s = natsSubscription_NextMsg(&m, k->sub, POLL_MS);
		if (s == NATS_TIMEOUT)
			continue;
		if (s != NATS_OK) {
			nats_err(k->err, sizeof(k->err), "consumer: next", s,
				 0);
			atomic_store(&k->broken, true);
			break;
		}
		peer_hist_add(
			&k->hist,
			peer_stamp_age_ns(natsMsg_GetData(m),
					  (size_t)natsMsg_GetDataLength(m)));
		s = natsMsg_Ack(m, NULL);
		natsMsg_Destroy(m);
		if (s != NATS_OK) {
			nats_err(k->err, sizeof(k->err), "consumer: ack", s, 0);
			atomic_store(&k->broken, true);
			break;
		}
		k->last_ack_ns = peer_mono_ns();
		if (!k->deadline || k->last_ack_ns <= k->deadline)
			k->acked++;
	}
	return NULL;
}

static void consumer_close(struct consumer *k)
{
	if (k->sub) {
		if (!atomic_load(&k->broken))
			natsSubscription_Unsubscribe(k->sub);
		natsSubscription_Destroy(k->sub);
	}
	if (k->js)
		jsCtx_Destroy(k->js);
	if (k->nc) {
		natsConnection_Close(k->nc);
		natsConnection_Destroy(k->nc);
	}
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
	struct peer_args a = { .name = "nats" };
	static struct peer_result r;
	static struct producer p;
	static struct consumer k;
	char url[300], run[64], stream[96], subject[96];
	const char *subjects[1];
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsOptions jo;
	jsStreamConfig sc;
	jsStreamInfo *si = NULL;
	jsPubOptions po;
	jsErrCode jerr = 0;
	natsStatus s;
	bool consume, stream_made = false, prod_ok = false;
	bool have_thread = false;
	pthread_t ct, wt;
	void *buf = NULL;
	uint64_t t0 = 0, deadline, drain_until, i = 0;
	uint64_t acked = 0, failed = 0, sched;
	int rc;

	if (peer_parse_args(&a, argc, argv))
		return 2;
	if (!a.port)
		a.port = 4222;
	consume = a.workload == PEER_E2E || a.workload == PEER_LAT1K;
	pthread_mutex_init(&p.mu, NULL);
	p.hist = a.workload == PEER_E2E ? NULL : &r.confirm;

	g_args = &a;
	g_watch_until = peer_mono_ns() + (uint64_t)(a.duration_s * NS) +
			WATCHDOG_SLACK_NS;
	if (pthread_create(&wt, NULL, watchdog, NULL) == 0)
		pthread_detach(wt);

	if (a.url && a.url[0])
		snprintf(url, sizeof(url), "%s", a.url);
	else
		snprintf(url, sizeof(url), "nats://%s:%d", a.host, a.port);
	snprintf(run, sizeof(run), "h%ld_%" PRIu64, (long)getpid(),
		 peer_real_ns());
	snprintf(stream, sizeof(stream), "HANDOFF_BENCH_%s", run);
	snprintf(subject, sizeof(subject), "bench.%s", run);
	subjects[0] = subject;

	buf = malloc(a.payload);
	if (!buf) {
		seterr(r.error, sizeof(r.error), "out of memory");
		goto report;
	}
	nc = nats_connect(url, a.workload == PEER_LAT1K, r.error,
			  sizeof(r.error));
	if (!nc)
		goto report;
	jsOptions_Init(&jo);
	jo.Wait = API_WAIT_MS;
	jo.PublishAsync.MaxPending = WINDOW;
	jo.PublishAsync.AckHandler = on_ack;
	jo.PublishAsync.AckHandlerClosure = &p;
	jo.PublishAsync.StallWait = STALL_WAIT_MS;
	s = natsConnection_JetStream(&js, nc, &jo);
	if (s != NATS_OK) {
		nats_err(r.error, sizeof(r.error), "JetStream", s, 0);
		goto close;
	}
	jsStreamConfig_Init(&sc);
	sc.Name = stream;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	s = js_AddStream(&si, js, &sc, NULL, &jerr);
	if (s != NATS_OK) {
		nats_err(r.error, sizeof(r.error), "add stream", s, jerr);
		goto close;
	}
	jsStreamInfo_Destroy(si);
	stream_made = true;

	if (consume) {
		if (consumer_start(&k, url, a.workload == PEER_LAT1K, stream,
				   subject)) {
			seterr(r.error, sizeof(r.error), "%s", k.err);
			atomic_store(&k.broken, true);
			goto close;
		}
	}

	jsPubOptions_Init(&po);
	po.MaxWait = API_WAIT_MS;
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
	while (peer_mono_ns() < deadline) {
		if (have_thread && atomic_load(&k.broken))
			break; /* the consumer failed: no point going on */
		if (a.workload == PEER_W1) {
			jsPubAck *pa = NULL;
			uint64_t t;

			t = peer_mono_ns();
			stamp(buf, a.payload, t);
			jerr = 0;
			s = js_Publish(&pa, js, subject, buf, (int)a.payload,
				       &po, &jerr);
			if (s != NATS_OK) {
				nats_err(r.error, sizeof(r.error), "publish", s,
					 jerr);
				prod_ok = false;
				break;
			}
			jsPubAck_Destroy(pa);
			p.last_ack_ns = peer_mono_ns();
			peer_hist_add(&r.confirm, p.last_ack_ns - t);
			p.published++;
			p.acked++;
			continue;
		}
		if (a.workload == PEER_LAT1K) {
			sched = peer_due_ns(t0, i, LAT_RATE);
			if (sched >= deadline)
				break;
			peer_sleep_until_ns(sched);
		} else {
			sched = peer_mono_ns();
		}
		stamp(buf, a.payload, sched);
		s = js_PublishAsync(js, subject, buf, (int)a.payload, NULL);
		if (s == NATS_TIMEOUT) {
			/* stalled: 256 awaiting their ack for StallWait */
			continue;
		}
		if (s != NATS_OK) {
			nats_err(r.error, sizeof(r.error), "publish async", s,
				 0);
			prod_ok = false;
			break;
		}
		pthread_mutex_lock(&p.mu);
		p.published++;
		pthread_mutex_unlock(&p.mu);
		i++;
	}

	/* Drain: wait for the outstanding acks. */
	if (prod_ok && a.workload != PEER_W1) {
		jsPubOptions dpo;

		jsPubOptions_Init(&dpo);
		dpo.MaxWait = (int64_t)(DRAIN_NS / 1000000);
		s = js_PublishAsyncComplete(js, &dpo);
		if (s != NATS_OK) {
			nats_err(r.error, sizeof(r.error),
				 "waiting for publish acks", s, 0);
			prod_ok = false; /* the consumer need not linger */
		}
		/* The handler may still be finishing its last call. */
		drain_until = peer_mono_ns() + NS;
		for (;;) {
			producer_counts(&p, &acked, &failed);
			if (acked + failed >= p.published ||
			    peer_mono_ns() >= drain_until)
				break;
			peer_sleep_until_ns(peer_mono_ns() + 1000000);
		}
	}
	producer_counts(&p, &acked, &failed);
	pthread_mutex_lock(&p.mu);
	if (p.err[0])
		seterr(r.error, sizeof(r.error), "%s", p.err);
	pthread_mutex_unlock(&p.mu);
	if (prod_ok && acked + failed < p.published)
		seterr(r.error, sizeof(r.error),
		       "%" PRIu64 " publishes unacked %.0f s after the "
		       "duration",
		       p.published - acked - failed, (double)DRAIN_NS / NS);

close:
	if (have_thread) {
		atomic_store(&k.stop_at, prod_ok ? peer_mono_ns() + DRAIN_NS :
						   peer_mono_ns());
		atomic_store(&k.target, p.published);
		atomic_store(&k.stop, true);
		pthread_join(ct, NULL);
		if (k.err[0])
			seterr(r.error, sizeof(r.error), "%s", k.err);
		else if (a.workload == PEER_LAT1K && prod_ok &&
			 k.acked < p.published)
			seterr(r.error, sizeof(r.error),
			       "consumer got %" PRIu64 " of %" PRIu64
			       " messages %.0f s after the duration",
			       k.acked, p.published, (double)DRAIN_NS / NS);
		if (a.workload == PEER_LAT1K)
			r.deliver = k.hist;
	}
	consumer_close(&k);
	if (t0 && a.workload == PEER_E2E) {
		r.count = k.acked;
		r.rate = (double)r.count / a.duration_s;
	} else if (t0 && a.workload == PEER_LAT1K) {
		r.count = p.published;
		r.rate = (double)r.count / a.duration_s;
	} else if (t0) {
		pthread_mutex_lock(&p.mu);
		r.count = p.acked;
		if (r.count && p.last_ack_ns > t0)
			r.rate = (double)r.count * NS /
				 (double)(p.last_ack_ns - t0);
		pthread_mutex_unlock(&p.mu);
	}
	if (stream_made) {
		jerr = 0;
		s = js_DeleteStream(js, stream, NULL, &jerr);
		if (s != NATS_OK) {
			char e2[256] = "";

			nats_err(e2, sizeof(e2), "delete stream", s, jerr);
			fprintf(stderr, "peer-nats: cleanup of stream %s: %s\n",
				stream, e2);
			seterr(r.error, sizeof(r.error), "cleanup: %s", e2);
		}
	}
	if (js)
		jsCtx_Destroy(js);
	if (nc) {
		natsConnection_Close(nc);
		natsConnection_Destroy(nc);
	}
	nats_Close();

report:
	free(buf);
	if (atomic_exchange(&g_reported, true)) {
		for (;;)
			pause(); /* the watchdog reports and exits */
	}
	return peer_report(&a, &r);
}
