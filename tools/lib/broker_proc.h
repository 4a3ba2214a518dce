/*
 * broker_proc.h — a real handoffd process on a folder of its own, for the
 * programs that drive one: the integration harness (tests/integration),
 * handoff-torture (tests/torture) and handoff-bench (tools/bench).
 *
 * The folder holds the config broker_proc_init writes (handoffd.ini), the
 * broker's data/ (created by the broker unless the caller does it), its
 * log (stdout and stderr of every start, appended) and its ipc socket.
 * The broker is started as
 *
 *   EXE --data DIR/data --listen URL --config DIR/handoffd.ini
 *
 * with posix_spawn, never fork (callers hold nanomsg sockets, whose threads
 * a forked child would not have): stdin from /dev/null, the caller's
 * descriptors >= 3 closed, an empty signal mask, TERM/INT/PIPE/HUP/CHLD at
 * their defaults, in a process group of its own (a Ctrl-C on the terminal
 * reaches only the caller, which stops the broker itself). It talks to the
 * broker only through the process, its files and client/handoff.h (the
 * readiness ping).
 *
 * Every spawned broker not yet reaped is kept in a process-wide list so
 * that a fatal-signal handler or atexit() can kill it
 * (broker_proc_kill_all) and name its log (broker_proc_name_live_logs).
 *
 * Errors: functions return 0 or an errno value (broker_proc_init also
 * writes a message to err); nothing aborts. Ownership: the struct is the
 * caller's and must not move in memory while its broker runs (the live
 * list keeps its log path); nothing is allocated that outlives a call.
 * Threads: one struct belongs to one thread at a time; the live list is
 * safe from any thread and from signal handlers.
 */
#ifndef HANDOFF_BROKER_PROC_H
#define HANDOFF_BROKER_PROC_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Sizes of the paths kept: an ipc socket path must fit in 108 bytes
 * anyway, so the folder is never long. */
#define BROKER_PROC_EXE_LEN 1024
#define BROKER_PROC_DIR_LEN 256
#define BROKER_PROC_PATH    300 /* a file in the folder */
#define BROKER_PROC_URL_LEN 320

/* The names of the folder's files; NULL members take the defaults. */
struct broker_proc_files {
	const char *sock_name; /* ipc socket in the folder: "b.sock" */
	const char *log_name;  /* the log in the folder: "broker.log" */
	const char *listen;    /* a URL to listen on instead of the ipc
				  socket (tcp://127.0.0.1:PORT): no socket
				  file then */
};

struct broker_proc {
	char exe[BROKER_PROC_EXE_LEN];
	char dir[BROKER_PROC_DIR_LEN];
	char data[BROKER_PROC_PATH];   /* DIR/data */
	char config[BROKER_PROC_PATH]; /* DIR/handoffd.ini */
	char log[BROKER_PROC_PATH];
	char sock[BROKER_PROC_PATH]; /* the ipc socket; "" with a tcp URL */
	char url[BROKER_PROC_URL_LEN];
	pid_t pid;	  /* 0 when not running (reaped) */
	int status;	  /* wait status of the last exit */
	bool exited;	  /* the last spawned process has exited */
	unsigned starts;  /* spawns so far */
	uint64_t log_off; /* size of the log at the last spawn */
	/* CLOCK_MONOTONIC ns of the last start (0 until reached): */
	uint64_t spawn_ns;     /* just before posix_spawn */
	uint64_t listening_ns; /* its socket file was seen */
	uint64_t ready_ns;     /* it answered a ping */
};

/* CLOCK_MONOTONIC in ns (the clock of the *_ns fields). */
uint64_t broker_proc_now_ns(void);

/* mkdtemp "PARENT/PREFIXXXXXXX" into out. 0, or errno (ENAMETOOLONG when
 * it does not fit). */
int broker_proc_mkdtemp(const char *parent, const char *prefix, char *out,
			size_t outlen);
/* rm -r dir; best effort (errors are ignored). */
void broker_proc_remove_dir(const char *dir);

/* Set b up on dir (created if missing) for exe: paths filled, config_text
 * (NULL = empty) written to DIR/handoffd.ini. files may be NULL. 0, or an
 * errno with err filled (a path too long, an ipc socket path of 100 bytes
 * or more — nanomsg asserts on those — or the folder or config). */
int broker_proc_init(struct broker_proc *b, const char *exe, const char *dir,
		     const struct broker_proc_files *files,
		     const char *config_text, char *err, size_t errlen);

/* Append one line (a marker: the caller's format, newline added) to the
 * log. 0 or errno. */
int broker_proc_log_note(const struct broker_proc *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

struct broker_proc_spawn {
	/* "NAME=value" entries overriding or adding to our environment,
	 * NULL-terminated; NULL for none. For this process only. */
	char *const *extra_env;
	/* > 0: a shell sleeps this long and then execs handoffd (the pid
	 * stays the broker's); the call returns at once. */
	uint32_t delay_ms;
};

/* Start handoffd on b (which must not be running); opts may be NULL. A
 * stale socket file is removed first, so the new broker cannot look ready
 * before it listens. 0 or errno. */
int broker_proc_spawn(struct broker_proc *b,
		      const struct broker_proc_spawn *opts);

enum broker_proc_wait {
	BROKER_PROC_READY = 0,
	BROKER_PROC_EXITED = 1,	 /* b->status says how */
	BROKER_PROC_TIMEOUT = 2, /* still running (or *stop was set) */
};

/* Poll for the ipc socket file every millisecond, up to timeout_ms or
 * until *stop (may be NULL) is set; sets b->listening_ns. READY at once
 * when the broker listens on tcp. */
enum broker_proc_wait
broker_proc_wait_listening(struct broker_proc *b, uint32_t timeout_ms,
			   const volatile sig_atomic_t *stop);

/* How to ping: handoff_connect with these options until one answers. */
struct broker_proc_ping {
	const char *consumer_name;
	uint32_t deadline_ms;	     /* of one handoff_connect */
	uint32_t attempt_timeout_ms; /* of one attempt in it */
	uint32_t pause_ms;	     /* between two failed connects */
};

/* Wait up to timeout_ms for the first answered ping: the socket file first
 * (broker_proc_wait_listening, so nanomsg's reconnect interval does not
 * blur the figure), then pings. Sets b->ready_ns; *last_rc (may be NULL)
 * gets the last handoff_connect result (HANDOFF_OK when ready, -1 when
 * none was tried). */
enum broker_proc_wait
broker_proc_wait_ready(struct broker_proc *b, uint32_t timeout_ms,
		       const struct broker_proc_ping *ping, int *last_rc);

/* Whether the broker still runs; reaps it (b->status, b->exited) if not. */
bool broker_proc_alive(struct broker_proc *b);
/* Wait up to timeout_ms for it to exit by itself, polling every ms; true
 * when it has (or was not running). */
bool broker_proc_wait_exit(struct broker_proc *b, uint32_t timeout_ms);
/* SIGKILL and reap. 0 (also when not running), or the errno of kill or
 * waitpid. */
int broker_proc_kill9(struct broker_proc *b);
/* Send sig and wait up to timeout_ms for the exit: true when it exited
 * (b->status), false when it did not (it is then SIGKILLed and reaped). */
bool broker_proc_signal(struct broker_proc *b, int sig, uint32_t timeout_ms);
/* broker_proc_signal(b, SIGTERM, timeout_ms) */
bool broker_proc_term(struct broker_proc *b, uint32_t timeout_ms);

/* Whether the log contains needle: all of it, or only what was written
 * since the last spawn. */
bool broker_proc_log_contains(const struct broker_proc *b, const char *needle,
			      bool since_spawn);
/* The whole log, malloc'd and NUL-terminated (*len may be NULL); NULL
 * when unreadable. */
char *broker_proc_log_read(const struct broker_proc *b, size_t *len);

/* SIGKILL every broker spawned here and not yet reaped. Async-signal-safe
 * (for a fatal-signal handler, or atexit). */
void broker_proc_kill_all(void);
/* Write "PREFIX<log path>\n" to fd for every broker still running.
 * Async-signal-safe. */
void broker_proc_name_live_logs(int fd, const char *prefix);

/* environ with the "K=V" entries of extra (NULL-terminated, may be NULL)
 * overriding same-named ones, then added (may be NULL). The array is
 * malloc'd (free it), the strings are borrowed; NULL when out of memory.
 * For spawning any child with a few variables changed. */
char **broker_proc_env(char *const extra[], char *added);

#endif
