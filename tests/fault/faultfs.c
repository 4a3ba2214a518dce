/*
 * faultfs.c — test-only LD_PRELOAD library: records every write to one
 * file (by basename, default data.mdb) that is not on disk yet, so that
 * faultfs-image can build what a power cut could leave; and fails the k-th
 * write or fsync on that file to test I/O error handling.
 *
 * Configured from the environment when loaded (inert if FAULTFS_STATE is
 * unset or empty):
 *
 *   FAULTFS_STATE=DIR       existing directory for the state below
 *   FAULTFS_TRACK=NAME      basename of the file to track (data.mdb)
 *   FAULTFS_FAIL_WRITE=K    the K-th write-like call on it fails
 *   FAULTFS_FAIL_SYNC=K     the K-th fsync/fdatasync on it fails
 *   FAULTFS_ERRNO=E         errno of those failures: EIO (default),
 *                           ENOSPC, EDQUOT, EROFS, EFBIG or a number
 *
 * State, started at the first open of the tracked file in this process:
 *
 *   DIR/NAME.synced    the file as it is durably on disk, up to the journal
 *   DIR/NAME.journal   the writes since (faultfs_journal.h)
 *   DIR/counters       two little-endian u64: write-like calls, syncs
 *   DIR/failures.log   one line per injected failure
 *
 * Preload it only into the process under test: every process that loads it
 * with FAULTFS_STATE set and opens the tracked file starts the state anew,
 * taking the file as it finds it as durable.
 *
 * Only SIGKILL is simulated for the library's own files: nothing of the
 * state is fsynced. The library's own I/O goes through raw syscalls so it
 * never re-enters the interposed functions.
 *
 * Not seen: writes through a shared mapping (LMDB's MDB_WRITEMAP),
 * sync_file_range, sync, syncfs and msync (LMDB 0.9.24 without
 * MDB_WRITEMAP uses none of them; a missed sync only makes images older).
 * fallocate and ftruncate pass through unrecorded: an image is as long as
 * its base or its last applied write, whichever ends later.
 */
/* The interposed names must be the plain symbols: no inline fortify
 * wrappers, no redirection of open to open64 (both are defined here). */
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS

#include "faultfs_journal.h"

#include <dlfcn.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define EXPORT	     __attribute__((visibility("default")))
#define FF_MAX_FDS   64
#define FF_CHUNK_IOV 64 /* iovecs per writev when appending a record */

/* glibc's fortified entry points (declared only under _FORTIFY_SOURCE). */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

static struct {
	bool enabled; /* read without the lock: set once, in the constructor */
	char dir[PATH_MAX];
	char track[NAME_MAX + 1];
	uint64_t fail_write, fail_sync; /* 0: never */
	int fail_errno;

	pthread_mutex_t lock; /* everything below */
	bool started;
	int journal_fd, base_fd;
	uint64_t *counters; /* shared mapping of DIR/counters */
	uint64_t writes, syncs;
	int fds[FF_MAX_FDS]; /* descriptors of the tracked file */
	int nfds;
} ff = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.journal_fd = -1,
	.base_fd = -1,
};

/* ---- helpers ------------------------------------------------------------ */

static void die(const char *fmt, ...)
	__attribute__((noreturn, format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("faultfs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* The next definition of name after this library (libc, or a sanitizer's
 * interceptor in front of it), looked up once. */
static void *real_sym(void **slot, const char *name)
{
	void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

	if (p == NULL) {
		p = dlsym(RTLD_NEXT, name);
		if (p == NULL)
			die("no real %s", name);
		__atomic_store_n(slot, p, __ATOMIC_RELEASE);
	}
	return p;
}

#define REAL(fn)                                             \
	({                                                   \
		static void *real_slot_;                     \
		(__typeof__(&fn))real_sym(&real_slot_, #fn); \
	})

static bool ff_on(void)
{
	return __atomic_load_n(&ff.enabled, __ATOMIC_ACQUIRE);
}

/* Set while this thread holds the lock: a signal handler that writes in
 * the middle of a recorded call must not wait for itself. */
static _Thread_local bool in_lib;

/* Take the state lock; false (and no lock) if the library is off or this
 * thread already holds it: the caller just forwards the call then. */
static bool state_lock(void)
{
	if (!ff_on() || in_lib)
		return false;
	in_lib = true;
	pthread_mutex_lock(&ff.lock);
	return true;
}

static void state_unlock(void)
{
	pthread_mutex_unlock(&ff.lock);
	in_lib = false;
}

static int sys_open(const char *path, int flags, mode_t mode)
{
	return (int)syscall(SYS_openat, AT_FDCWD, path, flags | O_CLOEXEC,
			    mode);
}

static void sys_close(int fd)
{
	syscall(SYS_close, fd);
}

/* Write all of iov (modified on the way) or die: the state must be whole. */
static void sys_writev_all(int fd, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		ssize_t n = syscall(SYS_writev, fd, iov, cnt);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("writing state in %s: %s", ff.dir,
			    n < 0 ? strerror(errno) : "no progress");
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
}

static void sys_pwrite_all(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = syscall(SYS_pwrite64, fd, p, (size_t)len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("writing %s.synced: %s", ff.track,
			    n < 0 ? strerror(errno) : "no progress");
		p += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
}

static void state_path(char *out, const char *name, const char *suffix)
{
	/* Lengths were checked in the constructor: this cannot fire. */
	if (snprintf(out, PATH_MAX, "%s/%s%s", ff.dir, name, suffix) >=
	    PATH_MAX)
		die("state path too long");
}

/* ---- tracked descriptors (lock held) ------------------------------------ */

static int fd_index(int fd)
{
	for (int i = 0; i < ff.nfds; i++)
		if (ff.fds[i] == fd)
			return i;
	return -1;
}

static void fd_forget(int fd)
{
	int i = fd_index(fd);

	if (i >= 0)
		ff.fds[i] = ff.fds[--ff.nfds];
}

static void fd_add(int fd)
{
	if (fd_index(fd) >= 0)
		return;
	if (ff.nfds == FF_MAX_FDS)
		die("more than %d descriptors of %s", FF_MAX_FDS, ff.track);
	ff.fds[ff.nfds++] = fd;
}

static bool is_internal_fd(int fd)
{
	return fd >= 0 && (fd == ff.journal_fd || fd == ff.base_fd);
}

/* ---- state files (lock held) -------------------------------------------- */

static void counters_store(void)
{
	if (ff.counters == NULL)
		return;
	__atomic_store_n(&ff.counters[0], htole64(ff.writes), __ATOMIC_RELAXED);
	__atomic_store_n(&ff.counters[1], htole64(ff.syncs), __ATOMIC_RELAXED);
}

static void counters_open(void)
{
	char path[PATH_MAX];
	void *map;
	int fd;

	state_path(path, "counters", "");
	fd = sys_open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	if (ftruncate(fd, 2 * sizeof(uint64_t)))
		die("truncate %s: %s", path, strerror(errno));
	/* A shared mapping survives SIGKILL in the page cache. */
	map = mmap(NULL, 2 * sizeof(uint64_t), PROT_READ | PROT_WRITE,
		   MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die("mmap %s: %s", path, strerror(errno));
	sys_close(fd);
	ff.counters = map;
	counters_store();
}

static void log_failure(const char *what, uint64_t k)
{
	char path[PATH_MAX], line[96];
	struct iovec iov;
	int fd, n;

	n = snprintf(line, sizeof line, "fail %s k=%llu errno=%d\n", what,
		     (unsigned long long)k, ff.fail_errno);
	state_path(path, "failures.log", "");
	fd = sys_open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	iov.iov_base = line;
	iov.iov_len = (size_t)n;
	sys_writev_all(fd, &iov, 1);
	sys_close(fd);
}

/* Copy the tracked file as it is now into DIR/NAME.synced. */
static void copy_base(int dirfd, const char *path)
{
	static uint8_t buf[64 * 1024]; /* lock held */
	char tmp[PATH_MAX], dst[PATH_MAX];
	uint64_t off = 0;
	int src, out;

	src = (int)syscall(SYS_openat, dirfd, path, O_RDONLY | O_CLOEXEC);
	if (src < 0)
		die("open %s: %s", path, strerror(errno));
	state_path(tmp, ff.track, ".synced.tmp");
	state_path(dst, ff.track, ".synced");
	out = sys_open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (out < 0)
		die("open %s: %s", tmp, strerror(errno));
	for (;;) {
		ssize_t n = syscall(SYS_pread64, src, buf, sizeof buf, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read %s: %s", path, strerror(errno));
		if (n == 0)
			break;
		sys_pwrite_all(out, buf, (uint64_t)n, off);
		off += (uint64_t)n;
	}
	sys_close(src);
	if (rename(tmp, dst))
		die("rename %s: %s", tmp, strerror(errno));
	ff.base_fd = out;
}

/*
 * First open of the tracked file: the file as found is the durable base
 * and the journal starts empty. The old journal goes first, so that a kill
 * in between never pairs it with the new base.
 */
static void start(int dirfd, const char *path)
{
	char jpath[PATH_MAX];

	state_path(jpath, ff.track, ".journal");
	if (unlink(jpath) && errno != ENOENT)
		die("unlink %s: %s", jpath, strerror(errno));
	copy_base(dirfd, path);
	/* Read-write: journal_apply maps it. */
	ff.journal_fd =
		sys_open(jpath, O_RDWR | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (ff.journal_fd < 0)
		die("open %s: %s", jpath, strerror(errno));
	counters_open();
	ff.started = true;
}

/*
 * Append one record whose data is the first dlen bytes of iov: one writev
 * when it has at most FF_CHUNK_IOV pieces.
 */
static void journal_append(uint32_t type, uint64_t off, uint64_t len,
			   const struct iovec *iov, int iovcnt, uint64_t dlen)
{
	struct iovec out[FF_CHUNK_IOV + 1];
	uint8_t hdr[FJ_HDR_SIZE];
	uint32_t crc = 0;
	uint64_t left = dlen;
	int k = 1;

	for (int i = 0; i < iovcnt && left > 0; i++) {
		size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
		crc = fj_crc(crc, iov[i].iov_base, n);
		left -= n;
	}
	fj_header(hdr, type, off, len, crc);
	out[0].iov_base = hdr;
	out[0].iov_len = sizeof hdr;
	left = dlen;
	for (int i = 0; i < iovcnt && left > 0; i++) {
		size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
		if (n == 0)
			continue;
		out[k].iov_base = iov[i].iov_base;
		out[k].iov_len = n;
		k++;
		left -= n;
		if (k == FF_CHUNK_IOV + 1) {
			sys_writev_all(ff.journal_fd, out, k);
			k = 0;
		}
	}
	if (k > 0)
		sys_writev_all(ff.journal_fd, out, k);
}

/*
 * After a SYNC record: replay the journal onto the base, then empty it.
 * A kill half-way leaves base + the whole journal, which the image builder
 * replays again: applying a write twice gives the same bytes.
 */
static void journal_apply(void)
{
	struct fj_rec rec;
	struct stat st;
	enum fj_status s;
	size_t pos = 0;
	uint8_t *map;

	if (fstat(ff.journal_fd, &st))
		die("fstat journal: %s", strerror(errno));
	if (st.st_size == 0)
		return;
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE,
		   ff.journal_fd, 0);
	if (map == MAP_FAILED)
		die("mmap journal: %s", strerror(errno));
	while ((s = fj_next(map, (size_t)st.st_size, &pos, &rec)) == FJ_ENTRY)
		if (rec.type != FJ_SYNC && rec.length > 0)
			sys_pwrite_all(ff.base_fd, rec.data, rec.length,
				       rec.offset);
	if (s == FJ_DAMAGED)
		die("own journal damaged at %zu", pos);
	munmap(map, (size_t)st.st_size);
	if (ftruncate(ff.journal_fd, 0))
		die("truncate journal: %s", strerror(errno));
}

/* ---- configuration ------------------------------------------------------ */

static uint64_t env_count(const char *name)
{
	const char *s = getenv(name);
	char *end;
	unsigned long long v;

	if (s == NULL || *s == '\0')
		return 0;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end != '\0' || *s == '-')
		die("%s=%s: not a count", name, s);
	return v;
}

static int env_errno(void)
{
	static const struct {
		const char *name;
		int value;
	} names[] = {
		{ "EIO", EIO },	    { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT },
		{ "EROFS", EROFS }, { "EFBIG", EFBIG },
	};
	const char *s = getenv("FAULTFS_ERRNO");
	char *end;
	long v;

	if (s == NULL || *s == '\0')
		return EIO;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].value;
	v = strtol(s, &end, 10);
	if (*end != '\0' || v <= 0 || v > 4095)
		die("FAULTFS_ERRNO=%s: not an errno", s);
	return (int)v;
}

static void config_paths(const char *state)
{
	const char *track = getenv("FAULTFS_TRACK");
	struct stat st;

	if (track == NULL || *track == '\0')
		track = "data.mdb";
	if (strchr(track, '/') || strlen(track) > NAME_MAX - 16)
		die("FAULTFS_TRACK=%s: want a short basename", track);
	if (strlen(state) + strlen(track) + 32 >= PATH_MAX)
		die("FAULTFS_STATE too long");
	if (stat(state, &st) || !S_ISDIR(st.st_mode))
		die("FAULTFS_STATE=%s: not a directory", state);
	snprintf(ff.dir, sizeof ff.dir, "%s", state);
	snprintf(ff.track, sizeof ff.track, "%s", track);
}

static void fork_prepare(void)
{
	pthread_mutex_lock(&ff.lock);
}

static void fork_done(void)
{
	pthread_mutex_unlock(&ff.lock);
}

__attribute__((constructor)) static void faultfs_init(void)
{
	const char *state = getenv("FAULTFS_STATE");

	if (state == NULL || *state == '\0')
		return;
	config_paths(state);
	ff.fail_write = env_count("FAULTFS_FAIL_WRITE");
	ff.fail_sync = env_count("FAULTFS_FAIL_SYNC");
	ff.fail_errno = env_errno();
	/* A fork while another thread holds the lock must not leave it
	 * held forever in the child. */
	pthread_atfork(fork_prepare, fork_done, fork_done);
	__atomic_store_n(&ff.enabled, true, __ATOMIC_RELEASE);
}

/* ---- opens, dups, closes ------------------------------------------------ */

static bool is_tracked_name(const char *path)
{
	const char *base = strrchr(path, '/');

	return strcmp(base ? base + 1 : path, ff.track) == 0;
}

static int after_open(int fd, int dirfd, const char *path)
{
	int saved = errno;

	if (fd < 0 || !state_lock())
		return fd;
	fd_forget(fd); /* a number whose close went past us */
	if (path != NULL && is_tracked_name(path)) {
		if (!ff.started)
			start(dirfd, path);
		fd_add(fd);
	}
	state_unlock();
	errno = saved;
	return fd;
}

static int after_dup(int oldfd, int newfd)
{
	int saved = errno;

	if (newfd < 0 || newfd == oldfd || !state_lock())
		return newfd;
	fd_forget(newfd);
	if (fd_index(oldfd) >= 0)
		fd_add(newfd);
	state_unlock();
	errno = saved;
	return newfd;
}

static void check_not_internal(int fd, const char *call)
{
	bool internal;

	if (!state_lock())
		return;
	internal = is_internal_fd(fd);
	state_unlock();
	if (internal)
		die("%s over the library's own descriptor %d", call, fd);
}

/* The mode argument exists only with O_CREAT or O_TMPFILE. */
#define OPEN_MODE(flags)                                           \
	mode_t mode = 0;                                           \
	if ((flags)&O_CREAT || ((flags)&O_TMPFILE) == O_TMPFILE) { \
		va_list ap;                                        \
		va_start(ap, flags);                               \
		mode = va_arg(ap, mode_t);                         \
		va_end(ap);                                        \
	}

EXPORT int open(const char *path, int flags, ...)
{
	OPEN_MODE(flags);
	return after_open(REAL(open)(path, flags, mode), AT_FDCWD, path);
}

EXPORT int open64(const char *path, int flags, ...)
{
	OPEN_MODE(flags);
	return after_open(REAL(open64)(path, flags, mode), AT_FDCWD, path);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	OPEN_MODE(flags);
	return after_open(REAL(openat)(dirfd, path, flags, mode), dirfd, path);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	OPEN_MODE(flags);
	return after_open(REAL(openat64)(dirfd, path, flags, mode), dirfd,
			  path);
}

EXPORT int __open_2(const char *path, int flags)
{
	return after_open(REAL(__open_2)(path, flags), AT_FDCWD, path);
}

EXPORT int __open64_2(const char *path, int flags)
{
	return after_open(REAL(__open64_2)(path, flags), AT_FDCWD, path);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	return after_open(REAL(__openat_2)(dirfd, path, flags), dirfd, path);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	return after_open(REAL(__openat64_2)(dirfd, path, flags), dirfd, path);
}

EXPORT int creat(const char *path, mode_t mode)
{
	return after_open(REAL(creat)(path, mode), AT_FDCWD, path);
}

EXPORT int creat64(const char *path, mode_t mode)
{
	return after_open(REAL(creat64)(path, mode), AT_FDCWD, path);
}

EXPORT int dup(int fd)
{
	return after_dup(fd, REAL(dup)(fd));
}

EXPORT int dup2(int fd, int newfd)
{
	if (fd != newfd)
		check_not_internal(newfd, "dup2");
	return after_dup(fd, REAL(dup2)(fd, newfd));
}

EXPORT int dup3(int fd, int newfd, int flags)
{
	check_not_internal(newfd, "dup3");
	return after_dup(fd, REAL(dup3)(fd, newfd, flags));
}

/* Every fcntl argument fits in a pointer-sized slot, as glibc assumes. */
EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	int r = REAL(fcntl)(fd, cmd, arg);
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		return after_dup(fd, r);
	return r;
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	int r = REAL(fcntl64)(fd, cmd, arg);
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		return after_dup(fd, r);
	return r;
}

EXPORT int close(int fd)
{
	bool internal = false;

	if (state_lock()) {
		internal = is_internal_fd(fd);
		if (!internal)
			fd_forget(fd);
		state_unlock();
	}
	/* A program closing every descriptor must not end the recording. */
	if (internal)
		return 0;
	return REAL(close)(fd);
}

/* Forget tracked descriptors in [first, last]; lowest internal one in it
 * (or -1) goes to *keep, sorted. */
static int forget_range(unsigned first, unsigned last, int keep[2])
{
	int n = 0, fds[2] = { -1, -1 };

	if (state_lock()) {
		for (int i = ff.nfds - 1; i >= 0; i--)
			if ((unsigned)ff.fds[i] >= first &&
			    (unsigned)ff.fds[i] <= last)
				ff.fds[i] = ff.fds[--ff.nfds];
		fds[0] = ff.journal_fd;
		fds[1] = ff.base_fd;
		state_unlock();
	}
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0 && (unsigned)fds[i] >= first &&
		    (unsigned)fds[i] <= last)
			keep[n++] = fds[i];
	if (n == 2 && keep[0] > keep[1]) {
		int t = keep[0];
		keep[0] = keep[1];
		keep[1] = t;
	}
	return n;
}

/* close_range that leaves the library's own descriptors open. */
static int close_range_sparing(unsigned first, unsigned last, int flags)
{
	int keep[2], n = forget_range(first, last, keep);
	unsigned lo = first;

	for (int i = 0; i < n; i++) {
		if ((unsigned)keep[i] > lo &&
		    REAL(close_range)(lo, (unsigned)keep[i] - 1, flags))
			return -1;
		lo = (unsigned)keep[i] + 1;
	}
	if (lo > last || lo == 0)
		return 0;
	return REAL(close_range)(lo, last, flags);
}

EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	if (!ff_on() || flags & CLOSE_RANGE_CLOEXEC)
		return REAL(close_range)(first, last, flags);
	return close_range_sparing(first, last, flags);
}

EXPORT void closefrom(int lowfd)
{
	if (!ff_on() || lowfd < 0) {
		REAL(closefrom)(lowfd);
		return;
	}
	if (close_range_sparing((unsigned)lowfd, ~0u, 0))
		die("closefrom(%d): %s", lowfd, strerror(errno));
}

/* ---- writes ------------------------------------------------------------- */

enum wkind {
	W_WRITE,
	W_PWRITE,
	W_PWRITE64,
	W_WRITEV,
	W_PWRITEV,
	W_PWRITEV64,
	W_PWRITEV2,
	W_PWRITEV64V2,
};

/* One write-like call, its arguments as an iovec array. */
struct wcall {
	enum wkind kind;
	int fd;
	const struct iovec *iov;
	int iovcnt;
	off_t off;
	int flags; /* pwritev2's RWF_* */
};

static ssize_t real_write(const struct wcall *c)
{
	switch (c->kind) {
	case W_WRITE:
		return REAL(write)(c->fd, c->iov[0].iov_base,
				   c->iov[0].iov_len);
	case W_PWRITE:
		return REAL(pwrite)(c->fd, c->iov[0].iov_base,
				    c->iov[0].iov_len, c->off);
	case W_PWRITE64:
		return REAL(pwrite64)(c->fd, c->iov[0].iov_base,
				      c->iov[0].iov_len, c->off);
	case W_WRITEV:
		return REAL(writev)(c->fd, c->iov, c->iovcnt);
	case W_PWRITEV:
		return REAL(pwritev)(c->fd, c->iov, c->iovcnt, c->off);
	case W_PWRITEV64:
		return REAL(pwritev64)(c->fd, c->iov, c->iovcnt, c->off);
	case W_PWRITEV2:
		return REAL(pwritev2)(c->fd, c->iov, c->iovcnt, c->off,
				      c->flags);
	case W_PWRITEV64V2:
		return REAL(pwritev64v2)(c->fd, c->iov, c->iovcnt, c->off,
					 c->flags);
	}
	errno = EINVAL;
	return -1;
}

static bool is_v2(const struct wcall *c)
{
	return c->kind == W_PWRITEV2 || c->kind == W_PWRITEV64V2;
}

/* Where the call will write: O_APPEND (or RWF_APPEND) means the end of the
 * file, even for pwrite on Linux; write/writev the current position. */
static uint64_t write_offset(const struct wcall *c, int fl)
{
	bool append = fl & O_APPEND;
	struct stat st;
	off_t off;

#ifdef RWF_APPEND
	if (is_v2(c) && c->flags & RWF_APPEND)
		append = true;
#endif
	if (append) {
		if (fstat(c->fd, &st))
			die("fstat fd %d: %s", c->fd, strerror(errno));
		return (uint64_t)st.st_size;
	}
	if (c->kind == W_WRITE || c->kind == W_WRITEV ||
	    (is_v2(c) && c->off == -1)) {
		off = lseek(c->fd, 0, SEEK_CUR);
		if (off < 0)
			die("lseek fd %d: %s", c->fd, strerror(errno));
		return (uint64_t)off;
	}
	return (uint64_t)c->off;
}

static bool write_durable(const struct wcall *c, int fl)
{
	/* O_SYNC includes the O_DSYNC bit. */
	if (fl & O_DSYNC)
		return true;
	return is_v2(c) && (c->flags & (RWF_DSYNC | RWF_SYNC));
}

static uint64_t iov_total(const struct iovec *iov, int cnt)
{
	uint64_t n = 0;

	for (int i = 0; i < cnt; i++)
		n += iov[i].iov_len;
	return n;
}

/* Tracked write, lock held: MAYBE before the call, then SHORT and/or
 * DURABLE depending on what the call did. */
static ssize_t tracked_write(const struct wcall *c)
{
	uint64_t off, total, k = ++ff.writes;
	ssize_t r;
	int fl, saved;

	counters_store();
	if (k == ff.fail_write) {
		log_failure("write", k);
		errno = ff.fail_errno;
		return -1;
	}
	fl = (int)syscall(SYS_fcntl, c->fd, F_GETFL);
	if (fl < 0)
		die("F_GETFL fd %d: %s", c->fd, strerror(errno));
	off = write_offset(c, fl);
	total = iov_total(c->iov, c->iovcnt);
	journal_append(FJ_MAYBE, off, total, c->iov, c->iovcnt, total);
	r = real_write(c);
	saved = errno;
	if (r < 0 || (uint64_t)r < total)
		journal_append(FJ_SHORT, off, r < 0 ? 0 : (uint64_t)r, NULL, 0,
			       0);
	if (r > 0 && write_durable(c, fl))
		journal_append(FJ_DURABLE, off, (uint64_t)r, c->iov, c->iovcnt,
			       (uint64_t)r);
	errno = saved;
	return r;
}

static ssize_t do_write(const struct wcall *c)
{
	ssize_t r;
	int saved;

	if (!state_lock())
		return real_write(c);
	if (fd_index(c->fd) < 0) {
		state_unlock();
		return real_write(c);
	}
	r = tracked_write(c);
	saved = errno;
	state_unlock();
	errno = saved;
	return r;
}

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	struct iovec v = { (void *)buf, n };
	struct wcall c = { W_WRITE, fd, &v, 1, 0, 0 };
	return do_write(&c);
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	struct iovec v = { (void *)buf, n };
	struct wcall c = { W_PWRITE, fd, &v, 1, off, 0 };
	return do_write(&c);
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
	struct iovec v = { (void *)buf, n };
	struct wcall c = { W_PWRITE64, fd, &v, 1, off, 0 };
	return do_write(&c);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	struct wcall c = { W_WRITEV, fd, iov, cnt, 0, 0 };
	return do_write(&c);
}

EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	struct wcall c = { W_PWRITEV, fd, iov, cnt, off, 0 };
	return do_write(&c);
}

EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
	struct wcall c = { W_PWRITEV64, fd, iov, cnt, off, 0 };
	return do_write(&c);
}

EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off,
			int flags)
{
	struct wcall c = { W_PWRITEV2, fd, iov, cnt, off, flags };
	return do_write(&c);
}

EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt,
			   off64_t off, int flags)
{
	struct wcall c = { W_PWRITEV64V2, fd, iov, cnt, off, flags };
	return do_write(&c);
}

/* ---- syncs -------------------------------------------------------------- */

/* Tracked sync, lock held across the real call: a write recorded before
 * the SYNC record had completed before the sync began. */
static int tracked_sync(int fd, bool data_only)
{
	uint64_t k = ++ff.syncs;
	int r, saved;

	counters_store();
	if (k == ff.fail_sync) {
		/* Like Linux after a failed fsync: what was not on disk may
		 * never get there; the writes stay MAYBE. */
		log_failure("sync", k);
		errno = ff.fail_errno;
		return -1;
	}
	r = data_only ? REAL(fdatasync)(fd) : REAL(fsync)(fd);
	saved = errno;
	if (r == 0) {
		journal_append(FJ_SYNC, 0, 0, NULL, 0, 0);
		journal_apply();
	}
	errno = saved;
	return r;
}

static int do_sync(int fd, bool data_only)
{
	int r, saved;

	if (!state_lock())
		return data_only ? REAL(fdatasync)(fd) : REAL(fsync)(fd);
	if (fd_index(fd) < 0) {
		state_unlock();
		return data_only ? REAL(fdatasync)(fd) : REAL(fsync)(fd);
	}
	r = tracked_sync(fd, data_only);
	saved = errno;
	state_unlock();
	errno = saved;
	return r;
}

EXPORT int fsync(int fd)
{
	return do_sync(fd, false);
}

EXPORT int fdatasync(int fd)
{
	return do_sync(fd, true);
}
