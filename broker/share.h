/*
 * share.h — turn sharing: one subscription must not slow the others
 * (promise 4).
 *
 * Every request of a turn waits for the same commit, so a subscription
 * whose consumers fetch and nack in a tight loop would make every commit
 * heavy. When a busy turn (SHARE_MIN_UNITS work units or more) holds work
 * for several subscriptions, none gets more units than the busiest other
 * one (at least SHARE_MIN_UNITS); its excess requests move to the inbox's
 * deferred list and run next turn, first in line, so each subscription
 * keeps its own order and always moves. The first request of each
 * subscription always runs.
 *
 * A unit is one delivery fetched, acked or extended; a nack counts
 * NACK_UNITS (it rewrites the record, schedules a retry and is logged
 * twice). Requests that are not fetch, ack, nack or extend are never put
 * off. Threads: the store
 * thread only.
 */
#ifndef HANDOFF_BROKER_SHARE_H
#define HANDOFF_BROKER_SHARE_H

#include "inbox.h"

#define SHARE_MIN_UNITS 512
#define NACK_UNITS	3

void share_turn(struct inbox *in);

#endif
