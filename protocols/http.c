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
 * so answers go out in order. Bodies are relayed as they come (chunked
 * framing unchanged); a side whose write queue passes limits.relay_high_water
 * is not read further until it drains. A 101 answer to a WebSocket upgrade
 * turns the session into a blind relay.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "access.h"
#include "conf.h"
#include "http_int.h"
#include "metrics.h"
#include "secret.h"

static const char *hc__protocol(struct session *s)
{
	return s->conf->upstream.tls ? "httpssl" : "http";
}

/* ---- logging and local answers ---- */

void http__log(struct session *s, struct http_conn *hc)
{
	struct access_entry e = {
		.method = hc->method[0] ? hc->method : NULL,
		.host = hc->host,
		.path = hc->path,
		.status = hc->status,
		.bytes = hc->bytes_sent,
		.upstream = hc->upstream && s->backend_addr[0] ? s->backend_addr : NULL,
		.ms = session_now(s) - hc->start_ms,
	};
	metrics_http_response(hc->status);
	access_log(s, &e);
}

/* Answer the current request ourselves and close the connection. */
void http__answer(struct session *s, int status, const char *location, const char *msg,
		       const char *why)
{
	struct http_conn *hc = http__of(s);
	char page[3072];

	if (hc->state == HTTP_ST_DONE)
		return;
	hc->state = HTTP_ST_DONE;
	if (s->backend)
		session_backend_release(s, false);
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
	hc->status = status;
	hc->bytes_sent += n > 0 ? (uint64_t)n : 0;
	if (hc->start_ms == 0)
		hc->start_ms = session_now(s);
	if (status >= 500)
		session_log(s, LOG_INFO, "%d for %s %s: %s", status, hc->method, hc->path, why);
	else
		session_log(s, LOG_DEBUG, "%d for %s %s: %s", status, hc->method, hc->path, why);
	http__log(s, hc);
	/* A failed write closes the session; hc stays valid until this
	   returns to the loop (session.h), and session_finish is then a no-op. */
	if (n > 0)
		session_write(s, page, (size_t)n);
	session_finish(s, why);
}

/* The response is cut short after it started: nothing to say, just close. */
void http__abort(struct session *s, const char *why)
{
	struct http_conn *hc = http__of(s);

	session_log(s, LOG_INFO, "%s %s: %s", hc->method, hc->path, why);
	hc->status = hc->status ? hc->status : 502;
	hc->state = HTTP_ST_DONE;
	http__log(s, hc);
	session_close(s, why);
}

/* ---- the next request ---- */

static void hc__process_head(struct session *s);

void http__next_request(struct session *s)
{
	struct http_conn *hc = http__of(s);

	http_parser_reset(&hc->req);
	http_parser_reset(&hc->resp);
	hc->state = HTTP_ST_HEAD;
	hc->head_started = false;
	hc->req_done = hc->resp_head_done = hc->resp_done = false;
	hc->close_after = hc->backend_gone = hc->websocket = hc->is_head = false;
	hc->stale_retry_done = hc->route_retried = hc->routed = false;
	hc->req_body_sent = hc->resp_bytes_in = hc->bytes_sent = 0;
	hc->status = 0;
	if (hc->fwd != NULL) {
		/* An idle connection keeps no copy of the last head (cookies).
		   All of the block, not fwd_len: the wipe must not depend on
		   knowing how far a rewrite got. */
		secret_wipe(hc->fwd, hc->fwd_cap);
		free(hc->fwd);
		hc->fwd = NULL;
		hc->fwd_cap = 0;
	}
	hc->fwd_len = 0;
	hc->method[0] = hc->host[0] = hc->path[0] = '\0';
	/* s->backend_addr stays: the next request to the same backend need
	   not format it again. Logs name it only once hc->upstream is set. */
	hc->upstream = false;
	session_set_phase(s, SESSION_PREAUTH);
	session_delay(s, s->conf->http.keepalive_timeout);
	session_client_reading(s, true);
	if (s->in_len > 0)
		hc__process_head(s);
}

/* ---- backend connection ---- */

static void hc__send_request(struct session *s)
{
	struct http_conn *hc = http__of(s);

	hc->state = HTTP_ST_FORWARD;
	hc->backend_gone = false;
	session_set_phase(s, SESSION_BACKEND_LOGIN);
	session_delay(s, s->conf->http.backend_timeout);
	session_backend_reading(s, true);
	session_backend_write(s, hc->fwd, hc->fwd_len, false);
	if (s->closed || hc->state != HTTP_ST_FORWARD)
		return;
	http__forward_body(s);
}

static void http_backend_connected(struct session *s, int status);

static void hc__route_to(struct session *s, const char *host, uint16_t port)
{
	struct http_conn *hc = http__of(s);

	hc->state = HTTP_ST_CONNECT;
	hc->upstream = true;
	/* A pooled connection is ready at once; a new one reports later. */
	if (session_backend_acquire(s, host, port))
		http_backend_connected(s, 0);
}

/* No user in the request, or its lookup failed: hash the client address. */
void http__route_hash(struct session *s)
{
	const struct conf *c = s->conf;

	if (c->http.nbackends == 0) {
		http__answer(s, 503, NULL, NULL, "no web backend configured (http.backends)");
		return;
	}
	const struct conf_http_backend *b =
		&c->http.backends[http_ip_hash(s->client_ip, (unsigned)c->http.nbackends)];
	hc__route_to(s, b->host, b->port);
}

void http__resolve(struct session *s, bool bypass)
{
	struct http_conn *hc = http__of(s);
	struct route_query q = {
		.login = hc->route_name,
		.protocol = hc__protocol(s),
		.client_ip = s->client_ip,
		.proxy_ip = s->local_ip,
		.attempt = 0,
		.bypass_cache = bypass,
		.by_id = hc->kind == HTTP_ROUTE_ID,
		.host = hc->host[0] ? hc->host : NULL,
	};
	hc->state = HTTP_ST_ROUTE;
	session_resolve(s, &q);
}

static void http_route_done(struct session *s, const struct route *r)
{
	struct http_conn *hc = http__of(s);

	if (hc == NULL || hc->state != HTTP_ST_ROUTE)
		return;
	if (r->result == ROUTE_OK) {
		hc->route = *r;
		hc->routed = true;
		hc__route_to(s, r->host, r->port);
		return;
	}
	/* Zimbra's lookup says "... is not allowed ..." when the client's
	   address is refused for the domain: that is a 403, not a fallback. */
	if (r->result == ROUTE_DENIED && (strstr(r->reason, "not allowed") != NULL ||
					  strstr(r->reason, "denied") != NULL)) {
		http__answer(s, 403, NULL, NULL, "access denied by the lookup service");
		return;
	}
	session_log(s, LOG_DEBUG, "no route for %s %s (%s): client-IP hash",
		    hc->kind == HTTP_ROUTE_ID ? "id" : "user", hc->route_name, r->reason);
	http__route_hash(s);
}

static void http_backend_connected(struct session *s, int status)
{
	struct http_conn *hc = http__of(s);

	if (hc == NULL || hc->state != HTTP_ST_CONNECT)
		return;
	if (status == 0) {
		hc__send_request(s);
		return;
	}
	if (hc->routed && !hc->route_retried &&
	    (hc->route.source == ROUTE_SRC_L1 || hc->route.source == ROUTE_SRC_MEMCACHED)) {
		/* A cached route to a backend that is gone: the mailbox may have
		   moved. Forget it and look up once more. */
		struct route_query q = {
			.login = hc->route_name, .protocol = hc__protocol(s),
			.client_ip = s->client_ip, .proxy_ip = s->local_ip,
			.by_id = hc->kind == HTTP_ROUTE_ID, .host = hc->host[0] ? hc->host : NULL,
		};
		session_route_invalidate(s, &q, &hc->route);
		hc->route_retried = true;
		hc->routed = false;
		http__resolve(s, true);
		return;
	}
	if (status == UV_ETIMEDOUT)
		http__answer(s, 504, NULL, NULL, "backend connect timed out");
	else
		http__answer(s, 502, NULL, NULL, uv_strerror(status));
}

static void http_backend_data(struct session *s)
{
	struct http_conn *hc = http__of(s);

	if (hc == NULL)
		return;
	if (hc->state != HTTP_ST_FORWARD) {
		/* Nothing is asked of this backend now. */
		session_backend_release(s, false);
		return;
	}
	hc->resp_bytes_in += s->bin_len;
	http__process_backend(s);
}

static void http_backend_eof(struct session *s, int status)
{
	struct http_conn *hc = http__of(s);

	if (hc == NULL || hc->state == HTTP_ST_DONE)
		return;
	if (hc->state == HTTP_ST_CONNECT) {
		http_backend_connected(s, status < 0 && status != UV_EOF ? status : UV_ECONNRESET);
		return;
	}
	if (hc->state != HTTP_ST_FORWARD)
		return;
	hc->backend_gone = true;
	/* A pooled connection the backend had just closed: if nothing of the
	   response came and no body byte was spent, send the request again on
	   a fresh connection (RFC 9112 §9.3.1: the request is safe to retry). */
	if (s->backend_reused && hc->resp_bytes_in == 0 && hc->req_body_sent == 0 &&
	    !hc->stale_retry_done) {
		hc->stale_retry_done = true;
		session_log(s, LOG_DEBUG, "pooled connection to %s was closed; retrying on a new one",
			    s->backend_addr);
		char host[ROUTE_MAX_HOST];
		snprintf(host, sizeof(host), "%s", s->backend_host);
		const char *colon = strrchr(s->backend_addr, ':');
		uint16_t port = colon ? (uint16_t)atoi(colon + 1) : 0;
		hc__route_to(s, host, port);
		return;
	}
	http__process_backend(s);
}

static void http_backend_written(struct session *s)
{
	struct http_conn *hc = http__of(s);

	if (hc && hc->state == HTTP_ST_FORWARD &&
	    session_backend_queued(s) <= s->conf->limits.relay_high_water / 2)
		http__forward_body(s);
}

static void http_client_written(struct session *s)
{
	struct http_conn *hc = http__of(s);

	if (hc && hc->state == HTTP_ST_FORWARD &&
	    session_client_queued(s) <= s->conf->limits.relay_high_water / 2)
		http__process_backend(s);
}

static void hc__process_head(struct session *s)
{
	struct http_conn *hc = http__of(s);

	if (hc->state != HTTP_ST_HEAD || s->closed)
		return;
	int rc = http_parse_head(&hc->req, s->in, s->in_len);
	if (rc == HTTP_NEED_MORE) {
		if (!hc->head_started && s->in_len > 0) {
			/* The first byte of a request starts its head timer
			   (slowloris: dribbling bytes does not extend it). A head
			   that is complete at once needs none: every way on from
			   here arms the timer of its own phase. */
			hc->head_started = true;
			session_delay(s, s->conf->http.header_timeout);
		}
		return;
	}
	hc->head_started = true;
	if (rc < 0) {
		hc->start_ms = session_now(s);
		http__answer(s, -rc, NULL, NULL,
			   rc == HTTP_E_URI ? "request-target too long"
			   : rc == HTTP_E_HEADERS ? "request head too large"
			   : "malformed request");
		return;
	}
	http__request(s, rc);
}

/* ---- session_proto ---- */

static int http_start(struct session *s)
{
	const struct conf *c = s->conf;
	struct http_conn *hc = calloc(1, sizeof(*hc));

	if (hc == NULL)
		return -1;
	hc->reqhdr = calloc((size_t)c->http.max_headers, sizeof(*hc->reqhdr));
	if (hc->reqhdr == NULL || session_set_input_size(s, c->http.max_header_size + 1) < 0) {
		free(hc->reqhdr);
		free(hc);
		return -1;
	}
	struct http_limits rl = {
		.max_head = c->http.max_header_size,
		.max_uri = c->http.max_uri,
		.max_headers = c->http.max_headers,
	};
	hc->reqh.hdr = hc->reqhdr;
	hc->reqh.hdr_cap = c->http.max_headers;
	http_parser_init(&hc->req, HTTP_REQUEST, &rl, &hc->reqh);
	struct http_limits bl = {
		.max_head = c->http.max_header_size > 16384 ? c->http.max_header_size : 16384,
		.max_uri = 0,
		.max_headers = HTTP_RESP_HEADERS,
	};
	hc->resph.hdr = hc->resphdr;
	hc->resph.hdr_cap = HTTP_RESP_HEADERS;
	http_parser_init(&hc->resp, HTTP_RESPONSE, &bl, &hc->resph);
	s->proto_state = hc;
	return 0;
}

static void http_client_data(struct session *s)
{
	struct http_conn *hc = http__of(s);

	if (hc == NULL)
		return;
	switch (hc->state) {
	case HTTP_ST_HEAD:
		hc__process_head(s);
		break;
	case HTTP_ST_FORWARD:
		http__forward_body(s);
		break;
	default:
		/* Body bytes or the next request: they wait in s->in. */
		break;
	}
}

static void http_client_eof(struct session *s, int status)
{
	struct http_conn *hc = http__of(s);

	if (hc == NULL || hc->state == HTTP_ST_HEAD || hc->state == HTTP_ST_DONE || status != UV_EOF) {
		session_close(s, status == UV_EOF ? "client closed" : "client connection error");
		return;
	}
	/* Half-close after a complete request: answer it, then close. */
	hc->client_eof = true;
	hc->close_after = true;
	if (!hc->req_done && s->in_len == 0)
		session_close(s, "client closed in the middle of a request");
}

static void http_timeout(struct session *s)
{
	struct http_conn *hc = http__of(s);

	if (hc == NULL) {
		session_close(s, "timeout");
		return;
	}
	switch (hc->state) {
	case HTTP_ST_HEAD:
		if (hc->head_started) {
			hc->start_ms = session_now(s);
			http__answer(s, 408, NULL, NULL, "request head not complete in time");
		} else {
			session_close(s, "keep-alive timeout");
		}
		return;
	case HTTP_ST_FORWARD:
		if (!hc->resp_head_done)
			http__answer(s, 504, NULL, NULL, "backend did not answer in time");
		else
			http__abort(s, "backend stalled in the middle of the response");
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
	struct http_conn *hc = http__of(s);

	if (hc == NULL)
		return;
	free(hc->reqhdr);
	if (hc->fwd) {
		/* It may hold Authorization and cookies. */
		secret_wipe(hc->fwd, hc->fwd_cap);
		free(hc->fwd);
	}
	secret_wipe(hc, sizeof(*hc));
	free(hc);
	s->proto_state = NULL;
}

const struct session_proto http_proto = {
	.name = "http",
	.busy_line = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
	.start = http_start,
	.client_data = http_client_data,
	.client_eof = http_client_eof,
	.route_done = http_route_done,
	.backend_connected = http_backend_connected,
	.backend_data = http_backend_data,
	.backend_eof = http_backend_eof,
	.timeout = http_timeout,
	.tls_started = http_tls_started,
	.destroy = http_destroy,
	.client_written = http_client_written,
	.backend_written = http_backend_written,
};
