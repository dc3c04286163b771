/*
 * h2_recv.c - the HTTP/2 engine's libnghttp2 callbacks: what the client
 * sent (request heads, bodies, resets, GOAWAY) becomes per-stream state
 * and events, and the defences count it. They run inside h2_recv (frames
 * received), except the frame-sent and stream-close callbacks, which also
 * run inside h2_output; never inside a call of the caller's otherwise.
 *
 * What libnghttp2 leaves to us, we count here: streams opened (per second
 * and per life), streams reset (rapid reset), control frames, empty
 * frames, CONTINUATION frames and header block bytes. Past a bound the
 * connection ends with GOAWAY ENHANCE_YOUR_CALM (h2__calm).
 */
#include <stdlib.h>
#include <string.h>

#include "gh.h"
#include "h2_int.h"

/* NULL, or why a header block frame is past a bound. */
static const char *h2__block_frame(struct h2_conn *c, const nghttp2_frame_hd *hd)
{
	if (hd->type == NGHTTP2_HEADERS) {
		c->continuations = 0;
		c->block_bytes = 0;
	} else if (++c->continuations > c->lim.max_continuations) {
		return "CONTINUATION flood"; /* CVE-2024-27316 */
	}
	c->block_bytes += (uint32_t)hd->length;
	return c->block_bytes <= c->lim.max_header_block ? NULL : "header block too large";
}

/* Every frame header, before libnghttp2 acts on it: even frames it then
   ignores, but not those it skips at once (DATA on a stream it forgot,
   a frame past a connection error); unknown types come as extensions. */
static int h2__on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *arg)
{
	struct h2_conn *c = arg;
	static const char control[] = "control frame flood";
	const char *why = NULL;

	/* HEADERS below the highest id opens nothing and is ignored (or is
	   a late trailer): it pays from the control budget. */
	if (hd->type == NGHTTP2_HEADERS && hd->stream_id <= c->max_id &&
	    !nghttp2_session_find_stream(ng, hd->stream_id)) {
		if (!h2__take(c, &c->b_control, &c->lim.control))
			why = control;
	} else if (hd->type == NGHTTP2_HEADERS && hd->stream_id > c->max_id) {
		c->max_id = hd->stream_id;
	}
	switch (hd->type) {
	case NGHTTP2_DATA:
	case NGHTTP2_HEADERS:
	case NGHTTP2_CONTINUATION:
		if (hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM)) {
			if (++c->empty > c->lim.max_empty && why == NULL)
				why = "empty frame flood";
		} else {
			c->empty = 0;
		}
		if (why == NULL && hd->type != NGHTTP2_DATA)
			why = h2__block_frame(c, hd);
		break;
	case NGHTTP2_PRIORITY:
		/* Ignored (no RFC 7540 priorities), but never on stream 0
		   (RFC 9113 6.3). */
		if (hd->stream_id == 0) {
			if (nghttp2_session_terminate_session(ng, NGHTTP2_PROTOCOL_ERROR) != 0)
				c->dead = true;
			return 0;
		}
		if (!h2__take(c, &c->b_control, &c->lim.control))
			why = control;
		break;
	default:
		/* SETTINGS, PING, PRIORITY, WINDOW_UPDATE, RST_STREAM, GOAWAY,
		   PUSH_PROMISE and unknown types: a budget for all of them. */
		if (!h2__take(c, &c->b_control, &c->lim.control))
			why = control;
		break;
	}
	if (why != NULL)
		h2__calm(c, why);
	return 0;
}

static int h2__on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *arg)
{
	struct h2_conn *c = arg;
	struct h2_stream *s;

	if (f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (!h2__take(c, &c->b_streams, &c->lim.streams)) {
		h2__calm(c, "new streams past the stream rate");
		return 0;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM INTERNAL_ERROR */
	s->c = c;
	s->id = f->hd.stream_id;
	list_init(&s->ev_link);
	list_insert_tail(&c->all, &s->link);
	c->nstreams++;
	nghttp2_session_set_stream_user_data(ng, s->id, s);
	if (s->id > c->our_last) {
		/* After our GOAWAY: never the caller's, retried by the client. */
		s->refused = true;
		s->reset_by_us = true;
		nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	/* The last request of the connection's life: GOAWAY names it, so
	   it finishes and the client opens a new connection for more. */
	if (++c->requests == c->lim.max_requests)
		h2__goaway(c, s->id);
	return 0;
}

static int h2__on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
			 size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
	struct h2_stream *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);

	if (f->hd.type != NGHTTP2_HEADERS || !s || s->closed)
		return 0;
	h2__header(s, name, nlen, value, vlen, f->headers.cat != NGHTTP2_HCAT_REQUEST);
	return 0;
}

/* Request body bytes: kept until consumed. libnghttp2 has checked them
   against the windows we advertised, so they fit in stream_window. */
static int h2__on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
		       size_t len, void *arg)
{
	struct h2_conn *c = arg;
	struct h2_stream *s = h2__stream(c, id);

	if (!s || (!s->delivered && !(s->ev & H2__EV_REQUEST))) {
		nghttp2_session_consume(ng, id, len);
		return 0;
	}
	/* Past the window cannot happen (libnghttp2 checks it), so this is
	   no memory: the connection ends (h2_recv gives H2_E_FATAL). */
	if (!h2__bytes_put(&s->in, data, len, c->lim.stream_window))
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	if (len)
		h2__event(s, H2__EV_BODY);
	return 0;
}

static void h2__on_request(struct h2_conn *c, const nghttp2_frame *f)
{
	struct h2_stream *s = nghttp2_session_get_stream_user_data(c->ng, f->hd.stream_id);
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;

	if (!s || s->closed || s->reset_by_us)
		return;
	if (f->headers.cat != NGHTTP2_HCAT_REQUEST) {
		/* Trailers: their END_STREAM ends the body; they are dropped. */
		if (end && (s->delivered || (s->ev & H2__EV_REQUEST))) {
			s->in_end = true;
			h2__event(s, H2__EV_BODY);
		}
		return;
	}
	s->in_end = end;
	if (s->id > c->last_ok)
		c->last_ok = s->id;
	if (!h2__head_done(s, end)) {
		s->refused = true;
		h2__answer_local(s, 431);
		return;
	}
	h2__event(s, H2__EV_REQUEST);
}

static int h2__on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *arg)
{
	struct h2_conn *c = arg;
	struct h2_stream *s;

	switch (f->hd.type) {
	case NGHTTP2_HEADERS:
		h2__on_request(c, f);
		break;
	case NGHTTP2_DATA:
		/* Even a stream the caller never saw (a 431) notes the end:
		   no RST_STREAM NO_ERROR follows its answer then. */
		s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
		if (s && !s->closed && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
			s->in_end = true;
			if (h2__stream(c, s->id))
				h2__event(s, H2__EV_BODY);
		}
		break;
	case NGHTTP2_RST_STREAM:
		/* A stream the client opened and dropped before its answer
		   ended: rapid reset (CVE-2023-44487) counts these. */
		if (nghttp2_session_get_stream_user_data(ng, f->hd.stream_id) &&
		    !h2__take(c, &c->b_resets, &c->lim.resets))
			h2__calm(c, "stream resets past the reset rate (rapid reset)");
		break;
	case NGHTTP2_GOAWAY:
		c->ev_goaway = true;
		c->goaway_code = f->goaway.error_code;
		c->goaway_last = f->goaway.last_stream_id;
		break;
	default:
		break;
	}
	return 0;
}

static int h2__on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *arg)
{
	struct h2_stream *s = nghttp2_session_get_stream_user_data(ng, id);

	if (s && !s->closed)
		h2__closed(s, code);
	return 0;
}

/* Frames we sent: a RST_STREAM the caller did not ask for answers a
   client's error, and counts with the client's own resets. */
static int h2__on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *arg)
{
	struct h2_conn *c = arg;
	struct h2_stream *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);

	if (f->hd.type == NGHTTP2_RST_STREAM) {
		if (!(s && s->reset_by_us) && !h2__take(c, &c->b_resets, &c->lim.resets))
			h2__calm(c, "stream errors past the reset rate");
		return 0;
	}
	/* The answer is complete but the request is not (a 431, a backend
	   that answered early): RST_STREAM NO_ERROR asks the client to stop
	   sending (RFC 9113 8.1), and the stream does not linger half open. */
	if (s && !s->in_end && !s->reset_by_us && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA)) {
		s->reset_by_us = true;
		nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
	}
	return 0;
}

/* Extension and unknown frames (RFC 9113 5.5): counted in
   h2__on_begin_frame, their payload dropped as it comes. */
static int h2__on_ext_chunk(nghttp2_session *ng, const nghttp2_frame_hd *hd, const uint8_t *data,
			    size_t len, void *arg)
{
	return 0;
}

static int h2__unpack_ext(nghttp2_session *ng, void **payload, const nghttp2_frame_hd *hd,
			  void *arg)
{
	return NGHTTP2_ERR_CANCEL;
}

nghttp2_session_callbacks *h2__callbacks(void)
{
	nghttp2_session_callbacks *cb;

	if (nghttp2_session_callbacks_new(&cb) != 0)
		return NULL;
	nghttp2_session_callbacks_set_on_begin_frame_callback(cb, h2__on_begin_frame);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, h2__on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, h2__on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2__on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2__on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2__on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, h2__on_frame_send);
	nghttp2_session_callbacks_set_on_extension_chunk_recv_callback(cb, h2__on_ext_chunk);
	nghttp2_session_callbacks_set_unpack_extension_callback(cb, h2__unpack_ext);
	return cb;
}
