/*
 * http_api.c — JSON <-> native request and reply; see http_api.h.
 */
#include "http_api.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "arena.h"
#include "codec.h"
#include "health.h"
#include "http_metrics.h"

#define ST(x)		    HANDOFF__WIRE__STATUS__##x
#define HEADER_PREFIX	    "Handoff-Header-"
#define DEFAULT_CONSUMER    "http"
#define JSON_TYPE	    "application/json"
#define PROBLEM_TYPE	    "application/problem+json"
#define MAX_HEADERS_PER_EVT 64

/* ---- status mapping ----------------------------------------------------- */

struct status_map {
	const char *name;
	int http;
	const char *title;
};

static const struct status_map statuses[] = {
	[ST(OK)] = { "OK", 200, "ok" },
	[ST(BAD_REQUEST)] = { "BAD_REQUEST", 400, "bad request" },
	[ST(UNSUPPORTED_VERSION)] = { "UNSUPPORTED_VERSION", 400,
				      "unsupported version" },
	[ST(NO_SUBSCRIPTIONS)] = { "NO_SUBSCRIPTIONS", 409,
				   "topic has no subscriptions" },
	[ST(NOT_FOUND)] = { "NOT_FOUND", 404, "not found" },
	[ST(CONFLICT)] = { "CONFLICT", 409, "conflict" },
	[ST(LEASE_LOST)] = { "LEASE_LOST", 409, "lease lost" },
	[ST(LIMIT_EXCEEDED)] = { "LIMIT_EXCEEDED", 429, "limit exceeded" },
	[ST(STORAGE_FULL)] = { "STORAGE_FULL", 503, "storage full" },
	[ST(SHUTTING_DOWN)] = { "SHUTTING_DOWN", 503, "shutting down" },
	[ST(INTERNAL)] = { "INTERNAL", 500, "internal error" },
	[ST(PERMISSION_DENIED)] = { "PERMISSION_DENIED", 403,
				    "permission denied" },
	[ST(STALE_REQUEST)] = { "STALE_REQUEST", 401, "stale request" },
};

static const char *status_name(int st)
{
	if (st < 0 || (size_t)st >= sizeof statuses / sizeof statuses[0] ||
	    !statuses[st].name)
		return "INTERNAL";
	return statuses[st].name;
}

/* A size limit (the request or one of its parts too large) is 413; a
 * count or rate limit (backlog, leases, held fetches) is 429. */
static int limit_http_status(const char *msg)
{
	static const char *const size_limits[] = { "max_payload", "max_request",
						   "max_batch", "max_name" };
	for (size_t i = 0; msg && i < 4; i++)
		if (strstr(msg, size_limits[i]))
			return 413;
	return 429;
}

/* ---- output helpers ----------------------------------------------------- */

/* Collects the failure of any setter: one failure fails the document. */
struct jb {
	bool bad;
};

static void jset(struct jb *b, json_t *o, const char *k, json_t *v)
{
	if (!v || !o || json_object_set_new(o, k, v))
		b->bad = true;
}

static void jpush(struct jb *b, json_t *a, json_t *v)
{
	if (!v || !a || json_array_append_new(a, v))
		b->bad = true;
}

/* Valid UTF-8 stays; other bytes become U+FFFD, so a name or message from
 * a native client that is not UTF-8 never drops a field. */
static json_t *jtext(const char *s, size_t n)
{
	json_t *v = json_stringn(s ? s : "", s ? n : 0);
	if (v)
		return v;
	char *fix = malloc(n * 3 + 1);
	if (!fix)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		json_t *one = NULL;
		size_t w = 1;
		unsigned char c = (unsigned char)s[i];
		if (c >= 0xc0)
			w = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
		if (i + w <= n && w > 1)
			one = json_stringn(s + i, w);
		if (c < 0x80 || one) {
			memcpy(fix + o, s + i, c < 0x80 ? 1 : w);
			o += c < 0x80 ? 1 : w;
			i += c < 0x80 ? 1 : w;
		} else {
			memcpy(fix + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
		json_decref(one);
	}
	json_t *v2 = json_stringn(fix, o);
	free(fix);
	return v2;
}

static json_t *jstr(const char *s)
{
	return jtext(s, s ? strlen(s) : 0);
}

static json_t *jid(uint64_t id)
{
	char buf[24];
	snprintf(buf, sizeof buf, "%llu", (unsigned long long)id);
	return json_string(buf);
}

static json_t *jnum(uint64_t n)
{
	return json_integer(n > INT64_MAX ? INT64_MAX : (json_int_t)n);
}

static void set_json(struct http_out *out, int status, json_t *doc, bool bad)
{
	char *s = bad || !doc ? NULL : json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (!s) {
		http_api_problem(out, 500, "INTERNAL",
				 "the reply could not be written as JSON", NULL,
				 0);
		return;
	}
	out->status = status;
	out->content_type = JSON_TYPE;
	out->body = s;
	out->len = strlen(s);
}

void http_api_problem(struct http_out *out, int status, const char *name,
		      const char *detail, const char *field,
		      uint32_t retry_after_ms)
{
	static const char fallback[] =
		"{\"type\":\"about:blank\",\"title\":\"internal error\","
		"\"status\":500,\"handoff_status\":\"INTERNAL\"}";
	char type[96], title[64];
	struct jb b = { false };
	json_t *o = json_object();
	size_t i;

	snprintf(type, sizeof type, "urn:handoff:problem:%s", name);
	for (i = 20; type[i]; i++)
		type[i] = (char)(type[i] >= 'A' && type[i] <= 'Z' ?
					 type[i] - 'A' + 'a' :
				 type[i] == '_' ? '-' :
						  type[i]);
	snprintf(title, sizeof title, "%s", name);
	for (i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
		if (statuses[i].name && strcmp(statuses[i].name, name) == 0)
			snprintf(title, sizeof title, "%s", statuses[i].title);
	jset(&b, o, "type", json_string(type));
	jset(&b, o, "title", jstr(title));
	jset(&b, o, "status", json_integer(status));
	jset(&b, o, "detail", jstr(detail ? detail : ""));
	jset(&b, o, "handoff_status", jstr(name));
	if (field)
		jset(&b, o, "field", jstr(field));
	if (retry_after_ms)
		jset(&b, o, "retry_after_ms", json_integer(retry_after_ms));
	char *s = b.bad ? NULL : json_dumps(o, JSON_COMPACT);
	json_decref(o);
	free(out->body);
	out->body = s ? s : strdup(fallback);
	out->len = out->body ? strlen(out->body) : 0;
	out->status = s ? status : 500;
	out->content_type = PROBLEM_TYPE;
	out->retry_after_s = (retry_after_ms + 999) / 1000;
}

static bool fail(struct http_out *out, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* 400 naming the field. Always false, so callers can return it. */
static bool fail(struct http_out *out, const char *field, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	http_api_problem(out, 400, "BAD_REQUEST", msg, field, 0);
	return false;
}

void http_route_free(struct http_route *r)
{
	free(r->path_name);
	free(r->item_ids);
	memset(r, 0, sizeof *r);
}

void http_out_free(struct http_out *out)
{
	free(out->body);
	memset(out, 0, sizeof *out);
}

/* ---- routing ------------------------------------------------------------ */

static bool ends_with(const char *s, size_t n, const char *suffix, size_t *cut)
{
	size_t k = strlen(suffix);
	if (n <= k || memcmp(s + n - k, suffix, k) != 0)
		return false;
	*cut = n - k;
	return true;
}

static bool parse_u64(const char *s, uint64_t *v)
{
	uint64_t n = 0;
	if (!s || !*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (n > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		n = n * 10 + (uint64_t)(*s - '0');
	}
	*v = n;
	return true;
}

static bool route_to(struct http_route *r, enum http_op op, const char *name,
		     const char *path_name, size_t name_len)
{
	r->op = op;
	r->name = name;
	if (path_name) {
		r->path_name = malloc(name_len + 1);
		if (!r->path_name)
			return false;
		memcpy(r->path_name, path_name, name_len);
		r->path_name[name_len] = '\0';
	}
	return true;
}

/* s is one path segment (no '/'). A loop, not strchr: GCC 12 takes a
 * pointer past a strncmp'd prefix for a zero-size region and warns. */
static bool one_segment(const char *s)
{
	for (; *s; s++)
		if (*s == '/')
			return false;
	return true;
}

/* The methods each path takes, for 405. */
static bool route_match(const char *path, const char *method,
			struct http_route *r, const char **allow)
{
	size_t n = strlen(path), cut;
	bool get = strcmp(method, "GET") == 0;
	bool post = strcmp(method, "POST") == 0;
	const char *rest;

#define ON(cond, methods, ...)                                    \
	do {                                                      \
		*allow = methods;                                 \
		return (cond) ? route_to(r, __VA_ARGS__) : false; \
	} while (0)

	if (strcmp(path, "/v1/health") == 0)
		ON(get, "GET", HOP_HEALTH, "ping", NULL, 0);
	if (strcmp(path, "/healthz") == 0)
		ON(get, "GET", HOP_HEALTHZ, "healthz", NULL, 0);
	if (strcmp(path, "/readyz") == 0)
		ON(get, "GET", HOP_READYZ, "readyz", NULL, 0);
	if (strcmp(path, "/v1/version") == 0)
		ON(get, "GET", HOP_VERSION, "ping", NULL, 0);
	if (strcmp(path, "/v1/stats") == 0)
		ON(get, "GET", HOP_STATS, "stats", NULL, 0);
	if (strcmp(path, "/metrics") == 0)
		ON(get, "GET", HOP_METRICS, "stats", NULL, 0);
	if (strcmp(path, "/v1/audit") == 0)
		ON(get, "GET", HOP_AUDIT, "audit_list", NULL, 0);
	if (strcmp(path, "/v1/subscriptions") == 0)
		ON(get, "GET", HOP_SUB_LIST, "list_subscriptions", NULL, 0);
	if (strncmp(path, "/v1/events/", 11) == 0) {
		*allow = "GET";
		if (!get)
			return false;
		if (!parse_u64(path + 11, &r->path_id)) {
			*allow = NULL; /* not an event id: no such path */
			return false;
		}
		return route_to(r, HOP_TRACE, "trace", NULL, 0);
	}
	if (n > 12 && strncmp(path, "/v1/backups/", 12) == 0 &&
	    one_segment(path + 12)) {
		*allow = "GET, PUT";
		if (get)
			return route_to(r, HOP_BACKUP_STATUS, "backup",
					path + 12, n - 12);
		if (strcmp(method, "PUT") == 0)
			return route_to(r, HOP_BACKUP_START, "backup",
					path + 12, n - 12);
		return false;
	}
	if (strncmp(path, "/v1/topics/", 11) == 0) {
		rest = path + 11;
		n -= 11;
		if (ends_with(rest, n, "/events:batch", &cut))
			ON(post, "POST", HOP_PUBLISH_BATCH, "publish", rest,
			   cut);
		if (ends_with(rest, n, "/events", &cut))
			ON(post, "POST", HOP_PUBLISH, "publish", rest, cut);
		return false;
	}
	if (strncmp(path, "/v1/subscriptions/", 18) != 0)
		return false;
	rest = path + 18;
	n -= 18;
	/* Only POST: a subscription may be named "x:pause" and be read. */
	if (post && ends_with(rest, n, ":pause", &cut))
		return route_to(r, HOP_SUB_PAUSE, "pause", rest, cut);
	if (post && ends_with(rest, n, ":resume", &cut))
		return route_to(r, HOP_SUB_RESUME, "resume", rest, cut);
	if (ends_with(rest, n, "/fetch", &cut))
		ON(post, "POST", HOP_FETCH, "fetch", rest, cut);
	if (ends_with(rest, n, "/ack", &cut))
		ON(post, "POST", HOP_ACK, "ack", rest, cut);
	if (ends_with(rest, n, "/nack", &cut))
		ON(post, "POST", HOP_NACK, "nack", rest, cut);
	if (ends_with(rest, n, "/extend", &cut))
		ON(post, "POST", HOP_EXTEND, "extend", rest, cut);
	if (ends_with(rest, n, "/dead-letters:replay", &cut))
		ON(post, "POST", HOP_DLQ_REPLAY, "dlq_replay", rest, cut);
	if (ends_with(rest, n, "/dead-letters:purge", &cut))
		ON(post, "POST", HOP_DLQ_PURGE, "dlq_purge", rest, cut);
	if (ends_with(rest, n, "/dead-letters", &cut))
		ON(get, "GET", HOP_DLQ_LIST, "dlq_list", rest, cut);
	const char *dl = strstr(rest, "/dead-letters/");
	if (dl && dl > rest && !strstr(dl + 14, "/") &&
	    parse_u64(dl + 14, &r->path_id))
		ON(get, "GET", HOP_DLQ_SHOW, "dlq_show", rest,
		   (size_t)(dl - rest));
	*allow = "GET, PUT, DELETE";
	if (get)
		return route_to(r, HOP_SUB_GET, "list_subscriptions", rest, n);
	if (strcmp(method, "PUT") == 0)
		return route_to(r, HOP_SUB_PUT, "subscribe", rest, n);
	if (strcmp(method, "DELETE") == 0)
		return route_to(r, HOP_SUB_DELETE, "unsubscribe", rest, n);
	return false;
#undef ON
}

bool http_api_route(const char *method, const char *path, struct http_route *r,
		    struct http_out *out)
{
	const char *allow = NULL;
	memset(r, 0, sizeof *r);
	if (route_match(path, method, r, &allow)) {
		r->open = r->op == HOP_HEALTH || r->op == HOP_VERSION ||
			  r->op == HOP_HEALTHZ || r->op == HOP_READYZ;
		return true;
	}
	bool nomem = r->op != HOP_NONE; /* matched, but the copy failed */
	http_route_free(r);
	if (nomem) {
		http_api_problem(out, 500, "INTERNAL", "out of memory", NULL,
				 1000);
		return false;
	}
	if (allow) {
		char msg[128];
		snprintf(msg, sizeof msg, "method %.16s not allowed here: %s",
			 method, allow);
		http_api_problem(out, 405, "BAD_REQUEST", msg, NULL, 0);
		out->allow = allow;
		return false;
	}
	http_api_problem(out, 404, "NOT_FOUND",
			 "no such endpoint (see proto/openapi.yaml)", NULL, 0);
	return false;
}

/* ---- request helpers ---------------------------------------------------- */

static const char *find_kv(const struct http_kv *kv, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (kv[i].name && strcasecmp(kv[i].name, name) == 0)
			return kv[i].value;
	return NULL;
}

/* Names, keys and header values must be UTF-8 without control bytes. */
static bool text_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	json_t *v = json_stringn(s, n);
	json_decref(v);
	return v != NULL;
}

static bool check_text(struct http_out *out, const char *field, const char *s)
{
	if (s && !text_ok(s, strlen(s)))
		return fail(out, field,
			    "%s must be UTF-8 text without control characters",
			    field);
	return true;
}

/* Parse a JSON object body. NULL (with a 400 naming where) when it is not
 * one. An empty body is an empty object. */
static json_t *load_body(const struct http_in *in, struct http_out *out)
{
	json_error_t e;
	if (in->body_len == 0)
		return json_object();
	json_t *j = json_loadb(in->body, in->body_len,
			       JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
	if (!j) {
		fail(out, "body", "malformed JSON at line %d column %d: %s",
		     e.line, e.column, e.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		fail(out, "body", "the body must be a JSON object");
		return NULL;
	}
	return j;
}

/* Refuse fields not in allowed (a typo must not be silently ignored). */
static bool only_fields(json_t *o, const char *const *allowed,
			struct http_out *out, const char *where)
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
	{
		bool ok = false;
		for (size_t i = 0; allowed[i] && !ok; i++)
			ok = strcmp(k, allowed[i]) == 0;
		if (!ok) {
			char f[160];
			snprintf(f, sizeof f, "%s%s", where, k);
			return fail(out, f, "unknown field '%s'", f);
		}
	}
	return true;
}

static bool get_u32(json_t *o, const char *k, uint32_t *v, struct http_out *out)
{
	json_t *j = json_object_get(o, k);
	if (!j || json_is_null(j))
		return true;
	if (!json_is_integer(j) || json_integer_value(j) < 0 ||
	    json_integer_value(j) > UINT32_MAX)
		return fail(out, k, "%s must be an integer 0..4294967295", k);
	*v = (uint32_t)json_integer_value(j);
	return true;
}

/* An id: a decimal string (the documented form) or a JSON integer. */
static bool id_of(json_t *j, uint64_t *v)
{
	if (json_is_string(j))
		return parse_u64(json_string_value(j), v);
	if (json_is_integer(j) && json_integer_value(j) >= 0) {
		*v = (uint64_t)json_integer_value(j);
		return true;
	}
	return false;
}

static bool get_id(json_t *o, const char *k, uint64_t *v, bool required,
		   struct http_out *out, const char *field)
{
	json_t *j = json_object_get(o, k);
	if (!j || json_is_null(j)) {
		if (required)
			return fail(out, field, "%s is required", field);
		return true;
	}
	if (!id_of(j, v))
		return fail(out, field,
			    "%s must be a decimal string of a 64-bit "
			    "unsigned integer",
			    field);
	return true;
}

static bool get_bool(json_t *o, const char *k, protobuf_c_boolean *v,
		     struct http_out *out)
{
	json_t *j = json_object_get(o, k);
	if (!j || json_is_null(j))
		return true;
	if (!json_is_boolean(j))
		return fail(out, k, "%s must be true or false", k);
	*v = json_is_true(j);
	return true;
}

/* A string field (NULL when absent); the value lives as long as o. */
static bool get_str(json_t *o, const char *k, const char **v,
		    struct http_out *out, const char *field)
{
	json_t *j = json_object_get(o, k);
	if (!j || json_is_null(j))
		return true;
	if (!json_is_string(j) ||
	    strlen(json_string_value(j)) != json_string_length(j))
		return fail(out, field, "%s must be a string without NUL",
			    field);
	*v = json_string_value(j);
	return true;
}

/* A key for an event sent without one: unique, and sorting by time like
 * the client library's (client/publish.c), because the store keeps
 * idempotency records in key order: time-ordered keys are appended to a
 * few pages per commit, random ones each dirty a random page of the tree
 * (a 100-event batch then wrote ~100 pages per commit). */
static char *random_key(struct arena *a)
{
	uint8_t raw[12];
	char hex[2 * sizeof raw + 1];
	struct timespec ts;
	if (sodium_init() < 0)
		return NULL;
	clock_gettime(CLOCK_REALTIME, &ts);
	unsigned long long ms = (unsigned long long)ts.tv_sec * 1000ull +
				(unsigned long long)ts.tv_nsec / 1000000ull;
	randombytes_buf(raw, sizeof raw);
	sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
	size_t len = 5 + 12 + 1 + sizeof hex;
	char *k = arena_alloc(a, len);
	if (k)
		snprintf(k, len, "http-%012llx-%s", ms & 0xffffffffffffull,
			 hex);
	return k;
}

/* ---- requests ------------------------------------------------------------ */

struct build {
	struct arena a;
	Request req;
	json_t *doc; /* the body, kept while its strings are used */
	struct http_out *out;
};

static bool nomem(struct build *b)
{
	http_api_problem(b->out, 500, "INTERNAL", "out of memory", NULL, 1000);
	return false;
}

static void *alloc(struct build *b, size_t n)
{
	void *p = arena_alloc(&b->a, n ? n : 1);
	if (p)
		memset(p, 0, n ? n : 1);
	return p;
}

static bool name_ok(struct build *b, const char *field, const char *name)
{
	if (!*name)
		return fail(b->out, field, "%s must not be empty", field);
	return check_text(b->out, field, name);
}

static bool build_single_publish(struct build *b, struct http_route *r,
				 const struct http_in *in)
{
	Handoff__Wire__PublishRequest *p = alloc(b, sizeof *p);
	Handoff__Wire__PublishEvent *e = alloc(b, sizeof *e);
	Handoff__Wire__PublishEvent **ev = alloc(b, sizeof *ev);
	Handoff__Wire__Header **hs = alloc(b, MAX_HEADERS_PER_EVT * sizeof *hs);
	size_t pre = strlen(HEADER_PREFIX);
	if (!p || !e || !ev || !hs)
		return nomem(b);
	handoff__wire__publish_request__init(p);
	handoff__wire__publish_event__init(e);
	p->topic = r->path_name;
	p->n_events = 1;
	p->events = ev;
	ev[0] = e;
	e->payload.data = (uint8_t *)in->body;
	e->payload.len = in->body_len;
	e->key = (char *)find_kv(in->headers, in->n_headers, "Handoff-Key");
	e->idempotency_key =
		(char *)find_kv(in->headers, in->n_headers, "Idempotency-Key");
	if (!check_text(b->out, "Handoff-Key", e->key) ||
	    !check_text(b->out, "Idempotency-Key", e->idempotency_key))
		return false;
	if (!e->key)
		e->key = (char *)"";
	if (!e->idempotency_key && !(e->idempotency_key = random_key(&b->a)))
		return nomem(b);
	e->headers = hs;
	for (size_t i = 0; i < in->n_headers; i++) {
		const struct http_kv *kv = &in->headers[i];
		if (!kv->name || strncasecmp(kv->name, HEADER_PREFIX, pre))
			continue;
		if (!kv->name[pre])
			return fail(b->out, HEADER_PREFIX,
				    "a Handoff-Header- header needs a name");
		if (e->n_headers == MAX_HEADERS_PER_EVT)
			return fail(b->out, HEADER_PREFIX,
				    "at most %d event headers",
				    MAX_HEADERS_PER_EVT);
		if (!check_text(b->out, kv->name, kv->value))
			return false;
		Handoff__Wire__Header *h = alloc(b, sizeof *h);
		if (!h)
			return nomem(b);
		handoff__wire__header__init(h);
		h->name = (char *)kv->name + pre;
		h->value = (char *)(kv->value ? kv->value : "");
		hs[e->n_headers++] = h;
	}
	b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_PUBLISH;
	b->req.publish = p;
	return true;
}

static bool headers_of(struct build *b, json_t *list, const char *field,
		       Handoff__Wire__Header ***out_h, size_t *n_out)
{
	static const char *const hf[] = { "name", "value", NULL };
	if (!list || json_is_null(list))
		return true;
	if (!json_is_array(list))
		return fail(b->out, field,
			    "%s must be a list of {\"name\", \"value\"}",
			    field);
	size_t n = json_array_size(list);
	if (n > MAX_HEADERS_PER_EVT)
		return fail(b->out, field, "at most %d headers",
			    MAX_HEADERS_PER_EVT);
	Handoff__Wire__Header **hs = alloc(b, n * sizeof *hs);
	if (!hs)
		return nomem(b);
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_array_get(list, i);
		const char *name = NULL, *value = NULL;
		if (!json_is_object(o))
			return fail(b->out, field, "%s[%zu] must be an object",
				    field, i);
		if (!only_fields(o, hf, b->out, "headers[].") ||
		    !get_str(o, "name", &name, b->out, "headers[].name") ||
		    !get_str(o, "value", &value, b->out, "headers[].value"))
			return false;
		if (!name || !*name)
			return fail(b->out, "headers[].name",
				    "a header needs a name");
		hs[i] = alloc(b, sizeof *hs[i]);
		if (!hs[i])
			return nomem(b);
		handoff__wire__header__init(hs[i]);
		hs[i]->name = (char *)name;
		hs[i]->value = (char *)(value ? value : "");
	}
	*out_h = hs;
	*n_out = n;
	return true;
}

static bool build_batch(struct build *b, struct http_route *r)
{
	static const char *const top[] = { "events", NULL };
	static const char *const ef[] = { "payload", "payload_encoding", "key",
					  "headers", "idempotency_key",	 NULL };
	json_t *list = json_object_get(b->doc, "events");
	if (!only_fields(b->doc, top, b->out, ""))
		return false;
	if (!json_is_array(list) || json_array_size(list) == 0)
		return fail(b->out, "events",
			    "events must be a non-empty list");
	size_t n = json_array_size(list);
	Handoff__Wire__PublishRequest *p = alloc(b, sizeof *p);
	Handoff__Wire__PublishEvent **ev = alloc(b, n * sizeof *ev);
	if (!p || !ev)
		return nomem(b);
	handoff__wire__publish_request__init(p);
	p->topic = r->path_name;
	p->events = ev;
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_array_get(list, i), *pl;
		const char *enc = NULL, *key = NULL, *idem = NULL;
		if (!json_is_object(o))
			return fail(b->out, "events",
				    "events[%zu] must be an object", i);
		Handoff__Wire__PublishEvent *e = alloc(b, sizeof *e);
		if (!e)
			return nomem(b);
		handoff__wire__publish_event__init(e);
		if (!only_fields(o, ef, b->out, "events[].") ||
		    !get_str(o, "payload_encoding", &enc, b->out,
			     "events[].payload_encoding") ||
		    !get_str(o, "key", &key, b->out, "events[].key") ||
		    !get_str(o, "idempotency_key", &idem, b->out,
			     "events[].idempotency_key") ||
		    !headers_of(b, json_object_get(o, "headers"),
				"events[].headers", &e->headers, &e->n_headers))
			return false;
		pl = json_object_get(o, "payload");
		if (!json_is_string(pl))
			return fail(b->out, "events[].payload",
				    "events[%zu].payload must be a string", i);
		const char *txt = json_string_value(pl);
		size_t tl = json_string_length(pl);
		if (!enc || strcmp(enc, "utf-8") == 0) {
			e->payload.data = (uint8_t *)txt;
			e->payload.len = tl;
		} else if (strcmp(enc, "base64") == 0) {
			size_t bl = 0;
			uint8_t *bin = alloc(b, tl);
			if (!bin)
				return nomem(b);
			if (sodium_base642bin(bin, tl, txt, tl, "\r\n", &bl,
					      NULL,
					      sodium_base64_VARIANT_ORIGINAL))
				return fail(b->out, "events[].payload",
					    "events[%zu].payload is not "
					    "base64",
					    i);
			e->payload.data = bin;
			e->payload.len = bl;
		} else {
			return fail(b->out, "events[].payload_encoding",
				    "payload_encoding must be utf-8 or "
				    "base64");
		}
		e->key = (char *)(key ? key : "");
		e->idempotency_key = (char *)idem;
		if (!idem && !(e->idempotency_key = random_key(&b->a)))
			return nomem(b);
		ev[p->n_events++] = e;
	}
	b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_PUBLISH;
	b->req.publish = p;
	return true;
}

static bool build_subscribe(struct build *b, struct http_route *r)
{
	static const char *const top[] = { "topic", "policy", "push", NULL };
	static const char *const pf[] = { "max_attempts", "ack_deadline_ms",
					  "backoff_min_ms", "backoff_max_ms",
					  NULL };
	static const char *const pushf[] = { "url", "timeout_ms", "concurrency",
					     "secret", NULL };
	Handoff__Wire__SubscribeRequest *s = alloc(b, sizeof *s);
	Handoff__Wire__Policy *pol = alloc(b, sizeof *pol);
	const char *topic = NULL;
	if (!s || !pol)
		return nomem(b);
	handoff__wire__subscribe_request__init(s);
	handoff__wire__policy__init(pol);
	if (!only_fields(b->doc, top, b->out, "") ||
	    !get_str(b->doc, "topic", &topic, b->out, "topic"))
		return false;
	if (!topic)
		return fail(b->out, "topic", "topic is required");
	if (!name_ok(b, "topic", topic))
		return false;
	json_t *p = json_object_get(b->doc, "policy");
	if (p && !json_is_null(p)) {
		if (!json_is_object(p))
			return fail(b->out, "policy",
				    "policy must be an object");
		if (!only_fields(p, pf, b->out, "policy.") ||
		    !get_u32(p, "max_attempts", &pol->max_attempts, b->out) ||
		    !get_u32(p, "ack_deadline_ms", &pol->ack_deadline_ms,
			     b->out) ||
		    !get_u32(p, "backoff_min_ms", &pol->backoff_min_ms,
			     b->out) ||
		    !get_u32(p, "backoff_max_ms", &pol->backoff_max_ms, b->out))
			return false;
	}
	json_t *pj = json_object_get(b->doc, "push");
	if (pj && !json_is_null(pj)) {
		Handoff__Wire__PushConfig *pc = alloc(b, sizeof *pc);
		const char *url = NULL, *secret = NULL;
		if (!pc)
			return nomem(b);
		handoff__wire__push_config__init(pc);
		if (!json_is_object(pj))
			return fail(b->out, "push", "push must be an object");
		if (!only_fields(pj, pushf, b->out, "push.") ||
		    !get_str(pj, "url", &url, b->out, "push.url") ||
		    !get_str(pj, "secret", &secret, b->out, "push.secret") ||
		    !get_u32(pj, "timeout_ms", &pc->timeout_ms, b->out) ||
		    !get_u32(pj, "concurrency", &pc->concurrency, b->out))
			return false;
		if (!url || !*url)
			return fail(b->out, "push.url", "push.url is required");
		pc->url = (char *)url;
		pc->secret = (char *)(secret ? secret : "");
		s->push = pc;
	}
	s->topic = (char *)topic;
	s->subscription = r->path_name;
	s->policy = pol;
	b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_SUBSCRIBE;
	b->req.subscribe = s;
	return true;
}

static bool build_fetch(struct build *b, struct http_route *r)
{
	static const char *const top[] = { "max_events", "wait_ms",
					   "consumer",	 "max_bytes",
					   "fetch_seq",	 NULL };
	Handoff__Wire__FetchRequest *f = alloc(b, sizeof *f);
	const char *consumer = NULL;
	if (!f)
		return nomem(b);
	handoff__wire__fetch_request__init(f);
	f->max_events = 1;
	if (!only_fields(b->doc, top, b->out, "") ||
	    !get_u32(b->doc, "max_events", &f->max_events, b->out) ||
	    !get_u32(b->doc, "wait_ms", &f->wait_ms, b->out) ||
	    !get_u32(b->doc, "max_bytes", &f->max_bytes, b->out) ||
	    !get_str(b->doc, "consumer", &consumer, b->out, "consumer") ||
	    !check_text(b->out, "consumer", consumer) ||
	    !get_id(b->doc, "fetch_seq", &f->fetch_seq, false, b->out,
		    "fetch_seq"))
		return false;
	/* fetch_seq (optional): a fetch resent after a lost reply, with the
	 * same consumer and fetch_seq, gets the same leases back from the
	 * resend cache (held.h), as the native client library's does. The
	 * cache is keyed by consumer: a shared default name would hand one
	 * client's leases to another. */
	if (f->fetch_seq && !consumer)
		return fail(b->out, "fetch_seq",
			    "fetch_seq needs a consumer name of this "
			    "client's own");
	f->subscription = r->path_name;
	f->consumer = (char *)(consumer ? consumer : DEFAULT_CONSUMER);
	b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_FETCH;
	b->req.fetch = f;
	return true;
}

/* pause: {"reason": "..."} (required) */
static bool build_pause(struct build *b, struct http_route *r)
{
	static const char *const top[] = { "reason", NULL };
	Handoff__Wire__PauseRequest *q = alloc(b, sizeof *q);
	const char *reason = NULL;
	if (!q)
		return nomem(b);
	handoff__wire__pause_request__init(q);
	if (!only_fields(b->doc, top, b->out, "") ||
	    !get_str(b->doc, "reason", &reason, b->out, "reason") ||
	    !check_text(b->out, "reason", reason))
		return false;
	if (!reason || !*reason)
		return fail(b->out, "reason",
			    "reason is required: it goes on record in the "
			    "audit log");
	q->subscription = r->path_name;
	q->reason = (char *)reason;
	b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_PAUSE;
	b->req.pause = q;
	return true;
}

/* ack, nack and extend: {"items": [{event_id, lease_token, ...}]}, and
 * for extend "extend_ms" beside the items */
static bool build_items(struct build *b, struct http_route *r)
{
	static const char *const top[] = { "items", NULL };
	static const char *const top_extend[] = { "items", "extend_ms", NULL };
	static const char *const top_nack[] = { "items", "release", NULL };
	protobuf_c_boolean release = false;
	bool nack = r->op == HOP_NACK, extend = r->op == HOP_EXTEND;
	uint32_t extend_ms = 0;
	static const char *const af[] = { "event_id", "lease_token", NULL };
	static const char *const nf[] = { "event_id", "lease_token",
					  "delay_ms", "permanent",
					  "reason",   NULL };
	json_t *list = json_object_get(b->doc, "items");
	if (!only_fields(b->doc,
			 extend ? top_extend :
			 nack	? top_nack :
				  top,
			 b->out, ""))
		return false;
	if (nack && !get_bool(b->doc, "release", &release, b->out))
		return false;
	if (extend && !json_is_integer(json_object_get(b->doc, "extend_ms")))
		return fail(b->out, "extend_ms",
			    "extend_ms (milliseconds) is required");
	if (extend && !get_u32(b->doc, "extend_ms", &extend_ms, b->out))
		return false;
	if (!json_is_array(list) || json_array_size(list) == 0)
		return fail(b->out, "items", "items must be a non-empty list");
	size_t n = json_array_size(list);
	if (n > HTTP_API_MAX_ITEMS)
		return fail(b->out, "items", "at most %d items",
			    HTTP_API_MAX_ITEMS);
	r->item_ids = calloc(n, sizeof *r->item_ids);
	void **items = alloc(b, n * sizeof *items);
	if (!r->item_ids || !items)
		return nomem(b);
	r->n_items = n;
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_array_get(list, i);
		uint64_t id = 0, tok = 0;
		if (!json_is_object(o))
			return fail(b->out, "items",
				    "items[%zu] must be an object", i);
		if (!only_fields(o, nack ? nf : af, b->out, "items[].") ||
		    !get_id(o, "event_id", &id, true, b->out,
			    "items[].event_id") ||
		    !get_id(o, "lease_token", &tok, true, b->out,
			    "items[].lease_token"))
			return false;
		r->item_ids[i] = id;
		if (extend) {
			Handoff__Wire__ExtendItem *it = alloc(b, sizeof *it);
			if (!it)
				return nomem(b);
			handoff__wire__extend_item__init(it);
			it->event_id = id;
			it->lease_token = tok;
			items[i] = it;
			continue;
		}
		if (!nack) {
			Handoff__Wire__AckItem *it = alloc(b, sizeof *it);
			if (!it)
				return nomem(b);
			handoff__wire__ack_item__init(it);
			it->event_id = id;
			it->lease_token = tok;
			items[i] = it;
			continue;
		}
		Handoff__Wire__NackItem *it = alloc(b, sizeof *it);
		const char *reason = NULL;
		if (!it)
			return nomem(b);
		handoff__wire__nack_item__init(it);
		it->event_id = id;
		it->lease_token = tok;
		if (!get_u32(o, "delay_ms", &it->delay_ms, b->out) ||
		    !get_bool(o, "permanent", &it->permanent, b->out) ||
		    !get_str(o, "reason", &reason, b->out, "items[].reason"))
			return false;
		it->reason = (char *)(reason ? reason : "");
		items[i] = it;
	}
	if (extend) {
		Handoff__Wire__ExtendRequest *q = alloc(b, sizeof *q);
		if (!q)
			return nomem(b);
		handoff__wire__extend_request__init(q);
		q->subscription = r->path_name;
		q->n_items = n;
		q->items = (Handoff__Wire__ExtendItem **)items;
		q->extend_ms = extend_ms;
		b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_EXTEND;
		b->req.extend = q;
	} else if (nack) {
		Handoff__Wire__NackRequest *q = alloc(b, sizeof *q);
		if (!q)
			return nomem(b);
		handoff__wire__nack_request__init(q);
		q->subscription = r->path_name;
		q->n_items = n;
		q->items = (Handoff__Wire__NackItem **)items;
		q->release = release;
		b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_NACK;
		b->req.nack = q;
	} else {
		Handoff__Wire__AckRequest *q = alloc(b, sizeof *q);
		if (!q)
			return nomem(b);
		handoff__wire__ack_request__init(q);
		q->subscription = r->path_name;
		q->n_items = n;
		q->items = (Handoff__Wire__AckItem **)items;
		b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_ACK;
		b->req.ack = q;
	}
	return true;
}

static const char *const dead_reasons[] = { "unspecified", "max_attempts",
					    "permanent", "corrupt" };

static bool reason_of(const char *s, Handoff__Wire__DeadReason *v)
{
	for (int i = 1; i < 4; i++)
		if (strcmp(s, dead_reasons[i]) == 0) {
			*v = (Handoff__Wire__DeadReason)i;
			return true;
		}
	return false;
}

/* The filter from query arguments (dlq list) or a JSON object (replay,
 * purge): the same names, DlqFilter's. */
static bool filter_from_query(struct build *b, const struct http_in *in,
			      Handoff__Wire__DlqFilter *f, uint32_t *limit)
{
	for (size_t i = 0; i < in->n_query; i++) {
		const char *k = in->query[i].name, *v = in->query[i].value;
		uint64_t n = 0;
		bool num = v && parse_u64(v, &n);
		if (!k)
			continue;
		if (strcmp(k, "reason") == 0) {
			if (!v || !reason_of(v, &f->reason))
				return fail(b->out, k,
					    "reason must be max_attempts, "
					    "permanent or corrupt");
			continue;
		}
		if (strcmp(k, "error_contains") == 0) {
			if (!check_text(b->out, k, v))
				return false;
			f->error_contains = (char *)(v ? v : "");
			continue;
		}
		if (!num)
			return fail(b->out, k,
				    "%s must be a non-negative decimal "
				    "integer (or is not a known parameter)",
				    k);
		if (strcmp(k, "after_event_id") == 0)
			f->after_event_id = n;
		else if (strcmp(k, "dead_since_ms") == 0)
			f->dead_since_ms = n;
		else if (strcmp(k, "dead_until_ms") == 0)
			f->dead_until_ms = n;
		else if (strcmp(k, "limit") == 0 && n <= UINT32_MAX)
			*limit = (uint32_t)n;
		else
			return fail(b->out, k, "unknown query parameter %s", k);
	}
	return true;
}

static bool filter_from_json(struct build *b, json_t *o,
			     Handoff__Wire__DlqFilter *f)
{
	static const char *const ff[] = { "after_event_id", "dead_since_ms",
					  "dead_until_ms",  "reason",
					  "error_contains", NULL };
	const char *reason = NULL, *grep = NULL;
	if (!o || json_is_null(o))
		return true;
	if (!json_is_object(o))
		return fail(b->out, "filter", "filter must be an object");
	if (!only_fields(o, ff, b->out, "filter.") ||
	    !get_id(o, "after_event_id", &f->after_event_id, false, b->out,
		    "filter.after_event_id") ||
	    !get_id(o, "dead_since_ms", &f->dead_since_ms, false, b->out,
		    "filter.dead_since_ms") ||
	    !get_id(o, "dead_until_ms", &f->dead_until_ms, false, b->out,
		    "filter.dead_until_ms") ||
	    !get_str(o, "reason", &reason, b->out, "filter.reason") ||
	    !get_str(o, "error_contains", &grep, b->out,
		     "filter.error_contains"))
		return false;
	if (reason && !reason_of(reason, &f->reason))
		return fail(b->out, "filter.reason",
			    "reason must be max_attempts, permanent or "
			    "corrupt");
	f->error_contains = (char *)(grep ? grep : "");
	return true;
}

static bool build_dlq_list(struct build *b, struct http_route *r,
			   const struct http_in *in)
{
	Handoff__Wire__DlqListRequest *q = alloc(b, sizeof *q);
	Handoff__Wire__DlqFilter *f = alloc(b, sizeof *f);
	if (!q || !f)
		return nomem(b);
	handoff__wire__dlq_list_request__init(q);
	handoff__wire__dlq_filter__init(f);
	if (!filter_from_query(b, in, f, &q->limit))
		return false;
	q->subscription = r->path_name;
	q->filter = f;
	b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_DLQ_LIST;
	b->req.dlq_list = q;
	return true;
}

static bool build_dlq_action(struct build *b, struct http_route *r,
			     const struct http_in *in)
{
	static const char *const top[] = { "event_ids", "filter", "limit",
					   "dry_run",	"all",	  "rate",
					   "reason",	NULL };
	Handoff__Wire__DlqActionRequest *q = alloc(b, sizeof *q);
	Handoff__Wire__DlqFilter *f = alloc(b, sizeof *f);
	const char *reason = NULL;
	uint32_t rate = 0;
	if (!q || !f)
		return nomem(b);
	handoff__wire__dlq_action_request__init(q);
	handoff__wire__dlq_filter__init(f);
	if (!only_fields(b->doc, top, b->out, "") ||
	    !filter_from_json(b, json_object_get(b->doc, "filter"), f) ||
	    !get_u32(b->doc, "limit", &q->limit, b->out) ||
	    !get_u32(b->doc, "rate", &rate, b->out) ||
	    !get_bool(b->doc, "dry_run", &q->dry_run, b->out) ||
	    !get_bool(b->doc, "all", &q->all, b->out) ||
	    !get_str(b->doc, "reason", &reason, b->out, "reason"))
		return false;
	/* rate: events per second. One request is at most one second's
	 * worth; the reply's "more" says to call again a second later. */
	if (rate && (!q->limit || q->limit > rate))
		q->limit = rate;
	json_t *ids = json_object_get(b->doc, "event_ids");
	if (ids && !json_is_null(ids)) {
		if (!json_is_array(ids))
			return fail(b->out, "event_ids",
				    "event_ids must be a list of ids");
		size_t n = json_array_size(ids);
		q->event_ids = alloc(b, n * sizeof *q->event_ids);
		if (!q->event_ids)
			return nomem(b);
		for (size_t i = 0; i < n; i++)
			if (!id_of(json_array_get(ids, i), &q->event_ids[i]))
				return fail(b->out, "event_ids",
					    "event_ids[%zu] must be a decimal "
					    "string",
					    i);
		q->n_event_ids = n;
	}
	const char *cid =
		find_kv(in->headers, in->n_headers, "Idempotency-Key");
	if (!check_text(b->out, "Idempotency-Key", cid))
		return false;
	q->command_id = (char *)(cid ? cid : "");
	q->reason = (char *)(reason ? reason : "");
	q->subscription = r->path_name;
	q->filter = f;
	r->dry_run = q->dry_run;
	if (r->op == HOP_DLQ_REPLAY) {
		b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_DLQ_REPLAY;
		b->req.dlq_replay = q;
	} else {
		b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_DLQ_PURGE;
		b->req.dlq_purge = q;
	}
	return true;
}

static bool query_u64(struct build *b, const struct http_in *in,
		      const char *name, uint64_t *v)
{
	for (size_t i = 0; i < in->n_query; i++) {
		const char *k = in->query[i].name;
		if (!k)
			continue;
		bool known =
			strcmp(k, "after_seq") == 0 || strcmp(k, "limit") == 0;
		if (!known)
			return fail(b->out, k, "unknown query parameter %s", k);
		if (strcmp(k, name) == 0 && !parse_u64(in->query[i].value, v))
			return fail(b->out, k,
				    "%s must be a non-negative decimal "
				    "integer",
				    k);
	}
	return true;
}

#define AWAIT_DEFAULT_TIMEOUT_MS 30000

/* GET /v1/events/{id}?await=acked&timeout_ms=N&subscriptions=a,b */
static bool build_await(struct build *b, struct http_route *r,
			const struct http_in *in)
{
	Handoff__Wire__AwaitRequest *q = alloc(b, sizeof *q);
	if (!q)
		return nomem(b);
	handoff__wire__await_request__init(q);
	q->event_id = r->path_id;
	q->timeout_ms = AWAIT_DEFAULT_TIMEOUT_MS;
	for (size_t i = 0; i < in->n_query; i++) {
		const char *k = in->query[i].name, *v = in->query[i].value;
		uint64_t n;
		if (!k || strcmp(k, "await") == 0)
			continue;
		if (strcmp(k, "timeout_ms") == 0) {
			if (!parse_u64(v, &n) || n > UINT32_MAX)
				return fail(b->out, k,
					    "timeout_ms must be a decimal "
					    "number of milliseconds");
			q->timeout_ms = (uint32_t)n;
		} else if (strcmp(k, "subscriptions") == 0) {
			size_t len = v ? strlen(v) : 0, cap = 1;
			char *copy = alloc(b, len + 1);
			if (!copy)
				return nomem(b);
			memcpy(copy, v ? v : "", len);
			for (size_t j = 0; j < len; j++)
				cap += copy[j] == ',';
			if (cap > HTTP_API_MAX_ITEMS)
				return fail(b->out, k,
					    "too many subscriptions");
			char **names = alloc(b, cap * sizeof *names);
			if (!names)
				return nomem(b);
			q->n_subscriptions = 0;
			for (char *tok = copy, *next; tok; tok = next) {
				next = strchr(tok, ',');
				if (next)
					*next++ = '\0';
				if (!name_ok(b, "subscriptions", tok))
					return false;
				names[q->n_subscriptions++] = tok;
			}
			q->subscriptions = names;
		} else {
			return fail(b->out, k, "unknown query parameter %s", k);
		}
	}
	b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_AWAIT;
	b->req.await = q;
	return true;
}

static bool build(struct build *b, struct http_route *r,
		  const struct http_in *in)
{
	switch (r->op) {
	case HOP_HEALTH:
	case HOP_VERSION: {
		Handoff__Wire__PingRequest *p = alloc(b, sizeof *p);
		if (!p)
			return nomem(b);
		handoff__wire__ping_request__init(p);
		b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_PING;
		b->req.ping = p;
		return true;
	}
	case HOP_PUBLISH:
		return name_ok(b, "topic", r->path_name) &&
		       build_single_publish(b, r, in);
	case HOP_PUBLISH_BATCH:
		return name_ok(b, "topic", r->path_name) &&
		       (b->doc = load_body(in, b->out)) && build_batch(b, r);
	case HOP_SUB_PUT:
		return name_ok(b, "subscription", r->path_name) &&
		       (b->doc = load_body(in, b->out)) &&
		       build_subscribe(b, r);
	case HOP_SUB_LIST:
	case HOP_SUB_GET: {
		Handoff__Wire__ListSubscriptionsRequest *q =
			alloc(b, sizeof *q);
		if (r->op == HOP_SUB_GET &&
		    !name_ok(b, "subscription", r->path_name))
			return false;
		if (!q)
			return nomem(b);
		handoff__wire__list_subscriptions_request__init(q);
		b->req.body_case =
			HANDOFF__WIRE__REQUEST__BODY_LIST_SUBSCRIPTIONS;
		b->req.list_subscriptions = q;
		return true;
	}
	case HOP_BACKUP_START:
	case HOP_BACKUP_STATUS: {
		/* the broker checks the name (a file name, never a path) */
		Handoff__Wire__BackupRequest *q = alloc(b, sizeof *q);
		if (!q)
			return nomem(b);
		handoff__wire__backup_request__init(q);
		q->name = r->path_name;
		q->status_only = r->op == HOP_BACKUP_STATUS;
		b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_BACKUP;
		b->req.backup = q;
		return true;
	}
	case HOP_SUB_DELETE: {
		Handoff__Wire__UnsubscribeRequest *q = alloc(b, sizeof *q);
		if (!name_ok(b, "subscription", r->path_name))
			return false;
		if (!q)
			return nomem(b);
		handoff__wire__unsubscribe_request__init(q);
		q->subscription = r->path_name;
		b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_UNSUBSCRIBE;
		b->req.unsubscribe = q;
		return true;
	}
	case HOP_FETCH:
		return name_ok(b, "subscription", r->path_name) &&
		       (b->doc = load_body(in, b->out)) && build_fetch(b, r);
	case HOP_SUB_PAUSE:
		return name_ok(b, "subscription", r->path_name) &&
		       (b->doc = load_body(in, b->out)) && build_pause(b, r);
	case HOP_SUB_RESUME: {
		Handoff__Wire__ResumeRequest *q = alloc(b, sizeof *q);
		if (!name_ok(b, "subscription", r->path_name))
			return false;
		if (!q)
			return nomem(b);
		handoff__wire__resume_request__init(q);
		q->subscription = r->path_name;
		b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_RESUME;
		b->req.resume = q;
		return true;
	}
	case HOP_ACK:
	case HOP_NACK:
	case HOP_EXTEND:
		return name_ok(b, "subscription", r->path_name) &&
		       (b->doc = load_body(in, b->out)) && build_items(b, r);
	case HOP_DLQ_LIST:
		return name_ok(b, "subscription", r->path_name) &&
		       build_dlq_list(b, r, in);
	case HOP_DLQ_SHOW: {
		Handoff__Wire__DlqShowRequest *q = alloc(b, sizeof *q);
		if (!name_ok(b, "subscription", r->path_name))
			return false;
		if (!q)
			return nomem(b);
		handoff__wire__dlq_show_request__init(q);
		q->subscription = r->path_name;
		q->event_id = r->path_id;
		b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_DLQ_SHOW;
		b->req.dlq_show = q;
		return true;
	}
	case HOP_DLQ_REPLAY:
	case HOP_DLQ_PURGE:
		return name_ok(b, "subscription", r->path_name) &&
		       (b->doc = load_body(in, b->out)) &&
		       build_dlq_action(b, r, in);
	case HOP_TRACE: {
		const char *aw = find_kv(in->query, in->n_query, "await");
		if (aw && strcmp(aw, "acked") != 0)
			return fail(b->out, "await",
				    "await must be 'acked' (the only thing "
				    "awaited)");
		if (aw) {
			r->op = HOP_AWAIT;
			r->name = "await";
			return build_await(b, r, in);
		}
		Handoff__Wire__TraceRequest *q = alloc(b, sizeof *q);
		if (!q)
			return nomem(b);
		handoff__wire__trace_request__init(q);
		q->event_id = r->path_id;
		b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_TRACE;
		b->req.trace = q;
		return true;
	}
	case HOP_STATS:
	case HOP_METRICS: {
		Handoff__Wire__StatsRequest *q = alloc(b, sizeof *q);
		if (!q)
			return nomem(b);
		handoff__wire__stats_request__init(q);
		b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_STATS;
		b->req.stats = q;
		return true;
	}
	case HOP_AUDIT: {
		Handoff__Wire__AuditListRequest *q = alloc(b, sizeof *q);
		uint64_t after = 0, limit = 0;
		if (!q)
			return nomem(b);
		handoff__wire__audit_list_request__init(q);
		if (!query_u64(b, in, "after_seq", &after) ||
		    !query_u64(b, in, "limit", &limit))
			return false;
		q->after_seq = after;
		q->limit = limit > UINT32_MAX ? UINT32_MAX : (uint32_t)limit;
		b->req.body_case = HANDOFF__WIRE__REQUEST__BODY_AUDIT_LIST;
		b->req.audit_list = q;
		return true;
	}
	default:
		return fail(b->out, NULL, "no such endpoint");
	}
}

bool http_api_request(struct http_route *r, const struct http_in *in,
		      void **req, size_t *len, struct http_out *out)
{
	struct build b;
	memset(&b, 0, sizeof b);
	arena_init(&b.a);
	handoff__wire__request__init(&b.req);
	b.req.protocol_version =
		HANDOFF__WIRE__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
	b.out = out;
	*req = NULL;
	*len = 0;
	bool ok = build(&b, r, in);
	if (ok) {
		*len = handoff__wire__request__get_packed_size(&b.req);
		*req = malloc(*len ? *len : 1);
		if (*req)
			handoff__wire__request__pack(&b.req, *req);
		else
			ok = nomem(&b);
	}
	json_decref(b.doc);
	arena_fini(&b.a);
	return ok;
}

/* ---- replies ------------------------------------------------------------ */

static json_t *payload_into(struct jb *b, json_t *o, const uint8_t *data,
			    size_t len)
{
	json_t *t =
		json_stringn((const char *)(data ? data : (const uint8_t *)""),
			     data ? len : 0);
	if (t) {
		jset(b, o, "payload", t);
		jset(b, o, "payload_encoding", json_string("utf-8"));
		return o;
	}
	size_t bl =
		sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
	char *enc = malloc(bl);
	if (!enc) {
		b->bad = true;
		return o;
	}
	sodium_bin2base64(enc, bl, data, len, sodium_base64_VARIANT_ORIGINAL);
	jset(b, o, "payload", json_string(enc));
	jset(b, o, "payload_encoding", json_string("base64"));
	free(enc);
	return o;
}

static json_t *headers_json(struct jb *b, Handoff__Wire__Header **h, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_object();
		jset(b, o, "name", jstr(h[i]->name));
		jset(b, o, "value", jstr(h[i]->value));
		jpush(b, a, o);
	}
	return a;
}

static json_t *policy_json(struct jb *b, const Handoff__Wire__Policy *p)
{
	json_t *o = json_object();
	Handoff__Wire__Policy zero = HANDOFF__WIRE__POLICY__INIT;
	if (!p)
		p = &zero;
	jset(b, o, "max_attempts", jnum(p->max_attempts));
	jset(b, o, "ack_deadline_ms", jnum(p->ack_deadline_ms));
	jset(b, o, "backoff_min_ms", jnum(p->backoff_min_ms));
	jset(b, o, "backoff_max_ms", jnum(p->backoff_max_ms));
	return o;
}

/* "paused": bool, and while paused "pause": {reason, by, since_ms}. */
static void pause_into(struct jb *b, json_t *o,
		       const Handoff__Wire__PauseState *p)
{
	jset(b, o, "paused", json_boolean(p != NULL));
	if (!p)
		return;
	json_t *x = json_object();
	jset(b, x, "reason", jstr(p->reason));
	jset(b, x, "by", jstr(p->by));
	jset(b, x, "since_ms", jnum(p->since_ms));
	jset(b, o, "pause", x);
}

/* A push config as shown (never the secret); state "" left out. */
static json_t *push_json(struct jb *b, const Handoff__Wire__PushConfig *p,
			 const char *state)
{
	json_t *o = json_object();
	jset(b, o, "url", jstr(p->url));
	jset(b, o, "timeout_ms", jnum(p->timeout_ms));
	jset(b, o, "concurrency", jnum(p->concurrency));
	jset(b, o, "signed", json_boolean(p->has_secret));
	if (state && *state)
		jset(b, o, "state", jstr(state));
	return o;
}

static json_t *sub_json(struct jb *b, const Handoff__Wire__SubscriptionInfo *s)
{
	json_t *o = json_object();
	jset(b, o, "name", jstr(s->name));
	jset(b, o, "topic", jstr(s->topic));
	jset(b, o, "policy", policy_json(b, s->policy));
	jset(b, o, "ready", jnum(s->ready));
	jset(b, o, "delayed", jnum(s->delayed));
	jset(b, o, "leased", jnum(s->leased));
	jset(b, o, "dead", jnum(s->dead));
	jset(b, o, "created_ms", jnum(s->created_ms));
	pause_into(b, o, s->paused);
	if (s->push && s->push->url && s->push->url[0])
		jset(b, o, "push", push_json(b, s->push, s->push_state));
	return o;
}

static const char *enum_name(const char *const *names, size_t n, int v)
{
	return v >= 0 && (size_t)v < n ? names[v] : "unspecified";
}

static const char *reason_name(int v)
{
	return enum_name(dead_reasons, 4, v);
}

static const char *outcome_name(int v)
{
	static const char *const n[] = { "unspecified",	   "leased",
					 "acked",	   "nacked",
					 "permanent",	   "expired",
					 "broker_restart", "corrupt",
					 "unsubscribed",   "released" };
	return enum_name(n, 10, v);
}

static const char *state_name(int v)
{
	static const char *const n[] = { "unspecified", "ready",
					 "delayed",	"leased",
					 "acked",	"dead",
					 "purged",	"unsubscribed" };
	return enum_name(n, 8, v);
}

static json_t *await_json(struct jb *b, const Reply *rep)
{
	static const char *const results[] = { "unspecified", "acked",
					       "dead_lettered", "timed_out" };
	const Handoff__Wire__AwaitReply *a = rep->await;
	json_t *o = json_object(), *subs = json_array();
	jset(b, o, "event_id", jid(a->event_id));
	jset(b, o, "topic", jstr(a->topic));
	jset(b, o, "result", jstr(enum_name(results, 4, a->result)));
	jset(b, o, "message", jstr(rep->message));
	for (size_t i = 0; i < a->n_subscriptions; i++) {
		const Handoff__Wire__AwaitState *s = a->subscriptions[i];
		json_t *so = json_object();
		jset(b, so, "subscription", jstr(s->subscription));
		jset(b, so, "state", jstr(state_name(s->state)));
		jset(b, so, "attempts", jnum(s->attempts));
		jset(b, so, "dead_reason", jstr(reason_name(s->dead_reason)));
		jset(b, so, "error", jstr(s->error));
		jset(b, so, "consumer", jstr(s->consumer));
		jset(b, so, "done_ms", jnum(s->done_ms));
		jset(b, so, "dead_ms", jnum(s->dead_ms));
		jset(b, so, "paused", json_boolean(s->paused));
		jpush(b, subs, so);
	}
	jset(b, o, "subscriptions", subs);
	return o;
}

static json_t *history_json(struct jb *b, Handoff__Wire__Attempt **h, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_object();
		jset(b, o, "attempt", jnum(h[i]->attempt));
		jset(b, o, "consumer", jstr(h[i]->consumer));
		jset(b, o, "leased_ms", jnum(h[i]->leased_ms));
		jset(b, o, "ended_ms", jnum(h[i]->ended_ms));
		jset(b, o, "outcome", jstr(outcome_name(h[i]->outcome)));
		jset(b, o, "error", jstr(h[i]->error));
		jset(b, o, "retry_delay_ms", jnum(h[i]->retry_delay_ms));
		jpush(b, a, o);
	}
	return a;
}

static json_t *dead_json(struct jb *b, const Handoff__Wire__DeadLetter *d,
			 bool full)
{
	json_t *o = json_object();
	jset(b, o, "event_id", jid(d->event_id));
	jset(b, o, "topic", jstr(d->topic));
	jset(b, o, "key", jstr(d->key));
	jset(b, o, "reason", jstr(reason_name(d->reason)));
	jset(b, o, "error", jstr(d->error));
	jset(b, o, "dead_ms", jnum(d->dead_ms));
	jset(b, o, "attempts", jnum(d->attempts));
	jset(b, o, "replays", jnum(d->replays));
	jset(b, o, "published_ms", jnum(d->published_ms));
	if (full) {
		jset(b, o, "history",
		     history_json(b, d->history, d->n_history));
		jset(b, o, "headers",
		     headers_json(b, d->headers, d->n_headers));
		payload_into(b, o, d->payload.data, d->payload.len);
	}
	return o;
}

static json_t *ids_json(struct jb *b, const uint64_t *ids, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		jpush(b, a, jid(ids[i]));
	return a;
}

static json_t *trace_json(struct jb *b, const Handoff__Wire__TraceReply *t)
{
	json_t *o = json_object(), *subs = json_array();
	jset(b, o, "event_id", jid(t->event_id));
	jset(b, o, "topic", jstr(t->topic));
	jset(b, o, "key", jstr(t->key));
	jset(b, o, "published_ms", jnum(t->published_ms));
	jset(b, o, "payload_bytes", jnum(t->payload_bytes));
	jset(b, o, "payload_removed", json_boolean(t->payload_removed));
	jset(b, o, "idempotency_key", jstr(t->idempotency_key));
	jset(b, o, "corrupt", json_boolean(t->corrupt));
	for (size_t i = 0; i < t->n_subscriptions; i++) {
		const Handoff__Wire__SubscriptionTrace *s = t->subscriptions[i];
		json_t *so = json_object();
		jset(b, so, "subscription", jstr(s->subscription));
		jset(b, so, "state", jstr(state_name(s->state)));
		jset(b, so, "consumer", jstr(s->consumer));
		jset(b, so, "lease_deadline_ms", jnum(s->lease_deadline_ms));
		jset(b, so, "due_ms", jnum(s->due_ms));
		jset(b, so, "done_ms", jnum(s->done_ms));
		jset(b, so, "dead_reason", jstr(reason_name(s->dead_reason)));
		jset(b, so, "error", jstr(s->error));
		jset(b, so, "history",
		     history_json(b, s->history, s->n_history));
		jset(b, so, "replays", jnum(s->replays));
		jset(b, so, "paused", json_boolean(s->paused));
		jpush(b, subs, so);
	}
	jset(b, o, "subscriptions", subs);
	return o;
}

static json_t *stats_json(struct jb *b, const Handoff__Wire__StatsReply *s)
{
	json_t *o = json_object(), *topics = json_array(), *subs = json_array();
	jset(b, o, "uptime_ms", jnum(s->uptime_ms));
	jset(b, o, "events_stored", jnum(s->events_stored));
	jset(b, o, "store_used_bytes", jnum(s->store_used_bytes));
	jset(b, o, "store_map_bytes", jnum(s->store_map_bytes));
	jset(b, o, "held_fetches", jnum(s->held_fetches));
	jset(b, o, "held_awaits", jnum(s->held_awaits));
	jset(b, o, "version", jstr(s->version));
	for (size_t i = 0; i < s->n_topics; i++) {
		json_t *t = json_object();
		jset(b, t, "name", jstr(s->topics[i]->name));
		jset(b, t, "published", jnum(s->topics[i]->published));
		jset(b, t, "publish_rate",
		     json_real(s->topics[i]->publish_rate));
		jset(b, t, "subscriptions", jnum(s->topics[i]->subscriptions));
		jpush(b, topics, t);
	}
	for (size_t i = 0; i < s->n_subscriptions; i++) {
		const Handoff__Wire__SubscriptionStats *x = s->subscriptions[i];
		json_t *t = json_object();
		jset(b, t, "name", jstr(x->name));
		jset(b, t, "topic", jstr(x->topic));
		jset(b, t, "ready", jnum(x->ready));
		jset(b, t, "delayed", jnum(x->delayed));
		jset(b, t, "leased", jnum(x->leased));
		jset(b, t, "dead", jnum(x->dead));
		jset(b, t, "delivered", jnum(x->delivered));
		jset(b, t, "acked", jnum(x->acked));
		jset(b, t, "nacked", jnum(x->nacked));
		jset(b, t, "expired", jnum(x->expired));
		jset(b, t, "dead_lettered", jnum(x->dead_lettered));
		jset(b, t, "replayed", jnum(x->replayed));
		jset(b, t, "purged", jnum(x->purged));
		jset(b, t, "ack_rate", json_real(x->ack_rate));
		jset(b, t, "deliver_rate", json_real(x->deliver_rate));
		pause_into(b, t, x->paused);
		if (x->push_url && x->push_url[0]) {
			jset(b, t, "push_url", jstr(x->push_url));
			jset(b, t, "push_state", jstr(x->push_state));
			jset(b, t, "push_last_error", jstr(x->push_last_error));
		}
		jpush(b, subs, t);
	}
	jset(b, o, "topics", topics);
	jset(b, o, "subscriptions", subs);
	return o;
}

static json_t *audit_json(struct jb *b, const Handoff__Wire__AuditListReply *a)
{
	json_t *o = json_object(), *recs = json_array();
	for (size_t i = 0; i < a->n_records; i++) {
		const Handoff__Wire__AuditRecord *r = a->records[i];
		json_t *x = json_object();
		jset(b, x, "seq", jid(r->seq));
		jset(b, x, "at_ms", jnum(r->at_ms));
		jset(b, x, "key_id", jstr(r->key_id));
		jset(b, x, "role", jstr(r->role));
		jset(b, x, "action", jstr(r->action));
		jset(b, x, "subscription", jstr(r->subscription));
		jset(b, x, "event_ids",
		     ids_json(b, r->event_ids, r->n_event_ids));
		jset(b, x, "selector", jstr(r->selector));
		jset(b, x, "count", jnum(r->count));
		jset(b, x, "missing", jnum(r->missing));
		jset(b, x, "reason", jstr(r->reason));
		jset(b, x, "command_id", jstr(r->command_id));
		jpush(b, recs, x);
	}
	jset(b, o, "records", recs);
	jset(b, o, "more", json_boolean(a->more));
	return o;
}

static json_t *fetch_json(struct jb *b, const Handoff__Wire__FetchReply *f)
{
	json_t *o = json_object(), *list = json_array();
	for (size_t i = 0; f && i < f->n_deliveries; i++) {
		const Handoff__Wire__Delivery *d = f->deliveries[i];
		json_t *x = json_object();
		jset(b, x, "event_id", jid(d->event_id));
		jset(b, x, "topic", jstr(d->topic));
		jset(b, x, "attempt", jnum(d->attempt));
		jset(b, x, "key", jstr(d->key));
		jset(b, x, "headers",
		     headers_json(b, d->headers, d->n_headers));
		jset(b, x, "published_ms", jnum(d->published_ms));
		payload_into(b, x, d->payload.data, d->payload.len);
		jset(b, x, "lease_token", jid(d->lease_token));
		jset(b, x, "lease_deadline_ms", jnum(d->lease_deadline_ms));
		jpush(b, list, x);
	}
	jset(b, o, "deliveries", list);
	jset(b, o, "paused", json_boolean(f && f->paused));
	return o;
}

/* The reply's body for r, or false when it is not the expected one. */
static bool reply_json(const struct http_route *r, const Reply *rep,
		       struct http_out *out)
{
	struct jb b = { false };
	json_t *o = NULL;
	int status = 200;
	switch (r->op) {
	case HOP_HEALTH:
	case HOP_VERSION:
		if (rep->body_case != HANDOFF__WIRE__REPLY__BODY_PING)
			return false;
		o = json_object();
		if (r->op == HOP_HEALTH)
			jset(&b, o, "status", json_string("ok"));
		jset(&b, o, "version",
		     jstr(rep->ping ? rep->ping->version : ""));
		if (r->op == HOP_VERSION) {
			jset(&b, o, "protocol_version", json_integer(1));
			jset(&b, o, "max_request_bytes",
			     jnum(rep->ping ? rep->ping->max_request_bytes :
					      0));
		}
		break;
	case HOP_PUBLISH:
	case HOP_PUBLISH_BATCH: {
		const Handoff__Wire__PublishReply *p = rep->publish;
		if (rep->body_case != HANDOFF__WIRE__REPLY__BODY_PUBLISH ||
		    !p || p->n_event_ids == 0)
			return false;
		bool all_dup = p->n_duplicates == p->n_event_ids;
		for (size_t i = 0; all_dup && i < p->n_duplicates; i++)
			all_dup = p->duplicates[i];
		status = all_dup ? 200 : 201;
		o = json_object();
		if (r->op == HOP_PUBLISH) {
			jset(&b, o, "event_id", jid(p->event_ids[0]));
			jset(&b, o, "duplicate", json_boolean(all_dup));
			break;
		}
		json_t *d = json_array();
		for (size_t i = 0; i < p->n_event_ids; i++)
			jpush(&b, d,
			      json_boolean(i < p->n_duplicates &&
					   p->duplicates[i]));
		jset(&b, o, "event_ids",
		     ids_json(&b, p->event_ids, p->n_event_ids));
		jset(&b, o, "duplicates", d);
		break;
	}
	case HOP_SUB_PUT:
		if (rep->body_case != HANDOFF__WIRE__REPLY__BODY_SUBSCRIBE ||
		    !rep->subscribe)
			return false;
		status = rep->subscribe->created ? 201 : 200;
		o = json_object();
		jset(&b, o, "subscription", jstr(r->path_name));
		jset(&b, o, "created", json_boolean(rep->subscribe->created));
		jset(&b, o, "policy", policy_json(&b, rep->subscribe->policy));
		if (rep->subscribe->push && rep->subscribe->push->url &&
		    rep->subscribe->push->url[0])
			jset(&b, o, "push",
			     push_json(&b, rep->subscribe->push, NULL));
		break;
	case HOP_SUB_LIST:
	case HOP_SUB_GET: {
		const Handoff__Wire__ListSubscriptionsReply *l =
			rep->list_subscriptions;
		if (rep->body_case !=
			    HANDOFF__WIRE__REPLY__BODY_LIST_SUBSCRIPTIONS ||
		    !l)
			return false;
		if (r->op == HOP_SUB_GET) {
			for (size_t i = 0; i < l->n_subscriptions && !o; i++)
				if (strcmp(l->subscriptions[i]->name,
					   r->path_name) == 0)
					o = sub_json(&b, l->subscriptions[i]);
			if (!o) {
				char msg[300];
				snprintf(msg, sizeof msg,
					 "subscription '%.240s' not found",
					 r->path_name);
				http_api_problem(out, 404, "NOT_FOUND", msg,
						 NULL, 0);
				return true;
			}
			break;
		}
		json_t *a = json_array();
		for (size_t i = 0; i < l->n_subscriptions; i++)
			jpush(&b, a, sub_json(&b, l->subscriptions[i]));
		o = json_object();
		jset(&b, o, "subscriptions", a);
		break;
	}
	case HOP_SUB_DELETE:
		out->status = 204;
		return true;
	case HOP_SUB_PAUSE:
	case HOP_SUB_RESUME:
		if (rep->body_case != HANDOFF__WIRE__REPLY__BODY_PAUSE ||
		    !rep->pause)
			return false;
		o = json_object();
		jset(&b, o, "subscription", jstr(r->path_name));
		jset(&b, o, "changed", json_boolean(rep->pause->changed));
		pause_into(&b, o, rep->pause->paused);
		break;
	case HOP_FETCH:
		if (rep->body_case != HANDOFF__WIRE__REPLY__BODY_FETCH &&
		    rep->body_case != HANDOFF__WIRE__REPLY__BODY__NOT_SET)
			return false;
		o = fetch_json(
			&b, rep->body_case == HANDOFF__WIRE__REPLY__BODY_FETCH ?
				    rep->fetch :
				    NULL);
		break;
	case HOP_ACK:
	case HOP_NACK:
	case HOP_EXTEND: {
		const Handoff__Wire__ItemsReply *it = rep->items;
		if (rep->body_case != HANDOFF__WIRE__REPLY__BODY_ITEMS || !it ||
		    it->n_statuses != r->n_items)
			return false;
		json_t *a = json_array();
		for (size_t i = 0; i < it->n_statuses; i++) {
			json_t *x = json_object();
			jset(&b, x, "event_id", jid(r->item_ids[i]));
			jset(&b, x, "status",
			     json_string(status_name(it->statuses[i])));
			jpush(&b, a, x);
		}
		o = json_object();
		jset(&b, o, "results", a);
		break;
	}
	case HOP_DLQ_LIST: {
		const Handoff__Wire__DlqListReply *l = rep->dlq_list;
		if (rep->body_case != HANDOFF__WIRE__REPLY__BODY_DLQ_LIST || !l)
			return false;
		json_t *a = json_array();
		for (size_t i = 0; i < l->n_dead_letters; i++)
			jpush(&b, a, dead_json(&b, l->dead_letters[i], false));
		o = json_object();
		jset(&b, o, "dead_letters", a);
		jset(&b, o, "more", json_boolean(l->more));
		break;
	}
	case HOP_DLQ_SHOW:
		if (rep->body_case != HANDOFF__WIRE__REPLY__BODY_DLQ_SHOW ||
		    !rep->dlq_show || !rep->dlq_show->dead_letter)
			return false;
		o = json_object();
		jset(&b, o, "dead_letter",
		     dead_json(&b, rep->dlq_show->dead_letter, true));
		break;
	case HOP_DLQ_REPLAY:
	case HOP_DLQ_PURGE: {
		const Handoff__Wire__DlqActionReply *a = rep->dlq_action;
		if (rep->body_case != HANDOFF__WIRE__REPLY__BODY_DLQ_ACTION ||
		    !a)
			return false;
		o = json_object();
		jset(&b, o, "event_ids",
		     ids_json(&b, a->event_ids, a->n_event_ids));
		jset(&b, o, "missing", ids_json(&b, a->missing, a->n_missing));
		jset(&b, o, "more", json_boolean(a->more));
		jset(&b, o, "dry_run", json_boolean(r->dry_run));
		break;
	}
	case HOP_TRACE:
		if (rep->body_case != HANDOFF__WIRE__REPLY__BODY_TRACE ||
		    !rep->trace)
			return false;
		o = trace_json(&b, rep->trace);
		break;
	case HOP_AWAIT:
		if (rep->body_case != HANDOFF__WIRE__REPLY__BODY_AWAIT ||
		    !rep->await)
			return false;
		o = await_json(&b, rep);
		break;
	case HOP_STATS:
		if (rep->body_case != HANDOFF__WIRE__REPLY__BODY_STATS ||
		    !rep->stats)
			return false;
		o = stats_json(&b, rep->stats);
		break;
	case HOP_BACKUP_START:
	case HOP_BACKUP_STATUS: {
		const Handoff__Wire__BackupReply *k = rep->backup;
		if (rep->body_case != HANDOFF__WIRE__REPLY__BODY_BACKUP || !k)
			return false;
		o = json_object();
		jset(&b, o, "name", jstr(k->name));
		jset(&b, o, "path", jstr(k->path));
		jset(&b, o, "state",
		     jstr(k->state == HANDOFF__WIRE__BACKUP_STATE__BACKUP_DONE ?
				  "done" :
			  k->state == HANDOFF__WIRE__BACKUP_STATE__BACKUP_FAILED ?
				  "failed" :
				  "running"));
		jset(&b, o, "bytes", jnum(k->bytes));
		jset(&b, o, "duration_ms", jnum(k->duration_ms));
		jset(&b, o, "started_ms", jnum(k->started_ms));
		jset(&b, o, "error", jstr(k->error));
		/* a copy started (or still running): accepted, not done */
		if (r->op == HOP_BACKUP_START &&
		    k->state == HANDOFF__WIRE__BACKUP_STATE__BACKUP_RUNNING)
			status = 202;
		break;
	}
	case HOP_AUDIT:
		if (rep->body_case != HANDOFF__WIRE__REPLY__BODY_AUDIT_LIST ||
		    !rep->audit_list)
			return false;
		o = audit_json(&b, rep->audit_list);
		break;
	default:
		return false;
	}
	set_json(out, status, o, b.bad);
	return true;
}

void http_api_probe(enum http_op op, const struct health_report *hr,
		    struct http_out *out)
{
	struct jb b = { false };
	bool ok = op == HOP_HEALTHZ ? hr->live : hr->ready;
	json_t *o = json_object();
	memset(out, 0, sizeof *out);
	jset(&b, o, "status",
	     json_string(ok		   ? "ok" :
			 op == HOP_HEALTHZ ? "not live" :
					     "not ready"));
	jset(&b, o, "live", json_boolean(hr->live));
	jset(&b, o, "ready", json_boolean(hr->ready));
	jset(&b, o, "reason", jstr(hr->reason));
	jset(&b, o, "store_open", json_boolean(hr->store_open));
	jset(&b, o, "recovered", json_boolean(hr->recovered));
	jset(&b, o, "storage_full", json_boolean(hr->storage_full));
	jset(&b, o, "stopping", json_boolean(hr->stopping));
	jset(&b, o, "loop_age_ms", jnum(hr->loop_age_ms));
	jset(&b, o, "recovered_leases", jnum(hr->recovered_leases));
	jset(&b, o, "version", jstr(HANDOFF_BUILD_VERSION));
	set_json(out, ok ? 200 : 503, o, b.bad);
}

void http_api_reply(const struct http_route *r, const void *reply, size_t len,
		    struct http_out *out)
{
	memset(out, 0, sizeof *out);
	if (!reply) {
		http_api_problem(out, 503, "SHUTTING_DOWN",
				 "the broker did not apply the request "
				 "(stopping or out of memory); retry",
				 NULL, 1000);
		return;
	}
	Reply *rep = handoff__wire__reply__unpack(NULL, len, reply);
	if (!rep) {
		http_api_problem(out, 500, "INTERNAL",
				 "the broker's reply could not be read", NULL,
				 1000);
		return;
	}
	int st = (int)rep->status;
	if (st != ST(OK)) {
		int hs = st >= 0 &&
					 (size_t)st <
						 sizeof statuses /
							 sizeof statuses[0] &&
					 statuses[st].name ?
				 statuses[st].http :
				 500;
		if (st == ST(LIMIT_EXCEEDED))
			hs = limit_http_status(rep->message);
		http_api_problem(out, hs, status_name(st),
				 rep->message ? rep->message : "", NULL,
				 rep->retry_after_ms);
	} else if (r->op == HOP_METRICS &&
		   rep->body_case == HANDOFF__WIRE__REPLY__BODY_STATS &&
		   rep->stats) {
		http_metrics_render(rep->stats, out);
	} else if (!reply_json(r, rep, out)) {
		http_out_free(out);
		http_api_problem(out, 500, "INTERNAL",
				 "the broker's reply did not fit the request",
				 NULL, 0);
	}
	handoff__wire__reply__free_unpacked(rep, NULL);
}
