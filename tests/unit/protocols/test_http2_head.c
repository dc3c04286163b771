/*
 * Tests for http2_request_head (protocols/http2.c): an HTTP/2 request
 * made into the exchange's head with no parse must give exactly what the
 * way it replaces gives, h2_request_to_h1's bytes parsed by
 * http_parse_head: the same bytes (what the backend's head is written
 * from), the same head (method, target, header spans, framing), the same
 * body state; and for anything it does not take (0), the parse answers
 * (431, 414, 400) as before.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "h2.h"
#include "http.h"
#include "http_int.h"

#define T_HDRS 64

/* A request as the engine hands it over: fields in one buffer. */
struct t_req {
	uint8_t buf[70000];
	size_t len;
	struct h2_header hdr[T_HDRS + 8];
	struct h2_request r;
};

static struct h2_span t_put(struct t_req *q, const char *p, size_t n)
{
	struct h2_span sp = { (uint32_t)q->len, (uint32_t)n };

	memcpy(q->buf + q->len, p, n);
	q->len += n;
	return sp;
}

/* method, path, authority (NULL: none), then name, value pairs, NULL. */
static void t_init(struct t_req *q, bool end, const char *method, const char *path,
		   const char *authority, ...)
{
	va_list ap;
	const char *n;

	memset(q, 0, sizeof(*q));
	q->r.method = t_put(q, method, strlen(method));
	q->r.scheme = t_put(q, "https", 5);
	q->r.path = t_put(q, path, strlen(path));
	if (authority != NULL)
		q->r.authority = t_put(q, authority, strlen(authority));
	q->r.hdr = q->hdr;
	va_start(ap, authority);
	while ((n = va_arg(ap, const char *)) != NULL) {
		const char *v = va_arg(ap, const char *);
		q->hdr[q->r.nhdr].name = t_put(q, n, strlen(n));
		q->hdr[q->r.nhdr].value = t_put(q, v, strlen(v));
		q->r.nhdr++;
	}
	va_end(ap);
	q->r.buf = q->buf;
	q->r.end_stream = end;
}

static void t_add(struct t_req *q, const char *n, const char *v, size_t vlen)
{
	q->hdr[q->r.nhdr].name = t_put(q, n, strlen(n));
	q->hdr[q->r.nhdr].value = t_put(q, v, vlen);
	q->r.nhdr++;
	q->r.buf = q->buf;
}

static const struct http_limits t_lim = { .max_head = 8192, .max_uri = 4096, .max_headers = 20 };

struct t_out {
	uint8_t buf[70000];
	struct http_header hdr[T_HDRS];
	struct http_head h;
	struct http_parser p;
	int rc;
	bool chunked, body;
};

/* The direct way; its rc. */
static int t_direct(const struct t_req *q, const struct http_limits *lim, struct t_out *o)
{
	memset(o, 0, sizeof(*o));
	o->h.hdr = o->hdr;
	o->h.hdr_cap = T_HDRS;
	http_parser_init(&o->p, HTTP_REQUEST, lim, &o->h);
	o->rc = http2_request_head(&q->r, lim, o->buf, sizeof(o->buf), &o->h, &o->chunked, &o->body);
	if (o->rc > 0)
		http_parser_preparsed(&o->p, o->body);
	return o->rc;
}

/* The way it replaces: written, then parsed; rc as http2.c read it
   (-431 when the writing did not fit). */
static int t_parsed(const struct t_req *q, const struct http_limits *lim, struct t_out *o)
{
	size_t cap = lim->max_head + HTTP_FWD_EXTRA;

	memset(o, 0, sizeof(*o));
	o->h.hdr = o->hdr;
	o->h.hdr_cap = T_HDRS;
	http_parser_init(&o->p, HTTP_REQUEST, lim, &o->h);
	int n = h2_request_to_h1(&q->r, (char *)o->buf, cap - 2, &o->chunked);
	if (n < 0)
		return o->rc = -431;
	memcpy(o->buf + n, "\r\n", 2);
	o->rc = http_parse_head(&o->p, o->buf, (size_t)n + 2);
	return o->rc;
}

static void t_same_span(const char *what, int i, struct http_span a, struct http_span b)
{
	/* An empty span's offset means nothing. */
	cr_assert(a.len == b.len && (a.len == 0 || a.off == b.off),
		  "%s %d: direct {%u,%u}, parsed {%u,%u}", what, i, a.off, a.len, b.off, b.len);
}

/* Direct and parsed agree; the direct way took it (want_direct) or not. */
static void t_same(const struct t_req *q, const struct http_limits *lim, bool want_direct)
{
	static struct t_out d, p;
	int rd = t_direct(q, lim, &d);
	int rp = t_parsed(q, lim, &p);

	if (!want_direct) {
		cr_assert_eq(rd, 0, "the direct way took a request it must leave to the parse");
		return;
	}
	cr_assert_gt(rd, 0, "not taken directly (rc %d); parsed: %d", rd, rp);
	cr_assert_eq(rp, rd, "parsed rc %d, direct %d", rp, rd);
	cr_assert(memcmp(d.buf, p.buf, (size_t)rd) == 0, "bytes differ:\n%.*s\n---\n%.*s", rd,
		  (const char *)d.buf, rd, (const char *)p.buf);
	cr_assert_eq(d.h.method, p.h.method);
	cr_assert_eq(d.h.major, p.h.major);
	cr_assert_eq(d.h.minor, p.h.minor);
	t_same_span("uri", 0, d.h.uri, p.h.uri);
	cr_assert_eq(d.h.nhdr, p.h.nhdr, "header lines: direct %d, parsed %d", d.h.nhdr, p.h.nhdr);
	for (int i = 0; i < d.h.nhdr; i++) {
		t_same_span("name", i, d.h.hdr[i].name, p.h.hdr[i].name);
		t_same_span("value", i, d.h.hdr[i].value, p.h.hdr[i].value);
	}
	cr_assert_eq(d.h.head_len, p.h.head_len);
	cr_assert_eq(d.h.keep_alive, p.h.keep_alive);
	cr_assert_eq(d.h.upgrade, p.h.upgrade);
	cr_assert_eq(d.h.chunked, p.h.chunked);
	cr_assert_eq(d.h.has_length, p.h.has_length);
	cr_assert_eq(d.h.content_length, p.h.content_length);
	cr_assert_eq(d.h.needs_eof, p.h.needs_eof);
	cr_assert_eq(d.chunked, p.chunked);
	cr_assert_eq(http_parser_body_done(&d.p), http_parser_body_done(&p.p), "body state");
}

static struct t_req q;

Test(http2_head, plain_get_is_the_parsed_head)
{
	t_init(&q, true, "GET", "/api/v1/status?a=1&b=%20", "mail.example.com", "user-agent",
	       "h2load nghttp2/1.52.0", "accept", "*/*", "cookie", "ZM_AUTH_TOKEN=abc; b=c", NULL);
	t_same(&q, &t_lim, true);
	struct t_out o;
	cr_assert_gt(t_direct(&q, &t_lim, &o), 0);
	cr_assert_str_eq((const char *)o.buf,
			 "GET /api/v1/status?a=1&b=%20 HTTP/1.1\r\nHost: mail.example.com\r\n"
			 "user-agent: h2load nghttp2/1.52.0\r\naccept: */*\r\n"
			 "cookie: ZM_AUTH_TOKEN=abc; b=c\r\n\r\n");
	cr_assert(http_parser_body_done(&o.p));
}

Test(http2_head, authority_wins_over_a_host_header)
{
	t_init(&q, true, "GET", "/", "a.example.com", "host", "b.example.com", "x-a", "1", NULL);
	t_same(&q, &t_lim, true);
	struct t_out o;
	t_direct(&q, &t_lim, &o);
	cr_assert_null(strstr((const char *)o.buf, "b.example.com"));
	/* No :authority: the host header is the Host, as sent. */
	t_init(&q, true, "GET", "/", NULL, "host", "b.example.com", NULL);
	t_same(&q, &t_lim, true);
	/* Neither: no Host (http__request_check answers 400 as for HTTP/1.1). */
	t_init(&q, true, "GET", "/", NULL, "x-a", "1", NULL);
	t_same(&q, &t_lim, true);
	/* Two host headers, no :authority: both stay (two Host headers: 400). */
	t_init(&q, true, "GET", "/", NULL, "host", "a", "host", "b", NULL);
	t_same(&q, &t_lim, true);
}

Test(http2_head, body_framing)
{
	/* A body without a length: chunked to the backend. */
	t_init(&q, false, "POST", "/soap", "h", "content-type", "text/xml", NULL);
	t_same(&q, &t_lim, true);
	/* With its length. */
	t_init(&q, false, "PUT", "/dav/x", "h", "content-length", "1234", NULL);
	t_same(&q, &t_lim, true);
	t_init(&q, true, "POST", "/x", "h", "content-length", "0", NULL);
	t_same(&q, &t_lim, true);
	/* Ended with the head: Content-Length: 0 for the methods with bodies. */
	t_init(&q, true, "POST", "/x", "h", NULL);
	t_same(&q, &t_lim, true);
	t_init(&q, true, "PATCH", "/x", "h", NULL);
	t_same(&q, &t_lim, true);
	t_init(&q, true, "DELETE", "/x", "h", NULL);
	t_same(&q, &t_lim, true);
	t_init(&q, false, "GET", "/x", "h", "content-length", "999999999999999999", NULL);
	t_same(&q, &t_lim, true);
}

Test(http2_head, methods_as_llhttp_numbers_them)
{
	static const char *const m[] = {
		"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND",
		"PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH",
		"MKCALENDAR",
	};
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		t_init(&q, true, m[i], "/x", "h", NULL);
		t_same(&q, &t_lim, true);
	}
	/* Others take the parse: its answer for them as before. */
	t_init(&q, true, "BREW", "/x", "h", NULL);
	t_same(&q, &t_lim, false);
	t_init(&q, true, "get", "/x", "h", NULL);
	t_same(&q, &t_lim, false);
	t_init(&q, true, "CONNECT", "/x", "h", NULL);
	t_same(&q, &t_lim, false);
}

Test(http2_head, every_visible_byte_of_a_path)
{
	for (int c = 0x21; c < 0x7f; c++) {
		char path[8];
		snprintf(path, sizeof(path), "/a%cb", c);
		t_init(&q, true, "GET", path, "h", NULL);
		t_same(&q, &t_lim, true);
	}
	/* Bytes the HTTP/1.1 parse refuses in a target: left to it (400). */
	static const char *const bad[] = { "/a b", "/a\tb", "/a\x7f", "/a\x80", "*", "x/y", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t_init(&q, true, "GET", bad[i], "h", NULL);
		t_same(&q, &t_lim, false);
		struct t_out o;
		if (bad[i][0] == '/')
			cr_assert_eq(t_parsed(&q, &t_lim, &o), HTTP_E_BAD, "%s", bad[i]);
	}
}

Test(http2_head, header_values_byte_by_byte)
{
	for (int c = 1; c < 256; c++) {
		char v[4] = { 'a', (char)c, 'b', 0 };
		t_init(&q, true, "GET", "/", "h", NULL);
		t_add(&q, "x-v", v, 3);
		bool plain = c == '\t' || (c >= 0x20 && c != 0x7f);
		t_same(&q, &t_lim, plain);
		if (!plain) {
			struct t_out o;
			cr_assert_eq(t_parsed(&q, &t_lim, &o), HTTP_E_BAD, "byte %d", c);
		}
	}
	/* A NUL in a value, whitespace at its ends (the parse drops some),
	   an empty one. */
	t_init(&q, true, "GET", "/", "h", NULL);
	t_add(&q, "x-v", "a\0b", 3);
	t_same(&q, &t_lim, false);
	t_init(&q, true, "GET", "/", "h", "x-v", " a", NULL);
	t_same(&q, &t_lim, false);
	t_init(&q, true, "GET", "/", "h", "x-v", "a\t", NULL);
	t_same(&q, &t_lim, false);
	t_init(&q, true, "GET", "/", "h", "x-v", "", "x-w", "1", NULL);
	t_same(&q, &t_lim, true);
}

Test(http2_head, names_and_special_headers)
{
	/* What the HTTP/1.1 parse takes a meaning from, or refuses. */
	static const char *const special[] = {
		"connection", "proxy-connection", "upgrade", "transfer-encoding", "x y", "x:y", "",
	};
	for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++) {
		t_init(&q, false, "POST", "/", "h", special[i], "close", NULL);
		t_same(&q, &t_lim, false);
	}
	t_init(&q, true, "GET", "/", "h", "x-!#$%&'*+-.^_`|~09az", "1", "keep-alive", "5", "te",
	       "trailers", NULL);
	t_same(&q, &t_lim, true);
	/* Content-Length as the parse would read it or refuse it. */
	static const char *const cl[] = { "12a", "-1", "", "1 ", "1,1", "9999999999999999999" };
	for (size_t i = 0; i < sizeof(cl) / sizeof(cl[0]); i++) {
		t_init(&q, false, "POST", "/", "h", "content-length", cl[i], NULL);
		t_same(&q, &t_lim, false);
	}
	t_init(&q, false, "POST", "/", "h", "content-length", "5", "content-length", "5", NULL);
	t_same(&q, &t_lim, false);
}

Test(http2_head, bounds_are_the_parse_bounds)
{
	struct t_out o;
	char name[16];

	/* Header lines: Host plus 19 fits 20 lines; one more is 431. */
	t_init(&q, true, "GET", "/", "h", NULL);
	for (int i = 0; i < 19; i++) {
		snprintf(name, sizeof(name), "x-%d", i);
		t_add(&q, name, "v", 1);
	}
	t_same(&q, &t_lim, true);
	t_add(&q, "x-last", "v", 1);
	t_same(&q, &t_lim, false);
	cr_assert_eq(t_parsed(&q, &t_lim, &o), HTTP_E_HEADERS);
	/* The framing line counts too. */
	t_init(&q, false, "POST", "/", "h", NULL);
	for (int i = 0; i < 18; i++) {
		snprintf(name, sizeof(name), "x-%d", i);
		t_add(&q, name, "v", 1);
	}
	t_same(&q, &t_lim, true);
	t_add(&q, "x-last", "v", 1);
	t_same(&q, &t_lim, false);
	cr_assert_eq(t_parsed(&q, &t_lim, &o), HTTP_E_HEADERS);

	/* The head's size: exactly max_head fits, one byte more is 431. */
	static char big[9000];
	const size_t base = strlen("GET / HTTP/1.1\r\nHost: h\r\nx-big: \r\n\r\n");
	memset(big, 'a', sizeof(big));
	t_init(&q, true, "GET", "/", "h", NULL);
	t_add(&q, "x-big", big, t_lim.max_head - base);
	t_same(&q, &t_lim, true);
	t_init(&q, true, "GET", "/", "h", NULL);
	t_add(&q, "x-big", big, t_lim.max_head - base + 1);
	t_same(&q, &t_lim, false);
	cr_assert_eq(t_parsed(&q, &t_lim, &o), HTTP_E_HEADERS);

	/* The target: max_uri fits, one more is 414. */
	static char path[4200];
	memset(path, 'p', sizeof(path));
	path[0] = '/';
	path[t_lim.max_uri] = 0;
	t_init(&q, true, "GET", path, "h", NULL);
	t_same(&q, &t_lim, true);
	path[t_lim.max_uri] = 'p';
	path[t_lim.max_uri + 1] = 0;
	t_init(&q, true, "GET", path, "h", NULL);
	t_same(&q, &t_lim, false);
	cr_assert_eq(t_parsed(&q, &t_lim, &o), HTTP_E_URI);
}

Test(http2_head, a_small_buffer_says_what_it_needs)
{
	uint8_t small[16];
	struct http_header hdr[8];
	struct http_head h = { .hdr = hdr, .hdr_cap = 8 };
	bool chunked, body;

	t_init(&q, true, "GET", "/x", "host.example", NULL);
	int n = http2_request_head(&q.r, &t_lim, small, sizeof(small), &h, &chunked, &body);
	const char *want = "GET /x HTTP/1.1\r\nHost: host.example\r\n\r\n";
	cr_assert_eq(n, -(int)strlen(want));
	/* The head's line room is a bound too. */
	t_init(&q, true, "GET", "/x", "h", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f",
	       "6", "g", "7", "i", "8", NULL);
	static uint8_t room[256];
	cr_assert_eq(http2_request_head(&q.r, &t_lim, room, sizeof(room), &h, &chunked, &body), 0);
}

/* RFC 6455 1.3's example: the accept a backend must answer our key with. */
Test(http2_head, websocket_accept_of_a_key)
{
	char out[29];

	http2_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", out);
	cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
