/*
 * cli_dlq.c — `handoff dlq list|show|replay|purge`: the dead-letter
 * queue of a subscription.
 *
 * List pages through the queue with after_event_id. Replay and purge act
 * in chunks (at most --rate ids per request, else 100), so a big queue
 * never needs one huge request and --rate can pace the replay. In filter
 * mode every next request starts after the highest id handled so far:
 * acted-on letters have left the queue anyway, dry runs (which change
 * nothing) still move forward, and a replayed event that dies again
 * while we run is not picked up a second time.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define PAGE		   100u /* dead letters per list/action request */
#define DEFAULT_LIST_LIMIT 100u
#define ERROR_COLUMN_MAX   80 /* bytes of error text in the list table */

enum {
	OPT_AFTER = OPT_LOCAL,
	OPT_REASON,
	OPT_SINCE,
	OPT_UNTIL,
	OPT_GREP,
	OPT_LIMIT,
	OPT_DRY_RUN,
	OPT_RATE,
	OPT_YES,
	OPT_WHY
};

#define DLQ_FILTER_OPTIONS                                         \
	{ "after", required_argument, NULL, OPT_AFTER },           \
		{ "reason", required_argument, NULL, OPT_REASON }, \
		{ "since", required_argument, NULL, OPT_SINCE },   \
		{ "until", required_argument, NULL, OPT_UNTIL },   \
		{ "grep", required_argument, NULL, OPT_GREP },     \
	{                                                          \
		"limit", required_argument, NULL, OPT_LIMIT        \
	}

#define FILTER_HELP                                                          \
	"Filters:\n"                                                         \
	"  --after ID        only event ids greater than ID\n"               \
	"  --reason R        max_attempts, permanent or corrupt\n"           \
	"  --since TIME      dead at or after TIME\n"                        \
	"  --until TIME      dead at or before TIME\n"                       \
	"  --grep TEXT       the last error contains TEXT\n"                 \
	"TIME is unix ms, an ISO-8601 UTC time (2024-05-01T12:00:00Z), or\n" \
	"a duration meaning that long ago (30m, 1h, 7d).\n"

struct dlq_args {
	handoff_dlq_filter f;
	bool filtered;	/* some filter option was given */
	uint64_t limit; /* 0 = none */
	bool has_limit;
	uint32_t rate; /* events/s; 0 = as fast as possible */
	bool dry_run, yes;
	const char *why; /* --why: the reason kept in the audit record */
};

/* ---- options ----------------------------------------------------------- */

static int parse_reason(struct cli_ctx *ctx, const char *arg,
			handoff_dead_reason *reason)
{
	static const int reasons[] = { HANDOFF_DEAD_MAX_ATTEMPTS,
				       HANDOFF_DEAD_PERMANENT,
				       HANDOFF_DEAD_CORRUPT };

	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
		if (strcmp(arg, handoff_dead_reason_name(reasons[i])) == 0) {
			*reason = reasons[i];
			return 0;
		}
	}
	return cli_usage(ctx,
			 "invalid --reason '%s' (want max_attempts, "
			 "permanent or corrupt)",
			 arg);
}

static int filter_option(struct cli_ctx *ctx, int opt, struct dlq_args *a)
{
	handoff_dlq_filter *f = &a->f;

	a->filtered = true;
	switch (opt) {
	case OPT_AFTER:
		return cli_opt_u64(ctx, "--after", optarg, &f->after_event_id);
	case OPT_REASON:
		return parse_reason(ctx, optarg, &f->reason);
	case OPT_SINCE:
		return cli_opt_time(ctx, "--since", optarg, &f->dead_since_ms);
	case OPT_UNTIL:
		return cli_opt_time(ctx, "--until", optarg, &f->dead_until_ms);
	case OPT_GREP:
		if (!*optarg)
			return cli_usage(ctx, "empty --grep");
		f->error_contains = optarg;
		return 0;
	}
	a->filtered = false;
	return -1; /* not a filter option */
}

static int dlq_option(struct cli_ctx *ctx, int opt, struct dlq_args *a)
{
	int rc = filter_option(ctx, opt, a);

	if (rc >= 0)
		return rc;
	switch (opt) {
	case OPT_LIMIT:
		a->has_limit = true;
		return cli_opt_u64(ctx, "--limit", optarg, &a->limit);
	case OPT_DRY_RUN:
		a->dry_run = true;
		return 0;
	case OPT_RATE:
		if (cli_opt_u32(ctx, "--rate", optarg, &a->rate))
			return CLI_EXIT_USAGE;
		if (a->rate == 0)
			return cli_usage(ctx, "--rate must be at least 1");
		return 0;
	case OPT_YES:
		a->yes = true;
		return 0;
	case OPT_WHY:
		if (!*optarg)
			return cli_usage(ctx, "empty --why");
		a->why = optarg;
		return 0;
	}
	return 0;
}

static int dlq_parse(struct cli_ctx *ctx, int argc, char **argv,
		     const struct option *opts, struct dlq_args *a)
{
	int opt, rc;

	while ((opt = cli_getopt(ctx, argc, argv, opts, &rc)) > 0)
		if ((rc = dlq_option(ctx, opt, a)))
			return rc;
	if (rc)
		return rc;
	if (optind >= argc)
		return cli_usage(ctx, "missing SUBSCRIPTION");
	if (a->f.dead_since_ms && a->f.dead_until_ms &&
	    a->f.dead_since_ms > a->f.dead_until_ms)
		return cli_usage(ctx, "--since is later than --until");
	return 0;
}

/* ---- list -------------------------------------------------------------- */

static void letter_json(struct cli_json *j, const handoff_dead_letter *d)
{
	cli_json_kv_u64(j, "event_id", d->event_id);
	cli_json_kv_str(j, "topic", d->topic);
	cli_json_kv_str(j, "key", d->key);
	cli_json_kv_str(j, "reason", handoff_dead_reason_name(d->reason));
	cli_json_kv_str(j, "error", d->error);
	cli_json_kv_time(j, "dead", d->dead_ms);
	cli_json_kv_time(j, "published", d->published_ms);
	cli_json_kv_u64(j, "attempts", d->attempts);
	cli_json_kv_u64(j, "replays", d->replays);
}

/* s cut to about max bytes on a UTF-8 boundary, "..." appended. */
static const char *shorten(const char *s, char *buf, size_t max)
{
	size_t n;

	if (!s || !*s)
		return NULL;
	n = strlen(s);
	if (n <= max)
		return s;
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	memcpy(buf, s, n);
	strcpy(buf + n, "...");
	return buf;
}

static void letter_row(struct cli_table *t, const handoff_dead_letter *d)
{
	char id[CLI_FMT_MAX], at[CLI_FMT_MAX], n[CLI_FMT_MAX], r[CLI_FMT_MAX],
		err[ERROR_COLUMN_MAX + 4];

	cli_table_add(t, cli_fmt_u64(d->event_id, id),
		      cli_fmt_time(d->dead_ms, at),
		      handoff_dead_reason_name(d->reason),
		      cli_fmt_u64(d->attempts, n), cli_fmt_u64(d->replays, r),
		      shorten(d->error, err, ERROR_COLUMN_MAX));
}

struct list_out {
	struct cli_json j;
	struct cli_table t;
	bool json;
};

static int list_pages(struct cli_ctx *ctx, const char *sub,
		      const struct dlq_args *a, struct list_out *o, bool *more)
{
	handoff_dlq_filter f = a->f;
	uint64_t left = a->has_limit ? a->limit : DEFAULT_LIST_LIMIT;
	bool unlimited = a->has_limit && a->limit == 0;

	*more = true;
	while (*more && (unlimited || left > 0)) {
		uint32_t page =
			(!unlimited && left < PAGE) ? (uint32_t)left : PAGE;
		handoff_dead_letter *d = NULL;
		size_t n = 0;
		int err = handoff_dlq_list(ctx->client, sub, &f, page, &d, &n,
					   more);

		if (err)
			return cli_fail(ctx, err, "list dead letters of '%s'",
					sub);
		for (size_t i = 0; i < n; i++) {
			if (!o->json) {
				letter_row(&o->t, &d[i]);
				continue;
			}
			cli_json_begin_object(&o->j);
			letter_json(&o->j, &d[i]);
			cli_json_end_object(&o->j);
		}
		if (n > 0)
			f.after_event_id = d[n - 1].event_id;
		handoff_dead_letters_free(d, n);
		if (n == 0)
			break; /* nothing more can come of asking again */
		left -= n < left ? n : left;
	}
	if (*more && f.after_event_id && !o->json)
		fprintf(stderr,
			"(more dead letters match; the next ones: "
			"--after %" PRIu64 ")\n",
			f.after_event_id);
	return 0;
}

static const struct option list_options[] = {
	DLQ_FILTER_OPTIONS,
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static int run_dlq_list(struct cli_ctx *ctx, int argc, char **argv)
{
	static const char *const head[] = { "EVENT_ID", "DEAD_AT", "REASON",
					    "ATTEMPTS", "REPLAYS", "ERROR" };
	struct dlq_args a = { 0 };
	struct list_out o = { .json = ctx->json };
	bool more = false;
	int rc;

	if ((rc = dlq_parse(ctx, argc, argv, list_options, &a)))
		return rc;
	if (argc - optind != 1)
		return cli_usage(ctx, "want one SUBSCRIPTION");
	if ((rc = cli_connect(ctx)))
		return rc;
	o.json = ctx->json;
	cli_table_init(&o.t, head, 6, 1u << 0 | 1u << 3 | 1u << 4);
	cli_json_init(&o.j, stdout);
	if (o.json) {
		cli_json_begin_object(&o.j);
		cli_json_key(&o.j, "dead_letters");
		cli_json_begin_array(&o.j);
	}
	rc = list_pages(ctx, argv[optind], &a, &o, &more);
	if (o.json) {
		cli_json_end_array(&o.j);
		cli_json_kv_bool(&o.j, "more", more);
		cli_json_end_object(&o.j);
		cli_json_newline(&o.j);
	} else if (!rc && o.t.nrows == 0) {
		fputs("(no dead letters)\n", stderr);
	} else if (!rc && cli_table_print(&o.t, stdout, "")) {
		cli_warn("dlq list: out of memory");
		rc = CLI_EXIT_ERROR;
	}
	cli_table_free(&o.t);
	return rc;
}

const struct cli_command cli_cmd_dlq_list = {
	.name = "dlq list",
	.summary = "list dead letters",
	.help = "Usage: handoff dlq list SUBSCRIPTION [FILTERS] [--limit N]\n"
		"\n"
		"List dead letters of SUBSCRIPTION in event id order: event id, when\n"
		"it died (UTC), why, attempts used, times replayed, last error.\n"
		"--limit N shows at most N (default 100; 0 = all). With --json, an\n"
		"object {\"dead_letters\":[...],\"more\":B}.\n"
		"\n" FILTER_HELP,
	.run = run_dlq_list,
};

/* ---- show -------------------------------------------------------------- */

static void show_json(const char *sub, const handoff_dead_letter *d)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_begin_object(&j);
	cli_json_kv_str(&j, "subscription", sub);
	letter_json(&j, d);
	if (cli_json_kv_headers(&j, d->headers, d->n_headers))
		cli_warn("dlq show: out of memory: headers left out");
	if (cli_json_kv_payload(&j, d->payload, d->payload_len))
		cli_json_kv_str(&j, "payload", NULL);
	cli_json_kv_history(&j, d->history, d->n_history);
	cli_json_end_object(&j);
	cli_json_newline(&j);
}

static void show_field(const char *name, const char *value)
{
	printf("%-11s ", name);
	cli_put_escaped_str(stdout, value && *value ? value : "-", 0);
	fputc('\n', stdout);
}

static int show_text(const handoff_dead_letter *d)
{
	char b[CLI_FMT_MAX];

	show_field("event_id:", cli_fmt_u64(d->event_id, b));
	show_field("topic:", d->topic);
	show_field("key:", d->key);
	show_field("published:", cli_fmt_time(d->published_ms, b));
	show_field("dead_at:", cli_fmt_time(d->dead_ms, b));
	show_field("reason:", handoff_dead_reason_name(d->reason));
	show_field("error:", d->error);
	show_field("attempts:", cli_fmt_u64(d->attempts, b));
	show_field("replays:", cli_fmt_u64(d->replays, b));
	printf("headers:%s\n", d->n_headers ? "" : "    -");
	for (size_t i = 0; i < d->n_headers; i++) {
		fputs("  ", stdout);
		cli_put_escaped_str(stdout, d->headers[i].name, 0);
		fputs(": ", stdout);
		cli_put_escaped_str(stdout, d->headers[i].value, 0);
		fputc('\n', stdout);
	}
	printf("payload:    (%zu bytes) ", d->payload_len);
	cli_put_escaped(stdout, d->payload, d->payload_len, 0);
	fputs("\nhistory:\n", stdout);
	return cli_print_history(stdout, d->history, d->n_history, "  ");
}

static const struct option show_options[] = {
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static int run_dlq_show(struct cli_ctx *ctx, int argc, char **argv)
{
	handoff_dead_letter *d = NULL;
	uint64_t id;
	int rc, err;

	while (cli_getopt(ctx, argc, argv, show_options, &rc) > 0)
		;
	if (rc)
		return rc;
	if (argc - optind != 2)
		return cli_usage(ctx, "want SUBSCRIPTION and EVENT_ID");
	if (cli_parse_u64(argv[optind + 1], &id))
		return cli_usage(ctx, "invalid EVENT_ID '%s'",
				 argv[optind + 1]);
	if ((rc = cli_connect(ctx)))
		return rc;
	err = handoff_dlq_show(ctx->client, argv[optind], id, &d);
	if (err)
		return cli_fail(ctx, err,
				"show dead letter %" PRIu64 " of '%s'", id,
				argv[optind]);
	if (ctx->json)
		show_json(argv[optind], d);
	else if (show_text(d))
		rc = CLI_EXIT_ERROR;
	handoff_dead_letters_free(d, 1);
	return rc;
}

const struct cli_command cli_cmd_dlq_show = {
	.name = "dlq show",
	.summary = "show one dead letter with its payload and history",
	.help = "Usage: handoff dlq show SUBSCRIPTION EVENT_ID\n"
		"\n"
		"Show one dead letter: why it died, the last error, headers, the\n"
		"payload (escaped; in --json as text, or payload_base64 when not\n"
		"UTF-8; headers that are not UTF-8 in headers_binary, see consume\n"
		"--help) and every attempt: number, consumer, when leased and\n"
		"ended, outcome, error, and the retry delay chosen after it.\n",
	.run = run_dlq_show,
};

/* ---- replay and purge -------------------------------------------------- */

struct act {
	struct cli_ctx *ctx;
	const char *sub;
	const struct dlq_args *a;
	bool purge;
	uint64_t done;	     /* letters acted on (or that would be) */
	uint64_t missing;    /* requested ids not in the queue */
	uint64_t started_ms; /* monotonic, for --rate */
	struct cli_json j;   /* --json: ids and missing ids collected */
	uint64_t *ids, *miss;
	size_t n_ids, n_miss, cap_ids, cap_miss;
};

static int push_id(uint64_t **v, size_t *n, size_t *cap, uint64_t id)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 256;
		uint64_t *nv = realloc(*v, c * sizeof(*nv));

		if (!nv)
			return ENOMEM;
		*v = nv;
		*cap = c;
	}
	(*v)[(*n)++] = id;
	return 0;
}

/* Print/collect one reply's ids; report missing ones. */
static int act_record(struct act *s, const handoff_dlq_result *r)
{
	bool print_ids = !s->purge || s->a->dry_run;

	for (size_t i = 0; i < r->n_event_ids; i++) {
		if (s->ctx->json) {
			if (push_id(&s->ids, &s->n_ids, &s->cap_ids,
				    r->event_ids[i]))
				return ENOMEM;
		} else if (print_ids) {
			printf("%" PRIu64 "\n", r->event_ids[i]);
		}
	}
	for (size_t i = 0; i < r->n_missing; i++) {
		cli_warn("dlq %s: event %" PRIu64 " is not in the dead-letter "
			 "queue of '%s'",
			 s->purge ? "purge" : "replay", r->missing[i], s->sub);
		if (s->ctx->json &&
		    push_id(&s->miss, &s->n_miss, &s->cap_miss, r->missing[i]))
			return ENOMEM;
	}
	s->done += r->n_event_ids;
	s->missing += r->n_missing;
	if (!s->ctx->json)
		fflush(stdout); /* progress shows while --rate paces */
	return 0;
}

/* One request; *r is filled (free it) on success. */
static int act_call(struct act *s, const handoff_dlq_action *act,
		    handoff_dlq_result *r)
{
	int err;

	handoff_dlq_action with_why = *act;
	with_why.reason = s->a->why;
	memset(r, 0, sizeof(*r));
	err = s->purge ?
		      handoff_dlq_purge(s->ctx->client, s->sub, &with_why, r) :
		      handoff_dlq_replay(s->ctx->client, s->sub, &with_why, r);
	if (err)
		return cli_fail(s->ctx, err, "%s dead letters of '%s'%s",
				s->purge ? "purge" : "replay", s->sub,
				s->done ? " (stopped part way)" : "");
	if (act_record(s, r)) {
		handoff_dlq_result_free(r);
		cli_warn("dlq: out of memory");
		return CLI_EXIT_ERROR;
	}
	return 0;
}

/* --rate: sleep until done/rate seconds have passed since the start. */
static void act_pace(struct act *s)
{
	uint64_t due, now;

	if (!s->a->rate || s->a->dry_run)
		return;
	due = s->started_ms + s->done * 1000 / s->a->rate;
	now = cli_mono_ms();
	if (due > now)
		cli_sleep_ms(due - now);
}

static uint32_t chunk_size(const struct dlq_args *a)
{
	return a->rate && a->rate < PAGE ? a->rate : PAGE;
}

static int act_on_ids(struct act *s, const uint64_t *ids, size_t n)
{
	size_t chunk = chunk_size(s->a);

	for (size_t i = 0; i < n && !cli_stop_requested(); i += chunk) {
		size_t k = n - i < chunk ? n - i : chunk;
		handoff_dlq_action act = { .event_ids = ids + i,
					   .n_event_ids = k,
					   .limit = (uint32_t)k,
					   .dry_run = s->a->dry_run };
		handoff_dlq_result r;
		int rc = act_call(s, &act, &r);

		if (rc)
			return rc;
		handoff_dlq_result_free(&r);
		if (i + k < n)
			act_pace(s);
	}
	return 0;
}

static uint64_t max_id(const handoff_dlq_result *r)
{
	uint64_t m = 0;

	for (size_t i = 0; i < r->n_event_ids; i++)
		if (r->event_ids[i] > m)
			m = r->event_ids[i];
	return m;
}

static int act_on_filter(struct act *s)
{
	handoff_dlq_filter f = s->a->f;
	uint64_t limit = s->a->limit;

	while (!cli_stop_requested()) {
		uint32_t lim = chunk_size(s->a);
		handoff_dlq_action act = { .filter = &f,
					   .dry_run = s->a->dry_run,
					   .all = s->purge };
		handoff_dlq_result r;
		bool again;
		int rc;

		if (limit && limit - s->done < lim)
			lim = (uint32_t)(limit - s->done);
		act.limit = lim;
		if ((rc = act_call(s, &act, &r)))
			return rc;
		again = r.more && r.n_event_ids > 0 &&
			(!limit || s->done < limit);
		if (r.n_event_ids > 0)
			f.after_event_id = max_id(&r);
		handoff_dlq_result_free(&r);
		if (!again)
			break;
		act_pace(s);
	}
	return 0;
}

static void act_json(struct act *s)
{
	struct cli_json *j = &s->j;

	cli_json_init(j, stdout);
	cli_json_begin_object(j);
	cli_json_kv_str(j, "action", s->purge ? "purge" : "replay");
	cli_json_kv_bool(j, "dry_run", s->a->dry_run);
	cli_json_kv_u64(j, "count", s->done);
	cli_json_key(j, "event_ids");
	cli_json_begin_array(j);
	for (size_t i = 0; i < s->n_ids; i++)
		cli_json_u64(j, s->ids[i]);
	cli_json_end_array(j);
	cli_json_key(j, "missing");
	cli_json_begin_array(j);
	for (size_t i = 0; i < s->n_miss; i++)
		cli_json_u64(j, s->miss[i]);
	cli_json_end_array(j);
	cli_json_kv_bool(j, "interrupted", cli_stop_requested());
	cli_json_end_object(j);
	cli_json_newline(j);
}

static void act_summary(struct act *s)
{
	if (s->ctx->json) {
		act_json(s);
		return;
	}
	printf("%s%s %" PRIu64 "\n", s->a->dry_run ? "would " : "",
	       s->purge ? (s->a->dry_run ? "purge" : "purged") :
			  (s->a->dry_run ? "replay" : "replayed"),
	       s->done);
}

/* EVENT_ID operands into a new array. */
static int parse_ids(struct cli_ctx *ctx, int n, char **argv, uint64_t **out)
{
	uint64_t *ids = calloc((size_t)n + 1, sizeof(*ids));

	if (!ids) {
		cli_warn("out of memory");
		return CLI_EXIT_ERROR;
	}
	for (int i = 0; i < n; i++) {
		if (cli_parse_u64(argv[i], &ids[i]) || ids[i] == 0) {
			free(ids);
			return cli_usage(ctx, "invalid EVENT_ID '%s'", argv[i]);
		}
	}
	*out = ids;
	return 0;
}

static int act_check(struct cli_ctx *ctx, const struct act *s, size_t n_ids,
		     const char *sub)
{
	if (n_ids && (s->a->filtered || s->a->has_limit))
		return cli_usage(ctx, "give EVENT_IDs or filters/--limit, not "
				      "both");
	if (s->purge && s->a->yes && !s->a->dry_run && !s->a->why)
		return cli_usage(ctx, "say why you purge: --why TEXT (kept in "
				      "the broker's audit record)");
	if (!s->purge || s->a->yes || s->a->dry_run)
		return 0;
	if (!n_ids && !s->a->filtered)
		return cli_usage(ctx,
				 "this deletes ALL dead letters of '%s' "
				 "for good; add --yes to confirm (or "
				 "--dry-run to see them)",
				 sub);
	return cli_usage(ctx, "purged dead letters are gone for good; add "
			      "--yes to confirm (or --dry-run to see them)");
}

static int act_exit(const struct act *s, int rc)
{
	if (rc)
		return rc;
	if (cli_stop_requested()) {
		cli_warn("interrupted after %" PRIu64 " dead letter(s)",
			 s->done);
		return CLI_EXIT_PARTIAL;
	}
	if (s->missing)
		return s->done ? CLI_EXIT_PARTIAL : CLI_EXIT_NOTFOUND;
	return 0;
}

static int run_act(struct cli_ctx *ctx, int argc, char **argv, bool purge,
		   const struct option *opts)
{
	struct dlq_args a = { 0 };
	struct act s = { .ctx = ctx, .a = &a, .purge = purge };
	uint64_t *ids = NULL;
	size_t n_ids;
	int rc;

	if ((rc = dlq_parse(ctx, argc, argv, opts, &a)))
		return rc;
	s.sub = argv[optind];
	n_ids = (size_t)(argc - optind - 1);
	if ((rc = act_check(ctx, &s, n_ids, s.sub)))
		return rc;
	if ((rc = parse_ids(ctx, (int)n_ids, argv + optind + 1, &ids)))
		return rc;
	if ((rc = cli_connect(ctx)))
		goto out;
	cli_install_stop_handlers(false);
	s.started_ms = cli_mono_ms();
	rc = n_ids ? act_on_ids(&s, ids, n_ids) : act_on_filter(&s);
	if (!rc || s.done)
		act_summary(&s);
	rc = act_exit(&s, rc);
out:
	free(ids);
	free(s.ids);
	free(s.miss);
	return rc;
}

static const struct option replay_options[] = {
	DLQ_FILTER_OPTIONS,
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "why", required_argument, NULL, OPT_WHY },
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static int run_dlq_replay(struct cli_ctx *ctx, int argc, char **argv)
{
	return run_act(ctx, argc, argv, false, replay_options);
}

const struct cli_command cli_cmd_dlq_replay = {
	.name = "dlq replay",
	.summary = "make dead letters ready again",
	.help = "Usage: handoff dlq replay SUBSCRIPTION EVENT_ID...\n"
		"       handoff dlq replay SUBSCRIPTION [FILTERS] [--limit N]\n"
		"\n"
		"Make dead letters ready for delivery again, with a fresh attempt\n"
		"budget (their history is kept). With EVENT_IDs, those; else every\n"
		"dead letter matching the filters (all of them when none is given),\n"
		"at most --limit N. Prints each replayed id, then 'replayed N'.\n"
		"\n"
		"Options:\n"
		"  --dry-run   only show what would be replayed ('would replay N')\n"
		"  --rate N    replay at most N events per second\n"
		"  --why TEXT  the reason, kept in the broker's audit record\n"
		"  --limit N   replay at most N events in all\n"
		"\n" FILTER_HELP "\n"
		"Ids not in the queue are named on stderr; the exit code is then 9\n"
		"(3 when none of the ids was there). Interrupted: exit code 9.\n",
	.run = run_dlq_replay,
};

static const struct option purge_options[] = {
	DLQ_FILTER_OPTIONS,
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "yes", no_argument, NULL, OPT_YES },
	{ "why", required_argument, NULL, OPT_WHY },
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static int run_dlq_purge(struct cli_ctx *ctx, int argc, char **argv)
{
	return run_act(ctx, argc, argv, true, purge_options);
}

const struct cli_command cli_cmd_dlq_purge = {
	.name = "dlq purge",
	.summary = "delete dead letters for good",
	.help = "Usage: handoff dlq purge SUBSCRIPTION EVENT_ID... --yes\n"
		"       handoff dlq purge SUBSCRIPTION [FILTERS] [--limit N] --yes\n"
		"\n"
		"Delete dead letters for good: with EVENT_IDs, those; else every dead\n"
		"letter matching the filters, or ALL of them when no filter is given.\n"
		"Refuses to run without --yes (exit code 2) unless --dry-run.\n"
		"Prints 'purged N'.\n"
		"\n"
		"Options:\n"
		"  --yes       confirm\n"
		"  --why TEXT  the reason, kept in the broker's audit record (required)\n"
		"  --dry-run   list what would be purged ('would purge N')\n"
		"  --limit N   purge at most N dead letters\n"
		"\n" FILTER_HELP "\n"
		"Ids not in the queue are named on stderr; the exit code is then 9\n"
		"(3 when none of the ids was there).\n",
	.run = run_dlq_purge,
};
