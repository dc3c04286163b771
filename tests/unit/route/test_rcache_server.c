/*
 * test_rcache_server.c - the loop client's server choice (modula) against
 * libmemcached's own: several gatehouses of different versions, and
 * Zimbra's tools, share one memcached cluster during an upgrade, so a key
 * must land on the same server whichever client wrote it.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>
#include <libmemcached/memcached.h>

#include "rcache.h"

/* libmemcached configured as rcache_mc.c configures it (modula, its default
   hash), with n servers; no connection is made by generate_hash. */
static memcached_st *reference(int n)
{
	memcached_st *m = memcached_create(NULL);

	cr_assert_not_null(m);
	for (int i = 0; i < n; i++)
		cr_assert_eq(memcached_server_add(m, "127.0.0.1", (in_port_t)(21000 + i)),
			     MEMCACHED_SUCCESS);
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_HASH, MEMCACHED_HASH_DEFAULT);
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_DISTRIBUTION, MEMCACHED_DISTRIBUTION_MODULA);
	return m;
}

/* Key i of the forms the route cache and the throttle write. */
static int key_of(int i, char *out, size_t cap)
{
	switch (i % 4) {
	case 0:
		return snprintf(out, cap, "route:proto=imap;user=user%d@example.com", i);
	case 1:
		return snprintf(out, cap, "alias:user=u%d;ip=192.0.2.%d", i, i % 250);
	case 2:
		return snprintf(out, cap, "route:proto=httpssl;id=%08x-1111-2222-3333-444455556666",
				(unsigned)i);
	default:
		return snprintf(out, cap, "throttle:proto=p,ip=2001:db8::%x", (unsigned)i);
	}
}

Test(rcache_server, modula_choice_is_libmemcached_s)
{
	int spread[16] = {0};

	for (int n = 1; n <= 16; n++) {
		memcached_st *m = reference(n);
		for (int i = 0; i < 5000; i++) {
			char key[256];
			int len = key_of(i, key, sizeof(key));
			uint32_t want = memcached_generate_hash(m, key, (size_t)len);
			int got = rcache_mc_server_of(key, (size_t)len, n);
			cr_assert_eq((uint32_t)got, want, "n=%d key %s: ours %d, libmemcached %u", n,
				     key, got, want);
			if (n == 16)
				spread[got]++;
		}
		memcached_free(m);
	}
	/* And the keys do spread (the comparison is not between two constants). */
	for (int i = 0; i < 16; i++)
		cr_expect_gt(spread[i], 150, "server %d got %d of 5000 keys", i, spread[i]);
}
