/*
 * notify.h — telling systemd (Type=notify) how the broker is doing, through
 * libsystemd's sd_notify: READY=1 once lease recovery is done and requests
 * are served, STATUS= lines, STOPPING=1 when a stop signal came, and
 * WATCHDOG=1 from the store loop every half watchdog interval
 * (WatchdogSec=; systemd passes WATCHDOG_USEC), sent only by a turning
 * loop, so a hung loop stops petting and systemd kills and restarts it.
 *
 * Without $NOTIFY_SOCKET every call is a no-op. Sending fails silently
 * except for one logged warning (a manager that stopped listening must not
 * stop the broker). Threads: the store thread only, after notify_init()
 * (main thread, before the threads start).
 */
#ifndef HANDOFF_BROKER_NOTIFY_H
#define HANDOFF_BROKER_NOTIFY_H

#include <stdint.h>

/* Read WATCHDOG_USEC (and WATCHDOG_PID). */
void notify_init(void);
void notify_ready(uint64_t recovered_leases);
/* STATUS=text (printf-style). */
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notify_stopping(void);
/* Each turn: WATCHDOG=1 when half the interval has passed since the last. */
void notify_watchdog(uint64_t now_ms);
/* When the loop must wake next to pet the watchdog in time (monotonic ms;
 * UINT64_MAX: no watchdog). */
uint64_t notify_next_wake(void);

#endif
