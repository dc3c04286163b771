/*
 * http_int.h - what the files of the HTTP front end share: the client
 * connection, the exchanges (request and response) it carries, and the
 * steps one file hands to another. Private to protocols/ (http.c:
 * session_proto hooks and the exchanges' memory; http_conn.c: the
 * connection's phases, deadlines and pipeline; http_exchange.c: routing, the
 * backend and local answers of one exchange; http_request.c: decisions on
 * a complete request head; http_stream.c: the request body, the response
 * and the end of an exchange).
 *
 * Ownership. The session's proto_state is a struct http_conn. It owns a
 * list of struct http_exchange, oldest first: responses go to the client
 * in that order. Each exchange owns its parsers, its heads, its rewritten
 * request head, its deadline and its backend connection (struct
 * session_upstream) from the moment it asks for one: the connect (name
 * resolution, TCP, TLS) is the exchange's, its result comes to it
 * (upstream_connected with the exchange as owner), and dropping the
 * exchange's connection cancels it with no callback afterwards. A finished
 * exchange is kept as the connection's spare (parsers initialised, wiped)
 * so keep-alive requests cost no malloc.
 *
 * Pipelining (HTTP/1.1). The next request head is parsed as soon as the
 * one before it has all its body, and is routed, connected and sent while
 * earlier ones are in flight, up to HTTP_MAX_PIPELINE exchanges per
 * connection (more heads wait unparsed in s->in, whose size bounds them).
 * Only the front exchange reads its backend's response; one behind it
 * holds at most one read buffer of its backend (x->in, reads stopped)
 * until it is the front. A local answer (an error page, a redirect) of an
 * exchange behind the front is kept (x->local) and sent when its turn
 * comes; it closes the connection, so nothing after it is parsed. Nothing
 * is parsed past a request that ends the connection or upgrades it.
 *
 * Deadlines. The connection has one (c->deadline_ms: keepalive_timeout
 * while idle, header_timeout from the first byte of a head, none while
 * exchanges are in flight) and each exchange has its own (x->deadline_ms:
 * connect_timeout while connecting, x->read_timeout - http.backend_timeout
 * unless set per request - while it waits for its backend, renewed as
 * bytes move; none while it waits for the exchanges before it). The
 * session's one timer is armed at the earliest of them (http__arm); when
 * it fires, each deadline that has passed ends its own exchange only (504
 * for a backend that never answered).
 *
 * Request bodies go from the client's read buffer to the backend: a read
 * that holds only body bytes is handed over whole (session_client_direct,
 * proto->client_buf); body bytes that came with a head, or in front of the
 * next one, are written from s->in or from the read buffer (one copy).
 */
#ifndef GATEHOUSE_HTTP_INT_H
#define GATEHOUSE_HTTP_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "http_compress.h"
#include "route.h"
#include "session.h"
#include "upstream.h"

/* Headers kept per response head (backends send a few dozen). */
#define HTTP_RESP_HEADERS 200
/* The least room for a backend's response head (http.max_header_size may
   be smaller: backends send long Set-Cookie and CSP lines). */
#define HTTP_RESP_HEAD_MIN 16384
/* Room the rewritten request head needs beyond the received one. */
#define HTTP_FWD_EXTRA 1024
/* The forwarded head's block is kept with its exchange (and an HTTP/2
   connection's kept streams' exchanges) when not bigger than this. */
#define HTTP_FWD_KEEP 4096
/* Exchanges in flight per client connection at most (pipelining). */
#define HTTP_MAX_PIPELINE 8
/* An HTTP/1.1 connection idle this long (ms) gives back its spare exchange
   (http__idle_release); requests that follow each other sooner keep it
   (a calloc, an init and a wipe of 9 KiB per request otherwise). */
#define HTTP_IDLE_RELEASE_MS 500

/*
 * The client connection's phases. Its deadline follows them: IDLE
 * keepalive_timeout, HEAD header_timeout from the first byte of a head
 * (dribbling bytes does not extend it), BUSY none (the exchanges' own).
 */
enum http_conn_phase {
	HTTP_CONN_IDLE = 0, /* between requests: no byte of the next one yet */
	HTTP_CONN_HEAD,     /* reading a request head, none in flight */
	HTTP_CONN_BUSY,     /* exchanges in flight (later heads parsed as they come) */
	HTTP_CONN_DONE,     /* answered locally or closing: nothing more is read */
	HTTP_CONN_NPHASES
};

/* One exchange's phases. */
enum http_x_phase {
	HTTP_X_HEAD = 0,    /* its request head is being read */
	HTTP_X_ROUTE,       /* the route lookup runs */
	HTTP_X_CONNECT,     /* getting a backend connection */
	HTTP_X_FORWARD,     /* request going out, response coming back */
	HTTP_X_FILE,        /* a static file answers it (http_file.c) */
	HTTP_X_DONE,        /* answered; logged */
	HTTP_X_NPHASES
};

extern const char *const http_conn_phase_names[HTTP_CONN_NPHASES];
extern const char *const http_x_phase_names[HTTP_X_NPHASES];

struct http_conn;

struct http_exchange {
	struct session *s;
	struct http_conn *conn;
	struct http_exchange *next;     /* the connection's list, oldest first */
	enum http_x_phase phase;

	struct http_parser req, resp;
	struct http_head reqh, resph;
	struct http_header *reqhdr;     /* limits.max_headers of them */
	struct http_header resphdr[HTTP_RESP_HEADERS];

	/* Nothing above holds request bytes (http__exchange_destroy wipes
	   from here on). The rewritten request head, kept until the response starts so a
	   request that met a stale pooled connection can be sent again. It
	   may hold Authorization and cookies. The block stays with the
	   exchange (and its spare) between requests; what may have been
	   written of it (fwd_dirty: the longest head, or all of it after a
	   rewrite that failed part way) is wiped when the exchange is reset
	   and when it is freed. */
	char *fwd;
	size_t fwd_cap, fwd_len, fwd_dirty;

	/* Where it goes: the backend as a host and a port (a number, never
	   parsed back from the address text), and as its connection names it
	   (the access log's upstream; empty: no backend was asked for). */
	char up_host[ROUTE_MAX_HOST];
	uint16_t up_port;
	char up_addr[ROUTE_MAX_HOST + 8];
	/* Its backend connection from the moment it is asked for
	   (session_upstream_get: connecting in HTTP_X_CONNECT) until
	   released; and whether it came from the pool. */
	struct session_upstream *up;
	bool up_reused;
	/* When this exchange gives up (session_now ms; 0: none), and how long
	   its backend may stay silent (seconds; http.backend_timeout unless
	   a per-request setting changes it, e.g. for long polls). */
	uint64_t deadline_ms;
	double read_timeout;
	bool lookup_wait;      /* its route lookup waits for another's to end */
	/* A local answer made while exchanges before it were in flight: sent
	   (then the connection closes) when it is the front. local_why set:
	   there is one (local may be NULL: nothing to write). */
	char *local;
	size_t local_len;
	const char *local_why;
	/* The backend's read buffer being handled, from its offset: body
	   bytes go from here to the client (taken over whole when they fill
	   it). Backend reads pause while it holds bytes. */
	struct pbuf *in;
	/* A response head that spans reads is gathered here (lazily, from
	   session_hbuf_get; hused: most ever filled, what a wipe covers). */
	uint8_t *hbuf;
	size_t hlen, hcap, hused;

	bool req_done;         /* the whole request went to the backend */
	bool resp_head_done;
	bool resp_done;
	bool close_after;      /* close the client connection after this response */
	bool backend_gone;     /* the backend closed; bytes read may still wait */
	bool websocket;        /* the request asks for a WebSocket upgrade */
	/* An HTTP/2 WebSocket tunnel (RFC 8441): the backend said 101, the
	   stream said 200; bytes pass unparsed both ways until either side
	   ends. Its access log line was written when it started. */
	bool tunnel;
	bool tunnel_err;       /* its backend connection failed (not a clean EOF) */
	bool is_head;          /* the request is HEAD */
	bool stale_retry_done; /* already resent once on a fresh connection */
	bool route_retried;    /* already looked up again after a refused connect */
	uint64_t req_body_sent;
	uint64_t resp_bytes_in;
	uint64_t bytes_sent;   /* to the client for this exchange */
	uint64_t start_ms;
	int status;

	enum http_route_kind kind;
	char route_name[ROUTE_MAX_USER];
	struct route route;
	bool routed;           /* route holds the resolver's answer */

	char method[24];
	char host[256];
	char path[1024];

	/* The request's location (conf_http_locations of the listener; NULL
	   when none is configured or none matches) and its normalized path
	   (http_path_normalize: what locations and static files see), npath_len
	   bytes plus a NUL in a block of npath_cap. */
	const struct conf_location *loc;
	char *npath;
	size_t npath_len, npath_cap;

	/* The location's upstream group (NULL: none, http.backends), the
	   server of it being tried (-1: a routed one) and those tried. */
	const struct conf_upstream *grp;
	int srv;
	struct upstream_tried tried;

	/* A `root` location's file response (http_file.c), or NULL. */
	struct http_file *file;

	/* Compression (http_stream_z.c): the coding the request accepts
	   (IDENTITY: none) and the compressor of the response (NULL: the
	   body goes as the backend sent it). */
	enum http_coding z_coding;
	struct http_compressor *z;
};

struct http_conn {
	struct session *s;
	enum http_conn_phase phase;
	struct http_exchange *head;     /* oldest exchange (the one answered next) */
	struct http_exchange **tail;    /* where the next one is linked */
	struct http_exchange *spare;    /* a finished exchange kept for the next request */
	int nx;                         /* exchanges on the list */
	/* The exchange whose request body the client is sending (its head
	   was parsed, its body is not all there); NULL: the next client byte
	   starts a head. */
	struct http_exchange *body;
	/* The exchange whose route lookup runs (the session runs one at a
	   time; others wait with lookup_wait). */
	struct http_exchange *lookup;
	uint64_t deadline_ms;           /* the connection's own (IDLE, HEAD); 0: none */
	/* IDLE: when the spare exchange goes (HTTP_IDLE_RELEASE_MS after the
	   connection went idle); 0: none kept, or not idle. */
	uint64_t release_ms;
	bool client_eof;                /* the client half-closed after a request */
	/* A lookup runs whose exchange is gone (an HTTP/2 stream reset):
	   the next one waits for its end all the same. */
	bool lookup_orphan;
	/* HTTP/2 (http2.c). The session's connection of an h2 client holds
	   the engine's side (h2; its own list of exchanges stays empty); each
	   stream has a connection of its own (h2s) with one exchange, whose
	   request head comes from the stream and whose answer goes to it. */
	struct http2 *h2;
	struct http2_stream *h2s;
};

static inline struct http_conn *http__of(struct session *s)
{
	return s->proto_state;
}

/* The session's connection: where route lookups queue. For HTTP/1.1 the
   exchange's own, for an HTTP/2 stream the client connection's. */
static inline struct http_conn *http__top(const struct http_exchange *x)
{
	return http__of(x->s);
}

/* Is x its connection's front (the one answered now)? An HTTP/2 stream's
   only exchange always is. */
static inline bool http__is_front(const struct http_exchange *x)
{
	return x == x->conn->head;
}

/* The exchange answered next (NULL: none in flight). */
static inline struct http_exchange *http__front(struct session *s)
{
	struct http_conn *c = http__of(s);

	return c ? c->head : NULL;
}

/* --- http.c --- */

/* Enter a connection phase (and set its deadline). */
void http__conn_phase(struct http_conn *c, enum http_conn_phase p);
/* Arm the session's timer at the earliest deadline of c and its exchanges. */
void http__arm(struct http_conn *c);
/* x's deadline: secs from now (0: none); the timer is re-armed. */
void http__deadline(struct http_exchange *x, double secs);
/* Handle what s->in holds: the body of the request being read, then the
   next heads while the pipeline has room. */
void http__read_on(struct session *s);
/* A new exchange at the end of c's list (HTTP_X_HEAD), or NULL (no memory). */
struct http_exchange *http__exchange_new(struct http_conn *c);
/* x is over and out of c's list: wipe it and keep it as the spare. */
void http__exchange_free(struct http_conn *c, struct http_exchange *x);
/* An HTTP/1.1 connection idle for HTTP_IDLE_RELEASE_MS: free the spare
   exchange (with its header indexes); the next request makes one again. */
void http__idle_release(struct http_conn *c);
/* The front exchange was freed: start the next one's turn (or wait for
   the next request) and parse what s->in holds. */
void http__next_request(struct session *s);

/*
 * An exchange's source and sink (http_conn.c). The request head x->reqh
 * points into http__src(x): the session's s->in for HTTP/1.1 (consumed
 * with http__src_consume once copied out), the stream's own head for
 * HTTP/2. Everything an exchange sends its client goes through http__out
 * / http__out_buf (HTTP/1.1: session_write / session_write_buf; HTTP/2:
 * the stream's response, http2.c); http__queued is what it holds unsent
 * (the backpressure measure). http__finish ends the exchange's answer
 * (HTTP/1.1: flush and close the connection; HTTP/2: end the stream),
 * http__close cuts it short (HTTP/1.1: close; HTTP/2: reset the stream).
 */
const uint8_t *http__src(const struct http_exchange *x);
void http__src_consume(struct http_exchange *x, size_t n);
void http__out(struct http_exchange *x, const void *p, size_t n);
void http__out_buf(struct http_exchange *x, struct pbuf *b);
size_t http__queued(const struct http_exchange *x);
void http__finish(struct http_exchange *x, const char *why);
void http__close(struct http_exchange *x, const char *why);

/* --- http2.c --- */

struct http2;
struct http2_stream;
struct h2_request;

/* Start HTTP/2 on c (ALPN said "h2"): 0, or -1 (no memory). */
int http2__start(struct http_conn *c);
/* Free c's HTTP/2 state and every stream (the session is going). */
void http2__destroy(struct http_conn *c);
/* The session_proto events of an h2 connection. */
void http2__client_data(struct http_conn *c);
void http2__client_written(struct http_conn *c);
void http2__timeout(struct http_conn *c);
/* Shutdown: GOAWAY; the streams in flight finish, then the connection closes. */
void http2__drain(struct http_conn *c);
/* After any event: write what the engine has, take its events, feed the
   streams that have room. Called last by every hook, never by an
   exchange (the streams it frees may be on the caller's stack). */
void http2__pump(struct http_conn *c);
/* http2__pump when s speaks HTTP/2 (and is not closed). */
void http2__after(struct session *s);
/* Arm the session's timer at the earliest deadline of all streams (c: the
   session's connection, or a stream's whose exchange set its deadline). */
void http2__arm(struct http_conn *c);
/* The next exchange waiting for the session's lookup, or NULL. */
struct http_exchange *http2__lookup_next(struct http_conn *c);
/* The stream side of http__src / http__out / ... for stream x. */
const uint8_t *http2__src(const struct http_exchange *x);
void http2__out(struct http_exchange *x, const void *p, size_t n);
size_t http2__queued(const struct http_exchange *x);
void http2__finish(struct http_exchange *x);
void http2__close(struct http_exchange *x, const char *why);
/*
 * The exchange's head of an HTTP/2 request, with no parse: writes into
 * out the bytes h2_request_to_h1 writes (and the final CRLF) and fills h
 * (hdr: room for hdr_cap lines) as http_parse_head with limits lim would
 * from them; *chunked_out as h2_request_to_h1 sets it, *body_out: a body
 * follows. Returns the head's length; -n when out's cap is under the n
 * bytes needed; 0 when the request is not a plain one (a method not
 * listed, the target not an origin-form path of visible ASCII, a bound
 * passed, Transfer-Encoding, Connection, Proxy-Connection or Upgrade, a
 * Content-Length not one of digits, a value with a control byte but TAB,
 * DEL or whitespace at an end, a name not a token): the caller then writes the
 * head and parses it, for the answers an HTTP/1.1 client gets.
 */
int http2_request_head(const struct h2_request *r, const struct http_limits *lim, uint8_t *out,
		       size_t cap, struct http_head *h, bool *chunked_out, bool *body_out);
/* WebSocket over HTTP/2 (RFC 8441). The backend's 101 (head rh at base)
   carries the Sec-WebSocket-Accept of the key stream x sent? */
bool http2__ws_accepted(const struct http_exchange *x, const uint8_t *base,
			const struct http_head *rh);
/* The backend said 101 (head[0..n), rewritten as for an HTTP/1.1 client):
   answer the stream 200 with its headers (Sec-WebSocket-Protocol,
   -Extensions, ...) and make it a tunnel: backend bytes become DATA,
   the client's DATA goes to the backend (x->req_done false again until
   its END_STREAM, then a shutdown of the backend's write side). False
   when the engine refused the answer. */
bool http2__tunnel_start(struct http_exchange *x, const uint8_t *head, size_t n);
/* RFC 6455 4.2.2: Sec-WebSocket-Accept for key (a NUL-terminated base64
   key): base64(SHA-1(key "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), 28
   characters and a NUL in out. */
void http2_ws_accept(const char *key, char out[29]);
/* Send request body bytes of stream x to its backend; true when the
   body ended (x->req_done follows). Returns the bytes sent. */
long http2__body_step(struct http_exchange *x, bool *done_out);
/* Exchange functions http2.c needs from http.c: free x while the session
   lives (its backend connection released, its file job orphaned), or once
   it is going (its connections are closed: x->up is not touched). */
void http__exchange_release(struct http_exchange *x);
void http__exchange_destroy(struct http_exchange *x);

/* --- http_exchange.c --- */

/* Count the response and write the access log line for x. */
void http__log(struct http_exchange *x);
/* Answer x ourselves (an error page or a redirect) and close the
   connection (behind the front: kept until x's turn). Nothing may touch x
   after it but its owner's cleanup. */
void http__answer(struct http_exchange *x, int status, const char *location, const char *msg,
		  const char *why);
/* The same with a whole response of n bytes made by the caller (it says
   Connection: close). */
void http__answer_raw(struct http_exchange *x, int status, const char *resp, size_t n,
		      const char *why);
/* x became the front: send its kept answer. */
void http__answer_kept(struct http_exchange *x);
/* A response cut short after it started: log and close. */
void http__abort(struct http_exchange *x, const char *why);
/* Route x by the client-IP hash / look up x->route_name. */
void http__route_hash(struct http_exchange *x);
void http__resolve(struct http_exchange *x, bool bypass);
/* The session hooks of an exchange's routing and backend. */
void http__route_done(struct http_exchange *x, const struct route *r);
void http__backend_connected(struct http_exchange *x, int status);
/* x's deadline passed. */
void http__exchange_timeout(struct http_exchange *x);
void http__backend_eof(struct http_exchange *x, int status);
/* Let go of x's backend connection (reuse: back to the pool) and of the
   backend bytes it holds. */
void http__backend_drop(struct http_exchange *x, bool reuse);

/* Ask for a connection to host:port (the group's TLS settings when x has
   one): from the pool at once, else a new one within connect_timeout. */
void http__route_to(struct http_exchange *x, const char *host, uint16_t port);

/* --- http_upstream.c --- */

/* x's location's upstream group, or NULL. */
const struct conf_upstream *http__group(const struct http_exchange *x);
/* Apply the location's options to x (read_timeout, websocket,
   rewrite_prefix, host) once x->fwd is built; sets x->grp. False when x
   was answered. */
bool http__upstream_prepare(struct http_exchange *x);
/* Connect x to the next live server of its group (502 when none). */
void http__group_pick(struct http_exchange *x);
/* x's connect to a picked server failed: mark it and try another (true),
   or false when x was not picked from its group (routed). */
bool http__group_failed(struct http_exchange *x, int status);
/* x's connect worked: the server's failures are forgiven. */
void http__group_ok(struct http_exchange *x);

/* The location's own answer (cookie guard, return, redirect, logout):
   true when x was answered (kept until its turn, then the connection
   closes), false when x goes on to its group or files. */
bool http__location_local(struct http_exchange *x);

/* --- http_file.c --- */

/* x's location serves files: start (its plan runs at its turn) and true;
   false for other locations. */
bool http__file_request(struct http_exchange *x);
/* x became the front: plan its file. */
void http__file_turn(struct http_exchange *x);
/* The client took what was written: the next piece. */
void http__file_written(struct http_exchange *x);
/* x's file was answered from the open-file cache and waits for a posted
   client_written to send its head (HTTP/2 streams check it when pumped). */
bool http__file_ready(const struct http_exchange *x);
/* x lets go of its file state (a running job frees it when it ends). */
void http__file_drop(struct http_exchange *x);

/* --- http_request.c --- */

/* A complete request head of head_len bytes is at the start of s->in:
   check it (answering the refusals) and, when it goes to a backend,
   rewrite it, consume it and route it. */
void http__request(struct http_exchange *x, int head_len);

/* --- http_stream.c --- */

/* n bytes of x->in are handled; an emptied buffer goes back (wiped: it
   may have held Set-Cookie). */
void http__in_consume(struct http_exchange *x, size_t n);

/* Send request body bytes from s->in while the backend keeps up, then let
   later reads come whole (http__body_buf). */
void http__forward_body(struct http_exchange *x);
/* A client read that holds request body bytes of c->body (direct mode):
   hand it to the backend, give back what follows the body. */
void http__body_buf(struct http_exchange *x, struct pbuf *b);
/* Parse and relay what the backend sent (x->in), then read on if all of
   it was handled. */
void http__process_backend(struct http_exchange *x);
/* The response ended: log, pool the backend, go on or close. */
void http__exchange_done(struct http_exchange *x);
/* What x's responses get: the added headers (http.add_headers, then
   x->loc's) and, on TLS listeners, the https fix-up for x's Host. */
void http__resp_edit(const struct http_exchange *x, struct http_resp_edit *e);

/* --- http_stream_z.c --- */

/* The coding x's client takes (x->z_coding), from its request head in s->in. */
void http__z_accept(struct http_exchange *x);
/* On x's final response head (in base): compress its body? Then x->z is
   set and e says how the head changes. */
bool http__z_start(struct http_exchange *x, const uint8_t *base, struct http_resp_edit *e);
/* Body bytes of x->in through the compressor; false when the caller must stop. */
bool http__z_body_step(struct http_exchange *x);
/* The body is complete: the compressed stream's end and the last chunk.
   False when the caller must stop. */
bool http__z_finish(struct http_exchange *x);
/* Let go of x's compressor (also mid-response). */
void http__z_end(struct http_exchange *x);
/* Compressors running on this worker. */
int http__z_running(void);

#endif
