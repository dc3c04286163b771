/*
 * rcache_key.c - memcached keys and values exactly as Zimbra's proxy writes
 * them, so gatehouse shares a cache with Zimbra's nginx and zmproxypurge.
 * Pure: no I/O, no allocation.
 *
 * Every part of a key is validated before the key is built: user names
 * once poisoned Zimbra's memcached (CVE-2022-27924) by carrying CRLF and a
 * second command.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "rcache.h"

static bool rcache__proto_ok(const char *p)
{
	size_t n = p ? strlen(p) : 0;

	if (n == 0 || n > RCACHE_MAX_PROTO)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9')))
			return false;
	return true;
}

static bool rcache__ip_ok(const char *ip);

static bool rcache__name_ok(const char *s, size_t max)
{
	return s != NULL && route_name_valid(s, strlen(s), max);
}

static void rcache__hex(const unsigned char *d, unsigned n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (unsigned i = 0; i < n; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Fill k->wire from k->raw. */
static bool rcache__finish(struct rcache_key *k, bool hashed)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dn = 0;

	if (!hashed && k->raw_len <= RCACHE_MAX_WIRE_KEY) {
		memcpy(k->wire, k->raw, k->raw_len + 1);
		k->wire_len = k->raw_len;
		return true;
	}
	/* Carbonio hashes every key with SHA-256; Zimbra's nginx MD5s a key
	   memcached would refuse as too long. */
	if (EVP_Digest(k->raw, k->raw_len, d, &dn, hashed ? EVP_sha256() : EVP_md5(), NULL) != 1)
		return false;
	rcache__hex(d, dn, k->wire);
	k->wire_len = 2 * (size_t)dn;
	return true;
}

__attribute__((format(printf, 3, 4)))
static bool rcache__build(struct rcache_key *k, bool hashed, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(k->raw, sizeof(k->raw), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(k->raw))
		return false;
	k->raw_len = (size_t)n;
	return rcache__finish(k, hashed);
}

bool rcache_key_route_user(struct rcache_key *out, const char *proto, const char *user,
			   bool hashed)
{
	memset(out, 0, sizeof(*out));
	if (!rcache__proto_ok(proto) || !rcache__name_ok(user, ROUTE_MAX_USER - 1))
		return false;
	return rcache__build(out, hashed, "route:proto=%s;user=%s", proto, user);
}

bool rcache_key_alias(struct rcache_key *out, const char *login, const char *ip, bool hashed)
{
	memset(out, 0, sizeof(*out));
	if (!rcache__name_ok(login, ROUTE_MAX_USER - 1) || !rcache__name_ok(ip, RCACHE_MAX_IP))
		return false;
	return rcache__build(out, hashed, "alias:user=%s;ip=%s", login, ip);
}

bool rcache_key_alias_web(struct rcache_key *out, const char *login, const char *vhost,
			  bool hashed)
{
	memset(out, 0, sizeof(*out));
	if (!rcache__name_ok(login, ROUTE_MAX_USER - 1) || !rcache__name_ok(vhost, RCACHE_MAX_HOST))
		return false;
	return rcache__build(out, hashed, "alias:user=%s;vhost=%s", login, vhost);
}

bool rcache_login_qualified(const char *login)
{
	size_t n = login ? strlen(login) : 0;

	/* Zimbra's is_login_qualified(): an '@' anywhere but last. */
	return n > 1 && memchr(login, '@', n - 1) != NULL;
}

bool rcache_proto_web(const char *proto)
{
	return proto != NULL && strncmp(proto, "http", 4) == 0;
}

bool rcache_key_route_name(struct rcache_key *out, const char *proto, const char *name,
			   const char *proxy_ip, bool hashed)
{
	memset(out, 0, sizeof(*out));
	if (name == NULL || rcache_login_qualified(name))
		return rcache_key_route_user(out, proto, name, hashed);
	/* Unqualified: the lookup qualified it by the address the client
	   connected to (mail) or by the vhost (web). Mail keys carry that
	   address as Zimbra's do ("<name>@<ip>", the form zmproxypurge deletes
	   for each zimbraVirtualIPAddress); web ones have no such form, so an
	   unqualified web name is cached only through its vhost alias. */
	if (rcache_proto_web(proto) || !rcache__proto_ok(proto) ||
	    !rcache__name_ok(name, ROUTE_MAX_USER - 1) || !rcache__ip_ok(proxy_ip))
		return false;
	return rcache__build(out, hashed, "route:proto=%s;user=%s@%s", proto, name, proxy_ip);
}

bool rcache_key_alias_for(struct rcache_key *out, const char *proto, const char *login,
			  const char *proxy_ip, const char *vhost, bool hashed)
{
	if (rcache_proto_web(proto))
		return rcache_key_alias_web(out, login, vhost, hashed);
	memset(out, 0, sizeof(*out));
	if (!rcache__ip_ok(proxy_ip))
		return false;
	return rcache_key_alias(out, login, proxy_ip, hashed);
}

bool rcache_key_route_id(struct rcache_key *out, const char *proto, const char *id, bool hashed)
{
	memset(out, 0, sizeof(*out));
	if (!rcache__proto_ok(proto) || !rcache__name_ok(id, RCACHE_MAX_ID))
		return false;
	return rcache__build(out, hashed, "route:proto=%s;id=%s", proto, id);
}

bool rcache_key_route_admin_id(struct rcache_key *out, const char *proto, const char *id,
				bool hashed)
{
	memset(out, 0, sizeof(*out));
	if (!rcache__proto_ok(proto) || !rcache__name_ok(id, RCACHE_MAX_ID))
		return false;
	/* Zimbra's nginx (ngx_zm_lookup_get_id_route_key, zmauth_admin). */
	return rcache__build(out, hashed, "route:proto=%s;admin=1;id=%s", proto, id);
}

bool rcache_key_route_id_for(struct rcache_key *out, const char *proto, const char *id,
			     bool admin, bool hashed)
{
	return admin ? rcache_key_route_admin_id(out, proto, id, hashed)
		     : rcache_key_route_id(out, proto, id, hashed);
}

int rcache_value_format(char *out, size_t cap, const char *host, uint16_t port)
{
	int n;

	if (host == NULL || host[0] == '\0' || port == 0)
		return -1;
	if (strchr(host, ':') != NULL)
		n = snprintf(out, cap, "[%s]:%u", host, (unsigned)port);
	else
		n = snprintf(out, cap, "%s:%u", host, (unsigned)port);
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

bool rcache_value_parse(const char *v, size_t n, char *host_out, size_t host_cap,
			uint16_t *port_out)
{
	const char *host, *colon;
	size_t hl;

	if (v == NULL || n == 0)
		return false;
	if (v[0] == '[') {
		const char *close = memchr(v, ']', n);
		if (close == NULL || close + 1 >= v + n || close[1] != ':')
			return false;
		host = v + 1;
		hl = (size_t)(close - host);
		colon = close + 1;
		if (hl == 0 || memchr(host, ':', hl) == NULL)
			return false;
	} else {
		colon = NULL;
		for (size_t i = n; i > 0; i--)
			if (v[i - 1] == ':') {
				colon = v + i - 1;
				break;
			}
		if (colon == NULL)
			return false;
		host = v;
		hl = (size_t)(colon - v);
		/* An unbracketed IPv6 address is ambiguous: refuse it. */
		if (hl == 0 || memchr(host, ':', hl) != NULL)
			return false;
	}
	for (size_t i = 0; i < hl; i++) {
		unsigned char ch = (unsigned char)host[i];
		if (ch <= 0x20 || ch == 0x7f || ch == '[' || ch == ']' || ch == '/')
			return false;
	}
	size_t pl = (size_t)(v + n - colon - 1);
	if (pl == 0 || pl > 5)
		return false;
	unsigned port = 0;
	for (size_t i = 0; i < pl; i++) {
		char ch = colon[1 + i];
		if (ch < '0' || ch > '9')
			return false;
		port = port * 10 + (unsigned)(ch - '0');
	}
	if (port == 0 || port > 65535 || hl >= host_cap)
		return false;
	memcpy(host_out, host, hl);
	host_out[hl] = '\0';
	*port_out = (uint16_t)port;
	return true;
}

/* An address as gatehouse prints it: hex digits, '.', ':' only. */
static bool rcache__ip_ok(const char *ip)
{
	size_t n = ip ? strlen(ip) : 0;

	if (n == 0 || n > RCACHE_MAX_IP)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = ip[i];
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') ||
		      ch == '.' || ch == ':'))
			return false;
	}
	return true;
}

bool rcache_key_throttle_ip(struct rcache_key *out, char proto, const char *ip, bool hashed)
{
	memset(out, 0, sizeof(*out));
	if ((proto != 'i' && proto != 'p') || !rcache__ip_ok(ip))
		return false;
	/* The comma is Zimbra's (reference §2.2), not a typo. */
	return rcache__build(out, hashed, "throttle:proto=%c,ip=%s", proto, ip);
}

bool rcache_key_throttle_failed(struct rcache_key *out, const char *ip, bool hashed)
{
	memset(out, 0, sizeof(*out));
	if (!rcache__ip_ok(ip))
		return false;
	return rcache__build(out, hashed, "throttle:failed,ip=%s", ip);
}

bool rcache_key_throttle_user(struct rcache_key *out, const char *user, bool hashed)
{
	char esc[3 * ROUTE_MAX_USER];
	size_t o = 0;

	memset(out, 0, sizeof(*out));
	if (!rcache__name_ok(user, ROUTE_MAX_USER - 1))
		return false;
	/* Zimbra %-escapes space, '%' and controls; valid names have only '%'. */
	for (const char *p = user; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '%' || ch <= 0x20 || ch == 0x7f) {
			snprintf(esc + o, sizeof(esc) - o, "%%%02X", ch);
			o += 3;
		} else {
			esc[o++] = (char)ch;
		}
	}
	esc[o] = '\0';
	return rcache__build(out, hashed, "throttle:user=%s", esc);
}
