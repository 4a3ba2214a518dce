/*
 * replies.h — replies out: pack a reply, remember a fetch's reply for its
 * resends (held.h's cache) and hand it to the network thread (pump.h).
 *
 * Ownership: the reply stays the caller's (arena); the packed bytes pass to
 * the pump, as does ctrl, which must not be used afterwards. A reply that
 * cannot be packed (out of memory) is dropped and logged: the client
 * resends. Threads: the store thread only.
 */
#ifndef HANDOFF_BROKER_REPLIES_H
#define HANDOFF_BROKER_REPLIES_H

#include "codec.h"

struct broker;

/* Send r to ctrl's sender. fetch: the request r answers when it is a fetch
 * (its successful reply is cached for resends), else NULL. */
void reply_send(struct broker *b, void *ctrl, const Reply *r,
		const Handoff__Wire__FetchRequest *fetch);

/* A reply with status and message (this turn's arena); NULL when out of
 * memory. */
Reply *reply_error(struct broker *b, int status, const char *msg);

/* Send an error reply to ctrl's sender, or drop ctrl when out of memory. */
void reply_send_error(struct broker *b, void *ctrl, int status,
		      const char *msg);

#endif
