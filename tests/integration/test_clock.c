/*
 * test_clock.c — handoff through wall-clock steps (the delivery contract's
 * promise 14): real brokers, and where it matters the CLI, run under
 * libfaketime with an offset file that the test rewrites while they run
 * (FAKETIME_TIMESTAMP_FILE, FAKETIME_NO_CACHE=1). FAKETIME_DONT_FAKE_
 * MONOTONIC=1 leaves CLOCK_MONOTONIC real, as an NTP step or `date -s`
 * does. The test process itself keeps the real clocks: only the processes
 * it spawns while the preload is set are faked.
 *
 * Each test steps a clock by an hour (or a day) at a bad moment — a lease
 * held, a nack delay pending, a long poll held, a signed client holding
 * the broker's clock, the broker down — and checks that every duration
 * keeps its length and that nothing is lost, doubled or marked done.
 *
 * Skipped (with a message) when libfaketime is not installed.
 */
#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "handoff.pb-c.h"

#define FAKETIME_LIB "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

#define KEY_HEX \
	"4444444444444444444444444444444444444444444444444444444444444444"

#define HOUR_MS 3600000ll

static const char OPEN_CONFIG[] = "[defaults]\n"
				  "max_attempts = 5\n"
				  "ack_deadline = 3s\n";

/* One key with every role: each handle costs exactly one stale refusal
 * when its clock is off, which the tests count in the broker's log. */
static const char SIGNED_CONFIG[] = "[defaults]\n"
				    "max_attempts = 5\n"
				    "ack_deadline = 3s\n"
				    "[key all]\n"
				    "role = producer, consumer, operator\n"
				    "secret = " KEY_HEX "\n"
				    "topics = *\n"
				    "subscriptions = *\n";

/* ---- the faked clock ---------------------------------------------------- */

static bool have_faketime(void)
{
	if (access(FAKETIME_LIB, R_OK) == 0)
		return true;
	fprintf(stderr,
		"test_clock: %s not installed (Debian package faketime): "
		"skipped\n",
		FAKETIME_LIB);
	return false;
}

/* The offset file of a broker's folder (or of a client: name differs). */
static void offset_path(const broker *b, const char *name, char *out,
			size_t len)
{
	snprintf(out, len, "%s/%s", b->dir, name);
}

/* Write offset ("+0", "-1h", "+25h") atomically: a faked process reads the
 * file at every clock call and must never see it half written. */
static void set_offset(const broker *b, const char *name, const char *offset)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	offset_path(b, name, path, sizeof path);
	snprintf(tmp, sizeof tmp, "%s.new", path);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fprintf(f, "%s\n", offset);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, path), 0);
}

static char saved_asan[1024];
static bool had_asan;

/* Processes spawned from now on run with their wall clock read from the
 * offset file `name` of b's folder. */
static void fake_on(const broker *b, const char *name)
{
	char path[PATH_MAX];
	offset_path(b, name, path, sizeof path);
	assert_int_equal(setenv("LD_PRELOAD", FAKETIME_LIB, 1), 0);
	assert_int_equal(setenv("FAKETIME_TIMESTAMP_FILE", path, 1), 0);
	assert_int_equal(setenv("FAKETIME_NO_CACHE", "1", 1), 0);
	assert_int_equal(setenv("FAKETIME_DONT_FAKE_MONOTONIC", "1", 1), 0);
	/* An ASan build wants its runtime first in the library list; the
	 * preload comes before it, which is harmless here (libfaketime only
	 * wraps the clock calls), so the check is turned off. */
	const char *asan = getenv("ASAN_OPTIONS");
	had_asan = asan != NULL;
	snprintf(saved_asan, sizeof saved_asan, "%s", asan ? asan : "");
	char opts[1100];
	snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", saved_asan,
		 saved_asan[0] ? ":" : "");
	assert_int_equal(setenv("ASAN_OPTIONS", opts, 1), 0);
}

static void fake_off(void)
{
	unsetenv("LD_PRELOAD");
	unsetenv("FAKETIME_TIMESTAMP_FILE");
	unsetenv("FAKETIME_NO_CACHE");
	unsetenv("FAKETIME_DONT_FAKE_MONOTONIC");
	if (had_asan)
		setenv("ASAN_OPTIONS", saved_asan, 1);
	else
		unsetenv("ASAN_OPTIONS");
}

/* Spawn b's broker with its wall clock at the offset in "broker.ft". */
static void spawn_faked(broker *b)
{
	fake_on(b, "broker.ft");
	broker_spawn(b);
	fake_off();
}

static broker *start_faked(const char *config, const char *offset)
{
	broker *b = broker_prepare(config);
	set_offset(b, "broker.ft", offset);
	spawn_faked(b);
	return b;
}

/* ---- client helpers ------------------------------------------------------ */

static handoff_client *connect_signed(const broker *b, const char *name)
{
	unsigned char secret[32];
	handoff_options o = { .deadline_ms = 15000, .consumer_name = name };
	handoff_client *c = NULL;
	assert_int_equal(handoff_parse_secret(KEY_HEX, secret), HANDOFF_OK);
	o.key_id = "all";
	o.secret = secret;
	assert_int_equal(handoff_connect(broker_url(b), &o, &c), HANDOFF_OK);
	return c;
}

/* Fetch from sub until something comes or limit_ms pass; how many came. */
static size_t fetch_within(handoff_client *c, const char *sub, size_t max,
			   uint32_t limit_ms, handoff_delivery **out)
{
	uint64_t end = it_now_ms() + limit_ms;
	do {
		size_t n = it_fetch(c, sub, max, 500, out);
		if (n)
			return n;
	} while (it_now_ms() < end);
	*out = NULL;
	return 0;
}

/* Nothing more is delivered from sub for a while: no double delivery. */
static void assert_drained(handoff_client *c, const char *sub)
{
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, sub, 10, 1200, &d), 0);
	handoff_subscription_stats s = it_sub_stats(c, sub);
	assert_int_equal(s.ready + s.delayed + s.leased + s.dead, 0);
}

static size_t count_in_log(const broker *b, const char *needle)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s", b->log);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[8192];
	size_t n = 0;
	while (fgets(line, sizeof line, f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

/* ---- leases, nack delays, long polls inside one run ---------------------- */

/* A 3 s lease taken just before the wall clock steps back an hour expires
 * after 3 s (plus a turn), not an hour later; the event comes again, the
 * stale token is refused, and the event is done once. */
static void test_lease_expires_through_step_back(void **state)
{
	(void)state;
	broker *b = start_faked(OPEN_CONFIG, "+0");
	handoff_client *c = it_connect(b, "lessee", 0);
	it_subscribe(c, "t", "s", 5, 3000, 50, 200);
	uint64_t id = it_publish1(c, "t", "one", NULL, "lease-1");
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 1, 2000, &d), 1);
	uint64_t leased_at = it_now_ms(), token = d[0].lease_token;
	handoff_deliveries_free(d, 1);
	set_offset(b, "broker.ft", "-1h");

	assert_int_equal(fetch_within(c, "s", 1, 12000, &d), 1);
	uint64_t waited = it_now_ms() - leased_at;
	assert_int_equal(d[0].event_id, id);
	assert_int_equal(d[0].attempt, 2);
	assert_true(waited >= 2500);
	assert_true(waited < 8000);
	assert_int_equal(it_ack1(c, "s", id, token), HANDOFF_ELEASELOST);
	assert_int_equal(it_ack1(c, "s", id, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	assert_drained(c, "s");
	handoff_subscription_stats s = it_sub_stats(c, "s");
	assert_int_equal(s.acked, 1);
	assert_int_equal(s.expired, 1);
	handoff_close(c);
	broker_passed(b);
	broker_cleanup(b);
}

/* A forward step of an hour does not end a lease early: the ack made a
 * second after it is taken, right after the step, is accepted. */
static void test_lease_kept_through_step_forward(void **state)
{
	(void)state;
	broker *b = start_faked(OPEN_CONFIG, "+0");
	handoff_client *c = it_connect(b, "keeper", 0);
	it_subscribe(c, "t", "s", 5, 4000, 50, 200);
	uint64_t id = it_publish1(c, "t", "one", NULL, "fwd-1");
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 1, 2000, &d), 1);
	set_offset(b, "broker.ft", "+1h");
	it_sleep_ms(1000);
	assert_int_equal(it_ack1(c, "s", id, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	assert_drained(c, "s");
	handoff_subscription_stats s = it_sub_stats(c, "s");
	assert_int_equal(s.acked, 1);
	assert_int_equal(s.expired, 0);
	handoff_close(c);
	broker_passed(b);
	broker_cleanup(b);
}

/* A 1 s nack delay pending when the clock steps back an hour comes due
 * after about 1 s. */
static void test_nack_delay_through_step_back(void **state)
{
	(void)state;
	broker *b = start_faked(OPEN_CONFIG, "+0");
	handoff_client *c = it_connect(b, "nacker", 0);
	it_subscribe(c, "t", "s", 5, 30000, 50, 200);
	uint64_t id = it_publish1(c, "t", "one", NULL, "nack-1");
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 1, 2000, &d), 1);
	assert_int_equal(
		it_nack1(c, "s", id, d[0].lease_token, 1000, false, "later"),
		HANDOFF_OK);
	uint64_t nacked_at = it_now_ms();
	handoff_deliveries_free(d, 1);
	set_offset(b, "broker.ft", "-1h");

	assert_int_equal(fetch_within(c, "s", 1, 12000, &d), 1);
	uint64_t waited = it_now_ms() - nacked_at;
	assert_int_equal(d[0].event_id, id);
	assert_int_equal(d[0].attempt, 2);
	assert_true(waited >= 900);
	assert_true(waited < 5000);
	assert_int_equal(it_ack1(c, "s", id, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	assert_drained(c, "s");
	handoff_close(c);
	broker_passed(b);
	broker_cleanup(b);
}

struct later_step {
	const broker *b;
	uint32_t after_ms;
	const char *offset;
};

static void *step_later(void *arg)
{
	struct later_step *s = arg;
	it_sleep_ms(s->after_ms);
	set_offset(s->b, "broker.ft", s->offset);
	return NULL;
}

/* Long polls on an empty subscription hold for their wait, not less (a
 * forward step while held) and not more (a step back while held), and the
 * CLI's `consume --wait 2s` ends in time with exit code 0. */
static void test_long_poll_through_steps(void **state)
{
	(void)state;
	broker *b = start_faked(OPEN_CONFIG, "+0");
	handoff_client *c = it_connect(b, "poller", 0);
	it_subscribe(c, "t", "s", 5, 3000, 50, 200);
	handoff_delivery *d = NULL;
	pthread_t th;

	struct later_step back = { b, 500, "-1h" };
	assert_int_equal(pthread_create(&th, NULL, step_later, &back), 0);
	uint64_t t0 = it_now_ms();
	assert_int_equal(it_fetch(c, "s", 1, 2000, &d), 0);
	uint64_t held = it_now_ms() - t0;
	pthread_join(th, NULL);
	assert_true(held >= 1800);
	assert_true(held < 5000);

	struct later_step fwd = { b, 500, "+1h" };
	assert_int_equal(pthread_create(&th, NULL, step_later, &fwd), 0);
	t0 = it_now_ms();
	assert_int_equal(it_fetch(c, "s", 1, 3000, &d), 0);
	held = it_now_ms() - t0;
	pthread_join(th, NULL);
	assert_true(held >= 2800);
	assert_true(held < 6000);

	/* one more step back, then the CLI's long poll */
	set_offset(b, "broker.ft", "-1h");
	cli_result r;
	t0 = it_now_ms();
	if (cli_run(b, NULL, 20000, &r, "consume", "s", "--wait", "2s", NULL)) {
		uint64_t took = it_now_ms() - t0;
		if (r.status != 0)
			fprintf(stderr, "consume: %d %s\n", r.status, r.err);
		assert_int_equal(r.status, 0);
		assert_true(took < 8000);
		cli_result_free(&r);
	}
	handoff_close(c);
	broker_passed(b);
	broker_cleanup(b);
}

/* Uptime and the dedup window follow broker time: a forward step of 25 h
 * during the run neither makes uptime jump nor forgets the idempotency
 * key of a publish made just before it. */
static void test_dedup_and_uptime_through_step_forward(void **state)
{
	(void)state;
	broker *b = start_faked(OPEN_CONFIG, "+0");
	handoff_client *c = it_connect(b, "producer", 0);
	it_subscribe(c, "t", "s", 5, 3000, 50, 200);
	handoff_event ev = { .payload = "x",
			     .payload_len = 1,
			     .idempotency_key = "order-1" };
	uint64_t id1, id2;
	bool dup = true;
	assert_int_equal(handoff_publish(c, "t", &ev, 1, &id1, &dup),
			 HANDOFF_OK);
	assert_false(dup);
	set_offset(b, "broker.ft", "+25h");
	it_sleep_ms(300);
	assert_int_equal(handoff_publish(c, "t", &ev, 1, &id2, &dup),
			 HANDOFF_OK);
	assert_true(dup);
	assert_int_equal(id1, id2);
	handoff_stats *st = NULL;
	assert_int_equal(handoff_get_stats(c, &st), HANDOFF_OK);
	assert_true(st->uptime_ms < 120000);
	handoff_stats_free(st);
	handoff_subscription_stats s = it_sub_stats(c, "s");
	assert_int_equal(s.ready, 1);
	handoff_close(c);
	broker_passed(b);
	broker_cleanup(b);
}

/* ---- across restarts ---------------------------------------------------- */

/* The broker goes down holding a lease (60 s) and a nack delayed 3 s; its
 * wall clock steps back an hour while it is down. After the restart the
 * lease is recovered at once and the delayed retry comes due within its
 * delay plus the downtime, not an hour later; both are then done once. */
static void test_restart_after_step_back(void **state)
{
	(void)state;
	broker *b = start_faked(OPEN_CONFIG, "+0");
	handoff_client *c = it_connect(b, "survivor", 0);
	it_subscribe(c, "t", "s", 5, 60000, 50, 200);
	uint64_t a = it_publish1(c, "t", "a", NULL, "down-a");
	uint64_t n = it_publish1(c, "t", "n", NULL, "down-n");
	handoff_delivery *d = NULL;
	size_t got = 0;
	while (got < 2) {
		handoff_delivery *more = NULL;
		size_t k = it_fetch(c, "s", 2, 2000, &more);
		assert_true(k > 0);
		for (size_t i = 0; i < k; i++)
			if (more[i].event_id == n)
				assert_int_equal(it_nack1(c, "s", n,
							  more[i].lease_token,
							  3000, false, "later"),
						 HANDOFF_OK);
		got += k;
		handoff_deliveries_free(more, k);
	}
	uint64_t nacked_at = it_now_ms();
	handoff_close(c);
	broker_kill9(b);
	set_offset(b, "broker.ft", "-1h");
	spawn_faked(b);
	assert_true(broker_log_contains(b, "clock_behind_store"));
	uint64_t downtime = it_now_ms() - nacked_at;

	c = it_connect(b, "survivor", 0);
	bool seen_a = false, seen_n = false;
	uint64_t end = it_now_ms() + 3000 + downtime + 8000;
	while ((!seen_a || !seen_n) && it_now_ms() < end) {
		size_t k = it_fetch(c, "s", 2, 500, &d);
		for (size_t i = 0; i < k; i++) {
			if (d[i].event_id == a) {
				assert_false(seen_a);
				seen_a = true;
			} else {
				assert_int_equal(d[i].event_id, n);
				assert_false(seen_n);
				seen_n = true;
				assert_true(it_now_ms() - nacked_at >= 2500);
			}
			assert_int_equal(d[i].attempt, 2);
			assert_int_equal(it_ack1(c, "s", d[i].event_id,
						 d[i].lease_token),
					 HANDOFF_OK);
		}
		handoff_deliveries_free(d, k);
	}
	assert_true(seen_a);
	assert_true(seen_n);
	assert_drained(c, "s");
	handoff_close(c);
	broker_passed(b);
	broker_cleanup(b);
}

/* A forward step of 25 h (past the 24 h dedup window) while the broker is
 * down does not make a publish retried after the restart a second event. */
static void test_dedup_across_restart_step_forward(void **state)
{
	(void)state;
	broker *b = start_faked(OPEN_CONFIG, "+0");
	handoff_client *c = it_connect(b, "producer", 0);
	it_subscribe(c, "t", "s", 5, 3000, 50, 200);
	handoff_event ev = { .payload = "x",
			     .payload_len = 1,
			     .idempotency_key = "order-9" };
	uint64_t id1, id2;
	bool dup = true;
	assert_int_equal(handoff_publish(c, "t", &ev, 1, &id1, &dup),
			 HANDOFF_OK);
	assert_false(dup);
	handoff_close(c);
	broker_kill9(b);
	set_offset(b, "broker.ft", "+25h");
	spawn_faked(b);
	c = it_connect(b, "producer", 0);
	assert_int_equal(handoff_publish(c, "t", &ev, 1, &id2, &dup),
			 HANDOFF_OK);
	assert_true(dup);
	assert_int_equal(id1, id2);
	handoff_subscription_stats s = it_sub_stats(c, "s");
	assert_int_equal(s.ready, 1);
	handoff_close(c);
	broker_passed(b);
	broker_cleanup(b);
}

/* ---- signed requests and clocks that differ ------------------------------ */

/* A broker an hour behind the client: the client's first request is
 * refused as stale, the reply tells the broker's clock, and every request
 * after it gets through at once — through more steps of the broker's wall
 * clock (broker time does not follow them) and, with one more refusal,
 * across a restart that moves broker time. A publish retried across that
 * restart is stored once. */
static void test_signed_client_with_skew(void **state)
{
	(void)state;
	broker *b = start_faked(SIGNED_CONFIG, "-1h");
	size_t denied0 = count_in_log(b, "request_denied");
	handoff_client *c = connect_signed(b, "skewed");
	assert_int_equal(count_in_log(b, "request_denied"), denied0 + 1);
	int64_t skew = handoff_clock_skew_ms(c);
	assert_true(skew < -HOUR_MS + 10000 && skew > -HOUR_MS - 10000);

	it_subscribe(c, "t", "s", 5, 3000, 50, 200);
	uint64_t id = it_publish1(c, "t", "one", NULL, "signed-1");
	set_offset(b, "broker.ft", "-2h");
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 1, 2000, &d), 1);
	set_offset(b, "broker.ft", "+1h");
	assert_int_equal(it_ack1(c, "s", id, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, 1);
	assert_int_equal(count_in_log(b, "request_denied"), denied0 + 1);

	/* restart on the real clock: broker time moves an hour ahead of what
	 * the handle learnt; one refusal, then through */
	broker_kill9(b);
	set_offset(b, "broker.ft", "+0");
	spawn_faked(b);
	size_t denied1 = count_in_log(b, "request_denied");
	handoff_event ev = { .payload = "one",
			     .payload_len = 3,
			     .idempotency_key = "signed-1" };
	uint64_t again;
	bool dup = false;
	assert_int_equal(handoff_publish(c, "t", &ev, 1, &again, &dup),
			 HANDOFF_OK);
	assert_true(dup);
	assert_int_equal(again, id);
	assert_int_equal(count_in_log(b, "request_denied"), denied1 + 1);
	skew = handoff_clock_skew_ms(c);
	assert_true(skew < 10000 && skew > -10000);
	assert_drained(c, "s");
	handoff_close(c);
	broker_passed(b);
	broker_cleanup(b);
}

static const char *secret_file(const broker *b)
{
	static char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/all.secret", b->dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "%s\n", KEY_HEX);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, 0600), 0);
	return path;
}

/* The CLI on a host whose clock is an hour off (either way) gets through,
 * warning on stderr by how much the clocks differ. */
static void test_cli_with_skewed_clock(void **state)
{
	(void)state;
	broker *b = broker_start(SIGNED_CONFIG);
	const char *sf = secret_file(b);
	const char *offsets[] = { "+1h", "-1h" };
	for (size_t i = 0; i < 2; i++) {
		set_offset(b, "cli.ft", offsets[i]);
		fake_on(b, "cli.ft");
		cli_result r;
		bool ran = cli_run(b, NULL, 20000, &r, "--auth-key", "all",
				   "--auth-secret-file", sf, "--timeout", "5s",
				   "stats", NULL);
		fake_off();
		if (!ran)
			break;
		if (r.status != 0)
			fprintf(stderr, "stats: %d %s\n", r.status, r.err);
		assert_int_equal(r.status, 0);
		assert_non_null(strstr(r.err, "clock differs from the broker's "
					      "by 3600 s"));
		cli_result_free(&r);
	}
	broker_passed(b);
	broker_cleanup(b);
}

/* ---- a broker that never tells its clock (or forges it) ------------------ */

struct fake_broker {
	int sock;
	volatile bool stop;
	/* answer pings, and send a clock with a MAC that is not the key's */
	bool forge;
};

static void *fake_serve(void *arg)
{
	struct fake_broker *f = arg;
	while (!f->stop) {
		void *msg = NULL;
		int n = nn_recv(f->sock, &msg, NN_MSG, 0);
		if (n < 0)
			continue;
		Handoff__Wire__Request *req =
			handoff__wire__request__unpack(NULL, (size_t)n, msg);
		bool ping = req &&
			    req->body_case == HANDOFF__WIRE__REQUEST__BODY_PING;
		handoff__wire__request__free_unpacked(req, NULL);
		nn_freemsg(msg);
		Handoff__Wire__Reply r = HANDOFF__WIRE__REPLY__INIT;
		Handoff__Wire__PingReply pr = HANDOFF__WIRE__PING_REPLY__INIT;
		Handoff__Wire__BrokerClock clk =
			HANDOFF__WIRE__BROKER_CLOCK__INIT;
		uint8_t mac[32];
		memset(mac, 0x5a, sizeof mac);
		r.protocol_version = 1;
		r.status = HANDOFF__WIRE__STATUS__STALE_REQUEST;
		r.message = "request signed 3600000 ms from now, outside the "
			    "60000 ms window: sign again";
		if (f->forge && ping) {
			r.status = HANDOFF__WIRE__STATUS__OK;
			r.message = "";
			pr.version = "0.0.0";
			r.body_case = HANDOFF__WIRE__REPLY__BODY_PING;
			r.ping = &pr;
		} else if (f->forge) {
			clk.now_ms = 4000000000000ull;
			clk.mac.data = mac;
			clk.mac.len = sizeof mac;
			r.clock = &clk;
		}
		uint8_t buf[512];
		size_t len = handoff__wire__reply__pack(&r, buf);
		nn_send(f->sock, buf, len, 0);
	}
	return NULL;
}

/* A broker that keeps refusing every signed request as stale without a
 * clock the key can vouch for — none at all, or (after answering the
 * connect's ping) a clock hours ahead with a forged MAC: the library gives
 * up at the deadline with HANDOFF_ESTALE (not a timeout) and adopts no
 * clock; the CLI names the clock and exits 11. */
static void test_stale_without_clock(void **state)
{
	(void)state;
	broker *b = broker_prepare(SIGNED_CONFIG); /* a folder, never run */
	char url[PATH_MAX + 16];
	snprintf(url, sizeof url, "ipc://%s/fake.sock", b->dir);
	const char *sf = secret_file(b);
	for (int forge = 0; forge < 2; forge++) {
		struct fake_broker f = { .sock = nn_socket(AF_SP, NN_REP),
					 .forge = forge };
		assert_true(f.sock >= 0);
		int to = 100;
		assert_int_equal(nn_setsockopt(f.sock, NN_SOL_SOCKET,
					       NN_RCVTIMEO, &to, sizeof to),
				 0);
		assert_true(nn_bind(f.sock, url) >= 0);
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, fake_serve, &f), 0);

		unsigned char secret[32];
		assert_int_equal(handoff_parse_secret(KEY_HEX, secret),
				 HANDOFF_OK);
		handoff_options o = { .deadline_ms = 1500,
				      .key_id = "all",
				      .secret = secret };
		handoff_client *c = NULL;
		if (!forge) {
			assert_int_equal(handoff_connect(url, &o, &c),
					 HANDOFF_ESTALE);
			assert_null(c);
		} else {
			handoff_stats *st = NULL;
			assert_int_equal(handoff_connect(url, &o, &c),
					 HANDOFF_OK);
			assert_int_equal(handoff_get_stats(c, &st),
					 HANDOFF_ESTALE);
			assert_null(st);
			assert_int_equal(handoff_clock_skew_ms(c), 0);
			handoff_close(c);
		}

		const char *argv[] = { getenv("HANDOFF_CLI"),
				       "--broker",
				       url,
				       "--auth-key",
				       "all",
				       "--auth-secret-file",
				       sf,
				       "--timeout",
				       "1500ms",
				       "stats",
				       NULL };
		if (argv[0]) {
			cli_result r;
			it_run(argv, NULL, 20000, &r);
			assert_int_equal(r.status, 11);
			assert_non_null(strstr(r.err, "clock"));
			assert_null(strstr(r.err, "still refused"));
			cli_result_free(&r);
		}
		f.stop = true;
		pthread_join(th, NULL);
		nn_close(f.sock);
	}
	broker_passed(b);
	broker_cleanup(b);
}

int main(void)
{
	if (!have_faketime())
		return 77; /* meson: skipped */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lease_expires_through_step_back),
		cmocka_unit_test(test_lease_kept_through_step_forward),
		cmocka_unit_test(test_nack_delay_through_step_back),
		cmocka_unit_test(test_long_poll_through_steps),
		cmocka_unit_test(test_dedup_and_uptime_through_step_forward),
		cmocka_unit_test(test_restart_after_step_back),
		cmocka_unit_test(test_dedup_across_restart_step_forward),
		cmocka_unit_test(test_signed_client_with_skew),
		cmocka_unit_test(test_cli_with_skewed_clock),
		cmocka_unit_test(test_stale_without_clock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
