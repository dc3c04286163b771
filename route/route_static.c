/*
 * route/route_static.c - the synchronous half of routing: login name
 * validation, the static route table from the config, and turning a parsed
 * lookup answer into a route. No I/O; route/route.c drives the asynchronous
 * part.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "lookup.h"
#include "route.h"

const char *const route_source_names[] = {
	[ROUTE_SRC_NONE] = "-",
	[ROUTE_SRC_STATIC] = "static",
	[ROUTE_SRC_LOOKUP] = "lookup",
	[ROUTE_SRC_L1] = "l1",
	[ROUTE_SRC_MEMCACHED] = "memcached",
};

const struct conf_route *route_static_match(const struct conf *c, const char *login)
{
	if (c == NULL || login == NULL || c->nroutes <= 0)
		return NULL;

	for (int i = 0; i < c->nroutes; i++) {
		const char *m = c->routes[i].match;

		if (m[0] != '@' && strcmp(m, "*") != 0 && strcasecmp(m, login) == 0)
			return &c->routes[i];
	}

	/* The domain is what follows the last '@': "a@b@example.com" is in example.com. */
	const char *at = strrchr(login, '@');
	if (at != NULL && at[1] != '\0') {
		for (int i = 0; i < c->nroutes; i++) {
			const char *m = c->routes[i].match;

			if (m[0] == '@' && strcasecmp(m + 1, at + 1) == 0)
				return &c->routes[i];
		}
	}

	for (int i = 0; i < c->nroutes; i++) {
		if (strcmp(c->routes[i].match, "*") == 0)
			return &c->routes[i];
	}
	return NULL;
}

/*
 * Copy an Auth-Status text into a log-safe reason: control characters
 * become '?', and a cut never leaves half a UTF-8 sequence at the end.
 */
static void route__reason_text(char *out, size_t cap, const char *prefix, const char *text)
{
	size_t n = strlen(prefix);

	if (n >= cap)
		n = cap - 1;
	memcpy(out, prefix, n);

	size_t start = n;
	bool cut = false;
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
		if (n + 1 >= cap) {
			cut = true;
			break;
		}
		out[n++] = (*p < 0x20 || *p == 0x7f) ? '?' : (char)*p;
	}

	if (cut) {
		/* Back up over continuation bytes to the lead byte, and drop the
		 * lead byte too when its sequence no longer fits. */
		size_t i = n;
		while (i > start && ((unsigned char)out[i - 1] & 0xc0) == 0x80)
			i--;
		if (i > start && ((unsigned char)out[i - 1] & 0x80) != 0) {
			unsigned char lead = (unsigned char)out[i - 1];
			size_t need = (lead & 0xe0) == 0xc0 ? 2 : (lead & 0xf0) == 0xe0 ? 3
				    : (lead & 0xf8) == 0xf0 ? 4 : 1;
			if (n - (i - 1) < need)
				n = i - 1;
		}
	}
	out[n] = '\0';
}

/* A backend host we are willing to connect to: no spaces, no controls. */
static bool route__host_ok(const char *host)
{
	size_t len = strlen(host);

	if (len == 0 || len >= ROUTE_MAX_HOST)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)host[i];
		if (ch <= 0x20 || ch == 0x7f)
			return false;
	}
	return true;
}

void route_from_lookup(const struct lookup_response *r, const char *login, struct route *out)
{
	memset(out, 0, sizeof(*out));
	out->source = ROUTE_SRC_LOOKUP;
	out->result = ROUTE_TEMPFAIL;

	if (r->http_status != 200) {
		snprintf(out->reason, sizeof(out->reason), "lookup: HTTP status %d", r->http_status);
		return;
	}
	if (!r->has_status) {
		snprintf(out->reason, sizeof(out->reason), "lookup: no Auth-Status");
		return;
	}
	if (strcmp(r->status, "OK") != 0) {
		out->result = ROUTE_DENIED;
		out->wait_s = r->wait > 0 ? (unsigned)r->wait : 0;
		route__reason_text(out->reason, sizeof(out->reason), "lookup: ", r->status);
		return;
	}

	if (!r->has_server || r->server[0] == '\0' || r->port < 1 || r->port > 65535) {
		snprintf(out->reason, sizeof(out->reason), "lookup: OK without server/port");
		return;
	}
	if (!route__host_ok(r->server)) {
		snprintf(out->reason, sizeof(out->reason), "lookup: invalid Auth-Server");
		return;
	}

	/* Auth-User names the account upstream; without it the login stands. */
	const char *user = r->has_user ? r->user : login;
	if (user == NULL || !route_name_valid(user, strlen(user), ROUTE_MAX_USER - 1)) {
		snprintf(out->reason, sizeof(out->reason), "lookup: invalid %s",
			 r->has_user ? "Auth-User" : "login");
		return;
	}

	memcpy(out->host, r->server, strlen(r->server) + 1);
	out->port = (uint16_t)r->port;
	memcpy(out->user, user, strlen(user) + 1);
	out->cache_alias = r->cache_alias;
	out->result = ROUTE_OK;
	snprintf(out->reason, sizeof(out->reason), "lookup: OK");
}
