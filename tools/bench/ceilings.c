/*
 * ceilings.c — what the machine allows, measured in the same run on the
 * same disk, so handoff's figures can be given as ratios (the disk drifts
 * from hour to hour; ratios taken in one run hold steady).
 *
 * LMDB: payload-byte values under 8-byte big-endian keys (MDB_APPEND),
 * per_commit puts per write transaction, default flags, so every commit is
 * synced as handoff's are. Each commit's latency goes into a histogram.
 *
 * nanomsg: PUSH/PULL one way over tcp 127.0.0.1, the receiver on a thread
 * of this process; its rate counts from the first to the last message it
 * received. nanomsg cannot bind port 0, so ports from 17000 up are tried.
 */
#include <errno.h>
#include <lmdb.h>
#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"

#define LMDB_MAP_BYTES (8ULL << 30)
#define NN_PORT_FIRST  17000
#define NN_PORT_TRIES  200
#define NN_TIMEOUT_MS  1000

static void remove_lmdb_dir(const char *dir)
{
	char p[BENCH_PATH_LEN];

	snprintf(p, sizeof p, "%s/data.mdb", dir);
	unlink(p);
	snprintf(p, sizeof p, "%s/lock.mdb", dir);
	unlink(p);
	rmdir(dir);
}

int ceiling_lmdb(const char *dir, uint32_t per_commit, uint32_t payload,
		 double seconds, struct lmdb_ceiling *out, char *err,
		 size_t errlen)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	struct hist *h = NULL;
	char *val = NULL;
	int rc, ret = -1;
	const char *what = "";

	memset(out, 0, sizeof *out);
	out->per_commit = per_commit;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s: %s", dir, strerror(errno));
		return -1;
	}
	h = malloc(sizeof *h);
	val = malloc(payload ? payload : 1);
	if (h == NULL || val == NULL) {
		snprintf(err, errlen, "out of memory");
		goto cleanup;
	}
	hist_init(h);
	memset(val, 'e', payload ? payload : 1);

	what = "mdb_env_create";
	if ((rc = mdb_env_create(&env)) != 0)
		goto lmdb_fail;
	what = "mdb_env_set_mapsize";
	if ((rc = mdb_env_set_mapsize(env, (size_t)LMDB_MAP_BYTES)) != 0)
		goto lmdb_fail;
	what = "mdb_env_open";
	if ((rc = mdb_env_open(env, dir, 0, 0600)) != 0)
		goto lmdb_fail;
	what = "mdb_txn_begin";
	if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0)
		goto lmdb_fail;
	what = "mdb_dbi_open";
	if ((rc = mdb_dbi_open(txn, NULL, 0, &dbi)) != 0)
		goto lmdb_fail;
	what = "mdb_txn_commit";
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc != 0)
		goto lmdb_fail;

	uint64_t seq = 0;
	uint64_t t0 = bench_now_ns();
	uint64_t end = t0 + (uint64_t)(seconds * 1e9);
	uint64_t now = t0;
	while (now < end && !bench_interrupted) {
		what = "mdb_txn_begin";
		if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0)
			break;
		for (uint32_t i = 0; i < per_commit && rc == 0; i++) {
			uint64_t k = __builtin_bswap64(++seq);
			MDB_val kv = { sizeof k, &k };
			MDB_val dv = { payload, val };
			what = "mdb_put";
			rc = mdb_put(txn, dbi, &kv, &dv, MDB_APPEND);
		}
		if (rc != 0)
			break;
		what = "mdb_txn_commit";
		rc = mdb_txn_commit(txn);
		txn = NULL;
		if (rc != 0)
			break;
		uint64_t after = bench_now_ns();
		hist_add(h, after - now);
		now = after;
		out->commits++;
		out->events += per_commit;
	}
	/* A full map ends the run early: what was measured still counts. */
	if (rc != 0 && !(rc == MDB_MAP_FULL && out->commits > 0))
		goto lmdb_fail;
	out->seconds = (double)(now - t0) / 1e9;
	if (out->seconds > 0) {
		out->commits_per_s = (double)out->commits / out->seconds;
		out->events_per_s = (double)out->events / out->seconds;
	}
	out->p50_ns = hist_quantile(h, 0.50);
	out->p99_ns = hist_quantile(h, 0.99);
	out->max_ns = h->max;
	out->ok = out->commits > 0;
	ret = out->ok ? 0 : -1;
	if (!out->ok)
		snprintf(err, errlen, "lmdb: no commit finished");
	goto cleanup;

lmdb_fail:
	snprintf(err, errlen, "lmdb %u per commit: %s: %s", per_commit, what,
		 mdb_strerror(rc));
cleanup:
	if (txn)
		mdb_txn_abort(txn);
	if (env)
		mdb_env_close(env);
	remove_lmdb_dir(dir);
	free(h);
	free(val);
	return ret;
}

struct puller {
	int sock;
	uint32_t payload;
	uint64_t got;
	uint64_t first_ns, last_ns;
};

static void *pull_main(void *arg)
{
	struct puller *p = arg;
	char *buf = malloc((size_t)p->payload + 64);

	if (buf == NULL)
		return NULL;
	for (;;) {
		int r = nn_recv(p->sock, buf, (size_t)p->payload + 64, 0);
		if (r < 0)
			break; /* timed out: the sender is done */
		uint64_t t = bench_now_ns();
		if (p->got++ == 0)
			p->first_ns = t;
		p->last_ns = t;
	}
	free(buf);
	return NULL;
}

static int sock_timeouts(int s)
{
	int ms = NN_TIMEOUT_MS;

	if (nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &ms, sizeof ms) < 0 ||
	    nn_setsockopt(s, NN_SOL_SOCKET, NN_SNDTIMEO, &ms, sizeof ms) < 0)
		return -1;
	return 0;
}

int ceiling_nn_pushpull(uint32_t payload, double seconds,
			struct nn_ceiling *out, char *err, size_t errlen)
{
	struct puller p = { .sock = -1, .payload = payload };
	int push = -1, ret = -1;
	bool thread_started = false;
	pthread_t th;
	char url[64];
	char *msg = NULL;

	memset(out, 0, sizeof *out);
	msg = malloc(payload ? payload : 1);
	if (msg == NULL) {
		snprintf(err, errlen, "out of memory");
		goto cleanup;
	}
	memset(msg, 'm', payload ? payload : 1);
	p.sock = nn_socket(AF_SP, NN_PULL);
	push = nn_socket(AF_SP, NN_PUSH);
	if (p.sock < 0 || push < 0 || sock_timeouts(p.sock) ||
	    sock_timeouts(push)) {
		snprintf(err, errlen, "nn_socket: %s", nn_strerror(nn_errno()));
		goto cleanup;
	}
	for (int i = 0; i < NN_PORT_TRIES; i++) {
		snprintf(url, sizeof url, "tcp://127.0.0.1:%d",
			 NN_PORT_FIRST + i);
		if (nn_bind(p.sock, url) >= 0) {
			out->port = NN_PORT_FIRST + i;
			break;
		}
	}
	if (out->port == 0) {
		snprintf(err, errlen, "nanomsg: no free port in %d..%d",
			 NN_PORT_FIRST, NN_PORT_FIRST + NN_PORT_TRIES - 1);
		goto cleanup;
	}
	if (nn_connect(push, url) < 0) {
		snprintf(err, errlen, "nn_connect %s: %s", url,
			 nn_strerror(nn_errno()));
		goto cleanup;
	}
	if (pthread_create(&th, NULL, pull_main, &p) != 0) {
		snprintf(err, errlen, "pthread_create failed");
		goto cleanup;
	}
	thread_started = true;

	uint64_t end = bench_now_ns() + (uint64_t)(seconds * 1e9);
	for (;;) {
		if ((out->sent & 255) == 0 &&
		    (bench_now_ns() >= end || bench_interrupted))
			break;
		if (nn_send(push, msg, payload, 0) < 0)
			break;
		out->sent++;
	}
	pthread_join(th, NULL);
	thread_started = false;
	out->received = p.got;
	if (p.got > 1 && p.last_ns > p.first_ns) {
		out->msgs_per_s = (double)(p.got - 1) * 1e9 /
				  (double)(p.last_ns - p.first_ns);
		out->ok = true;
		ret = 0;
	} else {
		snprintf(err, errlen, "nanomsg: %llu sent, %llu received",
			 (unsigned long long)out->sent,
			 (unsigned long long)p.got);
	}
cleanup:
	if (push >= 0)
		nn_close(push); /* unblocks nothing: the puller times out */
	if (thread_started)
		pthread_join(th, NULL);
	if (p.sock >= 0)
		nn_close(p.sock);
	free(msg);
	return ret;
}
