/*
 * Tests for route/route_static.c: login name validity, static route
 * matching, and turning a lookup answer into a route.
 */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "conf.h"
#include "lookup.h"
#include "route.h"

Test(route_static, source_names)
{
	cr_expect_str_eq(route_source_names[ROUTE_SRC_NONE], "-");
	cr_expect_str_eq(route_source_names[ROUTE_SRC_STATIC], "static");
	cr_expect_str_eq(route_source_names[ROUTE_SRC_LOOKUP], "lookup");
}

Test(route_static, name_valid)
{
	cr_expect(route_name_valid("alice@example.com", 17, 511));
	cr_expect(route_name_valid("a", 1, 1));
	cr_expect(route_name_valid("j\xc3\xbcrgen@example.de", 18, 511), "UTF-8 is fine");
	cr_expect(route_name_valid("!#$%&'*+-/=?^_`{|}~", 19, 511));

	cr_expect_not(route_name_valid("", 0, 511));
	cr_expect_not(route_name_valid(NULL, 0, 511));
	cr_expect_not(route_name_valid("ab", 2, 1), "too long");
	cr_expect(route_name_valid("ab", 2, 2));
	cr_expect_not(route_name_valid("a b", 3, 511));
	cr_expect_not(route_name_valid("a\tb", 3, 511));
	cr_expect_not(route_name_valid("a\rb", 3, 511));
	cr_expect_not(route_name_valid("a\nb", 3, 511));
	cr_expect_not(route_name_valid("a\0b", 3, 511), "NUL inside");
	cr_expect_not(route_name_valid("a\x7f", 2, 511));
	cr_expect_not(route_name_valid("\x01", 1, 511));
	cr_expect_not(route_name_valid("get x\r\nflush_all", 16, 511), "memcached injection");

	char longname[600];
	memset(longname, 'a', sizeof(longname));
	cr_expect(route_name_valid(longname, ROUTE_MAX_USER - 1, ROUTE_MAX_USER - 1));
	cr_expect_not(route_name_valid(longname, ROUTE_MAX_USER, ROUTE_MAX_USER - 1));
}

/* A hand-built snapshot; static storage because struct conf is large. */
static struct conf rs_t_conf;

static void rs_t_set(struct conf_route *routes, int n)
{
	memset(&rs_t_conf, 0, sizeof(rs_t_conf));
	rs_t_conf.routes = routes;
	rs_t_conf.nroutes = n;
}

Test(route_static, match_order)
{
	/* Listed in the "wrong" order on purpose: precedence is not file order. */
	struct conf_route routes[] = {
		{ .match = (char *)"*", .host = (char *)"catchall", .port = 1 },
		{ .match = (char *)"@example.com", .host = (char *)"domain", .port = 2 },
		{ .match = (char *)"bob@example.com", .host = (char *)"exact", .port = 3,
		  .user = (char *)"robert@example.com" },
		{ .match = (char *)"carol", .host = (char *)"bare", .port = 4 },
		{ .match = (char *)"@Sub.Example.COM", .host = (char *)"sub", .port = 5 },
	};
	rs_t_set(routes, 5);
	const struct conf_route *r;

	r = route_static_match(&rs_t_conf, "bob@example.com");
	cr_assert_not_null(r);
	cr_expect_str_eq(r->host, "exact");
	cr_expect_str_eq(r->user, "robert@example.com");

	r = route_static_match(&rs_t_conf, "BOB@Example.Com");
	cr_assert_not_null(r);
	cr_expect_str_eq(r->host, "exact", "case-insensitive");

	r = route_static_match(&rs_t_conf, "alice@example.com");
	cr_assert_not_null(r);
	cr_expect_str_eq(r->host, "domain");

	r = route_static_match(&rs_t_conf, "alice@EXAMPLE.com");
	cr_assert_not_null(r);
	cr_expect_str_eq(r->host, "domain");

	r = route_static_match(&rs_t_conf, "dave@sub.example.com");
	cr_assert_not_null(r);
	cr_expect_str_eq(r->host, "sub");

	/* The domain is after the last '@'. */
	r = route_static_match(&rs_t_conf, "x@other.org@example.com");
	cr_assert_not_null(r);
	cr_expect_str_eq(r->host, "domain");
	r = route_static_match(&rs_t_conf, "x@example.com@other.org");
	cr_assert_not_null(r);
	cr_expect_str_eq(r->host, "catchall");

	/* No domain-suffix matching: only the whole domain. */
	r = route_static_match(&rs_t_conf, "eve@notexample.com");
	cr_assert_not_null(r);
	cr_expect_str_eq(r->host, "catchall");

	r = route_static_match(&rs_t_conf, "carol");
	cr_assert_not_null(r);
	cr_expect_str_eq(r->host, "bare");

	r = route_static_match(&rs_t_conf, "carol@example.com");
	cr_assert_not_null(r);
	cr_expect_str_eq(r->host, "domain");

	r = route_static_match(&rs_t_conf, "frank");
	cr_assert_not_null(r);
	cr_expect_str_eq(r->host, "catchall");

	r = route_static_match(&rs_t_conf, "frank@");
	cr_assert_not_null(r);
	cr_expect_str_eq(r->host, "catchall");

	/* "*" and "@domain" entries are not exact matches for odd logins. */
	r = route_static_match(&rs_t_conf, "*");
	cr_assert_not_null(r);
	cr_expect_str_eq(r->host, "catchall");
	r = route_static_match(&rs_t_conf, "@example.com");
	cr_assert_not_null(r);
	cr_expect_str_eq(r->host, "domain");
}

Test(route_static, no_match)
{
	struct conf_route routes[] = {
		{ .match = (char *)"@example.com", .host = (char *)"domain", .port = 2 },
		{ .match = (char *)"bob@example.org", .host = (char *)"exact", .port = 3 },
	};
	rs_t_set(routes, 2);

	cr_expect_null(route_static_match(&rs_t_conf, "alice@example.org"));
	cr_expect_null(route_static_match(&rs_t_conf, "bob"));
	cr_expect_null(route_static_match(&rs_t_conf, ""));
	cr_expect_null(route_static_match(&rs_t_conf, NULL));
	cr_expect_null(route_static_match(NULL, "bob@example.org"));

	rs_t_set(NULL, 0);
	cr_expect_null(route_static_match(&rs_t_conf, "bob@example.org"));
}

Test(route_static, first_of_equals_wins)
{
	struct conf_route routes[] = {
		{ .match = (char *)"@example.com", .host = (char *)"one", .port = 1 },
		{ .match = (char *)"@EXAMPLE.COM", .host = (char *)"two", .port = 2 },
	};
	rs_t_set(routes, 2);

	const struct conf_route *r = route_static_match(&rs_t_conf, "a@example.com");
	cr_assert_not_null(r);
	cr_expect_str_eq(r->host, "one");
}

/* --- route_from_lookup ------------------------------------------------ */

static struct lookup_response rs_t_ok(void)
{
	struct lookup_response r;

	memset(&r, 0, sizeof(r));
	r.http_status = 200;
	r.has_status = true;
	strcpy(r.status, "OK");
	r.has_server = true;
	strcpy(r.server, "10.0.0.21");
	r.port = 7143;
	r.wait = -1;
	return r;
}

Test(route_static, lookup_ok)
{
	struct lookup_response r = rs_t_ok();
	struct route out;

	r.has_user = true;
	strcpy(r.user, "john@example.com");
	r.cache_alias = true;
	route_from_lookup(&r, "john", &out);
	cr_expect_eq(out.result, ROUTE_OK);
	cr_expect_eq(out.source, ROUTE_SRC_LOOKUP);
	cr_expect_str_eq(out.host, "10.0.0.21");
	cr_expect_eq(out.port, 7143);
	cr_expect_str_eq(out.user, "john@example.com");
	cr_expect(out.cache_alias);
	cr_expect_eq(out.wait_s, 0);
	cr_expect_str_eq(out.reason, "lookup: OK");
}

Test(route_static, lookup_ok_without_user_keeps_login)
{
	struct lookup_response r = rs_t_ok();
	struct route out;

	strcpy(r.server, "2001:db8::21");
	r.port = 65535;
	route_from_lookup(&r, "John@Example.com", &out);
	cr_expect_eq(out.result, ROUTE_OK);
	cr_expect_str_eq(out.host, "2001:db8::21");
	cr_expect_eq(out.port, 65535);
	cr_expect_str_eq(out.user, "John@Example.com");
	cr_expect_not(out.cache_alias);

	/* Hostnames are fine (Carbonio does not resolve them). */
	strcpy(r.server, "mbox1.example.com");
	route_from_lookup(&r, "john", &out);
	cr_expect_eq(out.result, ROUTE_OK);
	cr_expect_str_eq(out.host, "mbox1.example.com");
}

Test(route_static, lookup_ok_without_route_is_tempfail)
{
	struct lookup_response r;
	struct route out;

	r = rs_t_ok();
	r.has_server = false;
	r.server[0] = '\0';
	route_from_lookup(&r, "john", &out);
	cr_expect_eq(out.result, ROUTE_TEMPFAIL);
	cr_expect_eq(out.source, ROUTE_SRC_LOOKUP);
	cr_expect_str_eq(out.reason, "lookup: OK without server/port");

	r = rs_t_ok();
	r.server[0] = '\0';
	route_from_lookup(&r, "john", &out);
	cr_expect_eq(out.result, ROUTE_TEMPFAIL);
	cr_expect_str_eq(out.reason, "lookup: OK without server/port");

	r = rs_t_ok();
	r.port = -1;
	route_from_lookup(&r, "john", &out);
	cr_expect_eq(out.result, ROUTE_TEMPFAIL);
	cr_expect_str_eq(out.reason, "lookup: OK without server/port");

	r = rs_t_ok();
	r.port = 0;
	route_from_lookup(&r, "john", &out);
	cr_expect_eq(out.result, ROUTE_TEMPFAIL);

	r = rs_t_ok();
	r.port = 65536;
	route_from_lookup(&r, "john", &out);
	cr_expect_eq(out.result, ROUTE_TEMPFAIL);

	static const char *const bad_hosts[] = { "10.0.0.1 x", "a\tb", "a\r\n", "\x7f" };
	for (size_t i = 0; i < sizeof(bad_hosts) / sizeof(bad_hosts[0]); i++) {
		r = rs_t_ok();
		strcpy(r.server, bad_hosts[i]);
		route_from_lookup(&r, "john", &out);
		cr_expect_eq(out.result, ROUTE_TEMPFAIL, "%s", bad_hosts[i]);
		cr_expect_str_eq(out.reason, "lookup: invalid Auth-Server");
		cr_expect_str_eq(out.host, "");
	}

	r = rs_t_ok();
	memset(r.server, 'h', ROUTE_MAX_HOST);
	r.server[ROUTE_MAX_HOST] = '\0';
	route_from_lookup(&r, "john", &out);
	cr_expect_eq(out.result, ROUTE_TEMPFAIL, "host too long for struct route");
	r.server[ROUTE_MAX_HOST - 1] = '\0';
	route_from_lookup(&r, "john", &out);
	cr_expect_eq(out.result, ROUTE_OK);
	cr_expect_eq(strlen(out.host), ROUTE_MAX_HOST - 1);
}

Test(route_static, lookup_invalid_user)
{
	struct lookup_response r = rs_t_ok();
	struct route out;

	r.has_user = true;
	strcpy(r.user, "john doe@example.com");
	route_from_lookup(&r, "john", &out);
	cr_expect_eq(out.result, ROUTE_TEMPFAIL);
	cr_expect_str_eq(out.reason, "lookup: invalid Auth-User");
	cr_expect_str_eq(out.user, "");

	/* The longest name the parser keeps fits a route exactly. */
	r.has_user = true;
	memset(r.user, 'u', sizeof(r.user));
	r.user[sizeof(r.user) - 1] = '\0';
	cr_assert_leq(sizeof(r.user), ROUTE_MAX_USER);
	route_from_lookup(&r, "john", &out);
	cr_expect_eq(out.result, ROUTE_OK);
	cr_expect_eq(strlen(out.user), sizeof(r.user) - 1);

	/* So does the longest login a client may use. */
	r = rs_t_ok();
	char login[ROUTE_MAX_USER + 1];
	memset(login, 'l', sizeof(login));
	login[ROUTE_MAX_USER - 1] = '\0';
	route_from_lookup(&r, login, &out);
	cr_expect_eq(out.result, ROUTE_OK);
	login[ROUTE_MAX_USER - 1] = 'l';
	login[ROUTE_MAX_USER] = '\0';
	route_from_lookup(&r, login, &out);
	cr_expect_eq(out.result, ROUTE_TEMPFAIL, "too long for a route");
	cr_expect_str_eq(out.reason, "lookup: invalid login");

	/* No Auth-User and a login that would not be safe either. */
	r = rs_t_ok();
	route_from_lookup(&r, "bad login", &out);
	cr_expect_eq(out.result, ROUTE_TEMPFAIL);
	cr_expect_str_eq(out.reason, "lookup: invalid login");
	route_from_lookup(&r, NULL, &out);
	cr_expect_eq(out.result, ROUTE_TEMPFAIL);
}

Test(route_static, lookup_http_error)
{
	struct lookup_response r = rs_t_ok();
	struct route out;

	r.http_status = 500;
	route_from_lookup(&r, "john", &out);
	cr_expect_eq(out.result, ROUTE_TEMPFAIL);
	cr_expect_eq(out.source, ROUTE_SRC_LOOKUP);
	cr_expect_str_eq(out.reason, "lookup: HTTP status 500");

	/* Even an error text under a non-200 status is not a denial. */
	strcpy(r.status, "user not found:john");
	r.http_status = 404;
	route_from_lookup(&r, "john", &out);
	cr_expect_eq(out.result, ROUTE_TEMPFAIL);
	cr_expect_str_eq(out.reason, "lookup: HTTP status 404");

	r = rs_t_ok();
	r.has_status = false;
	r.status[0] = '\0';
	route_from_lookup(&r, "john", &out);
	cr_expect_eq(out.result, ROUTE_TEMPFAIL);
	cr_expect_str_eq(out.reason, "lookup: no Auth-Status");
}

Test(route_static, lookup_denied)
{
	struct lookup_response r;
	struct route out;

	memset(&r, 0, sizeof(r));
	r.http_status = 200;
	r.has_status = true;
	strcpy(r.status, "user not found:bob@x");
	r.port = -1;
	r.wait = 10;
	route_from_lookup(&r, "bob@x", &out);
	cr_expect_eq(out.result, ROUTE_DENIED);
	cr_expect_eq(out.source, ROUTE_SRC_LOOKUP);
	cr_expect_str_eq(out.reason, "lookup: user not found:bob@x");
	cr_expect_eq(out.wait_s, 10);
	cr_expect_str_eq(out.host, "");
	cr_expect_str_eq(out.user, "");

	r.wait = -1;
	route_from_lookup(&r, "bob@x", &out);
	cr_expect_eq(out.wait_s, 0);

	/* A route in an error answer is ignored. */
	r.has_server = true;
	strcpy(r.server, "10.0.0.1");
	r.port = 7143;
	route_from_lookup(&r, "bob@x", &out);
	cr_expect_eq(out.result, ROUTE_DENIED);
	cr_expect_str_eq(out.host, "");

	/* Status words are exact: "ok" is not "OK". */
	strcpy(r.status, "ok");
	route_from_lookup(&r, "bob@x", &out);
	cr_expect_eq(out.result, ROUTE_DENIED);
	cr_expect_str_eq(out.reason, "lookup: ok");

	strcpy(r.status, "");
	route_from_lookup(&r, "bob@x", &out);
	cr_expect_eq(out.result, ROUTE_DENIED);
	cr_expect_str_eq(out.reason, "lookup: ");
}

Test(route_static, lookup_reason_sanitized_and_truncated)
{
	struct lookup_response r;
	struct route out;

	memset(&r, 0, sizeof(r));
	r.http_status = 200;
	r.has_status = true;
	r.wait = -1;
	strcpy(r.status, "bad\x01user\x7f\tname\xc3\xa9");
	route_from_lookup(&r, "x", &out);
	cr_expect_eq(out.result, ROUTE_DENIED);
	cr_expect_str_eq(out.reason, "lookup: bad?user??name\xc3\xa9");

	memset(r.status, 'e', LOOKUP_MAX_VALUE - 1);
	r.status[LOOKUP_MAX_VALUE - 1] = '\0';
	route_from_lookup(&r, "x", &out);
	cr_expect_eq(strlen(out.reason), sizeof(out.reason) - 1);
	cr_expect_eq(strncmp(out.reason, "lookup: eee", 11), 0);

	/* A cut never leaves half a UTF-8 character behind. */
	size_t room = sizeof(out.reason) - 1 - strlen("lookup: ");
	for (size_t shift = 0; shift < 4; shift++) {
		memset(r.status, 'e', sizeof(r.status));
		size_t i = room - 3 + shift - 1;
		memcpy(r.status + i, "\xf0\x9f\x98\x80", 4); /* U+1F600, 4 bytes */
		r.status[i + 4] = '\0';
		route_from_lookup(&r, "x", &out);
		size_t len = strlen(out.reason);
		cr_expect_leq(len, sizeof(out.reason) - 1);
		if (i + 4 <= room)
			cr_expect_eq(len, strlen("lookup: ") + i + 4, "shift %zu", shift);
		else
			cr_expect_eq(len, strlen("lookup: ") + i, "shift %zu: cut before the emoji", shift);
	}
}
