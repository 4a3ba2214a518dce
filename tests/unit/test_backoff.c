/*
 * test_backoff.c — backoff_delay_ms(): the base delay doubles per attempt,
 * the jitter spans exactly [base, 1.5 * base], the cap at max, the floor at
 * min, min > max, and no overflow at the extremes of uint32_t.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backoff.h"

/* A few rnd values spread over the whole uint32_t range. */
static const uint32_t rnds[] = {
	0,	     1,		  2,	       7,	    50,
	51,	     100,	  12345,       65535,	    1u << 20,
	0x7fffffffu, 0x80000000u, 0xdeadbeefu, 0xfffffffeu, 0xffffffffu,
};
#define N_RNDS (sizeof rnds / sizeof rnds[0])

/* rnd = 0 gives the base itself: min * 2^(attempt-1). */
static void test_base_doubles_per_attempt(void **state)
{
	(void)state;
	assert_int_equal(backoff_delay_ms(100, 1000000, 1, 0), 100);
	assert_int_equal(backoff_delay_ms(100, 1000000, 2, 0), 200);
	assert_int_equal(backoff_delay_ms(100, 1000000, 3, 0), 400);
	assert_int_equal(backoff_delay_ms(100, 1000000, 4, 0), 800);
	assert_int_equal(backoff_delay_ms(100, 1000000, 11, 0), 102400);
}

/* The jitter is rnd mod (base/2 + 1): every value of [base, 1.5 base] is
 * reachable, and nothing outside it. */
static void test_jitter_spans_base_to_one_and_a_half_base(void **state)
{
	(void)state;
	/* attempt 3 of min 100: base 400, spread 200 */
	for (uint32_t r = 0; r <= 200; r++)
		assert_int_equal(backoff_delay_ms(100, 1000000, 3, r), 400 + r);
	assert_int_equal(backoff_delay_ms(100, 1000000, 3, 201), 400);
	assert_int_equal(backoff_delay_ms(100, 1000000, 3, 202), 401);
	for (size_t i = 0; i < N_RNDS; i++) {
		for (uint32_t att = 1; att <= 12; att++) {
			uint64_t base = 100ull << (att - 1);
			uint32_t d =
				backoff_delay_ms(100, 1000000, att, rnds[i]);
			if (base >= 1000000) {
				assert_int_equal(d, 1000000);
				continue;
			}
			assert_true(d >= base);
			assert_true(d <= base + base / 2 || d == 1000000);
			assert_true(d <= 1000000);
		}
	}
}

/* Odd bases: 1.5 * base rounds down (spread = base / 2). */
static void test_odd_base_spread(void **state)
{
	(void)state;
	assert_int_equal(backoff_delay_ms(3, 1000, 1, 0), 3);
	assert_int_equal(backoff_delay_ms(3, 1000, 1, 1), 4);
	assert_int_equal(backoff_delay_ms(3, 1000, 1, 2), 3); /* 2 % 2 */
	/* min 1: spread 0, always exactly 1 */
	for (size_t i = 0; i < N_RNDS; i++)
		assert_int_equal(backoff_delay_ms(1, 1000, 1, rnds[i]), 1);
}

static void test_capped_at_max(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_RNDS; i++) {
		/* base 1600 > max */
		assert_int_equal(backoff_delay_ms(100, 1000, 5, rnds[i]), 1000);
		/* many attempts: still the cap */
		assert_int_equal(backoff_delay_ms(100, 1000, 1000, rnds[i]),
				 1000);
		assert_int_equal(
			backoff_delay_ms(100, 1000, UINT32_MAX, rnds[i]), 1000);
	}
	/* base 800 below the cap, jitter up to 1200 capped at 1000 */
	assert_int_equal(backoff_delay_ms(100, 1000, 4, 0), 800);
	assert_int_equal(backoff_delay_ms(100, 1000, 4, 150), 950);
	assert_int_equal(backoff_delay_ms(100, 1000, 4, 200), 1000);
	assert_int_equal(backoff_delay_ms(100, 1000, 4, 400), 1000);
}

/* Never below min, never above max, for any attempt (0 included). */
static void test_bounds_hold_everywhere(void **state)
{
	(void)state;
	static const uint32_t mins[] = { 1, 10, 250, 1000, 30000 };
	static const uint32_t maxs[] = { 1, 10, 999, 1000, 60000, 3600000 };
	static const uint32_t atts[] = { 0,  1,	 2,  3,	 7,    20,
					 31, 32, 33, 64, 1000, UINT32_MAX };
	for (size_t a = 0; a < sizeof mins / sizeof mins[0]; a++)
		for (size_t b = 0; b < sizeof maxs / sizeof maxs[0]; b++)
			for (size_t c = 0; c < sizeof atts / sizeof atts[0];
			     c++)
				for (size_t r = 0; r < N_RNDS; r++) {
					uint32_t mn = mins[a], mx = maxs[b];
					uint32_t hi = mx < mn ? mn : mx;
					uint32_t d = backoff_delay_ms(
						mn, mx, atts[c], rnds[r]);
					assert_true(d >= mn);
					assert_true(d <= hi);
				}
}

/* min > max: max is raised to min, so the delay is exactly min. */
static void test_min_above_max(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_RNDS; i++) {
		assert_int_equal(backoff_delay_ms(500, 100, 1, rnds[i]), 500);
		assert_int_equal(backoff_delay_ms(500, 100, 5, rnds[i]), 500);
		assert_int_equal(backoff_delay_ms(500, 0, 1, rnds[i]), 500);
	}
}

/* Values near UINT32_MAX neither wrap nor exceed max. */
static void test_no_overflow_at_extremes(void **state)
{
	(void)state;
	const uint32_t big = 0x80000000u;
	for (size_t i = 0; i < N_RNDS; i++) {
		uint32_t d = backoff_delay_ms(big, UINT32_MAX, 1, rnds[i]);
		assert_true(d >= big);
		d = backoff_delay_ms(big, UINT32_MAX, 2, rnds[i]);
		assert_int_equal(d, UINT32_MAX);
		d = backoff_delay_ms(UINT32_MAX, UINT32_MAX, UINT32_MAX,
				     rnds[i]);
		assert_int_equal(d, UINT32_MAX);
		d = backoff_delay_ms(1, UINT32_MAX, UINT32_MAX, rnds[i]);
		assert_true(d >= 1);
		/* base reaches 2^32 >= max: capped */
		assert_int_equal(d, UINT32_MAX);
	}
	/* 3e9 + jitter would wrap a 32-bit sum */
	assert_int_equal(backoff_delay_ms(3000000000u, UINT32_MAX, 1, 0),
			 3000000000u);
	assert_int_equal(
		backoff_delay_ms(3000000000u, UINT32_MAX, 1, 1294967295u),
		UINT32_MAX);
	assert_int_equal(
		backoff_delay_ms(3000000000u, UINT32_MAX, 1, 2000000000u),
		3499999999u);
	assert_int_equal(
		backoff_delay_ms(3000000000u, UINT32_MAX, 1, 1500000000u),
		UINT32_MAX); /* 4.5e9, capped */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base_doubles_per_attempt),
		cmocka_unit_test(test_jitter_spans_base_to_one_and_a_half_base),
		cmocka_unit_test(test_odd_base_spread),
		cmocka_unit_test(test_capped_at_max),
		cmocka_unit_test(test_bounds_hold_everywhere),
		cmocka_unit_test(test_min_above_max),
		cmocka_unit_test(test_no_overflow_at_extremes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
