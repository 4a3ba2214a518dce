/*
 * test_config.c — handoffd's config: the defaults, an INI file overriding
 * them, repeated listen=, command-line overrides, every load error (with
 * its FILE:LINE: text) and every config_validate() rule.
 *
 * Each test gets a fresh config and a fresh temporary directory (mkdtemp)
 * for the files it writes; teardown frees both.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sys/stat.h>

#include "config.h"

struct fixture {
	char dir[PATH_MAX];
	char path[PATH_MAX + 64]; /* last file written */
	char err[512];
	char want[PATH_MAX * 2 + 256];
	struct config c;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	if (!f)
		return -1;
	if (!tmp || !*tmp || strlen(tmp) > PATH_MAX / 2)
		tmp = "/tmp";
	snprintf(f->dir, sizeof(f->dir), "%s/handoff-test-config-XXXXXX", tmp);
	if (!mkdtemp(f->dir) || config_init(&f->c) != 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	DIR *d = opendir(f->dir);
	struct dirent *e;

	if (d) {
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlinkat(dirfd(d), e->d_name, 0);
		}
		closedir(d);
	}
	rmdir(f->dir);
	config_free(&f->c);
	free(f);
	return 0;
}

/* Write text to DIR/name; f->path is its path. */
static const char *write_file(struct fixture *f, const char *name,
			      const char *text)
{
	FILE *fp;

	snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, name);
	fp = fopen(f->path, "w");
	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
	return f->path;
}

static int load(struct fixture *f, const char *text)
{
	f->err[0] = '\0';
	return config_load_file(&f->c, write_file(f, "handoff.ini", text),
				f->err, sizeof(f->err));
}

/* Load text; it must fail with EINVAL and exactly "PATH:line: what". */
static void expect_load_error(struct fixture *f, const char *text, int line,
			      const char *what)
{
	assert_int_equal(load(f, text), EINVAL);
	snprintf(f->want, sizeof(f->want), "%s:%d: %s", f->path, line, what);
	assert_string_equal(f->err, f->want);
}

static void expect_invalid(struct fixture *f, const char *needle)
{
	f->err[0] = '\0';
	assert_int_equal(config_validate(&f->c, f->err, sizeof(f->err)),
			 EINVAL);
	if (!strstr(f->err, needle))
		fail_msg("validate said '%s', expected it to mention '%s'",
			 f->err, needle);
}

static void expect_valid(struct fixture *f)
{
	f->err[0] = '\0';
	if (config_validate(&f->c, f->err, sizeof(f->err)) != 0)
		fail_msg("validate failed: %s", f->err);
}

/* ---- defaults and overrides --------------------------------------------- */

static void defaults(void **state)
{
	struct fixture *f = *state;
	struct config *c = &f->c;

	assert_string_equal(c->data_dir, "./handoff-data");
	assert_int_equal(c->n_listen, 1);
	assert_string_equal(c->listen[0], "tcp://127.0.0.1:7450");
	assert_null(c->listen[1]);
	assert_true(c->map_size_bytes == 1ULL << 30);
	assert_int_equal(c->max_payload_bytes, 1 << 20);
	assert_int_equal(c->max_request_bytes, 16 << 20);
	assert_int_equal(c->max_batch, 1000);
	assert_int_equal(c->max_subscriptions, 1000);
	assert_int_equal(c->max_held_fetches, 1024);
	assert_int_equal(c->max_wait_ms, 60000);
	assert_int_equal(c->max_name_bytes, 200);
	assert_true(c->dedup_window_ms == 24ULL * 3600 * 1000);
	assert_true(c->history_ms == 7ULL * 24 * 3600 * 1000);
	assert_true(c->request_window_ms == 60000);
	assert_int_equal(c->n_keys, 0);
	assert_int_equal(c->allow_wildcard, 0);
	assert_int_equal(c->max_backlog, 0);
	assert_int_equal(c->max_leases_per_consumer, 10000);
	assert_true(c->storage_headroom_bytes == 0);
	assert_int_equal(c->max_attempts, 5);
	assert_int_equal(c->ack_deadline_ms, 30000);
	assert_int_equal(c->backoff_min_ms, 1000);
	assert_int_equal(c->backoff_max_ms, 60000);
	assert_int_equal(c->log_debug, 0);
	expect_valid(f);
}

static void file_overrides_every_key(void **state)
{
	struct fixture *f = *state;
	struct config *c = &f->c;

	assert_int_equal(
		load(f, "; handoffd test config\n"
			"# hash comments too\n"
			"[broker]\n"
			"data_dir = /var/lib/handoff\n"
			"listen = ipc:///run/handoff.sock   ; inline comment\n"
			"map_size = 8G\n"
			"log_debug = true\n"
			"\n"
			"[limits]\n"
			"max_payload = 256K\n"
			"max_request = 4M\n"
			"max_batch = 50\n"
			"max_subscriptions = 7\n"
			"max_held_fetches = 9\n"
			"max_wait = 2m\n"
			"max_name = 64\n"
			"[retention]\n"
			"dedup_window = 2h\n"
			"history = 30d\n"
			"[defaults]\n"
			"max_attempts = 12\n"
			"ack_deadline = 1500ms\n"
			"backoff_min = 250\n"
			"backoff_max = 10m\n"),
		0);
	assert_string_equal(f->err, "");
	assert_string_equal(c->data_dir, "/var/lib/handoff");
	assert_int_equal(c->n_listen, 1);
	assert_string_equal(c->listen[0], "ipc:///run/handoff.sock");
	assert_true(c->map_size_bytes == 8ULL << 30);
	assert_int_equal(c->log_debug, 1);
	assert_int_equal(c->max_payload_bytes, 256 * 1024);
	assert_int_equal(c->max_request_bytes, 4 << 20);
	assert_int_equal(c->max_batch, 50);
	assert_int_equal(c->max_subscriptions, 7);
	assert_int_equal(c->max_held_fetches, 9);
	assert_int_equal(c->max_wait_ms, 120000);
	assert_int_equal(c->max_name_bytes, 64);
	assert_true(c->dedup_window_ms == 2ULL * 3600 * 1000);
	assert_true(c->history_ms == 30ULL * 24 * 3600 * 1000);
	assert_int_equal(c->max_attempts, 12);
	assert_int_equal(c->ack_deadline_ms, 1500);
	assert_int_equal(c->backoff_min_ms, 250);
	assert_int_equal(c->backoff_max_ms, 600000);
	expect_valid(f);
}

static void partial_file_keeps_defaults(void **state)
{
	struct fixture *f = *state;
	struct config *c = &f->c;

	assert_int_equal(load(f, "[limits]\nmax_batch = 10\n"), 0);
	assert_int_equal(c->max_batch, 10);
	assert_string_equal(c->data_dir, "./handoff-data");
	assert_int_equal(c->n_listen, 1);
	assert_string_equal(c->listen[0], "tcp://127.0.0.1:7450");
	assert_int_equal(c->max_payload_bytes, 1 << 20);
	assert_int_equal(c->max_attempts, 5);
	assert_int_equal(c->backoff_max_ms, 60000);
}

static void empty_file(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, ""), 0);
	assert_int_equal(f->c.n_listen, 1);
	assert_int_equal(f->c.max_batch, 1000);
	expect_valid(f);
}

static void later_key_wins(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, "[defaults]\nmax_attempts = 3\n"
				 "max_attempts = 9\n"),
			 0);
	assert_int_equal(f->c.max_attempts, 9);
}

static void booleans(void **state)
{
	static const struct {
		const char *text;
		int want;
	} cases[] = {
		{ "true", 1 },	{ "yes", 1 }, { "on", 1 },  { "1", 1 },
		{ "false", 0 }, { "no", 0 },  { "off", 0 }, { "0", 0 },
	};
	struct fixture *f = *state;
	char text[64];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		f->c.log_debug = !cases[i].want;
		snprintf(text, sizeof(text), "[broker]\nlog_debug = %s\n",
			 cases[i].text);
		assert_int_equal(load(f, text), 0);
		assert_int_equal(f->c.log_debug, cases[i].want);
	}
}

/* ---- listen ------------------------------------------------------------- */

static void repeated_listen_replaces_default(void **state)
{
	struct fixture *f = *state;
	struct config *c = &f->c;

	assert_int_equal(load(f, "[broker]\n"
				 "listen = tcp://10.1.2.3:9000\n"
				 "listen = ipc:///tmp/h.sock\n"
				 "listen = inproc://handoff\n"),
			 0);
	assert_int_equal(c->n_listen, 3);
	assert_string_equal(c->listen[0], "tcp://10.1.2.3:9000");
	assert_string_equal(c->listen[1], "ipc:///tmp/h.sock");
	assert_string_equal(c->listen[2], "inproc://handoff");
	assert_null(c->listen[3]);
	expect_valid(f);
}

/* Listing the default URL itself keeps it, once. */
static void listen_default_url_in_file(void **state)
{
	struct fixture *f = *state;
	struct config *c = &f->c;

	assert_int_equal(load(f, "[broker]\nlisten = tcp://127.0.0.1:7450\n"
				 "listen = ipc:///tmp/x\n"),
			 0);
	assert_int_equal(c->n_listen, 2);
	assert_string_equal(c->listen[0], "tcp://127.0.0.1:7450");
	assert_string_equal(c->listen[1], "ipc:///tmp/x");
}

static void listen_max_in_file(void **state)
{
	struct fixture *f = *state;
	char text[2048] = "[broker]\n";
	size_t i;

	for (i = 0; i < CONFIG_MAX_LISTEN; i++) {
		size_t len = strlen(text);

		snprintf(text + len, sizeof(text) - len,
			 "listen = tcp://127.0.0.1:%zu\n", 8000 + i);
	}
	assert_int_equal(load(f, text), 0);
	assert_int_equal(f->c.n_listen, CONFIG_MAX_LISTEN);
	assert_string_equal(f->c.listen[CONFIG_MAX_LISTEN - 1],
			    "tcp://127.0.0.1:8015");

	/* one more is an error at its own line */
	strcat(text, "listen = tcp://127.0.0.1:9999\n");
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	expect_load_error(f, text, CONFIG_MAX_LISTEN + 2,
			  "too many listen URLs (at most 16)");
}

static void add_listen_replaces_default_then_appends(void **state)
{
	struct fixture *f = *state;
	struct config *c = &f->c;

	assert_int_equal(config_add_listen(c, "tcp://10.0.0.1:1"), 0);
	assert_int_equal(c->n_listen, 1);
	assert_string_equal(c->listen[0], "tcp://10.0.0.1:1");
	assert_int_equal(config_add_listen(c, "ipc:///tmp/a"), 0);
	assert_int_equal(c->n_listen, 2);
	assert_string_equal(c->listen[0], "tcp://10.0.0.1:1");
	assert_string_equal(c->listen[1], "ipc:///tmp/a");
	expect_valid(f);
}

static void add_listen_too_many(void **state)
{
	struct fixture *f = *state;
	char url[64];
	int i;

	for (i = 0; i < CONFIG_MAX_LISTEN; i++) {
		snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", 8000 + i);
		assert_int_equal(config_add_listen(&f->c, url), 0);
	}
	assert_int_equal(f->c.n_listen, CONFIG_MAX_LISTEN);
	assert_int_equal(config_add_listen(&f->c, "tcp://127.0.0.1:1"), E2BIG);
	assert_int_equal(f->c.n_listen, CONFIG_MAX_LISTEN);
	assert_string_equal(f->c.listen[0], "tcp://127.0.0.1:8000");
}

/* Precedence: defaults < file < command line. */
static void command_line_after_file(void **state)
{
	struct fixture *f = *state;
	struct config *c = &f->c;

	assert_int_equal(load(f, "[broker]\ndata_dir = /from/file\n"
				 "[limits]\nmax_batch = 10\n"),
			 0);
	assert_string_equal(c->data_dir, "/from/file");
	assert_int_equal(config_set_data_dir(c, "/from/flag"), 0);
	assert_string_equal(c->data_dir, "/from/flag");
	/* the file did not set listen: the first flag replaces the default */
	assert_int_equal(config_add_listen(c, "tcp://127.0.0.1:9"), 0);
	assert_int_equal(c->n_listen, 1);
	assert_string_equal(c->listen[0], "tcp://127.0.0.1:9");
	assert_int_equal(c->max_batch, 10);
}

/* A second file is applied on top of the first; its first listen=
 * replaces the list the first file set. */
static void second_file_replaces_listen(void **state)
{
	struct fixture *f = *state;
	struct config *c = &f->c;

	assert_int_equal(load(f, "[broker]\nlisten = tcp://a:1\n"
				 "listen = tcp://b:2\n"),
			 0);
	assert_int_equal(c->n_listen, 2);
	assert_int_equal(load(f, "[broker]\nlisten = tcp://c:3\n"), 0);
	assert_int_equal(c->n_listen, 1);
	assert_string_equal(c->listen[0], "tcp://c:3");
}

/* ---- load errors -------------------------------------------------------- */

static void unknown_key(void **state)
{
	struct fixture *f = *state;

	expect_load_error(f, "[limits]\nmax_batch = 5\nmax_bogus = 1\n", 3,
			  "unknown key 'max_bogus' in [limits]");
}

static void unknown_section(void **state)
{
	struct fixture *f = *state;

	expect_load_error(f,
			  "; top\n[broker]\ndata_dir = x\n[nosuch]\n"
			  "data_dir = y\n",
			  5, "unknown key 'data_dir' in [nosuch]");
}

static void key_in_wrong_section(void **state)
{
	struct fixture *f = *state;

	expect_load_error(f, "[limits]\nlisten = tcp://x:1\n", 2,
			  "unknown key 'listen' in [limits]");
}

static void key_before_any_section(void **state)
{
	struct fixture *f = *state;

	expect_load_error(f, "data_dir = /x\n", 1,
			  "unknown key 'data_dir' in []");
}

static void bad_values(void **state)
{
	static const struct {
		const char *section, *key, *value;
	} cases[] = {
		{ "broker", "data_dir", "" },
		{ "broker", "listen", "http://127.0.0.1:80" },
		{ "broker", "listen", "127.0.0.1:7450" },
		{ "broker", "listen", "tcp://" },
		{ "broker", "listen", "" },
		{ "broker", "map_size", "lots" },
		{ "broker", "map_size", "1.5G" },
		{ "broker", "map_size", "99999999999T" },
		{ "broker", "map_size", "-1" },
		{ "broker", "log_debug", "maybe" },
		{ "broker", "log_debug", "TRUE!" },
		{ "limits", "max_payload", "1X" },
		{ "limits", "max_payload", "4G" }, /* > UINT32_MAX */
		{ "limits", "max_request", "16 M" },
		{ "limits", "max_batch", "-1" },
		{ "limits", "max_batch", "12abc" },
		{ "limits", "max_batch", "1K" },	 /* counts: no units */
		{ "limits", "max_batch", "4294967296" }, /* UINT32_MAX + 1 */
		{ "limits", "max_subscriptions", "" },
		{ "limits", "max_held_fetches", "0x10" },
		{ "limits", "max_wait", "abc" },
		{ "limits", "max_wait", "50d" }, /* > UINT32_MAX ms */
		{ "limits", "max_wait", "1.5s" },
		{ "limits", "max_name", "big" },
		{ "retention", "dedup_window", "1w" },
		{ "retention", "dedup_window", "18446744073709551616" },
		{ "retention", "history", "forever" },
		{ "defaults", "max_attempts", "five" },
		{ "defaults", "ack_deadline", "30 s" },
		{ "defaults", "backoff_min", "-1s" },
		{ "defaults", "backoff_max", "1y" },
	};
	struct fixture *f = *state;
	char text[256], what[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "[%s]\n%s = %s\n",
			 cases[i].section, cases[i].key, cases[i].value);
		snprintf(what, sizeof(what), "bad value for '%s': '%s'",
			 cases[i].key, cases[i].value);
		expect_load_error(f, text, 2, what);
	}
	/* nothing bad was applied */
	assert_string_equal(f->c.data_dir, "./handoff-data");
	assert_int_equal(f->c.n_listen, 1);
	assert_int_equal(f->c.max_batch, 1000);
	assert_int_equal(f->c.max_wait_ms, 60000);
}

/* The largest values that do fit are accepted. */
static void range_edges(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, "[limits]\nmax_batch = 4294967295\n"
				 "max_wait = 49d\n"
				 "max_request = 4294967295\n"
				 "[retention]\n"
				 "history = 18446744073709551615\n"),
			 0);
	assert_int_equal(f->c.max_batch, UINT32_MAX);
	assert_int_equal(f->c.max_wait_ms, 49U * 24 * 3600 * 1000);
	assert_int_equal(f->c.max_request_bytes, UINT32_MAX);
	assert_true(f->c.history_ms == UINT64_MAX);
}

static void syntax_errors(void **state)
{
	struct fixture *f = *state;
	const char *what = "syntax error (expected [section] or key = value)";

	expect_load_error(f, "[broker]\njust some words\n", 2, what);
	expect_load_error(f, "[broker\ndata_dir = x\n", 1, what);
}

/* The first error is the one reported, and the parse stops there. */
static void first_error_wins(void **state)
{
	struct fixture *f = *state;

	expect_load_error(f,
			  "[limits]\nmax_batch = 7\nmax_wait = soon\n"
			  "bogus = 1\nno equals sign\n",
			  3, "bad value for 'max_wait': 'soon'");
	assert_int_equal(f->c.max_batch, 7);
	expect_load_error(f, "[limits]\nno equals sign\nmax_wait = soon\n", 2,
			  "syntax error (expected [section] or key = value)");
	expect_load_error(f,
			  "[limits]\nmax_batch = 1\n[defaults]\n"
			  "max_attempts = 2\nbogus = 3\n[limits]\n"
			  "max_batch = 99\n",
			  5, "unknown key 'bogus' in [defaults]");
	assert_int_equal(f->c.max_batch, 1);
	assert_int_equal(f->c.max_attempts, 2);
}

static void line_too_long(void **state)
{
	struct fixture *f = *state;
	char text[1024];

	snprintf(text, sizeof(text), "[broker]\n\ndata_dir = /%0600d\n", 0);
	assert_int_equal(load(f, text), EINVAL);
	snprintf(f->want, sizeof(f->want), "%s:3: line too long", f->path);
	if (strncmp(f->err, f->want, strlen(f->want)) != 0)
		fail_msg("got '%s'", f->err);
	assert_string_equal(f->c.data_dir, "./handoff-data");
}

static void missing_file(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/does-not-exist.ini", f->dir);
	assert_int_equal(config_load_file(&f->c, path, f->err, sizeof(f->err)),
			 ENOENT);
	assert_non_null(strstr(f->err, path));
	assert_non_null(strstr(f->err, strerror(ENOENT)));
}

static void directory_is_not_a_file(void **state)
{
	struct fixture *f = *state;
	int rc = config_load_file(&f->c, f->dir, f->err, sizeof(f->err));

	assert_int_not_equal(rc, 0);
	assert_non_null(strstr(f->err, f->dir));
}

/* A short error buffer is truncated, never overrun; NULL is allowed. */
static void small_error_buffer(void **state)
{
	struct fixture *f = *state;
	char small[8];

	memset(small, 'x', sizeof(small));
	write_file(f, "bad.ini", "[limits]\nmax_batch = nope\n");
	assert_int_equal(config_load_file(&f->c, f->path, small, sizeof(small)),
			 EINVAL);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_int_equal(config_load_file(&f->c, f->path, NULL, 0), EINVAL);
	f->c.max_batch = 0;
	assert_int_equal(config_validate(&f->c, NULL, 0), EINVAL);
}

/* ---- config_validate ---------------------------------------------------- */

static void validate_backoff(void **state)
{
	struct fixture *f = *state;

	f->c.backoff_min_ms = 5000;
	f->c.backoff_max_ms = 4999;
	expect_invalid(f, "backoff_min");
	f->c.backoff_max_ms = 5000;
	expect_valid(f);
	f->c.backoff_min_ms = 0;
	expect_valid(f);
}

static void validate_backoff_from_file(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, "[defaults]\nbackoff_min = 2m\n"), 0);
	expect_invalid(f, "backoff_max");
}

static void validate_attempts_and_deadline(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, "[defaults]\nmax_attempts = 0\n"), 0);
	expect_invalid(f, "max_attempts");
	f->c.max_attempts = 1;
	expect_valid(f);

	assert_int_equal(load(f, "[defaults]\nack_deadline = 0ms\n"), 0);
	expect_invalid(f, "ack_deadline");
	f->c.ack_deadline_ms = 1;
	expect_valid(f);
}

static void validate_limits_nonzero(void **state)
{
	static const struct {
		const char *name;
		size_t offset;
	} limits[] = {
		{ "max_payload", offsetof(struct config, max_payload_bytes) },
		{ "max_request", offsetof(struct config, max_request_bytes) },
		{ "max_batch", offsetof(struct config, max_batch) },
		{ "max_subscriptions",
		  offsetof(struct config, max_subscriptions) },
		{ "max_held_fetches",
		  offsetof(struct config, max_held_fetches) },
		{ "max_wait", offsetof(struct config, max_wait_ms) },
		{ "max_name", offsetof(struct config, max_name_bytes) },
	};
	struct fixture *f = *state;
	size_t i;

	for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		uint32_t *field =
			(uint32_t *)(void *)((char *)&f->c + limits[i].offset);
		uint32_t saved = *field;

		*field = 0;
		expect_invalid(f, limits[i].name);
		*field = saved;
		expect_valid(f);
	}
	f->c.map_size_bytes = 0;
	expect_invalid(f, "map_size");
}

static void validate_limits_from_file(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, "[limits]\nmax_batch = 0\n"), 0);
	expect_invalid(f, "max_batch");
}

static void validate_payload_vs_request(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(load(f, "[limits]\nmax_payload = 2M\n"
				 "max_request = 1M\n"),
			 0);
	expect_invalid(f, "max_payload");
	f->c.max_request_bytes = f->c.max_payload_bytes;
	expect_valid(f);
}

static void validate_listen(void **state)
{
	struct fixture *f = *state;
	struct config *c = &f->c;

	/* every scheme the broker speaks */
	assert_int_equal(config_add_listen(c, "tcp://127.0.0.1:1"), 0);
	assert_int_equal(config_add_listen(c, "ipc:///tmp/x.sock"), 0);
	assert_int_equal(config_add_listen(c, "inproc://x"), 0);
	expect_valid(f);

	/* a flag is checked by validate, not by config_add_listen */
	assert_int_equal(config_add_listen(c, "ws://127.0.0.1:2"), 0);
	expect_invalid(f, "ws://127.0.0.1:2");

	/* no listen URL at all */
	config_free(c);
	assert_int_equal(config_init(c), 0);
	free(c->listen[0]);
	c->listen[0] = NULL;
	c->n_listen = 0;
	expect_invalid(f, "listen");
}

static void validate_data_dir(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(config_set_data_dir(&f->c, ""), 0);
	expect_invalid(f, "data_dir");
}

static void free_is_idempotent(void **state)
{
	struct fixture *f = *state;

	config_free(&f->c);
	config_free(&f->c);
	assert_null(f->c.data_dir);
	assert_int_equal(f->c.n_listen, 0);
	config_free(NULL);
	/* teardown frees once more */
}

/* ---- access control --------------------------------------------------- */

#define HEX64 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/* A wildcard address binds every interface: only with allow_wildcard. */
static void wildcard_needs_flag(void **state)
{
	struct fixture *f = *state;
	const char *wild[] = { "tcp://*:7450", "tcp://0.0.0.0:7450",
			       "tcp://[::]:7450", "tcp://eth0;*:7450" };
	for (size_t i = 0; i < sizeof wild / sizeof *wild; i++) {
		char text[128];
		snprintf(text, sizeof text, "[broker]\nlisten = %s\n", wild[i]);
		assert_int_equal(load(f, text), 0);
		expect_invalid(f, "allow_wildcard");
	}
	assert_int_equal(load(f, "[broker]\nallow_wildcard = true\n"), 0);
	expect_valid(f);
	/* loopback and a named address need no flag */
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(load(f, "[broker]\nlisten = tcp://127.0.0.1:1\n"
				 "listen = tcp://10.0.0.5:2\n"),
			 0);
	expect_valid(f);
}

static void keys_parse(void **state)
{
	struct fixture *f = *state;
	struct config *c = &f->c;
	assert_int_equal(load(f, "[access]\nrequest_window = 30s\n"
				 "[key scheduler]\nrole = producer\n"
				 "secret = " HEX64 "\n"
				 "topics = settlement.*, payments.close\n"
				 "[key ops]\nroles = operator, consumer\n"
				 "secret = " HEX64 "\n"
				 "subscriptions = *\n"),
			 0);
	expect_valid(f);
	assert_int_equal(c->n_keys, 2);
	assert_int_equal(c->request_window_ms, 30000);
	assert_string_equal(c->keys[0].id, "scheduler");
	assert_int_equal(c->keys[0].roles, ROLE_PRODUCER);
	assert_int_equal(c->keys[0].n_topics, 2);
	assert_string_equal(c->keys[0].topics[0], "settlement.*");
	assert_string_equal(c->keys[0].topics[1], "payments.close");
	assert_int_equal(c->keys[0].secret[1], 0x11);
	assert_int_equal(c->keys[1].roles, ROLE_OPERATOR | ROLE_CONSUMER);
	assert_int_equal(c->keys[1].n_subs, 1);
}

static void keys_invalid(void **state)
{
	struct fixture *f = *state;
	/* a bad secret is reported without echoing it */
	assert_int_equal(load(f, "[key a]\nsecret = 1234\n"), EINVAL);
	assert_non_null(strstr(f->err, "secret must be 64 hex digits"));
	assert_null(strstr(f->err, "1234"));
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(load(f, "[key a]\nrole = admin\n"), EINVAL);
	assert_non_null(strstr(f->err, "role must be"));
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(load(f, "[key a]\ncolour = red\n"), EINVAL);
	assert_non_null(strstr(f->err, "unknown key 'colour' in [key a]"));
	/* a key needs a role and a secret; producers topics, consumers
	 * subscriptions */
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(load(f, "[key a]\nrole = producer\n"), 0);
	expect_invalid(f, "needs a role and a secret");
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(
		load(f, "[key a]\nrole = producer\nsecret = " HEX64 "\n"), 0);
	expect_invalid(f, "list its topics");
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(
		load(f, "[key a]\nrole = consumer\nsecret = " HEX64 "\n"), 0);
	expect_invalid(f, "list its subscriptions");
}

/* secret_file: read, and refused when others may read it. */
static void secret_file(void **state)
{
	struct fixture *f = *state;
	char text[PATH_MAX + 128];
	const char *path = write_file(f, "k.secret", HEX64 "\n");
	char kpath[PATH_MAX + 64];
	snprintf(kpath, sizeof kpath, "%s", path);
	assert_int_equal(chmod(kpath, 0644), 0);
	snprintf(text, sizeof text,
		 "[key a]\nrole = operator\n"
		 "secret_file = %s\n",
		 kpath);
	assert_int_equal(load(f, text), EINVAL);
	assert_non_null(strstr(f->err, "can be read by others"));
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(chmod(kpath, 0600), 0);
	assert_int_equal(load(f, text), 0);
	expect_valid(f);
	assert_int_equal(f->c.keys[0].secret[31], 0xff);
}

/* [http]: listen (repeatable, off), the default rule, TLS pairs, limits. */
static void http_settings(void **state)
{
	struct fixture *f = *state;
	/* defaults everywhere: HTTP on 127.0.0.1:7451 */
	config_resolve_http(&f->c);
	assert_int_equal(f->c.n_http_listen, 1);
	assert_string_equal(f->c.http_listen[0], CONFIG_HTTP_DEFAULT);
	expect_valid(f);
	/* native endpoints named: HTTP only where asked */
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(load(f, "[broker]\nlisten = tcp://127.0.0.1:9\n"), 0);
	config_resolve_http(&f->c);
	assert_int_equal(f->c.n_http_listen, 0);
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(load(f, "[http]\nlisten = 127.0.0.1:1\n"
				 "listen = [::1]:2\ntimeout = 5s\n"
				 "max_connections = 7\n"
				 "max_connections_per_ip = 3\n"),
			 0);
	config_resolve_http(&f->c);
	assert_int_equal(f->c.n_http_listen, 2);
	assert_string_equal(f->c.http_listen[1], "[::1]:2");
	assert_int_equal(f->c.http_timeout_ms, 5000);
	assert_int_equal(f->c.http_max_connections, 7);
	assert_int_equal(f->c.http_max_connections_per_ip, 3);
	/* a flag replaces the file's list; off empties it */
	assert_int_equal(config_add_http_listen(&f->c, "127.0.0.1:3", 1), 0);
	assert_int_equal(f->c.n_http_listen, 1);
	assert_int_equal(config_add_http_listen(&f->c, "off", 0), 0);
	assert_int_equal(f->c.n_http_listen, 0);
	config_resolve_http(&f->c);
	assert_int_equal(f->c.n_http_listen, 0); /* off stays off */
	assert_int_equal(config_add_http_listen(&f->c, "nohost", 0), EINVAL);
	assert_int_equal(config_add_http_listen(&f->c, "h:0", 0), EINVAL);
	assert_int_equal(config_add_http_listen(&f->c, "h:65536", 0), EINVAL);
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(load(f, "[http]\nlisten = 1.2.3.4\n"), EINVAL);
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(load(f, "[http]\nlisten = 0.0.0.0:80\n"), 0);
	expect_invalid(f, "binds every interface");
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(load(f, "[http]\ntls_cert = /x.pem\n"), 0);
	expect_invalid(f, "tls_cert and tls_key go together");
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(load(f, "[http]\ntimeout = 10ms\n"), 0);
	expect_invalid(f, "timeout at least 1s");
}

/* token and token_file: a key may have a token and no secret; only the
 * hash is kept, and such a key gets a secret nobody knows. */
static void tokens(void **state)
{
	struct fixture *f = *state;
	static const uint8_t zero[CONFIG_SECRET_BYTES];
	assert_int_equal(load(f, "[key a]\nrole = operator\n"
				 "token = abcdefghijklmnop\n"),
			 0);
	expect_valid(f);
	assert_true(f->c.keys[0].has_token);
	assert_false(f->c.keys[0].has_secret);
	assert_memory_not_equal(f->c.keys[0].secret, zero, sizeof zero);
	assert_memory_not_equal(f->c.keys[0].token_hash, "abcdefghijklmnop",
				16);
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(load(f, "[key a]\nrole = operator\ntoken = short\n"),
			 EINVAL);
	assert_non_null(strstr(f->err, "token must be 16-512"));
	assert_null(strstr(f->err, "short")); /* never echoed */
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	char text[PATH_MAX + 128], kpath[PATH_MAX + 64];
	snprintf(kpath, sizeof kpath, "%s",
		 write_file(f, "k.token", "0123456789abcdefXYZ\n"));
	assert_int_equal(chmod(kpath, 0640), 0);
	snprintf(text, sizeof text,
		 "[key a]\nrole = operator\ntoken_file = %s\n", kpath);
	assert_int_equal(load(f, text), EINVAL);
	assert_non_null(strstr(f->err, "can be read by others"));
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(chmod(kpath, 0600), 0);
	assert_int_equal(load(f, text), 0);
	expect_valid(f);
}

/* [push] deny_private (default off) and a key's push_urls patterns. */
static void push_settings(void **state)
{
	struct fixture *f = *state;
	struct config *c = &f->c;
	assert_int_equal(c->push_deny_private, 0);
	assert_int_equal(load(f, "[push]\ndeny_private = yes\n"
				 "[key ops]\nrole = operator\n"
				 "secret = " HEX64 "\n"
				 "push_urls = https://*.internal/*, "
				 "http://127.0.0.1:*\n"),
			 0);
	expect_valid(f);
	assert_int_equal(c->push_deny_private, 1);
	assert_int_equal(c->keys[0].n_push_urls, 2);
	assert_string_equal(c->keys[0].push_urls[0], "https://*.internal/*");
	assert_string_equal(c->keys[0].push_urls[1], "http://127.0.0.1:*");
	config_free(&f->c);
	assert_int_equal(config_init(&f->c), 0);
	assert_int_equal(load(f, "[push]\ndeny_private = maybe\n"), EINVAL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(defaults),
		T(wildcard_needs_flag),
		T(keys_parse),
		T(keys_invalid),
		T(secret_file),
		T(file_overrides_every_key),
		T(partial_file_keeps_defaults),
		T(empty_file),
		T(later_key_wins),
		T(booleans),
		T(repeated_listen_replaces_default),
		T(listen_default_url_in_file),
		T(listen_max_in_file),
		T(add_listen_replaces_default_then_appends),
		T(add_listen_too_many),
		T(command_line_after_file),
		T(second_file_replaces_listen),
		T(unknown_key),
		T(unknown_section),
		T(key_in_wrong_section),
		T(key_before_any_section),
		T(bad_values),
		T(range_edges),
		T(syntax_errors),
		T(first_error_wins),
		T(line_too_long),
		T(missing_file),
		T(directory_is_not_a_file),
		T(small_error_buffer),
		T(validate_backoff),
		T(validate_backoff_from_file),
		T(validate_attempts_and_deadline),
		T(validate_limits_nonzero),
		T(validate_limits_from_file),
		T(validate_payload_vs_request),
		T(validate_listen),
		T(validate_data_dir),
		T(free_is_idempotent),
		T(http_settings),
		T(tokens),
		T(push_settings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
