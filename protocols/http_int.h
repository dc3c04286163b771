/*
 * http_int.h - what the files of the HTTP front end share: the per-
 * connection state and the steps one file hands to another. Private to
 * protocols/ (http.c: session_proto hooks, routing and local answers;
 * http_request.c: decisions on a complete request head; http_stream.c:
 * the request body, the response and the end of an exchange).
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
/* Room the rewritten request head needs beyond the received one. */
#define HTTP_FWD_EXTRA 1024

enum http_state {
	HTTP_ST_HEAD = 0,  /* reading a request head, or idle between requests */
	HTTP_ST_ROUTE,     /* the route lookup runs */
	HTTP_ST_CONNECT,   /* getting a backend connection */
	HTTP_ST_FORWARD,   /* request going out, response coming back */
	HTTP_ST_DONE,      /* answered locally; closing */
};

struct http_conn {
	enum http_state state;
	struct http_parser req, resp;
	struct http_head reqh, resph;
	struct http_header *reqhdr;
	struct http_header resphdr[HTTP_RESP_HEADERS];

	/* The rewritten request head, kept until the response starts so a
	   request that met a stale pooled connection can be sent again. */
	char *fwd;
	size_t fwd_cap, fwd_len;

	bool head_started;     /* bytes of the current request arrived */
	bool req_done;         /* the whole request went to the backend */
	bool resp_head_done;
	bool resp_done;
	bool close_after;      /* close the client connection after this response */
	bool client_eof;
	bool backend_gone;     /* the backend closed; s->bin may still hold bytes */
	bool websocket;        /* the request asks for a WebSocket upgrade */
	bool is_head;          /* the request is HEAD */
	bool stale_retry_done; /* already resent once on a fresh connection */
	bool route_retried;    /* already looked up again after a refused connect */
	bool upstream;         /* a backend was asked for: s->backend_addr names it */
	uint64_t req_body_sent;
	uint64_t resp_bytes_in;
	uint64_t bytes_sent;   /* to the client for this request */
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

static inline struct http_conn *http__of(struct session *s)
{
	return s->proto_state;
}

/* --- http.c --- */

/* Count the response and write the access log line for the current request. */
void http__log(struct session *s, struct http_conn *hc);
/* Answer the current request ourselves (an error page or a redirect) and
   close the connection. Nothing may touch hc after it. */
void http__answer(struct session *s, int status, const char *location, const char *msg,
		  const char *why);
/* A response cut short after it started: log and close. */
void http__abort(struct session *s, const char *why);
/* Reset for the next request on the connection and parse it if it is there. */
void http__next_request(struct session *s);
/* Route by the client-IP hash / look up hc->route_name. */
void http__route_hash(struct session *s);
void http__resolve(struct session *s, bool bypass);

/* --- http_request.c --- */

/* A complete request head of head_len bytes is at the start of s->in. */
void http__request(struct session *s, int head_len);

/* --- http_stream.c --- */

/* Send request body bytes from s->in while the backend keeps up. */
void http__forward_body(struct session *s);
/* Parse and relay what the backend sent (s->bin). */
void http__process_backend(struct session *s);
/* The response ended: log, pool the backend, go on or close. */
void http__exchange_done(struct session *s);

#endif
