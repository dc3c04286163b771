/*
 * route_flight_mc.c - a flight's memcached step: the get of the alias and
 * the route (on the loop's own client, or on libuv's thread pool through
 * libmemcached), and the purge of a bypassing flight (pool). Then
 * route__flight_mc_done takes the flight on (route_flight.c).
 */
#include <stdio.h>
#include <string.h>

#include "route_flight.h"
#include "route_int.h"

/* The route value memcached gave for account: a hit when it parses. */
static void flight_mc__value(struct route_flight *f, const char *account, const char *val,
			     size_t vl)
{
	struct route *r = &f->route;

	if (!rcache_value_parse(val, vl, r->host, sizeof(r->host), &r->port))
		return;
	r->result = ROUTE_OK;
	r->source = ROUTE_SRC_MEMCACHED;
	memcpy(r->user, account, strlen(account) + 1);
	snprintf(r->reason, sizeof(r->reason), "memcached");
	f->mc_hit = true;
}

static void flight_mc__io_route_done(void *arg, enum rcache_mc_rc rc, const char *val, size_t len)
{
	struct route_flight *f = arg;

	if (rc == RCACHE_MC_OK)
		flight_mc__value(f, f->alias_account, val, len);
	route__flight_mc_done(f);
}

/* Both first gets answered: the route by the login serves unless the
   alias names another account, whose route is then got. */
static void flight_mc__io_decide(struct route_flight *f)
{
	struct rcache_key k;

	if (f->alias_found && strcmp(f->alias_account, f->login) != 0) {
		f->mc_hit = false;
		memset(&f->route, 0, sizeof(f->route));
		if (route__flight_route_key(&k, f, f->alias_account) &&
		    rcache_io_get(f->io, &k, flight_mc__io_route_done, f) == 0)
			return;
	}
	route__flight_mc_done(f);
}

static void flight_mc__io_login_done(void *arg, enum rcache_mc_rc rc, const char *val, size_t len)
{
	struct route_flight *f = arg;

	if (rc == RCACHE_MC_OK)
		flight_mc__value(f, f->login, val, len);
	if (--f->io_pending == 0)
		flight_mc__io_decide(f);
}

static void flight_mc__io_alias_done(void *arg, enum rcache_mc_rc rc, const char *val, size_t len)
{
	struct route_flight *f = arg;

	if (rc == RCACHE_MC_OK && len < sizeof(f->alias_account) &&
	    route_name_valid(val, len, ROUTE_MAX_USER - 1)) {
		memcpy(f->alias_account, val, len);
		f->alias_account[len] = '\0';
		f->alias_found = true;
	}
	if (--f->io_pending == 0)
		flight_mc__io_decide(f);
}

/* The gets on this loop's client: the alias (not for an id) and the route
   by the login at once, so both leave in one write and one round trip. */
static void flight_mc__io_get(struct route_flight *f)
{
	struct rcache_key k;

	f->work.data = f;
	f->io_pending = 0;
	if (!f->by_id && route__flight_alias_key(&k, f) &&
	    rcache_io_get(f->io, &k, flight_mc__io_alias_done, f) == 0)
		f->io_pending++;
	bool ok = f->by_id ? rcache_key_route_id_for(&k, f->protocol, f->login, f->admin, f->rc->hash_keys)
			   : route__flight_route_key(&k, f, f->login);
	if (ok && rcache_io_get(f->io, &k, flight_mc__io_login_done, f) == 0)
		f->io_pending++;
	if (f->io_pending == 0)
		flight_mc__io_decide(f);
}

static void flight_mc__get(uv_work_t *w)
{
	struct route_flight *f = w->data;
	struct rcache *rc = f->rc;
	struct rcache_key k;
	char val[RCACHE_MAX_VALUE];
	size_t vl;
	const char *account = f->login;

	if (f->by_id) {
		if (!rcache_key_route_id_for(&k, f->protocol, f->login, f->admin, rc->hash_keys) ||
		    rcache_mc_get(rc->mc, &k, val, sizeof(val), &vl) != RCACHE_MC_OK)
			return;
	} else {
		if (route__flight_alias_key(&k, f) &&
		    rcache_mc_get(rc->mc, &k, val, sizeof(val), &vl) == RCACHE_MC_OK &&
		    route_name_valid(val, vl, ROUTE_MAX_USER - 1)) {
			memcpy(f->alias_account, val, vl + 1);
			f->alias_found = true;
			account = f->alias_account;
		}
		if (!route__flight_route_key(&k, f, account) ||
		    rcache_mc_get(rc->mc, &k, val, sizeof(val), &vl) != RCACHE_MC_OK)
			return;
	}

	flight_mc__value(f, account, val, vl);
}

/*
 * A bypassing flight: the cached route failed, so forget what memcached
 * says about this login (the alias, the route by its account and by the
 * login) before looking up; the answer is added afterwards, in order.
 */
static void flight_mc__purge(uv_work_t *w)
{
	struct route_flight *f = w->data;
	struct rcache *rc = f->rc;
	struct rcache_key k;
	char val[RCACHE_MAX_VALUE];
	size_t vl;

	if (f->by_id) {
		if (rcache_key_route_id_for(&k, f->protocol, f->login, f->admin, rc->hash_keys))
			rcache_mc_delete(rc->mc, &k);
		return;
	}
	if (route__flight_alias_key(&k, f) &&
	    rcache_mc_get(rc->mc, &k, val, sizeof(val), &vl) == RCACHE_MC_OK) {
		rcache_mc_delete(rc->mc, &k);
		if (strcmp(val, f->login) != 0 && route__flight_route_key(&k, f, val))
			rcache_mc_delete(rc->mc, &k);
	}
	if (route__flight_route_key(&k, f, f->login))
		rcache_mc_delete(rc->mc, &k);
}

static void flight_mc__work_done(uv_work_t *w, int status)
{
	route__flight_mc_done(w->data);
}

bool route__flight_mc_start(struct route_flight *f)
{
	if (f->rc == NULL || f->rc->mc == NULL)
		return false;
	f->step = FL_MEMCACHED;
	f->work.data = f;
	if (!f->bypass && (f->io = route__io_for(f->loop, f->rc)) != NULL) {
		flight_mc__io_get(f);
		return true;
	}
	if (uv_queue_work(f->loop, &f->work, f->bypass ? flight_mc__purge : flight_mc__get,
			  flight_mc__work_done) == 0)
		return true;
	f->step = FL_START;
	return false;
}
