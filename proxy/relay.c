/*
 * relay.c - after login: bytes both ways until either side closes.
 *
 * Each read lands in a pool buffer that is handed to the other stream's
 * write queue as is (no copy). When a side's queue passes the high-water
 * mark, reading from the other side stops until the queue has drained to
 * half of it, so a slow reader bounds memory at roughly high water plus one
 * buffer per direction. Plain-to-plain sessions move to splice(2)
 * (relay_splice.c) at their first bulk transfer, once nothing is queued on
 * either stream, so no byte can overtake one still in a write queue. An EOF
 * from one side becomes a shutdown (FIN) on
 * the other once its queued bytes are written; the session ends when both
 * directions have been shut down, or at the first error. The common end
 * (the mailstore closes after BYE or +OK, with everything already written
 * to a plain client) is a close of both sides at once, as nginx's mail
 * proxy does: the client's FIN comes from close(), and nothing it could
 * send later would reach a mailstore that has gone. That saves two
 * shutdown()s, an epoll_ctl, a read and a loop pass per session.
 */
#include <stdlib.h>

#include "conf.h"
#include "metrics.h"
#include "session_int.h"
#include "worker.h"
#include "secret.h"

static void relay__maybe_done(struct session *s)
{
	if (s->relay.client_shut_done && s->relay.backend_shut_done)
		session_close(s, "both sides closed");
}

static void relay__client_shut(uv_shutdown_t *req, int status)
{
	struct stream *st = req->data;
	struct session *s = st->owner;

	if (s->closed)
		return;
	if (status < 0) {
		session_close(s, "client shutdown failed");
		return;
	}
	s->relay.client_shut_done = true;
	relay__maybe_done(s);
}

static void relay__backend_shut(uv_shutdown_t *req, int status)
{
	struct stream *st = req->data;
	struct session *s = st->owner;

	if (s->closed)
		return;
	if (status < 0) {
		session_close(s, "backend shutdown failed");
		return;
	}
	s->relay.backend_shut_done = true;
	relay__maybe_done(s);
}

/*
 * A switch to splice is pending (s->relay.splice_wanted): make it once both write
 * queues are empty. True while splicing or still waiting for a queue (reads
 * stay off meanwhile); false when it cannot be made, after reading again
 * where the copy relay would.
 */
static bool relay__switch(struct session *s)
{
	if (relay__splice_try(s))
		return true;
	if (s->relay.splice_wanted)
		return true;
	if (s->closed)
		return true;
	if (!s->relay.c2b_paused && !s->relay.client_eof && stream_read_start(&s->client) < 0) {
		session_close(s, "read failed");
		return true;
	}
	if (!s->closed && s->backend && !s->relay.b2c_paused && !s->relay.backend_eof &&
	    stream_read_start(s->backend) < 0) {
		session_close(s, "read failed");
		return true;
	}
	return false;
}

/* Data or EOF from `from`, to be written to `to`. */
static void relay__pass(struct session *s, struct stream *from, struct stream *to, struct pbuf *b,
			int status, bool *paused, bool *eof, uv_shutdown_cb shut_cb)
{
	if (b != NULL) {
		/* A read that fills a whole buffer means more is waiting: bulk,
		   where splice pays. An IDLE or a short command does not need
		   its two extra descriptors and polls, so sessions start copying
		   and switch at their first bulk transfer. */
		bool bulk = s->relay.splice_ok && b->len >= b->cap;

		s->relay.last_activity_ms = session_now(s);
		metrics_relayed(from == &s->client, b->len);
		if (stream_write(to, b) < 0) {
			session_close(s, "write failed");
			return;
		}
		if (bulk) {
			s->relay.splice_ok = false;
			s->relay.splice_wanted = true;
			stream_read_stop(&s->client);
			stream_read_stop(s->backend);
			relay__switch(s);
			return;
		}
		if (to->queued > s->conf->limits.relay_high_water) {
			stream_read_stop(from);
			*paused = true;
		}
		return;
	}
	if (status != UV_EOF) {
		session_log(s, LOG_DEBUG, "relay read: %s", uv_strerror(status));
		session_close(s, "connection error");
		return;
	}
	*eof = true;
	if (from == s->backend && stream_drained_plain(to)) {
		session_close(s, "backend closed");
		return;
	}
	if (stream_shutdown(to, shut_cb) < 0)
		session_close(s, "shutdown failed");
}

static void relay__client_read(struct stream *st, struct pbuf *b, int status)
{
	struct session *s = st->owner;

	relay__pass(s, &s->client, s->backend, b, status, &s->relay.c2b_paused, &s->relay.client_eof,
		    relay__backend_shut);
}

static void relay__backend_read(struct stream *st, struct pbuf *b, int status)
{
	struct session *s = st->owner;

	relay__pass(s, s->backend, &s->client, b, status, &s->relay.b2c_paused, &s->relay.backend_eof,
		    relay__client_shut);
}

/* A write to `to` finished: resume reading `from` once `to` has drained. */
static void relay__resume(struct session *s, struct stream *from, struct stream *to, bool *paused,
			  int status)
{
	if (s->closed || relay__splicing(s))
		return;
	if (status < 0) {
		session_close(s, "write failed");
		return;
	}
	/* The bytes queued before a switch to splice are out: switch. */
	if (s->relay.splice_wanted && relay__switch(s))
		return;
	if (*paused && to->queued <= s->conf->limits.relay_high_water / 2) {
		*paused = false;
		if (stream_read_start(from) < 0)
			session_close(s, "read failed");
	}
}

static void relay__client_written(struct stream *st, int status)
{
	struct session *s = st->owner;

	if (s->phase != SESSION_RELAY) {
		if (status < 0)
			session_close(s, "client write failed");
		return;
	}
	relay__resume(s, s->backend, &s->client, &s->relay.b2c_paused, status);
}

static void relay__backend_written(struct stream *st, int status)
{
	struct session *s = st->owner;

	relay__resume(s, &s->client, s->backend, &s->relay.c2b_paused, status);
}

void relay_start(struct session *s)
{
	s->client.on_read = relay__client_read;
	s->client.on_written = relay__client_written;
	s->backend->on_read = relay__backend_read;
	s->backend->on_written = relay__backend_written;
	/* The relay has its own backpressure (relay_high_water). */
	s->out_blocked = false;
	session_set_phase(s, SESSION_RELAY);
	/* splice(2) moves plain bytes socket to socket inside the kernel (from
	   the first bulk transfer on, relay__pass); TLS needs them in user
	   space. */
	s->relay.splice_ok = s->conf->limits.splice && s->client.tls == NULL &&
			     s->backend->tls == NULL;
	s->relay.splice_wanted = false;
	/* With TLS, records already decrypted are handed over at once and may
	   end the session (and drop s->backend) before we get back here. */
	if (stream_read_start(&s->client) < 0) {
		session_close(s, "read failed");
		return;
	}
	if (s->closed || s->backend == NULL)
		return;
	if (stream_read_start(s->backend) < 0)
		session_close(s, "read failed");
}

void session_start_relay(struct session *s)
{
	if (s->closed || s->backend == NULL)
		return;
	/* Commands the client pipelined behind its login go to the backend
	   now, after our own login, and in order. */
	if (s->in_len > 0)
		session_backend_write(s, s->in, s->in_len, false);
	if (s->in_pending && s->backend) {
		struct pbuf *b = s->in_pending;
		s->in_pending = NULL;
		if (stream_write(s->backend, b) < 0) {
			session_close(s, "backend write failed");
			return;
		}
	}
	/* Anything the backend sent after its login answer goes to the client. */
	if (s->bin_len > 0)
		session_write(s, s->bin, s->bin_len);
	if (s->closed || s->backend == NULL)
		return;
	/* Login-phase memory goes now: the relay needs none of it. */
	if (s->proto_state)
		s->proto->destroy(s);
	if (s->in != NULL) { /* NULL: released while the HTTP connection was idle */
		secret_wipe(s->in, s->in_hwm);
		session__buf_free(s, s->in, s->in_pooled);
	}
	s->in = NULL;
	s->in_len = s->in_cap = s->in_hwm = 0;
	if (s->bin) {
		secret_wipe(s->bin, s->bin_hwm);
		session__buf_free(s, s->bin, s->bin_pooled);
		s->bin = NULL;
		s->bin_len = s->bin_cap = s->bin_hwm = 0;
	}
	/* The backend's TLS, if any, was set up with it long ago. */
	struct backend_conn *bc = (struct backend_conn *)s->backend;
	if (bc->host == s->backend_host)
		bc->host = NULL;
	free(s->backend_host);
	s->backend_host = NULL;
	worker_trim_soon(s->w);
	relay_start(s);
}
