/* prom.c — see prom.h. */
#include "prom.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void prom_init(struct prom *p)
{
	memset(p, 0, sizeof *p);
}

static void put(struct prom *p, const char *s, size_t n)
{
	if (p->failed)
		return;
	if (p->len + n + 1 > p->cap) {
		size_t cap = p->cap ? p->cap : 4096;
		while (p->len + n + 1 > cap)
			cap *= 2;
		char *b = realloc(p->buf, cap);
		if (!b) {
			p->failed = true;
			return;
		}
		p->buf = b;
		p->cap = cap;
	}
	memcpy(p->buf + p->len, s, n);
	p->len += n;
	p->buf[p->len] = '\0';
}

static void puts_(struct prom *p, const char *s)
{
	put(p, s, strlen(s));
}

/* The length of the UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t min, c;
	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2, min = 0x80, c = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3, min = 0x800, c = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4, min = 0x10000, c = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return len;
}

/* s escaped: backslash and newline always, the double quote in labels. */
static void put_escaped(struct prom *p, const char *s, bool label)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s);
	for (size_t i = 0; i < n;) {
		if (u[i] == '\\') {
			puts_(p, "\\\\");
		} else if (u[i] == '\n') {
			puts_(p, "\\n");
		} else if (u[i] == '"' && label) {
			puts_(p, "\\\"");
		} else {
			size_t len = utf8_len(u + i, n - i);
			if (len == 0) {
				puts_(p, "\xef\xbf\xbd"); /* U+FFFD */
				i++;
				continue;
			}
			put(p, s + i, len);
			i += len;
			continue;
		}
		i++;
	}
}

void prom_family(struct prom *p, const char *name, enum prom_type type,
		 const char *help)
{
	static const char *const types[] = { [PROM_COUNTER] = "counter",
					     [PROM_GAUGE] = "gauge",
					     [PROM_HISTOGRAM] = "histogram" };
	puts_(p, "# HELP ");
	puts_(p, name);
	puts_(p, " ");
	put_escaped(p, help, false);
	puts_(p, "\n# TYPE ");
	puts_(p, name);
	puts_(p, " ");
	puts_(p, types[type]);
	puts_(p, "\n");
}

/* The shortest %g form that reads back as v (0.0005, not
 * 0.00050000000000000001). */
static void shortest(char *buf, size_t len, double v)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

static void put_value(struct prom *p, double v)
{
	char buf[64];
	if (isnan(v))
		snprintf(buf, sizeof buf, "NaN");
	else if (isinf(v))
		snprintf(buf, sizeof buf, v > 0 ? "+Inf" : "-Inf");
	else if (v == floor(v) && fabs(v) < 1e15)
		snprintf(buf, sizeof buf, "%.0f", v);
	else
		shortest(buf, sizeof buf, v);
	puts_(p, buf);
}

/* name{labels[,extra="extra_value"]} */
static void put_series(struct prom *p, const char *name, const char *suffix,
		       const struct prom_label *labels, size_t n_labels,
		       const char *extra, const char *extra_value)
{
	puts_(p, name);
	puts_(p, suffix);
	if (n_labels == 0 && !extra)
		return;
	puts_(p, "{");
	for (size_t i = 0; i < n_labels; i++) {
		if (i)
			puts_(p, ",");
		puts_(p, labels[i].name);
		puts_(p, "=\"");
		put_escaped(p, labels[i].value ? labels[i].value : "", true);
		puts_(p, "\"");
	}
	if (extra) {
		if (n_labels)
			puts_(p, ",");
		puts_(p, extra);
		puts_(p, "=\"");
		puts_(p, extra_value);
		puts_(p, "\"");
	}
	puts_(p, "}");
}

void prom_sample(struct prom *p, const char *name,
		 const struct prom_label *labels, size_t n_labels, double v)
{
	put_series(p, name, "", labels, n_labels, NULL, NULL);
	puts_(p, " ");
	put_value(p, v);
	puts_(p, "\n");
}

void prom_histogram(struct prom *p, const char *name,
		    const struct prom_label *labels, size_t n_labels,
		    const double *bounds, const uint64_t *counts,
		    size_t n_bounds, double sum)
{
	uint64_t total = 0;
	char le[64];
	for (size_t i = 0; i <= n_bounds; i++) {
		total += counts[i];
		if (i < n_bounds)
			shortest(le, sizeof le, bounds[i]);
		else
			snprintf(le, sizeof le, "+Inf");
		put_series(p, name, "_bucket", labels, n_labels, "le", le);
		puts_(p, " ");
		put_value(p, (double)total);
		puts_(p, "\n");
	}
	put_series(p, name, "_sum", labels, n_labels, NULL, NULL);
	puts_(p, " ");
	put_value(p, sum);
	puts_(p, "\n");
	put_series(p, name, "_count", labels, n_labels, NULL, NULL);
	puts_(p, " ");
	put_value(p, (double)total);
	puts_(p, "\n");
}

int prom_finish(struct prom *p, char **text, size_t *len)
{
	if (!p->failed && !p->buf)
		put(p, "", 0);
	if (p->failed) {
		free(p->buf);
		prom_init(p);
		return ENOMEM;
	}
	*text = p->buf;
	*len = p->len;
	prom_init(p);
	return 0;
}
