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

/* ---- commands ---- */

static bool imap__bad(struct session *s, const struct imap_span *tag, const char *text)
{
	imap__tagged(s, tag, text);
	return login_bad_command(s, "* BYE Too many invalid commands\r\n");
}

/* Keep the login command's tag: its answer comes later. */
static void imap__copy_tag(struct session *s, const struct imap_cmd *cmd)
{
	struct imap_state *st = imap__st(s);

	memcpy(st->tag, s->in + cmd->tag.off, cmd->tag.len);
	st->tag[cmd->tag.len] = '\0';
}

static bool imap__is_string(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_QUOTED || a->type == IMAP_ARG_LITERAL;
}

static void imap__login(struct session *s, const struct imap_cmd *cmd)
{
	struct imap_state *st = imap__st(s);
	struct login_state *ls = &st->l;
	const struct conf *c = s->conf;

	if (cmd->nargs != 2 || !imap__is_string(&cmd->args[0]) || !imap__is_string(&cmd->args[1])) {
		imap__bad(s, &cmd->tag, "BAD Syntax error: LOGIN user password");
		return;
	}
	imap__copy_tag(s, cmd);
	st->authenticate = false;
	ls->authz[0] = '\0';
	int ul = imap_arg_copy(s->in, &cmd->args[0], ls->login, c->limits.max_login + 1);
	int pl = imap_arg_copy(s->in, &cmd->args[1], ls->password, ls->password_cap);
	if (ul < 0) {
		/* Too long for a name: audit what fits, never the password. */
		ls->login[0] = '\0';
		login_fail_early(s, "login name too long");
		return;
	}
	if (pl < 0) {
		login_fail_early(s, "password too long");
		return;
	}
	ls->password_len = (size_t)pl;
	login_begin(s);
}

/* A PLAIN message arrived (initial response or continuation). */
static void imap__plain(struct session *s, const uint8_t *b64, size_t n)
{
	struct imap_state *st = imap__st(s);

	st->auth = IMAP_AUTH_NONE;
	if (login_sasl_plain(s, b64, n) < 0)
		session_writef(s, "%s BAD Invalid base64 data\r\n", st->tag);
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
	st->l.authz[0] = '\0';
	const struct imap_arg *ir = cmd->nargs == 2 ? &cmd->args[1] : NULL;
	if (strcasecmp(mech, "PLAIN") == 0) {
		if (ir) {
			imap__plain(s, s->in + ir->s.off, ir->s.len);
			return;
		}
		st->auth = IMAP_AUTH_PLAIN_WAIT;
		login_write_lit(s, "+ \r\n");
		return;
	}
	if (strcasecmp(mech, "LOGIN") == 0) {
		if (ir && !login_sasl_user(s, s->in + ir->s.off, ir->s.len)) {
			imap__bad(s, &cmd->tag, "BAD Invalid initial response");
			return;
		}
		st->auth = ir ? IMAP_AUTH_LOGIN_PASS : IMAP_AUTH_LOGIN_USER;
		if (ir)
			login_write_lit(s, "+ UGFzc3dvcmQ6\r\n");
		else
			login_write_lit(s, "+ VXNlcm5hbWU6\r\n");
		return;
	}
	imap__tagged(s, &cmd->tag, "NO [CANNOT] Unsupported authentication mechanism");
}

/* One line answering a SASL continuation. */
static void imap__sasl_line(struct session *s, const uint8_t *p, size_t n)
{
	struct imap_state *st = imap__st(s);
	enum imap_auth_step step = st->auth;

	st->auth = IMAP_AUTH_NONE;
	if (n == 1 && p[0] == '*') {
		session_writef(s, "%s BAD AUTHENTICATE aborted\r\n", st->tag);
		return;
	}
	if (step == IMAP_AUTH_PLAIN_WAIT) {
		imap__plain(s, p, n);
		return;
	}
	if (step == IMAP_AUTH_LOGIN_PASS) {
		login_sasl_password(s, p, n);
		return;
	}
	if (!login_sasl_user(s, p, n)) {
		session_writef(s, "%s BAD Invalid user name response\r\n", st->tag);
		return;
	}
	st->auth = IMAP_AUTH_LOGIN_PASS;
	login_write_lit(s, "+ UGFzc3dvcmQ6\r\n");
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
		login_write_lit(s, "* BYE Logging out\r\n");
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
		login_write_lit(s, "* BYE Literal too large\r\n");
		session_finish(s, "literal too large");
		break;
	case IMAP_FATAL_LINE_TOO_LONG:
	default:
		login_write_lit(s, "* BYE Line too long\r\n");
		session_finish(s, "line too long");
		break;
	}
}

/* A line answering a SASL continuation. Returns its length, 0 when
   incomplete, or a negative parser error. */
static int imap__sasl_step(struct session *s)
{
	int r = imap_parse_line(s->in, s->in_len, s->conf->limits.max_line);

	if (r <= 0)
		return r;
	size_t n = (size_t)r - 1;
	if (n > 0 && s->in[n - 1] == '\r')
		n--;
	imap__sasl_line(s, s->in, n);
	secret_wipe(s->in, (size_t)r);
	session_consume(s, (size_t)r);
	return r;
}

/* The next command. Returns false to stop the loop. */
static bool imap__command_step(struct session *s, struct imap_state *st)
{
	struct imap_cmd cmd;
	int r = imap_parse(&st->parser, s->in, s->in_len, &cmd);

	if (r < 0) {
		imap__fatal(s, r);
		return false;
	}
	if (r == 0) {
		if (!st->parser.continuation)
			return false;
		st->parser.continuation = false;
		login_write_lit(s, "+ OK\r\n");
		return true;
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
		return false;
	}
	if (go_on)
		login_command_done(s);
	return go_on;
}

/* login_ops.run: handle as many complete commands from s->in as the phase
   allows. */
static void imap__run(struct session *s)
{
	struct imap_state *st = imap__st(s);

	while (!s->closed && !s->finishing && s->phase == SESSION_PREAUTH &&
	       !session_client_blocked(s)) {
		if (st->auth == IMAP_AUTH_NONE) {
			if (!imap__command_step(s, st))
				return;
			continue;
		}
		int r = imap__sasl_step(s);
		if (r < 0)
			imap__fatal(s, r);
		if (r <= 0)
			return;
		login_command_done(s);
	}
}

/* ---- login_ops ---- */

static void imap__failed(struct session *s, const char *reply_line, bool last)
{
	struct imap_state *st = imap__st(s);

	st->auth = IMAP_AUTH_NONE;
	session_writef(s, "%s %s\r\n", st->tag, reply_line);
	if (last)
		login_write_lit(s, "* BYE Too many login failures\r\n");
}

static void imap__throttled(struct session *s, const char *msg)
{
	struct imap_state *st = imap__st(s);

	/* Zimbra's answer: the BYE, then the command's own NO. */
	session_writef(s, "* BYE %s\r\n%s NO %s failed\r\n", msg, st->tag,
		       st->authenticate ? "AUTHENTICATE" : "LOGIN");
}

/* The backend's own tagged OK (with its post-login CAPABILITY), under the
   client's tag. */
static void imap__succeeded(struct session *s, const uint8_t *rest, size_t n)
{
	struct imap_state *st = imap__st(s);
	struct iovec iov[3] = {
		{ st->tag, strlen(st->tag) }, { " ", 1 }, { (void *)rest, n },
	};

	session_writev(s, iov, 3);
}

static void imap__destroy(struct session *s)
{
	free(imap__st(s)->tag);
}

static const struct login_ops imap__login_ops = {
	.protocol = "imap",
	.protocol_tls = "imapssl",
	.state_size = sizeof(struct imap_state),
	.authfailed = IMAP_AUTHFAILED,
	.unavailable = IMAP_UNAVAILABLE,
	.idle_bye = "* BYE Autologout; idle for too long\r\n",
	.run = imap__run,
	.failed = imap__failed,
	.throttled = imap__throttled,
	.succeeded = imap__succeeded,
	.backend_start = imap__backend_start,
	.backend_line = imap__backend_line,
	.backend_literals = true,
	.destroy = imap__destroy,
};

/* ---- session_proto ---- */

static int imap__start(struct session *s)
{
	const struct conf *c = s->conf;
	struct login_state *ls = login_start(s, &imap__login_ops);
	struct imap_state *st = (struct imap_state *)ls;
	char caps[1024];

	if (st == NULL || (st->tag = malloc(c->limits.max_tag + 1)) == NULL)
		return -1;
	st->tag[0] = '\0';
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
static void imap__tls_started(struct session *s)
{
	struct imap_state *st = imap__st(s);

	imap_parser_init(&st->parser, &st->parser.lim);
	st->auth = IMAP_AUTH_NONE;
	session_client_reading(s, true);
	login_process(s);
}

const struct session_proto imap_proto = {
	.name = "imap",
	.busy_line = "* BYE [UNAVAILABLE] Too many connections, try again later\r\n",
	.throttle_key = 'i',
	.deny_prefix = "* BYE ",
	.start = imap__start,
	.tls_started = imap__tls_started,
	LOGIN_SESSION_CALLBACKS,
};
