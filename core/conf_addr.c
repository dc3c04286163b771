/*
 * conf_addr.c - listen addresses, backend "host[:port]" and lookup URLs as
 * written in the configuration. Pure string work: nothing is resolved here.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf_int.h"

/* A DNS name or IPv4 literal as people write them; not resolved here. */
bool conf__hostname_ok(const char *h, size_t len)
{
	if (len == 0 || len > CONF__MAX_HOSTNAME)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)h[i];
		if (!isalnum(ch) && ch != '-' && ch != '.' && ch != '_')
			return false;
	}
	return true;
}

/* Parse 1..65535 from exactly len decimal digits. */
bool conf__port(const char *s, size_t len, uint16_t *out)
{
	unsigned v = 0;

	if (len == 0 || len > 5)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

int conf_parse_addr(const char *s, struct sockaddr_storage *addr, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN];
	const char *colon;
	size_t hlen;
	uint16_t port;

	if (s == NULL || addr == NULL || len == NULL)
		return -1;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return -1;
		hlen = (size_t)(close - s - 1);
		if (hlen == 0 || hlen >= sizeof(host))
			return -1;
		memcpy(host, s + 1, hlen);
		host[hlen] = '\0';
		colon = close + 1;
		if (!conf__port(colon + 1, strlen(colon + 1), &port))
			return -1;

		struct sockaddr_in6 sin6;
		memset(&sin6, 0, sizeof(sin6));
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons(port);
		if (inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1)
			return -1;
		memset(addr, 0, sizeof(*addr));
		memcpy(addr, &sin6, sizeof(sin6));
		*len = sizeof(sin6);
		return 0;
	}

	colon = strchr(s, ':');
	if (colon == NULL || strchr(colon + 1, ':') != NULL)
		return -1;
	hlen = (size_t)(colon - s);
	if (hlen == 0 || hlen >= sizeof(host))
		return -1;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (!conf__port(colon + 1, strlen(colon + 1), &port))
		return -1;

	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	if (strcmp(host, "*") == 0)
		sin.sin_addr.s_addr = htonl(INADDR_ANY);
	else if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
		return -1;
	memset(addr, 0, sizeof(*addr));
	memcpy(addr, &sin, sizeof(sin));
	*len = sizeof(sin);
	return 0;
}

/*
 * Split "http://HOST[:PORT][/PATH]". host_out gets HOST as written (brackets
 * kept: it is the Host header), name_out the part to resolve. Pure.
 */
int conf__split_url(const char *url, char *host_out, char *name_out, size_t cap,
		    uint16_t *port_out, const char **path_out, bool *numeric_out,
		    bool *tls_out, const char **why)
{
	const char *p, *end;

	if (strlen(url) > CONF__MAX_URL) {
		*why = "URL is too long";
		return -1;
	}
	*tls_out = strncasecmp(url, "https://", 8) == 0;
	if (!*tls_out && strncasecmp(url, "http://", 7) != 0) {
		*why = "must be an http:// or https:// URL";
		return -1;
	}
	p = url + (*tls_out ? 8 : 7);

	*numeric_out = false;
	if (*p == '[') {
		const char *close = strchr(p, ']');
		struct in6_addr a6;
		if (close == NULL || (size_t)(close - p + 1) >= cap) {
			*why = "bad IPv6 address in URL";
			return -1;
		}
		size_t n = (size_t)(close - p - 1);
		memcpy(name_out, p + 1, n);
		name_out[n] = '\0';
		if (inet_pton(AF_INET6, name_out, &a6) != 1) {
			*why = "bad IPv6 address in URL";
			return -1;
		}
		memcpy(host_out, p, n + 2);
		host_out[n + 2] = '\0';
		*numeric_out = true;
		end = close + 1;
	} else {
		end = p + strcspn(p, ":/");
		size_t n = (size_t)(end - p);
		if (n >= cap || !conf__hostname_ok(p, n)) {
			*why = "bad host name in URL";
			return -1;
		}
		memcpy(name_out, p, n);
		name_out[n] = '\0';
		memcpy(host_out, p, n);
		host_out[n] = '\0';
	}

	*port_out = CONF__DEFAULT_LOOKUP_PORT;
	if (*end == ':') {
		const char *ps = end + 1;
		end = ps + strcspn(ps, "/");
		if (!conf__port(ps, (size_t)(end - ps), port_out)) {
			*why = "bad port in URL";
			return -1;
		}
	}

	if (*end == '\0') {
		*path_out = CONF__DEFAULT_LOOKUP_PATH;
		return 0;
	}
	if (*end != '/') {
		*why = "bad URL";
		return -1;
	}
	/* The path goes into the request line as is. */
	for (const char *q = end; *q != '\0'; q++) {
		if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f || *q == '#') {
			*why = "bad character in URL path";
			return -1;
		}
	}
	*path_out = end;
	return 0;
}

/* "HOST[:PORT]" or "[V6][:PORT]"; host stored without brackets. Pure. */
int conf__split_server(const char *v, char *host, size_t cap, uint16_t *port,
		       const char **why)
{
	const char *end;

	if (v[0] == '[') {
		const char *close = strchr(v, ']');
		struct in6_addr a6;
		size_t n;
		if (close == NULL || (n = (size_t)(close - v - 1)) >= cap) {
			*why = "bad IPv6 address";
			return -1;
		}
		memcpy(host, v + 1, n);
		host[n] = '\0';
		if (inet_pton(AF_INET6, host, &a6) != 1) {
			*why = "bad IPv6 address";
			return -1;
		}
		end = close + 1;
	} else {
		end = v + strcspn(v, ":");
		size_t n = (size_t)(end - v);
		if (*end == ':' && strchr(end + 1, ':') != NULL) {
			*why = "IPv6 addresses must be written in brackets: [V6]:PORT";
			return -1;
		}
		if (n >= cap || !conf__hostname_ok(v, n)) {
			*why = "bad host name";
			return -1;
		}
		memcpy(host, v, n);
		host[n] = '\0';
	}

	if (*end == '\0')
		return 0;
	if (*end != ':' || !conf__port(end + 1, strlen(end + 1), port)) {
		*why = "bad port (must be 1..65535)";
		return -1;
	}
	return 0;
}

bool conf__same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return x->sin6_port == y->sin6_port
	       && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}
