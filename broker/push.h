/*
 * push.h — push delivery: handoffd consumes push subscriptions itself and
 * POSTs each delivery to the subscription's URL (README "Push delivery").
 *
 * The push thread is a consumer like any other: it gets work by posting
 * native fetch requests (consumer "push:<subscription>") into the pump
 * (pump_post_push, the path HTTP requests take) and reports each outcome
 * with a native ack or nack, so the store thread's delivery logic is the
 * same for pushed and fetched events. It learns the push subscriptions and
 * their configs (with the secret, which only its own caller is shown) from
 * native list requests, sent at start, whenever the store thread says the
 * subscriptions changed (push_subscriptions_changed) and every 30 s.
 *
 * The HTTP requests run on libcurl's multi interface inside the push
 * thread (curl_multi_socket_action on its own epoll set): no thread per
 * request, never inside a store turn. Per subscription at most
 * `concurrency` requests are in flight, each bounded by its timeout. A
 * healthy subscription fetches ahead: beyond those, up to PREFETCH_MAX
 * leased deliveries wait in a queue (as many as it POSTs in about half a
 * second, and half the lease's slack past the timeout), so a slot that
 * frees does not wait for a fetch's commit; one that waited so long its
 * POST could outlast its lease is extended first. Failing, probing and
 * paused subscriptions fetch only what they send at once, and a queue is
 * released unworked when probing begins or the endpoint says 410. The
 * outcomes of one loop turn go back as one ack, one nack and one release
 * request per subscription (at most 256 items each). An endpoint that fails at the connection level again and
 * again gets one probe delivery at a time (its attempts count); the rest
 * wait unleased, or are released unworked if they were in flight, so an
 * endpoint that is down for an hour does not dead-letter its backlog.
 *
 * Endpoint states ("healthy", "failing", "probing") are kept in memory by
 * the push thread; the store thread reads them for list and stats
 * (push_endpoint) under the module's mutex.
 *
 * Threads: push_start/push_stop on the main thread; push_on_reply and
 * push_subscriptions_changed on the store thread (push_on_reply also
 * during broker_fini); push_endpoint on the store thread.
 */
#ifndef HANDOFF_BROKER_PUSH_H
#define HANDOFF_BROKER_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PUSH_PUMP_SLOTS 4096 /* its requests in the pump at once */
/* consecutive connection-level failures before probing */
#define PUSH_PROBE_AFTER 3

struct config;
struct config_key;
struct pump;
struct push;

/* Start the push thread; the pump must have push enabled with
 * push_on_reply and the returned context (push_pump_ctx). 0 or an errno. */
int push_start(const struct config *cfg, struct pump *pump, struct push **out);
/* Stop and free (NULL: nothing). Leases it holds expire or are recovered
 * at the next start: delivery is at least once. */
void push_stop(struct push *p);

/* The pump's reply callback for requests the push thread posted. */
void push_on_reply(void *ctx, void *call, void *buf, size_t len);

/* Store thread: a subscription was created or deleted; list again. NULL
 * p: nothing. */
void push_subscriptions_changed(struct push *p);

/* The endpoint state of push subscription sub ("" when the push thread
 * does not know it yet) and its last failure ("" none). */
void push_endpoint(struct push *p, const char *sub, char *state,
		   size_t state_len, char *error, size_t error_len);

#endif
