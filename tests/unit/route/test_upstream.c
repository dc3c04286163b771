/*
 * Upstream groups: round robin and client-IP hash over the servers that
 * are up, retries that never pick a server twice, and passive health
 * (max_fails within fail_timeout marks a server down for fail_timeout).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "upstream.h"

static struct conf_http_backend ut_servers[4] = {
	{ "10.0.0.1", 80 }, { "10.0.0.2", 80 }, { "10.0.0.3", 80 }, { "10.0.0.4", 80 },
};

static struct conf_upstream ut_group(enum conf_balance b, int n)
{
	struct conf_upstream u = { .name = "g", .servers = ut_servers, .nservers = n,
				   .balance = b, .max_fails = 2, .fail_timeout = 10.0 };
	return u;
}

static int ut_pick(struct upstream_health *h, const struct conf_upstream *u, const char *ip,
		   uint64_t now)
{
	struct upstream_tried t = { 0 };
	return upstream_pick(h, u, ip, &t, now);
}

Test(upstream, round_robin_takes_turns)
{
	struct conf_upstream u = ut_group(CONF_BALANCE_ROUND_ROBIN, 3);
	struct upstream_health *h = upstream_health_new(3);

	for (int k = 0; k < 9; k++)
		cr_expect_eq(ut_pick(h, &u, "192.0.2.1", 1000), k % 3);
	upstream_health_free(h);
}

Test(upstream, ip_hash_keeps_a_client_on_its_server)
{
	struct conf_upstream u = ut_group(CONF_BALANCE_IP_HASH, 4);
	struct upstream_health *h = upstream_health_new(4);
	int seen[4] = { 0 };
	char ip[32];

	for (int k = 0; k < 200; k++) {
		snprintf(ip, sizeof(ip), "192.0.2.%d", k);
		int a = ut_pick(h, &u, ip, 1000);
		cr_assert(a >= 0 && a < 4);
		cr_expect_eq(ut_pick(h, &u, ip, 2000), a, "%s moved", ip);
		seen[a]++;
	}
	for (int i = 0; i < 4; i++)
		cr_expect_gt(seen[i], 20, "server %d got %d of 200", i, seen[i]);
	upstream_health_free(h);
}

Test(upstream, retries_never_pick_a_server_twice)
{
	for (int b = CONF_BALANCE_IP_HASH; b <= CONF_BALANCE_ROUND_ROBIN; b++) {
		struct conf_upstream u = ut_group((enum conf_balance)b, 4);
		struct upstream_tried t = { 0 };
		bool got[4] = { false };

		for (int k = 0; k < 4; k++) {
			int i = upstream_pick(NULL, &u, "198.51.100.7", &t, 0);
			cr_assert(i >= 0 && i < 4);
			cr_expect(!got[i], "server %d picked twice", i);
			got[i] = true;
		}
		cr_expect_eq(upstream_pick(NULL, &u, "198.51.100.7", &t, 0), -1);
	}
}

Test(upstream, max_fails_within_fail_timeout_marks_down_for_fail_timeout)
{
	struct conf_upstream u = ut_group(CONF_BALANCE_IP_HASH, 2);
	struct upstream_health *h = upstream_health_new(2);
	const char *ip = "203.0.113.9";
	int a = ut_pick(h, &u, ip, 0);

	/* One failure is not max_fails (2). */
	upstream_failed(h, &u, a, 1000);
	cr_expect(!upstream_down(h, a, 1000));
	cr_expect_eq(ut_pick(h, &u, ip, 1000), a);
	/* A second one 11 s later is a new window: still up. */
	upstream_failed(h, &u, a, 12000);
	cr_expect(!upstream_down(h, a, 12000));
	/* Two within 10 s: down until 10 s after the second. */
	upstream_failed(h, &u, a, 13000);
	cr_expect(upstream_down(h, a, 13000));
	cr_expect_eq(ut_pick(h, &u, ip, 13000), 1 - a, "the client moves to the other server");
	cr_expect_eq(ut_pick(h, &u, ip, 22999), 1 - a);
	cr_expect(!upstream_down(h, a, 23000));
	cr_expect_eq(ut_pick(h, &u, ip, 23000), a, "and back once it is up again");
	upstream_health_free(h);
}

Test(upstream, every_server_down_is_none_but_a_single_server_is_never_down)
{
	struct conf_upstream u = ut_group(CONF_BALANCE_ROUND_ROBIN, 2);
	struct upstream_health *h = upstream_health_new(2);

	u.max_fails = 1;
	upstream_failed(h, &u, 0, 500);
	upstream_failed(h, &u, 1, 500);
	cr_expect_eq(ut_pick(h, &u, "192.0.2.1", 600), -1);
	upstream_succeeded(h, 1);
	cr_expect_eq(ut_pick(h, &u, "192.0.2.1", 600), 1);
	upstream_health_free(h);

	struct conf_upstream one = ut_group(CONF_BALANCE_ROUND_ROBIN, 1);
	struct upstream_health *h1 = upstream_health_new(1);
	one.max_fails = 1;
	upstream_failed(h1, &one, 0, 500);
	cr_expect_eq(ut_pick(h1, &one, "192.0.2.1", 600), 0);
	upstream_health_free(h1);
}

Test(upstream, max_fails_zero_never_marks_down_and_foreign_state_is_ignored)
{
	struct conf_upstream u = ut_group(CONF_BALANCE_ROUND_ROBIN, 2);
	struct upstream_health *h = upstream_health_new(2);

	u.max_fails = 0;
	for (int k = 0; k < 10; k++)
		upstream_failed(h, &u, 0, 100);
	cr_expect(!upstream_down(h, 0, 100));
	/* State sized for another group is not used (nor written). */
	struct conf_upstream four = ut_group(CONF_BALANCE_ROUND_ROBIN, 4);
	four.max_fails = 1;
	upstream_failed(h, &four, 1, 100);
	cr_expect(!upstream_down(h, 1, 100));
	struct upstream_tried t = { 0 };
	int i = upstream_pick(h, &four, "192.0.2.1", &t, 100);
	cr_expect(i >= 0 && i < 4);
	upstream_health_free(h);
	cr_expect_null(upstream_health_new(0));
}
