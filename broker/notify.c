/*
 * notify.c — sd_notify for Type=notify and the watchdog; see notify.h.
 */
#include "notify.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "log.h"

static uint64_t watchdog_half_ms; /* 0: no watchdog */
static uint64_t last_pet_ms;
static bool warned;

static void notify_send(const char *state)
{
	int rc = sd_notify(0, state);
	if (rc < 0 && !warned) {
		warned = true;
		log_event(LOG_WARN, "sd_notify_failed", LS("state", state),
			  LS("error", strerror(-rc)),
			  LS("note", "not reported again"), LOG_END);
	}
}

void notify_init(void)
{
	uint64_t usec = 0;
	/* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID is unset or
	 * ours */
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		watchdog_half_ms = usec / 2000;
		if (watchdog_half_ms == 0)
			watchdog_half_ms = 1;
		log_event(LOG_INFO, "watchdog_enabled",
			  LU("interval_ms", usec / 1000),
			  LU("pet_every_ms", watchdog_half_ms), LOG_END);
	}
	last_pet_ms = 0;
	warned = false;
}

void notify_ready(uint64_t recovered_leases)
{
	char msg[128];
	snprintf(msg, sizeof msg,
		 "READY=1\nSTATUS=serving (%llu leases recovered at start)",
		 (unsigned long long)recovered_leases);
	notify_send(msg);
}

void notify_status(const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	memcpy(msg, "STATUS=", 7);
	va_start(ap, fmt);
	vsnprintf(msg + 7, sizeof msg - 7, fmt, ap);
	va_end(ap);
	notify_send(msg);
}

void notify_stopping(void)
{
	notify_send("STOPPING=1\nSTATUS=stopping: answering held fetches");
}

void notify_watchdog(uint64_t now_ms)
{
	if (!watchdog_half_ms || now_ms - last_pet_ms < watchdog_half_ms)
		return;
	last_pet_ms = now_ms;
	notify_send("WATCHDOG=1");
}

uint64_t notify_next_wake(void)
{
	return watchdog_half_ms ? last_pet_ms + watchdog_half_ms : UINT64_MAX;
}
