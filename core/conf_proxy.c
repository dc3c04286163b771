/*
 * conf_proxy.c - settings for running behind a load balancer that speaks the
 * PROXY protocol: the top-level trusted_proxies list and the listener member
 * proxy_protocol. limits.proxy_header_timeout sits with the other limits.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "conf_int.h"

#define CONF__MAX_TRUSTED 256

int conf__cidr(const char *v, struct conf_cidr *out)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(v, '/');
	size_t alen = slash ? (size_t)(slash - v) : strlen(v);

	if (alen == 0 || alen >= INET6_ADDRSTRLEN)
		return -1;
	memcpy(buf, v, alen);
	buf[alen] = '\0';
	memset(out, 0, sizeof(*out));
	int max;
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	out->prefix = max;
	if (slash != NULL) {
		const char *p = slash + 1;
		size_t plen = strlen(p);
		if (plen == 0 || plen > 3 || (plen > 1 && p[0] == '0'))
			return -1;
		int n = 0;
		for (size_t i = 0; i < plen; i++) {
			if (p[i] < '0' || p[i] > '9')
				return -1;
			n = n * 10 + (p[i] - '0');
		}
		if (n > max)
			return -1;
		out->prefix = n;
	}
	/* Host bits set ("10.1.2.3/8") are a likely typo: refuse them. */
	for (int bit = out->prefix; bit < max; bit++)
		if (out->addr[bit / 8] & (0x80 >> (bit % 8)))
			return -1;
	return 0;
}

int conf__cidr_list(struct conf_ld *ld, const config_setting_t *s, int max,
		    struct conf_cidr **list_out, int *n_out)
{
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be a list of networks [ \"10.0.0.0/8\", ... ]");
	int count = config_setting_length(s);
	if (count > max)
		return conf__fail(ld, s, NULL, "must have at most %d entries", max);
	if (count == 0)
		return 0;
	/* Filled in place and counted as it goes, so a failure half-way is freed. */
	if ((*list_out = calloc((size_t)count, sizeof(**list_out))) == NULL)
		return conf__oom(ld);
	for (int i = 0; i < count; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v;
		if (conf__string(ld, e, &v) < 0)
			return -1;
		if (conf__cidr(v, &(*list_out)[*n_out]) < 0)
			return conf__fail(ld, e, NULL,
					  "must be ADDRESS or ADDRESS/PREFIX (\"10.0.0.0/8\", \"::1\") without host bits");
		(*n_out)++;
	}
	return 0;
}

int conf__trusted_proxies(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__cidr_list(ld, s, CONF__MAX_TRUSTED, &ld->c->trusted_proxies,
			       &ld->c->ntrusted_proxies);
}

int conf__listen_proxy(struct conf_ld *ld, const config_setting_t *s, struct conf_listen *l)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return conf__fail(ld, s, NULL, "must be true or false");
	l->proxy_protocol = config_setting_get_bool(s) != 0;
	if (l->proxy_protocol && ld->c->ntrusted_proxies == 0)
		return conf__fail(ld, s, NULL,
				  "needs trusted_proxies: no peer would be allowed to connect");
	return 0;
}

void conf__proxy_free(struct conf *c)
{
	free(c->trusted_proxies);
}

/* Is the address a (4 or 16 bytes of family fam) inside one of list[0..n)? */
static bool conf__cidr_in(const struct conf_cidr *list, int n, int fam, const uint8_t *a)
{
	for (int i = 0; i < n; i++) {
		const struct conf_cidr *r = &list[i];
		if (r->family != fam)
			continue;
		int full = r->prefix / 8, rest = r->prefix % 8;
		if (memcmp(a, r->addr, (size_t)full) != 0)
			continue;
		if (rest && ((a[full] ^ r->addr[full]) & (uint8_t)(0xFF << (8 - rest))))
			continue;
		return true;
	}
	return false;
}

static const uint8_t conf__v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

bool conf_proxy_trusted(const struct conf *c, const struct sockaddr *sa)
{
	uint8_t a[16];
	int fam;

	if (sa->sa_family == AF_INET) {
		memcpy(a, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		fam = AF_INET;
	} else if (sa->sa_family == AF_INET6) {
		const uint8_t *b = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
		if (memcmp(b, conf__v4mapped, 12) == 0) {
			/* A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d. */
			memcpy(a, b + 12, 4);
			fam = AF_INET;
		} else {
			memcpy(a, b, 16);
			fam = AF_INET6;
		}
	} else {
		return false;
	}
	return conf__cidr_in(c->trusted_proxies, c->ntrusted_proxies, fam, a);
}

bool conf_cidr_match(const struct conf_cidr *list, int n, const char *ip)
{
	uint8_t a[16];

	if (n <= 0 || ip == NULL)
		return false;
	if (inet_pton(AF_INET, ip, a) == 1)
		return conf__cidr_in(list, n, AF_INET, a);
	if (inet_pton(AF_INET6, ip, a) != 1)
		return false;
	if (memcmp(a, conf__v4mapped, 12) == 0) {
		memmove(a, a + 12, 4);
		return conf__cidr_in(list, n, AF_INET, a);
	}
	return conf__cidr_in(list, n, AF_INET6, a);
}
