/*
 * stream.h - a byte stream over a libuv TCP handle, and the fixed-size
 * buffers that carry its data.
 *
 * The relay and the protocol code use only this API (read start/stop, write,
 * shutdown, close), never uv_* on the socket directly, so that TLS can later
 * sit inside a stream (bytes in, bytes out over pool buffers) without either
 * of them changing.
 *
 * Buffers come from a per-worker free list. A stream asks for one only when
 * the socket is readable, and gives it back at once if the read finds
 * nothing, so an idle connection holds no buffer.
 *
 * No re-entrancy. No stream_* call ever runs one of the owner's callbacks
 * (on_read, on_written, on_handshake, on_close) before it returns. Events
 * reach the owner only from the loop: socket reads from libuv's read
 * callback, and what a TLS stream already holds (records decrypted or
 * buffered while reading was off, a close_notify, a bad record, the end
 * of a handshake fed early) from an idle handle the call arms
 * (stream__post). So an owner may call any stream function while it holds
 * pointers into its own state, and only its callbacks need to expect the
 * stream to have ended. (main at 278b31b pumped TLS inside
 * stream_read_start: an EOF delivered there freed a protocol's state under
 * its caller, a remote crash.)
 */
#ifndef GATEHOUSE_STREAM_H
#define GATEHOUSE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct pool;
struct stream;
struct tls_conn;

/* One buffer. `data[off .. off+len)` holds the bytes. */
struct pbuf {
	uv_write_t req;        /* used while the buffer is being written */
	struct pbuf *next;     /* free list */
	struct pool *pool;     /* NULL: malloc'ed for an oversized write */
	struct stream *st;     /* the stream writing it */
	uint32_t cap;
	uint32_t off;
	uint32_t len;
	bool wipe;             /* cleanse after writing: it held a password */
	uint8_t data[];
};

/*
 * A per-worker free list of buffers of one size, and one of bulk buffers
 * (POOL_BIG_FACTOR times that size, at most POOL_BIG_MAX bytes) for
 * streams reading in bulk. Not thread-safe.
 */
struct pool {
	struct pbuf *free;
	size_t nfree;
	size_t max_free;       /* keep at most this many idle buffers */
	uint32_t size;         /* data bytes per buffer */
	size_t outstanding;    /* buffers handed out and not yet returned (both sizes) */
	struct pbuf *big_free; /* bulk buffers: big_size bytes each */
	size_t nbig_free;
	size_t max_big_free;   /* max_free / POOL_BIG_FACTOR, at least 1 */
	uint32_t big_size;
	size_t big_outstanding;
};

#define POOL_BIG_FACTOR 4
#define POOL_BIG_MAX 262144

void pool_init(struct pool *p, uint32_t size, size_t max_free);
void pool_destroy(struct pool *p);
/*
 * Free the idle buffers beyond POOL_TRIM_KEEP (bulk: POOL_TRIM_KEEP_BIG),
 * for a worker that has gone quiet after a burst: the free lists filled
 * to max_free in the burst (16 x 16 KiB and 4 x 64 KiB a worker) and would
 * otherwise stay resident while the worker's connections sit idle.
 */
void pool_trim(struct pool *p);
#define POOL_TRIM_KEEP 4
#define POOL_TRIM_KEEP_BIG 1

/* A buffer with cap == pool size, off = len = 0. NULL when out of memory. */
struct pbuf *pbuf_get(struct pool *p);
/* A bulk buffer (cap == p->big_size): a read that fills a pool buffer is
   followed by one read into this, so bulk transfers cost a quarter of the
   system calls. NULL when out of memory. */
struct pbuf *pbuf_get_big(struct pool *p);
/* A buffer holding at least n bytes: from the pool when it fits, else malloc. */
struct pbuf *pbuf_get_size(struct pool *p, size_t n);
/*
 * b is about to wait (queued behind a full socket) holding a few bytes in a
 * large pool buffer: a malloc'ed buffer of just their size holding them
 * instead (b is returned to its pool), or b itself when that saves little
 * or memory is short.
 */
struct pbuf *pbuf_shrink(struct pbuf *b);
/* Return a buffer (wiped first if b->wipe). NULL is ignored. */
void pbuf_put(struct pbuf *b);

/*
 * Read callback. With b != NULL, b->len > 0 bytes arrived and the callee owns
 * b (write it on or pbuf_put it). With b == NULL, status is UV_EOF or a
 * negative error; no more reads will come.
 */
typedef void (*stream_read_cb)(struct stream *st, struct pbuf *b, int status);
/* Called after a queued write finishes (st->queued already lowered). */
typedef void (*stream_written_cb)(struct stream *st, int status);
/* Called once when the handle is closed; the stream's memory is the owner's again. */
typedef void (*stream_close_cb)(struct stream *st);

struct stream {
	uv_tcp_t tcp;
	struct pool *pool;
	void *owner;
	stream_read_cb on_read;
	stream_written_cb on_written; /* optional */
	stream_close_cb on_close;
	size_t queued;                /* bytes handed to stream_write, not yet written */
	unsigned writes;              /* uv_write requests out (one, but for a shutdown) */
	struct pbuf *held;            /* written while one was out: goes next, merged */
	uv_shutdown_t shutdown_req;
	bool reading;
	bool bulk;                    /* the last read filled a pool buffer: read into a big one */
	bool shut;                    /* shutdown requested */
	bool closing;

	/* TLS (NULL: plain). Reads decrypt, writes encrypt; the owner sees
	   plaintext only. */
	struct tls_conn *tls;
	bool tls_handshaking;
	bool in_pump;                 /* inside stream__tls_pump: no nesting */
	struct pbuf *tls_pending;     /* plaintext written before the handshake ended */
	struct pbuf **tls_pending_tail;
	void (*on_handshake)(struct stream *st, int status); /* 0 or UV_EPROTO */

	/* TLS: runs the pump from the loop when a call finds work for it
	   (initialised by stream_start_tls; plain streams never need it). */
	uv_idle_t post;
	bool post_init;
	int tls_hs_result;            /* a handshake step's result the pump reports (0: none) */
	uint8_t open_handles;         /* handles stream_close waits for before on_close */

	/* stream_cork: writes gather in `cork` (not counted in queued) and go
	   out as one write, one TLS record, at the last stream_uncork. */
	unsigned corked;              /* nesting depth */
	struct pbuf *cork;
};

/*
 * Initialise st on loop (uv_tcp_init). The caller sets the callbacks. Returns
 * 0 or a negative libuv error; on error nothing needs closing.
 */
int stream_init(struct stream *st, uv_loop_t *loop, struct pool *pool, void *owner);

/* Start / stop delivering data to on_read. Idempotent. Bytes a TLS stream
   already holds are delivered from the loop, never before this returns. */
int stream_read_start(struct stream *st);
void stream_read_stop(struct stream *st);

/*
 * Queue b for writing; the stream owns b from here (returned to its pool when
 * written or on error). Returns 0 or a negative libuv error.
 */
int stream_write(struct stream *st, struct pbuf *b);

/*
 * Hold writes back until the matching stream_uncork (calls nest): they are
 * copied into one buffer and sent with one system call (one TLS record)
 * instead of one each, which is most of what a small proxied HTTP response
 * costs. Bytes that do not fit send what is held first. Shutdown and close
 * send what is held before they act, so nothing is lost or reordered.
 */
void stream_cork(struct stream *st);

/* Undo one stream_cork; the last one sends what is held. Returns 0 or a
   negative libuv error (the write failed: the caller closes, as after a
   failed stream_write). */
int stream_uncork(struct stream *st);

/* Copy data into buffers and queue them. wipe: the data is a secret. */
int stream_write_copy(struct stream *st, const void *data, size_t len, bool wipe);

/*
 * True when a close() would say all a shutdown() says: a plain stream with
 * nothing queued, held, corked or being written, not shut down yet.
 */
bool stream_drained_plain(const struct stream *st);

/*
 * Shut down the write side once queued writes are done (half-close). cb, if
 * given, runs when that has happened (status 0) or failed.
 */
int stream_shutdown(struct stream *st, uv_shutdown_cb cb);

/*
 * After a shutdown: bytes the peer has sent and nobody read yet. Closing a
 * TCP socket with any makes the kernel send a reset instead of the FIN,
 * and a reset may take the peer's last unread answer with it.
 */
size_t stream_unread(struct stream *st);

/*
 * A lingering close: read and drop whatever the peer still sends (TLS
 * records unopened), so the peer gets the FIN after its answer and not a
 * reset. on_read gets only the end: NULL with UV_EOF or an error. The
 * owner bounds how long it waits. 0 or a negative libuv error.
 */
int stream_discard_input(struct stream *st);

/*
 * Start TLS on st with t (the stream owns t from here; on an error the
 * caller still does, and frees it).
 * Bytes already read are not fed to it: STARTTLS callers drop what the
 * client sent before the handshake. on_handshake runs once with 0 or
 * UV_EPROTO (tls_error(t) says why). Writes made before it are held and
 * sent encrypted once the handshake is done. The handshake starts from the
 * loop, after this returns (on_handshake never runs inside it). Returns 0
 * or a libuv error.
 */
int stream_start_tls(struct stream *st, struct tls_conn *t, void (*on_handshake)(struct stream *st, int status));

/* Close the handle; pending writes are cancelled. on_close runs later. */
void stream_close(struct stream *st);

/* Write the peer or local address of st as "ip" and port. 0 or negative error. */
int stream_peer(struct stream *st, char *ip, size_t iplen, uint16_t *port_out);
int stream_local(struct stream *st, char *ip, size_t iplen, uint16_t *port_out);
/* The same for an address already at hand (accept4's, a listener's). */
int stream_addr_name(const struct sockaddr *sa, char *ip, size_t iplen, uint16_t *port_out);

#endif
