/*
 * tt.h — small helpers shared by handoff-torture and handoff-check: clocks,
 * a seeded pseudo-random generator, string hashing, a string-keyed hash
 * table, files and directories, and spawning with posix_spawn.
 *
 * Time: every timestamp the records compare across processes is
 * CLOCK_MONOTONIC (system-wide, never jumps); wall time only where the
 * broker's own timestamps (CLOCK_REALTIME milliseconds) are compared.
 *
 * Not thread-safe unless said otherwise: the generator and tables belong
 * to their caller.
 */
#ifndef HANDOFF_TORTURE_TT_H
#define HANDOFF_TORTURE_TT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define TT_PATH 512

/* ---- time ---------------------------------------------------------------- */

uint64_t tt_mono_ns(void);
uint64_t tt_wall_ms(void);
/* Sleep ms, resuming after signals (a SIGCHLD must not cut a pause short). */
void tt_sleep_ms(uint32_t ms);

/* ---- randomness (splitmix64: tiny, seedable, good enough for choices) ---- */

struct tt_rng {
	uint64_t s;
};

void tt_rng_seed(struct tt_rng *r, uint64_t seed);
uint64_t tt_rand(struct tt_rng *r);
/* Uniform in [0, n); n = 0 gives 0. */
uint64_t tt_below(struct tt_rng *r, uint64_t n);
/* Uniform in [lo, hi]. */
uint64_t tt_range(struct tt_rng *r, uint64_t lo, uint64_t hi);
/* True with probability per_mille / 1000. */
bool tt_chance(struct tt_rng *r, unsigned per_mille);

/* 64-bit hash of a string (FNV-1a, then a splitmix finaliser). */
uint64_t tt_hash(const char *s);

/* ---- string-keyed hash table (keys copied, values are the caller's) ----- */

struct tt_map_slot {
	char *key;
	void *val;
};

struct tt_map {
	struct tt_map_slot *slots;
	size_t cap; /* power of two */
	size_t n;
};

void tt_map_init(struct tt_map *m);
/* The value of key, or NULL. */
void *tt_map_get(const struct tt_map *m, const char *key);
/* Set key -> val (replacing). 0, or ENOMEM. */
int tt_map_put(struct tt_map *m, const char *key, void *val);
/* Frees keys; free_val (may be NULL) is called on every value. */
void tt_map_free(struct tt_map *m, void (*free_val)(void *));

/* snprintf that says whether it fit (paths: a truncated one is an error,
 * never a silent other path). */
bool tt_fmt(char *out, size_t outlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- files --------------------------------------------------------------- */

/* mkdir -p; 0 or errno. */
int tt_mkdirs(const char *path);
/* rm -rf; best effort. */
void tt_rm_rf(const char *path);
/* Whole file into a malloc'd NUL-terminated buffer; NULL on error. */
char *tt_read_file(const char *path, size_t *len);
/* Write text to path (truncating); 0 or errno. */
int tt_write_file(const char *path, const char *text);
/* Print the last `lines` lines of a file to f, framed. */
void tt_tail(const char *path, FILE *f, int lines);
/* Number of lines of path containing needle (0 when unreadable). */
size_t tt_count_lines(const char *path, const char *needle);

/* ---- processes ----------------------------------------------------------- */

/*
 * posix_spawn argv[0] (a path) with our environment plus extra_env
 * ("NAME=value" entries overriding ours; may be NULL), stdin from
 * /dev/null, stdout and stderr appended to log_path, in a process group
 * of its own, with our descriptors >= 3 closed (our nanomsg sockets must
 * not leak into a child). Returns the pid, or -1 with errno set.
 */
pid_t tt_spawn(char *const argv[], char *const extra_env[],
	       const char *log_path);
/* SIGKILL every child tt_spawn started that was not reaped yet; async-
 * signal-safe (for a fatal-signal handler). */
void tt_kill_children(void);
/* Wait for pid up to timeout_ms (0: just poll). Returns true when it has
 * exited, with its wait status in *status. */
bool tt_wait(pid_t pid, uint32_t timeout_ms, int *status);
/* "exit 3", "signal 9", ... */
void tt_status_text(int status, char *out, size_t outlen);

/*
 * Append what can be seen of process pid's connections to path: its open
 * descriptors, its unix sockets' lines of /proc/net/unix, `ss -xpn` and,
 * for another process, gdb's backtrace of every thread (each tool only if
 * installed). For a client that stopped getting answers. Best effort.
 */
void tt_diagnose(pid_t pid, const char *path, const char *why);

/* Percentile (0..100) of n values, sorted in place. 0 when n = 0. */
uint64_t tt_percentile(uint64_t *v, size_t n, double pct);

#endif
