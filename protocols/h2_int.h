/*
 * h2_int.h - what the files of the HTTP/2 engine share (include/h2.h is
 * its contract). h2.c: the connection, buffers and events; h2_recv.c:
 * libnghttp2's callbacks and the defences; h2_req.c: a request head as it is decoded
 * and its HTTP/1.1 form; h2_out.c: answers, response bodies, output.
 *
 * Ownership. A struct h2_conn owns one libnghttp2 server session and a
 * struct h2_stream per client stream it knows (list `all`). libnghttp2
 * points at our stream as its stream user data while the stream is open;
 * once it closes, our stream stays only until its H2_EV_CLOSED is taken
 * (or is freed at once if the caller never heard of it).
 */
#ifndef GATEHOUSE_H2_INT_H
#define GATEHOUSE_H2_INT_H

#include <nghttp2/nghttp2.h>

#include "h2.h"
#include "list.h"

/* Pending events of a stream (bits of h2_stream.ev). */
#define H2__EV_REQUEST 0x1u
#define H2__EV_BODY 0x2u
#define H2__EV_CLOSED 0x4u

/* Bytes held for a stream, [off, off + len) of p: grown by doubling up
   to the bound its user gives, freed when emptied if bigger than
   H2__BYTES_KEEP, so an idle stream holds little. */
#define H2__BYTES_KEEP 4096
struct h2_bytes {
	uint8_t *p;
	size_t off, len, cap;
};

/* Token bucket state: milli-tokens, so that refills need no floats. */
struct h2_bucket {
	uint64_t milli;
	uint64_t last_ms;
	bool started;
};

struct h2_stream {
	struct h2_conn *c;
	int32_t id;
	struct list link;         /* c->all */
	struct list ev_link;      /* c->events while ev != 0 */
	unsigned ev;
	void *user;

	bool delivered;           /* its H2_EV_REQUEST was taken: the caller knows it */
	bool closed;              /* libnghttp2 closed it */
	bool refused;             /* answered 431 by the engine: never the caller's */
	bool answered;            /* a response head was submitted */
	bool reset_by_us;         /* the caller reset it (not counted as the client's fault) */
	bool deferred;            /* its data source waits for h2_send_data/h2_send_end */
	uint32_t close_code;

	/* The request head as decoded: names and values in hbuf (grown to at
	   most 2 x max_header_list: the joined cookie is written after them). */
	uint8_t *hbuf;
	size_t hlen, hcap;
	size_t list_size;         /* RFC 9113 6.5.2 size of the fields so far */
	struct h2_header *hdr;    /* hdr_cap of them (at most max_headers + 1), grown */
	int hdr_cap;
	int ncookie;
	struct h2_request req;

	struct h2_bytes in;       /* request body bytes not yet consumed (<= stream_window) */
	bool in_end;              /* END_STREAM received */
	struct h2_bytes out;      /* response body bytes not yet framed (<= stream_out) */
	bool out_end;             /* h2_send_end was called */
};

struct h2_conn {
	nghttp2_session *ng;
	struct h2_limits lim;
	struct list all;          /* every h2_stream */
	struct list events;       /* streams with pending events, in order */
	size_t nstreams;
	uint64_t now_ms;

	/* Output: the frame libnghttp2 gave last, partly taken. It stays valid
	   until the next nghttp2_session_mem_send, which is not called while
	   any of it is left. */
	const uint8_t *pend;
	size_t pend_len;
	size_t out_total;         /* response bytes held by all streams */
	size_t unconsumed;        /* body bytes of closed streams to release */

	/* Defences. */
	int32_t max_id;           /* highest client stream id seen */
	int32_t last_ok;          /* highest stream whose head was complete:
				     what a GOAWAY of ours names */
	uint32_t requests;        /* streams opened over the connection's life */
	uint32_t empty;           /* empty frames in a row */
	uint32_t continuations;   /* CONTINUATION frames of the current block */
	uint32_t block_bytes;     /* encoded bytes of the current header block */
	struct h2_bucket b_streams, b_resets, b_control;

	/* Our GOAWAY names this last stream: later ones are refused even
	   before it is on the wire (libnghttp2 ignores them only after). */
	int32_t our_last;
	bool dead;                /* a fatal error: nothing more is read or produced */
	const char *calm_why;     /* the first bound a GOAWAY ENHANCE_YOUR_CALM named */
	bool calm_why_told;       /* h2_calm_reason has given it */
	bool ev_goaway;           /* the client's GOAWAY waits to be reported */
	uint32_t goaway_code;
	int32_t goaway_last;

	/* What libnghttp2 holds for this connection (its allocator, h2.c):
	   bytes by malloc_usable_size, now and at most; and its outbound frame
	   buffer (one chunk of NGHTTP2_MAX_PAYLOADLEN + header, allocated with
	   the session and kept for its life), whose pages h2_idle gives back. */
	size_t mem, mem_peak;
	uint8_t *framebuf;
	size_t framebuf_len;
	bool creating;            /* inside nghttp2_session_server_new3 */
	/* The highest byte of the frame buffer a frame reached since h2_idle
	   last gave its pages back (frames are written from its start). */
	const uint8_t *framebuf_top;
};

/* A frame ending at end was made (in the frame buffer, or elsewhere). */
static inline void h2__framebuf_touched(struct h2_conn *c, const uint8_t *end)
{
	if (end > c->framebuf_top && c->framebuf != NULL && end > c->framebuf &&
	    end <= c->framebuf + c->framebuf_len)
		c->framebuf_top = end;
}

/* --- h2.c --- */

/* Append n bytes to b if it stays within max bytes; false if not (or no memory). */
bool h2__bytes_put(struct h2_bytes *b, const uint8_t *d, size_t n, size_t max);
/* Drop the first n bytes of b. */
void h2__bytes_drop(struct h2_bytes *b, size_t n);
void h2__bytes_free(struct h2_bytes *b);

/* The stream the caller may use (open, known to it), or NULL. */
struct h2_stream *h2__stream(struct h2_conn *c, int32_t id);
/* Queue event bits for s. */
void h2__event(struct h2_stream *s, unsigned bits);
/* A graceful GOAWAY naming last (NO_ERROR): streams up to it finish,
   later ones are refused. */
void h2__goaway(struct h2_conn *c, int32_t last);
/* The client misbehaved past a bound (why: a static string naming it):
   GOAWAY ENHANCE_YOUR_CALM, stop reading. */
void h2__calm(struct h2_conn *c, const char *why);
/* Take a token from b (rate r) at c->now_ms; false when empty. */
bool h2__take(struct h2_conn *c, struct h2_bucket *b, const struct h2_rate *r);
/* libnghttp2 closed s (code: why); called from its callback. */
void h2__closed(struct h2_stream *s, uint32_t code);
/* Give back the connection window that bodies of closed streams held. */
void h2__release_unconsumed(struct h2_conn *c);

/* --- h2_recv.c --- */

/* libnghttp2's callbacks of a server connection (the caller frees them). */
nghttp2_session_callbacks *h2__callbacks(void);

/* --- h2_req.c --- */

/* One decoded field of a request head (or trailer) of s. */
void h2__header(struct h2_stream *s, const uint8_t *name, size_t nlen, const uint8_t *value,
		size_t vlen, bool trailer);
/* The head of s is complete: join cookies, fill s->req. False: it went
   past a bound (the engine answers 431). */
bool h2__head_done(struct h2_stream *s, bool end_stream);

/* --- h2_out.c --- */

/* Answer s with status and no header, ending the stream (431 and such). */
void h2__answer_local(struct h2_stream *s, int status);
/* Release what s holds for its response (it closed). */
void h2__out_release(struct h2_stream *s);
/* libnghttp2's data source: response bytes of a stream (inside h2_output). */
ssize_t h2__read_data(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
		      uint32_t *flags, nghttp2_data_source *src, void *arg);

#endif
