/*
 * route.c - asynchronous route resolution: name check, static routes, then
 * the lookup service. (The cache issue puts L1 and memcached in between.)
 *
 * Every answer is delivered from a callback of this loop, never from inside
 * route_resolve(), so callers need not guard against re-entry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "conf.h"
#include "log.h"
#include "lookup_client.h"
#include "route.h"

struct route_req {
	uv_timer_t defer;
	struct conf *conf;
	route_cb cb;
	void *arg;
	struct lookup_call *call;
	bool cancelled;
	bool answered;           /* route is final */
	bool starting_lookup;    /* inside lookup_start() */
	struct route route;
	char *login, *password, *protocol, *client_ip, *proxy_ip;
	int attempt;
};

static void route__free(uv_handle_t *h)
{
	struct route_req *req = h->data;

	if (req->password) {
		OPENSSL_cleanse(req->password, strlen(req->password));
		free(req->password);
	}
	free(req->login);
	free(req->protocol);
	free(req->client_ip);
	free(req->proxy_ip);
	conf_unref(req->conf);
	free(req);
}

static void route__deliver(struct route_req *req)
{
	if (!req->cancelled)
		req->cb(req, &req->route, req->arg);
	uv_close((uv_handle_t *)&req->defer, route__free);
}

static void route__lookup_done(void *arg, const struct lookup_response *resp, const char *server,
			       const char *error)
{
	struct route_req *req = arg;

	req->call = NULL;
	req->answered = true;
	if (resp != NULL) {
		route_from_lookup(resp, req->login, &req->route);
	} else {
		memset(&req->route, 0, sizeof(req->route));
		req->route.result = ROUTE_TEMPFAIL;
		req->route.source = ROUTE_SRC_LOOKUP;
		snprintf(req->route.reason, sizeof(req->route.reason), "lookup: %s", error);
	}
	/* Inside lookup_start() the answer waits for the deferred callback. */
	if (!req->starting_lookup)
		route__deliver(req);
}

static void route__start(uv_timer_t *t)
{
	struct route_req *req = t->data;

	if (req->cancelled || req->answered) {
		route__deliver(req);
		return;
	}
	struct lookup_query q = {
		.method = "username",
		.user = req->login,
		.password = req->password,
		.protocol = req->protocol,
		.attempt = req->attempt,
		.client_ip = req->client_ip,
		.proxy_ip = req->proxy_ip,
	};
	req->starting_lookup = true;
	struct lookup_call *call = lookup_start(t->loop, req->conf, &q, route__lookup_done, req);
	req->starting_lookup = false;
	if (req->answered) {
		route__deliver(req);
		return;
	}
	if (call == NULL) {
		req->route.result = ROUTE_TEMPFAIL;
		snprintf(req->route.reason, sizeof(req->route.reason), "lookup: out of memory");
		route__deliver(req);
		return;
	}
	req->call = call;
}

static void route__static(struct route_req *req, const struct conf_route *r)
{
	struct route *out = &req->route;

	out->result = ROUTE_OK;
	out->source = ROUTE_SRC_STATIC;
	snprintf(out->host, sizeof(out->host), "%s", r->host);
	out->port = r->port;
	snprintf(out->user, sizeof(out->user), "%s", r->user ? r->user : req->login);
	snprintf(out->reason, sizeof(out->reason), "static route %s", r->match);
	req->answered = true;
}

static void route__denied(struct route_req *req, const char *why)
{
	req->route.result = ROUTE_DENIED;
	req->route.source = ROUTE_SRC_NONE;
	snprintf(req->route.reason, sizeof(req->route.reason), "%s", why);
	req->answered = true;
}

struct route_req *route_resolve(uv_loop_t *loop, struct conf *c, const struct route_query *q,
				route_cb cb, void *arg)
{
	struct route_req *req = calloc(1, sizeof(*req));

	if (req == NULL)
		return NULL;
	req->conf = conf_ref(c);
	req->cb = cb;
	req->arg = arg;
	req->attempt = q->attempt;
	req->login = strdup(q->login);
	req->protocol = strdup(q->protocol);
	req->client_ip = strdup(q->client_ip);
	req->proxy_ip = strdup(q->proxy_ip);
	req->password = q->password && c->lookup.send_password ? strdup(q->password) : NULL;
	if (uv_timer_init(loop, &req->defer) < 0) {
		free(req->login);
		free(req->protocol);
		free(req->client_ip);
		free(req->proxy_ip);
		free(req->password);
		conf_unref(req->conf);
		free(req);
		return NULL;
	}
	req->defer.data = req;
	if (!req->login || !req->protocol || !req->client_ip || !req->proxy_ip) {
		req->route.result = ROUTE_TEMPFAIL;
		snprintf(req->route.reason, sizeof(req->route.reason), "out of memory");
		req->answered = true;
	} else if (!route_name_valid(req->login, strlen(req->login), ROUTE_MAX_USER - 1)) {
		route__denied(req, "invalid login name");
	} else {
		const struct conf_route *r = route_static_match(c, req->login);
		if (r != NULL)
			route__static(req, r);
		else if (c->lookup.nservers == 0)
			route__denied(req, "no static route matches and no lookup service is configured");
	}
	uv_timer_start(&req->defer, route__start, 0, 0);
	return req;
}

void route_cancel(struct route_req *req)
{
	if (req->cancelled)
		return;
	req->cancelled = true;
	if (req->call) {
		lookup_abort(req->call);
		req->call = NULL;
		/* The lookup will not call back: release the request here. */
		uv_close((uv_handle_t *)&req->defer, route__free);
	}
	/* Otherwise the deferred callback is still due and releases it. */
}
