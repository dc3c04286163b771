/*
 * Tests for the HTTP/2 engine's flood and abuse defences (protocols/h2*.c):
 * SETTINGS, PING, WINDOW_UPDATE, PRIORITY and empty DATA floods, stream id
 * abuse, the request rate and the requests per connection. Hand-built
 * client frames; the assertions are the frames the engine sends back.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "gh.h"
#include "h2_raw_t.h"

TestSuite(h2_flood, .fini = ha_fini);

Test(h2_flood, settings_flood)
{
	struct h2_limits lim;

	ha_small_control(&lim);
	ha_start(&lim); /* the preface holds 2 SETTINGS frames */
	ha_flood(NGHTTP2_SETTINGS, 0, 0, NULL, 0, 49);
	ha_go();
	ha_goaway_is(H2_ENHANCE_YOUR_CALM, 0);
}

Test(h2_flood, ping_flood)
{
	struct h2_limits lim;

	ha_small_control(&lim);
	ha_start(&lim);
	ha_flood(NGHTTP2_PING, 0, 0, "12345678", 8, 48);
	ha_go();
	cr_assert_null(h2t_goaway(&t));
	cr_assert_eq(h2t_count(&t, NGHTTP2_PING), 48, "each answered");
	ha_flood(NGHTTP2_PING, 0, 0, "12345678", 8, 1);
	ha_go();
	ha_goaway_is(H2_ENHANCE_YOUR_CALM, 0);
	/* Time refills the budget: another connection at 10/s is fine. */
	h2t_free(&t);
	ha_start(&lim);
	for (int i = 0; i < 200; i++) {
		ha_flood(NGHTTP2_PING, 0, 0, "12345678", 8, 1);
		t.now += 200;
		ha_go();
	}
	cr_assert_null(h2t_goaway(&t));
}

Test(h2_flood, window_update_flood)
{
	struct h2_limits lim;
	const uint8_t one[4] = { 0, 0, 0, 1 };

	ha_small_control(&lim);
	ha_start(&lim);
	ha_flood(NGHTTP2_WINDOW_UPDATE, 0, 0, one, 4, 49);
	ha_go();
	ha_goaway_is(H2_ENHANCE_YOUR_CALM, 0);
}

Test(h2_flood, priority_flood)
{
	struct h2_limits lim;
	const uint8_t pri[5] = { 0, 0, 0, 0, 16 };

	ha_small_control(&lim);
	ha_start(&lim);
	for (int32_t id = 1; id < 2 * 49; id += 2)
		h2t_frame(&in, NGHTTP2_PRIORITY, 0, id, pri, 5);
	ha_go();
	ha_goaway_is(H2_ENHANCE_YOUR_CALM, 0);
}

Test(h2_flood, empty_data_flood)
{
	struct h2_limits lim;

	h2_limits_default(&lim);
	ha_start(&lim);
	t.app_no_push = true;
	ha_request(1, 0);
	ha_flood(NGHTTP2_DATA, 0, 1, NULL, 0, (int)lim.max_empty);
	ha_go();
	cr_assert_null(h2t_goaway(&t));
	/* A frame with bytes starts the count again. */
	h2t_frame(&in, NGHTTP2_DATA, 0, 1, "x", 1);
	ha_flood(NGHTTP2_DATA, 0, 1, NULL, 0, (int)lim.max_empty);
	ha_go();
	cr_assert_null(h2t_goaway(&t));
	ha_flood(NGHTTP2_DATA, 0, 1, NULL, 0, 1);
	ha_go();
	ha_goaway_is(H2_ENHANCE_YOUR_CALM, 1);
}

Test(h2_flood, even_stream_id)
{
	ha_start(NULL);
	ha_request(1, NGHTTP2_FLAG_END_STREAM);
	ha_request(2, NGHTTP2_FLAG_END_STREAM);
	ha_go();
	ha_goaway_is(H2_PROTOCOL_ERROR, 1);
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 1);
}

/* A lower id than the highest seen can open nothing (libnghttp2 ignores
   it, as it cannot tell it from a stream closed and forgotten); each such
   HEADERS costs the client from its control-frame budget. */
Test(h2_flood, stream_ids_going_backwards)
{
	struct h2_limits lim;

	ha_small_control(&lim);
	ha_start(&lim);
	ha_request(101, NGHTTP2_FLAG_END_STREAM);
	ha_request(3, NGHTTP2_FLAG_END_STREAM);
	ha_go();
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 1);
	cr_assert_null(h2t_rst(&t, 3));
	cr_assert_null(h2t_goaway(&t));
	for (int32_t id = 5; id < 100; id += 2)
		ha_request(id, NGHTTP2_FLAG_END_STREAM);
	ha_go();
	ha_goaway_is(H2_ENHANCE_YOUR_CALM, 101);
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 1);
}

Test(h2_flood, request_rate_per_second)
{
	struct h2_limits lim;

	h2_limits_default(&lim);
	lim.streams = (struct h2_rate){ 10, 5 };
	ha_start(&lim);
	for (int32_t id = 1; id <= 19; id += 2)
		ha_request(id, NGHTTP2_FLAG_END_STREAM);
	ha_go();
	cr_assert_null(h2t_goaway(&t));
	t.now += 200; /* one more token */
	ha_request(21, NGHTTP2_FLAG_END_STREAM);
	ha_go();
	cr_assert_null(h2t_goaway(&t));
	ha_request(23, NGHTTP2_FLAG_END_STREAM);
	ha_go();
	ha_goaway_is(H2_ENHANCE_YOUR_CALM, 21);
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 11);

	/* burst 0: no limit. */
	h2t_free(&t);
	lim.streams.burst = 0;
	ha_start(&lim);
	for (int32_t id = 1; id <= 199; id += 2)
		ha_request(id, NGHTTP2_FLAG_END_STREAM);
	ha_go();
	cr_assert_null(h2t_goaway(&t));
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 100);
}

Test(h2_flood, requests_per_connection_end_gracefully)
{
	struct h2_limits lim;

	h2_limits_default(&lim);
	lim.max_requests = 3;
	ha_start(&lim);
	for (int32_t id = 1; id <= 7; id += 2)
		ha_request(id, NGHTTP2_FLAG_END_STREAM);
	ha_go();
	cr_assert_eq(h2t_goaway(&t)->code, H2_NO_ERROR);
	cr_assert_eq(h2t_goaway(&t)->last_id, 5);
	cr_assert_eq(h2t_rst(&t, 7)->code, H2_REFUSED_STREAM, "safe to retry");
	cr_assert_eq(h2t_events(&t, H2_EV_REQUEST), 3);
	for (int32_t id = 1; id <= 5; id += 2)
		cr_assert_eq(h2t_headers(&t, id)->status, 200, "stream %d is answered", id);
	cr_assert_not(h2_want_read(t.c));
	cr_assert_not(h2_want_write(t.c));
}

/* Unknown frame types (RFC 9113 5.5: ignored) pay from the control budget
   too: libnghttp2 skips them without its begin-frame callback unless they
   are registered as extension types. */
Test(h2_flood, unknown_frame_flood)
{
	struct h2_limits lim;

	ha_small_control(&lim);
	ha_start(&lim);
	ha_flood(0xfa, 0, 0, "junk", 4, 20);
	ha_flood(0x0a, 0, 0, "\0\0", 2, 20); /* ALTSVC is not taken either */
	ha_go();
	cr_assert_null(h2t_goaway(&t));
	cr_assert(h2_want_read(t.c));
	ha_flood(0xfa, 0, 3, "junk", 4, 10);
	ha_go();
	ha_goaway_is(H2_ENHANCE_YOUR_CALM, 0);
}

/* PRIORITY frames are ignored, but one on stream 0 is a connection
   error (RFC 9113 6.3). */
Test(h2_flood, priority_on_stream_0)
{
	const uint8_t prio[5] = { 0, 0, 0, 0, 16 };

	ha_start(NULL);
	ha_request(1, NGHTTP2_FLAG_END_STREAM);
	ha_flood(NGHTTP2_PRIORITY, 0, 3, prio, 5, 1);
	ha_go();
	cr_assert_null(h2t_goaway(&t));
	ha_flood(NGHTTP2_PRIORITY, 0, 0, prio, 5, 1);
	ha_go();
	ha_goaway_is(H2_PROTOCOL_ERROR, 1);
}
