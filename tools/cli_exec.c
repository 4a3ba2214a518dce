/*
 * cli_exec.c — runs `consume --exec` commands: /bin/sh -c COMMAND with
 * the payload on stdin and the delivery described in HANDOFF_* variables.
 *
 * posix_spawn (not fork) because the process already runs nanomsg's
 * threads: the child must exec at once and touch nothing else. The child's
 * stderr goes through a pipe so we can echo it and keep its last
 * non-empty line as the nack reason; one poll loop feeds stdin and drains
 * stderr so neither side can block the other. The command is waited for
 * however long it runs, even past its lease.
 *
 * The command runs in a process group of its own, so the Ctrl-C (SIGINT to
 * the terminal's foreground group) that asks us to stop does not reach it:
 * it finishes its event. Only a second stop signal kills it, group and
 * all. Being a background group on the terminal costs nothing as long as
 * the command leaves the terminal alone: its stdin is our pipe, so it never
 * reads the terminal (SIGTTIN), and it writes to it freely unless
 * `stty tostop` is set (SIGTTOU). A command stopped by either would wait
 * for ever; it is killed and fails instead.
 *
 * While the command runs, the caller's tick (consume: lease extension) is
 * called from the same loop, about every 200 ms.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

extern char **environ;

/* After the command exits, stop draining stderr after this many reads:
 * a background grandchild may hold the pipe open for ever. */
#define DRAIN_READS 256

/* ---- environment ------------------------------------------------------- */

struct env {
	char **vars; /* NULL-terminated once built */
	size_t n, cap;
	size_t first_own; /* vars[first_own..n) were allocated here */
};

static int env_push(struct env *e, char *s)
{
	if (e->n + 1 >= e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 64;
		char **nv = realloc(e->vars, cap * sizeof(*nv));

		if (!nv)
			return ENOMEM;
		e->vars = nv;
		e->cap = cap;
	}
	e->vars[e->n++] = s;
	e->vars[e->n] = NULL;
	return 0;
}

/* Add NAME=VALUE; a later value for the same NAME replaces the earlier
 * one (repeated headers: the last wins). */
static int env_set(struct env *e, const char *name, const char *value)
{
	size_t nlen = strlen(name), vlen = strlen(value);
	char *s = malloc(nlen + vlen + 2);

	if (!s)
		return ENOMEM;
	memcpy(s, name, nlen);
	s[nlen] = '=';
	memcpy(s + nlen + 1, value, vlen + 1);
	for (size_t i = e->first_own; i < e->n; i++) {
		if (strncmp(e->vars[i], s, nlen + 1) == 0) {
			free(e->vars[i]);
			e->vars[i] = s;
			return 0;
		}
	}
	if (env_push(e, s)) {
		free(s);
		return ENOMEM;
	}
	return 0;
}

static int env_set_u64(struct env *e, const char *name, uint64_t v)
{
	char buf[CLI_FMT_MAX];

	return env_set(e, name, cli_fmt_u64(v, buf));
}

/* Variables we set per delivery: never pass on stale copies. */
static bool is_delivery_var(const char *s)
{
	static const char *const names[] = {
		"HANDOFF_EVENT_ID=",
		"HANDOFF_TOPIC=",
		"HANDOFF_KEY=",
		"HANDOFF_ATTEMPT=",
		"HANDOFF_SUBSCRIPTION=",
		"HANDOFF_PUBLISHED_MS=",
		"HANDOFF_LEASE_DEADLINE_MS=",
		"HANDOFF_LEASE_TOKEN=",
		"HANDOFF_HEADER_",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strncmp(s, names[i], strlen(names[i])) == 0)
			return true;
	return false;
}

/* HANDOFF_HEADER_<NAME>: uppercased, anything not alphanumeric -> '_'. */
static int env_set_header(struct env *e, const handoff_header *h)
{
	static const char prefix[] = "HANDOFF_HEADER_";
	size_t n = strlen(h->name);
	char *name = malloc(sizeof(prefix) + n);
	int rc;

	if (!name)
		return ENOMEM;
	memcpy(name, prefix, sizeof(prefix) - 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h->name[i];

		if (c >= 'a' && c <= 'z')
			c = (unsigned char)(c - 'a' + 'A');
		else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
			c = '_';
		name[sizeof(prefix) - 1 + i] = (char)c;
	}
	name[sizeof(prefix) - 1 + n] = '\0';
	rc = env_set(e, name, h->value ? h->value : "");
	free(name);
	return rc;
}

static void env_free(struct env *e)
{
	for (size_t i = e->first_own; i < e->n; i++)
		free(e->vars[i]);
	free(e->vars);
}

static int env_build(struct env *e, const char *sub, const handoff_delivery *d)
{
	int rc = 0;

	memset(e, 0, sizeof(*e));
	for (char **p = environ; p && *p; p++)
		if (!is_delivery_var(*p) && (rc = env_push(e, *p)))
			return rc;
	e->first_own = e->n;
	rc = env_set_u64(e, "HANDOFF_EVENT_ID", d->event_id);
	rc = rc ? rc : env_set(e, "HANDOFF_TOPIC", d->topic ? d->topic : "");
	rc = rc ? rc : env_set(e, "HANDOFF_KEY", d->key ? d->key : "");
	rc = rc ? rc : env_set_u64(e, "HANDOFF_ATTEMPT", d->attempt);
	rc = rc ? rc : env_set(e, "HANDOFF_SUBSCRIPTION", sub);
	rc = rc ? rc : env_set_u64(e, "HANDOFF_PUBLISHED_MS", d->published_ms);
	rc = rc ? rc :
		  env_set_u64(e, "HANDOFF_LEASE_DEADLINE_MS",
			      d->lease_deadline_ms);
	rc = rc ? rc : env_set_u64(e, "HANDOFF_LEASE_TOKEN", d->lease_token);
	for (size_t i = 0; !rc && i < d->n_headers; i++)
		rc = env_set_header(e, &d->headers[i]);
	return rc;
}

/* ---- stderr: echo and keep the last non-empty line --------------------- */

struct line_keep {
	char cur[CLI_EXEC_LINE_MAX]; /* line being read; longer is cut */
	size_t len;
	char *last; /* CLI_EXEC_LINE_MAX bytes */
};

static void keep_end_line(struct line_keep *k)
{
	while (k->len > 0 &&
	       (k->cur[k->len - 1] == ' ' || k->cur[k->len - 1] == '\t' ||
		k->cur[k->len - 1] == '\r'))
		k->len--;
	if (k->len > 0) {
		memcpy(k->last, k->cur, k->len);
		k->last[k->len] = '\0';
	}
	k->len = 0;
}

static void keep_bytes(struct line_keep *k, const char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n')
			keep_end_line(k);
		else if (k->len < sizeof(k->cur) - 1)
			k->cur[k->len++] = buf[i];
	}
}

static void write_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, buf, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* our stderr is gone: nothing to tell */
		buf += w;
		n -= (size_t)w;
	}
}

/* ---- running ----------------------------------------------------------- */

struct pump {
	int in_fd;  /* command's stdin, -1 once closed */
	int err_fd; /* command's stderr, -1 at EOF */
	const unsigned char *payload;
	size_t len, off;
	struct line_keep keep;
	bool mid_line; /* last byte echoed was not '\n' */
};

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void pump_write(struct pump *p)
{
	ssize_t w = 0;

	if (p->off < p->len)
		w = write(p->in_fd, p->payload + p->off, p->len - p->off);
	if (w > 0)
		p->off += (size_t)w;
	/* EPIPE: the command stopped reading; that is its business. */
	if (p->off == p->len || (w < 0 && errno != EAGAIN && errno != EINTR))
		close_fd(&p->in_fd);
}

static void pump_read(struct pump *p)
{
	char buf[4096];
	ssize_t r = read(p->err_fd, buf, sizeof(buf));

	if (r > 0) {
		write_all(STDERR_FILENO, buf, (size_t)r);
		keep_bytes(&p->keep, buf, (size_t)r);
		p->mid_line = buf[r - 1] != '\n';
	} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
		close_fd(&p->err_fd);
	}
}

/* One poll round (a plain wait when both pipes are closed); returns poll's
 * result. */
static int pump_once(struct pump *p, int timeout_ms)
{
	struct pollfd fds[2];
	nfds_t n = 0;
	int r;

	if (p->in_fd >= 0)
		fds[n++] = (struct pollfd){ .fd = p->in_fd, .events = POLLOUT };
	if (p->err_fd >= 0)
		fds[n++] = (struct pollfd){ .fd = p->err_fd, .events = POLLIN };
	r = poll(fds, n, timeout_ms);
	for (nfds_t i = 0; r > 0 && i < n; i++) {
		if (!fds[i].revents)
			continue;
		if (fds[i].fd == p->in_fd)
			pump_write(p);
		else
			pump_read(p);
	}
	return r;
}

/* Kill the command's whole process group (it leads it). */
static void kill_command(struct pump *p, pid_t pid)
{
	kill(-pid, SIGKILL);
	close_fd(&p->in_fd);
}

/* A waitpid result for a command that is not done: stopped by job
 * control for using the terminal from the background. */
static bool stopped_by_terminal(int status)
{
	return WIFSTOPPED(status) &&
	       (WSTOPSIG(status) == SIGTTIN || WSTOPSIG(status) == SIGTTOU);
}

/*
 * Feed stdin and drain stderr until the command exits; *status as from
 * waitpid. A second stop signal (cli_stop_count() 2) kills it: then
 * res->interrupted. A command stopped for using the terminal is killed:
 * then res->tty_signal. tick (may be NULL) is called while it runs.
 */
static void pump_until_exit(struct pump *p, pid_t pid, int *status,
			    const struct cli_exec_tick *tick,
			    struct cli_exec_result *res)
{
	bool reaped = false, killed = false;
	int drains = 0;

	if (p->len == 0)
		close_fd(&p->in_fd);
	while (!reaped || p->err_fd >= 0) {
		int r = pump_once(p, reaped ? 0 : 200);
		pid_t w;

		if (r < 0 && errno != EINTR)
			break;
		if (reaped && (r == 0 || ++drains > DRAIN_READS))
			break;
		if (reaped)
			continue;
		if (!killed && cli_stop_count() >= 2) {
			kill_command(p, pid);
			killed = res->interrupted = true;
		}
		if (!killed && tick && tick->fn)
			tick->fn(tick->arg);
		w = waitpid(pid, status, WNOHANG | WUNTRACED);
		if (w == pid && stopped_by_terminal(*status)) {
			if (!killed)
				res->tty_signal = WSTOPSIG(*status);
			kill_command(p, pid);
			killed = true;
		} else if (w == pid && !WIFSTOPPED(*status)) {
			reaped = true;
			close_fd(&p->in_fd); /* nobody we wait for reads it */
		}
	}
	close_fd(&p->in_fd);
	close_fd(&p->err_fd);
	while (!reaped && waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
	if (p->keep.len > 0)
		keep_end_line(&p->keep); /* last line without '\n' */
	if (p->mid_line)
		write_all(STDERR_FILENO, "\n", 1); /* our log starts a line */
}

static int spawn_sh(const char *cmd, char **envp, int in_fd, int err_fd,
		    pid_t *pid)
{
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t def, none;
	int rc;

	if ((rc = posix_spawn_file_actions_init(&fa)))
		return rc;
	if ((rc = posix_spawnattr_init(&at))) {
		posix_spawn_file_actions_destroy(&fa);
		return rc;
	}
	/* We ignore SIGPIPE and catch INT/TERM; the command gets defaults. */
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	sigaddset(&def, SIGINT);
	sigaddset(&def, SIGTERM);
	sigemptyset(&none);
	rc = posix_spawn_file_actions_adddup2(&fa, in_fd, STDIN_FILENO);
	rc = rc ? rc :
		  posix_spawn_file_actions_adddup2(&fa, err_fd, STDERR_FILENO);
	rc = rc ? rc : posix_spawnattr_setsigdefault(&at, &def);
	rc = rc ? rc : posix_spawnattr_setsigmask(&at, &none);
	/* A group of its own (its id = its pid): see the top of this file. */
	rc = rc ? rc : posix_spawnattr_setpgroup(&at, 0);
	rc = rc ? rc :
		  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF |
							POSIX_SPAWN_SETSIGMASK |
							POSIX_SPAWN_SETPGROUP);
	rc = rc ? rc : posix_spawn(pid, "/bin/sh", &fa, &at, argv, envp);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	return rc;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return errno;
	return 0;
}

int cli_exec_run(const char *cmd, const char *sub, const handoff_delivery *d,
		 const struct cli_exec_tick *tick, struct cli_exec_result *res)
{
	int in[2] = { -1, -1 }, err[2] = { -1, -1 }, status = 0, rc;
	struct pump p = { .in_fd = -1, .err_fd = -1 };
	struct env e = { 0 };
	pid_t pid;

	memset(res, 0, sizeof(*res));
	signal(SIGPIPE, SIG_IGN); /* a command that ignores stdin: EPIPE */
	if ((rc = env_build(&e, sub, d)))
		goto out;
	/* O_CLOEXEC: the child keeps only the dup2'd copies. */
	if (pipe2(in, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
		rc = errno;
		goto out;
	}
	if ((rc = set_nonblock(in[1])) || (rc = set_nonblock(err[0])))
		goto out;
	if ((rc = spawn_sh(cmd, e.vars, in[0], err[1], &pid)))
		goto out;
	close_fd(&in[0]);
	close_fd(&err[1]);
	p.in_fd = in[1], in[1] = -1;
	p.err_fd = err[0], err[0] = -1;
	p.payload = d->payload;
	p.len = d->payload_len;
	p.keep.last = res->last_line;
	pump_until_exit(&p, pid, &status, tick, res);
	if (WIFSIGNALED(status)) {
		res->signaled = true;
		res->status = WTERMSIG(status);
	} else {
		res->status = WEXITSTATUS(status);
	}
out:
	for (int i = 0; i < 2; i++) {
		close_fd(&in[i]);
		close_fd(&err[i]);
	}
	env_free(&e);
	return rc;
}
