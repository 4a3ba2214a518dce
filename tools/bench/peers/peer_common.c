/*
 * peer_common.c — the shared half of the peer-broker clients: command line,
 * clocks, payload stamps, latency histograms and the JSON result line.
 * See peer_common.h for the interface and the workloads.
 */
#include "peer_common.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(const char *name)
{
	fprintf(stderr,
		"usage: peer-%s --workload w256|w1|e2e|lat1k [--duration SECONDS]\n"
		"       [--host 127.0.0.1] [--port N] [--url URL] [--payload 256]\n"
		"       [--variant NAME]\n"
		"Prints one JSON line with the rate and latency percentiles.\n",
		name ? name : "NAME");
}

const char *peer_workload_name(enum peer_workload w)
{
	switch (w) {
	case PEER_W256:
		return "w256";
	case PEER_W1:
		return "w1";
	case PEER_E2E:
		return "e2e";
	case PEER_LAT1K:
		return "lat1k";
	}
	return "unknown";
}

static int parse_workload(const char *s, enum peer_workload *w)
{
	static const enum peer_workload all[] = { PEER_W256, PEER_W1, PEER_E2E,
						  PEER_LAT1K };
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
		if (strcmp(s, peer_workload_name(all[i])) == 0) {
			*w = all[i];
			return 0;
		}
	}
	return -1;
}

/*
 * Everything but a->name is reset to its default first, so a caller may
 * pass an uninitialised struct with only the name set. --port stays 0 when
 * not given: each peer then uses its own default port.
 */
int peer_parse_args(struct peer_args *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "workload", required_argument, NULL, 'w' },
		{ "duration", required_argument, NULL, 'd' },
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "url", required_argument, NULL, 'u' },
		{ "payload", required_argument, NULL, 's' },
		{ "variant", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = a->name;
	int have_workload = 0;
	int c;
	char *end;

	a->workload = PEER_W256;
	a->duration_s = 5.0;
	a->host = "127.0.0.1";
	a->port = 0;
	a->url = NULL;
	a->payload = 256;
	a->variant = "";

	optind = 1;
	while ((c = getopt_long(argc, argv, "w:d:H:p:u:s:v:h", opts, NULL)) !=
	       -1) {
		switch (c) {
		case 'w':
			if (parse_workload(optarg, &a->workload) != 0) {
				fprintf(stderr,
					"peer-%s: unknown workload '%s'\n",
					name, optarg);
				usage(name);
				return 2;
			}
			have_workload = 1;
			break;
		case 'd':
			errno = 0;
			a->duration_s = strtod(optarg, &end);
			if (errno || *end || !(a->duration_s > 0) ||
			    a->duration_s > 86400) {
				fprintf(stderr,
					"peer-%s: bad --duration '%s'\n", name,
					optarg);
				usage(name);
				return 2;
			}
			break;
		case 'H':
			a->host = optarg;
			break;
		case 'p': {
			long v;
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || v <= 0 || v > 65535) {
				fprintf(stderr, "peer-%s: bad --port '%s'\n",
					name, optarg);
				usage(name);
				return 2;
			}
			a->port = (int)v;
			break;
		}
		case 'u':
			a->url = optarg;
			break;
		case 's': {
			unsigned long long v;
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || v < 8 || v > 16u * 1024 * 1024) {
				fprintf(stderr,
					"peer-%s: bad --payload '%s' "
					"(8 .. 16 MiB)\n",
					name, optarg);
				usage(name);
				return 2;
			}
			a->payload = (size_t)v;
			break;
		}
		case 'v':
			a->variant = optarg;
			break;
		case 'h':
		default:
			usage(name);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "peer-%s: unexpected argument '%s'\n", name,
			argv[optind]);
		usage(name);
		return 2;
	}
	if (!have_workload) {
		fprintf(stderr, "peer-%s: --workload is required\n", name);
		usage(name);
		return 2;
	}
	return 0;
}

/* ---- clocks and stamps ------------------------------------------------ */

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t peer_mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

uint64_t peer_real_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

void peer_stamp(void *buf, size_t len)
{
	unsigned char *p = buf;
	uint64_t now;

	if (len < 8)
		return;
	now = peer_real_ns();
	memcpy(p, &now, 8);
	/* Printable filler so text protocols and logs stay readable. */
	for (size_t i = 8; i < len; i++)
		p[i] = (unsigned char)('a' + (i % 26));
}

uint64_t peer_stamp_age_ns(const void *buf, size_t len)
{
	uint64_t then, now;

	if (len < 8)
		return 0;
	memcpy(&then, buf, 8);
	now = peer_real_ns();
	return now > then ? now - then : 0;
}

/* ---- histogram -------------------------------------------------------- */

/*
 * Values are kept in units of 16 ns. Units below 64 (about 1 us) each have
 * a bucket; above, every power of two is split into 64 linear buckets, so a
 * bucket is at most 1/64 of its lower bound wide (< 1.6 % error, < 0.8 %
 * from the midpoint reported). 60 s is bucket ~1730 of the 2048.
 */
#define HIST_SUB_BITS	6
#define HIST_SUB	(1u << HIST_SUB_BITS)
#define HIST_UNIT_SHIFT 4
#define HIST_BUCKETS \
	(sizeof(((struct peer_hist *)0)->counts) / sizeof(uint64_t))

static size_t hist_index(uint64_t ns)
{
	uint64_t u = ns >> HIST_UNIT_SHIFT;
	unsigned msb, shift;
	size_t idx;

	if (u < HIST_SUB)
		return (size_t)u;
	msb = 63u - (unsigned)__builtin_clzll(u);
	shift = msb - HIST_SUB_BITS;
	idx = (size_t)(shift + 1) * HIST_SUB +
	      (size_t)((u >> shift) - HIST_SUB);
	return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* Midpoint of bucket idx in ns. */
static double hist_value_ns(size_t idx)
{
	double lo, width;

	if (idx < HIST_SUB) {
		lo = (double)idx;
		width = 1.0;
	} else {
		unsigned shift = (unsigned)(idx / HIST_SUB) - 1;
		uint64_t sub = idx % HIST_SUB;
		lo = (double)((HIST_SUB + sub) << shift);
		width = (double)(1ull << shift);
	}
	return (lo + width / 2.0) * (double)(1u << HIST_UNIT_SHIFT);
}

void peer_hist_add(struct peer_hist *h, uint64_t ns)
{
	h->counts[hist_index(ns)]++;
	h->n++;
}

double peer_hist_ms(const struct peer_hist *h, double q)
{
	uint64_t rank, seen = 0;

	if (h->n == 0)
		return 0.0;
	if (q < 0)
		q = 0;
	if (q > 100)
		q = 100;
	rank = (uint64_t)ceil(q / 100.0 * (double)h->n);
	if (rank < 1)
		rank = 1;
	for (size_t i = 0; i < HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= rank)
			return hist_value_ns(i) / 1e6;
	}
	return hist_value_ns(HIST_BUCKETS - 1) / 1e6;
}

/* ---- report ----------------------------------------------------------- */

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p;
	     p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (*p < 0x20)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

static double finite_or_zero(double v)
{
	return isfinite(v) ? v : 0.0;
}

int peer_report(const struct peer_args *a, const struct peer_result *r)
{
	FILE *f = stdout;

	fputs("{\"peer\":", f);
	json_string(f, a->name);
	fputs(",\"variant\":", f);
	json_string(f, a->variant);
	fputs(",\"workload\":", f);
	json_string(f, peer_workload_name(a->workload));
	fprintf(f, ",\"rate\":%.1f", finite_or_zero(r->rate));
	fprintf(f, ",\"confirm_p50_ms\":%.3f,\"confirm_p99_ms\":%.3f",
		peer_hist_ms(&r->confirm, 50), peer_hist_ms(&r->confirm, 99));
	fprintf(f, ",\"deliver_p50_ms\":%.3f,\"deliver_p99_ms\":%.3f",
		peer_hist_ms(&r->deliver, 50), peer_hist_ms(&r->deliver, 99));
	fprintf(f, ",\"count\":%llu,\"error\":", (unsigned long long)r->count);
	json_string(f, r->error);
	fputs("}\n", f);
	fflush(f);
	if (r->error[0]) {
		fprintf(stderr, "peer-%s %s: %s\n", a->name,
			peer_workload_name(a->workload), r->error);
		return 1;
	}
	return 0;
}

/* ---- pacing ----------------------------------------------------------- */

uint64_t peer_due_ns(uint64_t start, uint64_t i, double rate)
{
	if (!(rate > 0))
		return start;
	return start + (uint64_t)((double)i * 1e9 / rate);
}

void peer_sleep_until_ns(uint64_t mono_ns)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(mono_ns / 1000000000u);
	ts.tv_nsec = (long)(mono_ns % 1000000000u);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

void peer_consumer_result(const struct peer_args *a, struct peer_consumer *c,
			  int producer_rc, const char *verb,
			  struct peer_result *r)
{
	if (!r->error[0] && c->err[0])
		snprintf(r->error, sizeof r->error, "consumer: %.200s", c->err);
	if (a->workload == PEER_E2E) {
		uint64_t acked = atomic_load(&c->acked);
		r->count = acked;
		r->rate = (double)acked / a->duration_s;
		return;
	}
	r->deliver = c->deliver;
	if (producer_rc == 0 && !r->error[0] && c->acked_total < c->expect)
		snprintf(r->error, sizeof r->error, "consumer %s %llu of %llu",
			 verb, (unsigned long long)c->acked_total,
			 (unsigned long long)c->expect);
}
