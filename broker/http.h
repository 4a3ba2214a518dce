/*
 * http.h — handoffd's HTTP/1.1 JSON API: a translator at the edge, not a
 * second broker.
 *
 * One libmicrohttpd daemon per [http] listen endpoint, each with its own
 * internal polling thread (epoll, no thread per connection). A request is
 * read (bounded: max_request for the body, MHD's 32 KiB pool for the
 * request line and headers, a connection timeout, per-address and total
 * connection limits), its bearer token looked up (auth), translated by
 * http_api.h into the same packed Request the native protocol carries,
 * and posted to the pump's inbox (pump_post_http). The connection is
 * suspended until the store thread's reply comes back through the pump —
 * after the same group commit as native requests in that turn — then
 * resumed, and the reply translated to JSON on this thread.
 *
 * A client that went away while its request was parked is found (POLLRDHUP
 * on the socket) when the reply comes: the reply is dropped and logged. A
 * fetch's leases then simply run out at their deadline, as for a native
 * consumer that died.
 *
 * Shutdown (http_stop, after the store thread has finished and answered
 * everything it took): quiesce the listeners, answer every request still
 * parked with 503, give the resumed ones a moment to be written, stop.
 *
 * Ownership: the server owns its daemons and every request's state. The
 * config must outlive it. Threads: http_start and http_stop on the main
 * thread; the reply callback (http_deliver, via the pump) on the store
 * thread; everything else on MHD's threads.
 */
#ifndef HANDOFF_BROKER_HTTP_H
#define HANDOFF_BROKER_HTTP_H

#include <stddef.h>

#include "config.h"
#include "pump.h"

struct http_server;

/* The HTTP requests that may be in flight at once (the pump's slots). */
size_t http_max_in_flight(const struct config *cfg);

/* Bind every endpoint of cfg and serve; pump_enable_http must have been
 * called with http_deliver and the server returned here (set through
 * *out before any request can arrive). 0, or an errno with err filled. */
int http_start(const struct config *cfg, struct pump *p,
	       struct http_server **out, char *err, size_t errlen);

/* The pump's reply callback (pump_http_reply_fn): ctx is the server. */
void http_deliver(void *ctx, void *call, void *buf, size_t len);

/* Stop serving and free everything; NULL is fine. */
void http_stop(struct http_server *s);

#endif
