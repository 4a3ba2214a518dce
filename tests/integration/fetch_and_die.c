/*
 * fetch_and_die.c — a consumer that crashes in the middle of a batch.
 * Spawned by test_faults.c ($FETCH_AND_DIE).
 *
 *   fetch_and_die URL SUB BATCH ACKS
 *
 * Connects as consumer "doomed", leases BATCH deliveries of SUB (several
 * fetches if the broker hands out fewer at a time), acks the first ACKS of
 * them, prints what it did and then raise(SIGKILL)s itself: no nack, no
 * close, exactly what a crashed consumer leaves behind. Output, one line
 * per delivery, in fetch order:
 *
 *   acked EVENT_ID ATTEMPT LEASE_DEADLINE_MS
 *   held EVENT_ID ATTEMPT LEASE_DEADLINE_MS
 *
 * Exit status 1 (instead of dying) when any step fails, with the reason on
 * stderr, so the test can tell a crash it asked for from a broken step.
 */
#include <handoff.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_BATCH 100

static void die_with(handoff_client *c, const char *what, int rc)
{
	fprintf(stderr, "fetch_and_die: %s: %s: %s\n", what,
		handoff_strerror(rc), c ? handoff_last_message(c) : "");
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: fetch_and_die URL SUB BATCH ACKS\n");
		return 2;
	}
	const char *url = argv[1], *sub = argv[2];
	size_t batch = strtoul(argv[3], NULL, 10);
	size_t acks = strtoul(argv[4], NULL, 10);
	if (batch == 0 || batch > MAX_BATCH || acks > batch) {
		fprintf(stderr, "fetch_and_die: bad BATCH or ACKS\n");
		return 2;
	}
	handoff_options o = { .deadline_ms = 20000, .consumer_name = "doomed" };
	handoff_client *c = NULL;
	int rc = handoff_connect(url, &o, &c);
	if (rc != HANDOFF_OK)
		die_with(NULL, "connect", rc);

	/* Flatten the fetches into one list of leased deliveries. */
	handoff_delivery *lease[MAX_BATCH];
	size_t n_lease = 0;
	for (int round = 0; round < 20 && n_lease < batch; round++) {
		handoff_delivery *d = NULL;
		size_t n = 0;
		rc = handoff_fetch(c, sub, batch - n_lease, 5000, &d, &n);
		if (rc != HANDOFF_OK)
			die_with(c, "fetch", rc);
		for (size_t i = 0; i < n; i++)
			lease[n_lease++] = &d[i];
		/* d is never freed: the process dies holding it, on purpose */
	}
	if (n_lease != batch) {
		fprintf(stderr, "fetch_and_die: leased %zu of %zu\n", n_lease,
			batch);
		return 1;
	}
	for (size_t i = 0; i < acks; i++) {
		handoff_ack_item it = { lease[i]->event_id,
					lease[i]->lease_token };
		int res = -1;
		rc = handoff_ack(c, sub, &it, 1, &res);
		if (rc != HANDOFF_OK)
			die_with(c, "ack", rc);
		if (res != HANDOFF_OK)
			die_with(c, "ack item", res);
	}
	for (size_t i = 0; i < batch; i++)
		printf("%s %" PRIu64 " %" PRIu32 " %" PRIu64 "\n",
		       i < acks ? "acked" : "held", lease[i]->event_id,
		       lease[i]->attempt, lease[i]->lease_deadline_ms);
	fflush(stdout);
	raise(SIGKILL);
	return 1; /* not reached */
}
