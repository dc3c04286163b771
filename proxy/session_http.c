/*
 * session_http.c - what HTTP needs from a session beyond the login model:
 * a larger input buffer, whole read buffers handed to the client, and
 * per-request backend connections (struct session_upstream) kept in a
 * per-worker keep-alive pool.
 *
 * A connection belongs to one owner (a request of the protocol) from the
 * moment it is asked for (session_upstream_get): taken from the pool, or
 * made by the shared connector (backend.c, this file's kind) with its own
 * name resolution, address strings and connect result. Its events go to
 * that owner only (proto->upstream_connected / upstream_read /
 * upstream_written), never to "the session's backend", so a session may
 * have several connecting and several connected at once. The session lists
 * them and closes them when it closes; an owner that gives one up mid-
 * connect closes it, which cancels the resolution, the connect or the TLS
 * handshake, and hears nothing more of it.
 *
 * The pool is a thread-local list (a worker is one thread with one loop).
 * An idle pooled connection belongs to no session: it keeps reading, so a
 * backend that closes it (or sends anything unasked) gets it dropped at
 * once, and its handle is unref'd so it never keeps a stopping worker's
 * loop alive. Taken by a session, it counts in s->refs like any backend.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "metrics.h"
#include "session_int.h"
#include "tls.h"
#include "worker.h"
#include "secret.h"

/* An idle pooled connection older than this is not reused (backends such
   as Jetty drop idle connections after 30 s or more). */
#define HTTP_POOL_MAX_IDLE_MS 25000

/*
 * A backend connection for one exchange. From session_upstream_get until
 * it is released it belongs to its owner (the protocol's exchange) and is
 * listed on its session (s->upstreams), which closes it with the session;
 * idle, it is on the worker's pool list and belongs to no session.
 */
struct session_upstream {
	struct backend_conn c;     /* first: the stream is c.st; c.s is NULL while idle */
	char key[ROUTE_MAX_HOST + 8]; /* "host:port" it is connected to (c.addr) */
	char to[ROUTE_MAX_HOST];   /* the host part, as asked for (pool matches) */
	uint16_t port;             /* the port asked for */
	char host[ROUTE_MAX_HOST]; /* as routed, or the group's sni (c.host: SNI) */
	char group[72];            /* the upstream group's name ("": none) */
	int keepalive;             /* idle ones of that group kept at most */
	uint64_t idle_since;
	/* The worker's idle list while pooled, the session's list while taken. */
	struct session_upstream *prev, *next;
	bool pooled;
	bool listed;               /* on its session's list */
	bool reused;               /* came from the pool to its current owner */
	bool reading;              /* the owner wants bytes */
	bool connected;            /* ready: the owner heard upstream_connected(0) */
	int fail;                  /* a write failed: what the owner hears once it has closed */
	void *owner;               /* the protocol's, while taken */
};

static __thread struct {
	struct session_upstream *head;   /* most recently idle first */
	int n;
} http_pool;

/* Buffers for response heads that span reads, given back between requests
   wiped: an idle keep-alive client holds none, yet a head that needs one
   does not cost a malloc and free of 16 KiB. Bounded like the relay
   buffers' free list. */
#define HTTP_BUF_CACHE 16

static __thread struct {
	uint8_t *buf[HTTP_BUF_CACHE];
	size_t cap[HTTP_BUF_CACHE];
	int n;
} http_bufs;

uint8_t *session_hbuf_get(size_t cap)
{
	while (http_bufs.n > 0) {
		int i = --http_bufs.n;
		if (http_bufs.cap[i] == cap)
			return http_bufs.buf[i];
		free(http_bufs.buf[i]); /* http.max_header_size changed by a reload */
	}
	return malloc(cap);
}

void session_hbuf_put(uint8_t *p, size_t cap, size_t used)
{
	if (p == NULL)
		return;
	/* It may have held Set-Cookie tokens: only the bytes ever filled are
	   wiped, since wiping all of it for a small response was the largest
	   single cost of a request in user space. */
	secret_wipe(p, used < cap ? used : cap);
	if (http_bufs.n >= HTTP_BUF_CACHE) {
		free(p);
		return;
	}
	http_bufs.buf[http_bufs.n] = p;
	http_bufs.cap[http_bufs.n] = cap;
	http_bufs.n++;
}

/* ---- blocking work on the thread pool ---- */

struct session__job {
	uv_work_t req;
	struct session *s;
	void (*work)(void *arg);
	void (*done)(struct session *s, void *arg);
	void *arg;
};

static void session__job_work(uv_work_t *req)
{
	struct session__job *j = req->data;

	j->work(j->arg);
}

static void session__job_after(uv_work_t *req, int status)
{
	struct session__job *j = req->data;
	struct session *s = j->s;

	/* status is UV_ECANCELED only for a job cancelled before it ran; none
	   is (a stopping worker's loop runs its queue out): done either way. */
	(void)status;
	j->done(s, j->arg);
	free(j);
	session__unref(s);
}

int session_job(struct session *s, void (*work)(void *arg),
		void (*done)(struct session *s, void *arg), void *arg)
{
	struct session__job *j = malloc(sizeof(*j));

	if (j == NULL)
		return -ENOMEM;
	*j = (struct session__job){ .s = s, .work = work, .done = done, .arg = arg };
	j->req.data = j;
	int rc = uv_queue_work(&s->w->loop, &j->req, session__job_work, session__job_after);
	if (rc < 0) {
		free(j);
		return rc;
	}
	s->refs++;
	return 0;
}

/* ---- the lists ---- */

static void session__list_unlink(struct session_upstream **head, struct session_upstream *u)
{
	if (u->prev)
		u->prev->next = u->next;
	else
		*head = u->next;
	if (u->next)
		u->next->prev = u->prev;
	u->prev = u->next = NULL;
}

static void session__list_push(struct session_upstream **head, struct session_upstream *u)
{
	u->prev = NULL;
	u->next = *head;
	if (*head)
		(*head)->prev = u;
	*head = u;
}

static void session__pool_unlink(struct session_upstream *u)
{
	if (!u->pooled)
		return;
	session__list_unlink(&http_pool.head, u);
	u->pooled = false;
	http_pool.n--;
}

static void session__up_unlist(struct session_upstream *u)
{
	if (!u->listed)
		return;
	session__list_unlink(&u->c.s->upstreams, u);
	u->listed = false;
}

/* The connector's closed hook: the connection leaves its list; an owner
   whose connect or write failed hears of it now, from the loop. */
static void session__up_closed(struct backend_conn *c)
{
	struct session_upstream *u = (struct session_upstream *)c;
	struct session *s = c->s;
	void *owner = u->owner;
	int status = u->fail < 0 && u->fail != UV_EOF ? u->fail : UV_ECONNRESET;

	session__pool_unlink(u);
	session__up_unlist(u);
	u->owner = NULL;
	if (owner == NULL || s == NULL || s->closed)
		return;
	if (u->connected)
		s->proto->upstream_read(s, owner, NULL, status);
	else
		s->proto->upstream_connected(s, owner, status);
}

static void session__pool_drop(struct session_upstream *u)
{
	session__pool_unlink(u);
	stream_close(&u->c.st);
}

/* An idle connection got data or EOF: nobody asked, so it is done. */
static void session__pool_idle_read(struct stream *st, struct pbuf *b, int status)
{
	struct session_upstream *u = (struct session_upstream *)st;

	if (b != NULL)
		pbuf_put(b);
	session__pool_drop(u);
}

void session_http_pool_close(uv_loop_t *loop)
{
	int n = 0;

	while (http_pool.head != NULL) {
		session__pool_drop(http_pool.head);
		n++;
	}
	if (n > 0)
		uv_run(loop, UV_RUN_DEFAULT);
	/* Last, after anything that could still give a buffer back. */
	while (http_bufs.n > 0)
		free(http_bufs.buf[--http_bufs.n]);
}

/* ---- input and queues ---- */

int session_set_input_size(struct session *s, size_t cap)
{
	if (cap <= s->in_cap)
		return 0;
	if (s->in == NULL) {
		/* Released while idle (session_release_input): the next read
		   makes one of the new size. */
		if (s->in_cap > 0)
			s->in_cap = cap;
		return 0;
	}
	bool pooled;
	uint8_t *p = session__buf_new(s, cap, &pooled);
	if (p == NULL)
		return -ENOMEM;
	memcpy(p, s->in, s->in_len);
	secret_wipe(s->in, s->in_hwm);
	session__buf_free(s, s->in, s->in_pooled);
	s->in = p;
	s->in_pooled = pooled;
	s->in_cap = cap;
	return 0;
}

void session_release_input(struct session *s)
{
	if (s->in == NULL || s->in_len > 0 || s->in_pending != NULL)
		return;
	secret_wipe(s->in, s->in_hwm);
	session__buf_free(s, s->in, s->in_pooled);
	s->in = NULL;
	s->in_hwm = 0;
}

size_t session_client_queued(struct session *s)
{
	return s->client.queued;
}

void session_write_buf(struct session *s, struct pbuf *b)
{
	if (s->closed || s->finishing) {
		pbuf_put(b);
		return;
	}
	int rc = stream_write(&s->client, b);
	if (rc < 0) {
		session_log(s, LOG_INFO, "writing to client: %s", uv_strerror(rc));
		session_close(s, "client write failed");
	}
}

/* ---- an owner's connection ---- */

size_t session_upstream_queued(const struct session_upstream *u)
{
	return u->c.st.queued;
}

bool session_upstream_open(const struct session_upstream *u)
{
	return !u->c.st.closing && u->c.s != NULL && !u->c.s->closed;
}

bool session_upstream_reused(const struct session_upstream *u)
{
	return u->reused;
}

/* Close u for its owner: nothing more is delivered, unless fail says a
   write failed (then the closed hook reports it). */
static void session__up_close(struct session_upstream *u, int fail)
{
	if (u->c.st.closing)
		return;
	u->fail = fail;
	if (fail == 0)
		u->owner = NULL;
	stream_close(&u->c.st);
}

void session_upstream_reading(struct session_upstream *u, bool on)
{
	struct session *s = u->c.s;

	u->reading = on;
	if (s == NULL || s->closed || u->c.st.closing)
		return;
	if (!on) {
		stream_read_stop(&u->c.st);
	} else if (stream_read_start(&u->c.st) < 0) {
		/* The owner hears of it from the loop (no re-entrancy). */
		session__up_close(u, UV_EIO);
	}
}

void session_upstream_write_buf(struct session_upstream *u, struct pbuf *b)
{
	struct session *s = u->c.s;

	if (s == NULL || s->closed || u->c.st.closing) {
		b->wipe = true;
		pbuf_put(b);
		return;
	}
	b->wipe = true; /* a request body: it may hold anything */
	int rc = stream_write(&u->c.st, b);
	if (rc < 0) {
		session_log(s, LOG_WARN, "writing to backend %s: %s", u->key, uv_strerror(rc));
		session__up_close(u, rc);
	}
}

void session_upstream_write(struct session_upstream *u, const void *data, size_t len)
{
	struct session *s = u->c.s;

	if (s == NULL || s->closed || u->c.st.closing)
		return;
	int rc = stream_write_copy(&u->c.st, data, len, false);
	if (rc < 0) {
		session_log(s, LOG_WARN, "writing to backend %s: %s", u->key, uv_strerror(rc));
		session__up_close(u, rc);
	}
}

static void session__up_shut(uv_shutdown_t *req, int status)
{
	struct session_upstream *u = (struct session_upstream *)req->data;

	if (status < 0 && status != UV_ECANCELED && !u->c.st.closing && u->c.s != NULL &&
	    !u->c.s->closed) {
		session_log(u->c.s, LOG_INFO, "shutting down backend %s: %s", u->key,
			    uv_strerror(status));
		session__up_close(u, status);
	}
}

void session_upstream_shutdown(struct session_upstream *u)
{
	struct session *s = u->c.s;

	if (s == NULL || s->closed || u->c.st.closing || u->c.st.shut)
		return;
	int rc = stream_shutdown(&u->c.st, session__up_shut);
	if (rc < 0) {
		session_log(s, LOG_INFO, "shutting down backend %s: %s", u->key, uv_strerror(rc));
		session__up_close(u, rc);
	}
}

static void session__http_read(struct stream *st, struct pbuf *b, int status)
{
	struct session_upstream *u = (struct session_upstream *)st;
	struct session *s = u->c.s;
	void *owner = u->owner;

	if (owner == NULL || s == NULL || s->closed || st->closing) {
		if (b != NULL)
			pbuf_put(b);
		return;
	}
	if (!u->connected) {
		/* Still connecting (TLS reads for its handshake): nothing was
		   asked yet. The owner hears of it from the closed hook. */
		if (b != NULL)
			pbuf_put(b);
		session_log(s, LOG_DEBUG, "backend %s closed: %s", u->key,
			    b == NULL ? uv_strerror(status) : "unasked bytes");
		session__up_close(u, b == NULL ? status : UV_EPROTO);
		return;
	}
	if (b == NULL) {
		session_log(s, LOG_DEBUG, "backend %s closed: %s", u->key, uv_strerror(status));
		u->owner = NULL;
		session__up_close(u, 0);
		s->proto->upstream_read(s, owner, NULL, status);
		return;
	}
	/* A small response (head and body in one read) goes to the client
	   as one write and one TLS record, not one per session_write. The
	   session outlives this callback (its memory goes in a close
	   callback), so the client stream may be uncorked after it. */
	stream_cork(&s->client);
	s->proto->upstream_read(s, owner, b, 0);
	if (stream_uncork(&s->client) < 0 && !s->closed) {
		session_log(s, LOG_INFO, "writing to client failed");
		session_close(s, "client write failed");
	}
}

static void session__http_written(struct stream *st, int status)
{
	struct session_upstream *u = (struct session_upstream *)st;
	struct session *s = u->c.s;

	if (s == NULL || s->closed || u->owner == NULL || st->closing)
		return;
	if (status < 0) {
		session_log(s, LOG_INFO, "writing to backend %s: %s", u->key, uv_strerror(status));
		session__up_close(u, status);
		return;
	}
	if (s->proto->upstream_written)
		s->proto->upstream_written(s, u->owner);
}

/* The client stream's write callback while HTTP drives the session. */
static void session__http_client_written(struct stream *st, int status)
{
	struct session *s = st->owner;

	if (s->closed)
		return;
	session__client_written(s, status);
	if (s->closed)
		return;
	if (s->proto->client_written)
		s->proto->client_written(s);
}

/* ---- get and release ---- */

/* u serves s from now on (a new connection, or one from the pool). */
static void session__http_attach(struct session *s, struct session_upstream *u, void *owner)
{
	u->c.s = s;
	u->c.st.owner = s;
	u->c.st.on_read = session__http_read;
	u->c.st.on_written = session__http_written;
	u->owner = owner;
	u->fail = 0;
	u->reading = false;
	session__list_push(&s->upstreams, u);
	u->listed = true;
	s->client.on_written = session__http_client_written;
}

static void session__http_ready(struct backend_conn *c)
{
	struct session_upstream *u = (struct session_upstream *)c;
	struct session *s = c->s;
	void *owner = u->owner;

	u->connected = true;
	if (owner != NULL)
		s->proto->upstream_connected(s, owner, 0);
}

static void session__http_failed(struct backend_conn *c, int status)
{
	/* The closed hook tells the owner, from the loop. */
	session__up_close((struct session_upstream *)c, status);
}

static const struct backend_kind session__http_kind = {
	.size = sizeof(struct session_upstream),
	.on_read = session__http_read,
	.on_written = session__http_written,
	.ready = session__http_ready,
	.failed = session__http_failed,
	.closed = session__up_closed,
};

/* Does pooled u fit a request for host:port with TLS settings
   tls/verify/sni? The address alone is not enough: a plain connection must
   never serve a TLS group, nor one verified for another name. The host and
   port as asked for, not the "host:port" text: no string is built for a
   request a pooled connection serves. Nor does a group use another's
   kept connections (as nginx's per-upstream keepalive): each group's cap
   counts its own. */
static bool session__pool_fits(const struct session_upstream *u, const char *host,
			       uint16_t port, bool tls, bool verify, const char *sni,
			       const char *group)
{
	return u->port == port && u->c.tls == tls && u->c.verify == verify &&
	       strcmp(u->to, host) == 0 && (!tls || strcmp(u->host, sni) == 0) &&
	       strcmp(u->group, group) == 0;
}

/* An idle pooled connection that fits, young enough to reuse, or NULL. */
static struct session_upstream *session__pool_take(const char *host, uint16_t port, bool tls,
						   bool verify, const char *sni, const char *group,
						   uint64_t now)
{
	struct session_upstream *u = http_pool.head;

	while (u != NULL) {
		struct session_upstream *next = u->next;
		if (now - u->idle_since > HTTP_POOL_MAX_IDLE_MS) {
			session__pool_drop(u);
		} else if (session__pool_fits(u, host, port, tls, verify, sni, group)) {
			session__pool_unlink(u);
			return u;
		}
		u = next;
	}
	return NULL;
}

struct session_upstream *session_upstream_get(struct session *s, const char *host,
					      uint16_t port, void *owner, bool *ready_out)
{
	return session_upstream_get_opts(s, host, port, NULL, owner, ready_out);
}

struct session_upstream *session_upstream_get_opts(struct session *s, const char *host,
						   uint16_t port,
						   const struct session_upstream_opts *o,
						   void *owner, bool *ready_out)
{
	bool tls = o != NULL ? o->tls : s->conf->upstream.tls;
	bool verify = o != NULL ? o->verify : s->conf->upstream.verify;
	const char *sni = o != NULL && o->sni != NULL ? o->sni : host;
	const char *group = o != NULL && o->group != NULL ? o->group : "";

	*ready_out = false;
	if (s->closed)
		return NULL;
	struct session_upstream *u = session__pool_take(host, port, tls, verify, sni, group,
							session_now(s));
	if (u != NULL) {
		/* The idle connection keeps reading: the protocol sends its
		   request at once and nothing can be read before this returns.
		   Stopping and starting again cost libuv two epoll_ctl calls
		   per request. */
		uv_ref((uv_handle_t *)&u->c.st.tcp);
		s->refs++;
		session__http_attach(s, u, owner);
		u->reused = true;
		session_log(s, LOG_DEBUG, "reusing a pooled connection to %s", u->key);
		*ready_out = true;
		return u;
	}
	u = (struct session_upstream *)session__backend_new(s, &session__http_kind);
	if (u == NULL)
		return NULL;
	session__addr_name(u->key, sizeof(u->key), host, port);
	snprintf(u->to, sizeof(u->to), "%s", host);
	u->port = port;
	snprintf(u->host, sizeof(u->host), "%s", sni);
	snprintf(u->group, sizeof(u->group), "%s", group);
	u->keepalive = o != NULL ? o->keepalive : s->conf->http.backend_keepalive;
	u->c.addr = u->key;
	u->c.host = u->host;
	u->c.tls = tls;
	u->c.verify = verify;
	session__http_attach(s, u, owner);
	session__backend_connect(&u->c, host, port);
	return u;
}

const char *session_upstream_name(const struct session_upstream *u)
{
	return u->key;
}

void session_upstream_relay(struct session_upstream *u)
{
	struct session *s = u->c.s;

	session__up_unlist(u);
	u->owner = NULL;
	s->backend = &u->c.st;
	session_start_relay(s);
}

void session__upstreams_close(struct session *s)
{
	while (s->upstreams != NULL) {
		struct session_upstream *u = s->upstreams;
		session__up_unlist(u);
		session__up_close(u, 0);
	}
}

/* Keep at most max idle connections of group ("": the default ones,
   http.backend_keepalive): the oldest go first. */
static void session__pool_trim(const char *group, int max)
{
	int n = 0;

	/* The common case: the whole pool is within the cap, so no group can
	   be over it, and no walk nor string compare is needed. */
	if (http_pool.n <= max)
		return;
	for (struct session_upstream *u = http_pool.head; u != NULL;) {
		struct session_upstream *next = u->next;
		if (strcmp(u->group, group) == 0 && ++n > max)
			session__pool_drop(u);
		u = next;
	}
}

void session_upstream_release(struct session_upstream *u, bool reuse)
{
	struct session *s = u->c.s;

	session__up_unlist(u);
	u->owner = NULL;
	/* A group's own cap; the default ones follow a reload's setting. */
	int max_idle = u->group[0] ? u->keepalive : s->conf->http.backend_keepalive;
	if (!reuse || !u->connected || max_idle <= 0 || s->closed || u->c.st.queued > 0 ||
	    u->c.st.shut || u->c.st.closing) {
		session__up_close(u, 0);
		return;
	}
	/* Detach from the session: the pool owns it now. */
	u->c.s = NULL;
	u->reused = false;
	u->c.st.owner = u;
	u->c.st.on_written = NULL;
	u->c.st.on_read = session__pool_idle_read;
	u->idle_since = session_now(s);
	uv_unref((uv_handle_t *)&u->c.st.tcp);
	session__list_push(&http_pool.head, u);
	u->pooled = true;
	http_pool.n++;
	session__unref(s);
	/* Reading while idle notices a backend that closes; TLS may hand over
	   buffered bytes at once, which drops the connection right here. */
	if (stream_read_start(&u->c.st) < 0) {
		session__pool_drop(u);
		return;
	}
	/* Over the group's cap: drop its oldest. */
	session__pool_trim(u->group, max_idle);
}
