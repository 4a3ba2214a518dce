/*
 * arena.h — a bump allocator for everything one loop turn builds: decoded
 * requests, store records read in the turn, replies before packing. One
 * reset at the end of the turn frees it all, so request handlers need no
 * per-object cleanup. A budget bounds what one decode may take (protobuf-c
 * allocates as much as the input declares).
 *
 * Not thread-safe. Ownership: the arena owns every block it hands out.
 */
#ifndef HANDOFF_BROKER_ARENA_H
#define HANDOFF_BROKER_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

struct arena_chunk;

struct arena {
	struct arena_chunk *head;
	size_t used_total; /* bytes handed out since the last reset */
	size_t budget;	   /* 0 = unlimited; else allocations fail past it */
	size_t keep_bytes; /* a reset keeps one chunk up to this size */
};

void arena_init(struct arena *a);
/* NULL on allocation failure or when the budget would be exceeded. */
void *arena_alloc(struct arena *a, size_t n);
char *arena_strdup(struct arena *a, const char *s);
void *arena_memdup(struct arena *a, const void *p, size_t n);
void arena_reset(struct arena *a);
void arena_fini(struct arena *a);
/* A protobuf-c allocator drawing from a (free is a no-op). */
ProtobufCAllocator arena_allocator(struct arena *a);

#endif
