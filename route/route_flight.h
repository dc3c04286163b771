/*
 * route_flight.h - a flight (route_flight.c) and its memcached step
 * (route_flight_mc.c). Private to route/.
 */
#ifndef GATEHOUSE_ROUTE_FLIGHT_H
#define GATEHOUSE_ROUTE_FLIGHT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "list.h"
#include "rcache.h"
#include "rcache_io.h"
#include "route.h"

struct lookup_call;

enum flight_step { FL_START, FL_MEMCACHED, FL_LOOKUP, FL_DONE };

struct route_flight {
	uv_async_t wake;              /* runner loop: notice being orphaned (other threads) */
	uv_idle_t start;              /* runner loop: start, without an eventfd wake-up */
	int handles;                  /* wake and start: freed when both have closed */
	uv_work_t work;               /* the memcached get */
	uv_loop_t *loop;
	struct conf *conf;
	struct rcache *rc;            /* may be NULL: no cache at all */
	/* Under route__lock. */
	char *tkey;                   /* table key; NULL: not shared */
	uint64_t thash;
	struct list tlink;            /* on its flight_table bucket while in_table */
	bool in_table, orphaned, done;
	struct list waiters;          /* of route_req.wlink */
	int nwaiters;
	/* Runner thread only (and the thread pool during the get). */
	enum flight_step step;
	bool bypass;
	struct lookup_call *call;
	struct rcache_io *io;         /* the gets run on this loop's client */
	int io_pending;               /* its first gets not yet answered */
	uint64_t lookup_t0;
	bool mc_hit, alias_found;
	char alias_account[ROUTE_MAX_USER];
	struct route route;
	char *login, *protocol, *client_ip, *proxy_ip, *password;
	char *host;                   /* HTTP: X-Proxy-Host, or NULL */
	/* login is a zimbraId; l1key is what L1 files the route under. */
	bool by_id;
	bool admin;                   /* an admin console request (route_query.admin) */
	char *l1key;
	int attempt;
};

/* The keys of f's login: its alias, and the route of name as f keys it. */
bool route__flight_alias_key(struct rcache_key *k, const struct route_flight *f);
bool route__flight_route_key(struct rcache_key *k, const struct route_flight *f,
			     const char *name);

/* Start f's memcached step (false: no memcached, or it could not be
   queued: go to the lookup). Runner loop only. */
bool route__flight_mc_start(struct route_flight *f);
/* The step is over (f->mc_hit, f->route): on to the answer or the lookup. */
void route__flight_mc_done(struct route_flight *f);

#endif
