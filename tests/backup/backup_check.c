/*
 * backup_check.c — handoff-backup-check: checks a hot backup against the
 * records of torture workers (tests/torture/record.h) that ran while it
 * was taken.
 *
 *   handoff-backup-check --now
 *       prints CLOCK_MONOTONIC in ns (the clock of the records)
 *   handoff-backup-check --dir RUN --broker URL --before T0 --after T1
 *       T0: taken before the backup request was sent; T1: after the copy
 *       was reported done. URL is a broker started on the copy.
 *
 * What it checks, from RUN/rec/NAME.rec:
 *   - every publish confirmed before T0 (a C record; its time is taken
 *     after the broker's reply) is in the copy: its trace exists and has
 *     the record's idempotency key;
 *   - every ack confirmed before T0 (a K record with status 0) shows in
 *     the copy: that subscription's delivery is acked;
 *   - no ack whose intent was recorded after T1 (an A record: the ack was
 *     sent after the copy ended) shows in the copy as acked by that
 *     attempt (the copy is of one moment, not a later one);
 *   - publishes were confirmed between T0 and T1: the broker served while
 *     the copy ran.
 * Exit 0 all held, 1 a violation, 2 could not check.
 */
#include <dirent.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handoff.h"
#include "record.h"
#include "tt.h"

struct published {
	uint64_t id;
	char key[96];
};

struct ack {
	char sub[64];
	uint64_t id;
	uint32_t attempt;
};

struct recs {
	uint64_t before, after;
	struct published *pub;
	size_t n_pub, cap_pub;
	struct ack *acked; /* confirmed before T0 */
	size_t n_acked, cap_acked;
	struct ack *late; /* intent after T1 */
	size_t n_late, cap_late;
	uint64_t during; /* publishes confirmed in [T0, T1] */
};

static void *grow(void *p, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return p;
	*cap = *cap ? *cap * 2 : 1024;
	void *q = realloc(p, *cap * size);
	if (!q) {
		fprintf(stderr, "backup-check: out of memory\n");
		exit(2);
	}
	return q;
}

static int on_line(void *ctx, const char *file, char *line)
{
	struct recs *r = ctx;
	unsigned long long t, id, token;
	unsigned attempt;
	int dup, status;
	char key[96], sub[64];
	(void)file;
	if (sscanf(line, "C %llu %95s %llu %d", &t, key, &id, &dup) == 4) {
		if (t < r->before) {
			r->pub = grow(r->pub, &r->cap_pub, r->n_pub,
				      sizeof *r->pub);
			r->pub[r->n_pub].id = id;
			snprintf(r->pub[r->n_pub].key, sizeof r->pub->key, "%s",
				 key);
			r->n_pub++;
		} else if (t <= r->after) {
			r->during++;
		}
	} else if (sscanf(line, "K %llu %63s %llu %u %llu %d", &t, sub, &id,
			  &attempt, &token, &status) == 6) {
		if (status == 0 && t < r->before) {
			r->acked = grow(r->acked, &r->cap_acked, r->n_acked,
					sizeof *r->acked);
			struct ack *a = &r->acked[r->n_acked++];
			snprintf(a->sub, sizeof a->sub, "%s", sub);
			a->id = id;
			a->attempt = attempt;
		}
	} else if (sscanf(line, "A %llu %63s %llu %u %llu", &t, sub, &id,
			  &attempt, &token) == 5) {
		if (t > r->after) {
			r->late = grow(r->late, &r->cap_late, r->n_late,
				       sizeof *r->late);
			struct ack *a = &r->late[r->n_late++];
			snprintf(a->sub, sizeof a->sub, "%s", sub);
			a->id = id;
			a->attempt = attempt;
		}
	}
	return 0;
}

static int read_records(const char *dir, struct recs *r)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/rec", dir);
	DIR *d = opendir(path);
	if (!d) {
		perror(path);
		return 2;
	}
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d)) && !rc) {
		size_t n = strlen(e->d_name);
		if (n < 5 || strcmp(e->d_name + n - 4, ".rec"))
			continue;
		snprintf(path, sizeof path, "%s/rec/%s", dir, e->d_name);
		rc = rec_read(path, on_line, r, NULL);
		if (rc) {
			fprintf(stderr, "backup-check: %s: %s\n", path,
				strerror(rc));
			rc = 2;
		}
	}
	closedir(d);
	return rc;
}

static const handoff_subscription_trace *sub_trace(const handoff_trace *t,
						   const char *sub)
{
	for (size_t i = 0; i < t->n_subscriptions; i++)
		if (strcmp(t->subscriptions[i].subscription, sub) == 0)
			return &t->subscriptions[i];
	return NULL;
}

/* Whether attempt `attempt` of sub's delivery ended in an ack. */
static bool acked_by(const handoff_subscription_trace *s, uint32_t attempt)
{
	if (!s || s->state != HANDOFF_STATE_ACKED)
		return false;
	for (size_t i = 0; i < s->n_history; i++)
		if (s->history[i].attempt == attempt &&
		    s->history[i].outcome == HANDOFF_OUTCOME_ACKED)
			return true;
	/* no history kept for it: the acked state is the last attempt's */
	return s->n_history == 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "now", no_argument, NULL, 'n' },
		{ "dir", required_argument, NULL, 'd' },
		{ "broker", required_argument, NULL, 'b' },
		{ "before", required_argument, NULL, 'B' },
		{ "after", required_argument, NULL, 'A' },
		{ NULL, 0, NULL, 0 },
	};
	struct recs r = { 0 };
	const char *dir = NULL, *url = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			printf("%" PRIu64 "\n", tt_mono_ns());
			return 0;
		case 'd':
			dir = optarg;
			break;
		case 'b':
			url = optarg;
			break;
		case 'B':
			r.before = strtoull(optarg, NULL, 10);
			break;
		case 'A':
			r.after = strtoull(optarg, NULL, 10);
			break;
		default:
			return 2;
		}
	}
	if (!dir || !url || !r.before || r.after < r.before) {
		fprintf(stderr, "usage: handoff-backup-check --now | --dir RUN "
				"--broker URL --before T0 --after T1\n");
		return 2;
	}
	if (read_records(dir, &r))
		return 2;

	handoff_client *h = NULL;
	int rc = handoff_connect(url, NULL, &h);
	if (rc) {
		fprintf(stderr, "backup-check: connect %s: %s\n", url,
			handoff_strerror(rc));
		return 2;
	}
	uint64_t missing = 0, wrong_key = 0, ack_missing = 0, ack_late = 0;
	for (size_t i = 0; i < r.n_pub; i++) {
		handoff_trace *t = NULL;
		rc = handoff_trace_event(h, r.pub[i].id, &t);
		if (rc == HANDOFF_ENOTFOUND) {
			if (missing++ < 5)
				printf("missing: event %" PRIu64 " (%s)\n",
				       r.pub[i].id, r.pub[i].key);
			continue;
		}
		if (rc) {
			fprintf(stderr, "backup-check: trace %" PRIu64 ": %s\n",
				r.pub[i].id, handoff_strerror(rc));
			return 2;
		}
		if (strcmp(t->idempotency_key, r.pub[i].key) && wrong_key++ < 5)
			printf("wrong key: event %" PRIu64
			       " holds %s, confirmed as %s\n",
			       r.pub[i].id, t->idempotency_key, r.pub[i].key);
		handoff_trace_free(t);
	}
	struct ack *lists[2] = { r.acked, r.late };
	size_t counts[2] = { r.n_acked, r.n_late };
	for (int l = 0; l < 2; l++) {
		for (size_t i = 0; i < counts[l]; i++) {
			const struct ack *a = &lists[l][i];
			handoff_trace *t = NULL;
			rc = handoff_trace_event(h, a->id, &t);
			bool acked = false;
			if (rc == HANDOFF_OK)
				acked = acked_by(sub_trace(t, a->sub),
						 a->attempt);
			else if (rc != HANDOFF_ENOTFOUND) {
				fprintf(stderr,
					"backup-check: trace %" PRIu64 ": %s\n",
					a->id, handoff_strerror(rc));
				return 2;
			}
			handoff_trace_free(t);
			if (l == 0 && !acked && ack_missing++ < 5)
				printf("ack missing: %s event %" PRIu64
				       " attempt %u (acked before the "
				       "backup)\n",
				       a->sub, a->id, a->attempt);
			if (l == 1 && acked && ack_late++ < 5)
				printf("ack from after the backup: %s event "
				       "%" PRIu64 " attempt %u\n",
				       a->sub, a->id, a->attempt);
		}
	}
	handoff_close(h);
	bool served = r.during > 0;
	printf("backup-check: confirmed_before=%zu acked_before=%zu "
	       "acks_after=%zu confirmed_during=%" PRIu64 " missing=%" PRIu64
	       " wrong_key=%" PRIu64 " ack_missing=%" PRIu64
	       " ack_late=%" PRIu64 "\n",
	       r.n_pub, r.n_acked, r.n_late, r.during, missing, wrong_key,
	       ack_missing, ack_late);
	if (!served)
		printf("backup-check: no publish was confirmed while the "
		       "copy ran\n");
	free(r.pub);
	free(r.acked);
	free(r.late);
	return missing || wrong_key || ack_missing || ack_late || !served ||
			       r.n_pub == 0 || r.n_acked == 0 ?
		       1 :
		       0;
}
