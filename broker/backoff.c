/* backoff.c — see backoff.h. */
#include "backoff.h"

uint32_t backoff_delay_ms(uint32_t min_ms, uint32_t max_ms, uint32_t attempt,
			  uint32_t rnd)
{
	if (max_ms < min_ms)
		max_ms = min_ms;
	uint64_t base = min_ms;
	for (uint32_t i = 1; i < attempt && base < max_ms; i++)
		base *= 2;
	uint64_t spread = base / 2;
	uint64_t delay = base + (spread ? (uint64_t)rnd % (spread + 1) : 0);
	return (uint32_t)(delay > max_ms ? max_ms : delay);
}
