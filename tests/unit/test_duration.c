/*
 * test_duration.c — parse_duration_ms() and parse_size_bytes(): every
 * unit, the edges of uint64_t, and the garbage that must be refused
 * without touching the output.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "duration.h"

#define SENTINEL 0x5a5a5a5a5a5a5a5aULL

typedef int (*parse_fn)(const char *, uint64_t *);

static void expect_ok(parse_fn fn, const char *s, uint64_t want)
{
	uint64_t got = SENTINEL;
	int rc = fn(s, &got);

	if (rc != 0 || got != want)
		fail_msg("'%s': returned %d, value %llu, want 0 and %llu", s,
			 rc, (unsigned long long)got, (unsigned long long)want);
}

/* An error must leave the output as it was. */
static void expect_err(parse_fn fn, const char *s, int want)
{
	uint64_t got = SENTINEL;
	int rc = fn(s, &got);

	if (rc != want || got != SENTINEL)
		fail_msg("'%s': returned %d, want %d (output %s)",
			 s ? s : "(null)", rc, want,
			 got == SENTINEL ? "untouched" : "changed");
}

static void duration_units(void **state)
{
	(void)state;
	expect_ok(parse_duration_ms, "0", 0);
	expect_ok(parse_duration_ms, "1", 1);
	expect_ok(parse_duration_ms, "250", 250);
	expect_ok(parse_duration_ms, "250ms", 250);
	expect_ok(parse_duration_ms, "0ms", 0);
	expect_ok(parse_duration_ms, "30s", 30000);
	expect_ok(parse_duration_ms, "5m", 300000);
	expect_ok(parse_duration_ms, "1m", 60000);
	expect_ok(parse_duration_ms, "2h", 7200000);
	expect_ok(parse_duration_ms, "24h", 86400000);
	expect_ok(parse_duration_ms, "7d", 604800000);
	expect_ok(parse_duration_ms, "007s", 7000);
}

static void duration_edges(void **state)
{
	(void)state;
	expect_ok(parse_duration_ms, "18446744073709551615", UINT64_MAX);
	expect_ok(parse_duration_ms, "18446744073709551615ms", UINT64_MAX);
	expect_ok(parse_duration_ms, "18446744073709551s",
		  18446744073709551000ULL);
	/* floor(2^64 / 86400000) days fit, one more does not */
	expect_ok(parse_duration_ms, "213503982334d",
		  213503982334ULL * 86400000ULL);
	expect_err(parse_duration_ms, "213503982335d", ERANGE);
	expect_err(parse_duration_ms, "18446744073709551616", ERANGE);
	expect_err(parse_duration_ms, "18446744073709551616ms", ERANGE);
	expect_err(parse_duration_ms, "18446744073709552s", ERANGE);
	expect_err(parse_duration_ms, "99999999999999999999999999999h", ERANGE);
}

static void duration_garbage(void **state)
{
	static const char *const bad[] = {
		"",
		"s",
		"ms",
		"abc",
		"10x",
		"10 s",
		" 10s",
		"10s ",
		"1.5s",
		"-1",
		"+1",
		"-1s",
		"0x10",
		"1e3",
		"10S",
		"10MS",
		"10sec",
		"10msx",
		"1s1",
		"10mss",
		"5min",
		"7D",
		"\t1",
		"1\n",
		/* syntax is checked before range */
		"99999999999999999999999x",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_err(parse_duration_ms, bad[i], EINVAL);
	expect_err(parse_duration_ms, NULL, EINVAL);
	assert_int_equal(parse_duration_ms("1s", NULL), EINVAL);
}

static void size_units(void **state)
{
	(void)state;
	expect_ok(parse_size_bytes, "0", 0);
	expect_ok(parse_size_bytes, "4096", 4096);
	expect_ok(parse_size_bytes, "10B", 10);
	expect_ok(parse_size_bytes, "64K", 65536);
	expect_ok(parse_size_bytes, "64k", 65536);
	expect_ok(parse_size_bytes, "64KB", 65536);
	expect_ok(parse_size_bytes, "64KiB", 65536);
	expect_ok(parse_size_bytes, "1M", 1048576);
	expect_ok(parse_size_bytes, "16M", 16777216);
	expect_ok(parse_size_bytes, "16m", 16777216);
	expect_ok(parse_size_bytes, "1MiB", 1048576);
	expect_ok(parse_size_bytes, "1G", 1073741824);
	expect_ok(parse_size_bytes, "1g", 1073741824);
	expect_ok(parse_size_bytes, "1GB", 1073741824);
	expect_ok(parse_size_bytes, "4G", 4294967296ULL);
	expect_ok(parse_size_bytes, "1T", 1099511627776ULL);
}

static void size_edges(void **state)
{
	(void)state;
	expect_ok(parse_size_bytes, "18446744073709551615", UINT64_MAX);
	/* 2^64 / 2^40 = 2^24 */
	expect_ok(parse_size_bytes, "16777215T", 16777215ULL << 40);
	expect_err(parse_size_bytes, "16777216T", ERANGE);
	expect_ok(parse_size_bytes, "17179869183G", 17179869183ULL << 30);
	expect_err(parse_size_bytes, "17179869184G", ERANGE);
	expect_err(parse_size_bytes, "18014398509481984K", ERANGE);
	expect_err(parse_size_bytes, "18446744073709551616", ERANGE);
	expect_err(parse_size_bytes, "18446744073709551616B", ERANGE);
}

static void size_garbage(void **state)
{
	static const char *const bad[] = {
		"",
		"K",
		"B",
		"abc",
		"1X",
		"1.5G",
		"1 K",
		" 1K",
		"1K ",
		"-1",
		"+1",
		"-1K",
		"0x10",
		"1e3",
		"1KBB",
		"1Ki",
		"1KK",
		"1P",
		"1E",
		"1kbit",
		"1ms",
		"1s",
		"99999999999999999999999Q",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_err(parse_size_bytes, bad[i], EINVAL);
	expect_err(parse_size_bytes, NULL, EINVAL);
	assert_int_equal(parse_size_bytes("1K", NULL), EINVAL);
}

/* The two grammars are separate: a size unit is no duration and back. */
static void units_do_not_mix(void **state)
{
	(void)state;
	expect_err(parse_duration_ms, "1K", EINVAL);
	expect_err(parse_duration_ms, "1G", EINVAL);
	expect_err(parse_size_bytes, "1h", EINVAL);
	expect_err(parse_size_bytes, "1d", EINVAL);
	/* "m" is minutes for durations and mebibytes for sizes */
	expect_ok(parse_duration_ms, "1m", 60000);
	expect_ok(parse_size_bytes, "1m", 1048576);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(duration_units),
		cmocka_unit_test(duration_edges),
		cmocka_unit_test(duration_garbage),
		cmocka_unit_test(size_units),
		cmocka_unit_test(size_edges),
		cmocka_unit_test(size_garbage),
		cmocka_unit_test(units_do_not_mix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
