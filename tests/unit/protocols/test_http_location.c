/*
 * Tests for protocols/http_location.c: the path normalizer (vectors,
 * idempotence, errors) and the matcher with nginx's precedence (the
 * examples of nginx's documentation of `location`, Zimbra's routes), the
 * regex match limit, and prefix rewriting.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "http_location.h"
#include "loc_t.h"

/* ---- normalizer ---- */

struct norm_v {
	const char *in;
	const char *out; /* NULL: error rc */
	int rc;
};

static const struct norm_v norm_vectors[] = {
	{ "/", "/", 0 },
	{ "/a/b/c", "/a/b/c", 0 },
	{ "/a/b/", "/a/b/", 0 },
	{ "//a///b//", "/a/b/", 0 },
	{ "/a/./b", "/a/b", 0 },
	{ "/a/.", "/a/", 0 },
	{ "/.", "/", 0 },
	{ "/a/b/..", "/a/", 0 },
	{ "/a/b/../c", "/a/c", 0 },
	{ "/a/../../b", NULL, HTTP_PATH_EABOVE },
	{ "/..", NULL, HTTP_PATH_EABOVE },
	{ "/../a", NULL, HTTP_PATH_EABOVE },
	{ "/a/..", "/", 0 },
	{ "/a/%2e%2e/b", "/b", 0 },
	{ "/a/%2E./b", "/b", 0 },
	{ "/%2e%2e/etc/passwd", NULL, HTTP_PATH_EABOVE },
	{ "/a/.../b", "/a/.../b", 0 },
	{ "/a/..b/c", "/a/..b/c", 0 },
	{ "/a.b/c.", "/a.b/c.", 0 },
	{ "/%41%7a%30%2D%2e%5F%7E", "/Az0-._~", 0 },
	{ "/a%2fb", "/a%2Fb", 0 },
	{ "/a%2F..%2Fb", "/a%2F..%2Fb", 0 },
	{ "/a%5cb", "/a%5Cb", 0 },
	{ "/a%00b", "/a%00b", 0 },
	{ "/a%25", "/a%25", 0 },
	{ "/a%252e", "/a%252e", 0 },
	{ "/a%20b", "/a%20b", 0 },
	{ "/a\xc3\xa9", "/a\xc3\xa9", 0 },
	{ "/a?b=../..", "/a", 0 },
	{ "/a/..?x", "/", 0 },
	{ "/a#frag", "/a", 0 },
	{ "/a%", NULL, HTTP_PATH_EBAD },
	{ "/a%2", NULL, HTTP_PATH_EBAD },
	{ "/a%zz", NULL, HTTP_PATH_EBAD },
	{ "/a%2?x", NULL, HTTP_PATH_EBAD },
	{ "a/b", NULL, HTTP_PATH_EBAD },
	{ "", NULL, HTTP_PATH_EBAD },
	{ "?x", NULL, HTTP_PATH_EBAD },
	{ "*", NULL, HTTP_PATH_EBAD },
	{ "/a b", NULL, HTTP_PATH_EBAD },
	{ "/a\tb", NULL, HTTP_PATH_EBAD },
	{ "/a\x7f", NULL, HTTP_PATH_EBAD },
};

Test(http_path, vectors)
{
	for (size_t i = 0; i < sizeof(norm_vectors) / sizeof(norm_vectors[0]); i++) {
		const struct norm_v *v = &norm_vectors[i];
		char out[256];
		size_t used = 99;
		int rc = http_path_normalize((const uint8_t *)v->in, strlen(v->in), out, sizeof(out),
					     &used);
		if (v->out == NULL) {
			cr_expect_eq(rc, v->rc, "\"%s\": rc %d, want %d", v->in, rc, v->rc);
			continue;
		}
		cr_expect_eq(rc, (int)strlen(v->out), "\"%s\": rc %d (%s)", v->in, rc, rc > 0 ? out : "");
		if (rc > 0)
			cr_expect_str_eq(out, v->out, "\"%s\"", v->in);
		cr_expect_eq(used, strcspn(v->in, "?#"), "\"%s\": consumed %zu", v->in, used);
		/* Idempotent: the result normalizes to itself. */
		char again[256];
		size_t u2;
		int rc2 = http_path_normalize((const uint8_t *)out, (size_t)rc, again, sizeof(again), &u2);
		cr_expect_eq(rc2, rc, "\"%s\": not idempotent", v->in);
		if (rc2 > 0)
			cr_expect_str_eq(again, out);
	}
}

/* The output never grows: len + 1 bytes always do, len bytes never do. */
Test(http_path, space)
{
	const char *in = "/%61bc";
	char out[8];
	size_t used;

	cr_assert_eq(http_path_normalize((const uint8_t *)in, 6, out, 7, &used), 4);
	cr_assert_str_eq(out, "/abc");
	cr_assert_eq(http_path_normalize((const uint8_t *)in, 6, out, 6, &used), HTTP_PATH_ESPACE);
	/* The query does not need room. */
	cr_assert_eq(http_path_normalize((const uint8_t *)"/a?long-query", 13, out, 3, &used), 2);
	cr_assert_eq(used, 2);
}

/* ---- matcher ---- */

static struct conf *lm_conf;
static struct http_location_scratch *lm_sc;

static void lm_load(const char *locations)
{
	char text[8192];

	snprintf(text, sizeof(text),
		 "upstreams = ( { name = \"u\"; servers = [ \"127.0.0.1\" ]; } );\n"
		 "locations = ( %s );\n", locations);
	lm_conf = loc_t_conf(text);
	lm_sc = http_location_scratch_new();
	cr_assert_not_null(lm_sc);
}

static void lm_fini(void)
{
	http_location_scratch_free(lm_sc);
	if (lm_conf != NULL)
		conf_unref(lm_conf);
	lm_conf = NULL;
	lm_sc = NULL;
}

TestSuite(http_location, .fini = lm_fini);

/* The index (in the table) of the location path gets, -1 for none. */
static int lm_idx(const char *path)
{
	const struct conf_location_table *t = lm_conf->locations;
	const struct conf_location *l = http_location_match(t, path, strlen(path), lm_sc);

	return l == NULL ? -1 : (int)(l - t->loc);
}

/* nginx.org/en/docs/http/ngx_http_core_module.html#location, the example:
   "/" -> A, "/index.html" -> B, "/documents/document.html" -> C,
   "/images/1.gif" -> D, "/documents/1.jpg" -> E. */
Test(http_location, nginx_documented_example)
{
	lm_load("{ match = \"= /\"; return = 200; body = \"A\"; },\n"
		"{ match = \"/\"; return = 200; body = \"B\"; },\n"
		"{ match = \"/documents/\"; return = 200; body = \"C\"; },\n"
		"{ match = \"^~ /images/\"; return = 200; body = \"D\"; },\n"
		"{ match = \"~* \\\\.(gif|jpg|jpeg)$\"; return = 200; body = \"E\"; }");

	cr_assert_eq(lm_idx("/"), 0);
	cr_assert_eq(lm_idx("/index.html"), 1);
	cr_assert_eq(lm_idx("/documents/document.html"), 2);
	cr_assert_eq(lm_idx("/images/1.gif"), 3);
	cr_assert_eq(lm_idx("/documents/1.jpg"), 4);
	/* Prefixes are case-sensitive, "~*" is not. */
	cr_assert_eq(lm_idx("/IMAGES/1.GIF"), 4);
	cr_assert_eq(lm_idx("/Documents/x"), 1);
}

/* The longest prefix is remembered, regexes win over it unless it is "^~",
   and a shorter "^~" does not stop the regexes when a longer plain
   prefix matches (nginx: only the longest prefix's modifier counts). */
Test(http_location, precedence_details)
{
	lm_load("{ match = \"^~ /a/\"; return = 200; },\n"
		"{ match = \"/a/b/\"; return = 200; },\n"
		"{ match = \"~ /a/b/c\"; return = 200; },\n"
		"{ match = \"~ c\"; return = 200; },\n"
		"{ match = \"= /a/b/c\"; return = 200; },\n"
		"{ match = \"/a/b/x/y\"; return = 200; }");

	cr_assert_eq(lm_idx("/a/x/c"), 0, "^~ is the longest: regexes not tried");
	cr_assert_eq(lm_idx("/a/b/cd"), 2, "longest is plain /a/b/: first matching regex");
	cr_assert_eq(lm_idx("/a/b/c"), 4, "exact first, whatever is before it");
	cr_assert_eq(lm_idx("/a/b/z"), 1, "no regex: the longest prefix");
	cr_assert_eq(lm_idx("/a/b/x/yc"), 3, "a regex beats the longer plain prefix");
	cr_assert_eq(lm_idx("/a/b/x/y"), 5);
	cr_assert_eq(lm_idx("/c"), 3, "no prefix at all: regex");
	cr_assert_eq(lm_idx("/z"), -1, "nothing matches: no location");
	cr_assert_eq(lm_idx("/a"), -1, "a prefix longer than the path does not match");
}

Test(http_location, regex_order_and_case)
{
	lm_load("{ match = \"~ ^/x/[0-9]+$\"; return = 200; },\n"
		"{ match = \"~* ^/X/\"; return = 200; },\n"
		"{ match = \"~ ^/x/\"; return = 200; }");

	cr_assert_eq(lm_idx("/x/12"), 0);
	cr_assert_eq(lm_idx("/x/12a"), 1, "first matching in order, ~* ignores case");
	cr_assert_eq(lm_idx("/X/a"), 1);
	cr_assert_eq(lm_idx("/y"), -1);
}

/* Zimbra's default server (zimbra-parity.md §2): the long polls are "^~"
   prefixes, so the greedy service regex does not take them. */
Test(http_location, zimbra_routes)
{
	lm_load("{ match = \"= /\"; upstream = \"u\"; },\n"
		"{ match = \"/\"; upstream = \"u\"; },\n"
		"{ match = \"^~ /Microsoft-Server-ActiveSync\"; upstream = \"u\"; read_timeout = 3600; },\n"
		"{ match = \"^~ /zx/ws-\"; upstream = \"u\"; },\n"
		"{ match = \"^~ /zx/\"; upstream = \"u\"; },\n"
		"{ match = \"~* /service/extension/drive/(.*)/(.*)$\"; upstream = \"u\"; },\n"
		"{ match = \"^~ /service/soap/NoOpRequest\"; upstream = \"u\"; read_timeout = 1220; },\n"
		"{ match = \"^~ /service/soap/WaitSetRequest\"; upstream = \"u\"; read_timeout = 1220; },\n"
		"{ match = \"^~ /autodiscover\"; upstream = \"u\"; },\n"
		"{ match = \"~* ^/ews/Exchange.asmx\"; upstream = \"u\"; read_timeout = 3600; },\n"
		"{ match = \"~* /(service|principals|dav|\\\\.well-known|home|shf|user|certauth|spnegoauth)/\";"
		"  upstream = \"u\"; }");

	cr_assert_eq(lm_idx("/"), 0);
	cr_assert_eq(lm_idx("/Microsoft-Server-ActiveSync"), 2);
	cr_assert_eq(lm_idx("/zx/ws-chat"), 3);
	cr_assert_eq(lm_idx("/zx/login/"), 4);
	cr_assert_eq(lm_idx("/service/extension/drive/a/b"), 5);
	cr_assert_eq(lm_idx("/service/soap/NoOpRequest"), 6);
	cr_assert_eq(lm_idx("/service/soap/WaitSetRequest"), 7);
	cr_assert_eq(lm_idx("/service/soap/SearchRequest"), 10);
	cr_assert_eq(lm_idx("/autodiscover/autodiscover.xml"), 8);
	cr_assert_eq(lm_idx("/EWS/Exchange.asmx"), 9);
	cr_assert_eq(lm_idx("/home/alice/inbox"), 10);
	cr_assert_eq(lm_idx("/dav/alice@example.com/Calendar"), 10);
	cr_assert_eq(lm_idx("/css/zimbra.css"), 1);
	cr_assert_float_eq(lm_conf->locations->loc[lm_idx("/service/soap/NoOpRequest")].read_timeout,
			   1220.0, 1e-9);
}

/* A pattern that backtracks exponentially stops at the match limit and
   counts as not matching: the request gets the prefix location. */
Test(http_location, match_limit)
{
	lm_load("{ match = \"/\"; return = 200; },\n"
		"{ match = \"~ ^/(a|aa)+$\"; return = 200; },\n"
		"{ match = \"~ ^/(a+)+b\"; return = 200; }");
	char path[200] = "/";

	memset(path + 1, 'a', 60);
	path[61] = 'c';
	path[62] = '\0';
	cr_assert_eq(lm_idx(path), 0);
	path[61] = 'b';
	cr_assert_eq(lm_idx(path), 2, "a matching path still matches");
	path[61] = '\0';
	cr_assert_eq(lm_idx(path), 1);
}

Test(http_location, empty_and_missing)
{
	cr_assert_null(http_location_match(NULL, "/", 1, NULL));
	lm_load("");
	cr_assert_eq(lm_conf->locations->n, 0);
	cr_assert_eq(lm_idx("/"), -1);
}

/* Without a scratch, regexes never match (documented), prefixes do. */
Test(http_location, no_scratch)
{
	lm_load("{ match = \"/\"; return = 200; }, { match = \"~ x\"; return = 200; }");
	const struct conf_location_table *t = lm_conf->locations;

	cr_assert_eq(http_location_match(t, "/x", 2, NULL), &t->loc[0]);
	cr_assert_eq(http_location_match(t, "/x", 2, lm_sc), &t->loc[1]);
}

/* ---- rewrite ---- */

static void lm_rw(int idx, const char *path, const char *want)
{
	char out[256];
	const struct conf_location *l = &lm_conf->locations->loc[idx];
	int n = http_location_rewrite(l, path, strlen(path), out, sizeof(out));

	cr_assert_eq(n, (int)strlen(want), "%s: %d", path, n);
	cr_assert_str_eq(out, want);
}

Test(http_location, rewrite_prefix)
{
	lm_load("{ match = \"/services/files/\"; upstream = \"u\"; rewrite_prefix = \"/\"; },\n"
		"{ match = \"/services/chats/events\"; upstream = \"u\"; rewrite_prefix = \"/events\"; },\n"
		"{ match = \"= /exact\"; upstream = \"u\"; rewrite_prefix = \"/other/\"; },\n"
		"{ match = \"~ ^/r/\"; upstream = \"u\"; },\n"
		"{ match = \"/keep/\"; upstream = \"u\"; },\n"
		"{ match = \"/ws/\"; upstream = \"u\"; rewrite_prefix = \"/ws-xmpp/\"; }");

	lm_rw(0, "/services/files/a/b", "/a/b");
	lm_rw(0, "/services/files/", "/");
	lm_rw(1, "/services/chats/events", "/events");
	lm_rw(1, "/services/chats/events/x", "/events/x");
	lm_rw(2, "/exact", "/other/");
	lm_rw(3, "/r/x", "/r/x");
	lm_rw(4, "/keep/x", "/keep/x");
	lm_rw(5, "/ws/a", "/ws-xmpp/a");

	char small[4];
	const struct conf_location *l = &lm_conf->locations->loc[1];
	cr_assert_eq(http_location_rewrite(l, "/services/chats/events", 22, small, sizeof(small)), -1);
}

/* ---- local answers ---- */

static const struct conf_location *lm_loc(int idx)
{
	return &lm_conf->locations->loc[idx];
}

Test(http_location, local_answers)
{
	lm_load("{ match = \"= /robots.txt\"; return = 200; body = \"User-agent: *\\nDisallow: /\\n\";\n"
		"  add_headers = [ \"X-Frame-Options: DENY\" ]; },\n"
		"{ match = \"= /\"; redirect = \"/carbonio/\"; status = 307;\n"
		"  require_cookie = \"ZM_AUTH_TOKEN\"; login_redirect = \"/static/login/\"; },\n"
		"{ match = \"~/logout\"; logout = [ \"ZM_AUTH_TOKEN\", \"JSESSIONID\" ];\n"
		"  redirect = \"/static/login/\"; status = 307; },\n"
		"{ match = \"/services/files/\"; upstream = \"u\"; require_cookie = \"ZM_AUTH_TOKEN\";\n"
		"  login_redirect = \"/static/login/\"; add_headers = [ \"Strict-Transport-Security: max-age=63072000\" ]; },\n"
		"{ match = \"/\"; upstream = \"u\"; }");
	static char hdr[HTTP_LOCATION_HEADERS_MAX];
	struct http_location_answer a;
	const char *ck = "JSESSIONID=1; ZM_AUTH_TOKEN=0_abc";

	cr_assert(http_location_local(lm_loc(0), NULL, 0, hdr, sizeof(hdr), &a));
	cr_assert_eq(a.status, 200);
	cr_assert_str_eq(a.content_type, "text/plain; charset=utf-8");
	cr_assert_eq(a.body_len, 26);
	cr_assert_eq(memcmp(a.body, "User-agent: *\nDisallow: /\n", 26), 0);
	cr_assert_null(a.location);
	cr_assert_str_eq(hdr, "X-Frame-Options: DENY\r\n");
	cr_assert_eq(a.headers_len, strlen(hdr));
	cr_assert_eq(a.own_len, 0, "the add_headers are not the answer's own lines");

	/* The guard: no cookie, an empty one, a look-alike -> login; else on. */
	cr_assert(http_location_local(lm_loc(1), NULL, 0, hdr, sizeof(hdr), &a));
	cr_assert_eq(a.status, 307);
	cr_assert_str_eq(a.location, "/static/login/");
	const char *bad[] = { "ZM_AUTH_TOKEN=", "XZM_AUTH_TOKEN=1", "a=ZM_AUTH_TOKEN=1", "zm_auth_token=1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert(http_location_local(lm_loc(1), bad[i], strlen(bad[i]), hdr, sizeof(hdr), &a));
		cr_assert_str_eq(a.location, "/static/login/", "%s", bad[i]);
	}
	cr_assert(http_location_local(lm_loc(1), ck, strlen(ck), hdr, sizeof(hdr), &a));
	cr_assert_eq(a.status, 307);
	cr_assert_str_eq(a.location, "/carbonio/");
	cr_assert_eq(a.headers_len, 0);

	cr_assert(http_location_local(lm_loc(2), ck, strlen(ck), hdr, sizeof(hdr), &a));
	cr_assert_eq(a.status, 307);
	cr_assert_str_eq(a.location, "/static/login/");
	cr_assert_str_eq(hdr,
		"Set-Cookie: ZM_AUTH_TOKEN=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0;"
		" HttpOnly; Secure; SameSite=Strict\r\n"
		"Set-Cookie: JSESSIONID=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0;"
		" HttpOnly; Secure; SameSite=Strict\r\n");
	cr_assert_eq(a.own_len, a.headers_len);

	/* Upstream locations answer only through their guard. */
	cr_assert(http_location_local(lm_loc(3), "T=1", 3, hdr, sizeof(hdr), &a));
	cr_assert_eq(a.status, 307);
	cr_assert_str_eq(hdr, "Strict-Transport-Security: max-age=63072000\r\n");
	cr_assert(!http_location_local(lm_loc(3), ck, strlen(ck), hdr, sizeof(hdr), &a));
	cr_assert(!http_location_local(lm_loc(4), NULL, 0, hdr, sizeof(hdr), &a));
	cr_assert_eq(http_location_add_headers(lm_loc(3), hdr, sizeof(hdr)), 45);
	cr_assert_eq(http_location_add_headers(lm_loc(4), hdr, sizeof(hdr)), 0);
	cr_assert_eq(http_location_add_headers(lm_loc(3), hdr, 45), -1, "no room for the NUL");

	/* Too little room: a 500, never a cut header. */
	cr_assert(http_location_local(lm_loc(2), NULL, 0, hdr, 40, &a));
	cr_assert_eq(a.status, 500);
	cr_assert_eq(a.headers_len, 0);
	cr_assert_str_eq(hdr, "");
}

/* The largest answer the loader allows fits HTTP_LOCATION_HEADERS_MAX. */
Test(http_location, local_answer_bound)
{
	char text[16384], cookies[4096] = "", name[80];
	size_t n = 0;

	for (int i = 0; i < 32; i++) {
		snprintf(name, sizeof(name), "%02d%062d", i, 0);
		n += (size_t)snprintf(cookies + n, sizeof(cookies) - n, "%s\"%s\"", i ? ", " : "", name);
	}
	char big[1100];
	memset(big, 'v', 1000);
	big[1000] = '\0';
	snprintf(text, sizeof(text),
		 "{ match = \"/\"; logout = [ %s ]; redirect = \"/\";\n"
		 "  add_headers = [ \"A: %s\", \"B: %s\", \"C: %s\", \"D: %s\" ]; }",
		 cookies, big, big, big, big);
	lm_load(text);
	static char hdr[HTTP_LOCATION_HEADERS_MAX];
	struct http_location_answer a;
	cr_assert(http_location_local(lm_loc(0), NULL, 0, hdr, sizeof(hdr), &a));
	cr_assert_eq(a.status, 302);
	cr_assert_gt(a.headers_len, 9000);
}
