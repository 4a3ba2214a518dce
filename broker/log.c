/*
 * log.c — key=value or JSON log lines, built in one buffer and written with
 * a single write(2) so that lines from a crashing process are whole.
 *
 * JSON is written here by hand rather than with jansson: a line is built
 * in a fixed buffer on the caller's stack with no allocation (a log line
 * must still come out when memory runs out), and jansson refuses strings
 * that are not UTF-8, which log values (names, payload bytes) may be.
 */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int debug_on;
static int json_on;

/* Lines logged inside a transaction wait for its outcome: a log never says
 * "dead-lettered" for a change that was rolled back. */
static _Thread_local char *deferred;
static _Thread_local size_t deferred_len, deferred_cap;
static _Thread_local int deferring;

void log_set_debug(int on)
{
	debug_on = on;
}

void log_set_json(int on)
{
	json_on = on;
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

/* Room kept at the end of a JSON line for ,"truncated":true}\n */
#define JSON_TAIL 24

struct line {
	char buf[4096];
	size_t len;
	bool full; /* something did not fit */
};

static size_t line_cap(const struct line *l)
{
	return sizeof l->buf - (json_on ? JSON_TAIL : 2);
}

static void put_raw(struct line *l, const char *s, size_t n)
{
	size_t cap = line_cap(l);
	size_t room = l->len < cap ? cap - l->len : 0;
	if (n > room) {
		n = room;
		l->full = true;
	}
	if (n)
		memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void put_fmt(struct line *l, const char *fmt, ...)
{
	va_list ap;
	size_t cap = line_cap(l);
	size_t room = l->len < cap ? cap - l->len : 0;
	va_start(ap, fmt);
	int n = vsnprintf(l->buf + l->len, room + 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > room)
		l->full = true;
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

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if none:
 * no overlong forms, surrogates or code points past U+10FFFF. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t w;
	uint32_t cp;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		w = 2;
		cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		w = 3;
		cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		w = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (w > n)
		return 0;
	for (size_t i = 1; i < w; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((w == 3 && cp < 0x800) || (w == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return w;
}

/*
 * A JSON string: valid UTF-8 as it is, the JSON escapes for quote,
 * backslash and control bytes, and any byte that is not part of valid
 * UTF-8 as the four characters \xNN (as in key=value lines), so every
 * line parses whatever bytes a value holds.
 */
static void put_json_string(struct line *l, const void *v, size_t n)
{
	const unsigned char *p = v;
	size_t shown = n > 512 ? 512 : n;
	put_raw(l, "\"", 1);
	for (size_t i = 0; i < shown;) {
		unsigned char c = p[i];
		size_t w;
		if (c == '"' || c == '\\') {
			char esc[2] = { '\\', (char)c };
			put_raw(l, esc, 2);
		} else if (c == '\n') {
			put_raw(l, "\\n", 2);
		} else if (c == '\t') {
			put_raw(l, "\\t", 2);
		} else if (c == '\r') {
			put_raw(l, "\\r", 2);
		} else if (c < ' ' || c == 0x7f) {
			put_fmt(l, "\\u%04x", c);
		} else if (c < 0x80) {
			put_raw(l, (const char *)p + i, 1);
		} else if ((w = utf8_len(p + i, shown - i)) > 0) {
			put_raw(l, (const char *)p + i, w);
			i += w;
			continue;
		} else {
			put_fmt(l, "\\\\x%02x", c);
		}
		i++;
	}
	if (shown < n)
		put_fmt(l, "...(%zu bytes)", n);
	put_raw(l, "\"", 1);
}

static void put_field_value(struct line *l, const void *v, size_t n)
{
	if (json_on)
		put_json_string(l, v, n);
	else
		put_value(l, v, n);
}

static void put_head(struct line *l, enum log_level level, const char *event)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	put_fmt(l,
		json_on ? "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\","
			  "\"level\":\"%s\",\"event\":" :
			  "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s "
			  "event=",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level]);
	put_field_value(l, event, strlen(event));
}

void log_event(enum log_level level, const char *event, ...)
{
	if (level == LOG_DEBUG && !debug_on)
		return;
	struct line l = { .len = 0 };
	put_head(&l, level, event);

	va_list ap;
	va_start(ap, event);
	for (;;) {
		const char *key = va_arg(ap, const char *);
		if (!key)
			break;
		int type = va_arg(ap, int);
		size_t field_start = l.len;
		if (json_on) {
			put_raw(&l, ",", 1);
			put_json_string(&l, key, strlen(key));
			put_raw(&l, ":", 1);
		} else {
			put_fmt(&l, " %s=", key);
		}
		if (type == 's') {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "";
			put_field_value(&l, s, strlen(s));
		} else if (type == 'u') {
			put_fmt(&l, "%llu",
				(unsigned long long)va_arg(ap, uint64_t));
		} else if (type == 'i') {
			put_fmt(&l, "%lld", (long long)va_arg(ap, int64_t));
		} else {
			const void *p = va_arg(ap, const void *);
			size_t n = va_arg(ap, size_t);
			put_field_value(&l, p, n);
		}
		if (json_on && l.full) {
			/* a cut JSON value would not parse: drop the field
			 * and the rest, and say so */
			l.len = field_start;
			break;
		}
	}
	va_end(ap);
	if (json_on) {
		const char *tail = l.full ? ",\"truncated\":true}" : "}";
		memcpy(l.buf + l.len, tail, strlen(tail));
		l.len += strlen(tail);
	}
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
