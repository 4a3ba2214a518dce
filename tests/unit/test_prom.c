/*
 * test_prom.c — the Prometheus text writer (broker/prom.c) and the
 * /metrics rendering (broker/http_metrics.c):
 *   HELP and TYPE once per family, HELP escaping (\\ and \n only);
 *   label values escaped (\\, \", \n), bytes that are not UTF-8 replaced
 *   by U+FFFD, valid multi-byte UTF-8 kept;
 *   values: integers as integers, fractions shortest, NaN and +Inf;
 *   histograms: buckets cumulative and increasing, ending in le="+Inf"
 *   equal to _count, then _sum and _count, with and without labels;
 *   every line ends in one '\n', no trailing spaces, the text ends in '\n';
 *   a rendered Stats reply names each family once, before its samples, and
 *   carries the per-subscription values and build info.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_metrics.h"
#include "prom.h"

static char *finish(struct prom *p, size_t *len)
{
	char *text = NULL;
	assert_int_equal(prom_finish(p, &text, len), 0);
	assert_non_null(text);
	assert_int_equal(strlen(text), *len);
	return text;
}

/* Every line ends in '\n' with no space before it; no '\r'. */
static void assert_lines_clean(const char *text, size_t len)
{
	assert_true(len > 0);
	assert_int_equal(text[len - 1], '\n');
	assert_null(strchr(text, '\r'));
	for (const char *nl = strchr(text, '\n'); nl; nl = strchr(nl + 1, '\n'))
		assert_true(nl == text || (nl[-1] != ' ' && nl[-1] != '\n'));
}

static void test_family_and_escaping(void **state)
{
	(void)state;
	struct prom p;
	size_t len;
	prom_init(&p);
	prom_family(&p, "x_total", PROM_COUNTER, "a \\ b\nc \"q\"");
	struct prom_label l[] = {
		{ "topic", "a\"b\\c\nd" },
		{ "subscription", "caf\xc3\xa9 \xff\xc3" },
	};
	prom_sample(&p, "x_total", l, 2, 42);
	char *t = finish(&p, &len);
	assert_string_equal(
		t,
		"# HELP x_total a \\\\ b\\nc \"q\"\n"
		"# TYPE x_total counter\n"
		"x_total{topic=\"a\\\"b\\\\c\\nd\",subscription=\"caf\xc3\xa9 "
		"\xef\xbf\xbd\xef\xbf\xbd\"} 42\n");
	assert_lines_clean(t, len);
	free(t);
}

static void test_values(void **state)
{
	(void)state;
	struct prom p;
	size_t len;
	prom_init(&p);
	prom_family(&p, "g", PROM_GAUGE, "h");
	prom_sample(&p, "g", NULL, 0, 0.061);
	prom_sample(&p, "g", NULL, 0, 12345678901.0);
	prom_sample(&p, "g", NULL, 0, 0.1 + 0.2);
	prom_sample(&p, "g", NULL, 0, 1.0 / 0.0);
	prom_sample(&p, "g", NULL, 0, 0.0 / 0.0);
	char *t = finish(&p, &len);
	assert_string_equal(t, "# HELP g h\n# TYPE g gauge\n"
			       "g 0.061\n"
			       "g 12345678901\n"
			       "g 0.30000000000000004\n"
			       "g +Inf\n"
			       "g NaN\n");
	free(t);
}

static void test_histogram(void **state)
{
	(void)state;
	struct prom p;
	size_t len;
	const double bounds[] = { 0.0005, 0.01, 1 };
	const uint64_t counts[] = { 2, 0, 3, 4 }; /* 4 above the last bound */
	struct prom_label l[] = { { "topic", "t" } };
	prom_init(&p);
	prom_family(&p, "d_seconds", PROM_HISTOGRAM, "h");
	prom_histogram(&p, "d_seconds", NULL, 0, bounds, counts, 3, 12.5);
	prom_histogram(&p, "d_seconds", l, 1, bounds, counts, 3, 0.25);
	char *t = finish(&p, &len);
	assert_string_equal(t, "# HELP d_seconds h\n"
			       "# TYPE d_seconds histogram\n"
			       "d_seconds_bucket{le=\"0.0005\"} 2\n"
			       "d_seconds_bucket{le=\"0.01\"} 2\n"
			       "d_seconds_bucket{le=\"1\"} 5\n"
			       "d_seconds_bucket{le=\"+Inf\"} 9\n"
			       "d_seconds_sum 12.5\n"
			       "d_seconds_count 9\n"
			       "d_seconds_bucket{topic=\"t\",le=\"0.0005\"} 2\n"
			       "d_seconds_bucket{topic=\"t\",le=\"0.01\"} 2\n"
			       "d_seconds_bucket{topic=\"t\",le=\"1\"} 5\n"
			       "d_seconds_bucket{topic=\"t\",le=\"+Inf\"} 9\n"
			       "d_seconds_sum{topic=\"t\"} 0.25\n"
			       "d_seconds_count{topic=\"t\"} 9\n");
	assert_lines_clean(t, len);
	free(t);
}

static void test_empty(void **state)
{
	(void)state;
	struct prom p;
	size_t len;
	prom_init(&p);
	char *t = finish(&p, &len);
	assert_int_equal(len, 0);
	free(t);
}

static void test_render_stats(void **state)
{
	(void)state;
	Handoff__Wire__StatsReply s = HANDOFF__WIRE__STATS_REPLY__INIT;
	Handoff__Wire__SubscriptionStats a =
		HANDOFF__WIRE__SUBSCRIPTION_STATS__INIT;
	Handoff__Wire__SubscriptionStats b =
		HANDOFF__WIRE__SUBSCRIPTION_STATS__INIT;
	Handoff__Wire__PauseState ps = HANDOFF__WIRE__PAUSE_STATE__INIT;
	Handoff__Wire__SubscriptionStats *subs[] = { &a, &b };
	Handoff__Wire__ProcessCounters pc =
		HANDOFF__WIRE__PROCESS_COUNTERS__INIT;
	Handoff__Wire__Histogram h = HANDOFF__WIRE__HISTOGRAM__INIT;
	double bounds[] = { 0.001, 0.01 };
	uint64_t counts[] = { 1, 2, 3 };
	h.n_bounds = 2;
	h.bounds = bounds;
	h.n_counts = 3;
	h.counts = counts;
	h.sum = 0.5;
	pc.publish_stored = 7;
	pc.publish_refused_full = 2;
	pc.publish_confirm_seconds = &h;
	pc.commit_seconds = &h;
	pc.turn_requests = &h;
	a.name = "billing";
	a.topic = "orders";
	a.ready = 5;
	a.delayed = 2;
	a.dead = 1;
	a.acked = 9;
	a.oldest_ready_age_ms = 1500;
	b.name = "audit";
	b.topic = "orders";
	b.paused = &ps;
	b.push_url = "http://x";
	b.push_state = "failing";
	s.version = "9.9.9";
	s.store_format = 1;
	s.n_subscriptions = 2;
	s.subscriptions = subs;
	s.process = &pc;
	s.store_used_bytes = 4096;
	s.store_limit_bytes = 1 << 20;
	s.store_headroom_bytes = 1000;

	struct http_out out;
	http_metrics_render(&s, &out);
	assert_int_equal(out.status, 200);
	assert_string_equal(out.content_type, PROM_CONTENT_TYPE);
	assert_lines_clean(out.body, out.len);
	const char *want[] = {
		"handoff_build_info{version=\"9.9.9\",protocol=\"1\","
		"store_format=\"1\"} 1\n",
		"handoff_subscription_ready_messages{topic=\"orders\","
		"subscription=\"billing\"} 5\n",
		"handoff_subscription_delayed_messages{topic=\"orders\","
		"subscription=\"billing\"} 2\n",
		"handoff_subscription_dead_letters{topic=\"orders\","
		"subscription=\"billing\"} 1\n",
		"handoff_subscription_paused{topic=\"orders\","
		"subscription=\"audit\"} 1\n",
		"handoff_subscription_paused{topic=\"orders\","
		"subscription=\"billing\"} 0\n",
		"handoff_subscription_oldest_ready_age_seconds{topic=\"orders\","
		"subscription=\"billing\"} 1.5\n",
		"handoff_deliveries_total{topic=\"orders\",subscription="
		"\"billing\",outcome=\"acked\"} 9\n",
		"handoff_push_endpoint_state{topic=\"orders\",subscription="
		"\"audit\",state=\"failing\"} 1\n",
		"handoff_push_endpoint_state{topic=\"orders\",subscription="
		"\"audit\",state=\"healthy\"} 0\n",
		"handoff_publish_total{result=\"stored\"} 7\n",
		"handoff_publish_total{result=\"refused_full\"} 2\n",
		"handoff_publish_confirm_seconds_bucket{le=\"+Inf\"} 6\n",
		"handoff_commit_duration_seconds_count 6\n",
		"handoff_turn_requests_sum 0.5\n",
		"handoff_store_used_bytes 4096\n",
		"handoff_store_limit_bytes 1048576\n",
		"handoff_store_headroom_bytes 1000\n",
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		if (!strstr(out.body, want[i]))
			fail_msg("missing: %s\nin:\n%s", want[i], out.body);
	}
	/* no push state for the pull subscription */
	assert_null(strstr(out.body, "handoff_push_endpoint_state{topic=\""
				     "orders\",subscription=\"billing\""));
	/* each TYPE once, and before any sample of its family */
	char *copy = strdup(out.body);
	assert_non_null(copy);
	char types[64][128];
	size_t n_types = 0;
	for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, "# TYPE ", 7) == 0) {
			char name[128];
			snprintf(name, sizeof name, "%s", line + 7);
			*strchr(name, ' ') = '\0';
			for (size_t k = 0; k < n_types; k++)
				assert_string_not_equal(types[k], name);
			assert_true(n_types < 64);
			snprintf(types[n_types++], 128, "%s", name);
		} else if (line[0] != '#') {
			bool known = false;
			for (size_t k = 0; k < n_types && !known; k++) {
				size_t l = strlen(types[k]);
				known = strncmp(line, types[k], l) == 0 &&
					(line[l] == ' ' || line[l] == '{' ||
					 line[l] == '_');
			}
			if (!known)
				fail_msg("sample before its TYPE: %s", line);
		}
	}
	free(copy);
	http_out_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_family_and_escaping),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_render_stats),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
