/*
 * imap_int.h - IMAP front-end state shared by imap.c (client side) and
 * imap_backend.c (login replay on the backend). Private to protocols/.
 */
#ifndef GATEHOUSE_IMAP_INT_H
#define GATEHOUSE_IMAP_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "imap_parse.h"
#include "route.h"
#include "session.h"

enum imap_auth_step {
	IMAP_AUTH_NONE = 0,
	IMAP_AUTH_PLAIN_WAIT,  /* "+ " sent, waiting for the PLAIN message */
	IMAP_AUTH_LOGIN_USER,  /* waiting for the LOGIN mechanism's user name */
	IMAP_AUTH_LOGIN_PASS,  /* waiting for its password */
};

enum imap_backend_step {
	IMAP_BK_GREETING = 0,  /* waiting for "* OK" */
	IMAP_BK_CAPA,          /* asked CAPABILITY (greeting had none) */
	IMAP_BK_LOGIN,         /* ID and login sent, waiting for the tagged answer */
};

/* How the credentials go to the backend. */
enum imap_backend_method {
	IMAP_BKM_LOGIN = 0,    /* LOGIN with quoted strings or LITERAL+ */
	IMAP_BKM_PLAIN_IR,     /* AUTHENTICATE PLAIN with SASL-IR */
	IMAP_BKM_PLAIN,        /* AUTHENTICATE PLAIN, message after "+" */
};

struct imap_state {
	struct imap_parser parser;
	int bad_commands;
	int login_failures;
	int login_attempts;
	enum imap_auth_step auth;
	bool processing;            /* inside imap__process: no nested runs */
	bool starttls_now;          /* STARTTLS answered: upgrade once it is consumed */
	bool authenticate;          /* the login came from AUTHENTICATE, not LOGIN */

	/* The login in progress. Credentials are wiped as soon as they are sent. */
	char *tag;                  /* max_tag + 1 */
	char *login;                /* max_login + 1: authcid as typed */
	char *authz;                /* max_login + 1: PLAIN authzid, "" if none */
	char *password;             /* password_cap bytes */
	size_t password_cap;        /* max_password + 1, kept so wipes need no conf */
	size_t password_len;
	uint64_t login_start_ms;
	struct route route;

	/* From the client's ID command, sanitised, for X-VIA. */
	char client_name[64];
	char client_version[64];

	/* Backend replay. */
	enum imap_backend_step bk_step;
	enum imap_backend_method bk_method;
	bool bk_literal_plus, bk_sasl_ir, bk_auth_plain, bk_caps_known;
	bool bk_plain_sent;         /* PLAIN message sent after "+" */
	bool route_retried;         /* a cached route failed: looked up afresh once */
	/* The answer to a rejected login, held back in SESSION_AUTH_WAIT
	   (limits.auth_failure_delay); "" means the generic failure. */
	char fail_reply[200];
	/* The backend's tagged OK, held while the user's login is counted. */
	uint8_t *held_ok;
	size_t held_ok_len;
};

/* imap.c */
void imap_login_failed(struct session *s, const char *reply_line, bool counted);
/* The mailstore rejected the login: answer reply_line (counted) after
   limits.auth_failure_delay, from proto->timeout. */
void imap_login_rejected(struct session *s, const char *reply_line);
void imap_login_succeeded(struct session *s, const uint8_t *rest, size_t rest_len);
void imap_login_throttled(struct session *s, const char *msg);
void imap_audit(struct session *s, const char *result, const char *reason);
/* Wipe the password (its whole block) and forget the names. */
void imap_wipe_credentials(struct imap_state *st);
bool imap_route_unreachable(struct session *s, const char *why);
void imap_route_rejected(struct session *s);

/* imap_backend.c */
void imap_backend_connected(struct session *s, int status);
void imap_backend_data(struct session *s);
void imap_backend_eof(struct session *s, int status);
void imap_backend_timeout(struct session *s);

#endif
