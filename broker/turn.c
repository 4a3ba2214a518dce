/*
 * turn.c — one turn: receive, apply, commit, reply; see turn.h.
 */
#include "turn.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>
#include <time.h>

#include "broker.h"
#include "clock.h"
#include "health.h"
#include "log.h"
#include "notify.h"
#include "replies.h"

/* With only background work left, wait this long for a request first: a
 * request then never queues behind a background-only turn. */
#define BACKGROUND_WAIT_MS 1
#define IDLE_WAKE_MS	   1000
/* Arena use over this in one turn is returned to the system afterwards. */
#define ARENA_TRIM_BYTES (32u << 20)

/*
 * After a failed write or fsync, what the kernel holds for the file is
 * unknown (a failed fsync may have dropped the dirty pages): never retry
 * it. Exit, and let the supervisor restart on the last durable commit. A
 * full map or disk is not fatal: publishes are refused, the rest goes on.
 */
static bool error_is_fatal(struct broker *b, int rc)
{
	return rc == MDB_PANIC || rc == EIO || rc == EROFS || rc == ENXIO ||
	       rc == ENODEV || store_is_broken(&b->st);
}

/* Seconds on the monotonic clock, for the histograms (telemetry.h). */
static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Commit t, timing it if it wrote anything (a commit with nothing to
 * write syncs nothing: idle turns would only crowd the low buckets). */
static int commit_timed(struct broker *b, struct txn *t)
{
	double start = mono_s();
	int rc = store_txn_commit(t);
	if (t->wrote)
		histogram_observe(&b->tele.commit_s, mono_s() - start);
	return rc;
}

static int store_unusable(int rc)
{
	health_set_fatal();
	notify_status("store unusable (%s): exiting", store_strerror(rc));
	log_event(LOG_ERROR, "store_unusable", LS("error", store_strerror(rc)),
		  LS("action", "exiting without retrying the failed write; "
			       "restart recovers from the last durable commit"),
		  LOG_END);
	return TURN_STORE_UNUSABLE;
}

static int storage_status(int rc)
{
	return rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT ||
			       rc == MDB_TXN_FULL ?
		       HANDOFF__WIRE__STATUS__STORAGE_FULL :
		       HANDOFF__WIRE__STATUS__INTERNAL;
}

/* How long the turn may wait for its first request. */
static int poll_timeout(struct broker *b)
{
	uint64_t now = clock_now_ms(), wake = now + IDLE_WAKE_MS;
	if (bg_busy(&b->bg))
		return BACKGROUND_WAIT_MS;
	uint64_t bg = bg_next_wake(&b->bg), held = held_next_wake(&b->holds);
	if (bg < wake)
		wake = bg;
	if (held < wake)
		wake = held;
	/* the watchdog is petted by a turning loop: wake in time for it */
	uint64_t pet = notify_next_wake(), mono = clock_mono_ms();
	if (pet != UINT64_MAX) {
		uint64_t at = now + (pet > mono ? pet - mono : 0);
		if (at < wake)
			wake = at;
	}
	return wake <= now ? 0 : (int)(wake - now);
}

static int apply_one(struct broker *b, struct txn *t, struct pending *p)
{
	struct fetch_hold hold;
	p->reply = codec_new_reply(t->arena);
	if (!p->reply)
		return ENOMEM;
	b->env.caller = p->caller;
	int rc = handlers_apply(&b->env, t, p->req, p->reply, &hold);
	p->park = hold.hold;
	p->park_sub = hold.sub_id;
	p->park_paused = hold.paused;
	p->park_check = hold.next_check;
	return rc;
}

static int begin_write(struct broker *b, uint64_t now, struct txn *t)
{
	int rc = store_txn_begin(&b->st, &b->arena, true, now, t);
	t->sched = &b->sched;
	return rc;
}

/* Apply everything in one transaction; 0 when committed. */
static int apply_and_commit(struct broker *b, uint64_t now)
{
	struct txn t;
	struct bg_progress saved = b->bg.progress;
	int rc = begin_write(b, now, &t);
	if (rc)
		return rc;
	b->env.held_fetches = b->holds.n_held;
	b->env.held_awaits = b->holds.n_awaits;
	b->env.unsubscribed = false;
	rc = bg_recover(b, &t);
	for (size_t i = 0; i < b->inbox.n_pend && !rc; i++)
		rc = apply_one(b, &t, &b->inbox.pend[i]);
	if (!rc)
		rc = bg_expire(b, &t);
	if (!rc)
		rc = held_serve(b, &t);
	if (!rc)
		rc = bg_clean_up(b, &t);
	if (!rc)
		rc = bg_sample_rates(b, &t);
	if (rc)
		store_txn_abort(&t);
	else
		rc = commit_timed(b, &t);
	if (rc) {
		b->bg.progress = saved; /* nothing of it reached the disk */
		leases_rollback(&b->leases);
		backup_rollback(&b->backup);
	} else {
		leases_commit(&b->leases);
		backup_commit(&b->backup);
	}
	return rc;
}

/* The group failed: apply each request alone so one cannot fail all.
 * 0, or the fatal store error that stopped it. */
static int apply_one_by_one(struct broker *b, uint64_t now)
{
	b->env.held_fetches = b->holds.n_held;
	b->env.held_awaits = b->holds.n_awaits;
	for (size_t i = 0; i < b->inbox.n_pend; i++) {
		struct pending *p = &b->inbox.pend[i];
		struct txn t;
		log_defer_begin();
		int rc = begin_write(b, now, &t);
		if (!rc) {
			rc = apply_one(b, &t, p);
			if (rc)
				store_txn_abort(&t);
			else
				rc = commit_timed(b, &t);
		}
		if (rc) {
			leases_rollback(&b->leases);
			backup_rollback(&b->backup);
		} else {
			leases_commit(&b->leases);
			backup_commit(&b->backup);
		}
		log_defer_end(rc == 0);
		if (!rc)
			continue;
		if (error_is_fatal(b, rc))
			return rc;
		int st = storage_status(rc);
		p->park = false;
		p->reply =
			reply_error(b, st,
				    st == HANDOFF__WIRE__STATUS__STORAGE_FULL ?
					    "storage full: request not "
					    "applied; retry later" :
					    "request not applied: internal "
					    "store error");
		if (p->reply)
			p->reply->retry_after_ms = 1000;
		const Request *q = p->req;
		bool pub = q->body_case == HANDOFF__WIRE__REQUEST__BODY_PUBLISH;
		log_event(LOG_ERROR, pub ? "publish_failed" : "request_failed",
			  LS("request", inbox_request_name(q)),
			  LS("topic", pub ? q->publish->topic : ""),
			  LU("events", pub ? q->publish->n_events : 0),
			  LS("error", store_strerror(rc)), LOG_END);
	}
	return 0;
}

/* Steps 2 and 3: apply and commit, falling back to one request at a time.
 * 0 with *committed telling whether the group committed, or the fatal
 * store error. */
static int apply(struct broker *b, uint64_t now, bool *committed)
{
	log_defer_begin();
	int rc = apply_and_commit(b, now);
	log_defer_end(rc == 0);
	*committed = rc == 0;
	if (rc && error_is_fatal(b, rc))
		return rc;
	if (rc) {
		log_event(LOG_WARN, "group_commit_failed",
			  LS("error", store_strerror(rc)),
			  LU("requests", b->inbox.n_pend), LOG_END);
		rc = apply_one_by_one(b, now);
		if (rc)
			return rc;
	}
	if (b->env.unsubscribed) {
		b->bg.progress.unsubscribe_pending = true;
		b->env.unsubscribed = false;
	}
	return 0;
}

/* Step 4: answer every request of the turn (or hold its fetch or await),
 * then the held fetches and awaits that were served or ran out of time. */
static void reply_all(struct broker *b, uint64_t now, bool committed,
		      double taken_s)
{
	size_t publishes = 0;
	for (size_t i = 0; i < b->inbox.n_pend; i++) {
		struct pending *p = &b->inbox.pend[i];
		if (p->req->body_case == HANDOFF__WIRE__REQUEST__BODY_PUBLISH) {
			telemetry_publish_reply(&b->tele, p->req, p->reply);
			publishes++;
		}
		const Handoff__Wire__FetchRequest *f =
			p->req->body_case ==
					HANDOFF__WIRE__REQUEST__BODY_FETCH ?
				p->req->fetch :
				NULL;
		const Handoff__Wire__AwaitRequest *aw =
			p->req->body_case ==
					HANDOFF__WIRE__REQUEST__BODY_AWAIT ?
				p->req->await :
				NULL;
		if (p->park && aw) {
			if (held_await_add(&b->holds, aw, p->ctrl, now) == 0) {
				p->ctrl = NULL;
				continue;
			}
			p->reply =
				reply_error(b, HANDOFF__WIRE__STATUS__INTERNAL,
					    "out of memory holding the await");
		} else if (p->park) {
			if (held_add(&b->holds, f, p->ctrl, p->park_sub,
				     p->park_check, p->park_paused, now) == 0) {
				p->ctrl = NULL;
				continue;
			}
			p->reply =
				reply_error(b, HANDOFF__WIRE__STATUS__INTERNAL,
					    "out of memory holding the fetch");
		}
		if (p->reply)
			reply_send(b, p->ctrl, p->reply, f);
		else
			pump_send(&b->pump, p->ctrl, NULL, 0);
		p->ctrl = NULL;
	}
	b->inbox.n_pend = 0;
	held_finish(b, clock_now_ms(), committed);
	pump_flush(&b->pump);
	/* every publish of the turn waited as long as the turn */
	double waited = publishes ? mono_s() - taken_s : 0;
	for (size_t i = 0; i < publishes; i++)
		histogram_observe(&b->tele.confirm_s, waited);
	if (committed)
		held_clear_ready(&b->holds);
}

/* Before receiving: this turn's scratch memory. A turn that decoded a lot
 * (a burst of large or hostile requests) frees it here; give it back to
 * the system, or glibc keeps most of it in its heaps for good. */
static void start_turn(struct broker *b)
{
	size_t turn_bytes = b->arena.used_total;
	arena_reset(&b->arena);
	if (turn_bytes > ARENA_TRIM_BYTES)
		malloc_trim(0);
}

/* Between receiving and the transaction: storage headroom, reader slots. */
static void check_storage(struct broker *b, uint64_t now)
{
	space_update(&b->space, &b->st, now);
	b->env.storage_refusing =
		space_refusing(&b->space, &b->env.storage_why);
	health_set_storage_full(b->env.storage_refusing);
	b->env.storage_limit_bytes = b->space.capacity;
	b->env.storage_headroom_bytes =
		b->space.free_bytes > b->space.headroom ?
			b->space.free_bytes - b->space.headroom :
			0;
	bg_check_readers(b, now);
}

/*
 * Test only: while the file named by HANDOFF_TEST_STALL exists, the loop
 * stops turning (no beat, no watchdog), as a loop stuck in a sync would,
 * so the tests can see probes and the watchdog notice. Logged every time.
 */
static void test_stall(void)
{
	static const char *path;
	static bool read;
	if (!read) {
		path = getenv("HANDOFF_TEST_STALL");
		read = true;
	}
	if (!path || !*path || access(path, F_OK) != 0)
		return;
	log_event(LOG_WARN, "test_stall", LS("file", path),
		  LS("why", "HANDOFF_TEST_STALL (test only): the store loop "
			    "waits while the file exists"),
		  LOG_END);
	while (access(path, F_OK) == 0)
		usleep(20 * 1000);
}

/* The loop turned: liveness and the watchdog (health.h, notify.h). */
static void beat(void)
{
	uint64_t mono = clock_mono_ms();
	health_beat(mono);
	notify_watchdog(mono);
}

/* After a commit: the first one that finished lease recovery makes the
 * broker ready (its requests are answered in this same turn). */
static void check_ready(struct broker *b, bool committed)
{
	if (!committed || b->bg.progress.recovering || health_recovered())
		return;
	health_set_recovered(b->bg.progress.recovered);
	notify_ready(b->bg.progress.recovered);
}

int turn_run(struct broker *b, bool *stopping)
{
	bool committed;
	start_turn(b);
	inbox_receive(b, poll_timeout(b), stopping); /* 1. receive */
	test_stall();
	beat();
	double taken_s = mono_s();
	uint64_t now = clock_now_ms();
	check_storage(b, now);
	if (b->inbox.n_pend) {
		b->tele.turns++;
		histogram_observe(&b->tele.turn_requests,
				  (double)b->inbox.n_pend);
	}
	int rc = apply(b, now, &committed); /* 2. apply, 3. commit */
	if (rc)
		return store_unusable(rc);
	check_ready(b, committed);
	reply_all(b, now, committed, taken_s); /* 4. reply */
	return 0;
}
