/*
 * route_int.h - what route.c (requests) and route_flight.c (shared
 * resolutions) share. Private to route/.
 */
#ifndef GATEHOUSE_ROUTE_INT_H
#define GATEHOUSE_ROUTE_INT_H

#include <pthread.h>
#include <stdbool.h>

#include "list.h"
#include "rcache.h"
#include "rcache_io.h"
#include "route.h"

struct route_flight;

/*
 * One caller's resolution. It lives on the caller's loop: its uv_async_t
 * carries the answer there (from this thread, or from the worker thread
 * whose flight it joined) and keeps the loop alive while it waits.
 */
struct route_req {
	/* async: answers from a flight running on another loop (another
	   thread). idle: answers known inside route_resolve (L1 hit, static
	   route, refusal) or from a flight on the request's own loop, delivered
	   on a later loop iteration without the eventfd write and read an async
	   costs. */
	union {
		uv_async_t async;
		uv_idle_t idle;
	} h;
	bool sync;                    /* h is the idle handle (answered on its own loop) */
	route_cb cb;
	void *arg;
	bool cancelled;               /* loop thread: no callback any more */
	bool closing;                 /* loop thread: async is closing */
	/* Under route__lock while the request waits on a flight. */
	struct route_flight *flight;  /* NULL once answered or cancelled */
	struct list wlink;            /* on flight->waiters while flight is set */
	bool ready;
	struct route route;
};

/* Guards the flight table, flights' waiter lists and waiting requests. */
extern pthread_mutex_t route__lock;

/*
 * Give req its answer; the callback runs from req's loop. With route__lock
 * held when req may be seen by another thread (a flight's waiter).
 */
void route__ready(struct route_req *req, const struct route *r);

/*
 * Set up req's handle for its answer: local (the answer is given on
 * loop's own thread: an idle handle, no eventfd) or from another thread
 * (an async). Before route__ready; negative libuv error on failure.
 */
int route__req_handle(struct route_req *req, uv_loop_t *loop, bool local);

/*
 * Make req wait for the resolution of q->login on q->protocol, joining the
 * one already running in any thread, or starting one on loop (the runner:
 * its memcached get and lookup run there). route__lock not held.
 */
void route__flight_join(uv_loop_t *loop, struct conf *c, struct rcache *rc,
			const struct route_query *q, struct route_req *req);

/* A cancelled req leaves its flight (route__lock held, req->flight set). */
void route__flight_leave(struct route_req *req);

/*
 * The name L1 files q's route under (malloc'ed, NULL on no memory): the
 * kind ("name" or "id"), the login, the proxy IP, the client IP and the
 * Host, i.e. everything of the lookup request the answer may depend on.
 * The flight key is built from it too. Spaces cannot appear in a valid
 * login or an address, and the Host comes last, so keys never collide.
 */
char *route__l1_key(const struct route_query *q);

/* Monotonic milliseconds, the same clock on every thread (L1 expiry). */
uint64_t route__now_ms(void);

/*
 * The cache runtime for c as seen from loop (a new reference, or NULL when
 * loop has no resolver state or every cache is off). Loop thread only.
 */
struct rcache *route__cache_for(uv_loop_t *loop, struct conf *c);

/*
 * The memcached client on loop for rc (NULL: rc's memcached is served by
 * the pool), and rc's writes sent through it or else through the pool
 * (rcache_submit). Loop thread only.
 */
struct rcache_io *route__io_for(uv_loop_t *loop, struct rcache *rc);
int route__submit(uv_loop_t *loop, struct rcache *rc, const struct rcache_op *ops, int n);

#endif
