/*
 * session_throttle.c - where sessions meet the login throttle (throttle.h):
 * before the greeting (per-IP connections and failed logins), before a
 * lookup (the user's logins, the address's failures), after the backend
 * accepted (count the user's login), and after a failed login.
 *
 * The refusals are Zimbra's (reference §2.7): "* BYE Login rejected from
 * this IP" / "-ERR ..." then close; a refused user gets the protocol's
 * answer through route_done (ROUTE_THROTTLED).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "metrics.h"
#include "session_int.h"
#include "throttle.h"
#include "worker.h"
#include "secret.h"

/*
 * The name a user is counted under: ASCII case-folded (security review 6).
 * Mail logins are case-insensitive, and neither a static route nor a
 * lookup without Auth-User canonicalises the spelling, so "ALICE@a.test"
 * must not be a second user. Zimbra's canonical Auth-User is lower case
 * already, so shared memcached keys stay Zimbra's. Non-ASCII bytes are left
 * as they are. Returns out, or user itself when it does not fit.
 */
static const char *session__throttle_user(const char *user, char *out, size_t cap)
{
	size_t n = user ? strlen(user) : 0;

	if (user == NULL || n >= cap)
		return user;
	for (size_t i = 0; i < n; i++)
		out[i] = (user[i] >= 'A' && user[i] <= 'Z') ? (char)(user[i] - 'A' + 'a') : user[i];
	out[n] = '\0';
	return out;
}

/* ---- a new connection ---- */

static void session__admitted(const struct throttle_result *res, void *arg)
{
	struct session *s = arg;

	s->throttle_req = NULL;
	if (s->closed || s->finishing)
		return;
	if (res->verdict == THROTTLE_ALLOW) {
		session__greet(s);
		return;
	}
	session_log(s, LOG_WARN, "ip throttle: deny [%s count:%llu, limit:%d]",
		    res->failed_logins ? "failed logins" : "connections",
		    (unsigned long long)res->count, res->limit);
	metrics_error(METRICS_ERR_THROTTLED);
	session_writef(s, "%s%s\r\n", s->proto->deny_prefix, s->conf->throttle.ip_message);
	session_finish(s, "throttled");
}

void session__admit(struct session *s)
{
	struct throttle_query q = {
		.step = THROTTLE_CONNECT,
		.proto = s->proto->throttle_key,
		.ip = s->client_ip,
	};

	if (q.proto == 0 || !throttle_needed(s->conf, &q)) {
		session__greet(s);
		return;
	}
	/* Bytes the client sends meanwhile wait in s->in for the greeting. */
	session_set_phase(s, SESSION_THROTTLE);
	session_client_reading(s, false);
	s->throttle_req = throttle_check(&s->w->loop, s->conf, &q, session__admitted, s);
	if (s->throttle_req == NULL)
		session__greet(s); /* out of memory: fail open */
}

void session__throttle_timeout(struct session *s)
{
	/* The thread pool is jammed; memcached's own timeouts did not help.
	   Fail open, as for a memcached outage. */
	session_log(s, LOG_WARN, "ip throttle: no answer within %.0f s, allowing",
		    s->conf->limits.preauth_timeout);
	session__throttle_cancel(s);
	session__greet(s);
}

/* ---- before a lookup ---- */

/* A copy of the route query while the throttle is asked. */
struct session_held_query {
	struct route_query q;
	char protocol[16];
	char client_ip[46];
	char proxy_ip[46];
	size_t login_cap, password_cap;
	char *login;
	char *password;   /* NULL unless given; wiped before it is freed */
	struct session *s;
};

static void session__held_free(struct session_held_query *h)
{
	if (h->password != NULL) {
		secret_wipe(h->password, h->password_cap);
		free(h->password);
	}
	free(h->login);
	free(h);
}

void session__throttle_cancel(struct session *s)
{
	void *arg;

	if (s->throttle_req == NULL)
		return;
	arg = throttle_cancel(s->throttle_req);
	s->throttle_req = NULL;
	/* A login check hands back the held query (a password copy): its
	   callback, which would have freed it, will not run. The other checks
	   lent the session itself. */
	if (arg != NULL && arg == s->throttle_held)
		session__held_free(arg);
	s->throttle_held = NULL;
}

static struct session_held_query *session__hold(struct session *s, const struct route_query *src)
{
	struct session_held_query *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->s = s;
	h->q = *src;
	snprintf(h->protocol, sizeof(h->protocol), "%s", src->protocol ? src->protocol : "");
	snprintf(h->client_ip, sizeof(h->client_ip), "%s", src->client_ip ? src->client_ip : "");
	snprintf(h->proxy_ip, sizeof(h->proxy_ip), "%s", src->proxy_ip ? src->proxy_ip : "");
	h->q.protocol = h->protocol;
	h->q.client_ip = src->client_ip ? h->client_ip : NULL;
	h->q.proxy_ip = src->proxy_ip ? h->proxy_ip : NULL;
	h->login_cap = strlen(src->login ? src->login : "") + 1;
	if ((h->login = malloc(h->login_cap)) == NULL)
		goto fail;
	memcpy(h->login, src->login ? src->login : "", h->login_cap);
	h->q.login = h->login;
	h->q.password = NULL;
	if (src->password != NULL) {
		h->password_cap = strlen(src->password) + 1;
		if ((h->password = malloc(h->password_cap)) == NULL)
			goto fail;
		memcpy(h->password, src->password, h->password_cap);
		h->q.password = h->password;
	}
	return h;
fail:
	session__held_free(h);
	return NULL;
}

static void session__login_checked(const struct throttle_result *res, void *arg)
{
	struct session_held_query *h = arg;
	struct session *s = h->s;

	s->throttle_req = NULL;
	s->throttle_held = NULL;
	if (s->closed || s->finishing) {
		session__held_free(h);
		return;
	}
	if (res->verdict == THROTTLE_ALLOW) {
		session__resolve_now(s, &h->q);
		session__held_free(h);
		return;
	}
	bool user = res->verdict == THROTTLE_DENY_USER;
	char login[LOG_QUOTE_SIZE(128)];
	session_log(s, LOG_WARN, "%s throttle: deny \"%s\" [%s count:%llu, limit:%d]",
		    user ? "user" : "ip", log_quote(login, sizeof(login), h->q.login),
		    user ? "logins" : res->failed_logins ? "failed logins" : "connections",
		    (unsigned long long)res->count, res->limit);
	session__held_free(h);
	struct route r;
	memset(&r, 0, sizeof(r));
	r.result = ROUTE_THROTTLED;
	r.source = ROUTE_SRC_NONE;
	snprintf(r.reason, sizeof(r.reason), "%s",
		 user ? s->conf->throttle.user_message : s->conf->throttle.ip_message);
	s->proto->route_done(s, &r);
}

/* The session waits in SESSION_LOOKUP: the check is part of routing. */
bool session__throttle_login(struct session *s, const struct route_query *q)
{
	char folded[ROUTE_MAX_USER];
	struct throttle_query tq = {
		.step = THROTTLE_LOGIN,
		.proto = s->proto->throttle_key,
		.ip = s->client_ip,
		.user = session__throttle_user(q->login, folded, sizeof(folded)),
	};

	/* A fresh lookup after a dead cached route was checked already. */
	if (q->bypass_cache || tq.proto == 0 || !throttle_needed(s->conf, &tq))
		return false;
	struct session_held_query *h = session__hold(s, q);
	if (h == NULL)
		return false; /* fail open */
	session_set_phase(s, SESSION_LOOKUP);
	s->throttle_req = throttle_check(&s->w->loop, s->conf, &tq, session__login_checked, h);
	if (s->throttle_req == NULL) {
		session__held_free(h);
		return false;
	}
	s->throttle_held = h;
	return true;
}

/* ---- after the backend's answer ---- */

static void session__counted(const struct throttle_result *res, void *arg)
{
	struct session *s = arg;
	void (*done)(struct session *, bool) = s->throttle_done;

	s->throttle_req = NULL;
	s->throttle_done = NULL;
	if (s->closed || s->finishing || done == NULL)
		return;
	if (res->verdict != THROTTLE_ALLOW)
		session_log(s, LOG_WARN, "user throttle: deny after login [logins count:%llu, limit:%d]",
			    (unsigned long long)res->count, res->limit);
	done(s, res->verdict == THROTTLE_ALLOW);
}

bool session_count_login(struct session *s, const char *user,
			 void (*done)(struct session *s, bool allowed))
{
	char folded[ROUTE_MAX_USER];
	struct throttle_query tq = {
		.step = THROTTLE_SUCCESS,
		.proto = s->proto->throttle_key,
		.ip = s->client_ip,
		.user = session__throttle_user(user, folded, sizeof(folded)),
	};

	if (tq.proto == 0 || !throttle_needed(s->conf, &tq))
		return false;
	s->throttle_done = done;
	s->throttle_req = throttle_check(&s->w->loop, s->conf, &tq, session__counted, s);
	if (s->throttle_req == NULL) {
		s->throttle_done = NULL;
		return false;
	}
	return true;
}

void session_login_failed(struct session *s)
{
	if (s->proto->throttle_key != 0)
		throttle_failed(&s->w->loop, s->conf, s->client_ip);
}
