/*
 * Tests for include/gh.h and core/gh.c: ARRAY_SIZE, and a failed check
 * aborting in this (assertions on) build.
 */
#include <signal.h>
#include <stdlib.h>

#include <criterion/criterion.h>

#include "gh.h"

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
