/*
 * http.c - the HTTP/HTTPS front end: one request at a time on a keep-alive
 * client connection, each routed on its own (REST user, Basic user,
 * ZM_AUTH_TOKEN zimbraId, else a hash of the client address) to a pooled
 * backend connection.
 *
 * Per request: read the head (bounded, timed) -> decide (mode, refusals,
 * route) -> resolve -> get a backend -> send the rewritten head, stream
 * the request body -> read the response head, send ours, stream its body
 * -> log, give the backend back to the pool, and read the next request.
 * Pipelined requests wait in s->in until the response before them is done,
 * so answers go out in order. The connection (struct http_conn) and each
 * request (struct http_exchange) have their own phases and state
 * (http_int.h); an exchange owns its backend connection. Bodies are relayed as they come (chunked
 * framing unchanged); a side whose write queue passes limits.relay_high_water
 * is not read further until it drains. A 101 answer to a WebSocket upgrade
 * turns the session into a blind relay.
 */
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
	[HTTP_X_DONE] = "DONE",
};
GH_NAMES_CHECK(http_x_phase_names, HTTP_X_NPHASES);

/* ---- the connection's phases ---- */

void http__conn_phase(struct http_conn *c, enum http_conn_phase p)
{
	struct session *s = c->s;

	c->phase = p;
	switch (p) {
	case HTTP_CONN_IDLE:
		session_set_phase(s, SESSION_HTTP_IDLE);
		session_delay(s, s->conf->http.keepalive_timeout);
		break;
	case HTTP_CONN_HEAD:
		/* Armed once, at the first byte (slowloris). */
		session_delay(s, s->conf->http.header_timeout);
		break;
	case HTTP_CONN_BUSY:  /* the front exchange's steps arm the timer */
	case HTTP_CONN_DONE:
	case HTTP_CONN_NPHASES:
		break;
	}
}

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
	x->stale_retry_done = x->route_retried = x->routed = false;
	x->req_body_sent = x->resp_bytes_in = x->bytes_sent = 0;
	x->start_ms = 0;
	x->status = 0;
	if (x->fwd != NULL) {
		/* An idle connection keeps no copy of the last head (cookies).
		   All of the block, not fwd_len: the wipe must not depend on
		   knowing how far a rewrite got. */
		secret_wipe(x->fwd, x->fwd_cap);
		free(x->fwd);
		x->fwd = NULL;
		x->fwd_cap = 0;
	}
	x->fwd_len = 0;
	http__backend_drop(x, false);
	x->up_reused = false;
	session_hbuf_put(x->hbuf, x->hcap, x->hused);
	x->hbuf = NULL;
	x->hlen = x->hcap = x->hused = 0;
	x->method[0] = x->host[0] = x->path[0] = '\0';
	x->upstream = false;
}

static void http__exchange_destroy(struct http_exchange *x)
{
	if (x == NULL)
		return;
	free(x->reqhdr);
	/* The session has closed its connections (x->up is not touched);
	   what x holds of the backend's bytes goes. */
	if (x->in != NULL) {
		x->in->wipe = true;
		pbuf_put(x->in);
	}
	session_hbuf_put(x->hbuf, x->hcap, x->hused);
	if (x->fwd) {
		/* It may hold Authorization and cookies. */
		secret_wipe(x->fwd, x->fwd_cap);
		free(x->fwd);
	}
	secret_wipe(x, sizeof(*x));
	free(x);
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
	*c->tail = x;
	c->tail = &x->next;
	return x;
}

void http__exchange_free(struct http_conn *c, struct http_exchange *x)
{
	/* x is the front: HTTP/1.1 ends exchanges in order. */
	c->head = x->next;
	if (c->head == NULL)
		c->tail = &c->head;
	http__exchange_reset(x);
	if (c->spare == NULL)
		c->spare = x;
	else
		http__exchange_destroy(x);
}

/* ---- the next request ---- */

static void http__process_head(struct session *s);

void http__next_request(struct session *s)
{
	struct http_conn *c = http__of(s);

	/* s->backend_addr stays: the next request to the same backend need
	   not format it again. Logs name it only once x->upstream is set. */
	http__conn_phase(c, HTTP_CONN_IDLE);
	session_client_reading(s, true);
	if (s->in_len > 0)
		http__process_head(s);
}

static void http__process_head(struct session *s)
{
	struct http_conn *c = http__of(s);

	if ((c->phase != HTTP_CONN_IDLE && c->phase != HTTP_CONN_HEAD) || s->closed ||
	    s->in_len == 0)
		return;
	struct http_exchange *x = c->head;
	if (x == NULL && (x = http__exchange_new(c)) == NULL) {
		session_close(s, "out of memory");
		return;
	}
	int rc = http_parse_head(&x->req, s->in, s->in_len);
	if (rc == HTTP_NEED_MORE) {
		/* The first byte of a request starts its head timer. A head
		   that is complete at once needs none: every way on from here
		   arms the timer of its own phase. */
		if (c->phase == HTTP_CONN_IDLE)
			http__conn_phase(c, HTTP_CONN_HEAD);
		return;
	}
	c->phase = HTTP_CONN_BUSY;
	if (rc < 0) {
		x->start_ms = session_now(s);
		http__answer(x, -rc, NULL, NULL,
			     rc == HTTP_E_URI ? "request-target too long"
			     : rc == HTTP_E_HEADERS ? "request head too large"
			     : "malformed request");
		return;
	}
	http__request(x, rc);
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
	s->proto_state = hc;
	return 0;
}

static void http_client_data(struct session *s)
{
	struct http_conn *c = http__of(s);

	if (c == NULL)
		return;
	switch (c->phase) {
	case HTTP_CONN_IDLE:
	case HTTP_CONN_HEAD:
		http__process_head(s);
		break;
	case HTTP_CONN_BUSY:
		if (c->head != NULL && c->head->phase == HTTP_X_FORWARD)
			http__forward_body(c->head);
		break;
	default:
		/* Body bytes or the next request: they wait in s->in. */
		break;
	}
}

static void http_client_eof(struct session *s, int status)
{
	struct http_conn *c = http__of(s);
	struct http_exchange *x = c ? c->head : NULL;

	if (c == NULL || c->phase != HTTP_CONN_BUSY || x == NULL || status != UV_EOF) {
		session_close(s, status == UV_EOF ? "client closed" : "client connection error");
		return;
	}
	/* Half-close after a complete request: answer it, then close. */
	c->client_eof = true;
	x->close_after = true;
	if (!x->req_done && s->in_len == 0)
		session_close(s, "client closed in the middle of a request");
}

/* The session's results go to the exchange that asked for them: with
   HTTP/1.1 the front one, the only one that routes or has a backend. */
static struct http_exchange *http__waiting(struct session *s, enum http_x_phase p)
{
	struct http_exchange *x = http__front(s);

	return x != NULL && x->phase == p ? x : NULL;
}

static void http_route_done(struct session *s, const struct route *r)
{
	struct http_exchange *x = http__waiting(s, HTTP_X_ROUTE);

	if (x != NULL)
		http__route_done(x, r);
}

static void http_backend_connected(struct session *s, int status)
{
	struct http_exchange *x = http__waiting(s, HTTP_X_CONNECT);

	if (x != NULL)
		http__backend_connected(x, status);
}

static void http_backend_eof(struct session *s, int status)
{
	/* Only while connecting: later the exchange's own connection reports. */
	struct http_exchange *x = http__waiting(s, HTTP_X_CONNECT);

	if (x != NULL)
		http__backend_eof(x, status);
}

static void http_upstream_read(struct session *s, void *owner, struct pbuf *b, int status)
{
	struct http_exchange *x = owner;

	if (b == NULL) {
		x->up = NULL; /* closed: the session forgets it too */
		if (x->phase != HTTP_X_DONE)
			http__backend_eof(x, status);
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
	http__process_backend(x);
}

static void http_upstream_written(struct session *s, void *owner)
{
	struct http_exchange *x = owner;

	if (x->phase == HTTP_X_FORWARD && x->up != NULL &&
	    session_upstream_queued(x->up) <= s->conf->limits.relay_high_water / 2)
		http__forward_body(x);
}

static void http_client_written(struct session *s)
{
	struct http_exchange *x = http__waiting(s, HTTP_X_FORWARD);

	if (x && session_client_queued(s) <= s->conf->limits.relay_high_water / 2)
		http__process_backend(x);
}

static void http_timeout(struct session *s)
{
	struct http_conn *c = http__of(s);
	struct http_exchange *x = c ? c->head : NULL;

	if (c == NULL) {
		session_close(s, "timeout");
		return;
	}
	switch (c->phase) {
	case HTTP_CONN_IDLE:
		session_close(s, "keep-alive timeout");
		return;
	case HTTP_CONN_HEAD:
		x->start_ms = session_now(s);
		http__answer(x, 408, NULL, NULL, "request head not complete in time");
		return;
	case HTTP_CONN_BUSY:
		if (x != NULL && x->phase == HTTP_X_FORWARD) {
			if (!x->resp_head_done)
				http__answer(x, 504, NULL, NULL, "backend did not answer in time");
			else
				http__abort(x, "backend stalled in the middle of the response");
			return;
		}
		session_close(s, "timeout");
		return;
	default:
		session_close(s, "timeout");
		return;
	}
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
	.backend_connected = http_backend_connected,
	.backend_eof = http_backend_eof,
	.timeout = http_timeout,
	.tls_started = http_tls_started,
	.destroy = http_destroy,
	.client_written = http_client_written,
	.upstream_read = http_upstream_read,
	.upstream_written = http_upstream_written,
};
