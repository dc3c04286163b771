/*
 * http.h - the HTTP/HTTPS reverse proxy front end, and the pure pieces it
 * is made of: message head parsing over llhttp, body framing, routing
 * decisions, header rewriting, redirect host checks and ZM_AUTH_TOKEN
 * decoding. None of the pure functions does I/O or allocates, so unit tests
 * and fuzzers call them directly.
 *
 * Parser output uses offsets from the start of the buffer that holds the
 * message head ({off, len}), never pointers, so the buffer may move.
 */
#ifndef GATEHOUSE_HTTP_H
#define GATEHOUSE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "session.h"

struct conf;

extern const struct session_proto http_proto;

/* Most header lines a head may have, whatever the config says. */
#define HTTP_MAX_HEADERS 1000

/* Parse results (negative: the status code a request deserves). */
#define HTTP_NEED_MORE 0
#define HTTP_E_BAD (-400)       /* malformed */
#define HTTP_E_URI (-414)       /* request-target too long */
#define HTTP_E_HEADERS (-431)   /* head too large or too many header lines */

struct http_span {
	uint32_t off;
	uint32_t len;
};

struct http_header {
	struct http_span name;
	struct http_span value;
};

/* A parsed request or response head. */
struct http_head {
	uint8_t method;             /* llhttp_method_t (requests) */
	uint16_t status;            /* responses */
	uint8_t major, minor;
	struct http_span uri;       /* requests */
	struct http_span reason;    /* responses */
	struct http_header *hdr;    /* caller's array of hdr_cap entries */
	int hdr_cap;
	int nhdr;
	size_t head_len;            /* bytes of the head, final CRLF included */
	bool keep_alive;            /* per version and Connection */
	bool upgrade;               /* Connection: upgrade with an Upgrade header */
	bool chunked;
	bool has_length;
	uint64_t content_length;
	bool needs_eof;             /* a response whose body ends at EOF */
};

struct http_limits {
	size_t max_head;            /* bytes of request line (status line) + headers */
	size_t max_uri;
	int max_headers;
};

/*
 * A resumable parser for one message at a time (llhttp inside). Feed the
 * head with http_parse_head until it completes, then the body with
 * http_parse_body until it reports the end; then http_parser_reset for the
 * next message on the connection.
 */
struct http_parser {
	llhttp_t ll;
	llhttp_settings_t set;
	struct http_limits lim;
	struct http_head *h;
	const uint8_t *base;        /* the head buffer during one call */
	size_t fed;                 /* head bytes already given to llhttp */
	int state;                  /* 0 head, 1 body, 2 done */
	int err;                    /* HTTP_E_* found by a callback */
	bool in_field;              /* inside a header name (it may come in pieces) */
	bool too_many;              /* a header line past the limit: 431 at its name's end */
	bool no_body;               /* a response to HEAD */
	bool ended;                 /* on_message_complete ran */
	uint8_t *sink;              /* http_parse_body_data: where body bytes go */
	size_t sunk;
};

/* kind: HTTP_REQUEST or HTTP_RESPONSE. h receives the head of each message. */
void http_parser_init(struct http_parser *p, llhttp_type_t kind, const struct http_limits *lim,
		      struct http_head *h);

/* Start the next message of the connection (keeps kind, limits and h). */
void http_parser_reset(struct http_parser *p);

/* Responses: the request was HEAD, so the response has no body. */
void http_parser_no_body(struct http_parser *p);

/*
 * Parse a head. buf[0..len) holds the message from its first byte; bytes
 * up to p->fed were seen by an earlier call and are not fed again (the
 * buffer may have moved: only offsets are kept). Returns the head length
 * (> 0) when the head is complete and p->h is filled, HTTP_NEED_MORE, or
 * an HTTP_E_* code. Never reads past len.
 */
int http_parse_head(struct http_parser *p, const uint8_t *buf, size_t len);

/*
 * Body bytes that follow the head (or earlier body bytes). Returns how many
 * of the n bytes belong to this message (the rest is the next message),
 * with *done set when the message ended; or HTTP_E_BAD for bad framing.
 */
long http_parse_body(struct http_parser *p, const uint8_t *data, size_t n, bool *done);

/*
 * As http_parse_body, and the body's own bytes (chunk framing and
 * trailers left out) are moved to the front of data[0..n), their count in
 * *data_len_out: what a compressor needs. The bytes after them (up to the
 * returned count) are overwritten.
 */
long http_parse_body_data(struct http_parser *p, uint8_t *data, size_t n, bool *done,
			  size_t *data_len_out);

/*
 * The head in p->h was filled by the caller (an HTTP/2 request made for
 * the exchange, http2_request_head), not parsed: p says that the head is
 * complete and whether a body follows (http_parser_body_done). The body's
 * framing is then the caller's own: http_parse_body is not for it.
 */
void http_parser_preparsed(struct http_parser *p, bool body);

/* Does the message have a body to relay at all (after the head)? */
bool http_parser_body_done(const struct http_parser *p);

/* The connection ended: completes a read-until-EOF body (true), else false. */
bool http_parse_eof(struct http_parser *p);

/* --- header access (pure) --- */

/* Case-insensitive compare of span s in buf with a NUL-terminated name.
   Inline so that strlen of a literal name folds to a constant: heads are
   matched against header names many times per request. */
static inline bool http_span_is(const uint8_t *buf, struct http_span s, const char *name)
{
	size_t n = strlen(name);

	return s.len == n && strncasecmp((const char *)buf + s.off, name, n) == 0;
}

/* The first header called name, or NULL. */
const struct http_header *http_header_find(const uint8_t *buf, const struct http_head *h,
					   const char *name);

/* Does a comma-separated header list (all headers called name) hold token? */
bool http_header_has_token(const uint8_t *buf, const struct http_head *h, const char *name,
			   const char *token);

/* --- ZM_AUTH_TOKEN (protocols/http_token.c) --- */

#define HTTP_ZIMBRA_ID_MAX 64

/*
 * Decode a ZM_AUTH_TOKEN value "<n>_<hmac>_<hex>": hex-decode part 3 into
 * "field=len:value;..." and return the length of its id (a zimbraId of
 * 1..HTTP_ZIMBRA_ID_MAX-1 bytes of [A-Za-z0-9-]), copied NUL-terminated to
 * id_out; -1 when the token is malformed or has no usable id. The token's
 * signature is not checked: it only picks a mailstore, which checks it.
 */
int http_token_zimbra_id(const char *tok, size_t len, char *id_out, size_t cap);

/* The value of cookie `name` in a Cookie header value, or NULL (*len_out set). */
const char *http_cookie_find(const char *v, size_t vlen, const char *name, size_t *len_out);

/* --- routing (protocols/http_route.c) --- */

enum http_route_kind {
	HTTP_ROUTE_HASH = 0,   /* no user in the request: hash of the client IP */
	HTTP_ROUTE_USER,       /* a user name (REST path or Basic credentials) */
	HTTP_ROUTE_ID,         /* a zimbraId (ZM_AUTH_TOKEN cookie) */
};

/*
 * Decide how request h (head in buf) is routed, in order: REST paths
 * /home/<user>/... and /service/home/<user>/... (also /dav/<user>/ and
 * /principals/users/<user>/; "~" means the authenticated user and falls
 * through), HTTP Basic credentials (user part only; DOM\user becomes
 * user@DOM), the ZM_AUTH_TOKEN cookie's zimbraId. The name or id goes to
 * out (NUL-terminated, cap bytes); a name that is too long or holds control
 * characters, space or '%' after %-decoding is ignored.
 */
enum http_route_kind http_route_pick(const uint8_t *buf, const struct http_head *h, char *out,
				     size_t cap);

/*
 * The admin console's routing (an upstream group with admin = true, nginx's
 * zmauth_admin): only the zimbraId of the ZM_ADMIN_AUTH_TOKEN cookie
 * (HTTP_ROUTE_ID, the id in out), never a path user, Basic credentials or
 * the user's ZM_AUTH_TOKEN; else HTTP_ROUTE_HASH.
 */
enum http_route_kind http_route_pick_admin(const uint8_t *buf, const struct http_head *h,
					   char *out, size_t cap);

/* A stable index in [0, n) for a client address (FNV-1a): n > 0. */
unsigned http_ip_hash(const char *ip, unsigned n);

/*
 * Reduce an absolute-form request-target (RFC 9112 §3.2.2,
 * "http://host/path?q") to origin-form: *uri_out gets the path and query,
 * *auth_out the authority. Origin-form ("/...") and "*" come back as they
 * are with an empty authority. False for anything else (another scheme, no
 * path, userinfo): the request is refused.
 */
bool http_target_origin(const uint8_t *buf, struct http_span uri, struct http_span *uri_out,
			struct http_span *auth_out);

/* Does the request-target hold an encoded CR or LF (%0d, %0a)? */
bool http_uri_has_encoded_crlf(const uint8_t *buf, struct http_span uri);

/* --- header rewriting (protocols/http_head.c) --- */

struct http_fwd {
	const char *client_ip;
	bool trusted;         /* the peer is a trusted proxy: append to its X-Forwarded-For */
	bool https;           /* X-Forwarded-Proto */
	bool websocket;       /* keep Upgrade and send Connection: upgrade */
};

/*
 * Write the request head to send to a backend: the request line as
 * received, the headers minus hop-by-hop ones (Connection and what it
 * names, Keep-Alive, Proxy-Connection, TE, Upgrade unless websocket,
 * Proxy-Authorization) and minus incoming X-Real-IP and X-Forwarded-Proto,
 * X-Forwarded-For replaced (or appended to when trusted), then
 * X-Real-IP, X-Forwarded-Proto and Connection. Returns the length, or -1
 * when it does not fit in cap.
 */
int http_rewrite_request(const uint8_t *buf, const struct http_head *h, const struct http_fwd *f,
			 char *out, size_t cap);

struct conf_header;
struct conf_location;

/*
 * What gatehouse changes in a response head besides hop-by-hop headers.
 * add[0] (http.add_headers), add[1] (the vhost's of the request's Host)
 * and add[2] (the location's add_headers) are written after the backend's
 * headers, each replacing the backend's headers of the same name, and a
 * later set replacing an earlier one's of the same name (so HSTS never
 * appears twice; nginx's add_header would append a second one).
 * Set-Cookie is the exception: added beside the others.
 */
#define HTTP_ADD_SETS 3
struct http_resp_edit {
	const struct conf_header *add[HTTP_ADD_SETS];
	int nadd[HTTP_ADD_SETS];
	/* On TLS listeners: the request's Host as sent (port included). A
	   Location, or Refresh's url=, "http://<that host's name>[:any
	   port][/...]" becomes "https://<Host>[/...]" (nginx's proxy_redirect
	   in the Zimbra templates); other hosts are left alone. NULL: none. */
	const char *https_host;
	size_t https_host_len;
	/* An upstream group with rewrite_redirects: a Location, or Refresh's
	   url=, "http[s]://<back_host's name>:<back_port>[/...]" (the server
	   the request went to, named as the client named us) becomes
	   "<https or http>://<back_host>[/...]", back_host being the
	   request's Host as sent (nginx's proxy_redirect https://$host:7071/
	   https://$http_host/ of the admin templates). Tried before the https
	   fix-up. back_host NULL: none. */
	const char *back_host;
	size_t back_host_len;
	uint16_t back_port;
	bool back_https;
	/* The body is compressed by gatehouse with this coding ("gzip",
	   "br"; NULL: not): the backend's Content-Length and
	   Transfer-Encoding go, "Content-Encoding", "Transfer-Encoding:
	   chunked" and "Vary: Accept-Encoding" (unless a Vary names it or is
	   "*") come, a strong ETag becomes weak (RFC 9110 §8.8.1: the bytes
	   differ). */
	const char *content_encoding;
};

/*
 * May gatehouse compress the body of response h (head in buf) under c's
 * http.compression: a final 200 without Content-Encoding, Content-Range
 * or "Cache-Control: no-transform", whose Content-Type is one of the
 * types, and whose Content-Length is at least min_length (or unknown:
 * chunked or up to the close). *length_out: the Content-Length, 0 when
 * unknown (it sizes the compressor).
 */
bool http_compress_response_ok(const uint8_t *buf, const struct http_head *h,
			       const struct conf *c, uint64_t *length_out);

/* The edit for a response of location l (NULL: none) to a request for
   host[0..host_len) (its vhost's headers; NULL: none) under conf c. */
void http_resp_edit_init(struct http_resp_edit *e, const struct conf *c, const char *host,
			 size_t host_len, const struct conf_location *l);

/*
 * Write the response head for the client: "HTTP/1.1 <status> <reason>",
 * the backend's headers minus hop-by-hop ones (Upgrade kept on a 101),
 * edited as e says (NULL: not at all), then "Connection: close" when close
 * is set, or "Connection: keep-alive" for an HTTP/1.0 client that keeps
 * the connection. Returns the length, or -1.
 */
int http_rewrite_response(const uint8_t *buf, const struct http_head *h,
			  const struct http_resp_edit *e, bool close, bool client_http10,
			  char *out, size_t cap);

/*
 * The header lines e adds (CRLF-terminated), for the answers gatehouse
 * makes itself. Returns the length, or -1 when cap is too small
 * (HTTP_ADD_HEADERS_MAX suffices).
 */
int http_add_header_lines(const struct http_resp_edit *e, char *out, size_t cap);
#define HTTP_ADD_HEADERS_MAX (HTTP_ADD_SETS * 4096)

/*
 * "http://NAME[:PORT][/...]" whose NAME is host's name (host: a Host
 * value, port included or not; no case) becomes "https://<host>[/...]" in
 * out. Returns the new length, 0 when v is left alone, -1 when out (cap
 * bytes) is too small.
 */
int http_https_fixup(const char *v, size_t n, const char *host, size_t host_len, char *out,
		     size_t cap);

/* The same for a Refresh value ("5; url=http://..."): its url part. */
int http_refresh_fixup(const char *v, size_t n, const char *host, size_t host_len, char *out,
		       size_t cap);

/*
 * "http://NAME:PORT[/...]" or "https://NAME:PORT[/...]" whose NAME is
 * host's name (no case) and PORT exactly port becomes "https://<host>[/...]"
 * (http:// when https is false) in out. Returns the new length, 0 when v
 * is left alone (another host or port, no port), -1 when out is too small.
 * http_refresh_port_fixup: the same on a Refresh value's url part.
 */
int http_port_fixup(const char *v, size_t n, const char *host, size_t host_len, uint16_t port,
		    bool https, char *out, size_t cap);
int http_refresh_port_fixup(const char *v, size_t n, const char *host, size_t host_len,
			    uint16_t port, bool https, char *out, size_t cap);

/* Does e add a header called name[0..len) that replaces the backend's
   (from add[below] up; Set-Cookie never does)? */
bool http_resp_edit_replaces(const struct http_resp_edit *e, const char *name, size_t len,
			     int below);

/*
 * May a redirect name host (the Host header, port removed, compared without
 * case)? Only http.server_name and the vhost names (with their "*." forms)
 * are allowed, so the redirect is never an open one. Writes the lower-case
 * host without port to out.
 */
bool http_redirect_host_ok(const struct conf *c, const char *host, size_t len, char *out,
			   size_t cap);

/*
 * Is host (a Host header) one a browser uses to reach this server without
 * one of its names: an IPv4 or [IPv6] address, "localhost" or a short name
 * (one label), with or without a port? The redirect then names
 * http_redirect_default_name instead of answering 400, as nginx does.
 */
bool http_redirect_host_local(const char *host, size_t len);

/* The name such a redirect goes to: http.server_name, else the first vhost
   name that is not a wildcard, else NULL (then 400). */
const char *http_redirect_default_name(const struct conf *c);

/*
 * Write a complete error or redirect response: status line, Content-Type
 * text/html, Content-Length, Connection (close or keep-alive), an optional
 * Location, and a short HTML body (msg, or a standard text for the status
 * when NULL; msg must be plain text without markup). Returns the length,
 * or -1.
 */
struct http_page_extra {
	const char *lines;      /* header lines added (CRLF each), or NULL */
	size_t lines_len;
	const char *body;       /* an operator's page (http.error_pages), or NULL */
	size_t body_len;
};
/* px (may be NULL) adds header lines and replaces the body: then only the
   head is written (its Content-Length says body_len), the caller sends
   px->body after it. */
int http_error_page(int status, const char *location, const char *msg, bool close,
		    const struct http_page_extra *px, char *out, size_t cap);

/* The page plain listeners in mode https answer with. */
#define HTTP_USE_HTTPS_TEXT "This site is only available over HTTPS. Please use https:// in the address."


/*
 * The request-target as the access log shows it: the path and query, with
 * the values of parameters whose names look like credentials (token, jwt,
 * pass, auth, key, secret) replaced by "***" (Zimbra accepts zauthtoken=
 * and zjwt= in the query). NUL-terminated, cut at cap. Returns the length.
 */
size_t http_log_target(const uint8_t *buf, struct http_span uri, char *out, size_t cap);

/* The reason phrase of a status we send ourselves. */
const char *http_reason(int status);

/* The worker thread ends: the HTTP/2 streams it kept for its connections'
   next bursts (protocols/http2.c, HTTP2_WORKER_SPARES) are freed. */
void http2_worker_close(void);

#endif
