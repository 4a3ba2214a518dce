/*
 * http.c — the libmicrohttpd server; see http.h. Translation is in
 * http_api.c.
 */
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "health.h"
#include "http_api.h"
#include "log.h"

#define MEMORY_LIMIT   (32 * 1024) /* request line + headers per connection */
#define MAX_KV	       256	   /* headers or query arguments kept */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define STOP_GRACE_MS  2000
#define MAX_PEM_BYTES  (1u << 20)

enum call_state {
	CALL_READING, /* headers seen, body coming */
	CALL_REFUSED, /* a response is queued already (early error) */
	CALL_PARKED,  /* posted to the pump, connection suspended */
	CALL_REPLIED, /* the reply came; resumed */
};

struct http_call {
	struct http_server *srv;
	struct MHD_Connection *conn;
	enum call_state state;
	struct http_route route;
	const struct config_key *caller;
	char *body;
	size_t len, cap;
	bool too_big;
	void *reply; /* packed Reply from the store thread (NULL: none) */
	size_t reply_len;
	bool resumed;
	struct http_call *prev, *next; /* the parked list, under srv->mu */
};

struct http_server {
	const struct config *cfg;
	struct pump *pump;
	struct MHD_Daemon *d[CONFIG_MAX_LISTEN];
	size_t n_d;
	char *tls_cert, *tls_key;
	pthread_mutex_t mu;
	struct http_call *parked; /* under mu */
	size_t resumed_pending;	  /* resumed, not yet completed; under mu */
};

/* ---- helpers ------------------------------------------------------------- */

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	(void)cls;
	vsnprintf(msg, sizeof msg, fmt, ap);
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	log_event(LOG_WARN, "http_error", LS("error", msg), LOG_END);
}

/* Queue out as the response. Returns MHD's result. */
static enum MHD_Result respond(struct MHD_Connection *c, struct http_out *out,
			       bool close)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		out->len, out->body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		http_out_free(out);
		return MHD_NO;
	}
	out->body = NULL; /* the response frees it */
	bool ok = true;
	if (out->content_type)
		ok = MHD_add_response_header(r, "Content-Type",
					     out->content_type) == MHD_YES;
	if (ok && out->retry_after_s) {
		char v[16];
		snprintf(v, sizeof v, "%u", out->retry_after_s);
		ok = MHD_add_response_header(r, "Retry-After", v) == MHD_YES;
	}
	if (ok && out->allow)
		ok = MHD_add_response_header(r, "Allow", out->allow) == MHD_YES;
	if (ok && out->status == 401)
		ok = MHD_add_response_header(r, "WWW-Authenticate",
					     "Bearer realm=\"handoff\"") ==
		     MHD_YES;
	if (ok && close)
		ok = MHD_add_response_header(r, "Connection", "close") ==
		     MHD_YES;
	enum MHD_Result res =
		ok ? MHD_queue_response(c, (unsigned)out->status, r) : MHD_NO;
	MHD_destroy_response(r);
	http_out_free(out);
	return res;
}

static enum MHD_Result refuse(struct http_call *call, int status,
			      const char *name, const char *detail)
{
	struct http_out out = { 0 };
	http_api_problem(&out, status, name, detail, NULL, 0);
	call->state = CALL_REFUSED;
	return respond(call->conn, &out, true);
}

struct kv_list {
	struct http_kv kv[MAX_KV];
	size_t n;
	bool overflow;
};

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind,
			       const char *key, const char *value)
{
	struct kv_list *l = cls;
	(void)kind;
	if (l->n == MAX_KV) {
		l->overflow = true;
		return MHD_NO;
	}
	l->kv[l->n++] = (struct http_kv){ key, value ? value : "" };
	return MHD_YES;
}

/* The key whose token the request carries; NULL when none matches. Every
 * key's hash is compared, in constant time, whatever matched before. */
static const struct config_key *token_key(const struct config *cfg,
					  const char *authz)
{
	uint8_t h[CONFIG_TOKEN_HASH];
	const struct config_key *found = NULL;
	if (!authz || strncasecmp(authz, "Bearer ", 7) != 0)
		return NULL;
	const char *tok = authz + 7;
	while (*tok == ' ')
		tok++;
	crypto_generichash(h, sizeof h, (const unsigned char *)tok, strlen(tok),
			   NULL, 0);
	for (size_t i = 0; i < cfg->n_keys; i++) {
		const struct config_key *k = &cfg->keys[i];
		if (k->has_token &&
		    sodium_memcmp(h, k->token_hash, sizeof h) == 0 && !found)
			found = k;
	}
	sodium_memzero(h, sizeof h);
	return found;
}

/* Whether the peer closed its side (a client that gave up waiting). */
static bool client_gone(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!ci)
		return false;
	struct pollfd p = { .fd = ci->connect_fd, .events = POLLRDHUP };
	return poll(&p, 1, 0) > 0 &&
	       (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* ---- the request's life -------------------------------------------------- */

/* First call: headers are in. Refuse early what needs no body. */
static enum MHD_Result on_headers(struct http_call *call, const char *url,
				  const char *method)
{
	struct http_server *s = call->srv;
	struct MHD_Connection *c = call->conn;
	struct http_out out = { 0 };
	const char *te = MHD_lookup_connection_value(
		c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
	const char *cl = MHD_lookup_connection_value(
		c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (te && cl)
		return refuse(call, 400, "BAD_REQUEST",
			      "Transfer-Encoding and Content-Length together");
	if (cl) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(cl, &end, 10);
		if (errno || *end || end == cl || cl[0] == '-')
			return refuse(call, 400, "BAD_REQUEST",
				      "bad Content-Length");
		if (n > s->cfg->max_request_bytes)
			return refuse(call, 413, "LIMIT_EXCEEDED",
				      "body larger than max_request");
	}
	if (!http_api_route(method, url, &call->route, &out)) {
		call->state = CALL_REFUSED;
		return respond(c, &out, true);
	}
	if (s->cfg->n_keys && !call->route.open) {
		const char *authz = MHD_lookup_connection_value(
			c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
		call->caller = token_key(s->cfg, authz);
		if (!call->caller) {
			const char *why =
				authz ? "authentication failed: unknown token" :
					"authentication required: send "
					"Authorization: Bearer TOKEN";
			log_event(LOG_WARN, "request_denied",
				  LS("request", call->route.name),
				  LS("key", ""), LS("via", "http"),
				  LS("reason", why), LOG_END);
			return refuse(call, 401, "PERMISSION_DENIED", why);
		}
	}
	return MHD_YES;
}

static enum MHD_Result on_body(struct http_call *call, const char *data,
			       size_t *size)
{
	size_t n = *size, max = call->srv->cfg->max_request_bytes;
	*size = 0;
	if (call->too_big || n > max - call->len) {
		/* no Content-Length (chunked) and over the limit: close */
		call->too_big = true;
		log_event(LOG_WARN, "http_request_refused",
			  LS("reason", "body larger than max_request"),
			  LOG_END);
		return MHD_NO;
	}
	if (call->len + n > call->cap) {
		size_t cap = call->cap ? call->cap : 4096;
		while (cap < call->len + n)
			cap *= 2;
		if (cap > max)
			cap = max;
		char *b = realloc(call->body, cap);
		if (!b)
			return MHD_NO;
		call->body = b;
		call->cap = cap;
	}
	memcpy(call->body + call->len, data, n);
	call->len += n;
	return MHD_YES;
}

/* GET /healthz, /readyz: answered here from the health state (health.h),
 * never parked, so a hung store loop is reported, not waited on. Probes
 * discard bodies: failures are logged (rate-limited). */
static enum MHD_Result probe(struct http_call *call)
{
	struct health_report hr;
	struct http_out out = { 0 };
	uint64_t now = clock_mono_ms();
	bool healthz = call->route.op == HOP_HEALTHZ;
	health_report(&hr, now);
	if (healthz ? !hr.live : !hr.ready)
		health_log_failure(&hr, healthz ? "healthz" : "readyz", "http",
				   now);
	free(call->body);
	call->body = NULL;
	call->len = call->cap = 0;
	call->state = CALL_REFUSED; /* answered at once, like a refusal */
	http_api_probe(call->route.op, &hr, &out);
	return respond(call->conn, &out, false);
}

/* Last call of the request: translate, then park it at the pump. */
static enum MHD_Result on_complete(struct http_call *call)
{
	struct http_server *s = call->srv;
	struct MHD_Connection *c = call->conn;
	struct kv_list *hdr = calloc(2, sizeof *hdr);
	struct http_out out = { 0 };
	void *req = NULL;
	size_t len = 0;
	if (!hdr)
		return MHD_NO;
	struct kv_list *qry = &hdr[1];
	if (call->route.op == HOP_HEALTHZ || call->route.op == HOP_READYZ) {
		free(hdr);
		return probe(call);
	}
	MHD_get_connection_values(c, MHD_HEADER_KIND, collect, hdr);
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect, qry);
	if (hdr->overflow || qry->overflow) {
		free(hdr);
		return refuse(call, 400, "BAD_REQUEST",
			      "too many headers or query arguments");
	}
	struct http_in in = { hdr->kv, hdr->n,	   qry->kv,
			      qry->n,  call->body, call->len };
	bool ok = http_api_request(&call->route, &in, &req, &len, &out);
	free(hdr);
	free(call->body); /* the packed request holds what is needed */
	call->body = NULL;
	call->len = call->cap = 0;
	if (!ok) {
		call->state = CALL_REFUSED;
		return respond(c, &out, false);
	}
	/* Suspend first: the reply may come before pump_post_http returns.
	 * Under mu, so that no one resumes it before it is suspended. */
	pthread_mutex_lock(&s->mu);
	call->state = CALL_PARKED;
	call->next = s->parked;
	call->prev = NULL;
	if (s->parked)
		s->parked->prev = call;
	s->parked = call;
	MHD_suspend_connection(c);
	pthread_mutex_unlock(&s->mu);
	int rc = pump_post_http(s->pump, call, call->caller, req, len);
	if (rc) {
		free(req);
		http_deliver(s, call, NULL, 0);
		log_event(LOG_WARN, "http_request_refused",
			  LS("request", call->route.name),
			  LS("reason", rc == ESHUTDOWN ? "broker stopping" :
							 "inbox full"),
			  LOG_END);
	}
	return MHD_YES;
}

/* Called again after the resume: write the reply, if anyone listens. */
static enum MHD_Result on_reply(struct http_call *call)
{
	struct http_out out = { 0 };
	if (client_gone(call->conn)) {
		log_event(
			LOG_WARN, "http_reply_dropped",
			LS("request", call->route.name),
			LS("reason", "client disconnected while waiting"),
			LS("note", call->route.op == HOP_FETCH ?
					   "leases run out at their deadline" :
					   "the request was applied"),
			LOG_END);
		free(call->reply);
		call->reply = NULL;
		return MHD_NO;
	}
	http_api_reply(&call->route, call->reply, call->reply_len, &out);
	free(call->reply);
	call->reply = NULL;
	if (out.status >= 500 && !call->reply_len)
		log_event(LOG_WARN, "http_request_not_applied",
			  LS("request", call->route.name), LOG_END);
	return respond(call->conn, &out, false);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_size, void **con_cls)
{
	struct http_server *s = cls;
	struct http_call *call = *con_cls;
	(void)version;
	if (!call) {
		call = calloc(1, sizeof *call);
		if (!call)
			return MHD_NO;
		call->srv = s;
		call->conn = c;
		*con_cls = call;
		return on_headers(call, url, method);
	}
	switch (call->state) {
	case CALL_READING:
		if (*upload_size)
			return on_body(call, upload_data, upload_size);
		return on_complete(call);
	case CALL_REPLIED:
		return on_reply(call);
	case CALL_REFUSED:
		*upload_size = 0; /* the response is queued: drop the rest */
		return MHD_YES;
	case CALL_PARKED:
	default:
		return MHD_YES;
	}
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_server *s = cls;
	struct http_call *call = *con_cls;
	(void)c;
	if (!call)
		return;
	if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED)
		log_event(LOG_INFO, "http_connection_timeout", LOG_END);
	/* MHD may find the peer gone before it calls on_reply again */
	if (call->state == CALL_REPLIED && call->reply)
		log_event(
			LOG_WARN, "http_reply_dropped",
			LS("request", call->route.name),
			LS("reason", "client disconnected while waiting"),
			LU("termination", toe),
			LS("note", call->route.op == HOP_FETCH ?
					   "leases run out at their deadline" :
					   "the request was applied"),
			LOG_END);
	pthread_mutex_lock(&s->mu);
	if (call->resumed && s->resumed_pending)
		s->resumed_pending--;
	pthread_mutex_unlock(&s->mu);
	http_route_free(&call->route);
	free(call->body);
	free(call->reply);
	free(call);
	*con_cls = NULL;
}

void http_deliver(void *ctx, void *callp, void *buf, size_t len)
{
	struct http_server *s = ctx;
	struct http_call *call = callp;
	pthread_mutex_lock(&s->mu);
	if (call->state != CALL_PARKED) { /* answered at shutdown already */
		pthread_mutex_unlock(&s->mu);
		free(buf);
		return;
	}
	if (call->prev)
		call->prev->next = call->next;
	else
		s->parked = call->next;
	if (call->next)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
	call->reply = buf;
	call->reply_len = buf ? len : 0;
	call->state = CALL_REPLIED;
	call->resumed = true;
	s->resumed_pending++;
	pthread_mutex_unlock(&s->mu);
	/* Outside mu: MHD's own lock is taken here, and MHD may call
	 * on_completed (which takes mu) holding it. Off the list, the call is
	 * this thread's until resumed. */
	MHD_resume_connection(call->conn);
}

/* ---- start and stop ---------------------------------------------------- */

size_t http_max_in_flight(const struct config *cfg)
{
	return (size_t)cfg->http_max_connections * cfg->n_http_listen;
}

static char *read_pem(const char *path, char *err, size_t errlen)
{
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL;
	if (fd < 0 || fstat(fd, &sb) || sb.st_size <= 0 ||
	    sb.st_size > (off_t)MAX_PEM_BYTES) {
		snprintf(err, errlen, "%s: %s", path,
			 fd < 0 ? strerror(errno) : "not a PEM file");
		goto out;
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	ssize_t n = read(fd, buf, (size_t)sb.st_size);
	if (n != (ssize_t)sb.st_size) {
		snprintf(err, errlen, "%s: short read", path);
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[n] = '\0';
out:
	if (fd >= 0)
		close(fd);
	return buf;
}

static int start_one(struct http_server *s, const char *hostport, char *err,
		     size_t errlen)
{
	const struct config *cfg = s->cfg;
	char host[256], port[8];
	unsigned p;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV | AI_PASSIVE },
			*ai = NULL;
	if (config_split_hostport(hostport, host, sizeof host, &p)) {
		snprintf(err, errlen, "[http] listen '%s': not HOST:PORT",
			 hostport);
		return EINVAL;
	}
	snprintf(port, sizeof port, "%u", p);
	int gai = getaddrinfo(host, port, &hints, &ai);
	if (gai) {
		snprintf(err, errlen, "[http] listen '%s': %s", hostport,
			 gai_strerror(gai));
		return EINVAL;
	}
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
			 MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (s->tls_cert)
		flags |= MHD_USE_TLS;
	unsigned timeout_s = (cfg->http_timeout_ms + 999) / 1000;
	struct MHD_OptionItem tls[] = {
		{ MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert },
		{ MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key },
		{ MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)TLS_PRIORITIES },
		{ MHD_OPTION_END, 0, NULL },
	};
	struct MHD_OptionItem none[] = { { MHD_OPTION_END, 0, NULL } };
	struct MHD_Daemon *d = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
		mhd_log, NULL, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
		MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
		MHD_OPTION_CONNECTION_LIMIT, cfg->http_max_connections,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		cfg->http_max_connections_per_ip,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MEMORY_LIMIT,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_ARRAY,
		s->tls_cert ? tls : none, MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!d) {
		snprintf(err, errlen,
			 "[http] cannot serve on %s (address in use, or a "
			 "bad TLS certificate or key)",
			 hostport);
		return EADDRINUSE;
	}
	s->d[s->n_d++] = d;
	log_event(LOG_INFO, "listening",
		  LS("url", s->tls_cert ? "https" : "http"),
		  LS("address", hostport), LOG_END);
	return 0;
}

int http_start(const struct config *cfg, struct pump *p,
	       struct http_server **out, char *err, size_t errlen)
{
	struct http_server *s = calloc(1, sizeof *s);
	int rc = 0;
	*out = NULL;
	if (!s || sodium_init() < 0) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return ENOMEM;
	}
	s->cfg = cfg;
	s->pump = p;
	pthread_mutex_init(&s->mu, NULL);
	json_object_seed(0); /* before any thread uses jansson */
	if (cfg->http_tls_cert) {
		s->tls_cert = read_pem(cfg->http_tls_cert, err, errlen);
		s->tls_key = s->tls_cert ?
				     read_pem(cfg->http_tls_key, err, errlen) :
				     NULL;
		if (!s->tls_key) {
			http_stop(s);
			return EINVAL;
		}
	}
	*out = s; /* before the first request can arrive */
	for (size_t i = 0; i < cfg->n_http_listen && !rc; i++)
		rc = start_one(s, cfg->http_listen[i], err, errlen);
	if (rc) {
		*out = NULL;
		http_stop(s);
	}
	return rc;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void http_stop(struct http_server *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_d; i++) {
		MHD_socket fd = MHD_quiesce_daemon(s->d[i]);
		if (fd != MHD_INVALID_SOCKET)
			close(fd);
	}
	/* Requests the store thread never took: "not applied" (503). */
	pthread_mutex_lock(&s->mu);
	while (s->parked) {
		struct http_call *call = s->parked;
		pthread_mutex_unlock(&s->mu);
		http_deliver(s, call, NULL, 0);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	/* Let the resumed requests be written before the daemons go. */
	uint64_t until = mono_ms() + STOP_GRACE_MS;
	for (;;) {
		pthread_mutex_lock(&s->mu);
		size_t pending = s->resumed_pending;
		pthread_mutex_unlock(&s->mu);
		if (!pending || mono_ms() >= until)
			break;
		usleep(5000);
	}
	for (size_t i = 0; i < s->n_d; i++)
		MHD_stop_daemon(s->d[i]);
	pthread_mutex_destroy(&s->mu);
	if (s->tls_key)
		sodium_memzero(s->tls_key, strlen(s->tls_key));
	free(s->tls_cert);
	free(s->tls_key);
	free(s);
}
