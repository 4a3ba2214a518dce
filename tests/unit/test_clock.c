/*
 * test_clock.c — broker time (broker/clock.h): the base of a run, when the
 * store's clock mark is rewritten, the dedup window across restarts, the
 * running clock itself, and the mark's round trip through a real store.
 */
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "arena.h"
#include "clock.h"
#include "store.h"

#define NOW	 1700000000000ull
#define MAP_SIZE (64ull << 20)

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* The wall clock, unless the last run's mark is at or past it: then just
 * past the mark, so every time the last run stored is before the start. */
static void test_base(void **state)
{
	(void)state;
	assert_int_equal(clock_base_ms(NOW, 0), NOW);
	assert_int_equal(clock_base_ms(NOW, NOW - 1), NOW);
	assert_int_equal(clock_base_ms(NOW, NOW), NOW + 1);
	/* the wall clock went back an hour while the broker was down */
	assert_int_equal(clock_base_ms(NOW - 3600000, NOW), NOW + 1);
	/* ... or forward a day: broker time goes with it */
	assert_int_equal(clock_base_ms(NOW + 86400000, NOW), NOW + 86400000);
}

/* Every commit that wrote something moves the mark to its time; an idle
 * one only every CLOCK_MARK_IDLE_MS; the mark never goes back. */
static void test_mark_due(void **state)
{
	(void)state;
	assert_true(clock_mark_due(0, NOW, false));
	assert_true(clock_mark_due(NOW, NOW + 1, true));
	assert_false(clock_mark_due(NOW, NOW, true));
	assert_false(clock_mark_due(NOW, NOW - 5, true));
	assert_false(clock_mark_due(NOW, NOW + CLOCK_MARK_IDLE_MS - 1, false));
	assert_true(clock_mark_due(NOW, NOW + CLOCK_MARK_IDLE_MS, false));
}

/* Inside a run the window is exact; a record from before the start also
 * lives a whole window of this run, unless its window was over by the
 * broker time the earlier runs reached (the clock mark at this start). */
static void test_window(void **state)
{
	(void)state;
	const uint64_t w = 1000, start = NOW;
	/* made in this run */
	assert_false(
		clock_window_over(NOW + 10, w, start, start, NOW + 10 + w - 1));
	assert_true(clock_window_over(NOW + 10, w, start, start, NOW + 10 + w));
	/* made before this start; by the clock its window is long over (the
	 * clock jumped a day while the broker was down, which stopped 10 ms
	 * after the record was made) */
	uint64_t before = NOW - 86400000, mark = before + 10;
	assert_false(clock_window_over(before, w, start, mark, start));
	assert_false(clock_window_over(before, w, start, mark, start + w - 1));
	assert_true(clock_window_over(before, w, start, mark, start + w));
	/* made before the start and still inside its own window */
	assert_false(clock_window_over(start - 10, w, start, start - 5,
				       start + w - 11));
	assert_false(clock_window_over(start - 10, w, start, start - 5,
				       start + w - 1));
	assert_true(
		clock_window_over(start - 10, w, start, start - 5, start + w));
	/* made before the start, its window over by the time the earlier run
	 * reached: over now, whether retention had got to it or not */
	assert_true(clock_window_over(before, w, start, before + w, start));
	assert_true(clock_window_over(before, w, start, before + w + 1, start));
	assert_false(
		clock_window_over(before, w, start, before + w - 1, start));
}

/* Broker time starts at the base and runs with the monotonic clock. */
static void test_running_clock(void **state)
{
	(void)state;
	clock_start(NOW);
	uint64_t t0 = clock_now_ms();
	assert_true(t0 >= NOW && t0 < NOW + 100);
	uint64_t last = t0;
	for (int i = 0; i < 100000; i++) {
		uint64_t t = clock_now_ms();
		assert_true(t >= last);
		last = t;
	}
	sleep_ms(200);
	uint64_t t1 = clock_now_ms();
	assert_true(t1 - t0 >= 195);
	assert_true(t1 - t0 < 2000);
	/* the base moves broker time, not the monotonic clock */
	clock_start(NOW - 3600000);
	assert_true(clock_now_ms() < NOW - 3600000 + 100);
}

/* ---- the mark in a store -------------------------------------------------- */

struct fx {
	char base[PATH_MAX];
	char dir[PATH_MAX + 16];
	char err[512];
	struct store st;
	struct arena a;
};

static int rm_one(const char *p, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void reopen(struct fx *f)
{
	store_close(&f->st);
	assert_int_equal(
		store_open(&f->st, f->dir, MAP_SIZE, f->err, sizeof f->err), 0);
	assert_int_equal(store_read_clock_mark(&f->st), 0);
}

/* One write transaction at now; writes an expiry entry when write. */
static void commit_at(struct fx *f, uint64_t now, bool write)
{
	struct txn t;
	uint8_t id[8] = { 0 };
	assert_int_equal(store_txn_begin(&f->st, &f->a, true, now, &t), 0);
	if (write)
		assert_int_equal(store_expiry_put(&t, now + 1000,
						  EXPIRY_HISTORY, id,
						  sizeof id),
				 0);
	assert_int_equal(store_txn_commit(&t), 0);
	arena_reset(&f->a);
}

static void test_store_mark(void **state)
{
	(void)state;
	struct fx *f = calloc(1, sizeof *f);
	assert_non_null(f);
	const char *tmp = getenv("TMPDIR");
	snprintf(f->base, sizeof f->base, "%s/handoff-test-clock-XXXXXX",
		 tmp && *tmp && strlen(tmp) < PATH_MAX / 2 ? tmp : "/tmp");
	assert_non_null(mkdtemp(f->base));
	snprintf(f->dir, sizeof f->dir, "%s/data", f->base);
	arena_init(&f->a);
	assert_int_equal(
		store_open(&f->st, f->dir, MAP_SIZE, f->err, sizeof f->err), 0);
	assert_int_equal(store_read_clock_mark(&f->st), 0);
	assert_int_equal(f->st.clock_mark_ms, 0); /* a new store has none */

	commit_at(f, NOW, true);
	reopen(f);
	assert_int_equal(f->st.clock_mark_ms, NOW);
	/* a commit that wrote: the mark is its time, to the ms */
	commit_at(f, NOW + 7, true);
	reopen(f);
	assert_int_equal(f->st.clock_mark_ms, NOW + 7);
	/* idle commits: only every CLOCK_MARK_IDLE_MS */
	commit_at(f, NOW + 7 + CLOCK_MARK_IDLE_MS - 1, false);
	reopen(f);
	assert_int_equal(f->st.clock_mark_ms, NOW + 7);
	commit_at(f, NOW + 7 + CLOCK_MARK_IDLE_MS, false);
	reopen(f);
	assert_int_equal(f->st.clock_mark_ms, NOW + 7 + CLOCK_MARK_IDLE_MS);
	/* never back */
	commit_at(f, NOW, true);
	reopen(f);
	assert_int_equal(f->st.clock_mark_ms, NOW + 7 + CLOCK_MARK_IDLE_MS);
	/* the next run starts past it even with the wall clock an hour back */
	assert_true(clock_base_ms(NOW - 3600000, f->st.clock_mark_ms) >
		    NOW + 7 + CLOCK_MARK_IDLE_MS);

	store_close(&f->st);
	arena_fini(&f->a);
	nftw(f->base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base),
		cmocka_unit_test(test_mark_due),
		cmocka_unit_test(test_window),
		cmocka_unit_test(test_running_clock),
		cmocka_unit_test(test_store_mark),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
