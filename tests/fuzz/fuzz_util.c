/*
 * fuzz_util.c — what every fuzz target links: fz_fail, a seeded libsodium
 * random source (splitmix64: lease tokens, backoff jitter and client
 * idempotency keys are the same every time an input runs, so a crash
 * reproduces), and the sink for the broker's log lines.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "fuzz_util.h"

void fz_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "\nfuzz invariant violated at %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	abort();
}

/* ---- the broker's log ------------------------------------------------- */

static int log_keep = -1;

void fz_log_init(void)
{
	const char *e = getenv("FUZZ_LOG");
	log_keep = e && strcmp(e, "1") == 0;
}

/* log.c is compiled with -Dwrite=fz_log_write: every line it formats ends
 * here, and reaches stderr only with FUZZ_LOG=1 (millions of lines would
 * otherwise bury libFuzzer's own output). */
ssize_t fz_log_write(int fd, const void *buf, size_t n);
ssize_t fz_log_write(int fd, const void *buf, size_t n)
{
	if (log_keep < 0)
		fz_log_init();
	if (!log_keep)
		return (ssize_t)n;
	return write(fd, buf, n);
}

/* ---- randomness ------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t next64(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static const char *rng_name(void)
{
	return "handoff-fuzz-splitmix64";
}

static uint32_t rng_random(void)
{
	return (uint32_t)(next64() >> 32);
}

static void rng_buf(void *const buf, const size_t size)
{
	uint8_t *p = buf;
	size_t i = 0;
	while (i < size) {
		uint64_t v = next64();
		size_t n = size - i < 8 ? size - i : 8;
		memcpy(p + i, &v, n);
		i += n;
	}
}

static randombytes_implementation fuzz_impl = {
	.implementation_name = rng_name,
	.random = rng_random,
	.stir = NULL,
	.uniform = NULL,
	.buf = rng_buf,
	.close = NULL,
};

void fz_rng_install(void)
{
	static int done;
	if (done)
		return;
	done = 1;
	if (randombytes_set_implementation(&fuzz_impl) != 0 ||
	    sodium_init() < 0) {
		fz_fail(__FILE__, __LINE__,
			"cannot install the fuzz random source");
	}
}

void fz_rng_seed(uint64_t seed)
{
	rng_state = seed ^ 0x9e3779b97f4a7c15ull;
}
