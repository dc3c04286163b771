/*
 * pop3_backend.c - log the user in on the POP3 backend, then hand over to
 * the relay.
 *
 * Read the greeting ("+OK"), tell the backend the client's address (XOIP
 * for Zimbra, XCLIENT for Dovecot; the answer is read and ignored), then
 * log in as the route's canonical user with USER/PASS or AUTH PLAIN, or
 * replay the client's own XOAUTH2 message. The backend's answer to the
 * login is what the client sees.
 *
 * With pop3.backend_pipelining the client-IP command and the login go in
 * one write (RFC 2449 PIPELINING); otherwise each command waits for the
 * answer to the one before, which every POP3 server accepts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "login.h"
#include "pop3_int.h"
#include "sasl.h"
#include "secret.h"

/* USER and PASS carry the name and password as bare text up to CRLF. */
static bool pop3__bk_line_safe(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0')
			return false;
	return true;
}

void pop3__backend_start(struct session *s)
{
	struct pop3_state *st = pop3__st(s);
	struct login_state *ls = &st->l;

	st->bk_step = POP3_BK_GREETING;
	st->bk_xoauth2_error = false;
	/* USER/PASS unless the login needs SASL: an XOAUTH2 or OAUTHBEARER
	   token, an authzid, the configuration, or a password USER/PASS cannot
	   carry. */
	st->bk_auth = ls->token || ls->authz[0] ||
		      s->conf->pop3.backend_auth == CONF_POP3_BACKEND_AUTH_PLAIN ||
		      !pop3__bk_line_safe(ls->password, ls->password_len);
	st->bk_ir = false;
}

/* Room for every command pop3__bk_append may write at once. */
static size_t pop3__bk_room(const struct pop3_state *st)
{
	return 256 + 2 * ROUTE_MAX_USER + st->l.password_len + st->l.token_len + LOGIN_PLAIN_B64_MAX(&st->l);
}

/* The SASL response for the backend: base64, no CRLF. */
static size_t pop3__bk_sasl_response(struct session *s, char *out)
{
	struct pop3_state *st = pop3__st(s);

	if (st->l.token) {
		memcpy(out, st->l.token, st->l.token_len);
		return st->l.token_len;
	}
	/* With an authzid the client logs in as someone else (a master user):
	   that someone is the route's user, the credentials stay the client's.
	   The client's Zimbra tag (/tb, /wm, /ni) goes back on, as Zimbra's
	   proxy sends it. */
	return login_plain_b64(s, out);
}

/* "PASS password" and CRLF at out. */
static size_t pop3__bk_pass(const struct login_state *ls, char *out)
{
	size_t n = (size_t)sprintf(out, "PASS ");

	memcpy(out + n, ls->password, ls->password_len);
	n += ls->password_len;
	out[n++] = '\r';
	out[n++] = '\n';
	return n;
}

/*
 * Append the login's first command at out: "USER u" (and, pipelined,
 * "PASS p" behind it), or "AUTH MECH [initial-response]". Returns the
 * length and the step that answers it; *done_out: every credential is in.
 */
static size_t pop3__bk_login_cmds(struct session *s, char *out, bool pipelined,
			     enum pop3_backend_step *step_out, bool *done_out)
{
	struct pop3_state *st = pop3__st(s);
	const char *mech = st->mech == POP3_MECH_XOAUTH2       ? "XOAUTH2"
			   : st->mech == POP3_MECH_OAUTHBEARER ? "OAUTHBEARER"
							       : "PLAIN";
	size_t n = 0;

	if (!st->bk_auth) {
		char ub[ROUTE_MAX_USER];
		n += (size_t)sprintf(out, "USER %s\r\n", login_upstream_user(s, ub));
		*step_out = POP3_BK_USER;
		*done_out = pipelined;
		if (pipelined)
			n += pop3__bk_pass(&st->l, out + n);
		return n;
	}
	n += (size_t)sprintf(out, "AUTH %s ", mech);
	size_t rl = pop3__bk_sasl_response(s, out + n);
	/* RFC 5034 section 4: an initial response that would make the line
	   longer than 255 octets goes after the "+" instead. */
	st->bk_ir = n + rl + 2 <= POP3_MAX_COMMAND;
	if (st->bk_ir) {
		n += rl;
		*step_out = POP3_BK_LOGIN;
		*done_out = true;
	} else {
		secret_wipe(out + n, rl);
		n--; /* drop the space */
		*step_out = POP3_BK_AUTH_CONT;
		*done_out = false;
	}
	out[n++] = '\r';
	out[n++] = '\n';
	return n;
}

/* Write buf[0..n) (secret) and wipe it; once every credential is out, wipe
   ours too. */
static void pop3__bk_send(struct session *s, char *buf, size_t n, size_t cap, bool done)
{
	struct pop3_state *st = pop3__st(s);

	session_backend_write(s, buf, n, true);
	secret_wipe(buf, cap);
	free(buf);
	/* A failed write has ended this attempt (and the client's pipelined
	   commands may have begun the next one): its credentials are not ours. */
	if (s->backend == NULL || s->phase != SESSION_BACKEND_LOGIN)
		return;
	if (done)
		login_wipe_secrets(&st->l);
}

/* The step that answers the login's first command (see pop3__bk_login_cmds). */
static enum pop3_backend_step pop3__bk_login_step(const struct pop3_state *st)
{
	if (!st->bk_auth)
		return POP3_BK_USER;
	return st->bk_ir ? POP3_BK_LOGIN : POP3_BK_AUTH_CONT;
}

/* "XOIP ip" or "XCLIENT ADDR=ip PORT=port", or nothing. */
static size_t pop3__bk_client_ip_cmd(struct session *s, char *out)
{
	switch (s->conf->pop3.client_ip_command) {
	case CONF_POP3_CLIENT_IP_XOIP:
		return (size_t)sprintf(out, "XOIP %s\r\n", s->client_ip);
	case CONF_POP3_CLIENT_IP_XCLIENT:
		return (size_t)sprintf(out, "XCLIENT ADDR=%s PORT=%u\r\n", s->client_ip,
				       s->client_port);
	case CONF_POP3_CLIENT_IP_NONE:
		break;
	}
	return 0;
}

/* An answer arrived (or the greeting): send what comes next, if anything. */
static void pop3__bk_advance(struct session *s)
{
	struct pop3_state *st = pop3__st(s);
	bool pipelined = s->conf->pop3.backend_pipelining, done = false;
	enum pop3_backend_step next = st->bk_step, ignored;
	size_t cap = pop3__bk_room(st), n = 0;
	char *buf = malloc(cap);

	if (buf == NULL) {
		session_close(s, "out of memory");
		return;
	}
	switch (st->bk_step) {
	case POP3_BK_GREETING:
		n = pop3__bk_client_ip_cmd(s, buf);
		if (n == 0) {
			n = pop3__bk_login_cmds(s, buf, pipelined, &next, &done);
			break;
		}
		next = POP3_BK_CLIENT_IP;
		if (pipelined)
			n += pop3__bk_login_cmds(s, buf + n, true, &ignored, &done);
		break;
	case POP3_BK_CLIENT_IP:
		if (pipelined)
			next = pop3__bk_login_step(st); /* already sent */
		else
			n = pop3__bk_login_cmds(s, buf, false, &next, &done);
		break;
	case POP3_BK_USER:
		next = POP3_BK_LOGIN;
		if (pipelined)
			break; /* PASS went with USER */
		n = pop3__bk_pass(&st->l, buf);
		done = true;
		break;
	case POP3_BK_AUTH_CONT:
		n = pop3__bk_sasl_response(s, buf);
		buf[n++] = '\r';
		buf[n++] = '\n';
		next = POP3_BK_LOGIN;
		done = true;
		break;
	case POP3_BK_LOGIN:
		break;
	}
	st->bk_step = next;
	if (n == 0) {
		free(buf);
		return;
	}
	pop3__bk_send(s, buf, n, cap, done);
}

/* The backend refused the login: relay its -ERR, with [AUTH] if it gave no
   response code, and let the client try again. */
static void pop3__bk_rejected(struct session *s, const char *line, size_t n)
{
	struct pop3_state *st = pop3__st(s);
	char text[300], reply[320], why[340];
	size_t i = 4, tl = 0;

	if (i < n && line[i] == ' ')
		i++;
	for (; i < n && tl < sizeof(text) - 1; i++)
		text[tl++] = (line[i] < 0x20 || line[i] > 0x7e) ? '?' : line[i];
	text[tl] = '\0';
	if (tl == 0)
		snprintf(reply, sizeof(reply), "%s", POP3_AUTHFAILED);
	else if (text[0] == '[')
		snprintf(reply, sizeof(reply), "-ERR %s", text);
	else
		snprintf(reply, sizeof(reply), "-ERR [AUTH] %s", text);
	snprintf(why, sizeof(why), "backend rejected the login: %s", text);
	char login[LOG_QUOTE_SIZE(128)];
	session_log(s, LOG_INFO, "login \"%s\" on %s: %s", log_quote(login, sizeof(login), st->l.login),
		    s->backend_addr, why);
	/* RFC 3206: these say "not now", not "wrong password". */
	bool temporary = login_prefix(text, tl, "[SYS/TEMP]") || login_prefix(text, tl, "[IN-USE]") ||
			 login_prefix(text, tl, "[LOGIN-DELAY]");
	/* A mailstore that says "not now" holds the mailbox: keep its route. */
	if (!temporary)
		login_route_rejected(s);
	login_audit(s, temporary ? "tempfail" : "fail", why);
	if (temporary)
		login_failed(s, reply, true);
	else
		login_rejected(s, reply);
}

/* One complete line from the backend, without CRLF (n), linelen with it. */
void pop3__backend_line(struct session *s, const char *line, size_t n, size_t linelen)
{
	struct pop3_state *st = pop3__st(s);

	if (n == 0) {
		login_backend_tempfail(s, "backend sent an empty line during login");
		return;
	}
	switch (st->bk_step) {
	case POP3_BK_GREETING:
		if (!login_prefix(line, n, "+OK")) {
			login_backend_tempfail(s, "backend refused the connection or sent an invalid greeting");
			return;
		}
		pop3__bk_advance(s);
		return;
	case POP3_BK_CLIENT_IP:
		/* +OK, or -ERR from a backend that does not know the command or
		   does not trust us: either way the login goes on. */
		pop3__bk_advance(s);
		return;
	case POP3_BK_USER:
	case POP3_BK_AUTH_CONT:
	case POP3_BK_LOGIN:
		break;
	}
	if (login_prefix(line, n, "-ERR")) {
		pop3__bk_rejected(s, line, n);
		return;
	}
	if (line[0] == '+' && (n == 1 || line[1] == ' ')) {
		if (st->bk_step == POP3_BK_AUTH_CONT) {
			pop3__bk_advance(s);
			return;
		}
		/* Token failures come as a challenge with an error; the client
		   (us, here) answers and gets the -ERR: XOAUTH2 with an empty
		   line, OAUTHBEARER with a single ^A (RFC 7628 section 3.2.3). */
		if (st->bk_step == POP3_BK_LOGIN && !st->bk_xoauth2_error &&
		    (st->mech == POP3_MECH_XOAUTH2 || st->mech == POP3_MECH_OAUTHBEARER)) {
			st->bk_xoauth2_error = true;
			if (st->mech == POP3_MECH_OAUTHBEARER)
				login_backend_write_lit(s, "AQ==\r\n");
			else
				login_backend_write_lit(s, "\r\n");
			return;
		}
		login_backend_tempfail(s, "backend asked for a continuation we did not expect");
		return;
	}
	if (!login_prefix(line, n, "+OK") || st->bk_step == POP3_BK_AUTH_CONT) {
		login_backend_tempfail(s, "backend sent an invalid answer to the login");
		return;
	}
	if (st->bk_step == POP3_BK_USER) {
		pop3__bk_advance(s);
		return;
	}
	/* Logged in: the client gets the backend's +OK line. */
	login_succeeded(s, line, linelen, linelen);
}
