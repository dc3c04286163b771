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

static void pop3__process(struct session *s);
static void pop3__run(struct session *s, struct pop3_state *st);

static struct pop3_state *pop3__st(struct session *s)
{
	return s->proto_state;
}

void pop3__reply(struct session *s, const char *line)
{
	session_writef(s, "%s\r\n", line);
}

void pop3__wipe_secrets(struct pop3_state *st)
{
	if (st->password)
		secret_wipe(st->password, st->password_cap);
	st->password_len = 0;
	if (st->xoauth2) {
		secret_wipe(st->xoauth2, st->xoauth2_cap);
		free(st->xoauth2);
		st->xoauth2 = NULL;
	}
	st->xoauth2_cap = 0;
	st->xoauth2_len = 0;
}

void pop3_wipe_credentials(struct pop3_state *st)
{
	pop3__wipe_secrets(st);
	if (st->login)
		st->login[0] = '\0';
	if (st->authz)
		st->authz[0] = '\0';
}

void pop3_audit(struct session *s, const char *result, const char *reason)
{
	struct pop3_state *st = pop3__st(s);

	login_audit(s, st->login, st->authz, &st->route, st->login_start_ms, result, reason);
}

/* ---- login outcome ---- */

void pop3_login_failed(struct session *s, const char *reply_line, bool counted)
{
	struct pop3_state *st = pop3__st(s);

	pop3_wipe_credentials(st);
	memset(&st->route, 0, sizeof(st->route));
	st->auth = POP3_AUTH_NONE;
	st->have_user = false; /* a new attempt starts with USER again */
	st->user_too_long = false;
	session_close_backend(s);
	/* One answer per command: the last failure is answered with the reason
	   the connection ends. */
	if (counted && ++st->login_failures >= s->conf->limits.max_login_failures) {
		pop3__reply(s, "-ERR [AUTH] Too many login failures");
		session_finish(s, "too many login failures");
		return;
	}
	pop3__reply(s, reply_line);
	session_set_phase(s, SESSION_PREAUTH);
	session_client_reading(s, true);
	pop3__process(s);
}

void pop3_login_rejected(struct session *s, const char *reply_line)
{
	struct pop3_state *st = pop3__st(s);
	double delay = login_failure_delay(s, 0);

	if (delay <= 0) {
		pop3_login_failed(s, reply_line, true);
		return;
	}
	/* Zimbra's zimbraReverseProxyAuthWaitInterval: every guess costs the
	   guesser the delay, not the worker (the timer answers). */
	snprintf(st->fail_reply, sizeof(st->fail_reply), "%s", reply_line);
	pop3_wipe_credentials(st);
	session_close_backend(s);
	session_set_phase(s, SESSION_AUTH_WAIT);
	session_delay(s, delay);
}

void pop3_login_throttled(struct session *s, const char *msg)
{
	struct pop3_state *st = pop3__st(s);
	char line[256];

	pop3_wipe_credentials(st);
	session_close_backend(s);
	snprintf(line, sizeof(line), "-ERR %s", msg);
	pop3__reply(s, line);
	session_finish(s, "throttled");
}

static void pop3__login_done(struct session *s, const char *line, size_t len);

/* The user's login was counted: over the limit, it is refused after all. */
static void pop3__login_counted(struct session *s, bool allowed)
{
	struct pop3_state *st = pop3__st(s);
	char *line = st->held_ok;
	size_t len = st->held_ok_len;

	st->held_ok = NULL;
	st->held_ok_len = 0;
	if (allowed) {
		pop3__login_done(s, line, len);
	} else {
		pop3_audit(s, "throttled", s->conf->throttle.user_message);
		pop3_login_throttled(s, s->conf->throttle.user_message);
	}
	free(line);
}

void pop3_login_succeeded(struct session *s, const char *line, size_t len)
{
	struct pop3_state *st = pop3__st(s);

	if ((st->held_ok = malloc(len ? len : 1)) == NULL) {
		session_close(s, "out of memory");
		return;
	}
	memcpy(st->held_ok, line, len);
	st->held_ok_len = len;
	if (session_count_login(s, st->route.user, pop3__login_counted))
		return;
	pop3__login_counted(s, true);
}

static void pop3__login_done(struct session *s, const char *line, size_t len)
{
	struct pop3_state *st = pop3__st(s);

	pop3_audit(s, "ok", NULL);
	char login[LOG_QUOTE_SIZE(128)], user[LOG_QUOTE_SIZE(128)];
	session_log(s, LOG_INFO, "login \"%s\" as \"%s\" on %s",
		    log_quote(login, sizeof(login), st->authz[0] ? st->authz : st->login),
		    log_quote(user, sizeof(user), st->route.user), s->backend_addr);
	/* The backend's own +OK, as it sent it. */
	session_write(s, line, len);
	pop3_wipe_credentials(st);
	session_start_relay(s);
}

void pop3__fail_early(struct session *s, const char *why)
{
	struct pop3_state *st = pop3__st(s);

	st->login_attempts++;
	st->login_start_ms = session_now(s);
	pop3_audit(s, "fail", why);
	pop3_login_failed(s, POP3_AUTHFAILED, true);
}

/* The route query for the login in progress. */
static void pop3__query(struct session *s, struct route_query *q, bool bypass_cache)
{
	struct pop3_state *st = pop3__st(s);

	*q = (struct route_query){
		.login = st->authz[0] ? st->authz : st->login,
		.password = st->mech == POP3_MECH_XOAUTH2 || st->mech == POP3_MECH_OAUTHBEARER
			    ? NULL : st->password,
		.protocol = s->conf->upstream.tls ? "pop3ssl" : "pop3",
		.client_ip = s->client_ip,
		.proxy_ip = s->local_ip,
		.attempt = st->login_attempts,
		.bypass_cache = bypass_cache,
	};
}

/* The backend of st->route could not be reached: see login_route_unreachable. */
bool pop3_route_unreachable(struct session *s, const char *why)
{
	struct pop3_state *st = pop3__st(s);
	struct route_query q;

	pop3__query(s, &q, login_route_retry(&st->route, st->route_retried));
	return login_route_unreachable(s, &q, &st->route, &st->route_retried, why);
}

void pop3_route_rejected(struct session *s)
{
	struct pop3_state *st = pop3__st(s);
	struct route_query q;

	pop3__query(s, &q, false);
	session_route_invalidate(s, &q, &st->route);
}

void pop3__begin_login(struct session *s)
{
	struct pop3_state *st = pop3__st(s);
	const char *who = st->authz[0] ? st->authz : st->login;
	struct route_query q;

	st->login_attempts++;
	st->login_start_ms = session_now(s);
	st->have_user = false;
	memset(&st->route, 0, sizeof(st->route));
	if (!route_name_valid(who, strlen(who), s->conf->limits.max_login)) {
		pop3_audit(s, "fail", "invalid login name");
		pop3_login_failed(s, POP3_AUTHFAILED, true);
		return;
	}
	/* With an authzid the authcid is not looked up, but it is logged and
	   sent: the same rules (no control bytes, no spaces; review 4). */
	if (who != st->login && !route_name_valid(st->login, strlen(st->login), s->conf->limits.max_login)) {
		pop3_audit(s, "fail", "invalid authentication name");
		pop3_login_failed(s, POP3_AUTHFAILED, true);
		return;
	}
	session_client_reading(s, false);
	st->route_retried = false;
	pop3__query(s, &q, false);
	session_resolve(s, &q);
}

static const struct login_ops pop3__login_ops = {
	.audit = pop3_audit,
	.failed = pop3_login_failed,
	.throttled = pop3_login_throttled,
	.authfailed = POP3_AUTHFAILED,
	.unavailable = POP3_UNAVAILABLE,
};

static void pop3_route_done(struct session *s, const struct route *r)
{
	login_route_done(s, r, &pop3__st(s)->route, &pop3__login_ops);
}

/* ---- commands ---- */

bool pop3__bad(struct session *s, const char *line)
{
	struct pop3_state *st = pop3__st(s);

	if (++st->bad_commands >= s->conf->limits.max_bad_commands) {
		pop3__reply(s, "-ERR too many invalid commands");
		session_finish(s, "too many invalid commands");
		return false;
	}
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
	st->user_too_long = !sasl_take(st->login, s->conf->limits.max_login + 1, s->in + a->off, a->len);
	if (st->user_too_long)
		st->login[0] = '\0';
	st->have_user = true;
	pop3__reply(s, "+OK");
}

static void pop3__pass(struct session *s, const struct pop3_cmd *cmd)
{
	struct pop3_state *st = pop3__st(s);
	const struct pop3_span *a = &cmd->args[0];

	st->mech = POP3_MECH_USER;
	st->authz[0] = '\0';
	if (st->user_too_long) {
		pop3__fail_early(s, "login name too long");
		return;
	}
	if (!sasl_take(st->password, st->password_cap, s->in + a->off, a->len)) {
		pop3__fail_early(s, "password too long");
		return;
	}
	st->password_len = a->len;
	pop3__begin_login(s);
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

/* Handle as many complete lines from s->in as the phase allows. */
static void pop3__process(struct session *s)
{
	struct pop3_state *st = pop3__st(s);

	if (s->closed)
		return;
	/* A login that fails at once (bad name) calls back in here from inside
	   the loop, before its line is consumed: let the running loop carry on
	   instead. */
	if (st->processing)
		return;
	st->processing = true;
	pop3__run(s, st);
	st->processing = false;
}

static void pop3__run(struct session *s, struct pop3_state *st)
{
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
		if (s->phase == SESSION_PREAUTH && !s->closed && !s->finishing)
			session_set_phase(s, SESSION_PREAUTH); /* a command: re-arm the idle timer */
	}
}

/* ---- session_proto ---- */

static int pop3_start(struct session *s)
{
	const struct conf *c = s->conf;
	struct pop3_state *st = calloc(1, sizeof(*st));

	if (st == NULL)
		return -1;
	st->login = malloc(c->limits.max_login + 1);
	st->authz = malloc(c->limits.max_login + 1);
	st->password = malloc(c->limits.max_password + 1);
	st->password_cap = st->password ? c->limits.max_password + 1 : 0;
	s->proto_state = st;
	if (!st->login || !st->authz || !st->password)
		return -1;
	st->login[0] = st->authz[0] = st->password[0] = '\0';
	pop3_parser_init(&st->parser, &(struct pop3_limits){
		.max_command = POP3_MAX_COMMAND,
		.max_sasl = c->limits.max_line,
	});
	session_writef(s, "+OK %s\r\n", c->pop3.greeting);
	return 0;
}

/* After STLS: a fresh start inside TLS; nothing learnt before counts. */
static void pop3_tls_started(struct session *s)
{
	struct pop3_state *st = pop3__st(s);

	pop3_parser_init(&st->parser, &st->parser.lim);
	st->have_user = false;
	st->user_too_long = false;
	st->auth = POP3_AUTH_NONE;
	pop3_wipe_credentials(st);
	session_client_reading(s, true);
	pop3__process(s);
}

static void pop3_client_data(struct session *s)
{
	pop3__process(s);
}

static void pop3_client_eof(struct session *s, int status)
{
	session_close(s, status == UV_EOF ? "client closed" : "client connection error");
}

static void pop3_timeout(struct session *s)
{
	switch (s->phase) {
	case SESSION_AUTH_WAIT: {
		struct pop3_state *st = pop3__st(s);
		char reply[sizeof(st->fail_reply)];
		snprintf(reply, sizeof(reply), "%s", st->fail_reply[0] ? st->fail_reply : POP3_AUTHFAILED);
		st->fail_reply[0] = '\0';
		pop3_login_failed(s, reply, true);
		return;
	}
	case SESSION_BACKEND_LOGIN:
		pop3_backend_timeout(s);
		return;
	case SESSION_PREAUTH:
	default:
		pop3__reply(s, "-ERR Disconnected for inactivity");
		session_finish(s, "pre-auth timeout");
		return;
	}
}

static void pop3_destroy(struct session *s)
{
	struct pop3_state *st = pop3__st(s);

	if (st == NULL)
		return;
	pop3_wipe_credentials(st);
	free(st->held_ok);
	free(st->login);
	free(st->authz);
	free(st->password);
	secret_wipe(st, sizeof(*st));
	free(st);
	s->proto_state = NULL;
}

const struct session_proto pop3_proto = {
	.name = "pop3",
	.busy_line = "-ERR [SYS/TEMP] Too many connections, try again later\r\n",
	.throttle_key = 'p',
	.deny_prefix = "-ERR ",
	.start = pop3_start,
	.client_data = pop3_client_data,
	.client_eof = pop3_client_eof,
	.route_done = pop3_route_done,
	.backend_connected = pop3_backend_connected,
	.backend_data = pop3_backend_data,
	.backend_eof = pop3_backend_eof,
	.timeout = pop3_timeout,
	.tls_started = pop3_tls_started,
	.destroy = pop3_destroy,
};
