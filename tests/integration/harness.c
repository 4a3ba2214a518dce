/*
 * harness.c — see harness.h.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char *it_default_config = NULL;

/* ---- brokers still running: killed at exit and on fatal signals ---------- */

static bool hooks_installed;

static void on_fatal_signal(int sig)
{
	/* their directories are left in place when a signal ends the test */
	broker_proc_name_live_logs(2,
				   "harness: test killed; broker log kept at ");
	broker_proc_kill_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void install_hooks(void)
{
	if (hooks_installed)
		return;
	hooks_installed = true;
	atexit(broker_proc_kill_all);
	/* meson kills a test that runs past its timeout with SIGTERM. */
	signal(SIGTERM, on_fatal_signal);
	signal(SIGINT, on_fatal_signal);
	signal(SIGHUP, on_fatal_signal);
	/* A CLI child that dies early must not kill us when we write its stdin. */
	signal(SIGPIPE, SIG_IGN);
}

/* ---- time --------------------------------------------------------------- */

uint64_t it_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t it_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void it_sleep_ms(uint32_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- broker ----------------------------------------------------------- */

/* What the harness keeps beside the broker the tests see. */
struct it_broker {
	struct broker_proc proc;
	bool passed; /* set by broker_passed(): no log dump */
};

static struct it_broker *it_broker_of(broker *b)
{
	return (struct it_broker *)((char *)b -
				    offsetof(struct it_broker, proc));
}

static const char *handoffd_path(void)
{
	const char *p = getenv("HANDOFFD");
	if (!p || !*p) {
		fprintf(stderr,
			"harness: HANDOFFD is not set (run via meson test)\n");
		fail();
	}
	return p;
}

broker *broker_prepare_listen(const char *config_ini, const char *listen_url)
{
	install_hooks();
	struct it_broker *ib = calloc(1, sizeof(*ib));
	if (!ib)
		abort(); /* (cmocka's asserts are not noreturn to the compiler) */
	const char *exe = handoffd_path();

	/* The ipc path must stay well below 108 bytes (nanomsg asserts). */
	char dir[BROKER_PROC_DIR_LEN];
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp || strlen(tmp) > 60)
		tmp = "/tmp";
	if (broker_proc_mkdtemp(tmp, "hoit-", dir, sizeof(dir)))
		assert_int_equal(
			broker_proc_mkdtemp("/tmp", "hoit-", dir, sizeof(dir)),
			0);
	const struct broker_proc_files files = { .sock_name = "broker.sock",
						 .log_name = "broker.log",
						 .listen = listen_url };
	char err[2 * BROKER_PROC_PATH];
	int rc = broker_proc_init(&ib->proc, exe, dir, &files, config_ini, err,
				  sizeof(err));
	if (rc)
		fail_msg("harness: %s", err);
	assert_true(listen_url || strlen(ib->proc.sock) < 100);
	return &ib->proc;
}

broker *broker_prepare(const char *config_ini)
{
	return broker_prepare_listen(config_ini, NULL);
}

broker *broker_start(const char *config_ini)
{
	broker *b = broker_prepare(config_ini);
	broker_spawn(b);
	return b;
}

/* A line in the log: what the harness did to start number start. */
static void log_marker_at(const broker *b, const char *what, unsigned start)
{
	broker_proc_log_note(b,
			     "---- harness: %s (start #%u) at wall %llu ----",
			     what, start, (unsigned long long)it_wall_ms());
}

static void log_marker(const broker *b, const char *what)
{
	log_marker_at(b, what, b->starts);
}

static void spawn_common(broker *b, uint32_t delay_ms)
{
	assert_int_equal(b->pid, 0);
	log_marker_at(b, delay_ms ? "spawn (delayed)" : "spawn", b->starts + 1);
	struct broker_proc_spawn how = { .delay_ms = delay_ms };
	int rc = broker_proc_spawn(b, &how);
	if (rc != 0) {
		fprintf(stderr, "harness: posix_spawn %s: %s\n", b->exe,
			strerror(rc));
		fail();
	}
}

void broker_spawn_delayed(broker *b, uint32_t delay_ms)
{
	spawn_common(b, delay_ms ? delay_ms : 1);
}

void broker_wait_ready(broker *b)
{
	static const struct broker_proc_ping ping = {
		.consumer_name = "harness",
		.deadline_ms = 300,
		.attempt_timeout_ms = 150,
		.pause_ms = 20,
	};
	int rc = -1;
	switch (broker_proc_wait_ready(b, IT_READY_TIMEOUT_MS, &ping, &rc)) {
	case BROKER_PROC_READY:
		log_marker(b, "ready");
		return;
	case BROKER_PROC_EXITED:
		fprintf(stderr,
			"harness: handoffd exited before it answered "
			"(wait status 0x%x)\n",
			b->status);
		break;
	case BROKER_PROC_TIMEOUT:
		fprintf(stderr,
			"harness: handoffd did not answer within %d ms "
			"(last error %s)\n",
			IT_READY_TIMEOUT_MS,
			rc < 0 ? "no socket file" : handoff_strerror(rc));
		break;
	}
	broker_dump_log(b);
	fail();
}

void broker_spawn(broker *b)
{
	spawn_common(b, 0);
	broker_wait_ready(b);
}

void broker_kill9(broker *b)
{
	assert_true(b->pid > 0);
	log_marker(b, "kill -9");
	assert_int_equal(broker_proc_kill9(b), 0);
}

void broker_term(broker *b)
{
	assert_true(b->pid > 0);
	log_marker(b, "SIGTERM");
	if (!broker_proc_term(b, 20000)) {
		fprintf(stderr, "harness: handoffd did not exit within "
				"20 s of SIGTERM\n");
		fail();
	}
	int st = b->status;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		if (WIFSIGNALED(st))
			fprintf(stderr,
				"harness: handoffd died of signal %d "
				"after SIGTERM\n",
				WTERMSIG(st));
		else
			fprintf(stderr,
				"harness: handoffd exited with status "
				"%d after SIGTERM\n",
				WEXITSTATUS(st));
		fail();
	}
	log_marker(b, "exited 0");
}

void broker_restart(broker *b, bool hard)
{
	if (hard)
		broker_kill9(b);
	else
		broker_term(b);
	broker_spawn(b);
}

const char *broker_url(const broker *b)
{
	return b->url;
}

bool broker_log_contains(const broker *b, const char *needle)
{
	return broker_proc_log_contains(b, needle, false);
}

void broker_dump_log(const broker *b)
{
	size_t len = 0;
	char *text = broker_proc_log_read(b, &len);
	fprintf(stderr, "==== handoffd log (%s) ====\n", b->log);
	if (text) {
		/* The tail is what matters; keep the output readable. */
		const size_t max = 60000;
		const char *p = text;
		if (len > max) {
			p = text + len - max;
			fprintf(stderr, "[... %zu bytes skipped ...]\n",
				len - max);
		}
		fputs(p, stderr);
	} else {
		fprintf(stderr, "(no log)\n");
	}
	fprintf(stderr, "==== end of handoffd log ====\n");
	free(text);
}

void broker_passed(broker *b)
{
	it_broker_of(b)->passed = true;
}

void broker_cleanup(broker *b)
{
	if (!b)
		return;
	broker_proc_kill9(b);
	if (!it_broker_of(b)->passed || getenv("HANDOFF_TEST_VERBOSE"))
		broker_dump_log(b);
	if (getenv("HANDOFF_KEEP_TMP"))
		fprintf(stderr, "harness: kept %s\n", b->dir);
	else
		broker_proc_remove_dir(b->dir);
	free(it_broker_of(b));
}

int it_setup(void **state)
{
	*state = broker_start(it_default_config);
	return 0;
}

int it_teardown(void **state)
{
	broker_cleanup(*state);
	*state = NULL;
	return 0;
}

/* ---- client helpers ------------------------------------------------------ */

handoff_client *it_connect(const broker *b, const char *consumer,
			   uint32_t deadline_ms)
{
	handoff_options o = { .deadline_ms = deadline_ms ? deadline_ms : 15000,
			      .consumer_name = consumer };
	handoff_client *c = NULL;
	int rc = handoff_connect(b->url, &o, &c);
	if (rc != HANDOFF_OK)
		fprintf(stderr, "it_connect: %s\n", handoff_strerror(rc));
	assert_int_equal(rc, HANDOFF_OK);
	assert_non_null(c);
	return c;
}

static void report(handoff_client *c, const char *what, int rc)
{
	if (rc != HANDOFF_OK)
		fprintf(stderr, "%s: %s (%d): %s\n", what, handoff_strerror(rc),
			rc, handoff_last_message(c));
}

bool it_subscribe(handoff_client *c, const char *topic, const char *sub,
		  uint32_t max_attempts, uint32_t ack_deadline_ms,
		  uint32_t backoff_min_ms, uint32_t backoff_max_ms)
{
	handoff_policy p = { max_attempts, ack_deadline_ms, backoff_min_ms,
			     backoff_max_ms };
	handoff_policy eff = { 0 };
	bool created = false;
	int rc = handoff_subscribe(c, topic, sub, &p, &created, &eff);
	report(c, "subscribe", rc);
	assert_int_equal(rc, HANDOFF_OK);
	if (max_attempts)
		assert_int_equal(eff.max_attempts, max_attempts);
	if (ack_deadline_ms)
		assert_int_equal(eff.ack_deadline_ms, ack_deadline_ms);
	if (backoff_min_ms)
		assert_int_equal(eff.backoff_min_ms, backoff_min_ms);
	if (backoff_max_ms)
		assert_int_equal(eff.backoff_max_ms, backoff_max_ms);
	return created;
}

uint64_t it_publish1(handoff_client *c, const char *topic, const char *payload,
		     const char *key, const char *idem)
{
	handoff_event ev = { .payload = payload,
			     .payload_len = payload ? strlen(payload) : 0,
			     .key = key,
			     .idempotency_key = idem };
	uint64_t id = 0;
	bool dup = true;
	int rc = handoff_publish(c, topic, &ev, 1, &id, &dup);
	report(c, "publish", rc);
	assert_int_equal(rc, HANDOFF_OK);
	assert_true(id != 0);
	return id;
}

size_t it_fetch(handoff_client *c, const char *sub, size_t max,
		uint32_t wait_ms, handoff_delivery **out)
{
	size_t n = 0;
	*out = NULL;
	int rc = handoff_fetch(c, sub, max, wait_ms, out, &n);
	report(c, "fetch", rc);
	assert_int_equal(rc, HANDOFF_OK);
	assert_true(n <= max);
	if (n)
		assert_non_null(*out);
	return n;
}

int it_ack1(handoff_client *c, const char *sub, uint64_t id, uint64_t token)
{
	handoff_ack_item it = { id, token };
	int res = -1;
	int rc = handoff_ack(c, sub, &it, 1, &res);
	report(c, "ack", rc);
	assert_int_equal(rc, HANDOFF_OK);
	return res;
}

int it_nack1(handoff_client *c, const char *sub, uint64_t id, uint64_t token,
	     uint32_t delay_ms, bool permanent, const char *reason)
{
	handoff_nack_item it = { .event_id = id,
				 .lease_token = token,
				 .delay_ms = delay_ms,
				 .permanent = permanent,
				 .reason = reason };
	int res = -1;
	int rc = handoff_nack(c, sub, &it, 1, &res);
	report(c, "nack", rc);
	assert_int_equal(rc, HANDOFF_OK);
	return res;
}

void it_assert_backoff(uint32_t delay, uint32_t k, uint32_t bmin, uint32_t bmax)
{
	uint64_t d = bmin;
	for (uint32_t i = 1; i < k && d < bmax; i++)
		d *= 2;
	if (d > bmax)
		d = bmax;
	uint64_t lo = d / 2, hi = d + d / 2;
	if (hi > bmax)
		hi = bmax;
	if (delay < lo || delay > hi)
		fprintf(stderr,
			"retry delay after attempt %u is %u ms, "
			"expected [%llu, %llu] (min %u, max %u)\n",
			k, delay, (unsigned long long)lo,
			(unsigned long long)hi, bmin, bmax);
	assert_true(delay >= lo && delay <= hi);
}

void it_assert_consumer(const char *shown, const char *given)
{
	assert_non_null(shown);
	size_t n = strlen(given);
	bool ok = strcmp(shown, given) == 0 ||
		  (strncmp(shown, given, n) == 0 && shown[n] == ':' &&
		   shown[n + 1] != '\0');
	if (!ok)
		fprintf(stderr, "consumer shown as \"%s\", given \"%s\"\n",
			shown, given);
	assert_true(ok);
}

handoff_subscription_trace *it_trace_find(handoff_trace *t, const char *sub)
{
	assert_non_null(t);
	for (size_t i = 0; i < t->n_subscriptions; i++)
		if (strcmp(t->subscriptions[i].subscription, sub) == 0)
			return &t->subscriptions[i];
	fprintf(stderr, "trace of %llu has no subscription %s\n",
		(unsigned long long)t->event_id, sub);
	fail();
	return NULL;
}

handoff_subscription_trace *it_trace_sub(handoff_client *c, uint64_t id,
					 const char *sub, handoff_trace **t)
{
	*t = NULL;
	int rc = handoff_trace_event(c, id, t);
	report(c, "trace", rc);
	assert_int_equal(rc, HANDOFF_OK);
	assert_non_null(*t);
	assert_int_equal((*t)->event_id, id);
	return it_trace_find(*t, sub);
}

handoff_subscription_info it_sub_info(handoff_client *c, const char *sub)
{
	handoff_subscription_info *s = NULL;
	size_t n = 0;
	int rc = handoff_list_subscriptions(c, &s, &n);
	report(c, "list_subscriptions", rc);
	assert_int_equal(rc, HANDOFF_OK);
	handoff_subscription_info r = { 0 };
	bool found = false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(s[i].name, sub) == 0) {
			r = s[i];
			found = true;
		}
	r.name = NULL;
	r.topic = NULL;
	handoff_subscriptions_free(s, n);
	if (!found)
		fprintf(stderr, "no subscription %s listed\n", sub);
	assert_true(found);
	return r;
}

handoff_subscription_stats it_sub_stats(handoff_client *c, const char *sub)
{
	handoff_stats *st = NULL;
	int rc = handoff_get_stats(c, &st);
	report(c, "stats", rc);
	assert_int_equal(rc, HANDOFF_OK);
	assert_non_null(st);
	handoff_subscription_stats r = { 0 };
	bool found = false;
	for (size_t i = 0; i < st->n_subscriptions; i++)
		if (strcmp(st->subscriptions[i].name, sub) == 0) {
			r = st->subscriptions[i];
			found = true;
		}
	r.name = NULL;
	r.topic = NULL;
	handoff_stats_free(st);
	if (!found)
		fprintf(stderr, "no stats for subscription %s\n", sub);
	assert_true(found);
	return r;
}

size_t it_dlq_count(handoff_client *c, const char *sub)
{
	size_t total = 0;
	handoff_dlq_filter f = { 0 };
	for (;;) {
		handoff_dead_letter *d = NULL;
		size_t n = 0;
		bool more = false;
		int rc = handoff_dlq_list(c, sub, &f, 100, &d, &n, &more);
		report(c, "dlq_list", rc);
		assert_int_equal(rc, HANDOFF_OK);
		total += n;
		if (n)
			f.after_event_id = d[n - 1].event_id;
		handoff_dead_letters_free(d, n);
		if (!more || n == 0)
			break;
	}
	return total;
}

bool it_dlq_has(handoff_client *c, const char *sub, uint64_t id)
{
	handoff_dlq_filter f = { .after_event_id = id - 1 };
	handoff_dead_letter *d = NULL;
	size_t n = 0;
	bool more = false;
	int rc = handoff_dlq_list(c, sub, &f, 1, &d, &n, &more);
	report(c, "dlq_list", rc);
	assert_int_equal(rc, HANDOFF_OK);
	bool has = n == 1 && d[0].event_id == id;
	handoff_dead_letters_free(d, n);
	return has;
}

/* ---- child processes with captured output --------------------------------- */

static void buf_append(char **buf, size_t *len, size_t *cap, const char *src,
		       size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t nc = *cap ? *cap : 4096;
		while (*len + n + 1 > nc)
			nc *= 2;
		char *nb = realloc(*buf, nc);
		assert_non_null(nb);
		*buf = nb;
		*cap = nc;
	}
	memcpy(*buf + *len, src, n);
	*len += n;
	(*buf)[*len] = '\0';
}

int it_run(const char *const *argv, const char *stdin_data, uint32_t timeout_ms,
	   cli_result *r)
{
	install_hooks();
	memset(r, 0, sizeof(*r));
	if (!timeout_ms)
		timeout_ms = 30000;
	int in[2], out[2], err[2];
	assert_int_equal(pipe2(in, O_CLOEXEC), 0);
	assert_int_equal(pipe2(out, O_CLOEXEC), 0);
	assert_int_equal(pipe2(err, O_CLOEXEC), 0);

	posix_spawn_file_actions_t fa;
	assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
#if defined(__GLIBC__) && \
	(__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	sigset_t none, dfl;
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGTERM);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
						POSIX_SPAWN_SETSIGDEF);
	pid_t pid = 0;
	int rc = posix_spawn(&pid, argv[0], &fa, &attr, (char *const *)argv,
			     environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	if (rc != 0) {
		fprintf(stderr, "it_run: posix_spawn %s: %s\n", argv[0],
			strerror(rc));
		close(in[1]);
		close(out[0]);
		close(err[0]);
		fail();
	}

	size_t in_len = stdin_data ? strlen(stdin_data) : 0, in_off = 0;
	int in_fd = in[1];
	if (in_len == 0) {
		close(in_fd);
		in_fd = -1;
	} else {
		fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK);
	}
	size_t ocap = 0, ecap = 0;
	buf_append(&r->out, &r->out_len, &ocap, "", 0);
	buf_append(&r->err, &r->err_len, &ecap, "", 0);
	int out_fd = out[0], err_fd = err[0];
	uint64_t deadline = it_now_ms() + timeout_ms;
	bool timed_out = false;
	while (out_fd >= 0 || err_fd >= 0) {
		struct pollfd p[3];
		int np = 0;
		int io = -1, ie = -1, ii = -1;
		if (out_fd >= 0) {
			io = np;
			p[np++] = (struct pollfd){ out_fd, POLLIN, 0 };
		}
		if (err_fd >= 0) {
			ie = np;
			p[np++] = (struct pollfd){ err_fd, POLLIN, 0 };
		}
		if (in_fd >= 0) {
			ii = np;
			p[np++] = (struct pollfd){ in_fd, POLLOUT, 0 };
		}
		uint64_t now = it_now_ms();
		if (now >= deadline) {
			timed_out = true;
			break;
		}
		int pr = poll(p, (nfds_t)np, (int)(deadline - now));
		if (pr < 0 && errno == EINTR)
			continue;
		assert_true(pr >= 0);
		char tmp[8192];
		if (io >= 0 && p[io].revents) {
			ssize_t k = read(out_fd, tmp, sizeof(tmp));
			if (k > 0)
				buf_append(&r->out, &r->out_len, &ocap, tmp,
					   (size_t)k);
			else if (k == 0 || errno != EINTR) {
				close(out_fd);
				out_fd = -1;
			}
		}
		if (ie >= 0 && p[ie].revents) {
			ssize_t k = read(err_fd, tmp, sizeof(tmp));
			if (k > 0)
				buf_append(&r->err, &r->err_len, &ecap, tmp,
					   (size_t)k);
			else if (k == 0 || errno != EINTR) {
				close(err_fd);
				err_fd = -1;
			}
		}
		if (ii >= 0 && p[ii].revents) {
			ssize_t k = write(in_fd, stdin_data + in_off,
					  in_len - in_off);
			if (k > 0)
				in_off += (size_t)k;
			if ((k < 0 && errno != EAGAIN && errno != EINTR) ||
			    in_off == in_len) {
				close(in_fd);
				in_fd = -1;
			}
		}
	}
	if (in_fd >= 0)
		close(in_fd);
	if (out_fd >= 0)
		close(out_fd);
	if (err_fd >= 0)
		close(err_fd);
	if (timed_out)
		kill(pid, SIGKILL);
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (timed_out)
		r->status = -1;
	else if (WIFEXITED(st))
		r->status = WEXITSTATUS(st);
	else if (WIFSIGNALED(st))
		r->status = 128 + WTERMSIG(st);
	else
		r->status = -1;
	return r->status;
}

bool cli_runv(const broker *b, const char *stdin_data, uint32_t timeout_ms,
	      cli_result *r, const char *const *args)
{
	memset(r, 0, sizeof(*r));
	const char *cli = getenv("HANDOFF_CLI");
	if (!cli || !*cli)
		return false;
	const char *argv[64];
	size_t n = 0;
	argv[n++] = cli;
	argv[n++] = "--broker";
	argv[n++] = b->url;
	for (size_t i = 0; args[i]; i++) {
		assert_true(n < 63);
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	it_run(argv, stdin_data, timeout_ms, r);
	return true;
}

bool cli_run(const broker *b, const char *stdin_data, uint32_t timeout_ms,
	     cli_result *r, ...)
{
	const char *args[60];
	size_t n = 0;
	va_list ap;
	va_start(ap, r);
	const char *a;
	while ((a = va_arg(ap, const char *)) != NULL) {
		assert_true(n < 59);
		args[n++] = a;
	}
	va_end(ap);
	args[n] = NULL;
	return cli_runv(b, stdin_data, timeout_ms, r, args);
}

void cli_result_free(cli_result *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}
