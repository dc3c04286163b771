/*
 * lookup.h - the route lookup service client (Zimbra's port-7072
 * "nginx-lookup" servlet, nginx's auth_http protocol).
 *
 * Two layers: pure request building and response parsing (route/lookup_parse.c,
 * no I/O, unit-tested and fuzzed), and the asynchronous client over libuv
 * (route/lookup.c) that tries the configured servers round-robin, fails over
 * on connect errors and timeouts, and holds down a server that failed.
 */
#ifndef GATEHOUSE_LOOKUP_H
#define GATEHOUSE_LOOKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#define LOOKUP_MAX_RESPONSE 8192 /* a whole response head; Zimbra's nginx allows 1024 */
#define LOOKUP_MAX_VALUE 512     /* one header value we keep */

/* What one lookup asks. All strings NUL-terminated; password may be NULL. */
struct lookup_query {
	const char *method;   /* "username" or "zimbraId" */
	const char *user;     /* login as typed (validated) */
	const char *password; /* sent only when the config says so */
	const char *protocol; /* "imap", "imapssl", "pop3", ... */
	int attempt;          /* Auth-Login-Attempt */
	const char *client_ip;
	const char *proxy_ip; /* the local address the client connected to */
	const char *host;     /* HTTP: X-Proxy-Host (the request's Host), or NULL */
	bool keep_alive;      /* add "Connection: keep-alive" (HTTP/1.0 keep-alive) */
	bool admin;           /* add "Auth-Zimbra-Admin: True" (admin console, zmauth_admin) */
};

/*
 * Write the HTTP/1.0 GET request for q to server `host` (Host header) and
 * `path`. Header order and values as nginx sends them; user and password are
 * %-escaped (space, '%', control and 8-bit bytes). Returns the request length,
 * or -1 if it does not fit in cap bytes.
 */
int lookup_build_request(char *out, size_t cap, const char *host, const char *path,
			 const struct lookup_query *q, bool send_password);

/* The parts of an answer gatehouse uses. Strings NUL-terminated. */
struct lookup_response {
	int http_status;                  /* 200 expected */
	char status[LOOKUP_MAX_VALUE];    /* Auth-Status */
	char server[LOOKUP_MAX_VALUE];    /* Auth-Server, "[...]" of IPv6 removed */
	int port;                         /* Auth-Port, -1 when absent or invalid */
	char user[LOOKUP_MAX_VALUE];      /* Auth-User, %XX-unescaped once; "" when absent */
	int wait;                         /* Auth-Wait seconds, -1 when absent or invalid */
	bool cache_alias;                 /* Auth-Cache-Alias: TRUE */
	bool has_status, has_server, has_user;
};

/* Incremental response parser over llhttp. Private fields. */
struct lookup_parser {
	llhttp_t http;
	llhttp_settings_t settings;
	struct lookup_response *out;
	size_t total;       /* bytes fed so far */
	int field;          /* which header the current value belongs to */
	char fbuf[32];      /* current header name (only short names matter) */
	size_t flen;
	bool field_too_long;
	char vbuf[LOOKUP_MAX_VALUE];
	size_t vlen;
	bool value_too_long;
	bool done;          /* the head is complete */
	/* Once done: the connection may carry another request (the server
	   keeps it alive, the answer has Content-Length: 0 and nothing came
	   after its head). */
	bool reusable;
};

void lookup_parser_init(struct lookup_parser *p, struct lookup_response *out);

/*
 * Feed bytes of the server's answer. Returns 1 once the response head is
 * complete (out is filled; later bytes are ignored), 0 if more is needed, -1
 * on a malformed response or one larger than LOOKUP_MAX_RESPONSE.
 */
int lookup_parser_feed(struct lookup_parser *p, const uint8_t *data, size_t n);

/* The server closed the connection: 1 if the head was complete, else -1. */
int lookup_parser_eof(struct lookup_parser *p);

#endif
