/*
 * producer.c — a producer process of the torture workload.
 *
 * It publishes batches (half of them single events, the rest 2..40) with
 * idempotency keys NAME-SEQ whose payloads are payload.h's function of the
 * key, paced to --rate events per second. Before each publish the intents
 * are recorded and synced; after a confirmed publish the ids are recorded
 * and synced. A publish that fails is recorded as an error and retried
 * with the same keys (the contract's way to learn whether it was stored).
 * Now and then it re-publishes a key it already has confirmed and records
 * the id it got back, which must be the first one.
 *
 * Chaos: about 3 publishes in 1000 end the process (SIGKILL or _exit)
 * either after the intents were synced but before the send, or after the
 * broker confirmed but before the confirmation was recorded — the latter
 * leaves an "unconfirmed" publish that the broker did store.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handoff.h"
#include "payload.h"
#include "record.h"
#include "roles.h"
#include "tt.h"

#define MAX_BATCH 40
#define KEY_MAX	  64

struct confirmed {
	char key[KEY_MAX];
	uint64_t id;
};

struct producer {
	const struct role_args *a;
	struct rec_writer rec;
	handoff_client *c;
	struct tt_rng rng;
	uint64_t seq;
	/* the batch in hand: new, or the keys of a failed publish */
	char keys[MAX_BATCH][KEY_MAX];
	size_t n_keys;
	bool retrying;
	struct confirmed *done;
	size_t n_done, cap_done;
	uint64_t n_published, n_errors, n_republished;
	uint64_t next_ns; /* pacing */
};

static void die_now(struct producer *p)
{
	/* Half SIGKILL (nothing runs after), half _exit (no atexit, no
	 * flush): both are the crash the records must survive. */
	if (tt_chance(&p->rng, 500))
		raise(SIGKILL);
	_exit(ROLE_EXIT_CHAOS);
}

static int remember(struct producer *p, const char *key, uint64_t id)
{
	if (p->n_done == p->cap_done) {
		size_t cap = p->cap_done ? p->cap_done * 2 : 1024;
		struct confirmed *n = realloc(p->done, cap * sizeof(*n));
		if (!n)
			return ENOMEM;
		p->done = n;
		p->cap_done = cap;
	}
	snprintf(p->done[p->n_done].key, KEY_MAX, "%s", key);
	p->done[p->n_done++].id = id;
	return 0;
}

/* Publish keys[0..n) once; records intents, then the outcome. */
static int publish_keys(struct producer *p, char (*keys)[KEY_MAX], size_t n,
			uint64_t *ids, bool *dups)
{
	handoff_event ev[MAX_BATCH];
	unsigned char *buf[MAX_BATCH];
	int rc = 0;
	memset(buf, 0, sizeof(buf));
	for (size_t i = 0; i < n; i++) {
		size_t len = payload_len(keys[i]);
		buf[i] = malloc(len);
		if (!buf[i]) {
			rc = HANDOFF_ENOMEM;
			goto out;
		}
		payload_fill(keys[i], buf[i]);
		ev[i] = (handoff_event){ .payload = buf[i],
					 .payload_len = len,
					 .key = keys[i],
					 .idempotency_key = keys[i] };
		rec_add(&p->rec, "I %llu %s %zu",
			(unsigned long long)tt_mono_ns(), keys[i], len);
	}
	if (rec_sync(&p->rec)) {
		fprintf(stderr, "producer=%s event=record_failed error=%s\n",
			p->a->name, strerror(p->rec.err));
		exit(1);
	}
	rc = handoff_publish(p->c, TORTURE_TOPIC, ev, n, ids, dups);
out:
	for (size_t i = 0; i < n; i++)
		free(buf[i]);
	return rc;
}

static void pace(struct producer *p, size_t events)
{
	if (p->a->rate == 0)
		return;
	uint64_t now = tt_mono_ns();
	if (p->next_ns == 0 || now > p->next_ns + 1000000000u)
		p->next_ns = now; /* after a long stall, don't burst */
	p->next_ns += (uint64_t)events * 1000000000u / p->a->rate;
	if (p->next_ns > now)
		tt_sleep_ms((uint32_t)((p->next_ns - now) / 1000000u));
}

static void republish(struct producer *p)
{
	struct confirmed *d = &p->done[tt_below(&p->rng, p->n_done)];
	char key[1][KEY_MAX];
	uint64_t id = 0;
	bool dup = false;
	snprintf(key[0], KEY_MAX, "%s", d->key);
	int rc = publish_keys(p, key, 1, &id, &dup);
	if (rc == HANDOFF_OK) {
		rec_add(&p->rec, "R %llu %s %llu %llu %d",
			(unsigned long long)tt_mono_ns(), d->key,
			(unsigned long long)d->id, (unsigned long long)id,
			dup ? 1 : 0);
		rec_sync(&p->rec);
		p->n_republished++;
		if (id != d->id)
			fprintf(stderr,
				"producer=%s event=republish_new_id key=%s "
				"first=%llu got=%llu\n",
				p->a->name, d->key, (unsigned long long)d->id,
				(unsigned long long)id);
	}
	pace(p, 1);
}

static void publish_batch(struct producer *p)
{
	uint64_t ids[MAX_BATCH];
	bool dups[MAX_BATCH];
	if (!p->retrying) {
		p->n_keys = tt_chance(&p->rng, 500) ?
				    1 :
				    (size_t)tt_range(&p->rng, 2, MAX_BATCH);
		for (size_t i = 0; i < p->n_keys; i++)
			snprintf(p->keys[i], KEY_MAX, "%s-%llu", p->a->name,
				 (unsigned long long)++p->seq);
	}
	int die = tt_chance(&p->rng, 3) ? (int)tt_range(&p->rng, 1, 2) : 0;
	if (die == 1) {
		for (size_t i = 0; i < p->n_keys; i++)
			rec_add(&p->rec, "I %llu %s %zu",
				(unsigned long long)tt_mono_ns(), p->keys[i],
				payload_len(p->keys[i]));
		rec_sync(&p->rec);
		die_now(p);
	}
	int rc = publish_keys(p, p->keys, p->n_keys, ids, dups);
	if (rc != HANDOFF_OK) {
		for (size_t i = 0; i < p->n_keys; i++)
			rec_add(&p->rec, "E %llu %s %d",
				(unsigned long long)tt_mono_ns(), p->keys[i],
				rc);
		rec_sync(&p->rec);
		fprintf(stderr,
			"producer=%s event=publish_failed events=%zu "
			"error=%s message=\"%s\" mono_ns=%llu\n",
			p->a->name, p->n_keys, handoff_strerror(rc),
			handoff_last_message(p->c),
			(unsigned long long)tt_mono_ns());
		role_call_failed(p->a, rc);
		p->n_errors++;
		p->retrying = true;
		tt_sleep_ms(100);
		return;
	}
	if (die == 2)
		die_now(p); /* stored, never recorded as confirmed */
	for (size_t i = 0; i < p->n_keys; i++)
		rec_add(&p->rec, "C %llu %s %llu %d",
			(unsigned long long)tt_mono_ns(), p->keys[i],
			(unsigned long long)ids[i], dups[i] ? 1 : 0);
	if (rec_sync(&p->rec)) {
		fprintf(stderr, "producer=%s event=record_failed error=%s\n",
			p->a->name, strerror(p->rec.err));
		exit(1);
	}
	for (size_t i = 0; i < p->n_keys; i++)
		remember(p, p->keys[i], ids[i]);
	p->n_published += p->n_keys;
	p->retrying = false;
	pace(p, p->n_keys);
}

int producer_main(const struct role_args *a)
{
	struct producer p;
	char path[TT_PATH];
	int status = 1;
	memset(&p, 0, sizeof(p));
	p.a = a;
	p.rec.fd = -1;
	tt_rng_seed(&p.rng, a->seed ^ tt_hash(a->name));
	role_setup_signals();
	role_rec_path(a, path, sizeof(path));
	int rc = rec_open(&p.rec, path);
	if (rc) {
		fprintf(stderr,
			"producer=%s event=record_open_failed path=%s "
			"error=%s\n",
			a->name, path, strerror(rc));
		p.rec.fd = -1;
		goto out;
	}
	handoff_options o = { .deadline_ms = ROLE_DEADLINE_MS,
			      .attempt_timeout_ms = ROLE_ATTEMPT_MS,
			      .consumer_name = a->name };
	rc = handoff_connect(a->url, &o, &p.c);
	if (rc) {
		fprintf(stderr, "producer=%s event=connect_failed error=%s\n",
			a->name, handoff_strerror(rc));
		goto out;
	}
	while (!role_should_stop()) {
		if (!p.retrying && p.n_done && tt_chance(&p.rng, 30))
			republish(&p);
		else
			publish_batch(&p);
	}
	status = 0;
	fprintf(stderr,
		"producer=%s event=stopped published=%llu errors=%llu "
		"republished=%llu\n",
		a->name, (unsigned long long)p.n_published,
		(unsigned long long)p.n_errors,
		(unsigned long long)p.n_republished);
out:
	handoff_close(p.c);
	rec_close(&p.rec);
	free(p.done);
	return status;
}
