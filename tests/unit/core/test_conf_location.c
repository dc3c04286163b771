/*
 * Tests for core/conf_upstream.c and core/conf_location.c: upstream groups
 * and location tables as loaded (fields, defaults), the per-listener
 * override, and every error naming its line and setting.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conf.h"

static char cl_t_dir[64];
static char cl_t_file[128];

static void cl_t_setup(void)
{
	snprintf(cl_t_dir, sizeof(cl_t_dir), "/tmp/gh-conf-loc-XXXXXX");
	cr_assert_not_null(mkdtemp(cl_t_dir));
	snprintf(cl_t_file, sizeof(cl_t_file), "%s/t.conf", cl_t_dir);
}

static void cl_t_teardown(void)
{
	unlink(cl_t_file);
	rmdir(cl_t_dir);
}

TestSuite(conf_location, .init = cl_t_setup, .fini = cl_t_teardown);

static void cl_t_write(const char *text)
{
	FILE *f = fopen(cl_t_file, "w");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
	cr_assert_eq(fclose(f), 0);
}

static struct conf *cl_t_load(const char *text)
{
	char err[512] = "";

	cl_t_write(text);
	struct conf *c = conf_load(cl_t_file, err, sizeof(err));
	cr_assert_not_null(c, "unexpected error: %s\nfor:\n%s", err, text);
	return c;
}

static void cl_t_fails(const char *text, const char *suffix)
{
	char err[512] = "", want[512];

	cl_t_write(text);
	struct conf *c = conf_load(cl_t_file, err, sizeof(err));
	cr_expect_null(c, "loaded, expected \"%s\" for:\n%s", suffix, text);
	if (c != NULL) {
		conf_unref(c);
		return;
	}
	snprintf(want, sizeof(want), "%s:%s", cl_t_file, suffix);
	cr_expect_str_eq(err, want, "got  \"%s\"\nwant \"%s\"\nfor:\n%s", err, want, text);
}

#define CL_T_64 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define CL_T_2K CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64 \
	CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64 \
	CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64 \
	CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64 CL_T_64
#define CL_T_UP "upstreams = ( { name = \"ms\"; servers = [ \"10.0.0.1\" ]; } );\n"

Test(conf_location, none_by_default)
{
	struct conf *c = cl_t_load("");

	cr_assert_eq(c->nupstreams, 0);
	cr_assert_null(c->locations);
	cr_assert_null(conf_http_locations(c, &c->listen[0]));
	conf_unref(c);
}

Test(conf_location, upstream_defaults_and_settings)
{
	struct conf *c = cl_t_load(
		"upstreams = (\n"
		"  { name = \"ms\"; servers = [ \"10.0.0.1\", \"10.0.0.2:8443\", \"[::1]\" ]; },\n"
		"  { name = \"mesh-files\"; servers = [ \"127.78.0.1:20000\" ]; port = 9000;\n"
		"    tls = true; sni = \"files.example.com\"; verify = false; balance = \"round_robin\";\n"
		"    max_fails = 3; fail_timeout = 30; keepalive = 0; }\n"
		");\n");

	cr_assert_eq(c->nupstreams, 2);
	const struct conf_upstream *u = conf_upstream_find(c, "ms");
	cr_assert_not_null(u);
	cr_assert_eq(u->nservers, 3);
	cr_assert_str_eq(u->servers[0].host, "10.0.0.1");
	cr_assert_eq(u->servers[0].port, 8080);
	cr_assert_eq(u->servers[1].port, 8443);
	cr_assert_str_eq(u->servers[2].host, "::1");
	cr_assert_eq(u->balance, CONF_BALANCE_ROUTE);
	cr_assert_eq(u->max_fails, 1);
	cr_assert_float_eq(u->fail_timeout, 10.0, 1e-9);
	cr_assert_eq(u->keepalive, 32);
	cr_assert(!u->tls);
	cr_assert(u->verify);
	conf_unref(c);
}

Test(conf_location, tls_group_makes_a_client_context)
{
	struct conf *c = cl_t_load(
		"upstreams = ( { name = \"m\"; servers = [ \"127.78.0.1:20000\" ]; port = 9000;\n"
		"  tls = true; sni = \"files.example.com\"; verify = false; balance = \"round_robin\";\n"
		"  max_fails = 3; fail_timeout = 30; keepalive = 0; } );\n");
	const struct conf_upstream *u = conf_upstream_find(c, "m");

	cr_assert_not_null(u);
	cr_assert(u->tls);
	cr_assert(!u->verify);
	cr_assert_str_eq(u->sni, "files.example.com");
	cr_assert_eq(u->balance, CONF_BALANCE_ROUND_ROBIN);
	cr_assert_eq(u->max_fails, 3);
	cr_assert_float_eq(u->fail_timeout, 30.0, 1e-9);
	cr_assert_eq(u->keepalive, 0);
	cr_assert_eq(u->servers[0].port, 20000);
	cr_assert_not_null(c->tls_client);
	cr_assert_null(conf_upstream_find(c, "M"));
	conf_unref(c);
}

Test(conf_location, upstream_errors)
{
	cl_t_fails("upstreams = ( { servers = [ \"a\" ]; } );", "1: upstreams.[0].name: required setting is missing");
	cl_t_fails("upstreams = ( { name = \"a\"; } );", "1: upstreams.[0].servers: required setting is missing");
	cl_t_fails("upstreams = ( { name = \"a b\"; servers = [ \"x\" ]; } );",
		   "1: upstreams.[0].name: must be 1 to 64 letters, digits, '_' or '-'");
	cl_t_fails("upstreams = ( { name = \"a\"; servers = [ ]; } );",
		   "1: upstreams.[0].servers: must have 1 to 256 entries");
	cl_t_fails("upstreams = ( { name = \"a\"; servers = [ \"x:0\" ]; } );",
		   "1: upstreams.[0].servers.[0]: bad port (must be 1..65535)");
	cl_t_fails("upstreams = ( { name = \"a\"; servers = [ \"x\" ]; balance = \"least_conn\"; } );",
		   "1: upstreams.[0].balance: must be one of route, ip_hash, round_robin");
	cl_t_fails("upstreams = ( { name = \"a\"; servers = [ \"x\" ]; sni = \"x\"; } );",
		   "1: upstreams.[0].sni: only with tls = true");
	cl_t_fails("upstreams = ( { name = \"a\"; servers = [ \"x\" ]; max_fails = 101; } );",
		   "1: upstreams.[0].max_fails: must be between 0 and 100");
	cl_t_fails("upstreams = ( { name = \"a\"; servers = [ \"x\" ]; weight = 1; } );",
		   "1: upstreams.[0].weight: unknown setting");
	cl_t_fails("upstreams = ( { name = \"a\"; servers = [ \"x\" ]; },\n"
		   "              { name = \"a\"; servers = [ \"y\" ]; } );",
		   "2: upstreams.[1].name: duplicate upstream \"a\" (first at line 1)");
}

Test(conf_location, match_kinds)
{
	struct conf *c = cl_t_load(CL_T_UP
		"locations = (\n"
		"  { match = \"= /\"; upstream = \"ms\"; },\n"
		"  { match = \"/\"; upstream = \"ms\"; },\n"
		"  { match = \"^~ /images/\"; upstream = \"ms\"; },\n"
		"  { match = \"~* \\\\.(gif|jpg)$\"; upstream = \"ms\"; },\n"
		"  { match = \"~/logout\"; logout = [ \"ZM_AUTH_TOKEN\" ]; redirect = \"/static/login/\"; },\n"
		"  { match = \"=/x\"; return = 204; }\n"
		");\n");
	const struct conf_location_table *t = c->locations;

	cr_assert_not_null(t);
	cr_assert_eq(t->n, 6);
	cr_assert_eq(t->loc[0].match, CONF_LOC_EXACT);
	cr_assert_str_eq(t->loc[0].pattern, "/");
	cr_assert_eq(t->loc[1].match, CONF_LOC_PREFIX);
	cr_assert_eq(t->loc[2].match, CONF_LOC_PREFIX_STOP);
	cr_assert_str_eq(t->loc[2].pattern, "/images/");
	cr_assert_eq(t->loc[2].pattern_len, 8);
	cr_assert_eq(t->loc[3].match, CONF_LOC_REGEX_ICASE);
	cr_assert_str_eq(t->loc[3].pattern, "\\.(gif|jpg)$");
	cr_assert_not_null(t->loc[3].re);
	cr_assert_eq(t->loc[4].match, CONF_LOC_REGEX);
	cr_assert_str_eq(t->loc[4].pattern, "/logout");
	cr_assert_eq(t->loc[5].match, CONF_LOC_EXACT);
	cr_assert_str_eq(t->loc[5].pattern, "/x");
	cr_assert_eq(t->loc[1].line, 4);
	conf_unref(c);
}

Test(conf_location, actions_and_options)
{
	struct conf *c = cl_t_load(CL_T_UP
		"locations = (\n"
		"  { match = \"= /robots.txt\"; return = 200; body = \"User-agent: *\\nDisallow: /\\n\"; },\n"
		"  { match = \"= /favicon.ico\"; return = 404; content_type = \"image/x-icon\"; },\n"
		"  { match = \"/services/files/\"; upstream = \"ms\"; rewrite_prefix = \"/\";\n"
		"    read_timeout = 3600;\n"
		"    websocket = false; host = \"$host:7071\";\n"
		"    require_cookie = \"ZM_AUTH_TOKEN\"; login_redirect = \"/static/login/\";\n"
		"    add_headers = [ \"Strict-Transport-Security: max-age=31536000\", \"X-Frame-Options:SAMEORIGIN\" ]; },\n"
		"  { match = \"^~ /static/\"; root = \"/opt/zextras/web/\"; rewrite_prefix = \"/\";\n"
		"    cache_control = \"no-cache, must-revalidate\"; fallback = \"/index.html\"; index = \"i.htm\"; },\n"
		"  { match = \"= /\"; redirect = \"https://example.com/carbonio/\"; status = 307; },\n"
		"  { match = \"~/logout\"; logout = [ \"ZM_AUTH_TOKEN\", \"JSESSIONID\" ]; redirect = \"/static/login/\"; }\n"
		");\n");
	const struct conf_location *l = c->locations->loc;

	cr_assert_eq(l[0].action, CONF_LOC_RETURN);
	cr_assert_eq(l[0].status, 200);
	cr_assert_str_eq(l[0].body, "User-agent: *\nDisallow: /\n");
	cr_assert_str_eq(l[0].content_type, "text/plain; charset=utf-8");
	cr_assert_str_eq(l[1].body, "");
	cr_assert_str_eq(l[1].content_type, "image/x-icon");

	cr_assert_eq(l[2].action, CONF_LOC_UPSTREAM);
	cr_assert_eq(l[2].upstream, 0);
	cr_assert_str_eq(l[2].rewrite_prefix, "/");
	cr_assert_float_eq(l[2].read_timeout, 3600.0, 1e-9);
	cr_assert(!l[2].websocket);
	cr_assert_str_eq(l[2].host, "$host:7071");
	cr_assert_str_eq(l[2].require_cookie, "ZM_AUTH_TOKEN");
	cr_assert_str_eq(l[2].login_redirect, "/static/login/");
	cr_assert_eq(l[2].nheaders, 2);
	cr_assert_str_eq(l[2].headers[0].name, "Strict-Transport-Security");
	cr_assert_str_eq(l[2].headers[0].value, "max-age=31536000");
	cr_assert_str_eq(l[2].headers[1].name, "X-Frame-Options");
	cr_assert_str_eq(l[2].headers[1].value, "SAMEORIGIN");

	cr_assert_eq(l[3].action, CONF_LOC_STATIC);
	cr_assert_str_eq(l[3].root, "/opt/zextras/web", "trailing slash dropped");
	cr_assert_str_eq(l[3].index, "i.htm");
	cr_assert_str_eq(l[3].fallback, "/index.html");
	cr_assert_str_eq(l[3].cache_control, "no-cache, must-revalidate");
	cr_assert(l[3].websocket, "default");
	cr_assert_float_eq(l[3].read_timeout, 0.0, 1e-9);

	cr_assert_eq(l[4].action, CONF_LOC_REDIRECT);
	cr_assert_eq(l[4].status, 307);
	cr_assert_str_eq(l[4].target, "https://example.com/carbonio/");

	cr_assert_eq(l[5].action, CONF_LOC_LOGOUT);
	cr_assert_eq(l[5].status, 302, "default");
	cr_assert_eq(l[5].ncookies, 2);
	cr_assert_str_eq(l[5].cookies[1], "JSESSIONID");
	cr_assert_str_eq(l[5].target, "/static/login/");
	conf_unref(c);
}

Test(conf_location, static_defaults)
{
	struct conf *c = cl_t_load("locations = ( { match = \"/\"; root = \"/srv/www\"; } );");
	const struct conf_location *l = c->locations->loc;

	cr_assert_str_eq(l->index, "index.html");
	cr_assert_null(l->fallback);
	cr_assert_null(l->cache_control);
	conf_unref(c);
}

/* Upstreams may come after the locations that name them. */
Test(conf_location, upstreams_anywhere_in_the_file)
{
	struct conf *c = cl_t_load("locations = ( { match = \"/\"; upstream = \"b\"; } );\n"
				   "upstreams = ( { name = \"a\"; servers = [ \"x\" ]; },\n"
				   "              { name = \"b\"; servers = [ \"y\" ]; } );\n");

	cr_assert_eq(c->locations->loc[0].upstream, 1);
	cr_assert_str_eq(c->upstreams[c->locations->loc[0].upstream].name, "b");
	conf_unref(c);
}

Test(conf_location, listener_override)
{
	struct conf *c = cl_t_load(CL_T_UP
		"http = { backends = [ \"10.0.0.1\" ]; };\n"
		"locations = ( { match = \"/\"; upstream = \"ms\"; } );\n"
		"listen = (\n"
		"  { address = \"127.0.0.1:8443\"; protocol = \"http\"; },\n"
		"  { address = \"127.0.0.1:6071\"; protocol = \"http\";\n"
		"    locations = ( { match = \"/\"; upstream = \"ms\"; host = \"$host:7071\"; },\n"
		"                  { match = \"= /x\"; return = 403; } ); }\n"
		");\n");

	const struct conf_location_table *t0 = conf_http_locations(c, &c->listen[0]);
	const struct conf_location_table *t1 = conf_http_locations(c, &c->listen[1]);
	cr_assert_eq(t0, c->locations);
	cr_assert_eq(t0->n, 1);
	cr_assert_neq(t1, c->locations);
	cr_assert_eq(t1->n, 2);
	cr_assert_str_eq(t1->loc[0].host, "$host:7071");
	conf_unref(c);
}

Test(conf_location, location_errors)
{
	cl_t_fails(CL_T_UP "locations = ( { upstream = \"ms\"; } );",
		   "2: locations.[0].match: required setting is missing");
	cl_t_fails(CL_T_UP "locations = ( { match = \"x\"; upstream = \"ms\"; } );",
		   "2: locations.[0].match: must be \"/path\", \"= /path\", \"^~ /path\", \"~ regex\" or"
		   " \"~* regex\" (a path starts with '/', has no spaces or control characters, at most"
		   " 1024 bytes)");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/a b\"; upstream = \"ms\"; } );",
		   "2: locations.[0].match: must be \"/path\", \"= /path\", \"^~ /path\", \"~ regex\" or"
		   " \"~* regex\" (a path starts with '/', has no spaces or control characters, at most"
		   " 1024 bytes)");
	cl_t_fails(CL_T_UP "locations = ( { match = \"~ ^/(a\"; upstream = \"ms\"; } );",
		   "2: locations.[0].match: bad regex at offset 4: missing closing parenthesis");
	cl_t_fails(CL_T_UP "locations = ( { match = \"~ (*UTF)x\"; upstream = \"ms\"; } );",
		   "2: locations.[0].match: bad regex at offset 6: using UTF is disabled by the"
		   " application");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\"; } );",
		   "2: locations.[0]: needs one of upstream, root, return, redirect or logout");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\";\n upstream = \"ms\";\n return = 200; } );",
		   "4: locations.[0].return: a location has one of upstream, root, return, redirect"
		   " or logout (already set at line 3)");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\"; upstream = \"nope\"; } );",
		   "2: locations.[0].upstream: no upstream group \"nope\"");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\"; upstream = \"ms\"; colour = 1; } );",
		   "2: locations.[0].colour: unknown setting");
	/* Gatehouse always streams: buffering settings are refused, not ignored. */
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\"; upstream = \"ms\"; buffer_response = false; } );",
		   "2: locations.[0].buffer_response: unknown setting");
	cl_t_fails("locations = ( { match = \"/\"; logout = [ \"A\" ]; } );",
		   "1: locations.[0].redirect: required with logout (where the browser goes once"
		   " logged out)");
	cl_t_fails("locations = ( { match = \"/\"; logout = [ \"A B\" ]; redirect = \"/\"; } );",
		   "1: locations.[0].logout.[0]: must be a cookie name (an HTTP token of at most"
		   " 64 bytes)");
	cl_t_fails("locations = ( { match = \"/\"; redirect = \"javascript:x\"; } );",
		   "1: locations.[0].redirect: must be a path (\"/...\") or an http:// or https:// URL"
		   " without spaces or control characters");
	cl_t_fails("locations = ( { match = \"/\"; redirect = \"/a\"; status = 304; } );",
		   "1: locations.[0].status: must be 301, 302, 303, 307 or 308");
	cl_t_fails("locations = ( { match = \"/\"; redirect = \"/a\"; status = 200; } );",
		   "1: locations.[0].status: must be between 301 and 308");
	cl_t_fails("locations = ( { match = \"/\"; return = 200; status = 301; } );",
		   "1: locations.[0].status: only with redirect or logout (return = STATUS gives a"
		   " fixed answer's)");
	cl_t_fails("locations = ( { match = \"/\"; return = 99; } );",
		   "1: locations.[0].return: must be between 200 and 599");
	cl_t_fails("locations = ( { match = \"/\"; return = 200; read_timeout = 5; } );",
		   "1: locations.[0].read_timeout: only with upstream");
	cl_t_fails("locations = ( { match = \"/\"; root = \"/srv\"; body = \"x\"; } );",
		   "1: locations.[0].body: only with return");
	cl_t_fails("locations = ( { match = \"/\"; root = \"srv\"; } );",
		   "1: locations.[0].root: must be an absolute directory other than /");
	cl_t_fails("locations = ( { match = \"/\"; root = \"/\"; } );",
		   "1: locations.[0].root: must be an absolute directory other than /");
	cl_t_fails("locations = ( { match = \"/\"; root = \"/srv\"; fallback = \"/../etc/passwd\"; } );",
		   "1: locations.[0].fallback: must be a file path under the root (\"/index.html\")");
	cl_t_fails("locations = ( { match = \"/\"; root = \"/srv\"; index = \"a/b\"; } );",
		   "1: locations.[0].index: must be a file name (\"index.html\")");
	cl_t_fails(CL_T_UP "locations = ( { match = \"~ x\"; upstream = \"ms\"; rewrite_prefix = \"/\"; } );",
		   "2: locations.[0].rewrite_prefix: only for prefix and exact locations");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\"; upstream = \"ms\"; rewrite_prefix = \"x\"; } );",
		   "2: locations.[0].rewrite_prefix: must be a path (\"/...\")");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\"; upstream = \"ms\"; require_cookie = \"T\"; } );",
		   "2: locations.[0].login_redirect: require_cookie and login_redirect go together");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\"; upstream = \"ms\"; host = \"a b\"; } );",
		   "2: locations.[0].host: must be \"$host\", \"$host:PORT\" or \"NAME[:PORT]\"");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\"; upstream = \"ms\"; host = \"$host:99999\"; } );",
		   "2: locations.[0].host: must be \"$host\", \"$host:PORT\" or \"NAME[:PORT]\"");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\"; upstream = \"ms\"; websocket = 1; } );",
		   "2: locations.[0].websocket: must be true or false");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\"; upstream = \"ms\"; add_headers = [ \"X-A\" ]; } );",
		   "2: locations.[0].add_headers.[0]: must be \"Name: value\" (a header name, then"
		   " printable ASCII)");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\"; upstream = \"ms\"; add_headers = [ \"X A: b\" ]; } );",
		   "2: locations.[0].add_headers.[0]: must be \"Name: value\" (a header name, then"
		   " printable ASCII)");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\"; upstream = \"ms\"; add_headers = [ \"X-A: b\\r\\nX: y\" ]; } );",
		   "2: locations.[0].add_headers.[0]: must be \"Name: value\" (a header name, then"
		   " printable ASCII)");
	cl_t_fails("locations = ( { match = \"/\"; return = 200; content_type = \"a\\nb\"; } );",
		   "1: locations.[0].content_type: must be printable ASCII, not empty");
	cl_t_fails("locations = ( { match = \"/\"; return = 200; content_type = \"\"; } );",
		   "1: locations.[0].content_type: must be printable ASCII, not empty");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\"; upstream = \"ms\"; add_headers = [ \"content-length: 5\" ]; } );",
		   "2: locations.[0].add_headers.[0]: Content-Length is written by gatehouse itself");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\"; upstream = \"ms\"; add_headers = [ \"Transfer-Encoding: chunked\" ]; } );",
		   "2: locations.[0].add_headers.[0]: Transfer-Encoding is written by gatehouse itself");
	cl_t_fails(CL_T_UP "locations = ( { match = \"/\"; upstream = \"ms\"; add_headers = [\n"
		   "  \"A: " CL_T_2K "\", \"B: " CL_T_2K "\", \"C: x\" ]; } );",
		   "2: locations.[0].add_headers: must add at most 4096 bytes of headers");
	cl_t_fails("locations = ( { match = \"/\"; root = \"/srv\"; fallback = \"/app/\"; } );",
		   "1: locations.[0].fallback: must be a file path under the root (\"/index.html\")");
}

Test(conf_location, duplicates)
{
	cl_t_fails(CL_T_UP "locations = ( { match = \"/a\"; upstream = \"ms\"; },\n"
		   "  { match = \"^~ /a\"; upstream = \"ms\"; } );",
		   "3: locations.[1].match: duplicate location \"/a\" (first at line 2)");
	cl_t_fails(CL_T_UP "locations = ( { match = \"= /a\"; upstream = \"ms\"; },\n"
		   "  { match = \"=/a\"; upstream = \"ms\"; } );",
		   "3: locations.[1].match: duplicate location \"/a\" (first at line 2)");
	/* An exact and a prefix location on one path are both useful (nginx too). */
	struct conf *c = cl_t_load(CL_T_UP "locations = ( { match = \"= /a\"; upstream = \"ms\"; },\n"
				   "  { match = \"/a\"; upstream = \"ms\"; }, { match = \"~ /a\"; upstream = \"ms\"; } );");
	cr_assert_eq(c->locations->n, 3);
	conf_unref(c);
}

Test(conf_location, listener_errors)
{
	cl_t_fails(CL_T_UP "listen = ( { address = \"127.0.0.1:143\";\n"
		   "  locations = ( { match = \"/\"; upstream = \"ms\"; } ); } );",
		   "3: listen.[0].locations: only for http listeners");
	cl_t_fails(CL_T_UP "http = { backends = [ \"x\" ]; };\n"
		   "listen = ( { address = \"127.0.0.1:80\"; protocol = \"http\";\n"
		   "  locations = ( { match = \"/\"; upstream = \"other\"; } ); } );",
		   "4: listen.[0].locations.[0].upstream: no upstream group \"other\"");
}

/* A snapshot full of compiled regexes is freed whole (ASan/valgrind
   runs of the unit tests see the leak otherwise), also after an error. */
Test(conf_location, freed_after_a_late_error)
{
	cl_t_fails(CL_T_UP "locations = ( { match = \"~ a+\"; upstream = \"ms\"; },\n"
		   "  { match = \"~* b\"; upstream = \"ms\"; },\n"
		   "  { match = \"~ (c\"; upstream = \"ms\"; } );",
		   "4: locations.[2].match: bad regex at offset 2: missing closing parenthesis");
}
