/*
 * session.h - one client connection, from accept to close, and the small
 * table of functions through which a protocol front end drives it.
 *
 * proxy/ owns sockets, timers, buffers and the relay; protocols/ owns the
 * syntax. A protocol sees the client's pre-login bytes in s->in and the
 * backend's login-phase bytes in s->bin, and acts only through the
 * session_* calls below.
 *
 * Lifetime: a session is freed only after its last handle has closed (the
 * client stream, the timer, any backend stream, any pending DNS request).
 * session_close() stops I/O at once; the memory goes later, and so does the
 * protocol's state (proto->destroy runs when the session is freed, from a
 * close callback), so a protocol's pointers stay valid until it returns to
 * the loop, whatever it called.
 *
 * No re-entrancy. No session_* call runs one of the protocol's callbacks
 * (struct session_proto) before it returns: results that are known at once
 * (a backend write or connect that fails inside the call) are posted and
 * delivered from the loop, like those that come later. A protocol learns
 * that a call ended the session from s->closed / s->finishing, never by its
 * state vanishing. The only calls that hand the protocol's state away are
 * session_start_relay (the login is over) and, explicitly, the protocol's
 * own session_close.
 */
#ifndef GATEHOUSE_SESSION_H
#define GATEHOUSE_SESSION_H

#include <stdbool.h>
#include <sys/uio.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "conf.h"
#include "list.h"
#include "log.h"
#include "route.h"
#include "stream.h"

struct conf;
struct throttle_req;
struct conf_listen;
struct worker;
struct session;
struct session_upstream;
struct pbuf;

enum session_phase {
	SESSION_PREAUTH = 0,     /* greeting sent, reading commands */
	SESSION_PROXY_HEADER,    /* waiting for the PROXY protocol header (HAProxy) */
	SESSION_THROTTLE,        /* counting the connection against the per-IP limit */
	SESSION_TLS_HANDSHAKE,   /* implicit TLS, or after STARTTLS/STLS */
	SESSION_LOOKUP,          /* resolving the user's route */
	SESSION_AUTH_WAIT,       /* holding back a failure answer (Auth-Wait) */
	SESSION_BACKEND_CONNECT, /* TCP connect to the backend */
	SESSION_BACKEND_LOGIN,   /* greeting, ID and login replay on the backend */
	SESSION_RELAY,           /* bytes both ways */
	SESSION_HTTP_IDLE,       /* HTTP: waiting for a request head (header_timeout, then
	                            the protocol's keep-alive timer) */
	SESSION_HTTP_FORWARD,    /* HTTP: a request is with its backend (backend_timeout) */
	SESSION_CLOSING,
	SESSION_NPHASES
};

extern const char *const session_phase_names[];

/* The table a protocol front end fills in (nginx's ngx_mail_protocol_t). */
struct session_proto {
	const char *name;   /* "imap" */
	/* The line a client gets when a connection cap refuses it (plain only). */
	const char *busy_line;
	/* Login throttling: the protocol's letter in Zimbra's per-IP key ('i',
	   'p'; 0 = not throttled) and what precedes a refusal ("* BYE "). */
	char throttle_key;
	const char *deny_prefix;
	/* The phase a session enters once started (0: SESSION_PREAUTH). */
	enum session_phase first_phase;
	/* Allocate protocol state (s->proto_state) and send the greeting. */
	int (*start)(struct session *s);
	/* New client bytes are in s->in (pre-login phases only). */
	void (*client_data)(struct session *s);
	/* The client closed or failed before login (status UV_EOF or error). */
	void (*client_eof)(struct session *s, int status);
	/* The route lookup finished. */
	void (*route_done)(struct session *s, const struct route *r);
	/* The mail login's backend connect (session_connect_backend)
	   finished: 0, or a negative libuv error. */
	void (*backend_connected)(struct session *s, int status);
	/* New backend bytes are in s->bin (BACKEND_LOGIN only). */
	void (*backend_data)(struct session *s);
	/* The backend closed or failed during login. */
	void (*backend_eof)(struct session *s, int status);
	/* The phase timer fired (PREAUTH, AUTH_WAIT, BACKEND_LOGIN, HTTP_*
	   timeouts, or a session_delay). proxy/ handles RELAY and BACKEND_CONNECT itself. */
	void (*timeout)(struct session *s);
	/* A STARTTLS/STLS handshake finished: the client starts over, inside TLS. */
	void (*tls_started)(struct session *s);
	/* Free protocol state; credentials must be wiped. Runs when the session
	   is freed (after session_close, from the loop) or at relay start. */
	void (*destroy)(struct session *s);
	/* Optional (HTTP backpressure): a write to the client finished, so
	   its queue has shrunk (session_client_queued). */
	void (*client_written)(struct session *s);
	/* HTTP: events of a backend connection got with session_upstream_get,
	   for the owner it was given. upstream_connected: a new connection is
	   ready (status 0) or failed (negative libuv error: it is gone, the
	   owner forgets it). upstream_read: b holds bytes read (the callee
	   owns b), or b is NULL and the connection has closed or failed
	   (status): the owner forgets it. upstream_written: a write finished
	   (session_upstream_queued). */
	void (*upstream_connected)(struct session *s, void *owner, int status);
	void (*upstream_read)(struct session *s, void *owner, struct pbuf *b, int status);
	void (*upstream_written)(struct session *s, void *owner);
	/* Optional (HTTP request bodies): while session_client_direct is on
	   and s->in is empty, a client read comes here whole (the callee owns
	   b) instead of being copied into s->in. */
	void (*client_buf)(struct session *s, struct pbuf *b);
	/* Optional: the worker stopped accepting (shutdown drain), or a
	   reload made the session's configuration an older one. The
	   protocol lets what is in flight finish and takes nothing new
	   (HTTP/2: GOAWAY). Runs from the loop, never inside a session call. */
	void (*drain)(struct session *s);
};

/* The relay's state, once the login is over (proxy/relay.c, relay_splice.c). */
struct session_relay {
	uint64_t last_activity_ms;   /* idle tracking */
	bool client_eof;             /* the client sent EOF */
	bool backend_eof;            /* the backend sent EOF */
	bool c2b_paused;             /* client reads stopped for backpressure */
	bool b2c_paused;             /* backend reads stopped for backpressure */
	bool splice_ok;              /* plain both ways, limits.splice: may splice */
	bool splice_wanted;          /* switch to splice(2) once both queues drain */
	struct relay_splice *splice; /* splice(2) state (relay_splice.c), or NULL */
	bool client_shut_done;       /* FIN sent to the client */
	bool backend_shut_done;      /* FIN sent to the backend */
};

struct session {
	uint64_t id;
	char idstr[20];                 /* hex id, for logs */
	struct worker *w;
	struct conf *conf;              /* snapshot this session started under (a reference) */
	const struct conf_listen *listener;
	const struct session_proto *proto;
	void *proto_state;
	enum session_phase phase;
	uint8_t metrics_phase;          /* phase counted in the metrics gauge, plus one; 0 = none */

	struct stream client;
	struct stream *backend;         /* NULL when not connected */
	uv_timer_t timer;
	uv_idle_t post;                 /* delivers posted results from the loop (session.c) */
	unsigned posted;                /* SESSION__POST_* bits waiting for it */
	int posted_status;              /* the status they carry */
	struct route_req *route_req;    /* pending route lookup */
	struct throttle_req *throttle_req; /* pending throttle check */
	/* The login query (with a password copy) lent to the pending login
	   check: the session takes it back and wipes it if it cancels. */
	void *throttle_held;
	void (*throttle_done)(struct session *s, bool allowed); /* session_count_login's */

	char client_ip[46];
	uint16_t client_port;
	/* client_ip came from a PROXY header, not from the TCP peer: the bytes
	   that follow were written by that client, through a balancer that did
	   not read them (X-Forwarded-For is then never trusted). */
	bool client_from_proxy_header;
	char local_ip[46];              /* the proxy address the client reached */
	uint16_t local_port;
	char backend_addr[64];          /* "ip:port" once connecting, for logs and audit */
	uint16_t backend_port;          /* the port backend_addr names */
	/* As routed (malloc'd, NULL when unknown): SNI and name check for
	   upstream TLS. Freed when the relay starts: an idle session keeps
	   only backend_addr, not 256 bytes of a host name it no longer needs. */
	char *backend_host;
	/* TLS to the backend: upstream.tls/verify unless the protocol chose
	   (session_connect_backend_tls); sni NULL means backend_host. */
	bool backend_tls;
	bool backend_verify;
	bool backend_keepalive_set;     /* the worker's sweep set TCP keepalive on it */
	const char *backend_sni;        /* points into s->conf */

	/* Pre-login input from the client; capacity limits.max_line + 1. Bytes
	   read beyond it wait in in_pending (client reads paused) and move in
	   as the protocol consumes: nothing is dropped. */
	uint8_t *in;
	size_t in_len;
	size_t in_cap;
	size_t in_hwm;                  /* most of s->in ever filled: what a wipe must cover */
	bool in_pooled;                 /* s->in is a pool buffer's data (session__buf_new) */
	bool bin_pooled;                /* so is s->bin */
	struct pbuf *in_pending;
	bool read_wanted;               /* the protocol wants client bytes */
	bool in_direct;                 /* reads go to proto->client_buf while s->in is empty */
	bool out_blocked;               /* before login: answers over limits.preauth_output
	                                   wait; so do reads and commands */
	/* Login-phase input from the backend. */
	uint8_t *bin;
	size_t bin_len;
	size_t bin_cap;
	size_t bin_hwm;                 /* most of s->bin ever filled: what a wipe must cover */

	uint64_t started_ms;            /* uv_now at accept */
	struct session_relay relay;     /* once the login is over (relay.c) */
	double timer_secs;              /* what the timer was armed with */
	/* When the protocol's timer is due (loop ms; 0: none). The timer may
	   be armed earlier (a restart is skipped when a later time is asked
	   for: it fires, finds it early and sleeps for the rest). */
	uint64_t timer_due_ms;
	int refs;                       /* open handles and pending requests */
	bool finishing;                 /* flushing the last writes before close */
	bool no_linger;                 /* finished for a timeout: close after the last bytes */
	bool closed;                    /* session_close ran: no more I/O */
	bool tls_active;                /* the client connection is encrypted (by us, or by the
	                                   load balancer per its PROXY header's SSL TLV) */
	bool starttls_done;             /* TLS came from STARTTLS/STLS, not the listener */
	bool conn_counted;              /* holds a connlimit count for counted_ip */
	bool bc_room;                   /* allocated as a struct session_mail (session_int.h) */
	bool bc_room_busy;              /* a backend connection lives in it */
	char counted_ip[46];            /* the address it was counted under */
	const char *close_reason;

	struct list worker_link;        /* on the worker's list of sessions */

	/* Backend connections of the protocol's requests (HTTP exchanges,
	   session_upstream_get), connecting or connected: closed with the
	   session. */
	struct session_upstream *upstreams;
};

/*
 * The front end for listeners of protocol p. The runtime names no protocol:
 * main.c (and the test harness) registers IMAP, POP3 and HTTP before any
 * worker starts. Not thread-safe; ops lives for the whole process.
 */
void session_register(enum conf_proto p, const struct session_proto *ops);

/* Log with the session's context: id, client, phase. */
void session_log(struct session *s, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Send bytes to the client (copied). Errors close the session. */
void session_write(struct session *s, const void *data, size_t len);
void session_writef(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Send the n pieces as one write (one TCP segment), e.g. a tag and a reply. */
void session_writev(struct session *s, const struct iovec *iov, int n);

/* Send bytes to the backend (copied). secret: wipe the copy once written.
   A failure closes the backend at once and reports proto->backend_eof
   later, from the loop. */
void session_backend_write(struct session *s, const void *data, size_t len, bool secret);

/* Drop n bytes from the head of s->in / s->bin (the mail login's). */
void session_consume(struct session *s, size_t n);
void session_backend_consume(struct session *s, size_t n);

/* Pause or resume reading from the client before login. */
void session_client_reading(struct session *s, bool on);

/*
 * Before login: true while more than limits.preauth_output bytes of
 * answers wait to be written to the client (it sends commands and does not
 * read). A protocol handles no further command then; the session has
 * stopped reading, and calls proto->client_data again, from the loop, once
 * half of it is written. So what a client can make gatehouse hold before
 * login is bounded whatever it sends.
 */
bool session_client_blocked(const struct session *s);

/* Enter a phase and arm its timeout from the config (PREAUTH, BACKEND_LOGIN,
   HTTP_IDLE, HTTP_FORWARD). */
void session_set_phase(struct session *s, enum session_phase phase);

/* Arm the timer: proto->timeout runs after secs (replaces any armed timeout). */
void session_delay(struct session *s, double secs);

/*
 * Resolve the route for q (strings are copied); proto->route_done runs later
 * on the loop. Enters SESSION_LOOKUP.
 */
void session_resolve(struct session *s, const struct route_query *q);

/*
 * session_resolve checks the login throttle first (throttle.h): when the
 * user or the address is over its limit, route_done gets a route with
 * result ROUTE_THROTTLED and the message for the client as its reason.
 */

/*
 * The backend accepted a login as user: count it for the per-user limit.
 * Returns false when no check is needed (go on now); true when done(s,
 * allowed) will run later (not if the session closes first).
 */
bool session_count_login(struct session *s, const char *user,
			 void (*done)(struct session *s, bool allowed));

/* A login failed (wrong password, unknown user): count it for the address. */
void session_login_failed(struct session *s);

/*
 * The backend of route r (resolved for q) refused the connection or the
 * login: forget r in the route caches (route_invalidate).
 */
void session_route_invalidate(struct session *s, const struct route_query *q,
			      const struct route *r);

/*
 * Connect to host:port (IP literal or name, resolved asynchronously);
 * proto->backend_connected runs later. Enters SESSION_BACKEND_CONNECT with
 * limits.connect_timeout.
 */
void session_connect_backend(struct session *s, const char *host, uint16_t port);

/*
 * The same, with TLS to the backend chosen by the caller (an upstream
 * group's tls, sni, verify) instead of the upstream settings: sni (NULL:
 * host) is sent and, with verify, checked against the certificate; it
 * must live as long as s->conf.
 */
void session_connect_backend_tls(struct session *s, const char *host, uint16_t port, bool tls,
				 const char *sni, bool verify);

/*
 * The passive health state of upstream group g (index in s->conf's
 * upstreams) kept by s's worker (include/upstream.h), or NULL when s runs
 * under an older configuration than the worker's (a reload started over).
 */
struct upstream_health *session_upstream_health(struct session *s, int g);

/* Close the backend connection (a failed login); the session goes on. */
void session_close_backend(struct session *s);

/*
 * Login done: forward what the client already sent after its login command
 * (s->in) to the backend, free the login-phase buffers and protocol state,
 * and relay bytes both ways until either side closes.
 */
void session_start_relay(struct session *s);

/* Stop I/O now and free the session once everything has closed. */
void session_close(struct session *s, const char *reason);

/*
 * Flush what was written to the client, then close (bounded by a timer).
 * A client that may still be sending is read and dropped meanwhile (a
 * lingering close: it gets a FIN after its answer, not a reset).
 */
void session_finish(struct session *s, const char *reason);

/* The same for a client whose time ran out: no lingering for it. */
void session_finish_timed_out(struct session *s, const char *reason);

/*
 * Can this session upgrade to TLS now? (A certificate is configured, the
 * listener offers STARTTLS, and TLS is not active yet.)
 */
bool session_starttls_available(struct session *s);

/* Did the client's TLS handshake choose HTTP/2 by ALPN ("h2")? */
bool session_client_alpn_h2(const struct session *s);

/*
 * Upgrade the client connection to TLS. The protocol has already written
 * its "go ahead" line and consumed the command; everything else the client
 * sent before the handshake is discarded (CVE-2011-0411: no plaintext may
 * cross into the TLS session). proto->tls_started runs once the handshake
 * is done; a failed handshake closes the session.
 */
void session_starttls(struct session *s);

/* ---- HTTP: per-request backends, pooled per worker ---- */

/*
 * Make s->in hold up to cap bytes (HTTP request heads are larger than
 * command lines). Returns 0 or -ENOMEM (s->in unchanged).
 */
int session_set_input_size(struct session *s, size_t cap);

/*
 * An idle connection gives its input buffer back: s->in is freed (wiped up
 * to what was ever written) if it holds no byte and none waits; the next
 * client read makes it again at its size (s->in_cap). Nothing else
 * changes for the protocol, which finds s->in_len == 0 either way (and
 * must not touch s->in while it is 0: it may be NULL).
 */
void session_release_input(struct session *s);

/* Bytes handed to the client and not written yet. */
size_t session_client_queued(struct session *s);

/* Send b to the client; the stream takes b over (no copy). Errors close
   the session. */
void session_write_buf(struct session *s, struct pbuf *b);

/*
 * Request bodies without a copy into s->in: while on, a client read that
 * finds s->in empty goes whole to proto->client_buf. Reads that find
 * bytes in s->in are added to them as before (order is kept).
 */
void session_client_direct(struct session *s, bool on);
/*
 * Give back what proto->client_buf did not use of b (the bytes after a
 * request body): they go into s->in as if just read, reads pausing while
 * some wait. The session owns b again.
 */
void session_client_unread(struct session *s, struct pbuf *b);

/*
 * A backend connection to host:port for owner (the protocol's request),
 * which is the only one to hear of it (proto->upstream_connected /
 * upstream_read / upstream_written with owner); the session closes it
 * with itself. An idle connection to the same address from this worker's
 * keep-alive pool is taken when there is one: *ready_out is true and it
 * can be written at once. Else a new one is made (TLS when upstream.tls)
 * and *ready_out is false: proto->upstream_connected(owner) comes later,
 * from the loop. Any number may be under way per session; the owner
 * bounds each with its own deadline and gives up with
 * session_upstream_release(u, false), which cancels everything (name
 * resolution, connect, TLS) with no callback afterwards. NULL: no memory.
 */
struct session_upstream *session_upstream_get(struct session *s, const char *host,
					      uint16_t port, void *owner, bool *ready_out);
/*
 * How an upstream group's connections differ from the default ones
 * (upstream.tls / upstream.verify, http.backend_keepalive idle ones):
 * TLS on or off, the SNI name (NULL: host) checked with verify, and the
 * group whose idle connections keepalive bounds (its name, copied). The
 * pool hands a connection only to a request with the same address AND the
 * same TLS settings (never a plain one to a TLS group or the reverse).
 */
struct session_upstream_opts {
	bool tls;
	bool verify;
	const char *sni;
	const char *group;
	int keepalive;
};
/* session_upstream_get with o's settings (NULL: the default ones). */
struct session_upstream *session_upstream_get_opts(struct session *s, const char *host,
						   uint16_t port,
						   const struct session_upstream_opts *o,
						   void *owner, bool *ready_out);
/*
 * Run work(arg) on the worker's thread pool (blocking calls: the disk),
 * then done(s, arg) on the loop. Until done has run the session is not
 * freed (the job counts like a pending lookup) and its protocol state
 * stays; done runs also when s closed meanwhile (s->closed: it only frees
 * what arg holds). work must not touch s. -errno: not queued (nothing
 * runs).
 */
int session_job(struct session *s, void (*work)(void *arg),
		void (*done)(struct session *s, void *arg), void *arg);

/* "ip:port" ("[v6]:port") of u, for logs; valid while u is. */
const char *session_upstream_name(const struct session_upstream *u);

/* Send bytes to u (copied). A failure closes u; its owner hears of it
   later, from the loop (upstream_read with NULL). */
void session_upstream_write(struct session_upstream *u, const void *data, size_t len);
/* Send b to u; the stream takes b over (no copy). A failure closes u, as
   for session_upstream_write. */
void session_upstream_write_buf(struct session_upstream *u, struct pbuf *b);
/* No more bytes go to u: its queued bytes are written, then a FIN (TLS:
   close_notify first); reading goes on. A failure closes u (its owner
   hears of it later, from the loop). */
void session_upstream_shutdown(struct session_upstream *u);
/* Start or stop reading from u (backpressure: the owner holds bytes). */
void session_upstream_reading(struct session_upstream *u, bool on);
/* Bytes handed to u and not written yet. */
size_t session_upstream_queued(const struct session_upstream *u);
/* u can still be written (no failure closed it). */
bool session_upstream_open(const struct session_upstream *u);
/* u came from the keep-alive pool (it may have been closed meanwhile). */
bool session_upstream_reused(const struct session_upstream *u);

/*
 * The owner is done with u: reuse = the response ended cleanly and the
 * backend keeps the connection, so it goes back to the worker's pool (at
 * most http.backend_keepalive idle ones); else it is closed. No event
 * comes for u afterwards; the owner forgets it.
 */
void session_upstream_release(struct session_upstream *u, bool reuse);

/*
 * Relay bytes both ways between the client and u (a WebSocket upgrade
 * was accepted): u becomes s->backend and session_start_relay runs (the
 * protocol's state is freed).
 */
void session_upstream_relay(struct session_upstream *u);

/*
 * A buffer of cap bytes for response heads that span reads, from a small
 * per-worker cache (NULL: no memory); session_hbuf_put wipes its first
 * used bytes and gives it back.
 */
uint8_t *session_hbuf_get(size_t cap);
void session_hbuf_put(uint8_t *p, size_t cap, size_t used);

/*
 * Close this worker's idle pooled backend connections and run loop until
 * they are gone (the worker's loop has stopped: pooled idle connections do
 * not keep it alive), then free its cached backend input buffers. Call on
 * the loop's own thread.
 */
void session_http_pool_close(uv_loop_t *loop);

/* Milliseconds since the loop started (cached per iteration). */
uint64_t session_now(struct session *s);

/* proto->client_written runs soon, from the loop, never inside this call
   (rule 1): a protocol with an answer ready without I/O (a static file
   from the open-file cache) sends it from there. */
void session_post_written(struct session *s);

#endif
