/*
 * test_arena.c — the bump allocator: alignment, non-overlapping blocks
 * across chunks, large blocks, strdup/memdup, the budget (exact edge,
 * refusal leaves the arena usable), reset (keeps one chunk, used_total 0),
 * fini, and arena_allocator() driving protobuf-c (unpack into the arena,
 * refused over the budget). Sizes that overflow when rounded must be
 * refused, not served with a tiny block.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arena.h"
#include "handoff.pb-c.h"

static int setup(void **state)
{
	struct arena *a = malloc(sizeof *a);
	if (!a)
		return -1;
	arena_init(a);
	*state = a;
	return 0;
}

static int teardown(void **state)
{
	struct arena *a = *state;
	arena_fini(a);
	free(a);
	return 0;
}

static void test_init_state(void **state)
{
	struct arena *a = *state;
	assert_null(a->head);
	assert_int_equal(a->used_total, 0);
	assert_int_equal(a->budget, 0);
	assert_true(a->keep_bytes > 0);
}

/* Every block is aligned for any type, and blocks never overlap. */
static void test_alignment_and_no_overlap(void **state)
{
	struct arena *a = *state;
	enum { N = 3000 };
	unsigned char *p[N];
	size_t len[N];
	for (size_t i = 0; i < N; i++) {
		len[i] = (i * 37) % 200 + 1;
		p[i] = arena_alloc(a, len[i]);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % _Alignof(max_align_t), 0);
		memset(p[i], (int)(i & 0xff), len[i]);
	}
	/* many chunks of 64 KiB were needed; every block kept its bytes */
	for (size_t i = 0; i < N; i++)
		for (size_t j = 0; j < len[i]; j++)
			assert_int_equal(p[i][j], i & 0xff);
	assert_true(a->used_total >= N * 16);
}

/* used_total counts rounded sizes: 16-byte granules, 0 takes one. */
static void test_used_total_rounding(void **state)
{
	struct arena *a = *state;
	assert_non_null(arena_alloc(a, 1));
	assert_int_equal(a->used_total, 16);
	assert_non_null(arena_alloc(a, 16));
	assert_int_equal(a->used_total, 32);
	assert_non_null(arena_alloc(a, 17));
	assert_int_equal(a->used_total, 64);
	void *z1 = arena_alloc(a, 0);
	void *z2 = arena_alloc(a, 0);
	assert_non_null(z1);
	assert_non_null(z2);
	assert_ptr_not_equal(z1, z2);
	assert_int_equal(a->used_total, 96);
}

/* A block bigger than the default chunk, then small ones after it. */
static void test_large_blocks(void **state)
{
	struct arena *a = *state;
	unsigned char *small = arena_alloc(a, 100);
	assert_non_null(small);
	memset(small, 0x11, 100);
	size_t big_n = 3u << 20; /* 3 MiB */
	unsigned char *big = arena_alloc(a, big_n);
	assert_non_null(big);
	memset(big, 0x22, big_n);
	unsigned char *after = arena_alloc(a, 1000);
	assert_non_null(after);
	memset(after, 0x33, 1000);
	assert_int_equal(small[99], 0x11);
	assert_int_equal(big[0], 0x22);
	assert_int_equal(big[big_n - 1], 0x22);
	assert_int_equal(after[0], 0x33);
	assert_true(a->used_total >= big_n + 1100);
}

static void test_strdup_memdup(void **state)
{
	struct arena *a = *state;
	const char *s = "hello, arena";
	char *d = arena_strdup(a, s);
	assert_non_null(d);
	assert_ptr_not_equal(d, s);
	assert_string_equal(d, s);
	char *e = arena_strdup(a, "");
	assert_non_null(e);
	assert_string_equal(e, "");

	const unsigned char bytes[] = { 0, 1, 2, 0xff, 0, 7 };
	unsigned char *m = arena_memdup(a, bytes, sizeof bytes);
	assert_non_null(m);
	assert_memory_equal(m, bytes, sizeof bytes);
	assert_non_null(arena_memdup(a, bytes, 0));
}

/* The budget admits exactly up to it and refuses past it; a refusal
 * changes nothing and later small allocations that fit still succeed. */
static void test_budget(void **state)
{
	struct arena *a = *state;
	a->budget = 1024;
	assert_non_null(arena_alloc(a, 1000)); /* 1008 */
	assert_int_equal(a->used_total, 1008);
	assert_null(arena_alloc(a, 17)); /* 32 more: 1040 > 1024 */
	assert_int_equal(a->used_total, 1008);
	assert_non_null(arena_alloc(a, 16)); /* exactly 1024 */
	assert_int_equal(a->used_total, 1024);
	assert_null(arena_alloc(a, 1));
	assert_null(arena_strdup(a, "x"));
	assert_null(arena_memdup(a, "xy", 2));
	assert_int_equal(a->used_total, 1024);
	/* a reset restores the whole budget */
	arena_reset(a);
	assert_int_equal(a->used_total, 0);
	assert_non_null(arena_alloc(a, 1024));
	assert_null(arena_alloc(a, 1));
	/* budget 0 is unlimited */
	a->budget = 0;
	assert_non_null(arena_alloc(a, 1 << 20));
}

/* Reset keeps one chunk (memory reused from its start) and frees the
 * rest; fini frees everything (LeakSanitizer checks the frees). */
static void test_reset_reuses_a_chunk(void **state)
{
	struct arena *a = *state;
	/* Blocks of one chunk are contiguous (112 bytes apart); a block that
	 * is not starts a new chunk. Remember the newest chunk's start. */
	unsigned char *prev = arena_alloc(a, 100), *chunk_start = prev;
	int chunks = 1;
	assert_non_null(prev);
	for (int i = 0; i < 5000; i++) {
		unsigned char *p = arena_alloc(a, 100);
		assert_non_null(p);
		if (p != prev + 112) {
			chunk_start = p;
			chunks++;
		}
		prev = p;
	}
	assert_true(chunks >= 3);
	arena_reset(a);
	assert_int_equal(a->used_total, 0);
	assert_non_null(a->head);
	/* the kept chunk is reused from its start */
	unsigned char *again = arena_alloc(a, 64);
	assert_ptr_equal(again, chunk_start);
	memset(again, 0x5a, 64);
	assert_int_equal(a->used_total, 64);
}

/* A chunk above keep_bytes is not kept across a reset. */
static void test_reset_drops_big_chunks(void **state)
{
	struct arena *a = *state;
	a->keep_bytes = 64 * 1024;
	assert_non_null(arena_alloc(a, 2u << 20));
	arena_reset(a);
	assert_null(a->head);
	assert_int_equal(a->used_total, 0);
	assert_non_null(arena_alloc(a, 10));
	arena_fini(a);
	assert_null(a->head);
	assert_int_equal(a->used_total, 0);
	/* fini leaves an arena that can be used again */
	assert_non_null(arena_alloc(a, 10));
}

/* protobuf-c decodes through the arena (its frees are no-ops, so the
 * decoded message needs no free_unpacked) and fails over the budget. */
static void test_protobuf_allocator(void **state)
{
	struct arena *a = *state;
	Handoff__Wire__PublishRequest pr = HANDOFF__WIRE__PUBLISH_REQUEST__INIT;
	Handoff__Wire__PublishEvent ev[3];
	Handoff__Wire__PublishEvent *evp[3];
	char payload[200];
	memset(payload, 'p', sizeof payload);
	for (int i = 0; i < 3; i++) {
		handoff__wire__publish_event__init(&ev[i]);
		ev[i].payload.data = (uint8_t *)payload;
		ev[i].payload.len = sizeof payload;
		ev[i].key = (char *)"k";
		ev[i].idempotency_key = (char *)"idem";
		evp[i] = &ev[i];
	}
	pr.topic = (char *)"orders";
	pr.n_events = 3;
	pr.events = evp;
	size_t n = handoff__wire__publish_request__get_packed_size(&pr);
	uint8_t *buf = malloc(n);
	assert_non_null(buf);
	handoff__wire__publish_request__pack(&pr, buf);

	ProtobufCAllocator al = arena_allocator(a);
	assert_ptr_equal(al.allocator_data, a);
	Handoff__Wire__PublishRequest *out =
		handoff__wire__publish_request__unpack(&al, n, buf);
	assert_non_null(out);
	assert_string_equal(out->topic, "orders");
	assert_int_equal(out->n_events, 3);
	assert_int_equal(out->events[2]->payload.len, sizeof payload);
	assert_memory_equal(out->events[2]->payload.data, payload,
			    sizeof payload);
	assert_true(a->used_total > 0);
	/* calling free through the allocator is harmless */
	handoff__wire__publish_request__free_unpacked(out, &al);

	arena_reset(a);
	a->budget = 64;
	assert_null(handoff__wire__publish_request__unpack(&al, n, buf));
	free(buf);
}

/* A size whose rounding to 16 wraps around must be refused (NULL), not
 * served with a 16-byte block. */
static void test_huge_size_refused(void **state)
{
	struct arena *a = *state;
	a->budget = 1 << 20;
	assert_null(arena_alloc(a, SIZE_MAX));
	assert_null(arena_alloc(a, SIZE_MAX - 7));
	assert_int_equal(a->used_total, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_init_state, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_alignment_and_no_overlap,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_used_total_rounding, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_large_blocks, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_strdup_memdup, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_reuses_a_chunk,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_drops_big_chunks,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_protobuf_allocator, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_huge_size_refused, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
