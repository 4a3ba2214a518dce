/*
 * log.c — key=value log lines, built in one buffer and written with a single
 * write(2) so that lines from a crashing process are whole.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int debug_on;

/* Lines logged inside a transaction wait for its outcome: a log never says
 * "dead-lettered" for a change that was rolled back. */
static _Thread_local char *deferred;
static _Thread_local size_t deferred_len, deferred_cap;
static _Thread_local int deferring;

void log_set_debug(int on)
{
	debug_on = on;
}

static void write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);
		if (w <= 0)
			return; /* nowhere to report a failed log write */
		p += w;
		n -= (size_t)w;
	}
}

struct line {
	char buf[4096];
	size_t len;
};

static void put_raw(struct line *l, const char *s, size_t n)
{
	size_t cap = sizeof l->buf - 2;
	size_t room = l->len < cap ? cap - l->len : 0;
	if (n > room)
		n = room;
	if (n)
		memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void put_fmt(struct line *l, const char *fmt, ...)
{
	va_list ap;
	size_t room = sizeof l->buf - 2 - l->len;
	va_start(ap, fmt);
	int n = vsnprintf(l->buf + l->len, room + 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	l->len += (size_t)n < room ? (size_t)n : room;
}

static int needs_quotes(const unsigned char *p, size_t n)
{
	if (n == 0)
		return 1;
	for (size_t i = 0; i < n; i++)
		if (p[i] <= ' ' || p[i] == '"' || p[i] == '=' || p[i] == '\\' ||
		    p[i] >= 0x7f)
			return 1;
	return 0;
}

static void put_value(struct line *l, const void *v, size_t n)
{
	const unsigned char *p = v;
	/* Long values (payloads, errors) are cut: a log line stays a line. */
	size_t shown = n > 512 ? 512 : n;
	if (!needs_quotes(p, shown) && shown == n) {
		put_raw(l, v, n);
		return;
	}
	put_raw(l, "\"", 1);
	for (size_t i = 0; i < shown; i++) {
		if (p[i] == '"' || p[i] == '\\') {
			char esc[2] = { '\\', (char)p[i] };
			put_raw(l, esc, 2);
		} else if (p[i] < ' ' || p[i] >= 0x7f) {
			put_fmt(l, "\\x%02x", p[i]);
		} else {
			put_raw(l, (const char *)p + i, 1);
		}
	}
	if (shown < n)
		put_fmt(l, "...(%zu bytes)", n);
	put_raw(l, "\"", 1);
}

void log_event(enum log_level level, const char *event, ...)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	if (level == LOG_DEBUG && !debug_on)
		return;
	struct line l = { .len = 0 };
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	put_fmt(&l, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level]);
	put_value(&l, event, strlen(event));

	va_list ap;
	va_start(ap, event);
	for (;;) {
		const char *key = va_arg(ap, const char *);
		if (!key)
			break;
		int type = va_arg(ap, int);
		put_fmt(&l, " %s=", key);
		if (type == 's') {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "";
			put_value(&l, s, strlen(s));
		} else if (type == 'u') {
			put_fmt(&l, "%llu",
				(unsigned long long)va_arg(ap, uint64_t));
		} else if (type == 'i') {
			put_fmt(&l, "%lld", (long long)va_arg(ap, int64_t));
		} else {
			const void *p = va_arg(ap, const void *);
			size_t n = va_arg(ap, size_t);
			put_value(&l, p, n);
		}
	}
	va_end(ap);
	l.buf[l.len++] = '\n';
	if (deferring && level != LOG_ERROR) {
		if (deferred_len + l.len > deferred_cap) {
			size_t cap = deferred_cap ? deferred_cap * 2 : 65536;
			while (cap < deferred_len + l.len)
				cap *= 2;
			char *p = realloc(deferred, cap);
			if (p) {
				deferred = p;
				deferred_cap = cap;
			}
		}
		if (deferred_len + l.len <= deferred_cap) {
			memcpy(deferred + deferred_len, l.buf, l.len);
			deferred_len += l.len;
			return;
		}
	}
	write_all(l.buf, l.len);
}

void log_defer_begin(void)
{
	deferring = 1;
	deferred_len = 0;
}

void log_thread_done(void)
{
	free(deferred);
	deferred = NULL;
	deferred_len = deferred_cap = 0;
	deferring = 0;
}

void log_defer_end(int keep)
{
	if (keep && deferred_len)
		write_all(deferred, deferred_len);
	deferred_len = 0;
	deferring = 0;
}
