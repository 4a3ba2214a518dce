/*
 * loop.c — start-up, the store thread and shutdown; see loop.h.
 */
#include "loop.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "broker.h"
#include "clock.h"
#include "health.h"
#include "http.h"
#include "log.h"
#include "notify.h"
#include "push.h"
#include "turn.h"

static int setup_signals(struct broker *b)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	b->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return b->sigfd < 0 ? errno : 0;
}

/* The store thread: turns until a stop signal, then answers held fetches. */
static void *store_main(void *arg)
{
	struct broker *b = arg;
	bool stopping = false;
	int status = 0;
	while (!stopping) {
		status = turn_run(b, &stopping);
		if (status)
			break;
	}
	if (stopping) {
		health_set_stopping();
		notify_stopping();
	}
	held_finish(b, UINT64_MAX, false);
	b->exit_status = status;
	pump_store_done(&b->pump);
	log_thread_done();
	return NULL;
}

/* Broker time starts at the wall clock, or past the last run's clock mark
 * when that is ahead (clock.h): the wall clock went back while the broker
 * was down, or is wrong now. */
static int start_clock(struct broker *b)
{
	if (store_read_clock_mark(&b->st))
		return -1;
	uint64_t wall = clock_wall_ms(), mark = b->st.clock_mark_ms;
	uint64_t base = clock_base_ms(wall, mark);
	clock_start(base);
	if (base > wall + 1000)
		log_event(LOG_WARN, "clock_behind_store", LU("wall_ms", wall),
			  LU("broker_ms", base), LU("behind_ms", base - wall),
			  LS("why", "the store holds times from a run whose "
				    "clock was ahead: broker time resumes "
				    "from there, not from the wall clock"),
			  LOG_END);
	return 0;
}

static void start_failed(const struct config *cfg, const char *error)
{
	log_event(LOG_ERROR, "start_failed", LS("data", cfg->data_dir),
		  LS("error", error), LOG_END);
}

int loop_run(const struct config *cfg)
{
	static struct broker broker; /* large: keep it off the stack */
	struct broker *b = &broker;
	char err[512];
	int status = 1;
	bool pump_ready = false;
	pthread_t store_thread;
	struct http_server *http = NULL;
	struct push *push = NULL;

	memset(b, 0, sizeof *b);
	b->sigfd = -1;
	b->tr.sock = -1;
	health_reset(cfg->liveness_timeout_ms);
	notify_init();
	log_event(LOG_INFO, "access_control",
		  LS("state", cfg->n_keys ? "on" : "off"),
		  LU("keys", cfg->n_keys), LOG_END);
	if (setup_signals(b)) {
		start_failed(cfg, strerror(errno));
		goto out;
	}
	if (store_open(&b->st, cfg->data_dir, cfg->map_size_bytes, err,
		       sizeof err)) {
		start_failed(cfg, err);
		goto out;
	}
	health_set_store_open(true);
	if (b->st.stale_readers_at_open)
		log_event(LOG_WARN, "stale_readers_cleared",
			  LU("count", b->st.stale_readers_at_open),
			  LS("why", "a process died inside a read transaction"),
			  LOG_END);
	if (b->st.upgrade.from)
		log_event(LOG_WARN, "store_upgraded",
			  LU("from_format", b->st.upgrade.from),
			  LU("to_format", b->st.upgrade.to),
			  LU("records", b->st.upgrade.records),
			  LU("elapsed_ms", b->st.upgrade.elapsed_ms),
			  LS("old_store_kept", b->st.upgrade.kept),
			  LS("why", "remove the old store once this version "
				    "is to stay (README, Upgrading)"),
			  LOG_END);
	if (b->st.nocow_converted_bytes)
		log_event(LOG_INFO, "store_made_nocow",
			  LU("bytes", b->st.nocow_converted_bytes),
			  LS("why",
			     "btrfs: a copy-on-write data.mdb needs new space "
			     "for every write, so a full disk would stop acks"),
			  LOG_END);
	if (b->st.fs_warning[0])
		log_event(LOG_WARN, "store_copy_on_write",
			  LS("data", cfg->data_dir),
			  LS("why", b->st.fs_warning), LOG_END);
	if (b->st.nosync)
		log_event(LOG_WARN, "durability_off",
			  LS("why", "HANDOFF_TEST_NOSYNC=1 (test only)"),
			  LOG_END);
	uint64_t t0 = clock_mono_ms();
	if (start_clock(b)) {
		start_failed(cfg, "reading the store's clock mark");
		goto out;
	}
	if (broker_init(b, cfg, clock_now_ms())) {
		start_failed(cfg, strerror(ENOMEM));
		goto out;
	}
	if (transport_open(&b->tr, cfg->listen, cfg->n_listen,
			   cfg->max_request_bytes, err, sizeof err)) {
		start_failed(cfg, err);
		goto out;
	}
	if (pump_init(&b->pump, &b->tr, b->sigfd)) {
		start_failed(cfg, strerror(errno));
		goto out;
	}
	pump_ready = true;
	/* the push thread is a local consumer posting into the same inbox
	 * (push.h); it starts now and its requests wait for the store */
	if (pump_enable_push(&b->pump, PUSH_PUMP_SLOTS, push_on_reply, NULL)) {
		start_failed(cfg, strerror(ENOMEM));
		goto out;
	}
	int prc = push_start(cfg, &b->pump, &push);
	if (prc) {
		start_failed(cfg, strerror(prc));
		goto out;
	}
	b->pump.push_ctx = push;
	b->env.push = push;
	b->env.push_changed = push_subscriptions_changed;
	b->env.push_endpoint = push_endpoint;
	/* HTTP requests join the same inbox (pump.h, http.h) */
	if (cfg->n_http_listen) {
		if (pump_enable_http(&b->pump, http_max_in_flight(cfg),
				     http_deliver, NULL)) {
			start_failed(cfg, strerror(ENOMEM));
			goto out;
		}
		if (http_start(cfg, &b->pump, &http, err, sizeof err)) {
			start_failed(cfg, err);
			goto out;
		}
		/* replies flow only once the store thread starts, below */
		b->pump.http_ctx = http;
	}
	for (size_t i = 0; i < cfg->n_listen; i++)
		log_event(LOG_INFO, "listening", LS("url", cfg->listen[i]),
			  LOG_END);
	log_event(LOG_INFO, "broker_started",
		  LS("version", HANDOFF_BUILD_VERSION),
		  LS("data", cfg->data_dir),
		  LU("next_event_id", b->st.next_event_id),
		  LU("startup_ms", clock_mono_ms() - t0), LOG_END);

	notify_status("recovering leases from before the start");
	int rc = pthread_create(&store_thread, NULL, store_main, b);
	if (rc) {
		start_failed(cfg, strerror(rc));
		goto out;
	}
	/* a name for top -H, perf and gdb; the network thread, the main
	 * one, keeps "handoffd", which pgrep and pkill match */
	pthread_setname_np(store_thread, "handoff-store");
	pump_run(&b->pump);
	pthread_join(store_thread, NULL);
	/* the store thread answered all it took; the rest get 503 */
	http_stop(http);
	http = NULL;
	status = b->exit_status;
	log_event(LOG_INFO, "broker_stopped", LU("exit_status", status),
		  LOG_END);
out:
	/* held fetches and put-off requests are resent by their clients to
	 * the next broker */
	http_stop(http);
	broker_fini(b);
	/* after broker_fini: dropped held fetches still answer the push
	 * thread; before pump_fini: nothing answers it after */
	push_stop(push);
	if (pump_ready)
		pump_fini(&b->pump);
	transport_close(&b->tr);
	health_set_store_open(false);
	store_close(&b->st);
	if (b->sigfd >= 0)
		close(b->sigfd);
	log_thread_done();
	return status;
}
