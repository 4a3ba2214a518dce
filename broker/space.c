/*
 * space.c — storage headroom; see space.h.
 */
#include "space.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

#define MIB		 (1024ull * 1024)
#define RESERVE_RETRY_MS 1000

void space_init(struct space *s, uint64_t headroom, uint64_t map_size)
{
	memset(s, 0, sizeof *s);
	if (headroom == 0) {
		headroom = map_size / 64;
		if (headroom < MIB)
			headroom = MIB;
		if (headroom > 64 * MIB)
			headroom = 64 * MIB;
		if (headroom > map_size / 4)
			headroom = map_size / 4;
	}
	s->headroom = headroom;
}

/* Grow the file's allocation to headroom past its last page (rounded up to
 * a MiB so this runs rarely). */
static void reserve_disk(struct space *s, struct store *st, uint64_t end,
			 uint64_t map_bytes, uint64_t now_ms)
{
	uint64_t want = end + s->headroom;
	if (want > map_bytes)
		want = map_bytes;
	if (want <= s->reserved || now_ms < s->next_reserve_ms)
		return;
	want = (want + MIB - 1) / MIB * MIB;
	if (want > map_bytes)
		want = map_bytes;
	int rc = store_reserve(st, want);
	if (rc == 0) {
		if (s->reserve_error)
			log_event(LOG_INFO, "disk_space_reserved",
				  LU("bytes", want), LOG_END);
		s->reserved = want;
		s->reserve_error = 0;
		return;
	}
	if (rc != s->reserve_error)
		log_event(LOG_WARN, "disk_space_short",
			  LU("wanted_bytes", want),
			  LU("reserved_bytes", s->reserved),
			  LS("error", strerror(rc)), LOG_END);
	s->reserve_error = rc;
	s->next_reserve_ms = now_ms + RESERVE_RETRY_MS;
}

void space_update(struct space *s, struct store *st, uint64_t now_ms)
{
	uint64_t used_pages, map_pages, free_pages = 0;
	uint32_t psize;
	store_pages(st, &used_pages, &map_pages, &psize);
	uint64_t map_bytes = map_pages * psize;
	uint64_t end = used_pages * psize;
	if (s->reserved == 0)
		s->reserved =
			store_file_bytes(st); /* allocated by earlier runs */
	reserve_disk(s, st, end, map_bytes, now_ms);

	/* Capacity: the map, or what the disk let the file have. */
	uint64_t cap = map_bytes;
	if (s->reserve_error && s->reserved > end && s->reserved < cap)
		cap = s->reserved;
	else if (s->reserve_error && s->reserved <= end)
		cap = end;
	bool was = s->refusing;
	uint64_t free_bytes = cap > end ? cap - end : 0;
	if (free_bytes < s->headroom) {
		/* nearly full: count the reusable pages too */
		if (store_free_pages(st, &free_pages) == 0)
			free_bytes += free_pages * psize;
	}
	s->refusing = free_bytes < s->headroom;
	s->capacity = cap;
	s->free_bytes = free_bytes;
	if (s->refusing)
		snprintf(s->why, sizeof s->why,
			 "storage full: %llu bytes free, %llu kept for acks "
			 "and purges (%s); retry later",
			 (unsigned long long)free_bytes,
			 (unsigned long long)s->headroom,
			 cap < map_bytes ? "disk full" : "map_size reached");
	if (s->refusing != was)
		log_event(s->refusing ? LOG_WARN : LOG_INFO,
			  s->refusing ? "storage_full" : "storage_available",
			  LU("free_bytes", free_bytes),
			  LU("headroom_bytes", s->headroom),
			  LU("file_bytes", end), LU("map_bytes", map_bytes),
			  LS("limit", cap < map_bytes ? "disk" : "map"),
			  LOG_END);
}

bool space_refusing(const struct space *s, const char **why)
{
	if (why)
		*why = s->why;
	return s->refusing;
}
