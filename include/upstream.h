/*
 * upstream.h - which server of an upstream group (struct conf_upstream)
 * takes a new connection, and passive health: failures mark a server down
 * for a while, as nginx's max_fails / fail_timeout do.
 *
 * The state is per worker (no locks; nginx without a shared zone works the
 * same way) and per configuration snapshot: a reload starts every server
 * afresh. It holds no pointer into the snapshot but counts, so it is
 * checked against the group it is used with (nservers).
 *
 * Rules (nginx's):
 * - A server with max_fails failures within fail_timeout seconds is down
 *   for fail_timeout seconds; max_fails 0 never marks it down; a group of
 *   one server is never down (there is nothing else to try).
 * - round_robin: the next server in turn that is up and not tried yet.
 *   ip_hash: the client address's hash picks the first; if it is down or
 *   tried, the next ones in order. ("route" groups route by user: callers
 *   use upstream_pick only for their client-IP fallback.)
 * - When every server is down or tried, there is none (-1): the caller
 *   answers 502 / closes ("no live upstreams").
 * - A success clears a server's failure count.
 */
#ifndef GATEHOUSE_UPSTREAM_H
#define GATEHOUSE_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "conf.h"

/* Servers one connection may try, at most (a group may list more). */
#define UPSTREAM_MAX_TRIES 256

/* Servers a connection already tried (a bit each). */
struct upstream_tried {
	uint64_t bits[UPSTREAM_MAX_TRIES / 64];
	int n;
};

struct upstream_server_health {
	int fails;              /* failures counted since window_ms */
	uint64_t window_ms;     /* when the first of them happened */
	uint64_t down_until_ms; /* not picked before this (0: up) */
};

struct upstream_health {
	int nservers;
	unsigned next;          /* round robin: where the next turn starts */
	struct upstream_server_health srv[];
};

/* State for a group of nservers servers (all up), or NULL (no memory). */
struct upstream_health *upstream_health_new(int nservers);
void upstream_health_free(struct upstream_health *h);

/*
 * The server (index in u->servers) for a connection from client_ip that
 * has tried `tried` already, at now_ms; marks it tried. -1: none is left.
 * h may be NULL (no state: every server counts as up).
 */
int upstream_pick(struct upstream_health *h, const struct conf_upstream *u, const char *client_ip,
		  struct upstream_tried *tried, uint64_t now_ms);

/* Connecting to (or talking to) server i failed / worked. */
void upstream_failed(struct upstream_health *h, const struct conf_upstream *u, int i,
		     uint64_t now_ms);
void upstream_succeeded(struct upstream_health *h, int i);

/* Is server i down at now_ms (for logs and metrics)? */
bool upstream_down(const struct upstream_health *h, int i, uint64_t now_ms);

#endif
