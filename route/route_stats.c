/*
 * route_stats.c - process-wide counters of the route resolver, for the
 * status listener: cache hits and misses, memcached errors, lookups and
 * their latency. Relaxed atomics: each counter is exact, a snapshot of all
 * of them is not taken at one instant.
 */
#include <stdatomic.h>

#include "rcache.h"

const unsigned route_stats_bucket_ms[ROUTE_STATS_BUCKETS] = { 1, 5, 10, 50, 100, 500, 1000, 5000 };

static atomic_uint_fast64_t route__stats[ROUTE__NSTATS];
static atomic_uint_fast64_t route__lat_sum, route__lat_count;
static atomic_uint_fast64_t route__lat_buckets[ROUTE_STATS_BUCKETS + 1];

void route__count(enum route__stat which)
{
	atomic_fetch_add_explicit(&route__stats[which], 1, memory_order_relaxed);
}

void route__lookup_latency(uint64_t ms)
{
	int b = 0;

	while (b < ROUTE_STATS_BUCKETS && ms > route_stats_bucket_ms[b])
		b++;
	atomic_fetch_add_explicit(&route__lat_buckets[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&route__lat_sum, ms, memory_order_relaxed);
	atomic_fetch_add_explicit(&route__lat_count, 1, memory_order_relaxed);
}

static uint64_t route__get(atomic_uint_fast64_t *a)
{
	return atomic_load_explicit(a, memory_order_relaxed);
}

void route_stats(struct route_stats *out)
{
	out->l1_hits = route__get(&route__stats[ROUTE__L1_HIT]);
	out->l1_misses = route__get(&route__stats[ROUTE__L1_MISS]);
	out->mc_hits = route__get(&route__stats[ROUTE__MC_HIT]);
	out->mc_misses = route__get(&route__stats[ROUTE__MC_MISS]);
	out->mc_errors = route__get(&route__stats[ROUTE__MC_ERROR]);
	out->lookups = route__get(&route__stats[ROUTE__LOOKUP]);
	out->lookup_failures = route__get(&route__stats[ROUTE__LOOKUP_FAIL]);
	out->shared = route__get(&route__stats[ROUTE__SHARED]);
	out->invalidations = route__get(&route__stats[ROUTE__INVALIDATE]);
	out->lookup_ms_sum = route__get(&route__lat_sum);
	out->lookup_ms_count = route__get(&route__lat_count);
	for (int i = 0; i <= ROUTE_STATS_BUCKETS; i++)
		out->lookup_ms_buckets[i] = route__get(&route__lat_buckets[i]);
}
