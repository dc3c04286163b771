/*
 * http_upstream.c - a request whose location names an upstream group:
 * the location's options applied to it (read timeout, WebSocket allowed or
 * not, prefix rewrite and Host sent on) and the group's choice of server
 * (per-user route, else upstream_pick with passive health: a server that
 * refuses or does not answer the connect is marked and another tried).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "http_int.h"
#include "http_location.h"
#include "secret.h"
#include "upstream.h"

const struct conf_upstream *http__group(const struct http_exchange *x)
{
	if (x->loc == NULL || x->loc->action != CONF_LOC_UPSTREAM)
		return NULL;
	return &x->s->conf->upstreams[x->loc->upstream];
}

/* The client's host name without its port into out ("" without Host). */
static void http__host_name(const char *host, char *out, size_t cap)
{
	size_t n = strlen(host);
	const char *colon = host[0] == '[' ? strchr(host, ']') : NULL;

	if (host[0] == '[') {
		n = colon != NULL ? (size_t)(colon - host) + 1 : n;
	} else if ((colon = strrchr(host, ':')) != NULL) {
		n = (size_t)(colon - host);
	}
	snprintf(out, cap, "%.*s", (int)n, host);
}

/* The Host value the location sends ("$host" is the client's name, nginx's
   $host), into out; false when the location keeps the client's. */
static bool http__loc_host(const struct http_exchange *x, char *out, size_t cap)
{
	const char *t = x->loc->host;

	if (t == NULL)
		return false;
	if (strncmp(t, "$host", 5) == 0) {
		char name[256];
		http__host_name(x->host[0] ? x->host : x->s->local_ip, name, sizeof(name));
		snprintf(out, cap, "%s%s", name, t + 5);
	} else {
		snprintf(out, cap, "%s", t);
	}
	return true;
}

/* The request-target sent on: the rewritten path and the query as sent
   (-1: does not fit). */
static int http__loc_target(struct http_exchange *x, char *out, size_t cap)
{
	const uint8_t *p = http__src(x) + x->reqh.uri.off;
	size_t used = 0, len = x->reqh.uri.len;
	/* Where the query starts (a path has no '?' nor '#'). */
	const uint8_t *q = memchr(p, '?', len);
	const uint8_t *h = memchr(p, '#', len);
	used = q != NULL ? (size_t)(q - p) : len;
	if (h != NULL && (size_t)(h - p) < used)
		used = (size_t)(h - p);
	int n = http_location_rewrite(x->loc, x->npath, x->npath_len, out, cap);
	if (n < 0 || (size_t)n + (len - used) + 1 > cap)
		return -1;
	/* A fragment is never sent on (RFC 9110 §7.1): only the query. */
	if (q != NULL && (h == NULL || h > q)) {
		size_t ql = h != NULL ? (size_t)(h - q) : len - (size_t)(q - p);
		memcpy(out + n, q, ql);
		n += (int)ql;
	}
	out[n] = '\0';
	return n;
}

/* Replace x->fwd's request-target and Host (host NULL: kept). */
static bool http__fwd_edit(struct http_exchange *x, const char *target, const char *host)
{
	const char *f = x->fwd, *end = x->fwd + x->fwd_len;
	const char *sp1 = memchr(f, ' ', x->fwd_len);
	const char *sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
	const char *eol = sp2 != NULL ? memchr(sp2, '\n', (size_t)(end - sp2)) : NULL;
	size_t cap = x->fwd_len + strlen(target) + (host ? strlen(host) : 0) + 16;
	char *nb = malloc(cap), *o = nb;

	if (eol == NULL || nb == NULL) {
		free(nb);
		return false;
	}
	o += sprintf(o, "%.*s%s%.*s", (int)(sp1 + 1 - f), f, target, (int)(eol + 1 - sp2), sp2);
	if (host != NULL)
		o += sprintf(o, "Host: %s\r\n", host);
	for (const char *l = eol + 1; l < end;) {
		const char *nl = memchr(l, '\n', (size_t)(end - l));
		size_t ll = nl != NULL ? (size_t)(nl + 1 - l) : (size_t)(end - l);
		if (host == NULL || ll < 5 || strncasecmp(l, "Host:", 5) != 0) {
			memcpy(o, l, ll);
			o += ll;
		}
		l += ll;
	}
	secret_wipe(x->fwd, x->fwd_dirty < x->fwd_cap ? x->fwd_dirty : x->fwd_cap);
	free(x->fwd);
	x->fwd = nb;
	x->fwd_cap = cap;
	x->fwd_len = x->fwd_dirty = (size_t)(o - nb);
	return true;
}

bool http__upstream_prepare(struct http_exchange *x)
{
	const struct conf_location *l = x->loc;
	char host[320], *target = NULL;
	bool has_host;

	x->grp = http__group(x);
	x->srv = -1;
	memset(&x->tried, 0, sizeof(x->tried));
	if (x->grp == NULL)
		return true;
	if (x->grp->admin) /* the head is still in s->in */
		x->kind = http_route_pick_admin(x->s->in, &x->reqh, x->route_name,
						sizeof(x->route_name));
	if (l->read_timeout > 0)
		x->read_timeout = l->read_timeout;
	if (x->websocket && !l->websocket) {
		http__answer(x, 403, NULL, NULL, "WebSocket not allowed at this location");
		return false;
	}
	has_host = http__loc_host(x, host, sizeof(host));
	if (l->rewrite_prefix == NULL && !has_host)
		return true;
	size_t cap = x->npath_len + x->reqh.uri.len + strlen(l->rewrite_prefix ? l->rewrite_prefix : "") + 2;
	if ((target = malloc(cap)) == NULL) {
		http__answer(x, 500, NULL, NULL, "out of memory");
		return false;
	}
	int n = l->rewrite_prefix != NULL ? http__loc_target(x, target, cap) : -2;
	if (n == -2)
		snprintf(target, cap, "%.*s", (int)x->reqh.uri.len,
			 (const char *)http__src(x) + x->reqh.uri.off);
	bool ok = n != -1 && http__fwd_edit(x, target, has_host ? host : NULL);
	free(target);
	if (!ok)
		http__answer(x, n == -1 ? 414 : 500, NULL, NULL, "rewriting the request for the upstream");
	return ok;
}

/* The next server of x's group by upstream_pick (client-IP hash or round
   robin, skipping servers down or tried), or 502 when none is left. */
void http__group_pick(struct http_exchange *x)
{
	struct session *s = x->s;
	const struct conf_upstream *u = x->grp;
	struct upstream_health *h = session_upstream_health(s, x->loc->upstream);
	int i = upstream_pick(h, u, s->client_ip, &x->tried, session_now(s));

	if (i < 0) {
		session_log(s, LOG_WARN, "upstream \"%s\": no live servers (%d tried)", u->name,
			    x->tried.n);
		http__answer(x, 502, NULL, NULL, "no live upstream servers");
		return;
	}
	x->srv = i;
	http__route_to(x, u->servers[i].host, u->servers[i].port);
}

bool http__group_failed(struct http_exchange *x, int status)
{
	struct session *s = x->s;

	if (x->grp == NULL || x->srv < 0 || x->routed)
		return false;
	upstream_failed(session_upstream_health(s, x->loc->upstream), x->grp, x->srv,
			session_now(s));
	session_log(s, LOG_INFO, "upstream \"%s\" server %s failed: %s; trying another",
		    x->grp->name, x->up_addr, uv_strerror(status));
	x->srv = -1;
	http__group_pick(x);
	return true;
}

void http__group_ok(struct http_exchange *x)
{
	if (x->grp != NULL && x->srv >= 0)
		upstream_succeeded(session_upstream_health(x->s, x->loc->upstream), x->srv);
}

bool http__location_local(struct http_exchange *x)
{
	const struct conf_location *l = x->loc;
	struct http_location_answer a;
	struct http_resp_edit e;
	char *hdr;

	/* Most requests go to a group or to files: no buffers for them. */
	if (l == NULL || (l->require_cookie == NULL && l->action != CONF_LOC_RETURN &&
			  l->action != CONF_LOC_REDIRECT && l->action != CONF_LOC_LOGOUT))
		return false;
	const struct http_header *ck = http_header_find(http__src(x), &x->reqh, "Cookie");
	if ((hdr = malloc(HTTP_LOCATION_HEADERS_MAX + HTTP_ADD_HEADERS_MAX)) == NULL) {
		http__answer(x, 500, NULL, NULL, "out of memory");
		return true;
	}
	if (!http_location_local(x->loc, ck != NULL ? (const char *)http__src(x) + ck->value.off : NULL,
				 ck != NULL ? ck->value.len : 0, hdr, HTTP_LOCATION_HEADERS_MAX, &a)) {
		free(hdr);
		return false;
	}
	/* The answer's own lines, then every added header as on a proxied
	   response: http.add_headers, the vhost's, the location's (HSTS on a
	   redirect to the login page too). */
	http__resp_edit(x, &e);
	int ln = http_add_header_lines(&e, hdr + a.own_len, HTTP_ADD_HEADERS_MAX);
	size_t hlen = a.own_len + (ln > 0 ? (size_t)ln : 0);
	size_t body = x->reqh.method == HTTP_HEAD ? 0 : a.body_len;
	size_t cap = 512 + hlen + a.body_len + (a.location ? strlen(a.location) : 0) +
		     (a.content_type ? strlen(a.content_type) : 0);
	char *resp = ln < 0 ? NULL : malloc(cap);
	int n = resp == NULL ? -1 :
		snprintf(resp, cap,
			 "HTTP/1.1 %d %s\r\nServer: gatehouse\r\n%s%s%s%s%s%sContent-Length: %zu\r\n"
			 "%.*sConnection: close\r\n\r\n",
			 a.status, http_reason(a.status), a.location ? "Location: " : "",
			 a.location ? a.location : "", a.location ? "\r\n" : "",
			 a.content_type ? "Content-Type: " : "",
			 a.content_type ? a.content_type : "", a.content_type ? "\r\n" : "",
			 a.body_len, (int)hlen, hdr);
	free(hdr);
	if (n < 0 || (size_t)n + body > cap) {
		free(resp);
		http__answer(x, 500, NULL, NULL, "building the location's answer");
		return true;
	}
	if (body > 0)
		memcpy(resp + n, a.body, body);
	const char *why = x->loc->require_cookie != NULL && a.status == 307 &&
			  a.location == x->loc->login_redirect ? "no login cookie: to the login page"
							       : "location's own answer";
	http__answer_raw(x, a.status, resp, (size_t)n + body, why);
	free(resp);
	return true;
}
