/*
 * roles.h — the worker processes of a torture run. The driver spawns its
 * own executable with --role producer|consumer|receiver; each worker writes
 * its own record file RUN/rec/NAME.rec (see record.h), talks to the broker
 * through client/handoff.h only (the receiver is talked to: the broker
 * POSTs to it), and stops at the top of its loop after SIGTERM.
 *
 * Deliberate deaths (the chaos the workload asks for) are SIGKILL of
 * itself or _exit(ROLE_EXIT_CHAOS); any other exit status but 0 is a
 * failure of the worker that the driver reports.
 */
#ifndef HANDOFF_TORTURE_ROLES_H
#define HANDOFF_TORTURE_ROLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROLE_EXIT_CHAOS 42
#define TORTURE_TOPIC	"torture"

/* Per-call deadline of the workers: long enough to ride out any restart
 * or power cut the driver makes (the client retries inside it). */
#define ROLE_DEADLINE_MS 60000u
/* Resend a request after this long without a reply (nanomsg also resends
 * at once when the connection drops). */
#define ROLE_ATTEMPT_MS 1000u

struct role_args {
	const char *url;  /* broker */
	const char *dir;  /* run folder: records go to DIR/rec/NAME.rec */
	const char *name; /* unique per process: keys and consumer name */
	const char *sub;  /* consumer: its subscription */
	uint64_t seed;
	unsigned rate; /* producer: events per second (0 = no pacing) */
	bool clean;    /* consumer: ack everything, never die */
};

int producer_main(const struct role_args *a);
int consumer_main(const struct role_args *a);
/* The push subscriptions' HTTP endpoint (receiver.c): never dies by
 * design; SIGUSR1 makes it answer 200 to every good request. */
int receiver_main(const struct role_args *a);

/* Shared by the roles: SIGTERM handling and the parent-death signal. Call
 * role_setup_signals() before connecting; role_should_stop() says whether
 * a SIGTERM (or SIGINT) came. */
void role_setup_signals(void);
bool role_should_stop(void);
/* After a call failed with rc: the first time one ran out its whole
 * deadline, write what the process's sockets look like to
 * RUN/logs/stuck-NAME.txt (a client that stopped reconnecting). */
void role_call_failed(const struct role_args *a, int rc);
/* The record file path of a worker. */
void role_rec_path(const struct role_args *a, char *out, size_t outlen);

#endif
