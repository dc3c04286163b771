/*
 * rcache_mc.c - the memcached client of the route cache, over libmemcached.
 *
 * Every call here blocks (bounded by cache.timeout) and so runs only on
 * libuv's thread pool, never on a loop thread. Connections come from
 * libmemcached pools, so the thread pool's threads share them.
 *
 * Server choice, as Zimbra's nginx does it (so gatehouse and Zimbra's tools
 * find each other's keys): the one-at-a-time hash (libmemcached's
 * MEMCACHED_HASH_DEFAULT) of the raw key, modulo the number of servers in
 * config order; a server that failed is skipped for cache.retry_interval in
 * favour of the next one in order. libmemcached's own modula distribution
 * does not skip dead servers, so in that mode each server has a pool of its
 * own and the choice is made here. "consistent" hands all servers to
 * libmemcached's ketama, which ejects and retries dead ones itself.
 *
 * An outage is logged once per server (warning) and its end once (info).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmemcached/memcached.h>
#include <libmemcached/util.h>

#include "conf.h"
#include "log.h"
#include "rcache.h"

/* Connections per pool: more than libuv's thread pool runs at once. */
#define MC_POOL_MAX 32
/* "host:port" or "[v6]:port" of a server, for logs. */
#define MC_NAME_MAX 280

struct mc_server {
	char name[MC_NAME_MAX];
	char host[MC_NAME_MAX];
	uint16_t port;
	memcached_st *tmpl;                  /* modula: this server alone */
	memcached_pool_st *pool;
	atomic_uint_fast64_t down_until_ms;  /* modula: skipped until then */
	atomic_bool outage;                  /* reported down, not yet back */
};

struct rcache_mc {
	int n;
	bool ketama;
	uint64_t timeout_ms;
	struct timespec wait;                /* for a free pooled connection */
	uint64_t retry_ms;
	memcached_st *tmpl;                  /* consistent: every server */
	memcached_pool_st *pool;
	struct mc_server srv[CONF_MAX_MEMCACHED];
};

static uint64_t mc__now_ms(void)
{
	return uv_hrtime() / 1000000u;
}

static memcached_st *mc__template(const struct conf *c, int first, int count, bool ketama)
{
	memcached_st *m = memcached_create(NULL);
	uint64_t ms = (uint64_t)(c->cache.timeout * 1000.0 + 0.5);

	if (m == NULL)
		return NULL;
	if (ms == 0)
		ms = 1;
	for (int i = first; i < first + count; i++) {
		if (memcached_server_add(m, c->cache.servers[i].host, c->cache.servers[i].port) !=
		    MEMCACHED_SUCCESS) {
			memcached_free(m);
			return NULL;
		}
	}
	/* Non-blocking sockets, or libmemcached ignores the connect timeout. */
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms);
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms);
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_SND_TIMEOUT, ms * 1000);
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, ms * 1000);
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_HASH, MEMCACHED_HASH_DEFAULT);
	if (ketama) {
		memcached_behavior_set(m, MEMCACHED_BEHAVIOR_DISTRIBUTION,
				       MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA);
		memcached_behavior_set(m, MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, 1);
		memcached_behavior_set(m, MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 1);
		memcached_behavior_set(m, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT,
				       (uint64_t)c->cache.retry_interval);
		memcached_behavior_set(m, MEMCACHED_BEHAVIOR_DEAD_TIMEOUT,
				       (uint64_t)c->cache.retry_interval);
	} else {
		/* Our own hold-down decides when a failed server is tried again. */
		memcached_behavior_set(m, MEMCACHED_BEHAVIOR_DISTRIBUTION, MEMCACHED_DISTRIBUTION_MODULA);
		memcached_behavior_set(m, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
	}
	return m;
}

static void mc__name(const struct conf_memcached *s, char *out, size_t cap)
{
	if (strchr(s->host, ':'))
		snprintf(out, cap, "[%s]:%u", s->host, (unsigned)s->port);
	else
		snprintf(out, cap, "%s:%u", s->host, (unsigned)s->port);
}

struct rcache_mc *rcache_mc_new(const struct conf *c)
{
	struct rcache_mc *mc;

	if (c->cache.nservers == 0 || (mc = calloc(1, sizeof(*mc))) == NULL)
		return NULL;
	mc->n = c->cache.nservers;
	mc->ketama = c->cache.distribution == CONF_CACHE_CONSISTENT;
	mc->retry_ms = (uint64_t)c->cache.retry_interval * 1000u;
	uint64_t wait_ns = (uint64_t)(c->cache.timeout * 1e9);
	mc->wait.tv_sec = (time_t)(wait_ns / 1000000000u);
	mc->wait.tv_nsec = (long)(wait_ns % 1000000000u);
	mc->timeout_ms = (uint64_t)(c->cache.timeout * 1000.0 + 0.5);
	if (mc->timeout_ms == 0)
		mc->timeout_ms = 1;
	for (int i = 0; i < mc->n; i++) {
		mc__name(&c->cache.servers[i], mc->srv[i].name, sizeof(mc->srv[i].name));
		snprintf(mc->srv[i].host, sizeof(mc->srv[i].host), "%s", c->cache.servers[i].host);
		mc->srv[i].port = c->cache.servers[i].port;
		atomic_init(&mc->srv[i].down_until_ms, 0);
		atomic_init(&mc->srv[i].outage, false);
	}
	if (mc->ketama) {
		mc->tmpl = mc__template(c, 0, mc->n, true);
		mc->pool = mc->tmpl ? memcached_pool_create(mc->tmpl, 1, MC_POOL_MAX) : NULL;
		if (mc->pool == NULL)
			goto fail;
	} else {
		for (int i = 0; i < mc->n; i++) {
			struct mc_server *s = &mc->srv[i];
			s->tmpl = mc__template(c, i, 1, false);
			s->pool = s->tmpl ? memcached_pool_create(s->tmpl, 1, MC_POOL_MAX) : NULL;
			if (s->pool == NULL)
				goto fail;
		}
	}
	return mc;

fail:
	log_write(LOG_ERROR, "memcached: cannot set up the client (out of memory?): "
		  "routes are not shared through memcached");
	rcache_mc_free(mc);
	return NULL;
}

void rcache_mc_free(struct rcache_mc *mc)
{
	if (mc == NULL)
		return;
	if (mc->pool)
		memcached_pool_destroy(mc->pool);
	if (mc->tmpl)
		memcached_free(mc->tmpl);
	for (int i = 0; i < mc->n; i++) {
		if (mc->srv[i].pool)
			memcached_pool_destroy(mc->srv[i].pool);
		if (mc->srv[i].tmpl)
			memcached_free(mc->srv[i].tmpl);
	}
	free(mc);
}

/* Answers that say the server works, whatever they say about the key. */
static bool mc__server_ok(memcached_return_t rc)
{
	switch (rc) {
	case MEMCACHED_SUCCESS:
	case MEMCACHED_NOTFOUND:
	case MEMCACHED_NOTSTORED:
	case MEMCACHED_DATA_EXISTS:
	case MEMCACHED_STORED:
	case MEMCACHED_DELETED:
	case MEMCACHED_END:
	case MEMCACHED_BUFFERED:
		return true;
	default:
		return false;
	}
}

/* Errors of ours (a bad key or argument), not of the server. */
static bool mc__our_fault(memcached_return_t rc)
{
	switch (rc) {
	case MEMCACHED_BAD_KEY_PROVIDED:
	case MEMCACHED_CLIENT_ERROR:
	case MEMCACHED_KEY_TOO_BIG:
	case MEMCACHED_E2BIG:
	case MEMCACHED_INVALID_ARGUMENTS:
	case MEMCACHED_MEMORY_ALLOCATION_FAILURE:
	case MEMCACHED_NOT_SUPPORTED:
		return true;
	default:
		return false;
	}
}

int rcache_mc_server_of(const char *key, size_t len, int n)
{
	uint32_t h = memcached_generate_hash_value(key, len, MEMCACHED_HASH_DEFAULT);

	return n > 1 ? (int)(h % (uint32_t)n) : 0;
}

int rcache_mc_pick(struct rcache_mc *mc, const char *key, size_t len)
{
	uint64_t now = mc__now_ms();
	int first = rcache_mc_server_of(key, len, mc->n);

	if (mc->ketama)
		return -1;
	for (int j = 0; j < mc->n; j++) {
		struct mc_server *s = &mc->srv[(first + j) % mc->n];
		if (atomic_load(&s->down_until_ms) <= now)
			return (first + j) % mc->n;
	}
	return -1;
}

int rcache_mc_count(const struct rcache_mc *mc)
{
	return mc->n;
}

bool rcache_mc_modula(const struct rcache_mc *mc)
{
	return !mc->ketama;
}

void rcache_mc_server(const struct rcache_mc *mc, int i, const char **host_out,
		      uint16_t *port_out, uint64_t *timeout_ms_out)
{
	*host_out = mc->srv[i].host;
	*port_out = mc->srv[i].port;
	*timeout_ms_out = mc->timeout_ms;
}

void rcache_mc_outcome(struct rcache_mc *mc, int i, bool ok, const char *what, const char *err)
{
	struct mc_server *s = &mc->srv[i];

	if (ok) {
		/* A load first: no write to a line every loop reads. */
		if (atomic_load(&s->outage) && atomic_exchange(&s->outage, false))
			log_write(LOG_INFO, "memcached %s: reachable again, caching routes there", s->name);
		return;
	}
	route__count(ROUTE__MC_ERROR);
	if (!mc->ketama)
		atomic_store(&s->down_until_ms, mc__now_ms() + mc->retry_ms);
	if (!atomic_exchange(&s->outage, true))
		log_write(LOG_WARN, "memcached %s: %s failed: %s; logins go on through the "
			  "lookup service, this server is retried every %llu s", s->name, what, err,
			  (unsigned long long)(mc->retry_ms / 1000u));
}

/* One operation: where it ran, on what connection. */
struct mc_call {
	struct rcache_mc *mc;
	struct mc_server *srv;     /* NULL: not known (ketama lookup failed) */
	memcached_pool_st *pool;
	memcached_st *m;
};

/* Pick the server for k (modula) and take a pooled connection. */
static bool mc__begin(struct rcache_mc *mc, const struct rcache_key *k, struct mc_call *call)
{
	memcached_return_t rc;

	call->mc = mc;
	call->srv = NULL;
	if (mc->ketama) {
		call->pool = mc->pool;
	} else {
		int i = rcache_mc_pick(mc, k->raw, k->raw_len);
		if (i < 0)
			return false;  /* all held down: no I/O, a plain miss */
		call->srv = &mc->srv[i];
		call->pool = call->srv->pool;
	}
	call->m = memcached_pool_fetch(call->pool, &mc->wait, &rc);
	if (call->m == NULL)
		return false;
	if (mc->ketama) {
		const memcached_instance_st *in = memcached_server_by_key(call->m, k->raw, k->raw_len, &rc);
		char name[MC_NAME_MAX];
		if (in != NULL) {
			if (strchr(memcached_server_name(in), ':'))
				snprintf(name, sizeof(name), "[%s]:%u", memcached_server_name(in),
					 (unsigned)memcached_server_port(in));
			else
				snprintf(name, sizeof(name), "%s:%u", memcached_server_name(in),
					 (unsigned)memcached_server_port(in));
			for (int i = 0; i < mc->n; i++)
				if (strcmp(mc->srv[i].name, name) == 0)
					call->srv = &mc->srv[i];
		}
	}
	return true;
}

/* Give the connection back and note how the server did. */
static enum rcache_mc_rc mc__end(struct mc_call *call, memcached_return_t rc,
				 enum rcache_mc_rc ok_rc, const char *what)
{
	struct mc_server *s = call->srv;
	const char *err = memcached_strerror(call->m, rc);

	memcached_pool_release(call->pool, call->m);
	if (mc__server_ok(rc)) {
		if (s != NULL && atomic_exchange(&s->outage, false))
			log_write(LOG_INFO, "memcached %s: reachable again, caching routes there", s->name);
		return ok_rc;
	}
	route__count(ROUTE__MC_ERROR);
	if (mc__our_fault(rc)) {
		log_write(LOG_WARN, "memcached %s: %s refused: %s", s ? s->name : "-", what, err);
		return RCACHE_MC_ERROR;
	}
	if (s != NULL) {
		if (!call->mc->ketama)
			atomic_store(&s->down_until_ms, mc__now_ms() + call->mc->retry_ms);
		if (!atomic_exchange(&s->outage, true))
			log_write(LOG_WARN, "memcached %s: %s failed: %s; logins go on through the "
				  "lookup service, this server is retried every %llu s", s->name, what,
				  err, (unsigned long long)(call->mc->retry_ms / 1000u));
	}
	return RCACHE_MC_ERROR;
}

enum rcache_mc_rc rcache_mc_get(struct rcache_mc *mc, const struct rcache_key *k, char *val_out,
				size_t cap, size_t *len_out)
{
	struct mc_call call;
	memcached_return_t rc;
	size_t vlen = 0;
	uint32_t flags = 0;

	*len_out = 0;
	if (!mc__begin(mc, k, &call)) {
		route__count(ROUTE__MC_ERROR);
		return RCACHE_MC_ERROR;
	}
	char *v = memcached_get_by_key(call.m, k->raw, k->raw_len, k->wire, k->wire_len, &vlen,
				       &flags, &rc);
	enum rcache_mc_rc r = mc__end(&call, rc, v != NULL ? RCACHE_MC_OK : RCACHE_MC_MISS, "get");
	if (v != NULL && r == RCACHE_MC_OK) {
		if (vlen < cap) {
			memcpy(val_out, v, vlen);
			val_out[vlen] = '\0';
			*len_out = vlen;
		} else {
			r = RCACHE_MC_MISS; /* nothing we wrote: ignore it */
		}
	}
	free(v);
	return r;
}

enum rcache_mc_rc rcache_mc_add(struct rcache_mc *mc, const struct rcache_key *k,
				const char *val, size_t len, unsigned ttl_s)
{
	struct mc_call call;

	if (!mc__begin(mc, k, &call)) {
		route__count(ROUTE__MC_ERROR);
		return RCACHE_MC_ERROR;
	}
	memcached_return_t rc = memcached_add_by_key(call.m, k->raw, k->raw_len, k->wire, k->wire_len,
						     val, len, (time_t)ttl_s, 0);
	return mc__end(&call, rc, rc == MEMCACHED_SUCCESS ? RCACHE_MC_OK : RCACHE_MC_MISS, "add");
}

enum rcache_mc_rc rcache_mc_delete(struct rcache_mc *mc, const struct rcache_key *k)
{
	struct mc_call call;

	if (!mc__begin(mc, k, &call)) {
		route__count(ROUTE__MC_ERROR);
		return RCACHE_MC_ERROR;
	}
	memcached_return_t rc = memcached_delete_by_key(call.m, k->raw, k->raw_len, k->wire,
							k->wire_len, 0);
	return mc__end(&call, rc, rc == MEMCACHED_SUCCESS ? RCACHE_MC_OK : RCACHE_MC_MISS, "delete");
}

enum rcache_mc_rc rcache_mc_incr(struct rcache_mc *mc, const struct rcache_key *k, unsigned ttl_s,
				 uint64_t *value_out)
{
	struct mc_call call;
	memcached_return_t rc = MEMCACHED_SUCCESS;
	uint64_t v = 0;

	*value_out = 0;
	if (!mc__begin(mc, k, &call)) {
		route__count(ROUTE__MC_ERROR);
		return RCACHE_MC_ERROR;
	}
	/* Two rounds: another proxy may add the key between our incr and add. */
	for (int round = 0; round < 2; round++) {
		rc = memcached_increment_by_key(call.m, k->raw, k->raw_len, k->wire, k->wire_len, 1, &v);
		if (rc != MEMCACHED_NOTFOUND)
			break;
		rc = memcached_add_by_key(call.m, k->raw, k->raw_len, k->wire, k->wire_len, "1", 1,
					  (time_t)ttl_s, 0);
		if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_STORED) {
			v = 1;
			break;
		}
		if (rc != MEMCACHED_NOTSTORED && rc != MEMCACHED_DATA_EXISTS)
			break;
	}
	bool counted = rc == MEMCACHED_SUCCESS || rc == MEMCACHED_STORED;
	enum rcache_mc_rc r = mc__end(&call, rc, counted ? RCACHE_MC_OK : RCACHE_MC_ERROR, "incr");
	if (r == RCACHE_MC_OK)
		*value_out = v;
	return r;
}
