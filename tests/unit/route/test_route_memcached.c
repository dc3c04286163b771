/*
 * test_route_memcached.c - the resolver against a fake memcached that logs
 * every command: Zimbra's keys and values, raw and hashed, the alias flow,
 * memcached down, invalidation, and a bypassing lookup.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>
#include <uv.h>

#include "rct_servers.h"

/* ---- memcached ---- */

static struct conf *rct_mc_conf(struct rct_srv *s, const char *extra)
{
	char cache[512];

	snprintf(cache, sizeof(cache), "memcached = [ \"127.0.0.1:%d\" ]; l1_entries = 0; %s",
		 s->mc_port, extra);
	return rct_conf(s, cache);
}

Test(route_memcached, memcached_flow_raw_keys)
{
	struct rct_srv srv;

	rct_srv_start(&srv);
	struct conf *c = rct_mc_conf(&srv, "ttl = 1234;");
	struct route r = rct_resolve_once(c, rct_query("alice@example.com"));
	cr_assert_eq(r.result, ROUTE_OK);
	cr_assert_eq(r.source, ROUTE_SRC_LOOKUP);
	/* Alias first (keyed by the proxy address, as the mail alias is), then
	   the route by login; then the answer is added. */
	int ga = rct_mc_find(&srv, "get alias:user=alice@example.com;ip=127.0.0.1");
	int gr = rct_mc_find(&srv, "get route:proto=imap;user=alice@example.com");
	int ad = rct_mc_wait(&srv, "add route:proto=imap;user=alice@example.com 0 1234 14");
	cr_assert(ga >= 0 && gr > ga && ad > gr, "log: alias %d route %d add %d", ga, gr, ad);
	cr_assert_eq(rct_mc_find(&srv, "set "), -1, "never set");
	cr_assert_eq(rct_mc_find(&srv, "add alias"), -1, "same name: no alias");
	cr_assert_str_eq(srv.items[0].val, "10.0.0.21:7143");

	/* Another proxy (or this one, L1 off) now finds it in memcached. */
	r = rct_resolve_once(c, rct_query("alice@example.com"));
	cr_assert_eq(r.result, ROUTE_OK);
	cr_assert_eq(r.source, ROUTE_SRC_MEMCACHED);
	cr_assert_str_eq(r.host, "10.0.0.21");
	cr_assert_eq(r.port, 7143);
	cr_assert_str_eq(r.user, "alice@example.com");
	cr_assert_eq(rct_lookups(&srv), 1);
	conf_unref(c);
	rct_srv_stop(&srv);
}

Test(route_memcached, memcached_hashed_keys)
{
	struct rct_srv srv;

	rct_srv_start(&srv);
	struct conf *c = rct_mc_conf(&srv, "hash_keys = true;");
	rct_resolve_once(c, rct_query("alice@example.com"));
	cr_assert_geq(rct_mc_wait(&srv,
		"add 0519f96c40c6739a4896e95c02b77ba6eecba0ff988ccb079bdd8186718c7b8b 0 3600 14"), 0);
	cr_assert_eq(rct_mc_find(&srv, "get route:"), -1);
	cr_assert_eq(rct_mc_find(&srv, "add route:"), -1);
	struct route r = rct_resolve_once(c, rct_query("alice@example.com"));
	cr_assert_eq(r.source, ROUTE_SRC_MEMCACHED);
	cr_assert_eq(rct_lookups(&srv), 1);
	conf_unref(c);
	rct_srv_stop(&srv);
}

Test(route_memcached, alias_cached_only_when_the_lookup_says_so)
{
	struct rct_srv srv;

	rct_srv_start(&srv);
	snprintf(srv.answer, sizeof(srv.answer),
		 "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.22\r\n"
		 "Auth-Port: 7143\r\nAuth-User: bob@example.com\r\n\r\n");
	struct conf *c = rct_mc_conf(&srv, "");
	struct route r = rct_resolve_once(c, rct_query("bob"));
	cr_assert_str_eq(r.user, "bob@example.com");
	cr_assert_eq(rct_mc_find(&srv, "add "), -1,
		     "ip:port under \"bob\" would lose the canonical name: L1 only");

	pthread_mutex_lock(&srv.lock);
	snprintf(srv.answer, sizeof(srv.answer),
		 "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 10.0.0.22\r\n"
		 "Auth-Port: 7143\r\nAuth-User: bob@example.com\r\nAuth-Cache-Alias: TRUE\r\n\r\n");
	pthread_mutex_unlock(&srv.lock);
	rct_resolve_once(c, rct_query("bob"));
	cr_assert_geq(rct_mc_wait(&srv, "add alias:user=bob;ip=127.0.0.1 0 3600 15"), 0);
	cr_assert_geq(rct_mc_wait(&srv, "add route:proto=imap;user=bob@example.com 0 3600 14"), 0);

	/* The alias leads to the account's route. */
	r = rct_resolve_once(c, rct_query("bob"));
	cr_assert_eq(r.source, ROUTE_SRC_MEMCACHED);
	cr_assert_str_eq(r.user, "bob@example.com");
	cr_assert_str_eq(r.host, "10.0.0.22");
	cr_assert_eq(rct_lookups(&srv), 2);
	conf_unref(c);
	rct_srv_stop(&srv);
}

Test(route_memcached, memcached_down_logins_go_on)
{
	struct rct_srv srv;
	struct route_stats before, after;
	char cache[256];

	rct_srv_start(&srv);
	snprintf(cache, sizeof(cache), "memcached = [ \"127.0.0.1:%d\" ]; timeout = 0.2;",
		 rct_closed_port());
	struct conf *c = rct_conf(&srv, cache);
	route_stats(&before);
	uint64_t t0 = uv_hrtime();
	struct route r = rct_resolve_once(c, rct_query("alice@example.com"));
	cr_assert_eq(r.result, ROUTE_OK);
	cr_assert_eq(r.source, ROUTE_SRC_LOOKUP);
	cr_assert_lt(uv_hrtime() - t0, 2000000000ull);
	route_stats(&after);
	cr_assert_gt(after.mc_errors, before.mc_errors);
	conf_unref(c);
	rct_srv_stop(&srv);
}

Test(route_memcached, invalidate_forgets_l1_and_memcached)
{
	struct rct_srv srv;
	char cache[256];
	uv_loop_t loop;
	struct rct_result res = {0};

	rct_srv_start(&srv);
	snprintf(cache, sizeof(cache), "memcached = [ \"127.0.0.1:%d\" ];", srv.mc_port);
	struct conf *c = rct_conf(&srv, cache);
	struct route_query q = rct_query("alice@example.com");

	rct_loop_start(&loop);
	route_resolve(&loop, c, &q, rct_on_route, &res);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(res.r.source, ROUTE_SRC_LOOKUP);
	route_resolve(&loop, c, &q, rct_on_route, &res);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(res.r.source, ROUTE_SRC_L1);

	route_invalidate(&loop, c, &q, &res.r);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_geq(rct_mc_wait(&srv, "delete alias:user=alice@example.com;ip=127.0.0.1"), 0);
	cr_assert_geq(rct_mc_wait(&srv, "delete route:proto=imap;user=alice@example.com"), 0);
	cr_assert_eq(srv.nitems, 0);

	/* Neither L1 nor memcached has it: the lookup is asked again. */
	route_resolve(&loop, c, &q, rct_on_route, &res);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(res.r.source, ROUTE_SRC_LOOKUP);
	cr_assert_eq(rct_lookups(&srv), 2);

	/* A static route is never cached, so never invalidated. */
	struct route st = res.r;
	st.source = ROUTE_SRC_STATIC;
	int n = rct_mc_count(&srv);
	route_invalidate(&loop, c, &q, &st);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(rct_mc_count(&srv), n);
	rct_loop_finish(&loop);
	cr_assert_eq(res.calls, 3);
	conf_unref(c);
	rct_srv_stop(&srv);
}

Test(route_memcached, bypass_skips_the_caches)
{
	struct rct_srv srv;
	uv_loop_t loop;
	struct rct_result res = {0};
	char cache[256];

	rct_srv_start(&srv);
	snprintf(cache, sizeof(cache), "memcached = [ \"127.0.0.1:%d\" ];", srv.mc_port);
	struct conf *c = rct_conf(&srv, cache);
	struct route_query q = rct_query("alice@example.com");

	rct_loop_start(&loop);
	route_resolve(&loop, c, &q, rct_on_route, &res);
	uv_run(&loop, UV_RUN_DEFAULT);
	int gets = rct_mc_count_prefix(&srv, "get route:");
	cr_assert_eq(gets, 1);
	cr_assert_eq(rct_mc_wait_count(&srv, "add route:", 1), 1);
	cr_assert_eq(srv.nitems, 1);
	q.bypass_cache = true;
	route_resolve(&loop, c, &q, rct_on_route, &res);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(res.r.source, ROUTE_SRC_LOOKUP, "neither L1 nor memcached may answer");
	cr_assert_eq(rct_lookups(&srv), 2);
	cr_assert_eq(rct_mc_count_prefix(&srv, "get route:"), gets, "bypass must not read routes");
	/* The stale route was deleted before the lookup, the fresh one added after. */
	int del = rct_mc_wait(&srv, "delete route:proto=imap;user=alice@example.com");
	cr_assert_geq(del, 0);
	cr_assert_eq(rct_mc_wait_count(&srv, "add route:", 2), 2);
	pthread_mutex_lock(&srv.lock);
	int last_add = -1;
	for (int i = 0; i < srv.mc_nlog; i++)
		if (strncmp(srv.mc_log[i], "add route:", 10) == 0)
			last_add = i;
	pthread_mutex_unlock(&srv.lock);
	cr_assert_gt(last_add, del);
	cr_assert_eq(srv.nitems, 1);
	/* And L1 holds the fresh answer. */
	q.bypass_cache = false;
	route_resolve(&loop, c, &q, rct_on_route, &res);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(res.r.source, ROUTE_SRC_L1);
	rct_loop_finish(&loop);
	conf_unref(c);
	rct_srv_stop(&srv);
}


Test(route_memcached, zimbra_id_route_has_its_own_key)
{
	struct rct_srv srv;
	const char *id = "6a1f0c3e-6a2b-4c1d-9e8f-0a1b2c3d4e5f";

	rct_srv_start(&srv);
	struct conf *c = rct_mc_conf(&srv, "");
	struct route_query q = rct_query(id);
	q.protocol = "http";
	q.by_id = true;
	q.host = "mail.example.com";
	q.attempt = 0;
	struct route r = rct_resolve_once(c, q);
	cr_assert_eq(r.result, ROUTE_OK);
	cr_assert_eq(r.source, ROUTE_SRC_LOOKUP);
	int g = rct_mc_find(&srv, "get route:proto=http;id=6a1f0c3e-6a2b-4c1d-9e8f-0a1b2c3d4e5f");
	int a = rct_mc_wait(&srv, "add route:proto=http;id=6a1f0c3e-6a2b-4c1d-9e8f-0a1b2c3d4e5f 0 3600 14");
	cr_assert(g >= 0 && a > g, "log: get %d add %d", g, a);
	cr_assert_eq(rct_mc_find(&srv, "get alias:"), -1, "an id has no alias");
	cr_assert_eq(rct_mc_find(&srv, "get route:proto=http;user="), -1);

	r = rct_resolve_once(c, q);
	cr_assert_eq(r.source, ROUTE_SRC_MEMCACHED);
	cr_assert_str_eq(r.host, "10.0.0.21");
	cr_assert_eq(rct_lookups(&srv), 1);

	/* The same string as a user name is another key. */
	q.by_id = false;
	r = rct_resolve_once(c, q);
	cr_assert_eq(r.source, ROUTE_SRC_LOOKUP);
	cr_assert_eq(rct_lookups(&srv), 2);
	conf_unref(c);
	rct_srv_stop(&srv);
}

Test(route_memcached, zimbra_id_and_name_do_not_share_l1)
{
	struct rct_srv srv;

	rct_srv_start(&srv);
	struct conf *c = rct_conf(&srv, "l1_entries = 100; l1_ttl = 60;");
	uv_loop_t loop;
	struct rct_result a = { 0 }, b = { 0 }, d = { 0 };
	struct route_query q = rct_query("abcd");

	q.protocol = "http";
	q.by_id = true;
	rct_loop_start(&loop);
	route_resolve(&loop, c, &q, rct_on_route, &a);
	uv_run(&loop, UV_RUN_DEFAULT);
	route_resolve(&loop, c, &q, rct_on_route, &d);
	uv_run(&loop, UV_RUN_DEFAULT);
	q.by_id = false;
	route_resolve(&loop, c, &q, rct_on_route, &b);
	uv_run(&loop, UV_RUN_DEFAULT);
	rct_loop_finish(&loop);
	cr_assert_eq(a.r.source, ROUTE_SRC_LOOKUP);
	cr_assert_eq(d.r.source, ROUTE_SRC_L1, "the id is cached in L1");
	cr_assert_eq(b.r.source, ROUTE_SRC_LOOKUP, "a name is not served the id's route");
	cr_assert_eq(rct_lookups(&srv), 2);
	conf_unref(c);
	rct_srv_stop(&srv);
}
