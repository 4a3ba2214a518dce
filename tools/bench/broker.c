/*
 * broker.c — the work folder and the broker under test.
 *
 * handoff-bench spawns handoffd itself in the normal mode: on a fresh
 * folder under --data-dir (the disk being measured), listening on an ipc
 * socket in that folder, with a config of its own (ack deadline 30 s, a
 * map large enough for a long run). It is spawned before this process
 * opens any nanomsg socket (nanomsg starts threads with its first one),
 * into a process group of its own so a Ctrl-C reaches only us and we stop
 * it cleanly. Its stderr goes to handoffd.log, shown when something fails.
 *
 * A sampler thread reads RssAnon from /proc/PID/status every 50 ms and
 * keeps the peak, which the scenarios take and reset.
 *
 * The restart scenario stops a broker with the signal it chooses
 * (broker_stop_signal) and starts the same binary again on the same
 * folder, config and socket (broker_restart); the log is then appended to,
 * so it tells the whole story. Spawn and ready times are kept for it.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

#define SAMPLE_NS     50000000ULL /* 50 ms */
#define STOP_WAIT_NS  10000000000ULL
#define READY_WAIT_NS 10000000000ULL
#define READY_POLL_NS 1000000ULL /* 1 ms: the restart time is measured */
#define SUN_PATH_MAX  107

int workdir_create(const char *parent, char *out, size_t outlen, char *err,
		   size_t errlen)
{
	int n = snprintf(out, outlen, "%s/handoff-bench.XXXXXX",
			 parent ? parent : ".");
	if (n < 0 || (size_t)n >= outlen) {
		snprintf(err, errlen, "data dir path too long");
		return -1;
	}
	if (mkdtemp(out) == NULL) {
		snprintf(err, errlen, "mkdtemp %s: %s", out, strerror(errno));
		return -1;
	}
	/* absolute, so the ipc URL and the report name it unambiguously */
	char *abs = realpath(out, NULL);
	if (abs != NULL && strlen(abs) < outlen)
		snprintf(out, outlen, "%s", abs);
	free(abs);
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int type,
		  struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

void workdir_remove(const char *dir)
{
	if (dir == NULL || dir[0] == '\0')
		return;
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* RssAnon of pid in kB, 0 when unreadable. */
static uint64_t read_rss_anon(pid_t pid)
{
	char path[64], line[256];
	uint64_t kb = 0;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, "RssAnon:", 8) == 0) {
			kb = strtoull(line + 8, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb;
}

uint64_t broker_rss_anon(const struct broker *b)
{
	if (b == NULL || b->pid <= 0 || b->exited)
		return 0;
	return read_rss_anon(b->pid);
}

static void peak_update(_Atomic uint64_t *peak, uint64_t v)
{
	uint64_t cur = atomic_load(peak);
	while (v > cur && !atomic_compare_exchange_weak(peak, &cur, v))
		;
}

static void *sampler_main(void *arg)
{
	struct broker *b = arg;

	while (!atomic_load(&b->sampler_stop)) {
		uint64_t kb = read_rss_anon(b->pid);
		peak_update(&b->rss_peak, kb);
		peak_update(&b->rss_peak_all, kb);
		bench_sleep_ns(SAMPLE_NS);
	}
	return NULL;
}

uint64_t broker_take_rss_peak(struct broker *b)
{
	if (b == NULL || b->pid <= 0)
		return 0;
	uint64_t now = read_rss_anon(b->pid);
	peak_update(&b->rss_peak, now);
	peak_update(&b->rss_peak_all, now);
	return atomic_exchange(&b->rss_peak, now);
}

double broker_cpu_seconds(const struct broker *b)
{
	char path[64], buf[1024];
	unsigned long long ut, st;
	FILE *f;
	size_t n;

	if (b == NULL || b->pid <= 0 || b->exited)
		return -1;
	snprintf(path, sizeof path, "/proc/%ld/stat", (long)b->pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* fields after "(comm)": state is field 3, utime 14, stime 15 */
	char *p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 1,
				" %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
				"%*u %llu %llu",
				&ut, &st) != 2)
		return -1;
	long hz = sysconf(_SC_CLK_TCK);
	return (double)(ut + st) / (double)(hz > 0 ? hz : 100);
}

double bench_cpu_seconds(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int write_config(const char *path, uint32_t max_batch, uint32_t payload,
			char *err, size_t errlen)
{
	FILE *f = fopen(path, "w");
	uint32_t max_payload = 1U << 20;
	uint64_t max_request = 16ULL << 20;
	uint64_t need;

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (max_batch < 1000)
		max_batch = 1000;
	if (payload > max_payload)
		max_payload = payload;
	need = (uint64_t)max_batch * ((uint64_t)payload + 256) + (1 << 20);
	if (need > max_request)
		max_request = need;
	if (max_request > 0xffffffffULL)
		max_request = 0xffffffffULL;
	fprintf(f,
		"; written by handoff-bench\n"
		"[broker]\n"
		"map_size = 64G\n"
		"[limits]\n"
		"max_batch = %u\n"
		"max_payload = %u\n"
		"max_request = %llu\n"
		"[defaults]\n"
		"ack_deadline = 30s\n",
		max_batch, max_payload, (unsigned long long)max_request);
	if (fclose(f) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Start b->exe on the paths in b (set by broker_spawn), the log
 * truncated or appended to; wait up to wait_ns for the socket, then start
 * the sampler. */
static int broker_start(struct broker *b, const char *exe, bool append_log,
			uint64_t wait_ns, char *err, size_t errlen)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	bool fa_init = false, attr_init = false;
	int rc, ret = -1;

	b->pid = 0;
	b->exited = false;
	b->status = 0;
	b->t_spawn_ns = 0;
	b->t_ready_ns = 0;
	atomic_store(&b->sampler_stop, false);
	atomic_store(&b->rss_peak, 0);
	b->sampler_running = false;

	if (access(exe, X_OK) != 0) {
		snprintf(err, errlen, "%s: %s", exe, strerror(errno));
		return -1;
	}
	if ((rc = posix_spawn_file_actions_init(&fa)) != 0)
		goto spawn_fail;
	fa_init = true;
	if ((rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null",
						   O_RDONLY, 0)) != 0 ||
	    (rc = posix_spawn_file_actions_addopen(
		     &fa, 2, b->log_path,
		     O_WRONLY | O_CREAT | (append_log ? O_APPEND : O_TRUNC),
		     0600)) != 0 ||
	    (rc = posix_spawn_file_actions_adddup2(&fa, 2, 1)) != 0)
		goto spawn_fail;
	if ((rc = posix_spawnattr_init(&attr)) != 0)
		goto spawn_fail;
	attr_init = true;
	if ((rc = posix_spawnattr_setpgroup(&attr, 0)) != 0 ||
	    (rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP)) != 0)
		goto spawn_fail;

	char *const argv[] = {
		(char *)exe, "--data",	 b->data_dir,  "--listen",
		b->url,	     "--config", b->conf_path, NULL,
	};
	b->t_spawn_ns = bench_now_ns();
	if ((rc = posix_spawn(&b->pid, exe, &fa, &attr, argv, environ)) != 0) {
		b->pid = 0;
		goto spawn_fail;
	}

	/* Ready once the socket exists (the store is open and the leases
	 * of a previous run recovered by then). */
	uint64_t until = b->t_spawn_ns + wait_ns;
	struct stat st;
	while (stat(b->sock_path, &st) != 0) {
		if (!broker_alive(b)) {
			char how[64];
			broker_exit_text(b, how, sizeof how);
			snprintf(err, errlen, "handoffd exited at start (%s)",
				 how);
			goto cleanup;
		}
		if (bench_now_ns() > until || bench_interrupted) {
			snprintf(err, errlen,
				 "handoffd did not create %s within %.0f s%s",
				 b->sock_path, (double)wait_ns / 1e9,
				 bench_interrupted ? " (interrupted)" : "");
			goto cleanup;
		}
		bench_sleep_ns(READY_POLL_NS);
	}
	b->t_ready_ns = bench_now_ns();
	if (pthread_create(&b->sampler, NULL, sampler_main, b) == 0)
		b->sampler_running = true;
	ret = 0;
	goto cleanup;

spawn_fail:
	snprintf(err, errlen, "spawn %s: %s", exe, strerror(rc));
cleanup:
	if (fa_init)
		posix_spawn_file_actions_destroy(&fa);
	if (attr_init)
		posix_spawnattr_destroy(&attr);
	return ret;
}

int broker_spawn(struct broker *b, const char *exe, const char *workdir,
		 uint32_t max_batch, uint32_t payload, char *err, size_t errlen)
{
	b->pid = 0;
	b->exited = false;
	b->sampler_running = false;
	atomic_store(&b->rss_peak_all, 0);

	snprintf(b->sock_path, sizeof b->sock_path, "%s/b.sock", workdir);
	if (strlen(b->sock_path) > SUN_PATH_MAX) {
		snprintf(err, errlen,
			 "socket path %s is longer than %d bytes; pass a "
			 "shorter --data-dir",
			 b->sock_path, SUN_PATH_MAX);
		return -1;
	}
	snprintf(b->url, sizeof b->url, "ipc://%s", b->sock_path);
	snprintf(b->data_dir, sizeof b->data_dir, "%s/data", workdir);
	snprintf(b->log_path, sizeof b->log_path, "%s/handoffd.log", workdir);
	snprintf(b->conf_path, sizeof b->conf_path, "%s/handoffd.ini", workdir);
	if (write_config(b->conf_path, max_batch, payload, err, errlen))
		return -1;
	return broker_start(b, exe, false, READY_WAIT_NS, err, errlen);
}

int broker_restart(struct broker *b, const char *exe, double wait_s, char *err,
		   size_t errlen)
{
	if (b->sock_path[0] == '\0' || b->conf_path[0] == '\0') {
		snprintf(err, errlen, "broker_restart: never spawned");
		return -1;
	}
	if (b->pid > 0 && broker_alive(b)) {
		snprintf(err, errlen, "broker_restart: still running");
		return -1;
	}
	if (b->sampler_running) {
		atomic_store(&b->sampler_stop, true);
		pthread_join(b->sampler, NULL);
		b->sampler_running = false;
	}
	/* a killed broker leaves its socket file: the new one must not be
	 * taken as ready before it listens */
	unlink(b->sock_path);
	return broker_start(b, exe, true,
			    wait_s > 0 ? (uint64_t)(wait_s * 1e9) :
					 READY_WAIT_NS,
			    err, errlen);
}

bool broker_alive(struct broker *b)
{
	int status;

	if (b == NULL || b->pid <= 0)
		return false;
	if (b->exited)
		return false;
	pid_t r = waitpid(b->pid, &status, WNOHANG);
	if (r == b->pid) {
		b->exited = true;
		b->status = status;
		return false;
	}
	return true;
}

void broker_exit_text(const struct broker *b, char *out, size_t outlen)
{
	if (!b->exited)
		snprintf(out, outlen, "running");
	else if (WIFEXITED(b->status))
		snprintf(out, outlen, "exit status %d", WEXITSTATUS(b->status));
	else if (WIFSIGNALED(b->status))
		snprintf(out, outlen, "killed by signal %d",
			 WTERMSIG(b->status));
	else
		snprintf(out, outlen, "wait status %d", b->status);
}

void broker_log_tail(const struct broker *b, FILE *f, int lines)
{
	FILE *in;
	long size, from;
	char buf[8192];
	size_t n;
	int seen = 0;

	if (b == NULL || b->log_path[0] == '\0')
		return;
	in = fopen(b->log_path, "r");
	if (in == NULL)
		return;
	if (fseek(in, 0, SEEK_END) != 0 || (size = ftell(in)) < 0)
		goto out;
	from = size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0;
	if (fseek(in, from, SEEK_SET) != 0)
		goto out;
	n = fread(buf, 1, sizeof buf - 1, in);
	buf[n] = '\0';
	/* start after the lines-th newline from the end */
	char *p = buf + n;
	while (p > buf) {
		if (p[-1] == '\n' && p != buf + n && ++seen >= lines)
			break;
		p--;
	}
	fprintf(f, "--- last lines of %s ---\n%s", b->log_path, p);
	if (n == 0 || buf[n - 1] != '\n')
		fputc('\n', f);
out:
	fclose(in);
}

void broker_stop_signal(struct broker *b, int sig)
{
	if (b == NULL || b->pid <= 0)
		return;
	b->term_timed_out = false;
	if (broker_alive(b)) {
		kill(b->pid, sig);
		uint64_t until = bench_now_ns() + STOP_WAIT_NS;
		while (broker_alive(b) && bench_now_ns() < until)
			bench_sleep_ns(1000000);
		if (broker_alive(b)) {
			fprintf(stderr,
				"handoff-bench: handoffd did not stop within "
				"10 s of signal %d; killing it\n",
				sig);
			b->term_timed_out = true;
			kill(b->pid, SIGKILL);
			int status;
			if (waitpid(b->pid, &status, 0) == b->pid) {
				b->exited = true;
				b->status = status;
			}
		}
	}
	if (b->sampler_running) {
		atomic_store(&b->sampler_stop, true);
		pthread_join(b->sampler, NULL);
		b->sampler_running = false;
	}
}

void broker_stop(struct broker *b)
{
	broker_stop_signal(b, SIGTERM);
}
