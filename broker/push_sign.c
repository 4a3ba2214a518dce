/*
 * push_sign.c — Standard Webhooks signatures; see push_sign.h.
 */
#include "push_sign.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

int push_secret_decode(const char *secret, uint8_t key[PUSH_KEY_MAX],
		       size_t *len)
{
	static const char prefix[] = "whsec_";
	const char *b64, *end;
	size_t n = 0;

	if (!secret || strncmp(secret, prefix, sizeof prefix - 1) != 0)
		return EINVAL;
	b64 = secret + sizeof prefix - 1;
	if (sodium_base642bin(key, PUSH_KEY_MAX, b64, strlen(b64), NULL, &n,
			      &end, sodium_base64_VARIANT_ORIGINAL) ||
	    *end || n < PUSH_KEY_MIN) {
		sodium_memzero(key, PUSH_KEY_MAX);
		return EINVAL;
	}
	*len = n;
	return 0;
}

size_t push_decimal(uint64_t v, char out[PUSH_DECIMAL_MAX])
{
	char rev[PUSH_DECIMAL_MAX];
	size_t n = 0;
	do {
		rev[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		out[i] = rev[n - 1 - i];
	out[n] = '\0';
	return n;
}

void push_sign(const uint8_t *key, size_t keylen, const char *id,
	       uint64_t timestamp, const void *body, size_t len,
	       char sig[PUSH_SIG_MAX])
{
	crypto_auth_hmacsha256_state st;
	uint8_t mac[crypto_auth_hmacsha256_BYTES];
	char ts[PUSH_DECIMAL_MAX];
	size_t n = push_decimal(timestamp, ts);

	crypto_auth_hmacsha256_init(&st, key, keylen);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)id, strlen(id));
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)".", 1);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)ts, n);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)".", 1);
	crypto_auth_hmacsha256_update(&st, body, len);
	crypto_auth_hmacsha256_final(&st, mac);
	memcpy(sig, "v1,", 3);
	sodium_bin2base64(sig + 3, PUSH_SIG_MAX - 3, mac, sizeof mac,
			  sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(&st, sizeof st);
}
