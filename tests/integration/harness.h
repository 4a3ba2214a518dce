/*
 * harness.h — integration test harness: runs a real handoffd on a fresh
 * temporary directory and the handoff CLI as child processes.
 *
 * The broker binary comes from $HANDOFFD, the CLI from $HANDOFF_CLI (meson
 * sets both). Each broker gets its own directory (mkdtemp under $TMPDIR or
 * /tmp) holding its config file, its data directory, its ipc socket and its
 * log (stderr and stdout of the broker, appended across restarts).
 *
 * Children are spawned with posix_spawn: the test process has nanomsg
 * threads, so nothing may run in a forked child but exec.
 *
 * Every helper asserts (cmocka) on failure, so a test that calls them only
 * goes on when the step worked. A test marks itself passed with
 * broker_passed(); broker_cleanup() prints the broker log when it was not
 * (that is, when an assertion jumped out of the test).
 *
 * Not thread-safe, except that broker_* functions may be called from the
 * main thread while other threads use their own client handles.
 */
#ifndef HANDOFF_TEST_HARNESS_H
#define HANDOFF_TEST_HARNESS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <sys/types.h>

#include <cmocka.h>

#include "broker_proc.h"
#include "handoff.h"

/* Timings used by the tests' configs and policies. */
#define IT_READY_TIMEOUT_MS 20000 /* broker start to first answer */

/* A broker under test: the process, its folder and files (broker_proc.h,
 * tools/lib/). Tests read b->pid, b->url, b->dir, b->data, b->config and
 * b->log; the log is <dir>/broker.log, the socket ipc://<dir>/broker.sock.
 * Allocated by broker_prepare() / broker_start(), freed by
 * broker_cleanup(). */
typedef struct broker_proc broker;

/* Monotonic and wall-clock milliseconds. */
uint64_t it_now_ms(void);
uint64_t it_wall_ms(void);
void it_sleep_ms(uint32_t ms);

/*
 * Allocate a broker, create its directory and config file (config_ini may
 * be NULL or "" for none), start handoffd and wait until it answers.
 * Returns the broker (never NULL: asserts).
 */
broker *broker_start(const char *config_ini);
/* Same as broker_start() but does not spawn the broker yet. */
broker *broker_prepare(const char *config_ini);
/* broker_prepare() listening on listen_url (tcp://HOST:PORT) instead of its
 * ipc socket; NULL = the ipc socket. */
broker *broker_prepare_listen(const char *config_ini, const char *listen_url);
/* Spawn handoffd on b's directory (b must not be running) and wait until it
 * answers (asserts it does within IT_READY_TIMEOUT_MS and stays alive). */
void broker_spawn(broker *b);
/* Spawn handoffd after delay_ms (a shell sleeps, then execs the broker) and
 * return at once. Call broker_wait_ready() later. */
void broker_spawn_delayed(broker *b, uint32_t delay_ms);
/* Wait until the broker answers a ping (asserts). */
void broker_wait_ready(broker *b);
/* SIGKILL the broker and reap it. */
void broker_kill9(broker *b);
/* SIGTERM the broker, wait (up to 20 s) and assert it exited with status 0. */
void broker_term(broker *b);
/* kill -9 (hard = true) or SIGTERM, then start it again on the same data. */
void broker_restart(broker *b, bool hard);
const char *broker_url(const broker *b);
/* Whether the log contains needle. */
bool broker_log_contains(const broker *b, const char *needle);
/* Print the broker log to stderr. */
void broker_dump_log(const broker *b);
/* Mark the test passed: broker_cleanup() will not print the log. */
void broker_passed(broker *b);
/* Stop the broker if running (SIGKILL), print its log unless passed (or
 * always when $HANDOFF_TEST_VERBOSE is set), remove the directory (kept when
 * $HANDOFF_KEEP_TMP is set) and free b. NULL is ignored. */
void broker_cleanup(broker *b);

/* cmocka setup/teardown glue: *state becomes a broker started with the
 * config the group setup left in it_default_config. */
extern const char *it_default_config;
int it_setup(void **state);
int it_teardown(void **state);

/* ---- client helpers (assert on failure) -------------------------------- */

/* Connect with deadline_ms per call (0 = 15000) and a consumer name. */
handoff_client *it_connect(const broker *b, const char *consumer,
			   uint32_t deadline_ms);
/* Subscribe with the given policy values; asserts HANDOFF_OK. Returns
 * whether it was created. */
bool it_subscribe(handoff_client *c, const char *topic, const char *sub,
		  uint32_t max_attempts, uint32_t ack_deadline_ms,
		  uint32_t backoff_min_ms, uint32_t backoff_max_ms);
/* Publish one event; asserts OK; returns its id. */
uint64_t it_publish1(handoff_client *c, const char *topic, const char *payload,
		     const char *key, const char *idem);
/* Fetch up to max with wait; asserts OK. */
size_t it_fetch(handoff_client *c, const char *sub, size_t max,
		uint32_t wait_ms, handoff_delivery **out);
/* Ack one delivery, returning the item's status (asserts the call is OK). */
int it_ack1(handoff_client *c, const char *sub, uint64_t id, uint64_t token);
/* Nack one delivery, returning the item's status. */
int it_nack1(handoff_client *c, const char *sub, uint64_t id, uint64_t token,
	     uint32_t delay_ms, bool permanent, const char *reason);
/* Trace event id and return the entry for subscription sub (asserts both
 * exist). *t receives the trace to free. */
handoff_subscription_trace *it_trace_sub(handoff_client *c, uint64_t id,
					 const char *sub, handoff_trace **t);
/*
 * Assert that delay is a jittered exponential backoff after attempt k of a
 * policy backoff_min..backoff_max: with d = min(max, min * 2^(k-1)), delay
 * lies in [d/2, min(max, 1.5 d)]. That covers both jitter rules in play
 * (the brief's [d/2, d] and broker/backoff.h's [d, 1.5 d] capped at max)
 * and still proves the doubling and the ceiling.
 */
void it_assert_backoff(uint32_t delay, uint32_t k, uint32_t bmin,
		       uint32_t bmax);
/* A consumer name as the broker shows it: the name given to handoff_connect,
 * to which the client library appends ":<random hex>" per handle. */
void it_assert_consumer(const char *shown, const char *given);
/* The entry of subscription sub in trace t (asserts it is there). */
handoff_subscription_trace *it_trace_find(handoff_trace *t, const char *sub);
/* Subscription info (ready/delayed/leased/dead) of sub; asserts it exists. */
handoff_subscription_info it_sub_info(handoff_client *c, const char *sub);
/* Stats of subscription sub (copied counters, name/topic not kept). */
handoff_subscription_stats it_sub_stats(handoff_client *c, const char *sub);
/* Number of dead letters of sub (lists all pages). */
size_t it_dlq_count(handoff_client *c, const char *sub);
/* Whether id is in sub's dead-letter queue. */
bool it_dlq_has(handoff_client *c, const char *sub, uint64_t id);

/* ---- CLI --------------------------------------------------------------- */

typedef struct cli_result {
	int status; /* exit code, or 128+signal, or -1 on timeout */
	char *out;  /* stdout, NUL-terminated */
	size_t out_len;
	char *err; /* stderr, NUL-terminated */
	size_t err_len;
} cli_result;

/*
 * Run $HANDOFF_CLI --broker <url> ARGS... (NULL-terminated), feeding
 * stdin_data (may be NULL) on its stdin, capturing stdout and stderr,
 * killing it after timeout_ms (0 = 30000). Returns false when
 * $HANDOFF_CLI is not set. Free with cli_result_free().
 */
bool cli_run(const broker *b, const char *stdin_data, uint32_t timeout_ms,
	     cli_result *r, ...);
bool cli_runv(const broker *b, const char *stdin_data, uint32_t timeout_ms,
	      cli_result *r, const char *const *args);
void cli_result_free(cli_result *r);

/*
 * Spawn argv[0] (a path) with argv and our environment, stdin from
 * stdin_data (may be NULL), capture stdout/stderr, kill it after timeout_ms
 * (0 = 30000); the general form of cli_run. Returns r->status.
 */
int it_run(const char *const *argv, const char *stdin_data, uint32_t timeout_ms,
	   cli_result *r);

#endif
