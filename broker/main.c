/*
 * main.c — handoffd: parse flags, read the config, run the loop.
 *
 *   handoffd [--data DIR] [--listen URL]... [--http-listen HOST:PORT|off]...
 *            [--config FILE] [--log-format kv|json]
 *
 * Precedence: built-in defaults < config file < flags.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "loop.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: handoffd [--data DIR] [--listen URL]...\n"
		"                [--http-listen HOST:PORT|off]... [--config FILE]\n"
		"\n"
		"handoff broker: durable publish (LMDB), fan-out to subscriptions,\n"
		"acks, retries with backoff, dead-letter queues.\n"
		"\n"
		"  --data DIR      store folder (default ./handoff-data)\n"
		"  --listen URL    endpoint, repeatable: ipc://PATH or\n"
		"                  tcp://HOST:PORT (default tcp://127.0.0.1:7450)\n"
		"  --http-listen HOST:PORT|off\n"
		"                  HTTP JSON API endpoint, repeatable (default\n"
		"                  127.0.0.1:7451 when the native endpoint is the\n"
		"                  default, else off)\n"
		"  --config FILE   INI file with [broker] [limits] [retention]\n"
		"                  [defaults] [access] [http] [key NAME] sections\n"
		"                  (see README)\n"
		"  --log-debug     also log debug lines\n"
		"  --log-format kv|json\n"
		"                  log lines as key=value (default) or one JSON\n"
		"                  object per line\n"
		"  --help          this text\n"
		"  --version       print the version\n"
		"\n"
		"Logs go to stderr, one line per event. SIGTERM or SIGINT:\n"
		"finish the commit in hand, answer waiting fetches, exit 0.\n"
		"Under systemd (Type=notify) it reports READY=1 once lease\n"
		"recovery is done and requests are served, STOPPING=1 on SIGTERM,\n"
		"and pets the watchdog from its store loop (WatchdogSec=).\n"
		"Exit status: 0 clean stop, 1 start-up failure, 2 usage,\n"
		"3 store unusable (failed sync; restart to recover).\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "http-listen", required_argument, NULL, 'H' },
		{ "config", required_argument, NULL, 'c' },
		{ "log-debug", no_argument, NULL, 'D' },
		{ "log-format", required_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *data = NULL, *config_file = NULL;
	const char *listen[CONFIG_MAX_LISTEN];
	const char *http_listen[CONFIG_MAX_LISTEN];
	size_t n_listen = 0, n_http = 0;
	int debug = 0, c, log_format = -1;
	struct config cfg;
	char err[512];

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			data = optarg;
			break;
		case 'l':
			if (n_listen == CONFIG_MAX_LISTEN) {
				fprintf(stderr,
					"handoffd: at most %d --listen\n",
					CONFIG_MAX_LISTEN);
				return 2;
			}
			listen[n_listen++] = optarg;
			break;
		case 'H':
			if (n_http == CONFIG_MAX_LISTEN) {
				fprintf(stderr,
					"handoffd: at most %d --http-listen\n",
					CONFIG_MAX_LISTEN);
				return 2;
			}
			http_listen[n_http++] = optarg;
			break;
		case 'c':
			config_file = optarg;
			break;
		case 'D':
			debug = 1;
			break;
		case 'F':
			if (config_parse_log_format(optarg, &log_format)) {
				fprintf(stderr,
					"handoffd: --log-format: expected kv "
					"or json, not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("handoffd %s\n", HANDOFF_BUILD_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "handoffd: unexpected argument '%s'\n",
			argv[optind]);
		usage(stderr);
		return 2;
	}

	if (config_init(&cfg)) {
		fprintf(stderr, "handoffd: out of memory\n");
		return 1;
	}
	int status = 1;
	if (config_file &&
	    config_load_file(&cfg, config_file, err, sizeof err)) {
		fprintf(stderr, "handoffd: config: %s\n", err);
		goto out;
	}
	if (data && config_set_data_dir(&cfg, data)) {
		fprintf(stderr, "handoffd: out of memory\n");
		goto out;
	}
	if (n_listen) {
		/* flags replace the file's endpoints */
		for (size_t i = 0; i < cfg.n_listen; i++)
			free(cfg.listen[i]);
		cfg.n_listen = 0;
		for (size_t i = 0; i < n_listen; i++) {
			cfg.listen[cfg.n_listen] = strdup(listen[i]);
			if (!cfg.listen[cfg.n_listen]) {
				fprintf(stderr, "handoffd: out of memory\n");
				goto out;
			}
			cfg.n_listen++;
		}
	}
	for (size_t i = 0; i < n_http; i++) {
		int rc = config_add_http_listen(&cfg, http_listen[i], i == 0);
		if (rc) {
			fprintf(stderr, "handoffd: --http-listen %s: %s\n",
				http_listen[i],
				rc == EINVAL ? "expected HOST:PORT or off" :
					       strerror(rc));
			status = 2;
			goto out;
		}
	}
	config_resolve_http(&cfg);
	if (config_validate(&cfg, err, sizeof err)) {
		fprintf(stderr, "handoffd: config: %s\n", err);
		status = 2;
		goto out;
	}
	log_set_debug(debug || cfg.log_debug);
	if (log_format >= 0)
		cfg.log_format = log_format;
	log_set_json(cfg.log_format == CONFIG_LOG_JSON);

	/* Signals go to the loop's signalfd: block them before nanomsg
	 * starts its threads so those inherit the mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* a file past RLIMIT_FSIZE must give EFBIG (storage full), not kill us */
	signal(SIGXFSZ, SIG_IGN);

	status = loop_run(&cfg);
out:
	config_free(&cfg);
	return status;
}
