/*
 * imap_int.h - IMAP front-end state shared by imap.c (client side) and
 * imap_backend.c (login replay on the backend). Private to protocols/.
 */
#ifndef GATEHOUSE_IMAP_INT_H
#define GATEHOUSE_IMAP_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "imap_parse.h"
#include "login.h"
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

#define IMAP_AUTHFAILED "NO [AUTHENTICATIONFAILED] Authentication failed"
#define IMAP_UNAVAILABLE "NO [UNAVAILABLE] Service temporarily unavailable, try again later"

struct imap_state {
	struct login_state l;       /* first: s->proto_state points at both */
	struct imap_parser parser;
	enum imap_auth_step auth;
	bool starttls_now;          /* STARTTLS answered: upgrade once it is consumed */
	bool authenticate;          /* the login came from AUTHENTICATE, not LOGIN */
	char *tag;                  /* max_tag + 1: the login command's tag */

	/* From the client's ID command, sanitised, for X-VIA. */
	char client_name[64];
	char client_version[64];

	/* Backend replay. */
	enum imap_backend_step bk_step;
	enum imap_backend_method bk_method;
	bool bk_literal_plus, bk_sasl_ir, bk_auth_plain, bk_caps_known;
	bool bk_plain_sent;         /* PLAIN message sent after "+" */
};

static inline struct imap_state *imap__st(struct session *s)
{
	return s->proto_state;
}

/* imap_backend.c */
/* login_ops.backend_start: wait for the greeting. */
void imap__backend_start(struct session *s);
/* login_ops.backend_line. */
void imap__backend_line(struct session *s, const char *line, size_t n, size_t linelen);

#endif
