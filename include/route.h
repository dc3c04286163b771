/*
 * route.h - the route resolver: which backend holds a user, and under which
 * name to log in there.
 *
 * Order: validate the name, static routes from the config, then the lookup
 * service. The cache issue adds the in-process L1 and memcached in between.
 * Resolution is asynchronous and never blocks the loop.
 */
#ifndef GATEHOUSE_ROUTE_H
#define GATEHOUSE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct conf;
struct conf_route;
struct lookup_response;

#define ROUTE_MAX_HOST 256
#define ROUTE_MAX_USER 512

enum route_result {
	ROUTE_OK = 0,
	ROUTE_DENIED,   /* the user does not exist or may not log in here */
	ROUTE_TEMPFAIL, /* lookup service down, slow or answering nonsense */
};

enum route_source {
	ROUTE_SRC_NONE = 0,
	ROUTE_SRC_STATIC,
	ROUTE_SRC_LOOKUP,
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
 * A login name may be used (as a lookup argument or a cache key) only if it
 * is 1..max bytes with no control characters (< 0x20, 0x7f), no space and no
 * NUL. (CVE-2022-27924 poisoned Zimbra's memcached through names.)
 */
bool route_name_valid(const char *name, size_t len, size_t max);

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
};

/*
 * Resolve q on loop. cb runs exactly once on the loop thread (possibly before
 * route_resolve returns is NOT allowed: it is always deferred), unless the
 * request is cancelled first. The query strings are copied. Returns the
 * request handle, or NULL when out of memory (cb is then not called).
 */
struct route_req *route_resolve(uv_loop_t *loop, struct conf *c, const struct route_query *q,
				route_cb cb, void *arg);

/* Cancel a pending request: cb will not be called; memory is freed later. */
void route_cancel(struct route_req *req);

#endif
