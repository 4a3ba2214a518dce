/*
 * replies.c — packing and sending replies; see replies.h.
 */
#include "replies.h"

#include "broker.h"
#include "handlers.h"
#include "log.h"

void reply_send(struct broker *b, void *ctrl, const Reply *r,
		const Handoff__Wire__FetchRequest *fetch)
{
	size_t len;
	void *msg = codec_pack_reply(r, &len);
	if (!msg) {
		pump_send(&b->pump, ctrl, NULL, 0);
		log_event(LOG_ERROR, "reply_dropped",
			  LS("reason", "out of memory"), LOG_END);
		return;
	}
	if (fetch && r->status == HANDOFF__WIRE__STATUS__OK && fetch->fetch_seq)
		held_cache_put(&b->holds, fetch->consumer, fetch->subscription,
			       fetch->fetch_seq, msg, len);
	pump_send(&b->pump, ctrl, msg, len);
}

Reply *reply_error(struct broker *b, int status, const char *msg)
{
	Reply *r = codec_new_reply(&b->arena);
	if (r)
		handlers_status(&b->arena, r, status, "%s", msg);
	return r;
}

void reply_send_error(struct broker *b, void *ctrl, int status, const char *msg)
{
	Reply *r = reply_error(b, status, msg);
	if (r)
		reply_send(b, ctrl, r, NULL);
	else
		pump_send(&b->pump, ctrl, NULL, 0);
}
