/*
 * session_http.c - what HTTP needs from a session beyond the login model:
 * a larger input buffer, queue sizes for backpressure, backend reads that
 * pause instead of dropping, and per-request backend connections kept in a
 * per-worker keep-alive pool.
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
/* See session__http_attach. */
#define HTTP_TLS_TRIM_BYTES 1024

struct http_bconn {
	struct backend_conn c;     /* first: s->backend points at c.st; c.s is NULL while idle */
	char key[ROUTE_MAX_HOST + 8]; /* "host:port" it is connected to */
	uint64_t idle_since;
	struct http_bconn *prev, *next; /* the worker's idle list */
	bool pooled;
};

static __thread struct {
	struct http_bconn *head;   /* most recently idle first */
	int n;
} http_pool;

/* Backend input buffers given back between requests, wiped, for the next
   request on this worker: an idle keep-alive client holds none, yet a
   request does not cost a malloc and free of 16 KiB. Bounded like the
   relay buffers' free list. */
#define HTTP_BIN_CACHE 16

static __thread struct {
	uint8_t *buf[HTTP_BIN_CACHE];
	size_t cap[HTTP_BIN_CACHE];
	int n;
} http_bins;

/* A buffer of cap bytes (from the cache when one of that size is there). */
static uint8_t *session__buf_get(size_t cap)
{
	while (http_bins.n > 0) {
		int i = --http_bins.n;
		if (http_bins.cap[i] == cap)
			return http_bins.buf[i];
		free(http_bins.buf[i]); /* http.max_header_size changed by a reload */
	}
	return malloc(cap);
}

/* Keep p (already wiped) for session__buf_get, or free it when the cache is full. */
static void session__buf_put(uint8_t *p, size_t cap)
{
	if (http_bins.n >= HTTP_BIN_CACHE) {
		free(p);
		return;
	}
	http_bins.buf[http_bins.n] = p;
	http_bins.cap[http_bins.n] = cap;
	http_bins.n++;
}

/* ---- the idle list ---- */

static void session__pool_unlink(struct http_bconn *bc)
{
	if (!bc->pooled)
		return;
	if (bc->prev)
		bc->prev->next = bc->next;
	else
		http_pool.head = bc->next;
	if (bc->next)
		bc->next->prev = bc->prev;
	bc->prev = bc->next = NULL;
	bc->pooled = false;
	http_pool.n--;
}

/* The connector's closed hook: the connection leaves the idle list. */
static void session__pool_closed(struct backend_conn *c)
{
	session__pool_unlink((struct http_bconn *)c);
}

static void session__pool_drop(struct http_bconn *bc)
{
	session__pool_unlink(bc);
	stream_close(&bc->c.st);
}

/* An idle connection got data or EOF: nobody asked, so it is done. */
static void session__pool_idle_read(struct stream *st, struct pbuf *b, int status)
{
	struct http_bconn *bc = (struct http_bconn *)st;

	if (b != NULL)
		pbuf_put(b);
	session__pool_drop(bc);
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
	while (http_bins.n > 0)
		free(http_bins.buf[--http_bins.n]);
}

/* ---- input and queues ---- */

int session_set_input_size(struct session *s, size_t cap)
{
	if (s->in == NULL || cap <= s->in_cap)
		return 0;
	uint8_t *p = malloc(cap);
	if (p == NULL)
		return -ENOMEM;
	memcpy(p, s->in, s->in_len);
	secret_wipe(s->in, s->in_cap);
	free(s->in);
	s->in = p;
	s->in_cap = cap;
	return 0;
}

size_t session_client_queued(struct session *s)
{
	return s->client.queued;
}

size_t session_backend_queued(struct session *s)
{
	return s->backend ? s->backend->queued : 0;
}

/* ---- backend reads ---- */

static void session__http_update_reading(struct session *s)
{
	if (s->closed || s->backend == NULL)
		return;
	if (s->backend_read_wanted && s->bin_pending == NULL) {
		/* Reached from session_backend_reading / _consume: the protocol
		   hears of a failure from the loop. */
		if (stream_read_start(s->backend) < 0) {
			session_close_backend(s);
			session__post(s, SESSION__POST_BACKEND_EOF, UV_EIO);
		}
	} else {
		stream_read_stop(s->backend);
	}
}

void session_backend_reading(struct session *s, bool on)
{
	s->backend_read_wanted = on;
	session__http_update_reading(s);
}

/* Move waiting backend bytes into s->bin as far as there is room. */
void session__http_bin_drain(struct session *s)
{
	if (session__drain(&s->bin_pending, s->bin, &s->bin_len, s->bin_cap, &s->bin_used))
		session__http_update_reading(s);
}

static void session__http_read(struct stream *st, struct pbuf *b, int status)
{
	struct session *s = st->owner;

	if (b == NULL) {
		session_log(s, LOG_DEBUG, "backend %s closed: %s", s->backend_addr,
			    uv_strerror(status));
		session_close_backend(s);
		s->proto->backend_eof(s, status);
		return;
	}
	if (s->bin == NULL) {
		size_t cap = s->conf->http.max_header_size;
		s->bin_cap = cap > SESSION_BACKEND_INBUF ? cap : SESSION_BACKEND_INBUF;
		s->bin = session__buf_get(s->bin_cap);
		s->bin_used = 0;
		if (s->bin == NULL) {
			pbuf_put(b);
			session_close(s, "out of memory");
			return;
		}
	}
	if (s->bin_pending != NULL) {
		/* Cannot happen (reads pause while bytes wait); keep order anyway. */
		pbuf_put(b);
		session_close(s, "backend input out of order");
		return;
	}
	s->bin_pending = b;
	session__http_bin_drain(s);
	session__http_update_reading(s);
	/* A small response (head and body in one read) goes to the client
	   as one write and one TLS record, not one per session_write. The
	   session outlives this callback (its memory goes in a close
	   callback), so the client stream may be uncorked after it. */
	stream_cork(&s->client);
	s->proto->backend_data(s);
	if (stream_uncork(&s->client) < 0 && !s->closed) {
		session_log(s, LOG_INFO, "writing to client failed");
		session_close(s, "client write failed");
	}
}

static void session__http_written(struct stream *st, int status)
{
	struct session *s = st->owner;

	if (s->closed || st != s->backend)
		return;
	if (status < 0) {
		session_log(s, LOG_INFO, "writing to backend %s: %s", s->backend_addr,
			    uv_strerror(status));
		session_close_backend(s);
		s->proto->backend_eof(s, status);
		return;
	}
	if (s->proto->backend_written)
		s->proto->backend_written(s);
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

/* ---- acquire and release ---- */

static void session__http_attach(struct session *s, struct backend_conn *c)
{
	struct http_bconn *bc = (struct http_bconn *)c;

	snprintf(bc->key, sizeof(bc->key), "%s", s->backend_addr);
	bc->c.s = s;
	bc->c.st.owner = s;
	bc->c.st.on_read = session__http_read;
	bc->c.st.on_written = session__http_written;
	s->backend = &bc->c.st;
	s->client.on_written = session__http_client_written;
	/* Keep-alive requests and small answers: trimming the client's TLS
	   buffers after every read costs two new BIOs a request, and idle
	   the connection holds at most this much in them. */
	s->client.tls_trim_bytes = HTTP_TLS_TRIM_BYTES;
}

static void session__http_ready(struct session *s)
{
	s->bin_len = 0;
	s->proto->backend_connected(s, 0);
}

static const struct backend_kind session__http_kind = {
	.size = sizeof(struct http_bconn),
	.on_read = session__http_read,
	.on_written = session__http_written,
	.attach = session__http_attach,
	.ready = session__http_ready,
	.closed = session__pool_closed,
};

/* An idle pooled connection to key, young enough to reuse, or NULL. */
static struct http_bconn *session__pool_take(const char *key, uint64_t now)
{
	struct http_bconn *bc = http_pool.head;

	while (bc != NULL) {
		struct http_bconn *next = bc->next;
		if (now - bc->idle_since > HTTP_POOL_MAX_IDLE_MS) {
			session__pool_drop(bc);
		} else if (strcmp(bc->key, key) == 0) {
			session__pool_unlink(bc);
			return bc;
		}
		bc = next;
	}
	return NULL;
}

bool session_backend_acquire(struct session *s, const char *host, uint16_t port)
{
	if (s->closed)
		return false;
	/* Keep-alive clients mostly go to the backend of their last request:
	   its name is set already (three snprintf calls saved). */
	if (s->backend_addr[0] == '\0' || s->backend_port != port ||
	    strcmp(s->backend_host, host) != 0)
		session__backend_target(s, host, port);
	s->bin_len = 0;
	s->backend_read_wanted = false;

	struct http_bconn *bc = session__pool_take(s->backend_addr, session_now(s));
	if (bc != NULL) {
		/* The idle connection keeps reading: the protocol sends its
		   request from session__http_ready and asks for the answer at once, and
		   nothing can be read before this returns. Stopping and starting
		   again cost libuv two epoll_ctl calls per request. */
		uv_ref((uv_handle_t *)&bc->c.st.tcp);
		s->refs++;
		session__http_attach(s, &bc->c);
		s->backend_reused = true;
		session_log(s, LOG_DEBUG, "reusing a pooled connection to %s", s->backend_addr);
		s->bin_len = 0;
		/* No callback: the caller goes on as after a connect, and asks to
		   read when it has sent its request. */
		return true;
	}
	s->backend_reused = false;
	session__backend_open(s, host, port, &session__http_kind);
	return false;
}

/* Between requests a keep-alive client holds no backend input buffer; it
   may have held Set-Cookie tokens, so it is wiped: only the bytes ever
   filled, since wiping the whole buffer for a small response was the
   largest single cost of a request in user space. */
static void session__http_free_bin(struct session *s)
{
	if (s->bin == NULL || s->bin_len > 0 || s->bin_pending != NULL)
		return;
	secret_wipe(s->bin, s->bin_used < s->bin_cap ? s->bin_used : s->bin_cap);
	s->bin_used = 0;
	session__buf_put(s->bin, s->bin_cap);
	s->bin = NULL;
	s->bin_cap = 0;
}

void session_backend_release(struct session *s, bool reuse)
{
	struct http_bconn *bc = (struct http_bconn *)s->backend;

	if (bc == NULL)
		return;
	if (s->bin_pending != NULL) {
		/* Unread backend bytes: the connection is not clean. */
		pbuf_put(s->bin_pending);
		s->bin_pending = NULL;
		reuse = false;
	}
	int max_idle = s->conf->http.backend_keepalive;
	if (!reuse || max_idle <= 0 || s->closed || bc->c.st.queued > 0 || bc->c.st.shut ||
	    bc->c.st.closing) {
		session_close_backend(s);
		session__http_free_bin(s);
		return;
	}
	/* Detach from the session: the pool owns it now. */
	s->backend = NULL;
	s->bin_len = 0;
	s->backend_read_wanted = false;
	session__http_free_bin(s);
	bc->c.s = NULL;
	bc->c.st.owner = bc;
	bc->c.st.on_written = NULL;
	bc->c.st.on_read = session__pool_idle_read;
	bc->idle_since = session_now(s);
	uv_unref((uv_handle_t *)&bc->c.st.tcp);
	bc->next = http_pool.head;
	if (http_pool.head)
		http_pool.head->prev = bc;
	http_pool.head = bc;
	bc->pooled = true;
	http_pool.n++;
	session__unref(s);
	/* Reading while idle notices a backend that closes; TLS may hand over
	   buffered bytes at once, which drops the connection right here. */
	if (stream_read_start(&bc->c.st) < 0)
		session__pool_drop(bc);
	/* Over the cap: drop the oldest. */
	while (http_pool.n > max_idle) {
		struct http_bconn *last = http_pool.head;
		while (last->next)
			last = last->next;
		session__pool_drop(last);
	}
}
