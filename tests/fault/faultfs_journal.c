/*
 * faultfs_journal.c — encoding and decoding of faultfs journal records
 * (format in faultfs_journal.h). No I/O here: the library must do its own
 * through raw syscalls, the tool through stdio.
 */
#include "faultfs_journal.h"

#include <string.h>
#include <zlib.h>

static void put32(uint8_t *b, uint32_t v)
{
	for (int i = 0; i < 4; i++, v >>= 8)
		b[i] = (uint8_t)v;
}

static void put64(uint8_t *b, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		b[i] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
}

static uint64_t get64(const uint8_t *b)
{
	return (uint64_t)get32(b) | (uint64_t)get32(b + 4) << 32;
}

uint32_t fj_crc(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	/* zlib takes a 32-bit length. */
	while (len > 0) {
		uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
		crc = (uint32_t)crc32(crc, p, n);
		p += n;
		len -= n;
	}
	return crc;
}

void fj_header(uint8_t hdr[FJ_HDR_SIZE], uint32_t type, uint64_t offset,
	       uint64_t length, uint32_t data_crc)
{
	memset(hdr, 0, FJ_HDR_SIZE);
	put32(hdr, FJ_MAGIC);
	put32(hdr + 4, type);
	put64(hdr + 8, offset);
	put64(hdr + 16, length);
	put32(hdr + 24, fj_crc(data_crc, hdr, FJ_HDR_SIZE));
}

static uint64_t data_len(uint32_t type, uint64_t length)
{
	return type == FJ_MAYBE || type == FJ_DURABLE ? length : 0;
}

/* Decode the record at buf[pos]; its total size, or 0 if it is damaged. */
static size_t decode(const uint8_t *buf, size_t size, size_t pos,
		     struct fj_rec *rec)
{
	uint8_t hdr[FJ_HDR_SIZE];
	uint64_t dlen;

	if (size - pos < FJ_HDR_SIZE)
		return 0;
	memcpy(hdr, buf + pos, FJ_HDR_SIZE);
	rec->type = get32(hdr + 4);
	rec->offset = get64(hdr + 8);
	rec->length = get64(hdr + 16);
	if (get32(hdr) != FJ_MAGIC || rec->type < FJ_MAYBE ||
	    rec->type > FJ_SHORT || get32(hdr + 28) != 0)
		return 0;
	dlen = data_len(rec->type, rec->length);
	if (dlen > size - pos - FJ_HDR_SIZE)
		return 0;
	rec->data = buf + pos + FJ_HDR_SIZE;
	uint32_t want = get32(hdr + 24);
	memset(hdr + 24, 0, 4);
	if (fj_crc(fj_crc(0, rec->data, dlen), hdr, FJ_HDR_SIZE) != want)
		return 0;
	return FJ_HDR_SIZE + dlen;
}

enum fj_status fj_next(const uint8_t *buf, size_t size, size_t *pos,
		       struct fj_rec *rec)
{
	struct fj_rec shrt;
	size_t n, m;

	if (*pos >= size)
		return FJ_END;
	n = decode(buf, size, *pos, rec);
	/* A SHORT only ever follows its MAYBE: alone it means damage. */
	if (n == 0 || rec->type == FJ_SHORT)
		return FJ_DAMAGED;
	*pos += n;
	if (rec->type != FJ_MAYBE || *pos >= size)
		return FJ_ENTRY;
	/* A damaged SHORT is left for the next call to report. */
	m = decode(buf, size, *pos, &shrt);
	if (m == 0 || shrt.type != FJ_SHORT)
		return FJ_ENTRY;
	if (shrt.offset != rec->offset || shrt.length > rec->length)
		return FJ_DAMAGED;
	rec->length = shrt.length;
	*pos += m;
	return FJ_ENTRY;
}
