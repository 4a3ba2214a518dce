/*
 * cli_util.c — the CLI's input side: strict number, duration and time
 * parsing (with usage messages for option arguments), reading stdin,
 * clocks, and the SIGINT/SIGTERM flag that lets long-running commands
 * (consume, dlq replay/purge) stop between events instead of mid-way.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "duration.h"

int cli_parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return EINVAL;
	for (const char *p = s; *p; p++) {
		unsigned d;

		if (*p < '0' || *p > '9')
			return EINVAL;
		d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return ERANGE;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int cli_parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;
	int rc = cli_parse_u64(s, &v);

	if (rc)
		return rc;
	if (v > UINT32_MAX)
		return ERANGE;
	*out = (uint32_t)v;
	return 0;
}

int cli_parse_duration32(const char *s, uint32_t *ms)
{
	uint64_t v;
	int rc = parse_duration_ms(s, &v);

	if (rc)
		return rc;
	if (v > UINT32_MAX)
		return ERANGE;
	*ms = (uint32_t)v;
	return 0;
}

/* Optional ".fff" fraction (any number of digits; ms kept), then "Z". */
static int parse_iso_tail(const char *p, uint64_t *frac_ms)
{
	uint64_t ms = 0, scale = 100;

	*frac_ms = 0;
	if (*p == '.') {
		if (p[1] < '0' || p[1] > '9')
			return EINVAL;
		for (p++; *p >= '0' && *p <= '9'; p++) {
			ms += (uint64_t)(*p - '0') * scale;
			scale /= 10;
		}
	}
	if (*p == 'Z')
		p++;
	if (*p)
		return EINVAL;
	*frac_ms = ms;
	return 0;
}

/* "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SS[.fff][Z]" (always UTC). */
static int parse_iso8601(const char *s, uint64_t *out)
{
	struct tm tm;
	const char *p;
	uint64_t frac;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	p = strptime(s, "%Y-%m-%d", &tm);
	if (!p)
		return EINVAL;
	if (*p == 'T' || *p == ' ') {
		p = strptime(p + 1, "%H:%M:%S", &tm);
		if (!p)
			return EINVAL;
	}
	if (parse_iso_tail(p, &frac))
		return EINVAL;
	t = timegm(&tm);
	if (t < 0)
		return ERANGE;
	*out = (uint64_t)t * 1000 + frac;
	return 0;
}

int cli_parse_time(const char *s, uint64_t now_ms, uint64_t *out)
{
	uint64_t ago;
	size_t digits = strspn(s, "0123456789");

	if (!*s)
		return EINVAL;
	if (s[digits] == '\0')
		return cli_parse_u64(s, out);
	if (digits == 4 && s[4] == '-')
		return parse_iso8601(s, out);
	if (parse_duration_ms(s, &ago) != 0)
		return EINVAL;
	if (ago > now_ms)
		return ERANGE;
	*out = now_ms - ago;
	return 0;
}

int cli_opt_u64(struct cli_ctx *ctx, const char *name, const char *arg,
		uint64_t *out)
{
	if (cli_parse_u64(arg, out) != 0)
		return cli_usage(ctx, "invalid %s '%s' (want a whole number)",
				 name, arg);
	return 0;
}

int cli_opt_u32(struct cli_ctx *ctx, const char *name, const char *arg,
		uint32_t *out)
{
	if (cli_parse_u32(arg, out) != 0)
		return cli_usage(ctx,
				 "invalid %s '%s' (want a whole number up to "
				 "%u)",
				 name, arg, (unsigned)UINT32_MAX);
	return 0;
}

int cli_opt_duration(struct cli_ctx *ctx, const char *name, const char *arg,
		     uint32_t *ms)
{
	if (cli_parse_duration32(arg, ms) != 0)
		return cli_usage(ctx,
				 "invalid %s '%s' (want e.g. 250ms, 30s, 5m, "
				 "2h, 7d; at most 49d)",
				 name, arg);
	return 0;
}

int cli_opt_time(struct cli_ctx *ctx, const char *name, const char *arg,
		 uint64_t *out)
{
	if (cli_parse_time(arg, cli_now_ms(), out) != 0)
		return cli_usage(ctx,
				 "invalid %s '%s' (want unix ms, an ISO-8601 "
				 "UTC time, or a duration ago such as 1h)",
				 name, arg);
	return 0;
}

static uint64_t clock_ms(clockid_t id)
{
	struct timespec ts;

	if (clock_gettime(id, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* "3600 s" of a skew in ms, rounded to the nearest second. */
static long long skew_seconds(int64_t skew_ms)
{
	int64_t a = skew_ms < 0 ? -skew_ms : skew_ms;
	return (long long)((a + 500) / 1000);
}

void cli_clock_note(struct cli_ctx *ctx)
{
	static bool noted;
	int64_t skew = handoff_clock_skew_ms(ctx->client);

	if (noted || (skew > -1000 && skew < 1000))
		return;
	noted = true;
	cli_warn("warning: clock differs from the broker's by %lld s (the "
		 "broker's is %s); signing requests with the broker's clock",
		 skew_seconds(skew), skew > 0 ? "ahead" : "behind");
}

void cli_clock_hint(FILE *f, const struct cli_ctx *ctx)
{
	int64_t skew = ctx->client ? handoff_clock_skew_ms(ctx->client) : 0;

	if (skew != 0)
		fprintf(f,
			" (clock differs from the broker's by %lld s; the "
			"broker still refused the requests signed with its "
			"clock)",
			skew_seconds(skew));
	else
		fputs(" (this host's clock differs from the broker's by more "
		      "than its request window, and the broker did not say "
		      "its own: correct either clock)",
		      f);
}

uint64_t cli_now_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

uint64_t cli_mono_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

void cli_sleep_ms(uint64_t ms)
{
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000),
			       .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		if (cli_stop_requested())
			return;
}

int cli_read_all(int fd, size_t cap, unsigned char **buf, size_t *len)
{
	unsigned char *b = NULL, *nb;
	size_t n = 0, size = 0;
	ssize_t r;
	int rc = 0;

	for (;;) {
		if (n == size) {
			if (size >= cap) {
				rc = E2BIG;
				goto fail;
			}
			size = size ? size * 2 : 65536;
			if (size > cap)
				size = cap;
			nb = realloc(b, size ? size : 1);
			if (!nb) {
				rc = ENOMEM;
				goto fail;
			}
			b = nb;
		}
		r = read(fd, b + n, size - n);
		if (r == 0)
			break;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = errno;
			goto fail;
		}
		n += (size_t)r;
	}
	if (!b && !(b = malloc(1))) {
		rc = ENOMEM;
		goto fail;
	}
	*buf = b;
	*len = n;
	return 0;
fail:
	free(b);
	return rc;
}

static volatile sig_atomic_t stop_count, stop_signal, stop_keep_second;

static void on_stop_signal(int sig)
{
	if (stop_count >= (stop_keep_second ? 2 : 1)) {
		/* One more than we handle: the user means it, die the usual
		 * way. */
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	stop_count++;
	stop_signal = sig;
}

void cli_install_stop_handlers(bool keep_second)
{
	struct sigaction sa;

	stop_keep_second = keep_second;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: let a blocking wait notice the signal early. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

bool cli_stop_requested(void)
{
	return stop_count != 0;
}

unsigned cli_stop_count(void)
{
	return (unsigned)stop_count;
}

void cli_stop_die(void)
{
	int sig = stop_signal ? stop_signal : SIGTERM;

	fflush(stdout);
	signal(sig, SIG_DFL);
	raise(sig);
	_exit(128 + sig); /* only if the signal was blocked */
}
