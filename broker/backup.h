/*
 * backup.h — hot backups: a consistent, compacted copy of the store,
 * written while the broker serves.
 *
 * An operator's backup request (handlers.c) names only a file name; the
 * copy goes to BACKUP_DIR/NAME/data.mdb (backup_dir from the config; no
 * backups when it is unset), so a request over the network can never make
 * the broker write anywhere else. The folder is a data folder: handoffd
 * --data BACKUP_DIR/NAME starts on it.
 *
 * One backup at a time, on a thread of its own: store_copy (LMDB's
 * mdb_env_copyfd2 with MDB_CP_COMPACT, in a read transaction that never
 * blocks the store thread's writes) writes into a pipe on a copier thread,
 * and the backup thread moves the bytes into data.mdb.part, counting them,
 * then syncs it and renames it to data.mdb. The store thread only starts
 * it and reads its state.
 *
 * A request reserves the backup inside the turn's transaction (where it is
 * audited); backup_commit() starts the reserved one once that transaction
 * committed, backup_rollback() forgets it when it did not (the turn then
 * retries the request alone, and a retry must find nothing reserved). The
 * same pattern as leases_commit/leases_rollback.
 *
 * Ownership: struct backup is the broker's; its thread uses the store,
 * which must stay open until backup_fini() returned (it stops a running
 * copy and joins the thread). Threads: backup_request, _commit, _rollback
 * and _fini on the store thread (or the thread that owns the broker); the
 * state is shared with the backup thread under the mutex.
 *
 * Test-only: HANDOFF_TEST_BACKUP_BPS=N caps the copy at N bytes/s (a slow
 * destination), so a test can publish while a small store is copied.
 */
#ifndef HANDOFF_BROKER_BACKUP_H
#define HANDOFF_BROKER_BACKUP_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define BACKUP_NAME_MAX 200

/* The states, as the wire's BackupState. */
enum backup_state {
	BACKUP_NONE = 0,
	BACKUP_RUNNING = 1,
	BACKUP_DONE = 2,
	BACKUP_FAILED = 3
};

/* One backup as a request sees it. */
struct backup_view {
	enum backup_state state;
	char name[BACKUP_NAME_MAX + 1];
	char path[PATH_MAX];
	uint64_t bytes;
	uint64_t started_ms; /* broker time */
	uint64_t duration_ms;
	char error[256];
};

struct backup {
	bool inited;
	const char *dir; /* backup_dir (the config's); NULL: off */
	struct store *st;
	uint64_t throttle_bps; /* test-only; 0: none */
	pthread_mutex_t mu;
	/* under mu */
	struct backup_view cur; /* the running or last backup */
	uint64_t started_mono;
	bool stop; /* backup_fini: give up the copy */
	/* store thread only */
	struct backup_view saved; /* cur before a reservation */
	bool reserved;		  /* reserved this transaction */
	bool thread_live;
	pthread_t thread;
};

/* dir NULL or "" turns backups off. 0 or an errno (mutex). */
int backup_init(struct backup *bk, const char *dir, struct store *st);
/* Stop a running copy (its files are removed), join the thread, free.
 * Safe on a zeroed struct. */
void backup_fini(struct backup *bk);

/* Whether name is a file name a backup may have: 1..BACKUP_NAME_MAX bytes
 * of [A-Za-z0-9._-], not "." or "..". */
bool backup_name_ok(const char *name);

/*
 * A backup request, inside a turn. Returns the wire status (0 OK) with why
 * filled otherwise; on OK, *out is the backup's state and *started tells
 * that this call reserved a new one (audit it; it starts at
 * backup_commit). status_only asks about name and never starts one.
 * Refusals: BAD_REQUEST (a bad name, or backups off: no backup_dir),
 * CONFLICT (another backup is running, or BACKUP_DIR/NAME exists),
 * NOT_FOUND (status_only: no backup of that name since the start),
 * INTERNAL (backup_dir unusable).
 */
int backup_request(struct backup *bk, const char *name, bool status_only,
		   uint64_t now_ms, struct backup_view *out, bool *started,
		   char *why, size_t whylen);

/* The turn's transaction committed: start what it reserved. */
void backup_commit(struct backup *bk);
/* It did not: forget what it reserved. */
void backup_rollback(struct backup *bk);

#endif
