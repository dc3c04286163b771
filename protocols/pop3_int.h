/*
 * pop3_int.h - POP3 front-end state shared by pop3.c (client side) and
 * pop3_backend.c (login replay on the backend). Private to protocols/.
 */
#ifndef GATEHOUSE_POP3_INT_H
#define GATEHOUSE_POP3_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "pop3_parse.h"
#include "route.h"
#include "session.h"

#define POP3_UNAVAILABLE "-ERR [SYS/TEMP] Service temporarily unavailable, try again later"
#define POP3_AUTHFAILED "-ERR [AUTH] Authentication failed"

/* Where an AUTH exchange with the client stands. */
enum pop3_auth_step {
	POP3_AUTH_NONE = 0,
	POP3_AUTH_PLAIN_WAIT,   /* "+ " sent, waiting for the PLAIN message */
	POP3_AUTH_LOGIN_USER,   /* waiting for the LOGIN mechanism's user name */
	POP3_AUTH_LOGIN_PASS,   /* waiting for its password */
	POP3_AUTH_XOAUTH2_WAIT, /* "+ " sent, waiting for the XOAUTH2 message */
	POP3_AUTH_OAUTHBEARER_WAIT, /* "+ " sent, waiting for the OAUTHBEARER message */
};

/* How the client logged in; it decides what the backend gets. */
enum pop3_mech {
	POP3_MECH_USER = 0,     /* USER + PASS */
	POP3_MECH_PLAIN,        /* AUTH PLAIN */
	POP3_MECH_LOGIN,        /* AUTH LOGIN */
	POP3_MECH_XOAUTH2,      /* AUTH XOAUTH2: the client's message is replayed as-is */
	POP3_MECH_OAUTHBEARER,  /* AUTH OAUTHBEARER (RFC 7628): replayed as-is too */
};

/* The backend answer being waited for. */
enum pop3_backend_step {
	POP3_BK_GREETING = 0,   /* "+OK ..." */
	POP3_BK_CLIENT_IP,      /* the answer to XOIP / XCLIENT (ignored) */
	POP3_BK_USER,           /* the answer to USER */
	POP3_BK_AUTH_CONT,      /* AUTH sent without initial response: "+ " */
	POP3_BK_LOGIN,          /* the answer to PASS or to the SASL response */
};

struct pop3_state {
	struct pop3_parser parser;
	int bad_commands;
	int login_failures;
	int login_attempts;
	enum pop3_auth_step auth;
	enum pop3_mech mech;
	bool processing;            /* inside pop3__process: no nested runs */
	bool stls_now;              /* STLS answered: upgrade once it is consumed */
	bool have_user;             /* USER given: PASS may follow */
	bool user_too_long;         /* the USER name did not fit in max_login */

	/* The login in progress. Credentials are wiped as soon as they are sent. */
	char *login;                /* max_login + 1: USER, authcid or XOAUTH2 user, as typed */
	char *authz;                /* max_login + 1: PLAIN authzid, "" if none */
	char *password;             /* password_cap bytes */
	size_t password_cap;        /* max_password + 1, kept so wipes need no conf */
	size_t password_len;
	char *xoauth2;              /* the client's base64 XOAUTH2 or OAUTHBEARER message, or NULL */
	size_t xoauth2_cap;         /* bytes at xoauth2 (the message and its NUL) */
	size_t xoauth2_len;
	uint64_t login_start_ms;
	struct route route;
	bool route_retried;         /* a cached route failed: looked up afresh once */
	/* The answer to a rejected login, held back in SESSION_AUTH_WAIT
	   (limits.auth_failure_delay); "" means the generic failure. */
	char fail_reply[320];
	/* The backend's +OK line, held while the user's login is counted. */
	char *held_ok;
	size_t held_ok_len;

	/* Backend replay. */
	enum pop3_backend_step bk_step;
	bool bk_auth;               /* AUTH rather than USER/PASS */
	bool bk_ir;                 /* AUTH with an initial response (it fits in 255 octets) */
	bool bk_xoauth2_error;      /* answered a token mechanism's error challenge */
};

/* pop3.c */
/* The login failed: answer reply_line (or, at max_login_failures counted
   failures, the last answer, and close) and go back to reading commands. */
void pop3_login_failed(struct session *s, const char *reply_line, bool counted);
/* The mailstore rejected the password: pop3_login_failed(reply_line),
   after limits.auth_failure_delay, from proto->timeout. */
void pop3_login_rejected(struct session *s, const char *reply_line);
/* The backend took the login: relay its +OK line and start relaying. */
void pop3_login_succeeded(struct session *s, const char *line, size_t len);
void pop3_login_throttled(struct session *s, const char *msg);
void pop3_audit(struct session *s, const char *result, const char *reason);
/* Wipe the password and drop the token message (each over its whole
   block), and forget the names. */
void pop3_wipe_credentials(struct pop3_state *st);
/* Wipe the password and the token message only: they are sent; the names
   still serve the audit line. */
void pop3__wipe_secrets(struct pop3_state *st);
/* One reply line; CRLF added. */
void pop3__reply(struct session *s, const char *line);
/* Answer a bad command, or end the session at max_bad_commands. Returns
   false when the session is ending. */
bool pop3__bad(struct session *s, const char *line);
/*
 * The backend of st->route could not be reached: forget the route in the
 * caches; if it came from a cache (the mailbox may have moved), look the
 * user up once more, bypassing them. true: that lookup is under way.
 */
bool pop3_route_unreachable(struct session *s, const char *why);
/* The backend rejected the login: the route may be wrong, forget it. */
void pop3_route_rejected(struct session *s);
/* Look up st->authz or st->login (the credentials are in place). */
void pop3__begin_login(struct session *s);
/* A login attempt that fails before any lookup (bad input): audited. */
void pop3__fail_early(struct session *s, const char *why);

/* pop3_sasl.c */
/* AUTH [mechanism [initial-response]]. Returns false when the session is ending. */
bool pop3__auth(struct session *s, const struct pop3_cmd *cmd);
/* A line answering our "+ " continuation (st->auth says which). */
bool pop3__sasl_line(struct session *s, const struct pop3_cmd *cmd);

/* pop3_backend.c */
void pop3_backend_connected(struct session *s, int status);
void pop3_backend_data(struct session *s);
void pop3_backend_eof(struct session *s, int status);
void pop3_backend_timeout(struct session *s);

#endif
