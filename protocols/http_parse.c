/*
 * http_parse.c - request and response heads and body framing over llhttp,
 * as a resumable parser over byte slices (no I/O, no allocation).
 *
 * llhttp does the syntax; this file keeps the results as offsets into the
 * caller's head buffer and enforces the bounds: head size, header count and
 * URI length. The head is parsed up to its end and llhttp is paused there,
 * so the caller knows exactly where the head stops and the body starts.
 * Body bytes are then fed through the same llhttp state only to find where
 * the message ends (Content-Length, chunked, or EOF); the caller relays the
 * bytes themselves unchanged.
 */
#include <string.h>
#include <strings.h>

#include "http.h"

enum { HP_HEAD = 0, HP_BODY, HP_DONE };

static struct http_parser *hp__of(llhttp_t *ll)
{
	return ll->data;
}

static uint32_t hp__off(struct http_parser *p, const char *at)
{
	return (uint32_t)((const uint8_t *)at - p->base);
}

/* Extend span s by the piece at..at+len (pieces of one span are contiguous). */
static void hp__span(struct http_parser *p, struct http_span *s, const char *at, size_t len)
{
	if (s->len == 0)
		s->off = hp__off(p, at);
	s->len += (uint32_t)len;
}

static int hp__on_url(llhttp_t *ll, const char *at, size_t len)
{
	struct http_parser *p = hp__of(ll);

	hp__span(p, &p->h->uri, at, len);
	return 0;
}

/* Bounds are checked when an element is complete, so that the answer does
   not depend on where reads happened to split the input. */
static int hp__on_url_complete(llhttp_t *ll)
{
	struct http_parser *p = hp__of(ll);

	if (p->h->uri.len > p->lim.max_uri) {
		p->err = HTTP_E_URI;
		return -1;
	}
	/* RFC 9112 §3.2: the target is visible ASCII. llhttp (not built
	   strict) lets a TAB, DEL and 8-bit bytes through; a backend that
	   splits the request line on any whitespace would read another
	   target than the one we routed and logged. */
	for (uint32_t i = 0; i < p->h->uri.len; i++) {
		uint8_t c = p->base[p->h->uri.off + i];
		if (c <= 0x20 || c >= 0x7f) {
			p->err = HTTP_E_BAD;
			return -1;
		}
	}
	return 0;
}

static int hp__on_status(llhttp_t *ll, const char *at, size_t len)
{
	struct http_parser *p = hp__of(ll);

	hp__span(p, &p->h->reason, at, len);
	return 0;
}

static int hp__on_field(llhttp_t *ll, const char *at, size_t len)
{
	struct http_parser *p = hp__of(ll);
	struct http_head *h = p->h;

	if (p->state != HP_HEAD)
		return 0; /* chunked trailers: relayed as body bytes */

	if (!p->in_field) {
		/* The first piece of a new name (pieces come when a read ends
		   inside it); an empty value gives no value callback at all. */
		p->in_field = true;
		if (h->nhdr >= h->hdr_cap || h->nhdr >= p->lim.max_headers) {
			p->too_many = true;
			return 0;
		}
		memset(&h->hdr[h->nhdr], 0, sizeof(h->hdr[0]));
		h->nhdr++;
	}
	if (p->too_many)
		return 0;
	hp__span(p, &h->hdr[h->nhdr - 1].name, at, len);
	return 0;
}

static int hp__on_value(llhttp_t *ll, const char *at, size_t len)
{
	struct http_parser *p = hp__of(ll);
	struct http_head *h = p->h;

	if (p->state != HP_HEAD)
		return 0; /* chunked trailers: relayed as body bytes */

	if (h->nhdr == 0)
		return -1;
	if (p->too_many)
		return 0;
	hp__span(p, &h->hdr[h->nhdr - 1].value, at, len);
	return 0;
}

/* RFC 9110 §5.6.2 tchar. */
static bool hp__tchar(uint8_t c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int hp__on_field_complete(llhttp_t *ll)
{
	struct http_parser *p = hp__of(ll);

	if (p->state != HP_HEAD)
		return 0; /* chunked trailers: relayed as body bytes */

	p->in_field = false;
	if (p->too_many) {
		p->err = HTTP_E_HEADERS;
		return -1;
	}
	/* A name that is not a token ("X Space", empty) could be read as
	   another header by the backend: refuse it rather than forward it. */
	const struct http_span *n = &p->h->hdr[p->h->nhdr - 1].name;
	if (n->len == 0) {
		p->err = HTTP_E_BAD;
		return -1;
	}
	for (uint32_t i = 0; i < n->len; i++) {
		if (!hp__tchar(p->base[n->off + i])) {
			p->err = HTTP_E_BAD;
			return -1;
		}
	}
	return 0;
}

/* A value with CR, LF or NUL in it (obs-fold, bare CR) is refused: the
   backend might split it differently (request smuggling). */
static int hp__on_value_complete(llhttp_t *ll)
{
	struct http_parser *p = hp__of(ll);

	if (p->state != HP_HEAD)
		return 0; /* chunked trailers: relayed as body bytes */

	if (p->too_many || p->h->nhdr == 0)
		return 0;
	const struct http_span *v = &p->h->hdr[p->h->nhdr - 1].value;
	for (uint32_t i = 0; i < v->len; i++) {
		uint8_t c = p->base[v->off + i];
		if (c == '\r' || c == '\n' || c == 0) {
			p->err = HTTP_E_BAD;
			return -1;
		}
	}
	return 0;
}

/*
 * RFC 9112 §6.1: the only transfer coding a request may carry to us is a
 * single, final "chunked" (one Transfer-Encoding line, nothing else in it,
 * case-insensitive, optional whitespace around it). "identity, chunked",
 * "chunked, chunked" or two lines are framings a backend may read
 * differently from us, so they are refused rather than normalised.
 */
static bool hp__te_exactly_chunked(const struct http_parser *p)
{
	const struct http_head *h = p->h;
	int seen = 0;

	for (int i = 0; i < h->nhdr; i++) {
		if (!http_span_is(p->base, h->hdr[i].name, "Transfer-Encoding"))
			continue;
		if (++seen > 1)
			return false;
		const uint8_t *v = p->base + h->hdr[i].value.off;
		size_t n = h->hdr[i].value.len;
		while (n > 0 && (v[0] == ' ' || v[0] == '\t')) {
			v++;
			n--;
		}
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
		if (n != 7 || strncasecmp((const char *)v, "chunked", 7) != 0)
			return false;
	}
	return seen == 1;
}

static int hp__on_headers_complete(llhttp_t *ll)
{
	struct http_parser *p = hp__of(ll);
	struct http_head *h = p->h;

	h->method = ll->method;
	h->status = ll->status_code;
	h->major = ll->http_major;
	h->minor = ll->http_minor;
	h->keep_alive = llhttp_should_keep_alive(ll) != 0;
	h->upgrade = ll->upgrade != 0;
	h->chunked = (ll->flags & F_CHUNKED) != 0;
	h->has_length = (ll->flags & F_CONTENT_LENGTH) != 0;
	h->content_length = h->has_length ? ll->content_length : 0;
	h->needs_eof = llhttp_message_needs_eof(ll) != 0;
	/* RFC 9112 §6.3: a request whose Transfer-Encoding does not end in
	   chunked has no reliable length. */
	if (ll->type == HTTP_REQUEST && (ll->flags & F_TRANSFER_ENCODING) && !h->chunked) {
		p->err = HTTP_E_BAD;
		return -1;
	}
	/* RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request is faulty
	   framing (the message MUST be treated as such, the connection closed);
	   and anything but a lone "chunked" is refused (above). */
	if (ll->type == HTTP_REQUEST && (ll->flags & F_TRANSFER_ENCODING) &&
	    ((h->major == 1 && h->minor == 0) || h->major == 0 || !hp__te_exactly_chunked(p))) {
		p->err = HTTP_E_BAD;
		return -1;
	}
	if (p->no_body) {
		/* A response to HEAD: no body, whatever the headers say. */
		h->needs_eof = false;
		return 1;
	}
	return HPE_PAUSED;
}

static int hp__on_message_complete(llhttp_t *ll)
{
	struct http_parser *p = hp__of(ll);

	p->ended = true;
	return HPE_PAUSED;
}

/* http_parse_body_data: the body's bytes move to the front of the buffer
   being parsed (never forward: framing only ever drops bytes). */
static int hp__on_body(llhttp_t *ll, const char *at, size_t len)
{
	struct http_parser *p = hp__of(ll);

	if (p->sink != NULL) {
		memmove(p->sink + p->sunk, at, len);
		p->sunk += len;
	}
	return 0;
}

void http_parser_init(struct http_parser *p, llhttp_type_t kind, const struct http_limits *lim,
		      struct http_head *h)
{
	memset(p, 0, sizeof(*p));
	llhttp_settings_init(&p->set);
	p->set.on_url = hp__on_url;
	p->set.on_url_complete = hp__on_url_complete;
	p->set.on_status = hp__on_status;
	p->set.on_header_field = hp__on_field;
	p->set.on_header_value = hp__on_value;
	p->set.on_header_field_complete = hp__on_field_complete;
	p->set.on_header_value_complete = hp__on_value_complete;
	p->set.on_headers_complete = hp__on_headers_complete;
	p->set.on_message_complete = hp__on_message_complete;
	p->set.on_body = hp__on_body;
	p->lim = *lim;
	if (p->lim.max_headers > HTTP_MAX_HEADERS)
		p->lim.max_headers = HTTP_MAX_HEADERS;
	p->h = h;
	llhttp_init(&p->ll, kind, &p->set);
	p->ll.data = p;
	http_parser_reset(p);
}

void http_parser_reset(struct http_parser *p)
{
	struct http_header *hdr = p->h->hdr;
	int cap = p->h->hdr_cap;

	llhttp_init(&p->ll, (llhttp_type_t)p->ll.type, &p->set);
	p->ll.data = p;
	memset(p->h, 0, sizeof(*p->h));
	p->h->hdr = hdr;
	p->h->hdr_cap = cap;
	p->fed = 0;
	p->state = HP_HEAD;
	p->err = 0;
	p->in_field = false;
	p->too_many = false;
	p->no_body = false;
	p->ended = false;
	p->base = NULL;
}

void http_parser_no_body(struct http_parser *p)
{
	p->no_body = true;
}

void http_parser_preparsed(struct http_parser *p, bool body)
{
	p->state = body ? HP_BODY : HP_DONE;
	p->fed = p->h->head_len;
}

/* After the head: does a body follow, by the framing rules of RFC 9112 §6? */
static bool hp__has_body(const struct http_parser *p)
{
	const struct http_head *h = p->h;

	if (p->no_body)
		return false;
	if (p->ll.type == HTTP_RESPONSE &&
	    ((h->status >= 100 && h->status < 200) || h->status == 204 || h->status == 304))
		return false;
	if (h->chunked)
		return true;
	if (h->has_length)
		return h->content_length > 0;
	return p->ll.type == HTTP_RESPONSE && h->needs_eof;
}

int http_parse_head(struct http_parser *p, const uint8_t *buf, size_t len)
{
	if (p->state != HP_HEAD)
		return p->h->head_len > 0 ? (int)p->h->head_len : HTTP_E_BAD;
	if (len <= p->fed)
		return HTTP_NEED_MORE;
	size_t room = p->lim.max_head > p->fed ? p->lim.max_head - p->fed : 0;
	size_t n = len - p->fed;
	if (n > room)
		n = room;
	p->base = buf;
	llhttp_errno_t e = n > 0 ? llhttp_execute(&p->ll, (const char *)buf + p->fed, n) : HPE_OK;
	p->base = NULL;
	if (p->err != 0)
		return p->err;
	if (e == HPE_PAUSED) {
		size_t end = (size_t)((const uint8_t *)llhttp_get_error_pos(&p->ll) - buf);
		llhttp_resume(&p->ll);
		p->fed = end;
		p->h->head_len = end;
		p->state = (!p->ended && hp__has_body(p)) ? HP_BODY : HP_DONE;
		return (int)end;
	}
	if (e != HPE_OK)
		return HTTP_E_BAD;
	p->fed += n;
	if (p->fed >= p->lim.max_head) {
		/* Still in the request line: the URI is what is too long. */
		if (p->ll.type == HTTP_REQUEST && p->h->nhdr == 0 && p->h->uri.len >= p->fed / 2)
			return HTTP_E_URI;
		return HTTP_E_HEADERS;
	}
	return HTTP_NEED_MORE;
}

long http_parse_body(struct http_parser *p, const uint8_t *data, size_t n, bool *done)
{
	*done = false;
	if (p->state == HP_DONE) {
		*done = true;
		return 0;
	}
	if (p->state != HP_BODY)
		return HTTP_E_BAD;
	if (n == 0)
		return 0;
	llhttp_errno_t e = llhttp_execute(&p->ll, (const char *)data, n);
	if (e == HPE_OK)
		return (long)n;
	if ((e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) && p->ended) {
		size_t used = (size_t)((const uint8_t *)llhttp_get_error_pos(&p->ll) - data);
		p->state = HP_DONE;
		*done = true;
		return (long)used;
	}
	return HTTP_E_BAD;
}

long http_parse_body_data(struct http_parser *p, uint8_t *data, size_t n, bool *done,
			  size_t *data_len_out)
{
	p->sink = data;
	p->sunk = 0;
	long r = http_parse_body(p, data, n, done);
	*data_len_out = p->sunk;
	p->sink = NULL;
	return r;
}

bool http_parser_body_done(const struct http_parser *p)
{
	return p->state == HP_DONE;
}

bool http_parse_eof(struct http_parser *p)
{
	if (p->state == HP_DONE)
		return true;
	if (p->state != HP_BODY || !p->h->needs_eof)
		return false;
	llhttp_errno_t e = llhttp_finish(&p->ll);
	if ((e == HPE_OK || e == HPE_PAUSED) && p->ended) {
		p->state = HP_DONE;
		return true;
	}
	return false;
}

/* ---- header access ---- */

const struct http_header *http_header_find(const uint8_t *buf, const struct http_head *h,
					   const char *name)
{
	for (int i = 0; i < h->nhdr; i++)
		if (http_span_is(buf, h->hdr[i].name, name))
			return &h->hdr[i];
	return NULL;
}

static bool hp__is_ows(uint8_t c)
{
	return c == ' ' || c == '\t';
}

/* Is token one of the comma-separated items of v[0..n)? */
static bool hp__list_has(const uint8_t *v, size_t n, const char *token)
{
	size_t tl = strlen(token);
	size_t i = 0;

	while (i < n) {
		while (i < n && (hp__is_ows(v[i]) || v[i] == ','))
			i++;
		size_t start = i;
		while (i < n && v[i] != ',')
			i++;
		size_t end = i;
		while (end > start && hp__is_ows(v[end - 1]))
			end--;
		if (end - start == tl && strncasecmp((const char *)v + start, token, tl) == 0)
			return true;
	}
	return false;
}

bool http_header_has_token(const uint8_t *buf, const struct http_head *h, const char *name,
			   const char *token)
{
	for (int i = 0; i < h->nhdr; i++) {
		if (!http_span_is(buf, h->hdr[i].name, name))
			continue;
		if (hp__list_has(buf + h->hdr[i].value.off, h->hdr[i].value.len, token))
			return true;
	}
	return false;
}
