/*
 * http_stream.c - one exchange after its request head: the request body to
 * the backend, the response head and body to the client, each streamed with
 * backpressure (a side whose write queue passes limits.relay_high_water is
 * not fed until it drains), WebSocket hand-over on a 101, and the end of
 * the exchange (log, pool the backend, next request or close).
 *
 * Response bytes are handled in the backend's read buffer (x->in): a head
 * is parsed there, and body bytes go from there to the client, the whole
 * buffer handed over when they fill it (no copy in user space), else
 * copied once into the client's queue. Only a head that spans reads is
 * gathered in a head buffer (x->hbuf), and only its own bytes: what
 * follows it stays in the read buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "http_int.h"
#include "metrics.h"

/* The exchange is over: log it, pool the backend, and go on or close. */
void http__exchange_done(struct http_exchange *x)
{
	struct session *s = x->s;
	const struct http_head *rh = &x->resph;

	/* A backend that answered before the request body was all sent, or
	   that sent more than the response, cannot be reused, and the client's
	   unsent body bytes leave its connection unusable too. */
	bool reuse = rh->keep_alive && !rh->needs_eof && x->req_done && !x->backend_gone &&
		     x->in == NULL && x->hlen == 0 && !x->tunnel;
	if (!x->req_done)
		x->close_after = true;
	http__log(x);
	http__backend_drop(x, reuse);
	x->phase = HTTP_X_DONE;
	x->deadline_ms = 0;
	if (x->conn->h2s != NULL) {
		http2__finish(x); /* the stream ends; the connection goes on */
		return;
	}
	if (x->close_after) {
		x->conn->phase = HTTP_CONN_DONE;
		session_finish(s, "request done, connection: close");
		return;
	}
	http__exchange_free(x->conn, x);
	http__next_request(s);
}

/* ---- request body: client -> backend ---- */

/* n request body bytes went to the backend. */
static void http__body_sent(struct http_exchange *x, long n, bool done)
{
	if (n > 0) {
		metrics_relayed(true, (size_t)n);
		x->req_body_sent += (uint64_t)n;
	}
	if (done)
		x->req_done = true;
	/* Progress: the backend's silence counts from here (behind the
	   front, none once all is sent: it waits for its turn). */
	bool front = http__is_front(x);
	http__deadline(x, front || !x->req_done ? x->read_timeout : 0);
}

/* After body bytes moved: the body is over (the next bytes are a head), or
   later reads come whole while the backend keeps up, and not at all while
   it does not (upstream_written resumes them). */
static void http__body_reading(struct http_exchange *x)
{
	struct session *s = x->s;
	struct http_conn *c = x->conn;

	if (s->closed || s->finishing || x->phase != HTTP_X_FORWARD)
		return;
	if (c->h2s != NULL) { /* HTTP/2 flow control paces the client */
		if (x->req_done && c->body == x)
			c->body = NULL;
		return;
	}
	if (x->req_done) {
		if (c->body == x)
			c->body = NULL;
		session_client_direct(s, false);
		session_client_reading(s, true);
		return;
	}
	bool room = x->up != NULL &&
		    session_upstream_queued(x->up) <= s->conf->limits.relay_high_water;
	session_client_direct(s, s->in_len == 0);
	session_client_reading(s, room);
}

void http__forward_body(struct http_exchange *x)
{
	struct session *s = x->s;
	size_t hw = s->conf->limits.relay_high_water;

	if (x != x->conn->body)
		return;
	if (x->conn->h2s != NULL) {
		while (!s->closed && x->phase == HTTP_X_FORWARD && !x->req_done && x->up != NULL &&
		       session_upstream_open(x->up) && session_upstream_queued(x->up) <= hw) {
			bool done = false;
			long n = http2__body_step(x, &done);
			if (s->closed || x->phase != HTTP_X_FORWARD)
				return;
			if (n == 0 && !done)
				break;
			http__body_sent(x, n, done);
		}
		http__body_reading(x);
		return;
	}
	while (!s->closed && x->phase == HTTP_X_FORWARD && !x->req_done && x->up != NULL &&
	       session_upstream_open(x->up) && s->in_len > 0) {
		if (session_upstream_queued(x->up) > hw)
			break; /* upstream_written resumes */
		bool done = false;
		long n = http_parse_body(&x->req, s->in, s->in_len, &done);
		if (n < 0) {
			http__answer(x, 400, NULL, NULL, "malformed request body");
			return;
		}
		if (n > 0) {
			session_upstream_write(x->up, s->in, (size_t)n);
			if (s->closed || x->phase != HTTP_X_FORWARD)
				return;
			session_consume(s, (size_t)n);
		}
		http__body_sent(x, n, done);
	}
	http__body_reading(x);
}

void http__body_buf(struct http_exchange *x, struct pbuf *b)
{
	struct session *s = x->s;
	bool done = false;

	if (x->phase != HTTP_X_FORWARD || x->up == NULL || !session_upstream_open(x->up)) {
		/* Its backend is not there (any more): the bytes wait. */
		session_client_direct(s, false);
		session_client_unread(s, b);
		return;
	}
	long n = http_parse_body(&x->req, b->data + b->off, b->len, &done);
	if (n < 0) {
		b->wipe = true;
		pbuf_put(b);
		http__answer(x, 400, NULL, NULL, "malformed request body");
		return;
	}
	if ((size_t)n == b->len) {
		/* All of the read is body: the backend's stream takes it over. */
		session_upstream_write_buf(x->up, b);
		b = NULL;
	} else if (n > 0) {
		session_upstream_write(x->up, b->data + b->off, (size_t)n);
		b->off += (uint32_t)n;
		b->len -= (uint32_t)n;
	}
	if (b != NULL) /* the next request: parsed from s->in */
		session_client_unread(s, b);
	if (s->closed || x->phase != HTTP_X_FORWARD)
		return;
	http__body_sent(x, n, done);
	http__body_reading(x);
}

/* ---- response: backend -> client ---- */

void http__resp_edit(const struct http_exchange *x, struct http_resp_edit *e)
{
	const struct session *s = x->s;

	http_resp_edit_init(e, s->conf, x->host, strlen(x->host), x->loc);
	if ((s->listener->tls || s->tls_active) && x->host[0] != '\0') {
		e->https_host = x->host;
		e->https_host_len = strlen(x->host);
	}
	if (x->grp != NULL && x->grp->rewrite_redirects && x->host[0] != '\0' && x->up_port != 0) {
		e->back_host = x->host;
		e->back_host_len = strlen(x->host);
		e->back_port = x->up_port;
		e->back_https = s->listener->tls || s->tls_active;
	}
}

/* n bytes of x->in are handled; an emptied buffer goes back (wiped: it
   may have held Set-Cookie). */
void http__in_consume(struct http_exchange *x, size_t n)
{
	struct pbuf *b = x->in;

	b->off += (uint32_t)n;
	b->len -= (uint32_t)n;
	if (b->len == 0) {
		b->wipe = true;
		pbuf_put(b);
		x->in = NULL;
	}
}

static void http__start_websocket(struct http_exchange *x)
{
	struct session *s = x->s;
	struct session_upstream *up = x->up;

	http__log(x);
	session_log(s, LOG_DEBUG, "WebSocket to %s: relaying", x->up_addr);
	/* Frames the backend sent behind its 101 go first; the client's
	   early frames are in s->in (session_start_relay sends them). */
	if (x->in != NULL) {
		struct pbuf *b = x->in;
		x->in = NULL;
		http__out_buf(x, b);
		if (s->closed)
			return;
	}
	x->up = NULL;
	session_upstream_relay(up);
}

/*
 * A complete response head of head_len bytes is at base (the read buffer
 * or the head buffer; the caller lets go of those bytes after). Returns
 * true when the caller must stop: the session closed, or became a
 * WebSocket relay (then x is gone: session_start_relay freed it).
 */
static bool http__response_head(struct http_exchange *x, const uint8_t *base, int head_len,
				bool *relay_out)
{
	struct session *s = x->s;
	const struct http_head *rh = &x->resph;
	char out[20480];
	struct http_resp_edit e;

	*relay_out = false;
	http__resp_edit(x, &e);
	if (rh->status >= 100 && rh->status < 200 && rh->status != 101) {
		/* 100 Continue and friends go to the client; the real answer follows. */
		int n = http_rewrite_response(base, rh, &e, false, false, out, sizeof(out));
		if (n > 0 && !(x->reqh.major == 1 && x->reqh.minor == 0)) {
			x->bytes_sent += (uint64_t)n;
			http__out(x, out, (size_t)n);
			if (s->closed)
				return true;
		}
		http_parser_reset(&x->resp);
		if (x->is_head)
			http_parser_no_body(&x->resp);
		return false;
	}
	if (rh->status == 101) {
		if (!x->websocket || !x->req_done) {
			http__answer(x, 502, NULL, NULL, "backend switched protocols unasked");
			return true;
		}
		/* HTTP/2: our own key went to the backend; its answer must
		   carry that key's accept (RFC 6455 4.1), else it is no
		   WebSocket server and the stream gets no tunnel. */
		if (x->conn->h2s != NULL && !http2__ws_accepted(x, base, rh)) {
			http__answer(x, 502, NULL, NULL,
				     "backend's Sec-WebSocket-Accept does not match the key sent");
			return true;
		}
		int n = http_rewrite_response(base, rh, &e, false, false, out, sizeof(out));
		if (n < 0) {
			http__answer(x, 502, NULL, NULL, "backend response head too large");
			return true;
		}
		if (x->conn->h2s != NULL) {
			/* RFC 8441 5: the stream answers 200 and carries the
			   WebSocket's bytes from now on; no idle deadline but
			   the one of HTTP/1.1's relay (limits.idle_timeout). */
			if (!http2__tunnel_start(x, (const uint8_t *)out, (size_t)n)) {
				http__abort(x, "WebSocket answer not sendable");
				return true;
			}
			x->status = 200;
			x->resp_head_done = true;
			x->bytes_sent += (uint64_t)n;
			x->read_timeout = s->conf->limits.idle_timeout;
			http__log(x); /* as HTTP/1.1's 101: when the tunnel starts */
			x->tunnel = true;
			session_log(s, LOG_DEBUG, "WebSocket over HTTP/2 to %s: relaying", x->up_addr);
			http__deadline(x, x->read_timeout);
			return false;
		}
		x->status = 101;
		x->bytes_sent += (uint64_t)n;
		http__out(x, out, (size_t)n);
		if (s->closed)
			return true;
		*relay_out = true;
		return false;
	}
	bool client10 = x->reqh.major == 1 && x->reqh.minor == 0;
	if (!x->reqh.keep_alive || rh->needs_eof)
		x->close_after = true;
	(void)http__z_start(x, base, &e);
	int n = http_rewrite_response(base, rh, &e, x->close_after, client10, out, sizeof(out));
	if (n < 0) {
		http__answer(x, 502, NULL, NULL, "backend response head too large");
		return true;
	}
	x->status = rh->status;
	x->resp_head_done = true;
	x->bytes_sent += (uint64_t)n;
	http__out(x, out, (size_t)n);
	if (s->closed)
		return true;
	if (http_parser_body_done(&x->resp))
		x->resp_done = true;
	return false;
}

/* Room for a response head (as the response parser's bound). */
static size_t http__head_cap(const struct session *s)
{
	size_t cap = s->conf->http.max_header_size;

	return cap > HTTP_RESP_HEAD_MIN ? cap : HTTP_RESP_HEAD_MIN;
}

/* The response head tried in place, in the read buffer: 1 handled, -1
   stop, 0 not all there (the caller gathers it). */
static int http__head_in_place(struct http_exchange *x, const uint8_t *data, size_t len)
{
	int rc = http_parse_head(&x->resp, data, len);

	if (rc > 0) {
		bool relay;
		if (http__response_head(x, data, rc, &relay))
			return -1;
		http__in_consume(x, (size_t)rc);
		if (relay) {
			http__start_websocket(x);
			return -1;
		}
		return 1;
	}
	if (rc < 0) {
		http__answer(x, 502, NULL, NULL, "malformed response from backend");
		return -1;
	}
	if (len > http__head_cap(x->s)) {
		http__answer(x, 502, NULL, NULL, "backend response head too large");
		return -1;
	}
	return 0;
}

/*
 * Parse the response head from x->in, in place when it is all there, else
 * gathered in x->hbuf. Returns 1 when a head was handled (go on), 0 when
 * more bytes are needed, -1 when the caller must stop.
 */
static int http__head_step(struct http_exchange *x)
{
	struct session *s = x->s;
	struct pbuf *b = x->in;
	int rc;

	if (b == NULL)
		return 0;
	const uint8_t *data = b->data + b->off;
	if (x->hlen == 0 && (rc = http__head_in_place(x, data, b->len)) != 0)
		return rc;
	size_t cap = http__head_cap(s);
	if (x->hbuf == NULL) {
		x->hbuf = session_hbuf_get(cap);
		if (x->hbuf == NULL) {
			http__close(x, "out of memory");
			return -1;
		}
		x->hcap = cap;
	}
	/* The parser has seen x->hbuf[0 .. hlen) and, when the head was
	   tried in place just now, all of b: the same bytes. */
	size_t before = x->hlen;
	size_t n = b->len < x->hcap - before ? b->len : x->hcap - before;
	memcpy(x->hbuf + before, data, n);
	x->hlen += n;
	if (x->hlen > x->hused)
		x->hused = x->hlen;
	rc = before == 0 ? HTTP_NEED_MORE : http_parse_head(&x->resp, x->hbuf, x->hlen);
	if (rc == HTTP_NEED_MORE) {
		if (n < b->len || x->hlen >= x->hcap) {
			http__answer(x, 502, NULL, NULL, "backend response head too large");
			return -1;
		}
		http__in_consume(x, n);
		return 0;
	}
	if (rc < 0) {
		http__answer(x, 502, NULL, NULL, "malformed response from backend");
		return -1;
	}
	/* Bytes past the head's end stay in the read buffer. */
	http__in_consume(x, n - (x->hlen - (size_t)rc));
	bool relay;
	if (http__response_head(x, x->hbuf, rc, &relay))
		return -1;
	x->hlen = 0;
	if (relay) {
		http__start_websocket(x);
		return -1;
	}
	return 1;
}

/* Relay body bytes from x->in. Returns false when the caller must stop. */
static bool http__body_step(struct http_exchange *x)
{
	struct session *s = x->s;
	struct pbuf *b = x->in;
	bool done = false;

	if (x->z != NULL)
		return http__z_body_step(x);
	/* A tunnel's bytes are not HTTP: all of them pass. */
	long n = x->tunnel ? (long)b->len
			   : http_parse_body(&x->resp, b->data + b->off, b->len, &done);
	if (n < 0) {
		http__abort(x, "malformed response body from backend");
		return false;
	}
	if (n > 0) {
		metrics_relayed(false, (size_t)n);
		x->bytes_sent += (uint64_t)n;
		if ((size_t)n == b->len) {
			/* All of the read buffer is body: the client's stream
			   takes it over, no copy (wiped once written). */
			x->in = NULL;
			b->wipe = true;
			http__out_buf(x, b);
		} else {
			http__out(x, b->data + b->off, (size_t)n);
			if (!s->closed)
				http__in_consume(x, (size_t)n);
		}
		if (s->closed)
			return false;
		/* At the end the next phase sets its own deadline. */
		if (!done)
			http__deadline(x, x->read_timeout);
	}
	if (done)
		x->resp_done = true;
	return true;
}

void http__process_backend(struct http_exchange *x)
{
	struct session *s = x->s;
	size_t hw = s->conf->limits.relay_high_water;

	if (!http__is_front(x))
		return; /* answers go out in order: its turn comes (http__activate) */

	while (!s->closed && x->phase == HTTP_X_FORWARD && !x->resp_done) {
		if (!x->resp_head_done) {
			int rc = http__head_step(x);
			if (rc < 0)
				return;
			if (rc == 0)
				break;
			continue;
		}
		if (x->in == NULL)
			break;
		if (http__queued(x) > hw) {
			/* The client is the slow side now, not the backend:
			   the read timeout does not apply while it catches up. */
			http__deadline(x, s->conf->limits.idle_timeout);
			break; /* client_written resumes */
		}
		if (!http__body_step(x))
			return;
	}
	if (s->closed || x->phase != HTTP_X_FORWARD)
		return;
	if (!x->resp_done && x->backend_gone && x->in == NULL) {
		if (x->tunnel && x->tunnel_err) {
			http__abort(x, "WebSocket backend connection failed");
			return;
		} else if (x->tunnel) {
			x->resp_done = true; /* its EOF: END_STREAM once all is sent */
		} else if (x->resp_head_done && http_parse_eof(&x->resp)) {
			x->resp_done = true;
			x->close_after = true;
		} else if (x->resp_head_done) {
			http__abort(x, "backend closed in the middle of the response");
			return;
		} else {
			http__answer(x, 502, NULL, NULL, "backend closed without answering");
			return;
		}
	}
	if (x->resp_done) {
		if (!http__z_finish(x))
			return;
		http__exchange_done(x);
		return;
	}
	/* Read on once all that was read is handled; hold the backend while
	   bytes wait (the client is slow). */
	if (x->up != NULL)
		session_upstream_reading(x->up, x->in == NULL);
}
