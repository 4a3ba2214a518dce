/*
 * backlog.c — the two scenarios about large backlogs, each on brokers of
 * its own (spawned in folders of the work folder, removed after), so the
 * memory and disk figures are the backlog's alone:
 *
 * backlog   Fill one subscription with 4 producers x 100-event publishes
 *           to N_probe stored events and read the broker's RssAnon, go
 *           on to N and read it again (the ratio should stay near 1: a
 *           backlog lives on disk, not in the broker's heap); then drain
 *           it with 4 consumers fetching 250 and acking each fetch in one
 *           request, and compare the drain's acks/s with the end-to-end
 *           rate on an empty queue (e2e-batched from earlier in the run,
 *           else run here first for --duration on its own topic).
 *
 * restart   Publish a backlog (batched), lease part of it with fetches
 *           (ack deadline 10 min, so the leases are still held), stop the
 *           broker (SIGTERM; also kill -9 with --restart-kill), start the
 *           same binary on the same folder and time spawn -> the first
 *           fetch that returns a delivery (the leases are recovered before
 *           the broker listens). Done with a large and a small backlog;
 *           their ratio tells whether start-up grows with the backlog.
 *
 * Every phase is bounded by ctx->phase_limit_s and fails with a message
 * naming the phase when it runs over; a broker that dies fails the
 * scenario. Client calls have the usual 10 s deadline.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <handoff.h>

#include "bench.h"

#define CALL_DEADLINE_MS	10000
#define FETCH_WAIT_MS		100
#define FILL_PRODUCERS		4
#define FILL_BATCH		100
#define DRAIN_CONSUMERS		4 /* as e2e-batched, so the rates compare */
#define DRAIN_FETCH		250
#define LEASE_FETCH		1000 /* = the sub-brokers' max_batch */
#define BACKLOG_ACK_DEADLINE_MS 30000
#define RESTART_ACK_DEADLINE_MS 600000
#define SMALL_PENDING		1000
#define SMALL_LEASED		100
#define WATCH_NS		50000000ULL
#define PROGRESS_NS		10000000000ULL

/* ---- a team of threads: fill (publish) or drain (fetch + ack) ---------- */

struct team {
	const struct bench_ctx *ctx;
	struct broker *broker;
	const char *url, *topic, *sub;
	const char *what; /* "fill to 1,000,000 events": for messages */
	bool drain;
	uint64_t target;	  /* fill: events published; drain: acks OK */
	_Atomic uint64_t claimed; /* fill: events handed to a producer */
	_Atomic uint64_t done;	  /* published, or acked OK */
	_Atomic uint64_t lease_lost;
	atomic_bool stop;
	pthread_mutex_t mu;
	char error[BENCH_ERR_LEN];
};

struct member {
	struct team *t;
	int idx;
	pthread_t th;
	struct hist confirm;
	uint64_t t_done;
};

static void team_fail(struct team *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void team_fail(struct team *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bench_first_error(&t->mu, t->error, sizeof t->error, &t->stop, fmt, ap);
	va_end(ap);
}

static bool team_stopping(struct team *t)
{
	return atomic_load(&t->stop) || bench_interrupted;
}

static void fill_loop(struct member *m, handoff_client *c)
{
	struct team *t = m->t;
	uint32_t payload = t->ctx->payload;
	struct bench_batch pb;
	char msg[BENCH_ERR_LEN - 64];

	if (bench_batch_init(&pb, FILL_BATCH, payload, 'b')) {
		team_fail(t, "producer %d: out of memory", m->idx);
		goto out;
	}
	while (!team_stopping(t)) {
		uint64_t have = atomic_load(&t->claimed), n;
		do {
			if (have >= t->target)
				goto out;
			n = t->target - have < FILL_BATCH ? t->target - have :
							    FILL_BATCH;
		} while (!atomic_compare_exchange_weak(&t->claimed, &have,
						       have + n));
		if (payload >= 8) {
			uint64_t st = bench_realtime_ns();
			memcpy(pb.buf, &st, sizeof st);
		}
		uint64_t a = bench_now_ns();
		int rc = handoff_publish(c, t->topic, pb.ev, (size_t)n, pb.ids,
					 NULL);
		if (rc != HANDOFF_OK) {
			team_fail(t, "producer %d: publish: %s", m->idx,
				  bench_call_text(c, rc, msg, sizeof msg));
			break;
		}
		hist_add(&m->confirm, bench_now_ns() - a);
		atomic_fetch_add(&t->done, n);
	}
out:
	bench_batch_free(&pb);
}

static void drain_loop(struct member *m, handoff_client *c)
{
	struct team *t = m->t;
	handoff_ack_item items[DRAIN_FETCH];
	int res[DRAIN_FETCH];
	char msg[BENCH_ERR_LEN - 64];

	while (!team_stopping(t) && atomic_load(&t->done) < t->target) {
		handoff_delivery *d = NULL;
		size_t n = 0;
		int rc = handoff_fetch(c, t->sub, DRAIN_FETCH, FETCH_WAIT_MS,
				       &d, &n);
		if (rc != HANDOFF_OK) {
			team_fail(t, "consumer %d: fetch: %s", m->idx,
				  bench_call_text(c, rc, msg, sizeof msg));
			break;
		}
		size_t k = n < DRAIN_FETCH ? n : DRAIN_FETCH;
		for (size_t i = 0; i < k; i++) {
			items[i].event_id = d[i].event_id;
			items[i].lease_token = d[i].lease_token;
		}
		handoff_deliveries_free(d, n);
		if (k == 0)
			continue;
		rc = handoff_ack(c, t->sub, items, k, res);
		if (rc != HANDOFF_OK) {
			team_fail(t, "consumer %d: ack: %s", m->idx,
				  bench_call_text(c, rc, msg, sizeof msg));
			break;
		}
		uint64_t lost = 0, ok = bench_acks_ok(res, k, &lost);
		atomic_fetch_add(&t->lease_lost, lost);
		atomic_fetch_add(&t->done, ok);
	}
}

static void *member_main(void *arg)
{
	struct member *m = arg;
	struct team *t = m->t;
	handoff_client *c = NULL;
	char name[64], msg[BENCH_ERR_LEN - 64];

	snprintf(name, sizeof name, "bench-%s%d", t->drain ? "c" : "p", m->idx);
	int rc = bench_client_open(t->url, name, CALL_DEADLINE_MS, &c);
	if (rc != HANDOFF_OK)
		team_fail(t, "%s: connect %s: %s", name, t->url,
			  bench_call_text(NULL, rc, msg, sizeof msg));
	else if (t->drain)
		drain_loop(m, c);
	else
		fill_loop(m, c);
	m->t_done = bench_now_ns();
	handoff_close(c);
	return NULL;
}

/* Run the team until target is reached, an error, the broker's death, a
 * signal or the phase limit. *elapsed_s = start -> the last member done;
 * confirm (may be NULL) gets the members' publish latencies. */
static int team_run(struct team *t, int members, double *elapsed_s,
		    struct hist *confirm, char *err, size_t errlen)
{
	const struct bench_ctx *ctx = t->ctx;
	struct member *m = calloc((size_t)members, sizeof *m);
	int started = 0, ret = -1;
	char a[32], b[32], msg[BENCH_ERR_LEN - 64];

	*elapsed_s = 0;
	if (m == NULL) {
		bench_errf(err, errlen, "%s: out of memory", t->what);
		return -1;
	}
	if (pthread_mutex_init(&t->mu, NULL) != 0) {
		free(m);
		bench_errf(err, errlen, "%s: pthread_mutex_init failed",
			   t->what);
		return -1;
	}
	atomic_store(&t->stop, false);
	t->error[0] = '\0';
	uint64_t t0 = bench_now_ns();
	uint64_t limit = t0 + (uint64_t)(ctx->phase_limit_s * 1e9);
	for (int i = 0; i < members; i++) {
		m[i].t = t;
		m[i].idx = i;
		hist_init(&m[i].confirm);
		if (pthread_create(&m[i].th, NULL, member_main, &m[i]) != 0) {
			team_fail(t, "cannot start thread %d", i);
			break;
		}
		started++;
	}

	uint64_t next_progress = t0 + PROGRESS_NS, last_done = 0, last_t = t0;
	for (;;) {
		bool all_done = true;
		/* a member is finished once its t_done is set; joining waits
		 * below, so poll the shared state here */
		if (atomic_load(&t->done) < t->target && !team_stopping(t))
			all_done = false;
		if (all_done)
			break;
		bench_sleep_ns(WATCH_NS);
		uint64_t now = bench_now_ns();
		if (t->broker && !broker_alive(t->broker)) {
			broker_exit_text(t->broker, msg, sizeof msg);
			team_fail(t, "broker exited (%s)", msg);
		} else if (bench_interrupted) {
			team_fail(t, "interrupted");
		} else if (now > limit) {
			team_fail(t,
				  "did not finish within the phase limit of "
				  "%.0f s (%s of %s done); aborted",
				  ctx->phase_limit_s,
				  bench_grouped_u(a, sizeof a,
						  atomic_load(&t->done)),
				  bench_grouped_u(b, sizeof b, t->target));
		} else if (ctx->progress && now >= next_progress) {
			uint64_t d = atomic_load(&t->done);
			fprintf(stderr, "handoff-bench:   %s: %s done (%s/s)\n",
				t->what, bench_grouped_u(a, sizeof a, d),
				bench_grouped_u(
					b, sizeof b,
					(uint64_t)((double)(d - last_done) *
						   1e9 /
						   (double)(now - last_t))));
			last_done = d;
			last_t = now;
			next_progress = now + PROGRESS_NS;
		}
	}
	uint64_t t_last = t0;
	for (int i = 0; i < started; i++) {
		pthread_join(m[i].th, NULL);
		if (confirm)
			hist_merge(confirm, &m[i].confirm);
		if (m[i].t_done > t_last)
			t_last = m[i].t_done;
	}
	*elapsed_s = (double)(t_last - t0) / 1e9;
	if (t->error[0]) {
		bench_errf(err, errlen, "%s: %s", t->what, t->error);
	} else if (atomic_load(&t->done) < t->target) {
		bench_errf(err, errlen, "%s: stopped short", t->what);
	} else {
		ret = 0;
	}
	pthread_mutex_destroy(&t->mu);
	free(m);
	return ret;
}

/* ---- brokers of our own ---------------------------------------------------- */

static int own_broker(const struct bench_ctx *ctx, const char *name,
		      struct broker *b, char *dir, size_t dirlen, char *err,
		      size_t errlen)
{
	memset(b, 0, sizeof *b);
	int n = snprintf(dir, dirlen, "%s/%s", ctx->workdir, name);
	if (n < 0 || (size_t)n >= dirlen) {
		bench_errf(err, errlen, "work folder path too long");
		return -1;
	}
	if (broker_spawn_own(b, ctx->exe, dir, LEASE_FETCH, ctx->payload, err,
			     errlen)) {
		dir[0] = '\0';
		return -1;
	}
	return 0;
}

static void own_broker_end(struct broker *b, const char *dir, bool failed)
{
	bool was_alive = broker_alive(b);
	broker_stop(b);
	if (failed || !was_alive)
		broker_log_tail(b, stderr, 20);
	broker_proc_remove_dir(dir);
}

static void disk_figures(const struct broker *b, handoff_client *admin,
			 uint64_t *data_bytes, uint64_t *stored)
{
	char path[BENCH_PATH_LEN + 16];
	struct stat sb;
	handoff_stats *st = NULL;

	*data_bytes = 0;
	*stored = 0;
	snprintf(path, sizeof path, "%s/data.mdb", b->proc.data);
	if (stat(path, &sb) == 0)
		*data_bytes = (uint64_t)sb.st_size;
	if (admin && handoff_get_stats(admin, &st) == HANDOFF_OK) {
		*stored = st->events_stored;
		handoff_stats_free(st);
	}
}

/* The broker's published / acked counts for topic's subscription sub. */
static void broker_counts(handoff_client *admin, const char *topic,
			  const char *sub, uint64_t *published, uint64_t *acked)
{
	handoff_stats *st = NULL;

	*published = *acked = UINT64_MAX;
	if (admin == NULL || handoff_get_stats(admin, &st) != HANDOFF_OK)
		return;
	for (size_t i = 0; i < st->n_topics; i++)
		if (strcmp(st->topics[i].name, topic) == 0)
			*published = st->topics[i].published;
	for (size_t i = 0; i < st->n_subscriptions; i++)
		if (strcmp(st->subscriptions[i].name, sub) == 0)
			*acked = st->subscriptions[i].acked;
	handoff_stats_free(st);
}

static int subscribe(handoff_client *admin, const char *topic, const char *sub,
		     uint32_t ack_deadline_ms, char *err, size_t errlen)
{
	handoff_policy pol = { .ack_deadline_ms = ack_deadline_ms };
	return bench_subscribe(admin, topic, sub, &pol, err, errlen);
}

static bool needs_spawn(const struct bench_ctx *ctx, struct scen_result *r)
{
	if (ctx->exe && ctx->workdir && ctx->workdir[0])
		return false;
	bench_errf(r->error, sizeof r->error,
		   "%s needs a broker of its own: run with --spawn", r->p.name);
	return true;
}

static void progress(const struct bench_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void progress(const struct bench_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	if (!ctx->progress)
		return;
	fputs("handoff-bench:   ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- backlog ----------------------------------------------------------- */

int backlog_run(const struct bench_ctx *ctx, struct scen_result *r)
{
	struct backlog_result *bl = &r->bl;
	struct broker b;
	char dir[BENCH_PATH_LEN], sub[300], what[96], a[32];
	char err[BENCH_ERR_LEN - 32];
	handoff_client *admin = NULL;
	bool spawned = false;
	int ret = -1;

	r->ran = true;
	memset(&b, 0, sizeof b);
	dir[0] = '\0';
	err[0] = '\0';
	if (bench_result_hists(r)) {
		bench_errf(err, sizeof err, "out of memory");
		goto out;
	}
	if (needs_spawn(ctx, r))
		goto out;
	if (ctx->backlog_probe < 1 ||
	    ctx->backlog_probe >= ctx->backlog_events) {
		bench_errf(err, sizeof err,
			   "--backlog-probe must be at least 1 and below "
			   "--backlog-events");
		goto out;
	}
	bl->events = ctx->backlog_events;
	bl->probe = ctx->backlog_probe;
	if (own_broker(ctx, "backlog", &b, dir, sizeof dir, err, sizeof err))
		goto out;
	spawned = true;

	/* the empty-queue figure first, on its own topic */
	if (ctx->e2e_events_per_s > 0) {
		bl->e2e_per_s = ctx->e2e_events_per_s;
		bl->e2e_reused = true;
	} else if (ctx->e2e != NULL) {
		struct bench_ctx c2 = *ctx;
		struct scen_result e;
		memset(&e, 0, sizeof e);
		e.p = *ctx->e2e;
		c2.url = b.proc.url;
		c2.broker = &b;
		progress(ctx, "empty-queue baseline: %s for %.1f s", e.p.name,
			 ctx->duration_s);
		int rc = scenario_run(&c2, &e);
		free(e.confirm);
		free(e.deliver);
		if (rc != 0) {
			bench_errf(err, sizeof err,
				   "empty-queue baseline %s: %s", e.p.name,
				   e.error);
			goto out;
		}
		bl->e2e_per_s = e.events_per_s;
		bl->e2e_s = e.elapsed_s;
	}

	snprintf(r->topic, sizeof r->topic, "bench.%d.%d.%s", ctx->run_id,
		 ctx->index, r->p.name);
	snprintf(sub, sizeof sub, "%s.s0", r->topic);
	if (bench_client_open(b.proc.url, "bench-admin", CALL_DEADLINE_MS,
			      &admin) != HANDOFF_OK) {
		bench_errf(err, sizeof err, "connect %s failed", b.proc.url);
		goto out;
	}
	if (subscribe(admin, r->topic, sub, BACKLOG_ACK_DEADLINE_MS, err,
		      sizeof err))
		goto out;

	double cpu_b0 = broker_cpu_seconds(&b), cpu_s0 = bench_cpu_seconds();
	broker_take_rss_peak(&b);

	/* fill to the probe, read RssAnon, fill to N, read it again */
	struct team t;
	double s1 = 0, s2 = 0;
	memset(&t, 0, sizeof t);
	t.ctx = ctx;
	t.broker = &b;
	t.url = b.proc.url;
	t.topic = r->topic;
	t.sub = sub;
	t.what = what;
	t.target = (uint64_t)bl->probe;
	snprintf(what, sizeof what, "fill to %s events",
		 bench_grouped_u(a, sizeof a, t.target));
	progress(ctx, "%s", what);
	if (team_run(&t, FILL_PRODUCERS, &s1, r->confirm, err, sizeof err))
		goto fill_failed;
	bl->rss_probe_kb = broker_rss_anon(&b);
	t.target = (uint64_t)bl->events;
	snprintf(what, sizeof what, "fill to %s events",
		 bench_grouped_u(a, sizeof a, t.target));
	progress(ctx, "%s", what);
	if (team_run(&t, FILL_PRODUCERS, &s2, r->confirm, err, sizeof err))
		goto fill_failed;
	bl->rss_full_kb = broker_rss_anon(&b);
	bl->fill_s = s1 + s2;
	r->published = atomic_load(&t.done);
	if (bl->fill_s > 0)
		bl->fill_per_s = (double)r->published / bl->fill_s;
	disk_figures(&b, admin, &bl->data_bytes, &bl->events_stored);
	if (bl->events_stored > 0)
		bl->bytes_per_event =
			(double)bl->data_bytes / (double)bl->events_stored;

	/* drain */
	struct team d;
	memset(&d, 0, sizeof d);
	d.ctx = ctx;
	d.broker = &b;
	d.url = b.proc.url;
	d.topic = r->topic;
	d.sub = sub;
	d.what = what;
	d.drain = true;
	d.target = r->published;
	snprintf(what, sizeof what, "drain of %s events",
		 bench_grouped_u(a, sizeof a, d.target));
	progress(ctx, "%s", what);
	int drc = team_run(&d, DRAIN_CONSUMERS, &bl->drain_s, NULL, err,
			   sizeof err);
	bl->drained = atomic_load(&d.done);
	r->acked = bl->drained;
	r->delivered = bl->drained + atomic_load(&d.lease_lost);
	r->lease_lost = atomic_load(&d.lease_lost);
	if (drc)
		goto fill_failed;
	if (bl->drain_s > 0)
		bl->drain_per_s = (double)bl->drained / bl->drain_s;

	double cpu_b1 = broker_cpu_seconds(&b);
	r->broker_cpu_s = cpu_b0 >= 0 && cpu_b1 >= 0 ? cpu_b1 - cpu_b0 : -1;
	r->bench_cpu_s = bench_cpu_seconds() - cpu_s0;
	r->elapsed_s = bl->fill_s + bl->drain_s;
	r->publish_per_s = bl->fill_per_s;
	r->events_per_s = bl->drain_per_s;
	r->rss_peak_kb = broker_take_rss_peak(&b);
	r->data_bytes = bl->data_bytes;
	r->events_stored = bl->events_stored;
	r->bytes_per_event = bl->bytes_per_event;
	broker_counts(admin, r->topic, sub, &r->broker_published,
		      &r->broker_acked);
	r->checked = r->broker_published != UINT64_MAX;
	if (r->checked && r->broker_published != r->published)
		snprintf(r->note, sizeof r->note,
			 "broker counted %llu published, we %llu",
			 (unsigned long long)r->broker_published,
			 (unsigned long long)r->published);
	else if (r->checked && r->broker_acked != r->acked)
		snprintf(r->note, sizeof r->note,
			 "broker counted %llu acked, we %llu",
			 (unsigned long long)r->broker_acked,
			 (unsigned long long)r->acked);
	else if (r->lease_lost)
		snprintf(r->note, sizeof r->note,
			 "%llu acks answered lease lost / not found",
			 (unsigned long long)r->lease_lost);
	bl->ran = true;
	ret = 0;
	goto out;

fill_failed:
	if (r->published == 0)
		r->published = atomic_load(&t.done);
out:
	handoff_close(admin);
	if (ret != 0) {
		r->failed = true;
		if (r->error[0] == '\0')
			bench_errf(r->error, sizeof r->error, "%s",
				   err[0] ? err : "failed");
	}
	if (spawned)
		own_broker_end(&b, dir, ret != 0);
	else if (dir[0])
		broker_proc_remove_dir(dir);
	return ret;
}

/* ---- restart ----------------------------------------------------------- */

/* Lease up to want deliveries on c (not acked); *got counts them. */
static int lease_some(const struct bench_ctx *ctx, handoff_client *c,
		      const char *sub, long want, long *got, char *err,
		      size_t errlen)
{
	char msg[BENCH_ERR_LEN - 64], a[32];
	uint64_t limit = bench_now_ns() + (uint64_t)(ctx->phase_limit_s * 1e9);
	int empty = 0;

	while (*got < want) {
		handoff_delivery *d = NULL;
		size_t n = 0;
		long ask =
			want - *got < LEASE_FETCH ? want - *got : LEASE_FETCH;
		if (bench_interrupted) {
			bench_errf(err, errlen, "leasing: interrupted");
			return -1;
		}
		if (bench_now_ns() > limit) {
			bench_errf(
				err, errlen,
				"leasing %ld events did not finish within the "
				"phase limit of %.0f s (%s leased); aborted",
				want, ctx->phase_limit_s,
				bench_grouped_u(a, sizeof a, (uint64_t)*got));
			return -1;
		}
		int rc = handoff_fetch(c, sub, (size_t)ask, FETCH_WAIT_MS, &d,
				       &n);
		if (rc != HANDOFF_OK) {
			bench_errf(err, errlen, "leasing: fetch: %s",
				   bench_call_text(c, rc, msg, sizeof msg));
			return -1;
		}
		handoff_deliveries_free(d, n);
		*got += (long)n;
		if (n == 0 && ++empty >= 50) {
			bench_errf(err, errlen,
				   "leasing: no deliveries for 5 s with %ld of "
				   "%ld leased",
				   *got, want);
			return -1;
		}
	}
	return 0;
}

/* After broker_restart: connect and fetch until one delivery comes back.
 * Times from b->proc.spawn_ns into cs; *c is the open handle, *got the
 * deliveries leased by that fetch. */
static int first_fetch(const struct bench_ctx *ctx, struct broker *b,
		       const char *sub, struct restart_case *cs,
		       handoff_client **c, long *got, char *err, size_t errlen)
{
	char msg[BENCH_ERR_LEN - 64], how[64];
	uint64_t limit =
		b->proc.spawn_ns + (uint64_t)(ctx->phase_limit_s * 1e9);
	int last_rc = HANDOFF_OK;

	*c = NULL;
	*got = 0;
	for (;;) {
		if (bench_interrupted) {
			bench_errf(err, errlen, "first fetch: interrupted");
			return -1;
		}
		if (!broker_alive(b)) {
			broker_exit_text(b, how, sizeof how);
			bench_errf(err, errlen,
				   "broker exited after the restart (%s)", how);
			return -1;
		}
		if (bench_now_ns() > limit) {
			bench_errf(
				err, errlen,
				"no delivery within the phase limit of %.0f s "
				"of the restart (last: %s); aborted",
				ctx->phase_limit_s, handoff_strerror(last_rc));
			return -1;
		}
		if (*c == NULL) {
			last_rc = bench_client_open(b->proc.url,
						    "bench-restart", 1000, c);
			if (last_rc != HANDOFF_OK)
				continue;
			cs->connect_ms =
				(double)(bench_now_ns() - b->proc.spawn_ns) /
				1e6;
		}
		handoff_delivery *d = NULL;
		size_t n = 0;
		last_rc = handoff_fetch(*c, sub, 100, FETCH_WAIT_MS, &d, &n);
		uint64_t now = bench_now_ns();
		handoff_deliveries_free(d, n);
		if (last_rc == HANDOFF_OK && n > 0) {
			cs->fetch_ms = (double)(now - b->proc.spawn_ns) / 1e6;
			*got = (long)n;
			return 0;
		}
		if (last_rc != HANDOFF_OK) {
			bench_errf(
				err, errlen, "first fetch: %s",
				bench_call_text(*c, last_rc, msg, sizeof msg));
			handoff_close(*c);
			*c = NULL;
		}
	}
}

static const char *sig_name(int sig)
{
	return sig == SIGKILL ? "SIGKILL" : sig == SIGTERM ? "SIGTERM" : "?";
}

/* One backlog size: spawn, publish, lease, then per signal stop, restart,
 * time the first fetch and lease again for the next one. */
static int restart_size(const struct bench_ctx *ctx, struct scen_result *r,
			const char *size, long pending, long leased,
			const int *sigs, int n_sigs, char *err, size_t errlen)
{
	struct broker b;
	char dir[BENCH_PATH_LEN], name[32], sub[300], topic[128], what[96];
	char a[32], b2[32];
	handoff_client *c = NULL;
	int ret = -1;

	snprintf(name, sizeof name, "restart-%s", size);
	if (own_broker(ctx, name, &b, dir, sizeof dir, err, errlen))
		return -1;
	snprintf(topic, sizeof topic, "bench.%d.%d.%s-%s", ctx->run_id,
		 ctx->index, r->p.name, size);
	snprintf(sub, sizeof sub, "%s.s0", topic);
	if (r->topic[0] == '\0')
		snprintf(r->topic, sizeof r->topic, "%s", topic);
	if (bench_client_open(b.proc.url, "bench-admin", CALL_DEADLINE_MS,
			      &c) != HANDOFF_OK) {
		bench_errf(err, errlen, "connect %s failed", b.proc.url);
		goto out;
	}
	if (subscribe(c, topic, sub, RESTART_ACK_DEADLINE_MS, err, errlen))
		goto out;

	struct team t;
	double secs = 0;
	memset(&t, 0, sizeof t);
	t.ctx = ctx;
	t.broker = &b;
	t.url = b.proc.url;
	t.topic = topic;
	t.sub = sub;
	t.what = what;
	t.target = (uint64_t)pending;
	snprintf(what, sizeof what, "%s backlog: publish %s events", size,
		 bench_grouped_u(a, sizeof a, t.target));
	progress(ctx, "%s", what);
	if (team_run(&t, FILL_PRODUCERS, &secs, r->confirm, err, errlen))
		goto out;
	r->published += atomic_load(&t.done);
	if (strcmp(size, "large") == 0)
		disk_figures(&b, c, &r->rs.large_data_bytes,
			     &r->rs.large_events_stored);

	long got = 0;
	progress(ctx, "%s backlog: lease %s of them", size,
		 bench_grouped_u(a, sizeof a, (uint64_t)leased));
	if (lease_some(ctx, c, sub, leased, &got, err, errlen))
		goto out;

	for (int i = 0; i < n_sigs && r->rs.n < RESTART_MAX_CASES; i++) {
		struct restart_case *cs = &r->rs.c[r->rs.n++];
		cs->size = size;
		cs->sig = sigs[i];
		cs->pending = pending;
		cs->leased = got;
		handoff_close(c);
		c = NULL;
		uint64_t peak = broker_take_rss_peak(&b);
		if (peak > r->rss_peak_kb)
			r->rss_peak_kb = peak;
		uint64_t t0 = bench_now_ns();
		broker_stop_signal(&b, sigs[i]);
		cs->stop_ms = (double)(bench_now_ns() - t0) / 1e6;
		cs->term_timed_out = b.term_timed_out;
		if (broker_restart(&b, ctx->phase_limit_s, err, errlen))
			goto out;
		cs->listen_ms =
			(double)(b.proc.listening_ns - b.proc.spawn_ns) / 1e6;
		if (first_fetch(ctx, &b, sub, cs, &c, &got, err, errlen))
			goto out;
		progress(ctx,
			 "%s backlog (%s pending, %s leased), %s: first "
			 "fetch %.1f ms after the spawn",
			 size, bench_grouped_u(a, sizeof a, (uint64_t)pending),
			 bench_grouped_u(b2, sizeof b2, (uint64_t)cs->leased),
			 sig_name(cs->sig), cs->fetch_ms);
		if (i + 1 < n_sigs &&
		    lease_some(ctx, c, sub, leased, &got, err, errlen))
			goto out;
	}
	uint64_t peak = broker_take_rss_peak(&b);
	if (peak > r->rss_peak_kb)
		r->rss_peak_kb = peak;
	ret = 0;
out:
	handoff_close(c);
	own_broker_end(&b, dir, ret != 0);
	return ret;
}

int restart_run(const struct bench_ctx *ctx, struct scen_result *r)
{
	char err[BENCH_ERR_LEN - 32] = "";
	int sigs[2] = { SIGTERM, SIGKILL };
	int n_sigs = ctx->restart_kill ? 2 : 1;
	int ret = -1;

	r->ran = true;
	if (bench_result_hists(r)) {
		bench_errf(err, sizeof err, "out of memory");
		goto out;
	}
	if (needs_spawn(ctx, r))
		goto out;
	if (ctx->restart_pending < 1 || ctx->restart_leased < 1 ||
	    ctx->restart_leased > ctx->restart_pending) {
		bench_errf(err, sizeof err,
			   "--restart-leased must be 1..--restart-pending");
		goto out;
	}
	double cpu_s0 = bench_cpu_seconds();
	uint64_t t0 = bench_now_ns();
	if (restart_size(ctx, r, "small", SMALL_PENDING, SMALL_LEASED, sigs,
			 n_sigs, err, sizeof err))
		goto out;
	if (restart_size(ctx, r, "large", ctx->restart_pending,
			 ctx->restart_leased, sigs, n_sigs, err, sizeof err))
		goto out;
	r->elapsed_s = (double)(bench_now_ns() - t0) / 1e9;
	r->bench_cpu_s = bench_cpu_seconds() - cpu_s0;
	r->broker_cpu_s = -1; /* several brokers came and went */
	r->data_bytes = r->rs.large_data_bytes;
	r->events_stored = r->rs.large_events_stored;
	if (r->events_stored > 0)
		r->bytes_per_event =
			(double)r->data_bytes / (double)r->events_stored;
	ret = 0;
out:
	if (ret != 0) {
		r->failed = true;
		if (r->error[0] == '\0')
			bench_errf(r->error, sizeof r->error, "%s",
				   err[0] ? err : "failed");
	}
	return ret;
}
