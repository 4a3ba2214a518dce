/* broker_proc.c — see broker_proc.h. */
#include "broker_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "handoff.h"

extern char **environ;

/* ---- the live list --------------------------------------------------------
 * pid and log path of every broker spawned and not reaped, read by signal
 * handlers: lock-free atomics only. A full list only loses the cleanup. */

#define LIVE_MAX 64
static _Atomic pid_t live_pid[LIVE_MAX];
static const char *_Atomic live_log[LIVE_MAX];

static void live_add(pid_t pid, const char *log)
{
	for (int i = 0; i < LIVE_MAX; i++) {
		pid_t free_slot = 0;
		if (atomic_compare_exchange_strong(&live_pid[i], &free_slot,
						   pid)) {
			atomic_store(&live_log[i], log);
			return;
		}
	}
}

static void live_remove(pid_t pid)
{
	for (int i = 0; i < LIVE_MAX; i++)
		if (atomic_load(&live_pid[i]) == pid) {
			atomic_store(&live_log[i], NULL);
			atomic_store(&live_pid[i], 0);
		}
}

void broker_proc_kill_all(void)
{
	for (int i = 0; i < LIVE_MAX; i++) {
		pid_t pid = atomic_load(&live_pid[i]);
		if (pid > 0)
			kill(pid, SIGKILL);
	}
}

void broker_proc_name_live_logs(int fd, const char *prefix)
{
	for (int i = 0; i < LIVE_MAX; i++) {
		const char *log = atomic_load(&live_log[i]);
		if (atomic_load(&live_pid[i]) > 0 && log) {
			ssize_t w = write(fd, prefix, strlen(prefix));
			w = write(fd, log, strlen(log));
			w = write(fd, "\n", 1);
			(void)w;
		}
	}
}

/* ---- time and files -------------------------------------------------------- */

uint64_t broker_proc_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(uint32_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int broker_proc_mkdtemp(const char *parent, const char *prefix, char *out,
			size_t outlen)
{
	int n = snprintf(out, outlen, "%s/%sXXXXXX", parent, prefix);
	if (n < 0 || (size_t)n >= outlen)
		return ENAMETOOLONG;
	return mkdtemp(out) ? 0 : errno;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

void broker_proc_remove_dir(const char *dir)
{
	if (dir == NULL || dir[0] == '\0')
		return;
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static bool fmt_path(char *out, size_t outlen, const char *fmt, const char *a,
		     const char *b)
{
	int n = snprintf(out, outlen, fmt, a, b);
	return n >= 0 && (size_t)n < outlen;
}

static int write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return errno;
	int rc = fputs(text, f) < 0 ? EIO : 0;
	if (fclose(f) && !rc)
		rc = errno;
	return rc;
}

int broker_proc_init(struct broker_proc *b, const char *exe, const char *dir,
		     const struct broker_proc_files *files,
		     const char *config_text, char *err, size_t errlen)
{
	const char *sock_name =
		files && files->sock_name ? files->sock_name : "b.sock";
	const char *log_name =
		files && files->log_name ? files->log_name : "broker.log";
	const char *listen = files ? files->listen : NULL;
	bool fit;

	memset(b, 0, sizeof(*b));
	fit = fmt_path(b->exe, sizeof(b->exe), "%s%s", exe, "") &&
	      fmt_path(b->dir, sizeof(b->dir), "%s%s", dir, "") &&
	      fmt_path(b->data, sizeof(b->data), "%s/%s", dir, "data") &&
	      fmt_path(b->config, sizeof(b->config), "%s/%s", dir,
		       "handoffd.ini") &&
	      fmt_path(b->log, sizeof(b->log), "%s/%s", dir, log_name);
	if (fit && listen)
		fit = fmt_path(b->url, sizeof(b->url), "%s%s", listen, "");
	else if (fit)
		fit = fmt_path(b->sock, sizeof(b->sock), "%s/%s", dir,
			       sock_name) &&
		      fmt_path(b->url, sizeof(b->url), "%s%s", "ipc://",
			       b->sock);
	if (!fit) {
		snprintf(err, errlen, "path too long under %s", dir);
		return ENAMETOOLONG;
	}
	/* nanomsg asserts on an ipc path that does not fit sun_path */
	if (strlen(b->sock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		snprintf(err, errlen, "socket path %s is too long", b->sock);
		return ENAMETOOLONG;
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		int rc = errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(rc));
		return rc;
	}
	int rc = write_text(b->config, config_text ? config_text : "");
	if (rc)
		snprintf(err, errlen, "%s: %s", b->config, strerror(rc));
	return rc;
}

int broker_proc_log_note(const struct broker_proc *b, const char *fmt, ...)
{
	FILE *f = fopen(b->log, "a");
	if (!f)
		return errno;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	return fclose(f) ? errno : 0;
}

char *broker_proc_log_read(const struct broker_proc *b, size_t *len)
{
	FILE *f = fopen(b->log, "r");
	if (!f)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		goto fail;
	for (;;) {
		if (n + 2048 > cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				goto fail;
			buf = nb;
			cap *= 2;
		}
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		if (got == 0)
			break;
		n += got;
	}
	fclose(f);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
fail:
	free(buf);
	fclose(f);
	return NULL;
}

bool broker_proc_log_contains(const struct broker_proc *b, const char *needle,
			      bool since_spawn)
{
	size_t len = 0;
	char *text = broker_proc_log_read(b, &len);
	if (!text)
		return false;
	size_t from = since_spawn ? b->log_off : 0;
	bool found = from <= len && strstr(text + from, needle);
	free(text);
	return found;
}

/* ---- spawning ---------------------------------------------------------------- */

char **broker_proc_env(char *const extra[], char *added)
{
	size_t n = 0, k = 0;
	while (environ[n])
		n++;
	while (extra && extra[k])
		k++;
	char **env = calloc(n + k + 2, sizeof(char *));
	if (!env)
		return NULL;
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		bool overridden = false;
		for (size_t j = 0; j < k && !overridden; j++) {
			const char *eq = strchr(extra[j], '=');
			size_t nl =
				eq ? (size_t)(eq - extra[j]) : strlen(extra[j]);
			overridden = strncmp(environ[i], extra[j], nl) == 0 &&
				     environ[i][nl] == '=';
		}
		if (!overridden)
			env[m++] = environ[i];
	}
	for (size_t j = 0; j < k; j++)
		env[m++] = extra[j];
	if (added)
		env[m++] = added;
	env[m] = NULL;
	return env;
}

static int spawn_attrs(posix_spawn_file_actions_t *fa, posix_spawnattr_t *attr,
		       const char *log)
{
	int rc = posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY,
						  0);
	if (!rc)
		rc = posix_spawn_file_actions_addopen(
			fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (!rc)
		rc = posix_spawn_file_actions_adddup2(fa, 1, 2);
#if defined(__GLIBC__) && \
	(__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
	/* keep our nanomsg sockets out of the broker */
	if (!rc)
		rc = posix_spawn_file_actions_addclosefrom_np(fa, 3);
#endif
	sigset_t none, dfl;
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGHUP);
	sigaddset(&dfl, SIGCHLD);
	if (!rc)
		rc = posix_spawnattr_setsigmask(attr, &none);
	if (!rc)
		rc = posix_spawnattr_setsigdefault(attr, &dfl);
	if (!rc)
		rc = posix_spawnattr_setpgroup(attr, 0);
	if (!rc)
		rc = posix_spawnattr_setflags(
			attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
				      POSIX_SPAWN_SETPGROUP);
	return rc;
}

int broker_proc_spawn(struct broker_proc *b,
		      const struct broker_proc_spawn *opts)
{
	char *const *extra_env = opts ? opts->extra_env : NULL;
	uint32_t delay_ms = opts ? opts->delay_ms : 0;
	char delay_env[64];
	struct stat sb;
	int rc;

	if (b->pid > 0)
		return EBUSY;
	char *argv_direct[] = { b->exe, "--data",   b->data,   "--listen",
				b->url, "--config", b->config, NULL };
	/* sh -c 'sleep S; exec "$0" "$@"' EXE ARGS...: the pid stays the
	 * broker's because the shell execs it. */
	char *argv_delayed[] = { "/bin/sh",
				 "-c",
				 "sleep \"$BROKER_PROC_DELAY\"; "
				 "exec \"$0\" \"$@\"",
				 b->exe,
				 "--data",
				 b->data,
				 "--listen",
				 b->url,
				 "--config",
				 b->config,
				 NULL };
	snprintf(delay_env, sizeof(delay_env), "BROKER_PROC_DELAY=%u.%03u",
		 delay_ms / 1000, delay_ms % 1000);

	if (b->sock[0])
		unlink(b->sock);
	b->starts++;
	b->log_off = stat(b->log, &sb) == 0 ? (uint64_t)sb.st_size : 0;
	b->exited = false;
	b->status = 0;
	b->spawn_ns = b->listening_ns = b->ready_ns = 0;

	char **env = broker_proc_env(extra_env, delay_ms ? delay_env : NULL);
	if (!env)
		return ENOMEM;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	if ((rc = posix_spawn_file_actions_init(&fa)))
		goto out_env;
	if ((rc = posix_spawnattr_init(&attr)))
		goto out_fa;
	rc = spawn_attrs(&fa, &attr, b->log);
	if (!rc) {
		pid_t pid = 0;
		b->spawn_ns = broker_proc_now_ns();
		rc = posix_spawn(&pid, delay_ms ? "/bin/sh" : b->exe, &fa,
				 &attr, delay_ms ? argv_delayed : argv_direct,
				 env);
		if (!rc) {
			b->pid = pid;
			live_add(pid, b->log);
		}
	}
	posix_spawnattr_destroy(&attr);
out_fa:
	posix_spawn_file_actions_destroy(&fa);
out_env:
	free(env);
	return rc;
}

/* ---- waiting ----------------------------------------------------------------- */

static void reaped(struct broker_proc *b, int status)
{
	live_remove(b->pid);
	b->status = status;
	b->exited = true;
	b->pid = 0;
}

bool broker_proc_alive(struct broker_proc *b)
{
	if (b->pid <= 0)
		return false;
	int st = 0;
	pid_t r = waitpid(b->pid, &st, WNOHANG);
	if (r == 0 || (r < 0 && errno == EINTR))
		return true;
	/* ECHILD: reaped behind our back; nothing to tell but that */
	reaped(b, r == b->pid ? st : 0);
	return false;
}

bool broker_proc_wait_exit(struct broker_proc *b, uint32_t timeout_ms)
{
	uint64_t until = broker_proc_now_ns() + (uint64_t)timeout_ms * 1000000u;
	while (broker_proc_alive(b)) {
		if (broker_proc_now_ns() >= until)
			return false;
		sleep_ms(1);
	}
	return true;
}

int broker_proc_kill9(struct broker_proc *b)
{
	if (b->pid <= 0)
		return 0;
	int rc = kill(b->pid, SIGKILL) ? errno : 0;
	int st = 0;
	pid_t r;
	while ((r = waitpid(b->pid, &st, 0)) < 0 && errno == EINTR)
		;
	if (r != b->pid && !rc)
		rc = errno;
	reaped(b, r == b->pid ? st : 0);
	return rc;
}

bool broker_proc_signal(struct broker_proc *b, int sig, uint32_t timeout_ms)
{
	if (b->pid <= 0)
		return true;
	kill(b->pid, sig);
	if (broker_proc_wait_exit(b, timeout_ms))
		return true;
	broker_proc_kill9(b);
	return false;
}

bool broker_proc_term(struct broker_proc *b, uint32_t timeout_ms)
{
	return broker_proc_signal(b, SIGTERM, timeout_ms);
}

enum broker_proc_wait
broker_proc_wait_listening(struct broker_proc *b, uint32_t timeout_ms,
			   const volatile sig_atomic_t *stop)
{
	uint64_t until = broker_proc_now_ns() + (uint64_t)timeout_ms * 1000000u;
	struct stat sb;
	while (b->sock[0] && stat(b->sock, &sb) != 0) {
		if (!broker_proc_alive(b))
			return BROKER_PROC_EXITED;
		if (broker_proc_now_ns() >= until || (stop && *stop))
			return BROKER_PROC_TIMEOUT;
		sleep_ms(1);
	}
	b->listening_ns = broker_proc_now_ns();
	return BROKER_PROC_READY;
}

enum broker_proc_wait
broker_proc_wait_ready(struct broker_proc *b, uint32_t timeout_ms,
		       const struct broker_proc_ping *ping, int *last_rc)
{
	uint64_t until = broker_proc_now_ns() + (uint64_t)timeout_ms * 1000000u;
	if (last_rc)
		*last_rc = -1;
	enum broker_proc_wait w =
		broker_proc_wait_listening(b, timeout_ms, NULL);
	if (w != BROKER_PROC_READY)
		return w;
	for (;;) {
		handoff_options o = { .deadline_ms = ping->deadline_ms,
				      .attempt_timeout_ms =
					      ping->attempt_timeout_ms,
				      .consumer_name = ping->consumer_name };
		handoff_client *c = NULL;
		int rc = handoff_connect(b->url, &o, &c);
		if (last_rc)
			*last_rc = rc;
		if (rc == HANDOFF_OK) {
			b->ready_ns = broker_proc_now_ns();
			handoff_close(c);
			return BROKER_PROC_READY;
		}
		if (!broker_proc_alive(b))
			return BROKER_PROC_EXITED;
		if (broker_proc_now_ns() >= until)
			return BROKER_PROC_TIMEOUT;
		if (ping->pause_ms)
			sleep_ms(ping->pause_ms);
	}
}
