/*
 * login_backend.c - the login core's second half: the route lookup's
 * answer (and its retry when a cached route cannot be reached), the user
 * and credentials sent upstream, and the backend: connected, closed, and
 * the one line reader both replays use.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit.h"
#include "conf.h"
#include "login.h"
#include "sasl.h"

void login_route_rejected(struct session *s)
{
	struct route_query q;

	login__query(s, &q, false);
	session_route_invalidate(s, &q, &login_st(s)->route);
}

void login_route_done(struct session *s, const struct route *r)
{
	struct login_state *ls = login_st(s);

	ls->route = *r;
	switch (r->result) {
	case ROUTE_OK:
		session_connect_backend(s, r->host, r->port);
		return;
	case ROUTE_DENIED: {
		login_audit(s, "fail", r->reason);
		double wait = login__failure_delay(s, r->wait_s);
		if (wait > 0) {
			/* Honour Auth-Wait: slow down password guessing. The
			   worker goes on; login_timeout answers later. */
			session_set_phase(s, SESSION_AUTH_WAIT);
			session_delay(s, wait);
			return;
		}
		login_failed(s, ls->ops->authfailed, true);
		return;
	}
	case ROUTE_TEMPFAIL:
		login_audit(s, "tempfail", r->reason);
		login_failed(s, ls->ops->unavailable, true);
		return;
	case ROUTE_THROTTLED:
		login_audit(s, "throttled", r->reason);
		login__throttled(s, r->reason);
		return;
	}
}

bool login_route_retry(const struct route *r, bool retried)
{
	return !retried && (r->source == ROUTE_SRC_L1 || r->source == ROUTE_SRC_MEMCACHED);
}

bool login_route_unreachable(struct session *s, const struct route_query *q, const struct route *r,
			     bool *retried, const char *why)
{
	if (!q->bypass_cache) {
		session_route_invalidate(s, q, r);
		return false;
	}
	/* The fresh lookup forgets the login in the caches first. */
	*retried = true;
	char login[LOG_QUOTE_SIZE(128)];
	session_log(s, LOG_INFO, "%s (route from %s): looking \"%s\" up again", why,
		    route_source_names[r->source], log_quote(login, sizeof(login), q->login));
	session_resolve(s, q);
	return true;
}

/* The mail login's route could not be reached (login_route_unreachable). */
static bool login__route_unreachable(struct session *s, const char *why)
{
	struct login_state *ls = login_st(s);
	struct route_query q;

	login__query(s, &q, login_route_retry(&ls->route, ls->route_retried));
	return login_route_unreachable(s, &q, &ls->route, &ls->route_retried, why);
}

const char *login_upstream_user(struct session *s, char buf[ROUTE_MAX_USER])
{
	struct login_state *ls = login_st(s);
	const char *typed = ls->authz[0] ? ls->authz : ls->login;
	size_t sl = route_login_suffix(ls->ops->protocol, typed);
	size_t ul = strlen(ls->route.user);

	if (sl == 0 || ul + sl >= ROUTE_MAX_USER)
		return ls->route.user;
	memcpy(buf, ls->route.user, ul);
	memcpy(buf + ul, typed + strlen(typed) - sl, sl + 1);
	return buf;
}

size_t login_plain_b64(struct session *s, char *out)
{
	struct login_state *ls = login_st(s);
	char ub[ROUTE_MAX_USER];
	const char *up = login_upstream_user(s, ub);
	const char *authz = ls->authz[0] ? up : "";
	const char *user = ls->authz[0] ? ls->login : up;

	return sasl_plain_encode(authz, strlen(authz), user, strlen(user), ls->password,
				 ls->password_len, out);
}

/* ---- the backend ---- */

void login_backend_tempfail(struct session *s, const char *why)
{
	session_log(s, LOG_WARN, "backend %s: %s", s->backend_addr, why);
	login_audit(s, "tempfail", why);
	session_close_backend(s);
	login_failed(s, login_st(s)->ops->unavailable, true);
}

void login_backend_connected(struct session *s, int status)
{
	struct login_state *ls = login_st(s);

	if (status < 0) {
		char why[128];
		snprintf(why, sizeof(why), "backend %s: %s", s->backend_addr, uv_strerror(status));
		if (login__route_unreachable(s, why))
			return;
		login_audit(s, "tempfail", why);
		login_failed(s, ls->ops->unavailable, true);
		return;
	}
	ls->ops->backend_start(s);
}

void login_backend_eof(struct session *s, int status)
{
	char why[128];

	snprintf(why, sizeof(why), "backend %s closed during login: %s", s->backend_addr,
		 uv_strerror(status));
	login_audit(s, "tempfail", why);
	login_failed(s, login_st(s)->ops->unavailable, true);
}

bool login_prefix(const char *line, size_t n, const char *prefix)
{
	size_t l = strlen(prefix);

	return n >= l && strncasecmp(line, prefix, l) == 0;
}

/* Length of the IMAP literal announced at the end of line[0..n) ("{123}"
   or "{123+}"), or -1 if there is none. */
static long login__literal_at_end(const char *line, size_t n)
{
	if (n < 3 || line[n - 1] != '}')
		return -1;
	size_t i = n - 1;
	if (i > 0 && line[i - 1] == '+')
		i--;
	size_t end = i;
	while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9')
		i--;
	if (i == end || i == 0 || line[i - 1] != '{' || end - i > 9)
		return -1;
	return strtol(line + i, NULL, 10);
}

void login_backend_data(struct session *s)
{
	struct login_state *ls = login_st(s);
	size_t scan = 0;

	/* A good login's answer waits for its count (held_ok): what follows
	   it is the relay's. */
	while (s->backend && s->phase == SESSION_BACKEND_LOGIN && ls == s->proto_state &&
	       ls->held_ok == NULL) {
		const char *buf = (const char *)s->bin;
		const char *lf = memchr(buf + scan, '\n', s->bin_len - scan);
		if (lf == NULL) {
			if (s->bin_len == s->bin_cap)
				login_backend_tempfail(s, "backend sent an over-long line during login");
			return;
		}
		size_t linelen = (size_t)(lf - buf) + 1;
		size_t n = linelen - 1;
		if (n > 0 && buf[n - 1] == '\r')
			n--;
		/* A literal inside an untagged answer: skip its bytes as part of
		   the line. */
		long lit = ls->ops->backend_literals ? login__literal_at_end(buf, n) : -1;
		if (lit >= 0) {
			if (linelen + (size_t)lit >= s->bin_cap) {
				login_backend_tempfail(s, "backend sent an oversized literal during login");
				return;
			}
			if (s->bin_len < linelen + (size_t)lit)
				return;
			scan = linelen + (size_t)lit;
			continue;
		}
		scan = 0;
		if (memchr(buf, '\0', n)) {
			login_backend_tempfail(s, "backend sent a NUL byte during login");
			return;
		}
		ls->ops->backend_line(s, buf, n, linelen);
		/* On success the relay took over: s->bin and the state are gone,
		   or the answer waits for its count, its line consumed. */
		if (s->bin == NULL || s->phase != SESSION_BACKEND_LOGIN || s->backend == NULL ||
		    ls->held_ok != NULL)
			return;
		session_backend_consume(s, linelen);
	}
}
