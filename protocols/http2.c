/*
 * http2.c - HTTP/2 on a TLS HTTP listener (ALPN "h2"): the engine
 * (h2.h: framing, HPACK, flow control, defences) between the client and
 * the HTTP/1.1 exchanges, one per stream.
 *
 * Each stream gets a struct http_conn of its own (c->h2s) holding one
 * struct http_exchange, given the HTTP/1.1 head of the stream's request
 * (http2_request_head: written and filled in with no parse; the requests
 * it does not take are written by h2_request_to_h1 and parsed); from there it takes the same way as an
 * HTTP/1.1 request (locations, routing and its queue, upstream groups,
 * the keep-alive pool, local answers, static files, compression, headers,
 * access log, metrics). What the exchange would write to an HTTP/1.1
 * client comes here (http2__out): its head, written whole by the
 * exchange, becomes h2_respond line by line (status and headers; the
 * engine drops connection-specific ones) with no parse, and a body of a
 * known length is counted and goes to h2_send_data as it comes
 * (http2__head_fast); other heads (in pieces, 1xx, chunked or up to the
 * close) are parsed with the HTTP/1.1 response parser, their bodies
 * de-chunked; the end is h2_send_end. Streams run in parallel, each with
 * its own backend connection.
 *
 * WebSocket (RFC 8441): an extended CONNECT with :protocol websocket is
 * given to its exchange as the HTTP/1.1 Upgrade (a fresh key of ours);
 * the backend's 101, checked against that key, becomes :status 200 and
 * the stream a tunnel: backend bytes as DATA, the client's DATA to the
 * backend, both under the bounds below (http2__ws_request,
 * http2__tunnel_start).
 *
 * Flow control and bounds. A stream's response bytes go into the engine
 * while h2_room allows (lim.stream_out per stream, lim.conn_out per
 * connection); what does not fit waits in the stream's pending buffer,
 * which http__queued reports, so the exchange stops reading its backend
 * past limits.relay_high_water (one read buffer, a 64 KiB file piece or
 * one local page more at most) and goes on when the client's
 * WINDOW_UPDATE lets the engine take it: a slow client stalls its own
 * stream only. Request bodies wait in the engine (the client's windows,
 * lim.stream_window / conn_window, open only as bytes are forwarded) and go
 * to the backend while its write queue is under relay_high_water. The
 * engine's output is copied to the client while the session's queue is
 * under relay_high_water, so a client that does not read holds at most
 * that plus the engine's bounds. Per stream: one exchange, its request
 * head (at most http.max_header_size + HTTP_FWD_EXTRA), a response head
 * being parsed (at most HTTP2_RESP_HEAD_MAX) and the pending bytes above;
 * at most http.h2_max_streams streams.
 *
 * Rule 1: the engine never calls back, and neither does anything here
 * into an exchange's caller: the hooks of http.c hand an event to an
 * exchange, then call http2__pump last, which writes the engine's output,
 * takes its events (new streams, bodies, closed streams: freed only
 * here, never under an exchange's own call) and feeds streams that
 * gained room.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "conf.h"
#include "gh.h"
#include "h2.h"
#include "http_int.h"
#include "list.h"
#include "sasl.h"
#include "secret.h"
#include "stream.h"

/* Response head bytes gathered per stream at most (a rewritten backend
   head is at most 20 KiB; a local page's head less). */
#define HTTP2_RESP_HEAD_MAX 65536
/* Headers of a response head given to h2_respond. */
#define HTTP2_RESP_HEADERS 200
/* Engine output copied per h2_output call. */
#define HTTP2_OUT_CHUNK 16384
/* First sizes of a stream's response head and pending body buffers
   (those of these sizes are kept with a finished stream, wiped). */
#define HTTP2_HB_FIRST 4096
#define HTTP2_PEND_FIRST 16384
/* A stream's request head buffer: at least this much, kept with a
   finished stream (wiped) when not bigger than HTTP2_HEAD_KEEP. */
#define HTTP2_HEAD_FIRST 1024
#define HTTP2_HEAD_KEEP 4096
/* Finished streams kept per connection (with their exchange, parsers
   initialised and wiped) for the next ones: a burst of as many streams
   as a client keeps open (browsers and h2load -m32 keep dozens) reuses
   them all instead of freeing and wiping, then calloc'ing, a stream and
   an exchange (~12 KiB) for most of them. Only HTTP2_SPARE_BUFS of them
   keep their response head and pending body buffers (most responses
   need neither). While streams are open the spares are at most the
   streams that were open at once, within the h2_max_streams bound; when
   the connection has no stream left after a pump they go to its worker's
   cache (below), so an idle connection holds none. */
#define HTTP2_SPARES 32
#define HTTP2_SPARE_BUFS 8
/* Kept streams a worker holds for all its connections (without their
   response buffers; ~12 KiB each, so at most 768 KiB per worker): clients
   that send their streams in bursts (h2load, a browser loading a page)
   leave their connection stream-less for a moment between bursts, and
   each burst used to calloc, wipe and free a stream and an exchange per
   stream. Their exchanges are wiped, as a connection's spares. */
#define HTTP2_WORKER_SPARES 64

struct http2_stream {
	struct http2 *h;
	int32_t id;
	struct http2_stream *next;      /* the connection's streams */
	struct http2_stream **pprev;    /* what points to it there (no walk to unlink) */
	struct list feed_link;          /* on h->feed while http2__feed has work for it */
	struct http_conn c;             /* its own connection: one exchange */
	struct http_exchange *x;
	uint8_t *head;                  /* the HTTP/1.1 request head */
	size_t head_len, head_cap;
	bool chunked;                   /* the body goes to the backend chunked */
	bool body_ended;                /* its last chunk was written */

	/* The response, as the exchange writes it in HTTP/1.1. */
	struct http_parser rp;
	struct http_head rh;
	uint8_t *hb;                    /* the head being gathered */
	size_t hlen, hcap;
	size_t hmax;                    /* the most of hb ever written (what a wipe covers) */
	uint8_t *pend;                  /* body bytes the engine has no room for yet */
	size_t plen, pcap;
	size_t pmax;                    /* the most of pend ever written (what a wipe covers) */
	bool responded;                 /* h2_respond done */
	bool body_done;                 /* the parser saw the body's end */
	bool ended;                     /* h2_send_end (or a reset) done */
	bool x_over;                    /* the exchange is done with the stream */
	bool rp_ready;                  /* rp was initialised for this stream */
	bool fast;                      /* the body is framed by its length, left to come */
	bool ws;                        /* a WebSocket extended CONNECT (RFC 8441) */
	bool tunnel;                    /* ... whose backend said 101: bytes both ways */
	uint64_t left;
	char ws_key[32];                /* the Sec-WebSocket-Key we sent its backend */
	/* Last, so that a kept stream is cleared up to here only: the
	   parser writes an entry before it counts it. */
	struct http_header rhdr[HTTP2_RESP_HEADERS];
};

struct http2 {
	struct session *s;
	struct http_conn *top;
	struct h2_conn *e;
	struct http2_stream *streams;
	int nstreams;
	/* Streams http2__feed visits: those with response bytes pending,
	   exchanges held back (a backend read or a file piece waiting for
	   room) and those with a new event (request, body bytes, the end of
	   their answer). The others are left alone: a pump costs what moved,
	   not the number of streams. */
	struct list feed;
	int nactive;                    /* streams whose exchange is not over */
	/* The earliest exchange deadline set since the last timeout (a
	   lower bound: deadlines cleared or moved later leave it early, the
	   timer then fires, and http2__timeout computes it again). 0: none. */
	uint64_t xmin;
	struct http2_stream *spares;    /* finished streams for reuse (next) */
	int nspares;
	uint8_t *scratch;               /* where a request head is made (the head
					   bound), wiped after each; freed with the spares */
	/* keepalive_timeout once no exchange runs (no stream, or only
	   streams answered that the client has not closed); 0: none. */
	uint64_t idle_deadline;
	bool fatal;                     /* h2_recv said the connection is over */
	bool hold_output;               /* leave the engine's output for the posted pump */
	bool goaway;                    /* h2_goaway sent (shutdown, reload) */
	bool pumping;
};

/* The worker's kept streams, and the settings their exchanges were made
   for (the request header index and the parsers' limits): a session under
   other settings (a reload) does not take them. */
static __thread struct {
	struct http2_stream *head;
	int n;
	int max_headers;
	size_t max_header_size, max_uri;
} http2_cache;

static bool http2__cache_fits(const struct conf *cf)
{
	return http2_cache.max_headers == cf->http.max_headers &&
	       http2_cache.max_header_size == cf->http.max_header_size &&
	       http2_cache.max_uri == cf->http.max_uri;
}

static void http2__kept_free(struct http2_stream *st)
{
	http__exchange_destroy(st->c.spare);
	free(st->hb); /* wiped when kept */
	free(st->pend);
	free(st->head);
	free(st);
}

void http2_worker_close(void)
{
	while (http2_cache.head != NULL) {
		struct http2_stream *st = http2_cache.head;
		http2_cache.head = st->next;
		http2__kept_free(st);
	}
	http2_cache.n = 0;
}

static struct http2_stream *http2__of(const struct http_exchange *x)
{
	return x->conn->h2s;
}

/* st has something for http2__feed to look at (once at least). */
static void http2__want_feed(struct http2_stream *st)
{
	if (list_empty(&st->feed_link))
		list_insert_tail(&st->h->feed, &st->feed_link);
}

/* The exchange of st is done with the stream. */
static void http2__over(struct http2_stream *st)
{
	if (!st->x_over) {
		st->x_over = true;
		if (st->x != NULL)
			st->h->nactive--;
	}
	http2__want_feed(st);
}

/* ---- the connection ---- */

static void http2__limits(const struct conf *cf, struct h2_limits *lim)
{
	h2_limits_default(lim);
	lim->max_streams = (uint32_t)cf->http.h2_max_streams;
	lim->max_requests = (uint32_t)cf->http.h2_max_requests;
	lim->max_header_list = (uint32_t)cf->http.max_header_size;
	lim->max_headers = (uint32_t)cf->http.max_headers;
	lim->streams.per_s = (uint32_t)cf->http.h2_stream_rate;
	/* RFC 8441: SETTINGS_ENABLE_CONNECT_PROTOCOL, so browsers open
	   their WebSockets as streams (http2__ws_request). */
	lim->extended_connect = cf->http.h2_websocket;
}

int http2__start(struct http_conn *c)
{
	struct http2 *h = calloc(1, sizeof(*h));
	struct h2_limits lim;

	if (h == NULL)
		return -1;
	http2__limits(c->s->conf, &lim);
	h->e = h2_conn_new(&lim);
	if (h->e == NULL) {
		free(h);
		return -1;
	}
	h->s = c->s;
	h->top = c;
	list_init(&h->feed);
	c->h2 = h;
	c->phase = HTTP_CONN_BUSY;
	c->deadline_ms = 0;
	h->idle_deadline = session_now(c->s) +
			   (uint64_t)(c->s->conf->http.keepalive_timeout * 1000.0 + 0.5);
	session_log(c->s, LOG_DEBUG, "HTTP/2 (ALPN h2)");
	return 0;
}

/* Free st; gone: the session is being freed (its connections are
   closed already, so the exchange's are not touched). */
static void http2__stream_free(struct http2 *h, struct http2_stream *st, bool gone)
{
	struct http_conn *top = h->top;
	struct http_exchange *x = st->x;

	*st->pprev = st->next;
	if (st->next != NULL)
		st->next->pprev = st->pprev;
	h->nstreams--;
	list_remove(&st->feed_link);
	if (x != NULL && !st->x_over)
		h->nactive--;
	if (x != NULL) {
		if (top->lookup == x) {
			/* Its lookup still runs: the next one waits for its end. */
			top->lookup = NULL;
			top->lookup_orphan = true;
		}
		/* Cancels its backend connection, file job and compressor;
		   kept wiped as st->c.spare unless the session goes. */
		if (gone)
			http__exchange_destroy(x);
		else if (st->c.head == x)
			http__exchange_free(&st->c, x);
		else
			http__exchange_release(x);
		st->x = NULL;
	}
	bool keep = !gone && h->nspares < HTTP2_SPARES && st->c.spare != NULL;
	if (st->head != NULL) {
		secret_wipe(st->head, st->head_len); /* cookies, Authorization */
		st->head_len = 0;
		if (!keep || st->head_cap > HTTP2_HEAD_KEEP) {
			free(st->head);
			st->head = NULL;
			st->head_cap = 0;
		}
	}
	if (st->hb != NULL) {
		secret_wipe(st->hb, st->hmax); /* Set-Cookie (nothing past hmax was written) */
		if (!keep || st->hcap != HTTP2_HB_FIRST || h->nspares >= HTTP2_SPARE_BUFS) {
			free(st->hb);
			st->hb = NULL;
		}
	}
	if (st->pend != NULL) {
		secret_wipe(st->pend, st->pmax);
		if (!keep || st->pcap != HTTP2_PEND_FIRST || h->nspares >= HTTP2_SPARE_BUFS) {
			free(st->pend);
			st->pend = NULL;
		}
	}
	if (keep) {
		st->next = h->spares;
		h->spares = st;
		h->nspares++;
	} else {
		http__exchange_destroy(st->c.spare);
		free(st);
	}
	if (h->nstreams == 0 && !gone && !h->s->closed && !h->s->finishing) {
		h->idle_deadline = session_now(h->s) +
				   (uint64_t)(h->s->conf->http.keepalive_timeout * 1000.0 + 0.5);
		session_set_phase(h->s, SESSION_HTTP_IDLE); /* the phase gauge: idle */
	}
}

/* The kept streams go (the connection is idle, or goes): to the worker's
   cache while it has room, without their response buffers. */
static void http2__spares_free(struct http2 *h)
{
	const struct conf *cf = h->s->conf;

	if (h->spares != NULL && !http2__cache_fits(cf)) {
		http2_worker_close();
		http2_cache.max_headers = cf->http.max_headers;
		http2_cache.max_header_size = cf->http.max_header_size;
		http2_cache.max_uri = cf->http.max_uri;
	}
	while (h->spares != NULL) {
		struct http2_stream *st = h->spares;
		h->spares = st->next;
		if (http2_cache.n >= HTTP2_WORKER_SPARES) {
			http2__kept_free(st);
			continue;
		}
		free(st->hb); /* wiped when kept */
		st->hb = NULL;
		free(st->pend);
		st->pend = NULL;
		st->next = http2_cache.head;
		http2_cache.head = st;
		http2_cache.n++;
	}
	h->nspares = 0;
	if (h->scratch != NULL) {
		free(h->scratch); /* wiped after each use */
		h->scratch = NULL;
	}
}

void http2__destroy(struct http_conn *c)
{
	struct http2 *h = c->h2;

	if (h == NULL)
		return;
	while (h->streams != NULL)
		http2__stream_free(h, h->streams, true);
	http2__spares_free(h);
	size_t peak;
	h2_mem(h->e, &peak);
	session_log(c->s, LOG_DEBUG, "HTTP/2: libnghttp2 held %zu bytes at most", peak);
	h2_conn_free(h->e);
	free(h);
	c->h2 = NULL;
}

/* ---- a stream's request ---- */

const uint8_t *http2__src(const struct http_exchange *x)
{
	const uint8_t *head = http2__of(x)->head;

	return head != NULL ? head : (const uint8_t *)""; /* a refused head */
}

/* Room for n bytes in st->head (it holds nothing now). */
static bool http2__head_room(struct http2_stream *st, size_t n)
{
	if (n <= st->head_cap)
		return true;
	free(st->head); /* wiped when it was last used */
	st->head_cap = n < HTTP2_HEAD_FIRST ? HTTP2_HEAD_FIRST : n;
	st->head = malloc(st->head_cap);
	if (st->head == NULL) {
		st->head_cap = 0;
		return false;
	}
	return true;
}

/* The methods a request may be built for without a parse (llhttp's
   numbers); others take the parse. */
static const struct {
	const char *name;
	uint8_t len;
	uint8_t method;
} http2__methods[] = {
	{ "GET", 3, HTTP_GET },         { "POST", 4, HTTP_POST },
	{ "HEAD", 4, HTTP_HEAD },       { "PUT", 3, HTTP_PUT },
	{ "DELETE", 6, HTTP_DELETE },   { "OPTIONS", 7, HTTP_OPTIONS },
	{ "PATCH", 5, HTTP_PATCH },     { "PROPFIND", 8, HTTP_PROPFIND },
	{ "PROPPATCH", 9, HTTP_PROPPATCH }, { "MKCOL", 5, HTTP_MKCOL },
	{ "COPY", 4, HTTP_COPY },       { "MOVE", 4, HTTP_MOVE },
	{ "LOCK", 4, HTTP_LOCK },       { "UNLOCK", 6, HTTP_UNLOCK },
	{ "REPORT", 6, HTTP_REPORT },   { "SEARCH", 6, HTTP_SEARCH },
	{ "MKCALENDAR", 10, HTTP_MKCALENDAR },
};

/* RFC 9110 5.6.2 tchar, as the HTTP/1.1 parse checks header names. */
static bool http2__tchar(uint8_t c)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";

	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c != 0 && memchr(extra, c, sizeof(extra) - 1) != NULL;
}

static bool http2__is(const uint8_t *p, size_t n, const char *lit, size_t ln)
{
	return n == ln && strncasecmp((const char *)p, lit, ln) == 0;
}

#define http2__is_lit(p, n, lit) http2__is((p), (n), (lit), sizeof(lit) - 1)

/* A header the HTTP/1.1 parse takes a meaning from (framing, connection
   options), other than Content-Length: such requests take the parse. */
static bool http2__special(const uint8_t *p, size_t n)
{
	return http2__is_lit(p, n, "transfer-encoding") || http2__is_lit(p, n, "connection") ||
	       http2__is_lit(p, n, "proxy-connection") || http2__is_lit(p, n, "upgrade");
}

/* A header value the parse would take as it is: no control byte but TAB
   and no DEL (it refuses those), no whitespace at either end (it would
   drop some). */
static bool http2__plain_value(const uint8_t *v, size_t n)
{
	if (n > 0 && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t'))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
			return false;
	return true;
}

struct http2_w {
	uint8_t *o;
	uint32_t len;
};

static struct http_span http2__put(struct http2_w *w, const void *p, size_t n)
{
	struct http_span sp = { w->len, (uint32_t)n };

	memcpy(w->o + w->len, p, n);
	w->len += (uint32_t)n;
	return sp;
}

#define http2__put_lit(w, lit) http2__put((w), (lit), sizeof(lit) - 1)

int http2_request_head(const struct h2_request *r, const struct http_limits *lim, uint8_t *out,
		       size_t cap, struct http_head *h, bool *chunked_out, bool *body_out)
{
	const uint8_t *b = r->buf;
	int method = -1;
	size_t need, cl = 0;
	int lines = 0, ncl = 0;
	bool chunked = false, zero = false;

	for (size_t i = 0; i < sizeof(http2__methods) / sizeof(http2__methods[0]); i++) {
		if (r->method.len == http2__methods[i].len &&
		    memcmp(b + r->method.off, http2__methods[i].name, r->method.len) == 0) {
			method = http2__methods[i].method;
			break;
		}
	}
	/* The target: an origin-form path of visible ASCII within max_uri. */
	if (method < 0 || r->path.len == 0 || r->path.len > lim->max_uri || b[r->path.off] != '/')
		return 0;
	for (uint32_t i = 0; i < r->path.len; i++)
		if (b[r->path.off + i] <= 0x20 || b[r->path.off + i] >= 0x7f)
			return 0;
	need = r->method.len + 1 + r->path.len + sizeof(" HTTP/1.1\r\n") - 1;
	if (r->authority.len > 0) {
		if (!http2__plain_value(b + r->authority.off, r->authority.len))
			return 0;
		need += sizeof("Host: \r\n") - 1 + r->authority.len;
		lines++;
	}
	for (int i = 0; i < r->nhdr; i++) {
		const uint8_t *n = b + r->hdr[i].name.off, *v = b + r->hdr[i].value.off;
		size_t nl = r->hdr[i].name.len, vl = r->hdr[i].value.len;
		if (r->authority.len > 0 && http2__is_lit(n, nl, "host"))
			continue;
		if (nl == 0 || http2__special(n, nl) || !http2__plain_value(v, vl))
			return 0;
		for (size_t k = 0; k < nl; k++)
			if (!http2__tchar(n[k]))
				return 0;
		if (http2__is_lit(n, nl, "content-length")) {
			/* One, of digits only, that no overflow can touch. */
			if (++ncl > 1 || vl == 0 || vl > 18)
				return 0;
			for (size_t k = 0; k < vl; k++) {
				if (v[k] < '0' || v[k] > '9')
					return 0;
				cl = cl * 10 + (size_t)(v[k] - '0');
			}
		}
		need += nl + 2 + vl + 2;
		lines++;
	}
	/* The framing h2_request_to_h1 adds. */
	if (ncl == 0 && !r->end_stream) {
		chunked = true;
		need += sizeof("Transfer-Encoding: chunked\r\n") - 1;
		lines++;
	} else if (ncl == 0 && (method == HTTP_POST || method == HTTP_PUT || method == HTTP_PATCH)) {
		zero = true;
		need += sizeof("Content-Length: 0\r\n") - 1;
		lines++;
	}
	need += 2;
	int max_lines = lim->max_headers < HTTP_MAX_HEADERS ? lim->max_headers : HTTP_MAX_HEADERS;
	if (h->hdr_cap < max_lines)
		max_lines = h->hdr_cap;
	if (lines > max_lines || need > lim->max_head || need > INT32_MAX)
		return 0;
	if (need > cap)
		return -(int)need;

	/* The bytes h2_request_to_h1 writes, and what the parse reads in them. */
	struct http2_w w = { out, 0 };
	int k = 0;
	http2__put(&w, b + r->method.off, r->method.len);
	http2__put_lit(&w, " ");
	h->uri = http2__put(&w, b + r->path.off, r->path.len);
	http2__put_lit(&w, " HTTP/1.1\r\n");
	if (r->authority.len > 0) {
		h->hdr[k].name = http2__put_lit(&w, "Host");
		http2__put_lit(&w, ": ");
		h->hdr[k++].value = http2__put(&w, b + r->authority.off, r->authority.len);
		http2__put_lit(&w, "\r\n");
	}
	for (int i = 0; i < r->nhdr; i++) {
		const uint8_t *n = b + r->hdr[i].name.off;
		size_t nl = r->hdr[i].name.len;
		if (r->authority.len > 0 && http2__is_lit(n, nl, "host"))
			continue;
		h->hdr[k].name = http2__put(&w, n, nl);
		http2__put_lit(&w, ": ");
		h->hdr[k++].value = http2__put(&w, b + r->hdr[i].value.off, r->hdr[i].value.len);
		http2__put_lit(&w, "\r\n");
	}
	if (chunked) {
		h->hdr[k].name = http2__put_lit(&w, "Transfer-Encoding");
		http2__put_lit(&w, ": ");
		h->hdr[k++].value = http2__put_lit(&w, "chunked");
		http2__put_lit(&w, "\r\n");
	} else if (zero) {
		h->hdr[k].name = http2__put_lit(&w, "Content-Length");
		http2__put_lit(&w, ": ");
		h->hdr[k++].value = http2__put_lit(&w, "0");
		http2__put_lit(&w, "\r\n");
	}
	http2__put_lit(&w, "\r\n");
	h->method = (uint8_t)method;
	h->status = 0;
	h->major = 1;
	h->minor = 1;
	h->nhdr = k;
	h->head_len = w.len;
	h->keep_alive = true;
	h->upgrade = false;
	h->chunked = chunked;
	h->has_length = ncl > 0 || zero;
	h->content_length = cl;
	h->needs_eof = false;
	*chunked_out = chunked;
	*body_out = chunked || cl > 0;
	return (int)w.len;
}

static void http2__request_parsed(struct http2_stream *st, struct http_exchange *x, int n);
static const uint8_t *http2__head_line(const uint8_t *q, const uint8_t *end, struct h2_field *f);
static void http2__ws_request(struct http2_stream *st, struct http_exchange *x,
			      const struct h2_request *req);

/* A new stream: its exchange, fed with the request as HTTP/1.1. */
static void http2__request(struct http2 *h, int32_t id, const struct h2_request *req)
{
	struct session *s = h->s;
	const struct conf *cf = s->conf;
	struct http2_stream *st = h->spares;
	size_t cap = (size_t)cf->http.max_header_size + HTTP_FWD_EXTRA;

	if (st != NULL) {
		h->spares = st->next;
		h->nspares--;
	} else if (http2_cache.head != NULL && http2__cache_fits(cf)) {
		/* One another connection of this worker kept. */
		st = http2_cache.head;
		http2_cache.head = st->next;
		http2_cache.n--;
		st->c.spare->s = s;
	}
	if (st != NULL) {
		/* A kept one: zero again but its wiped exchange and buffers. */
		struct http_exchange *spare = st->c.spare;
		uint8_t *hb = st->hb, *pend = st->pend, *head = st->head;
		size_t hcap = st->hcap, pcap = st->pcap, head_cap = st->head_cap;
		memset(st, 0, offsetof(struct http2_stream, rhdr));
		st->c.spare = spare;
		st->hb = hb;
		st->hcap = hb != NULL ? hcap : 0;
		st->pend = pend;
		st->pcap = pend != NULL ? pcap : 0;
		st->head = head;
		st->head_cap = head != NULL ? head_cap : 0;
	} else if ((st = calloc(1, sizeof(*st))) == NULL) {
		h2_reset(h->e, id, H2_REFUSED_STREAM);
		return;
	}
	st->h = h;
	st->id = id;
	list_init(&st->feed_link);
	http2__want_feed(st);
	st->next = h->streams;
	st->pprev = &h->streams;
	if (h->streams != NULL)
		h->streams->pprev = &st->next;
	h->streams = st;
	h->nstreams++;
	h->idle_deadline = 0;
	h2_set_user(h->e, id, st);

	struct http_conn *c = &st->c;
	c->s = s;
	c->h2s = st;
	c->tail = &c->head;
	c->phase = HTTP_CONN_BUSY;
	struct http_exchange *x = http__exchange_new(c);
	if (x == NULL) {
		h2_reset(h->e, id, H2_REFUSED_STREAM);
		st->x_over = st->ended = true;
		return;
	}
	st->x = x;
	h->nactive++;
	x->start_ms = session_now(s);
	if (req->protocol.len > 0 ||
	    (req->method.len == 7 && memcmp(req->buf + req->method.off, "CONNECT", 7) == 0)) {
		/* CONNECT: a WebSocket (RFC 8441) or refused. */
		http2__ws_request(st, x, req);
		return;
	}
	/* The common case: the exchange's head is filled as the request's
	   HTTP/1.1 form is written, no parse. */
	bool body = false;
	int dn = http2_request_head(req, &x->req.lim, st->head, st->head_cap, &x->reqh, &st->chunked,
				    &body);
	if (dn < 0) {
		if (!http2__head_room(st, (size_t)-dn)) {
			http__answer(x, 503, NULL, NULL, "out of memory");
			return;
		}
		dn = http2_request_head(req, &x->req.lim, st->head, st->head_cap, &x->reqh,
					&st->chunked, &body);
	}
	if (dn > 0) {
		st->head_len = (size_t)dn;
		http_parser_preparsed(&x->req, body);
		http__request(x, dn);
		return;
	}
	/* Anything else (another method, a bound passed, a field the parse
	   refuses or reads a meaning in): written, then parsed, for the
	   answers an HTTP/1.1 client would get. */
	if (h->scratch == NULL && (h->scratch = malloc(cap)) == NULL) {
		http__answer(x, 503, NULL, NULL, "out of memory");
		return;
	}
	http2__request_parsed(st, x, h2_request_to_h1(req, (char *)h->scratch, cap - 2, &st->chunked));
}

/* n bytes of a request head (no final CRLF) were written in the
   connection's scratch (n < 0: they did not fit): moved to the stream's
   head, parsed as an HTTP/1.1 head, and the exchange goes on. */
static void http2__request_parsed(struct http2_stream *st, struct http_exchange *x, int n)
{
	uint8_t *sc = st->h->scratch;
	size_t cap = (size_t)x->s->conf->http.max_header_size + HTTP_FWD_EXTRA;

	if (n < 0) {
		secret_wipe(sc, cap); /* what was written of it */
		http__answer(x, 431, NULL, NULL, "HTTP/2 request head too large");
		return;
	}
	memcpy(sc + n, "\r\n", 2);
	/* Kept while the stream lives (the scratch is wiped; nothing past
	   n + 2 was written). */
	if (!http2__head_room(st, (size_t)n + 2)) {
		secret_wipe(sc, (size_t)n + 2);
		http__answer(x, 503, NULL, NULL, "out of memory");
		return;
	}
	st->head_len = (size_t)n + 2;
	memcpy(st->head, sc, st->head_len);
	secret_wipe(sc, st->head_len);
	int rc = http_parse_head(&x->req, st->head, st->head_len);
	if (rc <= 0) {
		http__answer(x, rc < 0 ? -rc : 400, NULL, NULL,
			     rc == HTTP_E_URI ? "request-target too long"
			     : rc == HTTP_E_HEADERS ? "request head too large"
			     : "malformed request");
		return;
	}
	http__request(x, rc);
}

/* ---- WebSocket over HTTP/2 (RFC 8441) ---- */

void http2_ws_accept(const char *key, char out[29])
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	char cat[64 + sizeof(guid)];
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int mdn = 0;
	size_t kl = strlen(key);

	out[0] = '\0';
	if (kl > 64) /* ours are 24 characters */
		return;
	memcpy(cat, key, kl);
	memcpy(cat + kl, guid, sizeof(guid) - 1);
	if (EVP_Digest(cat, kl + sizeof(guid) - 1, md, &mdn, EVP_sha1(), NULL) == 1 && mdn == 20)
		(void)sasl_b64_encode(md, 20, out);
}

/*
 * An extended CONNECT: :protocol "websocket" becomes the HTTP/1.1
 * Upgrade request an HTTP/1.1 browser would have sent (h2_websocket_to_h1,
 * with a fresh Sec-WebSocket-Key: HTTP/2 carries none), which then takes
 * the HTTP/1.1 path whole (location and its `websocket` flag, routing,
 * headers, access log). Another :protocol, and a plain CONNECT (no
 * :protocol: a TCP tunnel), are 501 (RFC 9110 15.6.2: what the server
 * does not support). The client's DATA waits in the engine
 * (its window) until the backend's 101 makes the stream a tunnel.
 */
static void http2__ws_request(struct http2_stream *st, struct http_exchange *x,
			      const struct h2_request *req)
{
	struct http2 *h = st->h;
	size_t cap = (size_t)x->s->conf->http.max_header_size + HTTP_FWD_EXTRA;
	uint8_t raw[16];

	if (!h2_request_is_websocket(req)) {
		http__answer(x, 501, NULL, NULL,
			     req->protocol.len > 0
				     ? "extended CONNECT for a protocol other than websocket"
				     : "CONNECT (a TCP tunnel) is not proxied");
		return;
	}
	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		http__answer(x, 503, NULL, NULL, "no random bytes for a Sec-WebSocket-Key");
		return;
	}
	(void)sasl_b64_encode(raw, sizeof(raw), st->ws_key);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	/* RFC 6455 1.3's sample key: a fuzzer's backend can answer it. */
	strcpy(st->ws_key, "dGhlIHNhbXBsZSBub25jZQ==");
#endif
	st->ws = true;
	if (h->scratch == NULL && (h->scratch = malloc(cap)) == NULL) {
		http__answer(x, 503, NULL, NULL, "out of memory");
		return;
	}
	http2__request_parsed(st, x, h2_websocket_to_h1(req, st->ws_key, (char *)h->scratch, cap - 2));
}

bool http2__ws_accepted(const struct http_exchange *x, const uint8_t *base,
			const struct http_head *rh)
{
	const struct http2_stream *st = http2__of(x);
	char want[29];

	if (!st->ws)
		return false;
	const struct http_header *a = http_header_find(base, rh, "Sec-WebSocket-Accept");
	if (a == NULL)
		return false;
	http2_ws_accept(st->ws_key, want);
	return a->value.len == 28 && want[0] != '\0' && memcmp(base + a->value.off, want, 28) == 0;
}

bool http2__tunnel_start(struct http_exchange *x, const uint8_t *head, size_t n)
{
	struct http2_stream *st = http2__of(x);
	struct h2_field f[HTTP2_RESP_HEADERS];
	const uint8_t *end = head + n, *q;
	size_t nf = 0;

	/* The rewritten 101's lines but its status line and the accept
	   (RFC 8441 5: no Sec-WebSocket-Accept on HTTP/2); the engine drops
	   Upgrade and Connection. */
	q = memchr(head, '\n', n);
	for (q = q != NULL ? q + 1 : end; q < end && nf < HTTP2_RESP_HEADERS;) {
		const uint8_t *next = http2__head_line(q, end, &f[nf]);
		if (next == NULL)
			break; /* the blank line */
		if (!http2__is_lit(q, f[nf].name_len, "sec-websocket-accept"))
			nf++;
		q = next;
	}
	if (h2_respond(st->h->e, st->id, 200, f, nf, false) < 0)
		return false;
	st->responded = true;
	st->tunnel = true;
	st->fast = true; /* backend bytes go as DATA as they come, never framed */
	st->left = UINT64_MAX;
	st->chunked = false;
	st->body_ended = false;
	/* The client's DATA now goes to the backend (http2__feed_one and
	   H2_EV_BODY call http__forward_body). */
	x->req_done = false;
	st->c.body = x;
	http2__want_feed(st);
	return true;
}

long http2__body_step(struct http_exchange *x, bool *done_out)
{
	struct http2_stream *st = http2__of(x);
	struct h2_conn *e = st->h->e;
	const uint8_t *d = NULL;
	bool end = false;
	size_t n = h2_body_peek(e, st->id, &d, &end);

	*done_out = false;
	if (n > 0) {
		if (st->chunked) {
			char hd[24];
			int hn = snprintf(hd, sizeof(hd), "%zx\r\n", n);
			session_upstream_write(x->up, hd, (size_t)hn);
			session_upstream_write(x->up, d, n);
			session_upstream_write(x->up, "\r\n", 2);
		} else {
			session_upstream_write(x->up, d, n);
		}
		/* Handed to the backend's queue (bounded by relay_high_water):
		   the client's window reopens by as much. */
		h2_body_consume(e, st->id, n);
		return (long)n;
	}
	if (end && !st->body_ended) {
		if (st->chunked)
			session_upstream_write(x->up, "0\r\n\r\n", 5);
		if (st->tunnel) /* END_STREAM: a FIN to the backend, which may still answer */
			session_upstream_shutdown(x->up);
		st->body_ended = true;
		*done_out = true;
	}
	return 0;
}

/* ---- a stream's response ---- */

size_t http2__queued(const struct http_exchange *x)
{
	return http2__of(x)->plen;
}

/* Give the engine what it has room for; the end when all is there. */
static void http2__flush(struct http2_stream *st)
{
	struct h2_conn *e = st->h->e;

	if (st->ended || !st->responded)
		return;
	if (st->plen > 0) {
		size_t n = h2_send_data(e, st->id, st->pend, st->plen);
		if (n > 0) {
			memmove(st->pend, st->pend + n, st->plen - n);
			st->plen -= n;
		}
	}
	if (st->plen == 0 && (st->body_done || st->x_over)) {
		h2_send_end(e, st->id);
		st->ended = true;
	}
}

/* *buf (cap bytes, used of them filled, max ever written) moved to a new
   block of newcap bytes; the old one wiped (it may hold Set-Cookie or
   response bytes) and freed. False when out of memory (*buf unchanged). */
static bool http2__regrow(uint8_t **buf, size_t *cap, size_t *max, size_t used, size_t newcap)
{
	uint8_t *nb = malloc(newcap);

	if (nb == NULL)
		return false;
	if (used > 0)
		memcpy(nb, *buf, used);
	if (*buf != NULL) {
		secret_wipe(*buf, *max);
		free(*buf);
	}
	*buf = nb;
	*cap = newcap;
	*max = used;
	return true;
}

static bool http2__pend_add(struct http2_stream *st, const uint8_t *p, size_t n)
{
	if (st->plen + n > st->pcap) {
		size_t cap = st->pcap ? st->pcap : HTTP2_PEND_FIRST;
		while (cap < st->plen + n)
			cap *= 2;
		if (!http2__regrow(&st->pend, &st->pcap, &st->pmax, st->plen, cap))
			return false;
	}
	memcpy(st->pend + st->plen, p, n);
	st->plen += n;
	if (st->plen > st->pmax)
		st->pmax = st->plen;
	return true;
}

/* The response parser of st, initialised at its first use (most
   responses take http2__head_fast and never need it). */
static void http2__rp(struct http2_stream *st)
{
	struct http_limits bl = {
		.max_head = HTTP2_RESP_HEAD_MAX,
		.max_uri = 0,
		.max_headers = HTTP2_RESP_HEADERS,
	};

	if (st->rp_ready)
		return;
	st->rh.hdr = st->rhdr;
	st->rh.hdr_cap = HTTP2_RESP_HEADERS;
	http_parser_init(&st->rp, HTTP_RESPONSE, &bl, &st->rh);
	st->rp_ready = true;
}

/* Is p[0..n) lit, in any case? */
static bool http2__ci(const uint8_t *p, size_t n, const char *lit, size_t ln)
{
	return n == ln && strncasecmp((const char *)p, lit, ln) == 0;
}

/* One line "<name>: <value>" CRLF of a head as http_rewrite_response
   writes it, at q (before end), as the engine's field *f (pointing into
   the head); returns the next line, or NULL when q holds no such line
   (the blank line that ends the head among them). */
static const uint8_t *http2__head_line(const uint8_t *q, const uint8_t *end, struct h2_field *f)
{
	const uint8_t *cr = memchr(q, '\r', (size_t)(end - q));
	if (cr == NULL || end - cr < 2 || cr[1] != '\n' || memchr(q, '\n', (size_t)(cr - q)))
		return NULL;
	const uint8_t *colon = memchr(q, ':', (size_t)(cr - q));
	if (colon == NULL || colon == q || cr - colon < 2 || colon[1] != ' ')
		return NULL;
	*f = (struct h2_field){ (const char *)q, (size_t)(colon - q), (const char *)colon + 2,
				(size_t)(cr - colon - 2) };
	return cr + 2;
}

/*
 * The exchange's response head, as http_rewrite_response (or a local
 * answer's or a file's writer) made it, whole at the start of p[0..n):
 * "HTTP/1.1 <3 digits> <reason>" CRLF, lines "<name>: <value>" CRLF, CRLF.
 * Its lines become the engine's fields as they are, with no parse; the
 * engine drops the connection-specific ones, as for a parsed head. Taken
 * only for a final status whose body has no body or a Content-Length
 * (then st->fast: the body's bytes are counted, not parsed). Returns the
 * head's length, 0 when it is anything else (split over writes, 1xx,
 * chunked, up to the close, a line not of that form: the parse takes
 * it), -1 when the engine refused it.
 */
static int http2__head_fast(struct http2_stream *st, const struct http_exchange *x,
			    const uint8_t *p, size_t n)
{
	struct h2_field f[HTTP2_RESP_HEADERS];
	const uint8_t *end = p + n, *q;
	size_t nf = 0;
	uint64_t cl = 0;
	int ncl = 0;

	if (n < 16 || memcmp(p, "HTTP/1.1 ", 9) != 0 || p[12] != ' ' || p[9] < '2' ||
	    p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
		return 0;
	int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	q = memchr(p + 13, '\r', (size_t)(end - p - 13));
	if (q == NULL || end - q < 2 || q[1] != '\n')
		return 0;
	for (q += 2;;) {
		if (end - q < 2)
			return 0;
		if (q[0] == '\r') {
			if (q[1] != '\n')
				return 0;
			q += 2;
			break;
		}
		const uint8_t *next =
			nf < HTTP2_RESP_HEADERS ? http2__head_line(q, end, &f[nf]) : NULL;
		if (next == NULL)
			return 0;
		size_t nl = f[nf].name_len, vl = f[nf].value_len;
		const uint8_t *v = (const uint8_t *)f[nf].value;
		if (http2__ci(q, nl, "transfer-encoding", 17))
			return 0;
		if (http2__ci(q, nl, "content-length", 14)) {
			if (++ncl > 1 || vl == 0 || vl > 18)
				return 0;
			for (size_t k = 0; k < vl; k++) {
				if (v[k] < '0' || v[k] > '9')
					return 0;
				cl = cl * 10 + (uint64_t)(v[k] - '0');
			}
		}
		nf++;
		q = next;
	}
	/* RFC 9112 6.3: no body after HEAD, 204 or 304. */
	bool body;
	if (x->is_head || status == 204 || status == 304)
		body = false;
	else if (ncl > 0)
		body = cl > 0;
	else
		return 0;
	if (h2_respond(st->h->e, st->id, status, f, nf, !body) < 0)
		return -1;
	st->responded = true;
	if (body) {
		st->fast = true;
		st->left = cl;
	} else {
		st->body_done = st->ended = true;
	}
	return (int)(q - p);
}

/* Body bytes of a length-framed response: to the engine at once while
   nothing waits before them, the rest to the pending buffer. */
static bool http2__body_direct(struct http2_stream *st, const uint8_t *p, size_t n)
{
	if (st->plen == 0 && !st->ended) {
		size_t k = h2_send_data(st->h->e, st->id, p, n);
		p += k;
		n -= k;
	}
	return n == 0 || http2__pend_add(st, p, n);
}

/* The response head is complete in st->hb: to the engine. */
static bool http2__respond(struct http2_stream *st)
{
	struct h2_field f[HTTP2_RESP_HEADERS];
	const struct http_head *rh = &st->rh;
	size_t nf = 0;

	for (int i = 0; i < rh->nhdr && nf < HTTP2_RESP_HEADERS; i++) {
		f[nf].name = (const char *)st->hb + rh->hdr[i].name.off;
		f[nf].name_len = rh->hdr[i].name.len;
		f[nf].value = (const char *)st->hb + rh->hdr[i].value.off;
		f[nf].value_len = rh->hdr[i].value.len;
		nf++;
	}
	st->body_done = http_parser_body_done(&st->rp);
	if (h2_respond(st->h->e, st->id, rh->status, f, nf, st->body_done) < 0)
		return false;
	st->responded = true;
	if (st->body_done)
		st->ended = true;
	return true;
}

void http2__out(struct http_exchange *x, const void *data, size_t n)
{
	struct http2_stream *st = http2__of(x);
	const uint8_t *p = data;

	while (n > 0 && !st->ended && !st->body_done) {
		if (!st->responded) {
			if (st->hlen == 0) {
				int r = http2__head_fast(st, x, p, n);
				if (r < 0)
					goto fail;
				if (r > 0) {
					p += r;
					n -= (size_t)r;
					continue;
				}
			}
			/* Gather the head (the exchange may write it in pieces).
			   A response to HEAD has no body, whatever it says. */
			http2__rp(st);
			if (st->hlen == 0 && x->is_head)
				http_parser_no_body(&st->rp);
			size_t room = HTTP2_RESP_HEAD_MAX - st->hlen;
			size_t k = n < room ? n : room;
			if (st->hlen + k > st->hcap) {
				size_t cap = st->hlen + k < HTTP2_HB_FIRST ? HTTP2_HB_FIRST
									   : st->hlen + k;
				if (!http2__regrow(&st->hb, &st->hcap, &st->hmax, st->hlen, cap))
					goto fail;
			}
			memcpy(st->hb + st->hlen, p, k);
			size_t before = st->hlen;
			st->hlen += k;
			if (st->hlen > st->hmax)
				st->hmax = st->hlen;
			int rc = http_parse_head(&st->rp, st->hb, st->hlen);
			if (rc == HTTP_NEED_MORE) {
				if (st->hlen >= HTTP2_RESP_HEAD_MAX)
					goto fail;
				return;
			}
			if (rc < 0)
				goto fail;
			size_t used = (size_t)rc - before; /* of these k bytes */
			p += used;
			n -= used;
			if (st->rh.status < 200) {
				/* 100 Continue and friends: not sent (the engine
				   would take them; curl does not need them). */
				http_parser_reset(&st->rp);
				st->hlen = 0;
				continue;
			}
			if (!http2__respond(st))
				goto fail;
			/* The engine has copied the fields: the head (Set-Cookie)
			   goes now, not with the stream. */
			secret_wipe(st->hb, st->hmax);
			if (st->hcap != HTTP2_HB_FIRST) {
				free(st->hb);
				st->hb = NULL;
				st->hcap = 0;
			}
			st->hlen = st->hmax = 0;
			continue;
		}
		if (st->fast) {
			/* Bytes past the length are not this response's. */
			size_t k = n < st->left ? n : (size_t)st->left;
			if (!http2__body_direct(st, p, k))
				goto fail;
			st->left -= k;
			if (st->left == 0)
				st->body_done = true;
			break;
		}
		/* Body bytes, framing removed (in a copy: data is the caller's). */
		size_t at = st->plen;
		if (!http2__pend_add(st, p, n))
			goto fail;
		bool done = false;
		size_t dlen = 0;
		long used = http_parse_body_data(&st->rp, st->pend + at, n, &done, &dlen);
		if (used < 0)
			goto fail;
		st->plen = at + dlen;
		if (done)
			st->body_done = true;
		break;
	}
	http2__flush(st);
	http2__want_feed(st);
	return;
fail:
	session_log(x->s, LOG_INFO, "HTTP/2 stream %d: response not sendable", (int)st->id);
	h2_reset(st->h->e, st->id, H2_INTERNAL_ERROR);
	st->ended = true;
	http2__want_feed(st);
}

void http2__finish(struct http_exchange *x)
{
	struct http2_stream *st = http2__of(x);

	http2__over(st);
	x->phase = HTTP_X_DONE;
	x->deadline_ms = 0;
	if (st->tunnel && st->c.body == x)
		st->c.body = NULL; /* its backend is gone: the client's DATA is dropped */
	if (!st->responded && !st->ended) {
		h2_reset(st->h->e, st->id, H2_INTERNAL_ERROR);
		st->ended = true;
		return;
	}
	/* A body that ends with the connection (no length): it ends here. */
	if (!st->body_done && st->rp_ready)
		(void)http_parse_eof(&st->rp);
	http2__flush(st);
}

void http2__close(struct http_exchange *x, const char *why)
{
	struct http2_stream *st = http2__of(x);

	session_log(x->s, LOG_INFO, "HTTP/2 stream %d reset: %s", (int)st->id, why);
	x->phase = HTTP_X_DONE;
	x->deadline_ms = 0;
	http__backend_drop(x, false);
	http2__over(st);
	if (st->tunnel && st->c.body == x)
		st->c.body = NULL;
	/* RFC 9113 8.5: a tunnel's backend connection failed (or went
	   idle) is CONNECT_ERROR. */
	if (!st->ended)
		h2_reset(st->h->e, st->id, st->tunnel ? H2_CONNECT_ERROR : H2_INTERNAL_ERROR);
	st->ended = true;
}

/* ---- the engine's side ---- */

static void http2__event(struct http2 *h, const struct h2_event *ev)
{
	struct http2_stream *st = ev->user;

	switch (ev->kind) {
	case H2_EV_REQUEST:
		if (h->s->closed || h->s->finishing)
			h2_reset(h->e, ev->id, H2_REFUSED_STREAM);
		else
			http2__request(h, ev->id, ev->req);
		return;
	case H2_EV_BODY:
		if (st != NULL)
			http2__want_feed(st);
		if (st != NULL && st->x != NULL && st->x->phase == HTTP_X_FORWARD &&
		    st->c.body == st->x)
			http__forward_body(st->x);
		return;
	case H2_EV_CLOSED:
		if (st == NULL)
			return;
		if (st->x != NULL && st->x->phase != HTTP_X_DONE) {
			/* The client reset it before its answer ended. */
			st->x->status = st->x->status ? st->x->status : 499;
			session_log(h->s, LOG_DEBUG, "HTTP/2 stream %d closed by the client (code %u)",
				    (int)ev->id, ev->code);
			http__log(st->x);
		}
		http2__stream_free(h, st, false);
		return;
	case H2_EV_GOAWAY:
		session_log(h->s, LOG_DEBUG, "HTTP/2 client GOAWAY (code %u, last stream %d)",
			    ev->code, (int)ev->last_id);
		return;
	case H2_EV_NONE:
		return;
	}
}

/* One stream of http2__feed: its pending bytes, then its exchange goes
   on (as client_written does for HTTP/1.1); the request body of an
   answered stream is dropped so the client's window reopens. True when
   something moved; *again_out: it stays on the list (bytes still pending,
   an exchange still held back). */
static bool http2__feed_one(struct http2 *h, struct http2_stream *st, size_t hw, bool *again_out)
{
	struct http_exchange *x = st->x;
	size_t before = st->plen;
	bool was_ended = st->ended;
	bool moved = false;

	http2__flush(st);
	if (st->plen != before || st->ended != was_ended)
		moved = true;
	if (x != NULL && !st->x_over && st->plen <= hw / 2 &&
	    (before > 0 || (x->phase == HTTP_X_FORWARD && x->in != NULL) ||
	     (x->phase == HTTP_X_FILE && http__file_ready(x)))) {
		if (x->phase == HTTP_X_FILE)
			http__file_written(x);
		else if (x->phase == HTTP_X_FORWARD)
			http__process_backend(x);
		moved = true;
	}
	if (x != NULL && st->tunnel && !st->x_over && x->phase == HTTP_X_FORWARD &&
	    st->c.body == x && x->up != NULL) {
		/* A tunnel: the client's DATA to the backend while it takes them. */
		uint64_t sent = x->req_body_sent;
		http__forward_body(x);
		if (x->req_body_sent != sent)
			moved = true;
	}
	if (x != NULL && (st->x_over || x->phase == HTTP_X_DONE || x->phase == HTTP_X_FILE) &&
	    st->c.body == NULL) {
		const uint8_t *d;
		bool end;
		size_t n = h2_body_peek(h->e, st->id, &d, &end);
		if (n > 0) {
			h2_body_consume(h->e, st->id, n);
			moved = true;
		}
	}
	*again_out = st->plen > 0 ||
		     (x != NULL && !st->x_over &&
		      (x->phase == HTTP_X_FILE || (x->phase == HTTP_X_FORWARD && x->in != NULL)));
	return moved;
}

/* The streams on h->feed (each taken off, put back while it still has
   work; what they do may put themselves or others back on). */
static bool http2__feed(struct http2 *h)
{
	size_t hw = h->s->conf->limits.relay_high_water;
	struct list round;
	bool moved = false;

	if (list_empty(&h->feed))
		return false;
	/* This round takes the list whole: streams put on h->feed meanwhile
	   wait for the next round. */
	list_move_all(&round, &h->feed);
	struct list *l;
	while (!h->s->closed && (l = list_first(&round)) != NULL) {
		struct http2_stream *st = list_entry(l, struct http2_stream, feed_link);
		bool again = false;
		list_remove(&st->feed_link);
		moved |= http2__feed_one(h, st, hw, &again);
		if (again)
			http2__want_feed(st);
	}
	/* Left over (the session closed): back on the list, not on this
	   stack frame's. */
	while ((l = list_first(&round)) != NULL) {
		struct http2_stream *st = list_entry(l, struct http2_stream, feed_link);
		list_remove(&st->feed_link);
		http2__want_feed(st);
	}
	return moved;
}

void http2__pump(struct http_conn *c)
{
	struct http2 *h = c->h2;
	struct session *s = c->s;
	uint8_t out[HTTP2_OUT_CHUNK];

	if (h == NULL || s->closed || h->pumping)
		return;
	h->pumping = true;
	size_t hw = s->conf->limits.relay_high_water;
	for (int round = 0; round < 1000 && !s->closed && !h->fatal; round++) {
		bool moved = false;
		struct h2_event ev;
		/* Client bytes, when the engine takes input (it stops while
		   its control-frame queue waits for a client that does not
		   read; what was read meanwhile waits in s->in). */
		if (s->in_len > 0 && h2_want_read(h->e)) {
			long r = h2_recv(h->e, s->in, s->in_len, session_now(s));
			const char *calm = h2_calm_reason(h->e);

			session_consume(s, s->in_len);
			if (calm != NULL)
				session_log(s, LOG_WARN, "HTTP/2 GOAWAY ENHANCE_YOUR_CALM: %s", calm);
			if (r == H2_E_FATAL) {
				h->fatal = true;
				break;
			}
			moved = true;
		}
		while (!s->closed && h2_next_event(h->e, &ev)) {
			http2__event(h, &ev);
			moved = true;
		}
		if (s->closed)
			break;
		moved |= http2__feed(h);
		/* All the frames of this round in one write (and as few TLS
		   records as the cork's buffer allows). */
		stream_cork(&s->client);
		while (!h->hold_output && !s->closed && session_client_queued(s) < hw) {
			size_t n = h2_output(h->e, out, sizeof(out));
			if (n == 0)
				break;
			session_write(s, out, n);
			moved = true;
		}
		if (stream_uncork(&s->client) < 0 && !s->closed)
			session_close(s, "client write failed");
		if (!moved)
			break;
	}
	h->pumping = false;
	if (h->nstreams == 0) {
		/* An idle connection keeps no spare, no input buffer and no
		   resident page of libnghttp2's frame buffer. */
		http2__spares_free(h);
		if (!s->closed) {
			h2_idle(h->e);
			session_release_input(s);
		}
	}
	if (s->closed || s->finishing)
		return;
	if (h->fatal) {
		/* Its last words (a GOAWAY) go out, then it closes. */
		uint8_t last[HTTP2_OUT_CHUNK];
		size_t n;
		while (!s->closed && (n = h2_output(h->e, last, sizeof(last))) > 0)
			session_write(s, last, n);
	}
	if (h->fatal || (!h2_want_read(h->e) && !h2_want_write(h->e))) {
		session_finish(s, h->fatal ? "HTTP/2 connection error" : "HTTP/2 connection done");
		return;
	}
	session_client_reading(s, h2_want_read(h->e));
	http2__arm(c);
}

/*
 * A pump whose output waits for the session's posted callback (a libuv
 * idle handle: after every I/O callback of this loop pass, before the
 * loop polls again). The answers of all the backends that read in one
 * pass, and what the client's frames asked for, leave in one write and
 * one TLS record (per cork buffer) instead of one per event.
 */
static void http2__pump_held(struct http_conn *c)
{
	struct http2 *h = c->h2;
	struct session *s = c->s;

	if (h == NULL || s->closed || h->pumping)
		return;
	h->hold_output = true;
	http2__pump(c);
	h->hold_output = false;
	if (!s->closed && !s->finishing && c->h2 != NULL && h2_want_write(h->e))
		session_post_written(s);
}

void http2__after(struct session *s)
{
	struct http_conn *c = http__of(s);

	if (c != NULL && c->h2 != NULL && !s->closed)
		http2__pump_held(c);
}

void http2__client_data(struct http_conn *c)
{
	http2__pump_held(c);
}

void http2__client_written(struct http_conn *c)
{
	http2__pump(c);
}

struct http_exchange *http2__lookup_next(struct http_conn *c)
{
	struct http_exchange *pick = NULL;

	/* The oldest stream (the lowest id) first: no stream starves. */
	for (struct http2_stream *st = c->h2->streams; st != NULL; st = st->next) {
		struct http_exchange *x = st->x;
		if (x != NULL && x->lookup_wait && x->phase == HTTP_X_ROUTE &&
		    (pick == NULL || st->id < http2__of(pick)->id))
			pick = x;
	}
	return pick;
}

void http2__arm(struct http_conn *c)
{
	struct session *s = c->s;
	struct http_conn *top = http__of(s);
	struct http2 *h = top != NULL ? top->h2 : NULL;

	if (h == NULL || s->closed || s->finishing)
		return;
	if (c->h2s != NULL) {
		/* A stream's exchange set its deadline: noted, no scan. */
		struct http_exchange *x = c->h2s->x;
		if (x != NULL && x->deadline_ms != 0 && (h->xmin == 0 || x->deadline_ms < h->xmin))
			h->xmin = x->deadline_ms;
		if (h->pumping)
			return; /* the pump arms the timer when it ends */
	}
	/* Streams whose answers are done but that the client keeps open
	   (it never ends its request, or never reads the rest) wait no
	   longer than an idle connection. */
	if (h->nactive == 0 && h->idle_deadline == 0)
		h->idle_deadline = session_now(s) +
				   (uint64_t)(s->conf->http.keepalive_timeout * 1000.0 + 0.5);
	uint64_t t = h->idle_deadline;
	if (h->xmin != 0 && (t == 0 || h->xmin < t))
		t = h->xmin;
	if (t == 0)
		return;
	uint64_t now = session_now(s);
	session_delay(s, t > now ? (double)(t - now) / 1000.0 : 0);
}

void http2__drain(struct http_conn *c)
{
	struct http2 *h = c->h2;

	if (h->goaway)
		return;
	h->goaway = true;
	session_log(c->s, LOG_DEBUG, "HTTP/2 GOAWAY: shutting down (%d streams in flight)",
		    h->nstreams);
	h2_goaway(h->e);
	http2__pump(c);
}

void http2__timeout(struct http_conn *c)
{
	struct http2 *h = c->h2;
	struct session *s = c->s;
	uint64_t now = session_now(s);

	bool active = false;
	for (struct http2_stream *st = h->streams; st != NULL; st = st->next)
		active |= st->x != NULL && !st->x_over;
	if (h->idle_deadline != 0 && h->idle_deadline <= now && !active) {
		h->idle_deadline = 0;
		session_log(s, LOG_DEBUG, "HTTP/2 keep-alive timeout (%d streams left): GOAWAY",
			    h->nstreams);
		h2_goaway(h->e);
		h->goaway = true;
		http2__pump(c);
		if (!s->closed && !s->finishing)
			session_finish(s, "keep-alive timeout");
		return;
	}
	/* Each deadline that passed ends its own stream's exchange; the
	   earliest of the others is what the timer waits for next (those
	   set meanwhile lower it again through http2__arm). */
	h->xmin = 0;
	for (struct http2_stream *st = h->streams; st != NULL && !s->closed; st = st->next) {
		struct http_exchange *x = st->x;
		if (x == NULL || st->x_over || x->deadline_ms == 0)
			continue;
		if (x->deadline_ms > now) {
			if (h->xmin == 0 || x->deadline_ms < h->xmin)
				h->xmin = x->deadline_ms;
			continue;
		}
		x->deadline_ms = 0;
		http__exchange_timeout(x);
	}
	http2__pump(c);
}
