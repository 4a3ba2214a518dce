/*
 * request_mac.h — the MAC that signs a request under access control
 * (proto/PROTOCOL.md §1.1): HMAC-SHA-256 keyed by the key's 32-byte secret
 * over
 *
 *   "handoff-auth-v1" 0x00  key_id 0x00  le64(session) le64(seq)
 *   le64(timestamp_ms)  content
 *
 * where content is the request packed without its Auth field. The one
 * definition of these bytes: the client signs with it (client/call.c), the
 * broker verifies with it (broker/auth.c), and the tests forge with it.
 * Changing it changes the wire.
 *
 * Ownership: every argument is only read during the call; nothing is
 * allocated. Errors: none (every input is valid; key_id must be a
 * NUL-terminated string). Thread-safe: no state; the HMAC state lives on
 * the caller's stack and is wiped before returning. libsodium's HMAC needs
 * no sodium_init().
 */
#ifndef HANDOFF_COMMON_REQUEST_MAC_H
#define HANDOFF_COMMON_REQUEST_MAC_H

#include <stddef.h>
#include <stdint.h>

#define REQUEST_MAC_SECRET_BYTES 32 /* the key's secret */
#define REQUEST_MAC_BYTES	 32 /* crypto_auth_hmacsha256_BYTES */

/* Write the MAC of one signed request to out. content may be NULL only
 * when content_len is 0. */
void request_mac(const unsigned char secret[REQUEST_MAC_SECRET_BYTES],
		 const char *key_id, uint64_t session, uint64_t seq,
		 uint64_t timestamp_ms, const uint8_t *content,
		 size_t content_len, uint8_t out[REQUEST_MAC_BYTES]);

/*
 * The MAC of the broker's clock in a STALE_REQUEST reply (Reply.clock,
 * proto/PROTOCOL.md §1.1): HMAC-SHA-256 keyed by the same secret over
 *
 *   "handoff-clock-v1" 0x00  key_id 0x00  le64(session) le64(seq)
 *   le64(now_ms)
 *
 * where session and seq are those of the refused request. Its own domain
 * string, so it can never stand for a request's MAC or the other way round.
 */
void request_clock_mac(const unsigned char secret[REQUEST_MAC_SECRET_BYTES],
		       const char *key_id, uint64_t session, uint64_t seq,
		       uint64_t now_ms, uint8_t out[REQUEST_MAC_BYTES]);

#endif
