/*
 * h2.c - the HTTP/2 engine's connection: the libnghttp2 server session and
 * its receive callbacks, the defences against abusive clients, request
 * bodies, and the events the caller takes (include/h2.h).
 *
 * libnghttp2 does the framing, HPACK, the stream states, HTTP messaging
 * checks and flow control. What it leaves to us, we count here from its
 * callbacks: streams opened (per second and per life), streams reset
 * (rapid reset), control frames, empty frames, CONTINUATION frames and
 * header block bytes. Each ends the connection with GOAWAY
 * ENHANCE_YOUR_CALM through nghttp2_session_terminate_session, which also
 * makes libnghttp2 ignore every byte after it.
 */
#include <stdlib.h>
#include <string.h>

#include "gh.h"
#include "h2_int.h"

void h2_limits_default(struct h2_limits *lim_out)
{
	*lim_out = (struct h2_limits){
		.max_streams = 128,
		.max_header_list = 16384,
		.max_headers = 100,
		.header_table = 4096,
		.max_header_block = 65536,
		.max_continuations = 8,
		.stream_window = 65535,
		.conn_window = 1u << 20,
		.stream_out = 32768,
		.conn_out = 1u << 20,
		.max_requests = 1000,
		.streams = { 1000, 200 },
		.resets = { 200, 20 },
		.control = { 1000, 100 },
		.max_empty = 32,
		.extended_connect = false,
	};
}

bool h2__take(struct h2_conn *c, struct h2_bucket *b, const struct h2_rate *r)
{
	uint64_t cap = (uint64_t)r->burst * 1000;

	if (!b->started) {
		b->started = true;
		b->milli = cap;
		b->last_ms = c->now_ms;
	}
	if (c->now_ms > b->last_ms) {
		/* per_s tokens per second are per_s milli-tokens per ms. */
		uint64_t add = (c->now_ms - b->last_ms) * r->per_s;

		b->milli = add >= cap - b->milli ? cap : b->milli + add;
		b->last_ms = c->now_ms;
	}
	if (b->milli < 1000)
		return false;
	b->milli -= 1000;
	return true;
}

bool h2__bytes_put(struct h2_bytes *b, const uint8_t *d, size_t n, size_t max)
{
	if (n > max - b->len)
		return false;
	if (n > b->cap - b->off - b->len && b->off > 0) {
		memmove(b->p, b->p + b->off, b->len);
		b->off = 0;
	}
	if (n > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 1024;
		uint8_t *p;

		while (cap - b->len < n)
			cap *= 2;
		if (cap > max)
			cap = max;
		p = realloc(b->p, cap);
		if (!p)
			return false;
		b->p = p;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->off + b->len, d, n);
	b->len += n;
	return true;
}

void h2__bytes_drop(struct h2_bytes *b, size_t n)
{
	b->off += n;
	b->len -= n;
	if (b->len > 0)
		return;
	b->off = 0;
	if (b->cap > H2__BYTES_KEEP)
		h2__bytes_free(b);
}

void h2__bytes_free(struct h2_bytes *b)
{
	free(b->p);
	*b = (struct h2_bytes){ 0 };
}

void h2__calm(struct h2_conn *c)
{
	/* Names the last stream whose head was complete (not one whose
	   block is still arriving); every later byte is ignored. */
	if (nghttp2_session_terminate_session2(c->ng, c->last_ok, NGHTTP2_ENHANCE_YOUR_CALM) != 0)
		c->dead = true;
}

void h2__event(struct h2_stream *s, unsigned bits)
{
	if (s->ev == 0)
		list_insert_tail(&s->c->events, &s->ev_link);
	s->ev |= bits;
}

static void h2__stream_free(struct h2_stream *s)
{
	struct h2_conn *c = s->c;

	h2__out_release(s);
	list_remove(&s->link);
	list_remove(&s->ev_link);
	c->nstreams--;
	/* The head may hold Authorization and cookies. */
	if (s->hbuf)
		memset(s->hbuf, 0, s->hcap);
	free(s->hbuf);
	free(s->hdr);
	h2__bytes_free(&s->in);
	free(s);
}

void h2__closed(struct h2_stream *s, uint32_t code)
{
	struct h2_conn *c = s->c;

	s->closed = true;
	s->close_code = code;
	/* Its unread body still holds connection window: give it back. */
	c->unconsumed += s->in.len;
	h2__bytes_free(&s->in);
	h2__out_release(s);
	if (!s->delivered) {
		/* The caller never heard of it (a pending REQUEST is dropped). */
		h2__stream_free(s);
		return;
	}
	/* Its body is gone: a BODY event still pending is moot. */
	s->ev &= ~H2__EV_BODY;
	if (s->ev == 0)
		list_remove(&s->ev_link);
	h2__event(s, H2__EV_CLOSED);
}

struct h2_stream *h2__stream(struct h2_conn *c, int32_t id)
{
	struct h2_stream *s = nghttp2_session_get_stream_user_data(c->ng, id);

	return s && !s->closed && !s->refused ? s : NULL;
}

/* --- libnghttp2 receive callbacks (run inside h2_recv only) --- */

/* A graceful GOAWAY naming last: streams up to it finish. */
static void h2__goaway(struct h2_conn *c, int32_t last)
{
	if (last >= c->our_last)
		return;
	c->our_last = last;
	nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, NULL, 0);
}

static bool h2__block_frame(struct h2_conn *c, const nghttp2_frame_hd *hd)
{
	if (hd->type == NGHTTP2_HEADERS) {
		c->continuations = 0;
		c->block_bytes = 0;
	} else if (++c->continuations > c->lim.max_continuations) {
		return false; /* CVE-2024-27316: CONTINUATION flood */
	}
	c->block_bytes += (uint32_t)hd->length;
	return c->block_bytes <= c->lim.max_header_block;
}

/* Every frame header, before libnghttp2 acts on it (even ignored frames). */
static int h2__on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *arg)
{
	struct h2_conn *c = arg;
	bool ok = true;

	/* HEADERS below the highest id opens nothing and is ignored (or is
	   a late trailer): it pays from the control budget. */
	if (hd->type == NGHTTP2_HEADERS && hd->stream_id <= c->max_id &&
	    !nghttp2_session_find_stream(ng, hd->stream_id))
		ok = h2__take(c, &c->b_control, &c->lim.control);
	else if (hd->type == NGHTTP2_HEADERS && hd->stream_id > c->max_id)
		c->max_id = hd->stream_id;
	switch (hd->type) {
	case NGHTTP2_DATA:
	case NGHTTP2_HEADERS:
	case NGHTTP2_CONTINUATION:
		if (hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM))
			ok = ++c->empty <= c->lim.max_empty && ok;
		else
			c->empty = 0;
		if (ok && hd->type != NGHTTP2_DATA)
			ok = h2__block_frame(c, hd);
		break;
	default:
		/* SETTINGS, PING, PRIORITY, WINDOW_UPDATE, RST_STREAM, GOAWAY,
		   PUSH_PROMISE and unknown types: a budget for all of them. */
		ok = h2__take(c, &c->b_control, &c->lim.control);
		break;
	}
	if (!ok)
		h2__calm(c);
	return 0;
}

static int h2__on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *arg)
{
	struct h2_conn *c = arg;
	struct h2_stream *s;

	if (f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (!h2__take(c, &c->b_streams, &c->lim.streams)) {
		h2__calm(c);
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
		s = h2__stream(c, f->hd.stream_id);
		if (s && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
			s->in_end = true;
			h2__event(s, H2__EV_BODY);
		}
		break;
	case NGHTTP2_RST_STREAM:
		/* A stream the client opened and dropped before its answer
		   ended: rapid reset (CVE-2023-44487) counts these. */
		if (nghttp2_session_get_stream_user_data(ng, f->hd.stream_id) &&
		    !h2__take(c, &c->b_resets, &c->lim.resets))
			h2__calm(c);
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
	struct h2_stream *s;

	if (f->hd.type != NGHTTP2_RST_STREAM)
		return 0;
	s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
	if (!(s && s->reset_by_us) && !h2__take(c, &c->b_resets, &c->lim.resets))
		h2__calm(c);
	return 0;
}

static nghttp2_session_callbacks *h2__callbacks(void)
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
	return cb;
}

static nghttp2_option *h2__options(const struct h2_limits *lim)
{
	nghttp2_option *o;

	if (nghttp2_option_new(&o) != 0)
		return NULL;
	/* WINDOW_UPDATE follows h2_body_consume, not arrival. */
	nghttp2_option_set_no_auto_window_update(o, 1);
	nghttp2_option_set_no_closed_streams(o, 1);
	/* Our own CONTINUATION and reset counts answer with GOAWAY
	   ENHANCE_YOUR_CALM first; libnghttp2's stay behind as a backstop. */
	nghttp2_option_set_max_continuations(o, (size_t)lim->max_continuations + 1);
	nghttp2_option_set_stream_reset_rate_limit(o, (uint64_t)lim->resets.burst * 4 + 1000,
						   (uint64_t)lim->resets.per_s * 4 + 100);
	return o;
}

static int h2__settings(struct h2_conn *c)
{
	const struct h2_limits *l = &c->lim;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, l->max_streams },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, l->stream_window },
		{ NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, l->header_table },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, l->max_header_list },
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		/* RFC 7540 priorities are ignored (no tree to abuse). */
		{ NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1 },
		{ NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1 },
	};
	size_t n = ARRAY_SIZE(iv) - (l->extended_connect ? 0 : 1);

	if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, n) != 0)
		return -1;
	return nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0,
						     (int32_t)l->conn_window);
}

struct h2_conn *h2_conn_new(const struct h2_limits *lim)
{
	struct h2_conn *c = calloc(1, sizeof(*c));
	nghttp2_session_callbacks *cb = h2__callbacks();
	nghttp2_option *o = h2__options(lim);
	int rv = -1;

	if (!c || !cb || !o)
		goto out;
	c->lim = *lim;
	c->our_last = INT32_MAX;
	list_init(&c->all);
	list_init(&c->events);
	if (nghttp2_session_server_new2(&c->ng, cb, c, o) != 0) {
		c->ng = NULL;
		goto out;
	}
	rv = h2__settings(c);
out:
	nghttp2_option_del(o);
	nghttp2_session_callbacks_del(cb);
	if (rv != 0) {
		h2_conn_free(c);
		return NULL;
	}
	return c;
}

void h2_conn_free(struct h2_conn *c)
{
	if (!c)
		return;
	list_foreach(it, &c->all)
		h2__stream_free(list_entry(it, struct h2_stream, link));
	nghttp2_session_del(c->ng);
	free(c);
}

void h2__release_unconsumed(struct h2_conn *c)
{
	if (c->unconsumed && !c->dead)
		nghttp2_session_consume_connection(c->ng, c->unconsumed);
	c->unconsumed = 0;
}

long h2_recv(struct h2_conn *c, const uint8_t *data, size_t n, uint64_t now_ms)
{
	ssize_t r;

	if (c->dead)
		return H2_E_FATAL;
	c->now_ms = now_ms;
	if (n == 0)
		return 0;
	r = nghttp2_session_mem_recv(c->ng, data, n);
	if (r < 0) {
		/* Bad preface, flooded output queue, no memory: no GOAWAY
		   can help, the connection just ends. */
		c->dead = true;
		return H2_E_FATAL;
	}
	h2__release_unconsumed(c);
	return (long)n;
}

bool h2_next_event(struct h2_conn *c, struct h2_event *ev)
{
	struct h2_stream *s;

	*ev = (struct h2_event){ .kind = H2_EV_NONE };
	if (c->ev_goaway) {
		c->ev_goaway = false;
		ev->kind = H2_EV_GOAWAY;
		ev->code = c->goaway_code;
		ev->last_id = c->goaway_last;
		return true;
	}
	if (list_empty(&c->events))
		return false;
	s = list_entry(list_first(&c->events), struct h2_stream, ev_link);
	ev->id = s->id;
	if (s->ev & H2__EV_REQUEST) {
		s->ev &= ~H2__EV_REQUEST;
		s->delivered = true;
		ev->kind = H2_EV_REQUEST;
		ev->req = &s->req;
	} else if (s->ev & H2__EV_BODY) {
		s->ev &= ~H2__EV_BODY;
		ev->kind = H2_EV_BODY;
	} else {
		ev->kind = H2_EV_CLOSED;
		ev->code = s->close_code;
		ev->user = s->user;
		h2__stream_free(s);
		return true;
	}
	ev->user = s->user;
	if (s->ev == 0)
		list_remove(&s->ev_link);
	return true;
}

void h2_set_user(struct h2_conn *c, int32_t id, void *user)
{
	struct h2_stream *s = h2__stream(c, id);

	if (s)
		s->user = user;
}

size_t h2_body_peek(struct h2_conn *c, int32_t id, const uint8_t **data_out, bool *end_out)
{
	struct h2_stream *s = h2__stream(c, id);

	*data_out = NULL;
	*end_out = false;
	if (!s)
		return 0;
	if (s->in.p)
		*data_out = s->in.p + s->in.off;
	*end_out = s->in_end && s->in.len == 0;
	return s->in.len;
}

void h2_body_consume(struct h2_conn *c, int32_t id, size_t n)
{
	struct h2_stream *s = h2__stream(c, id);

	if (!s || c->dead)
		return;
	if (n > s->in.len)
		n = s->in.len;
	h2__bytes_drop(&s->in, n);
	nghttp2_session_consume(c->ng, id, n);
}

bool h2_want_read(struct h2_conn *c)
{
	/* A client that does not read its answers cannot make us queue
	   ever more control frames: its input waits instead. */
	return !c->dead && nghttp2_session_want_read(c->ng) &&
	       nghttp2_session_get_outbound_queue_size(c->ng) <= H2_MAX_QUEUED;
}

bool h2_want_write(struct h2_conn *c)
{
	return c->pend_len > 0 || (!c->dead && nghttp2_session_want_write(c->ng));
}

size_t h2_streams(struct h2_conn *c)
{
	return c->nstreams;
}

void h2_goaway(struct h2_conn *c)
{
	if (!c->dead)
		h2__goaway(c, nghttp2_session_get_last_proc_stream_id(c->ng));
}
