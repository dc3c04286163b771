/*
 * route_purge.c - `gatehouse purge`'s memcached part: delete a user's
 * routes and aliases in every key form gatehouse writes and zmproxypurge
 * deletes, on every memcached server of a configuration. Blocking: for
 * the command line only, never on an event loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "gh.h"
#include "rcache.h"
#include "route.h"
#include "tls.h"

static const char *const purge__protos[] = { "imap", "imapssl", "pop3", "pop3ssl",
					     "http", "httpssl" };

struct purge__keys {
	struct rcache_key *k;
	int n, cap;
};

static int purge__add(struct purge__keys *ks, const struct rcache_key *k)
{
	for (int i = 0; i < ks->n; i++)
		if (strcmp(ks->k[i].raw, k->raw) == 0)
			return 0;
	if (ks->n == ks->cap) {
		int cap = ks->cap ? 2 * ks->cap : 64;
		struct rcache_key *nk = realloc(ks->k, (size_t)cap * sizeof(*nk));
		if (nk == NULL)
			return -1;
		ks->k = nk;
		ks->cap = cap;
	}
	ks->k[ks->n++] = *k;
	return 0;
}

/* Every key of name: see route_purge_memcached. */
static int purge__keys(const struct conf *c, const char *name, const char *const *ips, int nips,
		       struct purge__keys *ks)
{
	bool hashed = c->cache.hash_keys;
	char local[ROUTE_MAX_USER], buf[ROUTE_MAX_USER + RCACHE_MAX_IP + 2];
	const char *unq[2] = { NULL, NULL };
	int nunq = 0;
	struct rcache_key k;

	/* The names typed without a domain: name itself, or its local part. */
	if (!rcache_login_qualified(name)) {
		unq[nunq++] = name;
	} else {
		size_t l = strcspn(name, "@");
		if (l > 0 && l < sizeof(local)) {
			memcpy(local, name, l);
			local[l] = '\0';
			unq[nunq++] = local;
		}
	}
	for (size_t p = 0; p < ARRAY_SIZE(purge__protos); p++) {
		const char *proto = purge__protos[p];

		if (rcache_key_route_user(&k, proto, name, hashed) && purge__add(ks, &k) < 0)
			return -1;
		for (int u = 0; u < nunq; u++)
			for (int i = 0; i < nips; i++) {
				snprintf(buf, sizeof(buf), "%s@%s", unq[u], ips[i]);
				if (rcache_key_route_user(&k, proto, buf, hashed) &&
				    purge__add(ks, &k) < 0)
					return -1;
			}
		if (rcache_proto_web(proto) && !rcache_login_qualified(name) &&
		    rcache_key_route_id(&k, proto, name, hashed) && purge__add(ks, &k) < 0)
			return -1;
		if (rcache_proto_web(proto) && !rcache_login_qualified(name) &&
		    rcache_key_route_admin_id(&k, proto, name, hashed) && purge__add(ks, &k) < 0)
			return -1;
	}
	const char *logins[2] = { name, nunq > 0 && unq[0] != name ? unq[0] : NULL };
	for (int l = 0; l < 2 && logins[l] != NULL; l++) {
		for (int i = 0; i < nips; i++)
			if (rcache_key_alias(&k, logins[l], ips[i], hashed) && purge__add(ks, &k) < 0)
				return -1;
		for (int v = 0; v < c->nvhosts; v++)
			for (int h = 0; h < c->vhosts[v].nnames; h++) {
				const char *host = c->vhosts[v].names[h];
				if (host[0] == '*')
					continue; /* a wildcard names no one Host */
				if (rcache_key_alias_web(&k, logins[l], host, hashed) &&
				    purge__add(ks, &k) < 0)
					return -1;
			}
		if (c->http.server_name != NULL &&
		    rcache_key_alias_web(&k, logins[l], c->http.server_name, hashed) &&
		    purge__add(ks, &k) < 0)
			return -1;
	}
	return 0;
}

int route_purge_memcached(const struct conf *c, const char *name, const char *const *ips,
			  int nips, route_purge_cb cb, void *arg)
{
	struct purge__keys ks = { 0 };
	int errors = 0;

	if (!route_name_valid(name, strlen(name), ROUTE_MAX_USER - 1))
		return -1;
	/* Keys are case-sensitive; logins are mostly typed in lower case. */
	char lower[ROUTE_MAX_USER];
	size_t nl = strlen(name);
	for (size_t i = 0; i <= nl; i++)
		lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
	if (purge__keys(c, name, ips, nips, &ks) < 0 ||
	    (strcmp(lower, name) != 0 && purge__keys(c, lower, ips, nips, &ks) < 0)) {
		free(ks.k);
		return -1;
	}
	/* zmproxypurge asks every server, not the one the key hashes to: a
	   key may sit on another after a server was down or the list changed. */
	struct conf *one = malloc(sizeof(*one));
	if (one == NULL) {
		free(ks.k);
		return -1;
	}
	for (int s = 0; s < c->cache.nservers; s++) {
		char server[300];

		memcpy(one, c, sizeof(*one));
		one->cache.servers[0] = c->cache.servers[s];
		one->cache.nservers = 1;
		snprintf(server, sizeof(server), "%s:%u", c->cache.servers[s].host,
			 (unsigned)c->cache.servers[s].port);
		struct rcache_mc *mc = rcache_mc_new(one);
		for (int i = 0; i < ks.n; i++) {
			enum rcache_mc_rc rc = mc ? rcache_mc_delete(mc, &ks.k[i]) : RCACHE_MC_ERROR;
			enum route_purge_result r = rc == RCACHE_MC_OK	 ? ROUTE_PURGE_DELETED
						    : rc == RCACHE_MC_MISS ? ROUTE_PURGE_NOT_FOUND
									   : ROUTE_PURGE_ERROR;
			if (r == ROUTE_PURGE_ERROR)
				errors++;
			cb(arg, server, ks.k[i].raw, ks.k[i].wire, r);
		}
		rcache_mc_free(mc);
	}
	free(one);
	free(ks.k);
	return errors;
}
