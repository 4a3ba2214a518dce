/*
 * check_main.c — handoff-check: the torture checker on its own, for a run
 * folder kept by handoff-torture (--keep, or a failed run) and a broker
 * started on that run's data (RUN/broker/data).
 *
 *   handoff-check --dir RUN --broker URL [--threads N] [--examples N]
 *
 * Exit status: 0 no violation, 1 violations, 2 could not check or usage.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: handoff-check --dir RUN --broker URL [--threads N] [--examples N]\n"
		"\n"
		"Reads RUN/rec/*.rec (the records of a handoff-torture run) and asks the\n"
		"broker at URL for the final state; prints one line per subscription and a\n"
		"'check:' summary. Run it after a drain. Exit 0 clean, 1 violations, 2\n"
		"error.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "broker", required_argument, NULL, 'b' },
		{ "threads", required_argument, NULL, 't' },
		{ "examples", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct check_opts o = { .out = stdout };
	struct check_result r;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			o.dir = optarg;
			break;
		case 'b':
			o.url = optarg;
			break;
		case 't':
			o.threads = (unsigned)atoi(optarg);
			break;
		case 'e':
			o.examples = (unsigned)atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!o.dir || !o.url || optind < argc) {
		usage(stderr);
		return 2;
	}
	return check_run(&o, &r);
}
