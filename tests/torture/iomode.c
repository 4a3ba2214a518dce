/*
 * iomode.c — the io mode: for k = 1, 2, ... start handoffd with
 * libfaultfs preloaded and FAULTFS_FAIL_WRITE=k (or FAULTFS_FAIL_SYNC=k), so
 * that the k-th write (fsync) on data.mdb fails with EIO, and drive a short
 * deterministic workload through it: publishes, a fetch per subscription,
 * acks, a permanent nack (a dead letter), a delayed nack, a replay, more
 * fetches and acks. The driver records all of it like any producer and
 * consumer (driver.rec), so the final drain and checker cover it.
 *
 * What each k may end in:
 *   refused      an error reply: the client returned an error (recorded;
 *                the publish is unconfirmed) and the broker went on;
 *   exited3      the broker logged event=store_unusable and exited 3
 *                (at start, during the workload, or at the SIGTERM);
 *   start_refused the broker refused to start (exit 1) with the failure;
 *   not_reached  the run made fewer than k writes (syncs): faultfs's
 *                counters file says how many;
 *   absorbed     (write only) the failed write was retried inside the
 *                broker and every reply was OK.
 * Failures of the run: a call unanswered for 20 s while the broker lives
 * (hang), a broker that does not exit within 30 s of SIGTERM, a crash or
 * any other exit status, a failed fsync absorbed, an error reply or exit 3
 * with no failure injected, a k-th write made but no failure injected, and
 * a broker that does not start cleanly (without the fault) afterwards.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "driver.h"
#include "payload.h"
#include "roles.h"

#define IO_CALL_MS 500u	  /* per call; then: is the broker still there? */
#define IO_HANG_MS 20000u /* alive and unanswered this long: a hang */
#define IO_MAX_K   100000u

enum { IO_OK, IO_REFUSED, IO_RETRY, IO_STOP };

enum io_outcome {
	OUT_REFUSED,
	OUT_EXITED3,
	OUT_START_REFUSED,
	OUT_NOT_REACHED,
	OUT_ABSORBED,
	OUT_FAILED,
	OUT_N
};
static const char *const OUT_NAMES[OUT_N] = {
	"refused",     "exited3",  "start_refused",
	"not_reached", "absorbed", "failed",
};

struct io {
	struct run *r;
	handoff_client *c;
	char tag[16]; /* key prefix of this k: "w12", "s3" */
	unsigned seq;
	uint64_t t0; /* start of the call in hand (hang detection) */
	bool exited, hang;
	unsigned refused;
	char refusal[200];
};

/* Classify a call's result; see IO_*. */
static int settle(struct io *s, int rc, const char *call)
{
	if (rc == HANDOFF_OK)
		return IO_OK;
	if (rc >= HANDOFF_EBADREQUEST && rc <= HANDOFF_EINTERNAL) {
		if (!s->refused++)
			snprintf(s->refusal, sizeof(s->refusal), "%s: %s (%s)",
				 call, handoff_strerror(rc),
				 handoff_last_message(s->c));
		return IO_REFUSED;
	}
	if (!broker_proc_alive(&s->r->b)) {
		s->exited = true;
		return IO_STOP;
	}
	if (rc == HANDOFF_ETIMEDOUT &&
	    tt_mono_ns() - s->t0 < (uint64_t)IO_HANG_MS * 1000000u)
		return IO_RETRY;
	if (rc == HANDOFF_ETIMEDOUT)
		s->hang = true;
	else
		run_fail(s->r, "%s: %s", call, handoff_strerror(rc));
	return IO_STOP;
}

static bool io_publish(struct io *s, size_t n)
{
	char keys[8][48];
	unsigned char buf[8][PAYLOAD_MAX];
	handoff_event ev[8];
	uint64_t ids[8];
	bool dups[8];
	struct rec_writer *w = &s->r->rec;
	int st, rc;
	for (size_t i = 0; i < n; i++) {
		snprintf(keys[i], sizeof(keys[i]), "io-%s-%u", s->tag,
			 ++s->seq);
		payload_fill(keys[i], buf[i]);
		ev[i] = (handoff_event){ .payload = buf[i],
					 .payload_len = payload_len(keys[i]),
					 .key = keys[i],
					 .idempotency_key = keys[i] };
		rec_add(w, "I %llu %s %zu", (unsigned long long)tt_mono_ns(),
			keys[i], ev[i].payload_len);
	}
	rec_sync(w);
	s->t0 = tt_mono_ns();
	do {
		rc = handoff_publish(s->c, TORTURE_TOPIC, ev, n, ids, dups);
	} while ((st = settle(s, rc, "publish")) == IO_RETRY);
	for (size_t i = 0; i < n; i++) {
		if (st == IO_OK)
			rec_add(w, "C %llu %s %llu %d",
				(unsigned long long)tt_mono_ns(), keys[i],
				(unsigned long long)ids[i], dups[i] ? 1 : 0);
		else
			rec_add(w, "E %llu %s %d",
				(unsigned long long)tt_mono_ns(), keys[i], rc);
	}
	rec_sync(w);
	return st != IO_STOP;
}

static bool io_nack(struct io *s, const char *sub, const handoff_delivery *d,
		    bool perm, uint32_t delay)
{
	struct rec_writer *w = &s->r->rec;
	handoff_nack_item it = { .event_id = d->event_id,
				 .lease_token = d->lease_token,
				 .delay_ms = delay,
				 .permanent = perm,
				 .reason = perm ? "torture io: permanent" :
						  "torture io: later" };
	int res = 0, st, rc;
	rec_add(w, "N %llu %s %llu %u %llu %u %d",
		(unsigned long long)tt_mono_ns(), sub,
		(unsigned long long)d->event_id, d->attempt,
		(unsigned long long)d->lease_token, delay, perm ? 1 : 0);
	rec_sync(w);
	s->t0 = tt_mono_ns();
	do {
		rc = handoff_nack(s->c, sub, &it, 1, &res);
	} while ((st = settle(s, rc, "nack")) == IO_RETRY);
	if (st == IO_OK) {
		rec_add(w, "M %llu %s %llu %u %llu %d",
			(unsigned long long)tt_mono_ns(), sub,
			(unsigned long long)d->event_id, d->attempt,
			(unsigned long long)d->lease_token, res);
		rec_sync(w);
	}
	return st != IO_STOP;
}

/* Fetch up to 10 of sub; with dead_letter, nack the first permanently and
 * the second with a delay; ack the rest in one request. */
static bool io_consume(struct io *s, int sub_i, uint32_t wait_ms,
		       bool dead_letter)
{
	const char *sub = s->r->sub_names[sub_i];
	struct rec_writer *w = &s->r->rec;
	handoff_delivery *d = NULL;
	size_t n = 0, first_ack = 0;
	int st, rc;
	bool go = true;
	uint64_t t;
	s->t0 = tt_mono_ns();
	do {
		t = tt_mono_ns();
		rc = handoff_fetch(s->c, sub, 10, wait_ms, &d, &n);
	} while ((st = settle(s, rc, "fetch")) == IO_RETRY);
	if (st != IO_OK)
		return st != IO_STOP;
	for (size_t i = 0; i < n; i++)
		rec_add(w, "D %llu %s %llu %u %llu %s %s",
			(unsigned long long)t, sub,
			(unsigned long long)d[i].event_id, d[i].attempt,
			(unsigned long long)d[i].lease_token,
			d[i].key[0] ? d[i].key : "-",
			payload_verify(d[i].key, d[i].payload,
				       d[i].payload_len) ?
				"ok" :
				"bad");
	rec_sync(w);
	if (dead_letter && n >= 1) {
		go = io_nack(s, sub, &d[0], true, 0);
		first_ack = 1;
	}
	if (go && dead_letter && n >= 2) {
		go = io_nack(s, sub, &d[1], false, 50);
		first_ack = 2;
	}
	if (go && n > first_ack) {
		handoff_ack_item items[10];
		int res[10];
		size_t m = 0;
		for (size_t i = first_ack; i < n; i++) {
			items[m++] =
				(handoff_ack_item){ .event_id = d[i].event_id,
						    .lease_token =
							    d[i].lease_token };
			rec_add(w, "A %llu %s %llu %u %llu",
				(unsigned long long)tt_mono_ns(), sub,
				(unsigned long long)d[i].event_id, d[i].attempt,
				(unsigned long long)d[i].lease_token);
		}
		rec_sync(w);
		s->t0 = tt_mono_ns();
		do {
			rc = handoff_ack(s->c, sub, items, m, res);
		} while ((st = settle(s, rc, "ack")) == IO_RETRY);
		if (st == IO_OK) {
			t = tt_mono_ns();
			for (size_t j = 0; j < m; j++)
				rec_add(w, "K %llu %s %llu %u %llu %d",
					(unsigned long long)t, sub,
					(unsigned long long)items[j].event_id,
					d[first_ack + j].attempt,
					(unsigned long long)items[j]
						.lease_token,
					res[j]);
			rec_sync(w);
		}
		go = st != IO_STOP;
	}
	handoff_deliveries_free(d, n);
	return go;
}

static bool io_replay(struct io *s, int sub_i)
{
	const char *sub = s->r->sub_names[sub_i];
	struct rec_writer *w = &s->r->rec;
	handoff_dlq_action act = { .limit = 10 };
	handoff_dlq_result res = { 0 };
	int st, rc;
	rec_add(w, "Y %llu %s", (unsigned long long)tt_wall_ms(), sub);
	rec_sync(w);
	s->t0 = tt_mono_ns();
	do {
		handoff_dlq_result_free(&res);
		rc = handoff_dlq_replay(s->c, sub, &act, &res);
	} while ((st = settle(s, rc, "dlq_replay")) == IO_RETRY);
	if (st == IO_OK) {
		s->r->replays++;
		s->r->replayed += (unsigned)res.n_event_ids;
		rec_add(w, "Z %llu %s %zu", (unsigned long long)tt_wall_ms(),
			sub, res.n_event_ids);
		rec_sync(w);
	}
	handoff_dlq_result_free(&res);
	return st != IO_STOP;
}

static void io_workload(struct io *s)
{
	handoff_options o = { .deadline_ms = IO_CALL_MS,
			      .attempt_timeout_ms = 200,
			      .consumer_name = "torture-io" };
	int rc, st;
	s->t0 = tt_mono_ns();
	do {
		rc = handoff_connect(s->r->b.url, &o, &s->c);
	} while ((st = settle(s, rc, "connect")) == IO_RETRY);
	if (st != IO_OK)
		return;
	/* Stops at the first call after which the broker is gone. */
	(void)(io_publish(s, 5) && io_publish(s, 1) && io_publish(s, 1) &&
	       io_consume(s, 0, 0, true) && io_consume(s, 1, 0, false) &&
	       io_replay(s, 0) && io_consume(s, 0, 100, false) &&
	       io_publish(s, 3) && io_consume(s, 1, 100, false));
	handoff_close(s->c);
	s->c = NULL;
}

/* faultfs's counters: writes and syncs so far, little-endian uint64s. */
static bool read_counters(const char *state, uint64_t *writes, uint64_t *syncs)
{
	char path[TT_PATH + 32];
	size_t len = 0;
	tt_fmt(path, sizeof(path), "%s/counters", state);
	unsigned char *b = (unsigned char *)tt_read_file(path, &len);
	if (!b || len < 16) {
		free(b);
		return false;
	}
	*writes = *syncs = 0;
	for (int i = 7; i >= 0; i--) {
		*writes = (*writes << 8) | b[i];
		*syncs = (*syncs << 8) | b[8 + i];
	}
	free(b);
	return true;
}

static bool exited3(struct run *r)
{
	return WIFEXITED(r->b.status) && WEXITSTATUS(r->b.status) == 3 &&
	       broker_proc_log_contains(&r->b, "store_unusable", true);
}

/* One faulty broker run for (what, k). */
static enum io_outcome io_one(struct run *r, const char *what, unsigned k)
{
	char state[TT_PATH + 64], note[64], how[64] = "running",
					    path[TT_PATH + 80];
	struct io s = { .r = r };
	enum io_outcome out = OUT_FAILED;
	bool is_sync = strcmp(what, "sync") == 0, started = false;
	tt_fmt(state, sizeof(state), "%s/faultfs-%s-%u", r->b.dir, what, k);
	snprintf(s.tag, sizeof(s.tag), "%c%u", what[0], k);
	tt_rm_rf(state);
	tt_mkdirs(state);
	run_env_clear(r);
	run_env_faultfs(r, state);
	run_env_add(r, "FAULTFS_FAIL_%s=%u", is_sync ? "SYNC" : "WRITE", k);
	snprintf(note, sizeof(note), "io what=%s k=%u", what, k);
	r->faults++;

	int up = run_broker_up(r, true, note, NULL);
	if (up == BROKER_PROC_TIMEOUT) {
		broker_proc_kill9(&r->b);
		run_fail(r,
			 "%s: handoffd did not answer within 60 s (hang at "
			 "start)",
			 note);
		goto report;
	}
	if (up == BROKER_PROC_READY) {
		started = true;
		io_workload(&s);
		if (s.hang) {
			run_fail(r,
				 "%s: a call went unanswered for %u s while "
				 "handoffd was running (hang)",
				 note, IO_HANG_MS / 1000);
			broker_proc_kill9(&r->b);
			goto report;
		}
		if (!s.exited && broker_proc_alive(&r->b) &&
		    !broker_proc_term(&r->b, 30000)) {
			run_fail(r,
				 "%s: handoffd did not exit within 30 s of "
				 "SIGTERM (hang)",
				 note);
			goto report;
		}
		if (!s.exited)
			broker_proc_wait_exit(&r->b, 30000);
	}
	tt_status_text(r->b.status, how, sizeof(how));

	uint64_t writes = 0, syncs = 0;
	if (!read_counters(state, &writes, &syncs)) {
		run_fail(r,
			 "%s: no counters file in %s: was libfaultfs loaded?",
			 note, state);
		goto report;
	}
	tt_fmt(path, sizeof(path), "%s/failures.log", state);
	size_t injected = tt_count_lines(path, "");
	bool clean_exit =
		WIFEXITED(r->b.status) && WEXITSTATUS(r->b.status) == 0;
	if (exited3(r))
		out = OUT_EXITED3;
	else if (!started && WIFEXITED(r->b.status) &&
		 WEXITSTATUS(r->b.status) == 1)
		out = OUT_START_REFUSED;
	else if (!clean_exit) {
		run_fail(r,
			 "%s: handoffd ended with %s (want exit 0, or exit 3 "
			 "with event=store_unusable)",
			 note, how);
		goto report;
	} else if (s.refused)
		out = OUT_REFUSED;
	else if (injected)
		out = OUT_ABSORBED;
	else
		out = OUT_NOT_REACHED;

	uint64_t made = is_sync ? syncs : writes;
	if (injected && out == OUT_ABSORBED && is_sync) {
		run_fail(r,
			 "%s: the failed fsync was absorbed: every reply was "
			 "OK and the broker went on (a failed fsync must "
			 "never be retried)",
			 note);
		out = OUT_FAILED;
	} else if (!injected && out != OUT_NOT_REACHED) {
		run_fail(r, "%s: %s but no failure was injected", note,
			 OUT_NAMES[out]);
		out = OUT_FAILED;
	} else if (!injected && made >= k) {
		run_fail(r, "%s: %llu %ss were made but the %u-th did not fail",
			 note, (unsigned long long)made, what, k);
		out = OUT_FAILED;
	}
	printf("io: what=%s k=%u outcome=%s writes=%llu syncs=%llu injected=%zu "
	       "refused_calls=%u exit=\"%s\"%s%s%s\n",
	       what, k, OUT_NAMES[out], (unsigned long long)writes,
	       (unsigned long long)syncs, injected, s.refused, how,
	       s.refused ? " first_refusal=\"" : "", s.refusal,
	       s.refused ? "\"" : "");
	fflush(stdout);

	/* The store must open cleanly afterwards, without the fault. */
	if (run_broker_up(r, false, "clean restart", NULL) !=
	    BROKER_PROC_READY) {
		tt_status_text(r->b.status, how, sizeof(how));
		run_fail(r,
			 "%s: handoffd does not start cleanly after the "
			 "failure (%s)",
			 note, how);
		if (broker_proc_alive(&r->b))
			broker_proc_kill9(&r->b);
		return OUT_FAILED;
	}
	if (run_broker_term(r))
		return OUT_FAILED;
	return out;
report:
	printf("io: what=%s k=%u outcome=failed exit=\"%s\"\n", what, k, how);
	fflush(stdout);
	return OUT_FAILED;
}

static int io_what(struct run *r, const char *what, uint64_t until_ns,
		   unsigned *counts)
{
	unsigned kmax = r->o->k_max ? r->o->k_max : IO_MAX_K;
	unsigned step = r->o->k_step ? r->o->k_step : 1;
	for (unsigned k = 1; k <= kmax; k += step) {
		if (until_ns && tt_mono_ns() >= until_ns) {
			printf("io: what=%s stopped_at_k=%u reason=time\n",
			       what, k);
			break;
		}
		enum io_outcome out = io_one(r, what, k);
		counts[out]++;
		if (out == OUT_FAILED)
			return -1;
		/* auto: k has gone past every write (sync) of the workload */
		if (!r->o->k_max && out == OUT_NOT_REACHED)
			break;
	}
	return 0;
}

int io_faults(struct run *r)
{
	unsigned counts[OUT_N] = { 0 };
	const char *whats[2];
	size_t n = 0;
	const char *w = r->o->what ? r->o->what : "both";
	if (!r->o->faultfs_lib) {
		run_fail(r, "io mode needs --faultfs-lib (or $FAULTFS_LIB)");
		return -1;
	}
	if (strcmp(w, "write") == 0 || strcmp(w, "both") == 0)
		whats[n++] = "write";
	if (strcmp(w, "sync") == 0 || strcmp(w, "both") == 0)
		whats[n++] = "sync";
	if (n == 0) {
		run_fail(r, "--what must be write, sync or both");
		return -1;
	}
	/* the broker of the subscriptions gives way to the faulty ones */
	if (run_broker_term(r))
		return -1;
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		uint64_t until = 0;
		if (r->o->seconds)
			until = tt_mono_ns() +
				(uint64_t)r->o->seconds * 1000000000u / n;
		rc = io_what(r, whats[i], until, counts);
	}
	printf("io: k_runs=%u refused=%u exited3=%u start_refused=%u "
	       "not_reached=%u absorbed=%u failed=%u\n",
	       r->faults, counts[OUT_REFUSED], counts[OUT_EXITED3],
	       counts[OUT_START_REFUSED], counts[OUT_NOT_REACHED],
	       counts[OUT_ABSORBED], counts[OUT_FAILED]);
	fflush(stdout);
	if (!rc && counts[OUT_REFUSED] + counts[OUT_EXITED3] +
				   counts[OUT_START_REFUSED] +
				   counts[OUT_ABSORBED] ==
			   0) {
		run_fail(r,
			 "no failure was injected in %u runs: the io mode "
			 "proves nothing",
			 r->faults);
		rc = -1;
	}
	run_env_clear(r);
	return rc;
}
