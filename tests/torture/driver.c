/*
 * driver.c — see driver.h. The kill, powercut and none modes, and the
 * steps every mode shares: run folder, broker spawns, subscriptions,
 * workers, the operator's replays, the final drain, the checker and the
 * summary line.
 *
 * The driver holds nanomsg sockets, so every child (broker, workers,
 * faultfs-image) is started with posix_spawn, never fork.
 */
#include "driver.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "roles.h"

#define READY_TIMEOUT_MS 60000u
#define TERM_TIMEOUT_MS	 30000u
#define WORKER_STOP_MS	 30000u
#define REPLAY_EVERY_MS	 3000u
#define RECEIVER_UP_MS	 30000u

/* Two subscriptions on one topic with different policies (inside the
 * broker's limits: max_attempts <= 10000, durations <= 24 h). */
static const struct {
	const char *name;
	handoff_policy p;
} SUBS[DRV_SUBS] = {
	{ "sub-a",
	  { .max_attempts = 4,
	    .ack_deadline_ms = 1000,
	    .backoff_min_ms = 50,
	    .backoff_max_ms = 500 } },
	{ "sub-b",
	  { .max_attempts = 3,
	    .ack_deadline_ms = 1500,
	    .backoff_min_ms = 100,
	    .backoff_max_ms = 400 } },
};

/* A push subscription on the same topic, its endpoint on the run's
 * receiver (POST /hook/NAME), signed with a secret of its own (the
 * receiver tells subscriptions apart by the path and keeps a key per
 * subscription, so more can be added here). Two attempts: the receiver's
 * injected failures dead-letter some events, and the operator's replays
 * bring them back. The request timeout stays well under the ack deadline.
 * Concurrency 16: with 4, the pushes fell behind the producers and the
 * powercut runs' drain took several times as long. One subscription, not
 * more: every push is acked with a request and a commit of its own, so
 * each push subscription adds a commit per event to the broker's load (a
 * second one made the sanitizer runs under load noticeably slower). */
static const struct {
	const char *name;
	handoff_policy p;
	uint32_t timeout_ms, concurrency;
} PUSH_SUBS[DRV_PUSH_SUBS] = {
	{ "push-a",
	  { .max_attempts = 2,
	    .ack_deadline_ms = 4000,
	    .backoff_min_ms = 50,
	    .backoff_max_ms = 500 },
	  2000,
	  16 },
};

static const char *const CUT_MODES[] = { "synced", "all", "random", "torn" };

/* ---- failures and environment ---------------------------------------------- */

void run_fail(struct run *r, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "torture: event=failure what=\"%s\"\n", msg);
	if (!r->failed) {
		r->failed = true;
		snprintf(r->failure, sizeof(r->failure), "%s", msg);
		tt_tail(r->b.log, stderr, 30);
	}
}

void run_env_clear(struct run *r)
{
	r->n_env = 0;
	r->env[0] = NULL;
}

void run_env_add(struct run *r, const char *fmt, ...)
{
	if (r->n_env == 8)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->env_buf[r->n_env], sizeof(r->env_buf[0]), fmt, ap);
	va_end(ap);
	r->env[r->n_env] = r->env_buf[r->n_env];
	r->env[++r->n_env] = NULL;
}

void run_env_faultfs(struct run *r, const char *state)
{
	const char *asan = getenv("ASAN_OPTIONS");
	run_env_add(r, "LD_PRELOAD=%s", r->o->faultfs_lib);
	run_env_add(r, "FAULTFS_STATE=%s", state);
	/* An ASan handoffd refuses a preload listed before the ASan runtime
	 * unless told not to check. */
	run_env_add(r, "ASAN_OPTIONS=%s%sverify_asan_link_order=0",
		    asan ? asan : "", asan && *asan ? ":" : "");
}

/* ---- broker ---------------------------------------------------------------- */

/* The config of every run: long polls as long as a consumer asks, the
 * rest default (dedup window 24 h, history 7 d: nothing the checker asks
 * about is cleaned away during a run). */
static const char BROKER_CONFIG[] = "; written by handoff-torture\n"
				    "[limits]\n"
				    "max_wait = 60s\n";

/* The broker's folder dir (data/ created, config written). 0, or -1 with
 * err filled. */
static int broker_setup(struct run *r, const char *dir, char *err,
			size_t errlen)
{
	const char *exe = r->o->handoffd;
	char sock[TT_PATH];
	/* nanomsg asserts on an ipc path of 108 bytes or more */
	if (tt_fmt(sock, sizeof(sock), "%s/b.sock", dir) &&
	    strlen(sock) >= 100) {
		snprintf(err, errlen,
			 "socket path %s is too long (< 100 bytes)", sock);
		return -1;
	}
	if (access(exe, X_OK)) {
		snprintf(err, errlen, "handoffd %s: %s", exe, strerror(errno));
		return -1;
	}
	if (broker_proc_init(&r->b, exe, dir, NULL, BROKER_CONFIG, err, errlen))
		return -1;
	int rc = tt_mkdirs(r->b.data);
	if (rc) {
		snprintf(err, errlen, "%s: %s", dir, strerror(rc));
		return -1;
	}
	return 0;
}

/* Spawn with env (may be NULL) after the log's marker line for this start.
 * 0 or errno. */
static int broker_spawn(struct run *r, char *const env[], const char *note)
{
	broker_proc_log_note(&r->b, "---- torture: spawn %u%s%s ----",
			     r->b.starts + 1, note && *note ? ": " : "",
			     note ? note : "");
	struct broker_proc_spawn how = { .extra_env = env };
	return broker_proc_spawn(&r->b, &how);
}

int run_broker_up(struct run *r, bool faulty, const char *note,
		  uint64_t *ready_ns)
{
	static const struct broker_proc_ping ping = {
		.consumer_name = "torture-ping",
		.deadline_ms = 1000,
		.attempt_timeout_ms = 250,
	};
	int rc = broker_spawn(r, faulty ? r->env : NULL, note);
	if (rc) {
		run_fail(r, "cannot spawn %s: %s", r->b.exe, strerror(rc));
		return BROKER_PROC_EXITED;
	}
	enum broker_proc_wait w =
		broker_proc_wait_ready(&r->b, READY_TIMEOUT_MS, &ping, NULL);
	if (w == BROKER_PROC_READY && ready_ns)
		*ready_ns = r->b.ready_ns - r->b.spawn_ns;
	return (int)w;
}

int run_broker_term(struct run *r)
{
	char how[64];
	if (!broker_proc_term(&r->b, TERM_TIMEOUT_MS)) {
		run_fail(r, "handoffd did not stop within %u s of SIGTERM",
			 TERM_TIMEOUT_MS / 1000);
		return -1;
	}
	if (WIFEXITED(r->b.status) && WEXITSTATUS(r->b.status) == 0)
		return 0;
	tt_status_text(r->b.status, how, sizeof(how));
	run_fail(r, "handoffd stopped with %s after SIGTERM (want exit 0)",
		 how);
	return -1;
}

int run_connect(struct run *r)
{
	if (r->c)
		return 0;
	handoff_options o = { .deadline_ms = 10000,
			      .attempt_timeout_ms = 1000,
			      .consumer_name = "torture-driver" };
	int rc = handoff_connect(r->b.url, &o, &r->c);
	if (rc)
		run_fail(r, "driver cannot connect: %s", handoff_strerror(rc));
	return rc;
}

/* Start the receiver and wait for the port it publishes. */
static int start_receiver(struct run *r)
{
	char path[TT_PATH + 16];
	uint64_t until = tt_mono_ns() + (uint64_t)RECEIVER_UP_MS * 1000000u;
	tt_fmt(path, sizeof(path), "%s/push/port", r->dir);
	if (wk_add(&r->ws, WK_RECEIVER, -1, 0)) {
		run_fail(r, "cannot spawn the push receiver: %s",
			 strerror(errno));
		return -1;
	}
	while (tt_mono_ns() < until) {
		char *text = tt_read_file(path, NULL);
		unsigned port = text ? (unsigned)strtoul(text, NULL, 10) : 0;
		free(text);
		if (port > 0 && port < 65536) {
			r->push_port = port;
			printf("torture: event=receiver_up port=%u\n", port);
			fflush(stdout);
			return 0;
		}
		unsigned failures = r->ws.failures;
		wk_reap(&r->ws, false);
		if (r->ws.failures != failures)
			break;
		tt_sleep_ms(10);
	}
	run_fail(r, "the push receiver did not publish its port in %s", path);
	return -1;
}

/* A Standard Webhooks secret for sub in RUN/push/NAME.secret. */
static int push_secret(struct run *r, const char *sub, char *out, size_t outlen)
{
	unsigned char key[32];
	char path[TT_PATH + 96],
		b64[sodium_base64_ENCODED_LEN(sizeof(key),
					      sodium_base64_VARIANT_ORIGINAL)];
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (unsigned char)tt_rand(&r->rng);
	sodium_bin2base64(b64, sizeof(b64), key, sizeof(key),
			  sodium_base64_VARIANT_ORIGINAL);
	if (!tt_fmt(out, outlen, "whsec_%s", b64) ||
	    !tt_fmt(path, sizeof(path), "%s/push/%s.secret", r->dir, sub) ||
	    tt_write_file(path, out)) {
		run_fail(r, "cannot write %s", path);
		return -1;
	}
	return 0;
}

static int subscribe_push(struct run *r)
{
	if (!r->push_port && start_receiver(r))
		return -1;
	for (int i = 0; i < DRV_PUSH_SUBS; i++) {
		char url[128], secret[128];
		handoff_policy eff;
		bool created;
		if (push_secret(r, PUSH_SUBS[i].name, secret, sizeof(secret)))
			return -1;
		snprintf(url, sizeof(url), "http://127.0.0.1:%u/hook/%s",
			 r->push_port, PUSH_SUBS[i].name);
		handoff_push_config pc = {
			.url = url,
			.timeout_ms = PUSH_SUBS[i].timeout_ms,
			.concurrency = PUSH_SUBS[i].concurrency,
			.secret = secret,
		};
		int rc = handoff_subscribe_push(
			r->c, TORTURE_TOPIC, PUSH_SUBS[i].name, &PUSH_SUBS[i].p,
			&pc, &created, &eff);
		if (rc) {
			run_fail(r, "subscribe %s: %s (%s)", PUSH_SUBS[i].name,
				 handoff_strerror(rc),
				 handoff_last_message(r->c));
			return -1;
		}
		rec_add(&r->rec, "S %s %s %u %u %u %u push", PUSH_SUBS[i].name,
			TORTURE_TOPIC, eff.max_attempts, eff.ack_deadline_ms,
			eff.backoff_min_ms, eff.backoff_max_ms);
	}
	return 0;
}

int run_subscribe(struct run *r)
{
	for (int i = 0; i < DRV_SUBS; i++) {
		handoff_policy eff;
		bool created;
		int rc = handoff_subscribe(r->c, TORTURE_TOPIC, SUBS[i].name,
					   &SUBS[i].p, &created, &eff);
		if (rc) {
			run_fail(r, "subscribe %s: %s (%s)", SUBS[i].name,
				 handoff_strerror(rc),
				 handoff_last_message(r->c));
			return -1;
		}
		rec_add(&r->rec, "S %s %s %u %u %u %u", SUBS[i].name,
			TORTURE_TOPIC, eff.max_attempts, eff.ack_deadline_ms,
			eff.backoff_min_ms, eff.backoff_max_ms);
	}
	if (subscribe_push(r))
		return -1;
	if (rec_sync(&r->rec)) {
		run_fail(r, "driver.rec: %s", strerror(r->rec.err));
		return -1;
	}
	return 0;
}

static void note_restart(struct run *r, uint64_t ns)
{
	if (r->n_restart == r->cap_restart) {
		size_t cap = r->cap_restart ? r->cap_restart * 2 : 256;
		uint64_t *n = realloc(r->restart_ns, cap * sizeof(*n));
		if (!n)
			return;
		r->restart_ns = n;
		r->cap_restart = cap;
	}
	r->restart_ns[r->n_restart++] = ns;
}

/* ---- workload ---------------------------------------------------------------- */

static int start_workers(struct run *r)
{
	for (unsigned i = 0; i < r->o->producers; i++)
		if (wk_add(&r->ws, WK_PRODUCER, -1, (int)i))
			goto fail;
	for (int s = 0; s < DRV_SUBS; s++)
		for (unsigned i = 0; i < r->o->consumers; i++)
			if (wk_add(&r->ws, WK_CONSUMER, s, (int)i))
				goto fail;
	return 0;
fail:
	run_fail(r, "cannot spawn a worker: %s", strerror(errno));
	return -1;
}

/* The operator at work: now and then replay some dead letters, so that
 * replays happen under the faults too. The intent is recorded first. */
static void operator_replay(struct run *r)
{
	uint64_t pick = tt_below(&r->rng, DRV_SUBS + DRV_PUSH_SUBS);
	const char *sub = pick < DRV_SUBS ? SUBS[pick].name :
					    PUSH_SUBS[pick - DRV_SUBS].name;
	handoff_dlq_action act = { .limit = 50 };
	handoff_dlq_result res = { 0 };
	rec_add(&r->rec, "Y %llu %s", (unsigned long long)tt_wall_ms(), sub);
	rec_sync(&r->rec);
	handoff_set_deadline(r->c, 5000);
	int rc = handoff_dlq_replay(r->c, sub, &act, &res);
	r->replays++;
	if (rc == HANDOFF_OK) {
		r->replayed += (unsigned)res.n_event_ids;
		rec_add(&r->rec, "Z %llu %s %zu",
			(unsigned long long)tt_wall_ms(), sub, res.n_event_ids);
		rec_sync(&r->rec);
	} else {
		r->replay_failures++;
		fprintf(stderr,
			"torture: event=replay_failed sub=%s error=%s "
			"message=\"%s\"\n",
			sub, handoff_strerror(rc), handoff_last_message(r->c));
	}
	handoff_dlq_result_free(&res);
	handoff_set_deadline(r->c, 10000);
}

/*
 * Let the workload run for ms: reap and respawn workers, replay now and
 * then, and watch the broker. -1 when the broker died on its own (reported
 * unless the negative control expects it).
 */
static int run_for(struct run *r, uint32_t ms, uint64_t *next_replay)
{
	uint64_t until = tt_mono_ns() + (uint64_t)ms * 1000000u;
	while (tt_mono_ns() < until) {
		wk_reap(&r->ws, true);
		if (!broker_proc_alive(&r->b)) {
			char how[64];
			tt_status_text(r->b.status, how, sizeof(how));
			if (!r->o->negative_control)
				run_fail(r, "handoffd died on its own (%s)",
					 how);
			else
				fprintf(stderr,
					"torture: event=broker_died how=\"%s\" "
					"negative_control=1\n",
					how);
			return -1;
		}
		if (next_replay && tt_mono_ns() >= *next_replay) {
			operator_replay(r);
			*next_replay = tt_mono_ns() +
				       (uint64_t)REPLAY_EVERY_MS * 1000000u;
		}
		tt_sleep_ms(5);
	}
	return 0;
}

/* Time from ready to the kill: half the kills early in a broker's life
 * (lease recovery, the first commits), half spread over the rest; under
 * load either way most of them land inside a commit. */
static uint32_t pick_delay(struct run *r)
{
	uint32_t lo = r->o->kill_min_ms, hi = r->o->kill_max_ms;
	uint32_t mid = lo + (hi - lo) / 5;
	return tt_chance(&r->rng, 500) ? (uint32_t)tt_range(&r->rng, lo, mid) :
					 (uint32_t)tt_range(&r->rng, mid, hi);
}

static bool fault_budget_left(struct run *r, unsigned want)
{
	if (want && r->faults >= want)
		return false;
	if (r->o->seconds &&
	    tt_mono_ns() - r->t_start >= (uint64_t)r->o->seconds * 1000000000u)
		return false;
	return true;
}

static int restart(struct run *r, bool faulty, const char *note)
{
	uint64_t ns = 0;
	int rc = run_broker_up(r, faulty, note, &ns);
	if (rc == BROKER_PROC_READY) {
		note_restart(r, ns);
		return 0;
	}
	if (r->o->negative_control) {
		char how[64];
		tt_status_text(r->b.status, how, sizeof(how));
		fprintf(stderr,
			"torture: event=broker_refused_image how=\"%s\" "
			"negative_control=1\n",
			rc == BROKER_PROC_EXITED ? how : "no answer");
		if (rc != BROKER_PROC_EXITED)
			broker_proc_kill9(&r->b);
		return -1;
	}
	if (rc == BROKER_PROC_EXITED) {
		char how[64];
		tt_status_text(r->b.status, how, sizeof(how));
		run_fail(r, "handoffd did not come back after %s (%s)", note,
			 how);
	} else {
		run_fail(r, "handoffd did not answer within %u s after %s",
			 READY_TIMEOUT_MS / 1000, note);
	}
	return -1;
}

static int kill_faults(struct run *r)
{
	uint64_t next_replay = tt_mono_ns() + REPLAY_EVERY_MS * 1000000ull;
	char note[64];
	while (fault_budget_left(r, r->o->cycles)) {
		if (run_for(r, pick_delay(r), &next_replay))
			return -1;
		broker_proc_kill9(&r->b);
		r->faults++;
		snprintf(note, sizeof(note), "after kill %u", r->faults);
		/* One kill in twenty hits the broker while it starts (store
		 * open, lease recovery) instead of after it answered. */
		if (tt_chance(&r->rng, 50) &&
		    fault_budget_left(r, r->o->cycles)) {
			if (broker_spawn(r, NULL, note)) {
				run_fail(r, "cannot spawn handoffd");
				return -1;
			}
			tt_sleep_ms((uint32_t)tt_range(&r->rng, 1, 40));
			broker_proc_kill9(&r->b);
			r->faults++;
			snprintf(note, sizeof(note), "after kill %u (at start)",
				 r->faults);
		}
		if (restart(r, false, note))
			return -1;
	}
	return 0;
}

/* Power cut: kill, build the image the disk would hold, start again. */
static int cut_once(struct run *r, const char *state)
{
	const char *mode = CUT_MODES[r->faults % 4];
	char seed[32], out[TT_PATH + 16], log[TT_PATH + 32], note[96];
	broker_proc_kill9(&r->b);
	r->faults++;
	snprintf(seed, sizeof(seed), "%llu",
		 (unsigned long long)(r->o->seed * 1000003u + r->faults));
	snprintf(out, sizeof(out), "%s/data.mdb", r->b.data);
	snprintf(log, sizeof(log), "%s/faultfs-image.out", r->log_dir);
	unlink(log);
	char *argv[] = { (char *)r->o->faultfs_image,
			 "--state",
			 (char *)state,
			 "--out",
			 out,
			 "--mode",
			 (char *)mode,
			 "--seed",
			 seed,
			 NULL };
	pid_t pid = tt_spawn(argv, NULL, log);
	int st = 0;
	if (pid < 0) {
		run_fail(r, "cannot spawn %s: %s", r->o->faultfs_image,
			 strerror(errno));
		return -1;
	}
	if (!tt_wait(pid, 120000, &st)) {
		kill(pid, SIGKILL);
		tt_wait(pid, 10000, &st);
		run_fail(r, "faultfs-image did not finish in 120 s");
		return -1;
	}
	char *text = tt_read_file(log, NULL);
	char *line = text ? strstr(text, "faultfs-image:") : NULL;
	if (line)
		line[strcspn(line, "\n")] = '\0';
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !line) {
		char how[64];
		tt_status_text(st, how, sizeof(how));
		run_fail(r, "faultfs-image --mode %s failed (%s): %s", mode,
			 how, text ? text : "");
		free(text);
		return -1;
	}
	printf("cut=%u %s\n", r->faults, line);
	fflush(stdout);
	free(text);
	snprintf(note, sizeof(note), "after cut %u mode=%s", r->faults, mode);
	return restart(r, true, note);
}

static int powercut_faults(struct run *r, bool *refused)
{
	char state[TT_PATH + 16];
	uint64_t next_replay = tt_mono_ns() + REPLAY_EVERY_MS * 1000000ull;
	snprintf(state, sizeof(state), "%s/faultfs", r->b.dir);
	while (fault_budget_left(r, r->o->cuts)) {
		if (run_for(r, pick_delay(r), &next_replay)) {
			*refused = r->o->negative_control;
			return -1;
		}
		if (cut_once(r, state)) {
			*refused = r->o->negative_control && !r->failed;
			return -1;
		}
	}
	return 0;
}

/* ---- drain and check --------------------------------------------------------- */

/*
 * The driver's handle has had no answer for 10 s with the broker running.
 * A fresh handle tells a client that stopped reconnecting (guarantee 3
 * and 11: clients reconnect by themselves) from a broker that stopped
 * answering. Either is a failure; with a fresh handle that works the
 * drain goes on on it. Returns true when the drain cannot go on.
 */
static bool stuck_handle(struct run *r)
{
	handoff_options o = { .deadline_ms = 10000,
			      .attempt_timeout_ms = 1000,
			      .consumer_name = "torture-driver" };
	handoff_client *fresh = NULL;
	char path[TT_PATH + 64];
	tt_fmt(path, sizeof(path), "%s/stuck-driver.txt", r->log_dir);
	tt_diagnose(getpid(), path, "driver handle: no answer for 10 s");
	tt_diagnose(r->b.pid, path, "the broker");
	fprintf(stderr, "torture: event=driver_handle_stuck diagnosis=%s\n",
		path);
	int rc = handoff_connect(r->b.url, &o, &fresh);
	if (rc) {
		run_fail(r,
			 "handoffd is running but answers no request for "
			 "10 s (a fresh handle gets %s)",
			 handoff_strerror(rc));
		return true;
	}
	run_fail(r, "the driver's client handle got no answer for 10 s while "
		    "a fresh handle did: a handle that does not reconnect by "
		    "itself");
	handoff_close(r->c);
	r->c = fresh;
	return false;
}

int run_drain(struct run *r)
{
	uint64_t until =
		tt_mono_ns() + (uint64_t)r->o->drain_seconds * 1000000000u;
	uint64_t t0 = tt_mono_ns(), fail_since = 0;
	int zero = 0, rc = -1;
	unsigned polls = 0;
	/* the receiver now answers 200 to every good request */
	wk_signal(&r->ws, WK_RECEIVER, SIGUSR1);
	for (int s = 0; s < DRV_SUBS; s++)
		if (wk_add(&r->ws, WK_CLEAN, s, 0)) {
			run_fail(r, "cannot spawn a drain consumer: %s",
				 strerror(errno));
			return -1;
		}
	for (;;) {
		handoff_subscription_info *si = NULL;
		size_t n = 0;
		uint64_t left = 0;
		char state[256] = "";
		wk_reap(&r->ws, false);
		if (!broker_proc_alive(&r->b)) {
			char how[64];
			tt_status_text(r->b.status, how, sizeof(how));
			run_fail(r, "handoffd died during the drain (%s)", how);
			break;
		}
		int qrc = handoff_list_subscriptions(r->c, &si, &n);
		if (qrc == HANDOFF_OK) {
			size_t off = 0;
			for (size_t i = 0; i < n; i++) {
				left += si[i].ready + si[i].delayed +
					si[i].leased;
				off += (size_t)snprintf(
					state + off,
					sizeof(state) - off < 2 ?
						0 :
						sizeof(state) - off,
					"%s=%llu/%llu/%llu ", si[i].name,
					(unsigned long long)si[i].ready,
					(unsigned long long)si[i].delayed,
					(unsigned long long)si[i].leased);
				if (off >= sizeof(state))
					off = sizeof(state) - 1;
			}
			handoff_subscriptions_free(si, n);
			fail_since = 0;
		} else {
			fprintf(stderr,
				"torture: event=drain_poll_failed "
				"error=%s\n",
				handoff_strerror(qrc));
			if (!fail_since)
				fail_since = tt_mono_ns();
			if (tt_mono_ns() - fail_since > 10000000000ull &&
			    stuck_handle(r))
				break;
		}
		if (qrc == HANDOFF_OK && !polls++) {
			/* what the drain starts from (ready/delayed/leased) */
			printf("drain: start left=%llu subs=\"%s\"\n",
			       (unsigned long long)left, state);
			fflush(stdout);
		}
		/* Twice empty in a row: nothing ready, delayed or leased is
		 * left, and with producers stopped nothing new can come. */
		zero = qrc == HANDOFF_OK && left == 0 ? zero + 1 : 0;
		if (zero >= 2) {
			rc = 0;
			break;
		}
		if (tt_mono_ns() >= until) {
			fprintf(stderr,
				"torture: event=drain_timeout left=%llu "
				"subs=\"%s\"\n",
				(unsigned long long)left, state);
			if (!r->o->negative_control)
				run_fail(r,
					 "the drain did not finish in %u s "
					 "(ready/delayed/leased: %s)",
					 r->o->drain_seconds, state);
			break;
		}
		tt_sleep_ms(250);
	}
	wk_stop(&r->ws, WK_CLEAN, WORKER_STOP_MS);
	printf("drain: seconds=%.1f result=%s\n",
	       (double)(tt_mono_ns() - t0) / 1e9, rc ? "incomplete" : "empty");
	fflush(stdout);
	return rc;
}

int run_check(struct run *r, struct check_result *cr)
{
	struct check_opts co = { .dir = r->dir,
				 .url = r->b.url,
				 .threads = r->o->check_threads,
				 .out = stdout };
	uint64_t t0 = tt_mono_ns();
	int rc = check_run(&co, cr);
	printf("check: seconds=%.1f\n", (double)(tt_mono_ns() - t0) / 1e9);
	fflush(stdout);
	return rc;
}

/* Worker calls that ran out their 60 s deadline: with a broker that is
 * restarted at once, a client that did not get through in 60 s did not
 * reconnect by itself. */
static size_t client_timeouts(struct run *r)
{
	size_t n = 0;
	DIR *d = opendir(r->log_dir);
	struct dirent *e;
	char path[TT_PATH + 300];
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' ||
		    !tt_fmt(path, sizeof(path), "%s/%s", r->log_dir, e->d_name))
			continue;
		n += tt_count_lines(path, "no reply before the deadline");
	}
	closedir(d);
	return n;
}

/* ---- the run ----------------------------------------------------------------- */

static void on_fatal_signal(int sig)
{
	static const char msg[] =
		"torture: killed by a signal; stopping children\n";
	ssize_t w = write(2, msg, sizeof(msg) - 1);
	(void)w;
	tt_kill_children();
	broker_proc_kill_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

static int setup(struct run *r)
{
	char err[2 * TT_PATH + 128];
	const char *tmp = getenv("TMPDIR");
	if (r->o->dir) {
		snprintf(r->dir, sizeof(r->dir), "%s", r->o->dir);
		if (tt_mkdirs(r->dir)) {
			fprintf(stderr, "torture: cannot create %s\n", r->dir);
			return -1;
		}
	} else {
		if (!tmp || !*tmp || strlen(tmp) > 60)
			tmp = "/tmp";
		snprintf(r->dir, sizeof(r->dir), "%s/hot-XXXXXX", tmp);
		if (!mkdtemp(r->dir)) {
			fprintf(stderr, "torture: mkdtemp %s: %s\n", r->dir,
				strerror(errno));
			return -1;
		}
	}
	snprintf(r->rec_dir, sizeof(r->rec_dir), "%s/rec", r->dir);
	snprintf(r->log_dir, sizeof(r->log_dir), "%s/logs", r->dir);
	char bdir[TT_PATH + 8];
	snprintf(bdir, sizeof(bdir), "%s/broker", r->dir);
	if (tt_mkdirs(r->rec_dir) || tt_mkdirs(r->log_dir)) {
		fprintf(stderr, "torture: cannot create %s/{rec,logs}\n",
			r->dir);
		return -1;
	}
	if (broker_setup(r, bdir, err, sizeof(err))) {
		fprintf(stderr, "torture: %s\n", err);
		return -1;
	}
	char fstate[TT_PATH + 16];
	snprintf(fstate, sizeof(fstate), "%s/faultfs", bdir);
	tt_mkdirs(fstate);
	char rec[TT_PATH + 32];
	snprintf(rec, sizeof(rec), "%s/driver.rec", r->rec_dir);
	int rc = rec_open(&r->rec, rec);
	if (rc) {
		fprintf(stderr, "torture: %s: %s\n", rec, strerror(rc));
		return -1;
	}
	ssize_t n =
		readlink("/proc/self/exe", r->ws.self, sizeof(r->ws.self) - 1);
	if (n <= 0) {
		fprintf(stderr, "torture: cannot find my own executable\n");
		return -1;
	}
	r->ws.self[n] = '\0';
	snprintf(r->ws.dir, sizeof(r->ws.dir), "%s", r->dir);
	snprintf(r->ws.url, sizeof(r->ws.url), "%s", r->b.url);
	for (int i = 0; i < DRV_SUBS; i++)
		r->sub_names[i] = SUBS[i].name;
	r->ws.subs = r->sub_names;
	r->ws.rate = r->o->rate;
	r->ws.seed = r->o->seed * 7919u;
	tt_rng_seed(&r->rng, r->o->seed);
	printf("torture: mode=%s dir=%s seed=%llu handoffd=%s\n", r->o->mode,
	       r->dir, (unsigned long long)r->o->seed, r->o->handoffd);
	fflush(stdout);
	return 0;
}

/* Start the first broker, subscribe. Powercut creates the store with a
 * broker that is not preloaded and stops it cleanly, so that creating the
 * environment is never part of a cut. */
static int first_start(struct run *r, bool *faulty)
{
	bool pc = strcmp(r->o->mode, "powercut") == 0;
	*faulty = false;
	if (run_broker_up(r, false, "first start", NULL) != BROKER_PROC_READY) {
		run_fail(r, "handoffd did not start");
		return -1;
	}
	if (run_connect(r) || run_subscribe(r))
		return -1;
	if (!pc)
		return 0;
	if (run_broker_term(r))
		return -1;
	char state[TT_PATH + 16];
	snprintf(state, sizeof(state), "%s/faultfs", r->b.dir);
	run_env_clear(r);
	run_env_faultfs(r, state);
	if (r->o->negative_control)
		run_env_add(r, "HANDOFF_TEST_NOSYNC=1");
	*faulty = true;
	if (run_broker_up(r, true, "preloaded", NULL) != BROKER_PROC_READY) {
		run_fail(r, "handoffd did not start with libfaultfs preloaded");
		return -1;
	}
	return 0;
}

static void summary(struct run *r, const struct check_result *cr, bool checked,
		    const char *result, double drain_s)
{
	const struct check_counts *t = &cr->total;
	uint64_t p50 = tt_percentile(r->restart_ns, r->n_restart, 50);
	uint64_t p99 = tt_percentile(r->restart_ns, r->n_restart, 99);
	bool pc = strcmp(r->o->mode, "powercut") == 0;
	bool io = strcmp(r->o->mode, "io") == 0;
	printf("torture: mode=%s%s result=%s %s=%u requested=%u seconds=%.1f "
	       "checked=%d confirmed=%llu lost=%llu unexpected=%llu "
	       "duplicate_stored=%llu done_without_ack=%llu "
	       "redelivered_after_ack=%llu dead_without_cause=%llu "
	       "redeliveries=%llu duplicate_deliveries=%llu delivered=%llu "
	       "acked=%llu dead=%llu unconfirmed=%llu unconfirmed_stored=%llu "
	       "restarts=%zu restart_p50_ms=%.1f restart_p99_ms=%.1f "
	       "replays=%u replayed=%u replay_failures=%u worker_deaths=%u "
	       "worker_failures=%u webhook_id_unstable=%llu push_subs=%d "
	       "push_delivered=%llu push_acked=%llu push_dead=%llu "
	       "push_redeliveries=%llu "
	       "drain_s=%.1f dir=%s%s%s\n",
	       r->o->mode, r->o->negative_control ? " negative_control=1" : "",
	       result,
	       pc ? "cuts" :
	       io ? "k_runs" :
		    "cycles",
	       r->faults, pc ? r->o->cuts : r->o->cycles,
	       (double)(tt_mono_ns() - r->t_start) / 1e9, checked ? 1 : 0,
	       (unsigned long long)t->confirmed, (unsigned long long)t->lost,
	       (unsigned long long)t->unexpected,
	       (unsigned long long)t->duplicate_stored,
	       (unsigned long long)t->done_without_ack,
	       (unsigned long long)t->redelivered_after_ack,
	       (unsigned long long)t->dead_without_cause,
	       (unsigned long long)t->redeliveries,
	       (unsigned long long)t->duplicate_deliveries,
	       (unsigned long long)t->delivered, (unsigned long long)t->acked,
	       (unsigned long long)t->dead, (unsigned long long)cr->unconfirmed,
	       (unsigned long long)cr->unconfirmed_stored, r->n_restart,
	       (double)p50 / 1e6, (double)p99 / 1e6, r->replays, r->replayed,
	       r->replay_failures, r->ws.chaos_deaths, r->ws.failures,
	       (unsigned long long)t->webhook_id_unstable, DRV_PUSH_SUBS,
	       (unsigned long long)cr->push.delivered,
	       (unsigned long long)cr->push.acked,
	       (unsigned long long)cr->push.dead,
	       (unsigned long long)cr->push.redeliveries, drain_s, r->dir,
	       r->failed ? " failure=\"" : "", r->failed ? r->failure : "");
	if (r->failed)
		printf("\"\n");
	fflush(stdout);
}

int driver_main(const struct drv_opts *o)
{
	struct run *r = calloc(1, sizeof(*r));
	struct check_result *cr = calloc(1, sizeof(*cr));
	bool faulty = false, refused = false, checked = false, pass = false;
	double drain_s = 0;
	int status = 1;
	if (!r || !cr) {
		free(r);
		free(cr);
		return 1;
	}
	r->o = o;
	r->rec.fd = -1;
	r->t_start = tt_mono_ns();
	signal(SIGTERM, on_fatal_signal);
	signal(SIGINT, on_fatal_signal);
	signal(SIGHUP, on_fatal_signal);
	signal(SIGPIPE, SIG_IGN);
	if (setup(r))
		goto out;
	bool io = strcmp(o->mode, "io") == 0;

	/* ---- faults ---- */
	if (io) {
		if (run_broker_up(r, false, "first start", NULL) !=
		    BROKER_PROC_READY) {
			run_fail(r, "handoffd did not start");
			goto finish;
		}
		if (run_connect(r) || run_subscribe(r))
			goto finish;
		if (io_faults(r))
			goto finish;
	} else {
		if (first_start(r, &faulty))
			goto finish;
		if (start_workers(r))
			goto finish;
		int rc;
		r->t_start = tt_mono_ns();
		if (strcmp(o->mode, "kill") == 0)
			rc = kill_faults(r);
		else if (strcmp(o->mode, "powercut") == 0)
			rc = powercut_faults(r, &refused);
		else {
			uint64_t next =
				tt_mono_ns() + REPLAY_EVERY_MS * 1000000ull;
			rc = run_for(r, o->seconds * 1000u, &next);
		}
		/* The workload stops: producers first, then the chaos. With
		 * the broker up, a worker that does not finish its call in
		 * 30 s is stuck; without one, none could finish. */
		if (rc) {
			wk_kill_all(&r->ws);
		} else {
			unsigned stuck =
				wk_stop(&r->ws, WK_PRODUCER, WORKER_STOP_MS);
			stuck += wk_stop(&r->ws, WK_CONSUMER, WORKER_STOP_MS);
			if (stuck)
				run_fail(r,
					 "%u workers did not stop within %u s "
					 "of SIGTERM (a call that never "
					 "returned)",
					 stuck, WORKER_STOP_MS / 1000);
		}
		if (rc && !refused && !r->o->negative_control)
			goto finish;
		if (rc && r->o->negative_control) {
			/* the broker refused the image or died of it: that is
			 * the loss the control looks for */
			refused = true;
			goto finish;
		}
	}
	printf("torture: event=faults_done %s=%u seconds=%.1f\n",
	       strcmp(o->mode, "powercut") == 0 ? "cuts" :
	       io				? "k_runs" :
						  "cycles",
	       r->faults, (double)(tt_mono_ns() - r->t_start) / 1e9);
	fflush(stdout);

	/* ---- drain and check ---- */
	if (!broker_proc_alive(&r->b) && restart(r, faulty, "for the drain")) {
		refused = r->o->negative_control;
		goto finish;
	}
	uint64_t t0 = tt_mono_ns();
	run_drain(r);
	drain_s = (double)(tt_mono_ns() - t0) / 1e9;
	int crc = run_check(r, cr);
	checked = crc != 2;
	if (crc == 2)
		run_fail(r, "the checker could not check");
	run_broker_term(r);
	if (wk_stop(&r->ws, WK_RECEIVER, WORKER_STOP_MS))
		run_fail(r,
			 "the push receiver did not stop within %u s of "
			 "SIGTERM",
			 WORKER_STOP_MS / 1000);

finish:
	if (broker_proc_alive(&r->b))
		wk_stop(&r->ws, -1, WORKER_STOP_MS);
	wk_kill_all(&r->ws);
	if (broker_proc_alive(&r->b))
		broker_proc_kill9(&r->b);
	if (o->negative_control) {
		/* A broker that cannot even report on the confirmed events has
		 * lost them as surely as one that forgot them. */
		bool unreadable = !checked && cr->broker_error;
		bool loss = refused || unreadable ||
			    (checked && cr->total.lost > 0);
		pass = loss;
		summary(r, cr, checked, loss ? "loss_found" : "NO_LOSS",
			drain_s);
		if (loss)
			printf("negative-control: the harness detects missing syncs "
			       "(%s)\n",
			       refused ? "the broker could not use the image" :
			       unreadable ? "the broker could not report on "
					    "the confirmed events" :
					    "confirmed events were lost");
		else
			printf("negative-control: FAIL: no loss found with syncing "
			       "off: the harness proves nothing\n");
	} else {
		unsigned want_min = o->min_faults;
		bool enough = r->faults >= want_min;
		if (!enough)
			run_fail(r, "only %u faults made, %u required",
				 r->faults, want_min);
		if (r->ws.failures)
			run_fail(r, "%u worker processes failed",
				 r->ws.failures);
		size_t to = client_timeouts(r);
		if (to)
			run_fail(r,
				 "%zu worker calls got no reply in 60 s (see "
				 "%s)",
				 to, r->log_dir);
		pass = !r->failed && checked && cr->status == 0;
		summary(r, cr, checked, pass ? "ok" : "FAIL", drain_s);
	}
	status = pass ? 0 : 1;
	if (pass && !o->keep)
		tt_rm_rf(r->dir);
	else
		printf("torture: run folder kept at %s\n", r->dir);
out:
	handoff_close(r->c);
	rec_close(&r->rec);
	free(r->restart_ns);
	free(r);
	free(cr);
	return status;
}
