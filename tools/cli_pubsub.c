/*
 * cli_pubsub.c — `handoff publish`, `subscribe`, `unsubscribe` and
 * `subscriptions`: the commands that put events in and manage who gets
 * them.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Largest payload read from stdin; the broker's own limit is lower. */
#define STDIN_CAP ((size_t)64 << 20)

/* ---- publish ----------------------------------------------------------- */

enum { OPT_KEY = OPT_LOCAL, OPT_IDEM, OPT_HEADER, OPT_AWAIT_ACKED };

static const struct option publish_options[] = {
	{ "key", required_argument, NULL, OPT_KEY },
	{ "await-acked", required_argument, NULL, OPT_AWAIT_ACKED },
	{ "idempotency-key", required_argument, NULL, OPT_IDEM },
	{ "header", required_argument, NULL, OPT_HEADER },
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

struct publish_args {
	handoff_event ev;
	handoff_header *headers; /* point into argv */
	size_t n_headers;
	unsigned char *stdin_buf; /* payload read from stdin, owned */
	bool await;		  /* --await-acked given */
	uint32_t await_ms;	  /* its timeout */
};

/* "NAME=VALUE": split in place (the string lives in argv). */
static int add_header(struct cli_ctx *ctx, struct publish_args *a, char *arg)
{
	char *eq = strchr(arg, '=');

	if (!eq || eq == arg)
		return cli_usage(ctx, "invalid --header '%s' (want NAME=VALUE)",
				 arg);
	*eq = '\0';
	a->headers[a->n_headers].name = arg;
	a->headers[a->n_headers].value = eq + 1;
	a->n_headers++;
	return 0;
}

static int publish_parse(struct cli_ctx *ctx, int argc, char **argv,
			 struct publish_args *a)
{
	int opt, rc;

	while ((opt = cli_getopt(ctx, argc, argv, publish_options, &rc)) > 0) {
		switch (opt) {
		case OPT_KEY:
			a->ev.key = optarg;
			break;
		case OPT_IDEM:
			if (!*optarg)
				return cli_usage(ctx,
						 "empty --idempotency-key");
			a->ev.idempotency_key = optarg;
			break;
		case OPT_HEADER:
			if ((rc = add_header(ctx, a, optarg)))
				return rc;
			break;
		case OPT_AWAIT_ACKED:
			if ((rc = cli_opt_duration(ctx, "--await-acked", optarg,
						   &a->await_ms)))
				return rc;
			a->await = true;
			break;
		}
	}
	return rc;
}

/* Payload: the DATA operand, or all of stdin for "-" or none. */
static int publish_payload(const char *data, struct publish_args *a)
{
	int err;

	if (data && strcmp(data, "-") != 0) {
		a->ev.payload = data;
		a->ev.payload_len = strlen(data);
		return 0;
	}
	if (isatty(STDIN_FILENO))
		fputs("handoff: reading the payload from stdin "
		      "(end with Ctrl-D)\n",
		      stderr);
	err = cli_read_all(STDIN_FILENO, STDIN_CAP, &a->stdin_buf,
			   &a->ev.payload_len);
	if (err == E2BIG) {
		cli_warn("publish: payload on stdin is larger than %zu MiB",
			 STDIN_CAP >> 20);
		return CLI_EXIT_FULL;
	}
	if (err) {
		cli_warn("publish: reading stdin: %s", strerror(err));
		return CLI_EXIT_ERROR;
	}
	a->ev.payload = a->stdin_buf;
	return 0;
}

/* aw: the completion receipt of --await-acked, else NULL. */
static int publish_print(const struct cli_ctx *ctx, uint64_t id, bool dup,
			 const handoff_await_reply *aw, uint32_t await_ms)
{
	if (ctx->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_begin_object(&j);
		cli_json_kv_u64(&j, "event_id", id);
		cli_json_kv_bool(&j, "duplicate", dup);
		if (aw) {
			cli_json_key(&j, "await");
			cli_await_json(&j, aw);
		}
		cli_json_end_object(&j);
		cli_json_newline(&j);
		return aw ? cli_await_exit_code(aw) : 0;
	}
	printf("%" PRIu64 "\n", id);
	if (dup)
		cli_warn("event %" PRIu64 " was already published with this "
			 "idempotency key; not stored again",
			 id);
	if (!aw)
		return 0;
	cli_await_text(aw, await_ms);
	return cli_await_exit_code(aw);
}

static int run_publish(struct cli_ctx *ctx, int argc, char **argv)
{
	struct publish_args a = { 0 };
	handoff_await_reply *aw = NULL;
	const char *topic;
	uint64_t id = 0;
	bool dup = false;
	int rc, err;

	a.headers = calloc((size_t)argc, sizeof(*a.headers));
	if (!a.headers) {
		cli_warn("publish: out of memory");
		return CLI_EXIT_ERROR;
	}
	rc = publish_parse(ctx, argc, argv, &a);
	if (rc)
		goto out;
	if (optind >= argc || argc - optind > 2) {
		rc = cli_usage(ctx, optind >= argc ? "missing TOPIC" :
						     "too many arguments");
		goto out;
	}
	topic = argv[optind];
	rc = publish_payload(optind + 1 < argc ? argv[optind + 1] : NULL, &a);
	if (rc)
		goto out;
	a.ev.headers = a.headers;
	a.ev.n_headers = a.n_headers;
	if ((rc = cli_connect(ctx)))
		goto out;
	err = handoff_publish(ctx->client, topic, &a.ev, 1, &id, &dup);
	if (err == HANDOFF_ENOSUBSCRIPTIONS) {
		/* The broker's text only says this again. */
		cli_warn("publish to '%s': topic has no subscriptions; "
			 "nothing stored",
			 topic);
		rc = cli_exit_code(err);
		goto out;
	}
	if (err) {
		rc = cli_fail(ctx, err, "publish to '%s'", topic);
		goto out;
	}
	if (a.await) {
		err = handoff_await(ctx->client, id, NULL, 0, a.await_ms, &aw);
		if (err) {
			/* The id first: the event is stored whatever the
			 * await says. */
			if (!ctx->json)
				printf("%" PRIu64 "\n", id);
			rc = cli_fail(ctx, err, "await event %" PRIu64, id);
			goto out;
		}
	}
	rc = publish_print(ctx, id, dup, aw, a.await_ms);
out:
	handoff_await_free(aw);
	free(a.stdin_buf);
	free(a.headers);
	return rc;
}

const struct cli_command cli_cmd_publish = {
	.name = "publish",
	.summary = "publish one event to a topic",
	.help = "Usage: handoff publish TOPIC [OPTIONS] [DATA|-]\n"
		"\n"
		"Publish one event. The payload is DATA, or all of stdin (binary-safe)\n"
		"when DATA is '-' or absent. The broker stores it durably for every\n"
		"subscription of TOPIC before it answers. Prints the event id.\n"
		"\n"
		"Options:\n"
		"  --key K              event key (shown to consumers)\n"
		"  --idempotency-key K  publishing again with the same key within the\n"
		"                       broker's dedup window returns the first event's\n"
		"                       id instead of storing a copy (default: random)\n"
		"  --header NAME=VALUE  add a header; repeatable\n"
		"  --await-acked DURATION  then wait up to DURATION until every\n"
		"                       subscription has acked the event, as\n"
		"                       'handoff await' does (at most the broker's\n"
		"                       max_wait, 60s by default)\n"
		"\n"
		"Output: the event id; with --json {\"event_id\":N,\"duplicate\":B}.\n"
		"With --await-acked also the receipt as 'handoff await' prints it\n"
		"(--json: under \"await\").\n"
		"Use '--' before a DATA that starts with '-'.\n"
		"Exit code 7 when TOPIC has no subscription (nothing is stored).\n"
		"With --await-acked: exit code 12 when a subscription dead-lettered\n"
		"it, 13 when not acked by all in time (the event is stored either\n"
		"way).\n",
	.run = run_publish,
};

/* ---- subscribe --------------------------------------------------------- */

enum {
	OPT_MAX_ATTEMPTS = OPT_LOCAL,
	OPT_ACK_DEADLINE,
	OPT_BACKOFF,
	OPT_PUSH,
	OPT_PUSH_TIMEOUT,
	OPT_PUSH_CONCURRENCY,
	OPT_PUSH_SECRET_FILE,
};

static const struct option subscribe_options[] = {
	{ "max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS },
	{ "ack-deadline", required_argument, NULL, OPT_ACK_DEADLINE },
	{ "backoff", required_argument, NULL, OPT_BACKOFF },
	{ "push", required_argument, NULL, OPT_PUSH },
	{ "push-timeout", required_argument, NULL, OPT_PUSH_TIMEOUT },
	{ "push-concurrency", required_argument, NULL, OPT_PUSH_CONCURRENCY },
	{ "push-secret-file", required_argument, NULL, OPT_PUSH_SECRET_FILE },
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

/* "MIN..MAX", e.g. "1s..1m". */
static int parse_backoff(struct cli_ctx *ctx, const char *arg,
			 handoff_policy *p)
{
	const char *dots = strstr(arg, "..");
	char lo[64];
	size_t n;

	if (!dots || (n = (size_t)(dots - arg)) == 0 || n >= sizeof(lo))
		goto bad;
	memcpy(lo, arg, n);
	lo[n] = '\0';
	if (cli_parse_duration32(lo, &p->backoff_min_ms) ||
	    cli_parse_duration32(dots + 2, &p->backoff_max_ms))
		goto bad;
	if (p->backoff_min_ms == 0 || p->backoff_min_ms > p->backoff_max_ms)
		return cli_usage(ctx, "--backoff '%s': want 0 < MIN <= MAX",
				 arg);
	return 0;
bad:
	return cli_usage(ctx,
			 "invalid --backoff '%s' (want MIN..MAX, e.g. "
			 "1s..1m)",
			 arg);
}

/* The secret file holds "whsec_" + base64 (and maybe a newline). The CLI
 * reads it and sends the secret: the broker may run on another host. */
static int read_push_secret(struct cli_ctx *ctx, const char *path, char *out,
			    size_t outlen)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return cli_usage(ctx, "--push-secret-file %s: %s", path,
				 strerror(errno));
	n = fread(out, 1, outlen - 1, f);
	fclose(f);
	out[n] = '\0';
	while (n > 0 &&
	       (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
		out[--n] = '\0';
	if (strncmp(out, "whsec_", 6) != 0 || n == outlen - 1)
		return cli_usage(ctx,
				 "--push-secret-file %s must hold whsec_ "
				 "followed by base64 (Standard Webhooks)",
				 path);
	return 0;
}

static int subscribe_parse(struct cli_ctx *ctx, int argc, char **argv,
			   handoff_policy *p, handoff_push_config *push,
			   char *secret, size_t secret_len)
{
	int opt, rc;

	while ((opt = cli_getopt(ctx, argc, argv, subscribe_options, &rc)) >
	       0) {
		switch (opt) {
		case OPT_MAX_ATTEMPTS:
			if ((rc = cli_opt_u32(ctx, "--max-attempts", optarg,
					      &p->max_attempts)))
				return rc;
			if (p->max_attempts == 0)
				return cli_usage(ctx, "--max-attempts must be "
						      "at least 1");
			break;
		case OPT_ACK_DEADLINE:
			if ((rc = cli_opt_duration(ctx, "--ack-deadline",
						   optarg,
						   &p->ack_deadline_ms)))
				return rc;
			if (p->ack_deadline_ms == 0)
				return cli_usage(ctx, "--ack-deadline must be "
						      "more than 0");
			break;
		case OPT_BACKOFF:
			if ((rc = parse_backoff(ctx, optarg, p)))
				return rc;
			break;
		case OPT_PUSH:
			push->url = optarg;
			break;
		case OPT_PUSH_TIMEOUT:
			if ((rc = cli_opt_duration(ctx, "--push-timeout",
						   optarg, &push->timeout_ms)))
				return rc;
			if (push->timeout_ms == 0)
				return cli_usage(ctx, "--push-timeout must be "
						      "more than 0");
			break;
		case OPT_PUSH_CONCURRENCY:
			if ((rc = cli_opt_u32(ctx, "--push-concurrency", optarg,
					      &push->concurrency)))
				return rc;
			if (push->concurrency == 0)
				return cli_usage(ctx, "--push-concurrency must "
						      "be at least 1");
			break;
		case OPT_PUSH_SECRET_FILE:
			if ((rc = read_push_secret(ctx, optarg, secret,
						   secret_len)))
				return rc;
			push->secret = secret;
			break;
		}
	}
	if (!rc && !push->url &&
	    (push->timeout_ms || push->concurrency || push->secret))
		return cli_usage(ctx, "--push-timeout, --push-concurrency and "
				      "--push-secret-file need --push URL");
	return rc;
}

static void subscribe_print(struct cli_ctx *ctx, const char *topic,
			    const char *name, bool created,
			    const handoff_policy *eff)
{
	if (ctx->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_begin_object(&j);
		cli_json_kv_str(&j, "subscription", name);
		cli_json_kv_str(&j, "topic", topic);
		cli_json_kv_bool(&j, "created", created);
		cli_json_kv_policy(&j, eff);
		cli_json_end_object(&j);
		cli_json_newline(&j);
		return;
	}
	fputs(created ? "created " : "exists ", stdout);
	cli_print_policy(stdout, eff);
	fputc('\n', stdout);
}

static int run_subscribe(struct cli_ctx *ctx, int argc, char **argv)
{
	handoff_policy p = { 0 }, eff = { 0 };
	handoff_push_config push = { 0 };
	char secret[512];
	bool created = false;
	int rc, err;

	rc = subscribe_parse(ctx, argc, argv, &p, &push, secret, sizeof secret);
	if (rc)
		return rc;
	if (argc - optind != 2)
		return cli_usage(ctx, "want TOPIC and SUBSCRIPTION");
	if ((rc = cli_connect(ctx)))
		return rc;
	err = handoff_subscribe_push(ctx->client, argv[optind],
				     argv[optind + 1], &p, &push, &created,
				     &eff);
	if (err)
		return cli_fail(ctx, err, "subscribe '%s' to '%s'",
				argv[optind + 1], argv[optind]);
	subscribe_print(ctx, argv[optind], argv[optind + 1], created, &eff);
	return 0;
}

const struct cli_command cli_cmd_subscribe = {
	.name = "subscribe",
	.summary = "create a subscription to a topic (idempotent)",
	.help = "Usage: handoff subscribe TOPIC SUBSCRIPTION [OPTIONS]\n"
		"\n"
		"Create SUBSCRIPTION on TOPIC: from now on every event published to\n"
		"TOPIC is queued for it. Running it again with the same topic and\n"
		"policy is fine ('exists'); another topic or policy is a conflict\n"
		"(exit code 4). Options left out take the broker's defaults.\n"
		"\n"
		"Options:\n"
		"  --max-attempts N        deliveries before an event is dead-lettered\n"
		"  --ack-deadline DURATION how long a consumer holds a lease\n"
		"  --backoff MIN..MAX      retry delay after a nack or expiry, doubling\n"
		"                          from MIN up to MAX (e.g. 1s..1m)\n"
		"  --push URL              a push subscription: the broker POSTs every\n"
		"                          event to URL (http or https) and acks it on\n"
		"                          a 2xx reply; everything else is a failed\n"
		"                          attempt under the policy above\n"
		"  --push-timeout DURATION per request (default 10s; shorter than the\n"
		"                          ack deadline)\n"
		"  --push-concurrency N    requests in flight at most (default 4)\n"
		"  --push-secret-file FILE sign requests (Standard Webhooks): FILE\n"
		"                          holds whsec_ + base64 of the key; read here\n"
		"                          and kept by the broker with the subscription\n"
		"\n"
		"Output: 'created' or 'exists' and the policy in force, e.g.\n"
		"  created max_attempts=5 ack_deadline=30s backoff=1s..1m\n",
	.run = run_subscribe,
};

/* ---- unsubscribe ------------------------------------------------------- */

enum { OPT_YES = OPT_LOCAL };

static const struct option unsubscribe_options[] = {
	{ "yes", no_argument, NULL, OPT_YES },
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static int run_unsubscribe(struct cli_ctx *ctx, int argc, char **argv)
{
	bool yes = false;
	const char *name;
	int opt, rc, err;

	while ((opt = cli_getopt(ctx, argc, argv, unsubscribe_options, &rc)) >
	       0)
		yes = true; /* OPT_YES is the only own option */
	if (rc)
		return rc;
	if (argc - optind != 1)
		return cli_usage(ctx, "want one SUBSCRIPTION");
	name = argv[optind];
	if (!yes)
		return cli_usage(ctx,
				 "this deletes '%s' with all its queued "
				 "events and dead letters; add --yes to "
				 "confirm",
				 name);
	if ((rc = cli_connect(ctx)))
		return rc;
	err = handoff_unsubscribe(ctx->client, name);
	if (err)
		return cli_fail(ctx, err, "unsubscribe '%s'", name);
	if (ctx->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_begin_object(&j);
		cli_json_kv_str(&j, "unsubscribed", name);
		cli_json_end_object(&j);
		cli_json_newline(&j);
	} else {
		fputs("unsubscribed ", stdout);
		cli_put_escaped_str(stdout, name, 0);
		fputc('\n', stdout);
	}
	return 0;
}

const struct cli_command cli_cmd_unsubscribe = {
	.name = "unsubscribe",
	.summary = "delete a subscription and everything queued for it",
	.help = "Usage: handoff unsubscribe SUBSCRIPTION --yes\n"
		"\n"
		"Delete SUBSCRIPTION with all its pending deliveries and dead\n"
		"letters. This cannot be undone, hence --yes (exit code 2 without).\n",
	.run = run_unsubscribe,
};

/* ---- subscriptions ----------------------------------------------------- */

static void subscriptions_json(const handoff_subscription_info *s, size_t n)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_begin_array(&j);
	for (size_t i = 0; i < n; i++) {
		cli_json_begin_object(&j);
		cli_json_kv_str(&j, "name", s[i].name);
		cli_json_kv_str(&j, "topic", s[i].topic);
		cli_json_kv_u64(&j, "ready", s[i].ready);
		cli_json_kv_u64(&j, "delayed", s[i].delayed);
		cli_json_kv_u64(&j, "leased", s[i].leased);
		cli_json_kv_u64(&j, "dead", s[i].dead);
		cli_json_kv_time(&j, "created", s[i].created_ms);
		cli_json_kv_policy(&j, &s[i].policy);
		cli_json_kv_pause(&j, &s[i].pause);
		if (s[i].push_url[0]) {
			cli_json_kv_str(&j, "push_url", s[i].push_url);
			cli_json_kv_str(&j, "push_state", s[i].push_state);
		}
		cli_json_end_object(&j);
	}
	cli_json_end_array(&j);
	cli_json_newline(&j);
}

static int push_table(const handoff_subscription_info *s, size_t n);

static int subscriptions_table(const handoff_subscription_info *s, size_t n)
{
	static const char *const head[] = {
		"NAME", "TOPIC",	"READY",	"DELAYED", "LEASED",
		"DEAD", "MAX_ATTEMPTS", "ACK_DEADLINE", "BACKOFF",
	};
	struct cli_table t;
	int rc;

	cli_table_init(&t, head, 9, 0xfcu); /* numbers right-aligned */
	for (size_t i = 0; i < n; i++) {
		char r[CLI_FMT_MAX], d[CLI_FMT_MAX], l[CLI_FMT_MAX],
			x[CLI_FMT_MAX], m[CLI_FMT_MAX], a[CLI_FMT_MAX],
			lo[CLI_FMT_MAX], hi[CLI_FMT_MAX], b[2 * CLI_FMT_MAX];
		const handoff_policy *p = &s[i].policy;

		snprintf(b, sizeof(b), "%s..%s",
			 cli_fmt_duration(p->backoff_min_ms, lo),
			 cli_fmt_duration(p->backoff_max_ms, hi));
		cli_table_add(
			&t, s[i].name, s[i].topic, cli_fmt_u64(s[i].ready, r),
			cli_fmt_u64(s[i].delayed, d),
			cli_fmt_u64(s[i].leased, l), cli_fmt_u64(s[i].dead, x),
			cli_fmt_u64(p->max_attempts, m),
			cli_fmt_duration(p->ack_deadline_ms, a), b);
	}
	rc = cli_table_print(&t, stdout, "");
	cli_table_free(&t);
	cli_print_pauses(stdout, s, n, sizeof(*s),
			 offsetof(handoff_subscription_info, name),
			 offsetof(handoff_subscription_info, pause));
	return rc ? rc : push_table(s, n);
}

/* Push subscriptions (if any) under the table: endpoint state and URL. */
static int push_table(const handoff_subscription_info *s, size_t n)
{
	static const char *const head[] = { "PUSH", "STATE", "URL" };
	struct cli_table t;
	size_t pushed = 0;
	int rc;

	for (size_t i = 0; i < n; i++)
		pushed += s[i].push_url[0] != '\0';
	if (!pushed)
		return 0;
	cli_table_init(&t, head, 3, 0);
	for (size_t i = 0; i < n; i++)
		if (s[i].push_url[0])
			cli_table_add(&t, s[i].name, s[i].push_state,
				      s[i].push_url);
	fputc('\n', stdout);
	rc = cli_table_print(&t, stdout, "");
	cli_table_free(&t);
	return rc;
}

static const struct option subscriptions_options[] = {
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static int run_subscriptions(struct cli_ctx *ctx, int argc, char **argv)
{
	handoff_subscription_info *s = NULL;
	size_t n = 0;
	int rc, err;

	while (cli_getopt(ctx, argc, argv, subscriptions_options, &rc) > 0)
		;
	if (rc)
		return rc;
	if (optind != argc)
		return cli_usage(ctx, "takes no arguments");
	if ((rc = cli_connect(ctx)))
		return rc;
	err = handoff_list_subscriptions(ctx->client, &s, &n);
	if (err)
		return cli_fail(ctx, err, "list subscriptions");
	if (ctx->json) {
		subscriptions_json(s, n);
	} else if (n == 0) {
		fputs("(no subscriptions)\n", stderr);
	} else if (subscriptions_table(s, n)) {
		cli_warn("subscriptions: out of memory");
		rc = CLI_EXIT_ERROR;
	}
	handoff_subscriptions_free(s, n);
	return rc;
}

const struct cli_command cli_cmd_subscriptions = {
	.name = "subscriptions",
	.summary = "list subscriptions with queue depths and policy",
	.help = "Usage: handoff subscriptions [--json]\n"
		"\n"
		"List every subscription: its topic; how many deliveries are ready\n"
		"(due now), delayed (waiting for a retry time), leased (held by a\n"
		"consumer) and dead (in the dead-letter queue); and its policy.\n"
		"Paused subscriptions are listed below the table with why, by whom\n"
		"and since when. With --json, an array of objects.\n",
	.run = run_subscriptions,
};

/* ---- pause, resume ----------------------------------------------------- */

enum { OPT_WHY = OPT_LOCAL };

static const struct option pause_options[] = {
	{ "why", required_argument, NULL, OPT_WHY },
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static const struct option resume_options[] = {
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static void pause_result(struct cli_ctx *ctx, const char *name, bool paused,
			 bool changed)
{
	if (ctx->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_begin_object(&j);
		cli_json_kv_str(&j, "subscription", name);
		cli_json_kv_bool(&j, "paused", paused);
		cli_json_kv_bool(&j, "changed", changed);
		cli_json_end_object(&j);
		cli_json_newline(&j);
		return;
	}
	fputs(paused ? "paused " : "resumed ", stdout);
	cli_put_escaped_str(stdout, name, 0);
	fputs(changed ? "\n" :
			(paused ? " (it was paused already)\n" :
				  " (it was not paused)\n"),
	      stdout);
}

static int run_pause(struct cli_ctx *ctx, int argc, char **argv)
{
	const char *why = NULL, *name;
	bool changed = false;
	int opt, rc, err;

	while ((opt = cli_getopt(ctx, argc, argv, pause_options, &rc)) > 0)
		why = optarg; /* OPT_WHY is the only own option */
	if (rc)
		return rc;
	if (argc - optind != 1)
		return cli_usage(ctx, "want one SUBSCRIPTION");
	if (!why || !*why)
		return cli_usage(ctx, "--why TEXT is required: it goes on "
				      "record in the audit log");
	name = argv[optind];
	if ((rc = cli_connect(ctx)))
		return rc;
	err = handoff_pause(ctx->client, name, why, &changed);
	if (err)
		return cli_fail(ctx, err, "pause '%s'", name);
	pause_result(ctx, name, true, changed);
	return 0;
}

static int run_resume(struct cli_ctx *ctx, int argc, char **argv)
{
	const char *name;
	bool changed = false;
	int rc, err;

	while (cli_getopt(ctx, argc, argv, resume_options, &rc) > 0)
		;
	if (rc)
		return rc;
	if (argc - optind != 1)
		return cli_usage(ctx, "want one SUBSCRIPTION");
	name = argv[optind];
	if ((rc = cli_connect(ctx)))
		return rc;
	err = handoff_resume(ctx->client, name, &changed);
	if (err)
		return cli_fail(ctx, err, "resume '%s'", name);
	pause_result(ctx, name, false, changed);
	return 0;
}

const struct cli_command cli_cmd_pause = {
	.name = "pause",
	.summary = "stop delivering from a subscription (it keeps receiving)",
	.help = "Usage: handoff pause SUBSCRIPTION --why TEXT\n"
		"\n"
		"Pause SUBSCRIPTION (an operator command, recorded in the audit\n"
		"log with TEXT). It still receives every event published to its\n"
		"topic, but nothing is delivered from it until `handoff resume`:\n"
		"fetches get nothing (consume keeps waiting), leases already out\n"
		"may still be acked, a lease whose ack deadline passes is put back\n"
		"without spending an attempt, and nothing is dead-lettered by\n"
		"expiry. The pause survives broker restarts. Pausing a paused\n"
		"subscription changes nothing.\n",
	.run = run_pause,
};

const struct cli_command cli_cmd_resume = {
	.name = "resume",
	.summary = "deliver from a paused subscription again",
	.help = "Usage: handoff resume SUBSCRIPTION\n"
		"\n"
		"Resume a paused SUBSCRIPTION (an operator command, audited): its\n"
		"backlog is deliverable at once. Resuming a running one changes\n"
		"nothing.\n",
	.run = run_resume,
};
