/*
 * neighbour.c — the neighbour scenario: a subscription whose consumers are
 * absent, fail every delivery or are slow must not slow a healthy
 * subscription of the same topic.
 *
 * Topic T has the healthy subscription H: 4 consumers fetch 250 and ack
 * each fetch in one request (as e2e-batched). 4 producers publish
 * 100-event requests in a closed loop and wait while H has more than 1,400
 * events unacked (one round of publishes and fetches), so the load offered
 * is what H sustains and H's acks/s is H's capacity beside the neighbour.
 * Only H's acks hold the producers back: a neighbour that never consumes
 * cannot stop them. The second subscription N on T is the neighbour; each
 * phase gives N's consumers (as many as H's, fetching as many) one
 * behaviour:
 *
 *   alone     no N at all
 *   healthy   fetch 250 and ack each fetch, as H's consumers do
 *   absent    N exists and nobody consumes it: its backlog grows
 *   failing   nack every delivery as fast as they can; N's policy retries
 *             after 1-10 ms for up to 10,000 attempts, so nothing is
 *             dead-lettered and N's consumers never run dry (they lag the
 *             producers: most of their fetches are first attempts, the
 *             retries queue behind older events not yet tried)
 *   slow      hold each fetch until 10% of N's 2 s ack deadline is left,
 *             then ack
 *   expiring  hold each fetch past that deadline and drop it: the broker
 *             expires the leases and redelivers them 1-10 ms later
 *
 * The ratio compares H beside a misbehaving N with H beside a healthy N,
 * not with H alone. A second subscription on T doubles what every publish
 * writes (one delivery per subscription), and once consumed it adds a
 * fetch and an ack per event to the broker's work: H alone is faster than
 * H beside any neighbour, however well it behaves, and that fan-out cost is
 * not the neighbour slowing H. Healthy and misbehaving phases have the same
 * topic, subscriptions, producers, number of client threads and load
 * rule; only what N's consumers do differs, so the ratio isolates that.
 * alone is reported as healthy/alone, the fan-out cost, for information.
 *
 * The order is alone, then per round healthy, absent, healthy, failing,
 * healthy, slow, healthy, expiring, and a last healthy: every misbehaving
 * phase has a healthy one just before and just after it, and its ratio is
 * over their mean. On a shared machine the load of other processes drifts
 * by tens of percent within a minute; a baseline measured seconds away on
 * both sides cancels most of that drift, where one measured at the start
 * of the run does not. --neighbour-rounds repeats the rounds; a behaviour's
 * figure is then the median of its ratios, shown with their range, and the
 * spread of all healthy phases is printed as the run's noise.
 *
 * Each phase runs on a broker of its own (a folder in the work folder,
 * stopped and removed after), so none inherits another's backlog, leases,
 * log or database size. H is measured after a warm-up (a fifth of the
 * phase, at most 1 s): the acks confirmed in the window over its length,
 * and the publish -> fetch latency of first deliveries fetched in it.
 *
 * The push cases (after the native ones; --neighbour-cases picks) make H
 * and N push subscriptions (concurrency 16 each) to receivers started
 * here, so handoffd's push thread is both consumers; H's receiver answers
 * 204 at once and N's endpoint is, per phase:
 *
 *   push-healthy  a receiver answering 204 at once (the baseline)
 *   push-dead     a closed port: every connection refused (N probes)
 *   push-slow     a receiver answering 204 after 800 ms, 80% of N's 1 s
 *                 push timeout
 *   push-failing  a receiver answering 500 at once; N's policy retries
 *                 after 1-10 ms for up to 10,000 attempts (as failing)
 *
 * in the order push-healthy, dead, push-healthy, slow, push-healthy,
 * failing, push-healthy per round. H's figure is the POSTs its receiver
 * got in the window (its "acks"), and the producers wait while more than
 * the cap are published and not yet received by it.
 *
 * Every call has the client's 10 s deadline, every loop ends at the
 * phase's end, and the first error stops the phase's threads and fails the
 * scenario, naming the phase.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <handoff.h>

#include "bench.h"

#define CALL_DEADLINE_MS    10000
#define FETCH_WAIT_MS	    100
#define H_ACK_DEADLINE_MS   30000 /* as the other scenarios */
#define N_SLOW_DEADLINE_MS  2000  /* slow and expiring neighbours */
#define N_SLOW_MARGIN_MS    200	  /* slow: ack with this much left */
#define N_EXPIRE_AFTER_MS   100	  /* expiring: drop this long after */
#define N_CHURN_ATTEMPTS    10000 /* the broker's most */
#define N_CHURN_BACKOFF_MIN 1
#define N_CHURN_BACKOFF_MAX 10
#define LEASE_MAX_BATCH	    1000 /* the phase brokers' max_batch */
#define WATCH_NS	    50000000ULL
#define HOLD_SLICE_NS	    20000000ULL /* a holding consumer's nap */
#define BACKLOG_POLL_NS	    100000ULL
#define START_DELAY_NS	    20000000ULL
#define WARMUP_MAX_S	    1.0
#define WARMUP_SHARE	    0.2
#define NACK_REASON	    "handoff-bench: this neighbour fails every delivery"
#define PUSH_CONCURRENCY    16	 /* H's and N's in the push cases */
#define N_PUSH_TIMEOUT_MS   1000 /* N's push timeout in the push cases */
#define N_PUSH_SLOW_MS	    800	 /* push-slow: 80% of it */
#define N_PUSH_FAIL_STATUS  500

enum nb_kind {
	NB_ALONE,	 /* no N */
	NB_HEALTHY,	 /* fetch, ack */
	NB_ABSENT,	 /* N, no consumer */
	NB_FAILING,	 /* fetch, nack */
	NB_SLOW,	 /* fetch, hold to near the deadline, ack */
	NB_EXPIRING,	 /* fetch, hold past the deadline, drop */
	NB_PUSH_HEALTHY, /* push: N's endpoint answers 204 at once */
	NB_PUSH_DEAD,	 /* push: connection refused */
	NB_PUSH_SLOW,	 /* push: 204 after 80% of N's push timeout */
	NB_PUSH_FAILING, /* push: 500 at once */
};

struct nb_def {
	const char *name;
	enum nb_kind kind;
	const char *what;
};

static const struct nb_def nb_alone = { "alone", NB_ALONE,
					"no neighbour subscription" };
static const struct nb_def nb_healthy = { "healthy", NB_HEALTHY,
					  "fetch, ack each fetch (as H's)" };
static const struct nb_def nb_push_healthy = {
	"push-healthy", NB_PUSH_HEALTHY,
	"push: N's endpoint answers 204 at once (as H's)"
};
/* in the order run, each after a healthy (push: push-healthy) phase */
static const struct nb_def nb_bad[] = {
	{ "absent", NB_ABSENT, "none: N's backlog grows" },
	{ "failing", NB_FAILING,
	  "fetch, nack every delivery (retry in 1-10 ms, 10000 attempts)" },
	{ "slow", NB_SLOW,
	  "fetch, hold to 200 ms before the 2 s ack deadline, ack" },
	{ "expiring", NB_EXPIRING,
	  "fetch, hold past the 2 s ack deadline, drop (retry in 1-10 ms)" },
	{ "push-dead", NB_PUSH_DEAD,
	  "push: N's endpoint is a closed port (connection refused)" },
	{ "push-slow", NB_PUSH_SLOW,
	  "push: N's endpoint answers 204 after 800 ms of its 1 s timeout" },
	{ "push-failing", NB_PUSH_FAILING,
	  "push: N's endpoint answers 500 (retry in 1-10 ms, 10000 "
	  "attempts)" },
};
#define N_BAD_NATIVE 4 /* the first ones; then the push cases */
#define N_BAD	     (int)(sizeof nb_bad / sizeof nb_bad[0])
_Static_assert(sizeof nb_bad / sizeof nb_bad[0] == NEIGHBOUR_BEHAVIOURS,
	       "struct neighbour_result sizes for these behaviours");

enum nb_role { ROLE_PRODUCER, ROLE_H, ROLE_N };

struct nb_shared {
	const struct bench_ctx *ctx;
	const struct scen_params *p;
	const struct nb_def *def;
	const char *url, *topic, *h_sub, *n_sub;

	pthread_mutex_t mu;
	pthread_cond_t cond;
	int ready;
	bool go;
	uint64_t t_start, t_meas, t_end;

	atomic_bool stop;
	atomic_int running;
	_Atomic uint64_t published, h_acked;
	struct push_receiver *rx_h; /* push cases: H's receiver; else NULL */
	char error[BENCH_ERR_LEN];
};

struct nb_worker {
	struct nb_shared *sh;
	enum nb_role role;
	int idx;
	pthread_t th;
	struct hist confirm, deliver;
	uint64_t published;  /* producer: events confirmed */
	uint64_t h_window;   /* H: acks OK confirmed in the window */
	uint64_t lease_lost; /* H: acks answered lease lost / not found */
	uint64_t n_requests; /* N: calls */
	double cpu_s;	     /* this thread, go -> done */
};

static void nb_fail(struct nb_shared *sh, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void nb_fail(struct nb_shared *sh, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bench_first_error(&sh->mu, sh->error, sizeof sh->error, &sh->stop, fmt,
			  ap);
	va_end(ap);
}

static bool nb_stopping(struct nb_shared *sh)
{
	return atomic_load(&sh->stop) || bench_interrupted;
}

static bool nb_over(struct nb_shared *sh)
{
	return nb_stopping(sh) || bench_now_ns() >= sh->t_end;
}

static double thread_cpu_s(void)
{
	struct timespec t;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) != 0)
		return 0;
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- the threads --------------------------------------------------------- */

static void producer(struct nb_worker *w, handoff_client *c)
{
	struct nb_shared *sh = w->sh;
	size_t n = (size_t)sh->p->batch;
	uint32_t payload = sh->ctx->payload;
	struct bench_batch pb;
	int64_t cap = sh->p->backlog;
	char msg[BENCH_ERR_LEN - 64];

	if (bench_batch_init(&pb, n, payload, 'n')) {
		nb_fail(sh, "producer %d: out of memory", w->idx);
		goto cleanup;
	}
	while (!nb_over(sh)) {
		/* H's unacked only: N's backlog must not hold producers
		 * (push: H's events not yet received) */
		while ((int64_t)(atomic_load(&sh->published) -
				 (sh->rx_h ? atomic_load(&sh->rx_h->received) :
					     atomic_load(&sh->h_acked))) >
		       cap) {
			if (nb_over(sh))
				goto cleanup;
			bench_sleep_ns(BACKLOG_POLL_NS);
		}
		if (payload >= 8) {
			uint64_t st = bench_realtime_ns();
			memcpy(pb.buf, &st, sizeof st);
		}
		uint64_t a = bench_now_ns();
		int rc = handoff_publish(c, sh->topic, pb.ev, n, pb.ids, NULL);
		uint64_t z = bench_now_ns();
		if (rc != HANDOFF_OK) {
			nb_fail(sh, "producer %d: publish: %s", w->idx,
				bench_call_text(c, rc, msg, sizeof msg));
			break;
		}
		if (a >= sh->t_meas && z <= sh->t_end)
			hist_add(&w->confirm, z - a);
		w->published += n;
		atomic_fetch_add(&sh->published, (uint64_t)n);
	}
cleanup:
	bench_batch_free(&pb);
}

/* H: fetch, ack each fetch in one request; counts what the window saw. */
static void h_consumer(struct nb_worker *w, handoff_client *c)
{
	struct nb_shared *sh = w->sh;
	size_t max = (size_t)sh->p->fetch_batch;
	handoff_ack_item *items = calloc(max, sizeof *items);
	int *res = calloc(max, sizeof *res);
	char msg[BENCH_ERR_LEN - 64];

	if (items == NULL || res == NULL) {
		nb_fail(sh, "H consumer %d: out of memory", w->idx);
		goto cleanup;
	}
	while (!nb_over(sh)) {
		handoff_delivery *d = NULL;
		size_t n = 0;
		int rc =
			handoff_fetch(c, sh->h_sub, max, FETCH_WAIT_MS, &d, &n);
		if (rc != HANDOFF_OK) {
			nb_fail(sh, "H consumer %d: fetch: %s", w->idx,
				bench_call_text(c, rc, msg, sizeof msg));
			break;
		}
		uint64_t rt = bench_realtime_ns(), mono = bench_now_ns();
		bool in_window = mono >= sh->t_meas && mono <= sh->t_end;
		size_t m = n < max ? n : max;
		for (size_t i = 0; i < m; i++) {
			if (in_window && d[i].attempt == 1 &&
			    d[i].payload_len >= 8) {
				uint64_t st;
				memcpy(&st, d[i].payload, sizeof st);
				hist_add(&w->deliver, rt > st ? rt - st : 0);
			}
			items[i].event_id = d[i].event_id;
			items[i].lease_token = d[i].lease_token;
		}
		handoff_deliveries_free(d, n);
		if (m == 0)
			continue;
		rc = handoff_ack(c, sh->h_sub, items, m, res);
		uint64_t z = bench_now_ns();
		if (rc != HANDOFF_OK) {
			nb_fail(sh, "H consumer %d: ack: %s", w->idx,
				bench_call_text(c, rc, msg, sizeof msg));
			break;
		}
		uint64_t ok = bench_acks_ok(res, m, &w->lease_lost);
		atomic_fetch_add(&sh->h_acked, ok);
		if (z >= sh->t_meas && z <= sh->t_end)
			w->h_window += ok;
	}
cleanup:
	free(items);
	free(res);
}

/* Sleep until the CLOCK_REALTIME ns until_rt (the broker's lease deadlines
 * are unix ms of the same host); false when the phase ended first. */
static bool hold_until(struct nb_shared *sh, uint64_t until_rt)
{
	for (;;) {
		if (nb_over(sh))
			return false;
		uint64_t now = bench_realtime_ns();
		if (now >= until_rt)
			return true;
		uint64_t left = until_rt - now;
		uint64_t to_end = sh->t_end - bench_now_ns();
		if (left > to_end)
			left = to_end;
		bench_sleep_ns(left < HOLD_SLICE_NS ? left : HOLD_SLICE_NS);
	}
}

/* N: what the phase says. Its results are the broker's counters, read at
 * the end; only failures to talk to the broker stop it. */
static void n_consumer(struct nb_worker *w, handoff_client *c)
{
	struct nb_shared *sh = w->sh;
	enum nb_kind kind = sh->def->kind;
	size_t max = (size_t)sh->p->fetch_batch;
	handoff_ack_item *items = calloc(max, sizeof *items);
	handoff_nack_item *nitems = calloc(max, sizeof *nitems);
	int *res = calloc(max, sizeof *res);
	char msg[BENCH_ERR_LEN - 64];

	if (items == NULL || nitems == NULL || res == NULL) {
		nb_fail(sh, "N consumer %d: out of memory", w->idx);
		goto cleanup;
	}
	while (!nb_over(sh)) {
		handoff_delivery *d = NULL;
		size_t n = 0;
		int rc =
			handoff_fetch(c, sh->n_sub, max, FETCH_WAIT_MS, &d, &n);
		w->n_requests++;
		if (rc != HANDOFF_OK) {
			nb_fail(sh, "N consumer %d (%s): fetch: %s", w->idx,
				sh->def->name,
				bench_call_text(c, rc, msg, sizeof msg));
			break;
		}
		size_t m = n < max ? n : max;
		uint64_t first_deadline = UINT64_MAX, last_deadline = 0;
		for (size_t i = 0; i < m; i++) {
			items[i].event_id = d[i].event_id;
			items[i].lease_token = d[i].lease_token;
			nitems[i] = (handoff_nack_item){
				.event_id = d[i].event_id,
				.lease_token = d[i].lease_token,
				.reason = NACK_REASON,
			};
			if (d[i].lease_deadline_ms < first_deadline)
				first_deadline = d[i].lease_deadline_ms;
			if (d[i].lease_deadline_ms > last_deadline)
				last_deadline = d[i].lease_deadline_ms;
		}
		handoff_deliveries_free(d, n);
		if (m == 0)
			continue;
		switch (kind) {
		case NB_FAILING:
			rc = handoff_nack(c, sh->n_sub, nitems, m, res);
			w->n_requests++;
			break;
		case NB_SLOW:
			/* the phase may end first: then the leases stay */
			if (!hold_until(sh,
					(first_deadline - N_SLOW_MARGIN_MS) *
						1000000ULL))
				goto cleanup;
			rc = handoff_ack(c, sh->n_sub, items, m, res);
			w->n_requests++;
			break;
		case NB_HEALTHY:
			rc = handoff_ack(c, sh->n_sub, items, m, res);
			w->n_requests++;
			break;
		case NB_EXPIRING:
			if (!hold_until(sh,
					(last_deadline + N_EXPIRE_AFTER_MS) *
						1000000ULL))
				goto cleanup;
			rc = HANDOFF_OK; /* dropped: the broker expires them */
			break;
		default:
			rc = HANDOFF_OK;
			break;
		}
		if (rc != HANDOFF_OK) {
			nb_fail(sh, "N consumer %d (%s): %s: %s", w->idx,
				sh->def->name,
				kind == NB_FAILING ? "nack" : "ack",
				bench_call_text(c, rc, msg, sizeof msg));
			break;
		}
	}
cleanup:
	free(items);
	free(nitems);
	free(res);
}

static void *worker_main(void *arg)
{
	struct nb_worker *w = arg;
	struct nb_shared *sh = w->sh;
	handoff_client *c = NULL;
	char name[64], msg[BENCH_ERR_LEN - 64];
	static const char *const role_tag[] = { "p", "h", "n" };

	snprintf(name, sizeof name, "bench-%s%d", role_tag[w->role], w->idx);
	int rc = bench_client_open(sh->url, name, CALL_DEADLINE_MS, &c);
	if (rc != HANDOFF_OK)
		nb_fail(sh, "%s: connect %s: %s", name, sh->url,
			bench_call_text(NULL, rc, msg, sizeof msg));

	pthread_mutex_lock(&sh->mu);
	sh->ready++;
	pthread_cond_broadcast(&sh->cond);
	while (!sh->go)
		pthread_cond_wait(&sh->cond, &sh->mu);
	pthread_mutex_unlock(&sh->mu);

	double cpu0 = thread_cpu_s();
	if (c != NULL && !nb_stopping(sh)) {
		if (sh->t_start > bench_now_ns())
			bench_sleep_until(sh->t_start);
		switch (w->role) {
		case ROLE_PRODUCER:
			producer(w, c);
			break;
		case ROLE_H:
			h_consumer(w, c);
			break;
		case ROLE_N:
			n_consumer(w, c);
			break;
		}
	}
	w->cpu_s = thread_cpu_s() - cpu0;
	handoff_close(c);
	atomic_fetch_sub(&sh->running, 1);
	return NULL;
}

/* ---- one phase ------------------------------------------------------------ */

/* The broker's counters for H and N at the end of the phase. */
static void phase_counters(handoff_client *admin, const char *h_sub,
			   const char *n_sub, struct neighbour_phase *ph,
			   uint64_t *h_broker_acked)
{
	handoff_stats *st = NULL;

	*h_broker_acked = UINT64_MAX;
	if (admin == NULL || handoff_get_stats(admin, &st) != HANDOFF_OK)
		return;
	for (size_t i = 0; i < st->n_subscriptions; i++) {
		const handoff_subscription_stats *s = &st->subscriptions[i];
		if (strcmp(s->name, h_sub) == 0)
			*h_broker_acked = s->acked;
		if (n_sub == NULL || strcmp(s->name, n_sub) != 0)
			continue;
		ph->n_delivered = s->delivered;
		ph->n_acked = s->acked;
		ph->n_nacked = s->nacked;
		ph->n_expired = s->expired;
		ph->n_backlog = s->ready + s->delayed + s->leased;
	}
	handoff_stats_free(st);
}

/* A push subscription of topic to 127.0.0.1:port (timeout_ms 0: the
 * broker's default). */
static int subscribe_push(handoff_client *admin, const char *topic,
			  const char *sub, const handoff_policy *pol,
			  unsigned port, uint32_t timeout_ms, char *err,
			  size_t errlen)
{
	char url[64], msg[BENCH_ERR_LEN - 64];

	snprintf(url, sizeof url, "http://127.0.0.1:%u/bench-hook", port);
	handoff_push_config push = { .url = url,
				     .timeout_ms = timeout_ms,
				     .concurrency = PUSH_CONCURRENCY };
	int rc = handoff_subscribe_push(admin, topic, sub, pol, &push, NULL,
					NULL);
	if (rc != HANDOFF_OK) {
		bench_errf(err, errlen, "subscribe %s --push %s: %s", sub, url,
			   bench_call_text(admin, rc, msg, sizeof msg));
		return -1;
	}
	return 0;
}

/* The push cases' endpoints: H's receiver, and N's as the phase says (a
 * receiver, or a port where nothing listens); *n_port is N's. */
static int push_endpoints(const struct nb_def *def, struct push_receiver *rx_h,
			  struct push_receiver *rx_n, int *dead_fd,
			  unsigned *n_port, char *err, size_t errlen)
{
	struct push_receiver_opts o = { .threads = 1 };

	if (push_receiver_start(rx_h, &o, err, errlen))
		return -1;
	if (def->kind == NB_PUSH_DEAD)
		return dead_port_open(dead_fd, n_port, err, errlen);
	if (def->kind == NB_PUSH_SLOW)
		o.delay_ms = N_PUSH_SLOW_MS;
	if (def->kind == NB_PUSH_FAILING)
		o.status = N_PUSH_FAIL_STATUS;
	if (push_receiver_start(rx_n, &o, err, errlen))
		return -1;
	*n_port = rx_n->port;
	return 0;
}

/*
 * Run phase i on a broker of its own in ctx->workdir: subscribe, start the
 * threads, go, wait, collect. confirm/deliver get H's window histograms;
 * *note gets a discrepancy worth reporting.
 */
static int phase_run(const struct bench_ctx *ctx, const struct scen_params *p,
		     const struct nb_def *def, int i,
		     struct neighbour_phase *ph, struct hist *confirm,
		     struct hist *deliver, uint64_t *rss_peak_kb, char *note,
		     size_t notelen, char *err, size_t errlen)
{
	bool with_n = def->kind != NB_ALONE;
	bool push = def->kind >= NB_PUSH_HEALTHY;
	int h_consumers = push ? 0 : p->consumers;
	int n_consumers =
		push || def->kind == NB_ALONE || def->kind == NB_ABSENT ?
			0 :
			p->consumers;
	struct push_receiver rx_h, rx_n;
	int dead_fd = -1;
	unsigned n_port = 0;
	struct broker b;
	struct nb_shared sh;
	struct nb_worker *w = NULL;
	handoff_client *admin = NULL;
	char dir[BENCH_PATH_LEN], topic[128], h_sub[160], n_sub[160];
	char msg[BENCH_ERR_LEN - 64];
	bool spawned = false, sync_init = false;
	int nthreads = 0, started = 0, ret = -1;

	memset(&b, 0, sizeof b);
	memset(&sh, 0, sizeof sh);
	memset(&rx_h, 0, sizeof rx_h);
	memset(&rx_n, 0, sizeof rx_n);
	ph->name = def->name;
	ph->what = def->what;
	ph->baseline = def->kind == NB_HEALTHY || def->kind == NB_PUSH_HEALTHY;
	ph->push = push;
	ph->broker_cpu_s = -1;

	int len = snprintf(dir, sizeof dir, "%s/neighbour-%d-%s", ctx->workdir,
			   i + 1, def->name);
	if (len < 0 || (size_t)len >= sizeof dir) {
		bench_errf(err, errlen, "work folder path too long");
		return -1;
	}
	if (broker_spawn_own(&b, ctx->exe, dir, LEASE_MAX_BATCH, ctx->payload,
			     err, errlen))
		return -1;
	spawned = true;

	snprintf(topic, sizeof topic, "bench.%d.%d.neighbour-%d-%s",
		 ctx->run_id, ctx->index, i + 1, def->name);
	snprintf(h_sub, sizeof h_sub, "%s.h", topic);
	snprintf(n_sub, sizeof n_sub, "%s.n", topic);
	int rc = bench_client_open(b.proc.url, "bench-admin", CALL_DEADLINE_MS,
				   &admin);
	if (rc != HANDOFF_OK) {
		bench_errf(err, errlen, "connect %s: %s", b.proc.url,
			   handoff_strerror(rc));
		goto cleanup;
	}
	handoff_policy h_pol = { .ack_deadline_ms = H_ACK_DEADLINE_MS };
	handoff_policy n_pol = h_pol;
	if (def->kind == NB_FAILING || def->kind == NB_EXPIRING ||
	    def->kind == NB_PUSH_DEAD || def->kind == NB_PUSH_FAILING) {
		/* keeps churning: short backoff, no dead-lettering */
		n_pol.max_attempts = N_CHURN_ATTEMPTS;
		n_pol.backoff_min_ms = N_CHURN_BACKOFF_MIN;
		n_pol.backoff_max_ms = N_CHURN_BACKOFF_MAX;
	}
	if (def->kind == NB_SLOW || def->kind == NB_EXPIRING)
		n_pol.ack_deadline_ms = N_SLOW_DEADLINE_MS;
	if (push) {
		if (push_endpoints(def, &rx_h, &rx_n, &dead_fd, &n_port, err,
				   errlen) ||
		    subscribe_push(admin, topic, h_sub, &h_pol, rx_h.port, 0,
				   err, errlen) ||
		    subscribe_push(admin, topic, n_sub, &n_pol, n_port,
				   N_PUSH_TIMEOUT_MS, err, errlen))
			goto cleanup;
		sh.rx_h = &rx_h;
	} else {
		if (bench_subscribe(admin, topic, h_sub, &h_pol, err, errlen))
			goto cleanup;
		if (with_n &&
		    bench_subscribe(admin, topic, n_sub, &n_pol, err, errlen))
			goto cleanup;
	}

	sh.ctx = ctx;
	sh.p = p;
	sh.def = def;
	sh.url = b.proc.url;
	sh.topic = topic;
	sh.h_sub = h_sub;
	sh.n_sub = n_sub;
	if (pthread_mutex_init(&sh.mu, NULL) != 0) {
		bench_errf(err, errlen, "pthread_mutex_init failed");
		goto cleanup;
	}
	if (pthread_cond_init(&sh.cond, NULL) != 0) {
		pthread_mutex_destroy(&sh.mu);
		bench_errf(err, errlen, "pthread_cond_init failed");
		goto cleanup;
	}
	sync_init = true;
	atomic_store(&sh.stop, false);

	nthreads = p->producers + h_consumers + n_consumers;
	w = calloc((size_t)nthreads, sizeof *w);
	if (w == NULL) {
		bench_errf(err, errlen, "out of memory");
		goto cleanup;
	}
	broker_take_rss_peak(&b);
	for (int k = 0; k < nthreads; k++) {
		w[k].sh = &sh;
		if (k < p->producers) {
			w[k].role = ROLE_PRODUCER;
			w[k].idx = k;
		} else if (k < p->producers + h_consumers) {
			w[k].role = ROLE_H;
			w[k].idx = k - p->producers;
		} else {
			w[k].role = ROLE_N;
			w[k].idx = k - p->producers - h_consumers;
		}
		hist_init(&w[k].confirm);
		hist_init(&w[k].deliver);
		atomic_fetch_add(&sh.running, 1);
		if (pthread_create(&w[k].th, NULL, worker_main, &w[k]) != 0) {
			atomic_fetch_sub(&sh.running, 1);
			nb_fail(&sh, "cannot start thread %d", k);
			break;
		}
		started++;
	}

	/* all connected (or failed): set the clock and go */
	double warm = ctx->duration_s * WARMUP_SHARE;
	if (warm > WARMUP_MAX_S)
		warm = WARMUP_MAX_S;
	pthread_mutex_lock(&sh.mu);
	while (sh.ready < started)
		pthread_cond_wait(&sh.cond, &sh.mu);
	double cpu_b0 = broker_cpu_seconds(&b);
	sh.t_start = bench_now_ns() + START_DELAY_NS;
	sh.t_meas = sh.t_start + (uint64_t)(warm * 1e9);
	sh.t_end = sh.t_start + (uint64_t)(ctx->duration_s * 1e9);
	sh.go = true;
	pthread_cond_broadcast(&sh.cond);
	pthread_mutex_unlock(&sh.mu);

	/* watch: the broker may die; a signal may ask us to stop. Push
	 * cases: H's receiver's count at the window's start and end */
	uint64_t rx_meas = 0, rx_end = 0;
	bool got_meas = false, got_end = false;
	while (atomic_load(&sh.running) > 0) {
		uint64_t now = bench_now_ns(), nap = WATCH_NS;
		if (push && !got_meas && now >= sh.t_meas) {
			rx_meas = atomic_load(&rx_h.received);
			got_meas = true;
		}
		if (push && !got_end && now >= sh.t_end) {
			rx_end = atomic_load(&rx_h.received);
			got_end = true;
		}
		uint64_t next = !push	  ? 0 :
				!got_meas ? sh.t_meas :
				!got_end  ? sh.t_end :
					    0;
		if (next > now && next - now < nap)
			nap = next - now;
		bench_sleep_ns(nap);
		if (!broker_alive(&b)) {
			broker_exit_text(&b, msg, sizeof msg);
			nb_fail(&sh, "broker exited during the phase (%s)",
				msg);
		}
		if (bench_interrupted)
			nb_fail(&sh, "interrupted");
	}
	uint64_t lease_lost = 0;
	for (int k = 0; k < started; k++) {
		pthread_join(w[k].th, NULL);
		switch (w[k].role) {
		case ROLE_PRODUCER:
			hist_merge(confirm, &w[k].confirm);
			ph->published += w[k].published;
			ph->p_cpu_s += w[k].cpu_s;
			break;
		case ROLE_H:
			hist_merge(deliver, &w[k].deliver);
			ph->h_acked += w[k].h_window;
			lease_lost += w[k].lease_lost;
			ph->h_cpu_s += w[k].cpu_s;
			break;
		case ROLE_N:
			ph->n_requests += w[k].n_requests;
			ph->n_cpu_s += w[k].cpu_s;
			break;
		}
	}
	double cpu_b1 = broker_cpu_seconds(&b);
	ph->broker_cpu_s = cpu_b0 >= 0 && cpu_b1 >= 0 ? cpu_b1 - cpu_b0 : -1;
	if (push) {
		if (!got_end)
			rx_end = atomic_load(&rx_h.received);
		ph->h_acked = got_meas ? rx_end - rx_meas : 0;
		/* the broker's push thread gets refused from here: harmless,
		 * it is stopped next */
		push_receiver_stop(&rx_h);
		push_receiver_stop(&rx_n);
		hist_merge(deliver, &rx_h.deliver);
	}
	ph->window_s = (double)(sh.t_end - sh.t_meas) / 1e9;
	if (ph->window_s > 0)
		ph->h_per_s = (double)ph->h_acked / ph->window_s;
	ph->h_p50_ns = hist_quantile(deliver, 0.50);
	ph->h_p99_ns = hist_quantile(deliver, 0.99);
	ph->confirm_p99_ns = hist_quantile(confirm, 0.99);
	if (sh.error[0]) {
		bench_errf(err, errlen, "%s", sh.error);
		goto cleanup;
	}
	uint64_t h_broker_acked;
	phase_counters(admin, h_sub, with_n ? n_sub : NULL, ph,
		       &h_broker_acked);
	uint64_t h_all = atomic_load(&sh.h_acked);
	if (!push && h_broker_acked != UINT64_MAX && h_broker_acked != h_all &&
	    note[0] == '\0')
		snprintf(note, notelen,
			 "%s: broker counted %llu acks of H, we %llu",
			 def->name, (unsigned long long)h_broker_acked,
			 (unsigned long long)h_all);
	else if (lease_lost && note[0] == '\0')
		snprintf(note, notelen,
			 "%s: %llu acks of H answered lease lost / not found",
			 def->name, (unsigned long long)lease_lost);
	ph->ran = true;
	ret = 0;
cleanup:
	if (sync_init) {
		pthread_cond_destroy(&sh.cond);
		pthread_mutex_destroy(&sh.mu);
	}
	free(w);
	handoff_close(admin);
	if (spawned) {
		uint64_t peak = broker_take_rss_peak(&b);
		if (peak > *rss_peak_kb)
			*rss_peak_kb = peak;
		char path[BENCH_PATH_LEN + 16];
		snprintf(path, sizeof path, "%s/data.mdb", b.proc.data);
		ph->data_bytes = bench_file_size(path);
		bool was_alive = broker_alive(&b);
		broker_stop(&b);
		ph->log_bytes = bench_file_size(b.proc.log);
		if (ret != 0 || !was_alive)
			broker_log_tail(&b, stderr, 20);
		broker_proc_remove_dir(dir);
	}
	push_receiver_stop(&rx_h);
	push_receiver_stop(&rx_n);
	if (dead_fd >= 0)
		close(dead_fd);
	return ret;
}

/* ---- the scenario --------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	if (n <= 0)
		return 0;
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The ratios: healthy and alone over all healthy phases, the others over
 * the healthy phases on either side; then each behaviour's median. */
static void neighbour_ratios(struct neighbour_result *nb)
{
	double sum = 0, psum = 0;
	int n = 0, pn = 0;

	nb->healthy_min = nb->healthy_max = 0;
	nb->push_min = nb->push_max = 0;
	for (int i = 0; i < nb->n; i++) {
		const struct neighbour_phase *ph = &nb->ph[i];
		if (!ph->ran || !ph->baseline)
			continue;
		double *lo = ph->push ? &nb->push_min : &nb->healthy_min;
		double *hi = ph->push ? &nb->push_max : &nb->healthy_max;
		int *k = ph->push ? &pn : &n;
		*(ph->push ? &psum : &sum) += ph->h_per_s;
		if (*k == 0 || ph->h_per_s < *lo)
			*lo = ph->h_per_s;
		if (*k == 0 || ph->h_per_s > *hi)
			*hi = ph->h_per_s;
		(*k)++;
	}
	nb->baseline_per_s = n ? sum / n : 0;
	nb->push_baseline_per_s = pn ? psum / pn : 0;
	for (int i = 0; i < nb->n; i++) {
		struct neighbour_phase *ph = &nb->ph[i];
		double base =
			ph->push ? nb->push_baseline_per_s : nb->baseline_per_s;
		double base_p99 = ph->push ? 0 : (double)nb->baseline_p99_ns;
		ph->ratio = ph->p99_ratio = -1;
		if (!ph->ran)
			continue;
		if (strcmp(ph->name, "alone") == 0)
			nb->alone_per_s = ph->h_per_s;
		if (!ph->baseline && strcmp(ph->name, "alone") != 0) {
			/* by construction baseline phases on both sides */
			const struct neighbour_phase *a = &nb->ph[i - 1];
			const struct neighbour_phase *b =
				i + 1 < nb->n ? &nb->ph[i + 1] : NULL;
			if (i < 1 || !a->ran || b == NULL || !b->ran)
				continue;
			base = (a->h_per_s + b->h_per_s) / 2;
			base_p99 =
				((double)a->h_p99_ns + (double)b->h_p99_ns) / 2;
		}
		if (base > 0)
			ph->ratio = ph->h_per_s / base;
		if (base_p99 > 0)
			ph->p99_ratio = (double)ph->h_p99_ns / base_p99;
	}
	for (int k = 0; k < N_BAD; k++) {
		struct neighbour_summary *s = &nb->beh[k];
		double r[NEIGHBOUR_MAX_ROUNDS], q[NEIGHBOUR_MAX_ROUNDS];
		memset(s, 0, sizeof *s);
		s->name = nb_bad[k].name;
		for (int i = 0; i < nb->n; i++) {
			const struct neighbour_phase *ph = &nb->ph[i];
			/* a ratio of 0 (H stalled) counts; < 0 = none */
			if (strcmp(ph->name, s->name) != 0 || ph->ratio < 0 ||
			    s->n >= NEIGHBOUR_MAX_ROUNDS)
				continue;
			if (s->n == 0 || ph->ratio < s->ratio_min)
				s->ratio_min = ph->ratio;
			if (s->n == 0 || ph->ratio > s->ratio_max)
				s->ratio_max = ph->ratio;
			r[s->n] = ph->ratio;
			q[s->n] = ph->p99_ratio;
			s->n++;
		}
		s->ratio = median(r, s->n);
		s->p99_ratio = median(q, s->n);
	}
}

int neighbour_run(const struct bench_ctx *ctx, struct scen_result *r)
{
	struct neighbour_result *nb = &r->nb;
	const struct scen_params *p = &r->p;
	const struct nb_def *order[NEIGHBOUR_MAX_PHASES];
	struct hist *confirm = NULL, *deliver = NULL;
	char err[BENCH_ERR_LEN - 32] = "";
	int n_order = 0, ret = -1;
	double cpu_s0 = bench_cpu_seconds();
	uint64_t t0 = bench_now_ns();

	r->ran = true;
	int hists = bench_result_hists(r);
	confirm = malloc(sizeof *confirm);
	deliver = malloc(sizeof *deliver);
	if (hists || confirm == NULL || deliver == NULL) {
		bench_errf(err, sizeof err, "out of memory");
		goto out;
	}
	if (!(ctx->exe && ctx->workdir && ctx->workdir[0])) {
		bench_errf(err, sizeof err,
			   "%s needs brokers of its own: run with --spawn",
			   p->name);
		goto out;
	}
	if (p->producers < 1 || p->consumers < 1 || p->batch < 1 ||
	    p->fetch_batch < 1 || p->fetch_batch > LEASE_MAX_BATCH ||
	    p->batch > LEASE_MAX_BATCH || p->backlog < 1) {
		bench_errf(err, sizeof err, "%s: bad shape", p->name);
		goto out;
	}
	nb->rounds = ctx->neighbour_rounds < 1 ? 1 :
		     ctx->neighbour_rounds > NEIGHBOUR_MAX_ROUNDS ?
						 NEIGHBOUR_MAX_ROUNDS :
						 ctx->neighbour_rounds;
	if (ctx->neighbour_cases != NB_CASES_PUSH) {
		order[n_order++] = &nb_alone;
		for (int k = 0; k < nb->rounds; k++) {
			for (int b = 0; b < N_BAD_NATIVE; b++) {
				order[n_order++] = &nb_healthy;
				order[n_order++] = &nb_bad[b];
			}
		}
		order[n_order++] = &nb_healthy;
	}
	if (ctx->neighbour_cases != NB_CASES_NATIVE) {
		for (int k = 0; k < nb->rounds; k++) {
			for (int b = N_BAD_NATIVE; b < N_BAD; b++) {
				order[n_order++] = &nb_push_healthy;
				order[n_order++] = &nb_bad[b];
			}
		}
		order[n_order++] = &nb_push_healthy;
	}

	snprintf(r->topic, sizeof r->topic, "bench.%d.%d.neighbour-*",
		 ctx->run_id, ctx->index);
	nb->warmup_s = ctx->duration_s * WARMUP_SHARE > WARMUP_MAX_S ?
			       WARMUP_MAX_S :
			       ctx->duration_s * WARMUP_SHARE;
	r->broker_cpu_s = 0;
	for (int i = 0; i < n_order && !bench_interrupted; i++) {
		struct neighbour_phase *ph = &nb->ph[nb->n++];
		char e2[BENCH_ERR_LEN - 96];
		hist_init(confirm);
		hist_init(deliver);
		if (ctx->progress)
			fprintf(stderr,
				"handoff-bench:   phase %d/%d: %s (N's "
				"consumers: %s), %.1f s\n",
				i + 1, n_order, order[i]->name, order[i]->what,
				ctx->duration_s);
		int rc = phase_run(ctx, p, order[i], i, ph, confirm, deliver,
				   &r->rss_peak_kb, r->note, sizeof r->note, e2,
				   sizeof e2);
		r->published += ph->published;
		r->acked += ph->h_acked;
		if (ph->broker_cpu_s >= 0 && r->broker_cpu_s >= 0)
			r->broker_cpu_s += ph->broker_cpu_s;
		else
			r->broker_cpu_s = -1;
		if (rc) {
			bench_errf(err, sizeof err, "phase %d (%s): %s", i + 1,
				   order[i]->name, e2);
			goto out;
		}
		if (ctx->progress)
			fprintf(stderr,
				"handoff-bench:   phase %d (%s): H %.0f "
				"acks/s, p99 %.1f ms\n",
				i + 1, ph->name, ph->h_per_s,
				(double)ph->h_p99_ns / 1e6);
		if (order[i]->kind == NB_HEALTHY) {
			hist_merge(r->confirm, confirm);
			hist_merge(r->deliver, deliver);
		}
	}
	if (bench_interrupted) {
		bench_errf(err, sizeof err, "interrupted");
		goto out;
	}
	nb->ran = true;
	ret = 0;
out:
	if (r->deliver != NULL)
		nb->baseline_p99_ns = hist_quantile(r->deliver, 0.99);
	neighbour_ratios(nb);
	r->events_per_s = nb->baseline_per_s > 0 ? nb->baseline_per_s :
						   nb->push_baseline_per_s;
	r->delivered = r->acked;
	r->elapsed_s = (double)(bench_now_ns() - t0) / 1e9;
	r->bench_cpu_s = bench_cpu_seconds() - cpu_s0;
	free(confirm);
	free(deliver);
	if (ret != 0) {
		r->failed = true;
		if (r->error[0] == '\0')
			bench_errf(r->error, sizeof r->error, "%s",
				   err[0] ? err : "failed");
	}
	return ret;
}
