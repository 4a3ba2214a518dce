/*
 * fuzz_util.h — what every fuzz target shares (fuzz_util.c): fz_fail and
 * FZ_ASSERT, the seeded random source, the sink of the broker's log lines.
 */
#ifndef HANDOFF_FUZZ_UTIL_H
#define HANDOFF_FUZZ_UTIL_H

#include <stdint.h>

/* Print "fuzz invariant violated: ..." and abort. */
void fz_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));
#define FZ_ASSERT(cond, ...)                                      \
	do {                                                      \
		if (!(cond))                                      \
			fz_fail(__FILE__, __LINE__, __VA_ARGS__); \
	} while (0)

/* ---- randomness ------------------------------------------------------- */
/* Replace libsodium's random source by a seeded one (lease tokens, backoff
 * jitter, client idempotency keys), so an input always does the same thing.
 * Call before anything uses libsodium. */
void fz_rng_install(void);
void fz_rng_seed(uint64_t seed);

/* Silence (or, with FUZZ_LOG=1 in the environment, keep) the broker's log
 * lines; log.c is compiled with write -> fz_log_write. */
void fz_log_init(void);

#endif
