/*
 * route_flight.c - single-flight resolution: every concurrent request for
 * one login, on any worker thread, waits on one "flight" that does one
 * memcached get and at most one lookup.
 *
 * A flight runs on the loop of the request that started it (the runner):
 * its memcached gets run on that loop's own memcached client (or, for the
 * consistent distribution, on that loop's thread pool: route_flight_mc.c),
 * its lookup uses that loop. The flight table and each flight's list of waiters are guarded by
 * route__lock; the answer reaches each waiter through the waiter's own
 * handle, so its callback runs on its own loop: a uv_idle_t for a waiter on
 * the runner's loop (no eventfd write and read), a uv_async_t for one on
 * another loop. The flight itself starts from a uv_idle_t. A flight whose waiters
 * have all cancelled is abandoned (its lookup aborted), so a shutdown does
 * not wait for lookups nobody needs.
 *
 * Flow (the reference, section 2.3): get the login's alias (mail:
 * alias:user=<login>;ip=<proxy ip>, web: alias:user=<login>;vhost=<Host>);
 * on a hit get the route by that account, else by the login (an
 * unqualified mail login as <login>@<proxy ip>); on a miss ask the lookup
 * service; then fill L1, and add the alias (if Auth-Cache-Alias) and the
 * route to memcached, fire-and-forget. Flights are shared only between
 * identical lookup requests (the L1 key, the protocol and the attempt). A flight that bypasses the
 * caches (a cached route just failed) deletes the login's entries first,
 * so its own adds cannot be undone by a late delete.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "gh.h"
#include "log.h"
#include "lookup_client.h"
#include "route_flight.h"
#include "route_int.h"
#include "secret.h"

#define FLIGHT_BUCKETS 256

/* Flights that may be joined, by thash; heads set up by the first join. */
static struct list flight_table[FLIGHT_BUCKETS];
static bool flight_table_ready;

static uint64_t flight__hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

static void flight__free(struct route_flight *f)
{
	if (f->password) {
		secret_wipe(f->password, strlen(f->password));
		free(f->password);
	}
	free(f->tkey);
	free(f->login);
	free(f->protocol);
	free(f->client_ip);
	free(f->proxy_ip);
	free(f->host);
	free(f->l1key);
	conf_unref(f->conf);
	rcache_release(f->rc);
	free(f);
}

static void flight__closed(uv_handle_t *h)
{
	struct route_flight *f = h->data;

	if (--f->handles == 0)
		flight__free(f);
}

/* ---- keys ---- */

/* The alias of the flight's login: mail by proxy IP, web by vhost. */
bool route__flight_alias_key(struct rcache_key *k, const struct route_flight *f)
{
	/* Zimbra has no admin alias nor admin name key: an admin request by
	   name stays out of memcached (L1 files it apart). */
	if (f->admin)
		return false;
	return rcache_key_alias_for(k, f->protocol, f->login, f->proxy_ip, f->host,
				    f->rc->hash_keys);
}

/* The route of name (the login or an account) as this flight keys it. */
bool route__flight_route_key(struct rcache_key *k, const struct route_flight *f,
			      const char *name)
{
	if (f->admin)
		return false;
	return rcache_key_route_name(k, f->protocol, name, f->proxy_ip, f->rc->hash_keys);
}

/* ---- filling the caches ---- */

static int flight__op(struct rcache_op *op, int kind, bool ok)
{
	op->kind = kind;
	return ok ? 1 : 0;
}

static void flight__fill_caches(struct route_flight *f)
{
	const struct route *r = &f->route;
	struct rcache *rc = f->rc;
	struct rcache_op ops[3];
	int n = 0;
	bool hashed;

	if (rc == NULL)
		return;
	if (rc->l1)
		rcache_l1_put(rc->l1, f->protocol, f->l1key, r, route__now_ms(), rc->l1_ttl_ms);
	if (rc->mc == NULL || r->source != ROUTE_SRC_LOOKUP)
		return;
	hashed = rc->hash_keys;
	memset(ops, 0, sizeof(ops));

	char value[RCACHE_MAX_VALUE];
	int vl = rcache_value_format(value, sizeof(value), r->host, r->port);
	if (vl < 0)
		return;
	if (f->by_id) {
		/* A zimbraId names one account: no aliases, one key. */
		memcpy(ops[n].value, value, (size_t)vl + 1);
		ops[n].value_len = (size_t)vl;
		n += flight__op(&ops[n], RCACHE_OP_ADD,
				rcache_key_route_id_for(&ops[n].key, f->protocol, f->login,
							f->admin, hashed));
		if (route__submit(f->loop, rc, ops, n) < 0)
			log_write(LOG_WARN, "route cache: out of memory caching id %s", f->login);
		return;
	}
	bool same = strcmp(r->user, f->login) == 0;
	bool alias_agrees = f->alias_found && strcmp(f->alias_account, r->user) == 0;

	/* The value holds only ip:port: a route under the login stands for the
	   login's own account. An account reached under another name is shared
	   only through an alias; without Auth-Cache-Alias it stays in L1. */
	if (f->alias_found && !alias_agrees)
		n += flight__op(&ops[n], RCACHE_OP_DELETE, route__flight_alias_key(&ops[n].key, f));
	if (!same && !alias_agrees && r->cache_alias) {
		ops[n].value_len = strlen(r->user);
		memcpy(ops[n].value, r->user, ops[n].value_len + 1);
		n += flight__op(&ops[n], RCACHE_OP_ADD, route__flight_alias_key(&ops[n].key, f));
	}
	if (same || alias_agrees || r->cache_alias) {
		memcpy(ops[n].value, value, (size_t)vl + 1);
		ops[n].value_len = (size_t)vl;
		n += flight__op(&ops[n], RCACHE_OP_ADD, route__flight_route_key(&ops[n].key, f, r->user));
	}
	if (route__submit(f->loop, rc, ops, n) < 0)
		log_write(LOG_WARN, "route cache: out of memory caching \"%s\"", f->login);
}

/* ---- the end of a flight ---- */

static void flight__finish(struct route_flight *f)
{
	f->step = FL_DONE;
	/* L1 first: a request that misses the table from now on hits L1. */
	if (f->route.result == ROUTE_OK)
		flight__fill_caches(f);

	pthread_mutex_lock(&route__lock);
	if (f->in_table) {
		list_remove(&f->tlink);
		f->in_table = false;
	}
	f->done = true;
	list_foreach(it, &f->waiters) {
		struct route_req *w = list_entry(it, struct route_req, wlink);
		list_remove(&w->wlink);
		w->flight = NULL;
		route__ready(w, &f->route);
	}
	f->nwaiters = 0;
	pthread_mutex_unlock(&route__lock);
	uv_close((uv_handle_t *)&f->wake, flight__closed);
	uv_close((uv_handle_t *)&f->start, flight__closed);
}

static void flight__fail(struct route_flight *f, enum route_result result, const char *why)
{
	memset(&f->route, 0, sizeof(f->route));
	f->route.result = result;
	f->route.source = result == ROUTE_DENIED ? ROUTE_SRC_NONE : ROUTE_SRC_LOOKUP;
	snprintf(f->route.reason, sizeof(f->route.reason), "%s", why);
	flight__finish(f);
}

static bool flight__orphaned(struct route_flight *f)
{
	pthread_mutex_lock(&route__lock);
	bool o = f->orphaned;
	pthread_mutex_unlock(&route__lock);
	return o;
}

/* ---- the lookup ---- */

static void flight__lookup_done(void *arg, const struct lookup_response *resp, const char *server,
				const char *error)
{
	struct route_flight *f = arg;

	f->call = NULL;
	if (resp != NULL) {
		route__lookup_latency((uv_hrtime() - f->lookup_t0) / 1000000u);
		route_from_lookup(resp, f->login, &f->route);
	} else {
		memset(&f->route, 0, sizeof(f->route));
		f->route.result = ROUTE_TEMPFAIL;
		f->route.source = ROUTE_SRC_LOOKUP;
		snprintf(f->route.reason, sizeof(f->route.reason), "lookup: %s", error);
	}
	if (f->route.result == ROUTE_TEMPFAIL)
		route__count(ROUTE__LOOKUP_FAIL);
	flight__finish(f);
}

static void flight__lookup(struct route_flight *f)
{
	if (f->conf->lookup.nservers == 0) {
		flight__fail(f, ROUTE_DENIED, "no static route matches and no lookup service is configured");
		return;
	}
	struct lookup_query q = {
		.method = f->by_id ? "zimbraId" : "username",
		.user = f->login,
		.host = f->host,
		.password = f->password,
		.protocol = f->protocol,
		.attempt = f->attempt,
		.client_ip = f->client_ip,
		.proxy_ip = f->proxy_ip,
		.admin = f->admin,
	};
	f->step = FL_LOOKUP;
	f->lookup_t0 = uv_hrtime();
	route__count(ROUTE__LOOKUP);
	struct lookup_call *call = lookup_start(f->loop, f->conf, &q, flight__lookup_done, f);
	if (f->step == FL_DONE)
		return;  /* answered (refused at once) inside lookup_start */
	if (call == NULL) {
		route__count(ROUTE__LOOKUP_FAIL);
		flight__fail(f, ROUTE_TEMPFAIL, "lookup: out of memory");
		return;
	}
	f->call = call;
}

void route__flight_mc_done(struct route_flight *f)
{
	if (f->bypass) {
		flight__lookup(f);
		return;
	}
	if (f->mc_hit) {
		route__count(ROUTE__MC_HIT);
		flight__finish(f);
		return;
	}
	memset(&f->route, 0, sizeof(f->route));
	route__count(ROUTE__MC_MISS);
	if (flight__orphaned(f)) {
		flight__fail(f, ROUTE_TEMPFAIL, "abandoned");
		return;
	}
	flight__lookup(f);
}

/* ---- start, and abandon ---- */

static void flight__wake(uv_async_t *a)
{
	struct route_flight *f = a->data;

	if (f->step == FL_DONE)
		return;
	if (flight__orphaned(f)) {
		if (f->step == FL_MEMCACHED)
			return;  /* flight__mc_done notices */
		if (f->call) {
			lookup_abort(f->call);
			f->call = NULL;
		}
		flight__fail(f, ROUTE_TEMPFAIL, "abandoned");
		return;
	}
	if (f->step != FL_START)
		return;
	if (route__flight_mc_start(f))
		return;
	flight__lookup(f);
}

/* The runner's loop starts the flight on the iteration after the join
   (never inside route_resolve), without an eventfd write and read. */
static void flight__start(uv_idle_t *i)
{
	uv_idle_stop(i);
	flight__wake(&((struct route_flight *)i->data)->wake);
}

/* ---- joining ---- */

static struct route_flight *flight__new(struct conf *c, struct rcache *rc,
					const struct route_query *q)
{
	struct route_flight *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return NULL;
	list_init(&f->tlink);
	list_init(&f->waiters);
	f->conf = conf_ref(c);
	f->rc = rcache_ref(rc);
	f->bypass = q->bypass_cache;
	f->attempt = q->attempt;
	f->login = strdup(q->login);
	f->protocol = strdup(q->protocol);
	f->client_ip = strdup(q->client_ip ? q->client_ip : "");
	f->proxy_ip = strdup(q->proxy_ip ? q->proxy_ip : "");
	f->password = q->password && c->lookup.send_password ? strdup(q->password) : NULL;
	f->by_id = q->by_id;
	f->admin = q->admin;
	f->host = q->host ? strdup(q->host) : NULL;
	f->l1key = route__l1_key(q);
	/* With the real password the lookup may judge it: never share then. */
	if (!c->lookup.send_password) {
		size_t n = strlen(q->protocol) + (f->l1key ? strlen(f->l1key) : 0) + 64;
		if ((f->tkey = malloc(n)) != NULL) {
			/* Only identical lookup requests share a flight: the L1 key
			   holds the login, its kind, the proxy IP, the client IP
			   and the Host; the protocol and the attempt complete it. */
			snprintf(f->tkey, n, "%p %d %s %d %s", (void *)c, (int)f->bypass, q->protocol,
				 q->attempt, f->l1key ? f->l1key : "");
			f->thash = flight__hash(f->tkey);
		}
	}
	if (!f->login || !f->protocol || !f->client_ip || !f->proxy_ip || !f->l1key ||
	    (q->host && !f->host) ||
	    (c->lookup.send_password && q->password && !f->password) ||
	    (!c->lookup.send_password && !f->tkey)) {
		flight__free(f);
		return NULL;
	}
	return f;
}

static void flight__add_waiter(struct route_flight *f, struct route_req *req)
{
	req->flight = f;
	list_insert_head(&f->waiters, &req->wlink);
	f->nwaiters++;
}

void route__flight_join(uv_loop_t *loop, struct conf *c, struct rcache *rc,
			const struct route_query *q, struct route_req *req)
{
	/* Built before locking; dropped if a flight is already under way. */
	struct route_flight *f = flight__new(c, rc, q);
	struct route hit;

	if (f == NULL) {
		memset(&hit, 0, sizeof(hit));
		hit.result = ROUTE_TEMPFAIL;
		snprintf(hit.reason, sizeof(hit.reason), "out of memory");
		route__req_handle(req, loop, true);
		route__ready(req, &hit);
		return;
	}
	pthread_mutex_lock(&route__lock);
	if (!flight_table_ready) {
		for (size_t i = 0; i < ARRAY_SIZE(flight_table); i++)
			list_init(&flight_table[i]);
		flight_table_ready = true;
	}
	if (f->tkey != NULL) {
		list_foreach(it, &flight_table[f->thash % FLIGHT_BUCKETS]) {
			struct route_flight *o = list_entry(it, struct route_flight, tlink);
			if (o->thash == f->thash && strcmp(o->tkey, f->tkey) == 0) {
				/* Answered by o's loop: an async only from another one. */
				if (route__req_handle(req, loop, o->loop == loop) < 0)
					break; /* no async: a flight of its own */
				flight__add_waiter(o, req);
				pthread_mutex_unlock(&route__lock);
				route__count(ROUTE__SHARED);
				flight__free(f);
				return;
			}
		}
		/* A flight that just finished filled L1 before leaving the table. */
		if (!f->bypass && rc != NULL && rc->l1 != NULL &&
		    rcache_l1_get(rc->l1, f->protocol, f->l1key, route__now_ms(), &hit)) {
			route__req_handle(req, loop, true);
			route__ready(req, &hit);
			pthread_mutex_unlock(&route__lock);
			route__count(ROUTE__L1_HIT);
			flight__free(f);
			return;
		}
	}
	route__req_handle(req, loop, true); /* this loop runs the flight */
	if (uv_async_init(loop, &f->wake, flight__wake) < 0) {
		pthread_mutex_unlock(&route__lock);
		flight__free(f);
		memset(&hit, 0, sizeof(hit));
		hit.result = ROUTE_TEMPFAIL;
		snprintf(hit.reason, sizeof(hit.reason), "out of resources");
		route__ready(req, &hit);
		return;
	}
	uv_idle_init(loop, &f->start);
	f->wake.data = f;
	f->start.data = f;
	f->handles = 2;
	f->loop = loop;
	if (f->tkey != NULL) {
		list_insert_head(&flight_table[f->thash % FLIGHT_BUCKETS], &f->tlink);
		f->in_table = true;
	}
	flight__add_waiter(f, req);
	pthread_mutex_unlock(&route__lock);
	/* Start from the loop, never inside route_resolve. */
	uv_idle_start(&f->start, flight__start);
}

void route__flight_leave(struct route_req *req)
{
	struct route_flight *f = req->flight;

	list_remove(&req->wlink);
	req->flight = NULL;
	GH_ASSERT(f->nwaiters > 0);
	if (--f->nwaiters > 0 || f->done)
		return;
	/* Nobody waits any more: leave the table (a newcomer starts afresh)
	   and have the runner abandon the work. done is set under this lock
	   before wake is closed, so the send cannot reach a closed handle. */
	f->orphaned = true;
	if (f->in_table) {
		list_remove(&f->tlink);
		f->in_table = false;
	}
	uv_async_send(&f->wake);
}
