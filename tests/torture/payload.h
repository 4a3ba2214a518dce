/*
 * payload.h — the payload of an event is a pure function of its
 * idempotency key: "KEY|" followed by pseudo-random bytes seeded by a hash
 * of the key, the whole 16 B to 2 KiB long (the length also comes from the
 * hash). A consumer can therefore verify every delivery on its own, and a
 * re-publish of a key sends the very same bytes.
 */
#ifndef HANDOFF_TORTURE_PAYLOAD_H
#define HANDOFF_TORTURE_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>

#define PAYLOAD_MIN 16
#define PAYLOAD_MAX 2048

/* Length of key's payload. */
size_t payload_len(const char *key);
/* Fill buf (payload_len(key) bytes, at most PAYLOAD_MAX) with it. */
void payload_fill(const char *key, unsigned char *buf);
/* Whether p/len is exactly key's payload. */
bool payload_verify(const char *key, const void *p, size_t len);

#endif
