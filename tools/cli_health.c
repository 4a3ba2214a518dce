/*
 * cli_health.c — `handoff health`: the broker's liveness and readiness, for
 * platforms that probe with a command. The exit code is the answer (see
 * the command's help and cli.h); the output is for people and logs.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct option health_options[] = {
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static void health_json(const handoff_health *h, bool reachable,
			const char *error)
{
	struct cli_json j;

	cli_json_init(&j, stdout);
	cli_json_begin_object(&j);
	cli_json_kv_bool(&j, "reachable", reachable);
	cli_json_kv_bool(&j, "live", h && h->live);
	cli_json_kv_bool(&j, "ready", h && h->ready);
	if (h) {
		cli_json_kv_str(&j, "reason", h->reason);
		cli_json_kv_bool(&j, "store_open", h->store_open);
		cli_json_kv_bool(&j, "recovered", h->recovered);
		cli_json_kv_bool(&j, "storage_full", h->storage_full);
		cli_json_kv_bool(&j, "stopping", h->stopping);
		cli_json_kv_u64(&j, "loop_age_ms", h->loop_age_ms);
		cli_json_kv_u64(&j, "recovered_leases", h->recovered_leases);
		cli_json_kv_str(&j, "version", h->version);
	} else {
		cli_json_kv_str(&j, "reason", error);
	}
	cli_json_end_object(&j);
	cli_json_newline(&j);
}

static int health_exit(const handoff_health *h)
{
	if (!h->live)
		return CLI_EXIT_NOTLIVE;
	return h->ready ? CLI_EXIT_OK : CLI_EXIT_NOTREADY;
}

static int run_health(struct cli_ctx *ctx, int argc, char **argv)
{
	handoff_health *h = NULL;
	int rc, err;

	while (cli_getopt(ctx, argc, argv, health_options, &rc) > 0)
		;
	if (rc)
		return rc;
	if (optind != argc)
		return cli_usage(ctx, "takes no arguments");
	if ((rc = cli_connect(ctx))) {
		if (ctx->json)
			health_json(NULL, false, "no answer from the broker");
		return rc;
	}
	err = handoff_get_health(ctx->client, &h);
	if (err) {
		if (ctx->json)
			health_json(NULL, false, handoff_strerror(err));
		return cli_fail(ctx, err, "health");
	}
	if (ctx->json) {
		health_json(h, true, NULL);
	} else {
		printf("%s", h->ready ? "ready" :
			     h->live  ? "live, not ready" :
					"not live");
		if (h->reason[0])
			printf(": %s", h->reason);
		if (h->storage_full)
			printf(" (storage full: publishes refused, acks go "
			       "on)");
		printf("\n");
	}
	rc = health_exit(h);
	handoff_health_free(h);
	return rc;
}

const struct cli_command cli_cmd_health = {
	.name = "health",
	.summary = "is the broker live and ready (exit code says)",
	.help = "Usage: handoff health [--json]\n"
		"\n"
		"Ask the broker whether it is live (its store loop is turning)\n"
		"and ready (store open, lease recovery done, not stopping, no\n"
		"fatal store error); the same state as HTTP GET /healthz and\n"
		"/readyz. A full store is reported but still ready: acks go on.\n"
		"Needs no access key. For probes, set --timeout (default 10 s).\n"
		"\n"
		"Exit status:\n"
		"  0   ready\n"
		"  5   no answer before --timeout: the broker is down, or its\n"
		"      loop is hung (not live either way)\n"
		"  20  live, not ready (starting, recovering leases, stopping)\n"
		"  21  not live (the store is unusable and the broker is\n"
		"      exiting)\n"
		"  1, 2, 10, 11  as for every command (error, usage, ...)\n",
	.run = run_health,
};
