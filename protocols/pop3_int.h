/*
 * pop3_int.h - POP3 front-end state shared by pop3.c (client side) and
 * pop3_backend.c (login replay on the backend). Private to protocols/.
 */
#ifndef GATEHOUSE_POP3_INT_H
#define GATEHOUSE_POP3_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "login.h"
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
	struct login_state l;       /* first: s->proto_state points at both */
	struct pop3_parser parser;
	enum pop3_auth_step auth;
	enum pop3_mech mech;
	bool stls_now;              /* STLS answered: upgrade once it is consumed */
	bool have_user;             /* USER given: PASS may follow */
	bool user_too_long;         /* the USER name did not fit in max_login */

	/* Backend replay. */
	enum pop3_backend_step bk_step;
	bool bk_auth;               /* AUTH rather than USER/PASS */
	bool bk_ir;                 /* AUTH with an initial response (it fits in 255 octets) */
	bool bk_xoauth2_error;      /* answered a token mechanism's error challenge */
};

static inline struct pop3_state *pop3__st(struct session *s)
{
	return s->proto_state;
}

/* pop3.c */
/* One reply line; CRLF added. */
void pop3__reply(struct session *s, const char *line);
/* Answer a bad command, or end the session at max_bad_commands. Returns
   false when the session is ending. */
bool pop3__bad(struct session *s, const char *line);

/* pop3_sasl.c */
/* AUTH [mechanism [initial-response]]. Returns false when the session is ending. */
bool pop3__auth(struct session *s, const struct pop3_cmd *cmd);
/* A line answering our "+ " continuation (st->auth says which). */
bool pop3__sasl_line(struct session *s, const struct pop3_cmd *cmd);

/* pop3_backend.c */
/* login_ops.backend_start: choose how to log in, wait for the greeting. */
void pop3__backend_start(struct session *s);
/* login_ops.backend_line. */
void pop3__backend_line(struct session *s, const char *line, size_t n, size_t linelen);

#endif
