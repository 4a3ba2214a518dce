/*
 * util.c — small helpers the scenarios share (scenario.c, backlog.c,
 * neighbour.c, report.c): error text, connecting, subscribing, counting
 * ack results, producers' publish batches, digit grouping, file sizes.
 * See bench.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"
#include "handoff.h"

void bench_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

const char *bench_call_text(handoff_client *c, int rc, char *buf, size_t len)
{
	const char *m = c ? handoff_last_message(c) : "";
	if (m[0])
		snprintf(buf, len, "%s (%s)", handoff_strerror(rc), m);
	else
		snprintf(buf, len, "%s", handoff_strerror(rc));
	return buf;
}

int bench_client_open(const char *url, const char *name, uint32_t deadline_ms,
		      handoff_client **c)
{
	handoff_options o = { .deadline_ms = deadline_ms,
			      .consumer_name = name };
	int rc = handoff_connect(url, &o, c);
	if (rc != HANDOFF_OK)
		*c = NULL;
	return rc;
}

int bench_subscribe(handoff_client *admin, const char *topic, const char *sub,
		    const handoff_policy *pol, char *err, size_t errlen)
{
	char msg[BENCH_ERR_LEN - 64];
	int rc = handoff_subscribe(admin, topic, sub, pol, NULL, NULL);
	if (rc != HANDOFF_OK) {
		bench_errf(err, errlen, "subscribe %s: %s", sub,
			   bench_call_text(admin, rc, msg, sizeof msg));
		return -1;
	}
	return 0;
}

uint64_t bench_acks_ok(const int *res, size_t n, uint64_t *lost)
{
	uint64_t ok = 0;
	for (size_t i = 0; i < n; i++) {
		if (res[i] == HANDOFF_OK)
			ok++;
		else
			(*lost)++;
	}
	return ok;
}

int bench_result_hists(struct scen_result *r)
{
	r->confirm = calloc(1, sizeof *r->confirm);
	r->deliver = calloc(1, sizeof *r->deliver);
	if (r->confirm == NULL || r->deliver == NULL)
		return -1;
	hist_init(r->confirm);
	hist_init(r->deliver);
	return 0;
}

const char *bench_group_digits(char *buf, size_t len, const char *digits)
{
	size_t n = strlen(digits), at = 0;

	for (size_t i = 0; i < n && at + 2 < len; i++) {
		if (i > 0 && (n - i) % 3 == 0)
			buf[at++] = ',';
		buf[at++] = digits[i];
	}
	buf[at] = '\0';
	return buf;
}

const char *bench_grouped_u(char *buf, size_t len, uint64_t v)
{
	char digits[32];

	snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
	return bench_group_digits(buf, len, digits);
}

int bench_batch_init(struct bench_batch *b, size_t n, uint32_t payload,
		     char fill)
{
	b->buf = malloc(payload ? payload : 1);
	b->ev = calloc(n, sizeof *b->ev);
	b->ids = calloc(n, sizeof *b->ids);
	if (b->buf == NULL || b->ev == NULL || b->ids == NULL)
		return -1;
	memset(b->buf, fill, payload ? payload : 1);
	for (size_t i = 0; i < n; i++) {
		b->ev[i].payload = b->buf;
		b->ev[i].payload_len = payload;
	}
	return 0;
}

void bench_batch_free(struct bench_batch *b)
{
	free(b->buf);
	free(b->ev);
	free(b->ids);
}

uint64_t bench_file_size(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}
