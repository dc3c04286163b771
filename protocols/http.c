/*
 * http.c - the HTTP/HTTPS front end: keep-alive client connections whose
 * requests are each routed on their own (REST user, Basic user,
 * ZM_AUTH_TOKEN zimbraId, else a hash of the client address) to a backend
 * connection of their own, pooled per worker.
 *
 * Per request: read the head (bounded, timed) -> decide (mode, refusals,
 * route) -> resolve -> get a backend -> send the rewritten head, stream
 * the request body -> read the response head, send ours, stream its body
 * -> log, give the backend back to the pool. Pipelined requests are
 * parsed, routed and sent while earlier ones are in flight; answers go out
 * in order (http_conn.c). The connection (struct http_conn) and each
 * request (struct http_exchange) have their own phases, state and
 * deadlines (http_int.h); an exchange owns its backend connection. Bodies
 * are relayed as they come (chunked framing unchanged); a side whose write
 * queue passes limits.relay_high_water is not read further until it
 * drains. A 101 answer to a WebSocket upgrade turns the session into a
 * blind relay. This file: the exchanges' memory and the session_proto
 * hooks, each handing its event to the exchange it belongs to.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "gh.h"
#include "http_int.h"
#include "metrics.h"
#include "secret.h"

const char *const http_conn_phase_names[HTTP_CONN_NPHASES] = {
	[HTTP_CONN_IDLE] = "IDLE",
	[HTTP_CONN_HEAD] = "HEAD",
	[HTTP_CONN_BUSY] = "BUSY",
	[HTTP_CONN_DONE] = "DONE",
};
GH_NAMES_CHECK(http_conn_phase_names, HTTP_CONN_NPHASES);

const char *const http_x_phase_names[HTTP_X_NPHASES] = {
	[HTTP_X_HEAD] = "HEAD",
	[HTTP_X_ROUTE] = "ROUTE",
	[HTTP_X_CONNECT] = "CONNECT",
	[HTTP_X_FORWARD] = "FORWARD",
	[HTTP_X_FILE] = "FILE",
	[HTTP_X_DONE] = "DONE",
};
GH_NAMES_CHECK(http_x_phase_names, HTTP_X_NPHASES);

/* ---- exchanges ---- */

static int http__exchange_init(struct http_exchange *x, struct session *s)
{
	const struct conf *c = s->conf;

	x->reqhdr = calloc((size_t)c->http.max_headers, sizeof(*x->reqhdr));
	if (x->reqhdr == NULL)
		return -1;
	struct http_limits rl = {
		.max_head = c->http.max_header_size,
		.max_uri = c->http.max_uri,
		.max_headers = c->http.max_headers,
	};
	x->reqh.hdr = x->reqhdr;
	x->reqh.hdr_cap = c->http.max_headers;
	http_parser_init(&x->req, HTTP_REQUEST, &rl, &x->reqh);
	struct http_limits bl = {
		.max_head = c->http.max_header_size > HTTP_RESP_HEAD_MIN ? c->http.max_header_size
									  : HTTP_RESP_HEAD_MIN,
		.max_uri = 0,
		.max_headers = HTTP_RESP_HEADERS,
	};
	x->resph.hdr = x->resphdr;
	x->resph.hdr_cap = HTTP_RESP_HEADERS;
	http_parser_init(&x->resp, HTTP_RESPONSE, &bl, &x->resph);
	return 0;
}

/* Forget everything of the last request but the allocations. */
static void http__exchange_reset(struct http_exchange *x)
{
	http_parser_reset(&x->req);
	http_parser_reset(&x->resp);
	x->next = NULL;
	x->phase = HTTP_X_HEAD;
	x->req_done = x->resp_head_done = x->resp_done = false;
	x->close_after = x->backend_gone = x->websocket = x->is_head = false;
	x->tunnel = x->tunnel_err = false;
	x->stale_retry_done = x->route_retried = x->routed = false;
	x->req_body_sent = x->resp_bytes_in = x->bytes_sent = 0;
	x->start_ms = 0;
	x->status = 0;
	if (x->fwd != NULL) {
		/* An idle connection keeps no copy of the last head (cookies);
		   the block itself is kept for the next request. fwd_dirty
		   covers all that may have been written, a failed rewrite's
		   partial bytes included. */
		secret_wipe(x->fwd, x->fwd_dirty < x->fwd_cap ? x->fwd_dirty : x->fwd_cap);
		if (x->fwd_cap > HTTP_FWD_KEEP) {
			/* A large head's block is not kept: 32 kept HTTP/2
			   streams would hold up to 17 KiB each. */
			free(x->fwd);
			x->fwd = NULL;
			x->fwd_cap = 0;
		}
	}
	x->fwd_len = x->fwd_dirty = 0;
	http__backend_drop(x, false);
	http__file_drop(x);
	http__z_end(x);
	x->z_coding = HTTP_CODING_IDENTITY;
	x->up_reused = false;
	session_hbuf_put(x->hbuf, x->hcap, x->hused);
	x->hbuf = NULL;
	x->hlen = x->hcap = x->hused = 0;
	x->method[0] = x->host[0] = x->path[0] = '\0';
	x->loc = NULL;
	x->grp = NULL;
	x->srv = -1;
	x->npath_len = 0;
	if (x->npath != NULL)
		x->npath[0] = '\0';
	x->up_addr[0] = '\0';
	x->deadline_ms = 0;
	x->lookup_wait = false;
	free(x->local); /* an error page or a redirect to our own host */
	x->local = NULL;
	x->local_len = 0;
	x->local_why = NULL;
}

void http__exchange_destroy(struct http_exchange *x)
{
	if (x == NULL)
		return;
	free(x->reqhdr);
	http__file_drop(x);
	/* The session has closed its connections (x->up is not touched);
	   what x holds of the backend's bytes goes. */
	if (x->in != NULL) {
		x->in->wipe = true;
		pbuf_put(x->in);
	}
	session_hbuf_put(x->hbuf, x->hcap, x->hused);
	if (x->fwd) {
		/* It may hold Authorization and cookies (what was written). */
		secret_wipe(x->fwd, x->fwd_dirty < x->fwd_cap ? x->fwd_dirty : x->fwd_cap);
		free(x->fwd);
	}
	free(x->local);
	free(x->npath);
	http__z_end(x);
	/* What it wrote of the request (path, host, route, user) lies from
	   fwd on; before it are the parsers' state and the header indexes
	   (offsets into buffers wiped on their own), 3.6 KiB of the 7.7 that
	   need no wipe: an HTTP/2 connection destroys an exchange per stream
	   when its kept streams go. */
	secret_wipe((char *)x + offsetof(struct http_exchange, fwd),
		    sizeof(*x) - offsetof(struct http_exchange, fwd));
	free(x);
}

void http__exchange_release(struct http_exchange *x)
{
	if (x == NULL)
		return;
	http__exchange_reset(x);
	http__exchange_destroy(x);
}

struct http_exchange *http__exchange_new(struct http_conn *c)
{
	struct http_exchange *x = c->spare;

	if (x != NULL) {
		c->spare = NULL;
	} else {
		x = calloc(1, sizeof(*x));
		if (x == NULL || http__exchange_init(x, c->s) < 0) {
			free(x);
			return NULL;
		}
		x->s = c->s;
		x->conn = c;
		http__exchange_reset(x);
	}
	x->read_timeout = c->s->conf->http.backend_timeout;
	*c->tail = x;
	c->tail = &x->next;
	c->nx++;
	return x;
}

void http__exchange_free(struct http_conn *c, struct http_exchange *x)
{
	/* x is the front: HTTP/1.1 ends exchanges in order. */
	if (GH_BUG_ON(x != c->head)) {
		session_close(c->s, "HTTP exchange ended out of order");
		return;
	}
	c->head = x->next;
	if (c->head == NULL)
		c->tail = &c->head;
	c->nx--;
	if (c->body == x)
		c->body = NULL;
	if (c->lookup == x)
		c->lookup = NULL;
	http__exchange_reset(x);
	if (c->spare == NULL)
		c->spare = x;
	else
		http__exchange_destroy(x);
}

void http__idle_release(struct http_conn *c)
{
	http__exchange_destroy(c->spare);
	c->spare = NULL;
}

/* ---- session_proto ---- */

static int http_start(struct session *s)
{
	const struct conf *c = s->conf;
	struct http_conn *hc = calloc(1, sizeof(*hc));

	if (hc == NULL)
		return -1;
	if (session_set_input_size(s, c->http.max_header_size + 1) < 0) {
		free(hc);
		return -1;
	}
	hc->s = s;
	hc->phase = HTTP_CONN_IDLE;
	hc->tail = &hc->head;
	/* The first request head gets header_timeout from the accept, as
	   session_set_phase(SESSION_HTTP_IDLE) arms it. */
	hc->deadline_ms = session_now(s) + (uint64_t)(c->http.header_timeout * 1000.0 + 0.5);
	s->proto_state = hc;
	return 0;
}

/* The client's ALPN chose HTTP/2: this connection speaks it. */
static bool http__h2_wanted(struct session *s)
{
	return s->listener->tls && s->listener->http2 && session_client_alpn_h2(s);
}

static void http_client_data(struct session *s)
{
	struct http_conn *c = http__of(s);

	if (c == NULL)
		return;
	if (c->h2 == NULL && c->head == NULL && c->phase == HTTP_CONN_IDLE && http__h2_wanted(s) &&
	    http2__start(c) < 0) {
		session_close(s, "out of memory");
		return;
	}
	if (c->h2 != NULL) {
		http2__client_data(c);
		return;
	}
	http__read_on(s);
}

/* After an event of an HTTP/2 connection: its output and its streams. */
static void http__h2_after(struct session *s)
{
	http2__after(s);
}

static void http_client_buf(struct session *s, struct pbuf *b)
{
	struct http_conn *c = http__of(s);

	if (c == NULL || c->h2 != NULL || c->body == NULL || c->phase == HTTP_CONN_DONE) {
		session_client_direct(s, false);
		session_client_unread(s, b);
		if (c != NULL)
			http__read_on(s);
		return;
	}
	http__body_buf(c->body, b);
	http__read_on(s);
}

/* The last exchange in flight (not reading its head), or NULL. */
static struct http_exchange *http__last(struct http_conn *c)
{
	struct http_exchange *last = NULL;

	for (struct http_exchange *x = c->head; x != NULL; x = x->next) {
		if (x->phase != HTTP_X_HEAD)
			last = x;
	}
	return last;
}

static void http_client_eof(struct session *s, int status)
{
	struct http_conn *c = http__of(s);
	struct http_exchange *x = c ? http__last(c) : NULL;

	if (c != NULL && c->h2 != NULL) {
		session_close(s, status == UV_EOF ? "client closed" : "client connection error");
		return;
	}
	/* DONE with exchanges still in flight: one behind them was answered
	   locally (kept); the ones before it still get their answers. */
	if (c == NULL || x == NULL || status != UV_EOF || s->finishing ||
	    (c->phase != HTTP_CONN_BUSY && c->phase != HTTP_CONN_DONE)) {
		session_close(s, status == UV_EOF ? "client closed" : "client connection error");
		return;
	}
	/* Half-close after complete requests: answer them, then close. */
	c->client_eof = true;
	x->close_after = true;
	if (c->body != NULL && c->body->phase != HTTP_X_DONE && s->in_len == 0)
		session_close(s, "client closed in the middle of a request");
}

static void http_route_done(struct session *s, const struct route *r)
{
	struct http_conn *c = http__of(s);
	struct http_exchange *x = c->lookup;

	c->lookup = NULL;
	c->lookup_orphan = false;
	if (x != NULL && x->phase == HTTP_X_ROUTE)
		http__route_done(x, r);
	if (s->closed || s->finishing || c->lookup != NULL || c->lookup_orphan)
		goto out;
	if (c->h2 != NULL) {
		x = http2__lookup_next(c);
		if (x != NULL) {
			x->lookup_wait = false;
			http__resolve(x, false);
		}
		goto out;
	}
	/* The session runs one lookup at a time: the next waiting one. */
	for (x = c->head; x != NULL; x = x->next) {
		if (x->lookup_wait && x->phase == HTTP_X_ROUTE) {
			x->lookup_wait = false;
			http__resolve(x, false);
			return;
		}
	}
out:
	http__h2_after(s);
}

static void http_upstream_connected(struct session *s, void *owner, int status)
{
	struct http_exchange *x = owner;

	if (GH_BUG_ON(x->phase != HTTP_X_CONNECT)) {
		session_close(s, "backend connect for an exchange not connecting");
		return;
	}
	if (status != 0)
		x->up = NULL; /* gone: the session forgets it too */
	http__backend_connected(x, status);
	http__h2_after(s);
}

static void http_upstream_read(struct session *s, void *owner, struct pbuf *b, int status)
{
	struct http_exchange *x = owner;

	if (b == NULL) {
		x->up = NULL; /* closed: the session forgets it too */
		if (x->phase != HTTP_X_DONE)
			http__backend_eof(x, status);
		http__h2_after(s);
		return;
	}
	if (x->phase != HTTP_X_FORWARD || x->in != NULL) {
		/* Nothing is asked of this backend now (or, which cannot
		   happen, it sent while its last bytes wait). */
		b->wipe = true;
		pbuf_put(b);
		http__backend_drop(x, false);
		return;
	}
	x->resp_bytes_in += b->len;
	x->in = b;
	if (!http__is_front(x)) {
		/* An answer before its turn: held, its backend not read. */
		session_upstream_reading(x->up, false);
		return;
	}
	http__process_backend(x);
	http__h2_after(s);
}

static void http_upstream_written(struct session *s, void *owner)
{
	struct http_exchange *x = owner;

	if (x->phase == HTTP_X_FORWARD && x->up != NULL && x == x->conn->body &&
	    session_upstream_queued(x->up) <= s->conf->limits.relay_high_water / 2) {
		http__forward_body(x);
		if (x->conn->h2s == NULL)
			http__read_on(s);
	}
	http__h2_after(s);
}

static void http_client_written(struct session *s)
{
	struct http_exchange *x = http__front(s);

	if (http__of(s) != NULL && http__of(s)->h2 != NULL) {
		http2__client_written(http__of(s));
		return;
	}
	if (x && x->phase == HTTP_X_FILE) {
		http__file_written(x);
		return;
	}
	if (x && x->phase == HTTP_X_FORWARD &&
	    session_client_queued(s) <= s->conf->limits.relay_high_water / 2)
		http__process_backend(x);
}

/* The connection's own deadline passed. */
static void http__conn_timeout(struct http_conn *c)
{
	struct session *s = c->s;
	struct http_exchange *x = c->head;

	c->deadline_ms = 0;
	if (c->phase == HTTP_CONN_HEAD && x != NULL) {
		x->start_ms = session_now(s);
		http__answer(x, 408, NULL, NULL, "request head not complete in time");
		return;
	}
	session_close(s, c->phase == HTTP_CONN_IDLE ? "keep-alive timeout" : "timeout");
}

static void http_timeout(struct session *s)
{
	struct http_conn *c = http__of(s);

	if (c == NULL) {
		session_close(s, "timeout");
		return;
	}
	if (c->h2 != NULL) {
		http2__timeout(c);
		return;
	}
	uint64_t now = session_now(s);
	if (c->release_ms != 0 && c->release_ms <= now) {
		c->release_ms = 0;
		if (c->phase == HTTP_CONN_IDLE && c->head == NULL)
			http__idle_release(c);
	}
	if (c->deadline_ms != 0 && c->deadline_ms <= now) {
		http__conn_timeout(c);
		return;
	}
	/* Each deadline that passed ends its own exchange; a kept answer
	   leaves the others going. The list may change: start over. */
	for (struct http_exchange *x = c->head; x != NULL && !s->closed && !s->finishing;) {
		if (x->deadline_ms == 0 || x->deadline_ms > now) {
			x = x->next;
			continue;
		}
		x->deadline_ms = 0;
		http__exchange_timeout(x);
		x = c->head;
	}
	http__arm(c);
}

static void http_drain(struct session *s)
{
	struct http_conn *c = http__of(s);

	if (c != NULL && c->h2 != NULL)
		http2__drain(c);
}

static void http_tls_started(struct session *s)
{
	session_close(s, "STARTTLS does not exist in HTTP");
}

static void http_destroy(struct session *s)
{
	struct http_conn *c = http__of(s);

	if (c == NULL)
		return;
	http2__destroy(c);
	while (c->head != NULL) {
		struct http_exchange *x = c->head;
		c->head = x->next;
		http__exchange_destroy(x);
	}
	http__exchange_destroy(c->spare);
	secret_wipe(c, sizeof(*c));
	free(c);
	s->proto_state = NULL;
}

const struct session_proto http_proto = {
	.name = "http",
	.first_phase = SESSION_HTTP_IDLE,
	.busy_line = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
	.start = http_start,
	.client_data = http_client_data,
	.client_eof = http_client_eof,
	.route_done = http_route_done,
	.timeout = http_timeout,
	.tls_started = http_tls_started,
	.destroy = http_destroy,
	.client_written = http_client_written,
	.upstream_connected = http_upstream_connected,
	.upstream_read = http_upstream_read,
	.upstream_written = http_upstream_written,
	.client_buf = http_client_buf,
	.drain = http_drain,
};
