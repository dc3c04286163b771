/*
 * h2.h - the HTTP/2 engine of the HTTPS front end: one client connection's
 * HTTP/2 framing, HPACK, flow control and defences (libnghttp2's server
 * session underneath), with no socket, timer, session or libuv in it.
 * Bytes in, bytes out (CONVENTIONS 1 and 9):
 *
 *   h2_recv(c, bytes, n, now_ms)      client bytes, any split
 *   h2_next_event(c, &ev)             what happened, one event at a time
 *   h2_respond / h2_send_data / h2_send_end / h2_reset   the caller's answers
 *   h2_body_peek / h2_body_consume    request body bytes, released when forwarded
 *   h2_output(c, buf, cap)            bytes to write to the client
 *
 * Rule 1 (HACKING.md): the engine never calls the caller. Everything it
 * learns inside h2_recv or h2_output is kept as per-stream flags and given
 * back by h2_next_event; libnghttp2's callbacks are the engine's own and
 * run only inside h2_recv (frames received) and h2_output (frames sent).
 *
 * Bounds (Rule 2), all per connection unless said otherwise:
 *  - request head, per stream: decoded fields in at most 2 x
 *    lim.max_header_list bytes (the joined cookie is written after them),
 *    shrunk to what it uses once complete, plus an index of at most
 *    (lim.max_headers + 1) x 16 bytes; kept until the stream closes.
 *    Header blocks on the wire: lim.max_continuations CONTINUATION frames
 *    and lim.max_header_block encoded bytes, else GOAWAY ENHANCE_YOUR_CALM;
 *  - request body: at most lim.stream_window bytes per stream and
 *    lim.conn_window for the connection wait in the engine, because the
 *    client's windows only reopen (WINDOW_UPDATE) as h2_body_consume says
 *    the bytes were forwarded;
 *  - response body: lim.stream_out bytes per stream and lim.conn_out for
 *    all streams of the connection (h2_room says how much more fits);
 *  - body buffers grow by doubling to what they hold (so at most twice
 *    that) and are freed when emptied past 4 KiB;
 *  - output: one frame in progress (up to 16 KiB of DATA or one header
 *    block) plus libnghttp2's queue of control frames, which h2_want_read
 *    bounds by refusing input while more than H2_MAX_QUEUED frames wait;
 *  - streams: lim.max_streams open at once (SETTINGS_MAX_CONCURRENT_STREAMS);
 *    a closed stream lives until its H2_EV_CLOSED is taken, and is freed
 *    at once if the caller never heard of it.
 */
#ifndef GATEHOUSE_H2_H
#define GATEHOUSE_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* libnghttp2's control frames waiting before h2_want_read says no. */
#define H2_MAX_QUEUED 512

/* HTTP/2 error codes (RFC 9113 7) the caller may see or use. */
#define H2_NO_ERROR 0x0
#define H2_PROTOCOL_ERROR 0x1
#define H2_INTERNAL_ERROR 0x2
#define H2_REFUSED_STREAM 0x7
#define H2_CANCEL 0x8
#define H2_CONNECT_ERROR 0xa
#define H2_ENHANCE_YOUR_CALM 0xb

/* A token bucket: burst events at once, then per_s per second (burst 0:
   no limit). */
struct h2_rate {
	uint32_t burst;
	uint32_t per_s;
};

/* Limits of one connection; h2_limits_default fills the defaults. */
struct h2_limits {
	uint32_t max_streams;       /* open streams (SETTINGS_MAX_CONCURRENT_STREAMS): 128 */
	uint32_t max_header_list;   /* decoded request header bytes, RFC 9113 6.5.2
				       sizing (name + value + 32 each): 16384 -> 431 */
	uint32_t max_headers;       /* header fields per request: 100 -> 431 */
	uint32_t header_table;      /* HPACK decoder table (SETTINGS_HEADER_TABLE_SIZE): 4096 */
	uint32_t max_header_block;  /* encoded bytes of one header block: 65536 */
	uint32_t max_continuations; /* CONTINUATION frames per header block: 8 */
	uint32_t stream_window;     /* request body bytes per stream in flight: 65535 */
	uint32_t conn_window;       /* request body bytes per connection in flight: 1 MiB */
	uint32_t stream_out;        /* response bytes held per stream: 32768 */
	uint32_t conn_out;          /* response bytes held per connection: 1 MiB */
	uint32_t max_requests;      /* streams over the connection's life, then a
				       graceful GOAWAY (nginx keepalive_requests): 1000;
				       0: no limit */
	struct h2_rate streams;     /* new streams: {1000, 200} */
	struct h2_rate resets;      /* streams reset before their response ended, by
				       the client or for its errors (rapid reset,
				       CVE-2023-44487): {200, 20} */
	struct h2_rate control;     /* SETTINGS, PING, PRIORITY, WINDOW_UPDATE,
				       RST_STREAM and unknown frames: {1000, 100} */
	uint32_t max_empty;         /* empty DATA/HEADERS/CONTINUATION frames in a row
				       without END_STREAM: 32 */
	bool extended_connect;      /* SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441): off */
};

/* Past any bound above the connection ends with GOAWAY ENHANCE_YOUR_CALM
   (the per-request ones, header list and count, answer 431 instead). */
void h2_limits_default(struct h2_limits *lim_out);

/* A header of a request, as offsets into h2_request.buf (names lower case,
   as HTTP/2 requires). */
struct h2_span {
	uint32_t off;
	uint32_t len;
};

struct h2_header {
	struct h2_span name;
	struct h2_span value;
};

/*
 * A complete request head. Pseudo-headers are apart from the regular
 * headers; libnghttp2 has already refused (RST_STREAM PROTOCOL_ERROR, no
 * event) what RFC 9113 8.2 and 8.3 call malformed: missing or repeated
 * pseudo-headers, upper-case names, connection-specific headers
 * (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade),
 * TE other than "trailers", a Content-Length that the DATA frames do not
 * match. All `cookie` fields become one, in the place of the first, their
 * values joined with "; " (RFC 9113 8.2.3). Valid until the stream's
 * H2_EV_CLOSED is taken.
 */
struct h2_request {
	const uint8_t *buf;
	struct h2_span method, scheme, authority, path;
	struct h2_span protocol;    /* :protocol of an extended CONNECT, else empty */
	struct h2_header *hdr;      /* regular headers in arrival order */
	int nhdr;
	bool end_stream;            /* no body follows */
};

/*
 * Write req as an HTTP/1.1 head for a backend into out: "METHOD path
 * HTTP/1.1", then Host (from :authority; a `host` header only when there is
 * no :authority, and never both), the headers, and the framing: the
 * client's Content-Length when it sent one, "Content-Length: 0" when the
 * request ended with its head and its method usually has a body (POST,
 * PUT, PATCH), else "Transfer-Encoding: chunked" with *chunked_out set: the
 * caller frames the body in chunks. No final CRLF is written, so that the
 * caller's rewriting (X-Forwarded-For, ...) may follow. Returns the
 * length, or -1 when it does not fit in cap.
 */
int h2_request_to_h1(const struct h2_request *req, char *out, size_t cap, bool *chunked_out);
/* Is req an extended CONNECT (RFC 8441) for :protocol "websocket" (any case)? */
bool h2_request_is_websocket(const struct h2_request *req);
/*
 * Write a WebSocket extended CONNECT (h2_request_is_websocket) as the
 * HTTP/1.1 Upgrade request of RFC 6455 4.1 into out: "GET path HTTP/1.1",
 * Host from :authority (as h2_request_to_h1), the client's headers but
 * sec-websocket-key and content-length (a tunnel has no body framing),
 * then "Upgrade: websocket", "Connection: Upgrade" and "Sec-WebSocket-Key:
 * key" (the caller's fresh one: HTTP/2 carries none). The client's
 * sec-websocket-version, -protocol and -extensions pass as they are. No
 * final CRLF. Returns the length, or -1 when it does not fit in cap.
 */
int h2_websocket_to_h1(const struct h2_request *req, const char *key, char *out, size_t cap);

/* A header to send, e.g. from a backend's HTTP/1.1 response head. */
struct h2_field {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};

enum h2_ev_kind {
	H2_EV_NONE = 0,
	H2_EV_REQUEST,      /* a request head: ev.req; h2_set_user may name the stream */
	H2_EV_BODY,         /* request body bytes (or its end) wait: h2_body_peek */
	H2_EV_CLOSED,       /* the stream is gone (ev.code: H2_NO_ERROR when both sides
			       ended, else why it was reset); its id is dead and
			       body bytes not consumed are dropped */
	H2_EV_GOAWAY,       /* the client sent GOAWAY (ev.code, ev.last_id) */
};

struct h2_event {
	enum h2_ev_kind kind;
	int32_t id;
	void *user;                 /* what h2_set_user gave this stream */
	const struct h2_request *req;
	uint32_t code;
	int32_t last_id;
};

struct h2_conn;

/* A server connection with limits lim (copied) and its SETTINGS queued
   for h2_output. NULL when out of memory. */
struct h2_conn *h2_conn_new(const struct h2_limits *lim);
/* Free it and everything it holds. */
void h2_conn_free(struct h2_conn *c);

/*
 * Feed n client bytes (any split, the preface first). now_ms is the
 * caller's clock for the rate limits. Returns n (all are always taken) or
 * H2_E_FATAL: the connection is over; write what h2_output still gives (a
 * GOAWAY, when there is one) and close. Take the events (h2_next_event)
 * before the next call. Call it only while h2_want_read is true.
 */
#define H2_E_FATAL (-1)
long h2_recv(struct h2_conn *c, const uint8_t *data, size_t n, uint64_t now_ms);

/* The next event, or false when there is none. Events arise inside
   h2_recv and h2_output (a stream closes when its last frame is sent):
   take them after both. A stream closed before its H2_EV_REQUEST was
   taken is never reported. */
bool h2_next_event(struct h2_conn *c, struct h2_event *ev_out);

/* Name stream id with the caller's pointer (given back in its events). */
void h2_set_user(struct h2_conn *c, int32_t id, void *user);

/*
 * Request body bytes of stream id waiting in the engine: *data_out and the
 * count (0: none now). *end_out is set when the body has ended and all of
 * it was consumed. h2_body_consume(c, id, n) drops n of them and reopens
 * the client's windows by n (WINDOW_UPDATE in the next h2_output).
 */
size_t h2_body_peek(struct h2_conn *c, int32_t id, const uint8_t **data_out, bool *end_out);
void h2_body_consume(struct h2_conn *c, int32_t id, size_t n);

/*
 * Answer stream id with status (100..999 but 101) and headers
 * (connection-specific ones, Connection, Keep-Alive, Proxy-Connection,
 * Transfer-Encoding, Upgrade, TE and any named by Connection, are dropped;
 * names are sent in lower case; fields libnghttp2 finds invalid are
 * skipped). end: no body. A 1xx status is informational (end ignored) and
 * a final answer must follow. Returns 0, or -1 (stream gone, answered,
 * bad status, no memory).
 */
int h2_respond(struct h2_conn *c, int32_t id, int status, const struct h2_field *hdr, size_t n,
	       bool end);

/* Response bytes stream id can take now (0: it is full or gone). */
size_t h2_room(struct h2_conn *c, int32_t id);

/* Copy up to n response body bytes of stream id (after h2_respond);
   returns how many were taken (at most h2_room). */
size_t h2_send_data(struct h2_conn *c, int32_t id, const uint8_t *data, size_t n);

/* The response body of stream id is complete. */
void h2_send_end(struct h2_conn *c, int32_t id);

/* Reset stream id with code (e.g. a backend that failed mid-response). */
void h2_reset(struct h2_conn *c, int32_t id, uint32_t code);

/*
 * Stop taking new streams (shutdown, reload draining): GOAWAY NO_ERROR
 * naming the last stream seen; those streams finish, later ones are
 * ignored (the client retries them elsewhere, RFC 9113 6.8).
 */
void h2_goaway(struct h2_conn *c);

/* Copy up to cap bytes to write to the client into out; returns the count
   (0: nothing to write now). Frames are produced only as room allows. */
size_t h2_output(struct h2_conn *c, uint8_t *out, size_t cap);

/* Should the caller read from the client / is there output to take? When
   both are false the connection is finished: close it. */
bool h2_want_read(struct h2_conn *c);
bool h2_want_write(struct h2_conn *c);

/* Once, after the engine cut the client off with GOAWAY ENHANCE_YOUR_CALM:
   which bound it went past ("new streams past the stream rate", ...);
   else NULL. For the error log: an operator sees why a client was cut. */
const char *h2_calm_reason(struct h2_conn *c);

/* Open streams (for logs and the bound tests). */
size_t h2_streams(struct h2_conn *c);

/* Bytes libnghttp2 holds for this connection (its allocator counts them by
   malloc_usable_size): now, and the most it held (peak_out may be NULL). */
size_t h2_mem(const struct h2_conn *c, size_t *peak_out);

/*
 * The connection is idle (no stream open, all output taken): give the
 * pages of libnghttp2's outbound frame buffer back to the kernel
 * (madvise MADV_DONTNEED on the whole pages inside it; the next frame
 * touches what it needs again). A no-op while any output waits, and
 * when no frame reached those pages since the last time (small answers
 * stay in the block's first page). Returns the bytes given back (0: none).
 */
size_t h2_idle(struct h2_conn *c);

#endif
