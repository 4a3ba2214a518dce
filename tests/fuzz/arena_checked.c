/*
 * arena_checked.c — broker/arena.h for the fuzz targets: the same budget
 * and accounting as broker/arena.c (sizes rounded up to 16 count against
 * the budget; a request of more than SIZE_MAX/2 fails), but every block is
 * its own malloc of exactly the size asked for. AddressSanitizer then sees
 * each decoded string, record and reply array as a separate object, and
 * reports a read or write one byte past any of them; inside the real
 * arena's 64 KiB chunks such an overflow would go unnoticed. arena.c itself
 * is covered by tests/unit/test_arena.c.
 */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct arena_chunk {
	struct arena_chunk *next;
	size_t size;
	max_align_t data[];
};

void arena_init(struct arena *a)
{
	memset(a, 0, sizeof *a);
	a->keep_bytes = 1 << 20;
}

void *arena_alloc(struct arena *a, size_t n)
{
	if (n > SIZE_MAX / 2)
		return NULL;
	size_t rounded = (n + 15) & ~(size_t)15;
	if (rounded == 0)
		rounded = 16;
	if (a->budget && a->used_total + rounded > a->budget)
		return NULL;
	/* the header is a multiple of 16 bytes: data stays aligned, and the
	 * block ends exactly n bytes after data */
	struct arena_chunk *c = malloc(sizeof *c + n);
	if (!c)
		return NULL;
	c->size = n;
	c->next = a->head;
	a->head = c;
	a->used_total += rounded;
	return c->data;
}

char *arena_strdup(struct arena *a, const char *s)
{
	return arena_memdup(a, s, strlen(s) + 1);
}

void *arena_memdup(struct arena *a, const void *p, size_t n)
{
	void *d = arena_alloc(a, n);
	if (d && n)
		memcpy(d, p, n);
	return d;
}

void arena_fini(struct arena *a)
{
	struct arena_chunk *c = a->head;
	while (c) {
		struct arena_chunk *next = c->next;
		free(c);
		c = next;
	}
	a->head = NULL;
	a->used_total = 0;
}

void arena_reset(struct arena *a)
{
	arena_fini(a);
}

static void *pb_alloc(void *data, size_t n)
{
	return arena_alloc(data, n);
}

static void pb_free(void *data, void *p)
{
	(void)data;
	(void)p;
}

ProtobufCAllocator arena_allocator(struct arena *a)
{
	ProtobufCAllocator al = { .alloc = pb_alloc,
				  .free = pb_free,
				  .allocator_data = a };
	return al;
}
