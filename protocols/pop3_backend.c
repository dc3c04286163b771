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

static struct pop3_state *bk__st(struct session *s)
{
	return s->proto_state;
}

/* Give up on this backend: the client gets a temporary failure. */
static void bk__tempfail(struct session *s, const char *why)
{
	session_log(s, LOG_WARN, "backend %s: %s", s->backend_addr, why);
	pop3_audit(s, "tempfail", why);
	session_close_backend(s);
	pop3_login_failed(s, POP3_UNAVAILABLE, true);
}

void pop3_backend_eof(struct session *s, int status)
{
	char why[128];

	snprintf(why, sizeof(why), "backend %s closed during login: %s", s->backend_addr,
		 uv_strerror(status));
	pop3_audit(s, "tempfail", why);
	pop3_login_failed(s, POP3_UNAVAILABLE, true);
}

void pop3_backend_timeout(struct session *s)
{
	char why[128];

	snprintf(why, sizeof(why), "no login answer within %.1f s", s->conf->limits.backend_timeout);
	bk__tempfail(s, why);
}

/* USER and PASS carry the name and password as bare text up to CRLF. */
static bool bk__line_safe(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0')
			return false;
	return true;
}

void pop3_backend_connected(struct session *s, int status)
{
	struct pop3_state *st = bk__st(s);
	const struct conf *c = s->conf;

	if (status < 0) {
		char why[128];
		snprintf(why, sizeof(why), "backend %s: %s", s->backend_addr, uv_strerror(status));
		if (pop3_route_unreachable(s, why))
			return;
		pop3_audit(s, "tempfail", why);
		pop3_login_failed(s, POP3_UNAVAILABLE, true);
		return;
	}
	st->bk_step = POP3_BK_GREETING;
	st->bk_xoauth2_error = false;
	/* USER/PASS unless the login needs SASL: an XOAUTH2 or OAUTHBEARER
	   token, an authzid, the configuration, or a password USER/PASS cannot
	   carry. */
	st->bk_auth = st->mech == POP3_MECH_XOAUTH2 || st->mech == POP3_MECH_OAUTHBEARER ||
		      st->authz[0] || c->pop3.backend_auth == CONF_POP3_BACKEND_AUTH_PLAIN ||
		      !bk__line_safe(st->password, st->password_len);
	st->bk_ir = false;
}

/* Room for every command bk__append may write at once. */
static size_t bk__room(const struct pop3_state *st)
{
	return 256 + 2 * ROUTE_MAX_USER + st->password_len + st->xoauth2_len +
	       SASL_B64_ENCODED_SIZE(2 * ROUTE_MAX_USER + st->password_len + 2);
}

/* The SASL response for the backend: base64, no CRLF. */
static size_t bk__sasl_response(struct session *s, char *out)
{
	struct pop3_state *st = bk__st(s);

	if (st->mech == POP3_MECH_XOAUTH2 || st->mech == POP3_MECH_OAUTHBEARER) {
		memcpy(out, st->xoauth2, st->xoauth2_len);
		return st->xoauth2_len;
	}
	/* With an authzid the client logs in as someone else (a master user):
	   that someone is the route's user, the credentials stay the client's.
	   The client's Zimbra tag (/tb, /wm, /ni) goes back on, as Zimbra's
	   proxy sends it. */
	char ub[ROUTE_MAX_USER];
	const char *up = login_upstream_user(&st->route, "pop3",
					     st->authz[0] ? st->authz : st->login, ub);
	const char *authz = st->authz[0] ? up : "";
	const char *user = st->authz[0] ? st->login : up;
	return sasl_plain_encode(authz, strlen(authz), user, strlen(user), st->password,
				 st->password_len, out);
}

/*
 * Append the login's first command at out: "USER u" (and, pipelined,
 * "PASS p" behind it), or "AUTH MECH [initial-response]". Returns the
 * length and the step that answers it; *done_out: every credential is in.
 */
static size_t bk__login_cmds(struct session *s, char *out, bool pipelined,
			     enum pop3_backend_step *step_out, bool *done_out)
{
	struct pop3_state *st = bk__st(s);
	const char *mech = st->mech == POP3_MECH_XOAUTH2       ? "XOAUTH2"
			   : st->mech == POP3_MECH_OAUTHBEARER ? "OAUTHBEARER"
							       : "PLAIN";
	size_t n = 0;

	if (!st->bk_auth) {
		char ub[ROUTE_MAX_USER];
		n += (size_t)sprintf(out, "USER %s\r\n",
				     login_upstream_user(&st->route, "pop3", st->login, ub));
		*step_out = POP3_BK_USER;
		*done_out = pipelined;
		if (pipelined) {
			n += (size_t)sprintf(out + n, "PASS ");
			memcpy(out + n, st->password, st->password_len);
			n += st->password_len;
			out[n++] = '\r';
			out[n++] = '\n';
		}
		return n;
	}
	n += (size_t)sprintf(out, "AUTH %s ", mech);
	size_t rl = bk__sasl_response(s, out + n);
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
static void bk__send(struct session *s, char *buf, size_t n, size_t cap, bool done)
{
	struct pop3_state *st = bk__st(s);

	session_backend_write(s, buf, n, true);
	secret_wipe(buf, cap);
	free(buf);
	/* A failed write has ended this attempt (and the client's pipelined
	   commands may have begun the next one): its credentials are not ours. */
	if (s->backend == NULL || s->phase != SESSION_BACKEND_LOGIN)
		return;
	if (done)
		pop3__wipe_secrets(st);
}

/* The step that answers the login's first command (see bk__login_cmds). */
static enum pop3_backend_step bk__login_step(const struct pop3_state *st)
{
	if (!st->bk_auth)
		return POP3_BK_USER;
	return st->bk_ir ? POP3_BK_LOGIN : POP3_BK_AUTH_CONT;
}

/* "XOIP ip" or "XCLIENT ADDR=ip PORT=port", or nothing. */
static size_t bk__client_ip_cmd(struct session *s, char *out)
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
static void bk__advance(struct session *s)
{
	struct pop3_state *st = bk__st(s);
	bool pipelined = s->conf->pop3.backend_pipelining, done = false;
	enum pop3_backend_step next = st->bk_step, ignored;
	size_t cap = bk__room(st), n = 0;
	char *buf = malloc(cap);

	if (buf == NULL) {
		session_close(s, "out of memory");
		return;
	}
	switch (st->bk_step) {
	case POP3_BK_GREETING:
		n = bk__client_ip_cmd(s, buf);
		if (n == 0) {
			n = bk__login_cmds(s, buf, pipelined, &next, &done);
			break;
		}
		next = POP3_BK_CLIENT_IP;
		if (pipelined)
			n += bk__login_cmds(s, buf + n, true, &ignored, &done);
		break;
	case POP3_BK_CLIENT_IP:
		if (pipelined)
			next = bk__login_step(st); /* already sent */
		else
			n = bk__login_cmds(s, buf, false, &next, &done);
		break;
	case POP3_BK_USER:
		next = POP3_BK_LOGIN;
		if (pipelined)
			break; /* PASS went with USER */
		n = (size_t)sprintf(buf, "PASS ");
		memcpy(buf + n, st->password, st->password_len);
		n += st->password_len;
		buf[n++] = '\r';
		buf[n++] = '\n';
		done = true;
		break;
	case POP3_BK_AUTH_CONT:
		n = bk__sasl_response(s, buf);
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
	bk__send(s, buf, n, cap, done);
}

static bool bk__prefix(const char *line, size_t n, const char *prefix)
{
	size_t l = strlen(prefix);
	return n >= l && strncasecmp(line, prefix, l) == 0;
}

/* The backend refused the login: relay its -ERR, with [AUTH] if it gave no
   response code, and let the client try again. */
static void bk__rejected(struct session *s, const char *line, size_t n)
{
	struct pop3_state *st = bk__st(s);
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
	session_log(s, LOG_INFO, "login \"%s\" on %s: %s", log_quote(login, sizeof(login), st->login),
		    s->backend_addr, why);
	/* RFC 3206: these say "not now", not "wrong password". */
	bool temporary = bk__prefix(text, tl, "[SYS/TEMP]") || bk__prefix(text, tl, "[IN-USE]") ||
			 bk__prefix(text, tl, "[LOGIN-DELAY]");
	/* A mailstore that says "not now" holds the mailbox: keep its route. */
	if (!temporary)
		pop3_route_rejected(s);
	pop3_audit(s, temporary ? "tempfail" : "fail", why);
	if (temporary)
		pop3_login_failed(s, reply, true);
	else
		pop3_login_rejected(s, reply);
}

/* One complete line from the backend, without CRLF (n), linelen with it. */
static void bk__line(struct session *s, const char *line, size_t n, size_t linelen)
{
	struct pop3_state *st = bk__st(s);

	switch (st->bk_step) {
	case POP3_BK_GREETING:
		if (!bk__prefix(line, n, "+OK")) {
			bk__tempfail(s, "backend refused the connection or sent an invalid greeting");
			return;
		}
		bk__advance(s);
		return;
	case POP3_BK_CLIENT_IP:
		/* +OK, or -ERR from a backend that does not know the command or
		   does not trust us: either way the login goes on. */
		bk__advance(s);
		return;
	case POP3_BK_USER:
	case POP3_BK_AUTH_CONT:
	case POP3_BK_LOGIN:
		break;
	}
	if (bk__prefix(line, n, "-ERR")) {
		bk__rejected(s, line, n);
		return;
	}
	if (line[0] == '+' && (n == 1 || line[1] == ' ')) {
		if (st->bk_step == POP3_BK_AUTH_CONT) {
			bk__advance(s);
			return;
		}
		/* Token failures come as a challenge with an error; the client
		   (us, here) answers and gets the -ERR: XOAUTH2 with an empty
		   line, OAUTHBEARER with a single ^A (RFC 7628 section 3.2.3). */
		if (st->bk_step == POP3_BK_LOGIN && !st->bk_xoauth2_error &&
		    (st->mech == POP3_MECH_XOAUTH2 || st->mech == POP3_MECH_OAUTHBEARER)) {
			st->bk_xoauth2_error = true;
			if (st->mech == POP3_MECH_OAUTHBEARER)
				session_backend_write(s, "AQ==\r\n", 6, false);
			else
				session_backend_write(s, "\r\n", 2, false);
			return;
		}
		bk__tempfail(s, "backend asked for a continuation we did not expect");
		return;
	}
	if (!bk__prefix(line, n, "+OK") || st->bk_step == POP3_BK_AUTH_CONT) {
		bk__tempfail(s, "backend sent an invalid answer to the login");
		return;
	}
	if (st->bk_step == POP3_BK_USER) {
		bk__advance(s);
		return;
	}
	/* Logged in. Keep the line until it is written: it is at the head of s->bin. */
	char *copy = malloc(linelen);
	if (copy == NULL) {
		session_close(s, "out of memory");
		return;
	}
	memcpy(copy, line, linelen);
	session_backend_consume(s, linelen);
	pop3_login_succeeded(s, copy, linelen);
	free(copy);
}

void pop3_backend_data(struct session *s)
{
	struct pop3_state *st = bk__st(s);

	while (s->backend && s->phase == SESSION_BACKEND_LOGIN && st == s->proto_state) {
		const char *buf = (const char *)s->bin;
		const char *lf = memchr(buf, '\n', s->bin_len);
		if (lf == NULL) {
			if (s->bin_len == s->bin_cap)
				bk__tempfail(s, "backend sent an over-long line during login");
			return;
		}
		size_t linelen = (size_t)(lf - buf) + 1;
		size_t n = linelen - 1;
		if (n > 0 && buf[n - 1] == '\r')
			n--;
		if (n == 0 || memchr(buf, '\0', n)) {
			bk__tempfail(s, "backend sent an empty line or a NUL byte during login");
			return;
		}
		bk__line(s, buf, n, linelen);
		/* On success the relay took over and s->bin is gone. */
		if (s->bin == NULL || s->phase != SESSION_BACKEND_LOGIN || s->backend == NULL)
			return;
		session_backend_consume(s, linelen);
	}
}
