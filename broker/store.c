/*
 * store.c — the LMDB layer; see store.h for the databases and keys.
 *
 * Records are protobuf-c messages (proto/store.proto) packed straight into
 * LMDB's buffer with MDB_RESERVE. Payloads carry a CRC-32 that is checked
 * on every read: LMDB itself keeps no checksums, and a flipped bit must
 * never be served as good data. A record that fails its checksum or does
 * not decode is STORE_EDECODE, never MDB_CORRUPTED (which stays LMDB's
 * own word for its pages) and never "not found".
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <zlib.h>

#include "clock.h"
#include "store_internal.h"

/* The record format (proto/store.proto) and database layout (store.h),
 * kept in meta "schema". */
#define SCHEMA_VERSION STORE_FORMAT_VERSION

static const char *db_names[DB_COUNT] = {
	"meta",	     "events",	   "payloads", "subs",
	"sub_names", "topic_subs", "topics",   "deliveries",
	"ready",     "leases",	   "dlq",      "idem",
	"expiry",    "audit",	   "commands", "topic_log",
};

const char *store_db_name(int db)
{
	return db >= 0 && db < DB_COUNT ? db_names[db] : NULL;
}

uint64_t be64_get(const void *p)
{
	const uint8_t *b = p;
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | b[i];
	return v;
}

void be64_put(void *p, uint64_t v)
{
	uint8_t *b = p;
	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
}

uint32_t be32_get(const void *p)
{
	const uint8_t *b = p;
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
	       (uint32_t)b[2] << 8 | b[3];
}

void be32_put(void *p, uint32_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)(v >> 24);
	b[1] = (uint8_t)(v >> 16);
	b[2] = (uint8_t)(v >> 8);
	b[3] = (uint8_t)v;
}

/* ---- opening ----------------------------------------------------------- */

int store_fsync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int rc = fsync(fd) ? errno : 0;
	close(fd);
	return rc;
}

/* ---- the files on disk: allocated, and not copy-on-write ----------------
 *
 * LMDB writes data.mdb with pwrite (a full disk is an error) but keeps its
 * reader table and transaction id in lock.mdb, a shared writable map: a
 * store into a page of it that owns no disk block (a hole; on btrfs any
 * page, as every write is copied to new space) needs space at fault time,
 * and on a full disk the kernel's answer is SIGBUS, at every start. So a
 * store's files own their blocks before LMDB maps them (posix_fallocate),
 * and on btrfs they are NOCOW (FS_NOCOW_FL: overwrites land in place; the
 * flag is only taken by an empty file, or inherited from the folder at
 * creation). For data.mdb the same keeps acks possible on a full btrfs:
 * space.c keeps blocks allocated past its last page, which only helps if
 * writing them needs no new space.
 */

/* LMDB's lock file for its default 126 readers (it keeps a larger one). */
#define LOCK_FILE_BYTES 8192

static bool on_btrfs(int fd)
{
	struct statfs sf;
	return fstatfs(fd, &sf) == 0 && sf.f_type == BTRFS_SUPER_MAGIC;
}

static bool is_nocow(int fd)
{
	int flags = 0;
	return ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && (flags & FS_NOCOW_FL);
}

/* FS_NOCOW_FL on a folder (inherited by files made in it) or an empty
 * file: 0 or errno. */
static int set_nocow(int fd)
{
	int flags = 0;
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags))
		return errno;
	if (flags & FS_NOCOW_FL)
		return 0;
	flags |= FS_NOCOW_FL;
	if (ioctl(fd, FS_IOC_SETFLAGS, &flags))
		return errno;
	return is_nocow(fd) ? 0 : EOPNOTSUPP;
}

/* Whether a file of this stat has its first `bytes` allocated, as far as
 * its block count tells (a hole shows as fewer blocks than bytes). Asked
 * before posix_fallocate: XFS wants free space for the whole range even
 * where it is allocated already, so on a full disk it would refuse a
 * file that needs nothing. */
static bool owns_blocks(const struct stat *sb, off_t bytes)
{
	return sb->st_size >= bytes &&
	       (uint64_t)sb->st_blocks * 512 >= (uint64_t)sb->st_size;
}

/* The first risk store_open could not remove; file is the file's name in
 * the store folder (the log names the folder). */
static void note_warning(struct store *st, const char *fmt, const char *file,
			 int rc)
{
	if (st && !st->fs_warning[0])
		snprintf(st->fs_warning, sizeof st->fs_warning, fmt, file,
			 strerror(rc));
}

/*
 * Make dir/lock.mdb a file LMDB can write through its map on a full disk.
 * Its content only means something while a process has the environment
 * open (the first opener rebuilds it), and LMDB tells "nobody has it open"
 * by a write lock on its byte 0: holding that lock, a copy-on-write lock
 * file on btrfs is emptied and made NOCOW. Then every page is allocated.
 * When another process (a tool reading the store) has it open, it is left
 * as it is (*alone false). *fd gets the file, holding that lock: keep it
 * open until after mdb_env_close (closing any descriptor of a file drops
 * the process's fcntl locks on it, LMDB's own included). A file whose
 * blocks the disk cannot give is refused: LMDB would die on it.
 */
static int prepare_lock_file(const char *dir, struct store *st, int *fd,
			     bool *alone, char *err, size_t errlen)
{
	char path[PATH_MAX + 16];
	struct flock excl = { .l_type = F_WRLCK,
			      .l_whence = SEEK_SET,
			      .l_start = 0,
			      .l_len = 1 };
	struct stat sb;
	int rc;

	snprintf(path, sizeof path, "%s/lock.mdb", dir);
	*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (*fd < 0) {
		rc = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(rc));
		return rc;
	}
	bool btrfs = on_btrfs(*fd);
	*alone = fcntl(*fd, F_SETLK, &excl) == 0;
	if (!*alone) {
		/* in use by another process: not ours to change */
		if (btrfs && !is_nocow(*fd))
			note_warning(st,
				     "%s is copy-on-write (btrfs) and in use "
				     "by another process, so it was left so "
				     "(%s): a full disk may stop the broker; "
				     "restart it with no tool reading the "
				     "store",
				     "lock.mdb", EBUSY);
		return 0;
	}
	if (btrfs && !is_nocow(*fd)) {
		if (ftruncate(*fd, 0) == 0)
			rc = set_nocow(*fd);
		else
			rc = errno;
		if (rc)
			note_warning(st,
				     "%s could not be made NOCOW (%s): on a "
				     "full btrfs writing to it may stop the "
				     "broker",
				     "lock.mdb", rc);
	}
	if (fstat(*fd, &sb)) {
		rc = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(rc));
		return rc;
	}
	off_t want =
		sb.st_size > LOCK_FILE_BYTES ? sb.st_size : LOCK_FILE_BYTES;
	rc = owns_blocks(&sb, want) ? 0 : posix_fallocate(*fd, 0, want);
	if (rc == EOPNOTSUPP || rc == ENOSYS)
		rc = 0; /* no allocation to ask for (not a local disk) */
	if (rc)
		snprintf(err, errlen,
			 "cannot allocate %s (%lld bytes): %s: LMDB writes "
			 "this file through a memory map, and a write into an "
			 "unallocated block on a full disk kills the process "
			 "(SIGBUS); free some space on the disk holding %s "
			 "and start again",
			 path, (long long)want, strerror(rc), dir);
	return rc;
}

/* LMDB may grow the lock file it was given (more readers than it holds):
 * allocate what it added. Best effort: the size it needs was allocated. */
static void allocate_lock_file(int fd)
{
	struct stat sb;
	if (fd >= 0 && fstat(fd, &sb) == 0 && !owns_blocks(&sb, sb.st_size))
		(void)posix_fallocate(fd, 0, sb.st_size);
}

static int copy_range(int from, int to, uint64_t len)
{
	enum { CHUNK = 1 << 20 };
	char *buf = malloc(CHUNK);
	int rc = 0;
	if (!buf)
		return ENOMEM;
	for (uint64_t off = 0; off < len && !rc;) {
		size_t n = len - off < CHUNK ? (size_t)(len - off) : CHUNK;
		ssize_t got = pread(from, buf, n, (off_t)off);
		if (got <= 0) {
			rc = got < 0 ? errno : EIO;
			break;
		}
		for (ssize_t done = 0; done < got && !rc;) {
			ssize_t w = pwrite(to, buf + done, (size_t)(got - done),
					   (off_t)(off + (uint64_t)done));
			if (w < 0)
				rc = errno;
			else
				done += w;
		}
		off += (uint64_t)got;
	}
	free(buf);
	return rc;
}

/*
 * On btrfs, a data.mdb made without NOCOW (by an older handoff, or copied
 * in) is copied once into a NOCOW file beside it, synced and renamed over
 * it. Only while nobody else has the environment open (the caller holds
 * the folder lock and lock.mdb's write lock). When the disk has no room
 * for the copy, the file stays as it is and st->fs_warning says so.
 */
static void make_data_nocow(const char *dir, struct store *st)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 32];
	struct stat sb;
	int from, to = -1, rc;

	snprintf(path, sizeof path, "%s/data.mdb", dir);
	snprintf(tmp, sizeof tmp, "%s/data.mdb.nocow", dir);
	(void)unlink(tmp); /* left by a start that died copying */
	from = open(path, O_RDONLY | O_CLOEXEC);
	if (from < 0)
		return; /* mdb_env_open will say why */
	if (!on_btrfs(from) || is_nocow(from) || fstat(from, &sb))
		goto out;
	to = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
		  sb.st_mode & 0777);
	if (to < 0) {
		rc = errno;
		goto failed;
	}
	rc = set_nocow(to);
	if (!rc)
		rc = posix_fallocate(to, 0, sb.st_size);
	if (!rc)
		rc = copy_range(from, to, (uint64_t)sb.st_size);
	if (!rc && fsync(to))
		rc = errno;
	if (!rc && rename(tmp, path))
		rc = errno;
	if (!rc)
		rc = store_fsync_path(dir, O_RDONLY | O_DIRECTORY);
	if (!rc) {
		st->nocow_converted_bytes = (uint64_t)sb.st_size;
		goto out;
	}
failed:
	if (to >= 0)
		(void)unlink(tmp);
	note_warning(st,
		     "%s is copy-on-write (btrfs) and could not be copied "
		     "into a NOCOW file (%s): on a full disk acks may fail "
		     "until space is freed; free as much space as the file "
		     "takes and restart to convert it",
		     "data.mdb", rc);
out:
	if (to >= 0)
		close(to);
	close(from);
}

static int create_dbs(MDB_env *env, MDB_dbi *dbi, bool init)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (rc)
		return rc;
	for (int i = 0; i < DB_COUNT; i++) {
		rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &dbi[i]);
		if (rc)
			goto fail;
	}
	if (init) {
		uint8_t v[4];
		be32_put(v, SCHEMA_VERSION);
		MDB_val k = { 6, "schema" }, d = { 4, v };
		rc = mdb_put(txn, dbi[DB_META], &k, &d, 0);
		if (rc)
			goto fail;
	}
	return mdb_txn_commit(txn);
fail:
	mdb_txn_abort(txn);
	return rc;
}

int store_env_new(MDB_env **env, uint64_t map_size)
{
	int rc = mdb_env_create(env);
	if (rc)
		return rc;
	rc = mdb_env_set_maxdbs(*env, DB_COUNT + 2);
	if (!rc)
		rc = mdb_env_set_mapsize(*env, (size_t)map_size);
	if (rc) {
		mdb_env_close(*env);
		*env = NULL;
	}
	return rc;
}

/*
 * A brand-new LMDB file is not crash-safe before its first commit (both
 * meta pages are written unsynced at creation), so a new store is made in a
 * sibling folder, committed and synced once, then renamed into place.
 */
static int create_fresh(const char *dir, uint64_t map_size, char *err,
			size_t errlen)
{
	char tmp[PATH_MAX], path[PATH_MAX + 16], parent[PATH_MAX];
	MDB_env *env = NULL;
	MDB_dbi dbi[DB_COUNT];
	int rc;

	if (snprintf(tmp, sizeof tmp, "%s.init-%d", dir, (int)getpid()) >=
	    (int)sizeof tmp) {
		snprintf(err, errlen, "data dir path too long");
		return ENAMETOOLONG;
	}
	if (mkdir(tmp, 0700) && errno != EEXIST) {
		rc = errno;
		snprintf(err, errlen, "mkdir %s: %s", tmp, strerror(rc));
		return rc;
	}
	/* btrfs: the files made in it inherit NOCOW (see above); elsewhere
	 * this fails and changes nothing. */
	int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		if (on_btrfs(dfd))
			(void)set_nocow(dfd);
		close(dfd);
	}
	int lock_fd = -1;
	bool alone;
	rc = prepare_lock_file(tmp, NULL, &lock_fd, &alone, err, errlen);
	if (rc) {
		if (lock_fd >= 0)
			close(lock_fd);
		return rc;
	}
	rc = store_env_new(&env, map_size);
	if (!rc)
		rc = mdb_env_open(env, tmp, 0, 0600);
	if (!rc)
		rc = create_dbs(env, dbi, true);
	if (env)
		mdb_env_close(env);
	close(lock_fd);
	if (rc) {
		snprintf(err, errlen, "creating store in %s: %s", tmp,
			 mdb_strerror(rc));
		return rc;
	}
	snprintf(path, sizeof path, "%s/data.mdb", tmp);
	rc = store_fsync_path(path, O_RDONLY);
	if (!rc)
		rc = store_fsync_path(tmp, O_RDONLY | O_DIRECTORY);
	if (!rc && rename(tmp, dir))
		rc = errno;
	if (rc) {
		snprintf(err, errlen, "installing new store %s: %s", dir,
			 strerror(rc));
		return rc;
	}
	snprintf(parent, sizeof parent, "%s", dir);
	char *slash = strrchr(parent, '/');
	if (slash == parent)
		parent[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		snprintf(parent, sizeof parent, ".");
	rc = store_fsync_path(parent, O_RDONLY | O_DIRECTORY);
	if (rc)
		snprintf(err, errlen, "fsync %s: %s", parent, strerror(rc));
	return rc;
}

static int load_counters(struct store *st, char *err, size_t errlen)
{
	MDB_txn *txn;
	MDB_val k, d;
	int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		goto out;
	st->next_event_id = 1;
	st->next_sub_id = 1;
	k.mv_data = "next_event";
	k.mv_size = 10;
	if (!mdb_get(txn, st->dbi[DB_META], &k, &d) && d.mv_size == 8)
		st->next_event_id = be64_get(d.mv_data);
	k.mv_data = "next_sub";
	k.mv_size = 8;
	if (!mdb_get(txn, st->dbi[DB_META], &k, &d) && d.mv_size == 4)
		st->next_sub_id = be32_get(d.mv_data);
	mdb_txn_abort(txn);
	return 0;
out:
	snprintf(err, errlen, "reading store counters: %s", mdb_strerror(rc));
	return rc;
}

/*
 * The format version in meta, read before anything is created or changed
 * in the file: a store of another version, or an LMDB file that is no
 * handoff store, is refused as it is. MDB_NOTFOUND when there is none,
 * EINVAL when it is not this build's.
 */
static int check_format(MDB_env *env, uint32_t *version, char *err,
			size_t errlen)
{
	MDB_txn *txn;
	MDB_dbi meta;
	MDB_val k = { 6, "schema" }, d;
	int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (rc) {
		snprintf(err, errlen, "reading the store format version: %s",
			 mdb_strerror(rc));
		return rc;
	}
	rc = mdb_dbi_open(txn, db_names[DB_META], 0, &meta);
	if (!rc)
		rc = mdb_get(txn, meta, &k, &d);
	if (rc == MDB_NOTFOUND) {
		snprintf(err, errlen,
			 "the data file has no store format version "
			 "(meta \"schema\"): not a handoff store");
	} else if (rc) {
		snprintf(err, errlen, "reading the store format version: %s",
			 mdb_strerror(rc));
	} else if (d.mv_size != 4) {
		snprintf(err, errlen,
			 "the store format version (meta \"schema\") "
			 "is %zu bytes, not 4: not a handoff store",
			 d.mv_size);
		rc = EINVAL;
	} else if (be32_get(d.mv_data) != SCHEMA_VERSION &&
		   be32_get(d.mv_data) != STORE_UPGRADES_FROM) {
		snprintf(err, errlen,
			 "store format version %u is not one this "
			 "build reads (it reads version %d and upgrades "
			 "version %d): written by another handoff version?",
			 be32_get(d.mv_data), SCHEMA_VERSION,
			 STORE_UPGRADES_FROM);
		rc = EINVAL;
	} else {
		*version = be32_get(d.mv_data);
	}
	mdb_txn_abort(txn);
	return rc;
}

bool store_error_is_damage(int rc)
{
	return rc == MDB_INVALID || rc == MDB_CORRUPTED ||
	       rc == MDB_PAGE_NOTFOUND || rc == MDB_VERSION_MISMATCH;
}

/*
 * data.mdb must hold LMDB's two meta pages (need == 0) or every page its
 * meta counts (need > 0). LMDB itself would take a 0-byte file for a new
 * store (losing everything silently) and reads pages through mmap, where a
 * page past the end of the file raises SIGBUS.
 */
static int check_file_size(const char *dir, uint64_t need, char *err,
			   size_t errlen)
{
	char path[PATH_MAX + 16];
	struct stat sb;
	long page = sysconf(_SC_PAGESIZE);
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	if (stat(path, &sb)) {
		int rc = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(rc));
		return rc;
	}
	if (need == 0)
		need = 2 * (uint64_t)(page > 0 ? page : 4096);
	if ((uint64_t)sb.st_size >= need)
		return 0;
	snprintf(err, errlen,
		 "store damaged: %s is %lld bytes but its pages end at %llu "
		 "bytes: the file was truncated; restore it from a backup or "
		 "move it aside",
		 path, (long long)sb.st_size, (unsigned long long)need);
	return MDB_CORRUPTED;
}

int store_reader_check(struct store *st)
{
	int dead = 0;
	if (mdb_reader_check(st->env, &dead))
		return 0;
	return dead;
}

/*
 * Whether dir/data.mdb is a handoff store this build reads, asked before
 * anything in the folder is written or made: LMDB opens it read-only and
 * without its lock file (MDB_NOLOCK: lock.mdb is neither made nor
 * touched), and the file's size is checked before a page is read through
 * the map. Another program's environment, a store of another format
 * version, an empty or foreign file: all are refused as they are.
 */
static int probe_store(const char *dir, uint64_t map_size, bool ours,
		       uint32_t *version, char *err, size_t errlen)
{
	MDB_env *env = NULL;
	int rc = check_file_size(dir, 0, err, errlen);
	if (rc)
		goto out;
	rc = store_env_new(&env, map_size);
	if (rc) {
		snprintf(err, errlen, "lmdb: %s", mdb_strerror(rc));
		return rc;
	}
	rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOLOCK, 0600);
	if (rc) {
		snprintf(err, errlen, "%s %s: %s",
			 store_error_is_damage(rc) ? "store damaged:" :
						     "opening store",
			 dir, mdb_strerror(rc));
		goto out;
	}
	MDB_envinfo info;
	MDB_stat est;
	mdb_env_info(env, &info);
	mdb_env_stat(env, &est);
	rc = check_file_size(dir,
			     (uint64_t)(info.me_last_pgno + 1) * est.ms_psize,
			     err, errlen);
	if (!rc)
		rc = check_format(env, version, err, errlen);
out:
	if (env)
		mdb_env_close(env);
	if (rc && !ours && store_error_is_damage(rc)) {
		/* No folder lock: nothing says handoff ever used it. */
		char why[512];
		snprintf(why, sizeof why, "%s", err);
		snprintf(err, errlen,
			 "%s holds no handoff store, or a damaged one (it has "
			 "no handoffd.lock): %s",
			 dir, why);
	}
	return rc;
}

int store_open(struct store *st, const char *dir, uint64_t map_size, char *err,
	       size_t errlen)
{
	char path[PATH_MAX + 32];
	struct stat sb;
	bool alone = false;
	int rc;

	memset(st, 0, sizeof *st);
	st->lock_fd = -1;
	st->lmdb_lock_fd = -1;
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	if (stat(path, &sb)) {
		if (errno != ENOENT) {
			rc = errno;
			snprintf(err, errlen, "%s: %s", path, strerror(rc));
			return rc;
		}
		if (stat(dir, &sb) == 0) {
			/* An existing folder must be empty: never adopt a
			 * folder holding someone else's files. */
			if (rmdir(dir)) {
				rc = errno;
				snprintf(err, errlen,
					 "%s exists, is not empty and holds no "
					 "handoff store (%s)",
					 dir, strerror(rc));
				return rc;
			}
		}
		rc = create_fresh(dir, map_size, err, errlen);
		if (rc)
			return rc;
	}

	/* A folder lock means a handoffd may be at work here: wait for none
	 * before reading. Without one, the folder is not known to be
	 * handoff's: nothing is made in it before probe_store says it is. */
	bool probed = false;
	uint32_t version = 0;
	snprintf(path, sizeof path, "%s/handoffd.lock", dir);
	st->lock_fd = open(path, O_RDWR | O_CLOEXEC);
	if (st->lock_fd < 0 && errno == ENOENT) {
		rc = probe_store(dir, map_size, false, &version, err, errlen);
		if (rc)
			goto fail;
		probed = true;
		st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	}
	if (st->lock_fd < 0) {
		rc = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(rc));
		goto fail;
	}
	if (flock(st->lock_fd, LOCK_EX | LOCK_NB)) {
		rc = errno;
		snprintf(err, errlen, "another handoffd is using %s", dir);
		goto fail;
	}
	if (!probed) {
		rc = probe_store(dir, map_size, true, &version, err, errlen);
		if (rc)
			goto fail;
	}
	if (version == STORE_UPGRADES_FROM) {
		/* the folder is ours (locked) and no LMDB environment of it is
		 * open in this process yet */
		rc = store_upgrade(dir, map_size, &st->upgrade, err, errlen);
		if (rc)
			goto fail;
	}
	rc = prepare_lock_file(dir, st, &st->lmdb_lock_fd, &alone, err, errlen);
	if (rc)
		goto fail;
	if (alone)
		make_data_nocow(dir, st);
	rc = store_env_new(&st->env, map_size);
	if (rc) {
		snprintf(err, errlen, "lmdb: %s", mdb_strerror(rc));
		goto fail;
	}
	const char *nosync = getenv("HANDOFF_TEST_NOSYNC");
	st->nosync = nosync && strcmp(nosync, "1") == 0;
	rc = mdb_env_open(st->env, dir, st->nosync ? MDB_NOSYNC : 0, 0600);
	if (rc) {
		snprintf(err, errlen, "%s %s: %s",
			 store_error_is_damage(rc) ? "store damaged:" :
						     "opening store",
			 dir, mdb_strerror(rc));
		goto fail;
	}
	allocate_lock_file(st->lmdb_lock_fd);
	/* Before any page is read through the map: a page past the end of a
	 * truncated file would raise SIGBUS instead of returning an error
	 * (probe_store checked; the file is checked again now it is ours). */
	MDB_envinfo info;
	MDB_stat est;
	mdb_env_info(st->env, &info);
	mdb_env_stat(st->env, &est);
	rc = check_file_size(dir,
			     (uint64_t)(info.me_last_pgno + 1) * est.ms_psize,
			     err, errlen);
	if (rc)
		goto fail;
	st->stale_readers_at_open = store_reader_check(st);
	rc = check_format(st->env, &version, err, errlen);
	if (!rc && version != SCHEMA_VERSION) {
		snprintf(err, errlen,
			 "store format version %u after the upgrade, not %d",
			 version, SCHEMA_VERSION);
		rc = EINVAL;
	}
	if (rc)
		goto fail;
	rc = create_dbs(st->env, st->dbi, false);
	if (rc) {
		snprintf(err, errlen, "opening databases: %s",
			 mdb_strerror(rc));
		goto fail;
	}
	rc = load_counters(st, err, errlen);
	if (rc)
		goto fail;
	return 0;
fail:
	store_close(st);
	return rc;
}

const char *store_strerror(int rc)
{
	if (rc == STORE_EDECODE)
		return "stored record is damaged: it fails its checksum or does "
		       "not decode";
	return mdb_strerror(rc); /* LMDB's codes, else strerror() */
}

bool store_is_broken(struct store *st)
{
	MDB_txn *probe;
	int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &probe);
	if (rc == 0) {
		mdb_txn_abort(probe);
		return false;
	}
	return rc == MDB_PANIC || rc == EIO;
}

void store_close(struct store *st)
{
	if (st->env)
		mdb_env_close(st->env);
	st->env = NULL;
	free(st->delayed);
	st->delayed = NULL;
	st->n_delayed = st->cap_delayed = 0;
	/* only now: closing it drops the fcntl locks LMDB held on lock.mdb */
	if (st->lmdb_lock_fd >= 0)
		close(st->lmdb_lock_fd);
	st->lmdb_lock_fd = -1;
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	st->lock_fd = -1;
}

int store_copy(struct store *st, int fd)
{
	return mdb_env_copyfd2(st->env, fd, MDB_CP_COMPACT);
}

void store_usage(struct store *st, uint64_t *used, uint64_t *map)
{
	MDB_envinfo info;
	MDB_stat stat;
	mdb_env_info(st->env, &info);
	mdb_env_stat(st->env, &stat);
	*used = (uint64_t)(info.me_last_pgno + 1) * stat.ms_psize;
	*map = info.me_mapsize;
}

/* ---- transactions ------------------------------------------------------ */

int store_read_clock_mark(struct store *st)
{
	MDB_txn *txn;
	MDB_val k = { 10, "clock_mark" }, d;
	int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return rc;
	st->clock_mark_ms = 0;
	if (!mdb_get(txn, st->dbi[DB_META], &k, &d) && d.mv_size == 8)
		st->clock_mark_ms = be64_get(d.mv_data);
	mdb_txn_abort(txn);
	return 0;
}

int store_txn_begin(struct store *st, struct arena *a, bool write,
		    uint64_t now_ms, struct txn *t)
{
	memset(t, 0, sizeof *t);
	t->st = st;
	t->arena = a;
	t->now_ms = now_ms;
	t->next_event_id = st->next_event_id;
	t->next_sub_id = st->next_sub_id;
	return mdb_txn_begin(st->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
}

/*
 * MDB_APPEND in flags is a hint: keys that mostly grow (ids, times) are
 * appended, which fills pages instead of splitting them in half (half the
 * pages to write per commit, half the disk); a key that does not sort last
 * (an update, an earlier due time) falls back to a normal put.
 */
static int put_hinted(struct txn *t, int db, MDB_val *k, MDB_val *d,
		      unsigned flags)
{
	int rc = mdb_put(t->txn, t->st->dbi[db], k, d, flags);
	t->wrote = true;
	if (rc == MDB_KEYEXIST && (flags & MDB_APPEND))
		rc = mdb_put(t->txn, t->st->dbi[db], k, d, flags & ~MDB_APPEND);
	return rc;
}

static int put_msg(struct txn *t, int db, const void *key, size_t klen,
		   const ProtobufCMessage *m, unsigned flags)
{
	MDB_val k = { klen, (void *)key };
	MDB_val d = { protobuf_c_message_get_packed_size(m), NULL };
	if (d.mv_size == 0) {
		/* MDB_RESERVE of zero bytes is fine, but keep one for clarity */
		static uint8_t none;
		d.mv_data = &none;
		return put_hinted(t, db, &k, &d, flags);
	}
	int rc = put_hinted(t, db, &k, &d, flags | MDB_RESERVE);
	if (rc)
		return rc;
	protobuf_c_message_pack(m, d.mv_data);
	return 0;
}

/* protobuf-c reports a failed allocation and bad input alike (NULL): this
 * allocator remembers which it was. */
struct decode_alloc {
	struct arena *arena;
	bool failed;
};

static void *decode_alloc(void *data, size_t n)
{
	struct decode_alloc *da = data;
	void *p = arena_alloc(da->arena, n);
	if (!p)
		da->failed = true;
	return p;
}

static void decode_free(void *data, void *p)
{
	(void)data;
	(void)p; /* the arena frees everything at its reset */
}

/* Unpack a stored value: 0, STORE_EDECODE, or ENOMEM. Fields this build
 * does not know (a newer build's) are kept, and written back on update. */
static int decode(struct txn *t, const ProtobufCMessageDescriptor *desc,
		  size_t len, const void *data, void **out)
{
	struct decode_alloc da = { t->arena, false };
	ProtobufCAllocator al = { .alloc = decode_alloc,
				  .free = decode_free,
				  .allocator_data = &da };
	*out = protobuf_c_message_unpack(desc, &al, len, data);
	if (*out)
		return 0;
	return da.failed ? ENOMEM : STORE_EDECODE;
}

static int get_msg(struct txn *t, int db, const void *key, size_t klen,
		   const ProtobufCMessageDescriptor *desc, void **out)
{
	MDB_val k = { klen, (void *)key }, d;
	int rc = mdb_get(t->txn, t->st->dbi[db], &k, &d);
	if (rc)
		return rc;
	return decode(t, desc, d.mv_size, d.mv_data, out);
}

static int del_key(struct txn *t, int db, const void *key, size_t klen)
{
	MDB_val k = { klen, (void *)key };
	t->wrote = true;
	return mdb_del(t->txn, t->st->dbi[db], &k, NULL);
}

static int put_empty(struct txn *t, int db, const void *key, size_t klen,
		     unsigned flags)
{
	MDB_val k = { klen, (void *)key }, d = { 0, "" };
	return put_hinted(t, db, &k, &d, flags);
}

static int put_meta_u64(struct txn *t, const char *name, uint64_t v, int n)
{
	uint8_t b[8];
	if (n == 8)
		be64_put(b, v);
	else
		be32_put(b, (uint32_t)v);
	MDB_val k = { strlen(name), (void *)name }, d = { (size_t)n, b };
	return mdb_put(t->txn, t->st->dbi[DB_META], &k, &d, 0);
}

int store_txn_commit(struct txn *t)
{
	int rc = 0;
	for (size_t i = 0; i < t->n_subs && !rc; i++) {
		if (!t->sub_dirty[i])
			continue;
		uint8_t k[4];
		be32_put(k, t->subs[i]->id);
		rc = put_msg(t, DB_SUBS, k, 4, &t->subs[i]->base, 0);
	}
	if (!rc && t->next_event_id != t->st->next_event_id)
		rc = put_meta_u64(t, "next_event", t->next_event_id, 8);
	if (!rc && t->next_sub_id != t->st->next_sub_id)
		rc = put_meta_u64(t, "next_sub", t->next_sub_id, 4);
	if (!rc && t->payloads_delta) {
		uint64_t held = 0;
		rc = store_meta_get(t, "payloads", &held);
		if (rc == MDB_NOTFOUND || rc == STORE_EDECODE)
			rc = 0;
		int64_t n = (int64_t)held + t->payloads_delta;
		if (!rc)
			rc = put_meta_u64(t, "payloads",
					  n > 0 ? (uint64_t)n : 0, 8);
	}
	bool mark = clock_mark_due(t->st->clock_mark_ms, t->now_ms, t->wrote);
	if (!rc && mark)
		rc = put_meta_u64(t, "clock_mark", t->now_ms, 8);
	if (rc) {
		store_txn_abort(t);
		return rc;
	}
	rc = mdb_txn_commit(t->txn);
	t->txn = NULL;
	if (rc && t->wrote)
		t->st->n_delayed = 0; /* counted on what never reached disk */
	if (!rc) {
		t->st->next_event_id = t->next_event_id;
		t->st->next_sub_id = t->next_sub_id;
		if (mark)
			t->st->clock_mark_ms = t->now_ms;
	}
	return rc;
}

void store_txn_abort(struct txn *t)
{
	if (t->txn && t->wrote)
		t->st->n_delayed = 0; /* counted on writes now undone */
	if (t->txn)
		mdb_txn_abort(t->txn);
	t->txn = NULL;
	t->n_subs = 0;
	t->cap_subs = 0;
	t->subs = NULL;
	t->sub_dirty = NULL;
}

static int seek(struct txn *t, int db, const void *key, size_t klen,
		MDB_val *ko, MDB_val *dout);

/* ---- events ------------------------------------------------------------ *
 *
 * One record per event (format 2): its metadata and its payload, so that a
 * publish writes one value. Layout of the value:
 *   [0..4)      crc32 of the body bytes (0 when there is none)
 *   [4..8)      M, the length of the EventMeta, with EVENT_NO_BODY set
 *               once the payload is removed (an EventBody may pack to
 *               nothing: an empty payload without headers)
 *   [8..8+M)    EventMeta
 *   [8+M..)     EventBody (nothing once removed)
 * The checksum covers the body only, so a damaged payload leaves the
 * event's trace readable (and the event is dead-lettered as corrupt).
 */

#define EVENT_NO_BODY 0x80000000u

struct event_value {
	const uint8_t *meta, *body;
	size_t meta_len, body_len;
	uint32_t crc;
	bool has_body;
};

/* The parts of event id's value: 0, MDB_NOTFOUND, STORE_EDECODE. */
static int event_value(struct txn *t, uint64_t id, struct event_value *v)
{
	uint8_t key[8];
	be64_put(key, id);
	MDB_val k = { 8, key }, d;
	int rc = mdb_get(t->txn, t->st->dbi[DB_EVENTS], &k, &d);
	if (rc)
		return rc;
	const uint8_t *p = d.mv_data;
	if (d.mv_size < 8)
		return STORE_EDECODE;
	uint32_t word = be32_get(p + 4);
	size_t m = word & ~EVENT_NO_BODY;
	if (m > d.mv_size - 8)
		return STORE_EDECODE;
	v->has_body = !(word & EVENT_NO_BODY);
	if (!v->has_body && d.mv_size - 8 - m)
		return STORE_EDECODE;
	v->crc = be32_get(p);
	v->meta = p + 8;
	v->meta_len = m;
	v->body = p + 8 + m;
	v->body_len = d.mv_size - 8 - m;
	return 0;
}

/* Write event id's value from its parts (copied: they may point into the
 * page this put rewrites). */
static int event_write(struct txn *t, uint64_t id, const ProtobufCMessage *meta,
		       const uint8_t *meta_bytes, size_t meta_len,
		       const ProtobufCMessage *body, const uint8_t *body_bytes,
		       size_t body_len, bool has_body, unsigned flags)
{
	uint8_t key[8];
	be64_put(key, id);
	if (meta)
		meta_len = protobuf_c_message_get_packed_size(meta);
	if (body)
		body_len = protobuf_c_message_get_packed_size(body);
	uint8_t *copy = NULL;
	if ((meta_bytes && meta_len) || (body_bytes && body_len)) {
		copy = arena_alloc(t->arena, meta_len + body_len);
		if (!copy)
			return ENOMEM;
		if (meta_bytes && meta_len)
			memcpy(copy, meta_bytes, meta_len);
		if (body_bytes && body_len)
			memcpy(copy + meta_len, body_bytes, body_len);
	}
	MDB_val k = { 8, key }, d = { 8 + meta_len + body_len, NULL };
	int rc = put_hinted(t, DB_EVENTS, &k, &d, flags | MDB_RESERVE);
	if (rc)
		return rc;
	uint8_t *p = d.mv_data;
	be32_put(p + 4, (uint32_t)meta_len | (has_body ? 0 : EVENT_NO_BODY));
	if (meta)
		protobuf_c_message_pack(meta, p + 8);
	else if (meta_len)
		memcpy(p + 8, copy, meta_len);
	if (body)
		protobuf_c_message_pack(body, p + 8 + meta_len);
	else if (body_len)
		memcpy(p + 8 + meta_len, copy + meta_len, body_len);
	be32_put(p, has_body ? (uint32_t)crc32(0L, p + 8 + meta_len,
					       (uInt)body_len) :
			       0);
	return 0;
}

int store_event_create(struct txn *t, uint64_t id, const EventMeta *m,
		       const EventBody *b)
{
	int rc = event_write(t, id, &m->base, NULL, 0, &b->base, NULL, 0, true,
			     MDB_APPEND);
	if (!rc)
		t->payloads_delta++;
	return rc;
}

int store_event_get(struct txn *t, uint64_t id, EventMeta **out)
{
	struct event_value v;
	int rc = event_value(t, id, &v);
	if (rc)
		return rc;
	return decode(t, &handoff__store__event_meta__descriptor, v.meta_len,
		      v.meta, (void **)out);
}

int store_event_put(struct txn *t, uint64_t id, const EventMeta *m)
{
	struct event_value v;
	int rc = event_value(t, id, &v);
	if (rc == MDB_NOTFOUND || rc == STORE_EDECODE)
		return event_write(t, id, &m->base, NULL, 0, NULL, NULL, 0,
				   false, MDB_APPEND);
	if (rc)
		return rc;
	return event_write(t, id, &m->base, NULL, 0, NULL, v.body, v.body_len,
			   v.has_body, 0);
}

int store_event_put_removed(struct txn *t, uint64_t id, const EventMeta *m)
{
	struct event_value v;
	int rc = event_value(t, id, &v);
	if (rc == 0 && v.has_body)
		t->payloads_delta--;
	else if (rc && rc != MDB_NOTFOUND && rc != STORE_EDECODE)
		return rc;
	return event_write(t, id, &m->base, NULL, 0, NULL, NULL, 0, false,
			   rc ? MDB_APPEND : 0);
}

int store_event_next(struct txn *t, uint64_t after, uint64_t *id)
{
	uint8_t k[8];
	MDB_val ko;
	if (after == UINT64_MAX)
		return MDB_NOTFOUND;
	be64_put(k, after + 1);
	int rc = seek(t, DB_EVENTS, k, 8, &ko, NULL);
	if (rc)
		return rc;
	if (ko.mv_size != 8)
		return STORE_EDECODE;
	*id = be64_get(ko.mv_data);
	return 0;
}

int store_meta_get(struct txn *t, const char *name, uint64_t *v)
{
	MDB_val k = { strlen(name), (void *)name }, d;
	int rc = mdb_get(t->txn, t->st->dbi[DB_META], &k, &d);
	if (rc)
		return rc;
	if (d.mv_size != 8)
		return STORE_EDECODE;
	*v = be64_get(d.mv_data);
	return 0;
}

int store_meta_put(struct txn *t, const char *name, uint64_t v)
{
	t->wrote = true;
	return put_meta_u64(t, name, v, 8);
}

int store_event_del(struct txn *t, uint64_t id)
{
	struct event_value v;
	uint8_t k[8];
	int rc = event_value(t, id, &v);
	if (rc == 0 && v.has_body)
		t->payloads_delta--;
	be64_put(k, id);
	return del_key(t, DB_EVENTS, k, 8);
}

int store_payload_get(struct txn *t, uint64_t id, EventBody **out)
{
	struct event_value v;
	int rc = event_value(t, id, &v);
	if (rc)
		return rc;
	if (!v.has_body)
		return MDB_NOTFOUND; /* removed */
	if ((uint32_t)crc32(0L, v.body, (uInt)v.body_len) != v.crc)
		return STORE_EDECODE;
	return decode(t, &handoff__store__event_body__descriptor, v.body_len,
		      v.body, (void **)out);
}

int store_payload_put(struct txn *t, uint64_t id, const EventBody *b)
{
	struct event_value v;
	int rc = event_value(t, id, &v);
	if (rc == MDB_NOTFOUND || rc == STORE_EDECODE) {
		v.meta = NULL;
		v.meta_len = 0;
		v.has_body = false;
	} else if (rc) {
		return rc;
	}
	bool had = v.has_body;
	rc = event_write(t, id, NULL, v.meta, v.meta_len, &b->base, NULL, 0,
			 true, rc ? MDB_APPEND : 0);
	if (!rc && !had)
		t->payloads_delta++;
	return rc;
}

int store_payload_del(struct txn *t, uint64_t id)
{
	struct event_value v;
	int rc = event_value(t, id, &v);
	if (rc == STORE_EDECODE) {
		/* no readable layout: the whole value goes */
		uint8_t k[8];
		be64_put(k, id);
		return del_key(t, DB_EVENTS, k, 8);
	}
	if (rc)
		return rc;
	if (!v.has_body)
		return MDB_NOTFOUND;
	t->payloads_delta--;
	return event_write(t, id, NULL, v.meta, v.meta_len, NULL, NULL, 0,
			   false, 0);
}

uint64_t store_alloc_event_id(struct txn *t)
{
	return t->next_event_id++;
}

static int count_entries(struct txn *t, int db, uint64_t *count)
{
	MDB_stat ms;
	int rc = mdb_stat(t->txn, t->st->dbi[db], &ms);
	*count = rc ? 0 : ms.ms_entries;
	return rc;
}

int store_payload_count(struct txn *t, uint64_t *count)
{
	uint64_t held = 0;
	int rc = store_meta_get(t, "payloads", &held);
	if (rc && rc != MDB_NOTFOUND && rc != STORE_EDECODE)
		return rc;
	int64_t n = (int64_t)held + t->payloads_delta;
	*count = n > 0 ? (uint64_t)n : 0;
	return 0;
}

/* ---- subscriptions ----------------------------------------------------- */

/* Keep r in the txn's cache (growing it in the arena). */
static int cache_sub(struct txn *t, SubRecord *r, bool dirty)
{
	if (t->n_subs == t->cap_subs) {
		size_t cap = t->cap_subs ? t->cap_subs * 2 : 16;
		SubRecord **subs = arena_alloc(t->arena, cap * sizeof *subs);
		bool *dirt = arena_alloc(t->arena, cap * sizeof *dirt);
		if (!subs || !dirt)
			return ENOMEM;
		if (t->n_subs) {
			memcpy(subs, t->subs, t->n_subs * sizeof *subs);
			memcpy(dirt, t->sub_dirty, t->n_subs * sizeof *dirt);
		}
		t->subs = subs;
		t->sub_dirty = dirt;
		t->cap_subs = cap;
	}
	t->subs[t->n_subs] = r;
	t->sub_dirty[t->n_subs] = dirty;
	t->n_subs++;
	return 0;
}

int store_sub_get(struct txn *t, uint32_t id, SubRecord **out)
{
	for (size_t i = 0; i < t->n_subs; i++) {
		if (t->subs[i]->id == id) {
			*out = t->subs[i];
			return 0;
		}
	}
	uint8_t k[4];
	be32_put(k, id);
	SubRecord *r;
	int rc = get_msg(t, DB_SUBS, k, 4,
			 &handoff__store__subscription_record__descriptor,
			 (void **)&r);
	if (rc)
		return rc;
	rc = cache_sub(t, r, false);
	if (rc)
		return rc;
	*out = r;
	return 0;
}

void store_sub_mark(struct txn *t, const SubRecord *r)
{
	for (size_t i = 0; i < t->n_subs; i++) {
		if (t->subs[i] == r) {
			t->sub_dirty[i] = true;
			return;
		}
	}
}

int store_sub_by_name(struct txn *t, const char *name, SubRecord **out)
{
	MDB_val k = { strlen(name), (void *)name }, d;
	int rc = mdb_get(t->txn, t->st->dbi[DB_SUB_NAMES], &k, &d);
	if (rc)
		return rc;
	if (d.mv_size != 4)
		return STORE_EDECODE;
	return store_sub_get(t, be32_get(d.mv_data), out);
}

int store_sub_count(struct txn *t, uint64_t *count)
{
	return count_entries(t, DB_SUB_NAMES, count);
}

static size_t topic_sub_key(uint8_t *buf, size_t cap, const char *topic,
			    const char *name)
{
	size_t tl = strlen(topic), nl = strlen(name);
	if (tl + 1 + nl > cap)
		return 0;
	memcpy(buf, topic, tl);
	buf[tl] = 0;
	memcpy(buf + tl + 1, name, nl);
	return tl + 1 + nl;
}

int store_sub_create(struct txn *t, SubRecord *r)
{
	uint8_t idb[4], key[512];
	int rc = store_topic_id(t, r->topic, &r->topic_id);
	if (rc)
		return rc;
	/* owed what is published from now on */
	r->log_cursor = t->next_event_id;
	r->log_end = 0;
	r->id = t->next_sub_id++;
	be32_put(idb, r->id);
	MDB_val k = { strlen(r->name), r->name }, d = { 4, idb };
	rc = mdb_put(t->txn, t->st->dbi[DB_SUB_NAMES], &k, &d, MDB_NOOVERWRITE);
	if (rc)
		return rc;
	size_t kl = topic_sub_key(key, sizeof key, r->topic, r->name);
	if (!kl)
		return EINVAL;
	MDB_val tk = { kl, key };
	rc = mdb_put(t->txn, t->st->dbi[DB_TOPIC_SUBS], &tk, &d, 0);
	if (rc)
		return rc;
	/* Written now too (the commit writes the cached copy again), so that
	 * a listing later in the same turn, which walks the database, sees
	 * it (found by fuzz_handlers). */
	rc = put_msg(t, DB_SUBS, idb, 4, &r->base, 0);
	if (rc)
		return rc;
	return cache_sub(t, r, true);
}

int store_sub_unlink(struct txn *t, SubRecord *r)
{
	uint8_t key[512];
	int rc = del_key(t, DB_SUB_NAMES, r->name, strlen(r->name));
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	size_t kl = topic_sub_key(key, sizeof key, r->topic, r->name);
	rc = del_key(t, DB_TOPIC_SUBS, key, kl);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	r->deleting = true;
	/* owed nothing published from now on (pending_subscriptions of those
	 * events does not count it) */
	r->log_end = t->next_event_id;
	store_sub_mark(t, r);
	return 0;
}

int store_sub_delete(struct txn *t, uint32_t id)
{
	for (size_t i = 0; i < t->n_subs; i++) {
		if (t->subs[i]->id == id) {
			/* drop from the cache so commit does not rewrite it */
			t->subs[i] = t->subs[t->n_subs - 1];
			t->sub_dirty[i] = t->sub_dirty[t->n_subs - 1];
			t->n_subs--;
			break;
		}
	}
	uint8_t k[4];
	be32_put(k, id);
	return del_key(t, DB_SUBS, k, 4);
}

/* Position a cursor at the first key >= key; copy out key and data. */
static int seek(struct txn *t, int db, const void *key, size_t klen,
		MDB_val *ko, MDB_val *dout)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(t->txn, t->st->dbi[db], &c);
	if (rc)
		return rc;
	MDB_val k = { klen, (void *)key }, d;
	rc = mdb_cursor_get(c, &k, &d, klen ? MDB_SET_RANGE : MDB_FIRST);
	mdb_cursor_close(c);
	if (rc)
		return rc;
	*ko = k;
	if (dout)
		*dout = d;
	return 0;
}

int store_sub_next(struct txn *t, uint32_t after, uint32_t *id)
{
	uint8_t k[4];
	MDB_val ko;
	if (after == UINT32_MAX)
		return MDB_NOTFOUND;
	be32_put(k, after + 1);
	int rc = seek(t, DB_SUBS, k, 4, &ko, NULL);
	if (rc)
		return rc;
	if (ko.mv_size != 4)
		return STORE_EDECODE;
	*id = be32_get(ko.mv_data);
	return 0;
}

int store_topic_subs(struct txn *t, const char *topic, uint32_t **ids,
		     size_t *n)
{
	size_t tl = strlen(topic), cap = 8;
	MDB_cursor *c;
	*n = 0;
	*ids = arena_alloc(t->arena, cap * sizeof **ids);
	if (!*ids)
		return ENOMEM;
	int rc = mdb_cursor_open(t->txn, t->st->dbi[DB_TOPIC_SUBS], &c);
	if (rc)
		return rc;
	MDB_val k = { tl + 1, NULL }, d;
	uint8_t key[512];
	if (tl + 1 > sizeof key) {
		mdb_cursor_close(c);
		return EINVAL;
	}
	memcpy(key, topic, tl);
	key[tl] = 0;
	k.mv_data = key;
	rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size > tl &&
	       memcmp(k.mv_data, key, tl + 1) == 0) {
		if (*n == cap) {
			uint32_t *bigger =
				arena_alloc(t->arena, 2 * cap * sizeof *bigger);
			if (!bigger) {
				rc = ENOMEM;
				break;
			}
			memcpy(bigger, *ids, cap * sizeof *bigger);
			*ids = bigger;
			cap *= 2;
		}
		(*ids)[(*n)++] = be32_get(d.mv_data);
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	/* ascending ids: deliveries of an event are then written in key order */
	for (size_t i = 1; i < *n; i++)
		for (size_t j = i; j > 0 && (*ids)[j - 1] > (*ids)[j]; j--) {
			uint32_t x = (*ids)[j];
			(*ids)[j] = (*ids)[j - 1];
			(*ids)[j - 1] = x;
		}
	return 0;
}

int store_topic_get(struct txn *t, const char *topic, TopicRecord **out)
{
	return get_msg(t, DB_TOPICS, topic, strlen(topic),
		       &handoff__store__topic_record__descriptor, (void **)out);
}

int store_topic_put(struct txn *t, const char *topic, const TopicRecord *r)
{
	return put_msg(t, DB_TOPICS, topic, strlen(topic), &r->base, 0);
}

int store_topic_id(struct txn *t, const char *topic, uint32_t *id)
{
	TopicRecord *r, blank = HANDOFF__STORE__TOPIC_RECORD__INIT;
	int rc = store_topic_get(t, topic, &r);
	if (rc == MDB_NOTFOUND || rc == STORE_EDECODE) {
		r = &blank; /* a damaged counter starts again from zero */
		rc = 0;
	}
	if (rc)
		return rc;
	if (r->id) {
		*id = r->id;
		return 0;
	}
	MDB_val k = { 10, "next_topic" }, d;
	uint32_t next = 1;
	rc = mdb_get(t->txn, t->st->dbi[DB_META], &k, &d);
	if (rc == 0 && d.mv_size == 4)
		next = be32_get(d.mv_data);
	else if (rc && rc != MDB_NOTFOUND)
		return rc;
	if (next == 0 || next == UINT32_MAX)
		return ENOSPC; /* four billion topics */
	r->id = next;
	rc = put_meta_u64(t, "next_topic", next + 1, 4);
	if (!rc)
		rc = store_topic_put(t, topic, r);
	if (!rc)
		*id = next;
	return rc;
}

int store_topic_next(struct txn *t, const char *after, char **name)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(t->txn, t->st->dbi[DB_TOPICS], &c);
	if (rc)
		return rc;
	MDB_val k = { strlen(after), (void *)after }, d;
	if (k.mv_size == 0) {
		rc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
	} else {
		rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
		if (!rc && k.mv_size == strlen(after) &&
		    memcmp(k.mv_data, after, k.mv_size) == 0)
			rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	}
	if (!rc) {
		*name = arena_alloc(t->arena, k.mv_size + 1);
		if (!*name) {
			rc = ENOMEM;
		} else {
			memcpy(*name, k.mv_data, k.mv_size);
			(*name)[k.mv_size] = 0;
		}
	}
	mdb_cursor_close(c);
	return rc;
}

/* ---- deliveries -------------------------------------------------------- */

static void delivery_key(uint8_t k[12], uint64_t event, uint32_t sub)
{
	be64_put(k, event);
	be32_put(k + 8, sub);
}

/* ---- the topic log ----------------------------------------------------- */

static void log_key(uint8_t k[12], uint32_t topic, uint64_t ev)
{
	be32_put(k, topic);
	be64_put(k + 4, ev);
}

/* Whether r is owed the log's event ev (if the log has it). */
static bool log_owes(const SubRecord *r, uint64_t ev)
{
	return r->topic_id && ev >= r->log_cursor &&
	       (!r->log_end || ev < r->log_end);
}

int store_log_put(struct txn *t, uint32_t topic, uint64_t ev,
		  uint64_t published_ms)
{
	uint8_t k[12], v[8];
	log_key(k, topic, ev);
	be64_put(v, published_ms);
	MDB_val kv = { 12, k }, dv = { 8, v };
	return put_hinted(t, DB_TOPIC_LOG, &kv, &dv, MDB_APPEND);
}

int store_log_del(struct txn *t, uint32_t topic, uint64_t ev)
{
	uint8_t k[12];
	log_key(k, topic, ev);
	return del_key(t, DB_TOPIC_LOG, k, 12);
}

/* The publish time of the log's event ev of topic: 0, MDB_NOTFOUND. */
static int log_get(struct txn *t, uint32_t topic, uint64_t ev,
		   uint64_t *published_ms)
{
	uint8_t k[12];
	log_key(k, topic, ev);
	MDB_val kv = { 12, k }, dv;
	int rc = mdb_get(t->txn, t->st->dbi[DB_TOPIC_LOG], &kv, &dv);
	if (rc)
		return rc;
	/* a damaged time only changes when it is due: at once */
	*published_ms = dv.mv_size == 8 ? be64_get(dv.mv_data) : 0;
	return 0;
}

/* r's first log delivery: MDB_NOTFOUND when it has none. */
static int log_head(struct txn *t, const SubRecord *r, uint64_t *ev,
		    uint64_t *published_ms)
{
	uint8_t k[12];
	MDB_val ko, dv;
	if (!r->topic_id)
		return MDB_NOTFOUND;
	log_key(k, r->topic_id, r->log_cursor);
	int rc = seek(t, DB_TOPIC_LOG, k, 12, &ko, &dv);
	if (rc)
		return rc;
	if (ko.mv_size != 12 || be32_get(ko.mv_data) != r->topic_id)
		return MDB_NOTFOUND;
	*ev = be64_get((uint8_t *)ko.mv_data + 4);
	if (!log_owes(r, *ev))
		return MDB_NOTFOUND;
	*published_ms = dv.mv_size == 8 ? be64_get(dv.mv_data) : 0;
	return 0;
}

/* The subscription record of sub for the log, or NULL (none, damaged). */
static int log_sub(struct txn *t, uint32_t sub, SubRecord **r)
{
	int rc = store_sub_get(t, sub, r);
	if (rc == MDB_NOTFOUND || rc == STORE_EDECODE) {
		*r = NULL;
		return 0;
	}
	return rc;
}

int store_delivery_get(struct txn *t, uint64_t event, uint32_t sub,
		       DeliveryRecord **out)
{
	uint8_t k[12];
	delivery_key(k, event, sub);
	int rc = get_msg(t, DB_DELIVERIES, k, 12,
			 &handoff__store__delivery_record__descriptor,
			 (void **)out);
	if (rc != MDB_NOTFOUND)
		return rc;
	SubRecord *r;
	uint64_t published;
	rc = log_sub(t, sub, &r);
	if (rc)
		return rc;
	if (!r || !log_owes(r, event))
		return MDB_NOTFOUND;
	rc = log_get(t, r->topic_id, event, &published);
	if (rc)
		return rc;
	DeliveryRecord *d = arena_alloc(t->arena, sizeof *d);
	if (!d)
		return ENOMEM;
	handoff__store__delivery_record__init(d);
	d->state = HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_READY;
	d->due_ms = published;
	*out = d;
	return 0;
}

int store_delivery_put(struct txn *t, uint64_t event, uint32_t sub,
		       const DeliveryRecord *d)
{
	uint8_t k[12];
	delivery_key(k, event, sub);
	return put_msg(t, DB_DELIVERIES, k, 12, &d->base, MDB_APPEND);
}

int store_delivery_del(struct txn *t, uint64_t event, uint32_t sub)
{
	uint8_t k[12];
	delivery_key(k, event, sub);
	return del_key(t, DB_DELIVERIES, k, 12);
}

/* The first subscription id > after owed event from the log. */
static int log_next_sub(struct txn *t, uint64_t event, uint32_t after,
			uint32_t *sub)
{
	EventMeta *m;
	uint64_t published;
	int rc = store_event_get(t, event, &m);
	if (rc == MDB_NOTFOUND || rc == STORE_EDECODE)
		return MDB_NOTFOUND;
	if (rc)
		return rc;
	if (!m->topic_id)
		return MDB_NOTFOUND;
	rc = log_get(t, m->topic_id, event, &published);
	if (rc)
		return rc;
	uint32_t id = after;
	while ((rc = store_sub_next(t, id, &id)) == 0) {
		SubRecord *r;
		rc = log_sub(t, id, &r);
		if (rc)
			return rc;
		if (r && r->topic_id == m->topic_id && log_owes(r, event)) {
			*sub = id;
			return 0;
		}
	}
	return rc;
}

int store_delivery_next_sub(struct txn *t, uint64_t event, uint32_t after,
			    uint32_t *sub)
{
	uint8_t k[12];
	MDB_val ko;
	uint32_t stored = 0, logged = 0;
	if (after == UINT32_MAX)
		return MDB_NOTFOUND;
	delivery_key(k, event, after + 1);
	int rc = seek(t, DB_DELIVERIES, k, 12, &ko, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	bool have_stored =
		!rc && ko.mv_size == 12 && be64_get(ko.mv_data) == event;
	if (have_stored)
		stored = be32_get((uint8_t *)ko.mv_data + 8);
	rc = log_next_sub(t, event, after, &logged);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	bool have_logged = !rc;
	if (!have_stored && !have_logged)
		return MDB_NOTFOUND;
	*sub = !have_logged		       ? stored :
	       !have_stored || logged < stored ? logged :
						 stored;
	return 0;
}

/* ---- indexes ----------------------------------------------------------- */

static void ready_key(uint8_t k[20], uint32_t sub, uint64_t due, uint64_t ev)
{
	be32_put(k, sub);
	be64_put(k + 4, due);
	be64_put(k + 12, ev);
}

static struct delayed_count *delayed_find(struct store *st, uint32_t sub)
{
	size_t lo = 0, hi = st->n_delayed;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (st->delayed[mid].sub < sub)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < st->n_delayed && st->delayed[lo].sub == sub ?
		       &st->delayed[lo] :
		       NULL;
}

static struct delayed_count *delayed_add(struct store *st, uint32_t sub)
{
	if (st->n_delayed == st->cap_delayed) {
		size_t cap = st->cap_delayed ? st->cap_delayed * 2 : 16;
		void *p = realloc(st->delayed, cap * sizeof *st->delayed);
		if (!p)
			return NULL;
		st->delayed = p;
		st->cap_delayed = cap;
	}
	size_t i = st->n_delayed;
	while (i > 0 && st->delayed[i - 1].sub > sub) {
		st->delayed[i] = st->delayed[i - 1];
		i--;
	}
	st->delayed[i] = (struct delayed_count){ .sub = sub };
	st->n_delayed++;
	return &st->delayed[i];
}

/* A ready entry of sub due at due came (delta 1) or went (-1). */
static void delayed_note(struct txn *t, uint32_t sub, uint64_t due, int delta)
{
	struct delayed_count *d = delayed_find(t->st, sub);
	if (!d || due <= d->horizon)
		return;
	if (delta > 0)
		d->count++;
	else if (d->count)
		d->count--;
	else
		t->st->n_delayed = 0; /* cannot happen; count again */
}

int store_ready_put(struct txn *t, uint32_t sub, uint64_t due, uint64_t ev)
{
	uint8_t k[20];
	ready_key(k, sub, due, ev);
	int rc = put_empty(t, DB_READY, k, 20, MDB_APPEND);
	if (!rc)
		delayed_note(t, sub, due, 1);
	return rc;
}

int store_ready_del(struct txn *t, uint32_t sub, uint64_t due, uint64_t ev)
{
	uint8_t k[20];
	ready_key(k, sub, due, ev);
	int rc = del_key(t, DB_READY, k, 20);
	if (!rc)
		delayed_note(t, sub, due, -1);
	if (rc != MDB_NOTFOUND)
		return rc;
	SubRecord *r;
	uint64_t head, published;
	rc = log_sub(t, sub, &r);
	if (rc)
		return rc;
	if (!r)
		return MDB_NOTFOUND;
	if (!log_owes(r, ev) || log_get(t, r->topic_id, ev, &published))
		return MDB_NOTFOUND;
	/* taken out of order (never by a fetch, which takes the head): the
	 * log deliveries it passes get records and ready entries */
	while ((rc = log_head(t, r, &head, &published)) == 0 && head < ev) {
		DeliveryRecord d = HANDOFF__STORE__DELIVERY_RECORD__INIT;
		d.state = HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_READY;
		d.due_ms = published;
		rc = store_ready_put(t, sub, published, head);
		if (!rc)
			rc = store_delivery_put(t, head, sub, &d);
		if (rc)
			return rc;
		r->log_cursor = head + 1;
	}
	if (rc)
		return rc;
	r->log_cursor = ev + 1;
	store_sub_mark(t, r);
	t->wrote = true;
	return 0;
}

int store_ready_first(struct txn *t, uint32_t sub, uint64_t *due, uint64_t *ev)
{
	uint8_t k[20];
	MDB_val ko;
	SubRecord *r;
	uint64_t log_ev = 0, log_due = 0;
	ready_key(k, sub, 0, 0);
	int rc = seek(t, DB_READY, k, 20, &ko, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	bool stored = !rc && ko.mv_size == 20 && be32_get(ko.mv_data) == sub;
	if (stored) {
		*due = be64_get((uint8_t *)ko.mv_data + 4);
		*ev = be64_get((uint8_t *)ko.mv_data + 12);
	}
	rc = log_sub(t, sub, &r);
	if (rc)
		return rc;
	rc = r ? log_head(t, r, &log_ev, &log_due) : MDB_NOTFOUND;
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	if (rc)
		return stored ? 0 : MDB_NOTFOUND;
	if (!stored || log_due < *due || (log_due == *due && log_ev < *ev)) {
		*due = log_due;
		*ev = log_ev;
	}
	return 0;
}

int store_ready_count_after(struct txn *t, uint32_t sub, uint64_t from,
			    uint64_t cap, uint64_t *count)
{
	uint8_t key[20];
	MDB_cursor *c;
	*count = 0;
	ready_key(key, sub, from + 1, 0);
	int rc = mdb_cursor_open(t->txn, t->st->dbi[DB_READY], &c);
	if (rc)
		return rc;
	MDB_val k = { 20, key }, d;
	rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	while (!rc && k.mv_size == 20 && be32_get(k.mv_data) == sub &&
	       *count < cap) {
		(*count)++;
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* One cursor walking sub's ready entries with due in [from, to]. */
struct ready_walk {
	MDB_cursor *c;
	uint32_t sub;
	uint64_t to;
	uint64_t n;
	bool done;
};

static int walk_start(struct txn *t, struct ready_walk *w, uint32_t sub,
		      uint64_t from, uint64_t to)
{
	uint8_t key[20];
	*w = (struct ready_walk){ .sub = sub, .to = to };
	int rc = mdb_cursor_open(t->txn, t->st->dbi[DB_READY], &w->c);
	if (rc)
		return rc;
	ready_key(key, sub, from, 0);
	MDB_val k = { 20, key }, d;
	rc = mdb_cursor_get(w->c, &k, &d, MDB_SET_RANGE);
	if (rc == MDB_NOTFOUND ||
	    (!rc && (k.mv_size != 20 || be32_get(k.mv_data) != sub ||
		     be64_get((uint8_t *)k.mv_data + 4) > to)))
		w->done = true;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Count the entry under the cursor and move on. */
static int walk_step(struct ready_walk *w)
{
	MDB_val k, d;
	w->n++;
	int rc = mdb_cursor_get(w->c, &k, &d, MDB_NEXT);
	if (rc == MDB_NOTFOUND ||
	    (!rc && (k.mv_size != 20 || be32_get(k.mv_data) != w->sub ||
		     be64_get((uint8_t *)k.mv_data + 4) > w->to)))
		w->done = true;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_ready_delayed(struct txn *t, uint32_t sub, uint64_t *count)
{
	struct store *st = t->st;
	uint64_t now = t->now_ms;
	struct delayed_count *d = delayed_find(st, sub);
	bool fresh = !d || now < d->horizon;
	if (fresh && !d)
		d = delayed_add(st, sub);
	if (!d)
		return ENOMEM;
	if (!fresh && now == d->horizon) {
		*count = d->count;
		return 0;
	}
	/* became due since the horizon, and still delayed at now */
	struct ready_walk due = { .done = true }, later = { .done = true };
	int rc = 0;
	if (!fresh)
		rc = walk_start(t, &due, sub, d->horizon + 1, now);
	if (!rc)
		rc = walk_start(t, &later, sub, now + 1, UINT64_MAX);
	while (!rc && !due.done && !later.done) {
		rc = walk_step(&due);
		if (!rc)
			rc = walk_step(&later);
	}
	if (!rc && due.done && !fresh) {
		d->count = d->count > due.n ? d->count - due.n : 0;
	} else if (!rc) {
		while (!rc && !later.done)
			rc = walk_step(&later);
		d->count = later.n;
	}
	if (due.c)
		mdb_cursor_close(due.c);
	if (later.c)
		mdb_cursor_close(later.c);
	if (rc) {
		st->n_delayed = 0;
		return rc;
	}
	d->horizon = now;
	*count = d->count;
	return 0;
}

static void lease_key(uint8_t k[20], uint64_t deadline, uint32_t sub,
		      uint64_t ev)
{
	be64_put(k, deadline);
	be32_put(k + 8, sub);
	be64_put(k + 12, ev);
}

int store_lease_put(struct txn *t, uint64_t deadline, uint32_t sub, uint64_t ev)
{
	uint8_t k[20];
	lease_key(k, deadline, sub, ev);
	return put_empty(t, DB_LEASES, k, 20, MDB_APPEND);
}

int store_lease_del(struct txn *t, uint64_t deadline, uint32_t sub, uint64_t ev)
{
	uint8_t k[20];
	lease_key(k, deadline, sub, ev);
	return del_key(t, DB_LEASES, k, 20);
}

int store_lease_first(struct txn *t, uint64_t *deadline, uint32_t *sub,
		      uint64_t *ev)
{
	MDB_val ko;
	int rc = seek(t, DB_LEASES, NULL, 0, &ko, NULL);
	if (rc)
		return rc;
	if (ko.mv_size != 20)
		return STORE_EDECODE;
	*deadline = be64_get(ko.mv_data);
	*sub = be32_get((uint8_t *)ko.mv_data + 8);
	*ev = be64_get((uint8_t *)ko.mv_data + 12);
	return 0;
}

int store_lease_next(struct txn *t, uint64_t *deadline, uint32_t *sub,
		     uint64_t *ev)
{
	uint8_t k[20];
	MDB_val ko;
	lease_key(k, *deadline, *sub, *ev);
	/* the smallest key greater than k: k with one more in its last byte
	 * position, carrying; all-ones has no successor */
	int i = 19;
	while (i >= 0 && k[i] == 0xff)
		k[i--] = 0;
	if (i < 0)
		return MDB_NOTFOUND;
	k[i]++;
	int rc = seek(t, DB_LEASES, k, 20, &ko, NULL);
	if (rc)
		return rc;
	if (ko.mv_size != 20)
		return STORE_EDECODE;
	*deadline = be64_get(ko.mv_data);
	*sub = be32_get((uint8_t *)ko.mv_data + 8);
	*ev = be64_get((uint8_t *)ko.mv_data + 12);
	return 0;
}

int store_lease_find_sub(struct txn *t, uint32_t sub, uint64_t *deadline,
			 uint64_t *ev)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(t->txn, t->st->dbi[DB_LEASES], &c);
	if (rc)
		return rc;
	MDB_val k, d;
	rc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
	while (!rc) {
		if (k.mv_size == 20 &&
		    be32_get((uint8_t *)k.mv_data + 8) == sub) {
			*deadline = be64_get(k.mv_data);
			*ev = be64_get((uint8_t *)k.mv_data + 12);
			break;
		}
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	}
	mdb_cursor_close(c);
	return rc;
}

int store_dlq_put(struct txn *t, uint32_t sub, uint64_t ev)
{
	uint8_t k[12];
	be32_put(k, sub);
	be64_put(k + 4, ev);
	return put_empty(t, DB_DLQ, k, 12, 0);
}

int store_dlq_del(struct txn *t, uint32_t sub, uint64_t ev)
{
	uint8_t k[12];
	be32_put(k, sub);
	be64_put(k + 4, ev);
	return del_key(t, DB_DLQ, k, 12);
}

int store_dlq_next(struct txn *t, uint32_t sub, uint64_t after, uint64_t *ev)
{
	uint8_t k[12];
	MDB_val ko;
	if (after == UINT64_MAX)
		return MDB_NOTFOUND;
	be32_put(k, sub);
	be64_put(k + 4, after + 1);
	int rc = seek(t, DB_DLQ, k, 12, &ko, NULL);
	if (rc)
		return rc;
	if (ko.mv_size != 12 || be32_get(ko.mv_data) != sub)
		return MDB_NOTFOUND;
	*ev = be64_get((uint8_t *)ko.mv_data + 4);
	return 0;
}

/* ---- idempotency and expiry ------------------------------------------- */

int store_idem_key(uint32_t topic_id, const char *key, uint8_t *out,
		   size_t *len)
{
	size_t kl = strlen(key);
	if (4 + kl > IDEM_KEY_MAX)
		return EINVAL;
	be32_put(out, topic_id);
	memcpy(out + 4, key, kl);
	*len = 4 + kl;
	return 0;
}
int store_idem_get(struct txn *t, const uint8_t *key, size_t len,
		   IdemRecord **out)
{
	return get_msg(t, DB_IDEM, key, len,
		       &handoff__store__idempotency_record__descriptor,
		       (void **)out);
}

int store_idem_put(struct txn *t, const uint8_t *key, size_t len,
		   const IdemRecord *r)
{
	return put_msg(t, DB_IDEM, key, len, &r->base, MDB_APPEND);
}

int store_idem_del(struct txn *t, const uint8_t *key, size_t len)
{
	return del_key(t, DB_IDEM, key, len);
}

int store_expiry_put(struct txn *t, uint64_t at, int kind, const void *id,
		     size_t idlen)
{
	uint8_t k[9 + IDEM_KEY_MAX];
	if (idlen > IDEM_KEY_MAX)
		return EINVAL;
	be64_put(k, at);
	k[8] = (uint8_t)kind;
	memcpy(k + 9, id, idlen);
	return put_empty(t, DB_EXPIRY, k, 9 + idlen, MDB_APPEND);
}

int store_expiry_first(struct txn *t, uint64_t now, uint64_t *at, int *kind,
		       uint8_t *idbuf, size_t *idlen)
{
	MDB_val ko;
	int rc = seek(t, DB_EXPIRY, NULL, 0, &ko, NULL);
	if (rc)
		return rc;
	if (ko.mv_size < 9 || ko.mv_size > 9 + IDEM_KEY_MAX)
		return STORE_EDECODE;
	*at = be64_get(ko.mv_data);
	if (*at > now)
		return MDB_NOTFOUND;
	*kind = ((uint8_t *)ko.mv_data)[8];
	*idlen = ko.mv_size - 9;
	memcpy(idbuf, (uint8_t *)ko.mv_data + 9, *idlen);
	return 0;
}

int store_expiry_del(struct txn *t, uint64_t at, int kind, const void *id,
		     size_t idlen)
{
	uint8_t k[9 + IDEM_KEY_MAX];
	if (idlen > IDEM_KEY_MAX)
		return EINVAL;
	be64_put(k, at);
	k[8] = (uint8_t)kind;
	memcpy(k + 9, id, idlen);
	return del_key(t, DB_EXPIRY, k, 9 + idlen);
}

/* ---- space ------------------------------------------------------------- */

void store_pages(struct store *st, uint64_t *used, uint64_t *map,
		 uint32_t *page_size)
{
	MDB_envinfo info;
	MDB_stat stat;
	mdb_env_info(st->env, &info);
	mdb_env_stat(st->env, &stat);
	*used = (uint64_t)info.me_last_pgno + 1;
	*page_size = stat.ms_psize;
	*map = info.me_mapsize / stat.ms_psize;
}

/*
 * LMDB's free list (database 0) holds one record per transaction that freed
 * pages: an array of page numbers whose first element is their count (the
 * format mdb_stat -f reads). Only called when the file is nearly full.
 */
int store_free_pages(struct store *st, uint64_t *pages)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, d;
	int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
	*pages = 0;
	if (rc)
		return rc;
	rc = mdb_cursor_open(txn, 0, &cur);
	if (rc)
		goto out;
	while ((rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) == 0) {
		size_t n;
		if (d.mv_size < sizeof n)
			continue;
		memcpy(&n, d.mv_data, sizeof n);
		*pages += n;
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
out:
	mdb_txn_abort(txn);
	return rc;
}

int store_reserve(struct store *st, uint64_t bytes)
{
	int fd;
	struct stat sb;
	off_t from = 0;
	if (mdb_env_get_fd(st->env, &fd))
		return EBADF;
	/* Only past the end of a file without holes: XFS wants free space
	 * for the whole range asked, allocated or not, so asking from 0
	 * would fail once the disk has less free space than the file. */
	if (fstat(fd, &sb) == 0 && owns_blocks(&sb, sb.st_size))
		from = sb.st_size;
	if ((uint64_t)from >= bytes)
		return 0;
	return posix_fallocate(fd, from, (off_t)bytes - from);
}

uint64_t store_file_bytes(struct store *st)
{
	int fd;
	struct stat sb;
	if (mdb_env_get_fd(st->env, &fd) || fstat(fd, &sb))
		return 0;
	return (uint64_t)sb.st_size;
}

/* ---- operator audit and commands --------------------------------------- */

int store_audit_append(struct txn *t, AuditRecord *r)
{
	MDB_cursor *c;
	MDB_val k, d;
	uint8_t key[8];
	int rc = mdb_cursor_open(t->txn, t->st->dbi[DB_AUDIT], &c);
	if (rc)
		return rc;
	rc = mdb_cursor_get(c, &k, &d, MDB_LAST);
	mdb_cursor_close(c);
	if (rc && rc != MDB_NOTFOUND)
		return rc;
	r->seq = rc == MDB_NOTFOUND || k.mv_size != 8 ? 1 :
							be64_get(k.mv_data) + 1;
	be64_put(key, r->seq);
	return put_msg(t, DB_AUDIT, key, 8, &r->base, MDB_APPEND);
}

int store_audit_next(struct txn *t, uint64_t after, AuditRecord **out)
{
	MDB_cursor *c;
	uint8_t key[8];
	if (after == UINT64_MAX)
		return MDB_NOTFOUND; /* after + 1 would wrap to the first */
	be64_put(key, after + 1);
	MDB_val k = { 8, key }, d;
	int rc = mdb_cursor_open(t->txn, t->st->dbi[DB_AUDIT], &c);
	if (rc)
		return rc;
	rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	mdb_cursor_close(c);
	if (rc)
		return rc;
	return decode(t, &handoff__store__audit_record__descriptor, d.mv_size,
		      d.mv_data, (void **)out);
}

int store_command_get(struct txn *t, const char *id, CommandRecord **out)
{
	return get_msg(t, DB_COMMANDS, id, strlen(id),
		       &handoff__store__command_record__descriptor,
		       (void **)out);
}

int store_command_put(struct txn *t, const char *id, const CommandRecord *r)
{
	return put_msg(t, DB_COMMANDS, id, strlen(id), &r->base, 0);
}

int store_command_del(struct txn *t, const char *id)
{
	return del_key(t, DB_COMMANDS, id, strlen(id));
}
