/*
 * bench.h — private header of handoff-bench, the benchmark of handoff.
 *
 * The program is split by concern:
 *   handoff_bench.c  flags, the run's order (ceilings, broker, scenarios),
 *                    exit status
 *   hist.c           the log-linear latency histogram
 *   ceilings.c       LMDB durable commits and nanomsg PUSH/PULL, measured
 *                    in the same run on the same disk
 *   broker.c         the work folder, spawning and stopping handoffd
 *                    (through tools/lib/broker_proc.h), sampling its
 *                    RssAnon
 *   scenario.c       the scenarios: producer and consumer threads, each
 *                    with its own client handle
 *   backlog.c        backlog and restart: large backlogs on brokers of
 *                    their own (memory, drain rate, restart time)
 *   neighbour.c      neighbour: a healthy subscription's throughput beside
 *                    a neighbour that is absent, failing or slow, each
 *                    phase on a broker of its own
 *   report.c         the table and the JSON object
 *   util.c           small helpers the scenarios share
 *   http_client.c    the HTTP scenarios' client: a minimal HTTP/1.1
 *                    client, one keep-alive connection per thread, and
 *                    the JSON bodies they send and scan
 *   push_receiver.c  the push scenario's receiver: a minimal HTTP/1.1
 *                    server answering 204 to every POST
 *
 * Times are uint64_t nanoseconds of CLOCK_MONOTONIC unless said otherwise;
 * the publish stamp in a payload's first 8 bytes is CLOCK_REALTIME ns,
 * since it is read back by another handle (same host).
 */
#ifndef HANDOFF_BENCH_H
#define HANDOFF_BENCH_H

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "broker_proc.h"
#include "handoff.h"

#ifdef HANDOFF_BUILD_VERSION
#define HANDOFF_BENCH_VERSION HANDOFF_BUILD_VERSION
#else
#define HANDOFF_BENCH_VERSION "unknown"
#endif

#define BENCH_ERR_LEN  320
#define BENCH_PATH_LEN 4096

/* ---- time -------------------------------------------------------------- */

uint64_t bench_now_ns(void);	  /* CLOCK_MONOTONIC */
uint64_t bench_realtime_ns(void); /* CLOCK_REALTIME */
/* Sleep until the monotonic time t_ns (returns early on a signal). */
void bench_sleep_until(uint64_t t_ns);
void bench_sleep_ns(uint64_t ns);
/* Keep the first failure of a group of threads (later ones are dropped:
 * they are usually consequences) and tell the group to stop. */
void bench_first_error(pthread_mutex_t *mu, char *error, size_t len,
		       atomic_bool *stop, const char *fmt, va_list ap);

/* Set by SIGINT/SIGTERM: every loop checks it and winds down. */
extern volatile sig_atomic_t bench_interrupted;

/* ---- helpers the scenarios share (util.c) ------------------------------- */

/* snprintf into an error buffer; truncation is fine (no warning) */
void bench_errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* "STATUS (broker's message)" of a failed call into buf (c may be NULL). */
const char *bench_call_text(handoff_client *c, int rc, char *buf, size_t len);
/* handoff_connect with a deadline and a consumer name; *c is NULL unless
 * it returns HANDOFF_OK. */
int bench_client_open(const char *url, const char *name, uint32_t deadline_ms,
		      handoff_client **c);
/* Subscribe sub to topic with pol: 0, or -1 with err filled. */
int bench_subscribe(handoff_client *admin, const char *topic, const char *sub,
		    const handoff_policy *pol, char *err, size_t errlen);
/* Of n ack results, the OK ones; the others are added to *lost. */
uint64_t bench_acks_ok(const int *res, size_t n, uint64_t *lost);
/* 1234567 -> "1,234,567" (digits: a decimal number's digits). */
const char *bench_group_digits(char *buf, size_t len, const char *digits);
const char *bench_grouped_u(char *buf, size_t len, uint64_t v);
/* A producer's publish request: n events sharing one payload of payload
 * bytes filled with fill (each request stamps its first 8 bytes), and
 * room for the ids the broker returns. */
struct bench_batch {
	char *buf; /* the payload (at least 1 byte allocated) */
	handoff_event *ev;
	uint64_t *ids;
};
/* 0, or -1 out of memory; bench_batch_free it either way. */
int bench_batch_init(struct bench_batch *b, size_t n, uint32_t payload,
		     char fill);
void bench_batch_free(struct bench_batch *b);
/* Size of path in bytes; 0 when it cannot be read. */
uint64_t bench_file_size(const char *path);

/* ---- the HTTP client (http_client.c) -------------------------------------
 * One connection to the broker's HTTP API, kept alive across calls (opened
 * at the first call, again after a Connection: close). One thread's. */
struct bench_http {
	int fd; /* -1 while not connected */
	char host[64];
	unsigned port;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	int family;
	uint32_t timeout_ms; /* SO_RCVTIMEO / SO_SNDTIMEO of each call */
	char *req;	     /* the request being sent */
	size_t req_cap;
	char *buf; /* the response received; its body is NUL-terminated */
	size_t cap, have;
	uint64_t connects, requests; /* for the keep-alive check */
};

struct bench_http_resp {
	int status;
	const char *body; /* in the client's buffer until the next call */
	size_t len;
};

/* Resolve host:port (no connection yet): 0, or -1 with err filled;
 * bench_http_close it either way. */
int bench_http_open(struct bench_http *h, const char *host, unsigned port,
		    uint32_t timeout_ms, char *err, size_t errlen);
void bench_http_close(struct bench_http *h);
/* One request (head and body in one send) and its response: 0 with any
 * HTTP status in resp, or -1 when no response came (err says why; the
 * connection is dropped, the next call opens another). */
int bench_http_call(struct bench_http *h, const char *method, const char *path,
		    const char *content_type, const char *body, size_t len,
		    struct bench_http_resp *resp, char *err, size_t errlen);
/* "HTTP 409: <the problem's detail>" */
void bench_http_error_text(const struct bench_http_resp *resp, char *out,
			   size_t len);

/* HTTP payloads are text (they come back as UTF-8 strings): the publish
 * stamp is the first 19 bytes, CLOCK_REALTIME ns in decimal (payloads
 * shorter than that carry none). */
#define BENCH_HTTP_STAMP_DIGITS 19
void bench_http_payload_fill(char *p, size_t len, uint64_t stamp);

/* A fetch reply's deliveries, as far as the scenarios need them. */
struct bench_http_delivery {
	uint64_t event_id, lease_token, stamp;
	uint32_t attempt;
	bool stamped;
};
/* Scan a fetch reply: 0 with *n deliveries (at most max), or -1 when it
 * is not the broker's fetch reply (or has more than max). */
int bench_http_scan_fetch(const char *body, size_t len,
			  struct bench_http_delivery *out, size_t max,
			  size_t *n);
/* {"items":[{"event_id":..,"lease_token":..},..]} into buf: its length,
 * or -1 when it does not fit. */
int bench_http_ack_body(char *buf, size_t cap,
			const struct bench_http_delivery *d, size_t n);
/* Count an ack reply's results: OK and the others. 0, or -1 when it is
 * not an ack reply. */
int bench_http_scan_acks(const char *body, size_t len, uint64_t *ok,
			 uint64_t *other);

/* An events:batch body of n events sharing one payload text. */
struct bench_http_batch {
	char *body;
	size_t len, cap;
	size_t n;
	uint32_t payload;
	size_t *at; /* where each event's payload starts in body */
};
/* 0, or -1 out of memory; bench_http_batch_free it either way. */
int bench_http_batch_init(struct bench_http_batch *b, size_t n,
			  uint32_t payload);
/* Write the stamp into every event's payload. */
void bench_http_batch_stamp(struct bench_http_batch *b, uint64_t stamp);
void bench_http_batch_free(struct bench_http_batch *b);

/* ---- histogram (hist.c) ---------------------------------------------------
 * Log-linear like HdrHistogram: values below 128 ns get a bucket each;
 * above, every power of two is split into 64 equal buckets, so a bucket is
 * at most 1/64 of its value wide (2 significant digits). Values are
 * clamped to [1 us, 60 s]. Not thread-safe: one per thread, then merge. */
#define HIST_SUB_BITS 6
#define HIST_BUCKETS  2048

struct hist {
	uint64_t count;
	uint64_t min, max;
	uint64_t sum;
	uint64_t b[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_add(struct hist *h, uint64_t ns);
void hist_merge(struct hist *dst, const struct hist *src);
/* The q-quantile (0..1) in ns: the middle of its bucket; 0 when empty. */
uint64_t hist_quantile(const struct hist *h, double q);

/* ---- the push receiver (push_receiver.c) ----------------------------------
 * An HTTP/1.1 server on 127.0.0.1:port (a free port), keep-alive, on
 * epoll threads of its own (each accepts its share of the connections),
 * answering every request with status (default 204), at once or after
 * delay_ms. The counters are read by any thread; deliver only after the
 * stop. */
#define RX_MAX_THREADS 4

struct push_receiver_opts {
	unsigned threads; /* 0: 1 */
	unsigned status;  /* 0: 204 */
	uint32_t delay_ms;
};

struct rx_thread {
	struct push_receiver *rx;
	int epoll_fd;
	pthread_t th;
	bool started;
	struct hist deliver;
};

struct push_receiver {
	int listen_fd;
	unsigned port;
	struct push_receiver_opts o;
	struct rx_thread t[RX_MAX_THREADS];
	unsigned n_threads;
	bool running;
	atomic_bool stop;
	_Atomic uint64_t received;    /* requests answered */
	_Atomic uint64_t last_ns;     /* monotonic time of the last one */
	_Atomic uint64_t connections; /* accepted */
	struct hist deliver;	      /* publish stamp -> received, attempt 1 */
};

/* Listen and start the threads (o NULL: one thread, 204 at once): 0, or
 * -1 with err filled (nothing left to stop). */
int push_receiver_start(struct push_receiver *rx,
			const struct push_receiver_opts *o, char *err,
			size_t errlen);
/* Stop the threads, close every socket, merge deliver (no-op when not
 * started). */
void push_receiver_stop(struct push_receiver *rx);

/* A 127.0.0.1 port where nothing listens (a socket bound to it and never
 * listening, so no one else gets it): 0, or -1 with err filled. Close *fd
 * when done. */
int dead_port_open(int *fd, unsigned *port, char *err, size_t errlen);

/* ---- ceilings (ceilings.c) --------------------------------------------- */

struct lmdb_ceiling {
	bool ok;
	uint32_t per_commit;
	double seconds;
	uint64_t commits, events;
	double commits_per_s, events_per_s;
	uint64_t p50_ns, p99_ns, max_ns;
};

struct nn_ceiling {
	bool ok;
	int port;
	uint64_t sent, received;
	double msgs_per_s;
};

struct ceilings {
	bool ran;
	struct lmdb_ceiling lmdb1, lmdb100;
	struct nn_ceiling nn;
	char error[BENCH_ERR_LEN]; /* "" when all went well */
};

/* LMDB with default (durable) flags in a new folder dir (removed after):
 * per_commit puts of payload bytes per write transaction for seconds. */
int ceiling_lmdb(const char *dir, uint32_t per_commit, uint32_t payload,
		 double seconds, struct lmdb_ceiling *out, char *err,
		 size_t errlen);
/* nanomsg PUSH/PULL one way over tcp 127.0.0.1, ports from 17000 up. */
int ceiling_nn_pushpull(uint32_t payload, double seconds,
			struct nn_ceiling *out, char *err, size_t errlen);

/* ---- the broker (broker.c) --------------------------------------------- */

struct broker {
	/* the process, its folder, config, log and socket (handoffd.log,
	 * b.sock); proc.pid is 0 when not spawned by us or once reaped */
	struct broker_proc proc;
	pid_t last_pid;	     /* the last spawn's pid, kept after the reap */
	bool term_timed_out; /* the last stop had to SIGKILL */
	/* RssAnon sampler (of last_pid) */
	bool sampler_running;
	atomic_bool sampler_stop;
	_Atomic uint64_t rss_peak; /* kB since the last take */
	_Atomic uint64_t rss_peak_all;
	pthread_t sampler;
	/* set before broker_spawn: serve HTTP on 127.0.0.1:http_port (a free
	 * port chosen at the spawn, kept over restarts) */
	bool with_http;
	unsigned http_port;
};

/* mkdtemp "PARENT/handoff-bench.XXXXXX"; the path into out. */
int workdir_create(const char *parent, char *out, size_t outlen, char *err,
		   size_t errlen);
/* (rm -r: broker_proc_remove_dir) */

/* Start exe on workdir/data with a config of its own, listening on
 * ipc://workdir/b.sock, stderr to workdir/handoffd.log; then the sampler.
 * Limits are raised where max_batch or payload would exceed the defaults.
 * Waits (up to 10 s) for the socket to appear. With b->with_http, also
 * an HTTP listener on a free loopback port (b->http_port), waited for
 * too. */
int broker_spawn(struct broker *b, const char *exe, const char *workdir,
		 uint32_t max_batch, uint32_t payload, char *err,
		 size_t errlen);
/* A broker of its own for one phase: mkdir dir (new), broker_spawn in
 * it. On failure it is stopped, its log's tail printed and dir removed;
 * err says why. */
int broker_spawn_own(struct broker *b, const char *exe, const char *dir,
		     uint32_t max_batch, uint32_t payload, char *err,
		     size_t errlen);
/* Start the same exe again on the folder, config and socket of b
 * (stopped), the log appended to; waits up to wait_s (0 = 10 s) for the
 * socket, polling every ms (proc.spawn_ns / proc.listening_ns say when). */
int broker_restart(struct broker *b, double wait_s, char *err, size_t errlen);
/* Whether the spawned broker still runs (reaps it when not). */
bool broker_alive(struct broker *b);
/* Describe how it exited ("exit status 3", "killed by signal 9"). */
void broker_exit_text(const struct broker *b, char *out, size_t outlen);
/* RssAnon (kB) now; 0 when unknown. */
uint64_t broker_rss_anon(const struct broker *b);
/* The peak RssAnon (kB) since the last call, and reset it. */
uint64_t broker_take_rss_peak(struct broker *b);
/* CPU seconds (user + system) the broker has used; -1 when unknown. */
double broker_cpu_seconds(const struct broker *b);
/* CPU seconds of this process, all threads. */
double bench_cpu_seconds(void);
/* Print the last lines of the broker's log to f. */
void broker_log_tail(const struct broker *b, FILE *f, int lines);
/* Send sig, wait up to 10 s for the exit, then SIGKILL (term_timed_out
 * says so); stop the sampler. */
void broker_stop_signal(struct broker *b, int sig);
/* broker_stop_signal(b, SIGTERM) */
void broker_stop(struct broker *b);

/* ---- scenarios (scenario.c) -------------------------------------------- */

enum ratio_kind {
	RATIO_LMDB1 = 1 << 0,	  /* events/s / LMDB 1 put per commit */
	RATIO_LMDB100 = 1 << 1,	  /* events/s / LMDB 100 puts per commit */
	RATIO_NN = 1 << 2,	  /* events/s / PUSH/PULL msgs/s */
	RATIO_K4 = 1 << 3,	  /* events/s / publish-k4-e100's events/s */
	RATIO_P99 = 1 << 4,	  /* confirm p99 / LMDB 1-put commit p99 */
	RATIO_BACKLOG = 1 << 5,	  /* RssAnon at N / at probe; drain / e2e */
	RATIO_RESTART = 1 << 6,	  /* first fetch: large / small backlog */
	RATIO_NEIGHBOUR = 1 << 7, /* H acks/s: N misbehaving / N healthy */
	RATIO_NATIVE = 1 << 8,	  /* HTTP or push events/s / the native
				   * twin's */
};

enum scen_kind {
	SCEN_LOAD = 0,	/* producers and consumers for --duration */
	SCEN_BACKLOG,	/* backlog.c: fill, probe memory, drain */
	SCEN_RESTART,	/* backlog.c: restart time with a backlog */
	SCEN_NEIGHBOUR, /* neighbour.c: one bad subscription beside H */
};

struct scen_params {
	const char *name;
	enum scen_kind kind;
	int producers;
	int consumers;
	int batch;	 /* events per publish request */
	int fetch_batch; /* deliveries per fetch */
	int subs;	 /* subscriptions on the topic */
	double rate;	 /* events/s over all producers; 0 = closed loop */
	bool ack_each;	 /* one ack request per delivery */
	long backlog;	 /* producers pause above this many unacked; 0 = no */
	unsigned ratios; /* enum ratio_kind */
	bool overridden; /* a flag changed the scenario's defaults */
	/* HTTP scenarios: the same load over the HTTP API (one keep-alive
	 * connection per producer and consumer), compared with the native
	 * scenario of the same shape run just before it */
	bool http;
	const char *twin; /* the native twin's name */
	double target;	  /* the ratio to the twin it should reach */
	/* the push scenario: no consumers; a push subscription to a local
	 * receiver (push_receiver.c) with this many requests in flight, and
	 * events/s from the start to the last POST received */
	int push_concurrency; /* 0: not a push scenario */
};

#define MAX_RATIOS 6

struct ratio {
	const char *name;
	double value;
};

/* backlog: one broker of its own, one subscription */
struct backlog_result {
	bool ran;		   /* got to the end */
	long events, probe;	   /* N and N_probe */
	uint64_t rss_probe_kb;	   /* RssAnon with N_probe stored */
	uint64_t rss_full_kb;	   /* ... with N stored */
	double fill_s, fill_per_s; /* publishing N */
	uint64_t drained;	   /* acks OK in the drain */
	double drain_s, drain_per_s;
	double e2e_per_s;	/* empty-queue e2e-batched events/s */
	bool e2e_reused;	/* from e2e-batched earlier in this run */
	double e2e_s;		/* its duration when run here */
	uint64_t data_bytes;	/* data.mdb at N */
	uint64_t events_stored; /* broker's count at N */
	double bytes_per_event;
};

#define RESTART_MAX_CASES 4

struct restart_case {
	const char *size;     /* "small", "large" */
	int sig;	      /* how the broker was stopped */
	long pending, leased; /* at the stop */
	double stop_ms;	      /* signal -> exited */
	double listen_ms;     /* spawn -> socket exists */
	double connect_ms;    /* spawn -> handoff_connect answered */
	double fetch_ms;      /* spawn -> first fetch with a delivery */
	bool term_timed_out;  /* SIGTERM did not stop it in 10 s */
};

struct restart_result {
	int n;
	struct restart_case c[RESTART_MAX_CASES];
	uint64_t large_data_bytes, large_events_stored;
};

#define NEIGHBOUR_MAX_ROUNDS 5
/* absent failing slow expiring; push-dead push-slow push-failing */
#define NEIGHBOUR_BEHAVIOURS 7
/* alone, rounds x (healthy, behaviour) x 4, healthy */
#define NEIGHBOUR_MAX_PHASES \
	(3 + 2 * NEIGHBOUR_BEHAVIOURS * NEIGHBOUR_MAX_ROUNDS)
/* --neighbour-cases: which phases run */
enum neighbour_cases { NB_CASES_ALL, NB_CASES_NATIVE, NB_CASES_PUSH };

/* neighbour: one phase = one behaviour of N's consumers, on a broker of
 * its own; H is the healthy subscription on the same topic */
struct neighbour_phase {
	const char *name; /* alone healthy absent failing slow expiring;
			   * push-healthy push-dead push-slow push-failing */
	const char *what; /* what N's consumers do, for the notes */
	bool ran;	  /* got to the end */
	bool baseline;	  /* healthy or push-healthy: what others compare to */
	bool push;	  /* H and N are push subscriptions */
	/* H's acks/s and p99 / the healthy phases' just before and after
	 * (healthy and alone: / the mean of all healthy phases); < 0 = no
	 * baseline to divide by */
	double ratio, p99_ratio;
	double window_s; /* H is measured over it (the phase minus warm-up) */
	uint64_t published; /* whole phase */
	uint64_t h_acked;   /* H's acks confirmed OK in the window */
	double h_per_s;	    /* h_acked / window_s: the figure compared */
	uint64_t h_p50_ns, h_p99_ns; /* publish -> fetch, fetched in window */
	uint64_t confirm_p99_ns;     /* publishes sent in the window */
	/* N, from the broker's counters at the end (0 without N) */
	uint64_t n_delivered, n_acked, n_nacked, n_expired;
	uint64_t n_backlog;  /* ready + delayed + leased at the end */
	uint64_t n_requests; /* fetches, acks and nacks N's consumers sent */
	double broker_cpu_s; /* the phase's broker; < 0 = unknown */
	double p_cpu_s, h_cpu_s, n_cpu_s; /* client threads, by role */
	uint64_t log_bytes;		  /* the broker's log at the end */
	uint64_t data_bytes;		  /* data.mdb at the end */
};

/* one behaviour of N over the rounds */
struct neighbour_summary {
	const char *name;
	int n;				    /* phases that ran */
	double ratio, ratio_min, ratio_max; /* median, min, max */
	double p99_ratio;		    /* median */
};

struct neighbour_result {
	bool ran; /* every phase got to the end */
	int rounds;
	int n;
	struct neighbour_phase ph[NEIGHBOUR_MAX_PHASES];
	double warmup_s;
	double baseline_per_s; /* mean h_per_s of the healthy phases */
	double healthy_min, healthy_max; /* their spread: the run's noise */
	uint64_t baseline_p99_ns;	 /* H p99 over the healthy phases */
	double alone_per_s;
	/* the same over the push-healthy phases (push cases) */
	double push_baseline_per_s, push_min, push_max;
	struct neighbour_summary beh[NEIGHBOUR_BEHAVIOURS];
};

struct scen_result {
	struct scen_params p;
	bool ran;
	bool failed;
	char error[BENCH_ERR_LEN];
	char topic[128];
	double elapsed_s;
	uint64_t published;  /* events confirmed */
	uint64_t delivered;  /* first deliveries seen */
	uint64_t acked;	     /* acks confirmed OK */
	uint64_t lease_lost; /* acks answered LEASE_LOST / NOT_FOUND */
	double events_per_s; /* the headline: acked/s with consumers, else
				published/s */
	double publish_per_s;
	struct hist *confirm; /* publish request -> confirm */
	struct hist *deliver; /* publish stamp -> fetch returned it */
	/* broker side (spawned broker only; 0 = unknown) */
	uint64_t rss_peak_kb;
	uint64_t data_bytes;
	uint64_t events_stored;
	double bytes_per_event;
	/* CPU used during the run (seconds; broker < 0 = unknown) */
	double broker_cpu_s;
	double bench_cpu_s;
	/* broker's own counters, for a sanity check */
	bool checked;
	uint64_t broker_published, broker_acked;
	struct ratio ratios[MAX_RATIOS];
	int n_ratios;
	/* HTTP scenarios: requests sent and connections opened (keep-alive:
	 * one per thread), the twin's events/s (0 = it did not run) */
	uint64_t http_requests, http_connects;
	double twin_per_s;
	/* push: POSTs received, connections the broker opened, and the last
	 * POST's time after the start */
	uint64_t push_received, push_connects;
	double push_last_s;
	char note[BENCH_ERR_LEN];
	struct backlog_result bl;   /* SCEN_BACKLOG */
	struct restart_result rs;   /* SCEN_RESTART */
	struct neighbour_result nb; /* SCEN_NEIGHBOUR */
};

struct bench_ctx {
	const char *url;
	/* the broker's HTTP API (http_port 0: none, HTTP scenarios fail) */
	const char *http_host;
	unsigned http_port;
	uint32_t payload;
	double duration_s;
	struct broker *broker; /* NULL with --broker */
	int run_id;	       /* pid: keeps topic names apart */
	int index;	       /* the scenario's place in the run */
	bool progress;	       /* progress lines on stderr (long phases) */
	/* backlog and restart (backlog.c): brokers of their own */
	const char *exe;     /* handoffd */
	const char *workdir; /* their folders go in it */
	double phase_limit_s;
	long backlog_events, backlog_probe;
	long restart_pending, restart_leased;
	bool restart_kill;	       /* also a kill -9 variant */
	int neighbour_rounds;	       /* neighbour: repeats of its phases */
	int neighbour_cases;	       /* enum neighbour_cases */
	const struct scen_params *e2e; /* the backlog's empty-queue baseline */
	double e2e_events_per_s;       /* e2e-batched earlier in the run; 0 */
};

/* Run one scenario on fresh topic/subscriptions; fills r (r->p preset).
 * Returns 0, or -1 when it failed (r->error says why). */
int scenario_run(const struct bench_ctx *ctx, struct scen_result *r);
/* Allocate and clear r->confirm and r->deliver: 0, or -1 (out of memory;
 * what was allocated is r's, freed with it). */
int bench_result_hists(struct scen_result *r);
/* Remove the scenario's subscriptions (used against a foreign broker). */
void scenario_cleanup(const struct bench_ctx *ctx, const struct scen_result *r);

/* ---- backlog and restart (backlog.c) ------------------------------------ */

/* Both need ctx->exe and ctx->workdir (a spawned run); 0 or -1 as
 * scenario_run. */
int backlog_run(const struct bench_ctx *ctx, struct scen_result *r);
int restart_run(const struct bench_ctx *ctx, struct scen_result *r);

/* ---- neighbour (neighbour.c) -------------------------------------------- */

/* Needs ctx->exe and ctx->workdir (a spawned run); r->p gives the shape
 * (producers, H's consumers, batches, H's backlog cap); 0 or -1 as
 * scenario_run. */
int neighbour_run(const struct bench_ctx *ctx, struct scen_result *r);

/* ---- report (report.c) ------------------------------------------------- */

struct machine_info {
	long nproc;
	char kernel[256];
	char cpu[256];
	char date[64];
	char command[4096];
};

void machine_info_read(struct machine_info *m, int argc, char **argv);

struct report {
	const struct machine_info *machine;
	const char *mode; /* "spawn" or "broker" */
	const char *url;
	const char *workdir;
	const char *broker_version;
	uint32_t payload;
	double duration_s;
	const struct ceilings *ceil;
	const struct scen_result *results;
	int n_results;
	bool ok;
};

void report_table(FILE *f, const struct report *r);
void report_json(FILE *f, const struct report *r);

/* Fill r->ratios from the ceilings and the other results (r is one of
 * all). */
void ratios_compute(struct scen_result *r, const struct ceilings *c,
		    const struct scen_result *all, int n_all);

#endif /* HANDOFF_BENCH_H */
