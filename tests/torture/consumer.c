/*
 * consumer.c — a consumer process of the torture workload, on one
 * subscription, with a consumer name of its own.
 *
 * Each fetch (1..20 deliveries, long poll 500 ms) is timed when it is first
 * sent; every delivery is checked against payload.h and recorded (D) with
 * that time before anything else happens to it. Then, per delivery (per
 * mille): 10 nacked permanently, 40 nacked with an explicit delay, 10
 * nacked with the subscription's backoff, 20 ignored (the lease expires),
 * the rest acked — all acks of a batch in one request. Every ack and nack
 * intent is recorded and synced before the request goes out, and every
 * item status after it comes back.
 *
 * Chaos: 15 batches in 1000 end the process part-way: after acking only
 * the first part of the batch, after recording the intents but before the
 * send, or after the send but before the confirmations were recorded. The
 * driver respawns it under a new name.
 *
 * --clean: ack everything, up to 100 per fetch, never die (the final
 * drain).
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

#define FETCH_WAIT_MS 500u

enum choice { DO_ACK, DO_NACK, DO_PERM, DO_IGNORE };

struct consumer {
	const struct role_args *a;
	struct rec_writer rec;
	handoff_client *c;
	struct tt_rng rng;
	uint64_t n_fetched, n_acked, n_nacked, n_bad, n_ignored;
};

static void sync_or_exit(struct consumer *k)
{
	if (rec_sync(&k->rec)) {
		fprintf(stderr, "consumer=%s event=record_failed error=%s\n",
			k->a->name, strerror(k->rec.err));
		exit(1);
	}
}

static void die_now(struct consumer *k)
{
	if (tt_chance(&k->rng, 500))
		raise(SIGKILL);
	_exit(ROLE_EXIT_CHAOS);
}

/* Keys we publish are [A-Za-z0-9-]; anything else (a delivery we never
 * published) is written so that the record line stays parseable. */
static void safe_key(const char *in, char *out, size_t outlen)
{
	size_t i = 0;
	for (; in[i] && i + 1 < outlen; i++) {
		char ch = in[i];
		bool ok = (ch >= 'a' && ch <= 'z') ||
			  (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
			  ch == '.';
		out[i] = ok ? ch : '?';
	}
	out[i] = '\0';
	if (i == 0)
		snprintf(out, outlen, "-");
}

static void nack_some(struct consumer *k, const handoff_delivery *d, size_t n,
		      const enum choice *ch)
{
	handoff_nack_item items[100];
	size_t idx[100], m = 0;
	int results[100];
	const char *sub = k->a->sub;
	for (size_t i = 0; i < n; i++) {
		if (ch[i] != DO_NACK && ch[i] != DO_PERM)
			continue;
		bool perm = ch[i] == DO_PERM;
		uint32_t delay = 0;
		if (!perm && tt_chance(&k->rng, 800))
			delay = (uint32_t)tt_range(&k->rng, 20, 400);
		items[m] = (handoff_nack_item){
			.event_id = d[i].event_id,
			.lease_token = d[i].lease_token,
			.delay_ms = delay,
			.permanent = perm,
			.reason = perm ? "torture: permanent failure" :
					 "torture: transient failure",
		};
		idx[m++] = i;
		rec_add(&k->rec, "N %llu %s %llu %u %llu %u %d",
			(unsigned long long)tt_mono_ns(), sub,
			(unsigned long long)d[i].event_id, d[i].attempt,
			(unsigned long long)d[i].lease_token, delay,
			perm ? 1 : 0);
	}
	if (m == 0)
		return;
	sync_or_exit(k);
	int rc = handoff_nack(k->c, sub, items, m, results);
	if (rc != HANDOFF_OK) {
		fprintf(stderr,
			"consumer=%s event=nack_failed error=%s "
			"mono_ns=%llu\n",
			k->a->name, handoff_strerror(rc),
			(unsigned long long)tt_mono_ns());
		role_call_failed(k->a, rc);
		return;
	}
	for (size_t j = 0; j < m; j++) {
		const handoff_delivery *x = &d[idx[j]];
		rec_add(&k->rec, "M %llu %s %llu %u %llu %d",
			(unsigned long long)tt_mono_ns(), sub,
			(unsigned long long)x->event_id, x->attempt,
			(unsigned long long)x->lease_token, results[j]);
	}
	sync_or_exit(k);
	k->n_nacked += m;
}

/*
 * Ack the deliveries chosen DO_ACK, at most `limit` of them. die_stage:
 * 0 = none; 1 = die after the intents are synced; 2 = die after the
 * broker answered, before recording its answer.
 */
static void ack_some(struct consumer *k, const handoff_delivery *d, size_t n,
		     const enum choice *ch, size_t limit, int die_stage)
{
	handoff_ack_item items[100];
	size_t idx[100], m = 0;
	int results[100];
	const char *sub = k->a->sub;
	for (size_t i = 0; i < n && m < limit; i++) {
		if (ch[i] != DO_ACK)
			continue;
		items[m] =
			(handoff_ack_item){ .event_id = d[i].event_id,
					    .lease_token = d[i].lease_token };
		idx[m++] = i;
		rec_add(&k->rec, "A %llu %s %llu %u %llu",
			(unsigned long long)tt_mono_ns(), sub,
			(unsigned long long)d[i].event_id, d[i].attempt,
			(unsigned long long)d[i].lease_token);
	}
	if (m == 0)
		return;
	sync_or_exit(k);
	if (die_stage == 1)
		die_now(k);
	int rc = handoff_ack(k->c, sub, items, m, results);
	if (die_stage == 2)
		die_now(k);
	if (rc != HANDOFF_OK) {
		fprintf(stderr,
			"consumer=%s event=ack_failed error=%s "
			"mono_ns=%llu\n",
			k->a->name, handoff_strerror(rc),
			(unsigned long long)tt_mono_ns());
		role_call_failed(k->a, rc);
		return;
	}
	/* The time of a confirmation is taken after the reply was read. */
	uint64_t t = tt_mono_ns();
	for (size_t j = 0; j < m; j++) {
		const handoff_delivery *x = &d[idx[j]];
		rec_add(&k->rec, "K %llu %s %llu %u %llu %d",
			(unsigned long long)t, sub,
			(unsigned long long)x->event_id, x->attempt,
			(unsigned long long)x->lease_token, results[j]);
		if (results[j] == HANDOFF_OK)
			k->n_acked++;
	}
	sync_or_exit(k);
}

static void one_batch(struct consumer *k)
{
	handoff_delivery *d = NULL;
	size_t n = 0;
	enum choice ch[100];
	size_t max = k->a->clean ? 100 : (size_t)tt_range(&k->rng, 1, 20);
	uint64_t t_fetch = tt_mono_ns();
	int rc = handoff_fetch(k->c, k->a->sub, max, FETCH_WAIT_MS, &d, &n);
	if (rc != HANDOFF_OK) {
		fprintf(stderr,
			"consumer=%s event=fetch_failed error=%s "
			"message=\"%s\" started_ns=%llu mono_ns=%llu\n",
			k->a->name, handoff_strerror(rc),
			handoff_last_message(k->c), (unsigned long long)t_fetch,
			(unsigned long long)tt_mono_ns());
		role_call_failed(k->a, rc);
		tt_sleep_ms(100);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char key[128];
		safe_key(d[i].key, key, sizeof(key));
		bool ok = payload_verify(d[i].key, d[i].payload,
					 d[i].payload_len);
		rec_add(&k->rec, "D %llu %s %llu %u %llu %s %s",
			(unsigned long long)t_fetch, k->a->sub,
			(unsigned long long)d[i].event_id, d[i].attempt,
			(unsigned long long)d[i].lease_token, key,
			ok ? "ok" : "bad");
		if (!ok) {
			k->n_bad++;
			fprintf(stderr,
				"consumer=%s event=bad_payload id=%llu "
				"key=%s len=%zu\n",
				k->a->name, (unsigned long long)d[i].event_id,
				key, d[i].payload_len);
		}
		unsigned r = (unsigned)tt_below(&k->rng, 1000);
		if (k->a->clean)
			ch[i] = DO_ACK;
		else if (r < 10)
			ch[i] = DO_PERM;
		else if (r < 60)
			ch[i] = DO_NACK;
		else if (r < 80)
			ch[i] = DO_IGNORE;
		else
			ch[i] = DO_ACK;
		if (ch[i] == DO_IGNORE)
			k->n_ignored++;
	}
	k->n_fetched += n;
	sync_or_exit(k);

	int die_stage = 0;
	size_t limit = n;
	bool dying = !k->a->clean && n && tt_chance(&k->rng, 15);
	if (dying) {
		die_stage = (int)tt_range(&k->rng, 0, 2);
		limit = (size_t)tt_below(&k->rng, n + 1);
	}
	nack_some(k, d, n, ch);
	ack_some(k, d, n, ch, limit, die_stage);
	handoff_deliveries_free(d, n);
	if (dying)
		die_now(k); /* stage 0: after acking only part of the batch */
}

int consumer_main(const struct role_args *a)
{
	struct consumer k;
	char path[TT_PATH];
	int status = 1;
	memset(&k, 0, sizeof(k));
	k.a = a;
	k.rec.fd = -1;
	tt_rng_seed(&k.rng, a->seed ^ tt_hash(a->name));
	role_setup_signals();
	if (!a->sub) {
		fprintf(stderr, "consumer=%s event=no_subscription\n", a->name);
		return 2;
	}
	role_rec_path(a, path, sizeof(path));
	int rc = rec_open(&k.rec, path);
	if (rc) {
		fprintf(stderr,
			"consumer=%s event=record_open_failed path=%s "
			"error=%s\n",
			a->name, path, strerror(rc));
		k.rec.fd = -1;
		goto out;
	}
	handoff_options o = { .deadline_ms = ROLE_DEADLINE_MS,
			      .attempt_timeout_ms = ROLE_ATTEMPT_MS,
			      .consumer_name = a->name };
	rc = handoff_connect(a->url, &o, &k.c);
	if (rc) {
		fprintf(stderr, "consumer=%s event=connect_failed error=%s\n",
			a->name, handoff_strerror(rc));
		goto out;
	}
	while (!role_should_stop())
		one_batch(&k);
	status = 0;
	fprintf(stderr,
		"consumer=%s event=stopped fetched=%llu acked=%llu "
		"nacked=%llu ignored=%llu bad=%llu\n",
		a->name, (unsigned long long)k.n_fetched,
		(unsigned long long)k.n_acked, (unsigned long long)k.n_nacked,
		(unsigned long long)k.n_ignored, (unsigned long long)k.n_bad);
out:
	handoff_close(k.c);
	rec_close(&k.rec);
	return status;
}
