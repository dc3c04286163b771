/*
 * test_stream.c - core/stream.c's corked writes over a real loopback TCP
 * pair: held until the last uncork, in order, sent early only when they
 * outgrow one buffer, and never lost to a shutdown or a close.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <criterion/criterion.h>

#include "stream.h"

/* Small buffers, so a few writes outgrow one. */
#define TS_BUF 1024

static uv_loop_t ts_loop;
static struct pool ts_pool;
static struct stream ts_st;
static int ts_peer = -1;
static int ts_closed;

static void ts_on_close(struct stream *st)
{
	(void)st;
	ts_closed++;
}

static void ts_setup(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	int c = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(l >= 0 && c >= 0);
	cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(l, 1), 0);
	cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
	cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	ts_peer = accept(l, NULL, NULL);
	cr_assert(ts_peer >= 0);
	close(l);

	cr_assert_eq(uv_loop_init(&ts_loop), 0);
	pool_init(&ts_pool, TS_BUF, 8);
	cr_assert_eq(stream_init(&ts_st, &ts_loop, &ts_pool, NULL), 0);
	cr_assert_eq(uv_tcp_open(&ts_st.tcp, c), 0);
	ts_st.on_close = ts_on_close;
	ts_closed = 0;
}

static void ts_teardown(void)
{
	stream_close(&ts_st);
	uv_run(&ts_loop, UV_RUN_DEFAULT);
	cr_assert_eq(ts_closed, 1);
	cr_assert_eq(ts_pool.outstanding, 0, "every buffer went back to the pool");
	cr_assert_eq(uv_loop_close(&ts_loop), 0, "no live handles");
	pool_destroy(&ts_pool);
	close(ts_peer);
}

TestSuite(stream, .init = ts_setup, .fini = ts_teardown);

/* Bytes the peer can read now without waiting (0: none). */
static size_t ts_read_now(char *out, size_t cap)
{
	size_t got = 0;

	for (;;) {
		ssize_t n = recv(ts_peer, out + got, cap - got, MSG_DONTWAIT);
		if (n <= 0)
			return got;
		got += (size_t)n;
	}
}

/* Exactly n bytes, waiting for them. */
static void ts_read_exact(char *out, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = recv(ts_peer, out + got, n - got, 0);
		cr_assert_gt(k, 0);
		got += (size_t)k;
	}
}

Test(stream, corked_writes_wait_for_uncork_and_keep_their_order)
{
	char buf[64];

	stream_cork(&ts_st);
	cr_assert_eq(stream_write_copy(&ts_st, "abc", 3, false), 0);
	struct pbuf *b = pbuf_get(&ts_pool);
	memcpy(b->data, "def", 3);
	b->len = 3;
	cr_assert_eq(stream_write(&ts_st, b), 0);
	cr_assert_eq(stream_write_copy(&ts_st, "gh", 2, false), 0);
	usleep(20000);
	cr_assert_eq(ts_read_now(buf, sizeof(buf)), 0, "nothing leaves while corked");
	cr_assert_eq(stream_uncork(&ts_st), 0);
	ts_read_exact(buf, 8);
	cr_assert_eq(memcmp(buf, "abcdefgh", 8), 0);
	cr_assert_eq(ts_st.queued, 0);
}

Test(stream, corks_nest)
{
	char buf[16];

	stream_cork(&ts_st);
	stream_cork(&ts_st);
	cr_assert_eq(stream_write_copy(&ts_st, "xy", 2, false), 0);
	cr_assert_eq(stream_uncork(&ts_st), 0);
	usleep(20000);
	cr_assert_eq(ts_read_now(buf, sizeof(buf)), 0, "the outer cork still holds");
	cr_assert_eq(stream_uncork(&ts_st), 0);
	ts_read_exact(buf, 2);
	cr_assert_eq(memcmp(buf, "xy", 2), 0);
	cr_assert_eq(stream_uncork(&ts_st), 0, "an extra uncork does nothing");
}

Test(stream, what_outgrows_one_buffer_goes_early_in_order)
{
	static char big[3000], want[TS_BUF + 3000 + 10], got[sizeof(want)];
	char a[TS_BUF - 100];

	memset(a, 'a', sizeof(a));
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('0' + i % 10);
	stream_cork(&ts_st);
	cr_assert_eq(stream_write_copy(&ts_st, a, sizeof(a), false), 0);
	/* The first 100 b fill the buffer; the next 100 do not fit, so the
	   held bytes go now and a new buffer holds the rest. */
	for (int i = 0; i < 20; i++)
		cr_assert_eq(stream_write_copy(&ts_st, "bbbbbbbbbb", 10, false), 0);
	ts_read_exact(got, sizeof(a));
	cr_assert_eq(memcmp(got, a, sizeof(a)), 0);
	/* Larger than any pool buffer: held bytes, then it, at once. */
	cr_assert_eq(stream_write_copy(&ts_st, big, sizeof(big), false), 0);
	cr_assert_eq(stream_write_copy(&ts_st, "tail", 4, false), 0);
	memset(want, 'b', 200);
	memcpy(want + 200, big, sizeof(big));
	ts_read_exact(got, 200 + sizeof(big));
	cr_assert_eq(memcmp(got, want, 200 + sizeof(big)), 0);
	usleep(20000);
	cr_assert_eq(ts_read_now(got, sizeof(got)), 0, "the tail is held");
	cr_assert_eq(stream_uncork(&ts_st), 0);
	ts_read_exact(got, 4);
	cr_assert_eq(memcmp(got, "tail", 4), 0);
}

Test(stream, close_sends_what_was_held)
{
	char buf[16];

	stream_cork(&ts_st);
	cr_assert_eq(stream_write_copy(&ts_st, "bye", 3, true), 0);
	stream_close(&ts_st);
	cr_assert_eq(stream_uncork(&ts_st), 0, "uncork after close is harmless");
	ts_read_exact(buf, 3);
	cr_assert_eq(memcmp(buf, "bye", 3), 0);
}

static int ts_shut_status = 1;

static void ts_on_shutdown(uv_shutdown_t *req, int status)
{
	(void)req;
	ts_shut_status = status;
}

Test(stream, shutdown_sends_what_was_held_before_the_fin)
{
	char buf[16];

	stream_cork(&ts_st);
	cr_assert_eq(stream_write_copy(&ts_st, "fin", 3, false), 0);
	cr_assert_eq(stream_shutdown(&ts_st, ts_on_shutdown), 0);
	uv_run(&ts_loop, UV_RUN_DEFAULT);
	cr_assert_eq(ts_shut_status, 0);
	cr_assert_eq(stream_write_copy(&ts_st, "late", 4, false), UV_EPIPE);
	cr_assert_eq(stream_uncork(&ts_st), 0);
	ts_read_exact(buf, 3);
	cr_assert_eq(memcmp(buf, "fin", 3), 0);
	cr_assert_eq(recv(ts_peer, buf, sizeof(buf), 0), 0, "then the FIN");
}

static int ts_end_status;
static size_t ts_end_bytes;

static void ts_on_end(struct stream *st, struct pbuf *b, int status)
{
	(void)st;
	if (b != NULL) {
		ts_end_bytes += b->len;
		pbuf_put(b);
		return;
	}
	ts_end_status = status;
}

/* The lingering close: bytes the peer sent after our FIN are counted as
   unread, then read and dropped (none reaches on_read, every buffer goes
   back), and the peer's own close ends it with EOF, not a reset. */
Test(stream, discard_input_drops_what_the_peer_still_sends_until_its_end)
{
	char big[64 * 1024];

	memset(big, 'y', sizeof(big));
	ts_st.on_read = ts_on_end;
	ts_end_status = 1;
	ts_end_bytes = 0;
	cr_assert_eq(stream_shutdown(&ts_st, ts_on_shutdown), 0);
	uv_run(&ts_loop, UV_RUN_DEFAULT);
	cr_assert_eq(ts_shut_status, 0);
	cr_assert_eq(send(ts_peer, big, 5000, 0), 5000);
	for (int i = 0; i < 100 && stream_unread(&ts_st) < 5000; i++)
		usleep(1000);
	cr_assert_eq(stream_unread(&ts_st), 5000);
	cr_assert_eq(stream_discard_input(&ts_st), 0);
	uv_run(&ts_loop, UV_RUN_NOWAIT);
	cr_assert_eq(stream_unread(&ts_st), 0, "read");
	/* More than the socket buffers hold: the peer is never stopped. */
	int stalls = 0;
	for (int i = 0; i < 64; i++) {
		size_t off = 0;
		while (off < sizeof(big)) {
			ssize_t n = send(ts_peer, big + off, sizeof(big) - off, MSG_DONTWAIT);
			if (n > 0) {
				off += (size_t)n;
				continue;
			}
			cr_assert_lt(++stalls, 20000, "the stream stopped reading");
			uv_run(&ts_loop, UV_RUN_NOWAIT);
			usleep(100);
		}
	}
	cr_assert_eq(shutdown(ts_peer, SHUT_WR), 0);
	uv_run(&ts_loop, UV_RUN_DEFAULT);
	cr_assert_eq(ts_end_status, UV_EOF);
	cr_assert_eq(ts_end_bytes, 0, "nothing reached on_read");
	cr_assert_eq(ts_pool.outstanding, 0);
	char c;
	cr_assert_eq(recv(ts_peer, &c, 1, 0), 0, "our FIN, no reset");
}
