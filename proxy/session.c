/*
 * session.c - session lifecycle: accept, phases and their timeouts, the
 * pre-login input buffers, route resolution and closing.
 *
 * Every handle and pending request a session owns holds one count in
 * s->refs; the session is freed when the count drops to zero after
 * session_close(). Callbacks that arrive after session_close() (cancelled
 * writes, a DNS answer) only drop their count.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"
#include "connlimit.h"
#include "gh.h"
#include "metrics.h"
#include "session_int.h"
#include "tls.h"
#include "worker.h"
#include "secret.h"

const char *const session_phase_names[] = {
	[SESSION_PREAUTH] = "PREAUTH",
	[SESSION_PROXY_HEADER] = "PROXY_HEADER",
	[SESSION_THROTTLE] = "THROTTLE",
	[SESSION_TLS_HANDSHAKE] = "TLS_HANDSHAKE",
	[SESSION_LOOKUP] = "LOOKUP",
	[SESSION_AUTH_WAIT] = "AUTH_WAIT",
	[SESSION_BACKEND_CONNECT] = "BACKEND_CONNECT",
	[SESSION_BACKEND_LOGIN] = "BACKEND_LOGIN",
	[SESSION_RELAY] = "RELAY",
	[SESSION_HTTP_IDLE] = "HTTP_IDLE",
	[SESSION_HTTP_FORWARD] = "HTTP_FORWARD",
	[SESSION_CLOSING] = "CLOSING",
};
GH_NAMES_CHECK(session_phase_names, SESSION_NPHASES);

/* How long session_finish waits for the last bytes to reach the client. */
#define SESSION_FINISH_SECS 5.0

static atomic_uint_fast64_t session_next_id;
static pthread_once_t session_ids_once = PTHREAD_ONCE_INIT;

/* Ids start from the clock so they do not repeat across restarts. */
static void session__ids_init(void)
{
	atomic_store(&session_next_id, (uint64_t)time(NULL) << 20);
}

static uint64_t session__next_id(void)
{
	pthread_once(&session_ids_once, session__ids_init);
	return atomic_fetch_add(&session_next_id, 1) + 1;
}

static const struct session_proto *session__protos[CONF_PROTO_COUNT];

void session_register(enum conf_proto p, const struct session_proto *ops)
{
	if ((unsigned)p < CONF_PROTO_COUNT)
		session__protos[p] = ops;
}

uint64_t session_now(struct session *s)
{
	return uv_now(&s->w->loop);
}

void session_log(struct session *s, enum log_level level, const char *fmt, ...)
{
	char msg[1536];
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_write(level, "session=%s client=%s:%u phase=%s %s", s->idstr, s->client_ip,
		  s->client_port, session_phase_names[s->phase], msg);
}

/* Move s in the connections-by-phase gauge to `to` (-1: out of it). */
static void session__count_phase(struct session *s, int to)
{
	metrics_phase((int)s->listener->proto, (int)s->metrics_phase - 1, to);
	s->metrics_phase = (uint8_t)(to + 1);
}

static void session__free_block(struct session *s);

void session__unref(struct session *s)
{
	if (--s->refs > 0)
		return;
	/* Only now: a protocol that called something which closed the
	   session keeps its state until it has returned to the loop. */
	if (s->proto_state)
		s->proto->destroy(s);
	session__count_phase(s, -1);
	if (s->in) {
		secret_wipe(s->in, s->in_hwm);
		session__buf_free(s, s->in, s->in_pooled);
	}
	if (s->bin) {
		secret_wipe(s->bin, s->bin_hwm);
		session__buf_free(s, s->bin, s->bin_pooled);
	}
	free(s->backend_host);
	if (s->conn_counted)
		connlimit_release(s->counted_ip);
	worker_session_gone(s->w, s);
	conf_unref(s->conf);
	session__free_block(s);
}


static void session__client_closed(struct stream *st)
{
	session__unref(st->owner);
}

static void session__handle_closed(uv_handle_t *h)
{
	session__unref(h->data);
}

/* ---- posted results ---- */

static void session__posted(uv_idle_t *h)
{
	struct session *s = h->data;
	unsigned what = s->posted;
	int status = s->posted_status;

	uv_idle_stop(h);
	s->posted = 0;
	if (s->closed)
		return;
	if (what & SESSION__POST_BACKEND_EOF)
		s->proto->backend_eof(s, status);
	else if (what & SESSION__POST_BACKEND_CONNECTED)
		s->proto->backend_connected(s, status);
	if ((what & SESSION__POST_CLIENT_WRITTEN) && !s->closed && s->proto->client_written)
		s->proto->client_written(s);
}

void session_post_written(struct session *s)
{
	session__post(s, SESSION__POST_CLIENT_WRITTEN, s->posted_status);
}

void session__post(struct session *s, unsigned what, int status)
{
	if (s->closed)
		return;
	s->posted |= what;
	s->posted_status = status;
	uv_idle_start(&s->post, session__posted);
}

/* ---- timers ---- */

/*
 * Arm the timer for ms from now. Lazily, as nginx's timers: a timer
 * already armed to fire no later than that is left alone (HTTP moves its
 * deadline several times per request, mostly later: a restart costs two
 * heap operations each time); when it fires early, session__timer_fired
 * sleeps for the rest and nothing else happens.
 */
static void session__timer_start(struct session *s, uint64_t ms)
{
	s->timer_due_ms = session_now(s) + ms;
	if (ms > 0 && uv_is_active((const uv_handle_t *)&s->timer) &&
	    uv_timer_get_due_in(&s->timer) <= ms)
		return;
	uv_timer_start(&s->timer, session__timer_fired, ms, 0);
}

static void session__timer_stop(struct session *s)
{
	s->timer_due_ms = 0;
	uv_timer_stop(&s->timer);
}

static void session__arm(struct session *s, double secs)
{
	if (s->closed)
		return;
	s->timer_secs = secs;
	session__timer_start(s, secs <= 0 ? 0 : (uint64_t)(secs * 1000.0 + 0.5));
}

void session_delay(struct session *s, double secs)
{
	session__arm(s, secs);
}

void session_set_phase(struct session *s, enum session_phase phase)
{
	const struct conf *c = s->conf;

	if (s->closed)
		return;
	s->phase = phase;
	session__count_phase(s, (int)phase);
	switch (phase) {
	case SESSION_PREAUTH:
	case SESSION_TLS_HANDSHAKE:
		session__arm(s, c->limits.preauth_timeout);
		break;
	case SESSION_HTTP_IDLE:
		/* A connection gets header_timeout for its first request head,
		   like every later one (slowloris); the protocol arms its
		   keep-alive timer between requests itself. */
		session__arm(s, c->http.header_timeout);
		break;
	case SESSION_HTTP_FORWARD:
		session__arm(s, c->http.backend_timeout);
		break;
	case SESSION_BACKEND_CONNECT:
		session__arm(s, c->limits.connect_timeout);
		break;
	case SESSION_PROXY_HEADER:
		session__arm(s, c->limits.proxy_header_timeout);
		break;
	case SESSION_THROTTLE:   /* memcached is bounded; this is the backstop */
		session__arm(s, c->limits.preauth_timeout);
		break;
	case SESSION_BACKEND_LOGIN:
		session__arm(s, c->limits.backend_timeout);
		break;
	case SESSION_RELAY:
		s->relay.last_activity_ms = session_now(s);
		session__arm(s, c->limits.idle_timeout);
		break;
	case SESSION_LOOKUP:     /* the lookup client bounds its own time */
	case SESSION_AUTH_WAIT:  /* the protocol arms session_delay */
	case SESSION_CLOSING:
	case SESSION_NPHASES:
		session__timer_stop(s);
		break;
	}
}

void session__timer_fired(uv_timer_t *t)
{
	struct session *s = t->data;

	if (s->closed)
		return;
	/* Armed earlier than the time now asked for (session__timer_start):
	   only the rest to sleep. */
	uint64_t now = session_now(s);
	if (s->timer_due_ms > now) {
		uv_timer_start(&s->timer, session__timer_fired, s->timer_due_ms - now, 0);
		return;
	}
	s->timer_due_ms = 0;
	switch (s->phase) {
	case SESSION_RELAY: {
		uint64_t idle_ms = (uint64_t)(s->conf->limits.idle_timeout * 1000.0);
		uint64_t quiet = session_now(s) - s->relay.last_activity_ms;
		if (quiet >= idle_ms) {
			session_log(s, LOG_INFO, "idle for %.0f s, closing", s->conf->limits.idle_timeout);
			metrics_error(METRICS_ERR_TIMEOUT_IDLE);
			session_close(s, "idle timeout");
		} else {
			/* Traffic since the timer was armed: sleep for the rest. */
			session__timer_start(s, idle_ms - quiet);
		}
		return;
	}
	case SESSION_BACKEND_CONNECT:
		session_log(s, LOG_WARN, "connecting to backend %s: timed out after %.1f s",
			    s->backend_addr, s->conf->limits.connect_timeout);
		metrics_error(METRICS_ERR_BACKEND_CONNECT);
		session_close_backend(s);
		s->proto->backend_connected(s, UV_ETIMEDOUT);
		return;
	case SESSION_CLOSING:
		session_close(s, s->close_reason ? s->close_reason : "closing timed out");
		return;
	case SESSION_PROXY_HEADER:
		session_log(s, LOG_WARN, "no complete PROXY header within %.1f s, closing",
			    s->conf->limits.proxy_header_timeout);
		session_close(s, "PROXY header timeout");
		return;
	case SESSION_THROTTLE:
		session__throttle_timeout(s);
		return;
	case SESSION_TLS_HANDSHAKE:
		session_log(s, LOG_INFO, "TLS handshake not done within %.0f s, closing",
			    s->conf->limits.preauth_timeout);
		metrics_error(METRICS_ERR_TIMEOUT_PREAUTH);
		session_close(s, "TLS handshake timeout");
		return;
	default:
		/* HTTP_FORWARD: the timer serves several exchanges' deadlines
		   (a connect, a backend's answer); HTTP counts what fired. */
		if (s->phase == SESSION_PREAUTH || s->phase == SESSION_HTTP_IDLE)
			metrics_error(METRICS_ERR_TIMEOUT_PREAUTH);
		else if (s->phase == SESSION_BACKEND_LOGIN)
			metrics_error(METRICS_ERR_TIMEOUT_BACKEND);
		s->proto->timeout(s);
		return;
	}
}

/* ---- client I/O before login ---- */

/* Move pending bytes into s->in as far as there is room. */
bool session__drain(struct pbuf **pending, uint8_t *buf, size_t *len, size_t cap, size_t *hwm)
{
	struct pbuf *b = *pending;

	if (b == NULL || buf == NULL)
		return false;
	size_t n = b->len < cap - *len ? b->len : cap - *len;
	memcpy(buf + *len, b->data + b->off, n);
	*len += n;
	if (*len > *hwm)
		*hwm = *len;
	b->off += (uint32_t)n;
	b->len -= (uint32_t)n;
	if (b->len > 0)
		return false;
	b->wipe = true;
	pbuf_put(b);
	*pending = NULL;
	return true;
}

/* s->in released while idle (session_release_input): make it again, at
   its size, before bytes go in. */
static int session__in_ready(struct session *s)
{
	if (s->in != NULL || s->in_cap == 0)
		return 0;
	s->in = session__buf_new(s, s->in_cap, &s->in_pooled);
	return s->in != NULL ? 0 : -ENOMEM;
}

static void session__drain_pending(struct session *s)
{
	session__drain(&s->in_pending, s->in, &s->in_len, s->in_cap, &s->in_hwm);
}

/*
 * Read from the client when the protocol wants bytes and none are waiting.
 * When the protocol stops wanting bytes (a LOGIN goes to the lookup and the
 * backend), reading is not stopped at once but only if the client actually
 * sends something meanwhile: clients almost never do, and each stop/start
 * costs two epoll_ctl calls per login. Bytes that do arrive wait in s->in (or
 * in_pending) for the protocol, as before; an EOF or error that arrives is
 * left in the socket, where the next read finds it again (TLS streams, whose
 * close_notify would be consumed, stop at once: session_client_reading).
 */
static void session__update_reading(struct session *s)
{
	if (s->closed)
		return;
	if (s->in_pending != NULL || s->out_blocked) {
		stream_read_stop(&s->client);
	} else if (s->read_wanted) {
		/* Closing here calls nothing of the protocol (session.h). */
		if (stream_read_start(&s->client) < 0)
			session_close(s, "client read failed");
	}
}

static void session__client_read(struct stream *st, struct pbuf *b, int status)
{
	struct session *s = st->owner;

	if (b == NULL) {
		if (!s->read_wanted && s->phase != SESSION_PROXY_HEADER) {
			stream_read_stop(&s->client);
			return;
		}
		if (s->phase == SESSION_PROXY_HEADER) {
			session_log(s, LOG_WARN, "connection closed before a complete PROXY header");
			session_close(s, "client closed");
			return;
		}
		s->proto->client_eof(s, status);
		return;
	}
	if (GH_BUG_ON(s->in_pending != NULL)) {
		/* Reads pause while bytes wait; in a release build keep order anyway. */
		stream_read_stop(&s->client);
		b->wipe = true;
		pbuf_put(b);
		session_close(s, "client input out of order");
		return;
	}
	if (s->in_direct && s->in_len == 0 && s->read_wanted && s->proto->client_buf != NULL &&
	    s->phase != SESSION_PROXY_HEADER && s->phase != SESSION_THROTTLE) {
		/* A request body: the protocol takes the buffer (no copy into
		   s->in) and gives back what it does not use. */
		s->proto->client_buf(s, b);
		return;
	}
	if (session__in_ready(s) < 0) {
		b->wipe = true;
		pbuf_put(b);
		session_close(s, "out of memory");
		return;
	}
	s->in_pending = b;
	session__drain_pending(s);
	if (!s->read_wanted) {
		/* The protocol finds these bytes in s->in when it reads again. */
		stream_read_stop(&s->client);
		return;
	}
	session__update_reading(s);
	if (s->phase == SESSION_PROXY_HEADER)
		session__proxy_data(s);
	else if (s->phase == SESSION_THROTTLE)
		session_client_reading(s, false); /* kept until the greeting is sent */
	else
		s->proto->client_data(s);
}

void session_client_reading(struct session *s, bool on)
{
	s->read_wanted = on;
	/* A TLS close_notify read now could not be found again later (plain
	   sockets keep their EOF): TLS clients stop at once. */
	if (!on && s->client.tls)
		stream_read_stop(&s->client);
	session__update_reading(s);
}

void session_client_direct(struct session *s, bool on)
{
	s->in_direct = on;
}

void session_client_unread(struct session *s, struct pbuf *b)
{
	if (s->closed || b->len == 0 || GH_BUG_ON(s->in_pending != NULL)) {
		b->wipe = true;
		pbuf_put(b);
		return;
	}
	if (session__in_ready(s) < 0) {
		b->wipe = true;
		pbuf_put(b);
		session_close(s, "out of memory");
		return;
	}
	s->in_pending = b;
	session__drain_pending(s);
	session__update_reading(s);
}

void session_consume(struct session *s, size_t n)
{
	if (n >= s->in_len) {
		s->in_len = 0;
	} else {
		memmove(s->in, s->in + n, s->in_len - n);
		s->in_len -= n;
	}
	if (s->in_pending) {
		session__drain_pending(s);
		if (s->in_pending == NULL)
			session__update_reading(s);
	}
}

void session_backend_consume(struct session *s, size_t n)
{
	if (n >= s->bin_len) {
		s->bin_len = 0;
	} else {
		memmove(s->bin, s->bin + n, s->bin_len - n);
		s->bin_len -= n;
	}
}

bool session_client_blocked(const struct session *s)
{
	return s->out_blocked;
}

/* After a write: past the pre-login bound, stop reading (and the protocol
   stops handling commands: session_client_blocked). */
static void session__check_output(struct session *s)
{
	if (s->out_blocked || s->phase == SESSION_RELAY ||
	    s->client.queued <= s->conf->limits.preauth_output)
		return;
	s->out_blocked = true;
	stream_read_stop(&s->client);
	session_log(s, LOG_DEBUG, "client reads nothing: %zu bytes of answers wait, pausing",
		    s->client.queued);
}

void session__client_written(struct session *s, int status)
{
	if (s->closed)
		return;
	if (status < 0) {
		session_log(s, LOG_INFO, "writing to client: %s", uv_strerror(status));
		session_close(s, "client write failed");
		return;
	}
	if (!s->out_blocked || s->client.queued > s->conf->limits.preauth_output / 2)
		return;
	s->out_blocked = false;
	session__update_reading(s);
	/* Commands read before the pause wait in s->in. */
	if (!s->finishing && (s->phase == SESSION_PREAUTH || s->phase == SESSION_HTTP_IDLE) &&
	    s->in_len > 0 && s->proto_state)
		s->proto->client_data(s);
}

static void session__client_wrote(struct stream *st, int status)
{
	session__client_written(st->owner, status);
}

void session_write(struct session *s, const void *data, size_t len)
{
	if (s->closed || s->finishing)
		return;
	int rc = stream_write_copy(&s->client, data, len, false);
	if (rc < 0) {
		session_log(s, LOG_INFO, "writing to client: %s", uv_strerror(rc));
		session_close(s, "client write failed");
		return;
	}
	session__check_output(s);
}

void session_writev(struct session *s, const struct iovec *iov, int n)
{
	size_t len = 0;

	if (s->closed || s->finishing)
		return;
	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	struct pbuf *b = pbuf_get_size(s->client.pool, len);
	if (b == NULL) {
		session_close(s, "out of memory");
		return;
	}
	b->len = 0;
	for (int i = 0; i < n; i++) {
		memcpy(b->data + b->len, iov[i].iov_base, iov[i].iov_len);
		b->len += (uint32_t)iov[i].iov_len;
	}
	int rc = stream_write(&s->client, b);
	if (rc < 0) {
		session_log(s, LOG_INFO, "writing to client: %s", uv_strerror(rc));
		session_close(s, "client write failed");
		return;
	}
	session__check_output(s);
}

void session_writef(struct session *s, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	session_write(s, buf, (size_t)n);
}

void session_backend_write(struct session *s, const void *data, size_t len, bool secret)
{
	if (s->closed || s->backend == NULL)
		return;
	int rc = stream_write_copy(s->backend, data, len, secret);
	if (rc < 0) {
		session_log(s, LOG_WARN, "writing to backend %s: %s", s->backend_addr, uv_strerror(rc));
		session_close_backend(s);
		session__post(s, SESSION__POST_BACKEND_EOF, rc);
	}
}

/* ---- route resolution ---- */

static void session__route_done(struct route_req *req, const struct route *r, void *arg)
{
	struct session *s = arg;

	s->route_req = NULL;
	if (s->closed)
		return;
	s->proto->route_done(s, r);
}

void session__resolve_now(struct session *s, const struct route_query *q)
{
	session_set_phase(s, SESSION_LOOKUP);
	s->route_req = route_resolve(&s->w->loop, s->conf, q, session__route_done, s);
	if (s->route_req == NULL)
		session_close(s, "out of memory");
}

void session_resolve(struct session *s, const struct route_query *q)
{
	if (session__throttle_login(s, q))
		return;
	session__resolve_now(s, q);
}

void session_route_invalidate(struct session *s, const struct route_query *q,
			      const struct route *r)
{
	route_invalidate(&s->w->loop, s->conf, q, r);
}

/* ---- closing ---- */

void session_close(struct session *s, const char *reason)
{
	if (s->closed)
		return;
	s->closed = true;
	s->phase = SESSION_CLOSING;
	session__count_phase(s, SESSION_CLOSING);
	session_log(s, LOG_DEBUG, "closing: %s", reason);
	if (s->route_req) {
		route_cancel(s->route_req);
		s->route_req = NULL;
	}
	session__throttle_cancel(s);
	/* The protocol's state goes with the session's memory (session__unref):
	   the caller may be the protocol, deep in its own code. */
	if (s->in_pending) {
		s->in_pending->wipe = true;
		pbuf_put(s->in_pending);
		s->in_pending = NULL;
	}
	session_close_backend(s);
	session__upstreams_close(s);
	stream_close(&s->client);
	uv_close((uv_handle_t *)&s->timer, session__handle_closed);
	uv_close((uv_handle_t *)&s->post, session__handle_closed);
}

/* Lingering: the client's end (EOF, an error) closes; its bytes were dropped. */
static void session__lingered(struct stream *st, struct pbuf *b, int status)
{
	(void)status;
	if (b != NULL) { /* plaintext a TLS stream held from before */
		pbuf_put(b);
		return;
	}
	struct session *s = st->owner;
	session_close(s, s->close_reason ? s->close_reason : "finished");
}

/*
 * The last bytes and the FIN are out. A client that may still be sending
 * (cut off in the middle of its input, or with bytes not read yet: a
 * flood, a request sent as an idle connection closed) would get a reset
 * from close() with its bytes unread, and a reset may cost the client the
 * answer it has not read yet (a GOAWAY, an error line): as nginx's
 * lingering close, its bytes are read and dropped until it closes too, or
 * the timer session_finish armed (SESSION_FINISH_SECS) runs out. Not a
 * client whose time ran out (a slowloris): as nginx, it gets no more.
 */
static void session__finished(uv_shutdown_t *req, int status)
{
	struct stream *st = req->data;
	struct session *s = st->owner;

	if (status == 0 && !s->closed && !s->no_linger && (s->in_len > 0 || stream_unread(st) > 0)) {
		st->on_read = session__lingered;
		if (stream_discard_input(st) == 0) {
			session_log(s, LOG_DEBUG, "lingering: dropping what the client still sends");
			return;
		}
	}
	session_close(s, s->close_reason ? s->close_reason : "finished");
}

void session_finish(struct session *s, const char *reason)
{
	if (s->closed || s->finishing)
		return;
	s->finishing = true;
	s->close_reason = reason;
	stream_read_stop(&s->client);
	session__throttle_cancel(s);
	if (s->route_req) {
		route_cancel(s->route_req);
		s->route_req = NULL;
	}
	session_close_backend(s);
	session__upstreams_close(s);
	session_set_phase(s, SESSION_CLOSING);
	session__arm(s, SESSION_FINISH_SECS);
	if (stream_shutdown(&s->client, session__finished) < 0)
		session_close(s, reason);
}

void session_finish_timed_out(struct session *s, const char *reason)
{
	s->no_linger = true;
	session_finish(s, reason);
}

/* ---- accept ---- */

/* The session's own block: a mail session's from the worker's slab. */
static void session__free_block(struct session *s)
{
	if (s->bc_room)
		slab_put(&s->w->mail_sessions, s);
	else
		free(s);
}

/*
 * Login-phase buffers from the worker's pool. A storm of logins used to
 * malloc and free 8 KiB (s->in) and 16 KiB (s->bin) per login between the
 * session structs allocated at the same time, so once the storm was over
 * each idle session sat alone on its pages, between freed holes smaller
 * than a page that malloc_trim cannot return (RSS per idle plain IMAP
 * session 4.9-5.2 KiB for 2.4 KiB allocated). Pool buffers are taken and
 * given back login after login, so the long-lived structs pack together.
 */
uint8_t *session__buf_new(struct session *s, size_t cap, bool *pooled_out)
{
	struct pool *p = &s->w->pool;

	*pooled_out = cap <= p->size;
	if (!*pooled_out)
		return malloc(cap);
	struct pbuf *b = pbuf_get(p);
	return b != NULL ? b->data : NULL;
}

void session__buf_free(struct session *s, uint8_t *p, bool pooled)
{
	(void)s;
	if (p == NULL)
		return;
	if (!pooled) {
		free(p);
		return;
	}
	pbuf_put((struct pbuf *)(void *)(p - offsetof(struct pbuf, data)));
}

struct session *session_new(struct worker *w, struct listener *l)
{
	struct conf *c = w->conf;
	bool mail = l->cl->proto == CONF_PROTO_IMAP || l->cl->proto == CONF_PROTO_POP3;
	if (mail && w->mail_sessions.size == 0) /* the worker's first */
		slab_init(&w->mail_sessions, sizeof(struct session_mail));
	struct session *s = mail ? slab_get(&w->mail_sessions) : malloc(sizeof(*s));

	if (s == NULL)
		return NULL;
	memset(s, 0, mail ? sizeof(struct session_mail) : sizeof(*s));
	s->bc_room = mail;
	s->w = w;
	list_init(&s->worker_link);
	s->conf = conf_ref(c);
	/* The listener's settings (tls, starttls) come from the session's own
	   snapshot, so a reload changes them for new sessions; the address
	   bound stays the one from start-up (main refuses to pretend otherwise). */
	s->listener = l->cl;
	if (l->index < c->nlisten && c->listen[l->index].proto == l->cl->proto &&
	    c->listen[l->index].addrlen == l->cl->addrlen &&
	    memcmp(&c->listen[l->index].addr, &l->cl->addr, l->cl->addrlen) == 0)
		s->listener = &c->listen[l->index];
	s->proto = session__protos[s->listener->proto];
	s->id = session__next_id();
	snprintf(s->idstr, sizeof(s->idstr), "%llx", (unsigned long long)s->id);
	s->in_cap = c->limits.max_line + 1;
	s->in = s->proto != NULL ? session__buf_new(s, s->in_cap, &s->in_pooled) : NULL;
	if (s->in == NULL || stream_init(&s->client, &w->loop, &w->pool, s) < 0) {
		session__buf_free(s, s->in, s->in_pooled);
		conf_unref(s->conf);
		session__free_block(s);
		return NULL;
	}
	s->refs = 1;
	s->client.on_read = session__client_read;
	s->client.on_written = session__client_wrote;
	s->client.on_close = session__client_closed;
	uv_timer_init(&w->loop, &s->timer);
	s->timer.data = s;
	s->refs++;
	uv_idle_init(&w->loop, &s->post);
	s->post.data = s;
	s->refs++;
	s->started_ms = uv_now(&w->loop);
	strcpy(s->client_ip, "?");
	strcpy(s->local_ip, "?");
	return s;
}

static const char *session__alpn(const struct session *s)
{
	switch (s->listener->proto) {
	case CONF_PROTO_IMAP:
		return "imap";
	case CONF_PROTO_POP3:
		return "pop3";
	case CONF_PROTO_HTTP:
		return s->listener->http2 ? "h2,http/1.1" : "http/1.1";
	default:
		return NULL;
	}
}

static void session__tls_done(struct stream *st, int status)
{
	struct session *s = st->owner;

	if (s->closed)
		return;
	if (status < 0) {
		session_log(s, LOG_INFO, "TLS handshake failed: %s", tls_error(s->client.tls));
		metrics_tls_handshake(false, false);
		session_close(s, "TLS handshake failed");
		return;
	}
	s->tls_active = true;
	metrics_tls_handshake(true, tls_resumed(s->client.tls));
	session_log(s, LOG_DEBUG, "TLS established: %s %s%s%s%s", tls_version(s->client.tls),
		    tls_cipher(s->client.tls), tls_sni(s->client.tls)[0] ? " sni=" : "",
		    tls_sni(s->client.tls), tls_resumed(s->client.tls) ? " resumed" : "");
	if (s->starttls_done) {
		session_set_phase(s, SESSION_PREAUTH);
		s->proto->tls_started(s);
		return;
	}
	/* Implicit TLS: only now does the client get its greeting (the
	   throttle's refusal, too, is sent inside TLS). */
	session__admit(s);
}

/* Start the server side of TLS. early: what s->in and s->in_pending hold is
   ciphertext already read (the bytes behind a PROXY header): feed it first,
   and let no byte of it stay in the plaintext buffers. */
static int session__begin_tls(struct session *s, bool early)
{
	struct tls_conn *t =
		tls_conn_server(s->conf->tls_server, s->w ? s->w->id : 0, session__alpn(s));
	int rc = 0;

	if (early) {
		if (t != NULL && s->in_len > 0 && tls_feed(t, s->in, s->in_len) < 0)
			rc = -1;
		secret_wipe(s->in, s->in_len);
		s->in_len = 0;
		if (s->in_pending != NULL) {
			struct pbuf *b = s->in_pending;
			s->in_pending = NULL;
			if (t != NULL && rc == 0 && tls_feed(t, b->data + b->off, b->len) < 0)
				rc = -1;
			b->wipe = true;
			pbuf_put(b);
		}
	}
	if (t == NULL || rc < 0 || stream_start_tls(&s->client, t, session__tls_done) < 0) {
		tls_conn_free(t);
		return -1;
	}
	session_set_phase(s, SESSION_TLS_HANDSHAKE);
	return 0;
}

bool session_client_alpn_h2(const struct session *s)
{
	return s->client.tls != NULL && tls_alpn_is(s->client.tls, "h2");
}

bool session_starttls_available(struct session *s)
{
	return !s->tls_active && !s->client.tls && s->listener->starttls != CONF_STARTTLS_OFF &&
	       tls_server_ready(s->conf->tls_server);
}

void session_starttls(struct session *s)
{
	if (s->closed || s->finishing)
		return;
	if (!session_starttls_available(s)) {
		session_close(s, "STARTTLS not available");
		return;
	}
	/* Nothing the client sent before the handshake may reach the TLS side. */
	secret_wipe(s->in, s->in_len);
	s->in_len = 0;
	if (s->in_pending) {
		s->in_pending->wipe = true;
		pbuf_put(s->in_pending);
		s->in_pending = NULL;
	}
	s->starttls_done = true;
	if (session__begin_tls(s, false) < 0)
		session_close(s, "out of memory");
}

/* The listener's own address when it names one, so no getsockname is needed. */
static bool session__listener_addr(const struct conf_listen *cl)
{
	const struct sockaddr *sa = (const struct sockaddr *)&cl->addr;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		return a->sin_addr.s_addr != htonl(INADDR_ANY) && a->sin_port != 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		return !IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr) && a->sin6_port != 0;
	}
	return false;
}

void session_start(struct session *s, const struct sockaddr *peer)
{
	metrics_accepted((int)s->listener->proto);
	/* TCP_NODELAY and keepalive come from the listening socket (worker.c). */
	if (peer == NULL || stream_addr_name(peer, s->client_ip, sizeof(s->client_ip),
					     &s->client_port) < 0)
		stream_peer(&s->client, s->client_ip, sizeof(s->client_ip), &s->client_port);
	if (!session__listener_addr(s->listener) ||
	    stream_addr_name((const struct sockaddr *)&s->listener->addr, s->local_ip,
			     sizeof(s->local_ip), &s->local_port) < 0)
		stream_local(&s->client, s->local_ip, sizeof(s->local_ip), &s->local_port);
	session_log(s, LOG_DEBUG, "connected to %s:%u", s->local_ip, s->local_port);
	if (s->listener->proxy_protocol) {
		session__proxy_start(s);
		return;
	}
	session__begin(s);
}

void session__begin(struct session *s)
{
	/* Caps on concurrent connections, by the real (post-PROXY) address. */
	const char *which = NULL;
	if (!connlimit_acquire(s->client_ip, s->conf->limits.max_connections,
			       s->conf->limits.max_connections_per_ip, &which)) {
		session_log(s, LOG_WARN, "refused: %s connection cap reached (limits.max_connections%s)",
			    which, strcmp(which, "per_ip") == 0 ? "_per_ip" : "");
		if (!s->listener->tls && s->proto->busy_line)
			session_write(s, s->proto->busy_line, strlen(s->proto->busy_line));
		session_finish(s, "connection cap");
		return;
	}
	s->conn_counted = true;
	snprintf(s->counted_ip, sizeof(s->counted_ip), "%s", s->client_ip);
	if (s->listener->tls) {
		/* Bytes read with a PROXY header are the start of the ClientHello:
		   they go to TLS, and only decrypted bytes ever reach s->in. */
		if (session__begin_tls(s, true) < 0) {
			session_close(s, "TLS start failed");
			return;
		}
		session_client_reading(s, true);
		return;
	}
	session__admit(s);
}

void session__greet(struct session *s)
{
	s->phase = SESSION_PREAUTH;
	if (s->proto->start(s) < 0) {
		session_close(s, "out of memory");
		return;
	}
	if (s->closed || s->finishing)
		return;
	session_set_phase(s, s->proto->first_phase);
	session_client_reading(s, true);
	/* Commands that came in the same read as a PROXY header, or while the
	   throttle was asked. */
	if (s->in_len > 0 && !s->closed && !s->finishing)
		s->proto->client_data(s);
}

struct upstream_health *session_upstream_health(struct session *s, int g)
{
	return s->conf == s->w->conf ? worker_upstream_health(s->w, g) : NULL;
}
