/*
 * pop3.c - the POP3 front end: greeting, the command loop, the commands
 * served before login (CAPA, NOOP, QUIT, STLS, USER/PASS; AUTH is in
 * pop3_sasl.c), and what happens when a login succeeds or fails.
 *
 * Commands are handled strictly in order (RFC 2449 PIPELINING). While a
 * login is in progress the session stops reading from the client; commands
 * pipelined behind the login stay in s->in and go to the backend only after
 * our own backend login has succeeded, or are handled here if it failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "login.h"
#include "conf.h"
#include "pop3.h"
#include "pop3_int.h"
#include "sasl.h"
#include "secret.h"

void pop3__reply(struct session *s, const char *line)
{
	session_writef(s, "%s\r\n", line);
}

/* ---- commands ---- */

bool pop3__bad(struct session *s, const char *line)
{
	if (!login_bad_command(s, "-ERR too many invalid commands\r\n"))
		return false;
	pop3__reply(s, line);
	return true;
}

/* A plain connection on a listener that requires STLS first. */
static bool pop3__cleartext_refused(struct session *s)
{
	return !s->tls_active && s->listener->starttls == CONF_STARTTLS_REQUIRED;
}

/* The capability list (RFC 2449), one write. */
static void pop3__capa(struct session *s)
{
	const struct conf *c = s->conf;
	char buf[4096];
	size_t n = 0;

	bool refused = pop3__cleartext_refused(s);

	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "+OK Capability list follows\r\n");
	for (int i = 0; i < c->pop3.ncaps && n < sizeof(buf); i++) {
		/* Where no login is taken before TLS, do not offer one (RFC 2595). */
		if (refused && strcasecmp(c->pop3.caps[i], "USER") == 0)
			continue;
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s\r\n", c->pop3.caps[i]);
	}
	if (session_starttls_available(s) && n < sizeof(buf))
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "STLS\r\n");
	if (c->pop3.sasl && !refused && n < sizeof(buf))
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "SASL%s%s%s%s\r\n",
				      c->pop3.sasl & CONF_SASL_PLAIN ? " PLAIN" : "",
				      c->pop3.sasl & CONF_SASL_LOGIN ? " LOGIN" : "",
				      c->pop3.sasl & CONF_SASL_XOAUTH2 ? " XOAUTH2" : "",
				      c->pop3.sasl & CONF_SASL_OAUTHBEARER ? " OAUTHBEARER" : "");
	if (n < sizeof(buf))
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, ".\r\n");
	session_write(s, buf, n < sizeof(buf) ? n : sizeof(buf) - 1);
}

/*
 * STLS (RFC 2595 section 4): answer, and start the handshake once this line
 * is consumed (pop3__run), so nothing pipelined behind STLS crosses into
 * TLS.
 */
static bool pop3__stls(struct session *s, const struct pop3_cmd *cmd)
{
	if (cmd->nargs != 0)
		return pop3__bad(s, "-ERR Syntax error: STLS takes no arguments");
	if (s->tls_active)
		return pop3__bad(s, "-ERR TLS is already active");
	if (!session_starttls_available(s)) {
		pop3__reply(s, "-ERR STLS not available on this port");
		return true;
	}
	pop3__reply(s, "+OK Begin TLS negotiation now");
	pop3__st(s)->stls_now = true;
	return false;
}

static void pop3__user(struct session *s, const struct pop3_cmd *cmd)
{
	struct pop3_state *st = pop3__st(s);
	const struct pop3_span *a = &cmd->args[0];

	/* A name that does not fit is refused at PASS, with an audit line. */
	st->user_too_long = !sasl_take(st->l.login, s->conf->limits.max_login + 1, s->in + a->off, a->len);
	if (st->user_too_long)
		st->l.login[0] = '\0';
	st->have_user = true;
	pop3__reply(s, "+OK");
}

static void pop3__pass(struct session *s, const struct pop3_cmd *cmd)
{
	struct pop3_state *st = pop3__st(s);
	const struct pop3_span *a = &cmd->args[0];

	st->mech = POP3_MECH_USER;
	st->have_user = false;
	st->l.authz[0] = '\0';
	if (st->user_too_long) {
		login_fail_early(s, "login name too long");
		return;
	}
	if (!sasl_take(st->l.password, st->l.password_cap, s->in + a->off, a->len)) {
		login_fail_early(s, "password too long");
		return;
	}
	st->l.password_len = a->len;
	login_begin(s);
}

/* Handle one parsed line. Returns false when the session is ending. */
static bool pop3__command(struct session *s, const struct pop3_cmd *cmd)
{
	struct pop3_state *st = pop3__st(s);

	if (st->auth != POP3_AUTH_NONE)
		return pop3__sasl_line(s, cmd);
	if (cmd->error != POP3_OK)
		return pop3__bad(s, "-ERR invalid command");
	if ((cmd->kind == POP3_CMD_USER || cmd->kind == POP3_CMD_PASS || cmd->kind == POP3_CMD_AUTH) &&
	    pop3__cleartext_refused(s))
		return pop3__bad(s, "-ERR [AUTH] Cleartext logins are disabled here: use STLS first");
	switch (cmd->kind) {
	case POP3_CMD_USER:
		if (cmd->nargs != 1)
			return pop3__bad(s, "-ERR Syntax error: USER name");
		pop3__user(s, cmd);
		return true;
	case POP3_CMD_PASS:
		if (!st->have_user)
			return pop3__bad(s, "-ERR No user name given: send USER first");
		if (cmd->nargs != 1)
			return pop3__bad(s, "-ERR Syntax error: PASS password");
		pop3__pass(s, cmd);
		return true;
	case POP3_CMD_AUTH:
		return pop3__auth(s, cmd);
	case POP3_CMD_CAPA:
		if (cmd->nargs != 0)
			return pop3__bad(s, "-ERR Syntax error: CAPA takes no arguments");
		pop3__capa(s);
		return true;
	case POP3_CMD_STLS:
		return pop3__stls(s, cmd);
	case POP3_CMD_NOOP:
		if (cmd->nargs != 0)
			return pop3__bad(s, "-ERR Syntax error: NOOP takes no arguments");
		pop3__reply(s, "+OK");
		return true;
	case POP3_CMD_QUIT:
		pop3__reply(s, "+OK Logging out");
		session_finish(s, "quit");
		return false;
	case POP3_CMD_SASL:
	case POP3_CMD_OTHER:
	default:
		return pop3__bad(s, "-ERR invalid command");
	}
}

/* login_ops.run: handle as many complete lines from s->in as the phase
   allows. */
static void pop3__run(struct session *s)
{
	struct pop3_state *st = pop3__st(s);
	struct pop3_cmd cmd;

	while (!s->closed && !s->finishing && s->phase == SESSION_PREAUTH &&
	       !session_client_blocked(s)) {
		int r = pop3_parse(&st->parser, s->in, s->in_len, &cmd);
		if (r == 0)
			return;
		if (r < 0) {
			pop3__reply(s, "-ERR line too long");
			session_finish(s, "line too long");
			return;
		}
		bool go_on = pop3__command(s, &cmd);
		/* Any line may hold a credential (PASS, AUTH, a SASL response). */
		secret_wipe(s->in, (size_t)r);
		session_consume(s, (size_t)r);
		if (st->stls_now) {
			/* Whatever followed STLS is dropped unanswered. */
			st->stls_now = false;
			session_starttls(s);
			return;
		}
		if (!go_on)
			return;
		login_command_done(s);
	}
}

/* ---- login_ops ---- */

/* One answer per command: the last failure is answered with the reason the
   connection ends. */
static void pop3__failed(struct session *s, const char *reply_line, bool last)
{
	struct pop3_state *st = pop3__st(s);

	st->auth = POP3_AUTH_NONE;
	st->have_user = false; /* a new attempt starts with USER again */
	st->user_too_long = false;
	pop3__reply(s, last ? "-ERR [AUTH] Too many login failures" : reply_line);
}

static void pop3__throttled(struct session *s, const char *msg)
{
	session_writef(s, "-ERR %.250s\r\n", msg);
}

/* The backend's own +OK, as it sent it. */
static void pop3__succeeded(struct session *s, const uint8_t *line, size_t n)
{
	session_write(s, line, n);
}

static const struct login_ops pop3__login_ops = {
	.protocol = "pop3",
	.protocol_tls = "pop3ssl",
	.state_size = sizeof(struct pop3_state),
	.authfailed = POP3_AUTHFAILED,
	.unavailable = POP3_UNAVAILABLE,
	.idle_bye = "-ERR Disconnected for inactivity\r\n",
	.run = pop3__run,
	.failed = pop3__failed,
	.throttled = pop3__throttled,
	.succeeded = pop3__succeeded,
	.backend_start = pop3__backend_start,
	.backend_line = pop3__backend_line,
};

/* ---- session_proto ---- */

static int pop3__start(struct session *s)
{
	const struct conf *c = s->conf;
	struct pop3_state *st = (struct pop3_state *)login_start(s, &pop3__login_ops);

	if (st == NULL)
		return -1;
	pop3_parser_init(&st->parser, &(struct pop3_limits){
		.max_command = POP3_MAX_COMMAND,
		.max_sasl = c->limits.max_line,
	});
	session_writef(s, "+OK %s\r\n", c->pop3.greeting);
	return 0;
}

/* After STLS: a fresh start inside TLS; nothing learnt before counts. */
static void pop3__tls_started(struct session *s)
{
	struct pop3_state *st = pop3__st(s);

	pop3_parser_init(&st->parser, &st->parser.lim);
	st->have_user = false;
	st->user_too_long = false;
	st->auth = POP3_AUTH_NONE;
	login_wipe_credentials(&st->l);
	session_client_reading(s, true);
	login_process(s);
}

const struct session_proto pop3_proto = {
	.name = "pop3",
	.busy_line = "-ERR [SYS/TEMP] Too many connections, try again later\r\n",
	.throttle_key = 'p',
	.deny_prefix = "-ERR ",
	.start = pop3__start,
	.tls_started = pop3__tls_started,
	LOGIN_SESSION_CALLBACKS,
};
