/*
 * gh.c - the failed-check report behind GH_ASSERT / GH_BUG_ON (gh.h).
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "gh.h"
#include "log.h"

static atomic_uint_fast64_t gh__bugs;

void gh_bug(const char *file, int line, const char *expr)
{
	atomic_fetch_add_explicit(&gh__bugs, 1, memory_order_relaxed);
	log_write(LOG_ERROR, "BUG at %s:%d: %s", file, line, expr);
	if (GH_BUG_ABORTS || getenv("GATEHOUSE_ABORT_ON_BUG") != NULL)
		abort();
}

uint64_t gh_bugs(void)
{
	return atomic_load_explicit(&gh__bugs, memory_order_relaxed);
}
