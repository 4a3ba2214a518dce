/*
 * records.c — store records <-> wire messages; see records.h.
 *
 * Field by field, on purpose: the two schemas may drift apart (a field
 * added to the protocol does not belong on disk), so nothing here relies
 * on their layouts being alike.
 */
#include "records.h"

#include <errno.h>

#define STORE_DS(x)  HANDOFF__STORE__DELIVERY_STATE__DELIVERY_STATE_##x
#define WIRE_DS(x)   HANDOFF__WIRE__DELIVERY_STATE__DELIVERY_STATE_##x
#define STORE_OUT(x) HANDOFF__STORE__OUTCOME__OUTCOME_##x
#define WIRE_OUT(x)  HANDOFF__WIRE__OUTCOME__OUTCOME_##x
#define STORE_WHY(x) HANDOFF__STORE__DEAD_REASON__DEAD_REASON_##x
#define WIRE_WHY(x)  HANDOFF__WIRE__DEAD_REASON__DEAD_REASON_##x

int records_headers_to_store(struct arena *a, Handoff__Wire__Header *const *in,
			     size_t n, Handoff__Store__Header ***out)
{
	Handoff__Store__Header **v = NULL, *h = NULL;
	if (n) {
		v = arena_alloc(a, n * sizeof *v);
		h = arena_alloc(a, n * sizeof *h);
		if (!v || !h)
			return ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		handoff__store__header__init(&h[i]);
		h[i].name = in[i]->name;
		h[i].value = in[i]->value;
		v[i] = &h[i];
	}
	*out = v;
	return 0;
}

int records_headers_to_wire(struct arena *a, Handoff__Store__Header *const *in,
			    size_t n, Handoff__Wire__Header ***out)
{
	Handoff__Wire__Header **v = NULL, *h = NULL;
	if (n) {
		v = arena_alloc(a, n * sizeof *v);
		h = arena_alloc(a, n * sizeof *h);
		if (!v || !h)
			return ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		handoff__wire__header__init(&h[i]);
		h[i].name = in[i]->name;
		h[i].value = in[i]->value;
		v[i] = &h[i];
	}
	*out = v;
	return 0;
}

int records_push_to_wire(struct arena *a, const SubRecord *r, bool with_secret,
			 Handoff__Wire__PushConfig **out)
{
	*out = NULL;
	if (!r->push_url || !r->push_url[0])
		return 0;
	Handoff__Wire__PushConfig *p = arena_alloc(a, sizeof *p);
	if (!p)
		return ENOMEM;
	handoff__wire__push_config__init(p);
	p->url = r->push_url;
	p->timeout_ms = r->push_timeout_ms;
	p->concurrency = r->push_concurrency;
	p->has_secret = r->push_secret && r->push_secret[0];
	if (with_secret && p->has_secret)
		p->secret = r->push_secret;
	*out = p;
	return 0;
}

int records_policy_to_store(struct arena *a, const Handoff__Wire__Policy *in,
			    Handoff__Store__Policy **out)
{
	*out = NULL;
	if (!in)
		return 0;
	Handoff__Store__Policy *p = arena_alloc(a, sizeof *p);
	if (!p)
		return ENOMEM;
	handoff__store__policy__init(p);
	p->max_attempts = in->max_attempts;
	p->ack_deadline_ms = in->ack_deadline_ms;
	p->backoff_min_ms = in->backoff_min_ms;
	p->backoff_max_ms = in->backoff_max_ms;
	*out = p;
	return 0;
}

int records_policy_to_wire(struct arena *a, const Handoff__Store__Policy *in,
			   Handoff__Wire__Policy **out)
{
	*out = NULL;
	if (!in)
		return 0;
	Handoff__Wire__Policy *p = arena_alloc(a, sizeof *p);
	if (!p)
		return ENOMEM;
	handoff__wire__policy__init(p);
	p->max_attempts = in->max_attempts;
	p->ack_deadline_ms = in->ack_deadline_ms;
	p->backoff_min_ms = in->backoff_min_ms;
	p->backoff_max_ms = in->backoff_max_ms;
	*out = p;
	return 0;
}

static Handoff__Wire__Outcome outcome_to_wire(Handoff__Store__Outcome o)
{
	switch (o) {
	case STORE_OUT(UNSPECIFIED):
		return WIRE_OUT(UNSPECIFIED);
	case STORE_OUT(LEASED):
		return WIRE_OUT(LEASED);
	case STORE_OUT(ACKED):
		return WIRE_OUT(ACKED);
	case STORE_OUT(NACKED):
		return WIRE_OUT(NACKED);
	case STORE_OUT(PERMANENT):
		return WIRE_OUT(PERMANENT);
	case STORE_OUT(EXPIRED):
		return WIRE_OUT(EXPIRED);
	case STORE_OUT(BROKER_RESTART):
		return WIRE_OUT(BROKER_RESTART);
	case STORE_OUT(CORRUPT):
		return WIRE_OUT(CORRUPT);
	case STORE_OUT(UNSUBSCRIBED):
		return WIRE_OUT(UNSUBSCRIBED);
	case STORE_OUT(RELEASED):
		return WIRE_OUT(RELEASED);
	default:
		return (Handoff__Wire__Outcome)o;
	}
}

int records_history_to_wire(struct arena *a, Handoff__Store__Attempt *const *in,
			    size_t n, Handoff__Wire__Attempt ***out)
{
	Handoff__Wire__Attempt **v = NULL, *w = NULL;
	if (n) {
		v = arena_alloc(a, n * sizeof *v);
		w = arena_alloc(a, n * sizeof *w);
		if (!v || !w)
			return ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		handoff__wire__attempt__init(&w[i]);
		w[i].attempt = in[i]->attempt;
		w[i].consumer = in[i]->consumer;
		w[i].leased_ms = in[i]->leased_ms;
		w[i].ended_ms = in[i]->ended_ms;
		w[i].outcome = outcome_to_wire(in[i]->outcome);
		w[i].error = in[i]->error;
		w[i].retry_delay_ms = in[i]->retry_delay_ms;
		v[i] = &w[i];
	}
	*out = v;
	return 0;
}

Handoff__Wire__DeliveryState
records_state_to_wire(Handoff__Store__DeliveryState s)
{
	switch (s) {
	case STORE_DS(UNSPECIFIED):
		return WIRE_DS(UNSPECIFIED);
	case STORE_DS(READY):
		return WIRE_DS(READY);
	case STORE_DS(LEASED):
		return WIRE_DS(LEASED);
	case STORE_DS(ACKED):
		return WIRE_DS(ACKED);
	case STORE_DS(DEAD):
		return WIRE_DS(DEAD);
	case STORE_DS(PURGED):
		return WIRE_DS(PURGED);
	case STORE_DS(UNSUBSCRIBED):
		return WIRE_DS(UNSUBSCRIBED);
	default:
		return (Handoff__Wire__DeliveryState)s;
	}
}

Handoff__Wire__DeadReason
records_dead_reason_to_wire(Handoff__Store__DeadReason r)
{
	switch (r) {
	case STORE_WHY(UNSPECIFIED):
		return WIRE_WHY(UNSPECIFIED);
	case STORE_WHY(MAX_ATTEMPTS):
		return WIRE_WHY(MAX_ATTEMPTS);
	case STORE_WHY(PERMANENT):
		return WIRE_WHY(PERMANENT);
	case STORE_WHY(CORRUPT):
		return WIRE_WHY(CORRUPT);
	default:
		return (Handoff__Wire__DeadReason)r;
	}
}

int records_audit_to_wire(struct arena *a, const AuditRecord *in,
			  Handoff__Wire__AuditRecord **out)
{
	*out = NULL;
	if (!in)
		return 0;
	Handoff__Wire__AuditRecord *r = arena_alloc(a, sizeof *r);
	if (!r)
		return ENOMEM;
	handoff__wire__audit_record__init(r);
	r->seq = in->seq;
	r->at_ms = in->at_ms;
	r->key_id = in->key_id;
	r->role = in->role;
	r->action = in->action;
	r->subscription = in->subscription;
	r->n_event_ids = in->n_event_ids;
	r->event_ids = in->event_ids;
	r->selector = in->selector;
	r->count = in->count;
	r->missing = in->missing;
	r->reason = in->reason;
	r->command_id = in->command_id;
	*out = r;
	return 0;
}

int records_command_reply_to_store(struct arena *a,
				   const Handoff__Wire__DlqActionReply *in,
				   Handoff__Store__CommandReply **out)
{
	*out = NULL;
	/* Version 1 kept the reply as bytes, left out when empty: an empty
	 * reply still writes no field, so records stay byte for byte. */
	if (!in || (!in->n_event_ids && !in->n_missing && !in->more))
		return 0;
	Handoff__Store__CommandReply *r = arena_alloc(a, sizeof *r);
	if (!r)
		return ENOMEM;
	handoff__store__command_reply__init(r);
	r->n_event_ids = in->n_event_ids;
	r->event_ids = in->event_ids;
	r->n_missing = in->n_missing;
	r->missing = in->missing;
	r->more = in->more;
	*out = r;
	return 0;
}

int records_command_reply_to_wire(struct arena *a,
				  const Handoff__Store__CommandReply *in,
				  Handoff__Wire__DlqActionReply **out)
{
	Handoff__Wire__DlqActionReply *r = arena_alloc(a, sizeof *r);
	*out = r;
	if (!r)
		return ENOMEM;
	handoff__wire__dlq_action_reply__init(r);
	if (in) {
		r->n_event_ids = in->n_event_ids;
		r->event_ids = in->event_ids;
		r->n_missing = in->n_missing;
		r->missing = in->missing;
		r->more = in->more;
	}
	return 0;
}
