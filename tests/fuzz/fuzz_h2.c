/*
 * fuzz_h2.c - libFuzzer target for the HTTP/2 engine (protocols/h2*.c):
 * arbitrary client bytes after a valid preface (unless the first byte
 * says otherwise), fed in pseudo-random pieces, with the caller's side
 * played by the input too: answering streams or not, sending response
 * bodies, consuming request bodies in part, resetting, asking for GOAWAY,
 * and not taking the output for a while.
 *
 * After every step the bounds of include/h2.h must hold: open streams
 * within max_streams once events are taken, request bodies within the
 * stream and connection windows, response bytes within stream_out and
 * conn_out, libnghttp2's queue near H2_MAX_QUEUED. Small limits make
 * them reachable. Leaks and memory errors are ASan's.
 *
 * Input: byte 0 seeds the piece sizes and the caller's choices; bit 0 of
 * byte 1 drops the preface; the rest is the client's bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gh.h"
#include "h2_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
	struct h2_conn *c;
	struct h2_limits lim;
	uint32_t rng;
	uint64_t now;
};

static uint32_t fz_rand(struct fz *f)
{
	f->rng = f->rng * 1103515245u + 12345u;
	return f->rng >> 16;
}

static void fz_check(struct fz *f, bool events_taken)
{
	struct h2_conn *c = f->c;
	size_t in_total = 0;

	if (c->out_total > f->lim.conn_out)
		abort();
	list_foreach(it, &c->all) {
		struct h2_stream *s = list_entry(it, struct h2_stream, link);

		if (s->in.len > f->lim.stream_window || s->out.len > f->lim.stream_out ||
		    s->in.cap > f->lim.stream_window || s->out.cap > f->lim.stream_out)
			abort();
		if (s->hlen > 2 * (size_t)f->lim.max_header_list)
			abort();
		in_total += s->in.len;
	}
	if (in_total > f->lim.conn_window)
		abort();
	if (events_taken && h2_streams(c) > f->lim.max_streams)
		abort();
	if (nghttp2_session_get_outbound_queue_size(c->ng) > H2_MAX_QUEUED + 1024)
		abort();
}

static void fz_events(struct fz *f)
{
	static const struct h2_field hdr[] = {
		{ "Content-Type", 12, "text/html", 9 },
		{ "Connection", 10, "close", 5 },
		{ "Set-Cookie", 10, "a=b", 3 },
	};
	static uint8_t body[8192];
	struct h2_event ev;
	char h1[4096];
	bool chunked, end;
	const uint8_t *d;

	while (h2_next_event(f->c, &ev)) {
		uint32_t r = fz_rand(f);

		switch (ev.kind) {
		case H2_EV_REQUEST:
			(void)h2_request_to_h1(ev.req, h1, sizeof(h1), &chunked);
			if (r % 5 == 0)
				h2_reset(f->c, ev.id, H2_INTERNAL_ERROR);
			else if (r % 5 != 1)
				h2_respond(f->c, ev.id, 200 + (int)(r % 400), hdr, ARRAY_SIZE(hdr),
					   r % 7 == 0);
			break;
		case H2_EV_BODY: {
			size_t n = h2_body_peek(f->c, ev.id, &d, &end);

			if (n && d[0] == 0 && d[n - 1] == 0xff)
				body[0] = 1; /* the bytes are readable */
			h2_body_consume(f->c, ev.id, r % 3 == 0 ? n : n / 2);
			break;
		}
		default:
			break;
		}
	}
	/* Response bodies for every stream the caller answered. */
	list_foreach(it, &f->c->all) {
		struct h2_stream *s = list_entry(it, struct h2_stream, link);
		uint32_t r = fz_rand(f);

		if (!s->answered || s->closed)
			continue;
		h2_send_data(f->c, s->id, body, r % sizeof(body));
		if (r % 11 == 0)
			h2_send_end(f->c, s->id);
		/* Bodies left unconsumed are taken later. */
		size_t n = h2_body_peek(f->c, s->id, &d, &end);
		if (r % 4 == 0)
			h2_body_consume(f->c, s->id, n);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[8192];
	struct fz f = { .rng = size ? data[0] : 0, .now = 1 };
	size_t off = 2;
	int stalled = 0;

	if (size < 2)
		return 0;
	h2_limits_default(&f.lim);
	f.lim.max_streams = 8;
	f.lim.max_header_list = 2048;
	f.lim.max_headers = 20;
	f.lim.stream_window = 4096;
	f.lim.conn_window = 16384;
	f.lim.stream_out = 2048;
	f.lim.conn_out = 8192;
	f.lim.max_requests = 40;
	f.lim.control = (struct h2_rate){ 100, 50 };
	f.lim.resets = (struct h2_rate){ 20, 5 };
	f.lim.extended_connect = data[1] & 2;
	f.c = h2_conn_new(&f.lim);
	if (!f.c)
		abort();
	if (!(data[1] & 1)) {
		static const uint8_t preface[] = NGHTTP2_CLIENT_MAGIC "\0\0\0\4\0\0\0\0\0";

		h2_recv(f.c, preface, sizeof(preface) - 1, f.now);
	}
	while (off < size || h2_want_write(f.c)) {
		uint32_t r = fz_rand(&f);
		/* Not reading for a while: only while input may still come. */
		bool take = r % 4 != 0 || off >= size || stalled > 8;

		if (off < size && h2_want_read(f.c)) {
			size_t n = 1 + r % 512;

			if (n > size - off)
				n = size - off;
			if (h2_recv(f.c, data + off, n, f.now) < 0)
				off = size;
			else
				off += n;
			stalled = 0;
		} else if (off < size && !h2_want_write(f.c)) {
			off = size; /* the engine will read no more: the connection is over */
		} else if (off < size) {
			stalled++;
			take = true;
		}
		fz_check(&f, false);
		fz_events(&f);
		fz_check(&f, true);
		if (r % 97 == 0)
			h2_goaway(f.c);
		f.now += r % 50;
		if (take && h2_output(f.c, out, 1 + r % sizeof(out)) == 0 && off >= size)
			break;
		fz_events(&f);
		fz_check(&f, true);
		if (off >= size && !h2_want_write(f.c))
			break;
	}
	h2_conn_free(f.c);
	return 0;
}
