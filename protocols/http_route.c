/*
 * http_route.c - which mailstore a web request goes to (reference §1.6,
 * first match wins): a user named in a REST or DAV path, the user of HTTP
 * Basic credentials, the zimbraId of a ZM_AUTH_TOKEN cookie, else a hash of
 * the client address. Pure: the session code does the lookups.
 */
#include <string.h>
#include <strings.h>

#include "gh.h"
#include "http.h"

/* Longest Authorization value we decode (user:password, base64). */
#define HTTP_BASIC_MAX 2048

/* A name may be routed on if it has no control character, space or '%'. */
static bool rt__name_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c == 0x7f || c == '%' || c == '/' || c == '\\')
			return false;
	}
	return true;
}

/* %-decode p[0..n) into out (cap bytes, NUL-terminated). Length or -1. */
static int rt__pct_decode(const uint8_t *p, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (c == '%') {
			if (i + 2 >= n)
				return -1;
			int hi = gh_hexval((unsigned char)p[i + 1]), lo = gh_hexval((unsigned char)p[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (uint8_t)(hi * 16 + lo);
			i += 2;
		}
		if (o + 1 >= cap)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (int)o;
}

/*
 * If path (without query) starts with prefix, the next segment is the user:
 * "~" alone (or "~" followed by nothing) means the authenticated user and
 * does not match; "~name" means name.
 */
static bool rt__path_user(const uint8_t *path, size_t n, const char *prefix, char *out, size_t cap)
{
	size_t pl = strlen(prefix);

	if (n <= pl || strncasecmp((const char *)path, prefix, pl) != 0)
		return false;
	const uint8_t *seg = path + pl;
	size_t sl = 0;
	while (pl + sl < n && seg[sl] != '/')
		sl++;
	if (sl > 0 && seg[0] == '~') {
		seg++;
		sl--;
	}
	if (sl == 0)
		return false;
	int len = rt__pct_decode(seg, sl, out, cap);
	return len > 0 && rt__name_ok(out, (size_t)len);
}

static int rt__b64val(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decode base64 p[0..n) into out (cap); length or -1. */
static int rt__b64(const uint8_t *p, size_t n, uint8_t *out, size_t cap)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;

	while (n > 0 && p[n - 1] == '=')
		n--;
	for (size_t i = 0; i < n; i++) {
		int v = rt__b64val(p[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= cap)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	return (int)o;
}

/* The user of "Authorization: Basic <b64(user:pass)>"; DOM\user -> user@DOM. */
static bool rt__basic_user(const uint8_t *buf, const struct http_head *h, char *out, size_t cap)
{
	const struct http_header *a = http_header_find(buf, h, "Authorization");
	uint8_t dec[HTTP_BASIC_MAX];

	if (a == NULL || a->value.len < 7 || a->value.len > HTTP_BASIC_MAX ||
	    strncasecmp((const char *)buf + a->value.off, "Basic ", 6) != 0)
		return false;
	const uint8_t *v = buf + a->value.off + 6;
	size_t vl = a->value.len - 6;
	while (vl > 0 && (v[0] == ' ' || v[0] == '\t')) {
		v++;
		vl--;
	}
	while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
		vl--;
	int n = rt__b64(v, vl, dec, sizeof(dec));
	bool ok = false;
	if (n > 0) {
		const uint8_t *colon = memchr(dec, ':', (size_t)n);
		size_t ul = colon ? (size_t)(colon - dec) : 0;
		const uint8_t *bs = ul ? memchr(dec, '\\', ul) : NULL;
		if (bs != NULL) {
			/* DOMAIN\user (ActiveSync) means user@DOMAIN. */
			size_t dl = (size_t)(bs - dec), nl = ul - dl - 1;
			if (dl > 0 && nl > 0 && nl + 1 + dl < cap) {
				memcpy(out, bs + 1, nl);
				out[nl] = '@';
				memcpy(out + nl + 1, dec, dl);
				out[nl + 1 + dl] = '\0';
				ok = rt__name_ok(out, nl + 1 + dl);
			}
		} else if (ul > 0 && ul < cap) {
			memcpy(out, dec, ul);
			out[ul] = '\0';
			ok = rt__name_ok(out, ul);
		}
	}
	/* The decoded bytes held the password. */
	memset(dec, 0, sizeof(dec));
	__asm__ volatile("" : : "r"(dec) : "memory");
	if (!ok)
		out[0] = '\0';
	return ok;
}

static bool rt__token_id(const uint8_t *buf, const struct http_head *h, const char *cookie,
			 char *out, size_t cap)
{
	for (int i = 0; i < h->nhdr; i++) {
		if (!http_span_is(buf, h->hdr[i].name, "Cookie"))
			continue;
		size_t tl;
		const char *t = http_cookie_find((const char *)buf + h->hdr[i].value.off,
						 h->hdr[i].value.len, cookie, &tl);
		if (t != NULL && http_token_zimbra_id(t, tl, out, cap) > 0)
			return true;
	}
	out[0] = '\0';
	return false;
}

enum http_route_kind http_route_pick(const uint8_t *buf, const struct http_head *h, char *out,
				     size_t cap)
{
	static const char *const prefixes[] = {
		"/home/", "/service/home/", "/dav/", "/principals/users/",
	};
	const uint8_t *uri = buf + h->uri.off;
	size_t n = h->uri.len;

	if (cap == 0)
		return HTTP_ROUTE_HASH;
	out[0] = '\0';
	const uint8_t *q = memchr(uri, '?', n);
	size_t pathlen = q ? (size_t)(q - uri) : n;
	for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++)
		if (rt__path_user(uri, pathlen, prefixes[i], out, cap))
			return HTTP_ROUTE_USER;
	out[0] = '\0';
	if (rt__basic_user(buf, h, out, cap))
		return HTTP_ROUTE_USER;
	if (rt__token_id(buf, h, "ZM_AUTH_TOKEN", out, cap))
		return HTTP_ROUTE_ID;
	return HTTP_ROUTE_HASH;
}

enum http_route_kind http_route_pick_admin(const uint8_t *buf, const struct http_head *h,
					   char *out, size_t cap)
{
	if (cap == 0)
		return HTTP_ROUTE_HASH;
	return rt__token_id(buf, h, "ZM_ADMIN_AUTH_TOKEN", out, cap) ? HTTP_ROUTE_ID
								       : HTTP_ROUTE_HASH;
}

unsigned http_ip_hash(const char *ip, unsigned n)
{
	uint32_t x = 2166136261u;

	for (const char *p = ip; *p; p++) {
		x ^= (uint8_t)*p;
		x *= 16777619u;
	}
	return n ? x % n : 0;
}

bool http_uri_has_encoded_crlf(const uint8_t *buf, struct http_span uri)
{
	const uint8_t *p = buf + uri.off;

	for (size_t i = 0; i + 2 < uri.len; i++) {
		if (p[i] == '%' && p[i + 1] == '0' && (p[i + 2] == 'a' || p[i + 2] == 'A' ||
						       p[i + 2] == 'd' || p[i + 2] == 'D'))
			return true;
	}
	return false;
}

bool http_target_origin(const uint8_t *buf, struct http_span uri, struct http_span *uri_out,
			struct http_span *auth_out)
{
	const uint8_t *p = buf + uri.off;
	size_t n = uri.len;

	*uri_out = uri;
	auth_out->off = uri.off;
	auth_out->len = 0;
	if (n == 0)
		return false;
	if (p[0] == '/' || (n == 1 && p[0] == '*'))
		return true;
	size_t sl;
	if (n > 7 && strncasecmp((const char *)p, "http://", 7) == 0)
		sl = 7;
	else if (n > 8 && strncasecmp((const char *)p, "https://", 8) == 0)
		sl = 8;
	else
		return false;
	size_t a = sl;
	while (a < n && p[a] != '/' && p[a] != '?' && p[a] != '#')
		a++;
	/* No authority, userinfo in it, or no path: refused rather than guessed. */
	if (a == sl || memchr(p + sl, '@', a - sl) != NULL || a >= n || p[a] != '/')
		return false;
	auth_out->off = uri.off + (uint32_t)sl;
	auth_out->len = (uint32_t)(a - sl);
	uri_out->off = uri.off + (uint32_t)a;
	uri_out->len = (uint32_t)(n - a);
	return true;
}
