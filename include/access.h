/*
 * access.h - the HTTP access log: one line per request, never a credential
 * (no Authorization header, no cookies; query values that look like
 * credentials are masked, see http_log_target).
 *
 *   <time> session=<id> client=<ip>:<port> method=<m> host="<host>"
 *   path="<path>" status=<n> bytes=<sent> upstream=<ip:port|-> ms=<n>
 */
#ifndef GATEHOUSE_ACCESS_H
#define GATEHOUSE_ACCESS_H

#include <stdint.h>

struct session;

/* Open the access log: NULL or "off" = none, "stderr", or a file (appended).
   Reopening (SIGUSR1, reload) swaps the descriptor. 0 or negative errno. */
int access_open(const char *path);

struct access_entry {
	const char *method;
	const char *host;     /* as sent, escaped when written */
	const char *path;     /* path and query, credential-like values masked */
	int status;
	uint64_t bytes;       /* bytes sent to the client for this request */
	const char *upstream; /* "ip:port", or NULL when answered locally */
	uint64_t ms;
};

/* Write one line for a request of session s (one write(2), O_APPEND). */
void access_log(struct session *s, const struct access_entry *e);

#endif
