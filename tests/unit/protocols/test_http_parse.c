/*
 * Tests for protocols/http_parse.c: request and response heads and body
 * framing.
 *
 * Every vector goes through t_all(), which feeds a byte stream the way the
 * front end does (the current message's bytes at the head of a buffer, new
 * bytes appended, the head and then body bytes consumed as they are
 * recognised) three ways: whole, one byte at a time, and split in two at
 * every offset. The transcripts must be identical; the whole-input one is
 * then compared with the expectation. Each feed copies exactly the bytes
 * available into a fresh allocation, so an over-read shows under ASan.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define T_OUT 4096

struct t_feed {
	struct http_parser p;
	struct http_head h;
	struct http_header hdr[32];
	uint8_t buf[65536];
	size_t len;
	bool in_body;
	uint64_t body;
	char out[T_OUT];
	bool failed;
};

static void t_add(struct t_feed *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void t_add(struct t_feed *f, const char *fmt, ...)
{
	size_t n = strlen(f->out);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->out + n, sizeof(f->out) - n, fmt, ap);
	va_end(ap);
}

static void t_init(struct t_feed *f, llhttp_type_t kind, bool no_body)
{
	struct http_limits lim = { .max_head = 1024, .max_uri = 128, .max_headers = 8 };

	memset(f, 0, sizeof(*f));
	f->h.hdr = f->hdr;
	f->h.hdr_cap = 32;
	http_parser_init(&f->p, kind, &lim, &f->h);
	if (no_body)
		http_parser_no_body(&f->p);
}

static void t_head_done(struct t_feed *f, int hl)
{
	const struct http_head *h = &f->h;

	if (f->p.ll.type == HTTP_REQUEST)
		t_add(f, "[%s %.*s %u.%u", llhttp_method_name((llhttp_method_t)h->method),
		      (int)h->uri.len, (const char *)f->buf + h->uri.off, h->major, h->minor);
	else
		t_add(f, "[%u %.*s %u.%u", h->status, (int)h->reason.len,
		      (const char *)f->buf + h->reason.off, h->major, h->minor);
	for (int i = 0; i < h->nhdr; i++)
		t_add(f, " %.*s=%.*s", (int)h->hdr[i].name.len, (const char *)f->buf + h->hdr[i].name.off,
		      (int)h->hdr[i].value.len, (const char *)f->buf + h->hdr[i].value.off);
	t_add(f, " hl=%d ka=%d up=%d ch=%d", hl, h->keep_alive, h->upgrade, h->chunked);
	memmove(f->buf, f->buf + hl, f->len - (size_t)hl);
	f->len -= (size_t)hl;
	f->in_body = true;
	f->body = 0;
}

/* Work through what is buffered; stop when more bytes are needed. */
static void t_step(struct t_feed *f)
{
	while (!f->failed) {
		if (!f->in_body) {
			if (f->len == 0)
				return;
			int rc = http_parse_head(&f->p, f->buf, f->len);
			if (rc == HTTP_NEED_MORE)
				return;
			if (rc < 0) {
				t_add(f, "[E%d]", -rc);
				f->failed = true;
				return;
			}
			t_head_done(f, rc);
			continue;
		}
		bool done = false;
		long n = http_parse_body(&f->p, f->buf, f->len, &done);
		if (n < 0) {
			t_add(f, " E%ld]", -n);
			f->failed = true;
			return;
		}
		f->body += (uint64_t)n;
		memmove(f->buf, f->buf + n, f->len - (size_t)n);
		f->len -= (size_t)n;
		if (!done)
			return;
		t_add(f, " body=%llu]", (unsigned long long)f->body);
		f->in_body = false;
		bool nb = f->p.no_body;
		http_parser_reset(&f->p);
		if (nb)
			http_parser_no_body(&f->p);
	}
}

static void t_feed(struct t_feed *f, const uint8_t *p, size_t n)
{
	cr_assert_leq(f->len + n, sizeof(f->buf));
	memcpy(f->buf + f->len, p, n);
	f->len += n;
	t_step(f);
}

static void t_eof(struct t_feed *f)
{
	if (f->in_body && !f->failed && http_parse_eof(&f->p))
		t_add(f, " body=%llu eof]", (unsigned long long)f->body);
	t_add(f, " left=%zu", f->len);
}

static void t_run(struct t_feed *f, llhttp_type_t kind, bool no_body, const char *in, size_t n,
		  size_t split, size_t step)
{
	t_init(f, kind, no_body);
	size_t i = 0;
	while (i < n) {
		size_t k = step ? step : (i < split ? split - i : n - i);
		if (k > n - i)
			k = n - i;
		uint8_t *copy = malloc(k ? k : 1);
		memcpy(copy, in + i, k);
		t_feed(f, copy, k);
		free(copy);
		i += k;
	}
	t_eof(f);
}

static void t_all_kind(llhttp_type_t kind, bool no_body, const char *in, const char *want)
{
	static struct t_feed whole, part;
	size_t n = strlen(in);

	t_run(&whole, kind, no_body, in, n, n, 0);
	cr_assert_str_eq(whole.out, want, "whole:\n got  %s\n want %s", whole.out, want);
	t_run(&part, kind, no_body, in, n, 0, 1);
	cr_assert_str_eq(part.out, whole.out, "byte by byte:\n got  %s\n want %s", part.out, whole.out);
	for (size_t s = 1; s < n; s++) {
		t_run(&part, kind, no_body, in, n, s, 0);
		cr_assert_str_eq(part.out, whole.out, "split at %zu:\n got  %s\n want %s", s, part.out,
				 whole.out);
	}
}

static void t_all(const char *in, const char *want)
{
	t_all_kind(HTTP_REQUEST, false, in, want);
}

Test(http_parse, simple_get)
{
	t_all("GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n",
	      "[GET /a?b=c 1.1 Host=x hl=32 ka=1 up=0 ch=0 body=0] left=0");
}

Test(http_parse, pipelined_requests_keep_their_order)
{
	t_all("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.0\r\n\r\n",
	      "[GET /1 1.1 Host=x hl=28 ka=1 up=0 ch=0 body=0]"
	      "[POST /2 1.1 Host=x Content-Length=3 hl=48 ka=1 up=0 ch=0 body=3]"
	      "[GET /3 1.0 hl=19 ka=0 up=0 ch=0 body=0] left=0");
}

Test(http_parse, chunked_body_ends_at_the_last_chunk)
{
	t_all("POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	      "5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nTrailer: t\r\n\r\nGET /n HTTP/1.1\r\nHost: y\r\n\r\n",
	      "[POST /u 1.1 Host=x Transfer-Encoding=chunked hl=57 ka=1 up=0 ch=1 body=41]"
	      "[GET /n 1.1 Host=y hl=28 ka=1 up=0 ch=0 body=0] left=0");
}

Test(http_parse, connection_close_and_http10_keep_alive)
{
	t_all("GET / HTTP/1.1\r\nConnection: close\r\nHost: a\r\n\r\n",
	      "[GET / 1.1 Connection=close Host=a hl=46 ka=0 up=0 ch=0 body=0] left=0");
	t_all("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	      "[GET / 1.0 Connection=keep-alive hl=42 ka=1 up=0 ch=0 body=0] left=0");
}

Test(http_parse, websocket_upgrade_is_flagged)
{
	t_all("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	      "[GET /ws 1.1 Host=a Connection=Upgrade Upgrade=websocket hl=70 ka=1 up=1 ch=0 body=0] left=0");
}

Test(http_parse, malformed_requests_are_400)
{
	t_all("GET / HTTP/1.1\r\nHost a\r\n\r\n", "[E400] left=26");
	t_all("GE\x01T / HTTP/1.1\r\n\r\n", "[E400] left=19");
	t_all("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "[E400] left=56");
	t_all("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
	      "[E400] left=65");
	t_all("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	      "[POST / 1.1 Transfer-Encoding=chunked hl=47 ka=1 up=0 ch=1 E400] left=4");
}

Test(http_parse, smuggling_shapes_are_400)
{
	/* Transfer-Encoding not ending in chunked (RFC 9112 §6.3). */
	t_all("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nhello", "[E400] left=49");
	/* obs-fold, a name with a space, an empty name. */
	t_all("GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", "[E400] left=30");
	t_all("GET / HTTP/1.1\r\nX B: a\r\n\r\n", "[E400] left=26");
	t_all("GET / HTTP/1.1\r\n: a\r\n\r\n", "[E400] left=23");
	/* Trailers of a chunked body are body bytes, not head fields. */
	t_all("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX B: c\r\n\r\n",
	      "[POST / 1.1 Transfer-Encoding=chunked hl=47 ka=1 up=0 ch=1 body=13] left=0");
}

/* Security review finding 8: framings and targets a backend may read
   differently from us (RFC 9112 §6.1, §3.2). */
Test(http_parse, transfer_encoding_only_a_lone_chunked_on_http11)
{
	t_all("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "[E400] left=52");
	t_all("POST / HTTP/1.1\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
	      "[E400] left=62");
	t_all("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
	      "[E400] left=61");
	t_all("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
	      "0\r\n\r\n", "[E400] left=77");
	t_all("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
	      "0\r\n\r\n", "[E400] left=80");
	/* Case and surrounding whitespace are fine. */
	t_all("POST / HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\n\r\n0\r\n\r\n",
	      "[POST / 1.1 Transfer-Encoding=Chunked  hl=49 ka=1 up=0 ch=1 body=5] left=0");
}

Test(http_parse, request_target_is_visible_ascii)
{
	t_all("GET /x\ty HTTP/1.1\r\nHost: x\r\n\r\n", "[E400] left=30");
	t_all("GET /x\x80y HTTP/1.1\r\nHost: x\r\n\r\n", "[E400] left=30");
	t_all("GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", "[E400] left=29");
	t_all("GET /x\x7fy HTTP/1.1\r\nHost: x\r\n\r\n", "[E400] left=30");
	t_all("GET /x\x01y HTTP/1.1\r\nHost: x\r\n\r\n", "[E400] left=30");
	t_all("GET /x\x1by HTTP/1.1\r\nHost: x\r\n\r\n", "[E400] left=30");
	t_all("GET /%C3%A9?a=b~ HTTP/1.1\r\nHost: x\r\n\r\n",
	      "[GET /%C3%A9?a=b~ 1.1 Host=x hl=38 ka=1 up=0 ch=0 body=0] left=0");
}

Test(http_parse, bounds_give_414_and_431)
{
	char uri[300], in[600];

	memset(uri, 'a', sizeof(uri));
	uri[0] = '/';
	uri[sizeof(uri) - 1] = '\0';
	snprintf(in, sizeof(in), "GET %s HTTP/1.1\r\n\r\n", uri);
	struct t_feed *f = calloc(1, sizeof(*f));
	t_run(f, HTTP_REQUEST, false, in, strlen(in), strlen(in), 0);
	cr_assert(strncmp(f->out, "[E414]", 6) == 0, "%s", f->out);
	/* Too many header lines (limit 8). */
	const char *many = "GET / HTTP/1.1\r\na: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\ne: 1\r\nf: 1\r\ng: 1\r\nh: 1\r\ni: 1\r\n\r\n";
	t_run(f, HTTP_REQUEST, false, many, strlen(many), strlen(many), 0);
	cr_assert(strncmp(f->out, "[E431]", 6) == 0, "%s", f->out);
	/* A head over 1024 bytes. */
	char big[1200];
	int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX: ");
	memset(big + n, 'v', 1100);
	big[n + 1100] = '\0';
	t_run(f, HTTP_REQUEST, false, big, strlen(big), strlen(big), 0);
	cr_assert(strncmp(f->out, "[E431]", 6) == 0, "%s", f->out);
	t_run(f, HTTP_REQUEST, false, big, strlen(big), 0, 1);
	cr_assert(strncmp(f->out, "[E431]", 6) == 0, "%s", f->out);
	free(f);
}

Test(http_parse, responses_with_length_chunked_and_eof)
{
	t_all_kind(HTTP_RESPONSE, false, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbodyHTTP/1.1 204 No Content\r\n\r\n",
		   "[200 OK 1.1 Content-Length=4 hl=38 ka=1 up=0 ch=0 body=4]"
		   "[204 No Content 1.1 hl=27 ka=1 up=0 ch=0 body=0] left=0");
	t_all_kind(HTTP_RESPONSE, false, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
		   "[200 OK 1.1 Transfer-Encoding=chunked hl=47 ka=1 up=0 ch=1 body=12] left=0");
	t_all_kind(HTTP_RESPONSE, false, "HTTP/1.1 200 OK\r\n\r\nuntil the end",
		   "[200 OK 1.1 hl=19 ka=0 up=0 ch=0 body=13 eof] left=0");
	t_all_kind(HTTP_RESPONSE, false, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		   "[100 Continue 1.1 hl=25 ka=1 up=0 ch=0 body=0]"
		   "[200 OK 1.1 Content-Length=0 hl=38 ka=1 up=0 ch=0 body=0] left=0");
}

Test(http_parse, response_to_head_has_no_body)
{
	t_all_kind(HTTP_RESPONSE, true, "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
		   "[200 OK 1.1 Content-Length=99 hl=39 ka=1 up=0 ch=0 body=0]"
		   "[200 OK 1.1 Content-Length=5 hl=38 ka=1 up=0 ch=0 body=0] left=0");
}

Test(http_parse, header_lookup_and_tokens)
{
	struct t_feed *f = calloc(1, sizeof(*f));
	const char *in = "GET / HTTP/1.1\r\nConnection: keep-alive, X-Foo\r\nconnection:  Upgrade \r\nHost: h\r\n\r\n";

	t_init(f, HTTP_REQUEST, false);
	memcpy(f->buf, in, strlen(in));
	cr_assert_gt(http_parse_head(&f->p, f->buf, strlen(in)), 0);
	cr_assert(http_header_has_token(f->buf, &f->h, "Connection", "x-foo"));
	cr_assert(http_header_has_token(f->buf, &f->h, "CONNECTION", "upgrade"));
	cr_assert(!http_header_has_token(f->buf, &f->h, "Connection", "close"));
	const struct http_header *h = http_header_find(f->buf, &f->h, "host");
	cr_assert_not_null(h);
	cr_assert_eq(h->value.len, 1);
	cr_assert_null(http_header_find(f->buf, &f->h, "Cookie"));
	free(f);
}
