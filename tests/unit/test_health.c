/*
 * test_health.c — the health state (broker/health.h): what is live and
 * ready and why not, a full store still ready, the liveness timeout, and
 * the rate limit of failure logs (never silent: a changed reason and the
 * next period are logged, with the count left out).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "health.h"

static void ready_state(void)
{
	health_reset(1000);
	health_set_store_open(true);
	health_beat(clock_mono_ms());
	health_set_recovered(7);
}

static void test_states(void **state)
{
	(void)state;
	struct health_report r;
	uint64_t now = clock_mono_ms();

	health_reset(1000);
	health_report(&r, now);
	assert_true(r.live);
	assert_false(r.ready);
	assert_string_equal(r.reason, "store not open");

	health_set_store_open(true);
	health_report(&r, now);
	assert_true(r.live);
	assert_false(r.ready);
	assert_false(r.recovered);
	assert_string_equal(r.reason,
			    "recovering leases from before the start");

	ready_state();
	health_report(&r, clock_mono_ms());
	assert_true(r.live);
	assert_true(r.ready);
	assert_string_equal(r.reason, "");
	assert_int_equal(r.recovered_leases, 7);

	/* a full store is reported, and still ready: acks must go on */
	health_set_storage_full(true);
	health_report(&r, clock_mono_ms());
	assert_true(r.storage_full);
	assert_true(r.ready);
	health_set_storage_full(false);

	health_set_stopping();
	health_report(&r, clock_mono_ms());
	assert_true(r.live);
	assert_false(r.ready);
	assert_string_equal(r.reason, "stopping");

	ready_state();
	health_set_fatal();
	health_report(&r, clock_mono_ms());
	assert_false(r.live);
	assert_false(r.ready);
	assert_non_null(strstr(r.reason, "store unusable"));
}

static void test_liveness_timeout(void **state)
{
	(void)state;
	struct health_report r;
	ready_state();
	uint64_t beat = clock_mono_ms();
	health_beat(beat);
	health_report(&r, beat + 1000);
	assert_true(r.live);
	assert_int_equal(r.loop_age_ms, 1000);
	health_report(&r, beat + 1001);
	assert_false(r.live);
	assert_false(r.ready);
	assert_string_equal(r.reason, "store loop not turning");
	/* a beat makes it live again */
	health_beat(beat + 1001);
	health_report(&r, beat + 1001);
	assert_true(r.live);
	assert_true(r.ready);
	/* 0: the default */
	health_reset(0);
	health_set_store_open(true);
	health_set_recovered(0);
	health_beat(beat);
	health_report(&r, beat + HEALTH_STALE_MS);
	assert_true(r.live);
	health_report(&r, beat + HEALTH_STALE_MS + 1);
	assert_false(r.live);
}

static int count(const char *buf, const char *what)
{
	int n = 0;
	for (const char *p = buf; (p = strstr(p, what)); p++)
		n++;
	return n;
}

static void test_log_rate_limit(void **state)
{
	(void)state;
	struct health_report r;
	char path[] = "/tmp/handoff-test-health-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);

	health_reset(1000);
	uint64_t t = 1000000;
	health_report(&r, clock_mono_ms()); /* store not open */
	for (int i = 0; i < 50; i++)
		health_log_failure(&r, "readyz", "http", t + (uint64_t)i);
	/* another reason: logged at once */
	health_set_store_open(true);
	health_report(&r, clock_mono_ms());
	health_log_failure(&r, "readyz", "http", t + 60);
	health_log_failure(&r, "readyz", "http", t + 70);
	/* a period later: logged, with the count left out */
	health_log_failure(&r, "readyz", "http", t + 60 + HEALTH_LOG_EVERY_MS);

	dup2(saved, STDERR_FILENO);
	close(saved);
	char buf[8192];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	close(fd);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_int_equal(count(buf, "event=not_ready"), 3);
	assert_non_null(strstr(buf, "reason=\"store not open\""));
	assert_non_null(strstr(buf, "reason=\"recovering leases"));
	assert_non_null(strstr(buf, "failures_unlogged=1\n"));
	assert_non_null(strstr(buf, "probe=readyz via=http"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_states),
		cmocka_unit_test(test_liveness_timeout),
		cmocka_unit_test(test_log_rate_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
