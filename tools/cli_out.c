/*
 * cli_out.c — the CLI's output side: one-line escaping of untrusted text
 * (payloads, keys, error strings may hold any bytes), UTF-8 checking,
 * base64, time/duration/size formatting, JSON documents (jansson) and
 * aligned text tables. Output goes to stdio; write errors are caught
 * once at exit (cli_finish).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"

/* ---- UTF-8 --------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (n bytes left), 0 if invalid;
 * *cp receives the code point. */
static size_t utf8_seq(const unsigned char *p, size_t n, uint32_t *cp)
{
	uint32_t c = p[0], min;
	size_t len;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if ((c & 0xe0) == 0xc0) {
		len = 2, c &= 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3, c &= 0x0f, min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		len = 4, c &= 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

bool cli_utf8_valid(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint32_t cp;

	for (size_t i = 0; i < n;) {
		size_t len = utf8_seq(s + i, n - i, &cp);

		if (!len)
			return false;
		i += len;
	}
	return true;
}

/* ---- escaping ------------------------------------------------------------ */

void cli_put_escaped(FILE *f, const void *p, size_t n, unsigned flags)
{
	const unsigned char *s = p;
	uint32_t cp;

	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t len;

		switch (c) {
		case '\\':
			fputs("\\\\", f);
			i++;
			continue;
		case '\n':
			fputs("\\n", f);
			i++;
			continue;
		case '\r':
			fputs("\\r", f);
			i++;
			continue;
		case '\t':
			fputs("\\t", f);
			i++;
			continue;
		case ' ':
			fputs((flags & CLI_ESC_SPACE) ? "\\x20" : " ", f);
			i++;
			continue;
		default:
			break;
		}
		len = utf8_seq(s + i, n - i, &cp);
		/* C0/C1 controls and DEL could drive the terminal: escape. */
		if (!len || cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) {
			fprintf(f, "\\x%02x", c);
			i++;
			continue;
		}
		fwrite(s + i, 1, len, f);
		i += len;
	}
}

void cli_put_escaped_str(FILE *f, const char *s, unsigned flags)
{
	if (s)
		cli_put_escaped(f, s, strlen(s), flags);
}

char *cli_escape(const void *p, size_t n, unsigned flags)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	if (!f)
		return NULL;
	cli_put_escaped(f, p, n, flags);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* ---- base64 -------------------------------------------------------------- */

char *cli_base64(const void *p, size_t n)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *s = p;
	char *out, *o;

	if (n > (SIZE_MAX - 1) / 4 * 3 - 3)
		return NULL;
	out = malloc((n + 2) / 3 * 4 + 1);
	if (!out)
		return NULL;
	o = out;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16;
		size_t left = n - i;

		if (left > 1)
			v |= (uint32_t)s[i + 1] << 8;
		if (left > 2)
			v |= s[i + 2];
		*o++ = tab[(v >> 18) & 63];
		*o++ = tab[(v >> 12) & 63];
		*o++ = left > 1 ? tab[(v >> 6) & 63] : '=';
		*o++ = left > 2 ? tab[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

/* ---- formatting ---------------------------------------------------------- */

const char *cli_fmt_time(uint64_t ms, char *buf)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	size_t len;

	if (ms == 0 || !gmtime_r(&t, &tm)) {
		strcpy(buf, "-");
		return buf;
	}
	len = strftime(buf, CLI_FMT_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + len, CLI_FMT_MAX - len, ".%03uZ", (unsigned)(ms % 1000));
	return buf;
}

const char *cli_fmt_duration(uint64_t ms, char *buf)
{
	static const struct {
		uint64_t ms;
		const char *unit;
	} units[] = {
		{ 86400000, "d" },
		{ 3600000, "h" },
		{ 60000, "m" },
		{ 1000, "s" },
	};

	for (size_t i = 0; ms && i < sizeof(units) / sizeof(units[0]); i++) {
		if (ms % units[i].ms == 0) {
			snprintf(buf, CLI_FMT_MAX, "%" PRIu64 "%s",
				 ms / units[i].ms, units[i].unit);
			return buf;
		}
	}
	snprintf(buf, CLI_FMT_MAX, "%" PRIu64 "ms", ms);
	return buf;
}

const char *cli_fmt_uptime(uint64_t ms, char *buf)
{
	uint64_t s = ms / 1000;
	uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;
	size_t len = 0;

	if (d)
		len += (size_t)snprintf(buf + len, CLI_FMT_MAX - len,
					"%" PRIu64 "d", d);
	if (d || h)
		len += (size_t)snprintf(buf + len, CLI_FMT_MAX - len,
					"%" PRIu64 "h", h);
	if (d || h || m)
		len += (size_t)snprintf(buf + len, CLI_FMT_MAX - len,
					"%" PRIu64 "m", m);
	snprintf(buf + len, CLI_FMT_MAX - len, "%" PRIu64 "s", s % 60);
	return buf;
}

const char *cli_fmt_bytes(uint64_t bytes, char *buf)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB",
					     "PiB" };
	double v = (double)bytes;
	size_t u = 0;

	if (bytes < 1024) {
		snprintf(buf, CLI_FMT_MAX, "%" PRIu64 " B", bytes);
		return buf;
	}
	v /= 1024;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, CLI_FMT_MAX, "%.1f %s", v, units[u]);
	return buf;
}

const char *cli_fmt_u64(uint64_t v, char *buf)
{
	snprintf(buf, CLI_FMT_MAX, "%" PRIu64, v);
	return buf;
}

const char *cli_fmt_double(double v, char *buf)
{
	if (!isfinite(v))
		strcpy(buf, "-");
	else
		snprintf(buf, CLI_FMT_MAX, "%.2f", v);
	return buf;
}

/* ---- JSON ---------------------------------------------------------------- */

/*
 * Documents are built as jansson values and written whole, compact, by
 * cli_json_newline. Every setter's result is checked: the first failure is
 * kept in j->err, the document is then not written at all (a field must
 * never silently go missing) and cli_finish reports it.
 */

/* Set once a document could not be built or written. */
static bool json_failed;

bool cli_json_failed(void)
{
	return json_failed;
}

void cli_json_init(struct cli_json *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
}

void cli_json_discard(struct cli_json *j)
{
	json_decref(j->root);
	free(j->key);
	cli_json_init(j, j->f);
}

static void json_fail(struct cli_json *j, int err)
{
	if (!j->err)
		j->err = err;
}

/* Put v (a new reference, NULL when its constructor failed) under the
 * pending key of the open object, at the end of the open array, or as
 * the document. */
static void json_put(struct cli_json *j, json_t *v)
{
	json_t *parent = j->depth ? j->stack[j->depth - 1] : NULL;
	int rc;

	if (!v) {
		json_fail(j, ENOMEM);
		return;
	}
	if (!parent) {
		if (j->root) {
			json_decref(v);
			json_fail(j, EINVAL); /* one value per document */
			return;
		}
		j->root = v;
		return;
	}
	if (json_is_object(parent)) {
		if (!j->key) {
			json_decref(v);
			json_fail(j, EINVAL);
			return;
		}
		rc = json_object_set_new(parent, j->key, v);
		free(j->key);
		j->key = NULL;
	} else {
		rc = json_array_append_new(parent, v);
	}
	if (rc)
		json_fail(j, ENOMEM);
}

static void json_open(struct cli_json *j, json_t *v)
{
	if (v && j->depth == CLI_JSON_MAX_DEPTH) {
		json_decref(v);
		json_fail(j, EINVAL);
		v = NULL;
	}
	json_put(j, v);
	/* Only a container that made it into the document is opened; after
	 * a failure its contents go nowhere (the document is dropped). */
	if (v && !j->err)
		j->stack[j->depth++] = v;
	else
		j->dead_opens++;
}

static void json_close(struct cli_json *j)
{
	if (j->dead_opens)
		j->dead_opens--;
	else if (j->depth)
		j->depth--;
}

void cli_json_begin_object(struct cli_json *j)
{
	json_open(j, json_object());
}
void cli_json_end_object(struct cli_json *j)
{
	json_close(j);
}
void cli_json_begin_array(struct cli_json *j)
{
	json_open(j, json_array());
}
void cli_json_end_array(struct cli_json *j)
{
	json_close(j);
}

void cli_json_newline(struct cli_json *j)
{
	if (!j->err && !j->root)
		j->err = EINVAL;
	if (!j->err && json_dumpf(j->root, j->f,
				  JSON_COMPACT | JSON_ENCODE_ANY |
					  JSON_REAL_PRECISION(15)))
		j->err = EIO;
	if (!j->err)
		fputc('\n', j->f);
	else if (j->err != EIO) /* a write error: cli_finish says so */
		cli_warn("JSON output left out: %s", strerror(j->err));
	if (j->err)
		json_failed = true;
	cli_json_discard(j);
}

/* p[0..n) as valid UTF-8: the bytes themselves when they are, else a new
 * copy (*copy, to free) with each invalid byte as U+FFFD. NULL on ENOMEM. */
static const char *utf8_text(const void *p, size_t n, char **copy, size_t *len)
{
	const unsigned char *s = p;
	char *o;
	uint32_t cp;

	*copy = NULL;
	*len = n;
	if (cli_utf8_valid(p, n))
		return p ? p : "";
	if (n > (SIZE_MAX - 1) / 3)
		return NULL;
	o = *copy = malloc(n * 3 + 1);
	if (!o)
		return NULL;
	for (size_t i = 0; i < n;) {
		size_t l = utf8_seq(s + i, n - i, &cp);

		if (!l) {
			memcpy(o, "\xef\xbf\xbd",
			       3); /* keep the document valid */
			o += 3;
			i++;
			continue;
		}
		memcpy(o, s + i, l);
		o += l;
		i += l;
	}
	*len = (size_t)(o - *copy);
	return *copy;
}

void cli_json_key(struct cli_json *j, const char *key)
{
	char *copy;
	size_t len;
	const char *k = utf8_text(key, strlen(key), &copy, &len);

	free(j->key);
	j->key = k ? strndup(k, len) : NULL;
	free(copy);
	if (!j->key)
		json_fail(j, ENOMEM);
}

void cli_json_stringn(struct cli_json *j, const void *p, size_t n)
{
	char *copy;
	size_t len;
	const char *t = utf8_text(p, n, &copy, &len);

	/* json_stringn: NUL bytes inside are kept (written as \u0000) */
	json_put(j, t ? json_stringn(t, len) : NULL);
	free(copy);
}

void cli_json_string(struct cli_json *j, const char *s)
{
	if (!s) {
		cli_json_null(j);
		return;
	}
	cli_json_stringn(j, s, strlen(s));
}

void cli_json_u64(struct cli_json *j, uint64_t v)
{
	char buf[CLI_FMT_MAX];

	/* jansson's integers are signed 64-bit: a larger value (no field
	 * written today can get there) goes as its decimal string rather
	 * than lose digits. */
	if (v > INT64_MAX)
		json_put(j, json_string(cli_fmt_u64(v, buf)));
	else
		json_put(j, json_integer((json_int_t)v));
}

void cli_json_double(struct cli_json *j, double v)
{
	/* JSON has no NaN/Inf; three decimals, as before jansson (rates) */
	if (!isfinite(v)) {
		json_put(j, json_null());
		return;
	}
	if (v > -1e15 && v < 1e15)
		v = (double)(int64_t)(v * 1000.0 + (v < 0 ? -0.5 : 0.5)) /
		    1000.0;
	json_put(j, json_real(v));
}

void cli_json_bool(struct cli_json *j, bool v)
{
	json_put(j, json_boolean(v));
}

void cli_json_null(struct cli_json *j)
{
	json_put(j, json_null());
}

void cli_json_kv_str(struct cli_json *j, const char *key, const char *s)
{
	cli_json_key(j, key);
	cli_json_string(j, s);
}

void cli_json_kv_u64(struct cli_json *j, const char *key, uint64_t v)
{
	cli_json_key(j, key);
	cli_json_u64(j, v);
}

void cli_json_kv_double(struct cli_json *j, const char *key, double v)
{
	cli_json_key(j, key);
	cli_json_double(j, v);
}

void cli_json_kv_bool(struct cli_json *j, const char *key, bool v)
{
	cli_json_key(j, key);
	cli_json_bool(j, v);
}

void cli_json_kv_time(struct cli_json *j, const char *key, uint64_t ms)
{
	char name[64], buf[CLI_FMT_MAX];

	snprintf(name, sizeof(name), "%s_ms", key);
	cli_json_kv_u64(j, name, ms);
	cli_json_kv_str(j, key, ms ? cli_fmt_time(ms, buf) : NULL);
}

int cli_json_kv_payload(struct cli_json *j, const void *p, size_t n)
{
	char *b64;

	cli_json_kv_u64(j, "payload_bytes", n);
	if (cli_utf8_valid(p, n)) {
		cli_json_key(j, "payload");
		cli_json_stringn(j, p, n);
		return 0;
	}
	b64 = cli_base64(p, n);
	if (!b64)
		return ENOMEM;
	cli_json_kv_str(j, "payload_base64", b64);
	free(b64);
	return 0;
}

static bool is_text(const char *s)
{
	return cli_utf8_valid(s, strlen(s));
}

/* "KEY": text, or "KEY_base64": base64 when s is not UTF-8. 0 or ENOMEM. */
static int kv_text_or_base64(struct cli_json *j, const char *key, const char *s)
{
	char name[32], *b64;

	if (is_text(s)) {
		cli_json_kv_str(j, key, s);
		return 0;
	}
	b64 = cli_base64(s, strlen(s));
	if (!b64)
		return ENOMEM;
	snprintf(name, sizeof(name), "%s_base64", key);
	cli_json_kv_str(j, name, b64);
	free(b64);
	return 0;
}

int cli_json_kv_headers(struct cli_json *j, const handoff_header *h, size_t n)
{
	size_t binary = 0;
	int rc = 0;

	cli_json_key(j, "headers");
	cli_json_begin_object(j);
	for (size_t i = 0; i < n; i++) {
		const char *name = h[i].name ? h[i].name : "";
		const char *value = h[i].value ? h[i].value : "";

		if (is_text(name) && is_text(value))
			cli_json_kv_str(j, name, value);
		else
			binary++;
	}
	cli_json_end_object(j);
	if (!binary)
		return 0;
	/* JSON strings are text: bytes that are not UTF-8 would come out
	 * as U+FFFD and be lost, so these headers go as base64. */
	cli_json_key(j, "headers_binary");
	cli_json_begin_array(j);
	for (size_t i = 0; i < n && !rc; i++) {
		const char *name = h[i].name ? h[i].name : "";
		const char *value = h[i].value ? h[i].value : "";

		if (is_text(name) && is_text(value))
			continue;
		cli_json_begin_object(j);
		rc = kv_text_or_base64(j, "name", name);
		if (!rc)
			rc = kv_text_or_base64(j, "value", value);
		cli_json_end_object(j);
	}
	cli_json_end_array(j);
	return rc;
}

void cli_json_kv_history(struct cli_json *j, const handoff_attempt *a, size_t n)
{
	cli_json_key(j, "history");
	cli_json_begin_array(j);
	for (size_t i = 0; i < n; i++) {
		cli_json_begin_object(j);
		cli_json_kv_u64(j, "attempt", a[i].attempt);
		cli_json_kv_str(j, "consumer", a[i].consumer);
		cli_json_kv_time(j, "leased", a[i].leased_ms);
		cli_json_kv_time(j, "ended", a[i].ended_ms);
		cli_json_kv_str(j, "outcome",
				handoff_outcome_name(a[i].outcome));
		cli_json_kv_str(j, "error", a[i].error);
		cli_json_kv_u64(j, "retry_delay_ms", a[i].retry_delay_ms);
		cli_json_end_object(j);
	}
	cli_json_end_array(j);
}

void cli_json_kv_policy(struct cli_json *j, const handoff_policy *p)
{
	cli_json_key(j, "policy");
	cli_json_begin_object(j);
	cli_json_kv_u64(j, "max_attempts", p->max_attempts);
	cli_json_kv_u64(j, "ack_deadline_ms", p->ack_deadline_ms);
	cli_json_kv_u64(j, "backoff_min_ms", p->backoff_min_ms);
	cli_json_kv_u64(j, "backoff_max_ms", p->backoff_max_ms);
	cli_json_end_object(j);
}

void cli_json_kv_pause(struct cli_json *j, const handoff_pause_state *p)
{
	cli_json_kv_bool(j, "paused", p->paused);
	if (!p->paused)
		return;
	cli_json_kv_str(j, "paused_reason", p->reason);
	cli_json_kv_str(j, "paused_by", p->by);
	cli_json_kv_time(j, "paused_since", p->since_ms);
}

void cli_print_pauses(FILE *f, const void *base, size_t n, size_t stride,
		      size_t name_off, size_t pause_off)
{
	for (size_t i = 0; i < n; i++) {
		const char *e = (const char *)base + i * stride;
		const char *name = *(char *const *)(e + name_off);
		const handoff_pause_state *p =
			(const handoff_pause_state *)(e + pause_off);
		char b[CLI_FMT_MAX];

		if (!p->paused)
			continue;
		fputs("paused ", f);
		cli_put_escaped_str(f, name, CLI_ESC_SPACE);
		fprintf(f, " since %s", cli_fmt_time(p->since_ms, b));
		if (p->by && *p->by) {
			fputs(" by ", f);
			cli_put_escaped_str(f, p->by, CLI_ESC_SPACE);
		}
		fputs(": ", f);
		cli_put_escaped_str(f, p->reason, 0);
		fputc('\n', f);
	}
}

/* ---- tables -------------------------------------------------------------- */

void cli_table_init(struct cli_table *t, const char *const *head, size_t ncols,
		    unsigned right)
{
	memset(t, 0, sizeof(*t));
	t->head = head;
	t->ncols = ncols;
	t->right = right;
}

int cli_table_add(struct cli_table *t, ...)
{
	va_list ap;
	size_t base;

	if (t->err)
		return t->err;
	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **nc = realloc(t->cells, cap * t->ncols * sizeof(*nc));

		if (!nc)
			return t->err = ENOMEM;
		t->cells = nc;
		t->cap = cap;
	}
	base = t->nrows * t->ncols;
	va_start(ap, t);
	for (size_t i = 0; i < t->ncols; i++) {
		const char *s = va_arg(ap, const char *);

		if (!s)
			s = "-";
		t->cells[base + i] = cli_escape(s, strlen(s), 0);
		if (!t->cells[base + i])
			t->err = ENOMEM;
	}
	va_end(ap);
	t->nrows++;
	return t->err;
}

/* Display width: count code points, not bytes. */
static size_t text_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

static void put_cell(FILE *f, const char *s, size_t width, bool right,
		     bool last)
{
	size_t pad = width - text_width(s);

	if (right)
		fprintf(f, "%*s", (int)pad, "");
	fputs(s, f);
	if (!right && !last)
		fprintf(f, "%*s", (int)pad, "");
	if (!last)
		fputs("  ", f);
}

int cli_table_print(struct cli_table *t, FILE *f, const char *indent)
{
	size_t *w;

	if (t->err)
		return t->err;
	w = calloc(t->ncols, sizeof(*w));
	if (!w)
		return ENOMEM;
	for (size_t c = 0; c < t->ncols; c++) {
		w[c] = text_width(t->head[c]);
		for (size_t r = 0; r < t->nrows; r++) {
			size_t cw = text_width(t->cells[r * t->ncols + c]);

			if (cw > w[c])
				w[c] = cw;
		}
	}
	fputs(indent, f);
	for (size_t c = 0; c < t->ncols; c++)
		put_cell(f, t->head[c], w[c], t->right & (1u << c),
			 c + 1 == t->ncols);
	fputc('\n', f);
	for (size_t r = 0; r < t->nrows; r++) {
		fputs(indent, f);
		for (size_t c = 0; c < t->ncols; c++)
			put_cell(f, t->cells[r * t->ncols + c], w[c],
				 t->right & (1u << c), c + 1 == t->ncols);
		fputc('\n', f);
	}
	free(w);
	return 0;
}

void cli_table_free(struct cli_table *t)
{
	for (size_t i = 0; t->cells && i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->nrows = t->cap = 0;
}

int cli_print_history(FILE *f, const handoff_attempt *a, size_t n,
		      const char *indent)
{
	static const char *const head[] = { "ATTEMPT",	 "CONSUMER",
					    "LEASED_AT", "ENDED_AT",
					    "OUTCOME",	 "RETRY_DELAY",
					    "ERROR" };
	struct cli_table t;
	int rc;

	cli_table_init(&t, head, 7, 1u << 0 | 1u << 5);
	for (size_t i = 0; i < n; i++) {
		char num[CLI_FMT_MAX], l[CLI_FMT_MAX], e[CLI_FMT_MAX],
			d[CLI_FMT_MAX];
		const char *err = a[i].error && *a[i].error ? a[i].error : NULL;

		cli_table_add(&t, cli_fmt_u64(a[i].attempt, num),
			      a[i].consumer && *a[i].consumer ? a[i].consumer :
								NULL,
			      cli_fmt_time(a[i].leased_ms, l),
			      cli_fmt_time(a[i].ended_ms, e),
			      handoff_outcome_name(a[i].outcome),
			      a[i].retry_delay_ms ?
				      cli_fmt_duration(a[i].retry_delay_ms, d) :
				      NULL,
			      err);
	}
	rc = cli_table_print(&t, f, indent);
	cli_table_free(&t);
	return rc;
}

void cli_print_policy(FILE *f, const handoff_policy *p)
{
	char a[CLI_FMT_MAX], lo[CLI_FMT_MAX], hi[CLI_FMT_MAX];

	fprintf(f, "max_attempts=%" PRIu32 " ack_deadline=%s backoff=%s..%s",
		p->max_attempts, cli_fmt_duration(p->ack_deadline_ms, a),
		cli_fmt_duration(p->backoff_min_ms, lo),
		cli_fmt_duration(p->backoff_max_ms, hi));
}
