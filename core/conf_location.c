/*
 * core/conf_location.c - `locations` lists (top level, or per http
 * listener, which then replaces the top-level list): what a request path
 * matches (nginx's `=`, prefix, `^~`, `~`, `~*`) and what is done with it
 * (an upstream group, static files, a fixed answer, a redirect, a logout),
 * with per-location options. Regexes are compiled (JIT when available)
 * here, once per snapshot, and freed with it: workers only match.
 *
 *   locations = (
 *     { match = "= /robots.txt"; return = 200; body = "User-agent: *\nDisallow: /\n"; },
 *     { match = "^~ /Microsoft-Server-ActiveSync"; upstream = "mailstores";
 *       read_timeout = 3600; },
 *     { match = "~* ^/ews/exchange\\.asmx"; upstream = "ews"; read_timeout = 3600; }
 *   );
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf_int.h"
#include "gh.h"

#define CONF__MAX_LOCATIONS 1024
#define CONF__LOC_MAX_PATTERN 1024
#define CONF__LOC_MAX_COOKIES 32
#define CONF__LOC_MAX_HEADERS 32
#define CONF__LOC_MAX_URL 2048

/* The members of one location, and which action each belongs to. */
struct conf_loc_src {
	const config_setting_t *g, *match, *upstream, *root, *ret, *redirect, *logout;
	const config_setting_t *status, *body, *content_type, *index, *fallback, *cache_control;
	const config_setting_t *require_cookie, *login_redirect, *read_timeout, *rewrite_prefix;
	const config_setting_t *websocket, *host, *add_headers;
};

/* RFC 9110 tchar: header and cookie names. */
bool conf__tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
	       || (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool conf__token_ok(const char *v, size_t max)
{
	size_t n = strlen(v);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!conf__tchar((unsigned char)v[i]))
			return false;
	return true;
}

/* Printable ASCII without spaces: a path or a URL as sent on the wire. */
static bool conf__wire_ok(const char *v, size_t max)
{
	size_t n = strlen(v);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f)
			return false;
	return true;
}

/* A redirect target: a local path or an http(s) URL. */
static int conf__loc_url(struct conf_ld *ld, const config_setting_t *s, char **dst)
{
	const char *v;

	if (conf__string(ld, s, &v) < 0)
		return -1;
	if (!conf__wire_ok(v, CONF__LOC_MAX_URL)
	    || (v[0] != '/' && strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0))
		return conf__fail(ld, s, NULL, "must be a path (\"/...\") or an http:// or https:// URL"
				  " without spaces or control characters");
	return conf__set_str(ld, dst, v);
}

/* "= /p", "^~ /p", "~ re", "~* re" or "/p". */
static int conf__loc_match(struct conf_ld *ld, const config_setting_t *s, struct conf_location *l)
{
	static const struct {
		const char *mod;
		enum conf_loc_match kind;
	} mods[] = {
		/* Longest first: "~*" before "~". */
		{ "^~", CONF_LOC_PREFIX_STOP }, { "~*", CONF_LOC_REGEX_ICASE },
		{ "~", CONF_LOC_REGEX }, { "=", CONF_LOC_EXACT },
	};
	const char *v, *p;

	if (conf__string(ld, s, &v) < 0)
		return -1;
	l->match = CONF_LOC_PREFIX;
	p = v;
	for (size_t i = 0; i < ARRAY_SIZE(mods); i++) {
		size_t ml = strlen(mods[i].mod);
		/* nginx takes "~/logout" as well as "~ /logout". */
		if (strncmp(v, mods[i].mod, ml) == 0) {
			l->match = mods[i].kind;
			p = v + ml + strspn(v + ml, " \t");
			break;
		}
	}
	bool regex = l->match == CONF_LOC_REGEX || l->match == CONF_LOC_REGEX_ICASE;
	if (!regex && (p[0] != '/' || !conf__wire_ok(p, CONF__LOC_MAX_PATTERN)))
		return conf__fail(ld, s, NULL, "must be \"/path\", \"= /path\", \"^~ /path\", \"~ regex\""
				  " or \"~* regex\" (a path starts with '/', has no spaces or"
				  " control characters, at most %d bytes)", CONF__LOC_MAX_PATTERN);
	if (regex && (p[0] == '\0' || strlen(p) > CONF__LOC_MAX_PATTERN))
		return conf__fail(ld, s, NULL, "regex must be 1 to %d bytes", CONF__LOC_MAX_PATTERN);
	if (conf__set_str(ld, &l->pattern, p) < 0)
		return -1;
	l->pattern_len = strlen(p);
	if (!regex)
		return 0;

	int code;
	PCRE2_SIZE off;
	/* Paths are bytes, not UTF-8: a pattern may not switch UTF mode on
	   (pcre2_match would then fail on invalid UTF-8 from clients). */
	uint32_t opts = PCRE2_NEVER_UTF | (l->match == CONF_LOC_REGEX_ICASE ? PCRE2_CASELESS : 0);
	l->re = pcre2_compile((PCRE2_SPTR)p, l->pattern_len, opts, &code, &off, NULL);
	if (l->re == NULL) {
		PCRE2_UCHAR msg[160];
		pcre2_get_error_message(code, msg, sizeof(msg));
		return conf__fail(ld, s, NULL, "bad regex at offset %zu: %s", (size_t)off,
				  (const char *)msg);
	}
	/* Without JIT (not built for this CPU) the interpreter matches alike. */
	(void)pcre2_jit_compile(l->re, PCRE2_JIT_COMPLETE);
	return 0;
}

static int conf__loc_cookies(struct conf_ld *ld, const config_setting_t *s, struct conf_location *l)
{
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be an array of cookie names");
	int count = config_setting_length(s);
	if (count < 1 || count > CONF__LOC_MAX_COOKIES)
		return conf__fail(ld, s, NULL, "must have 1 to %d entries", CONF__LOC_MAX_COOKIES);
	if ((l->cookies = calloc((size_t)count, sizeof(*l->cookies))) == NULL)
		return conf__oom(ld);
	for (int i = 0; i < count; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v;
		if (conf__string(ld, e, &v) < 0)
			return -1;
		if (!conf__token_ok(v, 64))
			return conf__fail(ld, e, NULL, "must be a cookie name (an HTTP token of at most"
					  " 64 bytes)");
		if ((l->cookies[i] = strdup(v)) == NULL)
			return conf__oom(ld);
		l->ncookies++;
	}
	return 0;
}

/* "Name: value": a token, then printable ASCII (tabs allowed); at most
   CONF__LOC_MAX_HEADERS lines and 4096 bytes in all (they go into an
   answer's fixed header room, HTTP_LOCATION_HEADERS_MAX). Also the
   http group's add_headers (conf_http.c). */
int conf__headers(struct conf_ld *ld, const config_setting_t *s, struct conf_header **out,
		  int *n_out)
{
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be an array of \"Name: value\" strings");
	int count = config_setting_length(s);
	if (count > CONF__LOC_MAX_HEADERS)
		return conf__fail(ld, s, NULL, "must have at most %d entries", CONF__LOC_MAX_HEADERS);
	if (count > 0 && (*out = calloc((size_t)count, sizeof(**out))) == NULL)
		return conf__oom(ld);
	size_t total = 0;
	for (int i = 0; i < count; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v, *colon;
		if (conf__string(ld, e, &v) < 0)
			return -1;
		colon = strchr(v, ':');
		size_t nl = colon ? (size_t)(colon - v) : 0;
		const char *val = colon ? colon + 1 + strspn(colon + 1, " \t") : NULL;
		bool ok = nl > 0 && nl <= 256 && val[0] != '\0';
		for (size_t k = 0; ok && k < nl; k++)
			ok = conf__tchar((unsigned char)v[k]);
		for (const char *q = val; ok && *q; q++)
			ok = *q == '\t' || ((unsigned char)*q >= 0x20 && (unsigned char)*q < 0x7f);
		if (!ok)
			return conf__fail(ld, e, NULL, "must be \"Name: value\" (a header name, then"
					  " printable ASCII)");
		/* Framing and hop-by-hop headers are gatehouse's to write: a
		   second Content-Length would split the response in two. */
		static const char *const own[] = { "Content-Length", "Transfer-Encoding", "Connection",
						   "Keep-Alive", "Upgrade", "TE", "Trailer",
						   "Content-Encoding" };
		for (size_t k = 0; k < ARRAY_SIZE(own); k++)
			if (strlen(own[k]) == nl && strncasecmp(v, own[k], nl) == 0)
				return conf__fail(ld, e, NULL, "%s is written by gatehouse itself", own[k]);
		/* Each added header replaces the backend's (Set-Cookie, which
		   is added beside them, excepted): one line per name. */
		bool cookie = nl == 10 && strncasecmp(v, "Set-Cookie", nl) == 0;
		for (int k = 0; !cookie && k < *n_out; k++)
			if (strlen((*out)[k].name) == nl && strncasecmp((*out)[k].name, v, nl) == 0)
				return conf__fail(ld, e, NULL, "names a header twice (one value each)");
		struct conf_header *h = &(*out)[(*n_out)++];
		if ((h->name = strndup(v, nl)) == NULL || (h->value = strdup(val)) == NULL)
			return conf__oom(ld);
		total += strlen(h->name) + strlen(h->value) + 4;
	}
	if (total > 4096)
		return conf__fail(ld, s, NULL, "must add at most 4096 bytes of headers");
	return 0;
}

/* "$host", "$host:PORT" or "NAME[:PORT]": the Host the backend gets. */
static int conf__loc_host(struct conf_ld *ld, const config_setting_t *s, struct conf_location *l)
{
	const char *v, *why = NULL;
	char host[CONF__MAX_HOSTNAME + 1];
	uint16_t port = 0;

	if (conf__string(ld, s, &v) < 0)
		return -1;
	const char *rest = strncmp(v, "$host", 5) == 0 ? v + 5 : NULL;
	bool ok = rest != NULL ? (rest[0] == '\0' || (rest[0] == ':' && conf__port(rest + 1,
							strlen(rest + 1), &port)))
			       : conf__split_server(v, host, sizeof(host), &port, &why) == 0;
	if (!ok)
		return conf__fail(ld, s, NULL, "must be \"$host\", \"$host:PORT\" or \"NAME[:PORT]\"");
	return conf__set_str(ld, &l->host, v);
}

static bool conf__loc_bool(struct conf_ld *ld, const config_setting_t *s, bool *out)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		conf__fail(ld, s, NULL, "must be true or false");
		return false;
	}
	*out = config_setting_get_bool(s) != 0;
	return true;
}

/* Sort the members of g into src; unknown names are errors. */
static int conf__loc_members(struct conf_ld *ld, const config_setting_t *g, struct conf_loc_src *src)
{
	static const struct {
		const char *name;
		size_t off;
	} names[] = {
#define CONF__M(n, f) { n, offsetof(struct conf_loc_src, f) }
		CONF__M("match", match), CONF__M("upstream", upstream), CONF__M("root", root),
		CONF__M("return", ret), CONF__M("redirect", redirect), CONF__M("logout", logout),
		CONF__M("status", status), CONF__M("body", body),
		CONF__M("content_type", content_type), CONF__M("index", index),
		CONF__M("fallback", fallback), CONF__M("cache_control", cache_control),
		CONF__M("require_cookie", require_cookie),
		CONF__M("login_redirect", login_redirect), CONF__M("read_timeout", read_timeout),
		CONF__M("rewrite_prefix", rewrite_prefix),
		CONF__M("websocket", websocket),
		CONF__M("host", host), CONF__M("add_headers", add_headers),
#undef CONF__M
	};

	if (!config_setting_is_group(g))
		return conf__fail(ld, g, NULL, "must be a group { match = ...; ... }");
	memset(src, 0, sizeof(*src));
	src->g = g;
	int count = config_setting_length(g);
	for (int i = 0; i < count; i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(s);
		size_t k = 0;
		while (k < ARRAY_SIZE(names) && strcmp(names[k].name, name) != 0)
			k++;
		if (k == ARRAY_SIZE(names))
			return conf__fail(ld, s, NULL, "unknown setting");
		*(const config_setting_t **)(void *)((char *)src + names[k].off) = s;
	}
	if (src->match == NULL)
		return conf__fail(ld, g, "match", "required setting is missing");
	return 0;
}

/* Settings that belong to one action only, checked against the chosen one. */
static int conf__loc_only(struct conf_ld *ld, const struct conf_loc_src *src, enum conf_loc_action a)
{
	const struct {
		const config_setting_t *s;
		unsigned actions; /* bit per enum conf_loc_action */
		const char *what;
	} rules[] = {
#define CONF__A(x) (1u << (x))
		{ src->status, CONF__A(CONF_LOC_REDIRECT) | CONF__A(CONF_LOC_LOGOUT),
		  "redirect or logout (return = STATUS gives a fixed answer's)" },
		{ src->body, CONF__A(CONF_LOC_RETURN), "return" },
		{ src->content_type, CONF__A(CONF_LOC_RETURN), "return" },
		{ src->index, CONF__A(CONF_LOC_STATIC), "root" },
		{ src->fallback, CONF__A(CONF_LOC_STATIC), "root" },
		{ src->cache_control, CONF__A(CONF_LOC_STATIC), "root" },
		{ src->read_timeout, CONF__A(CONF_LOC_UPSTREAM), "upstream" },
		{ src->websocket, CONF__A(CONF_LOC_UPSTREAM), "upstream" },
		{ src->host, CONF__A(CONF_LOC_UPSTREAM), "upstream" },
		{ src->rewrite_prefix, CONF__A(CONF_LOC_UPSTREAM) | CONF__A(CONF_LOC_STATIC),
		  "upstream or root" },
#undef CONF__A
	};

	for (size_t i = 0; i < ARRAY_SIZE(rules); i++)
		if (rules[i].s != NULL && !(rules[i].actions & (1u << a)))
			return conf__fail(ld, rules[i].s, NULL, "only with %s", rules[i].what);
	return 0;
}

/* Exactly one action; its own settings read. */
static int conf__loc_action(struct conf_ld *ld, const struct conf_loc_src *src, struct conf_location *l)
{
	const config_setting_t *acts[] = { src->upstream, src->root, src->ret,
					   src->logout ? src->logout : src->redirect };
	const config_setting_t *first = NULL;
	const char *v;
	double d;

	for (size_t i = 0; i < ARRAY_SIZE(acts); i++) {
		if (acts[i] == NULL)
			continue;
		if (first != NULL)
			return conf__fail(ld, acts[i], NULL, "a location has one of upstream, root,"
					  " return, redirect or logout (already set at line %d)",
					  (int)config_setting_source_line(first));
		first = acts[i];
	}
	if (first == NULL)
		return conf__fail(ld, src->g, NULL, "needs one of upstream, root, return, redirect"
				  " or logout");
	if (src->upstream != NULL) {
		l->action = CONF_LOC_UPSTREAM;
		if (conf__string(ld, src->upstream, &v) < 0)
			return -1;
		const struct conf_upstream *u = conf_upstream_find(ld->c, v);
		if (u == NULL)
			return conf__fail(ld, src->upstream, NULL, "no upstream group \"%s\"", v);
		l->upstream = (int)(u - ld->c->upstreams);
	} else if (src->root != NULL) {
		l->action = CONF_LOC_STATIC;
		if (conf__string(ld, src->root, &v) < 0)
			return -1;
		size_t n = strlen(v);
		while (n > 1 && v[n - 1] == '/')
			n--;
		if (v[0] != '/' || n == 1 || strstr(v, "/../") != NULL || strstr(v, "/./") != NULL)
			return conf__fail(ld, src->root, NULL, "must be an absolute directory other than /");
		if ((l->root = strndup(v, n)) == NULL)
			return conf__oom(ld);
	} else if (src->ret != NULL) {
		l->action = CONF_LOC_RETURN;
		if (conf__number(ld, src->ret, true, 200, 599, &d) < 0)
			return -1;
		l->status = (int)d;
	} else {
		l->action = src->logout ? CONF_LOC_LOGOUT : CONF_LOC_REDIRECT;
		if (src->logout && conf__loc_cookies(ld, src->logout, l) < 0)
			return -1;
		if (src->redirect == NULL)
			return conf__fail(ld, src->g, "redirect", "required with logout (where the"
					  " browser goes once logged out)");
		if (conf__loc_url(ld, src->redirect, &l->target) < 0)
			return -1;
		l->status = 302;
	}
	return conf__loc_only(ld, src, l->action);
}

static int conf__loc_text(struct conf_ld *ld, const config_setting_t *s, bool token, char **dst)
{
	const char *v;

	if (conf__string(ld, s, &v) < 0)
		return -1;
	bool ok = token ? conf__token_ok(v, 256) : conf__wire_ok(v, CONF__LOC_MAX_URL);
	if (!ok && !token && v[0] != '\0') { /* a header value: spaces allowed inside */
		ok = true;
		for (const char *q = v; ok && *q; q++)
			ok = (unsigned char)*q >= 0x20 && (unsigned char)*q < 0x7f;
	}
	if (!ok)
		return conf__fail(ld, s, NULL, token ? "must be an HTTP token"
				  : "must be printable ASCII, not empty");
	return conf__set_str(ld, dst, v);
}

/* A file name under a static root: "/index.html" (fallback) or "index.html". */
static int conf__loc_file(struct conf_ld *ld, const config_setting_t *s, bool slash, char **dst)
{
	const char *v;

	if (conf__string(ld, s, &v) < 0)
		return -1;
	size_t n = strlen(v);
	bool ok = conf__wire_ok(v, 1024) && (slash ? v[0] == '/' && v[n - 1] != '/' : strchr(v, '/') == NULL)
		  && strstr(v, "..") == NULL && strchr(v, '\\') == NULL && strchr(v, '%') == NULL;
	if (!ok)
		return conf__fail(ld, s, NULL, slash ? "must be a file path under the root (\"/index.html\")"
				  : "must be a file name (\"index.html\")");
	return conf__set_str(ld, dst, v);
}

static int conf__loc_options(struct conf_ld *ld, const struct conf_loc_src *src, struct conf_location *l)
{
	const char *v;
	double d;

	if (src->status != NULL) {
		if (conf__number(ld, src->status, true, 301, 308, &d) < 0)
			return -1;
		if (d == 304 || d == 305 || d == 306)
			return conf__fail(ld, src->status, NULL, "must be 301, 302, 303, 307 or 308");
		l->status = (int)d;
	}
	if (l->action == CONF_LOC_RETURN) {
		if (src->body != NULL && conf__string(ld, src->body, &v) < 0)
			return -1;
		if (conf__set_str(ld, &l->body, src->body ? v : "") < 0)
			return -1;
		if (src->content_type && conf__loc_text(ld, src->content_type, false, &l->content_type) < 0)
			return -1;
		if (l->content_type == NULL
		    && conf__set_str(ld, &l->content_type, "text/plain; charset=utf-8") < 0)
			return -1;
	}
	if (l->action == CONF_LOC_STATIC) {
		if (conf__set_str(ld, &l->index, "index.html") < 0)
			return -1;
		if ((src->index && conf__loc_file(ld, src->index, false, &l->index) < 0)
		    || (src->fallback && conf__loc_file(ld, src->fallback, true, &l->fallback) < 0)
		    || (src->cache_control
			&& conf__loc_text(ld, src->cache_control, false, &l->cache_control) < 0))
			return -1;
		/* It goes into a static plan's fixed header room. */
		if (l->cache_control != NULL && strlen(l->cache_control) > 512)
			return conf__fail(ld, src->cache_control, NULL, "must be at most 512 bytes");
	}
	if ((src->require_cookie == NULL) != (src->login_redirect == NULL))
		return conf__fail(ld, src->g, src->require_cookie ? "login_redirect" : "require_cookie",
				  "require_cookie and login_redirect go together");
	if (src->require_cookie && (conf__loc_text(ld, src->require_cookie, true, &l->require_cookie) < 0
				    || conf__loc_url(ld, src->login_redirect, &l->login_redirect) < 0))
		return -1;
	if (src->read_timeout != NULL
	    && conf__number(ld, src->read_timeout, false, 1, 86400, &l->read_timeout) < 0)
		return -1;
	if (src->rewrite_prefix != NULL) {
		if (l->match == CONF_LOC_REGEX || l->match == CONF_LOC_REGEX_ICASE)
			return conf__fail(ld, src->rewrite_prefix, NULL, "only for prefix and exact locations");
		if (conf__string(ld, src->rewrite_prefix, &v) < 0)
			return -1;
		if (v[0] != '/' || !conf__wire_ok(v, CONF__LOC_MAX_PATTERN))
			return conf__fail(ld, src->rewrite_prefix, NULL, "must be a path (\"/...\")");
		if (conf__set_str(ld, &l->rewrite_prefix, v) < 0)
			return -1;
	}
	l->websocket = true;
	if (src->websocket && !conf__loc_bool(ld, src->websocket, &l->websocket))
		return -1;
	if (src->host != NULL && conf__loc_host(ld, src->host, l) < 0)
		return -1;
	if (src->add_headers != NULL &&
	    conf__headers(ld, src->add_headers, &l->headers, &l->nheaders) < 0)
		return -1;
	return 0;
}

static void conf__loc_free(struct conf_location *l)
{
	pcre2_code_free(l->re);
	free(l->pattern);
	free(l->root);
	free(l->index);
	free(l->fallback);
	free(l->cache_control);
	free(l->body);
	free(l->content_type);
	free(l->target);
	for (int i = 0; i < l->ncookies; i++)
		free(l->cookies[i]);
	free(l->cookies);
	free(l->require_cookie);
	free(l->login_redirect);
	free(l->rewrite_prefix);
	free(l->host);
	for (int i = 0; i < l->nheaders; i++) {
		free(l->headers[i].name);
		free(l->headers[i].value);
	}
	free(l->headers);
}

void conf__location_table_free(struct conf_location_table *t)
{
	if (t == NULL)
		return;
	for (int i = 0; i < t->n; i++)
		conf__loc_free(&t->loc[i]);
	free(t->loc);
	free(t);
}

int conf__locations(struct conf_ld *ld, const config_setting_t *s, struct conf_location_table **out)
{
	struct conf_loc_src src;

	if (!config_setting_is_list(s))
		return conf__fail(ld, s, NULL, "must be a list of groups ( { match = ...; ... }, ... )");
	int count = config_setting_length(s);
	if (count > CONF__MAX_LOCATIONS)
		return conf__fail(ld, s, NULL, "must have at most %d entries", CONF__MAX_LOCATIONS);
	conf__location_table_free(*out);
	/* Owned by *out from here, so a failure half-way is freed with the snapshot. */
	if ((*out = calloc(1, sizeof(**out))) == NULL)
		return conf__oom(ld);
	if (count > 0 && ((*out)->loc = calloc((size_t)count, sizeof(*(*out)->loc))) == NULL)
		return conf__oom(ld);
	struct conf_location_table *t = *out;
	for (int i = 0; i < count; i++) {
		const config_setting_t *g = config_setting_get_elem(s, (unsigned)i);
		struct conf_location *l = &t->loc[t->n++];

		if (conf__loc_members(ld, g, &src) < 0 || conf__loc_match(ld, src.match, l) < 0
		    || conf__loc_action(ld, &src, l) < 0 || conf__loc_options(ld, &src, l) < 0)
			return -1;
		l->line = (int)config_setting_source_line(g);
		for (int k = 0; k < i; k++) {
			const struct conf_location *o = &t->loc[k];
			/* nginx: "duplicate location". A prefix and a ^~ prefix on the
			   same path are the same prefix too. */
			bool same_kind = o->match == l->match
					 || (o->match != CONF_LOC_EXACT && l->match != CONF_LOC_EXACT
					     && o->re == NULL && l->re == NULL);
			if (same_kind && strcmp(o->pattern, l->pattern) == 0)
				return conf__fail(ld, src.match, NULL, "duplicate location \"%s\" (first at"
						  " line %d)", l->pattern, o->line);
		}
	}
	return 0;
}

void conf__locations_free(struct conf *c)
{
	conf__location_table_free(c->locations);
	c->locations = NULL;
	for (int i = 0; i < c->nlisten; i++) {
		conf__location_table_free(c->listen[i].locations);
		c->listen[i].locations = NULL;
	}
}

const struct conf_location_table *conf_http_locations(const struct conf *c,
						      const struct conf_listen *l)
{
	if (l != NULL && l->locations != NULL)
		return l->locations;
	return c->locations;
}
