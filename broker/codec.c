/* codec.c — see codec.h. */
#include "codec.h"

#include <stdlib.h>

/* Decoded size can exceed the input (one varint byte becomes an 8-byte
 * element, plus struct overheads); this bound is generous for real requests
 * and still caps a hostile one. */
#define DECODE_FACTOR 16
#define DECODE_SLACK (64 * 1024)

Request *codec_decode_request(struct arena *a, const void *buf, size_t len)
{
	size_t saved = a->budget;
	a->budget = a->used_total + len * DECODE_FACTOR + DECODE_SLACK;
	ProtobufCAllocator al = arena_allocator(a);
	Request *r = handoff__wire__request__unpack(&al, len, buf);
	a->budget = saved;
	return r;
}

Reply *codec_new_reply(struct arena *a)
{
	Reply *r = arena_alloc(a, sizeof *r);
	if (!r)
		return NULL;
	handoff__wire__reply__init(r);
	r->protocol_version = HANDOFF__WIRE__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
	return r;
}

void *codec_pack_reply(const Reply *r, size_t *len)
{
	*len = handoff__wire__reply__get_packed_size(r);
	void *msg = malloc(*len ? *len : 1);
	if (msg)
		handoff__wire__reply__pack(r, msg);
	return msg;
}
