/*
 * http_request.c - what a complete request head decides: its form and
 * Host, the plain listener's mode (redirect or refuse), refusals (encoded
 * CR/LF), WebSocket, the route, and the head rewritten for the backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "http_int.h"
#include "secret.h"
#include "http_location.h"

/* ---- a complete request head ---- */

static void http__copy_span(char *dst, size_t cap, const uint8_t *buf, struct http_span sp)
{
	size_t n = sp.len < cap - 1 ? sp.len : cap - 1;
	memcpy(dst, buf + sp.off, n);
	dst[n] = '\0';
}

/*
 * May the request's X-Forwarded-For be extended (security review 7)? Only
 * when the TCP peer that wrote this head is in trusted_proxies. After a
 * PROXY header the head was written by the carried client (the balancer
 * forwarded the bytes without reading them): that client is never a proxy
 * of ours, whatever its address, and the balancer's own trust (which the
 * PROXY listener requires) says nothing about the head.
 */
static bool http__peer_trusted(struct session *s)
{
	union {
		struct sockaddr sa;
		struct sockaddr_in v4;
		struct sockaddr_in6 v6;
	} a;

	if (s->conf->ntrusted_proxies == 0 || s->client_from_proxy_header)
		return false;
	if (uv_ip4_addr(s->client_ip, 0, &a.v4) != 0 && uv_ip6_addr(s->client_ip, 0, &a.v6) != 0)
		return false;
	return conf_proxy_trusted(s->conf, &a.sa);
}

/* Plain listener in redirect mode: 301 to the same place over https. */
static void http__redirect(struct http_exchange *x)
{
	struct session *s = x->s;
	const struct conf *c = s->conf;
	char name[256], loc[9000], port[8] = "";
	const struct http_header *hh = http_header_find(http__src(x), &x->reqh, "Host");

	/* One of our names as sent; else, for an address, localhost or a
	   short name, (or no Host at all) a name we chose. */
	const char *host = hh != NULL ? (const char *)http__src(x) + hh->value.off : NULL;
	bool ok = host != NULL && http_redirect_host_ok(c, host, hh->value.len, name, sizeof(name));
	const char *dflt = http_redirect_default_name(c);
	if (!ok && dflt != NULL && (host == NULL || http_redirect_host_local(host, hh->value.len)))
		ok = snprintf(name, sizeof(name), "%s", dflt) > 0;
	if (!ok) {
		http__answer(x, 400, NULL, "Unknown host.", "redirect: Host is not one of ours");
		return;
	}
	if (x->reqh.uri.len == 0 || http__src(x)[x->reqh.uri.off] != '/') {
		http__answer(x, 400, NULL, NULL, "redirect: request-target is not a path");
		return;
	}
	if (c->http.https_port != 443)
		snprintf(port, sizeof(port), ":%u", c->http.https_port);
	int n = snprintf(loc, sizeof(loc), "https://%s%s%.*s", name, port, (int)x->reqh.uri.len,
			 (const char *)http__src(x) + x->reqh.uri.off);
	if (n < 0 || (size_t)n >= sizeof(loc)) {
		http__answer(x, 414, NULL, NULL, "redirect: target too long");
		return;
	}
	http__answer(x, 301, loc, NULL, "redirect to https");
}

/*
 * The request line: x's method, Host and target for logs; an
 * absolute-form target becomes origin-form, and its authority must be the
 * Host we check and route on. *hh_out: the Host header (NULL: none).
 * False when x was answered.
 */
static bool http__request_target(struct http_exchange *x, const struct http_header **hh_out)
{
	const struct http_head *h = &x->reqh;
	struct http_span auth = { 0, 0 };

	const char *m = llhttp_method_name((llhttp_method_t)h->method);
	size_t mlen = strnlen(m, sizeof(x->method) - 1);
	memcpy(x->method, m, mlen);
	x->method[mlen] = '\0';
	const struct http_header *hh = http_header_find(http__src(x), h, "Host");
	if (hh != NULL)
		http__copy_span(x->host, sizeof(x->host), http__src(x), hh->value);
	*hh_out = hh;
	struct http_span target = h->uri;
	bool ok = h->method == HTTP_CONNECT || http_target_origin(http__src(x), target, &x->reqh.uri, &auth);
	/* The target for logs, with credential-like query values masked. */
	http_log_target(http__src(x), target, x->path, sizeof(x->path));
	if (!ok) {
		http__answer(x, 400, NULL, NULL, "request-target is not a path or an http(s) URL");
		return false;
	}
	if (auth.len > 0 && (hh == NULL || hh->value.len != auth.len ||
			     strncasecmp((const char *)http__src(x) + hh->value.off,
					 (const char *)http__src(x) + auth.off, auth.len) != 0)) {
		http__answer(x, 400, NULL, NULL, "absolute-form target names another host than Host");
		return false;
	}
	return true;
}

/* Is the Host header (NULL: none) server_name or a vhost name? */
static bool http__host_ours(const struct conf *c, const uint8_t *buf, const struct http_header *hh)
{
	char name[256];

	return hh != NULL && http_redirect_host_ok(c, (const char *)buf + hh->value.off,
						   hh->value.len, name, sizeof(name));
}

/* Refusals: version, CONNECT, Host, the plain listener's mode, encoded
   CR/LF. False when x was answered. */
static bool http__request_check(struct http_exchange *x, const struct http_header *hh)
{
	struct session *s = x->s;
	const struct http_head *h = &x->reqh;
	const char *why = NULL;
	int status = 400;

	if (h->major != 1)
		why = "not HTTP/1.x";
	else if (h->method == HTTP_CONNECT)
		status = 405, why = "CONNECT is not proxied";
	else if (hh == NULL && h->minor >= 1)
		why = "HTTP/1.1 request without Host";
	for (int i = 0, n = 0; why == NULL && i < h->nhdr; i++) {
		if (http_span_is(http__src(x), h->hdr[i].name, "Host") && ++n > 1)
			why = "two Host headers";
	}
	if (why == NULL && !s->listener->tls && !s->tls_active) {
		if (s->listener->mode == CONF_HTTP_MODE_REDIRECT) {
			http__redirect(x);
			return false;
		}
		if (s->listener->mode == CONF_HTTP_MODE_HTTPS) {
			http__answer(x, 403, NULL, HTTP_USE_HTTPS_TEXT, "plain http refused (mode https)");
			return false;
		}
	}
	if (why == NULL && s->conf->http.strict_server_names && (s->listener->tls || s->tls_active) &&
	    !http__host_ours(s->conf, http__src(x), hh))
		why = "Host is not one of our names (http.strict_server_names)";
	if (why == NULL && http_uri_has_encoded_crlf(http__src(x), h->uri))
		status = 403, why = "encoded CR or LF in the request-target";
	if (why == NULL)
		return true;
	http__answer(x, status, NULL, NULL, why);
	return false;
}

/* The head rewritten for the backend into x->fwd, and what the rest of
   the exchange needs of it (HEAD, WebSocket, the route's kind). False when
   x was answered. */
static bool http__request_rewrite(struct http_exchange *x, int head_len)
{
	struct session *s = x->s;
	const struct http_head *h = &x->reqh;

	x->is_head = h->method == HTTP_HEAD;
	x->websocket = h->upgrade && http_header_has_token(http__src(x), h, "Upgrade", "websocket");
	if (h->upgrade && !x->websocket) {
		/* Only WebSocket upgrades are relayed; others are served as plain HTTP. */
		x->reqh.upgrade = false;
	}
	x->kind = http_route_pick(http__src(x), h, x->route_name, sizeof(x->route_name));
	http__z_accept(x);

	struct http_fwd f = {
		.client_ip = s->client_ip,
		.trusted = http__peer_trusted(s),
		.https = s->tls_active,
		.websocket = x->websocket,
	};
	size_t need = (size_t)head_len + HTTP_FWD_EXTRA;
	if (need > x->fwd_cap) {
		/* Not realloc: the old block may hold an earlier head. */
		char *nb = malloc(need);
		if (nb == NULL) {
			http__answer(x, 500, NULL, NULL, "out of memory");
			return false;
		}
		if (x->fwd != NULL) {
			secret_wipe(x->fwd, x->fwd_dirty < x->fwd_cap ? x->fwd_dirty : x->fwd_cap);
			free(x->fwd);
		}
		x->fwd = nb;
		x->fwd_cap = need;
		x->fwd_dirty = 0;
	}
	int n = http_rewrite_request(http__src(x), h, &f, x->fwd, x->fwd_cap);
	if (n < 0) {
		/* How far it wrote is not known: all of the block is wiped. */
		x->fwd_dirty = x->fwd_cap;
		http__answer(x, 431, NULL, NULL, "request head too large to forward");
		return false;
	}
	x->fwd_len = (size_t)n;
	if (x->fwd_len > x->fwd_dirty)
		x->fwd_dirty = x->fwd_len;
	return true;
}

/* This thread's regex scratch (each worker is a thread; the tables are
   shared), freed when the thread ends. */
static pthread_key_t http__scratch_key;
static pthread_once_t http__scratch_once = PTHREAD_ONCE_INIT;

static void http__scratch_free(void *p)
{
	http_location_scratch_free(p);
}

static void http__scratch_init(void)
{
	(void)pthread_key_create(&http__scratch_key, http__scratch_free);
}

static struct http_location_scratch *http__scratch(void)
{
	(void)pthread_once(&http__scratch_once, http__scratch_init);
	struct http_location_scratch *sc = pthread_getspecific(http__scratch_key);
	if (sc == NULL && (sc = http_location_scratch_new()) != NULL)
		(void)pthread_setspecific(http__scratch_key, sc);
	return sc;
}

/* The request's normalized path into x->npath and its location into
   x->loc (none without a location table). False when x was answered. */
static bool http__request_location(struct http_exchange *x)
{
	struct session *s = x->s;
	const struct conf_location_table *t = conf_http_locations(s->conf, s->listener);
	struct http_span uri = x->reqh.uri;

	if (t == NULL || t->n == 0)
		return true;
	if (uri.len + 1 > x->npath_cap) {
		char *nb = realloc(x->npath, uri.len + 1);
		if (nb == NULL) {
			http__answer(x, 500, NULL, NULL, "out of memory");
			return false;
		}
		x->npath = nb;
		x->npath_cap = uri.len + 1;
	}
	size_t used;
	int n = http_path_normalize(http__src(x) + uri.off, uri.len, x->npath, x->npath_cap, &used);
	if (n < 0) {
		http__answer(x, 400, NULL, NULL,
			     n == HTTP_PATH_EABOVE ? "path climbs above /" : "malformed path");
		return false;
	}
	x->npath_len = (size_t)n;
	x->loc = http_location_match(t, x->npath, x->npath_len, http__scratch());
	return true;
}

void http__request(struct http_exchange *x, int head_len)
{
	struct session *s = x->s;
	const struct http_header *hh;

	x->start_ms = session_now(s);
	if (!http__request_target(x, &hh) || !http__request_check(x, hh) ||
	    !http__request_location(x) || http__location_local(x))
		return;
	if (http__file_request(x)) {
		/* Its strings are copied: the head goes. */
		if (!s->closed && x->phase == HTTP_X_FILE)
			http__src_consume(x, (size_t)head_len);
		return;
	}
	if (!http__request_rewrite(x, head_len) ||
	    !http__upstream_prepare(x))
		return;
	x->req_done = http_parser_body_done(&x->req);
	if (x->is_head)
		http_parser_no_body(&x->resp);
	/* The head is copied out; what follows in http__src(x) is body or the next request. */
	http__src_consume(x, (size_t)head_len);
	if (!x->req_done)
		x->conn->body = x;

	if (x->grp != NULL && x->grp->balance != CONF_BALANCE_ROUTE)
		http__group_pick(x);
	else if (x->kind == HTTP_ROUTE_HASH)
		http__route_hash(x);
	else
		http__resolve(x, false);
}
