/*
 * test_route_flight.c - single-flight resolution on real libuv loops: one
 * lookup for many concurrent resolutions across two worker threads, a
 * cancelled waiter, a flight nobody waits for, L1 while the lookup service
 * is down, invalid names. Every loop closes with no live handle.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "rct_servers.h"

/* ---- single-flight across threads ---- */

#define RCT_PER_THREAD 25

struct rct_thread {
	struct conf *conf;
	uv_barrier_t *start;
	struct rct_result res[RCT_PER_THREAD];
	int loop_close_rc;
};

static void rct_thread_run(void *arg)
{
	struct rct_thread *t = arg;
	struct route_query q = rct_query("alice@example.com");
	uv_loop_t loop;

	uv_loop_init(&loop);
	route_worker_init(&loop);
	uv_barrier_wait(t->start);
	for (int i = 0; i < RCT_PER_THREAD; i++)
		route_resolve(&loop, t->conf, &q, rct_on_route, &t->res[i]);
	uv_run(&loop, UV_RUN_DEFAULT);
	route_worker_close(&loop);
	t->loop_close_rc = uv_loop_close(&loop);
}

Test(route_flight, single_flight_across_two_loops)
{
	struct rct_srv srv;
	struct rct_thread t[2];
	uv_thread_t th[2];
	uv_barrier_t start;
	struct route_stats before, after;

	rct_srv_start(&srv);
	srv.delay_ms = 300; /* every resolution arrives while the lookup runs */
	struct conf *c = rct_conf(&srv, "");
	uv_barrier_init(&start, 2);
	route_stats(&before);
	/* Keep the caches alive between the threads: one loop stays registered. */
	uv_loop_t keeper;
	rct_loop_start(&keeper);
	for (int i = 0; i < 2; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].conf = c;
		t[i].start = &start;
		uv_thread_create(&th[i], rct_thread_run, &t[i]);
	}
	for (int i = 0; i < 2; i++) {
		uv_thread_join(&th[i]);
		cr_assert_eq(t[i].loop_close_rc, 0, "thread %d left live handles", i);
		for (int k = 0; k < RCT_PER_THREAD; k++) {
			cr_assert_eq(t[i].res[k].calls, 1);
			cr_assert_eq(t[i].res[k].r.result, ROUTE_OK, "%s", t[i].res[k].r.reason);
			cr_assert_str_eq(t[i].res[k].r.host, "10.0.0.21");
			cr_assert_eq(t[i].res[k].r.port, 7143);
		}
	}
	cr_assert_eq(rct_lookups(&srv), 1, "50 concurrent resolutions, one lookup");
	route_stats(&after);
	cr_assert_eq(after.lookups - before.lookups, 1);
	cr_assert_geq(after.shared - before.shared, 2 * RCT_PER_THREAD - 1 - 0u);

	/* The latency of the one lookup: >= the server's delay, in one bucket. */
	cr_assert_eq(after.lookup_ms_count - before.lookup_ms_count, 1);
	cr_assert_geq(after.lookup_ms_sum - before.lookup_ms_sum, 290);
	uint64_t in_buckets = 0;
	for (int i = 0; i <= ROUTE_STATS_BUCKETS; i++)
		in_buckets += after.lookup_ms_buckets[i] - before.lookup_ms_buckets[i];
	cr_assert_eq(in_buckets, 1);
	cr_assert_eq(after.lookup_ms_buckets[5] - before.lookup_ms_buckets[5], 1, "100 < ms <= 500");

	/* Later: L1 answers, on any loop. */
	struct route r = rct_resolve_once(c, rct_query("alice@example.com"));
	cr_assert_eq(r.source, ROUTE_SRC_L1);
	cr_assert_str_eq(r.user, "alice@example.com");
	cr_assert_eq(rct_lookups(&srv), 1);
	route_stats(&after);
	cr_assert_geq(after.l1_hits - before.l1_hits, 1);
	rct_loop_finish(&keeper);
	uv_barrier_destroy(&start);
	conf_unref(c);
	rct_srv_stop(&srv);
}

Test(route_flight, cancelled_waiter_gets_no_callback)
{
	struct rct_srv srv;
	struct rct_result res[3] = {{0}};
	uv_loop_t loop;

	rct_srv_start(&srv);
	srv.delay_ms = 200;
	struct conf *c = rct_conf(&srv, "");
	struct route_query q = rct_query("alice@example.com");
	rct_loop_start(&loop);
	struct route_req *reqs[3];
	for (int i = 0; i < 3; i++)
		reqs[i] = route_resolve(&loop, c, &q, rct_on_route, &res[i]);
	rct_wait_lookup(&srv, &loop);
	route_cancel(reqs[0]); /* the one that started the flight */
	route_cancel(reqs[2]);
	rct_loop_finish(&loop);
	cr_assert_eq(res[0].calls, 0);
	cr_assert_eq(res[2].calls, 0);
	cr_assert_eq(res[1].calls, 1);
	cr_assert_eq(res[1].r.result, ROUTE_OK);
	cr_assert_eq(rct_lookups(&srv), 1);
	conf_unref(c);
	rct_srv_stop(&srv);
}

Test(route_flight, nobody_waiting_abandons_the_lookup)
{
	struct rct_srv srv;
	struct rct_result res[2] = {{0}};
	uv_loop_t loop;

	rct_srv_start(&srv);
	srv.delay_ms = 4000;
	struct conf *c = rct_conf(&srv, "");
	struct route_query q = rct_query("alice@example.com");
	rct_loop_start(&loop);
	struct route_req *a = route_resolve(&loop, c, &q, rct_on_route, &res[0]);
	struct route_req *b = route_resolve(&loop, c, &q, rct_on_route, &res[1]);
	rct_wait_lookup(&srv, &loop);
	route_cancel(a);
	route_cancel(b);
	uint64_t t0 = uv_hrtime();
	rct_loop_finish(&loop);
	cr_assert_lt(uv_hrtime() - t0, 1000000000ull, "the lookup must be aborted, not awaited");
	cr_assert_eq(res[0].calls + res[1].calls, 0);
	conf_unref(c);
	rct_srv_stop(&srv);
}

Test(route_flight, invalid_names_reach_neither_memcached_nor_lookup)
{
	struct rct_srv srv;
	char cache[256], big[600];
	const char *names[] = { "bob\r\nset x 0 0 1", "a b", "tab\tx", "", big };

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	rct_srv_start(&srv);
	snprintf(cache, sizeof(cache), "memcached = [ \"127.0.0.1:%d\" ];", srv.mc_port);
	struct conf *c = rct_conf(&srv, cache);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct route r = rct_resolve_once(c, rct_query(names[i]));
		cr_assert_eq(r.result, ROUTE_DENIED);
	}
	cr_assert_eq(rct_mc_count(&srv), 0);
	cr_assert_eq(rct_lookups(&srv), 0);
	conf_unref(c);
	rct_srv_stop(&srv);
}

Test(route_flight, lookup_down_warm_users_still_resolve)
{
	struct rct_srv srv;
	uv_loop_t loop;
	struct rct_result res = {0};
	char text[512];

	rct_srv_start(&srv);
	struct conf *c = rct_conf(&srv, "");
	rct_loop_start(&loop);
	struct route_query q = rct_query("alice@example.com");
	route_resolve(&loop, c, &q, rct_on_route, &res);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(res.r.result, ROUTE_OK);

	/* Same cache settings, a dead lookup service: the runtime is kept. */
	snprintf(text, sizeof(text), "lookup = { timeout = 1.0; servers = [\"http://127.0.0.1:%d/\"]; };\n",
		 rct_closed_port());
	struct conf *down = rct_load(text);
	route_resolve(&loop, down, &q, rct_on_route, &res);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(res.r.result, ROUTE_OK);
	cr_assert_eq(res.r.source, ROUTE_SRC_L1);
	q.login = "carol@example.com";
	route_resolve(&loop, down, &q, rct_on_route, &res);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(res.r.result, ROUTE_TEMPFAIL);
	rct_loop_finish(&loop);
	conf_unref(down);
	conf_unref(c);
	rct_srv_stop(&srv);
}

/* ---- only identical lookup requests share (issue 16) ---- */

Test(route_flight, flights_shared_only_by_identical_requests)
{
	struct rct_srv srv;
	struct rct_result res[8] = {{0}};
	uv_loop_t loop;

	rct_srv_start(&srv);
	srv.delay_ms = 300; /* every resolution arrives while the lookups run */
	struct conf *c = rct_conf(&srv, "");
	struct route_query q[8];
	for (int i = 0; i < 8; i++)
		q[i] = rct_query("john");
	q[1].proxy_ip = "127.0.0.2";          /* another VIP */
	q[2].client_ip = "192.0.2.8";         /* another client */
	q[3].host = "b.test";                 /* another vhost */
	q[4].by_id = true;                    /* a zimbraId, not a name */
	q[5].protocol = "pop3";
	q[6].attempt = 2;
	/* q[7] is q[0] again: it joins q[0]'s flight. */
	rct_loop_start(&loop);
	for (int i = 0; i < 8; i++)
		route_resolve(&loop, c, &q[i], rct_on_route, &res[i]);
	rct_loop_finish(&loop);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(res[i].calls, 1);
	cr_assert_eq(rct_lookups(&srv), 7, "seven different requests, seven lookups");
	conf_unref(c);
	rct_srv_stop(&srv);
}

Test(route_flight, l1_answers_only_the_same_vip_client_and_host)
{
	struct rct_srv srv;

	rct_srv_start(&srv);
	struct conf *c = rct_conf(&srv, "");
	uv_loop_t keeper; /* keeps L1 alive between the resolutions */
	rct_loop_start(&keeper);

	struct route_query a = rct_query("john");
	struct route r = rct_resolve_once(c, a);
	cr_assert_eq(r.source, ROUTE_SRC_LOOKUP);
	cr_assert_eq(rct_resolve_once(c, a).source, ROUTE_SRC_L1);

	struct route_query other = a;
	other.proxy_ip = "127.0.0.2";
	cr_assert_eq(rct_resolve_once(c, other).source, ROUTE_SRC_LOOKUP,
		     "VIP B must not get VIP A's john");
	other = a;
	other.client_ip = "192.0.2.99";
	cr_assert_eq(rct_resolve_once(c, other).source, ROUTE_SRC_LOOKUP,
		     "another client address may be refused by the domain");
	other = a;
	other.host = "b.test";
	cr_assert_eq(rct_resolve_once(c, other).source, ROUTE_SRC_LOOKUP);
	cr_assert_eq(rct_lookups(&srv), 4);

	/* A Zimbra client tag is no part of the key: john/tb is john. */
	struct route_query tb = a;
	tb.login = "john/tb";
	r = rct_resolve_once(c, tb);
	cr_assert_eq(r.source, ROUTE_SRC_L1);
	cr_assert_str_eq(r.user, "alice@example.com", "the route's user has no suffix");
	cr_assert_eq(rct_lookups(&srv), 4);
	rct_loop_finish(&keeper);
	conf_unref(c);
	rct_srv_stop(&srv);
}

/* An admin console route (Auth-Zimbra-Admin) never answers a user's request
   nor the reverse: not in a shared flight, not from L1. */
Test(route_flight, admin_and_user_routes_never_meet)
{
	struct rct_srv srv;
	struct rct_result res[3] = {{0}};
	uv_loop_t loop;

	rct_srv_start(&srv);
	srv.delay_ms = 300; /* the three arrive while the lookups run */
	struct conf *c = rct_conf(&srv, "");
	struct route_query q[3];
	for (int i = 0; i < 3; i++) {
		q[i] = rct_query("6d5f0b1e-7c2a-4f7e-9a57-2f7a3c8e1d00");
		q[i].protocol = "httpssl";
		q[i].by_id = true;
	}
	q[1].admin = true;
	q[2].admin = true; /* joins q[1]'s flight, not q[0]'s */
	rct_loop_start(&loop);
	for (int i = 0; i < 3; i++)
		route_resolve(&loop, c, &q[i], rct_on_route, &res[i]);
	rct_loop_finish(&loop);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(res[i].calls, 1);
	cr_assert_eq(rct_lookups(&srv), 2, "one user lookup, one admin lookup");

	srv.delay_ms = 0;
	uv_loop_t keeper; /* keeps L1 alive between the resolutions */
	rct_loop_start(&keeper);
	struct route_query u = q[0], a = q[1];
	u.login = a.login = "0f7c5e2a-1b3c-4d5e-8f90-a1b2c3d4e5f6";
	cr_assert_eq(rct_resolve_once(c, a).source, ROUTE_SRC_LOOKUP);
	cr_assert_eq(rct_resolve_once(c, a).source, ROUTE_SRC_L1);
	cr_assert_eq(rct_resolve_once(c, u).source, ROUTE_SRC_LOOKUP,
		     "a user must not get the admin's route from L1");
	cr_assert_eq(rct_resolve_once(c, u).source, ROUTE_SRC_L1);
	cr_assert_eq(rct_lookups(&srv), 4);
	rct_loop_finish(&keeper);
	conf_unref(c);
	rct_srv_stop(&srv);
}
