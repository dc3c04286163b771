/*
 * Tests for protocols/http_route.c: the routing order (REST/DAV path, Basic
 * credentials, ZM_AUTH_TOKEN, client-IP hash), the hash, and the encoded
 * CR/LF check.
 */
#include <stdio.h>
#include <stdlib.h>

#include "http_t.h"

static struct http_t rt_t;

/* Route the request `text`; the name or id lands in out. */
static enum http_route_kind rt_pick(const char *text, char *out, size_t cap)
{
	http_t_parse(&rt_t, HTTP_REQUEST, text);
	return http_route_pick(rt_t.buf, &rt_t.h, out, cap);
}

/* "Cookie: ZM_AUTH_TOKEN=<token for id>" header line. */
static void rt_cookie(char *out, size_t cap, const char *id)
{
	char fields[128];
	int fl = snprintf(fields, sizeof(fields), "id=%zu:%s;exp=13:1700000000000;", strlen(id), id);
	int n = snprintf(out, cap, "Cookie: a=b; ZM_AUTH_TOKEN=0_abcdef_");
	for (int i = 0; i < fl; i++)
		n += snprintf(out + n, cap - (size_t)n, "%02x", (unsigned char)fields[i]);
	snprintf(out + n, cap - (size_t)n, "; c=d\r\n");
}

Test(http_route, rest_paths_name_the_user)
{
	char u[256];

	cr_assert_eq(rt_pick("GET /home/alice@example.com/Inbox HTTP/1.1\r\nHost: h\r\n\r\n", u, sizeof(u)),
		     HTTP_ROUTE_USER);
	cr_assert_str_eq(u, "alice@example.com");
	cr_assert_eq(rt_pick("GET /service/home/~bob/Calendar?fmt=ics HTTP/1.1\r\nHost: h\r\n\r\n", u, sizeof(u)),
		     HTTP_ROUTE_USER);
	cr_assert_str_eq(u, "bob");
	cr_assert_eq(rt_pick("GET /home/carol%40example.com HTTP/1.1\r\nHost: h\r\n\r\n", u, sizeof(u)),
		     HTTP_ROUTE_USER);
	cr_assert_str_eq(u, "carol@example.com");
	cr_assert_eq(rt_pick("PROPFIND /dav/dave@example.com/Calendar/ HTTP/1.1\r\nHost: h\r\n\r\n", u, sizeof(u)),
		     HTTP_ROUTE_USER);
	cr_assert_str_eq(u, "dave@example.com");
}

Test(http_route, tilde_falls_through_to_basic_then_token)
{
	char u[256], req[2048], cookie[1024];

	/* "~" alone: the authenticated user, so no name from the path. */
	cr_assert_eq(rt_pick("GET /home/~/inbox HTTP/1.1\r\nHost: h\r\n\r\n", u, sizeof(u)), HTTP_ROUTE_HASH);
	cr_assert_eq(rt_pick("GET /service/home/~/ HTTP/1.1\r\nHost: h\r\n\r\n", u, sizeof(u)), HTTP_ROUTE_HASH);
	/* Basic: alice:secret, before the cookie. */
	rt_cookie(cookie, sizeof(cookie), "6a1f0c3e-6a2b-4c1d-9e8f-0a1b2c3d4e5f");
	snprintf(req, sizeof(req), "GET /home/~/inbox HTTP/1.1\r\nHost: h\r\n%s"
		 "Authorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n", cookie);
	cr_assert_eq(rt_pick(req, u, sizeof(u)), HTTP_ROUTE_USER);
	cr_assert_str_eq(u, "alice");
	snprintf(req, sizeof(req), "GET /home/~/inbox HTTP/1.1\r\nHost: h\r\n%s\r\n", cookie);
	cr_assert_eq(rt_pick(req, u, sizeof(u)), HTTP_ROUTE_ID);
	cr_assert_str_eq(u, "6a1f0c3e-6a2b-4c1d-9e8f-0a1b2c3d4e5f");
	/* A REST user beats both. */
	snprintf(req, sizeof(req), "GET /home/zed/x HTTP/1.1\r\nHost: h\r\n%s"
		 "Authorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n", cookie);
	cr_assert_eq(rt_pick(req, u, sizeof(u)), HTTP_ROUTE_USER);
	cr_assert_str_eq(u, "zed");
}

Test(http_route, basic_domain_backslash_user)
{
	char u[256];

	/* EXAMPLE.COM\bob:pw (ActiveSync) -> bob@EXAMPLE.COM */
	cr_assert_eq(rt_pick("POST /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: h\r\n"
			     "Authorization: Basic RVhBTVBMRS5DT01cYm9iOnB3\r\nContent-Length: 0\r\n\r\n", u, sizeof(u)),
		     HTTP_ROUTE_USER);
	cr_assert_str_eq(u, "bob@EXAMPLE.COM");
}

Test(http_route, unusable_names_are_ignored)
{
	char u[256];

	/* Bad base64, no colon, a space in the name, Bearer: no user. */
	cr_assert_eq(rt_pick("GET / HTTP/1.1\r\nAuthorization: Basic !!!!\r\n\r\n", u, sizeof(u)), HTTP_ROUTE_HASH);
	cr_assert_eq(rt_pick("GET / HTTP/1.1\r\nAuthorization: Basic YWxpY2U=\r\n\r\n", u, sizeof(u)), HTTP_ROUTE_HASH);
	cr_assert_eq(rt_pick("GET / HTTP/1.1\r\nAuthorization: Basic YSBiOmM=\r\n\r\n", u, sizeof(u)), HTTP_ROUTE_HASH);
	cr_assert_eq(rt_pick("GET / HTTP/1.1\r\nAuthorization: Bearer abc\r\n\r\n", u, sizeof(u)), HTTP_ROUTE_HASH);
	cr_assert_str_eq(u, "");
	/* Encoded control characters or spaces in a REST user. */
	cr_assert_eq(rt_pick("GET /home/a%0ab/x HTTP/1.1\r\n\r\n", u, sizeof(u)), HTTP_ROUTE_HASH);
	cr_assert_eq(rt_pick("GET /home/a%20b/x HTTP/1.1\r\n\r\n", u, sizeof(u)), HTTP_ROUTE_HASH);
	cr_assert_eq(rt_pick("GET /home/a%2 HTTP/1.1\r\n\r\n", u, sizeof(u)), HTTP_ROUTE_HASH);
	/* A name longer than the room given. */
	cr_assert_eq(rt_pick("GET /home/abcdefghij/x HTTP/1.1\r\n\r\n", u, 8), HTTP_ROUTE_HASH);
	/* A broken token cookie. */
	cr_assert_eq(rt_pick("GET / HTTP/1.1\r\nCookie: ZM_AUTH_TOKEN=garbage\r\n\r\n", u, sizeof(u)), HTTP_ROUTE_HASH);
	/* Plain paths. */
	cr_assert_eq(rt_pick("GET /homes/alice/ HTTP/1.1\r\n\r\n", u, sizeof(u)), HTTP_ROUTE_HASH);
	cr_assert_eq(rt_pick("GET /home/ HTTP/1.1\r\n\r\n", u, sizeof(u)), HTTP_ROUTE_HASH);
	cr_assert_eq(rt_pick("GET /?x=/home/alice/ HTTP/1.1\r\n\r\n", u, sizeof(u)), HTTP_ROUTE_HASH);
}

Test(http_route, ip_hash_is_stable_and_spread)
{
	cr_assert_eq(http_ip_hash("10.0.0.1", 3), http_ip_hash("10.0.0.1", 3));
	int seen[4] = { 0 };
	char ip[32];
	for (int i = 0; i < 200; i++) {
		snprintf(ip, sizeof(ip), "192.0.2.%d", i);
		unsigned k = http_ip_hash(ip, 4);
		cr_assert_lt(k, 4);
		seen[k]++;
	}
	for (int k = 0; k < 4; k++)
		cr_assert_gt(seen[k], 20, "bucket %d got %d of 200", k, seen[k]);
	cr_assert_eq(http_ip_hash("x", 1), 0);
}

Test(http_route, encoded_cr_lf_is_found)
{
	const char *bad[] = { "/a%0d", "/a%0Ab", "/%0a", "/x?y=%0D" };
	const char *ok[] = { "/a%20b", "/a%0", "/a%0bz", "/a0d", "/%00" };
	struct http_span sp;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sp = (struct http_span){ 0, (uint32_t)strlen(bad[i]) };
		cr_expect(http_uri_has_encoded_crlf((const uint8_t *)bad[i], sp), "%s", bad[i]);
	}
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		sp = (struct http_span){ 0, (uint32_t)strlen(ok[i]) };
		cr_expect(!http_uri_has_encoded_crlf((const uint8_t *)ok[i], sp), "%s", ok[i]);
	}
}

Test(http_route, absolute_form_becomes_origin_form)
{
	struct http_span u, a;
	const char *t = "https://mail.example.com:443/home/bob/inbox?x=1";
	struct http_span in = { 0, (uint32_t)strlen(t) };

	cr_assert(http_target_origin((const uint8_t *)t, in, &u, &a));
	cr_assert_eq(a.len, strlen("mail.example.com:443"));
	cr_assert(strncmp(t + a.off, "mail.example.com:443", a.len) == 0);
	cr_assert(strncmp(t + u.off, "/home/bob/inbox?x=1", u.len) == 0 && u.len == 19);
	const char *same[] = { "/a?b", "*" };
	for (size_t i = 0; i < 2; i++) {
		in = (struct http_span){ 0, (uint32_t)strlen(same[i]) };
		cr_assert(http_target_origin((const uint8_t *)same[i], in, &u, &a));
		cr_assert(u.off == 0 && u.len == in.len && a.len == 0);
	}
	const char *bad[] = { "ftp://h/x", "http://", "http:///x", "http://h", "http://h?x",
			      "http://u@h/x", "h/x", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		in = (struct http_span){ 0, (uint32_t)strlen(bad[i]) };
		cr_expect(!http_target_origin((const uint8_t *)bad[i], in, &u, &a), "%s", bad[i]);
	}
}

/* An admin group routes by ZM_ADMIN_AUTH_TOKEN only (zmauth_admin). */
Test(http_route, admin_routes_by_the_admin_cookie_only)
{
	char u[256], ck[1024], req[2048];
	const char *id = "0f7c5e2a-1b3c-4d5e-8f90-a1b2c3d4e5f6";

	rt_cookie(ck, sizeof(ck), id);
	/* A user's ZM_AUTH_TOKEN, a REST user, Basic: nothing for the admin. */
	snprintf(req, sizeof(req), "GET /home/alice@example.com/ HTTP/1.1\r\n"
		 "Authorization: Basic YWxpY2U6cHc=\r\n%s\r\n", ck);
	http_t_parse(&rt_t, HTTP_REQUEST, req);
	cr_assert_eq(http_route_pick_admin(rt_t.buf, &rt_t.h, u, sizeof(u)), HTTP_ROUTE_HASH);
	cr_assert_eq(http_route_pick(rt_t.buf, &rt_t.h, u, sizeof(u)), HTTP_ROUTE_USER);
	/* The same token under the admin cookie's name: its id. */
	char *at = strstr(ck, "ZM_AUTH_TOKEN");
	cr_assert_not_null(at);
	char admin_ck[1100];
	snprintf(admin_ck, sizeof(admin_ck), "%.*sZM_ADMIN_AUTH_TOKEN%s", (int)(at - ck), ck,
		 at + strlen("ZM_AUTH_TOKEN"));
	snprintf(req, sizeof(req), "GET /service/admin/soap HTTP/1.1\r\n%s\r\n", admin_ck);
	http_t_parse(&rt_t, HTTP_REQUEST, req);
	cr_assert_eq(http_route_pick_admin(rt_t.buf, &rt_t.h, u, sizeof(u)), HTTP_ROUTE_ID);
	cr_assert_str_eq(u, id);
	/* ...which a user's routing does not read. */
	cr_assert_eq(http_route_pick(rt_t.buf, &rt_t.h, u, sizeof(u)), HTTP_ROUTE_HASH);
	cr_assert_eq(http_route_pick_admin(rt_t.buf, &rt_t.h, u, 0), HTTP_ROUTE_HASH);
}
