/*
 * cli_consume.c — `handoff consume`: lease events of a subscription and
 * either print them (then ack the batch) or run a command per event and
 * ack/nack by its exit status, extending its lease while it runs; and
 * `handoff extend`, one lease extension by hand.
 *
 * Printing acks only after the output was flushed, so events are lost
 * neither on a crash nor on a full disk: the worst case is printing an
 * event twice. With --exec each event is settled right after its command,
 * so later events of a batch do not wait on leases held for nothing.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define DEFAULT_WAIT_MS	    5000u
#define DEFAULT_BATCH_PRINT 10u
#define DEFAULT_BATCH_EXEC  1u
#define EXIT_PERMANENT	    100	  /* the command says: never retry this event */
#define RETRY_PAUSE_MS	    1000u /* --forever: pause after a broker outage */
/* --max-extend: how long in all an event's lease is kept while its
 * command runs (from the fetch), unless the user says otherwise. */
#define DEFAULT_MAX_EXTEND_MS (3600u * 1000u)
/* A lease shorter than this as seen at the fetch (clock skew, a lease
 * nearly gone) is extended by this much at a time. */
#define MIN_EXTEND_MS 1000u
/* After a failed extend (broker unreachable): try again this much later. */
#define EXTEND_RETRY_MS 500u

enum {
	OPT_COUNT = OPT_LOCAL,
	OPT_WAIT,
	OPT_BATCH,
	OPT_EXEC,
	OPT_FOREVER,
	OPT_NAME,
	OPT_MAX_EXTEND
};

static const struct option consume_options[] = {
	{ "count", required_argument, NULL, OPT_COUNT },
	{ "wait", required_argument, NULL, OPT_WAIT },
	{ "batch", required_argument, NULL, OPT_BATCH },
	{ "exec", required_argument, NULL, OPT_EXEC },
	{ "forever", no_argument, NULL, OPT_FOREVER },
	{ "name", required_argument, NULL, OPT_NAME },
	{ "max-extend", required_argument, NULL, OPT_MAX_EXTEND },
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

struct consume_args {
	const char *sub;
	uint64_t count; /* stop after this many events; 0 = not given */
	uint32_t wait_ms;
	uint32_t batch;	  /* most events per fetch; 0 = by mode */
	const char *exec; /* NULL: print */
	bool forever;
	uint32_t max_extend_ms; /* --max-extend; 0: never extend */
	bool max_extend_set;
};

/* ---- options ----------------------------------------------------------- */

static int consume_option(struct cli_ctx *ctx, int opt, struct consume_args *a)
{
	switch (opt) {
	case OPT_COUNT:
		if (cli_opt_u64(ctx, "--count", optarg, &a->count))
			return CLI_EXIT_USAGE;
		if (a->count == 0)
			return cli_usage(ctx, "--count must be at least 1");
		return 0;
	case OPT_WAIT:
		return cli_opt_duration(ctx, "--wait", optarg, &a->wait_ms);
	case OPT_BATCH:
		if (cli_opt_u32(ctx, "--batch", optarg, &a->batch))
			return CLI_EXIT_USAGE;
		if (a->batch == 0)
			return cli_usage(ctx, "--batch must be at least 1");
		return 0;
	case OPT_EXEC:
		a->exec = optarg;
		return 0;
	case OPT_FOREVER:
		a->forever = true;
		return 0;
	case OPT_NAME:
		ctx->consumer = optarg;
		return 0;
	case OPT_MAX_EXTEND:
		a->max_extend_set = true;
		return cli_opt_duration(ctx, "--max-extend", optarg,
					&a->max_extend_ms);
	}
	return 0;
}

static int consume_parse(struct cli_ctx *ctx, int argc, char **argv,
			 struct consume_args *a)
{
	int opt, rc;

	a->wait_ms = DEFAULT_WAIT_MS;
	a->max_extend_ms = DEFAULT_MAX_EXTEND_MS;
	while ((opt = cli_getopt(ctx, argc, argv, consume_options, &rc)) > 0)
		if ((rc = consume_option(ctx, opt, a)))
			return rc;
	if (rc)
		return rc;
	if (argc - optind != 1)
		return cli_usage(ctx, "want one SUBSCRIPTION");
	if (a->exec && ctx->json)
		return cli_usage(ctx, "--json does not apply with --exec (the "
				      "command owns stdout)");
	if (a->max_extend_set && !a->exec)
		return cli_usage(ctx, "--max-extend applies to --exec only");
	a->sub = argv[optind];
	if (!a->batch)
		a->batch = a->exec ? DEFAULT_BATCH_EXEC : DEFAULT_BATCH_PRINT;
	return 0;
}

/* ---- print mode -------------------------------------------------------- */

static int print_json(const char *sub, const handoff_delivery *d)
{
	struct cli_json j;
	int rc;

	cli_json_init(&j, stdout);
	cli_json_begin_object(&j);
	cli_json_kv_u64(&j, "event_id", d->event_id);
	cli_json_kv_str(&j, "subscription", sub);
	cli_json_kv_str(&j, "topic", d->topic);
	cli_json_kv_str(&j, "key", d->key);
	cli_json_kv_u64(&j, "attempt", d->attempt);
	cli_json_kv_time(&j, "published", d->published_ms);
	cli_json_kv_time(&j, "lease_deadline", d->lease_deadline_ms);
	rc = cli_json_kv_headers(&j, d->headers, d->n_headers);
	if (!rc)
		rc = cli_json_kv_payload(&j, d->payload, d->payload_len);
	cli_json_end_object(&j);
	cli_json_newline(&j);
	return rc;
}

static void print_text(const handoff_delivery *d)
{
	printf("event_id=%" PRIu64 " topic=", d->event_id);
	cli_put_escaped_str(stdout, d->topic, CLI_ESC_SPACE);
	printf(" attempt=%" PRIu32 " key=", d->attempt);
	cli_put_escaped_str(stdout, d->key, CLI_ESC_SPACE);
	fputs(" payload=", stdout);
	cli_put_escaped(stdout, d->payload, d->payload_len, 0);
	fputc('\n', stdout);
}

/* Report per-item ack/nack failures; the exit code of the first. */
static int item_results(const handoff_delivery *d, const int *res, size_t n)
{
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		if (res[i] == HANDOFF_OK)
			continue;
		cli_warn("event %" PRIu64 ": %s%s", d[i].event_id,
			 handoff_strerror(res[i]),
			 res[i] == HANDOFF_ELEASELOST ?
				 " (the lease ended first; the event will "
				 "be delivered again)" :
				 "");
		if (!rc)
			rc = cli_exit_code(res[i]);
	}
	return rc;
}

static int ack_all(struct cli_ctx *ctx, const char *sub,
		   const handoff_delivery *d, size_t n)
{
	handoff_ack_item *items = calloc(n, sizeof(*items));
	int *res = calloc(n, sizeof(*res));
	int rc = 0, err;

	if (!items || !res) {
		cli_warn("consume: out of memory; events not acked");
		rc = CLI_EXIT_ERROR;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		items[i].event_id = d[i].event_id;
		items[i].lease_token = d[i].lease_token;
	}
	err = handoff_ack(ctx->client, sub, items, n, res);
	if (err)
		rc = cli_fail(ctx, err,
			      "ack %zu event(s) of '%s' (they will "
			      "be delivered again)",
			      n, sub);
	else
		rc = item_results(d, res, n);
out:
	free(items);
	free(res);
	return rc;
}

static int print_batch(struct cli_ctx *ctx, const struct consume_args *a,
		       const handoff_delivery *d, size_t n, bool *fatal)
{
	for (size_t i = 0; i < n; i++) {
		if (!ctx->json)
			print_text(&d[i]);
		else if (print_json(a->sub, &d[i]))
			goto fail;
	}
	/* Ack only what really got written out. */
	if (fflush(stdout) != 0 || ferror(stdout))
		goto fail;
	return ack_all(ctx, a->sub, d, n);
fail:
	cli_warn("consume: could not write the events; not acked (they will "
		 "be delivered again)");
	*fatal = true;
	return CLI_EXIT_ERROR;
}

/* ---- exec mode --------------------------------------------------------- */

struct verdict {
	bool ack;
	bool permanent;
	bool release;	    /* give the lease back uncounted */
	const char *result; /* "acked", "nacked", "permanent", "released" */
	char reason[CLI_EXEC_LINE_MAX + 64];
};

static void judge(const struct cli_exec_result *r, struct verdict *v)
{
	memset(v, 0, sizeof(*v));
	if (r->interrupted) {
		/* We killed it: not the event's fault, so not its attempt. */
		v->release = true;
		v->result = "released";
		snprintf(v->reason, sizeof(v->reason),
			 "consumer interrupted: command killed on a second "
			 "stop signal");
		return;
	}
	if (!r->signaled && r->status == 0) {
		v->ack = true;
		v->result = "acked";
		return;
	}
	v->permanent = !r->signaled && r->status == EXIT_PERMANENT;
	v->result = v->permanent ? "permanent" : "nacked";
	if (r->tty_signal)
		snprintf(v->reason, sizeof(v->reason),
			 "stopped by signal %d for using the terminal (the "
			 "command runs in a background process group); killed",
			 r->tty_signal);
	else if (r->signaled)
		snprintf(v->reason, sizeof(v->reason), "killed by signal %d",
			 r->status);
	else if (r->last_line[0])
		snprintf(v->reason, sizeof(v->reason), "%s", r->last_line);
	else
		snprintf(v->reason, sizeof(v->reason), "exit status %d",
			 r->status);
}

/* Ack, nack or release one delivery as v says; *res gets the item's own
 * code. */
static int settle(struct cli_ctx *ctx, const char *sub,
		  const handoff_delivery *d, const struct verdict *v, int *res)
{
	if (v->ack) {
		handoff_ack_item it = { d->event_id, d->lease_token };

		return handoff_ack(ctx->client, sub, &it, 1, res);
	} else {
		handoff_nack_item it = { .event_id = d->event_id,
					 .lease_token = d->lease_token,
					 .permanent = v->permanent,
					 .reason = v->reason };

		if (v->release)
			return handoff_release(ctx->client, sub, &it, 1, res);
		return handoff_nack(ctx->client, sub, &it, 1, res);
	}
}

static void log_event(const handoff_delivery *d, const struct verdict *v,
		      int item)
{
	fprintf(stderr, "event_id=%" PRIu64 " attempt=%" PRIu32 " result=%s",
		d->event_id, d->attempt, v->result);
	if (item == HANDOFF_ELEASELOST)
		fputs(" lease=lost", stderr);
	else if (item != HANDOFF_OK)
		fprintf(stderr, " status=%s", handoff_strerror(item));
	if (!v->ack) {
		fputs(" reason=", stderr);
		cli_put_escaped_str(stderr, v->reason, 0);
	}
	fputc('\n', stderr);
	if (item == HANDOFF_ELEASELOST)
		cli_warn("event %" PRIu64 ": the lease ended before the "
			 "command did; the event will be delivered again "
			 "(finish within the ack deadline)",
			 d->event_id);
}

/*
 * Keeps one delivery's lease while its command runs: once half of the
 * lease is left it is extended by the lease's length (as seen at the
 * fetch), but never past the fetch + --max-extend. Times are monotonic and
 * err on the early side: an extend sent at t leases until at least
 * t + extend_ms on the broker.
 */
struct keeper {
	struct cli_ctx *ctx;
	const char *sub;
	const handoff_delivery *d;
	uint64_t lease_ms; /* extend by this much */
	uint64_t end;	   /* the lease lasts at least until then */
	uint64_t limit;	   /* never keep it past this */
	uint64_t retry_at; /* after a failed try, not before this */
	uint32_t max_ms;   /* --max-extend, for messages */
	bool done;	   /* lost, refused or at the limit: no more tries */
};

static void keeper_init(struct keeper *k, struct cli_ctx *ctx,
			const struct consume_args *a, const handoff_delivery *d,
			uint64_t fetched_mono, uint64_t fetched_wall)
{
	uint64_t left = d->lease_deadline_ms > fetched_wall ?
				d->lease_deadline_ms - fetched_wall :
				0;

	memset(k, 0, sizeof(*k));
	k->ctx = ctx;
	k->sub = a->sub;
	k->d = d;
	k->end = fetched_mono + left;
	k->lease_ms = left < MIN_EXTEND_MS ? MIN_EXTEND_MS : left;
	if (k->lease_ms > HANDOFF_MAX_EXTEND_MS)
		k->lease_ms = HANDOFF_MAX_EXTEND_MS;
	k->limit = fetched_mono + a->max_extend_ms;
	k->max_ms = a->max_extend_ms;
	k->done = a->max_extend_ms == 0;
}

static void keeper_tick(void *arg)
{
	struct keeper *k = arg;
	uint64_t now = cli_mono_ms(), target;
	handoff_ack_item it = { k->d->event_id, k->d->lease_token };
	int err, res = HANDOFF_OK;
	char dur[CLI_FMT_MAX];

	if (k->done || now < k->retry_at ||
	    (k->end > now && k->end - now > k->lease_ms / 2))
		return;
	target = now + k->lease_ms < k->limit ? now + k->lease_ms : k->limit;
	if (target <= k->end || target <= now) {
		k->done = true;
		cli_warn("event %" PRIu64
			 ": --max-extend %s reached; the lease "
			 "runs out, and the event is delivered again if the "
			 "command is still running then",
			 k->d->event_id, cli_fmt_duration(k->max_ms, dur));
		return;
	}
	err = handoff_extend(k->ctx->client, k->sub, &it, 1,
			     (uint32_t)(target - now), &res);
	if (err == HANDOFF_ETIMEDOUT || err == HANDOFF_ETRANSPORT) {
		cli_fail(k->ctx, err,
			 "extend the lease of event %" PRIu64 " (trying again)",
			 k->d->event_id);
		k->retry_at = cli_mono_ms() + EXTEND_RETRY_MS;
		return;
	}
	if (err || res != HANDOFF_OK) {
		k->done = true;
		if (err)
			cli_fail(k->ctx, err,
				 "extend the lease of event %" PRIu64,
				 k->d->event_id);
		else
			cli_warn("event %" PRIu64 ": lease not extended: %s "
				 "(the event will be delivered again)",
				 k->d->event_id, handoff_strerror(res));
		return;
	}
	k->end = target;
}

static int exec_one(struct cli_ctx *ctx, const struct consume_args *a,
		    const handoff_delivery *d, uint64_t fetched_mono,
		    uint64_t fetched_wall, bool *fatal)
{
	struct cli_exec_result r;
	struct verdict v;
	struct keeper k;
	struct cli_exec_tick tick = { keeper_tick, &k };
	int err, item = HANDOFF_OK;

	keeper_init(&k, ctx, a, d, fetched_mono, fetched_wall);
	err = cli_exec_run(a->exec, a->sub, d, &tick, &r);
	if (err) {
		cli_warn("consume: could not run the command: %s",
			 strerror(err));
		memset(&v, 0, sizeof(v));
		v.result = "nacked";
		snprintf(v.reason, sizeof(v.reason),
			 "could not run command: %s", strerror(err));
		*fatal = true;
	} else {
		judge(&r, &v);
	}
	err = settle(ctx, a->sub, d, &v, &item);
	if (err) {
		*fatal = true;
		return cli_fail(ctx, err, "%s event %" PRIu64,
				v.ack	  ? "ack" :
				v.release ? "release" :
					    "nack",
				d->event_id);
	}
	if (v.release && item == HANDOFF_ELEASELOST)
		item = HANDOFF_OK; /* it comes again either way */
	log_event(d, &v, item);
	if (v.release)
		return 0; /* the loop stops: a second stop signal came */
	if (*fatal)
		return CLI_EXIT_ERROR;
	return item == HANDOFF_OK ? 0 : cli_exit_code(item);
}

/* Give back leases we will not work on, for redelivery at once and
 * without spending their attempts. */
static void release(struct cli_ctx *ctx, const char *sub,
		    const handoff_delivery *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		handoff_nack_item it = { .event_id = d[i].event_id,
					 .lease_token = d[i].lease_token,
					 .reason = "consumer stopped" };
		int res;

		if (handoff_release(ctx->client, sub, &it, 1, &res) !=
		    HANDOFF_OK)
			return; /* the leases will simply expire */
	}
}

static int exec_batch(struct cli_ctx *ctx, const struct consume_args *a,
		      const handoff_delivery *d, size_t n, bool *fatal)
{
	uint64_t fetched_mono = cli_mono_ms(), fetched_wall = cli_now_ms();
	int rc = 0;
	size_t i;

	for (i = 0; i < n && !*fatal && !cli_stop_requested(); i++) {
		int r = exec_one(ctx, a, &d[i], fetched_mono, fetched_wall,
				 fatal);

		if (r && !rc)
			rc = r;
	}
	if (i < n)
		release(ctx, a->sub, d + i, n - i);
	return rc;
}

/* ---- the loop ---------------------------------------------------------- */

/* The library adds the long-poll time to the call's deadline itself. */
static int fetch(struct cli_ctx *ctx, const struct consume_args *a, size_t want,
		 handoff_delivery **d, size_t *n)
{
	return handoff_fetch(ctx->client, a->sub, want, a->wait_ms, d, n);
}

static bool transient(int err)
{
	return err == HANDOFF_ETIMEDOUT || err == HANDOFF_ETRANSPORT ||
	       err == HANDOFF_ESHUTTINGDOWN;
}

static int consume_loop(struct cli_ctx *ctx, const struct consume_args *a)
{
	uint64_t done = 0;
	bool fatal = false;
	int rc = 0;

	while (!fatal && !cli_stop_requested()) {
		handoff_delivery *d = NULL;
		size_t n = 0, want = a->batch;
		int err, r;

		if (a->count && a->count - done < want)
			want = (size_t)(a->count - done);
		err = fetch(ctx, a, want, &d, &n);
		if (err && cli_stop_requested())
			break;
		if (err && a->forever && transient(err)) {
			cli_fail(ctx, err, "fetch from '%s' (retrying)",
				 a->sub);
			cli_sleep_ms(RETRY_PAUSE_MS);
			continue;
		}
		if (err)
			return cli_fail(ctx, err, "fetch from '%s'", a->sub);
		if (n == 0) {
			handoff_deliveries_free(d, 0);
			if (!a->forever)
				break;
			continue;
		}
		r = a->exec ? exec_batch(ctx, a, d, n, &fatal) :
			      print_batch(ctx, a, d, n, &fatal);
		handoff_deliveries_free(d, n);
		if (r && !rc)
			rc = r;
		done += n;
		if (a->count ? done >= a->count : !a->forever)
			break;
	}
	return rc;
}

static int run_consume(struct cli_ctx *ctx, int argc, char **argv)
{
	struct consume_args a = { 0 };
	int rc;

	if ((rc = consume_parse(ctx, argc, argv, &a)))
		return rc;
	if ((rc = cli_connect(ctx)))
		return rc;
	/* With --exec a second signal stops the command and releases its
	 * event (cli_exec.c); then we die by that signal, as interrupted. */
	cli_install_stop_handlers(a.exec != NULL);
	rc = consume_loop(ctx, &a);
	if (a.exec && cli_stop_count() >= 2)
		cli_stop_die();
	return rc;
}

const struct cli_command cli_cmd_consume = {
	.name = "consume",
	.summary = "receive events: print them, or run a command per event",
	.help = "Usage: handoff consume SUBSCRIPTION [OPTIONS]\n"
		"\n"
		"Lease events of SUBSCRIPTION and process them.\n"
		"\n"
		"Without --exec each event is printed on stdout, one line each:\n"
		"  event_id=N topic=T attempt=A key=K payload=TEXT\n"
		"(bytes that are not printable are escaped as \\n, \\t, \\\\, \\xHH;\n"
		"spaces in topic and key as \\x20), or with --json one JSON object\n"
		"per line (payload as text, or payload_base64 when not UTF-8;\n"
		"headers in \"headers\": {NAME: VALUE}, except those whose name or\n"
		"value is not UTF-8: they go in \"headers_binary\": [{\"name\" or\n"
		"\"name_base64\", \"value\" or \"value_base64\"}], so every byte\n"
		"survives). The printed events are then acked together.\n"
		"\n"
		"With --exec COMMAND each event runs '/bin/sh -c COMMAND' with the\n"
		"payload on stdin and these variables set: HANDOFF_EVENT_ID,\n"
		"HANDOFF_TOPIC, HANDOFF_KEY, HANDOFF_ATTEMPT, HANDOFF_SUBSCRIPTION,\n"
		"HANDOFF_PUBLISHED_MS, HANDOFF_LEASE_DEADLINE_MS (as at the fetch),\n"
		"HANDOFF_LEASE_TOKEN and one\n"
		"HANDOFF_HEADER_<NAME> per header (NAME uppercased, other characters\n"
		"than ASCII letters and digits replaced by '_' byte by byte; for a\n"
		"repeated header the last value). The command's exit status\n"
		"decides:\n"
		"  0          ack: done\n"
		"  100        nack as permanent: dead-letter the event now\n"
		"  other      nack (75, EX_TEMPFAIL, is the usual one): retry after\n"
		"             the subscription's backoff, or dead-letter once the\n"
		"             attempts are used up\n"
		"  signal     nack with reason 'killed by signal N'\n"
		"The nack reason is the command's last non-empty stderr line (stderr\n"
		"is passed through). The command is waited for however long it runs,\n"
		"and its lease is extended while it does: whenever half of the lease\n"
		"is left, by the subscription's ack deadline again, for at most\n"
		"--max-extend in all (default 1h, counted from the fetch). A command\n"
		"still running after that loses the lease: its ack/nack is refused and\n"
		"the event is delivered again. One line per event goes to stderr:\n"
		"  event_id=N attempt=A result=acked|nacked|permanent|released\n"
		"    [reason=...]\n"
		"\n"
		"Stopping: the first SIGINT (Ctrl-C) or SIGTERM lets the command\n"
		"finish: it runs in a process group of its own, so the signal does\n"
		"not reach it. Its event is acked or nacked as usual, then consume\n"
		"exits (0 when that went well). Events fetched but not started are\n"
		"released. A second SIGINT or SIGTERM kills the command and its\n"
		"process group at once and releases its event: it is delivered\n"
		"again at once and that attempt does not count (trace shows it as\n"
		"'released'), so it is never dead-lettered for it; consume then\n"
		"dies by that signal. A second signal while a fetch waits acts when\n"
		"the fetch returns (within --wait); a third kills consume at once.\n"
		"The command must leave the terminal alone: stopped for reading it\n"
		"(or writing it under 'stty tostop') it is killed and nacked. Under\n"
		"systemd use KillMode=mixed, so that a stop sends SIGTERM to consume\n"
		"alone, and a TimeoutStopSec longer than the command takes.\n"
		"\n"
		"Options:\n"
		"  --count N         stop after N events\n"
		"  --forever         keep going; a wait with nothing delivered does not\n"
		"                    stop, broker outages are retried (stop with\n"
		"                    SIGINT/SIGTERM: see Stopping above)\n"
		"  --wait DURATION   long-poll time of each fetch (default 5s)\n"
		"  --batch N         most events per fetch (default 10; 1 with --exec:\n"
		"                    all leases of a batch start at the fetch; with\n"
		"                    --exec only the running command's lease is\n"
		"                    extended, so the events waiting behind it must\n"
		"                    start within the ack deadline)\n"
		"  --exec COMMAND    run COMMAND per event (see above)\n"
		"  --max-extend DURATION  with --exec: keep each event's lease for at\n"
		"                    most this long while its command runs (default\n"
		"                    1h; 0 = never extend: finish within the ack\n"
		"                    deadline)\n"
		"  --name NAME       consumer name shown in traces (default HOST:PID)\n"
		"\n"
		"Without --count or --forever, consume does one fetch: it processes\n"
		"what that fetch returns (up to --batch events) and exits. It also\n"
		"stops when a wait runs out with nothing delivered (exit code 0).\n"
		"Exit code 8 when an ack or nack came after its lease had ended.\n"
		"See also 'handoff extend'.\n",
	.run = run_consume,
};

/* ---- extend ------------------------------------------------------------ */

enum { OPT_BY = OPT_LOCAL };

static const struct option extend_options[] = {
	{ "by", required_argument, NULL, OPT_BY },
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static int run_extend(struct cli_ctx *ctx, int argc, char **argv)
{
	handoff_ack_item it;
	uint32_t by = 0;
	bool have_by = false;
	int opt, rc, err, res = HANDOFF_OK;
	const char *sub;
	char dur[CLI_FMT_MAX];

	while ((opt = cli_getopt(ctx, argc, argv, extend_options, &rc)) > 0) {
		have_by = true; /* OPT_BY is the only own option */
		if ((rc = cli_opt_duration(ctx, "--by", optarg, &by)))
			return rc;
	}
	if (rc)
		return rc;
	if (argc - optind != 3)
		return cli_usage(ctx, "want SUBSCRIPTION EVENT_ID LEASE_TOKEN");
	if (!have_by)
		return cli_usage(ctx, "--by DURATION is required");
	if (by == 0 || by > HANDOFF_MAX_EXTEND_MS)
		return cli_usage(ctx, "--by must be 1ms..12h");
	sub = argv[optind];
	if (cli_opt_u64(ctx, "EVENT_ID", argv[optind + 1], &it.event_id) ||
	    cli_opt_u64(ctx, "LEASE_TOKEN", argv[optind + 2], &it.lease_token))
		return CLI_EXIT_USAGE;
	if ((rc = cli_connect(ctx)))
		return rc;
	err = handoff_extend(ctx->client, sub, &it, 1, by, &res);
	if (err)
		return cli_fail(ctx, err, "extend the lease of event %" PRIu64,
				it.event_id);
	if (res != HANDOFF_OK) {
		cli_warn("extend the lease of event %" PRIu64 ": %s%s",
			 it.event_id, handoff_strerror(res),
			 res == HANDOFF_ELEASELOST ?
				 " (the lease ended or the token is not the "
				 "current one)" :
				 "");
		return cli_exit_code(res);
	}
	if (ctx->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_begin_object(&j);
		cli_json_kv_u64(&j, "event_id", it.event_id);
		cli_json_kv_str(&j, "subscription", sub);
		cli_json_kv_u64(&j, "extended_ms", by);
		cli_json_end_object(&j);
		cli_json_newline(&j);
	} else {
		printf("extended the lease of event %" PRIu64 " of ",
		       it.event_id);
		cli_put_escaped_str(stdout, sub, 0);
		printf(" to %s from now\n", cli_fmt_duration(by, dur));
	}
	return 0;
}

const struct cli_command cli_cmd_extend = {
	.name = "extend",
	.summary = "keep a lease longer (for work past the ack deadline)",
	.help = "Usage: handoff extend SUBSCRIPTION EVENT_ID LEASE_TOKEN --by "
		"DURATION\n"
		"\n"
		"Set the deadline of a lease still held to DURATION from now\n"
		"(1ms..12h; it may also bring the deadline closer). The lease keeps\n"
		"its token: ack or nack it as before. A command run by\n"
		"'consume --exec' finds the token in HANDOFF_LEASE_TOKEN, though\n"
		"consume extends the lease by itself (--max-extend). A lease whose\n"
		"deadline has passed is never extended.\n"
		"Exit code 8 when the lease has ended (expired, acked, nacked or\n"
		"leased again) or the token is wrong; 3 when there is no such\n"
		"subscription or delivery.\n",
	.run = run_extend,
};
