/*
 * login.c - login helpers shared by the IMAP and POP3 front ends.
 */
#include <stdbool.h>
#include <string.h>

#include "audit.h"
#include "conf.h"
#include "login.h"

void login_audit(struct session *s, const char *login, const char *authz, const struct route *r,
		 uint64_t start_ms, const char *result, const char *reason)
{
	bool routed = r->result == ROUTE_OK && r->host[0];

	audit_login(s, &(struct audit_login){
		.login = authz && authz[0] ? authz : login,
		.user = routed ? r->user : NULL,
		.result = result,
		.reason = reason,
		.backend = routed ? s->backend_addr : NULL,
		.source = route_source_names[r->source],
		.latency_ms = session_now(s) - start_ms,
	});
	if (strcmp(result, "fail") == 0)
		session_login_failed(s);
}

double login_failure_delay(const struct session *s, double auth_wait)
{
	const struct conf *c = s->conf;
	double wait = auth_wait > c->limits.max_auth_wait ? c->limits.max_auth_wait : auth_wait;

	return wait > c->limits.auth_failure_delay ? wait : c->limits.auth_failure_delay;
}

void login_route_done(struct session *s, const struct route *r, struct route *saved,
		      const struct login_ops *ops)
{
	*saved = *r;
	switch (r->result) {
	case ROUTE_OK:
		session_connect_backend(s, r->host, r->port);
		return;
	case ROUTE_DENIED: {
		ops->audit(s, "fail", r->reason);
		double wait = login_failure_delay(s, r->wait_s);
		if (wait > 0) {
			/* Honour Auth-Wait: slow down password guessing. The
			   worker goes on; proto->timeout answers later. */
			session_set_phase(s, SESSION_AUTH_WAIT);
			session_delay(s, wait);
			return;
		}
		ops->failed(s, ops->authfailed, true);
		return;
	}
	case ROUTE_TEMPFAIL:
		ops->audit(s, "tempfail", r->reason);
		ops->failed(s, ops->unavailable, true);
		return;
	case ROUTE_THROTTLED:
		ops->audit(s, "throttled", r->reason);
		ops->throttled(s, r->reason);
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

const char *login_upstream_user(const struct route *r, const char *protocol, const char *typed,
				char buf[ROUTE_MAX_USER])
{
	size_t sl = route_login_suffix(protocol, typed);
	size_t ul = strlen(r->user);

	if (sl == 0 || ul + sl >= ROUTE_MAX_USER)
		return r->user;
	memcpy(buf, r->user, ul);
	memcpy(buf + ul, typed + strlen(typed) - sl, sl + 1);
	return buf;
}
