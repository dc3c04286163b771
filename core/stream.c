/*
 * stream.c - TCP streams, plain or TLS over pool buffers, with corked
 * (gathered) writes.
 */
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>

#include "gh.h"
#include "stream.h"
#include "tls.h"

#define pbuf_of(base) ((struct pbuf *)((char *)(base) - offsetof(struct pbuf, data)))

static void stream__tls_pump(struct stream *st);
static void stream__post(struct stream *st);
static int stream__raw_write(struct stream *st, struct pbuf *b);

int stream_init(struct stream *st, uv_loop_t *loop, struct pool *pool, void *owner)
{
	memset(st, 0, sizeof(*st));
	st->pool = pool;
	st->owner = owner;
	st->tcp.data = st;
	return uv_tcp_init(loop, &st->tcp);
}

/*
 * A buffer for the next socket read: a pool buffer, or a bulk one (4 x as
 * large) when the last read filled a pool buffer. Bulk transfers then take
 * a quarter of the read system calls, and each read hands the other side
 * (a TLS stream: four full records, one writev) four times the bytes.
 */
static void stream__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct stream *st = h->data;
	struct pbuf *b = st->bulk ? pbuf_get_big(st->pool) : pbuf_get(st->pool);

	if (b == NULL) {
		buf->base = NULL;
		buf->len = 0;
		return;
	}
	buf->base = (char *)b->data;
	buf->len = b->cap;
}

static void stream__read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
	struct stream *st = h->data;
	struct pbuf *b = buf->base ? pbuf_of(buf->base) : NULL;

	if (nread > 0)
		st->bulk = (size_t)nread >= st->pool->size;
	if (nread > 0 && st->tls) {
		/* The buffer itself joins the TLS input: no copy. */
		b->off = 0;
		b->len = (uint32_t)nread;
		tls_feed_buf(st->tls, b);
		stream__tls_pump(st);
		return;
	}
	if (nread > 0) {
		b->off = 0;
		b->len = (uint32_t)nread;
		st->on_read(st, b, 0);
		return;
	}
	/* Nothing read (EAGAIN) or end: give the buffer back at once. */
	pbuf_put(b);
	if (nread == 0)
		return;
	st->reading = false;
	uv_read_stop(h);
	st->on_read(st, NULL, (int)nread);
}

int stream_read_start(struct stream *st)
{
	if (st->reading || st->closing)
		return 0;
	int rc = uv_read_start((uv_stream_t *)&st->tcp, stream__alloc, stream__read);
	if (rc == 0)
		st->reading = true;
	/* Records already decrypted (or buffered) while reading was off: the
	   socket may never become readable again for them, so the loop is
	   asked to deliver them, after this call has returned. */
	if (rc == 0 && st->tls && !st->tls_handshaking && tls_has_plaintext(st->tls))
		stream__post(st);
	return rc;
}

void stream_read_stop(struct stream *st)
{
	if (!st->reading)
		return;
	st->reading = false;
	uv_read_stop((uv_stream_t *)&st->tcp);
}

/* Buffers sent with one writev: a TLS flush of several records. */
#define STREAM_WRITEV_MAX 8

static void stream__put_chain(struct pbuf *b)
{
	while (b) {
		struct pbuf *next = b->next;
		pbuf_put(b);
		b = next;
	}
}

static int stream__issue(struct stream *st, struct pbuf *b);

/* The chain's bytes leave st->queued: written, or about to be issued again. */
static void stream__unqueue(struct stream *st, const struct pbuf *b)
{
	for (; b; b = b->next) {
		GH_ASSERT(st->queued >= b->len);
		st->queued -= b->len;
	}
}

/* A queued write of the chain headed by req's buffer finished. */
static void stream__written(uv_write_t *req, int status)
{
	struct pbuf *b = (struct pbuf *)req;
	struct stream *st = b->st;

	stream__unqueue(st, b);
	stream__put_chain(b);
	GH_ASSERT(st->writes > 0);
	st->writes--;
	/* What was held while this write was out goes next, as one write. */
	if (st->writes == 0 && st->held != NULL && status == 0 && !st->closing) {
		struct pbuf *h = st->held;
		st->held = NULL;
		stream__unqueue(st, h);
		int rc = stream__issue(st, h);
		if (rc < 0)
			status = rc;
	}
	if (!st->closing && st->on_written)
		st->on_written(st, status);
}

/*
 * A write is out: hold b (a chain) until it finishes. Small writes are
 * copied into the room the last held buffer has, so a client that sends
 * many commands and reads nothing makes the stream hold its answers in
 * full buffers, not a 16 KiB buffer per answer.
 */
static void stream__hold(struct stream *st, struct pbuf *b)
{
	struct pbuf **tail = &st->held, *last = NULL;

	while (*tail) {
		last = *tail;
		tail = &(*tail)->next;
	}
	while (b) {
		struct pbuf *next = b->next;
		b->next = NULL;
		st->queued += b->len;
		if (last != NULL && last->pool != NULL &&
		    b->len <= (size_t)last->cap - last->off - last->len) {
			memcpy(last->data + last->off + last->len, b->data + b->off, b->len);
			last->len += b->len;
			last->wipe |= b->wipe;
			pbuf_put(b);
		} else {
			*tail = b;
			tail = &b->next;
			last = b;
		}
		b = next;
	}
}

/*
 * Write the chain b (linked by next) in order; the stream owns it from
 * here. The bytes go out at once with uv_try_write when nothing is queued
 * before them (the usual case: a relay read, a login reply), and only what
 * the socket did not take, or all of it after an error, is queued with
 * uv_write. That saves libuv's deferred write callback and the epoll_ctl
 * it makes on every completed write, a large share of a login's system
 * calls. Buffers written at once are returned here and do not call
 * on_written: nothing was queued, so nothing can be waiting for a drain.
 * While a write is out, later ones are held (stream__hold) and go as one
 * when it finishes: what a stream holds is its queued bytes in full
 * buffers, plus the one write out.
 */
static int stream__raw_writev(struct stream *st, struct pbuf *b)
{
	/* One write out at a time: later ones wait, merged, behind it. */
	if (st->writes > 0) {
		stream__hold(st, b);
		return 0;
	}
	return stream__issue(st, b);
}

/* Write the chain b now: at once as far as the socket takes it, the rest
   queued with uv_write. At most STREAM_WRITEV_MAX buffers go to one
   system call; when the socket takes them all, the next ones follow. */
static int stream__issue(struct stream *st, struct pbuf *b)
{
	while (b != NULL) {
		uv_buf_t ub[STREAM_WRITEV_MAX] = { 0 };
		unsigned n = 0;
		struct pbuf *over = NULL;

		for (struct pbuf *p = b; p; p = p->next) {
			ub[n++] = uv_buf_init((char *)p->data + p->off, p->len);
			if (n == STREAM_WRITEV_MAX) {
				over = p->next;
				p->next = NULL;
				break;
			}
		}
		int k = uv_try_write((uv_stream_t *)&st->tcp, ub, n);
		/* On an error, queue the write anyway: uv_write meets the same
		   error and reports it through the callback, as it always did.
		   Callers rely on that: a write that fails at once must not close
		   the session under them (the login reply is written just before
		   the relay starts). */
		if (k < 0)
			k = 0;
		size_t done = (size_t)k;
		while (b && done >= b->len) {
			struct pbuf *next = b->next;
			done -= b->len;
			b->next = NULL;
			pbuf_put(b);
			b = next;
		}
		if (b == NULL) {
			b = over;
			continue;
		}
		b->off += (uint32_t)done;
		b->len -= (uint32_t)done;
		/* A short answer left over takes a buffer of its own size while
		   it waits, not a relay buffer (a client that reads nothing). */
		b = pbuf_shrink(b);
		n = 0;
		for (struct pbuf *p = b; p; p = p->next)
			ub[n++] = uv_buf_init((char *)p->data + p->off, p->len);
		b->st = st;
		int rc = uv_write(&b->req, (uv_stream_t *)&st->tcp, ub, n, stream__written);
		if (rc < 0) {
			stream__put_chain(b);
			stream__put_chain(over);
			return rc;
		}
		st->writes++;
		for (struct pbuf *p = b; p; p = p->next)
			st->queued += p->len;
		if (over != NULL)
			stream__hold(st, over);
		return 0;
	}
	return 0;
}

static int stream__raw_write(struct stream *st, struct pbuf *b)
{
	b->next = NULL;
	return stream__raw_writev(st, b);
}

/*
 * Send what TLS produced (records, alerts, tickets): the buffers the
 * records were written into, as they are (stream__issue sends up to
 * STREAM_WRITEV_MAX of them per system call).
 */
static int stream__tls_flush(struct stream *st)
{
	struct pbuf *head = tls_take_bufs(st->tls);

	if (head == NULL)
		return 0;
	return stream__raw_writev(st, head);
}

/* Send b now (encrypted first on a TLS stream), whatever the cork says. */
static int stream__write_now(struct stream *st, struct pbuf *b)
{
	if (st->tls == NULL)
		return stream__raw_write(st, b);
	if (st->tls_handshaking) {
		b->next = NULL;
		*st->tls_pending_tail = b;
		st->tls_pending_tail = &b->next;
		return 0;
	}
	int rc = tls_write(st->tls, b->data + b->off, b->len);
	pbuf_put(b);
	if (rc < 0)
		return UV_EPROTO;
	return stream__tls_flush(st);
}

/* Send what stream_cork held back, if anything. */
static int stream__flush_cork(struct stream *st)
{
	struct pbuf *b = st->cork;

	if (b == NULL)
		return 0;
	st->cork = NULL;
	return stream__write_now(st, b);
}

/* Room after the bytes b holds. */
static size_t stream__room(const struct pbuf *b)
{
	return (size_t)b->cap - b->off - b->len;
}

int stream_write(struct stream *st, struct pbuf *b)
{
	if (st->closing || st->shut) {
		pbuf_put(b);
		return UV_EPIPE;
	}
	if (st->corked == 0)
		return stream__write_now(st, b);
	if (st->cork != NULL && b->len <= stream__room(st->cork)) {
		memcpy(st->cork->data + st->cork->off + st->cork->len, b->data + b->off, b->len);
		st->cork->len += b->len;
		st->cork->wipe |= b->wipe;
		pbuf_put(b);
		return 0;
	}
	int rc = stream__flush_cork(st);
	if (rc < 0) {
		pbuf_put(b);
		return rc;
	}
	/* b becomes the buffer later writes are added to; an oversized one
	   (malloc'ed to fit) has no room left, so it goes out now. */
	if (b->pool == NULL)
		return stream__write_now(st, b);
	st->cork = b;
	return 0;
}

void stream_cork(struct stream *st)
{
	st->corked++;
}

int stream_uncork(struct stream *st)
{
	if (st->corked == 0 || --st->corked > 0)
		return 0;
	if (st->closing || st->shut) {
		pbuf_put(st->cork);
		st->cork = NULL;
		return 0;
	}
	return stream__flush_cork(st);
}

/* The handshake is done: encrypt what was written meanwhile. */
static int stream__tls_release_pending(struct stream *st)
{
	while (st->tls_pending) {
		struct pbuf *b = st->tls_pending;
		st->tls_pending = b->next;
		int rc = tls_write(st->tls, b->data + b->off, b->len);
		pbuf_put(b);
		if (rc < 0)
			return UV_EPROTO;
	}
	st->tls_pending_tail = &st->tls_pending;
	return 0;
}

/*
 * Drive TLS after input arrived or reading resumed: finish the handshake,
 * then hand decrypted data to on_read while the owner keeps reading.
 */
static void stream__tls_pump(struct stream *st)
{
	if (st->in_pump || st->closing)
		return;
	st->in_pump = true;
	if (st->tls_handshaking) {
		/* stream_start_tls's own step, if it ended the handshake. */
		int rc = st->tls_hs_result != 0 ? st->tls_hs_result : tls_handshake(st->tls);
		st->tls_hs_result = 0;
		/* The last flight of a finished handshake (a server's session
		   tickets, a client's Finished) waits for what the owner writes
		   when told (a greeting, a login), so both leave in one write:
		   one segment less per TLS login. */
		if (rc != 1)
			stream__tls_flush(st);
		if (rc == TLS_WANT) {
			st->in_pump = false;
			return;
		}
		if (rc < 0) {
			st->in_pump = false;
			stream_read_stop(st);
			st->on_handshake(st, UV_EPROTO);
			return;
		}
		st->tls_handshaking = false;
		rc = stream__tls_release_pending(st);
		st->in_pump = false;
		st->on_handshake(st, rc);
		if (st->closing || rc < 0)
			return;
		/* Whatever on_handshake did not send along (it may answer later). */
		stream__tls_flush(st);
		st->in_pump = true;
	}
	while (st->reading && !st->closing) {
		struct pbuf *b = pbuf_get(st->pool);
		if (b == NULL) {
			st->in_pump = false;
			stream_read_stop(st);
			st->on_read(st, NULL, UV_ENOMEM);
			return;
		}
		int n = tls_read(st->tls, b->data, b->cap);
		if (n > 0) {
			b->off = 0;
			b->len = (uint32_t)n;
			st->on_read(st, b, 0);
			/* Nothing left in the input BIO or decrypted: another
			   tls_read could only say "want more", and costs as much as
			   a small record's decryption. */
			if (st->closing || !tls_has_plaintext(st->tls))
				break;
			continue;
		}
		pbuf_put(b);
		stream__tls_flush(st);
		if (n == TLS_WANT)
			break;
		/* close_notify is a clean end of stream; anything else an error. */
		stream_read_stop(st);
		st->in_pump = false;
		st->on_read(st, NULL, n == TLS_CLOSED ? UV_EOF : UV_EPROTO);
		return;
	}
	if (!st->closing)
		stream__tls_flush(st);
	st->in_pump = false;
}

/* The pump posted by a stream call runs here, from the loop. */
static void stream__posted(uv_idle_t *h)
{
	struct stream *st = h->data;

	uv_idle_stop(h);
	stream__tls_pump(st);
}

/* Run the TLS pump from the loop, once, soon: never inside the caller. */
static void stream__post(struct stream *st)
{
	if (st->post_init && !st->closing)
		uv_idle_start(&st->post, stream__posted);
}

int stream_start_tls(struct stream *st, struct tls_conn *t, void (*on_handshake)(struct stream *st, int status))
{
	if (t == NULL)
		return UV_ENOMEM;
	if (!st->post_init) {
		int rc = uv_idle_init(st->tcp.loop, &st->post);
		if (rc < 0)
			return rc;
		st->post.data = st;
		st->post_init = true;
	}
	st->tls = t;
	tls_set_pool(t, st->pool);
	st->tls_handshaking = true;
	st->tls_pending = NULL;
	st->tls_pending_tail = &st->tls_pending;
	st->on_handshake = on_handshake;
	/* A client speaks first: this sends its ClientHello. A server may
	   already hold the start of one (bytes read behind a PROXY header).
	   Usually the handshake then wants the peer's answer; when this step
	   ends it instead (done or failed), on_handshake must not run inside
	   this call: the pump reports the result from the loop. */
	int rc = tls_handshake(t);
	if (rc == TLS_WANT) {
		stream__tls_flush(st);
		return 0;
	}
	st->tls_hs_result = rc;
	stream__post(st);
	return 0;
}

int stream_write_copy(struct stream *st, const void *data, size_t len, bool wipe)
{
	struct pbuf *c = st->cork;

	if (st->corked > 0 && c != NULL && len <= stream__room(c) && !st->closing && !st->shut) {
		/* Straight into the held buffer: no buffer of its own. */
		memcpy(c->data + c->off + c->len, data, len);
		c->len += (uint32_t)len;
		c->wipe |= wipe;
		return 0;
	}
	struct pbuf *b = pbuf_get_size(st->pool, len);

	if (b == NULL)
		return UV_ENOMEM;
	memcpy(b->data, data, len);
	b->len = (uint32_t)len;
	b->wipe = wipe;
	return stream_write(st, b);
}

bool stream_drained_plain(const struct stream *st)
{
	return st->tls == NULL && !st->shut && !st->closing && st->queued == 0 && st->writes == 0 &&
	       st->held == NULL && st->cork == NULL && st->tcp.write_queue_size == 0;
}

int stream_shutdown(struct stream *st, uv_shutdown_cb cb)
{
	if (st->shut || st->closing)
		return 0;
	/* Held bytes go before the FIN (or close_notify). */
	stream__flush_cork(st);
	st->shut = true;
	if (st->tls && !st->tls_handshaking) {
		tls_shutdown(st->tls);
		stream__tls_flush(st);
	}
	/* uv_shutdown waits for libuv's queue only: what waits behind the
	   write that is out joins it now. */
	if (st->held != NULL) {
		struct pbuf *h = st->held;
		st->held = NULL;
		stream__unqueue(st, h);
		(void)stream__issue(st, h);
	}
	st->shutdown_req.data = st;
	return uv_shutdown(&st->shutdown_req, (uv_stream_t *)&st->tcp, cb);
}

size_t stream_unread(struct stream *st)
{
	uv_os_fd_t fd;
	int n = 0;

	if (st->closing || uv_fileno((const uv_handle_t *)&st->tcp, &fd) != 0 ||
	    ioctl(fd, FIONREAD, &n) != 0 || n < 0)
		return 0;
	return (size_t)n;
}

static void stream__discard(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
	struct stream *st = h->data;

	if (buf->base != NULL)
		pbuf_put(pbuf_of(buf->base));
	if (nread >= 0)
		return;
	st->reading = false;
	uv_read_stop(h);
	st->on_read(st, NULL, (int)nread);
}

int stream_discard_input(struct stream *st)
{
	if (st->closing)
		return UV_EPIPE;
	if (st->reading)
		uv_read_stop((uv_stream_t *)&st->tcp);
	/* Small buffers: what arrives is dropped at once. */
	st->bulk = false;
	int rc = uv_read_start((uv_stream_t *)&st->tcp, stream__alloc, stream__discard);
	st->reading = rc == 0;
	return rc;
}

static void stream__closed(uv_handle_t *h)
{
	struct stream *st = h->data;

	if (--st->open_handles > 0)
		return;
	stream__put_chain(st->held);
	st->held = NULL;
	while (st->tls_pending) {
		struct pbuf *b = st->tls_pending;
		st->tls_pending = b->next;
		pbuf_put(b);
	}
	tls_conn_free(st->tls);
	st->tls = NULL;

	if (st->on_close)
		st->on_close(st);
}

void stream_close(struct stream *st)
{
	if (st->closing)
		return;
	/* Held bytes are sent as an unheld write would have been: at once,
	   as far as the socket takes them. */
	if (!st->shut)
		stream__flush_cork(st);
	pbuf_put(st->cork);
	st->cork = NULL;
	st->closing = true;
	st->reading = false;
	st->open_handles = st->post_init ? 2 : 1;
	uv_close((uv_handle_t *)&st->tcp, stream__closed);
	if (st->post_init)
		uv_close((uv_handle_t *)&st->post, stream__closed);
}

int stream_addr_name(const struct sockaddr *sa, char *ip, size_t iplen, uint16_t *port_out)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		*port_out = ntohs(a->sin_port);
		return uv_ip4_name(a, ip, iplen);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		*port_out = ntohs(a->sin6_port);
		return uv_ip6_name(a, ip, iplen);
	}
	return UV_EAFNOSUPPORT;
}

int stream_peer(struct stream *st, char *ip, size_t iplen, uint16_t *port_out)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	int rc = uv_tcp_getpeername(&st->tcp, (struct sockaddr *)&ss, &len);
	if (rc < 0)
		return rc;
	return stream_addr_name((const struct sockaddr *)&ss, ip, iplen, port_out);
}

int stream_local(struct stream *st, char *ip, size_t iplen, uint16_t *port_out)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	int rc = uv_tcp_getsockname(&st->tcp, (struct sockaddr *)&ss, &len);
	if (rc < 0)
		return rc;
	return stream_addr_name((const struct sockaddr *)&ss, ip, iplen, port_out);
}
