/*
 * session_proxy.c - the PROXY protocol phase of a session on a
 * proxy_protocol listener: only trusted peers get in, and nothing happens
 * (no greeting, no TLS handshake) until their header is complete. A PROXY
 * header puts the real client's addresses in the session, so audit lines,
 * the lookup's Client-IP and the backend's ID/XOIP all carry them.
 */
#include <string.h>

#include "conf.h"
#include "proxy_proto.h"
#include "session_int.h"
#include "secret.h"

/* "ip" and port of a parsed address; false when it cannot be shown. */
static bool session__pp_name(const struct sockaddr_storage *ss, char *ip, size_t iplen,
			     uint16_t *port_out)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)ss;
		*port_out = ntohs(a->sin_port);
		return uv_ip4_name(a, ip, iplen) == 0;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)ss;
		*port_out = ntohs(a->sin6_port);
		return uv_ip6_name(a, ip, iplen) == 0;
	}
	return false;
}

void session__proxy_start(struct session *s)
{
	struct sockaddr_storage peer;
	int len = sizeof(peer);

	if (uv_tcp_getpeername(&s->client.tcp, (struct sockaddr *)&peer, &len) < 0 ||
	    !conf_proxy_trusted(s->conf, (const struct sockaddr *)&peer)) {
		session_log(s, LOG_WARN,
			    "connection from %s to PROXY protocol listener %s: not in trusted_proxies, closing",
			    s->client_ip, s->listener->address);
		session_close(s, "untrusted proxy");
		return;
	}
	/* The parser state lives on the stack between reads: it is one offset,
	   and re-scanning a header of at most 107 bytes costs nothing. */
	session_set_phase(s, SESSION_PROXY_HEADER);
	session_client_reading(s, true);
}

void session__proxy_data(struct session *s)
{
	struct pp_state st;
	struct pp_header h;

	memset(&st, 0, sizeof(st));
	int rc = pp_parse(&st, s->in, s->in_len, &h);
	if (rc == 0 && s->in_len >= s->in_cap)
		rc = PP_ERR_TOO_LONG; /* a v2 header larger than limits.max_line */
	if (rc == 0)
		return;
	if (rc < 0) {
		session_log(s, LOG_WARN, "bad PROXY header from %s: %s, closing", s->client_ip,
			    pp_strerror(rc));
		session_close(s, "bad PROXY header");
		return;
	}
	char src[46], dst[46];
	uint16_t sport, dport;
	if (h.cmd == PP_CMD_PROXY && h.family != AF_UNSPEC &&
	    session__pp_name(&h.src, src, sizeof(src), &sport) &&
	    session__pp_name(&h.dst, dst, sizeof(dst), &dport)) {
		session_log(s, LOG_DEBUG, "PROXY v%d: client %s:%u to %s:%u%s", h.version, src,
			    sport, dst, dport, h.ssl ? ", TLS at the proxy" : "");
		memcpy(s->client_ip, src, sizeof(src));
		s->client_port = sport;
		s->client_from_proxy_header = true;
		memcpy(s->local_ip, dst, sizeof(dst));
		s->local_port = dport;
		/* The client spoke TLS to the load balancer: its credentials never
		   crossed the network in clear, so STARTTLS is neither offered nor
		   required. */
		if (h.ssl)
			s->tls_active = true;
	} else {
		session_log(s, LOG_DEBUG, "PROXY v%d %s: keeping the connection's addresses",
			    h.version, h.cmd == PP_CMD_LOCAL ? "LOCAL" : "without addresses");
	}
	secret_wipe(s->in, (size_t)rc);
	session_consume(s, (size_t)rc);
	if (s->closed)
		return;
	session__begin(s);
}
