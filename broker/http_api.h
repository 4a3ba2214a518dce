/*
 * http_api.h — the JSON API's translation, with no I/O: an HTTP request
 * (method, path, query, headers, body) becomes the packed native Request
 * (proto/handoff.proto) that the inbox takes from the pump like any other,
 * and the packed native Reply becomes an HTTP status, headers and a JSON
 * body. Errors are RFC 9457 problem+json. The endpoints, fields and status
 * mapping are documented in proto/openapi.yaml; http.h runs the server.
 *
 * JSON is jansson: bodies are parsed with json_loadb (duplicate keys
 * refused, depth capped by jansson), every setter's result is checked, and
 * 64-bit identifiers (event ids, lease tokens, audit sequence numbers)
 * travel as decimal strings (a JSON number loses precision past 2^53 in
 * most clients; jansson refuses u64 above INT64_MAX). Text that is not
 * UTF-8 (a payload) goes as base64, with a field saying which.
 *
 * Ownership: a route owns its copies of the path's names; an http_out owns
 * its body (http_out_free). Threads: any; no shared state.
 */
#ifndef HANDOFF_BROKER_HTTP_API_H
#define HANDOFF_BROKER_HTTP_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum http_op {
	HOP_NONE,
	HOP_HEALTH,
	HOP_VERSION,
	HOP_PUBLISH,
	HOP_PUBLISH_BATCH,
	HOP_SUB_PUT,
	HOP_SUB_LIST,
	HOP_SUB_GET,
	HOP_SUB_DELETE,
	HOP_FETCH,
	HOP_ACK,
	HOP_NACK,
	HOP_EXTEND,
	HOP_DLQ_LIST,
	HOP_DLQ_SHOW,
	HOP_DLQ_REPLAY,
	HOP_DLQ_PURGE,
	HOP_TRACE,
	HOP_STATS,
	HOP_AUDIT,
	HOP_SUB_PAUSE,
	HOP_SUB_RESUME,
	HOP_HEALTHZ, /* answered on the HTTP thread: http_api_probe */
	HOP_READYZ,
	HOP_METRICS, /* Prometheus text (http_metrics.h) */
	HOP_AWAIT,   /* GET /v1/events/{id}?await=acked (a trace route until
		    * the query says so) */
	HOP_BACKUP_START,  /* PUT /v1/backups/{name} */
	HOP_BACKUP_STATUS, /* GET /v1/backups/{name} */
};

/* A header or query argument. */
struct http_kv {
	const char *name;
	const char *value;
};

struct http_in {
	const struct http_kv *headers;
	size_t n_headers;
	const struct http_kv *query;
	size_t n_query;
	const void *body;
	size_t body_len;
};

#define HTTP_API_MAX_ITEMS 100000 /* ack/nack item ids kept for the reply */

/* Which endpoint a request is for, and what its reply needs to know. */
struct http_route {
	enum http_op op;
	const char *name;   /* the native request's name, for logs */
	bool open;	    /* no token needed (health, version) */
	char *path_name;    /* topic or subscription from the path */
	uint64_t path_id;   /* event id from the path */
	uint64_t *item_ids; /* ack/nack: the items' ids, for the results */
	size_t n_items;
	bool dry_run; /* replay/purge */
};

struct http_out {
	int status;
	const char *content_type; /* static; NULL with no body */
	char *body;		  /* malloc'd */
	size_t len;
	uint32_t retry_after_s; /* 0: no Retry-After header */
	const char *allow;	/* 405: the methods the path takes */
};

/* Find the endpoint. true, or false with a 404/405 problem in out. */
bool http_api_route(const char *method, const char *path, struct http_route *r,
		    struct http_out *out);

/* Build the packed Request (malloc'd, in *req and *len) for r. true, or false
 * with a problem (400 naming the field, 413, 500) in out. */
bool http_api_request(struct http_route *r, const struct http_in *in,
		      void **req, size_t *len, struct http_out *out);

/* Turn the packed Reply (NULL: the broker did not apply the request) into
 * the response. */
void http_api_reply(const struct http_route *r, const void *reply, size_t len,
		    struct http_out *out);

/* A problem+json response: http status, the handoff status name (e.g.
 * "BAD_REQUEST"), a message, the JSON field at fault (or NULL) and the
 * retry hint in ms (0: none). */
void http_api_problem(struct http_out *out, int status, const char *name,
		      const char *detail, const char *field,
		      uint32_t retry_after_ms);

struct health_report;
/* GET /healthz (live) and /readyz (ready): 200 or 503, with the health
 * report (health.h) as JSON either way. Not a native round trip: the state
 * is read where it is kept, so a hung store loop gets a prompt 503. */
void http_api_probe(enum http_op op, const struct health_report *hr,
		    struct http_out *out);

void http_route_free(struct http_route *r);
void http_out_free(struct http_out *out);

#endif
