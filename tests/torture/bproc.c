/* bproc.c — see bproc.h. */
#include "bproc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "handoff.h"

/* The config of every run: long polls as long as a consumer asks, the
 * rest default (dedup window 24 h, history 7 d: nothing the checker asks
 * about is cleaned away during a run). */
static const char CONFIG[] = "; written by handoff-torture\n"
			     "[limits]\n"
			     "max_wait = 60s\n";

int bp_init(struct bproc *b, const char *exe, const char *dir, char *err,
	    size_t errlen)
{
	memset(b, 0, sizeof(*b));
	if (snprintf(b->exe, sizeof(b->exe), "%s", exe) >=
		    (int)sizeof(b->exe) ||
	    snprintf(b->dir, sizeof(b->dir), "%s", dir) >=
		    (int)sizeof(b->dir)) {
		snprintf(err, errlen, "path too long");
		return -1;
	}
	tt_fmt(b->data, sizeof(b->data), "%s/data", dir);
	tt_fmt(b->config, sizeof(b->config), "%s/handoffd.ini", dir);
	tt_fmt(b->log, sizeof(b->log), "%s/broker.log", dir);
	tt_fmt(b->sock, sizeof(b->sock), "%s/b.sock", dir);
	tt_fmt(b->url, sizeof(b->url), "ipc://%s", b->sock);
	/* nanomsg asserts on an ipc path of 108 bytes or more */
	if (strlen(b->sock) >= 100) {
		snprintf(err, errlen,
			 "socket path %s is too long (< 100 bytes)", b->sock);
		return -1;
	}
	if (access(exe, X_OK)) {
		snprintf(err, errlen, "handoffd %s: %s", exe, strerror(errno));
		return -1;
	}
	int rc = tt_mkdirs(b->data);
	if (!rc)
		rc = tt_write_file(b->config, CONFIG);
	if (rc) {
		snprintf(err, errlen, "%s: %s", dir, strerror(rc));
		return -1;
	}
	return 0;
}

int bp_spawn(struct bproc *b, char *const extra_env[], const char *note)
{
	struct stat sb;
	char *argv[] = { b->exe, "--data",   b->data,	"--listen",
			 b->url, "--config", b->config, NULL };
	/* A killed broker leaves its socket file: the new one must not look
	 * ready before it listens. */
	unlink(b->sock);
	b->starts++;
	FILE *f = fopen(b->log, "a");
	if (f) {
		fprintf(f, "---- torture: spawn %u%s%s ----\n", b->starts,
			note && *note ? ": " : "", note ? note : "");
		fclose(f);
	}
	b->log_off = stat(b->log, &sb) == 0 ? (uint64_t)sb.st_size : 0;
	b->exited = false;
	b->status = 0;
	b->spawn_ns = tt_mono_ns();
	b->pid = tt_spawn(argv, extra_env, b->log);
	if (b->pid < 0) {
		b->pid = 0;
		return errno;
	}
	return 0;
}

bool bp_alive(struct bproc *b)
{
	if (b->pid <= 0)
		return false;
	int st;
	if (tt_wait(b->pid, 0, &st)) {
		b->status = st;
		b->exited = true;
		b->pid = 0;
		return false;
	}
	return true;
}

enum bp_ready bp_wait_ready(struct bproc *b, uint32_t timeout_ms,
			    uint64_t *ready_ns)
{
	uint64_t until = tt_mono_ns() + (uint64_t)timeout_ms * 1000000u;
	struct stat sb;
	while (stat(b->sock, &sb) != 0) {
		if (!bp_alive(b))
			return BP_EXITED;
		if (tt_mono_ns() >= until)
			return BP_TIMEOUT;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	for (;;) {
		handoff_options o = { .deadline_ms = 1000,
				      .attempt_timeout_ms = 250,
				      .consumer_name = "torture-ping" };
		handoff_client *c = NULL;
		int rc = handoff_connect(b->url, &o, &c);
		if (rc == HANDOFF_OK) {
			if (ready_ns)
				*ready_ns = tt_mono_ns() - b->spawn_ns;
			handoff_close(c);
			return BP_READY;
		}
		if (!bp_alive(b))
			return BP_EXITED;
		if (tt_mono_ns() >= until)
			return BP_TIMEOUT;
	}
}

void bp_kill9(struct bproc *b)
{
	if (b->pid <= 0)
		return;
	kill(b->pid, SIGKILL);
	int st = 0;
	tt_wait(b->pid, 60000, &st);
	b->status = st;
	b->exited = true;
	b->pid = 0;
}

bool bp_wait_exit(struct bproc *b, uint32_t timeout_ms)
{
	if (b->pid <= 0)
		return true;
	int st = 0;
	if (!tt_wait(b->pid, timeout_ms, &st))
		return false;
	b->status = st;
	b->exited = true;
	b->pid = 0;
	return true;
}

bool bp_term(struct bproc *b, uint32_t timeout_ms)
{
	if (b->pid <= 0)
		return true;
	kill(b->pid, SIGTERM);
	if (bp_wait_exit(b, timeout_ms))
		return true;
	bp_kill9(b);
	return false;
}

bool bp_log_since_spawn(const struct bproc *b, const char *needle)
{
	size_t len = 0;
	char *buf = tt_read_file(b->log, &len);
	if (!buf)
		return false;
	bool found = b->log_off <= len && strstr(buf + b->log_off, needle);
	free(buf);
	return found;
}
