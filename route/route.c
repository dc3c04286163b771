/*
 * route.c - asynchronous route resolution: name check, static routes, the
 * in-process L1, then a shared flight (route_flight.c) through memcached and
 * the lookup service. Also invalidation and the per-loop hooks.
 *
 * Every answer is delivered from a callback of the caller's loop (through
 * the request's uv_idle_t when the answer is known at once or comes from a
 * flight on the same loop, else its uv_async_t),
 * never from inside route_resolve(), so callers need not guard against
 * re-entry.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "gh.h"
#include "log.h"
#include "lookup_client.h"
#include "route_int.h"

pthread_mutex_t route__lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * A loop's resolver state: the cache runtime for the config it last saw,
 * so a warm login takes no global lock. Kept in a thread-local list: a loop
 * runs on one thread.
 */
struct route_loop {
	uv_loop_t *loop;
	struct conf *conf;   /* a reference: the pointer cannot be reused while held */
	struct rcache *rc;
	struct rcache_io *io;  /* memcached on this loop for rc, or NULL (the pool) */
	struct route_loop *next;
};

static _Thread_local struct route_loop *route__loops;
static pthread_mutex_t route__nloops_lock = PTHREAD_MUTEX_INITIALIZER;
static int route__nloops;

uint64_t route__now_ms(void)
{
	return uv_hrtime() / 1000000u;
}

static struct route_loop *route__loop(uv_loop_t *loop)
{
	for (struct route_loop *rl = route__loops; rl; rl = rl->next)
		if (rl->loop == loop)
			return rl;
	return NULL;
}

static struct rcache *route__runtime(struct route_loop *rl, struct conf *c)
{
	if (rl->conf != c) {
		struct rcache *old = rl->rc;
		conf_unref(rl->conf);
		rl->conf = conf_ref(c);
		rl->rc = rcache_acquire(c);
		if (rl->rc != old) {
			rcache_io_close(rl->io);
			rl->io = rcache_io_new(rl->loop, rl->rc);
		}
		rcache_release(old);
	}
	return rl->rc;
}

struct rcache_io *route__io_for(uv_loop_t *loop, struct rcache *rc)
{
	struct route_loop *rl = route__loop(loop);

	return rl != NULL && rcache_io_for(rl->io, rc) ? rl->io : NULL;
}

int route__submit(uv_loop_t *loop, struct rcache *rc, const struct rcache_op *ops, int n)
{
	struct rcache_io *io = route__io_for(loop, rc);

	return io != NULL ? rcache_io_submit(io, ops, n) : rcache_submit(loop, rc, ops, n);
}

struct rcache *route__cache_for(uv_loop_t *loop, struct conf *c)
{
	struct route_loop *rl = route__loop(loop);

	return rl != NULL ? rcache_ref(route__runtime(rl, c)) : NULL;
}

int route_worker_init(uv_loop_t *loop)
{
	struct route_loop *rl = calloc(1, sizeof(*rl));

	if (rl == NULL)
		return -ENOMEM;
	rl->loop = loop;
	rl->next = route__loops;
	route__loops = rl;
	pthread_mutex_lock(&route__nloops_lock);
	route__nloops++;
	pthread_mutex_unlock(&route__nloops_lock);
	return 0;
}

void route_worker_close(uv_loop_t *loop)
{
	struct route_loop **pp = &route__loops;
	bool last;

	while (*pp && (*pp)->loop != loop)
		pp = &(*pp)->next;
	if (*pp == NULL)
		return;
	struct route_loop *rl = *pp;
	*pp = rl->next;
	lookup_pool_close();
	uv_run(loop, UV_RUN_DEFAULT);
	if (rl->io != NULL) {
		/* Its connections close (and any request left is answered)
		   on the loop, which has stopped: run it for that. */
		rcache_io_close(rl->io);
		uv_run(loop, UV_RUN_DEFAULT);
	}
	rcache_release(rl->rc);
	conf_unref(rl->conf);
	free(rl);
	pthread_mutex_lock(&route__nloops_lock);
	last = --route__nloops == 0;
	pthread_mutex_unlock(&route__nloops_lock);
	if (last)
		rcache_drop_current();
}

/* ---- requests ---- */

static void route__free(uv_handle_t *h)
{
	free(h->data);
}

static void route__close(struct route_req *req)
{
	if (req->closing)
		return;
	req->closing = true;
	uv_close((uv_handle_t *)&req->h, route__free);
}

static void route__idle(uv_idle_t *i);

void route__ready(struct route_req *req, const struct route *r)
{
	req->route = *r;
	req->ready = true;
	if (req->sync)
		uv_idle_start(&req->h.idle, route__idle); /* req's own loop thread */
	else
		uv_async_send(&req->h.async);
}

static void route__deliver(struct route_req *req)
{
	struct route r;
	bool ready;

	pthread_mutex_lock(&route__lock);
	ready = req->ready;
	if (ready)
		r = req->route;
	pthread_mutex_unlock(&route__lock);
	if (!ready || req->closing)
		return;
	if (!req->cancelled) {
		/* Cancelling from inside the callback is then a no-op. */
		req->cancelled = true;
		req->cb(req, &r, req->arg);
	}
	route__close(req);
}

static void route__wake(uv_async_t *a)
{
	route__deliver(a->data);
}

static void route__idle(uv_idle_t *i)
{
	uv_idle_stop(i);
	route__deliver(i->data);
}

int route__req_handle(struct route_req *req, uv_loop_t *loop, bool local)
{
	int rc;

	req->sync = local;
	if (local) {
		rc = uv_idle_init(loop, &req->h.idle);
		req->h.idle.data = req;
	} else {
		rc = uv_async_init(loop, &req->h.async, route__wake);
		req->h.async.data = req;
	}
	return rc;
}

static void route__static(struct route *out, struct conf *c, const struct route_query *q,
			  const struct conf_route *r)
{
	out->result = ROUTE_OK;
	out->source = ROUTE_SRC_STATIC;
	snprintf(out->host, sizeof(out->host), "%s", r->host);
	/* A route without a port means the protocol's own backend port. */
	out->port = r->port ? r->port : conf_backend_port(c, q->protocol);
	snprintf(out->user, sizeof(out->user), "%s", r->user ? r->user : q->login);
	snprintf(out->reason, sizeof(out->reason), "static route %s", r->match);
}

static void route__result(struct route *out, enum route_result result, const char *why)
{
	out->result = result;
	out->source = ROUTE_SRC_NONE;
	snprintf(out->reason, sizeof(out->reason), "%s", why);
}

char *route__l1_key(const struct route_query *q)
{
	/* Everything the lookup is told about the login but the attempt
	   number: the answer may depend on any of it (the proxy address and
	   the Host qualify an unqualified name, the client address meets the
	   domain's allow-list). Only the Host may hold a space: it comes last. */
	/* An admin route never answers a non-admin request, nor the reverse:
	   the kind differs, so the key (and the flight key made from it) does. */
	const char *kind = q->admin ? (q->by_id ? "admin-id" : "admin-name")
				    : (q->by_id ? "id" : "name");
	const char *pip = q->proxy_ip && q->proxy_ip[0] ? q->proxy_ip : "-";
	const char *cip = q->client_ip && q->client_ip[0] ? q->client_ip : "-";
	const char *host = q->host ? q->host : "";
	size_t n = strlen(kind) + strlen(q->login) + strlen(pip) + strlen(cip) + strlen(host) + 8;
	char *k = malloc(n);

	if (k != NULL)
		snprintf(k, n, "%s %s %s %s %s", kind, q->login, pip, cip, host);
	return k;
}

size_t route_login_suffix(const char *protocol, const char *login)
{
	static const char *const sfx[] = { "/tb", "/wm", "/ni" };
	size_t n = login ? strlen(login) : 0;

	if (protocol == NULL || n <= 3 ||
	    (strncmp(protocol, "imap", 4) != 0 && strncmp(protocol, "pop3", 4) != 0))
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(sfx); i++)
		if (memcmp(login + n - 3, sfx[i], 3) == 0)
			return 3;
	return 0;
}

/*
 * q with Zimbra's client suffix (/tb, /wm, /ni) taken off the login, using
 * buf for the shortened name: the suffix is not part of the account, so it
 * is neither looked up nor part of a cache key (the backends put it back).
 */
static const struct route_query *route__base_query(const struct route_query *q,
						   struct route_query *copy, char *buf, size_t cap)
{
	size_t sl = route_login_suffix(q->protocol, q->login);
	size_t n;

	if (sl == 0 || (n = strlen(q->login) - sl) >= cap)
		return q;
	memcpy(buf, q->login, n);
	buf[n] = '\0';
	*copy = *q;
	copy->login = buf;
	return copy;
}

struct route_req *route_resolve(uv_loop_t *loop, struct conf *c, const struct route_query *q,
				route_cb cb, void *arg)
{
	struct route_req *req = calloc(1, sizeof(*req));
	struct route_loop *rl;
	struct route r;

	if (req == NULL)
		return NULL;
	struct route_query qbase;
	char base[ROUTE_MAX_USER];
	if (q->login != NULL && !q->by_id)
		q = route__base_query(q, &qbase, base, sizeof(base));
	req->cb = cb;
	req->arg = arg;
	memset(&r, 0, sizeof(r));
	char *l1key = NULL;

	if (q->login == NULL || q->protocol == NULL ||
	    !route_name_valid(q->login, strlen(q->login), ROUTE_MAX_USER - 1)) {
		route__result(&r, ROUTE_DENIED, "invalid login name");
	} else if ((l1key = route__l1_key(q)) == NULL) {
		route__result(&r, ROUTE_TEMPFAIL, "out of memory");
	} else if (!q->by_id && route_static_match(c, q->login) != NULL) {
		route__static(&r, c, q, route_static_match(c, q->login));
	} else if ((rl = route__loop(loop)) == NULL) {
		route__result(&r, ROUTE_TEMPFAIL, "resolver not set up on this loop (route_worker_init)");
	} else {
		struct rcache *rc = route__runtime(rl, c);
		bool cached = false;

		if (q->bypass_cache && rc != NULL && rc->l1 != NULL) {
			/* The route L1 gave failed: whatever the lookup says now,
			   it must not be served again. */
			rcache_l1_remove(rc->l1, q->protocol, l1key);
		} else if (rc != NULL && rc->l1 != NULL) {
			cached = rcache_l1_get(rc->l1, q->protocol, l1key, route__now_ms(), &r);
			route__count(cached ? ROUTE__L1_HIT : ROUTE__L1_MISS);
		}
		if (!cached) {
			bool mc = rc != NULL && rc->mc != NULL && !q->bypass_cache;
			if (c->lookup.nservers == 0 && !mc) {
				route__result(&r, ROUTE_DENIED,
					      "no static route matches and no lookup service is configured");
			} else {
				free(l1key);
				route__flight_join(loop, c, rc, q, req);
				return req;
			}
		}
	}
	free(l1key);
	/* Known now; answered from the next loop iteration (never from here). */
	uv_idle_init(loop, &req->h.idle);
	req->h.idle.data = req;
	req->sync = true;
	req->route = r;
	req->ready = true;
	uv_idle_start(&req->h.idle, route__idle);
	return req;
}

void *route_cancel(struct route_req *req)
{
	void *arg = req->arg;

	if (req->cancelled)
		return NULL;
	req->cancelled = true;
	pthread_mutex_lock(&route__lock);
	if (req->flight != NULL)
		route__flight_leave(req);
	pthread_mutex_unlock(&route__lock);
	/* A pending answer is dropped with the handle. */
	route__close(req);
	return arg;
}

/* ---- invalidation ---- */

void route_invalidate(uv_loop_t *loop, struct conf *c, const struct route_query *q,
		      const struct route *r)
{
	struct route_loop *rl = route__loop(loop);
	struct rcache *rc;
	struct route_query qbase;
	char base[ROUTE_MAX_USER];

	if (q->login != NULL && !q->by_id)
		q = route__base_query(q, &qbase, base, sizeof(base));
	if (r == NULL || r->result != ROUTE_OK || q->login == NULL || q->protocol == NULL ||
	    (r->source != ROUTE_SRC_LOOKUP && r->source != ROUTE_SRC_L1 &&
	     r->source != ROUTE_SRC_MEMCACHED))
		return;
	if (rl == NULL || (rc = route__runtime(rl, c)) == NULL)
		return;
	route__count(ROUTE__INVALIDATE);
	char *l1key = route__l1_key(q);
	if (rc->l1 != NULL && l1key != NULL)
		rcache_l1_remove(rc->l1, q->protocol, l1key);
	free(l1key);
	if (rc->mc == NULL)
		return;

	struct rcache_op ops[3];
	int n = 0;
	memset(ops, 0, sizeof(ops));
	if (q->admin && !q->by_id)
		return; /* never in memcached */
	if (q->by_id) {
		if (rcache_key_route_id_for(&ops[n].key, q->protocol, q->login, q->admin,
					    rc->hash_keys))
			ops[n++].kind = RCACHE_OP_DELETE;
		if (route__submit(loop, rc, ops, n) < 0)
			log_write(LOG_WARN, "route cache: out of memory forgetting id %s", q->login);
		return;
	}
	if (rcache_key_alias_for(&ops[n].key, q->protocol, q->login, q->proxy_ip, q->host,
				 rc->hash_keys))
		ops[n++].kind = RCACHE_OP_DELETE;
	if (rcache_key_route_name(&ops[n].key, q->protocol, r->user, q->proxy_ip, rc->hash_keys))
		ops[n++].kind = RCACHE_OP_DELETE;
	if (strcmp(r->user, q->login) != 0 &&
	    rcache_key_route_name(&ops[n].key, q->protocol, q->login, q->proxy_ip, rc->hash_keys))
		ops[n++].kind = RCACHE_OP_DELETE;
	if (route__submit(loop, rc, ops, n) < 0)
		log_write(LOG_WARN, "route cache: out of memory forgetting \"%s\"", q->login);
}
