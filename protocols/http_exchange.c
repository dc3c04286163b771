/*
 * http_exchange.c - one exchange's way to a backend and its local answers:
 * the access log line, error pages and redirects, the route (lookup or
 * client-IP hash), the backend connection, and what happens when that
 * fails (a cached route looked up again, a stale pooled connection
 * replaced).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "conf.h"
#include "http_int.h"
#include "login.h"
#include "metrics.h"

/* ---- logging and local answers ---- */

void http__log(struct http_exchange *x)
{
	struct session *s = x->s;
	struct access_entry e = {
		.method = x->method[0] ? x->method : NULL,
		.host = x->host,
		.path = x->path,
		.status = x->status,
		.bytes = x->bytes_sent,
		.upstream = x->upstream && s->backend_addr[0] ? s->backend_addr : NULL,
		.ms = session_now(s) - x->start_ms,
	};
	metrics_http_response(x->status);
	access_log(s, &e);
}

void http__answer(struct http_exchange *x, int status, const char *location, const char *msg,
		  const char *why)
{
	struct session *s = x->s;
	char page[3072];

	if (x->phase == HTTP_X_DONE)
		return;
	http__backend_drop(x, false);
	x->phase = HTTP_X_DONE;
	x->conn->phase = HTTP_CONN_DONE;
	int n = http_error_page(status, location, msg, true, page, sizeof(page));
	if (n < 0 && location != NULL) {
		/* A redirect whose Location does not fit the page (a long
		   request-target): say so rather than close without a word. */
		status = 414;
		location = NULL;
		msg = NULL;
		why = "redirect: target too long for a Location";
		n = http_error_page(status, NULL, NULL, true, page, sizeof(page));
	}
	x->status = status;
	x->bytes_sent += n > 0 ? (uint64_t)n : 0;
	if (x->start_ms == 0)
		x->start_ms = session_now(s);
	if (status >= 500)
		session_log(s, LOG_INFO, "%d for %s %s: %s", status, x->method, x->path, why);
	else
		session_log(s, LOG_DEBUG, "%d for %s %s: %s", status, x->method, x->path, why);
	http__log(x);
	/* A failed write closes the session; x stays valid until this
	   returns to the loop (session.h), and session_finish is then a no-op. */
	if (n > 0)
		session_write(s, page, (size_t)n);
	session_finish(s, why);
}

void http__abort(struct http_exchange *x, const char *why)
{
	struct session *s = x->s;

	session_log(s, LOG_INFO, "%s %s: %s", x->method, x->path, why);
	x->status = x->status ? x->status : 502;
	x->phase = HTTP_X_DONE;
	x->conn->phase = HTTP_CONN_DONE;
	http__log(x);
	session_close(s, why);
}

/* ---- the route ---- */

static const char *http__protocol(const struct session *s)
{
	return s->conf->upstream.tls ? "httpssl" : "http";
}

/* The lookup query for x (its strings stay x's); the one place it is built. */
static struct route_query http__query(const struct http_exchange *x, bool bypass)
{
	const struct session *s = x->s;

	return (struct route_query){
		.login = x->route_name,
		.protocol = http__protocol(s),
		.client_ip = s->client_ip,
		.proxy_ip = s->local_ip,
		.attempt = 0,
		.bypass_cache = bypass,
		.by_id = x->kind == HTTP_ROUTE_ID,
		.host = x->host[0] ? x->host : NULL,
	};
}

static void http__send_request(struct http_exchange *x)
{
	struct session *s = x->s;

	x->phase = HTTP_X_FORWARD;
	x->backend_gone = false;
	session_set_phase(s, SESSION_HTTP_FORWARD);
	session_upstream_reading(x->up, true);
	session_upstream_write(x->up, x->fwd, x->fwd_len);
	if (s->closed || x->phase != HTTP_X_FORWARD)
		return;
	http__forward_body(x);
}

static void http__route_to(struct http_exchange *x, const char *host, uint16_t port)
{
	if (x->up_host != host)
		snprintf(x->up_host, sizeof(x->up_host), "%s", host);
	x->up_port = port;
	x->phase = HTTP_X_CONNECT;
	x->upstream = true;
	/* A pooled connection is ready at once; a new one reports later. */
	if (session_backend_acquire(x->s, x->up_host, port))
		http__backend_connected(x, 0);
}

void http__backend_drop(struct http_exchange *x, bool reuse)
{
	struct session *s = x->s;

	if (x->in != NULL) {
		/* Unread backend bytes: the connection is not clean. */
		x->in->wipe = true;
		pbuf_put(x->in);
		x->in = NULL;
		reuse = false;
	}
	if (x->up != NULL) {
		session_upstream_release(x->up, reuse);
		x->up = NULL;
	} else if (s->backend != NULL && x->phase == HTTP_X_CONNECT) {
		session_close_backend(s); /* still connecting */
	}
}

void http__route_hash(struct http_exchange *x)
{
	const struct conf *c = x->s->conf;

	if (c->http.nbackends == 0) {
		http__answer(x, 503, NULL, NULL, "no web backend configured (http.backends)");
		return;
	}
	const struct conf_http_backend *b =
		&c->http.backends[http_ip_hash(x->s->client_ip, (unsigned)c->http.nbackends)];
	http__route_to(x, b->host, b->port);
}

void http__resolve(struct http_exchange *x, bool bypass)
{
	struct route_query q = http__query(x, bypass);

	x->phase = HTTP_X_ROUTE;
	session_resolve(x->s, &q);
}

void http__route_done(struct http_exchange *x, const struct route *r)
{
	if (r->result == ROUTE_OK) {
		x->route = *r;
		x->routed = true;
		http__route_to(x, r->host, r->port);
		return;
	}
	/* Zimbra's lookup says "... is not allowed ..." when the client's
	   address is refused for the domain: that is a 403, not a fallback. */
	if (r->result == ROUTE_DENIED && (strstr(r->reason, "not allowed") != NULL ||
					  strstr(r->reason, "denied") != NULL)) {
		http__answer(x, 403, NULL, NULL, "access denied by the lookup service");
		return;
	}
	session_log(x->s, LOG_DEBUG, "no route for %s %s (%s): client-IP hash",
		    x->kind == HTTP_ROUTE_ID ? "id" : "user", x->route_name, r->reason);
	http__route_hash(x);
}

/* ---- the backend ---- */

void http__backend_connected(struct http_exchange *x, int status)
{
	if (status == 0) {
		x->up = session_upstream_take(x->s, x);
		if (x->up == NULL) {
			session_close(x->s, "backend connection lost");
			return;
		}
		x->up_reused = session_upstream_reused(x->up);
		http__send_request(x);
		return;
	}
	if (x->routed && login_route_retry(&x->route, x->route_retried)) {
		/* A cached route to a backend that is gone: the mailbox may have
		   moved. The fresh lookup forgets it in the caches first. */
		struct route_query q = http__query(x, true);
		x->routed = false;
		x->phase = HTTP_X_ROUTE;
		if (login_route_unreachable(x->s, &q, &x->route, &x->route_retried,
					    "web backend unreachable"))
			return;
	}
	if (status == UV_ETIMEDOUT)
		http__answer(x, 504, NULL, NULL, "backend connect timed out");
	else
		http__answer(x, 502, NULL, NULL, uv_strerror(status));
}

void http__backend_eof(struct http_exchange *x, int status)
{
	struct session *s = x->s;

	if (x->phase == HTTP_X_CONNECT) {
		http__backend_connected(x, status < 0 && status != UV_EOF ? status : UV_ECONNRESET);
		return;
	}
	if (x->phase != HTTP_X_FORWARD)
		return;
	x->backend_gone = true;
	/* A pooled connection the backend had just closed: if nothing of the
	   response came and no body byte was spent, send the request again on
	   a fresh connection (RFC 9112 §9.3.1: the request is safe to retry). */
	if (x->up_reused && x->resp_bytes_in == 0 && x->req_body_sent == 0 &&
	    !x->stale_retry_done) {
		x->stale_retry_done = true;
		session_log(s, LOG_DEBUG, "pooled connection to %s was closed; retrying on a new one",
			    s->backend_addr);
		http__route_to(x, x->up_host, x->up_port);
		return;
	}
	http__process_backend(x);
}
