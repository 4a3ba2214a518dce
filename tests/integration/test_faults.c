/*
 * test_faults.c — the broker under faults, against a real handoffd:
 *
 *   - a payload damaged on disk is never delivered: the CRC-32 stored with
 *     it catches the flipped bit, and the delivery is dead-lettered with
 *     reason corrupt, visible in the trace and the log;
 *   - a damaged data.mdb (truncated, meta pages overwritten) is refused at
 *     start with exit status 1 and "store damaged", never a crash, and the
 *     file is left as it was;
 *   - an LMDB reader killed while holding a snapshot does not pin pages
 *     for ever: the broker clears the stale slot (at start and every few
 *     seconds) and the file stops growing; a live reader, the control,
 *     does make it grow, so the measurement can fail;
 *   - a consumer killed mid-batch loses only its unacked leases, which
 *     come back to another consumer after the ack deadline as attempt 2;
 *   - a client's publish, fetch and ack ride out a broker that is down,
 *     stopped or restarted, and a publish is stored exactly once.
 *
 * The helper programs come from $STALE_READER and $FETCH_AND_DIE (see
 * stale_reader.c and fetch_and_die.c); meson sets both.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

extern char **environ;

static const char CONFIG[] = "[defaults]\n"
			     "max_attempts = 5\n"
			     "ack_deadline = 30s\n"
			     "backoff_min = 50ms\n"
			     "backoff_max = 200ms\n";

/* Trace and dedup records expire fast, so that in steady churn the store
 * only grows if freed pages cannot be reused. */
static const char CHURN_CONFIG[] = "[retention]\n"
				   "history = 200ms\n"
				   "dedup_window = 200ms\n"
				   "[defaults]\n"
				   "max_attempts = 5\n"
				   "ack_deadline = 30s\n"
				   "backoff_min = 50ms\n"
				   "backoff_max = 200ms\n";

/* ---- small helpers ------------------------------------------------------ */

static const char *helper_path(const char *var)
{
	const char *p = getenv(var);
	if (!p || !*p)
		fail_msg("%s is not set (run via meson test)", var);
	return p;
}

static void data_path(const broker *b, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/data.mdb", b->data);
	assert_true(n > 0 && (size_t)n < len);
}

static uint64_t file_size(const char *path)
{
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	return (uint64_t)sb.st_size;
}

/* The whole file (binary, NUL-terminated for text use). */
static char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	struct stat sb;
	assert_int_equal(fstat(fd, &sb), 0);
	char *buf = malloc((size_t)sb.st_size + 1);
	assert_non_null(buf);
	size_t off = 0;
	while (off < (size_t)sb.st_size) {
		ssize_t k = read(fd, buf + off, (size_t)sb.st_size - off);
		if (k < 0 && errno == EINTR)
			continue;
		assert_true(k > 0);
		off += (size_t)k;
	}
	close(fd);
	buf[off] = '\0';
	*len = off;
	return buf;
}

/* Replace the file's contents with buf (as a disk fault would: in place,
 * same inode). */
static void spill(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	assert_true(fd >= 0);
	size_t off = 0;
	while (off < len) {
		ssize_t k = write(fd, (const char *)buf + off, len - off);
		if (k < 0 && errno == EINTR)
			continue;
		assert_true(k > 0);
		off += (size_t)k;
	}
	assert_int_equal(fsync(fd), 0);
	assert_int_equal(close(fd), 0);
}

/*
 * XOR mask into byte `at` of every occurrence of needle in buf; returns how
 * many were changed. Every copy, because LMDB's copy-on-write can leave
 * older copies of a page in free pages: changing only the first match
 * might change a dead copy and prove nothing.
 */
static size_t flip_everywhere(char *buf, size_t len, const void *needle,
			      size_t nlen, size_t at, unsigned char mask)
{
	size_t n = 0;
	char *p = buf;
	while ((p = memmem(p, len - (size_t)(p - buf), needle, nlen)) != NULL) {
		p[at] ^= (char)mask;
		n++;
		p += nlen;
	}
	return n;
}

/* Whether one line of the broker log holds every one of needles[]
 * (NULL-terminated). A field needle like "event_id=3" must end where the
 * value ends, so 3 does not match 30. */
static bool log_line_has(const broker *b, const char *const *needles)
{
	size_t len = 0;
	char *text = slurp(b->log, &len);
	bool found = false;
	for (char *line = strtok(text, "\n"); line && !found;
	     line = strtok(NULL, "\n")) {
		bool all = true;
		for (size_t i = 0; needles[i] && all; i++) {
			const char *at = strstr(line, needles[i]);
			size_t nl = strlen(needles[i]);
			all = at && (at[nl] == '\0' || at[nl] == ' ');
		}
		found = all;
	}
	free(text);
	return found;
}

static bool log_has_corrupt_event(const broker *b, uint64_t id)
{
	char field[48];
	snprintf(field, sizeof field, "event_id=%" PRIu64, id);
	const char *needles[] = { "event=event_corrupt", field, NULL };
	return log_line_has(b, needles);
}

/* The largest count=N on an event=stale_readers_cleared line, or -1. */
static long stale_cleared_max(const broker *b)
{
	size_t len = 0;
	char *text = slurp(b->log, &len);
	long best = -1;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (!strstr(line, "event=stale_readers_cleared"))
			continue;
		const char *c = strstr(line, " count=");
		long n = c ? strtol(c + 7, NULL, 10) : -1;
		if (n > best)
			best = n;
	}
	free(text);
	return best;
}

/* Publish n events with the given payloads in one request (one commit:
 * each payload is written to the file once). */
static void publish_raw(handoff_client *c, const char *topic,
			const void *const *payloads, const size_t *lens,
			size_t n, uint64_t *ids)
{
	handoff_event ev[16];
	assert_true(n <= 16);
	for (size_t i = 0; i < n; i++)
		ev[i] = (handoff_event){ .payload = payloads[i],
					 .payload_len = lens[i] };
	int rc = handoff_publish(c, topic, ev, n, ids, NULL);
	if (rc != HANDOFF_OK)
		fprintf(stderr, "publish: %s: %s\n", handoff_strerror(rc),
			handoff_last_message(c));
	assert_int_equal(rc, HANDOFF_OK);
}

static int index_of(const uint64_t *ids, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return (int)i;
	return -1;
}

/*
 * Fetch and ack everything sub delivers until `want` deliveries came or
 * 20 s passed, then wait once more (wait_after_ms) to see nothing else
 * come. Each delivery must be one of ids[] with good[i] set, arrive once,
 * and carry exactly payloads[i].
 */
static void drain_expect(handoff_client *c, const char *sub,
			 const uint64_t *ids, const void *const *payloads,
			 const size_t *lens, const bool *good, size_t n,
			 uint32_t wait_after_ms)
{
	size_t want = 0, got = 0;
	bool seen[16] = { false };
	for (size_t i = 0; i < n; i++)
		want += good[i];
	uint64_t t0 = it_now_ms();
	while (got < want && it_now_ms() - t0 < 20000) {
		handoff_delivery *d = NULL;
		size_t k = it_fetch(c, sub, 16, 1000, &d);
		for (size_t j = 0; j < k; j++) {
			int i = index_of(ids, n, d[j].event_id);
			if (i < 0 || !good[i] || seen[i])
				fail_msg("%s delivered event %" PRIu64
					 " (damaged, unknown or twice)",
					 sub, d[j].event_id);
			seen[i] = true;
			assert_int_equal(d[j].payload_len, lens[i]);
			assert_memory_equal(d[j].payload, payloads[i], lens[i]);
			assert_int_equal(it_ack1(c, sub, d[j].event_id,
						 d[j].lease_token),
					 HANDOFF_OK);
		}
		got += k;
		handoff_deliveries_free(d, k);
	}
	assert_int_equal(got, want);
	handoff_delivery *d = NULL;
	size_t k = it_fetch(c, sub, 16, wait_after_ms, &d);
	if (k)
		fail_msg("%s delivered event %" PRIu64 " after the good ones",
			 sub, d[0].event_id);
}

/* The damaged event of sub: dead-lettered as corrupt, its trace says so
 * (corrupt flag, DEAD, reason corrupt, the attempt ended corrupt), and
 * nothing of sub is left ready, delayed or leased. */
static void assert_dead_corrupt(handoff_client *c, const char *sub, uint64_t id)
{
	assert_true(it_dlq_has(c, sub, id));
	handoff_dead_letter *dl = NULL;
	assert_int_equal(handoff_dlq_show(c, sub, id, &dl), HANDOFF_OK);
	assert_int_equal(dl->reason, HANDOFF_DEAD_CORRUPT);
	assert_string_equal(handoff_dead_reason_name(dl->reason), "corrupt");
	handoff_dead_letters_free(dl, 1);

	handoff_trace *t = NULL;
	handoff_subscription_trace *st = it_trace_sub(c, id, sub, &t);
	assert_true(t->corrupt);
	assert_int_equal(st->state, HANDOFF_STATE_DEAD);
	assert_int_equal(st->dead_reason, HANDOFF_DEAD_CORRUPT);
	assert_true(st->n_history >= 1);
	assert_int_equal(st->history[st->n_history - 1].outcome,
			 HANDOFF_OUTCOME_CORRUPT);
	handoff_trace_free(t);

	handoff_subscription_info si = it_sub_info(c, sub);
	assert_int_equal(si.ready + si.delayed + si.leased, 0);
}

/* ---- 1. a payload damaged on disk is never delivered --------------------- */

enum { PAT_LEN = 200 };

/* 200 bytes no other event shares, so memmem finds only this payload. */
static void make_pattern(char *buf, int i)
{
	int n = snprintf(buf, PAT_LEN, "fault-payload-%02d:", i);
	for (int j = n; j < PAT_LEN; j++)
		buf[j] = (char)('a' + (j * 7 + i * 3) % 26);
}

static void test_corrupt_payload_dead_lettered(void **state)
{
	broker *b = *state;
	enum { N = 6, VICTIM = 3 };
	static char pat[N][PAT_LEN];
	const void *pay[N];
	size_t lens[N];
	bool good[N];
	uint64_t ids[N];
	for (int i = 0; i < N; i++) {
		make_pattern(pat[i], i);
		pay[i] = pat[i];
		lens[i] = PAT_LEN;
		good[i] = i != VICTIM;
	}
	handoff_client *c = it_connect(b, "reader", 20000);
	/* Two subscriptions: each read is checked, not just the first. */
	it_subscribe(c, "pay", "s1", 5, 30000, 50, 200);
	it_subscribe(c, "pay", "s2", 5, 30000, 50, 200);
	publish_raw(c, "pay", pay, lens, N, ids);
	broker_term(b);

	char path[400];
	data_path(b, path, sizeof path);
	size_t len = 0;
	char *img = slurp(path, &len);
	/* One bit in the middle of the payload: still a valid protobuf,
	 * so only the checksum can tell. */
	size_t flipped =
		flip_everywhere(img, len, pat[VICTIM], PAT_LEN, 100, 0x10);
	assert_true(flipped >= 1);
	spill(path, img, len);
	free(img);

	broker_spawn(b);
	drain_expect(c, "s1", ids, pay, lens, good, N, 1000);
	drain_expect(c, "s2", ids, pay, lens, good, N, 300);
	/* The log line comes from the read that caught it (checked before
	 * any trace, which reads the payload again). */
	assert_true(log_has_corrupt_event(b, ids[VICTIM]));
	assert_dead_corrupt(c, "s1", ids[VICTIM]);
	assert_dead_corrupt(c, "s2", ids[VICTIM]);
	assert_int_equal(it_dlq_count(c, "s1"), 1);
	assert_int_equal(it_dlq_count(c, "s2"), 1);
	handoff_close(c);
	broker_passed(b);
}

/* The body store.h documents for an event's payload: its EventBody, which
 * for a bare payload is field 1 (tag 0x0a), its length as a varint, then
 * the bytes; *crc gets the crc32 that its record keeps for it. */
static size_t stored_body(const void *payload, size_t n, unsigned char *out,
			  uint32_t *crc)
{
	unsigned char *p = out;
	*p++ = 0x0a;
	size_t v = n;
	do {
		*p = (unsigned char)(v & 0x7f);
		v >>= 7;
		if (v)
			*p |= 0x80;
		p++;
	} while (v);
	memcpy(p, payload, n);
	p += n;
	*crc = (uint32_t)crc32(0L, out, (uInt)(p - out));
	return (size_t)(p - out);
}

static uint32_t be32_at(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* Flip mask in byte `at` of the crc of every stored record whose body is
 * body (crc): the record is crc (4), meta length M (4), meta (M), body, so
 * the crc sits 8 + M bytes before the body, with M right after it. */
static size_t flip_record_crc(char *img, size_t len, const unsigned char *body,
			      size_t blen, uint32_t crc, size_t at,
			      unsigned char mask)
{
	size_t n = 0;
	char *p = img;
	while ((p = memmem(p, len - (size_t)(p - img), body, blen)) != NULL) {
		size_t b = (size_t)(p - img);
		for (size_t back = 8; back <= 8 + 512 && back <= b; back++) {
			const unsigned char *v =
				(const unsigned char *)img + b - back;
			if (be32_at(v) == crc && be32_at(v + 4) == back - 8) {
				img[b - back + at] ^= (char)mask;
				n++;
				break;
			}
		}
		p += blen;
	}
	return n;
}

static void test_corrupt_crc_and_short_payload(void **state)
{
	broker *b = *state;
	/* 0: long, its stored CRC damaged; 1: short, a payload bit damaged;
	 * 2..4: intact, long and short. */
	enum { N = 5 };
	static char longp[3][PAT_LEN];
	for (int i = 0; i < 3; i++)
		make_pattern(longp[i], 40 + i);
	const void *pay[N] = { longp[0], "ok!", longp[1], longp[2], "ok?" };
	size_t lens[N] = { PAT_LEN, 3, PAT_LEN, PAT_LEN, 3 };
	bool good[N] = { false, false, true, true, true };
	uint64_t ids[N];
	handoff_client *c = it_connect(b, "reader", 20000);
	it_subscribe(c, "crc", "s", 5, 30000, 50, 200);
	publish_raw(c, "crc", pay, lens, N, ids);
	broker_term(b);

	char path[400];
	data_path(b, path, sizeof path);
	size_t len = 0;
	char *img = slurp(path, &len);
	unsigned char val[PAT_LEN + 16];
	uint32_t crc;
	/* Finding the body and its crc where store.h puts it also proves the
	 * layout, so the flips land where meant. */
	size_t vl = stored_body(pay[0], lens[0], val, &crc);
	if (flip_record_crc(img, len, val, vl, crc, 1, 0x04) < 1)
		fail_msg("stored record of event %" PRIu64 " not found: layout "
			 "is not crc32 + meta length + meta + EventBody",
			 ids[0]);
	vl = stored_body(pay[1], lens[1], val, &crc);
	/* val: 0x0a 0x03 'o' 'k' '!': flip a bit of the 'k'. */
	if (flip_everywhere(img, len, val, vl, 3, 0x01) < 1)
		fail_msg("stored body of event %" PRIu64 " not found", ids[1]);
	spill(path, img, len);
	free(img);

	broker_spawn(b);
	drain_expect(c, "s", ids, pay, lens, good, N, 1000);
	for (int i = 0; i < 2; i++) {
		assert_true(log_has_corrupt_event(b, ids[i]));
		assert_dead_corrupt(c, "s", ids[i]);
	}
	assert_int_equal(it_dlq_count(c, "s"), 2);
	handoff_close(c);
	broker_passed(b);
}

/* ---- 2. a damaged store is refused at start ------------------------------- */

/* Run handoffd on b's folder in the foreground, as harness.c does, and
 * return how it ended (it should not start: 20 s is only a backstop). */
static void run_handoffd(const broker *b, cli_result *r)
{
	const char *argv[] = { getenv("HANDOFFD"), "--data", b->data,
			       "--listen",	   b->url,   "--config",
			       b->config,	   NULL };
	assert_non_null(argv[0]);
	it_run(argv, NULL, 20000, r);
}

static uint32_t le32(const void *p)
{
	const unsigned char *u = p;
	return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
	       (uint32_t)u[3] << 24;
}

typedef struct damage {
	const char *name;
	size_t keep;	 /* truncate to this many bytes ... */
	size_t meta_off; /* ... or XOR meta_mask into both meta pages */
	size_t meta_len; /*     at meta_off .. meta_off+meta_len */
	unsigned char meta_mask;
	const char *must_say; /* besides "store damaged"; NULL = none */
} damage;

/* LMDB's meta pages: the page header (16 bytes; mp_flags, with P_META =
 * 0x08, at 10) then MDB_meta (mm_magic 0xBEEFC0DE at 16; the page size
 * in the free DB's md_pad at 40; mm_last_pg at 136, mm_txnid at 144).
 * Pages 0 and 1 hold the two metas; the one with the larger txnid is
 * current. */
enum {
	META_FLAGS = 10,
	META_MAGIC = 16,
	META_PSIZE = 40,
	META_LAST_PG = 136,
	META_TXNID = 144,
	LMDB_MAGIC = 0xBEEFC0DE
};

static uint64_t le64(const void *p)
{
	const unsigned char *u = p;
	return le32(u) | (uint64_t)le32(u + 4) << 32;
}

/* Bytes of data.mdb that the current meta says hold pages. The file is
 * longer: the broker keeps disk allocated past its last page, and cutting
 * only that off damages nothing. */
static size_t pages_end(const char *img, size_t psize)
{
	const char *m0 = img, *m1 = img + psize;
	const char *cur =
		le64(m1 + META_TXNID) > le64(m0 + META_TXNID) ? m1 : m0;
	return (size_t)(le64(cur + META_LAST_PG) + 1) * psize;
}

static void apply_damage(const damage *d, const char *path, const char *orig,
			 size_t len, size_t psize)
{
	if (!d->meta_len) {
		spill(path, orig, d->keep);
		return;
	}
	char *img = malloc(len);
	assert_non_null(img);
	memcpy(img, orig, len);
	for (size_t page = 0; page < 2; page++)
		for (size_t i = 0; i < d->meta_len; i++)
			img[page * psize + d->meta_off + i] ^=
				(char)d->meta_mask;
	spill(path, img, len);
	free(img);
}

static void expect_refused(const broker *b, const damage *d, const char *path)
{
	uint64_t before = file_size(path);
	cli_result r;
	run_handoffd(b, &r);
	bool said = strstr(r.err, "store damaged") != NULL;
	/* For meta pages, LMDB's own error is clear enough too. */
	if (!said && d->meta_len)
		said = strstr(r.err, "MDB_") != NULL;
	bool ok = r.status == 1 && said &&
		  (!d->must_say || strstr(r.err, d->must_say)) &&
		  !strstr(r.err, "Sanitizer");
	if (!ok)
		fprintf(stderr,
			"damage '%s': handoffd status %d (want 1; "
			"128+N is signal N, -1 still running), stderr:\n%s\n",
			d->name, r.status, r.err);
	cli_result_free(&r);
	assert_true(ok);
	/* Refusing must not "repair" the file: a start that rewrote it
	 * (an empty file is a new LMDB env) would lose the data quietly on
	 * the next start. */
	assert_int_equal(file_size(path), before);
}

static void test_damaged_store_refused(void **state)
{
	broker *b = *state;
	enum { N = 100 };
	handoff_client *c = it_connect(b, "filler", 20000);
	it_subscribe(c, "fill", "s", 5, 30000, 50, 200);
	static char payload[2048];
	memset(payload, 'f', sizeof payload);
	handoff_event ev[25];
	uint64_t ids[25];
	for (int i = 0; i < 25; i++)
		ev[i] = (handoff_event){ .payload = payload,
					 .payload_len = sizeof payload };
	for (int round = 0; round < N / 25; round++)
		assert_int_equal(handoff_publish(c, "fill", ev, 25, ids, NULL),
				 HANDOFF_OK);
	broker_term(b);

	char path[400];
	data_path(b, path, sizeof path);
	size_t len = 0;
	char *orig = slurp(path, &len);
	size_t psize = le32(orig + META_PSIZE);
	/* Make sure the flips below hit both meta pages and nothing else. */
	assert_int_equal(le32(orig + META_MAGIC), LMDB_MAGIC);
	assert_int_equal(le32(orig + psize + META_MAGIC), LMDB_MAGIC);

	size_t end = pages_end(orig, psize);
	assert_true(end >= 8 * psize && end <= len);
	const damage cases[] = {
		{ "pages cut in half", end / 2, 0, 0, 0, "truncated" },
		{ "last page missing", end - psize, 0, 0, 0, "truncated" },
		{ "cut to 100 bytes", 100, 0, 0, 0, NULL },
		{ "cut to 0 bytes", 0, 0, 0, 0, NULL },
		{ "meta magic flipped", 0, META_MAGIC, 4, 0xff, NULL },
		{ "meta P_META flag cleared", 0, META_FLAGS, 1, 0x08, NULL },
		{ "meta header and meta garbled", 0, 0, 128, 0xa5, NULL },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		apply_damage(&cases[i], path, orig, len, psize);
		expect_refused(b, &cases[i], path);
	}

	/* Control: the same folder, undamaged again, starts and has it all,
	 * so every refusal above was about the damage. */
	spill(path, orig, len);
	free(orig);
	broker_spawn(b);
	handoff_subscription_info si = it_sub_info(c, "s");
	assert_int_equal(si.ready, N);
	handoff_close(c);
	broker_passed(b);
}

/* ---- 3. stale LMDB reader slots --------------------------------------------- */

/* Readers left stopped (the control) are killed at teardown, even when an
 * assertion jumped out of the test. */
static pid_t stopped_readers[4];
/* The control's broker, cleaned up at teardown if the test fails. */
static broker *control_broker;

static void forget_reader(pid_t pid)
{
	for (size_t i = 0; i < 4; i++)
		if (stopped_readers[i] == pid)
			stopped_readers[i] = 0;
}

static void kill_stopped_readers(void)
{
	for (size_t i = 0; i < 4; i++)
		if (stopped_readers[i] > 0) {
			kill(stopped_readers[i], SIGKILL);
			waitpid(stopped_readers[i], NULL, 0);
			stopped_readers[i] = 0;
		}
}

/* Spawn $STALE_READER DIR MODE and wait until it dies (die) or stops
 * (stop); either proves it held a read txn at that moment. */
static pid_t run_reader(const broker *b, const char *mode)
{
	const char *argv[] = { helper_path("STALE_READER"), b->data, mode,
			       NULL };
	posix_spawn_file_actions_t fa;
	assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	pid_t pid = 0;
	int rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv,
			     environ);
	posix_spawn_file_actions_destroy(&fa);
	assert_int_equal(rc, 0);
	int st = 0;
	pid_t w;
	while ((w = waitpid(pid, &st, WUNTRACED)) < 0 && errno == EINTR)
		;
	assert_int_equal(w, pid);
	if (strcmp(mode, "stop") == 0) {
		if (WIFSTOPPED(st))
			for (size_t i = 0; i < 4; i++)
				if (stopped_readers[i] == 0) {
					stopped_readers[i] = pid;
					break;
				}
		assert_true(WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP);
	} else {
		if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
			fail_msg("stale_reader did not die of SIGKILL holding "
				 "its txn (status 0x%x)",
				 st);
	}
	return pid;
}

/* How many reader slots of pid hold a snapshot (another process must have
 * the environment open, see stale_reader.c). */
static long reader_slots(const broker *b, pid_t pid)
{
	char pid_s[32];
	snprintf(pid_s, sizeof pid_s, "%ld", (long)pid);
	const char *argv[] = { helper_path("STALE_READER"), b->data, "count",
			       pid_s, NULL };
	cli_result r;
	it_run(argv, NULL, 10000, &r);
	if (r.status != 0)
		fprintf(stderr, "stale_reader count: %s\n", r.err);
	assert_int_equal(r.status, 0);
	long n = strtol(r.out, NULL, 10);
	cli_result_free(&r);
	return n;
}

enum { CHURN_PAYLOAD = 3000, CHURN_CYCLES = 40 };

/* n rounds of publish, fetch, ack of one event of a few KiB: each round
 * frees the payload's page and the pages its three commits copied. */
static void churn(handoff_client *c, int n)
{
	static char payload[CHURN_PAYLOAD];
	static unsigned seq;
	for (int i = 0; i < n; i++) {
		memset(payload, 'a' + (int)(seq++ % 26), sizeof payload);
		handoff_event ev = { .payload = payload,
				     .payload_len = sizeof payload };
		uint64_t id = 0;
		assert_int_equal(handoff_publish(c, "churn", &ev, 1, &id, NULL),
				 HANDOFF_OK);
		handoff_delivery *d = NULL;
		assert_int_equal(it_fetch(c, "s", 1, 5000, &d), 1);
		assert_int_equal(d[0].event_id, id);
		assert_int_equal(it_ack1(c, "s", id, d[0].lease_token),
				 HANDOFF_OK);
		handoff_deliveries_free(d, 1);
	}
}

typedef struct growth {
	uint64_t file;	/* data.mdb's size */
	uint64_t pages; /* bytes up to its last page in use (stats) */
} growth;

static growth store_size(const broker *b, handoff_client *c)
{
	char path[400];
	data_path(b, path, sizeof path);
	handoff_stats *st = NULL;
	assert_int_equal(handoff_get_stats(c, &st), HANDOFF_OK);
	growth g = { file_size(path), st->store_used_bytes };
	handoff_stats_free(st);
	return g;
}

/*
 * Growth of the store over a second batch of churn that follows a first
 * one (the first uses up free pages left from before). The file itself is
 * kept allocated a margin past its last page, in MiB steps, so the pages
 * in use are the fine measure and the file size the one users see.
 */
static growth growth_after_churn(const broker *b, handoff_client *c)
{
	churn(c, CHURN_CYCLES);
	growth g1 = store_size(b, c);
	churn(c, CHURN_CYCLES);
	growth g2 = store_size(b, c);
	fprintf(stderr,
		"faults: over %d cycles data.mdb %" PRIu64 " -> %" PRIu64
		" bytes, pages in use end %" PRIu64 " -> %" PRIu64 "\n",
		CHURN_CYCLES, g1.file, g2.file, g1.pages, g2.pages);
	return (growth){ g2.file > g1.file ? g2.file - g1.file : 0,
			 g2.pages > g1.pages ? g2.pages - g1.pages : 0 };
}

/* "Stops growing": less than a page per 4 cycles. A pinned snapshot costs
 * at least the payload's page every cycle (and in practice the pages of
 * three commits), which the control below shows. */
#define GROWTH_BOUND ((uint64_t)CHURN_CYCLES / 4 * 4096)

static handoff_client *churn_broker(broker *b)
{
	handoff_client *c = it_connect(b, "churner", 20000);
	it_subscribe(c, "churn", "s", 5, 30000, 50, 200);
	churn(c, CHURN_CYCLES); /* steady state: trees and free list built */
	return c;
}

static void test_stale_reader_cleared_while_running(void **state)
{
	broker *b = *state;
	handoff_client *c = churn_broker(b);
	growth before = store_size(b, c);
	pid_t dead = run_reader(b, "die");
	/* The slot is really there, held by a dead pid. */
	assert_int_equal(reader_slots(b, dead), 1);

	/* Keep the broker busy until its periodic check (about every 5 s)
	 * clears it: the check must not wait for an idle moment. 30 s is only
	 * a backstop. The pauses keep what the pinned file grows by small. */
	uint64_t t0 = it_now_ms();
	while (stale_cleared_max(b) < 1 && it_now_ms() - t0 < 30000) {
		churn(c, 2);
		it_sleep_ms(100);
	}
	if (stale_cleared_max(b) < 1)
		fail_msg("no event=stale_readers_cleared count>=1 in the log "
			 "within 30 s of a reader dying with a txn open");
	growth pinned = store_size(b, c);
	fprintf(stderr,
		"faults: stale slot cleared after %" PRIu64 " ms; "
		"meanwhile pages in use end %" PRIu64 " -> %" PRIu64 "\n",
		it_now_ms() - t0, before.pages, pinned.pages);
	assert_int_equal(reader_slots(b, dead), 0);
	growth grown = growth_after_churn(b, c);
	if (grown.file > GROWTH_BOUND || grown.pages > GROWTH_BOUND)
		fail_msg(
			"after the stale slot was cleared data.mdb grew %" PRIu64
			" bytes and its pages in use %" PRIu64
			" (bound %" PRIu64 ")",
			grown.file, grown.pages, GROWTH_BOUND);
	handoff_close(c);
	broker_passed(b);

	/* Control, on a fresh broker: a live reader pins the same way a
	 * stale one does, and the same measurement sees the file grow. */
	broker *ctl = control_broker = broker_start(CHURN_CONFIG);
	c = churn_broker(ctl);
	pid_t live = run_reader(ctl, "stop");
	assert_int_equal(reader_slots(ctl, live), 1);
	grown = growth_after_churn(ctl, c);
	kill_stopped_readers();
	if (grown.file <= GROWTH_BOUND || grown.pages <= GROWTH_BOUND)
		fail_msg("control: with a live reader pinning a snapshot "
			 "data.mdb grew only %" PRIu64 " bytes and its pages "
			 "in use %" PRIu64 " (bound %" PRIu64 "): the "
			 "measurement cannot tell",
			 grown.file, grown.pages, GROWTH_BOUND);
	handoff_close(c);
	broker_passed(ctl);
	broker_cleanup(ctl);
	control_broker = NULL;
}

static void test_stale_reader_cleared_at_start(void **state)
{
	broker *b = *state;
	handoff_client *c = churn_broker(b);
	broker_term(b);
	/* A live reader keeps the environment open, so the broker is not
	 * its first opener: LMDB would otherwise reset the reader table
	 * itself and the broker's own check would go untested. */
	pid_t live = run_reader(b, "stop");
	pid_t dead = run_reader(b, "die");
	assert_int_equal(reader_slots(b, dead), 1);

	broker_spawn(b);
	/* Cleared by the time it first answers: at start, not by a timer
	 * seconds later. */
	assert_true(stale_cleared_max(b) >= 1);
	assert_int_equal(reader_slots(b, dead), 0);
	assert_int_equal(reader_slots(b, live), 1);
	kill(live, SIGKILL);
	waitpid(live, NULL, 0);
	forget_reader(live);
	churn(c, 3); /* and it serves */
	handoff_close(c);
	broker_passed(b);
}

/* ---- 4. a consumer killed in the middle of a batch -------------------------- */

typedef struct doomed_lease {
	uint64_t id;
	bool acked;
	uint64_t deadline_ms;
	uint64_t token2; /* the survivor's lease */
} doomed_lease;

/* Run $FETCH_AND_DIE and read back what it leased and acked. */
static void run_doomed_consumer(const broker *b, doomed_lease *l, size_t n,
				size_t acks)
{
	char n_s[16], acks_s[16];
	snprintf(n_s, sizeof n_s, "%zu", n);
	snprintf(acks_s, sizeof acks_s, "%zu", acks);
	const char *argv[] = {
		helper_path("FETCH_AND_DIE"), b->url, "s", n_s, acks_s, NULL
	};
	cli_result r;
	it_run(argv, NULL, 60000, &r);
	if (r.status != 128 + SIGKILL)
		fail_msg("fetch_and_die ended with status %d, not SIGKILL: "
			 "%s",
			 r.status, r.err);
	size_t k = 0, n_acked = 0;
	for (char *line = strtok(r.out, "\n"); line;
	     line = strtok(NULL, "\n")) {
		char what[8];
		uint64_t id, deadline;
		uint32_t attempt;
		assert_int_equal(sscanf(line,
					"%7s %" SCNu64 " %" SCNu32 " %" SCNu64,
					what, &id, &attempt, &deadline),
				 4);
		assert_true(k < n);
		assert_int_equal(attempt, 1);
		l[k] = (doomed_lease){ id, strcmp(what, "acked") == 0, deadline,
				       0 };
		n_acked += l[k].acked;
		k++;
	}
	cli_result_free(&r);
	assert_int_equal(k, n);
	assert_int_equal(n_acked, acks);
}

static doomed_lease *find_lease(doomed_lease *l, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (l[i].id == id)
			return &l[i];
	return NULL;
}

static void test_consumer_killed_mid_batch(void **state)
{
	broker *b = *state;
	enum { N = 10, ACKS = 3 };
	handoff_client *c = it_connect(b, "survivor", 20000);
	it_subscribe(c, "jobs", "s", 5, 1000, 50, 200);
	handoff_event ev[N];
	uint64_t ids[N];
	for (int i = 0; i < N; i++)
		ev[i] = (handoff_event){ .payload = "job", .payload_len = 3 };
	assert_int_equal(handoff_publish(c, "jobs", ev, N, ids, NULL),
			 HANDOFF_OK);
	doomed_lease l[N];
	run_doomed_consumer(b, l, N, ACKS);

	/* The 7 held ones come back, each once, as attempt 2; no acked one
	 * ever does. */
	size_t got = 0;
	uint64_t t0 = it_now_ms();
	while (got < N - ACKS && it_now_ms() - t0 < 20000) {
		handoff_delivery *d = NULL;
		size_t k = it_fetch(c, "s", N, 1000, &d);
		for (size_t i = 0; i < k; i++) {
			doomed_lease *x = find_lease(l, N, d[i].event_id);
			if (!x || x->acked || x->token2)
				fail_msg("event %" PRIu64 " redelivered but it "
					 "was acked, unknown or already back",
					 d[i].event_id);
			assert_int_equal(d[i].attempt, 2);
			x->token2 = d[i].lease_token;
		}
		got += k;
		handoff_deliveries_free(d, k);
	}
	assert_int_equal(got, N - ACKS);
	for (size_t i = 0; i < N; i++)
		if (!l[i].acked)
			assert_int_equal(it_ack1(c, "s", l[i].id, l[i].token2),
					 HANDOFF_OK);
	/* Past another ack deadline and backoff: nothing comes back. */
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", N, 2500, &d), 0);
	handoff_subscription_info si = it_sub_info(c, "s");
	assert_int_equal(si.ready + si.delayed + si.leased + si.dead, 0);

	for (size_t i = 0; i < N; i++) {
		handoff_trace *t = NULL;
		handoff_subscription_trace *st =
			it_trace_sub(c, l[i].id, "s", &t);
		assert_int_equal(st->state, HANDOFF_STATE_ACKED);
		it_assert_consumer(st->history[0].consumer, "doomed");
		if (l[i].acked) {
			assert_int_equal(st->n_history, 1);
			assert_int_equal(st->history[0].outcome,
					 HANDOFF_OUTCOME_ACKED);
		} else {
			assert_int_equal(st->n_history, 2);
			assert_int_equal(st->history[0].outcome,
					 HANDOFF_OUTCOME_EXPIRED);
			/* Not taken back before the dead consumer's deadline. */
			assert_true(st->history[0].ended_ms >=
				    l[i].deadline_ms);
			assert_int_equal(st->history[1].attempt, 2);
			it_assert_consumer(st->history[1].consumer, "survivor");
			assert_int_equal(st->history[1].outcome,
					 HANDOFF_OUTCOME_ACKED);
		}
		handoff_trace_free(t);
	}
	handoff_close(c);
	broker_passed(b);
}

/* ---- 5. clients ride out outages ------------------------------------------- */

typedef struct bg_publish {
	handoff_client *c;
	const char *topic;
	const char *payload;
	atomic_int started;
	int rc;
	uint64_t id;
	bool dup;
} bg_publish;

/* No cmocka asserts off the main thread: results only. */
static void *publish_thread(void *arg)
{
	bg_publish *p = arg;
	handoff_event ev = { .payload = p->payload,
			     .payload_len = strlen(p->payload) };
	atomic_store(&p->started, 1);
	p->rc = handoff_publish(p->c, p->topic, &ev, 1, &p->id, &p->dup);
	return NULL;
}

static void start_publish(pthread_t *th, bg_publish *p)
{
	assert_int_equal(pthread_create(th, NULL, publish_thread, p), 0);
	while (!atomic_load(&p->started))
		it_sleep_ms(5);
}

/* dup_ok: a publish whose earlier copy the broker stored may be told so. */
static void join_publish(pthread_t th, bg_publish *p, bool dup_ok)
{
	assert_int_equal(pthread_join(th, NULL), 0);
	if (p->rc != HANDOFF_OK)
		fprintf(stderr, "background publish: %s: %s\n",
			handoff_strerror(p->rc), handoff_last_message(p->c));
	assert_int_equal(p->rc, HANDOFF_OK);
	assert_true(p->id != 0);
	if (!dup_ok)
		assert_false(p->dup);
}

/* sub holds exactly one delivery, id with payload, and nothing else. */
static void assert_stored_once(handoff_client *c, const char *sub, uint64_t id,
			       const char *payload)
{
	handoff_delivery *d = NULL;
	size_t k = it_fetch(c, sub, 10, 5000, &d);
	assert_int_equal(k, 1);
	assert_int_equal(d[0].event_id, id);
	assert_int_equal(d[0].payload_len, strlen(payload));
	assert_memory_equal(d[0].payload, payload, strlen(payload));
	assert_int_equal(it_ack1(c, sub, id, d[0].lease_token), HANDOFF_OK);
	handoff_deliveries_free(d, k);
	assert_int_equal(it_fetch(c, sub, 10, 500, &d), 0);
	handoff_subscription_info si = it_sub_info(c, sub);
	assert_int_equal(si.ready + si.delayed + si.leased + si.dead, 0);
}

static void test_publish_while_broker_down(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "admin", 20000);
	it_subscribe(c, "down", "s", 5, 30000, 50, 200);
	bg_publish p = { .c = it_connect(b, "producer", 20000),
			 .topic = "down",
			 .payload = "sent-while-down" };
	broker_kill9(b);
	pthread_t th;
	start_publish(&th, &p);
	it_sleep_ms(3000);
	broker_spawn(b);
	join_publish(th, &p, false);
	assert_stored_once(c, "s", p.id, p.payload);
	handoff_close(p.c);
	handoff_close(c);
	broker_passed(b);
}

static void test_publish_in_flight_when_broker_dies(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "admin", 20000);
	it_subscribe(c, "flight", "s", 5, 30000, 50, 200);
	bg_publish p = { .c = it_connect(b, "producer", 20000),
			 .topic = "flight",
			 .payload = "in-flight" };
	/* Stopped, the broker takes the request into its socket buffer and
	 * never answers; then it dies with the request unread. */
	assert_int_equal(kill(b->pid, SIGSTOP), 0);
	pthread_t th;
	start_publish(&th, &p);
	it_sleep_ms(300);
	broker_kill9(b);
	broker_spawn(b);
	join_publish(th, &p, false);
	assert_stored_once(c, "s", p.id, p.payload);
	handoff_close(p.c);
	handoff_close(c);
	broker_passed(b);
}

/*
 * The broker stalls (SIGSTOP) while the client resends every 300 ms: each
 * copy of the request waits in the broker's socket, and on SIGCONT the
 * broker reads and commits them all. They carry the same idempotency key,
 * so the event is stored once; copies with keys of their own would each
 * store one.
 */
static void test_publish_resent_to_stalled_broker(void **state)
{
	broker *b = *state;
	handoff_client *c = it_connect(b, "admin", 20000);
	it_subscribe(c, "stall", "s", 5, 30000, 50, 200);
	handoff_options o = { .deadline_ms = 20000,
			      .attempt_timeout_ms = 300,
			      .consumer_name = "producer" };
	bg_publish p = { .topic = "stall", .payload = "resent-while-stalled" };
	assert_int_equal(handoff_connect(broker_url(b), &o, &p.c), HANDOFF_OK);
	assert_int_equal(kill(b->pid, SIGSTOP), 0);
	pthread_t th;
	start_publish(&th, &p);
	it_sleep_ms(2000);
	assert_int_equal(kill(b->pid, SIGCONT), 0);
	join_publish(th, &p, true);
	assert_stored_once(c, "s", p.id, p.payload);
	handoff_close(p.c);
	handoff_close(c);
	broker_passed(b);
}

static void test_consumer_across_restarts(void **state)
{
	broker *b = *state;
	handoff_client *prod = it_connect(b, "producer", 20000);
	it_subscribe(prod, "cross", "s", 5, 60000, 50, 200);
	uint64_t e1 = it_publish1(prod, "cross", "first", NULL, NULL);
	uint64_t e2 = it_publish1(prod, "cross", "second", NULL, NULL);
	/* One handle for the whole test: it must never need recreating. */
	handoff_client *c = it_connect(b, "consumer", 20000);
	handoff_delivery *d = NULL;
	assert_int_equal(it_fetch(c, "s", 1, 2000, &d), 1);
	assert_int_equal(d[0].event_id, e1);
	uint64_t tok = d[0].lease_token;
	handoff_deliveries_free(d, 1);

	/* An ack sent while the broker is down: the call succeeds once it is
	 * back. The lease may or may not have survived the restart. */
	broker_kill9(b);
	broker_spawn_delayed(b, 2000);
	int res = it_ack1(c, "s", e1, tok);
	assert_true(res == HANDOFF_OK || res == HANDOFF_ELEASELOST);
	broker_wait_ready(b);

	/* A fetch sent while the broker is down gets what is ready. */
	broker_kill9(b);
	broker_spawn_delayed(b, 2000);
	bool want1 = res == HANDOFF_ELEASELOST, got1 = false, got2 = false;
	uint64_t t0 = it_now_ms();
	while ((!got2 || (want1 && !got1)) && it_now_ms() - t0 < 20000) {
		size_t k = it_fetch(c, "s", 10, 3000, &d);
		for (size_t i = 0; i < k; i++) {
			if (d[i].event_id == e1 && want1 && !got1) {
				/* its lease was lost to the restart */
				assert_int_equal(d[i].attempt, 2);
				got1 = true;
			} else if (d[i].event_id == e2 && !got2) {
				assert_int_equal(d[i].attempt, 1);
				got2 = true;
			} else {
				fail_msg("unexpected delivery of %" PRIu64,
					 d[i].event_id);
			}
			assert_int_equal(it_ack1(c, "s", d[i].event_id,
						 d[i].lease_token),
					 HANDOFF_OK);
		}
		handoff_deliveries_free(d, k);
	}
	broker_wait_ready(b);
	assert_true(got2 && got1 == want1);
	assert_int_equal(it_fetch(c, "s", 10, 500, &d), 0);
	for (int i = 0; i < 2; i++) {
		handoff_trace *t = NULL;
		assert_int_equal(it_trace_sub(c, i ? e2 : e1, "s", &t)->state,
				 HANDOFF_STATE_ACKED);
		handoff_trace_free(t);
	}
	handoff_close(c);
	handoff_close(prod);
	broker_passed(b);
}

/* ---- main --------------------------------------------------------------------- */

static int churn_setup(void **state)
{
	*state = broker_start(CHURN_CONFIG);
	return 0;
}

static int faults_teardown(void **state)
{
	kill_stopped_readers();
	broker_cleanup(control_broker);
	control_broker = NULL;
	return it_teardown(state);
}

int main(void)
{
	it_default_config = CONFIG;
	/* FAULTS_TEST=test_name* runs only the matching tests. */
	const char *only = getenv("FAULTS_TEST");
	if (only && *only)
		cmocka_set_test_filter(only);
#define T(f)  cmocka_unit_test_setup_teardown(f, it_setup, faults_teardown)
#define TC(f) cmocka_unit_test_setup_teardown(f, churn_setup, faults_teardown)
	const struct CMUnitTest tests[] = {
		T(test_corrupt_payload_dead_lettered),
		T(test_corrupt_crc_and_short_payload),
		T(test_damaged_store_refused),
		TC(test_stale_reader_cleared_while_running),
		TC(test_stale_reader_cleared_at_start),
		T(test_consumer_killed_mid_batch),
		T(test_publish_while_broker_down),
		T(test_publish_in_flight_when_broker_dies),
		T(test_publish_resent_to_stalled_broker),
		T(test_consumer_across_restarts),
	};
	return cmocka_run_group_tests_name("faults", tests, NULL, NULL);
}
