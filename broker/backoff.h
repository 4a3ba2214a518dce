/*
 * backoff.h — the retry delay after a failed attempt. Pure; thread-safe.
 *
 * After attempt k (k >= 1) the base delay is min * 2^(k-1); the delay is
 * drawn uniformly from [base, 1.5 * base] so that consumers failing together
 * do not retry together, then capped at max. It is never below min nor
 * above max.
 */
#ifndef HANDOFF_BROKER_BACKOFF_H
#define HANDOFF_BROKER_BACKOFF_H

#include <stdint.h>

/* rnd is a uniform random 32-bit value. */
uint32_t backoff_delay_ms(uint32_t min_ms, uint32_t max_ms, uint32_t attempt,
			  uint32_t rnd);

#endif
