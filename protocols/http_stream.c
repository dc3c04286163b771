/*
 * http_stream.c - one exchange after its request head: the request body to
 * the backend, the response head and body to the client, each streamed with
 * backpressure (a side whose write queue passes limits.relay_high_water is
 * not fed until it drains), WebSocket hand-over on a 101, and the end of
 * the exchange (log, pool the backend, next request or close).
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
		     s->bin_len == 0 && s->bin_pending == NULL;
	if (!x->req_done)
		x->close_after = true;
	http__log(x);
	x->phase = HTTP_X_DONE;
	session_backend_release(s, reuse);
	if (x->close_after || x->conn->client_eof) {
		x->conn->phase = HTTP_CONN_DONE;
		session_finish(s, "request done, connection: close");
		return;
	}
	http__exchange_free(x->conn, x);
	http__next_request(s);
}

/* ---- request body: client -> backend ---- */

void http__forward_body(struct http_exchange *x)
{
	struct session *s = x->s;
	size_t hw = s->conf->limits.relay_high_water;

	while (!s->closed && x->phase == HTTP_X_FORWARD && !x->req_done && s->backend != NULL &&
	       s->in_len > 0) {
		if (session_backend_queued(s) > hw)
			return; /* backend_written resumes */
		bool done = false;
		long n = http_parse_body(&x->req, s->in, s->in_len, &done);
		if (n < 0) {
			http__answer(x, 400, NULL, NULL, "malformed request body");
			return;
		}
		if (n > 0) {
			metrics_relayed(true, (size_t)n);
			x->req_body_sent += (uint64_t)n;
			session_backend_write(s, s->in, (size_t)n, false);
			if (s->closed || x->phase != HTTP_X_FORWARD)
				return;
			session_consume(s, (size_t)n);
			session_delay(s, s->conf->http.backend_timeout);
		}
		if (done)
			x->req_done = true;
	}
}

/* ---- response: backend -> client ---- */

static void http__start_websocket(struct http_exchange *x)
{
	struct session *s = x->s;

	http__log(x);
	session_log(s, LOG_DEBUG, "WebSocket to %s: relaying", s->backend_addr);
	/* Frames the client sent early are in s->in; the backend's in s->bin. */
	session_start_relay(s);
}

/* A complete response head is at the start of s->bin. */
/* Returns true when the caller must stop: the session closed, or became a
   WebSocket relay (then x is gone: session_start_relay freed it). */
static bool http__response_head(struct http_exchange *x, int head_len)
{
	struct session *s = x->s;
	const struct http_head *rh = &x->resph;
	char out[20480];

	if (rh->status >= 100 && rh->status < 200 && rh->status != 101) {
		/* 100 Continue and friends go to the client; the real answer follows. */
		int n = http_rewrite_response(s->bin, rh, false, false, out, sizeof(out));
		if (n > 0 && !(x->reqh.major == 1 && x->reqh.minor == 0)) {
			x->bytes_sent += (uint64_t)n;
			session_write(s, out, (size_t)n);
			if (s->closed)
				return true;
		}
		session_backend_consume(s, (size_t)head_len);
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
		int n = http_rewrite_response(s->bin, rh, false, false, out, sizeof(out));
		if (n < 0) {
			http__answer(x, 502, NULL, NULL, "backend response head too large");
			return true;
		}
		x->status = 101;
		x->bytes_sent += (uint64_t)n;
		session_write(s, out, (size_t)n);
		if (s->closed)
			return true;
		session_backend_consume(s, (size_t)head_len);
		http__start_websocket(x);
		return true;
	}
	bool client10 = x->reqh.major == 1 && x->reqh.minor == 0;
	if (!x->reqh.keep_alive || rh->needs_eof || x->conn->client_eof)
		x->close_after = true;
	int n = http_rewrite_response(s->bin, rh, x->close_after, client10, out, sizeof(out));
	if (n < 0) {
		http__answer(x, 502, NULL, NULL, "backend response head too large");
		return true;
	}
	x->status = rh->status;
	x->resp_head_done = true;
	x->bytes_sent += (uint64_t)n;
	session_write(s, out, (size_t)n);
	if (s->closed)
		return true;
	session_backend_consume(s, (size_t)head_len);
	if (http_parser_body_done(&x->resp))
		x->resp_done = true;
	return false;
}

void http__process_backend(struct http_exchange *x)
{
	struct session *s = x->s;
	size_t hw = s->conf->limits.relay_high_water;

	while (!s->closed && x->phase == HTTP_X_FORWARD && !x->resp_done) {
		if (!x->resp_head_done) {
			if (s->bin_len == 0)
				break;
			int rc = http_parse_head(&x->resp, s->bin, s->bin_len);
			if (rc == HTTP_NEED_MORE) {
				if (s->bin_len >= s->bin_cap) {
					http__answer(x, 502, NULL, NULL, "backend response head too large");
					return;
				}
				break;
			}
			if (rc < 0) {
				http__answer(x, 502, NULL, NULL, "malformed response from backend");
				return;
			}
			if (http__response_head(x, rc))
				return;
			continue;
		}
		if (s->bin_len == 0)
			break;
		if (session_client_queued(s) > hw) {
			/* The client is the slow side now, not the backend:
			   backend_timeout does not apply while it catches up. */
			session_delay(s, s->conf->limits.idle_timeout);
			return; /* client_written resumes */
		}
		bool done = false;
		long n = http_parse_body(&x->resp, s->bin, s->bin_len, &done);
		if (n < 0) {
			http__abort(x, "malformed response body from backend");
			return;
		}
		if (n > 0) {
			metrics_relayed(false, (size_t)n);
			x->bytes_sent += (uint64_t)n;
			session_write(s, s->bin, (size_t)n);
			if (s->closed)
				return;
			session_backend_consume(s, (size_t)n);
			/* At the end the next phase arms its own timer. */
			if (!done)
				session_delay(s, s->conf->http.backend_timeout);
		}
		if (done)
			x->resp_done = true;
	}
	if (s->closed || x->phase != HTTP_X_FORWARD)
		return;
	if (!x->resp_done && x->backend_gone && s->bin_len == 0) {
		if (x->resp_head_done && http_parse_eof(&x->resp)) {
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
	if (x->resp_done)
		http__exchange_done(x);
}
