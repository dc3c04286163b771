/*
 * metrics.h - process-wide counters for the status listener's /metrics.
 *
 * Every counter is a relaxed atomic: the hot paths (accept, phase changes,
 * relay reads) pay one atomic add and take no lock. metrics_snapshot()
 * reads them all (each atomically, not all at one instant) together with
 * route_stats(), and metrics_render() turns a snapshot into Prometheus
 * text exposition format 0.0.4 without touching any global state, so unit
 * tests feed it known values.
 */
#ifndef GATEHOUSE_METRICS_H
#define GATEHOUSE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route.h"

struct conf;

/* Protocols, by enum conf_proto value. */
#define METRICS_NPROTO 4
/* Room for the session phases (checked against SESSION_NPHASES in metrics.c). */
#define METRICS_MAX_PHASES 16

enum metrics_login {
	METRICS_LOGIN_OK = 0,
	METRICS_LOGIN_FAIL,
	METRICS_LOGIN_TEMPFAIL,
	METRICS_LOGIN_THROTTLED,
	METRICS_NLOGIN
};

/* A small fixed set of error kinds, counted where they are logged. */
enum metrics_error {
	METRICS_ERR_BACKEND_CONNECT = 0, /* connect, name resolution or connect timeout */
	METRICS_ERR_BACKEND_TLS,         /* TLS to the backend failed */
	METRICS_ERR_TIMEOUT_PREAUTH,     /* no login (or TLS handshake) in time */
	METRICS_ERR_TIMEOUT_BACKEND,     /* backend greeting/login answer too slow */
	METRICS_ERR_TIMEOUT_IDLE,        /* relay idle timeout */
	METRICS_ERR_THROTTLED,           /* a connection refused by the per-IP throttle */
	METRICS_NERRORS
};

/* A session was accepted on a listener of protocol proto (enum conf_proto). */
void metrics_accepted(int proto);

/*
 * Move one session of protocol proto from phase `from` to phase `to` in the
 * current-connections gauge; -1 for "not counted" on either side.
 */
void metrics_phase(int proto, int from, int to);

/* One login result: "ok", "fail", "tempfail" or "throttled" (others ignored). */
void metrics_login(int proto, const char *result);

/* n bytes read for relaying, towards the backend or towards the client. */
void metrics_relayed(bool to_backend, size_t n);

/* A client TLS handshake finished (ok or not); resumed: an abbreviated one. */
void metrics_tls_handshake(bool ok, bool resumed);

void metrics_error(enum metrics_error kind);

/*
 * The configuration snapshot now in use (at start and on each reload): its
 * limits.max_connections and the expiry of each certificate it loaded.
 */
void metrics_conf(const struct conf *c);

/* Certificates exported; more are left out (a vhost each, RSA and ECDSA). */
#define METRICS_MAX_CERTS 128
struct metrics_cert {
	char name[256];    /* "default" or the vhost's first name */
	const char *kind;  /* "rsa", "ecdsa", "other" (static strings) */
	int64_t not_after; /* Unix time */
};

/* HTTP responses sent to clients, by status class (1xx .. 5xx). */
#define METRICS_HTTP_CLASSES 5
void metrics_http_response(int status);

struct metrics_snapshot {
	uint64_t accepted[METRICS_NPROTO];
	int64_t current[METRICS_NPROTO][METRICS_MAX_PHASES];
	uint64_t logins[METRICS_NPROTO][METRICS_NLOGIN];
	uint64_t bytes_c2b, bytes_b2c;
	uint64_t tls_ok, tls_failed, tls_resumed;
	uint64_t errors[METRICS_NERRORS];
	uint64_t http_responses[METRICS_HTTP_CLASSES]; /* [0] = 1xx ... [4] = 5xx */
	struct route_stats route;
	uint64_t max_connections; /* limits.max_connections, 0 = no cap */
	struct metrics_cert certs[METRICS_MAX_CERTS];
	int ncerts;
	/* The phase label values, nphases of them (session_phase_names). */
	const char *const *phase_names;
	int nphases;
	const char *version;
};

/* Read every counter, and route_stats(), into out. */
void metrics_snapshot(struct metrics_snapshot *out);

/*
 * Write the exposition text of m into buf (cap bytes, NUL-terminated when
 * cap > 0). Returns the length of the whole text, like snprintf: a return
 * >= cap means buf was too small and holds a truncated text.
 */
size_t metrics_render(const struct metrics_snapshot *m, char *buf, size_t cap);

#endif
