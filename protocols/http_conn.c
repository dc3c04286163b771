/*
 * http_conn.c - the client connection's course: its phases and deadlines
 * (the session's one timer armed at the earliest of the connection's and
 * its exchanges'), and the pipeline: the body of the request being read,
 * then the next heads parsed, routed and sent while earlier exchanges are
 * in flight (at most HTTP_MAX_PIPELINE), and the front's turn passed on
 * when it ends.
 */
#include "conf.h"
#include "gh.h"
#include "http_int.h"
#include "stream.h"

/* ---- the connection's phases and the deadlines ---- */

void http__arm(struct http_conn *c)
{
	struct session *s = c->s;
	uint64_t t = c->deadline_ms;

	if (s->closed || s->finishing)
		return;
	if (c->h2s != NULL || c->h2 != NULL) {
		http2__arm(c);
		return;
	}
	if (c->release_ms != 0 && (t == 0 || c->release_ms < t))
		t = c->release_ms;
	for (struct http_exchange *x = c->head; x != NULL; x = x->next) {
		if (x->deadline_ms != 0 && (t == 0 || x->deadline_ms < t))
			t = x->deadline_ms;
	}
	/* No deadline: nothing waits on a peer without its own bound (a
	   lookup, which its client bounds); a timer still armed fires, finds
	   nothing due and is not re-armed. */
	if (t == 0)
		return;
	uint64_t now = session_now(s);
	session_delay(s, t > now ? (double)(t - now) / 1000.0 : 0);
}

static uint64_t http__after(struct session *s, double secs)
{
	return session_now(s) + (uint64_t)(secs * 1000.0 + 0.5);
}

void http__deadline(struct http_exchange *x, double secs)
{
	x->deadline_ms = secs > 0 ? http__after(x->s, secs) : 0;
	http__arm(x->conn);
}

void http__conn_phase(struct http_conn *c, enum http_conn_phase p)
{
	struct session *s = c->s;

	c->phase = p;
	c->release_ms = 0;
	switch (p) {
	case HTTP_CONN_IDLE:
		session_set_phase(s, SESSION_HTTP_IDLE);
		c->deadline_ms = http__after(s, s->conf->http.keepalive_timeout);
		if (c->spare != NULL)
			c->release_ms = session_now(s) + HTTP_IDLE_RELEASE_MS;
		break;
	case HTTP_CONN_HEAD:
		/* Set once, at the first byte (slowloris). */
		c->deadline_ms = http__after(s, s->conf->http.header_timeout);
		break;
	case HTTP_CONN_BUSY:  /* the exchanges' deadlines */
	case HTTP_CONN_DONE:
	case HTTP_CONN_NPHASES:
		c->deadline_ms = 0;
		break;
	}
	http__arm(c);
}

/* ---- the next request ---- */

/* x is the front now: its turn to answer. */
static void http__activate(struct http_exchange *x)
{
	if (x->local_why != NULL) {
		http__answer_kept(x);
		return;
	}
	if (x->phase == HTTP_X_FILE) {
		http__file_turn(x);
		return;
	}
	if (x->phase != HTTP_X_FORWARD)
		return; /* routing or connecting: its own steps go on */
	x->deadline_ms = http__after(x->s, x->read_timeout);
	if (x->in != NULL || x->backend_gone || x->up == NULL)
		http__process_backend(x);
	else
		session_upstream_reading(x->up, true);
}

void http__next_request(struct session *s)
{
	struct http_conn *c = http__of(s);
	struct http_exchange *x = c->head;

	if (x != NULL && x->phase != HTTP_X_HEAD) {
		http__activate(x);
	} else if (c->phase != HTTP_CONN_DONE) {
		if (x != NULL) /* a head begun behind the last answer: its clock starts now */
			session_set_phase(s, SESSION_HTTP_IDLE);
		http__conn_phase(c, x != NULL ? HTTP_CONN_HEAD : HTTP_CONN_IDLE);
	}
	if (s->closed || s->finishing)
		return;
	if (c->body == NULL)
		session_client_reading(s, true);
	http__read_on(s);
	/* Nothing read yet: an idle connection keeps no input buffer (a
	   malloc and a free of 16 KiB per request, no zeroing); its spare
	   exchange goes once idle for HTTP_IDLE_RELEASE_MS (http_timeout). */
	if (c->phase == HTTP_CONN_IDLE && c->head == NULL && !s->closed && !s->finishing)
		session_release_input(s);
	http__arm(c);
}

/* May the next head be parsed now? Not past a request whose answer ends
   or upgrades the connection (what follows is not HTTP, or not ours),
   nor beyond the pipeline's bound. */
static bool http__may_parse(const struct http_conn *c)
{
	const struct http_exchange *last = NULL;

	for (const struct http_exchange *x = c->head; x != NULL; x = x->next) {
		if (x->phase != HTTP_X_HEAD)
			last = x;
	}
	if (last != NULL &&
	    (last->websocket || last->close_after || !last->reqh.keep_alive || c->client_eof))
		return false;
	return c->nx < HTTP_MAX_PIPELINE;
}

/* The exchange a new head is parsed into: the last one when it is still
   reading its head, else a new one (NULL: none may start, or no memory). */
static struct http_exchange *http__parsing(struct session *s)
{
	struct http_conn *c = http__of(s);
	struct http_exchange *x = c->head;

	while (x != NULL && x->next != NULL)
		x = x->next;
	if (x != NULL && x->phase == HTTP_X_HEAD)
		return x;
	if (!http__may_parse(c))
		return NULL;
	x = http__exchange_new(c);
	if (x == NULL)
		session_close(s, "out of memory");
	return x;
}

/* Parse a head from s->in. True when one was complete and handled. */
static bool http__process_head(struct session *s)
{
	struct http_conn *c = http__of(s);
	struct http_exchange *x = http__parsing(s);

	if (x == NULL)
		return false;
	int rc = http_parse_head(&x->req, s->in, s->in_len);
	if (rc == HTTP_NEED_MORE) {
		/* The first byte of a request starts its head timer (when
		   none is in flight). A head that is complete at once needs
		   none: every way on from here sets a deadline of its own. */
		if (c->phase == HTTP_CONN_IDLE)
			http__conn_phase(c, HTTP_CONN_HEAD);
		return false;
	}
	if (c->phase != HTTP_CONN_BUSY)
		http__conn_phase(c, HTTP_CONN_BUSY);
	if (rc < 0) {
		x->start_ms = session_now(s);
		http__answer(x, -rc, NULL, NULL,
			     rc == HTTP_E_URI ? "request-target too long"
			     : rc == HTTP_E_HEADERS ? "request head too large"
			     : "malformed request");
		return false;
	}
	http__request(x, rc);
	return true;
}

void http__read_on(struct session *s)
{
	struct http_conn *c = http__of(s);

	while (!s->closed && !s->finishing && c->phase != HTTP_CONN_DONE) {
		struct http_exchange *b = c->body;
		if (b != NULL) {
			/* Body bytes wait in s->in until its backend is there. */
			if (b->phase != HTTP_X_FORWARD)
				return;
			http__forward_body(b);
			if (c->body == b)
				return;
			continue;
		}
		if (s->in_len == 0 || !http__process_head(s))
			return;
	}
}


/* ---- an exchange's source and sink ---- */

const uint8_t *http__src(const struct http_exchange *x)
{
	return x->conn->h2s != NULL ? http2__src(x) : x->s->in;
}

void http__src_consume(struct http_exchange *x, size_t n)
{
	if (x->conn->h2s == NULL)
		session_consume(x->s, n);
}

void http__out(struct http_exchange *x, const void *p, size_t n)
{
	if (x->conn->h2s != NULL)
		http2__out(x, p, n);
	else
		session_write(x->s, p, n);
}

void http__out_buf(struct http_exchange *x, struct pbuf *b)
{
	if (x->conn->h2s != NULL) {
		http2__out(x, b->data + b->off, b->len);
		b->wipe = true;
		pbuf_put(b);
		return;
	}
	session_write_buf(x->s, b);
}

size_t http__queued(const struct http_exchange *x)
{
	return x->conn->h2s != NULL ? http2__queued(x) : session_client_queued(x->s);
}

void http__finish(struct http_exchange *x, const char *why)
{
	if (x->conn->h2s != NULL)
		http2__finish(x);
	else
		session_finish(x->s, why);
}

void http__close(struct http_exchange *x, const char *why)
{
	if (x->conn->h2s != NULL)
		http2__close(x, why);
	else
		session_close(x->s, why);
}
