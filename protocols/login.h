/*
 * login.h - what the IMAP and POP3 front ends share about a login attempt.
 * Private to protocols/.
 */
#ifndef GATEHOUSE_LOGIN_H
#define GATEHOUSE_LOGIN_H

#include <stdbool.h>
#include <stdint.h>

#include "route.h"
#include "session.h"

/*
 * Write the audit line for a login attempt on s: login as typed (the
 * authzid when one was given), the route it got (user and backend only
 * when it was routed), how long it took since start_ms. A "fail" also
 * counts against the client address's failed-login limit (throttle.h).
 */
void login_audit(struct session *s, const char *login, const char *authz, const struct route *r,
		 uint64_t start_ms, const char *result, const char *reason);

/* How a protocol answers the outcomes the shared code decides on. */
struct login_ops {
	void (*audit)(struct session *s, const char *result, const char *reason);
	/* Answer a failed login with reply_line (counted toward the limit). */
	void (*failed)(struct session *s, const char *reply_line, bool counted);
	/* Refuse a throttled login with msg and close. */
	void (*throttled)(struct session *s, const char *msg);
	const char *authfailed;   /* reply to an unknown user */
	const char *unavailable;  /* reply when the lookup or backend is down */
};

/*
 * The resolver answered: connect to the route, or fail the login after
 * login_failure_delay (in SESSION_AUTH_WAIT: the protocol's timeout hook
 * then answers with ops->authfailed), or report a temporary failure. saved
 * receives the route.
 */
void login_route_done(struct session *s, const struct route *r, struct route *saved,
		      const struct login_ops *ops);

/*
 * How long to hold back the answer to a login the mailstore or the lookup
 * rejected (a wrong password, an unknown user): limits.auth_failure_delay,
 * or auth_wait (the lookup's Auth-Wait, capped by limits.max_auth_wait)
 * when that is longer. Both kinds wait alike, so the time to the answer
 * does not tell an unknown user from a wrong password. Seconds; 0: answer
 * at once.
 */
double login_failure_delay(const struct session *s, double auth_wait);

/* Whether an unreachable route deserves one fresh lookup: it came from a
   cache (the mailbox may have moved) and none was tried yet. */
bool login_route_retry(const struct route *r, bool retried);

/*
 * The backend of r could not be reached. q is this login's query, built
 * with bypass_cache = login_route_retry(r, *retried): without it the route
 * is only forgotten in the caches (false); with it a fresh lookup starts
 * (true: the protocol's route_done runs again).
 */
bool login_route_unreachable(struct session *s, const struct route_query *q, const struct route *r,
			     bool *retried, const char *why);

/*
 * The name to log in as on the backend: r->user, plus the Zimbra client tag
 * ("/tb", "/wm", "/ni") that ends typed (the name the route was resolved
 * for: route_login_suffix), as Zimbra's proxy does, so the mailstore turns
 * on its client hacks. The tag is neither looked up nor cached. buf holds
 * the result when a tag is added; r->user comes back as it is when there
 * is none or it would not fit.
 */
const char *login_upstream_user(const struct route *r, const char *protocol, const char *typed,
				char buf[ROUTE_MAX_USER]);

#endif
