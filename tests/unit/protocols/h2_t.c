/*
 * h2_t.c - test drivers for the HTTP/2 engine (see h2_t.h).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "h2_t.h"

void h2t_put(struct h2t_buf *b, const void *p, size_t n)
{
	if (n > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 1024;

		while (cap - b->len < n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		cr_assert(b->p);
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

void h2t_buf_free(struct h2t_buf *b)
{
	free(b->p);
	*b = (struct h2t_buf){ 0 };
}

void h2t_init(struct h2t *t, const struct h2_limits *lim)
{
	memset(t, 0, sizeof(*t));
	if (lim)
		t->lim = *lim;
	else
		h2_limits_default(&t->lim);
	t->c = h2_conn_new(&t->lim);
	cr_assert(t->c);
	t->app = h2t_app;
	t->resp_len = 5;
	t->now = 1000;
	cr_assert_eq(nghttp2_hd_inflate_new(&t->inf), 0);
	cr_assert_eq(nghttp2_hd_deflate_new(&t->def, 4096), 0);
}

void h2t_free(struct h2t *t)
{
	h2_conn_free(t->c);
	nghttp2_hd_inflate_del(t->inf);
	nghttp2_hd_deflate_del(t->def);
	if (t->cl)
		nghttp2_session_del(t->cl);
	h2t_buf_free(&t->out);
	h2t_buf_free(&t->body);
}

struct h2t_estream *h2t_es(struct h2t *t, int32_t id)
{
	cr_assert(id > 0 && id < 2048, "stream id %d", id);
	return &t->es[(id - 1) / 2];
}

struct h2t_cstream *h2t_cs(struct h2t *t, int32_t id)
{
	cr_assert(id > 0 && id < 2048, "stream id %d", id);
	return &t->cs[(id - 1) / 2];
}

/* Give the engine as much of stream id's response as it takes. */
static void h2t_push(struct h2t *t, int32_t id)
{
	struct h2t_estream *e = h2t_es(t, id);
	static uint8_t r[65536];

	if (!e->answered || e->ended || t->app_no_push)
		return;
	memset(r, 'r', sizeof(r));
	while (e->resp_left > 0) {
		size_t n = e->resp_left < sizeof(r) ? e->resp_left : sizeof(r);
		size_t k = h2_send_data(t->c, id, r, n);

		cr_assert_leq(k, n);
		e->resp_left -= k;
		if (k < n)
			return;
	}
	h2_send_end(t->c, id);
	e->ended = true;
}

void h2t_app(struct h2t *t, const struct h2_event *ev)
{
	static const struct h2_field hdr[] = {
		{ "Content-Type", 12, "text/plain", 10 },
		{ "Connection", 10, "keep-alive, X-Hop", 17 },
		{ "Keep-Alive", 10, "timeout=5", 9 },
		{ "Transfer-Encoding", 17, "chunked", 7 },
		{ "X-Hop", 5, "1", 1 },
	};
	struct h2t_estream *e;
	const uint8_t *d;
	bool end;
	size_t n;

	switch (ev->kind) {
	case H2_EV_REQUEST:
		t->h1_len = h2_request_to_h1(ev->req, t->h1, sizeof(t->h1), &t->h1_chunked);
		t->is_ws = h2_request_is_websocket(ev->req);
		t->ws_len = h2_websocket_to_h1(ev->req, H2T_WS_KEY, t->ws, sizeof(t->ws));
		e = h2t_es(t, ev->id);
		cr_assert_eq(h2_respond(t->c, ev->id, 200, hdr, 5, false), 0);
		e->answered = true;
		e->resp_left = t->resp_len;
		e->req_ended = ev->req->end_stream;
		if (e->req_ended)
			h2t_push(t, ev->id);
		break;
	case H2_EV_BODY:
		if (t->app_no_consume)
			break;
		n = h2_body_peek(t->c, ev->id, &d, &end);
		h2t_put(&t->body, d, n);
		h2_body_consume(t->c, ev->id, n);
		if (end) {
			h2t_es(t, ev->id)->req_ended = true;
			h2t_push(t, ev->id);
		}
		break;
	default:
		break;
	}
}

static void h2t_run_events(struct h2t *t)
{
	struct h2_event ev;

	while (h2_next_event(t->c, &ev)) {
		cr_assert_lt(t->nev, H2T_MAX_EVENTS);
		t->ev[t->nev++] = (struct h2t_ev){ ev.kind, ev.id, ev.code };
		t->app(t, &ev);
	}
	/* Streams whose response waits for room. */
	for (int32_t id = 1; id < 2048; id += 2) {
		struct h2t_estream *e = h2t_es(t, id);

		if (e->answered && !e->ended && e->req_ended)
			h2t_push(t, id);
	}
}

static uint32_t h2t_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int h2t_status(struct h2t *t, uint8_t *p, size_t n)
{
	int status = 0;

	for (;;) {
		nghttp2_nv nv;
		int fl = 0;
		ssize_t r = nghttp2_hd_inflate_hd2(t->inf, &nv, &fl, p, n, 1);

		cr_assert_geq(r, 0, "the engine's header block decodes");
		p += r;
		n -= (size_t)r;
		if ((fl & NGHTTP2_HD_INFLATE_EMIT) && nv.namelen == 7 && memcmp(nv.name, ":status", 7) == 0)
			status = atoi((const char *)nv.value);
		if (fl & NGHTTP2_HD_INFLATE_FINAL) {
			nghttp2_hd_inflate_end_headers(t->inf);
			return status;
		}
		if ((fl & NGHTTP2_HD_INFLATE_EMIT) == 0 && n == 0)
			return status;
	}
}

/* Parse complete frames at the head of t->out. */
static void h2t_parse(struct h2t *t)
{
	size_t off = 0;

	while (t->out.len - off >= 9) {
		uint8_t *h = t->out.p + off;
		uint32_t len = (uint32_t)h[0] << 16 | (uint32_t)h[1] << 8 | h[2];
		struct h2t_frame f = { .type = h[3], .flags = h[4], .len = len,
				       .id = (int32_t)(h2t_be32(h + 5) & 0x7fffffff) };

		if (t->out.len - off < 9 + (size_t)len)
			break;
		if (f.type == NGHTTP2_RST_STREAM && len == 4)
			f.code = h2t_be32(h + 9);
		if (f.type == NGHTTP2_GOAWAY && len >= 8) {
			f.last_id = (int32_t)(h2t_be32(h + 9) & 0x7fffffff);
			f.code = h2t_be32(h + 13);
		}
		if (f.type == NGHTTP2_HEADERS)
			f.status = h2t_status(t, h + 9, len);
		cr_assert_lt(t->nf, H2T_MAX_FRAMES);
		t->f[t->nf++] = f;
		off += 9 + len;
	}
	if (off == 0)
		return;
	memmove(t->out.p, t->out.p + off, t->out.len - off);
	t->out.len -= off;
}

void h2t_drain(struct h2t *t)
{
	uint8_t buf[4096];
	size_t n;

	while ((n = h2_output(t->c, buf, sizeof(buf))) > 0) {
		h2t_put(&t->out, buf, n);
		if (t->cl)
			cr_assert_eq(nghttp2_session_mem_recv(t->cl, buf, n), (ssize_t)n);
		h2t_run_events(t);
	}
	h2t_parse(t);
}

static void h2t_feed_only(struct h2t *t, const uint8_t *p, size_t n)
{
	size_t step = t->split ? t->split : n;

	for (size_t off = 0; off < n; off += step) {
		size_t k = n - off < step ? n - off : step;
		long r = h2_recv(t->c, p + off, k, t->now);

		if (r < 0) {
			t->fatal = true;
			return;
		}
		cr_assert_eq(r, (long)k);
		h2t_run_events(t);
	}
}

void h2t_feed(struct h2t *t, const void *p, size_t n)
{
	h2t_feed_only(t, p, n);
	h2t_drain(t);
}

int h2t_count(const struct h2t *t, uint8_t type)
{
	int n = 0;

	for (int i = 0; i < t->nf; i++)
		n += t->f[i].type == type;
	return n;
}

static const struct h2t_frame *h2t_find(const struct h2t *t, uint8_t type, int32_t id)
{
	for (int i = 0; i < t->nf; i++)
		if (t->f[i].type == type && (id < 0 || t->f[i].id == id))
			return &t->f[i];
	return NULL;
}

const struct h2t_frame *h2t_goaway(const struct h2t *t)
{
	return h2t_find(t, NGHTTP2_GOAWAY, -1);
}

const struct h2t_frame *h2t_rst(const struct h2t *t, int32_t id)
{
	return h2t_find(t, NGHTTP2_RST_STREAM, id);
}

const struct h2t_frame *h2t_headers(const struct h2t *t, int32_t id)
{
	return h2t_find(t, NGHTTP2_HEADERS, id);
}

int h2t_events(const struct h2t *t, enum h2_ev_kind kind)
{
	int n = 0;

	for (int i = 0; i < t->nev; i++)
		n += t->ev[i].kind == kind;
	return n;
}

/* --- raw frames --- */

void h2t_frame(struct h2t_buf *b, uint8_t type, uint8_t flags, int32_t id, const void *payload,
	       size_t len)
{
	uint8_t h[9] = { (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, type, flags,
			 (uint8_t)((uint32_t)id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8),
			 (uint8_t)id };

	h2t_put(b, h, sizeof(h));
	h2t_put(b, payload, len);
}

void h2t_preface(struct h2t_buf *b)
{
	h2t_put(b, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
	h2t_frame(b, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
	h2t_frame(b, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, NULL, 0);
}

size_t h2t_block(struct h2t *t, const char *const *nv, uint8_t *out, size_t cap)
{
	nghttp2_nv v[256];
	size_t n = 0;

	for (; nv[0]; nv += 2) {
		cr_assert_lt(n, 256);
		v[n++] = (nghttp2_nv){ (uint8_t *)nv[0], (uint8_t *)nv[1], strlen(nv[0]),
				       strlen(nv[1]), NGHTTP2_NV_FLAG_NONE };
	}
	ssize_t r = nghttp2_hd_deflate_hd(t->def, out, cap, v, n);

	cr_assert_geq(r, 0);
	return (size_t)r;
}

void h2t_headers_frame(struct h2t *t, struct h2t_buf *b, int32_t id, uint8_t flags,
		       const char *const *nv)
{
	static uint8_t blk[65536];
	size_t n = h2t_block(t, nv, blk, sizeof(blk));

	h2t_frame(b, NGHTTP2_HEADERS, flags | NGHTTP2_FLAG_END_HEADERS, id, blk, n);
}

void h2t_rst_frame(struct h2t_buf *b, int32_t id, uint32_t code)
{
	uint8_t p[4] = { (uint8_t)(code >> 24), (uint8_t)(code >> 16), (uint8_t)(code >> 8),
			 (uint8_t)code };

	h2t_frame(b, NGHTTP2_RST_STREAM, 0, id, p, 4);
}

/* --- a libnghttp2 client --- */

static int h2t_cl_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
			 size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
	struct h2t *t = arg;

	if (nlen == 7 && memcmp(name, ":status", 7) == 0)
		h2t_cs(t, f->hd.stream_id)->status = atoi((const char *)value);
	/* What the engine must never send in HTTP/2: connection-specific
	   headers and those Connection names; names come in lower case. */
	static const char *const never[] = { "connection", "keep-alive", "transfer-encoding",
					     "x-hop", NULL };
	for (const char *const *p = never; *p; p++)
		cr_assert(!(nlen == strlen(*p) && memcmp(name, *p, nlen) == 0), "%s sent", *p);
	for (size_t i = 0; i < nlen; i++)
		cr_assert(!(name[i] >= 'A' && name[i] <= 'Z'));
	if (nlen == 12 && memcmp(name, "content-type", 12) == 0)
		t->cl_content_type++;
	return 0;
}

static int h2t_cl_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d,
		       size_t len, void *arg)
{
	h2t_cs(arg, id)->body += len;
	return 0;
}

static int h2t_cl_close(nghttp2_session *s, int32_t id, uint32_t code, void *arg)
{
	struct h2t_cstream *cs = h2t_cs(arg, id);

	cs->closed = true;
	cs->code = code;
	return 0;
}

static int h2t_cl_frame(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
	struct h2t *t = arg;

	if (f->hd.type == NGHTTP2_GOAWAY) {
		t->cl_goaway = true;
		t->cl_goaway_code = f->goaway.error_code;
		t->cl_goaway_last = f->goaway.last_stream_id;
	}
	return 0;
}

void h2t_client(struct h2t *t, const nghttp2_settings_entry *iv, size_t niv, bool no_auto_wu)
{
	nghttp2_session_callbacks *cb;
	nghttp2_option *o;

	cr_assert_eq(nghttp2_session_callbacks_new(&cb), 0);
	nghttp2_session_callbacks_set_on_header_callback(cb, h2t_cl_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2t_cl_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2t_cl_close);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2t_cl_frame);
	cr_assert_eq(nghttp2_option_new(&o), 0);
	nghttp2_option_set_no_auto_window_update(o, no_auto_wu);
	cr_assert_eq(nghttp2_session_client_new2(&t->cl, cb, t, o), 0);
	nghttp2_option_del(o);
	nghttp2_session_callbacks_del(cb);
	cr_assert_eq(nghttp2_submit_settings(t->cl, NGHTTP2_FLAG_NONE, iv, niv), 0);
}

void h2t_pump(struct h2t *t)
{
	for (int round = 0; round < 100000; round++) {
		const uint8_t *p;
		ssize_t n;
		bool moved = false;

		while ((n = nghttp2_session_mem_send(t->cl, &p)) > 0) {
			h2t_feed_only(t, p, (size_t)n);
			moved = true;
		}
		cr_assert_geq(n, 0);
		if (!t->cl_no_read) {
			size_t before = t->nf;

			h2t_drain(t);
			moved |= (size_t)t->nf != before || t->out.len > 0;
		}
		if (!moved)
			return;
	}
	cr_assert_fail("the pump never settles");
}

static ssize_t h2t_cl_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
			   uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct h2t_cstream *cs = h2t_cs(arg, id);
	size_t n = len < cs->left ? len : cs->left;

	memset(buf, 'x', n);
	cs->left -= n;
	if (cs->left == 0)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

int32_t h2t_request(struct h2t *t, const char *method, const char *path, size_t body_len,
		    const char *const *extra)
{
	nghttp2_nv nv[64];
	size_t n = 0;
	const char *base[] = { ":method", method, ":scheme", "https", ":authority",
			       "mail.example.com", ":path", path, NULL };
	nghttp2_data_provider prd = { .read_callback = h2t_cl_body };
	int32_t id;

	for (const char *const *p = base; *p; p += 2)
		nv[n++] = (nghttp2_nv){ (uint8_t *)p[0], (uint8_t *)p[1], strlen(p[0]), strlen(p[1]),
					NGHTTP2_NV_FLAG_NONE };
	for (const char *const *p = extra; p && *p; p += 2)
		nv[n++] = (nghttp2_nv){ (uint8_t *)p[0], (uint8_t *)p[1], strlen(p[0]), strlen(p[1]),
					NGHTTP2_NV_FLAG_NONE };
	id = nghttp2_submit_request(t->cl, NULL, nv, n, body_len ? &prd : NULL, NULL);
	cr_assert_gt(id, 0);
	h2t_cs(t, id)->left = body_len;
	return id;
}
