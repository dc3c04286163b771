/*
 * audit.h - the audit log: one line per login attempt, never a password.
 *
 *   <time> session=<id> proto=<p> client=<ip>:<port> login="<login>"
 *   user="<canonical>" result=<ok|fail|tempfail> reason="<why>"
 *   backend=<ip:port|-> source=<static|l1|memcached|lookup|-> latency_ms=<n>
 */
#ifndef GATEHOUSE_AUDIT_H
#define GATEHOUSE_AUDIT_H

#include <stdbool.h>
#include <stdint.h>

struct session;

/* Open the audit log: NULL or "" = stderr, "off" = none. 0 or negative errno. */
int audit_open(const char *path);

struct audit_login {
	const char *login;   /* as typed; may hold any bytes (escaped when written) */
	const char *user;    /* canonical user, or NULL */
	const char *result;  /* "ok", "fail", "tempfail" */
	const char *reason;  /* short text, or NULL */
	const char *backend; /* "ip:port", or NULL */
	const char *source;  /* route source name, or NULL */
	uint64_t latency_ms;
};

/* Write one audit line for session s (batched on a thread after audit_batch). */
void audit_login(struct session *s, const struct audit_login *a);

/*
 * On the calling thread, keep audit lines in a buffer until audit_flush (or
 * until it is full) instead of writing each at once. The thread must call
 * audit_flush before it sleeps; audit_batch(false) flushes and stops.
 */
void audit_batch(bool on);
void audit_flush(void);

#endif
