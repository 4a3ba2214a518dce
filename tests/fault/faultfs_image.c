/*
 * faultfs_image.c — faultfs-image: build a disk image of the tracked file
 * that a power cut could leave, from the state faultfs recorded.
 *
 *   faultfs-image --state DIR --out FILE --mode synced|all|random|torn
 *                 [--seed N] [--track data.mdb]
 *
 * Start from DIR/NAME.synced and walk DIR/NAME.journal in order: every
 * write before the last SYNC record is on disk, and so is every DURABLE
 * record after it; a MAYBE record after it is, per mode:
 *
 *   synced  skipped
 *   all     applied
 *   random  applied whole with probability 1/2
 *   torn    each 512-byte sector of it (by file offset) applied with
 *           probability 1/2
 *
 * A damaged or partial record ends the journal (a kill mid-append). The
 * image goes to FILE.tmp, then is renamed to FILE. Prints one summary line;
 * exit 1 with "faultfs-image: <what>" on stderr on errors.
 */
#include "faultfs_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum mode { M_SYNCED, M_ALL, M_RANDOM, M_TORN };

static const char *mode_names[] = { "synced", "all", "random", "torn" };

struct opts {
	const char *state, *out, *track;
	enum mode mode;
	uint64_t seed;
};

/* What the walk did, for the summary line. "durable" counts the writes
 * known to be on disk; the MAYBE ones are applied, torn or skipped. */
struct tally {
	uint64_t base_bytes, durable, maybe, applied, torn, skipped;
};

struct image {
	int fd;
	uint64_t rng;
	const char *path;
};

static int fail(const char *fmt, const char *arg, int err)
{
	fprintf(stderr, "faultfs-image: ");
	fprintf(stderr, fmt, arg);
	if (err)
		fprintf(stderr, ": %s", strerror(err));
	fputc('\n', stderr);
	return -1;
}

/* splitmix64: a few lines, and the same bits for a seed on every build. */
static uint64_t next_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static bool coin(struct image *img)
{
	return next_rand(&img->rng) >> 63;
}

static int usage(void)
{
	fprintf(stderr, "usage: faultfs-image --state DIR --out FILE --mode "
			"synced|all|random|torn [--seed N] [--track NAME]\n");
	return -1;
}

static int parse_mode(const char *s, enum mode *m)
{
	for (int i = 0; i <= M_TORN; i++) {
		if (strcmp(s, mode_names[i]) == 0) {
			*m = (enum mode)i;
			return 0;
		}
	}
	return fail("unknown mode %s", s, 0);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longs[] = {
		{ "state", required_argument, NULL, 's' },
		{ "out", required_argument, NULL, 'o' },
		{ "mode", required_argument, NULL, 'm' },
		{ "seed", required_argument, NULL, 'S' },
		{ "track", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_mode = false;
	char *end;
	int c;

	*o = (struct opts){ .track = "data.mdb" };
	while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		switch (c) {
		case 's':
			o->state = optarg;
			break;
		case 'o':
			o->out = optarg;
			break;
		case 't':
			o->track = optarg;
			break;
		case 'm':
			if (parse_mode(optarg, &o->mode))
				return -1;
			have_mode = true;
			break;
		case 'S':
			errno = 0;
			o->seed = strtoull(optarg, &end, 0);
			if (errno || *end || *optarg == '-' || !*optarg)
				return fail("bad seed %s", optarg, 0);
			break;
		default:
			return usage();
		}
	}
	if (optind != argc || !o->state || !o->out || !have_mode)
		return usage();
	return 0;
}

/* The whole journal in memory (empty if there is none). */
static int read_journal(const char *path, uint8_t **buf, size_t *size)
{
	struct stat st;
	size_t got = 0;
	int fd, rc = -1;

	*buf = NULL;
	*size = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : fail("open %s", path, errno);
	if (fstat(fd, &st)) {
		fail("stat %s", path, errno);
		goto out;
	}
	*buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
	if (*buf == NULL) {
		fail("reading %s", path, ENOMEM);
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, *buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fail("read %s", path, errno);
			goto out;
		}
		if (n == 0)
			break; /* shrank under us: the rest is a partial tail */
		got += (size_t)n;
	}
	*size = got;
	rc = 0;
out:
	close(fd);
	return rc;
}

static int write_at(struct image *img, const uint8_t *p, uint64_t len,
		    uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(img->fd, p, (size_t)len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return fail("write %s", img->path, n < 0 ? errno : EIO);
		p += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Copy the durable base into the image; its size goes to *bytes. */
static int copy_base(const char *path, struct image *img, uint64_t *bytes)
{
	static uint8_t buf[64 * 1024];
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -1;

	*bytes = 0;
	if (fd < 0)
		return fail("open %s", path, errno);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fail("read %s", path, errno);
			goto out;
		}
		if (n == 0)
			break;
		if (write_at(img, buf, (uint64_t)n, *bytes))
			goto out;
		*bytes += (uint64_t)n;
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

/* Where the walk must treat writes as durable: just past the last SYNC. */
static size_t last_sync_end(const uint8_t *buf, size_t size)
{
	struct fj_rec rec;
	size_t pos = 0, end = 0;

	while (fj_next(buf, size, &pos, &rec) == FJ_ENTRY)
		if (rec.type == FJ_SYNC)
			end = pos;
	return end;
}

/* Apply each sector of a MAYBE record on a coin toss; count the result. */
static int apply_torn(struct image *img, const struct fj_rec *rec,
		      struct tally *t)
{
	uint64_t off = rec->offset, end = rec->offset + rec->length;
	uint64_t pieces = 0, applied = 0;

	while (off < end) {
		uint64_t next = (off / FJ_SECTOR + 1) * FJ_SECTOR;
		if (next > end)
			next = end;
		pieces++;
		if (coin(img)) {
			if (write_at(img, rec->data + (off - rec->offset),
				     next - off, off))
				return -1;
			applied++;
		}
		off = next;
	}
	if (applied == pieces)
		t->applied++;
	else if (applied == 0)
		t->skipped++;
	else
		t->torn++;
	return 0;
}

static int apply_maybe(struct image *img, enum mode mode,
		       const struct fj_rec *rec, struct tally *t)
{
	t->maybe++;
	if (mode == M_TORN)
		return apply_torn(img, rec, t);
	if (mode == M_SYNCED || (mode == M_RANDOM && !coin(img))) {
		t->skipped++;
		return 0;
	}
	t->applied++;
	return write_at(img, rec->data, rec->length, rec->offset);
}

static int walk_journal(struct image *img, enum mode mode, const uint8_t *buf,
			size_t size, struct tally *t)
{
	size_t pos = 0, sync_end = last_sync_end(buf, size);
	struct fj_rec rec;

	while (fj_next(buf, size, &pos, &rec) == FJ_ENTRY) {
		/* Zero-length: a failed write, or a sync. */
		if (rec.type == FJ_SYNC || rec.length == 0)
			continue;
		if (pos <= sync_end || rec.type == FJ_DURABLE) {
			t->durable++;
			if (write_at(img, rec.data, rec.length, rec.offset))
				return -1;
		} else if (apply_maybe(img, mode, &rec, t)) {
			return -1;
		}
	}
	return 0;
}

static int state_file(char *out, const struct opts *o, const char *suffix)
{
	if (snprintf(out, PATH_MAX, "%s/%s%s", o->state, o->track, suffix) >=
	    PATH_MAX)
		return fail("path too long: %s", o->state, 0);
	return 0;
}

static int build(const struct opts *o)
{
	char base[PATH_MAX], journal[PATH_MAX], tmp[PATH_MAX];
	struct image img = { .fd = -1, .rng = o->seed, .path = tmp };
	struct tally t = { 0 };
	uint8_t *buf = NULL;
	struct stat st;
	size_t size;
	int rc = -1;

	if (state_file(base, o, ".synced") ||
	    state_file(journal, o, ".journal"))
		return -1;
	if (snprintf(tmp, sizeof tmp, "%s.tmp", o->out) >= (int)sizeof tmp)
		return fail("path too long: %s", o->out, 0);
	if (read_journal(journal, &buf, &size))
		return -1;
	img.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (img.fd < 0) {
		fail("open %s", tmp, errno);
		goto out;
	}
	if (copy_base(base, &img, &t.base_bytes) ||
	    walk_journal(&img, o->mode, buf, size, &t))
		goto out;
	if (fstat(img.fd, &st)) {
		fail("stat %s", tmp, errno);
		goto out;
	}
	if (rename(tmp, o->out)) {
		fail("rename to %s", o->out, errno);
		goto out;
	}
	printf("faultfs-image: mode=%s seed=%" PRIu64 " base_bytes=%" PRIu64
	       " durable=%" PRIu64 " maybe=%" PRIu64 " applied=%" PRIu64
	       " torn=%" PRIu64 " skipped=%" PRIu64 " out_bytes=%" PRIu64 "\n",
	       mode_names[o->mode], o->seed, t.base_bytes, t.durable, t.maybe,
	       t.applied, t.torn, t.skipped, (uint64_t)st.st_size);
	rc = 0;
out:
	if (img.fd >= 0)
		close(img.fd);
	if (rc)
		unlink(tmp);
	free(buf);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o;

	if (parse_opts(argc, argv, &o) || build(&o))
		return 1;
	return fflush(stdout) == 0 ? 0 : 1;
}
