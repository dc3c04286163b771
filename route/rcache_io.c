/*
 * rcache_io.c - memcached on a worker's own loop: the route cache's gets,
 * adds and deletes for logins, without the two thread-pool hand-offs
 * libmemcached costs (a cold login waited for a pool thread's get, then
 * queued its adds to another).
 *
 * One client per loop and cache runtime; per server one TCP connection
 * (made on first use), ASCII protocol, requests pipelined and answered in
 * order. The server choice and the hold-down after a failure are the pool
 * client's (rcache_mc_pick, rcache_mc_outcome): both clients, and other
 * gatehouses and Zimbra's tools, find the same key on the same server.
 * Only the modula distribution runs here; consistent (ketama) stays on
 * libmemcached and the pool.
 *
 * Bounds: RCACHE_IO_MAX_OPS requests per connection (beyond: a miss,
 * without I/O), a reply line or value of RCACHE_IO_IN bytes (a bigger value
 * is skipped and read as a miss), cache.timeout for every request (the
 * connection's oldest decides; on expiry all of the connection's requests
 * fail and the server is held down for cache.retry_interval), and the
 * connect under the same timeout. A failure makes gets misses (the login
 * goes on through the lookup) and drops writes, as on the pool.
 *
 * Ordering: writes from one loop reach a server in the order given, on one
 * connection; across loops, in the order they were written to their sockets.
 *
 * Writes (adds, deletes) carry noreply: memcached answers them with nothing,
 * so a cold login's cache fill costs no read and no wake-up. A write leaves
 * the queue once its bytes are in the kernel or copied into a uv_write; only
 * gets wait for answers. Keeping the answers in step: a get remembers whether
 * writes went out since the request answered before it (after_noreply). An
 * error line for such a get may be a write's (a server that answers noreply
 * errors): the connection is no longer known to be in step, so it fails (its
 * gets become misses, the server is held down as for any failure). A VALUE
 * must name the get's own key, so a value can never reach another login.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gh.h"
#include "list.h"
#include "rcache_io.h"

#define RCACHE_IO_MAX_OPS 1024
#define RCACHE_IO_IN 4096

enum io_state { IO_IDLE, IO_CONNECTING, IO_UP, IO_CLOSING };

struct io_op {
	struct list link;
	bool get;                  /* a get (VALUE ... END) or a write (noreply: no answer) */
	bool written;              /* in the kernel, or copied into a uv_write */
	bool after_noreply;        /* a get sent after writes the get before it did not cover */
	const char *what;          /* "get", "add", "delete": for the log */
	rcache_io_cb cb;           /* NULL: fire-and-forget */
	void *arg;
	size_t len;
	char cmd[];
};

struct io_srv {
	struct rcache_io *io;
	int index;
	enum io_state st;
	uv_tcp_t tcp;
	uv_connect_t conn;
	uv_timer_t timer;
	struct list ops;           /* oldest first: written ones, then waiting ones */
	int nops;
	uint64_t oldest_ms;        /* when the oldest unanswered op was made */
	bool noreply_since_get;    /* a write was queued after the last get */
	size_t skip;               /* value bytes still to drop (too big) */
	size_t inlen;
	char in[RCACHE_IO_IN];
};

struct rcache_io {
	uv_loop_t *loop;
	uv_prepare_t flush;        /* writes what this loop pass asked for, in one go */
	struct rcache *rc;         /* a reference: the servers' shared state */
	int n;
	int handles;               /* open handles; the client is freed at 0 */
	bool closing;
	struct io_srv srv[CONF_MAX_MEMCACHED];
};

static void io__srv_fail(struct io_srv *s, const char *why);

struct rcache_io *rcache_io_new(uv_loop_t *loop, struct rcache *rc)
{
	struct rcache_io *io;

	if (rc == NULL || rc->mc == NULL || !rcache_mc_modula(rc->mc))
		return NULL;
	if ((io = calloc(1, sizeof(*io))) == NULL)
		return NULL;
	io->loop = loop;
	io->rc = rcache_ref(rc);
	io->n = rcache_mc_count(rc->mc);
	for (int i = 0; i < io->n; i++) {
		const char *host;
		uint16_t port;
		uint64_t ms;
		struct sockaddr_in6 sa;
		rcache_mc_server(rc->mc, i, &host, &port, &ms);
		if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) < 0 &&
		    uv_ip6_addr(host, port, &sa) < 0) {
			rcache_release(io->rc); /* a name: libmemcached resolves it */
			free(io);
			return NULL;
		}
	}
	uv_prepare_init(loop, &io->flush);
	io->flush.data = io;
	uv_unref((uv_handle_t *)&io->flush);
	io->handles = 1;
	for (int i = 0; i < io->n; i++) {
		struct io_srv *s = &io->srv[i];
		s->io = io;
		s->index = i;
		list_init(&s->ops);
	}
	return io;
}

static void io__free_if_done(struct rcache_io *io)
{
	if (io->closing && io->handles == 0) {
		rcache_release(io->rc);
		free(io);
	}
}

static void io__handle_closed(uv_handle_t *h)
{
	struct io_srv *s = h->data;
	struct rcache_io *io = s->io;

	io->handles--;
	/* The timer closes last: answer what was left (close callbacks run
	   from the loop, never inside a caller's call). */
	if (h == (uv_handle_t *)&s->timer) {
		while (!list_empty(&s->ops)) {
			struct io_op *op = list_entry(list_first(&s->ops), struct io_op, link);
			list_remove(&op->link);
			s->nops--;
			if (op->cb)
				op->cb(op->arg, RCACHE_MC_ERROR, NULL, 0);
			free(op); /* closing the socket ended its writes first */
		}
		if (!io->closing)
			s->st = IO_IDLE;
	}
	io__free_if_done(io);
}

/* Close the connection (its ops are answered once both handles closed). */
static void io__srv_close(struct io_srv *s)
{
	if (s->st == IO_IDLE || s->st == IO_CLOSING)
		return;
	s->st = IO_CLOSING;
	s->inlen = 0;
	s->skip = 0;
	s->noreply_since_get = false; /* the next connection starts in step */
	uv_close((uv_handle_t *)&s->tcp, io__handle_closed);
	uv_close((uv_handle_t *)&s->timer, io__handle_closed);
}

static void io__srv_fail(struct io_srv *s, const char *why)
{
	const char *what = "connect";

	if (!list_empty(&s->ops))
		what = list_entry(list_first(&s->ops), struct io_op, link)->what;
	rcache_mc_outcome(s->io->rc->mc, s->index, false, what, why);
	io__srv_close(s);
}

static void io__flush_closed(uv_handle_t *h)
{
	struct rcache_io *io = h->data;

	io->handles--;
	io__free_if_done(io);
}

void rcache_io_close(struct rcache_io *io)
{
	if (io == NULL)
		return;
	io->closing = true;
	uv_close((uv_handle_t *)&io->flush, io__flush_closed);
	for (int i = 0; i < io->n; i++)
		io__srv_close(&io->srv[i]);
	io__free_if_done(io);
}

/* ---- timeouts ---- */

static void io__timer_cb(uv_timer_t *t)
{
	struct io_srv *s = t->data;

	if (!list_empty(&s->ops))
		io__srv_fail(s, "timed out");
}

/* Arm the timer for the oldest unanswered op (none: stop it). */
static void io__arm(struct io_srv *s)
{
	if (list_empty(&s->ops)) {
		uv_timer_stop(&s->timer);
		return;
	}
	uint64_t timeout_ms;
	const char *host;
	uint16_t port;
	rcache_mc_server(s->io->rc->mc, s->index, &host, &port, &timeout_ms);
	uint64_t now = uv_now(s->io->loop);
	uint64_t due = s->oldest_ms + timeout_ms;
	uv_timer_start(&s->timer, io__timer_cb, due > now ? due - now : 0, 0);
}

/* ---- writing ---- */

/* Take op off the queue (answered, or a write sent: noreply). */
static void io__drop(struct io_srv *s, struct io_op *op)
{
	list_remove(&op->link);
	if (--s->nops == 0)
		uv_unref((uv_handle_t *)&s->tcp);
	free(op);
}

/* What the kernel did not take at once: a copy, written in order. */
struct io_wreq {
	uv_write_t wr;
	struct io_srv *srv;
	char data[];
};

static void io__written(uv_write_t *w, int status)
{
	struct io_wreq *r = w->data;

	if (status < 0 && status != UV_ECANCELED && r->srv->st == IO_UP)
		io__srv_fail(r->srv, uv_strerror(status));
	free(r);
}

#define IO_BATCH 64

/* Write every op not yet written, up to IO_BATCH per system call. */
static void io__flush_srv(struct io_srv *s)
{
	struct list *it = s->ops.next;

	while (s->st == IO_UP) {
		uv_buf_t b[IO_BATCH];
		struct io_op *ops[IO_BATCH];
		int k = 0;
		size_t total = 0;
		for (; it != &s->ops && k < IO_BATCH; it = it->next) {
			struct io_op *op = list_entry(it, struct io_op, link);
			if (op->written)
				continue;
			ops[k] = op;
			b[k++] = uv_buf_init(op->cmd, (unsigned)op->len);
			total += op->len;
		}
		if (k == 0)
			break;
		int n = uv_try_write((uv_stream_t *)&s->tcp, b, (unsigned)k);
		if (n < 0 && n != UV_EAGAIN) {
			io__srv_fail(s, uv_strerror(n));
			return;
		}
		size_t done = n > 0 ? (size_t)n : 0;
		struct io_wreq *r = NULL;
		if (done < total && (r = malloc(sizeof(*r) + (total - done))) == NULL) {
			io__srv_fail(s, "out of memory");
			return;
		}
		size_t off = 0, at = 0;
		for (int j = 0; j < k; j++) {
			size_t from = done > at ? (done - at < ops[j]->len ? done - at : ops[j]->len) : 0;
			if (r != NULL) {
				memcpy(r->data + off, ops[j]->cmd + from, ops[j]->len - from);
				off += ops[j]->len - from;
			}
			at += ops[j]->len;
			ops[j]->written = true;
			if (!ops[j]->get)
				io__drop(s, ops[j]); /* noreply: nothing comes back */
		}
		if (r == NULL)
			continue;
		r->srv = s;
		r->wr.data = r;
		uv_buf_t rest = uv_buf_init(r->data, (unsigned)off);
		int rc = uv_write(&r->wr, (uv_stream_t *)&s->tcp, &rest, 1, io__written);
		if (rc < 0) {
			free(r);
			io__srv_fail(s, uv_strerror(rc));
			return;
		}
	}
	if (s->st == IO_UP)
		io__arm(s); /* the writes sent left the queue: only gets wait */
}

static void io__flush_cb(uv_prepare_t *p)
{
	struct rcache_io *io = p->data;

	uv_prepare_stop(p);
	for (int i = 0; i < io->n; i++)
		io__flush_srv(&io->srv[i]);
}

/* ---- reading ---- */

/* The complete answer at the head of in, for op: its length (0: more
   bytes needed, -1: not an answer, the connection is broken). *rc_out,
   *val_out, *vlen_out: what it says. */
static long io__parse(struct io_srv *s, const struct io_op *op, enum rcache_mc_rc *rc_out,
		      const char **val_out, size_t *vlen_out)
{
	char *nl = memchr(s->in, '\n', s->inlen);

	*val_out = NULL;
	*vlen_out = 0;
	if (nl == NULL)
		return s->inlen == sizeof(s->in) ? -1 : 0;
	size_t line = (size_t)(nl - s->in) + 1;
	GH_ASSERT(op->get); /* writes are noreply: never answered */
	if (line == 5 && memcmp(s->in, "END\r\n", 5) == 0) {
		*rc_out = RCACHE_MC_MISS;
		return 5;
	}
	unsigned flags;
	unsigned long bytes;
	char key[RCACHE_MAX_WIRE_KEY + 1];
	if (line > 6 + RCACHE_MAX_WIRE_KEY + 40 ||
	    sscanf(s->in, "VALUE %250s %u %lu", key, &flags, &bytes) != 3) {
		*rc_out = RCACHE_MC_ERROR;
		/* The get's own error, unless writes went out before it whose
		   error it may be: then the answers are no longer in step. */
		return strncmp(s->in, "SERVER_ERROR", 12) == 0 && !op->after_noreply ? (long)line : -1;
	}
	/* "get <key>\r\n": a value for another key means the answers are out
	   of step; it must never be taken as this login's. */
	size_t klen = op->len - 6;
	if (strlen(key) != klen || memcmp(key, op->cmd + 4, klen) != 0)
		return -1;
	size_t need = line + bytes + 2 + 5;
	if (need > sizeof(s->in)) {
		/* Not ours (ours are short): drop it as it comes, a miss. */
		s->skip = bytes + 2;
		*rc_out = RCACHE_MC_MISS;
		return (long)line;
	}
	if (s->inlen < need)
		return 0;
	if (memcmp(s->in + line + bytes, "\r\nEND\r\n", 7) != 0)
		return -1;
	*rc_out = RCACHE_MC_OK;
	*val_out = s->in + line;
	*vlen_out = bytes;
	return (long)need;
}

/* Drop the bytes of a value too big to keep. */
static void io__drop_skipped(struct io_srv *s)
{
	size_t d = s->skip < s->inlen ? s->skip : s->inlen;

	memmove(s->in, s->in + d, s->inlen - d);
	s->inlen -= d;
	s->skip -= d;
}

static void io__answer_all(struct io_srv *s)
{
	for (;;) {
		io__drop_skipped(s);
		if (s->skip > 0)
			break;
		struct io_op *op = list_empty(&s->ops) ? NULL
							: list_entry(list_first(&s->ops), struct io_op, link);
		if (op == NULL || !op->written) {
			/* Nothing was asked that is not answered: bytes now are an
			   answer to a noreply write (not a memcached we know). */
			if (s->inlen > 0) {
				io__srv_fail(s, "answered a noreply write");
				return;
			}
			break;
		}
		enum rcache_mc_rc rc = RCACHE_MC_ERROR;
		const char *val;
		size_t vlen;
		long used = io__parse(s, op, &rc, &val, &vlen);
		if (used == 0)
			break;
		if (used < 0) {
			io__srv_fail(s, "unexpected answer");
			return;
		}
		/* The value out of the buffer before the next answers move up
		   over it (they would have become this get's value). */
		char value[RCACHE_IO_IN];
		if (val != NULL) {
			memcpy(value, val, vlen);
			val = value;
		}
		memmove(s->in, s->in + used, s->inlen - (size_t)used);
		s->inlen -= (size_t)used;
		if (s->skip > 0)
			s->skip += 5; /* and the END line after the value */
		list_remove(&op->link);
		if (--s->nops == 0)
			uv_unref((uv_handle_t *)&s->tcp);
		rcache_mc_outcome(s->io->rc->mc, s->index, rc != RCACHE_MC_ERROR, op->what,
				  "the server answered an error");
		op->cb(op->arg, rc, val, vlen);
		free(op);
		s->oldest_ms = uv_now(s->io->loop);
		if (s->st != IO_UP)
			return;
	}
	io__arm(s);
}

static void io__alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	struct io_srv *s = h->data;

	*b = uv_buf_init(s->in + s->inlen, (unsigned)(sizeof(s->in) - s->inlen));
}

static void io__read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct io_srv *s = st->data;

	if (n == 0)
		return;
	if (n < 0) {
		io__srv_fail(s, n == UV_EOF ? "connection closed" : uv_strerror((int)n));
		return;
	}
	s->inlen += (size_t)n;
	io__answer_all(s);
}

/* ---- connecting ---- */

static void io__connected(uv_connect_t *c, int status)
{
	struct io_srv *s = c->data;

	if (s->st != IO_CONNECTING)
		return; /* closed meanwhile */
	if (status < 0) {
		io__srv_fail(s, uv_strerror(status));
		return;
	}
	s->st = IO_UP;
	uv_tcp_nodelay(&s->tcp, 1);
	if (uv_read_start((uv_stream_t *)&s->tcp, io__alloc, io__read) < 0) {
		io__srv_fail(s, "cannot read");
		return;
	}
	io__flush_srv(s);
	io__arm(s);
}

static int io__connect(struct io_srv *s)
{
	const char *host;
	uint16_t port;
	uint64_t timeout_ms;
	struct sockaddr_storage sa;

	rcache_mc_server(s->io->rc->mc, s->index, &host, &port, &timeout_ms);
	memset(&sa, 0, sizeof(sa));
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) < 0 &&
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) < 0)
		return -1; /* checked in rcache_io_new */
	if (uv_tcp_init(s->io->loop, &s->tcp) < 0)
		return -1;
	s->tcp.data = s;
	uv_timer_init(s->io->loop, &s->timer);
	s->timer.data = s;
	/* Neither keeps the loop alive when nothing waits. */
	uv_unref((uv_handle_t *)&s->tcp);
	uv_unref((uv_handle_t *)&s->timer);
	s->io->handles += 2;
	s->st = IO_CONNECTING;
	s->conn.data = s;
	if (uv_tcp_connect(&s->conn, &s->tcp, (struct sockaddr *)&sa, io__connected) < 0) {
		io__srv_fail(s, "cannot connect");
		return -1;
	}
	return 0;
}

/* ---- requests ---- */

static int io__start(struct rcache_io *io, const struct rcache_key *k, const char *what,
		     const char *cmd, size_t len, rcache_io_cb cb, void *arg)
{
	int i = io->closing ? -1 : rcache_mc_pick(io->rc->mc, k->raw, k->raw_len);
	if (i < 0)
		return -1;
	struct io_srv *s = &io->srv[i];
	if (s->st == IO_CLOSING || s->nops >= RCACHE_IO_MAX_OPS)
		return -1;
	if (s->st == IO_IDLE && io__connect(s) < 0)
		return -1;
	struct io_op *op = malloc(sizeof(*op) + len);
	if (op == NULL)
		return -2;
	memset(op, 0, sizeof(*op));
	op->get = what[0] == 'g';
	op->what = what;
	if (op->get) {
		op->after_noreply = s->noreply_since_get;
		s->noreply_since_get = false;
	} else {
		s->noreply_since_get = true;
	}
	op->cb = cb;
	op->arg = arg;
	op->len = len;
	memcpy(op->cmd, cmd, len);
	if (list_empty(&s->ops))
		s->oldest_ms = uv_now(io->loop);
	list_insert_tail(&s->ops, &op->link);
	/* While a request waits the loop stays alive (as for pool work): a
	   stopping worker's last writes reach the server or time out. */
	if (s->nops++ == 0)
		uv_ref((uv_handle_t *)&s->tcp);
	if (s->st == IO_UP)
		uv_prepare_start(&io->flush, io__flush_cb); /* before the loop waits */
	io__arm(s);
	return 0;
}

int rcache_io_get(struct rcache_io *io, const struct rcache_key *k, rcache_io_cb cb, void *arg)
{
	char cmd[RCACHE_MAX_WIRE_KEY + 8];
	int n = snprintf(cmd, sizeof(cmd), "get %s\r\n", k->wire);

	GH_ASSERT(cb != NULL);
	return io__start(io, k, "get", cmd, (size_t)n, cb, arg) < 0 ? -1 : 0;
}

int rcache_io_submit(struct rcache_io *io, const struct rcache_op *ops, int n)
{
	char cmd[RCACHE_MAX_WIRE_KEY + RCACHE_MAX_VALUE + 64];
	int failed = 0;

	for (int i = 0; i < n; i++) {
		const struct rcache_op *op = &ops[i];
		int len = op->kind == RCACHE_OP_ADD
				  ? snprintf(cmd, sizeof(cmd), "add %s 0 %u %zu noreply\r\n%.*s\r\n",
					     op->key.wire, io->rc->ttl_s, op->value_len, (int)op->value_len,
					     op->value)
				  : snprintf(cmd, sizeof(cmd), "delete %s noreply\r\n", op->key.wire);
		/* Too long cannot happen (bounded keys and values); a server held
		   down or too busy drops the write, as the pool does. */
		if (len > 0 && (size_t)len < sizeof(cmd) &&
		    io__start(io, &op->key, op->kind == RCACHE_OP_ADD ? "add" : "delete", cmd,
			      (size_t)len, NULL, NULL) == -2)
			failed++;
	}
	return failed ? -1 : 0;
}

bool rcache_io_for(const struct rcache_io *io, const struct rcache *rc)
{
	return io != NULL && io->rc == rc && !io->closing;
}
