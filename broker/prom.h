/*
 * prom.h — a writer of the Prometheus text exposition format 0.0.4
 * (Content-Type PROM_CONTENT_TYPE): families with one HELP and one TYPE
 * line, samples with escaped label values, histograms with cumulative
 * buckets ending in le="+Inf" (equal to _count), then _sum and _count.
 * Lines end in a single '\n'. The caller writes each family's samples
 * together, right after its prom_family (the format wants a family in one
 * piece); metric and label names are the caller's and not checked.
 *
 * Escaping: HELP text gets \\ and \n; label values \\, \" and \n. Bytes
 * that are not UTF-8 are written as U+FFFD (a scraper refuses the whole
 * exposition over one bad byte).
 *
 * Errors: the writer stops at the first failed allocation and remembers
 * it; prom_finish then returns ENOMEM and frees the text. Ownership: the
 * text (prom_finish) is the caller's to free. Threads: any; no shared
 * state.
 */
#ifndef HANDOFF_BROKER_PROM_H
#define HANDOFF_BROKER_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct prom {
	char *buf;
	size_t len, cap;
	bool failed;
};

struct prom_label {
	const char *name;
	const char *value;
};

enum prom_type { PROM_COUNTER, PROM_GAUGE, PROM_HISTOGRAM };

void prom_init(struct prom *p);
/* The HELP and TYPE lines of family name. */
void prom_family(struct prom *p, const char *name, enum prom_type type,
		 const char *help);
/* One sample: name{labels} value. Integral values are written as integers,
 * others with 17 significant digits; NaN and infinities as Prometheus
 * spells them. */
void prom_sample(struct prom *p, const char *name,
		 const struct prom_label *labels, size_t n_labels, double v);
/* A histogram's samples: counts[i] observations fell in (bounds[i-1],
 * bounds[i]], counts[n_bounds] above the last bound (counts has n_bounds
 * + 1 entries; bounds increase). Labels may be none. */
void prom_histogram(struct prom *p, const char *name,
		    const struct prom_label *labels, size_t n_labels,
		    const double *bounds, const uint64_t *counts,
		    size_t n_bounds, double sum);
/* The text (NUL-terminated, *len without the NUL) and 0, or ENOMEM with
 * nothing to free. Resets p. */
int prom_finish(struct prom *p, char **text, size_t *len);

#endif
