/*
 * tcp.c - the TCP listener's front end (include/tcp.h): no protocol to
 * parse, only the choice of an upstream server, failover to the next one
 * when a connect fails, an optional PROXY header, and the relay.
 *
 * Bytes the client sends before the upstream is connected wait in s->in
 * (limits.max_line of them; reading pauses beyond) and go first once it is.
 */
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "conf.h"
#include "proxy_proto.h"
#include "tcp.h"
#include "upstream.h"

struct tcp_state {
	struct upstream_tried tried;
	int server;             /* index in the group of the server being tried */
	uint64_t start_ms;
};

static const struct conf_upstream *tcp__group(struct session *s)
{
	return &s->conf->upstreams[s->listener->upstream];
}

static void tcp__audit(struct session *s, const char *result, const char *reason)
{
	struct tcp_state *st = s->proto_state;
	struct audit_login a = {
		.result = result,
		.reason = reason,
		.backend = s->backend_addr,
		.source = tcp__group(s)->name,
		.latency_ms = session_now(s) - st->start_ms,
	};
	audit_login(s, &a);
}

/* Connect to the next server that is up and not tried yet, or give up. */
static void tcp__connect_next(struct session *s)
{
	struct tcp_state *st = s->proto_state;
	const struct conf_upstream *u = tcp__group(s);
	struct upstream_health *h = session_upstream_health(s, s->listener->upstream);
	int i = upstream_pick(h, u, s->client_ip, &st->tried, session_now(s));

	if (i < 0) {
		session_log(s, LOG_WARN, "upstream \"%s\": no live servers (%d tried)", u->name,
			    st->tried.n);
		tcp__audit(s, "tempfail", "no live upstream servers");
		session_close(s, "no live upstream servers");
		return;
	}
	st->server = i;
	session_connect_backend_tls(s, u->servers[i].host, u->servers[i].port, u->tls, u->sni,
				    u->verify);
}

static int tcp__start(struct session *s)
{
	struct tcp_state *st = calloc(1, sizeof(*st));

	if (st == NULL)
		return -1;
	s->proto_state = st;
	st->start_ms = session_now(s);
	tcp__connect_next(s);
	return 0;
}

/* Client bytes wait in s->in for the relay (session_start_relay sends
   them first). */
static void tcp__client_data(struct session *s)
{
}

static void tcp__client_eof(struct session *s, int status)
{
	session_close(s, "client closed before the upstream answered");
}

static void tcp__route_done(struct session *s, const struct route *r)
{
	/* No route lookups here. */
}

static void tcp__send_proxy(struct session *s)
{
	uint8_t hdr[PP_V1_MAX + 64];
	int n = pp_build(s->listener->send_proxy, s->client_ip, s->client_port, s->local_ip,
			 s->local_port, s->tls_active, hdr, sizeof(hdr));

	if (n > 0)
		session_backend_write(s, hdr, (size_t)n, false);
}

static void tcp__backend_connected(struct session *s, int status)
{
	struct tcp_state *st = s->proto_state;
	const struct conf_upstream *u = tcp__group(s);
	struct upstream_health *h = session_upstream_health(s, s->listener->upstream);

	if (status < 0) {
		upstream_failed(h, u, st->server, session_now(s));
		session_log(s, LOG_INFO, "upstream \"%s\" server %s failed: %s; trying another",
			    u->name, s->backend_addr, uv_strerror(status));
		tcp__connect_next(s);
		return;
	}
	upstream_succeeded(h, st->server);
	session_log(s, LOG_INFO, "relaying to upstream \"%s\" server %s", u->name, s->backend_addr);
	tcp__audit(s, "ok", NULL);
	if (s->listener->send_proxy != 0)
		tcp__send_proxy(s);
	session_start_relay(s);
}

/* Not reached: the relay starts as soon as the upstream is connected. */
static void tcp__backend_data(struct session *s)
{
}

static void tcp__backend_eof(struct session *s, int status)
{
	session_close(s, "upstream closed");
}

static void tcp__timeout(struct session *s)
{
	session_close(s, "timeout");
}

static void tcp__tls_started(struct session *s)
{
}

static void tcp__destroy(struct session *s)
{
	free(s->proto_state);
	s->proto_state = NULL;
}

const struct session_proto tcp_proto = {
	.name = "tcp",
	.busy_line = NULL,
	.first_phase = SESSION_BACKEND_CONNECT,
	.start = tcp__start,
	.client_data = tcp__client_data,
	.client_eof = tcp__client_eof,
	.route_done = tcp__route_done,
	.backend_connected = tcp__backend_connected,
	.backend_data = tcp__backend_data,
	.backend_eof = tcp__backend_eof,
	.timeout = tcp__timeout,
	.tls_started = tcp__tls_started,
	.destroy = tcp__destroy,
};
