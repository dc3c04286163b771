/*
 * Tests for the HTTP/2 engine (protocols/h2*.c) on the normal paths, with
 * a real libnghttp2 client session in memory: requests and their HTTP/1.1
 * form, request bodies and flow control, many streams, responses bigger
 * than the client's window, resets, GOAWAY both ways, and the same input
 * split at every offset.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "h2_t.h"

static struct h2t t;

static void h2_fini(void)
{
	h2t_free(&t);
}

TestSuite(h2, .fini = h2_fini);

/* An app that leaves every answer to the test. */
static void h2t_app_none(struct h2t *tt, const struct h2_event *ev)
{
}

static const nghttp2_settings_entry h2_cl_default[] = {
	{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
};

Test(h2, get_gets_an_answer_and_an_http11_head)
{
	const char *extra[] = { "accept", "*/*", "cookie", "a=1", "user-agent", "t",
				"cookie", "b=2", NULL };

	h2t_init(&t, NULL);
	h2t_client(&t, h2_cl_default, 1, false);
	int32_t id = h2t_request(&t, "GET", "/mail?x=1", 0, extra);
	h2t_pump(&t);

	cr_assert_eq(h2t_cs(&t, id)->status, 200);
	cr_assert_eq(h2t_cs(&t, id)->body, 5);
	cr_assert(h2t_cs(&t, id)->closed);
	cr_assert_eq(h2t_cs(&t, id)->code, H2_NO_ERROR);
	cr_assert_eq(t.cl_content_type, 1, "the backend's headers, made fit for HTTP/2");
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 1);
	cr_assert_eq(h2t_events(&t, H2_EV_CLOSED), 1);
	/* :authority becomes Host; the two cookies one, in the first's place. */
	cr_assert_gt(t.h1_len, 0);
	t.h1[t.h1_len] = '\0';
	cr_assert_str_eq(t.h1, "GET /mail?x=1 HTTP/1.1\r\nHost: mail.example.com\r\n"
			       "accept: */*\r\ncookie: a=1; b=2\r\nuser-agent: t\r\n");
	cr_assert_not(t.h1_chunked);
	cr_assert_eq(h2_streams(t.c), 0, "the closed stream is freed");
	cr_assert(h2_want_read(t.c));
	cr_assert_not(h2_want_write(t.c));
}

Test(h2, settings_the_client_sees)
{
	h2t_init(&t, NULL);
	h2t_client(&t, h2_cl_default, 1, false);
	h2t_request(&t, "GET", "/", 0, NULL);
	h2t_pump(&t);
	cr_assert_eq(nghttp2_session_get_remote_settings(t.cl, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), 128);
	cr_assert_eq(nghttp2_session_get_remote_settings(t.cl, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE), 65535);
	cr_assert_eq(nghttp2_session_get_remote_settings(t.cl, NGHTTP2_SETTINGS_HEADER_TABLE_SIZE), 4096);
	cr_assert_eq(nghttp2_session_get_remote_settings(t.cl, NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE), 16384);
	cr_assert_eq(nghttp2_session_get_remote_settings(t.cl, NGHTTP2_SETTINGS_ENABLE_PUSH), 0);
	cr_assert_eq(nghttp2_session_get_remote_settings(t.cl, NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES), 1);
	cr_assert_eq(nghttp2_session_get_remote_settings(t.cl, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL), 0);
	/* The connection window was opened to conn_window. */
	cr_assert_eq(nghttp2_session_get_remote_window_size(t.cl), (int32_t)t.lim.conn_window);
}

Test(h2, request_forms_for_http11)
{
	const char *host[] = { "host", "other.example", "content-type", "text/plain", NULL };

	h2t_init(&t, NULL);
	h2t_client(&t, h2_cl_default, 1, false);
	/* A body without Content-Length: chunked for the backend. */
	h2t_request(&t, "POST", "/a", 10, host);
	h2t_pump(&t);
	t.h1[t.h1_len] = '\0';
	cr_assert_str_eq(t.h1, "POST /a HTTP/1.1\r\nHost: mail.example.com\r\n"
			       "content-type: text/plain\r\nTransfer-Encoding: chunked\r\n");
	cr_assert(t.h1_chunked);
	/* A POST ended with its head: Content-Length: 0. */
	h2t_request(&t, "POST", "/b", 0, NULL);
	h2t_pump(&t);
	t.h1[t.h1_len] = '\0';
	cr_assert_str_eq(t.h1, "POST /b HTTP/1.1\r\nHost: mail.example.com\r\n"
			       "Content-Length: 0\r\n");
	/* The client's Content-Length is kept as it is. */
	const char *cl[] = { "content-length", "10", NULL };
	h2t_request(&t, "PUT", "/c", 10, cl);
	h2t_pump(&t);
	t.h1[t.h1_len] = '\0';
	cr_assert_str_eq(t.h1, "PUT /c HTTP/1.1\r\nHost: mail.example.com\r\ncontent-length: 10\r\n");
	cr_assert_not(t.h1_chunked);
	cr_assert_eq(t.body.len, 20);
}

Test(h2, post_body_past_the_window_follows_consume)
{
	size_t total = 300000;

	h2t_init(&t, NULL);
	t.app_no_consume = true;
	t.app_no_push = true;
	h2t_client(&t, h2_cl_default, 1, false);
	int32_t id = h2t_request(&t, "POST", "/upload", total, NULL);
	h2t_pump(&t);

	/* Nothing consumed: the client stopped at the stream window and the
	   engine holds exactly that much. */
	const uint8_t *d;
	bool end;
	size_t held = h2_body_peek(t.c, id, &d, &end);

	cr_assert_eq(held, t.lim.stream_window);
	cr_assert_eq(h2t_cs(&t, id)->left, total - t.lim.stream_window);
	cr_assert_eq(nghttp2_session_get_stream_remote_window_size(t.cl, id), 0);
	cr_assert_not(end);

	/* Consume in small pieces: each lets the client send as much more. */
	size_t got = 0;
	for (int i = 0; i < 100000 && !end; i++) {
		size_t n = h2_body_peek(t.c, id, &d, &end);

		cr_assert_leq(n, t.lim.stream_window, "never more than the window waits");
		for (size_t k = 0; k < n; k++)
			cr_assert_eq(d[k], 'x');
		n = n > 1000 ? 1000 : n;
		h2_body_consume(t.c, id, n);
		got += n;
		h2t_pump(&t);
	}
	cr_assert(end, "got %zu left %zu", got, h2t_cs(&t, id)->left);
	cr_assert_eq(got, total);
	cr_assert_eq(h2t_cs(&t, id)->left, 0);
	/* Then the answer ends and the stream closes. */
	cr_assert_eq(h2_respond(t.c, id, 204, NULL, 0, true), -1, "answered already");
	h2_send_end(t.c, id);
	h2t_pump(&t);
	cr_assert_eq(h2t_cs(&t, id)->status, 200);
	cr_assert(h2t_cs(&t, id)->closed);
	cr_assert_eq(h2t_cs(&t, id)->code, H2_NO_ERROR);
}

Test(h2, many_concurrent_streams)
{
	int32_t ids[100];

	h2t_init(&t, NULL);
	t.resp_len = 20000;
	h2t_client(&t, h2_cl_default, 1, false);
	for (int i = 0; i < 100; i++)
		ids[i] = h2t_request(&t, "GET", "/s", 0, NULL);
	h2t_pump(&t);
	for (int i = 0; i < 100; i++) {
		cr_assert_eq(h2t_cs(&t, ids[i])->status, 200);
		cr_assert_eq(h2t_cs(&t, ids[i])->body, 20000);
		cr_assert_eq(h2t_cs(&t, ids[i])->code, H2_NO_ERROR);
	}
	cr_assert_eq(h2t_events(&t, H2_EV_CLOSED), 100);
	cr_assert_eq(h2_streams(t.c), 0);
}

/* The client's window is 16 KiB and it sends no WINDOW_UPDATE until told:
   the engine holds at most stream_out bytes and stops taking more. */
Test(h2, response_past_the_client_window_waits_bounded)
{
	const nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16384 },
	};
	size_t total = 500000;

	h2t_init(&t, NULL);
	t.resp_len = total;
	h2t_client(&t, iv, 2, true);
	int32_t id = h2t_request(&t, "GET", "/big", 0, NULL);
	h2t_pump(&t);

	cr_assert_eq(h2t_cs(&t, id)->status, 200);
	cr_assert_eq(h2t_cs(&t, id)->body, 16384, "the client window's worth");
	cr_assert_eq(h2_room(t.c, id), 0, "the stream is full");
	cr_assert_eq(h2t_es(&t, id)->resp_left, total - 16384 - t.lim.stream_out);
	cr_assert_not(h2_want_write(t.c), "nothing to send until the window opens");

	while (h2t_cs(&t, id)->body < total) {
		size_t before = h2t_cs(&t, id)->body;

		nghttp2_session_consume(t.cl, id, 16384);
		h2t_pump(&t);
		cr_assert_gt(h2t_cs(&t, id)->body, before);
		cr_assert_leq(h2t_cs(&t, id)->body - before, 16384);
	}
	cr_assert_eq(h2t_cs(&t, id)->body, total);
	cr_assert(h2t_cs(&t, id)->closed);
}

Test(h2, client_reset_mid_response)
{
	const nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16384 },
	};

	h2t_init(&t, NULL);
	t.resp_len = 1000000;
	h2t_client(&t, iv, 1, true);
	int32_t id = h2t_request(&t, "GET", "/big", 0, NULL);
	h2t_pump(&t);
	t.resp_len = 5;
	int32_t other = h2t_request(&t, "GET", "/small", 0, NULL);
	h2t_pump(&t);
	cr_assert_eq(h2t_cs(&t, other)->body, 5, "other %zu big %zu", h2t_cs(&t, other)->body, h2t_cs(&t, id)->body);
	cr_assert_gt(h2_room(t.c, id) + h2t_es(&t, id)->resp_left, 0);

	nghttp2_submit_rst_stream(t.cl, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
	h2t_pump(&t);
	cr_assert_eq(t.ev[t.nev - 1].kind, H2_EV_CLOSED);
	cr_assert_eq(t.ev[t.nev - 1].id, id);
	cr_assert_eq(t.ev[t.nev - 1].code, H2_CANCEL);
	cr_assert_eq(h2_room(t.c, id), 0);
	cr_assert_eq(h2_send_data(t.c, id, (const uint8_t *)"x", 1), 0);
	cr_assert_eq(h2_streams(t.c), 0);
	cr_assert_not(h2_want_write(t.c));
}

Test(h2, goaway_on_demand_lets_streams_finish)
{
	h2t_init(&t, NULL);
	t.app_no_consume = true; /* bodies wait, answers too: the streams stay open */
	t.app_no_push = true;
	h2t_client(&t, h2_cl_default, 1, false);
	int32_t a = h2t_request(&t, "POST", "/a", 10, NULL);
	int32_t b = h2t_request(&t, "POST", "/b", 10, NULL);
	h2t_pump(&t);

	h2_goaway(t.c);
	int32_t late = h2t_request(&t, "GET", "/late", 0, NULL);
	h2t_pump(&t);
	cr_assert(t.cl_goaway);
	cr_assert_eq(t.cl_goaway_code, H2_NO_ERROR);
	cr_assert_eq(t.cl_goaway_last, b);
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 2, "the late stream is ignored");
	cr_assert_eq(h2t_cs(&t, late)->code, NGHTTP2_REFUSED_STREAM,
		     "the client knows it may retry it");
	cr_assert(h2_want_read(t.c), "streams are in flight");

	t.app_no_consume = false;
	t.app_no_push = false;
	for (int32_t id = a; id <= b; id += 2) {
		const uint8_t *d;
		bool end;

		h2_body_consume(t.c, id, h2_body_peek(t.c, id, &d, &end));
		h2t_es(&t, id)->resp_left = 0;
		h2_send_end(t.c, id);
		h2t_es(&t, id)->ended = true;
	}
	h2t_pump(&t);
	cr_assert_eq(h2t_cs(&t, a)->status, 200);
	cr_assert(h2t_cs(&t, a)->closed && h2t_cs(&t, b)->closed);
	cr_assert_not(h2_want_read(t.c));
	cr_assert_not(h2_want_write(t.c), "done: the caller closes");
}

Test(h2, informational_answer_then_final)
{
	const struct h2_field early[] = { { "Link", 4, "</a.css>; rel=preload", 21 } };

	h2t_init(&t, NULL);
	t.app_no_consume = true;
	t.app = h2t_app_none;
	h2t_client(&t, h2_cl_default, 1, false);
	int32_t id = h2t_request(&t, "GET", "/", 0, NULL);
	h2t_pump(&t);
	cr_assert_eq(h2_respond(t.c, id, 101, NULL, 0, true), -1, "no 101 in HTTP/2");
	cr_assert_eq(h2_respond(t.c, id, 103, early, 1, true), 0);
	h2t_drain(&t);
	cr_assert_eq(h2t_headers(&t, id)->status, 103);
	cr_assert_not(h2t_headers(&t, id)->flags & NGHTTP2_FLAG_END_STREAM);
	cr_assert_not(h2t_cs(&t, id)->closed);
	cr_assert_eq(h2_respond(t.c, id, 204, NULL, 0, true), 0);
	h2t_pump(&t);
	cr_assert_eq(h2t_cs(&t, id)->status, 204);
	cr_assert(h2t_cs(&t, id)->closed);
	cr_assert_eq(h2t_count(&t, NGHTTP2_HEADERS), 2);
}

/* A backend that answers before the upload ended (a 413, say). */
Test(h2, answer_before_the_body_ends_resets_with_no_error)
{
	h2t_init(&t, NULL);
	t.app = h2t_app_none;
	h2t_client(&t, h2_cl_default, 1, false);
	int32_t id = h2t_request(&t, "POST", "/up", 1000000, NULL);
	h2t_pump(&t);
	cr_assert_eq(t.ev[0].kind, H2_EV_REQUEST);
	cr_assert_eq(h2_respond(t.c, id, 413, NULL, 0, true), 0);
	h2t_pump(&t);
	cr_assert_eq(h2t_cs(&t, id)->status, 413);
	cr_assert(h2t_cs(&t, id)->closed);
	cr_assert_eq(h2t_cs(&t, id)->code, H2_NO_ERROR);
	cr_assert_eq(h2t_rst(&t, id)->code, H2_NO_ERROR);
	cr_assert_eq(t.ev[t.nev - 1].kind, H2_EV_CLOSED);
	cr_assert_eq(h2_streams(t.c), 0);
	cr_assert_null(h2t_goaway(&t), "not counted as the client's fault");
}

Test(h2, client_goaway_is_an_event)
{
	h2t_init(&t, NULL);
	h2t_client(&t, h2_cl_default, 1, false);
	h2t_request(&t, "GET", "/", 0, NULL);
	h2t_pump(&t);
	nghttp2_submit_goaway(t.cl, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
	h2t_pump(&t);
	cr_assert_eq(t.ev[t.nev - 1].kind, H2_EV_GOAWAY);
	cr_assert_eq(t.ev[t.nev - 1].code, H2_NO_ERROR);
	cr_assert_not(h2_want_read(t.c));
	cr_assert_not(h2_want_write(t.c));
}

Test(h2, caller_reset_and_late_calls)
{
	h2t_init(&t, NULL);
	t.app_no_consume = true;
	t.app_no_push = true;
	h2t_client(&t, h2_cl_default, 1, false);
	int32_t id = h2t_request(&t, "POST", "/", 100, NULL);
	h2t_pump(&t);
	h2_reset(t.c, id, H2_INTERNAL_ERROR);
	h2t_pump(&t);
	cr_assert_eq(h2t_cs(&t, id)->code, H2_INTERNAL_ERROR, "code %u closed %d", h2t_cs(&t, id)->code, h2t_cs(&t, id)->closed);
	cr_assert_eq(t.ev[t.nev - 1].kind, H2_EV_CLOSED);
	/* Calls on a dead id do nothing. */
	const uint8_t *d;
	bool end;
	cr_assert_eq(h2_body_peek(t.c, id, &d, &end), 0);
	h2_body_consume(t.c, id, 10);
	h2_send_end(t.c, id);
	h2_reset(t.c, id, H2_CANCEL);
	cr_assert_eq(h2_respond(t.c, id, 200, NULL, 0, true), -1);
	cr_assert_eq(h2_respond(t.c, 99, 200, NULL, 0, true), -1);
	cr_assert_not(h2_want_write(t.c));
}

/* --- one input, every split --- */

struct h2_transcript {
	char text[4096];
	size_t len;
};

/* conn_frames: also the connection's own frames (SETTINGS, its ACK,
   WINDOW_UPDATE), whose order depends on when output is taken. */
static void h2_record(struct h2_transcript *tr, bool conn_frames)
{
	/* Body events come per piece of input: one per run is what counts. */
	for (int i = 0; i < t.nev; i++)
		if (i == 0 || t.ev[i].kind != t.ev[i - 1].kind || t.ev[i].id != t.ev[i - 1].id)
			tr->len += (size_t)snprintf(tr->text + tr->len, sizeof(tr->text) - tr->len,
					    "e%d:%d:%u ", t.ev[i].kind, t.ev[i].id, t.ev[i].code);
	for (int i = 0; i < t.nf; i++)
		if (conn_frames || t.f[i].id != 0)
			tr->len += (size_t)snprintf(tr->text + tr->len, sizeof(tr->text) - tr->len,
					    "f%u:%u:%d:%u:%d ", t.f[i].type, t.f[i].flags, t.f[i].id,
					    t.f[i].len, t.f[i].status);
	tr->len += (size_t)snprintf(tr->text + tr->len, sizeof(tr->text) - tr->len, "h1=%.*s b=%zu",
				    t.h1_len, t.h1, t.body.len);
}

static void h2_split_input(struct h2t_buf *in)
{
	const char *get[] = { ":method", "POST", ":scheme", "https", ":path", "/x",
			      ":authority", "a.example", "cookie", "k=v", "cookie", "j=w", NULL };
	struct h2t tmp;

	h2t_init(&tmp, NULL);
	h2t_preface(in);
	h2t_headers_frame(&tmp, in, 1, 0, get);
	h2t_frame(in, NGHTTP2_DATA, 0, 1, "hello ", 6);
	h2t_frame(in, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "world", 5);
	h2t_free(&tmp);
}

Test(h2, every_split_gives_the_same_transcript)
{
	struct h2t_buf in = { 0 };
	static struct h2_transcript whole, part;

	h2_split_input(&in);
	h2t_init(&t, NULL);
	h2t_feed(&t, in.p, in.len);
	h2_record(&whole, true);
	cr_assert_eq(t.body.len, 11);
	cr_assert(strstr(whole.text, "cookie: k=v; j=w"));
	cr_assert_eq(h2t_headers(&t, 1)->status, 200);
	h2t_free(&t);

	for (size_t split = 1; split <= in.len; split++) {
		h2t_init(&t, NULL);
		t.split = split;
		h2t_feed(&t, in.p, in.len);
		memset(&part, 0, sizeof(part));
		h2_record(&part, true);
		cr_assert_str_eq(part.text, whole.text, "split %zu: %s", split, part.text);
		h2t_free(&t);
	}
	/* Split in two at every offset, output taken in between. */
	memset(&whole, 0, sizeof(whole));
	h2t_init(&t, NULL);
	h2t_feed(&t, in.p, in.len);
	h2_record(&whole, false);
	h2t_free(&t);
	for (size_t cut = 1; cut < in.len; cut++) {
		h2t_init(&t, NULL);
		h2t_feed(&t, in.p, cut);
		h2t_feed(&t, in.p + cut, in.len - cut);
		memset(&part, 0, sizeof(part));
		h2_record(&part, false);
		cr_assert_str_eq(part.text, whole.text, "cut %zu: %s\n%s", cut, part.text, whole.text);
		h2t_free(&t);
	}
	h2t_buf_free(&in);
	h2t_init(&t, NULL); /* for the fini */
}

/* libnghttp2's allocator counts what it holds (its 16 KiB outbound frame
   buffer from the start); an idle connection gives that buffer's whole
   pages back, and the frames after it are whole and right. */
Test(h2, idle_gives_the_frame_buffer_pages_back)
{
	size_t peak = 0;

	h2t_init(&t, NULL);
	cr_assert_gt(h2_mem(t.c, &peak), 16384, "the frame buffer is counted");
	cr_assert_eq(h2_idle(t.c), 0, "our SETTINGS wait: the buffer is in use");
	t.resp_len = 40000; /* DATA frames that fill the frame buffer */
	h2t_client(&t, h2_cl_default, 1, false);
	int32_t a = h2t_request(&t, "GET", "/a", 0, NULL);
	h2t_pump(&t);
	cr_assert_eq(h2t_cs(&t, a)->status, 200);
	cr_assert_eq(h2t_cs(&t, a)->body, 40000);
	cr_assert_eq(h2_streams(t.c), 0);
	/* At least 3 whole pages lie inside a block of 16 KiB + 10. */
	cr_assert_geq(h2_idle(t.c), 3 * 4096);
	cr_assert_eq(h2_idle(t.c), 0, "no frame since: nothing to give back");
	int32_t b = h2t_request(&t, "GET", "/b", 0, NULL);
	h2t_pump(&t);
	cr_assert_eq(h2t_cs(&t, b)->status, 200);
	cr_assert_eq(h2t_cs(&t, b)->body, 40000);
	cr_assert_eq(h2t_cs(&t, b)->code, H2_NO_ERROR);
	cr_assert_geq(h2_idle(t.c), 3 * 4096, "DATA frames filled it again: its pages go again");
	t.resp_len = 10; /* a small answer: its frames stay in the first page */
	int32_t s3 = h2t_request(&t, "GET", "/c", 0, NULL);
	h2t_pump(&t);
	cr_assert_eq(h2t_cs(&t, s3)->body, 10);
	/* Its frames (~60 bytes) stay in the block's first, partial page
	   unless that page holds fewer bytes than them. */
	size_t r = h2_idle(t.c);
	cr_assert(r == 0 || r >= 3 * 4096, "nothing, or the pages a frame crossed into");
	cr_assert_eq(h2_idle(t.c), 0);
	cr_assert_geq(h2_mem(t.c, &peak), 16384);
	cr_assert_geq(peak, h2_mem(t.c, NULL));
}
