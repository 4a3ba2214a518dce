/*
 * peer_common.h — what every peer client of peers.sh shares: the
 * command line, the four workloads, latency histograms and the one JSON
 * line each run prints. One client program per peer (peer_redis.c,
 * peer_rabbitmq.c, peer_beanstalkd.c, peer_nats.c, peer_handoff.c).
 *
 *   peer-NAME --workload w256|w1|e2e|lat1k --duration SECONDS
 *             --host 127.0.0.1 --port N [--url URL] [--payload 256]
 *             [--variant NAME]        (rabbitmq: quorum|classic)
 *
 * Workloads (256-byte payloads unless --payload):
 *   w256   one producer, up to 256 published and not yet confirmed
 *   w1     one producer, one publish at a time (wait for each confirm)
 *   e2e    one producer (w256 style) + one consumer acking each message;
 *          rate = messages acked per second
 *   lat1k  open loop at 1,000 msgs/s from one producer, one consumer
 *          acking each: confirm and delivery latency percentiles
 * Delivery latency uses a CLOCK_REALTIME ns stamp in the payload's first
 * 8 bytes (peer_stamp / peer_stamp_age_ns).
 *
 * Output: exactly one line on stdout,
 *   {"peer":"redis","variant":"","workload":"w256","rate":12345.6,
 *    "confirm_p50_ms":0.12,"confirm_p99_ms":0.5,
 *    "deliver_p50_ms":0.2,"deliver_p99_ms":0.9,"count":61728,"error":""}
 * (latency fields 0 when not measured; "error" non-empty on failure, and
 * the exit status is then 1). Diagnostics go to stderr.
 */
#ifndef HANDOFF_BENCH_PEER_COMMON_H
#define HANDOFF_BENCH_PEER_COMMON_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum peer_workload { PEER_W256, PEER_W1, PEER_E2E, PEER_LAT1K };

struct peer_args {
	const char *name; /* set by the caller: "redis", ... */
	enum peer_workload workload;
	double duration_s; /* default 5 */
	const char *host;  /* default "127.0.0.1" */
	int port;
	const char *url;     /* handoff: broker URL */
	size_t payload;	     /* default 256, at least 8 */
	const char *variant; /* default "" */
};

/* Parse argv into a (name must be preset). 0, or prints usage and
 * returns 2. */
int peer_parse_args(struct peer_args *a, int argc, char **argv);
const char *peer_workload_name(enum peer_workload w);

/* Monotonic and realtime clocks in ns. */
uint64_t peer_mono_ns(void);
uint64_t peer_real_ns(void);
/* Fill buf (len >= 8) with the current realtime stamp + filler bytes. */
void peer_stamp(void *buf, size_t len);
/* Age in ns of the stamp at the start of buf (0 if len < 8). */
uint64_t peer_stamp_age_ns(const void *buf, size_t len);

/* Log-linear latency histogram, 1 us .. 60 s, < 2% error. */
struct peer_hist {
	uint64_t counts[2048];
	uint64_t n;
};
void peer_hist_add(struct peer_hist *h, uint64_t ns);
/* Percentile q in [0,100] in ms; 0 when empty. */
double peer_hist_ms(const struct peer_hist *h, double q);

struct peer_result {
	double rate;
	uint64_t count;
	struct peer_hist confirm;
	struct peer_hist deliver;
	char error[256];
};

/* What a consumer thread shares with its producer, the same in every
 * peer client. */
struct peer_consumer {
	atomic_int stop;	    /* producer finished: consumer may end */
	uint64_t expect;	    /* lat1k: messages published */
	atomic_uint_fast64_t acked; /* acked before the deadline */
	uint64_t acked_total;
	struct peer_hist deliver;
	char err[256];
};

/*
 * After the consumer thread was joined: e2e's rate is the acks before the
 * deadline; lat1k takes the delivery latencies and reports an error when
 * fewer than expected were acked (verb names the ack: "acked",
 * "deleted"). producer_rc is the producer's result (0 = ok).
 */
void peer_consumer_result(const struct peer_args *a, struct peer_consumer *c,
			  int producer_rc, const char *verb,
			  struct peer_result *r);

/* Print the one JSON line; returns the process exit status (0, or 1 when
 * r->error is set). */
int peer_report(const struct peer_args *a, const struct peer_result *r);

/* Open loop pacing: ns at which message i of a rate-per-second schedule
 * is due, from start. */
uint64_t peer_due_ns(uint64_t start, uint64_t i, double rate);
void peer_sleep_until_ns(uint64_t mono_ns);

#endif
