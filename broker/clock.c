/* clock.c — see clock.h. */
#include "clock.h"

#include <time.h>

static uint64_t base_ms;      /* broker time at mono_at_base */
static uint64_t mono_at_base; /* clock_mono_ms() when the base was fixed */
static volatile int based;    /* written before the threads start */

static uint64_t ms_of(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void clock_start(uint64_t base)
{
	mono_at_base = clock_mono_ms();
	base_ms = base;
	based = 1;
}

uint64_t clock_now_ms(void)
{
	if (!based)
		clock_start(clock_wall_ms());
	return base_ms + (clock_mono_ms() - mono_at_base);
}

uint64_t clock_mono_ms(void)
{
	return ms_of(CLOCK_MONOTONIC);
}

uint64_t clock_wall_ms(void)
{
	return ms_of(CLOCK_REALTIME);
}
