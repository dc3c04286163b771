/*
 * core/conf_upstream.c - the `upstreams` list: named groups of web servers
 * that locations (core/conf_location.c) send requests to, each with its
 * port, TLS, balancing, passive health and keep-alive pool.
 *
 *   upstreams = (
 *     { name = "mailstores"; servers = [ "10.0.0.21", "10.0.0.22:8443" ];
 *       port = 8080; balance = "route"; max_fails = 1; fail_timeout = 10; }
 *   );
 */
#include <stdlib.h>
#include <string.h>

#include "conf_int.h"
#include "gh.h"

#define CONF__MAX_UPSTREAMS 256
#define CONF__UPSTREAM_MAX_SERVERS 256
#define CONF__UPSTREAM_MAX_NAME 64

static const char *const conf__balance_names[] = {
	[CONF_BALANCE_ROUTE] = "route",
	[CONF_BALANCE_IP_HASH] = "ip_hash",
	[CONF_BALANCE_ROUND_ROBIN] = "round_robin",
};
GH_NAMES_CHECK(conf__balance_names, CONF_BALANCE_COUNT);

/* An upstream or location name: [A-Za-z0-9_-], 1..64. */
bool conf__ident_ok(const char *v)
{
	size_t n = strlen(v);

	if (n == 0 || n > CONF__UPSTREAM_MAX_NAME)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = v[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
		      || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

static int conf__upstream_servers(struct conf_ld *ld, const config_setting_t *s,
				  struct conf_upstream *u)
{
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be an array of strings [ \"host[:port]\", ... ]");
	int count = config_setting_length(s);
	if (count < 1 || count > CONF__UPSTREAM_MAX_SERVERS)
		return conf__fail(ld, s, NULL, "must have 1 to %d entries", CONF__UPSTREAM_MAX_SERVERS);
	if ((u->servers = calloc((size_t)count, sizeof(*u->servers))) == NULL)
		return conf__oom(ld);
	for (int i = 0; i < count; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		struct conf_http_backend *b = &u->servers[i];
		char host[CONF__MAX_HOSTNAME + 1];
		const char *v, *why = NULL;

		if (conf__string(ld, e, &v) < 0)
			return -1;
		b->port = 0; /* none written: the group's port, filled in at the end */
		if (conf__split_server(v, host, sizeof(host), &b->port, &why) < 0)
			return conf__fail(ld, e, NULL, "%s", why);
		if ((b->host = strdup(host)) == NULL)
			return conf__oom(ld);
		u->nservers++;
	}
	return 0;
}

/* One member of an upstream group. */
static int conf__upstream_member(struct conf_ld *ld, const config_setting_t *s,
				 struct conf_upstream *u)
{
	const char *name = config_setting_name(s), *v;
	double d;

	if (strcmp(name, "name") == 0) {
		if (conf__string(ld, s, &v) < 0)
			return -1;
		if (!conf__ident_ok(v))
			return conf__fail(ld, s, NULL, "must be 1 to %d letters, digits, '_' or '-'",
					  CONF__UPSTREAM_MAX_NAME);
		return conf__set_str(ld, &u->name, v);
	}
	if (strcmp(name, "servers") == 0)
		return conf__upstream_servers(ld, s, u);
	if (strcmp(name, "port") == 0) {
		if (conf__number(ld, s, true, 1, 65535, &d) < 0)
			return -1;
		u->port = (uint16_t)d;
		return 0;
	}
	if (strcmp(name, "tls") == 0 || strcmp(name, "verify") == 0 ||
	    strcmp(name, "admin") == 0 || strcmp(name, "rewrite_redirects") == 0) {
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			return conf__fail(ld, s, NULL, "must be true or false");
		bool *b = name[0] == 't' ? &u->tls : name[0] == 'v' ? &u->verify
			: name[0] == 'a' ? &u->admin : &u->rewrite_redirects;
		*b = config_setting_get_bool(s) != 0;
		return 0;
	}
	if (strcmp(name, "sni") == 0) {
		if (conf__string(ld, s, &v) < 0)
			return -1;
		if (!conf__hostname_ok(v, strlen(v)))
			return conf__fail(ld, s, NULL, "must be a host name");
		return conf__set_str(ld, &u->sni, v);
	}
	if (strcmp(name, "balance") == 0) {
		int i = CONF__KEYWORD(ld, s, conf__balance_names);
		if (i < 0)
			return -1;
		u->balance = (enum conf_balance)i;
		return 0;
	}
	if (strcmp(name, "max_fails") == 0 || strcmp(name, "keepalive") == 0) {
		bool fails = name[0] == 'm';
		if (conf__number(ld, s, true, 0, fails ? 100 : 10000, &d) < 0)
			return -1;
		*(fails ? &u->max_fails : &u->keepalive) = (int)d;
		return 0;
	}
	if (strcmp(name, "fail_timeout") == 0)
		return conf__number(ld, s, false, 1, 3600, &u->fail_timeout);
	return conf__fail(ld, s, NULL, "unknown setting");
}

static int conf__upstream_one(struct conf_ld *ld, const config_setting_t *g,
			      struct conf_upstream *u)
{
	if (!config_setting_is_group(g))
		return conf__fail(ld, g, NULL, "must be a group { name = ...; servers = [ ... ]; }");
	/* Defaults: Zimbra's zimbraMailProxyMaxFails (1) and
	   zimbraMailProxyReconnectTimeout (10 s); TLS verified when on. */
	u->port = 8080;
	u->verify = true;
	u->balance = CONF_BALANCE_ROUTE;
	u->max_fails = 1;
	u->fail_timeout = 10.0;
	u->keepalive = 32;
	u->line = (int)config_setting_source_line(g);
	int count = config_setting_length(g);
	for (int i = 0; i < count; i++) {
		if (conf__upstream_member(ld, config_setting_get_elem(g, (unsigned)i), u) < 0)
			return -1;
	}
	if (u->name == NULL)
		return conf__fail(ld, g, "name", "required setting is missing");
	if (u->nservers == 0)
		return conf__fail(ld, g, "servers", "required setting is missing");
	const config_setting_t *sni = config_setting_get_member(g, "sni");
	if (sni != NULL && !u->tls)
		return conf__fail(ld, sni, NULL, "only with tls = true");
	/* Admin routing is a way of routing: it means nothing to a hash. */
	if (u->admin && u->balance != CONF_BALANCE_ROUTE)
		return conf__fail(ld, config_setting_get_member(g, "admin"), NULL,
				  "only with balance = \"route\"");
	for (int i = 0; i < u->nservers; i++)
		if (u->servers[i].port == 0)
			u->servers[i].port = u->port;
	return 0;
}

int conf__upstreams(struct conf_ld *ld, const config_setting_t *s)
{
	struct conf *c = ld->c;

	if (!config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be a list of groups ( { ... }, ... )");
	int count = config_setting_length(s);
	if (count > CONF__MAX_UPSTREAMS)
		return conf__fail(ld, s, NULL, "must have at most %d entries", CONF__MAX_UPSTREAMS);
	conf__upstreams_free(c);
	if (count == 0)
		return 0;
	if ((c->upstreams = calloc((size_t)count, sizeof(*c->upstreams))) == NULL)
		return conf__oom(ld);
	for (int i = 0; i < count; i++) {
		const config_setting_t *g = config_setting_get_elem(s, (unsigned)i);
		struct conf_upstream *u = &c->upstreams[c->nupstreams++];

		if (conf__upstream_one(ld, g, u) < 0)
			return -1;
		for (int k = 0; k < i; k++) {
			if (strcmp(c->upstreams[k].name, u->name) == 0)
				return conf__fail(ld, config_setting_get_member(g, "name"), NULL,
						  "duplicate upstream \"%s\" (first at line %d)", u->name,
						  c->upstreams[k].line);
		}
	}
	return 0;
}

bool conf__upstreams_need_tls(const struct conf *c)
{
	for (int i = 0; i < c->nupstreams; i++)
		if (c->upstreams[i].tls)
			return true;
	return false;
}

void conf__upstreams_free(struct conf *c)
{
	for (int i = 0; i < c->nupstreams; i++) {
		struct conf_upstream *u = &c->upstreams[i];
		for (int k = 0; k < u->nservers; k++)
			free(u->servers[k].host);
		free(u->servers);
		free(u->name);
		free(u->sni);
	}
	free(c->upstreams);
	c->upstreams = NULL;
	c->nupstreams = 0;
}

const struct conf_upstream *conf_upstream_find(const struct conf *c, const char *name)
{
	for (int i = 0; i < c->nupstreams; i++)
		if (strcmp(c->upstreams[i].name, name) == 0)
			return &c->upstreams[i];
	return NULL;
}
