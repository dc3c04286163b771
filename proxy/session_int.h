/*
 * session_int.h - what the files of proxy/ share about sessions and that
 * protocols must not use.
 */
#ifndef GATEHOUSE_SESSION_INT_H
#define GATEHOUSE_SESSION_INT_H

#include "session.h"

struct listener;

/* A new session for a connection about to be accepted on l (NULL: no memory). */
struct session *session_new(struct worker *w, struct listener *l);
/* The connection is accepted: read addresses, greet, start reading. peer:
   the client's address from accept4, or NULL to ask the socket. */
void session_start(struct session *s, const struct sockaddr *peer);
/* After the accept (and any PROXY header): start TLS or greet (session.c). */
void session__begin(struct session *s);
/* proxy_protocol listeners: check the peer, then read the header
   (session_proxy.c). session__proxy_data runs on each read until it is done. */
void session__proxy_start(struct session *s);
void session__proxy_data(struct session *s);
/* Greet the client and read its commands (session.c). */
void session__greet(struct session *s);
/* Route now, without the throttle check (session.c). */
void session__resolve_now(struct session *s, const struct route_query *q);
/*
 * Login throttling glue (session_throttle.c). session__admit: check the
 * per-IP limits of a new connection, then greet it (or refuse it).
 * session__throttle_login: check q's user and address before routing; true
 * when the check was started (it routes or refuses later).
 */
void session__admit(struct session *s);
bool session__throttle_login(struct session *s, const struct route_query *q);
void session__throttle_timeout(struct session *s);
void session__throttle_cancel(struct session *s);
/*
 * Results a session call learns at once but must not hand to the protocol
 * inside that call (session.h: no re-entrancy): session__post records one
 * and the session's idle handle delivers it from the loop, unless the
 * session has closed by then. A later post of the same kind replaces the
 * status.
 */
enum {
	SESSION__POST_BACKEND_CONNECTED = 1 << 0, /* proto->backend_connected(status) */
	SESSION__POST_BACKEND_EOF = 1 << 1,       /* proto->backend_eof(status) */
	SESSION__POST_CLIENT_WRITTEN = 1 << 2,    /* proto->client_written (session_post_written) */
};
void session__post(struct session *s, unsigned what, int status);
/* A write to the client finished (status as libuv's): lift the pre-login
   output block when the queue has drained (session.c; HTTP's own write
   callback calls it too). */
void session__client_written(struct session *s, int status);
/* The session timer's callback (session.c). */
void session__timer_fired(uv_timer_t *t);
/*
 * backend.c, shared with the HTTP pool (session_http.c). Write host:port
 * as "ip:port" or "[v6]:port" into out; session__backend_target sets the
 * mail login's s->backend_host / backend_port / backend_addr with it.
 */
void session__addr_name(char *out, size_t cap, const char *host, uint16_t port);
void session__backend_target(struct session *s, const char *host, uint16_t port);
/*
 * The backend connector (backend.c), for the mail login and the HTTP pool
 * alike: one connection to a backend, allocated as kind->size bytes whose
 * head is this struct, so a kind may keep more behind it. Each connection
 * carries its own connect: its name resolution, its address strings, its
 * result (kind->ready / kind->failed), so one session may have several
 * connects under way (HTTP exchanges) or one (the mail login, s->backend).
 */
struct backend_kind;
struct backend_dns;
struct backend_conn {
	struct stream st;      /* first: s->backend points here */
	uv_connect_t connect;
	struct session *s;     /* NULL while it belongs to no session (HTTP pool) */
	const struct backend_kind *kind;
	struct backend_dns *dns; /* a pending name resolution, cancelled with bc */
	const char *addr;      /* "ip:port" for logs (the kind's storage) */
	const char *host;      /* as routed: SNI and name check for upstream TLS */
	bool tls;              /* speak TLS to it (upstream.tls, or the caller's choice) */
	bool verify;           /* and check its certificate against host */
};
/*
 * A mail session (IMAP, POP3) and the room for its backend connection, in
 * one block: the connection an idle mail session keeps for hours sits next
 * to its session instead of being a second block malloc'd mid-login among
 * the login's short-lived ones (whose holes kept both blocks' pages
 * resident after a storm). session__backend_new uses the room when it is
 * free (s->bc_room set, !s->bc_room_busy), else calloc.
 */
struct session_mail {
	struct session s;
	struct backend_conn bc;
};

/* What differs between the connections the connector makes. */
struct backend_kind {
	size_t size;                   /* at least sizeof(struct backend_conn) */
	stream_read_cb on_read;        /* the stream's callbacks from the start */
	stream_written_cb on_written;  /* optional */
	/* Connected, TLS done when upstream.tls: tell the owner. */
	void (*ready)(struct backend_conn *bc);
	/* Connecting failed (logged and counted already): close bc and tell
	   the owner from the loop (it may run inside the connect call). */
	void (*failed)(struct backend_conn *bc, int status);
	/* Optional: the connection's handle has closed; free runs after. */
	void (*closed)(struct backend_conn *bc);
	/* Plain: start reading with the connect (the backend speaks first). */
	bool read_early;
	/* TCP keepalive is left to the worker's sweep (worker.c), which sets it
	   on connections that outlive half of limits.backend_keepalive: most
	   mail sessions end before and save two setsockopt calls. */
	bool keepalive_later;
};
/*
 * A new connection of kind k for s: allocated, its stream initialised
 * (closing it frees it), counted in s->refs. NULL: no memory or no
 * handle, nothing to undo. The caller sets bc->addr and bc->host.
 */
struct backend_conn *session__backend_new(struct session *s, const struct backend_kind *k);
/*
 * Connect bc to host:port: resolve a name on the thread pool, connect, set
 * the socket options, start TLS when upstream.tls, then kind->ready. A
 * failure, also one found at once, is logged and goes to kind->failed.
 * Closing bc's stream at any point cancels all of it: no kind callback
 * runs for it afterwards. The caller bounds the time (a timer).
 */
void session__backend_connect(struct backend_conn *bc, const char *host, uint16_t port);
/* Drop one reference (a handle closed, a request ended); the last frees s. */
void session__unref(struct session *s);
/*
 * Move what *pending holds into buf[*len .. cap) as far as it fits (*hwm:
 * the most of buf ever filled, what a wipe must cover). The buffer, once
 * emptied, is wiped, returned and *pending cleared: true then. For the
 * client's s->in, whose reads pause while bytes wait.
 */
bool session__drain(struct pbuf **pending, uint8_t *buf, size_t *len, size_t cap, size_t *hwm);
/* Backend input before relaying: room for the mail login's greeting, ID
   and login answers. */
#define SESSION_BACKEND_INBUF 16384
/*
 * The login-phase buffers (s->in, s->bin): a buffer of the worker's pool
 * when cap fits one (*pooled_out true), else malloc'd. Pooled, they are
 * recycled login after login instead of leaving 8-16 KiB holes between
 * the long-lived session structs, which kept the pages of sessions gone
 * idle resident (see session.c). NULL: no memory. session__buf_free
 * takes what session__buf_new gave (NULL is ignored); wipe first.
 */
uint8_t *session__buf_new(struct session *s, size_t cap, bool *pooled_out);
void session__buf_free(struct session *s, uint8_t *p, bool pooled);
/* Close the HTTP backend connections the session's requests hold
   (session_http.c): their owners hear nothing more. */
void session__upstreams_close(struct session *s);
/* Switch both streams to relaying (relay.c). */
void relay_start(struct session *s);
/*
 * splice(2) relay (relay_splice.c), for sessions with s->relay.splice_wanted set
 * (plain on both sides, limits.splice on, a bulk transfer seen: relay.c).
 * relay__splice_try: switch the
 * relay to splice when nothing is queued on either stream; true when it
 * did (the copy relay must leave both streams alone from then on), false
 * when it must go on copying: something is still queued (call again when a
 * queue drains), or it gave up for good (s->relay.splice_wanted cleared, logged at
 * debug). relay__splicing: the switch was made.
 */
bool relay__splice_try(struct session *s);
bool relay__splicing(const struct session *s);

#endif
