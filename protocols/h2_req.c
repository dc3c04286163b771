/*
 * h2_req.c - a request head as libnghttp2 decodes it, field by field, into
 * one buffer with offsets (CONVENTIONS 2), the cookie join of RFC 9113
 * 8.2.3, and the HTTP/1.1 head a backend gets. libnghttp2 has validated
 * every field before we see it (names, values, pseudo-headers,
 * connection-specific headers, TE); what is left here is size.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "h2_int.h"

/* RFC 9113 6.5.2: a field's size is its name, its value and 32. */
#define H2__FIELD_OVERHEAD 32

/* Room for n more bytes in s->hbuf, growing it up to its bound. */
static bool h2__room(struct h2_stream *s, size_t n)
{
	size_t bound = 2 * (size_t)s->c->lim.max_header_list;
	size_t cap = s->hcap ? s->hcap : 1024;
	uint8_t *b;

	if (n <= s->hcap - s->hlen)
		return true;
	if (n > bound - s->hlen)
		return false;
	while (cap - s->hlen < n)
		cap *= 2;
	if (cap > bound)
		cap = bound;
	b = malloc(cap);
	if (!b)
		return false;
	if (s->hlen)
		memcpy(b, s->hbuf, s->hlen);
	if (s->hbuf)
		memset(s->hbuf, 0, s->hcap);
	free(s->hbuf);
	s->hbuf = b;
	s->hcap = cap;
	return true;
}

/* A bigger index for the fields of s: 16 at first, doubled up to
   lim.max_headers + 1 (no calloc of the whole bound per request). */
static bool h2__hdr_room(struct h2_stream *s)
{
	int bound = (int)s->c->lim.max_headers + 1;
	int cap = s->hdr_cap ? s->hdr_cap * 2 : 16;
	struct h2_header *h;

	if (cap > bound)
		cap = bound;
	h = realloc(s->hdr, (size_t)cap * sizeof(*h));
	if (!h)
		return false;
	s->hdr = h;
	s->hdr_cap = cap;
	return true;
}

static struct h2_span h2__put(struct h2_stream *s, const uint8_t *p, size_t n)
{
	struct h2_span sp = { (uint32_t)s->hlen, (uint32_t)n };

	memcpy(s->hbuf + s->hlen, p, n);
	s->hlen += n;
	return sp;
}

static bool h2__is(const uint8_t *p, size_t n, const char *lit)
{
	return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

void h2__header(struct h2_stream *s, const uint8_t *name, size_t nlen, const uint8_t *value,
		size_t vlen, bool trailer)
{
	struct h2_request *r = &s->req;
	struct h2_span *pseudo = NULL;
	struct h2_span n, v;

	/* Trailers are not forwarded (HTTP/1.1 backends get no chunked
	   trailers from us); their size is bounded by libnghttp2's block
	   limits and ours. */
	if (trailer || s->refused)
		return;
	s->list_size += nlen + vlen + H2__FIELD_OVERHEAD;
	if (s->list_size > s->c->lim.max_header_list || !h2__room(s, nlen + vlen)) {
		s->refused = true;
		return;
	}
	if (nlen > 0 && name[0] == ':') {
		if (h2__is(name, nlen, ":method"))
			pseudo = &r->method;
		else if (h2__is(name, nlen, ":scheme"))
			pseudo = &r->scheme;
		else if (h2__is(name, nlen, ":authority"))
			pseudo = &r->authority;
		else if (h2__is(name, nlen, ":path"))
			pseudo = &r->path;
		else if (h2__is(name, nlen, ":protocol"))
			pseudo = &r->protocol;
		if (pseudo)
			*pseudo = h2__put(s, value, vlen);
		return;
	}
	if (r->nhdr >= (int)s->c->lim.max_headers) {
		s->refused = true;
		return;
	}
	if (r->nhdr >= s->hdr_cap && !h2__hdr_room(s)) {
		s->refused = true;
		return;
	}
	n = h2__put(s, name, nlen);
	v = h2__put(s, value, vlen);
	s->hdr[r->nhdr++] = (struct h2_header){ n, v };
	if (h2__is(name, nlen, "cookie"))
		s->ncookie++;
}

/* RFC 9113 8.2.3: cookie fields may come apart; an HTTP/1.1 peer must see
   one, their values joined with "; ", in the place of the first. */
static bool h2__join_cookies(struct h2_stream *s)
{
	struct h2_request *r = &s->req;
	size_t need = 0;
	int first = -1, j = 0;

	for (int i = 0; i < r->nhdr; i++)
		if (h2__is(s->hbuf + r->hdr[i].name.off, r->hdr[i].name.len, "cookie"))
			need += r->hdr[i].value.len + 2;
	if (!h2__room(s, need))
		return false;
	struct h2_span joined = { (uint32_t)s->hlen, 0 };

	for (int i = 0; i < r->nhdr; i++) {
		struct h2_header h = r->hdr[i];

		if (!h2__is(s->hbuf + h.name.off, h.name.len, "cookie")) {
			r->hdr[j++] = h;
			continue;
		}
		if (first >= 0)
			h2__put(s, (const uint8_t *)"; ", 2);
		/* hbuf does not move: its room was made above. */
		memcpy(s->hbuf + s->hlen, s->hbuf + h.value.off, h.value.len);
		s->hlen += h.value.len;
		if (first < 0) {
			first = j;
			r->hdr[j++] = h;
		}
	}
	joined.len = (uint32_t)(s->hlen - joined.off);
	r->hdr[first].value = joined;
	r->nhdr = j;
	return true;
}

bool h2__head_done(struct h2_stream *s, bool end_stream)
{
	struct h2_request *r = &s->req;

	if (s->refused)
		return false;
	r->hdr = s->hdr;
	if (s->ncookie > 1 && !h2__join_cookies(s))
		return false;
	/* The head stays until the stream closes: keep only what it uses. */
	if (s->hlen > 0 && s->hlen < s->hcap) {
		uint8_t *b = realloc(s->hbuf, s->hlen);

		if (b) {
			s->hbuf = b;
			s->hcap = s->hlen;
		}
	}
	/* Only now: the cookie join and the shrink may have moved hbuf. */
	r->buf = s->hbuf;
	r->end_stream = end_stream;
	return true;
}

/* --- the HTTP/1.1 form --- */

struct h2_w {
	char *p;
	size_t cap, len;
	bool over;
};

static void h2__w(struct h2_w *w, const void *p, size_t n)
{
	if (w->over || n > w->cap - w->len) {
		w->over = true;
		return;
	}
	memcpy(w->p + w->len, p, n);
	w->len += n;
}

static void h2__ws(struct h2_w *w, const struct h2_request *r, struct h2_span sp)
{
	h2__w(w, r->buf + sp.off, sp.len);
}

#define h2__wl(w, lit) h2__w((w), (lit), sizeof(lit) - 1)

static bool h2__span_is(const struct h2_request *r, struct h2_span sp, const char *lit)
{
	return h2__is(r->buf + sp.off, sp.len, lit);
}

/* The request line "<method> <path> HTTP/1.1" (method NULL: r's own),
   Host from :authority, then r's headers but a host header when
   :authority is set (RFC 9113 8.3.1) and, for a WebSocket (ws), the
   client's sec-websocket-key and content-length. True when a
   content-length went out. */
static bool h2__head_lines(struct h2_w *w, const struct h2_request *r, const char *method, bool ws)
{
	bool has_length = false;

	if (method != NULL)
		h2__w(w, method, strlen(method));
	else
		h2__ws(w, r, r->method);
	h2__wl(w, " ");
	h2__ws(w, r, r->path);
	h2__wl(w, " HTTP/1.1\r\n");
	if (r->authority.len) {
		h2__wl(w, "Host: ");
		h2__ws(w, r, r->authority);
		h2__wl(w, "\r\n");
	}
	for (int i = 0; i < r->nhdr; i++) {
		const struct h2_header *h = &r->hdr[i];
		bool length = h2__span_is(r, h->name, "content-length");

		if ((r->authority.len && h2__span_is(r, h->name, "host")) ||
		    (ws && (length || h2__span_is(r, h->name, "sec-websocket-key"))))
			continue;
		has_length |= length;
		h2__ws(w, r, h->name);
		h2__wl(w, ": ");
		h2__ws(w, r, h->value);
		h2__wl(w, "\r\n");
	}
	return has_length;
}

int h2_request_to_h1(const struct h2_request *r, char *out, size_t cap, bool *chunked_out)
{
	struct h2_w w = { .p = out, .cap = cap };

	*chunked_out = false;
	/* CONNECT (plain or extended) is a tunnel, not an HTTP/1.1 request. */
	if (r->path.len == 0 || h2__span_is(r, r->method, "CONNECT"))
		return -1;
	bool has_length = h2__head_lines(&w, r, NULL, false);
	if (!has_length && !r->end_stream) {
		h2__wl(&w, "Transfer-Encoding: chunked\r\n");
		*chunked_out = true;
	} else if (!has_length && (h2__span_is(r, r->method, "POST") ||
				   h2__span_is(r, r->method, "PUT") ||
				   h2__span_is(r, r->method, "PATCH"))) {
		h2__wl(&w, "Content-Length: 0\r\n");
	}
	return w.over ? -1 : (int)w.len;
}

/* RFC 8441 4: :protocol names an HTTP Upgrade token; tokens compare
   without case (RFC 9110 7.8). */
bool h2_request_is_websocket(const struct h2_request *r)
{
	return r->protocol.len == 9 && h2__span_is(r, r->method, "CONNECT") &&
	       strncasecmp((const char *)r->buf + r->protocol.off, "websocket", 9) == 0;
}

int h2_websocket_to_h1(const struct h2_request *r, const char *key, char *out, size_t cap)
{
	struct h2_w w = { .p = out, .cap = cap };

	if (!h2_request_is_websocket(r) || r->path.len == 0)
		return -1;
	(void)h2__head_lines(&w, r, "GET", true);
	h2__wl(&w, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
	h2__w(&w, key, strlen(key));
	h2__wl(&w, "\r\n");
	return w.over ? -1 : (int)w.len;
}
