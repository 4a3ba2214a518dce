/*
 * codec.h — requests in, replies out. Decoding is bounded: protobuf-c
 * allocates what the input declares, so a request is decoded into the turn
 * arena under a budget proportional to its size; a request over the budget
 * or malformed is refused (BAD_REQUEST), never half-decoded.
 */
#ifndef HANDOFF_BROKER_CODEC_H
#define HANDOFF_BROKER_CODEC_H

#include <stddef.h>

#include "arena.h"
#include "handoff.pb-c.h"

typedef Handoff__Wire__Request Request;
typedef Handoff__Wire__Reply Reply;

/* NULL when the bytes are not a Request or exceed the decode budget. */
Request *codec_decode_request(struct arena *a, const void *buf, size_t len);
/* A new empty OK reply in the arena (NULL on allocation failure). */
Reply *codec_new_reply(struct arena *a);
/* Pack into a malloc'd buffer the caller frees; NULL on ENOMEM. */
void *codec_pack_reply(const Reply *r, size_t *len);

#endif
