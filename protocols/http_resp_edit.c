/*
 * http_resp_edit.c - what gatehouse changes in the responses it relays or
 * makes: the headers operators add (http.add_headers, a location's
 * add_headers) and the https fix-up of a backend's Location and Refresh on
 * TLS listeners. Pure.
 */
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "http.h"
#include "http_compress.h"

void http_resp_edit_init(struct http_resp_edit *e, const struct conf *c, const char *host,
			 size_t host_len, const struct conf_location *l)
{
	memset(e, 0, sizeof(*e));
	e->add[0] = c->http.add_headers;
	e->nadd[0] = c->http.nadd_headers;
	int v = host != NULL && c->vhost_http != NULL ? conf_vhost_for_host(c, host, host_len) : -1;
	if (v >= 0) {
		e->add[1] = c->vhost_http[v].headers;
		e->nadd[1] = c->vhost_http[v].nheaders;
	}
	if (l != NULL) {
		e->add[2] = l->headers;
		e->nadd[2] = l->nheaders;
	}
}

static bool http__is_cookie(const char *name)
{
	return strcasecmp(name, "Set-Cookie") == 0;
}

bool http_resp_edit_replaces(const struct http_resp_edit *e, const char *name, size_t len, int below)
{
	for (int k = HTTP_ADD_SETS - 1; k >= below; k--)
		for (int i = 0; i < e->nadd[k]; i++) {
			const char *n = e->add[k][i].name;
			if (strlen(n) == len && strncasecmp(n, name, len) == 0 && !http__is_cookie(n))
				return true;
		}
	return false;
}

int http_add_header_lines(const struct http_resp_edit *e, char *out, size_t cap)
{
	size_t len = 0;

	for (int k = 0; k < HTTP_ADD_SETS; k++)
		for (int i = 0; i < e->nadd[k]; i++) {
			const struct conf_header *h = &e->add[k][i];
			size_t nl = strlen(h->name), vl = strlen(h->value);
			/* A header a later set names again gives way. */
			if (http_resp_edit_replaces(e, h->name, nl, k + 1))
				continue;
			if (nl + vl + 4 > cap - len)
				return -1;
			memcpy(out + len, h->name, nl);
			memcpy(out + len + nl, ": ", 2);
			memcpy(out + len + nl + 2, h->value, vl);
			memcpy(out + len + nl + 2 + vl, "\r\n", 2);
			len += nl + vl + 4;
		}
	return (int)len;
}

/* The name part of a Host value: "[v6]" with its brackets, else up to ':'. */
static size_t http__host_name_len(const char *h, size_t n)
{
	if (n > 0 && h[0] == '[') {
		const char *end = memchr(h, ']', n);
		return end != NULL ? (size_t)(end - h) + 1 : n;
	}
	const char *colon = memchr(h, ':', n);
	return colon != NULL ? (size_t)(colon - h) : n;
}

/* The authority of the URL v (n bytes) whose scheme ends at a: its end
   (the path's first byte, or n) in *end_out, and the length of its name
   when that name is host's (host_len bytes, a Host value), else 0. */
static size_t http__url_host(const char *v, size_t n, size_t a, const char *host,
			     size_t host_len, size_t *end_out)
{
	size_t end = a;
	while (end < n && v[end] != '/' && v[end] != '?' && v[end] != '#')
		end++;
	*end_out = end;
	size_t name = http__host_name_len(v + a, end - a);
	size_t want = http__host_name_len(host, host_len);
	if (name == 0 || name != want || strncasecmp(v + a, host, name) != 0)
		return 0;
	return name;
}

/* scheme, host and the rest of a URL into out: the length, or -1. */
static int http__url_write(const char *scheme, const char *host, size_t host_len,
			   const char *rest, size_t rest_len, char *out, size_t cap)
{
	size_t sl = strlen(scheme), len = sl + host_len + rest_len;

	if (len > cap)
		return -1;
	memcpy(out, scheme, sl);
	memcpy(out + sl, host, host_len);
	memcpy(out + sl + host_len, rest, rest_len);
	return (int)len;
}

int http_https_fixup(const char *v, size_t n, const char *host, size_t host_len, char *out,
		     size_t cap)
{
	static const char scheme[] = "http://";
	size_t sl = sizeof(scheme) - 1;

	if (host_len == 0 || n < sl || strncasecmp(v, scheme, sl) != 0)
		return 0;
	size_t a = sl, end;
	size_t name = http__url_host(v, n, a, host, host_len, &end);
	if (name == 0)
		return 0;
	/* Any port after the name: digits only (else it is not that host). */
	if (a + name < end) {
		if (v[a + name] != ':' || a + name + 1 == end)
			return 0;
		for (size_t i = a + name + 1; i < end; i++)
			if (v[i] < '0' || v[i] > '9')
				return 0;
	}
	return http__url_write("https://", host, host_len, v + end, n - end, out, cap);
}

/* Where a Refresh value's URL starts ("5; url=http://host/x",
   "0;URL='http://host/x'"), or n when it has none. */
static size_t http__refresh_url(const char *v, size_t n)
{
	for (size_t i = 0; i + 4 <= n; i++) {
		if (strncasecmp(v + i, "url=", 4) != 0)
			continue;
		size_t at = i + 4;
		if (at < n && (v[at] == '\'' || v[at] == '"'))
			at++;
		return at;
	}
	return n;
}

int http_refresh_fixup(const char *v, size_t n, const char *host, size_t host_len, char *out,
		       size_t cap)
{
	size_t at = http__refresh_url(v, n);

	if (at >= n)
		return 0;
	if (at > cap)
		return -1;
	int r = http_https_fixup(v + at, n - at, host, host_len, out + at, cap - at);
	if (r > 0)
		memcpy(out, v, at);
	return r > 0 ? (int)at + r : r;
}

int http_port_fixup(const char *v, size_t n, const char *host, size_t host_len, uint16_t port,
		    bool https, char *out, size_t cap)
{
	size_t a;
	char digits[8];

	if (host_len == 0 || port == 0)
		return 0;
	if (n > 7 && strncasecmp(v, "http://", 7) == 0)
		a = 7;
	else if (n > 8 && strncasecmp(v, "https://", 8) == 0)
		a = 8;
	else
		return 0;
	size_t end;
	size_t name = http__url_host(v, n, a, host, host_len, &end);
	if (name == 0)
		return 0;
	/* Exactly ":<port>" after the name: another port is another service. */
	int dl = snprintf(digits, sizeof(digits), ":%u", (unsigned)port);
	if (dl < 0 || end - (a + name) != (size_t)dl || memcmp(v + a + name, digits, (size_t)dl) != 0)
		return 0;
	return http__url_write(https ? "https://" : "http://", host, host_len, v + end, n - end,
			       out, cap);
}

int http_refresh_port_fixup(const char *v, size_t n, const char *host, size_t host_len,
			    uint16_t port, bool https, char *out, size_t cap)
{
	size_t at = http__refresh_url(v, n);

	if (at >= n)
		return 0;
	if (at > cap)
		return -1;
	int r = http_port_fixup(v + at, n - at, host, host_len, port, https, out + at, cap - at);
	if (r > 0)
		memcpy(out, v, at);
	return r > 0 ? (int)at + r : r;
}

bool http_compress_response_ok(const uint8_t *buf, const struct http_head *h,
			       const struct conf *c, uint64_t *length_out)
{
	const struct http_header *ct = http_header_find(buf, h, "Content-Type");

	*length_out = h->has_length ? h->content_length : 0;
	if (h->status != 200 || ct == NULL || http_header_find(buf, h, "Content-Encoding") != NULL ||
	    http_header_find(buf, h, "Content-Range") != NULL ||
	    http_header_has_token(buf, h, "Cache-Control", "no-transform"))
		return false;
	if (h->has_length ? h->content_length < c->http.compression.min_length ||
				    h->content_length == 0
			  : !h->chunked && !h->needs_eof)
		return false;
	return http_compress_type_ok((const char *)buf + ct->value.off, ct->value.len,
				     (const char *const *)c->http.compression.types,
				     c->http.compression.ntypes);
}
