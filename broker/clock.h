/*
 * clock.h — broker time in unix milliseconds. Due times and lease deadlines
 * are stored as wall-clock ms so they mean the same after a restart;
 * clock_now_ms() never goes backwards within one process, so a clock step
 * cannot reorder first deliveries.
 */
#ifndef HANDOFF_BROKER_CLOCK_H
#define HANDOFF_BROKER_CLOCK_H

#include <stdint.h>

uint64_t clock_now_ms(void);
/* Monotonic ms, for measuring durations only. */
uint64_t clock_mono_ms(void);

#endif
