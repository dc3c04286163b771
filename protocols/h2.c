/*
 * h2.c - the HTTP/2 engine's connection: the libnghttp2 server session,
 * its settings and options, the token buckets of the defences, stream
 * buffers, request bodies and the events the caller takes (include/h2.h).
 * libnghttp2 does the framing, HPACK, the stream states, HTTP messaging
 * checks and flow control; its callbacks are in h2_recv.c.
 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

	if (r->burst == 0)
		return true; /* no limit */
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

void h2__calm(struct h2_conn *c, const char *why)
{
	if (c->calm_why == NULL)
		c->calm_why = why;
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

/* A graceful GOAWAY naming last: streams up to it finish. */
void h2__goaway(struct h2_conn *c, int32_t last)
{
	if (last >= c->our_last)
		return;
	c->our_last = last;
	nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, NULL, 0);
}

struct h2_stream *h2__stream(struct h2_conn *c, int32_t id)
{
	struct h2_stream *s = nghttp2_session_get_stream_user_data(c->ng, id);

	return s && !s->closed && !s->refused ? s : NULL;
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
	/* libnghttp2 ends the connection without a GOAWAY once 1000 ACKs
	   (SETTINGS, PING) and RST_STREAMs wait to be sent; our control and
	   reset budgets answer before it (at most H2_MAX_QUEUED wait when
	   h2_recv is called, and one call takes at most a burst of each). */
	if (lim->control.burst && lim->resets.burst)
		nghttp2_option_set_max_outbound_ack(o, H2_MAX_QUEUED + (size_t)lim->control.burst +
							       lim->resets.burst + 100);
	/* Unknown frame types are skipped by libnghttp2 without the
	   begin-frame callback that counts control frames: taken as
	   extensions (h2_recv.c drops them), they pay like the others. */
	for (unsigned type = NGHTTP2_CONTINUATION + 1; type <= 0xff; type++)
		nghttp2_option_set_user_recv_extension_type(o, (uint8_t)type);
	return o;
}

/* ---- libnghttp2's allocator: counts what it holds ---- */

/* libnghttp2 1.52 allocates its outbound frame buffer (one chunk of
   NGHTTP2_FRAMEBUF_CHUNKLEN, 16 KiB + 10) with the session and keeps it
   for the session's life; nothing else it makes at creation is this big. */
#define H2__FRAMEBUF_MIN 16384

static void h2__mem_add(struct h2_conn *c, void *p)
{
	if (p == NULL)
		return;
	c->mem += malloc_usable_size(p);
	if (c->mem > c->mem_peak)
		c->mem_peak = c->mem;
}

static void h2__mem_sub(struct h2_conn *c, void *p)
{
	if (p != NULL)
		c->mem -= malloc_usable_size(p);
}

static void h2__framebuf_set(struct h2_conn *c, void *p, size_t n)
{
	c->framebuf = p;
	c->framebuf_len = n;
	/* Memory used before (freed by another connection) may be resident
	   whole: the first idle time gives it back. */
	c->framebuf_top = c->framebuf + n;
}

static void *h2__malloc(size_t n, void *ud)
{
	struct h2_conn *c = ud;
	void *p = malloc(n);

	h2__mem_add(c, p);
	if (p != NULL && c->creating && n >= H2__FRAMEBUF_MIN && c->framebuf == NULL)
		h2__framebuf_set(c, p, n);
	return p;
}

static void h2__free(void *p, void *ud)
{
	struct h2_conn *c = ud;

	if (p == NULL)
		return;
	if (p == c->framebuf) {
		c->framebuf = NULL;
		c->framebuf_len = 0;
	}
	h2__mem_sub(c, p);
	free(p);
}

static void *h2__calloc(size_t n, size_t size, void *ud)
{
	void *p = calloc(n, size);

	h2__mem_add(ud, p);
	return p;
}

static void *h2__realloc(void *p, size_t n, void *ud)
{
	struct h2_conn *c = ud;
	size_t old = p != NULL ? malloc_usable_size(p) : 0;
	void *q = realloc(p, n);

	if (q == NULL)
		return NULL; /* p is untouched */
	c->mem -= old;
	if (p != NULL && p == c->framebuf) {
		/* libnghttp2 never grows it; if it did, it is no longer ours to trim. */
		c->framebuf = NULL;
		c->framebuf_len = 0;
	}
	h2__mem_add(c, q);
	if (c->creating && n >= H2__FRAMEBUF_MIN && c->framebuf == NULL)
		h2__framebuf_set(c, q, n); /* nghttp2_buf_reserve makes it with realloc(NULL, n) */
	return q;
}

/* Whether this libnghttp2 is one whose session creation was checked to
   make one block of 16 KiB or more, its outbound frame buffer, and
   nothing else that big (1.52: session_new -> nghttp2_bufs_init3). */
static bool h2__framebuf_known(void)
{
	const nghttp2_info *v = nghttp2_version(0);

	return v != NULL && (v->version_num >> 8) == 0x0134; /* 1.52.x */
}

size_t h2_mem(const struct h2_conn *c, size_t *peak_out)
{
	if (peak_out != NULL)
		*peak_out = c->mem_peak;
	return c->mem;
}

size_t h2_idle(struct h2_conn *c)
{
	size_t page;
	uintptr_t a, b;

	if (c->framebuf == NULL || c->pend_len > 0 || c->dead ||
	    nghttp2_session_want_write(c->ng))
		return 0;
	/* No frame is in it: libnghttp2 writes the next one from its start
	   (whatever the bytes are; MADV_DONTNEED makes them zeros). Only the
	   whole pages inside the block go: its first and last bytes share
	   pages with other blocks. */
	page = (size_t)sysconf(_SC_PAGESIZE);
	a = ((uintptr_t)c->framebuf + page - 1) & ~(uintptr_t)(page - 1);
	b = ((uintptr_t)c->framebuf + c->framebuf_len) & ~(uintptr_t)(page - 1);
	/* Only when a frame reached past the first of those pages since the
	   last time: small answers (and PING or SETTINGS acks) stay in the
	   block's first, partial page and cost no system call. */
	if (b <= a || (uintptr_t)c->framebuf_top <= a ||
	    madvise((void *)a, b - a, MADV_DONTNEED) != 0)
		return 0;
	c->framebuf_top = NULL;
	return b - a;
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

	if (c) {
		/* Ready for h2_conn_free whatever fails below. */
		c->lim = *lim;
		c->our_last = INT32_MAX;
		list_init(&c->all);
		list_init(&c->events);
	}
	if (!c || !cb || !o)
		goto out;
	nghttp2_mem mem = {
		.mem_user_data = c,
		.malloc = h2__malloc,
		.free = h2__free,
		.calloc = h2__calloc,
		.realloc = h2__realloc,
	};
	/* The frame buffer is told apart by its size only as libnghttp2 1.52
	   (Debian 12) makes it; another version keeps it whole. */
	c->creating = h2__framebuf_known();
	rv = nghttp2_session_server_new3(&c->ng, cb, c, o, &mem);
	c->creating = false;
	if (rv != 0) {
		rv = -1;
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

const char *h2_calm_reason(struct h2_conn *c)
{
	const char *why = c->calm_why_told ? NULL : c->calm_why;

	c->calm_why_told = c->calm_why != NULL;
	return why;
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
