/*
 * rcache.h - the route cache, private to route/: memcached keys and values
 * (rcache_key.c, pure), the in-process L1 (rcache_l1.c), the memcached
 * client (rcache_mc.c, blocking: thread pool only) and the process-wide
 * runtime that ties them to the configuration (rcache.c).
 */
#ifndef GATEHOUSE_RCACHE_H
#define GATEHOUSE_RCACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "route.h"

struct conf;
struct rcache_job;

/* ---- keys and values (rcache_key.c) ---- */

#define RCACHE_MAX_RAW_KEY 1024 /* the reference's key, before hashing */
#define RCACHE_MAX_WIRE_KEY 250 /* memcached's limit on a key */
#define RCACHE_MAX_PROTO 16
#define RCACHE_MAX_IP 64
#define RCACHE_MAX_HOST 255
#define RCACHE_MAX_ID 255
#define RCACHE_MAX_VALUE (ROUTE_MAX_USER + 8)

/*
 * A key as the reference spells it (raw, which also picks the memcached
 * server, as Carbonio does) and as it goes on the wire: raw, or the 64-char
 * lowercase hex SHA-256 of raw when hashing is on, or the 32-char hex MD5
 * of raw when raw is longer than memcached allows (Zimbra's nginx).
 */
struct rcache_key {
	char raw[RCACHE_MAX_RAW_KEY];
	size_t raw_len;
	char wire[RCACHE_MAX_WIRE_KEY + 1];
	size_t wire_len;
};

/*
 * Build "route:proto=<proto>;user=<user>", "alias:user=<login>;ip=<ip>" and
 * "route:proto=<proto>;id=<id>". Every part is checked first (names with
 * route_name_valid, proto lowercase alphanumeric); false means no key: the
 * input must never reach memcached.
 */
bool rcache_key_route_user(struct rcache_key *out, const char *proto, const char *user,
			   bool hashed);
bool rcache_key_alias(struct rcache_key *out, const char *login, const char *ip, bool hashed);
bool rcache_key_route_id(struct rcache_key *out, const char *proto, const char *id, bool hashed);

/*
 * The admin console's route of a zimbraId, "route:proto=<proto>;admin=1;id=<id>"
 * as Zimbra's nginx writes it for zmauth_admin upstreams: never the same
 * key as a user's. rcache_key_route_id_for picks one by admin.
 */
bool rcache_key_route_admin_id(struct rcache_key *out, const char *proto, const char *id,
				bool hashed);
bool rcache_key_route_id_for(struct rcache_key *out, const char *proto, const char *id,
			     bool admin, bool hashed);

/* Zimbra's web alias: "alias:user=<login>;vhost=<vhost>" (vhost a valid name). */
bool rcache_key_alias_web(struct rcache_key *out, const char *login, const char *vhost,
			  bool hashed);

/* A login is qualified when it has an '@' anywhere but as its last byte. */
bool rcache_login_qualified(const char *login);

/* proto is a web one ("http", "httpssl"). */
bool rcache_proto_web(const char *proto);

/*
 * The route of a name (a login or an account): "route:proto=<p>;user=<name>"
 * when name is qualified; an unqualified mail name carries the address the
 * client connected to, "route:proto=<p>;user=<name>@<proxy_ip>" (the
 * lookup qualified it by that address). An unqualified web name has no key
 * (false): the vhost qualified it and Zimbra has no route key with a vhost.
 */
bool rcache_key_route_name(struct rcache_key *out, const char *proto, const char *name,
			   const char *proxy_ip, bool hashed);

/*
 * The alias of login for a request on proto: mail
 * "alias:user=<login>;ip=<proxy_ip>", web "alias:user=<login>;vhost=<vhost>".
 * The two namespaces never meet. false when the qualifier is missing.
 */
bool rcache_key_alias_for(struct rcache_key *out, const char *proto, const char *login,
			  const char *proxy_ip, const char *vhost, bool hashed);

/*
 * Throttle counters (reference §2.2): "throttle:proto=<i|p>,ip=<ip>",
 * "throttle:user=<user>" (space, '%' and controls %-escaped) and gatehouse's
 * own "throttle:failed,ip=<ip>" (failed logins). ip must be an address as
 * printed (hex digits, '.', ':'); proto 'i' (IMAP) or 'p' (POP3).
 */
bool rcache_key_throttle_ip(struct rcache_key *out, char proto, const char *ip, bool hashed);
bool rcache_key_throttle_failed(struct rcache_key *out, const char *ip, bool hashed);
bool rcache_key_throttle_user(struct rcache_key *out, const char *user, bool hashed);

/* "ip:port", "[v6]:port" or "host:port" into out. Length, or -1 if it does not fit. */
int rcache_value_format(char *out, size_t cap, const char *host, uint16_t port);

/*
 * Parse a route value v[0..n): host (brackets of IPv6 removed) and port
 * 1..65535. false for anything else (garbage in the cache is a miss).
 */
bool rcache_value_parse(const char *v, size_t n, char *host_out, size_t host_cap,
			uint16_t *port_out);

/* ---- L1 (rcache_l1.c): thread-safe, sharded, bounded, LRU, TTL ---- */

struct rcache_l1;

/* A cache of at most max_entries (>= 1) routes. NULL when out of memory. */
struct rcache_l1 *rcache_l1_new(size_t max_entries);
void rcache_l1_free(struct rcache_l1 *l1);

/*
 * The route for (proto, login) if present and not expired at now_ms:
 * copied into out (result OK, source L1) and made most recently used.
 */
bool rcache_l1_get(struct rcache_l1 *l1, const char *proto, const char *login, uint64_t now_ms,
		   struct route *out);

/* Store r (host, port, user) for (proto, login) until now_ms + ttl_ms. */
void rcache_l1_put(struct rcache_l1 *l1, const char *proto, const char *login,
		   const struct route *r, uint64_t now_ms, uint64_t ttl_ms);

/* Forget (proto, login). true if it was there. */
bool rcache_l1_remove(struct rcache_l1 *l1, const char *proto, const char *login);

/*
 * Forget every entry whose login (the name as typed, or the zimbraId) or
 * whose route's user is name, ASCII case-insensitively, whatever its
 * protocol, addresses and Host. Returns how many were removed.
 */
size_t rcache_l1_purge(struct rcache_l1 *l1, const char *name);

/* Entries held, expired ones included until they are touched or evicted. */
size_t rcache_l1_count(struct rcache_l1 *l1);

/* ---- memcached (rcache_mc.c): blocking calls, thread pool only ---- */

struct rcache_mc;

enum rcache_mc_rc {
	RCACHE_MC_OK = 0,  /* get: found; add: stored; delete: deleted */
	RCACHE_MC_MISS,    /* get: not found (or unusable); add: exists; delete: not found */
	RCACHE_MC_ERROR,   /* no server, connection or protocol trouble, timeout */
};

/* A client for c's cache.memcached (none: NULL). No I/O happens here. */
struct rcache_mc *rcache_mc_new(const struct conf *c);
void rcache_mc_free(struct rcache_mc *mc);

enum rcache_mc_rc rcache_mc_get(struct rcache_mc *mc, const struct rcache_key *k, char *val_out,
				size_t cap, size_t *len_out);
enum rcache_mc_rc rcache_mc_add(struct rcache_mc *mc, const struct rcache_key *k,
				const char *val, size_t len, unsigned ttl_s);
enum rcache_mc_rc rcache_mc_delete(struct rcache_mc *mc, const struct rcache_key *k);

/*
 * Add one to the counter k, creating it as 1 with ttl_s when it does not
 * exist (memcached's `incr`, then `add`: the window is fixed from the first
 * count, as Zimbra's). *value_out: the count after this one. OK or ERROR.
 */
enum rcache_mc_rc rcache_mc_incr(struct rcache_mc *mc, const struct rcache_key *k, unsigned ttl_s,
				 uint64_t *value_out);

/*
 * The server (0 .. n - 1) for key under the modula distribution, as
 * libmemcached chooses it: its default (one-at-a-time) hash of the key,
 * modulo n. Pure; the unit tests hold it against libmemcached's own choice.
 */
int rcache_mc_server_of(const char *key, size_t len, int n);

/*
 * For the loop client (rcache_io.c), which speaks to the same servers as
 * the pool: the server for key (modula; servers held down after a failure
 * skipped for the next in order), or -1 (all held down, or the consistent
 * distribution, which only libmemcached computes).
 */
int rcache_mc_pick(struct rcache_mc *mc, const char *key, size_t len);
bool rcache_mc_modula(const struct rcache_mc *mc);
int rcache_mc_count(const struct rcache_mc *mc);
void rcache_mc_server(const struct rcache_mc *mc, int i, const char **host_out,
		      uint16_t *port_out, uint64_t *timeout_ms_out);
/* How server i did: back (logged once) or failed (counted, held down for
   cache.retry_interval, the outage logged once). */
void rcache_mc_outcome(struct rcache_mc *mc, int i, bool ok, const char *what, const char *err);

/* ---- the runtime (rcache.c) ---- */

/* The caches for one set of cache settings, shared by every loop. */
struct rcache {
	atomic_int refs;
	char *sig;                /* the settings it was built from */
	struct rcache_l1 *l1;     /* NULL: no L1 */
	struct rcache_mc *mc;     /* NULL: no memcached */
	unsigned ttl_s;           /* memcached TTL */
	uint64_t l1_ttl_ms;
	bool hash_keys;
	/* Queued memcached writes (rcache_submit), run in order. */
	pthread_mutex_t wlock;
	struct rcache_job *whead, *wtail;
	bool draining;            /* a drainer is queued or running */
};

/*
 * The process-wide caches for c's settings (a reference), built on first
 * use and rebuilt when a reload changes them. NULL when c turns every cache
 * off or memory ran out.
 */
struct rcache *rcache_acquire(const struct conf *c);
struct rcache *rcache_ref(struct rcache *rc);
void rcache_release(struct rcache *rc);

/* Drop the process-wide reference (the last loop has closed). */
void rcache_drop_current(void);

/* One memcached write. */
struct rcache_op {
	enum { RCACHE_OP_ADD, RCACHE_OP_DELETE } kind;
	struct rcache_key key;
	char value[RCACHE_MAX_VALUE];
	size_t value_len;
};

/*
 * Run ops[0..n) on the thread pool, fire-and-forget (errors are counted and
 * logged by rcache_mc), after every write submitted before, from any loop.
 * Returns 0, or -1 when out of memory (the writes are dropped).
 */
int rcache_submit(uv_loop_t *loop, struct rcache *rc, const struct rcache_op *ops, int n);

/* ---- counters (route_stats.c) ---- */

enum route__stat {
	ROUTE__L1_HIT, ROUTE__L1_MISS, ROUTE__MC_HIT, ROUTE__MC_MISS, ROUTE__MC_ERROR,
	ROUTE__LOOKUP, ROUTE__LOOKUP_FAIL, ROUTE__SHARED, ROUTE__INVALIDATE, ROUTE__NSTATS,
};

void route__count(enum route__stat which);
void route__lookup_latency(uint64_t ms);

#endif
