/*
 * cli_await.c — `handoff await`: a completion receipt, waiting until the
 * subscriptions of an event have acked it; also used by
 * `handoff publish --await-acked`.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { OPT_SUBS = OPT_LOCAL, OPT_WAIT };

/* "--timeout" comes before the global one: getopt_long takes the first
 * exact match, so here it is the await's own timeout. */
static const struct option await_options[] = {
	{ "subscriptions", required_argument, NULL, OPT_SUBS },
	{ "timeout", required_argument, NULL, OPT_WAIT },
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static void await_state_json(struct cli_json *j, const handoff_await_state *s)
{
	cli_json_begin_object(j);
	cli_json_kv_str(j, "subscription", s->subscription);
	cli_json_kv_str(j, "state", handoff_state_name(s->state));
	cli_json_kv_u64(j, "attempts", s->attempts);
	cli_json_kv_str(j, "dead_reason",
			s->state == HANDOFF_STATE_DEAD ?
				handoff_dead_reason_name(s->dead_reason) :
				NULL);
	cli_json_kv_str(j, "error", s->error);
	cli_json_kv_str(j, "consumer", s->consumer);
	cli_json_kv_time(j, "done", s->done_ms);
	cli_json_kv_time(j, "dead", s->dead_ms);
	cli_json_kv_bool(j, "paused", s->paused);
	cli_json_end_object(j);
}

void cli_await_json(struct cli_json *j, const handoff_await_reply *r)
{
	cli_json_begin_object(j);
	cli_json_kv_u64(j, "event_id", r->event_id);
	cli_json_kv_str(j, "topic", r->topic);
	cli_json_kv_str(j, "result", handoff_await_result_name(r->result));
	cli_json_kv_str(j, "message", r->message);
	cli_json_key(j, "subscriptions");
	cli_json_begin_array(j);
	for (size_t i = 0; i < r->n_subscriptions; i++)
		await_state_json(j, &r->subscriptions[i]);
	cli_json_end_array(j);
	cli_json_end_object(j);
}

static void await_state_text(const handoff_await_state *s)
{
	char b[CLI_FMT_MAX];

	fputs("  ", stdout);
	cli_put_escaped_str(stdout, s->subscription, CLI_ESC_SPACE);
	printf(": state=%s attempts=%" PRIu32, handoff_state_name(s->state),
	       s->attempts);
	if (s->state == HANDOFF_STATE_LEASED && s->consumer[0]) {
		fputs(" consumer=", stdout);
		cli_put_escaped_str(stdout, s->consumer, CLI_ESC_SPACE);
	}
	if (s->state == HANDOFF_STATE_DEAD)
		printf(" reason=%s dead=%s",
		       handoff_dead_reason_name(s->dead_reason),
		       cli_fmt_time(s->dead_ms, b));
	if (s->done_ms)
		printf(" done=%s", cli_fmt_time(s->done_ms, b));
	if (s->paused)
		fputs(" (subscription paused)", stdout);
	if (s->error[0] && s->state != HANDOFF_STATE_ACKED) {
		fputs(" error=", stdout);
		cli_put_escaped_str(stdout, s->error, 0);
	}
	fputc('\n', stdout);
}

void cli_await_text(const handoff_await_reply *r, uint32_t timeout_ms)
{
	char b[CLI_FMT_MAX];

	printf("event %" PRIu64 " (topic ", r->event_id);
	cli_put_escaped_str(stdout, r->topic, CLI_ESC_SPACE);
	fputs("): ", stdout);
	switch (r->result) {
	case HANDOFF_AWAIT_ACKED:
		printf("acked by %s%zu subscription%s\n",
		       r->n_subscriptions > 1 ? "all " : "", r->n_subscriptions,
		       r->n_subscriptions == 1 ? "" : "s");
		break;
	case HANDOFF_AWAIT_DEAD_LETTERED:
		cli_put_escaped_str(stdout, r->message, 0);
		fputc('\n', stdout);
		break;
	default:
		printf("not acked by all within %s\n",
		       cli_fmt_duration(timeout_ms, b));
		break;
	}
	for (size_t i = 0; i < r->n_subscriptions; i++)
		await_state_text(&r->subscriptions[i]);
}

int cli_await_exit_code(const handoff_await_reply *r)
{
	switch (r->result) {
	case HANDOFF_AWAIT_ACKED:
		return CLI_EXIT_OK;
	case HANDOFF_AWAIT_DEAD_LETTERED:
		return CLI_EXIT_DEADLETTERED;
	case HANDOFF_AWAIT_TIMED_OUT:
		return CLI_EXIT_NOTACKED;
	default:
		return CLI_EXIT_ERROR;
	}
}

/* "a,b,c": split in place (the string lives in argv). */
static int split_subs(struct cli_ctx *ctx, char *arg, const char ***subs,
		      size_t *n)
{
	size_t cap = 1;

	for (const char *p = arg; *p; p++)
		cap += *p == ',';
	free(*subs);
	*subs = calloc(cap, sizeof(**subs));
	*n = 0;
	if (!*subs) {
		cli_warn("await: out of memory");
		return CLI_EXIT_ERROR;
	}
	for (char *tok = arg, *next; tok; tok = next) {
		next = strchr(tok, ',');
		if (next)
			*next++ = '\0';
		if (!*tok)
			return cli_usage(ctx, "empty name in --subscriptions");
		(*subs)[(*n)++] = tok;
	}
	return 0;
}

static int run_await(struct cli_ctx *ctx, int argc, char **argv)
{
	const char **subs = NULL;
	size_t n_subs = 0;
	uint32_t timeout_ms = 30000;
	handoff_await_reply *r = NULL;
	uint64_t id;
	int opt, rc, err;

	while ((opt = cli_getopt(ctx, argc, argv, await_options, &rc)) > 0) {
		switch (opt) {
		case OPT_SUBS:
			rc = split_subs(ctx, optarg, &subs, &n_subs);
			break;
		case OPT_WAIT:
			rc = cli_opt_duration(ctx, "--timeout", optarg,
					      &timeout_ms);
			break;
		}
		if (rc)
			break;
	}
	if (rc)
		goto out;
	if (argc - optind != 1) {
		rc = cli_usage(ctx, "want one EVENT_ID");
		goto out;
	}
	if (cli_parse_u64(argv[optind], &id) || id == 0) {
		rc = cli_usage(ctx, "invalid EVENT_ID '%s'", argv[optind]);
		goto out;
	}
	if ((rc = cli_connect(ctx)))
		goto out;
	err = handoff_await(ctx->client, id, subs, n_subs, timeout_ms, &r);
	if (err) {
		rc = cli_fail(ctx, err, "await event %" PRIu64, id);
		goto out;
	}
	if (ctx->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_await_json(&j, r);
		cli_json_newline(&j);
	} else {
		cli_await_text(r, timeout_ms);
	}
	rc = cli_await_exit_code(r);
out:
	handoff_await_free(r);
	free(subs);
	return rc;
}

const struct cli_command cli_cmd_await = {
	.name = "await",
	.summary = "wait until an event's subscriptions have acked it",
	.help = "Usage: handoff await EVENT_ID [--subscriptions A,B] "
		"[--timeout DURATION]\n"
		"\n"
		"A completion receipt: wait until every subscription the event was\n"
		"delivered to (or the ones named) has acked it. The broker holds the\n"
		"request and answers as soon as the last ack is committed; at once when\n"
		"one of them dead-letters it (saying which and why; also when it was\n"
		"purged from the dead letters or its subscription deleted); and at the\n"
		"timeout with each subscription's state. Across a broker restart the\n"
		"request is sent again and waits afresh.\n"
		"\n"
		"Options:\n"
		"  --subscriptions A,B  await only these (each must have been\n"
		"                       delivered the event)\n"
		"  --timeout DURATION   how long to wait (default 30s; 0: answer at\n"
		"                       once; at most the broker's max_wait, 60s by\n"
		"                       default). Here it is the await's timeout; the\n"
		"                       call's deadline is the default 10s plus it.\n"
		"\n"
		"Output: the result and one line per subscription (state, attempts,\n"
		"dead reason and error); with --json {\"event_id\":N,\"topic\":T,\n"
		"\"result\":\"acked\"|\"dead_lettered\"|\"timed_out\",\"message\":M,\n"
		"\"subscriptions\":[{\"subscription\",\"state\",\"attempts\",...}]}.\n"
		"Exit codes: 0 all acked, 12 dead-lettered (or purged, or\n"
		"unsubscribed) by one, 13 timed out (not acked by all in time),\n"
		"3 no such event (never published, or past the history period: the\n"
		"message says which); the other codes as for every command.\n",
	.run = run_await,
};
