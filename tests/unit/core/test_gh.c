/*
 * Tests for include/gh.h and core/gh.c: ARRAY_SIZE, and a failed check
 * aborting in this (assertions on) build; include/list.h's list_move_all.
 */
#include <signal.h>
#include <stdlib.h>

#include <criterion/criterion.h>

#include "gh.h"
#include "list.h"

static const char *const names[] = { "a", "b", "c" };
GH_NAMES_CHECK(names, 3);

Test(gh, array_size)
{
	int v[7];

	cr_expect_eq(ARRAY_SIZE(v), 7);
	cr_expect_eq(ARRAY_SIZE(names), 3);
}

Test(gh, check_that_holds_costs_nothing)
{
	uint64_t before = gh_bugs();
	int evaluated = 0;

	cr_expect_not(GH_BUG_ON(++evaluated == 2));
	GH_ASSERT(++evaluated == 2);
	cr_expect_eq(evaluated, 2, "the condition runs exactly once");
	cr_expect_eq(gh_bugs(), before);
}

Test(gh, failed_check_aborts, .signal = SIGABRT)
{
	/* scripts/test.sh sets it; set it here too, for a bare gh-unit run. */
	setenv("GATEHOUSE_ABORT_ON_BUG", "1", 1);
	GH_ASSERT(names[0] == NULL);
}

/* list_move_all: the elements change list in order; the source is empty
   after, and an empty source gives an empty destination. */
struct gh__item {
	int v;
	struct list link;
};

Test(list, move_all_keeps_order_and_empties_the_source)
{
	struct list src, dst;
	struct gh__item it[3] = { { .v = 1 }, { .v = 2 }, { .v = 3 } };
	int want = 1;

	list_init(&src);
	list_move_all(&dst, &src);
	cr_assert(list_empty(&dst));
	for (int i = 0; i < 3; i++)
		list_insert_tail(&src, &it[i].link);
	list_move_all(&dst, &src);
	cr_assert(list_empty(&src));
	list_foreach(l, &dst) {
		cr_assert_eq(list_entry(l, struct gh__item, link)->v, want);
		want++;
	}
	cr_assert_eq(want, 4);
	cr_assert_eq(dst.prev, &it[2].link);
}
