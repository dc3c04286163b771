/*
 * login.c - login helpers shared by the IMAP and POP3 front ends.
 */
#include <stdbool.h>

#include "audit.h"
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
}
