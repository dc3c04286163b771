/*
 * h2_t.h - test drivers for the HTTP/2 engine (protocols/h2*.c): raw
 * client frames built by hand (HPACK by libnghttp2's deflater), the
 * engine's output parsed back into frames, and a real libnghttp2 client
 * session wired to the engine in memory.
 */
#ifndef GATEHOUSE_H2_T_H
#define GATEHOUSE_H2_T_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "h2.h"

/* A growable byte buffer. */
struct h2t_buf {
	uint8_t *p;
	size_t len, cap;
};

void h2t_put(struct h2t_buf *b, const void *p, size_t n);
void h2t_buf_free(struct h2t_buf *b);

/* One frame the engine sent, as the client sees it. */
struct h2t_frame {
	uint8_t type, flags;
	int32_t id;
	uint32_t len;
	uint32_t code;        /* RST_STREAM, GOAWAY */
	int32_t last_id;      /* GOAWAY */
	int status;           /* HEADERS: :status */
};

#define H2T_MAX_FRAMES 4096
#define H2T_MAX_EVENTS 4096

struct h2t_ev {
	enum h2_ev_kind kind;
	int32_t id;
	uint32_t code;
};

struct h2t;
/* What the test's "application" does with an event (default: h2t_app). */
typedef void (*h2t_app_fn)(struct h2t *t, const struct h2_event *ev);

/* The engine and what it said. */
/* RFC 6455 1.3's sample key. */
#define H2T_WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="

struct h2t {
	struct h2_conn *c;
	struct h2_limits lim;
	uint64_t now;
	h2t_app_fn app;
	bool fatal;                 /* h2_recv said H2_E_FATAL */
	/* Raw mode: output parsed into frames. */
	struct h2t_buf out;         /* output not yet parsed */
	nghttp2_hd_inflater *inf;
	nghttp2_hd_deflater *def;
	struct h2t_frame f[H2T_MAX_FRAMES];
	int nf;
	struct h2t_ev ev[H2T_MAX_EVENTS];
	int nev;
	/* The last request head, as HTTP/1.1. */
	char h1[8192];
	int h1_len;
	bool h1_chunked;
	/* The last request as h2_websocket_to_h1 writes it (key H2T_WS_KEY). */
	char ws[8192];
	int ws_len;
	bool is_ws;
	/* Request body bytes the default app consumed, all streams. */
	struct h2t_buf body;
	bool app_no_consume;        /* the default app leaves bodies unconsumed */
	bool app_no_push;           /* ... and answers with a head only */
	size_t resp_len;            /* response body bytes per stream (default 5) */
	struct h2t_estream {
		size_t resp_left;   /* body bytes still to give the engine */
		bool answered;
		bool ended;
		bool req_ended;     /* the request body ended: the answer may end */
	} es[1024];
	/* Client mode: a libnghttp2 client session. */
	nghttp2_session *cl;
	struct h2t_cstream {
		int status;
		size_t body;
		bool closed;
		uint32_t code;
		size_t left;        /* request body bytes still to send */
	} cs[1024];
	int cl_content_type;        /* content-type fields the client received */
	bool cl_goaway;
	uint32_t cl_goaway_code;
	int32_t cl_goaway_last;
	bool cl_no_read;            /* the client does not take the engine's output */
	size_t split;               /* feed the engine this many bytes at a time (0: all) */
};

/* Engine with limits lim (NULL: defaults), no client session. */
void h2t_init(struct h2t *t, const struct h2_limits *lim);
void h2t_free(struct h2t *t);

/* The default app: answer 200 "hello" (body given by h2t_answer), consume bodies. */
void h2t_app(struct h2t *t, const struct h2_event *ev);
/* Feed bytes (split as t->split says), run the app on the events, parse the output. */
void h2t_feed(struct h2t *t, const void *p, size_t n);
/* Take the engine's output and parse it (raw mode). */
void h2t_drain(struct h2t *t);
/* Frames of type (and, if code >= 0, that code) the engine sent. */
int h2t_count(const struct h2t *t, uint8_t type);
/* The GOAWAY the engine sent, or NULL. */
const struct h2t_frame *h2t_goaway(const struct h2t *t);
/* The RST_STREAM the engine sent on id, or NULL. */
const struct h2t_frame *h2t_rst(const struct h2t *t, int32_t id);
/* The response HEADERS on id, or NULL. */
const struct h2t_frame *h2t_headers(const struct h2t *t, int32_t id);
int h2t_events(const struct h2t *t, enum h2_ev_kind kind);

/* --- raw client frames --- */
void h2t_frame(struct h2t_buf *b, uint8_t type, uint8_t flags, int32_t id, const void *payload,
	       size_t len);
/* The preface, an empty SETTINGS and the ACK of the engine's SETTINGS. */
void h2t_preface(struct h2t_buf *b);
/* A HEADERS frame (HPACK by t->def) for nv = {name, value, ..., NULL}. */
void h2t_headers_frame(struct h2t *t, struct h2t_buf *b, int32_t id, uint8_t flags,
		       const char *const *nv);
/* A header block, encoded (for CONTINUATION tests). */
size_t h2t_block(struct h2t *t, const char *const *nv, uint8_t *out, size_t cap);
void h2t_rst_frame(struct h2t_buf *b, int32_t id, uint32_t code);

/* --- client session mode --- */
/* A libnghttp2 client (settings iv/niv) talking to t's engine. */
void h2t_client(struct h2t *t, const nghttp2_settings_entry *iv, size_t niv, bool no_auto_wu);
/* The client's / the test app's state of stream id (ids 1..2047). */
struct h2t_cstream *h2t_cs(struct h2t *t, int32_t id);
struct h2t_estream *h2t_es(struct h2t *t, int32_t id);
/* Move bytes both ways and run the app until nothing moves. */
void h2t_pump(struct h2t *t);
/* Submit a GET (or method with body of body_len 'x' bytes). Returns the stream id. */
int32_t h2t_request(struct h2t *t, const char *method, const char *path, size_t body_len,
		    const char *const *extra);

#endif
