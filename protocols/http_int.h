/*
 * http_int.h - what the files of the HTTP front end share: the client
 * connection, the exchanges (request and response) it carries, and the
 * steps one file hands to another. Private to protocols/ (http.c:
 * session_proto hooks and the connection; http_exchange.c: routing, the
 * backend and local answers of one exchange; http_request.c: decisions on
 * a complete request head; http_stream.c: the request body, the response
 * and the end of an exchange).
 *
 * Ownership. The session's proto_state is a struct http_conn. It owns a
 * list of struct http_exchange, oldest first: responses go to the client
 * in that order. Each exchange owns its parsers, its heads, its rewritten
 * request head and its backend connection while it has one. HTTP/1.1 runs
 * one exchange at a time (pipelined requests wait in s->in until the
 * answer before them is done), but nothing here assumes a single one: an
 * exchange names its connection and session, and the connection keeps a
 * list. A finished exchange is kept as the connection's spare (parsers
 * initialised, wiped) so keep-alive requests cost no malloc.
 */
#ifndef GATEHOUSE_HTTP_INT_H
#define GATEHOUSE_HTTP_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "route.h"
#include "session.h"

/* Headers kept per response head (backends send a few dozen). */
#define HTTP_RESP_HEADERS 200
/* The least room for a backend's response head (http.max_header_size may
   be smaller: backends send long Set-Cookie and CSP lines). */
#define HTTP_RESP_HEAD_MIN 16384
/* Room the rewritten request head needs beyond the received one. */
#define HTTP_FWD_EXTRA 1024

/*
 * The client connection's phases. Its timer (the session's) follows them:
 * IDLE keepalive_timeout, HEAD header_timeout from the first byte of a
 * head (dribbling bytes does not extend it), BUSY whatever the front
 * exchange arms.
 */
enum http_conn_phase {
	HTTP_CONN_IDLE = 0, /* between requests: no byte of the next one yet */
	HTTP_CONN_HEAD,     /* reading a request head */
	HTTP_CONN_BUSY,     /* exchanges in flight; the next head waits in s->in */
	HTTP_CONN_DONE,     /* answered locally or closing: nothing more is read */
	HTTP_CONN_NPHASES
};

/* One exchange's phases. */
enum http_x_phase {
	HTTP_X_HEAD = 0,    /* its request head is being read */
	HTTP_X_ROUTE,       /* the route lookup runs */
	HTTP_X_CONNECT,     /* getting a backend connection */
	HTTP_X_FORWARD,     /* request going out, response coming back */
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

	/* The rewritten request head, kept until the response starts so a
	   request that met a stale pooled connection can be sent again. It
	   may hold Authorization and cookies: wiped whole when freed. */
	char *fwd;
	size_t fwd_cap, fwd_len;

	/* Where it goes: the backend as a host and a port (a number, never
	   parsed back from the address text). */
	char up_host[ROUTE_MAX_HOST];
	uint16_t up_port;
	bool upstream;         /* a backend was asked for: s->backend_addr names it */
	/* Its backend connection, once connected (session_upstream_take),
	   until released; and whether it came from the pool. */
	struct session_upstream *up;
	bool up_reused;
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
};

struct http_conn {
	struct session *s;
	enum http_conn_phase phase;
	struct http_exchange *head;     /* oldest exchange (the one answered next) */
	struct http_exchange **tail;    /* where the next one is linked */
	struct http_exchange *spare;    /* a finished exchange kept for the next request */
	bool client_eof;                /* the client half-closed after a request */
};

static inline struct http_conn *http__of(struct session *s)
{
	return s->proto_state;
}

/* The exchange answered next (NULL: none in flight). */
static inline struct http_exchange *http__front(struct session *s)
{
	struct http_conn *c = http__of(s);

	return c ? c->head : NULL;
}

/* --- http.c --- */

/* Enter a connection phase (and arm its timer). */
void http__conn_phase(struct http_conn *c, enum http_conn_phase p);
/* A new exchange at the end of c's list (HTTP_X_HEAD), or NULL (no memory). */
struct http_exchange *http__exchange_new(struct http_conn *c);
/* x is over and out of c's list: wipe it and keep it as the spare. */
void http__exchange_free(struct http_conn *c, struct http_exchange *x);
/* Reset for the next request on the connection and parse it if it is there. */
void http__next_request(struct session *s);

/* --- http_exchange.c --- */

/* Count the response and write the access log line for x. */
void http__log(struct http_exchange *x);
/* Answer x ourselves (an error page or a redirect) and close the
   connection. Nothing may touch x after it but its owner's cleanup. */
void http__answer(struct http_exchange *x, int status, const char *location, const char *msg,
		  const char *why);
/* A response cut short after it started: log and close. */
void http__abort(struct http_exchange *x, const char *why);
/* Route x by the client-IP hash / look up x->route_name. */
void http__route_hash(struct http_exchange *x);
void http__resolve(struct http_exchange *x, bool bypass);
/* The session hooks of an exchange's routing and backend. */
void http__route_done(struct http_exchange *x, const struct route *r);
void http__backend_connected(struct http_exchange *x, int status);
void http__backend_eof(struct http_exchange *x, int status);
/* Let go of x's backend connection (reuse: back to the pool) and of the
   backend bytes it holds. */
void http__backend_drop(struct http_exchange *x, bool reuse);

/* --- http_request.c --- */

/* A complete request head of head_len bytes is at the start of s->in. */
void http__request(struct http_exchange *x, int head_len);

/* --- http_stream.c --- */

/* Send request body bytes from s->in while the backend keeps up. */
void http__forward_body(struct http_exchange *x);
/* Parse and relay what the backend sent (x->in), then read on if all of
   it was handled. */
void http__process_backend(struct http_exchange *x);
/* The response ended: log, pool the backend, go on or close. */
void http__exchange_done(struct http_exchange *x);

#endif
