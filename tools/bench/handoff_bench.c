/*
 * handoff_bench.c — handoff-bench, the benchmark of handoff: flags, the
 * order of a run, and the exit status.
 *
 * A run: measure the LMDB ceilings on the data disk (no nanomsg socket
 * exists yet), spawn handoffd (normal mode; before our first nanomsg
 * socket, since nanomsg starts threads with it), measure the nanomsg
 * ceiling, then run the scenarios one after the other on the same broker,
 * each on a fresh topic; finally stop the broker, remove the work folder
 * and print the table (or JSON). Everything talks to the broker through
 * handoff.h only.
 *
 * The spawned broker also serves its HTTP API on a free loopback port; the
 * HTTP scenarios (http-...) each run right after their native twin (the
 * same shape over handoff.h), on the same broker, and print their ratio to
 * it. With --broker they need --http HOST:PORT (without it, `all` leaves
 * them out).
 *
 * backlog and restart (backlog.c) and neighbour (neighbour.c) are not part
 * of `all`: they run only when named, on brokers of their own in the work
 * folder, and take long.
 *
 * Exit status: 0 all scenarios ran, 1 a scenario or the set-up failed,
 * 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <handoff.h>

#include "bench.h"

volatile sig_atomic_t bench_interrupted;

/* ---- time ---------------------------------------------------------------- */

void bench_first_error(pthread_mutex_t *mu, char *error, size_t len,
		       atomic_bool *stop, const char *fmt, va_list ap)
{
	pthread_mutex_lock(mu);
	if (error[0] == '\0')
		vsnprintf(error, len, fmt, ap);
	pthread_mutex_unlock(mu);
	atomic_store(stop, true);
}

uint64_t bench_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

uint64_t bench_realtime_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

void bench_sleep_until(uint64_t t_ns)
{
	struct timespec ts = { .tv_sec = (time_t)(t_ns / 1000000000ULL),
			       .tv_nsec = (long)(t_ns % 1000000000ULL) };
	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

void bench_sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ULL),
			       .tv_nsec = (long)(ns % 1000000000ULL) };
	nanosleep(&ts, NULL);
}

static void on_signal(int sig)
{
	(void)sig;
	bench_interrupted = 1;
}

/* ---- scenarios ----------------------------------------------------------- */

#define BACKLOG_AUTO (-1)

/* Each HTTP scenario follows its twin, so that the two run close together
 * on a store of about the same size. */
static const struct scen_params scenario_defs[] = {
	{ .name = "publish-k4-e100",
	  .producers = 4,
	  .batch = 100,
	  .fetch_batch = 100,
	  .subs = 1,
	  .ratios = RATIO_LMDB100 | RATIO_NN },
	{ .name = "http-publish-k4-e100",
	  .producers = 4,
	  .batch = 100,
	  .fetch_batch = 100,
	  .subs = 1,
	  .ratios = RATIO_NATIVE | RATIO_LMDB100,
	  .http = true,
	  .twin = "publish-k4-e100",
	  .target = 0.5 },
	{ .name = "publish-k8-e1",
	  .producers = 8,
	  .batch = 1,
	  .fetch_batch = 100,
	  .subs = 1,
	  .ratios = RATIO_LMDB1 },
	/* both bound by the group commit: HTTP should cost little here */
	{ .name = "http-publish-k8-e1",
	  .producers = 8,
	  .batch = 1,
	  .fetch_batch = 100,
	  .subs = 1,
	  .ratios = RATIO_NATIVE | RATIO_LMDB1,
	  .http = true,
	  .twin = "publish-k8-e1",
	  .target = 0.8 },
	{ .name = "publish-k1-e1",
	  .producers = 1,
	  .batch = 1,
	  .fetch_batch = 100,
	  .subs = 1,
	  .ratios = RATIO_LMDB1 },
	{ .name = "e2e-batched",
	  .producers = 4,
	  /* each consumer waits two commits per batch (fetch, ack): four of
	   * them with 250 per fetch keep the broker's turns full */
	  .consumers = 4,
	  .batch = 100,
	  .fetch_batch = 250,
	  .subs = 1,
	  .backlog = BACKLOG_AUTO,
	  .ratios = RATIO_LMDB100 },
	/* the same producers; handoffd's push thread consumes, POSTing to a
	 * receiver in handoff-bench; 16 requests in flight so one round trip
	 * at a time does not cap it; the cap is e2e-batched's */
	{ .name = "push",
	  .producers = 4,
	  .batch = 100,
	  .fetch_batch = 250,
	  .subs = 1,
	  .backlog = 4 * 100 + 4 * 250,
	  .ratios = RATIO_NATIVE | RATIO_LMDB100,
	  .twin = "e2e-batched",
	  .target = 0.5,
	  .push_concurrency = 16 },
	{ .name = "http-e2e-batched",
	  .producers = 4,
	  .consumers = 4,
	  .batch = 100,
	  .fetch_batch = 250,
	  .subs = 1,
	  .backlog = BACKLOG_AUTO,
	  .ratios = RATIO_NATIVE | RATIO_LMDB100,
	  .http = true,
	  .twin = "e2e-batched",
	  .target = 0.5 },
	{ .name = "fanout-4",
	  .producers = 4,
	  .batch = 100,
	  .fetch_batch = 100,
	  .subs = 4,
	  .ratios = RATIO_K4 | RATIO_LMDB100 },
	{ .name = "lat-1k",
	  .producers = 4,
	  .consumers = 1,
	  .batch = 1,
	  .fetch_batch = 100,
	  .subs = 1,
	  .rate = 1000,
	  /* acks each fetched batch in one request, as a handoff consumer
	   * does; per-event ack round trips would measure the consumer */
	  .ack_each = false,
	  .ratios = RATIO_P99 },
};
#define N_DEFS	     (int)(sizeof scenario_defs / sizeof scenario_defs[0])
#define E2E_DEF	     5	/* e2e-batched: the backlog's empty-queue baseline */
#define MAX_SELECTED 32 /* scenarios in one run */

/* Run only when named; flags other than their own and --payload do not
 * change them. The figures describe their shape for the notes. */
static const struct scen_params special_defs[] = {
	{ .name = "backlog",
	  .kind = SCEN_BACKLOG,
	  .producers = 4,
	  .consumers = 4,
	  .batch = 100,
	  .fetch_batch = 250,
	  .subs = 1,
	  .ratios = RATIO_BACKLOG },
	{ .name = "restart",
	  .kind = SCEN_RESTART,
	  .producers = 4,
	  .batch = 100,
	  .fetch_batch = 1000,
	  .subs = 1,
	  .ratios = RATIO_RESTART },
	/* H as e2e-batched (its backlog cap too: one round of publishes and
	 * fetches), N with as many consumers fetching as many */
	{ .name = "neighbour",
	  .kind = SCEN_NEIGHBOUR,
	  .producers = 4,
	  .consumers = 4,
	  .batch = 100,
	  .fetch_batch = 250,
	  .subs = 2,
	  .backlog = 4 * 100 + 4 * 250,
	  .ratios = RATIO_NEIGHBOUR },
};
#define N_SPECIAL (int)(sizeof special_defs / sizeof special_defs[0])

static const struct scen_params custom_def = {
	.name = "custom",
	.producers = 1,
	.batch = 1,
	.fetch_batch = 100,
	.subs = 1,
	.backlog = BACKLOG_AUTO,
	.ratios = RATIO_LMDB1 | RATIO_LMDB100 | RATIO_NN,
};

enum {
	O_PRODUCERS = 1 << 0,
	O_CONSUMERS = 1 << 1,
	O_BATCH = 1 << 2,
	O_FETCH = 1 << 3,
	O_SUBS = 1 << 4,
	O_RATE = 1 << 5,
	O_BACKLOG = 1 << 6,
	O_PUSH_CONC = 1 << 7,
};

struct opts {
	const char *broker_url;
	const char *http; /* --http HOST:PORT (with --broker) */
	const char *spawn;
	const char *data_dir;
	const char *scenario;
	int producers, consumers, batch, fetch_batch, subs;
	int push_concurrency;
	long backlog;
	double rate;
	double duration;
	long payload;
	unsigned given;
	bool json;
	bool no_ceilings;
	long backlog_events, backlog_probe;
	long restart_pending, restart_leased;
	bool restart_kill;
	double phase_limit;
	long neighbour_rounds;
	int neighbour_cases;
};

static void usage(FILE *f)
{
	fputs("usage: handoff-bench [--broker URL | --spawn PATH_TO_HANDOFFD]\n"
	      "         [--data-dir DIR] [--scenario NAME[,NAME...]|all|custom]\n"
	      "         [--duration SECONDS] [--payload BYTES] [--producers N]\n"
	      "         [--consumers N] [--batch N] [--fetch-batch N]\n"
	      "         [--subscriptions N] [--rate N] [--backlog N]\n"
	      "         [--json] [--no-ceilings]\n"
	      "         [--backlog-events N] [--backlog-probe N]\n"
	      "         [--restart-pending N] [--restart-leased N] "
	      "[--restart-kill]\n"
	      "         [--phase-limit SECONDS] [--neighbour-rounds N]\n"
	      "         [--neighbour-cases all|native|push] [--push-concurrency N]\n"
	      "         [--http HOST:PORT]\n"
	      "\n"
	      "Benchmark of the handoff broker through its client library and\n"
	      "its HTTP API.\n"
	      "\n"
	      "  --spawn PATH       start PATH (handoffd) on a fresh folder under\n"
	      "                     --data-dir, stop it and remove the folder at the\n"
	      "                     end (the normal mode; without --broker or\n"
	      "                     --spawn, a handoffd beside this program is used)\n"
	      "  --broker URL       use a running broker instead (no RssAnon or\n"
	      "                     bytes/event; subscriptions removed at the end)\n"
	      "  --data-dir DIR     where the work folder goes: the disk measured\n"
	      "                     (default: the current directory)\n"
	      "  --scenario S       all (default), custom, http, or names from:\n"
	      "                     publish-k4-e100 publish-k8-e1 publish-k1-e1\n"
	      "                     e2e-batched fanout-4 lat-1k http-publish-k4-e100\n"
	      "                     http-publish-k8-e1 http-e2e-batched push;\n"
	      "                     and, only\n"
	      "                     when named (long; --spawn only): backlog\n"
	      "                     restart neighbour\n"
	      "                     http = the three http-... scenarios; each runs\n"
	      "                     right after its native twin (added when not\n"
	      "                     named just before) and prints its ratio to it;\n"
	      "                     http,http,http runs three rounds of pairs\n"
	      "                     push = e2e-batched's producers, consumed by\n"
	      "                     handoffd's push thread POSTing to a receiver\n"
	      "                     in handoff-bench (127.0.0.1, 204 at once);\n"
	      "                     after e2e-batched (added as for http-...)\n"
	      "                     with its ratio to it\n"
	      "  --http HOST:PORT   with --broker: its HTTP API, for the http-...\n"
	      "                     scenarios (a spawned broker gets a free\n"
	      "                     loopback port)\n"
	      "  --duration S       seconds per scenario (default 5; neighbour:\n"
	      "                     per phase)\n"
	      "  --payload BYTES    event size (default 256; >= 8 for delivery\n"
	      "                     latency, >= 19 over HTTP)\n"
	      "  --producers N, --batch N (events per publish request),\n"
	      "  --subscriptions N (per topic), --rate N (events/s, open loop;\n"
	      "  0 = closed loop)   override every selected scenario's default\n"
	      "  --consumers N, --fetch-batch N, --backlog N (producers wait while\n"
	      "                     more than N events per subscription are unacked;\n"
	      "                     0 = no cap; default: one round of publishes\n"
	      "                     and fetches, producers x batch + consumers x\n"
	      "                     fetch batch)  override scenarios that consume\n"
	      "                     (custom: all of these apply; its defaults are\n"
	      "                     1 producer, batch 1, 1 subscription, no\n"
	      "                     consumer)\n"
	      "  --push-concurrency N  the push scenario's requests in flight\n"
	      "                     (default 16)\n"
	      "  --json             print one JSON object instead of the table\n"
	      "  --no-ceilings      skip the LMDB and nanomsg ceilings (no ratios)\n"
	      "\n"
	      "backlog: on a broker of its own, fill one subscription (4 producers\n"
	      "x 100 events/request) and read RssAnon at the probe and at N, then\n"
	      "drain it (4 consumers fetching 250, acking per fetch) and compare the\n"
	      "drain rate with e2e-batched on an empty queue (from this run, else\n"
	      "run first for --duration); also disk bytes per event at N.\n"
	      "  --backlog-events N  N (default 10000000)\n"
	      "  --backlog-probe N   where RssAnon is first read (default 100000)\n"
	      "restart: publish a backlog, lease part of it (ack deadline 10 min),\n"
	      "stop the broker, start it on the same folder and time spawn -> the\n"
	      "first fetch with a delivery; with a large and a small (1000 / 100)\n"
	      "backlog.\n"
	      "  --restart-pending N  events published (default 1000000)\n"
	      "  --restart-leased N   of them leased at the stop (default 100000)\n"
	      "  --restart-kill       stop with kill -9 too (default: SIGTERM only)\n"
	      "  --phase-limit S      abort backlog / restart when a phase (fill,\n"
	      "                       drain, lease, restart) takes longer (default\n"
	      "                       1800)\n"
	      "neighbour: a healthy subscription H (as e2e-batched) and a neighbour\n"
	      "N on the same topic, phases of --duration, each on a broker of its\n"
	      "own: H alone, then per round N healthy, absent, healthy, failing\n"
	      "every delivery, healthy, slow, healthy, letting leases expire, and a\n"
	      "last healthy; H's acks/s beside each misbehaving N is compared with\n"
	      "the healthy phases around it (target >= 0.9). Then the push cases:\n"
	      "H and N push subscriptions (concurrency 16) to receivers in\n"
	      "handoff-bench, per round N's endpoint healthy, dead (a closed port),\n"
	      "healthy, slow (answers after 800 ms of a 1 s push timeout), healthy,\n"
	      "failing (500), and a last healthy; H = POSTs its receiver got.\n"
	      "  --neighbour-cases all|native|push  which of the two (default all)\n"
	      "  --neighbour-rounds N  repeat the rounds, 1-5 (default 1); a\n"
	      "                       behaviour's ratio is then the median\n"
	      "\n"
	      "Exit status: 0 all ran, 1 a scenario or the set-up failed, 2 usage.\n",
	      f);
}

static int parse_long(const char *flag, const char *s, long min, long max,
		      long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < min || v > max) {
		fprintf(stderr,
			"handoff-bench: %s wants a whole number in %ld..%ld, "
			"not '%s'\n",
			flag, min, max, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_double(const char *flag, const char *s, double min, double max,
			double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || !isfinite(v) || v < min ||
	    v > max) {
		fprintf(stderr,
			"handoff-bench: %s wants a number in %g..%g, not "
			"'%s'\n",
			flag, min, max, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	enum {
		F_BROKER = 256,
		F_SPAWN,
		F_DATA,
		F_PRODUCERS,
		F_CONSUMERS,
		F_BATCH,
		F_FETCH,
		F_PAYLOAD,
		F_SUBS,
		F_DURATION,
		F_RATE,
		F_SCENARIO,
		F_JSON,
		F_NOCEIL,
		F_BACKLOG,
		F_BL_EVENTS,
		F_BL_PROBE,
		F_RS_PENDING,
		F_RS_LEASED,
		F_RS_KILL,
		F_PHASE_LIMIT,
		F_NB_ROUNDS,
		F_PUSH_CONC,
		F_NB_CASES,
		F_HTTP,
		F_HELP,
	};
	static const struct option lo[] = {
		{ "broker", required_argument, NULL, F_BROKER },
		{ "spawn", required_argument, NULL, F_SPAWN },
		{ "data-dir", required_argument, NULL, F_DATA },
		{ "producers", required_argument, NULL, F_PRODUCERS },
		{ "consumers", required_argument, NULL, F_CONSUMERS },
		{ "batch", required_argument, NULL, F_BATCH },
		{ "fetch-batch", required_argument, NULL, F_FETCH },
		{ "payload", required_argument, NULL, F_PAYLOAD },
		{ "subscriptions", required_argument, NULL, F_SUBS },
		{ "duration", required_argument, NULL, F_DURATION },
		{ "rate", required_argument, NULL, F_RATE },
		{ "scenario", required_argument, NULL, F_SCENARIO },
		{ "backlog", required_argument, NULL, F_BACKLOG },
		{ "json", no_argument, NULL, F_JSON },
		{ "no-ceilings", no_argument, NULL, F_NOCEIL },
		{ "backlog-events", required_argument, NULL, F_BL_EVENTS },
		{ "backlog-probe", required_argument, NULL, F_BL_PROBE },
		{ "restart-pending", required_argument, NULL, F_RS_PENDING },
		{ "restart-leased", required_argument, NULL, F_RS_LEASED },
		{ "restart-kill", no_argument, NULL, F_RS_KILL },
		{ "phase-limit", required_argument, NULL, F_PHASE_LIMIT },
		{ "neighbour-rounds", required_argument, NULL, F_NB_ROUNDS },
		{ "push-concurrency", required_argument, NULL, F_PUSH_CONC },
		{ "neighbour-cases", required_argument, NULL, F_NB_CASES },
		{ "http", required_argument, NULL, F_HTTP },
		{ "help", no_argument, NULL, F_HELP },
		{ NULL, 0, NULL, 0 },
	};
	long v;
	int c;

	memset(o, 0, sizeof *o);
	o->duration = 5;
	o->payload = 256;
	o->scenario = "all";
	o->backlog_events = 10000000;
	o->backlog_probe = 100000;
	o->restart_pending = 1000000;
	o->restart_leased = 100000;
	o->phase_limit = 1800;
	o->neighbour_rounds = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case F_BROKER:
			o->broker_url = optarg;
			break;
		case F_SPAWN:
			o->spawn = optarg;
			break;
		case F_DATA:
			o->data_dir = optarg;
			break;
		case F_HTTP:
			o->http = optarg;
			break;
		case F_PRODUCERS:
			if (parse_long("--producers", optarg, 1, 1024, &v))
				return 2;
			o->producers = (int)v;
			o->given |= O_PRODUCERS;
			break;
		case F_CONSUMERS:
			if (parse_long("--consumers", optarg, 0, 1024, &v))
				return 2;
			o->consumers = (int)v;
			o->given |= O_CONSUMERS;
			break;
		case F_BATCH:
			if (parse_long("--batch", optarg, 1, 100000, &v))
				return 2;
			o->batch = (int)v;
			o->given |= O_BATCH;
			break;
		case F_FETCH:
			if (parse_long("--fetch-batch", optarg, 1, 100000, &v))
				return 2;
			o->fetch_batch = (int)v;
			o->given |= O_FETCH;
			break;
		case F_SUBS:
			if (parse_long("--subscriptions", optarg, 1, 1000, &v))
				return 2;
			o->subs = (int)v;
			o->given |= O_SUBS;
			break;
		case F_NB_CASES:
			if (strcmp(optarg, "all") == 0)
				o->neighbour_cases = NB_CASES_ALL;
			else if (strcmp(optarg, "native") == 0)
				o->neighbour_cases = NB_CASES_NATIVE;
			else if (strcmp(optarg, "push") == 0)
				o->neighbour_cases = NB_CASES_PUSH;
			else {
				fprintf(stderr,
					"handoff-bench: --neighbour-cases: "
					"all, native or push\n");
				return 2;
			}
			break;
		case F_PUSH_CONC:
			if (parse_long("--push-concurrency", optarg, 1, 256,
				       &v))
				return 2;
			o->push_concurrency = (int)v;
			o->given |= O_PUSH_CONC;
			break;
		case F_BACKLOG:
			if (parse_long("--backlog", optarg, 0, LONG_MAX / 4096,
				       &v))
				return 2;
			o->backlog = v;
			o->given |= O_BACKLOG;
			break;
		case F_PAYLOAD:
			if (parse_long("--payload", optarg, 0, 16L << 20,
				       &o->payload))
				return 2;
			break;
		case F_DURATION:
			if (parse_double("--duration", optarg, 0.1, 86400,
					 &o->duration))
				return 2;
			break;
		case F_RATE:
			if (parse_double("--rate", optarg, 0, 1e8, &o->rate))
				return 2;
			o->given |= O_RATE;
			break;
		case F_SCENARIO:
			o->scenario = optarg;
			break;
		case F_JSON:
			o->json = true;
			break;
		case F_NOCEIL:
			o->no_ceilings = true;
			break;
		case F_BL_EVENTS:
			if (parse_long("--backlog-events", optarg, 2,
				       1000000000000L, &o->backlog_events))
				return 2;
			break;
		case F_BL_PROBE:
			if (parse_long("--backlog-probe", optarg, 1,
				       1000000000000L, &o->backlog_probe))
				return 2;
			break;
		case F_RS_PENDING:
			if (parse_long("--restart-pending", optarg, 1,
				       1000000000000L, &o->restart_pending))
				return 2;
			break;
		case F_RS_LEASED:
			if (parse_long("--restart-leased", optarg, 1,
				       1000000000000L, &o->restart_leased))
				return 2;
			break;
		case F_RS_KILL:
			o->restart_kill = true;
			break;
		case F_PHASE_LIMIT:
			if (parse_double("--phase-limit", optarg, 1, 7 * 86400,
					 &o->phase_limit))
				return 2;
			break;
		case F_NB_ROUNDS:
			if (parse_long("--neighbour-rounds", optarg, 1,
				       NEIGHBOUR_MAX_ROUNDS,
				       &o->neighbour_rounds))
				return 2;
			break;
		case 'h':
		case F_HELP:
			usage(stdout);
			return 1;
		default:
			if (optopt)
				fprintf(stderr,
					"handoff-bench: bad or incomplete "
					"option -%c\n",
					optopt);
			else
				fprintf(stderr,
					"handoff-bench: unknown option '%s'\n",
					argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "handoff-bench: unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}
	if (o->broker_url && o->spawn) {
		fprintf(stderr,
			"handoff-bench: give --broker or --spawn, not both\n");
		return 2;
	}
	if (o->http && !o->broker_url) {
		fprintf(stderr, "handoff-bench: --http goes with --broker (a "
				"spawned broker serves HTTP on a port of its "
				"own)\n");
		return 2;
	}
	if (o->backlog_probe >= o->backlog_events) {
		fprintf(stderr, "handoff-bench: --backlog-probe must be below "
				"--backlog-events\n");
		return 2;
	}
	if (o->restart_leased > o->restart_pending) {
		fprintf(stderr, "handoff-bench: --restart-leased must not "
				"exceed --restart-pending\n");
		return 2;
	}
	return 0;
}

/* Apply the flags to a scenario's defaults; resolve the backlog cap. */
static void apply_overrides(struct scen_params *p, const struct opts *o,
			    bool custom)
{
	struct scen_params before = *p;
	bool consumes = custom || p->consumers > 0;

	if (o->given & O_PRODUCERS)
		p->producers = o->producers;
	if (o->given & O_BATCH)
		p->batch = o->batch;
	if (o->given & O_SUBS)
		p->subs = o->subs;
	if (o->given & O_RATE)
		p->rate = o->rate;
	if (consumes && (o->given & O_CONSUMERS))
		p->consumers = o->consumers;
	if (consumes && (o->given & O_FETCH))
		p->fetch_batch = o->fetch_batch;
	if (consumes && (o->given & O_BACKLOG))
		p->backlog = o->backlog;
	if (p->push_concurrency > 0 && (o->given & O_PUSH_CONC))
		p->push_concurrency = o->push_concurrency;
	p->overridden = memcmp(&before, p, sizeof before) != 0;
	if (p->backlog == BACKLOG_AUTO)
		p->backlog =
			p->consumers > 0 && p->rate == 0 ?
				p->producers * (long)p->batch +
					p->consumers * (long)p->fetch_batch :
				0;
}

/* Add scenario_defs[i]; an HTTP or push one right after its twin (added
 * when it is not the scenario just before, or just before the others
 * compared with it: `http,http` runs two pairs, `all` runs e2e-batched,
 * push, http-e2e-batched). */
static void add_def(const struct opts *o, struct scen_params *out, int *n,
		    int max, int i)
{
	const struct scen_params *d = &scenario_defs[i];
	int before = *n - 1;

	while (d->twin && before >= 0 && out[before].twin &&
	       strcmp(out[before].twin, d->twin) == 0 &&
	       strcmp(out[before].name, d->name) != 0)
		before--;
	if (d->twin && (before < 0 || strcmp(out[before].name, d->twin) != 0)) {
		for (int k = 0; k < N_DEFS && *n < max; k++) {
			if (strcmp(scenario_defs[k].name, d->twin) == 0) {
				out[*n] = scenario_defs[k];
				apply_overrides(&out[(*n)++], o, false);
			}
		}
	}
	if (*n < max) {
		out[*n] = *d;
		apply_overrides(&out[(*n)++], o, false);
	}
}

/* Fill out[] from --scenario; returns the count, -1 on a bad name.
 * without_http: `all` leaves the HTTP scenarios out (no endpoint). */
static int select_scenarios(const struct opts *o, bool without_http,
			    struct scen_params *out, int max)
{
	char list[512];
	int n = 0;

	if (strlen(o->scenario) >= sizeof list) {
		fprintf(stderr, "handoff-bench: --scenario too long\n");
		return -1;
	}
	snprintf(list, sizeof list, "%s", o->scenario);
	for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		bool found = false;
		if (strcmp(tok, "all") == 0) {
			for (int i = 0; i < N_DEFS && n < max; i++)
				if (!(without_http && scenario_defs[i].http))
					add_def(o, out, &n, max, i);
			if (without_http)
				fprintf(stderr,
					"handoff-bench: without --http, all "
					"leaves the http-... scenarios out\n");
			continue;
		}
		if (strcmp(tok, "http") == 0) {
			if (without_http)
				goto no_http;
			for (int i = 0; i < N_DEFS && n < max; i++)
				if (scenario_defs[i].http)
					add_def(o, out, &n, max, i);
			continue;
		}
		if (strcmp(tok, "custom") == 0 && n < max) {
			out[n] = custom_def;
			apply_overrides(&out[n++], o, true);
			continue;
		}
		for (int i = 0; i < N_DEFS; i++) {
			if (strcmp(tok, scenario_defs[i].name) == 0 &&
			    n < max) {
				if (without_http && scenario_defs[i].http)
					goto no_http;
				add_def(o, out, &n, max, i);
				found = true;
			}
		}
		for (int i = 0; i < N_SPECIAL; i++) {
			if (strcmp(tok, special_defs[i].name) == 0 && n < max) {
				if (o->broker_url) {
					fprintf(stderr,
						"handoff-bench: %s needs "
						"--spawn (brokers of its "
						"own), not --broker\n",
						tok);
					return -1;
				}
				out[n++] = special_defs[i];
				found = true;
			}
		}
		if (!found) {
			fprintf(stderr,
				"handoff-bench: no scenario '%s' (all, custom, "
				"http, publish-k4-e100, publish-k8-e1, "
				"publish-k1-e1, e2e-batched, fanout-4, "
				"lat-1k, http-publish-k4-e100, "
				"http-publish-k8-e1, http-e2e-batched, push; "
				"backlog, restart, neighbour)\n",
				tok);
			return -1;
		}
	}
	if (n == 0) {
		fprintf(stderr, "handoff-bench: --scenario names none\n");
		return -1;
	}
	return n;
no_http:
	fprintf(stderr,
		"handoff-bench: the http scenarios need --http HOST:PORT with "
		"--broker\n");
	return -1;
}

/* handoffd beside us: the build tree (tools/bench/ -> broker/), or the
 * same bin folder once installed. */
static bool find_handoffd(char *out, size_t len)
{
	char self[BENCH_PATH_LEN];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

	if (n <= 0)
		return false;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash == NULL)
		return false;
	*slash = '\0';
	static const char *const rel[] = { "../../broker/handoffd",
					   "handoffd" };
	for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
		int w = snprintf(out, len, "%s/%s", self, rel[i]);
		if (w > 0 && (size_t)w < len && access(out, X_OK) == 0)
			return true;
	}
	return false;
}

static double ceiling_seconds(double duration)
{
	if (duration >= 2)
		return 2;
	return duration < 0.5 ? 0.5 : duration;
}

static void run_lmdb_ceilings(const char *workdir, uint32_t payload,
			      double secs, struct ceilings *c)
{
	char dir[BENCH_PATH_LEN + 32], err[BENCH_ERR_LEN - 64];

	snprintf(dir, sizeof dir, "%s/ceil-lmdb1", workdir);
	if (ceiling_lmdb(dir, 1, payload, secs, &c->lmdb1, err, sizeof err) &&
	    c->error[0] == '\0')
		snprintf(c->error, sizeof c->error, "%s", err);
	snprintf(dir, sizeof dir, "%s/ceil-lmdb100", workdir);
	if (ceiling_lmdb(dir, 100, payload, secs, &c->lmdb100, err,
			 sizeof err) &&
	    c->error[0] == '\0')
		snprintf(c->error, sizeof c->error, "%s", err);
}

static void broker_version(const char *url, char *out, size_t len)
{
	handoff_client *c = NULL;
	handoff_stats *st = NULL;

	out[0] = '\0';
	if (bench_client_open(url, "bench-admin", 10000, &c) != HANDOFF_OK)
		return;
	if (handoff_get_stats(c, &st) == HANDOFF_OK) {
		snprintf(out, len, "%s", st->version ? st->version : "?");
		handoff_stats_free(st);
	}
	handoff_close(c);
}

int main(int argc, char **argv)
{
	struct opts o;
	struct machine_info machine;
	struct ceilings ceil;
	struct broker broker;
	struct scen_result res[MAX_SELECTED];
	struct scen_params sel[MAX_SELECTED];
	char workdir[BENCH_PATH_LEN] = "", err[BENCH_ERR_LEN];
	char spawn_path[BENCH_PATH_LEN], version[64] = "";
	const char *url = NULL;
	bool spawned = false, setup_ok = true, all_ok = true;
	int n_sel, status = 1;

	memset(&ceil, 0, sizeof ceil);
	memset(&broker, 0, sizeof broker);
	memset(res, 0, sizeof res);

	int prc = parse_args(argc, argv, &o);
	if (prc)
		return prc == 1 ? 0 : 2;
	n_sel = select_scenarios(&o, o.broker_url && !o.http, sel,
				 MAX_SELECTED);
	if (n_sel < 0)
		return 2;
	if (!o.broker_url && !o.spawn) {
		if (!find_handoffd(spawn_path, sizeof spawn_path)) {
			fprintf(stderr,
				"handoff-bench: give --spawn PATH_TO_HANDOFFD "
				"or --broker URL\n");
			return 2;
		}
		o.spawn = spawn_path;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	machine_info_read(&machine, argc, argv);
	if (o.spawn || !o.no_ceilings) {
		if (workdir_create(o.data_dir ? o.data_dir : ".", workdir,
				   sizeof workdir, err, sizeof err)) {
			fprintf(stderr, "handoff-bench: %s\n", err);
			return 1;
		}
	}

	double csecs = ceiling_seconds(o.duration);
	if (!o.no_ceilings) {
		/* no nanomsg socket may exist before the spawn: LMDB first */
		if (!o.json)
			fprintf(stderr,
				"handoff-bench: measuring ceilings...\n");
		ceil.ran = true;
		run_lmdb_ceilings(workdir, (uint32_t)o.payload, csecs, &ceil);
	}
	if (o.spawn) {
		broker.with_http = true;
		if (broker_spawn(&broker, o.spawn, workdir,
				 (uint32_t)(o.batch > o.fetch_batch ?
						    o.batch :
						    o.fetch_batch),
				 (uint32_t)o.payload, err, sizeof err)) {
			fprintf(stderr, "handoff-bench: %s\n", err);
			broker_stop(&broker);
			broker_log_tail(&broker, stderr, 20);
			setup_ok = false;
			goto finish;
		}
		spawned = true;
		url = broker.proc.url;
	} else {
		url = o.broker_url;
	}
	if (!o.no_ceilings && !bench_interrupted) {
		char e2[BENCH_ERR_LEN - 64];
		if (ceiling_nn_pushpull((uint32_t)o.payload, csecs, &ceil.nn,
					e2, sizeof e2) &&
		    ceil.error[0] == '\0')
			snprintf(ceil.error, sizeof ceil.error, "%s", e2);
	}
	broker_version(url, version, sizeof version);
	if (version[0] == '\0') {
		fprintf(stderr,
			"handoff-bench: no answer from the broker at %s\n",
			url);
		setup_ok = false;
		goto finish;
	}

	/* the backlog's baseline: e2e-batched as defined, no flags */
	struct opts no_flags;
	struct scen_params e2e = scenario_defs[E2E_DEF];
	memset(&no_flags, 0, sizeof no_flags);
	apply_overrides(&e2e, &no_flags, false);

	char http_host[64] = "127.0.0.1";
	unsigned http_port = spawned ? broker.http_port : 0;
	if (o.http) {
		const char *colon = strrchr(o.http, ':');
		long port = colon ? strtol(colon + 1, NULL, 10) : 0;
		const char *host = o.http;
		size_t hl = colon ? (size_t)(colon - o.http) : 0;
		if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
			host++; /* [v6]:port */
			hl -= 2;
		}
		if (port <= 0 || port > 65535 || hl == 0 ||
		    hl >= sizeof http_host) {
			fprintf(stderr,
				"handoff-bench: --http %s: not HOST:PORT\n",
				o.http);
			setup_ok = false;
			goto finish;
		}
		snprintf(http_host, sizeof http_host, "%.*s", (int)hl, host);
		http_port = (unsigned)port;
	}
	struct bench_ctx ctx = {
		.url = url,
		.http_host = http_host,
		.http_port = http_port,
		.payload = (uint32_t)o.payload,
		.duration_s = o.duration,
		.broker = spawned ? &broker : NULL,
		.run_id = (int)getpid(),
		.progress = !o.json,
		.exe = spawned ? o.spawn : NULL,
		.workdir = spawned ? workdir : NULL,
		.phase_limit_s = o.phase_limit,
		.backlog_events = o.backlog_events,
		.backlog_probe = o.backlog_probe,
		.restart_pending = o.restart_pending,
		.restart_leased = o.restart_leased,
		.restart_kill = o.restart_kill,
		.neighbour_rounds = (int)o.neighbour_rounds,
		.neighbour_cases = o.neighbour_cases,
		.e2e = &e2e,
	};
	for (int i = 0; i < n_sel && !bench_interrupted; i++) {
		int rc;
		res[i].p = sel[i];
		ctx.index = i + 1;
		if (!o.json)
			fprintf(stderr, "handoff-bench: %s...\n", sel[i].name);
		switch (sel[i].kind) {
		case SCEN_BACKLOG:
			/* e2e-batched earlier in this run, as defined */
			ctx.e2e_events_per_s = 0;
			for (int j = 0; j < i; j++)
				if (res[j].p.kind == SCEN_LOAD &&
				    strcmp(res[j].p.name, e2e.name) == 0 &&
				    !res[j].p.overridden && !res[j].failed &&
				    res[j].events_per_s > 0)
					ctx.e2e_events_per_s =
						res[j].events_per_s;
			rc = backlog_run(&ctx, &res[i]);
			break;
		case SCEN_RESTART:
			rc = restart_run(&ctx, &res[i]);
			break;
		case SCEN_NEIGHBOUR:
			rc = neighbour_run(&ctx, &res[i]);
			break;
		default:
			rc = scenario_run(&ctx, &res[i]);
			break;
		}
		if (rc != 0) {
			all_ok = false;
			if (!o.json)
				fprintf(stderr,
					"handoff-bench: %s failed: %s\n",
					sel[i].name, res[i].error);
		}
	}
	for (int i = 0; i < n_sel; i++)
		ratios_compute(&res[i], &ceil, res, n_sel);
	if (!spawned) {
		for (int i = 0; i < n_sel; i++)
			scenario_cleanup(&ctx, &res[i]);
	}

finish:
	if (bench_interrupted) {
		fprintf(stderr, "handoff-bench: interrupted\n");
		all_ok = false;
	}
	if (spawned) {
		bool was_alive = broker_alive(&broker);
		broker_stop(&broker);
		if (!was_alive || !all_ok)
			broker_log_tail(&broker, stderr, 20);
		if (!was_alive) {
			char how[64];
			broker_exit_text(&broker, how, sizeof how);
			fprintf(stderr,
				"handoff-bench: handoffd had exited (%s)\n",
				how);
		}
	}
	broker_proc_remove_dir(workdir);

	if (setup_ok) {
		struct report rep = {
			.machine = &machine,
			.mode = spawned ? "spawned" : "running broker at",
			.url = url,
			.workdir = workdir[0] ? workdir : "-",
			.broker_version = version[0] ? version : NULL,
			.payload = (uint32_t)o.payload,
			.duration_s = o.duration,
			.ceil = &ceil,
			.results = res,
			.n_results = n_sel,
			.ok = all_ok,
		};
		if (o.json)
			report_json(stdout, &rep);
		else
			report_table(stdout, &rep);
		status = all_ok ? 0 : 1;
	}
	for (int i = 0; i < n_sel; i++) {
		free(res[i].confirm);
		free(res[i].deliver);
	}
	return status;
}
