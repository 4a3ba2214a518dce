/*
 * test_leases.c — the per-consumer lease counts behind
 * max_leases_per_consumer: counts follow adds, rollback undoes exactly the
 * changes of the transaction, and entries that reach zero are freed (the
 * sanitizer build checks for leaks and use after free).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "leases.h"

static void test_counts_and_commit(void **state)
{
	(void)state;
	struct lease_counts lc;
	assert_int_equal(leases_init(&lc), 0);
	assert_int_equal(leases_held(&lc, "a"), 0);
	leases_add(&lc, "a", 1);
	leases_add(&lc, "a", 1);
	leases_add(&lc, "b", 1);
	leases_commit(&lc);
	assert_int_equal(leases_held(&lc, "a"), 2);
	assert_int_equal(leases_held(&lc, "b"), 1);
	/* never below zero; an unknown consumer's end is ignored */
	leases_add(&lc, "b", -1);
	leases_add(&lc, "b", -1);
	leases_add(&lc, "ghost", -1);
	leases_commit(&lc);
	assert_int_equal(leases_held(&lc, "b"), 0);
	assert_int_equal(leases_held(&lc, "ghost"), 0);
	/* a freed entry comes back cleanly */
	leases_add(&lc, "b", 1);
	leases_commit(&lc);
	assert_int_equal(leases_held(&lc, "b"), 1);
	leases_fini(&lc);
}

static void test_rollback(void **state)
{
	(void)state;
	struct lease_counts lc;
	assert_int_equal(leases_init(&lc), 0);
	leases_add(&lc, "a", 1);
	leases_commit(&lc);
	/* a turn that leases, acks and creates a consumer, then rolls back */
	leases_add(&lc, "a", 1);
	leases_add(&lc, "a", -1);
	leases_add(&lc, "a", -1);
	leases_add(&lc, "new", 1);
	leases_add(&lc, "new", 1);
	assert_int_equal(leases_held(&lc, "a"), 0);
	assert_int_equal(leases_held(&lc, "new"), 2);
	leases_rollback(&lc);
	assert_int_equal(leases_held(&lc, "a"), 1);
	assert_int_equal(leases_held(&lc, "new"), 0);
	/* the clamped decrement is undone exactly too */
	leases_add(&lc, "a", -5);
	assert_int_equal(leases_held(&lc, "a"), 0);
	leases_rollback(&lc);
	assert_int_equal(leases_held(&lc, "a"), 1);
	leases_fini(&lc);
}

static void test_many_consumers(void **state)
{
	(void)state;
	struct lease_counts lc;
	char name[32];
	assert_int_equal(leases_init(&lc), 0);
	for (int i = 0; i < 20000; i++) {
		snprintf(name, sizeof name, "c%d", i);
		leases_add(&lc, name, 1 + i % 3);
	}
	leases_commit(&lc);
	for (int i = 0; i < 20000; i += 2) {
		snprintf(name, sizeof name, "c%d", i);
		leases_add(&lc, name, -(1 + i % 3));
	}
	leases_commit(&lc);
	for (int i = 0; i < 20000; i++) {
		snprintf(name, sizeof name, "c%d", i);
		assert_int_equal(leases_held(&lc, name),
				 i % 2 ? (uint32_t)(1 + i % 3) : 0);
	}
	leases_fini(&lc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counts_and_commit),
		cmocka_unit_test(test_rollback),
		cmocka_unit_test(test_many_consumers),
	};
	return cmocka_run_group_tests_name("leases", tests, NULL, NULL);
}
