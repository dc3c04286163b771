/*
 * test_session_http2.c - HTTP/2 sessions through the harness: the client
 * offers ALPN "h2" to the implicit-TLS http listener (http2 on by
 * default), its streams reach the HTTP/1.1 backend as HTTP/1.1 requests
 * and the answers come back as HTTP/2 frames; and the findings of
 * fuzz_session_http2, replayed.
 */
#define _GNU_SOURCE
#include <string.h>

#include <criterion/criterion.h>
#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <stdio.h>

#include "gh_harness.h"

static struct gh_env env;
static struct gh_conn c;

static void setup(void)
{
	static const unsigned char h2[] = { 2, 'h', '2' };
	char err[512];

	cr_assert_eq(gh_env_init(&env, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(SSL_CTX_set_alpn_protos(env.cli_ctx, h2, sizeof(h2)), 0);
}

static void teardown(void)
{
	if (c.e != NULL)
		gh_conn_close(&c);
	cr_assert_eq(gh_env_fini(&env), 0, "the loop closed with live handles");
}

TestSuite(session_http2, .init = setup, .fini = teardown);

#define BSENT ((const char *)c.bsent.p)

static size_t frame(uint8_t *o, int type, int flags, uint32_t sid, const void *p, size_t n)
{
	o[0] = (uint8_t)(n >> 16);
	o[1] = (uint8_t)(n >> 8);
	o[2] = (uint8_t)n;
	o[3] = (uint8_t)type;
	o[4] = (uint8_t)flags;
	o[5] = (uint8_t)(sid >> 24);
	o[6] = (uint8_t)(sid >> 16);
	o[7] = (uint8_t)(sid >> 8);
	o[8] = (uint8_t)sid;
	if (n > 0)
		memcpy(o + 9, p, n);
	return 9 + n;
}

/* An HPACK literal field without indexing (short name and value). */
static size_t lit(uint8_t *o, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);

	o[0] = 0;
	o[1] = (uint8_t)nl;
	memcpy(o + 2, name, nl);
	o[2 + nl] = (uint8_t)vl;
	memcpy(o + 3 + nl, value, vl);
	return 3 + nl + vl;
}

static size_t get(uint8_t *o, uint32_t sid, const char *path)
{
	uint8_t blk[256];
	size_t n = 0;

	n += lit(blk + n, ":method", "GET");
	n += lit(blk + n, ":scheme", "https");
	n += lit(blk + n, ":authority", "mail.a.test");
	n += lit(blk + n, ":path", path);
	return frame(o, 1, 0x5, sid, blk, n);
}

/* Frames of type in what the client read, on stream sid; the flags of
   the last one (-1: none). */
static int frames_on(int type, uint32_t sid, int *count_out)
{
	const uint8_t *p = c.out.p;
	size_t n = c.out.len, at = 0;
	int last = -1;

	*count_out = 0;
	while (at + 9 <= n) {
		size_t len = (size_t)p[at] << 16 | (size_t)p[at + 1] << 8 | p[at + 2];
		uint32_t id = ((uint32_t)p[at + 5] << 24 | (uint32_t)p[at + 6] << 16 |
			       (uint32_t)p[at + 7] << 8 | p[at + 8]) & 0x7fffffff;
		if (at + 9 + len > n)
			break;
		if (p[at + 3] == type && id == sid) {
			(*count_out)++;
			last = p[at + 4];
		}
		at += 9 + len;
	}
	return last;
}

Test(session_http2, streams_are_relayed_to_the_http11_backend)
{
	uint8_t out[1024];
	size_t n = 0;
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

	cr_assert_eq(gh_conn_open(&c, &env, GH_HTTP, GH_TLS, 0), 0);
	cr_assert(c.tls_done);
	memcpy(out, preface, sizeof(preface) - 1);
	n = sizeof(preface) - 1;
	n += frame(out + n, 4, 0, 0, NULL, 0);
	n += get(out + n, 1, "/one");
	n += get(out + n, 3, "/two");
	gh_send(&c, out, n, 0);
	gh_settle(&c, 50);
	cr_assert_not_null(strstr(BSENT, "GET /one HTTP/1.1\r\nHost: mail.a.test\r\n"), "%s", BSENT);
	cr_assert_not_null(strstr(BSENT, "GET /two HTTP/1.1\r\nHost: mail.a.test\r\n"), "%s", BSENT);
	cr_assert_not_null(strstr(BSENT, "X-Forwarded-Proto: https\r\n"), "%s", BSENT);
	/* Each stream: a HEADERS frame, then its body ending the stream. */
	for (uint32_t sid = 1; sid <= 3; sid += 2) {
		int k;
		cr_assert_neq(frames_on(1, sid, &k), -1, "HEADERS on stream %u", sid);
		cr_assert_eq(k, 1);
		int fl = frames_on(0, sid, &k);
		cr_assert(k >= 1 && (fl & 1), "DATA ending stream %u (flags %d, %d frames)", sid, fl, k);
	}
	cr_assert_eq(gh_conn_close(&c), 0, "session freed, no handle or buffer left");
}

/* The :status of the (first) HEADERS frame on sid, decoding every header
   block the client read in order (HPACK state); -1: none. */
static int status_on(uint32_t sid)
{
	const uint8_t *p = c.out.p;
	size_t n = c.out.len, at = 0;
	nghttp2_hd_inflater *inf;
	int status = -1;

	cr_assert_eq(nghttp2_hd_inflate_new(&inf), 0);
	while (at + 9 <= n) {
		size_t len = (size_t)p[at] << 16 | (size_t)p[at + 1] << 8 | p[at + 2];
		uint32_t id = ((uint32_t)p[at + 5] << 24 | (uint32_t)p[at + 6] << 16 |
			       (uint32_t)p[at + 7] << 8 | p[at + 8]) & 0x7fffffff;
		if (at + 9 + len > n)
			break;
		if (p[at + 3] == 1) {
			const uint8_t *b = p + at + 9;
			size_t left = len;
			for (;;) {
				nghttp2_nv nv;
				int fl = 0;
				ssize_t r = nghttp2_hd_inflate_hd2(inf, &nv, &fl, b, left, 1);
				cr_assert_geq(r, 0, "HPACK");
				b += r;
				left -= (size_t)r;
				if ((fl & NGHTTP2_HD_INFLATE_EMIT) && id == sid && status < 0 &&
				    nv.namelen == 7 && memcmp(nv.name, ":status", 7) == 0)
					status = atoi((const char *)nv.value);
				if (fl & NGHTTP2_HD_INFLATE_FINAL) {
					nghttp2_hd_inflate_end_headers(inf);
					break;
				}
				if (r == 0 && left == 0)
					break;
			}
		}
		at += 9 + len;
	}
	nghttp2_hd_inflate_del(inf);
	return status;
}

static size_t preface(uint8_t *o)
{
	static const char pre[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

	memcpy(o, pre, sizeof(pre) - 1);
	return sizeof(pre) - 1 + frame(o + sizeof(pre) - 1, 4, 0, 0, NULL, 0);
}

/*
 * The backend gets exactly the HTTP/1.1 head of the stream's request
 * (made with no parse): Host from :authority (a host header that says
 * otherwise dropped), the cookie fields joined in the place of the
 * first, the other fields as sent, then gatehouse's own.
 */
Test(session_http2, the_backend_gets_exactly_the_request_head)
{
	uint8_t out[2048], blk[512];
	size_t n = preface(out), b = 0;

	cr_assert_eq(gh_conn_open(&c, &env, GH_HTTP, GH_TLS, 0), 0);
	b += lit(blk + b, ":method", "GET");
	b += lit(blk + b, ":scheme", "https");
	b += lit(blk + b, ":authority", "mail.a.test");
	b += lit(blk + b, ":path", "/x?y=1");
	b += lit(blk + b, "host", "other.test");
	b += lit(blk + b, "cookie", "a=1");
	b += lit(blk + b, "user-agent", "t/1");
	b += lit(blk + b, "cookie", "b=2");
	b += lit(blk + b, "x-forwarded-for", "10.9.9.9");
	n += frame(out + n, 1, 0x5, 1, blk, b);
	gh_send(&c, out, n, 0);
	gh_settle(&c, 50);
	cr_assert_str_eq(BSENT, "GET /x?y=1 HTTP/1.1\r\nHost: mail.a.test\r\ncookie: a=1; b=2\r\n"
				"user-agent: t/1\r\nX-Forwarded-For: 127.0.0.1\r\n"
				"X-Real-IP: 127.0.0.1\r\nX-Forwarded-Proto: https\r\n"
				"Connection: keep-alive\r\n\r\n");
	cr_assert_eq(status_on(1), 200);
	cr_assert_eq(gh_conn_close(&c), 0);
}

/* A body without a length goes chunked; the head says so. */
Test(session_http2, a_body_without_a_length_goes_chunked)
{
	uint8_t out[2048], blk[512];
	size_t n = preface(out), b = 0;

	cr_assert_eq(gh_conn_open(&c, &env, GH_HTTP, GH_TLS, 0), 0);
	b += lit(blk + b, ":method", "POST");
	b += lit(blk + b, ":scheme", "https");
	b += lit(blk + b, ":authority", "mail.a.test");
	b += lit(blk + b, ":path", "/p");
	n += frame(out + n, 1, 0x4, 1, blk, b);
	n += frame(out + n, 0, 0x1, 1, "hello", 5);
	gh_send(&c, out, n, 0);
	gh_settle(&c, 50);
	cr_assert_str_eq(BSENT, "POST /p HTTP/1.1\r\nHost: mail.a.test\r\n"
				"Transfer-Encoding: chunked\r\nX-Forwarded-For: 127.0.0.1\r\n"
				"X-Real-IP: 127.0.0.1\r\nX-Forwarded-Proto: https\r\n"
				"Connection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
	cr_assert_eq(gh_conn_close(&c), 0);
}

/*
 * Bounds as for HTTP/1.1: http.max_headers (100) regular fields pass the
 * engine, but with Host the head has 101 lines: 431, as an HTTP/1.1
 * client sending them gets, and nothing reaches the backend; 99 pass.
 */
Test(session_http2, header_lines_past_max_headers_get_431)
{
	static uint8_t out[8192], blk[4096];

	for (int nh = 99; nh <= 100; nh++) {
		size_t n = preface(out), b = 0;
		cr_assert_eq(gh_conn_open(&c, &env, GH_HTTP, GH_TLS, 0), 0);
		b += lit(blk + b, ":method", "GET");
		b += lit(blk + b, ":scheme", "https");
		b += lit(blk + b, ":authority", "mail.a.test");
		b += lit(blk + b, ":path", "/h");
		for (int i = 0; i < nh; i++) {
			char name[8];
			snprintf(name, sizeof(name), "x-%02d", i);
			b += lit(blk + b, name, "v");
		}
		n += frame(out + n, 1, 0x5, 1, blk, b);
		gh_send(&c, out, n, 0);
		gh_settle(&c, 50);
		if (nh == 99) {
			cr_assert_not_null(strstr(BSENT, "GET /h HTTP/1.1\r\n"), "%s", BSENT);
			cr_assert_eq(status_on(1), 200);
		} else {
			cr_assert_eq(c.bsent.len, 0, "%s", BSENT);
			cr_assert_eq(status_on(1), 431);
		}
		cr_assert_eq(gh_conn_close(&c), 0);
		memset(&c, 0, sizeof(c));
	}
}

/* The DATA bytes the client read on sid, into out (NUL-terminated). */
static size_t data_on(uint32_t sid, char *out, size_t cap)
{
	const uint8_t *p = c.out.p;
	size_t n = c.out.len, at = 0, got = 0;

	while (at + 9 <= n) {
		size_t len = (size_t)p[at] << 16 | (size_t)p[at + 1] << 8 | p[at + 2];
		uint32_t id = ((uint32_t)p[at + 5] << 24 | (uint32_t)p[at + 6] << 16 |
			       (uint32_t)p[at + 7] << 8 | p[at + 8]) & 0x7fffffff;
		if (at + 9 + len > n)
			break;
		if (p[at + 3] == 0 && id == sid && got + len < cap) {
			memcpy(out + got, p + at + 9, len);
			got += len;
		}
		at += 9 + len;
	}
	out[got] = 0;
	return got;
}

static int ndata; /* DATA frames of the last answered() */

/* One GET on stream 1 answered by the backend with resp (written in two
   pieces, split at cut); the client's status and body. */
static int answered(const char *method, const char *resp, size_t cut, char *body, size_t cap)
{
	uint8_t out[1024], blk[256];
	size_t n = preface(out), b = 0;

	cr_assert_eq(gh_conn_open(&c, &env, GH_HTTP, GH_TLS, 0), 0);
	c.backend_auto = false;
	b += lit(blk + b, ":method", method);
	b += lit(blk + b, ":scheme", "https");
	b += lit(blk + b, ":authority", "mail.a.test");
	b += lit(blk + b, ":path", "/r");
	n += frame(out + n, 1, 0x5, 1, blk, b);
	gh_send(&c, out, n, 0);
	gh_settle(&c, 50);
	cr_assert_not_null(strstr(BSENT, "/r HTTP/1.1\r\n"), "%s", BSENT);
	gh_backend_send(&c, resp, cut);
	gh_settle(&c, 20);
	gh_backend_send(&c, resp + cut, strlen(resp) - cut);
	gh_settle(&c, 50);
	int st = status_on(1);
	int k;
	int fl = frames_on(0, 1, &k);
	data_on(1, body, cap);
	ndata = k;
	cr_assert(k == 0 || (fl & 1), "the last DATA ends the stream");
	if (k == 0)
		cr_assert(frames_on(1, 1, &k) & 1, "HEADERS end the stream");
	cr_assert_eq(gh_conn_close(&c), 0);
	memset(&c, 0, sizeof(c));
	return st;
}

/*
 * Responses reach the client whatever their framing and however the
 * backend's writes split them: a length-framed body (its head taken
 * line by line, the body counted), chunked (parsed, de-chunked), none
 * (204, HEAD), bytes past the length dropped.
 */
Test(session_http2, responses_of_every_framing)
{
	static const char cl[] = "HTTP/1.1 200 OK\r\nSet-Cookie: a=b; Secure\r\nContent-Length: 11\r\n"
				 "X-A: 1\r\n\r\nhello world";
	char body[256];

	for (size_t cut = 1; cut < sizeof(cl) - 1; cut += 13) {
		cr_assert_eq(answered("GET", cl, cut, body, sizeof(body)), 200, "cut %zu", cut);
		cr_assert_str_eq(body, "hello world", "cut %zu", cut);
	}
	cr_assert_eq(answered("GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				     "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 40, body,
			      sizeof(body)),
		     200);
	cr_assert_str_eq(body, "hello world");
	cr_assert_eq(answered("GET", "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!extra",
			      44, body, sizeof(body)),
		     404);
	cr_assert_str_eq(body, "no!");
	cr_assert_eq(answered("GET", "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n", 10, body,
			      sizeof(body)),
		     204);
	cr_assert_eq(ndata, 0, "no DATA after 204");
	cr_assert_eq(answered("HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 10, body,
			      sizeof(body)),
		     200);
	cr_assert_eq(ndata, 0, "no DATA after a response to HEAD");
}

/*
 * Found by fuzz_session_http2: the client closes while a stream's backend
 * connect is under way; freeing the session freed the stream's exchange
 * with session_upstream_release on a connection the session had already
 * closed and freed (heap-use-after-free in session_upstream_release). The
 * fix: a session going away frees its streams without touching their
 * connections (http2__stream_free(..., gone)).
 */
Test(session_http2, close_while_a_stream_connects)
{
	static const uint8_t s[] = {
		0x12, 0x00, 0x70, 'P', 'R', 'I', ' ', '*', ' ', 'H', 'T', 'T', 'P', '/', '2', '.',
		'0', '\r', '\n', '\r', '\n', 'S', 'M', '\r', '\n', '\r', '\n', 0x00, 0x00, 0x00,
		0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46, 0x01, 0x05, 0x00, 0x00,
		0x00, 0x01, 0x00, 0x07, ':', 'm', 'e', 't', 'h', 'o', 'd', 0x03, 'G', 'E', 'T',
		0x00, 0x07, ':', 's', 'c', 'h', 'e', 'm', 'e', 0x05, 'h', 't', 't', 'p', 's',
		0x00, 0x0a, ':', 'a', 'u', 't', 'h', 'o', 'r', 'i', 't', 'y', 0x10, 'm', 'a',
		'i', 'l', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm', 0x00,
		0x05, ':', 'p', 'a', 't', 'h', 0x05, '/', 's', 'l', 'o', 'w', 0x0d, 0x05, 0x0d,
	};
	cr_assert_eq(gh_script_run(&env, GH_HTTP, s, sizeof(s)), 0);
}

/* An extended CONNECT for a WebSocket (RFC 8441) on sid. */
static size_t ws_connect(uint8_t *o, uint32_t sid, const char *path)
{
	uint8_t blk[256];
	size_t n = 0;

	n += lit(blk + n, ":method", "CONNECT");
	n += lit(blk + n, ":protocol", "websocket");
	n += lit(blk + n, ":scheme", "https");
	n += lit(blk + n, ":authority", "mail.a.test");
	n += lit(blk + n, ":path", path);
	n += lit(blk + n, "sec-websocket-version", "13");
	return frame(o, 1, 0x4, sid, blk, n);
}

/* The DATA payload the client read on sid, joined, into o (cap bytes). */
static size_t ws_data_on(uint32_t sid, char *o, size_t cap, bool *end_out)
{
	const uint8_t *p = c.out.p;
	size_t n = c.out.len, at = 0, got = 0;

	*end_out = false;
	while (at + 9 <= n) {
		size_t len = (size_t)p[at] << 16 | (size_t)p[at + 1] << 8 | p[at + 2];
		uint32_t id = ((uint32_t)p[at + 5] << 24 | (uint32_t)p[at + 6] << 16 |
			       (uint32_t)p[at + 7] << 8 | p[at + 8]) & 0x7fffffff;
		if (at + 9 + len > n)
			break;
		if (p[at + 3] == 0 && id == sid) {
			size_t k = len < cap - got ? len : cap - got;
			memcpy(o + got, p + at + 9, k);
			got += k;
			*end_out |= (p[at + 4] & 1) != 0;
		}
		at += 9 + len;
	}
	return got;
}

/*
 * WebSocket over HTTP/2: the backend gets an HTTP/1.1 Upgrade with a key
 * of ours, its 101 with that key's accept makes the stream answer 200,
 * then bytes pass both ways; the client's END_STREAM is a FIN to the
 * backend (which may still answer), the backend's close END_STREAM.
 */
Test(session_http2, websocket_tunnel_both_ways)
{
	uint8_t out[1024];
	size_t n = preface(out);
	char key[64], head[512], got[256];
	bool end;

	cr_assert_eq(gh_conn_open(&c, &env, GH_HTTP, GH_TLS, 0), 0);
	c.backend_auto = false;
	n += ws_connect(out + n, 1, "/ws?a=1");
	gh_send(&c, out, n, 0);
	gh_settle(&c, 50);
	cr_assert_not_null(strstr(BSENT, "GET /ws?a=1 HTTP/1.1\r\nHost: mail.a.test\r\n"), "%s", BSENT);
	cr_assert_not_null(strstr(BSENT, "Upgrade: websocket\r\n"), "%s", BSENT);
	const char *k = strstr(BSENT, "Sec-WebSocket-Key: ");
	cr_assert_not_null(k, "%s", BSENT);
	k += strlen("Sec-WebSocket-Key: ");
	size_t kl = strcspn(k, "\r");
	cr_assert_eq(kl, 24);
	memcpy(key, k, kl);
	key[kl] = '\0';
	/* Its accept, as a WebSocket server computes it. */
	uint8_t md[SHA_DIGEST_LENGTH];
	char acc[64], cat[128];
	snprintf(cat, sizeof(cat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
	SHA1((const uint8_t *)cat, strlen(cat), md);
	EVP_EncodeBlock((uint8_t *)acc, md, sizeof(md));
	snprintf(head, sizeof(head),
		 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\nhello", acc);
	gh_backend_send(&c, head, strlen(head));
	gh_settle(&c, 50);
	cr_assert_eq(status_on(1), 200);
	cr_assert_eq(ws_data_on(1, got, sizeof(got), &end), 5);
	cr_assert_arr_eq(got, "hello", 5);
	cr_assert_not(end);
	/* Client bytes to the backend, unframed, then END_STREAM. */
	size_t before = c.bsent.len;
	n = frame(out, 0, 0, 1, "ping", 4);
	n += frame(out + n, 0, 1, 1, "!", 1);
	gh_send(&c, out, n, 0);
	gh_settle(&c, 50);
	cr_assert_eq(c.bsent.len - before, 5);
	cr_assert_arr_eq(BSENT + before, "ping!", 5);
	cr_assert(c.b[0].eof, "the client's END_STREAM is a FIN to the backend");
	/* The backend's close: END_STREAM. (That it may still answer after
	   the FIN: tests/e2e/test_http2_websocket.py; the harness's backend
	   closes at the FIN.) */
	gh_backend_close(&c);
	gh_settle(&c, 50);
	size_t gk = ws_data_on(1, got, sizeof(got), &end);
	cr_assert_eq(gk, 5, "%zu: %.*s end %d", gk, (int)gk, got, end);
	cr_assert(end);
	cr_assert_eq(gh_conn_close(&c), 0, "session freed, no handle or buffer left");
}

/* A 101 whose accept is not our key's: 502, and no byte of the backend's. */
Test(session_http2, websocket_wrong_accept_is_502)
{
	uint8_t out[1024];
	size_t n = preface(out);
	static const char bad[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
				  "Connection: Upgrade\r\n"
				  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nsecret";
	char got[64];
	bool end;

	cr_assert_eq(gh_conn_open(&c, &env, GH_HTTP, GH_TLS, 0), 0);
	c.backend_auto = false;
	n += ws_connect(out + n, 1, "/ws");
	gh_send(&c, out, n, 0);
	gh_settle(&c, 50);
	gh_backend_send(&c, bad, sizeof(bad) - 1);
	gh_settle(&c, 50);
	cr_assert_eq(status_on(1), 502);
	size_t k = ws_data_on(1, got, sizeof(got), &end);
	cr_assert(end);
	cr_assert_null(memmem(got, k, "secret", 6));
	cr_assert_eq(gh_conn_close(&c), 0, "session freed, no handle or buffer left");
}
