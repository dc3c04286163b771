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

/*
 * A pending name resolution. It belongs to its connection (bc->dns) and
 * goes with it: closing the connection cancels it, and an answer that comes
 * anyway finds d->bc NULL and is dropped. It holds a count on the session.
 */
struct backend_dns {
	uv_getaddrinfo_t req;
	struct session *s;
	struct backend_conn *bc;  /* NULL once the connection has closed */
};

/* bc's memory: its session's room (session_mail), or its own block. The
   room's session is still there: bc holds one of its references. */
static void backend__free(struct backend_conn *bc)
{
	struct session *s = bc->s;

	if (s != NULL && s->bc_room && bc == &((struct session_mail *)s)->bc) {
		s->bc_room_busy = false;
		return;
	}
	free(bc);
}

/* A connection closed: the kind lets go of it first (the HTTP pool). */
static void backend__closed(struct stream *st)
{
	struct backend_conn *bc = (struct backend_conn *)st;
	struct session *s = bc->s;

	if (bc->dns != NULL) {
		/* Its callback still comes (ECANCELED, or an answer already
		   made) and drops the session's count. */
		bc->dns->bc = NULL;
		uv_cancel((uv_req_t *)&bc->dns->req);
		bc->dns = NULL;
	}
	if (bc->kind->closed)
		bc->kind->closed(bc);
	backend__free(bc);
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

void session__addr_name(char *out, size_t cap, const char *host, uint16_t port)
{
	if (strchr(host, ':'))
		snprintf(out, cap, "[%s]:%u", host, port);
	else
		snprintf(out, cap, "%s:%u", host, port);
}

void session__backend_target(struct session *s, const char *host, uint16_t port)
{
	free(s->backend_host);
	s->backend_host = strndup(host, ROUTE_MAX_HOST - 1);
	s->backend_port = port;
	s->backend_tls = s->conf->upstream.tls;
	s->backend_verify = s->conf->upstream.verify;
	s->backend_sni = NULL;
	session__addr_name(s->backend_addr, sizeof(s->backend_addr), host, port);
}

/* Connecting bc failed: log, count, and let its kind close it and tell
   its owner (from the loop: this may run inside the call that started
   the connect). */
static void backend__fail(struct backend_conn *bc, int status, int kind, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void backend__fail(struct backend_conn *bc, int status, int kind, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	session_log(bc->s, LOG_WARN, "%s", msg);
	metrics_error((enum metrics_error)kind);
	bc->kind->failed(bc, status);
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
		s->bin = session__buf_new(s, s->bin_cap, &s->bin_pooled);
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
	if (s->bin_len > s->bin_hwm)
		s->bin_hwm = s->bin_len;
	pbuf_put(b);
	s->proto->backend_data(s);
}

/*
 * No Nagle delay on the login lines and relayed commands; keepalive after a
 * minute of silence, probing at the kernel's interval (tcp_keepalive_intvl,
 * tcp_keepalive_probes). Three calls where uv_tcp_nodelay + uv_tcp_keepalive
 * make five: they are a tenth of a login's system calls. A kind with
 * keepalive_later gets the keepalive from the worker's sweep instead.
 */
static void backend__tcp_opts(struct stream *st, bool keepalive)
{
	uv_os_fd_t fd;
	int one = 1, idle = 60;

	if (uv_fileno((uv_handle_t *)&st->tcp, &fd) < 0)
		return;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!keepalive)
		return;
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
}

/* bc was given up (closed by its owner, its session closed): whatever
   comes for it now is dropped. */
static bool backend__abandoned(const struct backend_conn *bc)
{
	return bc->s == NULL || bc->s->closed || bc->st.closing;
}

static void backend__tls_done(struct stream *st, int status)
{
	struct backend_conn *bc = (struct backend_conn *)st;

	if (backend__abandoned(bc))
		return;
	if (status < 0) {
		backend__fail(bc, UV_EPROTO, METRICS_ERR_BACKEND_TLS, "TLS to backend %s failed: %s",
			      bc->addr, tls_error(st->tls));
		return;
	}
	session_log(bc->s, LOG_DEBUG, "TLS to backend %s: %s %s", bc->addr, tls_version(st->tls),
		    tls_cipher(st->tls));
	bc->kind->ready(bc);
}

static void backend__connected(uv_connect_t *req, int status)
{
	struct backend_conn *bc = req->data;
	struct session *s = bc->s;

	/* A connect that was given up (timeout, owner gone, session closed)
	   has already been reported, or needs no report; its handle is
	   closing. */
	if (status == UV_ECANCELED || backend__abandoned(bc))
		return;
	if (status < 0) {
		backend__fail(bc, status, METRICS_ERR_BACKEND_CONNECT, "connecting to backend %s: %s",
			      bc->addr, uv_strerror(status));
		return;
	}
	backend__tcp_opts(&bc->st, !bc->kind->keepalive_later);
	if (!bc->tls) {
		if (bc->kind->read_early && stream_read_start(&bc->st) < 0) {
			backend__fail(bc, UV_EIO, METRICS_ERR_BACKEND_CONNECT,
				      "reading from backend %s failed", bc->addr);
			return;
		}
		bc->kind->ready(bc);
		return;
	}
	/* The handshake needs the socket read; the server says nothing before
	   our ClientHello, so reading can start first. The connect timeout
	   keeps running through the handshake. */
	int rc = stream_read_start(&bc->st);
	if (rc < 0) {
		backend__fail(bc, rc, METRICS_ERR_BACKEND_CONNECT, "reading from backend %s: %s",
			      bc->addr, uv_strerror(rc));
		return;
	}
	struct tls_conn *t = tls_conn_client(s->conf->tls_client, bc->host, bc->verify);
	if (t == NULL || stream_start_tls(&bc->st, t, backend__tls_done) < 0) {
		tls_conn_free(t);
		backend__fail(bc, UV_ENOMEM, METRICS_ERR_BACKEND_TLS, "TLS to backend %s: out of memory",
			      bc->addr);
	}
}

static void backend__connect_addr(struct backend_conn *bc, const struct sockaddr *addr)
{
	bc->connect.data = bc;
	int rc = uv_tcp_connect(&bc->connect, &bc->st.tcp, addr, backend__connected);
	if (rc < 0) {
		backend__fail(bc, rc, METRICS_ERR_BACKEND_CONNECT, "connecting to backend %s: %s",
			      bc->addr, uv_strerror(rc));
		return;
	}
	/* Asking for the first bytes now (libuv reports the connect first)
	   keeps the socket's epoll registration: one epoll_ctl when the
	   connect completes instead of a failed ADD and a MOD. TLS starts
	   reading in its handshake. */
	if (bc->kind->read_early && !bc->tls)
		(void)stream_read_start(&bc->st);
}

static void backend__resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct backend_dns *d = (struct backend_dns *)req;
	struct session *s = d->s;
	struct backend_conn *bc = d->bc;

	free(d);
	if (bc == NULL || status == UV_ECANCELED || backend__abandoned(bc)) {
		uv_freeaddrinfo(res);
		session__unref(s);
		return;
	}
	bc->dns = NULL;
	session__unref(s); /* s stays alive: bc's stream still holds a count */
	if (status < 0 || res == NULL) {
		uv_freeaddrinfo(res);
		status = status < 0 ? status : UV_EAI_NONAME;
		backend__fail(bc, status, METRICS_ERR_BACKEND_CONNECT, "resolving backend %s: %s",
			      bc->addr, uv_strerror(status));
		return;
	}
	backend__connect_addr(bc, res->ai_addr);
	uv_freeaddrinfo(res);
}

struct backend_conn *session__backend_new(struct session *s, const struct backend_kind *k)
{
	struct backend_conn *bc;

	if (s->bc_room && !s->bc_room_busy && k->size == sizeof(struct backend_conn)) {
		bc = &((struct session_mail *)s)->bc;
		memset(bc, 0, sizeof(*bc));
		s->bc_room_busy = true;
	} else {
		bc = calloc(1, k->size);
	}
	if (bc == NULL)
		return NULL;
	bc->s = s;
	if (stream_init(&bc->st, &s->w->loop, &s->w->pool, s) < 0) {
		backend__free(bc);
		return NULL;
	}
	bc->s = s;
	bc->kind = k;
	/* The upstream settings unless the caller chooses (an upstream group). */
	bc->tls = s->conf->upstream.tls;
	bc->verify = s->conf->upstream.verify;
	bc->st.on_read = k->on_read;
	bc->st.on_written = k->on_written;
	bc->st.on_close = backend__closed;
	s->refs++;
	return bc;
}

void session__backend_connect(struct backend_conn *bc, const char *host, uint16_t port)
{
	struct session *s = bc->s;
	union {
		struct sockaddr sa;
		struct sockaddr_in v4;
		struct sockaddr_in6 v6;
	} addr;

	if (uv_ip4_addr(host, port, &addr.v4) == 0 || uv_ip6_addr(host, port, &addr.v6) == 0) {
		backend__connect_addr(bc, &addr.sa);
		return;
	}
	/* A hostname (Carbonio's lookup may answer one): resolve on the thread pool. */
	struct backend_dns *d = calloc(1, sizeof(*d));
	if (d == NULL) {
		backend__fail(bc, UV_ENOMEM, METRICS_ERR_BACKEND_CONNECT,
			      "resolving backend %s: out of memory", bc->addr);
		return;
	}
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", port);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	d->s = s;
	d->bc = bc;
	bc->dns = d;
	s->refs++;
	int rc = uv_getaddrinfo(&s->w->loop, &d->req, backend__resolved, host, portstr, &hints);
	if (rc < 0) {
		bc->dns = NULL;
		s->refs--;
		free(d);
		backend__fail(bc, rc, METRICS_ERR_BACKEND_CONNECT, "resolving backend %s: %s",
			      bc->addr, uv_strerror(rc));
	}
}

/* ---- the mail login's connection ---- */

static void backend__mail_ready(struct backend_conn *bc)
{
	struct session *s = bc->s;

	s->bin_len = 0;
	session_set_phase(s, SESSION_BACKEND_LOGIN);
	s->proto->backend_connected(s, 0);
}

static void backend__mail_failed(struct backend_conn *bc, int status)
{
	struct session *s = bc->s;

	session_close_backend(s);
	session__post(s, SESSION__POST_BACKEND_CONNECTED, status);
}

static const struct backend_kind backend__mail = {
	.size = sizeof(struct backend_conn),
	.on_read = backend__read,
	.ready = backend__mail_ready,
	.failed = backend__mail_failed,
	.read_early = true,
	.keepalive_later = true,
};

/* Connect the mail login's s->backend (s->backend_* name it). */
static void backend__mail_connect(struct session *s, const char *host, uint16_t port)
{
	session_set_phase(s, SESSION_BACKEND_CONNECT);
	struct backend_conn *bc = session__backend_new(s, &backend__mail);
	if (bc == NULL) {
		session__post(s, SESSION__POST_BACKEND_CONNECTED, UV_ENOMEM);
		return;
	}
	bc->addr = s->backend_addr;
	bc->host = s->backend_sni != NULL ? s->backend_sni : s->backend_host;
	if (bc->host == NULL) { /* strndup failed in session__backend_target */
		s->backend = &bc->st;
		session_close_backend(s);
		session__post(s, SESSION__POST_BACKEND_CONNECTED, UV_ENOMEM);
		return;
	}
	bc->tls = s->backend_tls;
	bc->verify = s->backend_verify;
	s->backend = &bc->st;
	session__backend_connect(bc, host, port);
}

void session_connect_backend_tls(struct session *s, const char *host, uint16_t port, bool tls,
				 const char *sni, bool verify)
{
	session__backend_target(s, host, port);
	s->backend_tls = tls;
	s->backend_sni = sni;
	s->backend_verify = verify;
	backend__mail_connect(s, host, port);
}

void session_connect_backend(struct session *s, const char *host, uint16_t port)
{
	session__backend_target(s, host, port);
	backend__mail_connect(s, host, port);
}
