/*
 * record.h — the record files every torture process keeps, and the reader
 * the checker uses.
 *
 * One file per process (a respawned process gets a new name), opened
 * O_APPEND and never rewritten. A record is one text line: a type letter,
 * then space-separated fields with no spaces inside (names, keys and
 * numbers only). Lines are buffered by rec_add() and reach the file in one
 * write() followed by fdatasync() in rec_sync(): a record counts only once
 * rec_sync() has returned, so callers sync before they act on what the
 * records say (before sending an ack whose intent they record, before
 * treating a publish as confirmed).
 *
 * A process SIGKILLed inside that write leaves at most one partial line at
 * the end of its own file; the reader ignores a last line without its
 * newline, and reports how many bytes it skipped.
 *
 * The line types (fields in order; t = CLOCK_MONOTONIC ns, wall = ms):
 *   driver:   S sub topic max_attempts ack_deadline_ms backoff_min backoff_max
 *             Y wall sub                        replay intent (by filter)
 *             Z wall sub count                  replay confirmed, count moved
 *   producer: I t key len                       publish intent
 *             C t key id dup                    publish confirmed
 *             E t key err                       publish failed (unconfirmed)
 *             R t key first_id got_id dup       re-publish of a confirmed key
 *   consumer: D t sub id attempt token key ok|bad   a delivery; t = when its
 *                                               fetch was first sent
 *             A t sub id attempt token          ack intent
 *             K t sub id attempt token status   ack reply item (0 = acked)
 *             N t sub id attempt token delay perm   nack intent
 *             M t sub id attempt token status   nack reply item
 *   receiver: P t sub id attempt webhook_id key sum verdict status
 *                                               one push request read; t =
 *                                               when it was read, sum = FNV-1a
 *                                               of the body (hex), verdict =
 *                                               ok|bad|badsig|badts, status =
 *                                               the answer it is about to send
 *                                               (0 = none: connection closed)
 *   driver:   S ... push                        a push subscription (POST to
 *                                               the receiver's /hook/sub)
 */
#ifndef HANDOFF_TORTURE_RECORD_H
#define HANDOFF_TORTURE_RECORD_H

#include <stddef.h>

struct rec_writer {
	int fd;
	char *buf;
	size_t len, cap;
	int err; /* first error; sticks */
};

/* Create path (it must not exist yet). 0 or errno. */
int rec_open(struct rec_writer *w, const char *path);
/* Buffer one line (the newline is added). 0 or ENOMEM. */
int rec_add(struct rec_writer *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Write the buffered lines and fdatasync. 0 or errno. */
int rec_sync(struct rec_writer *w);
/* Sync what is buffered and close. */
void rec_close(struct rec_writer *w);

/* Called for each complete line (NUL-terminated, newline removed); the
 * line may be modified. A non-zero return stops the read and is returned. */
typedef int (*rec_line_fn)(void *ctx, const char *file, char *line);

/* Read every complete line of path. *partial gets the bytes of an
 * incomplete last line (may be NULL). 0, errno, or fn's return. */
int rec_read(const char *path, rec_line_fn fn, void *ctx, size_t *partial);

#endif
