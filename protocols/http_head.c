/*
 * http_head.c - heads written by the proxy: requests to backends (with
 * X-Forwarded-For, X-Real-IP, X-Forwarded-Proto and no hop-by-hop headers),
 * responses to clients, error and redirect pages, and the check that keeps
 * redirects from pointing anywhere but our own names. Pure.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "http.h"

/* An append-only writer that remembers overflowing. */
struct hh__out {
	char *buf;
	size_t cap;
	size_t len;
	bool over;
};

static void hh__put(struct hh__out *o, const void *p, size_t n)
{
	if (o->over || n > o->cap - o->len) {
		o->over = true;
		return;
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

static void hh__puts(struct hh__out *o, const char *s)
{
	hh__put(o, s, strlen(s));
}

/* A string literal: its length is known without strlen. */
#define hh__lit(o, s) hh__put((o), (s), sizeof(s) - 1)

/* A number in decimal, as "%u" writes it (no snprintf on the hot path). */
static void hh__digits(struct hh__out *o, unsigned v)
{
	char d[10];
	size_t i = sizeof(d);

	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	hh__put(o, d + i, sizeof(d) - i);
}

static void hh__span(struct hh__out *o, const uint8_t *buf, struct http_span s)
{
	hh__put(o, buf + s.off, s.len);
}

/* The value of a header without trailing whitespace. */
static struct http_span hh__trim(const uint8_t *buf, struct http_span v)
{
	while (v.len > 0 && (buf[v.off + v.len - 1] == ' ' || buf[v.off + v.len - 1] == '\t'))
		v.len--;
	return v;
}

static bool hh__name_in(const uint8_t *buf, struct http_span name, const char *const *set)
{
	for (; *set; set++)
		if (http_span_is(buf, name, *set))
			return true;
	return false;
}

/*
 * Is this header named by a Connection header (RFC 9110 §7.6.1)? Headers
 * the framing or routing needs are never dropped this way.
 */
static bool hh__named_by_connection(const uint8_t *buf, const struct http_head *h,
				    struct http_span name, bool has_connection)
{
	static const char *const keep[] = {
		"Host", "Content-Length", "Transfer-Encoding", "Upgrade", NULL,
	};
	char n[128];

	if (!has_connection || name.len == 0 || name.len >= sizeof(n) ||
	    hh__name_in(buf, name, keep))
		return false;
	memcpy(n, buf + name.off, name.len);
	n[name.len] = '\0';
	return http_header_has_token(buf, h, "Connection", n);
}

static void hh__header(struct hh__out *o, const uint8_t *buf, const struct http_header *hd)
{
	hh__span(o, buf, hd->name);
	hh__lit(o, ": ");
	hh__span(o, buf, hh__trim(buf, hd->value));
	hh__lit(o, "\r\n");
}

int http_rewrite_request(const uint8_t *buf, const struct http_head *h, const struct http_fwd *f,
			 char *out, size_t cap)
{
	static const char *const drop[] = {
		"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Proxy-Authorization",
		"X-Real-IP", "X-Forwarded-Proto", "X-Forwarded-For", NULL,
	};
	struct hh__out o = { .buf = out, .cap = cap };
	/* Without a Connection header nothing is named by one: the common
	   case skips a scan of the head for every header. */
	bool has_connection = http_header_find(buf, h, "Connection") != NULL;

	hh__puts(&o, llhttp_method_name((llhttp_method_t)h->method));
	hh__lit(&o, " ");
	hh__span(&o, buf, h->uri);
	hh__lit(&o, " HTTP/");
	hh__digits(&o, h->major);
	hh__lit(&o, ".");
	hh__digits(&o, h->minor);
	hh__lit(&o, "\r\n");
	for (int i = 0; i < h->nhdr; i++) {
		const struct http_header *hd = &h->hdr[i];
		if (hh__name_in(buf, hd->name, drop))
			continue;
		if (!f->websocket && http_span_is(buf, hd->name, "Upgrade"))
			continue;
		if (hh__named_by_connection(buf, h, hd->name, has_connection))
			continue;
		hh__header(&o, buf, hd);
	}
	/* X-Forwarded-For: a trusted proxy's list goes on, with its peer (the
	   client we saw) last; anyone else's is replaced, or a client could
	   name any address it likes. */
	hh__lit(&o, "X-Forwarded-For: ");
	if (f->trusted) {
		for (int i = 0; i < h->nhdr; i++) {
			if (!http_span_is(buf, h->hdr[i].name, "X-Forwarded-For"))
				continue;
			struct http_span v = hh__trim(buf, h->hdr[i].value);
			if (v.len == 0)
				continue;
			hh__span(&o, buf, v);
			hh__lit(&o, ", ");
		}
	}
	hh__puts(&o, f->client_ip);
	hh__lit(&o, "\r\nX-Real-IP: ");
	hh__puts(&o, f->client_ip);
	hh__puts(&o, f->https ? "\r\nX-Forwarded-Proto: https\r\n" : "\r\nX-Forwarded-Proto: http\r\n");
	hh__puts(&o, f->websocket ? "Connection: upgrade\r\n\r\n" : "Connection: keep-alive\r\n\r\n");
	return o.over ? -1 : (int)o.len;
}

/* A backend header as the edit says: dropped (an added header replaces
   it), its Location or Refresh fixed up for https, or as it came. */
static void hh__resp_header(struct hh__out *o, const uint8_t *buf, const struct http_header *hd,
			    const struct http_resp_edit *e)
{
	char fixed[8192];
	int n = 0;

	if (e == NULL) {
		hh__header(o, buf, hd);
		return;
	}
	if (http_resp_edit_replaces(e, (const char *)buf + hd->name.off, hd->name.len, 0))
		return;
	struct http_span v = hh__trim(buf, hd->value);
	if (e->content_encoding != NULL) {
		/* gatehouse frames the compressed body itself. */
		if (http_span_is(buf, hd->name, "Content-Length") ||
		    http_span_is(buf, hd->name, "Transfer-Encoding"))
			return;
		if (http_span_is(buf, hd->name, "ETag") && v.len > 0 && buf[v.off] == '"') {
			hh__lit(o, "ETag: W/");
			hh__span(o, buf, v);
			hh__lit(o, "\r\n");
			return;
		}
	}
	bool loc = http_span_is(buf, hd->name, "Location");
	bool refresh = !loc && http_span_is(buf, hd->name, "Refresh");
	const char *val = (const char *)buf + v.off;
	if (e->back_host != NULL && (loc || refresh))
		n = loc ? http_port_fixup(val, v.len, e->back_host, e->back_host_len, e->back_port,
					  e->back_https, fixed, sizeof(fixed))
			: http_refresh_port_fixup(val, v.len, e->back_host, e->back_host_len,
						  e->back_port, e->back_https, fixed, sizeof(fixed));
	if (n == 0 && e->https_host != NULL && (loc || refresh))
		n = loc ? http_https_fixup(val, v.len, e->https_host, e->https_host_len, fixed,
					   sizeof(fixed))
			: http_refresh_fixup(val, v.len, e->https_host, e->https_host_len, fixed,
					     sizeof(fixed));
	if (n <= 0) {
		/* Left alone, or too long to fix: as the backend sent it. */
		hh__header(o, buf, hd);
		return;
	}
	hh__span(o, buf, hd->name);
	hh__lit(o, ": ");
	hh__put(o, fixed, (size_t)n);
	hh__lit(o, "\r\n");
}

int http_rewrite_response(const uint8_t *buf, const struct http_head *h,
			  const struct http_resp_edit *e, bool close, bool client_http10,
			  char *out, size_t cap)
{
	static const char *const drop[] = {
		"Connection", "Keep-Alive", "Proxy-Connection", "TE", NULL,
	};
	struct hh__out o = { .buf = out, .cap = cap };
	bool switching = h->status == 101;
	bool has_connection = http_header_find(buf, h, "Connection") != NULL;

	hh__lit(&o, "HTTP/1.1 ");
	hh__digits(&o, h->status);
	hh__lit(&o, " ");
	hh__span(&o, buf, h->reason);
	hh__lit(&o, "\r\n");
	for (int i = 0; i < h->nhdr; i++) {
		const struct http_header *hd = &h->hdr[i];
		if (hh__name_in(buf, hd->name, drop))
			continue;
		if (!switching && http_span_is(buf, hd->name, "Upgrade"))
			continue;
		if (hh__named_by_connection(buf, h, hd->name, has_connection))
			continue;
		hh__resp_header(&o, buf, hd, e);
	}
	if (e != NULL && e->content_encoding != NULL) {
		hh__lit(&o, "Content-Encoding: ");
		hh__puts(&o, e->content_encoding);
		hh__lit(&o, "\r\nTransfer-Encoding: chunked\r\n");
		if (!http_header_has_token(buf, h, "Vary", "Accept-Encoding") &&
		    !http_header_has_token(buf, h, "Vary", "*"))
			hh__lit(&o, "Vary: Accept-Encoding\r\n");
	}
	if (e != NULL && !o.over) {
		int n = http_add_header_lines(e, o.buf + o.len, o.cap - o.len);
		if (n < 0)
			o.over = true;
		else
			o.len += (size_t)n;
	}
	if (switching)
		hh__lit(&o, "Connection: upgrade\r\n");
	else if (close)
		hh__lit(&o, "Connection: close\r\n");
	else if (client_http10)
		hh__lit(&o, "Connection: keep-alive\r\n");
	hh__lit(&o, "\r\n");
	return o.over ? -1 : (int)o.len;
}

/* Does name match pattern ("*.example.com" matches one more label)? */
static bool hh__name_match(const char *pattern, const char *name)
{
	if (pattern[0] == '*' && pattern[1] == '.') {
		const char *dot = strchr(name, '.');
		return dot != NULL && dot != name && strcmp(dot + 1, pattern + 2) == 0;
	}
	return strcmp(pattern, name) == 0;
}

/* ":" followed by 1 to 5 digits (p[0..n) starts at the colon). */
static bool hh__port_ok(const char *p, size_t n)
{
	if (n < 2 || n > 6 || p[0] != ':')
		return false;
	for (size_t i = 1; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

bool http_redirect_host_ok(const struct conf *c, const char *host, size_t len, char *out,
			   size_t cap)
{
	size_t n = len;

	if (len == 0 || cap == 0)
		return false;
	/* A port after the name: digits only. */
	const char *colon = memchr(host, ':', len);
	if (colon != NULL) {
		n = (size_t)(colon - host);
		size_t pl = len - n - 1;
		if (pl == 0 || pl > 5)
			return false;
		for (size_t i = n + 1; i < len; i++)
			if (host[i] < '0' || host[i] > '9')
				return false;
	}
	if (n == 0 || n >= cap || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = host[i];
		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.'))
			return false;
		out[i] = ch;
	}
	out[n] = '\0';
	if (c->http.server_name != NULL && strcmp(c->http.server_name, out) == 0)
		return true;
	for (int v = 0; v < c->nvhosts; v++)
		for (int k = 0; k < c->vhosts[v].nnames; k++)
			if (hh__name_match(c->vhosts[v].names[k], out))
				return true;
	out[0] = '\0';
	return false;
}

bool http_redirect_host_local(const char *host, size_t len)
{
	char name[64];
	size_t n = len;

	if (len == 0)
		return false;
	if (host[0] == '[') {
		/* An IPv6 literal, optionally with a port. */
		const char *end = memchr(host, ']', len);
		if (end == NULL || (size_t)(end - host) - 1 >= sizeof(name))
			return false;
		n = (size_t)(end - host) - 1;
		memcpy(name, host + 1, n);
		name[n] = '\0';
		size_t rest = len - n - 2;
		if (rest != 0 && !hh__port_ok(end + 1, rest))
			return false;
		struct in6_addr a6;
		return inet_pton(AF_INET6, name, &a6) == 1;
	}
	const char *colon = memchr(host, ':', len);
	if (colon != NULL) {
		n = (size_t)(colon - host);
		if (!hh__port_ok(colon, len - n))
			return false;
	}
	if (n == 0 || n >= sizeof(name))
		return false;
	memcpy(name, host, n);
	name[n] = '\0';
	struct in_addr a4;
	if (inet_pton(AF_INET, name, &a4) == 1)
		return true;
	/* "localhost" and a short name (one label: letters, digits, '-'). */
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '-'))
			return false;
	}
	return name[0] != '-';
}

const char *http_redirect_default_name(const struct conf *c)
{
	if (c->http.server_name != NULL)
		return c->http.server_name;
	for (int v = 0; v < c->nvhosts; v++)
		for (int k = 0; k < c->vhosts[v].nnames; k++)
			if (c->vhosts[v].names[k][0] != '*')
				return c->vhosts[v].names[k];
	return NULL;
}

const char *http_reason(int status)
{
	switch (status) {
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 301: return "Moved Permanently";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 426: return "Upgrade Required";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Error";
	}
}

int http_error_page(int status, const char *location, const char *msg, bool close,
		    const struct http_page_extra *px, char *out, size_t cap)
{
	char body[512];
	const char *reason = http_reason(status);
	const char *text = msg;
	int bl = 0;

	switch (msg ? 0 : status) {
	case 301: text = "This page has moved to HTTPS."; break;
	case 403: text = "Access to this resource is not allowed."; break;
	case 502: text = "The mail server could not be reached."; break;
	case 504: text = "The mail server did not answer in time."; break;
	case 0: break;
	default: text = reason; break;
	}
	if (px == NULL || px->body == NULL) {
		bl = snprintf(body, sizeof(body),
			      "<html><head><title>%d %s</title></head><body><h1>%d %s</h1><p>%s</p></body></html>\n",
			      status, reason, status, reason, text);
		if (bl < 0 || (size_t)bl >= sizeof(body))
			return -1;
	}
	int n = snprintf(out, cap,
			 "HTTP/1.1 %d %s\r\nServer: gatehouse\r\nContent-Type: text/html; charset=utf-8\r\n"
			 "Content-Length: %zu\r\n%s%s%s%.*sConnection: %s\r\n\r\n%s",
			 status, reason, px && px->body ? px->body_len : (size_t)bl,
			 location ? "Location: " : "", location ? location : "", location ? "\r\n" : "",
			 px ? (int)px->lines_len : 0, px && px->lines ? px->lines : "",
			 close ? "close" : "keep-alive", px && px->body ? "" : body);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return n;
}

/* Does a query parameter name look like it carries a credential? */
static bool hh__secret_param(const uint8_t *n, size_t len)
{
	static const char *const words[] = { "token", "jwt", "pass", "auth", "key", "secret", NULL };

	for (const char *const *w = words; *w; w++) {
		size_t wl = strlen(*w);
		for (size_t i = 0; i + wl <= len; i++)
			if (strncasecmp((const char *)n + i, *w, wl) == 0)
				return true;
	}
	return false;
}

size_t http_log_target(const uint8_t *buf, struct http_span uri, char *out, size_t cap)
{
	const uint8_t *p = buf + uri.off;
	size_t n = uri.len, o = 0;

	if (cap == 0)
		return 0;
	const uint8_t *q = memchr(p, '?', n);
	size_t pathlen = q ? (size_t)(q - p) : n;
	for (size_t i = 0; i < pathlen && o + 1 < cap; i++)
		out[o++] = (char)p[i];
	size_t i = pathlen;
	while (i < n && o + 1 < cap) {
		/* One parameter: '?' or '&', name, optional '=' value. */
		out[o++] = (char)p[i++];
		size_t ns = i;
		while (i < n && p[i] != '=' && p[i] != '&')
			i++;
		size_t nl = i - ns;
		for (size_t k = ns; k < i && o + 1 < cap; k++)
			out[o++] = (char)p[k];
		if (i < n && p[i] == '=') {
			size_t vs = i + 1;
			while (i + 1 < n && p[i + 1] != '&')
				i++;
			i++;
			if (o + 1 < cap)
				out[o++] = '=';
			if (hh__secret_param(p + ns, nl)) {
				for (const char *r = "***"; *r && o + 1 < cap; r++)
					out[o++] = *r;
			} else {
				for (size_t k = vs; k < i && o + 1 < cap; k++)
					out[o++] = (char)p[k];
			}
		}
	}
	out[o] = '\0';
	return o;
}
