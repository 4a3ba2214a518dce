/*
 * request_mac.c — the request MAC; see request_mac.h.
 */
#include "request_mac.h"

#include <sodium.h>
#include <string.h>

_Static_assert(REQUEST_MAC_BYTES == crypto_auth_hmacsha256_BYTES,
	       "the wire's mac field is one HMAC-SHA-256");

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

static void mac_of(const char *domain, size_t domain_len,
		   const unsigned char secret[REQUEST_MAC_SECRET_BYTES],
		   const char *key_id, uint64_t session, uint64_t seq,
		   uint64_t timestamp_ms, const uint8_t *content,
		   size_t content_len, uint8_t out[REQUEST_MAC_BYTES])
{
	crypto_auth_hmacsha256_state st;
	uint8_t nums[24];

	put_le64(nums, session);
	put_le64(nums + 8, seq);
	put_le64(nums + 16, timestamp_ms);
	crypto_auth_hmacsha256_init(&st, secret, REQUEST_MAC_SECRET_BYTES);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)domain, domain_len);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)key_id,
				      strlen(key_id) + 1);
	crypto_auth_hmacsha256_update(&st, nums, sizeof nums);
	if (content_len > 0)
		crypto_auth_hmacsha256_update(&st, content, content_len);
	crypto_auth_hmacsha256_final(&st, out);
	sodium_memzero(&st, sizeof st);
}

void request_mac(const unsigned char secret[REQUEST_MAC_SECRET_BYTES],
		 const char *key_id, uint64_t session, uint64_t seq,
		 uint64_t timestamp_ms, const uint8_t *content,
		 size_t content_len, uint8_t out[REQUEST_MAC_BYTES])
{
	/* sizeof, not strlen: the domain's NUL is part of the signed bytes,
	 * and so is key_id's, so that no (domain, key_id) pair reads as
	 * another. */
	static const char domain[] = "handoff-auth-v1";

	mac_of(domain, sizeof domain, secret, key_id, session, seq,
	       timestamp_ms, content, content_len, out);
}

void request_clock_mac(const unsigned char secret[REQUEST_MAC_SECRET_BYTES],
		       const char *key_id, uint64_t session, uint64_t seq,
		       uint64_t now_ms, uint8_t out[REQUEST_MAC_BYTES])
{
	static const char domain[] = "handoff-clock-v1";

	mac_of(domain, sizeof domain, secret, key_id, session, seq, now_ms,
	       NULL, 0, out);
}
