/*
 * Tests for the HTTP/2 engine's defences (protocols/h2*.c): hand-built
 * client frames, and the exact frames the engine sends back (RST_STREAM
 * codes, GOAWAY codes and last stream ids, 431 answers). Rate limits use
 * small values here so that each test is quick; the defaults are checked
 * once.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "gh.h"
#include "h2_raw_t.h"

TestSuite(h2_attack, .fini = ha_fini);

/* Malformed requests (RFC 9113 8.1.1): RST_STREAM PROTOCOL_ERROR, never a request. */
Test(h2_attack, malformed_requests_reset_their_stream)
{
	const char *bad[][12] = {
		{ HA_REQ("/"), "connection", "keep-alive", NULL },
		{ HA_REQ("/"), "keep-alive", "5", NULL },
		{ HA_REQ("/"), "proxy-connection", "x", NULL },
		{ HA_REQ("/"), "transfer-encoding", "chunked", NULL },
		{ HA_REQ("/"), "upgrade", "h2c", NULL },
		{ HA_REQ("/"), "te", "gzip", NULL },
		{ HA_REQ("/"), "X-Upper", "1", NULL },
		{ ":method", "GET", ":scheme", "https", ":authority", "a", NULL },
		{ HA_REQ("/"), ":path", "/again", NULL },
		{ HA_REQ("/"), ":protocol", "websocket", NULL },
	};
	int32_t id = 1;

	ha_start(NULL);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++, id += 2)
		h2t_headers_frame(&t, &in, id, NGHTTP2_FLAG_END_STREAM, bad[i]);
	/* TE: trailers is allowed. */
	const char *te[] = { HA_REQ("/ok"), "te", "trailers", NULL };
	h2t_headers_frame(&t, &in, id, NGHTTP2_FLAG_END_STREAM, te);
	ha_go();
	for (int32_t k = 1; k < id; k += 2) {
		cr_assert(h2t_rst(&t, k), "stream %d is reset", k);
		cr_assert_eq(h2t_rst(&t, k)->code, H2_PROTOCOL_ERROR);
	}
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 1);
	cr_assert_eq(t.ev[0].id, id);
	cr_assert_eq(h2t_headers(&t, id)->status, 200);
	cr_assert_null(h2t_goaway(&t));
}

Test(h2_attack, content_length_mismatch_resets_a_known_stream)
{
	const char *nv[] = { ":method", "POST", ":scheme", "https", ":authority", "a",
			     ":path", "/", "content-length", "10", NULL };

	ha_start(NULL);
	t.app_no_push = true;
	h2t_headers_frame(&t, &in, 1, 0, nv);
	h2t_frame(&in, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "12345", 5);
	ha_go();
	cr_assert_eq(h2t_rst(&t, 1)->code, H2_PROTOCOL_ERROR);
	cr_assert_eq(t.ev[t.nev - 1].kind, H2_EV_CLOSED);
	cr_assert_eq(t.ev[t.nev - 1].code, H2_PROTOCOL_ERROR);
	cr_assert_eq(h2_streams(t.c), 0);
}

/* One header block in `frames` frames: HEADERS, then CONTINUATIONs. */
static void ha_block_frames(int32_t id, const uint8_t *blk, size_t n, size_t frames)
{
	size_t off = 0, i = 0;
	bool first = true;

	do {
		size_t k = n * (i + 1) / frames - off;

		i++;
		bool last = off + k == n;

		h2t_frame(&in, first ? NGHTTP2_HEADERS : NGHTTP2_CONTINUATION,
			  (uint8_t)((first ? NGHTTP2_FLAG_END_STREAM : 0) |
				    (last ? NGHTTP2_FLAG_END_HEADERS : 0)),
			  id, blk + off, k);
		off += k;
		first = false;
	} while (off < n);
}

static char ha_big[20000];

Test(h2_attack, header_list_past_the_bound_is_answered_431)
{
	static uint8_t blk[65536];

	memset(ha_big, 'v', sizeof(ha_big) - 1);
	const char *nv[] = { HA_REQ("/"), "x-big", ha_big, NULL };
	ha_start(NULL);
	ha_block_frames(1, blk, h2t_block(&t, nv, blk, sizeof(blk)), 2);
	/* One past the header count. */
	const char *many[2 * 102 + 9] = { HA_REQ("/") };
	for (int i = 0; i < 101; i++) {
		many[8 + 2 * i] = "x-h";
		many[9 + 2 * i] = "1";
	}
	h2t_headers_frame(&t, &in, 3, NGHTTP2_FLAG_END_STREAM, many);
	/* Exactly the count is fine. */
	many[8 + 2 * 100] = NULL;
	h2t_headers_frame(&t, &in, 5, NGHTTP2_FLAG_END_STREAM, many);
	ha_go();
	cr_assert_eq(h2t_headers(&t, 1)->status, 431);
	cr_assert(h2t_headers(&t, 1)->flags & NGHTTP2_FLAG_END_STREAM);
	cr_assert_eq(h2t_headers(&t, 3)->status, 431);
	cr_assert_eq(h2t_headers(&t, 5)->status, 200);
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 1, "only stream 5 reaches the caller");
	cr_assert_null(h2t_goaway(&t));
	cr_assert_eq(h2_streams(t.c), 0);
	cr_assert_null(h2t_rst(&t, 1), "its request had ended");
}

/* A 431 while the request body may still come: RST_STREAM NO_ERROR after it. */
Test(h2_attack, answer_431_before_the_body_ends_the_stream)
{
	static uint8_t blk[65536];

	memset(ha_big, 'v', sizeof(ha_big) - 1);
	const char *nv[] = { HA_REQ("/"), "x-big", ha_big, NULL };
	ha_start(NULL);
	size_t n = h2t_block(&t, nv, blk, sizeof(blk));
	h2t_frame(&in, NGHTTP2_HEADERS, 0, 1, blk, 16000);
	h2t_frame(&in, NGHTTP2_CONTINUATION, NGHTTP2_FLAG_END_HEADERS, 1, blk + 16000, n - 16000);
	h2t_frame(&in, NGHTTP2_DATA, 0, 1, "body", 4);
	ha_go();
	cr_assert_eq(t.nf, 5, "SETTINGS, WINDOW_UPDATE, SETTINGS ACK, HEADERS, RST_STREAM");
	cr_assert_eq(t.f[3].type, NGHTTP2_HEADERS);
	cr_assert_eq(t.f[3].status, 431);
	cr_assert_eq(t.f[4].type, NGHTTP2_RST_STREAM);
	cr_assert_eq(t.f[4].code, H2_NO_ERROR);
	cr_assert_eq(h2_streams(t.c), 0);
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 0);

	/* The body ended before the answer went out: no RST_STREAM then. */
	h2t_free(&t);
	in.len = 0;
	ha_start(NULL);
	n = h2t_block(&t, nv, blk, sizeof(blk));
	h2t_frame(&in, NGHTTP2_HEADERS, 0, 3, blk, 16000);
	h2t_frame(&in, NGHTTP2_CONTINUATION, NGHTTP2_FLAG_END_HEADERS, 3, blk + 16000, n - 16000);
	h2t_frame(&in, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 3, "body", 4);
	ha_go();
	cr_assert_eq(h2t_headers(&t, 3)->status, 431);
	cr_assert_null(h2t_rst(&t, 3));
	cr_assert_eq(h2_streams(t.c), 0);
}

/* A client's HPACK encoder may not grow its table past our
   SETTINGS_HEADER_TABLE_SIZE (RFC 7541 4.2): COMPRESSION_ERROR. */
Test(h2_attack, hpack_table_past_our_setting)
{
	struct h2_limits lim;
	static uint8_t blk[4096];
	const char *nv[] = { HA_REQ("/"), NULL };

	h2_limits_default(&lim);
	lim.header_table = 256;
	ha_start(&lim);
	/* A client that follows the setting says so first (RFC 7541 4.2). */
	cr_assert_eq(nghttp2_hd_deflate_change_table_size(t.def, 256), 0);
	ha_request(1, NGHTTP2_FLAG_END_STREAM);
	ha_go();
	cr_assert_eq(h2t_headers(&t, 1)->status, 200);
	/* A table size update to 4096, then a request. */
	blk[0] = 0x3f, blk[1] = 0xe1, blk[2] = 0x1f;
	size_t n = 3 + h2t_block(&t, nv, blk + 3, sizeof(blk) - 3);
	h2t_frame(&in, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 3,
		  blk, n);
	ha_go();
	/* libnghttp2's own connection error names the stream it had opened. */
	ha_goaway_is(NGHTTP2_COMPRESSION_ERROR, 3);
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 1);
}

Test(h2_attack, max_concurrent_streams)
{
	struct h2_limits lim;

	h2_limits_default(&lim);
	lim.max_streams = 4;
	ha_start(&lim);
	t.app_no_push = true;
	for (int32_t id = 1; id <= 9; id += 2)
		ha_request(id, NGHTTP2_FLAG_END_STREAM);
	ha_go();
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 4);
	/* libnghttp2 makes the fifth, after our SETTINGS were acknowledged,
	   a connection error naming the last stream it took. */
	ha_goaway_is(H2_PROTOCOL_ERROR, 7);
}

Test(h2_attack, streams_past_the_limit_before_settings_ack_are_refused)
{
	struct h2_limits lim;

	h2_limits_default(&lim);
	lim.max_streams = 2;
	h2t_init(&t, &lim);
	t.app_no_push = true;
	h2t_put(&in, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
	h2t_frame(&in, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
	for (int32_t id = 1; id <= 5; id += 2)
		ha_request(id, NGHTTP2_FLAG_END_STREAM);
	ha_go();
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 2);
	cr_assert_eq(h2t_rst(&t, 5)->code, H2_REFUSED_STREAM);
	cr_assert_null(h2t_goaway(&t));
}

/* CVE-2023-44487: open and reset, again and again. */
Test(h2_attack, rapid_reset_ends_with_enhance_your_calm)
{
	struct h2_limits lim;

	h2_limits_default(&lim);
	ha_start(&lim);
	int32_t id = 1;
	for (uint32_t i = 0; i <= lim.resets.burst; i++, id += 2) {
		ha_request(id, 0);
		h2t_rst_frame(&in, id, NGHTTP2_CANCEL);
	}
	/* What follows is ignored. */
	ha_request(id, NGHTTP2_FLAG_END_STREAM);
	ha_go();
	ha_goaway_is(H2_ENHANCE_YOUR_CALM, id - 2);
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 0, "no stream reached the caller");
	cr_assert_eq(h2_streams(t.c), 0);
}

Test(h2_attack, resets_at_a_browsers_pace_are_fine)
{
	struct h2_limits lim;

	h2_limits_default(&lim);
	ha_start(&lim);
	ha_go();
	int32_t id = 1;
	for (int i = 0; i < 500; i++, id += 2) {
		ha_request(id, 0);
		h2t_rst_frame(&in, id, NGHTTP2_CANCEL);
		t.now += 1000 / (lim.resets.per_s / 2); /* half the rate */
		ha_go();
	}
	cr_assert_null(h2t_goaway(&t));
	cr_assert(h2_want_read(t.c));
}

/* "MadeYouReset": streams we reset for the client's errors count too. */
Test(h2_attack, resets_caused_by_the_client_count)
{
	struct h2_limits lim;
	const char *bad[] = { HA_REQ("/"), "connection", "close", NULL };

	h2_limits_default(&lim);
	lim.resets = (struct h2_rate){ 10, 1 };
	ha_start(&lim);
	for (int32_t id = 1; id <= 23; id += 2)
		h2t_headers_frame(&t, &in, id, NGHTTP2_FLAG_END_STREAM, bad);
	ha_go();
	cr_assert_eq(h2t_count(&t, NGHTTP2_RST_STREAM), 11);
	cr_assert_eq(h2t_goaway(&t)->code, H2_ENHANCE_YOUR_CALM);
	cr_assert_eq(h2t_goaway(&t)->last_id, 0, "none was acted on");
}

/* CVE-2024-27316 / CVE-2024-28182: endless CONTINUATION frames. */
Test(h2_attack, continuation_flood_by_frames)
{
	static uint8_t blk[4096];
	const char *nv[] = { HA_REQ("/"), "a", "1", "b", "2", "c", "3", "d", "4", "e", "5",
			     "f", "6", "g", "7", "h", "8", "i", "9", NULL };
	size_t n;

	ha_start(NULL);
	/* 8 CONTINUATION frames are allowed... */
	n = h2t_block(&t, nv, blk, sizeof(blk));
	ha_block_frames(1, blk, n, 9);
	ha_go();
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 1);
	/* ... 9 are not. */
	n = h2t_block(&t, nv, blk, sizeof(blk));
	ha_block_frames(3, blk, n, 10);
	ha_go();
	ha_goaway_is(H2_ENHANCE_YOUR_CALM, 1);
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 1);
}

Test(h2_attack, continuation_flood_by_bytes)
{
	static uint8_t blk[131072];
	static char v[15000];

	memset(v, 'v', sizeof(v) - 1);
	const char *nv[] = { HA_REQ("/"), "a", v, "b", v, "c", v, "d", v, "e", v, NULL };
	ha_start(NULL);
	size_t n = h2t_block(&t, nv, blk, sizeof(blk));
	cr_assert_gt(n, 65536);
	ha_block_frames(1, blk, n, 5); /* 5 frames of less than 16 KiB */
	ha_go();
	ha_goaway_is(H2_ENHANCE_YOUR_CALM, 0);
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 0);
}
Test(h2_attack, bad_preface_is_fatal)
{
	h2t_init(&t, NULL);
	h2t_put(&in, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27);
	h2t_feed(&t, in.p, in.len);
	cr_assert(t.fatal);
	cr_assert_not(h2_want_read(t.c));
	cr_assert_not(h2_want_write(t.c));
	cr_assert_eq(h2_recv(t.c, (const uint8_t *)"x", 1, 0), H2_E_FATAL);
}

/* A client that sends and never reads: input stops once enough answers
   wait, and the responses the engine takes stay within conn_out. */
Test(h2_attack, client_that_never_reads)
{
	struct h2_limits lim;
	uint8_t one[H2_MAX_QUEUED + 10][17];
	size_t taken = 0;

	h2_limits_default(&lim);
	h2t_init(&t, &lim);
	h2t_preface(&in);
	h2t_feed(&t, in.p, in.len);
	in.len = 0;
	memset(one, 0, sizeof(one));
	for (size_t i = 0; i < ARRAY_SIZE(one); i++) {
		one[i][2] = 8;
		one[i][3] = NGHTTP2_PING;
	}
	cr_assert_eq(h2_recv(t.c, one[0], sizeof(one), t.now), (long)sizeof(one));
	cr_assert_not(h2_want_read(t.c), "PING answers wait: reading stops");
	cr_assert(h2_want_write(t.c));
	uint8_t buf[512];
	while (!h2_want_read(t.c))
		cr_assert_gt(h2_output(t.c, buf, sizeof(buf)), 0);
	while (h2_output(t.c, buf, sizeof(buf)) > 0)
		;

	/* 128 streams, each wanting 1 MB; nothing is read by the client. */
	t.app_no_push = true;
	for (int32_t id = 1; id < 256; id += 2)
		ha_request(id, NGHTTP2_FLAG_END_STREAM);
	cr_assert_eq(h2_recv(t.c, in.p, in.len, t.now), (long)in.len);
	struct h2_event ev;
	static uint8_t r[65536];
	while (h2_next_event(t.c, &ev))
		if (ev.kind == H2_EV_REQUEST)
			cr_assert_eq(h2_respond(t.c, ev.id, 200, NULL, 0, false), 0);
	for (int round = 0; round < 10; round++)
		for (int32_t id = 1; id < 256; id += 2)
			taken += h2_send_data(t.c, id, r, sizeof(r));
	cr_assert_eq(taken, lim.conn_out, "bounded by conn_out: %zu", taken);
	/* A little output is taken (one frame's worth): no more than that
	   room comes back. */
	h2_output(t.c, buf, sizeof(buf));
	size_t more = 0;
	for (int32_t id = 1; id < 256; id += 2)
		more += h2_send_data(t.c, id, r, sizeof(r));
	cr_assert_leq(more, 16384);
}

Test(h2_attack, extended_connect_when_enabled)
{
	struct h2_limits lim;
	const char *ws[] = { ":method", "CONNECT", ":protocol", "websocket", ":scheme", "https",
			     ":authority", "a.example", ":path", "/ws", NULL };

	h2_limits_default(&lim);
	lim.extended_connect = true;
	ha_start(&lim);
	t.app_no_push = true;
	h2t_headers_frame(&t, &in, 1, 0, ws);
	ha_go();
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 1);
	cr_assert_null(h2t_rst(&t, 1));
	cr_assert_eq(t.h1_len, -1, "a tunnel has no HTTP/1.1 form");
}

/* RFC 8441 + RFC 6455 4.1: the WebSocket extended CONNECT as the HTTP/1.1
   Upgrade a backend takes: GET, Host from :authority, the client's fields
   but its sec-websocket-key (and content-length), our key. */
Test(h2_attack, extended_connect_websocket_as_http11_upgrade)
{
	struct h2_limits lim;
	const char *ws[] = { ":method", "CONNECT", ":protocol", "WebSocket", ":scheme", "https",
			     ":authority", "a.example", ":path", "/ws?x=1",
			     "sec-websocket-version", "13", "sec-websocket-key", "theirs",
			     "sec-websocket-protocol", "chat, v2", "cookie", "a=1", "cookie", "b=2",
			     NULL };
	const char want[] = "GET /ws?x=1 HTTP/1.1\r\nHost: a.example\r\n"
			    "sec-websocket-version: 13\r\nsec-websocket-protocol: chat, v2\r\n"
			    "cookie: a=1; b=2\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			    "Sec-WebSocket-Key: " H2T_WS_KEY "\r\n";

	h2_limits_default(&lim);
	lim.extended_connect = true;
	ha_start(&lim);
	t.app_no_push = true;
	h2t_headers_frame(&t, &in, 1, 0, ws);
	ha_go();
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 1);
	cr_assert(t.is_ws);
	cr_assert_eq(t.ws_len, (int)sizeof(want) - 1, "%d: %.*s", t.ws_len, t.ws_len > 0 ? t.ws_len : 0,
		     t.ws);
	cr_assert_arr_eq(t.ws, want, sizeof(want) - 1);
}

/* Another :protocol is no WebSocket: no Upgrade form (the wiring answers 501). */
Test(h2_attack, extended_connect_other_protocol)
{
	struct h2_limits lim;
	const char *req[] = { ":method", "CONNECT", ":protocol", "websockets", ":scheme", "https",
			      ":authority", "a.example", ":path", "/ws", NULL };

	h2_limits_default(&lim);
	lim.extended_connect = true;
	ha_start(&lim);
	t.app_no_push = true;
	h2t_headers_frame(&t, &in, 1, 0, req);
	ha_go();
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 1);
	cr_assert_not(t.is_ws);
	cr_assert_eq(t.ws_len, -1);
}
