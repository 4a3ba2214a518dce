/*
 * test_metrics.c — per-second rates over the last minute: unknown series
 * and single samples give 0; the rate is (newest - oldest) / dt over the
 * window of METRICS_SAMPLES samples (older samples drop out); series are
 * independent; many series grow the table; a counter that went backwards
 * or no time passing gives 0; fini frees everything (LeakSanitizer).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "metrics.h"

/* cmocka's assert_float_equal works in float: compare doubles here. */
#define assert_rate(got, want)                                      \
	do {                                                        \
		double g_ = (got), w_ = (want);                     \
		if (!(g_ - w_ < 1e-9 && w_ - g_ < 1e-9))            \
			fail_msg("rate %.12f, want %.12f", g_, w_); \
	} while (0)

static int setup(void **state)
{
	struct metrics *m = malloc(sizeof *m);
	if (!m)
		return -1;
	metrics_init(m);
	*state = m;
	return 0;
}

static int teardown(void **state)
{
	struct metrics *m = *state;
	metrics_fini(m);
	assert_int_equal(m->n, 0);
	assert_null(m->series);
	free(m);
	return 0;
}

static void test_unknown_and_single_sample(void **state)
{
	struct metrics *m = *state;
	assert_true(metrics_rate(m, "nope") == 0.0);
	assert_int_equal(metrics_sample(m, "a", 100, 1000), 0);
	assert_true(metrics_rate(m, "a") == 0.0);
	assert_int_equal(m->n, 1);
}

static void test_rate_two_samples(void **state)
{
	struct metrics *m = *state;
	assert_int_equal(metrics_sample(m, "a", 100, 10000), 0);
	assert_int_equal(metrics_sample(m, "a", 150, 15000), 0);
	/* 50 events in 5 s */
	assert_rate(metrics_rate(m, "a"), 10.0);
	assert_int_equal(metrics_sample(m, "a", 250, 20000), 0);
	/* 150 events in 10 s */
	assert_rate(metrics_rate(m, "a"), 15.0);
}

/* After more than METRICS_SAMPLES samples only the last minute counts. */
static void test_window_slides(void **state)
{
	struct metrics *m = *state;
	uint64_t t = 1000000;
	/* 20 samples: +1000 per 5 s for the first 8, then +50 per 5 s */
	uint64_t v = 0;
	for (int i = 0; i < 20; i++) {
		assert_int_equal(metrics_sample(m, "s", v, t), 0);
		v += i < 8 ? 1000 : 50;
		t += METRICS_INTERVAL_MS;
	}
	/* window: the last 13 samples (i = 7..19), 12 intervals of 5 s:
	 * the step from i=7 to 8 is 1000, the 11 after it 50 each */
	double want = (1000.0 + 11 * 50.0) / 60.0;
	assert_rate(metrics_rate(m, "s"), want);

	/* 13 more samples at a steady 30 per 5 s: the old rate is gone */
	for (int i = 0; i < METRICS_SAMPLES; i++) {
		assert_int_equal(metrics_sample(m, "s", v, t), 0);
		v += 30;
		t += METRICS_INTERVAL_MS;
	}
	assert_rate(metrics_rate(m, "s"), 6.0);
}

static void test_series_independent(void **state)
{
	struct metrics *m = *state;
	assert_int_equal(metrics_sample(m, "acked/a", 0, 0), 0);
	assert_int_equal(metrics_sample(m, "acked/b", 0, 0), 0);
	assert_int_equal(metrics_sample(m, "acked/a", 20, 10000), 0);
	assert_int_equal(metrics_sample(m, "acked/b", 400, 10000), 0);
	assert_rate(metrics_rate(m, "acked/a"), 2.0);
	assert_rate(metrics_rate(m, "acked/b"), 40.0);
	assert_true(metrics_rate(m, "acked/") == 0.0);
	assert_int_equal(m->n, 2);
}

/* No time passed, or the counter went down: 0, never a negative or
 * infinite rate. */
static void test_degenerate(void **state)
{
	struct metrics *m = *state;
	assert_int_equal(metrics_sample(m, "z", 10, 5000), 0);
	assert_int_equal(metrics_sample(m, "z", 20, 5000), 0);
	assert_true(metrics_rate(m, "z") == 0.0);
	assert_int_equal(metrics_sample(m, "d", 100, 0), 0);
	assert_int_equal(metrics_sample(m, "d", 40, 5000), 0);
	assert_true(metrics_rate(m, "d") == 0.0);
	/* a flat counter: rate 0 */
	assert_int_equal(metrics_sample(m, "f", 7, 0), 0);
	assert_int_equal(metrics_sample(m, "f", 7, 5000), 0);
	assert_true(metrics_rate(m, "f") == 0.0);
}

/* More series than the initial table: all kept, all found, all freed. */
static void test_many_series(void **state)
{
	struct metrics *m = *state;
	char name[32];
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof name, "series-%d", i);
		assert_int_equal(metrics_sample(m, name, 0, 0), 0);
		assert_int_equal(metrics_sample(m, name, (uint64_t)i * 5, 5000),
				 0);
	}
	assert_int_equal(m->n, 100);
	assert_true(m->cap >= 100);
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof name, "series-%d", i);
		assert_rate(metrics_rate(m, name), (double)i);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_unknown_and_single_sample,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_rate_two_samples, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_window_slides, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_series_independent, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_degenerate, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_many_series, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
