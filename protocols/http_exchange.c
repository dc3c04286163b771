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

	if (x->tunnel)
		return; /* logged when it started */
	struct access_entry e = {
		.method = x->method[0] ? x->method : NULL,
		.host = x->host,
		.path = x->path,
		.status = x->status,
		.bytes = x->bytes_sent,
		.upstream = x->up_addr[0] ? x->up_addr : NULL,
		.ms = session_now(s) - x->start_ms,
	};
	metrics_http_response(x->status);
	access_log(s, &e);
}

/* The page for status (a redirect to location) into page; the status it
   says (414 when location does not fit). Returns its length or -1. */
static int http__page(int *status, const char **location, const char *msg, const char **why,
		      const struct http_page_extra *px, char *page, size_t cap)
{
	int n = http_error_page(*status, *location, msg, true, px, page, cap);

	if (n < 0 && *location != NULL) {
		/* A redirect whose Location does not fit the page (a long
		   request-target): say so rather than close without a word. */
		*status = 414;
		*location = NULL;
		*why = "redirect: target too long for a Location";
		n = http_error_page(*status, NULL, NULL, true, px, page, cap);
	}
	return n;
}

/* x is answered with head[0..n) then body[0..body_len) (an operator's
   page; 0: none), now or at its turn. */
static void http__answer_parts(struct http_exchange *x, int status, const char *head, size_t n,
			       const char *body, size_t body_len, const char *why)
{
	struct session *s = x->s;

	if (x->phase == HTTP_X_DONE)
		return;
	http__backend_drop(x, false);
	x->phase = HTTP_X_DONE;
	x->deadline_ms = 0;
	x->conn->phase = HTTP_CONN_DONE; /* nothing after it is parsed */
	if (n == 0)
		body_len = 0;
	x->status = status;
	x->bytes_sent += n + body_len;
	if (x->start_ms == 0)
		x->start_ms = session_now(s);
	session_log(s, status >= 500 ? LOG_INFO : LOG_DEBUG, "%d for %s %s: %s", status, x->method,
		    x->path, why);
	if (!http__is_front(x)) {
		/* Answers go out in order: kept until x's turn. */
		x->local = n > 0 ? malloc(n + body_len) : NULL;
		if (n > 0 && x->local == NULL) {
			session_close(s, "out of memory");
			return;
		}
		if (n > 0)
			memcpy(x->local, head, n);
		if (body_len > 0) /* body is NULL without a page */
			memcpy(x->local + n, body, body_len);
		x->local_len = n + body_len;
		x->local_why = why != NULL ? why : "local answer"; /* marks it kept */
		return;
	}
	http__log(x);
	/* A failed write closes the session; x stays valid until this
	   returns to the loop (session.h), and session_finish is then a no-op. */
	if (n > 0)
		http__out(x, head, n);
	if (body_len > 0 && !s->closed)
		http__out(x, body, body_len);
	http__finish(x, why);
}

void http__answer_raw(struct http_exchange *x, int status, const char *resp, size_t n,
		      const char *why)
{
	http__answer_parts(x, status, resp, n, NULL, 0, why);
}

void http__answer(struct http_exchange *x, int status, const char *location, const char *msg,
		  const char *why)
{
	struct session *s = x->s;
	char page[3072 + HTTP_ADD_HEADERS_MAX], lines[HTTP_ADD_HEADERS_MAX];
	struct http_resp_edit e;

	if (x->phase == HTTP_X_DONE)
		return;
	/* The operator's headers go on gatehouse's own answers too. */
	http__resp_edit(x, &e);
	int ln = http_add_header_lines(&e, lines, sizeof(lines));
	struct http_page_extra px = { .lines = lines, .lines_len = ln > 0 ? (size_t)ln : 0 };
	/* The operator's page for the status, if any: only the head is
	   written into page, its body follows it. */
	const struct conf_error_page *op = conf_http_error_page(s->conf, status);
	if (op != NULL && location == NULL) {
		px.body = op->body;
		px.body_len = op->len;
	}
	/* 3072 bytes for the page itself whatever the added lines take: a
	   redirect's Location has the same bound with or without them. */
	int n = http__page(&status, &location, msg, &why, &px, page, 3072 + px.lines_len);
	size_t body_len = n > 0 && px.body != NULL && status == op->status ? op->len : 0;
	http__answer_parts(x, status, page, n > 0 ? (size_t)n : 0, px.body, body_len, why);
}

void http__answer_kept(struct http_exchange *x)
{
	http__log(x);
	if (x->local_len > 0)
		http__out(x, x->local, x->local_len);
	http__finish(x, x->local_why);
}

void http__abort(struct http_exchange *x, const char *why)
{
	struct session *s = x->s;

	session_log(s, LOG_INFO, "%s %s: %s", x->method, x->path, why);
	x->status = x->status ? x->status : 502;
	x->phase = HTTP_X_DONE;
	x->conn->phase = HTTP_CONN_DONE;
	http__log(x);
	http__close(x, why);
}

/* ---- the route ---- */

static const char *http__protocol(const struct http_exchange *x)
{
	bool tls = x->grp != NULL ? x->grp->tls : x->s->conf->upstream.tls;

	return tls ? "httpssl" : "http";
}

/* The lookup query for x (its strings stay x's); the one place it is built. */
static struct route_query http__query(const struct http_exchange *x, bool bypass)
{
	const struct session *s = x->s;

	return (struct route_query){
		.login = x->route_name,
		.protocol = http__protocol(x),
		.client_ip = s->client_ip,
		.proxy_ip = s->local_ip,
		.attempt = 0,
		.bypass_cache = bypass,
		.by_id = x->kind == HTTP_ROUTE_ID,
		.host = x->host[0] ? x->host : NULL,
		.admin = x->grp != NULL && x->grp->admin,
	};
}

static void http__send_request(struct http_exchange *x)
{
	struct session *s = x->s;
	bool front = http__is_front(x);

	x->phase = HTTP_X_FORWARD;
	x->backend_gone = false;
	if (s->phase != SESSION_HTTP_FORWARD)
		session_set_phase(s, SESSION_HTTP_FORWARD);
	/* Behind the front, its backend is not read until its turn; the
	   deadline runs while its body is still to be sent. */
	session_upstream_reading(x->up, front);
	x->deadline_ms = front || !x->req_done ? session_now(s) + (uint64_t)(x->read_timeout * 1000.0 + 0.5)
					       : 0;
	http__arm(x->conn);
	session_upstream_write(x->up, x->fwd, x->fwd_len);
	if (s->closed || x->phase != HTTP_X_FORWARD)
		return;
	http__forward_body(x);
}

/* src into dst of cap bytes, cut to fit (snprintf's "%s" without its
   format parse: twice per proxied request). */
static void http__copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);

	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Ask for a connection to host:port: from the pool at once, else a new
   one that reports to x (upstream_connected) within connect_timeout. */
void http__route_to(struct http_exchange *x, const char *host, uint16_t port)
{
	const struct conf_upstream *g = x->grp;
	struct session_upstream_opts o;
	bool ready;

	if (x->up_host != host)
		http__copy_str(x->up_host, sizeof(x->up_host), host);
	x->up_port = port;
	x->phase = HTTP_X_CONNECT;
	if (g != NULL)
		o = (struct session_upstream_opts){ .tls = g->tls, .verify = g->verify, .sni = g->sni,
						    .group = g->name, .keepalive = g->keepalive };
	x->up = session_upstream_get_opts(x->s, x->up_host, port, g != NULL ? &o : NULL, x, &ready);
	if (x->up == NULL) {
		http__answer(x, 502, NULL, NULL, "no backend connection (out of memory)");
		return;
	}
	http__copy_str(x->up_addr, sizeof(x->up_addr), session_upstream_name(x->up));
	if (ready) {
		http__backend_connected(x, 0);
		return;
	}
	if (x->s->phase != SESSION_HTTP_FORWARD)
		session_set_phase(x->s, SESSION_HTTP_FORWARD); /* the phase gauge: busy */
	http__deadline(x, x->s->conf->limits.connect_timeout);
}

void http__backend_drop(struct http_exchange *x, bool reuse)
{
	if (x->in != NULL) {
		/* Unread backend bytes: the connection is not clean. */
		x->in->wipe = true;
		pbuf_put(x->in);
		x->in = NULL;
		reuse = false;
	}
	if (x->up != NULL) {
		/* Also mid-connect: that cancels the resolution, the connect
		   or the TLS handshake, and nothing more comes for x. */
		session_upstream_release(x->up, reuse);
		x->up = NULL;
	}
}

void http__route_hash(struct http_exchange *x)
{
	const struct conf *c = x->s->conf;

	if (x->grp != NULL) {
		/* A group's servers, with their health: another is tried when
		   one fails. */
		x->routed = false;
		http__group_pick(x);
		return;
	}
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
	struct http_conn *c = http__top(x);
	struct route_query q = http__query(x, bypass);

	x->phase = HTTP_X_ROUTE;
	/* The lookup client bounds its own time; this is the backstop. */
	x->deadline_ms = session_now(x->s) + (uint64_t)(x->read_timeout * 1000.0 + 0.5);
	if ((c->lookup != NULL && c->lookup != x) || c->lookup_orphan) {
		x->lookup_wait = true; /* the session runs one lookup at a time */
		http__arm(x->conn); /* x's own: an HTTP/2 stream's notes its deadline */
		return;
	}
	c->lookup = x;
	session_resolve(x->s, &q);
	http__arm(x->conn);
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
		http__group_ok(x);
		x->up_reused = session_upstream_reused(x->up);
		http__send_request(x);
		return;
	}
	if (x->routed && login_route_retry(&x->route, x->route_retried) &&
	    (http__top(x)->lookup == NULL || http__top(x)->lookup == x) &&
	    !http__top(x)->lookup_orphan) {
		/* A cached route to a backend that is gone: the mailbox may have
		   moved. The fresh lookup forgets it in the caches first. */
		struct route_query q = http__query(x, true);
		x->routed = false;
		x->phase = HTTP_X_ROUTE;
		http__top(x)->lookup = x;
		if (login_route_unreachable(x->s, &q, &x->route, &x->route_retried,
					    "web backend unreachable")) {
			http__deadline(x, x->read_timeout);
			return;
		}
		http__top(x)->lookup = NULL;
	}
	if (http__group_failed(x, status))
		return;
	if (status == UV_ETIMEDOUT)
		http__answer(x, 504, NULL, NULL, "backend connect timed out");
	else
		http__answer(x, 502, NULL, NULL, uv_strerror(status));
}

void http__backend_eof(struct http_exchange *x, int status)
{
	struct session *s = x->s;

	if (x->phase != HTTP_X_FORWARD)
		return;
	x->backend_gone = true;
	if (x->tunnel && status < 0 && status != UV_EOF)
		x->tunnel_err = true;
	/* A pooled connection the backend had just closed: if nothing of the
	   response came and no body byte was spent, send the request again on
	   a fresh connection (RFC 9112 §9.3.1: the request is safe to retry). */
	if (x->up_reused && x->resp_bytes_in == 0 && x->req_body_sent == 0 &&
	    !x->stale_retry_done) {
		x->stale_retry_done = true;
		session_log(s, LOG_DEBUG, "pooled connection to %s was closed; retrying on a new one",
			    x->up_addr);
		http__route_to(x, x->up_host, x->up_port);
		return;
	}
	http__process_backend(x);
}

/* ---- deadlines ---- */

void http__exchange_timeout(struct http_exchange *x)
{
	struct session *s = x->s;

	switch (x->phase) {
	case HTTP_X_ROUTE:
		http__answer(x, 504, NULL, NULL, "route lookup did not answer in time");
		return;
	case HTTP_X_CONNECT:
		session_log(s, LOG_WARN, "connecting to backend %s: timed out after %.1f s",
			    x->up_addr, s->conf->limits.connect_timeout);
		metrics_error(METRICS_ERR_BACKEND_CONNECT);
		http__backend_drop(x, false);
		http__backend_connected(x, UV_ETIMEDOUT);
		return;
	case HTTP_X_FORWARD:
		if (x->tunnel) {
			/* As HTTP/1.1's WebSocket relay: nothing either way
			   for limits.idle_timeout. */
			session_log(s, LOG_INFO, "WebSocket over HTTP/2 idle for %.0f s, closing",
				    s->conf->limits.idle_timeout);
			metrics_error(METRICS_ERR_TIMEOUT_IDLE);
			x->phase = HTTP_X_DONE;
			http__close(x, "WebSocket idle timeout");
			return;
		}
		metrics_error(METRICS_ERR_TIMEOUT_BACKEND);
		if (!http__is_front(x) || !x->resp_head_done)
			http__answer(x, 504, NULL, NULL, "backend did not answer in time");
		else
			http__abort(x, "backend stalled in the middle of the response");
		return;
	case HTTP_X_FILE:
		/* The client took nothing of the file for read_timeout. */
		http__abort(x, "client did not take the file in time");
		return;
	case HTTP_X_HEAD:
	case HTTP_X_DONE:
	case HTTP_X_NPHASES:
		return;
	}
}
