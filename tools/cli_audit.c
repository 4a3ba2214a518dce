/*
 * cli_audit.c — `handoff audit`: the broker's durable record of operator
 * actions (replay, purge, unsubscribe): who, when, what, how many, why.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define PAGE 100u

enum { OPT_AFTER = OPT_LOCAL, OPT_LIMIT };

static const struct option audit_options[] = {
	CLI_GLOBAL_OPTIONS,
	{ "after", required_argument, NULL, OPT_AFTER },
	{ "limit", required_argument, NULL, OPT_LIMIT },
	{ NULL, 0, NULL, 0 },
};

static void record_json(struct cli_json *j, const handoff_audit_record *r)
{
	cli_json_begin_object(j);
	cli_json_kv_u64(j, "seq", r->seq);
	cli_json_kv_time(j, "at", r->at_ms);
	cli_json_kv_str(j, "key", r->key_id);
	cli_json_kv_str(j, "role", r->role);
	cli_json_kv_str(j, "action", r->action);
	cli_json_kv_str(j, "subscription", r->subscription);
	cli_json_kv_u64(j, "count", r->n_event_ids);
	cli_json_key(j, "event_ids");
	cli_json_begin_array(j);
	for (size_t i = 0; i < r->n_event_ids; i++)
		cli_json_u64(j, r->event_ids[i]);
	cli_json_end_array(j);
	cli_json_kv_str(j, "selector", r->selector);
	cli_json_kv_u64(j, "missing", r->missing);
	cli_json_kv_str(j, "reason", r->reason);
	cli_json_kv_str(j, "command_id", r->command_id);
	cli_json_end_object(j);
}

/* A free-text field readable on one line: as it is when it is one word,
 * else in double quotes (\" and \\ inside); control bytes and invalid
 * UTF-8 escaped as everywhere (\n, \xHH). */
static void put_text(FILE *f, const char *s)
{
	bool quote = !*s || strpbrk(s, " \t\"\\") != NULL;

	if (!quote) {
		cli_put_escaped_str(f, s, 0);
		return;
	}
	fputc('"', f);
	for (const char *q; (q = strchr(s, '"')) != NULL; s = q + 1) {
		cli_put_escaped(f, s, (size_t)(q - s), 0);
		fputs("\\\"", f);
	}
	cli_put_escaped_str(f, s, 0);
	fputc('"', f);
}

static void record_line(const handoff_audit_record *r)
{
	char t[CLI_FMT_MAX];
	printf("%" PRIu64 " %s %s key=", r->seq, cli_fmt_time(r->at_ms, t),
	       r->action);
	put_text(stdout, *r->key_id ? r->key_id : "-");
	printf(" role=%s subscription=", r->role);
	put_text(stdout, r->subscription);
	printf(" count=%zu missing=%" PRIu32 " reason=", r->n_event_ids,
	       r->missing);
	put_text(stdout, *r->reason ? r->reason : "-");
	printf(" selector=");
	put_text(stdout, r->selector);
	fputc('\n', stdout);
}

static int run_audit(struct cli_ctx *ctx, int argc, char **argv)
{
	uint64_t after = 0, limit = 0, shown = 0;
	struct cli_json j;
	int opt, rc;

	while ((opt = cli_getopt(ctx, argc, argv, audit_options, &rc)) > 0) {
		if (opt == OPT_AFTER &&
		    (rc = cli_opt_u64(ctx, "--after", optarg, &after)))
			return rc;
		if (opt == OPT_LIMIT &&
		    (rc = cli_opt_u64(ctx, "--limit", optarg, &limit)))
			return rc;
	}
	if (rc)
		return rc;
	if (optind != argc)
		return cli_usage(ctx, "takes no arguments");
	if ((rc = cli_connect(ctx)))
		return rc;
	if (ctx->json) {
		cli_json_init(&j, stdout);
		cli_json_begin_array(&j);
	}
	for (;;) {
		handoff_audit_record *v = NULL;
		size_t n = 0;
		bool more = false;
		uint32_t page = PAGE;
		if (limit && limit - shown < page)
			page = (uint32_t)(limit - shown);
		int err = handoff_audit_list(ctx->client, after, page, &v, &n,
					     &more);
		if (err) {
			if (ctx->json)
				cli_json_discard(&j); /* no half document */
			return cli_fail(ctx, err, "audit");
		}
		for (size_t i = 0; i < n; i++) {
			if (ctx->json)
				record_json(&j, &v[i]);
			else
				record_line(&v[i]);
			after = v[i].seq;
		}
		shown += n;
		handoff_audit_free(v, n);
		if (!more || n == 0 || (limit && shown >= limit))
			break;
	}
	if (ctx->json) {
		cli_json_end_array(&j);
		cli_json_newline(&j);
	}
	return 0;
}

const struct cli_command cli_cmd_audit = {
	.name = "audit",
	.summary = "operator actions on record (replay, purge, unsubscribe)",
	.help = "Usage: handoff audit [--after SEQ] [--limit N] [--json]\n"
		"\n"
		"List the broker's durable record of operator actions, oldest first:\n"
		"sequence, time (UTC), action, the key and role that ran it, the\n"
		"subscription, how many dead letters it affected and how many asked\n"
		"for were missing, the reason given (--why), and what was selected.\n"
		"Text with spaces is shown in double quotes (reason=\"smtp relay\n"
		"fixed\"), with \\\" and \\\\ inside. --json gives the fields exactly,\n"
		"and also every affected event id and the command id.\n"
		"\n"
		"Options:\n"
		"  --after SEQ   only records after this sequence number\n"
		"  --limit N     at most N records\n",
	.run = run_audit,
};
