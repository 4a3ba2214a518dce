/*
 * log.h — structured logging: one line per event on stderr,
 *   ts=2026-11-23T16:40:00.123Z level=info event=publish_refused topic=a ...
 * Values with spaces, quotes or '=' are quoted; control bytes escaped.
 * With log_set_json(1) the same fields make one JSON object per line,
 *   {"ts":"2026-11-23T16:40:00.123Z","level":"info","event":"...","topic":"a"}
 * 's' and 'b' values are strings (bytes that are not UTF-8 appear as the
 * text \xNN), 'u' and 'i' numbers; a line too long for the buffer drops
 * its last fields and ends with "truncated":true, so every line parses.
 * Never silenced: info, warn and error always print; debug only when
 * enabled.
 *
 * Threads: any thread may log (the store thread and the network thread
 * do). Each line is formatted in the caller's own buffer and written with
 * one write(2), so lines of two threads never mix (a pipe writes lines up
 * to PIPE_BUF whole). Deferral (log_defer_*) is per thread: it holds only
 * the calling thread's lines. log_set_debug() and log_set_json() are
 * called once at start, before any other thread runs.
 */
#ifndef HANDOFF_BROKER_LOG_H
#define HANDOFF_BROKER_LOG_H

#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_debug(int on);
/* 1: JSON lines; 0: key=value lines (the default). */
void log_set_json(int on);
/* Ends a log_event field list: a typed null, as variadic calls need. */
#define LOG_END ((const char *)0)

/*
 * Log one event. fields is a sequence of (key, type, value) triples ending
 * with LOG_END, where type is 's' (const char *), 'u' (uint64_t), 'i'
 * (int64_t) or 'b' (const void *, size_t: bytes shown escaped).
 */
void log_event(enum log_level level, const char *event, ...);

/* Between begin and end, info/warn/debug lines are held; end(1) writes
 * them (the transaction committed), end(0) drops them (it rolled back).
 * Error lines are always written at once. */
void log_defer_begin(void);
void log_defer_end(int keep);
/* Free the calling thread's held-lines buffer (call as a thread ends). */
void log_thread_done(void);

#define LS(k, v)    (k), 's', (const char *)(v)
#define LU(k, v)    (k), 'u', (uint64_t)(v)
#define LI(k, v)    (k), 'i', (int64_t)(v)
#define LB(k, p, n) (k), 'b', (const void *)(p), (size_t)(n)

#endif
