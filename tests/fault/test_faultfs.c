/*
 * test_faultfs.c — self-test of faultfs (the LD_PRELOAD library) and
 * faultfs-image (suite 'fault').
 *
 * The parent runs this same program as its children, with the library
 * preloaded: `test_faultfs child CASE DIR [ARG]`. A child does its writes
 * and syncs, then kills itself with SIGKILL (the power cut) or exits 0;
 * it exits 1 if a call did not behave as the case expects. The parent then
 * builds images with faultfs-image and checks them byte by byte.
 *
 * $FAULTFS_LIB and $FAULTFS_IMAGE name the library and the tool (set by
 * meson). A child built with ASan needs verify_asan_link_order=0 in
 * ASAN_OPTIONS to accept a library preloaded in front of its runtime; the
 * parent adds it when missing.
 *
 * Contents are patterns of the absolute file offset: OLD bytes have the top
 * bit clear, NEW bytes have it set, so every byte says where it came from.
 */
#include "faultfs_journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			exit(1);                                               \
		}                                                              \
	} while (0)

#define SEEDS	  8
#define LMDB_KEYS 200
#define LMDB_VAL  300

/* ---- patterns ----------------------------------------------------------- */

static uint8_t old_byte(uint64_t off)
{
	return (uint8_t)((off * 7 + 1) & 0x7f);
}

static uint8_t new_byte(uint64_t off)
{
	return (uint8_t)((off * 13 + 5) | 0x80);
}

static uint8_t *pattern(bool is_new, uint64_t off, size_t len)
{
	uint8_t *b = malloc(len);

	CHECK(b != NULL);
	for (size_t i = 0; i < len; i++)
		b[i] = is_new ? new_byte(off + i) : old_byte(off + i);
	return b;
}

/* ---- children ----------------------------------------------------------- */

static void power_cut(void)
{
	kill(getpid(), SIGKILL);
	exit(3); /* not reached */
}

static int open_in(const char *dir, const char *name, int flags)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	fd = open(path, flags, 0644);
	CHECK(fd >= 0);
	return fd;
}

static ssize_t put(int fd, bool is_new, uint64_t off, size_t len)
{
	uint8_t *b = pattern(is_new, off, len);
	ssize_t r = pwrite(fd, b, len, (off_t)off);
	int saved = errno;

	free(b);
	errno = saved;
	return r;
}

static void put_ok(int fd, bool is_new, uint64_t off, size_t len)
{
	CHECK(put(fd, is_new, off, len) == (ssize_t)len);
}

/* Synced OLD base, then three unsynced NEW writes, one past the end. */
static void child_basic(const char *dir)
{
	int fd = open_in(dir, "data.mdb", O_RDWR | O_CREAT);

	put_ok(fd, false, 0, 8192);
	CHECK(fdatasync(fd) == 0);
	put_ok(fd, true, 700, 2000);
	put_ok(fd, true, 5000, 1500);
	put_ok(fd, true, 8292, 1000);
	power_cut();
}

/* Writes through O_DSYNC and O_SYNC descriptors are durable at once. */
static void child_dsync(const char *dir)
{
	int fd = open_in(dir, "data.mdb", O_RDWR | O_CREAT);
	int dfd, sfd;

	put_ok(fd, false, 0, 4096);
	CHECK(fsync(fd) == 0);
	dfd = open_in(dir, "data.mdb", O_WRONLY | O_DSYNC);
	put_ok(dfd, true, 1024, 512);
	put_ok(fd, true, 2048, 512);
	sfd = open_in(dir, "data.mdb", O_WRONLY | O_SYNC);
	put_ok(sfd, true, 3000, 100);
	power_cut();
}

static void writev_new(int fd, uint64_t off, const size_t *lens, int n)
{
	struct iovec iov[4];
	size_t total = 0;

	CHECK(n <= 4);
	for (int i = 0; i < n; i++) {
		iov[i].iov_base = pattern(true, off + total, lens[i]);
		iov[i].iov_len = lens[i];
		total += lens[i];
	}
	CHECK(writev(fd, iov, n) == (ssize_t)total);
	for (int i = 0; i < n; i++)
		free(iov[i].iov_base);
}

static void write_new(int fd, uint64_t off, size_t len)
{
	uint8_t *b = pattern(true, off, len);

	CHECK(write(fd, b, len) == (ssize_t)len);
	free(b);
}

/* Writes at the current position, through dups, with O_APPEND; failed and
 * short writes; a closed descriptor's number reused for an eventfd and for
 * another file is not tracked. */
static void child_writev(const char *dir)
{
	static const size_t lens[] = { 100, 500, 900 };
	int fd = open_in(dir, "data.mdb", O_RDWR | O_CREAT | O_TRUNC);
	uint8_t *old = pattern(false, 0, 1000);
	struct rlimit lim = { 7050, 7050 };
	int d, d2, a, efd, ro, other;
	uint64_t one = 1;
	struct iovec iov[2];

	CHECK(write(fd, old, 1000) == 1000);
	free(old);
	CHECK(lseek(fd, 3000, SEEK_SET) == 3000);
	writev_new(fd, 3000, lens, 3);
	write_new(fd, 4500, 200);
	d = dup(fd);
	CHECK(d >= 0);
	write_new(d, 4700, 100);
	d2 = fcntl(fd, F_DUPFD_CLOEXEC, 100);
	CHECK(d2 >= 100);
	iov[0].iov_base = pattern(true, 6000, 100);
	iov[0].iov_len = 100;
	iov[1].iov_base = pattern(true, 6100, 200);
	iov[1].iov_len = 200;
	CHECK(pwritev(d2, iov, 2, 6000) == 300);
	free(iov[0].iov_base);
	free(iov[1].iov_base);
	a = open_in(dir, "data.mdb", O_WRONLY | O_APPEND);
	write_new(a, 6300, 100);
	CHECK(close(a) == 0);
	/* Still tracked, this write would die on lseek of an eventfd. */
	efd = eventfd(0, 0);
	CHECK(efd == a);
	CHECK(write(efd, &one, sizeof one) == sizeof one);
	/* A failed write lands nothing; a read-only fd syncs the file. */
	ro = open_in(dir, "data.mdb", O_RDONLY);
	CHECK(put(ro, true, 8000, 100) == -1 && errno == EBADF);
	CHECK(fsync(ro) == 0);
	CHECK(close(ro) == 0);
	other = open_in(dir, "other.txt", O_RDWR | O_CREAT);
	CHECK(other == ro);
	CHECK(pwrite(other, "garbage", 7, 0) == 7);
	CHECK(fdatasync(d) == 0);
	/* A short write: only 50 of 100 bytes fit under the limit. */
	signal(SIGXFSZ, SIG_IGN);
	CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	CHECK(put(fd, true, 7000, 100) == 50);
	power_cut();
}

/* ARG = K,ERRNO: five writes, the K-th fails with ERRNO and the rest
 * succeed; then a sync; exit 0. */
static void child_failwrite(const char *dir, const char *arg)
{
	int fd = open_in(dir, "data.mdb", O_RDWR | O_CREAT);
	int k, e;

	CHECK(sscanf(arg, "%d,%d", &k, &e) == 2);
	for (int i = 1; i <= 5; i++) {
		errno = 0;
		ssize_t r = put(fd, true, (uint64_t)(i - 1) * 1000, 1000);
		if (i == k)
			CHECK(r == -1 && errno == e);
		else
			CHECK(r == 1000);
	}
	CHECK(fdatasync(fd) == 0);
	exit(0);
}

/* FAULTFS_FAIL_SYNC=2: the second sync fails. ARG "kill": power cut right
 * after it; "more": a third write and sync succeed, exit 0. */
static void child_failsync(const char *dir, const char *arg)
{
	int fd = open_in(dir, "data.mdb", O_RDWR | O_CREAT);

	put_ok(fd, false, 0, 1000);
	CHECK(fdatasync(fd) == 0);
	put_ok(fd, true, 1000, 1000);
	errno = 0;
	CHECK(fdatasync(fd) == -1 && errno == EIO);
	if (strcmp(arg, "kill") == 0)
		power_cut();
	put_ok(fd, true, 2000, 1000);
	CHECK(fsync(fd) == 0);
	exit(0);
}

static void lmdb_value(char prefix, int i, uint8_t *v)
{
	for (int j = 0; j < LMDB_VAL; j++)
		v[j] = (uint8_t)(prefix + i * 31 + j);
}

static void lmdb_fill(MDB_env *env, char prefix)
{
	uint8_t val[LMDB_VAL];
	char key[16];
	MDB_txn *txn;
	MDB_dbi dbi;

	CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	CHECK(mdb_dbi_open(txn, NULL, 0, &dbi) == 0);
	for (int i = 0; i < LMDB_KEYS; i++) {
		snprintf(key, sizeof key, "%c%04d", prefix, i);
		lmdb_value(prefix, i, val);
		MDB_val k = { strlen(key), key }, v = { LMDB_VAL, val };
		CHECK(mdb_put(txn, dbi, &k, &v, 0) == 0);
	}
	CHECK(mdb_txn_commit(txn) == 0);
}

/* ARG "default": commit A and B with default flags; "nosync": commit C
 * with MDB_NOSYNC. Then the power cut. */
static void child_lmdb(const char *dir, const char *arg)
{
	bool nosync = strcmp(arg, "nosync") == 0;
	MDB_env *env;

	CHECK(mdb_env_create(&env) == 0);
	CHECK(mdb_env_set_mapsize(env, 16u << 20) == 0);
	CHECK(mdb_env_open(env, dir, nosync ? MDB_NOSYNC : 0, 0644) == 0);
	if (nosync) {
		lmdb_fill(env, 'c');
	} else {
		lmdb_fill(env, 'a');
		lmdb_fill(env, 'b');
	}
	power_cut();
}

/* Loaded but inert: failures configured are not injected. */
static void child_inert(const char *dir)
{
	char line[512];
	bool loaded = false;
	FILE *maps = fopen("/proc/self/maps", "r");
	int fd = open_in(dir, "data.mdb", O_RDWR | O_CREAT);

	CHECK(maps != NULL);
	while (fgets(line, sizeof line, maps))
		if (strstr(line, "faultfs"))
			loaded = true;
	fclose(maps);
	CHECK(loaded);
	put_ok(fd, true, 0, 1000);
	CHECK(fdatasync(fd) == 0);
	CHECK(close(fd) == 0);
	exit(0);
}

static int child_main(int argc, char **argv)
{
	const char *c = argv[2], *dir = argv[3];
	const char *arg = argc > 4 ? argv[4] : "";

	if (strcmp(c, "basic") == 0)
		child_basic(dir);
	else if (strcmp(c, "dsync") == 0)
		child_dsync(dir);
	else if (strcmp(c, "writev") == 0)
		child_writev(dir);
	else if (strcmp(c, "failwrite") == 0)
		child_failwrite(dir, arg);
	else if (strcmp(c, "failsync") == 0)
		child_failsync(dir, arg);
	else if (strcmp(c, "lmdb") == 0)
		child_lmdb(dir, arg);
	else if (strcmp(c, "inert") == 0)
		child_inert(dir);
	fprintf(stderr, "test_faultfs: unknown child case %s\n", c);
	return 2;
}

/* ---- parent: processes -------------------------------------------------- */

static const char *lib_path, *tool_path;
static char self_path[PATH_MAX], root[PATH_MAX];

static bool skip_var(const char *e)
{
	return strncmp(e, "FAULTFS_", 8) == 0 ||
	       strncmp(e, "LD_PRELOAD=", 11) == 0 ||
	       strncmp(e, "ASAN_OPTIONS=", 13) == 0;
}

/*
 * The environment for a child: ours without FAULTFS_* and LD_PRELOAD, plus
 * LD_PRELOAD of the library, FAULTFS_STATE=state (unset if NULL), and
 * extra ("NAME=VALUE", NULL-terminated).
 */
static char **child_env(const char *state, const char *const *extra)
{
	static char preload[PATH_MAX + 16], st[PATH_MAX + 16], asan[1024];
	size_t n = 0, i = 0;
	const char *a = getenv("ASAN_OPTIONS");
	char **env;

	while (environ[n])
		n++;
	for (const char *const *x = extra; x && *x; x++)
		n++;
	env = calloc(n + 4, sizeof *env);
	CHECK(env != NULL);
	for (char **e = environ; *e; e++)
		if (!skip_var(*e))
			env[i++] = *e;
	snprintf(preload, sizeof preload, "LD_PRELOAD=%s", lib_path);
	env[i++] = preload;
	if (state) {
		snprintf(st, sizeof st, "FAULTFS_STATE=%s", state);
		env[i++] = st;
	}
	if (a && strstr(a, "verify_asan_link_order"))
		snprintf(asan, sizeof asan, "ASAN_OPTIONS=%s", a);
	else
		snprintf(asan, sizeof asan,
			 "ASAN_OPTIONS=%s%sverify_asan_link_order=0",
			 a ? a : "", a && *a ? ":" : "");
	env[i++] = asan;
	for (const char *const *x = extra; x && *x; x++)
		env[i++] = (char *)*x;
	return env;
}

static int wait_for(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		CHECK(errno == EINTR);
	return status;
}

/* Run argv with env; stdout into out (if not NULL). The wait status. */
static int spawn(char *const *argv, char **env, char *out, size_t outlen)
{
	posix_spawn_file_actions_t fa;
	int pfd[2] = { -1, -1 }, status;
	size_t got = 0;
	pid_t pid;

	CHECK(posix_spawn_file_actions_init(&fa) == 0);
	if (out) {
		CHECK(pipe(pfd) == 0);
		CHECK(posix_spawn_file_actions_adddup2(&fa, pfd[1], 1) == 0);
		CHECK(posix_spawn_file_actions_addclose(&fa, pfd[0]) == 0);
	}
	CHECK(posix_spawn(&pid, argv[0], &fa, NULL, argv, env) == 0);
	posix_spawn_file_actions_destroy(&fa);
	if (out) {
		close(pfd[1]);
		for (;;) {
			ssize_t n = read(pfd[0], out + got, outlen - 1 - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		out[got] = '\0';
		close(pfd[0]);
	}
	status = wait_for(pid);
	return status;
}

static int run_child(const char *c, const char *dir, const char *arg,
		     const char *state, const char *const *extra)
{
	char *argv[] = { self_path,   "child",	   (char *)c,
			 (char *)dir, (char *)arg, NULL };
	char **env = child_env(state, extra);
	int status = spawn(argv, env, NULL, 0);

	free(env);
	return status;
}

static bool killed(int status)
{
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

static bool exited_0(int status)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* faultfs-image; its exit status, its stdout line in line. */
static int image(const char *state, const char *out, const char *mode,
		 unsigned seed, char *line, size_t len)
{
	char seedbuf[32];
	char *argv[] = { (char *)tool_path, "--state", (char *)state, "--out",
			 (char *)out,	    "--mode",  (char *)mode,  "--seed",
			 seedbuf,	    NULL };
	int status;

	snprintf(seedbuf, sizeof seedbuf, "%u", seed);
	status = spawn(argv, environ, line, len);
	CHECK(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* Build an image that must succeed; returns its summary line. */
static const char *image_ok(const char *state, const char *out,
			    const char *mode, unsigned seed)
{
	static char line[512];

	CHECK(image(state, out, mode, seed, line, sizeof line) == 0);
	CHECK(strncmp(line, "faultfs-image: mode=", 20) == 0);
	return line;
}

static uint64_t field(const char *line, const char *name)
{
	char key[64];
	const char *p;

	snprintf(key, sizeof key, " %s=", name);
	p = strstr(line, key);
	CHECK(p != NULL);
	return strtoull(p + strlen(key), NULL, 10);
}

/* ---- parent: files ------------------------------------------------------ */

struct buf {
	uint8_t *p;
	size_t len;
};

static struct buf slurp(const char *path)
{
	struct buf b = { NULL, 0 };
	struct stat st;
	int fd = open(path, O_RDONLY);

	CHECK(fd >= 0);
	CHECK(fstat(fd, &st) == 0);
	b.p = malloc((size_t)st.st_size + 1);
	CHECK(b.p != NULL);
	while (b.len < (size_t)st.st_size) {
		ssize_t n = read(fd, b.p + b.len, (size_t)st.st_size - b.len);
		CHECK(n > 0);
		b.len += (size_t)n;
	}
	b.p[b.len] = '\0';
	close(fd);
	return b;
}

static bool same(struct buf a, struct buf b)
{
	return a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
}

static char *path_in(const char *dir, const char *name)
{
	static char paths[8][PATH_MAX];
	static int next;
	char *p = paths[next++ % 8];

	snprintf(p, PATH_MAX, "%s/%s", dir, name);
	return p;
}

static const char *make_dir(const char *name)
{
	const char *p = path_in(root, name);
	char *copy = strdup(p);

	CHECK(copy != NULL);
	CHECK(mkdir(copy, 0755) == 0);
	return copy;
}

static void read_counters(const char *state, uint64_t *writes, uint64_t *syncs)
{
	struct buf b = slurp(path_in(state, "counters"));

	CHECK(b.len == 16);
	*writes = *syncs = 0;
	for (int i = 7; i >= 0; i--) {
		*writes = *writes << 8 | b.p[i];
		*syncs = *syncs << 8 | b.p[8 + i];
	}
	free(b.p);
}

/* Every byte in [off, off+len) is new, old, or zero; which one, or -1 for
 * a mix. Past the end of the image counts as zero. */
enum kind { K_MIXED = -1, K_OLD, K_NEW, K_ZERO };

static enum kind range_kind(struct buf img, uint64_t off, uint64_t len)
{
	bool all_new = true, all_old = true, all_zero = true;

	for (uint64_t o = off; o < off + len; o++) {
		uint8_t c = o < img.len ? img.p[o] : 0;
		all_new &= c == new_byte(o) && o < img.len;
		all_old &= c == old_byte(o) && o < img.len;
		all_zero &= c == 0;
	}
	if (all_new)
		return K_NEW;
	if (all_old)
		return K_OLD;
	return all_zero ? K_ZERO : K_MIXED;
}

/* ---- case 1: pwrite, fdatasync, unsynced pwrites, SIGKILL --------------- */

struct region {
	uint64_t off, len;
};

static const struct region basic_new[] = {
	{ 700, 2000 },
	{ 5000, 1500 },
	{ 8292, 1000 },
};

static bool in_new(uint64_t o)
{
	for (int i = 0; i < 3; i++)
		if (o >= basic_new[i].off &&
		    o < basic_new[i].off + basic_new[i].len)
			return true;
	return false;
}

/* Outside the NEW regions the image is the synced OLD content. */
static void check_outside_new(struct buf img)
{
	for (uint64_t o = 0; o < img.len; o++) {
		if (in_new(o))
			continue;
		CHECK(img.p[o] == (o < 8192 ? old_byte(o) : 0));
	}
}

/* Each 512-byte sector of a region (by file offset) is wholly OLD or wholly
 * NEW (the region past the synced end: zero or absent). True if the region
 * mixes both. */
static bool check_sectors(struct buf img, struct region r)
{
	bool seen_new = false, seen_old = false;
	uint64_t off = r.off, end = r.off + r.len;

	while (off < end) {
		uint64_t next = (off / 512 + 1) * 512;
		if (next > end)
			next = end;
		enum kind k = range_kind(img, off, next - off);
		CHECK(k != K_MIXED);
		CHECK(k != (r.off >= 8192 ? K_OLD : K_ZERO));
		if (k == K_NEW)
			seen_new = true;
		else
			seen_old = true;
		off = next;
	}
	return seen_new && seen_old;
}

static void check_basic_random(const char *state, const char *out)
{
	bool seen_applied = false, seen_skipped = false;

	for (unsigned seed = 1; seed <= SEEDS; seed++) {
		image_ok(state, out, "random", seed);
		struct buf img = slurp(out);
		check_outside_new(img);
		for (int i = 0; i < 3; i++) {
			enum kind k = range_kind(img, basic_new[i].off,
						 basic_new[i].len);
			/* Whole records: all NEW or all as before. */
			CHECK(k == K_NEW || k == (i < 2 ? K_OLD : K_ZERO));
			seen_applied |= k == K_NEW;
			seen_skipped |= k != K_NEW;
		}
		/* Nothing past the synced end unless the last write is in. */
		CHECK(img.len == 8192 || img.len == 9292);
		free(img.p);
	}
	CHECK(seen_applied && seen_skipped);
}

static void check_basic_torn(const char *state, const char *out)
{
	bool mixed = false;
	uint64_t torn = 0;

	for (unsigned seed = 1; seed <= SEEDS; seed++) {
		torn += field(image_ok(state, out, "torn", seed), "torn");
		struct buf img = slurp(out);
		check_outside_new(img);
		for (int i = 0; i < 3; i++)
			mixed |= check_sectors(img, basic_new[i]);
		free(img.p);
	}
	CHECK(mixed && torn > 0);
}

/* A damaged tail ends the journal: a cut-off last record, then a flipped
 * byte in the second one. */
static void check_basic_damage(const char *state, const char *out)
{
	char *jpath = path_in(state, "data.mdb.journal");
	struct buf j = slurp(jpath);
	const char *line;
	FILE *f;

	CHECK(truncate(jpath, (off_t)j.len - 1) == 0);
	line = image_ok(state, out, "all", 0);
	CHECK(field(line, "maybe") == 2 && field(line, "out_bytes") == 8192);
	/* Records: 32-byte header + data; the second starts after 2000. */
	f = fopen(jpath, "r+");
	CHECK(f != NULL);
	CHECK(fseek(f, 32 + 2000 + 32 + 100, SEEK_SET) == 0);
	CHECK(fputc(0x5a, f) != EOF);
	CHECK(fclose(f) == 0);
	line = image_ok(state, out, "all", 0);
	CHECK(field(line, "maybe") == 1);
	struct buf img = slurp(out);
	CHECK(range_kind(img, 700, 2000) == K_NEW);
	CHECK(range_kind(img, 5000, 1500) == K_OLD);
	free(img.p);
	free(j.p);
}

static void test_basic(void)
{
	const char *dir = make_dir("basic"), *state = make_dir("basic-state");
	char *out = strdup(path_in(root, "basic.img"));
	struct buf real, img, again;
	const char *line;

	CHECK(killed(run_child("basic", dir, NULL, state, NULL)));
	real = slurp(path_in(dir, "data.mdb"));
	CHECK(real.len == 9292);

	line = image_ok(state, out, "synced", 0);
	CHECK(strstr(line, " base_bytes=8192 durable=0 maybe=3 applied=0 "
			   "torn=0 skipped=3 out_bytes=8192\n"));
	img = slurp(out);
	CHECK(img.len == 8192 && range_kind(img, 0, 8192) == K_OLD);
	free(img.p);

	line = image_ok(state, out, "all", 0);
	CHECK(field(line, "applied") == 3 && field(line, "out_bytes") == 9292);
	img = slurp(out);
	CHECK(same(img, real));
	check_outside_new(img);
	for (int i = 0; i < 3; i++)
		CHECK(range_kind(img, basic_new[i].off, basic_new[i].len) ==
		      K_NEW);
	free(img.p);

	check_basic_random(state, out);
	check_basic_torn(state, out);

	/* Deterministic for a seed. */
	image_ok(state, out, "torn", 5);
	img = slurp(out);
	image_ok(state, out, "torn", 5);
	again = slurp(out);
	CHECK(same(img, again));
	free(img.p);
	free(again.p);
	free(real.p);

	check_basic_damage(state, out);
	free(out);
	free((char *)dir);
	free((char *)state);
	printf("ok 1 basic: synced/all/random/torn images, damaged tail\n");
}

/* ---- case 2: O_DSYNC ---------------------------------------------------- */

static void test_dsync(void)
{
	const char *dir = make_dir("dsync"), *state = make_dir("dsync-state");
	char *out = strdup(path_in(root, "dsync.img"));
	const char *line;
	struct buf img, real;

	CHECK(killed(run_child("dsync", dir, NULL, state, NULL)));
	line = image_ok(state, out, "synced", 0);
	CHECK(field(line, "durable") == 2 && field(line, "maybe") == 3);
	img = slurp(out);
	CHECK(img.len == 4096);
	CHECK(range_kind(img, 0, 1024) == K_OLD);
	CHECK(range_kind(img, 1024, 512) == K_NEW);  /* O_DSYNC fd */
	CHECK(range_kind(img, 1536, 1464) == K_OLD); /* plain fd: lost */
	CHECK(range_kind(img, 3000, 100) == K_NEW);  /* O_SYNC fd */
	CHECK(range_kind(img, 3100, 996) == K_OLD);
	free(img.p);

	image_ok(state, out, "all", 0);
	img = slurp(out);
	real = slurp(path_in(dir, "data.mdb"));
	CHECK(range_kind(img, 2048, 512) == K_NEW && same(img, real));
	free(img.p);
	free(real.p);
	free(out);
	free((char *)dir);
	free((char *)state);
	printf("ok 2 dsync: O_DSYNC/O_SYNC writes durable, plain ones not\n");
}

/* ---- case 3: writev at the current position ----------------------------- */

static void check_writev_image(struct buf img, uint64_t len)
{
	CHECK(img.len == len);
	CHECK(range_kind(img, 0, 1000) == K_OLD);
	CHECK(range_kind(img, 1000, 2000) == K_ZERO);
	CHECK(range_kind(img, 3000, 1800) == K_NEW);
	CHECK(range_kind(img, 4800, 1200) == K_ZERO);
	CHECK(range_kind(img, 6000, 400) == K_NEW);
	if (len > 6400) {
		CHECK(range_kind(img, 6400, 600) == K_ZERO);
		CHECK(range_kind(img, 7000, 50) == K_NEW);
	}
}

static void test_writev(void)
{
	const char *dir = make_dir("writev"), *state = make_dir("writev-state");
	char *out = strdup(path_in(root, "writev.img"));
	uint64_t writes, syncs;
	struct buf img, real;

	CHECK(killed(run_child("writev", dir, NULL, state, NULL)));
	image_ok(state, out, "synced", 0);
	img = slurp(out);
	check_writev_image(img, 6400);
	free(img.p);
	image_ok(state, out, "all", 0);
	img = slurp(out);
	check_writev_image(img, 7050);
	real = slurp(path_in(dir, "data.mdb"));
	CHECK(same(img, real));
	free(img.p);
	free(real.p);
	/* Eight write calls on data.mdb, two syncs; the eventfd and
	 * other.txt, on numbers data.mdb had, not counted. */
	read_counters(state, &writes, &syncs);
	CHECK(writes == 8 && syncs == 2);
	free(out);
	free((char *)dir);
	free((char *)state);
	printf("ok 3 writev: current position, dup, F_DUPFD, O_APPEND, "
	       "failed and short writes, reused fds\n");
}

/* ---- case 4: injected failures ------------------------------------------ */

static void test_failwrite(const char *errname, int k, int e)
{
	char name[32], envk[32], enve[48], arg[32], want[64];
	const char *extra[] = { envk, enve, NULL };
	uint64_t writes, syncs;
	struct buf real, img, log;

	snprintf(name, sizeof name, "failwrite-%s", errname);
	const char *dir = make_dir(name);
	snprintf(name, sizeof name, "failwrite-%s-state", errname);
	const char *state = make_dir(name);
	char *out = strdup(path_in(root, "failwrite.img"));

	snprintf(envk, sizeof envk, "FAULTFS_FAIL_WRITE=%d", k);
	snprintf(enve, sizeof enve, "FAULTFS_ERRNO=%s", errname);
	snprintf(arg, sizeof arg, "%d,%d", k, e);
	CHECK(exited_0(run_child("failwrite", dir, arg, state, extra)));

	real = slurp(path_in(dir, "data.mdb"));
	CHECK(real.len == 5000);
	for (int i = 1; i <= 5; i++)
		CHECK(range_kind(real, (uint64_t)(i - 1) * 1000, 1000) ==
		      (i == k ? K_ZERO : K_NEW));
	image_ok(state, out, "all", 0);
	img = slurp(out);
	CHECK(same(img, real));
	free(img.p);
	free(real.p);

	read_counters(state, &writes, &syncs);
	CHECK(writes == 5 && syncs == 1);
	log = slurp(path_in(state, "failures.log"));
	snprintf(want, sizeof want, "fail write k=%d errno=%d\n", k, e);
	CHECK(strcmp((char *)log.p, want) == 0);
	free(log.p);
	free(out);
	free((char *)dir);
	free((char *)state);
}

static void test_failsync(void)
{
	const char *extra[] = { "FAULTFS_FAIL_SYNC=2", NULL };
	const char *dir = make_dir("failsync"),
		   *state = make_dir("failsync-st");
	const char *dir2 = make_dir("failsync2"),
		   *state2 = make_dir("failsync2-st");
	char *out = strdup(path_in(root, "failsync.img"));
	uint64_t writes, syncs;
	struct buf img, log;

	/* The failed sync made nothing durable. */
	CHECK(killed(run_child("failsync", dir, "kill", state, extra)));
	image_ok(state, out, "synced", 0);
	img = slurp(out);
	CHECK(img.len == 1000 && range_kind(img, 0, 1000) == K_OLD);
	free(img.p);
	image_ok(state, out, "all", 0);
	img = slurp(out);
	CHECK(img.len == 2000 && range_kind(img, 1000, 1000) == K_NEW);
	free(img.p);
	read_counters(state, &writes, &syncs);
	CHECK(writes == 2 && syncs == 2);
	log = slurp(path_in(state, "failures.log"));
	CHECK(strcmp((char *)log.p, "fail sync k=2 errno=5\n") == 0);
	free(log.p);

	/* Only the second fails: the third syncs everything. */
	CHECK(exited_0(run_child("failsync", dir2, "more", state2, extra)));
	image_ok(state2, out, "synced", 0);
	img = slurp(out);
	CHECK(img.len == 3000 && range_kind(img, 0, 1000) == K_OLD &&
	      range_kind(img, 1000, 2000) == K_NEW);
	free(img.p);
	read_counters(state2, &writes, &syncs);
	CHECK(writes == 3 && syncs == 3);
	free(out);
	free((char *)dir);
	free((char *)state);
	free((char *)dir2);
	free((char *)state2);
}

/* ---- case 5: LMDB ------------------------------------------------------- */

/* How many of the prefix's keys the image at dir/data.mdb holds with the
 * right value; -1 if LMDB cannot open it. */
static int lmdb_count(const char *dir, char prefix)
{
	uint8_t want[LMDB_VAL];
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	char key[16];
	int n = -1;

	CHECK(mdb_env_create(&env) == 0);
	if (mdb_env_open(env, dir, MDB_RDONLY | MDB_NOLOCK, 0644) ||
	    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) ||
	    mdb_dbi_open(txn, NULL, 0, &dbi))
		goto out;
	n = 0;
	for (int i = 0; i < LMDB_KEYS; i++) {
		snprintf(key, sizeof key, "%c%04d", prefix, i);
		MDB_val k = { strlen(key), key }, v;
		lmdb_value(prefix, i, want);
		if (mdb_get(txn, dbi, &k, &v) == 0 && v.mv_size == LMDB_VAL &&
		    memcmp(v.mv_data, want, LMDB_VAL) == 0)
			n++;
	}
out:
	if (txn)
		mdb_txn_abort(txn);
	mdb_env_close(env);
	return n;
}

static void check_lmdb_image(const char *state, const char *imgdir,
			     const char *mode, unsigned seed, bool want_c)
{
	image_ok(state, path_in(imgdir, "data.mdb"), mode, seed);
	CHECK(lmdb_count(imgdir, 'a') == LMDB_KEYS);
	CHECK(lmdb_count(imgdir, 'b') == LMDB_KEYS);
	CHECK(lmdb_count(imgdir, 'c') == (want_c ? LMDB_KEYS : 0));
}

static void test_lmdb(void)
{
	static const char *modes[] = { "random", "torn" };
	const char *dir = make_dir("lmdb"), *sa = make_dir("lmdb-state-ab");
	const char *sc = make_dir("lmdb-state-c"), *img = make_dir("lmdb-img");
	struct buf real, b;

	/* Default flags: whatever the cut leaves, committed is committed,
	 * and the synced image is the file itself: no write went unseen. */
	CHECK(killed(run_child("lmdb", dir, "default", sa, NULL)));
	real = slurp(path_in(dir, "data.mdb"));
	check_lmdb_image(sa, img, "synced", 0, false);
	b = slurp(path_in(img, "data.mdb"));
	CHECK(same(b, real));
	free(b.p);
	check_lmdb_image(sa, img, "all", 0, false);
	for (int m = 0; m < 2; m++)
		for (unsigned seed = 1; seed <= 3; seed++)
			check_lmdb_image(sa, img, modes[m], seed, false);
	free(real.p);

	/* MDB_NOSYNC: C is only in the page cache. */
	CHECK(killed(run_child("lmdb", dir, "nosync", sc, NULL)));
	real = slurp(path_in(dir, "data.mdb"));
	check_lmdb_image(sc, img, "synced", 0, false);
	check_lmdb_image(sc, img, "all", 0, true);
	b = slurp(path_in(img, "data.mdb"));
	CHECK(same(b, real));
	free(b.p);
	free(real.p);
	free((char *)dir);
	free((char *)sa);
	free((char *)sc);
	free((char *)img);
	printf("ok 5 lmdb: default-flag commits in every image, NOSYNC commit "
	       "only in 'all'\n");
}

/* ---- case 6: inert ------------------------------------------------------ */

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	CHECK(d != NULL);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static int run_true(const char *state)
{
	char *argv[] = { "/bin/true", NULL };
	char **env = child_env(state, NULL);
	int status = spawn(argv, env, NULL, 0);

	free(env);
	return status;
}

static void test_inert(void)
{
	const char *extra[] = { "FAULTFS_FAIL_WRITE=1", "FAULTFS_FAIL_SYNC=1",
				NULL };
	const char *dir = make_dir("inert"), *dir2 = make_dir("inert-empty");
	const char *state = make_dir("true-state");
	char line[512];

	CHECK(exited_0(run_child("inert", dir, NULL, NULL, extra)));
	CHECK(count_entries(dir) == 1);
	CHECK(exited_0(run_child("inert", dir2, NULL, "", extra)));
	CHECK(count_entries(dir2) == 1);

	/* Preloaded into a program built without sanitizers. */
	CHECK(exited_0(run_true(NULL)));
	CHECK(exited_0(run_true(state)));
	CHECK(count_entries(state) == 0); /* no tracked open, no state */
	/* A state directory that is not there: a test that could not
	 * record must not pass, so the library aborts. */
	int st = run_true(path_in(root, "no-such-dir"));
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	/* The tool fails cleanly without state. */
	CHECK(image(path_in(root, "no-such-dir"), path_in(root, "x.img"), "all",
		    0, line, sizeof line) == 1);
	free((char *)dir);
	free((char *)dir2);
	free((char *)state);
	printf("ok 6 inert: no state, no failures; /bin/true preloads\n");
}

/* ---- case 7: the builder on a hand-made journal ------------------------- */

/* The library empties the journal at every sync, so only a kill between
 * its SYNC record and the emptying leaves SYNC records for the builder:
 * made here by hand, with the SHORT, DURABLE and damaged-tail cases. */
static void put_record(FILE *f, uint32_t type, uint64_t off, uint64_t len,
		       bool with_data)
{
	uint8_t hdr[FJ_HDR_SIZE];
	uint8_t *data = pattern(true, off, len);
	uint32_t crc = with_data ? fj_crc(0, data, len) : 0;

	fj_header(hdr, type, off, len, crc);
	CHECK(fwrite(hdr, 1, sizeof hdr, f) == sizeof hdr);
	if (with_data)
		CHECK(fwrite(data, 1, len, f) == len);
	free(data);
}

static void test_builder(void)
{
	const char *state = make_dir("builder-state");
	char *out = strdup(path_in(root, "builder.img"));
	uint8_t *old = pattern(false, 0, 4096);
	uint8_t hdr[FJ_HDR_SIZE];
	const char *line;
	struct buf img;
	FILE *f;

	f = fopen(path_in(state, "data.mdb.synced"), "w");
	CHECK(f && fwrite(old, 1, 4096, f) == 4096 && fclose(f) == 0);
	free(old);
	f = fopen(path_in(state, "data.mdb.journal"), "w");
	CHECK(f != NULL);
	put_record(f, FJ_MAYBE, 0, 512, true);
	put_record(f, FJ_SYNC, 0, 0, false);
	put_record(f, FJ_MAYBE, 1000, 100, true);
	put_record(f, FJ_SHORT, 1000, 50, false); /* only 50 written */
	put_record(f, FJ_MAYBE, 2000, 100, true);
	put_record(f, FJ_SYNC, 0, 0, false); /* the last one */
	put_record(f, FJ_MAYBE, 3000, 100, true);
	put_record(f, FJ_DURABLE, 3500, 100, true);
	put_record(f, FJ_MAYBE, 4000, 200, true);
	fj_header(hdr, FJ_MAYBE, 0, 4096, 0); /* a kill mid-append */
	CHECK(fwrite(hdr, 1, sizeof hdr, f) == sizeof hdr);
	CHECK(fclose(f) == 0);

	line = image_ok(state, out, "synced", 0);
	CHECK(strstr(line, " base_bytes=4096 durable=4 maybe=2 applied=0 "
			   "torn=0 skipped=2 out_bytes=4096\n"));
	img = slurp(out);
	CHECK(range_kind(img, 0, 512) == K_NEW);
	CHECK(range_kind(img, 512, 488) == K_OLD);
	CHECK(range_kind(img, 1000, 50) == K_NEW);
	CHECK(range_kind(img, 1050, 950) == K_OLD);
	CHECK(range_kind(img, 2000, 100) == K_NEW);
	CHECK(range_kind(img, 2100, 1400) == K_OLD);
	CHECK(range_kind(img, 3500, 100) == K_NEW);
	CHECK(range_kind(img, 3600, 496) == K_OLD);
	free(img.p);

	line = image_ok(state, out, "all", 0);
	CHECK(field(line, "applied") == 2 && field(line, "out_bytes") == 4200);
	img = slurp(out);
	CHECK(range_kind(img, 3000, 100) == K_NEW);
	CHECK(range_kind(img, 4000, 200) == K_NEW);
	CHECK(range_kind(img, 1050, 950) == K_OLD);
	free(img.p);
	free(out);
	free((char *)state);
	printf("ok 7 builder: last SYNC, SHORT, DURABLE, partial tail\n");
}

/* ---- main --------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int type,
		    struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

int main(int argc, char **argv)
{
	const char *tmp = getenv("TMPDIR");
	ssize_t n;

	if (argc >= 4 && strcmp(argv[1], "child") == 0)
		return child_main(argc, argv);
	lib_path = getenv("FAULTFS_LIB");
	tool_path = getenv("FAULTFS_IMAGE");
	if (!lib_path || !tool_path) {
		fprintf(stderr, "test_faultfs: set FAULTFS_LIB and "
				"FAULTFS_IMAGE\n");
		return 1;
	}
	n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
	CHECK(n > 0);
	self_path[n] = '\0';
	snprintf(root, sizeof root, "%s/test_faultfs.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	CHECK(mkdtemp(root) != NULL);
	/* Left behind when a check fails, to look at. */
	printf("test_faultfs: working in %s\n", root);
	fflush(stdout);

	test_basic();
	test_dsync();
	test_writev();
	test_failwrite("EIO", 3, EIO);
	test_failwrite("ENOSPC", 1, ENOSPC);
	test_failsync();
	printf("ok 4 failures: k-th write/sync fails, counters, "
	       "failures.log\n");
	test_lmdb();
	test_inert();
	test_builder();

	CHECK(nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
	printf("test_faultfs: all cases passed\n");
	return 0;
}
