/*
 * handoff.c — entry point of the `handoff` command-line tool: global
 * options, command dispatch, help texts, error reporting and the mapping
 * of library errors to exit codes (listed in cli.h and in --help).
 *
 * Global options may come before the command (parsed here) or after it
 * (every command's option table includes them), so both
 * `handoff --json stats` and `handoff stats --json` work.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <sys/stat.h>

#include "cli.h"

#ifndef HANDOFF_BUILD_VERSION
#define HANDOFF_BUILD_VERSION HANDOFF_VERSION
#endif

#define DEFAULT_TIMEOUT_MS 10000u

const char cli_global_help[] =
	"\nGlobal options (before or after the command):\n"
	"  --broker URL        broker endpoint (default: $HANDOFF_BROKER, else\n"
	"                      " HANDOFF_DEFAULT_URL ")\n"
	"  --timeout DURATION  deadline of each broker call, retries included\n"
	"                      (default 10s)\n"
	"  --json              machine-readable output\n"
	"  --auth-key NAME     sign requests with this access key\n"
	"                      (default: $HANDOFF_AUTH_KEY)\n"
	"  --auth-secret-file PATH  the key's secret: 64 hex digits, mode 600\n"
	"                      (default: $HANDOFF_AUTH_SECRET_FILE)\n"
	"  -h, --help          show this help\n";

static const char exit_codes_help[] =
	"Exit codes:\n"
	"  0  success\n"
	"  1  the broker reported an error not listed below, or an internal error\n"
	"  2  usage error (bad option or argument, missing --yes)\n"
	"  3  not found (subscription, event or dead letter)\n"
	"  4  conflict (a subscription with another topic or policy; a backup\n"
	"     of that name exists or one is running)\n"
	"  5  broker unreachable or timed out\n"
	"  6  storage full, or a size or count limit exceeded\n"
	"  7  publish to a topic that has no subscription\n"
	"  8  lease lost (consume: ack/nack too late, extend: lease ended;\n"
	"     the event comes again)\n"
	"  9  partially done (dlq replay/purge: some ids not in the queue)\n"
	"  10 permission denied (access control: no key, wrong key or role)\n"
	"  11 clock differs from the broker's: signed requests refused as "
	"stale\n"
	"  12 await: a subscription dead-lettered the event (or purged it, or\n"
	"     was deleted)\n"
	"  13 await: not acked by every subscription within the timeout\n"
	"  20 health: live, not ready; 21 health: not live\n";

static const struct cli_command *const commands[] = {
	&cli_cmd_publish,	&cli_cmd_subscribe, &cli_cmd_unsubscribe,
	&cli_cmd_subscriptions, &cli_cmd_pause,	    &cli_cmd_resume,
	&cli_cmd_consume,	&cli_cmd_extend,    &cli_cmd_dlq,
	&cli_cmd_trace,		&cli_cmd_stats,	    &cli_cmd_audit,
	&cli_cmd_health,	&cli_cmd_backup,    &cli_cmd_await,
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct cli_command *const dlq_commands[] = {
	&cli_cmd_dlq_list,
	&cli_cmd_dlq_show,
	&cli_cmd_dlq_replay,
	&cli_cmd_dlq_purge,
};
#define N_DLQ_COMMANDS (sizeof(dlq_commands) / sizeof(dlq_commands[0]))

static void print_main_help(FILE *f)
{
	fputs("Usage: handoff [GLOBAL OPTIONS] COMMAND [ARGS...]\n"
	      "\n"
	      "Command-line client of the handoff event broker.\n"
	      "\n"
	      "Commands:\n",
	      f);
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-14s %s\n", commands[i]->name,
			commands[i]->summary);
	fprintf(f, "  %-14s %s\n", "help COMMAND", "show a command's help");
	fputs(cli_global_help, f);
	fputs("  --version           print the version\n"
	      "\n"
	      "Durations: 250ms, 30s, 5m, 2h, 7d (a bare number is ms).\n"
	      "\n",
	      f);
	fputs(exit_codes_help, f);
}

void cli_print_help(const struct cli_command *cmd, FILE *f)
{
	fputs(cmd->help, f);
	fputs(cli_global_help, f);
}

static const struct cli_command *
find_command(const struct cli_command *const *list, size_t n, const char *name,
	     size_t skip)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i]->name + skip, name) == 0)
			return list[i];
	return NULL;
}

int cli_run(struct cli_ctx *ctx, const struct cli_command *cmd, int argc,
	    char **argv)
{
	/* getopt messages start with argv[0]: make it "handoff CMD". */
	static char prog[64];

	snprintf(prog, sizeof(prog), "handoff %s", cmd->name);
	argv[0] = prog;
	ctx->cmd = cmd;
	optind = 0; /* glibc: full re-initialisation for a new argv */
	return cmd->run(ctx, argc, argv);
}

static int set_timeout(struct cli_ctx *ctx, const char *arg)
{
	uint32_t ms;

	if (cli_parse_duration32(arg, &ms) != 0 || ms == 0) {
		cli_warn("invalid --timeout '%s' (want e.g. 500ms, 10s, 1m)",
			 arg);
		return CLI_EXIT_USAGE;
	}
	ctx->timeout_ms = ms;
	return 0;
}

int cli_getopt(struct cli_ctx *ctx, int argc, char **argv,
	       const struct option *longopts, int *rc)
{
	int opt;

	*rc = 0;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_BROKER:
			ctx->url = optarg;
			break;
		case OPT_TIMEOUT:
			*rc = set_timeout(ctx, optarg);
			if (*rc)
				return 0;
			break;
		case OPT_JSON:
			ctx->json = true;
			break;
		case OPT_AUTH_KEY:
			ctx->key_id = optarg;
			break;
		case OPT_AUTH_SECRET:
			ctx->secret_file = optarg;
			break;
		case 'h':
			cli_print_help(ctx->cmd, stdout);
			*rc = CLI_STOP;
			return 0;
		case '?':
			fprintf(stderr, "Try 'handoff %s --help'.\n",
				ctx->cmd->name);
			*rc = CLI_EXIT_USAGE;
			return 0;
		default:
			return opt;
		}
	}
	return 0;
}

/* The secret file holds 64 hex digits; like ssh keys, it must not be
 * readable by others. */
static int read_secret(const char *path, unsigned char secret[32])
{
	char buf[160];
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;
	int rc;

	if (fd < 0) {
		cli_warn("secret file %s: %s", path, strerror(errno));
		return CLI_EXIT_USAGE;
	}
	if (fstat(fd, &sb) == 0 && (sb.st_mode & 077)) {
		close(fd);
		cli_warn("secret file %s can be read by others: chmod 600 it",
			 path);
		return CLI_EXIT_USAGE;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	rc = handoff_parse_secret(buf, secret);
	sodium_memzero(buf, sizeof(buf));
	if (rc != HANDOFF_OK) {
		cli_warn("secret file %s must hold 64 hex digits", path);
		return CLI_EXIT_USAGE;
	}
	return 0;
}

int cli_connect(struct cli_ctx *ctx)
{
	handoff_options opts = { .deadline_ms = ctx->timeout_ms,
				 .consumer_name = ctx->consumer };
	unsigned char secret[32];
	int err;

	if (ctx->client)
		return 0;
	if (ctx->key_id && *ctx->key_id) {
		if (!ctx->secret_file || !*ctx->secret_file) {
			cli_warn("access key %s needs --auth-secret-file (or "
				 "$HANDOFF_AUTH_SECRET_FILE)",
				 ctx->key_id);
			return CLI_EXIT_USAGE;
		}
		if ((err = read_secret(ctx->secret_file, secret)))
			return err;
		opts.key_id = ctx->key_id;
		opts.secret = secret;
	}
	err = handoff_connect(ctx->url, &opts, &ctx->client);
	sodium_memzero(secret, sizeof(secret));
	if (err != HANDOFF_OK) {
		ctx->client = NULL;
		fprintf(stderr, "handoff: connect to %s: %s", ctx->url,
			handoff_strerror(err));
		if (err == HANDOFF_ESTALE)
			cli_clock_hint(stderr, ctx);
		fputc('\n', stderr);
		return cli_exit_code(err);
	}
	cli_clock_note(ctx);
	return 0;
}

int cli_exit_code(int err)
{
	switch (err) {
	case HANDOFF_OK:
		return CLI_EXIT_OK;
	case HANDOFF_EINVAL:
		/* The library refused an argument the user gave us. */
		return CLI_EXIT_USAGE;
	case HANDOFF_ENOTFOUND:
		return CLI_EXIT_NOTFOUND;
	case HANDOFF_ECONFLICT:
		return CLI_EXIT_CONFLICT;
	case HANDOFF_ETIMEDOUT:
	case HANDOFF_ETRANSPORT:
	case HANDOFF_ESHUTTINGDOWN:
		return CLI_EXIT_UNREACHABLE;
	case HANDOFF_ESTORAGEFULL:
	case HANDOFF_ELIMIT:
	case HANDOFF_ETOOBIG:
		return CLI_EXIT_FULL;
	case HANDOFF_ENOSUBSCRIPTIONS:
		return CLI_EXIT_NOSUBS;
	case HANDOFF_ELEASELOST:
		return CLI_EXIT_LEASELOST;
	case HANDOFF_EPERM:
		return CLI_EXIT_DENIED;
	case HANDOFF_ESTALE:
		return CLI_EXIT_CLOCK;
	default:
		return CLI_EXIT_ERROR;
	}
}

int cli_fail(struct cli_ctx *ctx, int err, const char *fmt, ...)
{
	const char *msg = ctx->client ? handoff_last_message(ctx->client) : "";
	va_list ap;

	fputs("handoff: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s", handoff_strerror(err));
	if (msg && *msg) {
		fputs(": ", stderr);
		cli_put_escaped_str(stderr, msg, 0);
	}
	if (err == HANDOFF_ESTALE)
		cli_clock_hint(stderr, ctx);
	if (err == HANDOFF_ESTORAGEFULL && ctx->client &&
	    handoff_last_retry_after_ms(ctx->client) > 0) {
		char d[CLI_FMT_MAX];

		fprintf(stderr, " (retry after %s)",
			cli_fmt_duration(
				handoff_last_retry_after_ms(ctx->client), d));
	}
	fputc('\n', stderr);
	return cli_exit_code(err);
}

int cli_usage(struct cli_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "handoff %s: ", ctx->cmd ? ctx->cmd->name : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'handoff %s --help'.\n",
		ctx->cmd ? ctx->cmd->name : "");
	return CLI_EXIT_USAGE;
}

void cli_warn(const char *fmt, ...)
{
	va_list ap;

	fputs("handoff: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_finish(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		cli_warn("writing output: %s", strerror(errno));
		return rc ? rc : CLI_EXIT_ERROR;
	}
	/* cli_json_newline said what was left out */
	if (cli_json_failed())
		return rc ? rc : CLI_EXIT_ERROR;
	return rc;
}

/* `handoff help [COMMAND [SUBCOMMAND]]` */
static int run_help(int argc, char **argv)
{
	const struct cli_command *cmd;

	if (argc < 2) {
		print_main_help(stdout);
		return cli_finish(0);
	}
	cmd = find_command(commands, N_COMMANDS, argv[1], 0);
	if (cmd == &cli_cmd_dlq && argc >= 3) {
		const struct cli_command *sub =
			find_command(dlq_commands, N_DLQ_COMMANDS, argv[2], 4);
		if (!sub) {
			cli_warn("no such command 'dlq %s'", argv[2]);
			return CLI_EXIT_USAGE;
		}
		cmd = sub;
	}
	if (!cmd) {
		cli_warn("no such command '%s'; see 'handoff --help'", argv[1]);
		return CLI_EXIT_USAGE;
	}
	cli_print_help(cmd, stdout);
	return cli_finish(0);
}

static int parse_main_options(struct cli_ctx *ctx, int argc, char **argv,
			      const struct cli_command *cmd);

/* `handoff dlq [GLOBAL OPTIONS] SUBCOMMAND ...` */
static int run_dlq(struct cli_ctx *ctx, int argc, char **argv)
{
	const struct cli_command *sub;
	int rc = parse_main_options(ctx, argc, argv, &cli_cmd_dlq);

	if (rc)
		return rc;
	argc -= optind;
	argv += optind;
	if (argc < 1)
		return cli_usage(ctx, "missing command: list, show, replay or "
				      "purge");
	if (strcmp(argv[0], "help") == 0) {
		sub = argc >= 2 ? find_command(dlq_commands, N_DLQ_COMMANDS,
					       argv[1], 4) :
				  NULL;
		cli_print_help(sub ? sub : &cli_cmd_dlq, stdout);
		return CLI_STOP;
	}
	sub = find_command(dlq_commands, N_DLQ_COMMANDS, argv[0], 4);
	if (!sub)
		return cli_usage(ctx, "unknown dlq command '%s'", argv[0]);
	return cli_run(ctx, sub, argc, argv);
}

const struct cli_command cli_cmd_dlq = {
	.name = "dlq",
	.summary = "dead letters: list, show, replay, purge",
	.help = "Usage: handoff dlq list SUBSCRIPTION [FILTERS]\n"
		"       handoff dlq show SUBSCRIPTION EVENT_ID\n"
		"       handoff dlq replay SUBSCRIPTION [EVENT_ID...] [FILTERS]\n"
		"       handoff dlq purge SUBSCRIPTION [EVENT_ID...] [FILTERS] "
		"--yes\n"
		"\n"
		"Inspect, replay and purge a subscription's dead letters: the\n"
		"events that used up their attempts, were nacked as permanent,\n"
		"or whose stored copy was corrupt.\n"
		"\n"
		"Run 'handoff help dlq COMMAND' for a command's options.\n",
	.run = run_dlq,
};

/* Keep fds 0-2 open so pipes and files we open never take their numbers
 * (a consumer command would otherwise get the wrong stdin/stderr). */
static void ensure_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
			int n = open("/dev/null", O_RDWR);

			if (n > 2)
				close(n);
		}
	}
}

static const struct option main_options[] = {
	{ "version", no_argument, NULL, OPT_VERSION },
	CLI_GLOBAL_OPTIONS,
	{ NULL, 0, NULL, 0 },
};

/* Global options before the command (or before a dlq subcommand); stops
 * at the first operand. -h shows cmd's help, or the main help for NULL. */
static int parse_main_options(struct cli_ctx *ctx, int argc, char **argv,
			      const struct cli_command *cmd)
{
	int opt;

	while ((opt = getopt_long(argc, argv, "+h", main_options, NULL)) !=
	       -1) {
		switch (opt) {
		case OPT_BROKER:
			ctx->url = optarg;
			break;
		case OPT_TIMEOUT:
			if (set_timeout(ctx, optarg))
				return CLI_EXIT_USAGE;
			break;
		case OPT_JSON:
			ctx->json = true;
			break;
		case OPT_AUTH_KEY:
			ctx->key_id = optarg;
			break;
		case OPT_AUTH_SECRET:
			ctx->secret_file = optarg;
			break;
		case OPT_VERSION:
			printf("handoff %s\n", HANDOFF_BUILD_VERSION);
			return CLI_STOP;
		case 'h':
			if (cmd)
				cli_print_help(cmd, stdout);
			else
				print_main_help(stdout);
			return CLI_STOP;
		default:
			fprintf(stderr, "Try 'handoff %s--help'.\n",
				cmd ? "dlq " : "");
			return CLI_EXIT_USAGE;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct cli_ctx ctx = { .timeout_ms = DEFAULT_TIMEOUT_MS };
	const struct cli_command *cmd;
	const char *env = getenv("HANDOFF_BROKER");
	int rc;

	ensure_std_fds();
	ctx.url = (env && *env) ? env : HANDOFF_DEFAULT_URL;
	ctx.key_id = getenv("HANDOFF_AUTH_KEY");
	ctx.secret_file = getenv("HANDOFF_AUTH_SECRET_FILE");
	rc = parse_main_options(&ctx, argc, argv, NULL);
	if (rc)
		return rc == CLI_STOP ? cli_finish(0) : rc;
	if (optind >= argc) {
		fputs("Usage: handoff [GLOBAL OPTIONS] COMMAND [ARGS...]\n"
		      "Try 'handoff --help'.\n",
		      stderr);
		return CLI_EXIT_USAGE;
	}
	argc -= optind;
	argv += optind;
	if (strcmp(argv[0], "help") == 0)
		return run_help(argc, argv);
	cmd = find_command(commands, N_COMMANDS, argv[0], 0);
	if (!cmd) {
		cli_warn("unknown command '%s'; see 'handoff --help'", argv[0]);
		return CLI_EXIT_USAGE;
	}
	rc = cli_run(&ctx, cmd, argc, argv);
	if (rc == CLI_STOP)
		rc = 0;
	handoff_close(ctx.client);
	return cli_finish(rc);
}
