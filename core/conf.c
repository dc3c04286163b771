/*
 * core/conf.c - load and validate the configuration snapshot.
 *
 * The file is read whole (bounded), parsed by libconfig, and then walked with
 * one table per group so that every setting is either understood or rejected:
 * a typo must never silently fall back to a default. Every error names the
 * file, the line and the setting path ("routes.[1].server", zero-based list
 * indices, libconfig's own path syntax). All strings are copied out before
 * config_destroy, so the snapshot owns everything it points to.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf_int.h"
#include "gh.h"

const char *const conf_proto_names[] = {
	[CONF_PROTO_IMAP] = "imap",
	[CONF_PROTO_POP3] = "pop3",
	[CONF_PROTO_HTTP] = "http",
	[CONF_PROTO_TCP] = "tcp",
	NULL,
};
GH_NAMES_CHECK(conf_proto_names, CONF_PROTO_COUNT + 1);

static const char *const conf__log_level_names[] = {
	[CONF_LOG_ERROR] = "error",
	[CONF_LOG_WARN] = "warn",
	[CONF_LOG_INFO] = "info",
	[CONF_LOG_DEBUG] = "debug",
};
GH_NAMES_CHECK(conf__log_level_names, CONF_LOG_DEBUG + 1);

static const char *const conf__backend_auth_names[] = {
	[CONF_BACKEND_AUTH_AUTO] = "auto",
	[CONF_BACKEND_AUTH_LOGIN] = "login",
	[CONF_BACKEND_AUTH_PLAIN] = "plain",
};

static const char *const conf__default_caps[] = {
	"IMAP4rev1", "ID", "LITERAL+", "SASL-IR", "IDLE", "NAMESPACE",
};


/* --- root ------------------------------------------------------------- */

static int conf__log_level(struct conf_ld *ld, const config_setting_t *s)
{
	return CONF__SET_KEYWORD(ld, s, conf__log_level_names, &ld->c->log_level);
}

/* A log destination: "" means stderr, stored as NULL. */
static int conf__log_path(struct conf_ld *ld, const config_setting_t *s, char **dst)
{
	const char *v;

	if (conf__string(ld, s, &v) < 0)
		return -1;
	for (const char *p = v; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return conf__fail(ld, s, NULL, "must not contain control characters");
	}
	if (v[0] == '\0') {
		free(*dst);
		*dst = NULL;
		return 0;
	}
	return conf__set_str(ld, dst, v);
}

static int conf__error_log(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__log_path(ld, s, &ld->c->error_log);
}

static int conf__audit_log(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__log_path(ld, s, &ld->c->audit_log);
}

/* --- limits ----------------------------------------------------------- */

#define CONF__LIM(f) offsetof(struct conf, limits.f)

static const struct conf_opt conf__limits_opts[] = {
	{ "preauth_timeout", CONF__T_SECS, CONF__LIM(preauth_timeout), 1, 3600, NULL },
	{ "idle_timeout", CONF__T_SECS, CONF__LIM(idle_timeout), 60, 86400, NULL },
	{ "connect_timeout", CONF__T_SECS, CONF__LIM(connect_timeout), 0.1, 600, NULL },
	{ "backend_timeout", CONF__T_SECS, CONF__LIM(backend_timeout), 0.1, 600, NULL },
	{ "max_line", CONF__T_SIZE, CONF__LIM(max_line), 512, 1048576, NULL },
	{ "max_literal", CONF__T_SIZE, CONF__LIM(max_literal), 1, 1048576, NULL },
	{ "max_tag", CONF__T_SIZE, CONF__LIM(max_tag), 1, 1024, NULL },
	{ "max_login", CONF__T_SIZE, CONF__LIM(max_login), 1, CONF_MAX_USER - 1, NULL },
	{ "max_password", CONF__T_SIZE, CONF__LIM(max_password), 1, 8192, NULL },
	{ "max_bad_commands", CONF__T_INT, CONF__LIM(max_bad_commands), 1, 100, NULL },
	{ "max_login_failures", CONF__T_INT, CONF__LIM(max_login_failures), 1, 100, NULL },
	{ "max_auth_wait", CONF__T_SECS, CONF__LIM(max_auth_wait), 0, 60, NULL },
	{ "auth_failure_delay", CONF__T_SECS, CONF__LIM(auth_failure_delay), 0, 60, NULL },
	{ "max_connections", CONF__T_SIZE, CONF__LIM(max_connections), 0, 10000000, NULL },
	{ "max_connections_per_ip", CONF__T_SIZE, CONF__LIM(max_connections_per_ip), 0, 10000000, NULL },
	{ "relay_buffer", CONF__T_SIZE, CONF__LIM(relay_buffer), 1024, 1048576, NULL },
	{ "relay_high_water", CONF__T_SIZE, CONF__LIM(relay_high_water), 1024, 16777216, NULL },
	{ "preauth_output", CONF__T_SIZE, CONF__LIM(preauth_output), 1024, 1048576, NULL },
	{ "splice", CONF__T_BOOL, CONF__LIM(splice), 0, 0, NULL },
	{ "proxy_header_timeout", CONF__T_SECS, CONF__LIM(proxy_header_timeout), 0.1, 60, NULL },
	{ "backend_keepalive", CONF__T_INT, CONF__LIM(backend_keepalive), 2, 7200, NULL },
};

static int conf__limits(struct conf_ld *ld, const config_setting_t *s)
{
	struct conf *c = ld->c;

	if (conf__group(ld, s, conf__limits_opts,
			ARRAY_SIZE(conf__limits_opts)) < 0)
		return -1;

	/*
	 * Bounds that depend on another setting. A default that the other
	 * setting makes impossible follows it instead of failing: lowering
	 * max_line alone should not force the user to lower max_literal too.
	 */
	const config_setting_t *lit = config_setting_get_member(s, "max_literal");
	if (lit != NULL && c->limits.max_literal > c->limits.max_line)
		return conf__fail(ld, lit, NULL, "must be between 1 and %zu (limits.max_line)",
				  c->limits.max_line);
	if (c->limits.max_literal > c->limits.max_line)
		c->limits.max_literal = c->limits.max_line;

	const config_setting_t *hw = config_setting_get_member(s, "relay_high_water");
	if (hw != NULL && c->limits.relay_high_water < c->limits.relay_buffer)
		return conf__fail(ld, hw, NULL,
				  "must be between %zu (limits.relay_buffer) and 16777216",
				  c->limits.relay_buffer);
	if (c->limits.relay_high_water < c->limits.relay_buffer)
		c->limits.relay_high_water = c->limits.relay_buffer;
	return 0;
}

/* --- imap ------------------------------------------------------------- */

static int conf__greeting(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__set_text(ld, s, CONF__MAX_GREETING, &ld->c->imap.greeting);
}

/* RFC 3501 atom: no atom-specials, no controls, ASCII. */
static bool conf__atom_ok(const char *v)
{
	size_t len = strlen(v);

	if (len == 0 || len > CONF__MAX_CAP_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)v[i];
		if (ch <= 0x20 || ch >= 0x7f || strchr("(){%*\"\\]", ch) != NULL)
			return false;
	}
	return true;
}

static size_t conf__imap_word(const char *v)
{
	return strlen(v);
}

/* gatehouse decides these from the TLS state and its own SASL. */
static bool conf__imap_reserved(const char *v, size_t w)
{
	return strncasecmp(v, "AUTH=", 5) == 0 || strcasecmp(v, "STARTTLS") == 0 ||
	       strcasecmp(v, "LOGINDISABLED") == 0;
}

static const struct conf_caps_kind conf__imap_caps = {
	.valid = conf__atom_ok,
	.invalid = "must be an IMAP atom of 1 to " CONF__MAX_CAP_LEN_TEXT " characters",
	.word = conf__imap_word,
	.reserved = conf__imap_reserved,
};

static int conf__capabilities(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__caps(ld, s, &conf__imap_caps, ld->c->imap.caps, &ld->c->imap.ncaps);
}

static int conf__backend_auth(struct conf_ld *ld, const config_setting_t *s)
{
	return CONF__SET_KEYWORD(ld, s, conf__backend_auth_names, &ld->c->imap.backend_auth);
}

static const struct conf_opt conf__imap_opts[] = {
	{ "greeting", CONF__T_FN, 0, 0, 0, conf__greeting },
	{ "capabilities", CONF__T_FN, 0, 0, 0, conf__capabilities },
	{ "send_id", CONF__T_BOOL, offsetof(struct conf, imap.send_id), 0, 0, NULL },
	{ "backend_auth", CONF__T_FN, 0, 0, 0, conf__backend_auth },
	{ "backend_port", CONF__T_U16, offsetof(struct conf, imap.backend_port), 1, 65535, NULL },
};

static int conf__imap(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__group(ld, s, conf__imap_opts, ARRAY_SIZE(conf__imap_opts));
}

/* --- lookup ----------------------------------------------------------- */


static int conf__lookup_server(struct conf_ld *ld, const config_setting_t *e,
			       struct conf_lookup_server *srv)
{
	char host[CONF__MAX_HOSTNAME + 3], name[CONF__MAX_HOSTNAME + 3], port[8];
	const char *url, *path, *why = NULL;
	uint16_t portnum;
	bool numeric;

	if (conf__string(ld, e, &url) < 0)
		return -1;
	if (conf__split_url(url, host, name, sizeof(host), &portnum, &path, &numeric, &srv->tls,
			    &why) < 0)
		return conf__fail(ld, e, NULL, "%s", why);

	/* Resolved once, now: the loop must never wait for DNS. */
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (numeric ? AI_NUMERICHOST : 0);
	snprintf(port, sizeof(port), "%u", (unsigned)portnum);
	int rc = getaddrinfo(name, port, &hints, &res);
	if (rc != 0 || res == NULL || res->ai_addrlen > sizeof(srv->addr)) {
		if (res != NULL)
			freeaddrinfo(res);
		return conf__fail(ld, e, NULL, "cannot resolve %s: %s", name,
				  rc != 0 ? gai_strerror(rc) : "no address");
	}
	memcpy(&srv->addr, res->ai_addr, res->ai_addrlen);
	srv->addrlen = res->ai_addrlen;
	freeaddrinfo(res);

	if ((srv->url = strdup(url)) == NULL || (srv->host = strdup(host)) == NULL
	    || (srv->path = strdup(path)) == NULL)
		return conf__oom(ld);
	return 0;
}

static int conf__lookup_servers(struct conf_ld *ld, const config_setting_t *s)
{
	struct conf *c = ld->c;

	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be an array of strings [ ... ]");
	int count = config_setting_length(s);
	if (count > CONF_MAX_LOOKUP_SERVERS)
		return conf__fail(ld, s, NULL, "must have at most %d entries",
				  CONF_MAX_LOOKUP_SERVERS);
	for (int i = 0; i < count; i++) {
		/* Counted before filling so a failure half-way is freed. */
		struct conf_lookup_server *srv = &c->lookup.servers[c->lookup.nservers++];
		if (conf__lookup_server(ld, config_setting_get_elem(s, (unsigned)i), srv) < 0)
			return -1;
	}
	return 0;
}

static const struct conf_opt conf__lookup_opts[] = {
	{ "servers", CONF__T_FN, 0, 0, 0, conf__lookup_servers },
	{ "timeout", CONF__T_SECS, offsetof(struct conf, lookup.timeout), 0.1, 600, NULL },
	{ "retry_interval", CONF__T_SECS, offsetof(struct conf, lookup.retry_interval), 0, 3600, NULL },
	{ "send_password", CONF__T_BOOL, offsetof(struct conf, lookup.send_password), 0, 0, NULL },
	{ "verify", CONF__T_BOOL, offsetof(struct conf, lookup.verify), 0, 0, NULL },
};

static int conf__lookup(struct conf_ld *ld, const config_setting_t *s)
{
	return conf__group(ld, s, conf__lookup_opts, ARRAY_SIZE(conf__lookup_opts));
}

/* --- routes ----------------------------------------------------------- */

static int conf__remember_routes(struct conf_ld *ld, const config_setting_t *s)
{
	ld->routes = s;
	return 0;
}

static int conf__remember_listen(struct conf_ld *ld, const config_setting_t *s)
{
	ld->listen = s;
	return 0;
}

static int conf__remember_locations(struct conf_ld *ld, const config_setting_t *s)
{
	ld->locations = s;
	return 0;
}


static int conf__route(struct conf_ld *ld, const config_setting_t *g, struct conf_route *r)
{
	const config_setting_t *ms = NULL, *ss = NULL, *us = NULL;

	if (!config_setting_is_group(g))
		return conf__fail(ld, g, NULL, "must be a group { match = ...; server = ...; }");
	int count = config_setting_length(g);
	for (int i = 0; i < count; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);

		if (name != NULL && strcmp(name, "match") == 0)
			ms = s;
		else if (name != NULL && strcmp(name, "server") == 0)
			ss = s;
		else if (name != NULL && strcmp(name, "user") == 0)
			us = s;
		else
			return conf__fail(ld, s, NULL, "unknown setting");
	}
	if (ms == NULL)
		return conf__fail(ld, g, "match", "required setting is missing");
	if (ss == NULL)
		return conf__fail(ld, g, "server", "required setting is missing");

	const char *match, *server, *user = NULL;
	if (conf__string(ld, ms, &match) < 0 || conf__string(ld, ss, &server) < 0
	    || (us != NULL && conf__string(ld, us, &user) < 0))
		return -1;

	size_t mlen = strlen(match);
	bool ok;
	if (strcmp(match, "*") == 0)
		ok = true;
	else if (match[0] == '@')
		ok = conf_name_valid(match + 1, mlen - 1, CONF_MAX_HOST - 1)
		     && strchr(match + 1, '@') == NULL;
	else
		ok = conf_name_valid(match, mlen, CONF_MAX_USER - 1);
	if (!ok)
		return conf__fail(ld, ms, NULL, "must be \"*\", \"@domain\" or a login name"
				  " (no spaces or control characters)");

	char host[CONF_MAX_HOST];
	const char *why = NULL;
	uint16_t port = 0; /* none given: the protocol's default, chosen per lookup */
	if (conf__split_server(server, host, sizeof(host), &port, &why) < 0)
		return conf__fail(ld, ss, NULL, "%s", why);

	if (user != NULL && !conf_name_valid(user, strlen(user), CONF_MAX_USER - 1))
		return conf__fail(ld, us, NULL, "must be a login name of at most %d bytes"
				  " without spaces or control characters", CONF_MAX_USER - 1);

	r->port = port;
	if ((r->match = strdup(match)) == NULL || (r->host = strdup(host)) == NULL
	    || (user != NULL && (r->user = strdup(user)) == NULL))
		return conf__oom(ld);
	return 0;
}

static int conf__routes(struct conf_ld *ld, const config_setting_t *s)
{
	struct conf *c = ld->c;

	if (!config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be a list of groups ( { ... }, ... )");
	int count = config_setting_length(s);
	if (count == 0)
		return 0;
	if (count > CONF__MAX_ROUTES)
		return conf__fail(ld, s, NULL, "must have at most %d entries", CONF__MAX_ROUTES);
	if ((c->routes = calloc((size_t)count, sizeof(*c->routes))) == NULL)
		return conf__oom(ld);

	for (int i = 0; i < count; i++) {
		const config_setting_t *g = config_setting_get_elem(s, (unsigned)i);
		struct conf_route *r = &c->routes[c->nroutes++];

		if (conf__route(ld, g, r) < 0)
			return -1;
		for (int k = 0; k < i; k++) {
			if (strcasecmp(c->routes[k].match, r->match) != 0)
				continue;
			const config_setting_t *prev = config_setting_get_member(
				config_setting_get_elem(s, (unsigned)k), "match");
			return conf__fail(ld, config_setting_get_member(g, "match"), NULL,
					  "duplicate match \"%s\" (first at line %d)", r->match,
					  (int)config_setting_source_line(prev));
		}
	}
	return 0;
}

/* --- listen ----------------------------------------------------------- */


static const char *const conf__send_proxy_names[] = { "off", "v1", "v2" };

/* A tcp listener's upstream group (us) and the PROXY header it is sent
   (sp); neither is allowed on other listeners. */
static int conf__listen_tcp(struct conf_ld *ld, const config_setting_t *g,
			    const config_setting_t *us, const config_setting_t *sp,
			    struct conf_listen *l)
{
	const char *v;

	l->upstream = -1;
	if (l->proto != CONF_PROTO_TCP) {
		if (us != NULL || sp != NULL)
			return conf__fail(ld, us != NULL ? us : sp, NULL, "only for tcp listeners");
		return 0;
	}
	if (us == NULL)
		return conf__fail(ld, g, "upstream", "required for a tcp listener");
	if (l->starttls != CONF_STARTTLS_OFF)
		return conf__fail(ld, g, "starttls", "not for tcp listeners (use tls = true)");
	if (conf__string(ld, us, &v) < 0)
		return -1;
	const struct conf_upstream *u = conf_upstream_find(ld->c, v);
	if (u == NULL)
		return conf__fail(ld, us, NULL, "no upstream group called \"%s\"", v);
	if (u->balance == CONF_BALANCE_ROUTE)
		return conf__fail(ld, us, NULL, "upstream \"%s\" balances by route (per user): a tcp "
				  "listener needs ip_hash or round_robin", v);
	l->upstream = (int)(u - ld->c->upstreams);
	if (sp != NULL && (l->send_proxy = CONF__KEYWORD(ld, sp, conf__send_proxy_names)) < 0)
		return -1;
	return 0;
}

static int conf__listen_one(struct conf_ld *ld, const config_setting_t *g, struct conf_listen *l)
{
	const config_setting_t *as = NULL, *ps = NULL, *ts = NULL, *ss = NULL, *ms = NULL;
	const config_setting_t *ls = NULL, *us = NULL, *sp = NULL, *h2s = NULL;
	const char *addr;

	if (!config_setting_is_group(g))
		return conf__fail(ld, g, NULL, "must be a group { address = ...; protocol = ...; }");
	int count = config_setting_length(g);
	for (int i = 0; i < count; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);

		if (name != NULL && strcmp(name, "address") == 0)
			as = s;
		else if (name != NULL && strcmp(name, "protocol") == 0)
			ps = s;
		else if (name != NULL && strcmp(name, "tls") == 0)
			ts = s;
		else if (name != NULL && strcmp(name, "starttls") == 0)
			ss = s;
		else if (name != NULL && strcmp(name, "mode") == 0)
			ms = s;
		else if (name != NULL && strcmp(name, "locations") == 0)
			ls = s;
		else if (name != NULL && strcmp(name, "http2") == 0)
			h2s = s;
		else if (name != NULL && strcmp(name, "upstream") == 0)
			us = s;
		else if (name != NULL && strcmp(name, "send_proxy_protocol") == 0)
			sp = s;
		else if (name != NULL && strcmp(name, "proxy_protocol") == 0) {
			if (conf__listen_proxy(ld, s, l) < 0)
				return -1;
		}
		else
			return conf__fail(ld, s, NULL, "unknown setting");
	}
	if (as == NULL)
		return conf__fail(ld, g, "address", "required setting is missing");
	if (conf__string(ld, as, &addr) < 0)
		return -1;
	if (conf_parse_addr(addr, &l->addr, &l->addrlen) < 0)
		return conf__fail(ld, as, NULL, "must be IP:PORT, [IPv6]:PORT or *:PORT");
	l->proto = CONF_PROTO_IMAP;
	if (ps != NULL) {
		int p = conf__keyword(ld, ps, conf_proto_names, CONF_PROTO_COUNT);
		if (p < 0)
			return -1;
		l->proto = (enum conf_proto)p;
	}
	if (conf__listen_tls(ld, g, ts, ss, l) < 0)
		return -1;
	if (conf__listen_http(ld, ms, ss, h2s, l) < 0)
		return -1;
	if (conf__listen_tcp(ld, g, us, sp, l) < 0)
		return -1;
	if (ls != NULL && l->proto != CONF_PROTO_HTTP)
		return conf__fail(ld, ls, NULL, "only for http listeners");
	if (ls != NULL && conf__locations(ld, ls, &l->locations) < 0)
		return -1;
	l->line = (int)config_setting_source_line(as);
	if ((l->address = strdup(addr)) == NULL)
		return conf__oom(ld);
	return 0;
}

static int conf__listen(struct conf_ld *ld, const config_setting_t *s)
{
	struct conf *c = ld->c;

	if (!config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be a list of groups ( { ... }, ... )");
	int count = config_setting_length(s);
	if (count == 0)
		return conf__fail(ld, s, NULL, "must have at least one entry");
	if (count > CONF_MAX_LISTEN)
		return conf__fail(ld, s, NULL, "must have at most %d entries", CONF_MAX_LISTEN);

	for (int i = 0; i < count; i++) {
		const config_setting_t *g = config_setting_get_elem(s, (unsigned)i);
		struct conf_listen *l = &c->listen[c->nlisten++];

		if (conf__listen_one(ld, g, l) < 0)
			return -1;
		for (int k = 0; k < i; k++) {
			if (conf__same_addr(&c->listen[k].addr, &l->addr))
				return conf__fail(ld, config_setting_get_member(g, "address"), NULL,
						  "duplicate address (first at line %d)",
						  c->listen[k].line);
		}
	}
	return 0;
}

/* --- load ------------------------------------------------------------- */

static const struct conf_opt conf__root_opts[] = {
	{ "workers", CONF__T_INT, offsetof(struct conf, workers), 0, 64, NULL },
	{ "log_level", CONF__T_FN, 0, 0, 0, conf__log_level },
	{ "error_log", CONF__T_FN, 0, 0, 0, conf__error_log },
	{ "audit_log", CONF__T_FN, 0, 0, 0, conf__audit_log },
	{ "shutdown_timeout", CONF__T_SECS, offsetof(struct conf, shutdown_timeout), 0, 3600, NULL },
	{ "limits", CONF__T_FN, 0, 0, 0, conf__limits },
	{ "imap", CONF__T_FN, 0, 0, 0, conf__imap },
	{ "pop3", CONF__T_FN, 0, 0, 0, conf__pop3 },
	{ "lookup", CONF__T_FN, 0, 0, 0, conf__lookup },
	{ "routes", CONF__T_FN, 0, 0, 0, conf__remember_routes },
	{ "listen", CONF__T_FN, 0, 0, 0, conf__remember_listen },
	{ "trusted_proxies", CONF__T_FN, 0, 0, 0, conf__trusted_proxies },
	{ "tls", CONF__T_FN, 0, 0, 0, conf__tls },
	{ "upstream", CONF__T_FN, 0, 0, 0, conf__upstream },
	{ "vhosts", CONF__T_FN, 0, 0, 0, conf__vhosts },
	{ "cache", CONF__T_FN, 0, 0, 0, conf__cache },
	{ "status", CONF__T_FN, 0, 0, 0, conf__status },
	{ "throttle", CONF__T_FN, 0, 0, 0, conf__throttle },
	{ "http", CONF__T_FN, 0, 0, 0, conf__http },
	{ "upstreams", CONF__T_FN, 0, 0, 0, conf__upstreams },
	{ "locations", CONF__T_FN, 0, 0, 0, conf__remember_locations },
};

static void conf__free(struct conf *c)
{
	if (c == NULL)
		return;
	free(c->path);
	free(c->error_log);
	free(c->audit_log);
	free(c->imap.greeting);
	for (int i = 0; i < c->imap.ncaps; i++)
		free(c->imap.caps[i]);
	for (int i = 0; i < c->lookup.nservers; i++) {
		free(c->lookup.servers[i].url);
		free(c->lookup.servers[i].host);
		free(c->lookup.servers[i].path);
	}
	for (int i = 0; i < c->nroutes; i++) {
		free(c->routes[i].match);
		free(c->routes[i].host);
		free(c->routes[i].user);
	}
	free(c->routes);
	conf__locations_free(c);
	conf__upstreams_free(c);
	for (int i = 0; i < c->nlisten; i++)
		free(c->listen[i].address);
	conf__tls_free(c);
	conf__pop3_free(c);
	conf__cache_free(c);
	conf__proxy_free(c);
	conf__status_free(c);
	conf__throttle_free(c);
	conf__http_free(c);
	free(c);
}

static int conf__defaults(struct conf_ld *ld)
{
	struct conf *c = ld->c;

	atomic_init(&c->refs, 1);
	c->workers = 0;
	c->log_level = CONF_LOG_INFO;
	c->shutdown_timeout = 10.0;

	c->limits.preauth_timeout = 60.0;
	c->limits.idle_timeout = 2100.0;
	c->limits.connect_timeout = 10.0;
	c->limits.backend_timeout = 30.0;
	c->limits.max_line = 8192;
	c->limits.max_literal = 4096;
	c->limits.max_tag = 64;
	c->limits.max_login = 256;
	c->limits.max_password = 1024;
	c->limits.max_bad_commands = 5;
	c->limits.max_login_failures = 3;
	c->limits.max_auth_wait = 10.0;
	c->limits.auth_failure_delay = 10.0;
	c->limits.relay_buffer = 16384;
	c->limits.relay_high_water = 65536;
	c->limits.preauth_output = 16384;
	c->limits.splice = true;
	c->limits.proxy_header_timeout = 3.0;
	c->limits.backend_keepalive = 60;

	c->imap.send_id = true;
	c->imap.backend_auth = CONF_BACKEND_AUTH_AUTO;
	c->imap.backend_port = 7143;
	if ((c->imap.greeting = strdup("Gatehouse IMAP proxy ready")) == NULL ||
	    conf__caps_set(conf__default_caps, (int)ARRAY_SIZE(conf__default_caps), c->imap.caps,
			   &c->imap.ncaps) < 0)
		return conf__oom(ld);

	conf__tls_defaults(c);
	conf__cache_defaults(c);
	conf__http_defaults(c);
	if (conf__pop3_defaults(ld) < 0 || conf__throttle_defaults(ld) < 0)
		return -1;

	c->lookup.timeout = 10.0;
	c->lookup.retry_interval = 60.0;
	c->lookup.send_password = false;
	return 0;
}

/*
 * Read the whole file (bounded) so that a read error has its errno, the
 * size has a cap, and we can refuse what libconfig would do behind our back.
 */
static char *conf__slurp(struct conf_ld *ld)
{
	FILE *f = fopen(ld->file, "rb");
	char *buf = NULL;
	size_t n;

	if (f == NULL) {
		snprintf(ld->err, ld->errlen, "%s: cannot read: %s", ld->file, strerror(errno));
		return NULL;
	}
	if ((buf = malloc(CONF__MAX_FILE + 1)) == NULL) {
		conf__oom(ld);
		goto out;
	}
	n = fread(buf, 1, CONF__MAX_FILE + 1, f);
	if (ferror(f)) {
		snprintf(ld->err, ld->errlen, "%s: cannot read: %s", ld->file, strerror(errno));
		goto fail;
	}
	if (n > CONF__MAX_FILE) {
		snprintf(ld->err, ld->errlen, "%s: larger than %d bytes", ld->file, CONF__MAX_FILE);
		goto fail;
	}
	if (memchr(buf, '\0', n) != NULL) {
		snprintf(ld->err, ld->errlen, "%s: contains a NUL byte", ld->file);
		goto fail;
	}
	buf[n] = '\0';

	/*
	 * libconfig honours "@include" at the start of a line. A snapshot is one
	 * file validated whole, and an include could make a reload read a FIFO
	 * or a device, so it is refused.
	 */
	int line = 1;
	for (const char *p = buf; *p != '\0'; line++) {
		p += strspn(p, " \t");
		if (strncmp(p, "@include", 8) == 0) {
			snprintf(ld->err, ld->errlen, "%s:%d: @include is not supported", ld->file, line);
			goto fail;
		}
		p += strcspn(p, "\n");
		if (*p == '\n')
			p++;
	}
	goto out;

fail:
	free(buf);
	buf = NULL;
out:
	fclose(f);
	return buf;
}

static int conf__parse(struct conf_ld *ld, const char *text)
{
	struct conf *c = ld->c;
	config_t cfg;
	int rc = -1;

	config_init(&cfg);
	if (config_read_string(&cfg, text) != CONFIG_TRUE) {
		const char *what = config_error_text(&cfg);
		snprintf(ld->err, ld->errlen, "%s:%d: %s", ld->file, config_error_line(&cfg),
			 what != NULL ? what : "syntax error");
		goto out;
	}

	if (conf__group(ld, config_root_setting(&cfg), conf__root_opts,
			ARRAY_SIZE(conf__root_opts)) < 0)
		goto out;
	if (ld->routes != NULL && conf__routes(ld, ld->routes) < 0)
		goto out;
	if (ld->locations != NULL && conf__locations(ld, ld->locations, &c->locations) < 0)
		goto out;
	if (ld->listen != NULL && conf__listen(ld, ld->listen) < 0)
		goto out;
	if (ld->listen == NULL) {
		struct conf_listen *l = &c->listen[c->nlisten++];
		if ((l->address = strdup("0.0.0.0:143")) == NULL) {
			conf__oom(ld);
			goto out;
		}
		conf_parse_addr(l->address, &l->addr, &l->addrlen);
		l->proto = CONF_PROTO_IMAP;
	}

	if (c->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		c->workers = n < 1 ? 1 : n > 64 ? 64 : (int)n;
	}
	/* After workers: the TLS contexts are built once per worker. */
	if (conf__tls_finish(ld) < 0)
		goto out;
	if (conf__http_finish(ld) < 0)
		goto out;
	rc = 0;
out:
	config_destroy(&cfg);
	return rc;
}

struct conf *conf_load(const char *path, char *err, size_t errlen)
{
	char dummy[1];
	struct conf_ld ld = { .file = path, .err = err, .errlen = errlen };
	char *text;

	if (err == NULL || errlen == 0) {
		ld.err = dummy;
		ld.errlen = sizeof(dummy);
	}
	ld.err[0] = '\0';
	if (path == NULL) {
		snprintf(ld.err, ld.errlen, "(null): no configuration file");
		return NULL;
	}

	if ((ld.c = calloc(1, sizeof(*ld.c))) == NULL) {
		conf__oom(&ld);
		return NULL;
	}
	if (conf__defaults(&ld) < 0 || (ld.c->path = strdup(path)) == NULL)
		goto fail;
	if ((text = conf__slurp(&ld)) == NULL)
		goto fail;
	int rc = conf__parse(&ld, text);
	free(text);
	if (rc < 0)
		goto fail;
	return ld.c;

fail:
	if (ld.err[0] == '\0')
		conf__oom(&ld);
	conf__free(ld.c);
	return NULL;
}

uint16_t conf_backend_port(const struct conf *c, const char *protocol)
{
	if (protocol != NULL && strncmp(protocol, "pop3", 4) == 0)
		return c->pop3.backend_port;
	if (protocol != NULL && strncmp(protocol, "http", 4) == 0)
		return c->http.backend_port;
	return c->imap.backend_port;
}

struct conf *conf_ref(struct conf *c)
{
	if (c != NULL)
		atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
	return c;
}

void conf_unref(struct conf *c)
{
	if (c == NULL)
		return;
	/* acq_rel: the freeing thread must see every other holder's last reads done. */
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		conf__free(c);
}
