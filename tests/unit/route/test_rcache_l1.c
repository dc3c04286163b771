/*
 * test_rcache_l1.c - the in-process route cache: hits, TTL expiry, the
 * bound and LRU eviction, invalidation, and many threads at once.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "rcache.h"
#include "route_int.h"

static struct route l1t_route(const char *host, unsigned port, const char *user)
{
	struct route r;

	memset(&r, 0, sizeof(r));
	r.result = ROUTE_OK;
	r.source = ROUTE_SRC_LOOKUP;
	snprintf(r.host, sizeof(r.host), "%s", host);
	r.port = (uint16_t)port;
	snprintf(r.user, sizeof(r.user), "%s", user);
	return r;
}

Test(rcache_l1, hit_gives_the_whole_route)
{
	struct rcache_l1 *l1 = rcache_l1_new(100);
	struct route in = l1t_route("10.0.0.21", 7143, "alice@example.com"), out;

	cr_assert_not_null(l1);
	cr_assert_not(rcache_l1_get(l1, "imap", "alice", 1000, &out));
	rcache_l1_put(l1, "imap", "alice", &in, 1000, 60000);
	cr_assert(rcache_l1_get(l1, "imap", "alice", 1001, &out));
	cr_assert_eq(out.result, ROUTE_OK);
	cr_assert_eq(out.source, ROUTE_SRC_L1);
	cr_assert_str_eq(out.host, "10.0.0.21");
	cr_assert_eq(out.port, 7143);
	cr_assert_str_eq(out.user, "alice@example.com", "L1 keeps the canonical name");
	cr_assert_str_eq(out.reason, "l1 cache");
	/* Per protocol, and exact about the login. */
	cr_assert_not(rcache_l1_get(l1, "pop3", "alice", 1001, &out));
	cr_assert_not(rcache_l1_get(l1, "imap", "Alice", 1001, &out));
	cr_assert_not(rcache_l1_get(l1, "imap", "alic", 1001, &out));
	cr_assert_eq(rcache_l1_count(l1), 1);
	/* A put replaces. */
	in = l1t_route("2001:db8::5", 993, "alice@example.com");
	rcache_l1_put(l1, "imap", "alice", &in, 2000, 60000);
	cr_assert(rcache_l1_get(l1, "imap", "alice", 2001, &out));
	cr_assert_str_eq(out.host, "2001:db8::5");
	cr_assert_eq(out.port, 993);
	cr_assert_eq(rcache_l1_count(l1), 1);
	rcache_l1_free(l1);
}

Test(rcache_l1, ttl_expiry)
{
	struct rcache_l1 *l1 = rcache_l1_new(100);
	struct route in = l1t_route("10.0.0.21", 7143, "bob"), out;

	rcache_l1_put(l1, "imap", "bob", &in, 5000, 60000);
	cr_assert(rcache_l1_get(l1, "imap", "bob", 64999, &out));
	cr_assert_not(rcache_l1_get(l1, "imap", "bob", 65000, &out), "expired at now + ttl");
	cr_assert_eq(rcache_l1_count(l1), 0, "an expired entry goes when touched");
	/* A zero TTL stores nothing. */
	rcache_l1_put(l1, "imap", "bob", &in, 5000, 0);
	cr_assert_eq(rcache_l1_count(l1), 0);
	rcache_l1_free(l1);
}

Test(rcache_l1, bounded_with_lru_eviction)
{
	struct rcache_l1 *l1 = rcache_l1_new(3);
	struct route in = l1t_route("10.0.0.21", 7143, "x"), out;

	rcache_l1_put(l1, "imap", "a", &in, 0, 60000);
	rcache_l1_put(l1, "imap", "b", &in, 0, 60000);
	rcache_l1_put(l1, "imap", "c", &in, 0, 60000);
	cr_assert(rcache_l1_get(l1, "imap", "a", 1, &out), "a is now the most recently used");
	rcache_l1_put(l1, "imap", "d", &in, 2, 60000);
	cr_assert_eq(rcache_l1_count(l1), 3);
	cr_assert_not(rcache_l1_get(l1, "imap", "b", 3, &out), "b was least recently used");
	cr_assert(rcache_l1_get(l1, "imap", "a", 3, &out));
	cr_assert(rcache_l1_get(l1, "imap", "c", 3, &out));
	cr_assert(rcache_l1_get(l1, "imap", "d", 3, &out));
	rcache_l1_free(l1);
}

Test(rcache_l1, sharded_bound_holds)
{
	struct rcache_l1 *l1 = rcache_l1_new(1000);
	struct route in = l1t_route("10.0.0.21", 7143, "x");
	char login[32];

	for (int i = 0; i < 5000; i++) {
		snprintf(login, sizeof(login), "user%d@example.com", i);
		rcache_l1_put(l1, "imap", login, &in, 0, 60000);
	}
	cr_assert_leq(rcache_l1_count(l1), 1000);
	cr_assert_geq(rcache_l1_count(l1), 900, "each shard fills up to its share");
	rcache_l1_free(l1);
}

Test(rcache_l1, invalidate)
{
	struct rcache_l1 *l1 = rcache_l1_new(10);
	struct route in = l1t_route("10.0.0.21", 7143, "carol"), out;

	rcache_l1_put(l1, "imap", "carol", &in, 0, 60000);
	rcache_l1_put(l1, "pop3", "carol", &in, 0, 60000);
	cr_assert(rcache_l1_remove(l1, "imap", "carol"));
	cr_assert_not(rcache_l1_remove(l1, "imap", "carol"));
	cr_assert_not(rcache_l1_get(l1, "imap", "carol", 1, &out));
	cr_assert(rcache_l1_get(l1, "pop3", "carol", 1, &out), "other protocols stay");
	cr_assert_eq(rcache_l1_count(l1), 1);
	rcache_l1_free(l1);
}

Test(rcache_l1, zero_entries_is_no_cache)
{
	cr_assert_null(rcache_l1_new(0));
}

struct l1t_worker {
	struct rcache_l1 *l1;
	int id, hits;
};

static void *l1t_hammer(void *arg)
{
	struct l1t_worker *w = arg;
	struct route in = l1t_route("10.0.0.21", 7143, "u"), out;
	char login[32];

	for (int i = 0; i < 20000; i++) {
		snprintf(login, sizeof(login), "u%d", (i * 7 + w->id) % 500);
		if (i % 3 == 0)
			rcache_l1_put(w->l1, "imap", login, &in, (uint64_t)i, 60000);
		else if (i % 11 == 0)
			rcache_l1_remove(w->l1, "imap", login);
		else if (rcache_l1_get(w->l1, "imap", login, (uint64_t)i, &out))
			w->hits++;
	}
	return NULL;
}

Test(rcache_l1, threads_share_it)
{
	struct rcache_l1 *l1 = rcache_l1_new(300);
	pthread_t t[4];
	struct l1t_worker w[4];

	for (int i = 0; i < 4; i++) {
		w[i] = (struct l1t_worker){ .l1 = l1, .id = i };
		pthread_create(&t[i], NULL, l1t_hammer, &w[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_assert_gt(w[i].hits, 0);
	}
	cr_assert_leq(rcache_l1_count(l1), 300);
	rcache_l1_free(l1);
}

/* ---- the L1 key: everything the lookup is told (issue 16) ---- */

static char *l1t_key(const char *login, const char *pip, const char *cip, const char *host,
		     bool by_id)
{
	struct route_query q = {
		.login = login, .protocol = "imap", .proxy_ip = pip, .client_ip = cip,
		.host = host, .by_id = by_id, .attempt = 1,
	};
	char *k = route__l1_key(&q);
	cr_assert_not_null(k);
	return k;
}

Test(rcache_l1, key_carries_proxy_ip_client_ip_host_and_kind)
{
	char *a = l1t_key("john", "127.0.0.1", "10.9.9.9", NULL, false);
	char *same = l1t_key("john", "127.0.0.1", "10.9.9.9", NULL, false);
	char *vip = l1t_key("john", "127.0.0.2", "10.9.9.9", NULL, false);
	char *cip = l1t_key("john", "127.0.0.1", "10.9.9.10", NULL, false);
	char *host = l1t_key("john", "127.0.0.1", "10.9.9.9", "b.test", false);
	char *id = l1t_key("john", "127.0.0.1", "10.9.9.9", NULL, true);

	cr_assert_str_eq(a, same);
	cr_assert_str_eq(a, "name john 127.0.0.1 10.9.9.9 ");
	cr_assert_str_neq(a, vip, "another VIP qualifies \"john\" to another domain");
	cr_assert_str_neq(a, cip, "another client may be outside the domain's allow-list");
	cr_assert_str_neq(a, host, "another vhost qualifies \"john\" to another domain");
	cr_assert_str_neq(a, id, "a zimbraId never collides with a name");
	cr_assert_str_eq(host, "name john 127.0.0.1 10.9.9.9 b.test");

	/* In the cache: a route filed for VIP A is not found for VIP B. */
	struct rcache_l1 *l1 = rcache_l1_new(100);
	struct route in = l1t_route("10.0.0.21", 7143, "john@a.test"), out;
	rcache_l1_put(l1, "imap", a, &in, 1000, 60000);
	cr_assert(rcache_l1_get(l1, "imap", same, 1001, &out));
	cr_assert_str_eq(out.user, "john@a.test");
	cr_assert_not(rcache_l1_get(l1, "imap", vip, 1001, &out));
	cr_assert_not(rcache_l1_get(l1, "imap", cip, 1001, &out));
	cr_assert_not(rcache_l1_get(l1, "imap", host, 1001, &out));
	rcache_l1_free(l1);
	free(a), free(same), free(vip), free(cip), free(host), free(id);
}

/* Users cycling through more routes than the cache holds: plain LRU evicts
   the route needed soonest on every miss and never hits; admission keeps
   a stable part of the cycle (the best any cache can do is capacity / N). */
Test(rcache_l1, cyclic_scan_over_capacity_still_hits)
{
	struct rcache_l1 *l1 = rcache_l1_new(100);
	struct route in = l1t_route("10.0.0.21", 7143, "x"), out;
	char login[32];
	int hits = 0, n = 0;

	for (int round = 0; round < 20; round++)
		for (int i = 0; i < 200; i++) {
			snprintf(login, sizeof(login), "user%d@example.com", i);
			if (rcache_l1_get(l1, "imap", login, 1, &out))
				hits++;
			else
				rcache_l1_put(l1, "imap", login, &in, 1, 60000);
			if (round >= 5)
				n++;
			else if (round == 4 && i == 199)
				hits = 0;
		}
	cr_assert_leq(rcache_l1_count(l1), 100);
	cr_assert_geq(hits * 100, n * 30, "%d hits of %d", hits, n);
	rcache_l1_free(l1);
}

Test(rcache_l1, expired_tail_makes_room_at_once)
{
	struct rcache_l1 *l1 = rcache_l1_new(2);
	struct route in = l1t_route("10.0.0.21", 7143, "x"), out;

	rcache_l1_put(l1, "imap", "a", &in, 0, 60000);
	rcache_l1_put(l1, "imap", "b", &in, 0, 15);
	cr_assert(rcache_l1_get(l1, "imap", "a", 1, &out), "b is the tail now");
	rcache_l1_put(l1, "imap", "c", &in, 1, 60000); /* the first to meet a full cache: in */
	cr_assert(rcache_l1_get(l1, "imap", "a", 2, &out), "c evicted b");
	rcache_l1_put(l1, "imap", "x", &in, 2, 60000); /* the tail c is live: not admitted */
	cr_assert_not(rcache_l1_get(l1, "imap", "x", 3, &out));
	cr_assert(rcache_l1_get(l1, "imap", "a", 3, &out));
	rcache_l1_put(l1, "imap", "d", &in, 60001, 60000); /* the tail c has expired: in */
	cr_assert(rcache_l1_get(l1, "imap", "d", 60002, &out));
	rcache_l1_free(l1);
}

/* An admin console request is filed apart from a user's of the same id. */
Test(rcache_l1, key_separates_admin_requests)
{
	struct route_query q = {
		.login = "6d5f0b1e-7c2a-4f7e-9a57-2f7a3c8e1d00", .protocol = "httpssl",
		.proxy_ip = "127.0.0.1", .client_ip = "10.9.9.9", .host = "mail.example.com",
		.by_id = true,
	};
	char *user = route__l1_key(&q);
	q.admin = true;
	char *admin = route__l1_key(&q);
	q.by_id = false;
	char *admin_name = route__l1_key(&q);

	cr_assert_str_eq(user, "id 6d5f0b1e-7c2a-4f7e-9a57-2f7a3c8e1d00 127.0.0.1 10.9.9.9 mail.example.com");
	cr_assert_str_eq(admin,
			 "admin-id 6d5f0b1e-7c2a-4f7e-9a57-2f7a3c8e1d00 127.0.0.1 10.9.9.9 mail.example.com");
	cr_assert_str_neq(admin_name, admin);
	cr_assert_str_neq(admin_name, user);
	free(user), free(admin), free(admin_name);
}
