/*
 * faultfs_journal.h — the journal that faultfs (the LD_PRELOAD library)
 * writes and faultfs-image reads: every write to the tracked file that is
 * not known to be on disk yet.
 *
 * A journal is a sequence of records, each a 32-byte little-endian header
 * followed by its data:
 *
 *   0  u32 magic   FJ_MAGIC ("FFJ1")
 *   4  u32 type    enum fj_type
 *   8  u64 offset  file offset of the write (SYNC: 0)
 *  16  u64 length  bytes of the write; MAYBE/DURABLE carry that much data,
 *                  SHORT and SYNC carry none
 *  24  u32 crc     zlib crc32 of the data, then of the header with this
 *                  field zero (data first: the writer knows its crc first)
 *  28  u32 zero
 *
 * A record is written with one append, so a crash leaves at most one
 * damaged record, at the end: readers stop at the first record whose
 * magic, type, size or crc is wrong.
 *
 *   MAYBE    written before the real call: the bytes may or may not have
 *            reached the disk.
 *   SHORT    follows a MAYBE whose call wrote fewer bytes than asked (or
 *            failed): length says how many it wrote (0 for a failure).
 *   DURABLE  written after an O_DSYNC/O_SYNC write returned: these bytes
 *            are on disk.
 *   SYNC     an fsync/fdatasync of the file returned 0: every record
 *            before it is on disk.
 */
#ifndef HANDOFF_FAULTFS_JOURNAL_H
#define HANDOFF_FAULTFS_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#define FJ_MAGIC    0x314a4646u /* "FFJ1" read as little-endian */
#define FJ_HDR_SIZE 32
#define FJ_SECTOR   512

enum fj_type {
	FJ_MAYBE = 1,
	FJ_DURABLE = 2,
	FJ_SYNC = 3,
	FJ_SHORT = 4,
};

/* One record as read back; data points into the journal buffer. */
struct fj_rec {
	uint32_t type;
	uint64_t offset;
	uint64_t length;
	const uint8_t *data;
};

/* What fj_next found. */
enum fj_status {
	FJ_END = 0,	/* clean end of the journal */
	FJ_ENTRY = 1,	/* *rec holds the next entry */
	FJ_DAMAGED = 2, /* a damaged or partial record at *pos: stop there */
};

/*
 * Fill hdr for a record of the given type. data_crc is fj_crc(0, data)
 * (0 for a record without data): fj_header folds the header into it.
 */
void fj_header(uint8_t hdr[FJ_HDR_SIZE], uint32_t type, uint64_t offset,
	       uint64_t length, uint32_t data_crc);

/* crc32 of a buffer, continuing from crc (start with 0). */
uint32_t fj_crc(uint32_t crc, const void *data, size_t len);

/*
 * Read the entry at buf[*pos] and advance *pos past it. A SHORT record
 * right after a MAYBE is folded into it (rec->length becomes the bytes
 * really written), so callers only ever see MAYBE, DURABLE and SYNC.
 */
enum fj_status fj_next(const uint8_t *buf, size_t size, size_t *pos,
		       struct fj_rec *rec);

#endif
