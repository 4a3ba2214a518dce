/*
 * check.c — see check.h.
 *
 * Three steps: load every record file into per-key and per-(subscription,
 * event) tables; ask the broker for subscriptions, dead letters and the
 * trace of every id; then count. All comparisons of time are between
 * CLOCK_MONOTONIC stamps taken by the consumers themselves, so no clock of
 * the broker is trusted for them.
 */
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handoff.h"
#include "record.h"
#include "tt.h"

#define KEY_LEN	      128
#define SCAN_TAIL     256 /* ids traced past the last one found */
#define MAX_THREADS   16
#define MAX_KEY_IDS   4
#define DLQ_PAGE      1000
#define CALL_DEADLINE 30000u

enum kind {
	V_LOST,
	V_UNEXPECTED,
	V_DUP,
	V_DONE,
	V_REDELIVERED,
	V_DEAD,
	V_WEBHOOK_ID,
	V_N
};
static const char *const kind_names[V_N] = {
	"lost",
	"unexpected",
	"duplicate_stored",
	"done_without_ack",
	"redelivered_after_ack",
	"dead_without_cause",
	"webhook_id_unstable",
};

/* ---- what the records say ------------------------------------------------ */

struct dev {
	uint64_t t; /* when the fetch that returned it was first sent */
	uint32_t attempt;
};

/* One (subscription, event) as the consumers saw it. */
struct dinfo {
	struct dev *dv;
	size_t n_dv, cap_dv;
	uint32_t *acks; /* attempts with an ack intent */
	size_t n_acks, cap_acks;
	uint32_t *perms; /* attempts with a permanent nack intent */
	size_t n_perms, cap_perms;
	uint64_t first_ack_t; /* earliest ack intent, 0 = none */
	uint64_t ack_ok_t;    /* earliest confirmed ack, 0 = none */
	char *key;	      /* key carried by the first delivery */
	bool key_varies, bad;
	const char *bad_why; /* push: the receiver's first bad verdict */
	char *wid;	     /* push: webhook-id of the first delivery */
	bool wid_varies;
};

/* What the broker said about one event (its trace). */
struct tatt {
	uint32_t attempt;
	uint8_t outcome;
};

struct tsub {
	int sub; /* index in ctx.subs; -1 = not one of ours */
	uint8_t state, reason;
	uint32_t replays;
	struct tatt *h;
	uint32_t n_h;
};

struct tev {
	bool found, corrupt;
	char *idem;
	struct tsub *s;
	uint32_t n_s;
};

struct sub {
	char name[64], topic[64];
	uint32_t max_attempts;
	bool push; /* a push subscription: deliveries are P records */
	bool on_broker;
	uint64_t ready, delayed, leased;
	struct dinfo **d; /* by event id */
	size_t cap_d;
	uint8_t *dead; /* in the dead-letter queue, by event id */
	size_t cap_dead;
	uint64_t n_dead;
};

struct keyinfo {
	bool intent;
	uint64_t conf_id;
	/* distinct ids: confirmed, re-published, traced */
	uint64_t ids[MAX_KEY_IDS];
	uint8_t src[MAX_KEY_IDS]; /* 1 = a producer was told, 2 = traced */
	size_t n_ids;
	bool stored;
};

struct ctx {
	const struct check_opts *o;
	FILE *out;
	struct check_result *r;
	struct sub subs[CHECK_MAX_SUBS];
	size_t n_subs;
	struct tt_map keys;
	struct tev *ev;
	uint64_t cap_ev;
	uint64_t max_known;
	unsigned shown[V_N];
	unsigned examples;
	int error;
	char err[512];
};

static void set_error(struct ctx *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_error(struct ctx *x, const char *fmt, ...)
{
	va_list ap;
	if (x->error)
		return;
	x->error = 1;
	va_start(ap, fmt);
	vsnprintf(x->err, sizeof(x->err), fmt, ap);
	va_end(ap);
}

static void example(struct ctx *x, enum kind k, const char *sub,
		    const char *fmt, unsigned long long id, const char *what)
{
	if (x->shown[k]++ >= x->examples)
		return;
	fprintf(x->out, "violation=%s sub=%s id=%llu ", kind_names[k],
		sub ? sub : "-", id);
	fprintf(x->out, fmt, what);
	fputc('\n', x->out);
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return true;
	size_t cap2 = *cap ? *cap : 16;
	while (cap2 < need)
		cap2 *= 2;
	void *n = realloc(*p, cap2 * elem);
	if (!n)
		return false;
	memset((char *)n + *cap * elem, 0, (cap2 - *cap) * elem);
	*p = n;
	*cap = cap2;
	return true;
}

static int sub_index(struct ctx *x, const char *name)
{
	for (size_t i = 0; i < x->n_subs; i++)
		if (strcmp(x->subs[i].name, name) == 0)
			return (int)i;
	return -1;
}

static struct keyinfo *key_get(struct ctx *x, const char *key)
{
	struct keyinfo *k = tt_map_get(&x->keys, key);
	if (k)
		return k;
	k = calloc(1, sizeof(*k));
	if (!k || tt_map_put(&x->keys, key, k)) {
		free(k);
		set_error(x, "out of memory");
		return NULL;
	}
	return k;
}

static void key_add_id(struct keyinfo *k, uint64_t id, uint8_t src)
{
	for (size_t i = 0; i < k->n_ids; i++)
		if (k->ids[i] == id) {
			k->src[i] |= src;
			return;
		}
	if (k->n_ids < MAX_KEY_IDS) {
		k->ids[k->n_ids] = id;
		k->src[k->n_ids++] = src;
	}
}

static void known_id(struct ctx *x, uint64_t id)
{
	if (id > x->max_known)
		x->max_known = id;
}

static struct dinfo *dinfo_get(struct ctx *x, int s, uint64_t id)
{
	struct sub *sb = &x->subs[s];
	if (!grow((void **)&sb->d, &sb->cap_d, id + 1, sizeof(*sb->d))) {
		set_error(x, "out of memory");
		return NULL;
	}
	if (!sb->d[id] && !(sb->d[id] = calloc(1, sizeof(struct dinfo))))
		set_error(x, "out of memory");
	return sb->d[id];
}

static struct dinfo *dinfo_find(const struct ctx *x, int s, uint64_t id)
{
	const struct sub *sb = &x->subs[s];
	return id < sb->cap_d ? sb->d[id] : NULL;
}

static bool push_u32(uint32_t **v, size_t *n, size_t *cap, uint32_t val)
{
	if (!grow((void **)v, cap, *n + 1, sizeof(**v)))
		return false;
	(*v)[(*n)++] = val;
	return true;
}

/* ---- reading the records ------------------------------------------------- */

static int consumer_line(struct ctx *x, char type, char *line)
{
	unsigned long long t, id, token;
	unsigned attempt, delay;
	int status, perm;
	char sub[64], key[KEY_LEN], ok[8];
	int n, s;
	struct dinfo *d;

	switch (type) {
	case 'D':
		n = sscanf(line, "D %llu %63s %llu %u %llu %127s %7s", &t, sub,
			   &id, &attempt, &token, key, ok);
		if (n != 7)
			return 1;
		break;
	case 'A':
		n = sscanf(line, "A %llu %63s %llu %u %llu", &t, sub, &id,
			   &attempt, &token);
		if (n != 5)
			return 1;
		break;
	case 'K':
		n = sscanf(line, "K %llu %63s %llu %u %llu %d", &t, sub, &id,
			   &attempt, &token, &status);
		if (n != 6)
			return 1;
		break;
	case 'N':
		n = sscanf(line, "N %llu %63s %llu %u %llu %u %d", &t, sub, &id,
			   &attempt, &token, &delay, &perm);
		if (n != 7)
			return 1;
		break;
	default: /* 'M': the nack's item status tells the checker nothing */
		return 0;
	}
	s = sub_index(x, sub);
	if (s < 0) {
		set_error(x,
			  "records name subscription %s that the driver "
			  "never created",
			  sub);
		return 0;
	}
	known_id(x, id);
	if (!(d = dinfo_get(x, s, id)))
		return 0;
	switch (type) {
	case 'D':
		if (!grow((void **)&d->dv, &d->cap_dv, d->n_dv + 1,
			  sizeof(*d->dv))) {
			set_error(x, "out of memory");
			return 0;
		}
		d->dv[d->n_dv++] = (struct dev){ t, attempt };
		if (strcmp(ok, "ok") != 0)
			d->bad = true;
		if (!d->key)
			d->key = strdup(key);
		else if (strcmp(d->key, key) != 0)
			d->key_varies = true;
		x->r->subs[s].delivered++;
		break;
	case 'A':
		push_u32(&d->acks, &d->n_acks, &d->cap_acks, attempt);
		if (!d->first_ack_t || t < d->first_ack_t)
			d->first_ack_t = t;
		break;
	case 'K':
		if (status == 0 && (!d->ack_ok_t || t < d->ack_ok_t))
			d->ack_ok_t = t;
		break;
	case 'N':
		if (perm)
			push_u32(&d->perms, &d->n_perms, &d->cap_perms,
				 attempt);
		break;
	}
	return 0;
}

/* P: one request the push receiver read, and what it answered. */
static int push_line(struct ctx *x, char *line)
{
	unsigned long long t, id, attempt;
	char sub[64], wid[128], key[KEY_LEN], sum[24], verdict[16];
	int status, s;
	struct dinfo *d;
	if (sscanf(line, "P %llu %63s %llu %llu %127s %127s %23s %15s %d", &t,
		   sub, &id, &attempt, wid, key, sum, verdict, &status) != 9)
		return 1;
	s = sub_index(x, sub);
	if (s < 0 || !x->subs[s].push) {
		set_error(x,
			  "the receiver recorded a request for %s, which is "
			  "no push subscription of the driver's",
			  sub);
		return 0;
	}
	if (id == 0 || attempt == 0 || attempt > UINT32_MAX) {
		/* a request without the event's headers */
		x->r->subs[s].unexpected++;
		example(x, V_UNEXPECTED, sub, "why=%s", id,
			"push_without_event_headers");
		return 0;
	}
	known_id(x, id);
	if (!(d = dinfo_get(x, s, id)))
		return 0;
	if (!grow((void **)&d->dv, &d->cap_dv, d->n_dv + 1, sizeof(*d->dv))) {
		set_error(x, "out of memory");
		return 0;
	}
	d->dv[d->n_dv++] = (struct dev){ t, (uint32_t)attempt };
	x->r->subs[s].delivered++;
	if (strcmp(verdict, "ok") != 0 && !d->bad) {
		d->bad = true;
		d->bad_why = strcmp(verdict, "bad") == 0 ?
				     "payload_mismatch" :
			     strcmp(verdict, "badts") == 0 ?
				     "push_timestamp_out_of_tolerance" :
				     "push_bad_signature";
	}
	if (!d->key)
		d->key = strdup(key);
	else if (strcmp(d->key, key) != 0)
		d->key_varies = true;
	if (!d->wid)
		d->wid = strdup(wid);
	else if (strcmp(d->wid, wid) != 0)
		d->wid_varies = true;
	if (status >= 200 && status <= 299) {
		/* answered 2xx: the receiver's ack */
		push_u32(&d->acks, &d->n_acks, &d->cap_acks, (uint32_t)attempt);
		if (!d->first_ack_t || t < d->first_ack_t)
			d->first_ack_t = t;
	}
	return 0;
}

static int producer_line(struct ctx *x, char type, char *line)
{
	unsigned long long t, id, first, got;
	char key[KEY_LEN];
	size_t len;
	int dup, err;
	struct keyinfo *k;

	switch (type) {
	case 'I':
		if (sscanf(line, "I %llu %127s %zu", &t, key, &len) != 3)
			return 1;
		if ((k = key_get(x, key)) && !k->intent) {
			k->intent = true;
			x->r->intents++;
		}
		return 0;
	case 'C':
		if (sscanf(line, "C %llu %127s %llu %d", &t, key, &id, &dup) !=
		    4)
			return 1;
		if (!(k = key_get(x, key)))
			return 0;
		if (!k->conf_id)
			k->conf_id = id;
		key_add_id(k, id, 1);
		known_id(x, id);
		return 0;
	case 'E':
		if (sscanf(line, "E %llu %127s %d", &t, key, &err) != 3)
			return 1;
		x->r->publish_errors++;
		return 0;
	case 'R':
		if (sscanf(line, "R %llu %127s %llu %llu %d", &t, key, &first,
			   &got, &dup) != 5)
			return 1;
		if (!(k = key_get(x, key)))
			return 0;
		x->r->republished++;
		key_add_id(k, first, 1);
		key_add_id(k, got, 1);
		known_id(x, got);
		return 0;
	}
	return 1;
}

static int driver_line(struct ctx *x, char type, char *line)
{
	char name[64], topic[64], kind[8] = "";
	unsigned max_attempts, ack, bmin, bmax;
	if (type != 'S')
		return 0; /* Y/Z: replays show in the traces themselves */
	int n = sscanf(line, "S %63s %63s %u %u %u %u %7s", name, topic,
		       &max_attempts, &ack, &bmin, &bmax, kind);
	if (n < 6 || (n == 7 && strcmp(kind, "push") != 0))
		return 1;
	if (sub_index(x, name) >= 0)
		return 0;
	if (x->n_subs == CHECK_MAX_SUBS) {
		set_error(x, "more than %d subscriptions", CHECK_MAX_SUBS);
		return 0;
	}
	struct sub *s = &x->subs[x->n_subs++];
	snprintf(s->name, sizeof(s->name), "%s", name);
	snprintf(s->topic, sizeof(s->topic), "%s", topic);
	s->max_attempts = max_attempts;
	s->push = n == 7;
	return 0;
}

static int on_line(void *arg, const char *file, char *line)
{
	struct ctx *x = arg;
	int bad;
	(void)file;
	switch (line[0]) {
	case 'S':
	case 'Y':
	case 'Z':
		bad = driver_line(x, line[0], line);
		break;
	case 'I':
	case 'C':
	case 'E':
	case 'R':
		bad = producer_line(x, line[0], line);
		break;
	case 'D':
	case 'A':
	case 'K':
	case 'N':
	case 'M':
		bad = consumer_line(x, line[0], line);
		break;
	case 'P':
		bad = push_line(x, line);
		break;
	default:
		bad = 1;
	}
	if (bad) {
		x->r->bad_lines++;
		if (x->r->bad_lines <= 5)
			fprintf(x->out, "check: bad record line in %s: %s\n",
				file, line);
	}
	return x->error;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load_records(struct ctx *x)
{
	char dir[TT_PATH], path[TT_PATH + 300];
	char **names = NULL;
	size_t n = 0, cap = 0;
	snprintf(dir, sizeof(dir), "%s/rec", x->o->dir);
	DIR *d = opendir(dir);
	if (!d) {
		set_error(x, "cannot open %s: %s", dir, strerror(errno));
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (l < 5 || strcmp(e->d_name + l - 4, ".rec") != 0)
			continue;
		if (!grow((void **)&names, &cap, n + 1, sizeof(*names)) ||
		    !(names[n] = strdup(e->d_name))) {
			set_error(x, "out of memory");
			break;
		}
		n++;
	}
	closedir(d);
	/* The driver's file first: it holds the subscriptions. */
	qsort(names, n, sizeof(*names), cmp_str);
	for (int pass = 0; pass < 2 && !x->error; pass++) {
		for (size_t i = 0; i < n && !x->error; i++) {
			bool drv = strcmp(names[i], "driver.rec") == 0;
			if (drv != (pass == 0))
				continue;
			size_t partial = 0;
			snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
			int rc = rec_read(path, on_line, x, &partial);
			if (rc && !x->error)
				set_error(x, "reading %s: %s", path,
					  strerror(rc));
			if (partial)
				x->r->partial_lines++;
			x->r->files++;
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (!x->error && x->n_subs == 0)
		set_error(x, "no subscription records (driver.rec) in %s", dir);
}

/* ---- asking the broker --------------------------------------------------- */

static handoff_client *connect_broker(struct ctx *x)
{
	handoff_options o = { .deadline_ms = CALL_DEADLINE,
			      .attempt_timeout_ms = 2000,
			      .consumer_name = "torture-check" };
	handoff_client *c = NULL;
	int rc = handoff_connect(x->o->url, &o, &c);
	if (rc) {
		x->r->broker_error = true;
		set_error(x, "cannot reach the broker: %s",
			  handoff_strerror(rc));
	}
	return c;
}

static void load_subscriptions(struct ctx *x, handoff_client *c)
{
	handoff_subscription_info *si = NULL;
	size_t n = 0;
	int rc = handoff_list_subscriptions(c, &si, &n);
	if (rc) {
		x->r->broker_error = true;
		set_error(x, "list_subscriptions: %s", handoff_strerror(rc));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		int s = sub_index(x, si[i].name);
		if (s < 0)
			continue;
		struct sub *sb = &x->subs[s];
		sb->on_broker = true;
		sb->ready = si[i].ready;
		sb->delayed = si[i].delayed;
		sb->leased = si[i].leased;
		if (si[i].policy.max_attempts != sb->max_attempts)
			fprintf(x->out,
				"check: sub=%s max_attempts=%u on the "
				"broker, %u in the records\n",
				sb->name, si[i].policy.max_attempts,
				sb->max_attempts);
	}
	handoff_subscriptions_free(si, n);
	for (size_t s = 0; s < x->n_subs; s++)
		if (!x->subs[s].on_broker)
			fprintf(x->out,
				"check: sub=%s is missing on the broker\n",
				x->subs[s].name);
}

static void load_dead_letters(struct ctx *x, handoff_client *c)
{
	for (size_t s = 0; s < x->n_subs && !x->error; s++) {
		struct sub *sb = &x->subs[s];
		handoff_dlq_filter f = { 0 };
		if (!sb->on_broker)
			continue;
		for (;;) {
			handoff_dead_letter *dl = NULL;
			size_t n = 0;
			bool more = false;
			int rc = handoff_dlq_list(c, sb->name, &f, DLQ_PAGE,
						  &dl, &n, &more);
			if (rc) {
				x->r->broker_error = true;
				set_error(x, "dlq_list %s: %s", sb->name,
					  handoff_strerror(rc));
				return;
			}
			for (size_t i = 0; i < n; i++) {
				uint64_t id = dl[i].event_id;
				if (!grow((void **)&sb->dead, &sb->cap_dead,
					  id + 1, 1)) {
					set_error(x, "out of memory");
					break;
				}
				if (!sb->dead[id])
					sb->n_dead++;
				sb->dead[id] = 1;
				known_id(x, id);
				f.after_event_id = id;
			}
			handoff_dead_letters_free(dl, n);
			if (!more || n == 0)
				break;
		}
	}
}

struct tracer {
	struct ctx *x;
	handoff_client *c;
	_Atomic uint64_t *next;
	uint64_t hi;
	int rc;
	uint64_t failed_id;
};

static int keep_trace(struct ctx *x, struct tev *e, const handoff_trace *t)
{
	e->found = true;
	e->corrupt = t->corrupt;
	e->idem = strdup(t->idempotency_key ? t->idempotency_key : "");
	e->s = calloc(t->n_subscriptions ? t->n_subscriptions : 1,
		      sizeof(*e->s));
	if (!e->idem || !e->s)
		return HANDOFF_ENOMEM;
	for (size_t i = 0; i < t->n_subscriptions; i++) {
		const handoff_subscription_trace *st = &t->subscriptions[i];
		struct tsub *ts = &e->s[e->n_s++];
		ts->sub =
			sub_index(x, st->subscription ? st->subscription : "");
		ts->state = (uint8_t)st->state;
		ts->reason = (uint8_t)st->dead_reason;
		ts->replays = st->replays;
		ts->h = calloc(st->n_history ? st->n_history : 1,
			       sizeof(*ts->h));
		if (!ts->h)
			return HANDOFF_ENOMEM;
		for (size_t j = 0; j < st->n_history; j++) {
			ts->h[j].attempt = st->history[j].attempt;
			ts->h[j].outcome = (uint8_t)st->history[j].outcome;
		}
		ts->n_h = (uint32_t)st->n_history;
	}
	return HANDOFF_OK;
}

static void *tracer_main(void *arg)
{
	struct tracer *tr = arg;
	for (;;) {
		uint64_t id = atomic_fetch_add(tr->next, 1);
		if (id > tr->hi)
			break;
		handoff_trace *t = NULL;
		int rc = handoff_trace_event(tr->c, id, &t);
		if (rc == HANDOFF_ENOTFOUND)
			continue;
		if (rc == HANDOFF_OK)
			rc = keep_trace(tr->x, &tr->x->ev[id], t);
		handoff_trace_free(t);
		if (rc) {
			tr->rc = rc;
			tr->failed_id = id;
			/* stop the others too */
			atomic_store(tr->next, tr->hi + 1);
			break;
		}
	}
	return NULL;
}

/* Trace ids lo..hi with the handles in parallel. */
static void trace_range(struct ctx *x, handoff_client **cs, unsigned nt,
			uint64_t lo, uint64_t hi)
{
	pthread_t th[MAX_THREADS];
	struct tracer tr[MAX_THREADS];
	_Atomic uint64_t next = lo;
	size_t cap = (size_t)x->cap_ev;
	if (!grow((void **)&x->ev, &cap, (size_t)hi + 1, sizeof(*x->ev))) {
		set_error(x, "out of memory");
		return;
	}
	x->cap_ev = cap;
	unsigned started = 0;
	for (unsigned i = 0; i < nt; i++) {
		tr[i] = (struct tracer){
			.x = x, .c = cs[i], .next = &next, .hi = hi
		};
		if (pthread_create(&th[i], NULL, tracer_main, &tr[i]) == 0)
			started++;
		else
			break;
	}
	if (started == 0)
		tracer_main(&tr[0]);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	for (unsigned i = 0; i < (started ? started : 1); i++) {
		if (tr[i].rc) {
			x->r->broker_error = true;
			set_error(x, "trace %llu: %s",
				  (unsigned long long)tr[i].failed_id,
				  handoff_strerror(tr[i].rc));
		}
	}
}

static void load_traces(struct ctx *x, handoff_client *main_c)
{
	handoff_client *cs[MAX_THREADS];
	unsigned nt = x->o->threads ? x->o->threads : 4;
	if (nt > MAX_THREADS)
		nt = MAX_THREADS;
	cs[0] = main_c;
	for (unsigned i = 1; i < nt; i++) {
		if (!(cs[i] = connect_broker(x))) {
			nt = i;
			break;
		}
	}
	/* Ids are never reused and grow by one: past the highest id anyone
	 * saw, keep going until SCAN_TAIL ids in a row are unknown (events
	 * stored from publishes nobody saw confirmed live there). */
	uint64_t lo = 1, hi = x->max_known + SCAN_TAIL;
	while (!x->error) {
		trace_range(x, cs, nt, lo, hi);
		bool found_tail = false;
		for (uint64_t id = hi - SCAN_TAIL + 1; id <= hi; id++)
			found_tail |= x->ev[id].found;
		if (!found_tail)
			break;
		lo = hi + 1;
		hi += SCAN_TAIL;
	}
	x->r->max_id = 0;
	for (uint64_t id = 1; id <= hi && id < x->cap_ev; id++) {
		if (!x->ev[id].found)
			continue;
		x->r->events_traced++;
		x->r->max_id = id;
	}
	for (unsigned i = 1; i < nt; i++)
		handoff_close(cs[i]);
}

/* ---- counting ------------------------------------------------------------ */

static const struct tsub *trace_sub(const struct ctx *x, uint64_t id, int s)
{
	if (id >= x->cap_ev || !x->ev[id].found)
		return NULL;
	const struct tev *e = &x->ev[id];
	for (uint32_t i = 0; i < e->n_s; i++)
		if (e->s[i].sub == s)
			return &e->s[i];
	return NULL;
}

static bool has_u32(const uint32_t *v, size_t n, uint32_t val)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == val)
			return true;
	return false;
}

static void count_lost(struct ctx *x, int s, struct check_counts *c)
{
	struct sub *sb = &x->subs[s];
	for (size_t i = 0; i < x->keys.cap; i++) {
		const char *key = x->keys.slots[i].key;
		const struct keyinfo *k = x->keys.slots[i].val;
		if (!key || !k->conf_id)
			continue;
		uint64_t id = k->conf_id;
		c->confirmed++;
		const struct tev *e = id < x->cap_ev ? &x->ev[id] : NULL;
		if (!e || !e->found) {
			c->lost++;
			example(x, V_LOST, sb->name, "key=%s why=no_record", id,
				key);
			continue;
		}
		if (strcmp(e->idem, key) != 0) {
			c->lost++;
			example(x, V_LOST, sb->name,
				"key=%s why=id_holds_another_key", id, key);
			continue;
		}
		const struct tsub *ts = trace_sub(x, id, s);
		if (!ts) {
			c->lost++;
			example(x, V_LOST, sb->name, "key=%s why=no_delivery",
				id, key);
			continue;
		}
		bool in_dlq = id < sb->cap_dead && sb->dead[id];
		if (ts->state == HANDOFF_STATE_ACKED ||
		    (ts->state == HANDOFF_STATE_DEAD && in_dlq))
			continue;
		c->lost++;
		example(x, V_LOST, sb->name, "key=%s why=state_%s", id,
			ts->state == HANDOFF_STATE_DEAD ?
				"dead_not_listed" :
				handoff_state_name(ts->state));
	}
}

/* Is event id, seen by subscription s, one we never published? */
static void count_unexpected(struct ctx *x, int s, uint64_t id,
			     struct check_counts *c)
{
	const struct sub *sb = &x->subs[s];
	const struct dinfo *d = dinfo_find(x, s, id);
	const struct tev *e = id < x->cap_ev ? &x->ev[id] : NULL;
	const char *why = NULL;
	if (d && d->bad)
		why = d->bad_why ? d->bad_why : "payload_mismatch";
	else if (d && d->key_varies)
		why = "id_delivered_with_two_keys";
	else if (!e || !e->found)
		why = "no_broker_record";
	else {
		const struct keyinfo *k = tt_map_get(&x->keys, e->idem);
		if (!k || !k->intent)
			why = "never_published";
		else if (d && d->key && strcmp(d->key, e->idem) != 0)
			why = "delivered_key_differs_from_stored";
	}
	if (!why)
		return;
	c->unexpected++;
	example(x, V_UNEXPECTED, sb->name, "why=%s", id, why);
}

/*
 * Replay the attempt history against the policy. Every time the delivery
 * went dead must be explained: a used-up budget (restarts refund their
 * attempt) or a permanent nack a consumer recorded for that attempt; a
 * lease after a dead point is a replay, which starts a fresh budget, and
 * the number of those must match the broker's replay count (a replay out
 * of a state the history cannot call dead was a dead letter without
 * cause). The final state must agree: dead with the reason found, or not
 * dead. Returns "" when all is explained, the first unexplained thing, or
 * NULL when the history was truncated (the broker keeps the last 100).
 */
static const char *dead_cause(const struct ctx *x, int s, const struct tsub *ts,
			      const struct dinfo *d)
{
	uint32_t max = x->subs[s].max_attempts, used = 0, resets = 0;
	int dead = HANDOFF_DEAD_NONE;
	if (ts->n_h >= 100 && ts->h[0].attempt > 1)
		return NULL;
	for (uint32_t i = 0; i < ts->n_h; i++) {
		const struct tatt *h = &ts->h[i];
		if (dead) {
			/* leased again after being dead: a replay */
			resets++;
			used = 0;
			dead = HANDOFF_DEAD_NONE;
		}
		switch (h->outcome) {
		case HANDOFF_OUTCOME_BROKER_RESTART:
		case HANDOFF_OUTCOME_RELEASED:
			break; /* refunded; not counted */
		case HANDOFF_OUTCOME_NACKED:
		case HANDOFF_OUTCOME_EXPIRED:
			if (++used >= max)
				dead = HANDOFF_DEAD_MAX_ATTEMPTS;
			break;
		case HANDOFF_OUTCOME_PERMANENT:
			used++;
			if (!d || !has_u32(d->perms, d->n_perms, h->attempt))
				return "permanent_without_consumer_intent";
			dead = HANDOFF_DEAD_PERMANENT;
			break;
		case HANDOFF_OUTCOME_CORRUPT:
			return "corrupt";
		default:
			used++;
			break;
		}
	}
	bool waiting = ts->state == HANDOFF_STATE_READY ||
		       ts->state == HANDOFF_STATE_DELAYED;
	if (dead && waiting) {
		resets++; /* replayed, not leased yet */
		dead = HANDOFF_DEAD_NONE;
	}
	if (resets != ts->replays)
		return "replays_differ_from_history";
	if (ts->state != HANDOFF_STATE_DEAD)
		return "";
	if (!dead)
		return "attempts_left";
	if (dead != ts->reason)
		return "reason_differs_from_history";
	return "";
}

/* Push: every delivery of an event under one webhook-id, and no two
 * events under the same one. */
static void count_webhook_ids(struct ctx *x, int s, struct check_counts *c)
{
	struct sub *sb = &x->subs[s];
	struct tt_map seen;
	tt_map_init(&seen);
	for (uint64_t id = 1; id < sb->cap_d; id++) {
		const struct dinfo *d = sb->d[id];
		if (!d || !d->wid)
			continue;
		if (d->wid_varies) {
			c->webhook_id_unstable++;
			example(x, V_WEBHOOK_ID, sb->name, "why=%s", id,
				"changed_between_deliveries");
		}
		uint64_t *other = tt_map_get(&seen, d->wid);
		if (other) {
			c->webhook_id_unstable++;
			example(x, V_WEBHOOK_ID, sb->name, "why=%s", id,
				"shared_with_another_event");
			continue;
		}
		uint64_t *v = malloc(sizeof(*v));
		if (!v || tt_map_put(&seen, d->wid, v)) {
			free(v);
			set_error(x, "out of memory");
			break;
		}
		*v = id;
	}
	tt_map_free(&seen, free);
}

/* The attempt the trace holds as acked (0: none). */
static uint32_t acked_attempt(const struct tsub *ts)
{
	uint32_t a = 0;
	for (uint32_t i = 0; ts && i < ts->n_h; i++)
		if (ts->h[i].outcome == HANDOFF_OUTCOME_ACKED)
			a = ts->h[i].attempt;
	return a;
}

static void count_sub(struct ctx *x, int s, struct check_counts *c)
{
	struct sub *sb = &x->subs[s];
	count_lost(x, s, c);
	if (sb->push)
		count_webhook_ids(x, s, c);
	uint64_t top = x->cap_ev;
	if (sb->cap_d > top)
		top = sb->cap_d;
	if (sb->cap_dead > top)
		top = sb->cap_dead;
	for (uint64_t id = 1; id < top; id++) {
		const struct dinfo *d = dinfo_find(x, s, id);
		const struct tsub *ts = trace_sub(x, id, s);
		bool in_dlq = id < sb->cap_dead && sb->dead[id];
		if (!d && !ts && !in_dlq)
			continue;
		count_unexpected(x, s, id, c);
		if (in_dlq)
			c->dead++;
		if (d) {
			for (size_t i = 0; i < d->n_dv; i++) {
				if (d->ack_ok_t && d->dv[i].t > d->ack_ok_t) {
					c->redelivered_after_ack++;
					example(x, V_REDELIVERED, sb->name,
						"attempt=%s", id, "later");
				}
				/* push: the receiver never sees the ack
				 * confirmed; an attempt after the acked one
				 * was leased after the ack that stands */
				if (sb->push && ts &&
				    ts->state == HANDOFF_STATE_ACKED &&
				    acked_attempt(ts) &&
				    d->dv[i].attempt > acked_attempt(ts)) {
					c->redelivered_after_ack++;
					example(x, V_REDELIVERED, sb->name,
						"attempt=%s", id,
						"after_the_acked_attempt");
				}
				if (d->first_ack_t &&
				    d->dv[i].t > d->first_ack_t)
					c->duplicate_deliveries++;
			}
			if (d->n_dv > 1)
				c->redeliveries += d->n_dv - 1;
		}
		if (!ts)
			continue;
		if (ts->state == HANDOFF_STATE_ACKED) {
			c->acked++;
			uint32_t a = acked_attempt(ts);
			bool intent = d && (a ? has_u32(d->acks, d->n_acks, a) :
						d->n_acks > 0);
			if (!intent) {
				c->done_without_ack++;
				example(x, V_DONE, sb->name, "why=%s", id,
					d && d->n_acks ?
						"no_intent_for_acked_attempt" :
						"no_ack_intent");
			}
		}
		if (ts->state == HANDOFF_STATE_DEAD || in_dlq || ts->replays ||
		    (d && d->n_perms)) {
			const char *why = dead_cause(x, s, ts, d);
			if (!why)
				x->r->unverifiable++;
			else if (*why) {
				c->dead_without_cause++;
				example(x, V_DEAD, sb->name, "why=%s", id, why);
			}
		}
	}
}

/* Keys under two ids, and what a key's publish became. */
static void count_keys(struct ctx *x)
{
	/* Every traced event joins its key's id list. */
	for (uint64_t id = 1; id < x->cap_ev; id++) {
		if (!x->ev[id].found)
			continue;
		struct keyinfo *k = tt_map_get(&x->keys, x->ev[id].idem);
		if (!k)
			continue; /* never published: counted as unexpected */
		k->stored = true;
		key_add_id(k, id, 2);
	}
	for (size_t i = 0; i < x->keys.cap; i++) {
		const char *key = x->keys.slots[i].key;
		const struct keyinfo *k = x->keys.slots[i].val;
		if (!key)
			continue;
		if (k->intent && !k->conf_id) {
			x->r->unconfirmed++;
			if (k->stored)
				x->r->unconfirmed_stored++;
		}
		if (k->n_ids < 2)
			continue;
		x->r->total.duplicate_stored++;
		example(x, V_DUP, NULL, "key=%s", k->ids[1], key);
		/* per subscription: the ids of this key it was given */
		for (size_t s = 0; s < x->n_subs; s++) {
			size_t n = 0;
			for (size_t j = 0; j < k->n_ids; j++)
				if ((k->src[j] & 1) ||
				    trace_sub(x, k->ids[j], (int)s))
					n++;
			if (n >= 2)
				x->r->subs[s].duplicate_stored++;
		}
	}
}

static void add_counts(struct check_counts *t, const struct check_counts *c)
{
	t->lost += c->lost;
	t->unexpected += c->unexpected;
	t->done_without_ack += c->done_without_ack;
	t->redelivered_after_ack += c->redelivered_after_ack;
	t->dead_without_cause += c->dead_without_cause;
	t->webhook_id_unstable += c->webhook_id_unstable;
	t->confirmed += c->confirmed;
	t->delivered += c->delivered;
	t->acked += c->acked;
	t->dead += c->dead;
	t->duplicate_deliveries += c->duplicate_deliveries;
	t->redeliveries += c->redeliveries;
}

uint64_t check_violations(const struct check_result *r)
{
	const struct check_counts *t = &r->total;
	return t->lost + t->unexpected + t->duplicate_stored +
	       t->done_without_ack + t->redelivered_after_ack +
	       t->dead_without_cause + t->webhook_id_unstable;
}

static void print_counts(FILE *f, const struct check_counts *c)
{
	fprintf(f,
		"lost=%llu unexpected=%llu duplicate_stored=%llu "
		"done_without_ack=%llu redelivered_after_ack=%llu "
		"dead_without_cause=%llu webhook_id_unstable=%llu "
		"confirmed=%llu delivered=%llu "
		"acked=%llu dead=%llu duplicate_deliveries=%llu "
		"redeliveries=%llu",
		(unsigned long long)c->lost, (unsigned long long)c->unexpected,
		(unsigned long long)c->duplicate_stored,
		(unsigned long long)c->done_without_ack,
		(unsigned long long)c->redelivered_after_ack,
		(unsigned long long)c->dead_without_cause,
		(unsigned long long)c->webhook_id_unstable,
		(unsigned long long)c->confirmed,
		(unsigned long long)c->delivered, (unsigned long long)c->acked,
		(unsigned long long)c->dead,
		(unsigned long long)c->duplicate_deliveries,
		(unsigned long long)c->redeliveries);
}

static void free_ctx(struct ctx *x)
{
	for (size_t s = 0; s < x->n_subs; s++) {
		struct sub *sb = &x->subs[s];
		for (size_t i = 0; i < sb->cap_d; i++) {
			struct dinfo *d = sb->d[i];
			if (!d)
				continue;
			free(d->dv);
			free(d->acks);
			free(d->perms);
			free(d->key);
			free(d->wid);
			free(d);
		}
		free(sb->d);
		free(sb->dead);
	}
	for (uint64_t id = 0; id < x->cap_ev; id++) {
		struct tev *e = &x->ev[id];
		for (uint32_t i = 0; i < e->n_s; i++)
			free(e->s[i].h);
		free(e->s);
		free(e->idem);
	}
	free(x->ev);
	tt_map_free(&x->keys, free);
}

int check_run(const struct check_opts *o, struct check_result *r)
{
	struct ctx x;
	handoff_client *c = NULL;
	memset(&x, 0, sizeof(x));
	memset(r, 0, sizeof(*r));
	x.o = o;
	x.r = r;
	x.out = o->out ? o->out : stdout;
	x.examples = o->examples ? o->examples : 5;
	tt_map_init(&x.keys);

	load_records(&x);
	if (!x.error)
		c = connect_broker(&x);
	if (!x.error)
		load_subscriptions(&x, c);
	if (!x.error)
		load_dead_letters(&x, c);
	if (!x.error)
		load_traces(&x, c);
	handoff_close(c);
	if (x.error) {
		fprintf(x.out, "check: error=\"%s\" result=error\n", x.err);
		r->status = 2;
		goto out;
	}

	if (r->bad_lines) {
		/* a complete line we cannot read: the writer is broken */
		fprintf(x.out,
			"check: error=\"%llu malformed record lines\" "
			"result=error\n",
			(unsigned long long)r->bad_lines);
		r->status = 2;
		goto out;
	}
	count_keys(&x);
	r->n_subs = x.n_subs;
	for (size_t s = 0; s < x.n_subs; s++) {
		struct check_counts *cs = &r->subs[s];
		snprintf(r->sub_names[s], sizeof(r->sub_names[s]), "%s",
			 x.subs[s].name);
		count_sub(&x, (int)s, cs);
		add_counts(&r->total, cs);
		/* confirmed counts events, not events times subscriptions */
		r->total.confirmed = cs->confirmed;
		r->sub_push[s] = x.subs[s].push;
		if (x.subs[s].push) {
			add_counts(&r->push, cs);
			r->push.confirmed = cs->confirmed;
		}
		fprintf(x.out, "sub=%s push=%d ", x.subs[s].name,
			x.subs[s].push ? 1 : 0);
		print_counts(x.out, cs);
		fprintf(x.out, " ready=%llu delayed=%llu leased=%llu\n",
			(unsigned long long)x.subs[s].ready,
			(unsigned long long)x.subs[s].delayed,
			(unsigned long long)x.subs[s].leased);
	}
	r->status = check_violations(r) ? 1 : 0;
	fprintf(x.out, "check: ");
	print_counts(x.out, &r->total);
	fprintf(x.out,
		" unconfirmed=%llu unconfirmed_stored=%llu "
		"republished=%llu publish_errors=%llu events_traced=%llu "
		"max_id=%llu files=%llu partial_lines=%llu bad_lines=%llu "
		"unverifiable=%llu result=%s\n",
		(unsigned long long)r->unconfirmed,
		(unsigned long long)r->unconfirmed_stored,
		(unsigned long long)r->republished,
		(unsigned long long)r->publish_errors,
		(unsigned long long)r->events_traced,
		(unsigned long long)r->max_id, (unsigned long long)r->files,
		(unsigned long long)r->partial_lines,
		(unsigned long long)r->bad_lines,
		(unsigned long long)r->unverifiable, r->status ? "FAIL" : "ok");
out:
	fflush(x.out);
	free_ctx(&x);
	return r->status;
}
