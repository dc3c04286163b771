/*
 * route.h - the route resolver: which backend holds a user, and under which
 * name to log in there.
 *
 * Order: validate the name, static routes from the config, the in-process
 * L1 cache, memcached (shared with other proxies and Zimbra's tools), then
 * the lookup service. Concurrent resolutions of one login share one
 * memcached get and one lookup, across all worker threads (single-flight).
 * Resolution is asynchronous and never blocks the loop: memcached runs on
 * libuv's thread pool.
 */
#ifndef GATEHOUSE_ROUTE_H
#define GATEHOUSE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "conf.h"

struct lookup_response;

/* The name bounds are core's (conf.h), shared with the configuration. */
#define ROUTE_MAX_HOST CONF_MAX_HOST
#define ROUTE_MAX_USER CONF_MAX_USER

enum route_result {
	ROUTE_OK = 0,
	ROUTE_DENIED,   /* the user does not exist or may not log in here */
	ROUTE_TEMPFAIL, /* lookup service down, slow or answering nonsense */
	ROUTE_THROTTLED, /* over a login throttle limit (session_resolve): reason = the message */
};

enum route_source {
	ROUTE_SRC_NONE = 0,
	ROUTE_SRC_STATIC,
	ROUTE_SRC_LOOKUP,
	ROUTE_SRC_L1,        /* the in-process cache */
	ROUTE_SRC_MEMCACHED,
};

extern const char *const route_source_names[];

struct route {
	enum route_result result;
	enum route_source source;
	char host[ROUTE_MAX_HOST];  /* IP literal or hostname */
	uint16_t port;
	char user[ROUTE_MAX_USER];  /* canonical login for the backend */
	unsigned wait_s;            /* Auth-Wait on DENIED (0 = none) */
	bool cache_alias;
	char reason[160];           /* for logs and the audit line; never a secret */
};

/*
 * A login name may be used as a lookup argument or a cache key only if
 * conf_name_valid() accepts it: the configuration checks its static routes
 * with the same rule, from below route/ (core), so the rule lives there.
 */
static inline bool route_name_valid(const char *name, size_t len, size_t max)
{
	return conf_name_valid(name, len, max);
}

/*
 * Zimbra's client tags: an IMAP or POP3 (protocol "imap*", "pop3*") login
 * ending in "/tb", "/wm" or "/ni" is looked up and cached without it, and
 * logged in on the backend with it (the mailstore turns on client hacks).
 * The length of that suffix in login (3), or 0 when there is none.
 * route_resolve and route_invalidate strip it themselves.
 */
size_t route_login_suffix(const char *protocol, const char *login);

/*
 * The static route for login: exact (case-insensitive) match first, then
 * "@domain" on the part after the last '@', then "*". NULL if none.
 */
const struct conf_route *route_static_match(const struct conf *c, const char *login);

/*
 * Turn a parsed lookup answer into a route: 200 + "Auth-Status: OK" + server
 * + port gives ROUTE_OK (user = Auth-User, else the login as typed); OK with
 * no usable server/port, or a status other than 200, gives ROUTE_TEMPFAIL;
 * any other Auth-Status gives ROUTE_DENIED with its text as the reason.
 */
void route_from_lookup(const struct lookup_response *r, const char *login, struct route *out);

/* --- asynchronous resolution (route/route.c) --- */

struct route_req;
typedef void (*route_cb)(struct route_req *req, const struct route *r, void *arg);

struct route_query {
	const char *login;      /* as typed */
	const char *password;   /* only sent when lookup.send_password */
	const char *protocol;   /* "imap" ... */
	const char *client_ip;
	const char *proxy_ip;
	int attempt;
	/* A cached route just failed: forget the login in L1 and memcached,
	   ask the lookup service, and cache its answer. */
	bool bypass_cache;
	/* HTTP: login is a zimbraId (from a ZM_AUTH_TOKEN cookie): no static
	   route, asked with "Auth-Method: zimbraId", cached in memcached as
	   route:proto=<p>;id=<zimbraId>. */
	bool by_id;
	const char *host;       /* HTTP: the request's Host, sent as X-Proxy-Host (or NULL) */
	/* HTTP: an admin console request (an upstream group with admin = true,
	   nginx's zmauth_admin): asked with "Auth-Zimbra-Admin: True" (the
	   lookup then accepts admin accounts only and answers zimbraAdminPort),
	   filed in L1 and in the flight table apart from every non-admin
	   request, and in memcached as route:proto=<p>;admin=1;id=<zimbraId>
	   (Zimbra's key); an admin request by name is never put in memcached
	   (Zimbra has no admin name key). */
	bool admin;
};

/*
 * Resolve q on loop. cb runs exactly once on the loop thread (possibly before
 * route_resolve returns is NOT allowed: it is always deferred), unless the
 * request is cancelled first. The query strings are copied. arg belongs to
 * the request until cb runs (cb gets it back) or route_cancel returns it.
 * Returns the request handle, or NULL when out of memory (cb is then not
 * called and arg stays the caller's).
 */
struct route_req *route_resolve(uv_loop_t *loop, struct conf *c, const struct route_query *q,
				route_cb cb, void *arg);

/*
 * Cancel a pending request: cb will not be called, and the arg given to
 * route_resolve is returned, the caller's again to free (so nothing it owns
 * leaks with a cancelled request). The request's memory is freed later.
 * NULL when cb is running or has run (cancelling from inside cb is a no-op)
 * or req was cancelled already. Call it on the request's loop thread. A
 * lookup shared with other requests goes on for them; one nobody waits for
 * any more is abandoned.
 */
void *route_cancel(struct route_req *req);

/*
 * Set up / tear down the resolver's state for a loop, on the loop's own
 * thread: route_worker_init before the first route_resolve on loop (returns
 * 0, or -ENOMEM), route_worker_close once uv_run has returned (nothing of
 * the resolver is then pending on loop). When the last loop closes, the
 * process-wide caches (L1, memcached connections) are freed.
 */
int route_worker_init(uv_loop_t *loop);
void route_worker_close(uv_loop_t *loop);

/*
 * The backend of route r, resolved for q, refused the connection or
 * rejected the login: forget r in L1 (q's entry: this client, proxy
 * address and Host) and delete its memcached keys (the alias of q->login
 * by proxy address, or by Host for the web, the route by r->user and by
 * q->login) on the thread pool. Static routes are left alone. Call on
 * loop's thread (route_worker_init done).
 */
void route_invalidate(uv_loop_t *loop, struct conf *c, const struct route_query *q,
		      const struct route *r);

/* --- purge (route/route_purge.c, route/rcache.c) --- */

enum route_purge_result { ROUTE_PURGE_DELETED, ROUTE_PURGE_NOT_FOUND, ROUTE_PURGE_ERROR };

/* One key of route_purge_memcached: the server ("host:port"), the key as
   Zimbra spells it and as sent (hashed when cache.hash_keys), the result. */
typedef void (*route_purge_cb)(void *arg, const char *server, const char *key,
			       const char *wire, enum route_purge_result r);

/*
 * Delete name's routes and aliases on every memcached server of c, in
 * every form gatehouse writes and zmproxypurge deletes: for each protocol
 * (imap, imapssl, pop3, pop3ssl, http, httpssl) route:proto=<p>;user=<name>,
 * and for the unqualified name (name itself, or the local part of a
 * qualified one) route:proto=<p>;user=<unq>@<ip> for each of ips[0..nips)
 * (the proxy addresses); route:proto=<http|httpssl>;id=<name> and
 * route:proto=<http|httpssl>;admin=1;id=<name> for an unqualified name (it
 * may be a zimbraId); alias:user=<name|unq>;ip=<ip>
 * and alias:user=<name|unq>;vhost=<h> for each vhost name (not wildcards)
 * and http.server_name. Blocking (command line only). cb sees each key.
 * The same for name in lower case when it differs.
 * Returns the number of failed deletes, or -1 when name is not a valid
 * name or memory ran out.
 */
int route_purge_memcached(const struct conf *c, const char *name, const char *const *ips,
			  int nips, route_purge_cb cb, void *arg);

/*
 * Forget every L1 entry of this process whose login or route user is name
 * (ASCII case-insensitively), for every protocol, address and Host.
 * Any thread. Returns how many entries were removed.
 */
size_t route_purge_l1(const char *name);

/* --- counters (route/route_stats.c), process-wide --- */

/* Upper bounds (ms) of the lookup latency buckets; one more bucket for slower. */
#define ROUTE_STATS_BUCKETS 8
extern const unsigned route_stats_bucket_ms[ROUTE_STATS_BUCKETS];

struct route_stats {
	uint64_t l1_hits, l1_misses;
	uint64_t mc_hits, mc_misses;             /* per resolution that asked memcached */
	uint64_t mc_errors;                      /* failed memcached operations */
	uint64_t lookups, lookup_failures;       /* lookups started; no usable answer */
	uint64_t lookup_ms_sum, lookup_ms_count; /* latency of answered lookups */
	uint64_t lookup_ms_buckets[ROUTE_STATS_BUCKETS + 1]; /* <= bucket_ms[i], then more */
	uint64_t shared;                         /* resolutions that joined another's flight */
	uint64_t invalidations;
};

/* A snapshot of the counters (each read atomically, not all at one instant). */
void route_stats(struct route_stats *out);

#endif
