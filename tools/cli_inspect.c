/*
 * cli_inspect.c — `handoff trace` and `handoff stats`: read-only views of
 * where one event is, and of the broker's counters.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const struct option plain_options[] = {
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

/* ---- trace ------------------------------------------------------------- */

static void trace_sub_json(struct cli_json *j,
			   const handoff_subscription_trace *s)
{
	cli_json_begin_object(j);
	cli_json_kv_str(j, "subscription", s->subscription);
	cli_json_kv_str(j, "state", handoff_state_name(s->state));
	cli_json_kv_str(j, "consumer", s->consumer);
	cli_json_kv_time(j, "lease_deadline", s->lease_deadline_ms);
	cli_json_kv_time(j, "due", s->due_ms);
	cli_json_kv_time(j, "done", s->done_ms);
	cli_json_kv_str(j, "dead_reason",
			s->state == HANDOFF_STATE_DEAD ?
				handoff_dead_reason_name(s->dead_reason) :
				NULL);
	cli_json_kv_str(j, "error", s->error);
	cli_json_kv_u64(j, "replays", s->replays);
	cli_json_kv_bool(j, "paused", s->paused);
	cli_json_kv_history(j, s->history, s->n_history);
	cli_json_end_object(j);
}

static void trace_json(const handoff_trace *t)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_begin_object(&j);
	cli_json_kv_u64(&j, "event_id", t->event_id);
	cli_json_kv_str(&j, "topic", t->topic);
	cli_json_kv_str(&j, "key", t->key);
	cli_json_kv_str(&j, "idempotency_key", t->idempotency_key);
	cli_json_kv_time(&j, "published", t->published_ms);
	/* Not "payload_bytes": elsewhere that is the payload alone. */
	cli_json_kv_u64(&j, "stored_bytes", t->payload_bytes);
	cli_json_kv_bool(&j, "payload_removed", t->payload_removed);
	cli_json_kv_bool(&j, "corrupt", t->corrupt);
	cli_json_key(&j, "subscriptions");
	cli_json_begin_array(&j);
	for (size_t i = 0; i < t->n_subscriptions; i++)
		trace_sub_json(&j, &t->subscriptions[i]);
	cli_json_end_array(&j);
	cli_json_end_object(&j);
	cli_json_newline(&j);
}

static void field(const char *name, const char *value)
{
	printf("%-16s ", name);
	cli_put_escaped_str(stdout, value && *value ? value : "-", 0);
	fputc('\n', stdout);
}

/* " name=VALUE" for a non-empty value. */
static void attr(const char *name, const char *value)
{
	if (!value || !*value)
		return;
	printf(" %s=", name);
	cli_put_escaped_str(stdout, value, CLI_ESC_SPACE);
}

static void attr_time(const char *name, uint64_t ms)
{
	char b[CLI_FMT_MAX];

	if (ms)
		attr(name, cli_fmt_time(ms, b));
}

static int trace_sub_text(const handoff_subscription_trace *s)
{
	int st = s->state;
	char b[CLI_FMT_MAX];

	fputs("\nsubscription ", stdout);
	cli_put_escaped_str(stdout, s->subscription, CLI_ESC_SPACE);
	printf(": state=%s", handoff_state_name(st));
	if (st == HANDOFF_STATE_LEASED) {
		attr("consumer", s->consumer);
		attr_time("lease_deadline", s->lease_deadline_ms);
	}
	if (st == HANDOFF_STATE_READY || st == HANDOFF_STATE_DELAYED)
		attr_time("due", s->due_ms);
	if (st == HANDOFF_STATE_ACKED || st == HANDOFF_STATE_PURGED ||
	    st == HANDOFF_STATE_UNSUBSCRIBED)
		attr_time("done", s->done_ms);
	if (st == HANDOFF_STATE_DEAD)
		attr("reason", handoff_dead_reason_name(s->dead_reason));
	if (s->replays)
		attr("replays", cli_fmt_u64(s->replays, b));
	if (s->paused)
		fputs(" (subscription paused)", stdout);
	if (s->error && *s->error) {
		fputs(" error=", stdout);
		cli_put_escaped_str(stdout, s->error, 0);
	}
	fputc('\n', stdout);
	if (!s->n_history)
		return 0;
	return cli_print_history(stdout, s->history, s->n_history, "  ");
}

static int trace_text(const handoff_trace *t)
{
	char b[CLI_FMT_MAX], p[CLI_FMT_MAX + 96];
	int rc = 0;

	field("event_id:", cli_fmt_u64(t->event_id, b));
	field("topic:", t->topic);
	field("key:", t->key);
	field("published:", cli_fmt_time(t->published_ms, b));
	/* The stored record: payload and headers, encoded. The payload alone
	 * (consume, dlq show) is smaller; don't call this "payload". */
	snprintf(p, sizeof(p), "%" PRIu64 " bytes, payload and headers%s",
		 t->payload_bytes,
		 t->payload_removed ? " (removed: every subscription is done)" :
				      "");
	field("stored:", p);
	field("idempotency_key:", t->idempotency_key);
	if (t->corrupt)
		field("corrupt:",
		      "yes (the stored record failed its checksum)");
	for (size_t i = 0; i < t->n_subscriptions && !rc; i++)
		rc = trace_sub_text(&t->subscriptions[i]);
	if (!t->n_subscriptions)
		fputs("\n(no subscription holds this event)\n", stdout);
	return rc;
}

static int run_trace(struct cli_ctx *ctx, int argc, char **argv)
{
	handoff_trace *t = NULL;
	uint64_t id;
	int rc, err;

	while (cli_getopt(ctx, argc, argv, plain_options, &rc) > 0)
		;
	if (rc)
		return rc;
	if (argc - optind != 1)
		return cli_usage(ctx, "want one EVENT_ID");
	if (cli_parse_u64(argv[optind], &id) || id == 0)
		return cli_usage(ctx, "invalid EVENT_ID '%s'", argv[optind]);
	if ((rc = cli_connect(ctx)))
		return rc;
	err = handoff_trace_event(ctx->client, id, &t);
	if (err)
		return cli_fail(ctx, err, "trace event %" PRIu64, id);
	if (ctx->json)
		trace_json(t);
	else if (trace_text(t))
		rc = CLI_EXIT_ERROR;
	handoff_trace_free(t);
	return rc;
}

const struct cli_command cli_cmd_trace = {
	.name = "trace",
	.summary = "show where one event is, per subscription",
	.help = "Usage: handoff trace EVENT_ID\n"
		"\n"
		"Show an event's topic, key, publish time, stored size (payload and\n"
		"headers as the broker stores them, so more than the payload alone\n"
		"that consume and dlq show count; --json: stored_bytes) and whether\n"
		"it was already removed, idempotency key; then for every\n"
		"subscription its state (ready, delayed, leased, acked, dead, purged,\n"
		"unsubscribed) with the consumer and lease deadline when leased, the\n"
		"due time when waiting, the done time when acked or purged, the dead\n"
		"reason and last error, and the attempt history.\n"
		"Exit code 3 when the broker has no record of the event.\n",
	.run = run_trace,
};

/* ---- stats ------------------------------------------------------------- */

static void stats_json(const handoff_stats *s)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_begin_object(&j);
	cli_json_kv_str(&j, "version", s->version);
	cli_json_kv_u64(&j, "uptime_ms", s->uptime_ms);
	cli_json_kv_u64(&j, "events_stored", s->events_stored);
	cli_json_kv_u64(&j, "store_used_bytes", s->store_used_bytes);
	cli_json_kv_u64(&j, "store_map_bytes", s->store_map_bytes);
	cli_json_kv_u64(&j, "held_fetches", s->held_fetches);
	cli_json_kv_u64(&j, "held_awaits", s->held_awaits);
	cli_json_key(&j, "topics");
	cli_json_begin_array(&j);
	for (size_t i = 0; i < s->n_topics; i++) {
		const handoff_topic_stats *t = &s->topics[i];

		cli_json_begin_object(&j);
		cli_json_kv_str(&j, "name", t->name);
		cli_json_kv_u64(&j, "published", t->published);
		cli_json_kv_double(&j, "publish_rate", t->publish_rate);
		cli_json_kv_u64(&j, "subscriptions", t->subscriptions);
		cli_json_end_object(&j);
	}
	cli_json_end_array(&j);
	cli_json_key(&j, "subscriptions");
	cli_json_begin_array(&j);
	for (size_t i = 0; i < s->n_subscriptions; i++) {
		const handoff_subscription_stats *u = &s->subscriptions[i];

		cli_json_begin_object(&j);
		cli_json_kv_str(&j, "name", u->name);
		cli_json_kv_str(&j, "topic", u->topic);
		cli_json_kv_u64(&j, "ready", u->ready);
		cli_json_kv_u64(&j, "delayed", u->delayed);
		cli_json_kv_u64(&j, "leased", u->leased);
		cli_json_kv_u64(&j, "dead", u->dead);
		cli_json_kv_u64(&j, "delivered", u->delivered);
		cli_json_kv_u64(&j, "acked", u->acked);
		cli_json_kv_u64(&j, "nacked", u->nacked);
		cli_json_kv_u64(&j, "expired", u->expired);
		cli_json_kv_u64(&j, "dead_lettered", u->dead_lettered);
		cli_json_kv_u64(&j, "replayed", u->replayed);
		cli_json_kv_u64(&j, "purged", u->purged);
		cli_json_kv_double(&j, "ack_rate", u->ack_rate);
		cli_json_kv_double(&j, "deliver_rate", u->deliver_rate);
		cli_json_kv_pause(&j, &u->pause);
		if (u->push_url[0]) {
			cli_json_kv_str(&j, "push_url", u->push_url);
			cli_json_kv_str(&j, "push_state", u->push_state);
			cli_json_kv_str(&j, "push_last_error",
					u->push_last_error);
		}
		cli_json_end_object(&j);
	}
	cli_json_end_array(&j);
	cli_json_end_object(&j);
	cli_json_newline(&j);
}

static void stats_header(const handoff_stats *s)
{
	char a[CLI_FMT_MAX], b[CLI_FMT_MAX], u[CLI_FMT_MAX];

	field("version:", s->version);
	field("uptime:", cli_fmt_uptime(s->uptime_ms, u));
	printf("%-16s %" PRIu64 "\n", "events stored:", s->events_stored);
	printf("%-16s %s used of %s",
	       "store:", cli_fmt_bytes(s->store_used_bytes, a),
	       cli_fmt_bytes(s->store_map_bytes, b));
	if (s->store_map_bytes)
		printf(" (%.1f%%)", 100.0 * (double)s->store_used_bytes /
					    (double)s->store_map_bytes);
	printf("\n%-16s %" PRIu64 "\n", "held fetches:", s->held_fetches);
	printf("%-16s %" PRIu64 "\n", "held awaits:", s->held_awaits);
}

static int stats_topics(const handoff_stats *s)
{
	static const char *const head[] = { "TOPIC", "PUBLISHED", "RATE/S",
					    "SUBSCRIPTIONS" };
	struct cli_table t;
	int rc;

	cli_table_init(&t, head, 4, 0xeu);
	for (size_t i = 0; i < s->n_topics; i++) {
		const handoff_topic_stats *x = &s->topics[i];
		char p[CLI_FMT_MAX], r[CLI_FMT_MAX], n[CLI_FMT_MAX];

		cli_table_add(&t, x->name, cli_fmt_u64(x->published, p),
			      cli_fmt_double(x->publish_rate, r),
			      cli_fmt_u64(x->subscriptions, n));
	}
	fputc('\n', stdout);
	rc = cli_table_print(&t, stdout, "");
	cli_table_free(&t);
	return rc;
}

/* Push endpoints (if any): state, URL and last failure. */
static int stats_push(const handoff_stats *s)
{
	static const char *const head[] = { "PUSH", "STATE", "URL",
					    "LAST_ERROR" };
	struct cli_table t;
	size_t pushed = 0;
	int rc;

	for (size_t i = 0; i < s->n_subscriptions; i++)
		pushed += s->subscriptions[i].push_url[0] != '\0';
	if (!pushed)
		return 0;
	cli_table_init(&t, head, 4, 0);
	for (size_t i = 0; i < s->n_subscriptions; i++) {
		const handoff_subscription_stats *u = &s->subscriptions[i];
		if (u->push_url[0])
			cli_table_add(&t, u->name, u->push_state, u->push_url,
				      u->push_last_error[0] ?
					      u->push_last_error :
					      "-");
	}
	fputc('\n', stdout);
	rc = cli_table_print(&t, stdout, "");
	cli_table_free(&t);
	return rc;
}

static int stats_subscriptions(const handoff_stats *s)
{
	static const char *const head[] = {
		"SUBSCRIPTION",	 "TOPIC",     "READY",	"DELAYED", "LEASED",
		"DEAD",		 "DELIVERED", "ACKED",	"NACKED",  "EXPIRED",
		"DEAD_LETTERED", "REPLAYED",  "PURGED", "ACK/S",
	};
	struct cli_table t;
	int rc;

	cli_table_init(&t, head, 14, 0x3ffcu);
	for (size_t i = 0; i < s->n_subscriptions; i++) {
		const handoff_subscription_stats *u = &s->subscriptions[i];
		char c[12][CLI_FMT_MAX];

		cli_table_add(&t, u->name, u->topic,
			      cli_fmt_u64(u->ready, c[0]),
			      cli_fmt_u64(u->delayed, c[1]),
			      cli_fmt_u64(u->leased, c[2]),
			      cli_fmt_u64(u->dead, c[3]),
			      cli_fmt_u64(u->delivered, c[4]),
			      cli_fmt_u64(u->acked, c[5]),
			      cli_fmt_u64(u->nacked, c[6]),
			      cli_fmt_u64(u->expired, c[7]),
			      cli_fmt_u64(u->dead_lettered, c[8]),
			      cli_fmt_u64(u->replayed, c[9]),
			      cli_fmt_u64(u->purged, c[10]),
			      cli_fmt_double(u->ack_rate, c[11]));
	}
	fputc('\n', stdout);
	rc = cli_table_print(&t, stdout, "");
	cli_table_free(&t);
	cli_print_pauses(stdout, s->subscriptions, s->n_subscriptions,
			 sizeof(*s->subscriptions),
			 offsetof(handoff_subscription_stats, name),
			 offsetof(handoff_subscription_stats, pause));
	return rc ? rc : stats_push(s);
}

static int run_stats(struct cli_ctx *ctx, int argc, char **argv)
{
	handoff_stats *s = NULL;
	int rc, err;

	while (cli_getopt(ctx, argc, argv, plain_options, &rc) > 0)
		;
	if (rc)
		return rc;
	if (optind != argc)
		return cli_usage(ctx, "takes no arguments");
	if ((rc = cli_connect(ctx)))
		return rc;
	err = handoff_get_stats(ctx->client, &s);
	if (err)
		return cli_fail(ctx, err, "stats");
	if (ctx->json) {
		stats_json(s);
	} else {
		stats_header(s);
		if ((s->n_topics && stats_topics(s)) ||
		    (s->n_subscriptions && stats_subscriptions(s))) {
			cli_warn("stats: out of memory");
			rc = CLI_EXIT_ERROR;
		}
	}
	handoff_stats_free(s);
	return rc;
}

const struct cli_command cli_cmd_stats = {
	.name = "stats",
	.summary = "broker, topic and subscription counters",
	.help = "Usage: handoff stats [--json]\n"
		"\n"
		"Show the broker's version, uptime, events stored and store space;\n"
		"per topic the events published, the publish rate (events/s over\n"
		"the last minute) and the number of subscriptions; per subscription\n"
		"the queue (ready, delayed, leased, dead), the counters since the\n"
		"broker started (delivered, acked, nacked, expired, dead-lettered,\n"
		"replayed, purged) and the ack rate (acks/s over the last minute).\n",
	.run = run_stats,
};
