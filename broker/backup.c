/*
 * backup.c — hot backups on a thread of their own; see backup.h.
 */
#include "backup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "handoff.pb-c.h"
#include "log.h"

#define ST(x) HANDOFF__WIRE__STATUS__##x

/* Elapsed time only (not broker time: that comes with each request), read
 * here so the module needs nothing of clock.c. */
static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int backup_init(struct backup *bk, const char *dir, struct store *st)
{
	memset(bk, 0, sizeof *bk);
	bk->dir = dir && dir[0] ? dir : NULL;
	bk->st = st;
	const char *bps = getenv("HANDOFF_TEST_BACKUP_BPS");
	if (bps && *bps)
		bk->throttle_bps = strtoull(bps, NULL, 10);
	int rc = pthread_mutex_init(&bk->mu, NULL);
	if (rc)
		return rc;
	bk->inited = true;
	return 0;
}

void backup_fini(struct backup *bk)
{
	if (!bk->inited)
		return;
	if (bk->thread_live) {
		pthread_mutex_lock(&bk->mu);
		bk->stop = true;
		pthread_mutex_unlock(&bk->mu);
		pthread_join(bk->thread, NULL);
		bk->thread_live = false;
	}
	pthread_mutex_destroy(&bk->mu);
	bk->inited = false;
}

bool backup_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > BACKUP_NAME_MAX || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

/* ---- the thread ---------------------------------------------------------- */

struct copier {
	struct store *st;
	int fd; /* the pipe's write end; closed by the copier */
	int rc;
};

static void *copier_main(void *arg)
{
	struct copier *c = arg;
	c->rc = store_copy(c->st, c->fd);
	close(c->fd);
	log_thread_done();
	return NULL;
}

static bool stop_asked(struct backup *bk)
{
	pthread_mutex_lock(&bk->mu);
	bool stop = bk->stop;
	pthread_mutex_unlock(&bk->mu);
	return stop;
}

static void add_bytes(struct backup *bk, uint64_t n)
{
	pthread_mutex_lock(&bk->mu);
	bk->cur.bytes += n;
	bk->cur.duration_ms = mono_ms() - bk->started_mono;
	pthread_mutex_unlock(&bk->mu);
}

/* Test-only: sleep until `done` bytes are no faster than throttle_bps
 * since t0, in steps short enough to notice a stop. */
static void throttle(struct backup *bk, uint64_t t0, uint64_t done)
{
	if (!bk->throttle_bps)
		return;
	uint64_t due = t0 + done * 1000 / bk->throttle_bps;
	uint64_t now;
	while ((now = mono_ms()) < due && !stop_asked(bk)) {
		uint64_t ms = due - now < 50 ? due - now : 50;
		struct timespec ts = { 0, (long)ms * 1000000L };
		nanosleep(&ts, NULL);
	}
}

/* Move what the copier writes into out; 0 or errno (ECANCELED: stop). */
static int drain(struct backup *bk, int in, int out)
{
	enum { CHUNK = 1 << 16 };
	char *buf = malloc(CHUNK);
	uint64_t t0 = mono_ms(), total = 0;
	int rc = 0;
	if (!buf)
		return ENOMEM;
	for (;;) {
		if (stop_asked(bk)) {
			rc = ECANCELED;
			break;
		}
		ssize_t got = read(in, buf, CHUNK);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = errno;
			break;
		}
		if (got == 0)
			break; /* the copier closed its end */
		for (ssize_t done = 0; done < got;) {
			ssize_t w =
				write(out, buf + done, (size_t)(got - done));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = errno;
				goto out;
			}
			done += w;
		}
		total += (uint64_t)got;
		add_bytes(bk, (uint64_t)got);
		throttle(bk, t0, total);
	}
out:
	free(buf);
	return rc;
}

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int rc = fsync(fd) ? errno : 0;
	close(fd);
	return rc;
}

/* Copy into folder/data.mdb: 0, or errno / LMDB code with what filled. */
static int run_copy(struct backup *bk, const char *folder, const char **what)
{
	char part[PATH_MAX + 32], final[PATH_MAX + 32];
	int pipefd[2] = { -1, -1 }, out = -1, rc;
	pthread_t thread;
	struct copier c = { .st = bk->st };

	snprintf(part, sizeof part, "%s/data.mdb.part", folder);
	snprintf(final, sizeof final, "%s/data.mdb", folder);
	*what = "creating the copy";
	out = open(part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0)
		return errno;
	if (pipe2(pipefd, O_CLOEXEC)) {
		rc = errno;
		goto out;
	}
	c.fd = pipefd[1];
	rc = pthread_create(&thread, NULL, copier_main, &c);
	if (rc) {
		close(pipefd[1]);
		goto out;
	}
	*what = "copying";
	rc = drain(bk, pipefd[0], out);
	/* a copier still writing gets EPIPE now and gives up */
	close(pipefd[0]);
	pipefd[0] = -1;
	pthread_join(thread, NULL);
	if (!rc && c.rc) {
		*what = "LMDB's copy";
		rc = c.rc;
	}
	if (rc)
		goto out;
	*what = "syncing the copy";
	if (fsync(out))
		rc = errno;
	if (!rc && rename(part, final))
		rc = errno;
	if (!rc)
		rc = fsync_dir(folder);
	if (!rc)
		rc = fsync_dir(bk->dir);
out:
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	close(out);
	if (rc)
		(void)unlink(part);
	return rc;
}

static void *backup_main(void *arg)
{
	struct backup *bk = arg;
	char folder[PATH_MAX];
	const char *what = "creating the folder";
	int rc;

	pthread_mutex_lock(&bk->mu);
	snprintf(folder, sizeof folder, "%s", bk->cur.path);
	pthread_mutex_unlock(&bk->mu);
	rc = mkdir(folder, 0700) ? errno : 0;
	if (!rc) {
		rc = run_copy(bk, folder, &what);
		if (rc)
			(void)rmdir(folder);
	}

	pthread_mutex_lock(&bk->mu);
	bk->cur.duration_ms = mono_ms() - bk->started_mono;
	bk->cur.state = rc ? BACKUP_FAILED : BACKUP_DONE;
	if (rc)
		snprintf(bk->cur.error, sizeof bk->cur.error, "%s: %s", what,
			 rc == ECANCELED ? "the broker is stopping" :
					   store_strerror(rc));
	struct backup_view v = bk->cur;
	pthread_mutex_unlock(&bk->mu);

	if (rc)
		log_event(LOG_ERROR, "backup_failed", LS("name", v.name),
			  LS("path", v.path), LU("bytes", v.bytes),
			  LU("duration_ms", v.duration_ms),
			  LS("error", v.error), LOG_END);
	else
		log_event(LOG_INFO, "backup_done", LS("name", v.name),
			  LS("path", v.path), LU("bytes", v.bytes),
			  LU("duration_ms", v.duration_ms), LOG_END);
	log_thread_done();
	return NULL;
}

/* ---- requests (store thread) --------------------------------------------- */

int backup_request(struct backup *bk, const char *name, bool status_only,
		   uint64_t now_ms, struct backup_view *out, bool *started,
		   char *why, size_t whylen)
{
	struct stat sb;
	int status = ST(OK);

	*started = false;
	if (!bk || !bk->inited || !bk->dir) {
		snprintf(why, whylen,
			 "backups are off: set backup_dir in the broker's "
			 "configuration ([broker] backup_dir = FOLDER)");
		return ST(BAD_REQUEST);
	}
	if (!backup_name_ok(name)) {
		snprintf(why, whylen,
			 "backup name must be 1-%d bytes of letters, digits, "
			 "'.', '_' and '-' (a file name under backup_dir, "
			 "not a path)",
			 BACKUP_NAME_MAX);
		return ST(BAD_REQUEST);
	}
	pthread_mutex_lock(&bk->mu);
	bool same =
		bk->cur.state != BACKUP_NONE && strcmp(bk->cur.name, name) == 0;
	if (status_only) {
		if (!same) {
			snprintf(why, whylen,
				 "no backup named '%s' since the broker "
				 "started",
				 name);
			status = ST(NOT_FOUND);
		}
		goto reply;
	}
	if (bk->cur.state == BACKUP_RUNNING) {
		if (!same) {
			snprintf(why, whylen,
				 "backup '%s' is running; one at a time",
				 bk->cur.name);
			status = ST(CONFLICT);
		}
		goto reply; /* a resent start: how it goes */
	}
	int src = stat(bk->dir, &sb) ? errno : 0;
	if (src || !S_ISDIR(sb.st_mode)) {
		snprintf(why, whylen, "backup_dir %s: %s", bk->dir,
			 src ? strerror(src) : "not a folder");
		status = ST(INTERNAL);
		goto reply;
	}
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s/%s", bk->dir, name) >=
	    (int)sizeof path) {
		snprintf(why, whylen, "backup path too long");
		status = ST(BAD_REQUEST);
		goto reply;
	}
	if (lstat(path, &sb) == 0 || errno != ENOENT) {
		snprintf(why, whylen,
			 "%s exists: a backup never overwrites one; choose "
			 "another name or move it away",
			 path);
		status = ST(CONFLICT);
		goto reply;
	}
	bk->saved = bk->cur;
	memset(&bk->cur, 0, sizeof bk->cur);
	bk->cur.state = BACKUP_RUNNING;
	snprintf(bk->cur.name, sizeof bk->cur.name, "%s", name);
	snprintf(bk->cur.path, sizeof bk->cur.path, "%s", path);
	bk->cur.started_ms = now_ms;
	bk->started_mono = mono_ms();
	bk->reserved = true;
	*started = true;
reply:
	if (status == ST(OK))
		*out = bk->cur;
	pthread_mutex_unlock(&bk->mu);
	return status;
}

void backup_commit(struct backup *bk)
{
	if (!bk->inited || !bk->reserved)
		return;
	bk->reserved = false;
	if (bk->thread_live) {
		/* the last one ended (it is not RUNNING): reap it */
		pthread_join(bk->thread, NULL);
		bk->thread_live = false;
	}
	pthread_mutex_lock(&bk->mu);
	bk->started_mono = mono_ms();
	struct backup_view v = bk->cur;
	pthread_mutex_unlock(&bk->mu);
	int rc = pthread_create(&bk->thread, NULL, backup_main, bk);
	if (rc == 0)
		pthread_setname_np(bk->thread, "handoff-backup");
	if (rc) {
		pthread_mutex_lock(&bk->mu);
		bk->cur.state = BACKUP_FAILED;
		snprintf(bk->cur.error, sizeof bk->cur.error,
			 "cannot start the backup thread: %s", strerror(rc));
		pthread_mutex_unlock(&bk->mu);
		log_event(LOG_ERROR, "backup_failed", LS("name", v.name),
			  LS("error", strerror(rc)), LOG_END);
		return;
	}
	bk->thread_live = true;
	log_event(LOG_INFO, "backup_started", LS("name", v.name),
		  LS("path", v.path), LOG_END);
}

void backup_rollback(struct backup *bk)
{
	if (!bk->inited || !bk->reserved)
		return;
	bk->reserved = false;
	pthread_mutex_lock(&bk->mu);
	bk->cur = bk->saved;
	pthread_mutex_unlock(&bk->mu);
}
