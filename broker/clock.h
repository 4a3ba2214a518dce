/*
 * clock.h — broker time, in milliseconds on the unix epoch's scale.
 *
 * Broker time = a base fixed at start + CLOCK_MONOTONIC elapsed since.
 * Within one run it follows the monotonic clock only, so a step of the
 * wall clock (an NTP correction, an operator's `date -s`) changes no
 * duration: lease deadlines, retry delays, long-poll holds, request
 * windows, rate windows and uptime all keep their length. Due times and
 * lease deadlines are stored in broker time, so they keep their meaning
 * across a restart too: the base is
 *
 *   max(wall clock at start, the store's clock mark + 1)
 *
 * where the clock mark (store.h, meta "clock_mark") is the broker time of
 * the last commit that wrote anything (and, while the broker is idle, of a
 * commit at least every CLOCK_MARK_IDLE_MS). Every broker time stored by
 * the last run is therefore below the next run's base: broker time never
 * goes back across restarts, things stamped before a start are told from
 * those stamped after it, and a wall clock that stepped back while the
 * broker was down postpones nothing by more than the downtime (plus at
 * most CLOCK_MARK_IDLE_MS of idleness before it went down). A wall clock
 * that stepped forward while it was down moves broker time forward with it
 * (see clock_window_over for what keeps the dedup window whole).
 *
 * Broker time equals the wall clock while the wall clock is right and
 * nothing stepped it; after a step it keeps its own course until the next
 * start (then it is the wall clock again, or the mark if that is ahead).
 *
 * Threads: clock_start() runs once, before the threads start;
 * clock_now_ms() and clock_mono_ms() may then be called from any thread.
 * The inline helpers are pure.
 */
#ifndef HANDOFF_BROKER_CLOCK_H
#define HANDOFF_BROKER_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

/* While no commit writes anything, the clock mark is still rewritten this
 * often (one small write; an idle broker writes nothing else). */
#define CLOCK_MARK_IDLE_MS 10000

/* Fix the base of broker time (see above) to base_ms, now. Before it is
 * called, the base is the wall clock at the first clock_now_ms(). */
void clock_start(uint64_t base_ms);
/* Broker time: never goes backwards, whatever the wall clock does. */
uint64_t clock_now_ms(void);
/* Monotonic ms, for measuring durations only. */
uint64_t clock_mono_ms(void);
/* The wall clock (CLOCK_REALTIME) in unix ms: for the base only. */
uint64_t clock_wall_ms(void);

/* The base of a run: the wall clock, unless the last run's mark (0: none)
 * says broker time already went past it. */
static inline uint64_t clock_base_ms(uint64_t wall_ms, uint64_t mark_ms)
{
	return wall_ms > mark_ms ? wall_ms : mark_ms + 1;
}

/* Whether a commit at broker time now_ms must rewrite the mark: always
 * when it wrote something (its times are then at most the mark), else
 * every CLOCK_MARK_IDLE_MS. */
static inline bool clock_mark_due(uint64_t mark_ms, uint64_t now_ms, bool wrote)
{
	return now_ms > mark_ms &&
	       (wrote || now_ms - mark_ms >= CLOCK_MARK_IDLE_MS);
}

/*
 * Whether a window of window_ms that opened at created_ms (an idempotency
 * record, an operator command id) is over at now_ms, for a broker that
 * started at started_ms. Inside one run broker time is monotonic, so the
 * window is exact. For a record made before this start, the time between
 * the runs comes from the wall clock, which may have jumped forward while
 * the broker was down: such a record also lives out a whole window of
 * this run's own time, so a client retrying across a restart is never
 * told its first try was forgotten because a clock moved. Unless its
 * window was over already by start_mark_ms, the store's clock mark at this
 * start (the broker time the earlier runs reached, which every commit that
 * wrote advanced): then it ended in broker time, no clock between the runs
 * is involved, and it is over whether or not retention had removed the
 * record yet, so the answer never depends on when retention ran.
 */
static inline bool clock_window_over(uint64_t created_ms, uint64_t window_ms,
				     uint64_t started_ms,
				     uint64_t start_mark_ms, uint64_t now_ms)
{
	if (created_ms + window_ms > now_ms)
		return false;
	return created_ms >= started_ms || started_ms + window_ms <= now_ms ||
	       created_ms + window_ms <= start_mark_ms;
}

#endif
