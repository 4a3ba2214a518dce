/* metrics.c — see metrics.h. */
#include "metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metric_series {
	char *name;
	uint64_t at[METRICS_SAMPLES];
	uint64_t v[METRICS_SAMPLES];
	size_t head, count;
};

void metrics_init(struct metrics *m)
{
	memset(m, 0, sizeof *m);
}

void metrics_fini(struct metrics *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->series[i].name);
	free(m->series);
	memset(m, 0, sizeof *m);
}

static struct metric_series *find(const struct metrics *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->series[i].name, name) == 0)
			return &m->series[i];
	return NULL;
}

int metrics_sample(struct metrics *m, const char *name, uint64_t v,
		   uint64_t now)
{
	struct metric_series *s = find(m, name);
	if (!s) {
		if (m->n == m->cap) {
			size_t cap = m->cap ? m->cap * 2 : 16;
			void *p = realloc(m->series, cap * sizeof *m->series);
			if (!p)
				return ENOMEM;
			m->series = p;
			m->cap = cap;
		}
		s = &m->series[m->n];
		memset(s, 0, sizeof *s);
		s->name = strdup(name);
		if (!s->name)
			return ENOMEM;
		m->n++;
	}
	s->head = (s->head + 1) % METRICS_SAMPLES;
	s->at[s->head] = now;
	s->v[s->head] = v;
	if (s->count < METRICS_SAMPLES)
		s->count++;
	return 0;
}

double metrics_rate(const struct metrics *m, const char *name)
{
	const struct metric_series *s = find(m, name);
	if (!s || s->count < 2)
		return 0;
	size_t oldest =
		(s->head + METRICS_SAMPLES - (s->count - 1)) % METRICS_SAMPLES;
	uint64_t dt = s->at[s->head] - s->at[oldest];
	if (dt == 0 || s->v[s->head] < s->v[oldest])
		return 0;
	return (double)(s->v[s->head] - s->v[oldest]) * 1000.0 / (double)dt;
}

/* The series name of kind and name; names longer than the buffer share a
 * series with their prefix (names are bounded far below it). */
static void series_name(char *buf, size_t len, enum metric_kind kind,
			const char *name)
{
	static const char prefix[] = { [METRIC_PUBLISHED] = 't',
				       [METRIC_DELIVERED] = 'd',
				       [METRIC_ACKED] = 'a' };
	snprintf(buf, len, "%c:%s", prefix[kind], name);
}

int metrics_sample_of(struct metrics *m, enum metric_kind kind,
		      const char *name, uint64_t v, uint64_t now)
{
	char series[600];
	series_name(series, sizeof series, kind, name);
	return metrics_sample(m, series, v, now);
}

double metrics_rate_of(const struct metrics *m, enum metric_kind kind,
		       const char *name)
{
	char series[600];
	series_name(series, sizeof series, kind, name);
	return metrics_rate(m, series);
}
