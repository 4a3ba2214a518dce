/*
 * bproc.h — the broker under torture: a real handoffd process on a folder
 * of the run (data/, handoffd.ini, broker.log, b.sock), spawned with
 * posix_spawn (the driver holds nanomsg sockets, so it never forks), killed,
 * stopped and restarted on the same data.
 *
 * Each spawn may add environment entries (LD_PRELOAD and FAULTFS_* for the
 * fault modes, HANDOFF_TEST_NOSYNC for the negative control); they apply
 * to that process only. The log is appended across restarts, with one
 * "---- torture: spawn N ..." marker line per start.
 *
 * Readiness is measured from just before posix_spawn to the first answered
 * ping: the socket file is polled every millisecond first (so nanomsg's
 * 100 ms reconnect interval does not blur the figure), then handoff_connect
 * pings.
 */
#ifndef HANDOFF_TORTURE_BPROC_H
#define HANDOFF_TORTURE_BPROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tt.h"

struct bproc {
	char exe[TT_PATH];
	char dir[TT_PATH];
	char data[TT_PATH];
	char config[TT_PATH];
	char log[TT_PATH];
	char sock[TT_PATH];
	char url[TT_PATH];
	pid_t pid;	 /* 0 when not running */
	int status;	 /* wait status of the last exit */
	bool exited;	 /* the last spawned process has exited */
	unsigned starts; /* spawns so far */
	uint64_t spawn_ns;
	uint64_t log_off; /* log size at the last spawn */
};

/* Paths under dir (created), config written. 0, or -1 with err filled. */
int bp_init(struct bproc *b, const char *exe, const char *dir, char *err,
	    size_t errlen);
/* Spawn handoffd with extra_env (NULL-terminated "K=V" list, may be NULL)
 * and a note for the log marker. 0 or errno. */
int bp_spawn(struct bproc *b, char *const extra_env[], const char *note);

enum bp_ready { BP_READY = 0, BP_EXITED = 1, BP_TIMEOUT = 2 };
/* Wait for the first answered ping. BP_READY with *ready_ns = spawn → ping;
 * BP_EXITED (b->status holds how); BP_TIMEOUT (still running). */
enum bp_ready bp_wait_ready(struct bproc *b, uint32_t timeout_ms,
			    uint64_t *ready_ns);
/* Whether the process is still running (reaps it if not). */
bool bp_alive(struct bproc *b);
/* SIGKILL and reap. */
void bp_kill9(struct bproc *b);
/* SIGTERM, wait up to timeout_ms. true when it exited (b->status); false
 * when it did not (it is then SIGKILLed and reaped). */
bool bp_term(struct bproc *b, uint32_t timeout_ms);
/* Wait up to timeout_ms for it to exit by itself; true when it did. */
bool bp_wait_exit(struct bproc *b, uint32_t timeout_ms);
/* Whether the log written since the last spawn contains needle. */
bool bp_log_since_spawn(const struct bproc *b, const char *needle);

#endif
