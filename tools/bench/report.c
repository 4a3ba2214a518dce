/*
 * report.c — what handoff-bench prints: a header naming the machine, the
 * date and the exact command; the ceilings measured in the run; one table
 * row per scenario; notes. --json prints the same as one JSON object.
 *
 * Ratios divide handoff's figure by a ceiling measured in the same run:
 *   lmdb100     events/s / LMDB events/s at 100 puts per durable commit
 *   lmdb1       events/s / LMDB durable commits/s at 1 put per commit
 *   nn          events/s / nanomsg PUSH/PULL tcp msgs/s
 *   k4          events/s / publish-k4-e100's events/s (fan-out cost)
 *   p99/commit  confirm p99 / LMDB single-put commit p99
 *   native      an HTTP or push scenario's events/s / its native twin's
 *               events/s
 *               (the same shape over handoff.h, run just before it on
 *               the same broker); each has a target, printed as met or
 *               MISSED (never a failure: the machines are noisy)
 * and for the scenarios run only when named (targets in the notes):
 *   rss N/probe        backlog: RssAnon with N stored / with N_probe
 *   drain/e2e          backlog: drain acks/s / empty-queue e2e events/s
 *   restart large/small, kill large/small
 *                      restart: spawn -> first fetch, large backlog /
 *                      small, after SIGTERM / after kill -9
 *   absent, failing, slow, expiring
 *                      neighbour: H's acks/s beside N so behaving / beside
 *                      a healthy N (the healthy phases just before and
 *                      after; the median over the rounds)
 *   healthy/alone      neighbour: H beside a healthy N / H alone (the
 *                      fan-out cost; information only)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

/* ---- machine ------------------------------------------------------------- */

static void cpu_model(char *out, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];

	snprintf(out, len, "unknown");
	if (f == NULL)
		return;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, "model name", 10) != 0)
			continue;
		char *v = strchr(line, ':');
		if (v == NULL)
			continue;
		v++;
		while (*v == ' ' || *v == '\t')
			v++;
		v[strcspn(v, "\n")] = '\0';
		snprintf(out, len, "%s", v);
		break;
	}
	fclose(f);
}

/* Shell-quote arg when it needs it, appending to out. */
static void append_arg(char *out, size_t len, const char *arg)
{
	size_t at = strlen(out);
	bool plain = arg[0] != '\0' &&
		     strspn(arg, "abcdefghijklmnopqrstuvwxyz"
				 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
				 "-_./=:,+@%") == strlen(arg);

	if (at && at + 1 < len)
		out[at++] = ' ';
	if (!plain && at + 1 < len)
		out[at++] = '\'';
	for (const char *p = arg; *p && at + 5 < len; p++) {
		if (*p == '\'' && !plain) {
			memcpy(out + at, "'\\''", 4);
			at += 4;
		} else {
			out[at++] = *p;
		}
	}
	if (!plain && at + 1 < len)
		out[at++] = '\'';
	out[at < len ? at : len - 1] = '\0';
}

void machine_info_read(struct machine_info *m, int argc, char **argv)
{
	struct utsname u;
	time_t now = time(NULL);
	struct tm tm;

	memset(m, 0, sizeof *m);
	m->nproc = sysconf(_SC_NPROCESSORS_ONLN);
	if (uname(&u) == 0)
		snprintf(m->kernel, sizeof m->kernel, "%s %s", u.sysname,
			 u.release);
	else
		snprintf(m->kernel, sizeof m->kernel, "unknown");
	cpu_model(m->cpu, sizeof m->cpu);
	if (gmtime_r(&now, &tm))
		strftime(m->date, sizeof m->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
	for (int i = 0; i < argc; i++)
		append_arg(m->command, sizeof m->command, argv[i]);
}

/* ---- ratios -------------------------------------------------------------- */

/* spawn -> first fetch of the case (size, sig); 0 when it did not run */
static double restart_fetch_ms(const struct restart_result *rs,
			       const char *size, int sig)
{
	for (int i = 0; i < rs->n; i++)
		if (rs->c[i].sig == sig && strcmp(rs->c[i].size, size) == 0)
			return rs->c[i].fetch_ms;
	return 0;
}

static void add_ratio(struct scen_result *r, const char *name, double num,
		      double den)
{
	if (r->n_ratios >= MAX_RATIOS || den <= 0 || num <= 0)
		return;
	r->ratios[r->n_ratios].name = name;
	r->ratios[r->n_ratios].value = num / den;
	r->n_ratios++;
}

void ratios_compute(struct scen_result *r, const struct ceilings *c,
		    const struct scen_result *all, int n_all)
{
	unsigned k = r->p.ratios;

	r->n_ratios = 0;
	if (!r->ran || r->failed)
		return;
	if ((k & RATIO_NATIVE) && r->p.twin) {
		/* the twin run just before r (the selection puts it there) */
		r->twin_per_s = 0;
		for (int i = (int)(r - all) - 1; i >= 0 && i < n_all; i--) {
			const struct scen_result *o = &all[i];
			if (strcmp(o->p.name, r->p.twin) != 0)
				continue;
			if (o->ran && !o->failed)
				r->twin_per_s = o->events_per_s;
			break;
		}
		add_ratio(r, "native", r->events_per_s, r->twin_per_s);
	}
	if ((k & RATIO_LMDB100) && c->ran && c->lmdb100.ok)
		add_ratio(r, "lmdb100", r->events_per_s,
			  c->lmdb100.events_per_s);
	if ((k & RATIO_LMDB1) && c->ran && c->lmdb1.ok)
		add_ratio(r, "lmdb1", r->events_per_s, c->lmdb1.events_per_s);
	if ((k & RATIO_NN) && c->ran && c->nn.ok)
		add_ratio(r, "nn", r->events_per_s, c->nn.msgs_per_s);
	if (k & RATIO_K4) {
		for (int i = 0; i < n_all; i++) {
			const struct scen_result *o = &all[i];
			if (o != r && o->ran && !o->failed &&
			    strcmp(o->p.name, "publish-k4-e100") == 0)
				add_ratio(r, "k4", r->events_per_s,
					  o->events_per_s);
		}
	}
	if ((k & RATIO_P99) && c->ran && c->lmdb1.ok && r->confirm)
		add_ratio(r, "p99/commit",
			  (double)hist_quantile(r->confirm, 0.99),
			  (double)c->lmdb1.p99_ns);
	if ((k & RATIO_BACKLOG) && r->bl.ran) {
		add_ratio(r, "rss N/probe", (double)r->bl.rss_full_kb,
			  (double)r->bl.rss_probe_kb);
		add_ratio(r, "drain/e2e", r->bl.drain_per_s, r->bl.e2e_per_s);
	}
	if ((k & RATIO_NEIGHBOUR) && r->nb.ran) {
		const struct neighbour_result *nb = &r->nb;
		for (int i = 0; i < NEIGHBOUR_BEHAVIOURS; i++) {
			const struct neighbour_summary *b = &nb->beh[i];
			if (b->n == 0 || r->n_ratios >= MAX_RATIOS)
				continue;
			/* not add_ratio: H stalled (0) is a figure here */
			r->ratios[r->n_ratios].name = b->name;
			r->ratios[r->n_ratios].value = b->ratio;
			r->n_ratios++;
		}
		add_ratio(r, "healthy/alone", nb->baseline_per_s,
			  nb->alone_per_s);
	}
	if (k & RATIO_RESTART) {
		static const int sigs[] = { SIGTERM, SIGKILL };
		for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
			double large =
				restart_fetch_ms(&r->rs, "large", sigs[i]);
			double small =
				restart_fetch_ms(&r->rs, "small", sigs[i]);
			add_ratio(r,
				  sigs[i] == SIGTERM ? "restart large/small" :
						       "kill large/small",
				  large, small);
		}
	}
}

/* ---- table --------------------------------------------------------------- */

/* 1234567.8 -> "1,234,568" */
static const char *grouped(char *buf, size_t len, double v)
{
	char digits[32];

	if (v < 0)
		v = 0;
	snprintf(digits, sizeof digits, "%.0f", v);
	return bench_group_digits(buf, len, digits);
}

static void ms_cell(FILE *f, const struct hist *h, double q)
{
	if (h == NULL || h->count == 0)
		fprintf(f, " %7s", "-");
	else
		fprintf(f, " %7.3f", (double)hist_quantile(h, q) / 1e6);
}

static void params_text(char *out, size_t len, const struct scen_params *p,
			double duration)
{
	int n = snprintf(out, len,
			 "%d producer%s x %d event%s/request, %d "
			 "subscription%s",
			 p->producers, p->producers == 1 ? "" : "s", p->batch,
			 p->batch == 1 ? "" : "s", p->subs,
			 p->subs == 1 ? "" : "s");
	if (n < 0 || (size_t)n >= len)
		return;
	if (p->consumers > 0)
		n += snprintf(out + n, len - (size_t)n,
			      ", %d consumer%s fetching %d (%s)", p->consumers,
			      p->consumers == 1 ? "" : "s", p->fetch_batch,
			      p->ack_each ? "ack each" : "ack per fetch");
	if (n < 0 || (size_t)n >= len)
		return;
	if (p->consumers > 0 && p->backlog > 0)
		n += snprintf(out + n, len - (size_t)n, ", backlog cap %ld",
			      p->backlog);
	if (n < 0 || (size_t)n >= len)
		return;
	if (p->rate > 0)
		snprintf(out + n, len - (size_t)n,
			 ", open loop %.0f/s for %.0f s", p->rate, duration);
	else
		snprintf(out + n, len - (size_t)n, ", closed loop for %.0f s",
			 duration);
}

static void notes_cpu(FILE *f, const struct scen_result *s)
{
	if (s->elapsed_s <= 0)
		return;
	fprintf(f, "    CPU: ");
	if (s->broker_cpu_s >= 0)
		fprintf(f, "broker %.2f s (%.0f%% of a core), ",
			s->broker_cpu_s, 100 * s->broker_cpu_s / s->elapsed_s);
	fprintf(f, "handoff-bench %.2f s (%.0f%%) over %.1f s\n",
		s->bench_cpu_s, 100 * s->bench_cpu_s / s->elapsed_s,
		s->elapsed_s);
}

static const char *target_text(double v, bool at_most, double target)
{
	if (v <= 0)
		return "";
	return (at_most ? v <= target : v >= target) ? " (target met)" :
						       " (target MISSED)";
}

static void notes_backlog(FILE *f, const struct scen_result *s)
{
	const struct backlog_result *b = &s->bl;
	char a[32], c[32], d[32];

	fprintf(f,
		"  %s: 4 producers x 100 events/request fill 1 subscription "
		"to %s events (RssAnon probe at %s),\n"
		"    then 4 consumers fetching 250 (ack per fetch) drain it\n",
		s->p.name, grouped(a, sizeof a, (double)b->events),
		grouped(c, sizeof c, (double)b->probe));
	if (b->fill_s > 0)
		fprintf(f, "    fill:    %s published in %.1f s (%s/s)\n",
			grouped(a, sizeof a, (double)s->published), b->fill_s,
			grouped(c, sizeof c, b->fill_per_s));
	if (b->rss_probe_kb && b->rss_full_kb) {
		double ratio = (double)b->rss_full_kb / (double)b->rss_probe_kb;
		fprintf(f,
			"    RssAnon: %.1f MiB at %s events, %.1f MiB at %s: "
			"ratio %.2f, target <= 1.2%s\n",
			(double)b->rss_probe_kb / 1024.0,
			grouped(a, sizeof a, (double)b->probe),
			(double)b->rss_full_kb / 1024.0,
			grouped(c, sizeof c, (double)b->events), ratio,
			target_text(ratio, true, 1.2));
	}
	if (b->data_bytes)
		fprintf(f,
			"    disk:    %.0f B/event at %s (data.mdb %.1f MiB, "
			"broker stores %s events)\n",
			b->bytes_per_event,
			grouped(a, sizeof a, (double)b->events),
			(double)b->data_bytes / 1048576.0,
			grouped(c, sizeof c, (double)b->events_stored));
	if (b->drain_s > 0) {
		double ratio =
			b->e2e_per_s > 0 ? b->drain_per_s / b->e2e_per_s : 0;
		fprintf(f, "    drain:   %s acked in %.1f s = %s acks/s",
			grouped(a, sizeof a, (double)b->drained), b->drain_s,
			grouped(c, sizeof c, b->drain_per_s));
		if (b->e2e_per_s > 0)
			fprintf(f,
				"; empty-queue e2e-batched %s events/s (%s): "
				"ratio %.2f, target >= 0.8%s",
				grouped(d, sizeof d, b->e2e_per_s),
				b->e2e_reused ? "from this run" :
						"run first on the same broker",
				ratio, target_text(ratio, false, 0.8));
		fputc('\n', f);
	}
	notes_cpu(f, s);
	if (s->note[0])
		fprintf(f, "    note: %s\n", s->note);
	if (s->failed)
		fprintf(f, "    FAILED: %s\n", s->error);
}

static void notes_restart(FILE *f, const struct scen_result *s)
{
	const struct restart_result *rs = &s->rs;
	char a[32], c[32];

	fprintf(f,
		"  %s: publish a backlog (4 producers x 100 events/request), "
		"lease part of it (fetches of\n"
		"    1000, ack deadline 10 min), stop the broker, start it on the "
		"same folder; times from the spawn\n",
		s->p.name);
	if (rs->n > 0)
		fprintf(f, "    %-8s %-6s %11s %9s %9s %10s %9s %12s\n", "stop",
			"size", "pending", "leased", "stop ms", "listen ms",
			"conn ms", "1st fetch ms");
	for (int i = 0; i < rs->n; i++) {
		const struct restart_case *k = &rs->c[i];
		fprintf(f,
			"    %-8s %-6s %11s %9s %9.1f %10.1f %9.1f %12.1f%s\n",
			k->sig == SIGKILL ? "kill -9" : "SIGTERM", k->size,
			grouped(a, sizeof a, (double)k->pending),
			grouped(c, sizeof c, (double)k->leased), k->stop_ms,
			k->listen_ms, k->connect_ms, k->fetch_ms,
			k->term_timed_out ? "  (SIGTERM timed out: killed)" :
					    "");
	}
	for (int i = 0; i < s->n_ratios; i++)
		fprintf(f, "    %s: %.2f, target <= 2%s\n", s->ratios[i].name,
			s->ratios[i].value,
			target_text(s->ratios[i].value, true, 2));
	if (rs->large_data_bytes)
		fprintf(f,
			"    disk (large): data.mdb %.1f MiB, broker stores %s "
			"events\n",
			(double)rs->large_data_bytes / 1048576.0,
			grouped(a, sizeof a, (double)rs->large_events_stored));
	notes_cpu(f, s);
	if (s->note[0])
		fprintf(f, "    note: %s\n", s->note);
	if (s->failed)
		fprintf(f, "    FAILED: %s\n", s->error);
}

#define NEIGHBOUR_TARGET 0.9

static void notes_neighbour(FILE *f, const struct scen_result *s,
			    double duration)
{
	const struct neighbour_result *nb = &s->nb;
	const struct scen_params *p = &s->p;
	char a[32], c[32], d[32], e[32], g[32];

	fprintf(f,
		"  %s: topic T, healthy subscription H: %d consumers fetching "
		"%d (ack per fetch); %d producers x %d\n"
		"    events/request, closed loop, waiting while H has more "
		"than %s unacked; neighbour N: a second\n"
		"    subscription on T whose %d consumers do what the phase "
		"says. Each phase %.1f s on a broker of its\n"
		"    own, H measured after %.1f s of warm-up; %d round%s. "
		"ratio = H acks/s / H acks/s in the healthy\n"
		"    phases just before and after (healthy, alone: / the mean "
		"of all healthy phases); x p99 likewise\n"
		"    for H's publish -> fetch p99. Target: ratio >= %.1f.\n",
		p->name, p->consumers, p->fetch_batch, p->producers, p->batch,
		grouped(a, sizeof a, (double)p->backlog), p->consumers,
		duration, nb->warmup_s, nb->rounds, nb->rounds == 1 ? "" : "s",
		NEIGHBOUR_TARGET);
	for (int i = 0; i < nb->n; i++) {
		if (!nb->ph[i].push)
			continue;
		fprintf(f,
			"    push-...: H and N are push subscriptions "
			"(concurrency 16 each) to receivers in handoff-bench;\n"
			"    H acks/s = POSTs H's receiver got in the window, "
			"p50/p99 = publish -> POST received;\n"
			"    ratio / the push-healthy phases just before and "
			"after. N's consumer: handoffd's push thread.\n");
		break;
	}
	if (nb->n > 0)
		fprintf(f,
			"    %-2s %-12s %9s %6s %-6s %7s %7s %5s  %9s %9s %9s "
			"%9s %9s %4s %4s %7s\n",
			"#", "phase", "H acks/s", "ratio", "", "p50 ms",
			"p99 ms", "x p99", "N deliv", "N acked", "N nacked",
			"N expired", "N backlog", "brk%", "N%", "log MiB");
	for (int i = 0; i < nb->n; i++) {
		const struct neighbour_phase *ph = &nb->ph[i];
		bool bad = !ph->baseline && strcmp(ph->name, "alone") != 0;
		if (!ph->ran) {
			fprintf(f, "    %-2d %-12s did not finish\n", i + 1,
				ph->name);
			continue;
		}
		fprintf(f, "    %-2d %-12s %9s", i + 1, ph->name,
			grouped(a, sizeof a, ph->h_per_s));
		if (ph->ratio >= 0)
			fprintf(f, " %6.2f %-6s", ph->ratio,
				!bad			      ? "" :
				ph->ratio >= NEIGHBOUR_TARGET ? "met" :
								"MISSED");
		else
			fprintf(f, " %6s %-6s", "-", "");
		fprintf(f, " %7.2f %7.2f", (double)ph->h_p50_ns / 1e6,
			(double)ph->h_p99_ns / 1e6);
		if (ph->p99_ratio >= 0)
			fprintf(f, " %5.2f", ph->p99_ratio);
		else
			fprintf(f, " %5s", "-");
		fprintf(f, "  %9s %9s %9s %9s %9s",
			grouped(a, sizeof a, (double)ph->n_delivered),
			grouped(c, sizeof c, (double)ph->n_acked),
			grouped(d, sizeof d, (double)ph->n_nacked),
			grouped(e, sizeof e, (double)ph->n_expired),
			grouped(g, sizeof g, (double)ph->n_backlog));
		double len = ph->window_s + nb->warmup_s;
		if (ph->broker_cpu_s >= 0 && len > 0)
			fprintf(f, " %4.0f", 100 * ph->broker_cpu_s / len);
		else
			fprintf(f, " %4s", "-");
		fprintf(f, " %4.0f %7.1f\n",
			len > 0 ? 100 * ph->n_cpu_s / len : 0,
			(double)ph->log_bytes / 1048576.0);
	}
	if (nb->baseline_per_s > 0)
		fprintf(f,
			"    healthy phases: mean %s acks/s, from %s to %s "
			"(%+.0f%% / %+.0f%%: the run's noise)\n",
			grouped(a, sizeof a, nb->baseline_per_s),
			grouped(c, sizeof c, nb->healthy_min),
			grouped(d, sizeof d, nb->healthy_max),
			100 * (nb->healthy_min / nb->baseline_per_s - 1),
			100 * (nb->healthy_max / nb->baseline_per_s - 1));
	if (nb->push_baseline_per_s > 0)
		fprintf(f,
			"    push-healthy phases: mean %s POSTs/s, from %s to "
			"%s (%+.0f%% / %+.0f%%: the run's noise)\n",
			grouped(a, sizeof a, nb->push_baseline_per_s),
			grouped(c, sizeof c, nb->push_min),
			grouped(d, sizeof d, nb->push_max),
			100 * (nb->push_min / nb->push_baseline_per_s - 1),
			100 * (nb->push_max / nb->push_baseline_per_s - 1));
	if (nb->alone_per_s > 0 && nb->baseline_per_s > 0)
		fprintf(f,
			"    alone: %s acks/s; healthy/alone %.2f (the fan-out "
			"cost of a second subscription; not a target)\n",
			grouped(a, sizeof a, nb->alone_per_s),
			nb->baseline_per_s / nb->alone_per_s);
	for (int i = 0; i < NEIGHBOUR_BEHAVIOURS; i++) {
		const struct neighbour_summary *b = &nb->beh[i];
		const char *what = "";
		for (int k = 0; k < nb->n; k++)
			if (strcmp(nb->ph[k].name, b->name ? b->name : "") == 0)
				what = nb->ph[k].what;
		if (b->n == 0)
			continue;
		fprintf(f, "    %-12s ratio %.2f", b->name, b->ratio);
		if (b->n > 1)
			fprintf(f, " (median of %d: %.2f..%.2f)", b->n,
				b->ratio_min, b->ratio_max);
		/* 1e-9: target_text says nothing for 0, a stalled H */
		fprintf(f,
			", x p99 %.2f, target >= %.1f%s\n"
			"                 N's consumers: %s\n",
			b->p99_ratio, NEIGHBOUR_TARGET,
			target_text(b->ratio > 0 ? b->ratio : 1e-9, false,
				    NEIGHBOUR_TARGET),
			what);
	}
	fprintf(f,
		"    N deliv/acked/nacked/expired/backlog = the broker's "
		"counters for N at the phase's end;\n"
		"    brk%% = the phase broker's CPU, N%% = N's consumer "
		"threads' CPU (%% of one core; the cores are\n"
		"    shared by the broker, the clients and other work on the "
		"machine); log = the broker's log.\n");
	notes_cpu(f, s);
	if (s->note[0])
		fprintf(f, "    note: %s\n", s->note);
	if (s->failed)
		fprintf(f, "    FAILED: %s\n", s->error);
}

/* The ratio of an HTTP scenario to its native twin, and its target. */
static double native_ratio(const struct scen_result *s)
{
	for (int i = 0; i < s->n_ratios; i++)
		if (strcmp(s->ratios[i].name, "native") == 0)
			return s->ratios[i].value;
	return -1;
}

/* A scenario measured against its twin: the ratio and its target. */
static void notes_twin(FILE *f, const struct scen_result *s, const char *what)
{
	char a[32], b[32];
	double ratio = native_ratio(s);

	if (ratio >= 0)
		fprintf(f,
			"    %s: %s events/s vs %s's %s: ratio %.2f, target "
			">= %.1f%s\n",
			what, grouped(a, sizeof a, s->events_per_s), s->p.twin,
			grouped(b, sizeof b, s->twin_per_s), ratio, s->p.target,
			target_text(ratio, false, s->p.target));
	else if (!s->failed)
		fprintf(f,
			"    %s: no ratio (%s did not run to the end in "
			"this run), target >= %.1f\n",
			what, s->p.twin, s->p.target);
}

static void notes_http(FILE *f, const struct scen_result *s)
{
	char a[32], c[32];

	notes_twin(f, s, "HTTP");
	if (s->http_requests)
		fprintf(f,
			"    %s HTTP requests on %s connection%s "
			"(keep-alive)\n",
			grouped(a, sizeof a, (double)s->http_requests),
			grouped(c, sizeof c, (double)s->http_connects),
			s->http_connects == 1 ? "" : "s");
}

static void notes_push(FILE *f, const struct scen_result *s)
{
	char a[32], c[32];

	notes_twin(f, s, "push");
	if (s->push_received)
		fprintf(f,
			"    %s POSTs received on %s connection%s "
			"(concurrency %d), the last %.2f s after the start\n",
			grouped(a, sizeof a, (double)s->push_received),
			grouped(c, sizeof c, (double)s->push_connects),
			s->push_connects == 1 ? "" : "s", s->p.push_concurrency,
			s->push_last_s);
}

void report_table(FILE *f, const struct report *r)
{
	const struct machine_info *m = r->machine;
	const struct ceilings *c = r->ceil;
	char a[32], b[32], pt[256];

	fprintf(f, "handoff-bench %s  %s\n", HANDOFF_BENCH_VERSION, m->date);
	fprintf(f, "machine: %ld cpus, %s, %s\n", m->nproc, m->cpu, m->kernel);
	fprintf(f, "command: %s\n", m->command);
	fprintf(f, "broker:  %s %s, handoffd %s; work dir %s\n", r->mode,
		r->url, r->broker_version ? r->broker_version : "?",
		r->workdir);
	fprintf(f, "load:    %u-byte payloads, %.1f s per scenario\n",
		r->payload, r->duration_s);
	fputc('\n', f);
	if (c->ran) {
		fprintf(f, "ceilings (this run, same disk):\n");
		if (c->lmdb1.ok)
			fprintf(f,
				"  lmdb, 1 put per durable commit    %10s "
				"commits/s  commit p50 %.3f ms, p99 %.3f ms, "
				"max %.1f ms\n",
				grouped(a, sizeof a, c->lmdb1.commits_per_s),
				(double)c->lmdb1.p50_ns / 1e6,
				(double)c->lmdb1.p99_ns / 1e6,
				(double)c->lmdb1.max_ns / 1e6);
		if (c->lmdb100.ok)
			fprintf(f,
				"  lmdb, 100 puts per durable commit %10s "
				"events/s   (%s commits/s, p99 %.3f ms, "
				"max %.1f ms)\n",
				grouped(a, sizeof a, c->lmdb100.events_per_s),
				grouped(b, sizeof b, c->lmdb100.commits_per_s),
				(double)c->lmdb100.p99_ns / 1e6,
				(double)c->lmdb100.max_ns / 1e6);
		if (c->nn.ok)
			fprintf(f,
				"  nanomsg PUSH/PULL tcp 127.0.0.1   %10s "
				"msgs/s     (port %d)\n",
				grouped(a, sizeof a, c->nn.msgs_per_s),
				c->nn.port);
		if (c->error[0])
			fprintf(f, "  problem: %s\n", c->error);
		fputc('\n', f);
	}

	fprintf(f, "%-31s %-24s  %-24s  %7s\n", "", "   confirm latency (ms)",
		"   delivery latency (ms)", "RssAnon");
	fprintf(f, "%-20s %10s %7s %7s %7s   %7s %7s %7s  %7s %8s  %s\n",
		"scenario", "events/s", "p50", "p99", "p99.9", "p50", "p99",
		"p99.9", "MiB", "B/event", "ratios");
	for (int i = 0; i < r->n_results; i++) {
		const struct scen_result *s = &r->results[i];
		char name[40];
		snprintf(name, sizeof name, "%s%s", s->p.name,
			 s->p.overridden ? "*" : "");
		if (!s->ran)
			continue;
		if (s->failed) {
			fprintf(f, "%-20s %10s  FAILED: %s\n", name,
				s->elapsed_s > 0 ?
					grouped(a, sizeof a, s->events_per_s) :
					"-",
				s->error);
			continue;
		}
		fprintf(f, "%-20s %10s", name,
			s->p.kind == SCEN_RESTART ?
				"-" :
				grouped(a, sizeof a, s->events_per_s));
		ms_cell(f, s->confirm, 0.50);
		ms_cell(f, s->confirm, 0.99);
		ms_cell(f, s->confirm, 0.999);
		fputs("  ", f);
		ms_cell(f, s->deliver, 0.50);
		ms_cell(f, s->deliver, 0.99);
		ms_cell(f, s->deliver, 0.999);
		if (s->rss_peak_kb)
			fprintf(f, "  %7.1f", (double)s->rss_peak_kb / 1024.0);
		else
			fprintf(f, "  %7s", "-");
		if (s->bytes_per_event > 0)
			fprintf(f, " %8.0f", s->bytes_per_event);
		else
			fprintf(f, " %8s", "-");
		fputs(" ", f);
		for (int k = 0; k < s->n_ratios; k++)
			fprintf(f, " %.2f %s%s", s->ratios[k].value,
				s->ratios[k].name,
				k + 1 < s->n_ratios ? "," : "");
		fputc('\n', f);
	}

	fprintf(f, "\nnotes:\n");
	for (int i = 0; i < r->n_results; i++) {
		const struct scen_result *s = &r->results[i];
		if (!s->ran)
			continue;
		if (s->p.kind == SCEN_BACKLOG) {
			notes_backlog(f, s);
			continue;
		}
		if (s->p.kind == SCEN_RESTART) {
			notes_restart(f, s);
			continue;
		}
		if (s->p.kind == SCEN_NEIGHBOUR) {
			notes_neighbour(f, s, r->duration_s);
			continue;
		}
		params_text(pt, sizeof pt, &s->p, r->duration_s);
		fprintf(f, "  %s%s: %s\n", s->p.name,
			s->p.overridden ? "*" : "", pt);
		fprintf(f, "    %s published (%s/s)",
			grouped(a, sizeof a, (double)s->published),
			grouped(b, sizeof b, s->publish_per_s));
		if (s->p.consumers > 0)
			fprintf(f, ", %s acked",
				grouped(a, sizeof a, (double)s->acked));
		fprintf(f, " in %.2f s", s->elapsed_s);
		if (s->events_stored)
			fprintf(f, "; broker stores %s events in %.1f MiB",
				grouped(a, sizeof a, (double)s->events_stored),
				(double)s->data_bytes / 1048576.0);
		fputc('\n', f);
		if (s->elapsed_s > 0) {
			fprintf(f, "    CPU: ");
			if (s->broker_cpu_s >= 0)
				fprintf(f, "broker %.2f s (%.0f%% of a core), ",
					s->broker_cpu_s,
					100 * s->broker_cpu_s / s->elapsed_s);
			fprintf(f, "handoff-bench %.2f s (%.0f%%)\n",
				s->bench_cpu_s,
				100 * s->bench_cpu_s / s->elapsed_s);
		}
		if (s->p.http)
			notes_http(f, s);
		if (s->p.push_concurrency > 0)
			notes_push(f, s);
		if (s->note[0])
			fprintf(f, "    note: %s\n", s->note);
		if (s->failed)
			fprintf(f, "    FAILED: %s\n", s->error);
	}
	fprintf(f,
		"  latency: confirm = publish request sent (open loop: "
		"scheduled) -> confirmed;\n"
		"    delivery = publish stamp -> fetch returned the event. "
		"RssAnon = broker's peak in the scenario;\n"
		"    B/event = data.mdb size / events stored (cumulative over "
		"the run; - below 1,000 stored).\n"
		"    * = flags changed the scenario's defaults.\n"
		"  ratios: lmdb100 = events/s / LMDB events/s at 100 puts per "
		"commit; lmdb1 = / LMDB commits/s\n"
		"    at 1 put per commit; nn = / PUSH/PULL msgs/s; k4 = / "
		"publish-k4-e100 events/s;\n"
		"    p99/commit = confirm p99 / LMDB single-commit p99.\n");
	for (int i = 0; i < r->n_results; i++) {
		if (r->results[i].ran && r->results[i].p.http) {
			fprintf(f,
				"    http-...: the same load over the HTTP API, "
				"one keep-alive connection per\n"
				"      producer and consumer; native = events/s "
				"/ the native twin's, run just before\n"
				"      on the same broker (a missed target is "
				"printed, not a failure).\n");
			break;
		}
	}
	for (int i = 0; i < r->n_results; i++) {
		if (r->results[i].ran && r->results[i].p.push_concurrency) {
			fprintf(f,
				"    push: handoffd's push thread consumes, "
				"POSTing to a receiver in handoff-bench\n"
				"      (127.0.0.1, 204 at once); events/s = POSTs "
				"received / the start -> the last one;\n"
				"      delivery = publish stamp -> POST "
				"received; native = events/s / e2e-batched's\n"
				"      run just before (a missed target is "
				"printed, not a failure).\n");
			break;
		}
	}
	for (int i = 0; i < r->n_results; i++) {
		if (r->results[i].ran &&
		    (r->results[i].p.kind == SCEN_BACKLOG ||
		     r->results[i].p.kind == SCEN_RESTART)) {
			fprintf(f,
				"    backlog: rss N/probe = RssAnon with N "
				"stored / with N_probe (target <= 1.2);\n"
				"      drain/e2e = drain acks/s / empty-queue "
				"e2e-batched events/s (target >= 0.8).\n"
				"    restart: large/small = spawn -> first "
				"fetch, large backlog / small (target <= 2).\n"
				"    Their rows: events/s = drain acks/s "
				"(restart: -), confirm = the fills' publishes,\n"
				"      RssAnon = peak over the scenario's own "
				"broker(s), B/event = at N (restart: large).\n");
			break;
		}
	}
	for (int i = 0; i < r->n_results; i++) {
		if (r->results[i].ran &&
		    r->results[i].p.kind == SCEN_NEIGHBOUR) {
			fprintf(f,
				"    neighbour: absent, failing, slow, expiring "
				"= H's acks/s beside N so behaving / beside\n"
				"      a healthy N just before and after "
				"(median over rounds; target >= 0.9);\n"
				"      healthy/alone = beside a healthy N / "
				"alone (the fan-out cost). Its row: events/s,\n"
				"      confirm and delivery latency = H in the "
				"healthy phases.\n"
				"      push-dead, push-slow, push-failing = the "
				"same for push subscriptions, beside\n"
				"      push-healthy (without native phases its "
				"row's events/s = H in them).\n");
			break;
		}
	}
	fprintf(f, "result: %s\n", r->ok ? "ok" : "FAILED");
}

/* ---- JSON ---------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p;
	     p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", f);
		else if (*p == '\t')
			fputs("\\t", f);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void json_lat(FILE *f, const struct hist *h)
{
	if (h == NULL || h->count == 0) {
		fputs("null", f);
		return;
	}
	fprintf(f,
		"{\"n\": %llu, \"p50\": %.4f, \"p99\": %.4f, \"p999\": %.4f, "
		"\"max\": %.4f, \"mean\": %.4f}",
		(unsigned long long)h->count,
		(double)hist_quantile(h, 0.50) / 1e6,
		(double)hist_quantile(h, 0.99) / 1e6,
		(double)hist_quantile(h, 0.999) / 1e6, (double)h->max / 1e6,
		(double)h->sum / (double)h->count / 1e6);
}

static void json_lmdb(FILE *f, const struct lmdb_ceiling *l)
{
	if (!l->ok) {
		fputs("null", f);
		return;
	}
	fprintf(f,
		"{\"per_commit\": %u, \"seconds\": %.3f, \"commits\": %llu, "
		"\"commits_per_s\": %.1f, \"events_per_s\": %.1f, "
		"\"commit_p50_ms\": %.4f, \"commit_p99_ms\": %.4f, "
		"\"commit_max_ms\": %.4f}",
		l->per_commit, l->seconds, (unsigned long long)l->commits,
		l->commits_per_s, l->events_per_s, (double)l->p50_ns / 1e6,
		(double)l->p99_ns / 1e6, (double)l->max_ns / 1e6);
}

static void json_num(FILE *f, const char *name, double v, bool positive)
{
	fprintf(f, "\"%s\": ", name);
	if (positive && v <= 0)
		fputs("null", f);
	else
		fprintf(f, "%.3f", v);
}

static void json_backlog(FILE *f, const struct backlog_result *b)
{
	fprintf(f,
		",\n     \"backlog\": {\"events\": %ld, \"probe\": %ld, "
		"\"completed\": %s, ",
		b->events, b->probe, b->ran ? "true" : "false");
	json_num(f, "rss_probe_mib", (double)b->rss_probe_kb / 1024.0, true);
	fputs(", ", f);
	json_num(f, "rss_full_mib", (double)b->rss_full_kb / 1024.0, true);
	fputs(", ", f);
	json_num(f, "rss_ratio",
		 b->rss_probe_kb ?
			 (double)b->rss_full_kb / (double)b->rss_probe_kb :
			 0,
		 true);
	fputs(",\n       ", f);
	json_num(f, "fill_s", b->fill_s, true);
	fputs(", ", f);
	json_num(f, "fill_per_s", b->fill_per_s, true);
	fprintf(f, ", \"drained\": %llu, ", (unsigned long long)b->drained);
	json_num(f, "drain_s", b->drain_s, true);
	fputs(", ", f);
	json_num(f, "drain_per_s", b->drain_per_s, true);
	fputs(", ", f);
	json_num(f, "e2e_per_s", b->e2e_per_s, true);
	fprintf(f, ", \"e2e_reused\": %s, ", b->e2e_reused ? "true" : "false");
	json_num(f, "drain_e2e_ratio",
		 b->e2e_per_s > 0 ? b->drain_per_s / b->e2e_per_s : 0, true);
	fprintf(f,
		",\n       \"data_mdb_bytes\": %llu, \"events_stored\": %llu, ",
		(unsigned long long)b->data_bytes,
		(unsigned long long)b->events_stored);
	json_num(f, "bytes_per_event", b->bytes_per_event, true);
	fputs("}", f);
}

static void json_restart(FILE *f, const struct restart_result *rs)
{
	fputs(",\n     \"restart\": {\"cases\": [", f);
	for (int i = 0; i < rs->n; i++) {
		const struct restart_case *k = &rs->c[i];
		fprintf(f,
			"%s\n       {\"stop\": \"%s\", \"size\": \"%s\", "
			"\"pending\": %ld, \"leased\": %ld, \"stop_ms\": %.3f, "
			"\"listen_ms\": %.3f, \"connect_ms\": %.3f, "
			"\"first_fetch_ms\": %.3f, \"term_timed_out\": %s}",
			i ? "," : "", k->sig == SIGKILL ? "SIGKILL" : "SIGTERM",
			k->size, k->pending, k->leased, k->stop_ms,
			k->listen_ms, k->connect_ms, k->fetch_ms,
			k->term_timed_out ? "true" : "false");
	}
	fprintf(f,
		"],\n       \"large_data_mdb_bytes\": %llu, "
		"\"large_events_stored\": %llu}",
		(unsigned long long)rs->large_data_bytes,
		(unsigned long long)rs->large_events_stored);
}

static void json_ratio(FILE *f, const char *name, double v)
{
	fprintf(f, "\"%s\": ", name);
	if (v < 0)
		fputs("null", f);
	else
		fprintf(f, "%.4f", v);
}

static void json_neighbour(FILE *f, const struct neighbour_result *nb)
{
	fprintf(f,
		",\n     \"neighbour\": {\"completed\": %s, \"target\": %.2f, "
		"\"rounds\": %d, \"warmup_s\": %.3f,\n       ",
		nb->ran ? "true" : "false", NEIGHBOUR_TARGET, nb->rounds,
		nb->warmup_s);
	json_num(f, "baseline_per_s", nb->baseline_per_s, true);
	fputs(", ", f);
	json_num(f, "healthy_min_per_s", nb->healthy_min, true);
	fputs(", ", f);
	json_num(f, "healthy_max_per_s", nb->healthy_max, true);
	fputs(", ", f);
	json_num(f, "baseline_p99_ms", (double)nb->baseline_p99_ns / 1e6, true);
	fputs(", ", f);
	json_num(f, "alone_per_s", nb->alone_per_s, true);
	fputs(",\n       ", f);
	json_num(f, "push_baseline_per_s", nb->push_baseline_per_s, true);
	fputs(", ", f);
	json_num(f, "push_healthy_min_per_s", nb->push_min, true);
	fputs(", ", f);
	json_num(f, "push_healthy_max_per_s", nb->push_max, true);
	fputs(",\n       \"behaviours\": [", f);
	bool first = true;
	for (int i = 0; i < NEIGHBOUR_BEHAVIOURS; i++) {
		const struct neighbour_summary *b = &nb->beh[i];
		if (b->name == NULL)
			continue;
		fprintf(f, "%s\n        {\"name\": ", first ? "" : ",");
		first = false;
		json_str(f, b->name);
		fprintf(f, ", \"phases\": %d, ", b->n);
		json_ratio(f, "ratio", b->n ? b->ratio : -1);
		fputs(", ", f);
		json_ratio(f, "ratio_min", b->n ? b->ratio_min : -1);
		fputs(", ", f);
		json_ratio(f, "ratio_max", b->n ? b->ratio_max : -1);
		fputs(", ", f);
		json_ratio(f, "p99_ratio", b->n ? b->p99_ratio : -1);
		fprintf(f, ", \"target_met\": %s}",
			b->n == 0		     ? "null" :
			b->ratio >= NEIGHBOUR_TARGET ? "true" :
						       "false");
	}
	fputs("],\n       \"phases\": [", f);
	for (int i = 0; i < nb->n; i++) {
		const struct neighbour_phase *ph = &nb->ph[i];
		fprintf(f, "%s\n        {\"name\": ", i ? "," : "");
		json_str(f, ph->name);
		fputs(", \"n_consumers\": ", f);
		json_str(f, ph->what);
		fprintf(f,
			", \"completed\": %s, \"window_s\": %.3f,\n         "
			"\"published\": %llu, \"h_acked\": %llu, "
			"\"h_per_s\": %.1f, ",
			ph->ran ? "true" : "false", ph->window_s,
			(unsigned long long)ph->published,
			(unsigned long long)ph->h_acked, ph->h_per_s);
		json_ratio(f, "ratio", ph->ratio);
		fprintf(f, ", \"h_p50_ms\": %.4f, \"h_p99_ms\": %.4f, ",
			(double)ph->h_p50_ns / 1e6, (double)ph->h_p99_ns / 1e6);
		json_ratio(f, "p99_ratio", ph->p99_ratio);
		fprintf(f,
			", \"confirm_p99_ms\": %.4f,\n         "
			"\"n_delivered\": %llu, \"n_acked\": %llu, "
			"\"n_nacked\": %llu, \"n_expired\": %llu, "
			"\"n_backlog\": %llu, \"n_requests\": %llu,\n         ",
			(double)ph->confirm_p99_ns / 1e6,
			(unsigned long long)ph->n_delivered,
			(unsigned long long)ph->n_acked,
			(unsigned long long)ph->n_nacked,
			(unsigned long long)ph->n_expired,
			(unsigned long long)ph->n_backlog,
			(unsigned long long)ph->n_requests);
		fputs("\"broker_cpu_s\": ", f);
		if (ph->broker_cpu_s >= 0)
			fprintf(f, "%.3f", ph->broker_cpu_s);
		else
			fputs("null", f);
		fprintf(f,
			", \"producers_cpu_s\": %.3f, \"h_cpu_s\": %.3f, "
			"\"n_cpu_s\": %.3f, \"log_bytes\": %llu, "
			"\"data_mdb_bytes\": %llu}",
			ph->p_cpu_s, ph->h_cpu_s, ph->n_cpu_s,
			(unsigned long long)ph->log_bytes,
			(unsigned long long)ph->data_bytes);
	}
	fputs("]}", f);
}

void report_json(FILE *f, const struct report *r)
{
	const struct machine_info *m = r->machine;
	const struct ceilings *c = r->ceil;

	fprintf(f, "{\n  \"tool\": \"handoff-bench\", \"version\": ");
	json_str(f, HANDOFF_BENCH_VERSION);
	fprintf(f, ",\n  \"machine\": {\"nproc\": %ld, \"kernel\": ", m->nproc);
	json_str(f, m->kernel);
	fputs(", \"cpu\": ", f);
	json_str(f, m->cpu);
	fputs("},\n  \"date\": ", f);
	json_str(f, m->date);
	fputs(",\n  \"command\": ", f);
	json_str(f, m->command);
	fputs(",\n  \"broker\": {\"mode\": ", f);
	json_str(f, r->mode);
	fputs(", \"url\": ", f);
	json_str(f, r->url);
	fputs(", \"version\": ", f);
	if (r->broker_version)
		json_str(f, r->broker_version);
	else
		fputs("null", f);
	fputs(", \"work_dir\": ", f);
	json_str(f, r->workdir);
	fprintf(f, "},\n  \"payload_bytes\": %u, \"duration_s\": %.3f,\n",
		r->payload, r->duration_s);

	fputs("  \"ceilings\": ", f);
	if (!c->ran) {
		fputs("null", f);
	} else {
		fputs("{\n    \"lmdb_1_per_commit\": ", f);
		json_lmdb(f, &c->lmdb1);
		fputs(",\n    \"lmdb_100_per_commit\": ", f);
		json_lmdb(f, &c->lmdb100);
		fputs(",\n    \"nn_pushpull_tcp\": ", f);
		if (c->nn.ok)
			fprintf(f,
				"{\"port\": %d, \"sent\": %llu, "
				"\"received\": %llu, \"msgs_per_s\": %.1f}",
				c->nn.port, (unsigned long long)c->nn.sent,
				(unsigned long long)c->nn.received,
				c->nn.msgs_per_s);
		else
			fputs("null", f);
		fputs(",\n    \"error\": ", f);
		if (c->error[0])
			json_str(f, c->error);
		else
			fputs("null", f);
		fputs("\n  }", f);
	}

	fputs(",\n  \"scenarios\": [", f);
	bool first = true;
	for (int i = 0; i < r->n_results; i++) {
		const struct scen_result *s = &r->results[i];
		const struct scen_params *p = &s->p;
		if (!s->ran)
			continue;
		fputs(first ? "\n    {" : ",\n    {", f);
		first = false;
		fputs("\"name\": ", f);
		json_str(f, p->name);
		fprintf(f, ", \"ok\": %s, \"error\": ",
			s->failed ? "false" : "true");
		if (s->failed)
			json_str(f, s->error);
		else
			fputs("null", f);
		fprintf(f,
			",\n     \"params\": {\"producers\": %d, "
			"\"consumers\": %d, \"batch\": %d, "
			"\"fetch_batch\": %d, \"subscriptions\": %d, "
			"\"rate\": %.1f, \"ack_each\": %s, \"backlog\": %ld, "
			"\"overridden\": %s},\n",
			p->producers, p->consumers, p->batch, p->fetch_batch,
			p->subs, p->rate, p->ack_each ? "true" : "false",
			p->backlog, p->overridden ? "true" : "false");
		fputs("     \"topic\": ", f);
		json_str(f, s->topic);
		fprintf(f,
			", \"elapsed_s\": %.3f, \"events_per_s\": %.1f, "
			"\"publish_per_s\": %.1f, \"published\": %llu, "
			"\"delivered\": %llu, \"acked\": %llu, "
			"\"lease_lost\": %llu,\n",
			s->elapsed_s, s->events_per_s, s->publish_per_s,
			(unsigned long long)s->published,
			(unsigned long long)s->delivered,
			(unsigned long long)s->acked,
			(unsigned long long)s->lease_lost);
		fputs("     \"confirm_ms\": ", f);
		json_lat(f, s->confirm);
		fputs(",\n     \"deliver_ms\": ", f);
		json_lat(f, s->deliver);
		fputs(",\n     \"rss_peak_mib\": ", f);
		if (s->rss_peak_kb)
			fprintf(f, "%.2f", (double)s->rss_peak_kb / 1024.0);
		else
			fputs("null", f);
		fprintf(f,
			", \"data_mdb_bytes\": %llu, \"events_stored\": "
			"%llu, \"bytes_per_event\": ",
			(unsigned long long)s->data_bytes,
			(unsigned long long)s->events_stored);
		if (s->bytes_per_event > 0)
			fprintf(f, "%.1f", s->bytes_per_event);
		else
			fputs("null", f);
		fputs(",\n     \"broker_cpu_s\": ", f);
		if (s->broker_cpu_s >= 0)
			fprintf(f, "%.3f", s->broker_cpu_s);
		else
			fputs("null", f);
		fprintf(f, ", \"bench_cpu_s\": %.3f", s->bench_cpu_s);
		fputs(",\n     \"ratios\": {", f);
		for (int k = 0; k < s->n_ratios; k++) {
			json_str(f, s->ratios[k].name);
			fprintf(f, ": %.4f%s", s->ratios[k].value,
				k + 1 < s->n_ratios ? ", " : "");
		}
		fputs("}, \"note\": ", f);
		if (s->note[0])
			json_str(f, s->note);
		else
			fputs("null", f);
		if (p->http) {
			double ratio = native_ratio(s);
			fputs(",\n     \"http\": {\"twin\": ", f);
			json_str(f, p->twin);
			fputs(", ", f);
			json_num(f, "twin_events_per_s", s->twin_per_s, true);
			fputs(", ", f);
			json_ratio(f, "ratio_to_native", ratio);
			fprintf(f,
				", \"target\": %.2f, \"target_met\": %s, "
				"\"requests\": %llu, \"connections\": %llu}",
				p->target,
				ratio < 0	   ? "null" :
				ratio >= p->target ? "true" :
						     "false",
				(unsigned long long)s->http_requests,
				(unsigned long long)s->http_connects);
		}
		if (p->push_concurrency > 0) {
			double ratio = native_ratio(s);
			fputs(",\n     \"push\": {\"twin\": ", f);
			json_str(f, p->twin);
			fputs(", ", f);
			json_num(f, "twin_events_per_s", s->twin_per_s, true);
			fputs(", ", f);
			json_ratio(f, "ratio_to_native", ratio);
			fprintf(f,
				", \"target\": %.2f, \"target_met\": %s, "
				"\"concurrency\": %d, \"received\": %llu, "
				"\"connections\": %llu, \"last_s\": %.3f}",
				p->target,
				ratio < 0	   ? "null" :
				ratio >= p->target ? "true" :
						     "false",
				p->push_concurrency,
				(unsigned long long)s->push_received,
				(unsigned long long)s->push_connects,
				s->push_last_s);
		}
		if (p->kind == SCEN_BACKLOG)
			json_backlog(f, &s->bl);
		if (p->kind == SCEN_RESTART)
			json_restart(f, &s->rs);
		if (p->kind == SCEN_NEIGHBOUR)
			json_neighbour(f, &s->nb);
		fputs("}", f);
	}
	fprintf(f, "\n  ],\n  \"ok\": %s\n}\n", r->ok ? "true" : "false");
}
