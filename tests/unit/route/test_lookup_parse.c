/*
 * Tests for route/lookup_parse.c: the exact request bytes, and the response
 * parser. Every response vector runs whole, one byte at a time and split at
 * every offset, and all runs must agree.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "lookup.h"

/* --- request ---------------------------------------------------------- */

static const struct lookup_query lp_t_query = {
	.method = "username",
	.user = "john",
	.password = "secret",
	.protocol = "imapssl",
	.attempt = 1,
	.client_ip = "203.0.113.7",
	.proxy_ip = "192.0.2.10",
};

static const char lp_t_request[] =
	"GET /service/extension/nginx-lookup HTTP/1.0\r\n"
	"Host: 10.0.0.5\r\n"
	"Auth-Method: username\r\n"
	"Auth-User: john\r\n"
	"Auth-Pass: _password_\r\n"
	"Auth-Protocol: imapssl\r\n"
	"Auth-Login-Attempt: 1\r\n"
	"X-Proxy-IP: 192.0.2.10\r\n"
	"Client-IP: 203.0.113.7\r\n"
	"\r\n";

Test(lookup_parse, request_exact)
{
	char out[1024];
	int n = lookup_build_request(out, sizeof(out), "10.0.0.5", "/service/extension/nginx-lookup",
				     &lp_t_query, false);

	cr_assert_eq(n, (int)strlen(lp_t_request));
	cr_expect_eq(memcmp(out, lp_t_request, (size_t)n), 0, "%s", out);
	cr_expect_eq(out[n], '\0');
}

Test(lookup_parse, request_password_only_when_asked)
{
	char out[1024];
	struct lookup_query q = lp_t_query;

	int n = lookup_build_request(out, sizeof(out), "h", "/p", &q, true);
	cr_assert_gt(n, 0);
	cr_expect_not_null(strstr(out, "\r\nAuth-Pass: secret\r\n"));

	q.password = "p@ss word%\x01\xff";
	n = lookup_build_request(out, sizeof(out), "h", "/p", &q, true);
	cr_assert_gt(n, 0);
	cr_expect_not_null(strstr(out, "\r\nAuth-Pass: p@ss%20word%25%01%FF\r\n"), "%s", out);

	/* Asked to send it, but there is none: the placeholder. */
	q.password = NULL;
	n = lookup_build_request(out, sizeof(out), "h", "/p", &q, true);
	cr_assert_gt(n, 0);
	cr_expect_not_null(strstr(out, "\r\nAuth-Pass: _password_\r\n"));
}

Test(lookup_parse, request_escapes_user)
{
	char out[1024];
	struct lookup_query q = lp_t_query;

	q.user = "a b%c\t\x01\x7f\xc3\xa9~@x.y";
	q.method = "zimbraId";
	q.protocol = "pop3";
	q.attempt = 0;
	int n = lookup_build_request(out, sizeof(out), "[::1]", "/x?y=1", &q, false);
	const char *want =
		"GET /x?y=1 HTTP/1.0\r\n"
		"Host: [::1]\r\n"
		"Auth-Method: zimbraId\r\n"
		"Auth-User: a%20b%25c%09%01%7F%C3%A9~@x.y\r\n"
		"Auth-Pass: _password_\r\n"
		"Auth-Protocol: pop3\r\n"
		"Auth-Login-Attempt: 0\r\n"
		"X-Proxy-IP: 192.0.2.10\r\n"
		"Client-IP: 203.0.113.7\r\n"
		"\r\n";
	cr_assert_eq(n, (int)strlen(want));
	cr_expect_str_eq(out, want);
}

Test(lookup_parse, request_web_by_zimbra_id)
{
	char out[1024];
	struct lookup_query q = lp_t_query;

	q.method = "zimbraId";
	q.user = "6a1f0c3e-6a2b-4c1d-9e8f-0a1b2c3d4e5f";
	q.protocol = "httpssl";
	q.attempt = 0;
	q.host = "mail.example.com";
	int n = lookup_build_request(out, sizeof(out), "10.0.0.5", "/l", &q, false);
	const char *want =
		"GET /l HTTP/1.0\r\n"
		"Host: 10.0.0.5\r\n"
		"Auth-Method: zimbraId\r\n"
		"Auth-User: 6a1f0c3e-6a2b-4c1d-9e8f-0a1b2c3d4e5f\r\n"
		"Auth-Pass: _password_\r\n"
		"Auth-Protocol: httpssl\r\n"
		"Auth-Login-Attempt: 0\r\n"
		"X-Proxy-IP: 192.0.2.10\r\n"
		"Client-IP: 203.0.113.7\r\n"
		"X-Proxy-Host: mail.example.com\r\n"
		"\r\n";
	cr_assert_eq(n, (int)strlen(want));
	cr_expect_str_eq(out, want);
	/* A Host with a control character is never written into the request. */
	q.host = "a\r\nAuth-User: x";
	cr_assert_eq(lookup_build_request(out, sizeof(out), "10.0.0.5", "/l", &q, false), -1);
}

Test(lookup_parse, request_capacity)
{
	char out[1024];
	size_t len = strlen(lp_t_request);

	for (size_t cap = 0; cap <= len + 1; cap++) {
		memset(out, 'x', sizeof(out));
		int n = lookup_build_request(out, cap, "10.0.0.5", "/service/extension/nginx-lookup",
					     &lp_t_query, false);
		if (cap < len) {
			cr_expect_eq(n, -1, "cap %zu", cap);
			/* Nothing is written past the capacity, and what was
			 * written is wiped (it may hold a password). */
			cr_expect_eq(out[cap], 'x', "cap %zu", cap);
			for (size_t i = 0; i < cap; i++)
				cr_assert_eq(out[i], '\0', "cap %zu, byte %zu", cap, i);
		} else {
			cr_expect_eq(n, (int)len, "cap %zu", cap);
			cr_expect_eq(memcmp(out, lp_t_request, len), 0);
		}
	}
}

Test(lookup_parse, request_refuses_header_injection)
{
	char out[1024];
	struct lookup_query q = lp_t_query;

	cr_expect_eq(lookup_build_request(out, sizeof(out), "a\r\nX: y", "/p", &q, false), -1);
	cr_expect_eq(lookup_build_request(out, sizeof(out), "h", "/p q", &q, false), -1);
	cr_expect_eq(lookup_build_request(out, sizeof(out), "h", "/p\n", &q, false), -1);
	cr_expect_eq(lookup_build_request(out, sizeof(out), NULL, "/p", &q, false), -1);
	q.client_ip = "1.2.3.4\r\nAuth-Pass: x";
	cr_expect_eq(lookup_build_request(out, sizeof(out), "h", "/p", &q, false), -1);
	q = lp_t_query;
	q.protocol = "imap\n";
	cr_expect_eq(lookup_build_request(out, sizeof(out), "h", "/p", &q, false), -1);
	q = lp_t_query;
	q.method = NULL;
	cr_expect_eq(lookup_build_request(out, sizeof(out), "h", "/p", &q, false), -1);
	q = lp_t_query;
	q.user = NULL;
	cr_expect_eq(lookup_build_request(out, sizeof(out), "h", "/p", &q, false), -1);
}

/* --- response --------------------------------------------------------- */

/* Feed buf cut at cuts[], stopping at the first non-zero answer. */
static int lp_t_run(const char *buf, size_t len, const size_t *cuts, size_t ncuts, bool eof,
		    struct lookup_response *out)
{
	struct lookup_parser p;
	size_t off = 0;
	int rc = 0;

	lookup_parser_init(&p, out);
	for (size_t i = 0; i <= ncuts && rc == 0; i++) {
		size_t end = i < ncuts ? cuts[i] : len;
		rc = lookup_parser_feed(&p, (const uint8_t *)buf + off, end - off);
		off = end;
	}
	if (rc == 0 && eof)
		rc = lookup_parser_eof(&p);
	if (rc != 0) {
		/* The answer sticks: later bytes and EOF change nothing. */
		cr_expect_eq(lookup_parser_feed(&p, (const uint8_t *)"x", 1), rc);
		cr_expect_eq(lookup_parser_eof(&p), rc);
	}
	return rc;
}

/*
 * Parse buf whole, one byte at a time, and split in two at every offset:
 * the answers and the responses must all be identical. Returns the answer;
 * *out holds the response.
 */
static int lp_t_parse(const char *buf, size_t len, bool eof, struct lookup_response *out)
{
	struct lookup_response r;
	int rc = lp_t_run(buf, len, NULL, 0, eof, out);

	size_t *cuts = calloc(len + 1, sizeof(*cuts));
	cr_assert_not_null(cuts);
	for (size_t i = 0; i + 1 < len; i++)
		cuts[i] = i + 1;
	int rc2 = lp_t_run(buf, len, cuts, len > 0 ? len - 1 : 0, eof, &r);
	cr_assert_eq(rc2, rc, "byte at a time: %d, whole: %d", rc2, rc);
	cr_assert_eq(memcmp(&r, out, sizeof(r)), 0, "byte at a time: response differs");
	free(cuts);

	for (size_t at = 0; at <= len; at++) {
		rc2 = lp_t_run(buf, len, &at, 1, eof, &r);
		cr_assert_eq(rc2, rc, "split at %zu: %d, whole: %d", at, rc2, rc);
		cr_assert_eq(memcmp(&r, out, sizeof(r)), 0, "split at %zu: response differs", at);
	}
	return rc;
}

static int lp_t_parse_str(const char *s, bool eof, struct lookup_response *out)
{
	return lp_t_parse(s, strlen(s), eof, out);
}

Test(lookup_parse, reference_ok)
{
	struct lookup_response r;
	int rc = lp_t_parse_str("HTTP/1.1 200 OK\r\n"
				"Auth-Status: OK\r\n"
				"Auth-Server: 10.0.0.21\r\n"
				"Auth-Port: 7993\r\n"
				"Auth-Cache-Alias: TRUE\r\n"
				"Auth-User: john@example.com\r\n"
				"\r\n", false, &r);

	cr_assert_eq(rc, 1);
	cr_expect_eq(r.http_status, 200);
	cr_expect(r.has_status);
	cr_expect_str_eq(r.status, "OK");
	cr_expect(r.has_server);
	cr_expect_str_eq(r.server, "10.0.0.21");
	cr_expect_eq(r.port, 7993);
	cr_expect(r.has_user);
	cr_expect_str_eq(r.user, "john@example.com");
	cr_expect_eq(r.wait, -1);
	cr_expect(r.cache_alias);
}

Test(lookup_parse, reference_not_found)
{
	struct lookup_response r;
	int rc = lp_t_parse_str("HTTP/1.1 200 OK\r\n"
				"Auth-Status: user not found:john@example.com\r\n"
				"Auth-Wait: 10\r\n"
				"\r\n", false, &r);

	cr_assert_eq(rc, 1);
	cr_expect_eq(r.http_status, 200);
	cr_expect_str_eq(r.status, "user not found:john@example.com");
	cr_expect_eq(r.wait, 10);
	cr_expect_not(r.has_server);
	cr_expect_str_eq(r.server, "");
	cr_expect_eq(r.port, -1);
	cr_expect_not(r.has_user);
	cr_expect_str_eq(r.user, "");
	cr_expect_not(r.cache_alias);
}

Test(lookup_parse, ipv6_and_hostnames)
{
	struct lookup_response r;

	cr_assert_eq(lp_t_parse_str("HTTP/1.1 200 OK\r\nAuth-Status: OK\r\n"
				    "Auth-Server: [2001:db8::21]\r\nAuth-Port: 7143\r\n\r\n", false, &r), 1);
	cr_expect_str_eq(r.server, "2001:db8::21");
	cr_expect_eq(r.port, 7143);

	cr_assert_eq(lp_t_parse_str("HTTP/1.1 200 OK\r\nAuth-Status: OK\r\n"
				    "Auth-Server: 2001:db8::21\r\n\r\n", false, &r), 1);
	cr_expect_str_eq(r.server, "2001:db8::21");

	cr_assert_eq(lp_t_parse_str("HTTP/1.1 200 OK\r\nAuth-Status: OK\r\n"
				    "Auth-Server: mbox1.example.com\r\nAuth-Port: 7143\r\n\r\n", false, &r), 1);
	cr_expect_str_eq(r.server, "mbox1.example.com");

	/* Only a full pair of brackets is removed. */
	cr_assert_eq(lp_t_parse_str("HTTP/1.1 200 OK\r\nAuth-Server: [::1\r\n\r\n", false, &r), 1);
	cr_expect_str_eq(r.server, "[::1");
	cr_assert_eq(lp_t_parse_str("HTTP/1.1 200 OK\r\nAuth-Server: []\r\n\r\n", false, &r), 1);
	cr_expect(r.has_server);
	cr_expect_str_eq(r.server, "");
}

Test(lookup_parse, missing_headers)
{
	struct lookup_response r;

	cr_assert_eq(lp_t_parse_str("HTTP/1.1 200 OK\r\n\r\n", false, &r), 1);
	cr_expect_eq(r.http_status, 200);
	cr_expect_not(r.has_status);
	cr_expect_not(r.has_server);
	cr_expect_not(r.has_user);
	cr_expect_eq(r.port, -1);
	cr_expect_eq(r.wait, -1);
	cr_expect_not(r.cache_alias);

	cr_assert_eq(lp_t_parse_str("HTTP/1.1 200 OK\r\nAuth-Status: OK\r\n\r\n", false, &r), 1);
	cr_expect(r.has_status);
	cr_expect_not(r.has_server);

	/* Present but empty is not absent (route_from_lookup refuses it). */
	cr_assert_eq(lp_t_parse_str("HTTP/1.1 200 OK\r\nAuth-Status:\r\nAuth-Server: \t \r\n\r\n",
				    false, &r), 1);
	cr_expect(r.has_status);
	cr_expect_str_eq(r.status, "");
	cr_expect(r.has_server);
	cr_expect_str_eq(r.server, "");
}

Test(lookup_parse, ports)
{
	static const struct {
		const char *value;
		int port;
	} cases[] = {
		{ "1", 1 }, { "65535", 65535 }, { "07143", 7143 }, { "0", -1 }, { "65536", -1 },
		{ "99999999999999999999", -1 }, { "-1", -1 }, { "+7143", -1 }, { "7143x", -1 },
		{ "0x10", -1 }, { "71 43", -1 }, { "", -1 }, { "abc", -1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[256];
		struct lookup_response r;
		snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nAuth-Port: %s\r\n\r\n", cases[i].value);
		cr_assert_eq(lp_t_parse_str(buf, false, &r), 1, "%s", cases[i].value);
		cr_expect_eq(r.port, cases[i].port, "Auth-Port: %s", cases[i].value);
	}
}

Test(lookup_parse, waits)
{
	static const struct {
		const char *value;
		int wait;
	} cases[] = {
		{ "0", 0 }, { "10", 10 }, { "3600", 3600 }, { "3601", -1 }, { "-5", -1 },
		{ "1.5", -1 }, { "", -1 }, { "ten", -1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[256];
		struct lookup_response r;
		snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nAuth-Wait: %s\r\n\r\n", cases[i].value);
		cr_assert_eq(lp_t_parse_str(buf, false, &r), 1, "%s", cases[i].value);
		cr_expect_eq(r.wait, cases[i].wait, "Auth-Wait: %s", cases[i].value);
	}
}

Test(lookup_parse, header_names_any_case_values_trimmed)
{
	struct lookup_response r;
	int rc = lp_t_parse_str("HTTP/1.0 200 OK\r\n"
				"auth-status:OK\r\n"
				"AUTH-SERVER: \t 10.0.0.1 \t \r\n"
				"auth-port:   7143  \r\n"
				"aUtH-uSeR: bob@example.com\t\r\n"
				"AUTH-CACHE-ALIAS: true\r\n"
				"\r\n", false, &r);

	cr_assert_eq(rc, 1);
	cr_expect_str_eq(r.status, "OK");
	cr_expect_str_eq(r.server, "10.0.0.1");
	cr_expect_eq(r.port, 7143);
	cr_expect_str_eq(r.user, "bob@example.com");
	cr_expect(r.cache_alias);
}

Test(lookup_parse, cache_alias_values)
{
	static const struct {
		const char *value;
		bool alias;
	} cases[] = {
		{ "TRUE", true }, { "True", true }, { "FALSE", false }, { "yes", false },
		{ "1", false }, { "", false }, { "TRUEX", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[256];
		struct lookup_response r;
		snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nAuth-Cache-Alias: %s\r\n\r\n",
			 cases[i].value);
		cr_assert_eq(lp_t_parse_str(buf, false, &r), 1);
		cr_expect_eq(r.cache_alias, cases[i].alias, "Auth-Cache-Alias: %s", cases[i].value);
	}
}

Test(lookup_parse, auth_user_unescaped_once)
{
	static const struct {
		const char *value;
		bool has;
		const char *user;
	} cases[] = {
		{ "john%40example.com", true, "john@example.com" },
		{ "a%20b", true, "a b" },
		{ "a%2520b", true, "a%20b" },           /* Zimbra's double escape: once only */
		{ "caf%C3%a9", true, "caf\xc3\xa9" },
		{ "bad%zz", true, "bad%zz" },           /* invalid escapes stay */
		{ "x%", true, "x%" },
		{ "x%4", true, "x%4" },
		{ "%%41", true, "%A" },
		{ "nul%00x", false, "" },               /* unsafe after decoding */
		{ "cr%0d", false, "" },
		{ "lf%0A", false, "" },
		{ "del%7f", false, "" },
		{ "tab\there", false, "" },
		{ "", false, "" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[256];
		struct lookup_response r;
		snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nAuth-User: %s\r\n\r\n", cases[i].value);
		cr_assert_eq(lp_t_parse_str(buf, false, &r), 1, "%s", cases[i].value);
		cr_expect_eq(r.has_user, cases[i].has, "Auth-User: %s", cases[i].value);
		cr_expect_str_eq(r.user, cases[i].user, "Auth-User: %s", cases[i].value);
	}
}

Test(lookup_parse, other_statuses)
{
	struct lookup_response r;

	cr_assert_eq(lp_t_parse_str("HTTP/1.1 500 Internal Server Error\r\n"
				    "Content-Length: 0\r\n\r\n", false, &r), 1);
	cr_expect_eq(r.http_status, 500);
	cr_expect_not(r.has_status);

	cr_assert_eq(lp_t_parse_str("HTTP/1.0 404 Not Found\r\nAuth-Status: OK\r\n\r\n", false, &r), 1);
	cr_expect_eq(r.http_status, 404);
	cr_expect(r.has_status);

	cr_assert_eq(lp_t_parse_str("HTTP/1.1 200 \r\n\r\n", false, &r), 1);
	cr_expect_eq(r.http_status, 200);
}

Test(lookup_parse, unknown_headers_and_body_ignored)
{
	struct lookup_response r;
	int rc = lp_t_parse_str("HTTP/1.1 200 OK\r\n"
				"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
				"Auth-Status-But-Longer-Than-Thirty-Two-Bytes: nope\r\n"
				"Auth-Statu: nope\r\n"
				"Auth-Status: OK\r\n"
				"X-Empty:\r\n"
				"Content-Length: 5\r\n"
				"\r\n"
				"hello", false, &r);

	cr_assert_eq(rc, 1);
	cr_expect_str_eq(r.status, "OK");

	/* Whatever follows the head does not matter, even garbage. */
	cr_assert_eq(lp_t_parse_str("HTTP/1.1 200 OK\r\nAuth-Status: OK\r\n\r\n\x01\x02 not http", false, &r), 1);
}

Test(lookup_parse, malformed)
{
	struct lookup_response r;
	static const char *const bad[] = {
		"HELLO\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"HTTP/1.1 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
		"HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Status: OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nAuth-Server: a\r\nAuth-Server: b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nAuth-User: a\r\nauth-user: b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nAuth-Status: O\x01K\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(lp_t_parse_str(bad[i], false, &r), -1, "%s", bad[i]);
}

Test(lookup_parse, eof)
{
	struct lookup_response r;

	cr_expect_eq(lp_t_parse_str("HTTP/1.1 200 OK\r\nAuth-Status: OK\r\n", true, &r), -1);
	cr_expect_eq(lp_t_parse_str("HTTP/1.1 200 OK\r\nAuth-Status: OK\r\n", false, &r), 0);
	cr_expect_eq(lp_t_parse_str("HTTP/1.1 200 OK\r\nAuth-Status: OK\r\n\r\n", true, &r), 1);
	cr_expect_eq(lp_t_parse_str("", true, &r), -1);
	cr_expect_eq(lp_t_parse_str("", false, &r), 0);
}

static char *lp_t_value_response(size_t vlen, const char *header, const char *tail, size_t *len_out)
{
	size_t cap = vlen + 256;
	char *buf = malloc(cap);
	cr_assert_not_null(buf);
	int n = snprintf(buf, cap, "HTTP/1.1 200 OK\r\n%s: ", header);
	memset(buf + n, 'a', vlen);
	n += (int)vlen;
	n += snprintf(buf + n, cap - (size_t)n, "%s\r\n\r\n", tail);
	*len_out = (size_t)n;
	return buf;
}

Test(lookup_parse, value_length_limit)
{
	static const char *const kept[] = {
		"Auth-Status", "Auth-Server", "Auth-User", "Auth-Port", "Auth-Wait", "Auth-Cache-Alias",
	};
	struct lookup_response r;
	size_t len;

	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		char *buf = lp_t_value_response(LOOKUP_MAX_VALUE - 1, kept[i], "", &len);
		cr_expect_eq(lp_t_parse(buf, len, false, &r), 1, "%s", kept[i]);
		free(buf);

		/* Trailing blanks do not count: they are trimmed. */
		buf = lp_t_value_response(LOOKUP_MAX_VALUE - 1, kept[i], "   \t ", &len);
		cr_expect_eq(lp_t_parse(buf, len, false, &r), 1, "%s", kept[i]);
		free(buf);

		buf = lp_t_value_response(LOOKUP_MAX_VALUE, kept[i], "", &len);
		cr_expect_eq(lp_t_parse(buf, len, false, &r), -1, "%s", kept[i]);
		free(buf);

		buf = lp_t_value_response(LOOKUP_MAX_VALUE - 1, kept[i], "  b", &len);
		cr_expect_eq(lp_t_parse(buf, len, false, &r), -1, "%s", kept[i]);
		free(buf);
	}

	char *buf = lp_t_value_response(LOOKUP_MAX_VALUE - 1, "Auth-User", "", &len);
	cr_assert_eq(lp_t_parse(buf, len, false, &r), 1);
	cr_expect_eq(strlen(r.user), LOOKUP_MAX_VALUE - 1);
	free(buf);

	/* A header we ignore may be long, within the response limit. */
	buf = lp_t_value_response(4000, "X-Long", "", &len);
	cr_expect_eq(lp_t_parse(buf, len, false, &r), 1);
	free(buf);
}

Test(lookup_parse, response_size_limit)
{
	struct lookup_response r;
	size_t len;
	/* Head of exactly LOOKUP_MAX_RESPONSE bytes: accepted. */
	const size_t overhead = strlen("HTTP/1.1 200 OK\r\nX-Pad: \r\n\r\n");
	char *buf = lp_t_value_response(LOOKUP_MAX_RESPONSE - overhead, "X-Pad", "", &len);

	cr_assert_eq(len, LOOKUP_MAX_RESPONSE);
	cr_expect_eq(lp_t_parse(buf, len, false, &r), 1);
	free(buf);

	/* One byte more: refused. */
	buf = lp_t_value_response(LOOKUP_MAX_RESPONSE - overhead + 1, "X-Pad", "", &len);
	cr_assert_eq(len, LOOKUP_MAX_RESPONSE + 1);
	cr_expect_eq(lp_t_parse(buf, len, false, &r), -1);
	free(buf);

	/* A body beyond the limit does not matter once the head is complete. */
	char *big = malloc(LOOKUP_MAX_RESPONSE * 2);
	cr_assert_not_null(big);
	int n = snprintf(big, LOOKUP_MAX_RESPONSE * 2, "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\n\r\n");
	memset(big + n, 'z', LOOKUP_MAX_RESPONSE * 2 - (size_t)n);
	cr_expect_eq(lp_t_parse(big, LOOKUP_MAX_RESPONSE * 2, false, &r), 1);
	free(big);

	/* Endless headers that never complete. */
	big = malloc(LOOKUP_MAX_RESPONSE * 2);
	cr_assert_not_null(big);
	n = snprintf(big, LOOKUP_MAX_RESPONSE * 2, "HTTP/1.1 200 OK\r\n");
	for (size_t off = (size_t)n; off + 6 <= LOOKUP_MAX_RESPONSE * 2; off += 6)
		memcpy(big + off, "A: b\r\n", 6);
	cr_expect_eq(lp_t_parse(big, LOOKUP_MAX_RESPONSE * 2 - (LOOKUP_MAX_RESPONSE * 2 - (size_t)n) % 6,
				false, &r), -1);
	free(big);
}

Test(lookup_parse, request_keep_alive_when_asked)
{
	char out[1024];
	struct lookup_query q = lp_t_query;

	q.keep_alive = true;
	int n = lookup_build_request(out, sizeof(out), "h", "/p", &q, false);
	cr_assert_gt(n, 0);
	cr_expect_eq(strncmp(out, "GET /p HTTP/1.0\r\n", 17), 0, "%s", out);
	const char *tail = "\r\nClient-IP: 203.0.113.7\r\nConnection: keep-alive\r\n\r\n";
	cr_expect_str_eq(out + n - strlen(tail), tail);
}

/* Whether the connection of an answer fed in one piece may carry another. */
static bool lp_t_reusable(const char *answer)
{
	struct lookup_parser p;
	struct lookup_response r;

	lookup_parser_init(&p, &r);
	cr_assert_eq(lookup_parser_feed(&p, (const uint8_t *)answer, strlen(answer)), 1, "%s", answer);
	return p.reusable;
}

Test(lookup_parse, reusable_only_when_kept_alive_and_framed)
{
	cr_expect(lp_t_reusable("HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nConnection: keep-alive\r\n"
				"Content-Length: 0\r\n\r\n"));
	cr_expect(lp_t_reusable("HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nContent-Length: 0\r\n\r\n"));
	/* HTTP/1.0 without keep-alive, a close, no length, a body, a chunked
	   body, bytes after the head: not reused. */
	cr_expect_not(lp_t_reusable("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
	cr_expect_not(lp_t_reusable("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"));
	cr_expect_not(lp_t_reusable("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"));
	cr_expect_not(lp_t_reusable("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
	cr_expect_not(lp_t_reusable("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"));
	cr_expect_not(lp_t_reusable("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"));
	cr_expect_not(lp_t_reusable("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n"));
}

/* The admin console's lookups carry Auth-Zimbra-Admin where nginx puts it. */
Test(lookup_parse, request_admin_header)
{
	char out[1024];
	struct lookup_query q = {
		.method = "zimbraId", .user = "6d5f0b1e-7c2a-4f7e-9a57-2f7a3c8e1d00",
		.protocol = "httpssl", .attempt = 0, .client_ip = "203.0.113.7",
		.proxy_ip = "192.0.2.10", .host = "mail.example.com:9071", .admin = true,
	};
	int n = lookup_build_request(out, sizeof(out), "10.0.0.5", "/l", &q, false);

	cr_assert_gt(n, 0);
	cr_expect_not_null(strstr(out, "\r\nClient-IP: 203.0.113.7\r\nAuth-Zimbra-Admin: True\r\n"
				       "X-Proxy-Host: mail.example.com:9071\r\n\r\n"), "%s", out);
	q.admin = false;
	n = lookup_build_request(out, sizeof(out), "10.0.0.5", "/l", &q, false);
	cr_assert_gt(n, 0);
	cr_expect_null(strstr(out, "Auth-Zimbra-Admin"), "%s", out);
}
