/* payload.c — see payload.h. */
#include "payload.h"

#include <string.h>

#include "tt.h"

size_t payload_len(const char *key)
{
	size_t min = strlen(key) + 1 + 8; /* the prefix and some bytes */
	if (min < PAYLOAD_MIN)
		min = PAYLOAD_MIN;
	if (min > PAYLOAD_MAX)
		min = PAYLOAD_MAX;
	uint64_t h = tt_hash(key);
	return min + (size_t)(h % (PAYLOAD_MAX - min + 1));
}

void payload_fill(const char *key, unsigned char *buf)
{
	size_t len = payload_len(key), klen = strlen(key), i = 0;
	for (; i < klen && i < len; i++)
		buf[i] = (unsigned char)key[i];
	if (i < len)
		buf[i++] = '|';
	struct tt_rng r;
	tt_rng_seed(&r, tt_hash(key) ^ 0x5bd1e9955bd1e995ULL);
	while (i < len) {
		uint64_t x = tt_rand(&r);
		for (int b = 0; b < 8 && i < len; b++, x >>= 8)
			buf[i++] = (unsigned char)x;
	}
}

bool payload_verify(const char *key, const void *p, size_t len)
{
	unsigned char want[PAYLOAD_MAX];
	if (len != payload_len(key))
		return false;
	payload_fill(key, want);
	return memcmp(want, p, len) == 0;
}
