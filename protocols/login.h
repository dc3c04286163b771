/*
 * login.h - what the IMAP and POP3 front ends share about a login attempt.
 * Private to protocols/.
 */
#ifndef GATEHOUSE_LOGIN_H
#define GATEHOUSE_LOGIN_H

#include <stdint.h>

#include "route.h"
#include "session.h"

/*
 * Write the audit line for a login attempt on s: login as typed (the
 * authzid when one was given), the route it got (user and backend only
 * when it was routed), how long it took since start_ms.
 */
void login_audit(struct session *s, const char *login, const char *authz, const struct route *r,
		 uint64_t start_ms, const char *result, const char *reason);

#endif
