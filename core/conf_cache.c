/*
 * core/conf_cache.c - the `cache` group: the in-process L1 route cache and
 * the memcached servers shared with other proxies.
 *
 *   cache = {
 *     memcached = [ "10.0.0.7:11211", "10.0.0.8" ];
 *     ttl = 3600; hash_keys = false; distribution = "modula";
 *     timeout = 0.5; retry_interval = 10;
 *     l1_entries = 100000; l1_ttl = 60.0;
 *   };
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf_int.h"
#include "gh.h"

#define CONF__MEMCACHED_PORT 11211

static const char *const conf__distribution_names[] = {
	[CONF_CACHE_MODULA] = "modula",
	[CONF_CACHE_CONSISTENT] = "consistent",
};

static int conf__memcached(struct conf_ld *ld, const config_setting_t *s)
{
	struct conf *c = ld->c;

	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be an array of strings [ ... ]");
	int count = config_setting_length(s);
	if (count > CONF_MAX_MEMCACHED)
		return conf__fail(ld, s, NULL, "must have at most %d entries", CONF_MAX_MEMCACHED);

	for (int i = 0; i < count; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		char host[CONF__MAX_HOSTNAME + 3];
		uint16_t port = CONF__MEMCACHED_PORT;
		const char *v, *why = NULL;

		if (conf__string(ld, e, &v) < 0)
			return -1;
		if (conf__split_server(v, host, sizeof(host), &port, &why) < 0)
			return conf__fail(ld, e, NULL, "%s", why);
		for (int k = 0; k < c->cache.nservers; k++) {
			if (strcasecmp(c->cache.servers[k].host, host) == 0 &&
			    c->cache.servers[k].port == port)
				return conf__fail(ld, e, NULL, "duplicate server %s", v);
		}
		/* Counted before filling so a failure half-way is freed. */
		struct conf_memcached *m = &c->cache.servers[c->cache.nservers++];
		m->port = port;
		if ((m->host = strdup(host)) == NULL)
			return conf__oom(ld);
	}
	return 0;
}

static int conf__distribution(struct conf_ld *ld, const config_setting_t *s)
{
	return CONF__SET_KEYWORD(ld, s, conf__distribution_names, &ld->c->cache.distribution);
}

#define CONF__CACHE(f) offsetof(struct conf, cache.f)

static const struct conf_opt conf__cache_opts[] = {
	{ "memcached", CONF__T_FN, 0, 0, 0, conf__memcached },
	/* memcached reads a relative expiry above 30 days as a Unix time. */
	{ "ttl", CONF__T_INT, CONF__CACHE(ttl), 1, 2592000, NULL },
	{ "hash_keys", CONF__T_BOOL, CONF__CACHE(hash_keys), 0, 0, NULL },
	{ "distribution", CONF__T_FN, 0, 0, 0, conf__distribution },
	{ "timeout", CONF__T_SECS, CONF__CACHE(timeout), 0.01, 10, NULL },
	{ "retry_interval", CONF__T_INT, CONF__CACHE(retry_interval), 1, 3600, NULL },
	{ "l1_entries", CONF__T_SIZE, CONF__CACHE(l1_entries), 0, 10000000, NULL },
	{ "l1_ttl", CONF__T_SECS, CONF__CACHE(l1_ttl), 0, 3600, NULL },
};

int conf__cache(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__group(ld, s, conf__cache_opts, ARRAY_SIZE(conf__cache_opts));
}

void conf__cache_defaults(struct conf *c)
{
	c->cache.nservers = 0;
	c->cache.ttl = 3600;
	c->cache.hash_keys = false;
	c->cache.distribution = CONF_CACHE_MODULA;
	c->cache.timeout = 0.5;
	c->cache.retry_interval = 10;
	c->cache.l1_entries = 100000;
	c->cache.l1_ttl = 60.0;
}

void conf__cache_free(struct conf *c)
{
	for (int i = 0; i < c->cache.nservers; i++)
		free(c->cache.servers[i].host);
	c->cache.nservers = 0;
}
