/*
 * payload_bytes.h — for the store and scheduler unit tests, which damage
 * stored payloads on purpose: read and write the payload part of an event's
 * record (store.c, "events") as format 1 stored a payload, crc (4) + body,
 * keeping the record's metadata. Static, for one test file each; that file
 * includes <cmocka.h> first (these assert).
 */
#ifndef HANDOFF_TESTS_UNIT_PAYLOAD_BYTES_H
#define HANDOFF_TESTS_UNIT_PAYLOAD_BYTES_H

#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

/* Format 2 keeps a payload inside its event's value: crc (4), meta length
 * (4), meta, body. These read and write it as format 1 stored a payload
 * (crc (4) + body), keeping the event's meta. */
static size_t payload_bytes_get(MDB_txn *txn, MDB_dbi events, uint64_t id,
				uint8_t **out)
{
	uint8_t key[8];
	be64_put(key, id);
	MDB_val k = { 8, key }, d;
	assert_int_equal(mdb_get(txn, events, &k, &d), 0);
	assert_true(d.mv_size >= 8);
	const uint8_t *p = d.mv_data;
	size_t ml = be32_get(p + 4);
	assert_true(ml <= d.mv_size - 8);
	size_t n = 4 + d.mv_size - 8 - ml;
	*out = malloc(n);
	assert_non_null(*out);
	memcpy(*out, p, 4);
	memcpy(*out + 4, p + 8 + ml, n - 4);
	return n;
}

static void payload_bytes_put(MDB_txn *txn, MDB_dbi events, uint64_t id,
			      const uint8_t *v, size_t n)
{
	uint8_t key[8], *buf;
	be64_put(key, id);
	MDB_val k = { 8, key }, d;
	size_t ml = 0;
	const uint8_t *meta = NULL;
	if (mdb_get(txn, events, &k, &d) == 0 && d.mv_size >= 8 &&
	    be32_get((uint8_t *)d.mv_data + 4) <= d.mv_size - 8) {
		ml = be32_get((uint8_t *)d.mv_data + 4);
		meta = (uint8_t *)d.mv_data + 8;
	}
	if (n < 4) { /* shorter than a checksum: the whole value */
		MDB_val nd = { n, (void *)v };
		assert_int_equal(mdb_put(txn, events, &k, &nd, 0), 0);
		return;
	}
	buf = malloc(8 + ml + n - 4);
	assert_non_null(buf);
	memcpy(buf, v, 4);
	be32_put(buf + 4, (uint32_t)ml);
	if (ml)
		memcpy(buf + 8, meta, ml);
	memcpy(buf + 8 + ml, v + 4, n - 4);
	MDB_val nd = { 8 + ml + n - 4, buf };
	assert_int_equal(mdb_put(txn, events, &k, &nd, 0), 0);
	free(buf);
}

#endif
