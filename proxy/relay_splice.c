/*
 * relay_splice.c - the relay of a plain-to-plain session with splice(2):
 * socket -> pipe -> socket inside the kernel, so bulk bytes never cross into
 * user space (the copy relay costs two copies per byte).
 *
 * Readiness: libuv cannot poll an fd its TCP handle owns, so each socket is
 * dup()ed and watched with a uv_poll_t on the dup (epoll keys registrations
 * by fd number, so the two are independent); the TCP handles stop reading
 * and are used again only to close. Each direction moves bytes while its
 * source is readable: it takes a pipe from a small per-worker pool, fills it
 * from the source, drains it into the destination and gives the empty pipe
 * back, so an idle session holds no pipe. When the destination says EAGAIN
 * the direction stops polling its source and polls the destination for
 * writable instead: memory stays bounded by one pipe per direction. An EOF
 * becomes shutdown(SHUT_WR) on the destination once the pipe is empty;
 * both directions shut, or any error, closes the session.
 *
 * Lifetime: the two poll handles each hold a session reference; the state
 * is freed once both have closed and the client stream's close hook (which
 * stops splicing when the session closes for any other reason, e.g. the
 * idle timer) has run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf.h"
#include "metrics.h"
#include "session_int.h"
#include "worker.h"

/*
 * Pipe capacity asked for with F_SETPIPE_SZ (the default is 64 KiB). On the
 * bulk FETCH bench 64 KiB, 256 KiB and 1 MiB all measured 0.22-0.38 s of
 * proxy CPU per GB, within the noise of a shared 2-core machine; 256 KiB
 * lets one splice take a whole loopback burst while keeping 256 busy pipes
 * under the default per-user pipe memory soft limit (64 MiB), beyond which
 * new pipes shrink to two pages.
 */
#define RELAY__PIPE_SIZE (256 * 1024)
/* Spare empty pipes kept per worker; more are closed (2 fds each). */
#define RELAY__POOL_MAX 16
/* Bytes one direction moves per wakeup before yielding to other sessions. */
#define RELAY__BUDGET (1024 * 1024)

/* One direction: src -> holder -> dst. */
struct relay_dir {
	int src, dst;          /* the dup'ed fds (owned by struct relay_splice) */
	int pipe[2];           /* -1: no pipe held */
	struct pbuf *buf;      /* holder when no pipe could be had (EMFILE) */
	size_t held;           /* bytes in the holder, not yet written to dst */
	bool from_client;
	bool eof;              /* src ended; dst is shut once held is 0 */
	bool shut;
};

struct relay_splice {
	struct session *s;
	uv_poll_t poll[2];     /* 0: client, 1: backend (on the dups) */
	int fd[2];
	int events[2];         /* what each poll runs with (0: stopped) */
	struct relay_dir dir[2]; /* 0: client -> backend, 1: backend -> client */
	int pending;           /* poll handles not closed + the close hook not run */
	bool stopped;
	stream_close_cb client_on_close; /* the hook chains to this */
};

/* ---- the per-worker pipe pool ---- */

static __thread int relay__pipes[RELAY__POOL_MAX][2];
static __thread unsigned relay__npipes;
static pthread_key_t relay__pool_key;
static pthread_once_t relay__pool_once = PTHREAD_ONCE_INIT;

/* Worker thread exit: close the spare pipes. */
static void relay__pool_exit(void *unused)
{
	while (relay__npipes > 0) {
		relay__npipes--;
		close(relay__pipes[relay__npipes][0]);
		close(relay__pipes[relay__npipes][1]);
	}
}

static void relay__pool_key_init(void)
{
	pthread_key_create(&relay__pool_key, relay__pool_exit);
}

static int relay__pipe_get(int p[2])
{
	if (relay__npipes > 0) {
		relay__npipes--;
		p[0] = relay__pipes[relay__npipes][0];
		p[1] = relay__pipes[relay__npipes][1];
		return 0;
	}
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
		return -errno;
	/* A pool that has held a pipe gets closed when its thread exits. */
	pthread_once(&relay__pool_once, relay__pool_key_init);
	pthread_setspecific(relay__pool_key, relay__pipes);
	/* Larger pipes halve the splice calls per byte; the kernel refuses
	   (EPERM) once the user's pipe memory is over its soft limit, and
	   the default size is fine then. */
	(void)fcntl(p[1], F_SETPIPE_SZ, RELAY__PIPE_SIZE);
	return 0;
}

/* Only an empty pipe may be reused: its bytes would reach another session. */
static void relay__pipe_put(int p[2], bool empty)
{
	if (empty && relay__npipes < RELAY__POOL_MAX) {
		relay__pipes[relay__npipes][0] = p[0];
		relay__pipes[relay__npipes][1] = p[1];
		relay__npipes++;
	} else {
		close(p[0]);
		close(p[1]);
	}
	p[0] = p[1] = -1;
}

static void relay__holder_put(struct relay_dir *d)
{
	if (d->pipe[0] >= 0)
		relay__pipe_put(d->pipe, d->held == 0);
	pbuf_put(d->buf);
	d->buf = NULL;
	d->held = 0;
}

/* ---- moving bytes ---- */

/* Fill d's (empty) holder from src: bytes read; 0 for EAGAIN, or for the
   end of the stream with d->eof set; or a negative errno. */
static ssize_t relay__fill(struct session *s, struct relay_dir *d)
{
	ssize_t n;

	if (d->pipe[0] < 0 && d->buf == NULL) {
		int rc = relay__pipe_get(d->pipe);
		if (rc < 0) {
			session_log(s, LOG_DEBUG, "relay: no pipe (%s), copying this burst",
				    strerror(-rc));
			d->buf = pbuf_get(s->client.pool);
			if (d->buf == NULL)
				return -ENOMEM;
		}
	}
	do {
		if (d->buf)
			n = recv(d->src, d->buf->data, d->buf->cap, 0);
		else
			n = splice(d->src, NULL, d->pipe[1], NULL, RELAY__PIPE_SIZE,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	if (n == 0)
		d->eof = true;
	return n;
}

/* Write what d holds to dst: 0 (done or EAGAIN: see d->held) or -errno. */
static int relay__drain(struct relay_dir *d)
{
	while (d->held > 0) {
		ssize_t n;
		if (d->buf)
			n = send(d->dst, d->buf->data + d->buf->len - d->held, d->held,
				 MSG_NOSIGNAL);
		else
			n = splice(d->pipe[0], NULL, d->dst, NULL, d->held,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		d->held -= (size_t)n;
	}
	return 0;
}

static void relay__splice_stop(struct relay_splice *sp);

/* Close the session and stop splicing at once. */
static void relay__fail(struct relay_splice *sp, const char *reason)
{
	session_close(sp->s, reason);
	relay__splice_stop(sp);
}

/* d's source ended and its holder is empty: FIN to the destination. */
static void relay__shut(struct relay_splice *sp, struct relay_dir *d)
{
	struct session *s = sp->s;

	d->shut = true;
	if (shutdown(d->dst, SHUT_WR) < 0) {
		session_log(s, LOG_DEBUG, "relay shutdown: %s", strerror(errno));
		relay__fail(sp, "shutdown failed");
		return;
	}
	if (d->from_client) {
		s->relay.client_eof = true;
		s->relay.backend_shut_done = true;
	} else {
		s->relay.backend_eof = true;
		s->relay.client_shut_done = true;
	}
	if (s->relay.client_shut_done && s->relay.backend_shut_done)
		relay__fail(sp, "both sides closed");
}

/* Move bytes along d until its source or its destination would block. */
static void relay__move(struct relay_splice *sp, struct relay_dir *d)
{
	struct session *s = sp->s;
	size_t budget = RELAY__BUDGET;

	while (!sp->stopped && !d->shut) {
		if (d->held > 0) {
			int rc = relay__drain(d);
			if (rc < 0) {
				session_log(s, LOG_DEBUG, "relay write: %s", strerror(-rc));
				relay__fail(sp, "write failed");
				return;
			}
			if (d->held > 0)
				return; /* destination full: wait until writable */
		}
		relay__holder_put(d);
		if (d->eof) {
			relay__shut(sp, d);
			return;
		}
		if (budget == 0)
			return; /* still readable: the next wakeup goes on */
		ssize_t n = relay__fill(s, d);
		if (n < 0) {
			session_log(s, LOG_DEBUG, "relay read: %s", strerror((int)-n));
			relay__fail(sp, "connection error");
			return;
		}
		if (n == 0 && !d->eof) {
			relay__holder_put(d);
			return;
		}
		d->held = (size_t)n;
		if (d->buf)
			d->buf->len = (uint32_t)n;
		if (n > 0) {
			s->relay.last_activity_ms = session_now(s);
			metrics_relayed(d->from_client, (size_t)n);
			budget -= (size_t)n < budget ? (size_t)n : budget;
		}
	}
}

/* Poll each socket for what its two directions wait for. */
static void relay__update(struct relay_splice *sp);

static void relay__polled(uv_poll_t *p, int status, int events)
{
	struct relay_splice *sp = p->data;
	struct session *s = sp->s;
	int side = p == &sp->poll[0] ? 0 : 1;

	if (s->closed || sp->stopped) {
		relay__splice_stop(sp);
		return;
	}
	if (status < 0) {
		session_log(s, LOG_DEBUG, "relay poll: %s", uv_strerror(status));
		relay__fail(sp, "connection error");
		return;
	}
	/* Writable: the direction into this socket drains; readable: the one
	   out of it fills. */
	if (events & UV_WRITABLE)
		relay__move(sp, &sp->dir[1 - side]);
	if ((events & UV_READABLE) && !sp->stopped)
		relay__move(sp, &sp->dir[side]);
	if (!sp->stopped)
		relay__update(sp);
}

static void relay__update(struct relay_splice *sp)
{
	for (int i = 0; i < 2; i++) {
		const struct relay_dir *out = &sp->dir[i], *in = &sp->dir[1 - i];
		int ev = 0;
		if (!out->eof && out->held == 0)
			ev |= UV_READABLE;
		if (in->held > 0)
			ev |= UV_WRITABLE;
		if (ev == sp->events[i])
			continue;
		sp->events[i] = ev;
		int rc = ev ? uv_poll_start(&sp->poll[i], ev, relay__polled)
			    : uv_poll_stop(&sp->poll[i]);
		if (rc < 0) {
			session_log(sp->s, LOG_WARN, "relay poll: %s", uv_strerror(rc));
			relay__fail(sp, "poll failed");
			return;
		}
	}
}

/* ---- start and stop ---- */

static void relay__unpend(struct relay_splice *sp)
{
	if (--sp->pending > 0)
		return;
	if (sp->s->relay.splice == sp)
		sp->s->relay.splice = NULL;
	free(sp);
}

static void relay__poll_closed(uv_handle_t *h)
{
	struct relay_splice *sp = h->data;
	struct session *s = sp->s;
	int i = h == (uv_handle_t *)&sp->poll[0] ? 0 : 1;

	close(sp->fd[i]);
	relay__unpend(sp);
	session__unref(s);
}

/* Stop all I/O: give back the holders, close the polls and their dups. */
static void relay__splice_stop(struct relay_splice *sp)
{
	if (sp->stopped)
		return;
	sp->stopped = true;
	for (int i = 0; i < 2; i++)
		relay__holder_put(&sp->dir[i]);
	for (int i = 0; i < 2; i++)
		uv_close((uv_handle_t *)&sp->poll[i], relay__poll_closed);
}

/* The client stream closed (the session ends, whoever closed it). */
static void relay__client_closed(struct stream *st)
{
	struct session *s = st->owner;
	struct relay_splice *sp = s->relay.splice;
	stream_close_cb next = sp->client_on_close;

	relay__splice_stop(sp);
	relay__unpend(sp);
	next(st);
}

bool relay__splicing(const struct session *s)
{
	return s->relay.splice != NULL;
}

bool relay__splice_try(struct session *s)
{
	int fd[2] = { -1, -1 };
	uv_os_fd_t ufd;

	if (!s->relay.splice_wanted || s->closed || s->backend == NULL || s->relay.splice != NULL)
		return false;
	if (s->client.queued > 0 || s->backend->queued > 0 ||
	    uv_stream_get_write_queue_size((uv_stream_t *)&s->client.tcp) > 0 ||
	    uv_stream_get_write_queue_size((uv_stream_t *)&s->backend->tcp) > 0)
		return false; /* the drain callback tries again */
	/* A half-closed relay is ending: not worth switching. */
	s->relay.splice_wanted = false;
	if (s->relay.client_eof || s->relay.backend_eof || s->client.shut || s->backend->shut)
		return false;

	const char *why = "out of memory";
	struct relay_splice *sp = calloc(1, sizeof(*sp));
	if (sp == NULL)
		goto copy;
	why = "no descriptor for the poll";
	struct stream *st[2] = { &s->client, s->backend };
	for (int i = 0; i < 2; i++) {
		if (uv_fileno((uv_handle_t *)&st[i]->tcp, &ufd) < 0 ||
		    (fd[i] = fcntl(ufd, F_DUPFD_CLOEXEC, 0)) < 0)
			goto copy;
	}
	why = "poll init failed";
	if (uv_poll_init(&s->w->loop, &sp->poll[0], fd[0]) < 0)
		goto copy;
	if (uv_poll_init(&s->w->loop, &sp->poll[1], fd[1]) < 0) {
		/* poll[0] is a live handle now: close it the normal way. */
		sp->s = s;
		sp->fd[0] = fd[0];
		sp->fd[1] = -1;
		close(fd[1]);
		sp->poll[0].data = sp;
		sp->pending = 1;
		sp->stopped = true;
		s->refs++;
		uv_close((uv_handle_t *)&sp->poll[0], relay__poll_closed);
		session_log(s, LOG_DEBUG, "relay: copying (poll init failed)");
		return false;
	}
	sp->s = s;
	for (int i = 0; i < 2; i++) {
		sp->fd[i] = fd[i];
		sp->poll[i].data = sp;
		s->refs++;
		sp->dir[i].src = fd[i];
		sp->dir[i].dst = fd[1 - i];
		sp->dir[i].pipe[0] = sp->dir[i].pipe[1] = -1;
	}
	sp->dir[0].from_client = true;
	sp->pending = 3;
	sp->client_on_close = s->client.on_close;
	s->client.on_close = relay__client_closed;
	s->relay.splice = sp;
	stream_read_stop(&s->client);
	stream_read_stop(s->backend);
	session_log(s, LOG_DEBUG, "relay: splice");
	relay__update(sp);
	return true;

copy:
	for (int i = 0; i < 2; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	free(sp);
	session_log(s, LOG_DEBUG, "relay: copying (%s)", why);
	return false;
}
