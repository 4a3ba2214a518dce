/*
 * driver.h — the torture driver: one run of a fault mode on a fresh run
 * folder, with the workload of roles.h, a final drain and the checker.
 *
 * Run folder (RUN):
 *   broker/   handoffd's data/, handoffd.ini, broker.log, b.sock, and the
 *             faultfs state folders
 *   rec/      one record file per process (driver.rec is the driver's)
 *   push/     the receiver's port and the push subscriptions' secrets
 *   logs/     worker logs, faultfs-image output
 *
 * The modes share the run (struct run) and its steps; kill, powercut and
 * none live in driver.c, io in iomode.c.
 */
#ifndef HANDOFF_TORTURE_DRIVER_H
#define HANDOFF_TORTURE_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "broker_proc.h"
#include "check.h"
#include "handoff.h"
#include "record.h"
#include "tt.h"
#include "workers.h"

/* Pull subscriptions (consumer processes) and push subscriptions (the
 * broker POSTs to the run's receiver), all on one topic. */
#define DRV_SUBS      2
#define DRV_PUSH_SUBS 1

struct drv_opts {
	const char *mode;	   /* kill | powercut | io | none */
	const char *handoffd;	   /* broker binary */
	const char *faultfs_lib;   /* libfaultfs.so (powercut, io) */
	const char *faultfs_image; /* faultfs-image (powercut) */
	const char *dir;	   /* run folder to create; NULL = mkdtemp */
	unsigned cycles;     /* kill: cycles to make (0 = until --seconds) */
	unsigned cuts;	     /* powercut: cuts to make */
	unsigned seconds;    /* fault phase limit (0 = none) */
	unsigned min_faults; /* fail when fewer cycles/cuts were made */
	unsigned kill_min_ms, kill_max_ms;
	bool negative_control; /* powercut with HANDOFF_TEST_NOSYNC=1 */
	const char *what;      /* io: write | sync | both */
	unsigned k_max;	       /* io: 0 = until k passes every write/sync */
	unsigned k_step;       /* io: k = 1, 1 + step, ... (default 1) */
	unsigned producers;
	unsigned consumers; /* per subscription */
	unsigned rate;	    /* events/s per producer */
	unsigned drain_seconds;
	unsigned check_threads;
	uint64_t seed;
	bool keep; /* keep RUN even when the run passed */
};

struct run {
	const struct drv_opts *o;
	char dir[TT_PATH];
	char rec_dir[TT_PATH + 8];
	char log_dir[TT_PATH + 8];
	struct broker_proc b;  /* the broker under torture (broker/) */
	handoff_client *c;     /* the driver's own handle */
	struct rec_writer rec; /* driver.rec */
	struct workers ws;
	struct tt_rng rng;
	const char *sub_names[DRV_SUBS]; /* the pull subscriptions */
	unsigned push_port;		 /* the receiver's; 0 = not started */
	uint64_t t_start;
	/* what happened */
	unsigned faults; /* cycles or cuts made */
	uint64_t *restart_ns;
	size_t n_restart, cap_restart;
	unsigned replays, replayed, replay_failures;
	bool failed; /* a hard failure was reported */
	char failure[512];
	/* environment of a faulty broker spawn */
	char env_buf[8][TT_PATH + 64];
	char *env[9];
	size_t n_env;
};

int driver_main(const struct drv_opts *o);

/* ---- steps shared by the modes (driver.c) ---- */

/* Report a hard failure (first one kept); prints it and the broker log's
 * tail. */
void run_fail(struct run *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Clear the faulty environment; add one "NAME=value" entry. */
void run_env_clear(struct run *r);
void run_env_add(struct run *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* LD_PRELOAD the faultfs library with FAULTFS_STATE=state (and the ASan
 * option it needs). */
void run_env_faultfs(struct run *r, const char *state);
/* Spawn the broker (with r->env when faulty) and wait until it answers.
 * BROKER_PROC_READY (0), or BROKER_PROC_EXITED / BROKER_PROC_TIMEOUT (not
 * reported); *ready_ns (may be NULL) = spawn to first answered ping. */
int run_broker_up(struct run *r, bool faulty, const char *note,
		  uint64_t *ready_ns);
/* Stop the broker with SIGTERM; 0 when it exited 0, else reports. */
int run_broker_term(struct run *r);
/* Connect the driver's handle (once). */
int run_connect(struct run *r);
/* Subscribe the run's subscriptions and record them; the push ones after
 * starting the receiver (once) and writing their secrets to
 * RUN/push/NAME.secret. */
int run_subscribe(struct run *r);
/* Final drain with clean consumers; 0 when every subscription emptied. */
int run_drain(struct run *r);
/* Run the checker against the broker. */
int run_check(struct run *r, struct check_result *cr);

/* io mode (iomode.c): the fault loop; returns 0 or reports a failure. */
int io_faults(struct run *r);

#endif
