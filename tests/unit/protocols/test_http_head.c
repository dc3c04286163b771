/*
 * Tests for protocols/http_head.c: request heads to backends (forwarded
 * headers, hop-by-hop removal), response heads to clients, redirect host
 * checks (never an open redirect), error pages and the access-log target.
 */
#include <stdio.h>
#include <stdlib.h>

#include "conf.h"
#include "gh.h"
#include "http_t.h"

static struct http_t hh_t;
static char hh_out[16384];

static const char *hh_req(const char *text, const struct http_fwd *f)
{
	http_t_parse(&hh_t, HTTP_REQUEST, text);
	int n = http_rewrite_request(hh_t.buf, &hh_t.h, f, hh_out, sizeof(hh_out));
	cr_assert_gt(n, 0);
	hh_out[n] = '\0';
	return hh_out;
}

static const char *hh_resp(const char *text, bool close, bool http10)
{
	http_t_parse(&hh_t, HTTP_RESPONSE, text);
	int n = http_rewrite_response(hh_t.buf, &hh_t.h, NULL, close, http10, hh_out, sizeof(hh_out));
	cr_assert_gt(n, 0);
	hh_out[n] = '\0';
	return hh_out;
}

Test(http_head, untrusted_xff_is_replaced)
{
	struct http_fwd f = { .client_ip = "203.0.113.7", .trusted = false, .https = true };

	cr_assert_str_eq(hh_req("GET /a?b HTTP/1.1\r\nHost: mail.example.com\r\nX-Forwarded-For: 1.2.3.4\r\n"
				"X-Real-IP: 9.9.9.9\r\nX-Forwarded-Proto: http\r\nAccept: */*\r\n\r\n", &f),
			 "GET /a?b HTTP/1.1\r\nHost: mail.example.com\r\nAccept: */*\r\n"
			 "X-Forwarded-For: 203.0.113.7\r\nX-Real-IP: 203.0.113.7\r\n"
			 "X-Forwarded-Proto: https\r\nConnection: keep-alive\r\n\r\n");
}

Test(http_head, trusted_xff_is_appended_to)
{
	struct http_fwd f = { .client_ip = "10.0.0.9", .trusted = true, .https = false };

	cr_assert_str_eq(hh_req("POST /x HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nHost: h\r\n"
				"x-forwarded-for: 3.3.3.3 \r\nContent-Length: 0\r\n\r\n", &f),
			 "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n"
			 "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9\r\nX-Real-IP: 10.0.0.9\r\n"
			 "X-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\n");
	/* Trusted but nothing incoming: just the peer. */
	cr_assert_str_eq(hh_req("GET / HTTP/1.0\r\n\r\n", &f),
			 "GET / HTTP/1.0\r\nX-Forwarded-For: 10.0.0.9\r\nX-Real-IP: 10.0.0.9\r\n"
			 "X-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\n");
}

Test(http_head, hop_by_hop_headers_are_removed)
{
	struct http_fwd f = { .client_ip = "1.2.3.4" };

	cr_assert_str_eq(hh_req("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop, Content-Length\r\n"
				"Keep-Alive: timeout=5\r\nX-Hop: secret\r\nTE: trailers\r\nProxy-Connection: x\r\n"
				"Proxy-Authorization: Basic eA==\r\nUpgrade: h2c\r\nX-Keep: 1\r\n\r\n", &f),
			 "GET / HTTP/1.1\r\nHost: h\r\nX-Keep: 1\r\n"
			 "X-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n"
			 "X-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\n");
}

Test(http_head, websocket_keeps_upgrade)
{
	struct http_fwd f = { .client_ip = "1.2.3.4", .https = true, .websocket = true };

	cr_assert_str_eq(hh_req("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
				"Sec-WebSocket-Key: k\r\n\r\n", &f),
			 "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n"
			 "X-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n"
			 "X-Forwarded-Proto: https\r\nConnection: upgrade\r\n\r\n");
}

Test(http_head, request_that_does_not_fit_is_refused)
{
	struct http_fwd f = { .client_ip = "1.2.3.4" };
	char small[40];

	http_t_parse(&hh_t, HTTP_REQUEST, "GET /some/long/path HTTP/1.1\r\nHost: h\r\n\r\n");
	cr_assert_eq(http_rewrite_request(hh_t.buf, &hh_t.h, &f, small, sizeof(small)), -1);
}

Test(http_head, responses_lose_hop_by_hop_and_say_how_the_connection_goes)
{
	cr_assert_str_eq(hh_resp("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Drop\r\n"
				 "Keep-Alive: timeout=5\r\nX-Drop: 1\r\nUpgrade: h2\r\nSet-Cookie: a=b\r\n\r\n", false, false),
			 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=b\r\n\r\n");
	cr_assert_str_eq(hh_resp("HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n", true, false),
			 "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	cr_assert_str_eq(hh_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, true),
			 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n");
	cr_assert_str_eq(hh_resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
				 "Sec-WebSocket-Accept: x\r\n\r\n", false, false),
			 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n"
			 "Connection: upgrade\r\n\r\n");
}

Test(http_head, status_and_version_numbers_are_written_whole)
{
	/* The status line and request line are written without snprintf:
	   every width of number, and a nonzero minor version. */
	cr_assert_str_eq(hh_resp("HTTP/1.1 100 Continue\r\n\r\n", false, false),
			 "HTTP/1.1 100 Continue\r\n\r\n");
	cr_assert_str_eq(hh_resp("HTTP/1.1 599 Odd\r\nContent-Length: 0\r\n\r\n", false, false),
			 "HTTP/1.1 599 Odd\r\nContent-Length: 0\r\n\r\n");
	cr_assert_str_eq(hh_resp("HTTP/1.1 204 \r\n\r\n", false, false), "HTTP/1.1 204 \r\n\r\n");

	struct http_fwd f = { .client_ip = "1.2.3.4" };
	cr_assert_str_eq(hh_req("OPTIONS * HTTP/1.0\r\n\r\n", &f),
			 "OPTIONS * HTTP/1.0\r\nX-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n"
			 "X-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\n");
}

Test(http_head, connection_may_come_after_the_headers_it_names)
{
	struct http_fwd f = { .client_ip = "1.2.3.4" };

	/* A head without Connection skips the lookup of named headers; one
	   with it, anywhere in the head, still drops what it names. */
	cr_assert_str_eq(hh_req("GET / HTTP/1.1\r\nX-Hop: 1\r\nHost: h\r\nconnection: x-hop\r\n\r\n", &f),
			 "GET / HTTP/1.1\r\nHost: h\r\n"
			 "X-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n"
			 "X-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\n");
	cr_assert_str_eq(hh_req("GET / HTTP/1.1\r\nX-Hop: 1\r\nHost: h\r\n\r\n", &f),
			 "GET / HTTP/1.1\r\nX-Hop: 1\r\nHost: h\r\n"
			 "X-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n"
			 "X-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\n");
	cr_assert_str_eq(hh_resp("HTTP/1.1 200 OK\r\nX-Drop: 1\r\nContent-Length: 0\r\n"
				 "CONNECTION: X-Drop\r\n\r\n", false, false),
			 "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

static struct conf *hh_conf(void)
{
	struct conf *c = calloc(1, sizeof(*c));
	static char *names[] = { "webmail.example.net", "*.example.org" };
	static struct tls_vhost vh;

	c->http.server_name = "mail.example.com";
	vh.names = names;
	vh.nnames = 2;
	c->vhosts = &vh;
	c->nvhosts = 1;
	return c;
}

Test(http_head, redirect_hosts_are_only_ours)
{
	struct conf *c = hh_conf();
	char out[256];
	const char *ok[][2] = {
		{ "mail.example.com", "mail.example.com" },
		{ "MAIL.Example.COM:8880", "mail.example.com" },
		{ "webmail.example.net", "webmail.example.net" },
		{ "a.example.org:80", "a.example.org" },
	};
	const char *bad[] = {
		"evil.com", "mail.example.com.evil.com", "evil.com/mail.example.com", "a.b@evil.com",
		"mail.example.com@evil.com", "mail.example.com:", "mail.example.com:x", "mail.example.com:123456",
		"example.org", "a.b.example.org", ".example.org", "[::1]", "", "mail.example.com\r\nX: y",
		"mail.example.com evil",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		cr_expect(http_redirect_host_ok(c, ok[i][0], strlen(ok[i][0]), out, sizeof(out)), "%s", ok[i][0]);
		cr_expect_str_eq(out, ok[i][1]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect(!http_redirect_host_ok(c, bad[i], strlen(bad[i]), out, sizeof(out)), "allowed %s", bad[i]);
	free(c);
}

Test(http_head, redirect_local_hosts_get_our_name)
{
	const char *local[] = {
		"127.0.0.1", "127.0.0.1:80", "10.1.2.3:8080", "[::1]", "[::1]:80", "[2001:db8::5]",
		"localhost", "LOCALHOST:80", "mail", "mail-01", "mail:8080",
	};
	const char *not_local[] = {
		"", "evil.org", "mail.evil.org", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:123456",
		"[::1", "[::1]x", "[::1]:", "[evil.org]", "::1", "mail evil", "mail/x", "mail@evil",
		"-mail", "mail\r\nX: y", "1.2.3.4.5.6",
	};

	for (size_t i = 0; i < ARRAY_SIZE(local); i++)
		cr_expect(http_redirect_host_local(local[i], strlen(local[i])), "%s", local[i]);
	for (size_t i = 0; i < ARRAY_SIZE(not_local); i++)
		cr_expect(!http_redirect_host_local(not_local[i], strlen(not_local[i])), "%s",
			  not_local[i]);

	struct conf *c = hh_conf();
	cr_expect_str_eq(http_redirect_default_name(c), "mail.example.com");
	c->http.server_name = NULL;
	cr_expect_str_eq(http_redirect_default_name(c), "webmail.example.net");
	c->nvhosts = 0;
	cr_expect_null(http_redirect_default_name(c));
	free(c);
}

Test(http_head, error_pages_are_complete_responses)
{
	char out[4096];
	int n = http_error_page(301, "https://mail.example.com/x", NULL, true, NULL, out, sizeof(out));

	cr_assert_gt(n, 0);
	cr_assert(strncmp(out, "HTTP/1.1 301 Moved Permanently\r\n", 32) == 0, "%s", out);
	cr_assert_not_null(strstr(out, "\r\nLocation: https://mail.example.com/x\r\n"));
	cr_assert_not_null(strstr(out, "\r\nConnection: close\r\n"));
	const char *body = strstr(out, "\r\n\r\n") + 4;
	char cl[64];
	snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", strlen(body));
	cr_assert_not_null(strstr(out, cl), "%s", out);
	n = http_error_page(403, NULL, HTTP_USE_HTTPS_TEXT, false, NULL, out, sizeof(out));
	cr_assert_gt(n, 0);
	cr_assert_not_null(strstr(out, "https://"));
	cr_assert_null(strstr(out, "Location"));
	cr_assert_eq(http_error_page(502, NULL, NULL, true, NULL, out, 64), -1);
}

Test(http_head, log_target_masks_credentials)
{
	const char *cases[][2] = {
		{ "/a/b", "/a/b" },
		{ "/x?first=1", "/x?first=1" },
		{ "/x?zauthtoken=abc&b=2", "/x?zauthtoken=***&b=2" },
		{ "/x?a=1&zjwt=e.y.j&Password=p&flag", "/x?a=1&zjwt=***&Password=***&flag" },
		{ "/x?&=&apikey=", "/x?&=&apikey=***" },
	};
	char out[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct http_span sp = { 0, (uint32_t)strlen(cases[i][0]) };
		http_log_target((const uint8_t *)cases[i][0], sp, out, sizeof(out));
		cr_expect_str_eq(out, cases[i][1]);
	}
	struct http_span sp = { 0, 10 };
	cr_assert_eq(http_log_target((const uint8_t *)"/abcdefghi", sp, out, 5), 4);
	cr_assert_str_eq(out, "/abc");
}

/* ---- response edits: added headers and the https fix-up ---- */

static const char *hh_resp_edit(const char *text, const struct http_resp_edit *e)
{
	http_t_parse(&hh_t, HTTP_RESPONSE, text);
	int n = http_rewrite_response(hh_t.buf, &hh_t.h, e, false, false, hh_out, sizeof(hh_out));
	cr_assert_gt(n, 0);
	hh_out[n] = '\0';
	return hh_out;
}

static struct conf_header hh_global[] = {
	{ "Strict-Transport-Security", "max-age=31536000" },
	{ "X-Frame-Options", "SAMEORIGIN" },
};
static struct conf_header hh_loc[] = {
	{ "X-Frame-Options", "DENY" },
	{ "Set-Cookie", "seen=1" },
};

Test(http_head, added_headers_replace_the_backends_and_the_global_ones)
{
	struct http_resp_edit e = { .add = { hh_global, NULL, hh_loc }, .nadd = { 2, 0, 2 } };

	cr_assert_str_eq(hh_resp_edit("HTTP/1.1 200 OK\r\nstrict-transport-security: max-age=1\r\n"
				      "Set-Cookie: a=b\r\nX-Frame-Options: ALLOW\r\nContent-Length: 0\r\n\r\n", &e),
			 "HTTP/1.1 200 OK\r\nSet-Cookie: a=b\r\nContent-Length: 0\r\n"
			 "Strict-Transport-Security: max-age=31536000\r\nX-Frame-Options: DENY\r\n"
			 "Set-Cookie: seen=1\r\n\r\n");
	char lines[256];
	int n = http_add_header_lines(&e, lines, sizeof(lines));
	cr_assert_eq(n, (int)strlen("Strict-Transport-Security: max-age=31536000\r\n"
				    "X-Frame-Options: DENY\r\nSet-Cookie: seen=1\r\n"));
	cr_assert_eq(http_add_header_lines(&e, lines, 40), -1);
	/* Without a location only the global ones. */
	e.nadd[2] = 0;
	cr_assert_str_eq(hh_resp_edit("HTTP/1.1 204 No Content\r\nX-Frame-Options: ALLOW\r\n\r\n", &e),
			 "HTTP/1.1 204 No Content\r\nStrict-Transport-Security: max-age=31536000\r\n"
			 "X-Frame-Options: SAMEORIGIN\r\n\r\n");
}

Test(http_head, location_of_our_host_becomes_https)
{
	struct http_resp_edit e = { .https_host = "mail.example.com", .https_host_len = 16 };

	cr_assert_str_eq(hh_resp_edit("HTTP/1.1 302 Found\r\nLocation: http://MAIL.example.com:8080/zimbra/?a=b\r\n"
				      "Content-Length: 0\r\n\r\n", &e),
			 "HTTP/1.1 302 Found\r\nLocation: https://mail.example.com/zimbra/?a=b\r\n"
			 "Content-Length: 0\r\n\r\n");
	cr_assert_str_eq(hh_resp_edit("HTTP/1.1 302 Found\r\nLocation: http://mail.example.com\r\n\r\n", &e),
			 "HTTP/1.1 302 Found\r\nLocation: https://mail.example.com\r\n\r\n");
	/* Other hosts, https already, relative targets, look-alikes: left alone. */
	const char *same[] = {
		"http://evil.example.org/", "https://mail.example.com:8080/", "/zimbra/",
		"http://mail.example.com.evil.org/", "http://mail.example.com:80x/", "http://mail.example.co/",
		"http://user@mail.example.com/", "http://mail.example.com:/",
	};
	for (size_t i = 0; i < ARRAY_SIZE(same); i++) {
		char in[256], want[256];
		snprintf(in, sizeof(in), "HTTP/1.1 301 Moved\r\nLocation: %s\r\n\r\n", same[i]);
		snprintf(want, sizeof(want), "HTTP/1.1 301 Moved\r\nLocation: %s\r\n\r\n", same[i]);
		cr_assert_str_eq(hh_resp_edit(in, &e), want, "%s", same[i]);
	}
	/* The client's port is kept: it is the one the client reached us on. */
	e.https_host = "mail.example.com:8443";
	e.https_host_len = 21;
	cr_assert_str_eq(hh_resp_edit("HTTP/1.1 302 Found\r\nLocation: http://mail.example.com:7070/x\r\n"
				      "Refresh: 0; URL='http://mail.example.com/y'\r\n\r\n", &e),
			 "HTTP/1.1 302 Found\r\nLocation: https://mail.example.com:8443/x\r\n"
			 "Refresh: 0; URL='https://mail.example.com:8443/y'\r\n\r\n");
	char out[16];
	cr_assert_eq(http_https_fixup("http://mail.example.com/abc", 27, "mail.example.com", 16, out,
				      sizeof(out)), -1);
	cr_assert_eq(http_refresh_fixup("5", 1, "mail.example.com", 16, out, sizeof(out)), 0);
}

Test(http_head, error_page_with_added_lines_and_an_operator_body)
{
	char out[1024];
	struct http_page_extra px = { .lines = "X-A: 1\r\n", .lines_len = 8,
				      .body = "<p>down</p>", .body_len = 11 };
	int n = http_error_page(502, NULL, NULL, true, &px, out, sizeof(out));

	cr_assert_gt(n, 0);
	out[n] = '\0';
	cr_assert_str_eq(out, "HTTP/1.1 502 Bad Gateway\r\nServer: gatehouse\r\nContent-Type: text/html; "
			 "charset=utf-8\r\nContent-Length: 11\r\nX-A: 1\r\nConnection: close\r\n\r\n");
}

/* ---- compression: which responses, their head, the body's bytes ---- */

static char *hh_ztypes[] = { "text/html", "application/json", "text/*" };

static bool hh_zok(const char *head, uint64_t *len)
{
	struct conf c = { 0 };

	c.http.compression.min_length = 256;
	c.http.compression.types = hh_ztypes;
	c.http.compression.ntypes = 2;
	http_t_parse(&hh_t, HTTP_RESPONSE, head);
	return http_compress_response_ok(hh_t.buf, &hh_t.h, &c, len);
}

Test(http_head, which_responses_are_compressed)
{
	uint64_t len = 1;

	cr_assert(hh_zok("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
			 "Content-Length: 256\r\n\r\n", &len));
	cr_assert_eq(len, 256);
	cr_assert(hh_zok("HTTP/1.1 200 OK\r\nContent-Type: Application/JSON\r\n"
			 "Transfer-Encoding: chunked\r\n\r\n", &len));
	cr_assert_eq(len, 0, "unknown length");
	cr_assert(hh_zok("HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n", &len), "up to the close");
	const char *no[] = {
		"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 255\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: text/css\r\nContent-Length: 900\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 900\r\n\r\n",
		"HTTP/1.1 206 Partial\r\nContent-Type: text/html\r\nContent-Length: 900\r\n\r\n",
		"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 900\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nContent-Length: 900\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Range: bytes 0-899/900\r\nContent-Length: 900\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nCache-Control: public, No-Transform\r\n"
		"Content-Length: 900\r\n\r\n",
	};
	for (size_t i = 0; i < ARRAY_SIZE(no); i++)
		cr_assert(!hh_zok(no[i], &len), "%s", no[i]);
}

Test(http_head, compressed_head_is_reframed)
{
	struct http_resp_edit e = { .content_encoding = "br" };

	cr_assert_str_eq(hh_resp_edit("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 900\r\n"
				      "ETag: \"abc\"\r\n\r\n", &e),
			 "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nETag: W/\"abc\"\r\n"
			 "Content-Encoding: br\r\nTransfer-Encoding: chunked\r\nVary: Accept-Encoding\r\n\r\n");
	cr_assert_str_eq(hh_resp_edit("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: W/\"w\"\r\n"
				      "Vary: Cookie, accept-encoding\r\n\r\n", &e),
			 "HTTP/1.1 200 OK\r\nETag: W/\"w\"\r\nVary: Cookie, accept-encoding\r\n"
			 "Content-Encoding: br\r\nTransfer-Encoding: chunked\r\n\r\n");
}

Test(http_head, body_data_leaves_the_chunk_framing_out)
{
	http_t_parse(&hh_t, HTTP_RESPONSE, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
	uint8_t body[] = "5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nX-T: 1\r\n\r\nNEXT";
	size_t n = sizeof(body) - 1, dlen = 0;
	bool done = false;

	/* In two pieces: a chunk split across reads. */
	long r = http_parse_body_data(&hh_t.p, body, 12, &done, &dlen);
	cr_assert_eq(r, 12);
	cr_assert(!done);
	cr_assert_eq(dlen, 5, "the next chunk's size line is not all there");
	cr_assert(memcmp(body, "hello", 5) == 0);
	r = http_parse_body_data(&hh_t.p, body + 12, n - 12, &done, &dlen);
	cr_assert(done);
	cr_assert_eq((size_t)r, n - 12 - 4, "NEXT is not this message's");
	cr_assert_eq(dlen, 7);
	cr_assert(memcmp(body + 12, " world!", 7) == 0);
}

Test(http_head, vhost_headers_sit_between_global_and_location)
{
	static struct conf_header vh[] = { { "X-Frame-Options", "SAMEORIGIN-VH" }, { "X-Vh", "1" } };
	static struct conf_header loc[] = { { "X-Vh", "loc" } };
	struct conf_vhost_http vx[] = { { NULL, 0 }, { vh, 2 } };
	struct conf *c = hh_conf();
	struct tls_vhost two[2] = { { .names = (char *[]){ "*.example.org" }, .nnames = 1 },
				    { .names = (char *[]){ "webmail.example.net", "a.example.org" },
				      .nnames = 2 } };
	struct conf_location l = { .headers = loc, .nheaders = 1 };
	struct http_resp_edit e;

	c->vhosts = two;
	c->nvhosts = 2;
	c->vhost_http = vx;
	c->http.add_headers = hh_global;
	c->http.nadd_headers = 2;
	cr_assert_eq(conf_vhost_for_host(c, "WEBMAIL.example.net:8443", 24), 1);
	cr_assert_eq(conf_vhost_for_host(c, "a.example.org", 13), 1, "an exact name before a wildcard");
	cr_assert_eq(conf_vhost_for_host(c, "b.example.org", 13), 0);
	cr_assert_eq(conf_vhost_for_host(c, "example.org", 11), -1);
	cr_assert_eq(conf_vhost_for_host(c, "x.b.example.org", 15), -1);
	http_resp_edit_init(&e, c, "webmail.example.net", 19, &l);
	cr_assert_str_eq(hh_resp_edit("HTTP/1.1 204 No Content\r\nX-Vh: backend\r\n\r\n", &e),
			 "HTTP/1.1 204 No Content\r\nStrict-Transport-Security: max-age=31536000\r\n"
			 "X-Frame-Options: SAMEORIGIN-VH\r\nX-Vh: loc\r\n\r\n");
	http_resp_edit_init(&e, c, "b.example.org", 13, NULL);
	cr_assert_str_eq(hh_resp_edit("HTTP/1.1 204 No Content\r\n\r\n", &e),
			 "HTTP/1.1 204 No Content\r\nStrict-Transport-Security: max-age=31536000\r\n"
			 "X-Frame-Options: SAMEORIGIN\r\n\r\n");
	free(c);
}

/* rewrite_redirects: the backend's own port goes back as the client's Host. */
Test(http_head, backend_port_redirect_goes_back_to_the_client_host)
{
	struct http_resp_edit e = { .https_host = "mail.example.com:9071", .https_host_len = 21,
				    .back_host = "mail.example.com:9071", .back_host_len = 21,
				    .back_port = 7071, .back_https = true };

	cr_assert_str_eq(hh_resp_edit("HTTP/1.1 302 Found\r\n"
				      "Location: https://MAIL.example.com:7071/zimbraAdmin/?a=1\r\n"
				      "Refresh: 0; url=https://mail.example.com:7071/x\r\n\r\n", &e),
			 "HTTP/1.1 302 Found\r\n"
			 "Location: https://mail.example.com:9071/zimbraAdmin/?a=1\r\n"
			 "Refresh: 0; url=https://mail.example.com:9071/x\r\n\r\n");
	/* Another port, another host, a longer port, no port: left alone (the
	   https fix-up still turns http:// of our name into https://). */
	const char *same[] = {
		"https://mail.example.com:70711/x", "https://mail.example.com:707/x",
		"https://other.example.com:7071/x", "https://mail.example.com/x", "/x",
		"https://mail.example.com.evil:7071/x",
	};
	char in[256], want[256];
	for (size_t i = 0; i < ARRAY_SIZE(same); i++) {
		snprintf(in, sizeof(in), "HTTP/1.1 301 Moved\r\nLocation: %s\r\n\r\n", same[i]);
		snprintf(want, sizeof(want), "HTTP/1.1 301 Moved\r\nLocation: %s\r\n\r\n", same[i]);
		cr_assert_str_eq(hh_resp_edit(in, &e), want, "%s", same[i]);
	}
	cr_assert_str_eq(hh_resp_edit("HTTP/1.1 302 Found\r\nLocation: http://mail.example.com:7071\r\n\r\n",
				      &e),
			 "HTTP/1.1 302 Found\r\nLocation: https://mail.example.com:9071\r\n\r\n");
	char out[16];
	cr_assert_eq(http_port_fixup("https://h:7071/abcdefghijkl", 27, "h:9071", 6, 7071, true, out,
				     sizeof(out)), -1);
	cr_assert_eq(http_port_fixup("https://h:7071/a", 16, "h:9071", 6, 0, true, out, sizeof(out)), 0);
	cr_assert_eq(http_port_fixup("https://h:7071/a", 16, "h:9071", 6, 7071, false, out,
				     sizeof(out)), 15);
	cr_assert_eq(memcmp(out, "http://h:9071/a", 15), 0);
}
