/*
 * records.h — store records <-> wire messages: the one place where the
 * on-disk records of proto/store.proto (package handoff.store) meet the
 * wire messages of proto/handoff.proto (package handoff.wire). The two
 * schemas are separate so that a change to the protocol never changes the
 * disk format; every copy from one to the other goes through here.
 *
 * Ownership: everything returned is allocated from the arena given and
 * lives until its reset. Strings and byte fields are shared with the
 * source, not copied: source and result belong to the same turn's arena.
 * Unknown fields of the source are not carried over.
 *
 * Errors: 0, or ENOMEM when the arena is exhausted (*out is then
 * undefined). A NULL source gives a NULL result (*out), n == 0 an empty
 * array (NULL), unless said otherwise below.
 *
 * Enum conversions keep the number of a value this build does not know
 * (proto3 enums are open: a newer build's value is shown, not dropped).
 *
 * Threads: no state of its own; safe wherever the arena is.
 */
#ifndef HANDOFF_BROKER_RECORDS_H
#define HANDOFF_BROKER_RECORDS_H

#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "handoff.pb-c.h"
#include "store.h"

/* event headers: published -> stored, stored -> delivered / shown */
int records_headers_to_store(struct arena *a, Handoff__Wire__Header *const *in,
			     size_t n, Handoff__Store__Header ***out);
int records_headers_to_wire(struct arena *a, Handoff__Store__Header *const *in,
			    size_t n, Handoff__Wire__Header ***out);

/* a subscription's push config (NULL *out: a pull subscription); the
 * secret only when with_secret (the push thread's own list), else just
 * has_secret */
int records_push_to_wire(struct arena *a, const SubRecord *r, bool with_secret,
			 Handoff__Wire__PushConfig **out);
/* a subscription's policy */
int records_policy_to_store(struct arena *a, const Handoff__Wire__Policy *in,
			    Handoff__Store__Policy **out);
int records_policy_to_wire(struct arena *a, const Handoff__Store__Policy *in,
			   Handoff__Wire__Policy **out);

/* a delivery's attempts, state and dead reason, for traces and dead
 * letters (the store has no DELAYED state: the caller decides that) */
int records_history_to_wire(struct arena *a, Handoff__Store__Attempt *const *in,
			    size_t n, Handoff__Wire__Attempt ***out);
Handoff__Wire__DeliveryState
records_state_to_wire(Handoff__Store__DeliveryState s);
Handoff__Wire__DeadReason
records_dead_reason_to_wire(Handoff__Store__DeadReason r);

/* an operator action */
int records_audit_to_wire(struct arena *a, const AuditRecord *in,
			  Handoff__Wire__AuditRecord **out);

/* the reply of an operator command, kept to answer a resent command. An
 * empty reply is stored as none (*out NULL), as format version 1 did; none
 * is given back as an empty reply. */
int records_command_reply_to_store(struct arena *a,
				   const Handoff__Wire__DlqActionReply *in,
				   Handoff__Store__CommandReply **out);
int records_command_reply_to_wire(struct arena *a,
				  const Handoff__Store__CommandReply *in,
				  Handoff__Wire__DlqActionReply **out);

#endif
