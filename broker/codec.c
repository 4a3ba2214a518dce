/* codec.c — see codec.h. */
#include "codec.h"

#include <stdlib.h>

/* Decoded size can exceed the input (one varint byte becomes an 8-byte
 * element, plus struct overheads); this bound is generous for real requests
 * and still caps a hostile one. */
#define DECODE_FACTOR 16
#define DECODE_SLACK  (64 * 1024)

/*
 * protobuf-c keeps the fields it does not know and packs them again, and
 * some (field number 0) it accepts but cannot read back: a header or a
 * policy carried into a stored record would make that record unreadable.
 * The broker ignores unknown fields, so it drops them here, everywhere.
 */
static void strip_unknown(ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	m->n_unknown_fields = 0;
	m->unknown_fields = NULL;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		char *base = (char *)m;
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			uint32_t which =
				*(uint32_t *)(void *)(base +
						      f->quantifier_offset);
			if (which != f->id)
				continue;
		}
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(size_t *)(void *)(base +
						       f->quantifier_offset);
			ProtobufCMessage **v = *(
				ProtobufCMessage ***)(void *)(base + f->offset);
			for (size_t k = 0; k < n; k++)
				if (v[k])
					strip_unknown(v[k]);
		} else {
			ProtobufCMessage *sub = *(
				ProtobufCMessage **)(void *)(base + f->offset);
			if (sub)
				strip_unknown(sub);
		}
	}
}

Request *codec_decode_request(struct arena *a, const void *buf, size_t len)
{
	size_t saved = a->budget;
	a->budget = a->used_total + len * DECODE_FACTOR + DECODE_SLACK;
	ProtobufCAllocator al = arena_allocator(a);
	Request *r = handoff__wire__request__unpack(&al, len, buf);
	a->budget = saved;
	if (r)
		strip_unknown(&r->base);
	return r;
}

Reply *codec_new_reply(struct arena *a)
{
	Reply *r = arena_alloc(a, sizeof *r);
	if (!r)
		return NULL;
	handoff__wire__reply__init(r);
	r->protocol_version =
		HANDOFF__WIRE__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
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
