/*
 * scenario.c — one scenario: a fresh topic with its subscriptions,
 * producer and consumer threads (one client handle each, made in the
 * thread), a common start, an end by the clock.
 *
 * Producers publish `batch` events per request. Closed loop: the next
 * request goes when the last is confirmed. Open loop (rate > 0): requests
 * leave on a fixed schedule and latency counts from the scheduled time,
 * so a stall is charged to every request it delayed (no coordinated
 * omission). Each request's payloads carry the CLOCK_REALTIME ns of the
 * send in their first 8 bytes.
 *
 * Consumers fetch up to fetch_batch with a 100 ms long poll, record
 * publish->delivery latency from that stamp, and ack the batch in one
 * request (or each delivery alone with ack_each). With consumers, a
 * backlog cap makes producers wait while more than `backlog` events per
 * consumed subscription are unacked, so the end-to-end rate is one the
 * consumers sustain and delivery latency is not a queue growing for the
 * whole run (without a cap, consumers fall far behind the producers and
 * delivery latency is the age of that queue). The throughput hardly
 * depends on the cap; delivery latency grows with it.
 *
 * HTTP scenarios (p->http) run the same loops over the broker's HTTP API:
 * each producer and consumer thread keeps one HTTP/1.1 connection open
 * (http_client.c), publishes with POST .../events (one event, the body is
 * the payload) or .../events:batch, fetches with POST .../fetch (the same
 * long poll) and acks with POST .../ack. Their payloads are text with the
 * publish stamp in decimal. The topic, subscriptions and the broker's
 * counters are handled natively, as for the other scenarios.
 *
 * The push scenario (p->push_concurrency) has no consumer threads: its
 * subscription is a push subscription to a receiver in this process
 * (push_receiver.c, 127.0.0.1), so handoffd's push thread is the consumer
 * and every 204 the receiver answers acks one event. The backlog cap
 * counts the POSTs received; after the producers stop, the scenario waits
 * for the receiver to get every event published (at most
 * PUSH_DRAIN_LIMIT_S), and events/s is received / (the last POST - the
 * start). Delivery latency is publish stamp -> POST received.
 *
 * Every call has the client's deadline (10 s), every loop ends at the
 * scenario's end time, and the first error stops all threads of the
 * scenario: a dead broker fails the scenario, it does not hang it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <handoff.h>

#include "bench.h"

#define CALL_DEADLINE_MS     10000
#define FETCH_WAIT_MS	     100
#define ACK_DEADLINE_MS	     30000
#define PUSH_RX_THREADS	     1
#define WATCH_NS	     50000000ULL /* main thread's watch interval */
#define BACKLOG_POLL_NS	     100000ULL	 /* producers' wait above the cap */
#define START_DELAY_NS	     20000000ULL
#define MIN_STORED_FOR_RATIO 1000
#define PUSH_DRAIN_LIMIT_S   30

struct shared {
	const struct bench_ctx *ctx;
	const struct scen_params *p;
	const char *topic;
	char (*subs)[256];
	int consumed_subs;
	uint32_t payload;

	pthread_mutex_t mu;
	pthread_cond_t cond;
	int ready;
	bool go;
	uint64_t t_start, t_end;

	atomic_bool stop;
	atomic_int running;
	_Atomic uint64_t published, acked;
	struct push_receiver *rx; /* the push scenario's; else NULL */
	char error[BENCH_ERR_LEN];
};

struct worker {
	struct shared *sh;
	int idx; /* among producers, or among consumers */
	bool consumer;
	pthread_t th;
	struct hist confirm, deliver;
	uint64_t delivered, lease_lost;
	uint64_t t_done;
	uint64_t http_requests, http_connects;
};

static void fail(struct shared *sh, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fail(struct shared *sh, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bench_first_error(&sh->mu, sh->error, sizeof sh->error, &sh->stop, fmt,
			  ap);
	va_end(ap);
}

static bool stopping(struct shared *sh)
{
	return atomic_load(&sh->stop) || bench_interrupted;
}

/* Events acked so far: by consumers, or POSTs the receiver answered. */
static uint64_t acked_count(struct shared *sh)
{
	return sh->rx != NULL ? atomic_load(&sh->rx->received) :
				atomic_load(&sh->acked);
}

/* One HTTP publish of the producer's request: one event (the body is the
 * payload) or an events:batch. 0, or -1 with msg filled. */
static int http_publish(struct bench_http *h, const char *path,
			const struct scen_params *p, char *one,
			struct bench_http_batch *hb, uint32_t payload,
			char *msg, size_t len)
{
	struct bench_http_resp resp;
	uint64_t st = bench_realtime_ns();
	int rc;

	if (p->batch == 1) {
		bench_http_payload_fill(one, payload, st);
		rc = bench_http_call(h, "POST", path,
				     "application/octet-stream", one, payload,
				     &resp, msg, len);
	} else {
		bench_http_batch_stamp(hb, st);
		rc = bench_http_call(h, "POST", path, "application/json",
				     hb->body, hb->len, &resp, msg, len);
	}
	if (rc)
		return -1;
	if (resp.status != 201) {
		bench_http_error_text(&resp, msg, len);
		return -1;
	}
	return 0;
}

static void producer(struct worker *w, handoff_client *c, struct bench_http *h)
{
	struct shared *sh = w->sh;
	const struct scen_params *p = sh->p;
	size_t n = (size_t)p->batch;
	struct bench_batch pb;
	struct bench_http_batch hb;
	char path[512];
	uint64_t interval = 0, next = sh->t_start;
	int64_t cap = (int64_t)p->backlog * sh->consumed_subs;
	char msg[BENCH_ERR_LEN - 64];

	memset(&hb, 0, sizeof hb);
	if (bench_batch_init(&pb, n, sh->payload, 'p') ||
	    (h && n > 1 && bench_http_batch_init(&hb, n, sh->payload))) {
		fail(sh, "producer %d: out of memory", w->idx);
		goto cleanup;
	}
	snprintf(path, sizeof path, "/v1/topics/%s/events%s", sh->topic,
		 n > 1 ? ":batch" : "");
	if (p->rate > 0) {
		double per = p->rate / p->producers; /* events/s */
		interval = (uint64_t)(1e9 * (double)n / per);
		if (interval == 0)
			interval = 1;
		/* spread the producers over one interval */
		next += interval * (uint64_t)w->idx / (uint64_t)p->producers;
	}
	while (!stopping(sh)) {
		uint64_t now = bench_now_ns(), sched = now;
		if (now >= sh->t_end)
			break;
		if (interval) {
			if (next >= sh->t_end)
				break;
			if (next > now)
				bench_sleep_until(next);
			sched = next;
			next += interval;
			if (stopping(sh))
				break;
		}
		if (cap > 0) {
			while ((int64_t)(atomic_load(&sh->published) *
						 (uint64_t)sh->consumed_subs -
					 acked_count(sh)) > cap) {
				if (stopping(sh) || bench_now_ns() >= sh->t_end)
					goto cleanup;
				bench_sleep_ns(BACKLOG_POLL_NS);
			}
		}
		if (h) {
			uint64_t a = bench_now_ns();
			int rc = http_publish(h, path, p, pb.buf, &hb,
					      sh->payload, msg, sizeof msg);
			uint64_t z = bench_now_ns();
			if (rc) {
				fail(sh, "producer %d: HTTP publish: %s",
				     w->idx, msg);
				break;
			}
			hist_add(&w->confirm, z - (interval ? sched : a));
			atomic_fetch_add(&sh->published, (uint64_t)n);
			continue;
		}
		if (sh->payload >= 8) {
			uint64_t st = bench_realtime_ns();
			memcpy(pb.buf, &st, sizeof st);
		}
		uint64_t a = bench_now_ns();
		int rc = handoff_publish(c, sh->topic, pb.ev, n, pb.ids, NULL);
		uint64_t z = bench_now_ns();
		if (rc != HANDOFF_OK) {
			fail(sh, "producer %d: publish: %s", w->idx,
			     bench_call_text(c, rc, msg, sizeof msg));
			break;
		}
		hist_add(&w->confirm, z - (interval ? sched : a));
		atomic_fetch_add(&sh->published, (uint64_t)n);
	}
cleanup:
	bench_batch_free(&pb);
	bench_http_batch_free(&hb);
}

static void consumer(struct worker *w, handoff_client *c)
{
	struct shared *sh = w->sh;
	const struct scen_params *p = sh->p;
	const char *sub = sh->subs[w->idx % sh->consumed_subs];
	size_t max = (size_t)p->fetch_batch;
	handoff_ack_item *items = calloc(max, sizeof *items);
	int *res = calloc(max, sizeof *res);
	char msg[BENCH_ERR_LEN - 64];

	if (items == NULL || res == NULL) {
		fail(sh, "consumer %d: out of memory", w->idx);
		goto cleanup;
	}
	while (!stopping(sh) && bench_now_ns() < sh->t_end) {
		handoff_delivery *d = NULL;
		size_t n = 0;
		int rc = handoff_fetch(c, sub, max, FETCH_WAIT_MS, &d, &n);
		if (rc != HANDOFF_OK) {
			fail(sh, "consumer %d: fetch: %s", w->idx,
			     bench_call_text(c, rc, msg, sizeof msg));
			break;
		}
		uint64_t rt = bench_realtime_ns();
		size_t m = n < max ? n : max;
		for (size_t i = 0; i < m; i++) {
			if (d[i].attempt == 1 && d[i].payload_len >= 8) {
				uint64_t st;
				memcpy(&st, d[i].payload, sizeof st);
				hist_add(&w->deliver, rt > st ? rt - st : 0);
			}
			w->delivered++;
			items[i].event_id = d[i].event_id;
			items[i].lease_token = d[i].lease_token;
		}
		handoff_deliveries_free(d, n);
		if (m == 0)
			continue;
		if (p->ack_each) {
			for (size_t i = 0; i < m && rc == HANDOFF_OK; i++)
				rc = handoff_ack(c, sub, &items[i], 1, &res[i]);
		} else {
			rc = handoff_ack(c, sub, items, m, res);
		}
		if (rc != HANDOFF_OK) {
			fail(sh, "consumer %d: ack: %s", w->idx,
			     bench_call_text(c, rc, msg, sizeof msg));
			break;
		}
		uint64_t ok = bench_acks_ok(res, m, &w->lease_lost);
		atomic_fetch_add(&sh->acked, ok);
	}
cleanup:
	free(items);
	free(res);
}

/* The consumer's loop over HTTP: fetch (long poll), ack the batch. */
static void http_consumer(struct worker *w, struct bench_http *h)
{
	struct shared *sh = w->sh;
	const struct scen_params *p = sh->p;
	const char *sub = sh->subs[w->idx % sh->consumed_subs];
	size_t max = (size_t)p->fetch_batch;
	size_t ack_cap = 64 + max * 64;
	struct bench_http_delivery *d = calloc(max, sizeof *d);
	char *ack = malloc(ack_cap);
	char fetch_path[512], ack_path[512], fetch_body[256];
	char msg[BENCH_ERR_LEN - 64];
	struct bench_http_resp resp;

	if (d == NULL || ack == NULL) {
		fail(sh, "consumer %d: out of memory", w->idx);
		goto cleanup;
	}
	snprintf(fetch_path, sizeof fetch_path, "/v1/subscriptions/%s/fetch",
		 sub);
	snprintf(ack_path, sizeof ack_path, "/v1/subscriptions/%s/ack", sub);
	int fetch_len = snprintf(fetch_body, sizeof fetch_body,
				 "{\"max_events\":%zu,\"wait_ms\":%d,"
				 "\"consumer\":\"bench-c%d\"}",
				 max, FETCH_WAIT_MS, w->idx);
	while (!stopping(sh) && bench_now_ns() < sh->t_end) {
		size_t n = 0;
		if (bench_http_call(h, "POST", fetch_path, "application/json",
				    fetch_body, (size_t)fetch_len, &resp, msg,
				    sizeof msg)) {
			fail(sh, "consumer %d: HTTP fetch: %s", w->idx, msg);
			break;
		}
		if (resp.status != 200) {
			bench_http_error_text(&resp, msg, sizeof msg);
			fail(sh, "consumer %d: HTTP fetch: %s", w->idx, msg);
			break;
		}
		if (bench_http_scan_fetch(resp.body, resp.len, d, max, &n)) {
			fail(sh,
			     "consumer %d: HTTP fetch: not a fetch reply: "
			     "%.100s",
			     w->idx, resp.body);
			break;
		}
		uint64_t rt = bench_realtime_ns();
		for (size_t i = 0; i < n; i++) {
			if (d[i].attempt == 1 && d[i].stamped)
				hist_add(&w->deliver,
					 rt > d[i].stamp ? rt - d[i].stamp : 0);
			w->delivered++;
		}
		if (n == 0)
			continue;
		uint64_t ok = 0, lost = 0;
		for (size_t i = 0; i < n; i += p->ack_each ? 1 : n) {
			size_t k = p->ack_each ? 1 : n;
			uint64_t ok1, lost1;
			int len = bench_http_ack_body(ack, ack_cap, &d[i], k);
			if (len < 0 || bench_http_call(h, "POST", ack_path,
						       "application/json", ack,
						       (size_t)len, &resp, msg,
						       sizeof msg)) {
				fail(sh, "consumer %d: HTTP ack: %s", w->idx,
				     len < 0 ? "body too long" : msg);
				goto cleanup;
			}
			if (resp.status != 200) {
				bench_http_error_text(&resp, msg, sizeof msg);
				fail(sh, "consumer %d: HTTP ack: %s", w->idx,
				     msg);
				goto cleanup;
			}
			if (bench_http_scan_acks(resp.body, resp.len, &ok1,
						 &lost1)) {
				fail(sh,
				     "consumer %d: HTTP ack: not an ack "
				     "reply: %.100s",
				     w->idx, resp.body);
				goto cleanup;
			}
			ok += ok1;
			lost += lost1;
		}
		w->lease_lost += lost;
		atomic_fetch_add(&sh->acked, ok);
	}
cleanup:
	free(d);
	free(ack);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	handoff_client *c = NULL;
	char name[64], msg[BENCH_ERR_LEN - 64];

	struct bench_http http, *h = NULL;

	snprintf(name, sizeof name, "bench-%s%d", w->consumer ? "c" : "p",
		 w->idx);
	if (sh->p->http) {
		/* connected at the first call; resolved here */
		if (sh->ctx->http_port == 0)
			fail(sh, "%s: no HTTP endpoint", name);
		else if (bench_http_open(&http, sh->ctx->http_host,
					 sh->ctx->http_port, CALL_DEADLINE_MS,
					 msg, sizeof msg))
			fail(sh, "%s: %s", name, msg);
		else
			h = &http;
	} else {
		int rc = bench_client_open(sh->ctx->url, name, CALL_DEADLINE_MS,
					   &c);
		if (rc != HANDOFF_OK)
			fail(sh, "%s: connect %s: %s", name, sh->ctx->url,
			     bench_call_text(NULL, rc, msg, sizeof msg));
	}

	pthread_mutex_lock(&sh->mu);
	sh->ready++;
	pthread_cond_broadcast(&sh->cond);
	while (!sh->go)
		pthread_cond_wait(&sh->cond, &sh->mu);
	pthread_mutex_unlock(&sh->mu);

	if (h != NULL && !stopping(sh)) {
		if (w->consumer)
			http_consumer(w, h);
		else
			producer(w, NULL, h);
	} else if (c != NULL && !stopping(sh)) {
		if (w->consumer)
			consumer(w, c);
		else
			producer(w, c, NULL);
	}
	w->t_done = bench_now_ns();
	if (h != NULL) {
		w->http_requests = h->requests;
		w->http_connects = h->connects;
		bench_http_close(h);
	}
	handoff_close(c);
	atomic_fetch_sub(&sh->running, 1);
	return NULL;
}

static void sub_name(char *out, size_t len, const char *topic, int i)
{
	snprintf(out, len, "%s.s%d", topic, i);
}

static int admin_connect(const struct bench_ctx *ctx, handoff_client **c,
			 char *err, size_t errlen)
{
	int rc =
		bench_client_open(ctx->url, "bench-admin", CALL_DEADLINE_MS, c);
	if (rc != HANDOFF_OK) {
		snprintf(err, errlen, "connect %s: %s", ctx->url,
			 handoff_strerror(rc));
		return -1;
	}
	return 0;
}

/* After the run: RssAnon peak, data.mdb size, the broker's counters. */
static void broker_side(const struct bench_ctx *ctx, handoff_client *admin,
			struct scen_result *r)
{
	handoff_stats *st = NULL;
	char path[BENCH_PATH_LEN + 16];
	struct stat sb;

	if (ctx->broker != NULL) {
		r->rss_peak_kb = broker_take_rss_peak(ctx->broker);
		snprintf(path, sizeof path, "%s/data.mdb",
			 ctx->broker->proc.data);
		if (stat(path, &sb) == 0)
			r->data_bytes = (uint64_t)sb.st_size;
		if (!broker_alive(ctx->broker))
			return;
	}
	if (admin == NULL || handoff_get_stats(admin, &st) != HANDOFF_OK)
		return;
	r->events_stored = st->events_stored;
	/* too few stored events (all acked) make the ratio meaningless */
	if (r->data_bytes && r->events_stored >= MIN_STORED_FOR_RATIO)
		r->bytes_per_event =
			(double)r->data_bytes / (double)r->events_stored;
	bool topic_seen = false;
	for (size_t i = 0; i < st->n_topics; i++) {
		if (strcmp(st->topics[i].name, r->topic) == 0) {
			r->broker_published = st->topics[i].published;
			topic_seen = true;
		}
	}
	size_t tl = strlen(r->topic);
	for (size_t i = 0; i < st->n_subscriptions; i++) {
		const char *n = st->subscriptions[i].name;
		if (strncmp(n, r->topic, tl) == 0 && n[tl] == '.')
			r->broker_acked += st->subscriptions[i].acked;
	}
	r->checked = topic_seen;
	handoff_stats_free(st);
}

/* The push scenario's subscription: a push subscription to rx. */
static int subscribe_push(handoff_client *admin, const struct scen_params *p,
			  const char *topic, const char *sub,
			  const handoff_policy *pol,
			  const struct push_receiver *rx, char *err,
			  size_t errlen)
{
	char url[64], msg[BENCH_ERR_LEN - 64];

	snprintf(url, sizeof url, "http://127.0.0.1:%u/bench-hook", rx->port);
	handoff_push_config push = {
		.url = url,
		.concurrency = (uint32_t)p->push_concurrency,
	};
	int rc = handoff_subscribe_push(admin, topic, sub, pol, &push, NULL,
					NULL);
	if (rc != HANDOFF_OK) {
		snprintf(err, errlen, "subscribe %s --push %s: %s", sub, url,
			 bench_call_text(admin, rc, msg, sizeof msg));
		return -1;
	}
	return 0;
}

/* After the producers: wait until the receiver has every event published
 * (a failure or the limit stops the wait; the rate then counts what came). */
static void push_drain(const struct bench_ctx *ctx, struct shared *sh)
{
	uint64_t limit = bench_now_ns() + PUSH_DRAIN_LIMIT_S * 1000000000ULL;
	char msg[BENCH_ERR_LEN - 64];

	while (!stopping(sh) &&
	       atomic_load(&sh->rx->received) < atomic_load(&sh->published)) {
		if (bench_now_ns() >= limit) {
			fail(sh,
			     "push: %llu of %llu events received after %d s "
			     "of waiting",
			     (unsigned long long)atomic_load(&sh->rx->received),
			     (unsigned long long)atomic_load(&sh->published),
			     PUSH_DRAIN_LIMIT_S);
			break;
		}
		if (ctx->broker && !broker_alive(ctx->broker)) {
			broker_exit_text(ctx->broker, msg, sizeof msg);
			fail(sh, "broker exited during the run (%s)", msg);
			break;
		}
		if (bench_interrupted)
			fail(sh, "interrupted");
		bench_sleep_ns(BACKLOG_POLL_NS * 10);
	}
}

int scenario_run(const struct bench_ctx *ctx, struct scen_result *r)
{
	const struct scen_params *p = &r->p;
	bool push = p->push_concurrency > 0;
	struct push_receiver rx;
	struct shared sh;
	struct worker *w = NULL;
	handoff_client *admin = NULL;
	char(*subs)[256] = NULL;
	int nthreads = 0, started = 0, ret = -1;
	bool sync_init = false;
	char msg[BENCH_ERR_LEN - 64];

	memset(&sh, 0, sizeof sh);
	memset(&rx, 0, sizeof rx);
	r->ran = true;
	r->confirm = calloc(1, sizeof *r->confirm);
	r->deliver = calloc(1, sizeof *r->deliver);
	if (r->confirm == NULL || r->deliver == NULL) {
		snprintf(r->error, sizeof r->error, "out of memory");
		goto cleanup;
	}
	if (p->producers < 1 || p->batch < 1 || p->subs < 1 ||
	    p->consumers < 0 || p->fetch_batch < 1) {
		snprintf(r->error, sizeof r->error,
			 "needs producers, batch, fetch batch and "
			 "subscriptions >= 1");
		goto cleanup;
	}
	snprintf(r->topic, sizeof r->topic, "bench.%d.%d.%s", ctx->run_id,
		 ctx->index, p->name);
	subs = calloc((size_t)p->subs, sizeof *subs);
	w = calloc((size_t)(p->producers + p->consumers), sizeof *w);
	if (subs == NULL || w == NULL) {
		snprintf(r->error, sizeof r->error, "out of memory");
		goto cleanup;
	}
	if (ctx->broker && !broker_alive(ctx->broker)) {
		broker_exit_text(ctx->broker, msg, sizeof msg);
		snprintf(r->error, sizeof r->error, "broker not running (%s)",
			 msg);
		goto cleanup;
	}
	if (admin_connect(ctx, &admin, r->error, sizeof r->error))
		goto cleanup;
	if (push && (p->consumers != 0 || p->subs != 1)) {
		snprintf(r->error, sizeof r->error,
			 "push: one subscription, no consumers");
		goto cleanup;
	}
	/* one receiver thread: two (one per core) measured no different
	 * (docs/performance.md, 2026-12-06 03:38) */
	struct push_receiver_opts rxo = { .threads = PUSH_RX_THREADS };
	if (push && push_receiver_start(&rx, &rxo, r->error, sizeof r->error))
		goto cleanup;
	handoff_policy pol = { .ack_deadline_ms = ACK_DEADLINE_MS };
	for (int i = 0; i < p->subs; i++) {
		sub_name(subs[i], sizeof subs[i], r->topic, i);
		if (push) {
			if (subscribe_push(admin, p, r->topic, subs[i], &pol,
					   &rx, r->error, sizeof r->error))
				goto cleanup;
			continue;
		}
		int rc = handoff_subscribe(admin, r->topic, subs[i], &pol, NULL,
					   NULL);
		if (rc != HANDOFF_OK) {
			snprintf(r->error, sizeof r->error, "subscribe %s: %s",
				 subs[i],
				 bench_call_text(admin, rc, msg, sizeof msg));
			goto cleanup;
		}
	}

	sh.ctx = ctx;
	sh.p = p;
	sh.topic = r->topic;
	sh.subs = subs;
	sh.payload = ctx->payload;
	sh.consumed_subs = p->consumers == 0	  ? 0 :
			   p->consumers < p->subs ? p->consumers :
						    p->subs;
	if (push) {
		sh.consumed_subs = 1;
		sh.rx = &rx;
	}
	if (pthread_mutex_init(&sh.mu, NULL) != 0)
		goto cleanup;
	if (pthread_cond_init(&sh.cond, NULL) != 0) {
		pthread_mutex_destroy(&sh.mu);
		goto cleanup;
	}
	sync_init = true;
	atomic_store(&sh.stop, false);

	broker_take_rss_peak(ctx->broker); /* this scenario's peak from here */
	nthreads = p->producers + p->consumers;
	for (int i = 0; i < nthreads; i++) {
		w[i].sh = &sh;
		w[i].consumer = i >= p->producers;
		w[i].idx = w[i].consumer ? i - p->producers : i;
		hist_init(&w[i].confirm);
		hist_init(&w[i].deliver);
		atomic_fetch_add(&sh.running, 1);
		if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0) {
			atomic_fetch_sub(&sh.running, 1);
			fail(&sh, "cannot start thread %d", i);
			break;
		}
		started++;
	}

	/* all connected (or failed): set the clock and go */
	pthread_mutex_lock(&sh.mu);
	while (sh.ready < started)
		pthread_cond_wait(&sh.cond, &sh.mu);
	double cpu_broker0 = broker_cpu_seconds(ctx->broker);
	double cpu_bench0 = bench_cpu_seconds();
	sh.t_start = bench_now_ns() + START_DELAY_NS;
	sh.t_end = sh.t_start + (uint64_t)(ctx->duration_s * 1e9);
	sh.go = true;
	pthread_cond_broadcast(&sh.cond);
	pthread_mutex_unlock(&sh.mu);

	/* watch: the broker may die; a signal may ask us to stop */
	while (atomic_load(&sh.running) > 0) {
		bench_sleep_ns(WATCH_NS);
		if (ctx->broker && !broker_alive(ctx->broker)) {
			broker_exit_text(ctx->broker, msg, sizeof msg);
			fail(&sh, "broker exited during the run (%s)", msg);
		}
		if (bench_interrupted)
			fail(&sh, "interrupted");
	}
	if (push)
		push_drain(ctx, &sh);
	uint64_t t_last = sh.t_start;
	for (int i = 0; i < started; i++) {
		pthread_join(w[i].th, NULL);
		hist_merge(r->confirm, &w[i].confirm);
		hist_merge(r->deliver, &w[i].deliver);
		r->delivered += w[i].delivered;
		r->lease_lost += w[i].lease_lost;
		r->http_requests += w[i].http_requests;
		r->http_connects += w[i].http_connects;
		if (w[i].t_done > t_last)
			t_last = w[i].t_done;
	}
	double cpu_broker1 = broker_cpu_seconds(ctx->broker);
	r->broker_cpu_s = cpu_broker0 >= 0 && cpu_broker1 >= 0 ?
				  cpu_broker1 - cpu_broker0 :
				  -1;
	r->bench_cpu_s = bench_cpu_seconds() - cpu_bench0;
	r->published = atomic_load(&sh.published);
	r->acked = atomic_load(&sh.acked);
	r->elapsed_s = (double)(t_last - sh.t_start) / 1e9;
	if (r->elapsed_s > 0) {
		r->publish_per_s = (double)r->published / r->elapsed_s;
		r->events_per_s = p->consumers > 0 ?
					  (double)r->acked / r->elapsed_s :
					  r->publish_per_s;
	}
	if (push) {
		/* the push subscription goes before the receiver: nothing is
		 * left for the push thread to call */
		handoff_unsubscribe(admin, subs[0]);
		push_receiver_stop(&rx);
		hist_merge(r->deliver, &rx.deliver);
		uint64_t last = atomic_load(&rx.last_ns);
		r->acked = r->delivered = r->push_received =
			atomic_load(&rx.received);
		r->push_connects = atomic_load(&rx.connections);
		r->push_last_s = last > sh.t_start ?
					 (double)(last - sh.t_start) / 1e9 :
					 0;
		r->elapsed_s = r->push_last_s;
		r->events_per_s = r->elapsed_s > 0 ? (double)r->push_received /
							     r->elapsed_s :
						     0;
	}
	broker_side(ctx, admin, r);
	if (sh.error[0]) {
		snprintf(r->error, sizeof r->error, "%s", sh.error);
		goto cleanup;
	}
	if (r->checked && r->broker_published != r->published)
		snprintf(r->note, sizeof r->note,
			 "broker counted %llu published, we %llu",
			 (unsigned long long)r->broker_published,
			 (unsigned long long)r->published);
	else if (r->checked && p->consumers > 0 && r->broker_acked != r->acked)
		snprintf(r->note, sizeof r->note,
			 "broker counted %llu acked, we %llu",
			 (unsigned long long)r->broker_acked,
			 (unsigned long long)r->acked);
	else if (r->lease_lost)
		snprintf(r->note, sizeof r->note,
			 "%llu acks answered lease lost / not found",
			 (unsigned long long)r->lease_lost);
	else if (p->http && r->http_connects > (uint64_t)nthreads)
		snprintf(r->note, sizeof r->note,
			 "%llu HTTP connections for %d threads: the broker "
			 "closed some",
			 (unsigned long long)r->http_connects, nthreads);
	ret = 0;
cleanup:
	push_receiver_stop(&rx);
	if (ret != 0) {
		r->failed = true;
		if (r->error[0] == '\0')
			snprintf(r->error, sizeof r->error, "failed");
	}
	if (sync_init) {
		pthread_cond_destroy(&sh.cond);
		pthread_mutex_destroy(&sh.mu);
	}
	handoff_close(admin);
	free(subs);
	free(w);
	return ret;
}

void scenario_cleanup(const struct bench_ctx *ctx, const struct scen_result *r)
{
	handoff_client *c = NULL;
	char err[BENCH_ERR_LEN], name[300];

	if (!r->ran || r->topic[0] == '\0')
		return;
	if (admin_connect(ctx, &c, err, sizeof err))
		return;
	for (int i = 0; i < r->p.subs; i++) {
		sub_name(name, sizeof name, r->topic, i);
		handoff_unsubscribe(c, name);
	}
	handoff_close(c);
}
