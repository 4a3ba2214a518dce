/*
 * peer_redis.c — Redis Streams peer for peers.sh.
 *
 * Publish = XADD key * p PAYLOAD; "confirmed" = the XADD reply, which with
 * `appendfsync always` comes after the AOF write has been fsynced (Redis
 * syncs once per event-loop turn, so pipelined XADDs share a sync).
 * Consume = a consumer group read with XREADGROUP ... BLOCK 100, one XACK
 * per message (the XACKs of one read are pipelined), on its own thread and
 * connection. One stream per run (handoffbench:PID:WORKLOAD), deleted at
 * the end.
 *
 *   w256   XADDs pipelined with redisAppendCommand/redisGetReply, at most
 *          256 without a reply
 *   w1     one XADD at a time
 *   e2e    w256 producer + consumer; rate = XACKed messages per second
 *   lat1k  XADD at 1,000/s open loop (replies read as they come, so a slow
 *          reply does not delay the next send); confirm latency from the
 *          scheduled send time; delivery latency from the payload stamp
 */
#include "peer_common.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WINDOW 256
#define GROUP  "hbench"

struct run {
	struct peer_args *a;
	char key[128];
	uint64_t start, deadline; /* mono ns */
	struct peer_consumer cons;
	uint64_t consumer_end; /* mono ns of the last counted ack */
};

static redisContext *connect_redis(const struct peer_args *a, char *err,
				   size_t errlen)
{
	struct timeval tv = { 5, 0 };
	redisContext *c = redisConnectWithTimeout(a->host, a->port, tv);

	if (!c || c->err) {
		snprintf(err, errlen, "connect %s:%d: %s", a->host, a->port,
			 c ? c->errstr : "out of memory");
		if (c)
			redisFree(c);
		return NULL;
	}
	/* Blocking reads without a timeout from here on (BLOCK bounds them). */
	tv.tv_sec = 0;
	redisSetTimeout(c, tv);
	return c;
}

static int check_reply(redisContext *c, redisReply *r, const char *what,
		       char *err, size_t errlen)
{
	if (!r) {
		snprintf(err, errlen, "%s: %s", what,
			 c->err ? c->errstr : "no reply");
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "%s: %s", what, r->str);
		return -1;
	}
	return 0;
}

static int append_xadd(redisContext *c, const char *key, const char *payload,
		       size_t len)
{
	return redisAppendCommand(c, "XADD %s * p %b", key, payload, len);
}

/* Write the whole output buffer. */
static int flush_out(redisContext *c)
{
	int done = 0;
	do {
		if (redisBufferWrite(c, &done) == REDIS_ERR)
			return -1;
	} while (!done);
	return 0;
}

/* ---- consumer --------------------------------------------------------- */

static void *consumer_main(void *arg)
{
	struct run *run = arg;
	struct peer_args *a = run->a;
	redisContext *c = connect_redis(a, run->cons.err, sizeof run->cons.err);
	int lat = a->workload == PEER_LAT1K;
	uint64_t linger = 0;

	if (!c)
		return NULL;
	for (;;) {
		redisReply *r, *msgs;
		uint64_t now = peer_mono_ns();
		size_t n;

		if (!lat && now >= run->deadline)
			break;
		if (lat && atomic_load(&run->cons.stop)) {
			/* Let the last published messages arrive (2 s at most). */
			if (!linger)
				linger = now + 2000000000ull;
			if (run->cons.acked_total >= run->cons.expect ||
			    now >= linger)
				break;
		}
		r = redisCommand(c,
				 "XREADGROUP GROUP " GROUP " c1 COUNT %d "
				 "BLOCK 100 STREAMS %s >",
				 WINDOW, run->key);
		if (check_reply(c, r, "XREADGROUP", run->cons.err,
				sizeof run->cons.err) != 0) {
			if (r)
				freeReplyObject(r);
			break;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
			freeReplyObject(r); /* nil: BLOCK ran out */
			continue;
		}
		msgs = r->element[0]->element[1];
		n = msgs->elements;
		for (size_t i = 0; i < n; i++) {
			redisReply *m = msgs->element[i];
			redisReply *fields = m->element[1];
			if (lat && fields->type == REDIS_REPLY_ARRAY &&
			    fields->elements >= 2)
				peer_hist_add(&run->cons.deliver,
					      peer_stamp_age_ns(
						      fields->element[1]->str,
						      fields->element[1]->len));
			redisAppendCommand(c, "XACK %s " GROUP " %b", run->key,
					   m->element[0]->str,
					   m->element[0]->len);
		}
		freeReplyObject(r);
		for (size_t i = 0; i < n; i++) {
			redisReply *ar = NULL;
			if (redisGetReply(c, (void **)&ar) != REDIS_OK ||
			    check_reply(c, ar, "XACK", run->cons.err,
					sizeof run->cons.err) != 0) {
				if (ar)
					freeReplyObject(ar);
				redisFree(c);
				return NULL;
			}
			freeReplyObject(ar);
		}
		now = peer_mono_ns();
		run->cons.acked_total += n;
		if (now <= run->deadline || lat) {
			atomic_fetch_add(&run->cons.acked, n);
			run->consumer_end = now;
		}
	}
	redisFree(c);
	return NULL;
}

/* ---- producers -------------------------------------------------------- */

/* w256 (and e2e's producer): up to WINDOW XADDs without a reply. */
static int produce_window(redisContext *c, struct run *run,
			  struct peer_result *res, int measure)
{
	size_t plen = run->a->payload;
	char *buf = malloc(plen);
	uint64_t sent_at[WINDOW];
	uint64_t head = 0, tail = 0; /* sent, confirmed */
	int rc = -1;

	if (!buf) {
		snprintf(res->error, sizeof res->error, "out of memory");
		return -1;
	}
	for (;;) {
		uint64_t now = peer_mono_ns();
		int more = now < run->deadline;
		redisReply *r = NULL;

		while (more && head - tail < WINDOW) {
			peer_stamp(buf, plen);
			if (append_xadd(c, run->key, buf, plen) != REDIS_OK)
				goto fail;
			sent_at[head % WINDOW] = now;
			head++;
		}
		if (head == tail)
			break;
		if (flush_out(c) != 0)
			goto fail;
		if (redisGetReply(c, (void **)&r) != REDIS_OK ||
		    check_reply(c, r, "XADD", res->error, sizeof res->error) !=
			    0) {
			if (r)
				freeReplyObject(r);
			free(buf);
			return -1;
		}
		freeReplyObject(r);
		now = peer_mono_ns();
		if (measure)
			peer_hist_add(&res->confirm,
				      now - sent_at[tail % WINDOW]);
		tail++;
		/* Take every reply already read before topping up again. */
		for (;;) {
			r = NULL;
			if (redisGetReplyFromReader(c, (void **)&r) != REDIS_OK)
				goto fail;
			if (!r)
				break;
			if (check_reply(c, r, "XADD", res->error,
					sizeof res->error) != 0) {
				freeReplyObject(r);
				free(buf);
				return -1;
			}
			freeReplyObject(r);
			if (measure)
				peer_hist_add(&res->confirm,
					      now - sent_at[tail % WINDOW]);
			tail++;
		}
	}
	res->count = tail;
	res->rate =
		(double)tail / ((double)(peer_mono_ns() - run->start) / 1e9);
	rc = 0;
	free(buf);
	return rc;
fail:
	snprintf(res->error, sizeof res->error, "XADD: %s",
		 c->err ? c->errstr : "pipeline failed");
	free(buf);
	return -1;
}

static int produce_one(redisContext *c, struct run *run,
		       struct peer_result *res)
{
	size_t plen = run->a->payload;
	char *buf = malloc(plen);
	uint64_t n = 0, now;

	if (!buf) {
		snprintf(res->error, sizeof res->error, "out of memory");
		return -1;
	}
	while ((now = peer_mono_ns()) < run->deadline) {
		redisReply *r;
		peer_stamp(buf, plen);
		r = redisCommand(c, "XADD %s * p %b", run->key, buf, plen);
		if (check_reply(c, r, "XADD", res->error, sizeof res->error) !=
		    0) {
			if (r)
				freeReplyObject(r);
			free(buf);
			return -1;
		}
		freeReplyObject(r);
		peer_hist_add(&res->confirm, peer_mono_ns() - now);
		n++;
	}
	res->count = n;
	res->rate = (double)n / ((double)(peer_mono_ns() - run->start) / 1e9);
	free(buf);
	return 0;
}

/* Read the replies that have arrived, without blocking. */
static int take_replies(redisContext *c, uint64_t *due_q, uint64_t *tail,
			struct peer_result *res)
{
	for (;;) {
		redisReply *r = NULL;
		if (redisGetReplyFromReader(c, (void **)&r) != REDIS_OK)
			return -1;
		if (!r)
			return 0;
		if (check_reply(c, r, "XADD", res->error, sizeof res->error) !=
		    0) {
			freeReplyObject(r);
			return -1;
		}
		freeReplyObject(r);
		peer_hist_add(&res->confirm,
			      peer_mono_ns() - due_q[*tail % 65536]);
		(*tail)++;
	}
}

static int produce_open_loop(redisContext *c, struct run *run,
			     struct peer_result *res)
{
	size_t plen = run->a->payload;
	char *buf = malloc(plen);
	uint64_t *due_q = calloc(65536, sizeof *due_q);
	uint64_t head = 0, tail = 0;
	int rc = -1;

	if (!buf || !due_q) {
		snprintf(res->error, sizeof res->error, "out of memory");
		goto out;
	}
	for (;;) {
		uint64_t due = peer_due_ns(run->start, head, 1000.0);
		uint64_t now = peer_mono_ns();
		int sending = due < run->deadline;
		uint64_t until = sending ? due : now + 2000000000ull;

		if (!sending && tail == head)
			break;
		/* Wait for the due time, taking replies as they come. */
		while ((now = peer_mono_ns()) < until && tail < head) {
			struct pollfd p = { .fd = c->fd, .events = POLLIN };
			int ms = (int)((until - now + 999999) / 1000000);
			int pr = poll(&p, 1, ms);
			if (pr < 0)
				continue;
			if (pr == 0)
				break;
			if (redisBufferRead(c) != REDIS_OK ||
			    take_replies(c, due_q, &tail, res) != 0)
				goto fail;
		}
		if (!sending) {
			if (tail < head) {
				snprintf(res->error, sizeof res->error,
					 "%llu XADD replies missing",
					 (unsigned long long)(head - tail));
				goto out;
			}
			break;
		}
		peer_sleep_until_ns(due);
		if (head - tail >= 65536) {
			snprintf(res->error, sizeof res->error,
				 "65536 XADDs without reply");
			goto out;
		}
		peer_stamp(buf, plen);
		if (append_xadd(c, run->key, buf, plen) != REDIS_OK ||
		    flush_out(c) != 0)
			goto fail;
		due_q[head % 65536] = due;
		head++;
	}
	res->count = head;
	res->rate = (double)head / run->a->duration_s;
	run->cons.expect = head;
	rc = 0;
	goto out;
fail:
	snprintf(res->error, sizeof res->error, "XADD: %s",
		 c->err ? c->errstr : "pipeline failed");
out:
	free(buf);
	free(due_q);
	return rc;
}

int main(int argc, char **argv)
{
	struct peer_args a = { .name = "redis" };
	static struct peer_result res;
	static struct run run;
	redisContext *c;
	redisReply *r;
	pthread_t consumer;
	int consuming, rc;

	if (peer_parse_args(&a, argc, argv) != 0)
		return 2;
	if (a.port == 0)
		a.port = 6379;
	run.a = &a;
	snprintf(run.key, sizeof run.key, "handoffbench:%ld:%s", (long)getpid(),
		 peer_workload_name(a.workload));
	consuming = a.workload == PEER_E2E || a.workload == PEER_LAT1K;

	c = connect_redis(&a, res.error, sizeof res.error);
	if (!c)
		return peer_report(&a, &res);
	r = redisCommand(c, "DEL %s", run.key);
	if (r)
		freeReplyObject(r);
	if (consuming) {
		r = redisCommand(c, "XGROUP CREATE %s " GROUP " $ MKSTREAM",
				 run.key);
		if (check_reply(c, r, "XGROUP CREATE", res.error,
				sizeof res.error) != 0) {
			if (r)
				freeReplyObject(r);
			redisFree(c);
			return peer_report(&a, &res);
		}
		freeReplyObject(r);
	}

	run.start = peer_mono_ns();
	run.deadline = run.start + (uint64_t)(a.duration_s * 1e9);
	if (consuming &&
	    pthread_create(&consumer, NULL, consumer_main, &run) != 0) {
		snprintf(res.error, sizeof res.error, "pthread_create failed");
		redisFree(c);
		return peer_report(&a, &res);
	}

	switch (a.workload) {
	case PEER_W256:
		rc = produce_window(c, &run, &res, 1);
		break;
	case PEER_W1:
		rc = produce_one(c, &run, &res);
		break;
	case PEER_E2E:
		rc = produce_window(c, &run, &res, 0);
		break;
	case PEER_LAT1K:
	default:
		rc = produce_open_loop(c, &run, &res);
		break;
	}
	atomic_store(&run.cons.stop, 1);
	if (consuming) {
		pthread_join(consumer, NULL);
		peer_consumer_result(&a, &run.cons, rc, "acked", &res);
	}
	/* A fresh connection: the producer's may be in an error state. */
	redisFree(c);
	c = connect_redis(&a, run.cons.err, sizeof run.cons.err);
	if (c) {
		r = redisCommand(c, "DEL %s", run.key);
		if (r)
			freeReplyObject(r);
		redisFree(c);
	}
	return peer_report(&a, &res);
}
