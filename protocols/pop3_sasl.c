/*
 * pop3_sasl.c - POP3 AUTH (RFC 5034): PLAIN, LOGIN and XOAUTH2, with
 * initial responses ("=" for an empty one), continuation lines, and "*" to
 * cancel. PLAIN and LOGIN yield a user and a password; XOAUTH2 yields the
 * user to look up, and its message is kept to be replayed unchanged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "login.h"
#include "pop3_int.h"
#include "sasl.h"

/* A PLAIN message arrived (initial response or continuation). */
static void pop3__plain(struct session *s, const uint8_t *b64, size_t n)
{
	struct pop3_state *st = pop3__st(s);

	st->auth = POP3_AUTH_NONE;
	st->mech = POP3_MECH_PLAIN;
	if (login_sasl_plain(s, b64, n) < 0)
		pop3__bad(s, "-ERR Invalid base64 data");
}

/* An XOAUTH2 or OAUTHBEARER message: find the user for the lookup, keep
   the message to replay it to the backend. */
static void pop3__token(struct session *s, enum pop3_mech mech, const uint8_t *b64, size_t n)
{
	struct pop3_state *st = pop3__st(s);
	struct login_state *ls = &st->l;
	struct sasl_secret msg;
	struct sasl_xoauth2 x;
	bool bearer = mech == POP3_MECH_OAUTHBEARER;

	st->auth = POP3_AUTH_NONE;
	st->mech = mech;
	ls->authz[0] = '\0';
	if (sasl_secret_decode(b64, n, &msg) < 0) {
		sasl_secret_free(&msg);
		pop3__bad(s, "-ERR Invalid base64 data");
		return;
	}
	bool ok = (bearer ? sasl_oauthbearer_parse(msg.p, msg.len, &x)
			  : sasl_xoauth2_parse(msg.p, msg.len, &x)) == 0 &&
		  sasl_take(ls->login, s->conf->limits.max_login + 1, msg.p + x.user.off, x.user.len);
	sasl_secret_free(&msg);
	if (!ok) {
		ls->login[0] = '\0';
		login_fail_early(s, bearer ? "malformed OAUTHBEARER message" : "malformed XOAUTH2 message");
		return;
	}
	ls->token = malloc(n + 1);
	if (ls->token == NULL) {
		session_close(s, "out of memory");
		return;
	}
	ls->token_cap = n + 1;
	memcpy(ls->token, b64, n);
	ls->token[n] = '\0';
	ls->token_len = n;
	login_begin(s);
}

/* Ask for a SASL response: the next client line is one. */
static void pop3__continue(struct session *s, enum pop3_auth_step step, const char *line)
{
	struct pop3_state *st = pop3__st(s);

	st->auth = step;
	pop3_parser_expect_sasl(&st->parser);
	pop3__reply(s, line);
}

bool pop3__auth(struct session *s, const struct pop3_cmd *cmd)
{
	struct pop3_state *st = pop3__st(s);
	unsigned offered = s->conf->pop3.sasl;
	const struct pop3_span *m = &cmd->args[0];
	const struct pop3_span *ir = cmd->nargs == 2 ? &cmd->args[1] : NULL;
	char mech[16];

	if (cmd->nargs == 0) {
		/* The mechanism list of RFC 1734, which some clients still ask for. */
		session_writef(s, "+OK\r\n%s%s%s%s.\r\n", offered & CONF_SASL_PLAIN ? "PLAIN\r\n" : "",
			       offered & CONF_SASL_LOGIN ? "LOGIN\r\n" : "",
			       offered & CONF_SASL_XOAUTH2 ? "XOAUTH2\r\n" : "",
			       offered & CONF_SASL_OAUTHBEARER ? "OAUTHBEARER\r\n" : "");
		return true;
	}
	if (cmd->nargs > 2)
		return pop3__bad(s, "-ERR Syntax error: AUTH mechanism [initial-response]");
	st->have_user = false;
	snprintf(mech, sizeof(mech), "%.*s", m->len < sizeof(mech) ? (int)m->len : 0,
		 (const char *)s->in + m->off);
	if ((offered & CONF_SASL_PLAIN) && strcasecmp(mech, "PLAIN") == 0) {
		if (ir)
			pop3__plain(s, s->in + ir->off, ir->len);
		else
			pop3__continue(s, POP3_AUTH_PLAIN_WAIT, "+ ");
		return true;
	}
	if ((offered & CONF_SASL_XOAUTH2) && strcasecmp(mech, "XOAUTH2") == 0) {
		if (ir)
			pop3__token(s, POP3_MECH_XOAUTH2, s->in + ir->off, ir->len);
		else
			pop3__continue(s, POP3_AUTH_XOAUTH2_WAIT, "+ ");
		return true;
	}
	if ((offered & CONF_SASL_OAUTHBEARER) && strcasecmp(mech, "OAUTHBEARER") == 0) {
		if (ir)
			pop3__token(s, POP3_MECH_OAUTHBEARER, s->in + ir->off, ir->len);
		else
			pop3__continue(s, POP3_AUTH_OAUTHBEARER_WAIT, "+ ");
		return true;
	}
	if ((offered & CONF_SASL_LOGIN) && strcasecmp(mech, "LOGIN") == 0) {
		st->mech = POP3_MECH_LOGIN;
		st->l.authz[0] = '\0';
		if (!ir) {
			pop3__continue(s, POP3_AUTH_LOGIN_USER, "+ VXNlcm5hbWU6");
			return true;
		}
		if (!login_sasl_user(s, s->in + ir->off, ir->len))
			return pop3__bad(s, "-ERR Invalid initial response");
		pop3__continue(s, POP3_AUTH_LOGIN_PASS, "+ UGFzc3dvcmQ6");
		return true;
	}
	pop3__reply(s, "-ERR Unsupported authentication mechanism");
	return true;
}

bool pop3__sasl_line(struct session *s, const struct pop3_cmd *cmd)
{
	struct pop3_state *st = pop3__st(s);
	const uint8_t *p = s->in + cmd->args[0].off;
	size_t n = cmd->args[0].len;
	enum pop3_auth_step step = st->auth;

	st->auth = POP3_AUTH_NONE;
	if (cmd->error != POP3_OK)
		return pop3__bad(s, "-ERR Invalid base64 data");
	if (n == 1 && p[0] == '*') {
		pop3__reply(s, "-ERR authentication aborted");
		return true;
	}
	if (step == POP3_AUTH_PLAIN_WAIT) {
		pop3__plain(s, p, n);
		return true;
	}
	if (step == POP3_AUTH_XOAUTH2_WAIT || step == POP3_AUTH_OAUTHBEARER_WAIT) {
		pop3__token(s, step == POP3_AUTH_XOAUTH2_WAIT ? POP3_MECH_XOAUTH2 : POP3_MECH_OAUTHBEARER,
			    p, n);
		return true;
	}
	if (step == POP3_AUTH_LOGIN_PASS) {
		login_sasl_password(s, p, n);
		return true;
	}
	if (!login_sasl_user(s, p, n))
		return pop3__bad(s, "-ERR Invalid user name response");
	pop3__continue(s, POP3_AUTH_LOGIN_PASS, "+ UGFzc3dvcmQ6");
	return true;
}
