/*
 * backend.c - the backend connector, for the mail login and the HTTP pool
 * alike (struct backend_kind says what differs): resolve the route's host
 * without blocking the loop, connect with a timeout, set the socket
 * options, start TLS; and for the mail login, carry the login-phase bytes
 * between the backend and the protocol's replay code.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "metrics.h"
#include "session_int.h"
#include "tls.h"
#include "worker.h"

/* A connection closed: the kind lets go of it first (the HTTP pool). */
static void backend__closed(struct stream *st)
{
	struct backend_conn *bc = (struct backend_conn *)st;
	struct session *s = bc->s;

	if (bc->kind->closed)
		bc->kind->closed(bc);
	free(bc);
	if (s != NULL)
		session__unref(s);
}

void session_close_backend(struct session *s)
{
	if (s->backend == NULL)
		return;
	stream_close(s->backend);
	s->backend = NULL;
	s->bin_len = 0;
}

void session__backend_target(struct session *s, const char *host, uint16_t port)
{
	snprintf(s->backend_host, sizeof(s->backend_host), "%s", host);
	s->backend_port = port;
	s->backend_tls = s->conf->upstream.tls;
	s->backend_verify = s->conf->upstream.verify;
	s->backend_sni = NULL;
	if (strchr(host, ':'))
		snprintf(s->backend_addr, sizeof(s->backend_addr), "[%s]:%u", host, port);
	else
		snprintf(s->backend_addr, sizeof(s->backend_addr), "%s:%u", host, port);
}

void session__backend_failed(struct session *s, int status, int kind, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	session_log(s, LOG_WARN, "%s", msg);
	metrics_error((enum metrics_error)kind);
	session_close_backend(s);
	/* Also called inside session_connect_backend / _acquire (a connect
	   that fails at once): the protocol hears of it from the loop. */
	session__post(s, SESSION__POST_BACKEND_CONNECTED, status);
}

static void backend__read(struct stream *st, struct pbuf *b, int status)
{
	struct session *s = st->owner;

	if (b == NULL) {
		session_log(s, LOG_INFO, "backend %s closed during login: %s", s->backend_addr,
			    uv_strerror(status));
		session_close_backend(s);
		s->proto->backend_eof(s, status);
		return;
	}
	if (s->bin == NULL) {
		s->bin_cap = SESSION_BACKEND_INBUF;
		s->bin = malloc(s->bin_cap);
		if (s->bin == NULL) {
			pbuf_put(b);
			session_close(s, "out of memory");
			return;
		}
	}
	size_t room = s->bin_cap - s->bin_len;
	size_t n = b->len < room ? b->len : room;
	memcpy(s->bin + s->bin_len, b->data + b->off, n);
	s->bin_len += n;
	pbuf_put(b);
	s->proto->backend_data(s);
}

/*
 * No Nagle delay on the login lines and relayed commands; keepalive after a
 * minute of silence, probing at the kernel's interval (tcp_keepalive_intvl,
 * tcp_keepalive_probes). Three calls where uv_tcp_nodelay + uv_tcp_keepalive
 * make five: they are a tenth of a login's system calls.
 */
static void backend__tcp_opts(struct stream *st)
{
	uv_os_fd_t fd;
	int one = 1, idle = 60;

	if (uv_fileno((uv_handle_t *)&st->tcp, &fd) < 0)
		return;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
}

static void backend__tls_done(struct stream *st, int status)
{
	struct backend_conn *bc = (struct backend_conn *)st;
	struct session *s = bc->s;

	if (s == NULL || s->closed || s->backend != st)
		return;
	if (status < 0) {
		session__backend_failed(s, UV_EPROTO, METRICS_ERR_BACKEND_TLS,
					"TLS to backend %s failed: %s", s->backend_addr,
					tls_error(st->tls));
		return;
	}
	session_log(s, LOG_DEBUG, "TLS to backend %s: %s %s", s->backend_addr, tls_version(st->tls),
		    tls_cipher(st->tls));
	bc->kind->ready(s);
}

static void backend__connected(uv_connect_t *req, int status)
{
	struct backend_conn *bc = req->data;
	struct session *s = bc->s;

	/* A connect that was given up (timeout, session closed) has already
	   been reported; its handle is closing. */
	if (status == UV_ECANCELED || s == NULL || s->closed || s->backend != &bc->st)
		return;
	if (status < 0) {
		session__backend_failed(s, status, METRICS_ERR_BACKEND_CONNECT,
					"connecting to backend %s: %s", s->backend_addr,
					uv_strerror(status));
		return;
	}
	backend__tcp_opts(&bc->st);
	if (!s->backend_tls) {
		if (bc->kind->read_early && stream_read_start(&bc->st) < 0) {
			session__backend_failed(s, UV_EIO, METRICS_ERR_BACKEND_CONNECT,
						"reading from backend %s failed", s->backend_addr);
			return;
		}
		bc->kind->ready(s);
		return;
	}
	/* The handshake needs the socket read; the server says nothing before
	   our ClientHello, so reading can start first. The connect timeout
	   keeps running through the handshake. */
	int rc = stream_read_start(&bc->st);
	if (rc < 0) {
		session__backend_failed(s, rc, METRICS_ERR_BACKEND_CONNECT,
					"reading from backend %s: %s", s->backend_addr,
					uv_strerror(rc));
		return;
	}
	struct tls_conn *t = tls_conn_client(s->conf->tls_client,
					     s->backend_sni != NULL ? s->backend_sni : s->backend_host,
					     s->backend_verify);
	if (t == NULL || stream_start_tls(&bc->st, t, backend__tls_done) < 0) {
		tls_conn_free(t);
		session__backend_failed(s, UV_ENOMEM, METRICS_ERR_BACKEND_TLS,
					"TLS to backend %s: out of memory", s->backend_addr);
	}
}

static void backend__connect_addr(struct session *s, const struct sockaddr *addr,
				  const struct backend_kind *k)
{
	struct backend_conn *bc = calloc(1, k->size);
	int rc;

	if (bc == NULL) {
		session_close(s, "out of memory");
		return;
	}
	rc = stream_init(&bc->st, &s->w->loop, &s->w->pool, s);
	if (rc < 0) {
		free(bc);
		session__post(s, SESSION__POST_BACKEND_CONNECTED, rc);
		return;
	}
	bc->s = s;
	bc->kind = k;
	bc->st.on_read = k->on_read;
	bc->st.on_written = k->on_written;
	bc->st.on_close = backend__closed;
	s->refs++;
	s->backend = &bc->st;
	if (k->attach)
		k->attach(s, bc);
	bc->connect.data = bc;
	rc = uv_tcp_connect(&bc->connect, &bc->st.tcp, addr, backend__connected);
	if (rc < 0) {
		session__backend_failed(s, rc, METRICS_ERR_BACKEND_CONNECT,
					"connecting to backend %s: %s", s->backend_addr,
					uv_strerror(rc));
		return;
	}
	/* Asking for the first bytes now (libuv reports the connect first)
	   keeps the socket's epoll registration: one epoll_ctl when the
	   connect completes instead of a failed ADD and a MOD. TLS starts
	   reading in its handshake. */
	if (k->read_early && !s->backend_tls)
		(void)stream_read_start(&bc->st);
}

struct backend_dns {
	uv_getaddrinfo_t req;
	struct session *s;
	const struct backend_kind *kind;
};

static void backend__resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct backend_dns *d = (struct backend_dns *)req;
	struct session *s = d->s;
	const struct backend_kind *k = d->kind;

	s->dns = NULL;
	free(d);
	if (s->closed || status == UV_ECANCELED) {
		uv_freeaddrinfo(res);
		session__unref(s);
		return;
	}
	session__unref(s); /* s stays alive: its client stream still holds a count */
	if (status < 0 || res == NULL) {
		uv_freeaddrinfo(res);
		status = status < 0 ? status : UV_EAI_NONAME;
		session__backend_failed(s, status, METRICS_ERR_BACKEND_CONNECT,
					"resolving backend %s: %s", s->backend_addr,
					uv_strerror(status));
		return;
	}
	backend__connect_addr(s, res->ai_addr, k);
	uv_freeaddrinfo(res);
}

void session__backend_open(struct session *s, const char *host, uint16_t port,
			   const struct backend_kind *k)
{
	union {
		struct sockaddr sa;
		struct sockaddr_in v4;
		struct sockaddr_in6 v6;
	} addr;

	session_set_phase(s, SESSION_BACKEND_CONNECT);
	if (uv_ip4_addr(host, port, &addr.v4) == 0 || uv_ip6_addr(host, port, &addr.v6) == 0) {
		backend__connect_addr(s, &addr.sa, k);
		return;
	}
	/* A hostname (Carbonio's lookup may answer one): resolve on the thread pool. */
	struct backend_dns *d = calloc(1, sizeof(*d));
	if (d == NULL) {
		session_close(s, "out of memory");
		return;
	}
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", port);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	d->s = s;
	d->kind = k;
	s->dns = &d->req;
	s->refs++;
	int rc = uv_getaddrinfo(&s->w->loop, &d->req, backend__resolved, host, portstr, &hints);
	if (rc < 0) {
		s->dns = NULL;
		s->refs--;
		free(d);
		session__post(s, SESSION__POST_BACKEND_CONNECTED, rc);
	}
}

/* ---- the mail login's connection ---- */

static void backend__mail_ready(struct session *s)
{
	s->bin_len = 0;
	session_set_phase(s, SESSION_BACKEND_LOGIN);
	s->proto->backend_connected(s, 0);
}

static const struct backend_kind backend__mail = {
	.size = sizeof(struct backend_conn),
	.on_read = backend__read,
	.ready = backend__mail_ready,
	.read_early = true,
};

void session_connect_backend(struct session *s, const char *host, uint16_t port)
{
	session__backend_target(s, host, port);
	session__backend_open(s, host, port, &backend__mail);
}

void session_connect_backend_tls(struct session *s, const char *host, uint16_t port, bool tls,
				 const char *sni, bool verify)
{
	session__backend_target(s, host, port);
	s->backend_tls = tls;
	s->backend_sni = sni;
	s->backend_verify = verify;
	session__backend_open(s, host, port, &backend__mail);
}
