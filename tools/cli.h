/*
 * cli.h — private interfaces shared by the source files of the `handoff`
 * command-line tool: the run context, exit codes, option plumbing, and the
 * output helpers (escaping, JSON, tables, times). Not installed.
 *
 * The CLI talks to the broker only through the public client API in
 * handoff.h; nothing here knows about the wire format.
 */
#ifndef HANDOFF_TOOLS_CLI_H
#define HANDOFF_TOOLS_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "handoff.h"

/*
 * Exit codes (also printed by `handoff --help`; the README copies them):
 *   0  success
 *   1  the broker reported an error not listed below, or an internal error
 *   2  usage error (bad option or argument, missing --yes)
 *   3  not found (subscription, event or dead letter)
 *   4  conflict (a subscription with another topic or policy; a backup of
 *      that name exists or one is running)
 *   5  broker unreachable or timed out (also: still shutting down at the
 *      deadline)
 *   6  storage full, or a broker/library size or count limit exceeded
 *   7  publish to a topic that has no subscription
 *   8  lease lost: consume's ack/nack, or extend, came after the lease
 *      ended (the event will be delivered again)
 *   9  partially done (dlq replay/purge: some ids were not in the queue)
 *  10  permission denied (access control)
 *  11  signed requests refused as stale until the deadline: this host's
 *      clock differs from the broker's and the broker did not tell its
 *      own (the message gives the difference when known)
 *  12  await (publish --await-acked): a subscription dead-lettered the
 *      event (or it was purged, or the subscription deleted)
 *  13  await (publish --await-acked): not acked by all within the timeout
 *  20  health: the broker is live but not ready
 *  21  health: the broker is not live (its store is unusable)
 */
enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_ERROR = 1,
	CLI_EXIT_USAGE = 2,
	CLI_EXIT_NOTFOUND = 3,
	CLI_EXIT_CONFLICT = 4,
	CLI_EXIT_UNREACHABLE = 5,
	CLI_EXIT_FULL = 6,
	CLI_EXIT_NOSUBS = 7,
	CLI_EXIT_LEASELOST = 8,
	CLI_EXIT_PARTIAL = 9,
	CLI_EXIT_DENIED = 10,
	CLI_EXIT_CLOCK = 11,
	CLI_EXIT_DEADLETTERED = 12,
	CLI_EXIT_NOTACKED = 13,
	/* `handoff health` only (cli_health.c); 20 and up stay clear of the
	 * general codes above */
	CLI_EXIT_NOTREADY = 20,
	CLI_EXIT_NOTLIVE = 21,
};

/* Option parsing result meaning "help was printed: exit 0 now". */
#define CLI_STOP (-1)

/* getopt_long values of the options every command accepts. */
enum {
	OPT_BROKER = 1000,
	OPT_TIMEOUT,
	OPT_JSON,
	OPT_VERSION,
	OPT_AUTH_KEY,
	OPT_AUTH_SECRET,
	OPT_LOCAL = 1100, /* first value free for a command's own options */
};

#define CLI_GLOBAL_OPTIONS                                             \
	{ "broker", required_argument, NULL, OPT_BROKER },             \
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },   \
		{ "json", no_argument, NULL, OPT_JSON },               \
		{ "auth-key", required_argument, NULL, OPT_AUTH_KEY }, \
		{ "auth-secret-file", required_argument, NULL,         \
		  OPT_AUTH_SECRET },                                   \
	{                                                              \
		"help", no_argument, NULL, 'h'                         \
	}

/* Text appended to every command's help. */
extern const char cli_global_help[];

struct cli_command;

struct cli_ctx {
	const char *url;      /* --broker, $HANDOFF_BROKER, or default */
	uint32_t timeout_ms;  /* --timeout: deadline of one broker call */
	bool json;	      /* --json */
	const char *consumer; /* consume --name; NULL = library default */
	const char *key_id;   /* --auth-key or $HANDOFF_AUTH_KEY */
	/* --auth-secret-file, $HANDOFF_AUTH_SECRET_FILE */
	const char *secret_file;
	const struct cli_command *cmd; /* the command running (for messages) */
	handoff_client *client;	       /* set by cli_connect() */
};

typedef int (*cli_run_fn)(struct cli_ctx *ctx, int argc, char **argv);

struct cli_command {
	const char *name;    /* "publish", "dlq list" */
	const char *summary; /* one line for the command list */
	const char *help;    /* full help text, ends with a newline */
	cli_run_fn run;	     /* argv[0] is the command's own name */
};

/* The commands, defined in their files. */
extern const struct cli_command cli_cmd_publish, cli_cmd_subscribe,
	cli_cmd_unsubscribe, cli_cmd_subscriptions, cli_cmd_consume,
	cli_cmd_extend, cli_cmd_pause, cli_cmd_resume, cli_cmd_dlq,
	cli_cmd_trace, cli_cmd_stats, cli_cmd_audit, cli_cmd_backup,
	cli_cmd_await;
extern const struct cli_command cli_cmd_health;
extern const struct cli_command cli_cmd_dlq_list, cli_cmd_dlq_show,
	cli_cmd_dlq_replay, cli_cmd_dlq_purge;

/* ---- handoff.c: running commands --------------------------------------- */

/* Print cmd's help (plus the global options) on f. */
void cli_print_help(const struct cli_command *cmd, FILE *f);
/* Run cmd with argv[0] = its name: set ctx->cmd, then call it. */
int cli_run(struct cli_ctx *ctx, const struct cli_command *cmd, int argc,
	    char **argv);
/*
 * Parse argv with getopt_long (permuting, so options may follow operands)
 * against longopts, which must end with CLI_GLOBAL_OPTIONS and a zero
 * entry. Options the command does not know itself are handed back as the
 * return value; this helper handles the global ones. Use it as
 *   while ((opt = cli_getopt(ctx, argc, argv, longopts, &rc)) > 0)
 * where a return of 0 means "done; *rc is 0 to go on, CLI_STOP after
 * --help, or an exit code".
 */
int cli_getopt(struct cli_ctx *ctx, int argc, char **argv,
	       const struct option *longopts, int *rc);
/* Connect ctx->client if not yet done. 0 or an exit code (message printed). */
int cli_connect(struct cli_ctx *ctx);
/* Map a handoff_error to an exit code. */
int cli_exit_code(int err);
/* Print "handoff: WHAT: strerror(err)[: broker message]" and return the
 * exit code for err. */
int cli_fail(struct cli_ctx *ctx, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Print "handoff CMD: MESSAGE" and a hint to --help; return 2. */
int cli_usage(struct cli_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Print "handoff: MESSAGE" on stderr. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Flush stdout; on a write error say so and return 1, else rc. */
int cli_finish(int rc);

/* ---- cli_await.c: completion receipts ---------------------------------- */

struct cli_json;
/* r as one JSON object (into an open document) or as text lines on stdout
 * (timeout_ms: the wait asked for, named when it ran out). */
void cli_await_json(struct cli_json *j, const handoff_await_reply *r);
void cli_await_text(const handoff_await_reply *r, uint32_t timeout_ms);
/* 0 all acked, CLI_EXIT_DEADLETTERED, CLI_EXIT_NOTACKED. */
int cli_await_exit_code(const handoff_await_reply *r);

/* ---- cli_util.c: parsing, input, signals ------------------------------- */

/* Strict decimal without sign or spaces. 0, EINVAL or ERANGE. */
int cli_parse_u64(const char *s, uint64_t *out);
int cli_parse_u32(const char *s, uint32_t *out);
/* A duration that fits in uint32 ms. 0, EINVAL or ERANGE. */
int cli_parse_duration32(const char *s, uint32_t *ms);
/* A point in time: unix ms (digits only), ISO-8601 UTC
 * ("2024-05-01T12:00:00Z", optional ".mmm", or a date alone), or a
 * duration meaning "that long ago" ("1h"). 0 or EINVAL/ERANGE. */
int cli_parse_time(const char *s, uint64_t now_ms, uint64_t *out);
/* Option argument helpers: 0, or print a usage error and return 2. */
int cli_opt_u64(struct cli_ctx *ctx, const char *name, const char *arg,
		uint64_t *out);
int cli_opt_u32(struct cli_ctx *ctx, const char *name, const char *arg,
		uint32_t *out);
int cli_opt_duration(struct cli_ctx *ctx, const char *name, const char *arg,
		     uint32_t *ms);
int cli_opt_time(struct cli_ctx *ctx, const char *name, const char *arg,
		 uint64_t *out);
/* After a connect: warn on stderr (once) when the library had to sign with
 * the broker's clock because ours differs from it by 1 s or more. */
void cli_clock_note(struct cli_ctx *ctx);
/* For HANDOFF_ESTALE: print " (clock differs from the broker's ...)" on f,
 * what is known of the difference. */
void cli_clock_hint(FILE *f, const struct cli_ctx *ctx);
/* Wall clock and monotonic clock in ms. */
uint64_t cli_now_ms(void);
uint64_t cli_mono_ms(void);
/* Sleep ms (restarting after signals unless a stop was requested). */
void cli_sleep_ms(uint64_t ms);
/* Read fd to EOF into a new buffer (binary-safe), at most cap bytes.
 * 0, E2BIG past cap, ENOMEM, or errno of read(). */
int cli_read_all(int fd, size_t cap, unsigned char **buf, size_t *len);
/* SIGINT/SIGTERM set a flag; a second one kills as usual, or with
 * keep_second is counted too (for consume --exec, which then stops its
 * command) and a third one kills. Signals are counted, not queued: call
 * once, before anything waits on them. */
void cli_install_stop_handlers(bool keep_second);
bool cli_stop_requested(void);
/* How many stop signals came (0, 1, or 2 with keep_second). */
unsigned cli_stop_count(void);
/* Die by the last stop signal received (default action), as an
 * interrupted program does; stdout is flushed first. Never returns. */
_Noreturn void cli_stop_die(void);

/* ---- cli_out.c: output helpers ---------------------------------------- */

/* Escape flags: also escape ' ' (for fields not last on a line). */
#define CLI_ESC_SPACE 1u

/* Write p[0..n) to f readable on one line: printable ASCII and valid
 * UTF-8 as is; \\ \n \r \t; other bytes as \xHH. */
void cli_put_escaped(FILE *f, const void *p, size_t n, unsigned flags);
void cli_put_escaped_str(FILE *f, const char *s, unsigned flags);
/* The same into a new string (free it); NULL on ENOMEM. */
char *cli_escape(const void *p, size_t n, unsigned flags);
/* Whether p[0..n) is valid UTF-8 (no overlongs, surrogates, > U+10FFFF). */
bool cli_utf8_valid(const void *p, size_t n);
/* Base64 (RFC 4648, padded) of p[0..n) into a new string; NULL on ENOMEM. */
char *cli_base64(const void *p, size_t n);

/* Formatting into caller buffers of at least CLI_FMT_MAX bytes. */
#define CLI_FMT_MAX 48
/* "2024-05-01T12:00:00.123Z" (UTC); "-" for 0. */
const char *cli_fmt_time(uint64_t ms, char *buf);
/* Exact, in the largest unit that divides it: "30s", "1m", "250ms". */
const char *cli_fmt_duration(uint64_t ms, char *buf);
/* Compound and rounded to seconds: "3d4h5m6s". */
const char *cli_fmt_uptime(uint64_t ms, char *buf);
/* "512 B", "1.5 MiB". */
const char *cli_fmt_bytes(uint64_t bytes, char *buf);
const char *cli_fmt_u64(uint64_t v, char *buf);
const char *cli_fmt_double(double v, char *buf);

/*
 * JSON output through jansson, in the order of a streaming writer: begin an
 * object, key, value, ..., end it; cli_json_newline then writes the
 * document (compact, one line) and resets. Nothing is written before that,
 * and nothing at all when any step failed (out of memory, a value without
 * a key, nesting past CLI_JSON_MAX_DEPTH): the document is dropped with a
 * warning and cli_json_failed() turns true (cli_finish then exits 1), so a
 * field never silently goes missing. Numbers are JSON integers; a u64 over
 * INT64_MAX (no field today) would be written as its decimal string.
 * Strings are text: invalid UTF-8 bytes become U+FFFD (callers that must
 * keep bytes use base64, as cli_json_kv_payload does).
 */
#define CLI_JSON_MAX_DEPTH 16
struct json_t;
struct cli_json {
	FILE *f;
	struct json_t *root;			  /* the document, owned */
	struct json_t *stack[CLI_JSON_MAX_DEPTH]; /* open containers */
	unsigned depth;
	unsigned dead_opens; /* opens that failed: their closes are no-ops */
	char *key;	     /* pending key, owned */
	int err;	     /* first failure, 0 if none */
};
void cli_json_init(struct cli_json *j, FILE *f);
/* Drop the document without writing it (on an error path). */
void cli_json_discard(struct cli_json *j);
void cli_json_begin_object(struct cli_json *j);
void cli_json_end_object(struct cli_json *j);
void cli_json_begin_array(struct cli_json *j);
void cli_json_end_array(struct cli_json *j);
/* Write the document and a newline (JSON lines), or drop it on failure;
 * then reset for the next one. */
void cli_json_newline(struct cli_json *j);
/* Whether any document was dropped or failed to write. */
bool cli_json_failed(void);
void cli_json_key(struct cli_json *j, const char *key);
/* A string value; invalid UTF-8 bytes become U+FFFD. NULL writes null. */
void cli_json_string(struct cli_json *j, const char *s);
void cli_json_stringn(struct cli_json *j, const void *p, size_t n);
void cli_json_u64(struct cli_json *j, uint64_t v);
void cli_json_double(struct cli_json *j, double v);
void cli_json_bool(struct cli_json *j, bool v);
void cli_json_null(struct cli_json *j);
/* key + value shorthands */
void cli_json_kv_str(struct cli_json *j, const char *key, const char *s);
void cli_json_kv_u64(struct cli_json *j, const char *key, uint64_t v);
void cli_json_kv_double(struct cli_json *j, const char *key, double v);
void cli_json_kv_bool(struct cli_json *j, const char *key, bool v);
/* "KEY_ms": ms and "KEY": ISO-8601 (null when ms is 0). */
void cli_json_kv_time(struct cli_json *j, const char *key, uint64_t ms);
/* "payload_bytes": n and either "payload": text (valid UTF-8) or
 * "payload_base64": base64. 0 or ENOMEM. */
int cli_json_kv_payload(struct cli_json *j, const void *p, size_t n);
/* "headers": {"name": "value", ...} for the headers whose name and value
 * are UTF-8; the others (if any) in "headers_binary": [{"name" or
 * "name_base64", "value" or "value_base64"}, ...] (base64 for the part
 * that is not UTF-8), in their order. 0 or ENOMEM. */
int cli_json_kv_headers(struct cli_json *j, const handoff_header *h, size_t n);
/* "history": [{attempt, consumer, leased, ended, outcome, error,
 * retry_delay_ms}, ...] */
void cli_json_kv_history(struct cli_json *j, const handoff_attempt *a,
			 size_t n);
/* "policy": {max_attempts, ack_deadline_ms, backoff_min_ms, ...} */
void cli_json_kv_policy(struct cli_json *j, const handoff_policy *p);
/* "paused": bool, and while paused "paused_reason", "paused_by",
 * "paused_since" (time). */
void cli_json_kv_pause(struct cli_json *j, const handoff_pause_state *p);
/* "  paused NAME since TIME by KEY: REASON" lines for the paused ones of
 * n entries, each found at (char *)base + i * stride (name at name_off,
 * pause at pause_off). */
void cli_print_pauses(FILE *f, const void *base, size_t n, size_t stride,
		      size_t name_off, size_t pause_off);

/* Aligned text tables; every cell is escaped when added. */
struct cli_table {
	size_t ncols;
	const char *const *head; /* column titles */
	unsigned right;		 /* bit i: right-align column i */
	char **cells;		 /* nrows * ncols, owned */
	size_t nrows, cap;
	int err; /* ENOMEM once an add failed */
};
void cli_table_init(struct cli_table *t, const char *const *head, size_t ncols,
		    unsigned right);
/* Add a row of t->ncols strings (NULL shows as "-"). 0 or ENOMEM. */
int cli_table_add(struct cli_table *t, ...);
/* Print with a header line, each line prefixed by indent. 0 or ENOMEM
 * (when an earlier add failed). */
int cli_table_print(struct cli_table *t, FILE *f, const char *indent);
void cli_table_free(struct cli_table *t);
/* Print an attempt history as a table. 0 or ENOMEM. */
int cli_print_history(FILE *f, const handoff_attempt *a, size_t n,
		      const char *indent);
/* "max_attempts=5 ack_deadline=30s backoff=1s..1m" */
void cli_print_policy(FILE *f, const handoff_policy *p);

/* ---- cli_exec.c: running a consumer command ---------------------------- */

#define CLI_EXEC_LINE_MAX 1024

struct cli_exec_result {
	bool signaled;	  /* the command was killed by a signal */
	int status;	  /* exit status, or the signal number */
	bool interrupted; /* killed by us on a second stop signal */
	int tty_signal;	  /* killed by us: it was stopped by this signal
			   * (SIGTTIN/SIGTTOU) for using the terminal */
	char last_line[CLI_EXEC_LINE_MAX]; /* last non-empty stderr line */
};

/* Called by cli_exec_run about every 200 ms while the command runs (not
 * once it has exited or was killed), from the calling thread. */
struct cli_exec_tick {
	void (*fn)(void *arg);
	void *arg;
};

/*
 * Run cmd through /bin/sh -c for delivery d of subscription sub: payload
 * on its stdin, HANDOFF_* variables in its environment, its stderr echoed
 * to ours (the last non-empty line kept), its stdout shared with ours, in
 * a process group of its own so that a Ctrl-C meant for us does not reach
 * it. Waits for the command however long it takes; a second stop signal
 * (cli_stop_count() == 2, see cli_install_stop_handlers) kills its group
 * (res->interrupted). tick (may be NULL) runs while it waits. 0 when
 * the command ran (see res), else an errno value (pipe, spawn).
 */
int cli_exec_run(const char *cmd, const char *sub, const handoff_delivery *d,
		 const struct cli_exec_tick *tick, struct cli_exec_result *res);

#endif /* HANDOFF_TOOLS_CLI_H */
