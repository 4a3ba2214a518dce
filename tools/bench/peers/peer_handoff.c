/*
 * peer_handoff.c — handoff itself, through its client library, in the same
 * four workloads as the peers (peers.sh).
 *
 * handoff's client is REQ/REP: a handle has exactly one request in flight.
 * So the peers' "256 published and not yet confirmed" becomes one publish
 * request carrying a batch of 256 events, confirmed as a whole once the
 * broker has committed it durably; the next batch goes out after that.
 *
 *   w256   one producer, handoff_publish() of 256 events per request
 *   w1     one producer, one event per handoff_publish()
 *   e2e    w256 producer + one consumer thread (own handle) that fetches up
 *          to 256 with a 100 ms long poll and acks each fetch in one
 *          handoff_ack(); rate = acked events per second
 *   lat1k  single-event publishes at 1,000/s open loop, the schedule
 *          dealt round-robin to 4 handles (each has one request in
 *          flight; confirm latency is taken from the scheduled time, so a
 *          late send is counted) + the consumer above; delivery latency
 *          from the payload stamp
 *
 * Each run creates its own topic and subscription (ack deadline 30 s) and
 * unsubscribes at the end, which also drops whatever was not consumed.
 */
#include "peer_common.h"

#include <handoff.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH 256

struct run {
	struct peer_args *a;
	char topic[128], sub[160];
	uint64_t start, deadline;
	struct peer_consumer cons;
};

static int open_handle(const struct peer_args *a, handoff_client **out,
		       char *err, size_t errlen)
{
	handoff_options o = { .deadline_ms = 30000 };
	int rc = handoff_connect(a->url, &o, out);
	if (rc != HANDOFF_OK)
		snprintf(err, errlen, "connect %s: %s",
			 a->url ? a->url : HANDOFF_DEFAULT_URL,
			 handoff_strerror(rc));
	return rc == HANDOFF_OK ? 0 : -1;
}

static void call_error(char *err, size_t errlen, const char *what,
		       handoff_client *c, int rc)
{
	const char *m = handoff_last_message(c);
	snprintf(err, errlen, "%s: %s%s%s", what, handoff_strerror(rc),
		 m[0] ? ": " : "", m);
}

/* ---- consumer --------------------------------------------------------- */

static void *consumer_main(void *arg)
{
	struct run *run = arg;
	int lat = run->a->workload == PEER_LAT1K;
	handoff_ack_item items[BATCH];
	int results[BATCH];
	handoff_client *c = NULL;
	uint64_t linger = 0;

	if (open_handle(run->a, &c, run->cons.err, sizeof run->cons.err) != 0)
		return NULL;
	for (;;) {
		handoff_delivery *d = NULL;
		size_t n = 0, ok = 0;
		uint64_t now = peer_mono_ns();
		int rc;

		if (!lat && now >= run->deadline)
			break;
		if (lat && atomic_load(&run->cons.stop)) {
			if (!linger)
				linger = now + 2000000000ull;
			if (run->cons.acked_total >= run->cons.expect ||
			    now >= linger)
				break;
		}
		rc = handoff_fetch(c, run->sub, BATCH, 100, &d, &n);
		if (rc != HANDOFF_OK) {
			call_error(run->cons.err, sizeof run->cons.err, "fetch",
				   c, rc);
			break;
		}
		if (n == 0)
			continue;
		for (size_t i = 0; i < n; i++) {
			if (lat)
				peer_hist_add(
					&run->cons.deliver,
					peer_stamp_age_ns(d[i].payload,
							  d[i].payload_len));
			items[i].event_id = d[i].event_id;
			items[i].lease_token = d[i].lease_token;
		}
		handoff_deliveries_free(d, n);
		rc = handoff_ack(c, run->sub, items, n, results);
		if (rc != HANDOFF_OK) {
			call_error(run->cons.err, sizeof run->cons.err, "ack",
				   c, rc);
			break;
		}
		for (size_t i = 0; i < n; i++)
			ok += results[i] == HANDOFF_OK;
		run->cons.acked_total += ok;
		if (lat || peer_mono_ns() <= run->deadline)
			atomic_fetch_add(&run->cons.acked, ok);
	}
	handoff_close(c);
	return NULL;
}

/* ---- producers -------------------------------------------------------- */

/* w256 (batch = BATCH) and w1 (batch = 1). */
static int produce_batches(handoff_client *c, struct run *run,
			   struct peer_result *res, size_t batch, int measure)
{
	size_t plen = run->a->payload;
	char *bufs = malloc(plen * batch);
	handoff_event ev[BATCH];
	uint64_t ids[BATCH];
	uint64_t n = 0, now;

	if (!bufs) {
		snprintf(res->error, sizeof res->error, "out of memory");
		return -1;
	}
	memset(ev, 0, sizeof ev);
	for (size_t i = 0; i < batch; i++) {
		ev[i].payload = bufs + i * plen;
		ev[i].payload_len = plen;
	}
	while ((now = peer_mono_ns()) < run->deadline) {
		int rc;
		for (size_t i = 0; i < batch; i++)
			peer_stamp(bufs + i * plen, plen);
		rc = handoff_publish(c, run->topic, ev, batch, ids, NULL);
		if (rc != HANDOFF_OK) {
			call_error(res->error, sizeof res->error, "publish", c,
				   rc);
			free(bufs);
			return -1;
		}
		if (measure) {
			uint64_t lat = peer_mono_ns() - now;
			for (size_t i = 0; i < batch; i++)
				peer_hist_add(&res->confirm, lat);
		}
		n += batch;
	}
	res->count = n;
	res->rate = (double)n / ((double)(peer_mono_ns() - run->start) / 1e9);
	free(bufs);
	return 0;
}

/* Open-loop producers: a REQ handle has one request in flight, so the
 * 1,000/s schedule is dealt round-robin to OPEN_LOOP_HANDLES handles, as a
 * peer client pipelines its sends; a late reply then delays only that
 * handle's next event, and latency is still taken from the scheduled time. */
#define OPEN_LOOP_HANDLES 4

struct open_loop {
	struct run *run;
	int idx;
	uint64_t sent;
	struct peer_hist confirm;
	char error[256];
};

static void *open_loop_main(void *arg)
{
	struct open_loop *o = arg;
	struct run *run = o->run;
	size_t plen = run->a->payload;
	char *buf = malloc(plen);
	handoff_client *c = NULL;
	handoff_event ev;
	uint64_t id;

	if (!buf) {
		snprintf(o->error, sizeof o->error, "out of memory");
		return NULL;
	}
	if (open_handle(run->a, &c, o->error, sizeof o->error) != 0) {
		free(buf);
		return NULL;
	}
	memset(&ev, 0, sizeof ev);
	ev.payload = buf;
	ev.payload_len = plen;
	for (uint64_t i = (uint64_t)o->idx;; i += OPEN_LOOP_HANDLES) {
		uint64_t due = peer_due_ns(run->start, i, 1000.0);
		if (due >= run->deadline)
			break;
		peer_sleep_until_ns(due);
		peer_stamp(buf, plen);
		int rc = handoff_publish(c, run->topic, &ev, 1, &id, NULL);
		if (rc != HANDOFF_OK) {
			call_error(o->error, sizeof o->error, "publish", c, rc);
			break;
		}
		peer_hist_add(&o->confirm, peer_mono_ns() - due);
		o->sent++;
	}
	handoff_close(c);
	free(buf);
	return NULL;
}

static int produce_open_loop(struct run *run, struct peer_result *res)
{
	static struct open_loop lanes[OPEN_LOOP_HANDLES];
	pthread_t tids[OPEN_LOOP_HANDLES];
	int started = 0;
	uint64_t sent = 0;

	for (int k = 0; k < OPEN_LOOP_HANDLES; k++) {
		memset(&lanes[k], 0, sizeof lanes[k]);
		lanes[k].run = run;
		lanes[k].idx = k;
		if (pthread_create(&tids[k], NULL, open_loop_main, &lanes[k]))
			break;
		started++;
	}
	for (int k = 0; k < started; k++) {
		pthread_join(tids[k], NULL);
		for (size_t j = 0; j < 2048; j++)
			res->confirm.counts[j] += lanes[k].confirm.counts[j];
		res->confirm.n += lanes[k].confirm.n;
		sent += lanes[k].sent;
		if (lanes[k].error[0] && !res->error[0])
			snprintf(res->error, sizeof res->error, "%s",
				 lanes[k].error);
	}
	if (started < OPEN_LOOP_HANDLES && !res->error[0])
		snprintf(res->error, sizeof res->error,
			 "pthread_create failed");
	/* Producers that fell behind the schedule sent late: the rate is
	 * then below 1,000/s. */
	double elapsed = (double)(peer_mono_ns() - run->start) / 1e9;
	if (elapsed < run->a->duration_s)
		elapsed = run->a->duration_s;
	res->count = sent;
	res->rate = (double)sent / elapsed;
	run->cons.expect = sent;
	return res->error[0] ? -1 : 0;
}

int main(int argc, char **argv)
{
	struct peer_args a = { .name = "handoff" };
	static struct peer_result res;
	static struct run run;
	handoff_policy pol = { .ack_deadline_ms = 30000 };
	handoff_client *c = NULL;
	pthread_t consumer;
	int consuming, rc;

	if (peer_parse_args(&a, argc, argv) != 0)
		return 2;
	run.a = &a;
	snprintf(run.topic, sizeof run.topic, "hbench-%ld-%s", (long)getpid(),
		 peer_workload_name(a.workload));
	snprintf(run.sub, sizeof run.sub, "%s-sub", run.topic);
	consuming = a.workload == PEER_E2E || a.workload == PEER_LAT1K;

	if (open_handle(&a, &c, res.error, sizeof res.error) != 0)
		return peer_report(&a, &res);
	/* Publishing needs a subscription, so every workload has one. */
	rc = handoff_subscribe(c, run.topic, run.sub, &pol, NULL, NULL);
	if (rc != HANDOFF_OK) {
		call_error(res.error, sizeof res.error, "subscribe", c, rc);
		handoff_close(c);
		return peer_report(&a, &res);
	}

	run.start = peer_mono_ns();
	run.deadline = run.start + (uint64_t)(a.duration_s * 1e9);
	if (consuming &&
	    pthread_create(&consumer, NULL, consumer_main, &run) != 0) {
		snprintf(res.error, sizeof res.error, "pthread_create failed");
		consuming = 0;
		rc = -1;
	} else {
		switch (a.workload) {
		case PEER_W256:
			rc = produce_batches(c, &run, &res, BATCH, 1);
			break;
		case PEER_W1:
			rc = produce_batches(c, &run, &res, 1, 1);
			break;
		case PEER_E2E:
			rc = produce_batches(c, &run, &res, BATCH, 0);
			break;
		case PEER_LAT1K:
		default:
			rc = produce_open_loop(&run, &res);
			break;
		}
	}
	atomic_store(&run.cons.stop, 1);
	if (consuming) {
		pthread_join(consumer, NULL);
		peer_consumer_result(&a, &run.cons, rc, "acked", &res);
	}
	/* Unsubscribing drops whatever is left; a big backlog takes time. */
	handoff_set_deadline(c, 120000);
	rc = handoff_unsubscribe(c, run.sub);
	if (rc != HANDOFF_OK)
		fprintf(stderr, "peer-handoff: unsubscribe %s: %s\n", run.sub,
			handoff_strerror(rc));
	handoff_close(c);
	return peer_report(&a, &res);
}
