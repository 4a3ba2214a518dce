/*
 * stale_reader.c — a stand-in for an LMDB tool (mdb_stat, mdb_dump) that
 * is killed while it holds a read transaction on the broker's store.
 * Spawned by test_faults.c ($STALE_READER).
 *
 *   stale_reader DIR die     open a read txn, then raise(SIGKILL): the
 *                            reader slot stays behind, held by a dead pid
 *   stale_reader DIR stop    open a read txn, then raise(SIGSTOP): a live
 *                            reader (the control), killed by the test
 *   stale_reader DIR count PID
 *                            print how many reader slots of PID hold a
 *                            snapshot (one number), exit 0
 *
 * Reaching the signal proves the read txn is open, so the test only has to
 * see the child die of SIGKILL (or stop) to know the slot was taken.
 * Exit status 1 on any LMDB error (message on stderr).
 *
 * "count" must only run while another process (the broker) has the
 * environment open: the first process to open an LMDB environment resets
 * its reader table, which would hide the very slots it looks for.
 */
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static MDB_env *open_env(const char *dir)
{
	MDB_env *env = NULL;
	int rc = mdb_env_create(&env);
	/* Read-only, like mdb_stat: it must not need anything but the lock
	 * file's reader table. */
	if (!rc)
		rc = mdb_env_open(env, dir, MDB_RDONLY, 0600);
	if (rc) {
		fprintf(stderr, "stale_reader: %s: %s\n", dir,
			mdb_strerror(rc));
		exit(1);
	}
	return env;
}

static void hold_snapshot_then(const char *dir, int sig)
{
	MDB_env *env = open_env(dir);
	MDB_txn *txn = NULL;
	int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (rc) {
		fprintf(stderr, "stale_reader: txn: %s\n", mdb_strerror(rc));
		exit(1);
	}
	printf("txnid=%zu pid=%ld\n", mdb_txn_id(txn), (long)getpid());
	fflush(stdout);
	raise(sig);
	/* Only "stop" gets here, if someone sends SIGCONT: keep holding. */
	for (;;)
		pause();
}

struct slot_count {
	char pid[32];
	long n;
};

/* mdb_reader_list prints one line per slot: "pid thread txnid", with
 * txnid "-" when the slot holds no snapshot. */
static int count_line(const char *msg, void *ctx)
{
	struct slot_count *c = ctx;
	char pid[32], thr[32], txn[32];
	if (sscanf(msg, "%31s %31s %31s", pid, thr, txn) == 3 &&
	    strcmp(pid, c->pid) == 0 && strcmp(txn, "-") != 0)
		c->n++;
	return 0;
}

static int count_slots(const char *dir, const char *pid)
{
	MDB_env *env = open_env(dir);
	struct slot_count c = { .n = 0 };
	snprintf(c.pid, sizeof c.pid, "%s", pid);
	int rc = mdb_reader_list(env, count_line, &c);
	mdb_env_close(env);
	if (rc < 0) {
		fprintf(stderr, "stale_reader: reader list: %s\n",
			mdb_strerror(rc));
		return 1;
	}
	printf("%ld\n", c.n);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[2], "die") == 0)
		hold_snapshot_then(argv[1], SIGKILL);
	if (argc == 3 && strcmp(argv[2], "stop") == 0)
		hold_snapshot_then(argv[1], SIGSTOP);
	if (argc == 4 && strcmp(argv[2], "count") == 0)
		return count_slots(argv[1], argv[3]);
	fprintf(stderr, "usage: stale_reader DIR die|stop|count PID\n");
	return 2;
}
