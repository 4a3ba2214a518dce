/*
 * duration.c — strict parsers for the durations and sizes people write in
 * handoffd's config file and on the handoff command line.
 *
 * The grammar is deliberately small: one or more ASCII digits, then an
 * optional unit, then the end of the string. No sign, no spaces, no
 * fraction, no exponent: "1.5s" or " 30s" is an error rather than a guess.
 *
 *   durations: ms, s, m, h, d (lower case; a bare number is milliseconds)
 *   sizes:     K, M, G, T (either case, powers of 1024), optionally followed
 *              by "B" or "iB" ("64K", "64KB", "64KiB"); a bare number or a
 *              lone "B" is bytes
 *
 * Overflow of the digits or of the unit multiplication is ERANGE, checked
 * before anything is written: on error *out is left untouched.
 */
#include "duration.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct unit {
	const char *suffix;
	uint64_t factor;
};

static const struct unit duration_units[] = {
	{ "", 1 },
	{ "ms", 1 },
	{ "s", 1000 },
	{ "m", 60ULL * 1000 },
	{ "h", 60ULL * 60 * 1000 },
	{ "d", 24ULL * 60 * 60 * 1000 },
};

static const struct unit size_units[] = {
	{ "", 1 },
	{ "B", 1 },
	{ "K", 1ULL << 10 },
	{ "KB", 1ULL << 10 },
	{ "KiB", 1ULL << 10 },
	{ "M", 1ULL << 20 },
	{ "MB", 1ULL << 20 },
	{ "MiB", 1ULL << 20 },
	{ "G", 1ULL << 30 },
	{ "GB", 1ULL << 30 },
	{ "GiB", 1ULL << 30 },
	{ "T", 1ULL << 40 },
	{ "TB", 1ULL << 40 },
	{ "TiB", 1ULL << 40 },
};

static int ascii_lower(int ch)
{
	return (ch >= 'A' && ch <= 'Z') ? ch - 'A' + 'a' : ch;
}

/* Case-insensitive ASCII comparison (locale-independent, unlike strcasecmp). */
static int same_ci(const char *a, const char *b)
{
	while (*a && *b) {
		if (ascii_lower((unsigned char)*a) !=
		    ascii_lower((unsigned char)*b))
			return 0;
		a++;
		b++;
	}
	return *a == *b;
}

/*
 * Parse digits + unit from s. Units are matched exactly, or ignoring ASCII
 * case when fold_case is set. Syntax is checked in full before overflow is
 * reported, so "99999999999999999999x" is EINVAL and not ERANGE.
 */
static int parse_with_units(const char *s, const struct unit *units,
			    size_t n_units, int fold_case, uint64_t *out)
{
	uint64_t value = 0;
	int overflow = 0;
	const char *p = s;
	size_t i;

	if (!s || !out)
		return EINVAL;
	if (*p < '0' || *p > '9')
		return EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		uint64_t digit = (uint64_t)(*p - '0');

		if (value > (UINT64_MAX - digit) / 10)
			overflow = 1;
		else
			value = value * 10 + digit;
	}
	for (i = 0; i < n_units; i++) {
		int match = fold_case ? same_ci(p, units[i].suffix) :
					strcmp(p, units[i].suffix) == 0;

		if (!match)
			continue;
		if (overflow)
			return ERANGE;
		if (value != 0 && units[i].factor > UINT64_MAX / value)
			return ERANGE;
		*out = value * units[i].factor;
		return 0;
	}
	return EINVAL;
}

int parse_duration_ms(const char *s, uint64_t *ms)
{
	return parse_with_units(s, duration_units, ARRAY_LEN(duration_units), 0,
				ms);
}

int parse_size_bytes(const char *s, uint64_t *bytes)
{
	return parse_with_units(s, size_units, ARRAY_LEN(size_units), 1, bytes);
}
