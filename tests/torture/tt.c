/* tt.c — see tt.h. */
#include "tt.h"

#include "broker_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---- time ---------------------------------------------------------------- */

uint64_t tt_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t tt_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void tt_sleep_ms(uint32_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- randomness ---------------------------------------------------------- */

void tt_rng_seed(struct tt_rng *r, uint64_t seed)
{
	r->s = seed;
}

uint64_t tt_rand(struct tt_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint64_t tt_below(struct tt_rng *r, uint64_t n)
{
	return n ? tt_rand(r) % n : 0;
}

uint64_t tt_range(struct tt_rng *r, uint64_t lo, uint64_t hi)
{
	return hi <= lo ? lo : lo + tt_below(r, hi - lo + 1);
}

bool tt_chance(struct tt_rng *r, unsigned per_mille)
{
	return tt_below(r, 1000) < per_mille;
}

uint64_t tt_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	struct tt_rng r = { h };
	return tt_rand(&r);
}

/* ---- hash table ---------------------------------------------------------- */

void tt_map_init(struct tt_map *m)
{
	memset(m, 0, sizeof(*m));
}

static size_t map_find(const struct tt_map_slot *slots, size_t cap,
		       const char *key)
{
	size_t i = tt_hash(key) & (cap - 1);
	while (slots[i].key && strcmp(slots[i].key, key) != 0)
		i = (i + 1) & (cap - 1);
	return i;
}

void *tt_map_get(const struct tt_map *m, const char *key)
{
	if (m->cap == 0)
		return NULL;
	size_t i = map_find(m->slots, m->cap, key);
	return m->slots[i].key ? m->slots[i].val : NULL;
}

static int map_grow(struct tt_map *m)
{
	size_t cap = m->cap ? m->cap * 2 : 1024;
	struct tt_map_slot *slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->slots[i].key)
			continue;
		size_t j = map_find(slots, cap, m->slots[i].key);
		slots[j] = m->slots[i];
	}
	free(m->slots);
	m->slots = slots;
	m->cap = cap;
	return 0;
}

int tt_map_put(struct tt_map *m, const char *key, void *val)
{
	/* Keep the load under 1/2 so probes stay short. */
	if ((m->n + 1) * 2 > m->cap && map_grow(m))
		return ENOMEM;
	size_t i = map_find(m->slots, m->cap, key);
	if (m->slots[i].key) {
		m->slots[i].val = val;
		return 0;
	}
	m->slots[i].key = strdup(key);
	if (!m->slots[i].key)
		return ENOMEM;
	m->slots[i].val = val;
	m->n++;
	return 0;
}

void tt_map_free(struct tt_map *m, void (*free_val)(void *))
{
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->slots[i].key)
			continue;
		free(m->slots[i].key);
		if (free_val)
			free_val(m->slots[i].val);
	}
	free(m->slots);
	tt_map_init(m);
}

bool tt_fmt(char *out, size_t outlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, outlen, fmt, ap);
	va_end(ap);
	return n >= 0 && (size_t)n < outlen;
}

/* ---- files --------------------------------------------------------------- */

int tt_mkdirs(const char *path)
{
	char buf[TT_PATH];
	if (strlen(path) >= sizeof(buf))
		return ENAMETOOLONG;
	strcpy(buf, path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) && errno != EEXIST)
			return errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) && errno != EEXIST)
		return errno;
	return 0;
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

void tt_rm_rf(const char *path)
{
	if (path && *path)
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *tt_read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (n + 1 == cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t k = read(fd, buf + n, cap - n - 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			free(buf);
			buf = NULL;
			break;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	if (buf) {
		buf[n] = '\0';
		if (len)
			*len = n;
	}
	return buf;
}

int tt_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return errno;
	int rc = fputs(text, f) < 0 ? EIO : 0;
	if (fclose(f) && !rc)
		rc = errno;
	return rc;
}

void tt_tail(const char *path, FILE *f, int lines)
{
	size_t len = 0;
	char *buf = tt_read_file(path, &len);
	if (!buf)
		return;
	const char *p = buf + len;
	int seen = 0;
	while (p > buf) {
		if (p[-1] == '\n' && p != buf + len && ++seen >= lines)
			break;
		p--;
	}
	fprintf(f, "---- last lines of %s ----\n%s", path, p);
	if (len && buf[len - 1] != '\n')
		fputc('\n', f);
	fprintf(f, "---- end of %s ----\n", path);
	free(buf);
}

size_t tt_count_lines(const char *path, const char *needle)
{
	char *buf = tt_read_file(path, NULL);
	if (!buf)
		return 0;
	size_t n = 0;
	char *save = NULL;
	for (char *l = strtok_r(buf, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save))
		if (strstr(l, needle))
			n++;
	free(buf);
	return n;
}

/* ---- processes ----------------------------------------------------------- */

/* Children not reaped yet, so that a fatal signal to us takes them along
 * (a broker or worker left behind would outlive the test). */
#define MAX_CHILDREN 256
static volatile pid_t children[MAX_CHILDREN];

static void track(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == 0) {
			children[i] = pid;
			return;
		}
}

static void untrack(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
}

void tt_kill_children(void)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] > 0)
			kill(children[i], SIGKILL);
}

pid_t tt_spawn(char *const argv[], char *const extra_env[],
	       const char *log_path)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	pid_t pid = -1;
	int rc;
	char **env = broker_proc_env(extra_env, NULL);
	if (!env) {
		errno = ENOMEM;
		return -1;
	}
	if ((rc = posix_spawn_file_actions_init(&fa))) {
		free(env);
		errno = rc;
		return -1;
	}
	if ((rc = posix_spawnattr_init(&attr))) {
		posix_spawn_file_actions_destroy(&fa);
		free(env);
		errno = rc;
		return -1;
	}
	rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (!rc)
		rc = posix_spawn_file_actions_addopen(
			&fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (!rc)
		rc = posix_spawn_file_actions_adddup2(&fa, 1, 2);
#if defined(__GLIBC__) && \
	(__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
	if (!rc)
		rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
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
		rc = posix_spawnattr_setsigmask(&attr, &none);
	if (!rc)
		rc = posix_spawnattr_setsigdefault(&attr, &dfl);
	if (!rc)
		rc = posix_spawnattr_setpgroup(&attr, 0);
	if (!rc)
		rc = posix_spawnattr_setflags(
			&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
				       POSIX_SPAWN_SETPGROUP);
	if (!rc)
		rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	free(env);
	if (rc) {
		errno = rc;
		return -1;
	}
	track(pid);
	return pid;
}

bool tt_wait(pid_t pid, uint32_t timeout_ms, int *status)
{
	uint64_t until = tt_mono_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		int st = 0;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid || (r < 0 && errno == ECHILD)) {
			untrack(pid);
			if (status)
				*status = r == pid ? st : 0;
			return true;
		}
		if (tt_mono_ns() >= until)
			return false;
		tt_sleep_ms(2);
	}
}

void tt_status_text(int status, char *out, size_t outlen)
{
	if (WIFEXITED(status))
		snprintf(out, outlen, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, outlen, "signal %d", WTERMSIG(status));
	else
		snprintf(out, outlen, "status %d", status);
}

static void run_tool(char *const argv[], const char *path)
{
	if (access(argv[0], X_OK))
		return;
	pid_t pid = tt_spawn(argv, NULL, path);
	if (pid > 0 && !tt_wait(pid, 60000, NULL)) {
		kill(pid, SIGKILL);
		tt_wait(pid, 10000, NULL);
	}
}

void tt_diagnose(pid_t pid, const char *path, const char *why)
{
	char dir[64], link[600], target[512], pids[32];
	FILE *f = fopen(path, "a");
	if (!f)
		return;
	fprintf(f,
		"==== diagnose pid=%ld why=\"%s\" wall_ms=%llu mono_ns=%llu\n",
		(long)pid, why, (unsigned long long)tt_wall_ms(),
		(unsigned long long)tt_mono_ns());
	snprintf(dir, sizeof(dir), "/proc/%ld/fd", (long)pid);
	DIR *d = opendir(dir);
	char *unix_tab = tt_read_file("/proc/net/unix", NULL);
	for (struct dirent *e; d && (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		fprintf(f, "fd %s -> %s\n", e->d_name, target);
		unsigned long ino;
		if (!unix_tab || sscanf(target, "socket:[%lu]", &ino) != 1)
			continue;
		/* Num RefCount Protocol Flags Type St Inode Path */
		char needle[32];
		snprintf(needle, sizeof(needle), " %lu", ino);
		for (char *l = unix_tab; l && *l;) {
			char *nl = strchr(l, '\n');
			size_t len = nl ? (size_t)(nl - l) : strlen(l);
			char *hit = strstr(l, needle);
			if (hit && hit < l + len &&
			    (hit[strlen(needle)] == ' ' ||
			     hit[strlen(needle)] == '\n' ||
			     hit[strlen(needle)] == '\0'))
				fprintf(f, "   unix: %.*s\n", (int)len, l);
			l = nl ? nl + 1 : NULL;
		}
	}
	if (d)
		closedir(d);
	free(unix_tab);
	fclose(f);
	char *ss[] = { "/usr/bin/ss", "-xpn", NULL };
	run_tool(ss, path);
	if (pid != getpid()) {
		snprintf(pids, sizeof(pids), "%ld", (long)pid);
		char *gdb[] = {
			"/usr/bin/gdb",	       "-batch", "-p", pids, "-ex",
			"thread apply all bt", NULL
		};
		run_tool(gdb, path);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

uint64_t tt_percentile(uint64_t *v, size_t n, double pct)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	/* nearest rank */
	size_t rank = (size_t)((pct / 100.0) * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}
