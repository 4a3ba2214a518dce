/*
 * push_sign.h — Standard Webhooks signatures for push delivery.
 *
 * A push subscription's secret is written "whsec_" + base64 of 24-64 key
 * bytes; the HMAC key is the decoded bytes. A request is signed over
 * "<webhook-id>.<webhook-timestamp>.<body>" with HMAC-SHA-256 and the
 * signature header is "v1," + standard base64 (with padding) of the MAC.
 *
 * Pure functions, no allocation; thread-safe (libsodium must have been
 * initialised, which sodium_init() in the broker's start does).
 */
#ifndef HANDOFF_BROKER_PUSH_SIGN_H
#define HANDOFF_BROKER_PUSH_SIGN_H

#include <stddef.h>
#include <stdint.h>

#define PUSH_KEY_MIN	 24
#define PUSH_KEY_MAX	 64
#define PUSH_SIG_MAX	 64 /* "v1," + 44 base64 characters + NUL fits */
#define PUSH_DECIMAL_MAX 21 /* a uint64_t in decimal + NUL */

/* Decode secret ("whsec_" + base64) into key (*len bytes). 0, or EINVAL
 * when it is not of that form or the key is not 24-64 bytes. */
int push_secret_decode(const char *secret, uint8_t key[PUSH_KEY_MAX],
		       size_t *len);

/* Write v in decimal (as printf's PRIu64) into out; its length. Per POST
 * in the push thread, so without printf's format parsing. */
size_t push_decimal(uint64_t v, char out[PUSH_DECIMAL_MAX]);

/* Write "v1,<base64 HMAC>" for (id, timestamp, body) into sig; timestamp
 * is signed in decimal. */
void push_sign(const uint8_t *key, size_t keylen, const char *id,
	       uint64_t timestamp, const void *body, size_t len,
	       char sig[PUSH_SIG_MAX]);

#endif
