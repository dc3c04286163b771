/*
 * login.h - the login core the IMAP and POP3 front ends share (Dovecot's
 * struct client common and client_vfuncs; nginx's one
 * ngx_mail_proxy_read_response). Private to protocols/.
 *
 * A protocol's state begins with a struct login_state (s->proto_state
 * points at both), and its struct login_ops says what differs: the reply
 * formats, the command loop, the backend replay. Everything else about a
 * login is here: the credentials and their wiping, the route lookup and its
 * retry, the failure and throttling limits, the held-back answers, the
 * backend line reader, and most of the session_proto callbacks.
 */
#ifndef GATEHOUSE_LOGIN_H
#define GATEHOUSE_LOGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route.h"
#include "sasl.h"
#include "session.h"

/* Write a string literal to the client; its length is counted by sizeof. */
#define login_write_lit(s, lit) session_write((s), "" lit, sizeof(lit) - 1)
/* The same to the backend (nothing secret). */
#define login_backend_write_lit(s, lit) session_backend_write((s), "" lit, sizeof(lit) - 1, false)

struct login_ops;

/*
 * What a login attempt keeps, whatever the protocol. Allocated by
 * login_start at the head of the protocol's state, freed by login_destroy.
 * Credentials are wiped as soon as they are sent, and always over the
 * whole of their blocks.
 */
struct login_state {
	const struct login_ops *ops;
	int bad_commands;
	int login_failures;         /* counted failures: max_login_failures ends the session */
	int login_attempts;         /* the lookup's Auth-Login-Attempt */
	bool processing;            /* inside login_process: no nested runs */
	bool route_retried;         /* a cached route failed: looked up afresh once */

	char *login;                /* max_login + 1: authcid (or USER, token user) as typed */
	char *authz;                /* max_login + 1: PLAIN authzid, "" if none */
	char *password;             /* password_cap bytes */
	size_t password_cap;        /* max_password + 1, kept so wipes need no conf */
	size_t password_len;
	/* A token mechanism's message (POP3 XOAUTH2, OAUTHBEARER), base64 as
	   the client sent it, replayed unchanged; NULL for a password login
	   (the lookup then gets no password). */
	char *token;
	size_t token_cap;           /* bytes at token (the message and its NUL) */
	size_t token_len;

	uint64_t login_start_ms;
	struct route route;
	/* The answer to a rejected login, held back in SESSION_AUTH_WAIT
	   (limits.auth_failure_delay); "" means ops->authfailed. */
	char fail_reply[320];
	/* The backend's answer to a good login, held while the user's login is
	   counted (session_count_login). */
	uint8_t *held_ok;
	size_t held_ok_len;
};

/* What differs between the protocols. */
struct login_ops {
	const char *protocol;       /* "imap": the lookup's protocol, and the client tag's */
	const char *protocol_tls;   /* "imapssl": the lookup's protocol with upstream TLS */
	size_t state_size;          /* sizeof the protocol's state (login_state at its head) */
	const char *authfailed;     /* reply to an unknown user or a malformed login */
	const char *unavailable;    /* reply when the lookup or the backend is down */
	const char *idle_bye;       /* the line (CRLF included) that ends an idle client */
	/* Handle the complete commands in s->in while the session is in
	   SESSION_PREAUTH (called through login_process, never nested). */
	void (*run)(struct session *s);
	/* A login failed: forget the protocol's part of the attempt and answer
	   reply_line; last: this failure ends the session (the core finishes
	   it), answer accordingly. */
	void (*failed)(struct session *s, const char *reply_line, bool last);
	/* Refuse a throttled login with msg (the core then finishes). */
	void (*throttled)(struct session *s, const char *msg);
	/* The login is done: hand the client the backend's answer line[0..n)
	   (what login_succeeded was given); the relay starts next. */
	void (*succeeded)(struct session *s, const uint8_t *line, size_t n);
	/* The backend is connected: reset the replay, wait for its greeting. */
	void (*backend_start)(struct session *s);
	/* One backend line during login: n bytes without CRLF, linelen with. */
	void (*backend_line)(struct session *s, const char *line, size_t n, size_t linelen);
	/* IMAP: a backend line ending in "{N}" carries N more bytes. */
	bool backend_literals;
	/* Optional: free what the protocol allocated beyond login_state. */
	void (*destroy)(struct session *s);
};

/*
 * The session_proto callbacks the login core serves for each front end
 * built on it. The protocol's table adds name, busy_line, throttle_key,
 * deny_prefix, start (which calls login_start) and tls_started.
 */
#define LOGIN_SESSION_CALLBACKS                                                      \
	.client_data = login_process, .client_eof = login_client_eof,                \
	.route_done = login_route_done, .backend_connected = login_backend_connected, \
	.backend_data = login_backend_data, .backend_eof = login_backend_eof,        \
	.timeout = login_timeout, .destroy = login_destroy

static inline struct login_state *login_st(struct session *s)
{
	return s->proto_state;
}

/* ---- start and end ---- */

/*
 * Allocate ops->state_size zeroed bytes as s->proto_state, with the
 * credential buffers. Returns the state, or NULL when out of memory (what
 * was allocated is in s->proto_state for login_destroy).
 */
struct login_state *login_start(struct session *s, const struct login_ops *ops);

/* session_proto.destroy: wipe and free everything (ops->destroy first). */
void login_destroy(struct session *s);

/* Wipe the password and the token (each over its whole block): they are sent. */
void login_wipe_secrets(struct login_state *ls);
/* login_wipe_secrets, and forget the names. */
void login_wipe_credentials(struct login_state *ls);

/* ---- the command loop ---- */

/*
 * session_proto.client_data: run ops->run unless the session is closed or
 * a run is already under way (a login that fails at once, before its
 * command is consumed, calls back in here: the running loop carries on).
 */
void login_process(struct session *s);

/*
 * Count a bad command. Returns true while under limits.max_bad_commands;
 * false at the limit, after writing bye (a line, CRLF included) and
 * finishing the session.
 */
bool login_bad_command(struct session *s, const char *bye);

/* After a command in SESSION_PREAUTH: re-arm the idle timer. */
void login_command_done(struct session *s);

/* session_proto.client_eof. */
void login_client_eof(struct session *s, int status);

/* session_proto.timeout: AUTH_WAIT answers the held failure, BACKEND_LOGIN
   gives up on the backend, PREAUTH says ops->idle_bye and finishes. */
void login_timeout(struct session *s);

/* ---- a login attempt ---- */

/*
 * The credentials are in place: check the names (audited failure if
 * invalid), stop reading from the client, and look the user up (the
 * authzid when there is one); session_proto.route_done follows.
 */
void login_begin(struct session *s);

/* A login attempt that fails before any lookup (malformed input): counted,
   audited with why, answered with ops->authfailed. */
void login_fail_early(struct session *s, const char *why);

/*
 * A SASL PLAIN message, base64 (an initial response or a continuation):
 * take its authzid, authcid and password and begin the login (or fail it
 * early when malformed). Returns -1 when b64 is not base64 (nothing
 * happened: the protocol answers), else 0.
 */
int login_sasl_plain(struct session *s, const uint8_t *b64, size_t n);

/* The LOGIN mechanism's user name, base64: false when it is not base64 or
   does not fit (the protocol answers). */
bool login_sasl_user(struct session *s, const uint8_t *b64, size_t n);

/* The LOGIN mechanism's password, base64: begin the login, or fail it early. */
void login_sasl_password(struct session *s, const uint8_t *b64, size_t n);

/* Audit the attempt in progress: the name as typed (the authzid when one
   was given), the route it got, the time since it began. A "fail" also
   counts against the client address's failed-login limit (throttle.h). */
void login_audit(struct session *s, const char *result, const char *reason);

/*
 * The login failed: wipe it, close any backend, answer reply_line
 * (ops->failed), and go back to the commands; at max_login_failures
 * counted failures, finish instead.
 */
void login_failed(struct session *s, const char *reply_line, bool counted);

/* The mailstore rejected the login: login_failed(reply_line) after
   limits.auth_failure_delay, from the timeout. */
void login_rejected(struct session *s, const char *reply_line);

/*
 * The backend took the login; line[0..n) is the answer the client gets,
 * from the head of s->bin, whose first linelen bytes it ends (consumed
 * here). The user's login is counted, then ops->succeeded runs and the
 * relay starts (or the login is refused after all).
 */
void login_succeeded(struct session *s, const char *line, size_t n, size_t linelen);

/* The backend refused the login: the route may be wrong, forget it. */
void login_route_rejected(struct session *s);

/*
 * session_proto.route_done: connect to the route, or fail the login after
 * login_failure_delay (SESSION_AUTH_WAIT), or report a temporary failure.
 */
void login_route_done(struct session *s, const struct route *r);

/* Whether an unreachable route deserves one fresh lookup: it came from a
   cache (the mailbox may have moved) and none was tried yet. */
bool login_route_retry(const struct route *r, bool retried);

/*
 * The backend of r could not be reached. q is this login's (or request's)
 * query, built with bypass_cache = login_route_retry(r, *retried): without
 * it the route is only forgotten in the caches (false); with it a fresh
 * lookup starts (true: the protocol's route_done runs again, from the loop).
 * Shared by the mail login core and HTTP.
 */
bool login_route_unreachable(struct session *s, const struct route_query *q, const struct route *r,
			     bool *retried, const char *why);

/*
 * The name to log in as on the backend: the route's user, plus the Zimbra
 * client tag ("/tb", "/wm", "/ni") that ends the name it was resolved for
 * (route_login_suffix), as Zimbra's proxy does, so the mailstore turns on
 * its client hacks. The tag is neither looked up nor cached. buf holds the
 * result when a tag is added; the route's user comes back as it is when
 * there is none or it would not fit.
 */
const char *login_upstream_user(struct session *s, char buf[ROUTE_MAX_USER]);

/* Room login_plain_b64 needs (the upstream user is at most ROUTE_MAX_USER). */
#define LOGIN_PLAIN_B64_MAX(ls) SASL_B64_ENCODED_SIZE(2 * ROUTE_MAX_USER + (ls)->password_len + 2)

/*
 * The PLAIN message for the backend, base64 (no CRLF) into out
 * (LOGIN_PLAIN_B64_MAX bytes): the client's credentials for the upstream
 * user, or, with an authzid (a master user login), for its authcid on
 * behalf of the upstream user. Returns its length.
 */
size_t login_plain_b64(struct session *s, char *out);

/* ---- the backend ---- */

/* session_proto.backend_connected: a failure retries a cached route once
   or fails the login; success runs ops->backend_start. */
void login_backend_connected(struct session *s, int status);

/*
 * session_proto.backend_data: the one backend line reader. Splits s->bin
 * into lines (skipping IMAP literals with ops->backend_literals), refuses
 * over-long lines and NUL bytes, and hands each line to ops->backend_line
 * until the login is over.
 */
void login_backend_data(struct session *s);

/* session_proto.backend_eof: a temporary failure. */
void login_backend_eof(struct session *s, int status);

/* Give up on this backend (logged, audited): the client gets
   ops->unavailable. */
void login_backend_tempfail(struct session *s, const char *why);

/* Whether line[0..n) starts with prefix, ignoring case. */
bool login_prefix(const char *line, size_t n, const char *prefix);

/* ---- shared by login.c and login_backend.c (login__) ---- */

/* The route query for the login in s (bypass_cache: ask the lookup). */
void login__query(struct session *s, struct route_query *q, bool bypass_cache);
/* Seconds to hold back a failure answer (auth_failure_delay, Auth-Wait). */
double login__failure_delay(const struct session *s, double auth_wait);
/* Refuse a throttled login with msg and finish. */
void login__throttled(struct session *s, const char *msg);

#endif
