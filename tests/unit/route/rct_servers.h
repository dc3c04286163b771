/*
 * rct_servers.h - helpers of the route cache tests (test_route_flight.c,
 * test_route_memcached.c): a fake lookup service and a fake memcached on a
 * thread of their own, and resolver shortcuts. Names carry the rct_ prefix:
 * gh-unit links every test file into one binary.
 */
#ifndef GATEHOUSE_TEST_RCT_SERVERS_H
#define GATEHOUSE_TEST_RCT_SERVERS_H

#include <pthread.h>
#include <stdint.h>

#include <uv.h>

#include "conf.h"
#include "route.h"

#define RCT_MAX_LOG 64
#define RCT_MAX_ITEMS 32

struct rct_srv {
	uv_loop_t loop;
	uv_thread_t thread;
	uv_async_t stop;
	uv_tcp_t lookup, mc;
	int lookup_port, mc_port;
	uv_sem_t ready;
	pthread_mutex_t lock;
	/* Under lock. */
	int lookups;
	char answer[512];
	uint64_t delay_ms;
	char mc_log[RCT_MAX_LOG][320];
	int mc_nlog;
	struct { char key[300]; char val[300]; } items[RCT_MAX_ITEMS];
	int nitems;
};

/* Start / stop the servers' thread. answer defaults to alice on 10.0.0.21:7143. */
void rct_srv_start(struct rct_srv *s);
void rct_srv_stop(struct rct_srv *s);

/* Lookup requests received so far. */
int rct_lookups(struct rct_srv *s);
/* Run loop without blocking until the lookup service has a request. */
void rct_wait_lookup(struct rct_srv *s, uv_loop_t *loop);
/* Index of the first memcached command starting with prefix, or -1. */
int rct_mc_find(struct rct_srv *s, const char *prefix);
/* The same, waiting up to 2 s for it (writes are noreply: nothing says
   when the server has them). */
int rct_mc_wait(struct rct_srv *s, const char *prefix);
int rct_mc_wait_count(struct rct_srv *s, const char *prefix, int n);
int rct_mc_count(struct rct_srv *s);
int rct_mc_count_prefix(struct rct_srv *s, const char *prefix);

/* A config from text; one with s as the lookup service and `cache = { <cache> }`. */
struct conf *rct_load(const char *text);
struct conf *rct_conf(struct rct_srv *s, const char *cache);

struct rct_result {
	int calls;
	struct route r;
};

void rct_on_route(struct route_req *req, const struct route *r, void *arg);
struct route_query rct_query(const char *login);
/* A loop with the resolver set up / run to the end and closed with no live handle. */
void rct_loop_start(uv_loop_t *loop);
void rct_loop_finish(uv_loop_t *loop);
/* Resolve once on a fresh loop, run it to the end. */
struct route rct_resolve_once(struct conf *c, struct route_query q);
/* A port nothing listens on. */
int rct_closed_port(void);

#endif
