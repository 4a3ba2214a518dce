/*
 * fuzz_http_api.c — the HTTP API's translation (broker/http_api.c): JSON
 * and paths in, native Request out; native Reply in, JSON out.
 *
 * Input: byte 0 picks an endpoint (method and path, some with hostile
 * names), byte 1 which headers and query arguments come along, the rest is
 * the body. Checked for each input:
 *   - routing and translation never crash, leak or read out of bounds;
 *   - a translated request is a packed Request of protocol version 1 that
 *     the broker's own decoder (codec_decode_request) accepts, without
 *     Auth (the caller is known from its token, never from the body);
 *   - a refusal is a problem+json document that parses, with a 4xx/5xx
 *     status and a handoff_status;
 *   - the body bytes, taken as a packed Reply for the same endpoint, give
 *     a response that is valid JSON (or no body for 204).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "codec.h"
#include "http_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct {
	const char *method, *path;
} endpoints[] = {
	{ "GET", "/v1/health" },
	{ "GET", "/v1/version" },
	{ "POST", "/v1/topics/t/events" },
	{ "POST", "/v1/topics/t/events:batch" },
	{ "PUT", "/v1/subscriptions/s" },
	{ "GET", "/v1/subscriptions" },
	{ "GET", "/v1/subscriptions/s" },
	{ "DELETE", "/v1/subscriptions/s" },
	{ "POST", "/v1/subscriptions/s/fetch" },
	{ "POST", "/v1/subscriptions/s/ack" },
	{ "POST", "/v1/subscriptions/s/nack" },
	{ "GET", "/v1/subscriptions/s/dead-letters" },
	{ "GET", "/v1/subscriptions/s/dead-letters/18446744073709551615" },
	{ "POST", "/v1/subscriptions/s/dead-letters:replay" },
	{ "POST", "/v1/subscriptions/s/dead-letters:purge" },
	{ "GET", "/v1/events/1" },
	{ "GET", "/v1/stats" },
	{ "GET", "/v1/audit" },
	{ "POST", "/v1/topics/\xff\xfe/events" },
	{ "PUT", "/v1/subscriptions//" },
	{ "GET", "/v1/events/99999999999999999999" },
	{ "PATCH", "/v1/subscriptions/s" },
	{ "GET", "/v1/subscriptions/s/dead-letters/" },
	{ "POST", "/v1/topics//events" },
};

static const struct http_kv headers[] = {
	{ "Idempotency-Key", "k-1" },	   { "Handoff-Key", "acct" },
	{ "Handoff-Header-A", "b" },	   { "Handoff-Header-", "x" },
	{ "Idempotency-Key", "\x01\x02" }, { "Handoff-Key", "\xc3\x28" },
	{ "handoff-header-Z", "\xff" },	   { "Content-Type", "text/plain" },
};

static const struct http_kv queries[] = {
	{ "reason", "permanent" },
	{ "after_event_id", "3" },
	{ "limit", "18446744073709551616" },
	{ "error_contains", "\xff" },
	{ "dead_since_ms", "x" },
	{ "after_seq", "2" },
	{ "bogus", "1" },
	{ "reason", NULL },
};

static void check_json(const struct http_out *out)
{
	if (out->status == 204) {
		if (out->len)
			abort();
		return;
	}
	json_error_t e;
	/* a payload may hold NUL, written as \u0000 */
	json_t *j = json_loadb(out->body, out->len, JSON_ALLOW_NUL, &e);
	if (!j || !out->content_type)
		abort();
	if (out->status >= 400 &&
	    (!json_is_string(json_object_get(j, "handoff_status")) ||
	     strcmp(out->content_type, "application/problem+json") != 0))
		abort();
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t ne = sizeof endpoints / sizeof endpoints[0];
	unsigned ep = data[0] % ne, mask = data[1];
	struct http_kv hdr[8], qry[8];
	size_t nh = 0, nq = 0;
	for (unsigned i = 0; i < 8; i++) {
		if (mask & (1u << i))
			hdr[nh++] = headers[i];
		else if (i % 2)
			qry[nq++] = queries[i];
	}
	struct http_route r;
	struct http_out out = { 0 };
	if (!http_api_route(endpoints[ep].method, endpoints[ep].path, &r,
			    &out)) {
		if (out.status < 400)
			abort();
		check_json(&out);
		http_out_free(&out);
		return 0;
	}
	struct http_in in = { hdr, nh, qry, nq, data + 2, size - 2 };
	void *req = NULL;
	size_t len = 0;
	if (http_api_request(&r, &in, &req, &len, &out)) {
		struct arena a;
		arena_init(&a);
		Request *q = codec_decode_request(&a, req, len);
		if (!q || q->auth ||
		    q->protocol_version !=
			    HANDOFF__WIRE__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT)
			abort();
		arena_fini(&a);
		free(req);
	} else {
		if (out.status < 400 || req)
			abort();
		check_json(&out);
	}
	http_out_free(&out);
	http_api_reply(&r, data + 2, size - 2, &out);
	check_json(&out);
	http_out_free(&out);
	http_route_free(&r);
	return 0;
}
