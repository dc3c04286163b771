/*
 * login.c - the login core shared by the IMAP and POP3 front ends: the
 * state of a login attempt, the command loop, SASL steps and the outcomes
 * (failed, rejected, throttled, succeeded). login_backend.c has the route
 * and the backend line reader. The protocols supply only what differs
 * (struct login_ops).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit.h"
#include "conf.h"
#include "login.h"
#include "sasl.h"
#include "secret.h"

/* ---- start and end ---- */

struct login_state *login_start(struct session *s, const struct login_ops *ops)
{
	const struct conf *c = s->conf;
	struct login_state *ls = calloc(1, ops->state_size);

	if (ls == NULL)
		return NULL;
	ls->ops = ops;
	s->proto_state = ls;
	ls->login = malloc(c->limits.max_login + 1);
	ls->authz = malloc(c->limits.max_login + 1);
	ls->password = malloc(c->limits.max_password + 1);
	ls->password_cap = ls->password ? c->limits.max_password + 1 : 0;
	if (!ls->login || !ls->authz || !ls->password)
		return NULL;
	ls->login[0] = ls->authz[0] = ls->password[0] = '\0';
	return ls;
}

void login_wipe_secrets(struct login_state *ls)
{
	if (ls->password)
		secret_wipe(ls->password, ls->password_cap);
	ls->password_len = 0;
	if (ls->token) {
		secret_wipe(ls->token, ls->token_cap);
		free(ls->token);
		ls->token = NULL;
	}
	ls->token_cap = 0;
	ls->token_len = 0;
}

void login_wipe_credentials(struct login_state *ls)
{
	login_wipe_secrets(ls);
	if (ls->login)
		ls->login[0] = '\0';
	if (ls->authz)
		ls->authz[0] = '\0';
}

void login_destroy(struct session *s)
{
	struct login_state *ls = login_st(s);

	if (ls == NULL)
		return;
	if (ls->ops->destroy)
		ls->ops->destroy(s);
	login_wipe_credentials(ls);
	free(ls->held_ok);
	free(ls->login);
	free(ls->authz);
	free(ls->password);
	secret_wipe(ls, ls->ops->state_size);
	free(ls);
	s->proto_state = NULL;
}

/* ---- the command loop ---- */

void login_process(struct session *s)
{
	struct login_state *ls = login_st(s);

	if (s->closed)
		return;
	/* A login that fails at once (bad name) calls back in here from inside
	   the loop, before its command's bytes are consumed: let the running
	   loop carry on instead. */
	if (ls->processing)
		return;
	ls->processing = true;
	ls->ops->run(s);
	ls->processing = false;
}

bool login_bad_command(struct session *s, const char *bye)
{
	struct login_state *ls = login_st(s);

	if (++ls->bad_commands < s->conf->limits.max_bad_commands)
		return true;
	session_write(s, bye, strlen(bye));
	session_finish(s, "too many invalid commands");
	return false;
}

void login_command_done(struct session *s)
{
	if (s->phase == SESSION_PREAUTH && !s->closed && !s->finishing)
		session_set_phase(s, SESSION_PREAUTH); /* re-arms the idle timer */
}

void login_client_eof(struct session *s, int status)
{
	session_close(s, status == UV_EOF ? "client closed" : "client connection error");
}

static void login__backend_timeout(struct session *s)
{
	char why[128];

	snprintf(why, sizeof(why), "no login answer within %.1f s", s->conf->limits.backend_timeout);
	login_backend_tempfail(s, why);
}

void login_timeout(struct session *s)
{
	struct login_state *ls = login_st(s);

	switch (s->phase) {
	case SESSION_AUTH_WAIT: {
		char reply[sizeof(ls->fail_reply)];
		snprintf(reply, sizeof(reply), "%s", ls->fail_reply[0] ? ls->fail_reply : ls->ops->authfailed);
		ls->fail_reply[0] = '\0';
		login_failed(s, reply, true);
		return;
	}
	case SESSION_BACKEND_LOGIN:
		login__backend_timeout(s);
		return;
	case SESSION_PREAUTH:
	default:
		session_write(s, ls->ops->idle_bye, strlen(ls->ops->idle_bye));
		session_finish_timed_out(s, "pre-auth timeout");
		return;
	}
}

/* ---- a login attempt ---- */

void login_audit(struct session *s, const char *result, const char *reason)
{
	struct login_state *ls = login_st(s);
	const struct route *r = &ls->route;
	bool routed = r->result == ROUTE_OK && r->host[0];

	audit_login(s, &(struct audit_login){
		.login = ls->authz[0] ? ls->authz : ls->login,
		.user = routed ? r->user : NULL,
		.result = result,
		.reason = reason,
		.backend = routed ? s->backend_addr : NULL,
		.source = route_source_names[r->source],
		.latency_ms = session_now(s) - ls->login_start_ms,
	});
	/* A failure counts against the client address (throttle.h). */
	if (strcmp(result, "fail") == 0)
		session_login_failed(s);
}

/* The route query for the login in progress. */
void login__query(struct session *s, struct route_query *q, bool bypass_cache)
{
	struct login_state *ls = login_st(s);

	*q = (struct route_query){
		.login = ls->authz[0] ? ls->authz : ls->login,
		/* A token is the mailstore's to check, not the lookup's. */
		.password = ls->token ? NULL : ls->password,
		.protocol = s->conf->upstream.tls ? ls->ops->protocol_tls : ls->ops->protocol,
		.client_ip = s->client_ip,
		.proxy_ip = s->local_ip,
		.attempt = ls->login_attempts,
		.bypass_cache = bypass_cache,
	};
}

void login_begin(struct session *s)
{
	struct login_state *ls = login_st(s);
	const char *who = ls->authz[0] ? ls->authz : ls->login;
	size_t max = s->conf->limits.max_login;
	struct route_query q;

	ls->login_attempts++;
	ls->login_start_ms = session_now(s);
	memset(&ls->route, 0, sizeof(ls->route));
	if (!route_name_valid(who, strlen(who), max)) {
		login_audit(s, "fail", "invalid login name");
		login_failed(s, ls->ops->authfailed, true);
		return;
	}
	/* With an authzid the authcid is not looked up, but it is logged and
	   sent: the same rules (no control bytes, no spaces; review 4). */
	if (who != ls->login && !route_name_valid(ls->login, strlen(ls->login), max)) {
		login_audit(s, "fail", "invalid authentication name");
		login_failed(s, ls->ops->authfailed, true);
		return;
	}
	session_client_reading(s, false);
	ls->route_retried = false;
	login__query(s, &q, false);
	session_resolve(s, &q);
}

void login_fail_early(struct session *s, const char *why)
{
	struct login_state *ls = login_st(s);

	ls->login_attempts++;
	ls->login_start_ms = session_now(s);
	login_audit(s, "fail", why);
	login_failed(s, ls->ops->authfailed, true);
}

int login_sasl_plain(struct session *s, const uint8_t *b64, size_t n)
{
	struct login_state *ls = login_st(s);
	size_t max = s->conf->limits.max_login + 1;
	struct sasl_secret msg;
	struct sasl_plain pl;

	if (sasl_secret_decode(b64, n, &msg) < 0) {
		sasl_secret_free(&msg);
		return -1;
	}
	if (sasl_plain_parse(msg.p, msg.len, &pl) < 0 ||
	    !sasl_take(ls->authz, max, msg.p + pl.authz.off, pl.authz.len) ||
	    !sasl_take(ls->login, max, msg.p + pl.authc.off, pl.authc.len) ||
	    !sasl_take(ls->password, ls->password_cap, msg.p + pl.pass.off, pl.pass.len)) {
		sasl_secret_free(&msg);
		ls->login[0] = ls->authz[0] = '\0';
		login_fail_early(s, "malformed PLAIN message");
		return 0;
	}
	ls->password_len = pl.pass.len;
	sasl_secret_free(&msg);
	/* An authzid equal to the authcid is just the user. */
	if (strcmp(ls->authz, ls->login) == 0)
		ls->authz[0] = '\0';
	login_begin(s);
	return 0;
}

bool login_sasl_user(struct session *s, const uint8_t *b64, size_t n)
{
	struct login_state *ls = login_st(s);
	struct sasl_secret u;
	bool ok = sasl_secret_decode(b64, n, &u) == 0 &&
		  sasl_take(ls->login, s->conf->limits.max_login + 1, u.p, u.len);

	sasl_secret_free(&u);
	return ok;
}

void login_sasl_password(struct session *s, const uint8_t *b64, size_t n)
{
	struct login_state *ls = login_st(s);
	struct sasl_secret v;
	bool ok = sasl_secret_decode(b64, n, &v) == 0 &&
		  sasl_take(ls->password, ls->password_cap, v.p, v.len);
	size_t len = v.len;

	sasl_secret_free(&v);
	if (!ok) {
		login_fail_early(s, "invalid password response");
		return;
	}
	ls->password_len = len;
	login_begin(s);
}

void login_failed(struct session *s, const char *reply_line, bool counted)
{
	struct login_state *ls = login_st(s);
	bool last;

	login_wipe_credentials(ls);
	memset(&ls->route, 0, sizeof(ls->route));
	free(ls->held_ok); /* a good login's answer, if its count was pending */
	ls->held_ok = NULL;
	ls->held_ok_len = 0;
	session_close_backend(s);
	last = counted && ++ls->login_failures >= s->conf->limits.max_login_failures;
	ls->ops->failed(s, reply_line, last);
	if (last) {
		session_finish(s, "too many login failures");
		return;
	}
	session_set_phase(s, SESSION_PREAUTH);
	session_client_reading(s, true);
	/* Commands pipelined behind the login wait in s->in. */
	login_process(s);
}

/*
 * How long to hold back the answer to a login the mailstore or the lookup
 * rejected (a wrong password, an unknown user): limits.auth_failure_delay,
 * or auth_wait (the lookup's Auth-Wait, capped by limits.max_auth_wait)
 * when that is longer. Both kinds wait alike, so the time to the answer
 * does not tell an unknown user from a wrong password. Seconds; 0: answer
 * at once.
 */
double login__failure_delay(const struct session *s, double auth_wait)
{
	const struct conf *c = s->conf;
	double wait = auth_wait > c->limits.max_auth_wait ? c->limits.max_auth_wait : auth_wait;

	return wait > c->limits.auth_failure_delay ? wait : c->limits.auth_failure_delay;
}

void login_rejected(struct session *s, const char *reply_line)
{
	struct login_state *ls = login_st(s);
	double delay = login__failure_delay(s, 0);

	if (delay <= 0) {
		login_failed(s, reply_line, true);
		return;
	}
	/* Zimbra's zimbraReverseProxyAuthWaitInterval: every guess costs the
	   guesser the delay, not the worker (the timer answers). */
	snprintf(ls->fail_reply, sizeof(ls->fail_reply), "%s", reply_line);
	login_wipe_credentials(ls);
	session_close_backend(s);
	session_set_phase(s, SESSION_AUTH_WAIT);
	session_delay(s, delay);
}

/* Refuse a throttled login with msg and finish. */
void login__throttled(struct session *s, const char *msg)
{
	login_wipe_credentials(login_st(s));
	session_close_backend(s);
	login_st(s)->ops->throttled(s, msg);
	session_finish(s, "throttled");
}

static void login__done(struct session *s, const uint8_t *line, size_t n)
{
	struct login_state *ls = login_st(s);
	char login[LOG_QUOTE_SIZE(128)], user[LOG_QUOTE_SIZE(128)];

	login_audit(s, "ok", NULL);
	session_log(s, LOG_INFO, "login \"%s\" as \"%s\" on %s", log_quote(login, sizeof(login), ls->login),
		    log_quote(user, sizeof(user), ls->route.user), s->backend_addr);
	ls->ops->succeeded(s, line, n);
	login_wipe_credentials(ls);
	session_start_relay(s);
}

/* The user's login was counted: over the limit, it is refused after all. */
static void login__counted(struct session *s, bool allowed)
{
	struct login_state *ls = login_st(s);
	uint8_t *line = ls->held_ok;
	size_t n = ls->held_ok_len;

	/* The attempt failed meanwhile (the backend closed or timed out):
	   login_failed let its answer go. */
	if (line == NULL)
		return;
	ls->held_ok = NULL;
	ls->held_ok_len = 0;
	if (allowed) {
		login__done(s, line, n);
	} else {
		login_audit(s, "throttled", s->conf->throttle.user_message);
		login__throttled(s, s->conf->throttle.user_message);
	}
	free(line);
}

void login_succeeded(struct session *s, const char *line, size_t n, size_t linelen)
{
	struct login_state *ls = login_st(s);

	/* Keep the answer until it is written: s->bin moves on. */
	if ((ls->held_ok = malloc(n ? n : 1)) == NULL) {
		session_close(s, "out of memory");
		return;
	}
	memcpy(ls->held_ok, line, n);
	ls->held_ok_len = n;
	session_backend_consume(s, linelen);
	if (session_count_login(s, ls->route.user, login__counted))
		return;
	login__counted(s, true);
}
