/*
 * cli_backup.c — `handoff backup`: a hot backup of the broker's store.
 */
#include <getopt.h>
#include <stdio.h>
#include <time.h>

#include "cli.h"

enum { OPT_NO_WAIT = OPT_LOCAL, OPT_STATUS };

static const struct option backup_options[] = {
	{ "no-wait", no_argument, NULL, OPT_NO_WAIT },
	{ "status", no_argument, NULL, OPT_STATUS },
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

static const char *state_name(handoff_backup_state s)
{
	switch (s) {
	case HANDOFF_BACKUP_RUNNING:
		return "running";
	case HANDOFF_BACKUP_DONE:
		return "done";
	case HANDOFF_BACKUP_FAILED:
		return "failed";
	}
	return "unknown";
}

static void print_backup(struct cli_ctx *ctx, const handoff_backup_info *b)
{
	if (ctx->json) {
		struct cli_json j;

		cli_json_init(&j, stdout);
		cli_json_begin_object(&j);
		cli_json_kv_str(&j, "name", b->name);
		cli_json_kv_str(&j, "path", b->path);
		cli_json_kv_str(&j, "state", state_name(b->state));
		cli_json_kv_u64(&j, "bytes", b->bytes);
		cli_json_kv_u64(&j, "duration_ms", b->duration_ms);
		cli_json_kv_u64(&j, "started_ms", b->started_ms);
		if (b->state == HANDOFF_BACKUP_FAILED)
			cli_json_kv_str(&j, "error", b->error);
		cli_json_end_object(&j);
		cli_json_newline(&j);
		return;
	}
	printf("backup %s %s: %s, %llu bytes in %llu ms%s%s\n", b->name,
	       state_name(b->state), b->path, (unsigned long long)b->bytes,
	       (unsigned long long)b->duration_ms,
	       b->state == HANDOFF_BACKUP_FAILED ? ": " : "",
	       b->state == HANDOFF_BACKUP_FAILED ? b->error : "");
}

static int run_backup(struct cli_ctx *ctx, int argc, char **argv)
{
	bool wait = true, status_only = false;
	handoff_backup_info b;
	const char *name;
	int opt, rc, err;

	while ((opt = cli_getopt(ctx, argc, argv, backup_options, &rc)) > 0) {
		if (opt == OPT_NO_WAIT)
			wait = false;
		else if (opt == OPT_STATUS)
			status_only = true, wait = false;
	}
	if (rc)
		return rc;
	if (argc - optind != 1)
		return cli_usage(ctx, "want one NAME");
	name = argv[optind];
	if ((rc = cli_connect(ctx)))
		return rc;
	err = handoff_backup(ctx->client, name, status_only, &b);
	/* wait for the copy: ask how it goes, without holding the broker */
	while (!err && wait && b.state == HANDOFF_BACKUP_RUNNING) {
		struct timespec ts = { 0, 200 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		handoff_backup_info_free(&b);
		err = handoff_backup(ctx->client, name, true, &b);
	}
	if (err)
		return cli_fail(ctx, err, "backup '%s'", name);
	print_backup(ctx, &b);
	rc = b.state == HANDOFF_BACKUP_FAILED ? 1 : 0;
	handoff_backup_info_free(&b);
	return rc;
}

const struct cli_command cli_cmd_backup = {
	.name = "backup",
	.summary = "copy the broker's store while it serves (hot backup)",
	.help = "Usage: handoff backup NAME [--no-wait | --status]\n"
		"\n"
		"Ask the broker for a consistent, compacted copy of its store (an\n"
		"operator command, audited), taken while it goes on serving. The\n"
		"broker writes it to BACKUP_DIR/NAME/data.mdb on its own machine,\n"
		"where BACKUP_DIR is its configured backup_dir ([broker] backup_dir;\n"
		"without one, backups are refused); NAME is a file name (letters,\n"
		"digits, '.', '_', '-'), never a path, and must not exist yet.\n"
		"`handoffd --data BACKUP_DIR/NAME` starts a broker on the copy.\n"
		"Waits until the copy is done and prints its path, size and time.\n"
		"\n"
		"  --no-wait   start it and return (state running)\n"
		"  --status    report backup NAME (started since the broker's start)\n"
		"\n"
		"Exit status 1 when the copy failed (the reason is printed).\n",
	.run = run_backup,
};
