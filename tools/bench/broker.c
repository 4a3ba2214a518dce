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
 * With b->with_http the config also gives it an HTTP listener on
 * 127.0.0.1 at a port that was free a moment before (bound to port 0 and
 * released: another program could take it in between; the spawn then
 * fails with the broker's "cannot serve" in its log), and the start waits
 * until that port accepts connections.
 *
 * A sampler thread reads RssAnon from /proc/PID/status every 50 ms and
 * keeps the peak, which the scenarios take and reset.
 *
 * The restart scenario stops a broker with the signal it chooses
 * (broker_stop_signal) and starts the same binary again on the same
 * folder, config and socket (broker_restart); the log is then appended to,
 * so it tells the whole story. Spawn and ready times are kept for it.
 *
 * The process itself (folder, config file, posix_spawn, reaping, the
 * socket poll) is broker_proc's (tools/lib/broker_proc.h); what is the
 * benchmark's own is here: the config, the sampler, the stop with a
 * chosen signal and its 10 s limit, and the errors in its words.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define SAMPLE_NS     50000000ULL /* 50 ms */
#define STOP_WAIT_MS  10000u
#define READY_WAIT_NS 10000000000ULL
#define SUN_PATH_MAX  107

int workdir_create(const char *parent, char *out, size_t outlen, char *err,
		   size_t errlen)
{
	int rc = broker_proc_mkdtemp(parent ? parent : ".", "handoff-bench.",
				     out, outlen);
	if (rc == ENAMETOOLONG) {
		snprintf(err, errlen, "data dir path too long");
		return -1;
	}
	if (rc) {
		snprintf(err, errlen, "mkdtemp %s: %s", out, strerror(rc));
		return -1;
	}
	/* absolute, so the ipc URL and the report name it unambiguously */
	char *abs = realpath(out, NULL);
	if (abs != NULL && strlen(abs) < outlen)
		snprintf(out, outlen, "%s", abs);
	free(abs);
	return 0;
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
	if (b == NULL || b->proc.pid <= 0)
		return 0;
	return read_rss_anon(b->proc.pid);
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
		uint64_t kb = read_rss_anon(b->last_pid);
		peak_update(&b->rss_peak, kb);
		peak_update(&b->rss_peak_all, kb);
		bench_sleep_ns(SAMPLE_NS);
	}
	return NULL;
}

uint64_t broker_take_rss_peak(struct broker *b)
{
	if (b == NULL || b->last_pid <= 0)
		return 0;
	uint64_t now = read_rss_anon(b->last_pid);
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

	if (b == NULL || b->proc.pid <= 0)
		return -1;
	snprintf(path, sizeof path, "/proc/%ld/stat", (long)b->proc.pid);
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

/* A loopback port free right now; 0 when none could be had. */
static unsigned free_loopback_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	unsigned port = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return 0;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* Whether something accepts connections on 127.0.0.1:port. */
static bool loopback_accepts(unsigned port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
	close(fd);
	return ok;
}

/* The config: limits raised where max_batch or payload need it; an HTTP
 * listener when http_port is not 0. */
static void config_text(char *out, size_t outlen, uint32_t max_batch,
			uint32_t payload, unsigned http_port)
{
	uint32_t max_payload = 1U << 20;
	uint64_t max_request = 16ULL << 20;
	uint64_t need;

	if (max_batch < 1000)
		max_batch = 1000;
	if (payload > max_payload)
		max_payload = payload;
	need = (uint64_t)max_batch * ((uint64_t)payload + 256) + (1 << 20);
	if (need > max_request)
		max_request = need;
	if (max_request > 0xffffffffULL)
		max_request = 0xffffffffULL;
	snprintf(out, outlen,
		 "; written by handoff-bench\n"
		 "[broker]\n"
		 "map_size = 64G\n"
		 "[limits]\n"
		 "max_batch = %u\n"
		 "max_payload = %u\n"
		 "max_request = %llu\n"
		 /* the restart scenario leases 100 k on one consumer */
		 "max_leases_per_consumer = 0\n"
		 "[defaults]\n"
		 "ack_deadline = 30s\n",
		 max_batch, max_payload, (unsigned long long)max_request);
	size_t n = strlen(out);
	if (http_port)
		snprintf(out + n, outlen - n,
			 "[http]\n"
			 "listen = 127.0.0.1:%u\n",
			 http_port);
}

/* Start b->proc again (its folder set up), the log appended to; wait up to
 * wait_ns for the socket, then start the sampler. */
static int broker_start(struct broker *b, uint64_t wait_ns, char *err,
			size_t errlen)
{
	const char *exe = b->proc.exe;

	b->last_pid = 0;
	atomic_store(&b->sampler_stop, false);
	atomic_store(&b->rss_peak, 0);
	b->sampler_running = false;

	if (access(exe, X_OK) != 0) {
		snprintf(err, errlen, "%s: %s", exe, strerror(errno));
		return -1;
	}
	int rc = broker_proc_spawn(&b->proc, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "spawn %s: %s", exe, strerror(rc));
		return -1;
	}
	b->last_pid = b->proc.pid;

	/* Ready once the socket exists (the store is open and the leases
	 * of a previous run recovered by then). */
	switch (broker_proc_wait_listening(
		&b->proc, (uint32_t)(wait_ns / 1000000u), &bench_interrupted)) {
	case BROKER_PROC_READY:
		break;
	case BROKER_PROC_EXITED: {
		char how[64];
		broker_exit_text(b, how, sizeof how);
		snprintf(err, errlen, "handoffd exited at start (%s)", how);
		return -1;
	}
	case BROKER_PROC_TIMEOUT:
		snprintf(err, errlen,
			 "handoffd did not create %s within %.0f s%s",
			 b->proc.sock, (double)wait_ns / 1e9,
			 bench_interrupted ? " (interrupted)" : "");
		return -1;
	}
	if (b->http_port) {
		uint64_t until = bench_now_ns() + wait_ns;
		while (!loopback_accepts(b->http_port)) {
			if (!broker_proc_alive(&b->proc)) {
				char how[64];
				broker_exit_text(b, how, sizeof how);
				snprintf(err, errlen,
					 "handoffd exited at start (%s)", how);
				return -1;
			}
			if (bench_now_ns() >= until || bench_interrupted) {
				snprintf(err, errlen,
					 "handoffd did not serve HTTP on "
					 "127.0.0.1:%u within %.0f s",
					 b->http_port, (double)wait_ns / 1e9);
				return -1;
			}
			bench_sleep_ns(1000000);
		}
	}
	if (pthread_create(&b->sampler, NULL, sampler_main, b) == 0)
		b->sampler_running = true;
	return 0;
}

int broker_spawn(struct broker *b, const char *exe, const char *workdir,
		 uint32_t max_batch, uint32_t payload, char *err, size_t errlen)
{
	static const struct broker_proc_files files = {
		.sock_name = "b.sock",
		.log_name = "handoffd.log",
	};
	char sock[BENCH_PATH_LEN + 8], config[512];

	b->last_pid = 0;
	b->sampler_running = false;
	atomic_store(&b->rss_peak_all, 0);

	snprintf(sock, sizeof sock, "%s/%s", workdir, files.sock_name);
	if (strlen(sock) > SUN_PATH_MAX) {
		snprintf(err, errlen,
			 "socket path %s is longer than %d bytes; pass a "
			 "shorter --data-dir",
			 sock, SUN_PATH_MAX);
		return -1;
	}
	b->http_port = 0;
	if (b->with_http) {
		b->http_port = free_loopback_port();
		if (b->http_port == 0) {
			snprintf(err, errlen,
				 "no free loopback port for HTTP: %s",
				 strerror(errno));
			return -1;
		}
	}
	config_text(config, sizeof config, max_batch, payload, b->http_port);
	if (broker_proc_init(&b->proc, exe, workdir, &files, config, err,
			     errlen))
		return -1;
	return broker_start(b, READY_WAIT_NS, err, errlen);
}

int broker_spawn_own(struct broker *b, const char *exe, const char *dir,
		     uint32_t max_batch, uint32_t payload, char *err,
		     size_t errlen)
{
	char e2[BENCH_ERR_LEN - 64];

	if (mkdir(dir, 0700) != 0) {
		bench_errf(err, errlen, "mkdir %s: %s", dir, strerror(errno));
		return -1;
	}
	if (broker_spawn(b, exe, dir, max_batch, payload, e2, sizeof e2)) {
		bench_errf(err, errlen, "%s", e2);
		broker_stop(b);
		broker_log_tail(b, stderr, 20);
		broker_proc_remove_dir(dir);
		return -1;
	}
	return 0;
}

int broker_restart(struct broker *b, double wait_s, char *err, size_t errlen)
{
	if (b->proc.config[0] == '\0') {
		snprintf(err, errlen, "broker_restart: never spawned");
		return -1;
	}
	if (broker_proc_alive(&b->proc)) {
		snprintf(err, errlen, "broker_restart: still running");
		return -1;
	}
	if (b->sampler_running) {
		atomic_store(&b->sampler_stop, true);
		pthread_join(b->sampler, NULL);
		b->sampler_running = false;
	}
	/* broker_proc_spawn removes the socket file a killed broker left:
	 * the new one must not be taken as ready before it listens */
	return broker_start(
		b, wait_s > 0 ? (uint64_t)(wait_s * 1e9) : READY_WAIT_NS, err,
		errlen);
}

bool broker_alive(struct broker *b)
{
	return b != NULL && broker_proc_alive(&b->proc);
}

void broker_exit_text(const struct broker *b, char *out, size_t outlen)
{
	int status = b->proc.status;

	if (!b->proc.exited)
		snprintf(out, outlen, "running");
	else if (WIFEXITED(status))
		snprintf(out, outlen, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, outlen, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(out, outlen, "wait status %d", status);
}

void broker_log_tail(const struct broker *b, FILE *f, int lines)
{
	FILE *in;
	long size, from;
	char buf[8192];
	size_t n;
	int seen = 0;

	if (b == NULL || b->proc.log[0] == '\0')
		return;
	in = fopen(b->proc.log, "r");
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
	fprintf(f, "--- last lines of %s ---\n%s", b->proc.log, p);
	if (n == 0 || buf[n - 1] != '\n')
		fputc('\n', f);
out:
	fclose(in);
}

void broker_stop_signal(struct broker *b, int sig)
{
	if (b == NULL || b->last_pid <= 0)
		return;
	b->term_timed_out = false;
	if (broker_proc_alive(&b->proc) &&
	    !broker_proc_signal(&b->proc, sig, STOP_WAIT_MS)) {
		fprintf(stderr,
			"handoff-bench: handoffd did not stop within "
			"10 s of signal %d; killing it\n",
			sig);
		b->term_timed_out = true;
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
