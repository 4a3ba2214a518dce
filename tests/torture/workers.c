/* workers.c — see workers.h. */
#include "workers.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "roles.h"

static void name_worker(struct worker *w)
{
	switch (w->role) {
	case WK_PRODUCER:
		snprintf(w->name, sizeof(w->name), "p%dg%u", w->slot, w->gen);
		break;
	case WK_CONSUMER:
		snprintf(w->name, sizeof(w->name), "c%ds%dg%u", w->sub, w->slot,
			 w->gen);
		break;
	case WK_CLEAN:
		snprintf(w->name, sizeof(w->name), "d%ds%dg%u", w->sub, w->slot,
			 w->gen);
		break;
	case WK_RECEIVER:
		snprintf(w->name, sizeof(w->name), "h%dg%u", w->slot, w->gen);
		break;
	}
}

/* RUN/logs/SLOT.log: p0s1, c1s0, d0s0, h0s0 */
static void log_path(const struct workers *ws, const struct worker *w,
		     char *out, size_t outlen)
{
	bool subless = w->role == WK_PRODUCER || w->role == WK_RECEIVER;
	snprintf(out, outlen, "%s/logs/%c%ds%d.log", ws->dir,
		 w->role == WK_PRODUCER ? 'p' :
		 w->role == WK_CONSUMER ? 'c' :
		 w->role == WK_RECEIVER ? 'h' :
					  'd',
		 subless ? 0 : w->sub, w->slot);
}

static int spawn(struct workers *ws, struct worker *w)
{
	char seed[32], rate[32], log[TT_PATH + 64];
	const char *role = w->role == WK_PRODUCER ? "producer" :
			   w->role == WK_RECEIVER ? "receiver" :
						    "consumer";
	char *argv[20];
	int n = 0;
	w->gen++;
	name_worker(w);
	snprintf(seed, sizeof(seed), "%llu",
		 (unsigned long long)(ws->seed + ws->spawned));
	snprintf(rate, sizeof(rate), "%u", ws->rate);
	log_path(ws, w, log, sizeof(log));
	argv[n++] = ws->self;
	argv[n++] = "--role";
	argv[n++] = (char *)role;
	argv[n++] = "--url";
	argv[n++] = ws->url;
	argv[n++] = "--dir";
	argv[n++] = ws->dir;
	argv[n++] = "--name";
	argv[n++] = w->name;
	argv[n++] = "--seed";
	argv[n++] = seed;
	if (w->role == WK_PRODUCER) {
		argv[n++] = "--rate";
		argv[n++] = rate;
	} else if (w->role != WK_RECEIVER) {
		argv[n++] = "--sub";
		argv[n++] = (char *)ws->subs[w->sub];
	}
	if (w->role == WK_CLEAN)
		argv[n++] = "--clean";
	argv[n] = NULL;
	w->pid = tt_spawn(argv, NULL, log);
	if (w->pid < 0) {
		w->pid = 0;
		return errno;
	}
	ws->spawned++;
	return 0;
}

int wk_add(struct workers *ws, enum wk_role role, int sub, int slot)
{
	if (ws->n == WK_MAX)
		return ENOSPC;
	struct worker *w = &ws->w[ws->n++];
	memset(w, 0, sizeof(*w));
	w->role = role;
	w->sub = sub;
	w->slot = slot;
	return spawn(ws, w);
}

static bool chaos_death(int st)
{
	return (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) ||
	       (WIFEXITED(st) && WEXITSTATUS(st) == ROLE_EXIT_CHAOS);
}

static void failed(struct workers *ws, const struct worker *w, int st)
{
	char how[64], log[TT_PATH + 64];
	tt_status_text(st, how, sizeof(how));
	ws->failures++;
	fprintf(stderr, "torture: event=worker_failed name=%s status=\"%s\"\n",
		w->name, how);
	log_path(ws, w, log, sizeof(log));
	tt_tail(log, stderr, 20);
}

void wk_reap(struct workers *ws, bool respawn)
{
	for (size_t i = 0; i < ws->n; i++) {
		struct worker *w = &ws->w[i];
		int st = 0;
		if (w->pid <= 0 || !tt_wait(w->pid, 0, &st))
			continue;
		w->pid = 0;
		if (!chaos_death(st) || w->role == WK_RECEIVER) {
			/* nobody asked it to stop: any exit is a failure;
			 * the receiver is never respawned (its port is in the
			 * push subscriptions) */
			failed(ws, w, st);
			continue;
		}
		ws->chaos_deaths++;
		if (respawn && spawn(ws, w))
			fprintf(stderr,
				"torture: event=respawn_failed name=%s "
				"error=%s\n",
				w->name, strerror(errno));
	}
}

unsigned wk_stop(struct workers *ws, int role, uint32_t timeout_ms)
{
	unsigned killed = 0;
	for (size_t i = 0; i < ws->n; i++) {
		struct worker *w = &ws->w[i];
		if (w->pid > 0 && (role < 0 || (int)w->role == role))
			kill(w->pid, SIGTERM);
	}
	for (size_t i = 0; i < ws->n; i++) {
		struct worker *w = &ws->w[i];
		int st = 0;
		if (w->pid <= 0 || !(role < 0 || (int)w->role == role))
			continue;
		if (!tt_wait(w->pid, timeout_ms, &st)) {
			char path[TT_PATH + 96];
			tt_fmt(path, sizeof(path), "%s/logs/stuck-%s.txt",
			       ws->dir, w->name);
			tt_diagnose(w->pid, path, "no exit 30 s after SIGTERM");
			fprintf(stderr,
				"torture: event=worker_stuck name=%s "
				"diagnosis=%s\n",
				w->name, path);
			kill(w->pid, SIGKILL);
			tt_wait(w->pid, 10000, &st);
			killed++;
			fprintf(stderr,
				"torture: event=worker_stop_timeout name=%s\n",
				w->name);
		} else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
			ws->stopped++;
		} else if (chaos_death(st)) {
			ws->chaos_deaths++; /* it died by design before the TERM */
		} else {
			failed(ws, w, st);
		}
		w->pid = 0;
	}
	return killed;
}

void wk_signal(struct workers *ws, int role, int sig)
{
	for (size_t i = 0; i < ws->n; i++)
		if (ws->w[i].pid > 0 && (int)ws->w[i].role == role)
			kill(ws->w[i].pid, sig);
}

void wk_kill_all(struct workers *ws)
{
	for (size_t i = 0; i < ws->n; i++)
		if (ws->w[i].pid > 0)
			kill(ws->w[i].pid, SIGKILL);
	for (size_t i = 0; i < ws->n; i++) {
		if (ws->w[i].pid > 0)
			tt_wait(ws->w[i].pid, 10000, NULL);
		ws->w[i].pid = 0;
	}
}
