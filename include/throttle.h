/*
 * throttle.h - login throttling as Zimbra's proxy does it (reference §2.7),
 * with the counters in memcached so every proxy behind a load balancer
 * shares them, plus a limit on failed logins per client address.
 *
 * Counts live in memcached when cache.memcached is configured (keys
 * "throttle:proto=<i|p>,ip=<ip>", "throttle:user=<user>",
 * "throttle:failed,ip=<ip>", each with a window fixed at its first count),
 * else in a bounded table in this process. A memcached that fails or times
 * out allows the login (fail open): throttling must never lock everyone out
 * because the cache is down.
 *
 * Every memcached call runs on libuv's thread pool; callbacks come back on
 * the loop thread.
 */
#ifndef GATEHOUSE_THROTTLE_H
#define GATEHOUSE_THROTTLE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

struct conf;

enum throttle_step {
	/* A mail connection begins (before the greeting, after TLS): count it
	   against the per-IP limit and check the failed-login count. */
	THROTTLE_CONNECT = 0,
	/* A login is about to be looked up: check (without counting) the
	   user's successful logins and the address's failed ones. */
	THROTTLE_LOGIN,
	/* The backend accepted the login: count it for the user. */
	THROTTLE_SUCCESS,
};

enum throttle_verdict {
	THROTTLE_ALLOW = 0,
	THROTTLE_DENY_IP,    /* too many connections or failed logins from the address */
	THROTTLE_DENY_USER,  /* too many logins of the user */
};

struct throttle_query {
	enum throttle_step step;
	char proto;          /* 'i' IMAP, 'p' POP3 (Zimbra's key letters) */
	const char *ip;      /* the client's address (after any PROXY header) */
	const char *user;    /* LOGIN: the login as typed; SUCCESS: the canonical user */
};

struct throttle_result {
	enum throttle_verdict verdict;
	uint64_t count;      /* the count that decided (0 when allowed without one) */
	int limit;           /* the limit it was held against */
	bool failed_logins;  /* DENY_IP because of failed logins, not connections */
};

struct throttle_req;
typedef void (*throttle_cb)(const struct throttle_result *res, void *arg);

/* Is ip in throttle.whitelist? (Never IP- or failed-throttled.) */
bool throttle_whitelisted(const struct conf *c, const char *ip);

/*
 * Does q need a check under c's settings? false when every limit it
 * involves is off or the address is whitelisted: the caller goes on at once.
 */
bool throttle_needed(const struct conf *c, const struct throttle_query *q);

/*
 * Check (and for CONNECT and SUCCESS, count) q on the thread pool; cb runs
 * once on loop's thread, never before throttle_check returns, unless
 * cancelled first. Strings are copied. arg belongs to the request until cb
 * runs (cb gets it back) or throttle_cancel returns it. NULL when out of
 * memory: the caller allows the login (fail open), cb is not called and
 * arg stays the caller's.
 */
struct throttle_req *throttle_check(uv_loop_t *loop, struct conf *c, const struct throttle_query *q,
				    throttle_cb cb, void *arg);

/*
 * Cancel a check whose cb has not run: cb never runs, and the arg given to
 * throttle_check is returned, the caller's again to free or wipe (the one
 * moment of handing back, so nothing it owns can leak with a cancelled
 * check). The request's own memory goes when the pool is done with it.
 * NULL for a NULL req or one already cancelled. Loop thread only; not after
 * cb has run (req is gone then).
 */
void *throttle_cancel(struct throttle_req *req);

/*
 * Count one failed login from ip (throttle.failed_limit), fire and forget.
 * Nothing happens when the limit is off or ip is whitelisted.
 */
void throttle_failed(uv_loop_t *loop, struct conf *c, const char *ip);

/* The in-process counters (no memcached): forget them all. For tests. */
void throttle_local_reset(void);

#endif
