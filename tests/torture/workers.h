/*
 * workers.h — the driver's side of the worker processes: spawn the
 * torture executable itself with --role, reap them, respawn the ones that
 * died by design (SIGKILL or ROLE_EXIT_CHAOS) under a new name, count the
 * ones that died any other way, and stop them all with SIGTERM.
 *
 * Names: producer slot 1, generation 3 is "p1g3"; consumer slot 0 of the
 * second subscription is "c1s0g2"; clean (drain) consumers "d1s0g1"; the push receiver
 * "h0g1" (never respawned: the push subscriptions name its port). A
 * worker's record file is RUN/rec/NAME.rec; its log RUN/logs/SLOT.log,
 * appended across generations.
 */
#ifndef HANDOFF_TORTURE_WORKERS_H
#define HANDOFF_TORTURE_WORKERS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tt.h"

#define WK_MAX 64

enum wk_role { WK_PRODUCER, WK_CONSUMER, WK_CLEAN, WK_RECEIVER };

struct worker {
	enum wk_role role;
	int sub; /* index into the subscription names (consumers) */
	int slot;
	unsigned gen;
	pid_t pid; /* 0 when not running */
	char name[64];
};

struct workers {
	char self[TT_PATH]; /* this executable */
	char dir[TT_PATH];  /* run folder */
	char url[TT_PATH];
	const char *const *subs;
	unsigned rate; /* producer pacing */
	uint64_t seed;
	struct worker w[WK_MAX];
	size_t n;
	/* counts */
	unsigned spawned, chaos_deaths, failures, stopped;
};

/* Add a worker and spawn it. 0 or errno. */
int wk_add(struct workers *ws, enum wk_role role, int sub, int slot);
/* Reap every exited worker; respawn chaos deaths when respawn is true.
 * Failures (any other exit but a requested stop) are counted and their
 * log tail printed. */
void wk_reap(struct workers *ws, bool respawn);
/* SIGTERM the workers of the given role (all roles: -1), wait up to
 * timeout_ms for each, SIGKILL the rest. Returns how many had to be
 * killed. */
unsigned wk_stop(struct workers *ws, int role, uint32_t timeout_ms);

/* Send sig to the running workers of role. */
void wk_signal(struct workers *ws, int role, int sig);

/* SIGKILL every running worker and reap it (the broker is gone: their
 * calls could not finish). */
void wk_kill_all(struct workers *ws);

#endif
