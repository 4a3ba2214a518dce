/*
 * main.c — handoff-torture: the fault driver, and (with --role) the worker
 * processes it spawns from its own executable.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <signal.h>
#include <unistd.h>

#include "driver.h"
#include "handoff.h"
#include "roles.h"
#include "tt.h"

/*
 * SIGTERM and SIGINT stay blocked in every thread of a worker (the mask is
 * set before the first nanomsg socket starts its threads) and are polled
 * between calls: a signal that interrupted a call would make the client
 * resend in the middle of stopping, and a late reply to the first copy
 * would then sit unread in nanomsg when the socket closes.
 */
static sigset_t stop_signals;

void role_setup_signals(void)
{
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* A worker never outlives its driver. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(ROLE_EXIT_CHAOS);
}

bool role_should_stop(void)
{
	static bool stop;
	sigset_t pending;
	if (!stop && sigpending(&pending) == 0)
		stop = sigismember(&pending, SIGTERM) ||
		       sigismember(&pending, SIGINT);
	return stop;
}

void role_call_failed(const struct role_args *a, int rc)
{
	static bool done;
	char path[TT_PATH + 96];
	if (rc != HANDOFF_ETIMEDOUT || done)
		return;
	done = true;
	tt_fmt(path, sizeof(path), "%s/logs/stuck-%s.txt", a->dir, a->name);
	tt_diagnose(getpid(), path, "a call got no reply within its deadline");
	fprintf(stderr, "worker=%s event=diagnosed path=%s\n", a->name, path);
}

void role_rec_path(const struct role_args *a, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s/rec/%s.rec", a->dir, a->name);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: handoff-torture --mode kill|powercut|io|none [options]\n"
		"\n"
		"Runs a real handoffd under faults with producer and consumer processes,\n"
		"drains it, and checks with handoff-check's checker that nothing was lost.\n"
		"\n"
		"  --handoffd PATH       broker binary (default $HANDOFFD)\n"
		"  --faultfs-lib PATH    libfaultfs.so (default $FAULTFS_LIB; powercut, io)\n"
		"  --faultfs-image PATH  faultfs-image (default $FAULTFS_IMAGE; powercut)\n"
		"  --dir DIR             run folder to create (default $TMPDIR/hot-XXXXXX)\n"
		"  --seconds S           length of the fault phase (0 = no limit)\n"
		"  --cycles N            kill: SIGKILL/restart cycles (default 100 without\n"
		"                        --seconds)\n"
		"  --cuts N              powercut: power cuts (default 20 without --seconds)\n"
		"  --min-faults N        fail if fewer cycles/cuts/k-runs were made (default:\n"
		"                        the count asked for, or 1 with --seconds)\n"
		"  --kill-min-ms MS      shortest uptime before a kill/cut (default 20)\n"
		"  --kill-max-ms MS      longest (default 1000)\n"
		"  --negative-control    powercut with HANDOFF_TEST_NOSYNC=1: exit 0 only if\n"
		"                        loss is found\n"
		"  --what write|sync|both  io: which call fails (default both)\n"
		"  --k-max K             io: k = 1..K (default 0: until k passes every\n"
		"                        write/sync of the workload)\n"
		"  --k-step N            io: k = 1, 1+N, 1+2N, ... (default 1: every k)\n"
		"  --producers N         producer processes (default 3)\n"
		"  --consumers N         consumer processes per subscription (default 2)\n"
		"  --rate N              events/s per producer (default 150)\n"
		"  --drain-seconds S     final drain limit (default 120)\n"
		"  --check-threads N     parallel trace handles of the checker (default 4)\n"
		"  --seed N              (default: time and pid; printed)\n"
		"  --keep                keep the run folder when the run passes\n"
		"\n"
		"Exit status: 0 passed (negative control: loss was found), 1 failed,\n"
		"2 usage.\n");
}

enum {
	O_MODE = 256,
	O_HANDOFFD,
	O_FLIB,
	O_FIMAGE,
	O_DIR,
	O_SECONDS,
	O_CYCLES,
	O_CUTS,
	O_MIN,
	O_KMIN,
	O_KMAX_MS,
	O_NEG,
	O_WHAT,
	O_KMAX,
	O_PROD,
	O_CONS,
	O_RATE,
	O_DRAIN,
	O_THREADS,
	O_SEED,
	O_KEEP,
	O_ROLE,
	O_URL,
	O_NAME,
	O_SUB,
	O_CLEAN,
	O_HELP,
	O_KSTEP
};

static bool parse_u(const char *s, unsigned *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (!*s || *end || v > 100000000ul)
		return false;
	*out = (unsigned)v;
	return true;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mode", required_argument, NULL, O_MODE },
		{ "handoffd", required_argument, NULL, O_HANDOFFD },
		{ "faultfs-lib", required_argument, NULL, O_FLIB },
		{ "faultfs-image", required_argument, NULL, O_FIMAGE },
		{ "dir", required_argument, NULL, O_DIR },
		{ "seconds", required_argument, NULL, O_SECONDS },
		{ "cycles", required_argument, NULL, O_CYCLES },
		{ "cuts", required_argument, NULL, O_CUTS },
		{ "min-faults", required_argument, NULL, O_MIN },
		{ "kill-min-ms", required_argument, NULL, O_KMIN },
		{ "kill-max-ms", required_argument, NULL, O_KMAX_MS },
		{ "negative-control", no_argument, NULL, O_NEG },
		{ "what", required_argument, NULL, O_WHAT },
		{ "k-max", required_argument, NULL, O_KMAX },
		{ "k-step", required_argument, NULL, O_KSTEP },
		{ "producers", required_argument, NULL, O_PROD },
		{ "consumers", required_argument, NULL, O_CONS },
		{ "rate", required_argument, NULL, O_RATE },
		{ "drain-seconds", required_argument, NULL, O_DRAIN },
		{ "check-threads", required_argument, NULL, O_THREADS },
		{ "seed", required_argument, NULL, O_SEED },
		{ "keep", no_argument, NULL, O_KEEP },
		{ "role", required_argument, NULL, O_ROLE },
		{ "url", required_argument, NULL, O_URL },
		{ "name", required_argument, NULL, O_NAME },
		{ "sub", required_argument, NULL, O_SUB },
		{ "clean", no_argument, NULL, O_CLEAN },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct drv_opts o = {
		.handoffd = getenv("HANDOFFD"),
		.faultfs_lib = getenv("FAULTFS_LIB"),
		.faultfs_image = getenv("FAULTFS_IMAGE"),
		.kill_min_ms = 20,
		.kill_max_ms = 1000,
		.producers = 3,
		.consumers = 2,
		.rate = 150,
		.drain_seconds = 120,
		.check_threads = 4,
		.seed = (uint64_t)tt_wall_ms() ^ ((uint64_t)getpid() << 32),
	};
	struct role_args ra = { 0 };
	const char *role = NULL;
	bool min_set = false, bad = false;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case O_MODE:
			o.mode = optarg;
			break;
		case O_HANDOFFD:
			o.handoffd = optarg;
			break;
		case O_FLIB:
			o.faultfs_lib = optarg;
			break;
		case O_FIMAGE:
			o.faultfs_image = optarg;
			break;
		case O_DIR:
			o.dir = optarg;
			ra.dir = optarg;
			break;
		case O_SECONDS:
			bad |= !parse_u(optarg, &o.seconds);
			break;
		case O_CYCLES:
			bad |= !parse_u(optarg, &o.cycles);
			break;
		case O_CUTS:
			bad |= !parse_u(optarg, &o.cuts);
			break;
		case O_MIN:
			bad |= !parse_u(optarg, &o.min_faults);
			min_set = true;
			break;
		case O_KMIN:
			bad |= !parse_u(optarg, &o.kill_min_ms);
			break;
		case O_KMAX_MS:
			bad |= !parse_u(optarg, &o.kill_max_ms);
			break;
		case O_NEG:
			o.negative_control = true;
			break;
		case O_WHAT:
			o.what = optarg;
			break;
		case O_KMAX:
			bad |= !parse_u(optarg, &o.k_max);
			break;
		case O_KSTEP:
			bad |= !parse_u(optarg, &o.k_step);
			break;
		case O_PROD:
			bad |= !parse_u(optarg, &o.producers);
			break;
		case O_CONS:
			bad |= !parse_u(optarg, &o.consumers);
			break;
		case O_RATE:
			bad |= !parse_u(optarg, &o.rate);
			ra.rate = o.rate;
			break;
		case O_DRAIN:
			bad |= !parse_u(optarg, &o.drain_seconds);
			break;
		case O_THREADS:
			bad |= !parse_u(optarg, &o.check_threads);
			break;
		case O_SEED:
			o.seed = strtoull(optarg, NULL, 10);
			ra.seed = o.seed;
			break;
		case O_KEEP:
			o.keep = true;
			break;
		case O_ROLE:
			role = optarg;
			break;
		case O_URL:
			ra.url = optarg;
			break;
		case O_NAME:
			ra.name = optarg;
			break;
		case O_SUB:
			ra.sub = optarg;
			break;
		case O_CLEAN:
			ra.clean = true;
			break;
		case O_HELP:
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (bad || optind < argc) {
		usage(stderr);
		return 2;
	}

	if (role) {
		if (!ra.url || !ra.dir || !ra.name) {
			fprintf(stderr, "handoff-torture: --role needs --url, "
					"--dir and --name\n");
			return 2;
		}
		if (strcmp(role, "producer") == 0)
			return producer_main(&ra);
		if (strcmp(role, "consumer") == 0)
			return consumer_main(&ra);
		if (strcmp(role, "receiver") == 0)
			return receiver_main(&ra);
		fprintf(stderr, "handoff-torture: unknown role %s\n", role);
		return 2;
	}

	if (!o.mode || (strcmp(o.mode, "kill") && strcmp(o.mode, "powercut") &&
			strcmp(o.mode, "io") && strcmp(o.mode, "none"))) {
		usage(stderr);
		return 2;
	}
	if (!o.handoffd || !*o.handoffd) {
		fprintf(stderr,
			"handoff-torture: give --handoffd or $HANDOFFD\n");
		return 2;
	}
	bool pc = strcmp(o.mode, "powercut") == 0;
	if ((pc || strcmp(o.mode, "io") == 0) &&
	    (!o.faultfs_lib || !*o.faultfs_lib)) {
		fprintf(stderr,
			"handoff-torture: %s mode needs --faultfs-lib or "
			"$FAULTFS_LIB\n",
			o.mode);
		return 2;
	}
	if (pc && (!o.faultfs_image || !*o.faultfs_image)) {
		fprintf(stderr, "handoff-torture: powercut mode needs "
				"--faultfs-image or $FAULTFS_IMAGE\n");
		return 2;
	}
	if (o.negative_control && !pc) {
		fprintf(stderr, "handoff-torture: --negative-control is a "
				"powercut option\n");
		return 2;
	}
	if (o.kill_max_ms < o.kill_min_ms) {
		fprintf(stderr,
			"handoff-torture: --kill-max-ms < --kill-min-ms\n");
		return 2;
	}
	if (strcmp(o.mode, "kill") == 0 && !o.cycles && !o.seconds)
		o.cycles = 100;
	if (pc && !o.cuts && !o.seconds)
		o.cuts = 20;
	if (strcmp(o.mode, "none") == 0 && !o.seconds)
		o.seconds = 20;
	if (!min_set) {
		unsigned want = pc ? o.cuts : o.cycles;
		o.min_faults = strcmp(o.mode, "none") == 0 ? 0 :
			       (want && !o.seconds)	   ? want :
							     1;
	}
	if (o.producers == 0 || o.consumers == 0) {
		fprintf(stderr,
			"handoff-torture: need producers and consumers\n");
		return 2;
	}
	return driver_main(&o);
}
