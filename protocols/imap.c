/*
 * imap.c - the IMAP front end: greeting, the commands served before login,
 * LOGIN and AUTHENTICATE PLAIN/LOGIN (with SASL-IR), and what happens when a
 * login fails.
 *
 * Commands are handled strictly in order. While a login is in progress the
 * session stops reading from the client; commands pipelined behind the
 * login stay in s->in and go to the backend only after our own backend
 * login has succeeded, or are handled here if it failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit.h"
#include "login.h"
#include "conf.h"
#include "imap.h"
#include "imap_int.h"
#include "sasl.h"
#include "secret.h"

#define IMAP_UNAVAILABLE "NO [UNAVAILABLE] Service temporarily unavailable, try again later"
#define IMAP_AUTHFAILED "NO [AUTHENTICATIONFAILED] Authentication failed"

static void imap__process(struct session *s);
static void imap__run(struct session *s, struct imap_state *st);

static struct imap_state *imap__st(struct session *s)
{
	return s->proto_state;
}

/* "tag" from a span of s->in, for replies. */
static void imap__tagged(struct session *s, const struct imap_span *tag, const char *text)
{
	if (tag->len == 0)
		session_writef(s, "* %s\r\n", text);
	else
		session_writef(s, "%.*s %s\r\n", (int)tag->len, (const char *)s->in + tag->off, text);
}

/* A plain connection on a listener that requires STARTTLS first. */
static bool imap__cleartext_refused(struct session *s)
{
	return !s->tls_active && s->listener->starttls == CONF_STARTTLS_REQUIRED;
}

/* The capability list before login (AUTH= added by us, not configurable). */
static void imap__caps(struct session *s, char *out, size_t cap)
{
	const struct conf *c = s->conf;
	size_t n = 0;

	out[0] = '\0';
	for (int i = 0; i < c->imap.ncaps; i++)
		n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s", i ? " " : "",
				      c->imap.caps[i]);
	/* RFC 3501 6.2.1 / RFC 2595: no AUTH= where logins are refused. */
	const char *tail = imap__cleartext_refused(s) ? "STARTTLS LOGINDISABLED"
			   : session_starttls_available(s) ? "STARTTLS AUTH=PLAIN AUTH=LOGIN"
							    : "AUTH=PLAIN AUTH=LOGIN";
	if (n < cap)
		snprintf(out + n, cap - n, "%s%s", n ? " " : "", tail);
}

void imap_wipe_credentials(struct imap_state *st)
{
	if (st->password)
		secret_wipe(st->password, st->password_cap);
	st->password_len = 0;
	if (st->login)
		st->login[0] = '\0';
	if (st->authz)
		st->authz[0] = '\0';
}

void imap_audit(struct session *s, const char *result, const char *reason)
{
	struct imap_state *st = imap__st(s);

	login_audit(s, st->login, st->authz, &st->route, st->login_start_ms, result, reason);
}

/* ---- login outcome ---- */

void imap_login_failed(struct session *s, const char *reply_line, bool counted)
{
	struct imap_state *st = imap__st(s);

	imap_wipe_credentials(st);
	memset(&st->route, 0, sizeof(st->route));
	st->auth = IMAP_AUTH_NONE;
	session_close_backend(s);
	session_writef(s, "%s %s\r\n", st->tag, reply_line);
	if (counted && ++st->login_failures >= s->conf->limits.max_login_failures) {
		session_write(s, "* BYE Too many login failures\r\n", 31);
		session_finish(s, "too many login failures");
		return;
	}
	session_set_phase(s, SESSION_PREAUTH);
	session_client_reading(s, true);
	/* Commands pipelined behind the login wait in s->in. */
	imap__process(s);
}

void imap_login_rejected(struct session *s, const char *reply_line)
{
	struct imap_state *st = imap__st(s);
	double delay = login_failure_delay(s, 0);

	if (delay <= 0) {
		imap_login_failed(s, reply_line, true);
		return;
	}
	/* Zimbra's zimbraReverseProxyAuthWaitInterval: every guess costs the
	   guesser the delay, not the worker (the timer answers). */
	snprintf(st->fail_reply, sizeof(st->fail_reply), "%s", reply_line);
	imap_wipe_credentials(st);
	session_close_backend(s);
	session_set_phase(s, SESSION_AUTH_WAIT);
	session_delay(s, delay);
}

void imap_login_throttled(struct session *s, const char *msg)
{
	struct imap_state *st = imap__st(s);

	imap_wipe_credentials(st);
	session_close_backend(s);
	/* Zimbra's answer: the BYE, then the command's own NO. */
	session_writef(s, "* BYE %s\r\n%s NO %s failed\r\n", msg, st->tag,
		       st->authenticate ? "AUTHENTICATE" : "LOGIN");
	session_finish(s, "throttled");
}

static void imap__login_done(struct session *s, const uint8_t *rest, size_t rest_len);

/* The user's login was counted: over the limit, it is refused after all. */
static void imap__login_counted(struct session *s, bool allowed)
{
	struct imap_state *st = imap__st(s);
	uint8_t *rest = st->held_ok;
	size_t len = st->held_ok_len;

	st->held_ok = NULL;
	st->held_ok_len = 0;
	if (allowed) {
		imap__login_done(s, rest, len);
	} else {
		imap_audit(s, "throttled", s->conf->throttle.user_message);
		imap_login_throttled(s, s->conf->throttle.user_message);
	}
	free(rest);
}

void imap_login_succeeded(struct session *s, const uint8_t *rest, size_t rest_len)
{
	struct imap_state *st = imap__st(s);

	if ((st->held_ok = malloc(rest_len ? rest_len : 1)) == NULL) {
		session_close(s, "out of memory");
		return;
	}
	memcpy(st->held_ok, rest, rest_len);
	st->held_ok_len = rest_len;
	if (session_count_login(s, st->route.user, imap__login_counted))
		return;
	imap__login_counted(s, true);
}

static void imap__login_done(struct session *s, const uint8_t *rest, size_t rest_len)
{
	struct imap_state *st = imap__st(s);

	imap_audit(s, "ok", NULL);
	char login[LOG_QUOTE_SIZE(128)], user[LOG_QUOTE_SIZE(128)];
	session_log(s, LOG_INFO, "login \"%s\" as \"%s\" on %s", log_quote(login, sizeof(login), st->login),
		    log_quote(user, sizeof(user), st->route.user), s->backend_addr);
	/* The backend's own tagged OK (with its post-login CAPABILITY), under
	   the client's tag. */
	struct iovec iov[3] = {
		{ st->tag, strlen(st->tag) }, { " ", 1 }, { (void *)rest, rest_len },
	};
	session_writev(s, iov, 3);
	imap_wipe_credentials(st);
	session_start_relay(s);
}

/* The route query for the login in progress. */
static void imap__query(struct session *s, struct route_query *q, bool bypass_cache)
{
	struct imap_state *st = imap__st(s);

	*q = (struct route_query){
		.login = st->authz[0] ? st->authz : st->login,
		.password = st->password,
		.protocol = s->conf->upstream.tls ? "imapssl" : "imap",
		.client_ip = s->client_ip,
		.proxy_ip = s->local_ip,
		.attempt = st->login_attempts,
		.bypass_cache = bypass_cache,
	};
}

/* The backend of st->route could not be reached: see login_route_unreachable. */
bool imap_route_unreachable(struct session *s, const char *why)
{
	struct imap_state *st = imap__st(s);
	struct route_query q;

	imap__query(s, &q, login_route_retry(&st->route, st->route_retried));
	return login_route_unreachable(s, &q, &st->route, &st->route_retried, why);
}

/* The backend rejected the login: the route may be wrong, forget it. */
void imap_route_rejected(struct session *s)
{
	struct imap_state *st = imap__st(s);
	struct route_query q;

	imap__query(s, &q, false);
	session_route_invalidate(s, &q, &st->route);
}

static void imap__begin_login(struct session *s)
{
	struct imap_state *st = imap__st(s);
	const char *who = st->authz[0] ? st->authz : st->login;

	st->login_attempts++;
	st->login_start_ms = session_now(s);
	memset(&st->route, 0, sizeof(st->route));
	if (!route_name_valid(who, strlen(who), s->conf->limits.max_login)) {
		imap_audit(s, "fail", "invalid login name");
		imap_login_failed(s, IMAP_AUTHFAILED, true);
		return;
	}
	/* With an authzid the authcid is not looked up, but it is logged and
	   sent: the same rules (no control bytes, no spaces; review 4). */
	if (who != st->login && !route_name_valid(st->login, strlen(st->login), s->conf->limits.max_login)) {
		imap_audit(s, "fail", "invalid authentication name");
		imap_login_failed(s, IMAP_AUTHFAILED, true);
		return;
	}
	session_client_reading(s, false);
	st->route_retried = false;
	struct route_query q;
	imap__query(s, &q, false);
	session_resolve(s, &q);
}

static const struct login_ops imap__login_ops = {
	.audit = imap_audit,
	.failed = imap_login_failed,
	.throttled = imap_login_throttled,
	.authfailed = IMAP_AUTHFAILED,
	.unavailable = IMAP_UNAVAILABLE,
};

static void imap_route_done(struct session *s, const struct route *r)
{
	login_route_done(s, r, &imap__st(s)->route, &imap__login_ops);
}

/* ---- commands ---- */

static bool imap__bad(struct session *s, const struct imap_span *tag, const char *text)
{
	struct imap_state *st = imap__st(s);

	imap__tagged(s, tag, text);
	if (++st->bad_commands >= s->conf->limits.max_bad_commands) {
		session_write(s, "* BYE Too many invalid commands\r\n", 33);
		session_finish(s, "too many invalid commands");
		return false;
	}
	return true;
}

static bool imap__copy_tag(struct session *s, const struct imap_cmd *cmd)
{
	struct imap_state *st = imap__st(s);

	memcpy(st->tag, s->in + cmd->tag.off, cmd->tag.len);
	st->tag[cmd->tag.len] = '\0';
	return true;
}

static bool imap__is_string(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_QUOTED || a->type == IMAP_ARG_LITERAL;
}

static void imap__login(struct session *s, const struct imap_cmd *cmd)
{
	struct imap_state *st = imap__st(s);
	const struct conf *c = s->conf;

	if (cmd->nargs != 2 || !imap__is_string(&cmd->args[0]) || !imap__is_string(&cmd->args[1])) {
		imap__bad(s, &cmd->tag, "BAD Syntax error: LOGIN user password");
		return;
	}
	imap__copy_tag(s, cmd);
	st->authenticate = false;
	st->authz[0] = '\0';
	int ul = imap_arg_copy(s->in, &cmd->args[0], st->login, c->limits.max_login + 1);
	int pl = imap_arg_copy(s->in, &cmd->args[1], st->password, st->password_cap);
	if (ul < 0) {
		/* Too long for a name: audit what fits, never the password. */
		st->login[0] = '\0';
		st->login_start_ms = session_now(s);
		st->login_attempts++;
		imap_audit(s, "fail", "login name too long");
		imap_login_failed(s, IMAP_AUTHFAILED, true);
		return;
	}
	if (pl < 0) {
		st->login_start_ms = session_now(s);
		st->login_attempts++;
		imap_audit(s, "fail", "password too long");
		imap_login_failed(s, IMAP_AUTHFAILED, true);
		return;
	}
	st->password_len = (size_t)pl;
	imap__begin_login(s);
}

/* A PLAIN message arrived (initial response or continuation). */
static void imap__plain(struct session *s, const uint8_t *b64, size_t n)
{
	struct imap_state *st = imap__st(s);
	const struct conf *c = s->conf;
	struct sasl_secret msg;
	struct sasl_plain pl;

	st->auth = IMAP_AUTH_NONE;
	if (sasl_secret_decode(b64, n, &msg) < 0) {
		sasl_secret_free(&msg);
		session_writef(s, "%s BAD Invalid base64 data\r\n", st->tag);
		return;
	}
	st->login_start_ms = session_now(s);
	if (sasl_plain_parse(msg.p, msg.len, &pl) < 0 ||
	    !sasl_take(st->authz, c->limits.max_login + 1, msg.p + pl.authz.off, pl.authz.len) ||
	    !sasl_take(st->login, c->limits.max_login + 1, msg.p + pl.authc.off, pl.authc.len) ||
	    !sasl_take(st->password, st->password_cap, msg.p + pl.pass.off, pl.pass.len)) {
		sasl_secret_free(&msg);
		st->login_attempts++;
		st->login[0] = '\0';
		imap_audit(s, "fail", "malformed PLAIN message");
		imap_login_failed(s, IMAP_AUTHFAILED, true);
		return;
	}
	st->password_len = pl.pass.len;
	sasl_secret_free(&msg);
	/* An authzid equal to the authcid is just the user. */
	if (strcmp(st->authz, st->login) == 0)
		st->authz[0] = '\0';
	imap__begin_login(s);
}

static void imap__authenticate(struct session *s, const struct imap_cmd *cmd)
{
	struct imap_state *st = imap__st(s);
	char mech[16];

	if (cmd->nargs < 1 || cmd->nargs > 2 || cmd->args[0].type != IMAP_ARG_ATOM ||
	    (cmd->nargs == 2 && cmd->args[1].type != IMAP_ARG_ATOM)) {
		imap__bad(s, &cmd->tag, "BAD Syntax error: AUTHENTICATE mechanism [initial-response]");
		return;
	}
	if (imap_arg_copy(s->in, &cmd->args[0], mech, sizeof(mech)) < 0)
		mech[0] = '\0';
	imap__copy_tag(s, cmd);
	st->authenticate = true;
	st->authz[0] = '\0';
	const struct imap_arg *ir = cmd->nargs == 2 ? &cmd->args[1] : NULL;
	if (strcasecmp(mech, "PLAIN") == 0) {
		if (ir) {
			imap__plain(s, s->in + ir->s.off, ir->s.len);
			return;
		}
		st->auth = IMAP_AUTH_PLAIN_WAIT;
		session_write(s, "+ \r\n", 4);
		return;
	}
	if (strcasecmp(mech, "LOGIN") == 0) {
		if (ir) {
			struct sasl_secret u;
			bool ok = sasl_secret_decode(s->in + ir->s.off, ir->s.len, &u) == 0 &&
				  sasl_take(st->login, s->conf->limits.max_login + 1, u.p, u.len);
			sasl_secret_free(&u);
			if (!ok) {
				imap__bad(s, &cmd->tag, "BAD Invalid initial response");
				return;
			}
			st->auth = IMAP_AUTH_LOGIN_PASS;
			session_write(s, "+ UGFzc3dvcmQ6\r\n", 16);
			return;
		}
		st->auth = IMAP_AUTH_LOGIN_USER;
		session_write(s, "+ VXNlcm5hbWU6\r\n", 16);
		return;
	}
	imap__tagged(s, &cmd->tag, "NO [CANNOT] Unsupported authentication mechanism");
}

/* One line answering a SASL continuation. */
static void imap__sasl_line(struct session *s, const uint8_t *p, size_t n)
{
	struct imap_state *st = imap__st(s);
	const struct conf *c = s->conf;

	if (n == 1 && p[0] == '*') {
		st->auth = IMAP_AUTH_NONE;
		session_writef(s, "%s BAD AUTHENTICATE aborted\r\n", st->tag);
		return;
	}
	if (st->auth == IMAP_AUTH_PLAIN_WAIT) {
		imap__plain(s, p, n);
		return;
	}
	struct sasl_secret v;
	bool ok = sasl_secret_decode(p, n, &v) == 0;
	if (st->auth == IMAP_AUTH_LOGIN_USER) {
		ok = ok && sasl_take(st->login, c->limits.max_login + 1, v.p, v.len);
		sasl_secret_free(&v);
		if (!ok) {
			st->auth = IMAP_AUTH_NONE;
			session_writef(s, "%s BAD Invalid user name response\r\n", st->tag);
			return;
		}
		st->auth = IMAP_AUTH_LOGIN_PASS;
		session_write(s, "+ UGFzc3dvcmQ6\r\n", 16);
		return;
	}
	ok = ok && sasl_take(st->password, st->password_cap, v.p, v.len);
	size_t len = v.len;
	sasl_secret_free(&v);
	st->auth = IMAP_AUTH_NONE;
	if (!ok) {
		st->login_start_ms = session_now(s);
		st->login_attempts++;
		imap_audit(s, "fail", "invalid password response");
		imap_login_failed(s, IMAP_AUTHFAILED, true);
		return;
	}
	st->password_len = len;
	imap__begin_login(s);
}

/* Keep the client's ID name/version for X-VIA, as printable ASCII. */
static void imap__id(struct session *s, const struct imap_cmd *cmd)
{
	struct imap_state *st = imap__st(s);
	char key[32], val[64];

	for (int i = 1; i + 1 < cmd->nargs; i += 2) {
		const struct imap_arg *k = &cmd->args[i], *v = &cmd->args[i + 1];
		if (!imap__is_string(k) || !imap__is_string(v))
			break;
		if (imap_arg_copy(s->in, k, key, sizeof(key)) < 0)
			continue;
		if (imap_arg_copy(s->in, v, val, sizeof(val)) < 0)
			val[0] = '\0';
		for (char *p = val; *p; p++)
			if (*p < 0x21 || *p > 0x7e || *p == '"' || *p == '\\' || *p == ',' || *p == '/')
				*p = '_';
		if (strcasecmp(key, "name") == 0)
			snprintf(st->client_name, sizeof(st->client_name), "%s", val);
		else if (strcasecmp(key, "version") == 0)
			snprintf(st->client_version, sizeof(st->client_version), "%s", val);
	}
	session_writef(s, "* ID (\"name\" \"gatehouse\" \"version\" \"%s\")\r\n", GATEHOUSE_VERSION);
	imap__tagged(s, &cmd->tag, "OK ID completed");
}

/* Handle one parsed command. Returns false when the session is ending. */
static bool imap__command(struct session *s, const struct imap_cmd *cmd)
{
	char caps[1024];

	switch (cmd->error) {
	case IMAP_OK:
		break;
	case IMAP_ERR_TAG_TOO_LONG:
		return imap__bad(s, &cmd->tag, "BAD Tag too long");
	case IMAP_ERR_TOO_MANY_ARGS:
		return imap__bad(s, &cmd->tag, "BAD Too many arguments");
	case IMAP_ERR_LITERAL_TOO_BIG:
		return imap__bad(s, &cmd->tag, "BAD Literal too large");
	case IMAP_ERR_NUL:
		return imap__bad(s, &cmd->tag, "BAD NUL byte in command");
	case IMAP_ERR_EMPTY:
		return imap__bad(s, &cmd->tag, "BAD Empty command line");
	case IMAP_ERR_SYNTAX:
	default:
		return imap__bad(s, &cmd->tag, "BAD Syntax error");
	}
	switch (cmd->kind) {
	case IMAP_CMD_CAPABILITY:
		imap__caps(s, caps, sizeof(caps));
		session_writef(s, "* CAPABILITY %s\r\n", caps);
		imap__tagged(s, &cmd->tag, "OK CAPABILITY completed");
		return true;
	case IMAP_CMD_NOOP:
		imap__tagged(s, &cmd->tag, "OK NOOP completed");
		return true;
	case IMAP_CMD_LOGOUT:
		session_write(s, "* BYE Logging out\r\n", 19);
		imap__tagged(s, &cmd->tag, "OK LOGOUT completed");
		session_finish(s, "logout");
		return false;
	case IMAP_CMD_ID:
		imap__id(s, cmd);
		return true;
	case IMAP_CMD_LOGIN:
	case IMAP_CMD_AUTHENTICATE:
		if (imap__cleartext_refused(s))
			return imap__bad(s, &cmd->tag, "NO [PRIVACYREQUIRED] Cleartext logins are "
						       "disabled here: use STARTTLS first");
		if (cmd->kind == IMAP_CMD_LOGIN)
			imap__login(s, cmd);
		else
			imap__authenticate(s, cmd);
		return true;
	case IMAP_CMD_STARTTLS:
		if (s->tls_active)
			return imap__bad(s, &cmd->tag, "BAD TLS is already active");
		if (!session_starttls_available(s)) {
			imap__tagged(s, &cmd->tag, "NO [CANNOT] STARTTLS is not available on this port");
			return true;
		}
		imap__tagged(s, &cmd->tag, "OK Begin TLS negotiation now");
		imap__st(s)->starttls_now = true;
		return false;
	case IMAP_CMD_OTHER:
	default:
		return imap__bad(s, &cmd->tag, "BAD Invalid command");
	}
}

static void imap__fatal(struct session *s, int rc)
{
	switch (rc) {
	case IMAP_FATAL_LITERAL_TOO_BIG:
	case IMAP_FATAL_SKIPPED_LITERAL:
		session_write(s, "* BYE Literal too large\r\n", 25);
		session_finish(s, "literal too large");
		break;
	case IMAP_FATAL_LINE_TOO_LONG:
	default:
		session_write(s, "* BYE Line too long\r\n", 21);
		session_finish(s, "line too long");
		break;
	}
}

/* Handle as many complete commands from s->in as the phase allows. */
static void imap__process(struct session *s)
{
	struct imap_state *st = imap__st(s);

	if (s->closed)
		return;
	/* A login that fails at once (bad name) calls back in here from inside
	   the loop, before its command's bytes are consumed: let the running
	   loop carry on instead. */
	if (st->processing)
		return;
	st->processing = true;
	imap__run(s, st);
	st->processing = false;
}

static void imap__run(struct session *s, struct imap_state *st)
{
	struct imap_cmd cmd;

	while (!s->closed && !s->finishing && s->phase == SESSION_PREAUTH &&
	       !session_client_blocked(s)) {
		if (st->auth != IMAP_AUTH_NONE) {
			int r = imap_parse_line(s->in, s->in_len, s->conf->limits.max_line);
			if (r == 0)
				return;
			if (r < 0) {
				imap__fatal(s, r);
				return;
			}
			size_t n = (size_t)r - 1;
			if (n > 0 && s->in[n - 1] == '\r')
				n--;
			imap__sasl_line(s, s->in, n);
			secret_wipe(s->in, (size_t)r);
			session_consume(s, (size_t)r);
		} else {
			int r = imap_parse(&st->parser, s->in, s->in_len, &cmd);
			if (r == 0) {
				if (!st->parser.continuation)
					return;
				st->parser.continuation = false;
				session_write(s, "+ OK\r\n", 6);
				continue;
			}
			if (r < 0) {
				imap__fatal(s, r);
				return;
			}
			bool go_on = imap__command(s, &cmd);
			/* The command's bytes may hold a password: wipe before reuse. */
			if (cmd.kind == IMAP_CMD_LOGIN || cmd.kind == IMAP_CMD_AUTHENTICATE)
				secret_wipe(s->in, (size_t)r);
			session_consume(s, (size_t)r);
			if (st->starttls_now) {
				/* Whatever followed STARTTLS is dropped unanswered. */
				st->starttls_now = false;
				session_starttls(s);
				return;
			}
			if (!go_on)
				return;
		}
		if (s->phase == SESSION_PREAUTH && !s->closed && !s->finishing)
			session_set_phase(s, SESSION_PREAUTH); /* a command: re-arm the idle timer */
	}
}

/* ---- session_proto ---- */

static int imap_start(struct session *s)
{
	const struct conf *c = s->conf;
	struct imap_state *st = calloc(1, sizeof(*st));
	char caps[1024];

	if (st == NULL)
		return -1;
	st->tag = malloc(c->limits.max_tag + 1);
	st->login = malloc(c->limits.max_login + 1);
	st->authz = malloc(c->limits.max_login + 1);
	st->password = malloc(c->limits.max_password + 1);
	st->password_cap = st->password ? c->limits.max_password + 1 : 0;
	s->proto_state = st;
	if (!st->tag || !st->login || !st->authz || !st->password)
		return -1;
	st->tag[0] = st->login[0] = st->authz[0] = st->password[0] = '\0';
	imap_parser_init(&st->parser, &(struct imap_limits){
		.max_line = c->limits.max_line,
		.max_literal = c->limits.max_literal,
		.max_tag = c->limits.max_tag,
	});
	imap__caps(s, caps, sizeof(caps));
	session_writef(s, "* OK [CAPABILITY %s] %s\r\n", caps, c->imap.greeting);
	return 0;
}

/* After STARTTLS: a fresh start inside TLS (RFC 3501 6.2.1: the client
   must forget what it learnt before, and so do we). */
static void imap_tls_started(struct session *s)
{
	struct imap_state *st = imap__st(s);

	imap_parser_init(&st->parser, &st->parser.lim);
	st->auth = IMAP_AUTH_NONE;
	session_client_reading(s, true);
	imap__process(s);
}

static void imap_client_data(struct session *s)
{
	imap__process(s);
}

static void imap_client_eof(struct session *s, int status)
{
	session_close(s, status == UV_EOF ? "client closed" : "client connection error");
}

static void imap_timeout(struct session *s)
{
	struct imap_state *st = imap__st(s);

	switch (s->phase) {
	case SESSION_AUTH_WAIT: {
		char reply[sizeof(st->fail_reply)];
		snprintf(reply, sizeof(reply), "%s", st->fail_reply[0] ? st->fail_reply : IMAP_AUTHFAILED);
		st->fail_reply[0] = '\0';
		imap_login_failed(s, reply, true);
		return;
	}
	case SESSION_BACKEND_LOGIN:
		imap_backend_timeout(s);
		return;
	case SESSION_PREAUTH:
	default:
		(void)st;
		session_write(s, "* BYE Autologout; idle for too long\r\n", 37);
		session_finish(s, "pre-auth timeout");
		return;
	}
}

static void imap_destroy(struct session *s)
{
	struct imap_state *st = imap__st(s);

	if (st == NULL)
		return;
	imap_wipe_credentials(st);
	free(st->held_ok);
	free(st->tag);
	free(st->login);
	free(st->authz);
	free(st->password);
	secret_wipe(st, sizeof(*st));
	free(st);
	s->proto_state = NULL;
}

const struct session_proto imap_proto = {
	.name = "imap",
	.busy_line = "* BYE [UNAVAILABLE] Too many connections, try again later\r\n",
	.throttle_key = 'i',
	.deny_prefix = "* BYE ",
	.start = imap_start,
	.client_data = imap_client_data,
	.client_eof = imap_client_eof,
	.route_done = imap_route_done,
	.backend_connected = imap_backend_connected,
	.backend_data = imap_backend_data,
	.backend_eof = imap_backend_eof,
	.timeout = imap_timeout,
	.tls_started = imap_tls_started,
	.destroy = imap_destroy,
};
